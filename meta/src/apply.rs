//! The one place a [`Command`] changes the [`Catalog`].
//!
//! [`apply`] is deterministic: it reads nothing but the catalog and the command, so every
//! member of the group that applies the same log holds the same catalog. Refusals
//! (`AlreadyExists`, `NotFound`, `Conflict`) are results, not errors: they are decided once, in
//! log order, and leave the catalog unchanged.

use crate::catalog::{Catalog, Collection, CollectionSpec, ShardManifest, DEFAULT_VECTOR};
use crate::command::{Command, CommandResult};
use crate::config::PutOutcome;
use crate::jobs::{Job, JobFence, JobQueue};
use grape_storage::format::{commit_seq, max_seq, DeleteLogMeta, IndexMeta, SegmentMeta, SEQ_ORDINAL_BITS};

/// Applies `cmd` to `catalog` and returns the outcome.
///
/// A command either applies completely or not at all: every check runs before the first change.
pub fn apply(catalog: &mut Catalog, cmd: &Command) -> CommandResult {
    match cmd {
        Command::CreateCollection { spec } => create_collection(catalog, spec),
        Command::DropCollection { name } => match catalog.collections.remove(name) {
            Some(_) => CommandResult::Applied { version: 0 },
            None => CommandResult::NotFound(name.clone()),
        },
        Command::SetSchema { name, schema } => {
            let Some(coll) = catalog.collections.get_mut(name) else {
                return CommandResult::NotFound(name.clone());
            };
            match &coll.spec.schema {
                None => {
                    coll.spec.schema = Some(schema.clone());
                    CommandResult::Applied { version: coll.version }
                }
                Some(existing) if existing == schema => CommandResult::Applied { version: coll.version },
                Some(existing) => {
                    CommandResult::Conflict(format!("collection {name} already has schema {existing}, which differs from {schema}"))
                }
            }
        }
        Command::CommitSegments { collection, collection_id, segments, delete_logs, job } => {
            if let Some(fence) = job {
                if let Err(why) = catalog.jobs.check(fence) {
                    return CommandResult::Conflict(why);
                }
            }
            let result = commit_segments(catalog, collection, *collection_id, segments, delete_logs);
            if let (Some(fence), CommandResult::Applied { version }) = (job, &result) {
                let rows: u64 = segments.iter().map(|s| s.rows).sum();
                catalog.jobs.succeed(fence, &format!("{rows} rows in {} segments committed at version {version}", segments.len()));
            }
            result
        }
        Command::CompactShard { collection, collection_id, shard, inputs, outputs, seq, job } => {
            compact_shard(catalog, CompactionCommit { collection, collection_id: *collection_id, shard: *shard, inputs, outputs, seq: *seq, job })
        }
        Command::AttachIndex { collection, collection_id, shard, segment, index, job, vector } => attach_index(
            catalog,
            IndexAttachment { collection, collection_id: *collection_id, shard: *shard, segment, vector, index, job },
        ),
        Command::EnqueueJob { spec, max_attempts, min_interval_ms, now_ms } => {
            if let Some(name) = spec.collection() {
                if !catalog.collections.contains_key(name) {
                    return CommandResult::NotFound(name.to_string());
                }
            }
            let job = catalog.jobs.enqueue(spec, *max_attempts, *now_ms, *min_interval_ms);
            CommandResult::Job(Some(Box::new(job)))
        }
        Command::LeaseJob { worker, lease_ms, now_ms } => {
            CommandResult::Job(catalog.jobs.lease(*worker, *lease_ms, *now_ms).map(Box::new))
        }
        Command::RenewJob { fence, lease_ms, progress } => match catalog.jobs.renew(fence, *lease_ms, *progress) {
            Ok(()) => CommandResult::Applied { version: 0 },
            Err(why) => CommandResult::Conflict(why),
        },
        Command::FinishJob { fence, outcome } => match catalog.jobs.finish(fence, outcome) {
            Ok(()) => CommandResult::Applied { version: 0 },
            Err(why) => CommandResult::Conflict(why),
        },
        Command::ExpireLeases { now_ms } => CommandResult::Applied { version: catalog.jobs.expire(*now_ms) as u64 },
        Command::RetryJob { id, now_ms } => job_change(catalog, *id, |q| q.retry(*id, *now_ms)),
        Command::CancelJob { id, now_ms } => job_change(catalog, *id, |q| q.cancel(*id, *now_ms)),
        Command::RegisterNode { id, addr, memory_bytes } => {
            catalog.compute.register(*id, addr, *memory_bytes);
            CommandResult::Applied { version: 0 }
        }
        Command::DeclareDead { id, reason } => match catalog.compute.declare_dead(*id, reason) {
            true => CommandResult::Applied { version: 0 },
            false => CommandResult::NotFound(format!("compute node {id}")),
        },
        Command::SegmentStates { id, ready, failed } => match catalog.compute.set_states(*id, ready, failed) {
            true => CommandResult::Applied { version: 0 },
            false => CommandResult::NotFound(format!("live compute node {id}")),
        },
        Command::DrainNode { id } => match catalog.compute.drain(*id) {
            true => CommandResult::Applied { version: 0 },
            false => CommandResult::NotFound(format!("live compute node {id}")),
        },
        Command::SetQuantization { name, quantization, vector } => match catalog.collections.get_mut(name) {
            Some(coll) => match coll.spec.set_quantization(Some(vector), *quantization) {
                true => CommandResult::Applied { version: coll.version },
                false => CommandResult::NotFound(format!("vector field \"{vector}\" of collection {name}")),
            },
            None => CommandResult::NotFound(name.clone()),
        },
        Command::SetReplicas { name, replicas } => match catalog.collections.get_mut(name) {
            Some(coll) => {
                coll.spec.replicas = (*replicas).max(1);
                CommandResult::Applied { version: coll.version }
            }
            None => CommandResult::NotFound(name.clone()),
        },
        Command::SetAssignments { set, unset } => {
            for id in unset {
                catalog.assignments.remove(id);
            }
            for (id, nodes) in set {
                catalog.assignments.insert(id.clone(), nodes.clone());
            }
            CommandResult::Applied { version: 0 }
        }
        Command::ConfigPut { key, value, expected } => match catalog.config.put(key, value, *expected) {
            PutOutcome::Set(version) => CommandResult::Applied { version },
            PutOutcome::Mismatch(current) => CommandResult::VersionMismatch { current },
        },
    }
}

/// A job's new state, or why the change was refused (`NotFound` for an unknown id).
fn job_change(catalog: &mut Catalog, id: u64, change: impl FnOnce(&mut JobQueue) -> Result<Job, String>) -> CommandResult {
    if !catalog.jobs.jobs.contains_key(&id) {
        return CommandResult::NotFound(format!("job {id} does not exist"));
    }
    match change(&mut catalog.jobs) {
        Ok(job) => CommandResult::Job(Some(Box::new(job))),
        Err(why) => CommandResult::Conflict(why),
    }
}

/// The collection a job's commit changes, if the job attempt holds its lease and the
/// collection is the one the worker read (`name` with id `id`); the refusal otherwise.
fn fenced_collection<'c>(catalog: &'c mut Catalog, job: &JobFence, name: &str, id: u64) -> Result<&'c mut Collection, CommandResult> {
    catalog.jobs.check(job).map_err(CommandResult::Conflict)?;
    match catalog.collections.get_mut(name) {
        Some(coll) if coll.id == id => Ok(coll),
        Some(_) => Err(CommandResult::NotFound(format!("{name} (id {id})"))),
        None => Err(CommandResult::NotFound(name.to_string())),
    }
}

/// The parts of a [`Command::CompactShard`].
struct CompactionCommit<'a> {
    collection: &'a str,
    collection_id: u64,
    shard: u32,
    inputs: &'a [String],
    outputs: &'a [SegmentMeta],
    seq: u64,
    job: &'a JobFence,
}

/// Swaps a shard's compacted segments for their outputs, if the inputs are all still there.
/// Delete logs that no remaining segment predates are dropped: they can no longer hide a row.
fn compact_shard(catalog: &mut Catalog, c: CompactionCommit<'_>) -> CommandResult {
    let coll = match fenced_collection(catalog, c.job, c.collection, c.collection_id) {
        Ok(coll) => coll,
        Err(refused) => return refused,
    };
    let Some(manifest) = coll.shards.get(c.shard as usize) else {
        return CommandResult::Conflict(format!("collection {} has no shard {}", c.collection, c.shard));
    };
    if let Some(gone) = c.inputs.iter().find(|id| !manifest.segments.iter().any(|s| &&s.id == id)) {
        return CommandResult::Conflict(format!("segment {gone} of shard {} is no longer in the manifest", c.shard));
    }
    if let Some(bad) = c.outputs.iter().find(|s| s.shard != c.shard) {
        return CommandResult::Conflict(format!("output segment {} names shard {}, not {}", bad.id, bad.shard, c.shard));
    }
    if c.seq > max_seq(coll.version) {
        return CommandResult::Conflict(format!("sequence number {} is beyond version {}", c.seq, coll.version));
    }
    coll.version += 1;
    let version = coll.version;
    let manifest = &mut coll.shards[c.shard as usize];
    manifest.segments.retain(|s| !c.inputs.contains(&s.id));
    manifest.segments.extend(c.outputs.iter().map(|s| SegmentMeta { seq: c.seq, ..s.clone() }));
    manifest.segments.sort_by_key(|s| s.seq);
    let oldest = manifest.segments.iter().map(|s| s.seq).min().unwrap_or(u64::MAX);
    let logs_before = manifest.delete_logs.len();
    manifest.delete_logs.retain(|d| d.seq > oldest);
    manifest.version = version;
    manifest.rewritten_at = version;
    let rows: u64 = c.outputs.iter().map(|s| s.rows).sum();
    let summary = format!(
        "{} segments into {} ({rows} live rows), {} delete logs dropped, at version {version}",
        c.inputs.len(),
        c.outputs.len(),
        logs_before - manifest.delete_logs.len()
    );
    catalog.jobs.succeed(c.job, &summary);
    CommandResult::Applied { version }
}

/// The parts of a [`Command::AttachIndex`].
struct IndexAttachment<'a> {
    collection: &'a str,
    collection_id: u64,
    shard: u32,
    segment: &'a str,
    /// The vector field; empty for `vector`.
    vector: &'a str,
    index: &'a IndexMeta,
    job: &'a JobFence,
}

/// Names a built index in its segment's manifest entry, if the segment is still there.
fn attach_index(catalog: &mut Catalog, a: IndexAttachment<'_>) -> CommandResult {
    let coll = match fenced_collection(catalog, a.job, a.collection, a.collection_id) {
        Ok(coll) => coll,
        Err(refused) => return refused,
    };
    let version = coll.version + 1;
    let Some(manifest) = coll.shards.get_mut(a.shard as usize) else {
        return CommandResult::Conflict(format!("collection {} has no shard {}", a.collection, a.shard));
    };
    let Some(segment) = manifest.segments.iter_mut().find(|s| s.id == a.segment) else {
        return CommandResult::Conflict(format!("segment {} of shard {} is no longer in the manifest", a.segment, a.shard));
    };
    let field = if a.vector.is_empty() { DEFAULT_VECTOR } else { a.vector };
    segment.set_index(field, a.index.clone());
    manifest.version = version;
    coll.version = version;
    let of_field = if a.vector.is_empty() { String::new() } else { format!(" of vector {field}") };
    let summary =
        format!("{} index{of_field} of segment {} ({} bytes) attached at version {version}", a.index.quantization, a.segment, a.index.size_bytes);
    catalog.jobs.succeed(a.job, &summary);
    CommandResult::Applied { version }
}

fn create_collection(catalog: &mut Catalog, spec: &CollectionSpec) -> CommandResult {
    if catalog.collections.contains_key(&spec.name) {
        return CommandResult::AlreadyExists(spec.name.clone());
    }
    let id = catalog.next_collection_id;
    catalog.next_collection_id += 1;
    let shards = (0..spec.shards).map(|_| ShardManifest::default()).collect();
    let coll = Collection { spec: spec.clone(), id, shards, version: 0 };
    catalog.collections.insert(spec.name.clone(), coll);
    CommandResult::Applied { version: 0 }
}

fn commit_segments(
    catalog: &mut Catalog,
    name: &str,
    collection_id: u64,
    segments: &[SegmentMeta],
    delete_logs: &[DeleteLogMeta],
) -> CommandResult {
    let Some(coll) = catalog.collections.get_mut(name) else {
        return CommandResult::NotFound(name.to_string());
    };
    if coll.id != collection_id {
        // The collection was dropped and recreated since the writer looked it up.
        return CommandResult::NotFound(format!("{name} (id {collection_id})"));
    }
    let shard_count = coll.shards.len();
    let bad_shard =
        segments.iter().map(|s| s.shard).chain(delete_logs.iter().map(|d| d.shard)).find(|&shard| shard as usize >= shard_count);
    if let Some(shard) = bad_shard {
        return CommandResult::Conflict(format!("collection {name} has {shard_count} shards, commit names shard {shard}"));
    }
    if segments.len() + delete_logs.len() >= 1 << SEQ_ORDINAL_BITS {
        return CommandResult::Conflict(format!(
            "a commit may name at most {} segments and delete logs, this one names {}",
            (1u64 << SEQ_ORDINAL_BITS) - 1,
            segments.len() + delete_logs.len()
        ));
    }

    coll.version += 1;
    let version = coll.version;
    let mut ordinal = 0;
    let mut next_seq = || {
        ordinal += 1;
        commit_seq(version, ordinal)
    };
    for seg in segments {
        let manifest = &mut coll.shards[seg.shard as usize];
        manifest.segments.push(SegmentMeta { seq: next_seq(), ..seg.clone() });
        manifest.version = version;
    }
    for log in delete_logs {
        let manifest = &mut coll.shards[log.shard as usize];
        manifest.delete_logs.push(DeleteLogMeta { seq: next_seq(), ..log.clone() });
        manifest.version = version;
    }
    CommandResult::Applied { version }
}

#[cfg(test)]
mod tests {
    use arrow_schema::{DataType, Field, Schema};

    use super::*;
    use crate::catalog::Metric;

    fn spec(name: &str, shards: u32) -> CollectionSpec {
        CollectionSpec { name: name.to_string(), dim: 4, metric: Metric::L2, shards, replicas: 1, schema: None, quantization: Default::default(), vectors: vec![], vectors_on_disk: false }
    }

    fn seg(id: &str, shard: u32, rows: u64) -> SegmentMeta {
        serde_json::from_value(serde_json::json!({
            "id": id, "shard": shard, "path": format!("p/{id}"), "rows": rows, "size_bytes": 10
        }))
        .expect("segment meta from json")
    }

    fn deletes(id: &str, shard: u32) -> DeleteLogMeta {
        DeleteLogMeta { id: id.into(), shard, path: format!("p/{id}.deletes"), keys: 1, size_bytes: 10, seq: 0 }
    }

    fn schema(extra: &str) -> Schema {
        Schema::new(vec![Field::new("id", DataType::UInt64, false), Field::new(extra, DataType::Utf8, true)])
    }

    fn create(c: &mut Catalog, name: &str, shards: u32) -> CommandResult {
        apply(c, &Command::CreateCollection { spec: spec(name, shards) })
    }

    fn commit(c: &mut Catalog, name: &str, id: u64, segs: Vec<SegmentMeta>) -> CommandResult {
        let cmd = Command::CommitSegments { collection: name.into(), collection_id: id, segments: segs, delete_logs: vec![], job: None };
        apply(c, &cmd)
    }

    #[test]
    fn create_assigns_ids_and_empty_shards() {
        let mut c = Catalog::default();
        assert_eq!(create(&mut c, "a", 3), CommandResult::Applied { version: 0 });
        assert_eq!(create(&mut c, "b", 1), CommandResult::Applied { version: 0 });
        let a = &c.collections["a"];
        assert_eq!((a.id, a.version, a.shards.len()), (0, 0, 3));
        assert!(a.shards.iter().all(|s| *s == ShardManifest::default()));
        assert_eq!(c.collections["b"].id, 1);
        assert_eq!(c.next_collection_id, 2);
    }

    #[test]
    fn create_existing_name_is_refused() {
        let mut c = Catalog::default();
        create(&mut c, "a", 1);
        let before = c.clone();
        assert_eq!(create(&mut c, "a", 2), CommandResult::AlreadyExists("a".into()));
        assert_eq!(c, before);
    }

    #[test]
    fn drop_removes_and_ids_are_not_reused() {
        let mut c = Catalog::default();
        create(&mut c, "a", 1);
        let drop = Command::DropCollection { name: "a".into() };
        assert_eq!(apply(&mut c, &drop), CommandResult::Applied { version: 0 });
        assert!(c.collections.is_empty());
        assert_eq!(apply(&mut c, &drop), CommandResult::NotFound("a".into()));
        create(&mut c, "a", 1);
        assert_eq!(c.collections["a"].id, 1);
    }

    #[test]
    fn set_schema_once_then_only_equal() {
        let mut c = Catalog::default();
        let set = |name: &str, s: Schema| Command::SetSchema { name: name.into(), schema: s };
        assert_eq!(apply(&mut c, &set("a", schema("x"))), CommandResult::NotFound("a".into()));
        create(&mut c, "a", 1);
        assert_eq!(apply(&mut c, &set("a", schema("x"))), CommandResult::Applied { version: 0 });
        assert_eq!(c.collections["a"].spec.schema, Some(schema("x")));
        assert_eq!(apply(&mut c, &set("a", schema("x"))), CommandResult::Applied { version: 0 });
        match apply(&mut c, &set("a", schema("y"))) {
            CommandResult::Conflict(msg) => assert!(msg.contains("already has schema"), "{msg}"),
            other => panic!("expected conflict, got {other:?}"),
        }
        assert_eq!(c.collections["a"].spec.schema, Some(schema("x")));
    }

    #[test]
    fn commit_bumps_versions_of_touched_shards() {
        let mut c = Catalog::default();
        create(&mut c, "a", 3);
        let r = commit(&mut c, "a", 0, vec![seg("s1", 0, 5), seg("s2", 2, 7)]);
        assert_eq!(r, CommandResult::Applied { version: 1 });
        let cmd = Command::CommitSegments {
            collection: "a".into(),
            collection_id: 0,
            segments: vec![seg("s3", 2, 1)],
            delete_logs: vec![deletes("d1", 1)],
            job: None,
        };
        assert_eq!(apply(&mut c, &cmd), CommandResult::Applied { version: 2 });
        let a = &c.collections["a"];
        assert_eq!(a.version, 2);
        assert_eq!(a.rows(), 13);
        assert_eq!(a.shards[0].version, 1);
        assert_eq!(a.shards[1].version, 2);
        assert_eq!(a.shards[1].delete_logs, vec![DeleteLogMeta { seq: commit_seq(2, 2), ..deletes("d1", 1) }]);
        assert_eq!(a.shards[2].version, 2);
        let seqs: Vec<u64> = a.shards[2].segments.iter().map(|s| s.seq).collect();
        assert_eq!(seqs, vec![commit_seq(1, 2), commit_seq(2, 1)], "segments first, in the order listed, later commits higher");
    }

    #[test]
    fn commit_refusals_change_nothing() {
        let mut c = Catalog::default();
        assert_eq!(commit(&mut c, "a", 0, vec![]), CommandResult::NotFound("a".into()));
        create(&mut c, "a", 2);
        let before = c.clone();
        assert!(matches!(commit(&mut c, "a", 7, vec![]), CommandResult::NotFound(_)));
        let r = commit(&mut c, "a", 0, vec![seg("ok", 1, 1), seg("bad", 2, 1)]);
        assert!(matches!(r, CommandResult::Conflict(_)), "{r:?}");
        let cmd = Command::CommitSegments {
            collection: "a".into(),
            collection_id: 0,
            segments: vec![],
            delete_logs: vec![deletes("d", 5)],
            job: None,
        };
        assert!(matches!(apply(&mut c, &cmd), CommandResult::Conflict(_)));
        assert_eq!(c, before);
    }

    #[test]
    fn an_index_attaches_to_its_vector_field_and_legacy_commands_still_apply() {
        let mut c = Catalog::default();
        create(&mut c, "c", 1);
        let id = c.collections["c"].id;
        commit(&mut c, "c", id, vec![seg("s", 0, 10)]);
        let index = |path: &str| IndexMeta { path: path.into(), kind: "hnsw".into(), quantization: "none".into(), size_bytes: 1, memory_per_row: 1 };
        for (vector, path) in [("", "p/s.hnsw"), ("text", "p/s.v1.hnsw")] {
            let spec = crate::jobs::JobSpec::BuildIndex { collection: "c".into(), shard: 0, segment: "s".into(), vector: vector.into() };
            apply(&mut c, &Command::EnqueueJob { spec, max_attempts: 1, min_interval_ms: 0, now_ms: 0 });
            let CommandResult::Job(Some(job)) = apply(&mut c, &Command::LeaseJob { worker: 1, lease_ms: 1_000, now_ms: 0 }) else {
                panic!("no job to lease")
            };
            let job = JobFence { id: job.id, attempt: job.attempt, now_ms: 0 };
            let attach = Command::AttachIndex { collection: "c".into(), collection_id: id, shard: 0, segment: "s".into(), index: index(path), job, vector: vector.into() };
            assert!(matches!(apply(&mut c, &attach), CommandResult::Applied { .. }));
        }
        let segment = &c.collections["c"].shards[0].segments[0];
        assert_eq!(segment.index_of("vector").map(|i| i.path.as_str()), Some("p/s.hnsw"));
        assert_eq!(segment.index_of("text").map(|i| i.path.as_str()), Some("p/s.v1.hnsw"));

        // Commands written before named fields existed read and apply as they did.
        let legacy: Command = serde_json::from_value(serde_json::json!({"SetQuantization": {"name": "c", "quantization": "sq8"}})).unwrap();
        assert!(matches!(apply(&mut c, &legacy), CommandResult::Applied { .. }));
        assert_eq!(c.collections["c"].spec.quantization, crate::catalog::Quantization::Sq8);
        assert_eq!(serde_json::to_value(&legacy).unwrap(), serde_json::json!({"SetQuantization": {"name": "c", "quantization": "sq8"}}));
        let unknown = Command::SetQuantization { name: "c".into(), quantization: Default::default(), vector: "text".into() };
        assert!(matches!(apply(&mut c, &unknown), CommandResult::NotFound(_)), "the unnamed collection has no field text");
    }
}
