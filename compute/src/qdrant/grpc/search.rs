//! The search requests of Qdrant's gRPC API as the JSON bodies of their REST endpoints:
//! `QueryPoints` (with its prefetches and each kind of query), the older
//! `SearchPoints` and `RecommendPoints`, scroll (in id order or by a payload key), count and
//! facet.

use grape_proto::qdrant as pb;
use serde_json::{json, Map, Value};

use super::convert::{
    json_of_id, json_of_ids, dense_of, json_of_params, json_of_vector_input, json_of_with_payload, json_of_with_vectors, malformed,
    rfc3339, unsupported, Converted,
};
use super::filter::json_of_optional_filter;

/// What every search request has, as its REST body's fields.
struct Common {
    /// `filter`.
    filter: Option<pb::Filter>,
    /// `limit` (absent: the endpoint's default).
    limit: Option<u64>,
    /// `offset`.
    offset: Option<u64>,
    /// `with_payload`.
    with_payload: Option<pb::WithPayloadSelector>,
    /// `with_vector`.
    with_vectors: Option<pb::WithVectorsSelector>,
    /// `params`.
    params: Option<pb::SearchParams>,
    /// `score_threshold`.
    score_threshold: Option<f32>,
}

impl Common {
    /// The REST body with these fields.
    fn body(self) -> Converted<Map<String, Value>> {
        let fields = [
            ("filter", json_of_optional_filter(self.filter)?),
            ("limit", json!(self.limit)),
            ("offset", json!(self.offset)),
            ("with_payload", json_of_with_payload(self.with_payload)),
            ("with_vector", json_of_with_vectors(self.with_vectors)),
            ("params", json_of_params(self.params)),
            ("score_threshold", json!(self.score_threshold)),
        ];
        Ok(fields.into_iter().map(|(name, value)| (name.to_string(), value)).collect())
    }
}

/// The body of `POST …/points/query`.
pub fn query_body(q: pb::QueryPoints) -> Converted<Value> {
    if q.lookup_from.is_some() {
        return Err(unsupported("lookup_from"));
    }
    let query = q.query.map(json_of_query).transpose()?;
    let prefetch = json_of_prefetches(q.prefetch)?;
    let common = Common {
        filter: q.filter,
        limit: q.limit,
        offset: q.offset,
        with_payload: q.with_payload,
        with_vectors: q.with_vectors,
        params: q.params,
        score_threshold: q.score_threshold,
    };
    let mut body = common.body()?;
    body.insert("query".to_string(), query.unwrap_or(Value::Null));
    body.insert("prefetch".to_string(), prefetch);
    body.insert("using".to_string(), json!(q.using));
    Ok(Value::Object(body))
}

/// The body of `POST …/points/query/batch`.
pub fn query_batch_body(batch: pb::QueryBatchPoints) -> Converted<Value> {
    let searches = batch.query_points.into_iter().map(query_body).collect::<Converted<Vec<_>>>()?;
    Ok(json!({ "searches": searches }))
}

/// The body of `POST …/points/query/groups`.
pub fn query_groups_body(q: pb::QueryPointGroups) -> Converted<Value> {
    let grouping = Grouping { group_by: q.group_by, group_size: q.group_size, with_lookup: q.with_lookup };
    let query = pb::QueryPoints {
        collection_name: q.collection_name,
        prefetch: q.prefetch,
        query: q.query,
        using: q.using,
        filter: q.filter,
        params: q.params,
        score_threshold: q.score_threshold,
        limit: q.limit,
        with_vectors: q.with_vectors,
        with_payload: q.with_payload,
        lookup_from: q.lookup_from,
        ..Default::default()
    };
    grouping.added_to(query_body(query)?)
}

/// The body of `POST …/points/search/groups`.
pub fn search_groups_body(s: pb::SearchPointGroups) -> Converted<Value> {
    let grouping = Grouping { group_by: s.group_by, group_size: Some(u64::from(s.group_size)), with_lookup: s.with_lookup };
    let search = pb::SearchPoints {
        collection_name: s.collection_name,
        vector: s.vector,
        filter: s.filter,
        limit: u64::from(s.limit),
        with_payload: s.with_payload,
        params: s.params,
        score_threshold: s.score_threshold,
        vector_name: s.vector_name,
        with_vectors: s.with_vectors,
        sparse_indices: s.sparse_indices,
        ..Default::default()
    };
    grouping.added_to(search_body(search)?)
}

/// The body of `POST …/points/recommend/groups`.
pub fn recommend_groups_body(r: pb::RecommendPointGroups) -> Converted<Value> {
    let grouping = Grouping { group_by: r.group_by, group_size: Some(u64::from(r.group_size)), with_lookup: r.with_lookup };
    let recommend = pb::RecommendPoints {
        collection_name: r.collection_name,
        positive: r.positive,
        negative: r.negative,
        filter: r.filter,
        limit: u64::from(r.limit),
        with_payload: r.with_payload,
        params: r.params,
        score_threshold: r.score_threshold,
        using: r.using,
        with_vectors: r.with_vectors,
        lookup_from: r.lookup_from,
        strategy: r.strategy,
        positive_vectors: r.positive_vectors,
        negative_vectors: r.negative_vectors,
        ..Default::default()
    };
    grouping.added_to(recommend_body(recommend)?)
}

/// What a grouped search adds to its search.
struct Grouping {
    /// `group_by`.
    group_by: String,
    /// `group_size` (absent: the endpoint's default).
    group_size: Option<u64>,
    /// `with_lookup`.
    with_lookup: Option<pb::WithLookup>,
}

impl Grouping {
    /// `search` (a search's REST body) with these fields.
    fn added_to(self, search: Value) -> Converted<Value> {
        let Value::Object(mut body) = search else { return Err(malformed("a grouped search is not an object")) };
        let lookup = self.with_lookup.map(|l| {
            json!({ "collection": l.collection, "with_payload": json_of_with_payload(l.with_payload), "with_vectors": json_of_with_vectors(l.with_vectors) })
        });
        body.insert("group_by".to_string(), json!(self.group_by));
        body.insert("group_size".to_string(), json!(self.group_size));
        body.insert("with_lookup".to_string(), lookup.unwrap_or(Value::Null));
        Ok(Value::Object(body))
    }
}

/// REST's `prefetch` of a query: a list of sub-queries (`null`: none).
fn json_of_prefetches(prefetches: Vec<pb::PrefetchQuery>) -> Converted<Value> {
    if prefetches.is_empty() {
        return Ok(Value::Null);
    }
    prefetches.into_iter().map(json_of_prefetch).collect::<Converted<Vec<_>>>().map(Value::Array)
}

/// One prefetch, with only the fields it sets (the REST handler tells an absent field from a
/// null one for some).
fn json_of_prefetch(p: pb::PrefetchQuery) -> Converted<Value> {
    if p.lookup_from.is_some() {
        return Err(unsupported("lookup_from"));
    }
    let fields = [
        ("prefetch", json_of_prefetches(p.prefetch)?),
        ("query", p.query.map(json_of_query).transpose()?.unwrap_or(Value::Null)),
        ("using", json!(p.using)),
        ("filter", json_of_optional_filter(p.filter)?),
        ("params", json_of_params(p.params)),
        ("score_threshold", json!(p.score_threshold)),
        ("limit", json!(p.limit)),
    ];
    Ok(Value::Object(fields.into_iter().filter(|(_, v)| !v.is_null()).map(|(name, v)| (name.to_string(), v)).collect()))
}

/// The REST `query` of a gRPC one: a vector or point id, or an object naming its kind
/// (`recommend`, `discover`, `context`, `order_by`, `fusion`, `rrf`, `sample`). The REST
/// handler refuses the kinds Grape does not support.
fn json_of_query(query: pb::Query) -> Converted<Value> {
    use pb::query::Variant;
    let examples = |inputs: Vec<pb::VectorInput>| inputs.into_iter().map(json_of_vector_input).collect::<Converted<Vec<_>>>();
    let context = |c: Option<pb::ContextInput>| -> Converted<Vec<Value>> {
        let input = |v: Option<pb::VectorInput>| v.map(json_of_vector_input).transpose();
        let pairs = c.map(|c| c.pairs).unwrap_or_default().into_iter();
        pairs.map(|pair| Ok(json!({ "positive": input(pair.positive)?, "negative": input(pair.negative)? }))).collect()
    };
    Ok(match query.variant {
        Some(Variant::Nearest(input)) => json_of_vector_input(input)?,
        Some(Variant::Recommend(r)) => {
            json!({ "recommend": { "positive": examples(r.positive)?, "negative": examples(r.negative)?, "strategy": strategy(r.strategy)? } })
        }
        Some(Variant::Discover(d)) => {
            json!({ "discover": { "target": d.target.map(json_of_vector_input).transpose()?, "context": context(d.context)? } })
        }
        Some(Variant::Context(c)) => json!({ "context": context(Some(c))? }),
        Some(Variant::OrderBy(o)) => json!({ "order_by": json_of_order_by(o)? }),
        Some(Variant::Fusion(code)) => match pb::Fusion::try_from(code) {
            Ok(pb::Fusion::Rrf) => json!({ "fusion": "rrf" }),
            Ok(pb::Fusion::Dbsf) => json!({ "fusion": "dbsf" }),
            Err(_) => return Err(malformed(&format!("unknown fusion {code}"))),
        },
        Some(Variant::Rrf(rrf)) => {
            let weights = if rrf.weights.is_empty() { Value::Null } else { json!(rrf.weights) };
            json!({ "rrf": { "k": rrf.k, "weights": weights } })
        }
        Some(Variant::Sample(_)) => json!({ "sample": "random" }),
        Some(Variant::Formula(_)) => return Err(unsupported("formula queries")),
        Some(Variant::NearestWithMmr(_)) => return Err(unsupported("MMR (nearest_with_mmr)")),
        Some(Variant::RelevanceFeedback(_)) => return Err(unsupported("relevance feedback queries")),
        None => return Err(malformed("the query is empty, or of a kind this server does not know")),
    })
}

/// The REST name of a recommendation strategy (`null`: the default).
fn strategy(strategy: Option<i32>) -> Converted<Value> {
    let Some(code) = strategy else { return Ok(Value::Null) };
    match pb::RecommendStrategy::try_from(code) {
        Ok(pb::RecommendStrategy::AverageVector) => Ok(json!("average_vector")),
        Ok(pb::RecommendStrategy::BestScore) => Ok(json!("best_score")),
        Ok(pb::RecommendStrategy::SumScores) => Ok(json!("sum_scores")),
        Err(_) => Err(malformed(&format!("unknown recommend strategy {code}"))),
    }
}

/// The body of `POST …/points/search`.
pub fn search_body(s: pb::SearchPoints) -> Converted<Value> {
    if s.sparse_indices.is_some() {
        return Err(unsupported("sparse vectors"));
    }
    let vector = match s.vector_name {
        Some(name) => json!({ "name": name, "vector": s.vector }),
        None => json!(s.vector),
    };
    let common = Common {
        filter: s.filter,
        limit: Some(s.limit),
        offset: s.offset,
        with_payload: s.with_payload,
        with_vectors: s.with_vectors,
        params: s.params,
        score_threshold: s.score_threshold,
    };
    let mut body = common.body()?;
    body.insert("vector".to_string(), vector);
    Ok(Value::Object(body))
}

/// The body of `POST …/points/search/batch`.
pub fn search_batch_body(batch: pb::SearchBatchPoints) -> Converted<Value> {
    let searches = batch.search_points.into_iter().map(search_body).collect::<Converted<Vec<_>>>()?;
    Ok(json!({ "searches": searches }))
}

/// The body of `POST …/points/recommend`: examples by id, then given vectors.
pub fn recommend_body(r: pb::RecommendPoints) -> Converted<Value> {
    if r.lookup_from.is_some() {
        return Err(unsupported("lookup_from"));
    }
    let examples = |ids: Vec<pb::PointId>, vectors: Vec<pb::Vector>| -> Converted<Vec<Value>> {
        let mut out = json_of_ids(ids)?;
        for vector in vectors {
            out.push(serde_json::json!(dense_of(vector)?));
        }
        Ok(out)
    };
    let positive = examples(r.positive, r.positive_vectors)?;
    let negative = examples(r.negative, r.negative_vectors)?;
    let common = Common {
        filter: r.filter,
        limit: Some(r.limit),
        offset: r.offset,
        with_payload: r.with_payload,
        with_vectors: r.with_vectors,
        params: r.params,
        score_threshold: r.score_threshold,
    };
    let mut body = common.body()?;
    body.insert("positive".to_string(), Value::Array(positive));
    body.insert("negative".to_string(), Value::Array(negative));
    body.insert("strategy".to_string(), strategy(r.strategy)?);
    body.insert("using".to_string(), json!(r.using));
    Ok(Value::Object(body))
}

/// The body of `POST …/points/recommend/batch`.
pub fn recommend_batch_body(batch: pb::RecommendBatchPoints) -> Converted<Value> {
    let searches = batch.recommend_points.into_iter().map(recommend_body).collect::<Converted<Vec<_>>>()?;
    Ok(json!({ "searches": searches }))
}

/// The body of `POST …/points/scroll`.
pub fn scroll_body(s: pb::ScrollPoints) -> Converted<Value> {
    Ok(json!({
        "filter": json_of_optional_filter(s.filter)?,
        "limit": s.limit,
        "offset": s.offset.map(|id| json_of_id(Some(id))).transpose()?,
        "with_payload": json_of_with_payload(s.with_payload),
        "with_vector": json_of_with_vectors(s.with_vectors),
        "order_by": s.order_by.map(json_of_order_by).transpose()?,
    }))
}

/// REST's `order_by` of a scroll: `{key, direction, start_from}`.
fn json_of_order_by(order_by: pb::OrderBy) -> Converted<Value> {
    use pb::start_from::Value as Start;
    let direction = match order_by.direction.map(pb::Direction::try_from) {
        None => Value::Null,
        Some(Ok(pb::Direction::Asc)) => json!("asc"),
        Some(Ok(pb::Direction::Desc)) => json!("desc"),
        Some(Err(_)) => return Err(malformed("unknown order_by direction")),
    };
    let start_from = match order_by.start_from.and_then(|s| s.value) {
        None => Value::Null,
        Some(Start::Float(f)) => json!(f),
        Some(Start::Integer(i)) => json!(i),
        Some(Start::Timestamp(t)) => json!(rfc3339(t)?),
        Some(Start::Datetime(text)) => json!(text),
    };
    Ok(json!({ "key": order_by.key, "direction": direction, "start_from": start_from }))
}

/// The body of `POST …/facet`.
pub fn facet_body(f: pb::FacetCounts) -> Converted<Value> {
    Ok(json!({ "key": f.key, "filter": json_of_optional_filter(f.filter)?, "limit": f.limit, "exact": f.exact }))
}

/// The body of `POST …/points/count`.
pub fn count_body(c: pb::CountPoints) -> Converted<Value> {
    Ok(json!({ "filter": json_of_optional_filter(c.filter)?, "exact": c.exact }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense(data: Vec<f32>) -> pb::VectorInput {
        pb::VectorInput { variant: Some(pb::vector_input::Variant::Dense(pb::DenseVector { data })) }
    }

    fn query(variant: pb::query::Variant) -> Option<pb::Query> {
        Some(pb::Query { variant: Some(variant) })
    }

    #[test]
    fn queries_become_rest_bodies() {
        let id = pb::VectorInput {
            variant: Some(pb::vector_input::Variant::Id(pb::PointId { point_id_options: Some(pb::point_id::PointIdOptions::Num(7)) })),
        };
        let recommend = pb::RecommendInput {
            positive: vec![id, dense(vec![0.5])],
            negative: Vec::new(),
            strategy: Some(pb::RecommendStrategy::BestScore as i32),
        };
        let prefetch =
            pb::PrefetchQuery { query: query(pb::query::Variant::Nearest(dense(vec![1.0]))), limit: Some(5), ..Default::default() };
        let q = pb::QueryPoints {
            collection_name: "c".into(),
            query: query(pb::query::Variant::Rrf(pb::Rrf { k: Some(3), weights: vec![1.0, 2.0] })),
            prefetch: vec![prefetch.clone(), pb::PrefetchQuery { query: query(pb::query::Variant::Recommend(recommend)), ..prefetch }],
            limit: Some(4),
            with_payload: Some(pb::WithPayloadSelector {
                selector_options: Some(pb::with_payload_selector::SelectorOptions::Enable(true)),
            }),
            ..Default::default()
        };
        let body = query_body(q).unwrap();
        assert_eq!(body["query"], json!({"rrf": {"k": 3, "weights": [1.0, 2.0]}}));
        assert_eq!(body["prefetch"][0], json!({"query": [1.0], "limit": 5}));
        assert_eq!(body["prefetch"][1]["query"], json!({"recommend": {"positive": [7, [0.5]], "negative": [], "strategy": "best_score"}}));
        assert_eq!((body["limit"].clone(), body["with_payload"].clone()), (json!(4), json!(true)));
        let mmr = pb::NearestInputWithMmr { nearest: Some(dense(vec![1.0])), mmr: None };
        let refused = pb::QueryPoints { query: query(pb::query::Variant::NearestWithMmr(mmr)), ..Default::default() };
        assert!(query_body(refused).is_err());
    }
}
