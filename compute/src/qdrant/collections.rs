//! Qdrant's collection endpoints over Grape's catalog: create (vector size and distance,
//! shards, replicas, quantization), get, list, exists, delete.
//!
//! Distances map onto Grape's metrics: `Cosine` → cosine, `Euclid` → l2, `Dot` → dot,
//! `Manhattan` → manhattan. Named vectors (`vectors: {name: {size, distance}, …}`) are
//! Grape's named vector fields; sparse and multi-vectors are refused.

use grape_meta::catalog::{Collection, Metric};
use grape_proto::v1;
use serde::Deserialize;
use serde_json::{json, Value};

use super::compile::PAYLOAD_COLUMN;
use super::reply::{Outcome, QdrantError};
use super::settings::INDEX_PREFIX;
use super::QdrantApi;
use crate::limits::RequestClass::Write;
use crate::segment::ID_COLUMN;

/// The body of `PUT /collections/{name}`.
#[derive(Debug, Deserialize)]
pub struct CreateCollection {
    /// `{size, distance}`, or named vectors: `{name: {size, distance}, …}`.
    pub vectors: Option<Value>,
    /// Shards; default 1.
    pub shard_number: Option<u32>,
    /// Replicas of each segment; default 1.
    pub replication_factor: Option<u32>,
    /// `{scalar: …}` → sq8, `{binary: …}` → bq.
    pub quantization_config: Option<Value>,
    /// Everything else Qdrant accepts (HNSW, optimizer, WAL settings) is accepted and ignored:
    /// Grape tunes its own indexes.
    #[serde(flatten)]
    pub ignored: serde_json::Map<String, Value>,
}

/// Grape's metric of a Qdrant distance name.
fn metric(distance: &str) -> Result<&'static str, QdrantError> {
    match distance {
        "Cosine" => Ok("cosine"),
        "Euclid" => Ok("l2"),
        "Dot" => Ok("dot"),
        "Manhattan" => Ok("manhattan"),
        other => Err(QdrantError::BadRequest(format!("Format error in JSON body: unknown distance `{other}`"))),
    }
}

/// Qdrant's distance name of a Grape metric.
pub fn distance_name(metric: Metric) -> &'static str {
    match metric {
        Metric::Cosine => "Cosine",
        Metric::L2 => "Euclid",
        Metric::Dot => "Dot",
        Metric::Manhattan => "Manhattan",
    }
}

/// One vector's `{size, distance, quantization_config?}` as a Grape vector field called
/// `name`, its quantization `default` unless it has its own.
fn vector_params(name: &str, params: &Value, default: &str) -> Result<v1::VectorField, QdrantError> {
    let (Some(size), Some(distance)) = (params.get("size").and_then(Value::as_u64), params.get("distance").and_then(Value::as_str)) else {
        return Err(QdrantError::wrong_input(format!("vector {name:?} must be {{size, distance}}, got {params}")));
    };
    if params.get("multivector_config").is_some_and(|m| !m.is_null()) {
        return Err(QdrantError::wrong_input("multivectors are not supported by Grape yet"));
    }
    let own = params.get("quantization_config").filter(|q| !q.is_null());
    Ok(v1::VectorField {
        name: name.to_string(),
        dim: u32::try_from(size).map_err(|_| QdrantError::wrong_input(format!("vector size {size} is too large")))?,
        metric: metric(distance)?.to_string(),
        quantization: if own.is_some() { quantization(own)? } else { default }.to_string(),
    })
}

/// Qdrant's `quantization_config` of a Grape quantization name (null for none).
fn quantization_config(name: &str) -> Value {
    match name {
        "sq8" => json!({ "scalar": { "type": "int8", "always_ram": true } }),
        "bq" => json!({ "binary": { "always_ram": true } }),
        _ => Value::Null,
    }
}

/// Grape's quantization of a Qdrant `quantization_config`.
fn quantization(config: Option<&Value>) -> Result<&'static str, QdrantError> {
    match config {
        None | Some(Value::Null) => Ok("none"),
        Some(c) if c.get("scalar").is_some() => Ok("sq8"),
        Some(c) if c.get("binary").is_some() => Ok("bq"),
        Some(c) => Err(QdrantError::wrong_input(format!("quantization {c} is not supported: use scalar (int8) or binary"))),
    }
}

impl QdrantApi {
    /// `PUT /collections/{name}`.
    pub async fn create_collection(&self, name: &str, body: CreateCollection) -> Outcome {
        let vectors = body.vectors.ok_or_else(|| QdrantError::wrong_input("a collection needs `vectors: {size, distance}`"))?;
        if body.ignored.get("sparse_vectors").is_some_and(|s| s.as_object().is_some_and(|m| !m.is_empty())) {
            return Err(QdrantError::wrong_input("sparse vectors are not supported by Grape yet"));
        }
        let default_quantization = quantization(body.quantization_config.as_ref())?;
        let mut req = v1::CreateCollectionRequest {
            name: name.to_string(),
            shards: body.shard_number.unwrap_or(1),
            replicas: body.replication_factor.unwrap_or(1),
            fields: vec![v1::Field { name: PAYLOAD_COLUMN.to_string(), r#type: "utf8".to_string(), nullable: true }],
            id_type: "utf8".to_string(),
            ..Default::default()
        };
        match vectors.as_object() {
            Some(params) if params.contains_key("size") => {
                let field = vector_params("", &vectors, default_quantization)?;
                (req.dim, req.metric, req.quantization) = (field.dim, field.metric, field.quantization);
            }
            Some(named) if !named.is_empty() => {
                req.vectors = named.iter().map(|(name, params)| vector_params(name, params, default_quantization)).collect::<Result<_, _>>()?;
            }
            _ => return Err(QdrantError::wrong_input(format!("vectors must be {{size, distance}} or named ones, got {vectors}"))),
        }
        // Grape keeps a collection's vectors on disk or in memory as a whole: any vector
        // `on_disk` puts them all there.
        let on_disk = |params: &Value| params.get("on_disk").and_then(Value::as_bool) == Some(true);
        req.vectors_on_disk = on_disk(&vectors) || vectors.as_object().is_some_and(|named| named.values().any(on_disk));
        let gateway = &self.gateway;
        gateway.guarded(Write, gateway.create_collection(req)).await.map_err(|e| match QdrantError::from(e) {
            QdrantError::Conflict(_) => QdrantError::Conflict(format!("Wrong input: Collection `{name}` already exists!")),
            other => other,
        })?;
        Ok(json!(true))
    }

    /// `DELETE /collections/{name}`: true if it existed.
    pub async fn delete_collection(&self, name: &str) -> Outcome {
        let gateway = &self.gateway;
        match gateway.guarded(Write, gateway.drop_collection(name)).await.map_err(QdrantError::from) {
            Ok(()) => {
                self.drop_aliases_of(name).await?;
                let indexes = self.config_under(&format!("{INDEX_PREFIX}{name}/"));
                self.put_config(indexes.into_iter().map(|(field, _)| (format!("{INDEX_PREFIX}{name}/{field}"), String::new())).collect()).await?;
                Ok(json!(true))
            }
            Err(QdrantError::NotFound(_)) => Ok(json!(false)),
            Err(e) => Err(e),
        }
    }

    /// `GET /collections`.
    pub async fn list_collections(&self) -> Outcome {
        let names: Vec<Value> = self.gateway.meta.catalog().await.map_err(crate::error::ComputeError::from)?.collections.keys().map(|n| json!({ "name": n })).collect();
        Ok(json!({ "collections": names }))
    }

    /// `GET /collections/{name}/exists`.
    pub async fn collection_exists(&self, name: &str) -> Outcome {
        let catalog = self.gateway.meta.catalog().await.map_err(crate::error::ComputeError::from)?;
        Ok(json!({ "exists": catalog.collections.contains_key(name) }))
    }

    /// `GET /collections/{name}`: Qdrant's collection info, from Grape's.
    pub async fn get_collection(&self, name: &str) -> Outcome {
        let name = &self.resolve(name);
        let info = self.gateway.describe_collection(name).await.map_err(|e| self.not_found_as_qdrant(name, e))?;
        let distance = |metric: &str| Metric::parse(metric).map_or("Euclid", distance_name);
        let params_of = |dim: u32, metric: &str| {
            let mut params = json!({ "size": dim, "distance": distance(metric) });
            if info.vectors_on_disk {
                params["on_disk"] = json!(true);
            }
            params
        };
        let (vectors, quantization, indexed) = if info.vectors.is_empty() {
            (params_of(info.dim, &info.metric), quantization_config(&info.quantization), info.indexed_rows)
        } else {
            let mut named = serde_json::Map::new();
            for v in &info.vectors {
                let f = v.field.clone().unwrap_or_default();
                let mut params = params_of(f.dim, &f.metric);
                if f.quantization != "none" {
                    params["quantization_config"] = quantization_config(&f.quantization);
                }
                named.insert(f.name, params);
            }
            (Value::Object(named), Value::Null, info.vectors.iter().map(|v| v.indexed_rows).sum())
        };
        Ok(json!({
            "status": "green",
            "optimizer_status": "ok",
            "points_count": info.rows,
            "indexed_vectors_count": indexed,
            "segments_count": info.segments,
            "config": {
                "params": {
                    "vectors": vectors,
                    "shard_number": info.shards,
                    "replication_factor": info.replicas,
                    "write_consistency_factor": 1,
                    "on_disk_payload": false,
                },
                "hnsw_config": { "m": 16, "ef_construct": 100, "full_scan_threshold": 10000, "max_indexing_threads": 0, "on_disk": false },
                "optimizer_config": {
                    "deleted_threshold": 0.2, "vacuum_min_vector_number": 1000, "default_segment_number": 0,
                    "max_segment_size": null, "memmap_threshold": null, "indexing_threshold": 10000,
                    "flush_interval_sec": 5, "max_optimization_threads": null,
                },
                "wal_config": { "wal_capacity_mb": 32, "wal_segments_ahead": 0 },
                "quantization_config": quantization,
            },
            "payload_schema": self.payload_schema(name).await?,
        }))
    }

    /// `PATCH /collections/{name}`: a new `quantization_config` rebuilds the indexes (of one
    /// named vector under `vectors: {name: {quantization_config}}`), a new
    /// `params.replication_factor` changes the replicas; Qdrant's other settings are accepted
    /// and ignored.
    pub async fn update_collection(&self, name: &str, body: Value) -> Outcome {
        let name = &self.resolve(name);
        let collection = self.collection(name)?;
        let gateway = &self.gateway;
        if let Some(config) = body.get("quantization_config").filter(|c| !c.is_null()) {
            let q = quantization(Some(config))?;
            gateway.guarded(Write, gateway.set_quantization(name, q, "")).await?;
        }
        for (vector, params) in body.get("vectors").and_then(Value::as_object).into_iter().flatten() {
            let field = super::points::using_field(&collection.spec, Some(&Value::String(vector.clone())))?;
            if let Some(config) = params.get("quantization_config").filter(|c| !c.is_null()) {
                let q = quantization(Some(config))?;
                gateway.guarded(Write, gateway.set_quantization(name, q, collection.spec.request_name(&field))).await?;
            }
        }
        if let Some(r) = body.get("params").and_then(|p| p.get("replication_factor")).and_then(Value::as_u64) {
            let r = u32::try_from(r).map_err(|_| QdrantError::wrong_input(format!("replication_factor {r} is too large")))?;
            gateway.guarded(Write, gateway.set_replicas(name, r)).await?;
        }
        Ok(json!(true))
    }

    /// The catalog entry of a collection made through this API (utf8 ids and a JSON payload),
    /// or the error Qdrant gives for a missing collection.
    pub fn collection(&self, name: &str) -> Result<Collection, QdrantError> {
        let name = &self.resolve(name);
        let catalog = self.gateway.meta.applied_catalog();
        let collection = catalog.collections.get(name).ok_or_else(|| not_found(name))?.clone();
        let schema = collection.spec.schema.as_ref();
        let shaped = schema.is_some_and(|s| {
            s.field_with_name(ID_COLUMN).is_ok_and(|f| f.data_type() == &arrow::datatypes::DataType::Utf8)
                && s.field_with_name(PAYLOAD_COLUMN).is_ok_and(|f| f.data_type() == &arrow::datatypes::DataType::Utf8)
        });
        if !shaped {
            return Err(QdrantError::wrong_input(format!(
                "collection `{name}` was not made through the Qdrant API (it needs utf8 ids and a JSON `payload` column); use Grape's own API for it"
            )));
        }
        Ok(collection)
    }

    /// A Grape `NotFound` as Qdrant's message for a missing collection.
    pub fn not_found_as_qdrant(&self, name: &str, e: crate::error::ComputeError) -> QdrantError {
        match QdrantError::from(e) {
            QdrantError::NotFound(_) => not_found(name),
            other => other,
        }
    }
}

/// Qdrant's error for a missing collection.
pub fn not_found(name: &str) -> QdrantError {
    QdrantError::NotFound(format!("Not found: Collection `{name}` doesn't exist!"))
}
