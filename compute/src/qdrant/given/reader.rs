//! A single-pass reader of a REST upsert's body. Nearly all of such a body is vectors as
//! decimal text (a batch of 1,000 × 128 is 1.4 MB of numbers), and reading it through serde
//! took about as long as Grape takes to insert the batch. This reader walks the body's
//! structure itself, reads each vector's numbers in one pass with serde_json's own arithmetic
//! ([`number`]: the same f32 for every input, without serde's per-byte reader and visitor
//! calls), and leaves ids and payloads to serde_json.
//!
//! It reads only well-formed bodies of the expected shape. Anything else (a syntax error, a
//! key with escapes, a repeated key, a sparse vector, a value of the wrong type) makes it
//! give up, and the body is read again by serde ([`super::UpsertBody`]'s `Deserialize`),
//! which gives the same answer this reader would have and serde_json's error otherwise.

use serde_json::Value;

use super::{BatchBody, BatchVectors, GivenPoint, GivenVectors, UpsertBody};

/// The body read, or `None` when it is not a well-formed upsert body of the usual shape.
pub(super) fn read_upsert(body: &[u8]) -> Option<UpsertBody> {
    let mut reader = Reader { bytes: body, at: 0, dim: 0 };
    let (mut points, mut batch) = (None, None);
    reader.object(|r, key| match key {
        "points" if points.is_none() => Some(points = Some(r.list_of(Reader::point)?)),
        "batch" if batch.is_none() => {
            batch = Some(r.batch()?);
            Some(())
        }
        "points" | "batch" => None,
        _ => r.value().map(drop),
    })?;
    reader.skip_space();
    (reader.at == body.len()).then_some(UpsertBody { points, batch })
}

/// A position in a body, and the length of the last vector read (the next one's capacity).
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    dim: usize,
}

impl<'a> Reader<'a> {
    fn skip_space(&mut self) {
        while self.bytes.get(self.at).is_some_and(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    /// The next byte after white space, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.bytes.get(self.at).copied()
    }

    /// Consumes `byte` (after white space), or gives up.
    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// Consumes `word` (after white space) if it comes next.
    fn eat_word(&mut self, word: &[u8]) -> bool {
        self.skip_space();
        let found = self.bytes[self.at..].starts_with(word);
        if found {
            self.at += word.len();
        }
        found
    }

    /// A string without escapes or control characters (keys and vector names).
    fn plain_string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let len = self.bytes[start..].iter().position(|b| *b == b'"' || *b == b'\\' || *b < 0x20)?;
        if self.bytes[start + len] != b'"' {
            return None;
        }
        self.at += len + 1;
        std::str::from_utf8(&self.bytes[start..start + len]).ok()
    }

    /// An object: `each` is given every key, the reader at its value.
    fn object(&mut self, mut each: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.items(b'{', b'}', |r| {
            let key = r.plain_string()?;
            r.eat(b':')?;
            each(r, key)
        })
    }

    /// A list: `each` reads every item.
    fn list(&mut self, each: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.items(b'[', b']', each)
    }

    /// A list of `T`s, each read by `read`.
    fn list_of<T>(&mut self, mut read: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        let mut items = Vec::new();
        self.list(|r| {
            items.push(read(r)?);
            Some(())
        })?;
        Some(items)
    }

    /// Items separated by commas between `open` and `close`, each read by `each`.
    fn items(&mut self, open: u8, close: u8, mut each: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(open)?;
        if self.peek()? == close {
            self.at += 1;
            return Some(());
        }
        loop {
            each(self)?;
            match self.peek()? {
                b',' => self.at += 1,
                b if b == close => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Any JSON value, read by serde_json.
    fn value(&mut self) -> Option<Value> {
        self.skip_space();
        let mut values = serde_json::Deserializer::from_slice(&self.bytes[self.at..]).into_iter::<Value>();
        let value = values.next()?.ok()?;
        self.at += values.byte_offset();
        Some(value)
    }

    /// A point of the list form: `{id, vector, payload}`.
    fn point(&mut self) -> Option<GivenPoint> {
        let (mut id, mut vectors, mut payload) = (None, None, None);
        self.object(|r, key| match key {
            "id" if id.is_none() => Some(id = Some(r.value()?)),
            "vector" if vectors.is_none() => Some(vectors = Some(r.vectors()?)),
            "payload" if payload.is_none() => Some(payload = Some(r.value()?)),
            "id" | "vector" | "payload" => None,
            _ => r.value().map(drop),
        })?;
        Some(GivenPoint { id: id.unwrap_or_default(), vectors: vectors.unwrap_or_default(), payload: payload.unwrap_or_default() })
    }

    /// A point's vectors: a list of numbers, an object of named lists, or `null`.
    fn vectors(&mut self) -> Option<GivenVectors> {
        match self.peek()? {
            b'[' => Some(GivenVectors::Plain(self.floats()?)),
            b'{' => Some(GivenVectors::Named(self.named(Self::floats)?)),
            _ => self.eat_word(b"null").then_some(GivenVectors::Missing),
        }
    }

    /// An object of named `T`s, in name order (a repeated name: give up).
    fn named<T>(&mut self, mut read: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<(String, T)>> {
        let mut named = Vec::new();
        self.object(|r, name| {
            named.push((name.to_string(), read(r)?));
            Some(())
        })?;
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named.windows(2).all(|w| w[0].0 != w[1].0).then_some(named)
    }

    /// The batch form: `{ids, vectors, payloads}`.
    fn batch(&mut self) -> Option<BatchBody> {
        let (mut ids, mut vectors, mut payloads) = (None, None, None);
        self.object(|r, key| match key {
            "ids" if ids.is_none() => Some(ids = Some(r.values()?)),
            "vectors" if vectors.is_none() => {
                // `null` reads as no vectors at all (serde's `Option`), not as `Missing`.
                vectors = Some(match r.peek()? {
                    b'[' => Some(BatchVectors::Plain(r.vector_list()?)),
                    b'{' => Some(BatchVectors::Named(r.named(Self::vector_list)?)),
                    _ => r.eat_word(b"null").then_some(None)?,
                });
                Some(())
            }
            "payloads" if payloads.is_none() => Some(payloads = Some(r.values()?)),
            "ids" | "vectors" | "payloads" => None,
            _ => r.value().map(drop),
        })?;
        Some(BatchBody { ids: ids.flatten(), vectors: vectors.flatten(), payloads: payloads.flatten() })
    }

    /// A list of values, or `None` inside for `null`.
    fn values(&mut self) -> Option<Option<Vec<Value>>> {
        match self.value()? {
            Value::Array(values) => Some(Some(values)),
            Value::Null => Some(None),
            _ => None,
        }
    }

    /// A list of vectors.
    fn vector_list(&mut self) -> Option<Vec<Vec<f32>>> {
        self.list_of(Self::floats)
    }

    /// A list of numbers, read as serde_json reads them into f32s.
    fn floats(&mut self) -> Option<Vec<f32>> {
        let mut out = Vec::with_capacity(self.dim);
        self.list(|r| {
            r.skip_space();
            let (value, len) = number(&r.bytes[r.at..])?;
            out.push(value);
            r.at += len;
            Some(())
        })?;
        self.dim = out.len();
        Some(out)
    }
}

/// Exact powers of ten as f64 (10^22 is the largest one exactly representable).
const POW10: [f64; 23] =
    [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22];

/// The JSON number `text` starts with (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`), as
/// an f32, and its length; `None` if `text` does not start with one.
///
/// The usual vector element, a decimal of at most 19 digits with a decimal exponent within
/// ±22, is computed here exactly as serde_json computes it (without its `float_roundtrip`
/// feature): the digits as an integer, converted to f64 and divided or multiplied by an exact
/// power of ten, then narrowed to f32. Any other number (an integer, more digits, a larger
/// exponent) is handed to serde_json itself, so every number reads as serde reads it.
fn number(text: &[u8]) -> Option<(f32, usize)> {
    let digit = |at: usize| text.get(at).filter(|b| b.is_ascii_digit()).map(|b| u64::from(b - b'0'));
    let negative = text.first() == Some(&b'-');
    let mut at = usize::from(negative);
    let mut significand = 0u64;
    let mut digits = 0usize;
    let mut read_digits = |at: &mut usize, significand: &mut u64| {
        while let Some(d) = digit(*at) {
            // Past 19 digits the integer may overflow: the answer is serde's (below).
            *significand = significand.wrapping_mul(10).wrapping_add(d);
            digits += 1;
            *at += 1;
        }
    };
    match text.get(at)? {
        b'0' => at += 1,
        b'1'..=b'9' => read_digits(&mut at, &mut significand),
        _ => return None,
    }
    let mut exponent = 0i64;
    let mut decimal = false;
    if text.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        read_digits(&mut at, &mut significand);
        if at == start {
            return None;
        }
        exponent -= (at - start) as i64;
        decimal = true;
    }
    if matches!(text.get(at), Some(b'e' | b'E')) {
        at += 1;
        let sign = match text.get(at) {
            Some(b'-') => -1,
            Some(b'+') => 1,
            _ => 0,
        };
        at += usize::from(sign != 0);
        let start = at;
        let mut power = 0i64;
        while let Some(d) = digit(at) {
            power = (power * 10 + d as i64).min(1 << 20);
            at += 1;
        }
        if at == start {
            return None;
        }
        exponent += if sign < 0 { -power } else { power };
        decimal = true;
    }
    // `digits` counts a leading `0.`'s zero too: a little conservative, never wrong.
    let fast = decimal && digits <= 19 && exponent.unsigned_abs() < POW10.len() as u64;
    if !fast {
        return serde_json::from_slice::<f32>(&text[..at]).ok().map(|v| (v, at));
    }
    let power = POW10[exponent.unsigned_abs() as usize];
    let magnitude = if exponent < 0 { significand as f64 / power } else { significand as f64 * power };
    let value = if negative { -magnitude } else { magnitude };
    Some((value as f32, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What serde reads `body` as (the reference), in `Debug` form.
    fn by_serde(body: &str) -> Result<String, String> {
        let read: UpsertBody = serde_json::from_str(body).map_err(|e| e.to_string())?;
        Ok(format!("{read:?}"))
    }

    #[test]
    fn numbers_are_read_as_serde_json_reads_them() {
        let text = "[0, -0.0, 1, -2.5, 1e-7, 3.4028234e38, 0.1, 0.30000001192092896, -1.17549435e-38, 123456789, 7E+2, 1.5e-45, 2e-1]";
        let expected: Vec<f32> = serde_json::from_str(text).unwrap();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let mut reader = Reader { bytes: text.as_bytes(), at: 0, dim: 0 };
        assert_eq!(bits(&reader.floats().unwrap()), bits(&expected));
        // Any finite f32 in its shortest form, as clients write them, and in 17 digits, as
        // Python's qdrant-client writes them.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let values: Vec<f32> = (0..20_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let bits = (state >> 32) as u32;
                f32::from_bits(if bits & 0x7f80_0000 == 0x7f80_0000 { bits ^ 0x4000_0000 } else { bits })
            })
            .collect();
        let wide: Vec<f64> = values.iter().map(|v| f64::from(*v)).collect();
        for text in [serde_json::to_string(&values).unwrap(), serde_json::to_string(&wide).unwrap()] {
            let expected: Vec<f32> = serde_json::from_str(&text).unwrap();
            let mut reader = Reader { bytes: text.as_bytes(), at: 0, dim: 0 };
            assert_eq!(bits(&reader.floats().unwrap()), bits(&expected));
        }
    }

    #[test]
    fn only_json_numbers_are_numbers() {
        for good in ["0", "-0", "12", "1.5", "-1.5e3", "2E-7", "1e+2", "1e400", "12345678901234567890123.5"] {
            let read = number(format!("{good},").as_bytes()).map(|(v, len)| (v.to_bits(), len));
            let by_serde = serde_json::from_str::<f32>(good).ok().map(|v| (v.to_bits(), good.len()));
            assert_eq!(read, by_serde, "{good}");
        }
        for bad in ["", "-", "+1", ".5", "-.5", "1.", "1.e5", "1e", "1e+", "nan", "inf", "\"1\"", "null"] {
            assert_eq!(number(bad.as_bytes()), None, "{bad}");
        }
        // A leading zero ends the number: `01` is `0` and then a stray `1`.
        assert_eq!(number(b"01"), Some((0.0, 1)));
    }

    #[test]
    fn every_usual_body_reads_as_serde_reads_it() {
        let bodies = [
            r#"{"points": [{"id": 1, "vector": [1, 2.5], "payload": {"a": 1}}, {"id": "5c56c793-69f3-4fbf-87e6-c4bf54c28c26", "vector": {"b": [3], "a": [4]}}]}"#,
            r#"{"batch": {"ids": [1, 2], "vectors": [[1], [2]], "payloads": [null, {"k": [true, {"x": "y\"z"}]}]}}"#,
            r#"{"batch": {"ids": [1, 2], "vectors": {"t": [[1], [2]], "i": [[3], [4]]}}}"#,
            r#"{"batch": {"ids": [1], "vectors": null, "payloads": null}}"#,
            r#"{"points": [{"id": 1}, {"id": 2, "vector": null, "payload": null, "other": [1, {"a": 2}]}], "shard_key": null}"#,
            " \n{ \"points\" : [ { \"id\" : 7 , \"vector\" : [ -1.5e-3 ,\t2 ] } ] } \n",
            r#"{"points": []}"#,
            r#"{}"#,
            r#"{"points": [{"id": 1, "vector": []}], "batch": {"ids": []}}"#,
        ];
        for body in bodies {
            let read = read_upsert(body.as_bytes()).unwrap_or_else(|| panic!("the reader gave up on {body}"));
            assert_eq!(Ok(format!("{read:?}")), by_serde(body), "{body}");
        }
    }

    #[test]
    fn anything_unusual_is_left_to_serde() {
        for body in [
            r#"{"points": [{"id": 1, "vector": ["a"]}]}"#,
            r#"{"points": [{"id": 1, "vector": [1, null]}]}"#,
            r#"{"points": [{"id": 1, "vector": 3}]}"#,
            r#"{"points": [{"id": 1, "vector": [01]}]}"#,
            r#"{"points": [{"id": 1, "vector": [1.]}]}"#,
            r#"{"points": [{"id": 1, "vector": [NaN]}]}"#,
            r#"{"points": [{"id": 1, "vector": {"a": {"indices": [1], "values": [2]}}}]}"#,
            r#"{"points": [{"id": 1, "vector": {"a": [1], "a": [2]}}]}"#,
            r#"{"points": [{"id": 1, "id": 2}]}"#,
            r#"{"points": [], "points": []}"#,
            r#"{"poi\u006ets": []}"#,
            "{\"poi\nnts\": []}",
            "{\"points\": [{\"id\": 1, \"vector\": {\"a\tb\": [1]}}]}",
            r#"{"points": [{"id": 1, "vector": [1, 2]},]}"#,
            r#"{"points": [{"id": 1, "vector": [1 2]}]}"#,
            r#"{"batch": {"ids": 1, "vectors": [[1]]}}"#,
            r#"{"batch": {"ids": [1], "vectors": [[[1]]]}}"#,
            r#"{"points": []} trailing"#,
            r#"{"points": [{"id": 1, "vector": [1], "payload": {"a": tru}}]}"#,
            "",
            "[]",
            "{\"points\": [{\"id\": 1, \"vector\": [1]}]",
        ] {
            assert!(read_upsert(body.as_bytes()).is_none(), "the reader took {body}");
        }
    }

    #[test]
    fn cut_or_corrupted_bodies_never_panic() {
        let body = r#"{"batch": {"ids": [1, "x", 3], "vectors": {"a": [[1.5, -2e3], [0, 1]], "b": [[1], [2]]}, "payloads": [{"k": [1, {"n": null}]}, null]}}"#;
        for cut in 0..body.len() {
            let _ = read_upsert(&body.as_bytes()[..cut]);
            let mut flipped = body.as_bytes().to_vec();
            flipped[cut] ^= 0x55;
            if let Some(read) = read_upsert(&flipped) {
                let text = String::from_utf8_lossy(&flipped);
                assert_eq!(Ok(format!("{read:?}")), by_serde(&text), "{text}");
            }
        }
    }
}
