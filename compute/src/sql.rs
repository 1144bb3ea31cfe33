//! SQL over collections: every collection is a DataFusion table ([`CollectionTable`]) whose
//! scans are routed to the nodes that hold its segments.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionContext;
use grape_meta::catalog::Catalog;

use crate::error::ComputeError;
use crate::router::{MissedSegments, Router};
use crate::table::CollectionTable;

/// The answer to a SQL query: its schema, its batches, and (for a partial query) the
/// segments left out.
pub type SqlAnswer = (SchemaRef, Vec<RecordBatch>, Vec<String>);

/// Runs one SQL query over the collections of `catalog` and returns its schema and result
/// batches. With `allow_partial`, segments without a ready replica are left out (and listed)
/// instead of failing the query with `Unavailable`.
///
/// Only queries are allowed: DDL, DML and `SET` statements fail with `InvalidArgument`, since
/// the catalog and the manifests change only through the meta service.
pub async fn run_sql(router: &Arc<Router>, catalog: &Catalog, query: &str, allow_partial: bool) -> Result<SqlAnswer, ComputeError> {
    let ctx = SessionContext::new();
    let missed: Option<MissedSegments> = allow_partial.then(MissedSegments::default);
    for collection in catalog.collections.values() {
        let Some(schema) = &collection.spec.schema else { continue };
        let table = CollectionTable::new(Arc::new(schema.clone()), collection.clone(), router.clone(), missed.clone());
        ctx.register_table(collection.spec.name.as_str(), Arc::new(table))?;
    }
    let options = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
    let df = ctx.sql_with_options(query, options).await?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    let mut missing = missed.map(|m| std::mem::take(&mut *m.lock().unwrap_or_else(|e| e.into_inner()))).unwrap_or_default();
    missing.sort();
    missing.dedup();
    Ok((schema, batches, missing))
}
