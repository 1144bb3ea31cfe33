//! Helpers for unit tests: small collections built in memory.

use std::sync::Arc;

use grape_meta::catalog::Metric;
use grape_storage::format::SegmentMeta;

use crate::datagen;
use async_trait::async_trait;
use grape_meta::catalog::Catalog;
use grape_meta::{Command, CommandResult, MetaError, MetaStatus};
use tokio::sync::watch;

use crate::engine::{CollectionView, Engine};
use crate::meta_client::MetaClient;
use crate::router::{Role, Router};
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
                keys_path: None,
                seq: 0,
                ..Default::default()
            };
            Arc::new(LoadedSegment::new(meta, schema.clone(), &[batch]).unwrap())
        })
        .collect();
    let metas = segments.iter().map(|s: &Arc<LoadedSegment>| s.meta.clone()).collect();
    let collection = datagen::collection("t", dim, metric, metas);
    CollectionView { collection, schema: Some(schema), segments, failed: vec![] }
}

/// A meta service frozen at one catalog: reads answer it, writes fail.
struct FixedMeta(Catalog, watch::Sender<u64>);

#[async_trait]
impl MetaClient for FixedMeta {
    async fn write(&self, _: Command) -> Result<CommandResult, MetaError> {
        Err(MetaError::Raft("read-only test catalog".into()))
    }
    async fn catalog(&self) -> Result<Catalog, MetaError> {
        Ok(self.0.clone())
    }
    fn applied_catalog(&self) -> Arc<Catalog> {
        Arc::new(self.0.clone())
    }
    fn changes(&self) -> watch::Receiver<u64> {
        self.1.subscribe()
    }
    async fn status(&self) -> Result<MetaStatus, MetaError> {
        Err(MetaError::Raft("read-only test catalog".into()))
    }
}

/// The router of node 1 in `role` over a fixed `catalog`, holding nothing yet.
pub fn router_over(catalog: &Catalog, role: Role) -> Arc<Router> {
    let engine = Arc::new(Engine::new(grape_storage::Storage::from_url("memory://").unwrap()));
    let meta = Arc::new(FixedMeta(catalog.clone(), watch::Sender::new(0)));
    Arc::new(Router::new(meta, engine, role, 1))
}

/// A standalone node's router holding the segments of `view`, and a catalog naming them.
pub fn standalone_router(view: CollectionView) -> (Arc<Router>, Catalog) {
    let mut catalog = Catalog::default();
    let mut collection = view.collection.clone();
    collection.spec.schema = view.schema.as_ref().map(|s| s.as_ref().clone());
    catalog.collections.insert(collection.spec.name.clone(), collection);
    let router = router_over(&catalog, Role::Standalone);
    for segment in view.segments {
        router.engine().adopt(segment);
    }
    (router, catalog)
}
