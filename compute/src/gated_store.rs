//! A test-only object store whose reads under some prefix wait behind a gate: a way to hold a
//! segment load in progress for as long as a test needs, without timing.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, Result,
};
use tokio::sync::watch;

/// An in-memory store whose reads of paths starting with a prefix wait while the gate is shut.
#[derive(Debug)]
pub struct GatedStore {
    inner: InMemory,
    prefix: String,
    open: watch::Sender<bool>,
    waiting: AtomicUsize,
}

impl GatedStore {
    /// A store gating reads under `prefix`, open at first.
    pub fn new(prefix: &str) -> Arc<GatedStore> {
        Arc::new(GatedStore {
            inner: InMemory::new(),
            prefix: prefix.to_string(),
            open: watch::Sender::new(true),
            waiting: AtomicUsize::new(0),
        })
    }

    /// Opens (`true`) or shuts the gate.
    pub fn set_open(&self, open: bool) {
        self.open.send_replace(open);
    }

    /// Reads waiting at the gate now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    async fn pass(&self, location: &Path) {
        if location.as_ref().starts_with(&self.prefix) {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let _ = self.open.subscribe().wait_for(|open| *open).await;
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl fmt::Display for GatedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GatedStore({})", self.prefix)
    }
}

#[async_trait]
impl ObjectStore for GatedStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.pass(location).await;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
