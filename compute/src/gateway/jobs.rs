//! The job queue as the public API shows it: enqueue a compaction or a server-side ingest,
//! list and show jobs, retry a dead one, cancel one. The work itself is done by whichever
//! node's worker leases the job (see [`crate::jobs`]).

use std::time::Duration;

use grape_meta::jobs::{Job, JobSpec, JobState, DEFAULT_MAX_ATTEMPTS};
use grape_meta::{Command, CommandResult};
use grape_proto::v1;

use super::collections::{not_found, outcome};
use super::Gateway;
use crate::error::ComputeError;
use crate::jobs::expand_urls;
use crate::settings;

/// Jobs listed when the request names no limit.
const DEFAULT_LIST_LIMIT: usize = 100;

/// Most URLs one ingest job may name (each may be a glob).
pub const MAX_INGEST_URLS: usize = 10_000;

/// The API form of a job.
pub fn job_to_proto(job: &Job) -> v1::Job {
    let (worker, lease_expires_ms) = match job.state {
        JobState::Running { worker, lease_expires_ms } => (worker, lease_expires_ms),
        _ => (0, 0),
    };
    let params = match &job.spec {
        JobSpec::Compact { shard, .. } => serde_json::json!({ "shard": shard }),
        JobSpec::Ingest { urls, .. } => serde_json::json!({ "urls": urls }),
        JobSpec::BuildIndex { shard, segment, vector, .. } if vector.is_empty() => serde_json::json!({ "shard": shard, "segment": segment }),
        JobSpec::BuildIndex { shard, segment, vector, .. } => serde_json::json!({ "shard": shard, "segment": segment, "vector": vector }),
        JobSpec::Gc { grace_secs } => serde_json::json!({ "grace_secs": grace_secs }),
    };
    v1::Job {
        id: job.id,
        kind: job.spec.kind().to_string(),
        state: job.state.name().to_string(),
        collection: job.spec.collection().unwrap_or_default().to_string(),
        params_json: params.to_string(),
        attempt: job.attempt,
        max_attempts: job.max_attempts,
        worker,
        lease_expires_ms,
        progress_done: job.progress.done,
        progress_total: job.progress.total,
        created_ms: job.created_ms,
        updated_ms: job.updated_ms,
        not_before_ms: job.not_before_ms,
        last_error: job.last_error.clone().unwrap_or_default(),
        summary: job.summary.clone().unwrap_or_default(),
    }
}

/// The job a job command returned, or the error for its refusal.
fn job_of(result: CommandResult) -> Result<Job, ComputeError> {
    match result {
        CommandResult::Job(Some(job)) => Ok(*job),
        CommandResult::Job(None) => Err(ComputeError::Internal("meta returned no job".into())),
        other => outcome(other).and_then(|_| Err(ComputeError::Internal("meta returned no job".into()))),
    }
}

impl Gateway {
    /// Enqueues `spec` (or finds the active job doing the same work).
    async fn enqueue(&self, spec: JobSpec, max_attempts: u32, min_interval: Duration) -> Result<Job, ComputeError> {
        let max_attempts = if max_attempts == 0 { DEFAULT_MAX_ATTEMPTS } else { max_attempts };
        let cmd = Command::EnqueueJob { spec, max_attempts, min_interval_ms: min_interval.as_millis() as u64, now_ms: 0 };
        job_of(self.meta.write(cmd).await?)
    }

    /// Enqueues a compaction of one shard of a collection, or of each of its shards.
    pub async fn compact(&self, req: v1::CompactRequest) -> Result<v1::JobsResponse, ComputeError> {
        let catalog = self.meta.catalog().await?;
        let collection = catalog.collections.get(&req.collection).ok_or_else(|| not_found(&req.collection))?;
        let shards: Vec<u32> = match req.shard {
            Some(shard) if shard >= collection.spec.shards => {
                return Err(ComputeError::InvalidArgument(format!(
                    "collection \"{}\" has {} shards, not shard {shard}",
                    req.collection, collection.spec.shards
                )))
            }
            Some(shard) => vec![shard],
            None => (0..collection.spec.shards).collect(),
        };
        let mut jobs = Vec::new();
        for shard in shards {
            let spec = JobSpec::Compact { collection: req.collection.clone(), shard };
            jobs.push(job_to_proto(&self.enqueue(spec, 0, Duration::ZERO).await?));
        }
        Ok(v1::JobsResponse { jobs })
    }

    /// Enqueues a server-side ingest. The URLs are checked (and globs expanded) here, so a
    /// typo is refused now rather than failing in the background.
    pub async fn submit_ingest(&self, req: v1::SubmitIngestRequest) -> Result<v1::Job, ComputeError> {
        if req.urls.len() > MAX_INGEST_URLS {
            return Err(ComputeError::InvalidArgument(format!("{} URLs given; at most {MAX_INGEST_URLS}", req.urls.len())));
        }
        if !self.meta.catalog().await?.collections.contains_key(&req.collection) {
            return Err(not_found(&req.collection));
        }
        expand_urls(&req.urls, self.storage.options()).await?;
        let spec = JobSpec::Ingest { collection: req.collection, urls: req.urls };
        Ok(job_to_proto(&self.enqueue(spec, req.max_attempts, Duration::ZERO).await?))
    }

    /// Jobs, newest first, of one state if asked.
    pub async fn list_jobs(&self, req: v1::ListJobsRequest) -> Result<v1::JobsResponse, ComputeError> {
        let state = req.state.trim().to_ascii_lowercase();
        if !state.is_empty() && !JobState::NAMES.contains(&state.as_str()) {
            return Err(ComputeError::InvalidArgument(format!(
                "unknown job state \"{}\"; use one of {}",
                req.state,
                JobState::NAMES.join(", ")
            )));
        }
        let limit = if req.limit == 0 { DEFAULT_LIST_LIMIT } else { req.limit as usize };
        let catalog = self.meta.catalog().await?;
        let jobs = catalog
            .jobs
            .jobs
            .values()
            .rev()
            .filter(|j| state.is_empty() || j.state.name() == state)
            .take(limit)
            .map(job_to_proto)
            .collect();
        Ok(v1::JobsResponse { jobs })
    }

    /// One job.
    pub async fn get_job(&self, id: u64) -> Result<v1::Job, ComputeError> {
        let catalog = self.meta.catalog().await?;
        let job = catalog.jobs.jobs.get(&id).ok_or_else(|| ComputeError::NotFound(format!("job {id} does not exist")))?;
        Ok(job_to_proto(job))
    }

    /// Revives a dead, failed or cancelled job.
    pub async fn retry_job(&self, id: u64) -> Result<v1::Job, ComputeError> {
        Ok(job_to_proto(&job_of(self.meta.write(Command::RetryJob { id, now_ms: 0 }).await?)?))
    }

    /// Cancels a job that has not finished.
    pub async fn cancel_job(&self, id: u64) -> Result<v1::Job, ComputeError> {
        Ok(job_to_proto(&job_of(self.meta.write(Command::CancelJob { id, now_ms: 0 }).await?)?))
    }

    /// Enqueues a garbage collection every `interval` (or the config setting
    /// [`settings::GC_INTERVAL_SECS`]; 0 pauses) until `shutdown` resolves. Every node does
    /// this; the queue keeps one GC job at a time and none within the interval of the last, so
    /// the cluster collects once per interval whichever nodes are up.
    pub async fn run_gc_job(self: std::sync::Arc<Self>, interval: Duration, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let every = settings::seconds(&self.meta.applied_catalog(), settings::GC_INTERVAL_SECS).unwrap_or(interval);
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(if every.is_zero() { Duration::from_secs(1) } else { every }) => {
                    if every.is_zero() {
                        continue;
                    }
                    let spec = JobSpec::Gc { grace_secs: self.gc_grace().as_secs() };
                    // The interval less a little, so clock jitter never skips a whole interval.
                    if let Err(e) = self.enqueue(spec, 1, every.mul_f64(0.9)).await {
                        tracing::warn!(error = %e, "could not enqueue garbage collection; retrying at the next interval");
                    }
                }
            }
        }
    }
}
