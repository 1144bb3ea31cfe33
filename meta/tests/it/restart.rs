//! A node keeps its catalog across shutdown and reopen, and accepts writes afterwards.

use grape_meta::{CommandResult, MetaNode};

use crate::helpers::{commit, segment, spec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = MetaNode::open(1, dir.path()).await.unwrap();
    let mut watch = node.watch();
    let seen = *watch.borrow_and_update();

    let create = grape_meta::Command::CreateCollection { spec: spec("docs", 2) };
    assert_eq!(node.write(create.clone()).await.unwrap(), CommandResult::Applied { version: 0 });
    assert_eq!(node.write(create).await.unwrap(), CommandResult::AlreadyExists("docs".into()));
    assert!(*watch.borrow_and_update() > seen, "watch moves after a write");

    let c1 = commit("docs", 0, vec![segment("a", 0, 10), segment("b", 1, 20)], &[]);
    assert_eq!(node.write(c1).await.unwrap(), CommandResult::Applied { version: 1 });
    let c2 = commit("docs", 0, vec![segment("c", 1, 5)], &[(0, "7")]);
    assert_eq!(node.write(c2).await.unwrap(), CommandResult::Applied { version: 2 });
    let wrong_id = commit("docs", 9, vec![], &[]);
    assert!(matches!(node.write(wrong_id).await.unwrap(), CommandResult::NotFound(_)));

    let before = node.read_catalog().await.unwrap();
    assert_eq!(before.collections["docs"].rows(), 35);
    assert_eq!(before.collections["docs"].version, 2);
    assert_eq!(node.local_catalog(), before);

    let status = node.status().await;
    assert_eq!((status.id, status.leader_id, status.members.clone()), (1, Some(1), vec![1]));
    assert!(status.committed >= status.last_applied && status.committed.is_some(), "{status:?}");
    node.shutdown().await.unwrap();
    drop(node);

    let node = MetaNode::open(1, dir.path()).await.unwrap();
    assert_eq!(node.local_catalog(), before, "applied state after reopen");
    assert_eq!(node.read_catalog().await.unwrap(), before, "linearizable read after reopen");
    let status = node.status().await;
    assert_eq!(status.members, vec![1], "not re-initialised");
    assert_eq!(status.leader_id, Some(1), "{status:?}");

    let more = grape_meta::Command::CreateCollection { spec: spec("more", 1) };
    assert_eq!(node.write(more).await.unwrap(), CommandResult::Applied { version: 0 });
    let c3 = commit("docs", 0, vec![segment("d", 0, 1)], &[]);
    assert_eq!(node.write(c3).await.unwrap(), CommandResult::Applied { version: 3 });
    let cat = node.read_catalog().await.unwrap();
    assert_eq!(cat.collections["more"].id, 1);
    assert_eq!(cat.collections["docs"].rows(), 36);
    node.shutdown().await.unwrap();
}
