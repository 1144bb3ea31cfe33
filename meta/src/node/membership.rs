//! Group membership: waiting for a leader, and adding or removing members on the leader.
//!
//! Adding a member takes the two steps Raft asks for: the node joins as a learner and receives
//! the log (or a snapshot) without a vote, and becomes a voter only once it has caught up, so
//! a slow newcomer never holds up the quorum. Each step is a membership change that openraft
//! commits through the joint-consensus protocol.

use std::collections::BTreeSet;
use std::time::Duration;

use super::config::LEARNER_CATCH_UP_TIMEOUT;
use super::status::matched_index;
use super::MetaNode;
use crate::error::MetaError;
use crate::types::{ChangeMembers, ForwardToLeader, Node, NodeId, RaftMetrics};

impl MetaNode {
    /// Waits until this member knows a leader, and returns its id.
    ///
    /// A follower learns the leader from its first append-entries; after the leader dies the
    /// followers go on naming it until one of them times out and starts an election (see
    /// [`super::config::ELECTION_TIMEOUT_MS`]). Fails with [`MetaError::Timeout`].
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, MetaError> {
        let m = self.raft.wait(Some(timeout)).metrics(|m| m.current_leader.is_some(), "a meta leader is known").await?;
        m.current_leader.ok_or_else(|| MetaError::Timeout("no meta leader known".into()))
    }

    /// Adds node `id`, whose Raft service listens at `addr`, as a voter: first as a learner,
    /// waiting (up to 60 s) until it has replicated the log up to its own addition, then
    /// promoted to voter.
    ///
    /// Only on the leader, else [`MetaError::NotLeader`]. Adding a current voter at the same
    /// address does nothing; a member at another address is refused with
    /// [`MetaError::Membership`] (remove it first). If the learner does not catch up in time,
    /// it stays a learner and this fails with [`MetaError::Timeout`]; calling again resumes.
    pub async fn add_member(&self, id: NodeId, addr: &str) -> Result<(), MetaError> {
        let metrics = self.assume_leader()?;
        let membership = metrics.membership_config.membership();
        if let Some(node) = membership.get_node(&id).filter(|n| n.addr != addr) {
            return Err(MetaError::Membership(format!("meta node {id} is already a member at {}; remove it first", node.addr)));
        }
        if membership.voter_ids().any(|v| v == id) {
            return Ok(());
        }
        let added = self.raft.add_learner(id, Node::new(addr), false).await?;
        let upto = added.log_id.index;
        tracing::info!(id, addr, upto, "added meta learner, waiting for it to catch up");
        self.raft
            .wait(Some(LEARNER_CATCH_UP_TIMEOUT))
            .metrics(|m| matched_index(m, id).is_some_and(|i| i >= upto), "new meta learner catches up")
            .await?;
        self.raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false).await?;
        tracing::info!(id, addr, "meta learner promoted to voter");
        Ok(())
    }

    /// Removes node `id` from the group: a voter is removed from the voters, and then the node
    /// (voter or learner) from the membership, so the leader stops replicating to it.
    ///
    /// Only on the leader, else [`MetaError::NotLeader`]; removing a node that is not a
    /// member does nothing. Removing the last voter is refused with
    /// [`MetaError::Membership`]. The leader may remove itself: it steps down once the change
    /// is committed.
    pub async fn remove_member(&self, id: NodeId) -> Result<(), MetaError> {
        let metrics = self.assume_leader()?;
        if metrics.membership_config.membership().voter_ids().any(|v| v == id) {
            // `retain = false`: the removed voter is not kept as a learner either.
            self.raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false).await?;
        }
        let still_a_node = self.raft.metrics().borrow().membership_config.membership().get_node(&id).is_some();
        if still_a_node {
            self.raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false).await?;
        }
        tracing::info!(id, "removed meta member");
        Ok(())
    }

    /// This member's metrics if it is the leader, else [`MetaError::NotLeader`] naming the
    /// leader it knows of, with its address.
    pub(crate) fn assume_leader(&self) -> Result<RaftMetrics, MetaError> {
        let m = self.raft.metrics().borrow().clone();
        match m.current_leader {
            Some(leader) if leader == self.id => Ok(m),
            leader_id => {
                let leader_node = leader_id.and_then(|l| m.membership_config.membership().get_node(&l)).cloned();
                Err(ForwardToLeader { leader_id, leader_node }.into())
            }
        }
    }
}
