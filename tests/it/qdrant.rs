//! Qdrant's REST API with the official Python `qdrant-client`: the conformance suite of
//! `tests/qdrant/` (the same scenario against Grape and against the client's local mode,
//! compared), the payload of points written through it read back with Grape's SQL, and a
//! client that keeps calling one gateway of a cluster while another compute node is killed.

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
