//! The compute-node registry: which compute nodes the group knows and whether each is live.
//!
//! Liveness itself (heartbeats) lives in the leader's memory and is never logged; only the
//! decisions are: a node registering (or coming back), and the leader declaring a silent node
//! dead, a node being drained, and which segments each node reports ready (the routing table
//! every gateway reads). Placement reads the live nodes from here.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Whether a compute node takes part in placement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Heartbeating; receives segments.
    Live,
    /// Heartbeating and serving, but receives no segments: its segments move to other nodes
    /// (`grape cluster drain`), after which it can be stopped without a failed request.
    Draining,
    /// Declared dead by the leader; its segments go elsewhere until it registers again.
    Dead {
        /// Why, as the leader logged it.
        reason: String,
    },
}

/// A compute node as the catalog holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComputeNode {
    /// The node's id.
    pub id: u64,
    /// Address of its public API.
    pub addr: String,
    /// Memory it offers for segments, in bytes (its placement weight).
    pub memory_bytes: u64,
    /// Live, draining or dead.
    pub state: NodeState,
    /// Segments the node reported loaded and ready to serve (ids).
    #[serde(default)]
    pub ready: BTreeSet<String>,
    /// Segments the node reported it could not load, with the reason.
    #[serde(default)]
    pub failed: BTreeMap<String, String>,
}

/// All compute nodes, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRegistry {
    /// Nodes by id.
    pub nodes: BTreeMap<u64, ComputeNode>,
}

impl NodeRegistry {
    /// Registers `id` (or re-registers it, live again, at a possibly new address). A node
    /// that registers holds nothing yet: it starts empty.
    pub fn register(&mut self, id: u64, addr: &str, memory_bytes: u64) {
        let node = ComputeNode {
            id,
            addr: addr.to_string(),
            memory_bytes,
            state: NodeState::Live,
            ready: BTreeSet::new(),
            failed: BTreeMap::new(),
        };
        self.nodes.insert(id, node);
    }

    /// Marks `id` dead (it serves nothing any more); false if the group does not know it.
    pub fn declare_dead(&mut self, id: u64, reason: &str) -> bool {
        match self.nodes.get_mut(&id) {
            Some(node) => {
                node.state = NodeState::Dead { reason: reason.to_string() };
                node.ready.clear();
                node.failed.clear();
                true
            }
            None => false,
        }
    }

    /// Starts draining `id`; false if the group does not know it or it is dead.
    pub fn drain(&mut self, id: u64) -> bool {
        match self.nodes.get_mut(&id) {
            Some(node) if node.is_live() => {
                node.state = NodeState::Draining;
                true
            }
            _ => false,
        }
    }

    /// Records the segments `id` reports ready and failed; false if it is not live.
    pub fn set_states(&mut self, id: u64, ready: &[String], failed: &[(String, String)]) -> bool {
        match self.nodes.get_mut(&id) {
            Some(node) if node.is_live() => {
                node.ready = ready.iter().cloned().collect();
                node.failed = failed.iter().cloned().collect();
                true
            }
            _ => false,
        }
    }

    /// Whether `id` is registered and live (or draining) at `addr`.
    pub fn is_live_at(&self, id: u64, addr: &str) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.is_live() && n.addr == addr)
    }

    /// The nodes that heartbeat and serve: live and draining ones.
    pub fn live(&self) -> impl Iterator<Item = &ComputeNode> {
        self.nodes.values().filter(|n| n.is_live())
    }

    /// The nodes that receive segments: live and not draining.
    pub fn placeable(&self) -> impl Iterator<Item = &ComputeNode> {
        self.nodes.values().filter(|n| n.state == NodeState::Live)
    }

    /// Whether node `id` is live and reports `segment` ready.
    pub fn serves(&self, id: u64, segment: &str) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.is_live() && n.ready.contains(segment))
    }
}

impl ComputeNode {
    /// Whether the node heartbeats and serves (live or draining).
    pub fn is_live(&self) -> bool {
        matches!(self.state, NodeState::Live | NodeState::Draining)
    }

    /// Whether the node's reported states differ from `ready` and `failed`.
    pub fn states_differ(&self, ready: &[String], failed: &[(String, String)]) -> bool {
        self.ready.len() != ready.len()
            || !ready.iter().all(|s| self.ready.contains(s))
            || self.failed.len() != failed.len()
            || !failed.iter().all(|(s, why)| self.failed.get(s) == Some(why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_register_die_and_come_back() {
        let mut r = NodeRegistry::default();
        r.register(7, "h:1", 100);
        assert!(r.is_live_at(7, "h:1"));
        assert!(!r.is_live_at(7, "h:2"));
        assert!(r.declare_dead(7, "silent"));
        assert!(!r.declare_dead(8, "unknown"));
        assert_eq!(r.live().count(), 0);
        r.register(7, "h:2", 100);
        assert!(r.is_live_at(7, "h:2"));
    }

    #[test]
    fn ready_segments_are_served_until_the_node_dies_and_a_draining_node_gets_nothing_new() {
        let mut r = NodeRegistry::default();
        r.register(1, "h:1", 100);
        let ready = vec!["s1".to_string(), "s2".to_string()];
        assert!(r.nodes[&1].states_differ(&ready, &[]));
        assert!(r.set_states(1, &ready, &[]));
        assert!(!r.nodes[&1].states_differ(&ready, &[]));
        assert!(r.serves(1, "s1") && !r.serves(1, "s3"));
        assert!(r.drain(1));
        assert!(r.serves(1, "s1"), "a draining node still serves");
        assert_eq!((r.live().count(), r.placeable().count()), (1, 0));
        assert!(r.declare_dead(1, "silent"));
        assert!(!r.serves(1, "s1") && !r.drain(1) && !r.set_states(1, &ready, &[]));
        r.register(1, "h:1", 100);
        assert!(r.nodes[&1].ready.is_empty(), "a node that comes back starts empty");
    }
}
