//! Ids are keys: a randomized model test of upserts, deletes by id and by filter, interleaved
//! with searches, SQL counts, Gets and describes, each checked against an in-memory model
//! after every step, on `grape dev` and on 3 meta + 2 compute (writes on one node, reads on
//! the other at the write's version). And the bad input of deletes and Gets: clear errors,
//! nothing changed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{AsArray, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, UInt64Type};
use grape_compute::ingest::{decode_ipc, encode_ipc};
use grape_proto::v1::{self, grape_client::GrapeClient};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;
use tonic::Code;

use crate::harness::{cluster, DevProcess};
use crate::hostile_input::client;

pub(crate) const DIM: usize = 4;
/// Ids are drawn from 0..KEYS, so upserts often replace and deletes often hit.
pub(crate) const KEYS: u64 = 120;

/// The collection as the test expects it: id → (vector, price).
pub(crate) type Model = BTreeMap<u64, (Vec<f32>, i64)>;

pub(crate) fn schema() -> Arc<Schema> {
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::UInt64, false),
        Field::new("vector", DataType::FixedSizeList(item, DIM as i32), false),
        Field::new("price", DataType::Int64, true),
    ]))
}

/// Arrow IPC of `rows`, in order (an id may repeat: the last row wins).
pub(crate) fn ipc(rows: &[(u64, Vec<f32>, i64)]) -> Vec<u8> {
    let ids = UInt64Array::from_iter_values(rows.iter().map(|r| r.0));
    let values = Float32Array::from_iter_values(rows.iter().flat_map(|r| r.1.iter().copied()));
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    let vectors = FixedSizeListArray::try_new(item, DIM as i32, Arc::new(values), None).unwrap();
    let prices = Int64Array::from_iter_values(rows.iter().map(|r| r.2));
    let batch = RecordBatch::try_new(schema(), vec![Arc::new(ids), Arc::new(vectors), Arc::new(prices)]).unwrap();
    encode_ipc(&batch.schema(), &[batch]).unwrap()
}

/// (id, price) of the rows of an Arrow IPC answer.
pub(crate) fn ids_and_prices(ipc: &[u8]) -> Vec<(u64, i64)> {
    if ipc.is_empty() {
        return Vec::new();
    }
    let (_, batches) = decode_ipc(ipc).unwrap();
    let mut out = Vec::new();
    for b in batches {
        let ids = b.column_by_name("id").unwrap().as_primitive::<UInt64Type>().clone();
        let prices = b.column_by_name("price").unwrap().as_primitive::<Int64Type>().clone();
        out.extend((0..b.num_rows()).map(|r| (ids.value(r), prices.value(r))));
    }
    out
}

/// The ids of the k nearest rows of the model by squared L2 (ties by id), as search ranks.
fn nearest(model: &Model, q: &[f32], k: usize, keep: impl Fn(i64) -> bool) -> Vec<u64> {
    let mut scored: Vec<(f32, u64)> = model
        .iter()
        .filter(|(_, (_, p))| keep(*p))
        .map(|(id, (v, _))| (v.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum::<f32>(), *id))
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, id)| id).collect()
}

/// Runs `steps` random writes through `writer` and checks every read through `reader`.
async fn run_model(writer: &mut GrapeClient<Channel>, reader: &mut GrapeClient<Channel>, steps: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let create = v1::CreateCollectionRequest { name: "kv".into(), dim: DIM as u32, shards: 2, ..Default::default() };
    writer.create_collection(create).await.expect("create");
    let mut model = Model::new();
    let mut version = 0;
    for step in 0..steps {
        // The first write sets the schema; SQL sees a collection only once it has one.
        let what = if step == 0 { 0 } else { rng.gen_range(0..10) };
        let label = match what {
            0..=5 => {
                let n = rng.gen_range(1..=12);
                let rows: Vec<(u64, Vec<f32>, i64)> = (0..n)
                    .map(|_| (rng.gen_range(0..KEYS), (0..DIM).map(|_| rng.gen_range(-1.0..1.0)).collect(), rng.gen_range(0..100)))
                    .collect();
                let reply = writer.insert(v1::InsertRequest { collection: "kv".into(), arrow_ipc: ipc(&rows) }).await.expect("upsert");
                for (id, v, p) in rows {
                    model.insert(id, (v, p));
                }
                version = reply.into_inner().version;
                format!("upsert of {n} rows")
            }
            6..=7 => {
                let ids: Vec<u64> = (0..rng.gen_range(1..6)).map(|_| rng.gen_range(0..KEYS + 10)).collect();
                let reply = writer.delete(v1::DeleteRequest { collection: "kv".into(), ids: ids.clone(), ..Default::default() }).await;
                let reply = reply.expect("delete by ids").into_inner();
                let mut distinct = ids.clone();
                distinct.sort();
                distinct.dedup();
                let live = distinct.iter().filter(|id| model.remove(id).is_some()).count() as u64;
                assert_eq!(reply.rows, live, "step {step}: rows deleted by ids {ids:?}");
                version = reply.version.max(version);
                format!("delete of ids {ids:?}")
            }
            _ => {
                let below = rng.gen_range(0..15);
                let filter = format!("price < {below}");
                let reply = writer.delete(v1::DeleteRequest { collection: "kv".into(), filter: filter.clone(), ..Default::default() }).await;
                let reply = reply.expect("delete by filter").into_inner();
                let before = model.len();
                model.retain(|_, (_, p)| *p >= below);
                assert_eq!(reply.rows, (before - model.len()) as u64, "step {step}: rows deleted by {filter}");
                version = reply.version.max(version);
                format!("delete where {filter}")
            }
        };
        check(reader, &model, version, &mut rng, &format!("step {step} ({label})")).await;
    }
    let info = reader.describe_collection(v1::DescribeCollectionRequest { name: "kv".into() }).await.expect("describe").into_inner();
    assert_eq!(info.rows, model.len() as u64, "describe counts live rows only");
}

/// Reads at `version` through `client` agree with `model`.
pub(crate) async fn check(client: &mut GrapeClient<Channel>, model: &Model, version: u64, rng: &mut StdRng, after: &str) {
    let min_versions = HashMap::from([("kv".to_string(), version)]);
    let sql = v1::SqlRequest { query: "SELECT count(*) AS n, count(DISTINCT id) AS d FROM kv".into(), min_versions, ..Default::default() };
    let answer = client.sql(sql).await.unwrap_or_else(|e| panic!("{after}: count: {e}")).into_inner();
    let (_, batches) = decode_ipc(&answer.arrow_ipc).unwrap();
    let n = batches[0].column(0).as_primitive::<Int64Type>().value(0) as usize;
    let d = batches[0].column(1).as_primitive::<Int64Type>().value(0) as usize;
    assert_eq!((n, d), (model.len(), model.len()), "{after}: count(*) and count(DISTINCT id) are the live ids");

    let ids: Vec<u64> = (0..6).map(|_| rng.gen_range(0..KEYS)).collect();
    let get = v1::GetRequest { collection: "kv".into(), ids: ids.clone(), min_version: version, ..Default::default() };
    let mut got = ids_and_prices(&client.get(get).await.unwrap_or_else(|e| panic!("{after}: get: {e}")).into_inner().arrow_ipc);
    got.sort();
    let mut expected: Vec<(u64, i64)> = ids.iter().filter_map(|id| model.get(id).map(|(_, p)| (*id, *p))).collect();
    expected.sort();
    expected.dedup();
    assert_eq!(got, expected, "{after}: Get {ids:?}");

    let q: Vec<f32> = (0..DIM).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let filtered = rng.gen_bool(0.3);
    let search = v1::SearchRequest {
        collection: "kv".into(),
        vector: q.clone(),
        k: 10,
        filter: if filtered { "price >= 50".into() } else { String::new() },
        min_version: version,
        ..Default::default()
    };
    let hits = client.search(search).await.unwrap_or_else(|e| panic!("{after}: search: {e}")).into_inner();
    let found: Vec<(u64, i64)> = ids_and_prices(&hits.arrow_ipc);
    let expected = nearest(model, &q, 10, |p| !filtered || p >= 50);
    assert_eq!(found.iter().map(|h| h.0).collect::<Vec<_>>(), expected, "{after}: search (filtered: {filtered})");
    for (id, price) in found {
        assert_eq!(model[&id].1, price, "{after}: a search hit carries the row's latest payload");
    }
}

#[test]
fn upserts_and_deletes_match_a_model_on_grape_dev() {
    let dir = tempfile::tempdir().unwrap();
    let grape = DevProcess::start(&dir.path().join("data"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut c = client(&grape).await;
        let mut reader = c.clone();
        run_model(&mut c, &mut reader, 150, 7).await;
    });
    // Restarted, the node reads the same live rows from storage and the manifests.
    let grape = grape.restart_after_kill();
    runtime.block_on(async {
        let mut c = client(&grape).await;
        let count = c.sql(v1::SqlRequest { query: "SELECT count(*) - count(DISTINCT id) AS dup FROM kv".into(), ..Default::default() }).await;
        let (_, batches) = decode_ipc(&count.expect("count after restart").into_inner().arrow_ipc).unwrap();
        assert_eq!(batches[0].column(0).as_primitive::<Int64Type>().value(0), 0, "one row per id after a restart");
    });
}

#[test]
fn upserts_and_deletes_match_a_model_across_compute_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let (_meta, _members, nodes) = cluster(dir.path(), &["a", "b"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (mut on_a, mut on_b) = (client(&nodes[0]).await, client(&nodes[1]).await);
        run_model(&mut on_a, &mut on_b, 80, 11).await;
    });
}

#[test]
fn bad_deletes_and_gets_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let grape = DevProcess::start(&dir.path().join("data"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut c = client(&grape).await;
        let create = v1::CreateCollectionRequest { name: "kv".into(), dim: DIM as u32, ..Default::default() };
        c.create_collection(create).await.expect("create");
        let rows: Vec<(u64, Vec<f32>, i64)> = (0..10).map(|i| (i, vec![i as f32; DIM], i as i64)).collect();
        c.insert(v1::InsertRequest { collection: "kv".into(), arrow_ipc: ipc(&rows) }).await.expect("insert");
        let delete = |collection: &str, ids: Vec<u64>, string_ids: Vec<&str>, filter: &str| v1::DeleteRequest {
            collection: collection.into(),
            ids,
            string_ids: string_ids.into_iter().map(String::from).collect(),
            filter: filter.into(),
        };
        for (request, code, words) in [
            (delete("nope", vec![1], vec![], ""), Code::NotFound, "nope"),
            (delete("kv", vec![], vec![], "price <"), Code::InvalidArgument, "filter"),
            (delete("kv", vec![], vec![], "no_such_column = 1"), Code::InvalidArgument, "no_such_column"),
            (delete("kv", vec![], vec!["abc"], ""), Code::InvalidArgument, "uint64 ids"),
            (delete("kv", vec![1], vec![], "price > 1"), Code::InvalidArgument, "either ids or a filter"),
            (delete("kv", vec![], vec![], ""), Code::InvalidArgument, "either ids or a filter"),
        ] {
            let err = c.delete(request.clone()).await.expect_err("refused");
            assert_eq!(err.code(), code, "{request:?}: {err}");
            assert!(err.message().contains(words), "{request:?}: {}", err.message());
        }
        let get = v1::GetRequest { collection: "kv".into(), string_ids: vec!["x".into()], ..Default::default() };
        assert_eq!(c.get(get).await.expect_err("wrong type").code(), Code::InvalidArgument);
        let get = v1::GetRequest { collection: "nope".into(), ids: vec![1], ..Default::default() };
        assert_eq!(c.get(get).await.expect_err("unknown").code(), Code::NotFound);
        let get = v1::GetRequest { collection: "kv".into(), ids: (0..10).collect(), ..Default::default() };
        assert_eq!(ids_and_prices(&c.get(get).await.expect("get").into_inner().arrow_ipc).len(), 10, "nothing was deleted");
    });
    // The CLI: delete by ids and by filter, get as JSON.
    let deleted = grape.json(&["delete", "kv", "--ids", "1,2,99"]);
    assert_eq!(deleted["deleted"], 2);
    let deleted = grape.json(&["delete", "kv", "--filter", "price > 7"]);
    assert_eq!(deleted["deleted"], 2);
    let version = deleted["version"].as_u64().unwrap().to_string();
    let rows = grape.json(&["get", "kv", "--ids", "0,1,3,8", "--min-version", &version]);
    let ids: Vec<u64> = rows.as_array().unwrap().iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 2, "{rows}");
    assert!(ids.contains(&0) && ids.contains(&3), "{rows}");
    assert_eq!(grape.count("kv"), 6);
}
