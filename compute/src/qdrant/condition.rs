//! Qdrant's filter language: parsed from its JSON with errors that name the wrong part, and
//! evaluated on one point's payload with the semantics of Qdrant's reference implementation
//! (a condition on a key matches when any value the key reaches matches).

use serde_json::{Map, Value};

use super::ids::PointId;
use super::json_path::KeyPath;

/// A boolean combination of conditions (`must` all, `must_not` none, `should` at least one,
/// `min_should` at least `min_count`).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Every one must match.
    pub must: Option<Vec<Condition>>,
    /// At least one must match (an empty list is no condition).
    pub should: Option<Vec<Condition>>,
    /// None may match.
    pub must_not: Option<Vec<Condition>>,
    /// At least `.1` of `.0` must match.
    pub min_should: Option<(Vec<Condition>, usize)>,
}

/// One condition of a filter.
#[derive(Debug, Clone)]
pub enum Condition {
    /// A test of the values a payload key reaches.
    Field(FieldCondition),
    /// The key is missing, null, or an empty array.
    IsEmpty(KeyPath),
    /// The key holds null.
    IsNull(KeyPath),
    /// The point's id is one of these.
    HasId(Vec<PointId>),
    /// The point has this named vector (every point has the collection's vector).
    HasVector(String),
    /// Some element of the array at the key matches the filter on its own.
    Nested(KeyPath, Box<Filter>),
    /// A sub-filter.
    Filter(Box<Filter>),
}

/// A test of the values one payload key reaches.
#[derive(Debug, Clone)]
pub struct FieldCondition {
    /// The key.
    pub key: KeyPath,
    /// What its values are tested with.
    pub test: FieldTest,
}

/// What a field condition tests.
#[derive(Debug, Clone)]
pub enum FieldTest {
    /// Equals this value (string, integer or bool).
    Value(Value),
    /// Equals one of these.
    Any(Vec<Value>),
    /// Equals none of these.
    Except(Vec<Value>),
    /// A string containing every word of this text (whole words, case-insensitive).
    Text(String),
    /// A string containing any of these words (whole words, case-insensitive).
    TextAny(Vec<String>),
    /// A number within the bounds.
    Range(Bounds),
    /// A datetime string within the bounds (microseconds since the epoch).
    DatetimeRange(Bounds),
    /// A `{lat, lon}` inside the box (top-left and bottom-right corners).
    GeoBox {
        /// `(lat, lon)` of the north-west corner.
        top_left: (f64, f64),
        /// `(lat, lon)` of the south-east corner.
        bottom_right: (f64, f64),
    },
    /// A `{lat, lon}` within `radius` metres of `center`.
    GeoRadius {
        /// `(lat, lon)` of the centre.
        center: (f64, f64),
        /// Metres.
        radius: f64,
    },
    /// A `{lat, lon}` inside the exterior ring and outside every interior ring.
    GeoPolygon {
        /// `(lat, lon)` points of the outer ring.
        exterior: Vec<(f64, f64)>,
        /// Rings of the holes.
        interiors: Vec<Vec<(f64, f64)>>,
    },
    /// The number of values is within the bounds.
    ValuesCount(Bounds),
    /// `is_empty: true|false` inside a field condition.
    IsEmpty(bool),
    /// `is_null: true|false` inside a field condition.
    IsNull(bool),
}

/// Optional lower and upper bounds, strict or not.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bounds {
    /// Greater than.
    pub gt: Option<f64>,
    /// Greater than or equal.
    pub gte: Option<f64>,
    /// Less than.
    pub lt: Option<f64>,
    /// Less than or equal.
    pub lte: Option<f64>,
}

impl Bounds {
    /// Whether `x` is within every bound.
    pub fn contains(&self, x: f64) -> bool {
        self.gt.is_none_or(|b| x > b) && self.gte.is_none_or(|b| x >= b) && self.lt.is_none_or(|b| x < b) && self.lte.is_none_or(|b| x <= b)
    }
}

/// Mean Earth radius in metres (IUGG), as Qdrant uses for geo distances.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

impl Filter {
    /// Parses a filter object; `null` is no filter.
    pub fn parse(value: &Value) -> Result<Option<Filter>, String> {
        match value {
            Value::Null => Ok(None),
            Value::Object(map) => parse_filter(map).map(Some),
            other => Err(format!("a filter is an object, got {other}")),
        }
    }

    /// Whether a point with `id` and `payload` matches.
    pub fn matches(&self, id: Option<&PointId>, payload: &Value) -> bool {
        let check = |c: &Condition| c.matches(id, payload);
        self.must.as_ref().is_none_or(|cs| cs.iter().all(check))
            && self.must_not.as_ref().is_none_or(|cs| !cs.iter().any(check))
            && self.should.as_ref().is_none_or(|cs| cs.is_empty() || cs.iter().any(check))
            && self.min_should.as_ref().is_none_or(|(cs, n)| cs.iter().filter(|c| check(c)).count() >= *n)
    }
}

impl Condition {
    /// Whether a point with `id` (unknown inside `nested`) and `payload` matches.
    pub fn matches(&self, id: Option<&PointId>, payload: &Value) -> bool {
        match self {
            Condition::Field(f) => f.matches(payload),
            Condition::IsEmpty(key) => {
                key.values(payload, false).is_none_or(|vs| vs.iter().all(|v| v.is_null() || v.as_array().is_some_and(Vec::is_empty)))
            }
            Condition::IsNull(key) => key
                .values(payload, false)
                .is_some_and(|vs| vs.iter().any(|v| v.is_null() || v.as_array().is_some_and(|a| a.iter().any(Value::is_null)))),
            Condition::HasId(ids) => id.is_some_and(|id| ids.contains(id)),
            Condition::HasVector(_) => true,
            Condition::Nested(key, filter) => key.values(payload, true).is_some_and(|vs| vs.iter().any(|v| filter.matches(None, v))),
            Condition::Filter(f) => f.matches(id, payload),
        }
    }
}

impl FieldCondition {
    /// Whether the values of the key in `payload` pass the test.
    pub fn matches(&self, payload: &Value) -> bool {
        let test = &self.test;
        match test {
            FieldTest::ValuesCount(bounds) => {
                let values = self.key.values(payload, false).unwrap_or_default();
                let counts: Vec<usize> = if values.iter().all(|v| v.is_null()) {
                    vec![0]
                } else {
                    values.iter().map(|v| if v.is_null() { 0 } else { v.as_array().map_or(1, Vec::len) }).collect()
                };
                counts.iter().any(|&c| bounds.contains(c as f64))
            }
            FieldTest::IsEmpty(want) => Condition::IsEmpty(self.key.clone()).matches(None, payload) == *want,
            FieldTest::IsNull(want) => Condition::IsNull(self.key.clone()).matches(None, payload) == *want,
            _ => self.key.values(payload, true).is_some_and(|vs| vs.iter().any(|v| test.matches_value(v))),
        }
    }
}

impl FieldTest {
    /// Whether one value passes (for the tests that look at values one by one).
    fn matches_value(&self, v: &Value) -> bool {
        match self {
            FieldTest::Value(want) => json_eq(v, want),
            FieldTest::Any(list) => list.iter().any(|w| json_eq(v, w)),
            FieldTest::Except(list) => !v.is_null() && !list.iter().any(|w| json_eq(v, w)),
            FieldTest::Text(text) => v.as_str().is_some_and(|s| {
                let words = tokens(s);
                tokens(text).iter().all(|t| words.contains(t))
            }),
            FieldTest::TextAny(any) => v.as_str().is_some_and(|s| {
                let words = tokens(s);
                any.iter().flat_map(|w| tokens(w)).any(|t| words.contains(&t))
            }),
            FieldTest::Range(b) => v.as_f64().is_some_and(|x| b.contains(x)),
            FieldTest::DatetimeRange(b) => v.as_str().and_then(parse_datetime).is_some_and(|t| b.contains(t as f64)),
            FieldTest::GeoBox { top_left, bottom_right } => geo_point(v).is_some_and(|(lat, lon)| {
                let lon_ok = if top_left.1 > bottom_right.1 {
                    lon > top_left.1 || lon < bottom_right.1
                } else {
                    top_left.1 < lon && lon < bottom_right.1
                };
                lon_ok && top_left.0 > lat && lat > bottom_right.0
            }),
            FieldTest::GeoRadius { center, radius } => geo_point(v).is_some_and(|p| geo_distance(p, *center) < *radius),
            FieldTest::GeoPolygon { exterior, interiors } => geo_point(v)
                .is_some_and(|p| in_ring(p, exterior, true) && !interiors.iter().any(|ring| in_ring(p, ring, false))),
            FieldTest::ValuesCount(_) | FieldTest::IsEmpty(_) | FieldTest::IsNull(_) => false,
        }
    }
}

/// Equality of payload values as Qdrant compares them: strictly typed (an integer never
/// equals a float or a bool).
fn json_eq(a: &Value, b: &Value) -> bool {
    a == b
}

/// The lowercase words of a text, as full-text matching compares them (a word is a run of
/// letters and digits).
fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// `{lat, lon}` of a geo value.
fn geo_point(v: &Value) -> Option<(f64, f64)> {
    Some((v.get("lat")?.as_f64()?, v.get("lon")?.as_f64()?))
}

/// Haversine distance in metres between two `(lat, lon)` points.
fn geo_distance(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lon1, lat2, lon2) = (a.0.to_radians(), a.1.to_radians(), b.0.to_radians(), b.1.to_radians());
    let h = ((lat2 - lat1) / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().asin()
}

/// Whether `(lat, lon)` is inside `ring` (crossing count); a point on the boundary counts as
/// inside when `boundary_inside`.
fn in_ring(p: (f64, f64), ring: &[(f64, f64)], boundary_inside: bool) -> bool {
    let (y, x) = p;
    let mut ring = ring.to_vec();
    if ring.len() > 1 && ring.first() == ring.last() {
        ring.pop();
    }
    let mut inside = false;
    let n = ring.len();
    for i in 0..n {
        let (yi, xi) = ring[i];
        let (yj, xj) = ring[(i + n - 1) % n];
        let on_edge = (y - yi) * (xj - xi) == (x - xi) * (yj - yi)
            && (xi - x) * (xj - x) <= 0.0
            && (yi - y) * (yj - y) <= 0.0;
        if on_edge {
            return boundary_inside;
        }
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
    }
    inside
}

/// Microseconds since the epoch of a datetime in one of the forms Qdrant accepts
/// (RFC 3339, a space instead of `T`, no zone meaning UTC, a bare date).
pub fn parse_datetime(text: &str) -> Option<i64> {
    let nanos = arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(text.trim())
        .or_else(|_| arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(&format!("{}:00", text.trim())))
        .ok()?;
    Some(nanos.div_euclid(1000))
}

fn parse_filter(map: &Map<String, Value>) -> Result<Filter, String> {
    let mut filter = Filter::default();
    for (key, value) in map {
        match key.as_str() {
            "must" => filter.must = parse_conditions(value)?,
            "should" => filter.should = parse_conditions(value)?,
            "must_not" => filter.must_not = parse_conditions(value)?,
            "min_should" => {
                if value.is_null() {
                    continue;
                }
                let conditions = parse_conditions(value.get("conditions").unwrap_or(&Value::Null))?.unwrap_or_default();
                let count = value.get("min_count").and_then(Value::as_u64).ok_or("min_should needs a min_count")?;
                filter.min_should = Some((conditions, count as usize));
            }
            other => return Err(format!("unknown filter field \"{other}\" (use must, should, must_not, min_should)")),
        }
    }
    Ok(filter)
}

/// A condition or a list of them (`null`: absent).
fn parse_conditions(value: &Value) -> Result<Option<Vec<Condition>>, String> {
    match value {
        Value::Null => Ok(None),
        Value::Array(items) => items.iter().map(parse_condition).collect::<Result<_, _>>().map(Some),
        one => Ok(Some(vec![parse_condition(one)?])),
    }
}

/// Parses one condition of a filter.
pub(super) fn parse_condition(value: &Value) -> Result<Condition, String> {
    let map = value.as_object().ok_or_else(|| format!("a condition is an object, got {value}"))?;
    let key_of = |v: &Value| -> Result<KeyPath, String> {
        KeyPath::parse(v.get("key").and_then(Value::as_str).ok_or_else(|| format!("a condition needs a key: {v}"))?)
    };
    if map.contains_key("key") {
        return parse_field(map).map(Condition::Field);
    }
    if let Some(v) = map.get("is_empty") {
        return Ok(Condition::IsEmpty(key_of(v)?));
    }
    if let Some(v) = map.get("is_null") {
        return Ok(Condition::IsNull(key_of(v)?));
    }
    if let Some(v) = map.get("has_id") {
        let ids = v.as_array().ok_or("has_id is a list of ids")?;
        return ids.iter().map(PointId::from_json).collect::<Result<_, _>>().map(Condition::HasId);
    }
    if let Some(v) = map.get("has_vector") {
        return Ok(Condition::HasVector(v.as_str().ok_or("has_vector names a vector")?.to_string()));
    }
    if let Some(v) = map.get("nested") {
        let filter = v.get("filter").and_then(Value::as_object).ok_or("nested needs a filter")?;
        return Ok(Condition::Nested(key_of(v)?, Box::new(parse_filter(filter)?)));
    }
    parse_filter(map).map(|f| Condition::Filter(Box::new(f)))
}

fn parse_field(map: &Map<String, Value>) -> Result<FieldCondition, String> {
    let key = KeyPath::parse(map.get("key").and_then(Value::as_str).ok_or("key must be a string")?)?;
    let mut tests = Vec::new();
    for (name, value) in map {
        if value.is_null() || name == "key" {
            continue;
        }
        tests.push(match name.as_str() {
            "match" => parse_match(value)?,
            "range" => parse_range(value)?,
            "geo_bounding_box" => FieldTest::GeoBox {
                top_left: lat_lon(value.get("top_left"))?,
                bottom_right: lat_lon(value.get("bottom_right"))?,
            },
            "geo_radius" => FieldTest::GeoRadius {
                center: lat_lon(value.get("center"))?,
                radius: value.get("radius").and_then(Value::as_f64).ok_or("geo_radius needs a radius in metres")?,
            },
            "geo_polygon" => FieldTest::GeoPolygon {
                exterior: ring(value.get("exterior"))?,
                interiors: match value.get("interiors") {
                    Some(Value::Array(rings)) => rings.iter().map(|r| ring(Some(r))).collect::<Result<_, _>>()?,
                    _ => Vec::new(),
                },
            },
            "values_count" => FieldTest::ValuesCount(bounds(value, |v| v.as_f64())?),
            "is_empty" => FieldTest::IsEmpty(value.as_bool().ok_or("is_empty is true or false")?),
            "is_null" => FieldTest::IsNull(value.as_bool().ok_or("is_null is true or false")?),
            other => return Err(format!("unknown field condition \"{other}\"")),
        });
    }
    match (tests.pop(), tests.is_empty()) {
        (Some(test), true) => Ok(FieldCondition { key, test }),
        (None, _) => Err(format!("the condition on \"{}\" tests nothing (add match, range, …)", display_key(map))),
        (Some(_), false) => Err(format!("the condition on \"{}\" has more than one test; use one per condition", display_key(map))),
    }
}

fn display_key(map: &Map<String, Value>) -> &str {
    map.get("key").and_then(Value::as_str).unwrap_or("")
}

fn parse_match(value: &Value) -> Result<FieldTest, String> {
    let scalar = |v: &Value| -> Result<Value, String> {
        match v {
            Value::String(_) | Value::Bool(_) => Ok(v.clone()),
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(v.clone()),
            other => Err(format!("match compares with a string, an integer or a bool, got {other}")),
        }
    };
    let list = |v: &Value| -> Result<Vec<Value>, String> {
        v.as_array().ok_or_else(|| format!("expected a list, got {v}"))?.iter().map(scalar).collect()
    };
    if let Some(v) = value.get("value") {
        return Ok(FieldTest::Value(scalar(v)?));
    }
    if let Some(v) = value.get("any") {
        return Ok(FieldTest::Any(list(v)?));
    }
    if let Some(v) = value.get("except") {
        return Ok(FieldTest::Except(list(v)?));
    }
    if let Some(v) = value.get("text").or_else(|| value.get("phrase")) {
        return Ok(FieldTest::Text(v.as_str().ok_or("match text is a string")?.to_string()));
    }
    if let Some(v) = value.get("text_any") {
        return Ok(FieldTest::TextAny(v.as_str().ok_or("match text_any is a string")?.split_whitespace().map(String::from).collect()));
    }
    Err(format!("unknown match {value}: use value, any, except, text or text_any"))
}

/// A numeric range, or a datetime range when any bound is a string.
fn parse_range(value: &Value) -> Result<FieldTest, String> {
    let obj = value.as_object().ok_or("range is an object")?;
    if obj.values().any(Value::is_string) {
        let b = bounds(value, |v| v.as_str().and_then(parse_datetime).map(|t| t as f64))?;
        return Ok(FieldTest::DatetimeRange(b));
    }
    Ok(FieldTest::Range(bounds(value, Value::as_f64)?))
}

/// The `gt`/`gte`/`lt`/`lte` of an object, each read by `read`.
fn bounds(value: &Value, read: impl Fn(&Value) -> Option<f64>) -> Result<Bounds, String> {
    let obj = value.as_object().ok_or("a range is an object")?;
    let mut b = Bounds::default();
    for (name, v) in obj {
        if v.is_null() {
            continue;
        }
        let x = read(v).ok_or_else(|| format!("range bound {name} has a value of the wrong type: {v}"))?;
        match name.as_str() {
            "gt" => b.gt = Some(x),
            "gte" => b.gte = Some(x),
            "lt" => b.lt = Some(x),
            "lte" => b.lte = Some(x),
            other => return Err(format!("unknown range bound \"{other}\" (use gt, gte, lt, lte)")),
        }
    }
    Ok(b)
}

fn lat_lon(v: Option<&Value>) -> Result<(f64, f64), String> {
    v.and_then(geo_point).ok_or_else(|| "a geo point is {\"lat\": …, \"lon\": …}".to_string())
}

fn ring(v: Option<&Value>) -> Result<Vec<(f64, f64)>, String> {
    let points = v.and_then(|r| r.get("points")).and_then(Value::as_array).ok_or("a polygon ring is {\"points\": [...]}")?;
    points.iter().map(|p| lat_lon(Some(p))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(filter: Value, payload: Value) -> bool {
        Filter::parse(&filter).unwrap().unwrap().matches(Some(&PointId::Num(7)), &payload)
    }

    #[test]
    fn matches_like_the_reference() {
        let p = json!({"color": "red", "n": 3, "tags": ["a", "b"], "city": {"name": "Oslo"}, "x": null, "e": [],
                       "when": "2024-01-02T03:04:05Z", "loc": {"lat": 52.52, "lon": 13.40},
                       "items": [{"k": 1, "v": "x"}, {"k": 2, "v": "y"}]});
        let yes = [
            json!({"must": [{"key": "color", "match": {"value": "red"}}]}),
            json!({"must": {"key": "n", "range": {"gte": 3, "lt": 4}}}),
            json!({"must": [{"key": "tags", "match": {"any": ["b", "z"]}}]}),
            json!({"must": [{"key": "tags", "match": {"except": ["a"]}}]}),
            json!({"must": [{"key": "city.name", "match": {"text": "OSLO"}}]}),
            json!({"must": [{"is_null": {"key": "x"}}, {"is_empty": {"key": "e"}}, {"is_empty": {"key": "nope"}}]}),
            json!({"must": [{"key": "tags", "values_count": {"gte": 2}}]}),
            json!({"must": [{"key": "when", "range": {"gt": "2024-01-01", "lt": "2024-01-03T00:00:00+00:00"}}]}),
            json!({"must": [{"key": "loc", "geo_radius": {"center": {"lat": 52.5, "lon": 13.4}, "radius": 5000.0}}]}),
            json!({"must": [{"key": "loc", "geo_bounding_box": {"top_left": {"lat": 53, "lon": 13}, "bottom_right": {"lat": 52, "lon": 14}}}]}),
            json!({"must": [{"key": "loc", "geo_polygon": {"exterior": {"points": [
                {"lat": 52, "lon": 13}, {"lat": 53, "lon": 13}, {"lat": 53, "lon": 14}, {"lat": 52, "lon": 14}, {"lat": 52, "lon": 13}]}}}]}),
            json!({"should": [{"key": "n", "match": {"value": 1}}, {"has_id": [7]}]}),
            json!({"must_not": [{"key": "color", "match": {"value": "blue"}}]}),
            json!({"min_should": {"conditions": [{"has_id": [7]}, {"key": "n", "match": {"value": 3}}, {"is_empty": {"key": "n"}}], "min_count": 2}}),
            json!({"must": [{"nested": {"key": "items", "filter": {"must": [{"key": "k", "match": {"value": 2}}, {"key": "v", "match": {"value": "y"}}]}}}]}),
            json!({"must": [{"key": "items[].k", "match": {"value": 2}}]}),
        ];
        for f in yes {
            assert!(check(f.clone(), p.clone()), "{f}");
        }
        let no = [
            json!({"must": [{"key": "color", "match": {"value": "blue"}}]}),
            json!({"must": [{"key": "city.name", "match": {"text": "sl"}}]}),
            json!({"must": [{"key": "missing", "match": {"except": ["a"]}}]}),
            json!({"must": [{"key": "x", "match": {"except": ["a"]}}]}),
            json!({"must": [{"is_null": {"key": "missing"}}]}),
            json!({"must": [{"nested": {"key": "items", "filter": {"must": [{"key": "k", "match": {"value": 1}}, {"key": "v", "match": {"value": "y"}}]}}}]}),
            json!({"must": [{"key": "n", "range": {"gt": 3}}]}),
        ];
        for f in no {
            assert!(!check(f.clone(), p.clone()), "{f}");
        }
    }

    #[test]
    fn rejects_malformed_filters() {
        for bad in [
            json!([]),
            json!({"musts": []}),
            json!({"must": [{"key": "a"}]}),
            json!({"must": [{"key": "a", "match": {"value": 1.5}}]}),
            json!({"must": [{"key": "a", "range": {"gt": "not a date"}}]}),
            json!({"must": [{"key": "a..b", "match": {"value": 1}}]}),
            json!({"must": [{"has_id": [-1]}]}),
        ] {
            assert!(Filter::parse(&bad).is_err(), "{bad}");
        }
    }
}
