//! Qdrant's grouped searches (`query/groups`, `search/groups`, `recommend/groups`): the hits
//! of a search gathered by the values of a payload key, as a RAG application gathers the
//! chunks of each document. Groups come in the order of their best hit, each with its best
//! `group_size` hits, and `with_lookup` adds to each group the point of another collection
//! whose id is the group's value.
//!
//! A group's id is a string or an integer value of the key (each element of an array is one);
//! a point with any other value there joins no group, as in Qdrant. The hits come from the
//! ungrouped search, asked for more candidates until the first `limit` groups are full or the
//! candidates run out, so the answer is the one a search of every point would give.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::json_path::KeyPath;
use super::points::{PayloadSelector, VectorSelector};
use super::reply::QdrantError;
use super::QdrantApi;
use crate::search::MAX_K;

/// Which ungrouped search a grouped one runs.
#[derive(Debug, Clone, Copy)]
pub enum Grouped {
    /// `query_points` (`POST …/points/query/groups`).
    Query,
    /// The older `search` (`POST …/points/search/groups`).
    Search,
    /// The older `recommend` (`POST …/points/recommend/groups`).
    Recommend,
}

/// The grouping a request asks for.
struct Grouping {
    /// The payload key grouped by.
    key: KeyPath,
    /// Hits kept per group.
    group_size: usize,
    /// Groups returned at most.
    limit: usize,
    /// Which payload keys each hit shows.
    payload: PayloadSelector,
}

impl Grouping {
    /// Reads `group_by`, `group_size` (default 3), `limit` (default 10) and `with_payload`.
    fn parse(body: &Value) -> Result<Grouping, QdrantError> {
        let key = body.get("group_by").and_then(Value::as_str).ok_or_else(|| QdrantError::wrong_input("a grouped search needs `group_by`, a payload key"))?;
        let key = KeyPath::parse(key).map_err(QdrantError::wrong_input)?;
        let positive = |name: &str, default: u64| -> Result<usize, QdrantError> {
            match body.get(name) {
                None | Some(Value::Null) => Ok(default as usize),
                Some(v) => match v.as_u64() {
                    Some(0) => Err(QdrantError::Unprocessable(format!("Validation error in JSON body: [{name}: value 0 invalid, must be 1 or larger]"))),
                    Some(n) => Ok(n as usize),
                    None => Err(QdrantError::BadRequest(format!("Format error in JSON body: {name} must be a positive integer, got {v}"))),
                },
            }
        };
        let (group_size, limit) = (positive("group_size", 3)?, positive("limit", 10)?);
        if group_size.saturating_mul(limit) > MAX_K {
            return Err(QdrantError::wrong_input(format!("limit × group_size is {}; a grouped search returns at most {MAX_K} hits", group_size.saturating_mul(limit))));
        }
        Ok(Grouping { key, group_size, limit, payload: PayloadSelector::parse(body.get("with_payload"), false)? })
    }

    /// The groups of `hits` (best first, each with its full payload), in the order of their
    /// best hit, each with its best `group_size` hits; and whether the first `limit` groups
    /// are full.
    fn gather(&self, hits: Vec<Value>) -> (Vec<(Value, Vec<Value>)>, bool) {
        let mut groups: Vec<(Value, Vec<Value>)> = Vec::new();
        // Each group's place, by its id's JSON text (which tells "1" from 1).
        let mut places: HashMap<String, usize> = HashMap::new();
        for mut hit in hits {
            let Some(ids) = self.group_ids(&hit["payload"]) else { continue };
            let payload = match hit["payload"].take() {
                Value::Object(map) => map,
                _ => Map::new(),
            };
            hit["payload"] = self.payload.apply(payload);
            for id in ids {
                let at = *places.entry(id.to_string()).or_insert_with(|| {
                    groups.push((id, Vec::new()));
                    groups.len() - 1
                });
                if groups[at].1.len() < self.group_size {
                    groups[at].1.push(hit.clone());
                }
            }
        }
        let full = groups.len() >= self.limit && groups[..self.limit].iter().all(|(_, hits)| hits.len() == self.group_size);
        groups.truncate(self.limit);
        (groups, full)
    }

    /// The distinct group ids of a point with `payload`, in payload order; `None` when any of
    /// its values there is neither a string nor an integer, or it has none.
    fn group_ids(&self, payload: &Value) -> Option<Vec<Value>> {
        let mut ids: Vec<Value> = Vec::new();
        for v in self.key.values(payload, true)? {
            if !(v.is_string() || v.is_i64() || v.is_u64()) {
                return None;
            }
            if !ids.contains(v) {
                ids.push(v.clone());
            }
        }
        Some(ids)
    }
}

impl QdrantApi {
    /// A grouped search of `name`: `{"groups": [{"id", "hits", "lookup"?}]}`.
    pub async fn groups(&self, name: &str, body: &Value, kind: Grouped) -> Result<Value, QdrantError> {
        let name = &self.resolve(name);
        let grouping = Grouping::parse(body)?;
        let mut candidates = (grouping.limit * grouping.group_size * 4).clamp(16, MAX_K);
        let groups = loop {
            let mut asked = body.clone();
            asked["limit"] = json!(candidates);
            asked["offset"] = json!(0);
            asked["with_payload"] = json!(true);
            if let Some(prefetch) = asked.get_mut("prefetch") {
                widen_prefetch(prefetch, candidates);
            }
            let hits = self.ungrouped(name, &asked, kind).await?;
            let exhausted = hits.len() < candidates;
            let (groups, full) = grouping.gather(hits);
            if full || exhausted || candidates == MAX_K {
                break groups;
            }
            candidates = (candidates * 4).min(MAX_K);
        };
        let lookup = Lookup::parse(body.get("with_lookup"))?;
        let mut out = Vec::with_capacity(groups.len());
        for (id, hits) in groups {
            let mut group = json!({ "id": id, "hits": hits });
            if let Some(lookup) = &lookup {
                if let Some(found) = self.looked_up(lookup, &id).await? {
                    group["lookup"] = found;
                }
            }
            out.push(group);
        }
        Ok(json!({ "groups": out }))
    }

    /// The hits of the search a grouped one runs, best first.
    async fn ungrouped(&self, name: &str, body: &Value, kind: Grouped) -> Result<Vec<Value>, QdrantError> {
        let hits = match kind {
            Grouped::Query => return self.query_points(name, body).await,
            Grouped::Search => self.search(name, body).await?,
            Grouped::Recommend => self.recommend(name, body).await?,
        };
        match hits {
            Value::Array(hits) => Ok(hits),
            _ => Ok(Vec::new()),
        }
    }

    /// The point of the lookup collection whose id is the group's `id`, if there is one.
    async fn looked_up(&self, lookup: &Lookup, id: &Value) -> Result<Option<Value>, QdrantError> {
        // A group value that is no point id (a string other than a UUID) finds nothing.
        if super::points::parse_id(id).is_err() {
            return Ok(None);
        }
        let mut found = self.retrieve(&lookup.collection, std::slice::from_ref(id), &lookup.payload, &lookup.vectors).await?;
        Ok(found.pop())
    }
}

/// `with_lookup`: where each group's point is looked up, and what of it is shown.
struct Lookup {
    /// The collection looked in.
    collection: String,
    /// Its payload keys shown (default: all).
    payload: PayloadSelector,
    /// Its vectors shown (default: none).
    vectors: VectorSelector,
}

impl Lookup {
    /// Reads a collection name or `{collection, with_payload, with_vectors}`.
    fn parse(value: Option<&Value>) -> Result<Option<Lookup>, QdrantError> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(collection)) => Ok(Some(Lookup { collection: collection.clone(), payload: PayloadSelector::All, vectors: VectorSelector::None })),
            Some(o @ Value::Object(_)) => {
                let collection = o.get("collection").and_then(Value::as_str).ok_or_else(|| QdrantError::wrong_input("with_lookup needs `collection`"))?;
                Ok(Some(Lookup {
                    collection: collection.to_string(),
                    payload: PayloadSelector::parse(o.get("with_payload"), true)?,
                    vectors: VectorSelector::parse(o.get("with_vectors").or(o.get("with_vector"))),
                }))
            }
            Some(other) => Err(QdrantError::wrong_input(format!("with_lookup is a collection name or an object, got {other}"))),
        }
    }
}

/// Sets the limit of every prefetch (nested ones too) to `limit`, so that the fused
/// candidates of a grouped query are as many as its own.
fn widen_prefetch(prefetch: &mut Value, limit: usize) {
    match prefetch {
        Value::Array(list) => list.iter_mut().for_each(|p| widen_prefetch(p, limit)),
        Value::Object(p) => {
            p.insert("limit".to_string(), json!(limit));
            if let Some(inner) = p.get_mut("prefetch") {
                widen_prefetch(inner, limit);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(id: u64, payload: Value) -> Value {
        json!({ "id": id, "payload": payload, "score": 1.0 / (id as f64 + 1.0) })
    }

    fn grouping(key: &str, group_size: usize, limit: usize) -> Grouping {
        Grouping { key: KeyPath::parse(key).unwrap(), group_size, limit, payload: PayloadSelector::All }
    }

    fn ids(groups: &[(Value, Vec<Value>)]) -> Vec<(Value, Vec<u64>)> {
        groups.iter().map(|(g, hits)| (g.clone(), hits.iter().map(|h| h["id"].as_u64().unwrap()).collect())).collect()
    }

    #[test]
    fn groups_follow_their_best_hit_and_keep_group_size_hits() {
        let hits = vec![
            hit(0, json!({"doc": "a"})),
            hit(1, json!({"doc": "b"})),
            hit(2, json!({"doc": "a"})),
            hit(3, json!({"doc": "a"})),
            hit(4, json!({"doc": 7})),
            hit(5, json!({"doc": "b"})),
        ];
        let (groups, full) = grouping("doc", 2, 3).gather(hits);
        assert_eq!(ids(&groups), vec![(json!("a"), vec![0, 2]), (json!("b"), vec![1, 5]), (json!(7), vec![4])]);
        assert!(!full, "group 7 has one hit of two");
    }

    #[test]
    fn arrays_join_each_group_and_other_values_join_none() {
        let hits = vec![
            hit(0, json!({"tags": ["x", "y", "x"]})),
            hit(1, json!({"tags": [1, true]})),
            hit(2, json!({"tags": 2.5})),
            hit(3, json!({"other": 1})),
            hit(4, json!({"tags": []})),
            hit(5, json!({"tags": "y"})),
        ];
        let (groups, full) = grouping("tags", 2, 2).gather(hits);
        assert_eq!(ids(&groups), vec![(json!("x"), vec![0]), (json!("y"), vec![0, 5])]);
        assert!(!full);
        let (_, full) = grouping("tags", 1, 2).gather(vec![hit(0, json!({"tags": ["x", "y"]}))]);
        assert!(full);
    }

    #[test]
    fn hits_show_only_the_payload_asked_for() {
        let mut g = grouping("doc", 1, 1);
        g.payload = PayloadSelector::Include(vec!["title".into()]);
        let (groups, _) = g.gather(vec![hit(0, json!({"doc": "a", "title": "t"}))]);
        assert_eq!(groups[0].1[0]["payload"], json!({"title": "t"}));
    }

    #[test]
    fn requests_are_checked() {
        assert!(Grouping::parse(&json!({})).is_err());
        assert!(matches!(Grouping::parse(&json!({"group_by": "a", "group_size": 0})), Err(QdrantError::Unprocessable(_))));
        assert!(Grouping::parse(&json!({"group_by": "a", "limit": 10_000, "group_size": 2})).is_err());
        let g = Grouping::parse(&json!({"group_by": "a.b"})).unwrap();
        assert_eq!((g.group_size, g.limit), (3, 10));
    }

    #[test]
    fn prefetches_are_widened_at_every_depth() {
        let mut p = json!([{"query": [1.0], "limit": 5, "prefetch": {"query": [2.0]}}]);
        widen_prefetch(&mut p, 40);
        assert_eq!(p, json!([{"query": [1.0], "limit": 40, "prefetch": {"query": [2.0], "limit": 40}}]));
    }
}
