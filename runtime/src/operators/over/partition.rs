//! Per-key state: the rows the frames still need (event time, arrival sequence and stored argument
//! values, in event-time order) and, per aggregate, its accumulator and the span of rows it holds.
//!
//! Rows are addressed by absolute position (`base` + offset in the buffer), so evicting old rows
//! from the front does not move the frames. An aggregate's accumulator holds the rows
//! `[start, end)`: rows enter at `end` and leave at `start` (bounded frames only).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

use super::layout::{Frame, Func, Layout};
use crate::operators::agg::accumulator::{Accumulator, RowKey};
use crate::operators::agg::key::{FxBuild, IdBuild, KeyBytes, hash_key};
use crate::operators::agg::value::{Value, ValueColumn};

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

/// Retained rows in (event time, arrival) order.
#[derive(Debug, Default)]
struct RowBuffer {
    /// The absolute position of `keys[0]`.
    base: u64,
    keys: VecDeque<RowKey>,
    /// `stride` stored values per row.
    values: VecDeque<Value>,
    stride: usize,
}

impl RowBuffer {
    fn end(&self) -> u64 {
        self.base + self.keys.len() as u64
    }

    #[inline]
    fn key(&self, i: u64) -> RowKey {
        self.keys
            .get((i - self.base) as usize)
            .copied()
            .unwrap_or((i64::MIN, 0))
    }

    #[inline]
    fn value(&self, i: u64, col: Option<usize>) -> &Value {
        match col {
            None => &ONE,
            Some(c) => self
                .values
                .get((i - self.base) as usize * self.stride + c)
                .unwrap_or(&NULL),
        }
    }

    fn push(&mut self, key: RowKey, cols: &BatchColumns, row: u32) {
        self.keys.push_back(key);
        for c in &cols.stored {
            self.values.push_back(c.get(row as usize));
        }
    }

    /// Inserts a row at absolute position `at` (later rows move up by one).
    fn insert(&mut self, at: u64, key: RowKey, cols: &BatchColumns, row: u32) {
        let rel = (at - self.base) as usize;
        self.keys.insert(rel, key);
        for (j, c) in cols.stored.iter().enumerate() {
            self.values
                .insert(rel * self.stride + j, c.get(row as usize));
        }
    }

    /// Drops the rows before absolute position `need`.
    fn evict_before(&mut self, need: u64) {
        let k = need.saturating_sub(self.base).min(self.keys.len() as u64) as usize;
        if k > 0 {
            self.keys.drain(..k);
            self.values.drain(..k * self.stride);
            self.base += k as u64;
        }
    }

    /// The position after every row with event time ≤ `ts`.
    fn after(&self, ts: i64) -> u64 {
        self.base + self.keys.partition_point(|k| k.0 <= ts) as u64
    }

    /// The position of the first row with event time ≥ `ts`.
    fn at_or_after(&self, ts: i64) -> u64 {
        self.base + self.keys.partition_point(|k| k.0 < ts) as u64
    }

    /// `x` of the row `offset` rows before position `i`, if retained.
    fn lag(&self, i: u64, offset: u64, col: Option<usize>) -> Option<Value> {
        let j = i.checked_sub(offset)?;
        (j >= self.base && j < self.end()).then(|| self.value(j, col).clone())
    }
}

/// One aggregate's state in a partition.
#[derive(Debug)]
struct AggState {
    start: u64,
    end: u64,
    /// `None` for LAG, which reads the row buffer.
    acc: Option<Accumulator>,
}

/// The state of one partition key.
#[derive(Debug)]
pub(crate) struct Partition {
    pub key: KeyBytes,
    /// `hash_key(key)`.
    pub hash: u64,
    /// The newest event time processed (`i64::MIN` before the first row).
    pub max_ts: i64,
    /// Identifies this partition among all that ever had its id.
    pub uid: u64,
    /// An expiry check for it is queued.
    pub queued: bool,
    rows: RowBuffer,
    aggs: Vec<AggState>,
}

impl Partition {
    fn new(layout: &Layout, key: &[u8], hash: u64, uid: u64) -> Partition {
        Partition {
            key: KeyBytes::new(key),
            hash,
            max_ts: i64::MIN,
            uid,
            queued: false,
            rows: RowBuffer {
                stride: layout.stored.len(),
                ..RowBuffer::default()
            },
            aggs: layout
                .aggs
                .iter()
                .map(|a| AggState {
                    start: 0,
                    end: 0,
                    acc: match &a.func {
                        Func::Acc(spec) => Some(spec.new_acc()),
                        Func::Lag { .. } => None,
                    },
                })
                .collect(),
        }
    }

    /// Rows retained for the frames (tests and metrics).
    pub(crate) fn retained(&self) -> usize {
        self.rows.keys.len()
    }

    /// Processes rows with the same event time, not older than any row processed before, in
    /// arrival order: RANGE frames see all of them at once (peers get equal results; LAG is
    /// taken relative to the last peer), ROWS frames one by one. `results[a][out]` receives
    /// aggregate `a` of each row.
    pub(crate) fn process_peers<B: Batches>(
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
        let Partition {
            rows: buf, aggs, ..
        } = self;
        let first = buf.end();
        for r in rows {
            buf.push((r.ts, r.seq), batches.columns(r.slot), r.row);
        }
        let end = buf.end();
        for ((plan, st), out) in layout
            .aggs
            .iter()
            .zip(aggs.iter_mut())
            .zip(results.iter_mut())
        {
            match (&plan.func, st.acc.as_mut()) {
                (Func::Lag { offset, default }, _) => {
                    for (j, r) in rows.iter().enumerate() {
                        let at = if plan.frame.peers() {
                            end - 1
                        } else {
                            first + j as u64
                        };
                        let v = buf.lag(at, *offset, plan.col).unwrap_or_else(|| {
                            batches.columns(r.slot).default_value(*default, r.row)
                        });
                        set(out, r.out, v);
                    }
                    st.end = end;
                }
                (Func::Acc(spec), Some(acc)) => {
                    if plan.frame.peers() {
                        while st.end < end {
                            acc.add(spec, buf.key(st.end), buf.value(st.end, plan.col));
                            st.end += 1;
                        }
                        if let Frame::Range(p) = plan.frame {
                            let lo = ts.saturating_sub(p);
                            while st.start < st.end && buf.key(st.start).0 < lo {
                                acc.retract(spec, buf.key(st.start), buf.value(st.start, plan.col));
                                st.start += 1;
                            }
                        }
                        let v = acc.result(spec);
                        for r in rows {
                            set(out, r.out, v.clone());
                        }
                    } else {
                        for r in rows {
                            acc.add(spec, buf.key(st.end), buf.value(st.end, plan.col));
                            st.end += 1;
                            if let Frame::Rows(n) = plan.frame {
                                while st.end - st.start > n.saturating_add(1) {
                                    acc.retract(
                                        spec,
                                        buf.key(st.start),
                                        buf.value(st.start, plan.col),
                                    );
                                    st.start += 1;
                                }
                            }
                            set(out, r.out, acc.result(spec));
                        }
                    }
                }
                (Func::Acc(_), None) => {}
            }
        }
        self.max_ts = self.max_ts.max(ts);
        self.evict(layout, horizon);
    }

    /// Arrival mode: a row older than the partition's newest. Its own result is computed by
    /// scanning its frame over the retained rows (RANGE: event times in `[ts - p, ts]`, earlier
    /// peers included; ROWS and LAG: the rows before it in event-time order). Rows newer than the
    /// watermark keep what their frames need (see [`Partition::evict`]), so this is exact for a
    /// row that is out of order but not behind the watermark; a late row misses what was
    /// already evicted. Unbounded frames give the running aggregate, which includes the newer
    /// rows already seen. Then the row is inserted in event-time order and enters the current
    /// frames it belongs to, so later rows see it.
    pub(crate) fn process_out_of_order<B: Batches>(
        &mut self,
        layout: &Layout,
        r: &RowRef,
        batches: &B,
        results: &mut [Vec<Value>],
        horizon: i64,
    ) {
        let cols = batches.columns(r.slot);
        let key = (r.ts, r.seq);
        let Partition {
            rows: buf,
            aggs,
            max_ts,
            ..
        } = self;
        let at = buf.after(r.ts);
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
                        buf.lag(at, *offset, plan.col)
                            .unwrap_or_else(|| cols.default_value(*default, r.row))
                    };
                    set(out, r.out, v);
                }
                Func::Acc(spec) if plan.frame.bounded() => {
                    let from = match plan.frame {
                        Frame::Range(p) => buf.at_or_after(r.ts.saturating_sub(p)),
                        Frame::Rows(n) => at.saturating_sub(n).max(buf.base),
                        _ => at,
                    };
                    let mut acc = spec.new_acc();
                    for i in from..at {
                        acc.add(spec, buf.key(i), buf.value(i, plan.col));
                    }
                    acc.add(spec, key, &own(plan.col));
                    set(out, r.out, acc.result(spec));
                }
                Func::Acc(_) => {}
            }
        }
        buf.insert(at, key, cols, r.row);
        for ((plan, st), out) in layout
            .aggs
            .iter()
            .zip(aggs.iter_mut())
            .zip(results.iter_mut())
        {
            let (Func::Acc(spec), Some(acc)) = (&plan.func, st.acc.as_mut()) else {
                st.end += 1;
                continue;
            };
            let v = buf.value(at, plan.col);
            match plan.frame {
                Frame::Range(p) => {
                    if r.ts >= max_ts.saturating_sub(p) {
                        acc.add(spec, key, v);
                    } else {
                        st.start += 1;
                    }
                    st.end += 1;
                }
                Frame::Rows(n) => {
                    if at >= st.start {
                        acc.add(spec, key, v);
                        st.end += 1;
                        while st.end - st.start > n.saturating_add(1) {
                            acc.retract(spec, buf.key(st.start), buf.value(st.start, plan.col));
                            st.start += 1;
                        }
                    } else {
                        st.start += 1;
                        st.end += 1;
                    }
                }
                Frame::UnboundedRange | Frame::UnboundedRows => {
                    acc.add(spec, key, v);
                    st.end += 1;
                    set(out, r.out, acc.result(spec));
                }
            }
        }
        self.evict(layout, horizon);
    }

    /// Drops the rows no frame needs any more, oldest first: a row stays while an accumulator
    /// holds it, while LAG may still read it, or while a later row with an event time ≥
    /// `horizon` could have it in its frame (arrival mode passes the watermark + 1, so rows that
    /// arrive out of order but not late see their whole frame; watermark mode passes `i64::MAX`).
    fn evict(&mut self, layout: &Layout, horizon: i64) {
        let buf = &self.rows;
        let ts_at = |k: usize| buf.keys.get(k).map_or(i64::MAX, |key| key.0);
        let mut k = 0;
        'rows: while k < buf.keys.len() {
            let i = buf.base + k as u64;
            let ts = ts_at(k);
            for (plan, st) in layout.aggs.iter().zip(&self.aggs) {
                let needed = match (plan.func, plan.frame) {
                    (Func::Lag { offset, .. }, _) => {
                        i.saturating_add(offset) >= st.end
                            || ts_at(k.saturating_add(offset as usize)) >= horizon
                    }
                    (Func::Acc(_), Frame::Range(p)) => {
                        i >= st.start || ts >= horizon.saturating_sub(p)
                    }
                    (Func::Acc(_), Frame::Rows(n)) => {
                        i >= st.start || ts_at(k.saturating_add(n as usize)) >= horizon
                    }
                    (Func::Acc(_), _) => false,
                };
                if needed {
                    break 'rows;
                }
            }
            k += 1;
        }
        self.rows.evict_before(self.rows.base + k as u64);
    }
}

#[inline]
fn set(out: &mut [Value], at: u32, v: Value) {
    if let Some(slot) = out.get_mut(at as usize) {
        *slot = v;
    }
}

/// Every partition, by key.
///
/// Keys are found by their hash, then compared with the partition's own (inline) key, so a lookup
/// touches the table and the partition only. A key whose hash collides with another live key's
/// goes to `overflow`, looked up by its bytes.
pub(crate) struct Partitions {
    by_hash: HashMap<u64, u32, IdBuild>,
    overflow: HashMap<Box<[u8]>, u32, FxBuild>,
    slots: Vec<Option<Partition>>,
    free: Vec<u32>,
    next_uid: u64,
    hash: fn(&[u8]) -> u64,
}

impl Default for Partitions {
    fn default() -> Partitions {
        Partitions {
            by_hash: HashMap::default(),
            overflow: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            next_uid: 0,
            hash: hash_key,
        }
    }
}

impl Partitions {
    /// The id of the partition of `key`, created empty if new.
    #[inline]
    pub(crate) fn id(&mut self, key: &[u8], layout: &Layout) -> u32 {
        let h = (self.hash)(key);
        if let Some(&id) = self.by_hash.get(&h)
            && self
                .slots
                .get(id as usize)
                .and_then(Option::as_ref)
                .is_some_and(|p| p.key.as_slice() == key)
        {
            return id;
        }
        if !self.overflow.is_empty()
            && let Some(&id) = self.overflow.get(key)
        {
            return id;
        }
        let p = Partition::new(layout, key, h, self.next_uid);
        self.next_uid += 1;
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(p);
                id
            }
            None => {
                self.slots.push(Some(p));
                (self.slots.len() - 1) as u32
            }
        };
        match self.by_hash.entry(h) {
            Entry::Occupied(_) => {
                self.overflow.insert(key.into(), id);
            }
            Entry::Vacant(e) => {
                e.insert(id);
            }
        }
        id
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut Partition> {
        self.slots.get_mut(id as usize).and_then(Option::as_mut)
    }

    /// Hints the CPU to load partition `id`'s slot: called for a partition processed a few rows
    /// later, so its cache miss overlaps the current row's work.
    #[inline]
    pub(crate) fn prefetch(&self, id: u32) {
        if let Some(slot) = self.slots.get(id as usize) {
            prefetch(std::ptr::from_ref(slot).cast());
        }
    }

    /// Hints the CPU to load partition `id`'s row buffers (its slot should be loaded already).
    #[inline]
    pub(crate) fn prefetch_rows(&self, id: u32) {
        if let Some(Some(p)) = self.slots.get(id as usize) {
            let (keys, _) = p.rows.keys.as_slices();
            let (values, _) = p.rows.values.as_slices();
            prefetch(keys.as_ptr().cast());
            prefetch(values.as_ptr().cast());
        }
    }

    /// Drops partition `id` (its id may be reused).
    pub(crate) fn remove(&mut self, id: u32) {
        if let Some(p) = self.slots.get_mut(id as usize).and_then(Option::take) {
            if self.by_hash.get(&p.hash) == Some(&id) {
                self.by_hash.remove(&p.hash);
            } else {
                self.overflow.remove(p.key.as_slice());
            }
            self.free.push(id);
        }
    }

    /// Live partitions.
    pub(crate) fn len(&self) -> usize {
        self.by_hash.len() + self.overflow.len()
    }

    /// Rows retained over all partitions.
    pub(crate) fn retained_rows(&self) -> usize {
        self.slots.iter().flatten().map(Partition::retained).sum()
    }
}

/// A read prefetch hint (no effect on other architectures).
#[inline(always)]
fn prefetch(p: *const i8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch only hints the cache; it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use fsql_plan::{AggregateFunction, OverAggregate, OverFrame, OverSpec};

    use super::*;

    #[test]
    fn colliding_hashes_still_find_their_own_partition() {
        let spec = OverSpec {
            partition_by: vec![0],
            order_by: 1,
            aggregates: vec![OverAggregate {
                function: AggregateFunction::Count,
                args: vec![],
                distinct: false,
                frame: OverFrame::UnboundedRows,
                data_type: fsql_plan::DataType::BigInt,
            }],
        };
        let layout = Layout::new(&spec, |ms| ms, &[arrow::datatypes::DataType::Int64]).unwrap();
        let mut parts = Partitions {
            hash: |_| 7,
            ..Partitions::default()
        };
        let a = parts.id(b"a", &layout);
        let b = parts.id(b"b", &layout);
        let c = parts.id(&[9u8; 30], &layout);
        assert_eq!((a, b, c), (0, 1, 2));
        assert_eq!(
            (parts.id(b"b", &layout), parts.id(&[9u8; 30], &layout)),
            (1, 2)
        );
        assert_eq!(parts.len(), 3);
        // Removing the key the hash points at leaves the others reachable.
        parts.remove(a);
        assert_eq!(
            (parts.id(b"b", &layout), parts.id(&[9u8; 30], &layout)),
            (1, 2)
        );
        assert_eq!(parts.id(b"a", &layout), 0, "a new partition reuses the id");
        parts.remove(b);
        parts.remove(c);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts.id(b"a", &layout), 0);
    }
}
