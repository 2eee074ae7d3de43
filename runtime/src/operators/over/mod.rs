//! OVER aggregation: `agg(...) OVER (PARTITION BY k ORDER BY rowtime <frame>)`. Every input row
//! is emitted once, with one column per aggregate appended (output = input columns + aggregates).
//!
//! Frames end at the current row: `RANGE p PRECEDING` covers event times `[t - p, t]` (both ends
//! inclusive), `RANGE UNBOUNDED` everything up to `t`; RANGE frames process rows with equal
//! event times (peers) as one group, so peers get equal results. `ROWS n PRECEDING` covers the
//! row and the `n` before it, `ROWS UNBOUNDED` every row so far; ROWS frames process peers one by
//! one in arrival order. LAG takes the value `offset` rows back in processing order (relative to
//! the last peer under a RANGE frame, as Flink does).
//!
//! Two emit disciplines ([`EmitMode`]):
//! * **Watermark** (Flink's event-time semantics): rows wait until the watermark passes their
//!   event time, then all of them with event time ≤ the watermark are processed in (event time,
//!   arrival) order and emitted in that order, before the watermark is forwarded. A row arriving
//!   with an event time ≤ the current watermark is late: counted ([`Over::late_rows`]) and
//!   dropped. The final watermark (`i64::MAX`) flushes everything.
//! * **Arrival**: each row is processed and emitted at once, in input order, with the state seen
//!   so far (earlier peers included, later ones not). A row older than its partition's newest is
//!   still inserted in event-time order, so later rows see it; its own result is exact for
//!   bounded frames and LAG when it is not behind the watermark, and covers what is retained
//!   otherwise (see [`partition::PartitionMut::process_out_of_order`]).
//!
//! State per partition: the rows some frame still needs (RANGE: the last `p` of event time;
//! ROWS: the last `n` rows; LAG: the last `offset` rows; unbounded frames: none; in arrival mode
//! also what rows newer than the watermark could still need) and one accumulator per aggregate. When every aggregate is a sliding RANGE frame, partitions whose
//! newest row fell out of every frame at the watermark are dropped. A row with a NULL event time
//! cannot be ordered: it is dropped and counted as late.
//!
//! Modules: [`layout`] (the compiled spec), [`partition`]
//! (per-key state and frame logic), [`pending`] (rows waiting for the watermark).

mod layout;
mod partition;
mod pending;

use std::collections::VecDeque;

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, RecordBatchOptions, UInt32Array};
use arrow::compute::kernels::interleave::interleave;
use arrow::compute::{cast, filter_record_batch, is_not_null, take};
use arrow::datatypes::{DataType as ArrowType, Schema as ArrowSchema, SchemaRef, TimeUnit};
use fsql_plan::{EmitMode, OverSpec};

use crate::compiled::ExprGroup;
use crate::error::RuntimeError;
use crate::operator::{Event, LateRows, Operator};
use crate::state::codec::{StateError, StateReader, StateWriter, widen};
use crate::state::{StateBackend, StateSnapshot};

use self::layout::Layout;
use self::partition::{BatchColumns, OneBatch, Partitions, RowRef};
use self::pending::Pending;
use crate::operators::agg::key::KeyEncoder;
use crate::operators::agg::value::{Repr, Value, ValueColumn, build_array};

/// Rows per output batch at most (a watermark that releases more emits several batches).
const MAX_OUTPUT_ROWS: usize = 64 * 1024;

/// The unit of the event-time column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    Seconds,
    Millis,
    Micros,
    Nanos,
}

impl Unit {
    /// Milliseconds (a watermark, a RANGE offset) in this unit; seconds round down, which keeps
    /// `ts ≤ w` and `ts ≥ t - p` exact for whole-second event times.
    fn of_ms(self, ms: i64) -> i64 {
        match self {
            Unit::Seconds => ms.div_euclid(1000),
            Unit::Millis => ms,
            Unit::Micros => ms.saturating_mul(1000),
            Unit::Nanos => ms.saturating_mul(1_000_000),
        }
    }
}

/// An expiry check: partition `pid` may be droppable once the watermark reaches `at`. A
/// partition has exactly one (queued when it is created), and only its check removes it, so a check never
/// outlives its partition and needs no generation to tell a reused id apart.
///
/// Packed to 12 bytes: one per partition of eleven million in the reference pipeline at a
/// million cards.
#[derive(Clone, Copy, Debug)]
#[repr(C, packed(4))]
struct Expiry {
    at: i64,
    pid: u32,
}

const _: () = assert!(std::mem::size_of::<Expiry>() == 12);

/// The OVER operator.
pub struct Over {
    name: String,
    schema: SchemaRef,
    input_width: usize,
    emit: EmitMode,
    layout: Layout,
    keys: KeyEncoder,
    order_by: usize,
    unit: Unit,
    partitions: Partitions,
    /// Where partitions' rows live (kept for restores).
    backend: StateBackend,
    pending: Pending,
    /// The current watermark in the event-time unit.
    watermark: i64,
    /// Arrival sequence of the next row.
    seq: u64,
    late: LateRows,
    expiry: VecDeque<Expiry>,
    /// Results of the rows being processed: one vector per aggregate, by output position.
    results: Vec<Vec<Value>>,
    ready: Vec<RowRef>,
    /// Arrival mode: the partitions of the batch's rows.
    pids: Vec<u32>,
    /// The stored arguments, then the LAG defaults (`layout.stored`, `layout.defaults`).
    args: ExprGroup,
}

impl Over {
    /// An OVER node reading `input` and producing `schema` (the input columns, then one column
    /// per aggregate), emitting as `emit` says.
    pub fn new(
        name: &str,
        spec: &OverSpec,
        input: &ArrowSchema,
        schema: SchemaRef,
        emit: EmitMode,
        state_ttl_ms: Option<i64>,
        backend: &StateBackend,
    ) -> Result<Over, RuntimeError> {
        let plan_err = |m: String| RuntimeError::Plan(format!("OVER node `{name}`: {m}"));
        let n_aggs = spec.aggregates.len();
        let input_width = input.fields().len();
        if schema.fields().len() != input_width + n_aggs {
            return Err(plan_err(format!(
                "its output has {} columns, expected {input_width} input columns + {n_aggs} aggregates",
                schema.fields().len()
            )));
        }
        let order = input.fields().get(spec.order_by).ok_or_else(|| {
            plan_err(format!("ORDER BY column ${} does not exist", spec.order_by))
        })?;
        let unit = match order.data_type() {
            ArrowType::Timestamp(TimeUnit::Second, _) => Unit::Seconds,
            ArrowType::Timestamp(TimeUnit::Millisecond, _) | ArrowType::Int64 => Unit::Millis,
            ArrowType::Timestamp(TimeUnit::Microsecond, _) => Unit::Micros,
            ArrowType::Timestamp(TimeUnit::Nanosecond, _) => Unit::Nanos,
            other => {
                return Err(plan_err(format!(
                    "ORDER BY `{}` must be an event-time attribute, not {other}",
                    order.name()
                )));
            }
        };
        if let Some(c) = spec.partition_by.iter().find(|c| **c >= input_width) {
            return Err(plan_err(format!("PARTITION BY column ${c} does not exist")));
        }
        let targets: Vec<ArrowType> = schema.fields()[input_width..]
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let mut layout = Layout::new(spec, |ms| unit.of_ms(ms), &targets).map_err(plan_err)?;
        // State TTL (event time): a key idle for longer than the TTL behind the watermark is dropped.
        if let Some(ttl) = state_ttl_ms {
            let ttl = unit.of_ms(ttl);
            layout.expire_after = Some(layout.expire_after.map_or(ttl, |a| a.min(ttl)));
        }
        let args = ExprGroup::new(
            layout
                .stored
                .iter()
                .map(|(e, _)| e.clone())
                .chain(layout.defaults.iter().map(|(e, _)| e.clone()))
                .collect(),
        );
        Ok(Over {
            name: name.to_string(),
            schema,
            input_width,
            emit,
            args,
            results: vec![Vec::new(); layout.aggs.len()],
            keys: KeyEncoder::new(spec.partition_by.clone()),
            order_by: spec.order_by,
            unit,
            partitions: Partitions::new(backend, name, &layout),
            layout,
            backend: backend.clone(),
            pending: Pending::new(),
            watermark: i64::MIN,
            seq: 0,
            late: LateRows::default(),
            expiry: VecDeque::new(),
            ready: Vec::new(),
            pids: Vec::new(),
        })
    }

    /// Rows dropped because they arrived behind the watermark (or had no event time).
    pub fn late_rows(&self) -> u64 {
        self.late.count()
    }

    /// Partitions with state.
    pub fn partitions(&self) -> usize {
        self.partitions.len()
    }

    /// Rows waiting for the watermark (watermark mode).
    pub fn pending_rows(&self) -> usize {
        self.pending.len()
    }

    /// Input batches held for waiting rows (watermark mode).
    pub fn pending_batches(&self) -> usize {
        self.pending.batches()
    }

    /// Rows kept for the frames, over all partitions.
    pub fn retained_rows(&self) -> usize {
        self.partitions.retained_rows()
    }

    /// Keeps the backend's resident budget of partitions in memory, failing the batch when a
    /// spilled partition could not be read back.
    fn settle(&mut self) -> Result<(), RuntimeError> {
        self.partitions
            .settle()
            .map_err(|e| RuntimeError::backend(&self.name, e))
    }

    fn arrow_err(&self, e: arrow::error::ArrowError) -> RuntimeError {
        RuntimeError::arrow(&self.name, e)
    }

    fn check_width(&self, batch: &RecordBatch) -> Result<(), RuntimeError> {
        if batch.num_columns() == self.input_width {
            Ok(())
        } else {
            Err(RuntimeError::Plan(format!(
                "OVER node `{}` expects {} input columns but a batch has {}",
                self.name,
                self.input_width,
                batch.num_columns()
            )))
        }
    }

    /// The event times of `batch` in the column's unit.
    fn event_times(&self, batch: &RecordBatch) -> Result<Int64Array, RuntimeError> {
        crate::operators::agg::value::widen(batch.column(self.order_by))
            .map_err(|e| self.arrow_err(e))
    }

    /// The same node with its arguments computed by compiled code where the JIT reaches.
    pub fn compiled(mut self, input: &ArrowSchema) -> Over {
        self.args.compile(input);
        self
    }

    /// Evaluates the aggregates' arguments over `batch` (once per batch).
    fn evaluate(&mut self, batch: &RecordBatch) -> Result<BatchColumns, RuntimeError> {
        let values = self
            .args
            .evaluate(batch)
            .map_err(|e| RuntimeError::eval(&self.name, e))?;
        let (stored, defaults) = values.split_at(self.layout.stored.len());
        let mut columns = BatchColumns::default();
        for (c, (a, (_, repr))) in stored.iter().zip(&self.layout.stored).enumerate() {
            let column = ValueColumn::new(a, *repr).map_err(|e| self.arrow_err(e))?;
            // Word columns are kept packed per row (`Layout::word_columns`), which holds for the
            // types the layout chose them by.
            if c < 64 && self.layout.word_columns & (1 << c) != 0 && !column.has_words() {
                return Err(RuntimeError::Plan(format!(
                    "OVER node `{}`: argument {c} is {}, not a number or boolean",
                    self.name,
                    a.data_type()
                )));
            }
            columns.stored.push(column);
        }
        for (a, (_, t)) in defaults.iter().zip(&self.layout.defaults) {
            let mut a = a.clone();
            if a.data_type() != t {
                a = cast(&a, t).map_err(|e| self.arrow_err(e))?;
            }
            columns
                .defaults
                .push(ValueColumn::new(&a, Repr::Full).map_err(|e| self.arrow_err(e))?);
        }
        Ok(columns)
    }

    /// Clears the result vectors and sizes them for `len` rows.
    fn reset_results(&mut self, len: usize) {
        for r in &mut self.results {
            r.clear();
            r.resize(len, Value::Null);
        }
    }

    /// Watermark mode: keeps the batch's on-time rows until the watermark passes them.
    fn buffer(&mut self, batch: RecordBatch) -> Result<(), RuntimeError> {
        let n = batch.num_rows();
        let ts = self.event_times(&batch)?;
        let late: Vec<u32> = (0..n)
            .filter(|&i| ts.is_null(i) || is_late(ts.value(i), self.watermark))
            .map(|i| i as u32)
            .collect();
        self.late.keep(&self.name, &batch, late)?;
        let keys = self.keys.encode(&batch).map_err(|e| self.arrow_err(e))?;
        let columns = self.evaluate(&batch)?;
        let slot = self.pending.store(batch, columns, keys);
        for i in 0..n {
            if ts.is_null(i) || is_late(ts.value(i), self.watermark) {
                continue;
            }
            // The partition is looked up when the row is processed, so its state is touched
            // once, while hot.
            self.pending.push(RowRef {
                ts: ts.value(i),
                seq: self.seq,
                pid: u32::MAX,
                slot,
                row: i as u32,
                out: 0,
            });
            self.seq += 1;
        }
        self.pending.seal(slot);
        Ok(())
    }

    /// Watermark mode: processes and emits every waiting row with event time ≤ `w`.
    fn flush(&mut self, w: i64, out: &mut Vec<Event>) -> Result<(), RuntimeError> {
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        self.pending.take_ready(w, &mut ready);
        let mut result = Ok(());
        for chunk in ready.chunks_mut(MAX_OUTPUT_ROWS) {
            match self.process_ready(chunk) {
                Ok(b) => out.push(Event::Batch(b)),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        ready.clear();
        self.ready = ready;
        result
    }

    /// Processes rows sorted by (event time, arrival) and builds their output batch.
    fn process_ready(&mut self, rows: &mut [RowRef]) -> Result<RecordBatch, RuntimeError> {
        let len = rows.len();
        for (i, r) in rows.iter_mut().enumerate() {
            r.out = i as u32;
        }
        let inputs = self.gather(rows)?;
        self.reset_results(len);
        // Independent lookups first: the CPU overlaps their cache misses.
        for r in rows.iter_mut() {
            r.pid = self
                .partitions
                .id(self.pending.key(r.slot, r.row), &self.layout);
        }
        // Peers (equal event times) of one partition together, in arrival order.
        let mut i = 0;
        while i < len {
            let ts = rows[i].ts;
            let mut j = i + 1;
            while j < len && rows[j].ts == ts {
                j += 1;
            }
            if j - i > 1 {
                rows[i..j].sort_unstable_by_key(|r| (r.pid, r.seq));
            }
            i = j;
        }
        let rows_pids: Vec<u32> = rows.iter().map(|r| r.pid).collect();
        let mut i = 0;
        while i < len {
            let ts = rows[i].ts;
            let mut j = i + 1;
            while j < len && rows[j].ts == ts {
                j += 1;
            }
            let run = &mut rows[i..j];
            let mut a = 0;
            while a < run.len() {
                let pid = run[a].pid;
                // Two-stage prefetch: the slot of a partition 8 rows ahead, and the row buffers
                // of one 4 rows ahead (whose slot is loaded by now).
                let at = i + a;
                if let Some(r) = rows_pids.get(at + 8) {
                    self.partitions.prefetch(*r);
                }
                if let Some(r) = rows_pids.get(at + 4) {
                    self.partitions.prefetch_rows(*r, &self.layout);
                }
                let mut b = a + 1;
                while b < run.len() && run[b].pid == pid {
                    b += 1;
                }
                self.partitions.process_peers(
                    pid,
                    &self.layout,
                    &run[a..b],
                    &self.pending,
                    &mut self.results,
                    i64::MAX,
                );
                a = b;
            }
            i = j;
        }
        self.watch_new();
        for r in rows.iter() {
            self.pending.release(r.slot);
        }
        self.output(inputs, len)
    }

    /// The input columns of `rows` (in order) from the pending batches.
    fn gather(&self, rows: &[RowRef]) -> Result<Vec<ArrayRef>, RuntimeError> {
        let missing = || RuntimeError::Plan(format!("OVER node `{}` lost a batch", self.name));
        let Some(first) = rows.first() else {
            return Ok(Vec::new());
        };
        if rows.iter().all(|r| r.slot == first.slot) {
            let batch = self.pending.batch(first.slot).ok_or_else(missing)?;
            let start = first.row as usize;
            if rows
                .iter()
                .enumerate()
                .all(|(i, r)| r.row as usize == start + i)
            {
                return Ok(batch.slice(start, rows.len()).columns().to_vec());
            }
            let idx = UInt32Array::from_iter_values(rows.iter().map(|r| r.row));
            return batch
                .columns()
                .iter()
                .map(|c| take(c, &idx, None))
                .collect::<Result<_, _>>()
                .map_err(|e| self.arrow_err(e));
        }
        let max_slot = rows.iter().map(|r| r.slot).max().unwrap_or(0) as usize;
        let mut local = vec![usize::MAX; max_slot + 1];
        let mut batches: Vec<&RecordBatch> = Vec::new();
        let mut indices = Vec::with_capacity(rows.len());
        for r in rows {
            let s = r.slot as usize;
            if local[s] == usize::MAX {
                local[s] = batches.len();
                batches.push(self.pending.batch(r.slot).ok_or_else(missing)?);
            }
            indices.push((local[s], r.row as usize));
        }
        (0..self.input_width)
            .map(|c| {
                let arrays: Vec<&dyn Array> =
                    batches.iter().map(|b| b.column(c).as_ref()).collect();
                interleave(&arrays, &indices)
            })
            .collect::<Result<_, _>>()
            .map_err(|e| self.arrow_err(e))
    }

    /// The output batch: `inputs` followed by the results of the first `len` rows.
    fn output(
        &mut self,
        mut columns: Vec<ArrayRef>,
        len: usize,
    ) -> Result<RecordBatch, RuntimeError> {
        for (plan, values) in self.layout.aggs.iter().zip(&self.results) {
            let a = build_array(&values[..len.min(values.len())], &plan.result, &plan.target)
                .map_err(|e| RuntimeError::arrow(&self.name, e))?;
            columns.push(a);
        }
        for r in &mut self.results {
            r.clear();
        }
        for (c, f) in columns.iter_mut().zip(self.schema.fields()) {
            if c.data_type() != f.data_type() {
                *c = cast(c, f.data_type()).map_err(|e| RuntimeError::arrow(&self.name, e))?;
            }
        }
        let options = RecordBatchOptions::new().with_row_count(Some(len));
        RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)
            .map_err(|e| RuntimeError::arrow(&self.name, e))
    }

    /// Arrival mode: processes and emits every row of the batch now.
    fn arrive(&mut self, batch: RecordBatch, out: &mut Vec<Event>) -> Result<(), RuntimeError> {
        let n = batch.num_rows();
        let ts = self.event_times(&batch)?;
        let no_time: Vec<u32> = (0..n)
            .filter(|&i| ts.is_null(i))
            .map(|i| i as u32)
            .collect();
        self.late.keep(&self.name, &batch, no_time)?;
        let keys = self.keys.encode(&batch).map_err(|e| self.arrow_err(e))?;
        let columns = self.evaluate(&batch)?;
        self.reset_results(n);
        let one = OneBatch(&columns);
        // Rows newer than the watermark may still arrive out of order: keep what their frames
        // need (nothing extra before the first watermark).
        let horizon = if self.watermark == i64::MIN {
            i64::MAX
        } else {
            self.watermark.saturating_add(1)
        };
        // Independent lookups first: the CPU overlaps their cache misses.
        let mut pids = std::mem::take(&mut self.pids);
        pids.clear();
        for i in 0..n {
            pids.push(if ts.is_null(i) {
                u32::MAX
            } else {
                self.partitions.id(keys.key(i), &self.layout)
            });
        }
        for (i, &pid) in pids.iter().enumerate() {
            if ts.is_null(i) {
                continue;
            }
            let r = RowRef {
                ts: ts.value(i),
                seq: self.seq,
                pid,
                slot: 0,
                row: i as u32,
                out: i as u32,
            };
            self.seq += 1;
            self.partitions.process_arrival(
                pid,
                &self.layout,
                &r,
                &one,
                &mut self.results,
                horizon,
            );
        }
        self.watch_new();
        self.pids = pids;
        let mut output = self.output(batch.columns().to_vec(), n)?;
        if ts.null_count() > 0 {
            let keep = is_not_null(&ts).map_err(|e| self.arrow_err(e))?;
            output = filter_record_batch(&output, &keep).map_err(|e| self.arrow_err(e))?;
        }
        if output.num_rows() > 0 {
            out.push(Event::Batch(output));
        }
        Ok(())
    }

    /// Queues an expiry check for each partition created since the last call (once per
    /// partition: the check queues itself again while the partition lives).
    fn watch_new(&mut self) {
        let after = self.layout.expire_after;
        for pid in self.partitions.take_created() {
            if let (Some(after), Some(p)) = (after, self.partitions.get_mut(pid)) {
                self.expiry.push_back(Expiry {
                    at: p.max_ts.saturating_add(after),
                    pid,
                });
            }
        }
    }

    /// Drops partitions whose rows no later row's frame can reach (RANGE-only specs): the newest
    /// row is older than `w - p`, and every later row is newer than `w`.
    fn expire(&mut self, w: i64) {
        let Some(after) = self.layout.expire_after else {
            return;
        };
        for _ in 0..self.expiry.len() {
            let Some(&e) = self.expiry.front() else {
                break;
            };
            if e.at > w {
                break;
            }
            self.expiry.pop_front();
            let Some(p) = self.partitions.get_mut(e.pid) else {
                debug_assert!(false, "an expiry check outlived partition {}", e.pid);
                continue;
            };
            let at = p.max_ts.saturating_add(after);
            // Rows still waiting are newer than `w`, so they cannot see this state either.
            if at <= w {
                self.partitions.remove(e.pid);
            } else {
                self.expiry.push_back(Expiry {
                    at: at.max(w.saturating_add(1)),
                    ..e
                });
            }
        }
    }
}

/// Whether a row with event time `ts` is late at watermark `w` (both in the column's unit).
#[inline]
fn is_late(ts: i64, w: i64) -> bool {
    w > i64::MIN && ts <= w
}

impl Operator for Over {
    fn on_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Vec<Event>,
    ) -> Result<(), RuntimeError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.check_width(&batch)?;
        match self.emit {
            EmitMode::Watermark => self.buffer(batch)?,
            EmitMode::Arrival => self.arrive(batch, out)?,
        }
        self.settle()
    }

    fn on_watermark(
        &mut self,
        watermark_ms: i64,
        out: &mut Vec<Event>,
    ) -> Result<(), RuntimeError> {
        let w = self.unit.of_ms(watermark_ms);
        if self.emit == EmitMode::Watermark {
            self.flush(w, out)?;
        }
        self.watermark = self.watermark.max(w);
        self.expire(w);
        out.push(Event::Watermark(watermark_ms));
        self.settle()
    }

    fn late_rows(&self) -> u64 {
        self.late.count()
    }

    fn take_late(&mut self) -> Option<RecordBatch> {
        self.late.take()
    }

    /// Partitions (rows, spans, accumulators), the expiry queue, the watermark and arrival
    /// counter, and the rows waiting for the watermark (re-buffered on restore).
    fn snapshot(&mut self, w: &mut StateWriter) -> Result<bool, RuntimeError> {
        if let Some(parts) = self.snapshot_parts()? {
            let bytes = parts
                .into_bytes()
                .map_err(|e| RuntimeError::state(&self.name, e))?;
            w.extend(&bytes);
        }
        Ok(true)
    }

    /// [`Operator::snapshot`]'s bytes, the partitions and the expiry queue encoded by the
    /// checkpoint's writer thread: the partition table is frozen (copy-on-write per key), the
    /// queue copied (16 bytes a partition).
    fn snapshot_parts(&mut self) -> Result<Option<StateSnapshot>, RuntimeError> {
        let err = |e: StateError| RuntimeError::state(&self.name, e);
        let mut w = StateWriter::default();
        w.u32(OVER_STATE_LAYOUT);
        w.i64(self.watermark);
        w.u64(self.seq);
        let mut snapshot = StateSnapshot::ready(w.into_bytes());
        self.partitions
            .snapshot_deferred(&self.layout, &mut snapshot)
            .map_err(err)?;
        let expiry = self.expiry.clone();
        snapshot.push_deferred(move |out: &mut dyn FnMut(&[u8])| {
            let mut w = StateWriter::default();
            w.count(expiry.len());
            for e in &expiry {
                w.i64(e.at);
                w.u32(e.pid);
            }
            out(&w.into_bytes());
            Ok(())
        });
        let mut w = StateWriter::default();
        match self.pending.waiting_rows().map_err(|e| self.arrow_err(e))? {
            None => w.bool(false),
            Some(rows) => {
                w.bool(true);
                w.batch(&rows).map_err(err)?;
                let seqs = self.pending.waiting_seqs();
                w.count(seqs.len());
                for s in seqs {
                    w.u64(s);
                }
            }
        }
        snapshot.push_ready(w.into_bytes());
        Ok(Some(snapshot))
    }

    fn restore(&mut self, r: &mut StateReader<'_>) -> Result<(), RuntimeError> {
        let name = self.name.clone();
        let err = |e: StateError| RuntimeError::state(&name, e);
        let layout = r.u32().map_err(err)?;
        if !(1..=OVER_STATE_LAYOUT).contains(&layout) {
            return Err(err(StateError(format!(
                "OVER state has layout {layout}, this fsql reads layouts 1 to {OVER_STATE_LAYOUT}"
            ))));
        }
        self.watermark = r.i64().map_err(err)?;
        let seq = r.u64().map_err(err)?;
        self.partitions = match layout {
            OVER_STATE_LAYOUT => Partitions::restore(r, &self.layout, &self.backend, &name),
            // Layout 1 (before the RocksDB backend) is layout 2 without the storage flag.
            old => Partitions::restore_flat(r, &self.layout, &self.backend, &name, old == 2),
        }
        .map_err(err)?;
        self.expiry.clear();
        for _ in 0..r.count().map_err(err)? {
            let at = r.i64().map_err(err)?;
            let pid = r.u32().map_err(err)?;
            self.expiry.push_back(Expiry { at, pid });
        }
        self.seq = seq;
        if r.bool().map_err(err)? {
            let input = ArrowSchema::new(
                self.schema.fields()[..self.input_width.min(self.schema.fields().len())].to_vec(),
            );
            let rows = widen(r.batch().map_err(err)?, &input).map_err(err)?;
            let mut seqs = Vec::new();
            for _ in 0..r.count().map_err(err)? {
                seqs.push(r.u64().map_err(err)?);
            }
            let mut out = Vec::new();
            self.on_batch(0, rows, &mut out)?;
            // The rows wait again with their own arrival numbers (ties between equal event
            // times keep their order), and the counter continues where it was.
            if !out.is_empty() || !self.pending.restore_seqs(&seqs) {
                return Err(err(StateError(
                    "the waiting rows do not match their arrival numbers".into(),
                )));
            }
            self.seq = seq;
        }
        Ok(())
    }
}

/// The layout of an OVER node's checkpoint state (bumped when it changes). 2: the partitions
/// say whether their rows are inline or in the RocksDB checkpoint. 3: a partition's spans (one
/// per frame) and accumulators are part of its value, not flat vectors after the key table.
const OVER_STATE_LAYOUT: u32 = 3;

#[cfg(test)]
mod tests;
