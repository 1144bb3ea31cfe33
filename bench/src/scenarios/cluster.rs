//! `cluster`: stateless compute nodes as real processes (3 `grape meta`, 1 to 3 `grape
//! compute`) on one local object store. Measures search throughput with 1, 2 and 3 compute
//! nodes on the same data (clients spread over every gateway), and the failover time of a
//! SIGKILLed compute node with replica factor 1 and 2: from the kill until every query
//! succeeds again, with the number of failed queries on the way.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use grape_compute::datagen;
use grape_compute::ingest::encode_ipc;
use grape_meta::service::RemoteMeta;
use grape_proto::v1::{self, grape_client::GrapeClient};
use serde_json::json;
use tonic::transport::Channel;

use super::processes::MetaGroup;
use crate::report::{percentile, report, Row};

/// Options of the scenario.
#[derive(Debug, Args)]
pub struct Options {
    /// Vectors in the collection.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Vector dimension.
    #[arg(long, default_value_t = 128)]
    dim: u32,
    /// Rows per insert (each insert makes one segment per shard).
    #[arg(long, default_value_t = 100_000)]
    batch_rows: usize,
    /// Shards of the collection.
    #[arg(long, default_value_t = 2)]
    shards: u32,
    /// Seconds of each throughput measurement.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Concurrent clients of the throughput measurements and the failover loops.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// The `grape` binary (default: beside this benchmark's binary).
    #[arg(long)]
    grape: Option<PathBuf>,
    /// Where to write the JSON result.
    #[arg(long, default_value = "bench/results/cluster.json")]
    out: PathBuf,
}

/// Runs the scenario.
pub fn run(o: Options) -> Result<(), Box<dyn std::error::Error>> {
    let stack = MetaGroup::start(o.grape.as_deref())?;
    let rt = tokio::runtime::Runtime::new()?;
    let meta = rt.block_on(async { RemoteMeta::new(&stack.group.addrs()) })?;
    let mut nodes = vec![stack.compute_node("c0")?];
    let segments = rt.block_on(load(&nodes[0].endpoint, &o))?;
    eprintln!("loaded {} rows in {segments} segments", o.rows);

    let mut rows = Vec::new();
    let mut qps = Vec::new();
    for n in 1..=3usize {
        while nodes.len() < n {
            nodes.push(stack.compute_node(&format!("c{}", nodes.len()))?);
        }
        rt.block_on(wait_settled(&meta, n, segments))?;
        let endpoints: Vec<String> = nodes.iter().map(|n| n.endpoint.clone()).collect();
        let (done, latencies) = rt.block_on(throughput(&endpoints, &o))?;
        let per_sec = done as f64 / o.secs as f64;
        eprintln!("{n} compute node(s): {per_sec:.1} searches/s");
        qps.push(per_sec);
        rows.push(Row::new(format!("search QPS, {n} compute node(s)"), per_sec, "1/s"));
        rows.push(Row::new(format!("search p50, {n} compute node(s)"), percentile(&latencies, 0.5), "ms"));
    }

    let mut failovers = Vec::new();
    for replicas in [1u32, 2] {
        rt.block_on(set_replicas(&nodes[0].endpoint, replicas))?;
        rt.block_on(wait_settled(&meta, 3, segments * u64::from(replicas)))?;
        let victim = nodes.len() - 1;
        let survivors: Vec<String> = nodes[..victim].iter().map(|n| n.endpoint.clone()).collect();
        let f = rt.block_on(failover(&survivors, &o, || nodes[victim].kill()))?;
        eprintln!(
            "replica factor {replicas}: queries normal again {:.2} s after the kill ({} of {} failed, slowest {:.0} ms, {:.0} ms before)",
            f.failover, f.failed, f.total, f.slowest_ms, f.slowest_before_ms
        );
        rows.push(Row::new(format!("failover, replicas {replicas}: kill -> queries normal"), f.failover * 1000.0, "ms"));
        rows.push(Row::new(format!("failover, replicas {replicas}: failed queries"), f.failed as f64, "count"));
        rows.push(Row::new(format!("failover, replicas {replicas}: slowest query"), f.slowest_ms, "ms"));
        failovers.push(json!({"replicas": replicas, "failover_s": f.failover, "failed": f.failed, "queries": f.total,
                              "slowest_ms": f.slowest_ms, "slowest_before_kill_ms": f.slowest_before_ms}));
        // Back to three nodes: a fresh one joins.
        nodes[victim] = stack.compute_node(&format!("c{victim}-{replicas}"))?;
        rt.block_on(wait_settled(&meta, 3, segments * u64::from(replicas)))?;
    }
    let params = json!({
        "rows": o.rows, "dim": o.dim, "segments": segments, "shards": o.shards, "clients": o.clients, "secs": o.secs,
        "meta_members": 3, "storage": "local file system", "failovers": failovers, "qps_by_nodes": qps,
    });
    report("cluster", params, &rows, &o.out)?;
    Ok(())
}

async fn client(endpoint: &str) -> Result<GrapeClient<Channel>, Box<dyn std::error::Error>> {
    Ok(GrapeClient::connect(endpoint.to_string()).await?.max_decoding_message_size(256 << 20).max_encoding_message_size(256 << 20))
}

/// Creates the collection and inserts the rows; returns the number of segments.
async fn load(endpoint: &str, o: &Options) -> Result<u64, Box<dyn std::error::Error>> {
    let mut c = client(endpoint).await?;
    let create = v1::CreateCollectionRequest { name: "bench".into(), dim: o.dim, shards: o.shards, ..Default::default() };
    c.create_collection(create).await?;
    let mut first = 0;
    while first < o.rows {
        let n = o.batch_rows.min(o.rows - first);
        let batch = datagen::batch(o.dim, first as u64, n, first as u64);
        let arrow_ipc = encode_ipc(&batch.schema(), &[batch])?;
        c.insert(v1::InsertRequest { collection: "bench".into(), arrow_ipc }).await?;
        first += n;
    }
    let info = c.describe_collection(v1::DescribeCollectionRequest { name: "bench".into() }).await?.into_inner();
    Ok(info.segments)
}

async fn set_replicas(endpoint: &str, replicas: u32) -> Result<(), Box<dyn std::error::Error>> {
    client(endpoint).await?.set_replicas(v1::SetReplicasRequest { name: "bench".into(), replicas }).await?;
    Ok(())
}

/// Waits until `nodes` compute nodes are live and hold `replicas` ready segment replicas in
/// all, with nothing loading.
async fn wait_settled(meta: &RemoteMeta, nodes: usize, replicas: u64) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let status = meta.status().await?;
        let leader = if status.leader_id != status.id { RemoteMeta::new(&[status.leader_addr.clone()])?.status().await? } else { status };
        let live: Vec<_> = leader.compute_nodes.iter().filter(|n| n.state == "live").collect();
        let held: u64 = live.iter().map(|n| n.segments_loaded).sum();
        let assigned: u64 = live.iter().map(|n| n.assigned_segments).sum();
        let loading: u64 = live.iter().map(|n| n.segments_loading).sum();
        if live.len() == nodes && held == replicas && assigned == replicas && loading == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(
                format!("the cluster did not settle: {} live, {held} held, {assigned} assigned, {loading} loading", live.len()).into()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One search through `c`; its latency in ms.
async fn search_once(c: &mut GrapeClient<Channel>, dim: u32, seed: u64) -> Result<f64, tonic::Status> {
    let t = Instant::now();
    let req = v1::SearchRequest { collection: "bench".into(), vector: datagen::query(dim, seed), k: 10, ..Default::default() };
    c.search(req).await?;
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

/// `o.clients` clients searching for `o.secs`, spread over `endpoints`: searches done and
/// sorted latencies.
async fn throughput(endpoints: &[String], o: &Options) -> Result<(u64, Vec<f64>), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(o.secs);
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..o.clients {
        let mut c = client(&endpoints[i % endpoints.len()]).await?;
        let (lat, dim) = (latencies.clone(), o.dim);
        tasks.push(tokio::spawn(async move {
            let mut seed = i as u64 * 1_000_000;
            while Instant::now() < deadline {
                seed += 1;
                if let Ok(ms) = search_once(&mut c, dim, seed).await {
                    lat.lock().unwrap_or_else(|e| e.into_inner()).push(ms);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let mut l = std::mem::take(&mut *latencies.lock().unwrap_or_else(|e| e.into_inner()));
    l.sort_by(f64::total_cmp);
    Ok((l.len() as u64, l))
}

/// What a client loop saw around a kill.
struct Failover {
    /// Seconds from the kill until the last disrupted query was answered: one that failed or
    /// took more than twice as long as the slowest query of the second before the kill (0:
    /// none was disrupted). After it, every query succeeds at its usual speed.
    failover: f64,
    /// Failed queries, and all queries, since the kill.
    failed: u64,
    total: u64,
    /// The slowest successful query since the kill, and before it, in ms.
    slowest_ms: f64,
    slowest_before_ms: f64,
}

/// Runs a client loop over `survivors`, calls `kill`, and watches the queries until the dead
/// node's segments can have moved and 20 queries in a row succeeded.
async fn failover(survivors: &[String], o: &Options, kill: impl FnOnce()) -> Result<Failover, Box<dyn std::error::Error>> {
    let stop = Arc::new(AtomicBool::new(false));
    // (sent, answered, ok) of every query.
    let log = Arc::new(Mutex::new(Vec::<(Instant, Instant, bool)>::new()));
    let streak = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..o.clients {
        let mut c = client(&survivors[i % survivors.len()]).await?;
        let (stop, log, streak, dim) = (stop.clone(), log.clone(), streak.clone(), o.dim);
        tasks.push(tokio::spawn(async move {
            let mut seed = 7_000_000 + i as u64 * 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                seed += 1;
                let sent = Instant::now();
                let ok = search_once(&mut c, dim, seed).await.is_ok();
                log.lock().unwrap_or_else(|e| e.into_inner()).push((sent, Instant::now(), ok));
                if ok {
                    streak.fetch_add(1, Ordering::Relaxed);
                } else {
                    streak.store(0, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed = Instant::now();
    streak.store(0, Ordering::Relaxed);
    kill();
    let deadline = killed + Duration::from_secs(300);
    while !(killed.elapsed() > Duration::from_secs(5) && streak.load(Ordering::Relaxed) >= 20) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    let log = std::mem::take(&mut *log.lock().unwrap_or_else(|e| e.into_inner()));
    let ms = |(sent, answered, _): &(Instant, Instant, bool)| (*answered - *sent).as_secs_f64() * 1000.0;
    let (before, after): (Vec<_>, Vec<_>) = log.into_iter().partition(|(_, answered, _)| *answered <= killed);
    let slowest_before_ms = before.iter().filter(|q| q.2).map(ms).fold(0.0, f64::max);
    let disrupted = |q: &&(Instant, Instant, bool)| !q.2 || ms(q) > 2.0 * slowest_before_ms;
    Ok(Failover {
        failover: after.iter().filter(disrupted).map(|q| (q.1 - killed).as_secs_f64()).fold(0.0, f64::max),
        failed: after.iter().filter(|q| !q.2).count() as u64,
        total: after.len() as u64,
        slowest_ms: after.iter().filter(|q| q.2).map(ms).fold(0.0, f64::max),
        slowest_before_ms,
    })
}
