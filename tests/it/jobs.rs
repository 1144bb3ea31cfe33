//! The job queue with real processes: compaction (manual and automatic, with upserts running
//! meanwhile), server-side ingest, workers killed with SIGKILL or stopped with SIGSTOP past
//! their lease, hundreds of small jobs under random kills, and the bad input of the job API.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use grape_compute::datagen;
use grape_proto::v1::{self, grape_client::GrapeClient};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tonic::transport::Channel;

use crate::harness::{cluster, write_parquet, DevProcess};
use crate::hostile_input::client;
use crate::upsert_delete::{check, ipc, Model, DIM, KEYS};

/// Waits until `done` holds for the jobs `grape jobs list` shows, or panics after `secs`.
pub(crate) fn wait_jobs(node: &DevProcess, secs: u64, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let jobs = node.json(&["jobs", "list", "--limit", "1000"]);
        let jobs = jobs.as_array().cloned().unwrap_or_default();
        if done(&jobs) {
            return jobs;
        }
        assert!(Instant::now() < deadline, "{what}: jobs never got there: {jobs:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `f` to completion on a fresh runtime.
fn runtime_block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Runtime::new().expect("runtime").block_on(f)
}

/// Whether every job has finished (succeeded, dead or cancelled).
fn all_finished(jobs: &[Value]) -> bool {
    jobs.iter().all(|j| matches!(j["state"].as_str(), Some("succeeded" | "dead" | "cancelled")))
}

/// Segments per shard that `describe` reports, and the collection's version.
fn segments_and_version(node: &DevProcess, name: &str) -> (u64, u64) {
    let info = node.json(&["collection", "describe", name]);
    (info["segments"].as_u64().expect("segments"), info["version"].as_u64().expect("version"))
}

/// Upserts `rows` one-row inserts (some replacing, some deleted after) into `kv` and returns
/// the model and the last version.
async fn one_row_writes(c: &mut GrapeClient<Channel>, writes: usize, rng: &mut StdRng, model: &mut Model) -> u64 {
    let mut version = 0;
    for _ in 0..writes {
        let id = rng.gen_range(0..KEYS * 8);
        let row = (id, (0..DIM).map(|_| rng.gen_range(-1.0..1.0)).collect::<Vec<f32>>(), rng.gen_range(0..100));
        if rng.gen_bool(0.05) {
            let reply = c.delete(v1::DeleteRequest { collection: "kv".into(), ids: vec![id], ..Default::default() }).await;
            version = reply.expect("delete").into_inner().version;
            model.remove(&id);
        } else {
            let reply = c.insert(v1::InsertRequest { collection: "kv".into(), arrow_ipc: ipc(std::slice::from_ref(&row)) }).await;
            version = reply.expect("upsert").into_inner().version;
            model.insert(row.0, (row.1, row.2));
        }
    }
    version
}

#[test]
fn one_row_inserts_compact_to_one_segment_per_shard_and_answer_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let grape = DevProcess::start(&dir.path().join("data"));
    grape.json(&["config", "set", "compaction/auto", "off"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let mut model = Model::new();
    runtime.block_on(async {
        let mut c = client(&grape).await;
        let create = v1::CreateCollectionRequest { name: "kv".into(), dim: DIM as u32, shards: 2, ..Default::default() };
        c.create_collection(create).await.expect("create");
        let version = one_row_writes(&mut c, 1000, &mut rng, &mut model).await;
        check(&mut c, &model, version, &mut rng, "before compaction").await;
    });
    let (before, _) = segments_and_version(&grape, "kv");
    assert!(before > 500, "one segment per insert before compaction, got {before}");
    let jobs = grape.json(&["collection", "compact", "kv", "--wait"]);
    assert_eq!(jobs.as_array().map(Vec::len), Some(2), "one job per shard: {jobs}");
    assert!(jobs.as_array().unwrap().iter().all(|j| j["state"] == "succeeded"), "{jobs}");
    let (after, version) = segments_and_version(&grape, "kv");
    assert_eq!(after, 2, "one segment per shard after compaction");
    runtime.block_on(async {
        let mut c = client(&grape).await;
        for round in 0..5 {
            check(&mut c, &model, version, &mut rng, &format!("after compaction, round {round}")).await;
        }
    });
    // The shard's delete logs went with the compaction (every segment is newer than them).
    let info = grape.json(&["collection", "describe", "kv"]);
    assert_eq!(info["rows"].as_u64(), Some(model.len() as u64), "{info}");
    // A restart reads the compacted manifest and answers the same.
    let grape = grape.restart_after_kill();
    runtime.block_on(async {
        let mut c = client(&grape).await;
        check(&mut c, &model, version, &mut rng, "after compaction and a restart").await;
    });
}

#[test]
fn upserts_while_automatic_compaction_runs_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let grape = DevProcess::start(&dir.path().join("data"));
    // Slow compactions down so that writes land while they run.
    grape.json(&["config", "set", "jobs/pause_ms", "30"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let mut model = Model::new();
    runtime.block_on(async {
        let mut c = client(&grape).await;
        let create = v1::CreateCollectionRequest { name: "kv".into(), dim: DIM as u32, shards: 2, ..Default::default() };
        c.create_collection(create).await.expect("create");
        let mut reader = c.clone();
        for round in 0..12 {
            let version = one_row_writes(&mut c, 40, &mut rng, &mut model).await;
            check(&mut reader, &model, version, &mut rng, &format!("round {round}, compactions running")).await;
        }
    });
    let jobs = wait_jobs(&grape, 60, "automatic compactions", all_finished);
    let compactions = jobs.iter().filter(|j| j["kind"] == "compact" && j["state"] == "succeeded").count();
    assert!(compactions >= 2, "the policy compacted the shards (more than 8 small segments): {jobs:#?}");
    assert!(jobs.iter().all(|j| j["state"] == "succeeded"), "{jobs:#?}");
    let (_, version) = segments_and_version(&grape, "kv");
    runtime.block_on(async {
        let mut c = client(&grape).await;
        check(&mut c, &model, version, &mut rng, "after the compactions").await;
    });
}

/// Writes `files` Parquet files of `rows` rows each (ids `i*rows..`) under `dir`.
fn parquet_files(dir: &Path, files: usize, rows: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..files {
        let batch = datagen::batch(8, (i * rows) as u64, rows, i as u64);
        write_parquet(&dir.join(format!("part-{i:03}.parquet")), &[batch]);
    }
}

/// The node id each process reports, in the order given.
pub(crate) fn node_ids(nodes: &[DevProcess]) -> Vec<u64> {
    nodes.iter().map(|n| n.json(&["status"])["node_id"].as_u64().expect("node id")).collect()
}

/// Waits until job `id` is running with some progress, and returns its worker.
pub(crate) fn running_with_progress(node: &DevProcess, id: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = node.json(&["jobs", "show", &id.to_string()]);
        let done: u64 = job["progress"].as_str().and_then(|p| p.split('/').next()).and_then(|d| d.parse().ok()).unwrap_or(0);
        if job["state"] == "running" && done >= 1 {
            return job["worker"].as_u64().expect("worker");
        }
        assert!(job["state"] != "succeeded", "job {id} finished before it could be interrupted: {job}");
        assert!(Instant::now() < deadline, "job {id} never made progress: {job}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn killed_and_stopped_workers_lose_their_jobs_and_rows_land_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_meta, _members, mut nodes) = cluster(dir.path(), &["a", "b"]);
    let files = dir.path().join("landing");
    parquet_files(&files, 10, 500);
    let ids = node_ids(&nodes);
    // Config and status go through any compute node to the meta group.
    nodes[0].json(&["config", "set", "jobs/lease_secs", "2"]);
    nodes[0].json(&["config", "set", "jobs/pause_ms", "400"]);
    nodes[0].json(&["config", "set", "compaction/auto", "off"]);
    let read = nodes[1].json(&["config", "get", "jobs/pause_ms"]);
    assert_eq!(read["value"], "400", "a setting made through one node is read through another: {read}");
    let status = nodes[1].json(&["status"]);
    assert_eq!(status["meta_members"].as_array().map(Vec::len), Some(3), "a compute node's status shows the meta group: {status}");
    assert!(status["meta_leader_id"].as_u64() > Some(0), "{status}");
    // Raw meta commands are not forwarded: a node's public port is no way into the group's log.
    runtime_block_on(async {
        let mut meta = grape_proto::meta::v1::meta_client::MetaClient::connect(nodes[0].endpoint.clone()).await.expect("connect");
        let raw = grape_proto::meta::v1::WriteRequest { command_json: r#"{"DrainNode":{"id":1}}"#.into() };
        let refused = meta.write(raw).await.expect_err("a raw write through a compute node");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    });
    nodes[0].json(&["collection", "create", "docs", "--dim", "8", "--shards", "2"]);
    let url = format!("file://{}/part-*.parquet", files.display());

    // SIGKILL the worker of a server-side ingest midway: another node runs it, rows once.
    let job = nodes[0].json(&["ingest", "docs", &url, "--detach"]);
    let id = job["id"].as_u64().expect("job id");
    let worker = running_with_progress(&nodes[0], id);
    let victim = ids.iter().position(|n| *n == worker).expect("worker is one of the nodes");
    nodes[victim].kill();
    let survivor = &nodes[1 - victim];
    let jobs = wait_jobs(survivor, 90, "ingest after a kill", |jobs| jobs.iter().any(|j| j["id"] == id && j["state"] == "succeeded"));
    let done = jobs.iter().find(|j| j["id"] == id).unwrap();
    assert!(done["attempt"].as_u64() >= Some(2), "a second attempt finished it: {done}");
    assert_eq!(survivor.count("docs"), 5000, "every row exactly once");
    let (_, version_after_ingest) = segments_and_version(survivor, "docs");
    assert_eq!(version_after_ingest, 1, "one commit: the killed attempt published nothing");
    let revived = nodes.remove(victim).restart_after_kill();
    nodes.insert(victim, revived);

    // SIGKILL the worker of a compaction midway (10 segments per shard).
    let compact = nodes[0].json(&["collection", "compact", "docs", "--shard", "0"]);
    let id = compact[0]["id"].as_u64().expect("job id");
    let worker = running_with_progress(&nodes[0], id);
    let victim = ids.iter().position(|n| *n == worker).expect("worker is one of the nodes");
    nodes[victim].kill();
    let survivor = &nodes[1 - victim];
    wait_jobs(survivor, 90, "compaction after a kill", |jobs| jobs.iter().any(|j| j["id"] == id && j["state"] == "succeeded"));
    assert_eq!(survivor.count("docs"), 5000, "compaction keeps every row");
    let revived = nodes.remove(victim).restart_after_kill();
    nodes.insert(victim, revived);

    // SIGSTOP the worker past its lease, let another node finish, then SIGCONT: the stopped
    // attempt's lease is gone, so it commits nothing.
    nodes[0].json(&["collection", "create", "again", "--dim", "8", "--shards", "2"]);
    let job = nodes[0].json(&["ingest", "again", &url, "--detach"]);
    let id = job["id"].as_u64().expect("job id");
    let worker = running_with_progress(&nodes[0], id);
    let stopped = ids.iter().position(|n| *n == worker).expect("worker is one of the nodes");
    nodes[stopped].signal("STOP");
    let other = &nodes[1 - stopped];
    wait_jobs(other, 90, "ingest after a stop", |jobs| jobs.iter().any(|j| j["id"] == id && j["state"] == "succeeded"));
    nodes[stopped].signal("CONT");
    // Give the resumed worker time to try whatever it was about to do.
    std::thread::sleep(Duration::from_secs(6));
    let job = other.json(&["jobs", "show", &id.to_string()]);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(other.count("again"), 5000);
    let (_, version) = segments_and_version(other, "again");
    assert_eq!(version, 1, "only the attempt holding the lease committed");
}

#[test]
fn hundreds_of_small_jobs_under_random_kills_run_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_meta, _members, mut nodes) = cluster(dir.path(), &["a", "b"]);
    const JOBS: usize = 500;
    const ROWS: usize = 4;
    let files = dir.path().join("small");
    parquet_files(&files, JOBS, ROWS);
    nodes[0].json(&["config", "set", "jobs/lease_secs", "2"]);
    nodes[0].json(&["config", "set", "compaction/auto", "off"]);
    // Each job pauses before its commit, so that kills land while attempts are running.
    nodes[0].json(&["config", "set", "jobs/pause_ms", "100"]);
    nodes[0].json(&["collection", "create", "docs", "--dim", "8", "--shards", "2"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut c = client(&nodes[0]).await;
        for i in 0..JOBS {
            let url = format!("file://{}/part-{i:03}.parquet", files.display());
            let req = v1::SubmitIngestRequest { collection: "docs".into(), urls: vec![url], max_attempts: 20 };
            c.submit_ingest(req).await.expect("submit");
        }
    });
    let mut rng = StdRng::seed_from_u64(9);
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut kills = 0;
    loop {
        std::thread::sleep(Duration::from_millis(rng.gen_range(300..1500)));
        let jobs = nodes[0].json(&["jobs", "list", "--limit", "1000"]);
        let jobs = jobs.as_array().cloned().unwrap_or_default();
        if all_finished(&jobs) {
            break;
        }
        assert!(Instant::now() < deadline, "jobs did not finish: {}", jobs.iter().filter(|j| j["state"] != "succeeded").count());
        // Kill one node at random and start it again (never both at once).
        let victim = rng.gen_range(0..nodes.len());
        let node = nodes.remove(victim).restart_after_kill();
        nodes.insert(victim, node);
        kills += 1;
    }
    assert!(kills >= 2, "the test killed workers while jobs ran");
    let jobs = nodes[0].json(&["jobs", "list", "--state", "succeeded", "--limit", "1000"]);
    assert_eq!(jobs.as_array().map(Vec::len), Some(JOBS), "0 lost");
    let (_, version) = segments_and_version(&nodes[0], "docs");
    assert_eq!(version as usize, JOBS, "0 run twice: one commit per job");
    assert_eq!(nodes[0].count("docs"), (JOBS * ROWS) as u64);
    let attempts: BTreeSet<u64> = jobs.as_array().unwrap().iter().filter_map(|j| j["attempt"].as_u64()).collect();
    eprintln!("{kills} kills; attempts seen: {attempts:?}");
}

#[test]
fn bad_job_requests_get_clear_errors_and_failing_jobs_die_then_revive() {
    let dir = tempfile::tempdir().unwrap();
    let grape = DevProcess::start(&dir.path().join("data"));
    grape.json(&["collection", "create", "docs", "--dim", "8"]);
    for verb in ["show", "retry", "cancel"] {
        let error = grape.fails(&["jobs", verb, "42"]);
        assert!(error.contains("NOT_FOUND: job 42 does not exist"), "jobs {verb} 42: {error}");
    }
    assert!(grape.fails(&["jobs", "list", "--state", "sleeping"]).contains("unknown job state"));
    assert!(grape.fails(&["collection", "compact", "nope"]).contains("does not exist"));
    assert!(grape.fails(&["collection", "compact", "docs", "--shard", "3"]).contains("has 1 shards"));
    let landing = dir.path().join("landing");
    std::fs::create_dir_all(&landing).unwrap();
    let none = format!("file://{}/*.parquet", landing.display());
    assert!(grape.fails(&["ingest", "docs", &none, "--detach"]).contains("matches no file"));
    assert!(grape.fails(&["ingest", "nope", &none, "--detach"]).contains("does not exist"));
    assert!(grape.fails(&["ingest", "docs", "relative.parquet", "--detach"]).contains("s3://"));
    let jobs = grape.json(&["jobs", "list"]);
    assert_eq!(jobs, Value::Array(vec![]), "refused requests enqueue nothing");

    // A file that is not Parquet: the job fails on every attempt, with backoff, then is dead.
    std::fs::write(landing.join("broken.parquet"), b"not parquet at all").unwrap();
    let broken = format!("file://{}/broken.parquet", landing.display());
    let job = grape.json(&["ingest", "docs", &broken, "--detach"]);
    let id = job["id"].as_u64().unwrap().to_string();
    let out = grape.cli(&["ingest", "docs", &broken]);
    assert!(!out.status.success(), "following a dying job fails");
    let jobs = wait_jobs(&grape, 60, "a broken ingest", |jobs| jobs.iter().all(|j| j["state"] == "dead"));
    let dead = jobs.iter().find(|j| j["id"].as_u64().map(|i| i.to_string()) == Some(id.clone())).unwrap();
    assert_eq!(dead["attempt"], 3, "3 attempts by default: {dead}");
    assert!(dead["last_error"].as_str().unwrap().contains("not a readable Parquet file"), "{dead}");
    assert!(grape.fails(&["jobs", "cancel", &id]).contains("only a pending, running or failed job"));
    let revived = grape.json(&["jobs", "retry", &id]);
    assert_eq!(revived["state"], "pending");
    let cancelled = grape.json(&["jobs", "cancel", &id]);
    assert_eq!(cancelled["state"], "cancelled");
    let info = grape.json(&["collection", "describe", "docs"]);
    assert_eq!((info["rows"].as_u64(), info["version"].as_u64()), (Some(0), Some(0)), "nothing was ingested: {info}");
    let status = grape.json(&["status"]);
    assert!(status["jobs"]["dead"].as_u64() >= Some(1), "status shows the queue per state: {status}");
}
