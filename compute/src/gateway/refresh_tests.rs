//! An insert is acknowledged while the node is still loading other segments: only deciding
//! what to load is serialised, never the loads themselves.

use std::sync::Arc;
use std::time::Duration;

use grape_meta::MetaNode;
use grape_proto::v1;
use grape_storage::Storage;

use super::Gateway;
use crate::datagen;
use crate::engine::Engine;
use crate::gated_store::GatedStore;
use crate::ingest::encode_ipc;
use crate::router::Role;

/// Arrow IPC of 100 generated 8-d rows.
fn rows(first_id: u64) -> Vec<u8> {
    let batch = datagen::batch(8, first_id, 100, first_id);
    encode_ipc(&batch.schema(), &[batch]).expect("encode rows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_is_acknowledged_while_other_segments_are_still_loading() {
    let dir = tempfile::tempdir().unwrap();
    let meta = MetaNode::open(1, &dir.path().join("meta")).await.expect("meta");
    // Reads of the collection "big" wait behind the gate: its segments stay loading.
    let store = GatedStore::new("collections/big-");
    let storage = Storage::new(store.clone(), object_store::path::Path::from(""), "memory://gated");
    let gateway = Arc::new(Gateway::new(meta, Arc::new(Engine::new(storage.clone())), storage, 1, Role::Standalone));
    for name in ["big", "small"] {
        let create = v1::CreateCollectionRequest { name: name.into(), dim: 8, shards: 1, ..Default::default() };
        gateway.create_collection(create).await.expect("create");
    }
    store.set_open(false);
    let loading = tokio::spawn({
        let gateway = gateway.clone();
        async move { gateway.insert("big", &rows(0)).await }
    });
    // Wait until the load of big's new segment is held at the gate (a refresh in progress).
    let held = tokio::time::timeout(Duration::from_secs(30), async {
        while store.waiting() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    held.await.expect("the load of big's segment never reached the gate");
    // The bound is a liveness bound, not a speed figure: before the fix this insert waited for
    // the held load forever.
    let small = tokio::time::timeout(Duration::from_secs(30), gateway.insert("small", &rows(1000))).await;
    let inserted = small.expect("an insert waited for another collection's segment load").expect("insert");
    assert_eq!(inserted.rows, 100);
    assert!(!loading.is_finished(), "big's insert serves its own write, so it waits for its own load");
    store.set_open(true);
    let big = tokio::time::timeout(Duration::from_secs(30), loading).await.expect("big's insert finishes once the gate opens");
    assert_eq!(big.expect("task").expect("insert").rows, 100);
}
