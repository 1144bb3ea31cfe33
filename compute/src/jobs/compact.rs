//! Compaction of one shard: its small segments (or, when too many of its rows are dead, all of
//! them) are read at one version, their live rows written as segments of the target size, and
//! the swap committed with [`Command::CompactShard`].
//!
//! The commit is conditioned on the inputs still being in the shard. Writes committed while
//! the job ran are not lost and need no re-applying: their sequence numbers are above every
//! output's (which is at most the read version's), so they still replace or delete the
//! outputs' rows, exactly as they did the inputs'.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::{concat_batches, filter_record_batch};
use grape_meta::catalog::CollectionSpec;
use grape_meta::compaction_policy::CompactionSettings;
use grape_meta::Command;
use grape_storage::format::SegmentMeta;

use super::{Attempt, Done};
use crate::error::ComputeError;
use crate::gateway::collections::{not_found, outcome};
use crate::gateway::Gateway;
use crate::liveness::VersionSources;
use crate::segment::{LoadedSegment, SegmentRef};

impl Gateway {
    /// Runs a compaction of `shard` of `collection` for `attempt`.
    pub(super) async fn compact_shard(&self, collection: &str, shard: u32, attempt: &Attempt) -> Result<Done, ComputeError> {
        let catalog = self.meta.catalog().await?;
        let entry = catalog.collections.get(collection).ok_or_else(|| not_found(collection))?;
        let manifest = entry.shards.get(shard as usize).ok_or_else(|| {
            ComputeError::InvalidArgument(format!("collection \"{collection}\" has {} shards, not shard {shard}", entry.shards.len()))
        })?;
        let settings = CompactionSettings::of(&catalog);
        let rewrite_all = settings.too_dead(manifest);
        let inputs: Vec<&SegmentMeta> =
            manifest.segments.iter().filter(|s| rewrite_all || settings.is_small(s.rows, s.size_bytes)).collect();
        let worth_it = inputs.len() >= 2 || (!inputs.is_empty() && !manifest.delete_logs.is_empty());
        let Some(schema) = entry.spec.schema.clone().map(Arc::new).filter(|_| worth_it) else {
            return Ok(Done::Report(format!("nothing to compact in shard {shard} at version {}", entry.version)));
        };
        let units = inputs.len() as u64 + 1;
        let sources = VersionSources::new(entry, entry.version);
        let mut live = Vec::with_capacity(inputs.len());
        for (i, meta) in inputs.iter().enumerate() {
            let segment = self.input_segment(meta, &entry.spec).await?;
            let batch = match sources.live_rows(&segment, entry, self.engine.keys()).await? {
                Some(mask) => filter_record_batch(&segment.batch, &mask)?,
                None => segment.batch.clone(),
            };
            live.push(batch);
            attempt.report(i as u64 + 1, units);
            attempt.pause().await;
        }
        let rows = concat_batches(&schema, &live)?;
        drop(live);
        let bytes_in: u64 = inputs.iter().map(|s| s.size_bytes).sum();
        let rows_in: u64 = inputs.iter().map(|s| s.rows).sum();
        let per_output = rows_per_output(&settings, bytes_in, rows_in);
        let mut outputs = Vec::new();
        for start in (0..rows.num_rows()).step_by(per_output) {
            let part = rows.slice(start, per_output.min(rows.num_rows() - start));
            outputs.push(
                self.storage.write_segment(&entry.storage_dir(), shard, &[part]).await.map_err(|e| {
                    e.add_context(format!("cannot write compacted segments to {}; nothing was committed", self.storage.url()))
                })?,
            );
        }
        attempt.report(units, units);
        let seq = inputs.iter().map(|s| s.seq).chain(manifest.delete_logs.iter().map(|d| d.seq)).max().unwrap_or(0);
        let cmd = Command::CompactShard {
            collection: collection.to_string(),
            collection_id: entry.id,
            shard,
            inputs: inputs.iter().map(|s| s.id.clone()).collect(),
            outputs,
            seq,
            job: attempt.fence,
        };
        outcome(self.meta.write(cmd).await?)?;
        Ok(Done::Committed)
    }

    /// An input segment: this node's loaded copy, else read from storage.
    pub(super) async fn input_segment(&self, meta: &SegmentMeta, spec: &CollectionSpec) -> Result<SegmentRef, ComputeError> {
        if let Some(held) = self.engine.segment(&meta.id) {
            return Ok(held);
        }
        let schema = spec.schema.clone().map(Arc::new).ok_or_else(|| {
            ComputeError::Conflict(format!("collection \"{}\" has no schema, so no rows in segment {}", spec.name, meta.id))
        })?;
        let batches: Vec<RecordBatch> = self.storage.read_segment(meta).await?;
        Ok(Arc::new(LoadedSegment::with_vectors(meta.clone(), schema, &batches, &spec.vector_columns())?))
    }
}

/// Rows per output segment: the target rows, fewer if the inputs' bytes per row would make a
/// segment larger than the target bytes.
fn rows_per_output(settings: &CompactionSettings, bytes_in: u64, rows_in: u64) -> usize {
    let bytes_per_row = (bytes_in / rows_in.max(1)).max(1);
    let by_bytes = (settings.target_bytes / bytes_per_row).max(1);
    settings.target_rows.min(by_bytes).max(1) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_respect_both_targets() {
        let settings = CompactionSettings { auto: true, target_rows: 1000, target_bytes: 10_000, max_small_segments: 8, dead_percent: 20 };
        assert_eq!(rows_per_output(&settings, 500, 100), 1000, "5 bytes a row: the row target binds");
        assert_eq!(rows_per_output(&settings, 10_000, 100), 100, "100 bytes a row: the byte target binds");
        assert_eq!(rows_per_output(&settings, 0, 0), 1000);
    }
}
