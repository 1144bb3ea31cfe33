//! Which segments need an ANN index built: the policy the meta leader applies to the catalog
//! after every change, next to the compaction policy, and the config keys that tune it.
//!
//! A segment gets an index once it has at least [`DEFAULT_MIN_ROWS`] rows (smaller ones are
//! scanned exactly, which is as fast), and a new one when the collection's quantization no
//! longer matches its index's. Compaction outputs are new segments, so they are indexed too.

use crate::catalog::Catalog;
use crate::jobs::{JobSpec, JobState};

/// Rows a segment needs before it is indexed, unless `index/min_rows` says otherwise.
pub const DEFAULT_MIN_ROWS: u64 = 10_000;

/// The policy does not enqueue a segment's build within this time of the last one that did
/// not succeed (so a build that keeps failing is not retried in a tight loop).
pub const AUTO_INTERVAL_MS: u64 = 30_000;

/// Config key: `off` stops automatic index builds (searches then scan every row).
pub const AUTO_KEY: &str = "index/auto";
/// Config key overriding [`DEFAULT_MIN_ROWS`].
pub const MIN_ROWS_KEY: &str = "index/min_rows";

/// The index builds the policy wants enqueued now: segments big enough, without an index of
/// their collection's quantization, with no active build, and no unsuccessful one enqueued
/// within [`AUTO_INTERVAL_MS`]. (A build that succeeded does not hold back the next: the
/// quantization changed since.)
pub fn due(catalog: &Catalog, now_ms: u64) -> Vec<JobSpec> {
    if !catalog.config.is_on(AUTO_KEY) {
        return Vec::new();
    }
    let min_rows = catalog.config.get(MIN_ROWS_KEY).and_then(|v| v.value.trim().parse::<u64>().ok()).unwrap_or(DEFAULT_MIN_ROWS);
    let mut due = Vec::new();
    for (name, collection) in &catalog.collections {
        let fields = collection.spec.vector_fields();
        for (segment, field) in collection.segments().flat_map(|s| fields.iter().map(move |f| (s, f))) {
            let current = segment.index_of(&field.name).is_some_and(|i| i.quantization == field.quantization.as_str());
            if current || segment.rows < min_rows.max(1) {
                continue;
            }
            let vector = collection.spec.request_name(field).to_string();
            let spec = JobSpec::BuildIndex { collection: name.clone(), shard: segment.shard, segment: segment.id.clone(), vector };
            let recent = catalog
                .jobs
                .jobs
                .values()
                .any(|j| {
                    j.spec == spec
                        && (j.state.is_active()
                            || (j.state != JobState::Succeeded && now_ms < j.created_ms.saturating_add(AUTO_INTERVAL_MS)))
                });
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
    use crate::catalog::{CollectionSpec, Metric, Quantization, VectorField};
    use crate::command::Command;
    use grape_storage::format::{IndexMeta, SegmentMeta};

    fn catalog(rows: &[u64]) -> Catalog {
        let mut c = Catalog::default();
        let spec = CollectionSpec {
            name: "c".into(),
            dim: 2,
            metric: Metric::L2,
            shards: 1,
            replicas: 1,
            schema: None,
            quantization: Quantization::Sq8,
            vectors: vec![],
            vectors_on_disk: false,
        };
        apply(&mut c, &Command::CreateCollection { spec });
        let segments = rows
            .iter()
            .enumerate()
            .map(|(i, r)| SegmentMeta { id: format!("s{i}"), path: format!("p/{i}"), rows: *r, ..Default::default() })
            .collect();
        let id = c.collections["c"].id;
        apply(&mut c, &Command::CommitSegments { collection: "c".into(), collection_id: id, segments, delete_logs: vec![], job: None });
        c
    }

    fn segments(due: &[JobSpec]) -> Vec<&str> {
        due.iter()
            .map(|s| match s {
                JobSpec::BuildIndex { segment, .. } => segment.as_str(),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn large_segments_without_a_current_index_are_due_once() {
        let mut c = catalog(&[50, 20_000, 30_000]);
        assert_eq!(segments(&due(&c, 0)), ["s1", "s2"]);
        let index = |q: &str| Some(IndexMeta { path: "x".into(), kind: "hnsw".into(), quantization: q.into(), size_bytes: 1, memory_per_row: 1 });
        c.collections.get_mut("c").unwrap().shards[0].segments[1].index = index("sq8");
        c.collections.get_mut("c").unwrap().shards[0].segments[2].index = index("none");
        assert_eq!(segments(&due(&c, 0)), ["s2"], "an index of another quantization is rebuilt");
        let spec = due(&c, 0).remove(0);
        apply(&mut c, &Command::EnqueueJob { spec, max_attempts: 3, min_interval_ms: 0, now_ms: 0 });
        assert!(due(&c, 1).is_empty(), "an active build is not enqueued twice");
    }

    #[test]
    fn each_named_vector_field_gets_its_own_build_with_its_own_quantization() {
        let mut c = catalog(&[20_000]);
        let field = |name: &str, quantization| VectorField { name: name.into(), dim: 2, metric: Metric::L2, quantization };
        c.collections.get_mut("c").unwrap().spec.vectors = vec![field("image", Quantization::Sq8), field("text", Quantization::Bq)];
        let wanted = |c: &Catalog| -> Vec<String> {
            due(c, 0)
                .into_iter()
                .map(|s| match s {
                    JobSpec::BuildIndex { segment, vector, .. } => format!("{segment}/{vector}"),
                    other => panic!("unexpected {other:?}"),
                })
                .collect()
        };
        assert_eq!(wanted(&c), ["s0/image", "s0/text"]);
        let index = |q: &str| IndexMeta { path: "x".into(), kind: "hnsw".into(), quantization: q.into(), size_bytes: 1, memory_per_row: 1 };
        let segment = &mut c.collections.get_mut("c").unwrap().shards[0].segments[0];
        segment.set_index("image", index("sq8"));
        segment.set_index("text", index("sq8"));
        assert_eq!(wanted(&c), ["s0/text"], "text's index is not of text's quantization");
    }

    #[test]
    fn config_turns_the_policy_off_or_moves_the_threshold() {
        let mut c = catalog(&[50, 20_000]);
        apply(&mut c, &Command::ConfigPut { key: MIN_ROWS_KEY.into(), value: "10".into(), expected: None });
        assert_eq!(segments(&due(&c, 0)), ["s0", "s1"]);
        apply(&mut c, &Command::ConfigPut { key: AUTO_KEY.into(), value: "off".into(), expected: None });
        assert!(due(&c, 0).is_empty());
    }
}
