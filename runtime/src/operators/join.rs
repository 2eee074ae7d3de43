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

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, new_null_array};
use arrow::compute::filter_record_batch;
use arrow::compute::kernels::interleave::interleave;
use arrow::datatypes::SchemaRef;
use fsql_plan::{Expr, JoinKind, JoinSpec};

use crate::compiled::Condition;
use crate::error::RuntimeError;
use crate::operator::{Changes, Event, LateRows, Operator};
use crate::operators::agg::key::KeyEncoder;
use crate::operators::window::event_millis;
use crate::state::codec::{StateError, StateReader, StateWriter};
use crate::state::row_codec::{self, RowCodec};
use crate::state::{KeyedState, StateBackend, ValueCodec};

const LEFT: usize = 0;
const RIGHT: usize = 1;

/// `lower ≤ l.ts − r.ts ≤ upper`, inclusive, in milliseconds.
#[derive(Clone, Copy, Debug)]
struct Bounds {
    time: [usize; 2],
    lower: i64,
    upper: i64,
}

/// A kept row: the batch it is in (the input batch it arrived in; read back from a checkpoint or
/// from RocksDB, its key's batch), its time, whether it met a partner, and its arrival number on
/// its input, which names it in the expiry queue.
#[derive(Clone, Debug)]
struct Kept {
    batch: Arc<RecordBatch>,
    row: u32,
    ts: i64,
    matched: bool,
    seq: u64,
}

/// The kept rows of one key, in arrival order.
#[derive(Clone, Debug, Default)]
struct KeyRows {
    rows: Vec<Kept>,
    /// Read back from RocksDB and not used since: its rows are in a batch of their own, which
    /// [`Side::compact_reloaded`] copies into a shared one once the key is used.
    reloaded: bool,
}

impl KeyRows {
    /// Writes the rows' times, flags and arrival numbers (the rows themselves are written apart).
    fn write_meta(&self, w: &mut StateWriter) {
        w.count(self.rows.len());
        for k in &self.rows {
            w.i64(k.ts);
            w.bool(k.matched);
            w.u64(k.seq);
        }
    }

    /// Reads what [`KeyRows::write_meta`] wrote, each row the next of `rows` (a batch read back).
    fn read_meta(
        r: &mut StateReader<'_>,
        rows: &Arc<RecordBatch>,
        next: &mut usize,
    ) -> Result<KeyRows, StateError> {
        let n = r.count()?;
        if n == 0 {
            return Err(StateError("a key without rows".into()));
        }
        let mut kept = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            let (ts, matched, seq) = (r.i64()?, r.bool()?, r.u64()?);
            if *next >= rows.num_rows() {
                return Err(StateError(format!(
                    "state refers to more than the {} kept rows",
                    rows.num_rows()
                )));
            }
            kept.push(Kept {
                batch: Arc::clone(rows),
                row: *next as u32,
                ts,
                matched,
                seq,
            });
            *next += 1;
        }
        Ok(KeyRows {
            rows: kept,
            reloaded: false,
        })
    }
}

/// `rows` gathered into one batch of `schema`, in order.
fn gather(rows: &[&Kept], schema: &SchemaRef) -> Result<RecordBatch, StateError> {
    let refs: Vec<(&RecordBatch, usize)> = rows
        .iter()
        .map(|k| (k.batch.as_ref(), k.row as usize))
        .collect();
    row_codec::gather(&refs, schema)
}

/// How a key's kept rows are stored in RocksDB: the rows ([`RowCodec`]), then
/// [`KeyRows::write_meta`].
fn key_rows_codec(rows: RowCodec) -> ValueCodec<KeyRows> {
    let rows = Arc::new(rows);
    let read = Arc::clone(&rows);
    ValueCodec {
        encode: Box::new(move |k: &KeyRows, w: &mut StateWriter| {
            let refs: Vec<(&RecordBatch, usize)> = k
                .rows
                .iter()
                .map(|k| (k.batch.as_ref(), k.row as usize))
                .collect();
            rows.encode(&refs, w)?;
            k.write_meta(w);
            Ok(())
        }),
        decode: Box::new(move |r: &mut StateReader<'_>| {
            let batch = Arc::new(read.decode(r)?);
            let mut next = 0;
            let mut rows = KeyRows::read_meta(r, &batch, &mut next)?;
            if next != batch.num_rows() {
                return Err(StateError(
                    "a key's stored rows and their count disagree".into(),
                ));
            }
            rows.reloaded = true;
            Ok(rows)
        }),
    }
}

/// One input's kept rows, by key.
struct Side {
    /// Rows of the input, with this side's name in the backend (`<node>#left`, `<node>#right`).
    schema: SchemaRef,
    by_key: KeyedState<KeyRows>,
    /// `(expiry, arrival number, key id)`: interval joins drop rows once the watermark reaches
    /// their expiry.
    expiry: BTreeSet<(i64, u64, u32)>,
    /// False once the other input ended (regular join): nothing can match later rows.
    keep: bool,
    /// The arrival number of the next kept row.
    next_seq: u64,
    /// Rows kept.
    kept: usize,
    /// Keys read back from RocksDB and used in this batch ([`Side::compact_reloaded`]).
    reloaded: Vec<u32>,
}

impl Side {
    fn new(schema: SchemaRef, backend: &StateBackend, name: &str) -> Side {
        let rows = RowCodec::new(Arc::clone(&schema));
        Side {
            by_key: KeyedState::new(backend, name, || key_rows_codec(rows)),
            schema,
            expiry: BTreeSet::new(),
            keep: true,
            next_seq: 0,
            kept: 0,
            reloaded: Vec::new(),
        }
    }

    /// The rows of key `id` (read back first if spilled), to be changed.
    fn rows_mut(&mut self, id: u32) -> Option<&mut KeyRows> {
        self.rows_as(id, true)
    }

    /// The rows of key `id` (read back first if spilled), to be probed: not marked changed, so
    /// the RocksDB backend does not write them again.
    fn rows_probed(&mut self, id: u32) -> Option<&KeyRows> {
        self.rows_as(id, false).map(|rows| &*rows)
    }

    fn rows_as(&mut self, id: u32, change: bool) -> Option<&mut KeyRows> {
        let Side {
            by_key, reloaded, ..
        } = self;
        let rows = if change {
            by_key.get_mut(id)?
        } else {
            by_key.get_mut_unchanged(id)?
        };
        if rows.reloaded {
            rows.reloaded = false;
            reloaded.push(id);
        }
        Some(rows)
    }

    /// Copies the rows of keys read back in this batch into one batch shared by them: read back,
    /// each key's rows are a batch of their own, whose per-column structures cost kilobytes a
    /// key where a shared batch costs bytes a row.
    fn compact_reloaded(&mut self) -> Result<(), StateError> {
        if self.reloaded.is_empty() {
            return Ok(());
        }
        let mut ids = std::mem::take(&mut self.reloaded);
        ids.sort_unstable();
        ids.dedup();
        // Resident: used in this batch, and keys are only spilled between batches.
        let refs: Vec<&Kept> = ids
            .iter()
            .filter_map(|&id| self.by_key.get(id))
            .flat_map(|k| k.rows.iter())
            .collect();
        let batch = Arc::new(gather(&refs, &self.schema)?);
        let mut next = 0u32;
        for &id in &ids {
            // The same rows in a shared batch: the key's encoding is unchanged.
            if let Some(k) = self.by_key.get_mut_unchanged(id) {
                for row in &mut k.rows {
                    row.batch = Arc::clone(&batch);
                    row.row = next;
                    next += 1;
                }
            }
        }
        Ok(())
    }

    /// Keeps `kept` (its `seq` is assigned here) under `key`; returns the key's id and the row's
    /// arrival number.
    fn keep_row(&mut self, key: &[u8], mut kept: Kept) -> (u32, u64) {
        let seq = self.next_seq;
        self.next_seq += 1;
        kept.seq = seq;
        let id = self.by_key.id_or_insert_with(key, KeyRows::default);
        if let Some(rows) = self.rows_mut(id) {
            rows.rows.push(kept);
            self.kept += 1;
        }
        (id, seq)
    }

    /// Forgets the row at `pos` of key `id`, dropping the key with its last row.
    fn drop_row(&mut self, id: u32, pos: usize) -> Option<Kept> {
        let rows = self.rows_mut(id)?;
        if pos >= rows.rows.len() {
            return None;
        }
        let kept = rows.rows.remove(pos);
        if rows.rows.is_empty() {
            self.by_key.remove(id);
        }
        self.kept = self.kept.saturating_sub(1);
        Some(kept)
    }

    fn clear(&mut self) {
        self.by_key.clear();
        self.expiry.clear();
        self.kept = 0;
        self.reloaded.clear();
    }

    /// Between batches: keys read back share a batch again, then at most the backend's resident
    /// budget of keys stays in memory (see `KeyedState::settle`).
    fn settle(&mut self) -> Result<(), StateError> {
        self.compact_reloaded()?;
        self.by_key.settle()
    }
}

impl Side {
    /// Writes this input's kept rows for a checkpoint: whether they are in RocksDB, the rows
    /// gathered into one batch in key id order (none with RocksDB: they are in its checkpoint),
    /// each key with its rows' times, flags and arrival numbers (with RocksDB the keys only), the
    /// expiry queue, the next arrival number and the number of rows kept. Key ids stay as they
    /// are: the expiry queue names keys by id.
    fn snapshot(&mut self, w: &mut StateWriter) -> Result<(), StateError> {
        let spilled = self.by_key.write_storage(w)?;
        if spilled {
            RowCodec::new(Arc::clone(&self.schema)).write_names(w);
        }
        w.bool(self.keep);
        let rows: Vec<&Kept> = self
            .by_key
            .values()
            .filter(|_| !spilled)
            .flat_map(|(_, k)| k.rows.iter())
            .collect();
        let batch = gather(&rows, &self.schema)?;
        w.rows(&[batch])?;
        self.by_key.snapshot(w, |k, w| {
            k.write_meta(w);
            Ok(())
        })?;
        w.count(self.expiry.len());
        for &(at, seq, id) in &self.expiry {
            w.i64(at);
            w.u64(seq);
            w.u32(id);
        }
        w.u64(self.next_seq);
        w.u64(self.kept as u64);
        Ok(())
    }

    /// Reads what [`Side::snapshot`] wrote into this (empty) side. Every expiry must name a live
    /// key and an arrival number below the next one; in memory, every arrival number must be
    /// unique and every stored row belong to a key.
    fn restore(
        &mut self,
        r: &mut StateReader<'_>,
        backend: &StateBackend,
        name: &str,
    ) -> Result<(), StateError> {
        let bad = |m: &str| Err(StateError(m.into()));
        let spilled = r.bool()?;
        let mut rows_codec = RowCodec::new(Arc::clone(&self.schema));
        if spilled {
            rows_codec = rows_codec.read_names(r)?;
        }
        let keep = r.bool()?;
        let stored = r.rows(&self.schema)?;
        let batch = Arc::new(
            stored
                .batch()
                .cloned()
                .unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(&self.schema))),
        );
        let codec = || key_rows_codec(rows_codec);
        let mut next = 0;
        let by_key = KeyedState::restore_checkpointed(r, spilled, backend, name, codec, |r| {
            KeyRows::read_meta(r, &batch, &mut next)
        })?;
        if next != stored.len() {
            return bad("kept rows and their keys disagree");
        }
        let mut expiry = BTreeSet::new();
        for _ in 0..r.count()? {
            let (at, seq, id) = (r.i64()?, r.u64()?, r.u32()?);
            if !by_key.contains_id(id) || !expiry.insert((at, seq, id)) {
                return bad("an expiry names no key, or twice");
            }
        }
        let next_seq = r.u64()?;
        let kept =
            usize::try_from(r.u64()?).map_err(|_| StateError("too many kept rows".into()))?;
        let mut seqs = std::collections::HashSet::new();
        for (_, k) in by_key.values() {
            for row in &k.rows {
                if row.seq >= next_seq || !seqs.insert(row.seq) {
                    return bad("a kept row's arrival number is repeated or ahead");
                }
            }
        }
        if expiry.iter().any(|&(_, seq, _)| seq >= next_seq) || (!spilled && seqs.len() != kept) {
            return bad("the kept rows and their count disagree");
        }
        self.by_key = by_key;
        self.expiry = expiry;
        self.keep = keep;
        self.next_seq = next_seq;
        self.kept = kept;
        Ok(())
    }

    /// Reads a side of join state layout 1 (before rows were kept per key) into this (empty)
    /// side: whether it keeps rows, the row slots (free, or the row's time and whether it
    /// matched), the live rows in slot order, the free slots, each key's row slots in arrival
    /// order and the expiry queue by row slot. A row's slot becomes its arrival number, so rows
    /// expiring at the same time keep the order layout 1 gave them. Every slot must be free or
    /// belong to exactly one key, and every expiry name a live row.
    fn restore_layout_1(
        &mut self,
        r: &mut StateReader<'_>,
        backend: &StateBackend,
        name: &str,
    ) -> Result<(), StateError> {
        let bad = |m: &str| Err(StateError(m.into()));
        let keep = r.bool()?;
        let slots = r.count()?;
        // Per slot: the row's time, whether it matched and its position among the live rows.
        let mut meta: Vec<Option<(i64, bool, u32)>> = Vec::with_capacity(slots.min(1 << 16));
        let mut live: u32 = 0;
        for _ in 0..slots {
            meta.push(if r.bool()? {
                let m = (r.i64()?, r.bool()?, live);
                live += 1;
                Some(m)
            } else {
                None
            });
        }
        let stored = r.rows(&self.schema)?;
        if stored.len() != live as usize {
            return bad("kept rows and their row slots disagree");
        }
        let batch = Arc::new(
            stored
                .batch()
                .cloned()
                .unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(&self.schema))),
        );
        let mut taken = vec![false; slots];
        let free = r.count()?;
        for _ in 0..free {
            let id = r.u32()? as usize;
            match (meta.get(id), taken.get_mut(id)) {
                (Some(None), Some(t)) if !*t => *t = true,
                _ => return bad("a free row slot is in use or free twice"),
            }
        }
        if free + live as usize != slots {
            return bad("an empty row slot is not free");
        }
        let by_key = KeyedState::restore(r, |r| {
            let n = r.count()?;
            if n == 0 {
                return Err(StateError("a key without rows".into()));
            }
            let mut rows = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                let id = r.u32()?;
                let (ts, matched, row) = match (meta.get(id as usize), taken.get_mut(id as usize)) {
                    (Some(Some(m)), Some(t)) if !*t => {
                        *t = true;
                        *m
                    }
                    _ => return Err(StateError("a key's row is free or another key's".into())),
                };
                rows.push(Kept {
                    batch: Arc::clone(&batch),
                    row,
                    ts,
                    matched,
                    seq: u64::from(id),
                });
            }
            Ok(KeyRows {
                rows,
                reloaded: false,
            })
        })?;
        if taken.contains(&false) {
            return bad("a kept row belongs to no key");
        }
        let mut key_of = vec![u32::MAX; slots];
        for (key, k) in by_key.values() {
            for row in &k.rows {
                key_of[row.seq as usize] = key;
            }
        }
        let mut expiry = BTreeSet::new();
        for _ in 0..r.count()? {
            let (at, id) = (r.i64()?, r.u32()?);
            match key_of.get(id as usize) {
                Some(&key) if key != u32::MAX && expiry.insert((at, u64::from(id), key)) => {}
                _ => return bad("an expiry names a free row, or twice"),
            }
        }
        let rows_codec = RowCodec::new(Arc::clone(&self.schema));
        self.by_key = by_key.into_backend(backend, name, || key_rows_codec(rows_codec))?;
        self.expiry = expiry;
        self.keep = keep;
        self.next_seq = slots as u64;
        self.kept = live as usize;
        Ok(())
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

/// Whether a left row at `lt` and a right row at `rt` are within `bounds` (always, without).
fn within(bounds: Option<Bounds>, lt: i64, rt: i64) -> bool {
    match bounds {
        Some(b) => {
            let d = lt.saturating_sub(rt);
            b.lower <= d && d <= b.upper
        }
        None => true,
    }
}

/// The name of a join input's table in the state backend.
fn side_name(node: &str, side: usize) -> String {
    format!("{node}#{}", if side == LEFT { "left" } else { "right" })
}

/// A row reference for output: `(batch, row)`, or none for NULL padding.
type Ref = Option<(Arc<RecordBatch>, u32)>;

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
    /// Where kept rows live (kept for restores).
    backend: StateBackend,
    watermark: i64,
    /// `max(upper, −lower, 0)`: how far the output watermark trails the input's.
    delay: i64,
    late: LateRows,
}

impl Join {
    /// A join of `left` and `right` producing `schema` (left columns, then right columns),
    /// keeping rows in `backend`.
    pub fn new(
        name: &str,
        spec: &JoinSpec,
        left: SchemaRef,
        right: SchemaRef,
        schema: SchemaRef,
        backend: &StateBackend,
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
            sides: [
                Side::new(Arc::clone(&left), backend, &side_name(name, LEFT)),
                Side::new(Arc::clone(&right), backend, &side_name(name, RIGHT)),
            ],
            backend: backend.clone(),
            input_schemas: [left, right],
            keys: [spec.left_keys.clone(), spec.right_keys.clone()],
            encoders: [
                KeyEncoder::new((0..key_count).collect()),
                KeyEncoder::new((0..key_count).collect()),
            ],
            bounds,
            residual: spec.residual.clone().map(Condition::new),
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
        [LEFT, RIGHT].map(|s| self.sides[s].kept)
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

    /// Output rows for `(left, right)` references (`None` = NULL padding).
    fn build(&self, pairs: &[(Ref, Ref)]) -> Result<RecordBatch, RuntimeError> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for side in [LEFT, RIGHT] {
            // Sources: the referenced batches (by address), then one NULL row.
            let mut sources: Vec<&RecordBatch> = Vec::new();
            let mut index: HashMap<*const RecordBatch, usize> = HashMap::new();
            let refs = pairs.iter().map(|p| if side == LEFT { &p.0 } else { &p.1 });
            let mut indices: Vec<(usize, usize)> = refs
                .map(|r| match r {
                    Some((b, row)) => {
                        let at = *index.entry(Arc::as_ptr(b)).or_insert_with(|| {
                            sources.push(b.as_ref());
                            sources.len() - 1
                        });
                        (at, *row as usize)
                    }
                    None => (usize::MAX, 0),
                })
                .collect();
            let null_source = sources.len();
            for i in &mut indices {
                if i.0 == usize::MAX {
                    i.0 = null_source;
                }
            }
            for c in 0..self.widths[side] {
                let field = self.input_schemas[side].field(c);
                let mut arrays: Vec<ArrayRef> = Vec::with_capacity(sources.len() + 1);
                for b in &sources {
                    let column = b.columns().get(c).ok_or_else(|| {
                        RuntimeError::Plan(format!(
                            "join node `{}`: a kept row has too few columns",
                            self.name
                        ))
                    })?;
                    arrays.push(Arc::clone(column));
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
            while let Some(&(at, seq, id)) = self.sides[side].expiry.first() {
                if at > w {
                    break;
                }
                self.sides[side].expiry.pop_first();
                let Some(pos) = self.sides[side]
                    .rows_mut(id)
                    .and_then(|rows| rows.rows.iter().position(|k| k.seq == seq))
                else {
                    continue;
                };
                let Some(kept) = self.sides[side].drop_row(id, pos) else {
                    continue;
                };
                if !kept.matched && self.preserves(side) {
                    let r = Some((kept.batch, kept.row));
                    padded.push(if side == LEFT { (r, None) } else { (None, r) });
                }
            }
        }
        if !padded.is_empty() {
            out.push(Event::Batch(self.build(&padded)?));
        }
        Ok(())
    }

    /// Keeps each input's resident budget of keys in memory (see `KeyedState::settle`).
    fn settle(&mut self) -> Result<(), RuntimeError> {
        for side in &mut self.sides {
            side.settle()
                .map_err(|e| RuntimeError::backend(&self.name, e))?;
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
            let Some(id) = self.sides[side].by_key.find(keys.key(i)) else {
                continue;
            };
            let Some(kept) = self.sides[side].rows_mut(id) else {
                continue;
            };
            let mut found = None;
            for (pos, k) in kept.rows.iter().enumerate() {
                if same_row(rows, i, &k.batch, k.row as usize)
                    .map_err(|e| RuntimeError::arrow(&self.name, e))?
                {
                    found = Some(pos);
                    break;
                }
            }
            if let Some(pos) = found {
                self.sides[side].drop_row(id, pos);
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
        let batch = Arc::new(batch);
        // Probe the other input.
        let mut pairs: Vec<(Ref, Ref)> = Vec::new();
        let mut probe_rows: Vec<u32> = Vec::new();
        // Per pair, the partner's key id and position among its key's rows.
        let mut partners: Vec<(u32, u32)> = Vec::new();
        let bounds = self.bounds;
        for i in 0..n {
            if !on_time[i] || !valid[i] {
                continue;
            }
            let ts = times.as_ref().map_or(0, |t| t.value(i));
            let Some(id) = self.sides[other].by_key.find(keys.key(i)) else {
                continue;
            };
            let Some(kept) = self.sides[other].rows_probed(id) else {
                continue;
            };
            for (pos, k) in kept.rows.iter().enumerate() {
                let (lt, rt) = if side == LEFT { (ts, k.ts) } else { (k.ts, ts) };
                if !within(bounds, lt, rt) {
                    continue;
                }
                let mine = Some((Arc::clone(&batch), i as u32));
                let theirs = Some((Arc::clone(&k.batch), k.row));
                pairs.push(if side == LEFT {
                    (mine, theirs)
                } else {
                    (theirs, mine)
                });
                probe_rows.push(i as u32);
                partners.push((id, pos as u32));
            }
        }
        let mut matched = vec![false; n];
        if !pairs.is_empty() {
            let joined = self.build(&pairs)?;
            let (joined, mask) = self.apply_residual(joined)?;
            for (j, (&i, &(id, pos))) in probe_rows.iter().zip(&partners).enumerate() {
                if mask.as_ref().is_none_or(|m| m.value(j)) {
                    matched[i as usize] = true;
                    // Marked changed only when it first matches.
                    let side = &mut self.sides[other];
                    let first = side
                        .rows_probed(id)
                        .and_then(|rows| rows.rows.get(pos as usize))
                        .is_some_and(|k| !k.matched);
                    if first
                        && let Some(k) = side
                            .rows_mut(id)
                            .and_then(|rows| rows.rows.get_mut(pos as usize))
                    {
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
                let (id, seq) = self.sides[side].keep_row(
                    keys.key(i),
                    Kept {
                        batch: Arc::clone(&batch),
                        row: i as u32,
                        ts,
                        matched: matched[i],
                        seq: 0,
                    },
                );
                if self.bounds.is_some() {
                    self.sides[side].expiry.insert((expiry, seq, id));
                }
            } else if !matched[i] && self.preserves(side) {
                let r = Some((Arc::clone(&batch), i as u32));
                padded.push(if side == LEFT { (r, None) } else { (None, r) });
            }
        }
        if !padded.is_empty() {
            out.push(Event::Batch(self.build(&padded)?));
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
        self.process(input, batch, true, out)?;
        self.settle()
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
        self.settle()
    }

    fn on_watermark(&mut self, w: i64, out: &mut Vec<Event>) -> Result<(), RuntimeError> {
        if w > self.watermark {
            self.watermark = w;
            if self.bounds.is_some() {
                self.expire(w, out)?;
            }
            self.settle()?;
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
        for side in &mut self.sides {
            side.snapshot(w).map_err(err)?;
        }
        Ok(true)
    }

    fn restore(&mut self, r: &mut StateReader<'_>) -> Result<(), RuntimeError> {
        let err = |e| RuntimeError::state(&self.name, e);
        let layout = r.u32().map_err(err)?;
        if !(1..=JOIN_STATE_LAYOUT).contains(&layout) {
            return Err(err(StateError(format!(
                "join state has layout {layout}, this fsql reads layouts 1 to {JOIN_STATE_LAYOUT}"
            ))));
        }
        let watermark = r.i64().map_err(err)?;
        let mut sides = [LEFT, RIGHT].map(|s| {
            Side::new(
                Arc::clone(&self.input_schemas[s]),
                &self.backend,
                &side_name(&self.name, s),
            )
        });
        for (s, side) in sides.iter_mut().enumerate() {
            let name = side_name(&self.name, s);
            if layout == 1 {
                side.restore_layout_1(r, &self.backend, &name)
            } else {
                side.restore(r, &self.backend, &name)
            }
            .map_err(err)?;
        }
        self.watermark = watermark;
        self.sides = sides;
        Ok(())
    }
}

/// The layout of a join's checkpoint state (bumped when it changes): 2 keeps rows per key (1,
/// rows in slots with a key index, is still read: [`Side::restore_layout_1`]).
const JOIN_STATE_LAYOUT: u32 = 2;

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
        join_in(kind, interval, &StateBackend::memory())
    }

    /// The join keeping its rows in `backend`.
    fn join_in(kind: JoinKind, interval: Option<IntervalBounds>, backend: &StateBackend) -> Join {
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
        Join::new("j", &spec, schema("l"), schema("r"), out, backend).unwrap()
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
        let rocksdb = crate::testkit::rocksdb_backend(1);
        let spilled = check_restore(
            &|| Box::new(join_in(JoinKind::Inner, None, &rocksdb)),
            &steps,
        );
        assert_eq!(spilled, out, "spilled to RocksDB");
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
    fn left(rows: &[(i64, i64)]) -> crate::testkit::Step {
        crate::testkit::Step::Batch(LEFT, batch("l", rows))
    }

    fn right(rows: &[(i64, i64)]) -> crate::testkit::Step {
        crate::testkit::Step::Batch(RIGHT, batch("r", rows))
    }

    /// An interval join's inputs: out-of-order rows on both, several keys, late rows and rows
    /// expiring together.
    fn interval_steps() -> Vec<crate::testkit::Step> {
        use crate::testkit::Step;
        vec![
            left(&[(1, 100), (2, 100), (3, 103)]),
            right(&[(1, 110), (1, 96), (3, 90)]),
            left(&[(1, 98), (2, 120), (1, 97)]),
            Step::Watermark(104),
            right(&[(2, 112), (1, 104), (1, 106)]),
            left(&[(3, 109), (1, 130)]),
            Step::Watermark(115),
            right(&[(1, 128), (3, 113), (2, 125)]),
            Step::Watermark(125),
            // Unmatched rows expiring together are padded in arrival order.
            left(&[(5, 140), (6, 140), (7, 140), (2, 131)]),
            Step::Watermark(i64::MAX),
        ]
    }

    /// A regular join's inputs: stream rows before and after the reference (right) input ends.
    fn regular_steps() -> Vec<crate::testkit::Step> {
        use crate::testkit::Step;
        vec![
            // Stream rows before the reference is loaded wait for it.
            left(&[(1, 10), (2, 11)]),
            right(&[(1, 0), (2, 0), (3, 0)]),
            right(&[(1, 1)]),
            Step::End(RIGHT),
            left(&[(2, 20), (3, 30), (1, 40), (4, 41)]),
            Step::Watermark(50),
            left(&[(1, 60), (3, 61)]),
            Step::Watermark(i64::MAX),
        ]
    }

    #[test]
    fn a_restored_join_continues_exactly_where_the_checkpointed_one_was() {
        use crate::testkit::{check_restore, drive};
        let steps = interval_steps();
        let ts = DataType::Timestamp { precision: 3 };
        for kind in [
            JoinKind::Inner,
            JoinKind::Left,
            JoinKind::Right,
            JoinKind::Full,
        ] {
            for residual in [false, true] {
                let make_in = |backend: &StateBackend| {
                    let mut j = join_in(kind, Some(interval()), backend);
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
                let make = || make_in(&StateBackend::memory());
                let whole = check_restore(&|| Box::new(make()), &steps);
                let rows = whole.iter().filter(|l| !l.starts_with("watermark")).count();
                assert!(rows >= 4, "{kind:?}: {whole:?}");
                // With one key resident per input, the others' rows spill between steps, are
                // read back when probed or expired, and are checkpointed from RocksDB.
                let rocksdb = crate::testkit::rocksdb_backend(1);
                let spilled = check_restore(&|| Box::new(make_in(&rocksdb)), &steps);
                assert_eq!(spilled, whole, "{kind:?}: spilled to RocksDB");
                let mut j = make();
                drive(&mut j, &steps, &mut Vec::new()).unwrap();
                assert_eq!(j.late_rows(), 2, "{kind:?}");
            }
        }
        let steps = regular_steps();
        let whole = check_restore(&|| Box::new(join(JoinKind::Inner, None)), &steps);
        let rows = whole.iter().filter(|l| !l.starts_with("watermark")).count();
        assert_eq!(rows, 10, "{whole:?}");
        let rocksdb = crate::testkit::rocksdb_backend(1);
        let spilled = check_restore(
            &|| Box::new(join_in(JoinKind::Inner, None, &rocksdb)),
            &steps,
        );
        assert_eq!(spilled, whole, "spilled to RocksDB");
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

    /// What join state layout 1 held for `j` (kept in memory): row slots numbered by arrival,
    /// the live rows in slot order, the free slots, each key's slots and the expiry queue by slot.
    /// Written as layout 1's `Side::snapshot` did (before 3f5c249).
    fn layout_1(j: &Join) -> Vec<u8> {
        let mut w = StateWriter::default();
        w.u32(1);
        w.i64(j.watermark);
        for side in &j.sides {
            w.bool(side.keep);
            let mut slots: Vec<Option<&Kept>> = vec![None; side.next_seq as usize];
            for (_, k) in side.by_key.values() {
                for row in &k.rows {
                    slots[row.seq as usize] = Some(row);
                }
            }
            w.count(slots.len());
            for slot in &slots {
                w.bool(slot.is_some());
                if let Some(k) = slot {
                    w.i64(k.ts);
                    w.bool(k.matched);
                }
            }
            let live: Vec<&Kept> = slots.iter().flatten().copied().collect();
            let rows = if live.is_empty() {
                Vec::new()
            } else {
                vec![gather(&live, &side.schema).unwrap()]
            };
            w.rows(&rows).unwrap();
            let free: Vec<u32> = (0..slots.len() as u32)
                .filter(|&id| slots[id as usize].is_none())
                .collect();
            w.count(free.len());
            for id in free {
                w.u32(id);
            }
            side.by_key
                .snapshot(&mut w, |k, w| {
                    w.count(k.rows.len());
                    for row in &k.rows {
                        w.u32(row.seq as u32);
                    }
                    Ok(())
                })
                .unwrap();
            w.count(side.expiry.len());
            for &(at, seq, _) in &side.expiry {
                w.i64(at);
                w.u32(seq as u32);
            }
        }
        w.into_bytes()
    }

    /// A checkpoint of join state layout 1, taken after any step, restores (in memory and
    /// spilled to RocksDB) to exactly the state the join had, and the run goes on as if
    /// uninterrupted; a cut one is refused.
    #[test]
    fn a_layout_1_checkpoint_restores_the_same_join() {
        use crate::testkit::drive;
        let memory = StateBackend::memory();
        let rocksdb = crate::testkit::rocksdb_backend(1);
        let cases: Vec<(JoinKind, Option<IntervalBounds>, Vec<crate::testkit::Step>)> = vec![
            (JoinKind::Left, Some(interval()), interval_steps()),
            (JoinKind::Full, Some(interval()), interval_steps()),
            (JoinKind::Inner, None, regular_steps()),
        ];
        for (kind, bounds, steps) in cases {
            let mut whole = Vec::new();
            drive(&mut join(kind, bounds), &steps, &mut whole).unwrap();
            for cut in 0..=steps.len() {
                let mut before = Vec::new();
                let mut first = join(kind, bounds);
                drive(&mut first, &steps[..cut], &mut before).unwrap();
                let old = layout_1(&first);
                let mut now = StateWriter::default();
                first.snapshot(&mut now).unwrap();
                let now = now.into_bytes();
                for (backend, in_memory) in [(&memory, true), (&rocksdb, false)] {
                    let mut second = join_in(kind, bounds, backend);
                    let mut r = StateReader::new(&old);
                    second.restore(&mut r).unwrap();
                    r.finish().unwrap();
                    if in_memory {
                        let mut again = StateWriter::default();
                        second.snapshot(&mut again).unwrap();
                        assert!(
                            again.into_bytes() == now,
                            "{kind:?}: layout 1 restored to another state at step {cut}"
                        );
                    }
                    let mut out = before.clone();
                    drive(&mut second, &steps[cut..], &mut out).unwrap();
                    assert_eq!(out, whole, "{kind:?}: layout 1 restored at step {cut}");
                }
                for len in [0, old.len() / 3, old.len() - 1] {
                    let mut r = StateReader::new(&old[..len]);
                    let restored = join(kind, bounds).restore(&mut r);
                    assert!(
                        restored.is_err() || r.finish().is_err(),
                        "{kind:?}: layout 1 cut to {len} bytes was accepted"
                    );
                }
            }
        }
        // A layout this fsql does not know is refused by name.
        let mut w = StateWriter::default();
        w.u32(3);
        let e = join(JoinKind::Inner, None)
            .restore(&mut StateReader::new(&w.into_bytes()))
            .unwrap_err();
        assert!(e.to_string().contains("layout 3"), "{e}");
    }
}
