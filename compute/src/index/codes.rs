//! Quantized vector codes for graph traversal: `sq8` (a byte per dimension) and `bq` (a bit
//! per dimension of each row's residual from its k-means centroid, plus 7 bytes a row), and
//! the per-query tables that score a query against them.
//!
//! Codes only rank candidates during traversal; an index rescores its best candidates with
//! the f32 vectors before anything leaves it, so a code's distance only has to order rows
//! roughly like the metric does, within one segment.
//!
//! Cosine codes are made from unit vectors (and queried with a unit query), so that every
//! metric reduces to a squared distance (`l2`) or an inner product (`dot`, `cosine`).

use grape_meta::catalog::{Metric, Quantization};

use rayon::prelude::*;

use crate::distance::{dot, LANES};
use crate::index::{kmeans, Vectors};

/// The codes of every row of a segment, plus what is needed to read them.
#[derive(Debug, Clone, PartialEq)]
pub enum Codes {
    /// No codes: traversal reads the f32 vectors.
    None,
    /// `rows × dim` bytes; value `x` of dimension `i` is coded `round((x - min[i]) / scale[i])`.
    /// Build it with [`Codes::sq8`].
    Sq8 {
        /// Smallest value of each dimension.
        min: Vec<f32>,
        /// Width of one code step in each dimension.
        scale: Vec<f32>,
        /// Row-major codes.
        codes: Vec<u8>,
        /// Each row's `Σ (scale·c)²`, the query-independent part of its l2 estimate
        /// (computed from the codes, not stored in artifacts).
        row_terms: Vec<f32>,
    },
    /// A bit per dimension of each row's residual from its nearest centroid (of at most 256,
    /// found by k-means over the segment): bit `i` is set when the residual is positive in
    /// dimension `i`. The residual is read back as `alpha · (±1, …)`.
    Bq {
        /// `k × dim` centroids, row-major.
        centroids: Vec<f32>,
        /// Each row's centroid.
        cluster: Vec<u8>,
        /// Each row's mean absolute residual, the size of its ±1 steps, as a bfloat16
        /// ([`to_bf16`]): its 0.4% rounding is far below what one bit per dimension loses.
        alpha: Vec<u16>,
        /// Each row's query-independent part of the estimate: `|c|² + |r|² + 2·alpha·⟨c, s⟩`
        /// for l2, `alpha·⟨c, s⟩ − ⟨c, r⟩` for inner products.
        offset: Vec<f32>,
        /// `rows × words` 64-bit words of sign bits, row-major.
        bits: Vec<u64>,
    },
}

/// A row's vector in the space the codes are made in: unit length for cosine.
fn code_space(metric: Metric, v: &[f32], norm: f32, out: &mut Vec<f32>) {
    out.clear();
    if metric == Metric::Cosine && norm > 0.0 {
        out.extend(v.iter().map(|x| x / norm));
    } else {
        out.extend_from_slice(v);
    }
}

/// `x` rounded to bfloat16 (f32's upper 16 bits, to nearest): a step size kept in two
/// bytes with f32's range.
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return (bits >> 16) as u16 | 0x40;
    }
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1));
    (rounded >> 16) as u16
}

/// The f32 value of a bfloat16 made by [`to_bf16`].
#[inline(always)]
pub fn from_bf16(x: u16) -> f32 {
    f32::from_bits((x as u32) << 16)
}

/// 64-bit words per row of `bq` codes.
pub fn bq_words(dim: usize) -> usize {
    dim.div_ceil(64)
}

impl Codes {
    /// Encodes every row of `vectors` under `quantization`.
    pub fn encode(quantization: Quantization, metric: Metric, vectors: &dyn Vectors) -> Codes {
        let (rows, dim) = (vectors.rows(), vectors.dim());
        let mut buf = Vec::with_capacity(dim);
        let mut each_row = |f: &mut dyn FnMut(&[f32])| {
            for r in 0..rows {
                code_space(metric, vectors.vector(r), vectors.norm(r), &mut buf);
                f(&buf);
            }
        };
        match quantization {
            Quantization::None => Codes::None,
            Quantization::Sq8 => {
                let mut min = vec![f32::INFINITY; dim];
                let mut max = vec![f32::NEG_INFINITY; dim];
                each_row(&mut |v| {
                    for i in 0..dim {
                        min[i] = min[i].min(v[i]);
                        max[i] = max[i].max(v[i]);
                    }
                });
                let scale: Vec<f32> =
                    min.iter().zip(&max).map(|(lo, hi)| if hi > lo { (hi - lo) / 255.0 } else { 1.0 }).collect();
                for lo in min.iter_mut().filter(|m| !m.is_finite()) {
                    *lo = 0.0; // no rows
                }
                let mut codes = Vec::with_capacity(rows * dim);
                each_row(&mut |v| codes.extend((0..dim).map(|i| ((v[i] - min[i]) / scale[i]).round().clamp(0.0, 255.0) as u8)));
                Codes::sq8(min, scale, codes)
            }
            Quantization::Bq => {
                let row = |r: usize| {
                    let mut v = Vec::with_capacity(dim);
                    code_space(metric, vectors.vector(r), vectors.norm(r), &mut v);
                    v
                };
                let centroids = kmeans::centroids(rows, dim, (rows / 256).clamp(1, 256), &row);
                let words = bq_words(dim);
                let coded: Vec<(u8, u16, f32, Vec<u64>)> = (0..rows)
                    .into_par_iter()
                    .map(|r| {
                        let v = row(r);
                        let c = kmeans::nearest(&centroids, dim, &v);
                        let mu = &centroids[c * dim..(c + 1) * dim];
                        let mut bits = vec![0u64; words];
                        let (mut abs, mut squared, mut mu_dot_s, mut mu_dot_r) = (0f32, 0f32, 0f32, 0f32);
                        for i in 0..dim {
                            let residual = v[i] - mu[i];
                            abs += residual.abs();
                            squared += residual * residual;
                            mu_dot_r += mu[i] * residual;
                            if residual > 0.0 {
                                bits[i / 64] |= 1 << (i % 64);
                                mu_dot_s += mu[i];
                            } else {
                                mu_dot_s -= mu[i];
                            }
                        }
                        let alpha = from_bf16(to_bf16(abs / dim.max(1) as f32));
                        // Manhattan traverses by the l2 estimate (one bit per dimension says
                        // too little for a sum of absolute values); rescoring is exact.
                        let offset = if matches!(metric, Metric::L2 | Metric::Manhattan) {
                            dot(mu, mu) + squared + 2.0 * alpha * mu_dot_s
                        } else {
                            alpha * mu_dot_s - mu_dot_r
                        };
                        (c as u8, to_bf16(alpha), offset, bits)
                    })
                    .collect();
                let mut codes = Codes::Bq {
                    centroids,
                    cluster: Vec::with_capacity(rows),
                    alpha: Vec::with_capacity(rows),
                    offset: Vec::with_capacity(rows),
                    bits: Vec::with_capacity(rows * words),
                };
                if let Codes::Bq { cluster, alpha, offset, bits, .. } = &mut codes {
                    for (c, a, o, b) in coded {
                        cluster.push(c);
                        alpha.push(a);
                        offset.push(o);
                        bits.extend(b);
                    }
                }
                codes
            }
        }
    }

    /// `sq8` codes of `min.len()` dimensions with their rows' l2 terms.
    pub fn sq8(min: Vec<f32>, scale: Vec<f32>, codes: Vec<u8>) -> Codes {
        let dim = min.len().max(1);
        let row_terms = codes
            .par_chunks(dim)
            .map(|row| row.iter().zip(&scale).map(|(c, s)| (s * f32::from(*c)) * (s * f32::from(*c))).sum())
            .collect();
        Codes::Sq8 { min, scale, codes, row_terms }
    }

    /// Which quantization these codes are.
    pub fn quantization(&self) -> Quantization {
        match self {
            Codes::None => Quantization::None,
            Codes::Sq8 { .. } => Quantization::Sq8,
            Codes::Bq { .. } => Quantization::Bq,
        }
    }

    /// Bytes of memory the codes of one row take.
    pub fn bytes_per_row(&self, dim: usize) -> usize {
        match self {
            Codes::None => 0,
            Codes::Sq8 { .. } => dim + 4,
            Codes::Bq { .. } => bq_words(dim) * 8 + 7,
        }
    }

    /// Bytes of memory all codes take.
    pub fn memory_bytes(&self) -> usize {
        match self {
            Codes::None => 0,
            Codes::Sq8 { min, scale, codes, row_terms } => (min.len() + scale.len() + row_terms.len()) * 4 + codes.len(),
            Codes::Bq { centroids, cluster, alpha, offset, bits } => {
                (centroids.len() + offset.len()) * 4 + alpha.len() * 2 + cluster.len() + bits.len() * 8
            }
        }
    }

    /// Prepares scoring of `query` against these codes, or `None` when there are none.
    pub fn query(&self, metric: Metric, query: &[f32]) -> Option<QueryCodes<'_>> {
        let mut q = Vec::with_capacity(query.len());
        code_space(metric, query, crate::distance::norm(query), &mut q);
        let dim = q.len();
        match self {
            Codes::None => None,
            Codes::Sq8 { min, scale, codes, row_terms } => Some(match metric {
                // Σ |q' - scale·c| with q' = q - min.
                Metric::Manhattan => {
                    let shifted: Vec<f32> = q.iter().zip(min).map(|(x, m)| x - m).collect();
                    QueryCodes::Sq8Manhattan { shifted, scale, codes, dim }
                }
                // |q - (min + scale·c)|² = Σ q'² − 2·Σ (q'·scale)·c + Σ (scale·c)²: the first
                // term ranks nothing, the last is the row's term.
                Metric::L2 => {
                    let weights: Vec<f32> = q.iter().zip(min).zip(scale).map(|((x, m), s)| (x - m) * s).collect();
                    QueryCodes::sq8_integer(&weights, -2.0, row_terms, codes, dim)
                }
                // q·(min + scale·c) = q·min + Σ (q·scale)·c; the constant does not rank.
                Metric::Dot | Metric::Cosine => {
                    let weights: Vec<f32> = q.iter().zip(scale).map(|(x, s)| x * s).collect();
                    QueryCodes::sq8_integer(&weights, -1.0, &[], codes, dim)
                }
            }),
            Codes::Bq { centroids, cluster, alpha, offset, bits } => {
                // A row is x = c + r; only ⟨q − c, r⟩ is estimated, as alpha·⟨q − c, s⟩ with
                // s = ±1 per dimension (its bits). Then
                //   |q − x|² ≈ |q|² − 2⟨q, c⟩ + (|c|² + |r|² + 2·alpha·⟨c, s⟩) − 2·alpha·⟨q, s⟩
                //   −⟨q, x⟩ ≈ −⟨q, c⟩ + (alpha·⟨c, s⟩ − ⟨c, r⟩) − alpha·⟨q, s⟩
                // where |q|² ranks nothing, the brackets are the row's `offset`, ⟨q, c⟩ is
                // computed once per centroid, and ⟨q, s⟩ = 2·Σ_{bᵢ=1} qᵢ − Σ qᵢ is read from one
                // 256-entry table per byte of code.
                let l2 = matches!(metric, Metric::L2 | Metric::Manhattan);
                let centroid_term = centroids.chunks_exact(dim.max(1)).map(|c| if l2 { -2.0 * dot(&q, c) } else { -dot(&q, c) }).collect();
                let bytes = dim.div_ceil(8);
                let mut tables = vec![0f32; bytes * 256];
                for (byte, table) in tables.chunks_exact_mut(256).enumerate() {
                    for b in 1..256usize {
                        let low = b.trailing_zeros() as usize;
                        table[b] = table[b & (b - 1)] + q.get(byte * 8 + low).copied().unwrap_or(0.0);
                    }
                }
                let sum_q = q.iter().sum();
                Some(QueryCodes::Bq { tables, bits, words: bq_words(dim), centroid_term, cluster, alpha, offset, sum_q, l2 })
            }
        }
    }
}

/// A query prepared against one segment's codes: scores rows by their codes alone.
#[derive(Debug)]
pub enum QueryCodes<'a> {
    /// `sq8` under manhattan: sums of absolute differences.
    Sq8Manhattan {
        /// The query minus each dimension's minimum.
        shifted: Vec<f32>,
        /// The codes' scales.
        scale: &'a [f32],
        /// The codes.
        codes: &'a [u8],
        /// Dimension.
        dim: usize,
    },
    /// `sq8` under l2 or an inner product: `row_term + factor · Σ weight·code`, the sum taken
    /// over 16-bit integer weights with integer multiply-adds (sixteen dimensions an
    /// instruction on AVX2, against eight for f32 with a conversion beside).
    Sq8 {
        /// The query's weight of each dimension, as an integer multiple of the step folded
        /// into `factor`.
        weights: Vec<i16>,
        /// What the integer sum is multiplied by: the weights' step, times −2 (l2) or −1.
        factor: f32,
        /// Each row's constant term (l2), or empty (inner products: none).
        row_terms: &'a [f32],
        /// The codes.
        codes: &'a [u8],
        /// Dimension.
        dim: usize,
        /// Whether the CPU has AVX2 (checked once per query).
        avx2: bool,
    },
    /// `bq`, through one lookup table per code byte.
    Bq {
        /// `tables[byte·256 + value]`: the sum of the query's values where that byte has bits.
        tables: Vec<f32>,
        /// The sign bits.
        bits: &'a [u64],
        /// Words per row.
        words: usize,
        /// Per centroid: `−2⟨q, c⟩` (l2) or `−⟨q, c⟩` (inner products).
        centroid_term: Vec<f32>,
        /// Each row's centroid.
        cluster: &'a [u8],
        /// Each row's step size (bfloat16).
        alpha: &'a [u16],
        /// Each row's constant part.
        offset: &'a [f32],
        /// Sum of the query's values.
        sum_q: f32,
        /// Whether the metric is l2 (else an inner product).
        l2: bool,
    },
}

impl<'a> QueryCodes<'a> {
    /// [`QueryCodes::Sq8`] of f32 weights `weights` (one per dimension), each row scored
    /// `row_term + sign · Σ weight·code`.
    fn sq8_integer(weights: &[f32], sign: f32, row_terms: &'a [f32], codes: &'a [u8], dim: usize) -> QueryCodes<'a> {
        // The largest integer weight for which no sum of `dim` products with codes (≤ 255)
        // leaves i32: 32,767 up to 257 dimensions, fewer bits beyond.
        let largest = (i32::MAX as usize / (255 * dim.max(1))).min(i16::MAX as usize) as f32;
        let top = weights.iter().fold(0f32, |m, w| m.max(w.abs()));
        let step = if top > 0.0 && top.is_finite() { top / largest } else { 1.0 };
        let weights = weights.iter().map(|w| (w / step).round().clamp(-largest, largest) as i16).collect();
        QueryCodes::Sq8 { weights, factor: sign * step, row_terms, codes, dim, avx2: crate::simd::has_avx2() }
    }

    /// Starts loading `row`'s code into the cache (see [`crate::simd::prefetch`]).
    #[inline(always)]
    pub fn prefetch(&self, row: usize) {
        match self {
            QueryCodes::Sq8Manhattan { codes, dim, .. } | QueryCodes::Sq8 { codes, dim, .. } => {
                if let Some(c) = codes.get(row * dim..(row + 1) * dim) {
                    crate::simd::prefetch(c, 4);
                }
            }
            QueryCodes::Bq { bits, words, .. } => {
                if let Some(b) = bits.get(row * words..(row + 1) * words) {
                    crate::simd::prefetch(b, 1);
                }
            }
        }
    }

    /// A score of `row` that orders rows like their distance to the query: smaller is closer.
    #[inline(always)]
    pub fn distance(&self, row: usize) -> f32 {
        match self {
            QueryCodes::Sq8Manhattan { shifted, scale, codes, dim } => {
                let c = &codes[row * dim..(row + 1) * dim];
                sum_lanes3(shifted, scale, c, |q, s, c| (q - s * c).abs())
            }
            QueryCodes::Sq8 { weights, factor, row_terms, codes, dim, avx2 } => {
                let c = &codes[row * dim..(row + 1) * dim];
                row_terms.get(row).copied().unwrap_or(0.0) + factor * crate::simd::dot_u8_i16(c, weights, *avx2) as f32
            }
            QueryCodes::Bq { tables, bits, words, centroid_term, cluster, alpha, offset, sum_q, l2 } => {
                let mut sum = 0f32;
                for (w, word) in bits[row * words..(row + 1) * words].iter().enumerate() {
                    for (j, byte) in word.to_le_bytes().iter().enumerate() {
                        // Tables exist for the bytes that hold dimensions; bits past the last
                        // dimension are never set.
                        if let Some(t) = tables.get((w * 8 + j) * 256 + *byte as usize) {
                            sum += t;
                        }
                    }
                }
                let q_dot_s = 2.0 * sum - sum_q;
                let c = centroid_term.get(cluster[row] as usize).copied().unwrap_or(0.0);
                offset[row] + c - if *l2 { 2.0 } else { 1.0 } * from_bf16(alpha[row]) * q_dot_s
            }
        }
    }
}

/// Sums `term(a[i], b[i], c[i] as f32)` with [`LANES`] independent accumulators, like
/// [`crate::distance`]'s kernels, so the compiler vectorises it.
#[inline(always)]
fn sum_lanes3(a: &[f32], b: &[f32], c: &[u8], term: impl Fn(f32, f32, f32) -> f32) -> f32 {
    let n = a.len().min(b.len()).min(c.len());
    let (a, b, c) = (&a[..n], &b[..n], &c[..n]);
    let mut acc = [0f32; LANES];
    let (a_chunks, a_rest) = a.as_chunks::<LANES>();
    let (b_chunks, b_rest) = b.as_chunks::<LANES>();
    let (c_chunks, c_rest) = c.as_chunks::<LANES>();
    for ((x, y), z) in a_chunks.iter().zip(b_chunks).zip(c_chunks) {
        for l in 0..LANES {
            acc[l] += term(x[l], y[l], z[l] as f32);
        }
    }
    let mut sum = crate::distance::reduce_lanes(acc);
    for ((x, y), z) in a_rest.iter().zip(b_rest).zip(c_rest) {
        sum += term(*x, *y, *z as f32);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datagen::gaussian_mixture;
    use crate::index::{VecVectors, Vectors};

    /// Fraction of the true 10 nearest (by f32) found among the 40 best by code.
    fn overlap(metric: Metric, quantization: Quantization) -> f64 {
        let data = VecVectors::new(gaussian_mixture(2000, 64, 8, 1), 64);
        let codes = Codes::encode(quantization, metric, &data);
        let queries = gaussian_mixture(20, 64, 8, 2);
        let mut found = 0;
        for q in queries.chunks_exact(64) {
            let scorer = crate::distance::Scorer::new(metric, q);
            let mut exact: Vec<(f32, usize)> = (0..2000).map(|r| (scorer.distance(q, data.vector(r), data.norm(r)), r)).collect();
            exact.sort_by(|a, b| a.0.total_cmp(&b.0));
            let qc = codes.query(metric, q).expect("codes");
            let mut coded: Vec<(f32, usize)> = (0..2000).map(|r| (qc.distance(r), r)).collect();
            coded.sort_by(|a, b| a.0.total_cmp(&b.0));
            let top: Vec<usize> = coded.iter().take(40).map(|c| c.1).collect();
            found += exact.iter().take(10).filter(|e| top.contains(&e.1)).count();
        }
        found as f64 / 200.0
    }

    #[test]
    fn codes_rank_the_true_neighbours_near_the_top_for_every_metric() {
        let mut failures = Vec::new();
        for metric in [Metric::L2, Metric::Cosine, Metric::Dot, Metric::Manhattan] {
            // One bit a dimension ranks coarsely: the recall goal is met after rescoring the
            // default candidates (every one the walk found, see `hnsw::tests`); here the codes alone must keep
            // most true neighbours in the best 4 × k.
            for (quantization, wanted) in [(Quantization::Sq8, 0.99), (Quantization::Bq, 0.75)] {
                let found = overlap(metric, quantization);
                if found < wanted {
                    failures.push(format!("{metric:?} {quantization:?}: {found} < {wanted}"));
                }
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn bf16_keeps_three_significant_digits_and_f32_range() {
        for x in [0.0f32, 1.0, 0.25, 3.14159, 1e-20, 7.5e30, 123_456.7] {
            let back = from_bf16(to_bf16(x));
            assert!((back - x).abs() <= x.abs() / 256.0, "{x} came back as {back}");
        }
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
    }

    #[test]
    fn code_sizes_are_a_byte_and_a_bit_per_dimension() {
        let data = VecVectors::new(gaussian_mixture(10, 128, 2, 1), 128);
        // A byte per dimension, and the row's l2 term.
        assert_eq!(Codes::encode(Quantization::Sq8, Metric::L2, &data).bytes_per_row(128), 128 + 4);
        assert_eq!(Codes::encode(Quantization::Bq, Metric::L2, &data).bytes_per_row(128), 16 + 7);
        assert_eq!(Codes::encode(Quantization::None, Metric::L2, &data), Codes::None);
    }
}
