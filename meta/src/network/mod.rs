//! The Raft transport between meta members: openraft's RPCs over tonic (gRPC), service
//! `grape.raft.v1.RaftService` from `proto/grape/raft/v1/raft.proto`.
//!
//! ```text
//!  member A (leader)                                    member B
//!  openraft ─► TonicNetwork ─► PeerClient(B) ── gRPC ──► RaftServiceImpl ─► openraft
//!              one lazily connected Channel   AppendEntries, Vote,
//!              per peer address               InstallSnapshot (chunked)
//! ```
//!
//! # Layout
//!
//! - [`client`]: [`TonicNetwork`] (openraft's `RaftNetworkFactory`) and [`PeerClient`]
//!   (`RaftNetwork`): outgoing RPCs, timeouts, and the mapping of failures to openraft's
//!   `RPCError`s.
//! - [`server`]: [`RaftServiceImpl`], the incoming side, with [`raft_service`] to mount it on a
//!   tonic router and [`serve`] to run it alone on a listener. **Peers only**: see its doc.
//! - [`codec`]: the wire format, openraft's types as JSON (snapshot data as raw bytes).
//!
//! Snapshots travel in chunks of `Config::snapshot_max_chunk_size` bytes (openraft 0.9's
//! `Chunked` transport calls [`PeerClient`]'s `install_snapshot` once per chunk, and the
//! receiving Raft reassembles them), so no message grows with the catalog.

pub mod client;
pub mod codec;
pub mod server;

pub use client::{PeerClient, TonicNetwork};
pub use server::{raft_service, serve, RaftServiceImpl};

/// Largest Raft message either side sends or accepts, in bytes: the bound on one log entry
/// (a commit carries segment and delete-log records, never the keys themselves). Batches are kept far smaller, see
/// [`client::BATCH_SPLIT_BYTES`].
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
