//! Multi-member meta groups in one process: each member has its own directory and serves its
//! Raft service on its own loopback port, as separate `grape meta` processes would.

mod catch_up;
mod failover;
mod membership;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use grape_meta::types::NodeId;
use grape_meta::{network, Catalog, Command, CommandResult, MetaNode};
use openraft::ServerState;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::helpers::spec;

/// How long a scenario waits for an election, replication or catch-up before failing.
pub const WAIT: Duration = Duration::from_secs(20);

/// A cheap command: create a one-shard collection.
pub fn create(name: &str) -> Command {
    Command::CreateCollection { spec: spec(name, 1) }
}

/// One running member: the node and the server of its Raft service.
pub struct Member {
    pub node: Arc<MetaNode>,
    stop: oneshot::Sender<()>,
    serving: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Member {
    /// Opens member `id` on `dir` and serves its Raft service on `listener`.
    async fn start(id: NodeId, dir: PathBuf, listener: TcpListener, peers: BTreeMap<NodeId, String>) -> Member {
        let node = MetaNode::open_group(id, &dir, peers).await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(network::serve(listener, node.raft().clone(), async move {
            let _ = stopped.await;
        }));
        Member { node, stop, serving }
    }

    /// Shuts Raft down, then stops the server and waits until it let go of its port.
    async fn stop(self) {
        self.node.shutdown().await.unwrap();
        let _ = self.stop.send(());
        self.serving.await.unwrap().unwrap();
    }
}

/// A group of members on loopback ports, each storing under its own directory.
pub struct Cluster {
    root: TempDir,
    /// Every member's Raft address, running or not.
    pub addrs: BTreeMap<NodeId, SocketAddr>,
    running: BTreeMap<NodeId, Member>,
}

impl Cluster {
    /// Starts a group of `ids`, all voters; the lowest id initialises it.
    pub async fn start(ids: &[NodeId]) -> Cluster {
        let mut cluster = Cluster { root: tempfile::tempdir().unwrap(), addrs: BTreeMap::new(), running: BTreeMap::new() };
        let mut listeners = Vec::new();
        for &id in ids {
            // Bind first to learn the port, so the peer map names real addresses.
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            cluster.addrs.insert(id, listener.local_addr().unwrap());
            listeners.push((id, listener));
        }
        let peers = cluster.peers();
        for (id, listener) in listeners {
            let member = Member::start(id, cluster.dir(id), listener, peers.clone()).await;
            cluster.running.insert(id, member);
        }
        cluster
    }

    /// The peer map of the group: id → address.
    pub fn peers(&self) -> BTreeMap<NodeId, String> {
        self.addrs.iter().map(|(id, a)| (*id, a.to_string())).collect()
    }

    fn dir(&self, id: NodeId) -> PathBuf {
        self.root.path().join(format!("meta-{id}"))
    }

    /// The running member `id`.
    pub fn node(&self, id: NodeId) -> &MetaNode {
        &self.running[&id].node
    }

    /// Ids of the running members.
    pub fn running(&self) -> Vec<NodeId> {
        self.running.keys().copied().collect()
    }

    /// Starts a node `id` that is not in the group yet (it waits to be added), with `peers`
    /// naming the group and itself.
    pub async fn start_joiner(&mut self, id: NodeId) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.addrs.insert(id, listener.local_addr().unwrap());
        let member = Member::start(id, self.dir(id), listener, self.peers()).await;
        self.running.insert(id, member);
    }

    /// Stops member `id` (Raft and server); its directory stays.
    pub async fn stop(&mut self, id: NodeId) {
        self.running.remove(&id).expect("member is running").stop().await;
    }

    /// Reopens the stopped member `id` on its directory, at its old address.
    pub async fn restart(&mut self, id: NodeId) {
        let listener = TcpListener::bind(self.addrs[&id]).await.unwrap();
        let member = Member::start(id, self.dir(id), listener, self.peers()).await;
        self.running.insert(id, member);
    }

    /// Waits until every running member names the same running member as leader, and that
    /// member leads; returns its id.
    pub async fn leader(&self) -> NodeId {
        let deadline = Instant::now() + WAIT;
        loop {
            let seen: Vec<Option<NodeId>> = self.running.values().map(|m| m.node.raft().metrics().borrow().current_leader).collect();
            if let Some(Some(l)) = seen.first().copied() {
                let agreed = seen.iter().all(|s| *s == Some(l));
                let leads = self.running.get(&l).is_some_and(|m| m.node.raft().metrics().borrow().state == ServerState::Leader);
                if agreed && leads {
                    return l;
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader among {:?}: {seen:?}", self.running());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Writes `cmds` on `leader` concurrently and checks each was applied.
    pub async fn write_all(&self, leader: NodeId, cmds: impl IntoIterator<Item = Command>) {
        let node = self.node(leader);
        for res in futures::future::join_all(cmds.into_iter().map(|c| node.write(c))).await {
            assert!(matches!(res.unwrap(), CommandResult::Applied { .. }));
        }
    }

    /// Waits until every running member applied what the leader has applied, then returns
    /// the (identical) catalog.
    pub async fn converge(&self, leader: NodeId) -> Catalog {
        let upto = *self.node(leader).watch().borrow();
        for (id, m) in &self.running {
            let mut applied = m.node.watch();
            let caught_up = tokio::time::timeout(WAIT, applied.wait_for(|i| *i >= upto)).await;
            assert!(matches!(caught_up, Ok(Ok(_))), "member {id} applies up to {upto}: {:?}", m.node.status().await);
        }
        let expected = self.node(leader).local_catalog();
        for (id, m) in &self.running {
            assert_eq!(m.node.local_catalog(), expected, "catalog of member {id}");
        }
        expected
    }

    /// Stops every running member.
    pub async fn shutdown(mut self) {
        for id in self.running() {
            self.stop(id).await;
        }
    }
}
