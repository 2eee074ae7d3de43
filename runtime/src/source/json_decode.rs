//! The `json` format (JSON lines), decoded straight into Arrow builders.
//!
//! Flink's rules: field names match columns case-sensitively; a missing field is NULL; extra fields
//! are ignored; numbers go into integer/float/decimal columns (numeric strings too); any scalar
//! into STRING (nested objects/arrays as their JSON text); BOOLEAN from `true`/`false` (or those
//! strings). TIMESTAMP columns accept `'YYYY-MM-DD HH:MM:SS[.fff]'`, ISO-8601 with `T` (optional `Z`
//! or offset), or epoch milliseconds as a JSON number. ARRAY/MAP/ROW columns are not supported
//! yet (an error at open names the column).
//!
//! Difference from Flink: a fractional number for an integer column is malformed (Flink truncates
//! it silently).
//!
//! The record is read by [`super::json_lexer`] in one pass: field names are compared in place,
//! values are converted straight into [`Cell`]s of their column's kind (staged; the row is
//! committed to the builders only when the whole line decoded), and the values of fields no column
//! names are skipped, as are those of columns the pipeline does not read (left NULL; Flink's JSON
//! format decodes only projected fields too). A DECIMAL column is read from the number as
//! written, exactly (Flink reads JSON numbers as `BigDecimal` for it).

use std::collections::HashMap;
use std::fmt;

use arrow::array::{ArrayRef, new_null_array};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use fsql_plan::SourceSpec;

use super::builder::{Cell, ColumnBuilder, Kind, check_int, kind_name, parse_text};
use super::json_lexer::{Lexer, Number, SyntaxError, Text};
use super::record_decoder::{RecordDecoder, builders};
use crate::error::RuntimeError;
use crate::text;

/// Decodes JSON lines into the physical columns of a table.
pub(crate) struct JsonDecoder {
    names: Vec<String>,
    kinds: Vec<Kind>,
    /// The columns the pipeline reads; the others are skipped like unknown fields (NULL).
    read: Vec<bool>,
    /// Each column's name as a JSON string (`"name"`) when it needs no escapes, else empty: a
    /// field name in the record equal to these bytes names that column without being decoded.
    quoted: Vec<Vec<u8>>,
    index: HashMap<String, usize>,
    staging: Vec<Cell>,
    /// The staged record's strings ([`Cell::Str`] ranges).
    strings: String,
    /// A field name or string value with escapes, decoded.
    scratch: String,
    builders: Vec<ColumnBuilder>,
    /// The columns' Arrow types (for the NULL arrays of columns not read).
    schema: SchemaRef,
    /// Rows committed since the last `finish`.
    rows: usize,
}

impl JsonDecoder {
    /// A decoder for `spec`'s physical columns, of which `read` marks those to decode (`None`:
    /// all).
    pub(crate) fn new(spec: &SourceSpec, read: Option<&[bool]>) -> Result<Self, RuntimeError> {
        let builders = builders(spec, "json")?;
        let kinds = spec
            .physical
            .fields
            .iter()
            .filter_map(|f| Kind::of(&f.data_type))
            .collect();
        let names: Vec<String> = spec
            .physical
            .fields
            .iter()
            .map(|f| f.name.clone())
            .collect();
        let index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let read = (0..names.len())
            .map(|i| read.is_none_or(|r| r.get(i).copied().unwrap_or(true)))
            .collect();
        let quoted = names
            .iter()
            .map(|n| {
                let plain = n.bytes().all(|b| b != b'"' && b != b'\\' && b >= 0x20);
                if plain {
                    format!("\"{n}\"").into_bytes()
                } else {
                    Vec::new()
                }
            })
            .collect();
        Ok(JsonDecoder {
            staging: vec![Cell::Absent; names.len()],
            read,
            quoted,
            names,
            kinds,
            index,
            strings: String::new(),
            scratch: String::new(),
            builders,
            schema: super::runtime_schema(&spec.physical),
            rows: 0,
        })
    }

    /// The column a field name names; `guess` (the column after the last one found) is compared
    /// first, since records usually list their fields in the table's column order.
    fn column(&self, name: &str, guess: usize) -> Option<usize> {
        if self.names.get(guess).is_some_and(|n| n == name) {
            return Some(guess);
        }
        self.index.get(name).copied()
    }

    /// Reads one record's object into `staging`.
    fn read_record(&mut self, line: &[u8]) -> Result<(), DecodeError> {
        let mut lexer = Lexer::new(line);
        lexer.expect(b'{', "expected an object")?;
        if !lexer.eat(b'}') {
            let mut guess = 0;
            loop {
                if lexer.peek().is_some_and(|b| b != b'"') {
                    return Err(SyntaxError {
                        what: "expected a field name",
                        at: lexer.pos(),
                    }
                    .into());
                }
                let expected = self.quoted.get(guess).filter(|q| !q.is_empty());
                let column = if expected.is_some_and(|q| lexer.eat_bytes(q)) {
                    Some(guess)
                } else {
                    match lexer.string(&mut self.scratch)? {
                        Text::Borrowed(name) => self.column(name, guess),
                        Text::Decoded => self.column(&self.scratch, guess),
                    }
                };
                lexer.expect(b':', "expected `:`")?;
                match column {
                    Some(i) => {
                        guess = i + 1;
                        if self.read[i] {
                            self.staging[i] = self.read_value(&mut lexer, i)?;
                        } else {
                            lexer.skip_value(1)?;
                        }
                    }
                    None => lexer.skip_value(1)?,
                }
                if !lexer.eat(b',') {
                    lexer.expect(b'}', "expected `,` or `}`")?;
                    break;
                }
            }
        }
        Ok(lexer.end()?)
    }

    /// Reads the value of column `i` (the lexer is at its first byte) as a cell of its kind.
    ///
    /// Inlined, with the conversions it calls, so that the cell reaches `staging` from registers:
    /// returned through memory by a call and copied at once, it stalled the copy (the load could
    /// not be served from the callee's narrower stores still in flight), a fifth of decoding.
    #[inline(always)]
    fn read_value(&mut self, lexer: &mut Lexer<'_>, i: usize) -> Result<Cell, DecodeError> {
        let kind = self.kinds[i];
        let first = lexer.peek();
        let at = lexer.pos();
        let converted = match first {
            Some(b'"') => match lexer.string(&mut self.scratch)? {
                Text::Borrowed(s) => parse_text(kind, s, &mut self.strings),
                Text::Decoded => parse_text(kind, &self.scratch, &mut self.strings),
            },
            Some(b'-' | b'0'..=b'9') => {
                let (written, number) = lexer.number()?;
                self.number_cell(kind, written, number)
            }
            Some(b't') => {
                lexer.literal(b"true")?;
                self.bool_cell(kind, true)
            }
            Some(b'f') => {
                lexer.literal(b"false")?;
                self.bool_cell(kind, false)
            }
            Some(b'n') => {
                lexer.literal(b"null")?;
                Ok(Cell::Null)
            }
            Some(b'{' | b'[') => {
                lexer.skip_value(1)?;
                let nested = lexer.text_from(at)?;
                let what = if first == Some(b'{') {
                    "an object"
                } else {
                    "an array"
                };
                self.nested_cell(kind, nested, what)
            }
            None => {
                return Err(SyntaxError {
                    what: "the record ends early",
                    at,
                }
                .into());
            }
            Some(_) => {
                return Err(SyntaxError {
                    what: "expected a value",
                    at,
                }
                .into());
            }
        };
        converted.map_err(|message| DecodeError::Value {
            column: self.names[i].clone(),
            message,
            at,
        })
    }

    #[inline(always)]
    fn push_str(&mut self, s: &str) -> Cell {
        let start = self.strings.len();
        self.strings.push_str(s);
        Cell::Str(start, self.strings.len())
    }

    #[inline(always)]
    fn bool_cell(&mut self, kind: Kind, v: bool) -> Result<Cell, String> {
        match kind {
            Kind::Boolean => Ok(Cell::Bool(v)),
            Kind::String => Ok(self.push_str(if v { "true" } else { "false" })),
            _ => Err(expected(kind, "a boolean")),
        }
    }

    /// A number as a cell of `kind`: `written` is its text (ASCII), `number` its value.
    #[inline(always)]
    fn number_cell(&mut self, kind: Kind, written: &[u8], number: Number) -> Result<Cell, String> {
        // Borrowed: the lexer checked the number's bytes.
        let written = String::from_utf8_lossy(written);
        if let Kind::Decimal { precision, scale } = kind {
            return text::parse_decimal(&written, precision, scale)
                .map(Cell::decimal)
                .ok_or_else(|| format!("{written} does not fit DECIMAL({precision}, {scale})"));
        }
        match number {
            Number::PosInt(v) => match i64::try_from(v) {
                Ok(v) => self.int_cell(kind, &written, v),
                Err(_) => match kind {
                    Kind::Float | Kind::Double => Ok(Cell::Float(v as f64)),
                    Kind::String => Ok(self.push_str(&written)),
                    _ => Err(format!("{v} is out of range for {}", kind_name(kind))),
                },
            },
            Number::NegInt(v) => self.int_cell(kind, &written, v),
            Number::Float(v) => self.float_cell(kind, v),
        }
    }

    #[inline(always)]
    fn int_cell(&mut self, kind: Kind, written: &str, v: i64) -> Result<Cell, String> {
        match kind {
            Kind::TinyInt | Kind::SmallInt | Kind::Int | Kind::BigInt | Kind::IntervalMs => {
                check_int(kind, v)
            }
            Kind::Float | Kind::Double => Ok(Cell::Float(v as f64)),
            // An integer is written as its digits (JSON has no leading zeros or `+`).
            Kind::String => Ok(self.push_str(written)),
            Kind::Timestamp(unit) => {
                // Epoch milliseconds.
                let secs = v.div_euclid(1000);
                let nanos = (v.rem_euclid(1000) * 1_000_000) as u32;
                text::join_timestamp(secs, nanos, unit)
                    .map(Cell::Int)
                    .ok_or_else(|| format!("{v} ms is out of range"))
            }
            _ => Err(expected(kind, "a number")),
        }
    }

    #[inline(always)]
    fn float_cell(&mut self, kind: Kind, v: f64) -> Result<Cell, String> {
        let integral = v.fract() == 0.0 && v.abs() < 9.2e18;
        match kind {
            Kind::Float | Kind::Double => Ok(Cell::Float(v)),
            Kind::TinyInt | Kind::SmallInt | Kind::Int | Kind::BigInt | Kind::IntervalMs => {
                if integral {
                    check_int(kind, v as i64)
                } else {
                    Err(expected(kind, &format!("the fractional number {v}")))
                }
            }
            Kind::String => {
                let start = self.strings.len();
                text::format_java_double(v, &mut self.strings);
                Ok(Cell::Str(start, self.strings.len()))
            }
            Kind::Timestamp(_) if integral => self.int_cell(kind, "", v as i64),
            _ => Err(expected(kind, "a number")),
        }
    }

    /// An object or array (`nested`, already checked): its JSON text in a STRING column, as
    /// `serde_json` renders it.
    fn nested_cell(&mut self, kind: Kind, nested: &str, what: &str) -> Result<Cell, String> {
        if kind != Kind::String {
            return Err(expected(kind, what));
        }
        let value: serde_json::Value = serde_json::from_str(nested).map_err(|e| e.to_string())?;
        Ok(self.push_str(&value.to_string()))
    }
}

/// A line of only whitespace (Unicode's, as `str::trim`): no record.
fn is_blank(line: &[u8]) -> bool {
    match line.iter().find(|b| !b.is_ascii_whitespace()) {
        None => true,
        Some(b'{') => false,
        Some(_) => std::str::from_utf8(line).is_ok_and(|s| s.trim().is_empty()),
    }
}

/// The message for a value of the wrong JSON type.
fn expected(kind: Kind, found: &str) -> String {
    format!("expected {}, found {found}", kind_name(kind))
}

/// Why a record did not decode.
enum DecodeError {
    Syntax(SyntaxError),
    /// A value that does not convert to its column's type; `at` is its byte offset.
    Value {
        column: String,
        message: String,
        at: usize,
    },
}

impl From<SyntaxError> for DecodeError {
    fn from(e: SyntaxError) -> Self {
        DecodeError::Syntax(e)
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Syntax(e) => e.fmt(f),
            DecodeError::Value {
                column,
                message,
                at,
            } => write!(f, "column `{column}`: {message} (at column {})", at + 1),
        }
    }
}

impl RecordDecoder for JsonDecoder {
    fn stage(&mut self, line: &str) -> Result<bool, String> {
        self.stage_bytes(line.as_bytes())
    }

    /// Reads the record's bytes without checking them as a whole to be UTF-8: the strings read
    /// are checked, the fields skipped are not (see [`Lexer`]).
    fn stage_bytes(&mut self, line: &[u8]) -> Result<bool, String> {
        if is_blank(line) {
            return Ok(false);
        }
        self.strings.clear();
        self.staging.fill(Cell::Absent);
        self.read_record(line).map_err(|e| e.to_string())?;
        Ok(true)
    }

    fn stage_null(&mut self) {
        self.staging.fill(Cell::Absent);
    }

    fn commit(&mut self) {
        let columns = self.builders.iter_mut().zip(&self.staging).zip(&self.read);
        for ((builder, cell), read) in columns {
            if *read {
                builder.append(*cell, &self.strings);
            }
        }
        self.rows += 1;
    }

    fn finish(&mut self) -> Result<Vec<ArrayRef>, ArrowError> {
        let rows = std::mem::take(&mut self.rows);
        let columns = self
            .builders
            .iter_mut()
            .zip(&self.read)
            .zip(self.schema.fields());
        columns
            .map(|((builder, read), field)| {
                if *read {
                    builder.finish()
                } else {
                    // A column no operator reads: NULL, as one array (nothing was appended).
                    Ok(new_null_array(field.data_type(), rows))
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use fsql_plan::DataType;

    use super::*;
    use crate::source::json_reference::string_column_value;
    use crate::source::rng::Rng;
    use crate::testkit::{connector, schema, source_spec};

    fn decoder(columns: &[(&str, DataType)]) -> JsonDecoder {
        let spec = source_spec(
            "t",
            connector("filesystem", &[("format", "json")], ""),
            schema(columns),
        );
        JsonDecoder::new(&spec, None).expect("decodable columns")
    }

    /// The staged cells of `line`, strings resolved, or the error.
    fn staged(d: &mut JsonDecoder, line: &str) -> Result<Vec<Option<String>>, String> {
        d.stage(line)?;
        Ok(d.staging
            .iter()
            .map(|cell| match *cell {
                Cell::Absent | Cell::Null => None,
                Cell::Str(s, e) => Some(d.strings[s..e].to_string()),
                other => Some(format!("{other:?}")),
            })
            .collect())
    }

    /// A random JSON value: scalars of every form, escapes, nesting.
    fn value(rng: &mut Rng, depth: u32, out: &mut String) {
        let pick = if depth > 3 {
            rng.below(7)
        } else {
            rng.below(9)
        };
        match pick {
            0 => out.push_str("null"),
            1 => out.push_str(if rng.chance(0.5) { "true" } else { "false" }),
            2 => out.push_str(&rng.range_i64(-1000, 1000).to_string()),
            3 => out.push_str(
                [
                    "0",
                    "-0",
                    "1.5",
                    "-2.5e3",
                    "1E2",
                    "0.1e-2",
                    "18446744073709551615",
                    "18446744073709551616",
                    "-9223372036854775808",
                    "-9223372036854775809",
                    "123456789012345678901234567890",
                    "1e308",
                    "4.9e-324",
                    "0.30000000000000004",
                ][rng.below(14) as usize],
            ),
            4..=6 => {
                out.push('"');
                for _ in 0..rng.below(12) {
                    out.push_str(
                        [
                            "a",
                            "xyz",
                            " ",
                            "é",
                            "😀",
                            "\\\"",
                            "\\\\",
                            "\\/",
                            "\\n",
                            "\\t",
                            "\\u0041",
                            "\\u00e9",
                            "\\ud83d\\ude00",
                            "\\b",
                            "\\f",
                            "\\r",
                        ][rng.below(16) as usize],
                    );
                }
                out.push('"');
            }
            7 => {
                out.push('[');
                for i in 0..rng.below(4) {
                    if i > 0 {
                        out.push(',');
                    }
                    value(rng, depth + 1, out);
                }
                out.push(']');
            }
            _ => {
                out.push('{');
                for i in 0..rng.below(4) {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&format!("\"k{}\": ", rng.below(3)));
                    value(rng, depth + 1, out);
                }
                out.push('}');
            }
        }
    }

    /// A random record over fields `a`, `b`, `c` (columns), `z` (not a column) and an escaped `\u0061`
    /// (`a`), in any order and with duplicates, then perhaps damaged by a few byte edits.
    fn record(rng: &mut Rng) -> String {
        let mut out = String::from(if rng.chance(0.1) { " { " } else { "{" });
        for i in 0..rng.below(6) {
            if i > 0 {
                out.push(',');
            }
            let key = ["a", "b", "c", "z", "\\u0061"][rng.below(5) as usize];
            out.push_str(&format!("\"{key}\":"));
            value(rng, 1, &mut out);
        }
        out.push('}');
        if rng.chance(0.3) {
            let mut bytes = out.into_bytes();
            for _ in 0..1 + rng.below(2) {
                let at = rng.below(bytes.len() as u64 + 1) as usize;
                match rng.below(3) {
                    0 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => {
                        let edits = b"{}[],:\"\\ 0-.e1xtn\x01";
                        let b = edits[rng.below(edits.len() as u64) as usize];
                        bytes.insert(at.min(bytes.len()), b);
                    }
                }
            }
            // Removing a byte may cut a multi-byte character: such a line is not text.
            return String::from_utf8(bytes).unwrap_or_default();
        }
        out
    }

    #[test]
    fn records_read_as_serde_json_reads_them() {
        let mut d = decoder(&[
            ("a", DataType::String),
            ("b", DataType::String),
            ("c", DataType::String),
        ]);
        let mut rng = Rng::new(7);
        let (mut good, mut bad) = (0, 0);
        for _ in 0..20_000 {
            let line = record(&mut rng);
            if line.trim().is_empty() {
                continue;
            }
            let ours = staged(&mut d, &line);
            let theirs = match serde_json::from_str::<serde_json::Value>(&line) {
                Ok(serde_json::Value::Object(fields)) => Ok(["a", "b", "c"]
                    .iter()
                    .map(|k| fields.get(*k).and_then(string_column_value))
                    .collect::<Vec<_>>()),
                Ok(_) => Err("not an object".to_string()),
                Err(e) => Err(e.to_string()),
            };
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a, b, "{line}");
                    good += 1;
                }
                (Err(_), Err(_)) => bad += 1,
                _ => panic!("{line}\n  ours: {ours:?}\n  serde_json: {theirs:?}"),
            }
        }
        // Both kinds of record are well represented.
        assert!(good > 8_000 && bad > 3_000, "{good} good, {bad} bad");
    }

    #[test]
    fn nesting_is_limited_as_serde_json_limits_it() {
        let mut d = decoder(&[("a", DataType::String)]);
        for depth in [126, 127, 128] {
            let line = format!("{{\"z\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
            let ours = staged(&mut d, &line).is_ok();
            let theirs = serde_json::from_str::<serde_json::Value>(&line).is_ok();
            assert_eq!(ours, theirs, "depth {depth}");
        }
    }

    #[test]
    fn values_convert_to_their_column_types() {
        let cases: &[(DataType, &str, Result<Cell, &str>)] = &[
            (DataType::BigInt, "-42", Ok(Cell::Int(-42))),
            (DataType::BigInt, "\" 7 \"", Ok(Cell::Int(7))),
            (DataType::BigInt, "3.0", Ok(Cell::Int(3))),
            (
                DataType::BigInt,
                "3.5",
                Err("expected BIGINT, found the fractional number 3.5"),
            ),
            (
                DataType::BigInt,
                "18446744073709551615",
                Err("is out of range for BIGINT"),
            ),
            (
                DataType::TinyInt,
                "128",
                Err("128 is out of range for TINYINT"),
            ),
            (DataType::Int, "true", Err("expected INT, found a boolean")),
            (
                DataType::Int,
                "{\"x\":1}",
                Err("expected INT, found an object"),
            ),
            (DataType::Double, "1e2", Ok(Cell::Float(100.0))),
            (
                DataType::Double,
                "18446744073709551616",
                Ok(Cell::Float(1.8446744073709552e19)),
            ),
            (
                DataType::Double,
                "\"abc\"",
                Err("cannot parse 'abc' as DOUBLE"),
            ),
            (DataType::Boolean, "false", Ok(Cell::Bool(false))),
            (DataType::Boolean, "\"true\"", Ok(Cell::Bool(true))),
            (
                DataType::Boolean,
                "1",
                Err("expected BOOLEAN, found a number"),
            ),
            // DECIMAL is read from the number as written: exact where a double is not.
            (
                DataType::Decimal {
                    precision: 38,
                    scale: 19,
                },
                "0.1234567890123456789",
                Ok(Cell::decimal(1_234_567_890_123_456_789)),
            ),
            (
                DataType::Decimal {
                    precision: 22,
                    scale: 0,
                },
                "18446744073709551616",
                Ok(Cell::decimal(18_446_744_073_709_551_616)),
            ),
            (
                DataType::Decimal {
                    precision: 4,
                    scale: 2,
                },
                "1.5e1",
                Ok(Cell::decimal(1500)),
            ),
            (
                DataType::Decimal {
                    precision: 4,
                    scale: 2,
                },
                "123",
                Err("123 does not fit DECIMAL(4, 2)"),
            ),
            (
                DataType::Timestamp { precision: 3 },
                "1704103200123",
                Ok(Cell::Int(1_704_103_200_123)),
            ),
            (
                DataType::Timestamp { precision: 6 },
                "\"2024-01-01 10:00:00.123456\"",
                Ok(Cell::Int(1_704_103_200_123_456)),
            ),
            (
                DataType::Timestamp { precision: 3 },
                "1.5",
                Err("expected TIMESTAMP, found a number"),
            ),
            (DataType::Date, "\"2024-01-02\"", Ok(Cell::Int(19_724))),
            (DataType::Date, "3", Err("expected DATE, found a number")),
            (DataType::String, "null", Ok(Cell::Null)),
        ];
        for (data_type, value, want) in cases {
            let mut d = decoder(&[("v", data_type.clone())]);
            let line = format!("{{\"v\": {value}}}");
            let got = d.stage(&line).map(|_| d.staging[0]);
            match (want, &got) {
                (Ok(want), Ok(got)) => assert_eq!(got, want, "{data_type:?} {value}"),
                (Err(part), Err(message)) => {
                    assert!(message.starts_with("column `v`: "), "{message}");
                    assert!(message.contains(part), "{data_type:?} {value}: {message}");
                    assert!(message.ends_with("(at column 7)"), "{message}");
                }
                _ => panic!("{data_type:?} {value}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn syntax_errors_say_what_and_where() {
        let mut d = decoder(&[("a", DataType::BigInt)]);
        for (line, message) in [
            ("not json", "invalid JSON: expected an object (at column 1)"),
            ("[1]", "invalid JSON: expected an object (at column 1)"),
            ("{\"a\" 1}", "invalid JSON: expected `:` (at column 6)"),
            (
                "{\"a\":1 \"b\":2}",
                "invalid JSON: expected `,` or `}` (at column 8)",
            ),
            (
                "{\"a\":1,}",
                "invalid JSON: expected a field name (at column 8)",
            ),
            (
                "{\"a\":1",
                "invalid JSON: the record ends early (at column 7)",
            ),
            (
                "{\"a\":1} x",
                "invalid JSON: characters after the object (at column 9)",
            ),
            (
                "{\"a\":01}",
                "invalid JSON: an invalid number (at column 7)",
            ),
            (
                "{\"z\":\"\\q\"}",
                "invalid JSON: an invalid escape (at column 8)",
            ),
            (
                "{\"a\":\"\\ud800\"}",
                "invalid JSON: a lone surrogate in a \\u escape (at column 13)",
            ),
        ] {
            assert_eq!(d.stage(line), Err(message.to_string()), "{line}");
        }
    }

    #[test]
    fn unread_columns_are_skipped_and_built_as_nulls() {
        let spec = source_spec(
            "t",
            connector("filesystem", &[("format", "json")], ""),
            schema(&[
                ("a", DataType::BigInt),
                ("b", DataType::BigInt),
                ("c", DataType::String),
            ]),
        );
        let mut d = JsonDecoder::new(&spec, Some(&[true, false, true])).expect("decodable");
        // `b` is not a number, and not read; `c` holds bytes that are not UTF-8 in the second
        // record, where it is a field the table does not have.
        let lines: [&[u8]; 3] = [
            br#"{"a": 1, "b": "x", "c": "one"}"#,
            b"{\"a\": 2, \"z\": \"\xff\xfe\", \"c\": \"two\"}",
            br#"{"b": 3}"#,
        ];
        for line in lines {
            assert_eq!(d.decode(line), Ok(true));
        }
        // Bytes that are not UTF-8 in a field that is read make the record malformed.
        assert_eq!(
            d.decode(b"{\"c\": \"\xff\"}"),
            Err("invalid JSON: invalid UTF-8 in a string (at column 8)".to_string())
        );
        let columns = d.finish().expect("columns");
        let rows = arrow::array::RecordBatch::try_new(d.schema.clone(), columns).expect("batch");
        assert_eq!(
            crate::testkit::rows(&[rows]),
            [
                r#"{"a":1,"b":null,"c":"one"}"#,
                r#"{"a":2,"b":null,"c":"two"}"#,
                r#"{"a":null,"b":null,"c":null}"#,
            ]
        );
    }
}
