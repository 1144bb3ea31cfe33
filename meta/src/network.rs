//! Outgoing Raft RPCs to other meta members.
//!
//! For now the group has a single member, so no RPC is ever needed: every connection reports
//! the target as [`Unreachable`]. The tonic transport (a `RaftNetworkFactory` whose clients call
//! the peers' internal Raft gRPC service) comes with the Raft-group issue; it replaces
//! [`LocalOnlyNetwork`] in [`crate::node::MetaNode::open`] and nothing else changes.

use std::fmt;

use openraft::error::{InstallSnapshotError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse,
};

use crate::types::{Node, NodeId, RPCError, TypeConfig};

/// A network that knows no peers: a single-member group needs none.
#[derive(Debug, Clone, Default)]
pub struct LocalOnlyNetwork;

/// A connection to a peer that cannot be reached (there is no transport yet).
#[derive(Debug, Clone)]
pub struct UnreachablePeer {
    target: NodeId,
}

#[derive(Debug)]
struct NoTransport(NodeId);

impl fmt::Display for NoTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "meta node {} is unreachable: this build has no Raft transport", self.0)
    }
}

impl std::error::Error for NoTransport {}

impl UnreachablePeer {
    fn err<E: std::error::Error>(&self) -> RPCError<E> {
        RPCError::Unreachable(Unreachable::new(&NoTransport(self.target)))
    }
}

impl RaftNetworkFactory<TypeConfig> for LocalOnlyNetwork {
    type Network = UnreachablePeer;

    async fn new_client(&mut self, target: NodeId, _node: &Node) -> Self::Network {
        UnreachablePeer { target }
    }
}

impl RaftNetwork<TypeConfig> for UnreachablePeer {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError> {
        Err(self.err())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<InstallSnapshotError>> {
        Err(self.err())
    }

    async fn vote(&mut self, _rpc: VoteRequest<NodeId>, _option: RPCOption) -> Result<VoteResponse<NodeId>, RPCError> {
        Err(self.err())
    }
}
