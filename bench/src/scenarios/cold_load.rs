//! `cold-load`: how long a fresh compute node takes to load a collection from S3 and answer
//! its first query, with an empty and with a warm local segment cache, and how many bytes it
//! reads from S3, and whether reading large segments as parallel ranged GETs beats one GET
//! each. The S3 server is the loopback one `minio/s3-server.sh` starts.

use std::path::PathBuf;
use std::time::Instant;

use arrow::array::RecordBatch;
use clap::Args;
use grape_compute::datagen;
use grape_compute::engine::{Engine, WantedSegment};
use grape_compute::index::hnsw::build::BuildParams;
use grape_compute::index::hnsw::{artifact, HnswIndex};
use grape_compute::liveness::LiveSegment;
use grape_compute::search::{search_segments, SearchQuery};
use grape_compute::segment::LoadedSegment;
use grape_meta::catalog::{Catalog, Metric, Quantization};
use grape_storage::format::{IndexMeta, SegmentMeta};
use grape_storage::testing::S3TestServer;
use grape_storage::{SegmentCache, Storage};
use serde_json::json;

use crate::report::{report, Row};

/// Options of the scenario.
#[derive(Debug, Args)]
pub struct Options {
    /// Rows in the collection.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Vector dimension.
    #[arg(long, default_value_t = 128)]
    dim: u32,
    /// Rows per segment.
    #[arg(long, default_value_t = 50_000)]
    segment_rows: usize,
    /// Give every segment an HNSW index of this quantization (none, sq8 or bq), built here and
    /// written beside it, so that the load reads the artifacts too: what a node does on
    /// failover of an indexed collection.
    #[arg(long)]
    index: Option<String>,
    /// Breadth of the index build's neighbour search (lower builds faster; the artifact's size
    /// does not depend on it).
    #[arg(long, default_value_t = 200)]
    ef_construction: usize,
    /// Where to write the JSON result.
    #[arg(long, default_value = "bench/results/cold-load.json")]
    out: PathBuf,
}

/// Runs the scenario.
pub fn run(o: Options) -> Result<(), Box<dyn std::error::Error>> {
    tokio::runtime::Runtime::new()?.block_on(run_async(o))
}

async fn run_async(o: Options) -> Result<(), Box<dyn std::error::Error>> {
    let server = S3TestServer::start()?;
    server.create_bucket("bench")?;
    let url = "s3://bench/cold-load";
    let storage = Storage::from_url_with_options(url, &server.options())?;

    let quantization = match &o.index {
        Some(q) => Some(Quantization::parse(q).ok_or_else(|| format!("unknown quantization {q:?}: none, sq8 or bq"))?),
        None => None,
    };
    let mut segments = Vec::new();
    let (mut upload_s, mut index_build_s) = (0.0, 0.0);
    let mut first = 0;
    while first < o.rows {
        let n = o.segment_rows.min(o.rows - first);
        let batch = datagen::batch(o.dim, first as u64, n, first as u64);
        let t = Instant::now();
        let mut segment = storage.write_segment("collections/bench-1", 0, std::slice::from_ref(&batch)).await?;
        upload_s += t.elapsed().as_secs_f64();
        if let Some(q) = quantization {
            let t = Instant::now();
            segment.index = Some(build_index(&storage, &segment, batch, q, o.ef_construction).await?);
            index_build_s += t.elapsed().as_secs_f64();
        }
        segments.push(segment);
        first += n;
    }
    let index_bytes: u64 = segments.iter().filter_map(|s| s.index.as_ref()).map(|i| i.size_bytes).sum();
    let bytes: u64 = segments.iter().map(|s| s.size_bytes).sum::<u64>() + index_bytes;
    let mut catalog = Catalog::default();
    catalog.collections.insert("bench".into(), datagen::collection("bench", o.dim, Metric::L2, segments));

    let cache_dir = tempfile::tempdir()?;
    let single_get = Storage::from_url_with_options(url, &server.options())?.with_read_part_bytes(u64::MAX);
    let whole = load_and_query(single_get, &catalog, o.dim).await?;
    let ranged = Storage::from_url_with_options(url, &server.options())?.with_read_part_bytes(8 << 20);
    let no_cache = load_and_query(ranged, &catalog, o.dim).await?;
    let filling = load_and_query(cached(url, &server, cache_dir.path())?, &catalog, o.dim).await?;
    let warm = load_and_query(cached(url, &server, cache_dir.path())?, &catalog, o.dim).await?;

    let mut rows = vec![
        Row::new("segment and index bytes in S3", bytes as f64 / 1e6, "MB"),
        Row::new("upload (write_segment, sequential)", upload_s, "s"),
        Row::new("no cache, one GET per segment: load + first query", whole.0, "s"),
        Row::new("no cache, 8 MiB ranged GETs: load + first query", no_cache.0, "s"),
        Row::new("no cache: bytes read from S3", no_cache.1 as f64 / 1e6, "MB"),
        Row::new("empty cache: load + first query", filling.0, "s"),
        Row::new("empty cache: bytes read from S3", filling.1 as f64 / 1e6, "MB"),
        Row::new("warm cache: load + first query", warm.0, "s"),
        Row::new("warm cache: bytes read from S3", warm.1 as f64 / 1e6, "MB"),
    ];
    if quantization.is_some() {
        rows.push(Row::new("index artifact bytes in S3 (included above)", index_bytes as f64 / 1e6, "MB"));
        rows.push(Row::new("index build and upload, here (not part of the load)", index_build_s, "s"));
    }
    let profile = if cfg!(debug_assertions) { "dev" } else { "release" };
    let params = json!({
        "rows": o.rows, "dim": o.dim, "segment_rows": o.segment_rows, "s3": "moto on loopback (minio/s3-server.sh)",
        "index": o.index, "ef_construction": o.ef_construction, "profile": profile,
    });
    report("cold-load", params, &rows, &o.out)?;
    Ok(())
}

/// Builds the HNSW index of one written segment (`batch`, its rows) and writes its artifact
/// beside the segment, as an index-build job would.
async fn build_index(
    storage: &Storage,
    segment: &SegmentMeta,
    batch: RecordBatch,
    quantization: Quantization,
    ef_construction: usize,
) -> Result<IndexMeta, Box<dyn std::error::Error>> {
    let loaded = LoadedSegment::new(segment.clone(), batch.schema(), &[batch])?;
    let params = BuildParams { ef_construction, ..BuildParams::default() };
    let index = tokio::task::spawn_blocking(move || HnswIndex::build(&loaded, Metric::L2, quantization, params)).await?;
    let bytes = artifact::encode(&index);
    let path = format!("{}.{}.bench.hnsw", segment.path.trim_end_matches(".lance"), quantization.as_str());
    let size_bytes = bytes.len() as u64;
    storage.put_if_absent(&path, bytes.into()).await?;
    let memory_per_row = (index.memory_bytes() / index.rows().max(1)) as u64;
    Ok(IndexMeta { path, kind: "hnsw".into(), quantization: quantization.as_str().into(), size_bytes, memory_per_row })
}

fn cached(url: &str, server: &S3TestServer, dir: &std::path::Path) -> Result<Storage, Box<dyn std::error::Error>> {
    Ok(Storage::from_url_with_options(url, &server.options())?.with_cache(SegmentCache::open(dir, u64::MAX)?))
}

/// A fresh engine on `storage` loads `catalog` and answers one query: seconds and S3 bytes.
async fn load_and_query(storage: Storage, catalog: &Catalog, dim: u32) -> Result<(f64, u64), Box<dyn std::error::Error>> {
    let engine = Engine::new(storage.clone());
    let t = Instant::now();
    let collection = catalog.collections.get("bench").ok_or("no bench collection")?;
    let schema = std::sync::Arc::new(collection.spec.schema.clone().ok_or("no schema")?);
    engine.sync(collection.segments().map(|meta| WantedSegment::unnamed(meta.clone(), schema.clone())).collect()).await;
    let segments = collection
        .segments()
        .map(|m| engine.segment(&m.id).map(LiveSegment::all).ok_or("a segment failed to load"))
        .collect::<Result<Vec<_>, _>>()?;
    let query = SearchQuery { vector: datagen::query(dim, 1), k: 10, filter: None, ..Default::default() };
    search_segments(Metric::L2, Some(&schema), &segments, &query)?;
    let elapsed = t.elapsed().as_secs_f64();
    let wanted = collection.segments().filter(|m| m.index.is_some()).count() as u64;
    let loaded = engine.index_loads().loaded.load(std::sync::atomic::Ordering::Relaxed);
    if loaded != wanted {
        return Err(format!("{loaded} of {wanted} index artifacts loaded").into());
    }
    Ok((elapsed, storage.bytes_fetched()))
}
