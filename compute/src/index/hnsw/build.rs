//! Building an HNSW graph from full-precision vectors, with rows inserted in parallel.
//!
//! Each row draws its level from a seeded generator (reproducible builds); rows are then
//! inserted by all rayon threads at once, each row's lists changed under its own lock as in
//! hnswlib. Level-0 lists, which every insert's search reads hundreds of, sit in one flat
//! array of atomics read without a lock: a reader racing a writer sees a mix of the old and
//! new list, every entry still a row, which a search tolerates. Profiled before this, a
//! third of the build went to chasing a lock, a `Vec` and a `Vec` per neighbour list.
//! Neighbours are chosen with the paper's heuristic (a candidate is kept only if it is
//! closer to the new row than to any neighbour already kept), which keeps clustered data
//! navigable.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, RwLock};

use grape_meta::catalog::Metric;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use super::beam::{greedy, search_level, with_visited, Level, Near};
use super::graph::{Graph, NONE};
use crate::distance::Scorer;
use crate::index::{FlatVectors, Vectors};

/// Parameters of a graph build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildParams {
    /// Neighbours per row on upper levels (level 0 has twice as many).
    pub m: usize,
    /// Breadth of the search that finds a new row's neighbours.
    pub ef_construction: usize,
    /// Seed of the level draw.
    pub seed: u64,
}

impl Default for BuildParams {
    fn default() -> Self {
        Self { m: 16, ef_construction: 200, seed: 0x9e37_79b9 }
    }
}

/// Highest level a row may get.
const MAX_LEVEL: u8 = 15;

/// The graph while rows are being inserted.
struct Building<'a> {
    vectors: FlatVectors<'a>,
    metric: Metric,
    params: BuildParams,
    levels: Vec<u8>,
    /// Level-0 lists: per row a length, then `2·m` slots.
    level0: Vec<AtomicU32>,
    /// Per row, its lists of levels `1..=level` (at `level - 1`); its lock is also the one
    /// writers of the row's level-0 list hold.
    upper: Vec<Mutex<Vec<Vec<u32>>>>,
    /// The entry row and its level.
    entry: RwLock<(u32, u8)>,
}

/// One level of the graph being built, searched for the row being inserted.
struct BuildLevel<'a, 'b> {
    building: &'b Building<'a>,
    query: &'b [f32],
    scorer: Scorer,
    level: u8,
}

impl Level for BuildLevel<'_, '_> {
    fn neighbours(&self, row: u32, out: &mut Vec<u32>) {
        out.clear();
        if self.level == 0 {
            self.building.read_level0(row, out);
        } else if let Some(list) = lock(&self.building.upper[row as usize]).get(self.level as usize - 1) {
            out.extend_from_slice(list);
        }
    }

    #[inline(always)]
    fn distance(&self, row: u32) -> f32 {
        self.building.distance_to(&self.scorer, self.query, row)
    }

    #[inline(always)]
    fn allowed(&self, _row: u32) -> bool {
        true
    }

    #[inline(always)]
    fn prefetch(&self, row: u32) {
        self.building.vectors.prefetch(row as usize);
    }
}

/// Locks a list, ignoring poisoning: a panic elsewhere leaves a list valid (pushes and
/// replacements are whole).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<'a> Building<'a> {
    #[inline(always)]
    fn distance_to(&self, scorer: &Scorer, query: &[f32], row: u32) -> f32 {
        scorer.distance(query, self.vectors.vector(row as usize), self.vectors.norm(row as usize))
    }

    /// The slots of `row`'s level-0 list: its length first.
    #[inline(always)]
    fn slots(&self, row: u32) -> &[AtomicU32] {
        let width = self.params.m * 2 + 1;
        &self.level0[row as usize * width..(row as usize + 1) * width]
    }

    /// Appends `row`'s level-0 neighbours to `out`.
    #[inline(always)]
    fn read_level0(&self, row: u32, out: &mut Vec<u32>) {
        let slots = self.slots(row);
        let len = (slots[0].load(Ordering::Acquire) as usize).min(slots.len() - 1);
        out.extend(slots[1..=len].iter().map(|s| s.load(Ordering::Relaxed)));
    }

    /// Replaces `row`'s list on `level` with `list`; the caller holds the row's lock
    /// (`upper` is what it guards).
    #[inline(always)]
    fn set_list(&self, row: u32, level: u8, list: &[u32], upper: &mut [Vec<u32>]) {
        if level == 0 {
            let slots = self.slots(row);
            for (slot, &n) in slots[1..].iter().zip(list) {
                slot.store(n, Ordering::Relaxed);
            }
            slots[0].store(list.len().min(slots.len() - 1) as u32, Ordering::Release);
        } else {
            upper[level as usize - 1] = list.to_vec();
        }
    }

    fn max_links(&self, level: u8) -> usize {
        if level == 0 {
            self.params.m * 2
        } else {
            self.params.m
        }
    }

    /// The heuristic choice of at most `max` neighbours among `candidates` (closest first).
    #[inline(always)]
    fn select(&self, candidates: &[Near], max: usize) -> Vec<u32> {
        let mut kept: Vec<Near> = Vec::with_capacity(max);
        for c in candidates {
            if kept.len() >= max {
                break;
            }
            let v = self.vectors.vector(c.row as usize);
            let scorer = Scorer::with_norm(self.metric, self.vectors.norm(c.row as usize));
            if kept.iter().all(|k| self.distance_to(&scorer, v, k.row) > c.distance) {
                kept.push(*c);
            }
        }
        kept.iter().map(|k| k.row).collect()
    }

    /// Inserts `row`: inlined into [`crate::simd::wide`] by [`build`], like everything it calls.
    #[inline(always)]
    fn insert(&self, row: u32) {
        let query = self.vectors.vector(row as usize);
        let scorer = Scorer::with_norm(self.metric, self.vectors.norm(row as usize));
        let level = self.levels[row as usize];
        let (entry, top) = *self.entry.read().unwrap_or_else(|e| e.into_inner());
        let on = |l: u8| BuildLevel { building: self, query, scorer, level: l };
        let mut start = Near { distance: self.distance_to(&scorer, query, entry), row: entry };
        for l in (level.saturating_add(1)..=top).rev() {
            start = greedy(&on(l), start).0;
        }
        let mut entries = vec![start];
        for l in (0..=level.min(top)).rev() {
            let (found, _) = with_visited(self.levels.len(), |v| search_level(&on(l), &entries, self.params.ef_construction, v));
            // M links of its own on every level, as hnswlib does: level 0 fills up to 2·M
            // through the links later rows add, and choosing 2·M here doubled the pruning of
            // neighbours' overflowing lists (each a quadratic heuristic) for no recall.
            let chosen = self.select(&found, self.params.m);
            self.set_list(row, l, &chosen, &mut lock(&self.upper[row as usize]));
            for n in chosen {
                self.link(n, row, l);
            }
            entries = found;
        }
        if level > top {
            let mut e = self.entry.write().unwrap_or_else(|e| e.into_inner());
            if level > e.1 {
                *e = (row, level);
            }
        }
    }

    /// Adds `new` to the neighbours of `row` on `level`, pruning them with the heuristic
    /// when the list overflows.
    #[inline(always)]
    fn link(&self, row: u32, new: u32, level: u8) {
        let max = self.max_links(level);
        let mut upper = lock(&self.upper[row as usize]);
        let mut list = Vec::with_capacity(max + 1);
        if level == 0 {
            self.read_level0(row, &mut list);
        } else {
            list.extend_from_slice(&upper[level as usize - 1]);
        }
        if list.contains(&new) {
            return;
        }
        list.push(new);
        if list.len() > max {
            let v = self.vectors.vector(row as usize);
            let scorer = Scorer::with_norm(self.metric, self.vectors.norm(row as usize));
            let mut near: Vec<Near> = list.iter().map(|&n| Near { distance: self.distance_to(&scorer, v, n), row: n }).collect();
            near.sort();
            list = self.select(&near, max);
        }
        self.set_list(row, level, &list, &mut upper);
    }

    fn freeze(self) -> Graph {
        let rows = self.levels.len();
        let (m, m0) = (self.params.m, self.params.m * 2);
        let entry = self.entry.read().unwrap_or_else(|e| e.into_inner()).0;
        let mut level0 = vec![NONE; rows * m0];
        let mut upper_start = vec![NONE; rows];
        let mut upper = Vec::new();
        let mut list = Vec::with_capacity(m0);
        for (row, lists) in self.upper.iter().enumerate() {
            list.clear();
            self.read_level0(row as u32, &mut list);
            level0[row * m0..row * m0 + list.len()].copy_from_slice(&list);
            let lists = lock(lists);
            if !lists.is_empty() {
                upper_start[row] = upper.len() as u32;
                for list in lists.iter() {
                    let at = upper.len();
                    upper.resize(at + m, NONE);
                    upper[at..at + list.len()].copy_from_slice(list);
                }
            }
        }
        Graph { m, m0, entry, levels: self.levels, level0, upper_start, upper }
    }
}

/// Builds the graph of every row of `vectors` under `metric`.
pub fn build(vectors: &dyn Vectors, metric: Metric, params: BuildParams) -> Graph {
    let rows = vectors.rows();
    let mut rng = StdRng::seed_from_u64(params.seed);
    let scale = 1.0 / (params.m.max(2) as f64).ln();
    let levels: Vec<u8> = (0..rows)
        .map(|_| {
            let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
            ((-u.ln() * scale).floor() as u64).min(MAX_LEVEL as u64) as u8
        })
        .collect();
    let upper = levels.iter().map(|&l| Mutex::new(vec![Vec::new(); l as usize])).collect();
    let level0 = (0..rows * (params.m * 2 + 1)).map(|_| AtomicU32::new(0)).collect();
    let first_level = levels.first().copied().unwrap_or(0);
    let building = Building { vectors: vectors.flat(), metric, params, levels, level0, upper, entry: RwLock::new((0, first_level)) };
    (1..rows as u32).into_par_iter().for_each(|row| {
        crate::simd::wide(
            #[inline(always)]
            || building.insert(row),
        )
    });
    building.freeze()
}
