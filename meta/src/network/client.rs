//! Outgoing Raft RPCs: openraft's [`RaftNetworkFactory`] and [`RaftNetwork`] over tonic.
//!
//! [`TonicNetwork`] keeps one lazily connected [`tonic::transport::Channel`] per peer address. openraft asks it for
//! a new client for every replication stream and every election, and they all share the peer's
//! channel (one HTTP/2 connection, which tonic re-establishes on the next call after it broke).
//!
//! Every RPC is bounded by openraft's soft TTL ([`RPCOption::soft_ttl`]), a quarter shorter
//! than the hard TTL openraft enforces around the call, so a slow peer is reported by this
//! module as [`RPCError::Timeout`] rather than cut off from outside. Failures map to what
//! openraft's replication loop expects:
//!
//! | what happened                                  | error                      | openraft then      |
//! |------------------------------------------------|----------------------------|--------------------|
//! | cannot connect (peer down), invalid address    | [`RPCError::Unreachable`]  | backs off, retries |
//! | no answer within the TTL                       | [`RPCError::Timeout`]      | retries            |
//! | batch above [`BATCH_SPLIT_BYTES`]              | [`RPCError::PayloadTooLarge`] | retries smaller |
//! | other gRPC status, undecodable reply           | [`RPCError::Network`]      | retries            |
//! | the peer's Raft refused (e.g. it shut down)    | [`RPCError::RemoteError`]  | per error          |

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use grape_proto::raft::v1::raft_service_client::RaftServiceClient;
use grape_proto::raft::v1::RaftReply;
use openraft::error::{InstallSnapshotError, NetworkError, PayloadTooLarge, RemoteError, Timeout, Unreachable};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use serde::de::DeserializeOwned;
use grape_proto::auth::{authed, AuthedChannel};
use tonic::transport::Endpoint;
use tonic::{Code, Request, Response, Status};

use super::codec::{decode_reply, encode_request, encode_snapshot_chunk};
use super::MAX_MESSAGE_BYTES;
use crate::types::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, Node, NodeId, RPCError, TypeConfig,
    VoteRequest, VoteResponse,
};

/// How long establishing a TCP connection to a peer may take; a peer that does not accept
/// within it is [`RPCError::Unreachable`] for this call.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long openraft waits before retrying an [`RPCError::Unreachable`] peer (its default is
/// 500 ms). Short, so a restarted member is caught up soon after it listens again.
const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(200);

/// An append-entries batch whose JSON is larger than this, in bytes, is not sent: the client
/// answers [`RPCError::PayloadTooLarge`] with a smaller entry count, and openraft sends that
/// many at a time for its next few RPCs. openraft 0.9 gives every append-entries RPC only the
/// heartbeat interval to complete, so batches stay a few megabytes. A single entry is always
/// sent, up to [`MAX_MESSAGE_BYTES`].
pub const BATCH_SPLIT_BYTES: usize = 4 * 1024 * 1024;

/// A peer address that cannot be turned into a gRPC endpoint.
#[derive(Debug, Clone, thiserror::Error)]
#[error("meta node {target} has an invalid address {addr:?}: {reason}")]
pub struct InvalidPeerAddress {
    target: NodeId,
    addr: String,
    reason: String,
}

/// The client of a peer's Raft service, or why there is none.
type PeerService = Result<RaftServiceClient<AuthedChannel>, InvalidPeerAddress>;

/// openraft's network factory: hands out [`PeerClient`]s that share one channel per peer.
#[derive(Debug, Clone)]
pub struct TonicNetwork {
    /// This member, named in the [`Timeout`] errors of its calls.
    id: NodeId,
    /// Per peer, the address its channel was built for and the client over that channel. A
    /// peer whose address changed in the membership gets a new channel.
    peers: HashMap<NodeId, (String, PeerService)>,
}

impl TonicNetwork {
    /// A network for member `id`, with no connections yet.
    pub fn new(id: NodeId) -> TonicNetwork {
        TonicNetwork { id, peers: HashMap::new() }
    }

    fn service(&mut self, target: NodeId, addr: &str) -> PeerService {
        match self.peers.get(&target) {
            Some((known, service)) if known == addr => service.clone(),
            _ => {
                let service = connect_lazy(target, addr);
                self.peers.insert(target, (addr.to_string(), service.clone()));
                service
            }
        }
    }
}

/// A client for `addr` that connects on first use (so peers may start in any order).
fn connect_lazy(target: NodeId, addr: &str) -> PeerService {
    let uri = if addr.contains("://") { addr.to_string() } else { format!("http://{addr}") };
    let endpoint = Endpoint::from_shared(uri).map_err(|e| InvalidPeerAddress { target, addr: addr.to_string(), reason: e.to_string() })?;
    let channel = grape_proto::tls::connect_lazy(endpoint.connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true));
    Ok(RaftServiceClient::new(authed(channel)).max_decoding_message_size(MAX_MESSAGE_BYTES).max_encoding_message_size(MAX_MESSAGE_BYTES))
}

impl RaftNetworkFactory<TypeConfig> for TonicNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        PeerClient { id: self.id, target, target_node: node.clone(), service: self.service(target, &node.addr) }
    }
}

/// Sends Raft RPCs from this member to one peer.
#[derive(Debug, Clone)]
pub struct PeerClient {
    /// This member, named in [`Timeout`] errors.
    id: NodeId,
    /// The peer, named in [`Timeout`] and [`RemoteError`]s.
    target: NodeId,
    /// The peer's membership entry (its address), attached to [`RemoteError`]s.
    target_node: Node,
    /// The peer's shared channel, or the reason its address is unusable.
    service: PeerService,
}

impl PeerClient {
    /// Sends one request with `send` and decodes the reply, mapping every failure to the
    /// [`RPCError`] openraft expects (see the module doc).
    async fn call<T, E, F, Fut>(&self, action: RPCTypes, option: &RPCOption, send: F) -> Result<T, RPCError<E>>
    where
        T: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
        F: FnOnce(RaftServiceClient<AuthedChannel>, Duration) -> Fut,
        Fut: Future<Output = Result<Response<RaftReply>, Status>>,
    {
        let service = self.service.clone().map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let ttl = option.soft_ttl();
        let reply = match tokio::time::timeout(ttl, send(service, ttl)).await {
            Err(_elapsed) => return Err(self.timeout(action, ttl)),
            Ok(Err(status)) => return Err(self.status_error(action, ttl, status)),
            Ok(Ok(reply)) => reply.into_inner(),
        };
        match decode_reply::<T, E>(&reply) {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(refused)) => Err(RPCError::RemoteError(RemoteError::new_with_node(self.target, self.target_node.clone(), refused))),
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }

    fn timeout<E: std::error::Error>(&self, action: RPCTypes, ttl: Duration) -> RPCError<E> {
        RPCError::Timeout(Timeout { action, id: self.id, target: self.target, timeout: ttl })
    }

    /// Maps a gRPC status: connection failures are `Unreachable` (openraft backs off), expired
    /// deadlines `Timeout`, and anything else a `Network` error (openraft retries at once).
    fn status_error<E: std::error::Error>(&self, action: RPCTypes, ttl: Duration, status: Status) -> RPCError<E> {
        match status.code() {
            Code::Unavailable => RPCError::Unreachable(Unreachable::new(&status)),
            Code::DeadlineExceeded | Code::Cancelled => self.timeout(action, ttl),
            _ => RPCError::Network(NetworkError::new(&status)),
        }
    }
}

/// A tonic request that also tells the server how long the caller waits.
fn request<T>(message: T, ttl: Duration) -> Request<T> {
    let mut req = Request::new(message);
    req.set_timeout(ttl);
    req
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(&mut self, rpc: AppendEntriesRequest, option: RPCOption) -> Result<AppendEntriesResponse, RPCError> {
        let entries = rpc.entries.len();
        let msg = encode_request("append-entries request", &rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if msg.json.len() > BATCH_SPLIT_BYTES && entries > 1 {
            let fitting = (entries * BATCH_SPLIT_BYTES / msg.json.len()).max(1);
            return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(fitting as u64)));
        }
        self.call(RPCTypes::AppendEntries, &option, |mut c, ttl| async move { c.append_entries(request(msg, ttl)).await }).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse, RPCError<InstallSnapshotError>> {
        let chunk = encode_snapshot_chunk(rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.call(RPCTypes::InstallSnapshot, &option, |mut c, ttl| async move { c.install_snapshot(request(chunk, ttl)).await }).await
    }

    async fn vote(&mut self, rpc: VoteRequest, option: RPCOption) -> Result<VoteResponse, RPCError> {
        let msg = encode_request("vote request", &rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.call(RPCTypes::Vote, &option, |mut c, ttl| async move { c.vote(request(msg, ttl)).await }).await
    }

    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(UNREACHABLE_BACKOFF))
    }
}

#[cfg(test)]
mod tests {
    use openraft::error::Infallible;

    use openraft::CommittedLeaderId;

    use super::*;
    use crate::command::Command;
    use crate::types::{Entry, EntryPayload, LogId, Vote};

    fn client(addr: &str) -> PeerClient {
        PeerClient { id: 1, target: 2, target_node: Node::new(addr), service: connect_lazy(2, addr) }
    }

    #[tokio::test]
    async fn closed_port_is_unreachable() {
        // Bind, learn the port, close: nothing listens there any more.
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let mut c = client(&addr.to_string());
        let err = c.vote(VoteRequest::new(Vote::new(1, 1), None), RPCOption::new(Duration::from_secs(2))).await.unwrap_err();
        assert!(matches!(err, RPCError::<Infallible>::Unreachable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn invalid_address_is_unreachable() {
        let mut c = client("not a uri");
        let err = c.vote(VoteRequest::new(Vote::new(1, 1), None), RPCOption::new(Duration::from_secs(2))).await.unwrap_err();
        assert!(matches!(err, RPCError::<Infallible>::Unreachable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn silent_peer_times_out() {
        // Accepts TCP connections (the kernel does, from the backlog) but never speaks HTTP/2.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut c = client(&listener.local_addr().unwrap().to_string());
        let err = c.vote(VoteRequest::new(Vote::new(1, 1), None), RPCOption::new(Duration::from_millis(200))).await.unwrap_err();
        assert!(matches!(err, RPCError::<Infallible>::Timeout(_)), "{err:?}");
        drop(listener);
    }

    #[tokio::test]
    async fn large_batch_is_split_before_sending() {
        let entry = |index| Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command::DropCollection { name: "x".repeat(BATCH_SPLIT_BYTES / 3) }),
        };
        let big = AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: None,
            leader_commit: None,
            entries: (0..6).map(entry).collect(),
        };
        // Never connects: the batch is refused before anything is sent.
        let err = client("127.0.0.1:1").append_entries(big, RPCOption::new(Duration::from_secs(2))).await.unwrap_err();
        match err {
            RPCError::PayloadTooLarge(p) => assert_eq!(p.entries_hint(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn factory_shares_one_channel_per_address() {
        let mut net = TonicNetwork::new(1);
        net.new_client(2, &Node::new("127.0.0.1:1")).await;
        net.new_client(2, &Node::new("127.0.0.1:1")).await;
        net.new_client(3, &Node::new("127.0.0.1:2")).await;
        assert_eq!(net.peers.len(), 2);
        net.new_client(2, &Node::new("127.0.0.1:3")).await;
        assert_eq!(net.peers[&2].0, "127.0.0.1:3", "a changed address gets a new channel");
    }
}
