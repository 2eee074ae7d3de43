//! An append-only file of lines, created (with its directory) on the first write and flushed after
//! each write, so what it holds survives a crash. The dead-letter and late-data outputs use it.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use crate::error::RuntimeError;

/// A lazily opened append-only file.
pub struct AppendFile {
    path: PathBuf,
    file: Option<BufWriter<File>>,
}

impl AppendFile {
    /// A writer to `path`; nothing is created until the first write.
    pub fn new(path: PathBuf) -> Self {
        AppendFile { path, file: None }
    }

    /// Appends `text` (whole lines) and flushes.
    pub fn append(&mut self, text: &str) -> Result<(), RuntimeError> {
        let display = || self.path.display().to_string();
        if self.file.is_none() {
            if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| RuntimeError::io(display(), e))?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| RuntimeError::io(display(), e))?;
            self.file = Some(BufWriter::new(file));
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        file.write_all(text.as_bytes())
            .and_then(|()| file.flush())
            .map_err(|e| RuntimeError::io(self.path.display().to_string(), e))
    }
}
