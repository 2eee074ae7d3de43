//! The operator interface every node of the running DAG implements.
//!
//! The executor calls an operator with the batches of each input (`input` is the position in the
//! node's `inputs`), with its watermark (the minimum over its inputs, only when it advances) and,
//! once every input ended, with `on_end`. Outputs are pushed into `out` and flow on to consumers.
//! Stateful operators (OVER windows, MATCH_RECOGNIZE) buffer rows and emit on watermarks; their
//! state goes into checkpoints through [`Operator::snapshot`] and comes back through
//! [`Operator::restore`].

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;

use crate::error::RuntimeError;
use crate::state::StateSnapshot;
use crate::state::codec::{StateReader, StateWriter};

/// What a row of an updating relation does to it (Flink's `RowKind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RowKind {
    /// `+I`: a new row.
    Insert,
    /// `-U`: retracts a row an update replaces (the next `+U` of the key is its new value).
    UpdateBefore,
    /// `+U`: the new value of an updated row.
    UpdateAfter,
    /// `-D`: retracts a row.
    Delete,
}

impl RowKind {
    /// Flink's short string: `+I`, `-U`, `+U`, `-D`.
    pub fn short(self) -> &'static str {
        match self {
            RowKind::Insert => "+I",
            RowKind::UpdateBefore => "-U",
            RowKind::UpdateAfter => "+U",
            RowKind::Delete => "-D",
        }
    }

    /// The kind [`RowKind::short`] names.
    pub fn from_short(s: &str) -> Option<RowKind> {
        Some(match s {
            "+I" => RowKind::Insert,
            "-U" => RowKind::UpdateBefore,
            "+U" => RowKind::UpdateAfter,
            "-D" => RowKind::Delete,
            _ => return None,
        })
    }

    /// Whether the row is added to the relation (`+I`, `+U`) rather than retracted.
    pub fn is_accumulate(self) -> bool {
        matches!(self, RowKind::Insert | RowKind::UpdateAfter)
    }
}

/// Rows of an updating relation: a batch and, per row, its kind. Append-only relations send
/// plain [`Event::Batch`]es (every row `+I`), so their operators never see kinds.
#[derive(Clone, Debug)]
pub struct Changes {
    pub batch: RecordBatch,
    /// One per row of `batch`.
    pub kinds: Vec<RowKind>,
}

impl Changes {
    /// Rows `rows` of these changes (a filter's survivors).
    pub fn take(&self, node: &str, rows: &[u32]) -> Result<Changes, RuntimeError> {
        let indices = arrow::array::UInt32Array::from(rows.to_vec());
        let batch = arrow::compute::take_record_batch(&self.batch, &indices)
            .map_err(|e| RuntimeError::arrow(node, e))?;
        let kinds = rows
            .iter()
            .filter_map(|&r| self.kinds.get(r as usize).copied())
            .collect();
        Ok(Changes { batch, kinds })
    }
}

/// What flows along the edges of the DAG.
#[derive(Clone, Debug)]
pub enum Event {
    /// Rows of an append-only relation (all `+I`).
    Batch(RecordBatch),
    /// Rows of an updating relation, each with its [`RowKind`].
    Changes(Changes),
    /// Event time has reached this point (epoch ms): no later row on this edge is older (except
    /// late rows). `i64::MAX` means end of input.
    Watermark(i64),
}

/// One node's processing logic.
pub trait Operator {
    /// Processes a batch arriving on input `input`.
    fn on_batch(
        &mut self,
        input: usize,
        batch: RecordBatch,
        out: &mut Vec<Event>,
    ) -> Result<(), RuntimeError>;

    /// Processes changes (rows with kinds) arriving on input `input`, from an updating input. The
    /// compiler only connects updating nodes to operators that consume updates, so the default
    /// refuses (in Flink's words).
    fn on_changes(
        &mut self,
        _input: usize,
        _changes: Changes,
        _out: &mut Vec<Event>,
    ) -> Result<(), RuntimeError> {
        Err(RuntimeError::Plan(
            "this operator doesn't support consuming update changes".into(),
        ))
    }

    /// Event time advanced to `watermark_ms` on all inputs. The default forwards it.
    fn on_watermark(
        &mut self,
        watermark_ms: i64,
        out: &mut Vec<Event>,
    ) -> Result<(), RuntimeError> {
        out.push(Event::Watermark(watermark_ms));
        Ok(())
    }

    /// Input `input` ended (it sends nothing more). The default does nothing.
    fn on_input_end(&mut self, _input: usize, _out: &mut Vec<Event>) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// Every input ended (after the final `i64::MAX` watermark). The default does nothing.
    fn on_end(&mut self, _out: &mut Vec<Event>) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// Rows dropped because they arrived behind the watermark (stateful operators); reported in
    /// the node's metrics.
    fn late_rows(&self) -> u64 {
        0
    }

    /// The rows that arrived late since the last call (in the operator's input schema), for the
    /// pipeline's late-data output. Nothing late is ever dropped silently.
    fn take_late(&mut self) -> Option<RecordBatch> {
        None
    }

    /// Applies a control-stream update between batches (a ruleset's new rules, a model's new
    /// version); `Ok(false)` when the update is not for this operator.
    fn update(
        &mut self,
        _update: &mut crate::control::ControlUpdate,
    ) -> Result<bool, RuntimeError> {
        Ok(false)
    }

    /// Makes everything written so far durable (sinks), so sources may commit their positions.
    fn flush(&mut self) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// Starts making everything written so far durable, without waiting where the sink is told
    /// later (Kafka acknowledgements): `Ok(true)` when it is durable already, otherwise
    /// [`Operator::flushed`] says when. The executor's periodic commits use this pair, so that
    /// committing source positions never stops the pipeline.
    fn flush_begin(&mut self) -> Result<bool, RuntimeError> {
        self.flush().map(|()| true)
    }

    /// Whether what [`Operator::flush_begin`] started is durable now (an error: a write failed).
    fn flushed(&mut self) -> Result<bool, RuntimeError> {
        Ok(true)
    }

    /// Writes the operator's state for a checkpoint (between batches: nothing is in flight).
    /// A stateless operator writes nothing and says so with `Ok(false)`. The default refuses, so
    /// that a stateful operator without checkpoint support can never be checkpointed as if it
    /// had no state: the executor calls this once before the run starts to find out.
    fn snapshot(&mut self, _w: &mut StateWriter) -> Result<bool, RuntimeError> {
        Err(RuntimeError::Checkpoint(
            "this operator's state cannot be checkpointed yet".into(),
        ))
    }

    /// The operator's state for a checkpoint, as the checkpoint's writer thread will write it:
    /// the same bytes as [`Operator::snapshot`], but an operator with large state may return
    /// parts that are encoded later, on that thread, from a view of its state frozen now
    /// ([`StateSnapshot`]), so the pipeline does not wait for the encoding. `None`: stateless.
    /// The default encodes everything now through [`Operator::snapshot`].
    fn snapshot_parts(&mut self) -> Result<Option<StateSnapshot>, RuntimeError> {
        let mut w = StateWriter::default();
        Ok(self
            .snapshot(&mut w)?
            .then(|| StateSnapshot::ready(w.into_bytes())))
    }

    /// Replaces the operator's (empty) state with what [`Operator::snapshot`] wrote.
    fn restore(&mut self, _r: &mut StateReader<'_>) -> Result<(), RuntimeError> {
        Err(RuntimeError::Checkpoint(
            "this operator's state cannot be restored".into(),
        ))
    }

    /// The checkpoint whose state includes everything written so far is durable: a sink that
    /// holds output back until then (a Kafka transaction) releases it. `id` is its number.
    fn checkpoint_complete(&mut self, _id: u64) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// The run is over (ended or stopped): release resources, flush files. Called once.
    fn close(&mut self) -> Result<(), RuntimeError> {
        Ok(())
    }
}

/// The rows an operator received behind the watermark: counted, and kept for the pipeline's
/// late-data output until the executor takes them. Nothing late is ever dropped silently.
#[derive(Debug, Default)]
pub struct LateRows {
    count: u64,
    kept: Vec<RecordBatch>,
}

impl LateRows {
    /// Counts the rows of `batch` at `rows` as late and keeps them.
    pub fn keep(
        &mut self,
        node: &str,
        batch: &RecordBatch,
        rows: Vec<u32>,
    ) -> Result<(), RuntimeError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.count += rows.len() as u64;
        let taken =
            arrow::compute::take_record_batch(batch, &arrow::array::UInt32Array::from(rows))
                .map_err(|e| RuntimeError::arrow(node, e))?;
        self.kept.push(taken);
        Ok(())
    }

    /// Late rows so far (the operator's [`Operator::late_rows`]).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The rows kept since the last call, as one batch (the operator's [`Operator::take_late`]).
    pub fn take(&mut self) -> Option<RecordBatch> {
        let batches = std::mem::take(&mut self.kept);
        let first = batches.first()?;
        arrow::compute::concat_batches(&first.schema(), &batches).ok()
    }
}

/// Re-labels `batch` with `schema` (same number of columns), casting columns whose type differs.
/// Nodes like Union and Sink emit their own schema's column names.
pub fn conform_batch(
    node: &str,
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch, RuntimeError> {
    if batch.schema_ref() == schema {
        return Ok(batch.clone());
    }
    if batch.num_columns() != schema.fields().len() {
        return Err(RuntimeError::Plan(format!(
            "`{node}` expects {} columns but its input has {}",
            schema.fields().len(),
            batch.num_columns()
        )));
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields().iter())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                arrow::compute::cast(c, f.data_type()).map_err(|e| RuntimeError::arrow(node, e))
            }
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options)
        .map_err(|e| RuntimeError::arrow(node, e))
}

/// A batch of `schema` from `columns` (`rows` rows), casting a column whose Arrow type differs from
/// its field's (an operator's result typed `VARCHAR(n)` or `BIGINT` by the plan, say).
pub fn batch_with_schema(
    node: &str,
    schema: &SchemaRef,
    columns: Vec<ArrayRef>,
    rows: usize,
) -> Result<RecordBatch, RuntimeError> {
    let columns = columns
        .into_iter()
        .zip(schema.fields().iter())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c)
            } else {
                arrow::compute::cast(&c, f.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RuntimeError::arrow(node, e))?;
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options)
        .map_err(|e| RuntimeError::arrow(node, e))
}
