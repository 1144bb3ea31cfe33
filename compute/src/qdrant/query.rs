//! Qdrant's search endpoints over Grape's k-NN search: the universal `query` (nearest by
//! vector or by point id, recommend by averaging examples, or no query: points in id order),
//! its batch form, and the older `search` and `recommend` with theirs.
//!
//! Scores are reported as Qdrant does: cosine similarity and dot product (higher first), and
//! the Euclidean and Manhattan distances (lower first), converted from Grape's distances.

use grape_meta::catalog::{Metric, VectorField};
use grape_proto::v1;
use serde_json::{json, Value};

use super::ids::PointId;
use super::points::{checked_vector, normalised, parse_id, using_field, vector_of, PayloadSelector, Rows, VectorSelector};
use super::reply::QdrantError;
use super::QdrantApi;
use crate::gateway::Page;
use crate::limits::RequestClass::Search;
use crate::search::MAX_K;

/// A nearest-neighbour search as the endpoints share it.
#[derive(Debug, Clone)]
struct Nearest {
    /// The vector field searched.
    field: VectorField,
    /// What is searched for.
    target: Target,
    /// Points never returned (the examples named by id).
    exclude: Vec<PointId>,
    /// The filter's SQL text.
    filter: Option<String>,
    /// Hits returned at most.
    limit: usize,
    /// Best hits skipped first.
    offset: usize,
    /// Hits past this score are left out (below it for similarities, above for distances).
    threshold: Option<f32>,
    /// `hnsw_ef`, `exact` and `oversampling`.
    params: (Option<u32>, bool, Option<f32>),
    /// Which payload keys to show.
    payload: PayloadSelector,
    /// Which vectors to show.
    with_vector: VectorSelector,
}

/// What a search ranks points by.
#[derive(Debug, Clone)]
enum Target {
    /// Closeness to a vector.
    Vector(Vec<f32>),
    /// Qdrant's best-score recommendation: the best similarity to a positive example if it
    /// beats the best to a negative one (squashed into (0.5, 1)), else minus the squashed best
    /// negative. Every point passing the filter is scored.
    BestScore(Vec<Vec<f32>>, Vec<Vec<f32>>),
}

/// What a query asks for.
enum Wanted {
    /// The points best ranked by a target (examples named by id are excluded).
    Nearest(Target, Vec<PointId>),
    /// No query: points in id order, score 1.
    Scroll,
}

impl QdrantApi {
    /// `POST /collections/{name}/points/query`: `{"points": [ScoredPoint]}`.
    pub async fn query(&self, name: &str, body: &Value) -> Result<Value, QdrantError> {
        let name = &self.resolve(name);
        Ok(json!({ "points": self.query_points(name, body).await? }))
    }

    /// The scored points of one query request.
    pub(super) async fn query_points(&self, name: &str, body: &Value) -> Result<Vec<Value>, QdrantError> {
        let collection = self.collection(name)?;
        if let Some(prefetch) = body.get("prefetch").filter(|p| !p.is_null()) {
            return self.query_with_prefetch(name, body, prefetch).await;
        }
        let (limit, offset) = limit_offset(body)?;
        let filter = self.filter_sql(name, body.get("filter").unwrap_or(&Value::Null))?;
        let payload = PayloadSelector::parse(body.get("with_payload"), false)?;
        let with_vector = VectorSelector::parse(body.get("with_vector"));
        // The field matters only when there is a query: a scroll of a collection with named
        // vectors names none.
        let query = body.get("query").filter(|q| !q.is_null());
        let field = match query {
            Some(_) => Some(using_field(&collection.spec, body.get("using"))?),
            None => None,
        };
        let wanted = match (query, &field) {
            (Some(q), Some(field)) => self.resolve_query(name, field, q).await?,
            _ => Wanted::Scroll,
        };
        let (target, exclude) = match wanted {
            Wanted::Scroll => {
                let page = Page { filter, from: None, limit: Some(limit + offset) };
                let rows = self.read_points(name, None, Some(page), &with_vector).await?;
                return Ok(rows.records(&payload).into_iter().skip(offset).map(|mut r| {
                    r["score"] = json!(1.0);
                    r["version"] = json!(0);
                    r
                }).collect());
            }
            Wanted::Nearest(target, exclude) => (target, exclude),
        };
        let field = field.ok_or_else(|| QdrantError::wrong_input("a search needs a vector field"))?;
        let params = search_params(body.get("params"))?;
        let threshold = body.get("score_threshold").and_then(Value::as_f64).map(|t| t as f32);
        let query = Nearest { field, target, exclude, filter, limit, offset, threshold, params, payload, with_vector };
        self.nearest(name, query).await
    }

    /// `POST /collections/{name}/points/query/batch`: one result per search.
    pub async fn query_batch(&self, name: &str, body: &Value) -> Result<Value, QdrantError> {
        let name = &self.resolve(name);
        let mut out = Vec::new();
        for search in searches(body)? {
            out.push(self.query(name, search).await?);
        }
        Ok(Value::Array(out))
    }

    /// `POST /collections/{name}/points/search` (the older API): a list of scored points.
    pub async fn search(&self, name: &str, body: &Value) -> Result<Value, QdrantError> {
        let name = &self.resolve(name);
        let collection = self.collection(name)?;
        let raw = body.get("vector").ok_or_else(|| QdrantError::wrong_input("a search needs a `vector`"))?;
        // A named vector is `{"name": …, "vector": [...]}`.
        let (field, raw) = match raw.get("name") {
            Some(n) => (using_field(&collection.spec, Some(n))?, raw.get("vector").unwrap_or(&Value::Null)),
            None => (using_field(&collection.spec, None)?, raw),
        };
        let vector = checked_vector(&collection.spec, &field, vector_of(raw)?, true)?;
        let query = self.nearest_of(name, body, field, Target::Vector(vector), Vec::new())?;
        Ok(Value::Array(self.nearest(name, query).await?))
    }

    /// `POST /collections/{name}/points/recommend` (the older API).
    pub async fn recommend(&self, name: &str, body: &Value) -> Result<Value, QdrantError> {
        let name = &self.resolve(name);
        let collection = self.collection(name)?;
        let field = using_field(&collection.spec, body.get("using"))?;
        let Wanted::Nearest(target, exclude) = self.recommend_vector(name, &field, body).await? else {
            return Ok(json!([]));
        };
        let query = self.nearest_of(name, body, field, target, exclude)?;
        Ok(Value::Array(self.nearest(name, query).await?))
    }

    /// The batch forms of `search` and `recommend`.
    pub async fn search_batch(&self, name: &str, body: &Value, recommend: bool) -> Result<Value, QdrantError> {
        let name = &self.resolve(name);
        let mut out = Vec::new();
        for search in searches(body)? {
            out.push(if recommend { self.recommend(name, search).await? } else { self.search(name, search).await? });
        }
        Ok(Value::Array(out))
    }

    /// The parameters of an older-API search around `vector`.
    fn nearest_of(&self, name: &str, body: &Value, field: VectorField, target: Target, exclude: Vec<PointId>) -> Result<Nearest, QdrantError> {
        let (limit, offset) = limit_offset(body)?;
        Ok(Nearest {
            field,
            target,
            exclude,
            filter: self.filter_sql(name, body.get("filter").unwrap_or(&Value::Null))?,
            limit,
            offset,
            threshold: body.get("score_threshold").and_then(Value::as_f64).map(|t| t as f32),
            params: search_params(body.get("params"))?,
            payload: PayloadSelector::parse(body.get("with_payload"), false)?,
            with_vector: VectorSelector::parse(body.get("with_vector")),
        })
    }

    /// What a `query` value asks for: a vector, a point id, `{"nearest": …}` or
    /// `{"recommend": …}`.
    async fn resolve_query(&self, name: &str, field: &VectorField, q: &Value) -> Result<Wanted, QdrantError> {
        let spec = self.collection(name)?.spec;
        match q {
            Value::Array(_) => Ok(Wanted::Nearest(Target::Vector(checked_vector(&spec, field, vector_of(q)?, true)?), Vec::new())),
            Value::Number(_) | Value::String(_) => {
                let id = parse_id(q)?;
                let vector = self.point_vectors(name, field, std::slice::from_ref(&id)).await?.remove(0);
                Ok(Wanted::Nearest(Target::Vector(vector), vec![id]))
            }
            Value::Object(o) if o.contains_key("nearest") => Box::pin(self.resolve_query(name, field, &o["nearest"])).await,
            Value::Object(o) if o.contains_key("recommend") => self.recommend_vector(name, field, &o["recommend"]).await,
            other => Err(QdrantError::wrong_input(format!(
                "this query is not supported by Grape yet (nearest, point id and recommend are): {}",
                abbreviate(other)
            ))),
        }
    }

    /// The recommendation query of `{positive, negative, strategy}`: with `average_vector`
    /// (the default) the vector `2 · mean(positive) − mean(negative)` (`mean(positive)` without
    /// negatives), with `best_score` the examples themselves.
    async fn recommend_vector(&self, name: &str, field: &VectorField, body: &Value) -> Result<Wanted, QdrantError> {
        let spec = self.collection(name)?.spec;
        let best_score = match body.get("strategy").and_then(Value::as_str) {
            None | Some("average_vector") => false,
            Some("best_score") => true,
            Some(other) => {
                return Err(QdrantError::wrong_input(format!(
                    "the recommend strategy {other} is not supported by Grape yet (average_vector and best_score are)"
                )))
            }
        };
        let mut exclude = Vec::new();
        let mut examples = |key: &str| -> Result<(Vec<PointId>, Vec<Vec<f32>>), QdrantError> {
            let mut ids = Vec::new();
            let mut vectors = Vec::new();
            for example in body.get(key).and_then(Value::as_array).into_iter().flatten() {
                match example {
                    Value::Number(_) | Value::String(_) => ids.push(parse_id(example)?),
                    // Given vectors are averaged as they are (stored ones are normalised already).
                    v => vectors.push(checked_vector(&spec, field, vector_of(v)?, false)?),
                }
            }
            exclude.extend(ids.iter().cloned());
            Ok((ids, vectors))
        };
        let (pos_ids, mut positive) = examples("positive")?;
        let (neg_ids, mut negative) = examples("negative")?;
        positive.extend(self.point_vectors(name, field, &pos_ids).await?);
        negative.extend(self.point_vectors(name, field, &neg_ids).await?);
        if best_score {
            if positive.is_empty() && negative.is_empty() {
                return Err(QdrantError::wrong_input("a recommendation needs examples"));
            }
            return Ok(Wanted::Nearest(Target::BestScore(positive, negative), exclude));
        }
        if positive.is_empty() {
            return Err(QdrantError::wrong_input("No positive examples given with 'average_vector' strategy"));
        }
        let mean_pos = mean(&positive);
        let vector = if negative.is_empty() {
            mean_pos
        } else {
            let mean_neg = mean(&negative);
            mean_pos.iter().zip(&mean_neg).map(|(p, n)| p + p - n).collect()
        };
        let vector = if field.metric == Metric::Cosine { normalised(vector) } else { vector };
        Ok(Wanted::Nearest(Target::Vector(vector), exclude))
    }

    /// The stored vectors of field `field` of `ids`, in order; 404 for a missing one.
    async fn point_vectors(&self, name: &str, field: &VectorField, ids: &[PointId]) -> Result<Vec<Vec<f32>>, QdrantError> {
        let rows: Rows = self.read_points(name, Some(ids), None, &VectorSelector::All).await?;
        let vectors = rows.vector(&field.name).unwrap_or_default();
        let found: std::collections::HashMap<&PointId, &Vec<f32>> = rows.ids.iter().zip(vectors).collect();
        ids.iter()
            .map(|id| found.get(id).map(|v| (*v).clone()).ok_or_else(|| QdrantError::NotFound(format!("Not found: No point with id {} found", id.key()))))
            .collect()
    }

    /// Runs a nearest-neighbour search and shapes its hits as Qdrant's scored points.
    async fn nearest(&self, name: &str, q: Nearest) -> Result<Vec<Value>, QdrantError> {
        let metric = q.field.metric;
        let vector = match &q.target {
            Target::Vector(v) => v.clone(),
            Target::BestScore(positive, negative) => return self.best_score(name, positive, negative, &q).await,
        };
        let spec = self.collection(name)?.spec;
        let wanted = q.limit + q.offset;
        if wanted > MAX_K {
            return Err(QdrantError::wrong_input(format!("limit + offset is {wanted}; at most {MAX_K} hits can be asked for")));
        }
        // Room for the examples named by id, which are left out of the hits, within the
        // engine's limit (a grouped search asks for up to MAX_K candidates).
        let k = (wanted + q.exclude.len()).min(MAX_K);
        let req = v1::SearchRequest {
            collection: name.to_string(),
            vector,
            k: k as u32,
            filter: q.filter.unwrap_or_default(),
            include_vectors: q.with_vector.wanted(),
            ef: q.params.0,
            exact: q.params.1,
            oversampling: q.params.2,
            // Requests of collections without named vectors stay as they were.
            vector_name: spec.request_name(&q.field).to_string(),
            ..Default::default()
        };
        let gateway = &self.gateway;
        let answer = gateway.guarded(Search, gateway.search_hits(req)).await?;
        let batches = [answer.hits];
        let mut rows = Rows::from_batches(&spec, &batches)?;
        q.with_vector.apply(&mut rows);
        let scores: Vec<f32> = batches
            .iter()
            .flat_map(|b| {
                b.column_by_name("score")
                    .and_then(|c| c.as_any().downcast_ref::<arrow::array::Float32Array>())
                    .map(|s| s.values().to_vec())
                    .unwrap_or_default()
            })
            .collect();
        let similarity = metric.is_similarity();
        let mut points = Vec::new();
        for (mut record, distance) in rows.records(&q.payload).into_iter().zip(&scores) {
            let score = qdrant_score(metric, *distance);
            if q.threshold.is_some_and(|t| if similarity { score < t } else { score > t }) {
                break;
            }
            let pid = PointId::from_json(&record["id"]).ok();
            if pid.is_some_and(|p| q.exclude.contains(&p)) {
                continue;
            }
            record["score"] = json!(score);
            record["version"] = json!(0);
            points.push(record);
        }
        Ok(points.into_iter().skip(q.offset).take(q.limit).collect())
    }

    /// A best-score recommendation: scores every point passing the filter (a scan).
    async fn best_score(&self, name: &str, positive: &[Vec<f32>], negative: &[Vec<f32>], q: &Nearest) -> Result<Vec<Value>, QdrantError> {
        let metric = q.field.metric;
        let page = Page { filter: q.filter.clone(), from: None, limit: None };
        let mut rows = self.read_points(name, None, Some(page), &VectorSelector::All).await?;
        let vectors = rows.vector(&q.field.name).map(<[Vec<f32>]>::to_vec).unwrap_or_default();
        q.with_vector.apply(&mut rows);
        let normalise = |v: &Vec<f32>| if metric == Metric::Cosine { normalised(v.clone()) } else { v.clone() };
        let (positive, negative): (Vec<_>, Vec<_>) = (positive.iter().map(normalise).collect(), negative.iter().map(normalise).collect());
        let best = |examples: &[Vec<f32>], v: &[f32]| examples.iter().map(|e| similarity(metric, e, v)).fold(f32::NEG_INFINITY, f32::max);
        let squash = |x: f32| 0.5 * (x / (1.0 + x.abs()) + 1.0);
        let mut scored: Vec<(f32, Value)> = rows
            .records(&q.payload)
            .into_iter()
            .zip(&vectors)
            .filter(|(r, _)| PointId::from_json(&r["id"]).is_ok_and(|id| !q.exclude.contains(&id)))
            .map(|(mut r, v)| {
                let (p, n) = (best(&positive, v), best(&negative, v));
                let score = if p > n { squash(p) } else { -squash(n) };
                r["score"] = json!(score);
                r["version"] = json!(0);
                (score, r)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        let kept = scored.into_iter().take_while(|(s, _)| q.threshold.is_none_or(|t| *s >= t));
        Ok(kept.map(|(_, r)| r).skip(q.offset).take(q.limit).collect())
    }
}

/// Qdrant's internal similarity (higher is closer): the dot product (of normalised vectors,
/// for cosine), or minus the squared Euclidean or the Manhattan distance.
fn similarity(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    match metric {
        Metric::L2 => -a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>(),
        Metric::Manhattan => -a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>(),
        Metric::Cosine | Metric::Dot => a.iter().zip(b).map(|(x, y)| x * y).sum(),
    }
}

/// Qdrant's score of one of Grape's distances.
fn qdrant_score(metric: Metric, distance: f32) -> f32 {
    match metric {
        Metric::Cosine => 1.0 - distance,
        Metric::Dot => -distance,
        Metric::L2 => distance.max(0.0).sqrt(),
        Metric::Manhattan => distance,
    }
}

/// Element-wise mean of equally long vectors.
fn mean(vectors: &[Vec<f32>]) -> Vec<f32> {
    let mut sum = vec![0f32; vectors[0].len()];
    for v in vectors {
        sum.iter_mut().zip(v).for_each(|(s, x)| *s += x);
    }
    sum.iter().map(|s| s / vectors.len() as f32).collect()
}

/// `limit` (default 10) and `offset` (default 0) of a request.
pub fn limit_offset(body: &Value) -> Result<(usize, usize), QdrantError> {
    let read = |key: &str, default: u64| -> Result<usize, QdrantError> {
        match body.get(key) {
            None | Some(Value::Null) => Ok(default as usize),
            Some(v) => v.as_u64().map(|n| n as usize).ok_or_else(|| QdrantError::BadRequest(format!("Format error in JSON body: {key} must be a non-negative integer, got {v}"))),
        }
    };
    let limit = read("limit", 10)?;
    if limit == 0 {
        return Err(QdrantError::Unprocessable("Validation error in JSON body: [limit: value 0 invalid, must be 1 or larger]".into()));
    }
    Ok((limit, read("offset", 0)?))
}

/// `hnsw_ef`, `exact` and `quantization.oversampling` of `params`.
fn search_params(params: Option<&Value>) -> Result<(Option<u32>, bool, Option<f32>), QdrantError> {
    let Some(p) = params.filter(|p| !p.is_null()) else { return Ok((None, false, None)) };
    let ef = p.get("hnsw_ef").and_then(Value::as_u64).map(|e| e.min(u32::MAX as u64) as u32);
    let exact = p.get("exact").and_then(Value::as_bool).unwrap_or(false);
    let oversampling = p.get("quantization").and_then(|q| q.get("oversampling")).and_then(Value::as_f64).map(|o| o as f32);
    crate::index::SearchParams::from_request(ef, exact, oversampling)?;
    Ok((ef, exact, oversampling))
}

/// The `searches` list of a batch body.
fn searches(body: &Value) -> Result<&Vec<Value>, QdrantError> {
    body.get("searches").and_then(Value::as_array).ok_or_else(|| QdrantError::wrong_input("a batch needs `searches`"))
}

/// At most 200 characters of a JSON value, for messages.
fn abbreviate(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(200) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}
