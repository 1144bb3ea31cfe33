//! `grape dev`: meta (a single-member Raft group), one compute node and the gateway in one
//! process, on one data directory.

use std::path::Path;
use std::sync::Arc;

use grape_meta::service::MetaService;
use grape_meta::MetaNode;
use grape_proto::auth::Keys;

use crate::cli::StorageSettings;
use crate::error::CliError;
use grape_compute::limits::Limits;
use grape_compute::router::Role;

use crate::node::{open_storage, wait_for_signal, GcSettings, MetaEndpoint, NodeServer};

/// A running single-process Grape.
pub struct DevServer {
    /// The meta node, for an orderly shutdown.
    meta: Arc<MetaNode>,
    /// The node serving the public API and the meta service.
    node: NodeServer,
}

impl DevServer {
    /// Starts meta, the engine and the gateway on `data_dir`, listening on `listen`, with
    /// `limits` on requests, admitting the callers `keys` allow, on `serving_threads` serving
    /// threads (0: on the shared runtime).
    ///
    /// Fails before serving anything if the storage is unusable (missing bucket, rejected
    /// credentials, unreachable endpoint), with a message that says which.
    pub async fn start(
        data_dir: &Path,
        listen: &str,
        storage: &StorageSettings,
        gc: &GcSettings,
        limits: Limits,
        keys: Keys,
        serving_threads: usize,
    ) -> Result<DevServer, CliError> {
        std::fs::create_dir_all(data_dir).map_err(|source| CliError::File { path: data_dir.display().to_string(), source })?;
        let (storage, _) = open_storage(data_dir, storage).await?;
        let meta = MetaNode::open(1, &data_dir.join("meta")).await.map_err(|e| CliError::Server(format!("meta: {e}")))?;
        // One port serves the public API and the meta service (for `grape status` and
        // `grape config`), as a compute node and a meta member would separately.
        let served = MetaEndpoint::Served(MetaService::new(meta.clone()));
        let node = NodeServer::start(meta.clone(), storage, data_dir, 1, Role::Standalone, listen, gc, limits, served, keys, serving_threads).await?;
        Ok(DevServer { meta, node })
    }

    /// The endpoint clients connect to.
    pub fn endpoint(&self) -> String {
        self.node.endpoint()
    }

    /// Serves Qdrant's REST API on `listen` (see [`NodeServer::serve_qdrant`]).
    pub async fn serve_qdrant(&self, listen: &str) -> Result<std::net::SocketAddr, CliError> {
        self.node.serve_qdrant(listen).await
    }

    /// Serves Qdrant's gRPC API on `listen` (see [`NodeServer::serve_qdrant_grpc`]).
    pub async fn serve_qdrant_grpc(&self, listen: &str) -> Result<std::net::SocketAddr, CliError> {
        self.node.serve_qdrant_grpc(listen).await
    }

    /// Serves the operators' HTTP port (metrics, health, the status page) on `listen`; returns
    /// the address it listens on.
    pub async fn serve_metrics(&self, listen: &str) -> Result<std::net::SocketAddr, CliError> {
        tokio::spawn(grape_meta::metrics::count_elections(self.meta.clone(), self.node.stopped()));
        let observed = crate::observe::Observed {
            role: "dev",
            member: Some(self.meta.clone()),
            meta_addrs: vec![self.node.addr().to_string()],
            gateway: Some(self.node.gateway().clone()),
        };
        crate::observe::serve(listen, observed, self.node.stopped()).await
    }

    /// Stops serving, waits for in-flight requests, and shuts meta down.
    pub async fn shutdown(self) -> Result<(), CliError> {
        self.node.stop().await?;
        self.meta.shutdown().await.map_err(|e| CliError::Server(format!("meta: {e}")))
    }

    /// Serves until Ctrl-C or SIGTERM, then shuts down.
    pub async fn run_until_signal(self) -> Result<(), CliError> {
        wait_for_signal().await;
        eprintln!("shutting down");
        self.shutdown().await
    }
}
