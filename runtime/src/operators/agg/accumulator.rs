//! Incremental aggregate state: a row's value is added when it enters the frame and retracted
//! when it leaves a sliding frame; the result is read after each step.
//!
//! Rows always leave a frame oldest first (the frame's front), which FIRST_VALUE/LAST_VALUE rely
//! on. NULL values are ignored by every function except `COUNT(*)`. Costs per add/retract:
//! O(1) for COUNT/SUM/AVG/variance and unbounded MIN/MAX, O(log w) for sliding MIN/MAX (a
//! multiset), O(1) amortised for FIRST/LAST_VALUE when rows arrive in order, and one hash
//! lookup more with DISTINCT.

use std::collections::VecDeque;

use super::value::{Dec, Value, ValueType};
use super::value_counts::ValueCounts;
use crate::state::codec::{StateError, StateReader, StateWriter};

/// Identifies a row within a partition: event time, then arrival sequence.
pub(crate) type RowKey = (i64, u64);

/// The arithmetic of SUM and AVG, from the argument's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Domain {
    /// 64-bit integers, wrapping on overflow (narrowed to the output type at the end).
    Int,
    Float,
    /// Unscaled `i128` at the argument's scale.
    Decimal {
        scale: i8,
    },
}

/// The result type of AVG (Flink types `AVG(INT)` as `INT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AvgOut {
    /// Truncated toward zero.
    Int,
    Float,
    /// Rounded half up at this scale.
    Decimal {
        scale: i8,
    },
}

/// The variance family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Moment {
    VarPop,
    VarSamp,
    StddevPop,
    StddevSamp,
}

/// Which aggregate an accumulator computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AccKind {
    CountStar,
    Count,
    Sum(Domain),
    Avg(Domain, AvgOut),
    Min,
    Max,
    FirstValue,
    LastValue,
    Moment(Moment),
}

/// An aggregate's accumulator description (shared by every partition).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AccSpec {
    pub kind: AccKind,
    /// Aggregate distinct values only (refcounted, so retraction works).
    pub distinct: bool,
    /// The frame slides: values are retracted, so MIN/MAX and FIRST/LAST_VALUE keep every value
    /// of the frame instead of the running extreme.
    pub bounded: bool,
}

impl AccSpec {
    /// The type of the results, given the argument's.
    pub(crate) fn result_type(&self, arg: &ValueType) -> ValueType {
        match self.kind {
            AccKind::CountStar | AccKind::Count => ValueType::int64(),
            AccKind::Sum(Domain::Int) => ValueType::int64(),
            AccKind::Sum(Domain::Float) => ValueType::Float,
            AccKind::Sum(Domain::Decimal { scale }) => ValueType::Decimal { scale },
            AccKind::Avg(_, AvgOut::Int) => ValueType::int64(),
            AccKind::Avg(_, AvgOut::Float) => ValueType::Float,
            AccKind::Avg(_, AvgOut::Decimal { scale }) => ValueType::Decimal { scale },
            AccKind::Min | AccKind::Max | AccKind::FirstValue | AccKind::LastValue => arg.clone(),
            AccKind::Moment(_) => ValueType::Float,
        }
    }

    /// Whether the aggregate's result over a frame can be read off the frame's rows alone, with
    /// no state of its own, exactly as its accumulator gives it: a sliding MIN or MAX, COUNT
    /// (DISTINCT or not), or SUM or AVG of integers or decimals (exact sums, whatever the order;
    /// not floating point, whose sum depends on it). OVER computes those by scanning small
    /// frames and keeps accumulators only for large ones ([`Accumulator::unkept`]).
    pub(crate) fn scannable(&self) -> bool {
        self.bounded
            && match self.kind {
                AccKind::Min | AccKind::Max | AccKind::Count => true,
                AccKind::Sum(d) | AccKind::Avg(d, _) => !self.distinct && d != Domain::Float,
                _ => false,
            }
    }

    /// The aggregate of `values` (the non-NULL values of a frame of a [`scannable`] aggregate,
    /// in any order), what an accumulator holding them gives.
    ///
    /// [`scannable`]: AccSpec::scannable
    pub(crate) fn scan<V: std::ops::Deref<Target = Value>>(
        &self,
        values: impl Iterator<Item = V> + Clone,
    ) -> Value {
        debug_assert!(self.scannable(), "{self:?} is not computed by scanning");
        match self.kind {
            AccKind::Count if self.distinct => {
                let mut n = 0i64;
                for (i, v) in values.clone().enumerate() {
                    if !values.clone().take(i).any(|w| *w == *v) {
                        n += 1;
                    }
                }
                Value::Int(n)
            }
            AccKind::Count => Value::Int(values.count() as i64),
            AccKind::Sum(Domain::Int) | AccKind::Avg(Domain::Int, _) => {
                let (mut sum, mut n) = (0i64, 0i64);
                for v in values {
                    if let Value::Int(x) = *v {
                        sum = sum.wrapping_add(x);
                        n += 1;
                    }
                }
                State::Int { sum, n }.result(self)
            }
            AccKind::Sum(_) | AccKind::Avg(..) => {
                let (mut sum, mut n) = (0i128, 0i64);
                for v in values {
                    if let Value::Decimal(x) = *v {
                        sum = sum.wrapping_add(x.get());
                        n += 1;
                    }
                }
                dec_result(self, Dec::new(sum), n)
            }
            AccKind::Min => values
                .min_by(|a, b| (**a).cmp(&**b))
                .map_or(Value::Null, |v| (*v).clone()),
            _ => values
                .max_by(|a, b| (**a).cmp(&**b))
                .map_or(Value::Null, |v| (*v).clone()),
        }
    }

    /// An empty accumulator.
    pub(crate) fn new_acc(&self) -> Accumulator {
        let state = match self.kind {
            AccKind::CountStar | AccKind::Count => State::Count(0),
            AccKind::Sum(d) | AccKind::Avg(d, _) => match d {
                Domain::Int => State::Int { sum: 0, n: 0 },
                Domain::Float => State::Float { sum: 0.0, n: 0 },
                Domain::Decimal { .. } => State::Dec(Box::new(DecSum {
                    sum: Dec::new(0),
                    n: 0,
                })),
            },
            AccKind::Min | AccKind::Max if self.bounded => State::Multiset(Box::default()),
            AccKind::Min | AccKind::Max => State::Extreme(None),
            AccKind::FirstValue | AccKind::LastValue => State::Ends(Box::default()),
            AccKind::Moment(_) => State::Moments(Box::new(Sums {
                n: 0,
                sum: 0.0,
                sumsq: 0.0,
            })),
        };
        if self.distinct && self.kind == AccKind::Count {
            return Accumulator {
                state: State::CountDistinct(ValueCounts::default()),
            };
        }
        let distinct = self.distinct
            && !matches!(
                self.kind,
                AccKind::CountStar
                    | AccKind::Min
                    | AccKind::Max
                    | AccKind::FirstValue
                    | AccKind::LastValue
            );
        Accumulator {
            state: if distinct {
                State::Distinct(Box::new(Distinct {
                    seen: ValueCounts::default(),
                    inner: state,
                }))
            } else {
                state
            },
        }
    }
}

/// The state of one aggregate in one partition.
#[derive(Clone, Debug)]
pub(crate) struct Accumulator {
    state: State,
}

impl Accumulator {
    /// No state: the aggregate (a [`AccSpec::scannable`] one) is computed from its frame's rows
    /// by whoever holds them. Adding and retracting do nothing; its result is NULL.
    pub(crate) fn unkept() -> Accumulator {
        Accumulator {
            state: State::Unkept,
        }
    }

    pub(crate) fn is_unkept(&self) -> bool {
        matches!(self.state, State::Unkept)
    }
}

/// DISTINCT: how many rows of the frame hold each value; only a value's first occurrence
/// reaches `inner`.
#[derive(Clone, Debug)]
struct Distinct {
    seen: ValueCounts,
    inner: State,
}

/// A decimal SUM or AVG: the unscaled sum and the values counted.
#[derive(Clone, Debug)]
struct DecSum {
    sum: Dec,
    n: i64,
}

/// The variance family's sums.
#[derive(Clone, Debug)]
struct Sums {
    n: i64,
    sum: f64,
    sumsq: f64,
}

/// 24 bytes: the state of every COUNT, SUM and COUNT(DISTINCT) of every key is inline; the
/// larger and rarer states are boxed, so they do not make all the others larger.
#[derive(Clone, Debug)]
enum State {
    Count(i64),
    Int {
        sum: i64,
        n: i64,
    },
    Float {
        sum: f64,
        n: i64,
    },
    Dec(Box<DecSum>),
    /// Sliding MIN/MAX: value → occurrences (boxed: `CountDistinct`'s counts are the one
    /// 24-byte variant the state's tag fits beside).
    Multiset(Box<ValueCounts>),
    /// Unbounded MIN/MAX: the extreme so far.
    Extreme(Option<Box<Value>>),
    /// FIRST/LAST_VALUE: the frame's non-NULL values by row key (only the first, or the last,
    /// one for an unbounded frame).
    #[allow(clippy::box_collection)]
    Ends(Box<VecDeque<(RowKey, Value)>>),
    Moments(Box<Sums>),
    /// `COUNT(DISTINCT x)`: the values counted, whose number is the result. Inline (no
    /// [`Distinct`] box, no inner count): the most common DISTINCT aggregate, held per key.
    CountDistinct(ValueCounts),
    /// Boxed (as is `Ends`'s deque): few aggregates are DISTINCT, and an inline map would make
    /// every accumulator of every key larger.
    Distinct(Box<Distinct>),
    /// See [`Accumulator::unkept`]; never written to a checkpoint (its owner writes the state
    /// its rows make instead).
    Unkept,
}

impl State {
    fn encode(&self, w: &mut StateWriter) {
        match self {
            // Its owner writes the state its rows make instead; were it written, a restore
            // refuses it (tag 9) rather than read an empty state.
            State::Unkept => {
                debug_assert!(false, "an unkept accumulator was written");
                w.u8(9);
            }
            State::Count(n) => {
                w.u8(0);
                w.i64(*n);
            }
            State::Int { sum, n } => {
                w.u8(1);
                w.i64(*sum);
                w.i64(*n);
            }
            State::Float { sum, n } => {
                w.u8(2);
                w.f64(*sum);
                w.i64(*n);
            }
            State::Dec(d) => {
                let DecSum { sum, n } = &**d;
                w.u8(3);
                w.i128(sum.get());
                w.i64(*n);
            }
            State::Multiset(m) => {
                w.u8(4);
                w.count(m.len());
                for (v, c) in m.iter() {
                    v.encode(w);
                    w.u32(c);
                }
            }
            State::Extreme(v) => {
                w.u8(5);
                w.bool(v.is_some());
                if let Some(v) = v {
                    v.encode(w);
                }
            }
            State::Ends(ends) => {
                w.u8(6);
                w.count(ends.len());
                for ((ts, seq), v) in ends.iter() {
                    w.i64(*ts);
                    w.u64(*seq);
                    v.encode(w);
                }
            }
            State::Moments(m) => {
                let Sums { n, sum, sumsq } = &**m;
                w.u8(7);
                w.i64(*n);
                w.f64(*sum);
                w.f64(*sumsq);
            }
            State::Distinct(d) => {
                encode_distinct(&d.seen, w);
                d.inner.encode(w);
            }
            // The bytes of the equivalent `Distinct` with its inner count, so checkpoints are
            // the same either way.
            State::CountDistinct(seen) => {
                encode_distinct(seen, w);
                State::Count(seen.len() as i64).encode(w);
            }
        }
    }

    fn decode(r: &mut StateReader<'_>, depth: u8) -> Result<State, StateError> {
        Ok(match r.u8()? {
            0 => State::Count(r.i64()?),
            1 => State::Int {
                sum: r.i64()?,
                n: r.i64()?,
            },
            2 => State::Float {
                sum: r.f64()?,
                n: r.i64()?,
            },
            3 => State::Dec(Box::new(DecSum {
                sum: Dec::new(r.i128()?),
                n: r.i64()?,
            })),
            4 => State::Multiset(Box::new(decode_counts(r)?)),
            5 => State::Extreme(if r.bool()? {
                Some(Box::new(Value::decode(r)?))
            } else {
                None
            }),
            6 => {
                let mut ends = VecDeque::new();
                for _ in 0..r.count()? {
                    let key = (r.i64()?, r.u64()?);
                    ends.push_back((key, Value::decode(r)?));
                }
                State::Ends(Box::new(ends))
            }
            7 => State::Moments(Box::new(Sums {
                n: r.i64()?,
                sum: r.f64()?,
                sumsq: r.f64()?,
            })),
            8 if depth == 0 => {
                let seen = decode_counts(r)?;
                match State::decode(r, 1)? {
                    State::Count(n) if n == seen.len() as i64 => State::CountDistinct(seen),
                    State::Count(n) => {
                        return Err(StateError(format!(
                            "COUNT(DISTINCT) of {n} holding {} values",
                            seen.len()
                        )));
                    }
                    inner => State::Distinct(Box::new(Distinct { seen, inner })),
                }
            }
            t => return Err(StateError(format!("accumulator tag {t}"))),
        })
    }
}

impl Accumulator {
    /// Writes the accumulator for a checkpoint.
    pub(crate) fn encode(&self, w: &mut StateWriter) {
        self.state.encode(w);
    }

    /// Reads an accumulator [`Accumulator::encode`] wrote.
    pub(crate) fn decode(r: &mut StateReader<'_>) -> Result<Accumulator, StateError> {
        Ok(Accumulator {
            state: State::decode(r, 0)?,
        })
    }
}

impl Accumulator {
    /// Row `key` with argument value `v` enters the frame.
    #[inline]
    pub(crate) fn add(&mut self, spec: &AccSpec, key: RowKey, v: &Value) {
        if spec.kind == AccKind::CountStar {
            if let State::Count(n) = &mut self.state {
                *n += 1;
            }
            return;
        }
        if v.is_null() {
            return;
        }
        let state = match &mut self.state {
            State::CountDistinct(seen) => {
                seen.add(v, 1);
                return;
            }
            State::Distinct(d) => {
                if !d.seen.add(v, 1) {
                    return;
                }
                &mut d.inner
            }
            state => state,
        };
        state.add(spec, key, v);
    }

    /// Row `key` with argument value `v` leaves the frame (it was added before).
    #[inline]
    pub(crate) fn retract(&mut self, spec: &AccSpec, key: RowKey, v: &Value) {
        if spec.kind == AccKind::CountStar {
            if let State::Count(n) = &mut self.state {
                *n -= 1;
            }
            return;
        }
        if v.is_null() {
            return;
        }
        let state = match &mut self.state {
            State::CountDistinct(seen) => {
                seen.retract(v);
                return;
            }
            State::Distinct(d) => {
                if !d.seen.retract(v) {
                    return;
                }
                &mut d.inner
            }
            state => state,
        };
        state.retract(spec, key, v);
    }

    /// Adds every value `other` holds (another slice or session of the same aggregate), as if its
    /// rows had been added here.
    pub(crate) fn merge(&mut self, spec: &AccSpec, other: &Accumulator) {
        if let (State::Distinct(mine), State::Distinct(theirs)) = (&mut self.state, &other.state) {
            for (v, c) in theirs.seen.iter() {
                if mine.seen.add(v, c) {
                    mine.inner.add(spec, (0, 0), v);
                }
            }
            return;
        }
        match (&mut self.state, &other.state) {
            (State::Count(a), State::Count(b)) => *a += b,
            (State::Int { sum, n }, State::Int { sum: s, n: m }) => {
                *sum = sum.wrapping_add(*s);
                *n += m;
            }
            (State::Float { sum, n }, State::Float { sum: s, n: m }) => {
                *sum += s;
                *n += m;
            }
            (State::Dec(a), State::Dec(b)) => {
                a.sum = Dec::new(a.sum.get().wrapping_add(b.sum.get()));
                a.n += b.n;
            }
            (State::Multiset(a), State::Multiset(b)) => {
                for (v, c) in b.iter() {
                    a.add(v, c);
                }
            }
            (State::CountDistinct(a), State::CountDistinct(b)) => {
                for (v, c) in b.iter() {
                    a.add(v, c);
                }
            }
            (State::Extreme(_), State::Extreme(Some(v))) => self.state.add(spec, (0, 0), v),
            (State::Ends(_), State::Ends(entries)) => {
                for (k, v) in entries.iter() {
                    self.state.add(spec, *k, v);
                }
            }
            (State::Moments(a), State::Moments(b)) => {
                a.n += b.n;
                a.sum += b.sum;
                a.sumsq += b.sumsq;
            }
            _ => {}
        }
    }

    /// The aggregate over the rows added and not retracted.
    pub(crate) fn result(&self, spec: &AccSpec) -> Value {
        match &self.state {
            State::Distinct(d) => d.inner.result(spec),
            State::CountDistinct(seen) => Value::Int(seen.len() as i64),
            state => state.result(spec),
        }
    }
}

impl State {
    /// The aggregate this state holds (the inner state of a DISTINCT accumulator, or a whole
    /// one's other than DISTINCT's).
    fn result(&self, spec: &AccSpec) -> Value {
        match self {
            State::Unkept => Value::Null,
            State::Count(n) => Value::Int(*n),
            State::Int { sum, n } => match spec.kind {
                _ if *n == 0 => Value::Null,
                AccKind::Avg(_, out) => avg(*sum as i128, 0, *n, out),
                _ => Value::Int(*sum),
            },
            State::Float { sum, n } => match spec.kind {
                _ if *n == 0 => Value::Null,
                AccKind::Avg(_, out) => {
                    let a = sum / *n as f64;
                    match out {
                        AvgOut::Int => Value::Int(a as i64),
                        AvgOut::Float => Value::Float(a),
                        AvgOut::Decimal { scale } => {
                            let scaled = a * 10f64.powi(scale as i32);
                            if scaled.is_finite() {
                                Value::Decimal(Dec::new(scaled.round() as i128))
                            } else {
                                Value::Null
                            }
                        }
                    }
                }
                _ => Value::Float(*sum),
            },
            State::Dec(d) => dec_result(spec, d.sum, d.n),
            State::Multiset(m) => {
                let e = if spec.kind == AccKind::Min {
                    m.first()
                } else {
                    m.last()
                };
                e.map_or(Value::Null, Value::clone)
            }
            State::Extreme(v) => v.as_deref().cloned().unwrap_or(Value::Null),
            State::Ends(entries) => {
                let e = if spec.kind == AccKind::FirstValue {
                    entries.front()
                } else {
                    entries.back()
                };
                e.map_or(Value::Null, |(_, v)| v.clone())
            }
            State::Moments(sums) => {
                let Sums { n, sum, sumsq } = &**sums;
                let AccKind::Moment(m) = spec.kind else {
                    return Value::Null;
                };
                let sample = matches!(m, Moment::VarSamp | Moment::StddevSamp);
                if *n == 0 || (sample && *n == 1) {
                    return Value::Null;
                }
                // Flink's reduction: (Σx² − (Σx)²/n) / n (or n − 1).
                let n = *n as f64;
                let divisor = if sample { n - 1.0 } else { n };
                let var = ((sumsq - sum * sum / n) / divisor).max(0.0);
                Value::Float(match m {
                    Moment::VarPop | Moment::VarSamp => var,
                    Moment::StddevPop | Moment::StddevSamp => var.sqrt(),
                })
            }
            // `state` is the inner state of a DISTINCT accumulator, never another one.
            State::Distinct(_) | State::CountDistinct(_) => Value::Null,
        }
    }
}

impl State {
    #[inline]
    fn add(&mut self, spec: &AccSpec, key: RowKey, v: &Value) {
        match self {
            State::Unkept => {}
            State::Count(n) => *n += 1,
            State::Int { sum, n } => {
                if let Value::Int(x) = v {
                    *sum = sum.wrapping_add(*x);
                    *n += 1;
                }
            }
            State::Float { sum, n } => {
                if let Some(x) = as_f64(v) {
                    *sum += x;
                    *n += 1;
                }
            }
            State::Dec(d) => {
                if let Value::Decimal(x) = v {
                    d.sum = Dec::new(d.sum.get().wrapping_add(x.get()));
                    d.n += 1;
                }
            }
            State::Multiset(m) => {
                m.add(v, 1);
            }
            State::Extreme(cur) => {
                let replace = match cur.as_deref() {
                    None => true,
                    Some(c) if spec.kind == AccKind::Min => v < c,
                    Some(c) => v > c,
                };
                if replace {
                    *cur = Some(Box::new(v.clone()));
                }
            }
            State::Ends(entries) => {
                if !spec.bounded {
                    // Unbounded: only the first (or last) value can ever be the result.
                    let keep = match entries.front() {
                        None => true,
                        Some((k, _)) if spec.kind == AccKind::FirstValue => key < *k,
                        Some((k, _)) => key > *k,
                    };
                    if keep {
                        entries.clear();
                        entries.push_back((key, v.clone()));
                    }
                } else if entries.back().is_none_or(|(k, _)| *k < key) {
                    entries.push_back((key, v.clone()));
                } else {
                    // An out-of-order row (arrival mode): insert at its place.
                    let at = entries.partition_point(|(k, _)| *k < key);
                    entries.insert(at, (key, v.clone()));
                }
            }
            State::Moments(m) => {
                if let Some(x) = as_f64(v) {
                    m.n += 1;
                    m.sum += x;
                    m.sumsq += x * x;
                }
            }
            State::Distinct(d) => d.inner.add(spec, key, v),
            State::CountDistinct(seen) => {
                seen.add(v, 1);
            }
        }
    }

    #[inline]
    fn retract(&mut self, _spec: &AccSpec, key: RowKey, v: &Value) {
        match self {
            State::Unkept => {}
            State::Count(n) => *n -= 1,
            State::Int { sum, n } => {
                if let Value::Int(x) = v {
                    *sum = sum.wrapping_sub(*x);
                    *n -= 1;
                }
            }
            State::Float { sum, n } => {
                if let Some(x) = as_f64(v) {
                    *sum -= x;
                    *n -= 1;
                    if *n == 0 {
                        // Drop the rounding residue of add/subtract: an empty sum restarts at 0.
                        *sum = 0.0;
                    }
                }
            }
            State::Dec(d) => {
                if let Value::Decimal(x) = v {
                    d.sum = Dec::new(d.sum.get().wrapping_sub(x.get()));
                    d.n -= 1;
                }
            }
            State::Multiset(m) => {
                m.retract(v);
            }
            // Unbounded frames never retract.
            State::Extreme(_) => {}
            State::Ends(entries) => {
                if entries.front().is_some_and(|(k, _)| *k == key) {
                    entries.pop_front();
                } else if let Ok(at) = entries.binary_search_by(|(k, _)| k.cmp(&key)) {
                    entries.remove(at);
                }
            }
            State::Moments(m) => {
                if let Some(x) = as_f64(v) {
                    m.n -= 1;
                    m.sum -= x;
                    m.sumsq -= x * x;
                    if m.n == 0 {
                        m.sum = 0.0;
                        m.sumsq = 0.0;
                    }
                }
            }
            State::Distinct(d) => d.inner.retract(_spec, key, v),
            State::CountDistinct(seen) => {
                seen.retract(v);
            }
        }
    }
}

/// Reads what `State::encode` wrote for a [`ValueCounts`]: values in strictly increasing order
/// with non-zero counts (anything else is damaged state).
/// A DISTINCT accumulator's values, in value order, so equal state gives equal bytes.
fn encode_distinct(seen: &ValueCounts, w: &mut StateWriter) {
    w.u8(8);
    w.count(seen.len());
    for (v, c) in seen.iter() {
        v.encode(w);
        w.u32(c);
    }
}

fn decode_counts(r: &mut StateReader<'_>) -> Result<ValueCounts, StateError> {
    let mut counts = ValueCounts::default();
    for _ in 0..r.count()? {
        let v = Value::decode(r)?;
        let c = r.u32()?;
        if c == 0 || counts.last().is_some_and(|last| *last >= v) {
            return Err(StateError(format!(
                "counted values out of order or with count 0 at {v:?}"
            )));
        }
        counts.add(&v, c);
    }
    Ok(counts)
}

#[inline]
fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Float(f) => Some(*f),
        Value::Int(i) => Some(*i as f64),
        _ => None,
    }
}

/// A decimal SUM or AVG of `n` values summing to `sum`.
fn dec_result(spec: &AccSpec, sum: Dec, n: i64) -> Value {
    match spec.kind {
        _ if n == 0 => Value::Null,
        AccKind::Avg(Domain::Decimal { scale }, out) => avg(sum.get(), scale, n, out),
        _ => Value::Decimal(sum),
    }
}

/// AVG of `n` values summing to `sum` (unscaled at `scale`), in the output type.
fn avg(sum: i128, scale: i8, n: i64, out: AvgOut) -> Value {
    match out {
        AvgOut::Int => {
            let per = pow10(scale.max(0) as u32).unwrap_or(1);
            Value::Int((sum / (n as i128 * per)) as i64)
        }
        AvgOut::Float => Value::Float(sum as f64 / 10f64.powi(scale as i32) / n as f64),
        AvgOut::Decimal { scale: to } => match divide_half_up(sum, scale, n, to) {
            Some(v) => Value::Decimal(Dec::new(v)),
            None => Value::Null,
        },
    }
}

fn pow10(e: u32) -> Option<i128> {
    10i128.checked_pow(e)
}

/// `num / 10^from / den` as an unscaled value at scale `to`, rounded half up (away from zero);
/// `None` on overflow.
fn divide_half_up(num: i128, from: i8, den: i64, to: i8) -> Option<i128> {
    let diff = to as i32 - from as i32;
    let (num, den) = if diff >= 0 {
        (num.checked_mul(pow10(diff as u32)?)?, den as i128)
    } else {
        (num, (den as i128).checked_mul(pow10((-diff) as u32)?)?)
    };
    if den == 0 {
        return None;
    }
    let q = num / den;
    let r = num % den;
    Some(if r.unsigned_abs() * 2 >= den.unsigned_abs() {
        q + num.signum() * den.signum()
    } else {
        q
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_accumulator_fits_in_24_bytes() {
        // Per key and aggregate in every OVER partition and window slice: keep it small.
        assert_eq!(std::mem::size_of::<Accumulator>(), 24);
    }

    fn spec(kind: AccKind, bounded: bool) -> AccSpec {
        AccSpec {
            kind,
            distinct: false,
            bounded,
        }
    }

    fn f(x: f64) -> Value {
        Value::Float(x)
    }

    fn run(spec: &AccSpec, adds: &[Value]) -> Accumulator {
        let mut acc = spec.new_acc();
        for (i, v) in adds.iter().enumerate() {
            acc.add(spec, (i as i64, i as u64), v);
        }
        acc
    }

    #[test]
    fn moments_match_flinks_digits() {
        // ROWS 2 PRECEDING over 1, 2, 4, 8, 16, NULL (Flink 2.3).
        let pop = spec(AccKind::Moment(Moment::StddevPop), true);
        let samp = spec(AccKind::Moment(Moment::VarSamp), true);
        let values = [f(1.0), f(2.0), f(4.0), f(8.0), f(16.0), Value::Null];
        let mut a = pop.new_acc();
        let mut b = samp.new_acc();
        let mut got = Vec::new();
        for (i, v) in values.iter().enumerate() {
            a.add(&pop, (i as i64, i as u64), v);
            b.add(&samp, (i as i64, i as u64), v);
            if i >= 3 {
                let old = &values[i - 3];
                a.retract(&pop, ((i - 3) as i64, (i - 3) as u64), old);
                b.retract(&samp, ((i - 3) as i64, (i - 3) as u64), old);
            }
            got.push((a.result(&pop), b.result(&samp)));
        }
        assert_eq!(
            got,
            vec![
                (f(0.0), Value::Null),
                (f(0.5), f(0.5)),
                (f(1.2472191289246473), f(2.333333333333334)),
                (f(2.4944382578492945), f(9.333333333333336)),
                (f(4.988876515698589), f(37.33333333333334)),
                (f(4.0), f(32.0)),
            ]
        );
    }

    #[test]
    fn integer_avg_truncates_toward_zero() {
        let s = spec(AccKind::Avg(Domain::Int, AvgOut::Int), false);
        let acc = run(&s, &[Value::Int(-7), Value::Int(2)]);
        assert_eq!(acc.result(&s), Value::Int(-2));
        let fl = spec(AccKind::Avg(Domain::Int, AvgOut::Float), false);
        assert_eq!(
            run(&fl, &[Value::Int(1), Value::Int(2)]).result(&fl),
            f(1.5)
        );
    }

    #[test]
    fn decimal_avg_rounds_half_up_at_the_output_scale() {
        // AVG of 1.00, 2.00, 2.00 (scale 2) = 1.666666666... → DECIMAL(38, 6) 1.666667.
        let s = spec(
            AccKind::Avg(Domain::Decimal { scale: 2 }, AvgOut::Decimal { scale: 6 }),
            false,
        );
        let d = |v| Value::Decimal(Dec::new(v));
        assert_eq!(run(&s, &[d(100), d(200), d(200)]).result(&s), d(1_666_667));
        assert_eq!(
            run(&s, &[d(-100), d(-200), d(-200)]).result(&s),
            d(-1_666_667)
        );
        let sum = spec(AccKind::Sum(Domain::Decimal { scale: 2 }), false);
        assert_eq!(
            run(&sum, &[d(100), Value::Null, d(250)]).result(&sum),
            d(350)
        );
    }

    #[test]
    fn sums_are_null_without_values_and_wrap_on_overflow() {
        let s = spec(AccKind::Sum(Domain::Int), true);
        let mut acc = run(&s, &[Value::Null]);
        assert_eq!(acc.result(&s), Value::Null);
        acc.add(&s, (5, 5), &Value::Int(i64::MAX));
        acc.add(&s, (6, 6), &Value::Int(1));
        assert_eq!(acc.result(&s), Value::Int(i64::MIN));
        acc.retract(&s, (5, 5), &Value::Int(i64::MAX));
        acc.retract(&s, (6, 6), &Value::Int(1));
        assert_eq!(acc.result(&s), Value::Null);
    }

    #[test]
    fn distinct_counts_values_until_their_last_copy_leaves() {
        let s = AccSpec {
            kind: AccKind::Count,
            distinct: true,
            bounded: true,
        };
        let mut acc = run(&s, &[f(1.0), f(1.0), f(2.0), Value::Null]);
        assert_eq!(acc.result(&s), Value::Int(2));
        acc.retract(&s, (0, 0), &f(1.0));
        assert_eq!(acc.result(&s), Value::Int(2));
        acc.retract(&s, (1, 1), &f(1.0));
        assert_eq!(acc.result(&s), Value::Int(1));
        let sum = AccSpec {
            kind: AccKind::Sum(Domain::Float),
            distinct: true,
            bounded: false,
        };
        assert_eq!(run(&sum, &[f(3.0), f(3.0), f(4.0)]).result(&sum), f(7.0));
    }

    #[test]
    fn count_distinct_checkpoints_as_a_distinct_count_and_refuses_a_wrong_count() {
        let s = AccSpec {
            kind: AccKind::Count,
            distinct: true,
            bounded: true,
        };
        let acc = run(&s, &[f(1.0), f(2.0), f(1.0)]);
        let mut w = StateWriter::default();
        acc.encode(&mut w);
        let bytes = w.into_bytes();
        // The bytes a boxed DISTINCT over a COUNT of 2 wrote before COUNT(DISTINCT) had its own
        // state: old checkpoints restore, and new ones are the same.
        let mut old = StateWriter::default();
        State::Distinct(Box::new(Distinct {
            seen: acc_values(&[f(1.0), f(1.0), f(2.0)]),
            inner: State::Count(2),
        }))
        .encode(&mut old);
        assert_eq!(bytes, old.into_bytes());
        let mut back = Accumulator::decode(&mut StateReader::new(&bytes)).expect("decodes");
        assert_eq!(back.result(&s), Value::Int(2));
        back.retract(&s, (1, 1), &f(2.0));
        assert_eq!(back.result(&s), Value::Int(1));

        let mut wrong = StateWriter::default();
        State::Distinct(Box::new(Distinct {
            seen: acc_values(&[f(1.0)]),
            inner: State::Count(3),
        }))
        .encode(&mut wrong);
        let err = Accumulator::decode(&mut StateReader::new(&wrong.into_bytes()));
        assert!(
            err.is_err(),
            "a count that is not the number of values is refused"
        );
    }

    fn acc_values(values: &[Value]) -> ValueCounts {
        let mut counts = ValueCounts::default();
        for v in values {
            counts.add(v, 1);
        }
        counts
    }

    #[test]
    fn first_and_last_value_skip_nulls_and_follow_retraction() {
        let first = spec(AccKind::FirstValue, true);
        let last = spec(AccKind::LastValue, true);
        let values = [f(16.0), Value::Null];
        assert_eq!(run(&last, &values).result(&last), f(16.0));
        let mut acc = run(&first, &[Value::Null, f(2.0), f(3.0)]);
        assert_eq!(acc.result(&first), f(2.0));
        acc.retract(&first, (0, 0), &Value::Null);
        acc.retract(&first, (1, 1), &f(2.0));
        assert_eq!(acc.result(&first), f(3.0));
        // An older row arriving late becomes the first value.
        acc.add(&first, (-1, 9), &f(9.0));
        assert_eq!(acc.result(&first), f(9.0));
        // Unbounded frames keep one value.
        let unb = spec(AccKind::FirstValue, false);
        let mut acc = run(&unb, &[f(5.0), f(6.0)]);
        acc.add(&unb, (-1, 7), &f(4.0));
        assert_eq!(acc.result(&unb), f(4.0));
    }

    #[test]
    fn sliding_min_max_survive_duplicates() {
        let min = spec(AccKind::Min, true);
        let mut acc = run(&min, &[f(1.0), f(1.0), f(3.0)]);
        acc.retract(&min, (0, 0), &f(1.0));
        assert_eq!(acc.result(&min), f(1.0));
        acc.retract(&min, (1, 1), &f(1.0));
        assert_eq!(acc.result(&min), f(3.0));
        acc.retract(&min, (2, 2), &f(3.0));
        assert_eq!(acc.result(&min), Value::Null);
    }
}
