//! Printing results: aligned tables for people, one JSON document for programs.

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use serde_json::Value;

use super::OutputFormat;
use crate::error::CliError;

/// Rows as JSON objects keyed by column name.
pub fn rows_json(batches: &[RecordBatch]) -> Result<Value, CliError> {
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    writer.write_batches(&refs)?;
    writer.finish()?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    serde_json::from_slice(&bytes).map_err(|e| CliError::Server(format!("server rows are not valid JSON: {e}")))
}

/// Prints result rows in the chosen format.
pub fn print_rows(format: OutputFormat, batches: &[RecordBatch]) -> Result<(), CliError> {
    match format {
        OutputFormat::Json => println!("{}", rows_json(batches)?),
        OutputFormat::Table => {
            println!("{}", pretty_format_batches(batches)?);
            let n: usize = batches.iter().map(|b| b.num_rows()).sum();
            println!("({n} row{})", if n == 1 { "" } else { "s" });
        }
    }
    Ok(())
}

/// Prints a JSON object: as-is for `json`, as `key: value` lines for `table`.
pub fn print_object(format: OutputFormat, value: &Value) {
    match (format, value) {
        (OutputFormat::Table, Value::Object(map)) => {
            let width = map.keys().map(|k| k.len()).max().unwrap_or(0);
            for (k, v) in map {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                println!("{k:width$}  {text}");
            }
        }
        _ => println!("{value}"),
    }
}
