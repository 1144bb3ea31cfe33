//! When a shard needs compacting: the policy the meta leader applies to the catalog after
//! every change, and the settings (in the versioned config) that tune it.
//!
//! A shard is compacted when more than [`DEFAULT_MAX_SMALL_SEGMENTS`] of its segments are
//! under the target size, or when its delete logs name more than [`DEFAULT_DEAD_PERCENT`]%
//! of its rows. (Rows replaced by an upsert are not counted here: meta never reads keys. An
//! upsert adds a segment, so a shard upserted often trips the segment count instead.)

use crate::catalog::{Catalog, ShardManifest};
use crate::jobs::JobSpec;

/// Rows per compaction output segment, unless `compaction/target_rows` says otherwise.
pub const DEFAULT_TARGET_ROWS: u64 = 1_000_000;

/// Bytes per compaction output segment, unless `compaction/target_bytes` says otherwise.
pub const DEFAULT_TARGET_BYTES: u64 = 256 << 20;

/// Small segments a shard may have before it is compacted.
pub const DEFAULT_MAX_SMALL_SEGMENTS: usize = 8;

/// Percentage of a shard's rows its delete logs may name before it is compacted.
pub const DEFAULT_DEAD_PERCENT: u64 = 20;

/// The automatic policy does not enqueue a shard's compaction within this time of the last
/// one it enqueued (so a compaction that keeps failing is not retried in a tight loop).
pub const AUTO_INTERVAL_MS: u64 = 30_000;

/// Config key: `off` stops automatic compaction (manual `grape collection compact` still works).
pub const AUTO_KEY: &str = "compaction/auto";
/// Config key overriding [`DEFAULT_TARGET_ROWS`].
pub const TARGET_ROWS_KEY: &str = "compaction/target_rows";
/// Config key overriding [`DEFAULT_TARGET_BYTES`].
pub const TARGET_BYTES_KEY: &str = "compaction/target_bytes";
/// Config key overriding [`DEFAULT_MAX_SMALL_SEGMENTS`].
pub const MAX_SMALL_SEGMENTS_KEY: &str = "compaction/max_small_segments";
/// Config key overriding [`DEFAULT_DEAD_PERCENT`].
pub const DEAD_PERCENT_KEY: &str = "compaction/dead_percent";

/// The policy's thresholds, as the versioned config sets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionSettings {
    /// Whether the leader enqueues compactions by itself.
    pub auto: bool,
    /// Rows per output segment.
    pub target_rows: u64,
    /// Bytes per output segment.
    pub target_bytes: u64,
    /// Small segments a shard may have.
    pub max_small_segments: usize,
    /// Percentage of rows the delete logs may name.
    pub dead_percent: u64,
}

impl CompactionSettings {
    /// The settings in `catalog`'s config, defaults where a key is absent or does not parse.
    pub fn of(catalog: &Catalog) -> CompactionSettings {
        let number = |key: &str, default: u64| {
            catalog.config.get(key).and_then(|v| v.value.trim().parse::<u64>().ok()).filter(|n| *n > 0).unwrap_or(default)
        };
        CompactionSettings {
            auto: catalog.config.is_on(AUTO_KEY),
            target_rows: number(TARGET_ROWS_KEY, DEFAULT_TARGET_ROWS),
            target_bytes: number(TARGET_BYTES_KEY, DEFAULT_TARGET_BYTES),
            max_small_segments: number(MAX_SMALL_SEGMENTS_KEY, DEFAULT_MAX_SMALL_SEGMENTS as u64) as usize,
            dead_percent: number(DEAD_PERCENT_KEY, DEFAULT_DEAD_PERCENT),
        }
    }

    /// Whether a segment of `rows` rows and `bytes` bytes is under the target size.
    pub fn is_small(&self, rows: u64, bytes: u64) -> bool {
        rows < self.target_rows && bytes < self.target_bytes
    }

    /// Whether the delete logs of `shard` name more than the allowed share of its rows.
    pub fn too_dead(&self, shard: &ShardManifest) -> bool {
        let rows: u64 = shard.segments.iter().map(|s| s.rows).sum();
        let dead: u64 = shard.delete_logs.iter().map(|d| d.keys).sum();
        dead > 0 && dead.saturating_mul(100) > rows.saturating_mul(self.dead_percent)
    }

    /// Whether `shard` needs compacting.
    pub fn needs_compaction(&self, shard: &ShardManifest) -> bool {
        let small = shard.segments.iter().filter(|s| self.is_small(s.rows, s.size_bytes)).count();
        small > self.max_small_segments || (self.too_dead(shard) && !shard.segments.is_empty())
    }
}

/// The compactions the automatic policy wants enqueued now: shards that need one and have
/// had no compaction job enqueued within [`AUTO_INTERVAL_MS`] (or have an active one). A
/// compaction of a shard with too many dead rows rewrites all of its segments, so that every
/// delete log can go and the shard is not due again.
pub fn due(catalog: &Catalog, now_ms: u64) -> Vec<JobSpec> {
    let settings = CompactionSettings::of(catalog);
    if !settings.auto {
        return Vec::new();
    }
    let mut due = Vec::new();
    for (name, collection) in &catalog.collections {
        for (shard, manifest) in collection.shards.iter().enumerate() {
            if !settings.needs_compaction(manifest) {
                continue;
            }
            let spec = JobSpec::Compact { collection: name.clone(), shard: shard as u32 };
            let recent = catalog
                .jobs
                .jobs
                .values()
                .any(|j| j.spec == spec && (j.state.is_active() || now_ms < j.created_ms.saturating_add(AUTO_INTERVAL_MS)));
            if !recent {
                due.push(spec);
            }
        }
    }
    due
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::apply;
    use crate::catalog::{CollectionSpec, Metric};
    use crate::command::Command;
    use grape_storage::format::SegmentMeta;

    fn seg(id: usize, rows: u64) -> SegmentMeta {
        serde_json::from_value(serde_json::json!({
            "id": format!("s{id}"), "shard": 0, "path": format!("p/{id}"), "rows": rows, "size_bytes": rows * 10
        }))
        .expect("segment meta from json")
    }

    fn catalog_with(segments: usize) -> Catalog {
        let mut c = Catalog::default();
        let spec = CollectionSpec { name: "c".into(), dim: 2, metric: Metric::L2, shards: 1, replicas: 1, schema: None, quantization: Default::default(), vectors: vec![], vectors_on_disk: false };
        apply(&mut c, &Command::CreateCollection { spec });
        let segments = (0..segments).map(|i| seg(i, 10)).collect();
        apply(&mut c, &Command::CommitSegments { collection: "c".into(), collection_id: 0, segments, delete_logs: vec![], job: None });
        c
    }

    #[test]
    fn many_small_segments_are_due_once() {
        assert!(due(&catalog_with(8), 0).is_empty(), "8 small segments are allowed");
        let mut c = catalog_with(9);
        let specs = due(&c, 0);
        assert_eq!(specs, vec![JobSpec::Compact { collection: "c".into(), shard: 0 }]);
        apply(&mut c, &Command::EnqueueJob { spec: specs[0].clone(), max_attempts: 3, min_interval_ms: 0, now_ms: 5 });
        assert!(due(&c, 10).is_empty(), "already enqueued");
        c.config.put(AUTO_KEY, "off", None);
        c.jobs.jobs.clear();
        assert!(due(&c, 10).is_empty(), "automatic compaction switched off");
    }

    #[test]
    fn settings_parse_with_defaults() {
        let mut c = Catalog::default();
        assert_eq!(CompactionSettings::of(&c).target_rows, DEFAULT_TARGET_ROWS);
        c.config.put(TARGET_ROWS_KEY, "5000", None);
        c.config.put(MAX_SMALL_SEGMENTS_KEY, "nonsense", None);
        let s = CompactionSettings::of(&c);
        assert_eq!((s.target_rows, s.max_small_segments, s.auto), (5000, DEFAULT_MAX_SMALL_SEGMENTS, true));
    }
}
