//! Prometheus metrics of object storage: every request Grape makes (segments, index
//! artifacts, listings, deletes), by operation, with bytes moved and failures, counted by a
//! wrapper around the store ([`MeteredStore`]); and the local segment cache's hits and misses.
//!
//! Retries happen inside `object_store`'s client, under the operation: an operation that
//! succeeded after retries counts once, as a success. The S3 client's HTTP attempts are counted
//! beneath it ([`MeteredConnector`]): every attempt by HTTP method, and the attempts that
//! failed in a way the client retries (no answer, 5xx, 429), which are the retries while the
//! retry budget lasts.

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::client::{HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService, ReqwestConnector};
use object_store::{
    ClientOptions, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions,
    PutPayload, PutResult, Result,
};
use prometheus::{register_int_counter, register_int_counter_vec, IntCounter, IntCounterVec};

/// `grape_object_store_requests_total{operation}`.
pub static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("grape_object_store_requests_total", "Object storage requests, by operation", &["operation"])
        .expect("a new metric name")
});

/// `grape_object_store_errors_total{operation}`.
pub static ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("grape_object_store_errors_total", "Object storage requests that failed, by operation", &["operation"])
        .expect("a new metric name")
});

/// `grape_object_store_bytes_total{operation}`.
pub static BYTES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("grape_object_store_bytes_total", "Bytes read (get) and written (put) in object storage", &["operation"])
        .expect("a new metric name")
});

/// `grape_cache_hits_total`: segment objects read from the local cache.
pub static CACHE_HITS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("grape_cache_hits_total", "Segment objects read from the local cache").expect("a new metric name")
});

/// `grape_cache_misses_total`: segment objects the local cache did not have.
pub static CACHE_MISSES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("grape_cache_misses_total", "Segment objects the local cache did not have").expect("a new metric name")
});

/// `grape_object_store_http_attempts_total{method}`.
pub static HTTP_ATTEMPTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("grape_object_store_http_attempts_total", "HTTP requests to S3, retries included, by method", &["method"])
        .expect("a new metric name")
});

/// `grape_object_store_http_retryable_failures_total{method}`.
pub static HTTP_RETRYABLE: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "grape_object_store_http_retryable_failures_total",
        "HTTP requests to S3 that failed in a way the client retries (no answer, 5xx, 429), by method",
        &["method"]
    )
    .expect("a new metric name")
});

/// The S3 client's HTTP connector: `object_store`'s own (reqwest), with every attempt
/// counted ([`HTTP_ATTEMPTS`], [`HTTP_RETRYABLE`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct MeteredConnector;

impl HttpConnector for MeteredConnector {
    fn connect(&self, options: &ClientOptions) -> Result<HttpClient> {
        Ok(HttpClient::new(MeteredHttp(ReqwestConnector::default().connect(options)?)))
    }
}

/// An HTTP client whose attempts are counted.
#[derive(Debug)]
struct MeteredHttp(HttpClient);

#[async_trait]
impl HttpService for MeteredHttp {
    async fn call(&self, request: HttpRequest) -> std::result::Result<HttpResponse, HttpError> {
        let method = request.method().as_str().to_string();
        HTTP_ATTEMPTS.with_label_values(&[&method]).inc();
        let answer = self.0.execute(request).await;
        let retryable = match &answer {
            Err(_) => true,
            Ok(response) => response.status().is_server_error() || response.status().as_u16() == 429,
        };
        if retryable {
            HTTP_RETRYABLE.with_label_values(&[&method]).inc();
        }
        answer
    }
}

/// Counts request `op` and, if it failed, the failure; passes the result on.
fn counted<T>(op: &str, result: Result<T>) -> Result<T> {
    REQUESTS.with_label_values(&[op]).inc();
    if result.is_err() {
        ERRORS.with_label_values(&[op]).inc();
    }
    result
}

/// An object store whose requests are counted (see the module doc).
pub struct MeteredStore {
    inner: Arc<dyn ObjectStore>,
}

impl MeteredStore {
    /// `inner`, counted.
    pub fn wrap(inner: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(MeteredStore { inner })
    }
}

impl fmt::Debug for MeteredStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MeteredStore({:?})", self.inner)
    }
}

impl fmt::Display for MeteredStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

#[async_trait]
impl ObjectStore for MeteredStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        let size = payload.content_length() as u64;
        let result = counted("put", self.inner.put_opts(location, payload, opts).await);
        if result.is_ok() {
            BYTES.with_label_values(&["put"]).inc_by(size);
        }
        result
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        counted("put_multipart", self.inner.put_multipart_opts(location, opts).await)
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let op = if options.head { "head" } else { "get" };
        let result = counted(op, self.inner.get_opts(location, options).await);
        if let (Ok(got), "get") = (&result, op) {
            BYTES.with_label_values(&["get"]).inc_by(got.range.end.saturating_sub(got.range.start));
        }
        result
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let result = counted("get", self.inner.get_ranges(location, ranges).await);
        if let Ok(parts) = &result {
            BYTES.with_label_values(&["get"]).inc_by(parts.iter().map(|p| p.len() as u64).sum());
        }
        result
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations).map(|deleted| counted("delete", deleted)).boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        REQUESTS.with_label_values(&["list"]).inc();
        self.inner.list(prefix)
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        REQUESTS.with_label_values(&["list"]).inc();
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        counted("list", self.inner.list_with_delimiter(prefix).await)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        counted("copy", self.inner.copy_opts(from, to, options).await)
    }
}
