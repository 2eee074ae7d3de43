//! Sinks: connectors that write a table's rows (`INSERT INTO`).
//!
//! | connector | options |
//! |---|---|
//! | `print` | `print-identifier` (prefix `id> `), `standard-error` (`true`: write to stderr) |
//! | `blackhole` | none: rows are counted and discarded |
//! | `filesystem` | `path` (a file), `format` = `json` \| `csv`, `csv.field-delimiter` |
//! | `kafka` | see [`crate::kafka::sink`] |
//! | `upsert-kafka` | the same, keyed by the table's PRIMARY KEY; takes updates |

pub mod blackhole;
pub mod filesystem;
pub mod print;
mod row_format;

pub(crate) use row_format::RowFormat;

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use fsql_plan::SinkSpec;

use crate::error::RuntimeError;

/// A connector that writes batches.
pub trait Sink {
    /// Writes the rows of `batch` (whose schema has the sink table's column names).
    fn write(&mut self, batch: &RecordBatch) -> Result<(), RuntimeError>;

    /// Writes the rows of an updating relation, `kinds` one per row. Only connectors that
    /// can represent updates implement it (the compiler refuses the others, in Flink's words).
    fn write_changes(
        &mut self,
        _batch: &RecordBatch,
        _kinds: &[crate::operator::RowKind],
    ) -> Result<(), RuntimeError> {
        Err(RuntimeError::Plan(
            "this sink doesn't support consuming update changes".into(),
        ))
    }
    /// Makes everything written so far durable/visible.
    fn flush(&mut self) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// [`crate::Operator::flush_begin`] for a connector.
    fn flush_begin(&mut self) -> Result<bool, RuntimeError> {
        self.flush().map(|()| true)
    }

    /// [`crate::Operator::flushed`] for a connector.
    fn flushed(&mut self) -> Result<bool, RuntimeError> {
        Ok(true)
    }

    /// [`crate::Operator::checkpoint_complete`] for a connector.
    fn checkpoint_complete(&mut self, _id: u64) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// What a restore needs to undo output written after a checkpoint (called after
    /// [`Sink::flush`]); `Ok(false)`: nothing, the sink is at-least-once across a restore.
    fn snapshot(
        &mut self,
        _w: &mut crate::state::codec::StateWriter,
    ) -> Result<bool, RuntimeError> {
        Ok(false)
    }

    /// Goes back to the output a [`Sink::snapshot`] described, before anything is written.
    fn restore(
        &mut self,
        _r: &mut crate::state::codec::StateReader<'_>,
    ) -> Result<(), RuntimeError> {
        Ok(())
    }
}

/// Where `print` sinks write: stdout unless the caller provides a writer (tests, the CLI).
#[derive(Clone)]
pub struct PrintTarget(Rc<RefCell<Box<dyn Write>>>);

impl PrintTarget {
    /// A target writing into `writer`.
    pub fn new(writer: Box<dyn Write>) -> Self {
        PrintTarget(Rc::new(RefCell::new(writer)))
    }

    /// Standard output.
    pub fn stdout() -> Self {
        PrintTarget::new(Box::new(std::io::stdout()))
    }

    pub(crate) fn write_all(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut w = self.0.borrow_mut();
        w.write_all(bytes)?;
        w.flush()
    }
}

/// A cloneable in-memory writer, for capturing `print` output in tests.
#[derive(Clone, Debug, Default)]
pub struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        SharedBuffer::default()
    }

    /// Everything written so far, as text.
    pub fn contents(&self) -> String {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.lock() {
            Ok(mut b) => {
                b.extend_from_slice(buf);
                Ok(buf.len())
            }
            Err(_) => Err(std::io::Error::other("buffer poisoned")),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Opens the connector of `spec`.
pub fn open_sink(
    spec: &SinkSpec,
    schema: &arrow::datatypes::SchemaRef,
    print: &PrintTarget,
    transactions: &mut crate::kafka::transaction::Transactions,
) -> Result<Box<dyn Sink>, RuntimeError> {
    match spec.connector.connector.as_str() {
        "print" => Ok(Box::new(print::PrintSink::open(spec, print.clone())?)),
        "blackhole" => Ok(Box::new(blackhole::BlackholeSink)),
        "filesystem" => Ok(Box::new(filesystem::FileSink::open(spec)?)),
        "kafka" => Ok(Box::new(crate::kafka::sink::KafkaSink::open(
            spec,
            schema,
            transactions,
        )?)),
        "upsert-kafka" => Ok(Box::new(
            crate::kafka::sink::KafkaSink::open(spec, schema, transactions)?.upsert(),
        )),
        other => Err(RuntimeError::connector(
            &spec.table,
            format!(
                "connector '{other}' cannot be written by this runtime (known: print, blackhole, filesystem, kafka, upsert-kafka)"
            ),
        )),
    }
}
