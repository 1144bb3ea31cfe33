//! Grape compute: segments in memory, exact vector search, filters and SQL through DataFusion,
//! and the gateway that serves the public API.
//!
//! A compute node owns nothing durable: it follows the catalog of the meta service, loads the
//! segments the manifests name from object storage, and answers from memory. Losing it loses
//! nothing; another node loads the same segments.
//!
//! # Layout
//! - [`gateway`] (root): the public API — turns requests into meta commands, segment writes
//!   and searches; [`server`] serves it over gRPC.
//! - [`router`] (root): where each segment of a query is read (here or on another node), the
//!   fan-out of searches and scans with replica retries, and the top-k merge.
//! - [`engine`] (leaf): the segments this node holds, kept in step with its assignments;
//!   [`leaf`]: the service other nodes' routers ask, and its client.
//! - [`segment`]: one segment in memory; [`index`]: read-only vector indexes over it
//!   (`flat/` = exact search); [`distance`]: vectorised kernels; [`simd`]: hot loops widened
//!   to AVX2 where the CPU has it; [`topk`]: bounded selection.
//! - [`search`]: parallel search over a collection's segments and the hit batch.
//! - [`filter`]: SQL boolean filters; [`derived`]: typed columns derived from JSON payloads
//!   (`payload:<kind>:<key>`) and the functions that filter on them; [`sql`] and [`table`]: collections as DataFusion tables
//!   with min/max segment pruning.
//! - [`limits`]: what a node accepts — expression size and depth, concurrent requests per
//!   class, SQL memory, request deadlines.
//! - [`liveness`]: ids as keys — which rows of a segment newer upserts and deletes replaced.
//! - [`ingest`]: decoding, conforming and sharding of inserted rows; [`gc`]: deleting orphan
//!   segment objects.
//! - [`jobs`]: the job worker — leases jobs from meta's queue and runs compactions,
//!   server-side ingests and garbage collection, committing fenced by the attempt.
//! - [`meta_client`]: the one trait through which compute talks to meta; [`remote_meta`]: its
//!   implementation for a separate meta group (remote writes, a watched local catalog).
//! - [`metrics`]: Prometheus counters of segment loads, evictions and job attempts.
//! - [`fuzzing`]: entry points of the fuzz targets in `fuzz/` (damaged inserts).
//! - [`http_listener`]: the listener of the HTTP/1.1 servers (TCP_NODELAY, TLS).
//! - [`qdrant`]: Qdrant's REST API over the gateway, for existing Qdrant clients.
//! - [`error`]: errors, and their single mapping to gRPC codes.

#![warn(missing_docs)]

pub mod datagen;
pub mod derived;
pub mod distance;
pub mod engine;
pub mod error;
pub mod filter;
pub mod fuzzing;
pub mod gateway;
pub mod gc;
pub mod http_listener;
pub mod index;
pub mod ingest;
pub mod jobs;
pub mod leaf;
pub mod limits;
pub mod liveness;
pub mod meta_client;
pub mod metrics;
pub mod qdrant;
pub mod remote_meta;
pub mod router;
pub mod search;
pub mod segment;
pub mod simd;
pub mod server;
pub mod settings;
pub mod sql;
pub mod table;
pub mod topk;
pub mod vector_files;

#[cfg(test)]
mod testutil;
#[cfg(test)]
mod gated_store;

pub use engine::Engine;
pub use error::ComputeError;
pub use gateway::Gateway;
