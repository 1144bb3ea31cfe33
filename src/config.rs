//! The config file: settings a server reads at start, for what a user would rather not type
//! on every command line (the S3 endpoint and keys, cache sizes).
//!
//! Given with `--config FILE` or `GRAPE_CONFIG`. Precedence, highest first: command-line flags,
//! environment variables (`AWS_*`, `GRAPE_S3_ENDPOINT`), the config file, built-in defaults.
//! Unknown keys are errors, so a typo is never silently ignored.
//!
//! ```toml
//! [storage]
//! url = "s3://grape/prod"           # like --storage
//! cache_dir = "/var/cache/grape"    # like --cache-dir
//! cache_bytes = 8589934592          # like --cache-bytes
//!
//! [storage.s3]
//! endpoint = "http://127.0.0.1:9000"
//! region = "us-east-1"
//! access_key_id = "minioadmin"
//! secret_access_key = "minioadmin"
//! timeout_secs = 30
//! retries = 3
//! virtual_hosted_style = false      # path-style by default when an endpoint is set
//!
//! [limits]                          # what one node accepts; see the README
//! sql_concurrency = 8
//! sql_memory_bytes = 2147483648
//!
//! [security]                        # like --api-key, --read-only-api-key, --cluster-secret
//! api_key = "…"
//! read_only_api_key = "…"
//! cluster_secret = "…"
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::CliError;

/// The whole config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `[storage]`: where segments live.
    #[serde(default)]
    pub storage: StorageSection,
    /// `[limits]`: what a node accepts (expression size and depth, concurrent requests, SQL
    /// memory, request deadline); see `grape_compute::limits::Limits` for every key.
    #[serde(default)]
    pub limits: grape_compute::limits::Limits,
    /// `[security]`: API keys and the cluster secret (see `grape_proto::auth`).
    #[serde(default)]
    pub security: crate::security::SecuritySection,
}

/// `[storage]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// Object storage URL, as `--storage`.
    pub url: Option<String>,
    /// Local segment cache directory, as `--cache-dir`.
    pub cache_dir: Option<PathBuf>,
    /// Bound of the segment cache in bytes, as `--cache-bytes`.
    pub cache_bytes: Option<u64>,
    /// `[storage.s3]`: connection settings of an S3-compatible store.
    #[serde(default)]
    pub s3: S3Section,
}

/// `[storage.s3]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Section {
    /// Endpoint of an S3-compatible server, as `--s3-endpoint` or `AWS_ENDPOINT_URL`.
    pub endpoint: Option<String>,
    /// Region, as `--s3-region` or `AWS_REGION`.
    pub region: Option<String>,
    /// Access key id, as `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// Secret access key, as `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<String>,
    /// Timeout of one request in seconds, as `--s3-timeout-secs`.
    pub timeout_secs: Option<u64>,
    /// Retries of a failed request, as `--s3-retries`.
    pub retries: Option<usize>,
    /// Virtual-hosted-style requests (`bucket.host`) even with an explicit endpoint.
    pub virtual_hosted_style: Option<bool>,
    /// Allow plain `http://` endpoints (always allowed when the endpoint says `http://`).
    pub allow_http: Option<bool>,
}

impl ConfigFile {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<ConfigFile, CliError> {
        let text = std::fs::read_to_string(path).map_err(|source| CliError::File { path: path.display().to_string(), source })?;
        Self::parse(&text).map_err(|e| CliError::Usage(format!("config file {}: {e}", path.display())))
    }

    /// Parses config text.
    pub fn parse(text: &str) -> Result<ConfigFile, toml::de::Error> {
        toml::from_str(text)
    }

    /// The file at `path` if one is given, else an empty config.
    pub fn load_optional(path: Option<&Path>) -> Result<ConfigFile, CliError> {
        path.map_or_else(|| Ok(ConfigFile::default()), Self::load)
    }
}

/// The first set value among an environment variable and a config value: the environment
/// outranks the file.
pub fn env_or(var: &str, file: &Option<String>) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty()).or_else(|| file.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_file_parses() {
        let text = "[storage]\nurl = \"s3://b/p\"\ncache_bytes = 10\n[storage.s3]\nendpoint = \"http://h:9000\"\nretries = 5\n";
        let config = ConfigFile::parse(text).expect("parses");
        assert_eq!(config.storage.url.as_deref(), Some("s3://b/p"));
        assert_eq!(config.storage.cache_bytes, Some(10));
        assert_eq!(config.storage.s3.endpoint.as_deref(), Some("http://h:9000"));
        assert_eq!(config.storage.s3.retries, Some(5));
        assert_eq!(ConfigFile::parse("").expect("empty is fine"), ConfigFile::default());
    }

    #[test]
    fn limits_parse_and_unset_ones_keep_their_defaults() {
        let config = ConfigFile::parse("[limits]\nsql_concurrency = 2\nmax_expr_depth = 100\n").expect("parses");
        assert_eq!(config.limits.sql_concurrency, 2);
        assert_eq!(config.limits.max_expr_depth, 100);
        assert_eq!(config.limits.search_queue, grape_compute::limits::Limits::default().search_queue);
        let err = ConfigFile::parse("[limits]\nsql_concurency = 2\n").expect_err("unknown key");
        assert!(err.to_string().contains("sql_concurency"), "{err}");
    }

    #[test]
    fn typos_and_wrong_types_are_errors() {
        let err = ConfigFile::parse("[storage.s3]\nendpont = \"x\"\n").expect_err("unknown key");
        assert!(err.to_string().contains("endpont"), "{err}");
        let err = ConfigFile::parse("[storage]\ncache_bytes = \"lots\"\n").expect_err("wrong type");
        assert!(err.to_string().contains("cache_bytes"), "{err}");
    }
}
