//! Qdrant's REST API on a gateway, so that existing Qdrant clients work against Grape
//! unchanged.
//!
//! A collection made through this API has a utf8 `id` column (Qdrant's integer and UUID ids,
//! see [`ids`]), the `vector` column, and a `payload` column holding each point's payload as
//! JSON text, readable from SQL and filtered with `payload_match` (see [`compile`]).
//!
//! # Layout
//! - [`server`]: the HTTP routes and serving them.
//! - [`grpc`]: Qdrant's gRPC API, each RPC converted to and from its REST counterpart.
//! - [`collections`], [`points`], [`query`]: the endpoints, over the [`Gateway`];
//!   [`aliases`] and [`payload_index`] (indexes declared, facets, `order_by`), which keep what
//!   the catalog does not hold in the versioned config ([`settings`]); [`fusion`]: prefetch
//!   and the fusion or re-ranking of its results; [`groups`]: searches whose hits are
//!   gathered by a payload key's values.
//! - [`batch`]: a batch of upserts, deletes and payload edits applied in order.
//! - [`given`]: points to upsert as requests give them (REST's body read straight into
//!   floats).
//! - [`reply`]: Qdrant's response envelope and error shape.
//! - [`json_path`]: payload key paths and the values they reach.
//! - [`condition`]: Qdrant's filter language, parsed and evaluated on one payload.
//! - [`compile`]: filters compiled to DataFusion expressions, and the `payload_match` function.
//! - [`ids`]: point ids and their form in the `id` column.

pub mod aliases;
pub mod batch;
pub mod collections;
pub mod compile;
pub mod condition;
pub mod fusion;
pub mod given;
pub mod groups;
pub mod grpc;
pub mod ids;
pub mod json_path;
pub mod payload_index;
pub mod points;
pub mod query;
pub mod reply;
pub mod server;
pub mod settings;

use std::sync::Arc;

pub use compile::register_functions;
pub use server::serve;

use crate::gateway::Gateway;

/// The Qdrant API over one gateway.
#[derive(Clone)]
pub struct QdrantApi {
    /// The gateway every endpoint goes through.
    pub gateway: Arc<Gateway>,
}

/// The Qdrant version this API follows (clients warn when their major or minor differ much).
pub const QDRANT_VERSION: &str = "1.19.0";
