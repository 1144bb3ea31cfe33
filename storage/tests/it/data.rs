//! Test data: the shape of a Grape collection (id, a 128-d vector, payload columns).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, Float64Array, Int64Array, RecordBatch, StringArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

pub const DIM: i32 = 128;

pub fn schema() -> SchemaRef {
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::UInt64, false),
        Field::new("vector", DataType::FixedSizeList(item, DIM), false),
        Field::new("category", DataType::Int64, true),
        Field::new("price", DataType::Float64, true),
        Field::new("tag", DataType::Utf8, true),
        Field::new("flag", DataType::Boolean, true),
    ]))
}

/// Rows `start..start + n`: category `id % 7 - 3` (null every 10th), price `id * 0.5`,
/// tag `t{id % 5}` (null every 11th), flag `id % 2 == 0`.
pub fn batch(start: u64, n: u64) -> RecordBatch {
    let ids: Vec<u64> = (start..start + n).collect();
    let values: Vec<f32> = ids.iter().flat_map(|&id| (0..DIM).map(move |d| (id as f32) * 0.01 + d as f32)).collect();
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    let vectors = FixedSizeListArray::try_new(item, DIM, Arc::new(Float32Array::from(values)), None).expect("vectors");
    let category: Int64Array = ids.iter().map(|&id| (id % 10 != 0).then_some((id % 7) as i64 - 3)).collect();
    let price: Float64Array = ids.iter().map(|&id| Some(id as f64 * 0.5)).collect();
    let tag: StringArray = ids.iter().map(|&id| (id % 11 != 0).then(|| format!("t{}", id % 5))).collect();
    let flag: BooleanArray = ids.iter().map(|&id| Some(id % 2 == 0)).collect();
    let columns: Vec<ArrayRef> =
        vec![Arc::new(UInt64Array::from(ids)), Arc::new(vectors), Arc::new(category), Arc::new(price), Arc::new(tag), Arc::new(flag)];
    RecordBatch::try_new(schema(), columns).expect("batch")
}
