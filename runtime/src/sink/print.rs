//! The `print` sink, Flink's format: one line per row, `+I[v1, v2, ...]`, values as Java's
//! `toString` of Flink's external types (timestamps `2024-01-01T10:00:00.123`, `null`...), with
//! `'print-identifier'` = `id` prefixing `id> `. `'standard-error'` = `'true'` writes to stderr.

use arrow::array::RecordBatch;
use fsql_plan::SinkSpec;

use super::{PrintTarget, Sink};
use crate::error::RuntimeError;
use crate::format::flink_row;
use crate::operator::RowKind;

/// Prints rows like Flink's print connector.
pub struct PrintSink {
    table: String,
    prefix: String,
    target: PrintTarget,
    text: String,
}

impl PrintSink {
    /// A print sink for `spec` writing to `target` (or stderr with `'standard-error'`).
    pub fn open(spec: &SinkSpec, target: PrintTarget) -> Result<PrintSink, RuntimeError> {
        let opts = &spec.connector.options;
        let prefix = opts
            .get("print-identifier")
            .map(|id| format!("{id}> "))
            .unwrap_or_default();
        let stderr = crate::source::option_bool(opts, &spec.table, "standard-error")?;
        let target = if stderr {
            PrintTarget::new(Box::new(std::io::stderr()))
        } else {
            target
        };
        Ok(PrintSink {
            table: spec.table.clone(),
            prefix,
            target,
            text: String::new(),
        })
    }
}

impl PrintSink {
    /// Prints every row of `batch`, row `i` of kind `kind(i)`.
    fn print(
        &mut self,
        batch: &RecordBatch,
        kind: impl Fn(usize) -> RowKind,
    ) -> Result<(), RuntimeError> {
        self.text.clear();
        for row in 0..batch.num_rows() {
            self.text.push_str(&self.prefix);
            flink_row(batch, row, kind(row), &mut self.text);
            self.text.push('\n');
        }
        self.target
            .write_all(self.text.as_bytes())
            .map_err(|e| RuntimeError::io(format!("print sink `{}`", self.table), e))
    }
}

impl Sink for PrintSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), RuntimeError> {
        self.print(batch, |_| RowKind::Insert)
    }

    /// Each row with its kind, as Flink prints them: `-U[...]`, `+U[...]`, `-D[...]`.
    fn write_changes(
        &mut self,
        batch: &RecordBatch,
        kinds: &[RowKind],
    ) -> Result<(), RuntimeError> {
        self.print(batch, |i| kinds.get(i).copied().unwrap_or(RowKind::Insert))
    }
}
