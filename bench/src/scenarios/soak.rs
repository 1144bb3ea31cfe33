//! `soak`: a long run of mixed traffic against 3 `grape meta` and 2 `grape compute`
//! processes — searches (some filtered), SQL aggregates, inserts, and bad requests (wrong
//! dimensions, malformed and hostile filters, garbage rows, unknown collections, SQL that
//! must be refused, queries too heavy for the limits). It reports every process's resident
//! memory over time (it should stay flat), the answers by gRPC code for each kind of
//! request, and whether every acknowledged insert is readable at the end.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use grape_compute::datagen;
use grape_compute::ingest::{decode_ipc, encode_ipc};
use grape_proto::v1::{self, grape_client::GrapeClient};
use serde_json::json;
use tonic::transport::Channel;

use super::processes::{resident_bytes, MetaGroup};
use crate::report::{report, Row};

/// Options of the scenario.
#[derive(Debug, Args)]
pub struct Options {
    /// Minutes of traffic.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Seconds between memory samples.
    #[arg(long, default_value_t = 10)]
    sample_secs: u64,
    /// Vector dimension.
    #[arg(long, default_value_t = 32)]
    dim: u32,
    /// Rows per insert.
    #[arg(long, default_value_t = 1_000)]
    insert_rows: usize,
    /// The `grape` binary (default: beside this benchmark's binary).
    #[arg(long)]
    grape: Option<PathBuf>,
    /// Where to write the JSON result.
    #[arg(long, default_value = "bench/results/soak.json")]
    out: PathBuf,
}

/// Seconds the scenario waits after the traffic before it samples memory once more.
const IDLE_SECS: u64 = 30;

/// Answers by workload and gRPC code: how many, and the first error's message (to tell why
/// a good request was refused).
type Tally = Arc<Mutex<BTreeMap<(String, String), (u64, String)>>>;

fn count(tally: &Tally, workload: &str, answer: &Result<(), tonic::Status>) {
    let (code, message) = match answer {
        Ok(()) => ("OK".to_string(), ""),
        Err(s) => (format!("{:?}", s.code()), s.message()),
    };
    let mut tally = tally.lock().unwrap_or_else(|e| e.into_inner());
    let entry = tally.entry((workload.to_string(), code)).or_insert_with(|| (0, message.chars().take(300).collect()));
    entry.0 += 1;
}

/// Runs the scenario.
pub fn run(o: Options) -> Result<(), Box<dyn std::error::Error>> {
    let meta = MetaGroup::start(o.grape.as_deref())?;
    let group = &meta.group;
    let nodes = [meta.compute_node("c0")?, meta.compute_node("c1")?];
    let mut pids: Vec<(String, u32)> = group.ids().iter().filter_map(|id| Some((format!("meta-{id}"), group.pid(*id)?))).collect();
    pids.extend(nodes.iter().enumerate().map(|(i, n)| (format!("compute-{i}"), n.pid())));
    let endpoints: Vec<String> = nodes.iter().map(|n| n.endpoint.clone()).collect();
    let rt = tokio::runtime::Runtime::new()?;
    let end = Instant::now() + Duration::from_secs(o.minutes * 60);
    let tally: Tally = Arc::default();
    let acknowledged = Arc::new(AtomicU64::new(0));
    let (samples, engine, idle, readable) = rt.block_on(async {
        let mut c = client(&endpoints[0]).await?;
        let create = v1::CreateCollectionRequest { name: "soak".into(), dim: o.dim, shards: 2, ..Default::default() };
        c.create_collection(create).await?;
        // The first insert gives the collection its columns, which the SQL workload names.
        insert(&mut c, o.dim, o.insert_rows, 0, &acknowledged).await?;
        let mut tasks = Vec::new();
        for (i, workload) in ["search", "search", "sql", "insert", "bad"].into_iter().enumerate() {
            let mut c = client(&endpoints[i % endpoints.len()]).await?;
            let (tally, acknowledged, dim, rows) = (tally.clone(), acknowledged.clone(), o.dim, o.insert_rows);
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < end {
                    n += 1;
                    let answer = match workload {
                        "search" => search(&mut c, dim, n).await,
                        "sql" => sql(&mut c, n).await,
                        "insert" => insert(&mut c, dim, rows, n, &acknowledged).await,
                        _ => bad(&mut c, dim, n).await,
                    };
                    count(&tally, workload, &answer);
                }
            }));
        }
        // Resident memory of every process, and what each compute node's engine says it holds
        // (segments and indexes), to tell the data from everything else.
        let mut samples: Vec<(f64, Vec<u64>)> = Vec::new();
        let mut engine: Vec<Vec<u64>> = Vec::new();
        let started = Instant::now();
        loop {
            samples.push((started.elapsed().as_secs_f64(), pids.iter().map(|(_, pid)| resident_bytes(*pid)).collect()));
            let mut held = Vec::new();
            for endpoint in &endpoints {
                let status = client(endpoint).await?.status(v1::StatusRequest {}).await?.into_inner();
                held.push(status.memory_bytes + status.index_memory_bytes);
            }
            engine.push(held);
            if Instant::now() >= end {
                break;
            }
            tokio::time::sleep(Duration::from_secs(o.sample_secs).min(end.saturating_duration_since(Instant::now()))).await;
        }
        for t in tasks {
            t.await?;
        }
        // Memory once the traffic has stopped and the jobs it queued (compactions, index
        // builds) are done: what a node keeps, without the working memory of requests and
        // jobs (jemalloc returns freed pages after ~10 s).
        let settled = jobs_done(&mut c, Duration::from_secs(600)).await?;
        eprintln!("jobs done {:.0} s after the traffic", settled.as_secs_f64());
        tokio::time::sleep(Duration::from_secs(IDLE_SECS)).await;
        let idle: Vec<u64> = pids.iter().map(|(_, pid)| resident_bytes(*pid)).collect();
        let answer = c.sql(v1::SqlRequest { query: "SELECT count(DISTINCT id) AS n FROM soak".into(), ..Default::default() }).await?;
        let (_, batches) = decode_ipc(&answer.into_inner().arrow_ipc)?;
        let readable = batches[0].column(0).as_any().downcast_ref::<arrow::array::Int64Array>().map_or(0, |a| a.value(0) as u64);
        Ok::<_, Box<dyn std::error::Error>>((samples, engine, idle, readable))
    })?;
    let acknowledged = acknowledged.load(Ordering::Relaxed);
    let mut rows = vec![
        Row::new("rows acknowledged", acknowledged as f64, "rows"),
        Row::new("distinct ids readable at the end", readable as f64, "rows"),
    ];
    let tally = tally.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for ((workload, code), (n, _)) in &tally {
        rows.push(Row::new(format!("{workload}: {code}"), *n as f64, "answers"));
    }
    // Why good requests failed, if any did: the first message of each code.
    let first_errors: BTreeMap<String, &String> = tally
        .iter()
        .filter(|((workload, code), _)| workload != "bad" && code != "OK")
        .map(|((workload, code), (_, message))| (format!("{workload}: {code}"), message))
        .collect();
    for (answer, message) in &first_errors {
        eprintln!("first {answer}: {message}");
    }
    // Memory after the first minute (caches filled) against the end.
    let warm = samples.iter().find(|(t, _)| *t >= 60.0).or(samples.first()).map(|(_, m)| m.clone()).unwrap_or_default();
    let last = samples.last().map(|(_, m)| m.clone()).unwrap_or_default();
    for (i, (name, _)) in pids.iter().enumerate() {
        let peak = samples.iter().map(|(_, m)| m[i]).max().unwrap_or(0);
        rows.push(Row::new(format!("{name} RSS after 1 min"), warm.get(i).copied().unwrap_or(0) as f64 / 1048576.0, "MiB"));
        rows.push(Row::new(format!("{name} RSS at the end"), last.get(i).copied().unwrap_or(0) as f64 / 1048576.0, "MiB"));
        rows.push(Row::new(format!("{name} RSS peak"), peak as f64 / 1048576.0, "MiB"));
        rows.push(Row::new(format!("{name} RSS {IDLE_SECS} s after the traffic and its jobs"), idle.get(i).copied().unwrap_or(0) as f64 / 1048576.0, "MiB"));
    }
    for (i, held) in engine.last().cloned().unwrap_or_default().iter().enumerate() {
        rows.push(Row::new(format!("compute-{i} engine memory at the end (segments, indexes)"), *held as f64 / 1048576.0, "MiB"));
    }
    let profile = if cfg!(debug_assertions) { "dev" } else { "release" };
    let series: Vec<_> =
        samples.iter().zip(&engine).map(|((t, m), e)| json!({"t": t, "rss_bytes": m, "compute_engine_bytes": e})).collect();
    let params = json!({
        "minutes": o.minutes, "dim": o.dim, "insert_rows": o.insert_rows, "meta_members": 3, "compute_nodes": 2,
        "processes": pids.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), "memory": series, "profile": profile,
        "idle_rss_bytes": idle,
        "first_errors": first_errors,
    });
    report("soak", params, &rows, &o.out)?;
    if readable < acknowledged {
        return Err(format!("{} acknowledged rows are not readable", acknowledged - readable).into());
    }
    Ok(())
}

/// Waits until no job is pending or running (at most `limit`); returns how long it took.
async fn jobs_done(c: &mut GrapeClient<Channel>, limit: Duration) -> Result<Duration, Box<dyn std::error::Error>> {
    let started = Instant::now();
    loop {
        let mut busy = false;
        for state in ["pending", "running"] {
            let jobs = c.list_jobs(v1::ListJobsRequest { state: state.into(), limit: 1 }).await?.into_inner().jobs;
            busy |= !jobs.is_empty();
        }
        if !busy || started.elapsed() >= limit {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn client(endpoint: &str) -> Result<GrapeClient<Channel>, Box<dyn std::error::Error>> {
    Ok(GrapeClient::connect(endpoint.to_string()).await?.max_decoding_message_size(256 << 20).max_encoding_message_size(256 << 20))
}

async fn search(c: &mut GrapeClient<Channel>, dim: u32, n: u64) -> Result<(), tonic::Status> {
    let filter = if n % 3 == 0 { format!("category = {} AND price < 50", n % 10) } else { String::new() };
    let req = v1::SearchRequest { collection: "soak".into(), vector: datagen::query(dim, n), k: 10, filter, ..Default::default() };
    c.search(req).await.map(drop)
}

async fn sql(c: &mut GrapeClient<Channel>, n: u64) -> Result<(), tonic::Status> {
    let query = match n % 3 {
        0 => "SELECT category, count(*), avg(price) FROM soak GROUP BY 1 ORDER BY 1",
        1 => "SELECT tag, max(price) FROM soak WHERE in_stock GROUP BY tag",
        _ => "SELECT id, price FROM soak ORDER BY price DESC LIMIT 20",
    };
    c.sql(v1::SqlRequest { query: query.into(), ..Default::default() }).await.map(drop)
}

async fn insert(c: &mut GrapeClient<Channel>, dim: u32, rows: usize, n: u64, acknowledged: &AtomicU64) -> Result<(), tonic::Status> {
    let batch = datagen::batch(dim, n * rows as u64, rows, n);
    let arrow_ipc = encode_ipc(&batch.schema(), &[batch]).map_err(|e| tonic::Status::internal(e.to_string()))?;
    c.insert(v1::InsertRequest { collection: "soak".into(), arrow_ipc }).await?;
    acknowledged.fetch_add(rows as u64, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

/// One bad request of ten kinds in turn.
async fn bad(c: &mut GrapeClient<Channel>, dim: u32, n: u64) -> Result<(), tonic::Status> {
    let search = |vector: Vec<f32>, filter: String| v1::SearchRequest { collection: "soak".into(), vector, k: 10, filter, ..Default::default() };
    let ors = || (0..2_000).map(|i| format!("id = {i}")).collect::<Vec<_>>().join(" OR ");
    match n % 10 {
        0 => c.search(search(vec![0.5; dim as usize + 1], String::new())).await.map(drop),
        1 => c.search(search(vec![f32::NAN; dim as usize], String::new())).await.map(drop),
        2 => c.search(search(datagen::query(dim, n), "price <".into())).await.map(drop),
        3 => c.search(search(datagen::query(dim, n), ors())).await.map(drop),
        4 => c.search(search(datagen::query(dim, n), format!("price{} > 0", " + 1".repeat(5_000)))).await.map(drop),
        5 => c.insert(v1::InsertRequest { collection: "soak".into(), arrow_ipc: b"not arrow".to_vec() }).await.map(drop),
        6 => c.search(v1::SearchRequest { collection: "nope".into(), vector: vec![0.0; dim as usize], ..Default::default() }).await.map(drop),
        7 => c.sql(v1::SqlRequest { query: "DROP TABLE soak".into(), ..Default::default() }).await.map(drop),
        8 => c.sql(v1::SqlRequest { query: format!("SELECT count(*) FROM soak WHERE {}", ors()), ..Default::default() }).await.map(drop),
        _ => c
            .sql(v1::SqlRequest { query: "SELECT count(*) FROM soak a JOIN soak b ON a.price + b.price > 1000".into(), ..Default::default() })
            .await
            .map(drop),
    }
}
