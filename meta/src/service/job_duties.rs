//! The leader's share of the job queue: attempts whose lease ran out are failed (and so leased
//! again, or dead), and the compactions and index builds the policies find due are enqueued. Both are logged
//! decisions, taken only while this member leads.

use std::sync::Arc;
use std::time::Duration;

use crate::command::Command;
use crate::{compaction_policy, index_policy};
use crate::jobs::{now_ms, DEFAULT_MAX_ATTEMPTS};
use crate::node::MetaNode;

/// How often the leader looks for expired leases when nothing changes.
pub const JOB_TICK: Duration = Duration::from_millis(500);

/// Pause after a catalog change before looking, so that a burst of commits is looked at once.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// While this member leads, keeps the job queue moving; runs until `shutdown` resolves.
pub async fn watch_jobs(node: Arc<MetaNode>, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut changes = node.watch();
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(JOB_TICK) => {}
            _ = changes.changed() => tokio::time::sleep(DEBOUNCE).await,
        }
        changes.borrow_and_update();
        if node.assume_leader().is_ok() {
            run_job_duties(&node).await;
        }
    }
}

/// One pass: expire leases that ran out, enqueue due compactions.
async fn run_job_duties(node: &MetaNode) {
    let catalog = node.catalog_snapshot();
    let now = now_ms();
    let expired = catalog.jobs.expired(now);
    if !expired.is_empty() {
        tracing::info!(jobs = ?expired, "job leases expired; the jobs will be leased again");
        if let Err(e) = node.write(Command::ExpireLeases { now_ms: 0 }).await {
            tracing::warn!(error = %e, "could not expire job leases; retrying");
        }
    }
    let compactions = compaction_policy::due(&catalog, now).into_iter().map(|s| (s, compaction_policy::AUTO_INTERVAL_MS));
    let builds = index_policy::due(&catalog, now).into_iter().map(|s| (s, 0));
    for (spec, min_interval_ms) in compactions.chain(builds) {
        tracing::info!(?spec, "enqueuing a job the policy finds due");
        let cmd = Command::EnqueueJob { spec, max_attempts: DEFAULT_MAX_ATTEMPTS, min_interval_ms, now_ms: 0 };
        if let Err(e) = node.write(cmd).await {
            tracing::warn!(error = %e, "could not enqueue a job; retrying");
        }
    }
}
