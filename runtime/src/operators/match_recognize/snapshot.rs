//! The checkpoint state of a `MATCH_RECOGNIZE` node: what [`Operator::snapshot`] writes and
//! [`Operator::restore`] reads back, so that a restored node continues exactly like the one that
//! was checkpointed (same output rows, in the same order, with the same match numbers). A
//! checkpoint encodes the stored rows and the partitions on its writer thread, while the
//! pipeline goes on ([`MatchRecognize::state_parts`]); the bytes are the same.
//!
//! A checkpoint is taken between two steps, when every final match has been output, so the state
//! is the partitions (each one's matcher, its stored rows and its queue and TTL bookkeeping), the
//! rows waiting for the watermark, the set of partitions with an open attempt, the deadline and
//! TTL queues, the watermark and the arrival counter. Layout, after [`MR_STATE_LAYOUT`]:
//!
//! 1. the watermark and the arrival counter;
//! 2. every row state refers to, as one batch of stored rows (the input's columns, then the
//!    derived values): each partition's rows oldest first, partitions in id order, then the
//!    waiting rows in arrival order. The parts below name no row: each takes the next one, in
//!    that order, and a restored row is a reference into this one batch;
//! 3. the partitions ([`KeyedState::snapshot`], ids kept), each with its rows' times and whether
//!    a match took them, then its [`Matcher`];
//! 4. the waiting rows' times, condition masks, ordering bytes, arrival numbers and keys;
//! 5. the deadline queue and the TTL queue, by partition id (a restore keeps ids), sorted (the
//!    same state always gives the same bytes). The partitions with an open attempt are found
//!    from their matchers on restore (layout 1 listed them, and its queues named keys).
//!
//! Only part 1 and part 4 (the waiting rows, few) are encoded while the pipeline waits, after
//! one pass over the partitions that collects the stored rows' references; the rest is encoded
//! by the checkpoint's writer thread ([`MatchRecognize::state_parts`]).
//!
//! Reading checks every count, reference and program position, so corrupt bytes are an error,
//! never a panic or an operator that could index out of bounds. (The rows' Arrow IPC stream is
//! Arrow's to decode, and `arrow-ipc` panics on some malformed schemas; the checkpoint store
//! checks the state file's digest before any of it is read.)
//!
//! [`Operator::snapshot`]: crate::operator::Operator::snapshot
//! [`Operator::restore`]: crate::operator::Operator::restore

use std::cmp::Reverse;
use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::RecordBatch;

use super::matcher::Matcher;
use super::program::Inst;
use super::{Due, DueQueue, MatchRecognize, Partition, RowRef, Stored, Waiting};
use crate::error::RuntimeError;
use crate::operators::agg::key::KeyBytes;
use crate::state::codec::{StateError, StateReader, StateWriter, widen};
use crate::state::row_codec;
use crate::state::{KeyedState, SharedEncode, StateSnapshot};

/// The layout of a `MATCH_RECOGNIZE` node's checkpoint state (bumped when it changes).
/// 2 writes the queues by partition id and no list of open partitions (1, by key and with the
/// list, is still read).
pub(super) const MR_STATE_LAYOUT: u32 = 2;

impl MatchRecognize {
    /// The node's state in the five parts of the layout (see the module documentation). The
    /// checkpoint's writer thread gathers the stored rows (part 2) into one batch and encodes it,
    /// encodes the partitions (part 3), frozen as they are now ([`KeyedState::snapshot_deferred`]:
    /// the table encodes a partition itself before it changes it while the writer is not done),
    /// and writes the queues (part 5) from copies; parts 1 and 4, small, are encoded now. Rows are
    /// never changed once stored (a [`RowRef`] shares its batch), so the references taken now are
    /// the rows as they are now; the parts concatenated are the bytes a snapshot taken at once
    /// would be.
    pub(super) fn state_parts(&mut self) -> Result<StateSnapshot, RuntimeError> {
        let (mut parts, stamps) = self.parts_before_queues()?;
        // The queues, copied as they are (16 bytes an entry): the writer thread leaves out
        // entries of partitions dropped since they were queued and sorts them.
        let queues: [Vec<Due>; 2] = [&self.deadlines, &self.idle_deadlines]
            .map(|q| q.iter().map(|&Reverse(d)| d).collect());
        parts.push_deferred(move |out: &mut dyn FnMut(&[u8])| {
            let mut w = StateWriter::default();
            for queue in &queues {
                write_queue(queue, &stamps, &mut w);
            }
            out(&w.into_bytes());
            Ok(())
        });
        Ok(parts)
    }

    /// Parts 1 to 4 of the layout, and the stamp of each partition id (`None`: no partition).
    fn parts_before_queues(&mut self) -> Result<(StateSnapshot, Vec<Option<u32>>), RuntimeError> {
        let err = |e: StateError| RuntimeError::state(&self.name, e);
        // `emit` outputs every match found before a step returns, so none is pending here.
        if !self.found.is_empty() {
            return Err(err(StateError(format!(
                "{} matches found but not output at a checkpoint",
                self.found.len()
            ))));
        }
        let mut w = StateWriter::default();
        w.u32(MR_STATE_LAYOUT);
        w.i64(self.watermark_ms);
        w.u64(self.arrivals);
        let mut parts = StateSnapshot::ready(w.into_bytes());
        // One pass over the partitions in id order: the rows they refer to, and their stamps.
        let mut rows: Vec<(Arc<RecordBatch>, usize)> = Vec::new();
        let mut stamps: Vec<Option<u32>> = vec![None; self.partitions.id_bound()];
        for (id, p) in self.partitions.values() {
            if let Some(stamp) = stamps.get_mut(id as usize) {
                *stamp = Some(p.stamp);
            }
            rows.extend(
                p.rows
                    .iter()
                    .map(|s| (Arc::clone(&s.row.batch), s.row.index)),
            );
        }
        rows.extend(
            self.waiting
                .iter()
                .map(|x| (Arc::clone(&x.row.batch), x.row.index)),
        );
        let schema = Arc::clone(&self.row_schema);
        parts.push_deferred(move |out: &mut dyn FnMut(&[u8])| {
            let rows: Vec<(&RecordBatch, usize)> =
                rows.iter().map(|(b, i)| (b.as_ref(), *i)).collect();
            let batch = row_codec::gather(&rows, &schema)?;
            let mut w = StateWriter::default();
            w.batch(&batch)?;
            out(&w.into_bytes());
            Ok(())
        });
        // The partitions, frozen as they are now: the writer thread encodes them, and until it
        // is done the table encodes a partition itself before it changes it.
        let encode: Arc<SharedEncode<Partition>> =
            Arc::new(|p: &Partition, w: &mut StateWriter| {
                write_partition(p, w);
                Ok(())
            });
        parts.push_deferred(self.partitions.snapshot_deferred(encode));
        let mut w = StateWriter::default();
        w.count(self.waiting.len());
        for x in &self.waiting {
            w.i64(x.ts);
            w.u64(x.mask);
            w.bytes(&x.then);
            w.u64(x.seq);
            w.bytes(x.key.as_slice());
        }
        parts.push_ready(w.into_bytes());
        Ok((parts, stamps))
    }

    /// Writes the node's state, every part encoded now ([`MatchRecognize::state_parts`]).
    pub(super) fn write_state(&mut self, w: &mut StateWriter) -> Result<(), RuntimeError> {
        let bytes = self
            .state_parts()?
            .into_bytes()
            .map_err(|e| RuntimeError::state(&self.name, e))?;
        w.extend(&bytes);
        Ok(())
    }

    /// Replaces the node's state with what [`MatchRecognize::write_state`] wrote.
    pub(super) fn read_state(&mut self, r: &mut StateReader<'_>) -> Result<(), RuntimeError> {
        let state = self
            .decode(r)
            .map_err(|e| RuntimeError::state(&self.name, e))?;
        let Decoded {
            watermark_ms,
            arrivals,
            partitions,
            waiting,
            active,
            deadlines,
            idle_deadlines,
        } = state;
        self.watermark_ms = watermark_ms;
        self.arrivals = arrivals;
        self.partitions = partitions;
        self.waiting = waiting;
        if let Some(set) = &mut self.active {
            set.clear();
            set.extend(active);
        }
        self.deadlines = deadlines;
        self.idle_deadlines = idle_deadlines;
        self.stamps = 1;
        self.found.clear();
        // The restored rows are in one batch of their own already: nothing to compact.
        self.retained.clear();
        Ok(())
    }

    fn decode(&self, r: &mut StateReader<'_>) -> Result<Decoded, StateError> {
        let layout = r.u32()?;
        if !(1..=MR_STATE_LAYOUT).contains(&layout) {
            return Err(StateError(format!(
                "MATCH_RECOGNIZE state has layout {layout}, this fsql reads layouts 1 to \
                 {MR_STATE_LAYOUT}"
            )));
        }
        let watermark_ms = r.i64()?;
        let arrivals = r.u64()?;
        // A counter near `u64::MAX` could only overflow later.
        if arrivals > i64::MAX as u64 {
            return Err(StateError(format!("{arrivals} rows arrived")));
        }
        // Rows stored before the input gained columns are widened (see `widen`).
        let rows = widen(r.batch()?, &self.row_schema)?;
        let n = rows.num_rows();
        let mut rows = Rows {
            batch: Arc::new(rows),
            next: 0,
        };
        let variables = self.spec.variables.len();
        let partitions = KeyedState::restore(r, |r| {
            read_partition(r, &self.program, variables, &mut rows)
        })?;
        let mut waiting = Vec::new();
        for _ in 0..r.count()? {
            waiting.push(Waiting {
                ts: r.i64()?,
                mask: r.u64()?,
                then: r.bytes()?.to_vec(),
                seq: r.u64()?,
                key: KeyBytes::new(r.bytes()?),
                row: rows.take()?,
            });
        }
        if rows.next != n {
            return Err(StateError(format!(
                "{n} stored rows, of which state refers to {}",
                rows.next
            )));
        }
        let (active, deadlines, idle_deadlines) = if layout == 1 {
            (
                read_open_layout_1(r, &partitions)?,
                read_queue_layout_1(r, &partitions)?,
                read_queue_layout_1(r, &partitions)?,
            )
        } else {
            // Found from the matchers, and only where the node keeps the set (it forgets idle
            // partitions otherwise, and needs none).
            let active = if self.active.is_some() {
                partitions
                    .values()
                    .filter(|(_, p)| p.is_open())
                    .map(|(id, _)| KeyBytes::new(partitions.key(id)))
                    .collect()
            } else {
                Vec::new()
            };
            (
                active,
                read_queue(r, &partitions)?,
                read_queue(r, &partitions)?,
            )
        };
        Ok(Decoded {
            watermark_ms,
            arrivals,
            partitions,
            waiting,
            active,
            deadlines,
            idle_deadlines,
        })
    }
}

/// Reads the keys of the partitions with an open attempt (in key order; layout 1 wrote them,
/// layout 2 leaves them to be found), checking that they are exactly the partitions whose
/// matcher is not idle: the operator relies on it to skip rows.
fn read_open_layout_1(
    r: &mut StateReader<'_>,
    partitions: &KeyedState<Partition>,
) -> Result<Vec<KeyBytes>, StateError> {
    let open = partitions.values().filter(|(_, p)| p.is_open()).count();
    let listed = r.count()?;
    let mut active: Vec<KeyBytes> = Vec::with_capacity(listed.min(open));
    for _ in 0..listed {
        let key = r.bytes()?;
        if active.last().is_some_and(|p| p.as_slice() >= key) {
            return Err(StateError(
                "the open partitions are not in key order".into(),
            ));
        }
        if partitions.get_by_key(key).is_none_or(|p| !p.is_open()) {
            return Err(StateError(format!(
                "partition {key:?} is listed as open but has no open attempt"
            )));
        }
        active.push(KeyBytes::new(key));
    }
    if listed != open {
        return Err(StateError(format!(
            "{listed} partitions are listed as open where {open} have an open attempt"
        )));
    }
    Ok(active)
}

/// The state [`MatchRecognize::decode`] read, installed only once all of it was read.
struct Decoded {
    watermark_ms: i64,
    arrivals: u64,
    partitions: KeyedState<Partition>,
    waiting: Vec<Waiting>,
    active: Vec<KeyBytes>,
    deadlines: DueQueue,
    idle_deadlines: DueQueue,
}

/// The restored stored rows, handed out in the order they were written.
struct Rows {
    batch: Arc<RecordBatch>,
    next: usize,
}

impl Rows {
    /// The next row.
    fn take(&mut self) -> Result<RowRef, StateError> {
        if self.next >= self.batch.num_rows() {
            return Err(StateError(format!(
                "state refers to more than the {} stored rows",
                self.batch.num_rows()
            )));
        }
        self.next += 1;
        Ok(RowRef {
            batch: self.batch.clone(),
            index: self.next - 1,
        })
    }
}

/// Writes a partition: its bookkeeping, its rows' times and flags (the rows themselves are in the
/// state's batch), then its matcher.
fn write_partition(p: &Partition, w: &mut StateWriter) {
    w.u64(p.first);
    w.bool(p.queued);
    w.i64(p.last_ts);
    w.bool(p.ttl_queued);
    w.count(p.rows.len());
    for stored in &p.rows {
        w.i64(stored.ts);
        w.bool(stored.in_match);
    }
    p.matcher.snapshot(w);
}

/// Reads what [`write_partition`] wrote, taking the partition's rows from `source`, and checks
/// that the rows kept and the rows the matcher saw agree.
fn read_partition(
    r: &mut StateReader<'_>,
    program: &[Inst],
    variables: usize,
    source: &mut Rows,
) -> Result<Partition, StateError> {
    let first = r.u64()?;
    let queued = r.bool()?;
    let last_ts = r.i64()?;
    let ttl_queued = r.bool()?;
    let n = r.count()?;
    let mut rows = VecDeque::with_capacity(n.min(1 << 20));
    for _ in 0..n {
        rows.push_back(Stored {
            ts: r.i64()?,
            in_match: r.bool()?,
            row: source.take()?,
        });
    }
    let matcher = Matcher::restore(r, program, variables)?;
    // A partition keeps its rows from `first` up to the newest one the matcher saw.
    if first.checked_add(n as u64) != Some(matcher.rows()) {
        return Err(StateError(format!(
            "a partition keeps {n} rows from row {first} but its matcher saw {}",
            matcher.rows()
        )));
    }
    Ok(Partition {
        matcher,
        rows,
        first,
        queued,
        last_ts,
        ttl_queued,
        // Restored partitions share stamp 0: the restored queues name only them (see
        // `read_queue`), and partitions made later take stamps from 1.
        stamp: 0,
        in_wave: false,
    })
}

/// Writes a queue of partitions as (time, id), sorted, leaving out entries of partitions dropped
/// since they were queued (`stamps`: each id's partition's stamp). Ids are the restored
/// partitions' ids, so the same state always gives the same bytes.
fn write_queue(queue: &[Due], stamps: &[Option<u32>], w: &mut StateWriter) {
    let mut due: Vec<(i64, u32)> = queue
        .iter()
        .filter(|d| stamps.get(d.id as usize).copied().flatten() == Some(d.stamp))
        .map(|d| (d.at, d.id))
        .collect();
    due.sort_unstable();
    w.count(due.len());
    for (at, id) in due {
        w.i64(at);
        w.u32(id);
    }
}

/// Reads what [`write_queue`] wrote, for the restored `partitions`: every entry names one.
fn read_queue(
    r: &mut StateReader<'_>,
    partitions: &KeyedState<Partition>,
) -> Result<DueQueue, StateError> {
    let n = r.count()?;
    let mut queue = DueQueue::with_capacity(n);
    for _ in 0..n {
        let at = r.i64()?;
        let id = r.u32()?;
        let p = partitions.get(id).ok_or_else(|| {
            StateError(format!("a queue names partition {id}, which has no state"))
        })?;
        queue.push(Due::of(at, id, p));
    }
    Ok(queue)
}

/// Reads a queue as layout 1 wrote it, (time, key) (an entry of a key without a partition, which
/// checkpoints of earlier versions could hold, is dropped: its partition was).
fn read_queue_layout_1(
    r: &mut StateReader<'_>,
    partitions: &KeyedState<Partition>,
) -> Result<DueQueue, StateError> {
    let mut queue = DueQueue::new();
    for _ in 0..r.count()? {
        let at = r.i64()?;
        let key = r.bytes()?;
        if let Some(id) = partitions.find(key)
            && let Some(p) = partitions.get(id)
        {
            queue.push(Due::of(at, id, p));
        }
    }
    Ok(queue)
}

/// Each pattern below runs over the same steps — several partitions, rows out of order, rows
/// behind the watermark and without a time, watermarks that end `WITHIN` bounds and the state
/// TTL, then the final watermark — in both emit orders; checkpointed after any step and restored
/// into a fresh node, it must continue exactly like the node that never stopped.
#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{DataType as ArrowType, Field, Schema, TimeUnit};
    use fsql_plan::{
        AfterMatch, BinaryOp, DataType, EmitMode, Expr, Literal, MatchAggregate,
        MatchRecognizeSpec, Measure, Navigation, Pattern, RowsPerMatch,
    };

    use super::*;
    use crate::operator::Operator;
    use crate::testkit::{Step, bin, check_restore, col, drive, lit};

    const MINUTE: i64 = 60_000;
    /// The input's columns: card, amount, ts, id.
    const WIDTH: usize = 4;

    fn at(minute: i64, second: i64) -> i64 {
        minute * MINUTE + second * 1000
    }

    fn input() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("card", ArrowType::Utf8, true),
            Field::new("amount", ArrowType::Float64, true),
            Field::new(
                "ts",
                ArrowType::Timestamp(TimeUnit::Millisecond, None),
                true,
            ),
            Field::new("id", ArrowType::Int64, true),
        ]))
    }

    /// Rows (card, amount, ts: `None` is NULL, id).
    fn batch(rows: &[(&str, f64, Option<i64>, i64)]) -> Step {
        let b = RecordBatch::try_new(
            input(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(TimestampMillisecondArray::from_iter(
                    rows.iter().map(|r| r.2),
                )),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
            ],
        )
        .expect("batch");
        Step::Batch(0, b)
    }

    /// Tiny (< 2), small (< 50), middling (50..=100) and large amounts on five cards, out of
    /// order within and across batches, with rows of equal times, late rows (`id` 7 behind the
    /// watermark, `id` 11 without a time), attempts `WITHIN` ends (in arrival order `c4`'s second and
    /// third attempts before its first, so their reports wait for it), and partitions idle for
    /// longer than the TTL.
    fn steps() -> Vec<Step> {
        vec![
            batch(&[
                ("c1", 0.5, Some(at(0, 0)), 1),
                ("c2", 120.0, Some(at(0, 5)), 2),
                ("c1", 1.0, Some(at(0, 10)), 3),
                ("c1", 1.5, Some(at(0, 20)), 4),
                ("c1", 500.0, Some(at(0, 50)), 5),
                ("c2", 30.0, Some(at(0, 5)), 6),
                ("c1", 0.9, Some(at(0, 15)), 31),
            ]),
            Step::Watermark(at(0, 30)),
            batch(&[
                ("c1", 0.7, Some(at(0, 25)), 7),
                ("c2", 60.0, Some(at(1, 0)), 8),
                ("c2", 1.2, Some(at(1, 10)), 9),
                ("c3", 0.1, Some(at(1, 0)), 10),
                ("c1", 99.0, None, 11),
                ("c3", 45.0, Some(at(1, 30)), 12),
                ("c4", 0.3, Some(at(3, 0)), 32),
            ]),
            Step::Watermark(at(1, 0)),
            batch(&[
                ("c2", 0.9, Some(at(1, 20)), 13),
                ("c3", 0.2, Some(at(2, 0)), 15),
                ("c3", 70.0, Some(at(2, 30)), 17),
                ("c3", 0.3, Some(at(3, 0)), 16),
                ("c4", 0.2, Some(at(2, 0)), 33),
                ("c4", 0.25, Some(at(2, 30)), 34),
            ]),
            Step::Watermark(at(2, 0)),
            batch(&[
                ("c2", 300.0, Some(at(2, 40)), 14),
                ("c1", 0.5, Some(at(5, 0)), 18),
                ("c1", 0.6, Some(at(5, 10)), 19),
                ("c5", 60.0, Some(at(6, 0)), 20),
                ("c1", 0.8, Some(at(5, 30)), 21),
                ("c5", 40.0, Some(at(6, 10)), 22),
                ("c5", 30.0, Some(at(6, 20)), 35),
            ]),
            Step::Watermark(at(7, 0)),
            Step::Watermark(at(11, 0)),
            Step::Watermark(at(12, 10)),
            batch(&[
                ("c1", 250.0, Some(at(14, 0)), 23),
                ("c2", 0.4, Some(at(14, 0)), 24),
                ("c2", 130.0, Some(at(14, 30)), 25),
                ("c3", 10.0, Some(at(14, 40)), 26),
                ("c4", 0.4, Some(at(12, 40)), 37),
            ]),
            Step::Watermark(at(16, 0)),
            batch(&[
                ("c2", 0.4, Some(at(20, 0)), 27),
                ("c2", 999.0, Some(at(25, 0)), 28),
                ("c3", 35.0, Some(at(20, 0)), 29),
                ("c3", 45.0, Some(at(20, 30)), 36),
                ("c3", 140.0, Some(at(21, 0)), 30),
            ]),
            Step::Watermark(at(22, 0)),
            Step::Watermark(i64::MAX),
        ]
    }

    fn amount() -> Expr {
        col(1, DataType::Double)
    }

    fn number(v: f64) -> Expr {
        lit(Literal::float(v), DataType::Double)
    }

    fn boolean(op: BinaryOp, l: Expr, r: Expr) -> Expr {
        bin(op, l, r, DataType::Boolean)
    }

    fn var(v: usize) -> Pattern {
        Pattern::Var(v)
    }

    fn repeat(p: Pattern, min: u32, greedy: bool) -> Pattern {
        Pattern::Repeat {
            pattern: Box::new(p),
            min,
            max: None,
            greedy,
        }
    }

    /// A spec over [`input`] with navigations `navs` (navigation `k` is evaluation column
    /// `first_nav + k`) and measures naming them.
    struct Spec {
        spec: MatchRecognizeSpec,
        ttl_ms: Option<i64>,
    }

    impl Spec {
        fn new(
            variables: &[&str],
            pattern: Pattern,
            defines: Vec<Option<Expr>>,
            navigations: Vec<(Navigation, DataType)>,
            measures: &[(&str, Expr)],
        ) -> Spec {
            Spec {
                spec: MatchRecognizeSpec {
                    partition_by: vec![0],
                    order_by: 2,
                    order_then: vec![],
                    variables: variables.iter().map(|v| v.to_string()).collect(),
                    subsets: vec![],
                    derived: vec![],
                    pattern,
                    defines,
                    navigations,
                    measures: measures
                        .iter()
                        .map(|(name, expr)| Measure {
                            name: name.to_string(),
                            expr: expr.clone(),
                        })
                        .collect(),
                    rows_per_match: RowsPerMatch::One,
                    after_match: AfterMatch::PastLastRow,
                    within_ms: None,
                    emit_timeouts: false,
                },
                ttl_ms: None,
            }
        }

        /// The node, boxed.
        fn operator(&self, emit: EmitMode) -> Box<dyn Operator> {
            Box::new(self.node(emit))
        }

        /// The node, with the output schema the planner gives it.
        fn node(&self, emit: EmitMode) -> MatchRecognize {
            let spec = &self.spec;
            let input = input();
            let field = |c: &usize| input.field(*c).clone();
            let measures = spec
                .measures
                .iter()
                .map(|m| Field::new(&m.name, m.expr.data_type.to_arrow(), true));
            let fields: Vec<Field> = if spec.rows_per_match.all_rows() {
                let (leading, rest) = spec.all_rows_columns(WIDTH);
                leading
                    .iter()
                    .map(field)
                    .chain(measures)
                    .chain(rest.iter().map(field))
                    .collect()
            } else {
                spec.partition_by
                    .iter()
                    .map(field)
                    .chain(measures)
                    .collect()
            };
            MatchRecognize::new(
                "mr",
                spec,
                &input,
                Arc::new(Schema::new(fields)),
                emit,
                false,
                self.ttl_ms,
            )
            .expect("the operator builds")
        }

        /// Checks restores after every step in both emit orders; the uninterrupted outputs.
        fn check(&self) -> Vec<Vec<String>> {
            [EmitMode::Watermark, EmitMode::Arrival]
                .into_iter()
                .map(|emit| {
                    self.check_same_state(emit);
                    let whole = check_restore(&|| self.operator(emit), &steps());
                    assert!(
                        whole.iter().any(|l| !l.starts_with("watermark")),
                        "{emit:?}: no output"
                    );
                    whole
                })
                .collect()
        }
    }

    impl Spec {
        /// After every step, a restored node holds exactly the state it was restored from: its
        /// snapshot is the same bytes (flags and queues that change no output included).
        fn check_same_state(&self, emit: EmitMode) {
            let steps = steps();
            let mut op = self.node(emit);
            let mut out = Vec::new();
            for (cut, step) in steps.iter().enumerate() {
                match step {
                    Step::Batch(input, b) => op.on_batch(*input, b.clone(), &mut out),
                    Step::Watermark(w) => op.on_watermark(*w, &mut out),
                    Step::End(input) => op.on_input_end(*input, &mut out),
                    Step::Changes(..) => panic!("MATCH_RECOGNIZE reads append-only rows"),
                }
                .expect("the run");
                let mut w = StateWriter::default();
                op.snapshot(&mut w).expect("snapshot");
                let bytes = w.into_bytes();
                // What a checkpoint writes, its rows encoded on the writer's side, is the same.
                let parts = op
                    .snapshot_parts()
                    .expect("snapshot parts")
                    .expect("stateful");
                assert!(parts.is_deferred());
                assert!(
                    parts.into_bytes().expect("encoded") == bytes,
                    "{emit:?}: the checkpoint's parts after step {cut} differ from the snapshot"
                );
                let mut restored = self.operator(emit);
                restored
                    .restore(&mut StateReader::new(&bytes))
                    .expect("restore");
                let mut again = StateWriter::default();
                restored
                    .snapshot(&mut again)
                    .expect("snapshot after restore");
                assert!(
                    again.into_bytes() == bytes,
                    "{emit:?}: the state restored after step {cut} differs"
                );
                // The same state as layout 1 wrote it restores to it.
                let mut from_1 = self.operator(emit);
                from_1
                    .restore(&mut StateReader::new(&layout_1(&mut op)))
                    .expect("layout 1 restores");
                let mut again = StateWriter::default();
                from_1.snapshot(&mut again).expect("snapshot after restore");
                assert!(
                    again.into_bytes() == bytes,
                    "{emit:?}: the state restored from layout 1 after step {cut} differs"
                );
                // A checkpoint's parts taken now and encoded by another thread while the node
                // runs on to the end (changing, ending and starting partitions) are the state
                // as it was now.
                let mut frozen = self.operator(emit);
                let mut ignored = Vec::new();
                drive(frozen.as_mut(), &steps[..=cut], &mut ignored).expect("the run");
                let parts = frozen
                    .snapshot_parts()
                    .expect("snapshot parts")
                    .expect("stateful");
                let writer = std::thread::spawn(move || parts.into_bytes());
                drive(frozen.as_mut(), &steps[cut + 1..], &mut ignored).expect("the run on");
                let encoded = writer.join().expect("writer").expect("encoded");
                assert!(
                    encoded == bytes,
                    "{emit:?}: a checkpoint frozen after step {cut} changed as the run went on"
                );
            }
        }
    }

    /// The node's state as layout 1 wrote it (before 2 wrote its queues by id): the same parts 1
    /// to 4, then the keys of the partitions with an open attempt and both queues by key, sorted.
    fn layout_1(op: &mut MatchRecognize) -> Vec<u8> {
        let (parts, _) = op.parts_before_queues().expect("parts");
        let mut bytes = parts.into_bytes().expect("encoded");
        bytes[..4].copy_from_slice(&1u32.to_le_bytes());
        let table = &op.partitions;
        let mut w = StateWriter::default();
        let mut open: Vec<&[u8]> = table
            .values()
            .filter(|(_, p)| p.is_open())
            .map(|(id, _)| table.key(id))
            .collect();
        open.sort_unstable();
        w.count(open.len());
        for key in open {
            w.bytes(key);
        }
        for queue in [&op.deadlines, &op.idle_deadlines] {
            let mut due: Vec<(i64, &[u8])> = queue
                .iter()
                .filter(|Reverse(d)| table.get(d.id).is_some_and(|p| p.stamp == d.stamp))
                .map(|Reverse(d)| (d.at, table.key(d.id)))
                .collect();
            due.sort_unstable();
            w.count(due.len());
            for (at, key) in due {
                w.i64(at);
                w.bytes(key);
            }
        }
        bytes.extend(w.into_bytes());
        bytes
    }

    /// Whether some output line of each emit order contains every one of `parts`.
    fn some_line(outputs: &[Vec<String>], parts: &[&str]) -> bool {
        outputs
            .iter()
            .all(|out| out.iter().any(|l| parts.iter().all(|p| l.contains(p))))
    }

    /// Card testing: `S{3,} B WITHIN 10 minutes EMIT TIMEOUTS`, one row per match, rows of equal
    /// times ordered by id.
    fn card_testing() -> Spec {
        let nav = |k: usize, t: DataType| col(WIDTH + k, t);
        let mut s = Spec::new(
            &["S", "B"],
            Pattern::Concat(vec![repeat(var(0), 3, true), var(1)]),
            vec![
                Some(boolean(BinaryOp::Lt, amount(), number(2.0))),
                Some(boolean(
                    BinaryOp::And,
                    boolean(BinaryOp::Gt, amount(), number(200.0)),
                    boolean(
                        BinaryOp::GtEq,
                        nav(0, DataType::BigInt),
                        lit(Literal::Int(3), DataType::BigInt),
                    ),
                )),
            ],
            vec![
                (
                    Navigation::Aggregate {
                        function: MatchAggregate::Count,
                        var: Some(0),
                        column: None,
                    },
                    DataType::BigInt,
                ),
                (
                    Navigation::First {
                        var: Some(0),
                        column: 2,
                        offset: 0,
                    },
                    DataType::Timestamp { precision: 3 },
                ),
                (Navigation::MatchNumber, DataType::BigInt),
                (Navigation::TimedOut, DataType::Boolean),
                (Navigation::Expected, DataType::String),
                (
                    Navigation::Last {
                        var: Some(1),
                        column: 3,
                        offset: 0,
                    },
                    DataType::BigInt,
                ),
            ],
            &[
                ("first_ts", nav(1, DataType::Timestamp { precision: 3 })),
                ("n", nav(0, DataType::BigInt)),
                ("mno", nav(2, DataType::BigInt)),
                ("timed_out", nav(3, DataType::Boolean)),
                ("expected", nav(4, DataType::String)),
                ("big", nav(5, DataType::BigInt)),
            ],
        );
        s.spec.order_then = vec![(3, true)];
        s.spec.within_ms = Some(10 * MINUTE);
        s.spec.emit_timeouts = true;
        s
    }

    /// Matches (numbered across the partition's life), attempts timed out while waiting and
    /// attempts whose next row came too late.
    #[test]
    fn timeouts_and_match_numbers_continue_across_a_restore() {
        let s = card_testing();
        let out = s.check();
        assert!(some_line(
            &out,
            &[r#""card":"c1""#, r#""mno":2"#, r#""timed_out":false"#]
        ));
        assert!(some_line(
            &out,
            &[r#""card":"c4""#, r#""timed_out":true"#, r#""expected":"S""#]
        ));
    }

    /// `A B+? C` (reluctant, conditions navigating to `A`), `ALL ROWS PER MATCH WITH UNMATCHED
    /// ROWS`, `SKIP TO NEXT ROW`, a 5-minute state TTL: overlapping matches, running and final
    /// measures, unmatched rows output as they are dropped, and partitions the TTL ends.
    #[test]
    fn unmatched_rows_overlapping_matches_and_the_state_ttl_continue_across_a_restore() {
        let nav = |k: usize, t: DataType| col(WIDTH + k, t);
        let last_a = || nav(0, DataType::Double);
        let mut s = Spec::new(
            &["A", "B", "C"],
            Pattern::Concat(vec![var(0), repeat(var(1), 1, false), var(2)]),
            vec![
                Some(boolean(BinaryOp::GtEq, amount(), number(100.0))),
                Some(boolean(BinaryOp::Lt, amount(), last_a())),
                Some(boolean(BinaryOp::Gt, amount(), last_a())),
            ],
            vec![
                (
                    Navigation::Last {
                        var: Some(0),
                        column: 1,
                        offset: 0,
                    },
                    DataType::Double,
                ),
                (Navigation::Classifier, DataType::String),
                (Navigation::MatchNumber, DataType::BigInt),
                (
                    Navigation::Final(Box::new(Navigation::Aggregate {
                        function: MatchAggregate::Count,
                        var: None,
                        column: None,
                    })),
                    DataType::BigInt,
                ),
                (
                    Navigation::Aggregate {
                        function: MatchAggregate::Sum,
                        var: Some(1),
                        column: Some(1),
                    },
                    DataType::Double,
                ),
            ],
            &[
                ("cls", nav(1, DataType::String)),
                ("mno", nav(2, DataType::BigInt)),
                ("total", nav(3, DataType::BigInt)),
                ("sum_b", nav(4, DataType::Double)),
            ],
        );
        s.spec.rows_per_match = RowsPerMatch::AllWithUnmatched;
        s.spec.after_match = AfterMatch::ToNextRow;
        s.ttl_ms = Some(5 * MINUTE);
        let out = s.check();
        assert!(some_line(&out, &[r#""cls":"C""#]));
        assert!(some_line(&out, &[r#""cls":null"#]), "unmatched rows");
        // The TTL ended `c2` between its two matches: its count started again.
        assert!(some_line(
            &out,
            &[r#""card":"c2""#, r#""mno":1"#, r#""amount":999.0"#]
        ));
    }

    /// `(A | {- B -}){2,} C` (greedy, `B` rows left out of the output) with `C` defined over a
    /// subset's sum of a derived value (`amount * 2`), `SKIP TO FIRST C`, `WITHIN 5 minutes`
    /// without timeouts: a match waits while a more preferred thread is alive, and the bound
    /// makes it final.
    #[test]
    fn pending_matches_derived_values_and_skips_continue_across_a_restore() {
        // The stored row is the input's columns and the derived value: navigations follow.
        let nav = |k: usize, t: DataType| col(WIDTH + 1 + k, t);
        let sum_u = || Navigation::Aggregate {
            function: MatchAggregate::Sum,
            var: Some(3),
            column: Some(WIDTH),
        };
        let mut s = Spec::new(
            &["A", "B", "C"],
            Pattern::Concat(vec![
                Pattern::Repeat {
                    pattern: Box::new(Pattern::Alt(vec![
                        var(0),
                        Pattern::Exclude(Box::new(var(1))),
                    ])),
                    min: 2,
                    max: None,
                    greedy: true,
                },
                var(2),
            ]),
            vec![
                Some(boolean(BinaryOp::Lt, amount(), number(50.0))),
                Some(boolean(
                    BinaryOp::And,
                    boolean(BinaryOp::GtEq, amount(), number(50.0)),
                    boolean(BinaryOp::LtEq, amount(), number(100.0)),
                )),
                Some(boolean(
                    BinaryOp::Gt,
                    nav(0, DataType::Double),
                    number(150.0),
                )),
            ],
            vec![
                (sum_u(), DataType::Double),
                (Navigation::Classifier, DataType::String),
                (Navigation::MatchNumber, DataType::BigInt),
                (Navigation::Final(Box::new(sum_u())), DataType::Double),
                (
                    Navigation::MatchRowtime,
                    DataType::Timestamp { precision: 3 },
                ),
                (
                    Navigation::Prev {
                        column: 1,
                        offset: 1,
                    },
                    DataType::Double,
                ),
            ],
            &[
                ("cls", nav(1, DataType::String)),
                ("running", nav(0, DataType::Double)),
                ("final", nav(3, DataType::Double)),
                ("mno", nav(2, DataType::BigInt)),
                ("rowtime", nav(4, DataType::Timestamp { precision: 3 })),
                ("prev", nav(5, DataType::Double)),
            ],
        );
        s.spec.subsets = vec![("U".into(), vec![0, 1])];
        s.spec.derived = vec![bin(
            BinaryOp::Multiply,
            amount(),
            number(2.0),
            DataType::Double,
        )];
        s.spec.rows_per_match = RowsPerMatch::AllShowEmpty;
        s.spec.after_match = AfterMatch::ToFirst(2);
        s.spec.within_ms = Some(5 * MINUTE);
        let out = s.check();
        assert!(some_line(&out, &[r#""card":"c3""#, r#""mno":2"#]));
        // `c5`'s match waited for the bound: its last row is also an `A`.
        assert!(some_line(&out, &[r#""card":"c5""#, r#""cls":"C""#]));
        assert!(!out.iter().flatten().any(|l| l.contains(r#""cls":"B""#)));
    }

    /// A layout 1 checkpoint's list of open partitions must be exactly the partitions with an
    /// open attempt (a row that starts nothing is skipped by it), and a queue entry must name a
    /// partition.
    #[test]
    fn a_partition_listed_as_open_without_an_open_attempt_or_queued_without_state_is_refused() {
        let mut partitions = KeyedState::<Partition>::default();
        partitions.id_or_insert_with(b"a", Partition::default);
        let list = |keys: &[&[u8]]| {
            let mut w = StateWriter::default();
            w.count(keys.len());
            for k in keys {
                w.bytes(k);
            }
            w.into_bytes()
        };
        let read = |bytes: &[u8]| read_open_layout_1(&mut StateReader::new(bytes), &partitions);
        assert!(read(&list(&[])).expect("none is open").is_empty());
        let idle = read(&list(&[b"a"])).expect_err("`a` has no open attempt");
        assert!(idle.0.contains("no open attempt"), "{}", idle.0);
        assert!(read(&list(&[b"b"])).is_err(), "`b` is no partition");
        let queue = |ids: &[u32]| {
            let mut w = StateWriter::default();
            w.count(ids.len());
            for &id in ids {
                w.i64(1000);
                w.u32(id);
            }
            w.into_bytes()
        };
        let read = |bytes: &[u8]| read_queue(&mut StateReader::new(bytes), &partitions);
        assert_eq!(read(&queue(&[0])).expect("`a` is id 0").len(), 1);
        let Err(missing) = read(&queue(&[0, 1])) else {
            panic!("a queue entry of id 1, which has no partition, was read");
        };
        assert!(missing.0.contains("partition 1"), "{}", missing.0);
    }

    /// Corrupt state is refused, or read as some other state, but never a panic: every byte of
    /// snapshots holding threads, pending matches, timed-out attempts, waiting rows and both
    /// queues, changed in turn — except inside the rows' Arrow IPC stream, which Arrow decodes
    /// (`arrow-ipc` 59 unwraps some malformed schema fields) and which the state file's digest
    /// protects before any decoding.
    #[test]
    fn corrupt_state_is_an_error_or_other_state_never_a_panic() {
        let s = card_testing();
        for emit in [EmitMode::Watermark, EmitMode::Arrival] {
            let mut op = s.operator(emit);
            let mut out = Vec::new();
            for step in &steps()[..7] {
                match step {
                    Step::Batch(input, b) => op.on_batch(*input, b.clone(), &mut out),
                    Step::Watermark(w) => op.on_watermark(*w, &mut out),
                    Step::End(input) => op.on_input_end(*input, &mut out),
                    Step::Changes(..) => panic!("MATCH_RECOGNIZE reads append-only rows"),
                }
                .expect("the run");
            }
            let mut w = StateWriter::default();
            assert!(op.snapshot(&mut w).expect("snapshot"));
            let bytes = w.into_bytes();
            let mut r = StateReader::new(&bytes);
            r.expect_tag("MATCH_RECOGNIZE", MR_STATE_LAYOUT).unwrap();
            r.i64().unwrap();
            r.u64().unwrap();
            let ipc_len = r.bytes().unwrap().len();
            // The tag, the watermark, the arrival counter and the IPC stream's length.
            let ipc = 28..28 + ipc_len;
            let mut refused = 0;
            for at in (0..bytes.len()).filter(|at| !ipc.contains(at)) {
                for flip in [0x01, 0x80, 0xff] {
                    let mut corrupt = bytes.clone();
                    corrupt[at] ^= flip;
                    let mut r = StateReader::new(&corrupt);
                    let read = s.operator(emit).restore(&mut r);
                    refused += usize::from(read.is_err());
                }
            }
            assert!(refused > 0, "{emit:?}: no corruption was noticed");
        }
    }
}
