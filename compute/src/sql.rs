//! SQL over collections: every collection is a DataFusion table ([`CollectionTable`]) served
//! from its in-memory segments.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionContext;

use crate::engine::CollectionView;
use crate::error::ComputeError;
use crate::table::CollectionTable;

/// Runs one SQL query over `views` and returns its schema and result batches.
///
/// Only queries are allowed: DDL, DML and `SET` statements fail with `InvalidArgument`, since
/// the catalog and the manifests change only through the meta service.
pub async fn run_sql(views: &[Arc<CollectionView>], query: &str) -> Result<(SchemaRef, Vec<RecordBatch>), ComputeError> {
    let ctx = SessionContext::new();
    for view in views {
        let Some(schema) = &view.schema else { continue };
        let table = CollectionTable::new(schema.clone(), view.segments.clone());
        ctx.register_table(view.collection.spec.name.as_str(), Arc::new(table))?;
    }
    let options = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
    let df = ctx.sql_with_options(query, options).await?;
    let referenced = referenced_tables(&df);
    for view in views.iter().filter(|v| referenced.iter().any(|t| t == &v.collection.spec.name)) {
        view.require_complete()?;
    }
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    Ok((schema, batches))
}

/// Names of the tables a planned query scans.
fn referenced_tables(df: &datafusion::dataframe::DataFrame) -> Vec<String> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::LogicalPlan;
    let mut names = Vec::new();
    let _ = df.logical_plan().apply(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            names.push(scan.table_name.table().to_string());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    names
}
