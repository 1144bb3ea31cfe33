//! A segment held in memory: its rows as one Arrow batch and its vectors as one flat slice.

use std::sync::{Arc, RwLock};

use arrow::array::{Array, AsArray, FixedSizeListArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Float32Type, SchemaRef};
use grape_storage::format::SegmentMeta;

use crate::distance::norm;
use crate::error::ComputeError;
use crate::index::hnsw::HnswIndex;
use crate::index::{FlatVectors, Vectors};
use crate::liveness::SegmentLiveness;

/// Name of the vector column in every collection.
pub const VECTOR_COLUMN: &str = "vector";
/// Name of the primary-key column in every collection.
pub const ID_COLUMN: &str = "id";

/// An immutable segment loaded into memory, ready to be searched and scanned.
#[derive(Debug)]
pub struct LoadedSegment {
    /// The manifest entry this was loaded from.
    pub meta: SegmentMeta,
    /// All rows of the segment (every column, vectors included), as one batch.
    pub batch: RecordBatch,
    /// Dimension of the vectors.
    pub dim: usize,
    /// Row-major vectors: row `r` is `vectors[r*dim .. (r+1)*dim]`. Shares the Arrow buffer.
    vectors: arrow::buffer::ScalarBuffer<f32>,
    /// Euclidean norm of each row's vector, for cosine distance.
    norms: Vec<f32>,
    /// Which rows newer writes replaced or deleted, as last computed (see [`crate::liveness`]).
    pub liveness: SegmentLiveness,
    /// The segment's ANN index once its artifact is loaded (see [`crate::index::hnsw`]), and
    /// the artifact's object path.
    ann: RwLock<Option<(String, Arc<HnswIndex>)>>,
}

impl LoadedSegment {
    /// Builds the in-memory form of a segment from the batches read from storage.
    ///
    /// Fails with `Corrupt` if the batches have no `vector` column of `fixed_size_list<float32>`
    /// or contain null vectors.
    pub fn new(meta: SegmentMeta, schema: SchemaRef, batches: &[RecordBatch]) -> Result<Self, ComputeError> {
        let batch = concat_batches(&schema, batches).map_err(|e| ComputeError::Corrupt(format!("segment {}: {e}", meta.path)))?;
        let column = batch
            .column_by_name(VECTOR_COLUMN)
            .ok_or_else(|| ComputeError::Corrupt(format!("segment {} has no `vector` column", meta.path)))?;
        let list: &FixedSizeListArray =
            column.as_fixed_size_list_opt().filter(|l| l.value_type() == DataType::Float32).ok_or_else(|| {
                ComputeError::Corrupt(format!(
                    "segment {}: `vector` is {}, expected fixed_size_list<float32>",
                    meta.path,
                    column.data_type()
                ))
            })?;
        if list.null_count() > 0 {
            return Err(ComputeError::Corrupt(format!("segment {} has null vectors", meta.path)));
        }
        let dim = list.value_length() as usize;
        // Slice the child values to exactly this list's rows (the list may be an offset view).
        let values = list.values().as_primitive::<Float32Type>();
        let start = list.offset() * dim;
        let vectors = values.values().slice(start, list.len() * dim);
        let norms = if dim == 0 { vec![0.0; list.len()] } else { vectors.chunks_exact(dim).map(norm).collect() };
        if batch.column_by_name(ID_COLUMN).is_none() {
            return Err(ComputeError::Corrupt(format!("segment {} has no `id` column", meta.path)));
        }
        Ok(Self { meta, batch, dim, vectors, norms, liveness: SegmentLiveness::default(), ann: RwLock::new(None) })
    }

    /// The primary keys, one per row.
    pub fn ids(&self) -> &arrow::array::ArrayRef {
        // `new` checked that the column exists.
        self.batch.column_by_name(ID_COLUMN).unwrap_or_else(|| self.batch.column(0))
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.batch.num_rows()
    }

    /// The vector of row `row`.
    #[inline]
    pub fn vector(&self, row: usize) -> &[f32] {
        &self.vectors[row * self.dim..(row + 1) * self.dim]
    }

    /// The norm of row `row`'s vector.
    #[inline]
    pub fn norm(&self, row: usize) -> f32 {
        self.norms[row]
    }

    /// Bytes of memory the segment holds, its index included.
    pub fn memory_bytes(&self) -> usize {
        self.batch.get_array_memory_size() + self.norms.len() * 4 + self.ann().map_or(0, |a| a.memory_bytes())
    }

    /// The segment's ANN index, if one is loaded.
    pub fn ann(&self) -> Option<Arc<HnswIndex>> {
        self.ann.read().unwrap_or_else(|e| e.into_inner()).as_ref().map(|(_, index)| index.clone())
    }

    /// The object path of the loaded ANN index's artifact, if one is loaded.
    pub fn ann_path(&self) -> Option<String> {
        self.ann.read().unwrap_or_else(|e| e.into_inner()).as_ref().map(|(path, _)| path.clone())
    }

    /// Installs (or replaces) the segment's ANN index, read from `path`; it must have been
    /// built from this segment's rows (an `Internal` error otherwise).
    pub fn set_ann(&self, path: &str, index: Arc<HnswIndex>) -> Result<(), ComputeError> {
        if index.rows() != self.rows() || index.dim != self.dim {
            return Err(ComputeError::Internal(format!(
                "index of {} rows × {} does not fit segment {} of {} rows × {}",
                index.rows(),
                index.dim,
                self.meta.id,
                self.rows(),
                self.dim
            )));
        }
        *self.ann.write().unwrap_or_else(|e| e.into_inner()) = Some((path.to_string(), index));
        Ok(())
    }
}

impl Vectors for LoadedSegment {
    fn flat(&self) -> FlatVectors<'_> {
        FlatVectors::new(&self.vectors, &self.norms, self.dim)
    }
}

/// A shared handle to a loaded segment.
pub type SegmentRef = Arc<LoadedSegment>;
