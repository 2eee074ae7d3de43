//! The late-data output: `SET 'pipeline.late-data.path'` names a file that receives one JSON line
//! per row a stateful operator could not use because it arrived behind the watermark,
//! `{"operator": name, "row": {...}}`, appended. Late rows are counted either way.

use std::path::PathBuf;

use arrow::array::RecordBatch;

use crate::append_file::AppendFile;
use crate::error::RuntimeError;
use crate::format::json_row;
use crate::text::push_json_string;

/// The pipeline option naming the late-data file.
pub const LATE_DATA_PATH: &str = "pipeline.late-data.path";

/// Appends late rows to the late-data file, opened on first use.
pub struct LateData {
    file: AppendFile,
    text: String,
}

impl LateData {
    /// A writer to `path` (created or appended to on the first late row).
    pub fn new(path: PathBuf) -> Self {
        LateData {
            file: AppendFile::new(path),
            text: String::new(),
        }
    }

    /// Appends the rows of `batch`, which `operator` received late.
    pub fn write(&mut self, operator: &str, batch: &RecordBatch) -> Result<(), RuntimeError> {
        self.text.clear();
        for row in 0..batch.num_rows() {
            self.text.push_str("{\"operator\":");
            push_json_string(operator, &mut self.text);
            self.text.push_str(",\"row\":");
            json_row(batch, row, &mut self.text);
            self.text.push_str("}\n");
        }
        self.file.append(&self.text)
    }
}
