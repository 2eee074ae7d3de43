//! The Sink node: writes its input to a connector and forwards it (so tests can tap a sink's rows).

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::error::RuntimeError;
use crate::operator::{Changes, Event, Operator, conform_batch};
use crate::sink::Sink;

/// Writes batches to a [`Sink`].
pub struct SinkOperator {
    name: String,
    schema: SchemaRef,
    sink: Box<dyn Sink>,
}

impl SinkOperator {
    /// A node writing to `sink` with the sink table's `schema`.
    pub fn new(name: &str, schema: SchemaRef, sink: Box<dyn Sink>) -> SinkOperator {
        SinkOperator {
            name: name.to_string(),
            schema,
            sink,
        }
    }
}

impl Operator for SinkOperator {
    /// The connector's output position, where it has one (a file's length): the output up to
    /// the checkpoint was flushed first.
    fn snapshot(&mut self, w: &mut crate::state::codec::StateWriter) -> Result<bool, RuntimeError> {
        self.sink.snapshot(w)
    }

    fn restore(
        &mut self,
        r: &mut crate::state::codec::StateReader<'_>,
    ) -> Result<(), RuntimeError> {
        self.sink.restore(r)
    }

    fn checkpoint_complete(&mut self, id: u64) -> Result<(), RuntimeError> {
        self.sink.checkpoint_complete(id)
    }

    fn on_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Vec<Event>,
    ) -> Result<(), RuntimeError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = conform_batch(&self.name, &batch, &self.schema)?;
        self.sink.write(&batch)?;
        out.push(Event::Batch(batch));
        Ok(())
    }

    /// An updating input: connectors that can write it get the kinds (print shows them, a
    /// blackhole drops them); the compiler refuses the others.
    fn on_changes(
        &mut self,
        _input: usize,
        changes: Changes,
        out: &mut Vec<Event>,
    ) -> Result<(), RuntimeError> {
        if changes.batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = conform_batch(&self.name, &changes.batch, &self.schema)?;
        self.sink.write_changes(&batch, &changes.kinds)?;
        out.push(Event::Changes(Changes {
            batch,
            kinds: changes.kinds,
        }));
        Ok(())
    }

    fn on_watermark(
        &mut self,
        _watermark_ms: i64,
        _out: &mut Vec<Event>,
    ) -> Result<(), RuntimeError> {
        Ok(())
    }

    fn flush(&mut self) -> Result<(), RuntimeError> {
        self.sink.flush()
    }

    fn flush_begin(&mut self) -> Result<bool, RuntimeError> {
        self.sink.flush_begin()
    }

    fn flushed(&mut self) -> Result<bool, RuntimeError> {
        self.sink.flushed()
    }

    fn close(&mut self) -> Result<(), RuntimeError> {
        self.sink.flush()
    }
}
