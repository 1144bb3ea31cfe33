//! Helpers for unit tests: small collections built in memory.

use std::sync::Arc;

use grape_meta::catalog::Metric;
use grape_storage::format::SegmentMeta;

use crate::datagen;
use crate::engine::CollectionView;
use crate::segment::LoadedSegment;

/// A collection of three segments of 700 generated rows each (ids 0..2100 in order), with
/// their column statistics.
pub fn view(metric: Metric, dim: u32) -> CollectionView {
    let schema = datagen::schema(dim);
    let segments: Vec<_> = (0..3u64)
        .map(|i| {
            let batch = datagen::batch(dim, i * 700, 700, i);
            let meta = SegmentMeta {
                format_version: 1,
                id: format!("s{i}"),
                shard: 0,
                path: format!("p{i}"),
                rows: 700,
                size_bytes: 0,
                columns: grape_storage::column_stats(std::slice::from_ref(&batch)),
            };
            Arc::new(LoadedSegment::new(meta, schema.clone(), &[batch]).unwrap())
        })
        .collect();
    let metas = segments.iter().map(|s: &Arc<LoadedSegment>| s.meta.clone()).collect();
    let collection = datagen::collection("t", dim, metric, metas);
    CollectionView { collection, schema: Some(schema), segments, failed: vec![] }
}
