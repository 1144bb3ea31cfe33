//! Ids as keys on the gateway: `Get` (the live rows of some ids) and `Delete` (by ids or by
//! filter, as one commit of delete logs).
//!
//! Both read through the same scan as SQL, so they see exactly the rows a query at the same
//! version sees: one per live id, wherever its segment is held.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::prelude::{col, lit, DataFrame, Expr, SessionConfig, SessionContext};
use futures::future::try_join_all;
use grape_meta::{Collection, Command};
use grape_proto::v1;

use super::collections::{not_found, outcome};
use super::{Gateway, CATCH_UP_TIMEOUT};
use crate::error::ComputeError;
use crate::filter::Filter;
use crate::ingest::{encode_ipc, split_by_shard};
use crate::limits::on_sql_threads;
use crate::router::MAX_REPLANS;
use crate::segment::ID_COLUMN;
use crate::table::CollectionTable;

/// Most ids one `Get` or `Delete` may name.
pub const MAX_IDS: usize = 100_000;

impl Gateway {
    /// The live rows of the requested ids (missing ids are absent), at `min_version` or later.
    pub async fn get(&self, req: v1::GetRequest) -> Result<v1::GetResponse, ComputeError> {
        let collection = self.wait_for_version(&req.collection, req.min_version, CATCH_UP_TIMEOUT).await?;
        let Some(schema) = collection.spec.schema.clone().map(Arc::new) else {
            // Nothing inserted yet: no rows, and no schema to give them.
            return Ok(v1::GetResponse { arrow_ipc: Vec::new(), version: collection.version });
        };
        let keys = parse_ids(&collection, &schema, &req.ids, &req.string_ids)?;
        let vectors = collection.spec.vector_columns();
        let columns: Vec<String> =
            schema.fields().iter().map(|f| f.name().clone()).filter(|n| req.include_vectors || !vectors.contains(n)).collect();
        let version = collection.version;
        let (out_schema, batches) = self.read_by_id(collection, schema, Lookup::Keys(keys), columns).await?;
        Ok(v1::GetResponse { arrow_ipc: encode_ipc(&out_schema, &batches)?, version })
    }

    /// Deletes the rows of the requested ids, or those matching the filter, in one commit,
    /// and waits until this node reads the deletion.
    pub async fn delete(&self, req: v1::DeleteRequest) -> Result<v1::DeleteResponse, ComputeError> {
        let filter = req.filter.trim();
        let by_ids = !req.ids.is_empty() || !req.string_ids.is_empty();
        if by_ids == !filter.is_empty() {
            return Err(ComputeError::InvalidArgument("a delete names either ids or a filter (not both, not neither)".into()));
        }
        // Read the latest version, so a filter sees every write acknowledged before this call.
        let latest = self.meta.catalog().await?;
        let version = latest.collections.get(&req.collection).ok_or_else(|| not_found(&req.collection))?.version;
        let collection = self.wait_for_version(&req.collection, version, CATCH_UP_TIMEOUT).await?;
        let Some(schema) = collection.spec.schema.clone().map(Arc::new) else {
            return Ok(v1::DeleteResponse { rows: 0, version: collection.version });
        };
        let ids = vec![ID_COLUMN.to_string()];
        let (keys, rows) = if by_ids {
            let keys = parse_ids(&collection, &schema, &req.ids, &req.string_ids)?;
            let (_, found) = self.read_by_id(collection.clone(), schema, Lookup::Keys(keys.clone()), ids).await?;
            // Every named id is deleted, found or not: a write of it committed meanwhile is
            // ordered before or after this delete by the log, never half-applied.
            (keys, found.iter().map(|b| b.num_rows() as u64).sum())
        } else {
            Filter::compile_off_runtime(filter, &schema, self.limits().expr()).await?;
            let (_, found) = self.read_by_id(collection.clone(), schema, Lookup::Filter(filter.to_string()), ids).await?;
            let columns: Vec<&dyn Array> = found.iter().map(|b| b.column(0).as_ref()).collect();
            let keys = match columns.as_slice() {
                [] => return Ok(v1::DeleteResponse { rows: 0, version: collection.version }),
                _ => arrow::compute::concat(&columns)?,
            };
            let rows = keys.len() as u64;
            (keys, rows)
        };
        if keys.is_empty() {
            return Ok(v1::DeleteResponse { rows: 0, version: collection.version });
        }
        let version = self.commit_deletes(&collection, &keys).await?;
        Ok(v1::DeleteResponse { rows, version })
    }

    /// Rows of `collection` at `min_version` or later, with `columns`: those with the given
    /// `keys`, else one `page` in key order, else all. Used by APIs that address rows by key
    /// (the Qdrant API's retrieve, scroll and count).
    pub async fn read_rows(
        &self,
        collection: &str,
        min_version: u64,
        keys: Option<Vec<String>>,
        page: Option<Page>,
        columns: Vec<String>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), ComputeError> {
        let collection = self.wait_for_version(collection, min_version, CATCH_UP_TIMEOUT).await?;
        let Some(schema) = collection.spec.schema.clone().map(Arc::new) else {
            return Ok((Arc::new(Schema::empty()), Vec::new()));
        };
        let lookup = match (keys, page) {
            (Some(keys), _) => Lookup::Keys(parse_ids(&collection, &schema, &[], &keys)?),
            (None, Some(page)) => {
                if let Some(text) = &page.filter {
                    Filter::compile_off_runtime(text, &schema, self.limits().expr()).await?;
                }
                Lookup::Page(page)
            }
            (None, None) => Lookup::All,
        };
        self.read_by_id(collection, schema, lookup, columns).await
    }

    /// Writes one delete log per shard of `keys` and commits them together.
    async fn commit_deletes(&self, collection: &Collection, keys: &ArrayRef) -> Result<u64, ComputeError> {
        let name = &collection.spec.name;
        let dir = collection.storage_dir();
        let schema = Arc::new(Schema::new(vec![Field::new(ID_COLUMN, keys.data_type().clone(), false)]));
        let ids = RecordBatch::try_new(schema, vec![keys.clone()])?;
        let writes = split_by_shard(&ids, collection.spec.shards)?.into_iter().map(|(shard, part)| {
            let dir = dir.clone();
            async move {
                self.storage.write_delete_log(&dir, shard, part.column(0)).await.map_err(|e| {
                    e.add_context(format!("cannot write delete logs to {}; nothing was deleted", self.storage.url()))
                })
            }
        });
        let logs = try_join_all(writes).await?;
        let cmd = Command::CommitSegments { collection: name.clone(), collection_id: collection.id, segments: Vec::new(), delete_logs: logs, job: None };
        let version = outcome(self.meta.write(cmd).await?)?;
        self.wait_for_version(name, version, CATCH_UP_TIMEOUT).await?;
        Ok(version)
    }

    /// Live rows of `collection` at its version (at least that version is waited for here).
    pub(super) async fn count_live(&self, collection: &Collection) -> Result<u64, ComputeError> {
        let untouched = collection.shards.iter().all(|s| s.segments.len() <= 1 && s.delete_logs.is_empty());
        let Some(schema) = collection.spec.schema.clone().map(Arc::new).filter(|_| !untouched) else {
            // Nothing can have replaced or deleted a row.
            return Ok(collection.rows());
        };
        let collection = self.wait_for_version(&collection.spec.name, collection.version, CATCH_UP_TIMEOUT).await?;
        let (_, batches) = self.read_by_id(collection, schema, Lookup::All, vec![ID_COLUMN.to_string()]).await?;
        Ok(batches.iter().map(|b| b.num_rows() as u64).sum())
    }

    /// The live rows of `collection` selected by `lookup`, with `columns`, read through the
    /// scan SQL uses (on the SQL threads, in the SQL memory pool).
    ///
    /// A read that fails because a compaction swapped segments under it is planned again on
    /// the newer manifest.
    async fn read_by_id(
        &self,
        collection: Collection,
        schema: SchemaRef,
        lookup: Lookup,
        columns: Vec<String>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), ComputeError> {
        let mut collection = collection;
        for _ in 1..MAX_REPLANS {
            let answer = self.read_planned(collection.clone(), schema.clone(), lookup.clone(), columns.clone()).await;
            if answer.is_ok() || !self.router.rewritten_since(&collection) {
                return answer;
            }
            collection = self.wait_for_version(&collection.spec.name, collection.version + 1, CATCH_UP_TIMEOUT).await?;
        }
        self.read_planned(collection, schema, lookup, columns).await
    }

    /// [`Gateway::read_by_id`] over the segments `collection` names.
    async fn read_planned(
        &self,
        collection: Collection,
        schema: SchemaRef,
        lookup: Lookup,
        columns: Vec<String>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), ComputeError> {
        let limits = self.limits();
        let runtime = self.sql_memory.runtime(limits.sql_memory_bytes)?;
        let router = self.router.clone();
        on_sql_threads(async move {
            let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), runtime);
            crate::qdrant::register_functions(&ctx);
            // Derived payload columns the filter names are columns of the table.
            let filter_text = match &lookup {
                Lookup::Filter(text) => Some(text.as_str()),
                Lookup::Page(page) => page.filter.as_deref(),
                Lookup::Keys(_) | Lookup::All => None,
            };
            let names = filter_text.map(crate::derived::names_in_sql).unwrap_or_default();
            let (schema, _) = crate::derived::extend_schema(&schema, names.iter().map(String::as_str))?;
            let table = CollectionTable::new(Arc::new(schema), collection, router, None);
            let df: DataFrame = ctx.read_table(Arc::new(table))?;
            let predicate = match lookup.clone() {
                Lookup::Keys(keys) => {
                    let list = (0..keys.len()).map(|i| ScalarValue::try_from_array(&keys, i).map(lit)).collect::<Result<Vec<Expr>, _>>()?;
                    col(ID_COLUMN).in_list(list, false)
                }
                Lookup::Filter(text) => parse_filter(&df, &text)?,
                Lookup::All => lit(true),
                Lookup::Page(ref page) => {
                    let filter = page.filter.as_deref().map(|text| parse_filter(&df, text)).transpose()?.unwrap_or(lit(true));
                    match &page.from {
                        None => filter,
                        Some(from) => {
                            let len = lit(from.len() as i32);
                            let later = key_length().gt(len.clone()).or(key_length().eq(len).and(col(ID_COLUMN).gt_eq(lit(from.clone()))));
                            filter.and(later)
                        }
                    }
                }
            };
            let names: Vec<&str> = columns.iter().map(String::as_str).collect();
            let mut df = df.filter(predicate)?;
            if let Lookup::Page(page) = &lookup {
                df = df.sort(vec![key_length().sort(true, false), col(ID_COLUMN).sort(true, false)])?.limit(0, page.limit)?;
            }
            let df = df.select_columns(&names)?;
            let out: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            Ok((out, df.collect().await?))
        })
        .await
    }
}

/// `length(id)`: with the id itself, the order of utf8 keys that puts decimal integers in
/// numeric order before longer keys (see [`crate::qdrant::ids`]).
fn key_length() -> Expr {
    datafusion::functions::expr_fn::octet_length(col(ID_COLUMN))
}

/// A SQL boolean expression planned against the table of `df`.
fn parse_filter(df: &DataFrame, text: &str) -> Result<Expr, ComputeError> {
    df.parse_sql_expr(text).map_err(|e| ComputeError::InvalidArgument(format!("invalid filter: {e}")))
}

/// One page of a collection's rows in key order (utf8 keys ordered by length, then text).
#[derive(Clone, Debug)]
pub struct Page {
    /// Only rows matching this SQL boolean expression.
    pub filter: Option<String>,
    /// The first key of the page (inclusive); `None`: from the first row.
    pub from: Option<String>,
    /// Rows at most (`None`: all).
    pub limit: Option<usize>,
}

/// What [`Gateway::read_by_id`] selects.
#[derive(Clone)]
enum Lookup {
    /// Rows with these ids.
    Keys(ArrayRef),
    /// Rows matching this SQL boolean expression.
    Filter(String),
    /// Every row.
    All,
    /// One page of rows in key order.
    Page(Page),
}

/// The ids of a request as an array of the collection's id type, or why they cannot be.
fn parse_ids(collection: &Collection, schema: &SchemaRef, ids: &[u64], text: &[String]) -> Result<ArrayRef, ComputeError> {
    let name = &collection.spec.name;
    let count = ids.len() + text.len();
    if count > MAX_IDS {
        return Err(ComputeError::InvalidArgument(format!("{count} ids were named; at most {MAX_IDS} per request")));
    }
    let id_type = schema.field_with_name(ID_COLUMN).map(|f| f.data_type().clone()).unwrap_or(DataType::UInt64);
    match id_type {
        DataType::Utf8 if ids.is_empty() => Ok(Arc::new(StringArray::from_iter_values(text))),
        DataType::Utf8 => Err(ComputeError::InvalidArgument(format!(
            "collection \"{name}\" has utf8 ids; pass them as string_ids (numeric ids were given)"
        ))),
        _ => {
            let mut all = ids.to_vec();
            for t in text {
                let id = t.trim().parse::<u64>().map_err(|_| {
                    ComputeError::InvalidArgument(format!("collection \"{name}\" has uint64 ids; \"{t}\" is not one"))
                })?;
                all.push(id);
            }
            Ok(Arc::new(UInt64Array::from(all)))
        }
    }
}
