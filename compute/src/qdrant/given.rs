//! Points to upsert as a request gives them, before they are checked against the collection:
//! REST's upsert body, read straight into floats (a batch of 1,000 × 128 vectors is a
//! megabyte of JSON numbers: no `serde_json::Value` per number, and in the usual case not
//! even serde's reader, see [`reader`]), and gRPC's messages
//! (converted in [`super::grpc::convert`]).

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::reply::{parse_body, QdrantError};

mod reader;

/// A point of an upsert as a request gives it.
#[derive(Debug, Deserialize)]
pub struct GivenPoint {
    /// Its id (an integer or a UUID string).
    #[serde(default)]
    pub id: Value,
    /// Its vectors.
    #[serde(default, rename = "vector")]
    pub vectors: GivenVectors,
    /// Its payload object (`null`: none).
    #[serde(default)]
    pub payload: Value,
}

/// The vectors of an upserted point as a request gives them: in JSON a list of numbers, or
/// an object of named lists (`""` is the unnamed vector).
#[derive(Debug, Default)]
pub enum GivenVectors {
    /// None.
    #[default]
    Missing,
    /// One unnamed vector.
    Plain(Vec<f32>),
    /// Named vectors, in name order.
    Named(Vec<(String, Vec<f32>)>),
}

impl<'de> Deserialize<'de> for GivenVectors {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ListOrNamed(GivenVectors::Plain, GivenVectors::Named, GivenVectors::Missing, PhantomData))
    }
}

/// The body of `PUT /collections/{name}/points`: the list form or the batch form.
#[derive(Debug, Deserialize)]
pub struct UpsertBody {
    /// The list form: `[{id, vector, payload}]`.
    pub points: Option<Vec<GivenPoint>>,
    /// The batch form: `{ids, vectors, payloads}`.
    pub batch: Option<BatchBody>,
}

/// The batch form of an upsert.
#[derive(Debug, Deserialize)]
pub struct BatchBody {
    /// One id per point.
    ids: Option<Vec<Value>>,
    /// One vector per point, or per name a list with one vector per point.
    vectors: Option<BatchVectors>,
    /// One payload per point.
    payloads: Option<Vec<Value>>,
}

/// The vectors of a batch.
#[derive(Debug)]
enum BatchVectors {
    /// One unnamed vector per point.
    Plain(Vec<Vec<f32>>),
    /// Per name, one vector per point, in name order.
    Named(Vec<(String, Vec<Vec<f32>>)>),
    /// `null`.
    Missing,
}

impl<'de> Deserialize<'de> for BatchVectors {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ListOrNamed(BatchVectors::Plain, BatchVectors::Named, BatchVectors::Missing, PhantomData))
    }
}

impl UpsertBody {
    /// Reads the JSON body of a REST upsert: in one pass by [`reader`] when it has the usual
    /// shape, else by serde (its answer or its error). Both read the same body alike.
    pub fn from_json(body: &[u8]) -> Result<UpsertBody, QdrantError> {
        match reader::read_upsert(body) {
            Some(read) => Ok(read),
            None => parse_body(body),
        }
    }

    /// The points, whichever form the body has.
    pub fn into_points(self) -> Result<Vec<GivenPoint>, QdrantError> {
        match (self.points, self.batch) {
            (Some(points), None) => Ok(points),
            (None, Some(batch)) => batch.into_points(),
            _ => Err(QdrantError::wrong_input("an upsert has either `points` or `batch`")),
        }
    }
}

impl BatchBody {
    /// One point per id.
    fn into_points(self) -> Result<Vec<GivenPoint>, QdrantError> {
        let ids = self.ids.ok_or_else(|| QdrantError::wrong_input("a batch needs `ids`"))?;
        let n = ids.len();
        let vectors: Vec<GivenVectors> = match self.vectors {
            Some(BatchVectors::Plain(list)) => list.into_iter().map(GivenVectors::Plain).collect(),
            Some(BatchVectors::Named(named)) => {
                let mut per_point: Vec<Vec<(String, Vec<f32>)>> = (0..n).map(|_| Vec::with_capacity(named.len())).collect();
                for (name, list) in named {
                    if list.len() != n {
                        return Err(QdrantError::wrong_input(format!("a batch's vectors \"{name}\" must be a list with one vector per id")));
                    }
                    for (point, vector) in per_point.iter_mut().zip(list) {
                        point.push((name.clone(), vector));
                    }
                }
                per_point.into_iter().map(GivenVectors::Named).collect()
            }
            Some(BatchVectors::Missing) | None => {
                return Err(QdrantError::wrong_input("a batch needs `vectors`: a list, or an object of named vectors' lists"))
            }
        };
        let payloads = self.payloads.unwrap_or_else(|| vec![Value::Null; n]);
        if vectors.len() != n || payloads.len() != n {
            return Err(QdrantError::wrong_input("a batch's ids, vectors and payloads must have the same length"));
        }
        Ok(ids.into_iter().zip(vectors).zip(payloads).map(|((id, vectors), payload)| GivenPoint { id, vectors, payload }).collect())
    }
}

/// Reads a JSON list of `L` through `.0`, an object of named lists of `N` through `.1`, and
/// `null` as `.2`.
struct ListOrNamed<T, F, G, L, N>(F, G, T, PhantomData<fn() -> (L, N)>);

impl<'de, T, F, G, L, N> Visitor<'de> for ListOrNamed<T, F, G, L, N>
where
    F: FnOnce(Vec<L>) -> T,
    G: FnOnce(Vec<(String, Vec<N>)>) -> T,
    L: Deserialize<'de>,
    N: Deserialize<'de>,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of numbers, or an object of named vectors")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<T, E> {
        Ok(self.2)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<T, E> {
        Ok(self.2)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element::<L>()? {
            items.push(item);
        }
        Ok((self.0)(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut named: Vec<(String, Vec<N>)> = Vec::new();
        while let Some((name, value)) = map.next_entry::<String, Vec<N>>()? {
            named.push((name, value));
        }
        named.sort_by(|a, b| a.0.cmp(&b.0));
        Ok((self.1)(named))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(body: &str) -> Result<Vec<GivenPoint>, String> {
        UpsertBody::from_json(body.as_bytes()).map_err(|e| e.to_string())?.into_points().map_err(|e| e.to_string())
    }

    #[test]
    fn both_forms_read_plain_and_named_vectors() {
        let list = points(r#"{"points": [{"id": 1, "vector": [1, 2.5], "payload": {"a": 1}}, {"id": "x", "vector": {"b": [3], "a": [4]}}]}"#).unwrap();
        assert!(matches!(&list[0].vectors, GivenVectors::Plain(v) if v == &[1.0, 2.5]));
        assert!(matches!(&list[1].vectors, GivenVectors::Named(n) if n[0].0 == "a" && n[1].1 == [3.0]));
        let batch = points(r#"{"batch": {"ids": [1, 2], "vectors": [[1], [2]], "payloads": [null, {"k": true}]}}"#).unwrap();
        assert_eq!(batch.len(), 2);
        assert!(matches!(&batch[1].vectors, GivenVectors::Plain(v) if v == &[2.0]));
        let named = points(r#"{"batch": {"ids": [1, 2], "vectors": {"t": [[1], [2]], "i": [[3], [4]]}}}"#).unwrap();
        assert!(matches!(&named[1].vectors, GivenVectors::Named(n) if n == &[("i".to_string(), vec![4.0]), ("t".to_string(), vec![2.0])]));
        let missing = points(r#"{"points": [{"id": 1}]}"#).unwrap();
        assert!(matches!(missing[0].vectors, GivenVectors::Missing));
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for bad in [
            r#"{"points": [{"id": 1, "vector": ["a"]}]}"#,
            r#"{"points": [{"id": 1, "vector": 3}]}"#,
            r#"{"points": [{"id": 1, "vector": [1, 2], "vector": [3, 4]}]}"#,
            r#"{"points": [{"id": 1, "vector": [01]}]}"#,
            r#"{"batch": {"ids": [1], "vectors": [[1, null]]}}"#,
            r#"{"batch": {"ids": [1, 2], "vectors": [[1]]}}"#,
            r#"{"batch": {"ids": [1], "vectors": {"t": [[1], [2]]}}}"#,
            r#"{"batch": {"vectors": [[1]]}}"#,
            r#"{"batch": {"ids": [1]}}"#,
            r#"{}"#,
        ] {
            assert!(points(bad).is_err(), "{bad}");
        }
    }
}
