//! HNSW: a graph index per sealed segment, traversed on full-precision vectors or on
//! quantized codes, with the best candidates rescored on the f32 vectors.
//!
//! The index holds no copy of the vectors: it reads them from the segment's Arrow buffer
//! (through [`Vectors`]) while building, and for traversal without codes and rescoring.

pub mod artifact;
mod beam;
pub mod build;
pub mod graph;

use arrow::array::{Array, BooleanArray};
use grape_meta::catalog::{Metric, Quantization};

use self::beam::{greedy, search_level, with_visited, Level, Near};
use self::build::BuildParams;
use self::graph::Graph;
use crate::distance::Scorer;
use crate::index::codes::{Codes, QueryCodes};
use crate::index::{FlatVectors, Vectors};
use crate::topk::{Candidate, TopK};

/// How a search uses an ANN index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnnParams {
    /// Breadth of the level-0 search: more finds more true neighbours, slower.
    pub ef: usize,
    /// With quantized codes, the best `oversampling × k` candidates are rescored on the f32
    /// vectors (at least 1).
    pub oversampling: f32,
}

/// An HNSW index of one segment.
#[derive(Debug, Clone, PartialEq)]
pub struct HnswIndex {
    /// The metric the graph was built and is searched with.
    pub metric: Metric,
    /// Dimension of the vectors.
    pub dim: usize,
    /// The graph.
    pub graph: Graph,
    /// The rows' codes for traversal (or none).
    pub codes: Codes,
}

/// One level of a built index, searched for one query.
struct QueryLevel<'a> {
    index: &'a HnswIndex,
    vectors: FlatVectors<'a>,
    query: &'a [f32],
    scorer: &'a Scorer,
    codes: Option<&'a QueryCodes<'a>>,
    allowed: Option<&'a BooleanArray>,
    level: u8,
}

impl Level for QueryLevel<'_> {
    #[inline(always)]
    fn neighbours(&self, row: u32, out: &mut Vec<u32>) {
        out.clear();
        out.extend_from_slice(self.index.graph.neighbours(row, self.level));
    }

    #[inline(always)]
    fn distance(&self, row: u32) -> f32 {
        match self.codes {
            Some(codes) => codes.distance(row as usize),
            None => self.scorer.distance(self.query, self.vectors.vector(row as usize), self.vectors.norm(row as usize)),
        }
    }

    #[inline(always)]
    fn allowed(&self, row: u32) -> bool {
        self.allowed.is_none_or(|m| m.is_valid(row as usize) && m.value(row as usize))
    }

    #[inline(always)]
    fn prefetch(&self, row: u32) {
        match self.codes {
            Some(codes) => codes.prefetch(row as usize),
            None => self.vectors.prefetch(row as usize),
        }
    }
}

impl HnswIndex {
    /// Builds the index of every row of `vectors`.
    pub fn build(vectors: &dyn Vectors, metric: Metric, quantization: Quantization, params: BuildParams) -> HnswIndex {
        let graph = build::build(vectors, metric, params);
        let codes = Codes::encode(quantization, metric, vectors);
        HnswIndex { metric, dim: vectors.dim(), graph, codes }
    }

    /// Number of rows indexed.
    pub fn rows(&self) -> usize {
        self.graph.rows()
    }

    /// Bytes of memory the index takes (graph and codes; the vectors stay in the segment).
    pub fn memory_bytes(&self) -> usize {
        self.graph.memory_bytes() + self.codes.memory_bytes()
    }

    /// Offers the best allowed rows for `query` to `out` (of capacity k): the `ef` closest
    /// the graph search finds, or with codes the best `oversampling × k` of them rescored on
    /// the f32 vectors. Returns the number of distances computed.
    ///
    /// `vectors` must be the rows the index was built from.
    #[allow(clippy::too_many_arguments)]
    pub fn search(
        &self,
        vectors: &dyn Vectors,
        segment: u32,
        query: &[f32],
        scorer: &Scorer,
        params: &AnnParams,
        allowed: Option<&BooleanArray>,
        out: &mut TopK,
    ) -> u64 {
        if self.rows() == 0 || self.rows() != vectors.rows() {
            return 0;
        }
        let vectors = vectors.flat();
        // The whole walk inlined into one function compiled for AVX2 where the CPU has it.
        crate::simd::wide(
            #[inline(always)]
            || {
                let k = out.k();
                let codes = self.codes.query(self.metric, query);
                let rescored = if codes.is_some() { ((k as f32 * params.oversampling.max(1.0)).ceil() as usize).max(k) } else { k };
                let ef = params.ef.max(rescored);
                let at = |level: u8| QueryLevel { index: self, vectors, query, scorer, codes: codes.as_ref(), allowed, level };
                let entry = self.graph.entry;
                let mut computed = 1;
                let mut start = Near { distance: at(0).distance(entry), row: entry };
                for level in (1..=self.graph.top_level()).rev() {
                    let (next, n) = greedy(&at(level), start);
                    start = next;
                    computed += n;
                }
                let (found, n) = with_visited(self.rows(), |v| search_level(&at(0), &[start], ef, v));
                computed += n;
                let offer = |out: &mut TopK, distance: f32, row: u32| {
                    if distance < out.threshold() {
                        out.push(Candidate { distance, segment, row });
                    }
                };
                if codes.is_some() {
                    for near in found.iter().take(rescored) {
                        let row = near.row as usize;
                        offer(out, scorer.distance(query, vectors.vector(row), vectors.norm(row)), near.row);
                    }
                    computed += found.len().min(rescored) as u64;
                } else {
                    for near in &found {
                        offer(out, near.distance, near.row);
                    }
                }
                computed
            },
        )
    }
}

#[cfg(test)]
mod tests;
