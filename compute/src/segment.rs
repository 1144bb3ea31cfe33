//! A segment held in memory: its rows as one Arrow batch and each vector column's vectors as
//! one flat slice.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use arrow::array::{Array, ArrayRef, AsArray, FixedSizeListArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Float32Type, SchemaRef};
use grape_storage::format::SegmentMeta;

use crate::derived::DerivedColumn;
use crate::distance::norm;
use crate::error::ComputeError;
use crate::index::hnsw::HnswIndex;
use crate::index::{FlatVectors, Vectors};
use crate::liveness::SegmentLiveness;
use crate::vector_files::VectorFiles;

/// Name of the vector column of a collection without named vector fields.
pub const VECTOR_COLUMN: &str = grape_meta::catalog::DEFAULT_VECTOR;
/// Name of the primary-key column in every collection.
pub const ID_COLUMN: &str = "id";

/// An immutable segment loaded into memory, ready to be searched and scanned.
#[derive(Debug)]
pub struct LoadedSegment {
    /// The manifest entry this was loaded from.
    pub meta: SegmentMeta,
    /// All rows of the segment (every column, vectors included), as one batch.
    pub batch: RecordBatch,
    /// Dimension of the first vector column.
    pub dim: usize,
    /// The vector columns, in the collection's field order (at least one).
    columns: Vec<VectorColumn>,
    /// Which rows newer writes replaced or deleted, as last computed (see [`crate::liveness`]).
    pub liveness: SegmentLiveness,
    /// Derived payload columns kept (see [`crate::derived`]).
    derived: RwLock<DerivedCache>,
}

/// The derived payload columns a segment keeps: those of its collection's payload indexes
/// (wanted), and others that queries named, within a budget.
#[derive(Debug, Default)]
struct DerivedCache {
    /// Names of the columns of payload indexes: always kept.
    wanted: HashSet<String>,
    /// Keep every column computed: the segment is retired (it answers for a few seconds
    /// more, and no sync tells it its collection's payload indexes any longer).
    keep_all: bool,
    /// The columns kept, by name.
    columns: HashMap<String, ArrayRef>,
}

impl DerivedCache {
    /// Keeps `array` as column `name` if it is wanted, or if the unwanted columns kept would
    /// stay within `budget` bytes (so that queries naming many keys cannot fill memory).
    fn keep(&mut self, name: String, array: ArrayRef, budget: usize) {
        let unwanted: usize = self.columns.iter().filter(|(n, _)| !self.wanted.contains(*n)).map(|(_, a)| a.get_array_memory_size()).sum();
        if self.keep_all || self.wanted.contains(&name) || unwanted + array.get_array_memory_size() <= budget {
            self.columns.entry(name).or_insert(array);
        }
    }
}

/// One vector column of a loaded segment: its vectors as one flat slice, their norms, and
/// the column's ANN index once loaded.
#[derive(Debug)]
pub struct VectorColumn {
    /// The vector field's name (its column's).
    pub name: String,
    /// Dimension of the vectors.
    pub dim: usize,
    /// Row-major vectors: row `r` is `vectors[r*dim .. (r+1)*dim]`. Shares the Arrow buffer.
    vectors: arrow::buffer::ScalarBuffer<f32>,
    /// The vectors are in a mapped file (see [`crate::vector_files`]), not in memory.
    on_disk: bool,
    /// Euclidean norm of each row's vector, for cosine distance.
    norms: Vec<f32>,
    /// The column's ANN index once its artifact is loaded (see [`crate::index::hnsw`]), and
    /// the artifact's object path.
    ann: RwLock<Option<(String, Arc<HnswIndex>)>>,
}

impl VectorColumn {
    /// Reads column `name` of `batch` (of segment `path`): `Corrupt` unless it is a
    /// `fixed_size_list<float32>` without nulls.
    fn read(batch: &RecordBatch, name: &str, path: &str) -> Result<Self, ComputeError> {
        let column = batch.column_by_name(name).ok_or_else(|| ComputeError::Corrupt(format!("segment {path} has no `{name}` column")))?;
        let list: &FixedSizeListArray =
            column.as_fixed_size_list_opt().filter(|l| l.value_type() == DataType::Float32).ok_or_else(|| {
                ComputeError::Corrupt(format!("segment {path}: `{name}` is {}, expected fixed_size_list<float32>", column.data_type()))
            })?;
        if list.null_count() > 0 {
            return Err(ComputeError::Corrupt(format!("segment {path} has null vectors in `{name}`")));
        }
        let dim = list.value_length() as usize;
        // Slice the child values to exactly this list's rows (the list may be an offset view).
        let values = list.values().as_primitive::<Float32Type>();
        let start = list.offset() * dim;
        let vectors = values.values().slice(start, list.len() * dim);
        let norms = if dim == 0 { vec![0.0; list.len()] } else { vectors.chunks_exact(dim).map(norm).collect() };
        Ok(Self { name: name.to_string(), dim, vectors, on_disk: false, norms, ann: RwLock::new(None) })
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

    /// The column's ANN index, if one is loaded.
    pub fn ann(&self) -> Option<Arc<HnswIndex>> {
        self.ann.read().unwrap_or_else(|e| e.into_inner()).as_ref().map(|(_, index)| index.clone())
    }

    /// The object path of the loaded ANN index's artifact, if one is loaded.
    pub fn ann_path(&self) -> Option<String> {
        self.ann.read().unwrap_or_else(|e| e.into_inner()).as_ref().map(|(path, _)| path.clone())
    }

    /// Installs (or replaces) the column's ANN index, read from `path`; it must have been
    /// built from this column's rows (an `Internal` error otherwise).
    fn set_ann(&self, segment: &str, path: &str, index: Arc<HnswIndex>) -> Result<(), ComputeError> {
        if index.rows() != self.norms.len() || index.dim != self.dim {
            return Err(ComputeError::Internal(format!(
                "index of {} rows × {} does not fit `{}` of segment {segment}: {} rows × {}",
                index.rows(),
                index.dim,
                self.name,
                self.norms.len(),
                self.dim
            )));
        }
        *self.ann.write().unwrap_or_else(|e| e.into_inner()) = Some((path.to_string(), index));
        Ok(())
    }

    /// Bytes of memory the column holds beyond the segment's batch: norms and index.
    fn memory_bytes(&self) -> usize {
        self.norms.len() * 4 + self.ann().map_or(0, |a| a.memory_bytes())
    }

    /// Bytes of the column's vectors kept in a mapped file rather than in memory.
    fn bytes_on_disk(&self) -> usize {
        if self.on_disk {
            self.vectors.len() * 4
        } else {
            0
        }
    }
}

impl Vectors for VectorColumn {
    fn flat(&self) -> FlatVectors<'_> {
        FlatVectors::new(&self.vectors, &self.norms, self.dim)
    }
}

impl LoadedSegment {
    /// Builds the in-memory form of a segment with the one vector column `vector` from the
    /// batches read from storage.
    ///
    /// Fails with `Corrupt` if the batches have no `vector` column of `fixed_size_list<float32>`
    /// or contain null vectors.
    pub fn new(meta: SegmentMeta, schema: SchemaRef, batches: &[RecordBatch]) -> Result<Self, ComputeError> {
        Self::with_vectors(meta, schema, batches, &[VECTOR_COLUMN.to_string()])
    }

    /// [`LoadedSegment::new`] for a collection whose vector columns are `vectors`, in field
    /// order (at least one): each must be a `fixed_size_list<float32>` without nulls.
    pub fn with_vectors(meta: SegmentMeta, schema: SchemaRef, batches: &[RecordBatch], vectors: &[String]) -> Result<Self, ComputeError> {
        Self::with_vectors_in(meta, schema, batches, vectors, None)
    }

    /// [`LoadedSegment::with_vectors`] keeping the vectors in mapped files of `on_disk`
    /// instead of in memory, when given (see [`crate::vector_files`]).
    pub fn with_vectors_in(
        meta: SegmentMeta,
        schema: SchemaRef,
        batches: &[RecordBatch],
        vectors: &[String],
        on_disk: Option<&VectorFiles>,
    ) -> Result<Self, ComputeError> {
        let mut batch = concat_batches(&schema, batches).map_err(|e| ComputeError::Corrupt(format!("segment {}: {e}", meta.path)))?;
        let mut mapped = Vec::new();
        if let Some(files) = on_disk {
            (batch, mapped) = files.map_columns(batch, vectors)?;
        }
        let mut columns = vectors.iter().map(|name| VectorColumn::read(&batch, name, &meta.path)).collect::<Result<Vec<_>, _>>()?;
        for column in &mut columns {
            column.on_disk = mapped.contains(&column.name);
        }
        let Some(dim) = columns.first().map(|c| c.dim) else {
            return Err(ComputeError::Internal(format!("segment {} was loaded without a vector column", meta.path)));
        };
        if batch.column_by_name(ID_COLUMN).is_none() {
            return Err(ComputeError::Corrupt(format!("segment {} has no `id` column", meta.path)));
        }
        Ok(Self { meta, batch, dim, columns, liveness: SegmentLiveness::default(), derived: Default::default() })
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

    /// The vector columns, in field order.
    pub fn columns(&self) -> &[VectorColumn] {
        &self.columns
    }

    /// The vector column called `name`; `""` is the first.
    pub fn column(&self, name: &str) -> Option<&VectorColumn> {
        if name.is_empty() {
            return self.columns.first();
        }
        self.columns.iter().find(|c| c.name == name)
    }

    /// The first vector column (every segment has one).
    pub fn first(&self) -> &VectorColumn {
        &self.columns[0]
    }

    /// The vector of row `row` in the first vector column.
    #[inline]
    pub fn vector(&self, row: usize) -> &[f32] {
        self.first().vector(row)
    }

    /// The norm of row `row`'s vector in the first vector column.
    #[inline]
    pub fn norm(&self, row: usize) -> f32 {
        self.first().norm(row)
    }

    /// Bytes of memory the segment holds, its indexes and derived columns included, and its
    /// vectors unless they are in mapped files ([`LoadedSegment::vector_bytes_on_disk`]).
    pub fn memory_bytes(&self) -> usize {
        let derived: usize = self.derived_cache().columns.values().map(|a| a.get_array_memory_size()).sum();
        let batch = self.batch.get_array_memory_size().saturating_sub(self.vector_bytes_on_disk());
        batch + self.columns.iter().map(VectorColumn::memory_bytes).sum::<usize>() + derived
    }

    /// Bytes of the segment's vectors kept in mapped files instead of memory.
    pub fn vector_bytes_on_disk(&self) -> usize {
        self.columns.iter().map(VectorColumn::bytes_on_disk).sum()
    }

    /// The segment's rows with the derived payload `columns` appended, in order. Columns the
    /// segment does not keep are computed (one payload parse per row for all of them) and
    /// kept if they are wanted ([`LoadedSegment::keep_derived`]) or while the unwanted ones
    /// kept hold at most a quarter of the segment's bytes.
    pub fn batch_with(&self, columns: &[DerivedColumn]) -> Result<RecordBatch, ComputeError> {
        if columns.is_empty() {
            return Ok(self.batch.clone());
        }
        let names: Vec<String> = columns.iter().map(DerivedColumn::name).collect();
        let mut arrays: Vec<Option<ArrayRef>> = {
            let cache = self.derived_cache();
            names.iter().map(|n| cache.columns.get(n).cloned()).collect()
        };
        let missing: Vec<usize> = (0..columns.len()).filter(|i| arrays[*i].is_none()).collect();
        if !missing.is_empty() {
            let payloads = self.batch.column_by_name(crate::derived::PAYLOAD_COLUMN).ok_or_else(|| {
                ComputeError::InvalidArgument(format!("segment {} has no `{}` column to derive columns from", self.meta.id, crate::derived::PAYLOAD_COLUMN))
            })?;
            let to_compute: Vec<DerivedColumn> = missing.iter().map(|i| columns[*i].clone()).collect();
            let computed = crate::derived::extract(payloads, &to_compute)?;
            crate::metrics::payload_rows_derived(self.rows() * to_compute.len());
            let budget = self.batch.get_array_memory_size() / 4;
            let mut cache = self.derived.write().unwrap_or_else(|e| e.into_inner());
            for (i, array) in missing.into_iter().zip(computed) {
                cache.keep(names[i].clone(), array.clone(), budget);
                arrays[i] = Some(array);
            }
        }
        crate::derived::with_columns(&self.batch, columns, arrays.into_iter().flatten().collect())
    }

    /// Makes `wanted` (the columns of the collection's payload indexes) the derived columns
    /// always kept, and drops every other (those of indexes deleted since, or named by
    /// queries).
    pub fn keep_derived(&self, wanted: &[DerivedColumn]) {
        {
            // Every sync (every catalog change) calls this on every segment: most of the
            // time nothing changed, and nothing need be written.
            let cache = self.derived_cache();
            let same = !cache.keep_all
                && cache.wanted.len() == wanted.len()
                && wanted.iter().all(|c| cache.wanted.contains(&c.name()))
                && cache.columns.keys().all(|n| cache.wanted.contains(n));
            if same {
                return;
            }
        }
        let mut cache = self.derived.write().unwrap_or_else(|e| e.into_inner());
        cache.keep_all = false;
        cache.wanted = wanted.iter().map(DerivedColumn::name).collect();
        let DerivedCache { wanted, columns, .. } = &mut *cache;
        columns.retain(|name, _| wanted.contains(name));
    }

    /// Keeps every derived column computed from now on: the segment is retired, and answers
    /// only until its grace period ends.
    pub fn retire_derived(&self) {
        self.derived.write().unwrap_or_else(|e| e.into_inner()).keep_all = true;
    }

    /// The names of the derived columns the segment keeps.
    pub fn derived_names(&self) -> Vec<String> {
        self.derived_cache().columns.keys().cloned().collect()
    }

    /// The derived columns kept, for reading.
    fn derived_cache(&self) -> std::sync::RwLockReadGuard<'_, DerivedCache> {
        self.derived.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The first vector column's ANN index, if one is loaded.
    pub fn ann(&self) -> Option<Arc<HnswIndex>> {
        self.first().ann()
    }

    /// Installs (or replaces) the ANN index of vector column `field` (`""`: the first), read
    /// from `path`; it must have been built from that column's rows (an `Internal` error
    /// otherwise, as for a column the segment does not have).
    pub fn set_ann(&self, field: &str, path: &str, index: Arc<HnswIndex>) -> Result<(), ComputeError> {
        let column = self
            .column(field)
            .ok_or_else(|| ComputeError::Internal(format!("segment {} has no vector column `{field}` to index", self.meta.id)))?;
        column.set_ann(&self.meta.id, path, index)
    }
}

impl Vectors for LoadedSegment {
    fn flat(&self) -> FlatVectors<'_> {
        self.first().flat()
    }
}

/// A shared handle to a loaded segment.
pub type SegmentRef = Arc<LoadedSegment>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::derived::Kind;
    use arrow::array::{Float32Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    /// A segment of `n` rows with payloads `{"k<j>": "v<i>"}` for every j < 100.
    fn segment_with_payloads(n: usize) -> LoadedSegment {
        let item = Arc::new(Field::new("item", DataType::Float32, true));
        let vectors = FixedSizeListArray::try_new(item, 2, Arc::new(Float32Array::from(vec![1.0; n * 2])), None).unwrap();
        let payloads: Vec<String> =
            (0..n).map(|i| serde_json::Value::Object((0..100).map(|j| (format!("k{j}"), format!("v{i}").into())).collect()).to_string()).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new(ID_COLUMN, DataType::Utf8, false),
            Field::new(VECTOR_COLUMN, vectors.data_type().clone(), false),
            Field::new(crate::derived::PAYLOAD_COLUMN, DataType::Utf8, true),
        ]));
        let ids = StringArray::from_iter_values((0..n).map(|i| i.to_string()));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(vectors), Arc::new(StringArray::from(payloads))]).unwrap();
        LoadedSegment::new(SegmentMeta { id: "s".into(), rows: n as u64, ..Default::default() }, schema, &[batch]).unwrap()
    }

    #[test]
    fn wanted_columns_are_kept_and_others_only_within_a_budget() {
        let segment = segment_with_payloads(1000);
        let column = |key: &str| DerivedColumn::new(Kind::Str, key).unwrap();
        segment.keep_derived(&[column("k0")]);
        let batch = segment.batch_with(&[column("k0"), column("k1")]).unwrap();
        assert_eq!(batch.num_columns(), 5);
        assert_eq!(batch.column(3).as_list::<i32>().value(7).as_string::<i32>().value(0), "v7");
        let mut kept = segment.derived_names();
        kept.sort();
        assert_eq!(kept, ["payload:str:k0", "payload:str:k1"], "wanted, and one more within the budget");
        // Many keys named by queries: the columns are computed, but what is kept stays bounded.
        let before = segment.memory_bytes();
        for j in 2..100 {
            assert_eq!(segment.batch_with(&[column(&format!("k{j}"))]).unwrap().num_columns(), 4);
        }
        let unwanted = segment.memory_bytes() - before;
        assert!(unwanted <= segment.batch.get_array_memory_size() / 4, "{unwanted} bytes of unwanted columns kept");
        // A sync drops all but the wanted.
        segment.keep_derived(&[column("k0")]);
        assert_eq!(segment.derived_names(), ["payload:str:k0"]);
        // A retired segment (answering a few seconds more, told nothing by syncs) keeps all.
        segment.retire_derived();
        for j in 1..20 {
            segment.batch_with(&[column(&format!("k{j}"))]).unwrap();
        }
        assert_eq!(segment.derived_names().len(), 20);
    }
}
