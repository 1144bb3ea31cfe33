//! The catalog and the shard manifests: the state the meta service decides.
//!
//! Everything here is plain data. It changes only through [`crate::command::Command`]s applied
//! in log order (see `apply.rs`), so every member of the group holds the same catalog at the
//! same log index.

use std::collections::BTreeMap;

use arrow_schema::Schema;
use grape_storage::format::{DeleteLogMeta, SegmentMeta};
use serde::{Deserialize, Serialize};

use crate::config::ConfigStore;
use crate::jobs::JobQueue;
use crate::nodes::NodeRegistry;

/// Distance metric of a vector column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Squared Euclidean distance; smaller is closer.
    L2,
    /// Cosine distance `1 - cos(a, b)`; smaller is closer.
    Cosine,
    /// Negative inner product; smaller is closer (higher dot product ranks first).
    Dot,
    /// Manhattan (L1) distance `Σ |aᵢ − bᵢ|`; smaller is closer.
    Manhattan,
}

impl Metric {
    /// Parses `l2`, `cosine`, `dot` or `manhattan` (case-insensitive).
    pub fn parse(s: &str) -> Option<Metric> {
        match s.to_ascii_lowercase().as_str() {
            "l2" | "euclidean" => Some(Metric::L2),
            "cosine" => Some(Metric::Cosine),
            "dot" | "ip" => Some(Metric::Dot),
            "manhattan" | "l1" => Some(Metric::Manhattan),
            _ => None,
        }
    }

    /// The lowercase name used in the CLI and the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::Cosine => "cosine",
            Metric::Dot => "dot",
            Metric::Manhattan => "manhattan",
        }
    }

    /// Whether the metric is a similarity turned into a distance (cosine, dot), whose scores
    /// clients read as "higher is closer", rather than a true distance (l2, manhattan).
    pub fn is_similarity(&self) -> bool {
        matches!(self, Metric::Cosine | Metric::Dot)
    }
}

/// How a collection's ANN indexes compress vectors for graph traversal; hits are always
/// rescored with the full-precision vectors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    /// Traverse with the f32 vectors themselves.
    #[default]
    None,
    /// One byte per dimension (min/max scaled per dimension).
    Sq8,
    /// One bit per dimension (above or below the dimension's mean).
    Bq,
}

impl Quantization {
    /// Every name [`Quantization::parse`] accepts, for error messages.
    pub const NAMES: [&'static str; 3] = ["none", "sq8", "bq"];

    /// Parses `none`, `sq8` or `bq` (case-insensitive); the empty string means `none`.
    pub fn parse(s: &str) -> Option<Quantization> {
        match s.to_ascii_lowercase().as_str() {
            "" | "none" => Some(Quantization::None),
            "sq8" => Some(Quantization::Sq8),
            "bq" => Some(Quantization::Bq),
            _ => None,
        }
    }

    /// The lowercase name used in the CLI and the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            Quantization::None => "none",
            Quantization::Sq8 => "sq8",
            Quantization::Bq => "bq",
        }
    }
}

/// Name of the vector column of a collection with one unnamed vector (every collection made
/// without named vector fields), and of its first field in the APIs' defaults.
pub const DEFAULT_VECTOR: &str = grape_storage::format::VECTOR_FIELD;

/// One named vector field of a collection: its own column, dimension, metric, quantization
/// and ANN index per segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorField {
    /// Field name, also the name of its Arrow column.
    pub name: String,
    /// Dimension of its vectors.
    pub dim: u32,
    /// Distance metric its searches use.
    pub metric: Metric,
    /// Compression of its vectors in its ANN indexes.
    #[serde(default)]
    pub quantization: Quantization,
}

/// What a user asked for when creating a collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionSpec {
    /// Collection name: letters, digits and `_`, starting with a letter.
    pub name: String,
    /// Dimension of the vector column.
    pub dim: u32,
    /// Distance metric of the vector column.
    pub metric: Metric,
    /// Number of shards rows are hashed into by primary key.
    pub shards: u32,
    /// Replica factor for segment placement on compute nodes.
    pub replicas: u32,
    /// Full Arrow schema (`id`, `vector`, payload), once known: given at creation or taken
    /// from the first ingested batch.
    pub schema: Option<Schema>,
    /// Compression of the vectors in the collection's ANN indexes; changing it rebuilds them.
    #[serde(default)]
    pub quantization: Quantization,
    /// Named vector fields, in column order. Empty for a collection with the one column
    /// `vector` that `dim`, `metric` and `quantization` describe. When not empty, those three
    /// mirror the first field, so code that knows one vector shows the first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vectors: Vec<VectorField>,
    /// Keep the f32 vectors of loaded segments in files of the compute node's data directory,
    /// mapped into memory, instead of in its heap: the node's memory holds the codes and
    /// graphs, and the kernel reads vectors from local disk when a search touches them
    /// (rescoring, exact scans). Set at creation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub vectors_on_disk: bool,
}

impl CollectionSpec {
    /// Whether the collection has named vector fields (rather than the one `vector` column).
    pub fn is_named(&self) -> bool {
        !self.vectors.is_empty()
    }

    /// The collection's vector fields in column order: its named fields, or the one field
    /// `vector` of an unnamed collection.
    pub fn vector_fields(&self) -> Vec<VectorField> {
        if self.is_named() {
            return self.vectors.clone();
        }
        vec![VectorField { name: DEFAULT_VECTOR.into(), dim: self.dim, metric: self.metric, quantization: self.quantization }]
    }

    /// The field called `name`, where `""` means the first field.
    pub fn vector_field(&self, name: &str) -> Option<VectorField> {
        let fields = self.vector_fields();
        if name.is_empty() {
            return fields.into_iter().next();
        }
        fields.into_iter().find(|f| f.name == name)
    }

    /// How jobs, commands and requests name `field`: by its name in a collection with named
    /// fields, and as `""` for the one vector of a collection without (so they read as they
    /// did before named fields existed).
    pub fn request_name<'a>(&self, field: &'a VectorField) -> &'a str {
        if self.is_named() {
            &field.name
        } else {
            ""
        }
    }

    /// The names of the vector columns, in column order.
    pub fn vector_columns(&self) -> Vec<String> {
        self.vector_fields().into_iter().map(|f| f.name).collect()
    }

    /// Sets the quantization of field `field`, or of every field when `None` or `Some("")`;
    /// `false` if there is no such field. Keeps the top-level mirror of the first field.
    pub fn set_quantization(&mut self, field: Option<&str>, quantization: Quantization) -> bool {
        if !self.is_named() {
            if field.is_some_and(|f| !f.is_empty() && f != DEFAULT_VECTOR) {
                return false;
            }
            self.quantization = quantization;
            return true;
        }
        let mut found = false;
        for f in self.vectors.iter_mut().filter(|f| field.is_none_or(|name| name.is_empty() || f.name == name)) {
            f.quantization = quantization;
            found = true;
        }
        if let Some(first) = self.vectors.first() {
            self.quantization = first.quantization;
        }
        found
    }
}

/// A collection as the catalog holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Collection {
    /// What the user asked for (and the schema once set).
    pub spec: CollectionSpec,
    /// Catalog id, unique for the lifetime of the meta group (names may be reused after drop).
    pub id: u64,
    /// One manifest per shard, index = shard number.
    pub shards: Vec<ShardManifest>,
    /// Incremented on every commit to any shard of the collection; a read at `min_version`
    /// waits until this is at least that.
    pub version: u64,
}

impl Collection {
    /// Total rows in all segments, replaced and deleted rows included (only the compute nodes,
    /// which read the keys, know how many of them are live).
    pub fn rows(&self) -> u64 {
        self.shards.iter().flat_map(|s| &s.segments).map(|s| s.rows).sum()
    }

    /// The directory of the collection's objects in storage: `collections/{name}-{id}`, so a
    /// re-created collection of the same name never shares objects with the dropped one.
    pub fn storage_dir(&self) -> String {
        format!("collections/{}-{}", self.spec.name, self.id)
    }

    /// Whether a compaction replaced segments of any shard after `version`: a read planned
    /// at `version` must be planned again on a newer catalog.
    pub fn rewritten_after(&self, version: u64) -> bool {
        self.shards.iter().any(|s| s.rewritten_at > version)
    }

    /// All live segments of all shards.
    pub fn segments(&self) -> impl Iterator<Item = &SegmentMeta> {
        self.shards.iter().flat_map(|s| s.segments.iter())
    }
}

/// The live segments and delete logs of one shard, at one version.
///
/// Every segment and delete log has a sequence number (`seq`, assigned at commit): a row is
/// live unless a segment or delete log of the same shard with a higher `seq` holds its key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardManifest {
    /// Monotonically increasing version of this shard's manifest.
    pub version: u64,
    /// Immutable segments that make up the shard, in commit order.
    pub segments: Vec<SegmentMeta>,
    /// Keys deleted from the shard, one immutable object per delete commit, in commit order.
    #[serde(default)]
    pub delete_logs: Vec<DeleteLogMeta>,
    /// The collection version at which a compaction last replaced segments of this shard
    /// (0 = never). A read planned at an earlier version must be planned again: the
    /// segments it names may be gone, and the outputs' rows are as of a later version.
    #[serde(default)]
    pub rewritten_at: u64,
}

/// The whole replicated state: collections by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// Live collections by name.
    pub collections: BTreeMap<String, Collection>,
    /// Next collection id to hand out.
    pub next_collection_id: u64,
    /// The versioned config namespace.
    #[serde(default)]
    pub config: ConfigStore,
    /// Compute nodes and whether each is live.
    #[serde(default)]
    pub compute: NodeRegistry,
    /// Which compute nodes each segment is placed on (segment id → node ids, best first),
    /// decided by the leader (see [`crate::placement`]).
    #[serde(default)]
    pub assignments: BTreeMap<String, Vec<u64>>,
    /// The job queue: compactions, server-side ingests, garbage collection.
    #[serde(default)]
    pub jobs: JobQueue,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy_json() -> serde_json::Value {
        serde_json::json!({"name": "c", "dim": 4, "metric": "l2", "shards": 1, "replicas": 1, "schema": null, "quantization": "sq8"})
    }

    #[test]
    fn a_collection_made_before_named_fields_reads_and_writes_as_before() {
        let spec: CollectionSpec = serde_json::from_value(legacy_json()).unwrap();
        assert!(!spec.is_named());
        assert_eq!(serde_json::to_value(&spec).unwrap(), legacy_json());
        let field = VectorField { name: "vector".into(), dim: 4, metric: Metric::L2, quantization: Quantization::Sq8 };
        assert_eq!(spec.vector_fields(), [field.clone()]);
        assert_eq!(spec.vector_field(""), Some(field.clone()));
        assert_eq!(spec.vector_field("vector"), Some(field));
        assert_eq!(spec.vector_field("text"), None);
    }

    #[test]
    fn named_fields_are_found_by_name_and_quantized_one_or_all() {
        let mut spec: CollectionSpec = serde_json::from_value(legacy_json()).unwrap();
        let field = |name: &str, dim| VectorField { name: name.into(), dim, metric: Metric::Dot, quantization: Quantization::None };
        spec.vectors = vec![field("image", 4), field("text", 6)];
        assert_eq!(spec.vector_columns(), ["image", "text"]);
        assert_eq!(spec.vector_field("").map(|f| f.name), Some("image".into()));
        assert_eq!(spec.vector_field("text").map(|f| f.dim), Some(6));
        assert!(spec.set_quantization(Some("text"), Quantization::Bq));
        assert_eq!(spec.vectors[1].quantization, Quantization::Bq);
        assert_eq!(spec.vectors[0].quantization, Quantization::None);
        assert!(!spec.set_quantization(Some("nope"), Quantization::Bq));
        assert!(spec.set_quantization(None, Quantization::Sq8));
        assert!(spec.vectors.iter().all(|f| f.quantization == Quantization::Sq8));
        assert_eq!(spec.quantization, Quantization::Sq8, "the top level mirrors the first field");
    }
}
