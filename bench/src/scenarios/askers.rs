//! Single-client query loops of the Qdrant scenarios, one per way of asking Grape: its own
//! gRPC `Search`, Qdrant's gRPC `Points/Query` and Qdrant's REST `points/query`, the last two
//! from Rust, so that the Qdrant layer's cost is measured without the Python client's.

use std::time::Instant;

use arrow::array::{Array, AsArray, UInt64Array};
use grape_compute::ingest::decode_ipc;
use grape_proto::qdrant::{self as qd, collections_client::CollectionsClient, points_client::PointsClient};
use grape_proto::v1::{self, grape_client::GrapeClient};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tonic::transport::Channel;

/// One way of asking a k-nearest-neighbour query: returns the hits' ids, best first.
pub(super) trait Asker {
    /// Asks for the `k` nearest neighbours of `vector`.
    async fn ask(&mut self, vector: &[f32], k: usize) -> Result<Vec<u64>, String>;
}

/// What [`passes`] measured.
pub(super) struct Passes {
    /// The first pass's hits, one list per query.
    pub(super) ids: Vec<Vec<u64>>,
    /// Queries answered per second in the timed passes.
    pub(super) qps: f64,
    /// Queries asked in all, the first pass included.
    pub(super) asked: usize,
}

/// Asks every query once for its hits, then repeats passes until `min_secs` have gone by.
pub(super) async fn passes(asker: impl Asker, queries: &[f32], dim: usize, k: usize, min_secs: f64) -> Result<Passes, String> {
    passes_at(asker, queries, dim, k, min_secs, None).await
}

/// [`passes`], asking at most `rate` queries per second when given (each query waits for its
/// turn): a fast client paced to a slow one's rate, so that the server's CPU per query of
/// the two compares like with like (at a low rate, every request pays for waking the
/// server's threads).
pub(super) async fn passes_at(
    asker: impl Asker,
    queries: &[f32],
    dim: usize,
    k: usize,
    min_secs: f64,
    rate: Option<f64>,
) -> Result<Passes, String> {
    let gap = rate.map(|r| std::time::Duration::from_secs_f64(1.0 / r.max(1e-3)));
    let mut asker = Paced { inner: asker, gap, turn: Instant::now() };
    let mut ids = Vec::new();
    for q in queries.chunks(dim) {
        ids.push(asker.ask(q, k).await?);
    }
    let (started, mut answered) = (Instant::now(), 0);
    while answered == 0 || started.elapsed().as_secs_f64() < min_secs {
        for q in queries.chunks(dim) {
            asker.ask(q, k).await?;
        }
        answered += ids.len();
    }
    let qps = answered as f64 / started.elapsed().as_secs_f64();
    Ok(Passes { asked: answered + ids.len(), ids, qps })
}

/// An [`Asker`] that asks no sooner than one `gap` after its previous turn.
struct Paced<A> {
    inner: A,
    gap: Option<std::time::Duration>,
    turn: Instant,
}

impl<A: Asker> Asker for Paced<A> {
    async fn ask(&mut self, vector: &[f32], k: usize) -> Result<Vec<u64>, String> {
        if let Some(gap) = self.gap {
            // A thread sleep, not tokio's timer, whose millisecond ticks would stretch every
            // gap below a millisecond or two (this one client's task alone waits).
            std::thread::sleep(self.turn.saturating_duration_since(Instant::now()));
            // Late (the answer took longer than a gap): no burst to catch up.
            self.turn = self.turn.max(Instant::now()) + gap;
        }
        self.inner.ask(vector, k).await
    }
}

/// Grape's own gRPC `Search` on `collection`, with an optional SQL filter.
pub(super) struct GrapeSearch<'a> {
    /// The client.
    pub(super) client: &'a mut GrapeClient<Channel>,
    /// The collection.
    pub(super) collection: &'a str,
    /// The SQL filter (empty: none).
    pub(super) filter: &'a str,
}

impl Asker for GrapeSearch<'_> {
    async fn ask(&mut self, vector: &[f32], k: usize) -> Result<Vec<u64>, String> {
        let request = v1::SearchRequest {
            collection: self.collection.into(),
            vector: vector.to_vec(),
            k: k as u32,
            filter: self.filter.into(),
            ..Default::default()
        };
        let ipc = self.client.search(request).await.map_err(|e| e.to_string())?.into_inner().arrow_ipc;
        hit_ids(&ipc)
    }
}

/// The ids of a search answer's hits: a uint64 `id` column, or a utf8 one holding integers
/// (a collection made through the Qdrant API).
pub(super) fn hit_ids(ipc: &[u8]) -> Result<Vec<u64>, String> {
    let (_, batches) = decode_ipc(ipc).map_err(|e| e.to_string())?;
    let mut ids = Vec::new();
    for batch in &batches {
        let column = batch.column_by_name("id").ok_or("the hits have no id column")?;
        if let Some(ints) = column.as_any().downcast_ref::<UInt64Array>() {
            ids.extend(ints.values().iter().copied());
        } else {
            let strings = column.as_string_opt::<i32>().ok_or("the hits' ids are neither uint64 nor utf8")?;
            ids.extend((0..strings.len()).filter(|i| strings.is_valid(*i)).filter_map(|i| strings.value(i).parse::<u64>().ok()));
        }
    }
    Ok(ids)
}

/// Qdrant's gRPC API on `collection` (tonic clients of Qdrant's own protos); as an
/// [`Asker`], `Points/Query`.
pub(super) struct QdrantGrpc {
    client: PointsClient<Channel>,
    collections: CollectionsClient<Channel>,
    collection: String,
}

impl QdrantGrpc {
    /// Connects to Grape's Qdrant gRPC API at `addr` (`host:port`).
    pub(super) async fn connect(addr: &str, collection: &str) -> Result<Self, String> {
        let channel = Channel::from_shared(format!("http://{addr}")).map_err(|e| e.to_string())?.connect().await.map_err(|e| e.to_string())?;
        let (client, collections) = (PointsClient::new(channel.clone()), CollectionsClient::new(channel));
        Ok(QdrantGrpc { client, collections, collection: collection.to_string() })
    }

    /// Creates the collection (Euclid), upserts the rows of `base` with id = row in batches
    /// of `batch` (`wait=true`), and returns points/s. The requests are built before the
    /// clock starts: the rate is the transport's and the server's, not the client's encoding.
    pub(super) async fn upsert_all(&mut self, base: &[f32], dim: usize, batch: usize) -> Result<f64, String> {
        let params = qd::VectorParams { size: dim as u64, distance: qd::Distance::Euclid as i32, ..Default::default() };
        let create = qd::CreateCollection {
            collection_name: self.collection.clone(),
            vectors_config: Some(qd::VectorsConfig { config: Some(qd::vectors_config::Config::Params(params)) }),
            ..Default::default()
        };
        self.collections.create(create).await.map_err(|e| e.to_string())?;
        let upserts: Vec<qd::UpsertPoints> = base.chunks(dim * batch).enumerate().map(|(b, rows)| {
            let points = rows
                .chunks(dim)
                .enumerate()
                .map(|(i, v)| {
                    let dense = qd::vector::Vector::Dense(qd::DenseVector { data: v.to_vec() });
                    let vector = qd::Vector { vector: Some(dense), ..Default::default() };
                    qd::PointStruct {
                        id: Some(qd::PointId { point_id_options: Some(qd::point_id::PointIdOptions::Num((b * batch + i) as u64)) }),
                        vectors: Some(qd::Vectors { vectors_options: Some(qd::vectors::VectorsOptions::Vector(vector)) }),
                        ..Default::default()
                    }
                })
                .collect();
            qd::UpsertPoints { collection_name: self.collection.clone(), wait: Some(true), points, ..Default::default() }
        }).collect();
        let started = Instant::now();
        for upsert in upserts {
            self.client.upsert(upsert).await.map_err(|e| e.to_string())?;
        }
        Ok((base.len() / dim) as f64 / started.elapsed().as_secs_f64())
    }
}

impl Asker for QdrantGrpc {
    async fn ask(&mut self, vector: &[f32], k: usize) -> Result<Vec<u64>, String> {
        let dense = qd::VectorInput { variant: Some(qd::vector_input::Variant::Dense(qd::DenseVector { data: vector.to_vec() })) };
        let request = qd::QueryPoints {
            collection_name: self.collection.clone(),
            query: Some(qd::Query { variant: Some(qd::query::Variant::Nearest(dense)) }),
            limit: Some(k as u64),
            ..Default::default()
        };
        let points = self.client.query(request).await.map_err(|e| e.to_string())?.into_inner().result;
        points
            .iter()
            .map(|p| match p.id.as_ref().and_then(|id| id.point_id_options.as_ref()) {
                Some(qd::point_id::PointIdOptions::Num(n)) => Ok(*n),
                other => Err(format!("a hit without an integer id: {other:?}")),
            })
            .collect()
    }
}

/// Qdrant's REST API on `collection` over one kept-alive HTTP/1.1 connection (TCP_NODELAY),
/// JSON in and out; as an [`Asker`], `POST /collections/{name}/points/query`.
pub(super) struct QdrantRest {
    stream: BufReader<TcpStream>,
    addr: String,
    collection: String,
}

impl QdrantRest {
    /// Connects to Grape's Qdrant REST API at `addr` (`host:port`).
    pub(super) async fn connect(addr: &str, collection: &str) -> Result<Self, String> {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(QdrantRest { stream: BufReader::new(stream), addr: addr.to_string(), collection: collection.to_string() })
    }

    /// Creates the collection (Euclid), upserts the rows of `base` with id = row in batches
    /// of `batch` (`wait=true`), and returns points/s. The requests are built before the
    /// clock starts: the rate is the transport's and the server's, not the client's encoding.
    pub(super) async fn upsert_all(&mut self, base: &[f32], dim: usize, batch: usize) -> Result<f64, String> {
        let collection = format!("/collections/{}", self.collection);
        self.send("PUT", &collection, &json!({ "vectors": { "size": dim, "distance": "Euclid" } })).await?;
        let points = format!("{collection}/points?wait=true");
        let bodies = base.chunks(dim * batch).enumerate().map(|(b, rows)| batch_body(rows, dim, b * batch)).collect::<Result<Vec<_>, _>>()?;
        let started = Instant::now();
        for body in bodies {
            self.send_json("PUT", &points, body).await?;
        }
        Ok((base.len() / dim) as f64 / started.elapsed().as_secs_f64())
    }

    /// Sends `body` to `path` with `method`; returns the response body parsed. A typed body
    /// writes each f32 in its shortest form, as a Rust client would (a `json!` value would
    /// widen it to f64 and write 17 digits).
    async fn send(&mut self, method: &str, path: &str, body: &impl Serialize) -> Result<Value, String> {
        self.send_json(method, path, serde_json::to_string(body).map_err(|e| e.to_string())?).await
    }

    /// [`QdrantRest::send`] with the body already written.
    async fn send_json(&mut self, method: &str, path: &str, body: String) -> Result<Value, String> {
        let head =
            format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", self.addr, body.len());
        let io = |e: std::io::Error| e.to_string();
        self.stream.get_mut().write_all(head.as_bytes()).await.map_err(io)?;
        self.stream.get_mut().write_all(body.as_bytes()).await.map_err(io)?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await.map_err(io)?;
        let status: u16 = line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| format!("no HTTP status line: {line:?}"))?;
        let (mut length, mut chunked) = (None, false);
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.map_err(io)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or((header, ""));
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse::<usize>().ok(),
                "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
                _ => {}
            }
        }
        let mut answer = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.stream.read_line(&mut line).await.map_err(io)?;
                let size = usize::from_str_radix(line.trim(), 16).map_err(|e| format!("bad chunk size {line:?}: {e}"))?;
                let mut chunk = vec![0; size + 2];
                self.stream.read_exact(&mut chunk).await.map_err(io)?;
                answer.extend_from_slice(&chunk[..size]);
                if size == 0 {
                    break;
                }
            }
        } else {
            answer.resize(length.ok_or("a response without a length")?, 0);
            self.stream.read_exact(&mut answer).await.map_err(io)?;
        }
        if status != 200 {
            return Err(format!("{path}: HTTP {status}: {}", String::from_utf8_lossy(&answer)));
        }
        serde_json::from_slice(&answer).map_err(|e| e.to_string())
    }
}

/// The JSON body of a batch upsert of the vectors `rows` (ids from `first` on), each number
/// in its shortest form as an `F`: as `f32`, the way a Rust client writes them; widened to
/// `f64` (up to 17 digits), the way Python's `qdrant-client` does.
pub(super) fn batch_body<F: Serialize>(rows: &[F], dim: usize, first: usize) -> Result<String, String> {
    let ids = (first..first + rows.len() / dim).collect();
    let vectors = rows.chunks(dim).collect();
    serde_json::to_string(&UpsertBody { batch: Batch { ids, vectors } }).map_err(|e| e.to_string())
}

/// The body of a batch upsert: `{"batch": {"ids": [...], "vectors": [[...], ...]}}`.
#[derive(Serialize)]
struct UpsertBody<'a, F> {
    batch: Batch<'a, F>,
}

/// The columns of [`UpsertBody`].
#[derive(Serialize)]
struct Batch<'a, F> {
    ids: Vec<usize>,
    vectors: Vec<&'a [F]>,
}

/// The body of a nearest-vector `query_points`.
#[derive(Serialize)]
struct QueryBody<'a> {
    query: &'a [f32],
    limit: usize,
}

impl Asker for QdrantRest {
    async fn ask(&mut self, vector: &[f32], k: usize) -> Result<Vec<u64>, String> {
        let path = format!("/collections/{}/points/query", self.collection);
        let answer = self.send("POST", &path, &QueryBody { query: vector, limit: k }).await?;
        let points = answer["result"]["points"].as_array().ok_or_else(|| format!("no points in {answer}"))?;
        points.iter().map(|p| p["id"].as_u64().ok_or_else(|| format!("a hit without an integer id: {p}"))).collect()
    }
}
