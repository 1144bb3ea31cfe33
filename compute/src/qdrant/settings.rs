//! What the Qdrant API keeps beyond Grape's catalog (aliases, payload indexes), kept as keys
//! of the meta group's versioned config, so every gateway sees them and they survive restarts.
//! A key set to the empty string is removed (the config keeps no deletions).

use grape_meta::Command;

use super::reply::QdrantError;
use super::QdrantApi;
use crate::error::ComputeError;
use crate::gateway::collections::outcome;

/// Prefix of alias keys: `qdrant/alias/ALIAS` = collection.
pub const ALIAS_PREFIX: &str = "qdrant/alias/";

/// Prefix of payload index keys: `qdrant/index/COLLECTION/FIELD` = its schema (JSON).
pub const INDEX_PREFIX: &str = "qdrant/index/";

/// How long a gateway waits for its own config write to be applied here.
const APPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl QdrantApi {
    /// The live (non-empty) values of the config keys under `prefix`, by the rest of the key.
    pub fn config_under(&self, prefix: &str) -> Vec<(String, String)> {
        let catalog = self.gateway.meta.applied_catalog();
        catalog
            .config
            .list(prefix)
            .filter(|(_, v)| !v.value.is_empty())
            .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_string(), v.value.clone())))
            .collect()
    }

    /// Sets config keys (an empty value removes one) in one commit each, and waits until this
    /// node has applied them.
    pub async fn put_config(&self, entries: Vec<(String, String)>) -> Result<(), QdrantError> {
        for (key, value) in entries {
            grape_meta::config::validate(&key, &value).map_err(QdrantError::wrong_input)?;
            let version = outcome(self.gateway.meta.write(Command::ConfigPut { key: key.clone(), value, expected: None }).await.map_err(ComputeError::from)?)?;
            let mut changes = self.gateway.meta.changes();
            let deadline = tokio::time::Instant::now() + APPLY_TIMEOUT;
            while self.gateway.meta.applied_catalog().config.version(&key) < version {
                if tokio::time::timeout_at(deadline, changes.changed()).await.is_err() {
                    return Err(ComputeError::Unavailable(format!("the config key {key} was written but not applied here in time")).into());
                }
            }
        }
        Ok(())
    }
}
