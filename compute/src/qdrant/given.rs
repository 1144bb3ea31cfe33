//! Points to upsert as a request gives them, before they are checked against the collection:
//! REST's upsert body, read straight into floats (a batch of 1,000 × 128 vectors is a
//! megabyte of JSON numbers: no `serde_json::Value` per number, and the numbers read by
//! fast-float rather than serde_json), and gRPC's messages
//! (converted in [`super::grpc::convert`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::reply::QdrantError;

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
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        let text = raw.get();
        let vectors = match text.trim_start().as_bytes().first() {
            Some(b'[') => floats(text).map(GivenVectors::Plain),
            Some(b'{') => serde_json::from_str::<BTreeMap<String, Floats>>(text)
                .map(|named| GivenVectors::Named(named.into_iter().map(|(name, v)| (name, v.0)).collect()))
                .map_err(|e| e.to_string()),
            Some(b'n') => Ok(GivenVectors::Missing),
            _ => Err(format!("a vector is a list of numbers, or an object of named vectors, got {text}")),
        };
        vectors.map_err(D::Error::custom)
    }
}

/// A JSON list of numbers, read as floats. serde_json only checks the list and delimits it
/// (as a raw value); the numbers are read by [`floats`], about twice as fast as serde_json's
/// own number reader, which is most of the cost of a REST upsert's body.
#[derive(Debug)]
struct Floats(Vec<f32>);

impl<'de> Deserialize<'de> for Floats {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        floats(raw.get()).map(Floats).map_err(D::Error::custom)
    }
}

/// The numbers of `text`, a JSON list that serde_json has checked to be valid JSON: each is
/// read as an f64 with fast-float (Lemire's algorithm, correctly rounded) and narrowed to
/// f32, as serde_json reads an f32. Anything in the list but a number is an error.
fn floats(text: &str) -> Result<Vec<f32>, String> {
    let bytes = text.as_bytes();
    let skip = |mut at: usize| {
        while bytes.get(at).is_some_and(u8::is_ascii_whitespace) {
            at += 1;
        }
        at
    };
    let not_a_list = || format!("a vector is a list of numbers, got {text}");
    let mut at = skip(0);
    if bytes.get(at) != Some(&b'[') {
        return Err(not_a_list());
    }
    at = skip(at + 1);
    // Numbers and separators take at least 2 bytes each.
    let mut out = Vec::with_capacity(bytes.len() / 2);
    if bytes.get(at) == Some(&b']') {
        return Ok(out);
    }
    loop {
        let rest = &bytes[at..];
        // A JSON number starts with a digit or a minus; fast-float alone would also take
        // `nan`, `inf` or a leading `+`, which valid JSON cannot hold here anyway.
        let starts_number = rest.first().is_some_and(|b| b.is_ascii_digit() || *b == b'-');
        let (value, used) = match starts_number.then(|| fast_float2::parse_partial::<f64, _>(rest)) {
            Some(Ok(read)) => read,
            _ => {
                let item: String = String::from_utf8_lossy(rest).chars().take_while(|c| *c != ',' && *c != ']').take(40).collect();
                return Err(format!("a vector is a list of numbers; {} is not a number", item.trim()));
            }
        };
        out.push(value as f32);
        at = skip(at + used);
        match bytes.get(at) {
            Some(b',') => at = skip(at + 1),
            Some(b']') => return Ok(out),
            _ => return Err(not_a_list()),
        }
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
        deserializer.deserialize_any(BatchVectorsVisitor)
    }
}

impl UpsertBody {
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

/// Reads a batch's vectors: a list of vectors, an object of named lists of vectors, or `null`.
struct BatchVectorsVisitor;

impl<'de> Visitor<'de> for BatchVectorsVisitor {
    type Value = BatchVectors;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of vectors, or an object of named vectors' lists")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<BatchVectors, E> {
        Ok(BatchVectors::Missing)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<BatchVectors, E> {
        Ok(BatchVectors::Missing)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<BatchVectors, A::Error> {
        let mut vectors = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(Floats(vector)) = seq.next_element()? {
            vectors.push(vector);
        }
        Ok(BatchVectors::Plain(vectors))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BatchVectors, A::Error> {
        let mut named: Vec<(String, Vec<Vec<f32>>)> = Vec::new();
        while let Some((name, vectors)) = map.next_entry::<String, Vec<Floats>>()? {
            named.push((name, vectors.into_iter().map(|v| v.0).collect()));
        }
        named.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(BatchVectors::Named(named))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(body: &str) -> Result<Vec<GivenPoint>, String> {
        serde_json::from_str::<UpsertBody>(body).map_err(|e| e.to_string())?.into_points().map_err(|e| e.to_string())
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
    fn numbers_read_as_serde_json_reads_them() {
        let text = "[0, -0.0, 1, -2.5, 1e-7, 3.4028234e38, 0.1, 0.30000001192092896, -1.17549435e-38, 123456789, 7E+2, 1.5e-45]";
        let expected: Vec<f32> = serde_json::from_str(text).unwrap();
        let read = floats(text).unwrap();
        assert_eq!(read.iter().map(|f| f.to_bits()).collect::<Vec<_>>(), expected.iter().map(|f| f.to_bits()).collect::<Vec<_>>());
        // Shortest f32 forms, as clients write them.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let values: Vec<f32> = (0..10_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let bits = (state >> 32) as u32;
                // Any finite f32: an all-ones exponent (infinity, NaN) loses its top bit.
                f32::from_bits(if bits & 0x7f80_0000 == 0x7f80_0000 { bits ^ 0x4000_0000 } else { bits })
            })
            .collect();
        let text = serde_json::to_string(&values).unwrap();
        let expected: Vec<f32> = serde_json::from_str(&text).unwrap();
        assert_eq!(floats(&text).unwrap(), expected);
        assert_eq!(floats(" [ 1 ,\n2 ] ").unwrap(), vec![1.0, 2.0]);
        assert_eq!(floats("[]").unwrap(), Vec::<f32>::new());
    }

    #[test]
    fn anything_but_numbers_in_a_vector_is_an_error() {
        for bad in ["[1, \"a\"]", "[null]", "[[1]]", "[1, true]", "[{}]", "3", "[1 2]"] {
            let error = floats(bad).expect_err(bad);
            assert!(error.contains("a vector is a list of numbers"), "{bad}: {error}");
        }
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for bad in [
            r#"{"points": [{"id": 1, "vector": ["a"]}]}"#,
            r#"{"points": [{"id": 1, "vector": 3}]}"#,
            r#"{"points": [{"id": 1, "vector": {"a": [1, "x"]}}]}"#,
            r#"{"batch": {"ids": [1], "vectors": [[1, null]]}}"#,
            r#"{"batch": {"ids": [1], "vectors": {"t": [["1"]]}}}"#,
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
