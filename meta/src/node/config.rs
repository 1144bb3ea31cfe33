//! The openraft configuration every meta member runs with, and why each value.
//!
//! All members of a group must agree on the timing values; they are constants of the build so
//! they cannot drift apart between processes.

use std::time::Duration;

use openraft::{Config, SnapshotPolicy};

use crate::error::MetaError;

/// A snapshot is built once this many log entries were applied since the last one.
pub const SNAPSHOT_EVERY: u64 = 1000;

/// Log entries kept after a snapshot (the rest it covers is purged), so a briefly lagging
/// follower can catch up from the log instead of a snapshot transfer.
pub const LOGS_KEPT_AFTER_SNAPSHOT: u64 = 100;

/// Interval of the leader's heartbeats, in milliseconds.
///
/// **openraft 0.9 also uses it as the deadline of every append-entries RPC**, batches
/// included: a follower must receive, fsync and acknowledge [`MAX_PAYLOAD_ENTRIES`] entries
/// within it, or the leader counts a timeout and sends the batch again.
pub const HEARTBEAT_INTERVAL_MS: u64 = 100;

/// A follower that hears no heartbeat for a random time in this range (ms) starts an election;
/// this bounds how long the group is without a leader after the leader dies.
pub const ELECTION_TIMEOUT_MS: (u64, u64) = (500, 1000);

/// Largest snapshot chunk sent in one install-snapshot RPC, in bytes.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 1024 * 1024;

/// Deadline of one install-snapshot RPC, in milliseconds. The last chunk's RPC also decodes,
/// persists and installs the whole snapshot on the receiver, hence far above the heartbeat.
pub const INSTALL_SNAPSHOT_TIMEOUT_MS: u64 = 3000;

/// Most log entries in one append-entries RPC: enough that a follower catching up moves fast,
/// few enough that a batch of ordinary commands is a few hundred kilobytes and meets the
/// [`HEARTBEAT_INTERVAL_MS`] deadline.
pub const MAX_PAYLOAD_ENTRIES: u64 = 256;

/// How long [`super::MetaNode::add_member`] waits for a new learner to replicate the log.
pub(crate) const LEARNER_CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

/// The validated openraft configuration of a meta member.
pub(crate) fn raft_config() -> Result<Config, MetaError> {
    Config {
        cluster_name: "grape-meta".to_string(),
        heartbeat_interval: HEARTBEAT_INTERVAL_MS,
        election_timeout_min: ELECTION_TIMEOUT_MS.0,
        election_timeout_max: ELECTION_TIMEOUT_MS.1,
        install_snapshot_timeout: INSTALL_SNAPSHOT_TIMEOUT_MS,
        max_payload_entries: MAX_PAYLOAD_ENTRIES,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY),
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
        max_in_snapshot_log_to_keep: LOGS_KEPT_AFTER_SNAPSHOT,
        ..Default::default()
    }
    .validate()
    .map_err(|e| MetaError::Config(format!("raft: {e}")))
}
