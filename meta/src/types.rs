//! The openraft type configuration and short aliases for its generic types.
//!
//! openraft is generic over a [`RaftTypeConfig`](openraft::RaftTypeConfig); this module pins it
//! once, so no other file spells `<TypeConfig>`.

use std::io::Cursor;

use crate::command::{Command, CommandResult};

openraft::declare_raft_types!(
    /// Grape's meta Raft: log entries carry [`Command`]s, applying one yields a
    /// [`CommandResult`], and snapshots are whole in-memory byte buffers.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// Id of a meta group member.
pub type NodeId = u64;
/// Address book entry of a meta group member.
pub type Node = openraft::BasicNode;
/// The running Raft instance.
pub type Raft = openraft::Raft<TypeConfig>;
/// Position of a log entry: leader term and index.
pub type LogId = openraft::LogId<NodeId>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// What a log entry carries.
pub type EntryPayload = openraft::EntryPayload<TypeConfig>;
/// A vote (term, candidate, committed flag).
pub type Vote = openraft::Vote<NodeId>;
/// The group membership as of one log entry.
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
/// Metadata of a snapshot.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
/// A snapshot: metadata plus data.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
/// Log state: last purged and last present log ids.
pub type LogState = openraft::storage::LogState<TypeConfig>;
/// Error a storage implementation returns to openraft.
pub type StorageError = openraft::StorageError<NodeId>;
/// I/O part of a [`StorageError`].
pub type StorageIOError = openraft::StorageIOError<NodeId>;
/// Callback telling openraft that appended entries are durable.
pub type LogFlushed = openraft::storage::LogFlushed<TypeConfig>;
/// openraft metrics of this node.
pub type RaftMetrics = openraft::RaftMetrics<NodeId, Node>;
/// Error of a Raft API call, with the API-specific part `E`.
pub type RaftError<E = openraft::error::Infallible> = openraft::error::RaftError<NodeId, E>;
/// API-specific error of `client_write`.
pub type ClientWriteError = openraft::error::ClientWriteError<NodeId, Node>;
/// API-specific error of `ensure_linearizable`.
pub type CheckIsLeaderError = openraft::error::CheckIsLeaderError<NodeId, Node>;
/// API-specific error of `initialize`.
pub type InitializeError = openraft::error::InitializeError<NodeId, Node>;
/// Error of an outgoing Raft RPC.
pub type RPCError<E = openraft::error::Infallible> = openraft::error::RPCError<NodeId, Node, RaftError<E>>;
/// Refusal by a member that is not the leader, naming the leader if known.
pub type ForwardToLeader = openraft::error::ForwardToLeader<NodeId, Node>;
/// A membership change: add or remove voters or nodes.
pub type ChangeMembers = openraft::ChangeMembers<NodeId, Node>;
/// Log replication RPC (also the leader's heartbeat).
pub type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
/// Answer to an [`AppendEntriesRequest`].
pub type AppendEntriesResponse = openraft::raft::AppendEntriesResponse<NodeId>;
/// Election RPC.
pub type VoteRequest = openraft::raft::VoteRequest<NodeId>;
/// Answer to a [`VoteRequest`].
pub type VoteResponse = openraft::raft::VoteResponse<NodeId>;
/// One chunk of a snapshot sent to a lagging member.
pub type InstallSnapshotRequest = openraft::raft::InstallSnapshotRequest<TypeConfig>;
/// Answer to an [`InstallSnapshotRequest`].
pub type InstallSnapshotResponse = openraft::raft::InstallSnapshotResponse<NodeId>;
