//! [`MetaNode`]: one member of the meta Raft group, with its storage and the API the rest of
//! Grape uses (write a command, read the catalog, watch for changes).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{Config, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::catalog::Catalog;
use crate::command::{Command, CommandResult};
use crate::error::MetaError;
use crate::network::TonicNetwork;
use crate::store::{new_storage, open_db, StateMachineStore};
use crate::types::{Node, NodeId, Raft};

/// A snapshot is built once this many log entries were applied since the last one.
pub const SNAPSHOT_EVERY: u64 = 1000;

/// Log entries kept after a snapshot (the rest it covers is purged), so a briefly lagging
/// follower can catch up from the log instead of a snapshot transfer.
pub const LOGS_KEPT_AFTER_SNAPSHOT: u64 = 100;

/// File name of the redb database under the data directory.
pub const DB_FILE: &str = "meta.redb";

/// How long [`MetaNode::open`] waits for this node to become leader.
const LEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`MetaNode::open`] retries a database still held by a node shutting down in this
/// process, and [`MetaNode::shutdown`] waits for Raft's tasks to let go of it.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// A point-in-time view of this member, for `grape status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaStatus {
    /// This member's id.
    pub id: NodeId,
    /// The current leader, if known.
    pub leader_id: Option<NodeId>,
    /// `Leader`, `Follower`, `Candidate`, `Learner` or `Shutdown`.
    pub server_state: String,
    /// Current Raft term.
    pub term: u64,
    /// Index of the last log entry on this member.
    pub last_log_index: Option<u64>,
    /// Index of the last entry applied to the catalog.
    pub last_applied: Option<u64>,
    /// Index of the last entry known committed.
    pub committed: Option<u64>,
    /// Last log index covered by the latest snapshot.
    pub snapshot: Option<u64>,
    /// Last log index purged from the log.
    pub purged: Option<u64>,
    /// Voting members of the group.
    pub members: Vec<NodeId>,
}

/// One member of the meta Raft group.
///
/// Today the group has exactly one member (see [`crate::network`]); the API already has the
/// shape a multi-member group needs: writes fail with [`MetaError::NotLeader`] on a follower,
/// and [`MetaNode::read_catalog`] is linearizable.
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
    /// Opens (or creates) the member `id` storing under `data_dir`, and waits until it leads.
    ///
    /// A fresh directory is initialised as the single-member group `{id}`; an existing one is
    /// never re-initialised: the latest snapshot is loaded and openraft re-applies the
    /// committed log after it. Fails with [`MetaError::Timeout`] if this node does not become
    /// leader within 10 s (e.g. the directory belongs to a group `id` is not a voter of).
    pub async fn open(id: NodeId, data_dir: &Path) -> Result<Arc<MetaNode>, MetaError> {
        tokio::fs::create_dir_all(data_dir).await?;
        let db = open_db_retrying(data_dir.join(DB_FILE)).await?;
        let (log, sm) = new_storage(db)?;

        let config = Config {
            cluster_name: "grape-meta".to_string(),
            heartbeat_interval: 100,
            election_timeout_min: 300,
            election_timeout_max: 600,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY),
            max_in_snapshot_log_to_keep: LOGS_KEPT_AFTER_SNAPSHOT,
            ..Default::default()
        }
        .validate()
        .map_err(|e| MetaError::Raft(format!("config: {e}")))?;

        let raft = Raft::new(id, Arc::new(config), TonicNetwork::new(id), log, sm.clone())
            .await
            .map_err(|e| MetaError::Raft(format!("start: {e}")))?;

        if raft.is_initialized().await.map_err(raft_err)? {
            tracing::info!(id, dir = %data_dir.display(), "reopened meta node");
        } else {
            tracing::info!(id, dir = %data_dir.display(), "initialising single-member meta group");
            let members = BTreeMap::from([(id, Node::default())]);
            raft.initialize(members).await.map_err(raft_err)?;
        }

        let node = Arc::new(MetaNode { id, raft, sm, data_dir: data_dir.to_path_buf() });
        node.raft
            .wait(Some(LEADER_TIMEOUT))
            .current_leader(id, "meta node becomes leader")
            .await
            .map_err(|e| MetaError::Timeout(format!("meta node {id} did not become leader: {e}")))?;
        Ok(node)
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
    pub async fn write(&self, cmd: Command) -> Result<CommandResult, MetaError> {
        match self.raft.client_write(cmd).await {
            Ok(resp) => Ok(resp.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(MetaError::NotLeader { leader: f.leader_id }),
            Err(RaftError::APIError(e)) => Err(MetaError::Raft(e.to_string())),
            Err(RaftError::Fatal(e)) => Err(MetaError::Raft(e.to_string())),
        }
    }

    /// The catalog as of a linearizable read: it reflects every write acknowledged before the
    /// call, on any member.
    pub async fn read_catalog(&self) -> Result<Catalog, MetaError> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(self.sm.catalog()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => Err(MetaError::NotLeader { leader: f.leader_id }),
            Err(RaftError::APIError(e)) => Err(MetaError::Timeout(e.to_string())),
            Err(RaftError::Fatal(e)) => Err(MetaError::Raft(e.to_string())),
        }
    }

    /// The catalog as applied on this member, without checking leadership: may lag the
    /// leader, never shows uncommitted changes.
    pub fn local_catalog(&self) -> Catalog {
        self.sm.catalog()
    }

    /// A receiver of the last applied log index; it changes after each applied batch and each
    /// installed snapshot. Watchers re-read the catalog when it moves.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.sm.subscribe()
    }

    /// A point-in-time view of this member.
    pub async fn status(&self) -> MetaStatus {
        let m = self.raft.metrics().borrow().clone();
        let committed = self.raft.with_raft_state(|st| st.committed.map(|l| l.index)).await.ok().flatten();
        MetaStatus {
            id: self.id,
            leader_id: m.current_leader,
            server_state: format!("{:?}", m.state),
            term: m.current_term,
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.map(|l| l.index),
            committed,
            snapshot: m.snapshot.map(|l| l.index),
            purged: m.purged.map(|l| l.index),
            members: m.membership_config.membership().voter_ids().collect(),
        }
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
