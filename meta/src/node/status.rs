//! [`MetaStatus`]: a point-in-time view of one member and, on the leader, of how far each
//! member's log is behind.

use serde::{Deserialize, Serialize};

use super::MetaNode;
use crate::types::{NodeId, RaftMetrics};

/// A point-in-time view of this member, for `grape status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaStatus {
    /// This member's id.
    pub id: NodeId,
    /// The current leader, if known.
    pub leader_id: Option<NodeId>,
    /// `Leader`, `Follower`, `Candidate`, `Learner` or `Shutdown`.
    pub server_state: String,
    /// Current Raft term.
    pub term: u64,
    /// Index of the last log entry on this member.
    pub last_log_index: Option<u64>,
    /// Index of the last entry applied to the catalog.
    pub last_applied: Option<u64>,
    /// Index of the last entry known committed.
    pub committed: Option<u64>,
    /// Last log index covered by the latest snapshot.
    pub snapshot: Option<u64>,
    /// Last log index purged from the log.
    pub purged: Option<u64>,
    /// Voting members of the group.
    pub members: Vec<NodeId>,
    /// Every node of the membership, voters and learners, by id.
    pub nodes: Vec<MemberStatus>,
}

/// One node of the group's membership, as this member sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// The node's id.
    pub id: NodeId,
    /// Address of its Raft service (empty for the single member of `grape dev`).
    pub addr: String,
    /// Whether it votes; a learner only receives the log.
    pub voter: bool,
    /// On the leader: index of the last log entry known to be on this node. `None` elsewhere,
    /// or while the leader has not heard from it.
    pub matched: Option<u64>,
    /// On the leader: how many log entries this node is behind the leader (the leader's last
    /// log index minus `matched`; all of them while `matched` is unknown). `None` elsewhere.
    pub lag: Option<u64>,
}

/// The last log index the leader knows is on `id`; `None` off the leader or if not known yet.
pub(crate) fn matched_index(m: &RaftMetrics, id: NodeId) -> Option<u64> {
    m.replication.as_ref()?.get(&id)?.map(|l| l.index)
}

/// How many entries a log holds up to index `last` (indexes start at 0).
fn entries_upto(last: Option<u64>) -> u64 {
    last.map_or(0, |i| i + 1)
}

fn member_statuses(m: &RaftMetrics) -> Vec<MemberStatus> {
    let membership = m.membership_config.membership();
    membership
        .nodes()
        .map(|(id, node)| {
            let matched = matched_index(m, *id);
            let lag = m.replication.as_ref().map(|_| entries_upto(m.last_log_index).saturating_sub(entries_upto(matched)));
            MemberStatus { id: *id, addr: node.addr.clone(), voter: membership.voter_ids().any(|v| v == *id), matched, lag }
        })
        .collect()
}

impl MetaNode {
    /// A point-in-time view of this member.
    pub async fn status(&self) -> MetaStatus {
        let m = self.raft.metrics().borrow().clone();
        let committed = self.raft.with_raft_state(|st| st.committed.map(|l| l.index)).await.ok().flatten();
        MetaStatus {
            id: self.id,
            leader_id: m.current_leader,
            server_state: format!("{:?}", m.state),
            term: m.current_term,
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.map(|l| l.index),
            committed,
            snapshot: m.snapshot.map(|l| l.index),
            purged: m.purged.map(|l| l.index),
            members: m.membership_config.membership().voter_ids().collect(),
            nodes: member_statuses(&m),
        }
    }
}
