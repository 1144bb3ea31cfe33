//! Exact k-nearest-neighbour search over a collection's loaded segments.
//!
//! Segments are searched in parallel (rayon), each into its own bounded [`TopK`]; the
//! per-segment results are merged into the global top k and turned into one Arrow batch of
//! `id`, `score` and the payload columns, closest first.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float32Array, RecordBatch};
use arrow::compute::{concat_batches, interleave_record_batch, lexsort_to_indices, take_record_batch, SortColumn};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use grape_meta::catalog::Metric;
use rayon::prelude::*;

use crate::distance::Scorer;
use crate::engine::CollectionView;
use crate::error::ComputeError;
use crate::filter::Filter;
use crate::index::{search_segment, SearchParams};
use crate::liveness::LiveSegment;
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
    /// How the ANN indexes are used (defaults when not given).
    pub params: SearchParams,
    /// The vector field searched; `""` for the first (`vector` in a collection without
    /// named fields).
    pub using: String,
    /// The collection's vector columns: hits leave them out unless `include_vectors`.
    pub vector_columns: Vec<String>,
}

impl Default for SearchQuery {
    /// The 10 nearest to an empty vector in the first field of a collection without named
    /// fields, unfiltered, without vectors: to fill in with `..Default::default()`.
    fn default() -> Self {
        Self {
            vector: Vec::new(),
            k: 10,
            filter: None,
            include_vectors: false,
            params: SearchParams::default(),
            using: String::new(),
            vector_columns: vec![VECTOR_COLUMN.to_string()],
        }
    }
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
        return Err(ComputeError::InvalidArgument(format!("vector value {i} is {}; vectors must be finite numbers", vector[i])));
    }
    Ok(())
}

/// Searches every segment of `view` (blocking: call from a blocking thread); fails with
/// `Unavailable` if the view misses segments.
pub fn search(view: &CollectionView, query: &SearchQuery) -> Result<SearchResult, ComputeError> {
    view.require_complete()?;
    let segments: Vec<LiveSegment> = view.segments.iter().cloned().map(LiveSegment::all).collect();
    let field = view.collection.spec.vector_field(&query.using).ok_or_else(|| {
        ComputeError::InvalidArgument(format!("collection \"{}\" has no vector field \"{}\"", view.collection.spec.name, query.using))
    })?;
    search_segments(field.metric, view.schema.as_ref(), &segments, query)
}

/// Searches the live rows of `segments`, all with `schema` (blocking: call from a blocking
/// thread). `None` schema means no insert yet: an empty answer.
pub fn search_segments(
    metric: Metric,
    schema: Option<&SchemaRef>,
    segments: &[LiveSegment],
    query: &SearchQuery,
) -> Result<SearchResult, ComputeError> {
    search_segments_until(metric, schema, segments, query, &AtomicBool::new(false), true)
}

/// Distances a search may compute on the async thread that received it. A graph search
/// computes a few thousand; past this budget (a scan, a filter over many rows) it moves to
/// a blocking thread, and its segments are searched in parallel. The hops between threads
/// cost more than a small search itself.
pub const INLINE_WORK: usize = 20_000;

/// About how many distances `query` computes over `segments` (rows scanned count one each,
/// and so do rows a filter is evaluated on).
pub fn estimated_work(segments: &[LiveSegment], query: &SearchQuery) -> usize {
    segments
        .iter()
        .map(|s| match (query.params.exact || query.filter.is_some(), s.segment.column(&query.using).and_then(|c| c.ann())) {
            (false, Some(ann)) => {
                let ef = query.params.ef.unwrap_or_else(|| crate::index::default_ef(ann.codes.quantization()));
                ef.max(query.k) * 24
            }
            _ => s.segment.rows(),
        })
        .sum()
}

/// [`search_segments`] that stops (with `Unavailable`) before each segment it has not
/// started once `cancelled` is set: the work of a request nobody waits for any more.
/// Segments are searched in parallel (rayon) when `parallel`, one after another otherwise.
fn search_segments_until(
    metric: Metric,
    schema: Option<&SchemaRef>,
    segments: &[LiveSegment],
    query: &SearchQuery,
    cancelled: &AtomicBool,
    parallel: bool,
) -> Result<SearchResult, ComputeError> {
    let Some(schema) = schema else {
        // No schema means no insert yet, so no rows.
        return Ok(SearchResult { hits: RecordBatch::new_empty(hit_schema_without_payload()), rows_scanned: 0 });
    };
    let scorer = Scorer::new(metric, &query.vector);
    let search_one = |(i, segment): (usize, &LiveSegment)| -> Result<(TopK, u64), ComputeError> {
        if cancelled.load(Ordering::Relaxed) {
            return Err(ComputeError::Unavailable("the search was cancelled".into()));
        }
        let mask = match &query.filter {
            Some(f) => Some(f.evaluate_segment(&segment.segment)?),
            None => None,
        };
        let mask = segment.visible(mask)?;
        let column = segment.segment.column(&query.using).ok_or_else(|| {
            ComputeError::InvalidArgument(format!("segment {} has no vector field \"{}\"", segment.segment.meta.id, query.using))
        })?;
        let mut top = TopK::new(query.k);
        let scanned = search_segment(column, i as u32, &query.vector, &scorer, &query.params, mask.as_ref(), &mut top);
        Ok((top, scanned))
    };
    let per_segment: Vec<Result<(TopK, u64), ComputeError>> = if parallel && segments.len() > 1 {
        segments.par_iter().enumerate().map(search_one).collect()
    } else {
        segments.iter().enumerate().map(search_one).collect()
    };
    let mut top = TopK::new(query.k);
    let mut rows_scanned = 0;
    for r in per_segment {
        let (t, scanned) = r?;
        top.merge(t);
        rows_scanned += scanned;
    }
    let hidden: &[String] = if query.include_vectors { &[] } else { &query.vector_columns };
    let hits = materialise(segments, schema, &top.into_sorted(), hidden)?;
    Ok(SearchResult { hits, rows_scanned })
}

/// [`search_segments`] for async callers: a search within [`INLINE_WORK`] runs right here,
/// unless this is a serving thread with other requests waiting
/// ([`grape_proto::serving::others_in_flight`]); a larger one, or one that would hold
/// others up, on a blocking thread, where dropping the future (the request was abandoned)
/// stops it before the segments it has not started.
pub async fn search_segments_async(
    metric: Metric,
    schema: Option<SchemaRef>,
    segments: Vec<LiveSegment>,
    query: SearchQuery,
) -> Result<SearchResult, ComputeError> {
    /// Sets the flag when dropped: the waiting side went away.
    struct CancelOnDrop(Arc<AtomicBool>);
    impl Drop for CancelOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    if estimated_work(&segments, &query) <= INLINE_WORK && !grape_proto::serving::others_in_flight() {
        return search_segments_until(metric, schema.as_ref(), &segments, &query, &AtomicBool::new(false), false);
    }
    let flag = Arc::new(AtomicBool::new(false));
    // Once the task is done the flag no longer matters, so the guard may set it then too.
    let _cancel = CancelOnDrop(flag.clone());
    tokio::task::spawn_blocking(move || search_segments_until(metric, schema.as_ref(), &segments, &query, &flag, true))
        .await
        .map_err(|e| ComputeError::Internal(format!("search task: {e}")))?
}

/// Merges hit batches of the same schema (from several nodes) into the best `k`, closest
/// first; ties go to the smaller id, so the answer does not depend on how segments were
/// spread over nodes.
///
/// Batches without hits are left out: their columns may be the bare `id, score` of a node
/// that held none of the segments it was asked for. Batches with hits must have the same
/// columns (an `Internal` error otherwise, never a panic).
pub fn merge_hits(batches: Vec<RecordBatch>, k: usize) -> Result<RecordBatch, ComputeError> {
    let empty = batches.first().cloned();
    let batches: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
    let Some(first) = batches.first() else {
        return Ok(empty.unwrap_or_else(|| RecordBatch::new_empty(hit_schema_without_payload())));
    };
    let schema = first.schema();
    if let Some(other) = batches.iter().find(|b| b.schema().fields() != schema.fields()) {
        return Err(ComputeError::Internal(format!(
            "hits to merge have different columns: {:?} and {:?}",
            schema.fields().iter().map(|f| f.name()).collect::<Vec<_>>(),
            other.schema().fields().iter().map(|f| f.name()).collect::<Vec<_>>()
        )));
    }
    if batches.len() == 1 && first.num_rows() <= k {
        return Ok(first.clone());
    }
    let all = concat_batches(&schema, &batches)?;
    let sort_by = |name: &str| -> Result<SortColumn, ComputeError> {
        let values = all.column_by_name(name).ok_or_else(|| ComputeError::Internal(format!("hits have no `{name}` column")))?;
        Ok(SortColumn { values: values.clone(), options: None })
    };
    let order = lexsort_to_indices(&[sort_by("score")?, sort_by(ID_COLUMN)?], Some(k))?;
    Ok(take_record_batch(&all, &order)?)
}

fn hit_schema_without_payload() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(ID_COLUMN, DataType::UInt64, false), Field::new("score", DataType::Float32, false)]))
}

/// Builds the hit batch: the candidates' rows without the `hidden` columns, with `score`
/// after `id`.
fn materialise(
    segments: &[LiveSegment],
    schema: &SchemaRef,
    hits: &[crate::topk::Candidate],
    hidden: &[String],
) -> Result<RecordBatch, ComputeError> {
    let keep: Vec<usize> = schema.fields().iter().enumerate().filter(|(_, f)| !hidden.contains(f.name())).map(|(i, _)| i).collect();
    let projected = Arc::new(schema.project(&keep)?);
    // The hits' segments, projected (no copy), and each hit as (segment's place, row).
    let mut sources: Vec<RecordBatch> = Vec::new();
    let mut place: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    let mut indices = Vec::with_capacity(hits.len());
    for hit in hits {
        let at = match place.get(&hit.segment) {
            Some(at) => *at,
            None => {
                let batch = segments[hit.segment as usize].segment.batch.project(&keep)?;
                sources.push(RecordBatch::try_new(projected.clone(), batch.columns().to_vec())?);
                place.insert(hit.segment, sources.len() - 1);
                sources.len() - 1
            }
        };
        indices.push((at, hit.row as usize));
    }
    let rows = if sources.is_empty() {
        RecordBatch::new_empty(projected.clone())
    } else {
        interleave_record_batch(&sources.iter().collect::<Vec<_>>(), &indices)?
    };
    let scores: ArrayRef = Arc::new(Float32Array::from_iter_values(hits.iter().map(|h| h.distance)));
    let mut fields: Vec<Arc<Field>> = projected.fields().iter().cloned().collect();
    let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
    let at = fields.iter().position(|f| f.name() == ID_COLUMN).map_or(0, |p| p + 1);
    fields.insert(at, Arc::new(Field::new("score", DataType::Float32, false)));
    columns.insert(at, scores);
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datagen;
    use crate::testutil::view;
    use arrow::array::AsArray;
    use arrow::datatypes::UInt64Type;

    /// Naive f64 distance in each metric's definition.
    fn naive(metric: Metric, a: &[f32], b: &[f32]) -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
        match metric {
            Metric::L2 => a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum(),
            Metric::Manhattan => a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).abs()).sum(),
            Metric::Dot => -dot,
            Metric::Cosine => {
                let n = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
                1.0 - dot / (n(a) * n(b))
            }
        }
    }

    #[test]
    fn every_metric_returns_the_brute_force_top_k_with_filter() {
        for metric in [Metric::L2, Metric::Cosine, Metric::Dot, Metric::Manhattan] {
            let v = view(metric, 24);
            let q = datagen::query(24, 9);
            let filter = Filter::compile("tag = 'tech' OR price > 80", v.schema.as_ref().unwrap(), crate::limits::ExprLimits::default()).unwrap();
            for filter in [None, Some(filter)] {
                let mut truth: Vec<(f64, u64)> = Vec::new();
                for s in &v.segments {
                    let ids = s.batch.column(0).as_primitive::<UInt64Type>();
                    let mask = filter.as_ref().map(|f| f.evaluate(&s.batch).unwrap());
                    for r in 0..s.rows() {
                        if mask.as_ref().is_none_or(|m| m.value(r)) {
                            truth.push((naive(metric, &q, s.vector(r)), ids.value(r)));
                        }
                    }
                }
                truth.sort_by(|a, b| a.0.total_cmp(&b.0));
                let expected: Vec<u64> = truth.iter().take(10).map(|t| t.1).collect();
                let query = SearchQuery { vector: q.clone(), filter: filter.clone(), ..Default::default() };
                let got = search(&v, &query).unwrap();
                let ids: Vec<u64> = got.hits.column(0).as_primitive::<UInt64Type>().values().to_vec();
                assert_eq!(ids, expected, "{metric:?}, filtered: {}", filter.is_some());
                assert_eq!(got.rows_scanned as usize, truth.len());
                let scores = got.hits.column(1).as_primitive::<arrow::datatypes::Float32Type>();
                for (s, t) in scores.values().iter().zip(&truth) {
                    assert!((*s as f64 - t.0).abs() < 1e-3 * t.0.abs().max(1.0), "{metric:?} score {s} vs {}", t.0);
                }
            }
        }
    }

    #[test]
    fn hits_merged_from_several_nodes_equal_one_search_over_all_segments() {
        let v = view(Metric::L2, 16);
        let query = SearchQuery { vector: datagen::query(16, 3), k: 10, filter: None, ..Default::default() };
        let whole = search(&v, &query).unwrap().hits;
        let parts: Vec<RecordBatch> = v
            .segments
            .iter()
            .map(|s| search_segments(Metric::L2, v.schema.as_ref(), &[LiveSegment::all(s.clone())], &query).unwrap().hits)
            .collect();
        assert_eq!(merge_hits(parts, 10).unwrap(), whole);
    }

    #[test]
    fn an_empty_answer_without_payload_columns_neither_panics_the_merge_nor_drops_columns() {
        let v = view(Metric::L2, 16);
        let query = SearchQuery { vector: datagen::query(16, 3), k: 10, filter: None, ..Default::default() };
        let whole = search(&v, &query).unwrap().hits;
        // What a node that holds none of the segments it was asked for answers.
        let bare = search_segments(Metric::L2, None, &[], &query).unwrap().hits;
        assert_eq!(bare.num_columns(), 2);
        for parts in [vec![whole.clone(), bare.clone()], vec![bare.clone(), whole.clone()]] {
            let merged = merge_hits(parts, 10).expect("merge");
            assert_eq!(merged, whole, "the payload columns and hits are kept, whatever the order");
        }
        let other = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("x", DataType::UInt64, false)])),
            vec![Arc::new(arrow::array::UInt64Array::from(vec![1]))],
        )
        .unwrap();
        let err = merge_hits(vec![whole, other], 10).expect_err("hits of different columns");
        assert!(matches!(err, ComputeError::Internal(_)), "{err}");
    }

    #[test]
    fn missing_segments_fail_instead_of_answering_partially() {
        let mut v = view(Metric::L2, 8);
        v.failed.push(("p9".into(), "storage down".into()));
        let query = SearchQuery { vector: vec![0.0; 8], k: 3, filter: None, ..Default::default() };
        let err = search(&v, &query).unwrap_err();
        assert!(matches!(err, ComputeError::Unavailable(_)), "{err}");
    }
}
