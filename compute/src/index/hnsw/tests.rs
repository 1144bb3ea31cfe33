//! Recall of the graph index against exact search on a Gaussian mixture, for every metric and
//! quantization, with and without filters; and the artifact's round trip and corruption.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use grape_meta::catalog::{Metric, Quantization};
use grape_storage::format::SegmentMeta;

use super::artifact::{decode, encode};
use super::build::BuildParams;
use super::HnswIndex;
use crate::datagen::gaussian_mixture;
use crate::distance::Scorer;
use crate::index::{search_segment, SearchParams, Vectors};
use crate::segment::LoadedSegment;
use crate::topk::TopK;

const ROWS: usize = 20_000;
const DIM: usize = 64;
const QUERIES: usize = 50;
const K: usize = 10;

/// A segment of `ROWS` Gaussian-mixture vectors with ids 0.., and queries from the same mixture.
fn segment() -> (LoadedSegment, Vec<f32>) {
    let values = gaussian_mixture(ROWS, DIM, 64, 7);
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::UInt64, false),
        Field::new("vector", crate::ingest::vector_type(DIM as u32), false),
    ]));
    let vectors = FixedSizeListArray::new(
        Arc::new(Field::new("item", DataType::Float32, true)),
        DIM as i32,
        Arc::new(Float32Array::from(values)),
        None,
    );
    let columns: Vec<ArrayRef> = vec![Arc::new(UInt64Array::from_iter_values(0..ROWS as u64)), Arc::new(vectors)];
    let batch = RecordBatch::try_new(schema.clone(), columns).expect("batch");
    let meta = SegmentMeta { id: "s".into(), rows: ROWS as u64, ..Default::default() };
    (LoadedSegment::new(meta, schema, &[batch]).expect("segment"), gaussian_mixture(QUERIES, DIM, 64, 8))
}

/// Rows of `out`, closest first.
fn rows(out: TopK) -> Vec<u32> {
    out.into_sorted().iter().map(|c| c.row).collect()
}

/// Mean recall@K of `params` against exact search, and whether every answer had
/// min(K, allowed) hits.
fn recall(seg: &LoadedSegment, queries: &[f32], metric: Metric, params: SearchParams, allowed: Option<&BooleanArray>) -> (f64, bool) {
    let mut found = 0;
    let mut full = true;
    let allowed_rows = allowed.map_or(ROWS, |m| m.true_count());
    for q in queries.chunks_exact(DIM) {
        let scorer = Scorer::new(metric, q);
        let mut exact = TopK::new(K);
        search_segment(seg.first(), 0, q, &scorer, &SearchParams { exact: true, ..params }, allowed, &mut exact);
        let truth = rows(exact);
        let mut ann = TopK::new(K);
        search_segment(seg.first(), 0, q, &scorer, &params, allowed, &mut ann);
        let got = rows(ann);
        full &= got.len() == K.min(allowed_rows);
        found += truth.iter().filter(|t| got.contains(t)).count();
    }
    (found as f64 / (QUERIES * K) as f64, full)
}

#[test]
fn default_parameters_reach_the_recall_goal_for_every_metric_quantization_and_filter() {
    let (seg, queries) = segment();
    // Every 2nd, 20th and 1000th row: filters of 50%, 5% and 0.1% selectivity.
    let masks: Vec<BooleanArray> = [2, 20, 1000].iter().map(|n| BooleanArray::from_iter((0..ROWS).map(|r| Some(r % n == 0)))).collect();
    let mut failures = Vec::new();
    for metric in [Metric::L2, Metric::Cosine, Metric::Dot, Metric::Manhattan] {
        let graph = super::build::build(&seg, metric, BuildParams::default());
        for quantization in [Quantization::None, Quantization::Sq8, Quantization::Bq] {
            let codes = crate::index::codes::Codes::encode(quantization, metric, &seg);
            seg.set_ann("", "test", Arc::new(HnswIndex { metric, dim: DIM, graph: graph.clone(), codes })).expect("fits");
            for mask in std::iter::once(None).chain(masks.iter().map(Some)) {
                let (r, full) = recall(&seg, &queries, metric, SearchParams::default(), mask);
                let label = format!("{metric:?} {quantization:?} filter {:?}", mask.map(|m| m.true_count()));
                if r < 0.95 || !full {
                    failures.push(format!("{label}: recall@{K} {r}, k hits every time: {full}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn a_filtered_graph_search_returns_only_allowed_rows_and_k_of_them() {
    let (seg, queries) = segment();
    let index = HnswIndex::build(&seg, Metric::L2, Quantization::None, BuildParams::default());
    let mask = BooleanArray::from_iter((0..ROWS).map(|r| Some(r % 10 == 3)));
    let params = super::AnnParams { ef: 64, oversampling: 1.0 };
    for q in queries.chunks_exact(DIM) {
        let mut out = TopK::new(K);
        index.search(&seg, 0, q, &Scorer::new(Metric::L2, q), &params, Some(&mask), &mut out);
        let got = rows(out);
        assert_eq!(got.len(), K);
        assert!(got.iter().all(|r| r % 10 == 3), "{got:?}");
    }
}

#[test]
fn a_larger_ef_finds_more_and_exact_finds_all() {
    let (seg, queries) = segment();
    seg.set_ann("", "test", Arc::new(HnswIndex::build(&seg, Metric::L2, Quantization::Sq8, BuildParams::default()))).expect("fits");
    let at = |ef| recall(&seg, &queries, Metric::L2, SearchParams { ef: Some(ef), oversampling: Some(1.0), ..Default::default() }, None).0;
    assert!(at(10) <= at(400), "ef 10: {}, ef 400: {}", at(10), at(400));
    let exact = recall(&seg, &queries, Metric::L2, SearchParams { exact: true, ..Default::default() }, None).0;
    assert_eq!(exact, 1.0);
}

#[test]
fn the_artifact_round_trips_and_refuses_corruption() {
    let values = gaussian_mixture(500, 16, 4, 1);
    let vectors = crate::index::VecVectors::new(values, 16);
    for quantization in [Quantization::None, Quantization::Sq8, Quantization::Bq] {
        let index = HnswIndex::build(&vectors, Metric::Cosine, quantization, BuildParams::default());
        assert_eq!(index.rows(), vectors.rows());
        let bytes = encode(&index);
        assert_eq!(decode(&bytes).expect("decodes"), index);
        for at in [0, 9, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert!(decode(&bad).is_err(), "flipped byte {at} of {}", bytes.len());
        }
        assert!(decode(&bytes[..bytes.len() / 3]).is_err());
        assert!(decode(&[]).is_err());
    }
}
