//! Errors of the meta service.
//!
//! Each variant says what a caller can do: retry elsewhere ([`MetaError::NotLeader`]), retry
//! later ([`MetaError::Timeout`]), or fix the local disk ([`MetaError::Storage`],
//! [`MetaError::Io`], [`MetaError::Corrupt`]).

use crate::types::{NodeId, StorageError};

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
    /// This node is not the leader; send the request to `leader` if known.
    #[error("not the meta leader (leader: {})", leader.map(|l| l.to_string()).unwrap_or_else(|| "unknown".into()))]
    NotLeader {
        /// The current leader, if this node knows it.
        leader: Option<NodeId>,
    },
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
