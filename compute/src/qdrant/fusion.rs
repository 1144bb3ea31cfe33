//! `prefetch` in Qdrant's query API: each prefetch is a query of its own (nested prefetches
//! first, the outer filter applying to each); the outer query then fuses their results (`fusion: rrf|dbsf`, `rrf: {k, weights}`)
//! or re-ranks the points they found by its own vector (a search restricted to those ids).

use std::collections::HashMap;

use serde_json::{json, Value};

use super::ids::PointId;
use super::points::{parse_id, PayloadSelector, VectorSelector};
use super::reply::QdrantError;
use super::QdrantApi;

/// Qdrant's default ranking constant of reciprocal rank fusion.
const DEFAULT_RRF_K: f64 = 2.0;

/// How the outer query combines its prefetches' results.
enum Merge {
    /// Reciprocal rank fusion with ranking constant `k` and per-source weights.
    Rrf(f64, Option<Vec<f64>>),
    /// Distribution-based score fusion: each source's scores normalised to mean ± 3σ, summed.
    Dbsf,
    /// The outer query searches only the points the prefetches found.
    Rerank,
}

impl QdrantApi {
    /// The scored points of a query with `prefetch`.
    pub(super) async fn query_with_prefetch(&self, name: &str, body: &Value, prefetch: &Value) -> Result<Vec<Value>, QdrantError> {
        let prefetches: Vec<&Value> = match prefetch {
            Value::Array(list) => list.iter().collect(),
            one => vec![one],
        };
        let mut sources = Vec::with_capacity(prefetches.len());
        for p in prefetches {
            let mut inner = p.clone();
            let obj = inner.as_object_mut().ok_or_else(|| QdrantError::wrong_input("a prefetch is an object"))?;
            if obj.contains_key("prefetch") && obj.get("query").is_none_or(Value::is_null) {
                return Err(QdrantError::wrong_input("a prefetch with prefetches of its own needs a query to merge them"));
            }
            obj.insert("with_payload".into(), json!(false));
            obj.remove("offset");
            // The outer filter holds for the prefetches too (and theirs, in turn).
            if let Some(outer) = body.get("filter").filter(|f| !f.is_null()) {
                let both = match obj.get("filter").filter(|f| !f.is_null()) {
                    Some(own) => json!({ "must": [outer, own] }),
                    None => outer.clone(),
                };
                obj.insert("filter".into(), both);
            }
            sources.push(Box::pin(self.query_points(name, &inner)).await?);
        }
        match merge_of(body.get("query"))? {
            Merge::Rerank => {
                let mut ids: Vec<Value> = Vec::new();
                for p in sources.iter().flatten() {
                    if !ids.contains(&p["id"]) {
                        ids.push(p["id"].clone());
                    }
                }
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut outer = body.clone();
                let obj = outer.as_object_mut().ok_or_else(|| QdrantError::wrong_input("a query is an object"))?;
                obj.remove("prefetch");
                let mut must = vec![json!({ "has_id": ids })];
                if let Some(f) = body.get("filter").filter(|f| !f.is_null()) {
                    must.push(f.clone());
                }
                obj.insert("filter".into(), json!({ "must": must }));
                Box::pin(self.query_points(name, &outer)).await
            }
            fusion => self.fused(name, body, &sources, fusion).await,
        }
    }

    /// The fused ranking of `sources`, with payloads and vectors as `body` asks.
    async fn fused(&self, name: &str, body: &Value, sources: &[Vec<Value>], merge: Merge) -> Result<Vec<Value>, QdrantError> {
        let (limit, offset) = super::query::limit_offset(body)?;
        let scored = match merge {
            Merge::Rrf(k, weights) => rrf(sources, k, weights.as_deref())?,
            _ => dbsf(sources),
        };
        let threshold = body.get("score_threshold").and_then(Value::as_f64);
        let kept: Vec<(Value, f64)> = scored.into_iter().take(limit + offset).filter(|(_, s)| threshold.is_none_or(|t| *s >= t)).collect();
        let ids = kept.iter().map(|(id, _)| parse_id(id)).collect::<Result<Vec<PointId>, _>>()?;
        let selector = PayloadSelector::parse(body.get("with_payload"), false)?;
        let rows = self.read_points(name, Some(&ids), None, &VectorSelector::parse(body.get("with_vector"))).await?;
        let mut records: HashMap<PointId, Value> = rows.ids.clone().into_iter().zip(rows.records(&selector)).collect();
        Ok(ids
            .iter()
            .zip(&kept)
            .filter_map(|(id, (_, score))| {
                let mut r = records.remove(id)?;
                r["score"] = json!(score);
                r["version"] = json!(0);
                Some(r)
            })
            .skip(offset)
            .collect())
    }
}

/// How the outer `query` merges prefetches.
fn merge_of(query: Option<&Value>) -> Result<Merge, QdrantError> {
    let Some(q) = query.filter(|q| !q.is_null()) else {
        return Err(QdrantError::wrong_input("a query with prefetch needs a query to merge them (fusion, rrf or a vector)"));
    };
    match (q.get("fusion").and_then(Value::as_str), q.get("rrf")) {
        (Some("rrf"), _) => Ok(Merge::Rrf(DEFAULT_RRF_K, None)),
        (Some("dbsf"), _) => Ok(Merge::Dbsf),
        (Some(other), _) => Err(QdrantError::wrong_input(format!("unknown fusion {other}: use rrf or dbsf"))),
        (None, Some(rrf)) => {
            let k = rrf.get("k").and_then(Value::as_f64).unwrap_or(DEFAULT_RRF_K);
            let weights = rrf.get("weights").and_then(Value::as_array).map(|w| w.iter().filter_map(Value::as_f64).collect());
            Ok(Merge::Rrf(k, weights))
        }
        (None, None) => Ok(Merge::Rerank),
    }
}

/// Reciprocal rank fusion: each point scores `Σ 1 / ((rank + 1) / weight + k − 1)` over the
/// sources it is in; best first, ties in the order first seen.
fn rrf(sources: &[Vec<Value>], k: f64, weights: Option<&[f64]>) -> Result<Vec<(Value, f64)>, QdrantError> {
    if weights.is_some_and(|w| w.len() != sources.len()) {
        return Err(QdrantError::wrong_input("rrf weights must be as many as the prefetches"));
    }
    let mut scores = Scores::default();
    for (s, source) in sources.iter().enumerate() {
        let weight = weights.map_or(1.0, |w| w[s]);
        for (rank, p) in source.iter().enumerate() {
            let score = if weight <= 0.0 { 0.0 } else { 1.0 / ((rank as f64 + 1.0) / weight + k - 1.0) };
            scores.add(&p["id"], score);
        }
    }
    Ok(scores.ranked())
}

/// Distribution-based score fusion, as Qdrant's reference computes it.
fn dbsf(sources: &[Vec<Value>]) -> Vec<(Value, f64)> {
    let mut scores = Scores::default();
    for source in sources.iter().filter(|s| !s.is_empty()) {
        let raw: Vec<f64> = source.iter().map(|p| p["score"].as_f64().unwrap_or(0.0)).collect();
        let n = raw.len() as f64;
        let mean = raw.iter().sum::<f64>() / n;
        let variance = if raw.len() > 1 { raw.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
        for (p, x) in source.iter().zip(&raw) {
            let normalised = if raw.len() == 1 || variance == 0.0 {
                0.5
            } else {
                let (low, high) = (mean - 3.0 * variance.sqrt(), mean + 3.0 * variance.sqrt());
                (x - low) / (high - low)
            };
            scores.add(&p["id"], normalised);
        }
    }
    scores.ranked()
}

/// Fused scores by point, in the order points were first seen.
#[derive(Default)]
struct Scores {
    order: Vec<Value>,
    by_id: HashMap<String, f64>,
}

impl Scores {
    fn add(&mut self, id: &Value, score: f64) {
        let key = id.to_string();
        if !self.by_id.contains_key(&key) {
            self.order.push(id.clone());
        }
        *self.by_id.entry(key).or_insert(0.0) += score;
    }

    /// Points best first (a stable sort: ties keep the order first seen).
    fn ranked(self) -> Vec<(Value, f64)> {
        let mut out: Vec<(Value, f64)> = self.order.into_iter().map(|id| {
            let s = self.by_id[&id.to_string()];
            (id, s)
        }).collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out
    }
}
