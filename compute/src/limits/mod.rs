//! What one node accepts: limits on expressions, concurrent requests, SQL memory and time,
//! so that no request (or flood of requests) can take a node down. Each limit is a clear
//! error (`INVALID_ARGUMENT`, `RESOURCE_EXHAUSTED`, `DEADLINE_EXCEEDED`) rather than a crash,
//! a stall or memory exhausted.
//!
//! # Layout
//! - this file: [`Limits`], the settings, from the config file's `[limits]` section and the
//!   versioned config (`grape config set limits/NAME VALUE`, applied without a restart);
//! - `expr.rs`: size and depth limits on filter and SQL text, checked before DataFusion plans
//!   it, and the rewrites that keep long `OR`/`AND` chains cheap and shallow;
//! - `admission.rs`: bounded concurrency with a bounded queue per request class, and the
//!   counters of rejected, cancelled and timed-out requests;
//! - `join_size.rs`: the bound on joins that compare every pair of rows;
//! - `sql_memory.rs`: the memory pool SQL queries run in;
//! - `sql_threads.rs`: the runtime SQL queries run on, apart from the one serving requests.

mod admission;
mod expr;
mod join_size;
mod parse_work;
mod sql_memory;
mod sql_threads;

use std::time::Duration;

use grape_meta::Catalog;
use serde::{Deserialize, Serialize};

pub use admission::{Admission, AdmissionCounters, InFlight, Permit, RequestClass};
pub use join_size::check_join_sizes;
pub use expr::{prepare_filter, prepare_statement, ExprLimits, HARD_MAX_EXPR_DEPTH};
pub use sql_memory::SqlMemory;
pub use sql_threads::on_sql_threads;

/// Prefix of the versioned-config keys that override [`Limits`] (`limits/max_expr_depth`).
pub const CONFIG_PREFIX: &str = "limits/";

/// The limits a node enforces. Every field has a default; a config file sets any of them
/// under `[limits]`, and `grape config set limits/FIELD VALUE` overrides the file on every
/// node at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest search filter or SQL query text, in bytes.
    pub max_query_bytes: usize,
    /// Deepest nesting of an expression (after long `AND`/`OR` chains are balanced and
    /// `col = a OR col = b …` becomes `col IN (a, b, …)`); at most [`HARD_MAX_EXPR_DEPTH`].
    pub max_expr_depth: usize,
    /// Searches running at once on this node (as a gateway); more wait in the queue.
    pub search_concurrency: usize,
    /// Searches waiting for a slot; more are refused with `RESOURCE_EXHAUSTED`.
    pub search_queue: usize,
    /// SQL queries running at once on this node.
    pub sql_concurrency: usize,
    /// SQL queries waiting for a slot.
    pub sql_queue: usize,
    /// Writes (inserts, ingest streams, collection changes) running at once.
    pub write_concurrency: usize,
    /// Writes waiting for a slot.
    pub write_queue: usize,
    /// Memory all SQL queries of this node may hold together (sorts, joins, aggregates), in
    /// bytes; a query that needs more fails with `RESOURCE_EXHAUSTED` (nothing spills to disk).
    pub sql_memory_bytes: u64,
    /// Most pairs of rows a join without an equality condition (a nested loop or a cross
    /// join) may compare, counting every row of the segments beneath each side.
    pub max_join_pairs: u64,
    /// Longest a request may take, waiting in the queue included, in seconds; a client's own
    /// gRPC deadline is honoured too when it is shorter.
    pub request_timeout_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_query_bytes: 1 << 20,
            max_expr_depth: 256,
            search_concurrency: 64,
            search_queue: 1024,
            sql_concurrency: 8,
            sql_queue: 64,
            write_concurrency: 16,
            write_queue: 16,
            sql_memory_bytes: 2 << 30,
            max_join_pairs: 10_000_000_000,
            request_timeout_secs: 60,
        }
    }
}

impl Limits {
    /// These limits with the versioned config's `limits/…` keys of `catalog` applied. A key
    /// that names no limit or does not hold a whole number is ignored with a warning.
    pub fn with_overrides(&self, catalog: &Catalog) -> Limits {
        let mut overrides = catalog.config.list(CONFIG_PREFIX).peekable();
        if overrides.peek().is_none() {
            return self.clone();
        }
        let mut fields = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return self.clone(),
        };
        for (key, value) in overrides {
            let name = &key[CONFIG_PREFIX.len()..];
            match (fields.get_mut(name), value.value.trim().parse::<u64>()) {
                (Some(field), Ok(n)) => *field = n.into(),
                (None, _) => tracing::warn!(key, "config key names no limit; ignored"),
                (_, Err(_)) => tracing::warn!(key, value = %value.value, "limit is not a whole number; ignored"),
            }
        }
        serde_json::from_value(serde_json::Value::Object(fields)).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "limits from the config are out of range; ignored");
            self.clone()
        })
    }

    /// The expression limits within these.
    pub fn expr(&self) -> ExprLimits {
        ExprLimits { max_bytes: self.max_query_bytes, max_depth: self.max_expr_depth.min(HARD_MAX_EXPR_DEPTH) }
    }

    /// The request deadline.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_config_overrides_the_file_and_bad_values_are_ignored() {
        let base = Limits { sql_concurrency: 3, ..Limits::default() };
        let mut catalog = Catalog::default();
        assert_eq!(base.with_overrides(&catalog), base);
        catalog.config.put("limits/sql_concurrency", "5", None);
        catalog.config.put("limits/max_expr_depth", "many", None);
        catalog.config.put("limits/no_such_limit", "1", None);
        let limits = base.with_overrides(&catalog);
        assert_eq!(limits.sql_concurrency, 5);
        assert_eq!(limits.max_expr_depth, base.max_expr_depth);
    }

    #[test]
    fn expression_depth_is_capped() {
        let limits = Limits { max_expr_depth: 1_000_000, ..Limits::default() };
        assert_eq!(limits.expr().max_depth, HARD_MAX_EXPR_DEPTH);
    }
}
