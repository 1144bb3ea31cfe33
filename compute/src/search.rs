//! Exact k-nearest-neighbour search over a collection's loaded segments.
//!
//! Segments are searched in parallel (rayon), each into its own bounded [`TopK`]; the
//! per-segment results are merged into the global top k and turned into one Arrow batch of
//! `id`, `score` and the payload columns, closest first.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float32Array, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use rayon::prelude::*;

use crate::distance::Scorer;
use crate::engine::CollectionView;
use crate::error::ComputeError;
use crate::filter::Filter;
use crate::index::VectorIndexRead;
use crate::segment::{ID_COLUMN, VECTOR_COLUMN};
use crate::topk::TopK;

/// Largest `k` a search may ask for.
pub const MAX_K: usize = 10_000;

/// A validated search request against one collection view.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    /// The query vector (length = the collection's dimension, finite values).
    pub vector: Vec<f32>,
    /// Number of hits wanted (1..=[`MAX_K`]).
    pub k: usize,
    /// Optional filter over payload columns.
    pub filter: Option<Filter>,
    /// Whether hits include the vector column.
    pub include_vectors: bool,
}

/// The answer to a search.
#[derive(Debug)]
pub struct SearchResult {
    /// `id`, `score` and payload columns, closest first.
    pub hits: RecordBatch,
    /// Rows compared with the query (those passing the filter).
    pub rows_scanned: u64,
}

/// Checks a query vector against a collection's dimension; NaN and infinities are refused.
pub fn validate_vector(collection: &str, dim: u32, vector: &[f32]) -> Result<(), ComputeError> {
    if vector.len() != dim as usize {
        return Err(ComputeError::InvalidArgument(format!(
            "vector has {} values, collection \"{collection}\" expects {dim}",
            vector.len()
        )));
    }
    if let Some(i) = vector.iter().position(|v| !v.is_finite()) {
        return Err(ComputeError::InvalidArgument(format!(
            "vector value {i} is {}; vectors must be finite numbers",
            vector[i]
        )));
    }
    Ok(())
}

/// Searches every segment of `view` (blocking: call from a blocking thread).
pub fn search(view: &CollectionView, query: &SearchQuery) -> Result<SearchResult, ComputeError> {
    view.require_complete()?;
    let spec = &view.collection.spec;
    let Some(schema) = &view.schema else {
        // No schema means no insert yet, so no rows.
        return Ok(SearchResult { hits: RecordBatch::new_empty(hit_schema_without_payload()), rows_scanned: 0 });
    };
    let scorer = Scorer::new(spec.metric, &query.vector);
    let per_segment: Vec<Result<(TopK, u64), ComputeError>> = view
        .segments
        .par_iter()
        .enumerate()
        .map(|(i, segment)| {
            let mask = match &query.filter {
                Some(f) => Some(f.evaluate(&segment.batch)?),
                None => None,
            };
            let mut top = TopK::new(query.k);
            let scanned = segment.search(i as u32, &query.vector, &scorer, mask.as_ref(), &mut top);
            Ok((top, scanned))
        })
        .collect();
    let mut top = TopK::new(query.k);
    let mut rows_scanned = 0;
    for r in per_segment {
        let (t, scanned) = r?;
        top.merge(t);
        rows_scanned += scanned;
    }
    let hits = materialise(view, schema, &top.into_sorted(), query.include_vectors)?;
    Ok(SearchResult { hits, rows_scanned })
}

fn hit_schema_without_payload() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(ID_COLUMN, DataType::UInt64, false),
        Field::new("score", DataType::Float32, false),
    ]))
}

/// Builds the hit batch: the candidates' rows with `score` after `id`.
fn materialise(view: &CollectionView, schema: &SchemaRef, hits: &[crate::topk::Candidate], include_vectors: bool) -> Result<RecordBatch, ComputeError> {
    let keep: Vec<usize> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| include_vectors || f.name() != VECTOR_COLUMN)
        .map(|(i, _)| i)
        .collect();
    let projected = Arc::new(schema.project(&keep)?);
    let mut rows = Vec::with_capacity(hits.len());
    for hit in hits {
        let segment = &view.segments[hit.segment as usize];
        let one = take_record_batch(&segment.batch, &UInt32Array::from(vec![hit.row]))?;
        rows.push(one.project(&keep)?);
    }
    let rows = concat_batches(&projected, &rows)?;
    let scores: ArrayRef = Arc::new(Float32Array::from_iter_values(hits.iter().map(|h| h.distance)));
    let mut fields: Vec<Arc<Field>> = projected.fields().iter().cloned().collect();
    let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
    let at = fields.iter().position(|f| f.name() == ID_COLUMN).map_or(0, |p| p + 1);
    fields.insert(at, Arc::new(Field::new("score", DataType::Float32, false)));
    columns.insert(at, scores);
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}
