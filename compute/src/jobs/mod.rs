//! The job worker of a compute node: leases jobs from meta's queue, keeps the lease alive while
//! it works, and commits the job's output fenced by the attempt (see [`grape_meta::jobs`]).
//!
//! A node runs one job at a time. While it works, a heartbeat renews the lease every third of
//! its length and reports progress; when meta refuses a renewal (the lease ran out while the
//! node was stopped, or a user cancelled the job), the work is dropped on the spot. Even a
//! worker that never hears the refusal cannot publish anything: meta checks the attempt on the
//! commit itself.
//!
//! # Layout
//! - `mod.rs`: the worker loop, the lease and its heartbeat.
//! - `compact.rs`: compaction of one shard.
//! - `source_files.rs`: server-side ingest of files already in object storage.
//! - `build_index.rs`: the ANN index of one segment.

mod build_index;
mod compact;
mod source_files;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use grape_meta::jobs::{Job, JobFence, JobOutcome, JobSpec, Progress};
use grape_meta::{Catalog, Command, CommandResult};

pub use source_files::{expand_urls, glob_match};

use crate::error::ComputeError;
use crate::gateway::Gateway;
use crate::settings;

/// Lease length of a job attempt, unless [`settings::JOBS_LEASE_SECS`] says otherwise.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// How often an idle worker looks for a job when the catalog does not change.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// How a job's work ended.
enum Done {
    /// Its output was committed by a fenced command, which also marked the job succeeded.
    Committed,
    /// It committed nothing (GC, or nothing to do); the worker reports it succeeded.
    Report(String),
}

/// One leased attempt: what it is for, and the progress its heartbeat reports.
pub(crate) struct Attempt {
    /// The attempt, for fenced commits.
    pub fence: JobFence,
    /// Progress so far, sent with each renewal.
    progress: Mutex<Progress>,
    /// Pause between units of work ([`settings::JOBS_PAUSE_MS`]): a throttle on background work.
    pause: Duration,
}

impl Attempt {
    /// Records progress, sent with the next renewal.
    pub fn report(&self, done: u64, total: u64) {
        *self.progress.lock().unwrap_or_else(|e| e.into_inner()) = Progress { done, total };
    }

    /// The throttle between units of work.
    pub async fn pause(&self) {
        if !self.pause.is_zero() {
            tokio::time::sleep(self.pause).await;
        }
    }

    fn progress(&self) -> Progress {
        *self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether `catalog` has a job some worker may lease now.
fn has_leasable(catalog: &Catalog, now_ms: u64) -> bool {
    catalog.jobs.jobs.values().any(|j| j.leasable(now_ms))
}

impl Gateway {
    /// The lease length in force: the config setting, else [`DEFAULT_LEASE`].
    fn job_lease(&self) -> Duration {
        settings::seconds(&self.meta.applied_catalog(), settings::JOBS_LEASE_SECS).filter(|d| !d.is_zero()).unwrap_or(DEFAULT_LEASE)
    }

    /// Leases and runs jobs one at a time until `shutdown` resolves: the worker of a node.
    pub async fn run_job_worker(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut changes = self.meta.changes();
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = changes.changed() => {}
            }
            changes.borrow_and_update();
            if !has_leasable(&self.meta.applied_catalog(), grape_meta::jobs::now_ms()) {
                continue;
            }
            let lease = self.job_lease();
            let cmd = Command::LeaseJob { worker: self.node_id, lease_ms: lease.as_millis() as u64, now_ms: 0 };
            match self.meta.write(cmd).await {
                Ok(CommandResult::Job(Some(job))) => {
                    tokio::select! {
                        _ = &mut shutdown => return,
                        _ = self.run_job(*job, lease) => {}
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not lease a job; retrying"),
            }
        }
    }

    /// Runs one leased attempt to its end: committed, reported, failed, or dropped when its
    /// lease is lost.
    async fn run_job(&self, job: Job, lease: Duration) {
        let fence = JobFence { id: job.id, attempt: job.attempt, now_ms: 0 };
        let pause = settings::millis(&self.meta.applied_catalog(), settings::JOBS_PAUSE_MS).unwrap_or_default();
        let attempt = Attempt { fence, progress: Mutex::new(Progress::default()), pause };
        tracing::info!(job = job.id, attempt = job.attempt, kind = job.spec.kind(), "running job");
        let (kind, started) = (job.spec.kind(), std::time::Instant::now());
        let outcome = tokio::select! {
            lost = self.keep_lease(&attempt, lease) => {
                tracing::warn!(job = job.id, attempt = job.attempt, reason = %lost, "job attempt lost its lease; its work is dropped");
                crate::metrics::job_ended(kind, started, "lost");
                return;
            }
            done = self.work(&job.spec, &attempt) => done,
        };
        let outcome = match outcome {
            Ok(Done::Committed) => {
                tracing::info!(job = job.id, attempt = job.attempt, "job committed");
                crate::metrics::job_ended(kind, started, "committed");
                return;
            }
            Ok(Done::Report(summary)) => {
                crate::metrics::job_ended(kind, started, "succeeded");
                JobOutcome::Succeeded(summary)
            }
            Err(e) => {
                tracing::warn!(job = job.id, attempt = job.attempt, error = %e, "job attempt failed");
                crate::metrics::job_ended(kind, started, "failed");
                JobOutcome::Failed(e.to_string())
            }
        };
        match self.meta.write(Command::FinishJob { fence, outcome }).await {
            Ok(CommandResult::Applied { .. }) => {}
            Ok(other) => tracing::warn!(job = job.id, result = ?other, "meta refused the end of a job attempt"),
            Err(e) => tracing::warn!(job = job.id, error = %e, "could not report the end of a job attempt; its lease will run out"),
        }
    }

    /// Renews the lease every third of its length; returns why once meta refuses a renewal.
    async fn keep_lease(&self, attempt: &Attempt, lease: Duration) -> String {
        loop {
            tokio::time::sleep(lease / 3).await;
            let cmd = Command::RenewJob { fence: attempt.fence, lease_ms: lease.as_millis() as u64, progress: Some(attempt.progress()) };
            match self.meta.write(cmd).await {
                Ok(CommandResult::Applied { .. }) => {}
                Ok(CommandResult::Conflict(why)) | Ok(CommandResult::NotFound(why)) => return why,
                Ok(other) => return format!("unexpected answer to a renewal: {other:?}"),
                // Meta unreachable: keep trying; if the lease runs out meanwhile, the next
                // renewal is refused, and any commit is refused regardless.
                Err(e) => tracing::warn!(job = attempt.fence.id, error = %e, "could not renew a job lease; retrying"),
            }
        }
    }

    /// The work of a job of kind `spec`.
    async fn work(&self, spec: &JobSpec, attempt: &Attempt) -> Result<Done, ComputeError> {
        match spec {
            JobSpec::Compact { collection, shard } => self.compact_shard(collection, *shard, attempt).await,
            JobSpec::Ingest { collection, urls } => self.ingest_files(collection, urls, attempt).await,
            JobSpec::BuildIndex { collection, shard, segment, vector } => self.build_index(collection, *shard, segment, vector, attempt).await,
            JobSpec::Gc { grace_secs } => {
                let report = self.collect_garbage(Duration::from_secs(*grace_secs)).await?;
                Ok(Done::Report(format!("{} objects deleted, {} bytes freed", report.deleted.len(), report.bytes_freed)))
            }
        }
    }
}
