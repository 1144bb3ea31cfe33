//! `grape compute`: a stateless compute node of a cluster. It follows the meta group's catalog
//! through the watch stream, loads segments from object storage, and serves the public API as
//! a gateway; writes go through the meta group. It owns nothing durable: a node that dies
//! loses nothing, and any node answers any query.

use grape_compute::remote_meta::WatchedMeta;

use crate::cli::ComputeArgs;
use crate::config::ConfigFile;
use crate::dev::default_storage_url;
use crate::error::CliError;
use crate::node::{open_storage, wait_for_signal, NodeServer};

/// Runs the node until Ctrl-C or SIGTERM.
pub async fn run(args: ComputeArgs, config: &ConfigFile) -> Result<(), CliError> {
    let settings = args.storage.resolve(&config.storage);
    std::fs::create_dir_all(&args.data_dir).map_err(|source| CliError::File { path: args.data_dir.display().to_string(), source })?;
    let url = match &settings.url {
        Some(u) => u.clone(),
        None => default_storage_url(&args.data_dir)?,
    };
    let storage = open_storage(&args.data_dir, &url, &settings).await?;
    let addrs: Vec<String> = args.meta.split(',').map(str::trim).filter(|a| !a.is_empty()).map(String::from).collect();
    let meta = WatchedMeta::connect(&addrs).await.map_err(|e| CliError::Server(format!("meta {}: {e}", args.meta)))?;
    let id = args.id.unwrap_or_else(|| node_id_of(&args.listen));
    let node = NodeServer::start(meta, storage, id, &args.listen, &args.gc.settings(), None).await?;
    eprintln!("grape compute {id}: listening on {} (meta {}, storage {url})", node.endpoint(), args.meta);
    wait_for_signal().await;
    eprintln!("shutting down");
    node.stop().await?;
    Ok(())
}

/// A node id derived from the listen address, when none is given: stable across restarts,
/// short enough to read in `grape status`.
fn node_id_of(listen: &str) -> u64 {
    listen.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)) % 1_000_000
}
