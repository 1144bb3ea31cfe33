//! The write path's checks and shaping: decoding Arrow IPC, conforming rows to a collection's
//! schema (vector length, NaN, column types), and splitting rows into shards by primary key.

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array, RecordBatch, UInt32Array};
use arrow::compute::{cast_with_options, take_record_batch, CastOptions};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use grape_meta::catalog::{CollectionSpec, VectorField};

use crate::error::ComputeError;
use crate::segment::ID_COLUMN;

fn invalid(msg: String) -> ComputeError {
    ComputeError::InvalidArgument(msg)
}

/// Decodes an Arrow IPC stream into its batches.
///
/// The bytes come from clients: a malformed stream is `InvalidArgument`, and so is one that
/// makes the decoder panic (arrow's readers do not promise to reject every damaged input
/// without one), so hostile bytes never take a request's task down.
pub fn decode_ipc(bytes: &[u8]) -> Result<(SchemaRef, Vec<RecordBatch>), ComputeError> {
    check_ipc_framing(bytes)?;
    let decode = || {
        let reader =
            StreamReader::try_new(Cursor::new(bytes), None).map_err(|e| invalid(format!("rows must be an Arrow IPC stream: {e}")))?;
        let schema = reader.schema();
        let batches =
            reader.collect::<Result<Vec<_>, _>>().map_err(|e| invalid(format!("rows must be an Arrow IPC stream: {e}")))?;
        // A damaged stream can decode into arrays whose offsets or lengths lie.
        for batch in &batches {
            for column in batch.columns() {
                column.to_data().validate_full().map_err(|e| invalid(format!("rows are not a valid Arrow IPC stream: {e}")))?;
            }
        }
        Ok((schema, batches))
    };
    grape_storage::decoder_panics::catch_decoder_panic(decode)
        .unwrap_or_else(|why| Err(invalid(format!("rows are not a valid Arrow IPC stream (the decoder failed on them: {why})"))))
}

/// Walks an IPC stream's message frames and refuses any whose metadata or body claims more
/// bytes than the request holds. Arrow's reader allocates a message's body from the length
/// its header states before reading it, so a damaged header could otherwise ask for
/// terabytes, and an allocation failure aborts the process rather than panicking.
fn check_ipc_framing(bytes: &[u8]) -> Result<(), ComputeError> {
    let damaged = |what: &str| invalid(format!("rows are not a valid Arrow IPC stream: {what}"));
    let mut at = 0usize;
    while at < bytes.len() {
        let word = |at: usize| -> Result<i32, ComputeError> {
            let four = bytes.get(at..at + 4).ok_or_else(|| damaged("a message header is cut short"))?;
            Ok(i32::from_le_bytes([four[0], four[1], four[2], four[3]]))
        };
        // Since format 0.15 a frame is a 0xFFFFFFFF continuation marker, then the length.
        let mut meta_len = word(at)?;
        at += 4;
        if meta_len == -1 {
            meta_len = word(at)?;
            at += 4;
        }
        if meta_len == 0 {
            return Ok(());
        }
        let meta_len = usize::try_from(meta_len).map_err(|_| damaged("a message states a negative length"))?;
        let meta = bytes.get(at..at.saturating_add(meta_len)).ok_or_else(|| damaged("a message's header runs past the end"))?;
        let message = arrow::ipc::root_as_message(meta).map_err(|e| damaged(&format!("a message header does not parse: {e}")))?;
        at += meta_len;
        let body = usize::try_from(message.bodyLength()).map_err(|_| damaged("a message states a negative body length"))?;
        if body > bytes.len() - at {
            return Err(damaged("a message's body runs past the end"));
        }
        at += body;
    }
    Ok(())
}

/// Encodes batches as one Arrow IPC stream.
pub fn encode_ipc(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, ComputeError> {
    let mut out = Vec::new();
    let mut writer = StreamWriter::try_new(&mut out, schema)?;
    for b in batches {
        writer.write(b)?;
    }
    writer.finish()?;
    drop(writer);
    Ok(out)
}

/// The Arrow type of the `vector` column of a collection of dimension `dim`.
pub fn vector_type(dim: u32) -> DataType {
    DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), dim as i32)
}

/// Derives a collection's schema from the first rows inserted into it: `id` becomes uint64
/// (from any integer type) or utf8, each vector column (`vector`, or each named field's)
/// becomes `fixed_size_list<float32, dim>`, and the payload columns keep their types.
pub fn schema_from_rows(spec: &CollectionSpec, rows: &Schema) -> Result<Schema, ComputeError> {
    let id = rows.field_with_name(ID_COLUMN).map_err(|_| invalid(format!("rows for collection \"{}\" have no `id` column", spec.name)))?;
    let id_type = match id.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
        t if t.is_integer() => DataType::UInt64,
        t => return Err(invalid(format!("`id` must be an integer or a string, the rows have {t}"))),
    };
    let vectors = spec.vector_fields();
    let mut fields = vec![Field::new(ID_COLUMN, id_type, false)];
    for v in &vectors {
        if rows.field_with_name(&v.name).is_err() {
            return Err(invalid(format!("rows for collection \"{}\" have no `{}` column", spec.name, v.name)));
        }
        fields.push(Field::new(&v.name, vector_type(v.dim), false));
    }
    for f in rows.fields() {
        if f.name() != ID_COLUMN && !vectors.iter().any(|v| &v.name == f.name()) {
            fields.push(Field::new(f.name(), f.data_type().clone(), true));
        }
    }
    Ok(Schema::new(fields))
}

/// Conforms one batch to the collection's schema, or explains why it cannot.
///
/// Checks: every column is known, required columns are present, `id` has no nulls, every
/// vector has exactly `dim` finite values; casts integer and float widths and string kinds
/// where the value fits, and refuses any other type change.
pub fn conform(spec: &CollectionSpec, target: &SchemaRef, batch: &RecordBatch) -> Result<RecordBatch, ComputeError> {
    let name = &spec.name;
    if let Some(extra) = batch.schema().fields().iter().find(|f| target.field_with_name(f.name()).is_err()) {
        let known: Vec<_> = target.fields().iter().map(|f| f.name().as_str()).collect();
        return Err(invalid(format!(
            "column `{}` is not in the schema of collection \"{name}\" (columns: {})",
            extra.name(),
            known.join(", ")
        )));
    }
    let vectors = spec.vector_fields();
    let mut columns = Vec::with_capacity(target.fields().len());
    for field in target.fields() {
        let column = match batch.column_by_name(field.name()) {
            Some(c) => c.clone(),
            None if field.is_nullable() => new_null_array(field.data_type(), batch.num_rows()),
            None => return Err(invalid(format!("rows for collection \"{name}\" have no `{}` column", field.name()))),
        };
        let column = match vectors.iter().find(|v| &v.name == field.name()) {
            Some(vector) => conform_vectors(spec, vector, &column)?,
            None => conform_column(name, field, column)?,
        };
        if !field.is_nullable() && column.null_count() > 0 {
            return Err(invalid(format!("column `{}` of collection \"{name}\" may not hold nulls", field.name())));
        }
        columns.push(column);
    }
    Ok(RecordBatch::try_new(target.clone(), columns)?)
}

fn conform_column(collection: &str, field: &Field, column: ArrayRef) -> Result<ArrayRef, ComputeError> {
    let (from, to) = (column.data_type(), field.data_type());
    if from == to {
        return Ok(column);
    }
    let stringy = |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let compatible = (from.is_integer() && to.is_integer())
        || (from.is_numeric() && to.is_floating())
        || (stringy(from) && stringy(to))
        || from == &DataType::Null;
    if !compatible {
        return Err(invalid(format!("column `{}` is {from} in the rows, collection \"{collection}\" has {to}", field.name())));
    }
    let strict = CastOptions { safe: false, ..Default::default() };
    cast_with_options(&column, to, &strict)
        .map_err(|e| invalid(format!("column `{}` cannot be stored as {to} in collection \"{collection}\": {e}", field.name())))
}

/// Turns list-of-float vectors of any list kind into `fixed_size_list<float32, dim>`, checking
/// each row's length and that every value is finite.
fn conform_vectors(spec: &CollectionSpec, field: &VectorField, column: &ArrayRef) -> Result<ArrayRef, ComputeError> {
    let (name, dim, column_name) = (&spec.name, field.dim as usize, &field.name);
    // Messages about a collection's one `vector` read as they always did.
    let vector = if spec.is_named() { format!("`{column_name}` vector") } else { "vector".to_string() };
    if column.null_count() > 0 {
        return Err(invalid(format!("collection \"{name}\": `{column_name}` may not hold nulls")));
    }
    let lengths: Vec<usize> = match column.data_type() {
        DataType::FixedSizeList(_, n) => vec![*n as usize; column.len()],
        DataType::List(_) => column.as_list::<i32>().offsets().lengths().collect(),
        DataType::LargeList(_) => column.as_list::<i64>().offsets().lengths().collect(),
        t => return Err(invalid(format!("`{column_name}` must be a list of floats, the rows have {t}"))),
    };
    if let Some((row, len)) = lengths.iter().enumerate().find(|(_, l)| **l != dim) {
        return Err(invalid(format!("row {row}: {vector} has {len} values, collection \"{name}\" expects {dim}")));
    }
    let values = match column.data_type() {
        DataType::FixedSizeList(..) => column.as_fixed_size_list().values().slice(column.offset() * dim, column.len() * dim),
        DataType::List(_) => {
            let l = column.as_list::<i32>();
            let start = l.value_offsets()[0] as usize;
            l.values().slice(start, column.len() * dim)
        }
        _ => {
            let l = column.as_list::<i64>();
            let start = l.value_offsets()[0] as usize;
            l.values().slice(start, column.len() * dim)
        }
    };
    if !values.data_type().is_floating() {
        return Err(invalid(format!("`{column_name}` values must be floats, the rows have {}", values.data_type())));
    }
    if values.null_count() > 0 {
        return Err(invalid(format!("collection \"{name}\": vectors may not contain nulls")));
    }
    let values = cast_with_options(&values, &DataType::Float32, &CastOptions::default())?;
    let floats: &Float32Array = values.as_primitive();
    if let Some(i) = floats.values().iter().position(|v| !v.is_finite()) {
        return Err(invalid(format!(
            "row {}: {vector} value {} is {}; vectors must be finite numbers",
            i / dim.max(1),
            i % dim.max(1),
            floats.value(i)
        )));
    }
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    Ok(Arc::new(FixedSizeListArray::try_new(item, dim as i32, Arc::new(floats.clone()), None)?))
}

/// Stable 64-bit FNV-1a hash of a primary key's bytes; decides a row's shard.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The shard of each row of `batch`, by a stable hash of its `id`.
pub fn shard_rows(batch: &RecordBatch, shards: u32) -> Result<Vec<u32>, ComputeError> {
    let id = batch.column_by_name(ID_COLUMN).ok_or_else(|| ComputeError::Internal("conformed batch without id".into()))?;
    let shards = shards.max(1) as u64;
    let hashes: Vec<u64> = match id.data_type() {
        DataType::UInt64 => id.as_primitive::<arrow::datatypes::UInt64Type>().values().iter().map(|v| fnv1a(&v.to_le_bytes())).collect(),
        DataType::Utf8 => id.as_string::<i32>().iter().map(|v| fnv1a(v.unwrap_or_default().as_bytes())).collect(),
        t => return Err(ComputeError::Internal(format!("unexpected id type {t}"))),
    };
    Ok(hashes.into_iter().map(|h| (h % shards) as u32).collect())
}

/// Keeps one row per `id`: the last one (within one write, the last row of an id wins).
/// Rows keep their order.
pub fn keep_last_per_id(batch: &RecordBatch) -> Result<RecordBatch, ComputeError> {
    let id = batch.column_by_name(ID_COLUMN).ok_or_else(|| ComputeError::Internal("conformed batch without id".into()))?;
    let mut keep: Vec<u32> = match id.data_type() {
        DataType::UInt64 => last_rows(id.as_primitive::<arrow::datatypes::UInt64Type>().values().iter()),
        DataType::Utf8 => last_rows(id.as_string::<i32>().iter()),
        t => return Err(ComputeError::Internal(format!("unexpected id type {t}"))),
    };
    if keep.len() == batch.num_rows() {
        return Ok(batch.clone());
    }
    keep.reverse();
    Ok(take_record_batch(batch, &UInt32Array::from(keep))?)
}

/// Rows (last first) holding the last occurrence of each key of `keys`.
fn last_rows<K: std::hash::Hash + Eq>(keys: impl DoubleEndedIterator<Item = K> + ExactSizeIterator) -> Vec<u32> {
    let n = keys.len();
    let mut seen = std::collections::HashSet::with_capacity(n);
    let mut rows = Vec::with_capacity(n);
    for (i, key) in keys.rev().enumerate() {
        if seen.insert(key) {
            rows.push((n - 1 - i) as u32);
        }
    }
    rows
}

/// Splits a conformed batch into one batch per shard (shards with no rows are left out).
pub fn split_by_shard(batch: &RecordBatch, shards: u32) -> Result<Vec<(u32, RecordBatch)>, ComputeError> {
    let assignment = shard_rows(batch, shards)?;
    let mut out = Vec::new();
    for shard in 0..shards.max(1) {
        let rows: Vec<u32> = assignment.iter().enumerate().filter(|(_, s)| **s == shard).map(|(i, _)| i as u32).collect();
        if !rows.is_empty() {
            out.push((shard, take_record_batch(batch, &UInt32Array::from(rows))?));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, ListArray};
    use arrow::datatypes::Float32Type;
    use grape_meta::catalog::Metric;

    fn spec(dim: u32) -> CollectionSpec {
        CollectionSpec { name: "docs".into(), dim, metric: Metric::L2, shards: 2, replicas: 1, schema: None, quantization: Default::default(), vectors: vec![], vectors_on_disk: false }
    }

    fn rows(vectors: Vec<Option<Vec<Option<f32>>>>) -> RecordBatch {
        let n = vectors.len() as i64;
        let list = ListArray::from_iter_primitive::<Float32Type, _, _>(vectors);
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("vector", list.data_type().clone(), true),
            Field::new("price", DataType::Int32, false),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from_iter_values(0..n)),
                Arc::new(list),
                Arc::new(arrow::array::Int32Array::from(vec![5; n as usize])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn list_vectors_become_fixed_size_and_ids_u64() {
        let b = rows(vec![Some(vec![Some(1.0), Some(2.0)]), Some(vec![Some(3.0), Some(4.0)])]);
        let schema = Arc::new(schema_from_rows(&spec(2), &b.schema()).unwrap());
        let c = conform(&spec(2), &schema, &b).unwrap();
        assert_eq!(c.column(0).data_type(), &DataType::UInt64);
        assert_eq!(c.column(1).data_type(), &vector_type(2));
        let parts = split_by_shard(&c, 2).unwrap();
        assert_eq!(parts.iter().map(|(_, b)| b.num_rows()).sum::<usize>(), 2);
    }

    #[test]
    fn wrong_length_and_nan_are_refused_with_the_row() {
        let b = rows(vec![Some(vec![Some(1.0), Some(2.0)]), Some(vec![Some(3.0)])]);
        let schema = Arc::new(schema_from_rows(&spec(2), &b.schema()).unwrap());
        let e = conform(&spec(2), &schema, &b).unwrap_err().to_string();
        assert!(e.contains("row 1: vector has 1 values, collection \"docs\" expects 2"), "{e}");
        let b = rows(vec![Some(vec![Some(1.0), Some(f32::NAN)])]);
        let e = conform(&spec(2), &schema, &b).unwrap_err().to_string();
        assert!(e.contains("NaN"), "{e}");
    }

    #[test]
    fn the_last_row_of_an_id_wins() {
        let b = rows(vec![Some(vec![Some(1.0)]); 4]);
        let schema = Arc::new(schema_from_rows(&spec(1), &b.schema()).unwrap());
        let c = conform(&spec(1), &schema, &b).unwrap();
        let ids = arrow::array::UInt64Array::from(vec![7, 8, 7, 9]);
        let price = arrow::array::Int32Array::from(vec![1, 2, 3, 4]);
        let c = RecordBatch::try_new(c.schema(), vec![Arc::new(ids), c.column(1).clone(), Arc::new(price)]).unwrap();
        let kept = keep_last_per_id(&c).unwrap();
        let ids: Vec<u64> = kept.column(0).as_primitive::<arrow::datatypes::UInt64Type>().values().to_vec();
        let prices: Vec<i32> = kept.column(2).as_primitive::<arrow::datatypes::Int32Type>().values().to_vec();
        assert_eq!((ids, prices), (vec![8, 7, 9], vec![2, 3, 4]));
    }

    #[test]
    fn type_changes_and_unknown_columns_are_refused() {
        let b = rows(vec![Some(vec![Some(1.0), Some(2.0)])]);
        let mut fields: Vec<Field> = schema_from_rows(&spec(2), &b.schema()).unwrap().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields[2] = Field::new("price", DataType::Utf8, true);
        let e = conform(&spec(2), &Arc::new(Schema::new(fields.clone())), &b).unwrap_err().to_string();
        assert!(e.contains("column `price` is Int32"), "{e}");
        fields[2] = Field::new("cost", DataType::Int32, true);
        let e = conform(&spec(2), &Arc::new(Schema::new(fields)), &b).unwrap_err().to_string();
        assert!(e.contains("column `price` is not in the schema"), "{e}");
    }
}
