//! A follower that was down while the leader snapshotted and purged its log catches up from a
//! snapshot sent in chunks.

use grape_meta::node::config::SNAPSHOT_CHUNK_BYTES;
use grape_meta::node::{LOGS_KEPT_AFTER_SNAPSHOT, SNAPSHOT_EVERY};

use super::{create, Cluster, WAIT};

/// Collection names this long make the snapshot span several chunks.
fn long_name(n: u64) -> String {
    format!("c-{n}-{}", "x".repeat(2000))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_follower_catches_up_from_snapshot() {
    let mut cluster = Cluster::start(&[1, 2, 3]).await;
    let leader = cluster.leader().await;
    cluster.write_all(leader, (0..10).map(|i| create(&format!("early-{i}")))).await;
    cluster.converge(leader).await;

    let lagging = cluster.running().into_iter().find(|id| *id != leader).unwrap();
    let stopped_at = cluster.node(lagging).status().await.last_log_index.unwrap();
    cluster.stop(lagging).await;

    let writes = SNAPSHOT_EVERY + LOGS_KEPT_AFTER_SNAPSHOT + 100;
    for chunk in 0..writes / 100 {
        cluster.write_all(leader, (0..100).map(|i| create(&long_name(chunk * 100 + i)))).await;
    }
    let purged = cluster
        .node(leader)
        .raft()
        .wait(Some(WAIT))
        .metrics(|m| m.purged.is_some_and(|p| p.index > stopped_at), "leader purged the log the stopped follower needs")
        .await
        .unwrap()
        .purged
        .unwrap()
        .index;
    let snapshot = cluster.node(leader).raft().get_snapshot().await.unwrap().unwrap();
    let size = snapshot.snapshot.get_ref().len() as u64;
    assert!(size > 2 * SNAPSHOT_CHUNK_BYTES, "the snapshot spans several chunks: {size} bytes");

    cluster.restart(lagging).await;
    let catalog = cluster.converge(leader).await;
    assert_eq!(catalog.collections.len() as u64, 10 + writes);
    let status = cluster.node(lagging).status().await;
    assert!(status.snapshot.is_some_and(|s| s >= purged), "installed a snapshot covering the purged log: {status:?}");
    assert_eq!(status.last_applied, cluster.node(leader).status().await.last_applied);
    cluster.shutdown().await;
}
