//! Synthetic rows for the demo, the tests and the benchmarks: clustered vectors and a payload
//! with every common column type, reproducible from a seed.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, Float64Array, Int64Array, RecordBatch, StringArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use grape_meta::catalog::{Collection, CollectionSpec, Metric, ShardManifest};
use grape_storage::format::SegmentMeta;

use crate::ingest::vector_type;

/// Tags the `tag` column draws from.
pub const TAGS: [&str; 5] = ["news", "sports", "tech", "art", "food"];

/// Schema of generated rows: `id` u64, `vector`, `category` i64 (0..10), `price` f64
/// (0..100), `tag` utf8 (one of [`TAGS`]), `in_stock` bool.
pub fn schema(dim: u32) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::UInt64, false),
        Field::new("vector", vector_type(dim), false),
        Field::new("category", DataType::Int64, true),
        Field::new("price", DataType::Float64, true),
        Field::new("tag", DataType::Utf8, true),
        Field::new("in_stock", DataType::Boolean, true),
    ]))
}

/// Generates rows with ids `first_id..first_id+rows`; vectors lie around 32 random centres.
pub fn batch(dim: u32, first_id: u64, rows: usize, seed: u64) -> RecordBatch {
    let mut rng = StdRng::seed_from_u64(seed);
    let d = dim as usize;
    let mut centres_rng = StdRng::seed_from_u64(0x6a09_e667);
    let centres: Vec<Vec<f32>> = (0..32).map(|_| (0..d).map(|_| centres_rng.gen_range(-1.0..1.0)).collect()).collect();
    let mut values = Vec::with_capacity(rows * d);
    for _ in 0..rows {
        let c = &centres[rng.gen_range(0..centres.len())];
        values.extend(c.iter().map(|x| x + rng.gen_range(-0.3f32..0.3)));
    }
    let vectors = FixedSizeListArray::new(
        Arc::new(Field::new("item", DataType::Float32, true)),
        dim as i32,
        Arc::new(Float32Array::from(values)),
        None,
    );
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(first_id..first_id + rows as u64)),
        Arc::new(vectors),
        Arc::new(Int64Array::from_iter_values((0..rows).map(|_| rng.gen_range(0..10)))),
        Arc::new(Float64Array::from_iter_values((0..rows).map(|_| (rng.gen_range(0.0..100.0f64) * 100.0).round() / 100.0))),
        Arc::new(StringArray::from_iter_values((0..rows).map(|_| TAGS[rng.gen_range(0..TAGS.len())]))),
        Arc::new(BooleanArray::from_iter((0..rows).map(|_| Some(rng.gen_bool(0.7))))),
    ];
    RecordBatch::try_new(schema(dim), columns).expect("generated columns match the generated schema")
}

/// `rows` vectors of `dim` values drawn from a mixture of `clusters` Gaussians (centres
/// uniform in [-1, 1], standard deviation 0.25 per dimension), row-major: the clustered data
/// ANN recall is measured on.
pub fn gaussian_mixture(rows: usize, dim: usize, clusters: usize, seed: u64) -> Vec<f32> {
    let mut centres_rng = StdRng::seed_from_u64(0x3c6e_f372 ^ clusters as u64);
    let centres: Vec<f32> = (0..clusters.max(1) * dim).map(|_| centres_rng.gen_range(-1.0..1.0)).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(rows * dim);
    for _ in 0..rows {
        let c = rng.gen_range(0..clusters.max(1));
        for i in 0..dim {
            // Box–Muller: a standard normal from two uniforms.
            let (u, v): (f32, f32) = (rng.gen_range(f32::MIN_POSITIVE..1.0), rng.gen_range(0.0..1.0));
            let normal = (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos();
            out.push(centres[c * dim + i] + 0.25 * normal);
        }
    }
    out
}

/// A random query vector near the data.
pub fn query(dim: u32, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5bd1_e995);
    (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

/// A one-shard catalog entry for a collection of generated rows made of `segments`.
pub fn collection(name: &str, dim: u32, metric: Metric, segments: Vec<SegmentMeta>) -> Collection {
    let spec = CollectionSpec { name: name.into(), dim, metric, shards: 1, replicas: 1, schema: Some(schema(dim).as_ref().clone()), quantization: Default::default(), vectors: vec![], vectors_on_disk: false };
    let manifest = ShardManifest { version: 1, segments, ..Default::default() };
    Collection { spec, id: 1, shards: vec![manifest], version: 1 }
}
