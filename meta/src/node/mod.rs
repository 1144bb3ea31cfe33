//! [`MetaNode`]: one member of the meta Raft group, with its storage and the API the rest of
//! Grape uses (write a command, read the catalog, watch for changes, change the membership).
//!
//! # Layout
//!
//! - this file: opening a member (alone or in a group), writes and reads, shutdown;
//! - [`config`]: the openraft configuration and its timing constants;
//! - [`membership`]: waiting for a leader, adding and removing members;
//! - [`status`]: [`MetaStatus`], a point-in-time view for `grape status`.

pub mod bootstrap;
pub mod config;
pub mod membership;
pub mod status;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::InitializeError;
use tokio::sync::watch;

pub use bootstrap::Start;
pub use config::{LOGS_KEPT_AFTER_SNAPSHOT, SNAPSHOT_EVERY};
pub use status::{MemberStatus, MetaStatus};

use crate::catalog::Catalog;
use crate::command::{Command, CommandResult};
use crate::error::MetaError;
use crate::network::TonicNetwork;
use crate::store::{new_storage, open_db, StateMachineStore};
use crate::types::{Node, NodeId, Raft, RaftError};

/// File name of the redb database under the data directory.
pub const DB_FILE: &str = "meta.redb";

/// How long [`MetaNode::open`] waits for this node to become leader.
const LEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`MetaNode::open`] retries a database still held by a node shutting down in this
/// process, and [`MetaNode::shutdown`] waits for Raft's tasks to let go of it.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// One member of the meta Raft group.
///
/// Writes go through the leader: on any other member [`MetaNode::write`] fails with
/// [`MetaError::NotLeader`] naming the leader, and [`MetaNode::read_catalog`] is linearizable.
/// The member's Raft talks to its peers through [`crate::network`]; serving the incoming side
/// ([`crate::network::raft_service`] over [`MetaNode::raft`]) is up to the caller, so it can
/// share a port with other services.
pub struct MetaNode {
    id: NodeId,
    raft: Raft,
    /// A clone of the state machine Raft owns: reads the applied catalog without a round trip
    /// through Raft.
    sm: StateMachineStore,
    data_dir: PathBuf,
}

impl std::fmt::Debug for MetaNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaNode").field("id", &self.id).field("data_dir", &self.data_dir).finish_non_exhaustive()
    }
}

impl MetaNode {
    /// Opens (or creates) the member `id` of a single-member group storing under `data_dir`,
    /// and waits until it leads: the meta of `grape dev`.
    ///
    /// A fresh directory is initialised as the group `{id}`; an existing one is never
    /// re-initialised. Fails with [`MetaError::Timeout`] if this node does not become leader
    /// within 10 s (e.g. the directory belongs to a group whose other members are down).
    pub async fn open(id: NodeId, data_dir: &Path) -> Result<Arc<MetaNode>, MetaError> {
        let node = MetaNode::open_group(id, data_dir, BTreeMap::from([(id, String::new())])).await?;
        node.raft
            .wait(Some(LEADER_TIMEOUT))
            .current_leader(id, "meta node becomes leader")
            .await
            .map_err(|e| MetaError::Timeout(format!("meta node {id} did not become leader: {e}")))?;
        Ok(node)
    }

    /// Opens (or creates) the member `id` of the group `peers` (id → Raft address, `host:port`
    /// or a URL) storing under `data_dir`, and starts its Raft with the tonic transport.
    ///
    /// Returns at once, without waiting for a leader (see [`MetaNode::wait_for_leader`]).
    /// `peers` matters only for a group that does not exist yet: if the store is not
    /// initialised and `id` is the lowest id in `peers`, this member initialises the group
    /// with all peers as voters (that only writes the first membership entry locally, so the
    /// other members need not be up yet); every other member waits to be contacted by the
    /// leader. A store that is initialised is never initialised again: the membership in its
    /// log is authoritative, and members are added or removed with
    /// [`MetaNode::add_member`] and [`MetaNode::remove_member`]. A node that joins an existing
    /// group is opened with an id that is not the lowest in `peers`, then added by the leader.
    ///
    /// On an empty directory this is [`Start::New`]: see [`MetaNode::open_member`].
    pub async fn open_group(id: NodeId, data_dir: &Path, peers: BTreeMap<NodeId, String>) -> Result<Arc<MetaNode>, MetaError> {
        Self::open_member(id, data_dir, peers, Start::New).await
    }

    /// Like [`MetaNode::open_group`], saying how to start if the directory is empty: as part of
    /// a new group (refused if the peers say the group already exists: a member that lost its
    /// data must not silently take its old place, see [`bootstrap`]) or joining an existing
    /// group, to be added with [`MetaNode::add_member`].
    pub async fn open_member(
        id: NodeId,
        data_dir: &Path,
        peers: BTreeMap<NodeId, String>,
        start: Start,
    ) -> Result<Arc<MetaNode>, MetaError> {
        if !peers.contains_key(&id) {
            return Err(MetaError::Config(format!("meta node {id} is not among its peers {:?}", peers.keys().collect::<Vec<_>>())));
        }
        tokio::fs::create_dir_all(data_dir).await?;
        let db = open_db_retrying(data_dir.join(DB_FILE)).await?;
        let (log, sm) = new_storage(db)?;
        let config = Arc::new(config::raft_config()?);
        let raft =
            Raft::new(id, config, TonicNetwork::new(id), log, sm.clone()).await.map_err(|e| MetaError::Raft(format!("start: {e}")))?;
        let node = Arc::new(MetaNode { id, raft, sm, data_dir: data_dir.to_path_buf() });

        let initialized = node.raft.is_initialized().await.map_err(raft_err)?;
        if !initialized && start == Start::New {
            if let Err(e) = bootstrap::check_new_member(id, &peers).await {
                let _ = node.shutdown().await;
                return Err(e);
            }
        }
        if initialized {
            tracing::info!(id, dir = %data_dir.display(), "reopened meta node");
        } else if start == Start::Join {
            tracing::info!(id, dir = %data_dir.display(), "joining meta node, waiting to be added with grape cluster add-meta");
        } else if peers.keys().next() == Some(&id) {
            node.initialize(&peers).await?;
        } else {
            tracing::info!(id, dir = %data_dir.display(), "new meta node, waiting for the group leader to contact it");
        }
        Ok(node)
    }

    /// Writes the group's first membership (all `peers` voters) into this member's log.
    async fn initialize(&self, peers: &BTreeMap<NodeId, String>) -> Result<(), MetaError> {
        tracing::info!(id = self.id, ?peers, "initialising meta group");
        let members: BTreeMap<NodeId, Node> = peers.iter().map(|(id, addr)| (*id, Node::new(addr))).collect();
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            // The store gained a vote or a log entry since `is_initialized` (a peer's request
            // arrived first): the group exists, which is what we wanted.
            Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
                tracing::info!(id = self.id, "meta group already initialised: {e}");
                Ok(())
            }
            Err(e) => Err(raft_err(e)),
        }
    }

    /// This member's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The data directory this member stores under.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Appends `cmd` to the log and returns its result once it is committed and applied.
    ///
    /// Refusals decided by the catalog (`AlreadyExists`, `NotFound`, `Conflict`) are `Ok`
    /// results; `Err` means the command may not have been applied (not leader, shut down).
    ///
    /// Job commands get this member's clock stamped in first ([`Command::stamp`]): only a
    /// leader's proposal is appended, so the time applied is always the leader's.
    pub async fn write(&self, mut cmd: Command) -> Result<CommandResult, MetaError> {
        cmd.stamp(crate::jobs::now_ms());
        Ok(self.raft.client_write(cmd).await?.data)
    }

    /// The catalog as of a linearizable read: it reflects every write acknowledged before the
    /// call, on any member. Fails with [`MetaError::NotLeader`] on a member that is not the
    /// leader.
    pub async fn read_catalog(&self) -> Result<Catalog, MetaError> {
        self.raft.ensure_linearizable().await?;
        Ok(self.sm.catalog())
    }

    /// Like [`MetaNode::read_catalog`], with the log index the catalog is at.
    pub async fn read_catalog_at(&self) -> Result<(Catalog, u64), MetaError> {
        self.raft.ensure_linearizable().await?;
        Ok(self.sm.catalog_at())
    }

    /// The catalog as applied on this member and its log index, read together.
    pub fn local_catalog_at(&self) -> (Catalog, u64) {
        self.sm.catalog_at()
    }

    /// The commands applied on this member after log index `after`, with their indexes;
    /// `None` if they are no longer all in memory (re-read the catalog instead).
    pub fn changes_since(&self, after: u64) -> Option<Vec<(u64, Command)>> {
        self.sm.changes_since(after)
    }

    /// The catalog as applied on this member, without checking leadership: may lag the
    /// leader, never shows uncommitted changes.
    pub fn local_catalog(&self) -> Catalog {
        self.sm.catalog()
    }

    /// The catalog as applied on this member, shared rather than copied (it does not change
    /// under the holder): for reads that happen often, such as every query of a gateway.
    pub fn catalog_snapshot(&self) -> std::sync::Arc<Catalog> {
        self.sm.catalog_snapshot()
    }

    /// A receiver of the last applied log index; it changes after each applied batch and each
    /// installed snapshot. Watchers re-read the catalog when it moves.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.sm.subscribe()
    }

    /// The underlying Raft, for the transport service and admin operations.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Stops Raft and waits until its tasks released the database, so the directory can be
    /// reopened in this process once this `MetaNode` is dropped.
    pub async fn shutdown(&self) -> Result<(), MetaError> {
        self.raft.shutdown().await.map_err(|e| MetaError::Raft(format!("shutdown: {e}")))?;
        let deadline = Instant::now() + RELEASE_TIMEOUT;
        while self.sm.db_handles() > 1 {
            if Instant::now() > deadline {
                return Err(MetaError::Timeout("raft tasks still hold the meta database after shutdown".into()));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }
}

/// Opens the database, retrying while another `MetaNode` of this process still holds it.
async fn open_db_retrying(path: PathBuf) -> Result<Arc<redb::Database>, MetaError> {
    let deadline = Instant::now() + RELEASE_TIMEOUT;
    loop {
        let p = path.clone();
        let res = tokio::task::spawn_blocking(move || open_db(&p)).await.map_err(|e| MetaError::Io(std::io::Error::other(e)))?;
        match res {
            Err(MetaError::Storage(redb::Error::DatabaseAlreadyOpen)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

fn raft_err<E: std::fmt::Display>(e: E) -> MetaError {
    MetaError::Raft(e.to_string())
}
