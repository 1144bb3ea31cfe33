//! A server's keys: the API keys clients must present and the cluster secret members share,
//! from flags, environment variables and the config file's `[security]` section (in that order
//! of precedence). See `grape_proto::auth` for what each allows.

use clap::Args;
use std::path::{Path, PathBuf};

use grape_proto::auth::{self, Credentials, Keys, Secret};
use grape_proto::tls;
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
    /// TLS certificate chain (PEM) of every port of this process; with `--tls-key`.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA certificate (PEM) this process trusts when it calls other members over TLS (every
    /// member of a TLS cluster needs it).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
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
    /// Like `--tls-cert`.
    pub tls_cert: Option<PathBuf>,
    /// Like `--tls-key`.
    pub tls_key: Option<PathBuf>,
    /// Like `--tls-ca`.
    pub tls_ca: Option<PathBuf>,
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

    /// Turns on TLS for this server's ports (`--tls-cert`/`--tls-key`, else the file's) and
    /// for its calls to other members (`--tls-ca`, else the file's).
    pub fn use_tls(&self, file: &SecuritySection) -> Result<(), CliError> {
        let cert = self.tls_cert.clone().or_else(|| file.tls_cert.clone());
        let key = self.tls_key.clone().or_else(|| file.tls_key.clone());
        match (cert, key) {
            (Some(cert), Some(key)) => tls::use_server_tls(tls::server_config(&tls::TlsFiles { cert, key, ca: None }).map_err(tls_error)?),
            (None, None) => {}
            _ => return Err(CliError::Usage("TLS needs both a certificate and its key (--tls-cert and --tls-key)".into())),
        }
        if let Some(ca) = self.tls_ca.clone().or_else(|| file.tls_ca.clone()) {
            tls::use_client_tls(tls::client_config(Some(&ca), None).map_err(tls_error)?);
        }
        Ok(())
    }
}

fn tls_error(e: tls::TlsError) -> CliError {
    CliError::Usage(format!("TLS: {e}"))
}

/// Makes a client command speak TLS to its endpoint, trusting the CA of `--ca-cert`.
pub fn use_client_ca(ca: Option<&Path>) -> Result<(), CliError> {
    if let Some(ca) = ca {
        tls::use_client_tls(tls::client_config(Some(ca), None).map_err(tls_error)?);
    }
    Ok(())
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
        let file = SecuritySection { api_key: Some("file".into()), read_only_api_key: Some("ro".into()), ..Default::default() };
        let args = SecurityArgs { read_only_api_key: None, cluster_secret: Some("s".into()), tls_cert: None, tls_key: None, tls_ca: None };
        let keys = args.keys(Some("flag"), &file).expect("valid");
        assert_eq!(keys.read_write, Secret::new("flag"));
        assert_eq!(keys.read_only, Secret::new("ro"));
        assert_eq!(keys.cluster_secret, Secret::new("s"));
        let lone = SecurityArgs { read_only_api_key: Some("ro".into()), cluster_secret: None, tls_cert: None, tls_key: None, tls_ca: None };
        assert!(lone.keys(None, &SecuritySection::default()).is_err());
    }
}
