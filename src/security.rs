//! A server's keys: the API keys clients must present and the cluster secret members share,
//! from flags, environment variables and the config file's `[security]` section (in that order
//! of precedence). See `grape_proto::auth` for what each allows.

use clap::Args;
use grape_proto::auth::{self, Credentials, Keys, Secret};
use serde::Deserialize;

use crate::error::CliError;

/// Security flags of every command that runs a server (`--api-key` is global: the client
/// commands send it).
#[derive(Debug, Clone, Args)]
pub struct SecurityArgs {
    /// A read-only API key: it may search, query and read, never change anything. Needs
    /// `--api-key` too.
    #[arg(long, env = "GRAPE_READ_ONLY_API_KEY", hide_env_values = true)]
    pub read_only_api_key: Option<String>,
    /// The secret cluster members share: the Raft transport, the meta service's internal
    /// methods and the leaf service admit only callers presenting it. Give every meta member
    /// and compute node the same one.
    #[arg(long, env = "GRAPE_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
}

/// `[security]` of the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySection {
    /// Like `--api-key`.
    pub api_key: Option<String>,
    /// Like `--read-only-api-key`.
    pub read_only_api_key: Option<String>,
    /// Like `--cluster-secret`.
    pub cluster_secret: Option<String>,
}

impl SecurityArgs {
    /// The keys of a server started with these flags, the global `--api-key` and `file`; also
    /// sets what the process presents to other members (the cluster secret, else the
    /// read-write key, which then stands in for it).
    pub fn keys(&self, api_key: Option<&str>, file: &SecuritySection) -> Result<Keys, CliError> {
        let pick = |flag: Option<&str>, file: &Option<String>| flag.map(str::to_string).or_else(|| file.clone()).and_then(Secret::new);
        let keys = Keys {
            read_write: pick(api_key, &file.api_key),
            read_only: pick(self.read_only_api_key.as_deref(), &file.read_only_api_key),
            cluster_secret: pick(self.cluster_secret.as_deref(), &file.cluster_secret),
        };
        if keys.read_only.is_some() && keys.read_write.is_none() {
            return Err(CliError::Usage("--read-only-api-key needs --api-key too (the key that may change things)".into()));
        }
        if keys.read_only.is_some() && keys.read_only == keys.read_write {
            return Err(CliError::Usage("--read-only-api-key must differ from --api-key".into()));
        }
        let api_key = if keys.cluster_secret.is_none() { keys.read_write.clone() } else { None };
        auth::present(Credentials { api_key, cluster_secret: keys.cluster_secret.clone() });
        Ok(keys)
    }
}

/// Sets what a client command presents: its `--api-key`.
pub fn present_client_key(api_key: Option<&str>) {
    auth::present(Credentials { api_key: api_key.and_then(Secret::new), cluster_secret: None });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_outrank_the_file_and_a_read_only_key_needs_a_read_write_one() {
        let file = SecuritySection { api_key: Some("file".into()), read_only_api_key: Some("ro".into()), cluster_secret: None };
        let args = SecurityArgs { read_only_api_key: None, cluster_secret: Some("s".into()) };
        let keys = args.keys(Some("flag"), &file).expect("valid");
        assert_eq!(keys.read_write, Secret::new("flag"));
        assert_eq!(keys.read_only, Secret::new("ro"));
        assert_eq!(keys.cluster_secret, Secret::new("s"));
        let lone = SecurityArgs { read_only_api_key: Some("ro".into()), cluster_secret: None };
        assert!(lone.keys(None, &SecuritySection::default()).is_err());
    }
}
