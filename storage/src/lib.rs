//! Object storage for Grape: one `object_store` built from a URL, immutable Lance segments, and
//! their statistics.
//!
//! The crate knows nothing of Raft. It writes a segment and returns its [`SegmentMeta`]; the
//! meta service publishes that record in a shard manifest.
//!
//! # Design
//!
//! - **One store from a URL.** [`Storage::from_url`] builds a single [`object_store::ObjectStore`]
//!   the way `object_store::parse_url` does (`file:///dir`, a plain directory path,
//!   `memory://`, `s3://bucket/prefix` with [`StorageOptions`]). There is no second
//!   storage trait: everything above talks to `object_store` through [`Storage`].
//! - **Immutable segments.** A segment is one Lance v2 file, encoded in memory and uploaded
//!   with a create-only put, so no object is ever overwritten. Compaction writes new segments.
//! - **Staged, then published.** [`Storage::write_segment`] only stages a segment. It becomes
//!   visible when the meta service commits its [`SegmentMeta`] to a manifest; a segment whose
//!   commit never happens is an orphan for garbage collection.
//! - **Errors by kind.** Every failure is a [`StorageError`] with a [`StorageErrorKind`]
//!   (`NotFound`, `AlreadyExists`, `Precondition` and `Corrupt` kept distinct), a context and
//!   the source error.
//!
//! # Layout
//!
//! Paths are relative to the root of the URL:
//!
//! ```text
//! <root>/
//!   collections/<collection>/shard-<n>/<uuid>.lance   one immutable segment (Lance v2 file)
//!   collections/<collection>/shard-<n>/<uuid>.keys    its primary keys (see [`keys`])
//!   collections/<collection>/shard-<n>/<uuid>.deletes a delete log: keys deleted by one commit
//! ```
//!
//! The `dir` passed to [`Storage::write_segment`] is the part before `shard-<n>`, so callers
//! choose the collection layout; a segment's path is recorded in its [`SegmentMeta`].
//!
//! # Modules
//!
//! - [`error`]: [`StorageError`] and [`StorageErrorKind`].
//! - [`store`]: building a store from a URL; [`s3`]: the S3 backend.
//! - [`format`]: plain serde records kept in manifests ([`SegmentMeta`], [`ColumnStats`]).
//! - [`segment`]: Lance encoding and decoding of segments; [`fuzzing`]: damaged segments, for
//!   the fuzz target in `fuzz/` and its bounded run in the tests.
//! - [`decoder_panics`]: a third-party decoder's panic on untrusted bytes as an error, quietly.
//! - [`stats`]: per-column min/max/null statistics.
//! - [`cache`]: the local on-disk cache of segment objects for compute nodes.
//! - [`metered`]: Prometheus counters of object-store requests and cache hits.
//! - [`storage`]: [`Storage`], the handle the other crates use.

#![warn(missing_docs)]

pub mod cache;
pub mod decoder_panics;
pub mod error;
pub mod format;
pub mod fuzzing;
pub mod keys;
pub mod metered;
pub mod s3;
pub mod segment;
pub mod stats;
pub mod storage;
pub mod store;

pub use cache::{CacheStats, SegmentCache};
pub use error::{StorageError, StorageErrorKind};
pub use format::{commit_seq, max_seq, ColumnStats, DeleteLogMeta, IndexMeta, SegmentMeta, StatValue, SEGMENT_META_VERSION};
pub use stats::column_stats;
pub use storage::{ObjectInfo, Storage};
pub use store::StorageOptions;

#[cfg(feature = "testing")]
pub mod testing;
