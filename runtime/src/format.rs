//! Rendering rows and values as text, shared by the print and filesystem sinks, `CAST(.. AS
//! STRING)` and the CLI's query output (`jsonl`, `csv`, `table`).
//!
//! Value rendering by [`Style`]:
//!
//! | type | `Sql` (CAST, table) | `Json` | `Csv` | `Java` (print sink) |
//! |---|---|---|---|---|
//! | BOOLEAN | `TRUE` | `true` | `true` | `true` |
//! | DOUBLE | `1.0E10` (Java) | `1.0E10` (NaN/Infinity as strings) | `1.0E10` | `1.0E10` |
//! | DECIMAL(4,2) | `12.50` | `"12.50"` (a string) | `12.50` | `12.50` |
//! | TIMESTAMP(3) | `2024-01-01 10:00:00.000` | `"2024-01-01 10:00:00.000"` | same | `2024-01-01T10:00` (`LocalDateTime`) |
//! | TIMESTAMP_LTZ(3) | `2024-01-01 10:00:00.000` (UTC) | same, quoted | same | `2024-01-01T10:00:00Z` (`Instant`) |
//! | NULL | `NULL` | `null` | empty field | `null` |

use std::fmt::Write as _;
use std::io::{self, Write};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType as ArrowType, Date32Type, Decimal128Type, DurationMicrosecondType,
    DurationMillisecondType, DurationNanosecondType, DurationSecondType, Float32Type, Float64Type,
    Int8Type, Int16Type, Int32Type, Int64Type, IntervalUnit, IntervalYearMonthType,
    Time32MillisecondType, Time32SecondType, Time64MicrosecondType, Time64NanosecondType, TimeUnit,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};

use crate::operator::RowKind;
use crate::text;

/// How values are spelled (see the module table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Flink's SQL text form (`CAST(x AS STRING)`), also used by the `table` query output.
    Sql,
    /// A JSON value (strings quoted and escaped).
    Json,
    /// Raw text for a CSV field (the writer adds quotes where needed).
    Csv,
    /// Java's `toString` of Flink's external types: what Flink's `print` connector shows.
    Java,
}

/// Appends the value at `row` of `array` in `style`.
pub fn render_value(array: &dyn Array, row: usize, style: Style, out: &mut String) {
    if array.is_null(row) {
        out.push_str(match style {
            Style::Sql => "NULL",
            Style::Json | Style::Java => "null",
            Style::Csv => "",
        });
        return;
    }
    let quoted = style == Style::Json;
    macro_rules! int {
        ($t:ty) => {{
            let _ = write!(out, "{}", array.as_primitive::<$t>().value(row));
        }};
    }
    match array.data_type() {
        ArrowType::Null => out.push_str(if style == Style::Csv { "" } else { "null" }),
        ArrowType::Boolean => {
            let v = array.as_boolean().value(row);
            out.push_str(match (style, v) {
                (Style::Sql, true) => "TRUE",
                (Style::Sql, false) => "FALSE",
                (_, true) => "true",
                (_, false) => "false",
            });
        }
        ArrowType::Int8 => int!(Int8Type),
        ArrowType::Int16 => int!(Int16Type),
        ArrowType::Int32 => int!(Int32Type),
        ArrowType::Int64 => int!(Int64Type),
        ArrowType::UInt8 => int!(UInt8Type),
        ArrowType::UInt16 => int!(UInt16Type),
        ArrowType::UInt32 => int!(UInt32Type),
        ArrowType::UInt64 => int!(UInt64Type),
        ArrowType::Float32 | ArrowType::Float64 => {
            let (v, single) = match array.data_type() {
                ArrowType::Float32 => (
                    f64::from(array.as_primitive::<Float32Type>().value(row)),
                    true,
                ),
                _ => (array.as_primitive::<Float64Type>().value(row), false),
            };
            let non_finite_json = quoted && !v.is_finite();
            if non_finite_json {
                out.push('"');
            }
            if single {
                text::format_java_float(v as f32, out);
            } else {
                text::format_java_double(v, out);
            }
            if non_finite_json {
                out.push('"');
            }
        }
        ArrowType::Decimal128(_, scale) => {
            let v = array.as_primitive::<Decimal128Type>().value(row);
            if quoted {
                out.push('"');
            }
            text::format_decimal(v, *scale, out);
            if quoted {
                out.push('"');
            }
        }
        ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View => {
            let s = match array.data_type() {
                ArrowType::Utf8 => array.as_string::<i32>().value(row),
                ArrowType::LargeUtf8 => array.as_string::<i64>().value(row),
                _ => array.as_string_view().value(row),
            };
            if quoted {
                text::push_json_string(s, out)
            } else {
                out.push_str(s)
            }
        }
        ArrowType::Binary | ArrowType::LargeBinary | ArrowType::BinaryView => {
            let b: &[u8] = match array.data_type() {
                ArrowType::Binary => array.as_binary::<i32>().value(row),
                ArrowType::LargeBinary => array.as_binary::<i64>().value(row),
                _ => array.as_binary_view().value(row),
            };
            match style {
                Style::Json => {
                    out.push('"');
                    text::push_base64(b, out);
                    out.push('"');
                }
                Style::Csv => text::push_base64(b, out),
                Style::Sql => out.push_str(&String::from_utf8_lossy(b)),
                Style::Java => {
                    out.push('[');
                    for (i, byte) in b.iter().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        let _ = write!(out, "{}", *byte as i8);
                    }
                    out.push(']');
                }
            }
        }
        ArrowType::Date32 => {
            let days = array.as_primitive::<Date32Type>().value(row);
            wrap_quoted(quoted, out, |out| text::format_date(i64::from(days), out));
        }
        ArrowType::Time32(_) | ArrowType::Time64(_) => {
            let ms = match array.data_type() {
                ArrowType::Time32(TimeUnit::Second) => {
                    i64::from(array.as_primitive::<Time32SecondType>().value(row)) * 1000
                }
                ArrowType::Time32(_) => {
                    i64::from(array.as_primitive::<Time32MillisecondType>().value(row))
                }
                ArrowType::Time64(TimeUnit::Microsecond) => {
                    array.as_primitive::<Time64MicrosecondType>().value(row) / 1000
                }
                _ => array.as_primitive::<Time64NanosecondType>().value(row) / 1_000_000,
            };
            wrap_quoted(quoted, out, |out| {
                if style == Style::Java {
                    text::format_java_time(ms, out)
                } else {
                    text::format_time(ms, out)
                }
            });
        }
        ArrowType::Timestamp(unit, tz) => {
            let v = crate::eval::timestamp_raw(array, row);
            wrap_quoted(quoted, out, |out| match (style, tz) {
                (Style::Java, None) => text::format_java_local_date_time(v, *unit, out),
                (Style::Java, Some(_)) => text::format_java_instant(v, *unit, out),
                _ => text::format_timestamp(v, *unit, text::unit_digits(*unit), out),
            });
        }
        ArrowType::Duration(unit) => {
            let raw = match unit {
                TimeUnit::Second => array.as_primitive::<DurationSecondType>().value(row) * 1000,
                TimeUnit::Millisecond => array.as_primitive::<DurationMillisecondType>().value(row),
                TimeUnit::Microsecond => {
                    array.as_primitive::<DurationMicrosecondType>().value(row) / 1000
                }
                TimeUnit::Nanosecond => {
                    array.as_primitive::<DurationNanosecondType>().value(row) / 1_000_000
                }
            };
            wrap_quoted(quoted, out, |out| {
                if style == Style::Java {
                    text::format_java_duration(raw, out)
                } else {
                    sql_interval_day_time(raw, out)
                }
            });
        }
        ArrowType::Interval(IntervalUnit::YearMonth) => {
            let months = array.as_primitive::<IntervalYearMonthType>().value(row);
            wrap_quoted(quoted, out, |out| {
                if style == Style::Java {
                    text::format_java_period(months, out)
                } else {
                    let sign = if months < 0 { '-' } else { '+' };
                    let m = months.unsigned_abs();
                    let _ = write!(out, "{sign}{}-{:02}", m / 12, m % 12);
                }
            });
        }
        ArrowType::List(_) | ArrowType::LargeList(_) => {
            let values = match array.data_type() {
                ArrowType::List(_) => array.as_list::<i32>().value(row),
                _ => array.as_list::<i64>().value(row),
            };
            let inner = if style == Style::Csv {
                Style::Sql
            } else {
                style
            };
            out.push('[');
            for i in 0..values.len() {
                if i > 0 {
                    out.push_str(if quoted { "," } else { ", " });
                }
                render_value(values.as_ref(), i, inner, out);
            }
            out.push(']');
        }
        ArrowType::Struct(fields) => {
            let s = array.as_struct();
            match style {
                Style::Json => {
                    out.push('{');
                    for (i, f) in fields.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        text::push_json_string(f.name(), out);
                        out.push(':');
                        render_value(s.column(i).as_ref(), row, Style::Json, out);
                    }
                    out.push('}');
                }
                _ => {
                    out.push_str(if style == Style::Java { "+I[" } else { "(" });
                    for i in 0..fields.len() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        let inner = if style == Style::Csv {
                            Style::Sql
                        } else {
                            style
                        };
                        render_value(s.column(i).as_ref(), row, inner, out);
                    }
                    out.push_str(if style == Style::Java { "]" } else { ")" });
                }
            }
        }
        ArrowType::Map(..) => {
            let entries = array.as_map().value(row);
            out.push('{');
            for i in 0..entries.len() {
                if i > 0 {
                    out.push_str(if quoted { "," } else { ", " });
                }
                if quoted {
                    let mut key = String::new();
                    render_value(entries.column(0).as_ref(), i, Style::Sql, &mut key);
                    text::push_json_string(&key, out);
                    out.push(':');
                    render_value(entries.column(1).as_ref(), i, Style::Json, out);
                } else {
                    let inner = if style == Style::Csv {
                        Style::Sql
                    } else {
                        style
                    };
                    render_value(entries.column(0).as_ref(), i, inner, out);
                    out.push('=');
                    render_value(entries.column(1).as_ref(), i, inner, out);
                }
            }
            out.push('}');
        }
        other => {
            // Types fsql never produces: fall back to Arrow's display.
            let formatter =
                arrow::util::display::ArrayFormatter::try_new(array, &Default::default());
            match formatter {
                Ok(f) => wrap_quoted(quoted, out, |out| {
                    let _ = write!(out, "{}", f.value(row));
                }),
                Err(_) => {
                    let _ = write!(out, "<{other}>");
                }
            }
        }
    }
}

fn wrap_quoted(quoted: bool, out: &mut String, f: impl FnOnce(&mut String)) {
    if quoted {
        out.push('"');
    }
    f(out);
    if quoted {
        out.push('"');
    }
}

/// Flink's text form of `INTERVAL DAY TO SECOND`: `+1 02:03:04.005`.
fn sql_interval_day_time(ms: i64, out: &mut String) {
    let sign = if ms < 0 { '-' } else { '+' };
    let ms = ms.unsigned_abs();
    let _ = write!(
        out,
        "{sign}{} {:02}:{:02}:{:02}.{:03}",
        ms / 86_400_000,
        ms / 3_600_000 % 24,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    );
}

/// Appends row `row` of `batch` as one JSON object (keys = column names, in order), no newline.
pub fn json_row(batch: &RecordBatch, row: usize, out: &mut String) {
    out.push('{');
    for (i, field) in batch.schema_ref().fields().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        text::push_json_string(field.name(), out);
        out.push(':');
        render_value(batch.column(i).as_ref(), row, Style::Json, out);
    }
    out.push('}');
}

/// Appends `field` to `out` as a CSV field, quoting it when it contains the delimiter, a quote or a
/// line break.
pub fn push_csv_field(field: &str, delimiter: char, out: &mut String) {
    if field.contains([delimiter, '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// Appends row `row` of `batch` as one CSV record (no header, NULL as an empty field), no newline.
pub fn csv_row(
    batch: &RecordBatch,
    row: usize,
    delimiter: char,
    scratch: &mut String,
    out: &mut String,
) {
    for i in 0..batch.num_columns() {
        if i > 0 {
            out.push(delimiter);
        }
        scratch.clear();
        render_value(batch.column(i).as_ref(), row, Style::Csv, scratch);
        push_csv_field(scratch, delimiter, out);
    }
}

/// Appends row `row` of `batch` as Flink's print connector shows it, with its kind:
/// `+I[1, abc, 2024-01-01T10:00]`, `-U[...]`.
pub fn flink_row(batch: &RecordBatch, row: usize, kind: RowKind, out: &mut String) {
    out.push_str(kind.short());
    out.push('[');
    for i in 0..batch.num_columns() {
        if i > 0 {
            out.push_str(", ");
        }
        render_value(batch.column(i).as_ref(), row, Style::Java, out);
    }
    out.push(']');
}

/// The CLI's output formats for query results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// One JSON object per line (the json sink's rules).
    Jsonl,
    /// A header line with the column names, then one CSV record per row.
    Csv,
    /// An ASCII table, printed once all rows are in (Flink SQL client "tableau" look, NULL as `<NULL>`).
    Table,
}

impl std::str::FromStr for OutputFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "jsonl" | "json" => Ok(OutputFormat::Jsonl),
            "csv" => Ok(OutputFormat::Csv),
            "table" => Ok(OutputFormat::Table),
            other => Err(format!(
                "unknown output format '{other}' (use jsonl, csv or table)"
            )),
        }
    }
}

/// Writes query results batch by batch in an [`OutputFormat`] (rows stream out as they arrive,
/// except `table`, which needs all rows to size its columns and prints in [`QueryWriter::finish`]).
pub struct QueryWriter<W: Write> {
    format: OutputFormat,
    out: W,
    header_written: bool,
    pending: Vec<RecordBatch>,
    line: String,
    scratch: String,
}

impl<W: Write> QueryWriter<W> {
    /// A writer of `format` into `out`.
    pub fn new(format: OutputFormat, out: W) -> Self {
        QueryWriter {
            format,
            out,
            header_written: false,
            pending: Vec::new(),
            line: String::new(),
            scratch: String::new(),
        }
    }

    /// Writes (or, for `table`, buffers) one batch.
    pub fn write(&mut self, batch: &RecordBatch) -> io::Result<()> {
        match self.format {
            OutputFormat::Table => self.pending.push(batch.clone()),
            OutputFormat::Jsonl => {
                for row in 0..batch.num_rows() {
                    self.line.clear();
                    json_row(batch, row, &mut self.line);
                    self.line.push('\n');
                    self.out.write_all(self.line.as_bytes())?;
                }
            }
            OutputFormat::Csv => {
                if !self.header_written {
                    self.line.clear();
                    for (i, f) in batch.schema_ref().fields().iter().enumerate() {
                        if i > 0 {
                            self.line.push(',');
                        }
                        push_csv_field(f.name(), ',', &mut self.line);
                    }
                    self.line.push('\n');
                    self.out.write_all(self.line.as_bytes())?;
                    self.header_written = true;
                }
                for row in 0..batch.num_rows() {
                    self.line.clear();
                    csv_row(batch, row, ',', &mut self.scratch, &mut self.line);
                    self.line.push('\n');
                    self.out.write_all(self.line.as_bytes())?;
                }
            }
        }
        Ok(())
    }

    /// Finishes the output (prints the table; flushes). `columns` names the columns when no batch
    /// arrived, so an empty result still shows its header.
    pub fn finish(mut self, columns: &[String]) -> io::Result<W> {
        match self.format {
            OutputFormat::Table => {
                let text = table(&self.pending, columns);
                self.out.write_all(text.as_bytes())?;
            }
            OutputFormat::Csv if !self.header_written && !columns.is_empty() => {
                self.line.clear();
                for (i, c) in columns.iter().enumerate() {
                    if i > 0 {
                        self.line.push(',');
                    }
                    push_csv_field(c, ',', &mut self.line);
                }
                self.line.push('\n');
                self.out.write_all(self.line.as_bytes())?;
            }
            _ => {}
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Renders batches as an ASCII table followed by `N rows in set`.
pub fn table(batches: &[RecordBatch], columns: &[String]) -> String {
    let names: Vec<String> = match batches.first() {
        Some(b) => b
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect(),
        None => columns.to_vec(),
    };
    let mut cells: Vec<Vec<String>> = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let mut line = Vec::with_capacity(batch.num_columns());
            for c in 0..batch.num_columns() {
                let col = batch.column(c);
                let mut s = String::new();
                if col.is_null(row) {
                    s.push_str("<NULL>");
                } else {
                    render_value(col.as_ref(), row, Style::Sql, &mut s);
                }
                line.push(s);
            }
            cells.push(line);
        }
    }
    let mut widths: Vec<usize> = names.iter().map(|n| n.chars().count()).collect();
    for line in &cells {
        for (i, s) in line.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(s.chars().count());
            }
        }
    }
    let mut out = String::new();
    let border = |out: &mut String| {
        out.push('+');
        for w in &widths {
            out.push_str(&"-".repeat(w + 2));
            out.push('+');
        }
        out.push('\n');
    };
    let row_line = |out: &mut String, values: &[String]| {
        out.push('|');
        for (i, w) in widths.iter().enumerate() {
            let v = values.get(i).map(String::as_str).unwrap_or("");
            let pad = w - v.chars().count().min(*w);
            let _ = write!(out, " {}{} |", " ".repeat(pad), v);
        }
        out.push('\n');
    };
    border(&mut out);
    row_line(&mut out, &names);
    border(&mut out);
    for line in &cells {
        row_line(&mut out, line);
    }
    border(&mut out);
    let n = cells.len();
    let _ = writeln!(out, "{n} row{} in set", if n == 1 { "" } else { "s" });
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        BooleanArray, Decimal128Array, Float64Array, Int64Array, StringArray,
        TimestampMillisecondArray,
    };
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("id", ArrowType::Int64, true),
            Field::new("name", ArrowType::Utf8, true),
            Field::new("amount", ArrowType::Decimal128(10, 2), true),
            Field::new("score", ArrowType::Float64, true),
            Field::new("ok", ArrowType::Boolean, true),
            Field::new(
                "ts",
                ArrowType::Timestamp(TimeUnit::Millisecond, None),
                true,
            ),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None])),
                Arc::new(StringArray::from(vec![Some("a,\"b\""), None])),
                Arc::new(
                    Decimal128Array::from(vec![Some(1250), None])
                        .with_precision_and_scale(10, 2)
                        .unwrap(),
                ),
                Arc::new(Float64Array::from(vec![Some(1e10), None])),
                Arc::new(BooleanArray::from(vec![Some(true), None])),
                Arc::new(TimestampMillisecondArray::from(vec![
                    Some(1_704_103_200_000),
                    None,
                ])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn json_rows_follow_the_sink_rules() {
        let b = batch();
        let mut s = String::new();
        json_row(&b, 0, &mut s);
        assert_eq!(
            s,
            r#"{"id":1,"name":"a,\"b\"","amount":"12.50","score":1.0E10,"ok":true,"ts":"2024-01-01 10:00:00.000"}"#
        );
        s.clear();
        json_row(&b, 1, &mut s);
        assert_eq!(
            s,
            r#"{"id":null,"name":null,"amount":null,"score":null,"ok":null,"ts":null}"#
        );
    }

    #[test]
    fn csv_rows_quote_and_leave_nulls_empty() {
        let b = batch();
        let (mut s, mut scratch) = (String::new(), String::new());
        csv_row(&b, 0, ',', &mut scratch, &mut s);
        assert_eq!(
            s,
            r#"1,"a,""b""",12.50,1.0E10,true,2024-01-01 10:00:00.000"#
        );
        s.clear();
        csv_row(&b, 1, ',', &mut scratch, &mut s);
        assert_eq!(s, ",,,,,");
    }

    #[test]
    fn print_rows_look_like_flink() {
        let b = batch();
        let mut s = String::new();
        flink_row(&b, 0, RowKind::Insert, &mut s);
        assert_eq!(s, "+I[1, a,\"b\", 12.50, 1.0E10, true, 2024-01-01T10:00]");
        s.clear();
        flink_row(&b, 1, RowKind::Insert, &mut s);
        assert_eq!(s, "+I[null, null, null, null, null, null]");
    }

    #[test]
    fn query_writer_formats() {
        let b = batch();
        let mut csv = QueryWriter::new(OutputFormat::Csv, Vec::new());
        csv.write(&b).unwrap();
        let text = String::from_utf8(csv.finish(&[]).unwrap()).unwrap();
        assert!(text.starts_with("id,name,amount,score,ok,ts\n1,"), "{text}");
        let mut table = QueryWriter::new(OutputFormat::Table, Vec::new());
        table.write(&b).unwrap();
        let text = String::from_utf8(table.finish(&[]).unwrap()).unwrap();
        assert!(
            text.contains("| <NULL> |")
                && text.contains("TRUE")
                && text.ends_with("2 rows in set\n"),
            "{text}"
        );
        let empty = QueryWriter::new(OutputFormat::Table, Vec::new());
        let text = String::from_utf8(empty.finish(&["x".to_string()]).unwrap()).unwrap();
        assert!(
            text.contains("| x |") && text.contains("0 rows in set"),
            "{text}"
        );
    }
}
