//! Commands: the only way the replicated state changes, and what applying one returns.

use arrow_schema::Schema;
use grape_storage::format::{DeleteLogMeta, IndexMeta, SegmentMeta};
use serde::{Deserialize, Serialize};

use crate::catalog::{CollectionSpec, Quantization};
use crate::jobs::{Job, JobFence, JobOutcome, JobSpec, Progress};

/// A change to the replicated state, appended to the Raft log and applied in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Create a collection; fails with `AlreadyExists` if the name is taken.
    CreateCollection {
        /// The new collection.
        spec: CollectionSpec,
    },
    /// Drop a collection and its manifests; fails with `NotFound` if absent.
    DropCollection {
        /// Collection name.
        name: String,
    },
    /// Change a collection's replica factor; fails with `NotFound` if absent.
    SetReplicas {
        /// Collection name.
        name: String,
        /// Compute nodes that hold each segment (at least 1).
        replicas: u32,
    },
    /// Change the quantization of a collection's vector fields; fails with `NotFound` if the
    /// collection or the field is absent. Its segments keep their indexes until index-build
    /// jobs replace them.
    SetQuantization {
        /// Collection name.
        name: String,
        /// The new quantization.
        quantization: Quantization,
        /// The vector field it applies to; empty for every field.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        vector: String,
    },
    /// Set a collection's schema if it has none yet; if it has one, succeeds only when equal.
    SetSchema {
        /// Collection name.
        name: String,
        /// The full Arrow schema.
        schema: Schema,
    },
    /// Publish already-uploaded segments and delete logs into shard manifests, atomically: an
    /// upsert's new rows and a delete's removals become visible together. Each entry gets the
    /// next sequence number of the collection, segments first, in the order listed.
    CommitSegments {
        /// Collection name.
        collection: String,
        /// Collection id the writer saw; a commit to a dropped-and-recreated collection fails.
        collection_id: u64,
        /// Segments to add (each names its shard).
        segments: Vec<SegmentMeta>,
        /// Delete logs to add (each names its shard).
        #[serde(default)]
        delete_logs: Vec<DeleteLogMeta>,
        /// The job attempt whose output this is (a server-side ingest): the commit is refused
        /// unless that attempt holds its lease, and marks the job succeeded with it.
        #[serde(default)]
        job: Option<JobFence>,
    },
    /// Replace segments of one shard by their compaction: applied only if every input is
    /// still in the shard (nothing else replaced them) and the job attempt holds its lease.
    /// Rows written after the compaction read the shard keep a higher sequence number than
    /// the outputs, so no concurrent upsert or delete is lost.
    CompactShard {
        /// Collection name.
        collection: String,
        /// Collection id the worker read.
        collection_id: u64,
        /// The shard.
        shard: u32,
        /// Ids of the segments replaced.
        inputs: Vec<String>,
        /// The segments replacing them (their live rows at the read version).
        outputs: Vec<SegmentMeta>,
        /// Sequence number of the outputs: the highest of the inputs and of the shard's
        /// delete logs at the version read.
        seq: u64,
        /// The compaction job's attempt.
        job: JobFence,
    },
    /// Attach a built ANN index to a segment's manifest entry (replacing any older one):
    /// applied only if the segment is still in the shard and the job attempt holds its lease.
    AttachIndex {
        /// Collection name.
        collection: String,
        /// Collection id the worker read.
        collection_id: u64,
        /// The segment's shard.
        shard: u32,
        /// The segment's id.
        segment: String,
        /// The uploaded artifact.
        index: IndexMeta,
        /// The build job's attempt.
        job: JobFence,
        /// The vector field it indexes; empty for `vector`.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        vector: String,
    },
    /// Add a job to the queue (or find the active one doing the same work).
    EnqueueJob {
        /// What to do.
        spec: JobSpec,
        /// Attempts before it is dead.
        max_attempts: u32,
        /// For GC: not enqueued within this time of the last one (0 = no limit).
        #[serde(default)]
        min_interval_ms: u64,
        /// Leader time, stamped on proposal.
        #[serde(default)]
        now_ms: u64,
    },
    /// Lease the oldest runnable job to a compute node.
    LeaseJob {
        /// The compute node.
        worker: u64,
        /// Lease length.
        lease_ms: u64,
        /// Leader time, stamped on proposal.
        #[serde(default)]
        now_ms: u64,
    },
    /// Extend a running attempt's lease and record its progress.
    RenewJob {
        /// The attempt.
        fence: JobFence,
        /// New lease length from now.
        lease_ms: u64,
        /// Progress so far.
        progress: Option<Progress>,
    },
    /// End a running attempt that commits nothing through other commands (GC), or report
    /// its failure.
    FinishJob {
        /// The attempt.
        fence: JobFence,
        /// How it ended.
        outcome: JobOutcome,
    },
    /// The leader's decision that running attempts whose lease ran out have failed.
    ExpireLeases {
        /// Leader time, stamped on proposal.
        #[serde(default)]
        now_ms: u64,
    },
    /// Make a dead, failed or cancelled job pending again.
    RetryJob {
        /// The job.
        id: u64,
        /// Leader time, stamped on proposal.
        #[serde(default)]
        now_ms: u64,
    },
    /// Cancel a job that has not finished.
    CancelJob {
        /// The job.
        id: u64,
        /// Leader time, stamped on proposal.
        #[serde(default)]
        now_ms: u64,
    },
    /// Register a compute node, or mark it live again (possibly at a new address).
    RegisterNode {
        /// The node's id.
        id: u64,
        /// Address of its public API.
        addr: String,
        /// Memory it offers for segments, in bytes.
        memory_bytes: u64,
    },
    /// The leader's decision that a compute node is dead (it missed its heartbeats).
    DeclareDead {
        /// The node's id.
        id: u64,
        /// Why, for the record.
        reason: String,
    },
    /// What a compute node reported holding: the segments it serves and those it failed to
    /// load (recorded by the leader when a heartbeat differs from the catalog).
    SegmentStates {
        /// The node's id.
        id: u64,
        /// Segment ids loaded and ready to serve.
        ready: Vec<String>,
        /// Segment ids that failed to load, with the reason.
        failed: Vec<(String, String)>,
    },
    /// Drain a compute node: it keeps serving, receives nothing new, and its segments move
    /// to other nodes.
    DrainNode {
        /// The node's id.
        id: u64,
    },
    /// The leader's placement decision: segments placed on (other) nodes, and segments that
    /// no longer have a placement.
    SetAssignments {
        /// Segment id → the nodes it is placed on.
        set: Vec<(String, Vec<u64>)>,
        /// Segments whose placement is removed (the segment is gone).
        unset: Vec<String>,
    },
    /// Set a config key, only if it is at `expected` (0 = absent) when that is given.
    ConfigPut {
        /// The key.
        key: String,
        /// The new value.
        value: String,
        /// Compare-and-set: the version the key must be at.
        expected: Option<u64>,
    },
}

/// The outcome of applying a [`Command`]: decided once, identically on every member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CommandResult {
    /// The command was applied; `version` is the collection version after it, or the config
    /// key's version for `ConfigPut` (0 where no version applies).
    Applied {
        /// Collection version after the command.
        version: u64,
    },
    /// The named collection already exists.
    AlreadyExists(String),
    /// The named collection does not exist.
    NotFound(String),
    /// The command conflicts with the current state (message says how).
    Conflict(String),
    /// A compare-and-set found another version (0 = absent) and changed nothing.
    VersionMismatch {
        /// The version the key is at.
        current: u64,
    },
    /// A job command's outcome: the job enqueued, leased, retried or cancelled (`None` when
    /// a lease found nothing to run).
    Job(Option<Box<Job>>),
}

impl Command {
    /// Whether only the meta leader itself proposes this command, from heartbeats and its
    /// timers (registrations, deaths, segment states, placements, lease expiries): the meta
    /// service's `Write` refuses it from any caller.
    pub fn is_leaders_own(&self) -> bool {
        matches!(
            self,
            Command::RegisterNode { .. }
                | Command::DeclareDead { .. }
                | Command::SegmentStates { .. }
                | Command::SetAssignments { .. }
                | Command::ExpireLeases { .. }
        )
    }

    /// Stamps the proposing leader's clock into the command (ms since the Unix epoch), so
    /// applying it stays deterministic on every member. Commands without a time are unchanged.
    pub fn stamp(&mut self, now: u64) {
        match self {
            Command::EnqueueJob { now_ms, .. }
            | Command::LeaseJob { now_ms, .. }
            | Command::ExpireLeases { now_ms }
            | Command::RetryJob { now_ms, .. }
            | Command::CancelJob { now_ms, .. } => *now_ms = now,
            Command::RenewJob { fence, .. } | Command::FinishJob { fence, .. } | Command::CompactShard { job: fence, .. }
            | Command::AttachIndex { job: fence, .. } => {
                fence.now_ms = now
            }
            Command::CommitSegments { job: Some(fence), .. } => fence.now_ms = now,
            _ => {}
        }
    }
}
