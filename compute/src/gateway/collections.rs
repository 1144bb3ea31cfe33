//! Collection management and the catalog ↔ API conversions.

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use grape_meta::catalog::{Collection, CollectionSpec, Metric, Quantization, VectorField};
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

/// Most named vector fields a collection may have.
pub const MAX_VECTOR_FIELDS: usize = 16;

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
    let vectors: Vec<v1::VectorFieldInfo> = c.spec.vector_fields().iter().map(|f| vector_field_info(c, f)).collect();
    let first = vectors.first().cloned().unwrap_or_default();
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
        indexed_segments: first.indexed_segments,
        indexed_rows: first.indexed_rows,
        index_bytes_per_vector: first.index_bytes_per_vector,
        vectors: if c.spec.is_named() { vectors } else { Vec::new() },
        vectors_on_disk: c.spec.vectors_on_disk,
    }
}

/// A vector field of `c` in its API form, with how far its indexes have come: segments with
/// an index of the field's quantization, the rows they cover, and their bytes per vector.
fn vector_field_info(c: &Collection, field: &VectorField) -> v1::VectorFieldInfo {
    let quantization = field.quantization.as_str();
    let indexed: Vec<_> = c.segments().filter_map(|s| s.index_of(&field.name).filter(|i| i.quantization == quantization).map(|i| (s, i))).collect();
    let indexed_rows: u64 = indexed.iter().map(|(s, _)| s.rows).sum();
    let index_bytes: u64 = indexed.iter().map(|(s, i)| s.rows * i.memory_per_row).sum();
    v1::VectorFieldInfo {
        field: Some(v1::VectorField {
            name: field.name.clone(),
            dim: field.dim,
            metric: field.metric.as_str().to_string(),
            quantization: quantization.to_string(),
        }),
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
        let vectors = named_vector_fields(&req)?;
        let VectorField { dim, metric, quantization, .. } = match vectors.first() {
            Some(first) => first.clone(),
            None => vector_field(&v1::VectorField {
                name: VECTOR_COLUMN.into(),
                dim: req.dim,
                metric: req.metric.clone(),
                quantization: req.quantization.clone(),
            })?,
        };
        let schema = if req.fields.is_empty() { None } else { Some(explicit_schema(&req, &vectors)?) };
        let spec = CollectionSpec {
            name: req.name.clone(),
            dim,
            metric,
            shards: req.shards.clamp(1, 1024),
            replicas: check_replicas(req.replicas.max(1))?,
            schema,
            quantization,
            vectors,
            vectors_on_disk: req.vectors_on_disk,
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

    /// Changes the quantization of a collection's vector field `vector` (empty: of every
    /// field); index-build jobs then rebuild its indexes.
    pub async fn set_quantization(&self, name: &str, quantization: &str, vector: &str) -> Result<v1::CollectionInfo, ComputeError> {
        let quantization = parse_quantization(quantization)?;
        let command = Command::SetQuantization { name: name.to_string(), quantization, vector: vector.to_string() };
        outcome(self.meta.write(command).await?).map_err(|e| match e {
            ComputeError::NotFound(_) if vector.is_empty() => not_found(name),
            ComputeError::NotFound(_) => ComputeError::NotFound(format!("collection \"{name}\" or its vector field \"{vector}\" does not exist")),
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

/// Checks a vector field of a create request: name, dim, metric (empty: l2) and quantization
/// (empty: none).
fn vector_field(f: &v1::VectorField) -> Result<VectorField, ComputeError> {
    let of = if f.name == VECTOR_COLUMN { String::new() } else { format!(" of vector \"{}\"", f.name) };
    if f.dim == 0 || f.dim > MAX_DIM {
        return Err(ComputeError::InvalidArgument(format!("dim{of} must be between 1 and {MAX_DIM}, got {}", f.dim)));
    }
    let metric = if f.metric.is_empty() { Some(Metric::L2) } else { Metric::parse(&f.metric) }
        .ok_or_else(|| ComputeError::InvalidArgument(format!("unknown metric \"{}\"{of}: use l2, cosine, dot or manhattan", f.metric)))?;
    Ok(VectorField { name: f.name.clone(), dim: f.dim, metric, quantization: parse_quantization(&f.quantization)? })
}

/// The named vector fields of a create request, checked: valid, distinct names that are not
/// `id` or `score`, and no top-level dim, metric or quantization beside them.
fn named_vector_fields(req: &v1::CreateCollectionRequest) -> Result<Vec<VectorField>, ComputeError> {
    if req.vectors.is_empty() {
        return Ok(Vec::new());
    }
    if req.dim != 0 || !req.metric.is_empty() || !req.quantization.is_empty() {
        return Err(ComputeError::InvalidArgument(
            "a collection with named vectors takes dim, metric and quantization per vector: leave the top-level ones unset".into(),
        ));
    }
    if req.vectors.len() > MAX_VECTOR_FIELDS {
        return Err(ComputeError::InvalidArgument(format!("{} vectors: a collection has at most {MAX_VECTOR_FIELDS}", req.vectors.len())));
    }
    let mut fields: Vec<VectorField> = Vec::with_capacity(req.vectors.len());
    for f in &req.vectors {
        let ok = !f.name.is_empty() && f.name.chars().count() <= 64 && !f.name.chars().any(char::is_control);
        if !ok || f.name == ID_COLUMN || f.name == "score" {
            return Err(ComputeError::InvalidArgument(format!(
                "invalid vector name {:?}: use 1 to 64 characters, no control characters, not `id` or `score`",
                f.name
            )));
        }
        if fields.iter().any(|g| g.name == f.name) {
            return Err(ComputeError::InvalidArgument(format!("vector \"{}\" is given twice", f.name)));
        }
        fields.push(vector_field(f)?);
    }
    Ok(fields)
}

/// Builds the full schema of a collection created with explicit payload fields: `id`, the
/// vector columns (`vectors`, or the one `vector`), the payload.
fn explicit_schema(req: &v1::CreateCollectionRequest, vectors: &[VectorField]) -> Result<Schema, ComputeError> {
    let id_type = match req.id_type.to_ascii_lowercase().as_str() {
        "" | "uint64" | "u64" => DataType::UInt64,
        "utf8" | "string" => DataType::Utf8,
        other => return Err(ComputeError::InvalidArgument(format!("id type must be uint64 or utf8, got \"{other}\""))),
    };
    let mut fields = vec![Field::new(ID_COLUMN, id_type, false)];
    match vectors {
        [] => fields.push(Field::new(VECTOR_COLUMN, vector_type(req.dim), false)),
        named => fields.extend(named.iter().map(|v| Field::new(&v.name, vector_type(v.dim), false))),
    }
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
