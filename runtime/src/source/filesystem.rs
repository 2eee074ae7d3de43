//! The `filesystem` source (Flink's connector name and options): JSON lines or CSV from a file or
//! a directory.
//!
//! Options: `'path'` (a file, or a directory whose files are read in path order, recursively,
//! skipping names starting with `.` or `_` as Flink does; relative to the `.fsql` file's directory),
//! `'format'` = `'json'` | `'csv'`, the format's options (see `json_decode` / `csv_decode`), and
//! fsql's `'dead-letter.path'`.
//!
//! Malformed records never stop the run and are never dropped silently: each is counted, reported
//! (`path:line: error`) and, with `'dead-letter.path'`, appended to the dead-letter file. With
//! `'json.ignore-parse-errors'` / `'csv.ignore-parse-errors'` = `'true'` they are skipped without
//! being reported (still counted, still dead-lettered if configured). Difference from Flink: Flink
//! then keeps the row with the bad field set to NULL; fsql skips the whole record.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use fsql_plan::SourceSpec;

use super::dead_letter::{DEAD_LETTER_PATH, DeadLetter};
use super::line_reader::LineReader;
use super::record_decoder::{RecordDecoder, decoder_for};
use super::{MalformedRecord, OpenOptions, Source, SourceContext, SourcePoll, runtime_schema};
use crate::checkpoint::SourcePosition;
use crate::error::RuntimeError;

/// The file or directory a filesystem table names in `'path'`, resolved against the `.fsql` file's
/// directory (for sources and sinks alike).
pub(crate) fn table_path(
    table: &str,
    connector: &fsql_plan::ConnectorSpec,
) -> Result<PathBuf, RuntimeError> {
    let path = connector.options.get("path").ok_or_else(|| {
        RuntimeError::option(table, "path", "is required for the filesystem connector")
    })?;
    Ok(resolve(&connector.base_dir, path))
}

pub(crate) fn resolve(base_dir: &str, path: &str) -> PathBuf {
    // Flink writes paths as URIs: `file:///data/x.csv` is `/data/x.csv`. (A string prefix:
    // `Path::strip_prefix` compares components, and would leave the relative `data/x.csv`.)
    let p = Path::new(path.strip_prefix("file://").unwrap_or(path));
    if p.is_absolute() || base_dir.is_empty() {
        p.to_path_buf()
    } else {
        Path::new(base_dir).join(p)
    }
}

fn list_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            !name.starts_with('.') && !name.starts_with('_')
        })
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            list_files(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

struct OpenFile {
    display: String,
    reader: LineReader<File>,
    line_no: u64,
}

/// Reads the files of a `filesystem` table line by line into batches.
pub struct FileSource {
    table: String,
    schema: SchemaRef,
    files: std::vec::IntoIter<PathBuf>,
    current: Option<OpenFile>,
    decoder: Box<dyn RecordDecoder>,
    max_rows: usize,
    quiet: bool,
    dead_letter: Option<DeadLetter>,
    /// Lines read so far over all files, in order (the checkpoint position).
    lines: u64,
}

impl FileSource {
    /// Opens the table's files and its format decoder (errors name the table and option).
    pub fn open(spec: &SourceSpec, options: &OpenOptions) -> Result<FileSource, RuntimeError> {
        let opts = &spec.connector.options;
        let path = table_path(&spec.table, &spec.connector)?;
        let display = path.display().to_string();
        let meta = std::fs::metadata(&path).map_err(|e| RuntimeError::io(&display, e))?;
        let mut files = Vec::new();
        if meta.is_dir() {
            list_files(&path, &mut files).map_err(|e| RuntimeError::io(&display, e))?;
        } else {
            files.push(path);
        }
        let (decoder, quiet) =
            decoder_for(spec, &["json", "csv"], options.columns_read.as_deref())?;
        let dead_letter = opts
            .get(DEAD_LETTER_PATH)
            .map(|p| DeadLetter::new(resolve(&spec.connector.base_dir, p)));
        Ok(FileSource {
            table: spec.table.clone(),
            schema: runtime_schema(&spec.physical),
            files: files.into_iter(),
            current: None,
            decoder,
            max_rows: options.batch.max_rows.max(1),
            quiet,
            dead_letter,
            lines: 0,
        })
    }

    fn finish_batch(&mut self, rows: usize) -> Result<RecordBatch, RuntimeError> {
        let columns = self
            .decoder
            .finish()
            .map_err(|e| RuntimeError::arrow(&self.table, e))?;
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)
            .map_err(|e| RuntimeError::arrow(&self.table, e))
    }
}

impl FileSource {
    /// Finds the next line of the files, in order (opening the next file when one ends): its
    /// bytes in the current file's reader, without the `\n`; `None` when every file is read.
    fn next_line(&mut self) -> Result<Option<std::ops::Range<usize>>, RuntimeError> {
        loop {
            if self.current.is_none() {
                let Some(path) = self.files.next() else {
                    return Ok(None);
                };
                let display = path.display().to_string();
                let file = File::open(&path).map_err(|e| RuntimeError::io(&display, e))?;
                self.current = Some(OpenFile {
                    display,
                    reader: LineReader::new(file),
                    line_no: 0,
                });
            }
            let Some(file) = self.current.as_mut() else {
                return Ok(None);
            };
            let Some(line) = file
                .reader
                .next_line()
                .map_err(|e| RuntimeError::io(&file.display, e))?
            else {
                self.current = None;
                continue;
            };
            file.line_no += 1;
            self.lines += 1;
            return Ok(Some(line));
        }
    }
}

impl Source for FileSource {
    fn poll(&mut self, ctx: &mut SourceContext<'_>) -> Result<SourcePoll, RuntimeError> {
        let mut rows = 0;
        while rows < self.max_rows {
            let Some(line) = self.next_line()? else {
                break;
            };
            let Some(file) = self.current.as_ref() else {
                break;
            };
            let mut bytes = file.reader.line(line);
            if let Some(b) = bytes.strip_suffix(b"\r") {
                bytes = b;
            }
            let result = self.decoder.decode(bytes);
            match result {
                Ok(true) => rows += 1,
                Ok(false) => {}
                Err(error) => {
                    let record = MalformedRecord {
                        table: self.table.clone(),
                        file: Some(file.display.clone()),
                        line: Some(file.line_no),
                        origin: None,
                        error,
                        raw: String::from_utf8_lossy(bytes).into_owned(),
                    };
                    if let Some(dl) = self.dead_letter.as_mut() {
                        dl.write(&record)?;
                    }
                    ctx.malformed(&record, self.quiet);
                }
            }
        }
        if rows == 0 {
            return Ok(SourcePoll::End);
        }
        Ok(SourcePoll::Batch(self.finish_batch(rows)?))
    }

    fn position(&mut self) -> Result<SourcePosition, RuntimeError> {
        Ok(SourcePosition::Rows(self.lines))
    }

    /// Skips the lines an earlier run read (records are one per line, files in name order).
    fn seek(&mut self, position: &SourcePosition) -> Result<(), RuntimeError> {
        let SourcePosition::Rows(n) = *position else {
            return Err(RuntimeError::connector(
                &self.table,
                "a checkpoint gives this file table a Kafka position",
            ));
        };
        while self.lines < n && self.next_line()?.is_some() {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use fsql_plan::{DataType, Operator as PlanOp};

    use crate::executor::RunOptions;
    use crate::testkit::*;

    #[test]
    fn paths_resolve_against_the_pipeline_directory_and_file_uris_are_absolute() {
        use std::path::Path;
        let at = |p| super::resolve("/pipelines/fraud", p);
        assert_eq!(at("data/x.csv"), Path::new("/pipelines/fraud/data/x.csv"));
        assert_eq!(at("/data/x.csv"), Path::new("/data/x.csv"));
        assert_eq!(at("file:///data/x.csv"), Path::new("/data/x.csv"));
        assert_eq!(
            at("file://data/x.csv"),
            Path::new("/pipelines/fraud/data/x.csv")
        );
        assert_eq!(super::resolve("", "x.csv"), Path::new("x.csv"));
    }

    fn json_schema() -> fsql_plan::Schema {
        schema(&[
            ("id", DataType::BigInt),
            ("name", DataType::String),
            (
                "amount",
                DataType::Decimal {
                    precision: 10,
                    scale: 2,
                },
            ),
            ("ok", DataType::Boolean),
            ("ts", DataType::Timestamp { precision: 3 }),
        ])
    }

    /// Runs `filesystem` → Collect over `files` (name, content) and returns rows, malformed reports
    /// and the summary.
    fn read(
        name: &str,
        files: &[(&str, &str)],
        format: &str,
        table_schema: fsql_plan::Schema,
        extra: &[(&str, &str)],
    ) -> (
        Vec<String>,
        Vec<String>,
        crate::RunSummary,
        std::path::PathBuf,
    ) {
        let dir = temp_dir(name);
        std::fs::create_dir_all(dir.join("in")).unwrap();
        for (file, content) in files {
            std::fs::write(dir.join("in").join(file), content).unwrap();
        }
        let mut options = vec![("path", "in"), ("format", format)];
        options.extend_from_slice(extra);
        let mut p = PlanBuilder::new().setting("table.exec.mini-batch.size", "2");
        let src = p.source(source_spec(
            "events",
            connector("filesystem", &options, dir.to_str().unwrap()),
            table_schema.clone(),
        ));
        let q = p.add("q", &[src.0], table_schema, PlanOp::Collect);
        let reports = Rc::new(RefCell::new(Vec::new()));
        let sink = reports.clone();
        let run_options = RunOptions {
            on_malformed: Some(Box::new(move |m| sink.borrow_mut().push(m.to_string()))),
            ..RunOptions::default()
        };
        let (got, summary) = run_collect(&p.pipeline, run_options);
        let out = got.get(&q.0).map(|b| rows(b)).unwrap_or_default();
        let reports = reports.borrow().clone();
        (out, reports, summary, dir)
    }

    #[test]
    fn json_lines_decode_all_timestamp_forms_and_missing_fields() {
        let data = concat!(
            r#"{"id": 1, "name": "a", "amount": 12.5, "ok": true, "ts": "2024-01-01 10:00:00.123", "extra": [1, 2]}"#,
            "\n",
            r#"{"id": 2, "amount": "3.14159", "ts": "2024-01-01T10:00:00Z"}"#,
            "\n\n",
            r#"{"ts": 1704103200000, "name": 42, "ok": "false"}"#,
            "\n"
        );
        let (rows, reports, summary, _) =
            read("json-ok", &[("a.json", data)], "json", json_schema(), &[]);
        assert_eq!(
            rows,
            vec![
                r#"{"id":1,"name":"a","amount":"12.50","ok":true,"ts":"2024-01-01 10:00:00.123"}"#,
                r#"{"id":2,"name":null,"amount":"3.14","ok":null,"ts":"2024-01-01 10:00:00.000"}"#,
                r#"{"id":null,"name":"42","amount":null,"ok":false,"ts":"2024-01-01 10:00:00.000"}"#,
            ]
        );
        assert!(reports.is_empty(), "{reports:?}");
        assert_eq!((summary.rows_in(), summary.malformed()), (3, 0));
    }

    #[test]
    fn malformed_json_is_counted_reported_dead_lettered_and_the_run_continues() {
        let data = concat!(
            r#"{"id": 1, "ts": "2024-01-01 10:00:00"}"#,
            "\n",
            "not json at all\n",
            r#"{"id": "x1", "ts": "2024-01-01 10:00:00"}"#,
            "\n",
            r#"{"id": 4, "ts": "yesterday"}"#,
            "\n",
            r#"{"id": 5, "ts": "2024-01-01 10:00:05"}"#,
            "\n"
        );
        let (rows, reports, summary, dir) = read(
            "json-bad",
            &[("a.json", data)],
            "json",
            json_schema(),
            &[("dead-letter.path", "dlq/bad.jsonl")],
        );
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(summary.malformed(), 3);
        assert_eq!(reports.len(), 3);
        let file = dir.join("in").join("a.json").display().to_string();
        assert!(
            reports[0].starts_with(&format!("{file}:2: invalid JSON")),
            "{}",
            reports[0]
        );
        assert!(
            reports[1].starts_with(&format!(
                "{file}:3: column `id`: cannot parse 'x1' as BIGINT"
            )),
            "{}",
            reports[1]
        );
        assert!(
            reports[2].starts_with(&format!(
                "{file}:4: column `ts`: cannot parse 'yesterday' as TIMESTAMP"
            )),
            "{}",
            reports[2]
        );
        let dead = std::fs::read_to_string(dir.join("dlq/bad.jsonl")).unwrap();
        let lines: Vec<serde_json::Value> = dead
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["source"], "events");
        assert_eq!(lines[0]["file"], file.as_str());
        assert_eq!(lines[0]["line"], 2);
        assert_eq!(lines[0]["raw"], "not json at all");
        assert!(lines[2]["error"].as_str().unwrap().contains("yesterday"));
    }

    /// Reads `data` as `json_schema()` rows through a `Calc` projecting `projections` (column
    /// positions), or straight into a `Collect` when `None`: the rows and the malformed count.
    fn read_projected(name: &str, data: &str, projections: Option<&[usize]>) -> (Vec<String>, u64) {
        let dir = temp_dir(name);
        std::fs::write(dir.join("a.json"), data).unwrap();
        let table = json_schema();
        let mut p = PlanBuilder::new();
        let src = p.source(source_spec(
            "events",
            connector(
                "filesystem",
                &[("path", "a.json"), ("format", "json")],
                dir.to_str().unwrap(),
            ),
            table.clone(),
        ));
        let (input, out_schema) = match projections {
            Some(columns) => {
                let fields: Vec<_> = columns.iter().map(|i| table.fields[*i].clone()).collect();
                let exprs = columns
                    .iter()
                    .map(|i| col(*i, table.fields[*i].data_type.clone()))
                    .collect();
                let schema = fsql_plan::Schema::new(fields);
                let calc = p.add(
                    "calc",
                    &[src.0],
                    schema.clone(),
                    PlanOp::Calc {
                        filter: None,
                        projections: exprs,
                    },
                );
                (calc.0, schema)
            }
            None => (src.0, table),
        };
        let q = p.add("q", &[input], out_schema, PlanOp::Collect);
        let (got, summary) = run_collect(&p.pipeline, RunOptions::default());
        (
            got.get(&q.0).map(|b| rows(b)).unwrap_or_default(),
            summary.malformed(),
        )
    }

    #[test]
    fn json_fields_no_operator_reads_are_not_decoded() {
        // `amount` is not a number in the second record; `name` has an escape in the third.
        let data = concat!(
            r#"{"id": 1, "name": "a", "amount": 1.5}"#,
            "\n",
            r#"{"id": 2, "name": "b", "amount": "lots"}"#,
            "\n",
            r#"{"id": 3, "name": "c\u0041", "amount": 2}"#,
            "\n",
        );
        // Only `id` and `name` are read: the bad amount is never converted (as in Flink, whose
        // JSON format decodes only the projected fields).
        let (got, malformed) = read_projected("json-projected", data, Some(&[0, 1]));
        assert_eq!(
            got,
            [
                r#"{"id":1,"name":"a"}"#,
                r#"{"id":2,"name":"b"}"#,
                r#"{"id":3,"name":"cA"}"#
            ]
        );
        assert_eq!(malformed, 0);
        // Read whole, the record with the bad amount is malformed.
        let (got, malformed) = read_projected("json-whole", data, None);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(malformed, 1);
        // A record that is not JSON is malformed whatever is read.
        let (got, malformed) = read_projected(
            "json-projected-bad",
            "{\"id\": 1, \"amount\": [}\n",
            Some(&[0]),
        );
        assert_eq!((got.len(), malformed), (0, 1));
    }

    #[test]
    fn ignore_parse_errors_skips_quietly_but_still_counts() {
        let data = "{\"id\": 1}\n[1, 2]\n{\"id\": 3}\n";
        let (rows, reports, summary, _) = read(
            "json-quiet",
            &[("a.json", data)],
            "json",
            json_schema(),
            &[("json.ignore-parse-errors", "true")],
        );
        assert_eq!(rows.len(), 2);
        assert!(reports.is_empty());
        assert_eq!(summary.malformed(), 1);
    }

    #[test]
    fn directories_are_read_in_name_order_skipping_hidden_files() {
        let (rows, _, _, _) = read(
            "json-dir",
            &[
                ("b.json", "{\"id\": 2}\n"),
                ("a.json", "{\"id\": 1}\n"),
                (".hidden", "{\"id\": 9}\n"),
                ("_tmp", "x\n"),
            ],
            "json",
            schema(&[("id", DataType::BigInt)]),
            &[],
        );
        assert_eq!(rows, vec![r#"{"id":1}"#, r#"{"id":2}"#]);
    }

    #[test]
    fn unsupported_column_types_fail_at_open_naming_the_column() {
        let dir = temp_dir("json-nested");
        std::fs::write(dir.join("a.json"), "{}\n").unwrap();
        let table = schema(&[("tags", DataType::Array(Box::new(DataType::String)))]);
        let mut p = PlanBuilder::new();
        p.source(source_spec(
            "events",
            connector(
                "filesystem",
                &[("path", "a.json"), ("format", "json")],
                dir.to_str().unwrap(),
            ),
            table,
        ));
        let err = crate::run(&p.pipeline, RunOptions::default(), &mut |_, _, _| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("column `tags` of type ARRAY<STRING>"), "{err}");
        let mut p = PlanBuilder::new();
        p.source(source_spec(
            "events",
            connector(
                "filesystem",
                &[("path", "missing.json"), ("format", "json")],
                dir.to_str().unwrap(),
            ),
            schema(&[("id", DataType::BigInt)]),
        ));
        let err = crate::run(&p.pipeline, RunOptions::default(), &mut |_, _, _| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.json"), "{err}");
    }

    #[test]
    fn csv_decodes_quoted_fields_and_nulls() {
        let table = schema(&[
            ("id", DataType::Int),
            ("name", DataType::String),
            ("amount", DataType::Double),
            ("ts", DataType::Timestamp { precision: 3 }),
        ]);
        let data = "1,\"Smith, J\",2.5,2024-01-01 10:00:00\n2,,,\n# comment\n3,\"say \"\"hi\"\"\",1e3,2024-01-01T10:00:01.5\n";
        let (rows, reports, summary, _) = read(
            "csv-ok",
            &[("a.csv", data)],
            "csv",
            table,
            &[("csv.allow-comments", "true")],
        );
        assert!(reports.is_empty(), "{reports:?}");
        assert_eq!(
            rows,
            vec![
                r#"{"id":1,"name":"Smith, J","amount":2.5,"ts":"2024-01-01 10:00:00.000"}"#,
                r#"{"id":2,"name":"","amount":null,"ts":null}"#,
                r#"{"id":3,"name":"say \"hi\"","amount":1000.0,"ts":"2024-01-01 10:00:01.500"}"#,
            ]
        );
        assert_eq!(summary.rows_in(), 3);
    }

    #[test]
    fn malformed_csv_is_reported_with_its_line() {
        let table = schema(&[("id", DataType::Int), ("name", DataType::String)]);
        let data = "1|a\n2|b|extra\nx|c\n4|\"open\n5|e\n";
        let (rows, reports, summary, dir) = read(
            "csv-bad",
            &[("a.csv", data)],
            "csv",
            table,
            &[("csv.field-delimiter", "|"), ("csv.null-literal", "N/A")],
        );
        assert_eq!(
            rows,
            vec![r#"{"id":1,"name":"a"}"#, r#"{"id":5,"name":"e"}"#]
        );
        assert_eq!(summary.malformed(), 3);
        let file = dir.join("in").join("a.csv").display().to_string();
        assert_eq!(reports[0], format!("{file}:2: expected 2 fields, found 3"));
        assert_eq!(
            reports[1],
            format!("{file}:3: column `id`: cannot parse 'x' as INT")
        );
        assert_eq!(reports[2], format!("{file}:4: unterminated quoted field"));
    }
}
