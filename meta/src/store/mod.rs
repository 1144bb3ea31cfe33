//! Durable Raft storage on one local redb file: the log ([`LogStore`]) and the state machine
//! with its snapshots ([`StateMachineStore`]).
//!
//! Both share one [`redb::Database`] but use separate tables, so either can be read without the
//! other. The on-disk layout:
//!
//! | table          | key                                     | value                        |
//! |----------------|-----------------------------------------|------------------------------|
//! | `raft_log`     | log index (u64)                         | JSON of the log entry        |
//! | `raft_meta`    | `"vote"`, `"committed"`, `"last_purged"`| JSON of the vote / log id    |
//! | `sm_snapshot`  | `"meta"`, `"data"`                      | JSON snapshot meta / payload |
//!
//! Every value is JSON; the snapshot payload carries a format version (see
//! [`state_machine::SNAPSHOT_FORMAT_VERSION`]), and the database records the layout version in
//! `raft_meta["layout_version"]`.

pub mod log_store;
pub mod state_machine;

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableTable, TableDefinition};

pub use log_store::LogStore;
pub use state_machine::StateMachineStore;

use crate::error::MetaError;

/// Version of the redb table layout written by this build.
pub const LAYOUT_VERSION: u64 = 1;

pub(crate) const LOG_TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
pub(crate) const META_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
pub(crate) const SNAPSHOT_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_snapshot");

const LAYOUT_KEY: &str = "layout_version";

/// Opens (or creates) the redb database at `path`, creates the tables, and checks the layout
/// version.
///
/// Returns [`MetaError::Corrupt`] if the file was written by a newer, incompatible layout.
pub fn open_db(path: &Path) -> Result<Arc<Database>, MetaError> {
    let db = Database::create(path)?;
    let txn = db.begin_write()?;
    {
        txn.open_table(LOG_TABLE)?;
        txn.open_table(SNAPSHOT_TABLE)?;
        let mut meta = txn.open_table(META_TABLE)?;
        let found = match meta.get(LAYOUT_KEY)? {
            Some(v) => Some(serde_json::from_slice::<u64>(v.value()).map_err(|e| MetaError::Corrupt(format!("layout version: {e}")))?),
            None => None,
        };
        match found {
            Some(v) if v != LAYOUT_VERSION => {
                return Err(MetaError::Corrupt(format!("{} has layout version {v}, this build reads {LAYOUT_VERSION}", path.display())));
            }
            Some(_) => {}
            None => {
                let v = serde_json::to_vec(&LAYOUT_VERSION).map_err(|e| MetaError::Corrupt(e.to_string()))?;
                meta.insert(LAYOUT_KEY, v.as_slice())?;
            }
        }
    }
    txn.commit()?;
    Ok(Arc::new(db))
}

/// Builds the log store and the state machine on an opened database.
///
/// The state machine loads the latest persisted snapshot; openraft re-applies the committed log
/// entries after it when the Raft starts.
pub fn new_storage(db: Arc<Database>) -> Result<(LogStore, StateMachineStore), MetaError> {
    let log = LogStore::new(db.clone());
    let sm = StateMachineStore::open(db)?;
    Ok((log, sm))
}

/// Runs a blocking redb write on tokio's blocking pool, so an fsync does not stall the runtime.
pub(crate) async fn blocking<T, F>(db: &Arc<Database>, f: F) -> Result<T, redb::Error>
where
    T: Send + 'static,
    F: FnOnce(&Database) -> Result<T, redb::Error> + Send + 'static,
{
    let db = db.clone();
    tokio::task::spawn_blocking(move || f(&db)).await.map_err(|e| redb::Error::Io(std::io::Error::other(e)))?
}

/// Reads one JSON value from a `&str`-keyed table, `None` if the key is absent.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    db: &Database,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
) -> Result<Option<T>, std::io::Error> {
    let txn = db.begin_read().map_err(io_err)?;
    let table = txn.open_table(table).map_err(io_err)?;
    match table.get(key).map_err(io_err)? {
        Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
        None => Ok(None),
    }
}

/// Wraps any error as an `io::Error`, the common currency of openraft's storage errors here.
pub(crate) fn io_err<E: Into<redb::Error>>(e: E) -> std::io::Error {
    std::io::Error::other(e.into())
}
