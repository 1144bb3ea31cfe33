//! A cluster of real processes: three `grape meta` members and stateless `grape compute`
//! nodes sharing one object store. Any node answers any query, and a killed node costs the
//! others nothing.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use grape_compute::datagen;

use crate::harness::{cluster, free_port, grape_bin, hit_ids, vector_arg, write_parquet, DevProcess};

#[test]
fn compute_nodes_share_the_catalog_and_survive_each_others_death() {
    let dir = tempfile::tempdir().unwrap();
    let (meta, members, nodes) = cluster(dir.path(), &["a", "b"]);
    let [a, b]: [DevProcess; 2] = nodes.try_into().unwrap_or_else(|_| panic!("two nodes"));

    let first = dir.path().join("first.parquet");
    write_parquet(&first, &[datagen::batch(16, 0, 2_000, 1)]);
    a.json(&["collection", "create", "docs", "--dim", "16", "--shards", "2"]);
    a.json(&["ingest", "docs", first.to_str().unwrap()]);
    let q = vector_arg(&datagen::query(16, 5));
    let on_a = a.json(&["search", "docs", "--vector", &q, "--k", "10"]);
    let version = a.json(&["collection", "describe", "docs"])["version"].as_u64().expect("version").to_string();
    let on_b = b.json(&["search", "docs", "--vector", &q, "--k", "10", "--min-version", &version]);
    assert_eq!(hit_ids(&on_a), hit_ids(&on_b), "both nodes answer the same");
    assert_eq!(b.count("docs"), 2_000);

    let (ea, eb) = (a.endpoint.clone(), b.endpoint.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Heartbeats come every 500 ms: wait until both nodes have reported their load.
        let nodes = wait_for_compute_states(&members, &[(&ea, "live"), (&eb, "live")]);
        let assigned: u64 = nodes.iter().map(|n| n["assigned_segments"].as_u64().unwrap_or(0)).sum();
        // One replica each: the two segments' 2,000 rows are held once in all.
        if nodes.iter().map(|n| n["rows"].as_u64().unwrap_or(0)).sum::<u64>() == 2_000 && assigned == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "each node reports its load, and the 2 segments are placed: {nodes:?}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Two replicas of each segment: the placement puts every segment on both nodes.
    let info = a.json(&["collection", "set-replicas", "docs", "2"]);
    assert_eq!(info["replicas"], 2);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let nodes = wait_for_compute_states(&members, &[(&ea, "live"), (&eb, "live")]);
        if nodes.iter().all(|n| n["assigned_segments"] == 2) {
            break;
        }
        assert!(Instant::now() < deadline, "each segment is placed on both nodes: {nodes:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let err = a.fails(&["collection", "set-replicas", "docs", "0"]);
    assert!(err.contains("INVALID_ARGUMENT") && err.contains("replicas must be between 1 and 16"), "{err}");
    let err = a.fails(&["collection", "set-replicas", "nope", "2"]);
    assert!(err.contains("NOT_FOUND") && err.contains("nope"), "{err}");

    let mut a = a;
    a.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Once A is declared dead, the placement puts both segments on B.
        let nodes = wait_for_compute_states(&members, &[(&ea, "dead"), (&eb, "live")]);
        let on_b = nodes.iter().find(|n| n["addr"].as_str().map(port_of) == Some(port_of(&eb))).map(|n| n["assigned_segments"].clone());
        if on_b == Some(Value::from(2)) {
            break;
        }
        assert!(Instant::now() < deadline, "the dead node's segments are placed on the survivor: {nodes:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(b.json(&["search", "docs", "--vector", &q, "--k", "10"]), on_b, "the survivor answers as before");
    // The last live node cannot be drained: nothing could take its segments.
    let b_id = compute_nodes(&members).iter().find(|n| n["addr"].as_str().map(port_of) == Some(port_of(&eb))).expect("B")["id"].to_string();
    let out = Command::new(grape_bin()).args(["--endpoint", &members, "cluster", "drain", &b_id]).output().expect("grape cluster drain");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no other live compute node"), "{err}");
    let second = dir.path().join("second.parquet");
    write_parquet(&second, &[datagen::batch(16, 2_000, 500, 2)]);
    b.json(&["ingest", "docs", second.to_str().unwrap()]);
    assert_eq!(b.count("docs"), 2_500);

    let a = a.restart_after_kill();
    let version = b.json(&["collection", "describe", "docs"])["version"].as_u64().expect("version").to_string();
    a.json(&["search", "docs", "--vector", &q, "--k", "1", "--min-version", &version]);
    assert_eq!(a.count("docs"), 2_500, "a restarted node answers again, from wherever the segments are");
    wait_for_compute_states(&members, &[(&ea, "live"), (&eb, "live")]);
    drop(meta);
}

/// The compute nodes `grape status` on the meta group lists.
pub fn compute_nodes(members: &str) -> Vec<Value> {
    let out = Command::new(grape_bin()).args(["--endpoint", members, "status", "--output", "json"]).output().expect("grape status");
    let status: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    status["compute_nodes"].as_array().cloned().unwrap_or_default()
}

/// Waits until `grape status` on the meta group lists exactly these compute nodes (by their
/// endpoints) in these states; returns the nodes.
fn wait_for_compute_states(members: &str, expected: &[(&str, &str)]) -> Vec<Value> {
    let want: Vec<(u16, String)> = expected.iter().map(|(e, s)| (port_of(e), s.to_string())).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new(grape_bin()).args(["--endpoint", members, "status", "--output", "json"]).output().expect("grape status");
        let status: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let nodes: Vec<Value> = status["compute_nodes"].as_array().cloned().unwrap_or_default();
        let mut seen: Vec<(u16, String)> = nodes
            .iter()
            .map(|n| {
                (port_of(n["addr"].as_str().unwrap_or("")), n["state"].as_str().unwrap_or("").split(':').next().unwrap_or("").to_string())
            })
            .collect();
        seen.sort();
        let mut wanted = want.clone();
        wanted.sort();
        if seen == wanted {
            return nodes;
        }
        assert!(Instant::now() < deadline, "compute nodes are {seen:?}, expected {wanted:?}: {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The port of `host:port` or `http://host:port`.
pub fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0)
}

#[test]
fn compute_nodes_started_with_their_meta_group_wait_for_it() {
    let dir = tempfile::tempdir().unwrap();
    // The members and the nodes start at the same moment: the nodes reach the group before it
    // has a leader, and before its log holds anything but initialisation and membership.
    let _meta = grape_meta::testing::MetaProcesses::spawn(std::path::Path::new(grape_bin()), 3).expect("spawn grape meta");
    let members = _meta.addrs().join(",");
    let storage = format!("file://{}", dir.path().join("objects").display());
    let a = DevProcess::start_compute(&members, &storage, &dir.path().join("a"));
    let b = DevProcess::start_compute(&members, &storage, &dir.path().join("b"));
    a.json(&["collection", "create", "docs", "--dim", "8"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = b.json(&["collection", "list"]);
        if listed.as_array().is_some_and(|l| l.iter().any(|c| c["name"] == "docs")) {
            break;
        }
        assert!(Instant::now() < deadline, "node b never saw the collection node a created: {listed}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child process killed when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The compute nodes the meta group `members` lists, once `done` holds for them.
fn compute_nodes_when(members: &str, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new(grape_bin()).args(["--endpoint", members, "status", "--output", "json"]).output().unwrap();
        let status: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let nodes = status["compute_nodes"].as_array().cloned().unwrap_or_default();
        if done(&nodes) {
            return nodes;
        }
        assert!(Instant::now() < deadline, "{what}: {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_compute_node_listening_on_every_interface_registers_its_advertised_address_and_keeps_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let meta = grape_meta::testing::MetaProcesses::start(std::path::Path::new(grape_bin()), 3).expect("start grape meta");
    let members = meta.addrs().join(",");
    let storage = format!("file://{}", dir.path().join("objects").display());
    let port = free_port();
    let compute = |extra: &[&str]| {
        let mut cmd = Command::new(grape_bin());
        cmd.args(["compute", "--meta", &members, "--storage", &storage, "--listen", &format!("0.0.0.0:{port}")])
            .arg("--data-dir")
            .arg(dir.path().join("node"))
            .args(extra);
        cmd
    };
    // Every host of a cluster may listen on 0.0.0.0:PORT: that is no address to register.
    let refused = compute(&[]).output().unwrap();
    assert!(!refused.status.success());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains("needs --advertise HOST:PORT"), "{error}");

    let advertised = format!("127.0.0.1:{port}");
    let start = || Killed(compute(&["--advertise", &advertised]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    let node = start();
    let nodes = compute_nodes_when(&members, "the node registers", |n| n.len() == 1 && n[0]["state"] == "live");
    assert_eq!(nodes[0]["addr"], advertised.as_str(), "{nodes:?}");
    let id = nodes[0]["id"].as_u64().unwrap();
    let kept: u64 = std::fs::read_to_string(dir.path().join("node").join("node-id")).unwrap().trim().parse().unwrap();
    assert_eq!(kept, id, "the id is kept in the data directory");
    drop(node);
    // A restart on the same data directory is the same node, not a second one.
    let _node = start();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new(grape_bin()).args(["--endpoint", &advertised, "status", "--output", "json"]).output().unwrap();
        if out.status.success() {
            let status: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(status["node_id"].as_u64(), Some(id), "the restarted process has the same id: {status}");
            break;
        }
        assert!(Instant::now() < deadline, "the restarted node never answered");
        std::thread::sleep(Duration::from_millis(100));
    }
    compute_nodes_when(&members, "the restarted node is the same node, not a second one", |n| {
        n.len() == 1 && n[0]["id"].as_u64() == Some(id) && n[0]["state"] == "live"
    });
}
