//! `grape ingest COLLECTION FILE…`: streams Parquet files into a collection in batches.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use grape_compute::ingest::encode_ipc;
use grape_proto::v1;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;

use super::client::Client;
use super::output::print_object;
use super::{IngestArgs, OutputFormat};
use crate::error::CliError;

/// Ingests every file, one insert request per `batch_rows` rows, printing progress to stderr.
pub async fn run(client: &mut Client, format: OutputFormat, args: IngestArgs) -> Result<(), CliError> {
    let started = Instant::now();
    let (mut rows, mut version) = (0u64, 0u64);
    for path in &args.files {
        let (total, reader) = open_parquet(path)?;
        let shown = path.display().to_string();
        let mut done = 0u64;
        let mut pending: Vec<RecordBatch> = Vec::new();
        let mut schema: Option<SchemaRef> = None;
        for batch in reader {
            let batch = batch.map_err(|e| CliError::Parquet { path: shown.clone(), source: e.into() })?;
            schema.get_or_insert_with(|| batch.schema());
            pending.push(batch);
            if pending.iter().map(|b| b.num_rows()).sum::<usize>() >= args.batch_rows {
                let (n, v) = send(client, &args.collection, schema.as_ref(), &mut pending).await?;
                done += n;
                version = v;
                progress(&shown, done, total);
            }
        }
        let (n, v) = send(client, &args.collection, schema.as_ref(), &mut pending).await?;
        done += n;
        version = version.max(v);
        progress(&shown, done, total);
        eprintln!();
        rows += done;
    }
    let seconds = started.elapsed().as_secs_f64();
    let summary = json!({
        "collection": args.collection,
        "rows": rows,
        "version": version,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "rows_per_second": (rows as f64 / seconds.max(1e-9)).round(),
    });
    print_object(format, &summary);
    Ok(())
}

type BatchReader = parquet::arrow::arrow_reader::ParquetRecordBatchReader;

/// Opens a Parquet file, returning its row count and a batch reader.
fn open_parquet(path: &Path) -> Result<(u64, BatchReader), CliError> {
    let shown = path.display().to_string();
    let file = File::open(path).map_err(|source| CliError::File { path: shown.clone(), source })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|source| CliError::Parquet { path: shown.clone(), source })?;
    let total = builder.metadata().file_metadata().num_rows().max(0) as u64;
    let reader = builder.with_batch_size(8192).build().map_err(|source| CliError::Parquet { path: shown, source })?;
    Ok((total, reader))
}

/// Sends the pending batches as one insert; returns rows written and the new version.
async fn send(
    client: &mut Client,
    collection: &str,
    schema: Option<&SchemaRef>,
    pending: &mut Vec<RecordBatch>,
) -> Result<(u64, u64), CliError> {
    let Some(schema) = schema else { return Ok((0, 0)) };
    if pending.is_empty() {
        return Ok((0, 0));
    }
    let batch = concat_batches(schema, pending.iter())?;
    pending.clear();
    let ipc = encode_ipc(schema, &[batch]).map_err(|e| CliError::Server(e.to_string()))?;
    let reply = client.insert(v1::InsertRequest { collection: collection.to_string(), arrow_ipc: ipc }).await?.into_inner();
    Ok((reply.rows, reply.version))
}

/// Draws a one-line progress bar on stderr.
fn progress(file: &str, done: u64, total: u64) {
    let frac = if total == 0 { 1.0 } else { (done as f64 / total as f64).min(1.0) };
    let filled = (frac * 30.0).round() as usize;
    eprint!("\r{file} [{}{}] {done}/{total} rows", "#".repeat(filled), "-".repeat(30 - filled));
    let _ = std::io::stderr().flush();
}
