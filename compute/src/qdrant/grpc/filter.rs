//! Qdrant's gRPC `Filter` as the JSON filter of its REST API, which [`crate::qdrant::condition`]
//! parses and checks: each `Condition` oneof, each `Match` oneof (`keyword`/`integer`/`boolean`
//! → `value`, `keywords`/`integers` → `any`, `except_*` → `except`, `text`, `phrase`,
//! `text_any`), numeric ranges, datetime ranges (timestamps as RFC 3339 text), geo conditions,
//! `values_count`, `is_empty`/`is_null`, `has_id`, `nested` and `min_should`.
//!
//! An empty repeated field is no condition, as an absent list is in REST.

use grape_proto::prost_types::Timestamp;
use grape_proto::qdrant as pb;
use serde_json::{json, Map, Value};

use super::convert::{json_of_ids, malformed, rfc3339, unsupported, Converted};

/// The JSON of a filter.
pub fn json_of_filter(filter: pb::Filter) -> Converted<Value> {
    let mut out = Map::new();
    for (name, conditions) in [("must", filter.must), ("should", filter.should), ("must_not", filter.must_not)] {
        if !conditions.is_empty() {
            out.insert(name.to_string(), json_of_conditions(conditions)?);
        }
    }
    if let Some(min) = filter.min_should {
        out.insert("min_should".to_string(), json!({ "conditions": json_of_conditions(min.conditions)?, "min_count": min.min_count }));
    }
    Ok(Value::Object(out))
}

/// The JSON of an optional filter (`null`: none).
pub fn json_of_optional_filter(filter: Option<pb::Filter>) -> Converted<Value> {
    filter.map_or(Ok(Value::Null), json_of_filter)
}

fn json_of_conditions(conditions: Vec<pb::Condition>) -> Converted<Value> {
    conditions.into_iter().map(json_of_condition).collect::<Converted<Vec<_>>>().map(Value::Array)
}

fn json_of_condition(condition: pb::Condition) -> Converted<Value> {
    use pb::condition::ConditionOneOf as C;
    Ok(match condition.condition_one_of {
        Some(C::Field(field)) => json_of_field(field)?,
        Some(C::IsEmpty(c)) => json!({ "is_empty": { "key": c.key } }),
        Some(C::IsNull(c)) => json!({ "is_null": { "key": c.key } }),
        Some(C::HasId(c)) => json!({ "has_id": json_of_ids(c.has_id)? }),
        Some(C::Filter(f)) => json_of_filter(f)?,
        Some(C::Nested(n)) => json!({ "nested": { "key": n.key, "filter": json_of_optional_filter(n.filter)? } }),
        Some(C::HasVector(c)) => json!({ "has_vector": c.has_vector }),
        Some(C::Slice(_)) => return Err(unsupported("the slice condition")),
        None => return Err(malformed("a condition is empty")),
    })
}

fn json_of_field(field: pb::FieldCondition) -> Converted<Value> {
    let mut out = Map::new();
    let mut test = |name: &str, value: Value| {
        // A field condition carries one test; two would be merged away below, so refuse them
        // with the message the REST parser gives.
        if out.insert(name.to_string(), value).is_some() {
            return Err(malformed(&format!("the condition on \"{}\" has more than one test; use one per condition", field.key)));
        }
        Ok(())
    };
    if let Some(m) = field.r#match {
        test("match", json_of_match(m)?)?;
    }
    if let Some(r) = field.range {
        test("range", bounds(r.gt, r.gte, r.lt, r.lte))?;
    }
    if let Some(r) = field.datetime_range {
        let text = |t: Option<Timestamp>| t.map(rfc3339).transpose();
        test("range", bounds(text(r.gt)?, text(r.gte)?, text(r.lt)?, text(r.lte)?))?;
    }
    if let Some(b) = field.geo_bounding_box {
        test("geo_bounding_box", json!({ "top_left": geo_point(b.top_left), "bottom_right": geo_point(b.bottom_right) }))?;
    }
    if let Some(r) = field.geo_radius {
        test("geo_radius", json!({ "center": geo_point(r.center), "radius": f64::from(r.radius) }))?;
    }
    if let Some(p) = field.geo_polygon {
        test(
            "geo_polygon",
            json!({ "exterior": ring(p.exterior), "interiors": p.interiors.into_iter().map(|r| ring(Some(r))).collect::<Vec<_>>() }),
        )?;
    }
    if let Some(c) = field.values_count {
        test("values_count", bounds(c.gt, c.gte, c.lt, c.lte))?;
    }
    if let Some(b) = field.is_empty {
        test("is_empty", Value::Bool(b))?;
    }
    if let Some(b) = field.is_null {
        test("is_null", Value::Bool(b))?;
    }
    out.insert("key".to_string(), Value::String(field.key));
    Ok(Value::Object(out))
}

fn json_of_match(m: pb::Match) -> Converted<Value> {
    use pb::r#match::MatchValue as M;
    Ok(match m.match_value.ok_or_else(|| malformed("a match is empty"))? {
        M::Keyword(s) => json!({ "value": s }),
        M::Integer(i) => json!({ "value": i }),
        M::Boolean(b) => json!({ "value": b }),
        M::Text(s) => json!({ "text": s }),
        M::Phrase(s) => json!({ "phrase": s }),
        M::TextAny(s) => json!({ "text_any": s }),
        M::Keywords(k) => json!({ "any": k.strings }),
        M::Integers(i) => json!({ "any": i.integers }),
        M::ExceptKeywords(k) => json!({ "except": k.strings }),
        M::ExceptIntegers(i) => json!({ "except": i.integers }),
        M::Prefix(_) => return Err(unsupported("match prefix")),
    })
}

/// `{gt, gte, lt, lte}` with the bounds that are set.
fn bounds<T: Into<Value>>(gt: Option<T>, gte: Option<T>, lt: Option<T>, lte: Option<T>) -> Value {
    let set = [("gt", gt), ("gte", gte), ("lt", lt), ("lte", lte)];
    Value::Object(set.into_iter().filter_map(|(name, b)| b.map(|b| (name.to_string(), b.into()))).collect())
}

/// `{lat, lon}` (`null` when absent, which the REST parser refuses).
fn geo_point(point: Option<pb::GeoPoint>) -> Value {
    point.map_or(Value::Null, |p| json!({ "lat": p.lat, "lon": p.lon }))
}

/// `{points: [...]}` of a polygon ring.
fn ring(line: Option<pb::GeoLineString>) -> Value {
    json!({ "points": line.map(|l| l.points).unwrap_or_default().into_iter().map(|p| geo_point(Some(p))).collect::<Vec<_>>() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qdrant::condition::Filter;

    fn field(key: &str, set: impl FnOnce(&mut pb::FieldCondition)) -> pb::Condition {
        let mut f = pb::FieldCondition { key: key.to_string(), ..Default::default() };
        set(&mut f);
        pb::Condition { condition_one_of: Some(pb::condition::ConditionOneOf::Field(f)) }
    }

    #[test]
    fn filters_become_the_rest_json() {
        let keyword = pb::Match { match_value: Some(pb::r#match::MatchValue::Keyword("red".into())) };
        let at = |seconds| Some(Timestamp { seconds, nanos: 5 });
        let filter = pb::Filter {
            must: vec![
                field("color", |f| f.r#match = Some(keyword)),
                field("n", |f| f.range = Some(pb::Range { gte: Some(3.0), ..Default::default() })),
                field("ts", |f| f.datetime_range = Some(pb::DatetimeRange { lt: at(1_709_251_200), ..Default::default() })),
            ],
            must_not: vec![pb::Condition {
                condition_one_of: Some(pb::condition::ConditionOneOf::IsNull(pb::IsNullCondition { key: "x".into() })),
            }],
            ..Default::default()
        };
        let json = json_of_filter(filter).unwrap();
        assert_eq!(
            json,
            json!({"must": [{"key": "color", "match": {"value": "red"}}, {"key": "n", "range": {"gte": 3.0}},
                            {"key": "ts", "range": {"lt": "2024-03-01T00:00:00.000000005Z"}}],
                   "must_not": [{"is_null": {"key": "x"}}]})
        );
        assert!(Filter::parse(&json).unwrap().is_some());
        let two = field("n", |f| {
            f.range = Some(pb::Range::default());
            f.datetime_range = Some(pb::DatetimeRange::default());
        });
        assert!(json_of_filter(pb::Filter { must: vec![two], ..Default::default() }).is_err());
    }
}
