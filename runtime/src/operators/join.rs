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
//!   joining a stream with a bounded reference table keeps only the table. It also joins updating
//!   inputs (Flink's semantics): a `+I`/`+U` row is kept and its pairs are emitted with its kind,
//!   a `-U`/`-D` row forgets an equal kept row of its side and its pairs are emitted with its kind.

use std::collections::BTreeSet;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, new_null_array};
use arrow::compute::kernels::interleave::interleave;
use arrow::compute::{filter_record_batch, interleave_record_batch};
use arrow::datatypes::{Schema as ArrowSchema, SchemaRef};
use fsql_plan::{Expr, JoinKind, JoinSpec};

use crate::compiled::Condition;
use crate::error::RuntimeError;
use crate::operator::{Changes, Event, LateRows, Operator};
use crate::operators::agg::key::{KeyBytes, KeyEncoder};
use crate::operators::window::event_millis;
use crate::state::KeyedState;
use crate::state::codec::{StateError, StateReader, StateWriter};

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

impl Side {
    /// Writes this input's kept rows for a checkpoint: each row slot (free, or the row's time
    /// and whether it matched), the rows themselves gathered into one batch in slot order (not
    /// the whole batches they were kept in), the free list, each key's rows (in the order
    /// matches are emitted) and the expiry queue. Row ids stay as they are: the expiry queue
    /// breaks ties by them and new rows reuse them from the free list.
    fn snapshot(&self, w: &mut StateWriter) -> Result<(), StateError> {
        w.bool(self.keep);
        w.count(self.rows.len());
        let mut sources: Vec<&RecordBatch> = Vec::new();
        let mut source_of: Vec<usize> = vec![usize::MAX; self.batches.len()];
        let mut indices = Vec::new();
        for row in &self.rows {
            let Some(k) = row else {
                w.bool(false);
                continue;
            };
            w.bool(true);
            w.i64(k.ts);
            w.bool(k.matched);
            let (Some(batch), Some(at)) =
                (self.batch(k.batch), source_of.get_mut(k.batch as usize))
            else {
                return Err(StateError("a kept row's batch is gone".into()));
            };
            if *at == usize::MAX {
                *at = sources.len();
                sources.push(batch);
            }
            indices.push((*at, k.row as usize));
        }
        let rows = if indices.is_empty() {
            Vec::new()
        } else {
            vec![
                interleave_record_batch(&sources, &indices)
                    .map_err(|e| StateError(format!("gathering rows: {e}")))?,
            ]
        };
        w.rows(&rows)?;
        w.count(self.free.len());
        for &id in &self.free {
            w.u32(id);
        }
        self.by_key.snapshot(w, |ids, w| {
            w.count(ids.as_slice().len());
            for &id in ids.as_slice() {
                w.u32(id);
            }
            Ok(())
        })?;
        w.count(self.expiry.len());
        for &(at, id) in &self.expiry {
            w.i64(at);
            w.u32(id);
        }
        Ok(())
    }

    /// Reads what [`Side::snapshot`] wrote for an input of `input`'s columns: the side, with its
    /// rows in one batch, and each row id's key bytes. Every live row must belong to exactly
    /// one key and every free id be an empty slot, so no later lookup goes out of range.
    fn restore(
        r: &mut StateReader<'_>,
        input: &ArrowSchema,
    ) -> Result<(Side, Vec<KeyBytes>), StateError> {
        let bad = |m: &str| Err(StateError(m.into()));
        let keep = r.bool()?;
        let slots = r.count()?;
        let mut rows = Vec::with_capacity(slots);
        let mut live: u32 = 0;
        for _ in 0..slots {
            rows.push(if r.bool()? {
                let kept = Kept {
                    batch: 0,
                    row: live,
                    ts: r.i64()?,
                    matched: r.bool()?,
                };
                live += 1;
                Some(kept)
            } else {
                None
            });
        }
        // Rows kept before the input gained columns are widened (see `widen`).
        let stored = r.rows_as(input)?;
        if stored.len() != live as usize {
            return bad("kept rows and their row slots disagree");
        }
        let batches = stored
            .batch()
            .map(|b| vec![Some((b.clone(), live))])
            .unwrap_or_default();
        let mut taken = vec![false; rows.len()];
        let free_count = r.count()?;
        let mut free = Vec::with_capacity(free_count);
        for _ in 0..free_count {
            let id = r.u32()?;
            match (rows.get(id as usize), taken.get_mut(id as usize)) {
                (Some(None), Some(t)) if !*t => *t = true,
                _ => return bad("a free row id is in use or free twice"),
            }
            free.push(id);
        }
        if free.len() + live as usize != rows.len() {
            return bad("an empty row slot is not free");
        }
        let by_key = KeyedState::restore(r, |r| {
            let ids: Vec<u32> = (0..r.count()?).map(|_| r.u32()).collect::<Result<_, _>>()?;
            match ids.as_slice() {
                [] => Err(StateError("a key without rows".into())),
                [id] => Ok(Ids::One(*id)),
                _ => Ok(Ids::Many(ids)),
            }
        })?;
        let mut row_keys = vec![KeyBytes::default(); rows.len()];
        let mut owned = 0;
        for (key_id, ids) in by_key.values() {
            for &id in ids.as_slice() {
                match (rows.get(id as usize), taken.get_mut(id as usize)) {
                    (Some(Some(_)), Some(t)) if !*t => *t = true,
                    _ => return bad("a key's row is free or another key's"),
                }
                row_keys[id as usize] = KeyBytes::new(by_key.key(key_id));
                owned += 1;
            }
        }
        if owned != live {
            return bad("a kept row belongs to no key");
        }
        let mut expiry = BTreeSet::new();
        for _ in 0..r.count()? {
            let (at, id) = (r.i64()?, r.u32()?);
            if !matches!(rows.get(id as usize), Some(Some(_))) || !expiry.insert((at, id)) {
                return bad("an expiry names a free row, or twice");
            }
        }
        let side = Side {
            batches,
            rows,
            free,
            by_key,
            expiry,
            keep,
        };
        Ok((side, row_keys))
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

/// Whether row `i` of `a` equals row `j` of `b` (same schema) in every column, NULL equal to NULL.
fn same_row(
    a: &RecordBatch,
    i: usize,
    b: &RecordBatch,
    j: usize,
) -> Result<bool, arrow::error::ArrowError> {
    for (x, y) in a.columns().iter().zip(b.columns()) {
        let cmp = arrow::array::make_comparator(x.as_ref(), y.as_ref(), Default::default())?;
        if cmp(i, j) != std::cmp::Ordering::Equal {
            return Ok(false);
        }
    }
    Ok(true)
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

impl Join {
    /// Forgets, for each row of `rows` (a retraction on input `side`), one kept row of that side
    /// equal to it (all columns; NULL equals NULL). A retraction of a row not kept (its partner
    /// input ended, or it never arrived) forgets nothing.
    fn forget(&mut self, side: usize, rows: &RecordBatch) -> Result<(), RuntimeError> {
        let (keys, valid) = self.encoders[side].encode_exprs(&self.name, &self.keys[side], rows)?;
        for (i, _) in valid.iter().enumerate().filter(|(_, v)| **v) {
            let key = keys.key(i);
            let Some(ids) = self.sides[side].by_key.get_by_key(key) else {
                continue;
            };
            let mut found = None;
            for &id in ids.as_slice() {
                let Some(k) = self.sides[side].rows.get(id as usize).copied().flatten() else {
                    continue;
                };
                let Some(kept) = self.sides[side].batch(k.batch) else {
                    continue;
                };
                if same_row(rows, i, kept, k.row as usize).map_err(|e| self.arrow_err(e))? {
                    found = Some(id);
                    break;
                }
            }
            if let Some(id) = found {
                self.sides[side].drop_row(key, id);
            }
        }
        Ok(())
    }

    /// Joins the rows of `batch` (input `input`) with the other input's kept rows, and keeps them
    /// (`keep`) for the other input's later rows.
    fn process(
        &mut self,
        input: usize,
        batch: RecordBatch,
        keep: bool,
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
            let kept = keep && self.sides[side].keep && valid[i] && expiry > self.watermark;
            if kept {
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
}

impl Operator for Join {
    fn on_batch(
        &mut self,
        input: usize,
        batch: RecordBatch,
        out: &mut Vec<Event>,
    ) -> Result<(), RuntimeError> {
        self.process(input, batch, true, out)
    }

    /// Changes of an updating input (regular inner joins only: the compiler refuses others), in
    /// runs of one kind: accumulating rows are joined and kept, retracting rows forget an equal
    /// kept row of their side and are joined; the pairs carry the row's kind.
    fn on_changes(
        &mut self,
        input: usize,
        changes: Changes,
        out: &mut Vec<Event>,
    ) -> Result<(), RuntimeError> {
        if self.bounds.is_some() || self.kind != JoinKind::Inner {
            return Err(RuntimeError::Plan(format!(
                "join node `{}`: only a regular inner join consumes update changes",
                self.name
            )));
        }
        let Changes { batch, kinds } = changes;
        if kinds.len() != batch.num_rows() {
            return Err(RuntimeError::Plan(format!(
                "join node `{}`: a batch's row kinds do not match its rows",
                self.name
            )));
        }
        let mut start = 0;
        while let Some(&kind) = kinds.get(start) {
            let end = kinds[start..]
                .iter()
                .position(|k| *k != kind)
                .map_or(kinds.len(), |p| start + p);
            let run = batch.slice(start, end - start);
            let mut events = Vec::new();
            if kind.is_accumulate() {
                self.process(input, run, true, &mut events)?;
            } else {
                self.forget(input.min(1), &run)?;
                self.process(input, run, false, &mut events)?;
            }
            for e in events {
                out.push(match e {
                    Event::Batch(b) => Event::Changes(Changes {
                        kinds: vec![kind; b.num_rows()],
                        batch: b,
                    }),
                    other => other,
                });
            }
            start = end;
        }
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

    /// The watermark and both inputs' kept rows ([`Side::snapshot`]); a regular join whose
    /// reference input ended keeps only that input's rows, and says so.
    fn snapshot(&mut self, w: &mut StateWriter) -> Result<bool, RuntimeError> {
        let err = |e| RuntimeError::state(&self.name, e);
        w.u32(JOIN_STATE_LAYOUT);
        w.i64(self.watermark);
        for side in &self.sides {
            side.snapshot(w).map_err(err)?;
        }
        Ok(true)
    }

    fn restore(&mut self, r: &mut StateReader<'_>) -> Result<(), RuntimeError> {
        let err = |e| RuntimeError::state(&self.name, e);
        r.expect_tag("join", JOIN_STATE_LAYOUT).map_err(err)?;
        let watermark = r.i64().map_err(err)?;
        let (left, left_keys) = Side::restore(r, &self.input_schemas[LEFT]).map_err(err)?;
        let (right, right_keys) = Side::restore(r, &self.input_schemas[RIGHT]).map_err(err)?;
        self.watermark = watermark;
        self.sides = [left, right];
        self.row_keys = [left_keys, right_keys];
        Ok(())
    }
}

/// The layout of a join's checkpoint state (bumped when it changes).
const JOIN_STATE_LAYOUT: u32 = 1;

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
                Event::Changes(c) => c.batch.num_rows(),
                Event::Watermark(_) => 0,
            })
            .sum()
    }

    #[test]
    fn a_regular_join_retracts_the_pairs_of_a_retracted_row_and_restores() {
        use crate::operator::RowKind::{self, Delete, Insert, UpdateAfter, UpdateBefore};
        use crate::testkit::{Step, check_restore};
        let changes =
            |rows: &[(i64, i64)], kinds: Vec<RowKind>| Step::Changes(LEFT, batch("l", rows), kinds);
        let steps = vec![
            Step::Batch(RIGHT, batch("r", &[(1, 100), (1, 101), (2, 200)])),
            changes(&[(1, 5), (2, 6)], vec![Insert, Insert]),
            // An update of (1, 5): its pairs are retracted, the new row's emitted.
            changes(&[(1, 5), (1, 7)], vec![UpdateBefore, UpdateAfter]),
            // A retraction of a row never kept forgets nothing.
            changes(&[(3, 9)], vec![Delete]),
            changes(&[(2, 6)], vec![Delete]),
            // Only (1, 7) is left to meet a new right row.
            Step::Batch(RIGHT, batch("r", &[(1, 102), (2, 201)])),
        ];
        let out = check_restore(&|| Box::new(join(JoinKind::Inner, None)), &steps);
        let pair = |kind: &str, l: (i64, i64), r: (i64, i64)| {
            format!(
                r#"{kind}{{"lk":{},"lts":"{}","rk":{},"rts":"{}"}}"#,
                l.0,
                ts(l.1),
                r.0,
                ts(r.1)
            )
        };
        assert_eq!(
            out,
            vec![
                pair("+I ", (1, 5), (1, 100)),
                pair("+I ", (1, 5), (1, 101)),
                pair("+I ", (2, 6), (2, 200)),
                pair("-U ", (1, 5), (1, 100)),
                pair("-U ", (1, 5), (1, 101)),
                pair("+U ", (1, 7), (1, 100)),
                pair("+U ", (1, 7), (1, 101)),
                pair("-D ", (2, 6), (2, 200)),
                pair("", (1, 7), (1, 102)),
            ]
        );
    }

    /// A millisecond timestamp as the JSON rows of `testkit::rows` show it.
    fn ts(ms: i64) -> String {
        let mut s = String::new();
        let b = RecordBatch::try_new(
            Arc::new(ArrowSchema::new(vec![Field::new(
                "t",
                ArrowType::Timestamp(TimeUnit::Millisecond, None),
                true,
            )])),
            vec![Arc::new(TimestampMillisecondArray::from(vec![ms]))],
        )
        .unwrap();
        crate::format::json_row(&b, 0, &mut s);
        s.trim_start_matches("{\"t\":\"")
            .trim_end_matches("\"}")
            .to_string()
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
        let mut j = join(JoinKind::Left, Some(interval()));
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

    fn interval() -> IntervalBounds {
        // -10 <= l.ts - r.ts <= 5
        IntervalBounds {
            left_time: 1,
            right_time: 1,
            lower_ms: -10,
            lower_inclusive: true,
            upper_ms: 5,
            upper_inclusive: true,
        }
    }

    /// Interval joins of every kind (one with a residual condition, so rows that met a partner
    /// can still be unmatched) and a regular join with a reference table that ends: out-of-order
    /// rows on both inputs, several keys, late rows and expiring rows, checkpointed after any step
    /// and restored, give exactly the uninterrupted output.
    #[test]
    fn a_restored_join_continues_exactly_where_the_checkpointed_one_was() {
        use crate::testkit::{Step, check_restore, drive};
        let l = |rows: &[(i64, i64)]| Step::Batch(LEFT, batch("l", rows));
        let r = |rows: &[(i64, i64)]| Step::Batch(RIGHT, batch("r", rows));
        let steps = vec![
            l(&[(1, 100), (2, 100), (3, 103)]),
            r(&[(1, 110), (1, 96), (3, 90)]),
            l(&[(1, 98), (2, 120), (1, 97)]),
            Step::Watermark(104),
            r(&[(2, 112), (1, 104), (1, 106)]),
            l(&[(3, 109), (1, 130)]),
            Step::Watermark(115),
            r(&[(1, 128), (3, 113), (2, 125)]),
            Step::Watermark(125),
            // Unmatched rows expiring together are padded in row-id order: ids of freed rows.
            l(&[(5, 140), (6, 140), (7, 140), (2, 131)]),
            Step::Watermark(i64::MAX),
        ];
        let ts = DataType::Timestamp { precision: 3 };
        for kind in [
            JoinKind::Inner,
            JoinKind::Left,
            JoinKind::Right,
            JoinKind::Full,
        ] {
            for residual in [false, true] {
                let make = || {
                    let mut j = join(kind, Some(interval()));
                    if residual {
                        // l.ts <> r.ts + 6 ms
                        j.residual = Some(Condition::new(crate::testkit::bin(
                            fsql_plan::BinaryOp::NotEq,
                            Expr::column(1, ts.clone(), true),
                            crate::testkit::bin(
                                fsql_plan::BinaryOp::Plus,
                                Expr::column(3, ts.clone(), true),
                                crate::testkit::lit(
                                    fsql_plan::Literal::Int(6),
                                    DataType::IntervalDayTime,
                                ),
                                ts.clone(),
                            ),
                            DataType::Boolean,
                        )));
                    }
                    j
                };
                let whole = check_restore(&|| Box::new(make()), &steps);
                let rows = whole.iter().filter(|l| !l.starts_with("watermark")).count();
                assert!(rows >= 4, "{kind:?}: {whole:?}");
                let mut j = make();
                drive(&mut j, &steps, &mut Vec::new()).unwrap();
                assert_eq!(j.late_rows(), 2, "{kind:?}");
            }
        }
        let steps = vec![
            // Stream rows before the reference is loaded wait for it.
            l(&[(1, 10), (2, 11)]),
            r(&[(1, 0), (2, 0), (3, 0)]),
            r(&[(1, 1)]),
            Step::End(RIGHT),
            l(&[(2, 20), (3, 30), (1, 40), (4, 41)]),
            Step::Watermark(50),
            l(&[(1, 60), (3, 61)]),
            Step::Watermark(i64::MAX),
        ];
        let whole = check_restore(&|| Box::new(join(JoinKind::Inner, None)), &steps);
        let rows = whole.iter().filter(|l| !l.starts_with("watermark")).count();
        assert_eq!(rows, 10, "{whole:?}");
        // Restored after the reference ended, the join still keeps only the reference's rows.
        let mut j = join(JoinKind::Inner, None);
        drive(&mut j, &steps[..5], &mut Vec::new()).unwrap();
        let mut w = StateWriter::default();
        assert!(j.snapshot(&mut w).unwrap());
        let bytes = w.into_bytes();
        let mut back = join(JoinKind::Inner, None);
        back.restore(&mut StateReader::new(&bytes)).unwrap();
        drive(&mut back, &steps[5..], &mut Vec::new()).unwrap();
        assert_eq!(back.kept_rows(), [0, 4]);
    }
}
