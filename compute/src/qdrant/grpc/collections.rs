//! The `Collections` service: get, list, create, update, delete, exists and the aliases over
//! the REST handlers; cluster setup and shard keys are not supported.

use std::collections::HashMap;

use grape_proto::qdrant as pb;
use serde_json::{json, Map, Value};
use tonic::{Request, Response};

use super::convert::{malformed, Converted};
use super::{timed, unimplemented, QdrantGrpc, Reply};
use crate::qdrant::collections::CreateCollection;

#[tonic::async_trait]
impl pb::collections_server::Collections for QdrantGrpc {
    async fn get(&self, r: Request<pb::GetCollectionInfoRequest>) -> Reply<pb::GetCollectionInfoResponse> {
        let (info, time) = timed(self.0.get_collection(&r.into_inner().collection_name)).await?;
        Ok(Response::new(pb::GetCollectionInfoResponse { result: Some(collection_info(&info)), time }))
    }

    async fn list(&self, _: Request<pb::ListCollectionsRequest>) -> Reply<pb::ListCollectionsResponse> {
        let (listed, time) = timed(self.0.list_collections()).await?;
        let names = listed.get("collections").and_then(Value::as_array).into_iter().flatten();
        let collections =
            names.filter_map(|c| c.get("name").and_then(Value::as_str)).map(|name| pb::CollectionDescription { name: name.to_string() });
        Ok(Response::new(pb::ListCollectionsResponse { collections: collections.collect(), time }))
    }

    async fn create(&self, r: Request<pb::CreateCollection>) -> Reply<pb::CollectionOperationResponse> {
        let r = r.into_inner();
        operation(timed(async {
            let body = CreateCollection {
                vectors: r.vectors_config.map(json_of_vectors_config).transpose()?,
                shard_number: r.shard_number,
                replication_factor: r.replication_factor,
                quantization_config: r.quantization_config.and_then(|q| q.quantization).map(json_of_quantization),
                ignored: Map::new(),
            };
            self.0.create_collection(&r.collection_name, body).await
        }))
        .await
    }

    async fn update(&self, r: Request<pb::UpdateCollection>) -> Reply<pb::CollectionOperationResponse> {
        use pb::vectors_config_diff::Config;
        let r = r.into_inner();
        let quantization = r.quantization_config.and_then(json_of_quantization_diff);
        // Per-vector quantization changes, as REST's `vectors: {name: {quantization_config}}`
        // (the unnamed vector is "").
        let diff = |p: pb::VectorParamsDiff| json!({ "quantization_config": p.quantization_config.and_then(json_of_quantization_diff) });
        let vectors: serde_json::Map<String, Value> = match r.vectors_config.and_then(|v| v.config) {
            Some(Config::Params(p)) => [(String::new(), diff(p))].into_iter().collect(),
            Some(Config::ParamsMap(named)) => named.map.into_iter().map(|(name, p)| (name, diff(p))).collect(),
            None => serde_json::Map::new(),
        };
        let body = json!({
            "quantization_config": quantization,
            "vectors": vectors,
            "params": { "replication_factor": r.params.and_then(|p| p.replication_factor) },
        });
        operation(timed(self.0.update_collection(&r.collection_name, body))).await
    }

    async fn delete(&self, r: Request<pb::DeleteCollection>) -> Reply<pb::CollectionOperationResponse> {
        operation(timed(self.0.delete_collection(&r.into_inner().collection_name))).await
    }

    async fn update_aliases(&self, r: Request<pb::ChangeAliases>) -> Reply<pb::CollectionOperationResponse> {
        use pb::alias_operations::Action;
        let actions: Vec<Value> = r
            .into_inner()
            .actions
            .into_iter()
            .filter_map(|a| a.action)
            .map(|action| match action {
                Action::CreateAlias(a) => json!({ "create_alias": { "collection_name": a.collection_name, "alias_name": a.alias_name } }),
                Action::RenameAlias(a) => {
                    json!({ "rename_alias": { "old_alias_name": a.old_alias_name, "new_alias_name": a.new_alias_name } })
                }
                Action::DeleteAlias(a) => json!({ "delete_alias": { "alias_name": a.alias_name } }),
            })
            .collect();
        operation(timed(self.0.update_aliases(&json!({ "actions": actions })))).await
    }

    async fn list_collection_aliases(&self, r: Request<pb::ListCollectionAliasesRequest>) -> Reply<pb::ListAliasesResponse> {
        aliases(timed(async { self.0.list_aliases(Some(&r.into_inner().collection_name)) })).await
    }

    async fn list_aliases(&self, _: Request<pb::ListAliasesRequest>) -> Reply<pb::ListAliasesResponse> {
        aliases(timed(async { self.0.list_aliases(None) })).await
    }

    async fn collection_cluster_info(&self, _: Request<pb::CollectionClusterInfoRequest>) -> Reply<pb::CollectionClusterInfoResponse> {
        unimplemented("CollectionClusterInfo")
    }

    async fn collection_exists(&self, r: Request<pb::CollectionExistsRequest>) -> Reply<pb::CollectionExistsResponse> {
        let (answer, time) = timed(self.0.collection_exists(&r.into_inner().collection_name)).await?;
        let exists = answer.get("exists").and_then(Value::as_bool).unwrap_or(false);
        Ok(Response::new(pb::CollectionExistsResponse { result: Some(pb::CollectionExists { exists }), time }))
    }

    async fn update_collection_cluster_setup(
        &self,
        _: Request<pb::UpdateCollectionClusterSetupRequest>,
    ) -> Reply<pb::UpdateCollectionClusterSetupResponse> {
        unimplemented("UpdateCollectionClusterSetup")
    }

    async fn create_shard_key(&self, _: Request<pb::CreateShardKeyRequest>) -> Reply<pb::CreateShardKeyResponse> {
        unimplemented("CreateShardKey")
    }

    async fn delete_shard_key(&self, _: Request<pb::DeleteShardKeyRequest>) -> Reply<pb::DeleteShardKeyResponse> {
        unimplemented("DeleteShardKey")
    }

    async fn list_shard_keys(&self, _: Request<pb::ListShardKeysRequest>) -> Reply<pb::ListShardKeysResponse> {
        unimplemented("ListShardKeys")
    }
}

/// The answer of a collection change (`result`: the REST result, a bool).
async fn operation(work: impl std::future::Future<Output = Result<(Value, f64), tonic::Status>>) -> Reply<pb::CollectionOperationResponse> {
    let (result, time) = work.await?;
    Ok(Response::new(pb::CollectionOperationResponse { result: result.as_bool().unwrap_or(false), time }))
}

/// The answer of an alias listing (`{"aliases": [{alias_name, collection_name}]}`).
async fn aliases(work: impl std::future::Future<Output = Result<(Value, f64), tonic::Status>>) -> Reply<pb::ListAliasesResponse> {
    let (listed, time) = work.await?;
    let text = |a: &Value, key: &str| a.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    let aliases = listed.get("aliases").and_then(Value::as_array).into_iter().flatten();
    let aliases =
        aliases.map(|a| pb::AliasDescription { alias_name: text(a, "alias_name"), collection_name: text(a, "collection_name") }).collect();
    Ok(Response::new(pb::ListAliasesResponse { aliases, time }))
}

/// Whether a vector's params keep it on disk: `memory` (cold or cached: on disk; pinned: in
/// memory), else the older `on_disk` that clients still send.
#[allow(deprecated)]
fn vectors_on_disk(p: &pb::VectorParams) -> Option<bool> {
    match p.memory.and_then(|m| pb::Memory::try_from(m).ok()) {
        Some(pb::Memory::Cold | pb::Memory::Cached) => Some(true),
        Some(pb::Memory::Pinned) => Some(false),
        Some(pb::Memory::Unknown) | None => p.on_disk,
    }
}

/// REST's `vectors` of a vectors config: `{size, distance}`, or named ones as an object.
fn json_of_vectors_config(config: pb::VectorsConfig) -> Converted<Value> {
    use pb::vectors_config::Config;
    let params = |p: pb::VectorParams| {
        let mut rest = json!({ "size": p.size, "distance": distance_name(p.distance) });
        if let Some(q) = p.quantization_config.and_then(|q| q.quantization) {
            rest["quantization_config"] = json_of_quantization(q);
        }
        if let Some(on_disk) = vectors_on_disk(&p) {
            rest["on_disk"] = json!(on_disk);
        }
        rest
    };
    match config.config.ok_or_else(|| malformed("vectors_config is empty"))? {
        Config::Params(p) => Ok(params(p)),
        Config::ParamsMap(named) => Ok(Value::Object(named.map.into_iter().map(|(name, p)| (name, params(p))).collect())),
    }
}

/// REST's name of a distance (`UnknownDistance` for a code it does not know, which the REST
/// handler refuses).
fn distance_name(code: i32) -> &'static str {
    pb::Distance::try_from(code).unwrap_or(pb::Distance::UnknownDistance).as_str_name()
}

/// REST's `quantization_config` of a gRPC change of one (`None`: no change).
fn json_of_quantization_diff(diff: pb::QuantizationConfigDiff) -> Option<Value> {
    use pb::quantization_config::Quantization as Config;
    use pb::quantization_config_diff::Quantization as Diff;
    Some(match diff.quantization? {
        Diff::Scalar(s) => json_of_quantization(Config::Scalar(s)),
        Diff::Product(p) => json_of_quantization(Config::Product(p)),
        Diff::Binary(b) => json_of_quantization(Config::Binary(b)),
        Diff::Turboquant(t) => json_of_quantization(Config::Turboquant(t)),
        Diff::Disabled(_) => json!("Disabled"),
    })
}

/// REST's `quantization_config` of a gRPC one.
fn json_of_quantization(q: pb::quantization_config::Quantization) -> Value {
    use pb::quantization_config::Quantization;
    match q {
        Quantization::Scalar(s) => json!({ "scalar": { "type": "int8", "quantile": s.quantile } }),
        Quantization::Binary(_) => json!({ "binary": {} }),
        Quantization::Product(_) => json!({ "product": {} }),
        Quantization::Turboquant(_) => json!({ "turbo": {} }),
    }
}

/// The gRPC collection info of REST's.
fn collection_info(info: &Value) -> pb::CollectionInfo {
    let at = |path: &str| info.pointer(path).unwrap_or(&Value::Null);
    let u64_at = |path: &str| at(path).as_u64();
    let u32_at = |path: &str| u64_at(path).and_then(|n| u32::try_from(n).ok());
    let status = match at("/status").as_str() {
        Some("green") => pb::CollectionStatus::Green,
        Some("yellow") => pb::CollectionStatus::Yellow,
        Some("red") => pb::CollectionStatus::Red,
        Some("grey") => pb::CollectionStatus::Grey,
        _ => pb::CollectionStatus::UnknownCollectionStatus,
    };
    let optimizer_ok = at("/optimizer_status").as_str() == Some("ok");
    let params = pb::CollectionParams {
        shard_number: u32_at("/config/params/shard_number").unwrap_or(1),
        vectors_config: vectors_config(at("/config/params/vectors")),
        replication_factor: u32_at("/config/params/replication_factor"),
        write_consistency_factor: u32_at("/config/params/write_consistency_factor"),
        ..Default::default()
    };
    let hnsw = pb::HnswConfigDiff {
        m: u64_at("/config/hnsw_config/m"),
        ef_construct: u64_at("/config/hnsw_config/ef_construct"),
        full_scan_threshold: u64_at("/config/hnsw_config/full_scan_threshold"),
        max_indexing_threads: u64_at("/config/hnsw_config/max_indexing_threads"),
        ..Default::default()
    };
    let optimizer = pb::OptimizersConfigDiff {
        deleted_threshold: at("/config/optimizer_config/deleted_threshold").as_f64(),
        vacuum_min_vector_number: u64_at("/config/optimizer_config/vacuum_min_vector_number"),
        default_segment_number: u64_at("/config/optimizer_config/default_segment_number"),
        max_segment_size: u64_at("/config/optimizer_config/max_segment_size"),
        memmap_threshold: u64_at("/config/optimizer_config/memmap_threshold"),
        indexing_threshold: u64_at("/config/optimizer_config/indexing_threshold"),
        flush_interval_sec: u64_at("/config/optimizer_config/flush_interval_sec"),
        ..Default::default()
    };
    let wal = pb::WalConfigDiff {
        wal_capacity_mb: u64_at("/config/wal_config/wal_capacity_mb"),
        wal_segments_ahead: u64_at("/config/wal_config/wal_segments_ahead"),
        ..Default::default()
    };
    let config = pb::CollectionConfig {
        params: Some(params),
        hnsw_config: Some(hnsw),
        optimizer_config: Some(optimizer),
        wal_config: Some(wal),
        quantization_config: quantization_config(at("/config/quantization_config")),
        ..Default::default()
    };
    pb::CollectionInfo {
        status: status as i32,
        optimizer_status: Some(pb::OptimizerStatus { ok: optimizer_ok, error: String::new() }),
        segments_count: u64_at("/segments_count").unwrap_or(0),
        config: Some(config),
        payload_schema: payload_schema(at("/payload_schema")),
        points_count: u64_at("/points_count"),
        indexed_vectors_count: u64_at("/indexed_vectors_count"),
        ..Default::default()
    }
}

/// The gRPC payload schema of REST's (`{key: {data_type, points}}`).
fn payload_schema(schema: &Value) -> HashMap<String, pb::PayloadSchemaInfo> {
    use pb::PayloadSchemaType as T;
    let info = |field: &Value| {
        let data_type = match field.get("data_type").and_then(Value::as_str) {
            Some("keyword") => T::Keyword,
            Some("integer") => T::Integer,
            Some("float") => T::Float,
            Some("geo") => T::Geo,
            Some("text") => T::Text,
            Some("bool") => T::Bool,
            Some("datetime") => T::Datetime,
            Some("uuid") => T::Uuid,
            _ => T::UnknownType,
        };
        pb::PayloadSchemaInfo { data_type: data_type as i32, params: None, points: field.get("points").and_then(Value::as_u64) }
    };
    schema.as_object().into_iter().flatten().map(|(key, field)| (key.clone(), info(field))).collect()
}

/// The gRPC vectors config of REST's `{size, distance}`.
#[allow(deprecated)]
fn vectors_config(vectors: &Value) -> Option<pb::VectorsConfig> {
    let params = |v: &Value| -> Option<pb::VectorParams> {
        let size = v.get("size").and_then(Value::as_u64)?;
        let distance = v.get("distance").and_then(Value::as_str).and_then(pb::Distance::from_str_name)?;
        let quantization_config = v.get("quantization_config").and_then(quantization_config);
        let on_disk = v.get("on_disk").and_then(Value::as_bool);
        Some(pb::VectorParams { size, distance: distance as i32, quantization_config, on_disk, ..Default::default() })
    };
    let config = match vectors.as_object() {
        Some(one) if one.contains_key("size") => pb::vectors_config::Config::Params(params(vectors)?),
        Some(named) => {
            let map = named.iter().map(|(name, v)| Some((name.clone(), params(v)?))).collect::<Option<_>>()?;
            pb::vectors_config::Config::ParamsMap(pb::VectorParamsMap { map })
        }
        None => return None,
    };
    Some(pb::VectorsConfig { config: Some(config) })
}

/// The gRPC quantization config of REST's (`scalar` or `binary`; `None` for none).
fn quantization_config(config: &Value) -> Option<pb::QuantizationConfig> {
    use pb::quantization_config::Quantization;
    let quantization = if config.get("scalar").is_some() {
        Quantization::Scalar(pb::ScalarQuantization { r#type: pb::QuantizationType::Int8 as i32, ..Default::default() })
    } else if config.get("binary").is_some() {
        Quantization::Binary(pb::BinaryQuantization::default())
    } else {
        return None;
    };
    Some(pb::QuantizationConfig { quantization: Some(quantization) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_info_carries_the_vectors_config() {
        let info = json!({
            "status": "green", "optimizer_status": "ok", "points_count": 3, "segments_count": 1,
            "config": { "params": { "vectors": { "size": 4, "distance": "Dot" }, "shard_number": 2, "replication_factor": 1 },
                        "hnsw_config": { "m": 16, "ef_construct": 100 }, "quantization_config": { "scalar": { "type": "int8", "always_ram": true } } },
        });
        let info = collection_info(&info);
        assert_eq!(info.status, pb::CollectionStatus::Green as i32);
        assert_eq!(info.points_count, Some(3));
        let config = info.config.unwrap();
        let params = config.params.unwrap();
        assert_eq!(params.shard_number, 2);
        let Some(pb::vectors_config::Config::Params(vectors)) = params.vectors_config.unwrap().config else { panic!("no params") };
        assert_eq!((vectors.size, vectors.distance), (4, pb::Distance::Dot as i32));
        assert!(matches!(config.quantization_config.unwrap().quantization, Some(pb::quantization_config::Quantization::Scalar(_))));
        assert_eq!(config.hnsw_config.unwrap().m, Some(16));
    }

    #[test]
    fn vectors_configs_become_rest_bodies() {
        let params = pb::VectorParams { size: 8, distance: pb::Distance::Euclid as i32, ..Default::default() };
        let config = pb::VectorsConfig { config: Some(pb::vectors_config::Config::Params(params)) };
        assert_eq!(json_of_vectors_config(config).unwrap(), json!({"size": 8, "distance": "Euclid"}));
        assert_eq!(distance_name(99), "UnknownDistance");
        // Vectors on disk, as older clients (`on_disk`) and newer ones (`memory`) say it.
        #[allow(deprecated)]
        for (on_disk, memory, rest) in [(Some(true), None, Some(true)), (None, Some(pb::Memory::Cold), Some(true)), (Some(true), Some(pb::Memory::Pinned), Some(false))] {
            let params = pb::VectorParams { size: 8, on_disk, memory: memory.map(|m| m as i32), ..Default::default() };
            let config = pb::VectorsConfig { config: Some(pb::vectors_config::Config::Params(params)) };
            assert_eq!(json_of_vectors_config(config).unwrap().get("on_disk").and_then(Value::as_bool), rest, "{on_disk:?} {memory:?}");
        }
    }

    #[test]
    fn named_vectors_configs_round_trip_with_their_quantization() {
        let rest = json!({"image": {"size": 4, "distance": "Cosine", "quantization_config": {"binary": {"always_ram": true}}},
                          "text": {"size": 6, "distance": "Dot"}});
        let grpc = vectors_config(&rest).expect("a params map");
        let Some(pb::vectors_config::Config::ParamsMap(ref named)) = grpc.config else { panic!("not a map: {grpc:?}") };
        assert_eq!(named.map["text"].size, 6);
        let back = json_of_vectors_config(grpc).unwrap();
        assert_eq!(back["text"], json!({"size": 6, "distance": "Dot"}));
        assert!(back["image"]["quantization_config"].get("binary").is_some(), "{back}");
    }
}
