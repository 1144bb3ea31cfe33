//! The SQL functions over derived payload columns that Qdrant filters on indexed keys compile
//! to, also callable from Grape's SQL:
//! - `payload_any(column, v1, …, vn)`: some value of the row's list equals some `vi`;
//! - `payload_range(column, gt, gte, lt, lte)`: some value is within the bounds (`NULL`: no
//!   bound), compared as f64 (datetimes as µs since the epoch).
//!
//! Both are true or false, never null (an empty list is false), so `NOT` and `must_not` over
//! them mean what Qdrant means.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, ListArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType};
use datafusion::common::{exec_err, plan_err, Result as DfResult, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

use crate::qdrant::condition::Bounds;

/// Name of the function testing list values for equality with constants.
pub const PAYLOAD_ANY: &str = "payload_any";
/// Name of the function testing list values against numeric bounds.
pub const PAYLOAD_RANGE: &str = "payload_range";

/// `payload_any`, shared by every session.
pub static PAYLOAD_ANY_UDF: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| Arc::new(ScalarUDF::from(ListTest::new(PAYLOAD_ANY))));
/// `payload_range`, shared by every session.
pub static PAYLOAD_RANGE_UDF: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| Arc::new(ScalarUDF::from(ListTest::new(PAYLOAD_RANGE))));

/// `payload_any(column, values…)` as an expression.
pub fn payload_any(column: Expr, values: Vec<Expr>) -> Expr {
    PAYLOAD_ANY_UDF.call(std::iter::once(column).chain(values).collect())
}

/// `payload_range(column, gt, gte, lt, lte)` as an expression (absent bounds are `NULL`).
pub fn payload_range(column: Expr, bounds: &Bounds) -> Expr {
    let bound = |b: Option<f64>| datafusion::prelude::lit(ScalarValue::Float64(b));
    PAYLOAD_RANGE_UDF.call(vec![column, bound(bounds.gt), bound(bounds.gte), bound(bounds.lt), bound(bounds.lte)])
}

/// One of the two functions: both take a list column and constants, and test each row's
/// values.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ListTest {
    name: &'static str,
    signature: Signature,
}

impl ListTest {
    fn new(name: &'static str) -> Self {
        ListTest { name, signature: Signature::variadic_any(Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for ListTest {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        let Some(DataType::List(_)) = args.first() else {
            return plan_err!("{} takes a derived payload column (a list) first, got {:?}", self.name, args.first());
        };
        if self.name == PAYLOAD_RANGE && args.len() != 5 {
            return plan_err!("{PAYLOAD_RANGE} takes a column and four bounds (gt, gte, lt, lte; NULL for none)");
        }
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let Some((column, constants)) = args.args.split_first() else {
            return exec_err!("{} needs a column", self.name);
        };
        let constants: Vec<&ScalarValue> = constants
            .iter()
            .map(|c| match c {
                ColumnarValue::Scalar(s) => Ok(s),
                ColumnarValue::Array(_) => exec_err!("{}: every argument after the column must be a constant", self.name),
            })
            .collect::<DfResult<_>>()?;
        let array = column.to_array(args.number_rows)?;
        let Some(list) = array.as_list_opt::<i32>() else {
            return exec_err!("{} takes a list column, got {}", self.name, array.data_type());
        };
        let hits = if self.name == PAYLOAD_ANY { equal_any(list.values(), &constants)? } else { in_range(list.values(), &constants)? };
        Ok(ColumnarValue::Array(Arc::new(any_per_row(list, &hits))))
    }
}

/// Per row of `list`: whether any of its values is a hit (false for an empty or null list).
fn any_per_row(list: &ListArray, hits: &[bool]) -> BooleanArray {
    let offsets = list.value_offsets();
    (0..list.len())
        .map(|r| Some(list.is_valid(r) && hits[offsets[r] as usize..offsets[r + 1] as usize].iter().any(|h| *h)))
        .collect()
}

/// Per value: whether it equals one of `constants` (constants of another type never do).
fn equal_any(values: &ArrayRef, constants: &[&ScalarValue]) -> DfResult<Vec<bool>> {
    let valid = |i: usize| values.is_valid(i);
    Ok(match values.data_type() {
        DataType::Utf8 => {
            let wanted: HashSet<&str> = constants.iter().filter_map(|c| c.try_as_str().flatten()).collect();
            let strings = values.as_string::<i32>();
            (0..strings.len()).map(|i| valid(i) && wanted.contains(strings.value(i))).collect()
        }
        DataType::Int64 => {
            let wanted: HashSet<i64> = constants.iter().filter_map(|c| integer(c)).collect();
            values.as_primitive::<Int64Type>().iter().map(|v| v.is_some_and(|v| wanted.contains(&v))).collect()
        }
        DataType::Boolean => {
            let wanted: Vec<bool> = constants.iter().filter_map(|c| if let ScalarValue::Boolean(Some(b)) = c { Some(*b) } else { None }).collect();
            values.as_boolean().iter().map(|v| v.is_some_and(|v| wanted.contains(&v))).collect()
        }
        _ => {
            let wanted: Vec<f64> = constants.iter().filter_map(|c| number(c)).collect();
            as_f64(values)?.into_iter().map(|v| v.is_some_and(|v| wanted.contains(&v))).collect()
        }
    })
}

/// Per value: whether it is within the bounds `[gt, gte, lt, lte]`.
fn in_range(values: &ArrayRef, bounds: &[&ScalarValue]) -> DfResult<Vec<bool>> {
    let [gt, gte, lt, lte] = bounds else {
        return exec_err!("{PAYLOAD_RANGE} takes four bounds");
    };
    let bounds = Bounds { gt: number(gt), gte: number(gte), lt: number(lt), lte: number(lte) };
    Ok(as_f64(values)?.into_iter().map(|v| v.is_some_and(|v| bounds.contains(v))).collect())
}

/// Numeric values (integers, floats, µs timestamps) as f64.
fn as_f64(values: &ArrayRef) -> DfResult<Vec<Option<f64>>> {
    Ok(match values.data_type() {
        DataType::Float64 => values.as_primitive::<Float64Type>().iter().collect(),
        DataType::Int64 => values.as_primitive::<Int64Type>().iter().map(|v| v.map(|v| v as f64)).collect(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => values.as_primitive::<TimestampMicrosecondType>().iter().map(|v| v.map(|v| v as f64)).collect(),
        other => return exec_err!("{PAYLOAD_RANGE} and {PAYLOAD_ANY} compare strings, integers, numbers, booleans or datetimes, not {other}"),
    })
}

/// An integer constant as i64 (a float is not an integer, as in Qdrant's matching).
fn integer(c: &ScalarValue) -> Option<i64> {
    match c {
        ScalarValue::Int8(Some(v)) => Some(*v as i64),
        ScalarValue::Int16(Some(v)) => Some(*v as i64),
        ScalarValue::Int32(Some(v)) => Some(*v as i64),
        ScalarValue::Int64(Some(v)) => Some(*v),
        ScalarValue::UInt8(Some(v)) => Some(*v as i64),
        ScalarValue::UInt16(Some(v)) => Some(*v as i64),
        ScalarValue::UInt32(Some(v)) => Some(*v as i64),
        ScalarValue::UInt64(Some(v)) => i64::try_from(*v).ok(),
        _ => None,
    }
}

/// A numeric constant as f64; `None` for NULL or a non-number.
fn number(c: &ScalarValue) -> Option<f64> {
    if c.is_null() || !c.data_type().is_numeric() {
        return None;
    }
    match c.cast_to(&DataType::Float64) {
        Ok(ScalarValue::Float64(v)) => v,
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::derived::{extract, DerivedColumn, Kind};
    use arrow::array::{RecordBatch, StringArray};
    use arrow::datatypes::{Field, Schema};
    use datafusion::prelude::{ident, lit};
    use serde_json::json;

    fn run(expr: Expr, column: ArrayRef) -> Vec<bool> {
        let schema = Arc::new(Schema::new(vec![Field::new("c", column.data_type().clone(), false)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![column]).unwrap();
        let df_schema = datafusion::common::DFSchema::try_from(schema.as_ref().clone()).unwrap();
        let ctx = datafusion::prelude::SessionContext::new();
        let physical = ctx.create_physical_expr(expr, &df_schema).unwrap();
        let out = physical.evaluate(&batch).unwrap().into_array(batch.num_rows()).unwrap();
        assert_eq!(out.null_count(), 0, "never null");
        out.as_boolean().iter().map(|v| v.unwrap()).collect()
    }

    fn column(kind: Kind, payloads: &[serde_json::Value]) -> ArrayRef {
        let strings: ArrayRef = Arc::new(StringArray::from(payloads.iter().map(|p| Some(p.to_string())).collect::<Vec<_>>()));
        extract(&strings, &[DerivedColumn::new(kind, "k").unwrap()]).unwrap().remove(0)
    }

    #[test]
    fn any_compares_values_of_the_column_type() {
        let payloads = [json!({"k": "a"}), json!({"k": ["b", "c"]}), json!({}), json!({"k": []})];
        let strs = column(Kind::Str, &payloads);
        assert_eq!(run(payload_any(ident("c"), vec![lit("c"), lit("a")]), strs.clone()), vec![true, true, false, false]);
        assert_eq!(run(payload_any(ident("c"), vec![lit(1i64)]), strs.clone()), vec![false; 4]);
        assert_eq!(run(payload_any(ident("c"), vec![]), strs), vec![false; 4]);
        let ints = column(Kind::Int, &[json!({"k": 5}), json!({"k": [1, 5.0]}), json!({"k": -2})]);
        assert_eq!(run(payload_any(ident("c"), vec![lit(5i64), lit(-2i32)]), ints.clone()), vec![true, false, true]);
        assert_eq!(run(payload_any(ident("c"), vec![lit(5.0f64)]), ints), vec![false; 3], "a float never equals an integer");
        let bools = column(Kind::Bool, &[json!({"k": true}), json!({"k": [false]})]);
        assert_eq!(run(payload_any(ident("c"), vec![lit(true)]), bools), vec![true, false]);
    }

    #[test]
    fn range_takes_any_numeric_bounds_and_nulls_for_none() {
        let nums = column(Kind::Num, &[json!({"k": 1}), json!({"k": [2.5, 9]}), json!({"k": "3"}), json!({})]);
        let bounds = Bounds { gte: Some(2.5), lt: Some(9.0), ..Default::default() };
        assert_eq!(run(payload_range(ident("c"), &bounds), nums.clone()), vec![false, true, false, false]);
        let with_ints = PAYLOAD_RANGE_UDF.call(vec![ident("c"), lit(1i64), lit(ScalarValue::Null), lit(ScalarValue::Null), lit(ScalarValue::Null)]);
        assert_eq!(run(with_ints, nums), vec![false, true, false, false]);
        let dts = column(Kind::Dt, &[json!({"k": "2024-01-01T00:00:00Z"}), json!({"k": "2024-03-01"})]);
        let feb = crate::qdrant::condition::parse_datetime("2024-02-01").unwrap() as f64;
        assert_eq!(run(payload_range(ident("c"), &Bounds { gt: Some(feb), ..Default::default() }), dts), vec![false, true]);
    }
}
