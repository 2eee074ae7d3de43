//! The `csv` format, Flink's rules: no header line; fields in column order; RFC-4180 quoting.
//!
//! Options (Flink's names): `'csv.field-delimiter'` (default `,`; `\t` means tab),
//! `'csv.quote-character'` (default `"`), `'csv.disable-quote-character'`, `'csv.allow-comments'`
//! (lines starting with `#` are skipped), `'csv.ignore-parse-errors'`, `'csv.null-literal'` (a field
//! equal to it is NULL), `'csv.escape-character'` (none by default).
//!
//! An empty field is NULL for non-STRING columns and the empty string for STRING columns. A record
//! with a different number of fields than the table has physical columns is malformed. A record is
//! one line (quoted fields cannot contain line breaks).

use arrow::array::ArrayRef;
use arrow::error::ArrowError;
use fsql_plan::SourceSpec;

use super::builder::{Cell, ColumnBuilder, Kind, parse_text};
use super::record_decoder::{RecordDecoder, builders};
use crate::error::RuntimeError;

/// Decodes CSV lines into the physical columns of a table.
pub(crate) struct CsvDecoder {
    names: Vec<String>,
    kinds: Vec<Kind>,
    builders: Vec<ColumnBuilder>,
    staging: Vec<Cell>,
    strings: String,
    delimiter: char,
    quote: Option<char>,
    escape: Option<char>,
    allow_comments: bool,
    null_literal: Option<String>,
    /// Unescaped field text and whether each field was quoted.
    fields: Vec<(usize, usize, bool)>,
    field_text: String,
}

fn single_char(
    spec: &SourceSpec,
    key: &str,
    default: Option<char>,
) -> Result<Option<char>, RuntimeError> {
    match spec.connector.options.get(key) {
        None => Ok(default),
        Some(v) => {
            let v = match v.as_str() {
                "\\t" => "\t",
                other => other,
            };
            let mut chars = v.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Ok(Some(c)),
                _ => Err(RuntimeError::option(
                    &spec.table,
                    key,
                    format!("'{v}' must be a single character"),
                )),
            }
        }
    }
}

impl CsvDecoder {
    pub(crate) fn new(spec: &SourceSpec) -> Result<Self, RuntimeError> {
        let opts = &spec.connector.options;
        let builders = builders(spec, "csv")?;
        let disable_quote = super::option_bool(opts, &spec.table, "csv.disable-quote-character")?;
        let quote = if disable_quote {
            None
        } else {
            single_char(spec, "csv.quote-character", Some('"'))?
        };
        Ok(CsvDecoder {
            names: spec
                .physical
                .fields
                .iter()
                .map(|f| f.name.clone())
                .collect(),
            kinds: spec
                .physical
                .fields
                .iter()
                .filter_map(|f| Kind::of(&f.data_type))
                .collect(),
            staging: vec![Cell::Absent; builders.len()],
            builders,
            strings: String::new(),
            delimiter: single_char(spec, "csv.field-delimiter", Some(','))?.unwrap_or(','),
            quote,
            escape: single_char(spec, "csv.escape-character", None)?,
            allow_comments: super::option_bool(opts, &spec.table, "csv.allow-comments")?,
            null_literal: opts.get("csv.null-literal").cloned(),
            fields: Vec::new(),
            field_text: String::new(),
        })
    }

    /// Splits `line` into `self.fields` (ranges of `self.field_text`).
    fn split(&mut self, line: &str) -> Result<(), String> {
        self.fields.clear();
        self.field_text.clear();
        let mut chars = line.chars().peekable();
        loop {
            let start = self.field_text.len();
            let mut quoted = false;
            if self.quote.is_some() && chars.peek() == self.quote.as_ref() {
                quoted = true;
                chars.next();
                loop {
                    match chars.next() {
                        None => return Err("unterminated quoted field".to_string()),
                        Some(c) if Some(c) == self.escape => {
                            if let Some(next) = chars.next() {
                                self.field_text.push(next);
                            }
                        }
                        Some(c) if Some(c) == self.quote => {
                            if chars.peek() == self.quote.as_ref() {
                                chars.next();
                                self.field_text.push(c);
                            } else {
                                break;
                            }
                        }
                        Some(c) => self.field_text.push(c),
                    }
                }
                match chars.peek() {
                    None => {}
                    Some(c) if *c == self.delimiter => {}
                    Some(c) => return Err(format!("unexpected '{c}' after a quoted field")),
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == self.delimiter {
                        break;
                    }
                    chars.next();
                    if Some(c) == self.escape {
                        if let Some(next) = chars.next() {
                            self.field_text.push(next);
                        }
                    } else {
                        self.field_text.push(c);
                    }
                }
            }
            self.fields.push((start, self.field_text.len(), quoted));
            match chars.next() {
                None => return Ok(()),
                Some(_) => continue, // the delimiter
            }
        }
    }
}

impl RecordDecoder for CsvDecoder {
    fn stage(&mut self, line: &str) -> Result<bool, String> {
        if line.is_empty() || (self.allow_comments && line.starts_with('#')) {
            return Ok(false);
        }
        self.split(line)?;
        if self.fields.len() != self.builders.len() {
            return Err(format!(
                "expected {} fields, found {}",
                self.builders.len(),
                self.fields.len()
            ));
        }
        self.strings.clear();
        for (i, &(start, end, quoted)) in self.fields.iter().enumerate() {
            let text = &self.field_text[start..end];
            let kind = self.kinds[i];
            let is_null = (!quoted && self.null_literal.as_deref() == Some(text))
                || (text.is_empty() && kind != Kind::String && kind != Kind::Bytes);
            self.staging[i] = if is_null {
                Cell::Null
            } else {
                parse_text(kind, text, &mut self.strings)
                    .map_err(|e| format!("column `{}`: {e}", self.names[i]))?
            };
        }
        Ok(true)
    }

    fn stage_null(&mut self) {
        self.staging.fill(Cell::Null);
    }

    fn commit(&mut self) {
        for (builder, cell) in self.builders.iter_mut().zip(self.staging.iter()) {
            builder.append(*cell, &self.strings);
        }
    }

    fn finish(&mut self) -> Result<Vec<ArrayRef>, ArrowError> {
        self.builders
            .iter_mut()
            .map(ColumnBuilder::finish)
            .collect()
    }
}
