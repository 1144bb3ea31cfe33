//! Derived payload columns: typed Arrow list columns computed from the JSON `payload` column,
//! one per payload key and kind of value, such as `"payload:str:color"` (the strings the key
//! `color` reaches) or `"payload:num:price"` (its numbers).
//!
//! A derived column's name says all there is to know about it, so any node builds it from a
//! filter's or query's text alone. Columns are never stored: a segment computes them from its
//! payloads when a filter or query names them, and keeps those of indexed keys (Qdrant's
//! `create_payload_index`) beside its rows (see [`crate::segment::LoadedSegment::batch_with`]).
//! Filters on them are vectorised comparisons ([`functions`]) instead of one JSON parse per
//! row and condition.
//!
//! Each row's list holds the values Qdrant's reference semantics look at for the key (the
//! values the key path reaches, arrays flattened) that have the column's kind; a missing key,
//! a null or unparsable payload give an empty list, never null.

pub mod functions;

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, ListArray, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, Visit, Visitor};
use serde_json::Value;

use crate::error::ComputeError;
use crate::qdrant::condition::parse_datetime;
use crate::qdrant::json_path::KeyPath;

/// The JSON payload column derived columns are computed from.
pub const PAYLOAD_COLUMN: &str = "payload";

/// Prefix of every derived column's name.
pub const PREFIX: &str = "payload:";

/// Derived columns one filter or query may name: each is computed over every segment it
/// reads, so their number bounds the memory a request can make a node spend on them.
pub const MAX_DERIVED_COLUMNS: usize = 64;

/// Which values of a key a derived column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// JSON strings (`list<utf8>`).
    Str,
    /// JSON integers that fit an i64, floats such as `5.0` excluded (`list<int64>`).
    Int,
    /// Every JSON number, as f64 (`list<float64>`).
    Num,
    /// JSON booleans (`list<boolean>`).
    Bool,
    /// Strings that are datetimes Qdrant accepts, in µs since the epoch
    /// (`list<timestamp[µs, UTC]>`).
    Dt,
}

impl Kind {
    /// Every kind, in the order names list them.
    pub const ALL: [Kind; 5] = [Kind::Str, Kind::Int, Kind::Num, Kind::Bool, Kind::Dt];

    /// The kind's tag in column names.
    pub fn tag(self) -> &'static str {
        match self {
            Kind::Str => "str",
            Kind::Int => "int",
            Kind::Num => "num",
            Kind::Bool => "bool",
            Kind::Dt => "dt",
        }
    }

    /// The Arrow type of one value.
    fn item_type(self) -> DataType {
        match self {
            Kind::Str => DataType::Utf8,
            Kind::Int => DataType::Int64,
            Kind::Num => DataType::Float64,
            Kind::Bool => DataType::Boolean,
            Kind::Dt => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }
}

/// One derived column: a kind of value of one payload key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedColumn {
    /// Which values it holds.
    pub kind: Kind,
    /// The key path as written (`a.b`, `tags[]`, `"x.y".z`).
    pub key: String,
    /// The key path parsed.
    pub path: KeyPath,
}

impl DerivedColumn {
    /// The column of `kind` values of `key`; fails when the key is not a valid path.
    pub fn new(kind: Kind, key: &str) -> Result<Self, String> {
        Ok(DerivedColumn { kind, key: key.to_string(), path: KeyPath::parse(key)? })
    }

    /// Reads a column name: `None` when it does not start with [`PREFIX`], an error naming
    /// the problem when it does but is not `payload:<kind>:<key>`.
    pub fn parse(name: &str) -> Option<Result<Self, String>> {
        let rest = name.strip_prefix(PREFIX)?;
        let parsed = rest.split_once(':').ok_or_else(|| format!("derived column \"{name}\" is not payload:<kind>:<key>")).and_then(|(tag, key)| {
            let kind = Kind::ALL.into_iter().find(|k| k.tag() == tag).ok_or_else(|| {
                format!("derived column \"{name}\": unknown kind \"{tag}\" (use {})", Kind::ALL.map(Kind::tag).join(", "))
            })?;
            DerivedColumn::new(kind, key).map_err(|e| format!("derived column \"{name}\": {e}"))
        });
        Some(parsed)
    }

    /// The column's name, `payload:<kind>:<key>`.
    pub fn name(&self) -> String {
        format!("{PREFIX}{}:{}", self.kind.tag(), self.key)
    }

    /// The column's Arrow type: a list of its kind's values.
    pub fn data_type(&self) -> DataType {
        DataType::List(Arc::new(Field::new("item", self.kind.item_type(), true)))
    }

    /// The column's field.
    pub fn field(&self) -> Field {
        Field::new(self.name(), self.data_type(), false)
    }

    /// The columns a Qdrant payload index of type `index` on `key` keeps: keyword and uuid
    /// indexes the strings, integer indexes the integers and (for ranges) the numbers, float
    /// indexes the numbers, bool the booleans, datetime the datetimes. Text and geo indexes
    /// keep none.
    pub fn for_index(index: &str, key: &str) -> Vec<DerivedColumn> {
        let kinds: &[Kind] = match index {
            "keyword" | "uuid" => &[Kind::Str],
            "integer" => &[Kind::Int, Kind::Num],
            "float" => &[Kind::Num],
            "bool" => &[Kind::Bool],
            "datetime" => &[Kind::Dt],
            _ => &[],
        };
        kinds.iter().filter_map(|k| DerivedColumn::new(*k, key).ok()).collect()
    }
}

/// The values of one column, gathered row by row.
enum Gathered {
    Str(Vec<String>),
    Int(Vec<i64>),
    Num(Vec<f64>),
    Bool(Vec<bool>),
    Dt(Vec<i64>),
}

impl Gathered {
    fn new(kind: Kind) -> Self {
        match kind {
            Kind::Str => Gathered::Str(Vec::new()),
            Kind::Int => Gathered::Int(Vec::new()),
            Kind::Num => Gathered::Num(Vec::new()),
            Kind::Bool => Gathered::Bool(Vec::new()),
            Kind::Dt => Gathered::Dt(Vec::new()),
        }
    }

    /// Adds `v` if it is of this kind.
    fn push(&mut self, v: &Value) {
        match (self, v) {
            (Gathered::Str(out), Value::String(s)) => out.push(s.clone()),
            (Gathered::Int(out), Value::Number(n)) if !n.is_f64() => out.extend(n.as_i64()),
            (Gathered::Num(out), Value::Number(n)) => out.extend(n.as_f64()),
            (Gathered::Bool(out), Value::Bool(b)) => out.push(*b),
            (Gathered::Dt(out), Value::String(s)) => out.extend(parse_datetime(s)),
            _ => {}
        }
    }

    fn len(&self) -> usize {
        match self {
            Gathered::Str(v) => v.len(),
            Gathered::Int(v) | Gathered::Dt(v) => v.len(),
            Gathered::Num(v) => v.len(),
            Gathered::Bool(v) => v.len(),
        }
    }

    fn into_array(self) -> ArrayRef {
        match self {
            Gathered::Str(v) => Arc::new(StringArray::from(v)),
            Gathered::Int(v) => Arc::new(Int64Array::from(v)),
            Gathered::Num(v) => Arc::new(Float64Array::from(v)),
            Gathered::Bool(v) => Arc::new(BooleanArray::from(v)),
            Gathered::Dt(v) => Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC")),
        }
    }
}

/// Computes `columns` from a payload column (JSON text, null meaning an empty payload),
/// parsing each payload once for all of them.
pub fn extract(payloads: &ArrayRef, columns: &[DerivedColumn]) -> Result<Vec<ArrayRef>, ComputeError> {
    let payloads = arrow::compute::cast(payloads, &DataType::Utf8)?;
    let payloads = payloads.as_string::<i32>();
    let mut gathered: Vec<Gathered> = columns.iter().map(|c| Gathered::new(c.kind)).collect();
    let mut offsets: Vec<Vec<i32>> = columns.iter().map(|_| Vec::with_capacity(payloads.len() + 1)).collect();
    offsets.iter_mut().for_each(|o| o.push(0));
    for row in 0..payloads.len() {
        let parsed = payloads.is_valid(row).then(|| serde_json::from_str::<Value>(payloads.value(row)).ok()).flatten();
        for ((column, values), offsets) in columns.iter().zip(&mut gathered).zip(&mut offsets) {
            if let Some(found) = parsed.as_ref().and_then(|p| column.path.values(p, true)) {
                found.into_iter().for_each(|v| values.push(v));
            }
            let end = i32::try_from(values.len())
                .map_err(|_| ComputeError::InvalidArgument(format!("column {} has more than 2^31 values", column.name())))?;
            offsets.push(end);
        }
    }
    columns
        .iter()
        .zip(gathered)
        .zip(offsets)
        .map(|((column, values), offsets)| {
            debug_assert_eq!(*offsets.last().unwrap_or(&0) as usize, values.len());
            let item = Arc::new(Field::new("item", column.kind.item_type(), true));
            let list = ListArray::try_new(item, OffsetBuffer::new(offsets.into()), values.into_array(), None)?;
            Ok(Arc::new(list) as ArrayRef)
        })
        .collect()
}

/// Whether `schema` can have derived columns: it has a utf8 `payload` column.
fn has_payload(schema: &Schema) -> bool {
    schema.field_with_name(PAYLOAD_COLUMN).is_ok_and(|f| f.data_type() == &DataType::Utf8)
}

/// `base` with the derived columns among `names` appended (in order, once each), and those
/// columns. A name that is a column of `base` already is left alone (a real column is never
/// shadowed), as is every name when `base` has no payload column; a malformed derived name,
/// or more than [`MAX_DERIVED_COLUMNS`] of them, is an `InvalidArgument` error.
pub fn extend_schema<'a>(base: &Schema, names: impl IntoIterator<Item = &'a str>) -> Result<(Schema, Vec<DerivedColumn>), ComputeError> {
    let mut derived: Vec<DerivedColumn> = Vec::new();
    if has_payload(base) {
        for name in names {
            if base.field_with_name(name).is_ok() || derived.iter().any(|d| d.name() == name) {
                continue;
            }
            if let Some(column) = DerivedColumn::parse(name) {
                derived.push(column.map_err(ComputeError::InvalidArgument)?);
                if derived.len() > MAX_DERIVED_COLUMNS {
                    return Err(ComputeError::InvalidArgument(format!("more than {MAX_DERIVED_COLUMNS} derived payload columns in one request")));
                }
            }
        }
    }
    if derived.is_empty() {
        return Ok((base.clone(), derived));
    }
    let fields = base.fields().iter().cloned().chain(derived.iter().map(|d| Arc::new(d.field())));
    Ok((Schema::new_with_metadata(fields.collect::<Vec<_>>(), base.metadata().clone()), derived))
}

/// `batch` with `columns` appended, computed from its payload column (see [`extract`]).
pub fn append(batch: &RecordBatch, columns: &[DerivedColumn]) -> Result<RecordBatch, ComputeError> {
    if columns.is_empty() {
        return Ok(batch.clone());
    }
    let payloads = batch
        .column_by_name(PAYLOAD_COLUMN)
        .ok_or_else(|| ComputeError::InvalidArgument(format!("derived columns need a `{PAYLOAD_COLUMN}` column")))?;
    let computed = extract(payloads, columns)?;
    with_columns(batch, columns, computed)
}

/// `batch` with the derived `columns` (whose arrays are `arrays`) appended.
pub fn with_columns(batch: &RecordBatch, columns: &[DerivedColumn], arrays: Vec<ArrayRef>) -> Result<RecordBatch, ComputeError> {
    let schema = batch.schema();
    let fields = schema.fields().iter().cloned().chain(columns.iter().map(|d| Arc::new(d.field())));
    let schema = Schema::new_with_metadata(fields.collect::<Vec<_>>(), schema.metadata().clone());
    let arrays = batch.columns().iter().cloned().chain(arrays).collect();
    Ok(RecordBatch::try_new(Arc::new(schema), arrays)?)
}

/// The identifiers an expression names that could be derived columns (start with
/// [`PREFIX`]), once each, in order of appearance.
pub fn names_in(node: &impl Visit) -> Vec<String> {
    let mut names = Names::default();
    let _ = node.visit(&mut names);
    names.0
}

/// Collects the identifiers [`names_in`] returns.
#[derive(Default)]
struct Names(Vec<String>, HashSet<String>);

impl Visitor for Names {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &SqlExpr) -> std::ops::ControlFlow<()> {
        let idents = match expr {
            SqlExpr::Identifier(ident) => std::slice::from_ref(ident),
            SqlExpr::CompoundIdentifier(parts) => parts.as_slice(),
            _ => &[],
        };
        for ident in idents.iter().filter(|i| i.value.starts_with(PREFIX)) {
            if self.1.insert(ident.value.clone()) {
                self.0.push(ident.value.clone());
            }
        }
        std::ops::ControlFlow::Continue(())
    }
}

/// The derived column names in a SQL boolean expression's text; none when it does not parse
/// (planning it reports that).
pub fn names_in_sql(text: &str) -> Vec<String> {
    use datafusion::sql::sqlparser::{dialect::GenericDialect, parser::Parser};
    match Parser::new(&GenericDialect {}).try_with_sql(text).and_then(|mut p| p.parse_expr()) {
        Ok(expr) => names_in(&expr),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qdrant::condition::Filter;
    use serde_json::json;

    fn payload_column(payloads: &[Option<Value>]) -> ArrayRef {
        Arc::new(StringArray::from(payloads.iter().map(|p| p.as_ref().map(|v| v.to_string())).collect::<Vec<_>>()))
    }

    #[test]
    fn names_round_trip_and_refuse_malformed() {
        for key in ["color", "a.b", "arr[].b", "\"x.y\".z", "ключ", "it's"] {
            for kind in Kind::ALL {
                let c = DerivedColumn::new(kind, key).unwrap();
                assert_eq!(DerivedColumn::parse(&c.name()).unwrap().unwrap(), c);
            }
        }
        assert!(DerivedColumn::parse("price").is_none());
        for bad in ["payload:color", "payload:text:color", "payload:str:", "payload:str:a..b"] {
            assert!(DerivedColumn::parse(bad).unwrap().is_err(), "{bad}");
        }
    }

    #[test]
    fn extracted_values_are_what_the_reference_looks_at() {
        let payloads = vec![
            Some(json!({"n": 5, "c": "red", "b": true, "t": "2024-01-02T03:04:05Z", "a": {"b": [1, 2.5, "x"]}})),
            Some(json!({"n": 5.0, "c": ["red", "blue", 3], "arr": [{"b": 7}, {"b": [8, 9]}, {"c": 1}]})),
            Some(json!({"n": 18446744073709551615u64, "c": null, "t": ["2024-01-02", "not a date"]})),
            Some(json!({"n": -3, "b": [false, true]})),
            None,
        ];
        let mut column = payload_column(&payloads);
        // One payload that is not JSON at all.
        column = arrow::compute::concat(&[column.as_ref(), &StringArray::from(vec!["{nope"])]).unwrap();
        let cols: Vec<DerivedColumn> = [
            (Kind::Int, "n"),
            (Kind::Num, "n"),
            (Kind::Str, "c"),
            (Kind::Bool, "b"),
            (Kind::Dt, "t"),
            (Kind::Num, "a.b"),
            (Kind::Int, "arr[].b"),
        ]
        .iter()
        .map(|(k, key)| DerivedColumn::new(*k, key).unwrap())
        .collect();
        let arrays = extract(&column, &cols).unwrap();
        let row = |c: usize, r: usize| -> ArrayRef { arrays[c].as_list::<i32>().value(r) };
        assert_eq!(row(0, 0).as_primitive::<arrow::datatypes::Int64Type>().values().to_vec(), vec![5]);
        assert_eq!(row(0, 1).len(), 0, "5.0 is not an integer");
        assert_eq!(row(0, 2).len(), 0, "beyond i64");
        assert_eq!(row(0, 3).as_primitive::<arrow::datatypes::Int64Type>().values().to_vec(), vec![-3]);
        assert_eq!(row(1, 1).as_primitive::<arrow::datatypes::Float64Type>().values().to_vec(), vec![5.0]);
        assert_eq!(row(1, 2).as_primitive::<arrow::datatypes::Float64Type>().values().to_vec(), vec![18446744073709551615u64 as f64]);
        let strs = row(2, 1);
        assert_eq!(strs.as_string::<i32>().iter().flatten().collect::<Vec<_>>(), vec!["red", "blue"]);
        assert_eq!(row(3, 3).as_boolean().iter().flatten().collect::<Vec<_>>(), vec![false, true]);
        assert_eq!(row(4, 2).len(), 1, "only the parsable date");
        assert_eq!(row(5, 0).as_primitive::<arrow::datatypes::Float64Type>().values().to_vec(), vec![1.0, 2.5]);
        assert_eq!(row(6, 1).as_primitive::<arrow::datatypes::Int64Type>().values().to_vec(), vec![7, 8, 9]);
        for c in 0..cols.len() {
            assert_eq!(arrays[c].null_count(), 0, "never null");
            assert_eq!(arrays[c].as_list::<i32>().value(4).len(), 0, "null payload");
            assert_eq!(arrays[c].as_list::<i32>().value(5).len(), 0, "invalid JSON");
            assert_eq!(arrays[c].data_type(), &cols[c].data_type());
        }
        // The reference agrees on which rows have a value.
        let reference = Filter::parse(&json!({"must": [{"key": "n", "range": {"gte": -100}}]})).unwrap().unwrap();
        for (r, p) in payloads.iter().enumerate() {
            let has = row(1, r).len() > 0;
            assert_eq!(has, reference.matches(None, p.as_ref().unwrap_or(&json!({}))), "row {r}");
        }
    }

    #[test]
    fn schemas_gain_only_named_derived_columns_and_never_shadow() {
        let base = Schema::new(vec![Field::new("id", DataType::Utf8, false), Field::new(PAYLOAD_COLUMN, DataType::Utf8, true)]);
        let (schema, derived) = extend_schema(&base, ["payload:str:c", "id", "payload:str:c", "payload:num:n"]).unwrap();
        assert_eq!(derived.len(), 2);
        assert_eq!(schema.fields().len(), 4);
        assert!(extend_schema(&base, ["payload:xx:c"]).is_err());
        let many: Vec<String> = (0..=MAX_DERIVED_COLUMNS).map(|i| format!("payload:str:k{i}")).collect();
        assert!(extend_schema(&base, many.iter().map(String::as_str)).is_err(), "one request names at most {MAX_DERIVED_COLUMNS}");
        let real = Schema::new(vec![Field::new(PAYLOAD_COLUMN, DataType::Utf8, true), Field::new("payload:str:c", DataType::Int64, true)]);
        assert!(extend_schema(&real, ["payload:str:c"]).unwrap().1.is_empty());
        let no_payload = Schema::new(vec![Field::new("id", DataType::Utf8, false)]);
        assert!(extend_schema(&no_payload, ["payload:str:c"]).unwrap().1.is_empty());
        assert_eq!(names_in_sql("payload_any(\"payload:str:c\", 'x') AND \"payload:num:a.b\" IS NOT NULL OR price > 1"), vec![
            "payload:str:c".to_string(),
            "payload:num:a.b".to_string()
        ]);
    }
}
