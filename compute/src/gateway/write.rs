//! Writes: conform rows, stage them as immutable segments (one per shard per batch), commit
//! every staged segment through meta in one command, then acknowledge.
//!
//! The order is what makes an acknowledged write survive any single crash: every segment
//! object is durable before the commit names it, and the commit is durable (a Raft majority)
//! before the client hears "ok". A crash or failure before the commit leaves at most orphan
//! objects for garbage collection, never a partly visible write.
//!
//! An [`IngestJob`] is that sequence with any number of staged batches: `Insert` is a job of
//! one batch, and the `Ingest` stream is a job of many, so a batch ingest of a hundred files
//! is published all at once or not at all.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use futures::future::try_join_all;
use futures::{Stream, StreamExt};
use grape_meta::jobs::JobFence;
use grape_meta::{Collection, Command};
use grape_proto::v1;
use grape_storage::format::SegmentMeta;
use tokio::sync::mpsc;
use tonic::Status;

use super::collections::{not_found, outcome};
use super::{Gateway, CATCH_UP_TIMEOUT};
use crate::error::ComputeError;
use crate::limits::RequestClass;
use crate::ingest::{conform, decode_ipc, keep_last_per_id, schema_from_rows, split_by_shard};

/// Rows and version of an acknowledged write.
#[derive(Debug, Clone, Copy)]
pub struct Inserted {
    /// Rows written.
    pub rows: u64,
    /// Collection version at which they are visible.
    pub version: u64,
}

/// A write in progress: segment objects staged in storage, not yet named by any manifest.
#[derive(Debug)]
pub struct IngestJob {
    /// The collection as it was when the job began; the commit is refused if it was dropped
    /// (and perhaps re-created) since.
    entry: Collection,
    /// The collection's schema, or the one taken from the first staged rows.
    schema: Option<SchemaRef>,
    /// Segments written so far.
    segments: Vec<SegmentMeta>,
    /// Rows staged so far.
    rows: u64,
    /// When the job began: staged objects must be committed well before garbage collection
    /// may take them for orphans.
    started: Instant,
    /// The queue job attempt this write is the output of (a server-side ingest): its commit
    /// is fenced by it.
    pub(crate) fence: Option<JobFence>,
}

impl IngestJob {
    /// Rows staged so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Segments staged so far.
    pub fn segments(&self) -> u64 {
        self.segments.len() as u64
    }
}

impl Gateway {
    /// Upserts the rows of an Arrow IPC stream into `collection`: a job of one batch. A row
    /// whose id exists replaces the old row at the commit's version.
    pub async fn insert(&self, collection: &str, ipc: &[u8]) -> Result<Inserted, ComputeError> {
        let mut job = self.begin_ingest(collection).await?;
        self.stage(&mut job, ipc).await?;
        self.commit_ingest(job).await
    }

    /// Starts a write job on `collection`.
    pub async fn begin_ingest(&self, collection: &str) -> Result<IngestJob, ComputeError> {
        let catalog = self.meta.catalog().await?;
        let entry = catalog.collections.get(collection).ok_or_else(|| not_found(collection))?.clone();
        let schema = entry.spec.schema.clone().map(Arc::new);
        Ok(IngestJob { entry, schema, segments: Vec::new(), rows: 0, started: Instant::now(), fence: None })
    }

    /// Conforms the rows of an Arrow IPC stream and writes them as one new segment per shard.
    /// Nothing becomes visible until [`Gateway::commit_ingest`].
    pub async fn stage(&self, job: &mut IngestJob, ipc: &[u8]) -> Result<(), ComputeError> {
        let (rows_schema, batches) = decode_ipc(ipc)?;
        self.stage_batches(job, &rows_schema, &batches).await
    }

    /// Conforms `batches` (of `rows_schema`) and writes them as one new segment per shard.
    /// Nothing becomes visible until [`Gateway::commit_ingest`].
    pub async fn stage_batches(&self, job: &mut IngestJob, rows_schema: &SchemaRef, batches: &[RecordBatch]) -> Result<(), ComputeError> {
        let spec = &job.entry.spec;
        let schema = match &job.schema {
            Some(s) => s.clone(),
            None => Arc::new(schema_from_rows(spec, rows_schema)?),
        };
        let conformed = batches.iter().map(|b| conform(spec, &schema, b)).collect::<Result<Vec<_>, _>>()?;
        // Ids are keys: the last row of an id in the request replaces the earlier ones, as the
        // new segment replaces older rows with the same id (see crate::liveness).
        let all = keep_last_per_id(&concat_batches(&schema, &conformed)?)?;
        job.schema = Some(schema);
        if all.num_rows() == 0 {
            return Ok(());
        }
        let dir = job.entry.storage_dir();
        let parts = split_by_shard(&all, spec.shards)?;
        let writes = parts.iter().map(|(shard, batch)| self.storage.write_segment(&dir, *shard, std::slice::from_ref(batch)));
        let segments = try_join_all(writes).await.map_err(|e| {
            e.add_context(format!("cannot write segments to {}; nothing was committed, the write can be retried", self.storage.url()))
        })?;
        job.segments.extend(segments);
        job.rows += all.num_rows() as u64;
        Ok(())
    }

    /// Publishes every segment the job staged in one manifest commit, and waits until this
    /// node has applied the new version (a later query here reads the write, waiting if need
    /// be until its segments are loaded).
    pub async fn commit_ingest(&self, job: IngestJob) -> Result<Inserted, ComputeError> {
        let name = job.entry.spec.name.clone();
        if job.segments.is_empty() {
            return Ok(Inserted { rows: 0, version: job.entry.version });
        }
        let max_age = self.gc_grace() / 2;
        if job.started.elapsed() > max_age {
            return Err(ComputeError::Unavailable(format!(
                "the ingest into \"{name}\" ran longer than {} s, half the garbage-collection grace period, so its staged \
                 segments may already be collected; nothing was committed, ingest in smaller jobs",
                max_age.as_secs()
            )));
        }
        if let (None, Some(schema)) = (&job.entry.spec.schema, &job.schema) {
            let cmd = Command::SetSchema { name: name.clone(), schema: schema.as_ref().clone() };
            outcome(self.meta.write(cmd).await?)?;
        }
        let cmd = Command::CommitSegments {
            collection: name.clone(),
            collection_id: job.entry.id,
            segments: job.segments,
            delete_logs: Vec::new(),
            job: job.fence,
        };
        let version = outcome(self.meta.write(cmd).await?)?;
        // Serve our own writes: the caller's next query on this node sees them.
        self.refresh().await;
        self.wait_for_version(&name, version, CATCH_UP_TIMEOUT).await?;
        Ok(Inserted { rows: job.rows, version })
    }

    /// Runs the `Ingest` stream: stages each message's rows, answers each with the progress so
    /// far, and commits when a message asks for it. A stream that ends or fails without asking
    /// commits nothing. Errors end the job and are sent as the stream's last item.
    pub async fn run_ingest_stream(
        &self,
        mut inbound: impl Stream<Item = Result<v1::IngestRequest, Status>> + Unpin,
        progress: mpsc::Sender<Result<v1::IngestProgress, Status>>,
    ) {
        // An ingest stream holds a write slot for its whole life; each message's staging is
        // bounded by the request deadline (the stream itself may run for as long as it sends).
        let result = async {
            let _slot = self.admission.admit(RequestClass::Write, &self.limits()).await?;
            self.ingest_stream_job(&mut inbound, &progress).await
        }
        .await;
        if let Err(e) = result {
            let _ = progress.send(Err(e.into())).await;
        }
    }

    async fn ingest_stream_job(
        &self,
        inbound: &mut (impl Stream<Item = Result<v1::IngestRequest, Status>> + Unpin),
        progress: &mpsc::Sender<Result<v1::IngestProgress, Status>>,
    ) -> Result<(), ComputeError> {
        let mut job: Option<IngestJob> = None;
        while let Some(message) = inbound.next().await {
            let message = message
                .map_err(|s| ComputeError::Unavailable(format!("the ingest stream broke: {}; nothing was committed", s.message())))?;
            let current = match &mut job {
                Some(j) => j,
                None => job.insert(self.begin_ingest(&message.collection).await?),
            };
            if !message.arrow_ipc.is_empty() {
                let timeout = self.limits().request_timeout();
                tokio::time::timeout(timeout, self.stage(current, &message.arrow_ipc)).await.map_err(|_| {
                    ComputeError::DeadlineExceeded(format!(
                        "staging one message took longer than {} s (limits/request_timeout_secs); nothing was committed",
                        timeout.as_secs()
                    ))
                })??;
            }
            let mut reply =
                v1::IngestProgress { rows_staged: current.rows(), segments_staged: current.segments(), committed: false, version: 0 };
            if message.commit {
                let Some(done) = job.take() else { break };
                reply.version = self.commit_ingest(done).await?.version;
                reply.committed = true;
                let _ = progress.send(Ok(reply)).await;
                return Ok(());
            }
            if progress.send(Ok(reply)).await.is_err() {
                break;
            }
        }
        let staged = job.as_ref().map_or(0, IngestJob::rows);
        tracing::info!(staged, "ingest stream ended without commit; nothing was committed");
        Ok(())
    }
}
