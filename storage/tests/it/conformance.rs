//! The storage conformance suite: the same contract checked on every backend.

use arrow::compute::concat_batches;
use bytes::Bytes;
use grape_storage::{SegmentMeta, StatValue, Storage, StorageErrorKind};
use object_store::{ObjectStoreExt, PutPayload};

use crate::data;

/// Runs every conformance check against `storage`, which must start empty.
pub async fn storage_test_suite(storage: &Storage) {
    let meta = write_and_read_back(storage).await;
    segment_stats(&meta);
    writes_never_overwrite(storage, &meta).await;
    missing_segment_is_not_found(storage, &meta).await;
    corrupt_segments_are_errors(storage).await;
    corrupt_segments_are_errors(&storage.clone().with_read_part_bytes(1000)).await;
    ranged_reads(storage).await;
    delete_and_list(storage).await;
}

/// Large objects are read as ranged GETs in parallel and come back whole; a single range reads
/// only its bytes.
async fn ranged_reads(storage: &Storage) {
    let batches = vec![data::batch(0, 400)];
    let meta = storage.write_segment("collections/ranged", 0, &batches).await.expect("write");
    let in_parts = storage.clone().with_read_part_bytes(4096);
    assert!(meta.size_bytes > 10 * 4096, "{} bytes make too few parts", meta.size_bytes);
    let before = storage.bytes_fetched();
    let read = in_parts.read_segment(&meta).await.expect("read in parts");
    assert_eq!(concat_batches(&data::schema(), &read).expect("concat"), batches[0]);
    assert_eq!(storage.bytes_fetched() - before, meta.size_bytes, "each byte fetched once");

    let whole = storage.get(&meta.path).await.expect("get");
    let before = storage.bytes_fetched();
    let part = storage.get_range(&meta.path, 1000..1100).await.expect("range");
    assert_eq!(part, whole.slice(1000..1100));
    assert_eq!(storage.bytes_fetched() - before, 100, "a range fetches only its bytes");
    storage.delete(&meta.path).await.expect("delete");
}

async fn write_and_read_back(storage: &Storage) -> SegmentMeta {
    let batches = vec![data::batch(0, 300), data::batch(300, 200)];
    let meta = storage.write_segment("collections/docs", 3, &batches).await.expect("write");
    assert_eq!(meta.shard, 3);
    assert_eq!(meta.rows, 500);
    assert_eq!(meta.path, format!("collections/docs/shard-3/{}.lance", meta.id));
    assert!(meta.size_bytes > 500 * 128 * 4, "{} bytes is too small", meta.size_bytes);

    let read = storage.read_segment(&meta).await.expect("read");
    let expected = concat_batches(&data::schema(), &batches).expect("concat");
    assert_eq!(read[0].schema(), data::schema());
    let got = concat_batches(&data::schema(), &read).expect("concat");
    assert_eq!(got, expected);

    let listed = storage.list("collections/docs/shard-3").await.expect("list");
    let keys_path = meta.keys_path.clone().expect("a keys file beside the segment");
    assert_eq!(keys_path, format!("collections/docs/shard-3/{}.keys", meta.id));
    let keys = storage.read_keys(&keys_path).await.expect("read keys");
    assert_eq!(keys.as_ref(), expected.column(0).as_ref(), "the keys file holds the segment's ids in order");
    let paths: Vec<&str> = listed.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, vec![keys_path.as_str(), meta.path.as_str()]);
    assert_eq!(listed[1].1, meta.size_bytes);
    meta
}

fn segment_stats(meta: &SegmentMeta) {
    let names: Vec<&str> = meta.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "vector", "category", "price", "tag", "flag"]);
    let col = |name: &str| meta.columns.iter().find(|c| c.name == name).expect("column");

    let id = col("id");
    assert_eq!((id.min.clone(), id.max.clone(), id.null_count), (Some(StatValue::UInt(0)), Some(StatValue::UInt(499)), 0));
    let vector = col("vector");
    assert_eq!((vector.min.clone(), vector.max.clone(), vector.null_count), (None, None, 0));
    let category = col("category");
    assert_eq!(category.min, Some(StatValue::Int(-3)));
    assert_eq!(category.max, Some(StatValue::Int(3)));
    assert_eq!(category.null_count, 50);
    let price = col("price");
    assert_eq!((price.min.clone(), price.max.clone()), (Some(StatValue::Float(0.0)), Some(StatValue::Float(249.5))));
    let tag = col("tag");
    assert_eq!((tag.min.clone(), tag.max.clone()), (Some(StatValue::Utf8("t0".into())), Some(StatValue::Utf8("t4".into()))));
    assert_eq!(tag.null_count, 46); // multiples of 11 in 0..500
    let flag = col("flag");
    assert_eq!((flag.min.clone(), flag.max.clone()), (Some(StatValue::Bool(false)), Some(StatValue::Bool(true))));

    // Stats survive the manifest's serde.
    let json = serde_json::to_string(meta).expect("serialize");
    let back: SegmentMeta = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(&back, meta);
}

async fn writes_never_overwrite(storage: &Storage, first: &SegmentMeta) {
    let batch = data::batch(1000, 5);
    let second = storage.write_segment("collections/docs", 3, std::slice::from_ref(&batch)).await.expect("write");
    assert_ne!(second.id, first.id);
    assert_ne!(second.path, first.path);
    assert_eq!(storage.read_segment(&second).await.expect("read second"), vec![batch]);
    let first_rows: usize = storage.read_segment(first).await.expect("read first").iter().map(|b| b.num_rows()).sum();
    assert_eq!(first_rows as u64, first.rows);

    // A create-only put onto an existing segment fails and leaves it intact.
    let err = storage.put_if_absent(&first.path, Bytes::from_static(b"overwrite")).await.err();
    assert_eq!(err.expect("put over a segment must fail").kind(), StorageErrorKind::AlreadyExists);
    storage.read_segment(first).await.expect("first still readable");

    // The same through the object store itself.
    let location = storage.object_path(&first.path).expect("path");
    let options = object_store::PutOptions { mode: object_store::PutMode::Create, ..Default::default() };
    let err = storage
        .object_store()
        .put_opts(&location, PutPayload::from_static(b"x"), options)
        .await
        .err()
        .expect("create over existing must fail");
    assert_eq!(grape_storage::StorageError::from(err).kind(), StorageErrorKind::AlreadyExists);

    storage.delete(&second.path).await.expect("delete second");
}

async fn missing_segment_is_not_found(storage: &Storage, meta: &SegmentMeta) {
    let mut missing = meta.clone();
    missing.id = "00000000-0000-0000-0000-000000000000".into();
    missing.path = format!("collections/docs/shard-3/{}.lance", missing.id);
    let err = storage.read_segment(&missing).await.err().expect("missing segment");
    assert_eq!(err.kind(), StorageErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains(&missing.path), "{err}");
}

async fn corrupt_segments_are_errors(storage: &Storage) {
    let meta = storage.write_segment("collections/corrupt", 0, &[data::batch(0, 50)]).await.expect("write");
    let good = storage.get(&meta.path).await.expect("get");
    let location = storage.object_path(&meta.path).expect("path");
    let store = storage.object_store();

    // Truncated: the metadata's size no longer matches.
    let half = good.slice(0..good.len() / 2);
    store.put(&location, PutPayload::from(half.clone())).await.expect("truncate");
    let err = storage.read_segment(&meta).await.err().expect("truncated");
    assert_eq!(err.kind(), StorageErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains(&meta.path), "{err}");

    // Truncated, with metadata claiming that size: the Lance decoder refuses it.
    let claimed = SegmentMeta { size_bytes: half.len() as u64, ..meta.clone() };
    let err = storage.read_segment(&claimed).await.err().expect("truncated, size matching");
    assert_eq!(err.kind(), StorageErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains(&meta.path), "{err}");

    // Garbage of the right size.
    let garbage = Bytes::from(vec![0xA5u8; good.len()]);
    store.put(&location, PutPayload::from(garbage)).await.expect("garbage");
    let err = storage.read_segment(&meta).await.err().expect("garbage");
    assert_eq!(err.kind(), StorageErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains(&meta.path), "{err}");

    // A valid file whose metadata claims other rows.
    store.put(&location, PutPayload::from(good)).await.expect("restore");
    let wrong_rows = SegmentMeta { rows: 51, ..meta.clone() };
    let err = storage.read_segment(&wrong_rows).await.err().expect("row mismatch");
    assert_eq!(err.kind(), StorageErrorKind::Corrupt, "{err}");
    storage.read_segment(&meta).await.expect("restored");

    storage.delete(&meta.path).await.expect("delete");
}

async fn delete_and_list(storage: &Storage) {
    storage.delete("collections/nowhere/shard-0/none.lance").await.expect("delete missing is ok");
    assert!(storage.list("collections/nowhere").await.expect("list missing").is_empty());

    let a = storage.write_segment("collections/listed", 0, &[data::batch(0, 3)]).await.expect("a");
    let b = storage.write_segment("collections/listed", 1, &[data::batch(3, 3)]).await.expect("b");
    storage.put_if_absent("collections/listedx/other", Bytes::from_static(b"abc")).await.expect("put");

    // Each segment is listed with its keys file beside it.
    let with_keys = |m: &grape_storage::SegmentMeta| vec![m.keys_path.clone().expect("keys file"), m.path.clone()];
    let listed = storage.list("collections/listed").await.expect("list");
    let mut expected: Vec<String> = with_keys(&a).into_iter().chain(with_keys(&b)).collect();
    expected.sort();
    assert_eq!(listed.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(), expected);
    assert!(listed.contains(&(a.path.clone(), a.size_bytes)) && listed.contains(&(b.path.clone(), b.size_bytes)));
    let shard_1 = storage.list("collections/listed/shard-1").await.expect("list");
    assert_eq!(shard_1.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(), with_keys(&b));
    assert!(storage.list("").await.expect("list all").contains(&("collections/listedx/other".to_string(), 3)));

    storage.delete(&a.path).await.expect("delete a");
    storage.delete(&a.path).await.expect("delete a again");
    storage.delete(a.keys_path.as_deref().expect("keys file")).await.expect("delete a's keys");
    let listed = storage.list("collections/listed").await.expect("list");
    assert_eq!(listed.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(), with_keys(&b));
    let err = storage.read_segment(&a).await.err().expect("deleted");
    assert_eq!(err.kind(), StorageErrorKind::NotFound);
}
