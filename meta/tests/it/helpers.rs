//! Shared builders for the scenarios.

use grape_meta::{CollectionSpec, Command, Metric};
use grape_storage::format::{DeleteLogMeta, SegmentMeta};

pub fn spec(name: &str, shards: u32) -> CollectionSpec {
    CollectionSpec { name: name.to_string(), dim: 8, metric: Metric::Cosine, shards, replicas: 1, schema: None, quantization: Default::default(), vectors: vec![], vectors_on_disk: false }
}

pub fn segment(id: &str, shard: u32, rows: u64) -> SegmentMeta {
    serde_json::from_value(serde_json::json!({
        "id": id,
        "shard": shard,
        "path": format!("collections/docs/shard-{shard}/{id}.lance"),
        "rows": rows,
        "size_bytes": rows * 40,
    }))
    .expect("segment meta from json")
}

pub fn commit(collection: &str, id: u64, segments: Vec<SegmentMeta>, deletes: &[(u32, &str)]) -> Command {
    Command::CommitSegments {
        collection: collection.to_string(),
        collection_id: id,
        segments,
        delete_logs: deletes
            .iter()
            .map(|(shard, id)| DeleteLogMeta {
                id: id.to_string(),
                shard: *shard,
                path: format!("collections/docs/shard-{shard}/{id}.deletes"),
                keys: 1,
                size_bytes: 40,
                seq: 0,
            })
            .collect(),
        job: None,
    }
}
