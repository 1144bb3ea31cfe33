//! `grape compute`: a stateless compute node of a cluster. It follows the meta group's catalog
//! through the watch stream, loads the segments the meta leader assigns to it from object
//! storage, reports their states in its heartbeats, and serves the public API as a gateway
//! (routing each query to the nodes that hold its segments) and the leaf service other
//! gateways ask; writes go through the meta group. It owns nothing durable: a node that dies
//! loses nothing, and any node answers any query.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use grape_compute::remote_meta::WatchedMeta;
use grape_compute::router::Role;
use grape_compute::Gateway;
use grape_proto::auth::Keys;
use grape_proto::meta::v1 as pb;
use rand::Rng;

use crate::cli::ComputeArgs;
use crate::config::ConfigFile;
use crate::error::CliError;
use crate::meta_forward::MetaForwarder;
use crate::node::{open_storage, wait_for_signal, MetaEndpoint, NodeServer};

/// Runs the node until Ctrl-C or SIGTERM.
pub async fn run(args: ComputeArgs, config: &ConfigFile, keys: Keys) -> Result<(), CliError> {
    // Refuse an unreachable advertised address before connecting to anything.
    if let Ok(listen) = args.listen.parse::<SocketAddr>() {
        advertised_addr(args.advertise.as_deref(), listen)?;
    }
    let settings = args.storage.resolve(&config.storage);
    std::fs::create_dir_all(&args.data_dir).map_err(|source| CliError::File { path: args.data_dir.display().to_string(), source })?;
    let (storage, url) = open_storage(&args.data_dir, &settings).await?;
    let addrs: Vec<String> = args.meta.split(',').map(str::trim).filter(|a| !a.is_empty()).map(String::from).collect();
    let meta = WatchedMeta::connect(&addrs).await.map_err(|e| CliError::Server(format!("meta {}: {e}", args.meta)))?;
    let id = match args.id {
        Some(id) => id,
        None => stored_node_id(&args.data_dir)?,
    };
    let forwarder = MetaEndpoint::Forwarded(MetaForwarder::new(&addrs)?);
    let threads = crate::cli::serving_threads(args.serving_threads);
    let (gc, limits) = (args.gc.settings(), config.limits.clone());
    let node = NodeServer::start(meta.clone(), storage, &args.data_dir, id, Role::Cluster, &args.listen, &gc, limits, forwarder, keys, threads).await?;
    if let Some(listen) = &args.qdrant_listen {
        let addr = node.serve_qdrant(listen).await?;
        eprintln!("grape compute {id}: Qdrant REST API on http://{addr}");
    }
    if let Some(listen) = &args.qdrant_grpc_listen {
        let addr = node.serve_qdrant_grpc(listen).await?;
        eprintln!("grape compute {id}: Qdrant gRPC API on {addr}");
    }
    if let Some(listen) = &args.metrics_listen {
        let observed = crate::observe::Observed { role: "compute", member: None, meta_addrs: addrs.clone(), gateway: Some(node.gateway().clone()) };
        let addr = crate::observe::serve(listen, observed, node.stopped()).await?;
        eprintln!("grape compute {id}: metrics and status page on http://{addr}");
    }
    let memory = args.memory_limit.unwrap_or_else(machine_memory);
    let advertised = advertised_addr(args.advertise.as_deref(), node.addr())?;
    tokio::spawn(heartbeats(meta, node.gateway().clone(), id, advertised.clone(), memory, node.stopped()));
    eprintln!("grape compute {id}: listening on {} as {advertised} (meta {}, storage {url})", node.endpoint(), args.meta);
    wait_for_signal().await;
    eprintln!("shutting down");
    node.stop().await?;
    Ok(())
}

/// Interval of the node's heartbeats to the meta leader (the leader's timeout is 2 s).
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);

/// Shortest time between two heartbeats: segment state changes are sent at once, but a burst
/// of them (many segments loading) goes in one heartbeat.
const MIN_HEARTBEAT_GAP: Duration = Duration::from_millis(50);

/// Sends a heartbeat with the node's load and segment states every [`HEARTBEAT_INTERVAL`],
/// and soon after a segment becomes ready or fails, until `stopped`.
async fn heartbeats(meta: Arc<WatchedMeta>, gateway: Arc<Gateway>, id: u64, addr: String, memory: u64, stopped: impl Future<Output = ()>) {
    tokio::pin!(stopped);
    let engine = gateway.engine().clone();
    let mut changes = engine.changes();
    loop {
        changes.borrow_and_update();
        let (segments, rows, used) = engine.stats();
        let states = engine.states();
        let beat = pb::HeartbeatRequest {
            node_id: id,
            addr: addr.clone(),
            memory_bytes: memory,
            segments_loaded: segments,
            rows_loaded: rows,
            memory_used: used,
            ready_segments: states.ready,
            failed_segments: states.failed.into_iter().map(|(id, reason)| pb::FailedSegment { id, reason }).collect(),
            segments_loading: states.loading,
        };
        if let Err(e) = meta.heartbeat(beat).await {
            tracing::warn!(error = %e, "heartbeat to meta failed");
        }
        tokio::select! {
            _ = &mut stopped => return,
            _ = tokio::time::sleep(HEARTBEAT_INTERVAL) => {}
            _ = changes.changed() => tokio::time::sleep(MIN_HEARTBEAT_GAP).await,
        }
    }
}

/// Total memory of this machine from `/proc/meminfo`, else 8 GiB.
fn machine_memory() -> u64 {
    let total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| text.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse::<u64>().ok());
    total_kib.map_or(8 << 30, |kib| kib * 1024)
}

/// The file in the data directory that keeps the node's id across restarts.
const NODE_ID_FILE: &str = "node-id";

/// This node's id: the one kept in `data_dir`, or a new random one (kept there for the next
/// start). Ids are not derived from the listen address, which is the same on every host of a
/// cluster listening on `0.0.0.0:PORT`.
fn stored_node_id(data_dir: &Path) -> Result<u64, CliError> {
    let path = data_dir.join(NODE_ID_FILE);
    let file_error = |source| CliError::File { path: path.display().to_string(), source };
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse::<u64>().ok().filter(|id| *id > 0).ok_or_else(|| {
            CliError::Usage(format!("{} holds {:?}, not a node id; remove it for a new id or pass --id", path.display(), text.trim()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Short enough to read in `grape status`, wide enough that a cluster's nodes differ.
            let id = rand::thread_rng().gen_range(1..=u64::from(u32::MAX));
            let staged = data_dir.join(format!("{NODE_ID_FILE}.tmp"));
            std::fs::write(&staged, format!("{id}\n")).map_err(file_error)?;
            std::fs::rename(&staged, &path).map_err(file_error)?;
            Ok(id)
        }
        Err(e) => Err(file_error(e)),
    }
}

/// The address this node registers for others to reach it: `--advertise`, else the bound
/// address, which must then be a specific one (not 0.0.0.0 or ::).
fn advertised_addr(advertise: Option<&str>, bound: SocketAddr) -> Result<String, CliError> {
    match advertise {
        Some(addr) => addr.parse::<SocketAddr>().map(|_| addr.to_string()).or_else(|_| {
            let (host, port) = addr.rsplit_once(':').ok_or_else(|| CliError::Usage(format!("--advertise {addr}: give HOST:PORT")))?;
            port.parse::<u16>().map_err(|_| CliError::Usage(format!("--advertise {addr}: {port} is not a port")))?;
            if host.is_empty() {
                return Err(CliError::Usage(format!("--advertise {addr}: give HOST:PORT")));
            }
            Ok(addr.to_string())
        }),
        None if bound.ip().is_unspecified() => Err(CliError::Usage(format!(
            "listening on {bound} needs --advertise HOST:PORT: other nodes cannot reach this node at {}",
            bound.ip()
        ))),
        None => Ok(bound.to_string()),
    }
}
