//! Helpers for unit tests: small collections built in memory.

use std::sync::Arc;

use grape_meta::catalog::{Collection, CollectionSpec, Metric, ShardManifest};
use grape_storage::format::SegmentMeta;

use crate::datagen;
use crate::engine::CollectionView;
use crate::segment::LoadedSegment;

/// A collection of three segments of 700 generated rows each (ids 0..2100 in order), with
/// their column statistics.
pub fn view(metric: Metric, dim: u32) -> CollectionView {
    let schema = datagen::schema(dim);
    let segments = (0..3u64)
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
    let spec = CollectionSpec { name: "t".into(), dim, metric, shards: 1, replicas: 1, schema: Some(schema.as_ref().clone()) };
    let collection = Collection { spec, id: 1, shards: vec![ShardManifest::default()], version: 1 };
    CollectionView { collection, schema: Some(schema), segments, failed: vec![] }
}
