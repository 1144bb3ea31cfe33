//! A bound on joins that compare every row with every row.
//!
//! A join without an equality condition (`ON a.price + b.price > 1000`, a cross join) runs
//! as a nested loop over all pairs of rows, and DataFusion does that work inside polls that
//! do not yield: over 3.6 million rows the soak benchmark saw one hold its threads for
//! minutes, past any deadline. So before it runs, each such join's inputs are bounded by the
//! rows of the segments beneath them (filters ignored: an upper bound), and a join whose
//! pairs could pass `limits/max_join_pairs` is refused with `INVALID_ARGUMENT`.

use std::sync::Arc;

use datafusion::physical_plan::joins::{CrossJoinExec, NestedLoopJoinExec};
use datafusion::physical_plan::ExecutionPlan;

use crate::error::ComputeError;
use crate::router::SegmentScanExec;

/// Refuses `plan` if one of its nested-loop or cross joins could compare more than
/// `max_pairs` pairs of rows.
pub fn check_join_sizes(plan: &Arc<dyn ExecutionPlan>, max_pairs: u64) -> Result<(), ComputeError> {
    rows_bound(plan, max_pairs).map(drop)
}

/// The most rows `plan` can produce, checking its pairwise joins on the way.
fn rows_bound(plan: &Arc<dyn ExecutionPlan>, max_pairs: u64) -> Result<u64, ComputeError> {
    if let Some(scan) = plan.downcast_ref::<SegmentScanExec>() {
        return Ok(scan.rows_bound());
    }
    let children = plan.children();
    if children.is_empty() {
        // VALUES, an empty relation: DataFusion knows their size.
        let stats = plan.partition_statistics(None).ok();
        return Ok(stats.and_then(|s| s.num_rows.get_value().copied()).map_or(1, |n| n as u64));
    }
    let bounds = children.iter().map(|c| rows_bound(c, max_pairs)).collect::<Result<Vec<u64>, _>>()?;
    let pairwise = plan.downcast_ref::<NestedLoopJoinExec>().is_some() || plan.downcast_ref::<CrossJoinExec>().is_some();
    let product = bounds.iter().fold(1u64, |a, b| a.saturating_mul(*b));
    if pairwise && product > max_pairs {
        return Err(ComputeError::InvalidArgument(format!(
            "the query joins up to {} × {} rows without an equality condition, which compares every pair; at most {max_pairs} \
             pairs are allowed (limits/max_join_pairs): join on equal columns, or filter the inputs first",
            bounds.first().copied().unwrap_or(0),
            bounds.get(1).copied().unwrap_or(0)
        )));
    }
    // Any join produces at most the product of its inputs; anything else at most their sum.
    Ok(if plan.name().contains("Join") { product } else { bounds.iter().fold(0u64, |a, b| a.saturating_add(*b)) })
}
