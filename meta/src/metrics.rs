//! Prometheus metrics of the meta group: this member's Raft state (term, leader, log indexes,
//! each member's replication lag on the leader), elections and snapshots, and what the catalog
//! holds (jobs by kind and state, compute nodes by state, segment moves in flight). Gauges are
//! set from the live state when `/metrics` is scraped ([`observe_member`], [`observe_catalog`]).

use std::sync::{Arc, LazyLock};

use prometheus::{register_int_counter, register_int_gauge, register_int_gauge_vec, IntCounter, IntGauge, IntGaugeVec};

use crate::catalog::Catalog;
use crate::nodes::NodeState;
use crate::MetaNode;

fn gauge(name: &str, help: &str) -> IntGauge {
    register_int_gauge!(name, help).expect("a new metric name")
}

fn gauges(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register_int_gauge_vec!(name, help, labels).expect("a new metric name")
}

/// `grape_raft_term`.
pub static TERM: LazyLock<IntGauge> = LazyLock::new(|| gauge("grape_raft_term", "Current Raft term of this member"));
/// `grape_raft_leader_id` (0: none known).
pub static LEADER: LazyLock<IntGauge> = LazyLock::new(|| gauge("grape_raft_leader_id", "Id of the leader this member knows, 0 if none"));
/// `grape_raft_is_leader`.
pub static IS_LEADER: LazyLock<IntGauge> = LazyLock::new(|| gauge("grape_raft_is_leader", "1 if this member is the leader"));
/// `grape_raft_last_log_index`.
pub static LAST_LOG: LazyLock<IntGauge> = LazyLock::new(|| gauge("grape_raft_last_log_index", "Index of this member's last log entry"));
/// `grape_raft_committed_index`.
pub static COMMITTED: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("grape_raft_committed_index", "Index of the last entry this member knows committed"));
/// `grape_raft_applied_index`.
pub static APPLIED: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("grape_raft_applied_index", "Index of the last entry applied to this member's catalog"));
/// `grape_raft_snapshot_index`.
pub static SNAPSHOT_INDEX: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("grape_raft_snapshot_index", "Last log index covered by this member's latest snapshot"));
/// `grape_raft_replication_lag_entries{member}`, on the leader.
pub static LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauges("grape_raft_replication_lag_entries", "Log entries a member is behind the leader (set on the leader)", &["member"])
});
/// `grape_raft_elections_total`: term changes this member saw.
pub static ELECTIONS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("grape_raft_elections_total", "Elections (term changes) this member saw").expect("a new metric name")
});
/// `grape_raft_snapshot_builds_total`.
pub static SNAPSHOT_BUILDS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("grape_raft_snapshot_builds_total", "Snapshots this member built").expect("a new metric name")
});
/// `grape_raft_snapshot_installs_total`.
pub static SNAPSHOT_INSTALLS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("grape_raft_snapshot_installs_total", "Snapshots this member received from the leader and installed")
        .expect("a new metric name")
});
/// `grape_jobs{kind, state}`.
pub static JOBS: LazyLock<IntGaugeVec> = LazyLock::new(|| gauges("grape_jobs", "Jobs in the queue, by kind and state", &["kind", "state"]));
/// `grape_compute_nodes{state}`: `live`, `draining`, `dead`.
pub static COMPUTE_NODES: LazyLock<IntGaugeVec> =
    LazyLock::new(|| gauges("grape_compute_nodes", "Compute nodes in the registry, by state", &["state"]));
/// `grape_placement_moves_in_flight`.
pub static MOVES: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge("grape_placement_moves_in_flight", "Segment replicas placed on a node that does not serve them yet (loading or moving)")
});
/// `grape_collections`.
pub static COLLECTIONS: LazyLock<IntGauge> = LazyLock::new(|| gauge("grape_collections", "Collections in the catalog"));

/// Sets the Raft gauges from `node`'s state.
pub async fn observe_member(node: &MetaNode) {
    let status = node.status().await;
    TERM.set(status.term as i64);
    LEADER.set(status.leader_id.unwrap_or(0) as i64);
    IS_LEADER.set(i64::from(status.leader_id == Some(status.id)));
    LAST_LOG.set(status.last_log_index.unwrap_or(0) as i64);
    COMMITTED.set(status.committed.unwrap_or(0) as i64);
    APPLIED.set(status.last_applied.unwrap_or(0) as i64);
    SNAPSHOT_INDEX.set(status.snapshot.unwrap_or(0) as i64);
    LAG.reset();
    for member in &status.nodes {
        if let Some(lag) = member.lag {
            LAG.with_label_values(&[&member.id.to_string()]).set(lag as i64);
        }
    }
}

/// Sets the catalog gauges from `catalog`.
pub fn observe_catalog(catalog: &Catalog) {
    JOBS.reset();
    for kind in crate::jobs::JobSpec::KINDS {
        for state in crate::jobs::JobState::NAMES {
            JOBS.with_label_values(&[kind, state]).set(0);
        }
    }
    for job in catalog.jobs.jobs.values() {
        JOBS.with_label_values(&[job.spec.kind(), job.state.name()]).inc();
    }
    COMPUTE_NODES.reset();
    for state in ["live", "draining", "dead"] {
        COMPUTE_NODES.with_label_values(&[state]).set(0);
    }
    for node in catalog.compute.nodes.values() {
        let state = match node.state {
            NodeState::Live => "live",
            NodeState::Draining => "draining",
            NodeState::Dead { .. } => "dead",
        };
        COMPUTE_NODES.with_label_values(&[state]).inc();
    }
    let moving = catalog
        .assignments
        .iter()
        .flat_map(|(segment, nodes)| nodes.iter().map(move |n| (segment, n)))
        .filter(|(segment, node)| catalog.compute.nodes.get(node).is_none_or(|n| !n.ready.contains(segment.as_str())))
        .count();
    MOVES.set(moving as i64);
    COLLECTIONS.set(catalog.collections.len() as i64);
}

/// Counts elections (term changes) seen by `node` until `shutdown` resolves.
pub async fn count_elections(node: Arc<MetaNode>, shutdown: impl std::future::Future<Output = ()>) {
    let mut metrics = node.raft().metrics();
    let mut term = metrics.borrow().current_term;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = metrics.borrow().current_term;
                if now > term {
                    ELECTIONS.inc_by(now - term);
                    term = now;
                }
            }
        }
    }
}

