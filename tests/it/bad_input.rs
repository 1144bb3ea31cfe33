//! Bad input gets a clear error and changes nothing.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use grape_compute::datagen;
use grape_proto::v1;

use crate::harness::{vector_arg, write_parquet, DevProcess};

const DIM: u32 = 16;

/// A batch like `datagen`'s with one column replaced.
fn with_column(batch: &RecordBatch, name: &str, field: Field, column: ArrayRef) -> RecordBatch {
    let i = batch.schema().index_of(name).unwrap();
    let mut fields: Vec<Field> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut columns = batch.columns().to_vec();
    fields[i] = field;
    columns[i] = column;
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

/// A vector column of `rows` vectors of `dim` values with `value` at row 1, position 0.
fn vectors(rows: usize, dim: i32, value: f32) -> ArrayRef {
    let mut values: Vec<f32> = (0..rows * dim as usize).map(|i| i as f32 * 0.01).collect();
    values[dim as usize] = value;
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    Arc::new(arrow::array::FixedSizeListArray::new(item, dim, Arc::new(arrow::array::Float32Array::from(values)), None))
}

fn assert_mentions(err: &str, parts: &[&str]) {
    for p in parts {
        assert!(err.contains(p), "error should mention {p:?}: {err}");
    }
}

#[test]
fn bad_input_is_refused_clearly_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let grape = DevProcess::start(&dir.path().join("data"));
    let good = datagen::batch(DIM, 0, 100, 1);
    let good_file = dir.path().join("good.parquet");
    write_parquet(&good_file, &[good.clone()]);
    grape.json(&["collection", "create", "docs", "--dim", "16"]);
    grape.json(&["ingest", "docs", good_file.to_str().unwrap()]);
    // A collection without rows yet is a table without rows (its columns come with its first
    // insert), not an unknown table.
    grape.json(&["collection", "create", "fresh", "--dim", "4"]);
    assert_eq!(grape.count("fresh"), 0);
    assert_mentions(&grape.fails(&["sql", "SELECT price FROM fresh"]), &["INVALID_ARGUMENT", "price"]);
    let before = grape.json(&["collection", "describe", "docs"]);

    // Duplicate collection, invalid parameters.
    assert_mentions(&grape.fails(&["collection", "create", "docs", "--dim", "16"]), &["ALREADY_EXISTS", "docs"]);
    assert_mentions(&grape.fails(&["collection", "create", "x", "--dim", "0"]), &["INVALID_ARGUMENT", "dim"]);
    assert_mentions(&grape.fails(&["collection", "create", "y", "--dim", "4", "--metric", "hamming"]), &["INVALID_ARGUMENT", "hamming"]);
    assert_mentions(&grape.fails(&["collection", "create", "9bad", "--dim", "4"]), &["INVALID_ARGUMENT", "9bad"]);

    // Unknown collection, everywhere.
    let q = vector_arg(&[0.0; DIM as usize]);
    assert_mentions(&grape.fails(&["search", "nope", "--vector", &q]), &["NOT_FOUND", "\"nope\""]);
    assert_mentions(&grape.fails(&["collection", "describe", "nope"]), &["NOT_FOUND", "nope"]);
    assert_mentions(&grape.fails(&["collection", "drop", "nope"]), &["NOT_FOUND", "nope"]);
    assert_mentions(&grape.fails(&["ingest", "nope", good_file.to_str().unwrap()]), &["NOT_FOUND", "nope"]);

    // Wrong vector length in a search.
    let short = vector_arg(&[0.0; 15]);
    assert_mentions(
        &grape.fails(&["search", "docs", "--vector", &short]),
        &["INVALID_ARGUMENT", "vector has 15 values, collection \"docs\" expects 16"],
    );

    // Malformed filter, unknown column in a filter, SQL errors, DML refused.
    assert_mentions(
        &grape.fails(&["search", "docs", "--vector", &q, "--filter", "category = AND"]),
        &["INVALID_ARGUMENT", "invalid filter"],
    );
    assert_mentions(&grape.fails(&["search", "docs", "--vector", &q, "--filter", "colour = 'red'"]), &["INVALID_ARGUMENT", "colour"]);
    assert_mentions(&grape.fails(&["sql", "SELEC * FROM docs"]), &["INVALID_ARGUMENT"]);
    assert_mentions(&grape.fails(&["sql", "SELECT * FROM missing_table"]), &["INVALID_ARGUMENT", "missing_table"]);
    assert_mentions(&grape.fails(&["sql", "DROP TABLE docs"]), &["INVALID_ARGUMENT"]);

    // Files: wrong dimension, NaN, schema mismatch, missing file, not Parquet.
    let file = dir.path().join("bad.parquet");
    let wrong_dim = with_column(
        &good,
        "vector",
        Field::new("vector", DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), 15), false),
        vectors(100, 15, 0.0),
    );
    write_parquet(&file, &[wrong_dim]);
    assert_mentions(
        &grape.fails(&["ingest", "docs", file.to_str().unwrap()]),
        &["INVALID_ARGUMENT", "vector has 15 values, collection \"docs\" expects 16"],
    );
    let nan = with_column(&good, "vector", good.schema().field(1).clone(), vectors(100, 16, f32::NAN));
    write_parquet(&file, &[nan]);
    assert_mentions(&grape.fails(&["ingest", "docs", file.to_str().unwrap()]), &["INVALID_ARGUMENT", "row 1", "NaN"]);
    let price_text: ArrayRef = Arc::new(StringArray::from_iter_values((0..100).map(|i| format!("{i} EUR"))));
    let mismatch = with_column(&good, "price", Field::new("price", DataType::Utf8, true), price_text);
    write_parquet(&file, &[mismatch]);
    assert_mentions(&grape.fails(&["ingest", "docs", file.to_str().unwrap()]), &["INVALID_ARGUMENT", "price", "Utf8", "Float64"]);
    let missing = dir.path().join("missing.parquet");
    assert_mentions(&grape.fails(&["ingest", "docs", missing.to_str().unwrap()]), &["missing.parquet", "No such file"]);
    std::fs::write(&file, b"this is not parquet").unwrap();
    assert_mentions(&grape.fails(&["ingest", "docs", file.to_str().unwrap()]), &["bad.parquet", "Parquet"]);

    // NaN in a query vector (JSON cannot carry NaN, so through the gRPC API directly).
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status = runtime.block_on(async {
        let mut client = v1::grape_client::GrapeClient::connect(grape.endpoint.clone()).await.unwrap();
        let mut vector = vec![0.0f32; DIM as usize];
        vector[3] = f32::NAN;
        let req = v1::SearchRequest { collection: "docs".into(), vector, k: 5, ..Default::default() };
        client.search(req).await.unwrap_err()
    });
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_mentions(status.message(), &["NaN"]);

    // Nothing changed.
    let after = grape.json(&["collection", "describe", "docs"]);
    assert_eq!(before, after);
    assert_eq!(grape.count("docs"), 100);
}
