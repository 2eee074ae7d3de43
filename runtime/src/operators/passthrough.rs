//! Union (bag union of all inputs) and Collect (query results for the caller): both forward their
//! input batches, re-labelled with the node's own schema.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::error::RuntimeError;
use crate::operator::{Changes, Event, Operator, conform_batch};

/// Forwards batches with the node's schema.
pub struct Passthrough {
    name: String,
    schema: SchemaRef,
}

impl Passthrough {
    /// A pass-through producing `schema`.
    pub fn new(name: &str, schema: SchemaRef) -> Passthrough {
        Passthrough {
            name: name.to_string(),
            schema,
        }
    }
}

impl Operator for Passthrough {
    /// Stateless: nothing to checkpoint.
    fn snapshot(
        &mut self,
        _w: &mut crate::state::codec::StateWriter,
    ) -> Result<bool, RuntimeError> {
        Ok(false)
    }

    fn on_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Vec<Event>,
    ) -> Result<(), RuntimeError> {
        if batch.num_rows() > 0 {
            out.push(Event::Batch(conform_batch(
                &self.name,
                &batch,
                &self.schema,
            )?));
        }
        Ok(())
    }

    /// An updating input's changes, kinds kept.
    fn on_changes(
        &mut self,
        _input: usize,
        changes: Changes,
        out: &mut Vec<Event>,
    ) -> Result<(), RuntimeError> {
        if changes.batch.num_rows() > 0 {
            out.push(Event::Changes(Changes {
                batch: conform_batch(&self.name, &changes.batch, &self.schema)?,
                kinds: changes.kinds,
            }));
        }
        Ok(())
    }
}
