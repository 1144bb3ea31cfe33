//! Placement of segments on compute nodes: weighted rendezvous hashing with bounded loads.
//!
//! Each segment ranks every live node by a score that depends only on the pair (segment, node)
//! and the node's weight (its free memory): `weight / -ln(u)`, with `u` a hash of the pair
//! mapped into (0, 1). The highest scores win, so a node's share is proportional to its weight,
//! and adding or removing a node changes the ranking of no other pair: only segments whose
//! top-R set gains or loses that node move ("highest random weight", Thaler & Ravishankar).
//!
//! Pure rendezvous hashing leaves the counts per node as uneven as coin flips (±√n). To keep
//! every node within a few percent of its fair share, each node takes at most
//! `ceil(fair share × (1 + LOAD_SLACK))` replicas; a segment whose preferred node is full goes
//! to its next-ranked node ("consistent hashing with bounded loads", Mirrokni et al.).
//! Segments are placed in a fixed order (by id), so the result is a function of the inputs
//! alone: every meta member computes the same placement.

use std::collections::BTreeMap;

/// How far above its fair share a node may be filled.
pub const LOAD_SLACK: f64 = 0.05;

/// A compute node as placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeWeight {
    /// The node's id.
    pub id: u64,
    /// Its weight: free memory in bytes (any positive scale works; 0 is treated as 1).
    pub weight: u64,
}

/// Node ids holding each segment, best-ranked first.
pub type Placement = BTreeMap<String, Vec<u64>>;

/// Places every segment (id → replica count) on `nodes`: each segment on
/// `min(replicas, nodes)` distinct nodes.
pub fn place(segments: &BTreeMap<String, u32>, nodes: &[NodeWeight]) -> Placement {
    let mut placement = Placement::new();
    if nodes.is_empty() {
        return placement;
    }
    let total: u64 = segments.values().map(|r| u64::from(*r).min(nodes.len() as u64)).sum();
    let weight_sum: f64 = nodes.iter().map(|n| n.weight.max(1) as f64).sum();
    let mut room: BTreeMap<u64, u64> =
        nodes.iter().map(|n| (n.id, (total as f64 * n.weight.max(1) as f64 / weight_sum * (1.0 + LOAD_SLACK)).ceil() as u64)).collect();
    for (segment, replicas) in segments {
        let wanted = (*replicas as usize).min(nodes.len());
        let ranked = rank(segment, nodes);
        let mut chosen: Vec<u64> = ranked.iter().copied().filter(|id| room.get(id).is_some_and(|r| *r > 0)).take(wanted).collect();
        // Every node full (rounding): fall back to pure rendezvous for the rest.
        for id in ranked {
            if chosen.len() >= wanted {
                break;
            }
            if !chosen.contains(&id) {
                chosen.push(id);
            }
        }
        for id in &chosen {
            if let Some(r) = room.get_mut(id) {
                *r = r.saturating_sub(1);
            }
        }
        placement.insert(segment.clone(), chosen);
    }
    placement
}

/// How many segments may be moving at once for rebalancing (a node joined or is draining).
/// Repairs (a segment with fewer ready replicas than its replica factor) are not bounded.
pub const MAX_MOVES: usize = 8;

/// The change that moves the `current` assignments towards the placement for `catalog` on
/// its live compute nodes: segments to (re)assign and segments to forget. `None` if nothing
/// changes, or if no compute node is live (then the last placement is kept, so that nodes
/// coming back find their segments where they were).
///
/// Moves are gradual so that capacity never dips: a segment that moves is first assigned to
/// its old and new nodes together, and the old ones are dropped only once every new node
/// reports it ready. At most [`MAX_MOVES`] such moves run at once when the segment is
/// already fully served; a segment with fewer ready replicas than it should have (new, or its
/// node died) goes to its target nodes at once.
pub fn plan(catalog: &crate::Catalog) -> Option<(Vec<(String, Vec<u64>)>, Vec<String>)> {
    let nodes: Vec<NodeWeight> = catalog.compute.placeable().map(|n| NodeWeight { id: n.id, weight: n.memory_bytes }).collect();
    if nodes.is_empty() {
        return None;
    }
    let registry = &catalog.compute;
    let segments: BTreeMap<String, u32> =
        catalog.collections.values().flat_map(|c| c.segments().map(move |s| (s.id.clone(), c.spec.replicas.max(1)))).collect();
    let target = place(&segments, &nodes);
    let live = |id: &u64| registry.nodes.get(id).is_some_and(|n| n.is_live());
    let current =
        |id: &str| -> Vec<u64> { catalog.assignments.get(id).map(|a| a.iter().copied().filter(live).collect()).unwrap_or_default() };
    let mut moving = target
        .iter()
        .filter(|(id, want)| {
            let cur = current(id);
            cur.len() > want.len() && want.iter().all(|n| cur.contains(n))
        })
        .count();
    let mut set = Vec::new();
    for (id, want) in &target {
        let cur = current(id);
        let next = if want.iter().all(|n| cur.contains(n)) {
            // Already on every target node: drop the others once the targets serve it.
            if want.iter().all(|n| registry.serves(*n, id)) {
                want.clone()
            } else {
                cur
            }
        } else {
            let ready = cur.iter().filter(|n| registry.serves(**n, id)).count();
            let under_replicated = ready < want.len();
            if under_replicated || moving < MAX_MOVES {
                moving += usize::from(!under_replicated);
                let mut union = want.clone();
                union.extend(cur.iter().filter(|n| !want.contains(n)));
                union
            } else {
                cur
            }
        };
        if catalog.assignments.get(id) != Some(&next) {
            set.push((id.clone(), next));
        }
    }
    let unset: Vec<String> = catalog.assignments.keys().filter(|id| !segments.contains_key(*id)).cloned().collect();
    (!set.is_empty() || !unset.is_empty()).then_some((set, unset))
}

/// Node ids by descending rendezvous score for `segment`.
pub fn rank(segment: &str, nodes: &[NodeWeight]) -> Vec<u64> {
    let mut scored: Vec<(f64, u64)> = nodes.iter().map(|n| (score(segment, n), n.id)).collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, id)| id).collect()
}

/// The weighted rendezvous score of (segment, node): `weight / -ln(u)`, `u` in (0, 1).
fn score(segment: &str, node: &NodeWeight) -> f64 {
    let h = mix(fnv1a(segment.as_bytes()) ^ node.id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    // 53 random bits into (0, 1), never 0 or 1.
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    node.weight.max(1) as f64 / -u.ln()
}

/// FNV-1a over bytes: stable across processes and builds (unlike `DefaultHasher`).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// A 64-bit finaliser (splitmix64) so that nearby inputs give unrelated outputs.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(ids: impl IntoIterator<Item = u64>) -> Vec<NodeWeight> {
        ids.into_iter().map(|id| NodeWeight { id, weight: 16 << 30 }).collect()
    }

    fn segments(n: usize, replicas: u32) -> BTreeMap<String, u32> {
        (0..n).map(|i| (format!("seg-{i:05}"), replicas)).collect()
    }

    fn counts(p: &Placement) -> BTreeMap<u64, usize> {
        let mut c = BTreeMap::new();
        for holders in p.values() {
            for id in holders {
                *c.entry(*id).or_insert(0) += 1;
            }
        }
        c
    }

    /// Replicas that are on a different node set between two placements.
    fn moved(a: &Placement, b: &Placement) -> usize {
        a.iter().map(|(s, old)| b[s].iter().filter(|id| !old.contains(id)).count()).sum()
    }

    #[test]
    fn balance_is_within_ten_percent_on_1000_segments_over_7_nodes() {
        let p = place(&segments(1000, 1), &nodes(1..=7));
        let mean = 1000.0 / 7.0;
        for (node, n) in counts(&p) {
            assert!((n as f64 - mean).abs() <= 0.10 * mean, "node {node} has {n} segments, mean {mean:.1}");
        }
    }

    #[test]
    fn replicas_are_on_distinct_nodes_and_capped_by_the_node_count() {
        let p = place(&segments(300, 3), &nodes(1..=5));
        for holders in p.values() {
            let mut unique = holders.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!((holders.len(), unique.len()), (3, 3), "{holders:?}");
        }
        let two_nodes = place(&segments(10, 3), &nodes(1..=2));
        assert!(two_nodes.values().all(|h| h.len() == 2));
        assert!(place(&segments(10, 1), &[]).is_empty());
    }

    #[test]
    fn a_joining_node_takes_about_its_share_and_little_else_moves() {
        let before = place(&segments(1000, 2), &nodes(1..=7));
        let after = place(&segments(1000, 2), &nodes(1..=8));
        let to_new = counts(&after)[&8];
        let total_moved = moved(&before, &after);
        // Ideal: exactly the new node's share (2000 / 8 = 250) moves, all of it to node 8.
        assert!(to_new >= 230, "the new node got only {to_new} replicas");
        assert!(total_moved <= 250 * 13 / 10, "{total_moved} replicas moved for a share of 250");
    }

    #[test]
    fn a_leaving_node_moves_its_replicas_and_little_else() {
        let before = place(&segments(1000, 2), &nodes(1..=7));
        let after = place(&segments(1000, 2), &nodes((1..=7).filter(|id| *id != 3)));
        let lost = counts(&before)[&3];
        let total_moved = moved(&before, &after);
        assert!(total_moved >= lost, "every replica of the lost node is placed again");
        assert!(total_moved <= lost * 13 / 10, "{total_moved} replicas moved to replace {lost}");
        assert!(after.values().all(|h| !h.contains(&3)));
    }

    #[test]
    fn the_plan_follows_segments_and_live_nodes() {
        use crate::apply::apply;
        use crate::catalog::{CollectionSpec, Metric};
        use crate::command::Command;

        let mut catalog = crate::Catalog::default();
        assert_eq!(plan(&catalog), None, "no nodes: nothing to plan");
        let spec = CollectionSpec { name: "c".into(), dim: 4, metric: Metric::L2, shards: 1, replicas: 2, schema: None, quantization: Default::default(), vectors: vec![], vectors_on_disk: false };
        apply(&mut catalog, &Command::CreateCollection { spec });
        let segment = |id: &str| {
            serde_json::from_value(serde_json::json!({"id": id, "shard": 0, "path": format!("p/{id}"), "rows": 1, "size_bytes": 1}))
                .expect("segment meta")
        };
        let segments = vec![segment("s1"), segment("s2")];
        apply(&mut catalog, &Command::CommitSegments { collection: "c".into(), collection_id: 0, segments, delete_logs: Vec::new(), job: None });
        for id in 1..=3 {
            apply(&mut catalog, &Command::RegisterNode { id, addr: format!("h:{id}"), memory_bytes: 1 << 30 });
        }
        let (set, unset) = plan(&catalog).expect("a first placement");
        assert_eq!((set.len(), unset.len()), (2, 0));
        assert!(set.iter().all(|(_, nodes)| nodes.len() == 2), "the collection's replica factor: {set:?}");
        apply(&mut catalog, &Command::SetAssignments { set, unset });
        assert_eq!(plan(&catalog), None, "nothing changed, nothing to do");
        report_all_ready(&mut catalog);

        let victim = catalog.assignments["s1"][0];
        apply(&mut catalog, &Command::DeclareDead { id: victim, reason: "test".into() });
        let (set, _) = plan(&catalog).expect("the dead node's segments move");
        assert!(set.iter().all(|(_, nodes)| !nodes.contains(&victim) && nodes.len() == 2), "{set:?}");
        apply(&mut catalog, &Command::SetAssignments { set, unset: Vec::new() });
        apply(&mut catalog, &Command::DropCollection { name: "c".into() });
        let (set, unset) = plan(&catalog).expect("dropped segments are forgotten");
        assert_eq!((set.len(), unset.len()), (0, 2));
    }

    /// Every live node reports every segment assigned to it ready.
    fn report_all_ready(catalog: &mut crate::Catalog) {
        use crate::apply::apply;
        use crate::command::Command;
        let ids: Vec<u64> = catalog.compute.live().map(|n| n.id).collect();
        for id in ids {
            let ready: Vec<String> = catalog.assignments.iter().filter(|(_, n)| n.contains(&id)).map(|(s, _)| s.clone()).collect();
            apply(catalog, &Command::SegmentStates { id, ready, failed: Vec::new() });
        }
    }

    #[test]
    fn moves_keep_the_old_node_until_the_new_one_is_ready_and_are_bounded() {
        use crate::apply::apply;
        use crate::catalog::{CollectionSpec, Metric};
        use crate::command::Command;

        let mut catalog = crate::Catalog::default();
        let spec = CollectionSpec { name: "c".into(), dim: 4, metric: Metric::L2, shards: 1, replicas: 1, schema: None, quantization: Default::default(), vectors: vec![], vectors_on_disk: false };
        apply(&mut catalog, &Command::CreateCollection { spec });
        let segments = (0..100)
            .map(|i| {
                serde_json::from_value(
                    serde_json::json!({"id": format!("s{i:03}"), "shard": 0, "path": format!("p/{i}"), "rows": 1, "size_bytes": 1}),
                )
                .expect("segment meta")
            })
            .collect();
        apply(&mut catalog, &Command::CommitSegments { collection: "c".into(), collection_id: 0, segments, delete_logs: Vec::new(), job: None });
        for id in 1..=3 {
            apply(&mut catalog, &Command::RegisterNode { id, addr: format!("h:{id}"), memory_bytes: 1 << 30 });
        }
        let (set, _) = plan(&catalog).expect("a first placement");
        assert_eq!(set.len(), 100, "new segments are placed at once, without a bound");
        apply(&mut catalog, &Command::SetAssignments { set, unset: Vec::new() });
        report_all_ready(&mut catalog);
        let before = catalog.assignments.clone();

        // A fourth node joins: at most MAX_MOVES segments start moving, and each keeps its old node.
        apply(&mut catalog, &Command::RegisterNode { id: 4, addr: "h:4".into(), memory_bytes: 1 << 30 });
        let mut rounds = 0;
        while let Some((set, unset)) = plan(&catalog) {
            rounds += 1;
            assert!(unset.is_empty());
            let in_flight = |c: &crate::Catalog| c.assignments.values().filter(|n| n.len() > 1).count();
            apply(&mut catalog, &Command::SetAssignments { set, unset });
            assert!(in_flight(&catalog) <= MAX_MOVES, "{} segments moving at once", in_flight(&catalog));
            for (segment, nodes) in &catalog.assignments {
                assert!(nodes.iter().any(|n| catalog.compute.serves(*n, segment)), "{segment} has no ready replica: {nodes:?}");
            }
            report_all_ready(&mut catalog);
            assert!(rounds < 100, "the rebalance does not converge");
        }
        let moved: Vec<_> = catalog.assignments.iter().filter(|(s, n)| before[*s] != **n).collect();
        assert!(moved.iter().all(|(_, n)| n.as_slice() == [4]), "segments move only to the new node: {moved:?}");
        assert!((20..=30).contains(&moved.len()), "the new node took {} of 100 segments", moved.len());

        // Draining node 4 moves its segments back the same way; it serves until they are ready elsewhere.
        apply(&mut catalog, &Command::DrainNode { id: 4 });
        while let Some((set, unset)) = plan(&catalog) {
            apply(&mut catalog, &Command::SetAssignments { set, unset });
            for (segment, nodes) in &catalog.assignments {
                assert!(nodes.iter().any(|n| catalog.compute.serves(*n, segment)), "{segment} has no ready replica");
            }
            report_all_ready(&mut catalog);
        }
        assert!(catalog.assignments.values().all(|n| !n.contains(&4)), "a drained node holds nothing");
    }

    #[test]
    fn weights_set_the_shares_and_placement_is_deterministic() {
        let mut weighted = nodes(1..=3);
        weighted[0].weight *= 2;
        let p = place(&segments(2000, 1), &weighted);
        let c = counts(&p);
        let share = c[&1] as f64 / 2000.0;
        assert!((share - 0.5).abs() < 0.03, "a node with half the weight holds {share:.3} of the segments");
        assert_eq!(p, place(&segments(2000, 1), &weighted), "same inputs, same placement");
    }
}
