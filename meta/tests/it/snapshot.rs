//! After more than `SNAPSHOT_EVERY` commands a snapshot is built and the log purged; a reopen
//! starts from the snapshot and replays the rest.

use std::time::Duration;

use futures::future::join_all;
use grape_meta::node::{DB_FILE, LOGS_KEPT_AFTER_SNAPSHOT, SNAPSHOT_EVERY};
use grape_meta::store::{new_storage, open_db};
use grape_meta::{Command, CommandResult, MetaNode};
use openraft::storage::{RaftLogReader, RaftLogStorage};

use crate::helpers::{commit, segment, spec};

const WRITES: u64 = 1200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_purges_log_and_restart_restores_state() {
    let dir = tempfile::tempdir().unwrap();
    let node = MetaNode::open(7, dir.path()).await.unwrap();
    let create = Command::CreateCollection { spec: spec("docs", 4) };
    assert_eq!(node.write(create).await.unwrap(), CommandResult::Applied { version: 0 });

    // Concurrent writes, so openraft batches them into fewer fsyncs.
    for chunk in 0..WRITES / 100 {
        let writes = (0..100).map(|i| {
            let n = chunk * 100 + i;
            let cmd = commit("docs", 0, vec![segment(&format!("s{n}"), (n % 4) as u32, 1)], &[]);
            node.write(cmd)
        });
        for r in join_all(writes).await {
            assert!(matches!(r.unwrap(), CommandResult::Applied { .. }));
        }
    }
    let before = node.read_catalog().await.unwrap();
    assert_eq!(before.collections["docs"].version, WRITES);
    assert_eq!(before.collections["docs"].rows(), WRITES);

    node.raft()
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.snapshot.is_some_and(|s| s.index + 1 >= SNAPSHOT_EVERY) && m.purged.is_some(), "snapshot built and log purged")
        .await
        .unwrap();
    let status = node.status().await;
    let snap = status.snapshot.unwrap();
    let purged = status.purged.unwrap();
    assert!(purged + LOGS_KEPT_AFTER_SNAPSHOT >= snap, "{status:?}");
    node.shutdown().await.unwrap();
    drop(node);

    // On disk: the snapshot is what the state machine loads; the log holds only the tail.
    {
        let db = open_db(&dir.path().join(DB_FILE)).unwrap();
        let (mut log, sm) = new_storage(db).unwrap();
        assert!(sm.last_applied().unwrap().index >= snap);
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(purged));
        let entries = log.try_get_log_entries(0..).await.unwrap();
        assert!(entries.len() < (WRITES - purged + 10) as usize, "{} entries", entries.len());
        assert_eq!(entries.first().map(|e| e.log_id.index), Some(purged + 1));
    }

    let node = MetaNode::open(7, dir.path()).await.unwrap();
    assert_eq!(node.local_catalog(), before);
    let cmd = commit("docs", 0, vec![segment("last", 0, 1)], &[]);
    assert_eq!(node.write(cmd).await.unwrap(), CommandResult::Applied { version: WRITES + 1 });
    node.shutdown().await.unwrap();
}
