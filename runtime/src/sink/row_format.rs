//! How sinks encode a row: `json` (one object, keys = column names), `csv` (Flink-style quoting,
//! NULL as an empty field, `csv.field-delimiter`) or `raw` (the single column's text, Kafka only).

use std::collections::BTreeMap;

use arrow::array::{Array, RecordBatch};

use crate::error::RuntimeError;
use crate::format::{Style, csv_row, json_row, render_value};

/// A row encoding chosen by a sink's `'format'` option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RowFormat {
    Json,
    Csv(char),
    Raw,
}

impl RowFormat {
    /// Reads the format named by option `format_key` (one of `allowed`) and its options under
    /// `prefix` (`csv.field-delimiter`, or `key.csv.field-delimiter` for `prefix` = `key.`).
    pub(crate) fn from_options(
        table: &str,
        options: &BTreeMap<String, String>,
        format_key: &str,
        prefix: &str,
        allowed: &[&str],
    ) -> Result<RowFormat, RuntimeError> {
        let known = allowed.join(" or ");
        let name = options
            .get(format_key)
            .map(|f| f.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                RuntimeError::option(table, format_key, format!("is required ({known})"))
            })?;
        if !allowed.contains(&name.as_str()) {
            return Err(RuntimeError::option(
                table,
                format_key,
                format!("'{name}' is not supported ({known})"),
            ));
        }
        Ok(match name.as_str() {
            "csv" => {
                let key = format!("{prefix}csv.field-delimiter");
                let d = options.get(&key).map(String::as_str).unwrap_or(",");
                let d = if d == "\\t" { "\t" } else { d };
                let mut chars = d.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => RowFormat::Csv(c),
                    _ => {
                        return Err(RuntimeError::option(
                            table,
                            &key,
                            "must be a single character",
                        ));
                    }
                }
            }
            "raw" => RowFormat::Raw,
            _ => RowFormat::Json,
        })
    }

    /// Appends row `row` of `batch` to `out` (no line break); `scratch` is reused between calls.
    pub(crate) fn write(
        self,
        batch: &RecordBatch,
        row: usize,
        scratch: &mut String,
        out: &mut String,
    ) {
        match self {
            RowFormat::Json => json_row(batch, row, out),
            RowFormat::Csv(d) => csv_row(batch, row, d, scratch, out),
            RowFormat::Raw => {
                if let Some(c) = batch.columns().first()
                    && !c.is_null(row)
                {
                    render_value(c.as_ref(), row, Style::Csv, out);
                }
            }
        }
    }
}
