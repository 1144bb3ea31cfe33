//! The leaf service (`grape.compute.v1.Leaf`): searches and scans of the segments this node
//! holds, asked for by a gateway's fan-out; and [`LeafClients`], the gateway's side of it.
//!
//! A leaf answers for exactly the segment ids it is given and names those it does not hold
//! instead of skipping them. Segments are immutable, but which of their rows are live depends
//! on the collection version: the leaf answers at the version the root planned at, waiting
//! (briefly) until its own catalog has caught up with it.

mod client;

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use grape_meta::catalog::{Collection, Metric};
use grape_proto::compute::v1::{self as pb, leaf_server::Leaf};
use tonic::{Request, Response, Status};

pub use client::{LeafClients, LEAF_TIMEOUT};

use crate::derived::DerivedColumn;
use crate::engine::Engine;
use crate::error::ComputeError;
use crate::filter::Filter;
use crate::index::SearchParams;
use crate::gateway::MAX_MESSAGE_BYTES;
use crate::ingest::encode_ipc;
use crate::limits::{ExprLimits, HARD_MAX_EXPR_DEPTH};
use crate::search::{search_segments_async, SearchQuery};
use crate::liveness::{live_segments, LiveSegment, VersionSources};
use crate::meta_client::{wait_for_version, MetaClient};

/// The leaf service over this node's engine.
#[derive(Clone)]
pub struct LeafService {
    engine: Arc<Engine>,
    meta: Arc<dyn MetaClient>,
}

impl LeafService {
    /// Serves the segments `engine` holds; `meta` is the catalog this node follows.
    pub fn new(engine: Arc<Engine>, meta: Arc<dyn MetaClient>) -> Self {
        LeafService { engine, meta }
    }

    /// The catalog entry of `collection` at `version` or later (waiting for this node to
    /// apply it).
    ///
    /// Refuses with `Unavailable` when a compaction replaced segments after `version`: the
    /// liveness of the root's segments cannot be decided from a manifest that no longer lists
    /// them, and the root plans the read again on the newer manifest.
    async fn collection_at(&self, collection: &str, version: u64) -> Result<Collection, ComputeError> {
        // Half the root's timeout, so the root hears why rather than a timeout of its own.
        let entry = wait_for_version(self.meta.as_ref(), collection, version, LEAF_TIMEOUT / 2).await?;
        if entry.rewritten_after(version) {
            return Err(ComputeError::Unavailable(format!(
                "collection \"{collection}\" was compacted after version {version} (now at {}); plan the read again",
                entry.version
            )));
        }
        Ok(entry)
    }

    /// The tonic server for this service, with message limits set.
    pub fn into_server(self) -> pb::leaf_server::LeafServer<Self> {
        pb::leaf_server::LeafServer::new(self).max_decoding_message_size(MAX_MESSAGE_BYTES).max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

/// Compiles a filter the root already checked; a leaf that cannot compile it (it may lag
/// behind the schema the root saw) refuses rather than answering unfiltered. The root held
/// it to the limits in force; the leaf only keeps its own stack safe.
fn compile_filter(text: &str, schema: &arrow::datatypes::SchemaRef) -> Result<Option<Filter>, ComputeError> {
    let limits = ExprLimits { max_bytes: MAX_MESSAGE_BYTES, max_depth: HARD_MAX_EXPR_DEPTH };
    match text.trim() {
        "" => Ok(None),
        t => Ok(Some(Filter::compile(t, schema, limits)?)),
    }
}

/// Rows per message of a scan.
const SCAN_BATCH_ROWS: usize = 65_536;

/// The stream of `ScanSegment`.
type ScanStream = Pin<Box<dyn Stream<Item = Result<pb::ScanBatch, Status>> + Send>>;

#[tonic::async_trait]
impl Leaf for LeafService {
    async fn search_segments(&self, request: Request<pb::SearchSegmentsRequest>) -> Result<Response<pb::SearchSegmentsResponse>, Status> {
        let req = request.into_inner();
        tracing::debug!(collection = %req.collection, segments = req.segment_ids.len(), k = req.k, "leaf search");
        let metric = Metric::parse(&req.metric).ok_or_else(|| Status::invalid_argument(format!("unknown metric \"{}\"", req.metric)))?;
        let (segments, missing) = self.engine.lookup(&req.segment_ids);
        let collection = self.collection_at(&req.collection, req.version).await?;
        // The collection's columns even when this node holds none of the segments asked for,
        // so that an empty answer has the columns of the others.
        let schema = segments.first().map(|s| s.batch.schema()).or_else(|| collection.spec.schema.clone().map(Arc::new));
        let segments = live_segments(segments, &collection, req.version, self.engine.keys()).await?;
        let filter = match &schema {
            Some(schema) => compile_filter(&req.filter, schema)?,
            None => None,
        };
        let params = SearchParams::from_request((req.ef > 0).then_some(req.ef), req.exact, (req.oversampling > 0.0).then_some(req.oversampling)).map_err(Status::from)?;
        let query = SearchQuery {
            vector: req.vector,
            k: req.k.max(1) as usize,
            filter,
            include_vectors: req.include_vectors,
            params,
            using: req.vector_name,
            vector_columns: collection.spec.vector_columns(),
        };
        let result = search_segments_async(metric, schema, segments, query).await?;
        let arrow_ipc = encode_ipc(&result.hits.schema(), &[result.hits]).map_err(Status::from)?;
        Ok(Response::new(pb::SearchSegmentsResponse { arrow_ipc, rows_scanned: result.rows_scanned, missing_segments: missing }))
    }

    type ScanSegmentStream = ScanStream;

    async fn scan_segment(&self, request: Request<pb::ScanSegmentRequest>) -> Result<Response<ScanStream>, Status> {
        let req = request.into_inner();
        let segment = self.engine.segment(&req.segment_id).ok_or_else(|| {
            Status::failed_precondition(format!("segment {} of collection \"{}\" is not held by this node", req.segment_id, req.collection))
        })?;
        let collection = self.collection_at(&req.collection, req.version).await?;
        let live = VersionSources::new(&collection, req.version).live_rows(&segment, &collection, self.engine.keys()).await?;
        let segment = LiveSegment { segment, live };
        let batch = tokio::task::spawn_blocking(move || scan(&segment, &req))
            .await
            .map_err(|e| Status::internal(format!("scan task: {e}")))?
            .map_err(Status::from)?;
        let schema = batch.schema();
        let messages: Vec<Result<pb::ScanBatch, Status>> = (0..batch.num_rows().max(1))
            .step_by(SCAN_BATCH_ROWS)
            .map(|start| {
                let part = batch.slice(start, SCAN_BATCH_ROWS.min(batch.num_rows() - start));
                Ok(pb::ScanBatch { arrow_ipc: encode_ipc(&schema, &[part]).map_err(Status::from)? })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(messages))))
    }
}

/// The live rows of `segment` that match the request's filter, projected.
fn scan(segment: &LiveSegment, req: &pb::ScanSegmentRequest) -> Result<arrow::array::RecordBatch, ComputeError> {
    let derived = req
        .derived_columns
        .iter()
        .map(|name| DerivedColumn::parse(name).unwrap_or_else(|| Err(format!("\"{name}\" is not a derived column"))))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ComputeError::InvalidArgument)?;
    let all = &segment.segment.batch_with(&derived)?;
    let mask = match compile_filter(&req.filter, &all.schema())? {
        Some(filter) => Some(filter.evaluate(all)?),
        None => None,
    };
    let batch = match segment.visible(mask)? {
        Some(mask) => arrow::compute::filter_record_batch(all, &mask)?,
        None => all.clone(),
    };
    if req.all_columns {
        return Ok(batch);
    }
    let projection: Vec<usize> = req.projection.iter().map(|i| *i as usize).collect();
    if let Some(bad) = projection.iter().find(|i| **i >= batch.num_columns()) {
        return Err(ComputeError::InvalidArgument(format!("column {bad} is out of range ({} columns)", batch.num_columns())));
    }
    Ok(batch.project(&projection)?)
}
