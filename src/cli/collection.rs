//! `grape collection create|list|describe|drop`.

use grape_proto::v1;
use serde_json::{json, Value};

use super::client::Client;
use super::output::print_object;
use super::{CollectionCommand, CreateArgs, OutputFormat};
use crate::error::CliError;

/// Runs a `collection` subcommand.
pub async fn run(client: &mut Client, format: OutputFormat, cmd: CollectionCommand) -> Result<(), CliError> {
    match cmd {
        CollectionCommand::Create(args) => {
            let info = client.create_collection(create_request(args)?).await?.into_inner();
            print_object(format, &info_json(&info));
        }
        CollectionCommand::List => {
            let list = client.list_collections(v1::ListCollectionsRequest {}).await?.into_inner();
            match format {
                OutputFormat::Json => println!("{}", Value::Array(list.collections.iter().map(info_json).collect())),
                OutputFormat::Table => {
                    println!(
                        "{:<24} {:>6} {:>8} {:>7} {:>12} {:>9} {:>8}",
                        "name", "dim", "metric", "shards", "rows", "segments", "version"
                    );
                    for c in &list.collections {
                        println!(
                            "{:<24} {:>6} {:>8} {:>7} {:>12} {:>9} {:>8}",
                            c.name, c.dim, c.metric, c.shards, c.rows, c.segments, c.version
                        );
                    }
                }
            }
        }
        CollectionCommand::Describe { name } => {
            let info = client.describe_collection(v1::DescribeCollectionRequest { name }).await?.into_inner();
            print_object(format, &info_json(&info));
        }
        CollectionCommand::SetReplicas { name, replicas } => {
            let info = client.set_replicas(v1::SetReplicasRequest { name, replicas }).await?.into_inner();
            print_object(format, &info_json(&info));
        }
        CollectionCommand::SetQuantization { name, quantization, vector_name } => {
            let info = client.set_quantization(v1::SetQuantizationRequest { name, quantization, vector_name }).await?.into_inner();
            print_object(format, &info_json(&info));
        }
        CollectionCommand::Compact { name, shard, wait } => {
            let jobs = client.compact(v1::CompactRequest { collection: name, shard }).await?.into_inner().jobs;
            let jobs = if wait { super::jobs::follow(client, &jobs.iter().map(|j| j.id).collect::<Vec<_>>(), "units").await? } else { jobs };
            super::jobs::print_jobs(format, &jobs);
        }
        CollectionCommand::Drop { name } => {
            client.drop_collection(v1::DropCollectionRequest { name: name.clone() }).await?;
            print_object(format, &json!({ "dropped": name }));
        }
    }
    Ok(())
}

/// Builds the create request, parsing `--schema name:type,…`.
fn create_request(args: CreateArgs) -> Result<v1::CreateCollectionRequest, CliError> {
    let mut fields = Vec::new();
    for part in args.schema.iter().flat_map(|s| s.split(',')).map(str::trim).filter(|p| !p.is_empty()) {
        let (name, ty) = part
            .split_once(':')
            .ok_or_else(|| CliError::Usage(format!("--schema entry \"{part}\" must be name:type, e.g. price:float64")))?;
        fields.push(v1::Field { name: name.trim().to_string(), r#type: ty.trim().to_string(), nullable: true });
    }
    let vectors = args.vector_fields.iter().map(|f| vector_field(f)).collect::<Result<Vec<_>, _>>()?;
    let (metric, quantization) = if vectors.is_empty() { (args.metric, args.quantization) } else { Default::default() };
    Ok(v1::CreateCollectionRequest {
        name: args.name,
        dim: args.dim.unwrap_or_default(),
        metric,
        shards: args.shards,
        replicas: args.replicas,
        fields,
        id_type: args.id_type,
        quantization,
        vectors,
        vectors_on_disk: args.vectors_on_disk,
    })
}

/// Parses `--vector-field name:dim[:metric[:quantization]]`.
fn vector_field(text: &str) -> Result<v1::VectorField, CliError> {
    let usage = || CliError::Usage(format!("--vector-field \"{text}\" must be name:dim[:metric[:quantization]], e.g. text:384:cosine:sq8"));
    let mut parts = text.split(':').map(str::trim);
    let (Some(name), Some(dim)) = (parts.next(), parts.next()) else { return Err(usage()) };
    let dim = dim.parse::<u32>().map_err(|_| usage())?;
    let (metric, quantization) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    if parts.next().is_some() {
        return Err(usage());
    }
    Ok(v1::VectorField { name: name.to_string(), dim, metric: metric.to_string(), quantization: quantization.to_string() })
}

/// A collection's description as JSON.
pub fn info_json(c: &v1::CollectionInfo) -> Value {
    let fields: Vec<Value> = c.fields.iter().map(|f| json!({ "name": f.name, "type": f.r#type, "nullable": f.nullable })).collect();
    json!({
        "name": c.name,
        "dim": c.dim,
        "metric": c.metric,
        "shards": c.shards,
        "replicas": c.replicas,
        "rows": c.rows,
        "segments": c.segments,
        "version": c.version,
        "fields": fields,
        "quantization": c.quantization,
        "indexed_segments": c.indexed_segments,
        "indexed_rows": c.indexed_rows,
        "index_bytes_per_vector": c.index_bytes_per_vector,
        "vector_bytes_per_vector": c.dim as u64 * 4,
        "vectors_on_disk": c.vectors_on_disk,
        "vectors": c.vectors.iter().map(vector_field_json).collect::<Vec<_>>(),
    })
}

/// A named vector field's description as JSON.
fn vector_field_json(v: &v1::VectorFieldInfo) -> Value {
    let f = v.field.clone().unwrap_or_default();
    json!({
        "name": f.name,
        "dim": f.dim,
        "metric": f.metric,
        "quantization": f.quantization,
        "indexed_segments": v.indexed_segments,
        "indexed_rows": v.indexed_rows,
        "index_bytes_per_vector": v.index_bytes_per_vector,
    })
}
