//! The leaf: segments of every collection held in memory, kept in step with the catalog.
//!
//! [`Engine::sync`] takes a catalog, loads the segments it names that are not in memory yet
//! (in parallel, bounded), drops those it no longer names, and publishes a new immutable
//! [`CollectionView`] per collection. Queries take a view and never see a half-applied change.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use futures::stream::{self, StreamExt};
use grape_meta::catalog::{Catalog, Collection};
use grape_storage::Storage;
use tokio::sync::watch;

use crate::error::ComputeError;
use crate::segment::{LoadedSegment, SegmentRef};

/// How many segments are read from storage at once.
const LOAD_CONCURRENCY: usize = 8;

/// One collection as this node can serve it: its catalog entry and its loaded segments.
#[derive(Debug, Clone)]
pub struct CollectionView {
    /// The catalog entry (spec, manifests, version) this view was built from.
    pub collection: Collection,
    /// The Arrow schema of the collection's rows; `None` until the first insert sets it.
    pub schema: Option<SchemaRef>,
    /// Loaded segments, in manifest order.
    pub segments: Vec<SegmentRef>,
    /// Segments the manifest names that could not be loaded, with the reason.
    pub failed: Vec<(String, String)>,
}

impl CollectionView {
    /// Fails with `Unavailable` if any segment of the manifest is not loaded: an answer is
    /// never silently partial.
    pub fn require_complete(&self) -> Result<(), ComputeError> {
        match self.failed.first() {
            None => Ok(()),
            Some((path, reason)) => Err(ComputeError::Unavailable(format!(
                "collection \"{}\": {} of {} segments are not loaded (first: {path}: {reason})",
                self.collection.spec.name,
                self.failed.len(),
                self.collection.segments().count()
            ))),
        }
    }
}

/// All collections held in memory on this node.
#[derive(Debug)]
pub struct Engine {
    storage: Storage,
    views: RwLock<HashMap<String, Arc<CollectionView>>>,
    /// Bumped after every sync, so waiters for a collection version can re-check.
    synced: watch::Sender<u64>,
}

impl Engine {
    /// An engine with nothing loaded, reading segments from `storage`.
    pub fn new(storage: Storage) -> Self {
        Self { storage, views: RwLock::new(HashMap::new()), synced: watch::Sender::new(0) }
    }

    /// The storage segments are read from.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The current view of a collection, if the last synced catalog has it.
    pub fn view(&self, name: &str) -> Option<Arc<CollectionView>> {
        self.views.read().ok()?.get(name).cloned()
    }

    /// Views of all collections, by name.
    pub fn views(&self) -> Vec<Arc<CollectionView>> {
        let mut v: Vec<_> = self.views.read().map(|m| m.values().cloned().collect()).unwrap_or_default();
        v.sort_by(|a, b| a.collection.spec.name.cmp(&b.collection.spec.name));
        v
    }

    /// Brings memory in step with `catalog`: loads new segments, drops removed ones.
    ///
    /// A segment that fails to load is recorded in its view's `failed` list (queries on that
    /// collection then fail with `Unavailable`) and is retried on the next sync.
    pub async fn sync(&self, catalog: &Catalog) {
        let current: HashMap<String, SegmentRef> =
            self.views().iter().flat_map(|v| v.segments.iter().map(|s| (s.meta.id.clone(), s.clone()))).collect();
        let mut next = HashMap::new();
        for (name, collection) in &catalog.collections {
            let schema = collection.spec.schema.clone().map(Arc::new);
            let mut segments = Vec::new();
            let mut failed = Vec::new();
            if let Some(schema) = &schema {
                let wanted: Vec<_> = collection.segments().cloned().collect();
                let loaded: Vec<_> = stream::iter(wanted)
                    .map(|meta| {
                        let existing = current.get(&meta.id).cloned();
                        let schema = schema.clone();
                        async move {
                            if let Some(seg) = existing {
                                return (meta, Ok(seg));
                            }
                            let result = self.load(meta.clone(), schema).await;
                            (meta, result)
                        }
                    })
                    .buffered(LOAD_CONCURRENCY)
                    .collect()
                    .await;
                for (meta, result) in loaded {
                    match result {
                        Ok(seg) => segments.push(seg),
                        Err(e) => {
                            tracing::warn!(segment = %meta.path, error = %e, "segment failed to load");
                            failed.push((meta.path.clone(), e.to_string()));
                        }
                    }
                }
            }
            let view = CollectionView { collection: collection.clone(), schema, segments, failed };
            next.insert(name.clone(), Arc::new(view));
        }
        if let Ok(mut views) = self.views.write() {
            *views = next;
        }
        self.synced.send_modify(|n| *n += 1);
    }

    async fn load(&self, meta: grape_storage::format::SegmentMeta, schema: SchemaRef) -> Result<SegmentRef, ComputeError> {
        let batches = self.storage.read_segment(&meta).await?;
        let segment = tokio::task::spawn_blocking(move || LoadedSegment::new(meta, schema, &batches))
            .await
            .map_err(|e| ComputeError::Internal(format!("segment load task: {e}")))??;
        Ok(Arc::new(segment))
    }

    /// Waits until this node serves `collection` at `version` or later, or `timeout` passes.
    ///
    /// Returns the view; fails with `NotFound` if the collection is gone and `Unavailable` on
    /// timeout.
    pub async fn wait_for_version(&self, collection: &str, version: u64, timeout: Duration) -> Result<Arc<CollectionView>, ComputeError> {
        let mut rx = self.synced.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            match self.view(collection) {
                Some(v) if v.collection.version >= version => return Ok(v),
                None if version == 0 => return Err(ComputeError::NotFound(format!("collection \"{collection}\" does not exist"))),
                _ => {}
            }
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                return match self.view(collection) {
                    None => Err(ComputeError::NotFound(format!("collection \"{collection}\" does not exist"))),
                    Some(v) => Err(ComputeError::Unavailable(format!(
                        "collection \"{collection}\" is at version {} on this node, {version} was asked for",
                        v.collection.version
                    ))),
                };
            }
        }
    }

    /// Segments loaded, rows they hold, and bytes of memory they take.
    pub fn stats(&self) -> (u64, u64, u64) {
        let mut seen = HashSet::new();
        let (mut segs, mut rows, mut bytes) = (0, 0, 0);
        for v in self.views() {
            for s in &v.segments {
                if seen.insert(s.meta.id.clone()) {
                    segs += 1;
                    rows += s.rows() as u64;
                    bytes += s.memory_bytes() as u64;
                }
            }
        }
        (segs, rows, bytes)
    }
}
