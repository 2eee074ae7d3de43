//! The `filesystem` sink: `'path'` names one file (created with its directories, replaced on each
//! run), `'format'` = `'json'` (one object per line, keys = column names in order, timestamps as
//! `'YYYY-MM-DD HH:MM:SS.fff'`, decimals as strings, NULL as `null`) or `'csv'` (no header, Flink
//! style quoting, NULL as an empty field; `'csv.field-delimiter'`).
//!
//! Difference from Flink: Flink treats `path` as a directory of part files with a rolling policy;
//! fsql writes the single file named, which is what local runs and tests want.
//!
//! With checkpoints the file is exactly-once: a checkpoint records its length, and a run that
//! resumes from it cuts the file back to that length before writing, so rows written after the
//! checkpoint by a run that crashed are not repeated.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};

use arrow::array::RecordBatch;
use fsql_plan::SinkSpec;

use super::Sink;
use super::row_format::RowFormat;
use crate::error::RuntimeError;
use crate::source::filesystem::table_path;
use crate::state::codec::{StateReader, StateWriter};

/// Writes rows to one file as JSON lines or CSV.
pub struct FileSink {
    display: String,
    /// The length the file is cut to before the first write: 0 (replaced on each run) or a
    /// restored checkpoint's length.
    start: Option<u64>,
    /// The file's length once what was written is flushed.
    written: u64,
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
        // Not truncated yet: a restore may keep a prefix (see `start`).
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| RuntimeError::io(&display, e))?;
        Ok(FileSink {
            display,
            start: Some(0),
            written: 0,
            out: BufWriter::new(file),
            format,
            line: String::new(),
            scratch: String::new(),
        })
    }
}

impl FileSink {
    /// Cuts the file to its start length, once, before anything is written.
    fn begin(&mut self) -> Result<(), RuntimeError> {
        if let Some(len) = self.start.take() {
            let file = self.out.get_mut();
            file.set_len(len)
                .and_then(|()| file.seek(SeekFrom::Start(len)).map(|_| ()))
                .map_err(|e| RuntimeError::io(&self.display, e))?;
            self.written = len;
        }
        Ok(())
    }
}

impl Sink for FileSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), RuntimeError> {
        self.begin()?;
        self.line.clear();
        for row in 0..batch.num_rows() {
            self.format
                .write(batch, row, &mut self.scratch, &mut self.line);
            self.line.push('\n');
        }
        self.out
            .write_all(self.line.as_bytes())
            .map_err(|e| RuntimeError::io(&self.display, e))?;
        self.written += self.line.len() as u64;
        self.out
            .flush()
            .map_err(|e| RuntimeError::io(&self.display, e))
    }

    fn flush(&mut self) -> Result<(), RuntimeError> {
        self.begin()?;
        self.out
            .flush()
            .map_err(|e| RuntimeError::io(&self.display, e))
    }

    /// The file's length, synced to disk (the checkpoint must not count rows a crash loses).
    fn snapshot(&mut self, w: &mut StateWriter) -> Result<bool, RuntimeError> {
        if let Some(len) = self.start {
            // Nothing written yet (the file is not even cut yet): the length it starts at.
            w.u64(len);
            return Ok(true);
        }
        self.flush()?;
        self.out
            .get_ref()
            .sync_data()
            .map_err(|e| RuntimeError::io(&self.display, e))?;
        w.u64(self.written);
        Ok(true)
    }

    fn restore(&mut self, r: &mut StateReader<'_>) -> Result<(), RuntimeError> {
        let len = r.u64().map_err(|e| RuntimeError::state(&self.display, e))?;
        let on_disk = self
            .out
            .get_ref()
            .metadata()
            .map_err(|e| RuntimeError::io(&self.display, e))?
            .len();
        if on_disk < len {
            return Err(RuntimeError::Checkpoint(format!(
                "{}: the file has {on_disk} bytes, fewer than the {len} the checkpoint wrote",
                self.display
            )));
        }
        self.start = Some(len);
        Ok(())
    }
}
