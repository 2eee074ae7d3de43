//! Test inputs (`fsql test`): a source's connector replaced by given batches and watermarks.
//!
//! A batch may have the table's physical columns (computed columns are then evaluated as for a
//! connector) or all of its output columns; columns are cast to the declared types (so a test can
//! build `INT` columns as Arrow `Int64`). When the items include any explicit watermark, the
//! table's `WATERMARK FOR` is not applied: the test controls event time entirely.

use std::collections::VecDeque;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;

use super::{Source, SourceContext, SourcePoll};
use crate::error::RuntimeError;

/// One item of a test input stream.
#[derive(Clone, Debug)]
pub enum TestInput {
    /// Rows, in the table's physical or output schema.
    Batch(RecordBatch),
    /// A watermark in epoch milliseconds.
    Watermark(i64),
}

/// A source replaying test inputs.
pub struct TestSource {
    table: String,
    items: VecDeque<TestInput>,
    physical: SchemaRef,
    output: SchemaRef,
}

impl TestSource {
    /// A source replaying `items` for `table`.
    pub fn new(
        table: &str,
        items: Vec<TestInput>,
        physical: SchemaRef,
        output: SchemaRef,
    ) -> TestSource {
        TestSource {
            table: table.to_string(),
            items: items.into(),
            physical,
            output,
        }
    }

    /// Whether the inputs carry their own watermarks.
    pub fn has_explicit_watermarks(&self) -> bool {
        self.items
            .iter()
            .any(|i| matches!(i, TestInput::Watermark(_)))
    }

    fn conform(&self, batch: &RecordBatch) -> Result<RecordBatch, RuntimeError> {
        let n = batch.num_columns();
        let target = if n == self.physical.fields().len() {
            &self.physical
        } else if n == self.output.fields().len() {
            &self.output
        } else {
            return Err(RuntimeError::TestInput {
                table: self.table.clone(),
                message: format!(
                    "a batch has {n} columns; the table has {} physical and {} output columns",
                    self.physical.fields().len(),
                    self.output.fields().len()
                ),
            });
        };
        let columns = batch
            .columns()
            .iter()
            .zip(target.fields().iter())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c.clone())
                } else {
                    arrow::compute::cast(c, f.data_type()).map_err(|e| RuntimeError::TestInput {
                        table: self.table.clone(),
                        message: format!("column `{}`: {e}", f.name()),
                    })
                }
            })
            .collect::<Result<Vec<ArrayRef>, _>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        RecordBatch::try_new_with_options(target.clone(), columns, &options).map_err(|e| {
            RuntimeError::TestInput {
                table: self.table.clone(),
                message: e.to_string(),
            }
        })
    }
}

impl Source for TestSource {
    fn poll(&mut self, _ctx: &mut SourceContext<'_>) -> Result<SourcePoll, RuntimeError> {
        match self.items.pop_front() {
            None => Ok(SourcePoll::End),
            Some(TestInput::Watermark(w)) => Ok(SourcePoll::Watermark(w)),
            Some(TestInput::Batch(b)) => Ok(SourcePoll::Batch(self.conform(&b)?)),
        }
    }
}
