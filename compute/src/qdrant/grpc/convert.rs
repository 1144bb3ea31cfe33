//! Qdrant's gRPC messages as the JSON of its REST API and back: payload values (integers stay
//! integers: `integer_value` ↔ JSON integers, `double_value` ↔ JSON floats), point ids, vectors,
//! the payload and vector selectors, search parameters, and the points a read or a search
//! answers with.
//!
//! Requests become the JSON bodies the REST handlers take, so both APIs check and answer the
//! same way; what gRPC can say and REST cannot (or Grape does not support) is refused here with
//! a 400, which the service answers as `InvalidArgument`.

use std::collections::HashMap;

use axum::http::StatusCode;
use grape_proto::prost_types::Timestamp;
use grape_proto::qdrant as pb;
use serde_json::{json, Map, Number, Value};

use crate::qdrant::ids::PointId;
use crate::qdrant::given::{GivenPoint, GivenVectors};
use crate::qdrant::reply::QdrantError;

/// What a conversion gives: the converted value or the error to answer with.
pub type Converted<T> = Result<T, QdrantError>;

/// A 400 for an input Grape does not support yet.
pub fn unsupported(what: &str) -> QdrantError {
    QdrantError::wrong_input(format!("{what}: not supported by Grape yet"))
}

/// A 400 for a malformed message.
pub fn malformed(what: &str) -> QdrantError {
    QdrantError::BadRequest(format!("Format error in request: {what}"))
}

/// A 500 for a REST result that does not have the shape this module expects.
fn unexpected(what: &str, value: &Value) -> QdrantError {
    QdrantError::Other(StatusCode::INTERNAL_SERVER_ERROR, format!("unexpected {what} in a result: {value}"))
}

/// The JSON of a payload value.
pub fn json_of_value(value: pb::Value) -> Converted<Value> {
    use pb::value::Kind;
    Ok(match value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::DoubleValue(d)) => {
            Value::Number(Number::from_f64(d).ok_or_else(|| malformed(&format!("the payload number {d} is not finite")))?)
        }
        Some(Kind::IntegerValue(i)) => Value::from(i),
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::StructValue(s)) => Value::Object(json_of_payload(s.fields)?),
        Some(Kind::ListValue(l)) => Value::Array(l.values.into_iter().map(json_of_value).collect::<Converted<_>>()?),
    })
}

/// The JSON object of a payload.
pub fn json_of_payload(fields: HashMap<String, pb::Value>) -> Converted<Map<String, Value>> {
    fields.into_iter().map(|(k, v)| Ok((k, json_of_value(v)?))).collect()
}

/// The payload value of a JSON value (integers beyond `i64` become doubles).
pub fn value_of_json(value: Value) -> pb::Value {
    use pb::value::Kind;
    let kind = match value {
        Value::Null => Kind::NullValue(pb::NullValue::NullValue as i32),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Kind::IntegerValue(i),
            None => Kind::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Kind::StringValue(s),
        Value::Array(items) => Kind::ListValue(pb::ListValue { values: items.into_iter().map(value_of_json).collect() }),
        Value::Object(map) => Kind::StructValue(pb::Struct { fields: payload_of_json(Value::Object(map)) }),
    };
    pb::Value { kind: Some(kind) }
}

/// The payload map of a JSON object (anything else, such as `null`, is an empty payload).
pub fn payload_of_json(value: Value) -> HashMap<String, pb::Value> {
    match value {
        Value::Object(map) => map.into_iter().map(|(k, v)| (k, value_of_json(v))).collect(),
        _ => HashMap::new(),
    }
}

/// A timestamp as RFC 3339 text in UTC with nanoseconds.
pub fn rfc3339(t: Timestamp) -> Converted<String> {
    let bad = || malformed(&format!("timestamp {}s {}ns is out of range", t.seconds, t.nanos));
    let nanos = u32::try_from(t.nanos).ok().filter(|n| *n < 1_000_000_000).ok_or_else(bad)?;
    let at = arrow::temporal_conversions::timestamp_s_to_datetime(t.seconds).ok_or_else(bad)?;
    Ok(format!("{}.{nanos:09}Z", at.format("%Y-%m-%dT%H:%M:%S")))
}

/// The JSON of a point id (a number or a UUID string).
pub fn json_of_id(id: Option<pb::PointId>) -> Converted<Value> {
    use pb::point_id::PointIdOptions;
    match id.and_then(|id| id.point_id_options) {
        Some(PointIdOptions::Num(n)) => Ok(Value::from(n)),
        Some(PointIdOptions::Uuid(u)) => Ok(Value::String(u)),
        None => Err(malformed("a point id has neither num nor uuid")),
    }
}

/// The JSON of a list of point ids.
pub fn json_of_ids(ids: Vec<pb::PointId>) -> Converted<Vec<Value>> {
    ids.into_iter().map(|id| json_of_id(Some(id))).collect()
}

/// The point id of a result's JSON id.
pub fn id_of_json(value: &Value) -> Converted<pb::PointId> {
    use pb::point_id::PointIdOptions;
    let options = match PointId::from_json(value).map_err(|_| unexpected("point id", value))? {
        PointId::Num(n) => PointIdOptions::Num(n),
        PointId::Uuid(u) => PointIdOptions::Uuid(u),
    };
    Ok(pb::PointId { point_id_options: Some(options) })
}

/// A dense vector's values (other kinds are refused). Older clients send the deprecated
/// `data` (with `indices` for sparse and `vectors_count` for multi vectors) instead of `dense`.
#[allow(deprecated)]
pub fn dense_of(vector: pb::Vector) -> Converted<Vec<f32>> {
    use pb::vector::Vector as V;
    match vector.vector {
        Some(V::Dense(dense)) => Ok(dense.data),
        Some(V::Sparse(_)) => Err(unsupported("sparse vectors")),
        Some(V::MultiDense(_)) => Err(unsupported("multi vectors")),
        Some(V::Document(_) | V::Image(_) | V::Object(_)) => Err(unsupported("inference (documents, images, objects)")),
        None if vector.indices.is_some() => Err(unsupported("sparse vectors")),
        None if vector.vectors_count.is_some() => Err(unsupported("multi vectors")),
        None => Ok(vector.data),
    }
}

/// A point's vectors: one vector, or named ones (straight to floats, never through JSON).
pub fn given_vectors(vectors: Option<pb::Vectors>) -> Converted<GivenVectors> {
    use pb::vectors::VectorsOptions;
    match vectors.and_then(|v| v.vectors_options) {
        None => Ok(GivenVectors::Missing),
        Some(VectorsOptions::Vector(v)) => dense_of(v).map(GivenVectors::Plain),
        Some(VectorsOptions::Vectors(named)) => {
            let mut named = named.vectors.into_iter().map(|(name, v)| Ok((name, dense_of(v)?))).collect::<Converted<Vec<_>>>()?;
            // In name order, as a JSON object lists them.
            named.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(GivenVectors::Named(named))
        }
    }
}

/// The JSON of a query's vector input: a dense vector or a point id.
pub fn json_of_vector_input(input: pb::VectorInput) -> Converted<Value> {
    use pb::vector_input::Variant;
    match input.variant {
        Some(Variant::Id(id)) => json_of_id(Some(id)),
        Some(Variant::Dense(dense)) => Ok(json!(dense.data)),
        Some(Variant::Sparse(_)) => Err(unsupported("sparse vectors")),
        Some(Variant::MultiDense(_)) => Err(unsupported("multi vectors")),
        Some(Variant::Document(_) | Variant::Image(_) | Variant::Object(_)) => Err(unsupported("inference (documents, images, objects)")),
        None => Err(malformed("a vector input is empty")),
    }
}

/// A point to upsert (an empty payload is none).
pub fn given_point(point: pb::PointStruct) -> Converted<GivenPoint> {
    let payload = if point.payload.is_empty() { Value::Null } else { Value::Object(json_of_payload(point.payload)?) };
    Ok(GivenPoint { id: json_of_id(point.id)?, vectors: given_vectors(point.vectors)?, payload })
}

/// The JSON of `with_payload` (`null`: absent, the endpoint's default).
pub fn json_of_with_payload(selector: Option<pb::WithPayloadSelector>) -> Value {
    use pb::with_payload_selector::SelectorOptions;
    match selector.and_then(|s| s.selector_options) {
        None => Value::Null,
        Some(SelectorOptions::Enable(b)) => Value::Bool(b),
        Some(SelectorOptions::Include(i)) => json!({ "include": i.fields }),
        Some(SelectorOptions::Exclude(e)) => json!({ "exclude": e.fields }),
    }
}

/// The JSON of `with_vector` (`null`: absent).
pub fn json_of_with_vectors(selector: Option<pb::WithVectorsSelector>) -> Value {
    use pb::with_vectors_selector::SelectorOptions;
    match selector.and_then(|s| s.selector_options) {
        None => Value::Null,
        Some(SelectorOptions::Enable(b)) => Value::Bool(b),
        Some(SelectorOptions::Include(names)) => json!(names.names),
    }
}

/// The JSON of search `params` (`null`: absent).
pub fn json_of_params(params: Option<pb::SearchParams>) -> Value {
    params.map_or(Value::Null, |p| {
        json!({
            "hnsw_ef": p.hnsw_ef,
            "exact": p.exact,
            "indexed_only": p.indexed_only,
            "quantization": p.quantization.map(|q| json!({ "ignore": q.ignore, "rescore": q.rescore, "oversampling": q.oversampling })),
        })
    })
}

/// A dense vector of a result as gRPC's output vector.
fn vector_output_of_json(value: &Value) -> Converted<pb::VectorOutput> {
    let items = value.as_array().ok_or_else(|| unexpected("vector", value))?;
    let data = items.iter().map(|x| x.as_f64().map(|f| f as f32).ok_or_else(|| unexpected("vector element", x))).collect::<Converted<_>>()?;
    Ok(pb::VectorOutput { vector: Some(pb::vector_output::Vector::Dense(pb::DenseVector { data })), ..Default::default() })
}

/// The vectors of a result's `vector` (a dense vector, or an object of named ones; `null`:
/// none).
fn vectors_of_json(value: Value) -> Converted<Option<pb::VectorsOutput>> {
    use pb::vectors_output::VectorsOptions;
    let options = match &value {
        Value::Null => return Ok(None),
        Value::Object(named) => {
            let vectors = named.iter().map(|(name, v)| Ok((name.clone(), vector_output_of_json(v)?))).collect::<Converted<_>>()?;
            VectorsOptions::Vectors(pb::NamedVectorsOutput { vectors })
        }
        one => VectorsOptions::Vector(vector_output_of_json(one)?),
    };
    Ok(Some(pb::VectorsOutput { vectors_options: Some(options) }))
}

/// A result's point, its `id`, `payload` and `vector` converted.
struct PointParts {
    /// The point's other fields (`score`, `version`, `order_value`).
    rest: Map<String, Value>,
    /// `id`.
    id: pb::PointId,
    /// `payload`.
    payload: HashMap<String, pb::Value>,
    /// `vector`.
    vectors: Option<pb::VectorsOutput>,
}

impl PointParts {
    /// The parts of a result's point.
    fn of(value: Value) -> Converted<PointParts> {
        let Value::Object(mut rest) = value else { return Err(unexpected("point", &value)) };
        let id = id_of_json(rest.get("id").unwrap_or(&Value::Null))?;
        let payload = payload_of_json(rest.remove("payload").unwrap_or(Value::Null));
        let vectors = vectors_of_json(rest.remove("vector").unwrap_or(Value::Null))?;
        Ok(PointParts { rest, id, payload, vectors })
    }
}

/// A point of a read (`{id, payload, vector}`, and `order_value` when a scroll is ordered by
/// a payload key).
pub fn retrieved_point(value: Value) -> Converted<pb::RetrievedPoint> {
    use pb::order_value::Variant;
    let PointParts { rest, id, payload, vectors } = PointParts::of(value)?;
    let order_value = rest.get("order_value").and_then(|v| match v.as_i64() {
        Some(i) => Some(Variant::Int(i)),
        None => v.as_f64().map(Variant::Float),
    });
    Ok(pb::RetrievedPoint {
        id: Some(id),
        payload,
        vectors,
        order_value: order_value.map(|v| pb::OrderValue { variant: Some(v) }),
        ..Default::default()
    })
}

/// A point of a search (`{id, payload, vector, score, version}`).
pub fn scored_point(value: Value) -> Converted<pb::ScoredPoint> {
    let PointParts { rest, id, payload, vectors } = PointParts::of(value)?;
    let score = rest.get("score").and_then(Value::as_f64).unwrap_or_default() as f32;
    let version = rest.get("version").and_then(Value::as_u64).unwrap_or_default();
    Ok(pb::ScoredPoint { id: Some(id), payload, score, version, vectors, ..Default::default() })
}

/// The items of a result that is a list.
pub fn items(value: Value) -> Converted<Vec<Value>> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(unexpected("result", &other)),
    }
}

/// The points of a result that is a list of them, each converted by `convert`.
pub fn points_of<T>(value: Value, convert: fn(Value) -> Converted<T>) -> Converted<Vec<T>> {
    items(value)?.into_iter().map(convert).collect()
}

/// The `points` of a `{"points": [...]}` result.
pub fn points_field<T>(value: &mut Value, convert: fn(Value) -> Converted<T>) -> Converted<Vec<T>> {
    points_of(value.get_mut("points").map(Value::take).unwrap_or(Value::Array(Vec::new())), convert)
}

/// The result of a write (`{operation_id, status}`).
pub fn update_result(value: &Value) -> pb::UpdateResult {
    let status = match value.get("status").and_then(Value::as_str) {
        Some("completed") => pb::UpdateStatus::Completed,
        Some("acknowledged") => pb::UpdateStatus::Acknowledged,
        _ => pb::UpdateStatus::UnknownUpdateStatus,
    };
    pb::UpdateResult { operation_id: value.get("operation_id").and_then(Value::as_u64), status: status as i32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_values_round_trip_with_their_types() {
        let payload = json!({"i": 42, "big": 9007199254740992_u64, "neg": -7, "f": 2.0, "s": "x", "n": null, "b": true,
                             "arr": [1, "two", 3.5, null, {"x": 1}, [2]], "obj": {"a": {"b": []}}});
        let grpc = payload_of_json(payload.clone());
        assert!(matches!(grpc["i"].kind, Some(pb::value::Kind::IntegerValue(42))));
        assert!(matches!(grpc["f"].kind, Some(pb::value::Kind::DoubleValue(f)) if f == 2.0));
        let back = Value::Object(json_of_payload(grpc).unwrap());
        assert_eq!(back, payload);
        assert_eq!(back["f"].to_string(), "2.0");
        // Beyond i64: a double.
        assert!(matches!(value_of_json(json!(u64::MAX)).kind, Some(pb::value::Kind::DoubleValue(_))));
        let nan = pb::Value { kind: Some(pb::value::Kind::DoubleValue(f64::NAN)) };
        assert!(json_of_value(nan).is_err());
    }

    #[test]
    fn ids_vectors_and_points() {
        let uuid = "550e8400-e29b-41d4-a716-446655440000";
        assert_eq!(json_of_id(Some(id_of_json(&json!(7)).unwrap())).unwrap(), json!(7));
        assert_eq!(json_of_id(Some(id_of_json(&json!(uuid)).unwrap())).unwrap(), json!(uuid));
        assert!(json_of_id(Some(pb::PointId::default())).is_err());
        let dense = pb::Vector { vector: Some(pb::vector::Vector::Dense(pb::DenseVector { data: vec![0.5, 1.0] })), ..Default::default() };
        assert_eq!(dense_of(dense).unwrap(), vec![0.5, 1.0]);
        #[allow(deprecated)]
        let (legacy, sparse) = (
            pb::Vector { data: vec![0.25], ..Default::default() },
            pb::Vector { data: vec![0.25], indices: Some(pb::SparseIndices { data: vec![3] }), ..Default::default() },
        );
        assert_eq!(dense_of(legacy).unwrap(), vec![0.25]);
        assert_eq!(dense_of(sparse).unwrap_err().status(), StatusCode::BAD_REQUEST);
        let hit = scored_point(json!({"id": 3, "payload": {"a": 1}, "vector": [0.5], "score": 0.75, "version": 0})).unwrap();
        assert_eq!(hit.score, 0.75);
        assert_eq!(hit.payload.len(), 1);
        assert!(hit.vectors.is_some());
        let record = retrieved_point(json!({"id": uuid, "payload": null, "vector": null})).unwrap();
        assert!(record.payload.is_empty() && record.vectors.is_none());
        let named = scored_point(json!({"id": 4, "payload": null, "vector": {"image": [0.5], "text": [1.0, 2.0]}, "score": 1.0})).unwrap();
        let Some(pb::vectors_output::VectorsOptions::Vectors(named)) = named.vectors.and_then(|v| v.vectors_options) else {
            panic!("named vectors are not NamedVectorsOutput")
        };
        assert_eq!(named.vectors.len(), 2);
    }
}
