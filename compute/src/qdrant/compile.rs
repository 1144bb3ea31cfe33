//! Qdrant filters compiled to DataFusion expressions: `must`, `should`, `must_not` and
//! `min_should` become `AND`, `OR`, `NOT` and a sum of `CASE`s, `has_id` an `IN` list on the
//! `id` column, and each payload condition a call of the `payload_match(payload, condition)`
//! function (registered in every session that plans filters and SQL), which evaluates the
//! condition on the row's JSON payload.
//!
//! A condition on a key with a payload index ([`PayloadIndexes`]) that a derived column
//! answers exactly becomes a vectorised test of that column instead (see
//! [`crate::derived`]): `match` of a string, an integer or a bool and `match.any` of strings
//! or integers become `payload_any`, numeric and datetime `range`s `payload_range`. Every
//! other condition stays a `payload_match`; the answers are the same either way.
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
use datafusion::prelude::{col, ident, lit, SessionContext};
use serde_json::Value;

use super::condition::{parse_condition, Condition, FieldCondition, FieldTest, Filter};
use super::json_path::KeyPath;
use crate::derived::functions::{payload_any, payload_range};
use crate::derived::{DerivedColumn, Kind};
use crate::segment::ID_COLUMN;

/// The JSON payload column of a collection made through the Qdrant API.
pub use crate::derived::PAYLOAD_COLUMN;

/// Name of the SQL function that tests one Qdrant condition on a JSON payload.
pub const PAYLOAD_MATCH: &str = "payload_match";

/// The `payload_match` function, shared by every session.
static PAYLOAD_MATCH_UDF: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| Arc::new(ScalarUDF::from(PayloadMatch::new())));

/// Registers the functions Qdrant filters compile to in `ctx`.
pub fn register_functions(ctx: &SessionContext) {
    ctx.register_udf(PAYLOAD_MATCH_UDF.as_ref().clone());
    ctx.register_udf(crate::derived::functions::PAYLOAD_ANY_UDF.as_ref().clone());
    ctx.register_udf(crate::derived::functions::PAYLOAD_RANGE_UDF.as_ref().clone());
}

/// The derived columns of a collection's indexed payload keys, which filters may test
/// instead of parsing payloads.
#[derive(Debug, Clone, Default)]
pub struct PayloadIndexes(Vec<DerivedColumn>);

impl PayloadIndexes {
    /// The columns of the indexes `(key, index type)` (Qdrant's `create_payload_index`).
    pub fn new<'a>(indexes: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        PayloadIndexes(indexes.into_iter().flat_map(|(key, kind)| DerivedColumn::for_index(kind, key)).collect())
    }

    /// The columns, in index order.
    pub fn columns(&self) -> &[DerivedColumn] {
        &self.0
    }

    /// The column of `kind` values of the key at `path`, if an index keeps one.
    fn column(&self, kind: Kind, path: &KeyPath) -> Option<&DerivedColumn> {
        self.0.iter().find(|c| c.kind == kind && &c.path == path)
    }
}

/// Compiles a filter (already checked by [`Filter::parse`]) to a boolean expression over the
/// `id` and `payload` columns, and the derived columns of `indexes`.
pub fn compile(raw: &Value, indexes: &PayloadIndexes) -> Result<Expr, String> {
    let map = raw.as_object().ok_or("a filter is an object")?;
    let mut parts = Vec::new();
    if let Some(list) = conditions(map.get("must"))? {
        parts.push(all(list, indexes)?);
    }
    if let Some(list) = conditions(map.get("must_not"))? {
        parts.push(Expr::Not(Box::new(any(list, indexes)?)));
    }
    if let Some(list) = conditions(map.get("should"))?.filter(|l| !l.is_empty()) {
        parts.push(any(list, indexes)?);
    }
    if let Some(min) = map.get("min_should").filter(|v| !v.is_null()) {
        let list = conditions(min.get("conditions"))?.unwrap_or_default();
        let count = min.get("min_count").and_then(Value::as_u64).ok_or("min_should needs a min_count")?;
        let mut sum = lit(0i64);
        for c in list {
            let one = case(condition(c, indexes)?).when(lit(true), lit(1i64)).otherwise(lit(0i64)).map_err(|e| e.to_string())?;
            sum = sum + one;
        }
        parts.push(sum.gt_eq(lit(count as i64)));
    }
    Ok(parts.into_iter().reduce(Expr::and).unwrap_or(lit(true)))
}

/// A filter's SQL text: the compiled expression unparsed.
pub fn to_sql(raw: &Value, indexes: &PayloadIndexes) -> Result<String, String> {
    let expr = compile(raw, indexes)?;
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
fn all(list: Vec<&Value>, indexes: &PayloadIndexes) -> Result<Expr, String> {
    let parts = list.into_iter().map(|c| condition(c, indexes)).collect::<Result<Vec<_>, _>>()?;
    Ok(parts.into_iter().reduce(Expr::and).unwrap_or(lit(true)))
}

/// Some condition holds (false for none).
fn any(list: Vec<&Value>, indexes: &PayloadIndexes) -> Result<Expr, String> {
    let parts = list.into_iter().map(|c| condition(c, indexes)).collect::<Result<Vec<_>, _>>()?;
    Ok(parts.into_iter().reduce(Expr::or).unwrap_or(lit(false)))
}

/// One condition: `has_id` on the key column, a sub-filter recursively, a condition an
/// index answers on its derived column, anything else on the payload through
/// `payload_match`.
fn condition(value: &Value, indexes: &PayloadIndexes) -> Result<Expr, String> {
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
        return compile(value, indexes);
    }
    if let Some(indexed) = on_index(value, indexes) {
        return Ok(indexed);
    }
    Ok(PAYLOAD_MATCH_UDF.call(vec![col(PAYLOAD_COLUMN), lit(value.to_string())]))
}

/// A field condition as a test of an indexed key's derived column, when one answers it
/// exactly as `payload_match` would.
fn on_index(value: &Value, indexes: &PayloadIndexes) -> Option<Expr> {
    let Ok(Condition::Field(FieldCondition { key, test })) = parse_condition(value) else { return None };
    let on = |kind: Kind| indexes.column(kind, &key).map(|c| ident(c.name()));
    match test {
        FieldTest::Value(v) => {
            let (kind, constant) = constant(&v)?;
            Some(payload_any(on(kind)?, vec![constant]))
        }
        FieldTest::Any(list) => {
            let constants: Vec<(Kind, Expr)> = list.iter().map(constant).collect::<Option<_>>()?;
            let kind = constants.first()?.0;
            if constants.iter().any(|(k, _)| *k != kind) {
                return None;
            }
            Some(payload_any(on(kind)?, constants.into_iter().map(|(_, c)| c).collect()))
        }
        FieldTest::Range(bounds) => Some(payload_range(on(Kind::Num)?, &bounds)),
        FieldTest::DatetimeRange(bounds) => Some(payload_range(on(Kind::Dt)?, &bounds)),
        _ => None,
    }
}

/// A value `match` compares with, as the kind of derived column holding such values and a
/// literal: a string, an integer within i64, or a bool.
fn constant(v: &Value) -> Option<(Kind, Expr)> {
    match v {
        Value::String(s) => Some((Kind::Str, lit(s.clone()))),
        Value::Bool(b) => Some((Kind::Bool, lit(*b))),
        Value::Number(n) if !n.is_f64() => n.as_i64().map(|i| (Kind::Int, lit(i))),
        _ => None,
    }
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
                crate::metrics::payload_rows_matched(strings.len());
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
            let sql = to_sql(&f, &PayloadIndexes::default()).unwrap();
            let mask = SqlFilter::compile(&sql, &schema, ExprLimits::default()).unwrap().evaluate(&batch).unwrap();
            let parsed = Filter::parse(&f).unwrap().unwrap();
            for (i, p) in payloads.iter().enumerate() {
                let id = super::super::ids::PointId::from_key(ids[i]).unwrap();
                let want = parsed.matches(Some(&id), p.as_ref().unwrap_or(&json!({})));
                assert_eq!(mask.value(i), want, "row {i} of {f} (sql {sql})");
            }
        }
    }

    /// Random payloads with the shapes that make indexed conditions hard to get exactly
    /// right: integers beside equal floats, values beyond i64, lists, nulls, nested arrays,
    /// datetimes with zones, and keys that are missing.
    fn random_payloads(n: usize) -> Vec<Option<Value>> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |m: u64| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) % m
        };
        let colours = ["red", "blue", "Red", "green"];
        (0..n)
            .map(|i| {
                if i % 17 == 0 {
                    return None;
                }
                let mut p = serde_json::Map::new();
                let c = match next(5) {
                    0 => json!(colours[next(4) as usize]),
                    1 => json!([colours[next(4) as usize], colours[next(4) as usize]]),
                    2 => json!(7),
                    3 => Value::Null,
                    _ => json!([]),
                };
                if next(6) > 0 {
                    p.insert("c".into(), c);
                }
                let n = match next(7) {
                    0 => json!(next(10)),
                    1 => json!(next(10) as f64),
                    2 => json!(next(10) as f64 + 0.5),
                    3 => json!([next(10), -(next(10) as i64)]),
                    4 => json!(u64::MAX),
                    5 => json!("3"),
                    _ => json!(true),
                };
                p.insert("n".into(), n);
                p.insert("b".into(), if next(3) == 0 { json!([true, false]) } else { json!(next(2) == 0) });
                let t = ["2024-01-01T00:00:00Z", "2024-01-02 10:00:00", "2024-01-01T23:00:00-02:00", "2024-01-03", "soon"][next(5) as usize];
                p.insert("t".into(), json!(t));
                p.insert("a".into(), json!({"b": [next(5), next(5) as f64 + 0.25]}));
                p.insert("arr".into(), json!([{"b": next(4)}, {"b": [next(4), "x"]}, {"c": 1}]));
                Some(Value::Object(p))
            })
            .collect()
    }

    #[test]
    fn indexed_filters_select_the_rows_the_reference_does() {
        let schema = Arc::new(Schema::new(vec![
            Field::new(ID_COLUMN, DataType::Utf8, false),
            Field::new(PAYLOAD_COLUMN, DataType::Utf8, true),
        ]));
        let payloads = random_payloads(400);
        let ids: Vec<String> = (0..payloads.len()).map(|i| i.to_string()).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(ids.clone())),
                Arc::new(StringArray::from(payloads.iter().map(|p| p.as_ref().map(|v| v.to_string())).collect::<Vec<_>>())),
            ],
        )
        .unwrap();
        let indexes = PayloadIndexes::new([("c", "keyword"), ("n", "integer"), ("b", "bool"), ("t", "datetime"), ("a.b", "float"), ("arr[].b", "integer")]);
        let on_index = [
            json!({"key": "c", "match": {"value": "red"}}),
            json!({"key": "c", "match": {"any": ["red", "green"]}}),
            json!({"key": "n", "match": {"value": 5}}),
            json!({"key": "n", "match": {"value": -3}}),
            json!({"key": "n", "match": {"any": [1, 2, 3]}}),
            json!({"key": "n", "range": {"gte": 2, "lt": 5.5}}),
            json!({"key": "n", "range": {"gt": 1e19}}),
            json!({"key": "b", "match": {"value": true}}),
            json!({"key": "t", "range": {"gte": "2024-01-02T00:00:00Z"}}),
            json!({"key": "t", "range": {"lt": "2024-01-02", "gt": "2023-12-31T23:59:59+01:00"}}),
            json!({"key": "a.b", "range": {"lte": 2.25}}),
            json!({"key": "arr[].b", "match": {"value": 2}}),
        ];
        let not_on_index = [
            json!({"key": "c", "match": {"except": ["red"]}}),
            json!({"key": "c", "match": {"text": "red"}}),
            json!({"key": "c", "match": {"any": ["red", 7]}}),
            json!({"key": "n", "match": {"value": 18446744073709551615u64}}),
            json!({"key": "c", "values_count": {"gte": 2}}),
            json!({"is_empty": {"key": "c"}}),
            json!({"key": "missing", "match": {"value": "red"}}),
        ];
        let mut filters: Vec<Value> = Vec::new();
        for c in on_index.iter().chain(&not_on_index) {
            filters.push(json!({"must": [c]}));
            filters.push(json!({"must_not": [c]}));
        }
        for pair in on_index.windows(2) {
            filters.push(json!({"should": [pair[0], pair[1]], "must_not": [not_on_index[0]]}));
            filters.push(json!({"min_should": {"conditions": [pair[0], pair[1], on_index[0]], "min_count": 2}}));
        }
        for c in &on_index {
            let sql = to_sql(&json!({"must": [c]}), &indexes).unwrap();
            assert!(!sql.contains(PAYLOAD_MATCH), "{c} should use its index: {sql}");
        }
        for c in &not_on_index {
            let sql = to_sql(&json!({"must": [c]}), &indexes).unwrap();
            assert!(sql.contains(PAYLOAD_MATCH), "{c} has no exact index form: {sql}");
        }
        for f in filters {
            let parsed = Filter::parse(&f).unwrap().unwrap();
            for idx in [&PayloadIndexes::default(), &indexes] {
                let sql = to_sql(&f, idx).unwrap();
                let mask = SqlFilter::compile(&sql, &schema, ExprLimits::default()).unwrap().evaluate(&batch).unwrap();
                for (i, p) in payloads.iter().enumerate() {
                    let id = super::super::ids::PointId::from_key(&ids[i]).unwrap();
                    let want = parsed.matches(Some(&id), p.as_ref().unwrap_or(&json!({})));
                    assert_eq!(mask.value(i), want, "row {i} ({p:?}) of {f} (sql {sql})");
                }
            }
        }
    }
}
