//! Garbage collection of orphan objects: segment, keys and delete-log objects that no manifest
//! names.
//!
//! Orphans come from inserts whose commit never happened (a crash or a storage or meta error
//! between upload and commit) and from dropped collections. An object is deleted only if no
//! manifest of the catalog names it **and** it is older than a grace period, so a segment that
//! is uploaded but whose commit is still in flight is never touched.
//!
//! Objects are listed *before* the catalog is read: an object committed in between is then in
//! the catalog and kept. Objects outside `collections/` are never considered.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use grape_meta::catalog::Catalog;
use grape_storage::Storage;

use crate::error::ComputeError;

/// The prefix under which segments live; nothing outside it is collected.
pub const SEGMENTS_PREFIX: &str = "collections";

/// What one collection pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Objects examined.
    pub scanned: u64,
    /// Objects kept because a manifest names them.
    pub referenced: u64,
    /// Unreferenced objects kept because they are younger than the grace period.
    pub too_young: u64,
    /// Paths of the objects deleted.
    pub deleted: Vec<String>,
    /// Bytes freed.
    pub bytes_freed: u64,
}

/// Every object a manifest of `catalog` names: segments, their keys files, the indexes of
/// each of their vector fields, delete logs.
pub fn referenced_paths(catalog: &Catalog) -> HashSet<&str> {
    let mut paths = HashSet::new();
    for shard in catalog.collections.values().flat_map(|c| &c.shards) {
        for segment in &shard.segments {
            paths.insert(segment.path.as_str());
            paths.extend(segment.keys_path.as_deref());
            paths.extend(segment.all_indexes().map(|(_, i)| i.path.as_str()));
        }
        paths.extend(shard.delete_logs.iter().map(|d| d.path.as_str()));
    }
    paths
}

/// Deletes unreferenced segment objects older than `grace`. `catalog` is called after the
/// listing and must return a catalog at least as new as any commit that preceded the call.
pub async fn collect_garbage<F, Fut>(storage: &Storage, grace: Duration, catalog: F) -> Result<GcReport, ComputeError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Catalog, ComputeError>>,
{
    let objects = storage.list_objects(SEGMENTS_PREFIX).await?;
    let catalog = catalog().await?;
    let referenced = referenced_paths(&catalog);
    let now = SystemTime::now();
    let mut report = GcReport { scanned: objects.len() as u64, ..Default::default() };
    for object in objects {
        if referenced.contains(object.path.as_str()) {
            report.referenced += 1;
        } else if now.duration_since(object.last_modified).unwrap_or_default() < grace {
            report.too_young += 1;
        } else {
            storage.delete(&object.path).await?;
            tracing::info!(path = %object.path, bytes = object.size, "deleted orphan object");
            report.bytes_freed += object.size;
            report.deleted.push(object.path);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datagen;
    use grape_meta::catalog::{Collection, CollectionSpec, Metric, ShardManifest};

    #[test]
    fn the_indexes_of_every_vector_field_are_referenced() {
        let index = |path: &str| grape_storage::format::IndexMeta {
            path: path.into(),
            kind: "hnsw".into(),
            quantization: "none".into(),
            size_bytes: 1,
            memory_per_row: 1,
        };
        let mut segment = grape_storage::SegmentMeta { path: "s.lance".into(), ..Default::default() };
        segment.set_index("vector", index("s.vector.hnsw"));
        segment.set_index("text", index("s.v1.hnsw"));
        let manifest = ShardManifest { segments: vec![segment], ..Default::default() };
        let spec = CollectionSpec { name: "docs".into(), dim: 4, metric: Metric::L2, shards: 1, replicas: 1, schema: None, quantization: Default::default(), vectors: vec![], vectors_on_disk: false };
        let mut catalog = Catalog::default();
        catalog.collections.insert("docs".into(), Collection { spec, id: 1, shards: vec![manifest], version: 1 });
        let mut paths: Vec<_> = referenced_paths(&catalog).into_iter().collect();
        paths.sort();
        assert_eq!(paths, ["s.lance", "s.v1.hnsw", "s.vector.hnsw"]);
    }

    #[tokio::test]
    async fn deletes_only_old_unreferenced_segments() {
        let storage = Storage::from_url("memory://").unwrap();
        let batch = datagen::batch(4, 0, 10, 1);
        let kept = storage.write_segment("collections/docs-1", 0, std::slice::from_ref(&batch)).await.unwrap();
        let orphan = storage.write_segment("collections/docs-1", 0, std::slice::from_ref(&batch)).await.unwrap();
        storage.put_if_absent("other/file", bytes::Bytes::from_static(b"x")).await.unwrap();
        let spec = CollectionSpec { name: "docs".into(), dim: 4, metric: Metric::L2, shards: 1, replicas: 1, schema: None, quantization: Default::default(), vectors: vec![], vectors_on_disk: false };
        let ids: arrow::array::ArrayRef = std::sync::Arc::new(arrow::array::UInt64Array::from(vec![3]));
        let log = storage.write_delete_log("collections/docs-1", 0, &ids).await.unwrap();
        let manifest = ShardManifest { version: 1, segments: vec![kept.clone()], delete_logs: vec![log.clone()], ..Default::default() };
        let mut catalog = Catalog::default();
        catalog.collections.insert("docs".into(), Collection { spec, id: 1, shards: vec![manifest], version: 1 });

        let young = collect_garbage(&storage, Duration::from_secs(3600), || async { Ok(catalog.clone()) }).await.unwrap();
        // Each segment comes with its keys file.
        assert_eq!((young.scanned, young.referenced, young.too_young, young.deleted.len()), (5, 3, 2, 0));

        let report = collect_garbage(&storage, Duration::ZERO, || async { Ok(catalog.clone()) }).await.unwrap();
        let orphan_keys = orphan.keys_path.clone().unwrap();
        let mut expected = vec![orphan.path.clone(), orphan_keys.clone()];
        expected.sort();
        let mut deleted = report.deleted.clone();
        deleted.sort();
        assert_eq!(deleted, expected);
        assert!(report.bytes_freed > orphan.size_bytes);
        assert!(storage.read_segment(&kept).await.is_ok(), "a referenced segment is never deleted");
        assert!(storage.read_keys(kept.keys_path.as_deref().unwrap()).await.is_ok(), "nor its keys");
        assert!(storage.read_keys(&log.path).await.is_ok(), "nor a delete log");
        assert!(storage.get("other/file").await.is_ok(), "nothing outside collections/ is touched");
    }
}
