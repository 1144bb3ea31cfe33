//! Grape's meta service: a Raft group (openraft 0.9) that holds the catalog, the shard
//! manifests, and every other decision that must survive a crash.
//!
//! The main design choice: the replicated state is plain data ([`Catalog`]) that changes only
//! by applying [`Command`]s in log order, in one function ([`apply::apply`]). The Raft log and
//! periodic snapshots live in one local redb file; the catalog itself lives in memory and is
//! rebuilt on restart from the latest snapshot plus the committed log after it.
//!
//! ```text
//!  MetaNode::write(cmd) ──► openraft ──► LogStore (redb, fsync) ──► StateMachineStore
//!                                                                     │ apply::apply
//!  MetaNode::read_catalog / local_catalog / watch ◄────────────────── Catalog (memory)
//!                                                                     │ every 1000 entries
//!                                                                     ▼
//!                                                          snapshot (redb) + log purge
//! ```
//!
//! `grape dev` runs a group of one ([`MetaNode::open`]); a cluster runs three or five members
//! ([`MetaNode::open_group`]) that replicate the log to each other over [`network`], and a
//! follower far behind receives the latest snapshot in chunks instead of the purged log.
//!
//! # Layout
//!
//! - [`catalog`]: the replicated state (collections, shard manifests with their segments and delete logs), plain serde.
//! - [`config`]: the versioned config namespace (compare-and-set on per-key versions).
//! - [`command`]: [`Command`]s that change it and the [`CommandResult`] of applying one.
//! - [`apply`]: the only code that changes a [`Catalog`].
//! - [`types`]: the openraft type configuration and short aliases (`LogId`, `Entry`, …).
//! - [`store`]: durable Raft storage on redb: [`store::LogStore`] (log, vote, committed) and
//!   [`store::StateMachineStore`] (catalog in memory, snapshots on disk).
//! - [`network`]: the Raft transport over tonic: outgoing RPCs ([`network::TonicNetwork`]) and
//!   the peers-only service ([`network::raft_service`]).
//! - [`node`]: [`MetaNode`], the member API the rest of Grape uses: open alone or in a group,
//!   write, read, change the membership, status.
//! - [`service`]: the `grape.meta.v1` service every member serves (forwarding to the leader,
//!   the change watch) and [`service::RemoteMeta`], its client.
//! - [`nodes`]: the compute-node registry (live or declared dead).
//! - [`placement`]: where segments go on compute nodes (weighted rendezvous hashing with
//!   bounded loads), a pure function of the segments and the live nodes.
//! - [`compaction_policy`]: when the leader enqueues a shard's compaction, and its settings.
//! - [`jobs`]: the job queue (leases, attempts, fencing of a job's commit).
//! - [`metrics`]: Prometheus gauges and counters of the Raft state, elections, snapshots and the catalog.
//! - [`error`]: [`MetaError`].
//! - [`linearizability`]: a checker for recorded histories of the versioned config, used by
//!   the fault tests and benchmarks.

#![warn(missing_docs)]

pub mod apply;
pub mod catalog;
pub mod command;
pub mod compaction_policy;
pub mod config;
pub mod error;
pub mod index_policy;
pub mod jobs;
pub mod linearizability;
pub mod metrics;
pub mod network;
pub mod node;
pub mod nodes;
pub mod placement;
pub mod service;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod types;

pub use catalog::{Catalog, Collection, CollectionSpec, Metric, ShardManifest};
pub use command::{Command, CommandResult};
pub use error::MetaError;
pub use node::{MemberStatus, MetaNode, MetaStatus};
