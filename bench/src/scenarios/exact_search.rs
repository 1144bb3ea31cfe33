//! `exact-search`: exact k-NN over in-memory segments, and the distance kernel against memory
//! bandwidth measured by the same program.
//!
//! Exact search is memory-bound when the kernel is good: every query streams all vectors once.
//! So beside QPS this prints the kernel's GB/s next to a plain read of memory (sum of a large
//! buffer); a kernel near the read bandwidth is as fast as exact search can be on this machine.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use grape_compute::datagen;
use grape_compute::distance::l2_squared;
use grape_compute::engine::CollectionView;
use grape_compute::search::{search, SearchQuery};
use grape_compute::segment::LoadedSegment;
use grape_meta::catalog::Metric;
use grape_storage::format::SegmentMeta;
use rayon::prelude::*;
use serde_json::json;

use crate::report::{percentile, report, Row};

/// Options of the scenario.
#[derive(Debug, Args)]
pub struct Options {
    /// Rows in the collection.
    #[arg(long, default_value_t = 100_000)]
    rows: usize,
    /// Vector dimension.
    #[arg(long, default_value_t = 128)]
    dim: u32,
    /// Hits per query.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Queries to time.
    #[arg(long, default_value_t = 300)]
    queries: usize,
    /// Segments the rows are split into (searched in parallel).
    #[arg(long, default_value_t = 8)]
    segments: usize,
    /// Where to write the JSON result.
    #[arg(long, default_value = "bench/results/exact-search.json")]
    out: PathBuf,
}

/// Runs the scenario.
pub fn run(o: Options) -> Result<(), Box<dyn std::error::Error>> {
    let view = build_view(&o)?;
    let queries: Vec<Vec<f32>> = (0..o.queries).map(|i| datagen::query(o.dim, i as u64)).collect();
    let query_of = |v: &Vec<f32>| SearchQuery { vector: v.clone(), k: o.k, filter: None, ..Default::default() };

    let recall = measure_recall(&view, &queries[..queries.len().min(20)], o.k)?;
    for q in queries.iter().take(10) {
        search(&view, &query_of(q))?;
    }
    let mut latencies = Vec::with_capacity(queries.len());
    let started = Instant::now();
    for q in &queries {
        let t = Instant::now();
        black_box(search(&view, &query_of(q))?);
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let sequential_qps = queries.len() as f64 / started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let started = Instant::now();
    queries.par_iter().try_for_each(|q| search(&view, &query_of(q)).map(|_| ()))?;
    let concurrent_qps = queries.len() as f64 / started.elapsed().as_secs_f64();

    let vectors: Vec<f32> = view.segments.iter().flat_map(|s| (0..s.rows()).flat_map(move |r| s.vector(r).to_vec())).collect();
    let kernel_1 = kernel_gbps(&vectors, o.dim as usize, false);
    let kernel_n = kernel_gbps(&vectors, o.dim as usize, true);
    let buffer: Vec<f32> = vec![1.0; 128 << 20]; // 512 MiB
    let read_1 = read_gbps(&buffer, false);
    let read_n = read_gbps(&buffer, true);

    let threads = rayon::current_num_threads();
    let rows = vec![
        Row::new("recall@k vs brute force", recall, "fraction"),
        Row::new("QPS, one query at a time", sequential_qps, "queries/s"),
        Row::new(format!("QPS, {threads} queries in parallel"), concurrent_qps, "queries/s"),
        Row::new("latency p50", percentile(&latencies, 0.50), "ms"),
        Row::new("latency p99", percentile(&latencies, 0.99), "ms"),
        Row::new("l2 kernel, 1 thread", kernel_1, "GB/s"),
        Row::new(format!("l2 kernel, {threads} threads"), kernel_n, "GB/s"),
        Row::new("memory read, 1 thread", read_1, "GB/s"),
        Row::new(format!("memory read, {threads} threads"), read_n, "GB/s"),
        Row::new("kernel / memory read, 1 thread", kernel_1 / read_1, "ratio"),
    ];
    let params =
        json!({ "rows": o.rows, "dim": o.dim, "k": o.k, "queries": o.queries, "segments": o.segments, "threads": threads, "metric": "l2" });
    report("exact-search", params, &rows, &o.out)?;
    Ok(())
}

/// Generates the rows and loads them as in-memory segments of one collection.
fn build_view(o: &Options) -> Result<CollectionView, Box<dyn std::error::Error>> {
    let per = o.rows.div_ceil(o.segments.max(1));
    let schema = datagen::schema(o.dim);
    let mut segments = Vec::new();
    let mut first = 0usize;
    while first < o.rows {
        let n = per.min(o.rows - first);
        let batch = datagen::batch(o.dim, first as u64, n, first as u64);
        let meta = SegmentMeta {
            format_version: 1,
            id: format!("bench-{first}"),
            shard: 0,
            path: format!("bench/{first}"),
            rows: n as u64,
            size_bytes: 0,
            columns: Vec::new(),
            keys_path: None,
            seq: 0,
            ..Default::default()
        };
        segments.push(Arc::new(LoadedSegment::new(meta, schema.clone(), &[batch])?));
        first += n;
    }
    let metas = segments.iter().map(|s| s.meta.clone()).collect();
    let collection = datagen::collection("bench", o.dim, Metric::L2, metas);
    Ok(CollectionView { collection, schema: Some(schema), segments, failed: Vec::new() })
}

/// Fraction of the true top-k (naive f64 brute force) that search returns.
fn measure_recall(view: &CollectionView, queries: &[Vec<f32>], k: usize) -> Result<f64, Box<dyn std::error::Error>> {
    use arrow::array::AsArray;
    use arrow::datatypes::UInt64Type;
    let mut found = 0usize;
    for q in queries {
        let mut all: Vec<(f64, u64)> = Vec::new();
        for s in &view.segments {
            let ids = s.batch.column(0).as_primitive::<UInt64Type>();
            for r in 0..s.rows() {
                let d: f64 = s.vector(r).iter().zip(q).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
                all.push((d, ids.value(r)));
            }
        }
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        let truth: Vec<u64> = all.iter().take(k).map(|x| x.1).collect();
        let got = search(view, &SearchQuery { vector: q.clone(), k, filter: None, ..Default::default() })?;
        let ids = got.hits.column(0).as_primitive::<UInt64Type>();
        found += ids.values().iter().filter(|id| truth.contains(id)).count();
    }
    Ok(found as f64 / (queries.len() * k) as f64)
}

/// GB/s of vector data the l2 kernel consumes, best of 5 passes.
fn kernel_gbps(vectors: &[f32], dim: usize, parallel: bool) -> f64 {
    let q: Vec<f32> = vectors[..dim].iter().map(|x| x + 0.5).collect();
    best_gbps(vectors.len() * 4, || {
        if parallel {
            vectors.par_chunks(dim * 1024).map(|c| c.chunks_exact(dim).map(|v| l2_squared(&q, v)).sum::<f32>()).sum::<f32>()
        } else {
            vectors.chunks_exact(dim).map(|v| l2_squared(&q, v)).sum::<f32>()
        }
    })
}

/// GB/s of a plain vectorised read (sum) of `buffer`, best of 5 passes.
fn read_gbps(buffer: &[f32], parallel: bool) -> f64 {
    let sum = |c: &[f32]| {
        let mut acc = [0f32; 16];
        for chunk in c.chunks_exact(16) {
            for i in 0..16 {
                acc[i] += chunk[i];
            }
        }
        acc.iter().sum::<f32>()
    };
    best_gbps(buffer.len() * 4, || if parallel { buffer.par_chunks(1 << 20).map(sum).sum::<f32>() } else { sum(buffer) })
}

fn best_gbps(bytes: usize, mut pass: impl FnMut() -> f32) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        black_box(pass());
        best = best.min(t.elapsed().as_secs_f64());
    }
    bytes as f64 / best / 1e9
}
