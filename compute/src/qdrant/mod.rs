//! Qdrant's API on a gateway, so that existing Qdrant clients work against Grape unchanged.
//!
//! A collection made through this API has a utf8 `id` column (Qdrant's integer and UUID ids,
//! see [`ids`]), the `vector` column, and a `payload` column holding each point's payload as
//! JSON text, readable from SQL and filtered with `payload_match` (see [`compile`]).
//!
//! # Layout
//! - [`json_path`]: payload key paths and the values they reach.
//! - [`condition`]: Qdrant's filter language, parsed and evaluated on one payload.
//! - [`compile`]: filters compiled to DataFusion expressions, and the `payload_match` function.
//! - [`ids`]: point ids and their form in the `id` column.

pub mod compile;
pub mod condition;
pub mod ids;
pub mod json_path;

pub use compile::register_functions;
