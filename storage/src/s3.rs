//! The S3 backend: `s3://bucket/prefix` on AWS or any S3-compatible server (MinIO, moto, …).
//!
//! Settings come, lowest precedence first, from the standard `AWS_*` environment variables
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, …) and
//! then from [`StorageOptions`] (the CLI's `--s3-*` flags). With an explicit endpoint, requests
//! are path-style (`host/bucket/key`, what MinIO expects) and plain `http://` is allowed.
//! Writes that must not overwrite use S3's conditional put (`If-None-Match: *`).

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use url::Url;

use crate::error::{StorageError, StorageErrorKind};
use crate::store::StorageOptions;

/// Request timeout when none is set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Retries of a failed request when none is set (with exponential backoff).
pub const DEFAULT_RETRIES: usize = 3;

/// Installs the process-wide TLS crypto provider once.
///
/// The dependency tree enables both of rustls's providers (ring through lance, aws-lc-rs
/// through object_store), and then rustls refuses to guess: without an installed default,
/// every HTTP client build fails with a bare "builder error".
fn ensure_tls_provider() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        // An Err means another provider was installed first, which serves as well.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// Builds the S3 store for a parsed `s3://bucket/prefix` URL.
pub fn s3_store(url: &Url, options: &StorageOptions) -> Result<(Arc<dyn ObjectStore>, Path), StorageError> {
    ensure_tls_provider();
    let shown = url.as_str();
    let bucket = url.host_str().filter(|b| !b.is_empty()).ok_or_else(|| {
        StorageErrorKind::InvalidUrl.with_context(format!("{shown:?}: an s3 url names a bucket, e.g. s3://my-bucket/grape"))
    })?;
    let root = Path::parse(url.path().trim_matches('/'))
        .map_err(|e| StorageErrorKind::InvalidUrl.with_context(format!("bad prefix in {shown:?}")).with_source(e))?;
    let endpoint = options.endpoint.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL").ok()).filter(|e| !e.is_empty());
    let timeout = options.timeout.unwrap_or(DEFAULT_TIMEOUT);
    // Client options are one value: set them first, since a later `with_client_options` would
    // replace `with_allow_http`.
    let client = ClientOptions::new()
        .with_timeout(timeout)
        .with_connect_timeout(timeout.min(Duration::from_secs(5)))
        .with_allow_http(options.allow_http || endpoint.as_deref().is_some_and(|e| e.starts_with("http://")));
    let retries = options.retries.unwrap_or(DEFAULT_RETRIES);
    let retry = RetryConfig { backoff: BackoffConfig::default(), max_retries: retries, retry_timeout: timeout * (retries as u32 + 1) };
    let mut builder = AmazonS3Builder::from_env()
        .with_client_options(client)
        .with_retry(retry)
        .with_bucket_name(bucket)
        .with_http_connector(crate::metered::MeteredConnector);
    if let Some(endpoint) = &endpoint {
        builder = builder.with_endpoint(endpoint).with_virtual_hosted_style_request(options.virtual_hosted_style);
    }
    if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() && options.region.is_none() {
        builder = builder.with_region("us-east-1");
    }
    if let Some(region) = &options.region {
        builder = builder.with_region(region);
    }
    if let Some(key) = &options.access_key_id {
        builder = builder.with_access_key_id(key);
    }
    if let Some(secret) = &options.secret_access_key {
        builder = builder.with_secret_access_key(secret);
    }
    let store = builder.build().map_err(|e| {
        StorageError::from(e).add_context(format!("configure S3 for {shown:?} (endpoint {})", endpoint.as_deref().unwrap_or("AWS")))
    })?;
    Ok((Arc::new(store), root))
}
