//! Exact (brute-force) search: compares the query with every allowed row.

use arrow::array::{Array, BooleanArray};

use super::{VectorIndexRead, Vectors};
use crate::distance::Scorer;
use crate::segment::VectorColumn;
use crate::topk::{Candidate, TopK};

/// How many rows ahead of the one being scored a scan asks for memory: a row's kernel is too
/// short for the hardware prefetcher alone to keep the next rows coming in time. Measured
/// on 200k × 128 (`grape-bench exact-search --segments 1`): 62 QPS with none, 103 with 4,
/// 116 with 8 (the plain memory read's speed), 87 with 16.
const SCAN_PREFETCH_ROWS: usize = 8;

impl VectorIndexRead for VectorColumn {
    fn search(&self, segment: u32, query: &[f32], scorer: &Scorer, allowed: Option<&BooleanArray>, out: &mut TopK) -> u64 {
        // The scorer's kernels are already the widest this CPU has (see `crate::distance`).
        let vectors = self.flat();
        let mut scanned = 0u64;
        let mut offer = |row: usize| {
            let distance = scorer.distance(query, vectors.vector(row), vectors.norm(row));
            if distance < out.threshold() {
                out.push(Candidate { distance, segment, row: row as u32 });
            }
            scanned += 1;
        };
        match allowed {
            None => (0..vectors.rows()).for_each(|row| {
                vectors.prefetch(row + SCAN_PREFETCH_ROWS);
                offer(row)
            }),
            Some(mask) => {
                let allowed = |row: usize| row < mask.len() && mask.is_valid(row) && mask.value(row);
                for row in 0..vectors.rows() {
                    if allowed(row + SCAN_PREFETCH_ROWS) {
                        vectors.prefetch(row + SCAN_PREFETCH_ROWS);
                    }
                    if allowed(row) {
                        offer(row);
                    }
                }
            }
        }
        scanned
    }
}
