//! Joins of two inputs: interval joins (inner and outer) and regular inner joins.
//!
//! Both inputs' rows are kept per join key (row-encoded; a key with a NULL never matches). A new
//! row probes the other input's rows of its key, and every pair that satisfies the time bounds and
//! the residual condition is emitted at once (output = left columns, then right columns).
//!
//! * **Interval join** (`lower ≤ l.ts − r.ts ≤ upper`): a left row can only meet right rows with
//!   `r.ts ≤ l.ts − lower`, so it is dropped once the watermark reaches that (a right row once it
//!   reaches `r.ts + upper`); an outer join emits it NULL-padded then if it never matched. A row
//!   at or behind the watermark is late (its partners may be gone): counted and sent to the
//!   late-data output. The output watermark is held back by `max(upper, −lower)`, so joined rows
//!   are never behind it whichever input's time a consumer uses.
//! * **Regular join** (no time bounds; inner only): rows are kept until the *other* input ends —
//!   joining a stream with a bounded reference table keeps only the table.

use std::collections::BTreeSet;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, new_null_array};
use arrow::compute::filter_record_batch;
use arrow::compute::kernels::interleave::interleave;
use arrow::datatypes::SchemaRef;
use fsql_plan::{Expr, JoinKind, JoinSpec};

use crate::compiled::Condition;
use crate::error::RuntimeError;
use crate::operator::{Event, LateRows, Operator};
use crate::operators::agg::key::{KeyBytes, KeyEncoder};
use crate::operators::window::event_millis;
use crate::state::KeyedState;

const LEFT: usize = 0;
const RIGHT: usize = 1;

/// `lower ≤ l.ts − r.ts ≤ upper`, inclusive, in milliseconds.
#[derive(Clone, Copy, Debug)]
struct Bounds {
    time: [usize; 2],
    lower: i64,
    upper: i64,
}

/// A kept row.
#[derive(Clone, Copy, Debug)]
struct Kept {
    batch: u32,
    row: u32,
    ts: i64,
    matched: bool,
}

/// One input's kept rows.
#[derive(Default)]
struct Side {
    /// Batches holding kept rows, with how many they hold (freed at zero).
    batches: Vec<Option<(RecordBatch, u32)>>,
    rows: Vec<Option<Kept>>,
    free: Vec<u32>,
    by_key: KeyedState<Ids>,
    /// `(expiry, row)`: interval joins drop rows once the watermark reaches their expiry.
    expiry: BTreeSet<(i64, u32)>,
    /// False once the other input ended (regular join): nothing can match later rows.
    keep: bool,
}

impl Side {
    fn add_batch(&mut self, batch: RecordBatch) -> u32 {
        self.batches.push(Some((batch, 0)));
        (self.batches.len() - 1) as u32
    }

    fn batch(&self, b: u32) -> Option<&RecordBatch> {
        self.batches
            .get(b as usize)
            .and_then(|e| e.as_ref().map(|(batch, _)| batch))
    }

    fn keep_row(&mut self, key: &[u8], kept: Kept) -> u32 {
        if let Some(Some((_, n))) = self.batches.get_mut(kept.batch as usize) {
            *n += 1;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.rows[id as usize] = Some(kept);
                id
            }
            None => {
                self.rows.push(Some(kept));
                (self.rows.len() - 1) as u32
            }
        };
        match self.by_key.get_mut_by_key(key) {
            Some(ids) => ids.push(id),
            None => {
                self.by_key.id_or_insert_with(key, || Ids::One(id));
            }
        }
        id
    }

    /// Forgets row `id` (kept under `key`).
    fn drop_row(&mut self, key: &[u8], id: u32) -> Option<Kept> {
        let kept = self.rows.get_mut(id as usize)?.take()?;
        self.free.push(id);
        if let Some(ids) = self.by_key.get_mut_by_key(key)
            && ids.remove(id)
        {
            self.by_key.remove_key(key);
        }
        if let Some(entry) = self.batches.get_mut(kept.batch as usize) {
            let empty = entry.as_mut().is_some_and(|(_, n)| {
                *n = n.saturating_sub(1);
                *n == 0
            });
            if empty {
                *entry = None;
            }
        }
        Some(kept)
    }

    /// Drops a batch no kept row references.
    fn release_if_unused(&mut self, b: u32) {
        if let Some(entry) = self.batches.get_mut(b as usize)
            && entry.as_ref().is_some_and(|(_, n)| *n == 0)
        {
            *entry = None;
        }
    }

    fn clear(&mut self) {
        self.batches.clear();
        self.rows.clear();
        self.free.clear();
        self.by_key.clear();
        self.expiry.clear();
    }
}

/// The kept rows of one key: most keys have one, so no vector for them.
#[derive(Clone, Debug)]
enum Ids {
    One(u32),
    Many(Vec<u32>),
}

impl Ids {
    fn push(&mut self, id: u32) {
        match self {
            Ids::One(first) => *self = Ids::Many(vec![*first, id]),
            Ids::Many(ids) => ids.push(id),
        }
    }

    /// Removes `id`; true when none is left.
    fn remove(&mut self, id: u32) -> bool {
        match self {
            Ids::One(x) => *x == id,
            Ids::Many(ids) => {
                if let Some(at) = ids.iter().position(|&x| x == id) {
                    ids.swap_remove(at);
                }
                ids.is_empty()
            }
        }
    }

    fn as_slice(&self) -> &[u32] {
        match self {
            Ids::One(x) => std::slice::from_ref(x),
            Ids::Many(ids) => ids,
        }
    }
}

/// A row reference for output: `(side's batch, row)`, or none for NULL padding.
type Ref = Option<(u32, u32)>;

/// The Join operator.
pub struct Join {
    name: String,
    schema: SchemaRef,
    kind: JoinKind,
    widths: [usize; 2],
    input_schemas: [SchemaRef; 2],
    keys: [Vec<Expr>; 2],
    encoders: [KeyEncoder; 2],
    bounds: Option<Bounds>,
    residual: Option<Condition>,
    sides: [Side; 2],
    /// Key bytes of kept rows, by side and row id (for dropping them).
    row_keys: [Vec<KeyBytes>; 2],
    watermark: i64,
    /// `max(upper, −lower, 0)`: how far the output watermark trails the input's.
    delay: i64,
    late: LateRows,
}

impl Join {
    /// A join of `left` and `right` producing `schema` (left columns, then right columns).
    pub fn new(
        name: &str,
        spec: &JoinSpec,
        left: SchemaRef,
        right: SchemaRef,
        schema: SchemaRef,
    ) -> Result<Join, RuntimeError> {
        let plan_err = |m: String| RuntimeError::Plan(format!("join node `{name}`: {m}"));
        let widths = [left.fields().len(), right.fields().len()];
        if schema.fields().len() != widths[0] + widths[1] {
            return Err(plan_err(format!(
                "{} output columns for inputs of {} and {}",
                schema.fields().len(),
                widths[0],
                widths[1]
            )));
        }
        if spec.left_keys.len() != spec.right_keys.len() {
            return Err(plan_err("unpaired join keys".into()));
        }
        let bounds = spec.interval.map(|b| Bounds {
            time: [b.left_time, b.right_time],
            lower: if b.lower_inclusive {
                b.lower_ms
            } else {
                b.lower_ms.saturating_add(1)
            },
            upper: if b.upper_inclusive {
                b.upper_ms
            } else {
                b.upper_ms.saturating_sub(1)
            },
        });
        if let Some(b) = &bounds
            && (b.time[0] >= widths[0] || b.time[1] >= widths[1])
        {
            return Err(plan_err("time column out of range".into()));
        }
        if bounds.is_none() && spec.kind != JoinKind::Inner {
            return Err(plan_err("an outer join needs interval bounds".into()));
        }
        let delay = bounds.map_or(0, |b| b.upper.max(b.lower.saturating_neg()).max(0));
        let key_count = spec.left_keys.len();
        Ok(Join {
            name: name.to_string(),
            schema,
            kind: spec.kind,
            widths,
            input_schemas: [left, right],
            keys: [spec.left_keys.clone(), spec.right_keys.clone()],
            encoders: [
                KeyEncoder::new((0..key_count).collect()),
                KeyEncoder::new((0..key_count).collect()),
            ],
            bounds,
            residual: spec.residual.clone().map(Condition::new),
            sides: [
                Side {
                    keep: true,
                    ..Side::default()
                },
                Side {
                    keep: true,
                    ..Side::default()
                },
            ],
            row_keys: [Vec::new(), Vec::new()],
            watermark: i64::MIN,
            delay,
            late: LateRows::default(),
        })
    }

    /// The same node with its residual condition computed by compiled code where the JIT
    /// reaches.
    pub fn compiled(mut self) -> Join {
        if let Some(residual) = &mut self.residual {
            residual.compile(&self.schema);
        }
        self
    }

    /// Rows kept per input (left, right).
    pub fn kept_rows(&self) -> [usize; 2] {
        [LEFT, RIGHT].map(|s| self.sides[s].rows.iter().filter(|r| r.is_some()).count())
    }

    fn arrow_err(&self, e: arrow::error::ArrowError) -> RuntimeError {
        RuntimeError::arrow(&self.name, e)
    }

    /// Whether unmatched rows of `side` are emitted NULL-padded.
    fn preserves(&self, side: usize) -> bool {
        matches!(
            (self.kind, side),
            (JoinKind::Left | JoinKind::Full, LEFT) | (JoinKind::Right | JoinKind::Full, RIGHT)
        )
    }

    /// When a row of `side` at `ts` can no longer meet a row of the other input.
    fn expiry(&self, side: usize, ts: i64) -> i64 {
        match self.bounds {
            Some(b) if side == LEFT => ts.saturating_sub(b.lower),
            Some(b) => ts.saturating_add(b.upper),
            None => i64::MAX,
        }
    }

    /// Whether a left row at `lt` and a right row at `rt` are within the bounds.
    fn within(&self, lt: i64, rt: i64) -> bool {
        match self.bounds {
            Some(b) => {
                let d = lt.saturating_sub(rt);
                b.lower <= d && d <= b.upper
            }
            None => true,
        }
    }

    /// Output rows for `(left, right)` references (`None` = NULL padding).
    fn build(&self, pairs: &[(Ref, Ref)]) -> Result<RecordBatch, RuntimeError> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for side in [LEFT, RIGHT] {
            // Sources: the referenced batches, then one NULL row.
            let mut sources: Vec<u32> = pairs
                .iter()
                .filter_map(|p| if side == LEFT { p.0 } else { p.1 })
                .map(|(b, _)| b)
                .collect();
            sources.sort_unstable();
            sources.dedup();
            let null_source = sources.len();
            let indices: Vec<(usize, usize)> = pairs
                .iter()
                .map(|p| match if side == LEFT { p.0 } else { p.1 } {
                    Some((b, r)) => (sources.binary_search(&b).unwrap_or(null_source), r as usize),
                    None => (null_source, 0),
                })
                .collect();
            for c in 0..self.widths[side] {
                let field = self.input_schemas[side].field(c);
                let mut arrays: Vec<ArrayRef> = Vec::with_capacity(sources.len() + 1);
                for &b in &sources {
                    let batch = self.sides[side].batch(b).ok_or_else(|| {
                        RuntimeError::Plan(format!(
                            "join node `{}`: a kept batch is gone",
                            self.name
                        ))
                    })?;
                    arrays.push(batch.column(c).clone());
                }
                arrays.push(new_null_array(field.data_type(), 1));
                let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
                columns.push(interleave(&refs, &indices).map_err(|e| self.arrow_err(e))?);
            }
        }
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(pairs.len()));
        RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)
            .map_err(|e| self.arrow_err(e))
    }

    /// Keeps the pairs for which the residual condition is TRUE; returns which survived.
    fn apply_residual(
        &mut self,
        batch: RecordBatch,
    ) -> Result<(RecordBatch, Option<BooleanArray>), RuntimeError> {
        let Some(residual) = &mut self.residual else {
            return Ok((batch, None));
        };
        let mask = residual
            .holds(&batch)
            .map_err(|e| RuntimeError::eval(&self.name, e))?;
        let kept = filter_record_batch(&batch, &mask).map_err(|e| self.arrow_err(e))?;
        Ok((kept, Some(mask)))
    }

    /// Drops every kept row whose expiry the watermark reached; outer joins emit the unmatched.
    fn expire(&mut self, w: i64, out: &mut Vec<Event>) -> Result<(), RuntimeError> {
        let mut padded: Vec<(Ref, Ref)> = Vec::new();
        for side in [LEFT, RIGHT] {
            while let Some(&(at, id)) = self.sides[side].expiry.first() {
                if at > w {
                    break;
                }
                self.sides[side].expiry.pop_first();
                let key = std::mem::take(&mut self.row_keys[side][id as usize]);
                let key = key.as_slice();
                // The row's batch stays until this round's padded rows are built.
                let Some(kept) = self.sides[side].rows.get(id as usize).copied().flatten() else {
                    continue;
                };
                if !kept.matched && self.preserves(side) {
                    let r = Some((kept.batch, kept.row));
                    padded.push(if side == LEFT { (r, None) } else { (None, r) });
                    if let Some(Some((_, n))) =
                        self.sides[side].batches.get_mut(kept.batch as usize)
                    {
                        // Held for the build below.
                        *n += 1;
                    }
                }
                self.sides[side].drop_row(key, id);
            }
        }
        if !padded.is_empty() {
            out.push(Event::Batch(self.build(&padded)?));
            for (l, r) in &padded {
                for (side, rf) in [(LEFT, l), (RIGHT, r)] {
                    if let Some((b, _)) = rf
                        && let Some(Some((_, n))) = self.sides[side].batches.get_mut(*b as usize)
                    {
                        *n = n.saturating_sub(1);
                    }
                    if let Some((b, _)) = rf {
                        self.sides[side].release_if_unused(*b);
                    }
                }
            }
        }
        Ok(())
    }
}

impl Operator for Join {
    fn on_batch(
        &mut self,
        input: usize,
        batch: RecordBatch,
        out: &mut Vec<Event>,
    ) -> Result<(), RuntimeError> {
        let side = input.min(1);
        let other = 1 - side;
        if batch.num_columns() != self.widths[side] {
            return Err(RuntimeError::Plan(format!(
                "join node `{}`: input {input} has {} columns, expected {}",
                self.name,
                batch.num_columns(),
                self.widths[side]
            )));
        }
        let n = batch.num_rows();
        let times = match self.bounds {
            Some(b) => {
                Some(event_millis(batch.column(b.time[side])).map_err(|e| self.arrow_err(e))?)
            }
            None => None,
        };
        // Late rows (interval joins): at or behind the watermark, their partners may be gone.
        let mut late = Vec::new();
        let mut on_time = vec![true; n];
        if let Some(ts) = &times {
            for (i, ok) in on_time.iter_mut().enumerate() {
                if ts.is_null(i) || ts.value(i) <= self.watermark {
                    *ok = false;
                    late.push(i as u32);
                }
            }
        }
        self.late.keep(&self.name, &batch, late)?;
        let (keys, valid) =
            self.encoders[side].encode_exprs(&self.name, &self.keys[side], &batch)?;
        let b = self.sides[side].add_batch(batch);
        // Probe the other input.
        let mut pairs: Vec<(Ref, Ref)> = Vec::new();
        let mut probe_rows: Vec<u32> = Vec::new();
        let mut partners: Vec<u32> = Vec::new();
        for i in 0..n {
            if !on_time[i] || !valid[i] {
                continue;
            }
            let ts = times.as_ref().map_or(0, |t| t.value(i));
            let Some(ids) = self.sides[other].by_key.get_by_key(keys.key(i)) else {
                continue;
            };
            for &id in ids.as_slice() {
                let Some(k) = self.sides[other].rows[id as usize] else {
                    continue;
                };
                let (lt, rt) = if side == LEFT { (ts, k.ts) } else { (k.ts, ts) };
                if !self.within(lt, rt) {
                    continue;
                }
                let mine = Some((b, i as u32));
                let theirs = Some((k.batch, k.row));
                pairs.push(if side == LEFT {
                    (mine, theirs)
                } else {
                    (theirs, mine)
                });
                probe_rows.push(i as u32);
                partners.push(id);
            }
        }
        let mut matched = vec![false; n];
        if !pairs.is_empty() {
            let joined = self.build(&pairs)?;
            let (joined, mask) = self.apply_residual(joined)?;
            for (j, (&i, &id)) in probe_rows.iter().zip(&partners).enumerate() {
                if mask.as_ref().is_none_or(|m| m.value(j)) {
                    matched[i as usize] = true;
                    if let Some(Some(k)) = self.sides[other].rows.get_mut(id as usize) {
                        k.matched = true;
                    }
                }
            }
            if joined.num_rows() > 0 {
                out.push(Event::Batch(joined));
            }
        }
        // Keep the rows later rows of the other input can still meet; pad the others now.
        let mut padded: Vec<(Ref, Ref)> = Vec::new();
        for i in 0..n {
            if !on_time[i] {
                continue;
            }
            let ts = times.as_ref().map_or(0, |t| t.value(i));
            let expiry = self.expiry(side, ts);
            let keep = self.sides[side].keep && valid[i] && expiry > self.watermark;
            if keep {
                let key = keys.key(i);
                let id = self.sides[side].keep_row(
                    key,
                    Kept {
                        batch: b,
                        row: i as u32,
                        ts,
                        matched: matched[i],
                    },
                );
                let slots = &mut self.row_keys[side];
                if slots.len() <= id as usize {
                    slots.resize(id as usize + 1, KeyBytes::default());
                }
                slots[id as usize] = KeyBytes::new(key);
                if self.bounds.is_some() {
                    self.sides[side].expiry.insert((expiry, id));
                }
            } else if !matched[i] && self.preserves(side) {
                let r = Some((b, i as u32));
                padded.push(if side == LEFT { (r, None) } else { (None, r) });
            }
        }
        if !padded.is_empty() {
            out.push(Event::Batch(self.build(&padded)?));
        }
        self.sides[side].release_if_unused(b);
        Ok(())
    }

    fn on_watermark(&mut self, w: i64, out: &mut Vec<Event>) -> Result<(), RuntimeError> {
        if w > self.watermark {
            self.watermark = w;
            if self.bounds.is_some() {
                self.expire(w, out)?;
            }
        }
        let held = if w == i64::MAX {
            w
        } else {
            w.saturating_sub(self.delay)
        };
        out.push(Event::Watermark(held));
        Ok(())
    }

    fn on_input_end(&mut self, input: usize, _out: &mut Vec<Event>) -> Result<(), RuntimeError> {
        // A regular join: nothing of the ended input's can meet the other input's later rows,
        // so those need not be kept any more.
        if self.bounds.is_none() {
            let other = 1 - input.min(1);
            self.sides[other].keep = false;
            self.sides[other].clear();
            self.row_keys[other].clear();
        }
        Ok(())
    }

    fn late_rows(&self) -> u64 {
        self.late.count()
    }

    fn take_late(&mut self) -> Option<RecordBatch> {
        self.late.take()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, TimestampMillisecondArray};
    use arrow::datatypes::{DataType as ArrowType, Field, Schema as ArrowSchema, TimeUnit};
    use fsql_plan::{DataType, IntervalBounds};

    use super::*;

    fn schema(prefix: &str) -> SchemaRef {
        Arc::new(ArrowSchema::new(vec![
            Field::new(format!("{prefix}k"), ArrowType::Int64, true),
            Field::new(
                format!("{prefix}ts"),
                ArrowType::Timestamp(TimeUnit::Millisecond, None),
                true,
            ),
        ]))
    }

    fn batch(prefix: &str, rows: &[(i64, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(prefix),
            vec![
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(TimestampMillisecondArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    fn join(kind: JoinKind, interval: Option<IntervalBounds>) -> Join {
        let key = Expr::column(0, DataType::BigInt, true);
        let spec = JoinSpec {
            kind,
            left_keys: vec![key.clone()],
            right_keys: vec![key],
            interval,
            residual: None,
        };
        let out = Arc::new(ArrowSchema::new(
            schema("l")
                .fields()
                .iter()
                .chain(schema("r").fields().iter())
                .map(|f| f.as_ref().clone())
                .collect::<Vec<_>>(),
        ));
        Join::new("j", &spec, schema("l"), schema("r"), out).unwrap()
    }

    fn rows(events: &[Event]) -> usize {
        events
            .iter()
            .map(|e| match e {
                Event::Batch(b) => b.num_rows(),
                Event::Watermark(_) => 0,
            })
            .sum()
    }

    #[test]
    fn a_regular_join_keeps_only_the_reference_once_it_ended() {
        let mut j = join(JoinKind::Inner, None);
        let mut out = Vec::new();
        // A stream row arrives before the reference is loaded: it waits for it.
        j.on_batch(LEFT, batch("l", &[(1, 10)]), &mut out).unwrap();
        j.on_batch(RIGHT, batch("r", &[(1, 0), (2, 0)]), &mut out)
            .unwrap();
        assert_eq!(rows(&out), 1);
        j.on_input_end(RIGHT, &mut out).unwrap();
        assert_eq!(j.kept_rows(), [0, 2], "stream rows are no longer kept");
        out.clear();
        j.on_batch(LEFT, batch("l", &[(2, 20), (3, 30), (1, 40)]), &mut out)
            .unwrap();
        assert_eq!(rows(&out), 2);
        assert_eq!(j.kept_rows(), [0, 2]);
    }

    #[test]
    fn interval_rows_expire_pad_and_hold_the_watermark_back() {
        // -10 <= l.ts - r.ts <= 5
        let bounds = IntervalBounds {
            left_time: 1,
            right_time: 1,
            lower_ms: -10,
            lower_inclusive: true,
            upper_ms: 5,
            upper_inclusive: true,
        };
        let mut j = join(JoinKind::Left, Some(bounds));
        let mut out = Vec::new();
        j.on_batch(LEFT, batch("l", &[(1, 100), (2, 100)]), &mut out)
            .unwrap();
        j.on_batch(RIGHT, batch("r", &[(1, 110), (1, 96), (1, 94)]), &mut out)
            .unwrap();
        assert_eq!(
            rows(&out),
            2,
            "110 and 96 are within [-10, 5] of 100; 94 is not"
        );
        out.clear();
        // The left rows can meet right rows up to 110: kept until the watermark reaches it.
        j.on_watermark(109, &mut out).unwrap();
        assert_eq!(rows(&out), 0);
        assert!(matches!(out.last(), Some(Event::Watermark(99))), "{out:?}");
        out.clear();
        j.on_watermark(110, &mut out).unwrap();
        assert_eq!(rows(&out), 1, "key 2 never matched: NULL-padded");
        // A row at or behind the watermark is late.
        j.on_batch(LEFT, batch("l", &[(1, 105)]), &mut out).unwrap();
        assert_eq!(j.late_rows(), 1);
        assert_eq!(j.take_late().map(|b| b.num_rows()), Some(1));
    }
}
