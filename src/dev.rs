//! `grape dev`: meta (a single-member Raft group), one compute node and the gateway in one
//! process, on one data directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use grape_compute::gateway::GrapeService;
use grape_compute::{Engine, Gateway};
use grape_meta::service::MetaService;
use grape_meta::MetaNode;
use grape_storage::{SegmentCache, Storage};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;

use crate::cli::StorageSettings;
use crate::error::CliError;

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

/// A running single-process Grape.
pub struct DevServer {
    /// Address the gateway listens on.
    pub addr: SocketAddr,
    /// The meta node, for an orderly shutdown.
    meta: Arc<MetaNode>,
    /// Dropping or sending on this stops the server and the catalog follower.
    stop: watch::Sender<bool>,
    /// The gRPC server task.
    serving: JoinHandle<Result<(), tonic::transport::Error>>,
}

/// A future that resolves once `true` is sent on `stop` (or the sender is dropped): the shutdown
/// signal of every task of the server.
fn until_stopped(stop: &watch::Sender<bool>) -> impl std::future::Future<Output = ()> + use<> {
    let mut rx = stop.subscribe();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// Opens and checks the storage at `url`; a remote store gets a local segment cache.
async fn open_storage(data_dir: &Path, url: &str, args: &StorageSettings) -> Result<Storage, CliError> {
    let mut storage = Storage::from_url_with_options(url, &args.options).map_err(|e| CliError::Server(format!("storage {url}: {e}")))?;
    storage.check().await.map_err(|e| CliError::Server(e.to_string()))?;
    if storage.is_remote() && args.cache_bytes > 0 {
        let dir = args.cache_dir.clone().unwrap_or_else(|| data_dir.join("cache"));
        let cache = SegmentCache::open(&dir, args.cache_bytes).map_err(|e| CliError::Server(e.to_string()))?;
        storage = storage.with_cache(cache);
    }
    Ok(storage)
}

/// The default storage URL of a data directory: its `objects/` folder.
pub fn default_storage_url(data_dir: &Path) -> Result<String, CliError> {
    let dir = absolute(data_dir)?.join("objects");
    Ok(format!("file://{}", dir.display()))
}

fn absolute(p: &Path) -> Result<PathBuf, CliError> {
    std::path::absolute(p).map_err(|source| CliError::File { path: p.display().to_string(), source })
}

impl DevServer {
    /// Starts meta, the engine and the gateway on `data_dir`, listening on `listen`.
    ///
    /// Fails before serving anything if the storage is unusable (missing bucket, rejected
    /// credentials, unreachable endpoint), with a message that says which.
    pub async fn start(data_dir: &Path, listen: &str, storage: &StorageSettings, gc: &GcSettings) -> Result<DevServer, CliError> {
        std::fs::create_dir_all(data_dir).map_err(|source| CliError::File { path: data_dir.display().to_string(), source })?;
        let url = match &storage.url {
            Some(u) => u.clone(),
            None => default_storage_url(data_dir)?,
        };
        let storage = open_storage(data_dir, &url, storage).await?;
        let meta = MetaNode::open(1, &data_dir.join("meta")).await.map_err(|e| CliError::Server(format!("meta: {e}")))?;
        let engine = Arc::new(Engine::new(storage.clone()));
        let gateway = Arc::new(Gateway::new(meta.clone(), engine, storage, 1).with_gc_grace(gc.grace));
        let listener = TcpListener::bind(listen).await.map_err(|source| CliError::File { path: format!("listen {listen}"), source })?;
        let addr = listener.local_addr().map_err(|source| CliError::File { path: format!("listen {listen}"), source })?;
        let (stop, _) = watch::channel(false);
        gateway.refresh().await;
        tokio::spawn(gateway.clone().follow_catalog(until_stopped(&stop)));
        if let Some(interval) = gc.interval {
            tokio::spawn(gateway.clone().run_gc_job(interval, until_stopped(&stop)));
        }
        // One port serves the public API and the meta service (for `grape status` and
        // `grape config`), as a compute node and a meta member would separately.
        let router = tonic::transport::Server::builder()
            .add_service(GrapeService(gateway).into_server())
            .add_service(MetaService::new(meta.clone()).into_server());
        let serving = tokio::spawn(router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), until_stopped(&stop)));
        Ok(DevServer { addr, meta, stop, serving })
    }

    /// The endpoint clients connect to.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving, waits for in-flight requests, and shuts meta down.
    pub async fn shutdown(self) -> Result<(), CliError> {
        let _ = self.stop.send(true);
        match self.serving.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(CliError::Server(format!("gateway: {e}"))),
            Err(e) => return Err(CliError::Server(format!("gateway task: {e}"))),
        }
        self.meta.shutdown().await.map_err(|e| CliError::Server(format!("meta: {e}")))
    }

    /// Serves until Ctrl-C or SIGTERM, then shuts down.
    pub async fn run_until_signal(self) -> Result<(), CliError> {
        wait_for_signal().await;
        eprintln!("shutting down");
        self.shutdown().await
    }
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
