//! The walking skeleton end to end: Parquet → ingest → search, filtered search, SQL → SIGKILL
//! → restart → everything still there.

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float32Type, Float64Type, Int64Type, UInt64Type};
use grape_compute::datagen;

use grape_storage::testing::S3TestServer;

use crate::harness::{grape_bin, hit_ids, vector_arg, write_parquet, DevProcess, ServerFlags};

const ROWS: usize = 20_000;
const DIM: u32 = 128;

/// One row as the test sees it, for brute force.
struct Row {
    id: u64,
    vector: Vec<f32>,
    category: i64,
    price: f64,
}

fn rows_of(batches: &[RecordBatch]) -> Vec<Row> {
    let mut out = Vec::new();
    for b in batches {
        let ids = b.column(0).as_primitive::<UInt64Type>();
        let vecs = b.column(1).as_fixed_size_list();
        let cats = b.column(2).as_primitive::<Int64Type>();
        let prices = b.column(3).as_primitive::<Float64Type>();
        for r in 0..b.num_rows() {
            let v = vecs.value(r);
            out.push(Row {
                id: ids.value(r),
                vector: v.as_primitive::<Float32Type>().values().to_vec(),
                category: cats.value(r),
                price: prices.value(r),
            });
        }
    }
    out
}

/// Brute-force top-k ids by squared L2 among rows passing `keep`, computed in f64.
fn brute_force(rows: &[Row], q: &[f32], k: usize, keep: impl Fn(&Row) -> bool) -> Vec<u64> {
    let mut scored: Vec<(f64, u64)> = rows
        .iter()
        .filter(|r| keep(r))
        .map(|r| (r.vector.iter().zip(q).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum::<f64>(), r.id))
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, id)| id).collect()
}

#[test]
fn ingest_search_sql_and_survive_sigkill_on_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    ingest_search_sql_and_survive_sigkill(dir.path(), ServerFlags::default());
}

/// The same scenario with segments on a real S3-compatible server on loopback.
#[test]
fn ingest_search_sql_and_survive_sigkill_on_s3() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3TestServer::start().expect("start the S3 test server (minio/s3-server.sh)");
    s3.create_bucket("grape").unwrap();
    ingest_search_sql_and_survive_sigkill(dir.path(), ServerFlags::s3(&s3, "grape", "e2e"));
}

fn ingest_search_sql_and_survive_sigkill(dir: &std::path::Path, flags: ServerFlags) {
    let batches: Vec<RecordBatch> = (0..4).map(|i| datagen::batch(DIM, i * 5_000, 5_000, 100 + i)).collect();
    let rows = rows_of(&batches);
    assert_eq!(rows.len(), ROWS);
    let file = dir.join("docs.parquet");
    write_parquet(&file, &batches);

    let grape = DevProcess::start_with(&dir.join("data"), flags);
    grape.json(&["collection", "create", "docs", "--dim", "128", "--shards", "2"]);
    let ingested = grape.json(&["ingest", "docs", file.to_str().unwrap(), "--batch-rows", "6000"]);
    assert_eq!(ingested["rows"], ROWS as u64);
    let described = grape.json(&["collection", "describe", "docs"]);
    assert_eq!(described["rows"], ROWS as u64);

    let queries: Vec<Vec<f32>> = (0..3).map(|s| datagen::query(DIM, s)).collect();
    let check_all = |grape: &DevProcess| {
        for q in &queries {
            let hits = grape.json(&["search", "docs", "--vector", &vector_arg(q), "--k", "10"]);
            assert_eq!(hit_ids(&hits), brute_force(&rows, q, 10, |_| true), "unfiltered top-10");
            let scores: Vec<f64> = hits.as_array().unwrap().iter().map(|h| h["score"].as_f64().unwrap()).collect();
            assert!(scores.windows(2).all(|w| w[0] <= w[1]), "scores ascend: {scores:?}");

            let filter = "category = 3 AND price < 50";
            let hits = grape.json(&["search", "docs", "--vector", &vector_arg(q), "--k", "10", "--filter", filter]);
            for h in hits.as_array().unwrap() {
                assert_eq!(h["category"], 3);
                assert!(h["price"].as_f64().unwrap() < 50.0);
            }
            let expected = brute_force(&rows, q, 10, |r| r.category == 3 && r.price < 50.0);
            assert_eq!(hit_ids(&hits), expected, "filtered top-10");
        }

        assert_eq!(grape.count("docs"), ROWS as u64);
        let groups =
            grape.json(&["sql", "SELECT category, count(*) AS n, sum(price) AS total FROM docs WHERE price < 10 GROUP BY 1 ORDER BY 1"]);
        let groups = groups.as_array().unwrap();
        for cat in 0..10i64 {
            let matching: Vec<&Row> = rows.iter().filter(|r| r.category == cat && r.price < 10.0).collect();
            let row = groups.iter().find(|g| g["category"] == cat).expect("group present");
            assert_eq!(row["n"].as_u64().unwrap() as usize, matching.len(), "count of category {cat}");
            let total: f64 = matching.iter().map(|r| r.price).sum();
            assert!((row["total"].as_f64().unwrap() - total).abs() < 1e-6, "sum of category {cat}");
        }
    };
    check_all(&grape);

    let grape = grape.restart_after_kill();
    check_all(&grape);
    let described = grape.json(&["collection", "describe", "docs"]);
    assert_eq!(described["rows"], ROWS as u64);
    assert_eq!(described["version"], ingested["version"]);
}

#[test]
fn grape_demo_runs_the_main_job_and_cleans_up_after_itself() {
    let out = std::process::Command::new(grape_bin()).args(["demo", "--rows", "3000", "--dim", "16"]).output().expect("run grape demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "grape demo failed: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("ingested 3000 rows"), "{text}");
    for part in ["search: 5 nearest neighbours", "filtered search: category = 3 AND price < 50", "SQL ("] {
        assert!(text.contains(part), "the demo shows \"{part}\": {text}");
    }
    assert_eq!(text.matches("(5 rows)").count(), 3, "a search, a filtered search and a SQL aggregate of 5 rows each: {text}");
    // Every row of the filtered table has category 3 (the fourth column of `| id | score | category |`).
    let filtered = text.split("filtered search").nth(1).and_then(|t| t.split("SQL (").next()).expect("filtered section");
    let categories: Vec<&str> = filtered
        .lines()
        .filter(|l| l.starts_with("| ") && !l.contains("category"))
        .filter_map(|l| l.split('|').nth(3).map(str::trim))
        .collect();
    assert_eq!(categories, vec!["3"; 5], "{filtered}");
    // Its data lived in a temporary directory that is gone afterwards.
    let dir = text.lines().find_map(|l| l.strip_prefix("Grape demo: one process, data under ")).expect("data dir line");
    assert!(!std::path::Path::new(dir.trim()).exists(), "the demo left {dir} behind");
}
