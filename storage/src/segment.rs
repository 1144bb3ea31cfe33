//! Segments as Lance files: encoding Arrow batches into one Lance v2 file in memory, and decoding
//! a whole file back.
//!
//! Both directions work on bytes, not on the object store: the writer needs the finished file
//! so it can upload it with a create-only put (an object is never overwritten), and the reader
//! gets the object in one request, so that object-store failures (not found, unauthorized,
//! timeout) and format failures (corrupt) stay distinct errors.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use futures::TryStreamExt;
use lance_core::cache::LanceCache;
use lance_encoding::decoder::{DecoderPlugins, FilterExpression};
use lance_file::reader::{FileReader, FileReaderOptions};
use lance_file::version::ConcreteFileVersion;
use lance_file::writer::FileWriterOptions;
use lance_io::object_writer::WriteResult;
use lance_io::scheduler::{ScanScheduler, SchedulerConfig};
use lance_io::utils::CachedFileSize;
use lance_io::ReadBatchParams;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use crate::decoder_panics::catch_decoder_panic;
use crate::error::{StorageError, StorageErrorKind};

/// The Lance file version segments are written in. Pinned, so upgrading Lance never changes
/// what we write by accident; the reader accepts every v2 version from the file's footer.
pub const LANCE_FILE_VERSION: ConcreteFileVersion = ConcreteFileVersion::V2_2;

/// Rows per batch returned by [`decode_lance`].
const READ_BATCH_ROWS: u32 = 64 * 1024;

/// A finished Lance file and what it holds.
#[derive(Debug, Clone)]
pub struct EncodedSegment {
    /// The file's bytes.
    pub bytes: Bytes,
    /// Rows in the file.
    pub rows: u64,
}

/// Encodes `batches` (all with one schema, at least one batch) as one Lance file.
pub async fn encode_lance(batches: &[RecordBatch]) -> Result<EncodedSegment, StorageError> {
    let schema = check_schema(batches)?;
    let lance_schema = lance_core::datatypes::Schema::try_from(schema.as_ref())
        .map_err(|e| StorageErrorKind::InvalidData.with_context("schema cannot be stored as Lance").with_source(e))?;
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = Box::new(MemoryWriter { buffer: Arc::clone(&buffer) });
    let encode_err = |e: lance_core::Error| StorageErrorKind::InvalidData.with_context("encode Lance file").with_source(e);
    let mut writer =
        lance_file::versions::create_writer(LANCE_FILE_VERSION, sink, lance_schema, FileWriterOptions::default()).map_err(encode_err)?;
    for batch in batches {
        writer.write_batch(batch).await.map_err(encode_err)?;
    }
    let summary = writer.finish().await.map_err(encode_err)?;
    drop(writer);
    let bytes = std::mem::take(&mut *lock(&buffer)?);
    Ok(EncodedSegment { bytes: Bytes::from(bytes), rows: summary.num_rows })
}

/// Checks that there is at least one batch and that all share the first one's schema.
fn check_schema(batches: &[RecordBatch]) -> Result<SchemaRef, StorageError> {
    let first = batches.first().ok_or_else(|| StorageErrorKind::InvalidData.with_context("a segment needs at least one batch"))?;
    let schema = first.schema();
    for (i, batch) in batches.iter().enumerate().skip(1) {
        if batch.schema().fields() != schema.fields() {
            return Err(StorageErrorKind::InvalidData.with_context(format!(
                "batch {i} has schema {:?}, batch 0 has {:?}",
                batch.schema().fields(),
                schema.fields()
            )));
        }
    }
    Ok(schema)
}

/// Decodes a whole Lance file. `name` only labels errors; every decoding failure is
/// [`StorageErrorKind::Corrupt`].
///
/// Decoding runs on a blocking thread with a current-thread runtime of its own, so that every
/// task Lance spawns runs on that thread, under [`catch_decoder_panic`]: a Lance panic on a
/// damaged file becomes a `Corrupt` error, logged quietly, instead of taking the caller down.
pub async fn decode_lance(bytes: Bytes, name: &str) -> Result<Vec<RecordBatch>, StorageError> {
    let owned_name = name.to_string();
    let decode = move || -> Result<Vec<RecordBatch>, StorageError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StorageError::from(e).add_context(format!("start a runtime to decode {owned_name}")))?;
        let decoding = std::panic::AssertUnwindSafe(|| runtime.block_on(decode_task(bytes, &owned_name)));
        catch_decoder_panic(decoding).unwrap_or_else(|why| {
            Err(StorageErrorKind::Corrupt.with_context(format!("{owned_name} is not a readable Lance file (Lance failed on it: {why})")))
        })
    };
    match tokio::task::spawn_blocking(decode).await {
        Ok(result) => result,
        Err(e) => Err(StorageErrorKind::Corrupt.with_context(format!("decoding {name} failed")).with_source(e)),
    }
}

/// Bytes at the end of a Lance file: three u64 offsets, two u32 counts, two u16 versions and
/// the magic `LANC`.
const LANCE_FOOTER_LEN: usize = 40;

/// Checks that the footer of a Lance file describes tables that fit in the file, before
/// Lance reads it: Lance sizes allocations by the footer's counts, so a damaged count (a
/// fuzzer found 4 billion global buffers) aborted the process on a failed 63 GB allocation,
/// and an empty file made it panic.
fn check_footer(bytes: &[u8], name: &str) -> Result<(), StorageError> {
    let corrupt = |what: String| Err(StorageErrorKind::Corrupt.with_context(format!("{name} is not a readable Lance file: {what}")));
    let len = bytes.len() as u64;
    let Some(footer) = bytes.len().checked_sub(LANCE_FOOTER_LEN).map(|at| &bytes[at..]) else {
        return corrupt(format!("{len} bytes is shorter than a Lance footer"));
    };
    if &footer[36..] != b"LANC" {
        return corrupt("no Lance magic at its end".into());
    }
    let u64_at = |at: usize| u64::from_le_bytes(footer[at..at + 8].try_into().unwrap_or_default());
    let u32_at = |at: usize| u64::from(u32::from_le_bytes(footer[at..at + 4].try_into().unwrap_or_default()));
    let (column_meta, column_offsets, global_offsets) = (u64_at(0), u64_at(8), u64_at(16));
    let (global_buffers, columns) = (u32_at(24), u32_at(28));
    let body = len - LANCE_FOOTER_LEN as u64;
    if column_meta > body || column_offsets > body || global_offsets > body {
        return corrupt(format!("its footer points past the file's {len} bytes"));
    }
    if global_buffers * 16 > body - global_offsets || columns * 16 > body - column_offsets {
        return corrupt(format!("its footer declares {global_buffers} buffers and {columns} columns, more than {len} bytes hold"));
    }
    Ok(())
}

async fn decode_task(bytes: Bytes, name: &str) -> Result<Vec<RecordBatch>, StorageError> {
    check_footer(&bytes, name)?;
    let corrupt =
        |e: lance_core::Error| StorageErrorKind::Corrupt.with_context(format!("{name} is not a readable Lance file")).with_source(e);
    let size = bytes.len() as u64;
    // An in-memory Lance store holding just this file: Lance's reader needs a scheduler over a
    // store, and bytes we already hold cannot fail with an I/O error.
    let store = lance_io::object_store::ObjectStore::memory();
    let path = Path::from("segment.lance");
    store
        .inner
        .put(&path, PutPayload::from(bytes))
        .await
        .map_err(|e| StorageError::from(e).add_context(format!("stage {name} for decoding")))?;
    let store = Arc::new(store);
    let config = SchedulerConfig::max_bandwidth(&store);
    let scheduler = ScanScheduler::new(store, config);
    let file = scheduler.open_file(&path, &CachedFileSize::new(size)).await.map_err(corrupt)?;
    let reader =
        FileReader::try_open(file, None, Arc::new(DecoderPlugins::default()), &LanceCache::no_cache(), FileReaderOptions::default())
            .await
            .map_err(corrupt)?;
    let stream =
        reader.read_stream(ReadBatchParams::RangeFull, READ_BATCH_ROWS, 4, FilterExpression::no_filter()).await.map_err(corrupt)?;
    stream.try_collect().await.map_err(|e| StorageErrorKind::Corrupt.with_context(format!("decode {name}")).with_source(e))
}

fn lock(buffer: &Mutex<Vec<u8>>) -> Result<std::sync::MutexGuard<'_, Vec<u8>>, StorageError> {
    buffer.lock().map_err(|_| StorageErrorKind::Io.with_context("segment buffer lock poisoned"))
}

/// A Lance [`lance_io::traits::Writer`] that appends to a shared in-memory buffer.
struct MemoryWriter {
    buffer: Arc<Mutex<Vec<u8>>>,
}

impl MemoryWriter {
    fn len(&self) -> std::io::Result<usize> {
        self.buffer.lock().map(|b| b.len()).map_err(|_| std::io::Error::other("segment buffer lock poisoned"))
    }
}

impl tokio::io::AsyncWrite for MemoryWriter {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let result = match self.buffer.lock() {
            Ok(mut b) => {
                b.extend_from_slice(buf);
                Ok(buf.len())
            }
            Err(_) => Err(std::io::Error::other("segment buffer lock poisoned")),
        };
        Poll::Ready(result)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[async_trait::async_trait]
impl lance_io::traits::Writer for MemoryWriter {
    async fn tell(&mut self) -> lance_core::Result<usize> {
        Ok(self.len()?)
    }

    async fn shutdown(&mut self) -> lance_core::Result<WriteResult> {
        Ok(WriteResult { size: self.len()?, e_tag: None })
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(ids: Vec<i64>) -> RecordBatch {
        let tags: Vec<String> = ids.iter().map(|i| format!("t{i}")).collect();
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("tag", DataType::Utf8, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(ids)), Arc::new(StringArray::from(tags))]).expect("batch")
    }

    #[tokio::test]
    async fn round_trip_in_memory() {
        let input = vec![batch(vec![1, 2, 3]), batch(vec![4, 5])];
        let encoded = encode_lance(&input).await.expect("encode");
        assert_eq!(encoded.rows, 5);
        let output = decode_lance(encoded.bytes, "test").await.expect("decode");
        let schema = input[0].schema();
        let expected = arrow::compute::concat_batches(&schema, &input).expect("concat");
        let got = arrow::compute::concat_batches(&schema, &output).expect("concat");
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn no_batches_or_mixed_schemas_are_invalid() {
        let err = encode_lance(&[]).await.err().expect("empty must fail");
        assert_eq!(err.kind(), StorageErrorKind::InvalidData);
        let other = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)])),
            vec![Arc::new(Int64Array::from(vec![1]))],
        )
        .expect("batch");
        let err = encode_lance(&[batch(vec![1]), other]).await.err().expect("mixed must fail");
        assert_eq!(err.kind(), StorageErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn garbage_and_truncation_are_corrupt() {
        let err = decode_lance(Bytes::from_static(b"definitely not lance"), "g").await.err();
        assert_eq!(err.expect("garbage must fail").kind(), StorageErrorKind::Corrupt);
        let encoded = encode_lance(&[batch(vec![1, 2, 3])]).await.expect("encode");
        let half = encoded.bytes.slice(0..encoded.bytes.len() / 2);
        let err = decode_lance(half, "t").await.err();
        assert_eq!(err.expect("truncated must fail").kind(), StorageErrorKind::Corrupt);
        let tail = encoded.bytes.slice(encoded.bytes.len() / 2..);
        let err = decode_lance(tail, "t").await.err();
        assert_eq!(err.expect("headless must fail").kind(), StorageErrorKind::Corrupt);
    }

    /// Damaged bytes anywhere (footer and metadata included) give data or a `Corrupt` error:
    /// never a panic or a hang. Lance files have no checksums, so damaged data pages may decode.
    #[tokio::test]
    async fn damaged_bytes_never_panic() {
        let encoded = encode_lance(&[batch((0..200).collect())]).await.expect("encode");
        let len = encoded.bytes.len();
        for pos in (0..len).step_by(7) {
            let mut damaged = encoded.bytes.to_vec();
            damaged[pos] ^= 0xFF;
            let decoded = tokio::time::timeout(std::time::Duration::from_secs(10), decode_lance(Bytes::from(damaged), "d"))
                .await
                .unwrap_or_else(|_| panic!("decoding hung with byte {pos} of {len} damaged"));
            if let Err(e) = decoded {
                assert_eq!(e.kind(), StorageErrorKind::Corrupt, "byte {pos}: {e}");
            }
        }
    }
}
