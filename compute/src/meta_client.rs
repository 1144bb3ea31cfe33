//! What compute needs from the meta service, as one trait.
//!
//! In `grape dev` the meta node lives in the same process and implements this directly; when
//! meta runs as its own process group, a gRPC client implements it. Nothing else in compute
//! knows which one it talks to.

use std::sync::Arc;

use async_trait::async_trait;
use grape_meta::catalog::Catalog;
use grape_meta::{Command, CommandResult, MetaError, MetaNode, MetaStatus};
use tokio::sync::watch;

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
