//! Keys files: the primary keys of a segment, or the keys a delete removes, as their own small
//! immutable object (an Arrow IPC stream of one column, `id`).
//!
//! Whether a row is still live depends on the keys written after it in its shard: a newer
//! segment holding the same key replaces it, a newer delete log holding it deletes it. A node
//! that holds a segment therefore needs the keys of every newer segment and delete log of the
//! shard, but not their rows: keys files give it those at a small fraction of the bytes, so
//! the rows of one shard can stay spread over many nodes.

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::{Field, Schema};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use bytes::Bytes;

use crate::error::{StorageError, StorageErrorKind};
use crate::format::DeleteLogMeta;
use crate::storage::Storage;

/// Name of the primary-key column of every collection, and of the one column of a keys file.
pub const KEY_COLUMN: &str = "id";

/// Encodes `keys` (no nulls) as a keys file.
pub fn encode_keys(keys: &ArrayRef) -> Result<Bytes, StorageError> {
    let invalid = |e: arrow::error::ArrowError| StorageErrorKind::InvalidData.with_context("encode keys file").with_source(e);
    let schema = Arc::new(Schema::new(vec![Field::new(KEY_COLUMN, keys.data_type().clone(), false)]));
    let batch = RecordBatch::try_new(schema.clone(), vec![keys.clone()]).map_err(invalid)?;
    let mut out = Vec::new();
    let mut writer = StreamWriter::try_new(&mut out, &schema).map_err(invalid)?;
    writer.write(&batch).map_err(invalid)?;
    writer.finish().map_err(invalid)?;
    drop(writer);
    Ok(Bytes::from(out))
}

/// Decodes a keys file read from `path`; anything but one non-null `id` column is `Corrupt`.
pub fn decode_keys(bytes: &[u8], path: &str) -> Result<ArrayRef, StorageError> {
    let corrupt = |why: String| StorageErrorKind::Corrupt.with_context(format!("keys file {path}: {why}"));
    let reader = StreamReader::try_new(Cursor::new(bytes), None).map_err(|e| corrupt(e.to_string()))?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| corrupt(e.to_string()))?;
    if schema.fields().len() != 1 || schema.field(0).name() != KEY_COLUMN {
        return Err(corrupt(format!("expected one column `{KEY_COLUMN}`, found {:?}", schema.fields())));
    }
    let columns: Vec<&dyn Array> = batches.iter().map(|b| b.column(0).as_ref()).collect();
    let keys = match columns.as_slice() {
        [] => arrow::array::new_empty_array(schema.field(0).data_type()),
        _ => arrow::compute::concat(&columns).map_err(|e| corrupt(e.to_string()))?,
    };
    keys.to_data().validate_full().map_err(|e| corrupt(e.to_string()))?;
    if keys.null_count() > 0 {
        return Err(corrupt("keys may not be null".into()));
    }
    Ok(keys)
}

impl Storage {
    /// Writes `keys` as a keys file at `path` (create-only) and returns its size in bytes.
    pub async fn write_keys(&self, path: &str, keys: &ArrayRef) -> Result<u64, StorageError> {
        let bytes = encode_keys(keys)?;
        let size = bytes.len() as u64;
        self.put_if_absent(path, bytes).await.map_err(|e| e.add_context(format!("write keys file {path}")))?;
        Ok(size)
    }

    /// Reads the keys file at `path`.
    pub async fn read_keys(&self, path: &str) -> Result<ArrayRef, StorageError> {
        let bytes = self.get(path).await.map_err(|e| e.add_context(format!("read keys file {path}")))?;
        decode_keys(&bytes, path)
    }

    /// Stages a delete log of `shard` under `dir` (`{dir}/shard-{shard}/{uuid}.deletes`)
    /// holding `keys`. Like a segment it takes effect only once a manifest commit names it.
    pub async fn write_delete_log(&self, dir: &str, shard: u32, keys: &ArrayRef) -> Result<DeleteLogMeta, StorageError> {
        let id = uuid::Uuid::new_v4().to_string();
        let path = crate::storage::shard_object(dir, shard, &format!("{id}.deletes"))?;
        let size_bytes = self.write_keys(&path, keys).await?;
        Ok(DeleteLogMeta { id, shard, path, keys: keys.len() as u64, size_bytes, seq: 0 })
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{StringArray, UInt64Array};

    use super::*;

    #[tokio::test]
    async fn keys_and_delete_logs_round_trip() {
        let storage = Storage::from_url("memory://").expect("memory");
        let keys: ArrayRef = Arc::new(UInt64Array::from(vec![3, 1, 2]));
        let log = storage.write_delete_log("collections/c-0", 1, &keys).await.expect("write");
        assert!(log.path.starts_with("collections/c-0/shard-1/") && log.path.ends_with(".deletes"), "{}", log.path);
        assert_eq!(log.keys, 3);
        assert_eq!(storage.read_keys(&log.path).await.expect("read").as_ref(), keys.as_ref());
        let strings: ArrayRef = Arc::new(StringArray::from(vec!["a", "b"]));
        let bytes = encode_keys(&strings).expect("encode");
        assert_eq!(decode_keys(&bytes, "x").expect("decode").as_ref(), strings.as_ref());
    }

    #[test]
    fn damaged_keys_files_are_corrupt() {
        let keys: ArrayRef = Arc::new(UInt64Array::from(vec![1, 2]));
        let bytes = encode_keys(&keys).expect("encode");
        for damaged in [&bytes[..bytes.len() / 2], b"not arrow".as_slice()] {
            let err = decode_keys(damaged, "k").expect_err("damaged");
            assert_eq!(err.kind(), StorageErrorKind::Corrupt, "{err}");
        }
    }
}
