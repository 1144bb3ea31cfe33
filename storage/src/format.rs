//! Plain data describing what lives in object storage: segments and their statistics.
//!
//! These types are stored in the meta service's manifests, so they are versioned serde:
//! new fields get `#[serde(default)]`, and a format change bumps [`SEGMENT_META_VERSION`].

use serde::{Deserialize, Serialize};

/// Version of the [`SegmentMeta`] layout written by this build.
pub const SEGMENT_META_VERSION: u32 = 1;

/// Identity, location and statistics of one immutable segment of one shard.
///
/// A segment is written to object storage first (staged) and becomes visible only when the
/// meta service commits it into a shard manifest (published). It is never modified afterwards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// Layout version of this record, see [`SEGMENT_META_VERSION`].
    #[serde(default = "default_version")]
    pub format_version: u32,
    /// Unique id of the segment (a UUID), also the last part of its object path.
    pub id: String,
    /// The shard of the collection whose rows this segment holds.
    pub shard: u32,
    /// Object path relative to the store's root prefix, e.g. `collections/docs/shard-0/<id>.lance`.
    pub path: String,
    /// Number of rows in the segment.
    pub rows: u64,
    /// Size of the segment object in bytes.
    pub size_bytes: u64,
    /// Min/max/null statistics per column, for pruning scans.
    #[serde(default)]
    pub columns: Vec<ColumnStats>,
}

fn default_version() -> u32 {
    SEGMENT_META_VERSION
}

/// Statistics of one column of a segment.
///
/// Min and max are kept as [`StatValue`]s so the manifest stays plain serde; columns whose type
/// has no useful order (vectors, lists) have `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnStats {
    /// Column name.
    pub name: String,
    /// Smallest non-null value, if the column has an order and a non-null value.
    pub min: Option<StatValue>,
    /// Largest non-null value, if the column has an order and a non-null value.
    pub max: Option<StatValue>,
    /// Number of null values.
    pub null_count: u64,
}

/// A scalar value kept in segment statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StatValue {
    /// Signed integers (all widths, and timestamps in their unit).
    Int(i64),
    /// Unsigned integers.
    UInt(u64),
    /// Floating point values.
    Float(f64),
    /// Strings.
    Utf8(String),
    /// Booleans.
    Bool(bool),
}
