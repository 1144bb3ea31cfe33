//! Qdrant's batch of updates (`POST /collections/{name}/points/batch`, gRPC's `UpdateBatch`):
//! upserts, deletes and payload edits applied in order, each its own commit, as Qdrant
//! applies them (a failing operation stops the batch; the ones before it stay applied). The
//! whole batch is read before anything is applied, so a malformed one changes nothing.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::given::{GivenPoint, UpsertBody};
use super::points::{PayloadBody, PayloadEdit, Selection};
use super::reply::QdrantError;
use super::QdrantApi;

/// One operation of a batch, as either API gives it.
#[derive(Debug)]
pub enum UpdateOp {
    /// Upsert these points.
    Upsert(Vec<GivenPoint>),
    /// Delete the selected points.
    Delete(Selection),
    /// Edit the selected points' payloads.
    Payload(PayloadEdit, PayloadBody),
}

impl UpdateOp {
    /// The operations of a REST body `{"operations": [{"upsert": …}, {"delete": …}, …]}`.
    pub fn from_rest(body: &Value) -> Result<Vec<UpdateOp>, QdrantError> {
        let operations = body
            .get("operations")
            .and_then(Value::as_array)
            .ok_or_else(|| QdrantError::BadRequest("Format error in JSON body: missing field `operations`".into()))?;
        operations.iter().map(UpdateOp::from_rest_one).collect()
    }

    /// One REST operation: an object with one key naming its kind.
    fn from_rest_one(op: &Value) -> Result<UpdateOp, QdrantError> {
        let (kind, value) = op
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.iter().next())
            .ok_or_else(|| QdrantError::BadRequest(format!("Format error in JSON body: an operation is an object with one key (upsert, delete, set_payload, …), got {op}")))?;
        let edit = |edit: PayloadEdit| -> Result<UpdateOp, QdrantError> { Ok(UpdateOp::Payload(edit, read(value)?)) };
        match kind.as_str() {
            "upsert" => Ok(UpdateOp::Upsert(read::<UpsertBody>(value)?.into_points()?)),
            "delete" => Ok(UpdateOp::Delete(read(value)?)),
            "set_payload" => edit(PayloadEdit::Set),
            "overwrite_payload" => edit(PayloadEdit::Overwrite),
            "delete_payload" => edit(PayloadEdit::DeleteKeys),
            "clear_payload" => Ok(UpdateOp::Payload(PayloadEdit::Clear, PayloadBody { payload: None, keys: None, key: None, selection: read(value)? })),
            "update_vectors" | "delete_vectors" => Err(QdrantError::wrong_input(format!("{kind}: not supported by Grape yet"))),
            other => Err(QdrantError::BadRequest(format!("Format error in JSON body: unknown operation `{other}`"))),
        }
    }
}

/// `value` read as a `T`, with serde's message as a 400.
fn read<T: DeserializeOwned>(value: &Value) -> Result<T, QdrantError> {
    T::deserialize(value).map_err(|e| QdrantError::BadRequest(format!("Format error in JSON body: {e}")))
}

impl QdrantApi {
    /// Applies `operations` to `name` in order; one update result per operation.
    pub async fn update_batch(&self, name: &str, operations: Vec<UpdateOp>) -> Result<Value, QdrantError> {
        self.collection(&self.resolve(name))?;
        let mut results = Vec::with_capacity(operations.len());
        for op in operations {
            results.push(match op {
                UpdateOp::Upsert(points) => self.upsert_points(name, points).await?,
                UpdateOp::Delete(selection) => self.delete_points(name, selection).await?,
                UpdateOp::Payload(edit, body) => self.edit_payload(name, edit, body).await?,
            });
        }
        Ok(Value::Array(results))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rest_operations_are_read_in_order() {
        let body = json!({"operations": [
            {"upsert": {"points": [{"id": 1, "vector": [1.0, 2.0]}]}},
            {"upsert": {"batch": {"ids": [2, 3], "vectors": [[1.0, 0.0], [0.0, 1.0]]}}},
            {"delete": {"points": [1]}},
            {"set_payload": {"payload": {"a": 1}, "points": [2], "key": "x"}},
            {"overwrite_payload": {"payload": {}, "filter": {"must": []}}},
            {"delete_payload": {"keys": ["a"], "points": [2]}},
            {"clear_payload": {"points": [3]}},
        ]});
        let ops = UpdateOp::from_rest(&body).unwrap();
        let kinds: Vec<String> = ops
            .iter()
            .map(|op| match op {
                UpdateOp::Upsert(points) => format!("upsert {}", points.len()),
                UpdateOp::Delete(_) => "delete".into(),
                UpdateOp::Payload(edit, _) => format!("{edit:?}"),
            })
            .collect();
        assert_eq!(kinds, ["upsert 1", "upsert 2", "delete", "Set", "Overwrite", "DeleteKeys", "Clear"]);
        let UpdateOp::Payload(_, set) = &ops[3] else { panic!("not a payload edit") };
        assert_eq!(set.key.as_deref(), Some("x"));
    }

    #[test]
    fn a_malformed_batch_is_refused_whole() {
        for body in [
            json!({}),
            json!({"operations": [{"upsert": {"points": []}}, {"explode": {}}]}),
            json!({"operations": [{"upsert": {}, "delete": {}}]}),
            json!({"operations": [{"delete": {"points": "nope"}}]}),
            json!({"operations": [{"update_vectors": {"points": []}}]}),
        ] {
            assert!(matches!(UpdateOp::from_rest(&body), Err(QdrantError::BadRequest(_))), "{body}");
        }
    }
}
