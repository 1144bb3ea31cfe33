//! Search and SQL on the gateway.

use std::sync::Arc;

use grape_proto::v1;

use super::{Gateway, CATCH_UP_TIMEOUT};
use crate::error::ComputeError;
use crate::filter::Filter;
use crate::ingest::encode_ipc;
use crate::search::{search, validate_vector, SearchQuery, MAX_K};
use crate::sql::run_sql;

impl Gateway {
    /// Runs a k-nearest-neighbour search.
    pub async fn search(&self, req: v1::SearchRequest) -> Result<v1::SearchResponse, ComputeError> {
        let view = self.engine.wait_for_version(&req.collection, req.min_version, CATCH_UP_TIMEOUT).await?;
        let spec = &view.collection.spec;
        validate_vector(&spec.name, spec.dim, &req.vector)?;
        let k = if req.k == 0 { 10 } else { req.k as usize };
        if k > MAX_K {
            return Err(ComputeError::InvalidArgument(format!("k is {k}; at most {MAX_K} hits can be asked for")));
        }
        let filter = match (req.filter.trim(), &view.schema) {
            ("", _) => None,
            (text, Some(schema)) => Some(Filter::compile(text, schema)?),
            (_, None) => None,
        };
        let query = SearchQuery { vector: req.vector, k, filter, include_vectors: req.include_vectors };
        let version = view.collection.version;
        let result = tokio::task::spawn_blocking(move || search(&view, &query))
            .await
            .map_err(|e| ComputeError::Internal(format!("search task: {e}")))??;
        Ok(v1::SearchResponse { arrow_ipc: encode_ipc(&result.hits.schema(), &[result.hits])?, version, rows_scanned: result.rows_scanned })
    }

    /// Runs one SQL query over all collections.
    pub async fn sql(&self, query: &str) -> Result<v1::SqlResponse, ComputeError> {
        let views: Vec<Arc<_>> = self.engine.views();
        let (schema, batches) = run_sql(&views, query).await?;
        Ok(v1::SqlResponse { arrow_ipc: encode_ipc(&schema, &batches)? })
    }

    /// Health and topology as this node sees it.
    pub async fn status(&self) -> Result<v1::StatusResponse, ComputeError> {
        let meta = self.meta.status().await?;
        let (segments, rows, bytes) = self.engine.stats();
        Ok(v1::StatusResponse {
            node_id: self.node_id,
            meta_leader_id: meta.leader_id.unwrap_or(0),
            meta_term: meta.term,
            meta_last_log_index: meta.last_log_index.unwrap_or(0),
            meta_applied_index: meta.last_applied.unwrap_or(0),
            meta_members: meta.members.clone(),
            storage_url: self.storage.url().to_string(),
            collections: self.engine.views().len() as u64,
            segments_loaded: segments,
            rows_loaded: rows,
            memory_bytes: bytes,
            version: env!("CARGO_PKG_VERSION").to_string(),
        })
    }
}
