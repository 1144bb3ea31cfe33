//! Garbage collection deletes the objects no manifest names, and only those.

use grape_compute::datagen;

use crate::harness::{write_parquet, DevProcess, ServerFlags};

fn lance_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(lance_files(&p));
            } else if p.extension().is_some_and(|x| x == "lance") {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn gc_deletes_dropped_collections_objects_and_keeps_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    let grape = DevProcess::start(&dir.path().join("data"));
    let file = dir.path().join("rows.parquet");
    write_parquet(&file, &[datagen::batch(8, 0, 300, 1)]);
    for name in ["keep", "gone"] {
        grape.json(&["collection", "create", name, "--dim", "8", "--shards", "2"]);
        grape.json(&["ingest", name, file.to_str().unwrap()]);
    }
    let objects = dir.path().join("data/objects/collections");
    assert_eq!(lance_files(&objects).len(), 4);

    grape.json(&["collection", "drop", "gone"]);
    let young = grape.json(&["gc"]);
    // Each segment has its keys file beside it: two objects per segment.
    assert_eq!((young["deleted"].as_u64(), young["too_young"].as_u64()), (Some(0), Some(4)), "the grace period protects: {young}");

    let report = grape.json(&["gc", "--grace-secs", "0"]);
    assert_eq!(report["deleted"], 4, "{report}");
    assert_eq!(report["referenced"], 4, "{report}");
    let left = lance_files(&objects);
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|p| p.to_string_lossy().contains("/keep-")), "{left:?}");
    assert_eq!(grape.count("keep"), 300);
}

/// The GC job's settings come from the meta group's versioned config when set there: setting
/// `gc/grace_secs` to 0 lets the running job collect a dropped collection at once.
#[test]
fn gc_job_follows_the_versioned_config() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ServerFlags { args: vec!["--gc-interval-secs".into(), "1".into()], env: Vec::new() };
    let grape = DevProcess::start_with(&dir.path().join("data"), flags);
    let file = dir.path().join("rows.parquet");
    write_parquet(&file, &[datagen::batch(8, 0, 100, 1)]);
    grape.json(&["collection", "create", "gone", "--dim", "8"]);
    grape.json(&["ingest", "gone", file.to_str().unwrap()]);
    grape.json(&["collection", "drop", "gone"]);
    let objects = dir.path().join("data/objects/collections");
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(lance_files(&objects).len(), 1, "the default grace period of an hour keeps the orphan");

    let set = grape.json(&["config", "set", "gc/grace_secs", "0"]);
    assert_eq!(set["version"], 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !lance_files(&objects).is_empty() {
        assert!(std::time::Instant::now() < deadline, "the GC job did not pick up gc/grace_secs = 0");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
