//! The job queue: background work (compaction, server-side ingest, garbage collection) that
//! compute nodes lease from meta, as plain replicated data.
//!
//! A job goes `Pending → Running(worker, lease expiry, attempt) → Succeeded`, or on failure
//! `Failed` (retried after a backoff) and `Dead` after `max_attempts` attempts; `Cancelled` by
//! a user. Every change is a [`crate::Command`] applied in log order, so all members agree on
//! who holds a job. Time never comes from the applying member's clock: the leader stamps
//! `now_ms` into each job command as it proposes it (see [`crate::Command::stamp`]), which
//! keeps [`crate::apply::apply`] deterministic.
//!
//! # Exactly once
//! A worker's lease names the attempt it is for. A commit of the job's output carries a
//! [`JobFence`] (job id, attempt, and the leader's time), and is refused unless that attempt
//! still holds an unexpired lease; the commit that is accepted marks the job `Succeeded` in
//! the same log entry. A worker that died, hung past its lease or was cancelled therefore
//! cannot publish anything, and the attempt that does publish is the only one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Attempts a job gets before it is `Dead`, unless the enqueuer says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// Finished jobs (succeeded, dead, cancelled) kept for `grape jobs list`; older ones are
/// forgotten when new jobs are enqueued.
pub const FINISHED_JOBS_KEPT: usize = 1000;

/// First retry delay after a failure; doubled per attempt up to [`MAX_BACKOFF_MS`].
pub const BASE_BACKOFF_MS: u64 = 1000;

/// Longest retry delay.
pub const MAX_BACKOFF_MS: u64 = 60_000;

/// This machine's clock in ms since the Unix epoch (0 if it is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// What a job does, with its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobSpec {
    /// Merge the small segments of one shard and leave dead rows out.
    Compact {
        /// Collection name.
        collection: String,
        /// The shard.
        shard: u32,
    },
    /// Read files already in object storage (`s3://…`, `file://…`, globs in the file name)
    /// and upsert their rows in one commit.
    Ingest {
        /// Collection name.
        collection: String,
        /// The files, as given.
        urls: Vec<String>,
    },
    /// Build the ANN index of one vector field of one segment (with the field's quantization)
    /// and attach it to the segment's manifest entry.
    BuildIndex {
        /// Collection name.
        collection: String,
        /// The segment's shard.
        shard: u32,
        /// The segment's id.
        segment: String,
        /// The vector field to index; empty for `vector`, the one column of a collection
        /// without named fields (so its jobs read as they did before named fields).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        vector: String,
    },
    /// Delete unreferenced objects older than a grace period; one at a time cluster-wide.
    Gc {
        /// Objects younger than this are kept.
        grace_secs: u64,
    },
}

impl JobSpec {
    /// Every kind's name, as [`JobSpec::kind`] gives them.
    pub const KINDS: [&'static str; 4] = ["compact", "ingest", "build_index", "gc"];

    /// The kind's name: `compact`, `ingest`, `build_index` or `gc`.
    pub fn kind(&self) -> &'static str {
        match self {
            JobSpec::Compact { .. } => "compact",
            JobSpec::Ingest { .. } => "ingest",
            JobSpec::BuildIndex { .. } => "build_index",
            JobSpec::Gc { .. } => "gc",
        }
    }

    /// The collection the job works on, if any.
    pub fn collection(&self) -> Option<&str> {
        match self {
            JobSpec::Compact { collection, .. } | JobSpec::Ingest { collection, .. } | JobSpec::BuildIndex { collection, .. } => {
                Some(collection)
            }
            JobSpec::Gc { .. } => None,
        }
    }

    /// Whether an active job with spec `other` makes enqueuing this one pointless: one
    /// compaction per shard, one build per segment and field and one GC in the cluster at a time.
    fn same_work(&self, other: &JobSpec) -> bool {
        match (self, other) {
            (JobSpec::Compact { .. }, JobSpec::Compact { .. }) | (JobSpec::BuildIndex { .. }, JobSpec::BuildIndex { .. }) => self == other,
            (JobSpec::Gc { .. }, JobSpec::Gc { .. }) => true,
            _ => false,
        }
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a worker.
    Pending,
    /// Leased by `worker` until `lease_expires_ms` (leader time, ms since the Unix epoch).
    Running {
        /// The compute node running it.
        worker: u64,
        /// When the lease runs out unless renewed.
        lease_expires_ms: u64,
    },
    /// The last attempt failed; it is leased again from `not_before_ms` on.
    Failed,
    /// Done; its output is committed.
    Succeeded,
    /// Failed `max_attempts` times; `grape jobs retry` revives it.
    Dead,
    /// Stopped by a user; its output, if any, is never committed.
    Cancelled,
}

impl JobState {
    /// The state's name as the CLI shows and filters it.
    pub fn name(&self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running { .. } => "running",
            JobState::Failed => "failed",
            JobState::Succeeded => "succeeded",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Every state name, in lifecycle order.
    pub const NAMES: [&'static str; 6] = ["pending", "running", "failed", "succeeded", "dead", "cancelled"];

    /// Whether the job may still run (pending, running, or failed awaiting a retry).
    pub fn is_active(&self) -> bool {
        matches!(self, JobState::Pending | JobState::Running { .. } | JobState::Failed)
    }
}

/// Units of work done out of the total, as the worker last reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Units done.
    pub done: u64,
    /// Units in all (0 while unknown).
    pub total: u64,
}

/// One job of the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Unique id, never reused.
    pub id: u64,
    /// What it does.
    pub spec: JobSpec,
    /// Where it is.
    pub state: JobState,
    /// Attempts started so far (the running attempt's number while running).
    pub attempt: u32,
    /// Attempts allowed before it is dead.
    pub max_attempts: u32,
    /// The running or last attempt's progress.
    pub progress: Progress,
    /// When it was enqueued (leader time, ms since the Unix epoch).
    pub created_ms: u64,
    /// When its state last changed.
    pub updated_ms: u64,
    /// A failed job is not leased again before this time (the backoff).
    pub not_before_ms: u64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// What the successful attempt did, in a few words.
    pub summary: Option<String>,
}

/// The attempt a worker acts for, checked by meta on every command it sends for the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFence {
    /// The job.
    pub id: u64,
    /// The attempt the worker's lease is for.
    pub attempt: u32,
    /// The leader's time when it proposed the command (stamped; workers send 0).
    #[serde(default)]
    pub now_ms: u64,
}

/// How an attempt ended, as its worker reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobOutcome {
    /// It finished; what it did.
    Succeeded(String),
    /// It failed; why.
    Failed(String),
}

/// All jobs, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobQueue {
    /// Jobs by id (finished ones are kept up to [`FINISHED_JOBS_KEPT`]).
    pub jobs: BTreeMap<u64, Job>,
    /// Id of the next job enqueued.
    pub next_id: u64,
}

impl JobQueue {
    /// Adds a job, unless an active one already does the same work (see
    /// [`JobSpec::same_work`]), which is returned instead. With `min_interval_ms`, a GC job is
    /// also not enqueued within that time of the last one's creation.
    pub fn enqueue(&mut self, spec: &JobSpec, max_attempts: u32, now_ms: u64, min_interval_ms: u64) -> Job {
        let same = |j: &&Job| spec.same_work(&j.spec);
        if let Some(active) = self.jobs.values().filter(same).find(|j| j.state.is_active()) {
            return active.clone();
        }
        if min_interval_ms > 0 {
            if let Some(last) = self.jobs.values().rev().find(same) {
                if now_ms < last.created_ms.saturating_add(min_interval_ms) {
                    return last.clone();
                }
            }
        }
        self.next_id = self.next_id.max(1);
        let id = self.next_id;
        self.next_id += 1;
        let job = Job {
            id,
            spec: spec.clone(),
            state: JobState::Pending,
            attempt: 0,
            max_attempts: max_attempts.max(1),
            progress: Progress::default(),
            created_ms: now_ms,
            updated_ms: now_ms,
            not_before_ms: 0,
            last_error: None,
            summary: None,
        };
        self.jobs.insert(id, job.clone());
        self.forget_old_finished();
        job
    }

    /// Leases the oldest job that may run now to `worker` for `lease_ms`, starting its next
    /// attempt; `None` if no job may run.
    pub fn lease(&mut self, worker: u64, lease_ms: u64, now_ms: u64) -> Option<Job> {
        let job = self.jobs.values_mut().find(|j| j.leasable(now_ms))?;
        job.attempt += 1;
        job.state = JobState::Running { worker, lease_expires_ms: now_ms.saturating_add(lease_ms) };
        job.progress = Progress::default();
        job.updated_ms = now_ms;
        Some(job.clone())
    }

    /// Checks that `fence` names the attempt that holds the job's unexpired lease.
    pub fn check(&self, fence: &JobFence) -> Result<&Job, String> {
        let job = self.jobs.get(&fence.id).ok_or_else(|| format!("job {} does not exist", fence.id))?;
        match &job.state {
            JobState::Running { lease_expires_ms, .. } if job.attempt == fence.attempt => {
                if fence.now_ms > *lease_expires_ms {
                    Err(format!("the lease of job {} attempt {} expired", fence.id, fence.attempt))
                } else {
                    Ok(job)
                }
            }
            JobState::Running { .. } => {
                Err(format!("job {} is running attempt {}; attempt {} lost its lease", fence.id, job.attempt, fence.attempt))
            }
            other => Err(format!("job {} is {}, not running attempt {}", fence.id, other.name(), fence.attempt)),
        }
    }

    /// Extends the lease of the fenced attempt and records its progress.
    pub fn renew(&mut self, fence: &JobFence, lease_ms: u64, progress: Option<Progress>) -> Result<(), String> {
        self.check(fence)?;
        let job = self.jobs.get_mut(&fence.id).ok_or_else(|| format!("job {} does not exist", fence.id))?;
        if let JobState::Running { lease_expires_ms, .. } = &mut job.state {
            *lease_expires_ms = fence.now_ms.saturating_add(lease_ms);
        }
        if let Some(p) = progress {
            job.progress = p;
        }
        Ok(())
    }

    /// Ends the fenced attempt: succeeded, or failed (retried after a backoff, or dead).
    pub fn finish(&mut self, fence: &JobFence, outcome: &JobOutcome) -> Result<(), String> {
        self.check(fence)?;
        let job = self.jobs.get_mut(&fence.id).ok_or_else(|| format!("job {} does not exist", fence.id))?;
        match outcome {
            JobOutcome::Succeeded(summary) => job.succeed(summary, fence.now_ms),
            JobOutcome::Failed(error) => job.fail(error, fence.now_ms),
        }
        Ok(())
    }

    /// Marks the fenced attempt succeeded (its output was committed in the same command).
    pub fn succeed(&mut self, fence: &JobFence, summary: &str) {
        if let Some(job) = self.jobs.get_mut(&fence.id) {
            job.succeed(summary, fence.now_ms);
        }
    }

    /// Ids of running jobs whose lease ran out by `now_ms`.
    pub fn expired(&self, now_ms: u64) -> Vec<u64> {
        self.jobs
            .values()
            .filter(|j| matches!(j.state, JobState::Running { lease_expires_ms, .. } if lease_expires_ms < now_ms))
            .map(|j| j.id)
            .collect()
    }

    /// Fails every attempt whose lease ran out by `now_ms` (to be retried or dead); returns
    /// how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let expired = self.expired(now_ms);
        for id in &expired {
            if let Some(job) = self.jobs.get_mut(id) {
                let worker = match job.state {
                    JobState::Running { worker, .. } => worker,
                    _ => continue,
                };
                job.fail(&format!("attempt {} lost its lease: worker {worker} stopped renewing it", job.attempt), now_ms);
            }
        }
        expired.len()
    }

    /// Makes a dead, failed or cancelled job pending again with a fresh set of attempts.
    pub fn retry(&mut self, id: u64, now_ms: u64) -> Result<Job, String> {
        let job = self.jobs.get_mut(&id).ok_or_else(|| format!("job {id} does not exist"))?;
        match job.state {
            JobState::Dead | JobState::Failed | JobState::Cancelled => {
                job.max_attempts = job.attempt + job.max_attempts.max(1);
                job.state = JobState::Pending;
                job.not_before_ms = 0;
                job.updated_ms = now_ms;
                Ok(job.clone())
            }
            ref other => Err(format!("job {id} is {}; only a dead, failed or cancelled job can be retried", other.name())),
        }
    }

    /// Cancels a job that has not finished; a running attempt can then commit nothing.
    pub fn cancel(&mut self, id: u64, now_ms: u64) -> Result<Job, String> {
        let job = self.jobs.get_mut(&id).ok_or_else(|| format!("job {id} does not exist"))?;
        if !job.state.is_active() {
            return Err(format!("job {id} is {}; only a pending, running or failed job can be cancelled", job.state.name()));
        }
        job.state = JobState::Cancelled;
        job.updated_ms = now_ms;
        Ok(job.clone())
    }

    /// Jobs per state name.
    pub fn depth(&self) -> BTreeMap<&'static str, u64> {
        let mut depth: BTreeMap<&'static str, u64> = JobState::NAMES.iter().map(|n| (*n, 0)).collect();
        for job in self.jobs.values() {
            *depth.entry(job.state.name()).or_default() += 1;
        }
        depth
    }

    fn forget_old_finished(&mut self) {
        let finished: Vec<u64> = self.jobs.values().filter(|j| !j.state.is_active()).map(|j| j.id).collect();
        if finished.len() > FINISHED_JOBS_KEPT {
            for id in &finished[..finished.len() - FINISHED_JOBS_KEPT] {
                self.jobs.remove(id);
            }
        }
    }
}

impl Job {
    /// Whether a worker may lease the job at `now_ms`: pending, or failed and past its backoff.
    pub fn leasable(&self, now_ms: u64) -> bool {
        match self.state {
            JobState::Pending => true,
            JobState::Failed => self.not_before_ms <= now_ms,
            _ => false,
        }
    }

    fn succeed(&mut self, summary: &str, now_ms: u64) {
        self.state = JobState::Succeeded;
        self.summary = Some(summary.to_string());
        if self.progress.total > 0 {
            self.progress.done = self.progress.total;
        }
        self.updated_ms = now_ms;
    }

    fn fail(&mut self, error: &str, now_ms: u64) {
        self.last_error = Some(error.to_string());
        self.updated_ms = now_ms;
        if self.attempt >= self.max_attempts {
            self.state = JobState::Dead;
        } else {
            self.state = JobState::Failed;
            let backoff = BASE_BACKOFF_MS.saturating_mul(1 << self.attempt.saturating_sub(1).min(16)).min(MAX_BACKOFF_MS);
            self.not_before_ms = now_ms.saturating_add(backoff);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compact(shard: u32) -> JobSpec {
        JobSpec::Compact { collection: "c".into(), shard }
    }

    fn fence(job: &Job, now_ms: u64) -> JobFence {
        JobFence { id: job.id, attempt: job.attempt, now_ms }
    }

    #[test]
    fn one_active_job_per_shard_and_gc_spaced_out() {
        let mut q = JobQueue::default();
        let a = q.enqueue(&compact(0), 3, 10, 0);
        assert_eq!(a.id, 1);
        assert_eq!(q.enqueue(&compact(0), 3, 11, 0).id, 1, "the same shard's active compaction is returned");
        assert_eq!(q.enqueue(&compact(1), 3, 12, 0).id, 2);
        let gc = JobSpec::Gc { grace_secs: 60 };
        let g = q.enqueue(&gc, 1, 100, 1000);
        let leased = q.lease(7, 50, 100).unwrap();
        assert_eq!(leased.id, 1, "oldest first");
        q.cancel(g.id, 101).unwrap();
        assert_eq!(q.enqueue(&gc, 1, 500, 1000).id, g.id, "not within the interval of the last");
        assert_ne!(q.enqueue(&gc, 1, 1200, 1000).id, g.id);
    }

    #[test]
    fn lease_renew_and_fencing() {
        let mut q = JobQueue::default();
        q.enqueue(&compact(0), 3, 0, 0);
        let job = q.lease(1, 100, 1000).unwrap();
        assert_eq!((job.attempt, &job.state), (1, &JobState::Running { worker: 1, lease_expires_ms: 1100 }));
        assert!(q.lease(2, 100, 1000).is_none(), "a running job is not leased twice");
        q.renew(&fence(&job, 1050), 100, Some(Progress { done: 1, total: 4 })).unwrap();
        assert_eq!(q.jobs[&job.id].progress, Progress { done: 1, total: 4 });
        assert!(q.check(&fence(&job, 1151)).is_err(), "past the renewed lease");
        assert_eq!(q.expire(1151), 1);
        assert_eq!(q.jobs[&job.id].state, JobState::Failed);
        assert!(q.lease(2, 100, 1200).is_none(), "backoff");
        let second = q.lease(2, 100, 3000).unwrap();
        assert_eq!(second.attempt, 2);
        let stale = q.check(&fence(&job, 3001)).unwrap_err();
        assert!(stale.contains("attempt 1 lost its lease"), "{stale}");
        q.finish(&fence(&second, 3002), &JobOutcome::Succeeded("ok".into())).unwrap();
        assert_eq!(q.jobs[&job.id].state, JobState::Succeeded);
        assert!(q.finish(&fence(&second, 3003), &JobOutcome::Failed("late".into())).is_err(), "finished once");
    }

    #[test]
    fn dead_after_max_attempts_then_retry_and_cancel() {
        let mut q = JobQueue::default();
        let id = q.enqueue(&JobSpec::Gc { grace_secs: 1 }, 2, 0, 0).id;
        for attempt in 1..=2 {
            let job = q.lease(1, 10, 100_000 * attempt).unwrap();
            q.finish(&fence(&job, 100_000 * attempt + 1), &JobOutcome::Failed("boom".into())).unwrap();
        }
        assert_eq!(q.jobs[&id].state, JobState::Dead);
        assert_eq!(q.jobs[&id].last_error.as_deref(), Some("boom"));
        assert!(q.cancel(id, 1).is_err());
        let revived = q.retry(id, 1).unwrap();
        assert_eq!((revived.state, revived.max_attempts), (JobState::Pending, 4));
        q.cancel(id, 2).unwrap();
        assert!(q.lease(1, 10, 10_000_000).is_none(), "a cancelled job is not leased");
        assert!(q.retry(99, 1).is_err());
        assert_eq!(q.depth()["cancelled"], 1);
    }

    #[test]
    fn finished_jobs_are_forgotten_beyond_the_limit() {
        let mut q = JobQueue::default();
        for i in 0..(FINISHED_JOBS_KEPT as u64 + 5) {
            let id = q.enqueue(&JobSpec::Ingest { collection: "c".into(), urls: vec![] }, 1, i, 0).id;
            q.cancel(id, i).unwrap();
        }
        q.enqueue(&compact(0), 1, 0, 0);
        assert_eq!(q.jobs.len(), FINISHED_JOBS_KEPT + 1);
    }
}
