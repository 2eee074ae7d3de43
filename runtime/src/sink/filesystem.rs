//! The `filesystem` sink: `'path'` names one file (created with its directories, replaced on each
//! run), `'format'` = `'json'` (one object per line, keys = column names in order, timestamps as
//! `'YYYY-MM-DD HH:MM:SS.fff'`, decimals as strings, NULL as `null`) or `'csv'` (no header, Flink
//! style quoting, NULL as an empty field; `'csv.field-delimiter'`).
//!
//! Difference from Flink: Flink treats `path` as a directory of part files with a rolling policy;
//! fsql writes the single file named, which is what local runs and tests want.

use std::fs::File;
use std::io::{BufWriter, Write};

use arrow::array::RecordBatch;
use fsql_plan::SinkSpec;

use super::Sink;
use super::row_format::RowFormat;
use crate::error::RuntimeError;
use crate::source::filesystem::table_path;

/// Writes rows to one file as JSON lines or CSV.
pub struct FileSink {
    display: String,
    out: BufWriter<File>,
    format: RowFormat,
    line: String,
    scratch: String,
}

impl FileSink {
    /// Creates (or truncates) the file.
    pub fn open(spec: &SinkSpec) -> Result<FileSink, RuntimeError> {
        let opts = &spec.connector.options;
        let path = table_path(&spec.table, &spec.connector)?;
        let display = path.display().to_string();
        let format = RowFormat::from_options(&spec.table, opts, "format", "", &["json", "csv"])?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| RuntimeError::io(&display, e))?;
        }
        let file = File::create(&path).map_err(|e| RuntimeError::io(&display, e))?;
        Ok(FileSink {
            display,
            out: BufWriter::new(file),
            format,
            line: String::new(),
            scratch: String::new(),
        })
    }
}

impl Sink for FileSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), RuntimeError> {
        self.line.clear();
        for row in 0..batch.num_rows() {
            self.format
                .write(batch, row, &mut self.scratch, &mut self.line);
            self.line.push('\n');
        }
        self.out
            .write_all(self.line.as_bytes())
            .map_err(|e| RuntimeError::io(&self.display, e))?;
        self.out
            .flush()
            .map_err(|e| RuntimeError::io(&self.display, e))
    }

    fn flush(&mut self) -> Result<(), RuntimeError> {
        self.out
            .flush()
            .map_err(|e| RuntimeError::io(&self.display, e))
    }
}
