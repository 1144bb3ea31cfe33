//! Bounded top-k selection: keeps the k closest candidates seen so far in a max-heap.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A candidate hit: its distance and where it lives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Distance to the query; smaller is closer. Never NaN (inputs are validated).
    pub distance: f32,
    /// Index of the segment in the search's segment list.
    pub segment: u32,
    /// Row within the segment.
    pub row: u32,
}

impl Eq for Candidate {}

impl Ord for Candidate {
    /// Orders by distance, then by position so that results are deterministic on ties.
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance.total_cmp(&other.distance).then(self.segment.cmp(&other.segment)).then(self.row.cmp(&other.row))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Keeps the `k` smallest candidates pushed into it, in O(n log k).
#[derive(Debug)]
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Candidate>,
}

impl TopK {
    /// An empty selection of at most `k` candidates.
    pub fn new(k: usize) -> Self {
        Self { k, heap: BinaryHeap::with_capacity(k + 1) }
    }

    /// How many candidates it keeps.
    pub fn k(&self) -> usize {
        self.k
    }

    /// How many candidates it holds now.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether it holds no candidate.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The distance a candidate must beat to enter, or infinity while not full.
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::INFINITY
        } else {
            self.heap.peek().map_or(f32::INFINITY, |c| c.distance)
        }
    }

    /// Offers a candidate; it is kept if it is among the k closest so far.
    #[inline]
    pub fn push(&mut self, c: Candidate) {
        if self.k == 0 {
            return;
        }
        if self.heap.len() < self.k {
            self.heap.push(c);
        } else if let Some(top) = self.heap.peek() {
            if c < *top {
                self.heap.pop();
                self.heap.push(c);
            }
        }
    }

    /// Merges another selection into this one.
    pub fn merge(&mut self, other: TopK) {
        for c in other.heap {
            self.push(c);
        }
    }

    /// The kept candidates, closest first.
    pub fn into_sorted(self) -> Vec<Candidate> {
        self.heap.into_sorted_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_k_smallest_in_order() {
        let mut t = TopK::new(3);
        for (i, d) in [5.0, 1.0, 4.0, 2.0, 3.0, 0.5].iter().enumerate() {
            t.push(Candidate { distance: *d, segment: 0, row: i as u32 });
        }
        let got: Vec<f32> = t.into_sorted().iter().map(|c| c.distance).collect();
        assert_eq!(got, vec![0.5, 1.0, 2.0]);
    }

    #[test]
    fn zero_k_keeps_nothing() {
        let mut t = TopK::new(0);
        t.push(Candidate { distance: 1.0, segment: 0, row: 0 });
        assert!(t.into_sorted().is_empty());
    }
}
