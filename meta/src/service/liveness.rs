//! Compute-node liveness on the leader: the last heartbeat of each node, kept in memory only,
//! the failure detector that turns a silence into a logged decision, and the placement of
//! segments on the live nodes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use grape_proto::meta::v1 as pb;

use crate::command::Command;
use crate::node::MetaNode;
use crate::nodes::NodeState;
use crate::placement;

/// The last heartbeat of each compute node, as this member received it.
#[derive(Debug, Default)]
pub struct Liveness {
    beats: Mutex<HashMap<u64, (Instant, pb::HeartbeatRequest)>>,
}

impl Liveness {
    /// Records a heartbeat now.
    pub fn record(&self, beat: pb::HeartbeatRequest) {
        self.lock().insert(beat.node_id, (Instant::now(), beat));
    }

    /// When node `id` was last heard from, and what it said.
    pub fn last(&self, id: u64) -> Option<(Instant, pb::HeartbeatRequest)> {
        self.lock().get(&id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Instant, pb::HeartbeatRequest)>> {
        self.beats.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A node's status line, with the load it last reported here.
pub fn node_status(node: &crate::nodes::ComputeNode, assigned: u64, liveness: &Liveness) -> pb::ComputeNodeStatus {
    let state = match &node.state {
        NodeState::Live => "live".to_string(),
        NodeState::Draining => "draining".to_string(),
        NodeState::Dead { reason } => format!("dead: {reason}"),
    };
    let last = liveness.last(node.id);
    let beat = last.as_ref().map(|(_, b)| b.clone()).unwrap_or_default();
    pb::ComputeNodeStatus {
        id: node.id,
        addr: node.addr.clone(),
        state,
        segments_loaded: beat.segments_loaded,
        rows_loaded: beat.rows_loaded,
        memory_used: beat.memory_used,
        last_heartbeat_ms: last.map(|(at, _)| at.elapsed().as_millis() as u64),
        assigned_segments: assigned,
        segments_loading: beat.segments_loading,
        segments_failed: node.failed.len() as u64,
    }
}

/// Pause after a catalog change before placing, so that a burst of changes is placed once.
const PLACEMENT_DEBOUNCE: Duration = Duration::from_millis(20);

/// While this member leads: declares dead every live compute node not heard from for
/// `timeout` (counting from when this member became leader, so a new leader gives every node
/// a full timeout first), then brings the segment placement up to date with the live nodes
/// (see [`crate::placement::plan`]). Both are logged decisions. Runs until `shutdown` resolves.
pub async fn watch_compute_nodes(
    node: Arc<MetaNode>,
    liveness: Arc<Liveness>,
    timeout: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut leading_since: Option<Instant> = None;
    let mut changes = node.watch();
    loop {
        // Wake on the failure detector's tick, or soon after any catalog change (a new
        // segment, a node reporting segments ready), so that placement follows quickly.
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(timeout / 4) => {}
            _ = changes.changed() => tokio::time::sleep(PLACEMENT_DEBOUNCE).await,
        }
        changes.borrow_and_update();
        if node.assume_leader().is_err() {
            leading_since = None;
            continue;
        }
        let since = *leading_since.get_or_insert_with(Instant::now);
        let catalog = node.catalog_snapshot();
        for n in catalog.compute.live() {
            let heard = liveness.last(n.id).map_or(since, |(at, _)| at.max(since));
            let silent = heard.elapsed();
            if silent > timeout {
                let reason = format!("no heartbeat for {:.1} s", silent.as_secs_f64());
                tracing::warn!(node = n.id, addr = %n.addr, %reason, "declaring compute node dead");
                if let Err(e) = node.write(Command::DeclareDead { id: n.id, reason }).await {
                    tracing::warn!(node = n.id, error = %e, "could not record a compute node's death; retrying");
                }
            }
        }
        if let Some((set, unset)) = placement::plan(&node.catalog_snapshot()) {
            tracing::info!(placed = set.len(), forgotten = unset.len(), "updating segment placement");
            if let Err(e) = node.write(Command::SetAssignments { set, unset }).await {
                tracing::warn!(error = %e, "could not record the segment placement; retrying");
            }
        }
    }
}
