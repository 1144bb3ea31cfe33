//! A fresh node joins a running group (learner, then voter) and is removed again; membership
//! changes are refused on followers.

use grape_meta::MetaError;

use super::{create, Cluster, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_and_remove_a_member() {
    let mut cluster = Cluster::start(&[1, 2, 3]).await;
    let leader = cluster.leader().await;
    cluster.write_all(leader, (0..10).map(|i| create(&format!("c-{i}")))).await;

    cluster.start_joiner(4).await;
    let fresh = cluster.node(4).status().await;
    assert!(fresh.members.is_empty() && fresh.leader_id.is_none(), "the joiner waits to be added: {fresh:?}");

    let addr = cluster.addrs[&4].to_string();
    let follower = cluster.running().into_iter().find(|id| *id != leader && *id != 4).unwrap();
    assert!(matches!(cluster.node(follower).add_member(4, &addr).await, Err(MetaError::NotLeader { leader: Some(l), .. }) if l == leader));
    assert!(matches!(cluster.node(follower).remove_member(4).await, Err(MetaError::NotLeader { .. })));

    cluster.node(leader).add_member(4, &addr).await.unwrap();
    cluster.node(leader).add_member(4, &addr).await.unwrap();
    assert!(matches!(cluster.node(leader).add_member(4, "127.0.0.1:1").await, Err(MetaError::Membership(_))));
    let status = cluster.node(leader).status().await;
    assert_eq!(status.members, vec![1, 2, 3, 4]);
    let joined = status.nodes.iter().find(|m| m.id == 4).unwrap();
    assert!(joined.voter && joined.addr == addr, "{joined:?}");
    cluster.write_all(leader, (10..20).map(|i| create(&format!("c-{i}")))).await;
    assert_eq!(cluster.converge(leader).await.collections.len(), 20, "the new member has the whole catalog");
    assert_eq!(cluster.node(4).status().await.members, vec![1, 2, 3, 4]);

    cluster.node(leader).remove_member(4).await.unwrap();
    cluster.node(leader).remove_member(4).await.unwrap();
    let status = cluster.node(leader).status().await;
    assert_eq!(status.members, vec![1, 2, 3]);
    assert!(status.nodes.iter().all(|m| m.id != 4), "{status:?}");
    cluster.stop(4).await;
    cluster.write_all(leader, [create("after-removal")]).await;
    assert_eq!(cluster.converge(leader).await.collections.len(), 21);
    cluster.node(leader).raft().wait(Some(WAIT)).voter_ids([1, 2, 3], "membership without 4").await.unwrap();
    cluster.shutdown().await;
}
