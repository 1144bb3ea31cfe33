//! Distance kernels for f32 vectors.
//!
//! The portable kernels keep [`LANES`] independent accumulators over fixed-size chunks: the
//! loop body has no cross-iteration dependency, so LLVM turns it into SIMD at `opt-level` 2
//! and above on any target, with no `unsafe`. On x86-64 CPUs with AVX2 and FMA, [`Scorer`]
//! uses kernels written with those intrinsics instead (chosen once per process): binaries
//! target baseline x86-64, whose 4-lane code reads memory slower than one core can, where the
//! 8-lane fused kernels keep up with it (measured by `grape-bench exact-search`).
//!
//! All metrics are expressed as a *distance*: smaller is closer.

use grape_meta::catalog::Metric;

/// Number of independent accumulators per kernel (two AVX registers of f32).
pub const LANES: usize = 16;

/// Sums `term(a[i], b[i])` over all positions with [`LANES`] independent accumulators.
///
/// Generic over the term so every kernel shares one loop shape; `inline(always)` so the term
/// is fused into the loop and vectorised in the kernel's own crate.
#[inline(always)]
fn sum_lanes(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f32) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0f32; LANES];
    let (a_chunks, a_rest) = a.as_chunks::<LANES>();
    let (b_chunks, b_rest) = b.as_chunks::<LANES>();
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for i in 0..LANES {
            acc[i] += term(x[i], y[i]);
        }
    }
    let mut sum = reduce_lanes(acc);
    for (x, y) in a_rest.iter().zip(b_rest) {
        sum += term(*x, *y);
    }
    sum
}

/// Sums the accumulators pairwise (halves added lane by lane): four vector additions for 16
/// lanes, where a left-to-right sum is 16 dependent scalar additions, which cost more than
/// the whole 128-dimensional loop before it.
#[inline(always)]
pub(crate) fn reduce_lanes(mut acc: [f32; LANES]) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            acc[i] += acc[i + width];
        }
        width /= 2;
    }
    acc[0]
}

/// Squared Euclidean distance.
#[inline(always)]
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    sum_lanes(a, b, |x, y| (x - y) * (x - y))
}

/// Inner product.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    sum_lanes(a, b, |x, y| x * y)
}

/// Manhattan (L1) distance. Portable: LLVM vectorises the absolute difference as it does
/// the other terms.
#[inline(always)]
pub fn l1(a: &[f32], b: &[f32]) -> f32 {
    sum_lanes(a, b, |x, y| (x - y).abs())
}

/// Euclidean norm of a vector.
#[inline]
pub fn norm(a: &[f32]) -> f32 {
    dot(a, a).sqrt()
}

/// A distance kernel over two slices of equal length.
pub type Kernel = fn(&[f32], &[f32]) -> f32;

/// The squared-l2 and dot kernels for this CPU: 8-lane fused multiply-adds where it has AVX2
/// and FMA (chosen once), the portable kernels above otherwise.
fn kernels() -> (Kernel, Kernel) {
    static CHOSEN: std::sync::OnceLock<(Kernel, Kernel)> = std::sync::OnceLock::new();
    *CHOSEN.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return (avx2::l2_squared, avx2::dot);
            }
        }
        (l2_squared, dot)
    })
}

/// Kernels with AVX2 and FMA intrinsics: four 8-lane accumulators, fused multiply-adds.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Squared Euclidean distance. Chosen only on CPUs with AVX2 and FMA.
    pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: `kernels` returns this only when the CPU has AVX2 and FMA.
        unsafe { sum(a, b, true) }
    }

    /// Inner product. Chosen only on CPUs with AVX2 and FMA.
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: as for `l2_squared`.
        unsafe { sum(a, b, false) }
    }

    /// Σ (a−b)² when `squared_difference`, else Σ a·b, over the common length.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn sum(a: &[f32], b: &[f32], squared_difference: bool) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let term = |acc: __m256, i: usize| {
            // SAFETY: callers pass i + 8 <= n, inside both slices.
            let (x, y) = unsafe { (_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
            if squared_difference {
                let d = _mm256_sub_ps(x, y);
                _mm256_fmadd_ps(d, d, acc)
            } else {
                _mm256_fmadd_ps(x, y, acc)
            }
        };
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, a) in acc.iter_mut().enumerate() {
                *a = term(*a, i + 8 * j);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = term(acc[0], i);
            i += 8;
        }
        let all = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let half = _mm_add_ps(_mm256_castps256_ps128(all), _mm256_extractf128_ps::<1>(all));
        let quarter = _mm_add_ps(half, _mm_movehl_ps(half, half));
        let mut total = _mm_cvtss_f32(_mm_add_ss(quarter, _mm_shuffle_ps::<0b01>(quarter, quarter)));
        for j in i..n {
            let (x, y) = (a[j], b[j]);
            total += if squared_difference { (x - y) * (x - y) } else { x * y };
        }
        total
    }
}

/// A metric bound to precomputed facts about the query, ready to score many rows.
#[derive(Debug, Clone, Copy)]
pub struct Scorer {
    metric: Metric,
    query_norm: f32,
    l2: Kernel,
    dot: Kernel,
}

impl Scorer {
    /// Prepares scoring of `query` under `metric`.
    pub fn new(metric: Metric, query: &[f32]) -> Self {
        Self::with_norm(metric, norm(query))
    }

    /// Prepares scoring of a query whose norm is already known (a stored row's).
    pub fn with_norm(metric: Metric, query_norm: f32) -> Self {
        let (l2, dot) = kernels();
        Self { metric, query_norm, l2, dot }
    }

    /// The metric scored.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Distance between the query and a row, given the row's norm (used by cosine only).
    ///
    /// Cosine distance is `1 - cos`; a zero vector on either side is at distance 1.
    #[inline(always)]
    pub fn distance(&self, query: &[f32], row: &[f32], row_norm: f32) -> f32 {
        match self.metric {
            Metric::L2 => (self.l2)(query, row),
            Metric::Dot => -(self.dot)(query, row),
            Metric::Manhattan => l1(query, row),
            Metric::Cosine => {
                let denom = self.query_norm * row_norm;
                if denom == 0.0 {
                    1.0
                } else {
                    1.0 - (self.dot)(query, row) / denom
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_l2(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
    }

    #[test]
    fn kernels_match_naive_for_odd_lengths() {
        for len in [1usize, 7, 16, 17, 100, 128, 131] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            assert!((l2_squared(&a, &b) - naive_l2(&a, &b)).abs() < 1e-3);
            let d: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - d).abs() < 1e-3);
        }
    }

    #[test]
    fn the_chosen_kernels_match_the_portable_ones_for_odd_lengths() {
        let (l2, dotk) = kernels();
        for len in [0usize, 1, 7, 8, 9, 31, 32, 33, 100, 128, 131, 1536] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            let tolerance = 1e-4 * (len as f32).max(1.0);
            assert!((l2(&a, &b) - l2_squared(&a, &b)).abs() < tolerance, "l2, {len}");
            assert!((dotk(&a, &b) - dot(&a, &b)).abs() < tolerance, "dot, {len}");
        }
    }

    #[test]
    fn cosine_of_parallel_vectors_is_zero_and_zero_vector_is_one() {
        let a = [1.0, 2.0, 3.0];
        let b = [2.0, 4.0, 6.0];
        let s = Scorer::new(Metric::Cosine, &a);
        assert!(s.distance(&a, &b, norm(&b)).abs() < 1e-6);
        assert_eq!(s.distance(&a, &[0.0; 3], 0.0), 1.0);
    }
}
