//! What an operator watches, on one HTTP port per process (`--metrics-listen`):
//!
//! - `/metrics`: Prometheus metrics in the text format (requests, storage, Raft, jobs, what
//!   a node holds; see `grape_proto::rpc_metrics`, `grape_storage::metered`,
//!   `grape_meta::metrics`, `grape_compute::metrics`);
//! - `/healthz`: 200 while the process runs;
//! - `/readyz`: 200 when the process can do its work, else 503 with the reason ([`readiness`]);
//! - `/`: the status page ([`page`]), plain server-rendered HTML that refreshes itself.
//!
//! The port answers without an API key, like Prometheus targets and probes usually do: bind
//! it to an address only operators reach (the default is loopback).

pub mod page;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use grape_compute::Gateway;
use grape_meta::catalog::Catalog;
use grape_meta::service::RemoteMeta;
use grape_meta::MetaNode;
use grape_proto::meta::v1 as pb;
use tokio::net::TcpListener;

use crate::error::CliError;

/// How long `/readyz` and the page wait for the meta group.
const META_TIMEOUT: Duration = Duration::from_secs(2);

/// The parts of a process the port reports on.
#[derive(Clone)]
pub struct Observed {
    /// `dev`, `meta` or `compute`.
    pub role: &'static str,
    /// This process's meta member (`grape meta`, `grape dev`).
    pub member: Option<Arc<MetaNode>>,
    /// Where the meta service answers: the group's members (`grape compute`), this member's
    /// own address (`grape meta`), or the node's own port (`grape dev`).
    pub meta_addrs: Vec<String>,
    /// This process's compute node (`grape compute`, `grape dev`).
    pub gateway: Option<Arc<Gateway>>,
}

impl Observed {
    /// The catalog as this process has applied it.
    fn catalog(&self) -> Option<Arc<Catalog>> {
        match (&self.member, &self.gateway) {
            (Some(member), _) => Some(member.catalog_snapshot()),
            (None, Some(gateway)) => Some(gateway.meta().applied_catalog()),
            (None, None) => None,
        }
    }

    /// The meta leader's status (with the compute nodes' heartbeat ages, which only the
    /// leader knows), asked of the group and then of its leader.
    async fn leader_status(&self) -> Result<pb::StatusResponse, String> {
        let ask = |addrs: &[String]| {
            let client = RemoteMeta::new(addrs).map(|c| c.with_deadline(META_TIMEOUT)).map_err(|e| e.message().to_string());
            async move { client?.status().await.map_err(|e| e.message().to_string()) }
        };
        let status = ask(&self.meta_addrs).await?;
        if status.leader_id != status.id && !status.leader_addr.is_empty() {
            return ask(&[status.leader_addr.clone()]).await;
        }
        Ok(status)
    }

    /// Sets every gauge read at scrape time.
    async fn observe(&self) {
        if let Some(member) = &self.member {
            grape_meta::metrics::observe_member(member).await;
        }
        if let Some(catalog) = self.catalog() {
            grape_meta::metrics::observe_catalog(&catalog);
        }
        if let Some(gateway) = &self.gateway {
            grape_compute::metrics::observe_node(gateway);
        }
    }
}

/// Why this process is not ready, or `Ok` when it is: a meta member needs a leader; a compute
/// node needs the meta group to answer, its catalog to follow the group, and every segment
/// assigned to it loaded (none loading, none failed).
pub async fn readiness(observed: &Observed) -> Result<(), String> {
    if let Some(member) = &observed.member {
        if member.status().await.leader_id.is_none() {
            return Err("the meta group has no leader this member knows".into());
        }
    }
    if let Some(gateway) = &observed.gateway {
        if observed.member.is_none() {
            let client = RemoteMeta::new(&observed.meta_addrs).map_err(|e| e.message().to_string())?.with_deadline(META_TIMEOUT);
            client.status().await.map_err(|e| format!("the meta group does not answer: {}", e.message()))?;
        }
        if let Some(error) = gateway.meta().follow_error() {
            return Err(format!("the catalog stopped following the meta group: {error}"));
        }
        let states = gateway.engine().states();
        if states.loading > 0 {
            return Err(format!("{} segments are still loading", states.loading));
        }
        if let Some((segment, reason)) = states.failed.first() {
            return Err(format!("{} segments failed to load (first: {segment}: {reason})", states.failed.len()));
        }
        let ready: std::collections::HashSet<&str> = states.ready.iter().map(String::as_str).collect();
        let catalog = gateway.meta().applied_catalog();
        let waiting = catalog
            .assignments
            .iter()
            .filter(|(segment, nodes)| nodes.contains(&gateway.node_id()) && !ready.contains(segment.as_str()))
            .count();
        if waiting > 0 {
            return Err(format!("{waiting} segments assigned to this node are not loaded yet"));
        }
    }
    Ok(())
}

/// Serves the port on `listen` until `stopped` resolves; returns the bound address.
pub async fn serve(
    listen: &str,
    observed: Observed,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<SocketAddr, CliError> {
    let error = |source| CliError::File { path: format!("metrics-listen {listen}"), source };
    let listener = TcpListener::bind(listen).await.map_err(error)?;
    let addr = listener.local_addr().map_err(error)?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/", get(status_page))
        .with_state(Arc::new(observed));
    let listener = grape_compute::http_listener::HttpListener::new(listener).map_err(error)?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopped).await {
            tracing::error!("the metrics port {addr} stopped: {e}");
        }
    });
    Ok(addr)
}

type Observing = State<Arc<Observed>>;

async fn metrics(State(observed): Observing) -> Response {
    observed.observe().await;
    let mut text = String::new();
    match prometheus::TextEncoder::new().encode_utf8(&prometheus::gather(), &mut text) {
        Ok(()) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("metrics: {e}\n")).into_response(),
    }
}

async fn ready(State(observed): Observing) -> Response {
    match readiness(&observed).await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
    }
}

async fn status_page(State(observed): Observing) -> Html<String> {
    let status = observed.leader_status().await;
    let ready = readiness(&observed).await;
    let node = match &observed.gateway {
        Some(gateway) => gateway.status().await.ok(),
        None => None,
    };
    Html(page::render(&page::PageData {
        role: observed.role,
        status: status.as_ref().map_err(String::as_str),
        catalog: observed.catalog().as_deref(),
        node: node.as_ref(),
        ready: ready.as_ref().map_err(String::as_str).copied(),
    }))
}
