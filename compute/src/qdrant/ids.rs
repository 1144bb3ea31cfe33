//! Qdrant point ids (unsigned integers or UUIDs) and how they are kept in Grape's `id` column:
//! a utf8 key holding the integer in decimal or the UUID in its hyphenated lowercase form.
//! Ordering by `(length(id), id)` then orders integers by value before UUIDs, as Qdrant does.

use serde_json::Value;

/// A Qdrant point id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PointId {
    /// An unsigned integer id.
    Num(u64),
    /// A UUID, hyphenated and lowercase.
    Uuid(String),
}

impl PointId {
    /// Reads an id from JSON: a non-negative integer or a UUID string (any form the `uuid`
    /// crate reads; a decimal string is read as an integer, as Qdrant's gRPC does not allow but
    /// its REST parser tolerates).
    pub fn from_json(value: &Value) -> Result<PointId, String> {
        match value {
            Value::Number(n) => n.as_u64().map(PointId::Num).ok_or_else(|| format!("point id {n} is not an unsigned integer")),
            Value::String(s) => PointId::from_key(s).ok_or_else(|| format!("point id \"{s}\" is neither an unsigned integer nor a UUID")),
            other => Err(format!("a point id is an unsigned integer or a UUID string, got {other}")),
        }
    }

    /// Reads an id from its `id` column form (or any UUID form).
    pub fn from_key(text: &str) -> Option<PointId> {
        if let Ok(n) = text.parse::<u64>() {
            return Some(PointId::Num(n));
        }
        uuid::Uuid::parse_str(text).ok().map(|u| PointId::Uuid(u.hyphenated().to_string()))
    }

    /// The id's value in the `id` column.
    pub fn key(&self) -> String {
        match self {
            PointId::Num(n) => n.to_string(),
            PointId::Uuid(u) => u.clone(),
        }
    }

    /// The id as Qdrant's JSON shows it.
    pub fn to_json(&self) -> Value {
        match self {
            PointId::Num(n) => Value::from(*n),
            PointId::Uuid(u) => Value::from(u.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_and_writes_ids() {
        assert_eq!(PointId::from_json(&json!(5)).unwrap(), PointId::Num(5));
        let u = PointId::from_json(&json!("550E8400E29B41D4A716446655440000")).unwrap();
        assert_eq!(u.key(), "550e8400-e29b-41d4-a716-446655440000");
        assert_eq!(PointId::from_key(&u.key()), Some(u.clone()));
        for bad in [json!(-1), json!(1.5), json!("nope"), json!(null)] {
            assert!(PointId::from_json(&bad).is_err(), "{bad}");
        }
        // Integers order before UUIDs, by value.
        let mut keys = vec![u.key(), "10".to_string(), "9".to_string()];
        keys.sort_by_key(|k| (k.len(), k.clone()));
        assert_eq!(keys, vec!["9", "10", &u.key()]);
    }
}
