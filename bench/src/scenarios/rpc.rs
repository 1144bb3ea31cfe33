//! `rpc`: the round trip of trivial RPCs through a real `grape dev` process on loopback —
//! `Status`, `ListCollections`, a search over 3 rows and `SELECT count(*)` over 3 rows, one
//! client, one call at a time. It guards the network floor: without `TCP_NODELAY` on
//! accepted sockets every one of them took 30–40 ms (Nagle's algorithm against the client's
//! delayed ACK); with it, about a millisecond.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use grape_compute::datagen;
use grape_compute::ingest::encode_ipc;
use grape_proto::v1::{self, grape_client::GrapeClient};
use serde_json::json;

use super::processes::DevServer;
use crate::report::{percentile, report, Row};

/// Options of the scenario.
#[derive(Debug, Args)]
pub struct Options {
    /// Calls of each RPC.
    #[arg(long, default_value_t = 200)]
    calls: usize,
    /// The `grape` binary (default: beside this benchmark's binary).
    #[arg(long)]
    grape: Option<PathBuf>,
    /// Where to write the JSON result.
    #[arg(long, default_value = "bench/results/rpc.json")]
    out: PathBuf,
}

/// Runs the scenario.
pub fn run(o: Options) -> Result<(), Box<dyn std::error::Error>> {
    let server = DevServer::start(o.grape.as_deref())?;
    let runtime = tokio::runtime::Runtime::new()?;
    let rows = runtime.block_on(async move {
        let mut client = GrapeClient::connect(server.endpoint.clone()).await.map_err(|e| format!("connect: {e}"))?;
        let create = v1::CreateCollectionRequest { name: "t".into(), dim: 4, metric: "l2".into(), shards: 1, ..Default::default() };
        client.create_collection(create).await.map_err(|e| e.to_string())?;
        let batch = datagen::batch(4, 0, 3, 1);
        let ipc = encode_ipc(&batch.schema(), &[batch]).map_err(|e| e.to_string())?;
        client.insert(v1::InsertRequest { collection: "t".into(), arrow_ipc: ipc }).await.map_err(|e| e.to_string())?;
        let mut rows = Vec::new();
        macro_rules! measure {
            ($name:expr, $call:expr) => {{
                let mut ms = Vec::with_capacity(o.calls);
                for _ in 0..o.calls {
                    let start = Instant::now();
                    $call.await.map_err(|e| format!("{}: {e}", $name))?;
                    ms.push(start.elapsed().as_secs_f64() * 1e3);
                }
                ms.sort_by(f64::total_cmp);
                rows.push(Row::new(format!("{} p50", $name), percentile(&ms, 0.5), "ms"));
                rows.push(Row::new(format!("{} p99", $name), percentile(&ms, 0.99), "ms"));
            }};
        }
        measure!("Status", client.status(v1::StatusRequest {}));
        measure!("ListCollections", client.list_collections(v1::ListCollectionsRequest {}));
        let search = v1::SearchRequest { collection: "t".into(), vector: vec![0.5; 4], k: 2, ..Default::default() };
        measure!("Search, 3 rows", client.search(search.clone()));
        let sql = v1::SqlRequest { query: "SELECT count(*) FROM t".into(), ..Default::default() };
        measure!("SQL count(*), 3 rows", client.sql(sql.clone()));
        Ok::<_, String>(rows)
    })?;
    let profile = if cfg!(debug_assertions) { "dev" } else { "release" };
    report("rpc round trip (grape dev on loopback, 1 client)", json!({ "calls": o.calls, "profile": profile }), &rows, &o.out)?;
    Ok(())
}
