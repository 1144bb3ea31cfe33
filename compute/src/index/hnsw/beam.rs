//! Best-first search over one level of a graph, shared by building and searching.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// A row and its distance to the query, ordered by distance (then row, for determinism).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Near {
    /// Distance to the query; smaller is closer.
    pub distance: f32,
    /// The row.
    pub row: u32,
}

impl Eq for Near {}

impl Ord for Near {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance.total_cmp(&other.distance).then(self.row.cmp(&other.row))
    }
}

impl PartialOrd for Near {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Rows already seen by the current search: a mark per row stamped with the search's epoch,
/// so that starting a search costs nothing.
#[derive(Debug, Default)]
pub struct Visited {
    marks: Vec<u16>,
    epoch: u16,
}

impl Visited {
    /// Forgets all marks, sized for `rows` rows.
    pub fn reset(&mut self, rows: usize) {
        if self.marks.len() < rows {
            self.marks.resize(rows, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.fill(0);
            self.epoch = 1;
        }
    }

    /// Marks `row`; true if it was not marked yet.
    #[inline]
    pub fn insert(&mut self, row: u32) -> bool {
        let mark = &mut self.marks[row as usize];
        let fresh = *mark != self.epoch;
        *mark = self.epoch;
        fresh
    }
}

thread_local! {
    static VISITED: RefCell<Visited> = RefCell::new(Visited::default());
}

/// Runs `f` with this thread's [`Visited`], reset for `rows` rows.
pub fn with_visited<T>(rows: usize, f: impl FnOnce(&mut Visited) -> T) -> T {
    VISITED.with(|v| {
        let mut v = v.borrow_mut();
        v.reset(rows);
        f(&mut v)
    })
}

/// What a level search needs from the graph and the query.
pub trait Level {
    /// Copies the neighbours of `row` on this level into `out` (cleared first).
    fn neighbours(&self, row: u32, out: &mut Vec<u32>);
    /// Distance from the query to `row`.
    fn distance(&self, row: u32) -> f32;
    /// Whether `row` may be returned (it is still traversed when not).
    fn allowed(&self, row: u32) -> bool;
    /// Starts loading what [`Level::distance`] of `row` reads (a hint; by default nothing).
    fn prefetch(&self, _row: u32) {}
}

/// Searches one level from `entries`: returns up to `ef` allowed rows closest to the query,
/// closest first, and the number of distances computed.
///
/// Rows that are not allowed are explored like the others (they keep the graph connected)
/// but never returned; the search stops when the closest unexplored row is farther than the
/// `ef`-th allowed row found.
///
/// Inlined into its caller so that [`crate::simd::wide`] widens its distance kernels.
#[inline(always)]
pub fn search_level(level: &impl Level, entries: &[Near], ef: usize, visited: &mut Visited) -> (Vec<Near>, u64) {
    let mut computed = 0u64;
    let mut candidates: BinaryHeap<Reverse<Near>> = BinaryHeap::with_capacity(ef * 2);
    let mut found: BinaryHeap<Near> = BinaryHeap::with_capacity(ef + 1);
    for &e in entries {
        if visited.insert(e.row) {
            candidates.push(Reverse(e));
            if level.allowed(e.row) {
                found.push(e);
            }
        }
    }
    while found.len() > ef {
        found.pop();
    }
    let mut buf = Vec::new();
    let mut fresh = Vec::new();
    while let Some(Reverse(closest)) = candidates.pop() {
        if found.len() >= ef && found.peek().is_some_and(|worst| closest.distance > worst.distance) {
            break;
        }
        level.neighbours(closest.row, &mut buf);
        // Rows not seen yet, their data requested from memory before the first is scored.
        fresh.clear();
        fresh.extend(buf.iter().copied().filter(|&n| visited.insert(n)));
        for &n in &fresh {
            level.prefetch(n);
        }
        for &n in &fresh {
            let distance = level.distance(n);
            computed += 1;
            let near = Near { distance, row: n };
            let full = found.len() >= ef;
            if !full || found.peek().is_some_and(|worst| distance < worst.distance) {
                candidates.push(Reverse(near));
                if level.allowed(n) {
                    found.push(near);
                    if found.len() > ef {
                        found.pop();
                    }
                }
            }
        }
    }
    (found.into_sorted_vec(), computed)
}

/// Walks greedily towards the query on one level from `start`: the closest row reachable by
/// always moving to a closer neighbour, and the number of distances computed.
#[inline(always)]
pub fn greedy(level: &impl Level, mut start: Near) -> (Near, u64) {
    let mut computed = 0;
    let mut buf = Vec::new();
    loop {
        let mut moved = false;
        level.neighbours(start.row, &mut buf);
        for &n in &buf {
            let distance = level.distance(n);
            computed += 1;
            if distance < start.distance {
                start = Near { distance, row: n };
                moved = true;
            }
        }
        if !moved {
            return (start, computed);
        }
    }
}
