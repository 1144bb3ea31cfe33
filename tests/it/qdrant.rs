//! Qdrant's REST API with the official Python `qdrant-client`: the conformance suite of
//! `tests/qdrant/` (the same scenario against Grape and against the client's local mode,
//! compared), the payload of points written through it read back with Grape's SQL, payload
//! indexes that answer filters from typed columns on a cluster, and a client that keeps
//! calling one gateway of a cluster while another compute node is killed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use grape_meta::testing::MetaProcesses;

use crate::compute_cluster::compute_nodes;
use crate::harness::{free_port, grape_bin, DevProcess, ServerFlags};

/// `tests/qdrant/` of the repository.
fn suite_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("qdrant")
}

/// The python of the venv with `qdrant-client` (made by `tests/qdrant/setup.sh` once).
pub(crate) fn python() -> String {
    let out = Command::new("bash").arg(suite_dir().join("setup.sh")).output().expect("run tests/qdrant/setup.sh");
    assert!(out.status.success(), "tests/qdrant/setup.sh failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().last().expect("setup.sh prints the venv's python").trim().to_string()
}

/// `grape dev` serving the Qdrant REST API on a free port, with `extra` flags; returns it and
/// the API's URL.
fn dev_with_qdrant(dir: &std::path::Path, extra: Vec<String>) -> (DevProcess, String) {
    let port = free_port();
    let mut args = vec!["--qdrant-listen".into(), format!("127.0.0.1:{port}")];
    args.extend(extra);
    (DevProcess::start_with(dir, ServerFlags { args, env: Vec::new() }), format!("http://127.0.0.1:{port}"))
}

/// Runs the conformance suite with `args` and asserts that it passes.
fn run_suite(args: &[&str]) {
    let out = Command::new(python()).arg(suite_dir().join("conformance.py")).args(args).output().expect("run conformance.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(out.status.success(), "the conformance suite failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn qdrant_client_gets_the_answers_of_its_local_mode_over_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (_grape, url) = dev_with_qdrant(dir.path(), Vec::new());
    run_suite(&["--url", &url]);
}

#[test]
fn qdrant_client_gets_the_answers_of_its_local_mode_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let grpc_port = free_port();
    let (_grape, url) = dev_with_qdrant(dir.path(), vec!["--qdrant-grpc-listen".into(), format!("127.0.0.1:{grpc_port}")]);
    run_suite(&["--url", &url, "--prefer-grpc", "--grpc-port", &grpc_port.to_string()]);
}

#[test]
fn points_written_by_a_qdrant_client_are_rows_for_sql() {
    let py = python();
    let dir = tempfile::tempdir().unwrap();
    let (grape, url) = dev_with_qdrant(dir.path(), Vec::new());
    let script = r#"
import sys
from qdrant_client import QdrantClient, models as m
c = QdrantClient(url=sys.argv[1], timeout=30, check_compatibility=False)
c.create_collection("shop-v1.test", vectors_config=m.VectorParams(size=3, distance=m.Distance.DOT))
c.upsert("shop-v1.test", points=[m.PointStruct(id=i, vector=[i, 1, 0], payload={"color": ["red", "blue"][i % 2], "n": i}) for i in range(10)])
print(c.count("shop-v1.test", count_filter=m.Filter(must=[m.FieldCondition(key="color", match=m.MatchValue(value="red"))])).count)
"#;
    let out = Command::new(&py).args(["-c", script, &url]).output().expect("run python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "5");
    let rows = grape.json(&[
        "sql",
        r#"SELECT id, payload FROM "shop-v1.test" WHERE payload_match(payload, '{"key": "n", "range": {"gte": 8}}') ORDER BY id"#,
    ]);
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["id"], "8");
    let payload: serde_json::Value = serde_json::from_str(rows[0]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload, serde_json::json!({"color": "red", "n": 8}));
}

#[test]
fn a_qdrant_client_sees_no_failed_call_when_a_compute_node_is_killed() {
    let py = python();
    let dir = tempfile::tempdir().unwrap();
    let meta = MetaProcesses::start(Path::new(grape_bin()), 3).expect("start grape meta processes");
    let members = meta.addrs().join(",");
    let storage = format!("file://{}", dir.path().join("objects").display());
    let (rest, grpc) = (free_port(), free_port());
    let flags = ["--qdrant-listen".to_string(), format!("127.0.0.1:{rest}"), "--qdrant-grpc-listen".to_string(), format!("127.0.0.1:{grpc}")];
    let _a = DevProcess::start_compute_with(&members, &storage, &dir.path().join("a"), &flags);
    let mut b = DevProcess::start_compute_with(&members, &storage, &dir.path().join("b"), &[]);
    let url = format!("http://127.0.0.1:{rest}");
    let scenario = suite_dir().join("cluster_scenario.py");
    // Once over REST, once over gRPC, each time killing the other node midway (and starting
    // it again between the two).
    for transport in ["rest", "grpc"] {
        let mut args = vec!["--url".to_string(), url.clone(), "--collection".to_string(), format!("conf_cluster_{transport}")];
        if transport == "grpc" {
            args.extend(["--grpc-port".to_string(), grpc.to_string()]);
        }
        let setup = Command::new(&py).arg(&scenario).args(&args).args(["--phase", "setup"]).output().expect("run the setup");
        assert!(setup.status.success(), "setup over {transport} failed: {}", String::from_utf8_lossy(&setup.stderr));
        wait_until_both_hold_everything(&members);
        let load = Command::new(&py)
            .arg(&scenario)
            .args(&args)
            .args(["--phase", "load", "--seconds", "12"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the load");
        std::thread::sleep(Duration::from_secs(4));
        b.kill();
        let out = load.wait_with_output().expect("wait for the load");
        let stdout = String::from_utf8_lossy(&out.stdout);
        println!("over {transport}: {stdout}");
        assert!(out.status.success(), "calls over {transport} failed while a node died:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        b = b.restart_after_kill();
    }
}

/// The script of `payload_indexes_answer_filters_alike_without_parsing_payloads`: `write`
/// makes the collection (4 shards, one replica) and 2,000 points, `ask` prints the answers
/// of filtered counts, scrolls and exact queries as JSON, `index` and `unindex` create and
/// delete payload indexes on every key they filter on.
const INDEXED_SCENARIO: &str = r#"
import json, math, sys
from qdrant_client import QdrantClient, models as m
url, phase, name = sys.argv[1:4]
c = QdrantClient(url=url, timeout=60, check_compatibility=False)
INDEXES = [("color", "keyword"), ("n", "integer"), ("tags", "keyword"), ("ts", "datetime"), ("w", "float")]
if phase == "write":
    c.create_collection(name, vectors_config=m.VectorParams(size=4, distance=m.Distance.COSINE), shard_number=4, replication_factor=1)
    for b in range(4):
        c.upsert(name, wait=True, points=[m.PointStruct(id=i, vector=[math.sin(i), math.cos(0.7 * i), 1.0, (i % 13) / 13],
            payload={"color": ["red", "green", "blue", "black"][i % 4], "n": i % 300, "w": i / 7,
                     "tags": [f"t{i % 7}", f"t{i % 5}"], "ts": f"2024-01-{1 + i % 28:02d}T00:00:00Z"})
            for i in range(b * 500, (b + 1) * 500)])
elif phase == "ask":
    F, R = m.FieldCondition, m.Range
    filters = {
        "color": m.Filter(must=[F(key="color", match=m.MatchValue(value="red"))]),
        "n_range": m.Filter(must=[F(key="n", range=R(gte=100, lt=200))]),
        "n_value": m.Filter(must=[F(key="n", match=m.MatchValue(value=42))]),
        "tags_any": m.Filter(must=[F(key="tags", match=m.MatchAny(any=["t1", "t3"]))], must_not=[F(key="color", match=m.MatchValue(value="blue"))]),
        "ts": m.Filter(must=[F(key="ts", range=m.DatetimeRange(gte="2024-01-10T00:00:00Z", lt="2024-01-12T00:00:00Z"))]),
        "w": m.Filter(should=[F(key="w", range=R(lt=3.5)), F(key="color", match=m.MatchAny(any=["black"]))]),
    }
    out = {}
    for k, f in filters.items():
        out[k] = {"count": c.count(name, count_filter=f, exact=True).count,
                  "scroll": [p.id for p in c.scroll(name, scroll_filter=f, limit=40)[0]],
                  "query": [p.id for p in c.query_points(name, query=[1, 0, 1, 0], query_filter=f, limit=10,
                                                         search_params=m.SearchParams(exact=True)).points]}
    print(json.dumps(out))
elif phase == "index":
    for key, kind in INDEXES:
        c.create_payload_index(name, field_name=key, field_schema=kind, wait=True)
elif phase == "unindex":
    for key, _ in INDEXES:
        c.delete_payload_index(name, field_name=key, wait=True)
"#;

/// The value of counter `name` in a scrape of `addr`'s `/metrics` (0 before it counted).
fn counter(addr: &str, name: &str) -> f64 {
    let (_, text) = crate::observe::http_get(addr, "/metrics");
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
}

#[test]
fn payload_indexes_answer_filters_alike_without_parsing_payloads() {
    let py = python();
    let dir = tempfile::tempdir().unwrap();
    let meta = MetaProcesses::start(Path::new(grape_bin()), 3).expect("start grape meta processes");
    let members = meta.addrs().join(",");
    let storage = format!("file://{}", dir.path().join("objects").display());
    let (rest, metrics_a, metrics_b) = (free_port(), format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let flags_a = ["--qdrant-listen".to_string(), format!("127.0.0.1:{rest}"), "--metrics-listen".to_string(), metrics_a.clone()];
    let a = DevProcess::start_compute_with(&members, &storage, &dir.path().join("a"), &flags_a);
    let _b = DevProcess::start_compute_with(&members, &storage, &dir.path().join("b"), &["--metrics-listen".to_string(), metrics_b.clone()]);
    let url = format!("http://127.0.0.1:{rest}");
    let name = "indexed";
    let run = |phase: &str| -> String {
        let out = Command::new(&py).args(["-c", INDEXED_SCENARIO, &url, phase, name]).output().expect("run python");
        assert!(out.status.success(), "phase {phase}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let parsed = |metric: &str| counter(&metrics_a, metric) + counter(&metrics_b, metric);
    // The segments stay as written: a compaction would load new ones (and compute their
    // columns again) midway through the counts below.
    a.json(&["config", "set", "compaction/auto", "off"]);
    run("write");
    wait_until_each_holds_some(&members);
    let before = run("ask");
    assert!(before.contains("\"count\""), "{before}");

    run("index");
    // The first answers compute the new indexes' columns on each segment a node holds.
    let derived_before = parsed("grape_payload_derived_rows_total");
    assert_eq!(run("ask"), before, "the first answers with indexes differ");
    assert!(parsed("grape_payload_derived_rows_total") > derived_before, "no derived column was computed");
    // Every condition is on an indexed key: no payload is parsed to answer them again, and
    // the columns are kept (unless placement moved a segment meanwhile: the node that loads
    // it computes them again).
    let loads = || parsed("grape_segment_loads_total{outcome=\"ok\"}");
    let (matched, derived, loads_before) = (parsed("grape_payload_match_rows_total"), parsed("grape_payload_derived_rows_total"), loads());
    assert_eq!(run("ask"), before, "answers with indexes differ");
    assert_eq!(parsed("grape_payload_match_rows_total"), matched, "payload_match parsed payloads despite the indexes");
    assert!(parsed("grape_payload_derived_rows_total") == derived || loads() > loads_before, "derived columns were computed again");

    // Grape's SQL reads the typed columns by name, on both nodes' segments.
    let rows = a.json(&[
        "sql",
        r#"SELECT count(*) AS c FROM indexed WHERE payload_range("payload:num:n", NULL, 100, 200, NULL) AND payload_any("payload:str:color", 'red')"#,
    ]);
    let wanted = (0..2000).filter(|i| (100..200).contains(&(i % 300)) && i % 4 == 0).count();
    assert_eq!(rows[0]["c"], wanted, "{rows}");
    let rows = a.json(&["sql", r#"SELECT id, "payload:str:tags" AS tags, "payload:int:n" AS n FROM indexed WHERE id IN ('8', '1009') ORDER BY id"#]);
    assert_eq!(rows, serde_json::json!([{"id": "1009", "tags": ["t1", "t4"], "n": [109]}, {"id": "8", "tags": ["t1", "t3"], "n": [8]}]));

    run("unindex");
    assert_eq!(run("ask"), before, "answers after the indexes were deleted differ");
    assert!(parsed("grape_payload_match_rows_total") > matched, "without indexes, payload_match answers");
}

/// One replica of 4 shards on two nodes: waits until each node holds some segments and
/// every assigned segment is loaded.
fn wait_until_each_holds_some(members: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let nodes = compute_nodes(members);
        let live: Vec<&serde_json::Value> = nodes.iter().filter(|n| n["state"] == "live").collect();
        let held: Vec<u64> = live.iter().map(|n| n["segments"].as_u64().unwrap_or(0)).collect();
        let assigned: Vec<u64> = live.iter().map(|n| n["assigned_segments"].as_u64().unwrap_or(0)).collect();
        let busy: u64 = live.iter().map(|n| n["segments_loading"].as_u64().unwrap_or(0)).sum();
        if held.len() == 2 && held.iter().all(|h| *h > 0) && held == assigned && busy == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the segments are not spread over both nodes: {nodes:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Two replicas on two nodes: waits until each node holds every segment, none loading.
fn wait_until_both_hold_everything(members: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let nodes = compute_nodes(members);
        let live: Vec<&serde_json::Value> = nodes.iter().filter(|n| n["state"] == "live").collect();
        let held: Vec<u64> = live.iter().map(|n| n["segments"].as_u64().unwrap_or(0)).collect();
        let busy: u64 = live.iter().map(|n| n["segments_loading"].as_u64().unwrap_or(0)).sum();
        let assigned: Vec<u64> = live.iter().map(|n| n["assigned_segments"].as_u64().unwrap_or(0)).collect();
        if held.len() == 2 && held[0] > 0 && held[0] == held[1] && held == assigned && busy == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the segments are not on both nodes: {nodes:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
