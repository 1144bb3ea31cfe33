//! Payload keys as Qdrant declares and aggregates them: `create_payload_index` (recorded in
//! the config, shown in the collection's `payload_schema`, and used by filters: the typed
//! columns of indexed keys, see [`crate::derived`]), facet counts, and scrolling in the order
//! of a payload key.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::compile::{to_sql, PayloadIndexes};
use super::condition::{parse_datetime, Filter};
use super::json_path::KeyPath;
use super::points::{PayloadSelector, VectorSelector, MAX_PAGE};
use super::reply::{Outcome, QdrantError};
use super::settings::INDEX_PREFIX;
use super::QdrantApi;
use crate::gateway::Page;

/// The payload index types Qdrant has.
const INDEX_TYPES: [&str; 8] = ["keyword", "integer", "float", "geo", "text", "bool", "datetime", "uuid"];

impl QdrantApi {
    /// `PUT /collections/{name}/index`: `{field_name, field_schema}` where the schema is a
    /// type name or `{"type": …, …}`.
    pub async fn create_payload_index(&self, name: &str, body: &Value) -> Outcome {
        let name = &self.resolve(name);
        let collection = self.collection(name)?;
        let field = body.get("field_name").and_then(Value::as_str).ok_or_else(|| QdrantError::wrong_input("an index needs `field_name`"))?;
        KeyPath::parse(field).map_err(QdrantError::wrong_input)?;
        let schema = body.get("field_schema").cloned().unwrap_or(Value::Null);
        let kind = schema.as_str().or_else(|| schema.get("type").and_then(Value::as_str)).unwrap_or("");
        if !INDEX_TYPES.contains(&kind) {
            return Err(QdrantError::wrong_input(format!("unknown payload index type `{kind}`: use one of {}", INDEX_TYPES.join(", "))));
        }
        self.put_config(vec![(format!("{INDEX_PREFIX}{name}/{field}"), kind.to_string())]).await?;
        Ok(json!({ "operation_id": collection.version, "status": "completed" }))
    }

    /// `DELETE /collections/{name}/index/{field}`.
    pub async fn delete_payload_index(&self, name: &str, field: &str) -> Outcome {
        let name = &self.resolve(name);
        let collection = self.collection(name)?;
        self.put_config(vec![(format!("{INDEX_PREFIX}{name}/{field}"), String::new())]).await?;
        Ok(json!({ "operation_id": collection.version, "status": "completed" }))
    }

    /// The derived columns of collection `name`'s payload indexes.
    pub fn payload_indexes(&self, name: &str) -> PayloadIndexes {
        payload_indexes(&self.gateway.meta.applied_catalog(), name)
    }

    /// The SQL text of a filter on collection `name` (checked first; conditions on indexed
    /// keys test their derived columns), `None` for no filter.
    pub fn filter_sql(&self, name: &str, filter: &Value) -> Result<Option<String>, QdrantError> {
        let bad = |e: String| QdrantError::BadRequest(format!("Format error in JSON body: invalid filter: {e}"));
        match Filter::parse(filter).map_err(bad)? {
            None => Ok(None),
            Some(_) => to_sql(filter, &self.payload_indexes(name)).map(Some).map_err(bad),
        }
    }

    /// The `payload_schema` of a collection: each indexed key with its type and how many points
    /// have a value there.
    pub async fn payload_schema(&self, name: &str) -> Result<Value, QdrantError> {
        let name = &self.resolve(name);
        let mut schema = Map::new();
        for (field, kind) in self.config_under(&format!("{INDEX_PREFIX}{name}/")) {
            let having = json!({ "must_not": [{ "is_empty": { "key": field } }] });
            let points = self.count(name, &json!({ "filter": having })).await?["count"].clone();
            schema.insert(field, json!({ "data_type": kind, "points": points }));
        }
        Ok(Value::Object(schema))
    }

    /// `POST /collections/{name}/facet`: the most frequent values of a key among the points
    /// passing the filter (each point counts a value once), by count, then value.
    pub async fn facet(&self, name: &str, body: &Value) -> Outcome {
        let name = &self.resolve(name);
        self.collection(name)?;
        let key = KeyPath::parse(body.get("key").and_then(Value::as_str).ok_or_else(|| QdrantError::wrong_input("a facet needs `key`"))?)
            .map_err(QdrantError::wrong_input)?;
        let limit = body.get("limit").and_then(Value::as_u64).unwrap_or(10) as usize;
        let filter = self.filter_sql(name, body.get("filter").unwrap_or(&Value::Null))?;
        let rows = self.read_points(name, None, Some(Page { filter, from: None, limit: None }), &VectorSelector::None).await?;
        let mut counts: HashMap<String, (Value, u64)> = HashMap::new();
        for payload in rows.payloads {
            let payload = Value::Object(payload);
            let mut seen = Vec::new();
            for v in key.values(&payload, true).unwrap_or_default() {
                if matches!(v, Value::String(_) | Value::Bool(_)) || v.as_i64().is_some() || v.as_u64().is_some() {
                    if !seen.contains(&v) {
                        seen.push(v);
                        counts.entry(v.to_string()).or_insert_with(|| (v.clone(), 0)).1 += 1;
                    }
                }
            }
        }
        let mut hits: Vec<(Value, u64)> = counts.into_values().collect();
        hits.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| facet_order(&a.0, &b.0)));
        let hits: Vec<Value> = hits.into_iter().take(limit).map(|(value, count)| json!({ "value": value, "count": count })).collect();
        Ok(json!({ "hits": hits }))
    }

    /// A scroll page in the order of a payload key (`order_by`): a point appears once per
    /// numeric or datetime value it has there; there is no next page offset (continue with
    /// `start_from`).
    pub async fn scroll_ordered(&self, name: &str, body: &Value, order_by: &Value) -> Outcome {
        let name = &self.resolve(name);
        let (key, direction, start) = match order_by {
            Value::String(k) => (k.as_str(), "asc", None),
            o => (
                o.get("key").and_then(Value::as_str).ok_or_else(|| QdrantError::wrong_input("order_by needs a key"))?,
                o.get("direction").and_then(Value::as_str).unwrap_or("asc"),
                o.get("start_from").and_then(order_value),
            ),
        };
        let desc = match direction {
            "asc" => false,
            "desc" => true,
            other => return Err(QdrantError::wrong_input(format!("order_by direction is asc or desc, not {other}"))),
        };
        let path = KeyPath::parse(key).map_err(QdrantError::wrong_input)?;
        let limit = body.get("limit").and_then(Value::as_u64).unwrap_or(10).min(MAX_PAGE as u64) as usize;
        let filter = self.filter_sql(name, body.get("filter").unwrap_or(&Value::Null))?;
        let selector = PayloadSelector::parse(body.get("with_payload"), true)?;
        let with_vector = VectorSelector::parse(body.get("with_vector").or(body.get("with_vectors")));
        let rows = self.read_points(name, None, Some(Page { filter, from: None, limit: None }), &with_vector).await?;
        let values: Vec<Vec<f64>> =
            rows.payloads.iter().map(|p| path.values(&Value::Object(p.clone()), true).unwrap_or_default().into_iter().filter_map(order_value).collect()).collect();
        let records = rows.records(&selector);
        let mut ordered: Vec<(f64, usize)> = values.iter().enumerate().flat_map(|(i, vs)| vs.iter().map(move |v| (*v, i))).collect();
        ordered.retain(|(v, _)| start.is_none_or(|s| if desc { *v <= s } else { *v >= s }));
        ordered.sort_by(|a, b| if desc { b.0.total_cmp(&a.0) } else { a.0.total_cmp(&b.0) });
        ordered.dedup();
        let points: Vec<Value> = ordered
            .into_iter()
            .take(limit)
            .map(|(v, i)| {
                let mut r = records[i].clone();
                r["order_value"] = if v.fract() == 0.0 && v.abs() < 9e15 { json!(v as i64) } else { json!(v) };
                r
            })
            .collect();
        Ok(json!({ "points": points, "next_page_offset": null }))
    }
}

/// The derived columns of the payload indexes of collection `name` in `catalog`'s config.
pub fn payload_indexes(catalog: &grape_meta::catalog::Catalog, name: &str) -> PayloadIndexes {
    let prefix = format!("{INDEX_PREFIX}{name}/");
    let indexes = catalog.config.list(&prefix).filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?, v.value.as_str())));
    PayloadIndexes::new(indexes)
}

/// The ordering value of a payload value: a number, or a datetime in microseconds.
fn order_value(v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_str().and_then(parse_datetime).map(|t| t as f64))
}

/// Facet values of equal count: numbers by value, strings by text, and kinds in a fixed order.
fn facet_order(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64().unwrap_or(0.0).total_cmp(&y.as_f64().unwrap_or(0.0)),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => a.to_string().cmp(&b.to_string()),
    }
}
