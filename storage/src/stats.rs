//! Per-column statistics of a segment: min, max and null count.
//!
//! Min and max are computed for integers, unsigned integers, floats (NaN ignored), dates and
//! timestamps (as [`StatValue::Int`] in their unit), strings and booleans. Other types (vectors,
//! lists, structs, decimals, ...) get `None`.

use std::cmp::Ordering;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute;
use arrow::datatypes::{
    ArrowNumericType, ArrowPrimitiveType, DataType, Date32Type, Date64Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    Int8Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt16Type,
    UInt32Type, UInt64Type, UInt8Type,
};

use crate::format::{ColumnStats, StatValue};

/// Statistics of every column of `batches`, in schema order (the first batch's schema).
///
/// All batches must have the same schema; an empty slice gives an empty vector.
pub fn column_stats(batches: &[RecordBatch]) -> Vec<ColumnStats> {
    let Some(first) = batches.first() else {
        return Vec::new();
    };
    let schema = first.schema();
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let mut stats = ColumnStats { name: field.name().clone(), min: None, max: None, null_count: 0 };
            for batch in batches {
                let Some(array) = batch.columns().get(i) else {
                    continue;
                };
                stats.null_count += array.logical_null_count() as u64;
                if let Some((lo, hi)) = min_max(array.as_ref()) {
                    stats.min = Some(pick(stats.min.take(), lo, Ordering::Less));
                    stats.max = Some(pick(stats.max.take(), hi, Ordering::Greater));
                }
            }
            stats
        })
        .collect()
}

/// Keeps `current` unless `candidate` compares as `wanted` against it.
fn pick(current: Option<StatValue>, candidate: StatValue, wanted: Ordering) -> StatValue {
    match current {
        Some(cur) if compare(&candidate, &cur) != Some(wanted) => cur,
        _ => candidate,
    }
}

/// Orders two values of the same variant; `None` for different variants.
fn compare(a: &StatValue, b: &StatValue) -> Option<Ordering> {
    match (a, b) {
        (StatValue::Int(a), StatValue::Int(b)) => Some(a.cmp(b)),
        (StatValue::UInt(a), StatValue::UInt(b)) => Some(a.cmp(b)),
        (StatValue::Float(a), StatValue::Float(b)) => a.partial_cmp(b),
        (StatValue::Utf8(a), StatValue::Utf8(b)) => Some(a.cmp(b)),
        (StatValue::Bool(a), StatValue::Bool(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

/// Min and max of the non-null values of one array, if its type is ordered and it has any.
fn min_max(array: &dyn Array) -> Option<(StatValue, StatValue)> {
    match array.data_type() {
        DataType::Int8 => ints::<Int8Type>(array),
        DataType::Int16 => ints::<Int16Type>(array),
        DataType::Int32 => ints::<Int32Type>(array),
        DataType::Int64 => ints::<Int64Type>(array),
        DataType::Date32 => ints::<Date32Type>(array),
        DataType::Date64 => ints::<Date64Type>(array),
        DataType::Timestamp(TimeUnit::Second, _) => ints::<TimestampSecondType>(array),
        DataType::Timestamp(TimeUnit::Millisecond, _) => ints::<TimestampMillisecondType>(array),
        DataType::Timestamp(TimeUnit::Microsecond, _) => ints::<TimestampMicrosecondType>(array),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => ints::<TimestampNanosecondType>(array),
        DataType::UInt8 => uints::<UInt8Type>(array),
        DataType::UInt16 => uints::<UInt16Type>(array),
        DataType::UInt32 => uints::<UInt32Type>(array),
        DataType::UInt64 => uints::<UInt64Type>(array),
        DataType::Float32 => floats::<Float32Type>(array),
        DataType::Float64 => floats::<Float64Type>(array),
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            strings(compute::min_string(a), compute::max_string(a))
        }
        DataType::LargeUtf8 => {
            let a = array.as_string::<i64>();
            strings(compute::min_string(a), compute::max_string(a))
        }
        DataType::Utf8View => {
            let a = array.as_string_view();
            strings(compute::min_string_view(a), compute::max_string_view(a))
        }
        DataType::Boolean => {
            let a = array.as_boolean();
            Some((StatValue::Bool(compute::min_boolean(a)?), StatValue::Bool(compute::max_boolean(a)?)))
        }
        _ => None,
    }
}

fn ints<T>(array: &dyn Array) -> Option<(StatValue, StatValue)>
where
    T: ArrowNumericType,
    T::Native: Into<i64>,
{
    let a = array.as_primitive::<T>();
    Some((StatValue::Int(compute::min(a)?.into()), StatValue::Int(compute::max(a)?.into())))
}

fn uints<T>(array: &dyn Array) -> Option<(StatValue, StatValue)>
where
    T: ArrowNumericType,
    T::Native: Into<u64>,
{
    let a = array.as_primitive::<T>();
    Some((StatValue::UInt(compute::min(a)?.into()), StatValue::UInt(compute::max(a)?.into())))
}

/// Floats by hand: Arrow's kernels order NaN above everything, and NaN must not become a bound.
fn floats<T>(array: &dyn Array) -> Option<(StatValue, StatValue)>
where
    T: ArrowPrimitiveType,
    T::Native: Into<f64>,
{
    let (lo, hi) = array.as_primitive::<T>().iter().flatten().map(Into::<f64>::into).filter(|v| !v.is_nan()).fold(
        None,
        |acc: Option<(f64, f64)>, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        },
    )?;
    Some((StatValue::Float(lo), StatValue::Float(hi)))
}

fn strings(min: Option<&str>, max: Option<&str>) -> Option<(StatValue, StatValue)> {
    Some((StatValue::Utf8(min?.to_string()), StatValue::Utf8(max?.to_string())))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, Float64Array, Int64Array, LargeStringArray, StringArray,
        TimestampMillisecondArray, UInt64Array,
    };
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = columns.iter().map(|(n, a)| Field::new(*n, a.data_type().clone(), true)).collect();
        let arrays = columns.into_iter().map(|(_, a)| a).collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).expect("batch")
    }

    fn stats_of(name: &str, stats: &[ColumnStats]) -> ColumnStats {
        stats.iter().find(|s| s.name == name).cloned().expect("column present")
    }

    #[test]
    fn min_max_and_nulls_across_batches() {
        let b1 = batch(vec![
            ("i", Arc::new(Int64Array::from(vec![Some(5), None, Some(-3)])) as ArrayRef),
            ("u", Arc::new(UInt64Array::from(vec![7, 9, 8]))),
            ("f", Arc::new(Float64Array::from(vec![Some(1.5), Some(f64::NAN), None]))),
            ("s", Arc::new(StringArray::from(vec![Some("m"), Some("b"), None]))),
            ("b", Arc::new(BooleanArray::from(vec![true, true, true]))),
        ]);
        let b2 = batch(vec![
            ("i", Arc::new(Int64Array::from(vec![Some(10), Some(0), None])) as ArrayRef),
            ("u", Arc::new(UInt64Array::from(vec![1, 2, 3]))),
            ("f", Arc::new(Float64Array::from(vec![Some(-0.5), Some(3.0), Some(f64::NAN)]))),
            ("s", Arc::new(StringArray::from(vec![Some("z"), Some("c"), Some("a")]))),
            ("b", Arc::new(BooleanArray::from(vec![Some(false), None, Some(true)]))),
        ]);
        let stats = column_stats(&[b1, b2]);
        assert_eq!(stats.len(), 5);
        let i = stats_of("i", &stats);
        assert_eq!((i.min, i.max, i.null_count), (Some(StatValue::Int(-3)), Some(StatValue::Int(10)), 2));
        let u = stats_of("u", &stats);
        assert_eq!((u.min, u.max, u.null_count), (Some(StatValue::UInt(1)), Some(StatValue::UInt(9)), 0));
        let f = stats_of("f", &stats);
        assert_eq!((f.min, f.max, f.null_count), (Some(StatValue::Float(-0.5)), Some(StatValue::Float(3.0)), 1));
        let s = stats_of("s", &stats);
        assert_eq!((s.min, s.max, s.null_count), (Some(StatValue::Utf8("a".into())), Some(StatValue::Utf8("z".into())), 1));
        let b = stats_of("b", &stats);
        assert_eq!((b.min, b.max, b.null_count), (Some(StatValue::Bool(false)), Some(StatValue::Bool(true)), 1));
    }

    #[test]
    fn all_null_and_all_nan_have_no_bounds() {
        let b = batch(vec![
            ("i", Arc::new(Int64Array::from(vec![None, None])) as ArrayRef),
            ("f", Arc::new(Float32Array::from(vec![f32::NAN, f32::NAN]))),
        ]);
        let stats = column_stats(&[b]);
        assert_eq!(stats[0], ColumnStats { name: "i".into(), min: None, max: None, null_count: 2 });
        assert_eq!(stats[1], ColumnStats { name: "f".into(), min: None, max: None, null_count: 0 });
    }

    #[test]
    fn timestamps_large_utf8_and_vectors() {
        let values = Arc::new(Float32Array::from(vec![1.0, 2.0, 3.0, 4.0]));
        let item = Arc::new(Field::new("item", DataType::Float32, true));
        let vectors = FixedSizeListArray::try_new(item, 2, values, None).expect("vectors");
        let b = batch(vec![
            ("t", Arc::new(TimestampMillisecondArray::from(vec![1_000, 3_000])) as ArrayRef),
            ("l", Arc::new(LargeStringArray::from(vec!["y", "x"]))),
            ("v", Arc::new(vectors)),
        ]);
        let stats = column_stats(&[b]);
        assert_eq!((stats[0].min.clone(), stats[0].max.clone()), (Some(StatValue::Int(1_000)), Some(StatValue::Int(3_000))));
        assert_eq!((stats[1].min.clone(), stats[1].max.clone()), (Some(StatValue::Utf8("x".into())), Some(StatValue::Utf8("y".into()))));
        assert_eq!(stats[2], ColumnStats { name: "v".into(), min: None, max: None, null_count: 0 });
    }

    #[test]
    fn no_batches_no_stats() {
        assert!(column_stats(&[]).is_empty());
    }
}
