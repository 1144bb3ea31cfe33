//! Qdrant's point endpoints: upsert (list and batch forms), retrieve, delete, the payload
//! edits (set, overwrite, delete keys, clear), scroll and count.
//!
//! Every write is an upsert or delete of Grape's: durable and committed before it is
//! acknowledged, so `wait=true` and `wait=false` both answer `completed`. Payload edits read
//! the points they touch and upsert them again with the new payload, in one commit.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array, RecordBatch, StringArray};
use arrow::datatypes::{Field, Schema};
use grape_meta::catalog::{Collection, CollectionSpec, Metric, VectorField};
use grape_proto::v1;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::compile::PAYLOAD_COLUMN;
use super::given::{GivenPoint, GivenVectors, UpsertBody};
use super::ids::PointId;
use super::json_path::{KeyPath, Step};
use super::reply::{Outcome, QdrantError};
use super::QdrantApi;
use crate::gateway::Page;
use crate::ingest::vector_type;
use crate::limits::RequestClass::{Search, Write};
use crate::search::validate_vector;
use crate::segment::ID_COLUMN;

/// Most points one scroll page or retrieve may return.
pub const MAX_PAGE: usize = 100_000;

/// One point to upsert.
#[derive(Debug, Clone)]
pub struct NewPoint {
    /// Its id.
    pub id: PointId,
    /// Its vectors, one per vector field in field order, checked and (for cosine) normalised.
    pub vectors: Vec<Vec<f32>>,
    /// Its payload object (`None`: no payload).
    pub payload: Option<Map<String, Value>>,
}

/// Which payload keys a response shows (`with_payload`).
#[derive(Debug, Clone)]
pub enum PayloadSelector {
    /// No payload (`false`).
    Nothing,
    /// The whole payload (`true`).
    All,
    /// Only these keys or paths (a list, or `{"include": [...]}`).
    Include(Vec<String>),
    /// All but these keys or paths (`{"exclude": [...]}`).
    Exclude(Vec<String>),
}

impl PayloadSelector {
    /// Reads `with_payload`, `default` when absent.
    pub fn parse(value: Option<&Value>, default: bool) -> Result<PayloadSelector, QdrantError> {
        let keys = |v: &Value| -> Result<Vec<String>, QdrantError> {
            v.as_array()
                .ok_or_else(|| QdrantError::wrong_input(format!("a payload selector lists keys, got {v}")))?
                .iter()
                .map(|k| k.as_str().map(String::from).ok_or_else(|| QdrantError::wrong_input(format!("payload key {k} is not a string"))))
                .collect()
        };
        Ok(match value {
            None | Some(Value::Null) => if default { PayloadSelector::All } else { PayloadSelector::Nothing },
            Some(Value::Bool(true)) => PayloadSelector::All,
            Some(Value::Bool(false)) => PayloadSelector::Nothing,
            Some(list @ Value::Array(_)) => PayloadSelector::Include(keys(list)?),
            Some(Value::Object(o)) if o.contains_key("include") => PayloadSelector::Include(keys(&o["include"])?),
            Some(Value::Object(o)) if o.contains_key("exclude") => PayloadSelector::Exclude(keys(&o["exclude"])?),
            Some(other) => return Err(QdrantError::wrong_input(format!("with_payload is a bool, a list of keys, or include/exclude: {other}"))),
        })
    }

    /// The payload to show for a stored one.
    pub fn apply(&self, payload: Map<String, Value>) -> Value {
        match self {
            PayloadSelector::Nothing => Value::Null,
            PayloadSelector::All => Value::Object(payload),
            PayloadSelector::Include(keys) => {
                let whole = Value::Object(payload);
                let mut out = Map::new();
                keys.iter().filter_map(|k| KeyPath::parse(k).ok()).for_each(|p| p.project(&whole, &mut out));
                Value::Object(out)
            }
            PayloadSelector::Exclude(keys) => {
                let mut whole = Value::Object(payload);
                keys.iter().filter_map(|k| KeyPath::parse(k).ok()).for_each(|p| p.remove(&mut whole));
                whole
            }
        }
    }
}

/// Which vectors a response shows (`with_vector`/`with_vectors`).
#[derive(Debug, Clone, PartialEq)]
pub enum VectorSelector {
    /// None (`false`, absent, an empty list).
    None,
    /// All of a point's vectors (`true`).
    All,
    /// Only these named vectors (a list of names).
    Only(Vec<String>),
}

impl VectorSelector {
    /// Reads `with_vector`/`with_vectors`.
    pub fn parse(value: Option<&Value>) -> VectorSelector {
        match value {
            Some(Value::Bool(true)) => VectorSelector::All,
            Some(Value::Array(names)) if !names.is_empty() => {
                VectorSelector::Only(names.iter().filter_map(Value::as_str).map(String::from).collect())
            }
            _ => VectorSelector::None,
        }
    }

    /// Whether any vector is shown.
    pub fn wanted(&self) -> bool {
        *self != VectorSelector::None
    }

    /// Drops the vectors of `rows` it does not show (a list names vectors of a collection
    /// with named vectors; the unnamed vector is shown whatever it names).
    pub fn apply(&self, rows: &mut Rows) {
        match self {
            VectorSelector::None => rows.vectors.clear(),
            VectorSelector::All => {}
            VectorSelector::Only(names) if rows.named => rows.vectors.retain(|(name, _)| names.contains(name)),
            VectorSelector::Only(_) => {}
        }
    }
}

/// Stored points read back: ids, payloads and (when asked) vectors, row by row.
#[derive(Debug, Default)]
pub struct Rows {
    /// Point ids.
    pub ids: Vec<PointId>,
    /// Payload objects (empty for none).
    pub payloads: Vec<Map<String, Value>>,
    /// The vectors read, per vector field in field order: its name and one vector per row.
    pub vectors: Vec<(String, Vec<Vec<f32>>)>,
    /// Whether the collection has named vectors: records then show an object of them.
    pub named: bool,
}

impl Rows {
    /// Reads the `id`, `payload` and (those present) vector columns of `batches`, rows of a
    /// collection described by `spec`.
    pub fn from_batches(spec: &CollectionSpec, batches: &[RecordBatch]) -> Result<Rows, QdrantError> {
        let internal = |what: &str| QdrantError::Other(axum::http::StatusCode::INTERNAL_SERVER_ERROR, format!("stored {what} column has an unexpected type"));
        let mut rows = Rows { named: spec.is_named(), ..Rows::default() };
        let present: Vec<String> =
            spec.vector_columns().into_iter().filter(|c| batches.first().is_some_and(|b| b.column_by_name(c).is_some())).collect();
        rows.vectors = present.iter().map(|c| (c.clone(), Vec::new())).collect();
        for batch in batches {
            let ids = batch.column_by_name(ID_COLUMN).and_then(|c| c.as_string_opt::<i32>()).ok_or_else(|| internal("id"))?;
            let payloads = batch.column_by_name(PAYLOAD_COLUMN).and_then(|c| c.as_string_opt::<i32>());
            for i in 0..batch.num_rows() {
                let id = ids.value(i);
                rows.ids.push(PointId::from_key(id).ok_or_else(|| internal(&format!("id \"{id}\"")))?);
                let payload = payloads.filter(|p| p.is_valid(i)).and_then(|p| serde_json::from_str::<Map<String, Value>>(p.value(i)).ok());
                rows.payloads.push(payload.unwrap_or_default());
            }
            for (name, out) in rows.vectors.iter_mut() {
                let column = batch.column_by_name(name).ok_or_else(|| internal(name))?;
                let list = column.as_fixed_size_list_opt().ok_or_else(|| internal(name))?;
                let values = list.values().as_primitive_opt::<arrow::datatypes::Float32Type>().ok_or_else(|| internal(name))?;
                let dim = list.value_length() as usize;
                for i in 0..list.len() {
                    let start = list.value_offset(i) as usize;
                    out.push(values.values()[start..start + dim].to_vec());
                }
            }
        }
        Ok(rows)
    }

    /// The vectors of field `field` (`""`: the first field read), one per row, if read.
    pub fn vector(&self, field: &str) -> Option<&[Vec<f32>]> {
        let found = if field.is_empty() { self.vectors.first() } else { self.vectors.iter().find(|(name, _)| name == field) };
        found.map(|(_, v)| v.as_slice())
    }

    /// The vectors of row `row` as Qdrant shows them: the list of an unnamed vector, an
    /// object of named ones, or null when none were read.
    fn vector_json(&self, row: usize) -> Value {
        match (self.named, self.vectors.first()) {
            (_, None) => Value::Null,
            (false, Some((_, v))) => json!(v[row]),
            (true, _) => Value::Object(self.vectors.iter().map(|(name, v)| (name.clone(), json!(v[row]))).collect()),
        }
    }

    /// The vectors of row `row`, one per field read.
    fn row_vectors(&self, row: usize) -> Vec<Vec<f32>> {
        self.vectors.iter().map(|(_, v)| v[row].clone()).collect()
    }

    /// Qdrant's records (`{id, payload, vector}`) of the rows.
    pub fn records(self, selector: &PayloadSelector) -> Vec<Value> {
        let vectors: Vec<Value> = (0..self.ids.len()).map(|row| self.vector_json(row)).collect();
        self.ids
            .into_iter()
            .zip(self.payloads)
            .zip(vectors)
            .map(|((id, payload), vector)| json!({ "id": id.to_json(), "payload": selector.apply(payload), "vector": vector }))
            .collect()
    }
}

/// A selection of points: by ids (`points`) or by `filter`.
#[derive(Debug, Deserialize, Default)]
pub struct Selection {
    /// Point ids.
    pub points: Option<Vec<Value>>,
    /// A filter.
    pub filter: Option<Value>,
}

/// The body of the payload edits.
#[derive(Debug, Deserialize)]
pub struct PayloadBody {
    /// The payload to set or overwrite with.
    pub payload: Option<Map<String, Value>>,
    /// Keys to delete.
    pub keys: Option<Vec<String>>,
    /// With `set`: the path of the object the payload is merged into.
    pub key: Option<String>,
    /// Which points.
    #[serde(flatten)]
    pub selection: Selection,
}

/// What a payload edit does to each selected point.
#[derive(Debug, Clone, Copy)]
pub enum PayloadEdit {
    /// Merge the given keys in.
    Set,
    /// Replace the payload.
    Overwrite,
    /// Remove the given keys.
    DeleteKeys,
    /// Empty it.
    Clear,
}

impl QdrantApi {
    /// `PUT /collections/{name}/points`.
    pub async fn upsert(&self, name: &str, body: UpsertBody) -> Outcome {
        self.collection(&self.resolve(name))?;
        self.upsert_points(name, body.into_points()?).await
    }

    /// Upserts points as a request gives them (REST's JSON or gRPC's messages), checked
    /// against the collection, in one commit.
    pub async fn upsert_points(&self, name: &str, points: Vec<GivenPoint>) -> Outcome {
        let collection = self.collection(&self.resolve(name))?;
        let points = points.into_iter().map(|p| new_point(&collection, p)).collect::<Result<Vec<_>, _>>()?;
        self.write_points(&collection, points).await
    }

    /// Upserts `points` in one commit; Qdrant's update result.
    pub async fn write_points(&self, collection: &Collection, points: Vec<NewPoint>) -> Outcome {
        if points.is_empty() {
            return Ok(update_result(collection.version));
        }
        let batch = points_batch(&collection.spec, &points)?;
        let gateway = &self.gateway;
        let done = gateway
            .guarded(Write, async {
                let mut job = gateway.begin_ingest(&collection.spec.name).await?;
                gateway.stage_batches(&mut job, &batch.schema(), &[batch.clone()]).await?;
                gateway.commit_ingest(job).await
            })
            .await?;
        Ok(update_result(done.version))
    }

    /// `POST /collections/{name}/points` and `GET …/points/{id}`: the points with these ids,
    /// in the order asked, missing ones left out.
    pub async fn retrieve(&self, name: &str, ids: &[Value], with_payload: &PayloadSelector, with_vector: &VectorSelector) -> Result<Vec<Value>, QdrantError> {
        let name = &self.resolve(name);
        self.collection(name)?;
        let ids = ids.iter().map(parse_id).collect::<Result<Vec<_>, _>>()?;
        let rows = self.read_points(name, Some(&ids), None, with_vector).await?;
        let mut by_id: std::collections::HashMap<PointId, Value> =
            rows.ids.clone().into_iter().zip(rows.records(with_payload)).collect();
        let mut seen = HashSet::new();
        Ok(ids.into_iter().filter(|id| seen.insert(id.clone())).filter_map(|id| by_id.remove(&id)).collect())
    }

    /// Reads points by ids or by page, with the vectors `with_vector` shows.
    pub async fn read_points(&self, name: &str, ids: Option<&[PointId]>, page: Option<Page>, with_vector: &VectorSelector) -> Result<Rows, QdrantError> {
        let name = &self.resolve(name);
        let spec = self.collection(name)?.spec;
        let mut columns = vec![ID_COLUMN.to_string(), PAYLOAD_COLUMN.to_string()];
        if with_vector.wanted() {
            columns.extend(spec.vector_columns());
        }
        let keys = ids.map(|ids| ids.iter().map(PointId::key).collect::<Vec<_>>());
        if keys.as_ref().is_some_and(Vec::is_empty) {
            return Ok(Rows::default());
        }
        let gateway = &self.gateway;
        let (_, batches) = gateway.guarded(Search, gateway.read_rows(name, 0, keys, page, columns)).await?;
        let mut rows = Rows::from_batches(&spec, &batches)?;
        with_vector.apply(&mut rows);
        Ok(rows)
    }

    /// `POST /collections/{name}/points/delete`.
    pub async fn delete_points(&self, name: &str, selection: Selection) -> Outcome {
        let name = &self.resolve(name);
        let collection = self.collection(name)?;
        let mut req = v1::DeleteRequest { collection: name.to_string(), ..Default::default() };
        match (&selection.points, &selection.filter) {
            (Some(ids), None) => {
                req.string_ids = ids.iter().map(|v| parse_id(v).map(|id| id.key())).collect::<Result<_, _>>()?;
                if req.string_ids.is_empty() {
                    return Ok(update_result(collection.version));
                }
            }
            (None, Some(filter)) => req.filter = self.filter_sql(name, filter)?.unwrap_or_else(|| "true".to_string()),
            _ => return Err(QdrantError::wrong_input("a delete selects either `points` or `filter`")),
        }
        let gateway = &self.gateway;
        let done = gateway.guarded(Write, gateway.delete(req)).await?;
        Ok(update_result(done.version))
    }

    /// The payload edits: reads the selected points and upserts them with the edited payload.
    pub async fn edit_payload(&self, name: &str, edit: PayloadEdit, body: PayloadBody) -> Outcome {
        let name = &self.resolve(name);
        let collection = self.collection(name)?;
        let rows = match (&body.selection.points, &body.selection.filter) {
            (Some(ids), None) => {
                let ids = ids.iter().map(parse_id).collect::<Result<Vec<_>, _>>()?;
                let rows = self.read_points(name, Some(&ids), None, &VectorSelector::All).await?;
                // As Qdrant: an edit naming a point that does not exist changes nothing.
                if let Some(missing) = ids.iter().find(|id| !rows.ids.contains(id)) {
                    return Err(QdrantError::NotFound(format!("Not found: No point with id {} found", missing.key())));
                }
                rows
            }
            (None, Some(filter)) => {
                let page = Page { filter: self.filter_sql(name, filter)?, from: None, limit: None };
                self.read_points(name, None, Some(page), &VectorSelector::All).await?
            }
            _ => return Err(QdrantError::wrong_input("a payload change selects either `points` or `filter`")),
        };
        let given = body.payload.unwrap_or_default();
        let keys = body.keys.unwrap_or_default();
        let path = body.key.as_deref().map(KeyPath::parse).transpose().map_err(QdrantError::wrong_input)?;
        let vectors: Vec<Vec<Vec<f32>>> = (0..rows.ids.len()).map(|row| rows.row_vectors(row)).collect();
        let points = rows
            .ids
            .into_iter()
            .zip(rows.payloads)
            .zip(vectors)
            .map(|((id, mut payload), vectors)| {
                match edit {
                    PayloadEdit::Set => set_at(&mut payload, path.as_ref(), &given),
                    PayloadEdit::Overwrite => payload = given.clone(),
                    PayloadEdit::DeleteKeys => {
                        let mut whole = Value::Object(std::mem::take(&mut payload));
                        keys.iter().filter_map(|k| KeyPath::parse(k).ok()).for_each(|p| p.remove(&mut whole));
                        if let Value::Object(map) = whole {
                            payload = map;
                        }
                    }
                    PayloadEdit::Clear => payload.clear(),
                }
                NewPoint { id, vectors, payload: Some(payload) }
            })
            .collect();
        self.write_points(&collection, points).await
    }

    /// `POST /collections/{name}/points/scroll`: a page of points in id order and the id
    /// the next page starts at.
    pub async fn scroll(&self, name: &str, body: &Value) -> Outcome {
        let name = &self.resolve(name);
        self.collection(name)?;
        let (limit, _) = super::query::limit_offset(&json!({ "limit": body.get("limit") }))?;
        if limit > MAX_PAGE {
            return Err(QdrantError::wrong_input(format!("limit is {limit}; a page holds at most {MAX_PAGE} points")));
        }
        if let Some(order_by) = body.get("order_by").filter(|o| !o.is_null()) {
            return self.scroll_ordered(name, body, order_by).await;
        }
        let from = body.get("offset").filter(|v| !v.is_null()).map(parse_id).transpose()?.map(|id| id.key());
        let filter = self.filter_sql(name, body.get("filter").unwrap_or(&Value::Null))?;
        let selector = PayloadSelector::parse(body.get("with_payload"), true)?;
        let with_vector = VectorSelector::parse(body.get("with_vector").or(body.get("with_vectors")));
        let rows = self.read_points(name, None, Some(Page { filter, from, limit: Some(limit + 1) }), &with_vector).await?;
        let mut records = rows.records(&selector);
        let next = if records.len() > limit { records.pop().map(|r| r["id"].clone()) } else { None };
        Ok(json!({ "points": records, "next_page_offset": next }))
    }

    /// `POST /collections/{name}/points/count`: exact.
    pub async fn count(&self, name: &str, body: &Value) -> Outcome {
        let name = &self.resolve(name);
        self.collection(name)?;
        let filter = self.filter_sql(name, body.get("filter").unwrap_or(&Value::Null))?;
        let gateway = &self.gateway;
        let columns = vec![ID_COLUMN.to_string()];
        let page = Page { filter, from: None, limit: None };
        let (_, batches) = gateway.guarded(Search, gateway.read_rows(name, 0, None, Some(page), columns)).await?;
        Ok(json!({ "count": batches.iter().map(RecordBatch::num_rows).sum::<usize>() }))
    }
}

/// Qdrant's answer to a write.
fn update_result(version: u64) -> Value {
    json!({ "operation_id": version, "status": "completed" })
}


/// A point id of a request.
pub fn parse_id(value: &Value) -> Result<PointId, QdrantError> {
    PointId::from_json(value).map_err(|e| QdrantError::BadRequest(format!("Format error in JSON body: {e}")))
}

/// Checks one point of an upsert.
fn new_point(collection: &Collection, point: GivenPoint) -> Result<NewPoint, QdrantError> {
    let GivenPoint { id, vectors, payload } = point;
    let id = parse_id(&id)?;
    let vectors = point_vectors_of(&collection.spec, &id, vectors)?;
    let payload = match payload {
        Value::Null => None,
        Value::Object(map) => Some(map),
        other => return Err(QdrantError::BadRequest(format!("Format error in JSON body: a payload is an object, got {other}"))),
    };
    Ok(NewPoint { id, vectors, payload })
}

/// A dense vector of a request: a list of numbers, or `{"": [...]}` (the unnamed vector).
pub fn vector_of(value: &Value) -> Result<Vec<f32>, QdrantError> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|x| x.as_f64().map(|f| f as f32).ok_or_else(|| QdrantError::BadRequest(format!("Format error in JSON body: {x} is not a number"))))
            .collect(),
        Value::Object(named) => match named.iter().next() {
            Some((name, v)) if name.is_empty() && named.len() == 1 => vector_of(v),
            Some((name, _)) => Err(QdrantError::wrong_input(format!("Not existing vector name error: {name}"))),
            None => Err(QdrantError::wrong_input("a point needs a vector")),
        },
        Value::Null => Err(QdrantError::wrong_input("a point needs a vector")),
        other => Err(QdrantError::BadRequest(format!("Format error in JSON body: a vector is a list of numbers, got {other}"))),
    }
}

/// The vectors of an upserted point, one per vector field in field order, checked and
/// normalised: a list (or `{"": list}`) for a collection with one unnamed vector, an object
/// with every named vector for one with named vectors (Grape needs every field of a point).
fn point_vectors_of(spec: &CollectionSpec, id: &PointId, given: GivenVectors) -> Result<Vec<Vec<f32>>, QdrantError> {
    let fields = spec.vector_fields();
    if !spec.is_named() {
        let vector = match given {
            GivenVectors::Plain(v) => v,
            GivenVectors::Named(mut named) if named.len() == 1 && named[0].0.is_empty() => named.remove(0).1,
            GivenVectors::Named(named) if !named.is_empty() => {
                return Err(QdrantError::wrong_input(format!("Not existing vector name error: {}", named[0].0)))
            }
            _ => return Err(QdrantError::wrong_input("a point needs a vector")),
        };
        return Ok(vec![checked_vector(spec, &fields[0], vector, true)?]);
    }
    let GivenVectors::Named(mut given) = given else {
        return Err(QdrantError::wrong_input("Not existing vector name error: "));
    };
    if let Some((unknown, _)) = given.iter().find(|(name, _)| !fields.iter().any(|f| &f.name == name)) {
        return Err(QdrantError::wrong_input(format!("Not existing vector name error: {unknown}")));
    }
    fields
        .iter()
        .map(|field| {
            let at = given.iter().position(|(name, _)| name == &field.name).ok_or_else(|| {
                QdrantError::wrong_input(format!("point {} has no vector \"{}\": Grape needs every named vector of a point", id.key(), field.name))
            })?;
            checked_vector(spec, field, std::mem::take(&mut given[at].1), true)
        })
        .collect()
}

/// The vector field `using` names in a request: `None` or `""` is the unnamed vector of a
/// collection without named vectors; anything else must be one of the collection's names.
pub fn using_field(spec: &CollectionSpec, using: Option<&Value>) -> Result<VectorField, QdrantError> {
    let name = match using {
        None | Some(Value::Null) => "",
        Some(Value::String(name)) => name.as_str(),
        Some(other) => return Err(QdrantError::BadRequest(format!("Format error in JSON body: `using` is a vector name, got {other}"))),
    };
    let field = match (spec.is_named(), name) {
        (false, "") => spec.vector_field(""),
        (false, _) => None,
        (true, name) => spec.vectors.iter().find(|f| f.name == name).cloned(),
    };
    field.ok_or_else(|| QdrantError::wrong_input(format!("Not existing vector name error: {name}")))
}

/// A vector of a request checked against vector field `field` (Qdrant's message for a wrong
/// length; Grape's for NaN or infinities) and, with `normalise`, normalised for cosine.
pub fn checked_vector(spec: &CollectionSpec, field: &VectorField, vector: Vec<f32>, normalise: bool) -> Result<Vec<f32>, QdrantError> {
    if vector.len() != field.dim as usize {
        return Err(QdrantError::wrong_input(format!("Vector dimension error: expected dim: {}, got {}", field.dim, vector.len())));
    }
    validate_vector(&spec.name, field.dim, &vector)?;
    Ok(if normalise && field.metric == Metric::Cosine { normalised(vector) } else { vector })
}

/// `v / |v|` (a zero vector stays zero), as Qdrant stores vectors of cosine collections.
pub fn normalised(v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.into_iter().map(|x| x / norm).collect()
    } else {
        v
    }
}

/// Merges `given` into the payload, at `path` when given (objects are made on the way).
fn set_at(payload: &mut Map<String, Value>, path: Option<&KeyPath>, given: &Map<String, Value>) {
    let mut target = payload;
    for step in path.map(|p| p.0.as_slice()).unwrap_or_default() {
        let Step::Key(k) = step else { return };
        let slot = target.entry(k.clone()).or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(next) = slot else { return };
        target = next;
    }
    for (k, v) in given {
        target.insert(k.clone(), v.clone());
    }
}

/// The Arrow rows of `points`: `id` (utf8), a column per vector field and `payload` (JSON
/// text).
fn points_batch(spec: &CollectionSpec, points: &[NewPoint]) -> Result<RecordBatch, QdrantError> {
    let ids = StringArray::from_iter_values(points.iter().map(|p| p.id.key()));
    let mut fields = vec![Field::new(ID_COLUMN, arrow::datatypes::DataType::Utf8, false)];
    let mut columns: Vec<ArrayRef> = vec![Arc::new(ids)];
    for (i, field) in spec.vector_fields().iter().enumerate() {
        let mut values = Vec::with_capacity(points.len() * field.dim as usize);
        for point in points {
            values.extend_from_slice(point.vectors.get(i).map_or(&[][..], Vec::as_slice));
        }
        let values = Float32Array::from(values);
        let item = Arc::new(Field::new("item", arrow::datatypes::DataType::Float32, true));
        let vectors = FixedSizeListArray::try_new(item, field.dim as i32, Arc::new(values), None).map_err(crate::error::ComputeError::from)?;
        fields.push(Field::new(&field.name, vector_type(field.dim), false));
        columns.push(Arc::new(vectors));
    }
    let payloads = points
        .iter()
        .map(|p| p.payload.as_ref().map(serde_json::to_string).transpose())
        .collect::<Result<StringArray, _>>()
        .map_err(|e| QdrantError::BadRequest(format!("Format error in JSON body: a payload: {e}")))?;
    fields.push(Field::new(PAYLOAD_COLUMN, arrow::datatypes::DataType::Utf8, true));
    columns.push(Arc::new(payloads));
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(crate::error::ComputeError::from)?)
}

#[cfg(test)]
mod tests {
    use grape_meta::catalog::Quantization;

    use super::*;

    fn named() -> CollectionSpec {
        let field = |name: &str, dim, metric| VectorField { name: name.into(), dim, metric, quantization: Quantization::None };
        CollectionSpec {
            name: "items".into(),
            dim: 2,
            metric: Metric::Cosine,
            shards: 1,
            replicas: 1,
            schema: None,
            quantization: Quantization::None,
            vectors: vec![field("image", 2, Metric::Cosine), field("text", 3, Metric::Dot)],
            vectors_on_disk: false,
        }
    }

    #[test]
    fn named_vectors_of_a_point_are_checked_per_field() {
        let spec = named();
        let id = PointId::Num(1);
        let given = |v: &Value| serde_json::from_value::<GivenVectors>(v.clone()).unwrap();
        let vectors = point_vectors_of(&spec, &id, given(&json!({"text": [1, 2, 3], "image": [3, 4]}))).unwrap();
        assert_eq!(vectors, [vec![0.6, 0.8], vec![1.0, 2.0, 3.0]], "field order; cosine vectors normalised, dot ones not");
        for (value, wanted) in [
            (json!([1, 2]), "Not existing vector name error: "),
            (json!({"image": [1, 2], "nope": [1]}), "Not existing vector name error: nope"),
            (json!({"image": [1, 2]}), "has no vector \"text\""),
            (json!({"image": [1, 2], "text": [1, 2]}), "expected dim: 3, got 2"),
        ] {
            let err = point_vectors_of(&spec, &id, given(&value)).unwrap_err().to_string();
            assert!(err.contains(wanted), "{value}: {err}");
        }
    }

    #[test]
    fn using_names_a_field_of_named_collections_only() {
        let spec = named();
        assert_eq!(using_field(&spec, Some(&json!("text"))).unwrap().dim, 3);
        assert!(using_field(&spec, None).is_err(), "a collection with named vectors needs `using`");
        assert!(using_field(&spec, Some(&json!("nope"))).is_err());
        let unnamed = CollectionSpec { vectors: vec![], ..spec };
        assert_eq!(using_field(&unnamed, None).unwrap().name, "vector");
        assert_eq!(using_field(&unnamed, Some(&json!(""))).unwrap().name, "vector");
        assert!(using_field(&unnamed, Some(&json!("vector"))).is_err(), "the unnamed vector has no name in Qdrant");
    }

    #[test]
    fn records_show_named_vectors_as_an_object() {
        let rows = Rows {
            ids: vec![PointId::Num(7)],
            payloads: vec![Map::new()],
            vectors: vec![("image".into(), vec![vec![1.0, 0.0]]), ("text".into(), vec![vec![1.0, 2.0, 3.0]])],
            named: true,
        };
        assert_eq!(rows.vector("text"), Some(&[vec![1.0, 2.0, 3.0]][..]));
        let records = rows.records(&PayloadSelector::Nothing);
        assert_eq!(records[0]["vector"], json!({"image": [1.0, 0.0], "text": [1.0, 2.0, 3.0]}));
    }
}
