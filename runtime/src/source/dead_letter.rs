//! The dead-letter file: fsql's table option `'dead-letter.path'` names a file that receives one
//! JSON line per malformed record, `{"source", "file", "line", "error", "raw"}` (plus `"origin"`,
//! `topic/partition@offset`, for Kafka records), appended.

use std::path::PathBuf;

use super::MalformedRecord;
use crate::append_file::AppendFile;
use crate::error::RuntimeError;
use crate::text::push_json_string;

/// The fsql table option naming the dead-letter file.
pub const DEAD_LETTER_PATH: &str = "dead-letter.path";

/// Appends malformed records to a dead-letter file, opened on first use.
pub struct DeadLetter {
    file: AppendFile,
    line: String,
}

impl DeadLetter {
    /// A writer to `path` (created or appended to on the first record).
    pub fn new(path: PathBuf) -> Self {
        DeadLetter {
            file: AppendFile::new(path),
            line: String::new(),
        }
    }

    /// Appends one record (flushed at once: malformed records are rare, and the file must be
    /// complete even after a crash).
    pub fn write(&mut self, record: &MalformedRecord) -> Result<(), RuntimeError> {
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
        if let Some(origin) = &record.origin {
            self.line.push_str(",\"origin\":");
            push_json_string(origin, &mut self.line);
        }
        self.line.push_str(",\"error\":");
        push_json_string(&record.error, &mut self.line);
        self.line.push_str(",\"raw\":");
        push_json_string(&record.raw, &mut self.line);
        self.line.push_str("}\n");
        self.file.append(&self.line)
    }
}
