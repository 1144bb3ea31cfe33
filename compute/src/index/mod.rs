//! Read-only vector indexes over sealed segments.
//!
//! Segments never change once loaded, so search needs only the read side
//! ([`VectorIndexRead`]); building an index is a separate job. Each index family is a folder
//! with the same file names. Today there is `flat/` (exact search); ANN families join it and
//! are checked against it at a stated recall.

pub mod flat;

use arrow::array::BooleanArray;

use crate::distance::Scorer;
use crate::topk::TopK;

/// Searches one sealed segment.
pub trait VectorIndexRead: Send + Sync {
    /// Offers the segment's rows closest to `query` to `out`, considering only rows whose
    /// `allowed` value is true (all rows when `None`). Candidates carry `segment` as their
    /// segment number. Returns the number of rows compared with the query.
    ///
    /// There is deliberately no default implementation: a new index family must decide how it
    /// honours `allowed` (pre-filtering), since post-filtering would silently return fewer than
    /// k hits.
    fn search(&self, segment: u32, query: &[f32], scorer: &Scorer, allowed: Option<&BooleanArray>, out: &mut TopK) -> u64;
}
