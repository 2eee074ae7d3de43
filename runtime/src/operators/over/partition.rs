//! Per-key state: the rows the frames still need (event time, arrival sequence when needed, and
//! stored argument values, in event-time order) and, per aggregate, its accumulator and the span
//! of rows it holds.
//!
//! Rows are addressed by position from the oldest retained row; evicting `k` rows from the front
//! moves every span down by `k`. An aggregate's accumulator holds the rows `[start, end)`: rows
//! enter at `end` and leave at `start` (bounded frames only). A bounded `COUNT(*)` keeps no
//! accumulator: it is `end - start`.

use std::sync::Arc;

use super::layout::{AggPlan, Frame, Func, Layout};
use crate::operators::agg::accumulator::{AccSpec, Accumulator, RowKey};
use crate::operators::agg::value::{Value, ValueColumn, Word};
use crate::state::codec::{StateError, StateReader, StateWriter};
use crate::state::{KeyedState, SharedEncode, StateBackend, StateSnapshot, ValueCodec, prefetch};

static NULL: Value = Value::Null;
/// The argument of `COUNT(*)`: any non-NULL value.
static ONE: Value = Value::Int(1);

/// A row to process: where its values are and where its result goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RowRef {
    pub ts: i64,
    pub seq: u64,
    pub pid: u32,
    /// The batch holding the row ([`Batches`]).
    pub slot: u32,
    pub row: u32,
    /// The row's position in the output.
    pub out: u32,
}

/// The evaluated argument columns of one input batch.
#[derive(Clone, Debug, Default)]
pub(crate) struct BatchColumns {
    pub stored: Vec<ValueColumn>,
    pub defaults: Vec<ValueColumn>,
}

impl BatchColumns {
    fn default_value(&self, d: Option<usize>, row: u32) -> Value {
        d.and_then(|d| self.defaults.get(d))
            .map_or(Value::Null, |c| c.get(row as usize))
    }
}

/// Where rows' argument columns live (the pending batches, or the batch being processed).
pub(crate) trait Batches {
    fn columns(&self, slot: u32) -> &BatchColumns;
}

/// One batch, at slot 0.
pub(crate) struct OneBatch<'a>(pub &'a BatchColumns);

impl Batches for OneBatch<'_> {
    fn columns(&self, _slot: u32) -> &BatchColumns {
        self.0
    }
}

/// Retained rows in (event time, arrival) order, addressed by position: 0 is the oldest row
/// retained. Stored contiguously from `head`; evicting rows from the front only moves `head`, and
/// the rows move down (or the buffer grows by half) when a row is added at the end of a full
/// buffer.
#[derive(Debug, Default)]
struct RowBuffer {
    /// First the partition's [`Shape::spans`] spans, a word each (so a partition needs no
    /// allocation of its own for them); then per row, [`Shape::stride`] words: its event time,
    /// its arrival sequence when kept ([`Layout::row_words`]), then, when some stored columns
    /// are words ([`Layout::word_columns`]), their tags (two bits each) and one word each.
    words: Box<[i64]>,
    /// Per row, the [`Shape::values`] stored columns that are not words.
    values: Box<[Value]>,
    head: u32,
    len: u32,
}

/// The strides of a [`RowBuffer`] and the aggregate state of a [`Partition`] (from the
/// [`Layout`]).
#[derive(Clone, Copy, Debug)]
struct Shape {
    /// The row key's words: event time, and arrival sequence when kept.
    key_words: usize,
    /// Words per row: the key's, then the tag word and one per word column, if any.
    stride: usize,
    /// Stored columns kept as words ([`Layout::word_columns`]).
    word_columns: u64,
    /// The stored column read off the row's event time ([`Layout::time_column`]).
    time_column: Option<usize>,
    /// Stored columns kept as values, per row.
    values: usize,
    spans: usize,
    /// Accumulators in a checkpoint...
    accs: usize,
    /// ... and those a partition always keeps ([`Layout::kept_accs`]).
    kept_accs: usize,
}

/// Where a stored column's value of a row is.
#[derive(Clone, Copy, Debug)]
enum Place {
    /// Word `k` of the row's word columns.
    Word(usize),
    /// Value `k` of the row's values.
    Value(usize),
    /// The row's event time ([`Layout::time_column`]).
    Time,
}

impl Shape {
    fn of(layout: &Layout) -> Shape {
        let words = layout.word_columns.count_ones() as usize;
        Shape {
            key_words: layout.row_words,
            stride: layout.row_words + if words > 0 { 1 + words } else { 0 },
            word_columns: layout.word_columns,
            time_column: layout.time_column,
            values: layout.stored.len() - words - usize::from(layout.time_column.is_some()),
            spans: layout.spans,
            accs: layout.accs,
            kept_accs: layout.kept_accs,
        }
    }

    /// Where stored column `c` is kept.
    #[inline]
    fn place(self, c: usize) -> Place {
        let below = if c >= 64 {
            self.word_columns
        } else {
            self.word_columns & ((1u64 << c) - 1)
        };
        let k = below.count_ones() as usize;
        match self.time_column {
            Some(t) if t == c => Place::Time,
            _ if c < 64 && self.word_columns & (1 << c) != 0 => Place::Word(k),
            Some(t) if t < c => Place::Value(c - k - 1),
            _ => Place::Value(c - k),
        }
    }

    /// Stored columns in all.
    fn columns(self) -> usize {
        self.word_columns.count_ones() as usize
            + self.values
            + usize::from(self.time_column.is_some())
    }
}

/// A stored value read from a [`RowBuffer`]: rebuilt from a word, or borrowed.
enum Read<'a> {
    Word(Value),
    Value(&'a Value),
}

impl std::ops::Deref for Read<'_> {
    type Target = Value;

    #[inline]
    fn deref(&self) -> &Value {
        match self {
            Read::Word(v) => v,
            Read::Value(v) => v,
        }
    }
}

impl Read<'_> {
    fn into_owned(self) -> Value {
        match self {
            Read::Word(v) => v,
            Read::Value(v) => v.clone(),
        }
    }
}

impl RowBuffer {
    #[inline]
    fn len(&self) -> u32 {
        self.len
    }

    fn capacity(&self, shape: Shape) -> usize {
        self.words.len().saturating_sub(shape.spans) / shape.stride
    }

    /// An empty buffer with room for `spans` spans.
    fn with_spans(spans: usize) -> RowBuffer {
        RowBuffer {
            words: vec![0; spans].into_boxed_slice(),
            ..RowBuffer::default()
        }
    }

    /// The rows' words (after the spans).
    #[inline]
    fn row_words(&self, shape: Shape) -> &[i64] {
        self.words.get(shape.spans..).unwrap_or_default()
    }

    /// Span `k`, if the buffer has it.
    #[inline]
    fn span(&self, k: usize) -> Option<Span> {
        self.words.get(k).map(|&w| Span {
            start: w as u32,
            end: ((w as u64) >> 32) as u32,
        })
    }

    #[inline]
    fn set_span(&mut self, k: usize, span: Span) {
        if let Some(w) = self.words.get_mut(k) {
            *w = (u64::from(span.start) | (u64::from(span.end) << 32)) as i64;
        }
    }

    #[inline]
    fn key(&self, shape: Shape, i: u32) -> RowKey {
        if i >= self.len {
            return (i64::MIN, 0);
        }
        let at = (self.head + i) as usize * shape.stride;
        let words = self.row_words(shape);
        let ts = words.get(at).copied().unwrap_or(i64::MIN);
        let seq = if shape.key_words > 1 {
            words.get(at + 1).map_or(0, |s| *s as u64)
        } else {
            0
        };
        (ts, seq)
    }

    #[inline]
    fn ts(&self, shape: Shape, i: u32) -> i64 {
        self.key(shape, i).0
    }

    #[inline]
    fn value(&self, shape: Shape, i: u32, col: Option<usize>) -> Read<'_> {
        let Some(c) = col else {
            return Read::Value(&ONE);
        };
        if i >= self.len {
            return Read::Value(&NULL);
        }
        let row = (self.head + i) as usize;
        match shape.place(c) {
            Place::Word(k) => {
                let at = row * shape.stride + shape.key_words;
                let words = self.row_words(shape);
                let tags = words.get(at).copied().unwrap_or(0);
                let bits = words.get(at + 1 + k).copied().unwrap_or(0);
                Read::Word(
                    Word {
                        tag: (tags >> (2 * k)) as u8,
                        bits,
                    }
                    .value(),
                )
            }
            Place::Value(k) => {
                Read::Value(self.values.get(row * shape.values + k).unwrap_or(&NULL))
            }
            Place::Time => Read::Word(Value::Int(self.ts(shape, i))),
        }
    }

    /// Makes room for one more row at the end.
    fn reserve_one(&mut self, shape: Shape) {
        let cap = self.capacity(shape);
        let (head, len) = (self.head as usize, self.len as usize);
        if head + len < cap {
            return;
        }
        if head > 0 && head >= cap / 2 {
            // At least half the buffer was evicted since the rows last moved: move them down.
            let base = shape.spans;
            self.words.copy_within(
                base + head * shape.stride..base + (head + len) * shape.stride,
                base,
            );
            self.values[..(head + len) * shape.values].rotate_left(head * shape.values);
            self.head = 0;
            return;
        }
        // Grown by half (1, 2, 3, 4, 6, 9, ...): most partitions hold a few rows, and a buffer
        // doubled to 4 for a third row would keep a quarter of its memory unused.
        let new_cap = cap + (cap / 2).max(1);
        let base = shape.spans;
        let mut words = vec![0i64; base + new_cap * shape.stride].into_boxed_slice();
        let header = base.min(self.words.len());
        words[..header].copy_from_slice(&self.words[..header]);
        if let (Some(to), Some(from)) = (
            words.get_mut(base..base + len * shape.stride),
            self.words
                .get(base + head * shape.stride..base + (head + len) * shape.stride),
        ) {
            to.copy_from_slice(from);
        }
        let mut values: Box<[Value]> = std::iter::repeat_with(|| Value::Null)
            .take(new_cap * shape.values)
            .collect();
        for (to, from) in values
            .iter_mut()
            .zip(&mut self.values[head * shape.values..(head + len) * shape.values])
        {
            *to = std::mem::take(from);
        }
        self.words = words;
        self.values = values;
        self.head = 0;
    }

    /// Writes row `key` at buffer slot `slot`, its stored columns from `column(c)`.
    fn write_with(
        &mut self,
        shape: Shape,
        slot: usize,
        key: RowKey,
        mut column: impl FnMut(usize, Place) -> Stored,
    ) {
        let base = shape.spans;
        let Some(w) = self
            .words
            .get_mut(base + slot * shape.stride..base + (slot + 1) * shape.stride)
        else {
            return;
        };
        w[0] = key.0;
        if shape.key_words > 1
            && let Some(seq) = w.get_mut(1)
        {
            *seq = key.1 as i64;
        }
        let (_, packed) = w.split_at_mut(shape.key_words);
        let mut tags = 0i64;
        for c in 0..shape.columns() {
            let place = shape.place(c);
            match (place, column(c, place)) {
                (Place::Word(k), Stored::Word(word)) => {
                    tags |= i64::from(word.tag & 3) << (2 * k);
                    if let Some(to) = packed.get_mut(1 + k) {
                        *to = word.bits;
                    }
                }
                (Place::Value(k), Stored::Value(v)) => {
                    if let Some(to) = self.values.get_mut(slot * shape.values + k) {
                        *to = v;
                    }
                }
                // The row's event time, written above.
                (Place::Time, _) => {}
                // Not reached (`write` and `decode_rows` give each place its kind); a mismatch
                // stores NULL.
                (Place::Word(_), Stored::Value(_)) => {
                    debug_assert!(false, "stored column {c} does not fit its place");
                }
                (Place::Value(k), Stored::Word(_)) => {
                    debug_assert!(false, "stored column {c} does not fit its place");
                    if let Some(to) = self.values.get_mut(slot * shape.values + k) {
                        *to = Value::Null;
                    }
                }
            }
        }
        if let Some(t) = packed.first_mut() {
            *t = tags;
        }
    }

    /// Writes row `key` (the `row` of `cols`) at buffer slot `slot`.
    fn write(&mut self, shape: Shape, slot: usize, key: RowKey, cols: &BatchColumns, row: u32) {
        self.write_with(shape, slot, key, |c, place| {
            let col = cols.stored.get(c);
            match place {
                Place::Word(_) => {
                    Stored::Word(col.and_then(|c| c.word(row as usize)).unwrap_or(Word::NULL))
                }
                Place::Value(_) => Stored::Value(col.map_or(Value::Null, |c| c.get(row as usize))),
                Place::Time => Stored::Word(Word::NULL),
            }
        });
    }

    fn push(&mut self, shape: Shape, key: RowKey, cols: &BatchColumns, row: u32) {
        self.reserve_one(shape);
        let slot = (self.head + self.len) as usize;
        self.write(shape, slot, key, cols, row);
        self.len += 1;
    }

    /// Inserts a row at position `at` (later rows move up by one).
    fn insert(&mut self, shape: Shape, at: u32, key: RowKey, cols: &BatchColumns, row: u32) {
        self.reserve_one(shape);
        let (head, len) = (self.head as usize, self.len as usize);
        let at = head + (at as usize).min(len);
        let base = shape.spans;
        self.words.copy_within(
            base + at * shape.stride..base + (head + len) * shape.stride,
            base + (at + 1) * shape.stride,
        );
        self.values[at * shape.values..(head + len + 1) * shape.values].rotate_right(shape.values);
        self.write(shape, at, key, cols, row);
        self.len += 1;
    }

    /// Drops the `k` oldest rows.
    fn evict_front(&mut self, shape: Shape, k: u32) {
        let k = k.min(self.len);
        let from = self.head as usize * shape.values;
        for v in self
            .values
            .iter_mut()
            .skip(from)
            .take(k as usize * shape.values)
        {
            *v = Value::Null;
        }
        self.head += k;
        self.len -= k;
        if self.len == 0 {
            self.head = 0;
        }
    }

    /// The number of rows for which `pred(event time)` holds (a prefix: rows are in event-time
    /// order).
    fn count_prefix(&self, shape: Shape, pred: impl Fn(i64) -> bool) -> u32 {
        let (mut lo, mut hi) = (0u32, self.len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.ts(shape, mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The position after every row with event time ≤ `ts`.
    fn after(&self, shape: Shape, ts: i64) -> u32 {
        self.count_prefix(shape, |t| t <= ts)
    }

    /// The position of the first row with event time ≥ `ts`.
    fn at_or_after(&self, shape: Shape, ts: i64) -> u32 {
        self.count_prefix(shape, |t| t < ts)
    }

    /// `x` of the row `offset` rows before position `i`, if retained.
    fn lag(&self, shape: Shape, i: u32, offset: u64, col: Option<usize>) -> Option<Value> {
        let j = u64::from(i).checked_sub(offset)?;
        (j < u64::from(self.len)).then(|| self.value(shape, j as u32, col).into_owned())
    }

    /// The address of the oldest row's data, for a prefetch.
    fn front(&self, shape: Shape) -> (*const i8, *const i8) {
        let w = self
            .words
            .as_ptr()
            .wrapping_add(shape.spans + self.head as usize * shape.stride);
        let v = self
            .values
            .as_ptr()
            .wrapping_add(self.head as usize * shape.values);
        (w.cast(), v.cast())
    }
}

/// A stored column's value of a row being written: a word for a word column, else a value.
enum Stored {
    Word(Word),
    Value(Value),
}

/// The rows an aggregate holds: `[start, end)`, positions in its partition's [`RowBuffer`]
/// (rows enter at `end` and leave at `start`; bounded frames only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

/// The state of one partition key: its rows and its aggregates' spans and accumulators, one
/// value of the key table, so the RocksDB backend spills and reads back all of it.
#[derive(Debug, Default)]
pub(crate) struct Partition {
    /// The newest event time processed (`i64::MIN` before the first row).
    pub max_ts: i64,
    /// Its rows, and its [`Layout::spans`] spans.
    rows: RowBuffer,
    /// [`Layout::accs`] accumulators.
    accs: Box<[Accumulator]>,
}

impl Partition {
    fn new(layout: &Layout) -> Partition {
        Partition {
            max_ts: i64::MIN,
            rows: RowBuffer::with_spans(layout.spans),
            accs: layout
                .aggs
                .iter()
                .filter_map(|a| match (a.func, a.acc) {
                    (Func::Acc(spec), Some(_)) if !a.scan => Some(spec.new_acc()),
                    _ => None,
                })
                .collect(),
        }
    }
}

/// One partition with its aggregates' state: what processing a row needs.
struct PartitionMut<'a> {
    p: &'a mut Partition,
}

/// Moves the start of span `st` past the rows that leave its frame (`leaves` holds for the span
/// while its first row must go), retracting each from `acc`.
fn shrink(
    mut acc: Option<&mut Accumulator>,
    spec: &AccSpec,
    buf: &RowBuffer,
    (shape, col): (Shape, Option<usize>),
    st: &mut Span,
    leaves: impl Fn(&Span) -> bool,
) {
    while leaves(st) {
        if let Some(acc) = acc.as_deref_mut() {
            acc.retract(
                spec,
                buf.key(shape, st.start),
                &buf.value(shape, st.start, col),
            );
        }
        st.start += 1;
    }
}

/// A scannable aggregate ([`AggPlan::scan`]) keeps its accumulator while its frame holds more
/// than this many rows (from then on until the frame is down to half of it); a smaller frame's
/// result is computed from its rows. Most keys of a fraud pipeline (a card, a device, an IP)
/// have a few payments in a day: their `COUNT(DISTINCT)`s and sliding MIN/MAX keep no value
/// counts at all.
const SCAN_ROWS: u32 = 8;

/// An aggregate's result from its frame's state, or (an unkept accumulator) its frame's rows.
#[inline]
fn result_of(
    spec: &AccSpec,
    acc: Option<&Accumulator>,
    span: Span,
    buf: &RowBuffer,
    (shape, col): (Shape, Option<usize>),
) -> Value {
    match acc {
        Some(acc) if acc.is_unkept() => spec.scan(
            (span.start..span.end)
                .map(|i| buf.value(shape, i, col))
                .filter(|v| !v.is_null()),
        ),
        Some(acc) => acc.result(spec),
        // A bounded COUNT(*): the rows in its frame.
        None => Value::Int(i64::from(span.end - span.start)),
    }
}

/// The accumulator of `spec` holding rows `span` of `buf`.
fn kept(
    spec: &AccSpec,
    buf: &RowBuffer,
    (shape, col): (Shape, Option<usize>),
    span: Span,
) -> Accumulator {
    let mut acc = spec.new_acc();
    for i in span.start..span.end {
        acc.add(spec, buf.key(shape, i), &buf.value(shape, i, col));
    }
    acc
}

/// Keeps a scannable aggregate's accumulator when its frame `span` grew past [`SCAN_ROWS`]
/// rows, and lets it go (true) when the frame shrank to half of that.
#[inline]
fn keep_or_scan(
    acc: &mut Accumulator,
    spec: &AccSpec,
    buf: &RowBuffer,
    at: (Shape, Option<usize>),
    span: Span,
) -> bool {
    let len = span.end - span.start;
    if acc.is_unkept() {
        if len > SCAN_ROWS {
            *acc = kept(spec, buf, at, span);
        }
        false
    } else if len <= SCAN_ROWS / 2 {
        *acc = Accumulator::unkept();
        true
    } else {
        false
    }
}

/// Keeps scannable accumulator `acc` at `at` of a partition's `accs`, making room for the
/// scannable ones first (`all` accumulators).
fn keep_scanned(accs: &mut Box<[Accumulator]>, at: usize, acc: Accumulator, all: usize) {
    if accs.len() <= at {
        let mut grown = std::mem::take(accs).into_vec();
        grown.resize_with(all, Accumulator::unkept);
        *accs = grown.into_boxed_slice();
    }
    if let Some(slot) = accs.get_mut(at) {
        *slot = acc;
    }
}

/// Drops a partition's scannable accumulators (those after the `kept` ones) when none of them
/// is kept any more.
fn drop_unkept(accs: &mut Box<[Accumulator]>, kept: usize) {
    if accs.len() > kept && accs.iter().skip(kept).all(Accumulator::is_unkept) {
        let mut shrunk = std::mem::take(accs).into_vec();
        shrunk.truncate(kept);
        *accs = shrunk.into_boxed_slice();
    }
}

impl PartitionMut<'_> {
    /// Processes rows with the same event time, not older than any row processed before, in
    /// arrival order: RANGE frames see all of them at once (peers get equal results; LAG is
    /// taken relative to the last peer), ROWS frames one by one. `results[a][out]` receives
    /// aggregate `a` of each row.
    fn process_peers<B: Batches>(
        &mut self,
        layout: &Layout,
        rows: &[RowRef],
        batches: &B,
        results: &mut [Vec<Value>],
        horizon: i64,
    ) {
        let Some(ts) = rows.first().map(|r| r.ts) else {
            return;
        };
        let shape = Shape::of(layout);
        let buf = &mut self.p.rows;
        let first = buf.len();
        for r in rows {
            buf.push(shape, (r.ts, r.seq), batches.columns(r.slot), r.row);
        }
        let end = buf.len();
        for (plan, out) in layout.aggs.iter().zip(results.iter_mut()) {
            let Some(mut span) = buf.span(plan.span) else {
                continue;
            };
            let st = &mut span;
            // A scannable accumulator not kept by this partition: unkept until its frame grows.
            let mut absent = Accumulator::unkept();
            let mut acc = match (plan.acc, self.p.accs.get_mut(plan.at)) {
                (None, _) => None,
                (Some(_), Some(acc)) => Some(acc),
                (Some(_), None) => Some(&mut absent),
            };
            let mut let_go = false;
            match &plan.func {
                Func::Lag { offset, default } => {
                    for (j, r) in rows.iter().enumerate() {
                        let at = if plan.frame.peers() {
                            end - 1
                        } else {
                            first + j as u32
                        };
                        let v = buf.lag(shape, at, *offset, plan.col).unwrap_or_else(|| {
                            batches.columns(r.slot).default_value(*default, r.row)
                        });
                        set(out, r.out, v);
                    }
                    st.end = end;
                }
                Func::Acc(spec) => {
                    if plan.frame.peers() {
                        while st.end < end {
                            if let Some(acc) = acc.as_deref_mut() {
                                acc.add(
                                    spec,
                                    buf.key(shape, st.end),
                                    &buf.value(shape, st.end, plan.col),
                                );
                            }
                            st.end += 1;
                        }
                        if let Frame::Range(p) = plan.frame {
                            let lo = ts.saturating_sub(p);
                            shrink(acc.as_deref_mut(), spec, buf, (shape, plan.col), st, |st| {
                                st.start < st.end && buf.ts(shape, st.start) < lo
                            });
                        }
                        let v = result_of(spec, acc.as_deref(), *st, buf, (shape, plan.col));
                        for r in rows {
                            set(out, r.out, v.clone());
                        }
                    } else {
                        for r in rows {
                            if let Some(acc) = acc.as_deref_mut() {
                                acc.add(
                                    spec,
                                    buf.key(shape, st.end),
                                    &buf.value(shape, st.end, plan.col),
                                );
                            }
                            st.end += 1;
                            if let Frame::Rows(n) = plan.frame {
                                shrink(
                                    acc.as_deref_mut(),
                                    spec,
                                    buf,
                                    (shape, plan.col),
                                    st,
                                    |st| u64::from(st.end - st.start) > n.saturating_add(1),
                                );
                            }
                            set(
                                out,
                                r.out,
                                result_of(spec, acc.as_deref(), *st, buf, (shape, plan.col)),
                            );
                        }
                    }
                    if plan.scan
                        && let Some(acc) = acc
                    {
                        let_go = keep_or_scan(acc, spec, buf, (shape, plan.col), span);
                    }
                }
            }
            if !absent.is_unkept() {
                keep_scanned(&mut self.p.accs, plan.at, absent, layout.accs);
            } else if let_go {
                drop_unkept(&mut self.p.accs, layout.kept_accs);
            }
            store_span(buf, plan, span);
        }
        self.p.max_ts = self.p.max_ts.max(ts);
        self.evict(layout, horizon);
    }

    /// Arrival mode: a row older than the partition's newest. Its own result is computed by
    /// scanning its frame over the retained rows (RANGE: event times in `[ts - p, ts]`, earlier
    /// peers included; ROWS and LAG: the rows before it in event-time order). Rows newer than the
    /// watermark keep what their frames need (see [`PartitionMut::evict`]), so this is exact for a
    /// row that is out of order but not behind the watermark; a late row misses what was
    /// already evicted. Unbounded frames give the running aggregate, which includes the newer
    /// rows already seen. Then the row is inserted in event-time order and enters the current
    /// frames it belongs to, so later rows see it.
    fn process_out_of_order<B: Batches>(
        &mut self,
        layout: &Layout,
        r: &RowRef,
        batches: &B,
        results: &mut [Vec<Value>],
        horizon: i64,
    ) {
        let shape = Shape::of(layout);
        let cols = batches.columns(r.slot);
        let key = (r.ts, r.seq);
        let max_ts = self.p.max_ts;
        let buf = &mut self.p.rows;
        let at = buf.after(shape, r.ts);
        // The row's own results, before it is inserted.
        for (plan, out) in layout.aggs.iter().zip(results.iter_mut()) {
            let own = |col: Option<usize>| match col {
                None => ONE.clone(),
                Some(c) => cols
                    .stored
                    .get(c)
                    .map_or(Value::Null, |s| s.get(r.row as usize)),
            };
            match &plan.func {
                Func::Lag { offset, default } => {
                    let v = if *offset == 0 {
                        own(plan.col)
                    } else {
                        buf.lag(shape, at, *offset, plan.col)
                            .unwrap_or_else(|| cols.default_value(*default, r.row))
                    };
                    set(out, r.out, v);
                }
                Func::Acc(spec) if plan.frame.bounded() => {
                    let from = match plan.frame {
                        Frame::Range(p) => buf.at_or_after(shape, r.ts.saturating_sub(p)),
                        Frame::Rows(n) => at.saturating_sub(u32::try_from(n).unwrap_or(u32::MAX)),
                        _ => at,
                    };
                    let mut acc = kept(
                        spec,
                        buf,
                        (shape, plan.col),
                        Span {
                            start: from,
                            end: at,
                        },
                    );
                    acc.add(spec, key, &own(plan.col));
                    set(out, r.out, acc.result(spec));
                }
                Func::Acc(_) => {}
            }
        }
        buf.insert(shape, at, key, cols, r.row);
        for (plan, out) in layout.aggs.iter().zip(results.iter_mut()) {
            let Some(mut span) = buf.span(plan.span) else {
                continue;
            };
            let st = &mut span;
            let Func::Acc(spec) = &plan.func else {
                st.end += 1;
                store_span(buf, plan, span);
                continue;
            };
            // (A scannable accumulator this partition does not keep takes nothing.)
            let mut acc = plan.acc.and_then(|_| self.p.accs.get_mut(plan.at));
            let v = buf.value(shape, at, plan.col);
            match plan.frame {
                Frame::Range(p) => {
                    if r.ts >= max_ts.saturating_sub(p) {
                        if let Some(acc) = acc.as_deref_mut() {
                            acc.add(spec, key, &v);
                        }
                    } else {
                        st.start += 1;
                    }
                    st.end += 1;
                }
                Frame::Rows(n) => {
                    if at >= st.start {
                        if let Some(acc) = acc.as_deref_mut() {
                            acc.add(spec, key, &v);
                        }
                        st.end += 1;
                        shrink(acc.as_deref_mut(), spec, buf, (shape, plan.col), st, |st| {
                            u64::from(st.end - st.start) > n.saturating_add(1)
                        });
                    } else {
                        st.start += 1;
                        st.end += 1;
                    }
                }
                Frame::UnboundedRange | Frame::UnboundedRows => {
                    if let Some(acc) = acc.as_deref_mut() {
                        acc.add(spec, key, &v);
                    }
                    st.end += 1;
                    set(
                        out,
                        r.out,
                        result_of(spec, acc.as_deref(), *st, buf, (shape, plan.col)),
                    );
                }
            }
            store_span(buf, plan, span);
        }
        self.evict(layout, horizon);
    }

    /// Drops the rows no frame needs any more, oldest first: a row stays while an accumulator
    /// holds it, while LAG may still read it, or while a later row with an event time ≥
    /// `horizon` could have it in its frame (arrival mode passes the watermark + 1, so rows that
    /// arrive out of order but not late see their whole frame; watermark mode passes `i64::MAX`).
    fn evict(&mut self, layout: &Layout, horizon: i64) {
        let shape = Shape::of(layout);
        let buf = &self.p.rows;
        let ts_at = |k: u64| {
            u32::try_from(k)
                .ok()
                .filter(|k| *k < buf.len())
                .map_or(i64::MAX, |k| buf.ts(shape, k))
        };
        let mut k = 0u32;
        'rows: while k < buf.len() {
            let i = u64::from(k);
            let ts = ts_at(i);
            for plan in &layout.aggs {
                let Some(st) = buf.span(plan.span) else {
                    continue;
                };
                let needed = match (plan.func, plan.frame) {
                    (Func::Lag { offset, .. }, _) => {
                        i.saturating_add(offset) >= u64::from(st.end)
                            || ts_at(i.saturating_add(offset)) >= horizon
                    }
                    (Func::Acc(_), Frame::Range(p)) => {
                        k >= st.start || ts >= horizon.saturating_sub(p)
                    }
                    (Func::Acc(_), Frame::Rows(n)) => {
                        k >= st.start || ts_at(i.saturating_add(n)) >= horizon
                    }
                    (Func::Acc(_), _) => false,
                };
                if needed {
                    break 'rows;
                }
            }
            k += 1;
        }
        if k > 0 {
            let rows = &mut self.p.rows;
            rows.evict_front(shape, k);
            for s in 0..shape.spans {
                if let Some(mut st) = rows.span(s) {
                    st.start = st.start.saturating_sub(k);
                    st.end = st.end.saturating_sub(k);
                    rows.set_span(s, st);
                }
            }
        }
    }
}

/// Stores the bounds aggregate `plan` moved its span to, if it is the span's last aggregate:
/// every aggregate of a span starts from the same bounds and moves them alike.
#[inline]
fn store_span(rows: &mut RowBuffer, plan: &AggPlan, span: Span) {
    if plan.writes_span {
        rows.set_span(plan.span, span);
    }
}

#[inline]
fn set(out: &mut [Value], at: u32, v: Value) {
    if let Some(slot) = out.get_mut(at as usize) {
        *slot = v;
    }
}

/// Every partition, by key ([`KeyedState`]). With the RocksDB backend a partition (its rows,
/// spans and accumulators) can be spilled.
pub(crate) struct Partitions {
    table: KeyedState<Partition>,
    /// Partitions created since [`Partitions::take_created`] last ran.
    created: Vec<u32>,
}

/// One accumulator of a partition's checkpoint (in aggregate order): where the partition holds
/// it ([`AggPlan::at`]) and, for a scannable one, what rebuilds it from the partition's rows.
#[derive(Clone, Copy, Debug)]
struct AccAt {
    at: usize,
    scan: Option<ScanAcc>,
}

/// A scannable aggregate ([`AggPlan::scan`]): its spec, span and stored column.
#[derive(Clone, Copy, Debug)]
struct ScanAcc {
    spec: AccSpec,
    span: usize,
    col: Option<usize>,
}

/// The layout's accumulators in checkpoint order.
fn acc_order(layout: &Layout) -> Arc<[AccAt]> {
    layout
        .aggs
        .iter()
        .filter_map(|a| match (a.func, a.acc) {
            (Func::Acc(spec), Some(_)) => Some(AccAt {
                at: a.at,
                scan: a.scan.then_some(ScanAcc {
                    spec,
                    span: a.span,
                    col: a.col,
                }),
            }),
            _ => None,
        })
        .collect()
}

/// Writes a partition: its rows, then its spans and accumulators (its checkpoint encoding, also
/// what the RocksDB backend stores). A scannable accumulator the partition does not keep is
/// written as the one its rows make, so the bytes do not depend on which ones it keeps.
fn encode_partition(
    shape: Shape,
    order: &[AccAt],
    p: &Partition,
    w: &mut StateWriter,
) -> Result<(), StateError> {
    encode_rows(shape, p, w);
    for k in 0..shape.spans {
        let span = p.rows.span(k).unwrap_or_default();
        w.u32(span.start);
        w.u32(span.end);
    }
    encode_accs(shape, order, p, w)
}

/// Writes the accumulators of partition `p` in checkpoint `order` (see [`encode_partition`]).
fn encode_accs(
    shape: Shape,
    order: &[AccAt],
    p: &Partition,
    w: &mut StateWriter,
) -> Result<(), StateError> {
    for a in order {
        match (p.accs.get(a.at), a.scan) {
            (Some(acc), _) if !acc.is_unkept() => acc.encode(w),
            (_, Some(s)) => {
                let span = p.rows.span(s.span).unwrap_or_default();
                kept(&s.spec, &p.rows, (shape, s.col), span).encode(w);
            }
            (acc, None) => {
                return Err(StateError(format!(
                    "accumulator {} of a partition is {acc:?}",
                    a.at
                )));
            }
        }
    }
    Ok(())
}

/// Puts the accumulators of a checkpoint (`accs`, in `order`) where partition `p` (its spans
/// read) keeps them. A scannable one whose frame is small is not kept (scanning its rows gives
/// the same), and when none is, the partition holds the kept ones alone.
fn place_accs(
    p: &mut Partition,
    accs: impl IntoIterator<Item = Accumulator>,
    order: &[AccAt],
    kept_accs: usize,
) {
    let mut placed: Vec<Accumulator> = order.iter().map(|_| Accumulator::unkept()).collect();
    for (acc, a) in accs.into_iter().zip(order) {
        let small = a.scan.is_some_and(|s| {
            p.rows
                .span(s.span)
                .is_some_and(|span| span.end - span.start <= SCAN_ROWS)
        });
        if let Some(slot) = placed.get_mut(a.at)
            && !small
        {
            *slot = acc;
        }
    }
    p.accs = placed.into_boxed_slice();
    drop_unkept(&mut p.accs, kept_accs);
}

/// Writes a partition's newest event time and rows: every row's key words, then every row's
/// stored values in column order (word columns written as the values they hold, so the bytes do
/// not depend on how rows are packed in memory).
fn encode_rows(shape: Shape, p: &Partition, w: &mut StateWriter) {
    w.i64(p.max_ts);
    let rows = &p.rows;
    w.u32(rows.len);
    for i in 0..rows.len {
        let (ts, seq) = rows.key(shape, i);
        w.i64(ts);
        if shape.key_words > 1 {
            w.i64(seq as i64);
        }
    }
    for i in 0..rows.len {
        for c in 0..shape.columns() {
            rows.value(shape, i, Some(c)).encode(w);
        }
    }
}

/// Reads what [`encode_partition`] wrote, checking that its spans lie within its rows.
fn decode_partition(
    shape: Shape,
    order: &[AccAt],
    r: &mut StateReader<'_>,
) -> Result<Partition, StateError> {
    let mut p = decode_rows(shape, r)?;
    for k in 0..shape.spans {
        let span = Span {
            start: r.u32()?,
            end: r.u32()?,
        };
        if span.start > span.end || span.end > p.rows.len {
            return Err(StateError(format!(
                "a span [{}, {}) outside its partition's {} rows",
                span.start, span.end, p.rows.len
            )));
        }
        p.rows.set_span(k, span);
    }
    let mut accs = Vec::with_capacity(shape.accs);
    for _ in 0..shape.accs {
        accs.push(Accumulator::decode(r)?);
    }
    place_accs(&mut p, accs, order, shape.kept_accs);
    Ok(p)
}

/// Reads what [`encode_rows`] wrote: a partition without its aggregates' state (OVER state
/// layouts 1 and 2 kept that apart, flat by partition id).
fn decode_rows(shape: Shape, r: &mut StateReader<'_>) -> Result<Partition, StateError> {
    let max_ts = r.i64()?;
    let len = r.u32()?;
    let n = len as usize;
    let mut keys = Vec::with_capacity(n.min(1 << 20));
    for _ in 0..n {
        let ts = r.i64()?;
        let seq = if shape.key_words > 1 {
            r.i64()? as u64
        } else {
            0
        };
        keys.push((ts, seq));
    }
    // Each value as its column keeps it: a word column's must be one.
    let columns = shape.columns();
    let mut cells = Vec::with_capacity(n.min(1 << 20) * columns);
    for &(ts, _) in &keys {
        for c in 0..columns {
            let v = Value::decode(r)?;
            cells.push(match shape.place(c) {
                Place::Word(_) => Stored::Word(Word::of(&v).ok_or_else(|| {
                    StateError(format!(
                        "stored column {c} holds {v:?}, not a number or boolean"
                    ))
                })?),
                Place::Value(_) => Stored::Value(v),
                Place::Time => match v {
                    Value::Int(t) if t == ts => Stored::Word(Word::NULL),
                    _ => {
                        return Err(StateError(format!(
                            "stored column {c} holds {v:?}, not its row's event time {ts}"
                        )));
                    }
                },
            });
        }
    }
    let mut rows = RowBuffer {
        words: vec![0; shape.spans + n * shape.stride].into_boxed_slice(),
        values: std::iter::repeat_with(|| Value::Null)
            .take(n * shape.values)
            .collect(),
        head: 0,
        len,
    };
    let mut cells = cells.into_iter();
    for (slot, key) in keys.into_iter().enumerate() {
        rows.write_with(shape, slot, key, |_, _| {
            cells.next().unwrap_or(Stored::Word(Word::NULL))
        });
    }
    Ok(Partition {
        max_ts,
        rows,
        accs: Box::default(),
    })
}

/// A checkpoint's spans, one per aggregate and partition, as [`Layout::spans`] shared ones:
/// aggregates of one frame must hold the same rows.
fn share_spans(per_agg: &[Span], layout: &Layout) -> Result<Vec<Span>, StateError> {
    let n_aggs = layout.aggs.len().max(1);
    let mut spans = Vec::with_capacity(per_agg.len() / n_aggs * layout.spans);
    for (id, aggs) in per_agg.chunks(n_aggs).enumerate() {
        let at = spans.len();
        spans.resize(at + layout.spans, None);
        for (plan, span) in layout.aggs.iter().zip(aggs) {
            match spans.get_mut(at + plan.span) {
                Some(Some(shared)) if shared != span => {
                    return Err(StateError(format!(
                        "partition {id}: aggregates of one frame hold different rows"
                    )));
                }
                Some(slot) => *slot = Some(*span),
                None => {}
            }
        }
    }
    Ok(spans.into_iter().map(Option::unwrap_or_default).collect())
}

/// The RocksDB backend's encoding of partitions of `shape`.
fn codec(shape: Shape, order: Arc<[AccAt]>) -> ValueCodec<Partition> {
    let decode_order = order.clone();
    ValueCodec {
        encode: Box::new(move |p, w| encode_partition(shape, &order, p, w)),
        decode: Box::new(move |r| decode_partition(shape, &decode_order, r)),
    }
}

impl Partitions {
    /// No partitions yet, their rows kept in `backend` (as node `name`'s).
    pub(crate) fn new(backend: &StateBackend, name: &str, layout: &Layout) -> Partitions {
        let shape = Shape::of(layout);
        Partitions {
            table: KeyedState::new(backend, name, || codec(shape, acc_order(layout))),
            created: Vec::new(),
        }
    }

    /// Between batches: keeps at most the backend's resident budget of partitions' rows in
    /// memory (see [`KeyedState::settle`]).
    pub(crate) fn settle(&mut self) -> Result<(), StateError> {
        self.table.settle()
    }

    /// The id of the partition of `key`, created empty if new.
    #[inline]
    pub(crate) fn id(&mut self, key: &[u8], layout: &Layout) -> u32 {
        let mut created = false;
        let id = self.table.id_or_insert_with(key, || {
            created = true;
            Partition::new(layout)
        });
        if created {
            self.created.push(id);
        }
        id
    }

    /// Every partition (rows, spans, accumulators) for a checkpoint, ids kept (so the operator's
    /// expiry queue, which names partitions by id, stays valid): the storage flag now, then the
    /// partitions frozen as they are now and encoded by the checkpoint's writer thread (see
    /// [`KeyedState::snapshot_deferred`]). With the RocksDB backend the changed values are
    /// written to it first ([`KeyedState::write_storage`]): they are in its checkpoint, and only
    /// keys and ids are written.
    pub(crate) fn snapshot_deferred(
        &mut self,
        layout: &Layout,
        snapshot: &mut StateSnapshot,
    ) -> Result<(), StateError> {
        let shape = Shape::of(layout);
        let mut w = StateWriter::default();
        self.table.write_storage(&mut w)?;
        snapshot.push_ready(w.into_bytes());
        let order = acc_order(layout);
        let encode: Arc<SharedEncode<Partition>> =
            Arc::new(move |p: &Partition, w: &mut StateWriter| {
                encode_partition(shape, &order, p, w)
            });
        snapshot.push_deferred(self.table.snapshot_deferred(encode));
        Ok(())
    }

    /// Reads what [`Partitions::snapshot_deferred`] wrote (OVER state layout 3) into `backend` (as node
    /// `name`'s).
    pub(crate) fn restore(
        r: &mut StateReader<'_>,
        layout: &Layout,
        backend: &StateBackend,
        name: &str,
    ) -> Result<Partitions, StateError> {
        let shape = Shape::of(layout);
        let spilled = r.bool()?;
        let order = acc_order(layout);
        let table = KeyedState::restore_checkpointed(
            r,
            spilled,
            backend,
            name,
            || codec(shape, acc_order(layout)),
            |r| decode_partition(shape, &order, r),
        )?;
        Ok(Partitions {
            table,
            created: Vec::new(),
        })
    }

    /// Reads OVER state layouts 1 and 2, which kept the partitions' rows in the key table and
    /// their spans (one per aggregate) and accumulators after it, flat by partition id. `flagged`:
    /// layout 2, which starts with whether the rows are in RocksDB; such values hold rows alone,
    /// so they are refused.
    pub(crate) fn restore_flat(
        r: &mut StateReader<'_>,
        layout: &Layout,
        backend: &StateBackend,
        name: &str,
        flagged: bool,
    ) -> Result<Partitions, StateError> {
        let shape = Shape::of(layout);
        if flagged && r.bool()? {
            return Err(StateError(
                "OVER state of layout 2 keeps its rows in RocksDB apart from their aggregates; \
                 this fsql cannot restore it (restore a checkpoint taken with \
                 state.backend 'hashmap', or start without this one)"
                    .into(),
            ));
        }
        let mut table = KeyedState::restore(r, |r| decode_rows(shape, r))?;
        let mut per_agg = Vec::new();
        for _ in 0..r.count()? {
            per_agg.push(Span {
                start: r.u32()?,
                end: r.u32()?,
            });
        }
        let mut accs = Vec::new();
        for _ in 0..r.count()? {
            accs.push(Accumulator::decode(r)?);
        }
        let bound = table.id_bound();
        if per_agg.len() < bound * layout.aggs.len() || accs.len() < bound * layout.accs {
            return Err(StateError(format!(
                "{} spans and {} accumulators for {bound} partitions of {} aggregates",
                per_agg.len(),
                accs.len(),
                layout.aggs.len()
            )));
        }
        let spans = share_spans(&per_agg, layout)?;
        let order = acc_order(layout);
        let mut accs = accs.into_iter();
        for (id, spans) in spans.chunks(layout.spans.max(1)).take(bound).enumerate() {
            let accs: Vec<Accumulator> = accs.by_ref().take(layout.accs).collect();
            let Some(p) = table.get_mut(id as u32) else {
                continue;
            };
            let spans = spans.get(..layout.spans).unwrap_or_default();
            if spans.iter().any(|s| s.start > s.end || s.end > p.rows.len) {
                return Err(StateError(format!(
                    "partition {id}: its spans reach past its {} rows",
                    p.rows.len
                )));
            }
            for (k, span) in spans.iter().enumerate() {
                p.rows.set_span(k, *span);
            }
            place_accs(p, accs, &order, layout.kept_accs);
        }
        Ok(Partitions {
            table: table.into_backend(backend, name, || codec(shape, acc_order(layout)))?,
            created: Vec::new(),
        })
    }

    /// The partitions created since the last call (their expiry checks are due).
    pub(crate) fn take_created(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.created)
    }

    /// The partition `id` with its aggregates' state.
    fn part(&mut self, id: u32) -> Option<PartitionMut<'_>> {
        let p = self.table.get_mut(id)?;
        Some(PartitionMut { p })
    }

    /// See [`PartitionMut::process_peers`].
    #[inline]
    pub(crate) fn process_peers<B: Batches>(
        &mut self,
        id: u32,
        layout: &Layout,
        rows: &[RowRef],
        batches: &B,
        results: &mut [Vec<Value>],
        horizon: i64,
    ) {
        if let Some(mut p) = self.part(id) {
            p.process_peers(layout, rows, batches, results, horizon);
        }
    }

    /// Processes one row of partition `id` in arrival mode: in order when it is not older than
    /// the partition's newest row, else [`PartitionMut::process_out_of_order`].
    pub(crate) fn process_arrival<B: Batches>(
        &mut self,
        id: u32,
        layout: &Layout,
        r: &RowRef,
        batches: &B,
        results: &mut [Vec<Value>],
        horizon: i64,
    ) {
        if let Some(mut p) = self.part(id) {
            if r.ts >= p.p.max_ts {
                p.process_peers(layout, std::slice::from_ref(r), batches, results, horizon);
            } else {
                p.process_out_of_order(layout, r, batches, results, horizon);
            }
        }
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut Partition> {
        self.table.get_mut(id)
    }

    /// Hints the CPU to load partition `id`'s slot: called for a partition processed a few rows
    /// later, so its cache miss overlaps the current row's work.
    #[inline]
    pub(crate) fn prefetch(&self, id: u32) {
        self.table.prefetch(id);
    }

    /// Hints the CPU to load partition `id`'s rows (its slot should be loaded already).
    #[inline]
    pub(crate) fn prefetch_rows(&self, id: u32, layout: &Layout) {
        if let Some(p) = self.table.get(id) {
            let (words, values) = p.rows.front(Shape::of(layout));
            prefetch(words);
            prefetch(values);
        }
    }

    /// Drops partition `id` (its id may be reused).
    pub(crate) fn remove(&mut self, id: u32) {
        self.table.remove(id);
    }

    /// Live partitions.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// Rows retained over all partitions.
    pub(crate) fn retained_rows(&self) -> usize {
        self.table
            .values()
            .map(|(_, p)| p.rows.len() as usize)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use fsql_plan::{AggregateFunction, DataType, Expr, OverAggregate, OverFrame, OverSpec};

    use super::*;

    fn layout() -> Layout {
        let agg = |function, args: Vec<Expr>, frame| OverAggregate {
            function,
            args,
            distinct: false,
            frame,
            data_type: DataType::BigInt,
        };
        let v = Expr::column(0, DataType::BigInt, true);
        let hour = OverFrame::Range {
            preceding_ms: 3_600_000,
        };
        let spec = OverSpec {
            partition_by: vec![],
            order_by: 1,
            aggregates: vec![
                agg(AggregateFunction::Count, vec![], hour),
                agg(AggregateFunction::Sum, vec![v.clone()], hour),
                agg(AggregateFunction::Sum, vec![v], OverFrame::UnboundedRows),
            ],
        };
        let targets = vec![arrow::datatypes::DataType::Int64; 3];
        Layout::new(&spec, |ms| ms, &targets).expect("layout")
    }

    /// A layout of `LAG(c)` of each column `c` of `types`, ordered by column `order_by`.
    fn lag_layout(types: &[DataType], order_by: usize) -> Layout {
        let lag = |c: usize, t: &DataType| OverAggregate {
            function: AggregateFunction::Lag { offset: 1 },
            args: vec![Expr::column(c, t.clone(), true)],
            distinct: false,
            frame: OverFrame::UnboundedRows,
            data_type: t.clone(),
        };
        let spec = OverSpec {
            partition_by: vec![],
            order_by,
            aggregates: types.iter().enumerate().map(|(c, t)| lag(c, t)).collect(),
        };
        let targets: Vec<arrow::datatypes::DataType> =
            types.iter().map(DataType::to_arrow).collect();
        Layout::new(&spec, |ms| ms, &targets).expect("layout")
    }

    /// A layout storing a BIGINT, a STRING, a DOUBLE and a BOOLEAN column (LAG of each).
    fn mixed_layout() -> Layout {
        let types = [
            DataType::BigInt,
            DataType::String,
            DataType::Double,
            DataType::Boolean,
        ];
        lag_layout(&types, 4)
    }

    /// The stored columns of `l` over `arrays`.
    fn stored_columns(l: &Layout, arrays: &[arrow::array::ArrayRef]) -> BatchColumns {
        BatchColumns {
            stored: arrays
                .iter()
                .zip(&l.stored)
                .map(|(a, (_, repr))| ValueColumn::new(a, *repr).expect("column"))
                .collect(),
            defaults: Vec::new(),
        }
    }

    /// What [`encode_rows`] writes of a partition of `buf` whose newest event time is `max_ts`.
    fn rows_bytes(shape: Shape, max_ts: i64, buf: RowBuffer) -> Vec<u8> {
        let p = Partition {
            max_ts,
            rows: buf,
            accs: Box::default(),
        };
        let mut w = StateWriter::default();
        encode_rows(shape, &p, &mut w);
        w.into_bytes()
    }

    /// The first `columns` stored values of every row of `buf`.
    fn stored_rows(buf: &RowBuffer, shape: Shape, columns: usize) -> Vec<Vec<Value>> {
        (0..buf.len())
            .map(|i| {
                (0..columns)
                    .map(|c| buf.value(shape, i, Some(c)).into_owned())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn numbers_and_booleans_are_kept_as_words_and_written_as_values() {
        use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
        let l = mixed_layout();
        let shape = Shape::of(&l);
        // The BIGINT, DOUBLE and BOOLEAN columns are words (a tag word and three words per
        // row after the event time); the string is a value.
        assert_eq!(l.word_columns, 0b1101);
        assert_eq!((shape.stride, shape.values), (5, 1));
        let long = "a string longer than twenty-two bytes";
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![Some(-3), None, Some(i64::MAX)])),
            Arc::new(StringArray::from(vec![Some("x"), Some(long), None])),
            Arc::new(Float64Array::from(vec![Some(-0.0), Some(f64::NAN), None])),
            Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
        ];
        let cols = stored_columns(&l, &arrays);
        let rows = |buf: &RowBuffer| stored_rows(buf, shape, 4);
        let expected =
            |row: usize| -> Vec<Value> { (0..4).map(|c| cols.stored[c].get(row)).collect() };
        let mut buf = RowBuffer::with_spans(shape.spans);
        buf.push(shape, (10, 0), &cols, 0);
        buf.push(shape, (30, 0), &cols, 2);
        buf.insert(shape, 1, (20, 0), &cols, 1);
        assert_eq!(rows(&buf), vec![expected(0), expected(1), expected(2)]);
        assert_eq!(
            (0..3).map(|i| buf.ts(shape, i)).collect::<Vec<_>>(),
            vec![10, 20, 30]
        );
        buf.evict_front(shape, 1);
        assert_eq!(rows(&buf), vec![expected(1), expected(2)]);

        // The checkpoint holds every row's event time, then every value in column order: the
        // bytes of the unpacked form, so checkpoints of earlier versions still read.
        let bytes = rows_bytes(shape, 30, buf);
        let mut unpacked = StateWriter::default();
        unpacked.i64(30);
        unpacked.u32(2);
        unpacked.i64(20);
        unpacked.i64(30);
        for row in [1, 2] {
            for v in expected(row) {
                v.encode(&mut unpacked);
            }
        }
        assert_eq!(bytes, unpacked.into_bytes());
        let back = decode_rows(shape, &mut StateReader::new(&bytes)).expect("decodes");
        assert_eq!(rows(&back.rows), vec![expected(1), expected(2)]);

        // A string where a word column is expected is refused, not misread.
        let mut bad = StateWriter::default();
        bad.i64(0);
        bad.u32(1);
        bad.i64(0);
        for v in [
            Value::str("not a number"),
            Value::Null,
            Value::Null,
            Value::Null,
        ] {
            v.encode(&mut bad);
        }
        let bad = bad.into_bytes();
        let Err(err) = decode_rows(shape, &mut StateReader::new(&bad)) else {
            panic!("a string was read into a word column");
        };
        assert!(err.0.contains("not a number or boolean"), "{}", err.0);
    }

    #[test]
    fn the_event_time_column_is_read_off_the_row_and_written_as_a_value() {
        use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMillisecondArray};
        // `LAG(ts)` over `ORDER BY ts` (column 1), beside a string and a BIGINT.
        let types = [
            DataType::String,
            DataType::Timestamp { precision: 3 },
            DataType::BigInt,
        ];
        let l = lag_layout(&types, 1);
        let shape = Shape::of(&l);
        // The event time takes no room: a row is its time, a tag word and the BIGINT's word,
        // and the string.
        assert_eq!(l.time_column, Some(1));
        assert_eq!(l.word_columns, 0b100);
        assert_eq!((shape.stride, shape.values, shape.columns()), (3, 1, 3));
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![Some("x"), None])),
            Arc::new(TimestampMillisecondArray::from(vec![10, 20])),
            Arc::new(Int64Array::from(vec![None, Some(7)])),
        ];
        let cols = stored_columns(&l, &arrays);
        let expected =
            |row: usize| -> Vec<Value> { (0..3).map(|c| cols.stored[c].get(row)).collect() };
        let rows = |buf: &RowBuffer| stored_rows(buf, shape, 3);
        let mut buf = RowBuffer::with_spans(shape.spans);
        buf.push(shape, (10, 0), &cols, 0);
        buf.push(shape, (20, 0), &cols, 1);
        assert_eq!(rows(&buf), vec![expected(0), expected(1)]);
        assert_eq!(expected(1)[1], Value::Int(20));

        // Checkpoints hold the time as the column's value, as when it had room of its own.
        let bytes = rows_bytes(shape, 20, buf);
        let unpacked = |time_value: i64| {
            let mut u = StateWriter::default();
            u.i64(20);
            u.u32(2);
            u.i64(10);
            u.i64(20);
            for row in [0, 1] {
                let mut values = expected(row);
                if row == 1 {
                    values[1] = Value::Int(time_value);
                }
                for v in values {
                    v.encode(&mut u);
                }
            }
            u.into_bytes()
        };
        assert_eq!(bytes, unpacked(20));
        let back = decode_rows(shape, &mut StateReader::new(&bytes)).expect("decodes");
        assert_eq!(rows(&back.rows), vec![expected(0), expected(1)]);
        // A time column that is not its row's time is refused, not silently replaced.
        let Err(err) = decode_rows(shape, &mut StateReader::new(&unpacked(21))) else {
            panic!("a time column other than the row's time was read");
        };
        assert!(err.0.contains("event time"), "{}", err.0);
    }

    #[test]
    fn an_unkept_accumulator_is_written_as_the_one_its_rows_make() {
        let v = Expr::column(0, DataType::BigInt, true);
        let agg = |function, distinct| OverAggregate {
            function,
            args: vec![v.clone()],
            distinct,
            frame: OverFrame::Range {
                preceding_ms: 3_600_000,
            },
            data_type: DataType::BigInt,
        };
        let spec = OverSpec {
            partition_by: vec![],
            order_by: 1,
            aggregates: vec![
                agg(AggregateFunction::Max, false),
                agg(AggregateFunction::Count, true),
            ],
        };
        let l = Layout::new(&spec, |ms| ms, &vec![arrow::datatypes::DataType::Int64; 2])
            .expect("layout");
        assert!(l.aggs.iter().all(|a| a.scan));
        let values: arrow::array::ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![
            Some(5),
            None,
            Some(7),
            Some(5),
        ]));
        let cols = BatchColumns {
            stored: vec![ValueColumn::new(&values, l.stored[0].1).expect("column")],
            defaults: Vec::new(),
        };
        let mut parts = Partitions::new(&StateBackend::memory(), "over", &l);
        let mut results = vec![vec![Value::Null; 4]; 2];
        let pid = parts.id(b"k", &l);
        for row in 0..4u32 {
            let r = RowRef {
                ts: i64::from(row),
                seq: u64::from(row),
                pid,
                slot: 0,
                row,
                out: row,
            };
            parts.process_arrival(pid, &l, &r, &OneBatch(&cols), &mut results, i64::MAX);
        }
        assert_eq!(results[0], [5, 5, 7, 7].map(Value::Int));
        assert_eq!(results[1], [1, 1, 2, 2].map(Value::Int));
        let shape = Shape::of(&l);
        let order = acc_order(&l);
        let encoded = |p: &Partition| {
            let mut w = StateWriter::default();
            encode_partition(shape, &order, p, &mut w).expect("encodes");
            w.into_bytes()
        };
        let p = parts.get_mut(pid).expect("partition");
        // Four rows: below `SCAN_ROWS`, so the partition holds no accumulator at all.
        assert_eq!(p.accs.len(), 0);
        let unkept = encoded(p);
        for a in order.iter() {
            let s = a.scan.expect("scannable");
            let span = p.rows.span(s.span).expect("span");
            let acc = kept(&s.spec, &p.rows, (shape, s.col), span);
            keep_scanned(&mut p.accs, a.at, acc, l.accs);
        }
        assert_eq!(p.accs.len(), 2);
        assert!(p.accs.iter().all(|a| !a.is_unkept()));
        assert_eq!(unkept, encoded(p));
        // Read back, a small frame's accumulators are not kept again.
        let back = decode_partition(shape, &order, &mut StateReader::new(&unkept)).expect("reads");
        assert_eq!(back.accs.len(), 0);
        assert_eq!(encoded(&back), unkept);
    }

    fn span(start: u32, end: u32) -> Span {
        Span { start, end }
    }

    #[test]
    fn a_checkpoints_spans_per_aggregate_become_one_per_frame() {
        let l = layout();
        assert_eq!(l.spans, 2);
        let per_agg = [
            span(1, 3),
            span(1, 3),
            span(0, 3),
            span(0, 1),
            span(0, 1),
            span(0, 1),
        ];
        assert_eq!(
            share_spans(&per_agg, &l).expect("consistent"),
            vec![span(1, 3), span(0, 3), span(0, 1), span(0, 1)]
        );
    }

    /// Partitions `a` (three rows) and `b` (one), processed through `layout()`'s aggregates.
    fn filled(l: &Layout) -> Partitions {
        let values: arrow::array::ArrayRef =
            std::sync::Arc::new(arrow::array::Int64Array::from(vec![
                Some(5),
                None,
                Some(7),
                Some(1),
            ]));
        let cols = BatchColumns {
            stored: vec![ValueColumn::new(&values, l.stored[0].1).expect("column")],
            defaults: Vec::new(),
        };
        let mut parts = Partitions::new(&StateBackend::memory(), "over", l);
        let mut results = vec![vec![Value::Null; 4]; l.aggs.len()];
        for (row, (key, ts)) in [(b"a", 1), (b"a", 2), (b"b", 2), (b"a", 3_600_500)]
            .into_iter()
            .enumerate()
        {
            let pid = parts.id(key, l);
            let r = RowRef {
                ts,
                seq: row as u64,
                pid,
                slot: 0,
                row: row as u32,
                out: row as u32,
            };
            parts.process_arrival(pid, l, &r, &OneBatch(&cols), &mut results, i64::MAX);
        }
        parts
    }

    /// What OVER state layout 2 wrote for `parts`: rows in the key table, then one span per
    /// aggregate and the accumulators, flat by partition id.
    fn layout_2(parts: &Partitions, l: &Layout) -> Vec<u8> {
        let shape = Shape::of(l);
        let mut w = StateWriter::default();
        w.bool(false);
        parts
            .table
            .snapshot(&mut w, |p, w| {
                encode_rows(shape, p, w);
                Ok(())
            })
            .expect("snapshot");
        let bound = parts.table.id_bound();
        w.count(bound * l.aggs.len());
        for id in 0..bound as u32 {
            let p = parts.table.get(id).expect("live");
            for plan in &l.aggs {
                let span = p.rows.span(plan.span).expect("span");
                w.u32(span.start);
                w.u32(span.end);
            }
        }
        w.count(bound * l.accs);
        for id in 0..bound as u32 {
            let p = parts.table.get(id).expect("live");
            encode_accs(shape, &acc_order(l), p, &mut w).expect("accumulators");
        }
        w.into_bytes()
    }

    fn layout_3(parts: &mut Partitions, l: &Layout) -> Vec<u8> {
        let mut s = StateSnapshot::default();
        parts.snapshot_deferred(l, &mut s).expect("snapshot");
        s.into_bytes().expect("snapshot")
    }

    #[test]
    fn a_layout_2_checkpoint_restores_the_same_partitions() {
        let l = layout();
        let mut parts = filled(&l);
        let memory = StateBackend::memory();
        let old = layout_2(&parts, &l);
        let mut back =
            Partitions::restore_flat(&mut StateReader::new(&old), &l, &memory, "over", true)
                .expect("restores");
        assert_eq!(layout_3(&mut back, &l), layout_3(&mut parts, &l));
        // a's third row is an hour after its first two, which left every frame and were
        // dropped: the state restored is not the trivial one.
        let a = parts.table.get(0).expect("a");
        assert_eq!(
            (a.rows.len(), a.rows.span(0), a.rows.span(1)),
            (1, Some(span(0, 1)), Some(span(0, 1)))
        );

        let mut rocks = old.clone();
        rocks[0] = 1;
        let Err(err) =
            Partitions::restore_flat(&mut StateReader::new(&rocks), &l, &memory, "over", true)
        else {
            panic!("layout 2 with its rows in RocksDB was restored");
        };
        assert!(err.0.contains("layout 2"), "{}", err.0);
    }

    #[test]
    fn a_layout_3_checkpoint_restores_and_refuses_spans_outside_the_rows() {
        let l = layout();
        let mut parts = filled(&l);
        let memory = StateBackend::memory();
        let bytes = layout_3(&mut parts, &l);
        let mut back = Partitions::restore(&mut StateReader::new(&bytes), &l, &memory, "over")
            .expect("restores");
        assert_eq!(layout_3(&mut back, &l), bytes);

        let b = parts.table.get(1).expect("b");
        let mut w = StateWriter::default();
        encode_partition(Shape::of(&l), &acc_order(&l), b, &mut w).expect("encodes");
        let mut damaged = w.into_bytes();
        // b's rows: max_ts (8 bytes), its count (4), one word (8), one value (tag 2 + 8 bytes):
        // its first span's end follows; point it past the one row.
        let at = 8 + 4 + 8 + 9 + 4;
        damaged[at..at + 4].copy_from_slice(&5u32.to_le_bytes());
        let Err(err) = decode_partition(
            Shape::of(&l),
            &acc_order(&l),
            &mut StateReader::new(&damaged),
        ) else {
            panic!("a span past the rows was read");
        };
        assert!(err.0.contains("outside"), "{}", err.0);
    }

    #[test]
    fn aggregates_of_one_frame_holding_different_rows_are_refused() {
        let per_agg = [span(1, 3), span(0, 3), span(0, 3)];
        let err = share_spans(&per_agg, &layout()).expect_err("inconsistent");
        assert!(err.0.contains("partition 0"), "{}", err.0);
    }
}
