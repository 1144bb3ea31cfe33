//! `grape search`, `grape sql`, `grape delete`, `grape get` and `grape gc`.

use arrow::array::RecordBatch;
use grape_compute::ingest::decode_ipc;
use grape_proto::v1;
use serde_json::json;

use super::client::Client;
use super::output::{print_object, print_rows};
use super::{DeleteArgs, GetArgs, OutputFormat, SearchArgs, SqlArgs};
use crate::error::CliError;

/// Decodes the Arrow IPC rows of a reply.
fn rows(ipc: &[u8]) -> Result<Vec<RecordBatch>, CliError> {
    let (_, batches) = decode_ipc(ipc).map_err(|e| CliError::Server(format!("server sent unreadable rows: {e}")))?;
    Ok(batches)
}

/// Parses `--vector` as a JSON array of numbers.
pub fn parse_vector(text: &str) -> Result<Vec<f32>, CliError> {
    serde_json::from_str::<Vec<f32>>(text)
        .map_err(|e| CliError::Usage(format!("--vector must be a JSON array of numbers, e.g. [0.1, 0.2]: {e}")))
}

/// Runs a search and prints its hits.
pub async fn search(client: &mut Client, format: OutputFormat, args: SearchArgs) -> Result<(), CliError> {
    let request = v1::SearchRequest {
        collection: args.collection,
        vector: parse_vector(&args.vector)?,
        k: args.k,
        filter: args.filter.unwrap_or_default(),
        min_version: args.min_version,
        include_vectors: false,
        allow_partial: args.allow_partial,
        ef: args.ef,
        exact: args.exact,
        oversampling: args.oversampling,
        vector_name: args.using,
    };
    let reply = client.search(request).await?.into_inner();
    if !reply.missing_segments.is_empty() {
        eprintln!(
            "warning: partial answer: {} of {} segments had no ready replica and were not searched",
            reply.missing_segments.len(),
            reply.segments_total
        );
    }
    print_rows(format, &rows(&reply.arrow_ipc)?)
}

/// Runs a SQL query and prints its rows.
pub async fn sql(client: &mut Client, format: OutputFormat, args: SqlArgs) -> Result<(), CliError> {
    let reply = client.sql(v1::SqlRequest { query: args.query, allow_partial: args.allow_partial, ..Default::default() }).await?.into_inner();
    if !reply.missing_segments.is_empty() {
        eprintln!("warning: partial answer: {} segments had no ready replica and were not scanned", reply.missing_segments.len());
    }
    print_rows(format, &rows(&reply.arrow_ipc)?)
}

/// Deletes rows by id or filter and prints how many were deleted and the new version.
pub async fn delete(client: &mut Client, format: OutputFormat, args: DeleteArgs) -> Result<(), CliError> {
    let request = v1::DeleteRequest {
        collection: args.collection,
        string_ids: args.ids.iter().map(|id| id.trim().to_string()).filter(|id| !id.is_empty()).collect(),
        filter: args.filter.unwrap_or_default(),
        ..Default::default()
    };
    let reply = client.delete(request).await?.into_inner();
    print_object(format, &json!({ "deleted": reply.rows, "version": reply.version }));
    Ok(())
}

/// Reads rows by id and prints them.
pub async fn get(client: &mut Client, format: OutputFormat, args: GetArgs) -> Result<(), CliError> {
    let request = v1::GetRequest {
        collection: args.collection,
        string_ids: args.ids.iter().map(|id| id.trim().to_string()).filter(|id| !id.is_empty()).collect(),
        min_version: args.min_version,
        include_vectors: args.vectors,
        ..Default::default()
    };
    let reply = client.get(request).await?.into_inner();
    print_rows(format, &rows(&reply.arrow_ipc)?)
}

/// Runs a garbage-collection pass and prints what it did.
pub async fn gc(client: &mut Client, format: OutputFormat, grace_secs: Option<u64>) -> Result<(), CliError> {
    let r = client.collect_garbage(v1::CollectGarbageRequest { grace_seconds: grace_secs }).await?.into_inner();
    let value = json!({
        "scanned": r.scanned,
        "referenced": r.referenced,
        "too_young": r.too_young,
        "deleted": r.deleted.len(),
        "bytes_freed": r.bytes_freed,
        "deleted_paths": r.deleted,
    });
    print_object(format, &value);
    Ok(())
}
