//! Search filters: SQL boolean expressions over payload columns, planned and evaluated by
//! DataFusion, so a search filter and a SQL `WHERE` clause mean exactly the same thing.

use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::{DataType, Schema};
use datafusion::common::DFSchema;
use datafusion::logical_expr::ExprSchemable;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;

use crate::error::ComputeError;

/// A filter compiled against a collection's schema, ready to evaluate on its segments.
#[derive(Debug, Clone)]
pub struct Filter {
    expr: Arc<dyn PhysicalExpr>,
    text: String,
}

impl Filter {
    /// Parses and plans `sql` (e.g. `category = 3 AND price < 9.5`) against `schema`.
    ///
    /// Fails with `InvalidArgument` naming the problem when the text does not parse, names an
    /// unknown column, or is not a boolean expression.
    pub fn compile(sql: &str, schema: &Schema) -> Result<Filter, ComputeError> {
        let invalid = |e: &dyn std::fmt::Display| ComputeError::InvalidArgument(format!("invalid filter `{sql}`: {e}"));
        let df_schema = DFSchema::try_from(schema.clone()).map_err(|e| invalid(&e))?;
        let ctx = SessionContext::new();
        let expr = ctx.parse_sql_expr(sql, &df_schema).map_err(|e| invalid(&e))?;
        let data_type = expr.get_type(&df_schema).map_err(|e| invalid(&e))?;
        if data_type != DataType::Boolean {
            return Err(invalid(&format!("it is of type {data_type}, not a boolean condition")));
        }
        let expr = ctx.create_physical_expr(expr, &df_schema).map_err(|e| invalid(&e))?;
        Ok(Filter { expr, text: sql.to_string() })
    }

    /// Evaluates the filter on `batch`: true where the row matches (nulls count as false).
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<BooleanArray, ComputeError> {
        let value = self.expr.evaluate(batch).map_err(|e| ComputeError::InvalidArgument(format!("filter `{}` failed: {e}", self.text)))?;
        let array =
            value.into_array(batch.num_rows()).map_err(|e| ComputeError::InvalidArgument(format!("filter `{}` failed: {e}", self.text)))?;
        let mask = array
            .as_boolean_opt()
            .ok_or_else(|| ComputeError::Internal(format!("filter `{}` returned {}", self.text, array.data_type())))?;
        Ok(mask.clone())
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
        let f = Filter::compile("category = 3 AND price < 9.5", &b.schema()).unwrap();
        assert_eq!(f.evaluate(&b).unwrap(), BooleanArray::from(vec![false, true, false]));
        let f = Filter::compile("tag IN ('a','b')", &b.schema()).unwrap();
        let m = f.evaluate(&b).unwrap();
        assert!(m.value(0) && m.value(2) && !(m.is_valid(1) && m.value(1)));
    }

    #[test]
    fn rejects_malformed_unknown_and_non_boolean() {
        let s = batch().schema();
        for bad in ["category = ", "nope = 1", "price + 1"] {
            let err = Filter::compile(bad, &s).unwrap_err();
            assert!(matches!(err, ComputeError::InvalidArgument(_)), "{bad}: {err}");
        }
    }
}
