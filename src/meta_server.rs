//! `grape meta`: one member of the meta Raft group as its own process.
//!
//! The member serves two gRPC services on one port: the Raft transport for its peers
//! (`grape.raft.v1`) and the meta service for compute nodes, gateways and the CLI
//! (`grape.meta.v1`). Its address in `--peers` is that port.

use std::collections::BTreeMap;
use std::time::Duration;

use grape_meta::network::raft_service;
use grape_meta::node::Start;
use grape_meta::service::MetaService;
use grape_meta::MetaNode;
use grape_proto::auth::Keys;
use tokio::net::TcpListener;

use crate::cli::MetaArgs;
use crate::error::CliError;
use crate::node::{until_stopped, wait_for_signal};

/// Parses `--peers 1=ADDR,2=ADDR,…`.
pub fn parse_peers(text: &str) -> Result<BTreeMap<u64, String>, CliError> {
    let usage = |part: &str| CliError::Usage(format!("--peers takes ID=HOST:PORT,… (e.g. 1=127.0.0.1:6901), got {part:?}"));
    text.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|part| {
            let (id, addr) = part.split_once('=').ok_or_else(|| usage(part))?;
            let id = id.trim().parse::<u64>().map_err(|_| usage(part))?;
            if id == 0 || addr.trim().is_empty() {
                return Err(usage(part));
            }
            Ok((id, addr.trim().to_string()))
        })
        .collect()
}

/// Runs the member until Ctrl-C or SIGTERM, admitting the callers `keys` allow.
pub async fn run(args: MetaArgs, keys: Keys) -> Result<(), CliError> {
    let mut peers = parse_peers(&args.peers)?;
    peers.entry(args.id).or_insert_with(|| args.listen.clone());
    let listener =
        TcpListener::bind(&args.listen).await.map_err(|source| CliError::File { path: format!("listen {}", args.listen), source })?;
    let start = if args.join { Start::Join } else { Start::New };
    let node = MetaNode::open_member(args.id, &args.data_dir, peers, start).await.map_err(|e| CliError::Server(format!("meta: {e}")))?;
    eprintln!("grape meta {}: listening on {} (data in {})", args.id, args.listen, args.data_dir.display());
    let service = MetaService::new(node.clone());
    let (stop, _) = tokio::sync::watch::channel(false);
    let timeout = Duration::from_millis(args.heartbeat_timeout_ms.max(100));
    tokio::spawn(service.watch_compute_nodes(timeout, until_stopped(&stop)));
    tokio::spawn(service.watch_jobs(until_stopped(&stop)));
    tokio::spawn(grape_meta::metrics::count_elections(node.clone(), until_stopped(&stop)));
    if let Some(listen) = &args.metrics_listen {
        let observed = crate::observe::Observed { role: "meta", member: Some(node.clone()), meta_addrs: vec![args.listen.clone()], gateway: None };
        let addr = crate::observe::serve(listen, observed, until_stopped(&stop)).await?;
        eprintln!("grape meta {}: metrics and status page on http://{addr}", args.id);
    }
    let served = grape_proto::net::server(keys)
        .add_service(tonic_health::server::health_reporter().1)
        .add_service(raft_service(node.raft().clone()))
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(grape_proto::net::incoming(listener), wait_for_signal())
        .await;
    let _ = stop.send(true);
    eprintln!("shutting down");
    node.shutdown().await.map_err(|e| CliError::Server(format!("meta: {e}")))?;
    served.map_err(|e| CliError::Server(format!("meta server: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_bad_ones_are_named() {
        let peers = parse_peers("1=127.0.0.1:1, 2=h:2").expect("parses");
        assert_eq!(peers.get(&2).map(String::as_str), Some("h:2"));
        for bad in ["1", "x=h:1", "0=h:1", "1="] {
            let err = parse_peers(bad).expect_err(bad).to_string();
            assert!(err.contains("--peers"), "{err}");
        }
    }
}
