//! The compute-node registry: which compute nodes the group knows and whether each is live.
//!
//! Liveness itself (heartbeats) lives in the leader's memory and is never logged; only the
//! decisions are: a node registering (or coming back), and the leader declaring a silent node
//! dead. Placement reads the live nodes from here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Whether a compute node takes part in placement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Heartbeating; receives segments.
    Live,
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
    /// Live or dead.
    pub state: NodeState,
}

/// All compute nodes, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRegistry {
    /// Nodes by id.
    pub nodes: BTreeMap<u64, ComputeNode>,
}

impl NodeRegistry {
    /// Registers `id` (or re-registers it, live again, at a possibly new address).
    pub fn register(&mut self, id: u64, addr: &str, memory_bytes: u64) {
        self.nodes.insert(id, ComputeNode { id, addr: addr.to_string(), memory_bytes, state: NodeState::Live });
    }

    /// Marks `id` dead; false if the group does not know it.
    pub fn declare_dead(&mut self, id: u64, reason: &str) -> bool {
        match self.nodes.get_mut(&id) {
            Some(node) => {
                node.state = NodeState::Dead { reason: reason.to_string() };
                true
            }
            None => false,
        }
    }

    /// Whether `id` is registered, live, at `addr`.
    pub fn is_live_at(&self, id: u64, addr: &str) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.state == NodeState::Live && n.addr == addr)
    }

    /// The live nodes.
    pub fn live(&self) -> impl Iterator<Item = &ComputeNode> {
        self.nodes.values().filter(|n| n.state == NodeState::Live)
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
}
