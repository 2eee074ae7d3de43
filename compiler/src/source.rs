//! Source files and spans: every diagnostic points at a byte range of one file.

use std::path::{Path, PathBuf};

/// Identifies a file in a [`SourceMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub u32);

/// A byte range `start..end` of one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Span {
    pub file: FileId,
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(file: FileId, start: usize, end: usize) -> Span {
        Span {
            file,
            start,
            end: end.max(start),
        }
    }

    /// The smallest span covering both (same file assumed; otherwise `self`).
    pub fn to(self, other: Span) -> Span {
        if self.file != other.file {
            return self;
        }
        Span::new(
            self.file,
            self.start.min(other.start),
            self.end.max(other.end),
        )
    }
}

/// One loaded file.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(path: impl Into<PathBuf>, text: String) -> SourceFile {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceFile {
            path: path.into(),
            text,
            line_starts,
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self
            .line_starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1);
        let start = self.line_starts[line];
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, col + 1)
    }

    /// The text of 1-based line `line`, without its newline.
    pub fn line_text(&self, line: usize) -> &str {
        let Some(&start) = self.line_starts.get(line.saturating_sub(1)) else {
            return "";
        };
        let end = self.line_starts.get(line).map_or(self.text.len(), |&e| e);
        self.text
            .get(start..end)
            .unwrap_or("")
            .trim_end_matches(['\n', '\r'])
    }

    /// The directory relative paths in this file resolve against.
    pub fn dir(&self) -> PathBuf {
        self.path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    }
}

/// All files of one compilation (the main file and what it includes).
#[derive(Debug, Default, Clone)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn add(&mut self, file: SourceFile) -> FileId {
        self.files.push(file);
        FileId(self.files.len() as u32 - 1)
    }

    pub fn file(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    pub fn files(&self) -> &[SourceFile] {
        &self.files
    }
}

/// Converts positions inside a substring (a statement or an expression handed to sqlparser,
/// which reports 1-based line/column) back to byte offsets of the file.
#[derive(Clone, Copy, Debug)]
pub struct Snippet<'a> {
    pub file: FileId,
    /// Byte offset of the snippet's first character in the file.
    pub base: usize,
    pub text: &'a str,
}

impl Snippet<'_> {
    /// The byte offset in the file of sqlparser's 1-based (line, column) within this snippet.
    pub fn offset(&self, line: u64, column: u64) -> usize {
        if line == 0 {
            return self.base;
        }
        let mut rel = 0;
        for _ in 1..line {
            match self.text[rel..].find('\n') {
                Some(i) => rel += i + 1,
                None => return self.base + self.text.len(),
            }
        }
        let rest = &self.text[rel..];
        let col = rest
            .char_indices()
            .nth(column.saturating_sub(1) as usize)
            .map_or(rest.len(), |(i, _)| i);
        self.base + rel + col
    }

    /// A file span from a sqlparser span, or the whole snippet when the span is empty.
    pub fn span(&self, span: sqlparser::tokenizer::Span) -> Span {
        self.between(
            (span.start.line, span.start.column),
            (span.end.line, span.end.column),
        )
    }

    /// A file span from a DataFusion span (DataFusion keeps its own copy of sqlparser's).
    pub fn df_span(&self, span: datafusion::common::Span) -> Span {
        self.between(
            (span.start.line, span.start.column),
            (span.end.line, span.end.column),
        )
    }

    /// The file span between two 1-based (line, column) positions; the whole snippet when unknown.
    fn between(&self, start: (u64, u64), end: (u64, u64)) -> Span {
        if start.0 == 0 {
            return self.whole();
        }
        Span::new(
            self.file,
            self.offset(start.0, start.1),
            self.offset(end.0, end.1),
        )
    }

    pub fn whole(&self) -> Span {
        Span::new(self.file, self.base, self.base + self.text.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        let f = SourceFile::new("a.fsql", "ab\ncé x\n".into());
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(3), (2, 1));
        let x = f.text.find('x').unwrap();
        assert_eq!(f.line_col(x), (2, 4));
        assert_eq!(f.line_text(2), "cé x");
    }

    #[test]
    fn snippet_maps_sqlparser_positions() {
        let text = "xx SELECT a,\n  b FROM t";
        let s = Snippet {
            file: FileId(0),
            base: 3,
            text: &text[3..],
        };
        assert_eq!(s.offset(1, 1), 3);
        assert_eq!(&text[s.offset(2, 3)..s.offset(2, 4)], "b");
    }
}
