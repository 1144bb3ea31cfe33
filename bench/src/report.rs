//! Printing a result table and writing it as JSON.

use std::path::Path;

use serde_json::{json, Value};

/// One row of a result table: a metric, its value and its unit.
pub struct Row {
    /// What was measured.
    pub metric: String,
    /// The figure.
    pub value: f64,
    /// Its unit.
    pub unit: &'static str,
}

impl Row {
    /// A row.
    pub fn new(metric: impl Into<String>, value: f64, unit: &'static str) -> Row {
        Row { metric: metric.into(), value, unit }
    }
}

/// Prints `rows` as a table under `title` and writes them with `params` to `out` as JSON.
pub fn report(title: &str, params: Value, rows: &[Row], out: &Path) -> std::io::Result<()> {
    println!("\n{title}");
    println!("{params}");
    let width = rows.iter().map(|r| r.metric.len()).max().unwrap_or(6).max(6);
    println!("{:<width$}  {:>14}  unit", "metric", "value");
    println!("{}", "-".repeat(width + 24));
    for r in rows {
        println!("{:<width$}  {:>14.3}  {}", r.metric, r.value, r.unit);
    }
    let doc = json!({
        "benchmark": title,
        "params": params,
        "results": rows.iter().map(|r| json!({ "metric": r.metric, "value": r.value, "unit": r.unit })).collect::<Vec<_>>(),
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, serde_json::to_string_pretty(&doc)?)?;
    println!("\nwritten to {}", out.display());
    Ok(())
}

/// The `p` quantile (0..=1) of ascending `sorted` values (nearest rank); 0 if empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
