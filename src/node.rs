//! One node's gateway and engine over any meta service, served on one port: the common part
//! of `grape dev` (meta in-process) and `grape compute` (meta as a separate group).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use grape_compute::gateway::GrapeService;
use grape_compute::leaf::LeafService;
use grape_compute::limits::Limits;
use grape_compute::meta_client::MetaClient;
use grape_compute::router::Role;
use grape_compute::vector_files::VectorFiles;
use grape_compute::{Engine, Gateway};
use grape_meta::service::MetaService;
use grape_proto::auth::Keys;
use grape_storage::{SegmentCache, Storage};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cli::StorageSettings;
use crate::error::CliError;
use crate::meta_forward::MetaForwarder;

/// Garbage collection settings of a server.
#[derive(Debug, Clone)]
pub struct GcSettings {
    /// Time between passes of the node's GC job; `None`: no job.
    pub interval: Option<Duration>,
    /// Unreferenced objects younger than this are kept.
    pub grace: Duration,
}

impl Default for GcSettings {
    /// No periodic job; the default grace period for `grape gc`.
    fn default() -> Self {
        GcSettings { interval: None, grace: grape_compute::gateway::DEFAULT_GC_GRACE }
    }
}

/// A running node: the public API (and, in `grape dev`, the meta service) on one port, the
/// catalog follower and the GC job.
pub struct NodeServer {
    /// Address the node listens on.
    addr: SocketAddr,
    /// The node's gateway, for its background jobs.
    gateway: Arc<Gateway>,
    /// Sending `true` stops the server and every background task of the node.
    stop: watch::Sender<bool>,
    /// The gRPC server task.
    serving: JoinHandle<Result<(), grape_proto::serving::ServeError>>,
    /// Who may call this node's servers.
    keys: Keys,
    /// Serving threads of each of its ports (0: the shared runtime).
    serving_threads: usize,
}

impl NodeServer {
    /// Starts node `node_id` in `role` over `meta` and `storage` on `listen`, enforcing
    /// `limits`. The port serves the public API, the leaf service other nodes' gateways ask,
    /// and the meta service: `meta_service` itself (`grape dev`), or forwarded to the meta
    /// group (`grape compute`). Every port of the node admits the callers `keys` allow. The
    /// vectors of collections with vectors on disk go to files in `data_dir/vectors`.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        meta: Arc<dyn MetaClient>,
        storage: Storage,
        data_dir: &Path,
        node_id: u64,
        role: Role,
        listen: &str,
        gc: &GcSettings,
        limits: Limits,
        meta_service: MetaEndpoint,
        keys: Keys,
        serving_threads: usize,
    ) -> Result<NodeServer, CliError> {
        let vector_dir = data_dir.join("vectors");
        let vector_files = VectorFiles::open(&vector_dir).map_err(|source| CliError::File { path: vector_dir.display().to_string(), source })?;
        let engine = Arc::new(Engine::new(storage.clone()).with_vector_files(vector_files));
        let leaf = LeafService::new(engine.clone(), meta.clone());
        let gateway = Arc::new(Gateway::new(meta, engine.clone(), storage, node_id, role).with_gc_grace(gc.grace).with_limits(limits));
        let listener = TcpListener::bind(listen).await.map_err(|source| CliError::File { path: format!("listen {listen}"), source })?;
        let addr = listener.local_addr().map_err(|source| CliError::File { path: format!("listen {listen}"), source })?;
        let (stop, _) = watch::channel(false);
        gateway.refresh().await;
        tokio::spawn(gateway.clone().follow_catalog(until_stopped(&stop)));
        if let Some(interval) = gc.interval {
            tokio::spawn(gateway.clone().run_gc_job(interval, until_stopped(&stop)));
        }
        tokio::spawn(gateway.clone().run_job_worker(until_stopped(&stop)));
        tokio::spawn(engine.clone().purge_retired_until(until_stopped(&stop)));
        let (served, forwarded) = match meta_service {
            MetaEndpoint::Served(service) => {
                tokio::spawn(service.watch_jobs(until_stopped(&stop)));
                (Some(service.into_server()), None)
            }
            MetaEndpoint::Forwarded(forwarder) => (None, Some(forwarder)),
        };
        let router = grape_proto::net::server(keys.clone())
            .add_service(tonic_health::server::health_reporter().1)
            .add_service(GrapeService(gateway.clone()).into_server())
            .add_service(leaf.into_server())
            .add_optional_service(served)
            .add_optional_service(forwarded);
        let serving =
            tokio::spawn(grape_proto::serving::serve(router, listener, serving_threads, until_stopped(&stop)));
        Ok(NodeServer { addr, gateway, stop, serving, keys, serving_threads })
    }

    /// The endpoint clients connect to.
    pub fn endpoint(&self) -> String {
        let scheme = if grape_proto::tls::grpc_acceptor().is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The address the node listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves Qdrant's REST API over this node's gateway on `listen` until the node stops;
    /// returns the address it listens on.
    pub async fn serve_qdrant(&self, listen: &str) -> Result<SocketAddr, CliError> {
        let (listener, addr) = bind(listen, "qdrant-listen").await?;
        let api = grape_compute::qdrant::QdrantApi { gateway: self.gateway.clone() };
        let (keys, stopped, threads) = (self.keys.clone(), until_stopped(&self.stop), self.serving_threads);
        tokio::spawn(async move {
            if let Err(e) = grape_compute::qdrant::serve(listener, api, keys, threads, stopped).await {
                tracing::error!("the Qdrant API on {addr} stopped: {e}");
            }
        });
        Ok(addr)
    }

    /// Serves Qdrant's gRPC API over this node's gateway on `listen` until the node stops;
    /// returns the address it listens on.
    pub async fn serve_qdrant_grpc(&self, listen: &str) -> Result<SocketAddr, CliError> {
        let (listener, addr) = bind(listen, "qdrant-grpc-listen").await?;
        let api = grape_compute::qdrant::QdrantApi { gateway: self.gateway.clone() };
        let (keys, stopped, threads) = (self.keys.clone(), until_stopped(&self.stop), self.serving_threads);
        tokio::spawn(async move {
            if let Err(e) = grape_compute::qdrant::grpc::serve(listener, api, keys, threads, stopped).await {
                tracing::error!("the Qdrant gRPC API on {addr} stopped: {e}");
            }
        });
        Ok(addr)
    }

    /// The node's gateway.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// A future that resolves when the node stops: the shutdown signal of its jobs.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + use<> {
        until_stopped(&self.stop)
    }

    /// Stops serving and waits for in-flight requests, at most [`DRAIN_TIMEOUT`].
    pub async fn stop(self) -> Result<(), CliError> {
        let _ = self.stop.send(true);
        match tokio::time::timeout(DRAIN_TIMEOUT, self.serving).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(CliError::Server(format!("gateway: {e}"))),
            Ok(Err(e)) => Err(CliError::Server(format!("gateway task: {e}"))),
            Err(_) => {
                tracing::warn!("requests still running {} s after the stop signal; stopping anyway", DRAIN_TIMEOUT.as_secs());
                Ok(())
            }
        }
    }
}

/// How a node answers the meta service on its port.
pub enum MetaEndpoint {
    /// It runs the meta group's only member in-process (`grape dev`, `grape demo`).
    Served(MetaService),
    /// It forwards to the meta group (`grape compute`).
    Forwarded(MetaForwarder),
}

/// Binds `listen` for the server of flag `--FLAG`; returns the listener and its address.
async fn bind(listen: &str, flag: &str) -> Result<(TcpListener, SocketAddr), CliError> {
    let error = |source| CliError::File { path: format!("{flag} {listen}"), source };
    let listener = TcpListener::bind(listen).await.map_err(error)?;
    let addr = listener.local_addr().map_err(error)?;
    Ok((listener, addr))
}

/// How long a stopping node lets in-flight requests finish.
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// A future that resolves once `true` is sent on `stop` (or the sender is dropped): the shutdown
/// signal of every task of the server.
pub fn until_stopped(stop: &watch::Sender<bool>) -> impl std::future::Future<Output = ()> + use<> {
    let mut rx = stop.subscribe();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// Opens and checks the storage `settings` name (default: DATA_DIR/objects on local disk); a
/// remote store gets a local segment cache. Returns the storage and its URL.
pub async fn open_storage(data_dir: &Path, settings: &StorageSettings) -> Result<(Storage, String), CliError> {
    let url = match &settings.url {
        Some(u) => u.clone(),
        None => default_storage_url(data_dir)?,
    };
    let mut storage =
        Storage::from_url_with_options(&url, &settings.options).map_err(|e| CliError::Server(format!("storage {url}: {e}")))?;
    storage.check().await.map_err(|e| CliError::Server(e.to_string()))?;
    if storage.is_remote() && settings.cache_bytes > 0 {
        let dir = settings.cache_dir.clone().unwrap_or_else(|| data_dir.join("cache"));
        let cache = SegmentCache::open(&dir, settings.cache_bytes).map_err(|e| CliError::Server(e.to_string()))?;
        storage = storage.with_cache(cache);
    }
    Ok((storage, url))
}

/// The default storage URL of a data directory: its `objects/` folder.
fn default_storage_url(data_dir: &Path) -> Result<String, CliError> {
    let dir = std::path::absolute(data_dir).map_err(|source| CliError::File { path: data_dir.display().to_string(), source })?;
    Ok(format!("file://{}", dir.join("objects").display()))
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
