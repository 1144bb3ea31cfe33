//! Insert: conform rows, write one immutable segment per shard, commit them through meta in one
//! command, then acknowledge.
//!
//! The order is what makes an acknowledged write survive any single crash: every segment
//! object is durable before the commit names it, and the commit is durable (a Raft majority)
//! before the client hears "ok". A crash before the commit leaves at most orphan objects.

use std::sync::Arc;

use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use futures::future::try_join_all;
use grape_meta::Command;

use super::collections::{not_found, outcome};
use super::{Gateway, CATCH_UP_TIMEOUT};
use crate::error::ComputeError;
use crate::ingest::{conform, decode_ipc, schema_from_rows, split_by_shard};

/// Rows and version of an acknowledged insert.
#[derive(Debug, Clone, Copy)]
pub struct Inserted {
    /// Rows written.
    pub rows: u64,
    /// Collection version at which they are visible.
    pub version: u64,
}

impl Gateway {
    /// Inserts the rows of an Arrow IPC stream into `collection`.
    pub async fn insert(&self, collection: &str, ipc: &[u8]) -> Result<Inserted, ComputeError> {
        let (rows_schema, batches) = decode_ipc(ipc)?;
        let catalog = self.meta.catalog().await?;
        let entry = catalog.collections.get(collection).ok_or_else(|| not_found(collection))?;
        let spec = &entry.spec;
        let schema: SchemaRef = match &spec.schema {
            Some(s) => Arc::new(s.clone()),
            None => Arc::new(schema_from_rows(spec, &rows_schema)?),
        };
        let conformed = batches.iter().map(|b| conform(spec, &schema, b)).collect::<Result<Vec<_>, _>>()?;
        let all = concat_batches(&schema, &conformed)?;
        if all.num_rows() == 0 {
            return Ok(Inserted { rows: 0, version: entry.version });
        }
        if spec.schema.is_none() {
            let cmd = Command::SetSchema { name: collection.to_string(), schema: schema.as_ref().clone() };
            outcome(self.meta.write(cmd).await?)?;
        }
        let dir = format!("collections/{}-{}", spec.name, entry.id);
        let parts = split_by_shard(&all, spec.shards)?;
        let writes = parts.iter().map(|(shard, batch)| self.storage.write_segment(&dir, *shard, std::slice::from_ref(batch)));
        let segments = try_join_all(writes).await.map_err(|e| {
            e.add_context(format!("cannot write segments to {}; nothing was committed, the insert can be retried", self.storage.url()))
        })?;
        let cmd = Command::CommitSegments { collection: collection.to_string(), collection_id: entry.id, segments, tombstones: Vec::new() };
        let version = outcome(self.meta.write(cmd).await?)?;
        // Serve our own writes: the caller's next query on this node sees them.
        self.refresh().await;
        self.engine.wait_for_version(collection, version, CATCH_UP_TIMEOUT).await?;
        Ok(Inserted { rows: all.num_rows() as u64, version })
    }
}
