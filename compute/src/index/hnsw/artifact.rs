//! The stored form of an [`HnswIndex`]: one immutable object beside its segment.
//!
//! Layout (little-endian): the magic `GRAPEANN`, a format version, a header (metric,
//! quantization, dimension, rows, `m`, `m0`, entry row), then length-prefixed arrays (levels,
//! level-0 links, upper starts, upper links, the codes' parameters and codes), and a CRC-32
//! of everything before it. Reading checks the checksum, every length, and that the graph
//! names only existing rows, so a corrupt or truncated object is an error, never a panic or a
//! wrong answer.

use grape_meta::catalog::{Metric, Quantization};

use super::graph::Graph;
use super::HnswIndex;
use crate::index::codes::{bq_words, from_bf16, to_bf16, Codes};

/// First bytes of every index artifact.
const MAGIC: &[u8; 8] = b"GRAPEANN";
/// Layout version written; readers refuse others.
const FORMAT_VERSION: u32 = 1;

/// Why an artifact could not be read.
#[derive(Debug, thiserror::Error)]
#[error("index artifact: {0}")]
pub struct ArtifactError(String);

fn metric_code(m: Metric) -> u8 {
    match m {
        Metric::L2 => 0,
        Metric::Cosine => 1,
        Metric::Dot => 2,
        Metric::Manhattan => 3,
    }
}

fn quantization_code(q: Quantization) -> u8 {
    match q {
        Quantization::None => 0,
        Quantization::Sq8 => 1,
        Quantization::Bq => 2,
    }
}

/// Appends little-endian values and length-prefixed arrays.
struct Writer(Vec<u8>);

impl Writer {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32s(&mut self, v: &[u32]) {
        self.0.extend_from_slice(&(v.len() as u64).to_le_bytes());
        v.iter().for_each(|x| self.0.extend_from_slice(&x.to_le_bytes()));
    }
    fn f32s(&mut self, v: &[f32]) {
        self.0.extend_from_slice(&(v.len() as u64).to_le_bytes());
        v.iter().for_each(|x| self.0.extend_from_slice(&x.to_le_bytes()));
    }
    fn u64s(&mut self, v: &[u64]) {
        self.0.extend_from_slice(&(v.len() as u64).to_le_bytes());
        v.iter().for_each(|x| self.0.extend_from_slice(&x.to_le_bytes()));
    }
    fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(&(v.len() as u64).to_le_bytes());
        self.0.extend_from_slice(v);
    }
}

/// Reads what [`Writer`] wrote, failing on anything short or oversized.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ArtifactError> {
        if self.0.len() < n {
            return Err(ArtifactError(format!("truncated: {n} bytes wanted, {} left", self.0.len())));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, ArtifactError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, ArtifactError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }
    /// An array of `width`-byte items, its item count checked to be `expected` when given.
    fn array(&mut self, width: usize, expected: Option<usize>) -> Result<&'a [u8], ArtifactError> {
        let len = u64::from_le_bytes(self.take(8)?.try_into().unwrap_or_default());
        let len = usize::try_from(len).map_err(|_| ArtifactError(format!("array of {len} items")))?;
        if let Some(want) = expected.filter(|w| *w != len) {
            return Err(ArtifactError(format!("array of {len} items, expected {want}")));
        }
        let bytes = len.checked_mul(width).ok_or_else(|| ArtifactError(format!("array of {len} items")))?;
        self.take(bytes)
    }
    fn u32s(&mut self, expected: Option<usize>) -> Result<Vec<u32>, ArtifactError> {
        Ok(self.array(4, expected)?.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }
    fn f32s(&mut self, expected: Option<usize>) -> Result<Vec<f32>, ArtifactError> {
        Ok(self.array(4, expected)?.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }
    fn u64s(&mut self, expected: usize) -> Result<Vec<u64>, ArtifactError> {
        Ok(self.array(8, Some(expected))?.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default())).collect())
    }
}

/// Serialises `index` to the bytes of its artifact.
pub fn encode(index: &HnswIndex) -> Vec<u8> {
    let g = &index.graph;
    let mut w = Writer(Vec::with_capacity(index.memory_bytes() + 128));
    w.0.extend_from_slice(MAGIC);
    w.u32(FORMAT_VERSION);
    w.0.push(metric_code(index.metric));
    w.0.push(quantization_code(index.codes.quantization()));
    for v in [index.dim, g.rows(), g.m, g.m0, g.entry as usize] {
        w.u32(v as u32);
    }
    w.bytes(&g.levels);
    w.u32s(&g.level0);
    w.u32s(&g.upper_start);
    w.u32s(&g.upper);
    match &index.codes {
        Codes::None => {}
        Codes::Sq8 { min, scale, codes, .. } => {
            w.f32s(min);
            w.f32s(scale);
            w.bytes(codes);
        }
        Codes::Bq { centroids, cluster, alpha, offset, bits } => {
            w.f32s(centroids);
            w.bytes(cluster);
            // Stored as f32, as before step sizes were bfloat16: older artifacts still load.
            w.f32s(&alpha.iter().map(|a| from_bf16(*a)).collect::<Vec<_>>());
            w.f32s(offset);
            w.u64s(bits);
        }
    }
    let crc = crc32fast::hash(&w.0);
    w.u32(crc);
    w.0
}

/// Reads an artifact written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<HnswIndex, ArtifactError> {
    let (body, crc) = bytes.split_at(bytes.len().saturating_sub(4));
    let stored = <[u8; 4]>::try_from(crc).map(u32::from_le_bytes).map_err(|_| ArtifactError("empty".into()))?;
    if crc32fast::hash(body) != stored {
        return Err(ArtifactError("checksum mismatch: the object is corrupt".into()));
    }
    let mut r = Reader(body);
    if r.take(8)? != MAGIC {
        return Err(ArtifactError("not an index artifact (bad magic)".into()));
    }
    let version = r.u32()?;
    if version != FORMAT_VERSION {
        return Err(ArtifactError(format!("format version {version}, this build reads {FORMAT_VERSION}")));
    }
    let metric = match r.u8()? {
        0 => Metric::L2,
        1 => Metric::Cosine,
        2 => Metric::Dot,
        3 => Metric::Manhattan,
        m => return Err(ArtifactError(format!("unknown metric {m}"))),
    };
    let quantization = r.u8()?;
    let [dim, rows, m, m0, entry] = [r.u32()?, r.u32()?, r.u32()?, r.u32()?, r.u32()?].map(|v| v as usize);
    let levels = r.array(1, Some(rows))?.to_vec();
    let level0 = r.u32s(rows.checked_mul(m0))?;
    let upper_start = r.u32s(Some(rows))?;
    let upper = r.u32s(None)?;
    let graph = Graph { m, m0, entry: entry as u32, levels, level0, upper_start, upper };
    graph.validate().map_err(ArtifactError)?;
    let codes = match quantization {
        0 => Codes::None,
        1 => Codes::sq8(r.f32s(Some(dim))?, r.f32s(Some(dim))?, r.array(1, rows.checked_mul(dim))?.to_vec()),
        2 => {
            let centroids = r.f32s(None)?;
            let k = centroids.len() / dim.max(1);
            if centroids.len() % dim.max(1) != 0 || k > 256 || (rows > 0 && k == 0) {
                return Err(ArtifactError(format!("{} centroid values for dimension {dim}", centroids.len())));
            }
            let cluster = r.array(1, Some(rows))?.to_vec();
            if let Some(c) = cluster.iter().find(|c| **c as usize >= k) {
                return Err(ArtifactError(format!("a row names centroid {c} of {k}")));
            }
            let (alpha, offset) = (r.f32s(Some(rows))?.into_iter().map(to_bf16).collect(), r.f32s(Some(rows))?);
            Codes::Bq { centroids, cluster, alpha, offset, bits: r.u64s(rows * bq_words(dim))? }
        }
        q => return Err(ArtifactError(format!("unknown quantization {q}"))),
    };
    if !r.0.is_empty() {
        return Err(ArtifactError(format!("{} bytes after the codes", r.0.len())));
    }
    Ok(HnswIndex { metric, dim, graph, codes })
}
