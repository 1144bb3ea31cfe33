//! Failover, joining and draining under load: three `grape meta` members and three or four
//! `grape compute` processes, while a client loop keeps searching and running SQL through the
//! gateways that stay up. With two replicas a SIGKILL or a hung node costs no request; with
//! one, requests wait (up to 10 s) or fail only until the dead node's segments are loaded
//! elsewhere, and every answer is the answer from before. A node joining or being drained
//! costs no request.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int64Type, UInt64Type};
use grape_compute::datagen;
use grape_compute::ingest::decode_ipc;
use grape_meta::testing::MetaProcesses;
use grape_proto::v1::{self, grape_client::GrapeClient};
use serde_json::Value;

use crate::compute_cluster::{compute_nodes, port_of};
use crate::harness::{write_parquet, DevProcess};

const DIM: u32 = 16;
/// Segments of the test collection: 4 shards × 3 ingests.
const SEGMENTS: u64 = 12;
const SQL: &str = "SELECT count(*) AS n, sum(category) AS s FROM docs WHERE price < 50";

/// A meta group and compute nodes on one object store, with a collection of 12 segments.
struct Cluster {
    dir: tempfile::TempDir,
    meta: MetaProcesses,
    storage: String,
    nodes: Vec<DevProcess>,
}

impl Cluster {
    /// Starts 3 meta members and `computes` compute nodes, creates `docs` with `replicas`,
    /// ingests 12 segments, and waits until every replica is ready.
    fn start(computes: usize, replicas: u32) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaProcesses::start(Path::new(crate::harness::grape_bin()), 3).expect("start grape meta processes");
        let storage = format!("file://{}", dir.path().join("objects").display());
        let mut cluster = Cluster { dir, meta, storage, nodes: Vec::new() };
        for _ in 0..computes {
            cluster.add_node();
        }
        let first = &cluster.nodes[0];
        first.json(&["collection", "create", "docs", "--dim", "16", "--shards", "4", "--replicas", &replicas.to_string()]);
        for i in 0..3u64 {
            let file = cluster.dir.path().join(format!("part{i}.parquet"));
            write_parquet(&file, &[datagen::batch(DIM, i * 1_500, 1_500, i)]);
            first.json(&["ingest", "docs", file.to_str().unwrap()]);
        }
        cluster.wait_until_placed(SEGMENTS * u64::from(replicas.min(computes as u32)), None);
        cluster
    }

    /// Starts one more compute node.
    fn add_node(&mut self) -> &DevProcess {
        let data = self.dir.path().join(format!("compute{}", self.nodes.len()));
        self.nodes.push(DevProcess::start_compute(&self.members(), &self.storage, &data));
        self.nodes.last().expect("a node")
    }

    fn members(&self) -> String {
        self.meta.addrs().join(",")
    }

    /// Waits until the live nodes hold `replicas` ready segment replicas in all, none is
    /// loading, and (if given) node `holder` holds at least one. Returns the nodes.
    fn wait_until_placed(&self, replicas: u64, holder: Option<u16>) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let nodes = compute_nodes(&self.members());
            let live: Vec<&Value> = nodes.iter().filter(|n| n["state"] == "live" || n["state"] == "draining").collect();
            let held: u64 = live.iter().map(|n| n["segments"].as_u64().unwrap_or(0)).sum();
            let assigned: u64 = live.iter().map(|n| n["assigned_segments"].as_u64().unwrap_or(0)).sum();
            let loading: u64 = live.iter().map(|n| n["segments_loading"].as_u64().unwrap_or(0)).sum();
            let has_holder = holder.is_none_or(|p| {
                live.iter().any(|n| port_of(n["addr"].as_str().unwrap_or("")) == p && n["segments"].as_u64().unwrap_or(0) > 0)
            });
            if held == replicas && assigned == replicas && loading == 0 && has_holder {
                return nodes;
            }
            assert!(Instant::now() < deadline, "segments are not placed and ready ({replicas} replicas wanted): {nodes:#?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the meta leader has declared node `i` dead.
    fn wait_until_dead(&self, i: usize) {
        let port = self.nodes[i].port;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !compute_nodes(&self.members())
            .iter()
            .any(|n| port_of(n["addr"].as_str().unwrap_or("")) == port && n["state"].as_str().is_some_and(|s| s.starts_with("dead")))
        {
            assert!(Instant::now() < deadline, "node {i} is not declared dead");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `grape cluster drain` on node `i` against the meta group; returns its JSON answer.
    fn drain(&self, i: usize) -> Value {
        let id = self.node_id(i).to_string();
        let out = std::process::Command::new(crate::harness::grape_bin())
            .args(["--endpoint", &self.members(), "--output", "json", "cluster", "drain", &id])
            .output()
            .expect("run grape cluster drain");
        assert!(out.status.success(), "grape cluster drain failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("drain prints JSON")
    }

    /// The compute id of node `i` (from `grape status` on the meta group).
    fn node_id(&self, i: usize) -> u64 {
        let port = self.nodes[i].port;
        compute_nodes(&self.members())
            .iter()
            .find(|n| port_of(n["addr"].as_str().unwrap_or("")) == port)
            .and_then(|n| n["id"].as_u64())
            .expect("the node is registered")
    }
}

/// One answer of the client loop: search hit ids and the SQL row, or the error.
type Answer = Result<(Vec<u64>, (i64, i64)), String>;

/// Searches and runs SQL once through `endpoint`.
async fn ask(endpoint: &str) -> Answer {
    let mut client = GrapeClient::connect(endpoint.to_string()).await.map_err(|e| e.to_string())?;
    let req = v1::SearchRequest { collection: "docs".into(), vector: datagen::query(DIM, 5), k: 10, ..Default::default() };
    let reply = client.search(req).await.map_err(|s| format!("search: {s}"))?.into_inner();
    let (_, hits) = decode_ipc(&reply.arrow_ipc).map_err(|e| e.to_string())?;
    let ids: Vec<u64> = hits.iter().flat_map(|b| b.column(0).as_primitive::<UInt64Type>().values().to_vec()).collect();
    let reply = client.sql(v1::SqlRequest { query: SQL.into(), ..Default::default() }).await.map_err(|s| format!("sql: {s}"))?.into_inner();
    let (_, rows) = decode_ipc(&reply.arrow_ipc).map_err(|e| e.to_string())?;
    let row = rows.first().filter(|b| b.num_rows() == 1).ok_or("SQL returned no row")?;
    let n = row.column(0).as_primitive::<Int64Type>().value(0);
    let sum = row.column(1).as_primitive::<Int64Type>();
    Ok((ids, (n, if sum.is_null(0) { 0 } else { sum.value(0) })))
}

/// A search with `allow_partial`: segments missed, segments in all, hits.
async fn partial_search(endpoint: &str) -> (u64, u64, usize) {
    let mut client = GrapeClient::connect(endpoint.to_string()).await.expect("connect");
    let req =
        v1::SearchRequest { collection: "docs".into(), vector: datagen::query(DIM, 5), k: 10, allow_partial: true, ..Default::default() };
    let reply = client.search(req).await.expect("a partial answer").into_inner();
    let (_, hits) = decode_ipc(&reply.arrow_ipc).expect("hits");
    (reply.missing_segments.len() as u64, reply.segments_total, hits.iter().map(|b| b.num_rows()).sum())
}

/// `SELECT count(*)` with `allow_partial`: segments left out, rows counted.
async fn partial_count(endpoint: &str) -> (u64, i64) {
    let mut client = GrapeClient::connect(endpoint.to_string()).await.expect("connect");
    let req = v1::SqlRequest { query: "SELECT count(*) FROM docs".into(), allow_partial: true, ..Default::default() };
    let reply = client.sql(req).await.expect("a partial answer").into_inner();
    let (_, rows) = decode_ipc(&reply.arrow_ipc).expect("rows");
    (reply.missing_segments.len() as u64, rows[0].column(0).as_primitive::<Int64Type>().value(0))
}

/// A client loop over several gateways, recording every answer with its time.
struct ClientLoop {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<(Instant, Answer)>>>,
    thread: Option<JoinHandle<()>>,
}

impl ClientLoop {
    fn start(endpoints: Vec<String>) -> ClientLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let (s, a) = (stop.clone(), answers.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let mut i = 0;
            while !s.load(Ordering::Relaxed) {
                let answer = rt.block_on(ask(&endpoints[i % endpoints.len()]));
                a.lock().unwrap().push((Instant::now(), answer));
                i += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        ClientLoop { stop, answers, thread: Some(thread) }
    }

    /// Stops the loop and returns its answers.
    fn finish(mut self) -> Vec<(Instant, Answer)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.answers.lock().unwrap())
    }

    fn count(&self) -> usize {
        self.answers.lock().unwrap().len()
    }

    /// Waits until the loop has answered `more` more times.
    fn wait_for(&self, more: usize) {
        let target = self.count() + more;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.count() < target {
            assert!(Instant::now() < deadline, "the client loop is stuck");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The answer every gateway gives before anything happens (and checks they agree).
fn baseline(cluster: &Cluster) -> (Vec<u64>, (i64, i64)) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let answers: Vec<_> = cluster.nodes.iter().map(|n| rt.block_on(ask(&n.endpoint)).expect("a healthy cluster answers")).collect();
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "every gateway gives the same answer: {answers:?}");
    let first = answers.into_iter().next().expect("an answer");
    assert_eq!(first.0.len(), 10);
    first
}

/// Failed answers, and answers that differ from `expected`.
fn failures(answers: &[(Instant, Answer)], expected: &(Vec<u64>, (i64, i64))) -> (Vec<String>, usize) {
    let failed: Vec<String> = answers.iter().filter_map(|(_, a)| a.as_ref().err().cloned()).collect();
    let wrong = answers.iter().filter(|(_, a)| a.as_ref().is_ok_and(|a| a != expected)).count();
    (failed, wrong)
}

#[test]
fn with_two_replicas_a_killed_node_costs_no_request() {
    let mut cluster = Cluster::start(3, 2);
    let expected = baseline(&cluster);
    let clients = ClientLoop::start(vec![cluster.nodes[1].endpoint.clone(), cluster.nodes[2].endpoint.clone()]);
    clients.wait_for(10);
    cluster.nodes[0].kill();
    // The survivors take the dead node's replicas back to two each.
    cluster.wait_until_dead(0);
    cluster.wait_until_placed(SEGMENTS * 2, None);
    clients.wait_for(20);
    let answers = clients.finish();
    let (failed, wrong) = failures(&answers, &expected);
    assert!(failed.is_empty(), "{} of {} requests failed: {:?}", failed.len(), answers.len(), &failed[..failed.len().min(5)]);
    assert_eq!(wrong, 0, "every answer equals the answer before the kill");
}

#[test]
fn a_hung_node_is_routed_around_once_its_deadline_passes() {
    let cluster = Cluster::start(3, 2);
    let expected = baseline(&cluster);
    let clients = ClientLoop::start(vec![cluster.nodes[1].endpoint.clone(), cluster.nodes[2].endpoint.clone()]);
    clients.wait_for(10);
    // SIGSTOP: connections stay open but nothing answers. Requests already sent to it wait
    // for the leaf deadline and are retried on the other replica; once it is declared dead
    // no request goes there.
    cluster.nodes[0].signal("STOP");
    cluster.wait_until_dead(0);
    cluster.wait_until_placed(SEGMENTS * 2, None);
    clients.wait_for(20);
    cluster.nodes[0].signal("CONT");
    // It comes back, registers again and takes segments again.
    let port = cluster.nodes[0].port;
    cluster.wait_until_placed(SEGMENTS * 2, Some(port));
    clients.wait_for(10);
    let answers = clients.finish();
    let (failed, wrong) = failures(&answers, &expected);
    assert!(failed.is_empty(), "{} of {} requests failed: {:?}", failed.len(), answers.len(), &failed[..failed.len().min(5)]);
    assert_eq!(wrong, 0, "every answer equals the answer before");
}

#[test]
fn with_one_replica_requests_wait_or_fail_only_until_the_segments_are_loaded_elsewhere() {
    let mut cluster = Cluster::start(3, 1);
    let expected = baseline(&cluster);
    let clients = ClientLoop::start(vec![cluster.nodes[1].endpoint.clone(), cluster.nodes[2].endpoint.clone()]);
    clients.wait_for(10);
    let killed = Instant::now();
    cluster.nodes[0].kill();
    // Until the dead node's segments are loaded elsewhere (it is declared dead after 2 s)
    // they have no ready replica: a search or SQL query that allows a partial answer gets
    // one at once, and says what it missed.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (missing, total, hits) = rt.block_on(partial_search(&cluster.nodes[1].endpoint));
    let (sql_missing, rows) = rt.block_on(partial_count(&cluster.nodes[2].endpoint));
    assert!(missing > 0 && missing < SEGMENTS, "{missing} of {total} segments missed");
    assert_eq!((total, hits), (SEGMENTS, 10));
    // (Not always the same number as the search: a gateway still serves segments it gave
    // away in the last 5 s, so one may reach a segment of the dead node that another cannot.)
    assert!(sql_missing > 0 && sql_missing < SEGMENTS, "SQL left out {sql_missing} segments");
    assert!(rows > 0 && rows < 4_500, "a partial count covers only the reachable segments: {rows}");
    cluster.wait_until_dead(0);
    cluster.wait_until_placed(SEGMENTS, None);
    let recovered = Instant::now();
    clients.wait_for(20);
    let answers = clients.finish();
    let (failed, wrong) = failures(&answers, &expected);
    assert_eq!(wrong, 0, "every answer equals the answer before the kill");
    let late: Vec<_> = answers.iter().filter(|(at, a)| *at > recovered && a.is_err()).collect();
    assert!(late.is_empty(), "requests failed after the segments were loaded elsewhere: {late:?}");
    for error in &failed {
        assert!(error.contains("Unavailable") || error.contains("UNAVAILABLE") || error.contains("unavailable"), "{error}");
    }
    eprintln!(
        "replica factor 1: {} of {} requests failed; segments ready elsewhere {:.1} s after the kill",
        failed.len(),
        answers.len(),
        (recovered - killed).as_secs_f64()
    );
}

#[test]
fn a_joining_node_and_a_drained_node_cost_no_request() {
    let mut cluster = Cluster::start(3, 1);
    let expected = baseline(&cluster);
    let clients = ClientLoop::start(vec![cluster.nodes[0].endpoint.clone(), cluster.nodes[2].endpoint.clone()]);
    clients.wait_for(10);

    // A fourth node joins: segments move to it, gradually, and nothing fails.
    let new_port = cluster.add_node().port;
    cluster.wait_until_placed(SEGMENTS, Some(new_port));
    clients.wait_for(10);

    // Node 1 is drained: its segments move away, then it is stopped.
    let drained = cluster.node_id(1);
    let out = cluster.drain(1);
    assert_eq!(out["drained"], true, "{out}");
    let nodes = cluster.wait_until_placed(SEGMENTS, None);
    let drained_node = nodes.iter().find(|n| n["id"] == drained).expect("the drained node");
    assert_eq!(drained_node["state"], "draining");
    assert_eq!(drained_node["assigned_segments"], 0);
    clients.wait_for(10);
    cluster.nodes[1].kill();
    clients.wait_for(20);

    let answers = clients.finish();
    let (failed, wrong) = failures(&answers, &expected);
    assert!(failed.is_empty(), "{} of {} requests failed: {:?}", failed.len(), answers.len(), &failed[..failed.len().min(5)]);
    assert_eq!(wrong, 0, "every answer equals the answer before");
}
