//! The Raft log, vote and committed index on redb.
//!
//! Durability contract with openraft: [`RaftLogStorage::append`] and
//! [`RaftLogStorage::save_vote`] return (and call the flush callback) only after the redb
//! transaction has committed with [`Durability::Immediate`], i.e. after fsync. The committed
//! index is written with [`Durability::Eventual`]: losing it in a power cut only means
//! re-applying a few entries later, never an inconsistency.

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::Arc;

use openraft::storage::{RaftLogReader, RaftLogStorage};
use openraft::OptionalSend;
use redb::{Database, Durability, ReadableTable};

use super::{blocking, io_err, read_json, LOG_TABLE, META_TABLE};
use crate::types::{Entry, LogFlushed, LogId, LogState, StorageError, StorageIOError, TypeConfig, Vote};

const VOTE_KEY: &str = "vote";
const COMMITTED_KEY: &str = "committed";
const PURGED_KEY: &str = "last_purged";

/// The Raft log store: entries keyed by index, plus vote, committed and last-purged log ids.
///
/// Cheap to clone; clones share the database and serve as openraft's log reader.
#[derive(Debug, Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    /// A log store on an opened database (see [`super::open_db`]).
    pub fn new(db: Arc<Database>) -> LogStore {
        LogStore { db }
    }

    /// Writes one JSON value into `raft_meta` under `key` with the given durability.
    async fn put_meta<T: serde::Serialize>(&self, key: &'static str, value: &T, durability: Durability) -> Result<(), std::io::Error> {
        let bytes = serde_json::to_vec(value)?;
        blocking(&self.db, move |db| {
            let mut txn = db.begin_write()?;
            txn.set_durability(durability);
            txn.open_table(META_TABLE)?.insert(key, bytes.as_slice())?;
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(io_err)
    }

    fn read_entries<RB: RangeBounds<u64>>(&self, range: RB) -> Result<Vec<Entry>, std::io::Error> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let table = txn.open_table(LOG_TABLE).map_err(io_err)?;
        let mut out = Vec::new();
        for item in table.range(range).map_err(io_err)? {
            let (_, v) = item.map_err(io_err)?;
            out.push(serde_json::from_slice(v.value())?);
        }
        Ok(out)
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, std::io::Error> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let table = txn.open_table(LOG_TABLE).map_err(io_err)?;
        let last = match table.last().map_err(io_err)? {
            Some((_, v)) => Some(serde_json::from_slice::<Entry>(v.value())?.log_id),
            None => None,
        };
        Ok(last)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.read_entries(range).map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState, StorageError> {
        let purged: Option<LogId> = read_json(&self.db, META_TABLE, PURGED_KEY).map_err(|e| StorageIOError::read_logs(&e))?;
        let last = self.last_entry_log_id().map_err(|e| StorageIOError::read_logs(&e))?;
        Ok(LogState { last_purged_log_id: purged, last_log_id: last.or(purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.put_meta(VOTE_KEY, vote, Durability::Immediate).await.map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        read_json(&self.db, META_TABLE, VOTE_KEY).map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.put_meta(COMMITTED_KEY, &committed, Durability::Eventual).await.map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let committed: Option<Option<LogId>> = read_json(&self.db, META_TABLE, COMMITTED_KEY).map_err(|e| StorageIOError::read(&e))?;
        Ok(committed.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry).map_err(|e| StorageIOError::write_log_entry(entry.log_id, &e))?;
            rows.push((entry.log_id.index, bytes));
        }
        let res = blocking(&self.db, move |db| {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate);
            {
                let mut table = txn.open_table(LOG_TABLE)?;
                for (index, bytes) in &rows {
                    table.insert(*index, bytes.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(io_err);
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = StorageIOError::write_logs(&e);
                callback.log_io_completed(Err(e));
                Err(err.into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "truncating raft log from");
        blocking(&self.db, move |db| {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate);
            txn.open_table(LOG_TABLE)?.retain_in(log_id.index.., |_, _| false)?;
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&io_err(e)).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "purging raft log up to");
        let bytes = serde_json::to_vec(&log_id).map_err(|e| StorageIOError::write_logs(&e))?;
        blocking(&self.db, move |db| {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate);
            txn.open_table(META_TABLE)?.insert(PURGED_KEY, bytes.as_slice())?;
            txn.open_table(LOG_TABLE)?.retain_in(..=log_id.index, |_, _| false)?;
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&io_err(e)).into())
    }
}
