//! Building one [`ObjectStore`] from a storage URL, the way `object_store::parse_url` does.
//!
//! | URL                      | Store                                                        |
//! |--------------------------|--------------------------------------------------------------|
//! | `file:///abs/dir`        | `LocalFileSystem` rooted at `/abs/dir` (created if missing)   |
//! | `/abs/dir`, `rel/dir`    | the same, for a plain filesystem path (relative to the cwd)   |
//! | `memory://[prefix]`      | a fresh `InMemory` store (each call gets its own)             |
//! | `s3://bucket/prefix`     | S3 or an S3-compatible server, see [`crate::s3`]              |

use std::path::PathBuf;
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::ObjectStore;
use url::Url;

use crate::error::{StorageError, StorageErrorKind};

/// Connection options for remote stores (S3-compatible servers such as MinIO).
///
/// Unset fields fall back to the standard `AWS_*` environment variables, then to defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageOptions {
    /// Endpoint URL of an S3-compatible server, e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    /// Region, e.g. `us-east-1`.
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Use virtual-hosted-style requests (`bucket.host/key`) instead of path-style
    /// (`host/bucket/key`, what MinIO expects).
    pub virtual_hosted_style: bool,
    /// Allow plain `http://` endpoints (implied by an `http://` endpoint).
    pub allow_http: bool,
    /// Timeout of one request (default [`crate::s3::DEFAULT_TIMEOUT`]).
    pub timeout: Option<std::time::Duration>,
    /// Retries of a failed request, with exponential backoff (default [`crate::s3::DEFAULT_RETRIES`]).
    pub retries: Option<usize>,
}

/// Builds the store for `url` and the root prefix inside it that all paths are relative to.
pub fn store_from_url(url: &str, options: &StorageOptions) -> Result<(Arc<dyn ObjectStore>, Path), StorageError> {
    let trimmed = url.trim();
    if trimmed.is_empty() {
        return Err(StorageErrorKind::InvalidUrl.with_context("empty storage url"));
    }
    if !trimmed.contains("://") {
        return local_store(PathBuf::from(trimmed), url);
    }
    let parsed =
        Url::parse(trimmed).map_err(|e| StorageErrorKind::InvalidUrl.with_context(format!("cannot parse {url:?}")).with_source(e))?;
    match parsed.scheme() {
        "file" => {
            if !matches!(parsed.host_str(), None | Some("") | Some("localhost")) {
                return Err(StorageErrorKind::InvalidUrl.with_context(format!("{url:?}: file:// urls must be absolute local paths")));
            }
            let dir =
                parsed.to_file_path().map_err(|()| StorageErrorKind::InvalidUrl.with_context(format!("{url:?} is not a local path")))?;
            local_store(dir, url)
        }
        "memory" => {
            let mut prefix = String::new();
            if let Some(host) = parsed.host_str() {
                prefix.push_str(host);
            }
            prefix.push_str(parsed.path());
            let root = Path::parse(prefix.trim_matches('/'))
                .map_err(|e| StorageErrorKind::InvalidUrl.with_context(format!("bad prefix in {url:?}")).with_source(e))?;
            Ok((Arc::new(InMemory::new()), root))
        }
        "s3" | "s3a" => crate::s3::s3_store(&parsed, options),
        other => Err(StorageErrorKind::InvalidUrl
            .with_context(format!("{url:?}: unsupported scheme {other:?} (use file://, s3://, memory:// or a directory path)"))),
    }
}

/// A `LocalFileSystem` rooted at `dir`, creating the directory first.
fn local_store(dir: PathBuf, url: &str) -> Result<(Arc<dyn ObjectStore>, Path), StorageError> {
    let dir = if dir.is_absolute() {
        dir
    } else {
        std::env::current_dir().map_err(|e| StorageError::from(e).add_context("resolve the current directory"))?.join(dir)
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| StorageError::from(e).add_context(format!("create storage directory {} for {url:?}", dir.display())))?;
    let store = LocalFileSystem::new_with_prefix(&dir)
        .map_err(|e| StorageError::from(e).add_context(format!("open storage directory {}", dir.display())))?;
    Ok((Arc::new(store), Path::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(url: &str) -> StorageErrorKind {
        match store_from_url(url, &StorageOptions::default()) {
            Ok(_) => panic!("{url} should fail"),
            Err(e) => e.kind(),
        }
    }

    #[test]
    fn s3_urls_need_a_bucket() {
        assert_eq!(kind_of("s3:///prefix-only"), StorageErrorKind::InvalidUrl);
        let options = StorageOptions { endpoint: Some("http://127.0.0.1:1".into()), ..Default::default() };
        let (_, root) = store_from_url("s3://bucket/a/b", &options).expect("s3 store");
        assert_eq!(root.as_ref(), "a/b");
    }

    #[test]
    fn bad_urls() {
        assert_eq!(kind_of(""), StorageErrorKind::InvalidUrl);
        assert_eq!(kind_of("gs://bucket"), StorageErrorKind::InvalidUrl);
        assert_eq!(kind_of("file://otherhost/x"), StorageErrorKind::InvalidUrl);
    }

    #[test]
    fn memory_with_and_without_prefix() {
        let (_, root) = store_from_url("memory://", &StorageOptions::default()).expect("memory");
        assert_eq!(root, Path::default());
        let (_, root) = store_from_url("memory:///a/b", &StorageOptions::default()).expect("memory");
        assert_eq!(root.as_ref(), "a/b");
        let (_, root) = store_from_url("memory://bucket/x", &StorageOptions::default()).expect("memory");
        assert_eq!(root.as_ref(), "bucket/x");
    }

    #[test]
    fn file_url_and_plain_path_create_the_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("a").join("b");
        let url = format!("file://{}", dir.display());
        store_from_url(&url, &StorageOptions::default()).expect("file url");
        assert!(dir.is_dir());
        let plain = tmp.path().join("plain");
        store_from_url(&plain.display().to_string(), &StorageOptions::default()).expect("plain path");
        assert!(plain.is_dir());
    }
}
