//! A collection as a DataFusion table, served from its in-memory segments.
//!
//! Each segment is one partition. Filters are accepted as `Inexact`: the scan uses them only
//! to skip segments whose min/max statistics prove that no row can match (a
//! [`PruningPredicate`]), and DataFusion still applies every filter to the rows that remain.
//! Answering `Exact` here would be wrong, since a kept segment holds non-matching rows too.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{new_null_array, ArrayRef, BooleanArray, UInt64Array};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, DFSchema, Result, ScalarValue};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_optimizer::pruning::PruningPredicate;
use datafusion::physical_plan::ExecutionPlan;
use grape_storage::format::StatValue;

use crate::segment::SegmentRef;

/// One collection's loaded segments as a table.
#[derive(Debug)]
pub struct CollectionTable {
    schema: SchemaRef,
    segments: Vec<SegmentRef>,
}

impl CollectionTable {
    /// A table over `segments`, all of which have `schema`.
    pub fn new(schema: SchemaRef, segments: Vec<SegmentRef>) -> Self {
        Self { schema, segments }
    }

    /// Which segments may hold rows matching all `filters` (true = scan it).
    fn keep(&self, state: &dyn Session, filters: &[Expr]) -> Vec<bool> {
        let all = vec![true; self.segments.len()];
        let Some(predicate) = conjunction(filters.iter().cloned()) else { return all };
        let Ok(df_schema) = DFSchema::try_from(self.schema.as_ref().clone()) else { return all };
        let Ok(physical) = state.create_physical_expr(predicate, &df_schema) else { return all };
        let Ok(pruning) = PruningPredicate::try_new(physical, self.schema.clone()) else { return all };
        pruning.prune(&SegmentStats { table: self }).unwrap_or(all)
    }
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
        let keep = self.keep(state, filters);
        let partitions: Vec<Vec<_>> = self.segments.iter().zip(keep).filter(|(_, k)| *k).map(|(s, _)| vec![s.batch.clone()]).collect();
        Ok(MemorySourceConfig::try_new_exec(&partitions, self.schema.clone(), projection.cloned())?)
    }
}

/// Segment statistics as DataFusion's pruning wants them: one "container" per segment.
struct SegmentStats<'a> {
    table: &'a CollectionTable,
}

impl SegmentStats<'_> {
    /// One value per segment of `column` picked by `pick`, cast to the column's type; null
    /// where a segment has no statistic.
    fn values(&self, column: &Column, pick: impl Fn(&grape_storage::format::ColumnStats) -> Option<&StatValue>) -> Option<ArrayRef> {
        let field = self.table.schema.field_with_name(column.name()).ok()?;
        let scalars: Vec<ScalarValue> = self
            .table
            .segments
            .iter()
            .map(|s| {
                let stat = s.meta.columns.iter().find(|c| &c.name == column.name()).and_then(&pick);
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
        self.table.segments.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        let counts = self.table.segments.iter().map(|s| s.meta.columns.iter().find(|c| &c.name == column.name()).map(|c| c.null_count));
        Some(Arc::new(UInt64Array::from_iter(counts)))
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        Some(Arc::new(UInt64Array::from_iter_values(self.table.segments.iter().map(|s| s.rows() as u64))))
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::prelude::{col, lit, SessionContext};
    use grape_meta::catalog::Metric;

    use super::CollectionTable;
    use crate::sql::run_sql;
    use crate::testutil::view;

    #[test]
    fn min_max_statistics_skip_segments_that_cannot_match() {
        let v = view(Metric::L2, 4);
        let table = CollectionTable::new(v.schema.clone().unwrap(), v.segments.clone());
        let state = SessionContext::new().state();
        assert_eq!(table.keep(&state, &[col("id").lt(lit(700u64))]), vec![true, false, false]);
        assert_eq!(table.keep(&state, &[col("id").gt_eq(lit(1400u64)), col("price").lt(lit(50.0))]), vec![false, false, true]);
        assert_eq!(table.keep(&state, &[col("price").gt(lit(1000.0))]), vec![false, false, false]);
        assert_eq!(table.keep(&state, &[]), vec![true, true, true]);
    }

    #[tokio::test]
    async fn pruned_scans_still_return_exact_answers() {
        let v = Arc::new(view(Metric::L2, 4));
        for (sql, expected) in [
            ("SELECT count(*) AS n FROM t WHERE id < 700", 700i64),
            ("SELECT count(*) AS n FROM t WHERE id >= 690 AND id < 710", 20),
            ("SELECT count(*) AS n FROM t WHERE price > 1000", 0),
        ] {
            let (_, batches) = run_sql(&[v.clone()], sql).await.unwrap();
            let n = batches[0].column(0).as_any().downcast_ref::<arrow::array::Int64Array>().unwrap().value(0);
            assert_eq!(n, expected, "{sql}");
        }
    }
}
