//! The `grape.meta.v1.Meta` service: what compute nodes, gateways and the CLI ask of the meta
//! group, served by every member (and by `grape dev`).
//!
//! Every request takes one path: try it on this member; if it must run on the leader and this
//! member is not the leader, forward it there ([`forward`]) and relay the answer. A request
//! forwarded once is never forwarded again (a member with stale leader information answers
//! UNAVAILABLE instead), so two members can never bounce a request between them.
//!
//! # Layout
//! - this file: the service, one method per RPC;
//! - `forward.rs`: connections to the leader and the forwarding rule;
//! - `convert.rs`: catalog, config and status types to and from their proto forms;
//! - `watch.rs`: the change stream;
//! - `liveness.rs`: compute-node heartbeats on the leader and the failure detector;
//! - `remote.rs`: [`RemoteMeta`], the client side, which finds a member that answers.

mod convert;
mod forward;
pub mod job_duties;
pub mod liveness;
pub mod remote;
mod watch;

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use grape_proto::meta::v1::{self as pb, meta_server::Meta};
use tonic::{Request, Response, Status};

pub use remote::RemoteMeta;

use crate::catalog::Catalog;
use crate::command::{Command, CommandResult};
use crate::config::validate;
use crate::error::MetaError;
use crate::node::MetaNode;
use forward::Leader;
use liveness::Liveness;

/// Largest message of the meta service (a catalog with many segments is large).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// The meta service of one member.
#[derive(Clone)]
pub struct MetaService {
    node: Arc<MetaNode>,
    leader: Leader,
    liveness: Arc<Liveness>,
}

impl std::fmt::Debug for MetaService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaService").field("node", &self.node.id()).finish_non_exhaustive()
    }
}

impl MetaService {
    /// The service of `node`.
    pub fn new(node: Arc<MetaNode>) -> MetaService {
        MetaService { node, leader: Leader::default(), liveness: Arc::default() }
    }

    /// The compute-node duties of this member while it leads (see
    /// [`liveness::watch_compute_nodes`]): declares a node dead after `timeout` without a
    /// heartbeat, and keeps the segment placement current.
    pub fn watch_compute_nodes(
        &self,
        timeout: std::time::Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> impl std::future::Future<Output = ()> {
        liveness::watch_compute_nodes(self.node.clone(), self.liveness.clone(), timeout, shutdown)
    }

    /// The job-queue duties of this member while it leads (see [`job_duties::watch_jobs`]):
    /// expires lapsed leases and enqueues due compactions.
    pub fn watch_jobs(&self, shutdown: impl std::future::Future<Output = ()>) -> impl std::future::Future<Output = ()> {
        job_duties::watch_jobs(self.node.clone(), shutdown)
    }

    /// The tonic server for this service, with message limits set.
    pub fn into_server(self) -> pb::meta_server::MetaServer<MetaService> {
        pb::meta_server::MetaServer::new(self).max_decoding_message_size(MAX_MESSAGE_BYTES).max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// This member's status with the compute nodes it knows.
    async fn status_response(&self) -> pb::StatusResponse {
        let mut status = convert::status(&self.node.status().await);
        let catalog = self.node.catalog_snapshot();
        let mut assigned: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
        for id in catalog.assignments.values().flatten() {
            *assigned.entry(*id).or_default() += 1;
        }
        status.compute_nodes = catalog
            .compute
            .nodes
            .values()
            .map(|n| liveness::node_status(n, assigned.get(&n.id).copied().unwrap_or(0), &self.liveness))
            .collect();
        status
    }

    /// Applies `cmd` through this member, or, if it is not the leader, sends the request to the
    /// leader with `forward`; answers the command's result.
    async fn write_or_forward<T, F, Fut>(&self, request: &Request<T>, cmd: Command, forward: F) -> Reply<pb::WriteResponse>
    where
        F: FnOnce(forward::ForwardingClient) -> Fut,
        Fut: std::future::Future<Output = Result<Response<pb::WriteResponse>, Status>>,
    {
        match self.node.write(cmd).await {
            Ok(result) => Ok(Response::new(pb::WriteResponse { result_json: convert::to_json(&result)? })),
            Err(e) => Ok(Response::new(self.leader.forward(request, e, forward).await?)),
        }
    }

    /// The catalog, linearizable (through the leader) or as applied here.
    async fn catalog<T>(&self, request: &Request<T>, linearizable: bool) -> Result<Catalog, Status> {
        if !linearizable {
            return Ok(self.node.local_catalog());
        }
        match self.node.read_catalog().await {
            Ok(catalog) => Ok(catalog),
            Err(e) => {
                let req = pb::ReadCatalogRequest { linearizable: true };
                let reply = self.leader.forward(request, e, |mut c| async move { c.read_catalog(req).await }).await?;
                convert::catalog_from_json(&reply.catalog_json)
            }
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// The stream of `Watch`.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Meta for MetaService {
    async fn write(&self, request: Request<pb::WriteRequest>) -> Reply<pb::WriteResponse> {
        let cmd: Command = serde_json::from_str(&request.get_ref().command_json)
            .map_err(|e| Status::invalid_argument(format!("not a meta command: {e}")))?;
        if cmd.is_leaders_own() {
            return Err(Status::permission_denied(
                "node registrations, deaths, segment states, placements and lease expiries are the meta leader's own \
                 decisions (from heartbeats and its timers): no caller may write them",
            ));
        }
        let req = request.get_ref().clone();
        self.write_or_forward(&request, cmd, |mut c| async move { c.write(req).await }).await
    }

    async fn drain_node(&self, request: Request<pb::DrainNodeRequest>) -> Reply<pb::WriteResponse> {
        let req = *request.get_ref();
        self.write_or_forward(&request, Command::DrainNode { id: req.node_id }, |mut c| async move { c.drain_node(req).await }).await
    }

    async fn read_catalog(&self, request: Request<pb::ReadCatalogRequest>) -> Reply<pb::ReadCatalogResponse> {
        if !request.get_ref().linearizable {
            let (catalog, index) = self.node.local_catalog_at();
            return Ok(Response::new(pb::ReadCatalogResponse { catalog_json: convert::to_json(&catalog)?, applied_index: index }));
        }
        match self.node.read_catalog_at().await {
            Ok((catalog, index)) => {
                Ok(Response::new(pb::ReadCatalogResponse { catalog_json: convert::to_json(&catalog)?, applied_index: index }))
            }
            Err(e) => {
                let req = request.get_ref().clone();
                Ok(Response::new(self.leader.forward(&request, e, |mut c| async move { c.read_catalog(req).await }).await?))
            }
        }
    }

    type WatchStream = WatchStream;

    async fn watch(&self, request: Request<pb::WatchRequest>) -> Reply<WatchStream> {
        Ok(Response::new(watch::stream(self.node.clone(), request.get_ref().after_index)))
    }

    async fn status(&self, _: Request<pb::StatusRequest>) -> Reply<pb::StatusResponse> {
        Ok(Response::new(self.status_response().await))
    }

    async fn heartbeat(&self, request: Request<pb::HeartbeatRequest>) -> Reply<pb::HeartbeatResponse> {
        if let Err(e) = self.node.assume_leader() {
            let req = request.get_ref().clone();
            return Ok(Response::new(self.leader.forward(&request, e, |mut c| async move { c.heartbeat(req).await }).await?));
        }
        let beat = request.into_inner();
        let (id, addr, memory) = (beat.node_id, beat.addr.clone(), beat.memory_bytes);
        let ready = beat.ready_segments.clone();
        let failed: Vec<(String, String)> = beat.failed_segments.iter().map(|f| (f.id.clone(), f.reason.clone())).collect();
        self.liveness.record(beat);
        if !self.node.catalog_snapshot().compute.is_live_at(id, &addr) {
            tracing::info!(node = id, %addr, "registering compute node");
            let cmd = Command::RegisterNode { id, addr, memory_bytes: memory };
            self.node.write(cmd).await.map_err(|e| status_of(&e))?;
        }
        if self.node.catalog_snapshot().compute.nodes.get(&id).is_some_and(|n| n.states_differ(&ready, &failed)) {
            self.node.write(Command::SegmentStates { id, ready, failed }).await.map_err(|e| status_of(&e))?;
        }
        Ok(Response::new(pb::HeartbeatResponse {}))
    }

    async fn config_get(&self, request: Request<pb::ConfigGetRequest>) -> Reply<pb::ConfigGetResponse> {
        let catalog = self.catalog(&request, request.get_ref().linearizable).await?;
        let key = &request.get_ref().key;
        let value = catalog.config.get(key).map(|v| convert::config_value(key, v));
        Ok(Response::new(pb::ConfigGetResponse { value }))
    }

    async fn config_put(&self, request: Request<pb::ConfigPutRequest>) -> Reply<pb::ConfigPutResponse> {
        let req = request.get_ref();
        validate(&req.key, &req.value).map_err(Status::invalid_argument)?;
        let cmd = Command::ConfigPut { key: req.key.clone(), value: req.value.clone(), expected: req.expected_version };
        let result = match self.node.write(cmd).await {
            Ok(result) => result,
            Err(e) => {
                let forwarded = req.clone();
                return Ok(Response::new(self.leader.forward(&request, e, |mut c| async move { c.config_put(forwarded).await }).await?));
            }
        };
        match result {
            CommandResult::Applied { version } => Ok(Response::new(pb::ConfigPutResponse { applied: true, version })),
            CommandResult::VersionMismatch { current } => Ok(Response::new(pb::ConfigPutResponse { applied: false, version: current })),
            other => Err(Status::internal(format!("unexpected result of a config put: {other:?}"))),
        }
    }

    async fn config_list(&self, request: Request<pb::ConfigListRequest>) -> Reply<pb::ConfigListResponse> {
        let catalog = self.catalog(&request, request.get_ref().linearizable).await?;
        let values = catalog.config.list(&request.get_ref().prefix).map(|(k, v)| convert::config_value(k, v)).collect();
        Ok(Response::new(pb::ConfigListResponse { values }))
    }

    async fn config_history(&self, request: Request<pb::ConfigGetRequest>) -> Reply<pb::ConfigListResponse> {
        let catalog = self.catalog(&request, request.get_ref().linearizable).await?;
        let key = &request.get_ref().key;
        let values = catalog.config.history(key).iter().map(|v| convert::config_value(key, v)).collect();
        Ok(Response::new(pb::ConfigListResponse { values }))
    }

    async fn add_member(&self, request: Request<pb::AddMemberRequest>) -> Reply<pb::StatusResponse> {
        let req = request.get_ref().clone();
        if let Err(e) = self.node.add_member(req.id, &req.addr).await {
            return Ok(Response::new(self.leader.forward(&request, e, |mut c| async move { c.add_member(req).await }).await?));
        }
        Ok(Response::new(self.status_response().await))
    }

    async fn remove_member(&self, request: Request<pb::RemoveMemberRequest>) -> Reply<pb::StatusResponse> {
        let req = request.get_ref().clone();
        if let Err(e) = self.node.remove_member(req.id).await {
            return Ok(Response::new(self.leader.forward(&request, e, |mut c| async move { c.remove_member(req).await }).await?));
        }
        Ok(Response::new(self.status_response().await))
    }
}

/// The gRPC status of a meta error that is not forwarded.
pub fn status_of(e: &MetaError) -> Status {
    match e {
        MetaError::NotLeader { .. } | MetaError::Timeout(_) => Status::unavailable(e.to_string()),
        MetaError::Membership(_) => Status::failed_precondition(e.to_string()),
        MetaError::Config(_) => Status::invalid_argument(e.to_string()),
        _ => Status::internal(e.to_string()),
    }
}
