//! Record decoders: one record (a file line, a Kafka message's key or value) into Arrow builders.
//!
//! Decoding is two-phase: [`RecordDecoder::stage`] parses a record and keeps its values aside,
//! [`RecordDecoder::commit`] appends them. A Kafka message whose key and value are decoded by two
//! decoders is appended only when both parsed, so the columns never go out of step.
//!
//! Formats: `json` ([`super::json_decode`]), `csv` ([`super::csv_decode`]) and `raw` (Flink's: the
//! whole record as the table's single `STRING` or `BYTES` column).

use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryBuilder, StringBuilder};
use arrow::error::ArrowError;
use fsql_plan::{DataType, SourceSpec};

use super::builder::ColumnBuilder;
use crate::error::RuntimeError;

/// Decodes records into staged values, then appends them to builders.
pub(crate) trait RecordDecoder {
    /// Parses `line` and stages its values (nothing is appended), or says why it is malformed.
    /// `Ok(false)` means it holds no record (a blank line, a comment).
    fn stage(&mut self, line: &str) -> Result<bool, String>;

    /// [`RecordDecoder::stage`] for raw bytes: text formats require UTF-8.
    fn stage_bytes(&mut self, bytes: &[u8]) -> Result<bool, String> {
        match std::str::from_utf8(bytes) {
            Ok(line) => self.stage(line),
            Err(e) => Err(format!("invalid UTF-8: {e}")),
        }
    }

    /// Stages a row of NULLs (a Kafka record without a key, for the key's columns).
    fn stage_null(&mut self);

    /// Appends the staged record as one row.
    fn commit(&mut self);

    /// Stages and commits the record `bytes`.
    fn decode(&mut self, bytes: &[u8]) -> Result<bool, String> {
        let staged = self.stage_bytes(bytes)?;
        if staged {
            self.commit();
        }
        Ok(staged)
    }

    /// Builds the rows appended so far into columns (the builders start over).
    fn finish(&mut self) -> Result<Vec<ArrayRef>, ArrowError>;
}

/// Builders for every physical column, or an error naming the first column no decoder supports.
pub(crate) fn builders(
    spec: &SourceSpec,
    format: &str,
) -> Result<Vec<ColumnBuilder>, RuntimeError> {
    spec.physical
        .fields
        .iter()
        .map(|f| {
            ColumnBuilder::new(&f.data_type).ok_or_else(|| {
                RuntimeError::connector(
                    &spec.table,
                    format!(
                        "column `{}` of type {} cannot be read from {format} (not supported yet)",
                        f.name, f.data_type
                    ),
                )
            })
        })
        .collect()
}

/// The decoder of `spec`'s `'format'` option (one of `allowed`) for its physical columns, and
/// whether malformed records are skipped quietly (`'<format>.ignore-parse-errors'`). `read`
/// marks the columns the pipeline reads (`None`: all); `json` leaves the others NULL.
pub(crate) fn decoder_for(
    spec: &SourceSpec,
    allowed: &[&str],
    read: Option<&[bool]>,
) -> Result<(Box<dyn RecordDecoder>, bool), RuntimeError> {
    let opts = &spec.connector.options;
    let format = opts
        .get("format")
        .map(|f| f.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let known = allowed.join(" or ");
    match format.as_str() {
        "json" if allowed.contains(&"json") => {
            let quiet = super::option_bool(opts, &spec.table, "json.ignore-parse-errors")?;
            Ok((
                Box::new(super::json_decode::JsonDecoder::new(spec, read)?),
                quiet,
            ))
        }
        "csv" if allowed.contains(&"csv") => {
            let quiet = super::option_bool(opts, &spec.table, "csv.ignore-parse-errors")?;
            Ok((Box::new(super::csv_decode::CsvDecoder::new(spec)?), quiet))
        }
        "raw" if allowed.contains(&"raw") => Ok((Box::new(RawDecoder::new(spec)?), false)),
        "" => Err(RuntimeError::option(
            &spec.table,
            "format",
            format!("is required ({known})"),
        )),
        other => Err(RuntimeError::option(
            &spec.table,
            "format",
            format!("'{other}' is not supported ({known})"),
        )),
    }
}

/// The `raw` format: the record's bytes as one `STRING` (UTF-8 required) or `BYTES` column.
pub(crate) struct RawDecoder {
    builder: RawBuilder,
    /// The staged record; `None` stages a NULL.
    staged: Option<Vec<u8>>,
}

enum RawBuilder {
    Str(StringBuilder),
    Bytes(BinaryBuilder),
}

impl RawDecoder {
    pub(crate) fn new(spec: &SourceSpec) -> Result<RawDecoder, RuntimeError> {
        let builder = match spec.physical.fields.as_slice() {
            [f] if f.data_type == DataType::String => RawBuilder::Str(StringBuilder::new()),
            [f] if f.data_type == DataType::Bytes => RawBuilder::Bytes(BinaryBuilder::new()),
            _ => {
                return Err(RuntimeError::option(
                    &spec.table,
                    "format",
                    "'raw' needs exactly one physical column of type STRING or BYTES",
                ));
            }
        };
        Ok(RawDecoder {
            builder,
            staged: Some(Vec::new()),
        })
    }
}

impl RecordDecoder for RawDecoder {
    fn stage(&mut self, line: &str) -> Result<bool, String> {
        self.stage_bytes(line.as_bytes())
    }

    fn stage_bytes(&mut self, bytes: &[u8]) -> Result<bool, String> {
        if let RawBuilder::Str(_) = self.builder
            && let Err(e) = std::str::from_utf8(bytes)
        {
            return Err(format!("invalid UTF-8: {e}"));
        }
        let staged = self.staged.get_or_insert_with(Vec::new);
        staged.clear();
        staged.extend_from_slice(bytes);
        Ok(true)
    }

    fn stage_null(&mut self) {
        self.staged = None;
    }

    fn commit(&mut self) {
        match (&mut self.builder, &self.staged) {
            (RawBuilder::Str(b), Some(v)) => b.append_value(String::from_utf8_lossy(v)),
            (RawBuilder::Bytes(b), Some(v)) => b.append_value(v),
            (RawBuilder::Str(b), None) => b.append_null(),
            (RawBuilder::Bytes(b), None) => b.append_null(),
        }
    }

    fn finish(&mut self) -> Result<Vec<ArrayRef>, ArrowError> {
        Ok(vec![match &mut self.builder {
            RawBuilder::Str(b) => Arc::new(b.finish()) as ArrayRef,
            RawBuilder::Bytes(b) => Arc::new(b.finish()),
        }])
    }
}
