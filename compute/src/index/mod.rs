//! Vector indexes over sealed segments.
//!
//! Segments never change once loaded, so search needs only the read side
//! ([`VectorIndexRead`]); building an index is a job. `flat/` is exact search over every
//! allowed row; `hnsw/` is the ANN graph built per large segment, with optional quantized
//! `codes`. [`search_segment`] picks between them for one segment and one request.

pub mod codes;
pub mod flat;
pub mod hnsw;
pub mod kmeans;

use arrow::array::BooleanArray;
use grape_meta::catalog::Quantization;

use crate::distance::Scorer;
use crate::error::ComputeError;
use crate::segment::VectorColumn;
use crate::topk::TopK;

use self::hnsw::AnnParams;

/// Default breadth of an ANN search (`ef`), chosen to reach recall@10 ≥ 0.95 on clustered
/// 128-dimensional data.
pub const DEFAULT_EF: usize = 128;
/// Largest `ef` a request may ask for.
pub const MAX_EF: usize = 10_000;
/// Largest `oversampling` a request may ask for.
pub const MAX_OVERSAMPLING: f32 = 100.0;

/// Search breadth used when a request does not give one: `bq`'s one bit per dimension
/// steers the walk coarsely, so it walks twice as wide (measured on 200k × 128: at
/// [`DEFAULT_EF`] bq stops near recall 0.9 however many candidates are rescored).
pub fn default_ef(quantization: Quantization) -> usize {
    match quantization {
        Quantization::None | Quantization::Sq8 => DEFAULT_EF,
        Quantization::Bq => 2 * DEFAULT_EF,
    }
}

/// Rescoring factor used when a request does not give one, for a search of breadth `ef`
/// and `k` hits: quantized codes rank less precisely, so more candidates are rescored; `bq`
/// rescores every candidate its walk found (and at least 10 × k).
pub fn default_oversampling(quantization: Quantization, ef: usize, k: usize) -> f32 {
    match quantization {
        Quantization::None => 1.0,
        Quantization::Sq8 => 2.0,
        Quantization::Bq => (ef as f32 / k.max(1) as f32).clamp(10.0, MAX_OVERSAMPLING),
    }
}

/// Full-precision vectors of a segment's rows, as indexes read them.
pub trait Vectors: Sync {
    /// The rows as one row-major slice, with their norms: what hot loops read.
    fn flat(&self) -> FlatVectors<'_>;
    /// Number of rows.
    fn rows(&self) -> usize {
        self.flat().rows()
    }
    /// Dimension.
    fn dim(&self) -> usize {
        self.flat().dim
    }
    /// The vector of `row`.
    fn vector(&self, row: usize) -> &[f32] {
        self.flat().vector(row)
    }
    /// Its Euclidean norm.
    fn norm(&self, row: usize) -> f32 {
        self.flat().norm(row)
    }
}

/// Row-major vectors and their norms, borrowed: read without a virtual call per row, so
/// the distance kernels inline into the loops that call them.
#[derive(Debug, Clone, Copy)]
pub struct FlatVectors<'a> {
    values: &'a [f32],
    norms: &'a [f32],
    dim: usize,
}

impl<'a> FlatVectors<'a> {
    /// `values` holds `norms.len()` rows of `dim` values each.
    pub fn new(values: &'a [f32], norms: &'a [f32], dim: usize) -> Self {
        debug_assert_eq!(values.len(), norms.len() * dim);
        Self { values, norms, dim }
    }

    /// Number of rows.
    #[inline(always)]
    pub fn rows(&self) -> usize {
        self.norms.len()
    }

    /// The vector of `row`.
    #[inline(always)]
    pub fn vector(&self, row: usize) -> &'a [f32] {
        &self.values[row * self.dim..(row + 1) * self.dim]
    }

    /// Its Euclidean norm.
    #[inline(always)]
    pub fn norm(&self, row: usize) -> f32 {
        self.norms[row]
    }

    /// Starts loading `row`'s vector into the cache (see [`crate::simd::prefetch`]).
    #[inline(always)]
    pub fn prefetch(&self, row: usize) {
        if let Some(v) = self.values.get(row * self.dim..(row + 1) * self.dim) {
            crate::simd::prefetch(v, 8);
        }
    }
}

/// Row-major vectors in a `Vec`, for building indexes outside a segment (benchmarks, tests).
#[derive(Debug, Clone)]
pub struct VecVectors {
    values: Vec<f32>,
    dim: usize,
    norms: Vec<f32>,
}

impl VecVectors {
    /// Wraps `values`, `dim` per row.
    pub fn new(values: Vec<f32>, dim: usize) -> Self {
        let norms = values.chunks_exact(dim.max(1)).map(crate::distance::norm).collect();
        Self { values, dim, norms }
    }
}

impl Vectors for VecVectors {
    fn flat(&self) -> FlatVectors<'_> {
        FlatVectors::new(&self.values, &self.norms, self.dim)
    }
}

/// Searches one sealed segment.
pub trait VectorIndexRead: Send + Sync {
    /// Offers the segment's rows closest to `query` to `out`, considering only rows whose
    /// `allowed` value is true (all rows when `None`). Candidates carry `segment` as their
    /// segment number. Returns the number of rows compared with the query.
    ///
    /// There is deliberately no default implementation: a new index family must decide how it
    /// honours `allowed` (pre-filtering), since post-filtering would silently return fewer than
    /// k hits.
    fn search(&self, segment: u32, query: &[f32], scorer: &Scorer, allowed: Option<&BooleanArray>, out: &mut TopK) -> u64;
}

/// What a request asks of the indexes (all optional).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SearchParams {
    /// ANN search breadth; [`DEFAULT_EF`] when `None`.
    pub ef: Option<usize>,
    /// Scan every allowed row even where an index exists: exact results, to measure recall.
    pub exact: bool,
    /// Rescoring factor with quantized codes; [`default_oversampling`] when `None`.
    pub oversampling: Option<f32>,
}

impl SearchParams {
    /// Validates a request's fields (`None`: the default): `ef` 1..=[`MAX_EF`],
    /// `oversampling` 1..=[`MAX_OVERSAMPLING`].
    pub fn from_request(ef: Option<u32>, exact: bool, oversampling: Option<f32>) -> Result<SearchParams, ComputeError> {
        if let Some(ef) = ef.filter(|ef| *ef == 0 || *ef as usize > MAX_EF) {
            return Err(ComputeError::InvalidArgument(format!(
                "ef is {ef}; it must be between 1 and {MAX_EF} (leave it unset for the default, {DEFAULT_EF})"
            )));
        }
        if let Some(o) = oversampling.filter(|o| !(1.0..=MAX_OVERSAMPLING).contains(o)) {
            return Err(ComputeError::InvalidArgument(format!(
                "oversampling is {o}; it must be between 1 and {MAX_OVERSAMPLING} (leave it unset for the default)"
            )));
        }
        Ok(SearchParams { ef: ef.map(|ef| ef as usize), exact, oversampling })
    }
}

/// Whether scanning `allowed` rows exactly costs less than a graph search for `ef`
/// neighbours among `rows` rows of which only `allowed` may be returned.
///
/// A graph search computes about `ef × 24` distances, and with a filter about `1 / s` times
/// more to collect `ef` allowed rows (`s = allowed / rows`); a scan computes `allowed`. So
/// the scan wins when `allowed² < 24 · ef · rows`: below ~12% selectivity for 200k rows at
/// `ef` 128. Like Qdrant's cardinality check, this keeps selective filters exact and fast.
pub fn exact_is_cheaper(allowed: usize, rows: usize, ef: usize) -> bool {
    (allowed as u128).pow(2) < 24 * ef as u128 * rows as u128
}

/// Searches one vector column of a segment for one request: through its ANN index when it has one and that is
/// cheaper, exactly otherwise. Returns the number of distances computed.
///
/// Never returns fewer than k hits when k rows are allowed: if the graph search cannot
/// reach k allowed rows, the segment is scanned.
pub fn search_segment(
    segment: &VectorColumn,
    number: u32,
    query: &[f32],
    scorer: &Scorer,
    params: &SearchParams,
    allowed: Option<&BooleanArray>,
    out: &mut TopK,
) -> u64 {
    let ann = if params.exact { None } else { segment.ann() };
    let Some(ann) = ann else {
        return segment.search(number, query, scorer, allowed, out);
    };
    let allowed_rows = allowed.map_or(segment.rows(), |m| m.true_count());
    let quantization = ann.codes.quantization();
    let ef = params.ef.unwrap_or_else(|| default_ef(quantization)).max(out.k());
    if allowed_rows == 0 || exact_is_cheaper(allowed_rows, segment.rows(), ef) {
        return segment.search(number, query, scorer, allowed, out);
    }
    let oversampling = params.oversampling.unwrap_or_else(|| default_oversampling(quantization, ef, out.k()));
    let mut top = TopK::new(out.k());
    let computed = ann.search(segment, number, query, scorer, &AnnParams { ef, oversampling }, allowed, &mut top);
    if top.len() < out.k().min(allowed_rows) {
        return computed + segment.search(number, query, scorer, allowed, out);
    }
    out.merge(top);
    computed
}
