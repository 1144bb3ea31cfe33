//! gRPC definitions of Grape, generated from the `.proto` files beside this crate.
//!
//! # Layout
//! - `grape/v1/grape.proto` → [`v1`]: the public API (package `grape.v1`) that every gateway
//!   serves and every client speaks. Bulk rows travel as Arrow IPC stream bytes.
//! - `grape/raft/v1/raft.proto` → [`raft::v1`]: the Raft transport between meta members
//!   (package `grape.raft.v1`). Internal and peers only; its payloads are openraft's own types
//!   as JSON.
//! - Further internal services (meta, compute-to-compute) get their own packages in the same
//!   way; they never mix with the public API.

/// The public API, package `grape.v1`.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("grape.v1");
}

/// Internal services of the meta Raft group. Peers only, never clients.
pub mod raft {
    /// The Raft transport between meta members, package `grape.raft.v1`: `AppendEntries`,
    /// `Vote` and `InstallSnapshot` carrying openraft's request and response types as JSON.
    #[allow(missing_docs, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("grape.raft.v1");
    }
}
