//! Three members elect a leader and replicate its writes; a follower refuses writes naming the
//! leader; when the leader stops, the other two elect a new one and lose nothing acknowledged;
//! the old leader, reopened on its directory, catches up.

use std::time::Duration;

use grape_meta::{CommandResult, MetaError};

use super::{create, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_failover_keeps_acknowledged_writes() {
    let mut cluster = Cluster::start(&[1, 2, 3]).await;
    let leader = cluster.leader().await;
    for id in cluster.running() {
        assert_eq!(cluster.node(id).wait_for_leader(Duration::from_secs(5)).await.unwrap(), leader);
    }

    cluster.write_all(leader, (0..20).map(|i| create(&format!("before-{i}")))).await;
    let catalog = cluster.converge(leader).await;
    assert_eq!(catalog.collections.len(), 20);

    let follower = cluster.running().into_iter().find(|id| *id != leader).unwrap();
    match cluster.node(follower).write(create("on-follower")).await {
        Err(MetaError::NotLeader { leader: Some(l), leader_addr: Some(addr) }) => {
            assert_eq!((l, addr), (leader, cluster.addrs[&leader].to_string()));
        }
        other => panic!("write on a follower: {other:?}"),
    }
    assert!(matches!(cluster.node(follower).read_catalog().await, Err(MetaError::NotLeader { leader: Some(l), .. }) if l == leader));

    let status = cluster.node(leader).status().await;
    assert_eq!(status.members, vec![1, 2, 3]);
    for m in &status.nodes {
        assert_eq!(m.addr, cluster.addrs[&m.id].to_string());
        assert!(m.voter && m.lag.is_some(), "{m:?}");
    }
    assert!(cluster.node(follower).status().await.nodes.iter().all(|m| m.lag.is_none()), "lag is known on the leader only");

    cluster.stop(leader).await;
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);
    assert_eq!(cluster.node(new_leader).write(create("after-failover")).await.unwrap(), CommandResult::Applied { version: 0 });
    let catalog = cluster.converge(new_leader).await;
    assert_eq!(catalog.collections.len(), 21, "every acknowledged write is on both survivors");
    assert!((0..20).all(|i| catalog.collections.contains_key(&format!("before-{i}"))));

    cluster.restart(leader).await;
    let now_leader = cluster.leader().await;
    assert_eq!(cluster.converge(now_leader).await, catalog, "the old leader caught up");
    cluster.shutdown().await;
}
