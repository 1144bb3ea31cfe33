//! `payload-index`: what Qdrant's `create_payload_index` buys. One `grape dev`; points with
//! payloads `{"cat": "c<row % 100>", "n": row % 1000}` upserted through the official Python
//! `qdrant-client` (REST). The same filtered requests are measured before and after keyword
//! and integer indexes on `cat` and `n`:
//! - a filtered `query_points` (`cat = c7`, 1% of the points) and an exact filtered `count`
//!   (`n` in [100, 200), 10%) through qdrant-client, the figures a Qdrant user sees;
//! - the same filtered search through Grape's own gRPC `Search` and the same count through
//!   `Sql`, with `payload_match` before and the typed columns (`payload_any`,
//!   `payload_range`) after, to show the server's cost without the Python client's.
//!
//! Recall@k of the filtered searches is against the exact filtered top k, and must not change.
//! The table also shows the node's memory before the indexes, after the first indexed search
//! (which computes the `cat` column of segments loaded before the index, and is timed) and
//! after the indexed requests (which also computed the numbers of `n`).

use std::path::PathBuf;
use std::time::Instant;

use arrow::array::AsArray;
use clap::Args;
use grape_compute::datagen::gaussian_mixture;
use grape_compute::index::VecVectors;
use grape_compute::ingest::decode_ipc;
use grape_meta::catalog::Metric;
use grape_proto::v1::{self, grape_client::GrapeClient};
use serde_json::json;
use tonic::transport::Channel;

use super::ann::{connect, exact_top_k, recall};
use super::askers::{passes, Asker, GrapeSearch, Passes};
use super::processes::{free_port, DevServer};
use super::qdrant::{qdrant_python, settle, write_data, Peer};
use crate::report::{report, Row};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Options of the scenario.
#[derive(Debug, Args)]
pub struct Options {
    /// Points upserted.
    #[arg(long, default_value_t = 100_000)]
    rows: usize,
    /// Vector dimension.
    #[arg(long, default_value_t = 64)]
    dim: usize,
    /// Queries (drawn from the same mixture, another seed).
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// Hits per query (recall@k).
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Repeat each measurement until it lasts this long (seconds).
    #[arg(long, default_value_t = 3.0)]
    min_secs: f64,
    /// The `grape` binary (default: beside this benchmark's binary).
    #[arg(long)]
    grape: Option<PathBuf>,
    /// Where to write the JSON result (the data goes beside it, in `<stem>-data/`).
    #[arg(long, default_value = "bench/results/payload_index.json")]
    out: PathBuf,
}

/// The collection's name.
const NAME: &str = "payload_index";
/// The filtered search: 1% of the points.
const SEARCH_FILTER: &str = r#"{"must": [{"key": "cat", "match": {"value": "c7"}}]}"#;
/// The filtered count: 10% of the points.
const COUNT_FILTER: &str = r#"{"must": [{"key": "n", "range": {"gte": 100, "lt": 200}}]}"#;

/// The filters of Grape's own API, without and with the indexes' columns.
struct NativeFilters {
    search: &'static str,
    count: &'static str,
}

const WITHOUT_INDEX: NativeFilters = NativeFilters {
    search: r#"payload_match(payload, '{"key":"cat","match":{"value":"c7"}}')"#,
    count: r#"payload_match(payload, '{"key":"n","range":{"gte":100,"lt":200}}')"#,
};
const WITH_INDEX: NativeFilters =
    NativeFilters { search: r#"payload_any("payload:str:cat", 'c7')"#, count: r#"payload_range("payload:num:n", NULL, 100, 200, NULL)"# };

/// Runs the scenario.
pub fn run(o: Options) -> Res<()> {
    let base = gaussian_mixture(o.rows, o.dim, 64, 1);
    let queries = gaussian_mixture(o.queries, o.dim, 64, 2);
    let truth = exact_top_k(&VecVectors::new(base.clone(), o.dim), &queries, Metric::L2, o.k, |i| i % 100 == 7);
    let expected_count = (0..o.rows).filter(|i| (100..200).contains(&(i % 1000))).count() as u64;
    let data = write_data(&o.out, &base, &queries)?;
    let rest = free_port()?;
    let server = DevServer::start_with(o.grape.as_deref(), &["--qdrant-listen".to_string(), format!("127.0.0.1:{rest}")])?;
    server.cli(&["config", "set", "index/min_rows", "1000"])?;
    let runtime = tokio::runtime::Runtime::new()?;
    let mut client = runtime.block_on(connect(&server.endpoint))?;
    let peer = Peer { python: qdrant_python()?, url: format!("http://127.0.0.1:{rest}"), grpc: 0, data, dim: o.dim };
    let secs = o.min_secs.to_string();

    eprintln!("qdrant-client rest: upserting {} points with payloads …", o.rows);
    let out = peer.run("rest", NAME, &["--phase", "upsert", "--payloads"])?;
    let mut rows = vec![Row::new("upsert with payloads, qdrant-client rest", out["points_per_s"].as_f64().unwrap_or(0.0), "points/s")];
    runtime.block_on(settle(&mut client, NAME))?;

    let mut measured = Vec::new();
    for (label, native) in [("no index", &WITHOUT_INDEX), ("indexed", &WITH_INDEX)] {
        if label == "indexed" {
            let memory = runtime.block_on(memory_bytes(&mut client))?;
            rows.push(Row::new("node memory without indexes", memory as f64 / 1048576.0, "MiB"));
            let out = peer.run("rest", NAME, &["--phase", "index", "--indexes", "cat:keyword,n:integer"])?;
            rows.push(Row::new("create_payload_index cat:keyword, n:integer", out["seconds"].as_f64().unwrap_or(0.0), "s"));
            let started = Instant::now();
            let mut first = GrapeSearch { client: &mut client, collection: NAME, filter: native.search };
            runtime.block_on(first.ask(&queries[..o.dim], o.k))?;
            rows.push(Row::new("first indexed search (computes the columns)", started.elapsed().as_secs_f64() * 1000.0, "ms"));
            let memory_after = runtime.block_on(memory_bytes(&mut client))?;
            rows.push(Row::new("node memory after the first indexed search (cat's column)", memory_after as f64 / 1048576.0, "MiB"));
        }
        eprintln!("{label}: measuring …");
        let q = peer.run("rest", NAME, &["--phase", "query", "--filter", SEARCH_FILTER, "--k", &o.k.to_string(), "--min-secs", &secs])?;
        let ids: Vec<Vec<u64>> = serde_json::from_value(q["ids"].clone())?;
        let c = peer.run("rest", NAME, &["--phase", "count", "--filter", COUNT_FILTER, "--min-secs", &secs])?;
        if c["count"].as_u64() != Some(expected_count) {
            return Err(format!("{label}: the filtered count is {}, not {expected_count}", c["count"]).into());
        }
        let asker = GrapeSearch { client: &mut client, collection: NAME, filter: native.search };
        let Passes { ids: native_ids, qps: native_qps, .. } = runtime.block_on(passes(asker, &queries, o.dim, o.k, o.min_secs))?;
        let sql_qps = runtime.block_on(count_sql(&mut client, native.count, expected_count, o.min_secs))?;
        let figures = [
            (q["qps"].as_f64().unwrap_or(0.0), recall(&ids, &truth)),
            (c["qps"].as_f64().unwrap_or(0.0), 1.0),
            (native_qps, recall(&native_ids, &truth)),
            (sql_qps, 1.0),
        ];
        for (what, (qps, r)) in REQUESTS.iter().zip(figures) {
            rows.push(Row::new(format!("{what}, {label}: QPS"), qps, "requests/s"));
            if !what.contains("count") {
                rows.push(Row::new(format!("{what}, {label}: recall@{}", o.k), r, "fraction"));
            }
        }
        if label == "indexed" {
            let memory = runtime.block_on(memory_bytes(&mut client))?;
            rows.push(Row::new("node memory after the indexed requests (the columns they used)", memory as f64 / 1048576.0, "MiB"));
        }
        measured.push(figures);
    }
    for (i, what) in REQUESTS.iter().enumerate() {
        rows.push(Row::new(format!("{what}: indexed / no index"), measured[1][i].0 / measured[0][i].0.max(1e-9), "x"));
    }
    let profile = if cfg!(debug_assertions) { "dev" } else { "release" };
    let params = json!({
        "rows": o.rows, "dim": o.dim, "queries": o.queries, "k": o.k, "clients": 1, "profile": profile,
        "search_filter": SEARCH_FILTER, "count_filter": COUNT_FILTER, "matching_search": "1%", "matching_count": "10%",
    });
    report("Payload indexes: filtered search and count before and after create_payload_index (grape dev, 1 client)", params, &rows, &o.out)?;
    Ok(())
}

/// The four measured requests, in the order of each pass's figures.
const REQUESTS: [&str; 4] = [
    "query_points cat=c7, qdrant-client rest",
    "count n in [100,200), qdrant-client rest",
    "search cat=c7, grape gRPC",
    "count n in [100,200), grape SQL",
];

/// Bytes of segment data (and indexes) the node holds.
async fn memory_bytes(client: &mut GrapeClient<Channel>) -> Result<u64, String> {
    Ok(client.status(v1::StatusRequest {}).await.map_err(|e| e.to_string())?.into_inner().memory_bytes)
}

/// Repeats `SELECT count(*) … WHERE filter` for `min_secs`, checking the count; returns QPS.
async fn count_sql(client: &mut GrapeClient<Channel>, filter: &str, expected: u64, min_secs: f64) -> Result<f64, String> {
    let query = format!("SELECT count(*) AS c FROM {NAME} WHERE {filter}");
    let (started, mut answered) = (Instant::now(), 0u64);
    while answered == 0 || started.elapsed().as_secs_f64() < min_secs {
        let ipc = client.sql(v1::SqlRequest { query: query.clone(), ..Default::default() }).await.map_err(|e| e.to_string())?.into_inner().arrow_ipc;
        let (_, batches) = decode_ipc(&ipc).map_err(|e| e.to_string())?;
        let count = batches.first().and_then(|b| b.column(0).as_primitive_opt::<arrow::datatypes::Int64Type>().map(|c| c.value(0)));
        if count != Some(expected as i64) {
            return Err(format!("`{query}` counted {count:?}, not {expected}"));
        }
        answered += 1;
    }
    Ok(answered as f64 / started.elapsed().as_secs_f64())
}
