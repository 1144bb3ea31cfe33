//! Incoming Raft RPCs: the tonic service a meta member serves to its peers.
//!
//! **Peers only.** [`RaftServiceImpl`] feeds requests straight into openraft: whoever can call
//! it can vote in elections and overwrite log entries. Only other meta members call it. It may
//! share a port with other internal services (that is what [`raft_service`] is for), but that
//! port must be reachable from the cluster's own network only, never from clients.
//!
//! A request that reaches Raft always gets a `RaftReply`, carrying either openraft's response
//! or the `RaftError` it refused with, which the calling [`super::PeerClient`] hands back to its
//! openraft as a remote error. gRPC error statuses are kept for requests that never reached
//! Raft (malformed JSON).

use std::future::Future;

use grape_proto::raft::v1::raft_service_server::{RaftService, RaftServiceServer};
use grape_proto::raft::v1::{JsonRequest, RaftReply, SnapshotChunk};
use serde::Serialize;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use super::codec::{decode_request, decode_snapshot_chunk, encode_reply, CodecError};
use super::MAX_MESSAGE_BYTES;
use crate::types::{Raft, RaftError};

/// The `grape.raft.v1.RaftService` of one member, over its running [`Raft`].
#[derive(Clone)]
pub struct RaftServiceImpl {
    raft: Raft,
}

impl std::fmt::Debug for RaftServiceImpl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftServiceImpl").finish_non_exhaustive()
    }
}

/// The Raft service of `raft` as a tonic server with Raft-sized message limits, to mount on a
/// [`tonic::transport::server::Router`] beside other internal services (see the module doc:
/// the port must not be reachable by clients).
pub fn raft_service(raft: Raft) -> RaftServiceServer<RaftServiceImpl> {
    RaftServiceServer::new(RaftServiceImpl { raft })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Serves only the Raft service of `raft` on `listener` until `shutdown` resolves, then stops
/// accepting and lets in-flight RPCs finish. Tests bind `127.0.0.1:0` and own the shutdown.
pub async fn serve(listener: TcpListener, raft: Raft, shutdown: impl Future<Output = ()>) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(raft_service(raft))
        .serve_with_incoming_shutdown(grape_proto::net::incoming(listener), shutdown)
        .await
}

fn malformed(e: CodecError) -> Status {
    Status::invalid_argument(e.to_string())
}

/// Encodes Raft's answer; failing to encode our own types is a bug, reported as `INTERNAL`.
fn reply<T: Serialize, E: Serialize>(res: Result<T, RaftError<E>>) -> Result<Response<RaftReply>, Status> {
    encode_reply(&res).map(Response::new).map_err(|e| Status::internal(e.to_string()))
}

#[tonic::async_trait]
impl RaftService for RaftServiceImpl {
    async fn append_entries(&self, req: Request<JsonRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc = decode_request("append-entries request", req.get_ref()).map_err(malformed)?;
        reply(self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<JsonRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc = decode_request("vote request", req.get_ref()).map_err(malformed)?;
        reply(self.raft.vote(rpc).await)
    }

    async fn install_snapshot(&self, req: Request<SnapshotChunk>) -> Result<Response<RaftReply>, Status> {
        let rpc = decode_snapshot_chunk(req.into_inner()).map_err(malformed)?;
        reply(self.raft.install_snapshot(rpc).await)
    }
}
