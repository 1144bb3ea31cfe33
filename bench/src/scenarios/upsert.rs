//! `upsert`: writes with ids as keys through a real `grape dev` on loopback, one client —
//! upsert rows/s and latency at batch sizes 1, 100 and 10,000 (each batch half new ids, half
//! replacing existing ones), the latency from a `Delete` to the row being gone from a `Get`,
//! a search over the many small segments that leaves behind, then a compaction of the
//! collection (rows/s) and the same search over the compacted segments. Automatic compaction
//! is switched off, so the writes and the first search see every segment they made.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use grape_compute::datagen;
use grape_compute::ingest::encode_ipc;
use grape_proto::v1::{self, grape_client::GrapeClient};
use serde_json::json;
use tonic::transport::Channel;

use super::processes::DevServer;
use crate::report::{percentile, report, Row};

/// Options of the scenario.
#[derive(Debug, Args)]
pub struct Options {
    /// Vector dimension.
    #[arg(long, default_value_t = 128)]
    dim: u32,
    /// Rows written at each batch size (at least one batch each).
    #[arg(long, default_value_t = 200_000)]
    rows: usize,
    /// Upserts of one row (the latency figure).
    #[arg(long, default_value_t = 300)]
    single: usize,
    /// Deletes timed until invisible.
    #[arg(long, default_value_t = 100)]
    deletes: usize,
    /// The `grape` binary (default: beside this benchmark's binary).
    #[arg(long)]
    grape: Option<PathBuf>,
    /// Where to write the JSON result.
    #[arg(long, default_value = "bench/results/upsert.json")]
    out: PathBuf,
}

/// Milliseconds of each call, sorted.
fn sorted(mut ms: Vec<f64>) -> Vec<f64> {
    ms.sort_by(f64::total_cmp);
    ms
}

/// Runs the scenario.
pub fn run(o: Options) -> Result<(), Box<dyn std::error::Error>> {
    let server = DevServer::start(o.grape.as_deref())?;
    server.cli(&["config", "set", "compaction/auto", "off"])?;
    let runtime = tokio::runtime::Runtime::new()?;
    let rows = runtime.block_on(async {
        let mut client = GrapeClient::connect(server.endpoint.clone())
            .await
            .map_err(|e| format!("connect: {e}"))?
            .max_encoding_message_size(256 << 20)
            .max_decoding_message_size(256 << 20);
        let create = v1::CreateCollectionRequest { name: "u".into(), dim: o.dim, metric: "l2".into(), shards: 2, ..Default::default() };
        client.create_collection(create).await.map_err(|e| e.to_string())?;
        let mut rows = Vec::new();
        let mut next_id = 0u64;
        for (batch, calls) in [(1usize, o.single), (100, o.rows / 100), (10_000, o.rows / 10_000)] {
            let mut ms = Vec::with_capacity(calls.max(1));
            let started = Instant::now();
            for _ in 0..calls.max(1) {
                // Half the batch replaces rows written before, half is new.
                let first = next_id.saturating_sub(batch as u64 / 2);
                let data = datagen::batch(o.dim, first, batch, next_id);
                next_id = first + batch as u64;
                let ipc = encode_ipc(&data.schema(), &[data]).map_err(|e| e.to_string())?;
                let call = Instant::now();
                client.insert(v1::InsertRequest { collection: "u".into(), arrow_ipc: ipc }).await.map_err(|e| e.to_string())?;
                ms.push(call.elapsed().as_secs_f64() * 1e3);
            }
            let rate = (calls.max(1) * batch) as f64 / started.elapsed().as_secs_f64();
            let ms = sorted(ms);
            rows.push(Row::new(format!("upsert batch {batch}: rows/s"), rate, "rows/s"));
            rows.push(Row::new(format!("upsert batch {batch}: p50"), percentile(&ms, 0.5), "ms"));
            rows.push(Row::new(format!("upsert batch {batch}: p99"), percentile(&ms, 0.99), "ms"));
        }
        let mut ms = Vec::with_capacity(o.deletes);
        for i in 0..o.deletes as u64 {
            let call = Instant::now();
            let reply = client.delete(v1::DeleteRequest { collection: "u".into(), ids: vec![i], ..Default::default() }).await;
            let version = reply.map_err(|e| e.to_string())?.into_inner().version;
            let get = v1::GetRequest { collection: "u".into(), ids: vec![i], min_version: version, ..Default::default() };
            let found = client.get(get).await.map_err(|e| e.to_string())?.into_inner();
            ms.push(call.elapsed().as_secs_f64() * 1e3);
            if found.arrow_ipc.len() > 1_000 {
                return Err(format!("id {i} is still readable after its delete"));
            }
        }
        let ms = sorted(ms);
        rows.push(Row::new("delete until gone from Get: p50", percentile(&ms, 0.5), "ms"));
        rows.push(Row::new("delete until gone from Get: p99", percentile(&ms, 0.99), "ms"));
        let info = describe(&mut client).await?;
        rows.push(Row::new("segments before compaction", info.segments as f64, "segments"));
        rows.push(Row::new("live rows", info.rows as f64, "rows"));
        search_figures(&mut client, o.dim, "before compaction", &mut rows).await?;
        let stored: u64 = info.rows;
        let started = Instant::now();
        compact(&mut client).await?;
        let secs = started.elapsed().as_secs_f64();
        let info = describe(&mut client).await?;
        rows.push(Row::new("compaction: time", secs, "s"));
        rows.push(Row::new("compaction: live rows rewritten per second", stored as f64 / secs, "rows/s"));
        rows.push(Row::new("segments after compaction", info.segments as f64, "segments"));
        search_figures(&mut client, o.dim, "after compaction", &mut rows).await?;
        Ok::<_, String>(rows)
    })?;
    let profile = if cfg!(debug_assertions) { "dev" } else { "release" };
    let params = json!({ "dim": o.dim, "rows": o.rows, "single": o.single, "deletes": o.deletes, "profile": profile });
    report("upsert and delete (grape dev on loopback, 1 client)", params, &rows, &o.out)?;
    Ok(())
}

/// The collection `u` as the server describes it.
async fn describe(client: &mut GrapeClient<Channel>) -> Result<v1::CollectionInfo, String> {
    let info = client.describe_collection(v1::DescribeCollectionRequest { name: "u".into() }).await.map_err(|e| e.to_string())?;
    Ok(info.into_inner())
}

/// Times 50 searches (k = 10, exact, so recall 1.0) one after another and adds their p50 and
/// QPS to `rows`, labelled `when`.
async fn search_figures(client: &mut GrapeClient<Channel>, dim: u32, when: &str, rows: &mut Vec<Row>) -> Result<(), String> {
    let mut ms = Vec::new();
    let started = Instant::now();
    for q in 0..50 {
        let search = v1::SearchRequest { collection: "u".into(), vector: datagen::query(dim, q), k: 10, ..Default::default() };
        let call = Instant::now();
        client.search(search).await.map_err(|e| e.to_string())?;
        ms.push(call.elapsed().as_secs_f64() * 1e3);
    }
    let qps = ms.len() as f64 / started.elapsed().as_secs_f64();
    let ms = sorted(ms);
    rows.push(Row::new(format!("search k=10 {when}: p50 (exact, recall 1.0)"), percentile(&ms, 0.5), "ms"));
    rows.push(Row::new(format!("search k=10 {when}: QPS, 1 client (exact, recall 1.0)"), qps, "queries/s"));
    Ok(())
}

/// Compacts collection `u` (every shard) and waits until its jobs have succeeded.
async fn compact(client: &mut GrapeClient<Channel>) -> Result<(), String> {
    let jobs = client.compact(v1::CompactRequest { collection: "u".into(), shard: None }).await.map_err(|e| e.to_string())?;
    for job in jobs.into_inner().jobs {
        loop {
            let now = client.get_job(v1::GetJobRequest { id: job.id }).await.map_err(|e| e.to_string())?.into_inner();
            match now.state.as_str() {
                "succeeded" => break,
                "dead" | "cancelled" => return Err(format!("compaction job {} is {}: {}", now.id, now.state, now.last_error)),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    Ok(())
}
