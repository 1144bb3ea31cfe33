//! Search and SQL on the gateway: validated here, answered through the router.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use grape_proto::v1;

use super::{Gateway, CATCH_UP_TIMEOUT};
use crate::error::ComputeError;
use crate::filter::Filter;
use crate::index::SearchParams;
use crate::ingest::encode_ipc;
use crate::limits::on_sql_threads;
use crate::router::{missing_error, MAX_REPLANS, READY_WAIT};
use crate::search::{validate_vector, SearchQuery, MAX_K};
use crate::sql::run_sql;

/// The answer of a search before it is encoded for the wire: the API layers served in this
/// process (Qdrant's) read the hits as they are, without an Arrow IPC round trip.
#[derive(Debug)]
pub struct SearchHits {
    /// The hits, best first: `id`, `score`, the payload columns and (when asked) the vectors.
    pub hits: RecordBatch,
    /// The collection version searched.
    pub version: u64,
    /// Rows whose distance was computed.
    pub rows_scanned: u64,
    /// Ids of the segments left out of a partial answer.
    pub missing_segments: Vec<String>,
    /// Segments the collection has at that version.
    pub segments_total: u64,
}

impl Gateway {
    /// Runs a k-nearest-neighbour search over every segment of the collection, wherever each
    /// is held; the hits as an Arrow IPC stream.
    pub async fn search(&self, req: v1::SearchRequest) -> Result<v1::SearchResponse, ComputeError> {
        let answer = self.search_hits(req).await?;
        Ok(v1::SearchResponse {
            arrow_ipc: encode_ipc(&answer.hits.schema(), &[answer.hits])?,
            version: answer.version,
            rows_scanned: answer.rows_scanned,
            missing_segments: answer.missing_segments,
            segments_total: answer.segments_total,
        })
    }

    /// Runs a k-nearest-neighbour search over every segment of the collection, wherever each
    /// is held; the hits as a record batch.
    #[tracing::instrument(name = "search", skip_all, fields(collection = %req.collection, k = req.k))]
    pub async fn search_hits(&self, req: v1::SearchRequest) -> Result<SearchHits, ComputeError> {
        let collection = self.wait_for_version(&req.collection, req.min_version, CATCH_UP_TIMEOUT).await?;
        let spec = &collection.spec;
        let field = spec.vector_field(&req.vector_name).ok_or_else(|| {
            ComputeError::InvalidArgument(format!(
                "collection \"{}\" has no vector field \"{}\" (its fields: {})",
                spec.name,
                req.vector_name,
                spec.vector_columns().join(", ")
            ))
        })?;
        validate_vector(&spec.name, field.dim, &req.vector)?;
        let k = if req.k == 0 { 10 } else { req.k as usize };
        if k > MAX_K {
            return Err(ComputeError::InvalidArgument(format!("k is {k}; at most {MAX_K} hits can be asked for")));
        }
        let schema = spec.schema.clone().map(Arc::new);
        let filter = match (req.filter.trim(), &schema) {
            ("", _) => None,
            (text, Some(schema)) => Some(Filter::compile_off_runtime(text, schema, self.limits().expr()).await?),
            (_, None) => None,
        };
        let params = SearchParams::from_request(req.ef, req.exact, req.oversampling)?;
        let query = SearchQuery {
            vector: req.vector.clone(),
            k,
            filter,
            include_vectors: req.include_vectors,
            params,
            using: field.name,
            vector_columns: spec.vector_columns(),
        };
        let mut collection = collection;
        for _ in 0..MAX_REPLANS {
            let answer = self.search_planned(&req, &collection, schema.as_ref(), &query).await;
            let incomplete = answer.as_ref().map_or(true, |a| !a.missing_segments.is_empty());
            if !(incomplete && self.router.rewritten_since(&collection)) {
                return answer;
            }
            // A compaction swapped segments under the plan: plan again on the new manifest.
            collection = self.wait_for_version(&req.collection, collection.version + 1, CATCH_UP_TIMEOUT).await?;
        }
        self.search_planned(&req, &collection, schema.as_ref(), &query).await
    }

    /// A search of the segments `collection` (one catalog entry) names.
    async fn search_planned(
        &self,
        req: &v1::SearchRequest,
        collection: &grape_meta::Collection,
        schema: Option<&arrow::datatypes::SchemaRef>,
        query: &SearchQuery,
    ) -> Result<SearchHits, ComputeError> {
        let spec = &collection.spec;
        let total = collection.segments().count();
        // A partial answer is wanted now; a whole one may wait for segments being loaded.
        let deadline = tokio::time::Instant::now() + if req.allow_partial { Duration::ZERO } else { READY_WAIT };
        let (routes, mut missing) = self.router.routes(collection, deadline).await;
        if !missing.is_empty() && !req.allow_partial {
            return Err(missing_error(&spec.name, total, &missing));
        }
        let outcome = self.router.search(collection, schema, query, req.filter.trim(), routes, deadline).await?;
        missing.extend(outcome.missing);
        if !missing.is_empty() && !req.allow_partial {
            return Err(missing_error(&spec.name, total, &missing));
        }
        Ok(SearchHits {
            hits: outcome.hits,
            version: collection.version,
            rows_scanned: outcome.rows_scanned,
            missing_segments: missing.into_iter().map(|(m, _)| m.id).collect(),
            segments_total: total as u64,
        })
    }

    /// Runs one SQL query over all collections; with `allow_partial`, over the segments
    /// that can be reached now (the answer lists those left out). Waits first until this node
    /// has applied `min_versions` (collection → version).
    #[tracing::instrument(name = "sql", skip_all, fields(query_bytes = query.len()))]
    pub async fn sql(
        &self,
        query: &str,
        allow_partial: bool,
        min_versions: &std::collections::HashMap<String, u64>,
    ) -> Result<v1::SqlResponse, ComputeError> {
        for (collection, version) in min_versions {
            self.wait_for_version(collection, *version, CATCH_UP_TIMEOUT).await?;
        }
        let mut replans = 0;
        loop {
            let catalog = self.meta.applied_catalog();
            let limits = self.limits.with_overrides(&catalog);
            let runtime = self.sql_memory.runtime(limits.sql_memory_bytes)?;
            let (router, text, expr, pairs) = (self.router.clone(), query.to_string(), limits.expr(), limits.max_join_pairs);
            let planned = catalog.clone();
            let answer =
                on_sql_threads(async move { run_sql(&router, &planned, &text, allow_partial, expr, pairs, runtime).await }).await;
            let incomplete = answer.as_ref().map_or(true, |(_, _, missing)| !missing.is_empty());
            replans += 1;
            if incomplete && replans < MAX_REPLANS && self.router.any_rewritten_since(&catalog) {
                // A compaction swapped segments under the plan: plan again on the new manifests.
                continue;
            }
            let (schema, batches, missing) = answer?;
            return Ok(v1::SqlResponse { arrow_ipc: encode_ipc(&schema, &batches)?, missing_segments: missing });
        }
    }

    /// Health and topology as this node sees it.
    pub async fn status(&self) -> Result<v1::StatusResponse, ComputeError> {
        let meta = self.meta.status().await?;
        let (segments, rows, bytes) = self.engine.stats();
        let (indexed_rows_loaded, index_memory_bytes) = self.engine.index_stats();
        let (requests_running, requests_queued) = self.admission.load();
        let counters = self.admission.counters();
        Ok(v1::StatusResponse {
            node_id: self.node_id,
            meta_leader_id: meta.leader_id.unwrap_or(0),
            meta_term: meta.term,
            meta_last_log_index: meta.last_log_index.unwrap_or(0),
            meta_applied_index: meta.last_applied.unwrap_or(0),
            meta_members: meta.members.clone(),
            storage_url: self.storage.url().to_string(),
            collections: self.meta.applied_catalog().collections.len() as u64,
            segments_loaded: segments,
            rows_loaded: rows,
            memory_bytes: bytes,
            version: env!("CARGO_PKG_VERSION").to_string(),
            requests_running,
            requests_queued,
            requests_rejected: counters.rejected.load(Ordering::Relaxed),
            requests_cancelled: counters.cancelled.load(Ordering::Relaxed),
            requests_timed_out: counters.timed_out.load(Ordering::Relaxed),
            sql_memory_used: self.sql_memory.used(),
            sql_memory_limit: self.limits().sql_memory_bytes,
            jobs_by_state: self.meta.applied_catalog().jobs.depth().into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            catalog_error: self.meta.follow_error().unwrap_or_default(),
            indexes_loaded: self.engine.index_loads().loaded.load(Ordering::Relaxed),
            index_load_failures: self.engine.index_loads().failed.load(Ordering::Relaxed),
            indexed_rows_loaded,
            index_memory_bytes,
            vector_bytes_on_disk: self.engine.vector_bytes_on_disk(),
        })
    }
}
