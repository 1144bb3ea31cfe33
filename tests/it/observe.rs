//! The operators' HTTP port: `/metrics` read by the official Prometheus client's text-format
//! parser, with counters that move by exactly the requests made; `/readyz` following the meta
//! group; and the status page of a 3 meta + 2 compute cluster in headless Chromium.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use grape_meta::testing::MetaProcesses;
use grape_proto::v1;
use tonic::Code;

use crate::harness::{free_port, grape_bin, write_parquet, DevProcess, ServerFlags};

/// `GET path` on `addr`: the status code and the body.
pub(crate) fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let code = answer.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, body)
}

/// Every sample of a scrape of `addr`, as the Prometheus client library parses it:
/// `name{label="value",…}` (labels sorted) → value.
fn scrape(addr: &str) -> BTreeMap<String, f64> {
    let (code, text) = http_get(addr, "/metrics");
    assert_eq!(code, 200, "{text}");
    let parse = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
samples = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        samples[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps(samples))
"#;
    let mut child = Command::new(crate::qdrant::python())
        .args(["-c", parse])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write metrics");
    let out = child.wait_with_output().expect("parse");
    assert!(out.status.success(), "the Prometheus parser refused /metrics:\n{text}");
    serde_json::from_slice(&out.stdout).expect("samples as JSON")
}

fn sample(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    samples.get(key).copied().unwrap_or(0.0)
}

#[test]
fn metrics_parse_as_prometheus_text_and_count_exactly_the_requests_made() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let grape = DevProcess::start_with(dir.path(), ServerFlags { args: vec!["--metrics-listen".into(), metrics.clone()], env: Vec::new() });
    grape.json(&["collection", "create", "docs", "--dim", "8"]);
    let file = dir.path().join("rows.parquet");
    write_parquet(&file, &[grape_compute::datagen::batch(8, 0, 500, 1)]);
    grape.json(&["ingest", "docs", file.to_str().unwrap()]);

    let ok = r#"grape_rpc_requests_total{code="OK",method="Search",service="grape.v1.Grape"}"#;
    let bad = r#"grape_rpc_requests_total{code="INVALID_ARGUMENT",method="Search",service="grape.v1.Grape"}"#;
    let timed = r#"grape_rpc_request_duration_seconds_count{method="Search",service="grape.v1.Grape"}"#;
    let before = scrape(&metrics);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut client = v1::grape_client::GrapeClient::connect(grape.endpoint.clone()).await.unwrap();
        for dim in [8, 8, 8, 8, 8, 8, 8, 3, 3, 3] {
            let request = v1::SearchRequest { collection: "docs".into(), vector: vec![0.5; dim], k: 5, ..Default::default() };
            match client.search(request).await {
                Ok(_) => assert_eq!(dim, 8),
                Err(status) => assert_eq!((dim, status.code()), (3, Code::InvalidArgument), "{status}"),
            }
        }
    });
    let after = scrape(&metrics);
    assert_eq!(sample(&after, ok) - sample(&before, ok), 7.0, "OK searches");
    assert_eq!(sample(&after, bad) - sample(&before, bad), 3.0, "refused searches");
    assert_eq!(sample(&after, timed) - sample(&before, timed), 10.0, "timed searches");
    // What the node holds, the Raft state, storage and the catalog are all there.
    assert_eq!(sample(&after, "grape_node_rows{}"), 500.0);
    assert_eq!(sample(&after, "grape_raft_is_leader{}"), 1.0);
    assert_eq!(sample(&after, "grape_collections{}"), 1.0);
    assert!(sample(&after, r#"grape_object_store_requests_total{operation="put"}"#) >= 1.0, "{after:?}");
    assert!(sample(&after, r#"grape_segment_loads_total{outcome="ok"}"#) >= 1.0, "{after:?}");
    assert!(after.keys().any(|k| k.starts_with("grape_jobs{")), "{after:?}");
    let (code, body) = http_get(&metrics, "/healthz");
    assert_eq!(code, 200, "{body}");
}

/// Polls `/readyz` on `addr` until its code is `want`; returns the body.
fn wait_readiness(addr: &str, want: u16, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let (code, body) = http_get(addr, "/readyz");
        if code == want {
            return body;
        }
        assert!(Instant::now() < deadline, "/readyz stayed {code} ({body}), expected {want}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_compute_node_is_ready_only_while_it_reaches_the_meta_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut group = MetaProcesses::start(Path::new(grape_bin()), 3).expect("start grape meta");
    let members = group.addrs().join(",");
    let storage = format!("file://{}", dir.path().join("objects").display());
    let metrics = format!("127.0.0.1:{}", free_port());
    let _node = DevProcess::start_compute_with(&members, &storage, &dir.path().join("a"), &["--metrics-listen".into(), metrics.clone()]);
    wait_readiness(&metrics, 200, Duration::from_secs(20));
    for id in group.ids() {
        group.kill(id);
    }
    let why = wait_readiness(&metrics, 503, Duration::from_secs(20));
    assert!(why.contains("meta"), "{why}");
    for id in group.ids() {
        group.start_member(id).expect("restart member");
    }
    wait_readiness(&metrics, 200, Duration::from_secs(60));
}

/// Debian's Chromium (`.ci/run` installs it).
fn chromium() -> String {
    ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("headless Chromium: install Debian's `chromium` package (.ci/run does)")
        .to_string()
}

/// Chromium's arguments for a headless run on this machine: no sandbox (tests may run as
/// root), no GPU, and no background traffic to hosts a closed network refuses.
fn headless(profile: &Path) -> Vec<String> {
    let fixed = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"];
    let more = ["--disable-component-update", "--disable-sync", "--hide-scrollbars"];
    let mut args: Vec<String> = fixed.iter().chain(&more).map(|a| a.to_string()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    args
}

#[test]
fn the_status_page_shows_the_clusters_nodes_and_collections_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let group = MetaProcesses::start(Path::new(grape_bin()), 3).expect("start grape meta");
    let members = group.addrs().join(",");
    let storage = format!("file://{}", dir.path().join("objects").display());
    let metrics = format!("127.0.0.1:{}", free_port());
    let a = DevProcess::start_compute_with(&members, &storage, &dir.path().join("a"), &["--metrics-listen".into(), metrics.clone()]);
    let _b = DevProcess::start_compute(&members, &storage, &dir.path().join("b"));
    a.json(&["collection", "create", "docs", "--dim", "8", "--shards", "2"]);
    let file = dir.path().join("rows.parquet");
    write_parquet(&file, &[grape_compute::datagen::batch(8, 0, 1_000, 1)]);
    a.json(&["ingest", "docs", file.to_str().unwrap()]);
    let nodes: Vec<String> = crate::compute_cluster::compute_nodes(&members).iter().filter_map(|n| n["id"].as_u64()).map(|id| id.to_string()).collect();
    assert_eq!(nodes.len(), 2, "{nodes:?}");

    let url = format!("http://{metrics}/");
    let profile = tempfile::tempdir().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let dom = loop {
        let out = Command::new(chromium()).args(headless(profile.path())).arg("--dump-dom").arg(&url).output().expect("run chromium");
        let dom = String::from_utf8_lossy(&out.stdout).into_owned();
        let shown = dom.contains(">docs<") && dom.contains("Ready.") && nodes.iter().all(|id| dom.contains(&format!("<td>{id}</td>")));
        if shown {
            break dom;
        }
        assert!(Instant::now() < deadline, "the page never showed both nodes, the collection and readiness:\n{dom}\n{}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(500));
    };
    // Three members, one of them the leader, and the leader named.
    assert_eq!(dom.matches("<td>voter</td>").count() + dom.matches("<td>leader</td>").count(), 3, "{dom}");
    let leader = group.wait_for_leader(Duration::from_secs(10)).expect("leader");
    assert!(dom.contains(&format!("<b id=\"leader\">{leader}</b>")), "{dom}");

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("grape-status-page.png");
    let _ = std::fs::remove_file(&shot);
    let out = Command::new(chromium())
        .args(headless(profile.path()))
        .args(["--window-size=1280,1100", &format!("--screenshot={}", shot.display()), &url])
        .output()
        .expect("run chromium");
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "no screenshot ({size} bytes): {}", String::from_utf8_lossy(&out.stderr));
    println!("status page screenshot: {}", shot.display());
}
