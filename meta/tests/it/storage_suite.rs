//! openraft's own storage conformance suite, run on the redb log store and state machine.

use grape_meta::store::{new_storage, open_db, LogStore, StateMachineStore};
use grape_meta::types::{StorageError, StorageIOError, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;

struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for RedbBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(&e))?;
        let db = open_db(&dir.path().join("meta.redb")).map_err(|e| StorageIOError::write(&e))?;
        let (log, sm) = new_storage(db).map_err(|e| StorageIOError::write(&e))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(RedbBuilder).expect("openraft storage suite");
}
