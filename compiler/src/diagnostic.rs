//! Diagnostics: errors and warnings with a span, rendered like rustc (file:line:col and a caret line).

use std::fmt::Write;

use serde::Serialize;

use crate::source::{SourceMap, Span};

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One message about the source, with where and (when known) how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    pub span: Option<Span>,
    /// A fix suggestion, e.g. "did you mean `amount`?".
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(message: impl Into<String>, span: impl Into<Option<Span>>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            span: span.into(),
            help: None,
        }
    }

    pub fn warning(message: impl Into<String>, span: impl Into<Option<Span>>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(message, span)
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Renders the diagnostic for a terminal:
    ///
    /// ```text
    /// error: column `amout` not found in `payments`
    ///  --> risk.fsql:12:8
    ///    |
    /// 12 | SELECT amout FROM payments
    ///    |        ^^^^^
    ///    = help: did you mean `amount`?
    /// ```
    pub fn render(&self, sources: &SourceMap) -> String {
        let mut out = String::new();
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(out, "{kind}: {}", self.message);
        if let Some(span) = self.span {
            let file = sources.file(span.file);
            let (line, col) = file.line_col(span.start);
            let (end_line, end_col) = file.line_col(span.end);
            let text = file.line_text(line);
            let gutter = line.to_string().len();
            let pad = " ".repeat(gutter);
            let _ = writeln!(out, "{pad}--> {}:{line}:{col}", file.path.display());
            let _ = writeln!(out, "{pad} |");
            let _ = writeln!(out, "{line} | {text}");
            let width = if end_line == line && end_col > col {
                end_col - col
            } else {
                text.chars().count().saturating_sub(col - 1).max(1)
            };
            let lead: String = text
                .chars()
                .take(col - 1)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let _ = writeln!(out, "{pad} | {lead}{}", "^".repeat(width));
        }
        if let Some(help) = &self.help {
            let _ = writeln!(out, "  = help: {help}");
        }
        out
    }

    /// The machine-readable form used by `fsql check --format json`.
    pub fn to_record(&self, sources: &SourceMap) -> DiagnosticRecord {
        let (file, line, column, end_line, end_column) = match self.span {
            Some(span) => {
                let f = sources.file(span.file);
                let (l, c) = f.line_col(span.start);
                let (el, ec) = f.line_col(span.end);
                (
                    Some(f.path.display().to_string()),
                    Some(l),
                    Some(c),
                    Some(el),
                    Some(ec),
                )
            }
            None => (None, None, None, None, None),
        };
        DiagnosticRecord {
            severity: self.severity,
            message: self.message.clone(),
            file,
            line,
            column,
            end_line,
            end_column,
            help: self.help.clone(),
        }
    }
}

/// A [`Diagnostic`] with its position resolved, as serialised to JSON.
#[derive(Clone, Debug, Serialize)]
pub struct DiagnosticRecord {
    pub severity: Severity,
    pub message: String,
    pub file: Option<String>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub end_line: Option<usize>,
    pub end_column: Option<usize>,
    pub help: Option<String>,
}

/// The closest candidate to `name` by edit distance, if it is close enough to be a likely typo.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&lower, &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= (c.chars().count().max(name.chars().count()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{FileId, SourceFile};

    #[test]
    fn render_points_a_caret_at_the_span() {
        let mut sources = SourceMap::default();
        let text = "CREATE VIEW v AS\nSELECT amout FROM payments;\n";
        let file = sources.add(SourceFile::new("risk.fsql", text.into()));
        let start = text.find("amout").unwrap();
        let d = Diagnostic::error(
            "column `amout` not found",
            Span::new(file, start, start + 5),
        )
        .with_help("did you mean `amount`?");
        let out = d.render(&sources);
        assert!(out.contains("--> risk.fsql:2:8"), "{out}");
        assert!(out.contains("2 | SELECT amout FROM payments"), "{out}");
        assert!(out.contains("  |        ^^^^^\n"), "{out}");
        assert!(out.contains("help: did you mean `amount`?"), "{out}");
        assert_eq!(FileId(0), file);
    }

    #[test]
    fn closest_finds_typos_only() {
        let names = ["amount", "card_id", "ts"];
        assert_eq!(closest("amout", names), Some("amount"));
        assert_eq!(closest("AMOUNT", names), Some("amount"));
        assert_eq!(closest("merchant", names), None);
    }
}
