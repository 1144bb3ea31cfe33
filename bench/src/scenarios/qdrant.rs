//! `qdrant`: what the Qdrant API costs. One `grape dev` takes the same clustered points in
//! batches through Grape's own gRPC API (`Insert`, a Rust client), through the Qdrant layer
//! with Rust clients (its REST API over one kept-alive HTTP/1.1 connection, its gRPC API with
//! tonic), and through the official Python `qdrant-client` over REST and over gRPC. After
//! compaction and index builds settle, one client asks the same queries through each path at
//! the default search parameters. The table shows points/s, QPS and recall@k side by side,
//! each Qdrant path as a fraction of Grape's own, and the server's CPU time per point and per
//! query on each path: the Rust clients and the server's CPU measure the Qdrant layer itself,
//! `qdrant-client` adds its own cost per call, which is what a Python user sees. Each
//! `qdrant-client` query path is followed by Grape's own gRPC paced to its rate, so that the
//! server's CPU per query compares at the same rate. The scenario times reading one REST
//! upsert body in this process, by serde_json and by the Qdrant layer's own reader, and shows
//! each REST path's server CPU per point also less that reading: what the layer costs beyond
//! turning decimal text into numbers. Grape's own upserts and the Rust REST client's are
//! taken in turns (`--upsert-rounds`), and the round with the median ratio is shown.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use clap::Args;
use grape_compute::datagen::gaussian_mixture;
use grape_compute::engine::RETIRE_GRACE;
use grape_compute::index::VecVectors;
use grape_compute::qdrant::given::UpsertBody;
use grape_compute::qdrant::reply::parse_body;
use grape_compute::ingest::{encode_ipc, vector_type};
use grape_meta::catalog::Metric;
use grape_proto::v1::{self, grape_client::GrapeClient};
use serde_json::{json, Value};
use std::sync::Arc;
use tonic::transport::Channel;

use super::ann::{connect, exact_top_k, recall, wait_indexed};
use super::askers::{batch_body, passes, passes_at, GrapeSearch, Passes, QdrantGrpc, QdrantRest};
use super::processes::{cpu_seconds, free_port, DevServer};
use crate::report::{report, Row};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Options of the scenario.
#[derive(Debug, Args)]
pub struct Options {
    /// Points upserted through each path.
    #[arg(long, default_value_t = 100_000)]
    rows: usize,
    /// Vector dimension.
    #[arg(long, default_value_t = 128)]
    dim: usize,
    /// Gaussian clusters of the data.
    #[arg(long, default_value_t = 64)]
    clusters: usize,
    /// Queries (drawn from the same mixture, another seed).
    #[arg(long, default_value_t = 500)]
    queries: usize,
    /// Hits per query (recall@k).
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Points per upsert call.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Rounds of the upserts through Grape's gRPC and the Qdrant REST API with a Rust client,
    /// taken in turns; the round with the median ratio is shown (this VM's speed drifts).
    #[arg(long, default_value_t = 3)]
    upsert_rounds: usize,
    /// Repeat the queries until a pass lasts this long (seconds).
    #[arg(long, default_value_t = 3.0)]
    min_secs: f64,
    /// Skip the gRPC path of the Qdrant API.
    #[arg(long)]
    skip_grpc: bool,
    /// The `grape` binary (default: beside this benchmark's binary).
    #[arg(long)]
    grape: Option<PathBuf>,
    /// Where to write the JSON result (the data goes beside it, in `<stem>-data/`).
    #[arg(long, default_value = "bench/results/qdrant.json")]
    out: PathBuf,
}

/// Runs the scenario.
pub fn run(o: Options) -> Res<()> {
    let base = gaussian_mixture(o.rows, o.dim, o.clusters, 1);
    let queries = gaussian_mixture(o.queries, o.dim, o.clusters, 2);
    let truth = exact_top_k(&VecVectors::new(base.clone(), o.dim), &queries, Metric::L2, o.k, |_| true);
    let data = write_data(&o.out, &base, &queries)?;
    let python = qdrant_python()?;
    let (rest, grpc) = (free_port()?, free_port()?);
    let mut flags = vec!["--qdrant-listen".to_string(), format!("127.0.0.1:{rest}")];
    flags.extend(["--qdrant-grpc-listen".to_string(), if o.skip_grpc { "off".to_string() } else { format!("127.0.0.1:{grpc}") }]);
    let server = DevServer::start_with(o.grape.as_deref(), &flags)?;
    // Index every segment of a settled collection, however small the run; but no index
    // build or compaction while upserts are measured (they would share the two cores with
    // the later paths' upserts only).
    server.cli(&["config", "set", "index/min_rows", "1000"])?;
    server.cli(&["config", "set", "index/auto", "off"])?;
    server.cli(&["config", "set", "compaction/auto", "off"])?;
    let runtime = tokio::runtime::Runtime::new()?;
    let mut client = runtime.block_on(connect(&server.endpoint))?;
    let peer = Peer { python, url: format!("http://127.0.0.1:{rest}"), grpc, data, dim: o.dim };
    let cpu = ServerCpu::measure(server.pid());
    let mut rows = Vec::new();
    rows.push(Row::new("server CPU while idle (subtracted from every path's)", cpu.idle * 100.0, "% of a core"));
    let mut transports = vec!["rest"];
    if !o.skip_grpc {
        transports.push("grpc");
    }
    // Every measured upsert starts from the same server, holding no other collection: the
    // catalog sync after each commit visits every segment a node holds, so a path measured
    // beside another collection's segments would pay for them. Each measured collection is
    // dropped after (and its segments' retire grace waited out), but for `qd_rest`, measured
    // last, which the queries use; `native` is inserted again, unmeasured, for them.
    let drop_collection = |name: &str| -> Res<()> {
        server.cli(&["collection", "drop", name])?;
        std::thread::sleep(RETIRE_GRACE + Duration::from_secs(1));
        Ok(())
    };

    // Reading a REST body costs the same in this process as in the server: timed first, so
    // that the upsert rows can show the server's CPU less it.
    let reading = decoding(&mut rows, &base, &o)?;
    // Grape's own gRPC and the Qdrant REST API (Rust client) in turns, `upsert_rounds` times.
    let (mut natives, mut rests) = (Vec::new(), Vec::new());
    let mut upserter = runtime.block_on(QdrantRest::connect(&format!("127.0.0.1:{rest}"), "qd_rust"))?;
    for round in 1..=o.upsert_rounds.max(1) {
        eprintln!("round {round}: grape gRPC: upserting {} points in batches of {} …", o.rows, o.batch);
        let (rate, seconds) = cpu.during(|| runtime.block_on(insert_native(&mut client, &o, &base, "native_timed", None)));
        natives.push(Upserts { rate: rate?, cpu: seconds / o.rows as f64 });
        drop_collection("native_timed")?;
        eprintln!("round {round}: Qdrant REST (Rust client): upserting …");
        let (rate, seconds) = cpu.during(|| runtime.block_on(upserter.upsert_all(&base, o.dim, o.batch)));
        rests.push(Upserts { rate: rate?, cpu: seconds / o.rows as f64 });
        drop_collection("qd_rust")?;
        let (n, r) = (&natives[round - 1], &rests[round - 1]);
        eprintln!("round {round}: server CPU per point: grape gRPC {:.2} µs, Qdrant REST {:.2} µs ({:.2}×)", n.cpu * 1e6, r.cpu * 1e6, r.cpu / n.cpu.max(1e-12));
    }
    let (native, measured) = median_round(natives, rests);
    rows.push(Row::new("upsert, grape gRPC (Rust client)", native.rate, "points/s"));
    rows.push(Row::new("upsert, grape gRPC: server CPU per point", native.cpu * 1e6, "µs"));
    let path = "Qdrant REST (Rust HTTP/1.1 client)";
    measured.push(&mut rows, path, &native);
    measured.push_less_reading(&mut rows, path, &native, "grape gRPC's", reading.shortest);
    if !o.skip_grpc {
        eprintln!("Qdrant gRPC (Rust client): upserting …");
        let mut upserter = runtime.block_on(QdrantGrpc::connect(&format!("127.0.0.1:{grpc}"), "qd_rust_grpc"))?;
        let (rate, seconds) = cpu.during(|| runtime.block_on(upserter.upsert_all(&base, o.dim, o.batch)));
        Upserts { rate: rate?, cpu: seconds / o.rows as f64 }.push(&mut rows, "Qdrant gRPC (Rust tonic client)", &native);
        drop_collection("qd_rust_grpc")?;
    }
    for t in transports.iter().rev() {
        eprintln!("qdrant-client {t}: upserting …");
        let (out, seconds) = cpu.during(|| peer.run(t, &format!("qd_{t}"), &["--phase", "upsert", "--batch", &o.batch.to_string()]));
        let rate = out?["points_per_s"].as_f64().unwrap_or(0.0);
        let measured = Upserts { rate, cpu: seconds / o.rows as f64 };
        let path = format!("qdrant-client {t}");
        measured.push(&mut rows, &path, &native);
        // Grape's own gRPC again, paced to this client's rate: a server fed slowly pays more
        // per point (its threads park and wake between calls), whatever the API.
        eprintln!("grape gRPC paced to qdrant-client {t}'s rate: upserting …");
        let (paced, seconds) = cpu.during(|| runtime.block_on(insert_native(&mut client, &o, &base, "native_paced", Some(rate))));
        let paced = Upserts { rate: paced?, cpu: seconds / o.rows as f64 };
        drop_collection("native_paced")?;
        rows.push(Row::new(format!("upsert, grape gRPC paced to {path}'s rate: server CPU per point"), paced.cpu * 1e6, "µs"));
        let same_rate = measured.cpu / paced.cpu.max(1e-12);
        eprintln!("{path}: server CPU per point {same_rate:.2}× Grape gRPC's at the same rate");
        rows.push(Row::new(format!("upsert, {path}: server CPU per point / grape gRPC's at the same rate"), same_rate, "ratio"));
        if *t == "rest" {
            measured.push_less_reading(&mut rows, &path, &paced, "grape gRPC's at the same rate", reading.seventeen);
        }
        if *t != "rest" {
            drop_collection(&format!("qd_{t}"))?;
        }
    }
    eprintln!("grape gRPC: inserting `native` for the queries …");
    runtime.block_on(insert_native(&mut client, &o, &base, "native", None))?;
    server.cli(&["config", "set", "index/auto", "on"])?;
    for name in ["native", "qd_rest"] {
        eprintln!("{name}: compacting and waiting for the indexes …");
        runtime.block_on(settle(&mut client, name))?;
    }

    eprintln!("grape gRPC: querying …");
    let started = Instant::now();
    let asker = GrapeSearch { client: &mut client, collection: "native", filter: "" };
    let (measured, seconds) = cpu.during(|| runtime.block_on(passes(asker, &queries, o.dim, o.k, o.min_secs)));
    eprintln!("grape gRPC: {:.1} s", started.elapsed().as_secs_f64());
    Queries::of(measured?, seconds, &truth).push(&mut rows, "query, grape gRPC (Rust client)", None, o.k);
    // The Qdrant layer without the Python client: Rust clients of its gRPC and REST APIs, beside
    // Grape's own gRPC on the same (Qdrant-made) collection.
    let on_qd = GrapeSearch { client: &mut client, collection: "qd_rest", filter: "" };
    let (measured, seconds) = cpu.during(|| runtime.block_on(passes(on_qd, &queries, o.dim, o.k, o.min_secs)));
    let own = Queries::of(measured?, seconds, &truth);
    own.push(&mut rows, "query qd_rest, grape gRPC (Rust client)", None, o.k);
    if !o.skip_grpc {
        let asker = runtime.block_on(QdrantGrpc::connect(&format!("127.0.0.1:{grpc}"), "qd_rest"))?;
        let (measured, seconds) = cpu.during(|| runtime.block_on(passes(asker, &queries, o.dim, o.k, o.min_secs)));
        Queries::of(measured?, seconds, &truth).push(&mut rows, "query qd_rest, Qdrant gRPC (Rust tonic client)", Some(&own), o.k);
    }
    let asker = runtime.block_on(QdrantRest::connect(&format!("127.0.0.1:{rest}"), "qd_rest"))?;
    let (measured, seconds) = cpu.during(|| runtime.block_on(passes(asker, &queries, o.dim, o.k, o.min_secs)));
    Queries::of(measured?, seconds, &truth).push(&mut rows, "query qd_rest, Qdrant REST (Rust HTTP/1.1 client)", Some(&own), o.k);
    // qdrant-client opens a TCP connection per REST call to a local host; with keep-alive,
    // as it calls a remote host, too.
    let mut clients: Vec<(&str, bool)> = transports.iter().map(|t| (*t, false)).collect();
    clients.insert(1, ("rest", true));
    for (transport, keep_alive) in clients {
        let (k, min_secs) = (o.k.to_string(), o.min_secs.to_string());
        let mut args = vec!["--phase", "query", "--k", &k, "--min-secs", &min_secs];
        if keep_alive {
            args.push("--keep-alive");
        }
        let t = if keep_alive { "rest, keep-alive" } else { transport };
        let (out, seconds) = cpu.during(|| peer.run(transport, "qd_rest", &args));
        let out = out?;
        let ids: Vec<Vec<u64>> = serde_json::from_value(out["ids"].clone())?;
        let asked = out["asked"].as_u64().unwrap_or(1).max(1) as f64;
        let measured = Queries { qps: out["qps"].as_f64().unwrap_or(0.0), recall: recall(&ids, &truth), cpu: seconds / asked };
        measured.push(&mut rows, &format!("query qd_rest, qdrant-client {t}"), Some(&own), o.k);
        // Grape's own gRPC again, paced to this client's rate: what the server pays per query
        // at that rate whatever the API, to tell the layer's cost from the rate's.
        let on_qd = GrapeSearch { client: &mut client, collection: "qd_rest", filter: "" };
        let rate = Some(measured.qps);
        let (paced, seconds) = cpu.during(|| runtime.block_on(passes_at(on_qd, &queries, o.dim, o.k, o.min_secs, rate)));
        let paced = Queries::of(paced?, seconds, &truth);
        paced.push(&mut rows, &format!("query qd_rest, grape gRPC paced to qdrant-client {t}'s rate"), None, o.k);
        let ratio = measured.cpu / paced.cpu.max(1e-12);
        eprintln!("qdrant-client {t}: server CPU per query {ratio:.2}× Grape gRPC's at the same rate");
        rows.push(Row::new(format!("query qd_rest, qdrant-client {t}: server CPU per query / grape gRPC's at the same rate"), ratio, "ratio"));
    }
    let profile = if cfg!(debug_assertions) { "dev" } else { "release" };
    let params = json!({ "rows": o.rows, "dim": o.dim, "queries": o.queries, "k": o.k, "batch": o.batch, "clients": 1, "profile": profile, "metric": "l2 (Euclid)" });
    report("Qdrant API: upserts and queries through qdrant-client beside Grape's gRPC (grape dev, 1 client)", params, &rows, &o.out)?;
    Ok(())
}

/// What reading one REST upsert body of `o.batch` points costs, in this process: through
/// serde alone and through the Qdrant layer's reader (what the server does), for numbers in
/// their shortest f32 form (as the Rust client sends them) and in up to 17 digits (as
/// `qdrant-client` sends them). Each the best of 20 reads.
fn decoding(rows: &mut Vec<Row>, base: &[f32], o: &Options) -> Res<Reading> {
    let first = &base[..o.batch.min(o.rows) * o.dim];
    let wide: Vec<f64> = first.iter().map(|v| f64::from(*v)).collect();
    let best_of_20 = |read: &dyn Fn() -> bool| -> Res<f64> {
        let mut best = f64::INFINITY;
        for _ in 0..20 {
            let started = Instant::now();
            if !read() {
                return Err("an upsert body did not read".into());
            }
            best = best.min(started.elapsed().as_secs_f64());
        }
        Ok(best)
    };
    let mut per_point = Vec::new();
    for (form, body) in [("shortest f32 digits", batch_body(first, o.dim, 0)?), ("17 digits", batch_body(&wide, o.dim, 0)?)] {
        let bytes = body.as_bytes();
        let by_serde = best_of_20(&|| parse_body::<UpsertBody>(bytes).is_ok())?;
        let by_reader = best_of_20(&|| UpsertBody::from_json(bytes).is_ok())?;
        let (mb, points) = (bytes.len() as f64 / 1e6, first.len() / o.dim);
        eprintln!("REST body, {form} ({mb:.2} MB, {points} points): serde {:.2} ms, Qdrant layer's reader {:.2} ms", by_serde * 1e3, by_reader * 1e3);
        rows.push(Row::new(format!("REST upsert body, {form} ({mb:.2} MB): read by serde_json, per point"), by_serde / points as f64 * 1e6, "µs"));
        rows.push(Row::new(format!("REST upsert body, {form} ({mb:.2} MB): read by the Qdrant layer, per point"), by_reader / points as f64 * 1e6, "µs"));
        per_point.push(by_reader / points as f64);
    }
    Ok(Reading { shortest: per_point[0], seventeen: per_point[1] })
}

/// Seconds per point the Qdrant layer's reader takes over a REST upsert body.
struct Reading {
    /// With numbers in their shortest f32 form (as the Rust client sends them).
    shortest: f64,
    /// With numbers in 17 digits (as `qdrant-client` sends them).
    seventeen: f64,
}

/// The server's CPU time (`grape dev`'s pid), charged to each measured path: the cost of the
/// Qdrant layer itself, apart from its clients' cost and this VM's scheduling.
struct ServerCpu {
    /// The server's pid.
    pid: u32,
    /// CPU seconds per second it uses while idle.
    idle: f64,
}

impl ServerCpu {
    /// Measures the idle server `pid` for a second.
    fn measure(pid: u32) -> ServerCpu {
        let (before, started) = (cpu_seconds(pid), Instant::now());
        std::thread::sleep(Duration::from_secs(1));
        ServerCpu { pid, idle: (cpu_seconds(pid) - before) / started.elapsed().as_secs_f64() }
    }

    /// Runs `f`; returns its answer and the CPU seconds the server used for it: from the start
    /// until it is idle again (segments still loading after the last answer are the path's
    /// work), less what it uses while idle.
    fn during<T>(&self, f: impl FnOnce() -> T) -> (T, f64) {
        const WINDOW: Duration = Duration::from_millis(200);
        let (before, started) = (cpu_seconds(self.pid), Instant::now());
        let answer = f();
        // /proc counts CPU in 10 ms ticks: a window is quiet when it used at most one tick
        // more than idling would.
        let quiet = self.idle * WINDOW.as_secs_f64() + 0.011;
        let mut last = cpu_seconds(self.pid);
        for _ in 0..25 {
            std::thread::sleep(WINDOW);
            let now = cpu_seconds(self.pid);
            if now - last <= quiet {
                break;
            }
            last = now;
        }
        let used = cpu_seconds(self.pid) - before - self.idle * started.elapsed().as_secs_f64();
        (answer, used.max(0.0))
    }
}

/// What one upsert path measured.
struct Upserts {
    /// Points per second.
    rate: f64,
    /// Server CPU seconds per point.
    cpu: f64,
}

impl Upserts {
    /// Adds this path's rows: points/s and server CPU per point, each also as a fraction of
    /// Grape's own (`native`).
    fn push(&self, rows: &mut Vec<Row>, path: &str, native: &Upserts) {
        rows.push(Row::new(format!("upsert, {path}"), self.rate, "points/s"));
        rows.push(Row::new(format!("upsert, {path} / grape gRPC"), self.rate / native.rate.max(1e-9), "fraction"));
        rows.push(Row::new(format!("upsert, {path}: server CPU per point"), self.cpu * 1e6, "µs"));
        rows.push(Row::new(format!("upsert, {path}: server CPU per point / grape gRPC's"), self.cpu / native.cpu.max(1e-12), "ratio"));
    }

    /// Adds the server's CPU per point less `reading` (seconds per point to read the JSON
    /// body, timed in this process) as a fraction of Grape's own (`native`, named `against`):
    /// what the layer costs beyond turning decimal text into numbers.
    fn push_less_reading(&self, rows: &mut Vec<Row>, path: &str, native: &Upserts, against: &str, reading: f64) {
        let rest = (self.cpu - reading).max(0.0);
        rows.push(Row::new(format!("upsert, {path}: server CPU per point less reading the JSON"), rest * 1e6, "µs"));
        rows.push(Row::new(format!("upsert, {path}: server CPU per point less reading the JSON / {against}"), rest / native.cpu.max(1e-12), "ratio"));
    }
}

/// The round (Grape's upserts, the other path's) whose ratio of server CPU per point is the
/// median one: the two figures of a round were measured side by side.
fn median_round(natives: Vec<Upserts>, others: Vec<Upserts>) -> (Upserts, Upserts) {
    let mut rounds: Vec<(Upserts, Upserts)> = natives.into_iter().zip(others).collect();
    rounds.sort_by(|a, b| (a.1.cpu / a.0.cpu.max(1e-12)).total_cmp(&(b.1.cpu / b.0.cpu.max(1e-12))));
    let middle = rounds.len() / 2;
    rounds.swap_remove(middle)
}

/// What one query path measured.
struct Queries {
    /// Queries per second.
    qps: f64,
    /// Recall@k of the first pass.
    recall: f64,
    /// Server CPU seconds per query.
    cpu: f64,
}

impl Queries {
    /// The figures of `measured`, during which the server used `seconds` of CPU.
    fn of(measured: Passes, seconds: f64, truth: &[Vec<u32>]) -> Queries {
        Queries { qps: measured.qps, recall: recall(&measured.ids, truth), cpu: seconds / measured.asked.max(1) as f64 }
    }

    /// Adds this path's rows: QPS, recall and server CPU per query, with QPS and CPU as
    /// fractions of Grape's own gRPC on the same collection (`own`) when given.
    fn push(&self, rows: &mut Vec<Row>, path: &str, own: Option<&Queries>, k: usize) {
        eprintln!("{path}: {:.0} QPS at recall {:.3}, {:.0} µs server CPU per query", self.qps, self.recall, self.cpu * 1e6);
        rows.push(Row::new(format!("{path}: QPS"), self.qps, "queries/s"));
        rows.push(Row::new(format!("{path}: recall@{k}"), self.recall, "fraction"));
        rows.push(Row::new(format!("{path}: server CPU per query"), self.cpu * 1e6, "µs"));
        if let Some(own) = own {
            rows.push(Row::new(format!("{path}: QPS / grape gRPC's"), self.qps / own.qps.max(1e-9), "fraction"));
            rows.push(Row::new(format!("{path}: server CPU per query / grape gRPC's"), self.cpu / own.cpu.max(1e-12), "ratio"));
        }
    }
}

/// Writes `base.f32` and `queries.f32` beside the result file `out`; returns their directory.
pub(super) fn write_data(out: &Path, base: &[f32], queries: &[f32]) -> Res<PathBuf> {
    let stem = out.file_stem().map_or("qdrant".into(), |s| s.to_string_lossy().into_owned());
    let dir = out.with_file_name(format!("{stem}-data"));
    std::fs::create_dir_all(&dir)?;
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    std::fs::write(dir.join("base.f32"), bytes(base))?;
    std::fs::write(dir.join("queries.f32"), bytes(queries))?;
    Ok(dir)
}

/// The python of the venv with `qdrant-client` (`tests/qdrant/setup.sh` makes it).
pub(super) fn qdrant_python() -> Res<String> {
    let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/qdrant/setup.sh");
    let out = Command::new("bash").arg(setup).output()?;
    if !out.status.success() {
        return Err(format!("tests/qdrant/setup.sh failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("python3").trim().to_string())
}

/// The Python side (`bench/peers/qdrant_client_bench.py`).
pub(super) struct Peer {
    /// The venv's python.
    pub(super) python: String,
    /// Grape's Qdrant REST URL.
    pub(super) url: String,
    /// Grape's Qdrant gRPC port.
    pub(super) grpc: u16,
    /// Where `base.f32` and `queries.f32` are.
    pub(super) data: PathBuf,
    /// Vector dimension.
    pub(super) dim: usize,
}

impl Peer {
    /// Runs the script over `transport` on `collection` with `args`; returns its JSON answer.
    pub(super) fn run(&self, transport: &str, collection: &str, args: &[&str]) -> Res<Value> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/qdrant_client_bench.py");
        let out = Command::new(&self.python)
            .arg(script)
            .args(["--url", &self.url, "--grpc-port", &self.grpc.to_string(), "--transport", transport])
            .arg("--data")
            .arg(&self.data)
            .args(["--dim", &self.dim.to_string(), "--collection", collection])
            .args(args)
            .output()?;
        if !out.status.success() {
            return Err(format!("qdrant_client_bench.py {transport} {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }
}

/// Creates collection `name` and inserts the base rows in batches through `Insert`; returns
/// points/s.
async fn insert_native(client: &mut GrapeClient<Channel>, o: &Options, base: &[f32], name: &str, pace: Option<f64>) -> Result<f64, String> {
    let create = v1::CreateCollectionRequest { name: name.into(), dim: o.dim as u32, metric: "l2".into(), ..Default::default() };
    client.create_collection(create).await.map_err(|e| e.to_string())?;
    // Encoded before the clock starts, as the REST client's bodies are: the figures are the
    // transport's and the server's, not the client's encoding.
    let bodies = (0..o.rows).step_by(o.batch).map(|start| ipc_batch(o, base, start)).collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    for (turn, ipc) in bodies.into_iter().enumerate() {
        if let Some(rate) = pace {
            // A thread sleep, as `Paced` does for queries: tokio's timer ticks in milliseconds.
            let due = started + Duration::from_secs_f64((turn * o.batch) as f64 / rate.max(1.0));
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        client.insert(v1::InsertRequest { collection: name.into(), arrow_ipc: ipc }).await.map_err(|e| e.to_string())?;
    }
    Ok(o.rows as f64 / started.elapsed().as_secs_f64())
}

/// The Arrow IPC stream of the batch of `base` starting at row `start`, ids = rows.
fn ipc_batch(o: &Options, base: &[f32], start: usize) -> Result<Vec<u8>, String> {
    let n = o.batch.min(o.rows - start);
    let values = Float32Array::from(base[start * o.dim..(start + n) * o.dim].to_vec());
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    let vectors = FixedSizeListArray::try_new(item, o.dim as i32, Arc::new(values), None).map_err(|e| e.to_string())?;
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::UInt64, false), Field::new("vector", vector_type(o.dim as u32), false)]));
    let columns: Vec<ArrayRef> = vec![Arc::new(UInt64Array::from_iter_values(start as u64..(start + n) as u64)), Arc::new(vectors)];
    let batch = RecordBatch::try_new(schema, columns).map_err(|e| e.to_string())?;
    encode_ipc(&batch.schema(), &[batch]).map_err(|e| e.to_string())
}

/// Compacts `name`, waits for its compaction jobs, then for every segment's index.
pub(super) async fn settle(client: &mut GrapeClient<Channel>, name: &str) -> Result<(), String> {
    client.compact(v1::CompactRequest { collection: name.into(), shard: None }).await.map_err(|e| format!("compact {name}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30 * 60);
    loop {
        let jobs = client.list_jobs(v1::ListJobsRequest::default()).await.map_err(|e| format!("jobs: {e}"))?.into_inner().jobs;
        let busy = jobs.iter().any(|j| j.kind == "compact" && j.collection == name && matches!(j.state.as_str(), "pending" | "running"));
        if !busy {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("{name}: compaction still running after 30 minutes"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_indexed(client, name).await.map(|_| ())
}
