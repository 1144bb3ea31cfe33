//! `ann`: HNSW on clustered data (a Gaussian mixture) against exact ground truth (also among
//! the rows of a 10% and a 1% filter; a row's number is its id). Per quantization (none, sq8,
//! bq): build time, memory per vector, and recall@k / QPS over `ef` with 1 and 2 threads —
//! in process, and through a real `grape dev` (index built by the job after a one-segment
//! ingest, plus exact and filtered searches); then hnswlib, faiss and usearch on the same data
//! (bench/peers/ann_peer.py). The JSON holds every curve point under `curves`, drawn beside
//! it by bench/peers/plot_curve.py. Rows reach `grape dev` over the `Ingest` stream in one
//! message (what `grape ingest FILE --batch-rows ROWS` sends): this crate has no Parquet writer.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use clap::Args;
use grape_compute::datagen::gaussian_mixture;
use grape_compute::distance::Scorer;
use grape_compute::index::hnsw::{build::BuildParams, AnnParams, HnswIndex};
use grape_compute::index::{default_oversampling, VecVectors, Vectors};
use grape_compute::ingest::{encode_ipc, vector_type};
use grape_compute::topk::{Candidate, TopK};
use grape_meta::catalog::{Metric, Quantization};
use grape_proto::v1::{self, grape_client::GrapeClient};
use rayon::prelude::*;
use serde_json::{json, Value};
use tonic::codegen::tokio_stream;
use tonic::transport::Channel;

use super::askers::hit_ids;
use super::memory_cap::MemoryCap;
use super::processes::{status_bytes, DevServer};
use crate::report::{report, Row};

type Res<T> = Result<T, Box<dyn Error>>;

/// Quantizations measured.
/// Filtered searches: label, filter, and the ids it allows (`id % modulus == value`).
const FILTERS: [(&str, &str, usize, usize); 2] = [("10%", "category = 3", 10, 3), ("1%", "bucket = 7", 100, 7)];
/// How long the index build jobs of one collection may take.
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The recall the QPS goals are compared at.
const GOAL_RECALL: f64 = 0.95;

/// Options of the scenario.
#[derive(Debug, Args)]
pub struct Options {
    /// Rows indexed.
    #[arg(long, default_value_t = 200_000)]
    rows: usize,
    /// Vector dimension.
    #[arg(long, default_value_t = 128)]
    dim: usize,
    /// Gaussian clusters of the data.
    #[arg(long, default_value_t = 64)]
    clusters: usize,
    /// Queries (drawn from the same mixture, another seed).
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// Hits per query (recall@k).
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Search breadths swept.
    #[arg(long, value_delimiter = ',', default_value = "16,32,48,64,96,128,256,512")]
    efs: Vec<usize>,
    /// Thread (client) counts measured.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Quantizations measured (in process and through gRPC).
    #[arg(long, value_delimiter = ',', default_value = "none,sq8,bq")]
    quantizations: Vec<String>,
    /// l2, cosine, dot or manhattan.
    #[arg(long, default_value = "l2")]
    metric: String,
    /// Repeat each pass over the queries until it lasts this long (seconds).
    #[arg(long, default_value_t = 1.0)]
    min_secs: f64,
    /// Skip hnswlib and faiss.
    #[arg(long)]
    skip_peer: bool,
    /// Peers: hnswlib and faiss's exact search only, no faiss HNSW or usearch (a 1M run's
    /// peers otherwise take longer than all of Grape's part).
    #[arg(long)]
    only_hnswlib: bool,
    /// Skip the measurements through `grape dev`.
    #[arg(long)]
    skip_grpc: bool,
    /// Also measure each quantization with its vectors on disk (`--vectors-on-disk`
    /// collections): node memory, the curve with the page cache warm, and the curve again
    /// with the server's memory capped at its heap plus `--cap-headroom-mib` (a child memory
    /// cgroup, when the benchmark may make one), so that vectors come from disk.
    #[arg(long)]
    vectors_on_disk: bool,
    /// Memory above the server's heap that the cap of `--vectors-on-disk` leaves (MiB).
    #[arg(long, default_value_t = 64)]
    cap_headroom_mib: u64,
    /// The `grape` binary (default: beside this benchmark's binary).
    #[arg(long)]
    grape: Option<PathBuf>,
    /// Where to write the JSON result (the plot goes beside it as .png).
    #[arg(long, default_value = "bench/results/ann.json")]
    out: PathBuf,
}

/// The data set and its exact answers.
struct Data {
    dim: usize,
    base: VecVectors,
    queries: Vec<f32>,
    /// Per query, the true top-k rows, closest first.
    truth: Vec<Vec<u32>>,
    /// The same among the rows each of [`FILTERS`] allows.
    filtered: Vec<Vec<Vec<u32>>>,
}

impl Data {
    fn query(&self, i: usize) -> &[f32] {
        &self.queries[i * self.dim..(i + 1) * self.dim]
    }

    /// The base vectors, row-major.
    fn base_values(&self) -> Vec<f32> {
        (0..self.base.rows()).flat_map(|r| self.base.vector(r).iter().copied()).collect()
    }
}

/// One point of a recall/QPS curve.
struct Point {
    series: String,
    ef: Option<usize>,
    threads: usize,
    recall: f64,
    qps: f64,
}

/// What the scenario has measured so far: curve points and table rows.
#[derive(Default)]
struct Results {
    points: Vec<Point>,
    rows: Vec<Row>,
}

impl Results {
    /// Records a curve point (and, when `say`, shows it on stderr).
    fn point(&mut self, say: bool, series: &str, ef: Option<usize>, threads: usize, recall: f64, qps: f64) {
        if say {
            eprintln!("  {series} ef={} threads={threads}: recall {recall:.4}, {qps:.0} QPS", ef.map_or("-".into(), |e| e.to_string()));
        }
        self.points.push(Point { series: series.into(), ef, threads, recall, qps });
    }

    fn row(&mut self, metric: impl Into<String>, value: f64, unit: &'static str) {
        self.rows.push(Row::new(metric, value, unit));
    }

    /// Best QPS at `threads` among points of series `series` accepts with recall ≥ [`GOAL_RECALL`].
    fn best_qps(&self, threads: usize, series: impl Fn(&str) -> bool) -> Option<f64> {
        let good = self.points.iter().filter(|p| series(&p.series) && p.threads == threads && p.recall >= GOAL_RECALL);
        good.map(|p| p.qps).reduce(f64::max)
    }
}

/// Runs the scenario.
pub fn run(o: Options) -> Res<()> {
    let metric = Metric::parse(&o.metric).ok_or_else(|| format!("unknown metric {:?}", o.metric))?;
    if o.efs.is_empty() || o.threads.is_empty() || o.threads.contains(&0) || o.k == 0 || o.rows < o.k {
        return Err("need --efs, --threads (each ≥ 1) and 1 ≤ k ≤ rows".into());
    }
    let quantizations = o
        .quantizations
        .iter()
        .map(|q| Quantization::parse(q).ok_or_else(|| format!("unknown quantization {q:?} (none, sq8 or bq)")))
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    eprintln!("data: {} × {} in {} clusters, {} queries, exact top-{} …", o.rows, o.dim, o.clusters, o.queries, o.k);
    let data = generate(&o, metric);
    let mut res = Results::default();
    let mut memory = Vec::new();
    for &q in &quantizations {
        memory.push((q, in_process(&o, &data, metric, q, &mut res)?));
    }
    if !o.skip_grpc {
        grpc(&o, &data, metric, &quantizations, &mut res)?;
    }
    let peer = if o.skip_peer { None } else { Some(peer(&o, &data)?) };
    if let Some((peer, _)) = &peer {
        peer_results(peer, &mut res);
    }
    goals(&o, &memory, peer.as_ref().map(|p| &p.0), &mut res);
    print_curves(&res.points);
    let profile = if cfg!(debug_assertions) { "dev" } else { "release" };
    let build = BuildParams::default();
    let params = json!({
        "rows": o.rows, "dim": o.dim, "clusters": o.clusters, "queries": o.queries, "k": o.k, "efs": o.efs, "quantizations": o.quantizations,
        "threads": o.threads, "metric": metric.as_str(), "min_secs": o.min_secs, "profile": profile,
        "hnsw": { "m": build.m, "ef_construction": build.ef_construction }, "grpc": !o.skip_grpc,
        "hnswlib": peer.as_ref().map(|p| p.0["hnswlib"]["package"].clone()), "secs": started.elapsed().as_secs_f64().round(),
    });
    report("ann: recall@k and QPS of HNSW (in process, through grape dev, hnswlib, faiss)", params, &res.rows, &o.out)?;
    add_curves(&o.out, &res.points)?;
    plot(&o.out, peer.map(|p| p.1));
    Ok(())
}

/// Generates the base rows and queries, and the exact answers.
fn generate(o: &Options, metric: Metric) -> Data {
    let base = VecVectors::new(gaussian_mixture(o.rows, o.dim, o.clusters, 1), o.dim);
    let queries = gaussian_mixture(o.queries, o.dim, o.clusters, 2);
    let truth = exact_top_k(&base, &queries, metric, o.k, |_| true);
    let filtered = FILTERS.iter().map(|&(_, _, m, v)| exact_top_k(&base, &queries, metric, o.k, |r| r % m == v)).collect();
    Data { dim: o.dim, base, queries, truth, filtered }
}

/// Per query, the `k` allowed rows closest to it by brute force, closest first.
pub(super) fn exact_top_k(base: &VecVectors, queries: &[f32], metric: Metric, k: usize, allowed: impl Fn(usize) -> bool + Sync) -> Vec<Vec<u32>> {
    let answer = |q: &[f32]| {
        let (scorer, mut top) = (Scorer::new(metric, q), TopK::new(k));
        for row in (0..base.rows()).filter(|&r| allowed(r)) {
            let distance = scorer.distance(q, base.vector(row), base.norm(row));
            if distance < top.threshold() {
                top.push(Candidate { distance, segment: 0, row: row as u32 });
            }
        }
        top.into_sorted().iter().map(|c| c.row).collect()
    };
    queries.par_chunks(base.dim()).map(answer).collect()
}

/// Mean over queries of the fraction of its true rows among the ids found (1 if it has none).
pub(super) fn recall(found: &[Vec<u64>], truth: &[Vec<u32>]) -> f64 {
    let one = |(f, t): (&Vec<u64>, &Vec<u32>)| match t.len() {
        0 => 1.0,
        n => t.iter().filter(|&&row| f.iter().take(n).any(|&id| id == row as u64)).count() as f64 / n as f64,
    };
    found.iter().zip(truth).map(one).sum::<f64>() / truth.len().max(1) as f64
}

/// Answers queries `0..n` with `threads` threads (thread t takes t, t+T, …), each with its own
/// state from `setup`, made before the clock starts. Each thread repeats its passes until
/// `min_secs` have gone by. Returns the first pass's answers and the queries answered per second.
fn measure<S>(
    n: usize,
    threads: usize,
    min_secs: f64,
    setup: impl Fn() -> Result<S, String> + Sync,
    search: impl Fn(&mut S, usize) -> Result<Vec<u64>, String> + Sync,
) -> Result<(Vec<Vec<u64>>, f64), String> {
    let (setup, search, barrier) = (&setup, &search, &Barrier::new(threads));
    let worker = move |t: usize| {
        let state = setup();
        barrier.wait(); // reached even when setup failed, so that no thread waits forever
        let (mut state, started) = (state?, Instant::now());
        let mine: Vec<usize> = (t..n).step_by(threads).collect();
        let (mut answers, mut passes) = (Vec::with_capacity(mine.len()), 0);
        while passes == 0 || started.elapsed().as_secs_f64() < min_secs {
            for &i in &mine {
                let found = search(&mut state, i)?;
                if passes == 0 {
                    answers.push((i, found));
                }
            }
            passes += 1;
        }
        Ok::<_, String>((answers, passes * mine.len(), started.elapsed().as_secs_f64()))
    };
    let per_thread = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|t| s.spawn(move || worker(t))).collect();
        handles.into_iter().map(|h| h.join().map_err(|_| "a search thread panicked".to_string())?).collect::<Result<Vec<_>, _>>()
    })?;
    let (mut found, mut answered, mut wall) = (vec![Vec::new(); n], 0, 0f64);
    for (answers, count, secs) in per_thread {
        answers.into_iter().for_each(|(i, hits)| found[i] = hits);
        (answered, wall) = (answered + count, wall.max(secs));
    }
    Ok((found, answered as f64 / wall.max(1e-9)))
}

/// Builds the index of quantization `q` in this process and sweeps `ef` × threads over it.
/// Returns the memory of the whole index and of its codes alone, as fractions of the f32 vectors.
fn in_process(o: &Options, data: &Data, metric: Metric, q: Quantization, res: &mut Results) -> Res<(f64, f64)> {
    let series = format!("grape in-process {}", q.as_str());
    eprintln!("{series}: building …");
    let started = Instant::now();
    let index = HnswIndex::build(&data.base, metric, q, BuildParams::default());
    res.row(format!("{series}: build"), started.elapsed().as_secs_f64(), "s");
    let per_vector = |bytes: usize| bytes as f64 / index.rows().max(1) as f64;
    let (bytes, codes, f32_bytes) = (per_vector(index.memory_bytes()), per_vector(index.codes.memory_bytes()), (data.dim * 4) as f64);
    res.row(format!("{series}: index memory (graph + codes)"), bytes, "bytes/vector");
    res.row(format!("{series}: index memory, % of f32 vectors"), 100.0 * bytes / f32_bytes, "%");
    res.row(format!("{series}: codes alone, % of f32 vectors"), 100.0 * codes / f32_bytes, "%");
    for &ef in &o.efs {
        let params = AnnParams { ef, oversampling: default_oversampling(q, ef, o.k) };
        let search = |_: &mut (), i: usize| {
            let (query, mut top) = (data.query(i), TopK::new(o.k));
            index.search(&data.base, 0, query, &Scorer::new(metric, query), &params, None, &mut top);
            Ok(top.into_sorted().iter().map(|c| c.row as u64).collect())
        };
        for &threads in &o.threads {
            let (found, qps) = measure(data.truth.len(), threads, o.min_secs, || Ok(()), search)?;
            res.point(true, &series, Some(ef), threads, recall(&found, &data.truth), qps);
        }
    }
    Ok((bytes / f32_bytes, codes / f32_bytes))
}

/// The measurements through a `grape dev`: one collection per quantization, and with
/// `--vectors-on-disk` a second one with its vectors on disk. Each is dropped once measured,
/// so the server holds one at a time.
fn grpc(o: &Options, data: &Data, metric: Metric, quantizations: &[Quantization], res: &mut Results) -> Res<()> {
    let server = DevServer::start(o.grape.as_deref())?;
    let cap = o.vectors_on_disk.then(|| MemoryCap::adopt(server.pid())).and_then(|cap| {
        cap.map_err(|e| eprintln!("no memory cap, so no capped measurement: {e}")).ok()
    });
    server.cli(&["config", "set", "index/min_rows", "1000"])?;
    let runtime = tokio::runtime::Runtime::new()?;
    let client = runtime.block_on(connect(&server.endpoint))?;
    let batch = base_batch(data)?;
    // Messages of at most INGEST_ROWS rows: 1M × 128 in one would pass the 256 MiB limit.
    let ipc = (0..batch.num_rows())
        .step_by(INGEST_ROWS)
        .map(|start| {
            let part = batch.slice(start, INGEST_ROWS.min(batch.num_rows() - start));
            encode_ipc(&part.schema(), &[part])
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut run = GrpcRun { o, data, metric, server: &server, runtime, client, ipc, cap };
    for &q in quantizations {
        run.collection(q, false, res)?;
        if o.vectors_on_disk {
            run.collection(q, true, res)?;
        }
    }
    Ok(())
}

/// What the measurements through one `grape dev` share.
struct GrpcRun<'a> {
    o: &'a Options,
    data: &'a Data,
    metric: Metric,
    server: &'a DevServer,
    runtime: tokio::runtime::Runtime,
    client: GrapeClient<Channel>,
    /// The rows, as ingest messages.
    ipc: Vec<Vec<u8>>,
    /// The server's memory cgroup, when the benchmark could make one.
    cap: Option<MemoryCap>,
}

impl GrpcRun<'_> {
    /// Ingests the rows into a new collection of quantization `q` (its vectors on disk when
    /// `on_disk`), waits for its index, measures it and drops it.
    fn collection(&mut self, q: Quantization, on_disk: bool, res: &mut Results) -> Res<()> {
        let (o, data) = (self.o, self.data);
        let suffix = if on_disk { "_disk" } else { "" };
        let (name, series) = (format!("ann_{}{suffix}", q.as_str()), format!("grape gRPC {}{}", q.as_str(), if on_disk { " on disk" } else { "" }));
        eprintln!("{series}: ingesting into {name} and waiting for its index …");
        let create = v1::CreateCollectionRequest {
            name: name.clone(),
            dim: data.dim as u32,
            metric: self.metric.as_str().into(),
            shards: 1,
            quantization: q.as_str().into(),
            vectors_on_disk: on_disk,
            ..Default::default()
        };
        self.runtime.block_on(self.client.create_collection(create))?;
        let started = Instant::now();
        self.runtime.block_on(ingest(&mut self.client, &name, self.ipc.clone()))?;
        res.row(format!("{series}: ingest (one job)"), started.elapsed().as_secs_f64(), "s");
        let started = Instant::now();
        let info = self.runtime.block_on(wait_indexed(&mut self.client, &name))?;
        res.row(format!("{series}: index build through the job"), started.elapsed().as_secs_f64(), "s");
        res.row(format!("{series}: index memory (describe)"), info.index_bytes_per_vector, "bytes/vector");
        let request = |ef: Option<usize>, exact: bool, filter: &'static str| {
            let (collection, k, ef) = (name.clone(), o.k as u32, ef.map(|e| e as u32));
            // The server's default oversampling, as a user gets it.
            move |i| v1::SearchRequest { collection: collection.clone(), vector: data.query(i).to_vec(), k, filter: filter.into(), ef, exact, ..Default::default() }
        };
        let sweep = |series: &str, res: &mut Results| -> Res<()> {
            for &ef in &o.efs {
                for &clients in &o.threads {
                    let (found, qps) = grpc_measure(&self.server.endpoint, o, data, clients, request(Some(ef), false, ""))?;
                    res.point(true, series, Some(ef), clients, recall(&found, &data.truth), qps);
                }
            }
            Ok(())
        };
        sweep(&series, res)?;
        if on_disk {
            self.memory_rows(&series, res)?;
            if let Some(cap) = &self.cap {
                // Room for the heap the cgroup holds now, plus the headroom for page cache:
                // the vectors' pages (4 × dim bytes a row) mostly have to come from disk.
                let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
                let (heap, cache) = cap.charged();
                res.row(format!("{series}: cgroup heap before the cap"), mib(heap), "MiB");
                res.row(format!("{series}: cgroup page cache before the cap"), mib(cache), "MiB");
                let limit = heap + o.cap_headroom_mib * (1 << 20);
                cap.limit(limit)?;
                let capped = format!("{series}, memory capped");
                res.row(format!("{capped}: cap (cgroup heap + {} MiB)", o.cap_headroom_mib), mib(limit), "MiB");
                sweep(&capped, res)?;
                let (heap, cache) = cap.charged();
                res.row(format!("{capped}: cgroup heap after the sweep"), mib(heap), "MiB");
                res.row(format!("{capped}: cgroup page cache after the sweep"), mib(cache), "MiB");
                cap.unlimit()?;
            }
        } else {
            if q == Quantization::None {
                // Exact search does not depend on the quantization: measured once.
                for &clients in &o.threads {
                    let (found, qps) = grpc_measure(&self.server.endpoint, o, data, clients, request(None, true, ""))?;
                    res.point(true, "grape gRPC exact", None, clients, recall(&found, &data.truth), qps);
                }
            }
            for (&(label, filter, _, _), truth) in FILTERS.iter().zip(&data.filtered) {
                let (found, qps) = grpc_measure(&self.server.endpoint, o, data, 1, request(None, false, filter))?;
                let what = format!("{series}: filter {label} ({filter}), default ef, 1 client");
                res.row(format!("{what}: recall@{}", o.k), recall(&found, truth), "fraction");
                res.row(format!("{what}: QPS"), qps, "queries/s");
            }
        }
        self.runtime.block_on(self.client.drop_collection(v1::DropCollectionRequest { name }))?;
        Ok(())
    }

    /// What the server holds with one collection's vectors on disk: its own count of memory
    /// and of vector bytes in files, and the process's resident heap and mapped files.
    fn memory_rows(&mut self, series: &str, res: &mut Results) -> Res<()> {
        let status = self.runtime.block_on(self.client.status(v1::StatusRequest {}))?.into_inner();
        let rows = self.data.base.rows() as f64;
        res.row(format!("{series}: node memory (segments and indexes, status)"), status.memory_bytes as f64 / rows, "bytes/vector");
        res.row(format!("{series}: vectors in files (status)"), status.vector_bytes_on_disk as f64 / rows, "bytes/vector");
        let pid = self.server.pid();
        res.row(format!("{series}: process heap (RssAnon)"), status_bytes(pid, "RssAnon") as f64 / f64::from(1 << 20), "MiB");
        res.row(format!("{series}: mapped files resident (RssFile)"), status_bytes(pid, "RssFile") as f64 / f64::from(1 << 20), "MiB");
        Ok(())
    }
}

/// A client of `endpoint` that takes messages as large as the server does (256 MiB).
pub(super) async fn connect(endpoint: &str) -> Result<GrapeClient<Channel>, String> {
    let client = GrapeClient::connect(endpoint.to_string()).await.map_err(|e| format!("connect to {endpoint}: {e}"))?;
    Ok(client.max_encoding_message_size(256 << 20).max_decoding_message_size(256 << 20))
}

/// [`measure`] over gRPC: each client thread has its own runtime and channel and sends one
/// search at a time. Returns the ids found and the QPS.
fn grpc_measure(
    endpoint: &str,
    o: &Options,
    data: &Data,
    clients: usize,
    request: impl Fn(usize) -> v1::SearchRequest + Sync,
) -> Result<(Vec<Vec<u64>>, f64), String> {
    let setup = || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        let client = runtime.block_on(connect(endpoint))?;
        Ok((runtime, client))
    };
    measure(data.truth.len(), clients, o.min_secs, setup, |(runtime, client), i| {
        let reply = runtime.block_on(client.search(request(i))).map_err(|e| format!("search: {e}"))?;
        hit_ids(&reply.into_inner().arrow_ipc)
    })
}


/// The base rows as Arrow: `id` (= row), `vector`, `category` (id % 10), `bucket` (id % 100).
fn base_batch(data: &Data) -> Res<RecordBatch> {
    let n = data.base.rows() as i64;
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    let vectors = FixedSizeListArray::try_new(item, data.dim as i32, Arc::new(Float32Array::from(data.base_values())), None)?;
    let schema = Schema::new(vec![
        Field::new("id", DataType::UInt64, false),
        Field::new("vector", vector_type(data.dim as u32), false),
        Field::new("category", DataType::Int64, false),
        Field::new("bucket", DataType::Int64, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(0..n as u64)),
        Arc::new(vectors),
        Arc::new(Int64Array::from_iter_values((0..n).map(|i| i % 10))),
        Arc::new(Int64Array::from_iter_values((0..n).map(|i| i % 100))),
    ];
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}

/// Rows per message of [`ingest`].
const INGEST_ROWS: usize = 200_000;

/// Ingests the Arrow IPC messages `ipc` into `name` as one job, and waits for its commit.
async fn ingest(client: &mut GrapeClient<Channel>, name: &str, ipc: Vec<Vec<u8>>) -> Result<(), String> {
    let mut messages = vec![v1::IngestRequest { collection: name.into(), ..Default::default() }];
    messages.extend(ipc.into_iter().map(|arrow_ipc| v1::IngestRequest { arrow_ipc, ..Default::default() }));
    messages.push(v1::IngestRequest { commit: true, ..Default::default() });
    let mut replies = client.ingest(tokio_stream::iter(messages)).await.map_err(|e| format!("ingest: {e}"))?.into_inner();
    while let Some(reply) = replies.message().await.map_err(|e| format!("ingest: {e}"))? {
        if reply.committed {
            return Ok(());
        }
    }
    Err("the ingest ended without a commit".into())
}

/// Polls `describe` until every segment of `name` is indexed; fails when one of its build
/// jobs is dead or cancelled, or after [`BUILD_TIMEOUT`].
pub(super) async fn wait_indexed(client: &mut GrapeClient<Channel>, name: &str) -> Result<v1::CollectionInfo, String> {
    let deadline = Instant::now() + BUILD_TIMEOUT;
    loop {
        let info = client.describe_collection(v1::DescribeCollectionRequest { name: name.into() }).await;
        let info = info.map_err(|e| format!("describe: {e}"))?.into_inner();
        if info.segments > 0 && info.indexed_segments == info.segments {
            return Ok(info);
        }
        let jobs = client.list_jobs(v1::ListJobsRequest::default()).await.map_err(|e| format!("jobs: {e}"))?.into_inner().jobs;
        let failed = |j: &&v1::Job| j.kind == "build_index" && j.collection == name && matches!(j.state.as_str(), "dead" | "cancelled");
        if let Some(job) = jobs.iter().find(failed) {
            return Err(format!("index build job {} of {name} is {}: {}", job.id, job.state, job.last_error));
        }
        if Instant::now() > deadline {
            return Err(format!("{name}: {} of {} segments indexed after {BUILD_TIMEOUT:?}", info.indexed_segments, info.segments));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Writes the data in ann_peer.py's format beside `--out` (DIR = `<out stem>-data`), runs
/// hnswlib and faiss on it, and returns their peer.json and the peer venv's python.
fn peer(o: &Options, data: &Data) -> Res<(Value, String)> {
    let stem = o.out.file_stem().map_or("ann".into(), |s| s.to_string_lossy().into_owned());
    let dir = o.out.with_file_name(format!("{stem}-data"));
    std::fs::create_dir_all(&dir)?;
    let le = |values: &mut dyn Iterator<Item = [u8; 4]>| values.flatten().collect::<Vec<u8>>();
    std::fs::write(dir.join("base.f32"), le(&mut data.base_values().iter().map(|v| v.to_le_bytes())))?;
    std::fs::write(dir.join("queries.f32"), le(&mut data.queries.iter().map(|v| v.to_le_bytes())))?;
    std::fs::write(dir.join("truth.u32"), le(&mut data.truth.iter().flatten().map(|v| v.to_le_bytes())))?;
    let meta = json!({ "dim": data.dim, "base": data.base.rows(), "queries": data.truth.len(), "k": o.k,
                       "metric": o.metric.to_ascii_lowercase(), "threads": o.threads, "efs": o.efs });
    std::fs::write(dir.join("meta.json"), serde_json::to_string_pretty(&meta)?)?;
    let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers");
    eprintln!("peer: setting up its venv (bench/peers/setup.sh) …");
    let setup = Command::new("bash").arg(peers.join("setup.sh")).output()?;
    eprint!("{}", String::from_utf8_lossy(&setup.stderr));
    let python = String::from_utf8_lossy(&setup.stdout).lines().last().unwrap_or_default().trim().to_string();
    if !setup.status.success() || python.is_empty() {
        return Err(format!("bench/peers/setup.sh failed ({})", setup.status).into());
    }
    let only_hnswlib: &[&str] = if o.only_hnswlib { &["--no-faiss-hnsw", "--no-usearch"] } else { &[] };
    let status = Command::new(&python)
        .arg(peers.join("ann_peer.py"))
        .arg(&dir)
        .args(["--min-secs", &o.min_secs.to_string()])
        .args(only_hnswlib)
        .status()?;
    if !status.success() {
        return Err(format!("ann_peer.py failed ({status})").into());
    }
    Ok((serde_json::from_str(&std::fs::read_to_string(dir.join("peer.json"))?)?, python))
}

/// The engines `ann_peer.py` measures, as named in its JSON.
const PEERS: [&str; 5] = ["hnswlib", "faiss_hnsw", "faiss_exact", "usearch_f32", "usearch_f16"];

/// The peers' curves as points, and their build times and memory as rows.
fn peer_results(peer: &Value, res: &mut Results) {
    for engine in PEERS {
        let Some(result) = peer.get(engine) else { continue };
        for p in result["curve"].as_array().into_iter().flatten() {
            let (ef, threads) = (p["ef"].as_u64().map(|e| e as usize), p["threads"].as_u64().unwrap_or(0) as usize);
            res.point(false, engine, ef, threads, p["recall"].as_f64().unwrap_or(0.0), p["qps"].as_f64().unwrap_or(0.0));
        }
        res.row(format!("{engine}: build"), result["build_secs"].as_f64().unwrap_or(f64::NAN), "s");
        res.row(format!("{engine}: memory (RSS growth)"), result["bytes_per_vector"].as_f64().unwrap_or(f64::NAN), "bytes/vector");
    }
}

/// The goals as ratios (those whose inputs were measured). `memory` is what [`in_process`]
/// returned per quantization.
fn goals(o: &Options, memory: &[(Quantization, (f64, f64))], peer: Option<&Value>, res: &mut Results) {
    for &t in &o.threads {
        if let (Some(grape), Some(faiss)) = (res.best_qps(t, |s| s == "grape gRPC exact"), res.best_qps(t, |s| s == "faiss_exact")) {
            res.row(format!("goal: gRPC exact QPS / faiss exact QPS, {t} threads"), grape / faiss, "ratio");
        }
    }
    let most = o.threads.iter().copied().max().unwrap_or(1);
    let grpc = res.best_qps(most, |s| s.starts_with("grape gRPC") && s != "grape gRPC exact" && !s.contains("on disk"));
    let on_disk = res.best_qps(most, |s| s.starts_with("grape gRPC") && s.ends_with("on disk"));
    let capped = res.best_qps(most, |s| s.starts_with("grape gRPC") && s.ends_with("memory capped"));
    let in_process = res.best_qps(most, |s| s.starts_with("grape in-process"));
    let hnswlib = res.best_qps(most, |s| s == "hnswlib");
    let usearch = res.best_qps(most, |s| s == "usearch_f32");
    let named = [("gRPC", grpc), ("gRPC, vectors on disk", on_disk), ("gRPC, vectors on disk, memory capped", capped)];
    for (name, qps) in named.into_iter().chain([("in-process", in_process), ("hnswlib", hnswlib), ("usearch f32", usearch)]) {
        if let Some(qps) = qps {
            res.row(format!("best {name} QPS at recall ≥ {GOAL_RECALL}, {most} threads"), qps, "queries/s");
        }
    }
    if let (Some(grape), Some(peer)) = (grpc, hnswlib) {
        res.row(format!("goal: best gRPC QPS / best hnswlib QPS at recall ≥ {GOAL_RECALL}, {most} threads"), grape / peer, "ratio");
    }
    for (q, (index, codes)) in memory.iter().filter(|(q, _)| *q != Quantization::None) {
        res.row(format!("goal: {} index memory / f32 vectors (graph + codes)", q.as_str()), *index, "ratio");
        res.row(format!("goal: {} codes / f32 vectors", q.as_str()), *codes, "ratio");
        // The memory goal holds at recall ≥ GOAL_RECALL after rescoring: the best recall reached.
        let prefix = format!("grape in-process {}", q.as_str());
        let best = res.points.iter().filter(|p| p.series.starts_with(&prefix)).map(|p| p.recall).reduce(f64::max);
        if let Some(best) = best {
            res.row(format!("{}: best recall@{} in process (any ef, with rescoring)", q.as_str(), o.k), best, "fraction");
        }
    }
    if let (Some(grape), Some(peer)) = (in_process, usearch) {
        res.row(format!("in-process QPS / usearch f32 QPS at recall ≥ {GOAL_RECALL}, {most} threads"), grape / peer, "ratio");
    }
    let build = res.rows.iter().find(|r| r.metric == "grape in-process none: build").map(|r| r.value);
    for (engine, name) in [("hnswlib", "goal: in-process build (none) / hnswlib build"), ("usearch_f32", "in-process build (none) / usearch f32 build")] {
        if let (Some(grape), Some(peer)) = (build, peer.and_then(|p| p[engine]["build_secs"].as_f64())) {
            res.row(name, grape / peer, "ratio");
        }
    }
}

/// Prints every curve point.
fn print_curves(points: &[Point]) {
    println!("\nrecall@k / QPS curves");
    println!("{:<26} {:>5} {:>7} {:>8} {:>10}", "series", "ef", "threads", "recall", "QPS");
    for p in points {
        let ef = p.ef.map_or("-".into(), |e| e.to_string());
        println!("{:<26} {:>5} {:>7} {:>8.4} {:>10.0}", p.series, ef, p.threads, p.recall, p.qps);
    }
}

/// Adds the curve points to the JSON report at `out`, as `curves`.
fn add_curves(out: &Path, points: &[Point]) -> Res<()> {
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(out)?)?;
    let curves = points.iter().map(|p| json!({ "series": p.series, "ef": p.ef, "threads": p.threads, "recall": p.recall, "qps": p.qps }));
    doc["curves"] = Value::Array(curves.collect());
    std::fs::write(out, serde_json::to_string_pretty(&doc)?)?;
    Ok(())
}

/// Draws the curves beside `out` as .png with bench/peers/plot_curve.py, run by `python`
/// (default: the peer venv's, else python3); a failure is a warning.
fn plot(out: &Path, python: Option<String>) {
    let venv = std::env::var("GRAPE_PEER_VENV").or_else(|_| std::env::var("HOME").map(|h| format!("{h}/.cache/grape-peer-venv")));
    let venv_python = venv.ok().map(|v| format!("{v}/bin/python")).filter(|p| Path::new(p).is_file());
    let python = python.or(venv_python).unwrap_or_else(|| "python3".into());
    let (png, script) = (out.with_extension("png"), Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/plot_curve.py"));
    match Command::new(&python).arg(script).arg(out).arg(&png).status() {
        Ok(s) if s.success() => println!("plot written to {}", png.display()),
        Ok(s) => eprintln!("warning: plot_curve.py failed ({s}); no plot"),
        Err(e) => eprintln!("warning: cannot run {python} for plot_curve.py ({e}); no plot"),
    }
}
