//! The conformance suite on every backend that needs no server.

use grape_storage::{Storage, StorageErrorKind};

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

#[test]
fn s3_is_not_built_yet() {
    let err = Storage::from_url("s3://bucket/prefix").err().expect("s3 refused");
    assert_eq!(err.kind(), StorageErrorKind::InvalidUrl);
    assert!(err.to_string().contains("s3:// storage is not built yet"), "{err}");
}
