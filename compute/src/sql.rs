//! SQL over collections: every collection is a DataFusion table ([`CollectionTable`]) whose
//! scans are routed to the nodes that hold its segments.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::datasource::empty::EmptyTable;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use futures::TryStreamExt;
use grape_meta::catalog::Catalog;

use crate::error::ComputeError;
use crate::limits::{check_join_sizes, prepare_statement, ExprLimits};
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
/// the catalog and the manifests change only through the meta service. The text is held to
/// `limits` before it is planned (see [`crate::limits`]), joins without an equality
/// condition to `max_join_pairs`, and the query reserves its memory from `runtime`'s pool.
pub async fn run_sql(
    router: &Arc<Router>,
    catalog: &Catalog,
    query: &str,
    allow_partial: bool,
    limits: ExprLimits,
    max_join_pairs: u64,
    runtime: Arc<RuntimeEnv>,
) -> Result<SqlAnswer, ComputeError> {
    let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), runtime);
    crate::qdrant::register_functions(&ctx);
    let missed: Option<MissedSegments> = allow_partial.then(MissedSegments::default);
    let options = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
    let state = ctx.state();
    // Parsed where the query runs: the gateway runs it on the SQL threads (limits::on_sql_threads).
    let dialect = state.config().options().sql_parser.dialect;
    let statement = prepare_statement(query, limits, |text| Ok(state.sql_to_statement(text, &dialect)?))?;
    // Derived payload columns the query names are columns of every table with payloads.
    let derived = match &statement {
        DfStatement::Statement(s) => crate::derived::names_in(s.as_ref()),
        DfStatement::Explain(e) => match e.statement.as_ref() {
            DfStatement::Statement(s) => crate::derived::names_in(s.as_ref()),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    for collection in catalog.collections.values() {
        let table: Arc<dyn TableProvider> = match &collection.spec.schema {
            Some(schema) => {
                let (schema, _) = crate::derived::extend_schema(schema, derived.iter().map(String::as_str))?;
                Arc::new(CollectionTable::new(Arc::new(schema), collection.clone(), router.clone(), missed.clone()))
            }
            // Its columns come with its first insert; until then it is a table without rows
            // (and without columns), not an unknown table.
            None => Arc::new(EmptyTable::new(Arc::new(Schema::empty()))),
        };
        ctx.register_table(collection.spec.name.as_str(), table)?;
    }
    if !matches!(statement, DfStatement::Statement(_) | DfStatement::Explain(_)) {
        // COPY, CREATE EXTERNAL TABLE, RESET: refused before DataFusion plans (or runs) them.
        return Err(ComputeError::InvalidArgument(
            "only queries (SELECT, WITH, EXPLAIN) are accepted; collections change through the gRPC API and the CLI".into(),
        ));
    }
    let plan = state.statement_to_plan(statement).await.map_err(planning_error)?;
    options.verify_plan(&plan)?;
    let df = ctx.execute_logical_plan(plan).await.map_err(planning_error)?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let task = Arc::new(df.task_ctx());
    let physical = df.create_physical_plan().await.map_err(planning_error)?;
    check_join_sizes(&physical, max_join_pairs)?;
    let mut stream = datafusion::physical_plan::execute_stream(physical, task)?;
    let mut batches = Vec::new();
    while let Some(batch) = stream.try_next().await? {
        batches.push(batch);
        // Work done after the input is read (a sort's merge, a join's probe) answers every
        // poll at once and never yields by itself; spending the task's budget per batch
        // makes it yield now and then, so a query past its deadline stops between batches.
        tokio::task::consume_budget().await;
    }
    let mut missing = missed.map(|m| std::mem::take(&mut *m.lock().unwrap_or_else(|e| e.into_inner()))).unwrap_or_default();
    missing.sort();
    missing.dedup();
    Ok((schema, batches, missing))
}

/// An error while planning a query, before it touches any data: the query's fault, whatever
/// DataFusion calls it (a function given types it has no signature for is an "internal"
/// error of its type coercion).
fn planning_error(e: datafusion::error::DataFusionError) -> ComputeError {
    match ComputeError::from(e) {
        ComputeError::Query(m) | ComputeError::Internal(m) => ComputeError::InvalidArgument(format!("the query cannot be planned: {m}")),
        other => other,
    }
}
