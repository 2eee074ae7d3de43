//! The late-data output: `SET 'pipeline.late-data.path'` names a file that receives one JSON line
//! per row a stateful operator could not use because it arrived behind the watermark,
//! `{"operator": name, "row": {...}}`, appended. Late rows are counted either way.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use arrow::array::RecordBatch;

use crate::error::RuntimeError;
use crate::format::json_row;
use crate::text::push_json_string;

/// The pipeline option naming the late-data file.
pub const LATE_DATA_PATH: &str = "pipeline.late-data.path";

/// Appends late rows to the late-data file, opened on first use.
pub struct LateData {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    line: String,
}

impl LateData {
    /// A writer to `path` (created or appended to on the first late row).
    pub fn new(path: PathBuf) -> Self {
        LateData {
            path,
            file: None,
            line: String::new(),
        }
    }

    /// Appends the rows of `batch`, which `operator` received late.
    pub fn write(&mut self, operator: &str, batch: &RecordBatch) -> Result<(), RuntimeError> {
        let display = self.path.display().to_string();
        if self.file.is_none() {
            if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| RuntimeError::io(&display, e))?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| RuntimeError::io(&display, e))?;
            self.file = Some(BufWriter::new(file));
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        for row in 0..batch.num_rows() {
            self.line.clear();
            self.line.push_str("{\"operator\":");
            push_json_string(operator, &mut self.line);
            self.line.push_str(",\"row\":");
            json_row(batch, row, &mut self.line);
            self.line.push_str("}\n");
            file.write_all(self.line.as_bytes())
                .map_err(|e| RuntimeError::io(&display, e))?;
        }
        file.flush().map_err(|e| RuntimeError::io(&display, e))
    }
}
