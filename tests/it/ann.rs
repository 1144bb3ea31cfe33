//! ANN indexes with real processes: built by index-build jobs once a segment is large enough,
//! used by searches (fewer rows compared than the collection holds, same hits as an exact
//! scan), never returning replaced or deleted rows, loaded (not rebuilt) after a restart,
//! rebuilt when the quantization changes, and the bad input of the new request fields.

use std::time::{Duration, Instant};

use grape_proto::v1::{self, grape_client::GrapeClient};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tonic::transport::Channel;

use crate::harness::{cluster, DevProcess};
use crate::hostile_input::client;
use crate::jobs::{node_ids, running_with_progress, wait_jobs};
use crate::upsert_delete::{ids_and_prices, ipc, DIM};

/// Rows of the indexed segment: enough that a graph search compares far fewer rows than
/// a scan (a few thousand at the default ef), which is how the tests see the index used.
const ROWS: u64 = 20_000;

/// Build jobs that `grape jobs list` shows as succeeded.
fn builds_succeeded(jobs: &[Value]) -> usize {
    jobs.iter().filter(|j| j["kind"] == "build_index" && j["state"] == "succeeded").count()
}

/// Random rows `(id, vector, price = id % 20)` with ids `0..ROWS`, and 20 random queries.
fn rows_and_queries(seed: u64) -> (Vec<(u64, Vec<f32>, i64)>, Vec<Vec<f32>>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let rows = (0..ROWS).map(|id| (id, (0..DIM).map(|_| rng.gen_range(-1.0..1.0)).collect(), (id % 20) as i64)).collect();
    let queries = (0..20).map(|_| (0..DIM).map(|_| rng.gen_range(-1.0..1.0)).collect()).collect();
    (rows, queries)
}

/// A search of `docs` for `vector`: (id, price) of the hits, and the rows compared.
async fn search(c: &mut GrapeClient<Channel>, vector: &[f32], filter: &str, exact: bool) -> (Vec<(u64, i64)>, u64) {
    let req = v1::SearchRequest {
        collection: "docs".into(),
        vector: vector.to_vec(),
        k: 10,
        filter: filter.into(),
        exact,
        ..Default::default()
    };
    let reply = c.search(req).await.expect("search").into_inner();
    (ids_and_prices(&reply.arrow_ipc), reply.rows_scanned)
}

/// Waits until `describe docs` satisfies `done`, or panics after 120 s.
pub(crate) fn wait_describe(grape: &DevProcess, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let info = grape.json(&["collection", "describe", "docs"]);
        if done(&info) {
            return info;
        }
        assert!(Instant::now() < deadline, "{what}: never happened: {info:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn indexes_are_built_by_jobs_used_by_searches_and_loaded_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut grape = DevProcess::start(dir.path());
    grape.json(&["config", "set", "index/min_rows", "1000"]);
    let err = grape.fails(&["collection", "create", "bad", "--dim", "4", "--quantization", "pq"]);
    assert!(err.contains("unknown quantization \"pq\"") && err.contains("sq8"), "{err}");
    grape.json(&["collection", "create", "docs", "--dim", &DIM.to_string(), "--quantization", "sq8"]);
    let (rows, queries) = rows_and_queries(12);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut c = rt.block_on(client(&grape));
    rt.block_on(c.insert(v1::InsertRequest { collection: "docs".into(), arrow_ipc: ipc(&rows) })).expect("insert");

    // The segment is large enough: a build job indexes it, and describe says so.
    wait_jobs(&grape, 120, "the index build", |jobs| builds_succeeded(jobs) == 1);
    let info = wait_describe(&grape, "the index attached", |i| i["indexed_segments"] == 1);
    assert_eq!(info["quantization"], "sq8");
    assert!(info["index_bytes_per_vector"].as_f64() > Some(0.0), "{info:#}");

    // Searches use it (fewer rows compared than stored) and find what an exact scan finds.
    let check_recall = |c: &mut GrapeClient<Channel>| {
        let (mut found, mut scanned_max) = (0, 0);
        for q in &queries {
            let (exact, scanned_exact) = rt.block_on(search(c, q, "", true));
            assert_eq!(scanned_exact, ROWS);
            let (ann, scanned) = rt.block_on(search(c, q, "", false));
            assert_eq!(ann.len(), 10);
            found += ann.iter().filter(|h| exact.contains(h)).count();
            scanned_max = scanned_max.max(scanned);
        }
        assert!(scanned_max < ROWS, "the index is used: at most {scanned_max} of {ROWS} rows compared");
        let recall = found as f64 / (queries.len() * 10) as f64;
        assert!(recall >= 0.95, "recall@10 {recall}");
    };
    check_recall(&mut c);
    // A filter never makes a search return fewer than k hits when k rows match.
    for q in &queries[..5] {
        let (hits, _) = rt.block_on(search(&mut c, q, "price = 3", false));
        assert_eq!(hits.len(), 10);
        assert!(hits.iter().all(|(_, price)| *price == 3), "{hits:?}");
    }

    // Bad request fields get clear errors.
    for (req, wanted) in [
        (v1::SearchRequest { ef: Some(0), ..Default::default() }, "ef is 0"),
        (v1::SearchRequest { ef: Some(1_000_000), ..Default::default() }, "ef is 1000000"),
        (v1::SearchRequest { oversampling: Some(0.5), ..Default::default() }, "oversampling is 0.5"),
    ] {
        let req = v1::SearchRequest { collection: "docs".into(), vector: queries[0].clone(), k: 10, ..req };
        let status = rt.block_on(c.search(req)).expect_err("bad field");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(wanted), "{status:?}");
    }
    let err = grape.fails(&["search", "docs", "--vector", "[0,0,0,0]", "--ef", "0"]);
    assert!(err.contains("ef is 0"), "{err}");

    // Upserts and deletes after the build: replaced and deleted rows never appear.
    let replaced: Vec<(u64, Vec<f32>, i64)> = (0..100).map(|id| (id, vec![50.0; DIM], 1000)).collect();
    rt.block_on(c.insert(v1::InsertRequest { collection: "docs".into(), arrow_ipc: ipc(&replaced) })).expect("upsert");
    let deleted: Vec<u64> = (100..300).collect();
    let delete = v1::DeleteRequest { collection: "docs".into(), ids: deleted.clone(), ..Default::default() };
    rt.block_on(c.delete(delete)).expect("delete");
    for q in &queries {
        let (hits, _) = rt.block_on(search(&mut c, q, "", false));
        assert_eq!(hits.len(), 10);
        for (id, price) in hits {
            assert!(!deleted.contains(&id), "deleted row {id} returned");
            assert!(id >= 100 || price == 1000, "row {id} returned with its replaced payload {price}");
        }
    }

    // A restart loads the artifact: no new build, and searches still use the index.
    let builds_before = builds_succeeded(&wait_jobs(&grape, 10, "jobs", |_| true));
    drop(c);
    grape = grape.restart_after_kill();
    let mut c = rt.block_on(client(&grape));
    let status = grape.json(&["status"]);
    assert!(status["indexes_loaded"].as_u64() >= Some(1), "{status:#}");
    let (_, scanned) = rt.block_on(search(&mut c, &queries[0], "", false));
    assert!(scanned < ROWS, "after a restart the index answers ({scanned} rows compared)");
    let jobs = wait_jobs(&grape, 10, "jobs", |_| true);
    assert_eq!(builds_succeeded(&jobs), builds_before, "nothing was rebuilt: {jobs:#?}");
    assert!(jobs.iter().all(|j| j["kind"] != "build_index" || j["state"] == "succeeded"), "{jobs:#?}");

    // Changing the quantization rebuilds the index; searches answer throughout.
    let info = grape.json(&["collection", "set-quantization", "docs", "bq"]);
    assert_eq!(info["quantization"], "bq");
    wait_jobs(&grape, 120, "the rebuild", |jobs| builds_succeeded(jobs) == builds_before + 1);
    wait_describe(&grape, "the bq index attached", |i| i["indexed_segments"] == 1 && i["quantization"] == "bq");
    let (hits, _) = rt.block_on(search(&mut c, &queries[0], "", false));
    assert_eq!(hits.len(), 10);
    let err = grape.fails(&["collection", "set-quantization", "docs", "int4"]);
    assert!(err.contains("unknown quantization"), "{err}");

    // A corrupt artifact is reported and the segment is searched exactly: nothing is lost.
    let info = grape.json(&["collection", "describe", "docs"]);
    for artifact in files_ending(dir.path(), ".bq.") {
        let mut bytes = std::fs::read(&artifact).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&artifact, bytes).unwrap();
    }
    drop(c);
    grape = grape.restart_after_kill();
    let mut c = rt.block_on(client(&grape));
    let status = grape.json(&["status"]);
    assert_eq!(status["index_load_failures"], 1, "{status:#}");
    let (hits, scanned) = rt.block_on(search(&mut c, &queries[0], "", false));
    assert_eq!(hits.len(), 10);
    assert!(scanned >= ROWS - 300, "the segment is scanned ({scanned} rows compared)");
    assert_eq!(grape.count("docs"), info["rows"].as_u64().expect("rows"), "every row is still there");
}

/// Files below `dir` whose name contains `part` and ends in `.hnsw`.
fn files_ending(dir: &std::path::Path, part: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_ending(&path, part));
        } else if path.to_string_lossy().contains(part) && path.extension().is_some_and(|e| e == "hnsw") {
            found.push(path);
        }
    }
    found
}

#[test]
fn a_killed_index_builder_s_job_finishes_elsewhere_while_searches_answer_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (_meta, _members, mut nodes) = cluster(dir.path(), &["a", "b"]);
    let ids = node_ids(&nodes);
    for (key, value) in [("jobs/lease_secs", "2"), ("jobs/pause_ms", "1500"), ("index/min_rows", "1000"), ("compaction/auto", "off")] {
        nodes[0].json(&["config", "set", key, value]);
    }
    nodes[0].json(&["collection", "create", "docs", "--dim", &DIM.to_string(), "--replicas", "2"]);
    let (rows, queries) = rows_and_queries(5);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut c = rt.block_on(client(&nodes[0]));
    rt.block_on(c.insert(v1::InsertRequest { collection: "docs".into(), arrow_ipc: ipc(&rows) })).expect("insert");

    // Kill the node building the index midway (the pause makes the build last seconds).
    let jobs = wait_jobs(&nodes[0], 60, "a build job", |jobs| jobs.iter().any(|j| j["kind"] == "build_index"));
    let job = jobs.iter().find(|j| j["kind"] == "build_index").and_then(|j| j["id"].as_u64()).expect("job id");
    let worker = running_with_progress(&nodes[0], job);
    let victim = ids.iter().position(|n| *n == worker).expect("the worker is one of the nodes");
    nodes[victim].kill();
    let survivor = &nodes[1 - victim];
    let mut c = rt.block_on(client(survivor));

    // Meanwhile searches answer, exactly; once the job succeeds on the survivor, through the index.
    let (hits, scanned) = rt.block_on(search(&mut c, &queries[0], "", false));
    assert_eq!((hits.len(), scanned), (10, ROWS), "before the index lands, the segment is scanned");
    let jobs = wait_jobs(survivor, 120, "the build on the survivor", |jobs| {
        jobs.iter().any(|j| j["id"] == job && j["state"] == "succeeded")
    });
    let done = jobs.iter().find(|j| j["id"] == job).expect("the job");
    assert!(done["attempt"].as_u64() >= Some(2), "the killed attempt did not finish it: {done:#}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (hits, scanned) = rt.block_on(search(&mut c, &queries[0], "", false));
        assert_eq!(hits.len(), 10);
        if scanned < ROWS {
            break;
        }
        assert!(Instant::now() < deadline, "searches never switched to the index");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Bytes of the files in `dir`.
fn bytes_in(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).into_iter().flatten().flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()
}

#[test]
fn vectors_on_disk_are_searched_like_vectors_in_memory_and_their_files_follow_the_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut grape = DevProcess::start(dir.path());
    grape.json(&["config", "set", "index/min_rows", "1000"]);
    let vector_bytes = ROWS * DIM as u64 * 4;
    let info = grape.json(&["collection", "create", "docs", "--dim", &DIM.to_string(), "--quantization", "sq8", "--vectors-on-disk"]);
    assert_eq!(info["vectors_on_disk"], true, "{info:#}");
    grape.json(&["collection", "create", "mem", "--dim", &DIM.to_string(), "--quantization", "sq8"]);
    let (rows, queries) = rows_and_queries(21);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut c = rt.block_on(client(&grape));
    for collection in ["docs", "mem"] {
        rt.block_on(c.insert(v1::InsertRequest { collection: collection.into(), arrow_ipc: ipc(&rows) })).expect("insert");
    }
    wait_jobs(&grape, 120, "both index builds", |jobs| builds_succeeded(jobs) == 2);
    wait_describe(&grape, "the index attached", |i| i["indexed_segments"] == 1);

    // Only the on-disk collection's vectors are in files, and the node counts them apart
    // from its memory.
    let vectors = dir.path().join("vectors");
    let status = grape.json(&["status"]);
    assert_eq!(status["vector_bytes_on_disk"], vector_bytes, "{status:#}");
    assert_eq!(bytes_in(&vectors), vector_bytes);

    // Searches through the index and exact scans answer as they do over vectors in memory.
    let search_in = |c: &mut GrapeClient<Channel>, collection: &str, q: &[f32], exact: bool| {
        let req = v1::SearchRequest { collection: collection.into(), vector: q.to_vec(), k: 10, exact, ..Default::default() };
        ids_and_prices(&rt.block_on(c.search(req)).expect("search").into_inner().arrow_ipc)
    };
    let same_answers = |c: &mut GrapeClient<Channel>| {
        for q in &queries {
            for exact in [false, true] {
                assert_eq!(search_in(c, "docs", q, exact), search_in(c, "mem", q, exact), "exact: {exact}");
            }
        }
    };
    same_answers(&mut c);
    let sql = grape.json(&["sql", "SELECT count(*) AS n FROM docs WHERE vector[1] > -2"]);
    assert!(sql.to_string().contains(&ROWS.to_string()), "SQL reads the mapped vectors: {sql:#}");

    // A restart clears what the killed process left and maps the loaded segments afresh.
    drop(c);
    grape = grape.restart_after_kill();
    let mut c = rt.block_on(client(&grape));
    wait_describe(&grape, "the index loaded", |i| i["indexed_segments"] == 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while grape.json(&["status"])["vector_bytes_on_disk"] != vector_bytes {
        assert!(Instant::now() < deadline, "the on-disk segment never loaded");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(bytes_in(&vectors), vector_bytes, "one file per loaded vector column, none left over");
    same_answers(&mut c);

    // Dropping the collection removes its files once the grace of its segments ends.
    grape.json(&["collection", "drop", "docs"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while bytes_in(&vectors) > 0 {
        assert!(Instant::now() < deadline, "the vector files of a dropped collection stayed");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(grape.json(&["status"])["vector_bytes_on_disk"], 0);
}
