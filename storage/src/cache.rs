//! A local on-disk cache of segment objects, bounded in bytes.
//!
//! Compute nodes read whole segments; from a remote store that is the slow part of a (re)start.
//! The cache keeps each object fetched under a name made of its path and its e-tag, so a
//! restarted node reloads an unchanged object from local disk and a changed one (a new e-tag)
//! from the store. Segments are immutable, so in practice an entry never goes stale; the e-tag
//! makes that a checked fact rather than an assumption. When the cache grows past its bound,
//! the least recently used entries are deleted.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::Bytes;

use crate::error::{StorageError, StorageErrorKind};

/// Counters of a cache since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads answered from local disk.
    pub hits: u64,
    /// Reads that had to go to the store.
    pub misses: u64,
    /// Entries deleted to stay within the bound.
    pub evictions: u64,
}

/// A directory of cached objects with a size bound.
#[derive(Debug)]
pub struct SegmentCache {
    dir: PathBuf,
    max_bytes: u64,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    /// Serialises inserts and eviction, so two evictions never race over the same files.
    write_lock: tokio::sync::Mutex<()>,
}

impl SegmentCache {
    /// Opens (creating) a cache in `dir` that keeps at most `max_bytes` of objects.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<SegmentCache, StorageError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)
            .map_err(|e| StorageError::from(e).add_context(format!("create cache directory {}", dir.display())))?;
        Ok(SegmentCache {
            dir,
            max_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            write_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Counters since the cache was opened.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }

    /// The file holding `path` at version `etag`.
    fn file_for(&self, path: &str, etag: &str) -> PathBuf {
        let key = fnv1a(path.as_bytes()) ^ fnv1a(etag.as_bytes()).rotate_left(17);
        let base = path.rsplit('/').next().unwrap_or("object");
        self.dir.join(format!("{key:016x}-{base}"))
    }

    /// The cached bytes of `path` at `etag`, if present and of the expected size.
    pub async fn get(&self, path: &str, etag: &str, size: u64) -> Option<Bytes> {
        let file = self.file_for(path, etag);
        match tokio::fs::read(&file).await {
            Ok(bytes) if bytes.len() as u64 == size => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                crate::metered::CACHE_HITS.inc();
                // Mark as recently used; a failure only makes eviction less precise.
                let _ = std::fs::File::options().write(true).open(&file).and_then(|f| f.set_modified(SystemTime::now()));
                Some(Bytes::from(bytes))
            }
            _ => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                crate::metered::CACHE_MISSES.inc();
                None
            }
        }
    }

    /// Stores `bytes` as `path` at `etag` (write to a temporary file, then rename), then
    /// evicts least recently used entries until the cache is within its bound.
    pub async fn put(&self, path: &str, etag: &str, bytes: &Bytes) -> Result<(), StorageError> {
        if bytes.len() as u64 > self.max_bytes {
            return Ok(());
        }
        let _guard = self.write_lock.lock().await;
        let file = self.file_for(path, etag);
        let tmp = file.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
        let io = |e: std::io::Error| StorageError::from(e).add_context(format!("cache {path} in {}", self.dir.display()));
        tokio::fs::write(&tmp, bytes).await.map_err(io)?;
        tokio::fs::rename(&tmp, &file).await.map_err(io)?;
        self.evict().await
    }

    /// Deletes the least recently used entries until the total is at most `max_bytes`.
    async fn evict(&self) -> Result<(), StorageError> {
        let dir = self.dir.clone();
        let max = self.max_bytes;
        let evicted = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
            let mut entries = Vec::new();
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let meta = entry.metadata()?;
                if meta.is_file() {
                    entries.push((meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len(), entry.path()));
                }
            }
            let mut total: u64 = entries.iter().map(|e| e.1).sum();
            entries.sort_by_key(|e| e.0);
            let mut evicted = 0;
            for (_, len, path) in entries {
                if total <= max {
                    break;
                }
                std::fs::remove_file(&path)?;
                total -= len;
                evicted += 1;
            }
            Ok(evicted)
        })
        .await
        .map_err(|e| StorageErrorKind::Io.with_context(format!("cache eviction task: {e}")))?
        .map_err(|e| StorageError::from(e).add_context("evict from the segment cache"))?;
        self.evictions.fetch_add(evicted, Ordering::Relaxed);
        Ok(())
    }
}

/// 64-bit FNV-1a, for short stable file names.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hit_after_put_miss_on_other_etag_and_lru_eviction() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SegmentCache::open(dir.path(), 25).unwrap();
        let ten = Bytes::from(vec![7u8; 10]);
        assert!(cache.get("a/x.lance", "e1", 10).await.is_none());
        cache.put("a/x.lance", "e1", &ten).await.unwrap();
        assert_eq!(cache.get("a/x.lance", "e1", 10).await, Some(ten.clone()));
        assert!(cache.get("a/x.lance", "e2", 10).await.is_none(), "another e-tag is another object");
        cache.put("a/y.lance", "e1", &ten).await.unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(cache.get("a/x.lance", "e1", 10).await.is_some(), "touch x so y is older");
        std::thread::sleep(std::time::Duration::from_millis(20));
        cache.put("a/z.lance", "e1", &ten).await.unwrap();
        assert!(cache.get("a/y.lance", "e1", 10).await.is_none(), "least recently used is evicted");
        assert!(cache.get("a/x.lance", "e1", 10).await.is_some());
        assert_eq!(cache.stats().evictions, 1);
        // Reopening keeps the entries: a restarted node reads from disk.
        let reopened = SegmentCache::open(dir.path(), 25).unwrap();
        assert!(reopened.get("a/z.lance", "e1", 10).await.is_some());
    }
}
