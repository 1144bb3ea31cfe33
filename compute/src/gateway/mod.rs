//! The gateway (root): accepts every client request of the public API, turns it into meta
//! commands, segment writes and searches over the engine, and answers with gRPC codes.
//!
//! # Layout
//! - `collections.rs`: create, list, describe, drop, and the catalog ↔ API conversions.
//! - `write.rs`: insert and ingest jobs — conform rows, stage segments, commit once, acknowledge.
//! - `query.rs`: search and SQL.
//! - `by_id.rs`: ids as keys — `Get` and `Delete`.
//! - `jobs.rs`: the job queue as the API shows it — compact, submit ingest, list, show, retry, cancel.
//! - `service.rs`: the tonic service, one line per RPC into the methods above.

mod by_id;
mod jobs;
pub(crate) mod collections;
mod query;
#[cfg(test)]
mod refresh_tests;
mod service;
mod write;

use std::sync::Arc;
use std::time::Duration;

use grape_meta::catalog::{Catalog, Collection};
use grape_storage::Storage;

pub use by_id::{Page, MAX_IDS};
pub use service::{GrapeService, MAX_MESSAGE_BYTES};
pub use query::SearchHits;
pub use write::{IngestJob, Inserted};

use crate::engine::Engine;
use crate::error::ComputeError;
use crate::limits::{Admission, Limits, RequestClass, SqlMemory};
use crate::meta_client::MetaClient;
use crate::router::{Role, Router};
use crate::settings;

/// Age below which an unreferenced object is never collected (an upload may be about to commit).
pub const DEFAULT_GC_GRACE: Duration = Duration::from_secs(3600);

/// How long a request waits for this node to catch up with a version it needs.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the public API on one node.
pub struct Gateway {
    /// The meta service: catalog reads and commits.
    pub(crate) meta: Arc<dyn MetaClient>,
    /// Segments in memory on this node.
    pub(crate) engine: Arc<Engine>,
    /// Where each segment of a query is read: here or on another node.
    pub(crate) router: Arc<Router>,
    /// Where new segments are written.
    pub(crate) storage: Storage,
    /// Id of this node, reported in status.
    pub(crate) node_id: u64,
    /// Serialises the start of catalog syncs (not their loads), so an older catalog never
    /// replaces a newer one; holds the catalog last synced.
    sync_lock: tokio::sync::Mutex<Option<Arc<Catalog>>>,
    /// Age below which garbage collection keeps unreferenced objects; an ingest job must
    /// commit well within it (see `write.rs`).
    gc_grace: Duration,
    /// This node's limits from its flags or config file; the versioned config's `limits/…`
    /// keys override them (see [`Gateway::limits`]).
    limits: Limits,
    /// Slots and queues of requests by class.
    admission: Admission,
    /// The memory pool of SQL queries.
    sql_memory: SqlMemory,
}

impl Gateway {
    /// A gateway of node `node_id` in `role` over the given meta client, engine and storage.
    pub fn new(meta: Arc<dyn MetaClient>, engine: Arc<Engine>, storage: Storage, node_id: u64, role: Role) -> Self {
        let router = Arc::new(Router::new(meta.clone(), engine.clone(), role, node_id));
        Self {
            meta,
            engine,
            router,
            storage,
            node_id,
            sync_lock: tokio::sync::Mutex::new(None),
            gc_grace: DEFAULT_GC_GRACE,
            limits: Limits::default(),
            admission: Admission::new(),
            sql_memory: SqlMemory::new(),
        }
    }

    /// Sets this node's limits (default [`Limits::default`]); `limits/…` keys of the
    /// versioned config override them.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The limits in force now: this node's, with the versioned config's overrides.
    pub fn limits(&self) -> Limits {
        self.limits.with_overrides(&self.meta.applied_catalog())
    }

    /// Runs `work` as a request of `class`: it waits for a slot (or is refused with
    /// `ResourceExhausted` when the class's queue is full) and is stopped with
    /// `DeadlineExceeded` once the request deadline passes, waiting included. Dropping the
    /// returned future (the client went away) drops the work and counts a cancellation.
    pub async fn guarded<T>(
        &self,
        class: RequestClass,
        work: impl std::future::Future<Output = Result<T, ComputeError>>,
    ) -> Result<T, ComputeError> {
        let limits = self.limits();
        let timeout = limits.request_timeout();
        let in_flight = self.admission.track();
        let answer = tokio::time::timeout(timeout, async {
            let _slot = self.admission.admit(class, &limits).await?;
            work.await
        })
        .await;
        in_flight.settle();
        answer.unwrap_or_else(|_| {
            self.admission.counters().timed_out.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err(ComputeError::DeadlineExceeded(format!(
                "the request took longer than {} s (limits/request_timeout_secs) and was stopped",
                timeout.as_secs()
            )))
        })
    }

    /// Sets the garbage-collection grace period this node's GC job uses (default 1 hour; the
    /// config setting [`settings::GC_GRACE_SECS`] overrides it); an ingest job older than half
    /// of it is not committed.
    pub fn with_gc_grace(mut self, grace: Duration) -> Self {
        self.gc_grace = grace;
        self
    }

    /// The engine this gateway serves from.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The meta service this gateway follows and writes through.
    pub fn meta(&self) -> &Arc<dyn MetaClient> {
        &self.meta
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// Requests running and waiting for a slot now.
    pub fn load(&self) -> (u64, u64) {
        self.admission.load()
    }

    /// Bytes SQL queries hold in this node's pool now.
    pub fn sql_memory_used(&self) -> u64 {
        self.sql_memory.used()
    }

    /// Brings the engine in step with the catalog meta has applied: holds the segments this
    /// node should hold (all, or its assigned ones in a cluster), and returns once the
    /// segments this call started loading are loaded.
    ///
    /// Only deciding what to load is serialised; the loads are not, so a caller (an insert
    /// serving its own write) never waits for the loads of another refresh, such as those of
    /// a node taking over many segments after a failover.
    pub async fn refresh(&self) {
        let to_load = {
            let mut synced = self.sync_lock.lock().await;
            let catalog = self.meta.applied_catalog();
            // A sync visits every segment held. The same catalog again (a writer's own refresh,
            // then the change watch's) changes nothing, unless a load failed: that is retried.
            if synced.as_ref().is_some_and(|last| Arc::ptr_eq(last, &catalog)) && !self.engine.any_failed() {
                return;
            }
            self.engine.keys().retain(&crate::gc::referenced_paths(&catalog));
            let to_load = self.engine.begin_sync(self.router.wanted(&catalog));
            *synced = Some(catalog);
            to_load
        };
        self.engine.load_all(to_load).await;
    }

    /// Waits until the catalog this node follows has `collection` at `version` or later, or
    /// `timeout` passes. Fails with `NotFound` if the collection does not exist and
    /// `Unavailable` on timeout.
    pub async fn wait_for_version(&self, collection: &str, version: u64, timeout: Duration) -> Result<Collection, ComputeError> {
        crate::meta_client::wait_for_version(self.meta.as_ref(), collection, version, timeout).await
    }

    /// Follows catalog changes until `shutdown` resolves, refreshing the engine on each one.
    pub async fn follow_catalog(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let mut changes = self.meta.changes();
        tokio::pin!(shutdown);
        self.refresh().await;
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.refresh().await;
                }
            }
        }
    }
}

impl Gateway {
    /// Deletes orphan segment objects older than `grace` (see [`crate::gc`]).
    pub async fn collect_garbage(&self, grace: Duration) -> Result<crate::gc::GcReport, ComputeError> {
        crate::gc::collect_garbage(&self.storage, grace, || async { Ok(self.meta.catalog().await?) }).await
    }

    /// The garbage-collection grace period in force: the config setting, else the flag.
    pub fn gc_grace(&self) -> Duration {
        settings::seconds(&self.meta.applied_catalog(), settings::GC_GRACE_SECS).unwrap_or(self.gc_grace)
    }
}

/// Checks a collection name: a letter, then letters, digits, `_`, `-` or `.`, at most 64
/// characters (SQL needs a name with `-` or `.` in double quotes: `SELECT * FROM "my-docs"`).
pub fn validate_name(name: &str) -> Result<(), ComputeError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && name.len() <= 64;
    if ok {
        Ok(())
    } else {
        Err(ComputeError::InvalidArgument(format!(
            "invalid collection name \"{name}\": use a letter, then letters, digits, _, - or . (at most 64)"
        )))
    }
}
