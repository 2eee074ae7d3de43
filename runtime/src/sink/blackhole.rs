//! The `blackhole` sink: discards rows (the executor still counts them). For benchmarks.

use arrow::array::RecordBatch;

use super::Sink;
use crate::error::RuntimeError;

/// Discards everything.
pub struct BlackholeSink;

impl Sink for BlackholeSink {
    fn write(&mut self, _batch: &RecordBatch) -> Result<(), RuntimeError> {
        Ok(())
    }

    fn write_changes(
        &mut self,
        _batch: &RecordBatch,
        _kinds: &[crate::operator::RowKind],
    ) -> Result<(), RuntimeError> {
        Ok(())
    }
}
