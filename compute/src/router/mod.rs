//! The root of a query: where each segment can be read (the routing table), and the fan-out
//! of searches and scans to one ready replica per segment, with retries on another replica.
//!
//! The routing table is not a structure of its own: it is read from the catalog this node
//! follows (which segments each live compute node reports ready, recorded by the meta leader
//! from heartbeats) and from this node's own engine. A standalone node (`grape dev`) holds
//! every segment itself.
//!
//! # Layout
//! - `mod.rs`: [`Router`], [`Replica`], routes and the wait for readiness.
//! - `search.rs`: search fan-out, retries, merge.
//! - `scan.rs`: the DataFusion plan node that scans local and remote segments.

mod scan;
mod search;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use grape_meta::catalog::{Catalog, Collection};
use grape_storage::format::SegmentMeta;

pub use scan::{MissedSegments, SegmentScanExec};
pub use search::SearchOutcome;

use crate::derived::DerivedColumn;
use crate::engine::Engine;
use crate::error::ComputeError;
use crate::leaf::LeafClients;
use crate::meta_client::MetaClient;

/// Longest a query waits for segments that are being placed or loaded (new segments, or
/// segments of a node that died) before failing with `Unavailable`.
pub const READY_WAIT: Duration = Duration::from_secs(10);

/// Times a read is planned again when a compaction swapped the segments it was planned over
/// (each plan sees a newer manifest; only a compaction committed during every one of them
/// exhausts this).
pub const MAX_REPLANS: usize = 5;

/// Changes of the routing table: the catalog (nodes, their ready segments) and this node's
/// engine.
pub(crate) struct RouteChanges {
    catalog: tokio::sync::watch::Receiver<u64>,
    engine: tokio::sync::watch::Receiver<u64>,
}

impl RouteChanges {
    /// Waits until the routing table may have changed since the last call (or since this was
    /// made), or `deadline` passes.
    pub(crate) async fn changed_until(&mut self, deadline: tokio::time::Instant) {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            _ = self.catalog.changed() => {}
            _ = self.engine.changed() => {}
        }
        self.catalog.borrow_and_update();
        self.engine.borrow_and_update();
    }
}

/// How a node takes part in serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// It holds every segment and answers everything itself (`grape dev`, `grape demo`).
    Standalone,
    /// It holds the segments the meta leader assigns to it (`grape compute`) and routes the
    /// rest to the nodes that hold them.
    Cluster,
}

/// One place a segment can be read from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Replica {
    /// This node's engine.
    Local,
    /// Another compute node.
    Remote {
        /// Its id.
        node: u64,
        /// The address of its API (which serves the leaf service too).
        addr: String,
    },
}

impl std::fmt::Display for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Replica::Local => write!(f, "this node"),
            Replica::Remote { node, addr } => write!(f, "node {node} ({addr})"),
        }
    }
}

/// A segment of a query and the replicas to try, in order.
#[derive(Debug, Clone)]
pub struct SegmentRoute {
    /// The segment.
    pub meta: SegmentMeta,
    /// Ready replicas, the preferred one first.
    pub replicas: Vec<Replica>,
}

/// Routes queries of this node to the segments they need.
pub struct Router {
    meta: Arc<dyn MetaClient>,
    engine: Arc<Engine>,
    role: Role,
    node_id: u64,
    leaves: LeafClients,
    /// Rotates the preferred replica from one query to the next, spreading load.
    turn: AtomicUsize,
}

impl Router {
    /// A router of node `node_id` in `role`.
    pub fn new(meta: Arc<dyn MetaClient>, engine: Arc<Engine>, role: Role, node_id: u64) -> Self {
        Router { meta, engine, role, node_id, leaves: LeafClients::default(), turn: AtomicUsize::new(0) }
    }

    /// The engine of this node.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The segments this node should hold under `catalog`: all of them when standalone, the
    /// ones assigned to it in a cluster.
    pub fn wanted(&self, catalog: &Catalog) -> Vec<crate::engine::WantedSegment> {
        let mut wanted = Vec::new();
        for collection in catalog.collections.values() {
            let Some(schema) = collection.spec.schema.clone().map(Arc::new) else { continue };
            let vectors: Arc<[String]> = collection.spec.vector_columns().into();
            let derived: Arc<[DerivedColumn]> = crate::qdrant::payload_index::payload_indexes(catalog, &collection.spec.name).columns().into();
            for meta in collection.segments() {
                let mine = match self.role {
                    Role::Standalone => true,
                    Role::Cluster => catalog.assignments.get(&meta.id).is_some_and(|nodes| nodes.contains(&self.node_id)),
                };
                if mine {
                    wanted.push(crate::engine::WantedSegment {
                        meta: meta.clone(),
                        schema: schema.clone(),
                        vectors: vectors.clone(),
                        derived: derived.clone(),
                        vectors_on_disk: collection.spec.vectors_on_disk,
                    });
                }
            }
        }
        wanted
    }

    /// Follows the changes of the routing table from now on.
    pub(crate) fn changes(&self) -> RouteChanges {
        let mut catalog = self.meta.changes();
        let mut engine = self.engine.changes();
        catalog.borrow_and_update();
        engine.borrow_and_update();
        RouteChanges { catalog, engine }
    }

    /// Whether a compaction replaced segments of `collection` (a catalog entry a read was
    /// planned over) after that entry's version, in the catalog this node has applied since:
    /// segments the plan names may be gone. Such a read is planned again.
    pub fn rewritten_since(&self, collection: &Collection) -> bool {
        let catalog = self.meta.applied_catalog();
        catalog.collections.get(&collection.spec.name).is_some_and(|now| now.id == collection.id && now.rewritten_after(collection.version))
    }

    /// Whether [`Router::rewritten_since`] holds for any collection of `catalog`.
    pub fn any_rewritten_since(&self, catalog: &Catalog) -> bool {
        catalog.collections.values().any(|c| self.rewritten_since(c))
    }

    /// Ready replicas of `segment` under `catalog`, in no particular order; `exclude` are left out.
    fn replicas(&self, catalog: &Catalog, segment: &str, exclude: &BTreeSet<Replica>) -> Vec<Replica> {
        let mut replicas = Vec::new();
        if self.engine.segment(segment).is_some() && !exclude.contains(&Replica::Local) {
            replicas.push(Replica::Local);
        }
        if self.role == Role::Cluster {
            for node in catalog.compute.live().filter(|n| n.id != self.node_id && n.ready.contains(segment)) {
                let replica = Replica::Remote { node: node.id, addr: node.addr.clone() };
                if !exclude.contains(&replica) {
                    replicas.push(replica);
                }
            }
        }
        replicas
    }

    /// Why `segment` cannot be served now and will not be soon (it failed to load wherever it
    /// is placed), or `None` if it may still become ready.
    fn hopeless(&self, catalog: &Catalog, segment: &str) -> Option<String> {
        match self.role {
            Role::Standalone => self.engine.failure(segment),
            Role::Cluster => {
                let assigned = catalog.assignments.get(segment)?;
                let reasons: Vec<String> = assigned
                    .iter()
                    .filter_map(|id| catalog.compute.nodes.get(id))
                    .filter(|n| n.is_live())
                    .map(|n| n.failed.get(segment).cloned())
                    .collect::<Option<Vec<_>>>()?;
                reasons.into_iter().next()
            }
        }
    }

    /// Routes for every segment of `collection`, each with at least one ready replica.
    ///
    /// Waits until `deadline` for segments that are being placed or loaded. Returns the
    /// routes and the segments that still have no ready replica (with the reason).
    pub async fn routes(&self, collection: &Collection, deadline: tokio::time::Instant) -> (Vec<SegmentRoute>, Vec<(SegmentMeta, String)>) {
        let mut changes = self.changes();
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        loop {
            let catalog = self.meta.applied_catalog();
            let mut routes = Vec::new();
            let mut unroutable = Vec::new();
            let mut waiting = false;
            for (i, meta) in collection.segments().enumerate() {
                let mut replicas = self.replicas(&catalog, &meta.id, &BTreeSet::new());
                if replicas.is_empty() {
                    match self.hopeless(&catalog, &meta.id) {
                        Some(reason) => unroutable.push((meta.clone(), reason)),
                        None => {
                            waiting = true;
                            unroutable.push((meta.clone(), "no node has it loaded yet".to_string()));
                        }
                    }
                    continue;
                }
                replicas.sort();
                let len = replicas.len();
                replicas.rotate_left((turn + i) % len);
                routes.push(SegmentRoute { meta: meta.clone(), replicas });
            }
            // Segments a compaction replaced will never be ready: the caller plans again.
            if !waiting || tokio::time::Instant::now() >= deadline || self.rewritten_since(collection) {
                return (routes, unroutable);
            }
            changes.changed_until(deadline).await;
        }
    }
}

/// The error for a query some of whose segments have no ready replica.
pub fn missing_error(collection: &str, total: usize, missing: &[(SegmentMeta, String)]) -> ComputeError {
    let first = missing.first().map(|(m, why)| format!(" (first: segment {}: {why})", m.id)).unwrap_or_default();
    ComputeError::Unavailable(format!(
        "collection \"{collection}\": {} of {total} segments have no ready replica{first}; retry, or ask for allow_partial",
        missing.len()
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use grape_meta::apply::apply;
    use grape_meta::catalog::{Catalog, Metric};
    use grape_meta::Command;

    use super::{Replica, Role};
    use crate::testutil::{router_over, view};

    /// A catalog with nodes 1 (this one), 2 and 3 live and 4 dead, and segments s0, s1, s2
    /// of `view`: s0 ready on 2 and 3 (and on the dead 4, which must not count), s1 assigned
    /// to 2 which failed to load it, s2 assigned to 3 and still loading.
    fn cluster_catalog() -> Catalog {
        let v = view(Metric::L2, 4);
        let mut catalog = Catalog::default();
        let mut collection = v.collection.clone();
        collection.spec.schema = v.schema.as_ref().map(|s| s.as_ref().clone());
        catalog.collections.insert("t".into(), collection);
        for id in 1..=4 {
            apply(&mut catalog, &Command::RegisterNode { id, addr: format!("h:{id}"), memory_bytes: 1 });
        }
        let set = vec![("s0".into(), vec![2, 3]), ("s1".into(), vec![2]), ("s2".into(), vec![3])];
        apply(&mut catalog, &Command::SetAssignments { set, unset: Vec::new() });
        apply(&mut catalog, &Command::SegmentStates { id: 2, ready: vec!["s0".into()], failed: vec![("s1".into(), "corrupt".into())] });
        apply(&mut catalog, &Command::SegmentStates { id: 3, ready: vec!["s0".into()], failed: Vec::new() });
        apply(&mut catalog, &Command::SegmentStates { id: 4, ready: vec!["s0".into(), "s2".into()], failed: Vec::new() });
        apply(&mut catalog, &Command::DeclareDead { id: 4, reason: "test".into() });
        catalog
    }

    #[test]
    fn replicas_are_the_live_nodes_that_report_the_segment_ready() {
        let catalog = cluster_catalog();
        let router = router_over(&catalog, Role::Cluster);
        let remote = |id: u64| Replica::Remote { node: id, addr: format!("h:{id}") };
        let mut s0 = router.replicas(&catalog, "s0", &BTreeSet::new());
        s0.sort();
        assert_eq!(s0, vec![remote(2), remote(3)], "a dead node's old report does not count");
        assert_eq!(router.replicas(&catalog, "s0", &BTreeSet::from([remote(2)])), vec![remote(3)]);
        assert!(router.replicas(&catalog, "s2", &BTreeSet::new()).is_empty());
        assert_eq!(router.hopeless(&catalog, "s1").as_deref(), Some("corrupt"), "failed on every node it is placed on");
        assert_eq!(router.hopeless(&catalog, "s2"), None, "still loading: worth waiting for");
        let wanted: Vec<String> = router.wanted(&catalog).into_iter().map(|w| w.meta.id).collect();
        assert!(wanted.is_empty(), "node 1 is assigned nothing");
    }

    #[tokio::test]
    async fn routes_name_the_segments_without_a_ready_replica() {
        let catalog = cluster_catalog();
        let router = router_over(&catalog, Role::Cluster);
        let collection = &catalog.collections["t"];
        let (routes, missing) = router.routes(collection, tokio::time::Instant::now()).await;
        assert_eq!(routes.iter().map(|r| r.meta.id.as_str()).collect::<Vec<_>>(), vec!["s0"]);
        let mut missing: Vec<(String, String)> = missing.into_iter().map(|(m, why)| (m.id, why)).collect();
        missing.sort();
        assert_eq!(missing[0], ("s1".to_string(), "corrupt".to_string()));
        assert_eq!(missing[1].0, "s2");
        let error = super::missing_error("t", 3, &[]).to_string();
        assert!(error.contains("collection \"t\": 0 of 3 segments have no ready replica"), "{error}");
    }
}
