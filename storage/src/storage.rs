//! [`Storage`]: one object store and a root prefix, with segment reads and writes on top.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::RecordBatch;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};

use crate::cache::SegmentCache;
use crate::error::{StorageError, StorageErrorKind};
use crate::format::{SegmentMeta, SEGMENT_META_VERSION};
use crate::segment::{decode_lance, encode_lance};
use crate::stats::column_stats;
use crate::store::{store_from_url, StorageOptions};

/// Part size of the ranged GETs that read a large object (see [`Storage::get_sized`]).
///
/// Objects up to this size are read with one GET: a node loads many segments at once, which
/// already keeps several connections busy, and on a loopback server one GET per segment was
/// faster (`grape-bench cold-load`). Larger objects (compacted segments, index artifacts) are
/// where one connection's bandwidth is the limit on S3.
pub const READ_PART_BYTES: u64 = 32 << 20;

/// Ranged GETs of one object in flight at once.
pub const READ_PARTS_IN_FLIGHT: usize = 8;

/// An object found by [`Storage::list_objects`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Path relative to the storage root.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// When the object was written.
    pub last_modified: std::time::SystemTime,
}

/// Grape's handle on object storage: a store built from a URL and the root prefix inside it.
///
/// All paths taken and returned are relative to the root and use `/` as separator
/// (`collections/docs/shard-0/<uuid>.lance`). Cloning is cheap and shares the store, which
/// matters for `memory://`: every [`Storage::from_url`] call makes a new empty store.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    root: Path,
    url: String,
    /// Local copies of segment objects, for nodes reading from a remote store.
    cache: Option<Arc<SegmentCache>>,
    /// Bytes of object bodies fetched from the store (not from the cache), shared by clones.
    fetched: Arc<AtomicU64>,
    /// Objects larger than this are uploaded in parts.
    multipart_threshold: usize,
    /// Part size of ranged reads of large objects.
    read_part_bytes: u64,
    /// How the store was connected to (endpoint, credentials), for opening other URLs the
    /// same way (a server-side ingest's source files).
    options: StorageOptions,
}

/// Objects larger than this are uploaded with a multipart upload by default.
pub const MULTIPART_THRESHOLD_BYTES: usize = 64 << 20;
/// Part size of multipart uploads (S3 wants at least 5 MiB per part but the last).
pub const MULTIPART_PART_BYTES: usize = 16 << 20;

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Storage").field("url", &self.url).field("root", &self.root).finish()
    }
}

impl Storage {
    /// Opens the storage named by `url` (see [`crate::store`] for the accepted forms).
    pub fn from_url(url: &str) -> Result<Storage, StorageError> {
        Self::from_url_with_options(url, &StorageOptions::default())
    }

    /// Opens the storage named by `url`, with connection options for remote stores.
    pub fn from_url_with_options(url: &str, options: &StorageOptions) -> Result<Storage, StorageError> {
        let (store, root) = store_from_url(url, options)?;
        Ok(Storage { options: options.clone(), ..Storage::new(store, root, url) })
    }

    /// Wraps an existing store; `root` is the prefix all paths are relative to and `url` is only
    /// reported back by [`Storage::url`]. Its requests are counted ([`crate::metered`]).
    pub fn new(store: Arc<dyn ObjectStore>, root: Path, url: impl Into<String>) -> Storage {
        Storage {
            store: crate::metered::MeteredStore::wrap(store),
            root,
            url: url.into(),
            cache: None,
            fetched: Arc::new(AtomicU64::new(0)),
            multipart_threshold: MULTIPART_THRESHOLD_BYTES,
            read_part_bytes: READ_PART_BYTES,
            options: StorageOptions::default(),
        }
    }

    /// The connection options this storage was opened with.
    pub fn options(&self) -> &StorageOptions {
        &self.options
    }

    /// This storage with segment reads going through `cache` (see [`SegmentCache`]).
    pub fn with_cache(mut self, cache: SegmentCache) -> Storage {
        self.cache = Some(Arc::new(cache));
        self
    }

    /// Whether objects live on another machine (S3), where a local cache pays off; false for
    /// local directories and memory.
    pub fn is_remote(&self) -> bool {
        let scheme = self.url.split_once("://").map(|(s, _)| s);
        !matches!(scheme, None | Some("file") | Some("memory"))
    }

    /// The segment cache, if any.
    pub fn cache(&self) -> Option<&SegmentCache> {
        self.cache.as_deref()
    }

    /// Bytes of object bodies fetched from the store so far (cache hits not counted).
    pub fn bytes_fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }

    /// Checks that the storage can be used (the bucket exists, the credentials are accepted,
    /// the endpoint answers) by listing under the root, and says which of those failed.
    ///
    /// Servers call this at start so a wrong URL fails at once with a message naming the
    /// problem, not at the first insert.
    pub async fn check(&self) -> Result<(), StorageError> {
        let mut listing = self.store.list(Some(&self.root));
        let Some(Err(e)) = listing.next().await else { return Ok(()) };
        let err = StorageError::from(e);
        // S3 list errors arrive as generic HTTP failures; the S3 error code in the body says more.
        let text = err.to_string();
        let says = |codes: &[&str]| codes.iter().any(|c| text.contains(c));
        let hint = if err.kind() == StorageErrorKind::NotFound || says(&["NoSuchBucket"]) {
            "the bucket does not exist (create it, or fix the URL)"
        } else if err.kind() == StorageErrorKind::Unauthorized
            || says(&["InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403 Forbidden"])
        {
            "the credentials were rejected (check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        } else {
            "the store could not be reached (check the endpoint and that the server is running)"
        };
        Err(err.add_context(format!("storage {} is not usable: {hint}", self.url)))
    }

    /// The URL this storage was opened from, as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The underlying object store (paths in it include [`Storage::root`]).
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    /// The root prefix inside the object store.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The full object store path of `path`, which is relative to the root.
    ///
    /// Fails with [`StorageErrorKind::InvalidData`] for paths with empty, `.` or `..` parts.
    pub fn object_path(&self, path: &str) -> Result<Path, StorageError> {
        let relative = parse_relative(path)?;
        Ok(self.root.parts().chain(relative.parts()).collect())
    }

    /// Writes `bytes` at `path` unless an object is already there
    /// ([`StorageErrorKind::AlreadyExists`] then; the existing object is left untouched).
    ///
    /// Objects up to the multipart threshold go up in one conditional put (`If-None-Match: *`
    /// on S3), which is atomic. Larger ones are uploaded in [`MULTIPART_PART_BYTES`] parts;
    /// multipart uploads have no create-only mode in `object_store`, so existence is checked
    /// first. That check is not atomic, which is safe for segments because their paths hold a
    /// fresh UUID that no other writer can know.
    pub async fn put_if_absent(&self, path: &str, bytes: Bytes) -> Result<(), StorageError> {
        let location = self.object_path(path)?;
        let ctx = || format!("put {path}");
        if bytes.len() <= self.multipart_threshold {
            let options = PutOptions { mode: PutMode::Create, ..Default::default() };
            self.store.put_opts(&location, PutPayload::from(bytes), options).await.map_err(|e| StorageError::from(e).add_context(ctx()))?;
            return Ok(());
        }
        match self.store.head(&location).await {
            Ok(_) => return Err(StorageErrorKind::AlreadyExists.with_context(format!("{} already exists", path))),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(StorageError::from(e).add_context(ctx())),
        }
        let upload = self.store.put_multipart(&location).await.map_err(|e| StorageError::from(e).add_context(ctx()))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, MULTIPART_PART_BYTES);
        writer.put(bytes);
        writer.finish().await.map_err(|e| StorageError::from(e).add_context(format!("multipart {}", ctx())))?;
        Ok(())
    }

    /// This storage with objects larger than `bytes` uploaded in parts (default
    /// [`MULTIPART_THRESHOLD_BYTES`]).
    pub fn with_multipart_threshold(mut self, bytes: usize) -> Storage {
        self.multipart_threshold = bytes;
        self
    }

    /// This storage with large objects read as ranged GETs of `bytes` each (default
    /// [`READ_PART_BYTES`]; at least 1).
    pub fn with_read_part_bytes(mut self, bytes: u64) -> Storage {
        self.read_part_bytes = bytes.max(1);
        self
    }

    /// Reads the whole object at `path`.
    pub async fn get(&self, path: &str) -> Result<Bytes, StorageError> {
        let location = self.object_path(path)?;
        let ctx = || format!("get {path}");
        let result = self.store.get(&location).await.map_err(|e| StorageError::from(e).add_context(ctx()))?;
        let bytes = result.bytes().await.map_err(|e| StorageError::from(e).add_context(ctx()))?;
        self.fetched.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes)
    }

    /// Reads `range` of the object at `path` with one ranged GET.
    ///
    /// A range that ends past the object's end is cut short (the caller checks the length); one
    /// that starts past it is an error.
    pub async fn get_range(&self, path: &str, range: Range<u64>) -> Result<Bytes, StorageError> {
        let location = self.object_path(path)?;
        let ctx = || format!("get bytes {}..{} of {path}", range.start, range.end);
        let bytes = self.store.get_range(&location, range.clone()).await.map_err(|e| StorageError::from(e).add_context(ctx()))?;
        self.fetched.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes)
    }

    /// Reads a whole object that should have `size` bytes. Up to [`READ_PART_BYTES`] (see
    /// [`Storage::with_read_part_bytes`]) it is one GET; a larger object is fetched as ranged GETs of that size, [`READ_PARTS_IN_FLIGHT`] at
    /// a time, which is how one reader gets more than one connection's bandwidth out of S3.
    ///
    /// An object of another size is [`StorageErrorKind::Corrupt`]: its metadata and its bytes
    /// disagree.
    pub async fn get_sized(&self, path: &str, size: u64) -> Result<Bytes, StorageError> {
        let bytes = if size <= self.read_part_bytes { self.get(path).await? } else { self.get_in_parts(path, size).await? };
        if bytes.len() as u64 != size {
            return Err(StorageErrorKind::Corrupt.with_context(format!("{path} has {} bytes, its metadata says {size}", bytes.len())));
        }
        Ok(bytes)
    }

    /// The ranged GETs of [`Storage::get_sized`]. The first part's response names the object's
    /// real size, so a wrong size is found before the other parts are asked for.
    async fn get_in_parts(&self, path: &str, size: u64) -> Result<Bytes, StorageError> {
        let location = self.object_path(path)?;
        let ctx = || format!("get {path}");
        let part = self.read_part_bytes;
        let options = GetOptions { range: Some(GetRange::Bounded(0..part)), ..Default::default() };
        let first = self.store.get_opts(&location, options).await.map_err(|e| StorageError::from(e).add_context(ctx()))?;
        let actual = first.meta.size;
        let head = first.bytes().await.map_err(|e| StorageError::from(e).add_context(ctx()))?;
        self.fetched.fetch_add(head.len() as u64, Ordering::Relaxed);
        if actual != size {
            return Err(StorageErrorKind::Corrupt.with_context(format!("{path} has {actual} bytes, its metadata says {size}")));
        }
        let ranges = (part..size).step_by(part as usize).map(|start| start..(start + part).min(size));
        let mut parts = futures::stream::iter(ranges.map(|r| self.get_range(path, r))).buffered(READ_PARTS_IN_FLIGHT);
        let mut whole = BytesMut::with_capacity(size as usize);
        whole.extend_from_slice(&head);
        while let Some(part) = parts.next().await {
            whole.extend_from_slice(&part?);
        }
        Ok(whole.freeze())
    }

    /// Reads a whole object through the cache: a HEAD for its e-tag, then local disk if the
    /// cache has that version, else the store (and the cache keeps a copy; a failure to cache
    /// is logged, not returned).
    async fn get_cached(&self, cache: &SegmentCache, path: &str) -> Result<Bytes, StorageError> {
        let location = self.object_path(path)?;
        let head = self.store.head(&location).await.map_err(|e| StorageError::from(e).add_context(format!("head {path}")))?;
        let etag = head.e_tag.clone().unwrap_or_else(|| format!("{}-{}", head.size, head.last_modified.timestamp_millis()));
        if let Some(bytes) = cache.get(path, &etag, head.size).await {
            return Ok(bytes);
        }
        let bytes = self.get_sized(path, head.size).await?;
        if let Err(e) = cache.put(path, &etag, &bytes).await {
            tracing::warn!(error = %e, "could not cache segment object");
        }
        Ok(bytes)
    }

    /// Deletes the object at `path`; deleting a missing object succeeds.
    pub async fn delete(&self, path: &str) -> Result<(), StorageError> {
        let location = self.object_path(path)?;
        match self.store.delete(&location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(StorageError::from(e).add_context(format!("delete {path}"))),
        }
    }

    /// Lists the objects under the directory-like `prefix` (`""` for everything), as paths
    /// relative to the root with their sizes in bytes, sorted by path.
    ///
    /// `prefix` matches whole path parts: `a/b` lists `a/b/c` but not `a/bc`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StorageError> {
        Ok(self.list_objects(prefix).await?.into_iter().map(|o| (o.path, o.size)).collect())
    }

    /// Like [`Storage::list`], with each object's last-modified time.
    pub async fn list_objects(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let location = self.object_path(prefix)?;
        let location = (!location.as_ref().is_empty()).then_some(location);
        let metas: Vec<_> = self
            .store
            .list(location.as_ref())
            .try_collect()
            .await
            .map_err(|e| StorageError::from(e).add_context(format!("list {prefix:?}")))?;
        let mut out: Vec<ObjectInfo> = metas
            .into_iter()
            .map(|meta| {
                let path = match meta.location.prefix_match(&self.root) {
                    Some(parts) => parts.collect::<Path>().to_string(),
                    None => meta.location.to_string(),
                };
                ObjectInfo { path, size: meta.size, last_modified: meta.last_modified.into() }
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Writes `batches` (one schema, at least one batch) as one new immutable Lance segment of
    /// `shard` at `{dir}/shard-{shard}/{uuid}.lance`, and returns its metadata.
    ///
    /// The upload is create-only, so an existing object is never overwritten. The segment is
    /// only staged: it becomes visible when the meta service commits the returned
    /// [`SegmentMeta`] to the shard's manifest; until then it is an orphan for garbage
    /// collection if the commit never happens.
    pub async fn write_segment(&self, dir: &str, shard: u32, batches: &[RecordBatch]) -> Result<SegmentMeta, StorageError> {
        let id = uuid::Uuid::new_v4().to_string();
        let path = shard_object(dir, shard, &format!("{id}.lance"))?;
        let ctx = || format!("write segment {path}");
        let encoded = encode_lance(batches).await.map_err(|e| e.add_context(ctx()))?;
        let size_bytes = encoded.bytes.len() as u64;
        self.put_if_absent(&path, encoded.bytes).await.map_err(|e| e.add_context(ctx()))?;
        let keys_path = self.write_segment_keys(&path, batches).await?;
        tracing::debug!(%path, rows = encoded.rows, size_bytes, "wrote segment");
        Ok(SegmentMeta {
            format_version: SEGMENT_META_VERSION,
            id,
            shard,
            path,
            rows: encoded.rows,
            size_bytes,
            columns: column_stats(batches),
            keys_path,
            seq: 0,
            ..SegmentMeta::default()
        })
    }

    /// Writes the keys file of the segment at `segment_path` (same path, `.keys` instead of
    /// `.lance`), if its rows have a primary-key column.
    async fn write_segment_keys(&self, segment_path: &str, batches: &[RecordBatch]) -> Result<Option<String>, StorageError> {
        let columns: Option<Vec<&dyn arrow::array::Array>> =
            batches.iter().map(|b| b.column_by_name(crate::keys::KEY_COLUMN).map(|c| c.as_ref())).collect();
        let Some(columns) = columns else { return Ok(None) };
        let keys = arrow::compute::concat(&columns)
            .map_err(|e| StorageErrorKind::InvalidData.with_context(format!("keys of segment {segment_path}")).with_source(e))?;
        let path = format!("{}.keys", segment_path.trim_end_matches(".lance"));
        self.write_keys(&path, &keys).await?;
        Ok(Some(path))
    }

    /// Reads a whole immutable object (a segment, an index artifact) that should have `size`
    /// bytes: through the local cache when this storage has one, else as [`Storage::get_sized`].
    #[tracing::instrument(name = "storage.read", skip(self), level = "debug")]
    pub async fn read_object(&self, path: &str, size: u64) -> Result<Bytes, StorageError> {
        let bytes = match &self.cache {
            Some(cache) => self.get_cached(cache, path).await?,
            None => self.get_sized(path, size).await?,
        };
        if bytes.len() as u64 != size {
            return Err(StorageErrorKind::Corrupt.with_context(format!("{path} has {} bytes, its metadata says {size}", bytes.len())));
        }
        Ok(bytes)
    }

    /// Reads a whole segment back as Arrow batches, in the order written.
    ///
    /// A missing object is [`StorageErrorKind::NotFound`]; an object whose size, format or row
    /// count does not match `meta` is [`StorageErrorKind::Corrupt`].
    pub async fn read_segment(&self, meta: &SegmentMeta) -> Result<Vec<RecordBatch>, StorageError> {
        let path = meta.path.as_str();
        let ctx = || format!("read segment {path}");
        let bytes = self.read_object(path, meta.size_bytes).await.map_err(|e| e.add_context(ctx()))?;
        let batches = decode_lance(bytes, path).await.map_err(|e| e.add_context(ctx()))?;
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        if rows != meta.rows {
            return Err(StorageErrorKind::Corrupt.with_context(format!("segment {path} has {rows} rows, its metadata says {}", meta.rows)));
        }
        Ok(batches)
    }
}

/// The path of object `name` of `shard` under `dir`: `{dir}/shard-{shard}/{name}`.
pub(crate) fn shard_object(dir: &str, shard: u32, name: &str) -> Result<String, StorageError> {
    Ok(parse_relative(dir)?.join(format!("shard-{shard}")).join(name).to_string())
}

/// Parses a relative path, refusing empty, `.` and `..` parts.
fn parse_relative(path: &str) -> Result<Path, StorageError> {
    Path::parse(path).map_err(|e| StorageErrorKind::InvalidData.with_context(format!("invalid storage path {path:?}")).with_source(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_s3_storage_is_remote() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!Storage::from_url("memory://").unwrap().is_remote());
        assert!(!Storage::from_url(&format!("file://{}", dir.path().display())).unwrap().is_remote());
        assert!(!Storage::from_url(&dir.path().display().to_string()).unwrap().is_remote());
        let options = StorageOptions { endpoint: Some("http://127.0.0.1:1".into()), ..Default::default() };
        assert!(Storage::from_url_with_options("s3://bucket/x", &options).unwrap().is_remote());
    }

    #[test]
    fn object_paths_join_the_root() {
        let storage = Storage::from_url("memory:///root/x").expect("memory");
        assert_eq!(storage.object_path("a/b.lance").expect("path").as_ref(), "root/x/a/b.lance");
        assert_eq!(storage.object_path("").expect("path").as_ref(), "root/x");
        let err = storage.object_path("a/../b").err().expect("dot-dot refused");
        assert_eq!(err.kind(), StorageErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn list_is_relative_to_the_root() {
        let storage = Storage::from_url("memory:///root").expect("memory");
        storage.put_if_absent("a/b", Bytes::from_static(b"12")).await.expect("put");
        storage.put_if_absent("a/c/d", Bytes::from_static(b"345")).await.expect("put");
        storage.put_if_absent("ab", Bytes::from_static(b"6")).await.expect("put");
        let all = storage.list("").await.expect("list");
        assert_eq!(all, vec![("a/b".into(), 2), ("a/c/d".into(), 3), ("ab".into(), 1)]);
        assert_eq!(storage.list("a").await.expect("list").len(), 2);
    }
}
