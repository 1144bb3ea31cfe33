//! A collection as a DataFusion table, served from the segments of its current version
//! wherever they are held.
//!
//! Planning a scan routes the collection's segments (waiting briefly for segments being
//! loaded, failing with `Unavailable` if some have no ready replica) and builds a
//! [`SegmentScanExec`] with one partition per segment. Filters are accepted as `Inexact`: the
//! scan uses them to skip segments whose min/max statistics prove that no row can match (a
//! [`PruningPredicate`]) and pushes them to the nodes that hold remote segments, and
//! DataFusion still applies every filter to the rows that come back. Answering `Exact` here
//! would be wrong, since a kept segment holds non-matching rows too.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{new_null_array, ArrayRef, BooleanArray, UInt64Array};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, DFSchema, DataFusionError, Result, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_optimizer::pruning::PruningPredicate;
use datafusion::physical_plan::ExecutionPlan;
use grape_meta::catalog::Collection;
use grape_storage::format::{SegmentMeta, StatValue};

use crate::router::{missing_error, MissedSegments, Router, SegmentScanExec, READY_WAIT};

/// One collection, at the version a query reads, as a table.
pub struct CollectionTable {
    schema: SchemaRef,
    collection: Collection,
    router: Arc<Router>,
    /// For a partial query (`allow_partial`): where left-out segments are recorded.
    missed: Option<MissedSegments>,
}

impl std::fmt::Debug for CollectionTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CollectionTable({})", self.collection.spec.name)
    }
}

impl CollectionTable {
    /// A table over the segments of `collection`, whose rows have `schema`, read through
    /// `router`. With `missed`, segments without a ready replica are left out and recorded
    /// there (a partial answer, at once) instead of failing the query.
    pub fn new(schema: SchemaRef, collection: Collection, router: Arc<Router>, missed: Option<MissedSegments>) -> Self {
        Self { schema, collection, router, missed }
    }
}

/// Which of `segments` may hold rows matching all `filters` (true = scan it).
fn keep(schema: &SchemaRef, segments: &[&SegmentMeta], state: &dyn Session, filters: &[Expr]) -> Vec<bool> {
    let all = vec![true; segments.len()];
    let Some(predicate) = conjunction(filters.iter().cloned()) else { return all };
    let Ok(df_schema) = DFSchema::try_from(schema.as_ref().clone()) else { return all };
    let Ok(physical) = state.create_physical_expr(predicate, &df_schema) else { return all };
    let Ok(pruning) = PruningPredicate::try_new(physical, schema.clone()) else { return all };
    pruning.prune(&SegmentStats { schema, segments }).unwrap_or(all)
}

/// The filters as one SQL expression for the nodes that hold remote segments; empty if there
/// are none or they cannot be written as SQL (the root applies them anyway).
fn filter_sql(filters: &[Expr]) -> String {
    conjunction(filters.iter().cloned())
        .and_then(|e| datafusion::sql::unparser::expr_to_sql(&e).ok())
        .map(|e| e.to_string())
        .unwrap_or_default()
}

#[async_trait]
impl TableProvider for CollectionTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let metas: Vec<&SegmentMeta> = self.collection.segments().collect();
        let kept: HashSet<String> =
            metas.iter().zip(keep(&self.schema, &metas, state, filters)).filter(|(_, k)| *k).map(|(m, _)| m.id.clone()).collect();
        let mut kept_collection = self.collection.clone();
        for shard in &mut kept_collection.shards {
            shard.segments.retain(|s| kept.contains(&s.id));
        }
        // A partial answer is wanted now; a whole one may wait for segments being loaded.
        let wait = if self.missed.is_some() { std::time::Duration::ZERO } else { READY_WAIT };
        let deadline = tokio::time::Instant::now() + wait;
        let (routes, missing) = self.router.routes(&kept_collection, deadline).await;
        match &self.missed {
            Some(missed) => missed.lock().unwrap_or_else(|e| e.into_inner()).extend(missing.into_iter().map(|(m, _)| m.id)),
            None if !missing.is_empty() => {
                let error = missing_error(&self.collection.spec.name, kept.len(), &missing);
                return Err(DataFusionError::External(Box::new(error)));
            }
            None => {}
        }
        let exec = SegmentScanExec::new(
            self.router.clone(),
            &self.collection,
            &self.schema,
            routes,
            projection.cloned(),
            filter_sql(filters),
            deadline,
            self.missed.clone(),
        )?;
        Ok(Arc::new(exec))
    }
}

/// Segment statistics as DataFusion's pruning wants them: one "container" per segment.
struct SegmentStats<'a> {
    schema: &'a SchemaRef,
    segments: &'a [&'a SegmentMeta],
}

impl SegmentStats<'_> {
    /// One value per segment of `column` picked by `pick`, cast to the column's type; null
    /// where a segment has no statistic.
    fn values(&self, column: &Column, pick: impl Fn(&grape_storage::format::ColumnStats) -> Option<&StatValue>) -> Option<ArrayRef> {
        let field = self.schema.field_with_name(column.name()).ok()?;
        let scalars: Vec<ScalarValue> = self
            .segments
            .iter()
            .map(|s| {
                let stat = s.columns.iter().find(|c| &c.name == column.name()).and_then(&pick);
                match stat {
                    Some(StatValue::Int(v)) => ScalarValue::Int64(Some(*v)),
                    Some(StatValue::UInt(v)) => ScalarValue::UInt64(Some(*v)),
                    Some(StatValue::Float(v)) => ScalarValue::Float64(Some(*v)),
                    Some(StatValue::Utf8(v)) => ScalarValue::Utf8(Some(v.clone())),
                    Some(StatValue::Bool(v)) => ScalarValue::Boolean(Some(*v)),
                    None => ScalarValue::Null,
                }
            })
            .collect();
        if scalars.iter().all(ScalarValue::is_null) {
            return Some(new_null_array(field.data_type(), scalars.len()));
        }
        let first = scalars.iter().find(|s| !s.is_null())?.data_type();
        let scalars = scalars.into_iter().map(|s| if s.is_null() { ScalarValue::try_from(&first).unwrap_or(s) } else { s });
        let array = ScalarValue::iter_to_array(scalars).ok()?;
        cast(&array, field.data_type()).ok()
    }
}

impl PruningStatistics for SegmentStats<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.values(column, |c| c.min.as_ref())
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.values(column, |c| c.max.as_ref())
    }

    fn num_containers(&self) -> usize {
        self.segments.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        let counts = self.segments.iter().map(|s| s.columns.iter().find(|c| &c.name == column.name()).map(|c| c.null_count));
        Some(Arc::new(UInt64Array::from_iter(counts)))
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        Some(Arc::new(UInt64Array::from_iter_values(self.segments.iter().map(|s| s.rows))))
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{col, lit, SessionContext};
    use grape_meta::catalog::Metric;

    use super::{filter_sql, keep};
    use crate::error::ComputeError;
    use crate::sql::run_sql;
    use crate::testutil::{standalone_router, view};

    #[test]
    fn min_max_statistics_skip_segments_that_cannot_match() {
        let v = view(Metric::L2, 4);
        let schema = v.schema.clone().unwrap();
        let metas: Vec<_> = v.segments.iter().map(|s| &s.meta).collect();
        let state = SessionContext::new().state();
        assert_eq!(keep(&schema, &metas, &state, &[col("id").lt(lit(700u64))]), vec![true, false, false]);
        assert_eq!(keep(&schema, &metas, &state, &[col("id").gt_eq(lit(1400u64)), col("price").lt(lit(50.0))]), vec![false, false, true]);
        assert_eq!(keep(&schema, &metas, &state, &[col("price").gt(lit(1000.0))]), vec![false, false, false]);
        assert_eq!(keep(&schema, &metas, &state, &[]), vec![true, true, true]);
    }

    #[test]
    fn filters_are_pushed_to_other_nodes_as_sql() {
        let sql = filter_sql(&[col("id").lt(lit(700u64)), col("tag").eq(lit("tech"))]);
        assert_eq!(sql, "((id < 700) AND (\"tag\" = 'tech'))");
        // The node that holds the segment reads it back with the search filter's parser.
        let schema = crate::datagen::schema(4);
        let batch = crate::datagen::batch(4, 0, 1_000, 1);
        let mask = crate::filter::Filter::compile(&sql, &schema, crate::limits::ExprLimits::default()).unwrap().evaluate(&batch).unwrap();
        assert!(mask.true_count() > 0 && mask.true_count() < 700);
        assert_eq!(filter_sql(&[]), "");
    }

    #[tokio::test]
    async fn pruned_scans_still_return_exact_answers() {
        let (router, catalog) = standalone_router(view(Metric::L2, 4));
        for (sql, expected) in [
            ("SELECT count(*) AS n FROM t WHERE id < 700", 700i64),
            ("SELECT count(*) AS n FROM t WHERE id >= 690 AND id < 710", 20),
            ("SELECT count(*) AS n FROM t WHERE price > 1000", 0),
        ] {
            let runtime = crate::limits::SqlMemory::new().runtime(1 << 30).unwrap();
            let (_, batches, _) = run_sql(&router, &catalog, sql, false, crate::limits::ExprLimits::default(), u64::MAX, runtime).await.unwrap();
            let n = batches[0].column(0).as_any().downcast_ref::<arrow::array::Int64Array>().unwrap().value(0);
            assert_eq!(n, expected, "{sql}");
        }
    }

    #[tokio::test]
    async fn joins_that_compare_every_pair_are_bounded_before_they_run() {
        let (router, catalog) = standalone_router(view(Metric::L2, 4));
        let runtime = crate::limits::SqlMemory::new().runtime(1 << 30).unwrap();
        let limits = crate::limits::ExprLimits::default();
        let pairwise = "SELECT count(*) FROM t a JOIN t b ON a.price + b.price > 1000";
        let err = run_sql(&router, &catalog, pairwise, false, limits, 100_000, runtime.clone()).await.unwrap_err();
        assert!(matches!(err, ComputeError::InvalidArgument(_)) && err.to_string().contains("limits/max_join_pairs"), "{err}");
        // Under the bound it runs, and an equality join is not bounded at all.
        run_sql(&router, &catalog, pairwise, false, limits, u64::MAX, runtime.clone()).await.unwrap();
        run_sql(&router, &catalog, "SELECT count(*) FROM t a JOIN t b ON a.id = b.id", false, limits, 100_000, runtime).await.unwrap();
    }
}
