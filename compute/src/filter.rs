//! Search filters: SQL boolean expressions over payload columns, planned and evaluated by
//! DataFusion, so a search filter and a SQL `WHERE` clause mean exactly the same thing.
//!
//! A filter may name derived payload columns (`"payload:str:color"`, see [`crate::derived`]):
//! it is planned against the schema with them appended, and a segment supplies them from its
//! cache ([`Filter::evaluate_segment`]).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::{DataType, Schema};
use datafusion::common::DFSchema;
use datafusion::logical_expr::ExprSchemable;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;

use crate::derived::DerivedColumn;
use crate::error::ComputeError;
use crate::limits::{prepare_filter, ExprLimits};
use crate::segment::LoadedSegment;

/// Compiled filters kept at most; the cache is emptied when full.
pub const CACHED_FILTERS: usize = 1024;

/// Compiled filters by limits, schema and text.
static COMPILED: LazyLock<Mutex<HashMap<String, Filter>>> = LazyLock::new(Default::default);

/// The DataFusion session filters are planned in (building one registers every function,
/// ours included).
static SESSION: LazyLock<SessionContext> = LazyLock::new(|| {
    let ctx = SessionContext::new();
    crate::qdrant::register_functions(&ctx);
    ctx
});

/// A filter compiled against a collection's schema, ready to evaluate on its segments.
#[derive(Debug, Clone)]
pub struct Filter {
    expr: Arc<dyn PhysicalExpr>,
    text: String,
    /// The derived columns it names that the schema it was compiled against lacks: appended,
    /// in this order, to the batches it is evaluated on.
    derived: Arc<[DerivedColumn]>,
}

impl Filter {
    /// Parses and plans `sql` (e.g. `category = 3 AND price < 9.5`) against `schema`, within
    /// `limits` (see [`crate::limits`]: long `OR` chains of equalities become `IN` lists).
    ///
    /// Fails with `InvalidArgument` naming the problem when the text does not parse, names an
    /// unknown column, is not a boolean expression, or passes a limit.
    ///
    /// Compiled filters are kept (up to [`CACHED_FILTERS`]) by text, schema and limits: a
    /// search that repeats a filter does not plan it again, which costs milliseconds.
    pub fn compile(sql: &str, schema: &Schema, limits: ExprLimits) -> Result<Filter, ComputeError> {
        let key = format!("{limits:?}\u{0}{:?}\u{0}{sql}", schema.fields());
        let mut cache = COMPILED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(hit) = cache.get(&key) {
            return Ok(hit.clone());
        }
        drop(cache);
        let filter = Filter::plan(sql, schema, limits)?;
        cache = COMPILED.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHED_FILTERS {
            cache.clear();
        }
        cache.insert(key, filter.clone());
        Ok(filter)
    }

    /// [`Filter::compile`] without the cache.
    fn plan(sql: &str, schema: &Schema, limits: ExprLimits) -> Result<Filter, ComputeError> {
        let invalid = |e: &dyn std::fmt::Display| ComputeError::InvalidArgument(format!("invalid filter `{}`: {e}", abbreviate(sql)));
        let ctx = &*SESSION;
        let state = ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let parsed = prepare_filter(sql, limits, |text| state.sql_to_expr_with_alias(text, &dialect).map_err(|e| invalid(&e)))?;
        let names = crate::derived::names_in(&parsed.expr);
        let (schema, derived) = crate::derived::extend_schema(schema, names.iter().map(String::as_str)).map_err(|e| invalid(&e))?;
        let df_schema = DFSchema::try_from(schema).map_err(|e| invalid(&e))?;
        let expr = state.create_logical_expr_from_sql_expr(parsed, &df_schema).map_err(|e| invalid(&e))?;
        let data_type = expr.get_type(&df_schema).map_err(|e| invalid(&e))?;
        if data_type != DataType::Boolean {
            return Err(invalid(&format!("it is of type {data_type}, not a boolean condition")));
        }
        let expr = ctx.create_physical_expr(expr, &df_schema).map_err(|e| invalid(&e))?;
        check_constants(&expr).map_err(|e| invalid(&e))?;
        Ok(Filter { expr, text: abbreviate(sql), derived: derived.into() })
    }

    /// [`Filter::compile`] on a blocking thread: planning a long filter takes a while, and it
    /// must not hold a runtime thread (nor keep the request's deadline from firing).
    pub async fn compile_off_runtime(sql: &str, schema: &Arc<Schema>, limits: ExprLimits) -> Result<Filter, ComputeError> {
        let (sql, schema) = (sql.to_string(), schema.clone());
        tokio::task::spawn_blocking(move || Filter::compile(&sql, &schema, limits))
            .await
            .map_err(|e| ComputeError::Internal(format!("compiling the filter failed: {e}")))?
    }

    /// Evaluates the filter on `batch` (with the schema it was compiled against): true where
    /// the row matches (nulls count as false). Derived columns it names are computed from the
    /// batch's payloads.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<BooleanArray, ComputeError> {
        if self.derived.is_empty() {
            return self.evaluate_batch(batch);
        }
        self.evaluate_batch(&crate::derived::append(batch, &self.derived)?)
    }

    /// [`Filter::evaluate`] on a segment's rows, with the derived columns it names taken from
    /// the segment's cache (see [`LoadedSegment::batch_with`]).
    pub fn evaluate_segment(&self, segment: &LoadedSegment) -> Result<BooleanArray, ComputeError> {
        if self.derived.is_empty() {
            return self.evaluate_batch(&segment.batch);
        }
        self.evaluate_batch(&segment.batch_with(&self.derived)?)
    }

    /// Evaluates the expression on a batch that has every column it reads.
    fn evaluate_batch(&self, batch: &RecordBatch) -> Result<BooleanArray, ComputeError> {
        let value = self.expr.evaluate(batch).map_err(|e| ComputeError::InvalidArgument(format!("filter `{}` failed: {e}", self.text)))?;
        let array =
            value.into_array(batch.num_rows()).map_err(|e| ComputeError::InvalidArgument(format!("filter `{}` failed: {e}", self.text)))?;
        let mask = array
            .as_boolean_opt()
            .ok_or_else(|| ComputeError::Internal(format!("filter `{}` returned {}", self.text, array.data_type())))?;
        Ok(mask.clone())
    }
}

/// Evaluates every part of `expr` that reads no column (`'%'` cast to a number, `1/0`) once,
/// so that an error in it is the filter's error when it is compiled, not a failure of every
/// segment it runs on, which would look like the segments' fault.
fn check_constants(expr: &Arc<dyn PhysicalExpr>) -> datafusion::error::Result<()> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::physical_expr::expressions::Literal;
    use datafusion::physical_expr::utils::collect_columns;
    let one_row = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
    )?;
    expr.apply(|node| {
        if node.downcast_ref::<Literal>().is_some() || !collect_columns(node).is_empty() {
            return Ok(TreeNodeRecursion::Continue);
        }
        node.evaluate(&one_row)?;
        Ok(TreeNodeRecursion::Jump)
    })?;
    Ok(())
}

/// At most the first 200 characters of a filter, for messages: a filter may be a megabyte.
fn abbreviate(sql: &str) -> String {
    match sql.char_indices().nth(200) {
        Some((end, _)) => format!("{}… ({} bytes)", &sql[..end], sql.len()),
        None => sql.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::Field;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("category", DataType::Int64, false),
            Field::new("price", DataType::Float64, false),
            Field::new("tag", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 3, 3])),
                Arc::new(Float64Array::from(vec![1.0, 5.0, 20.0])),
                Arc::new(StringArray::from(vec![Some("a"), None, Some("b")])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn evaluates_like_sql_where() {
        let b = batch();
        let f = Filter::compile("category = 3 AND price < 9.5", &b.schema(), ExprLimits::default()).unwrap();
        assert_eq!(f.evaluate(&b).unwrap(), BooleanArray::from(vec![false, true, false]));
        let f = Filter::compile("tag IN ('a','b')", &b.schema(), ExprLimits::default()).unwrap();
        let m = f.evaluate(&b).unwrap();
        assert!(m.value(0) && m.value(2) && !(m.is_valid(1) && m.value(1)));
    }

    #[test]
    fn rejects_malformed_unknown_and_non_boolean() {
        let s = batch().schema();
        for bad in ["category = ", "nope = 1", "price + 1", "NOT category = '%'", "price > 1 AND category = 1 / 0"] {
            let err = Filter::compile(bad, &s, ExprLimits::default()).unwrap_err();
            assert!(matches!(err, ComputeError::InvalidArgument(_)), "{bad}: {err}");
        }
    }
}
