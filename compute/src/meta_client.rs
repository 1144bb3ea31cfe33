//! What compute needs from the meta service, as one trait.
//!
//! In `grape dev` the meta node lives in the same process and implements this directly; when
//! meta runs as its own process group, a gRPC client implements it. Nothing else in compute
//! knows which one it talks to.

use std::sync::Arc;

use async_trait::async_trait;
use grape_meta::catalog::{Catalog, Collection};
use grape_meta::{Command, CommandResult, MetaError, MetaNode, MetaStatus};
use tokio::sync::watch;

use crate::error::ComputeError;

/// The meta service as compute nodes and gateways use it.
#[async_trait]
pub trait MetaClient: Send + Sync + 'static {
    /// Commits a command through Raft and returns its outcome.
    async fn write(&self, cmd: Command) -> Result<CommandResult, MetaError>;
    /// The catalog, read linearizably from the leader.
    async fn catalog(&self) -> Result<Catalog, MetaError>;
    /// The catalog as last applied on the member this client follows (may lag the leader);
    /// shared, not copied, since every query reads it.
    fn applied_catalog(&self) -> Arc<Catalog>;
    /// Changes whenever the applied catalog may have changed.
    fn changes(&self) -> watch::Receiver<u64>;
    /// Health and Raft state of the meta group.
    async fn status(&self) -> Result<MetaStatus, MetaError>;
    /// Why the applied catalog has stopped following the group, while it has: a change this
    /// node cannot apply (say, from a meta group of another Grape version) freezes its catalog,
    /// and `grape status` must say so. `None` when it follows (always, for an in-process meta).
    fn follow_error(&self) -> Option<String> {
        None
    }
}

#[async_trait]
impl MetaClient for MetaNode {
    async fn write(&self, cmd: Command) -> Result<CommandResult, MetaError> {
        MetaNode::write(self, cmd).await
    }

    async fn catalog(&self) -> Result<Catalog, MetaError> {
        self.read_catalog().await
    }

    fn applied_catalog(&self) -> Arc<Catalog> {
        self.catalog_snapshot()
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.watch()
    }

    async fn status(&self) -> Result<MetaStatus, MetaError> {
        Ok(MetaNode::status(self).await)
    }
}

/// Waits until the catalog `meta` follows has `collection` at `version` or later, or
/// `timeout` passes. Fails with `NotFound` if the collection does not exist and
/// `Unavailable` on timeout.
pub async fn wait_for_version(
    meta: &dyn MetaClient,
    collection: &str,
    version: u64,
    timeout: std::time::Duration,
) -> Result<Collection, ComputeError> {
    let mut changes = meta.changes();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        changes.borrow_and_update();
        let current = meta.applied_catalog().collections.get(collection).cloned();
        match current {
            Some(c) if c.version >= version => return Ok(c),
            None if version == 0 => return Err(ComputeError::NotFound(format!("collection \"{collection}\" does not exist"))),
            _ => {}
        }
        if tokio::time::timeout_at(deadline, changes.changed()).await.is_err() {
            return match meta.applied_catalog().collections.get(collection) {
                None => Err(ComputeError::NotFound(format!("collection \"{collection}\" does not exist"))),
                Some(c) => Err(ComputeError::Unavailable(format!(
                    "collection \"{collection}\" is at version {} on this node, {version} was asked for",
                    c.version
                ))),
            };
        }
    }
}
