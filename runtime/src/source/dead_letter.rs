//! The dead-letter file: fsql's table option `'dead-letter.path'` names a file that receives one
//! JSON line per malformed record, `{"source", "file", "line", "error", "raw"}`, appended.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use super::MalformedRecord;
use crate::error::RuntimeError;
use crate::text::push_json_string;

/// The fsql table option naming the dead-letter file.
pub const DEAD_LETTER_PATH: &str = "dead-letter.path";

/// Appends malformed records to a dead-letter file, opened on first use.
pub struct DeadLetter {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    line: String,
}

impl DeadLetter {
    /// A writer to `path` (created or appended to on the first record).
    pub fn new(path: PathBuf) -> Self {
        DeadLetter {
            path,
            file: None,
            line: String::new(),
        }
    }

    /// Appends one record.
    pub fn write(&mut self, record: &MalformedRecord) -> Result<(), RuntimeError> {
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
        self.line.clear();
        self.line.push_str("{\"source\":");
        push_json_string(&record.table, &mut self.line);
        self.line.push_str(",\"file\":");
        match &record.file {
            Some(f) => push_json_string(f, &mut self.line),
            None => self.line.push_str("null"),
        }
        self.line.push_str(",\"line\":");
        match record.line {
            Some(n) => self.line.push_str(&n.to_string()),
            None => self.line.push_str("null"),
        }
        self.line.push_str(",\"error\":");
        push_json_string(&record.error, &mut self.line);
        self.line.push_str(",\"raw\":");
        push_json_string(&record.raw, &mut self.line);
        self.line.push_str("}\n");
        if let Some(file) = self.file.as_mut() {
            file.write_all(self.line.as_bytes())
                .map_err(|e| RuntimeError::io(&display, e))?;
            // Malformed records are rare: flush each so the file is complete even after a crash.
            file.flush().map_err(|e| RuntimeError::io(&display, e))?;
        }
        Ok(())
    }
}
