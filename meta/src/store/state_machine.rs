//! The state machine: the [`Catalog`] in memory, with snapshots persisted in redb.
//!
//! Entries are applied to memory only. Durability comes from the log plus snapshots: on restart
//! the state machine loads the latest snapshot, and openraft re-applies the committed entries
//! after it. Openraft builds a snapshot every
//! [`SNAPSHOT_EVERY`](crate::node::SNAPSHOT_EVERY) entries and then purges the log it covers,
//! so the disk stays bounded.
//!
//! A snapshot is the JSON of [`SnapshotPayload`], tagged with [`SNAPSHOT_FORMAT_VERSION`]; this
//! build reads only that version and refuses others with a clear error instead of guessing.

use std::collections::VecDeque;
use std::io::Cursor;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::OptionalSend;
use redb::{Database, Durability, ReadableTable};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{blocking, io_err, read_json, SNAPSHOT_TABLE};
use crate::apply::apply;
use crate::catalog::Catalog;
use crate::command::{Command, CommandResult};
use crate::error::MetaError;
use crate::types::{Entry, EntryPayload, LogId, Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership, TypeConfig};

/// Version of the [`SnapshotPayload`] layout written by this build.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

const META_KEY: &str = "meta";
const DATA_KEY: &str = "data";

/// The content of a snapshot: the whole applied state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotPayload {
    /// Layout version, see [`SNAPSHOT_FORMAT_VERSION`].
    pub format_version: u32,
    /// Last log entry reflected in `catalog`.
    pub last_applied: Option<LogId>,
    /// Group membership as of `last_applied`.
    pub last_membership: StoredMembership,
    /// The catalog.
    pub catalog: Catalog,
}

#[derive(Deserialize)]
struct VersionProbe {
    format_version: u32,
}

impl SnapshotPayload {
    /// Decodes a payload, refusing unknown format versions.
    pub fn decode(bytes: &[u8]) -> Result<SnapshotPayload, MetaError> {
        let probe: VersionProbe = serde_json::from_slice(bytes).map_err(|e| MetaError::Corrupt(format!("snapshot header: {e}")))?;
        if probe.format_version != SNAPSHOT_FORMAT_VERSION {
            return Err(MetaError::Corrupt(format!(
                "snapshot format version {} (this build reads {SNAPSHOT_FORMAT_VERSION})",
                probe.format_version
            )));
        }
        serde_json::from_slice(bytes).map_err(|e| MetaError::Corrupt(format!("snapshot: {e}")))
    }
}

/// Commands kept in memory for watchers that resume (see [`StateMachineStore::changes_since`]).
pub const CHANGE_HISTORY: usize = 4096;

/// The applied state, as the state machine holds it in memory.
#[derive(Debug, Clone, Default)]
struct SmState {
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    /// Shared with readers: applying a command copies it only while a reader still holds the
    /// previous version.
    catalog: Arc<Catalog>,
    /// The last [`CHANGE_HISTORY`] applied commands with their log indexes, oldest first.
    changes: VecDeque<(u64, Command)>,
    /// Every command applied after this log index is in `changes`.
    changes_from: u64,
}

impl SmState {
    /// A state with an empty change history starting at its last applied index.
    fn restarted(last_applied: Option<LogId>, last_membership: StoredMembership, catalog: Catalog) -> SmState {
        let changes_from = last_applied.map_or(0, |l| l.index);
        SmState { last_applied, last_membership, catalog: Arc::new(catalog), changes: VecDeque::new(), changes_from }
    }
}

/// openraft's state machine (and, cloned, its snapshot builder).
///
/// Clones share the in-memory state, so the node keeps one to read the catalog while openraft
/// owns another.
#[derive(Debug, Clone)]
pub struct StateMachineStore {
    db: Arc<Database>,
    /// Applied state; locked only for short, non-async sections.
    state: Arc<RwLock<SmState>>,
    /// Last applied log index, bumped after each apply batch and snapshot install.
    applied_tx: Arc<watch::Sender<u64>>,
}

impl StateMachineStore {
    /// Opens the state machine on `db`, loading the latest persisted snapshot if there is one.
    pub fn open(db: Arc<Database>) -> Result<StateMachineStore, MetaError> {
        let state = match read_json::<SnapshotMeta>(&db, SNAPSHOT_TABLE, META_KEY)? {
            None => SmState::default(),
            Some(meta) => {
                let data = read_data(&db)?.ok_or_else(|| MetaError::Corrupt("snapshot meta without data".into()))?;
                let p = SnapshotPayload::decode(&data)?;
                tracing::info!(snapshot = %meta, "loaded meta snapshot");
                SmState::restarted(p.last_applied, p.last_membership, p.catalog)
            }
        };
        let (applied_tx, _) = watch::channel(state.last_applied.map_or(0, |l| l.index));
        Ok(StateMachineStore { db, state: Arc::new(RwLock::new(state)), applied_tx: Arc::new(applied_tx) })
    }

    /// A copy of the applied catalog.
    pub fn catalog(&self) -> Catalog {
        self.read().catalog.as_ref().clone()
    }

    /// The applied catalog, shared (no copy): it does not change under the holder.
    pub fn catalog_snapshot(&self) -> Arc<Catalog> {
        self.read().catalog.clone()
    }

    /// A copy of the applied catalog and the log index it is at, read together.
    pub fn catalog_at(&self) -> (Catalog, u64) {
        let st = self.read();
        (st.catalog.as_ref().clone(), st.last_applied.map_or(0, |l| l.index))
    }

    /// The commands applied after log index `after`, oldest first, with their indexes; `None`
    /// if some of them are no longer in memory (then the caller re-reads the whole catalog).
    pub fn changes_since(&self, after: u64) -> Option<Vec<(u64, Command)>> {
        let st = self.read();
        if after < st.changes_from {
            return None;
        }
        Some(st.changes.iter().filter(|(i, _)| *i > after).cloned().collect())
    }

    /// The last applied log id.
    pub fn last_applied(&self) -> Option<LogId> {
        self.read().last_applied
    }

    /// A receiver of the last applied log index.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied_tx.subscribe()
    }

    /// How many handles to the database exist (this store's included).
    pub(crate) fn db_handles(&self) -> usize {
        Arc::strong_count(&self.db)
    }

    fn read(&self) -> RwLockReadGuard<'_, SmState> {
        // A panic while holding the lock cannot leave a half-applied command: `apply` checks
        // before it mutates. So a poisoned lock still holds a consistent state.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, SmState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Persists a snapshot durably, unless a newer one is stored already.
    async fn persist(&self, meta: &SnapshotMeta, data: Vec<u8>) -> Result<(), std::io::Error> {
        let meta_bytes = serde_json::to_vec(meta)?;
        let new_last = meta.last_log_id;
        blocking(&self.db, move |db| {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate);
            {
                let mut table = txn.open_table(SNAPSHOT_TABLE)?;
                let stored: Option<SnapshotMeta> = match table.get(META_KEY)? {
                    Some(v) => serde_json::from_slice(v.value()).ok(),
                    None => None,
                };
                if stored.is_some_and(|s| s.last_log_id > new_last) {
                    return Ok(());
                }
                table.insert(META_KEY, meta_bytes.as_slice())?;
                table.insert(DATA_KEY, data.as_slice())?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(io_err)
    }
}

fn read_data(db: &Database) -> Result<Option<Vec<u8>>, std::io::Error> {
    let txn = db.begin_read().map_err(io_err)?;
    let table = txn.open_table(SNAPSHOT_TABLE).map_err(io_err)?;
    Ok(table.get(DATA_KEY).map_err(io_err)?.map(|v| v.value().to_vec()))
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        crate::metrics::SNAPSHOT_BUILDS.inc();
        let (meta, data) = {
            let st = self.read();
            let payload = SnapshotPayload {
                format_version: SNAPSHOT_FORMAT_VERSION,
                last_applied: st.last_applied,
                last_membership: st.last_membership.clone(),
                catalog: st.catalog.as_ref().clone(),
            };
            let data = serde_json::to_vec(&payload).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
            let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
            let snapshot_id = match st.last_applied {
                Some(l) => format!("{}-{}-{millis}", l.leader_id, l.index),
                None => format!("none-{millis}"),
            };
            let meta = SnapshotMeta { last_log_id: st.last_applied, last_membership: st.last_membership.clone(), snapshot_id };
            (meta, data)
        };
        self.persist(&meta, data.clone()).await.map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        tracing::info!(snapshot = %meta, bytes = data.len(), "built meta snapshot");
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let st = self.read();
        Ok((st.last_applied, st.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut results = Vec::new();
        let last = {
            let mut st = self.write();
            for entry in entries {
                st.last_applied = Some(entry.log_id);
                let result = match entry.payload {
                    EntryPayload::Blank => CommandResult::Applied { version: 0 },
                    EntryPayload::Normal(cmd) => {
                        let result = apply(Arc::make_mut(&mut st.catalog), &cmd);
                        st.changes.push_back((entry.log_id.index, cmd));
                        if st.changes.len() > CHANGE_HISTORY {
                            if let Some((dropped, _)) = st.changes.pop_front() {
                                st.changes_from = dropped;
                            }
                        }
                        result
                    }
                    EntryPayload::Membership(m) => {
                        st.last_membership = StoredMembership::new(Some(entry.log_id), m);
                        CommandResult::Applied { version: 0 }
                    }
                };
                results.push(result);
            }
            st.last_applied
        };
        if let Some(last) = last {
            self.applied_tx.send_replace(last.index);
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Box<Cursor<Vec<u8>>>) -> Result<(), StorageError> {
        crate::metrics::SNAPSHOT_INSTALLS.inc();
        let data = snapshot.into_inner();
        let payload = SnapshotPayload::decode(&data).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        self.persist(meta, data).await.map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        {
            let mut st = self.write();
            *st = SmState::restarted(meta.last_log_id, meta.last_membership.clone(), payload.catalog);
        }
        self.applied_tx.send_replace(meta.last_log_id.map_or(0, |l| l.index));
        tracing::info!(snapshot = %meta, "installed meta snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let meta: Option<SnapshotMeta> =
            read_json(&self.db, SNAPSHOT_TABLE, META_KEY).map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        let Some(meta) = meta else { return Ok(None) };
        let data = read_data(&self.db).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?.ok_or_else(|| {
            let e = std::io::Error::other("snapshot meta without data");
            StorageIOError::read_snapshot(Some(meta.signature()), &e)
        })?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}
