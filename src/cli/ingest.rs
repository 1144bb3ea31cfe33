//! `grape ingest COLLECTION FILE…`: a batch ingest job. Every file is streamed to the gateway in
//! batches, each staged as new segments, and the whole job is committed at the end in one
//! manifest change: all rows of all files become visible together, or none do.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use grape_compute::ingest::encode_ipc;
use grape_proto::v1;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use super::client::Client;
use super::jobs::{follow, job_json};
use super::output::print_object;
use super::{IngestArgs, OutputFormat};
use crate::error::CliError;

/// Batches sent ahead of the gateway's progress answers.
const IN_FLIGHT: usize = 2;

/// Runs the ingest job, drawing a progress bar on stderr.
///
/// Files given as `s3://…` or `file://…` URLs are read by a compute node instead: the command
/// enqueues a server-side ingest job and follows it (or, with `--detach`, prints it and returns).
pub async fn run(client: &mut Client, format: OutputFormat, args: IngestArgs) -> Result<(), CliError> {
    let urls = args.files.iter().filter(|f| is_url(f)).count();
    if urls > 0 || args.detach {
        if urls != args.files.len() {
            return Err(CliError::Usage(
                "a server-side ingest (URLs, --detach) reads files already in object storage: give every file as s3://… or file://…".into(),
            ));
        }
        return run_server_side(client, format, args).await;
    }
    let started = Instant::now();
    let files = args.files.iter().map(|p| open_parquet(Path::new(p), args.batch_rows)).collect::<Result<Vec<_>, _>>()?;
    let total: u64 = files.iter().map(|f| f.rows).sum();
    let (tx, rx) = mpsc::channel(IN_FLIGHT + 1);
    let mut job = Job { tx, replies: client.ingest(ReceiverStream::new(rx)).await?.into_inner(), in_flight: 0, total };
    job.send(v1::IngestRequest { collection: args.collection.clone(), arrow_ipc: Vec::new(), commit: false }).await?;
    for file in files {
        let mut pending: Vec<RecordBatch> = Vec::new();
        for batch in file.reader {
            pending.push(batch.map_err(|e| CliError::Parquet { path: file.shown.clone(), source: e.into() })?);
            if pending.iter().map(|b| b.num_rows()).sum::<usize>() >= args.batch_rows {
                job.send_rows(&mut pending).await?;
            }
        }
        job.send_rows(&mut pending).await?;
    }
    job.send(v1::IngestRequest { commit: true, ..Default::default() }).await?;
    let done = job.finish().await?;
    eprintln!();
    let seconds = started.elapsed().as_secs_f64();
    let summary = json!({
        "collection": args.collection,
        "rows": done.rows_staged,
        "segments": done.segments_staged,
        "version": done.version,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "rows_per_second": (done.rows_staged as f64 / seconds.max(1e-9)).round(),
    });
    print_object(format, &summary);
    Ok(())
}

/// Whether an ingest argument names a file in object storage rather than a local path.
fn is_url(file: &str) -> bool {
    file.starts_with("s3://") || file.starts_with("file://")
}

/// Enqueues a server-side ingest job; follows it to its end unless `--detach`.
async fn run_server_side(client: &mut Client, format: OutputFormat, args: IngestArgs) -> Result<(), CliError> {
    let req = v1::SubmitIngestRequest { collection: args.collection.clone(), urls: args.files.clone(), max_attempts: 0 };
    let job = client.submit_ingest(req).await?.into_inner();
    if args.detach {
        print_object(format, &job_json(&job));
        return Ok(());
    }
    let done = follow(client, &[job.id], "files read").await?;
    for job in &done {
        print_object(format, &job_json(job));
    }
    Ok(())
}

/// One open Parquet input.
struct ParquetInput {
    shown: String,
    rows: u64,
    reader: ParquetRecordBatchReader,
}

/// Opens a Parquet file with its row count and a reader of batches of at most `batch_rows`.
fn open_parquet(path: &Path, batch_rows: usize) -> Result<ParquetInput, CliError> {
    let shown = path.display().to_string();
    let file = File::open(path).map_err(|source| CliError::File { path: shown.clone(), source })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|source| CliError::Parquet { path: shown.clone(), source })?;
    let rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
    let reader =
        builder.with_batch_size(batch_rows.clamp(1, 8192)).build().map_err(|source| CliError::Parquet { path: shown.clone(), source })?;
    Ok(ParquetInput { shown, rows, reader })
}

/// The client end of one `Ingest` stream.
///
/// Dropping it before [`Job::finish`] ends the stream without a commit, so an error on the
/// client side (an unreadable file) publishes nothing.
struct Job {
    tx: mpsc::Sender<v1::IngestRequest>,
    replies: Streaming<v1::IngestProgress>,
    /// Messages sent and not yet answered.
    in_flight: usize,
    /// Rows in all input files, for the progress bar.
    total: u64,
}

impl Job {
    /// Sends the pending batches as one message.
    async fn send_rows(&mut self, pending: &mut Vec<RecordBatch>) -> Result<(), CliError> {
        let Some(schema): Option<SchemaRef> = pending.first().map(|b| b.schema()) else { return Ok(()) };
        let batch = concat_batches(&schema, pending.iter())?;
        pending.clear();
        let ipc = encode_ipc(&schema, &[batch]).map_err(|e| CliError::Server(e.to_string()))?;
        self.send(v1::IngestRequest { arrow_ipc: ipc, ..Default::default() }).await
    }

    /// Sends one message, first waiting for answers while too many are in flight.
    async fn send(&mut self, message: v1::IngestRequest) -> Result<(), CliError> {
        while self.in_flight >= IN_FLIGHT {
            self.answer().await?;
        }
        if self.tx.send(message).await.is_err() {
            // The gateway closed the stream: its answer says why.
            self.answer().await?;
            return Err(CliError::Server("the gateway ended the ingest early".into()));
        }
        self.in_flight += 1;
        Ok(())
    }

    /// Waits for the next answer and draws the progress bar.
    async fn answer(&mut self) -> Result<v1::IngestProgress, CliError> {
        let reply = self.replies.message().await?.ok_or_else(|| CliError::Server("the gateway ended the ingest early".into()))?;
        self.in_flight = self.in_flight.saturating_sub(1);
        progress(reply.rows_staged, self.total);
        Ok(reply)
    }

    /// Waits until the commit is answered.
    async fn finish(mut self) -> Result<v1::IngestProgress, CliError> {
        loop {
            let reply = self.answer().await?;
            if reply.committed {
                return Ok(reply);
            }
        }
    }
}

/// Draws a one-line progress bar on stderr.
fn progress(done: u64, total: u64) {
    progress_bar(done, total, "rows staged");
}

/// Draws a one-line progress bar on stderr: `done` of `total` `units`.
pub fn progress_bar(done: u64, total: u64, units: &str) {
    let frac = if total == 0 { 1.0 } else { (done as f64 / total as f64).min(1.0) };
    let filled = (frac * 30.0).round() as usize;
    eprint!("\r[{}{}] {done}/{total} {units}", "#".repeat(filled), "-".repeat(30 - filled));
    let _ = std::io::stderr().flush();
}
