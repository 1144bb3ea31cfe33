//! Qdrant filters compiled to DataFusion expressions: `must`, `should`, `must_not` and
//! `min_should` become `AND`, `OR`, `NOT` and a sum of `CASE`s, `has_id` an `IN` list on the
//! `id` column, and each payload condition a call of the `payload_match(payload, condition)`
//! function (registered in every session that plans filters and SQL), which evaluates the
//! condition on the row's JSON payload.
//!
//! Filters travel to other nodes as SQL text, so the expression is unparsed by DataFusion's
//! unparser (which quotes every literal) and planned again where it runs.

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    case, ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::{col, lit, SessionContext};
use serde_json::Value;

use super::condition::{Condition, Filter};
use crate::segment::ID_COLUMN;

/// The JSON payload column of a collection made through the Qdrant API.
pub const PAYLOAD_COLUMN: &str = "payload";

/// Name of the SQL function that tests one Qdrant condition on a JSON payload.
pub const PAYLOAD_MATCH: &str = "payload_match";

/// The `payload_match` function, shared by every session.
static PAYLOAD_MATCH_UDF: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| Arc::new(ScalarUDF::from(PayloadMatch::new())));

/// Registers the functions Qdrant filters compile to in `ctx`.
pub fn register_functions(ctx: &SessionContext) {
    ctx.register_udf(PAYLOAD_MATCH_UDF.as_ref().clone());
}

/// Compiles a filter (already checked by [`Filter::parse`]) to a boolean expression over the
/// `id` and `payload` columns.
pub fn compile(raw: &Value) -> Result<Expr, String> {
    let map = raw.as_object().ok_or("a filter is an object")?;
    let mut parts = Vec::new();
    if let Some(list) = conditions(map.get("must"))? {
        parts.push(all(list)?);
    }
    if let Some(list) = conditions(map.get("must_not"))? {
        parts.push(Expr::Not(Box::new(any(list)?)));
    }
    if let Some(list) = conditions(map.get("should"))?.filter(|l| !l.is_empty()) {
        parts.push(any(list)?);
    }
    if let Some(min) = map.get("min_should").filter(|v| !v.is_null()) {
        let list = conditions(min.get("conditions"))?.unwrap_or_default();
        let count = min.get("min_count").and_then(Value::as_u64).ok_or("min_should needs a min_count")?;
        let mut sum = lit(0i64);
        for c in list {
            let one = case(condition(c)?).when(lit(true), lit(1i64)).otherwise(lit(0i64)).map_err(|e| e.to_string())?;
            sum = sum + one;
        }
        parts.push(sum.gt_eq(lit(count as i64)));
    }
    Ok(parts.into_iter().reduce(Expr::and).unwrap_or(lit(true)))
}

/// A filter's SQL text: the compiled expression unparsed.
pub fn to_sql(raw: &Value) -> Result<String, String> {
    let expr = compile(raw)?;
    datafusion::sql::unparser::expr_to_sql(&expr).map(|e| e.to_string()).map_err(|e| format!("cannot express the filter in SQL: {e}"))
}

/// The conditions of a `must`/`should`/`must_not` value: one condition or a list.
fn conditions(value: Option<&Value>) -> Result<Option<Vec<&Value>>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items.iter().collect())),
        Some(one) => Ok(Some(vec![one])),
    }
}

/// Every condition holds (true for none).
fn all(list: Vec<&Value>) -> Result<Expr, String> {
    Ok(list.into_iter().map(condition).collect::<Result<Vec<_>, _>>()?.into_iter().reduce(Expr::and).unwrap_or(lit(true)))
}

/// Some condition holds (false for none).
fn any(list: Vec<&Value>) -> Result<Expr, String> {
    Ok(list.into_iter().map(condition).collect::<Result<Vec<_>, _>>()?.into_iter().reduce(Expr::or).unwrap_or(lit(false)))
}

/// One condition: `has_id` on the key column, a sub-filter recursively, anything on the
/// payload through `payload_match`.
fn condition(value: &Value) -> Result<Expr, String> {
    let map = value.as_object().ok_or("a condition is an object")?;
    if let Some(ids) = map.get("has_id") {
        let ids = ids.as_array().ok_or("has_id is a list of ids")?;
        let keys = ids.iter().map(|v| super::ids::PointId::from_json(v).map(|id| lit(id.key()))).collect::<Result<Vec<_>, _>>()?;
        return Ok(if keys.is_empty() { lit(false) } else { col(ID_COLUMN).in_list(keys, false) });
    }
    if map.contains_key("has_vector") {
        return Ok(lit(true));
    }
    let on_payload = ["key", "is_empty", "is_null", "nested"].iter().any(|k| map.contains_key(*k));
    if !on_payload {
        return compile(value);
    }
    Ok(PAYLOAD_MATCH_UDF.call(vec![col(PAYLOAD_COLUMN), lit(value.to_string())]))
}

/// `payload_match(payload, condition)`: whether the JSON payload (a utf8 column; null is an
/// empty payload) satisfies one Qdrant condition given as JSON text.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PayloadMatch {
    signature: Signature,
}

impl PayloadMatch {
    fn new() -> Self {
        Self { signature: Signature::exact(vec![DataType::Utf8, DataType::Utf8], Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for PayloadMatch {
    fn name(&self) -> &str {
        PAYLOAD_MATCH
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [payloads, condition] = args.args.as_slice() else {
            return exec_err!("{PAYLOAD_MATCH} takes a payload and a condition");
        };
        let ColumnarValue::Scalar(ScalarValue::Utf8(Some(text))) = condition else {
            return exec_err!("{PAYLOAD_MATCH}: the condition must be a constant string");
        };
        let parsed: Value = serde_json::from_str(text).map_err(|e| datafusion::error::DataFusionError::Execution(format!("{PAYLOAD_MATCH}: {e}")))?;
        let wrapped = serde_json::json!({ "must": [parsed] });
        let filter = Filter::parse(&wrapped)
            .map_err(|e| datafusion::error::DataFusionError::Execution(format!("{PAYLOAD_MATCH}: {e}")))?
            .unwrap_or_default();
        let test = |json: Option<&str>| -> bool {
            let payload = json.and_then(|j| serde_json::from_str::<Value>(j).ok()).unwrap_or(Value::Object(Default::default()));
            filter.must.as_deref().is_some_and(|cs| cs.iter().all(|c: &Condition| c.matches(None, &payload)))
        };
        match payloads {
            ColumnarValue::Scalar(s) => {
                let json = match s {
                    ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => v.as_deref(),
                    _ => None,
                };
                Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(test(json)))))
            }
            ColumnarValue::Array(array) => {
                let array: ArrayRef = arrow::compute::cast(array, &DataType::Utf8)?;
                let strings = array.as_string::<i32>();
                let out: BooleanArray = (0..strings.len()).map(|i| Some(test(strings.is_valid(i).then(|| strings.value(i))))).collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{RecordBatch, StringArray};
    use arrow::datatypes::{Field, Schema};
    use serde_json::json;

    use crate::filter::Filter as SqlFilter;
    use crate::limits::ExprLimits;

    #[test]
    fn compiled_filters_select_the_rows_the_reference_does() {
        let schema = Arc::new(Schema::new(vec![
            Field::new(ID_COLUMN, DataType::Utf8, false),
            Field::new(PAYLOAD_COLUMN, DataType::Utf8, true),
        ]));
        let payloads = [
            Some(json!({"c": "red", "n": 1, "tags": ["x"]})),
            Some(json!({"c": "blue", "n": 2, "it's": true})),
            None,
            Some(json!({"c": "red", "n": 3, "tags": []})),
        ];
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["1", "2", "3", "550e8400-e29b-41d4-a716-446655440000"])),
                Arc::new(StringArray::from(payloads.iter().map(|p| p.as_ref().map(|v| v.to_string())).collect::<Vec<_>>())),
            ],
        )
        .unwrap();
        let ids = ["1", "2", "3", "550e8400-e29b-41d4-a716-446655440000"];
        for f in [
            json!({"must": [{"key": "c", "match": {"value": "red"}}]}),
            json!({"must_not": [{"key": "c", "match": {"value": "red"}}], "should": [{"is_empty": {"key": "tags"}}, {"has_id": [2]}]}),
            json!({"must": [{"has_id": [1, "550e8400-e29b-41d4-a716-446655440000"]}, {"must": [{"key": "n", "range": {"gt": 1}}]}]}),
            json!({"min_should": {"conditions": [{"key": "c", "match": {"value": "red"}}, {"key": "n", "range": {"lt": 3}}, {"is_empty": {"key": "it's"}}], "min_count": 3}}),
            json!({"should": []}),
            json!({}),
        ] {
            let sql = to_sql(&f).unwrap();
            let mask = SqlFilter::compile(&sql, &schema, ExprLimits::default()).unwrap().evaluate(&batch).unwrap();
            let parsed = Filter::parse(&f).unwrap().unwrap();
            for (i, p) in payloads.iter().enumerate() {
                let id = super::super::ids::PointId::from_key(ids[i]).unwrap();
                let want = parsed.matches(Some(&id), p.as_ref().unwrap_or(&json!({})));
                assert_eq!(mask.value(i), want, "row {i} of {f} (sql {sql})");
            }
        }
    }
}
