//! gRPC definitions of Grape, generated from the `.proto` files beside this crate.
//!
//! # Layout
//! - `grape/v1/grape.proto` → [`v1`]: the public API (package `grape.v1`) that every gateway
//!   serves and every client speaks. Bulk rows travel as Arrow IPC stream bytes.
//! - Internal services (Raft transport, meta, compute-to-compute) get their own packages when
//!   the cluster is split into processes; they never mix with the public API.

/// The public API, package `grape.v1`.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("grape.v1");
}
