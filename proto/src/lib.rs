//! gRPC definitions of Grape, generated from the `.proto` files beside this crate.
//!
//! # Layout
//! - `grape/v1/grape.proto` → [`v1`]: the public API (package `grape.v1`) that every gateway
//!   serves and every client speaks. Bulk rows travel as Arrow IPC stream bytes.
//! - `grape/raft/v1/raft.proto` → [`raft::v1`]: the Raft transport between meta members
//!   (package `grape.raft.v1`). Internal and peers only; its payloads are openraft's own types
//!   as JSON.
//! - `grape/meta/v1/meta.proto` → [`meta::v1`]: what compute nodes, gateways and the CLI ask
//!   of the meta group (writes, catalog reads, watch, status, config, membership).
//! - `grape/compute/v1/compute.proto` → [`compute::v1`]: the leaf service a gateway asks of
//!   the compute nodes that hold a query's segments (search, scan). Internal, node to node.
//! - `qdrant/*.proto` → [`qdrant`]: Qdrant's published gRPC API (package `qdrant`), copied
//!   from Qdrant under the Apache License 2.0, whose server side every gateway serves for
//!   existing Qdrant clients.
//! - [`codec`]: the protobuf codec of every service and client (messages decoded from one
//!   slice).
//! - [`dense_vector`]: Qdrant's `DenseVector`, by hand so that its floats decode in bulk.
//! - [`net`]: how every server accepts connections (`TCP_NODELAY`).
//! - [`serving`]: serving threads, one single-threaded runtime per core, for the nodes' public port.
//! - [`auth`]: API keys and the cluster secret, checked on every server and sent by every client.
//! - [`rpc_metrics`]: request counts and latencies of every gRPC server, for Prometheus.
//! - [`tls`]: TLS (rustls) for every server and channel.
//! - [`trace`]: a span per request and its id carried between processes.

pub mod auth;
pub mod codec;
pub mod dense_vector;
pub mod net;
pub mod rpc_metrics;
pub mod serving;
pub mod tls;
pub mod trace;

/// The protobuf well-known types (`google.protobuf.Timestamp`) the [`qdrant`] messages use.
pub use prost_types;

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

/// The meta service, package `grape.meta.v1`.
pub mod meta {
    /// Writes, catalog reads, the change watch, status, versioned config and membership,
    /// served by every meta member (and by `grape dev`).
    #[allow(missing_docs, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("grape.meta.v1");
    }
}

/// Compute-to-compute services, package `grape.compute.v1`.
pub mod compute {
    /// The leaf service: search and scan the segments a node holds, for a gateway's fan-out.
    #[allow(missing_docs, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("grape.compute.v1");
    }
}

/// Qdrant's public gRPC API, package `qdrant`: the `Qdrant` (health check), `Collections`
/// and `Points` services and their messages, from Qdrant's own `.proto` files (server side
/// only). Grape serves it so that Qdrant's clients work unchanged with `prefer_grpc`.
#[allow(missing_docs, clippy::all)]
pub mod qdrant {
    tonic::include_proto!("qdrant");
    pub use crate::dense_vector::DenseVector;
}
