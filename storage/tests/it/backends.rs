//! The conformance suite on every backend: in memory, on local disk, and on a real
//! S3-compatible server on loopback.

use grape_storage::testing::S3TestServer;
use grape_storage::{SegmentCache, Storage, StorageErrorKind};

use crate::conformance::storage_test_suite;

#[tokio::test]
async fn memory() {
    let storage = Storage::from_url("memory://").expect("memory storage");
    storage_test_suite(&storage).await;
}

#[tokio::test]
async fn memory_with_prefix() {
    let storage = Storage::from_url("memory:///some/root").expect("memory storage");
    storage_test_suite(&storage).await;
}

#[tokio::test]
async fn file_url() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}/grape", tmp.path().display());
    let storage = Storage::from_url(&url).expect("file storage");
    assert_eq!(storage.url(), url);
    storage_test_suite(&storage).await;
    // Objects really are files under the directory.
    let files: Vec<_> = std::fs::read_dir(tmp.path().join("grape/collections/docs")).expect("collection dir").collect();
    assert!(!files.is_empty());
}

#[tokio::test]
async fn plain_directory_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("plain");
    let storage = Storage::from_url(&dir.display().to_string()).expect("path storage");
    storage_test_suite(&storage).await;
}

#[tokio::test]
async fn file_storage_survives_reopening() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}", tmp.path().display());
    let batch = crate::data::batch(0, 10);
    let meta = Storage::from_url(&url).expect("open").write_segment("c", 0, std::slice::from_ref(&batch)).await.expect("write");
    let reopened = Storage::from_url(&url).expect("reopen");
    let read = reopened.read_segment(&meta).await.expect("read");
    assert_eq!(read, vec![batch]);
}

#[tokio::test]
async fn memory_urls_are_separate_stores() {
    let a = Storage::from_url("memory://").expect("a");
    let b = Storage::from_url("memory://").expect("b");
    let meta = a.write_segment("c", 0, &[crate::data::batch(0, 3)]).await.expect("write");
    let err = b.read_segment(&meta).await.err().expect("not in b");
    assert_eq!(err.kind(), StorageErrorKind::NotFound);
    // Clones share the store.
    a.clone().read_segment(&meta).await.expect("clone reads");
}

/// The same suite over real HTTP against the loopback S3 server that `minio/` starts.
#[tokio::test]
async fn s3_server() {
    let server = S3TestServer::start().expect("start the S3 test server");
    server.create_bucket("grape").expect("bucket");
    let storage = Storage::from_url_with_options("s3://grape/suite", &server.options()).expect("s3 storage");
    storage.check().await.expect("usable");
    let attempts = || grape_storage::metered::HTTP_ATTEMPTS.with_label_values(&["GET"]).get();
    let before = attempts();
    storage_test_suite(&storage).await;
    assert!(attempts() > before, "the S3 client's HTTP requests are counted");
}

/// A missing bucket and an unreachable endpoint each name the problem.
#[tokio::test]
async fn s3_misconfigurations_say_what_is_wrong() {
    let server = S3TestServer::start().expect("start the S3 test server");
    server.create_bucket("grape").expect("bucket");
    let missing = Storage::from_url_with_options("s3://no-such-bucket/x", &server.options()).expect("store");
    let err = missing.check().await.expect_err("missing bucket");
    assert!(err.to_string().contains("the bucket does not exist"), "{err}");

    let mut options = server.options();
    options.endpoint = Some(format!("http://127.0.0.1:{}", free_port()));
    options.retries = Some(0);
    options.timeout = Some(std::time::Duration::from_secs(2));
    let unreachable = Storage::from_url_with_options("s3://grape/x", &options).expect("store");
    let failures = || grape_storage::metered::HTTP_RETRYABLE.with_label_values(&["GET"]).get();
    let before = failures();
    let err = unreachable.check().await.expect_err("unreachable");
    assert!(failures() > before, "a request that got no answer is counted as one the client retries");
    assert!(err.to_string().contains("could not be reached"), "{err}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Segment reads from S3 go through the local cache: the second read, and a read by a
/// restarted node with the same cache directory, fetch no object body from S3.
#[tokio::test]
async fn s3_reads_go_through_the_local_cache() {
    let server = S3TestServer::start().expect("start the S3 test server");
    server.create_bucket("grape").expect("bucket");
    let dir = tempfile::tempdir().expect("tempdir");
    let open = || {
        let cache = SegmentCache::open(dir.path(), 1 << 30).expect("cache");
        Storage::from_url_with_options("s3://grape/cached", &server.options()).expect("s3 storage").with_cache(cache)
    };
    let storage = open();
    let batch = crate::data::batch(0, 500);
    let meta = storage.write_segment("c", 0, std::slice::from_ref(&batch)).await.expect("write");
    assert_eq!(storage.read_segment(&meta).await.expect("first read"), vec![batch.clone()]);
    assert_eq!(storage.bytes_fetched(), meta.size_bytes);
    assert_eq!(storage.read_segment(&meta).await.expect("second read"), vec![batch.clone()]);
    assert_eq!(storage.bytes_fetched(), meta.size_bytes, "second read comes from the cache");
    let stats = storage.cache().expect("cache").stats();
    assert_eq!((stats.hits, stats.misses), (1, 1));

    let restarted = open();
    assert_eq!(restarted.read_segment(&meta).await.expect("read after restart"), vec![batch]);
    assert_eq!(restarted.bytes_fetched(), 0, "a restarted node reloads from local disk");
}

/// Segments above the multipart threshold go up in parts and read back whole; an existing
/// path is still never overwritten.
#[tokio::test]
async fn s3_large_segments_use_multipart_uploads() {
    let server = S3TestServer::start().expect("start the S3 test server");
    server.create_bucket("grape").expect("bucket");
    let storage =
        Storage::from_url_with_options("s3://grape/big", &server.options()).expect("s3 storage").with_multipart_threshold(1 << 20);
    let batch = crate::data::batch(0, 40_000);
    let meta = storage.write_segment("c", 0, std::slice::from_ref(&batch)).await.expect("multipart write");
    assert!(meta.size_bytes > 16 << 20, "the segment spans more than one part: {} bytes", meta.size_bytes);
    let read = storage.read_segment(&meta).await.expect("read");
    assert_eq!(read.iter().map(|b| b.num_rows()).sum::<usize>(), 40_000);
    let err = storage.put_if_absent(&meta.path, bytes::Bytes::from(vec![0u8; 2 << 20])).await.expect_err("exists");
    assert_eq!(err.kind(), StorageErrorKind::AlreadyExists);
}
