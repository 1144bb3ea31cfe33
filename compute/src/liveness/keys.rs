//! Keys: where each row of a segment is by key, and the keys of the sources that override
//! older rows (newer segments and delete logs), read once from storage and cached.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, UInt64Type};
use grape_storage::format::{DeleteLogMeta, SegmentMeta};
use grape_storage::Storage;
use tokio::sync::OnceCell;

use crate::error::ComputeError;
use crate::segment::ID_COLUMN;

/// Row of each key in one segment (keys are unique within a segment).
#[derive(Debug)]
pub enum RowIndex {
    /// A collection with `uint64` ids.
    U64(HashMap<u64, u32>),
    /// A collection with `utf8` ids.
    Utf8(HashMap<Box<str>, u32>),
}

impl RowIndex {
    /// Indexes the `id` column of a segment.
    pub fn build(ids: &ArrayRef) -> Result<RowIndex, ComputeError> {
        match ids.data_type() {
            DataType::UInt64 => {
                Ok(RowIndex::U64(ids.as_primitive::<UInt64Type>().values().iter().enumerate().map(|(r, k)| (*k, r as u32)).collect()))
            }
            DataType::Utf8 => Ok(RowIndex::Utf8(
                ids.as_string::<i32>().iter().enumerate().filter_map(|(r, k)| Some((Box::from(k?), r as u32))).collect(),
            )),
            t => Err(ComputeError::Corrupt(format!("`id` is {t}, expected uint64 or utf8"))),
        }
    }

    /// Appends to `rows` the row of each of `keys` that this segment holds.
    pub fn rows_of(&self, keys: &ArrayRef, rows: &mut Vec<u32>) -> Result<(), ComputeError> {
        match (self, keys.data_type()) {
            (RowIndex::U64(map), DataType::UInt64) => {
                rows.extend(keys.as_primitive::<UInt64Type>().values().iter().filter_map(|k| map.get(k)));
            }
            (RowIndex::Utf8(map), DataType::Utf8) => {
                rows.extend(keys.as_string::<i32>().iter().flatten().filter_map(|k| map.get(k)));
            }
            (_, t) => return Err(ComputeError::Corrupt(format!("keys of type {t} do not match the collection's ids"))),
        }
        Ok(())
    }
}

/// Where the keys of one source are: its manifest entry.
#[derive(Debug, Clone, Copy)]
pub enum KeysAt<'a> {
    /// A segment: its keys file, or (written before keys files existed) the segment itself.
    Segment(&'a SegmentMeta),
    /// A delete log.
    DeleteLog(&'a DeleteLogMeta),
}

impl KeysAt<'_> {
    /// The object the keys are cached under.
    fn path(&self) -> &str {
        match self {
            KeysAt::Segment(s) => s.keys_path.as_deref().unwrap_or(&s.path),
            KeysAt::DeleteLog(d) => &d.path,
        }
    }
}

/// The keys of sources, read from storage once and shared by every segment of the node.
#[derive(Debug)]
pub struct KeyCache {
    storage: Storage,
    entries: Mutex<HashMap<String, Arc<OnceCell<ArrayRef>>>>,
}

impl KeyCache {
    /// An empty cache reading from `storage`.
    pub fn new(storage: Storage) -> Self {
        KeyCache { storage, entries: Mutex::new(HashMap::new()) }
    }

    /// The keys of `source`, from the cache or storage.
    pub async fn keys(&self, source: &KeysAt<'_>) -> Result<ArrayRef, ComputeError> {
        let cell = self.entries.lock().unwrap_or_else(|e| e.into_inner()).entry(source.path().to_string()).or_default().clone();
        let keys = cell.get_or_try_init(|| self.read(source)).await?;
        Ok(keys.clone())
    }

    async fn read(&self, source: &KeysAt<'_>) -> Result<ArrayRef, ComputeError> {
        match source {
            KeysAt::Segment(&SegmentMeta { keys_path: Some(ref path), .. }) | KeysAt::DeleteLog(&DeleteLogMeta { ref path, .. }) => {
                Ok(self.storage.read_keys(path).await?)
            }
            KeysAt::Segment(meta) => {
                let batches = self.storage.read_segment(meta).await?;
                let ids: Vec<&dyn Array> = batches.iter().filter_map(|b| b.column_by_name(ID_COLUMN).map(|c| c.as_ref())).collect();
                if ids.len() != batches.len() {
                    return Err(ComputeError::Corrupt(format!("segment {} has no `id` column", meta.path)));
                }
                Ok(arrow::compute::concat(&ids)?)
            }
        }
    }

    /// Forgets the keys of every object not in `keep` (sources no manifest names any more).
    pub fn retain(&self, keep: &HashSet<&str>) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).retain(|path, _| keep.contains(path.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{StringArray, UInt64Array};

    use super::*;

    #[test]
    fn rows_of_finds_the_rows_holding_each_key() {
        let ids: ArrayRef = Arc::new(UInt64Array::from(vec![10, 11, 12]));
        let index = RowIndex::build(&ids).unwrap();
        let mut rows = Vec::new();
        index.rows_of(&(Arc::new(UInt64Array::from(vec![12, 99, 10])) as ArrayRef), &mut rows).unwrap();
        assert_eq!(rows, vec![2, 0]);
        let strings: ArrayRef = Arc::new(StringArray::from(vec!["a", "b"]));
        assert!(index.rows_of(&strings, &mut rows).is_err(), "keys of another type are refused");
        let index = RowIndex::build(&strings).unwrap();
        rows.clear();
        index.rows_of(&(Arc::new(StringArray::from(vec!["b"])) as ArrayRef), &mut rows).unwrap();
        assert_eq!(rows, vec![1]);
    }
}
