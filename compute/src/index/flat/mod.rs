//! Exact (brute-force) search: compares the query with every allowed row.

use arrow::array::{Array, BooleanArray};

use super::{VectorIndexRead, Vectors};
use crate::distance::Scorer;
use crate::segment::VectorColumn;
use crate::topk::{Candidate, TopK};

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
            None => (0..vectors.rows()).for_each(&mut offer),
            Some(mask) => {
                for row in 0..vectors.rows() {
                    if mask.is_valid(row) && mask.value(row) {
                        offer(row);
                    }
                }
            }
        }
        scanned
    }
}
