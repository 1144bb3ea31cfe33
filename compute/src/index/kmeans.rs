//! A small k-means for partitioning a segment's vectors, so that binary codes can be made of
//! each row's residual from its centroid (see [`crate::index::codes`]).
//!
//! Lloyd's iterations run on an evenly spaced sample, starting from evenly spaced sample rows
//! (deterministic: the same rows give the same centroids); every row is then assigned to its
//! nearest centroid, in parallel.

use rayon::prelude::*;

use crate::distance::l2_squared;

/// Rows the iterations run on at most.
const SAMPLE: usize = 8192;
/// Lloyd iterations on the sample.
const ITERATIONS: usize = 6;

/// The index of the centroid nearest `v` (`centroids` holds `dim` values per centroid).
pub fn nearest(centroids: &[f32], dim: usize, v: &[f32]) -> usize {
    let mut best = (f32::INFINITY, 0);
    for (c, centroid) in centroids.chunks_exact(dim).enumerate() {
        let d = l2_squared(v, centroid);
        if d < best.0 {
            best = (d, c);
        }
    }
    best.1
}

/// `k` centroids of `rows` vectors of `dim` values given by `row(i)`, row-major.
pub fn centroids(rows: usize, dim: usize, k: usize, row: &(dyn Fn(usize) -> Vec<f32> + Sync)) -> Vec<f32> {
    let k = k.clamp(1, rows.max(1));
    let sample_size = rows.min(SAMPLE).max(1);
    let sample: Vec<Vec<f32>> = (0..sample_size).map(|i| row(i * rows / sample_size)).collect();
    let mut centroids: Vec<f32> = (0..k).flat_map(|c| sample[c * sample_size / k].clone()).collect();
    if rows == 0 {
        return centroids;
    }
    for _ in 0..ITERATIONS {
        let assigned: Vec<usize> = sample.par_iter().map(|v| nearest(&centroids, dim, v)).collect();
        let mut sums = vec![0f64; k * dim];
        let mut counts = vec![0usize; k];
        for (v, &c) in sample.iter().zip(&assigned) {
            counts[c] += 1;
            sums[c * dim..(c + 1) * dim].iter_mut().zip(v).for_each(|(s, x)| *s += *x as f64);
        }
        for c in (0..k).filter(|&c| counts[c] > 0) {
            for i in 0..dim {
                centroids[c * dim + i] = (sums[c * dim + i] / counts[c] as f64) as f32;
            }
        }
    }
    centroids
}
