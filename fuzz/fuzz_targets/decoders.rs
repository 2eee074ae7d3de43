//! The `filesystem` source's JSON-lines and CSV decoders on arbitrary files, through the public
//! connector (`FileSource`: line splitting, UTF-8 checks, the decoders, dead letters, batching),
//! with the decoded rows rendered as the sinks and the CLI render them.
//!
//! The input is a small header that picks the format, the table's columns and the format options,
//! followed by the file's bytes (see `Case::parse`). Invariants checked: no panic, every batch has
//! the table's runtime schema, and no record is dropped silently: every line is a row, a
//! malformed record, or a line the format skips (blank; a `#` comment with `csv.allow-comments`).
//! And when the format is JSON, every column a STRING and the file UTF-8, the rows are exactly
//! what `serde_json` reads: a line is a row when it is a JSON object, with each column the value
//! its field gives a STRING column.
#![no_main]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fsql_plan::{ConnectorSpec, DataType, Field, Schema, SourceSpec};
use fsql_runtime::source::filesystem::FileSource;
use fsql_runtime::source::json_reference::string_column_value;
use fsql_runtime::source::{OpenOptions, Source, SourceContext, SourcePoll, runtime_schema};
use fsql_runtime::{BatchConfig, format};
use libfuzzer_sys::fuzz_target;

/// A per-process scratch directory: the input file and the dead-letter file live there. In memory
/// (`/dev/shm`) where there is one: rewriting a file on ext4 flushes it to disk on every run.
fn scratch_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = std::path::Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("fsql-fuzz-decoders-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        dir
    })
}

/// Removes the run's files however the run ends (only an empty directory is left behind).
struct RemoveOnDrop([PathBuf; 2]);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

struct Case<'a> {
    csv: bool,
    allow_comments: bool,
    spec: SourceSpec,
    max_rows: usize,
    content: &'a [u8],
}

/// Reads bytes off the front of the input, zero once it is used up.
struct Header<'a>(&'a [u8]);

impl<'a> Header<'a> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

impl<'a> Case<'a> {
    /// Header layout: `flags`, `batch`, `ncols`, one type byte per column (+2 bytes for DECIMAL, +1
    /// for TIMESTAMP), then for CSV `delimiter`, `quote`, `escape`, `null-literal length` and its
    /// bytes; the rest is the file.
    fn parse(data: &'a [u8]) -> Case<'a> {
        let mut h = Header(data);
        let flags = h.byte();
        let batch = h.byte();
        let ncols = 1 + usize::from(h.byte() % 8);
        let csv = flags & 1 != 0;
        let fields = (0..ncols)
            .map(|i| {
                let data_type = match h.byte() % 16 {
                    0 => DataType::Boolean,
                    1 => DataType::TinyInt,
                    2 => DataType::SmallInt,
                    3 => DataType::Int,
                    4 => DataType::BigInt,
                    5 => DataType::Float,
                    6 => DataType::Double,
                    7 => {
                        // The compiler's rules: 1 <= precision <= 38, 0 <= scale <= precision.
                        let precision = 1 + h.byte() % 38;
                        let scale = (h.byte() % (precision + 1)) as i8;
                        DataType::Decimal { precision, scale }
                    }
                    8 | 9 => DataType::String,
                    10 => DataType::Bytes,
                    11 => DataType::Date,
                    12 => DataType::Time,
                    13 => DataType::Timestamp {
                        precision: h.byte() % 10,
                    },
                    14 => DataType::TimestampLtz {
                        precision: h.byte() % 10,
                    },
                    _ => DataType::IntervalDayTime,
                };
                // Single letters, so that JSON keys are easy to hit.
                let name = char::from(b'a' + i as u8).to_string();
                Field::new(name, data_type, true)
            })
            .collect();
        let mut options = BTreeMap::new();
        options.insert("path".to_string(), "input".to_string());
        options.insert(
            "format".to_string(),
            if csv { "csv" } else { "json" }.to_string(),
        );
        let prefix = if csv { "csv" } else { "json" };
        if flags & 2 != 0 {
            options.insert(format!("{prefix}.ignore-parse-errors"), "true".to_string());
        }
        if flags & 4 != 0 {
            options.insert("dead-letter.path".to_string(), "dead.jsonl".to_string());
        }
        let allow_comments = csv && flags & 8 != 0;
        if csv {
            if allow_comments {
                options.insert("csv.allow-comments".to_string(), "true".to_string());
            }
            if flags & 16 != 0 {
                options.insert(
                    "csv.disable-quote-character".to_string(),
                    "true".to_string(),
                );
            }
            let delimiter = h.byte();
            let quote = h.byte();
            let escape = h.byte();
            if flags & 32 != 0 {
                options.insert(
                    "csv.field-delimiter".to_string(),
                    char::from(delimiter).to_string(),
                );
            }
            if flags & 64 != 0 {
                options.insert(
                    "csv.quote-character".to_string(),
                    char::from(quote).to_string(),
                );
            }
            if flags & 128 != 0 {
                options.insert(
                    "csv.escape-character".to_string(),
                    char::from(escape).to_string(),
                );
            }
            let null_len = usize::from(h.byte() % 5);
            if null_len > 0 {
                let literal = String::from_utf8_lossy(h.bytes(null_len)).into_owned();
                options.insert("csv.null-literal".to_string(), literal);
            }
        }
        let spec = SourceSpec {
            table: "fuzz".to_string(),
            connector: ConnectorSpec {
                connector: "filesystem".to_string(),
                options,
                base_dir: scratch_dir().display().to_string(),
            },
            physical: Schema::new(fields),
            columns: Vec::new(),
            watermark: None,
            metadata: Default::default(),
        };
        Case {
            csv,
            allow_comments,
            spec,
            max_rows: 1 + usize::from(batch % 4),
            content: h.0,
        }
    }

    /// The rows `serde_json` reads from the file, when the check applies (JSON, every column a
    /// STRING, the file UTF-8): each column's text, `None` for NULL.
    fn expected_string_rows(&self) -> Option<Vec<Vec<Option<String>>>> {
        let fields = &self.spec.physical.fields;
        if self.csv || fields.iter().any(|f| f.data_type != DataType::String) {
            return None;
        }
        let text = std::str::from_utf8(self.content).ok()?;
        let mut rows = Vec::new();
        for line in text.split_inclusive('\n') {
            let line = line.strip_suffix('\n').unwrap_or(line);
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() {
                continue;
            }
            if let Ok(serde_json::Value::Object(object)) = serde_json::from_str(line) {
                let row = fields
                    .iter()
                    .map(|f| object.get(&f.name).and_then(string_column_value))
                    .collect();
                rows.push(row);
            }
        }
        Some(rows)
    }

    /// Lines the format skips without a row or a malformed record (the documented rules).
    fn skipped_lines(&self) -> u64 {
        let mut skipped = 0;
        for line in self.content.split_inclusive(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Ok(line) = std::str::from_utf8(line) else {
                continue;
            };
            let skip = if self.csv {
                line.is_empty() || (self.allow_comments && line.starts_with('#'))
            } else {
                line.trim().is_empty()
            };
            skipped += u64::from(skip);
        }
        skipped
    }
}

/// A row's columns' text (the columns are STRINGs), read back from the row as the `json` sinks
/// render it.
fn string_columns(rendered: &str, names: &[String]) -> Vec<Option<String>> {
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(rendered).expect("a rendered row is a JSON object");
    names
        .iter()
        .map(|n| object.get(n).and_then(|v| v.as_str().map(str::to_string)))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let case = Case::parse(data);
    let dir = scratch_dir();
    std::fs::write(dir.join("input"), case.content).expect("write the input file");
    let _cleanup = RemoveOnDrop([dir.join("input"), dir.join("dead.jsonl")]);
    let options = OpenOptions {
        batch: BatchConfig {
            max_rows: case.max_rows,
            linger: Duration::from_secs(1),
        },
        unthrottled: true,
        capture_sinks: false,
        resume: Default::default(),
        columns_read: None,
    };
    // Options the decoder refuses (e.g. a delimiter that is also the quote) are errors at open.
    let Ok(mut source) = FileSource::open(&case.spec, &options) else {
        return;
    };
    let schema = runtime_schema(&case.spec.physical);
    let lines = case.content.split_inclusive(|b| *b == b'\n').count() as u64;
    let (mut rows, mut malformed) = (0u64, 0u64);
    let expected = case.expected_string_rows();
    let names: Vec<String> = case
        .spec
        .physical
        .fields
        .iter()
        .map(|f| f.name.clone())
        .collect();
    let mut got = Vec::new();
    let mut out = String::new();
    loop {
        let mut report = |_: &fsql_runtime::MalformedRecord| {};
        let mut ctx = SourceContext::new(Instant::now(), &mut report);
        let poll = source.poll(&mut ctx);
        malformed += ctx.malformed_count();
        match poll {
            Ok(SourcePoll::Batch(batch)) => {
                assert_eq!(batch.schema(), schema, "a batch without the table's schema");
                assert!(
                    batch.num_rows() <= case.max_rows,
                    "a batch over the size limit"
                );
                rows += batch.num_rows() as u64;
                for row in 0..batch.num_rows() {
                    out.clear();
                    format::json_row(&batch, row, &mut out);
                    if expected.is_some() {
                        got.push(string_columns(&out, &names));
                    }
                    format::flink_row(&batch, row, fsql_runtime::RowKind::Insert, &mut out);
                }
            }
            Ok(SourcePoll::End) => break,
            Ok(other) => panic!("a file source polled {other:?}"),
            // I/O errors (e.g. of the dead-letter file) end the run with an error: not a bug.
            Err(_) => return,
        }
    }
    assert_eq!(
        rows + malformed + case.skipped_lines(),
        lines,
        "lines dropped silently: {rows} rows, {malformed} malformed of {lines} lines"
    );
    if let Some(expected) = expected {
        assert_eq!(got, expected, "rows other than serde_json's");
    }
});
