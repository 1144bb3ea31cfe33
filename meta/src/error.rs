//! Errors of the meta service.
//!
//! Each variant says what a caller can do: retry elsewhere ([`MetaError::NotLeader`]), retry
//! later ([`MetaError::Timeout`], [`MetaError::Membership`] while a change is in progress), fix
//! the configuration ([`MetaError::Config`]), or fix the local disk ([`MetaError::Storage`],
//! [`MetaError::Io`], [`MetaError::Corrupt`]).
//!
//! openraft's API errors are turned into these in one place, the `From` impls at the end.

use openraft::metrics::WaitError;

use crate::types::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, NodeId, RaftError, StorageError};

/// An error of the meta service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    /// The local redb database failed (open, transaction, table or commit).
    #[error("meta storage: {0}")]
    Storage(#[from] redb::Error),
    /// openraft reported an error (fatal core stop, storage error surfaced by Raft, …).
    #[error("raft: {0}")]
    Raft(String),
    /// This node is not the leader; send the request to `leader` (at `leader_addr`) if known.
    #[error("not the meta leader (leader: {})", describe_leader(*leader, leader_addr.as_deref()))]
    NotLeader {
        /// The current leader, if this node knows it.
        leader: Option<NodeId>,
        /// The leader's Raft address, if this node knows it.
        leader_addr: Option<String>,
    },
    /// The group refused a membership change: another one is in progress (retry), it would
    /// leave no voter, or it names a node that is not a member.
    #[error("meta membership change refused: {0}")]
    Membership(String),
    /// The node was started with an unusable configuration (e.g. its id is not among its peers).
    #[error("meta configuration: {0}")]
    Config(String),
    /// A local file operation failed.
    #[error("meta i/o: {0}")]
    Io(#[from] std::io::Error),
    /// An operation did not finish in time (e.g. no leader elected).
    #[error("meta timeout: {0}")]
    Timeout(String),
    /// Data on disk could not be decoded or has an unknown format version.
    #[error("meta data corrupt: {0}")]
    Corrupt(String),
}

impl From<StorageError> for MetaError {
    fn from(e: StorageError) -> Self {
        MetaError::Raft(format!("storage: {e}"))
    }
}

fn describe_leader(leader: Option<NodeId>, addr: Option<&str>) -> String {
    match (leader, addr) {
        (Some(id), Some(addr)) => format!("{id} at {addr}"),
        (Some(id), None) => id.to_string(),
        (None, _) => "unknown".to_string(),
    }
}

impl From<ForwardToLeader> for MetaError {
    fn from(f: ForwardToLeader) -> Self {
        let leader_addr = f.leader_node.map(|n| n.addr).filter(|a| !a.is_empty());
        MetaError::NotLeader { leader: f.leader_id, leader_addr }
    }
}

impl From<RaftError<ClientWriteError>> for MetaError {
    fn from(e: RaftError<ClientWriteError>) -> Self {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => f.into(),
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => MetaError::Membership(e.to_string()),
            RaftError::Fatal(e) => MetaError::Raft(e.to_string()),
        }
    }
}

impl From<RaftError<CheckIsLeaderError>> for MetaError {
    /// Losing the quorum while confirming leadership is a timeout: the caller may retry.
    fn from(e: RaftError<CheckIsLeaderError>) -> Self {
        match e {
            RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => f.into(),
            RaftError::APIError(e) => MetaError::Timeout(e.to_string()),
            RaftError::Fatal(e) => MetaError::Raft(e.to_string()),
        }
    }
}

impl From<WaitError> for MetaError {
    fn from(e: WaitError) -> Self {
        match e {
            WaitError::Timeout(..) => MetaError::Timeout(e.to_string()),
            WaitError::ShuttingDown => MetaError::Raft(e.to_string()),
        }
    }
}

macro_rules! redb_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for MetaError {
            fn from(e: $t) -> Self {
                MetaError::Storage(e.into())
            }
        }
    )*};
}

redb_error_from!(redb::DatabaseError, redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Node;

    #[test]
    fn not_leader_names_the_leader_and_its_address() {
        let e: MetaError = ForwardToLeader { leader_id: Some(2), leader_node: Some(Node::new("10.0.0.2:6801")) }.into();
        assert!(matches!(&e, MetaError::NotLeader { leader: Some(2), leader_addr: Some(a) } if a == "10.0.0.2:6801"));
        assert_eq!(e.to_string(), "not the meta leader (leader: 2 at 10.0.0.2:6801)");

        // The single member of `grape dev` has no address: none is better than an empty one.
        let e: MetaError = ForwardToLeader { leader_id: Some(1), leader_node: Some(Node::default()) }.into();
        assert!(matches!(e, MetaError::NotLeader { leader: Some(1), leader_addr: None }));
        let e: MetaError = ForwardToLeader { leader_id: None, leader_node: None }.into();
        assert_eq!(e.to_string(), "not the meta leader (leader: unknown)");
    }
}
