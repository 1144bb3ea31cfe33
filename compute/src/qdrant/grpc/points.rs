//! The `Points` service: upsert, delete, get, the payload edits, scroll, count, facet, query
//! (and its batch) and the older search and recommend (and their batches), over the REST
//! handlers.
//! Payload indexes are declared, facets counted, hits grouped and batches of updates applied
//! as in REST. Vector and named-vector edits, discovery and distance matrices are not
//! supported.

use grape_proto::qdrant as pb;
use serde_json::{json, Value};
use tonic::{Request, Response};

use super::convert::{self, json_of_ids, json_of_payload, malformed, points_field, points_of, unsupported, Converted};
use super::filter::json_of_filter;
use super::search;
use super::{timed, unimplemented, QdrantGrpc, Reply};
use crate::qdrant::batch::UpdateOp;
use crate::qdrant::groups::Grouped;
use crate::qdrant::points::{PayloadBody, PayloadEdit, PayloadSelector, Selection, VectorSelector};
use crate::qdrant::reply::QdrantError;

/// The answer of a write (`result`: `{operation_id, status}`).
async fn write(work: impl std::future::Future<Output = Result<Value, QdrantError>>) -> Reply<pb::PointsOperationResponse> {
    let (result, time) = timed(work).await?;
    Ok(Response::new(pb::PointsOperationResponse { result: Some(convert::update_result(&result)), time, usage: None }))
}

/// The REST selection of a points selector: ids or a filter.
fn selection(selector: Option<pb::PointsSelector>) -> Converted<Selection> {
    use pb::points_selector::PointsSelectorOneOf;
    match selector.and_then(|s| s.points_selector_one_of) {
        Some(PointsSelectorOneOf::Points(list)) => Ok(Selection { points: Some(json_of_ids(list.ids)?), filter: None }),
        Some(PointsSelectorOneOf::Filter(filter)) => Ok(Selection { points: None, filter: Some(json_of_filter(filter)?) }),
        None => Err(malformed("a points selector is empty: give point ids or a filter")),
    }
}

/// One operation of an `UpdateBatch`, as its REST counterpart.
// Older clients still send the deprecated forms of delete and clear payload.
#[allow(deprecated)]
fn update_op(op: pb::PointsUpdateOperation) -> Converted<UpdateOp> {
    use pb::points_update_operation::Operation as O;
    type Selector = Option<pb::PointsSelector>;
    let payload = |edit: PayloadEdit, payload: std::collections::HashMap<String, pb::Value>, selector: Selector, key: Option<String>| -> Converted<UpdateOp> {
        Ok(UpdateOp::Payload(edit, PayloadBody { payload: Some(json_of_payload(payload)?), keys: None, key, selection: selection(selector)? }))
    };
    let clear = |selector: Selector| -> Converted<UpdateOp> {
        Ok(UpdateOp::Payload(PayloadEdit::Clear, PayloadBody { payload: None, keys: None, key: None, selection: selection(selector)? }))
    };
    match op.operation.ok_or_else(|| malformed("an update operation is empty"))? {
        O::Upsert(list) => {
            if list.update_filter.is_some() {
                return Err(unsupported("conditional upserts (update_filter)"));
            }
            if list.update_mode.is_some_and(|m| m != pb::UpdateMode::Upsert as i32) {
                return Err(unsupported("insert-only and update-only upserts (update_mode)"));
            }
            Ok(UpdateOp::Upsert(list.points.into_iter().map(convert::given_point).collect::<Converted<_>>()?))
        }
        O::DeleteDeprecated(selector) => Ok(UpdateOp::Delete(selection(Some(selector))?)),
        O::DeletePoints(delete) => Ok(UpdateOp::Delete(selection(delete.points)?)),
        O::SetPayload(set) => payload(PayloadEdit::Set, set.payload, set.points_selector, set.key),
        O::OverwritePayload(set) => payload(PayloadEdit::Overwrite, set.payload, set.points_selector, set.key),
        O::DeletePayload(delete) => {
            let chosen = selection(delete.points_selector)?;
            Ok(UpdateOp::Payload(PayloadEdit::DeleteKeys, PayloadBody { payload: None, keys: Some(delete.keys), key: None, selection: chosen }))
        }
        O::ClearPayloadDeprecated(selector) => clear(Some(selector)),
        O::ClearPayload(c) => clear(c.points),
        O::UpdateVectors(_) | O::DeleteVectors(_) => Err(unsupported("vector edits (update_vectors, delete_vectors)")),
    }
}

/// The hits of a list of searches (`[[ScoredPoint]]`), as batch results.
fn batches(value: Value, points: fn(Value) -> Converted<Vec<pb::ScoredPoint>>) -> Converted<Vec<pb::BatchResult>> {
    convert::items(value)?.into_iter().map(|one| Ok(pb::BatchResult { result: points(one)? })).collect()
}

/// The scored points of a `[ScoredPoint]` result.
fn hits(value: Value) -> Converted<Vec<pb::ScoredPoint>> {
    points_of(value, convert::scored_point)
}

/// The scored points of a `{"points": [ScoredPoint]}` result.
fn query_hits(mut value: Value) -> Converted<Vec<pb::ScoredPoint>> {
    points_field(&mut value, convert::scored_point)
}

/// The groups of a grouped search's `{"groups": [{id, hits, lookup?}]}` result.
fn groups(mut value: Value) -> Converted<Option<pb::GroupsResult>> {
    use pb::group_id::Kind;
    let group = |mut g: Value| -> Converted<pb::PointGroup> {
        let kind = match &g["id"] {
            Value::String(s) => Kind::StringValue(s.clone()),
            v => match (v.as_u64(), v.as_i64()) {
                (Some(u), _) => Kind::UnsignedValue(u),
                (None, Some(i)) => Kind::IntegerValue(i),
                _ => return Err(malformed(&format!("a group id is a string or an integer, got {v}"))),
            },
        };
        let hits = points_of(g["hits"].take(), convert::scored_point)?;
        let lookup = match g.get_mut("lookup").map(Value::take) {
            None | Some(Value::Null) => None,
            Some(found) => Some(convert::retrieved_point(found)?),
        };
        Ok(pb::PointGroup { id: Some(pb::GroupId { kind: Some(kind) }), hits, lookup })
    };
    let list = convert::items(value.get_mut("groups").map(Value::take).unwrap_or(Value::Array(Vec::new())))?;
    Ok(Some(pb::GroupsResult { groups: list.into_iter().map(group).collect::<Converted<_>>()? }))
}

/// REST's name of the index type a `CreateFieldIndex` asks for: its `field_type`, else the
/// kind of its `field_index_params` (empty if neither, which the REST handler refuses).
fn index_type(r: &pb::CreateFieldIndexCollection) -> &'static str {
    use pb::payload_index_params::IndexParams as P;
    use pb::FieldType as T;
    let by_type = r.field_type.and_then(|t| T::try_from(t).ok()).map(|t| match t {
        T::Keyword => "keyword",
        T::Integer => "integer",
        T::Float => "float",
        T::Geo => "geo",
        T::Text => "text",
        T::Bool => "bool",
        T::Datetime => "datetime",
        T::Uuid => "uuid",
    });
    let by_params = r.field_index_params.as_ref().and_then(|p| p.index_params.as_ref()).map(|p| match p {
        P::KeywordIndexParams(_) => "keyword",
        P::IntegerIndexParams(_) => "integer",
        P::FloatIndexParams(_) => "float",
        P::GeoIndexParams(_) => "geo",
        P::TextIndexParams(_) => "text",
        P::BoolIndexParams(_) => "bool",
        P::DatetimeIndexParams(_) => "datetime",
        P::UuidIndexParams(_) => "uuid",
    });
    by_type.or(by_params).unwrap_or("")
}

/// A facet hit of REST's `{value, count}` (values are strings, integers or bools).
fn facet_hit(hit: &Value) -> Option<pb::FacetHit> {
    use pb::facet_value::Variant;
    let value = match hit.get("value")? {
        Value::String(s) => Variant::StringValue(s.clone()),
        Value::Bool(b) => Variant::BoolValue(*b),
        v => Variant::IntegerValue(v.as_i64()?),
    };
    Some(pb::FacetHit {
        value: Some(pb::FacetValue { variant: Some(value) }),
        count: hit.get("count").and_then(Value::as_u64).unwrap_or(0),
    })
}

impl QdrantGrpc {
    /// A payload edit (`body`: the REST body, or why the request could not be one).
    async fn edit(&self, name: &str, edit: PayloadEdit, body: Converted<PayloadBody>) -> Reply<pb::PointsOperationResponse> {
        write(async { self.0.edit_payload(name, edit, body?).await }).await
    }

    /// `SetPayload` and `OverwritePayload`.
    async fn set(&self, r: Request<pb::SetPayloadPoints>, edit: PayloadEdit) -> Reply<pb::PointsOperationResponse> {
        let r = r.into_inner();
        let body = match (json_of_payload(r.payload), selection(r.points_selector)) {
            (Ok(payload), Ok(selection)) => Ok(PayloadBody { payload: Some(payload), keys: None, key: r.key, selection }),
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        self.edit(&r.collection_name, edit, body).await
    }
}

#[tonic::async_trait]
impl pb::points_server::Points for QdrantGrpc {
    async fn upsert(&self, r: Request<pb::UpsertPoints>) -> Reply<pb::PointsOperationResponse> {
        let r = r.into_inner();
        write(async {
            if r.update_filter.is_some() {
                return Err(unsupported("conditional upserts (update_filter)"));
            }
            if r.update_mode.is_some_and(|m| m != pb::UpdateMode::Upsert as i32) {
                return Err(unsupported("insert-only and update-only upserts (update_mode)"));
            }
            let points = r.points.into_iter().map(convert::given_point).collect::<Converted<Vec<_>>>()?;
            self.0.upsert_points(&r.collection_name, points).await
        })
        .await
    }

    async fn delete(&self, r: Request<pb::DeletePoints>) -> Reply<pb::PointsOperationResponse> {
        let r = r.into_inner();
        write(async { self.0.delete_points(&r.collection_name, selection(r.points)?).await }).await
    }

    async fn get(&self, r: Request<pb::GetPoints>) -> Reply<pb::GetResponse> {
        let r = r.into_inner();
        let (result, time) = timed(async {
            let ids = json_of_ids(r.ids)?;
            let selector = PayloadSelector::parse(Some(&convert::json_of_with_payload(r.with_payload)), false)?;
            let with_vector = VectorSelector::parse(Some(&convert::json_of_with_vectors(r.with_vectors)));
            let records = self.0.retrieve(&r.collection_name, &ids, &selector, &with_vector).await?;
            records.into_iter().map(convert::retrieved_point).collect::<Converted<Vec<_>>>()
        })
        .await?;
        Ok(Response::new(pb::GetResponse { result, time, usage: None }))
    }

    async fn update_vectors(&self, _: Request<pb::UpdatePointVectors>) -> Reply<pb::PointsOperationResponse> {
        unimplemented("UpdateVectors")
    }

    async fn delete_vectors(&self, _: Request<pb::DeletePointVectors>) -> Reply<pb::PointsOperationResponse> {
        unimplemented("DeleteVectors")
    }

    async fn set_payload(&self, r: Request<pb::SetPayloadPoints>) -> Reply<pb::PointsOperationResponse> {
        self.set(r, PayloadEdit::Set).await
    }

    async fn overwrite_payload(&self, r: Request<pb::SetPayloadPoints>) -> Reply<pb::PointsOperationResponse> {
        self.set(r, PayloadEdit::Overwrite).await
    }

    async fn delete_payload(&self, r: Request<pb::DeletePayloadPoints>) -> Reply<pb::PointsOperationResponse> {
        let r = r.into_inner();
        let body = selection(r.points_selector).map(|selection| PayloadBody { payload: None, keys: Some(r.keys), key: None, selection });
        self.edit(&r.collection_name, PayloadEdit::DeleteKeys, body).await
    }

    async fn clear_payload(&self, r: Request<pb::ClearPayloadPoints>) -> Reply<pb::PointsOperationResponse> {
        let r = r.into_inner();
        let body = selection(r.points).map(|selection| PayloadBody { payload: None, keys: None, key: None, selection });
        self.edit(&r.collection_name, PayloadEdit::Clear, body).await
    }

    async fn create_field_index(&self, r: Request<pb::CreateFieldIndexCollection>) -> Reply<pb::PointsOperationResponse> {
        let r = r.into_inner();
        let body = json!({ "field_name": r.field_name, "field_schema": index_type(&r) });
        write(self.0.create_payload_index(&r.collection_name, &body)).await
    }

    async fn delete_field_index(&self, r: Request<pb::DeleteFieldIndexCollection>) -> Reply<pb::PointsOperationResponse> {
        let r = r.into_inner();
        write(self.0.delete_payload_index(&r.collection_name, &r.field_name)).await
    }

    async fn create_vector_name(&self, _: Request<pb::CreateVectorNameRequest>) -> Reply<pb::PointsOperationResponse> {
        unimplemented("CreateVectorName")
    }

    async fn delete_vector_name(&self, _: Request<pb::DeleteVectorNameRequest>) -> Reply<pb::PointsOperationResponse> {
        unimplemented("DeleteVectorName")
    }

    async fn search(&self, r: Request<pb::SearchPoints>) -> Reply<pb::SearchResponse> {
        let r = r.into_inner();
        let name = r.collection_name.clone();
        let (result, time) = timed(async { hits(self.0.search(&name, &search::search_body(r)?).await?) }).await?;
        Ok(Response::new(pb::SearchResponse { result, time, usage: None }))
    }

    async fn search_batch(&self, r: Request<pb::SearchBatchPoints>) -> Reply<pb::SearchBatchResponse> {
        let r = r.into_inner();
        let name = r.collection_name.clone();
        let (result, time) =
            timed(async { batches(self.0.search_batch(&name, &search::search_batch_body(r)?, false).await?, hits) }).await?;
        Ok(Response::new(pb::SearchBatchResponse { result, time, usage: None }))
    }

    async fn search_groups(&self, r: Request<pb::SearchPointGroups>) -> Reply<pb::SearchGroupsResponse> {
        let r = r.into_inner();
        let name = r.collection_name.clone();
        let (result, time) = timed(async { groups(self.0.groups(&name, &search::search_groups_body(r)?, Grouped::Search).await?) }).await?;
        Ok(Response::new(pb::SearchGroupsResponse { result, time, usage: None }))
    }

    async fn scroll(&self, r: Request<pb::ScrollPoints>) -> Reply<pb::ScrollResponse> {
        let r = r.into_inner();
        let name = r.collection_name.clone();
        let ((result, next_page_offset), time) = timed(async {
            let mut page = self.0.scroll(&name, &search::scroll_body(r)?).await?;
            let next = match page.get("next_page_offset") {
                None | Some(Value::Null) => None,
                Some(id) => Some(convert::id_of_json(id)?),
            };
            Ok((points_field(&mut page, convert::retrieved_point)?, next))
        })
        .await?;
        Ok(Response::new(pb::ScrollResponse { next_page_offset, result, time, usage: None }))
    }

    async fn recommend(&self, r: Request<pb::RecommendPoints>) -> Reply<pb::RecommendResponse> {
        let r = r.into_inner();
        let name = r.collection_name.clone();
        let (result, time) = timed(async { hits(self.0.recommend(&name, &search::recommend_body(r)?).await?) }).await?;
        Ok(Response::new(pb::RecommendResponse { result, time, usage: None }))
    }

    async fn recommend_batch(&self, r: Request<pb::RecommendBatchPoints>) -> Reply<pb::RecommendBatchResponse> {
        let r = r.into_inner();
        let name = r.collection_name.clone();
        let (result, time) =
            timed(async { batches(self.0.search_batch(&name, &search::recommend_batch_body(r)?, true).await?, hits) }).await?;
        Ok(Response::new(pb::RecommendBatchResponse { result, time, usage: None }))
    }

    async fn recommend_groups(&self, r: Request<pb::RecommendPointGroups>) -> Reply<pb::RecommendGroupsResponse> {
        let r = r.into_inner();
        let name = r.collection_name.clone();
        let (result, time) =
            timed(async { groups(self.0.groups(&name, &search::recommend_groups_body(r)?, Grouped::Recommend).await?) }).await?;
        Ok(Response::new(pb::RecommendGroupsResponse { result, time, usage: None }))
    }

    async fn discover(&self, _: Request<pb::DiscoverPoints>) -> Reply<pb::DiscoverResponse> {
        unimplemented("Discover")
    }

    async fn discover_batch(&self, _: Request<pb::DiscoverBatchPoints>) -> Reply<pb::DiscoverBatchResponse> {
        unimplemented("DiscoverBatch")
    }

    async fn count(&self, r: Request<pb::CountPoints>) -> Reply<pb::CountResponse> {
        let r = r.into_inner();
        let name = r.collection_name.clone();
        let (counted, time) = timed(async { self.0.count(&name, &search::count_body(r)?).await }).await?;
        let count = counted.get("count").and_then(Value::as_u64).unwrap_or(0);
        Ok(Response::new(pb::CountResponse { result: Some(pb::CountResult { count }), time, usage: None }))
    }

    async fn update_batch(&self, r: Request<pb::UpdateBatchPoints>) -> Reply<pb::UpdateBatchResponse> {
        let r = r.into_inner();
        let (result, time) = timed(async {
            let operations = r.operations.into_iter().map(update_op).collect::<Converted<Vec<_>>>()?;
            let results = self.0.update_batch(&r.collection_name, operations).await?;
            Ok(convert::items(results)?.iter().map(convert::update_result).collect())
        })
        .await?;
        Ok(Response::new(pb::UpdateBatchResponse { result, time, usage: None }))
    }

    async fn query(&self, r: Request<pb::QueryPoints>) -> Reply<pb::QueryResponse> {
        let r = r.into_inner();
        let name = r.collection_name.clone();
        let (result, time) = timed(async { query_hits(self.0.query(&name, &search::query_body(r)?).await?) }).await?;
        Ok(Response::new(pb::QueryResponse { result, time, usage: None }))
    }

    async fn query_batch(&self, r: Request<pb::QueryBatchPoints>) -> Reply<pb::QueryBatchResponse> {
        let r = r.into_inner();
        let name = r.collection_name.clone();
        let (result, time) = timed(async { batches(self.0.query_batch(&name, &search::query_batch_body(r)?).await?, query_hits) }).await?;
        Ok(Response::new(pb::QueryBatchResponse { result, time, usage: None }))
    }

    async fn query_groups(&self, r: Request<pb::QueryPointGroups>) -> Reply<pb::QueryGroupsResponse> {
        let r = r.into_inner();
        let name = r.collection_name.clone();
        let (result, time) = timed(async { groups(self.0.groups(&name, &search::query_groups_body(r)?, Grouped::Query).await?) }).await?;
        Ok(Response::new(pb::QueryGroupsResponse { result, time, usage: None }))
    }

    async fn facet(&self, r: Request<pb::FacetCounts>) -> Reply<pb::FacetResponse> {
        let r = r.into_inner();
        let name = r.collection_name.clone();
        let (mut counted, time) = timed(async { self.0.facet(&name, &search::facet_body(r)?).await }).await?;
        let hits = counted.get_mut("hits").map(Value::take).map(convert::items).transpose()?.unwrap_or_default();
        Ok(Response::new(pb::FacetResponse { hits: hits.iter().filter_map(facet_hit).collect(), time, usage: None }))
    }

    async fn search_matrix_pairs(&self, _: Request<pb::SearchMatrixPoints>) -> Reply<pb::SearchMatrixPairsResponse> {
        unimplemented("SearchMatrixPairs")
    }

    async fn search_matrix_offsets(&self, _: Request<pb::SearchMatrixPoints>) -> Reply<pb::SearchMatrixOffsetsResponse> {
        unimplemented("SearchMatrixOffsets")
    }
}
