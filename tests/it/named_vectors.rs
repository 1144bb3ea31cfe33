//! Named vector fields with real processes: a collection with two vector fields of different
//! dimension, metric and quantization on a two-node cluster. Each field gets its own index
//! builds, searches pick a field by name (exact answers match a brute force over that field,
//! ANN answers agree with them), one field's quantization changes alone, and the bad input
//! of the new request fields gets clear errors.

use std::sync::Arc;

use arrow::array::{ArrayRef, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use grape_proto::v1::{self, grape_client::GrapeClient};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tonic::transport::Channel;

use crate::ann::wait_describe;
use crate::harness::cluster;
use crate::hostile_input::client;
use crate::jobs::wait_jobs;

/// Rows: two shards of 10,000, large enough that a graph search compares fewer rows than a scan.
const ROWS: usize = 20_000;
/// The fields: `image` (8 dimensions, L2, sq8) and `text` (12 dimensions, cosine, none).
const IMAGE: usize = 8;
const TEXT: usize = 12;

/// Rows with both fields' vectors, random and seeded.
struct Data {
    image: Vec<Vec<f32>>,
    text: Vec<Vec<f32>>,
}

impl Data {
    fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut random = |dim: usize| -> Vec<Vec<f32>> { (0..ROWS).map(|_| (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect()).collect() };
        Data { image: random(IMAGE), text: random(TEXT) }
    }

    /// The 10 nearest ids to `query` in field `field` by brute force, with its metric.
    fn nearest(&self, field: &str, query: &[f32]) -> Vec<u64> {
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let mut scored: Vec<(f32, u64)> = match field {
            "image" => self.image.iter().map(|v| v.iter().zip(query).map(|(a, b)| (a - b) * (a - b)).sum::<f32>()).zip(0..).collect(),
            _ => self.text.iter().map(|v| 1.0 - v.iter().zip(query).map(|(a, b)| a * b).sum::<f32>() / (norm(v) * norm(query))).zip(0..).collect(),
        };
        scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        scored.iter().take(10).map(|(_, id)| *id).collect()
    }
}

/// Arrow IPC rows `id`, then the given vector columns, then `price`.
fn rows_ipc(ids: std::ops::Range<usize>, vectors: &[(&str, &[Vec<f32>])]) -> Vec<u8> {
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    let mut fields = vec![Field::new("id", DataType::UInt64, false)];
    let mut columns: Vec<ArrayRef> = vec![Arc::new(UInt64Array::from_iter_values(ids.clone().map(|i| i as u64)))];
    for (name, rows) in vectors {
        let dim = rows[0].len();
        let values = Float32Array::from_iter_values(ids.clone().flat_map(|i| rows[i].clone()));
        fields.push(Field::new(*name, DataType::FixedSizeList(item.clone(), dim as i32), false));
        columns.push(Arc::new(FixedSizeListArray::new(item.clone(), dim as i32, Arc::new(values), None)));
    }
    fields.push(Field::new("price", DataType::Int64, true));
    columns.push(Arc::new(Int64Array::from_iter_values(ids.map(|i| (i % 20) as i64))));
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("batch");
    let mut out = Vec::new();
    let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema()).expect("writer");
    writer.write(&batch).expect("write");
    writer.finish().expect("finish");
    drop(writer);
    out
}

/// A search of field `field` of `docs`: hit ids, the hits' columns, and the rows compared.
async fn search(c: &mut GrapeClient<Channel>, field: &str, vector: &[f32], exact: bool, include_vectors: bool) -> (Vec<u64>, Vec<String>, u64) {
    let req = v1::SearchRequest {
        collection: "docs".into(),
        vector: vector.to_vec(),
        k: 10,
        exact,
        include_vectors,
        vector_name: field.into(),
        ..Default::default()
    };
    let reply = c.search(req).await.unwrap_or_else(|s| panic!("search {field}: {s:?}")).into_inner();
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(reply.arrow_ipc), None).expect("hits");
    let columns = reader.schema().fields().iter().map(|f| f.name().clone()).collect();
    let mut ids = Vec::new();
    for batch in reader {
        let batch = batch.expect("batch");
        let id = batch.column_by_name("id").expect("id");
        ids.extend(id.as_any().downcast_ref::<UInt64Array>().expect("uint64 ids").values().iter().copied());
    }
    (ids, columns, reply.rows_scanned)
}

/// The `vectors` entry of `describe docs` for `field`.
fn field_info<'a>(info: &'a Value, field: &str) -> &'a Value {
    info["vectors"].as_array().and_then(|v| v.iter().find(|f| f["name"] == field)).unwrap_or_else(|| panic!("no field {field}: {info:#}"))
}

#[test]
fn named_vector_fields_get_their_own_indexes_and_searches() {
    let dir = tempfile::tempdir().unwrap();
    let (_meta, _members, nodes) = cluster(dir.path(), &["a", "b"]);
    for (key, value) in [("index/min_rows", "1000"), ("compaction/auto", "off")] {
        nodes[0].json(&["config", "set", key, value]);
    }

    // Creation checks each field; describe lists them.
    for (args, wanted) in [
        (vec!["--vector-field", "id:4"], "invalid vector name"),
        (vec!["--vector-field", "a:4", "--vector-field", "a:5"], "given twice"),
        (vec!["--vector-field", "a:0"], "dim of vector \"a\" must be between"),
        (vec!["--vector-field", "a:4:hamming"], "unknown metric \"hamming\" of vector \"a\""),
        (vec!["--vector-field", "a:4:l2:pq"], "unknown quantization \"pq\""),
        (vec!["--vector-field", "a"], "must be name:dim"),
    ] {
        let err = nodes[0].fails(&[&["collection", "create", "bad"][..], &args].concat());
        assert!(err.contains(wanted), "{args:?}: {err}");
    }
    let info = nodes[0].json(&[
        "collection", "create", "docs", "--shards", "2", "--vector-field", "image:8:l2:sq8", "--vector-field", "text:12:cosine",
    ]);
    assert_eq!(info["vectors"][0]["name"], "image");
    assert_eq!((&info["vectors"][1]["dim"], &info["vectors"][1]["metric"], &info["vectors"][1]["quantization"]), (&12.into(), &"cosine".into(), &"none".into()));
    assert_eq!((&info["dim"], &info["quantization"]), (&8.into(), &"sq8".into()), "the top level describes the first field");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut c = rt.block_on(client(&nodes[0]));
    let both = v1::CreateCollectionRequest {
        name: "bad".into(),
        dim: 4,
        vectors: vec![v1::VectorField { name: "a".into(), dim: 4, ..Default::default() }],
        ..Default::default()
    };
    let status = rt.block_on(c.create_collection(both)).expect_err("dim beside named vectors");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("leave the top-level ones unset"), "{status:?}");

    // Inserts need every field, each with its own dimension.
    let data = Data::new(7);
    let insert = |c: &mut GrapeClient<Channel>, ipc: Vec<u8>| rt.block_on(c.insert(v1::InsertRequest { collection: "docs".into(), arrow_ipc: ipc }));
    let status = insert(&mut c, rows_ipc(0..10, &[("image", &data.image)])).expect_err("no text");
    assert!(status.message().contains("no `text` column"), "{status:?}");
    let status = insert(&mut c, rows_ipc(0..10, &[("image", &data.image), ("text", &data.image)])).expect_err("text of image's dim");
    assert!(status.message().contains("`text` vector has 8 values, collection \"docs\" expects 12"), "{status:?}");
    insert(&mut c, rows_ipc(0..ROWS, &[("image", &data.image), ("text", &data.text)])).expect("insert");

    // Each field of each segment gets its own build, with its own quantization.
    wait_jobs(&nodes[0], 240, "four index builds", |jobs| {
        jobs.iter().filter(|j| j["kind"] == "build_index" && j["state"] == "succeeded").count() == 4
    });
    let info = wait_describe(&nodes[0], "both fields indexed", |i| {
        i["vectors"].as_array().is_some_and(|v| v.iter().all(|f| f["indexed_segments"] == 2))
    });
    let bytes = |field: &str| field_info(&info, field)["index_bytes_per_vector"].as_f64().unwrap_or_default();
    assert!(bytes("image") > bytes("text"), "image's indexes hold sq8 codes beside the graph, text's read the f32 vectors: {info:#}");

    // Each field answers with its own column and metric: exact = brute force, ANN agrees.
    let mut rng = StdRng::seed_from_u64(11);
    for (field, dim) in [("image", IMAGE), ("text", TEXT)] {
        let mut found = 0;
        let mut scanned_max = 0;
        for _ in 0..10 {
            let q: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let (exact, columns, scanned) = rt.block_on(search(&mut c, field, &q, true, false));
            assert_eq!(scanned, ROWS as u64);
            assert_eq!(exact, data.nearest(field, &q), "{field}: exact search = brute force over {field}");
            assert_eq!(columns, ["id", "score", "price"], "vectors are left out of hits");
            let (ann, _, scanned) = rt.block_on(search(&mut c, field, &q, false, false));
            found += ann.iter().filter(|id| exact.contains(id)).count();
            scanned_max = scanned_max.max(scanned);
        }
        assert!(scanned_max < ROWS as u64, "{field}: the indexes are used ({scanned_max} rows compared)");
        assert!(found >= 90, "{field}: recall@10 {found}%");
    }
    let (_, columns, _) = rt.block_on(search(&mut c, "text", &[0.5; TEXT], false, true));
    assert_eq!(columns, ["id", "score", "image", "text", "price"]);
    let (first, _, _) = rt.block_on(search(&mut c, "", &[0.5; IMAGE], true, false));
    assert_eq!(first, data.nearest("image", &[0.5; IMAGE]), "no vector name searches the first field");
    let sql = nodes[1].json(&["sql", "SELECT count(*) AS n FROM docs WHERE price = 3"]);
    assert_eq!(sql[0]["n"], ROWS as u64 / 20);

    // Bad names and dimensions are refused with the fields listed.
    for (field, dim, wanted) in [("nope", IMAGE, "no vector field \"nope\" (its fields: image, text)"), ("text", IMAGE, "expects 12")] {
        let req = v1::SearchRequest { collection: "docs".into(), vector: vec![0.5; dim], vector_name: field.into(), ..Default::default() };
        let status = rt.block_on(c.search(req)).expect_err("bad field");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(wanted), "{status:?}");
    }
    let err = nodes[0].fails(&["search", "docs", "--vector", "[0,0,0,0,0,0,0,0]", "--using", "nope"]);
    assert!(err.contains("no vector field \"nope\""), "{err}");

    // One field's quantization changes alone, and only its indexes are rebuilt.
    let info = nodes[0].json(&["collection", "set-quantization", "docs", "bq", "--vector", "text"]);
    assert_eq!((&field_info(&info, "text")["quantization"], &field_info(&info, "image")["quantization"]), (&"bq".into(), &"sq8".into()));
    let err = nodes[0].fails(&["collection", "set-quantization", "docs", "bq", "--vector", "nope"]);
    assert!(err.contains("vector field \"nope\""), "{err}");
    let jobs = wait_jobs(&nodes[0], 240, "text's rebuilds", |jobs| {
        jobs.iter().filter(|j| j["kind"] == "build_index" && j["state"] == "succeeded").count() == 6
    });
    let rebuilt: Vec<&Value> = jobs.iter().filter(|j| j["kind"] == "build_index").collect();
    let text_builds = rebuilt.iter().filter(|j| j["params"]["vector"] == "text").count();
    assert_eq!(text_builds, 4, "image was not rebuilt: {rebuilt:#?}");
    wait_describe(&nodes[0], "text's bq indexes attached", |i| field_info(i, "text")["indexed_segments"] == 2);
    let (ann, _, scanned) = rt.block_on(search(&mut c, "text", &[0.5; TEXT], false, false));
    assert_eq!(ann.len(), 10);
    assert!(scanned < ROWS as u64, "text's bq indexes answer ({scanned} rows compared)");
}
