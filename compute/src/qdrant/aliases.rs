//! Collection aliases: other names for a collection, usable wherever the API takes a
//! collection name (but not to create or delete one), switched atomically one action at a time.

use serde_json::{json, Value};

use super::collections::not_found;
use super::reply::{Outcome, QdrantError};
use super::settings::ALIAS_PREFIX;
use super::QdrantApi;

impl QdrantApi {
    /// The collection `name` stands for: the alias's target, or the name itself.
    pub fn resolve(&self, name: &str) -> String {
        let catalog = self.gateway.meta.applied_catalog();
        match catalog.config.get(&format!("{ALIAS_PREFIX}{name}")) {
            Some(v) if !v.value.is_empty() => v.value.clone(),
            _ => name.to_string(),
        }
    }

    /// `GET /aliases` (every alias) and `GET /collections/{name}/aliases` (those of one).
    pub fn list_aliases(&self, collection: Option<&str>) -> Outcome {
        let aliases: Vec<Value> = self
            .config_under(ALIAS_PREFIX)
            .into_iter()
            .filter(|(_, target)| collection.is_none_or(|c| c == target))
            .map(|(alias, target)| json!({ "alias_name": alias, "collection_name": target }))
            .collect();
        Ok(json!({ "aliases": aliases }))
    }

    /// `POST /collections/aliases`: `create_alias`, `delete_alias` and `rename_alias` actions,
    /// applied in order.
    pub async fn update_aliases(&self, body: &Value) -> Outcome {
        let actions = body.get("actions").and_then(Value::as_array).ok_or_else(|| QdrantError::wrong_input("aliases change with `actions`"))?;
        let mut writes = Vec::new();
        for action in actions {
            let field = |a: &Value, key: &str| -> Result<String, QdrantError> {
                a.get(key).and_then(Value::as_str).map(String::from).ok_or_else(|| QdrantError::wrong_input(format!("the alias action needs `{key}`")))
            };
            if let Some(a) = action.get("create_alias") {
                let (collection, alias) = (field(a, "collection_name")?, field(a, "alias_name")?);
                if !self.gateway.meta.applied_catalog().collections.contains_key(&collection) {
                    return Err(not_found(&collection));
                }
                writes.push((format!("{ALIAS_PREFIX}{alias}"), collection));
            } else if let Some(a) = action.get("delete_alias") {
                writes.push((format!("{ALIAS_PREFIX}{}", field(a, "alias_name")?), String::new()));
            } else if let Some(a) = action.get("rename_alias") {
                let (old, new) = (field(a, "old_alias_name")?, field(a, "new_alias_name")?);
                let target = self.resolve(&old);
                if target == old {
                    return Err(QdrantError::NotFound(format!("Not found: Alias {old} does not exist!")));
                }
                writes.push((format!("{ALIAS_PREFIX}{new}"), target));
                writes.push((format!("{ALIAS_PREFIX}{old}"), String::new()));
            } else {
                return Err(QdrantError::wrong_input(format!("unknown alias action {action}")));
            }
        }
        self.put_config(writes).await?;
        Ok(json!(true))
    }

    /// Removes the aliases of a dropped collection.
    pub async fn drop_aliases_of(&self, collection: &str) -> Result<(), QdrantError> {
        let gone = self.config_under(ALIAS_PREFIX).into_iter().filter(|(_, t)| t == collection);
        self.put_config(gone.map(|(alias, _)| (format!("{ALIAS_PREFIX}{alias}"), String::new())).collect()).await
    }
}
