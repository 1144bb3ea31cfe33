//! Plain data describing what lives in object storage: segments and their statistics.
//!
//! These types are stored in the meta service's manifests, so they are versioned serde:
//! new fields get `#[serde(default)]`, and a format change bumps [`SEGMENT_META_VERSION`].

use std::collections::BTreeMap;

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
    /// Where its rows' primary keys are stored on their own (see [`crate::keys`]), so a node
    /// that does not hold the segment can learn which older rows it replaces. `None` for
    /// segments written before keys files existed: their keys are read from the segment.
    #[serde(default)]
    pub keys_path: Option<String>,
    /// Position of the segment in its collection's history of writes, assigned by the meta
    /// service when it commits the segment (see [`commit_seq`]). A row is replaced by a row
    /// with the same key in a segment of a higher `seq`, and deleted by a [`DeleteLogMeta`] of
    /// a higher `seq`. 0 for segments committed before sequences existed.
    #[serde(default)]
    pub seq: u64,
    /// The segment's ANN index, once an index-build job attached one. Replaced (never
    /// modified) when the collection's quantization changes.
    #[serde(default)]
    pub index: Option<IndexMeta>,
    /// The ANN indexes of the collection's other vector fields, by field name (a collection
    /// with named vector fields keeps its field `vector`'s, if it has one, in `index`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub indexes: BTreeMap<String, IndexMeta>,
}

impl SegmentMeta {
    /// The index of vector field `field`, if one is attached.
    pub fn index_of(&self, field: &str) -> Option<&IndexMeta> {
        if field == VECTOR_FIELD {
            return self.index.as_ref();
        }
        self.indexes.get(field)
    }

    /// Every attached index with its field's name, field `vector` first.
    pub fn all_indexes(&self) -> impl Iterator<Item = (&str, &IndexMeta)> {
        self.index.iter().map(|i| (VECTOR_FIELD, i)).chain(self.indexes.iter().map(|(f, i)| (f.as_str(), i)))
    }

    /// Attaches `index` to vector field `field`, replacing the one it had.
    pub fn set_index(&mut self, field: &str, index: IndexMeta) {
        if field == VECTOR_FIELD {
            self.index = Some(index);
        } else {
            self.indexes.insert(field.to_string(), index);
        }
    }
}

/// The name of the vector field whose index [`SegmentMeta::index`] holds: the one column of
/// a collection without named vector fields.
pub const VECTOR_FIELD: &str = "vector";

impl Default for SegmentMeta {
    /// An empty, unnamed segment of the current layout, to fill in with `..Default::default()`.
    fn default() -> Self {
        Self {
            format_version: SEGMENT_META_VERSION,
            id: String::new(),
            shard: 0,
            path: String::new(),
            rows: 0,
            size_bytes: 0,
            columns: Vec::new(),
            keys_path: None,
            seq: 0,
            index: None,
            indexes: BTreeMap::new(),
        }
    }
}

/// An ANN index artifact of one segment: an immutable object stored beside the segment,
/// loaded with it by every node that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexMeta {
    /// Object path relative to the store's root prefix (`<segment path>.<quantization>.<uuid>.hnsw`).
    pub path: String,
    /// Index family: `hnsw`.
    pub kind: String,
    /// Quantization of its codes: `none`, `sq8` or `bq`.
    pub quantization: String,
    /// Size of the object in bytes.
    pub size_bytes: u64,
    /// Bytes of memory the loaded index takes per row (graph and codes).
    pub memory_per_row: u64,
}

/// Deleted primary keys of one shard: an immutable object (see [`crate::keys`]) that a
/// manifest names. Rows with these keys in segments of a lower `seq` are deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteLogMeta {
    /// Unique id of the log (a UUID), also the last part of its object path.
    pub id: String,
    /// The shard whose keys it deletes.
    pub shard: u32,
    /// Object path relative to the store's root prefix.
    pub path: String,
    /// Number of keys in the log.
    pub keys: u64,
    /// Size of the object in bytes.
    pub size_bytes: u64,
    /// Position in the collection's history of writes, assigned at commit (see [`commit_seq`]).
    #[serde(default)]
    pub seq: u64,
}

/// Bits of a sequence number that number the entries within one commit.
pub const SEQ_ORDINAL_BITS: u32 = 20;

/// The sequence number of entry `ordinal` (segments first, then delete logs, in the order the
/// commit lists them) of the commit that makes a collection's version `version`. Sequence
/// numbers order every write of a collection; all of version `v`'s lie in
/// `commit_seq(v, 0)..=max_seq(v)`.
pub fn commit_seq(version: u64, ordinal: u64) -> u64 {
    (version << SEQ_ORDINAL_BITS) | ordinal
}

/// The highest sequence number a commit of version `version` or earlier can have: what a
/// read at `version` sees.
pub fn max_seq(version: u64) -> u64 {
    (version << SEQ_ORDINAL_BITS) | ((1 << SEQ_ORDINAL_BITS) - 1)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_are_kept_per_vector_field_and_old_manifests_read_as_before() {
        let old = serde_json::json!({"format_version": 1, "id": "s", "shard": 0, "path": "p", "rows": 1, "size_bytes": 1,
            "columns": [], "keys_path": null, "seq": 0,
            "index": {"path": "p.hnsw", "kind": "hnsw", "quantization": "none", "size_bytes": 1, "memory_per_row": 1}});
        let mut meta: SegmentMeta = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(serde_json::to_value(&meta).unwrap(), old);
        assert_eq!(meta.index_of("vector").map(|i| i.path.as_str()), Some("p.hnsw"));
        let mut text = meta.index.clone().unwrap();
        text.path = "p.v1.hnsw".into();
        meta.set_index("text", text);
        let all: Vec<_> = meta.all_indexes().map(|(field, i)| (field, i.path.as_str())).collect();
        assert_eq!(all, [("vector", "p.hnsw"), ("text", "p.v1.hnsw")]);
        assert_eq!(meta.index_of("image"), None);
    }
}
