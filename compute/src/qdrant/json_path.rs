//! Qdrant's payload key paths (`a.b`, `a[].b`, `a[0].b`, `"a.b".c`) and the values they reach
//! in a JSON payload, with the semantics of Qdrant's reference implementation: arrays met on
//! the way are entered by `[]`, and an array at the end of the path is flattened into its
//! elements when asked to (filters match if any element matches).

use serde_json::{Map, Value};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// An object's field.
    Key(String),
    /// One element of an array.
    Index(usize),
    /// Every element of an array (`[]`).
    Every,
}

/// A parsed key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Step>);

impl KeyPath {
    /// Parses `key`; fails with a message naming the key when it is empty or malformed.
    pub fn parse(key: &str) -> Result<KeyPath, String> {
        let bad = || format!("invalid payload key \"{key}\"");
        let mut steps = Vec::new();
        let mut rest = key;
        loop {
            // A field: quoted (may hold dots and brackets) or plain up to `.` or `[`.
            let (field, after) = if let Some(quoted) = rest.strip_prefix('"') {
                let end = quoted.find('"').ok_or_else(bad)?;
                (&quoted[..end], &quoted[end + 1..])
            } else {
                let end = rest.find(['.', '[']).unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            };
            if field.is_empty() {
                return Err(bad());
            }
            steps.push(Step::Key(field.to_string()));
            rest = after;
            while let Some(inner) = rest.strip_prefix('[') {
                let end = inner.find(']').ok_or_else(bad)?;
                let index = &inner[..end];
                steps.push(if index.is_empty() { Step::Every } else { Step::Index(index.parse().map_err(|_| bad())?) });
                rest = &inner[end + 1..];
            }
            if rest.is_empty() {
                return Ok(KeyPath(steps));
            }
            rest = rest.strip_prefix('.').filter(|r| !r.is_empty()).ok_or_else(bad)?;
        }
    }

    /// The values the path reaches in `payload`, `None` when it reaches none. With `flat`, an
    /// array reached by the last field is replaced by its elements.
    pub fn values<'a>(&self, payload: &'a Value, flat: bool) -> Option<Vec<&'a Value>> {
        let mut out = Vec::new();
        collect(payload, &self.0, flat, &mut out);
        (!out.is_empty()).then_some(out)
    }
}

impl KeyPath {
    /// Removes what the path reaches from `payload` (through arrays at `[]` and `[i]`).
    pub fn remove(&self, payload: &mut Value) {
        remove(payload, &self.0);
    }

    /// Copies what the path reaches in `from` into `into` at the same place, making the
    /// objects on the way (a path through an array copies the whole array).
    pub fn project(&self, from: &Value, into: &mut Map<String, Value>) {
        let mut source = from;
        let mut target = into;
        let keys: Vec<&String> = self.0.iter().map_while(|s| if let Step::Key(k) = s { Some(k) } else { None }).collect();
        let Some((last, on_the_way)) = keys.split_last() else { return };
        for key in on_the_way {
            let Some(next) = source.get(key.as_str()).filter(|v| v.is_object()) else {
                // Not an object below: copy what is there whole.
                if let Some(v) = source.get(key.as_str()) {
                    target.insert((*key).clone(), v.clone());
                }
                return;
            };
            source = next;
            let slot = target.entry((*key).clone()).or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(t) = slot else { return };
            target = t;
        }
        if let Some(v) = source.get(last.as_str()) {
            target.insert((*last).clone(), v.clone());
        }
    }
}

/// Removes what `steps` reach below `data`.
fn remove(data: &mut Value, steps: &[Step]) {
    let Some((step, rest)) = steps.split_first() else { return };
    match (step, data) {
        (Step::Key(k), Value::Object(map)) if rest.is_empty() => {
            map.remove(k);
        }
        (Step::Key(k), Value::Object(map)) => {
            if let Some(v) = map.get_mut(k) {
                remove(v, rest);
            }
        }
        (Step::Index(i), Value::Array(items)) if rest.is_empty() => {
            if *i < items.len() {
                items.remove(*i);
            }
        }
        (Step::Index(i), Value::Array(items)) => {
            if let Some(v) = items.get_mut(*i) {
                remove(v, rest);
            }
        }
        (Step::Every, Value::Array(items)) if rest.is_empty() => items.clear(),
        (Step::Every, Value::Array(items)) => items.iter_mut().for_each(|v| remove(v, rest)),
        _ => {}
    }
}

/// Walks `steps` from `data`, pushing what the last step reaches.
fn collect<'a>(data: &'a Value, steps: &[Step], flat: bool, out: &mut Vec<&'a Value>) {
    let Some((step, rest)) = steps.split_first() else { return };
    let next: Vec<&Value> = match (step, data) {
        (Step::Key(k), Value::Object(map)) => map.get(k).into_iter().collect(),
        (Step::Index(i), Value::Array(items)) => items.get(*i).into_iter().collect(),
        (Step::Every, Value::Array(items)) => items.iter().collect(),
        _ => return,
    };
    if rest.is_empty() {
        for value in next {
            match value {
                Value::Array(items) if flat && matches!(step, Step::Key(_)) => out.extend(items),
                _ => out.push(value),
            }
        }
    } else {
        for value in next {
            collect(value, rest, flat, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_paths() {
        assert_eq!(KeyPath::parse("a.b").unwrap().0, vec![Step::Key("a".into()), Step::Key("b".into())]);
        assert_eq!(KeyPath::parse("a[].b").unwrap().0, vec![Step::Key("a".into()), Step::Every, Step::Key("b".into())]);
        assert_eq!(KeyPath::parse("a[2]").unwrap().0, vec![Step::Key("a".into()), Step::Index(2)]);
        assert_eq!(KeyPath::parse("\"x.y\".z").unwrap().0, vec![Step::Key("x.y".into()), Step::Key("z".into())]);
        for bad in ["", ".a", "a.", "a..b", "a[x]", "a[", "\"a"] {
            assert!(KeyPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reaches_values_like_qdrant() {
        let p = json!({"a": {"b": [1, 2]}, "c": [{"d": 1}, {"d": [3, 4]}, {"e": 0}], "n": null});
        let get = |k: &str, flat| KeyPath::parse(k).unwrap().values(&p, flat).map(|v| v.into_iter().cloned().collect::<Vec<_>>());
        assert_eq!(get("a.b", true), Some(vec![json!(1), json!(2)]));
        assert_eq!(get("a.b", false), Some(vec![json!([1, 2])]));
        assert_eq!(get("c[].d", true), Some(vec![json!(1), json!(3), json!(4)]));
        assert_eq!(get("c[1].d", true), Some(vec![json!(3), json!(4)]));
        assert_eq!(get("n", true), Some(vec![json!(null)]));
        assert_eq!(get("missing", true), None);
        assert_eq!(get("a.b.c", true), None);
    }

    #[test]
    fn removes_and_projects_paths() {
        let p = json!({"a": {"b": 1, "c": 2}, "l": [{"x": 1, "y": 2}], "z": 3});
        let mut removed = p.clone();
        for k in ["a.b", "l[].x", "nope.x"] {
            KeyPath::parse(k).unwrap().remove(&mut removed);
        }
        assert_eq!(removed, json!({"a": {"c": 2}, "l": [{"y": 2}], "z": 3}));
        let mut out = Map::new();
        for k in ["a.c", "z", "missing"] {
            KeyPath::parse(k).unwrap().project(&p, &mut out);
        }
        assert_eq!(Value::Object(out), json!({"a": {"c": 2}, "z": 3}));
    }
}
