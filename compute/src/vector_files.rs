//! Vectors kept on local disk instead of in memory, for collections created with
//! `vectors_on_disk` (Qdrant's `on_disk` vectors).
//!
//! When such a segment loads, each of its f32 vector columns is written to a file of the
//! node's vector directory and mapped back: the segment's Arrow batch, its searches and its
//! SQL scans read the mapping as they read any buffer. The mapped pages are the kernel's page
//! cache, not the node's heap: they are read from the local disk when a search touches them
//! (rescoring the best candidates of an sq8/bq graph walk, an exact scan) and handed back
//! under memory pressure, so a node's memory needs to hold only the codes and graphs. The
//! mapping is advised random access: a rescoring reads the pages of its few rows, not a
//! read-ahead window around each.
//!
//! The files are scratch, derived from immutable segments: one is removed when the last
//! buffer mapping it drops, and a node clears the directory when it starts, so a crash leaves
//! nothing behind for long.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array, RecordBatch};
use arrow::buffer::{Buffer, ScalarBuffer};
use arrow::datatypes::{DataType, Float32Type};
use memmap2::{Advice, Mmap};

use crate::error::ComputeError;

/// The directory a node keeps the vector files of its on-disk collections in.
#[derive(Debug)]
pub struct VectorFiles {
    dir: PathBuf,
    /// Numbers the files, so each has a name of its own.
    next: AtomicU64,
}

/// A mapped vector file: removed when dropped, which is when the last buffer over it drops.
#[derive(Debug)]
struct MappedFile {
    map: Mmap,
    path: PathBuf,
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "vector file not removed");
        }
    }
}

impl VectorFiles {
    /// Uses `dir` (created if missing) for vector files, removing the files a previous run
    /// of the node left there.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(&dir)?;
        Ok(Self { dir, next: AtomicU64::new(0) })
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `batch` with its vector columns `names` moved to mapped files, and the names of those
    /// moved. Columns that are not `fixed_size_list<float32>` without nulls, or hold no
    /// values, stay as they are (the segment's checks report the former).
    pub fn map_columns(&self, batch: RecordBatch, names: &[String]) -> Result<(RecordBatch, Vec<String>), ComputeError> {
        let schema = batch.schema();
        let mut columns = batch.columns().to_vec();
        let mut mapped_names = Vec::new();
        for name in names {
            let Ok(at) = schema.index_of(name) else { continue };
            if let Some(mapped) = self.map_column(&columns[at])? {
                columns[at] = mapped;
                mapped_names.push(name.clone());
            }
        }
        Ok((RecordBatch::try_new(schema, columns)?, mapped_names))
    }

    /// `column` with its values in a mapped file, or `None` when it is not a non-empty
    /// `fixed_size_list<float32>`.
    fn map_column(&self, column: &ArrayRef) -> Result<Option<ArrayRef>, ComputeError> {
        let Some(list) = column.as_fixed_size_list_opt().filter(|l| l.value_type() == DataType::Float32) else {
            return Ok(None);
        };
        let dim = list.value_length() as usize;
        let values = list.values().as_primitive::<Float32Type>();
        if values.null_count() > 0 || list.is_empty() || dim == 0 {
            return Ok(None);
        }
        let rows = values.values().slice(list.offset() * dim, list.len() * dim);
        let buffer = self.write_and_map(rows.inner().as_slice()).map_err(|e| {
            ComputeError::Internal(format!("vectors not written to {}: {e}", self.dir.display()))
        })?;
        let mapped = Float32Array::new(ScalarBuffer::new(buffer, 0, list.len() * dim), None);
        let (field, size, _, nulls) = list.clone().into_parts();
        Ok(Some(Arc::new(FixedSizeListArray::try_new(field, size, Arc::new(mapped), nulls)?)))
    }

    /// Writes `bytes` to a new file and maps it read-only, for random access.
    fn write_and_map(&self, bytes: &[u8]) -> io::Result<Buffer> {
        let path = self.dir.join(format!("vectors-{}.f32", self.next.fetch_add(1, Ordering::Relaxed)));
        let written = (|| {
            let mut file = OpenOptions::new().write(true).create_new(true).open(&path)?;
            file.write_all(bytes)?;
            drop(file);
            // SAFETY: the file is private to this node's vector directory and never written
            // again; it is only removed (which keeps the mapped pages) when the map drops.
            let map = unsafe { Mmap::map(&File::open(&path)?)? };
            map.advise(Advice::Random)?;
            Ok::<_, io::Error>(map)
        })();
        let map = match written {
            Ok(map) => map,
            Err(e) => {
                let _ = fs::remove_file(&path);
                return Err(e);
            }
        };
        let file = Arc::new(MappedFile { map, path });
        let ptr = NonNull::new(file.map.as_ptr().cast_mut())
            .ok_or_else(|| io::Error::other("a mapping at address 0"))?;
        let len = file.map.len();
        // SAFETY: `ptr` and `len` describe the mapping `file` owns, which lives as long as
        // the buffer holds `file`; the mapping is read-only and page-aligned (so f32-aligned).
        Ok(unsafe { Buffer::from_custom_allocation(ptr, len, file) })
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn mapped_columns_read_the_same_and_their_files_go_with_them() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("v")).unwrap();
        fs::write(dir.path().join("v/left-by-a-crash.f32"), b"x").unwrap();
        let files = VectorFiles::open(dir.path().join("v")).unwrap();
        assert_eq!(fs::read_dir(files.dir()).unwrap().count(), 0, "a previous run's files are cleared");

        let values: Vec<Option<Vec<Option<f32>>>> = (0..10).map(|r| Some((0..4).map(|d| Some((r * 4 + d) as f32)).collect())).collect();
        let list = FixedSizeListArray::from_iter_primitive::<Float32Type, _, _>(values, 4);
        let list: ArrayRef = Arc::new(list.slice(2, 6));
        let schema = Arc::new(Schema::new(vec![Field::new("v", list.data_type().clone(), false)]));
        let batch = RecordBatch::try_new(schema, vec![list.clone()]).unwrap();

        let (mapped, names) = files.map_columns(batch, &["v".to_string(), "absent".to_string()]).unwrap();
        assert_eq!(names, ["v"]);
        assert_eq!(mapped.column(0).as_ref(), list.as_ref(), "the same values, offset view included");
        assert_eq!(fs::read_dir(files.dir()).unwrap().count(), 1);
        assert_eq!(fs::metadata(files.dir().join("vectors-0.f32")).unwrap().len(), 6 * 4 * 4);
        drop(mapped);
        assert_eq!(fs::read_dir(files.dir()).unwrap().count(), 0, "the file goes with the last buffer");
    }
}
