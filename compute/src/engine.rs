//! The leaf: the segments this node holds in memory, by id.
//!
//! [`Engine::sync`] takes the segments the node should hold (all of them on a standalone
//! node, the assigned ones on a cluster node), loads those it does not hold yet (in parallel,
//! bounded; each becomes servable as soon as it is loaded) and retires those it should no
//! longer hold. A retired segment keeps answering for [`RETIRE_GRACE`], so that a gateway that
//! routed a query by a slightly older catalog still finds it. Each segment is in one state:
//! loading, ready, or failed (retried at the next sync).
//!
//! A segment whose manifest entry names an ANN index artifact is loaded with it; a ready
//! segment whose entry gains (or changes) its index loads just the artifact. An index that
//! cannot be read is logged and counted, and the segment keeps answering by exact search.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use futures::stream::{self, StreamExt};
use grape_meta::catalog::Collection;
use grape_storage::format::{IndexMeta, SegmentMeta};
use grape_storage::Storage;
use tokio::sync::watch;

use crate::derived::DerivedColumn;
use crate::error::ComputeError;
use crate::liveness::KeyCache;
use crate::segment::{LoadedSegment, SegmentRef};
use crate::vector_files::VectorFiles;

/// How many segments are read from storage at once.
const LOAD_CONCURRENCY: usize = 8;

/// How long a segment the node no longer holds keeps answering.
pub const RETIRE_GRACE: Duration = Duration::from_secs(5);

/// Loaded segments of one collection, as one query sees them.
#[derive(Debug, Clone)]
pub struct CollectionView {
    /// The catalog entry (spec, manifests, version) the query runs against.
    pub collection: Collection,
    /// The Arrow schema of the collection's rows; `None` until the first insert sets it.
    pub schema: Option<SchemaRef>,
    /// The segments to search.
    pub segments: Vec<SegmentRef>,
    /// Segments the query needs that are not loaded, with the reason.
    pub failed: Vec<(String, String)>,
}

impl CollectionView {
    /// Fails with `Unavailable` if any segment of the view is not loaded: an answer is never
    /// silently partial.
    pub fn require_complete(&self) -> Result<(), ComputeError> {
        match self.failed.first() {
            None => Ok(()),
            Some((path, reason)) => Err(ComputeError::Unavailable(format!(
                "collection \"{}\": {} of {} segments are not loaded (first: {path}: {reason})",
                self.collection.spec.name,
                self.failed.len(),
                self.failed.len() + self.segments.len()
            ))),
        }
    }
}

/// A segment the node should hold: its manifest entry and its collection's schema.
#[derive(Debug, Clone)]
pub struct WantedSegment {
    /// The manifest entry.
    pub meta: SegmentMeta,
    /// The schema of its rows.
    pub schema: SchemaRef,
    /// Its collection's vector columns, in field order.
    pub vectors: Arc<[String]>,
    /// The derived payload columns of its collection's payload indexes: computed when it
    /// loads and kept while wanted (see [`crate::derived`]).
    pub derived: Arc<[DerivedColumn]>,
    /// Its collection keeps vectors on disk (see [`crate::vector_files`]).
    pub vectors_on_disk: bool,
}

impl WantedSegment {
    /// A segment of a collection with the one vector column `vector` and no payload index.
    pub fn unnamed(meta: SegmentMeta, schema: SchemaRef) -> Self {
        Self { meta, schema, vectors: Arc::from([crate::segment::VECTOR_COLUMN.to_string()]), derived: Arc::from([]), vectors_on_disk: false }
    }
}

/// Where each segment of the node stands.
#[derive(Debug, Default)]
struct Held {
    ready: HashMap<String, SegmentRef>,
    loading: HashSet<String>,
    failed: HashMap<String, String>,
    /// Segments no longer wanted, still answering until their grace period ends.
    retired: HashMap<String, (Instant, SegmentRef)>,
    /// Ready segments whose index artifact is being loaded.
    indexing: HashSet<String>,
    /// The artifacts each segment failed to load: not tried again until the manifest names
    /// another (a rebuild), so a corrupt object costs one read, not one per sync.
    index_failed: HashMap<String, HashSet<String>>,
    /// The derived payload columns each wanted segment keeps, as of the last sync (a segment
    /// still loading then takes them when it is ready).
    derived: HashMap<String, Arc<[DerivedColumn]>>,
}

/// Index artifacts this node has loaded and failed to load since it started.
#[derive(Debug, Default)]
pub struct IndexLoads {
    /// Artifacts loaded and installed.
    pub loaded: AtomicU64,
    /// Artifacts that could not be read or did not fit their segment.
    pub failed: AtomicU64,
}

/// What a node reports about its segments in its heartbeat.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SegmentStates {
    /// Ids of the segments ready to serve, sorted.
    pub ready: Vec<String>,
    /// Segments that failed to load, with the reason, sorted.
    pub failed: Vec<(String, String)>,
    /// Segments being loaded.
    pub loading: u64,
}

/// The segments held in memory on this node.
#[derive(Debug)]
pub struct Engine {
    storage: Storage,
    /// Keys of the segments and delete logs that decide which rows are live.
    keys: KeyCache,
    held: RwLock<Held>,
    /// Bumped whenever a segment becomes ready or fails, so waiters can re-check.
    changed: watch::Sender<u64>,
    /// Index artifacts loaded so far.
    index_loads: IndexLoads,
    /// Where the vectors of collections with vectors on disk go; without it they stay in
    /// memory.
    vector_files: Option<Arc<VectorFiles>>,
}

impl Engine {
    /// An engine with nothing loaded, reading segments from `storage`.
    pub fn new(storage: Storage) -> Self {
        Self {
            keys: KeyCache::new(storage.clone()),
            storage,
            held: RwLock::new(Held::default()),
            changed: watch::Sender::new(0),
            index_loads: IndexLoads::default(),
            vector_files: None,
        }
    }

    /// This engine keeping the vectors of collections with vectors on disk in `files`.
    pub fn with_vector_files(mut self, files: VectorFiles) -> Self {
        self.vector_files = Some(Arc::new(files));
        self
    }

    /// The storage segments are read from.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The keys of sources (segments, delete logs) read so far; see [`crate::liveness`].
    pub fn keys(&self) -> &KeyCache {
        &self.keys
    }

    /// The segment `id`, if this node can serve it (ready, or retired within its grace).
    pub fn segment(&self, id: &str) -> Option<SegmentRef> {
        let held = self.read();
        held.ready.get(id).or_else(|| held.retired.get(id).map(|(_, s)| s)).cloned()
    }

    /// The segments among `ids` this node can serve, and the ids it cannot.
    pub fn lookup(&self, ids: &[String]) -> (Vec<SegmentRef>, Vec<String>) {
        let mut held = Vec::new();
        let mut missing = Vec::new();
        for id in ids {
            match self.segment(id) {
                Some(s) => held.push(s),
                None => missing.push(id.clone()),
            }
        }
        (held, missing)
    }

    /// Whether a segment failed to load (the next sync tries it again).
    pub fn any_failed(&self) -> bool {
        !self.read().failed.is_empty()
    }

    /// Why segment `id` is not ready here, if it failed to load.
    pub fn failure(&self, id: &str) -> Option<String> {
        self.read().failed.get(id).cloned()
    }

    /// Changes whenever a segment becomes ready or fails to load.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Brings memory in step with `wanted`: loads what is missing, retires the rest.
    ///
    /// Each loaded segment is servable at once; one that fails to load is recorded as failed
    /// (and reported) and retried on the next sync.
    pub async fn sync(&self, wanted: Vec<WantedSegment>) {
        let to_load = self.begin_sync(wanted);
        self.load_all(to_load).await;
    }

    /// The first, immediate half of [`Engine::sync`]: retires what is no longer wanted, marks
    /// what is missing as loading, and returns it for [`Engine::load_all`]. Segments already
    /// loading (by an earlier sync) are not returned again.
    pub fn begin_sync(&self, wanted: Vec<WantedSegment>) -> Vec<WantedSegment> {
        let ids: HashSet<&str> = wanted.iter().map(|w| w.meta.id.as_str()).collect();
        let to_load: Vec<WantedSegment> = {
            let mut held = self.write();
            let now = Instant::now();
            let dropped: Vec<String> = held.ready.keys().filter(|id| !ids.contains(id.as_str())).cloned().collect();
            for id in dropped {
                if let Some(seg) = held.ready.remove(&id) {
                    seg.retire_derived();
                    held.retired.insert(id, (now, seg));
                }
            }
            held.failed.retain(|id, _| ids.contains(id.as_str()));
            held.index_failed.retain(|id, _| ids.contains(id.as_str()));
            // A segment wanted again before its grace ended is ready at once.
            let revived: Vec<String> = held.retired.keys().filter(|id| ids.contains(id.as_str())).cloned().collect();
            for id in revived {
                if let Some((_, seg)) = held.retired.remove(&id) {
                    held.ready.insert(id, seg);
                }
            }
            held.derived = wanted.iter().map(|w| (w.meta.id.clone(), w.derived.clone())).collect();
            let (ready, missing): (Vec<WantedSegment>, Vec<WantedSegment>) =
                wanted.into_iter().filter(|w| !held.loading.contains(&w.meta.id)).partition(|w| held.ready.contains_key(&w.meta.id));
            // Derived columns of payload indexes deleted since (or named by queries) are
            // dropped; those of new indexes are computed by the first filter that needs them.
            for w in &ready {
                if let Some(segment) = held.ready.get(&w.meta.id) {
                    segment.keep_derived(&w.derived);
                }
            }
            held.loading.extend(missing.iter().map(|w| w.meta.id.clone()));
            // Ready segments whose manifest entry names another index than the one loaded.
            let reindex: Vec<WantedSegment> = ready
                .into_iter()
                .filter(|w| {
                    let (Some(segment), false) = (held.ready.get(&w.meta.id), held.indexing.contains(&w.meta.id)) else {
                        return false;
                    };
                    let failed = held.index_failed.get(&w.meta.id);
                    !stale_indexes(segment, &w.meta, failed).is_empty()
                })
                .collect();
            held.indexing.extend(reindex.iter().map(|w| w.meta.id.clone()));
            missing.into_iter().chain(reindex).collect()
        };
        self.changed.send_modify(|n| *n += 1);
        to_load
    }

    /// The second half of [`Engine::sync`]: loads `to_load` (from [`Engine::begin_sync`]), at
    /// most `LOAD_CONCURRENCY` at a time: whole segments, or the index of a ready one.
    pub async fn load_all(&self, to_load: Vec<WantedSegment>) {
        stream::iter(to_load)
            .map(|w| async move {
                let id = w.meta.id.clone();
                let reindexed = {
                    let held = self.read();
                    held.ready.get(&id).filter(|_| held.indexing.contains(&id)).cloned()
                };
                let result = match reindexed {
                    Some(segment) => {
                        self.load_index(&segment, &w.meta).await;
                        Ok(None)
                    }
                    None => self.load(w).await.map(Some),
                };
                (id, result)
            })
            .buffer_unordered(LOAD_CONCURRENCY)
            .for_each(|(id, result)| async move {
                {
                    let mut held = self.write();
                    held.indexing.remove(&id);
                    held.loading.remove(&id);
                    match result {
                        Ok(None) => {}
                        Ok(Some(seg)) => {
                            // A sync since the load began may have changed the payload indexes.
                            if let Some(derived) = held.derived.get(&id) {
                                seg.keep_derived(derived);
                            }
                            held.failed.remove(&id);
                            held.ready.insert(id, seg);
                        }
                        Err(e) => {
                            tracing::warn!(segment = %id, error = %e, "segment failed to load");
                            held.failed.insert(id, e.to_string());
                        }
                    }
                }
                self.changed.send_modify(|n| *n += 1);
            })
            .await;
    }

    /// Loads one segment (and its indexes), counting it ([`crate::metrics`]).
    async fn load(&self, w: WantedSegment) -> Result<SegmentRef, ComputeError> {
        let (started, bytes) = (Instant::now(), w.meta.size_bytes);
        let loaded = self.load_segment(w).await;
        crate::metrics::segment_loaded(started, bytes, loaded.is_ok());
        loaded
    }

    async fn load_segment(&self, w: WantedSegment) -> Result<SegmentRef, ComputeError> {
        let WantedSegment { meta, schema, vectors, derived, vectors_on_disk } = w;
        let batches = self.storage.read_segment(&meta).await?;
        let files = self.vector_files.clone().filter(|_| vectors_on_disk);
        let segment = tokio::task::spawn_blocking(move || {
            let segment = LoadedSegment::with_vectors_in(meta, schema, &batches, &vectors, files.as_deref())?;
            segment.keep_derived(&derived);
            if let Err(e) = segment.batch_with(&derived) {
                tracing::warn!(segment = %segment.meta.id, error = %e, "derived payload columns of the payload indexes not computed");
            }
            Ok::<_, ComputeError>(segment)
        })
        .await
        .map_err(|e| ComputeError::Internal(format!("segment load task: {e}")))??;
        let segment = Arc::new(segment);
        let meta = segment.meta.clone();
        self.load_index(&segment, &meta).await;
        Ok(segment)
    }

    /// Reads the index artifacts `meta` names that `segment` does not hold yet (one per
    /// vector field) and installs them. A failure is logged and counted: that field answers
    /// by exact search meanwhile.
    async fn load_index(&self, segment: &SegmentRef, meta: &SegmentMeta) {
        let stale: Vec<(String, IndexMeta)> = {
            let held = self.read();
            stale_indexes(segment, meta, held.index_failed.get(&meta.id))
        };
        for (field, index) in stale {
            let result = async {
                // Artifacts are immutable like segments: the local cache keeps them too.
                let bytes = self.storage.read_object(&index.path, index.size_bytes).await?;
                let ann = tokio::task::spawn_blocking(move || crate::index::hnsw::artifact::decode(&bytes))
                    .await
                    .map_err(|e| ComputeError::Internal(format!("index load task: {e}")))?
                    .map_err(|e| ComputeError::Corrupt(format!("{}: {e}", index.path)))?;
                segment.set_ann(&field, &index.path, Arc::new(ann))
            }
            .await;
            match result {
                Ok(()) => {
                    self.index_loads.loaded.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.write().index_failed.entry(meta.id.clone()).or_default().insert(index.path.clone());
                    self.index_loads.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(segment = %meta.id, index = %index.path, error = %e, "index failed to load; the field is searched exactly");
                }
            }
        }
    }

    /// Index artifacts loaded and failed since the node started.
    pub fn index_loads(&self) -> &IndexLoads {
        &self.index_loads
    }

    /// Holds an already loaded segment as ready (segments built in memory by benchmarks and
    /// tests, rather than read from storage).
    pub fn adopt(&self, segment: SegmentRef) {
        self.write().ready.insert(segment.meta.id.clone(), segment);
        self.changed.send_modify(|n| *n += 1);
    }

    /// Forgets retired segments once their grace period has ended, checking every second
    /// until `stopped` (on every node: without it, a standalone node kept every segment a
    /// compaction or a drop retired).
    pub async fn purge_retired_until(self: Arc<Self>, stopped: impl std::future::Future<Output = ()>) {
        tokio::pin!(stopped);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => self.purge_retired(),
                () = &mut stopped => return,
            }
        }
    }

    /// Forgets retired segments whose grace period has ended.
    pub fn purge_retired(&self) {
        let mut held = self.write();
        let before = held.retired.len();
        held.retired.retain(|_, (at, _)| at.elapsed() < RETIRE_GRACE);
        crate::metrics::SEGMENT_EVICTIONS.inc_by((before - held.retired.len()) as u64);
    }

    /// The states to report in a heartbeat.
    pub fn states(&self) -> SegmentStates {
        let held = self.read();
        let mut ready: Vec<String> = held.ready.keys().cloned().collect();
        ready.sort();
        let mut failed: Vec<(String, String)> = held.failed.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        failed.sort();
        SegmentStates { ready, failed, loading: held.loading.len() as u64 }
    }

    /// Segments ready, rows they hold, and bytes of memory they take.
    pub fn stats(&self) -> (u64, u64, u64) {
        let held = self.read();
        held.ready.values().fold((0, 0, 0), |(n, rows, bytes), s| (n + 1, rows + s.rows() as u64, bytes + s.memory_bytes() as u64))
    }

    /// Bytes of the ready segments' vectors kept in mapped files instead of memory.
    pub fn vector_bytes_on_disk(&self) -> u64 {
        self.read().ready.values().map(|s| s.vector_bytes_on_disk() as u64).sum()
    }

    /// Rows of the ready segments' vector columns that have an ANN index loaded (a row counts
    /// once per indexed field), and the bytes those indexes take.
    pub fn index_stats(&self) -> (u64, u64) {
        let held = self.read();
        let indexes = held.ready.values().flat_map(|s| s.columns().iter().filter_map(|c| c.ann()));
        indexes.fold((0, 0), |(rows, bytes), a| (rows + a.rows() as u64, bytes + a.memory_bytes() as u64))
    }

    fn read(&self) -> RwLockReadGuard<'_, Held> {
        self.held.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Held> {
        self.held.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The indexes `meta` names (with their fields) that `segment` has not loaded and that have
/// not `failed` before.
fn stale_indexes(segment: &LoadedSegment, meta: &SegmentMeta, failed: Option<&HashSet<String>>) -> Vec<(String, IndexMeta)> {
    meta.all_indexes()
        .filter(|(field, index)| {
            failed.is_none_or(|f| !f.contains(&index.path))
                && segment.column(field).is_some_and(|c| c.ann_path().as_deref() != Some(index.path.as_str()))
        })
        .map(|(field, index)| (field.to_string(), index.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::RecordBatch;
    use arrow::datatypes::{Field, Schema};
    use grape_meta::catalog::{Metric, Quantization};

    use super::*;
    use crate::datagen;
    use crate::index::hnsw::build::BuildParams;
    use crate::index::hnsw::HnswIndex;

    #[test]
    fn only_the_fields_whose_index_changed_are_loaded_again() {
        // A segment with two vector columns: `vector` and a copy named `b`.
        let rows = datagen::batch(4, 0, 200, 1);
        let vectors = rows.column_by_name("vector").unwrap().clone();
        let mut fields: Vec<Field> = rows.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("b", vectors.data_type().clone(), false));
        let schema = Arc::new(Schema::new(fields));
        let mut columns = rows.columns().to_vec();
        columns.push(vectors);
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let names = ["vector".to_string(), "b".to_string()];
        let segment = LoadedSegment::with_vectors(SegmentMeta::default(), schema, &[batch], &names).unwrap();
        let index = |column: &str| Arc::new(HnswIndex::build(segment.column(column).unwrap(), Metric::L2, Quantization::None, BuildParams::default()));
        let artifact = |path: &str| IndexMeta { path: path.into(), kind: "hnsw".into(), quantization: "none".into(), size_bytes: 1, memory_per_row: 1 };
        segment.set_ann("vector", "v1", index("vector")).unwrap();

        let mut meta = SegmentMeta::default();
        meta.set_index("vector", artifact("v1"));
        meta.set_index("b", artifact("b1"));
        let stale = |meta: &SegmentMeta, failed: Option<&HashSet<String>>| -> Vec<String> {
            stale_indexes(&segment, meta, failed).into_iter().map(|(field, i)| format!("{field}:{}", i.path)).collect()
        };
        assert_eq!(stale(&meta, None), ["b:b1"], "vector's index is loaded already");
        assert!(stale(&meta, Some(&HashSet::from(["b1".to_string()]))).is_empty(), "a failed artifact is not read again");
        segment.set_ann("b", "b1", index("b")).unwrap();
        meta.set_index("vector", artifact("v2"));
        assert_eq!(stale(&meta, None), ["vector:v2"], "rebuilding one field reloads only that field");
        meta.set_index("gone", artifact("g1"));
        assert_eq!(stale(&meta, None), ["vector:v2"], "an index of a field the segment lacks is ignored");
        assert!(segment.set_ann("nope", "x", index("b")).is_err());
    }
}
