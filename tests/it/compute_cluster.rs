//! A cluster of real processes: three `grape meta` members and stateless `grape compute`
//! nodes sharing one object store. Any node answers any query, and a killed node costs the
//! others nothing.

use std::path::Path;

use grape_compute::datagen;
use grape_meta::testing::MetaProcesses;

use crate::harness::{grape_bin, hit_ids, vector_arg, write_parquet, DevProcess};

#[test]
fn compute_nodes_share_the_catalog_and_survive_each_others_death() {
    let dir = tempfile::tempdir().unwrap();
    let meta = MetaProcesses::start(Path::new(grape_bin()), 3).expect("start grape meta processes");
    let members = meta.addrs().join(",");
    let storage = format!("file://{}", dir.path().join("objects").display());
    let a = DevProcess::start_compute(&members, &storage, &dir.path().join("a"));
    let b = DevProcess::start_compute(&members, &storage, &dir.path().join("b"));

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

    let mut a = a;
    a.kill();
    assert_eq!(b.json(&["search", "docs", "--vector", &q, "--k", "10"]), on_b, "the survivor answers as before");
    let second = dir.path().join("second.parquet");
    write_parquet(&second, &[datagen::batch(16, 2_000, 500, 2)]);
    b.json(&["ingest", "docs", second.to_str().unwrap()]);
    assert_eq!(b.count("docs"), 2_500);

    let a = a.restart_after_kill();
    let version = b.json(&["collection", "describe", "docs"])["version"].as_u64().expect("version").to_string();
    a.json(&["search", "docs", "--vector", &q, "--k", "1", "--min-version", &version]);
    assert_eq!(a.count("docs"), 2_500, "a restarted node loads everything from storage");
    drop(meta);
}
