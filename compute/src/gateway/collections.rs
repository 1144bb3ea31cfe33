//! Collection management and the catalog ↔ API conversions.

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use grape_meta::catalog::{Collection, CollectionSpec, Metric, Quantization};
use grape_meta::{Command, CommandResult};
use grape_proto::v1;

use super::{validate_name, Gateway};
use crate::error::ComputeError;
use crate::ingest::vector_type;
use crate::segment::{ID_COLUMN, VECTOR_COLUMN};

/// Largest vector dimension a collection may have.
pub const MAX_DIM: u32 = 65_536;

/// Largest replica factor of a collection.
pub const MAX_REPLICAS: u32 = 16;

/// Parses a payload type name as the CLI and the API accept it.
pub fn parse_type(name: &str) -> Option<DataType> {
    Some(match name.to_ascii_lowercase().as_str() {
        "int8" => DataType::Int8,
        "int16" => DataType::Int16,
        "int32" | "int" => DataType::Int32,
        "int64" | "bigint" => DataType::Int64,
        "uint8" => DataType::UInt8,
        "uint16" => DataType::UInt16,
        "uint32" => DataType::UInt32,
        "uint64" => DataType::UInt64,
        "float32" | "float" => DataType::Float32,
        "float64" | "double" => DataType::Float64,
        "utf8" | "string" | "text" => DataType::Utf8,
        "bool" | "boolean" => DataType::Boolean,
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "date" => DataType::Date32,
        _ => return None,
    })
}

/// Turns a catalog entry into its API form.
pub fn collection_info(c: &Collection) -> v1::CollectionInfo {
    let fields = c
        .spec
        .schema
        .as_ref()
        .map(|s| {
            s.fields()
                .iter()
                .map(|f| v1::Field { name: f.name().clone(), r#type: f.data_type().to_string(), nullable: f.is_nullable() })
                .collect()
        })
        .unwrap_or_default();
    let quantization = c.spec.quantization.as_str();
    let indexed: Vec<_> = c.segments().filter(|s| s.index.as_ref().is_some_and(|i| i.quantization == quantization)).collect();
    let indexed_rows: u64 = indexed.iter().map(|s| s.rows).sum();
    let index_bytes: u64 = indexed.iter().map(|s| s.rows * s.index.as_ref().map_or(0, |i| i.memory_per_row)).sum();
    v1::CollectionInfo {
        name: c.spec.name.clone(),
        dim: c.spec.dim,
        metric: c.spec.metric.as_str().to_string(),
        shards: c.spec.shards,
        replicas: c.spec.replicas,
        fields,
        rows: c.rows(),
        segments: c.segments().count() as u64,
        version: c.version,
        quantization: c.spec.quantization.as_str().to_string(),
        indexed_segments: indexed.len() as u64,
        indexed_rows,
        index_bytes_per_vector: if indexed_rows == 0 { 0.0 } else { index_bytes as f64 / indexed_rows as f64 },
    }
}

/// Maps a meta outcome that is not `Applied` to the error a client should see.
pub(crate) fn outcome(result: CommandResult) -> Result<u64, ComputeError> {
    match result {
        CommandResult::Applied { version } => Ok(version),
        CommandResult::AlreadyExists(m) => Err(ComputeError::AlreadyExists(m)),
        CommandResult::NotFound(m) => Err(ComputeError::NotFound(m)),
        CommandResult::Conflict(m) => Err(ComputeError::Conflict(m)),
        CommandResult::VersionMismatch { current } => {
            Err(ComputeError::Conflict(format!("version mismatch: the key is at version {current}")))
        }
        CommandResult::Job(_) => Err(ComputeError::Internal("meta answered a write with a job".into())),
    }
}

/// Checks a replica factor: 1 to [`MAX_REPLICAS`].
fn check_replicas(replicas: u32) -> Result<u32, ComputeError> {
    if replicas == 0 || replicas > MAX_REPLICAS {
        return Err(ComputeError::InvalidArgument(format!("replicas must be between 1 and {MAX_REPLICAS}, got {replicas}")));
    }
    Ok(replicas)
}

/// Parses a quantization name; the empty string means `none`.
pub(crate) fn parse_quantization(name: &str) -> Result<Quantization, ComputeError> {
    Quantization::parse(name).ok_or_else(|| {
        ComputeError::InvalidArgument(format!("unknown quantization \"{name}\": use {}", Quantization::NAMES.join(", ")))
    })
}

/// The error for a collection that does not exist.
pub(crate) fn not_found(name: &str) -> ComputeError {
    ComputeError::NotFound(format!("collection \"{name}\" does not exist"))
}

impl Gateway {
    /// Creates a collection from an API request, validating every field first.
    pub async fn create_collection(&self, req: v1::CreateCollectionRequest) -> Result<v1::CollectionInfo, ComputeError> {
        validate_name(&req.name)?;
        if req.dim == 0 || req.dim > MAX_DIM {
            return Err(ComputeError::InvalidArgument(format!("dim must be between 1 and {MAX_DIM}, got {}", req.dim)));
        }
        let metric = if req.metric.is_empty() { Some(Metric::L2) } else { Metric::parse(&req.metric) }
            .ok_or_else(|| ComputeError::InvalidArgument(format!("unknown metric \"{}\": use l2, cosine, dot or manhattan", req.metric)))?;
        let quantization = parse_quantization(&req.quantization)?;
        let schema = if req.fields.is_empty() { None } else { Some(explicit_schema(&req)?) };
        let spec = CollectionSpec {
            name: req.name.clone(),
            dim: req.dim,
            metric,
            shards: req.shards.clamp(1, 1024),
            replicas: check_replicas(req.replicas.max(1))?,
            schema,
            quantization,
            vectors: vec![],
        };
        outcome(self.meta.write(Command::CreateCollection { spec }).await?)?;
        self.refresh().await;
        self.describe_collection(&req.name).await
    }

    /// Describes one collection from the linearizable catalog, with its live rows.
    pub async fn describe_collection(&self, name: &str) -> Result<v1::CollectionInfo, ComputeError> {
        let catalog = self.meta.catalog().await?;
        let collection = catalog.collections.get(name).ok_or_else(|| not_found(name))?;
        Ok(self.with_live_rows(collection).await)
    }

    /// Lists all collections, with their live rows.
    pub async fn list_collections(&self) -> Result<Vec<v1::CollectionInfo>, ComputeError> {
        let catalog = self.meta.catalog().await?;
        Ok(futures::future::join_all(catalog.collections.values().map(|c| self.with_live_rows(c))).await)
    }

    /// The API form of `collection` with `rows` counting live rows only. Counting needs the
    /// rows' keys when some were replaced or deleted; if that fails (a segment has no ready
    /// replica), `rows` counts every stored row and the failure is logged.
    async fn with_live_rows(&self, collection: &Collection) -> v1::CollectionInfo {
        let mut info = collection_info(collection);
        match self.count_live(collection).await {
            Ok(rows) => info.rows = rows,
            Err(e) => tracing::warn!(collection = %collection.spec.name, error = %e, "live rows not counted; describing stored rows"),
        }
        info
    }

    /// Changes a collection's replica factor (at least 1, at most [`MAX_REPLICAS`]).
    pub async fn set_replicas(&self, name: &str, replicas: u32) -> Result<v1::CollectionInfo, ComputeError> {
        check_replicas(replicas)?;
        outcome(self.meta.write(Command::SetReplicas { name: name.to_string(), replicas }).await?).map_err(|e| match e {
            ComputeError::NotFound(_) => not_found(name),
            other => other,
        })?;
        self.describe_collection(name).await
    }

    /// Changes a collection's quantization; index-build jobs then rebuild its indexes.
    pub async fn set_quantization(&self, name: &str, quantization: &str) -> Result<v1::CollectionInfo, ComputeError> {
        let quantization = parse_quantization(quantization)?;
        outcome(self.meta.write(Command::SetQuantization { name: name.to_string(), quantization, vector: String::new() }).await?).map_err(|e| match e {
            ComputeError::NotFound(_) => not_found(name),
            other => other,
        })?;
        self.describe_collection(name).await
    }

    /// Drops a collection. Its objects stay in storage for garbage collection.
    pub async fn drop_collection(&self, name: &str) -> Result<(), ComputeError> {
        outcome(self.meta.write(Command::DropCollection { name: name.to_string() }).await?)?;
        self.refresh().await;
        Ok(())
    }
}

/// Builds the full schema of a collection created with explicit payload fields.
fn explicit_schema(req: &v1::CreateCollectionRequest) -> Result<Schema, ComputeError> {
    let id_type = match req.id_type.to_ascii_lowercase().as_str() {
        "" | "uint64" | "u64" => DataType::UInt64,
        "utf8" | "string" => DataType::Utf8,
        other => return Err(ComputeError::InvalidArgument(format!("id type must be uint64 or utf8, got \"{other}\""))),
    };
    let mut fields = vec![Field::new(ID_COLUMN, id_type, false), Field::new(VECTOR_COLUMN, vector_type(req.dim), false)];
    for f in &req.fields {
        if f.name == ID_COLUMN || f.name == VECTOR_COLUMN || f.name.is_empty() {
            return Err(ComputeError::InvalidArgument(format!("payload column name \"{}\" is reserved or empty", f.name)));
        }
        let t = parse_type(&f.r#type).ok_or_else(|| {
            ComputeError::InvalidArgument(format!(
                "unknown type \"{}\" for column `{}`: use int8..int64, uint8..uint64, float32, float64, utf8, bool, timestamp or date",
                f.r#type, f.name
            ))
        })?;
        fields.push(Field::new(&f.name, t, true));
    }
    let schema = Schema::new(fields);
    let mut names: Vec<_> = schema.fields().iter().map(|f| f.name()).collect();
    names.sort();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(ComputeError::InvalidArgument(format!("column `{}` is given twice", w[0])));
    }
    Ok(schema)
}
