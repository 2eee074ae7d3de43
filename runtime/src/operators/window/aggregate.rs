//! Window aggregation: one row per (window, key), emitted when the watermark passes the window.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow::datatypes::{DataType as ArrowType, Schema as ArrowSchema, SchemaRef};
use fsql_plan::{GroupColumn, WindowAggregateSpec, WindowKind};

use super::session::{Session, Sessions};
use super::sliced::SlicedState;
use super::{Slicing, event_millis, millis_array};
use crate::compiled::ExprGroup;
use crate::error::RuntimeError;
use crate::operator::{Event, LateRows, Operator};
use crate::operators::agg::accumulator::{AccSpec, Accumulator};
use crate::operators::agg::accumulator_for;
use crate::operators::agg::key::{FxBuild, KeyEncoder, group_key_type};
use crate::operators::agg::value::{Repr, Value, ValueColumn, ValueType, build_array};
use crate::state::codec::{StateError, StateReader, StateWriter};
use crate::state::{KeyedState, StateBackend, ValueCodec};

/// Rows per output batch at most.
const MAX_OUTPUT_ROWS: usize = 64 * 1024;

/// One aggregate call.
struct AggSlot {
    spec: AccSpec,
    /// The argument and how it is read (`None` for `COUNT(*)`).
    arg: Option<(fsql_plan::Expr, Repr)>,
    filter: Option<fsql_plan::Expr>,
    result: ValueType,
    target: ArrowType,
}

/// The accumulators of one group key in one session.
struct Group {
    /// The key's id in the operator's [`GroupKeys`].
    key: u32,
    accs: Vec<Accumulator>,
}

/// A session's groups, in first-seen order.
#[derive(Default)]
struct Groups {
    /// Group key id → position in `groups`.
    index: HashMap<u32, u32, FxBuild>,
    groups: Vec<Group>,
}

impl Groups {
    /// Adds `other`'s groups (another session of the same partition): a group key both hold
    /// merges its accumulators, and `keys` counts one session fewer holding it.
    fn merge(&mut self, other: Groups, aggs: &[AggSlot], keys: &mut GroupKeys) {
        for theirs in other.groups {
            match self.index.get(&theirs.key) {
                Some(&i) => {
                    if let Some(mine) = self.groups.get_mut(i as usize) {
                        for ((acc, other), a) in mine.accs.iter_mut().zip(&theirs.accs).zip(aggs) {
                            acc.merge(&a.spec, other);
                        }
                    }
                    keys.release(theirs.key);
                }
                None => {
                    self.index.insert(theirs.key, self.groups.len() as u32);
                    self.groups.push(theirs);
                }
            }
        }
    }

    /// The group of key id `key`, made by `make` (and counted in `keys`) when the session has
    /// none yet.
    fn entry(
        &mut self,
        key: u32,
        keys: &mut GroupKeys,
        make: impl FnOnce() -> Vec<Accumulator>,
    ) -> &mut Group {
        let i = match self.index.get(&key) {
            Some(&i) => i as usize,
            None => {
                keys.hold(key);
                self.index.insert(key, self.groups.len() as u32);
                self.groups.push(Group { key, accs: make() });
                self.groups.len() - 1
            }
        };
        &mut self.groups[i]
    }

    /// Writes the groups (key id and accumulators) in first-seen order; the index follows.
    fn encode(&self, w: &mut StateWriter) {
        w.count(self.groups.len());
        for g in &self.groups {
            w.u32(g.key);
            for acc in &g.accs {
                acc.encode(w);
            }
        }
    }

    /// Reads what [`Groups::encode`] wrote, each group with `width` accumulators.
    fn decode(r: &mut StateReader<'_>, width: usize) -> Result<Groups, StateError> {
        Groups::decode_with(r, width, |r| r.u32())
    }

    /// Reads groups of `width` accumulators, each key read by `key`: an id, or (layout 2) the
    /// key bytes, which the caller numbers.
    fn decode_with(
        r: &mut StateReader<'_>,
        width: usize,
        mut key: impl FnMut(&mut StateReader<'_>) -> Result<u32, StateError>,
    ) -> Result<Groups, StateError> {
        let mut groups = Groups::default();
        for i in 0..r.count()? {
            let key = key(r)?;
            let mut accs = Vec::with_capacity(width);
            for _ in 0..width {
                accs.push(Accumulator::decode(r)?);
            }
            if groups.index.insert(key, i as u32).is_some() {
                return Err(StateError("a session holds a group twice".into()));
            }
            groups.groups.push(Group { key, accs });
        }
        Ok(groups)
    }
}

/// The group keys of every session, each once, with the number of sessions holding it.
/// Sessions name their groups by id, so a session spilled to RocksDB holds no key bytes: the
/// keys stay in memory, as every table's keys do, and a checkpoint writes them as key columns.
#[derive(Default)]
struct GroupKeys(KeyedState<u32>);

impl GroupKeys {
    /// The id of `key`, numbered (held by no session yet) when new.
    fn id(&mut self, key: &[u8]) -> u32 {
        self.0.id_or_insert_with(key, || 0)
    }

    /// One more session holds key `id`.
    fn hold(&mut self, id: u32) {
        if let Some(n) = self.0.get_mut(id) {
            // Saturating: a count read from a checkpoint is not trusted to leave room.
            *n = n.saturating_add(1);
        }
    }

    /// One session fewer holds key `id`: the key goes with its last session.
    fn release(&mut self, id: u32) {
        if let Some(n) = self.0.get_mut(id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.0.remove(id);
            }
        }
    }

    /// Whether the sessions' groups (`payloads`, all of them) hold exactly the kept keys, each
    /// as many times as counted.
    fn check_held(&self, payloads: &mut dyn Iterator<Item = &Groups>) -> Result<(), StateError> {
        let mut held = vec![0u32; self.0.id_bound()];
        for g in payloads.flat_map(|p| p.groups.iter()) {
            match held.get_mut(g.key as usize) {
                Some(n) if self.0.contains_id(g.key) => *n += 1,
                _ => {
                    return Err(StateError(format!(
                        "a session holds unknown group key {}",
                        g.key
                    )));
                }
            }
        }
        for (id, &n) in self.0.values() {
            if held.get(id as usize) != Some(&n) {
                return Err(StateError(format!(
                    "group key {id} is counted {n} times, held {} times",
                    held.get(id as usize).copied().unwrap_or(0)
                )));
            }
        }
        Ok(())
    }

    /// The bytes of key `id`.
    fn key(&self, id: u32) -> Option<&[u8]> {
        self.0.contains_id(id).then(|| self.0.key(id))
    }
}

enum State {
    Sliced(SlicedState),
    /// Sessions per partition key, each grouping its rows by the group key.
    Session {
        sessions: Sessions<Groups>,
        partition: KeyEncoder,
        groups: GroupKeys,
    },
}

/// A result row before it becomes columns.
struct OutRow {
    start: i64,
    end: i64,
    /// The row-encoded key.
    key: Box<[u8]>,
    results: Vec<Value>,
}

/// The WindowAggregate operator.
pub struct WindowAggregate {
    name: String,
    schema: SchemaRef,
    input_width: usize,
    time: usize,
    group: Vec<GroupColumn>,
    keys: KeyEncoder,
    /// The key columns (input positions) with their value and output types.
    /// The key columns (input positions) with their output types.
    key_columns: Vec<(usize, ArrowType)>,
    aggs: Vec<AggSlot>,
    state: State,
    watermark: i64,
    seq: u64,
    late: LateRows,
    ready: Vec<OutRow>,
    /// Each aggregate's argument and FILTER (when it has them), in aggregate order.
    exprs: ExprGroup,
    /// Where sliced windows' keys live (kept for restores).
    backend: StateBackend,
}

impl WindowAggregate {
    /// A window aggregation over rows of `input`, producing `schema` (the group columns, then
    /// one column per aggregate), keeping sliced windows' keys in `backend`.
    pub fn new(
        name: &str,
        spec: &WindowAggregateSpec,
        input: &ArrowSchema,
        schema: SchemaRef,
        backend: &StateBackend,
    ) -> Result<WindowAggregate, RuntimeError> {
        let plan_err = |m: String| RuntimeError::Plan(format!("window node `{name}`: {m}"));
        let width = input.fields().len();
        let out = schema.fields();
        if out.len() != spec.group.len() + spec.aggregates.len() {
            return Err(plan_err(format!(
                "{} output columns for {} group columns and {} aggregates",
                out.len(),
                spec.group.len(),
                spec.aggregates.len()
            )));
        }
        if spec.time >= width {
            return Err(plan_err(format!(
                "time column ${} does not exist",
                spec.time
            )));
        }
        let mut key_columns = Vec::new();
        for (g, f) in spec.group.iter().zip(out.iter()) {
            if let GroupColumn::Key(c) = g {
                group_key_type(input, *c).map_err(plan_err)?;
                key_columns.push((*c, f.data_type().clone()));
            }
        }
        let mut aggs = Vec::new();
        for (a, f) in spec.aggregates.iter().zip(&out[spec.group.len()..]) {
            let plan = accumulator_for(a.function, &a.args, a.distinct, false, f.data_type())
                .map_err(plan_err)?;
            aggs.push(AggSlot {
                arg: match (plan.repr, a.args.first()) {
                    (Some(r), Some(e)) => Some((e.clone(), r)),
                    _ => None,
                },
                result: plan.spec.result_type(&plan.arg_type),
                spec: plan.spec,
                filter: a.filter.clone(),
                target: f.data_type().clone(),
            });
        }
        let state = match spec.window {
            WindowKind::Session { gap_ms } if gap_ms > 0 => {
                if let Some(c) = spec.partition.iter().find(|c| **c >= width) {
                    return Err(plan_err(format!("partition column ${c} does not exist")));
                }
                let width = aggs.len();
                State::Session {
                    sessions: Sessions::new(
                        gap_ms,
                        backend,
                        name,
                        ValueCodec {
                            encode: Box::new(|g: &Groups, w: &mut StateWriter| {
                                g.encode(w);
                                Ok(())
                            }),
                            decode: Box::new(move |r: &mut StateReader<'_>| {
                                Groups::decode(r, width)
                            }),
                        },
                    ),
                    partition: KeyEncoder::new(spec.partition.clone()),
                    groups: GroupKeys::default(),
                }
            }
            kind => State::Sliced(SlicedState::new(
                Slicing::of(&kind).ok_or_else(|| plan_err(format!("invalid window {kind:?}")))?,
                aggs.len(),
                backend,
                name,
            )),
        };
        let exprs = ExprGroup::new(
            aggs.iter()
                .flat_map(|a| {
                    let arg = a.arg.as_ref().map(|(e, _)| e.clone());
                    arg.into_iter().chain(a.filter.clone())
                })
                .collect(),
        );
        Ok(WindowAggregate {
            exprs,
            name: name.to_string(),
            schema,
            input_width: width,
            time: spec.time,
            group: spec.group.clone(),
            keys: KeyEncoder::new(key_columns.iter().map(|k| k.0).collect()),
            key_columns,
            aggs,
            state,
            watermark: i64::MIN,
            seq: 0,
            late: LateRows::default(),
            ready: Vec::new(),
            backend: backend.clone(),
        })
    }

    /// Keeps the backend's resident budget of keys in memory (see `KeyedState::settle`).
    fn settle(&mut self) -> Result<(), RuntimeError> {
        match &mut self.state {
            State::Sliced(state) => state.settle(),
            State::Session { sessions, .. } => sessions.settle(),
        }
        .map_err(|e| RuntimeError::backend(&self.name, e))
    }

    /// The same node with its arguments and FILTERs computed by compiled code where the JIT
    /// reaches.
    pub fn compiled(mut self, input: &ArrowSchema) -> WindowAggregate {
        self.exprs.compile(input);
        self
    }

    /// Slices (or sessions) holding state.
    pub fn live_windows(&self) -> usize {
        match &self.state {
            State::Sliced(state) => state.len(),
            State::Session { sessions, .. } => sessions.len(),
        }
    }

    fn arrow_err(&self, e: arrow::error::ArrowError) -> RuntimeError {
        RuntimeError::arrow(&self.name, e)
    }

    fn new_accs(aggs: &[AggSlot]) -> Vec<Accumulator> {
        aggs.iter().map(|a| a.spec.new_acc()).collect()
    }

    /// Fires windows ending at or before `w + 1` into `self.ready`, at most `MAX_OUTPUT_ROWS`
    /// rows of sliced windows at a time; returns whether more remain.
    fn fire(&mut self, w: i64) -> Result<bool, RuntimeError> {
        let aggs = &self.aggs;
        let ready = &mut self.ready;
        let results = |accs: &[Accumulator]| -> Vec<Value> {
            accs.iter()
                .zip(aggs)
                .map(|(acc, a)| acc.result(&a.spec))
                .collect()
        };
        match &mut self.state {
            State::Sliced(state) => Ok(state.fire(
                w,
                MAX_OUTPUT_ROWS,
                |into, from| {
                    for ((acc, other), a) in into.iter_mut().zip(from).zip(aggs) {
                        acc.merge(&a.spec, other);
                    }
                },
                |f| {
                    ready.push(OutRow {
                        start: f.start,
                        end: f.end,
                        results: results(f.accs),
                        key: f.key.into(),
                    })
                },
            )),
            State::Session {
                sessions, groups, ..
            } => {
                let mut unknown = None;
                sessions.fire(w, |s: Session<Groups>| {
                    for g in s.payload.groups {
                        let Some(key) = groups.key(g.key) else {
                            unknown = Some(g.key);
                            continue;
                        };
                        ready.push(OutRow {
                            start: s.start,
                            end: s.end,
                            results: results(&g.accs),
                            key: key.into(),
                        });
                        groups.release(g.key);
                    }
                });
                if let Some(id) = unknown {
                    return Err(RuntimeError::backend(
                        &self.name,
                        StateError(format!("a session holds group key {id}, which is not kept")),
                    ));
                }
                Ok(false)
            }
        }
    }

    /// The output batch of `rows`.
    fn build(&self, rows: &[OutRow]) -> Result<RecordBatch, RuntimeError> {
        let err = |e| self.arrow_err(e);
        let fields = self.schema.fields();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(fields.len());
        let keys: Vec<&[u8]> = rows.iter().map(|r| &r.key[..]).collect();
        let decoded = if self.key_columns.is_empty() {
            vec![]
        } else {
            self.keys.decode(&keys).map_err(err)?
        };
        let mut k = 0;
        for (g, f) in self.group.iter().zip(fields.iter()) {
            let t = f.data_type();
            let col = match g {
                GroupColumn::WindowStart => {
                    millis_array(rows.iter().map(|r| r.start).collect(), t).map_err(err)?
                }
                GroupColumn::WindowEnd => {
                    millis_array(rows.iter().map(|r| r.end).collect(), t).map_err(err)?
                }
                GroupColumn::WindowTime => {
                    millis_array(rows.iter().map(|r| r.end - 1).collect(), t).map_err(err)?
                }
                GroupColumn::Key(_) => {
                    let target = &self.key_columns[k].1;
                    let values = decoded.get(k).cloned().ok_or_else(|| {
                        RuntimeError::Plan(format!(
                            "window node `{}`: key column {k} missing",
                            self.name
                        ))
                    })?;
                    k += 1;
                    if values.data_type() == target {
                        values
                    } else {
                        arrow::compute::cast(&values, target).map_err(err)?
                    }
                }
            };
            columns.push(col);
        }
        for (j, a) in self.aggs.iter().enumerate() {
            let values: Vec<Value> = rows.iter().map(|r| r.results[j].clone()).collect();
            columns.push(build_array(&values, &a.result, &a.target).map_err(err)?);
        }
        RecordBatch::try_new(self.schema.clone(), columns).map_err(err)
    }
}

impl Operator for WindowAggregate {
    fn on_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        _out: &mut Vec<Event>,
    ) -> Result<(), RuntimeError> {
        if batch.num_columns() != self.input_width {
            return Err(RuntimeError::Plan(format!(
                "window node `{}` expects {} input columns but a batch has {}",
                self.name,
                self.input_width,
                batch.num_columns()
            )));
        }
        let eval = |e| RuntimeError::eval(&self.name, e);
        let ts = event_millis(batch.column(self.time)).map_err(|e| self.arrow_err(e))?;
        let keys = self.keys.encode(&batch).map_err(|e| self.arrow_err(e))?;
        let partition_keys = match &mut self.state {
            State::Session { partition, .. } => Some(
                partition
                    .encode(&batch)
                    .map_err(|e| RuntimeError::arrow(&self.name, e))?,
            ),
            State::Sliced(_) => None,
        };

        let mut args = Vec::with_capacity(self.aggs.len());
        let mut filters = Vec::with_capacity(self.aggs.len());
        let values = self.exprs.evaluate(&batch).map_err(eval)?;
        let mut values = values.into_iter();
        let missing = || {
            RuntimeError::Plan(format!(
                "window node `{}`: an aggregate argument was not computed",
                self.name
            ))
        };
        for a in &self.aggs {
            args.push(match &a.arg {
                Some((_, repr)) => {
                    let v = values.next().ok_or_else(missing)?;
                    Some(ValueColumn::new(&v, *repr).map_err(|e| self.arrow_err(e))?)
                }
                None => None,
            });
            filters.push(match &a.filter {
                Some(_) => {
                    let v = values.next().ok_or_else(missing)?;
                    let b = v
                        .as_any()
                        .downcast_ref::<BooleanArray>()
                        .cloned()
                        .ok_or_else(|| {
                            RuntimeError::Plan(format!(
                                "window node `{}`: a FILTER is not BOOLEAN",
                                self.name
                            ))
                        })?;
                    Some(b)
                }
                None => None,
            });
        }
        let mut late = Vec::new();
        let aggs = &self.aggs;
        let update = |accs: &mut [Accumulator], i: usize, seq: u64| {
            for (j, a) in aggs.iter().enumerate() {
                if filters[j]
                    .as_ref()
                    .is_some_and(|f| f.is_null(i) || !f.value(i))
                {
                    continue;
                }
                let v = args[j].as_ref().map_or(Value::Null, |c| c.get(i));
                accs[j].add(&a.spec, (0, seq), &v);
            }
        };
        for i in 0..batch.num_rows() {
            if ts.is_null(i) {
                late.push(i as u32);
                continue;
            }
            let t = ts.value(i);
            let seq = self.seq;
            self.seq += 1;
            match &mut self.state {
                State::Sliced(state) => {
                    let se = state.slice_end(t);
                    if se - 1 <= self.watermark {
                        late.push(i as u32);
                        continue;
                    }
                    // None: between HOP windows (size < slide), in no window.
                    if let Some(accs) = state.accumulators(se, keys.key(i), || Self::new_accs(aggs))
                    {
                        update(accs, i, seq);
                    }
                }
                State::Session {
                    sessions,
                    groups: group_keys,
                    ..
                } => {
                    let groups = sessions.add(
                        partition_keys.as_ref().map_or(&[][..], |k| k.key(i)),
                        t,
                        self.watermark,
                        Groups::default,
                        |into, from| into.merge(from, aggs, group_keys),
                    );
                    let Some(groups) = groups else {
                        late.push(i as u32);
                        continue;
                    };
                    let key = group_keys.id(keys.key(i));
                    let g = groups.entry(key, group_keys, || Self::new_accs(aggs));
                    update(&mut g.accs, i, seq);
                }
            }
        }
        self.late.keep(&self.name, &batch, late)?;
        self.settle()
    }

    fn on_watermark(&mut self, w: i64, out: &mut Vec<Event>) -> Result<(), RuntimeError> {
        if w > self.watermark {
            self.watermark = w;
            loop {
                let more = self.fire(w)?;
                let ready = std::mem::take(&mut self.ready);
                for chunk in ready.chunks(MAX_OUTPUT_ROWS) {
                    out.push(Event::Batch(self.build(chunk)?));
                }
                if !more {
                    break;
                }
            }
        }
        out.push(Event::Watermark(w));
        self.settle()
    }

    fn late_rows(&self) -> u64 {
        self.late.count()
    }

    fn take_late(&mut self) -> Option<RecordBatch> {
        self.late.take()
    }

    /// The watermark, the arrival counter (FIRST/LAST_VALUE order rows by it), and the slices
    /// with their keys, or the group keys with the number of sessions holding each and the
    /// sessions; the keys also as key columns (see [`KeyEncoder::snapshot_keys`]). Results are
    /// emitted within `on_watermark`, so none wait.
    fn snapshot(&mut self, w: &mut StateWriter) -> Result<bool, RuntimeError> {
        let err = |e| RuntimeError::state(&self.name, e);
        w.u32(WINDOW_AGGREGATE_STATE_LAYOUT);
        w.i64(self.watermark);
        w.u64(self.seq);
        match &mut self.state {
            State::Sliced(state) => {
                state.snapshot(w).map_err(err)?;
                let keys: Vec<&[u8]> = state.keys().collect();
                self.keys.snapshot_keys(&keys, w).map_err(err)?;
            }
            State::Session {
                sessions, groups, ..
            } => {
                groups
                    .0
                    .snapshot(w, |n, w| {
                        w.u32(*n);
                        Ok(())
                    })
                    .map_err(err)?;
                let keys: Vec<&[u8]> = groups.0.keys().collect();
                self.keys.snapshot_keys(&keys, w).map_err(err)?;
                sessions.snapshot(w).map_err(err)?;
            }
        }
        Ok(true)
    }

    fn restore(&mut self, r: &mut StateReader<'_>) -> Result<(), RuntimeError> {
        let name = &self.name;
        let err = |e| RuntimeError::state(name, e);
        let layout = r.u32().map_err(err)?;
        if !(1..=WINDOW_AGGREGATE_STATE_LAYOUT).contains(&layout) {
            return Err(err(StateError(format!(
                "window aggregation state has layout {layout}, this fsql reads layouts 1 to {WINDOW_AGGREGATE_STATE_LAYOUT}"
            ))));
        }
        self.watermark = r.i64().map_err(err)?;
        self.seq = r.u64().map_err(err)?;
        let width = self.aggs.len();
        match &mut self.state {
            State::Sliced(state) => {
                state.restore(r, layout, &self.backend, name).map_err(err)?;
                self.keys.restore_keys(r, state.keys()).map_err(err)
            }
            State::Session {
                sessions, groups, ..
            } if layout < 3 => {
                // Layouts 1 and 2: each group with its key's bytes, the keys as key columns last.
                let mut table = GroupKeys::default();
                let mut order = Vec::new();
                sessions
                    .restore_layout_1(r, |r| {
                        Groups::decode_with(r, width, |r| {
                            let id = table.id(r.bytes()?);
                            table.hold(id);
                            order.push(id);
                            Ok(id)
                        })
                    })
                    .map_err(err)?;
                let keys = order.iter().filter_map(|&id| table.key(id));
                self.keys.restore_keys(r, keys).map_err(err)?;
                *groups = table;
                Ok(())
            }
            State::Session {
                sessions, groups, ..
            } => {
                let table = KeyedState::restore(r, |r| match r.u32()? {
                    0 => Err(StateError("a group key no session holds".into())),
                    n => Ok(n),
                })
                .map_err(err)?;
                self.keys.restore_keys(r, table.keys()).map_err(err)?;
                let table = GroupKeys(table);
                sessions
                    .restore(r, |payloads| table.check_held(payloads))
                    .map_err(err)?;
                *groups = table;
                Ok(())
            }
        }
    }
}

/// The layout of a window aggregation's checkpoint state (bumped when it changes): 2 stores
/// sliced windows key-major (`SlicedState::snapshot`); 3 numbers sessions' group keys
/// ([`GroupKeys`]) and may leave the sessions in RocksDB (sliced windows as in 2).
const WINDOW_AGGREGATE_STATE_LAYOUT: u32 = 3;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{Field, TimeUnit};
    use fsql_plan::{AggregateFunction, DataType, GroupAggregate};

    use super::*;

    const MIN: i64 = 60_000;

    fn input_schema() -> Arc<ArrowSchema> {
        Arc::new(ArrowSchema::new(vec![
            Field::new("k", ArrowType::Utf8, true),
            Field::new(
                "ts",
                ArrowType::Timestamp(TimeUnit::Millisecond, None),
                true,
            ),
        ]))
    }

    fn batch(rows: &[(&str, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            input_schema(),
            vec![
                Arc::new(StringArray::from(
                    rows.iter().map(|r| Some(r.0)).collect::<Vec<_>>(),
                )),
                Arc::new(TimestampMillisecondArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    /// TUMBLE(10 min) counting rows per key.
    fn tumble_count() -> WindowAggregate {
        let spec = WindowAggregateSpec {
            window: WindowKind::Tumble {
                size_ms: 10 * MIN,
                offset_ms: 0,
            },
            time: 1,
            partition: vec![],
            group: vec![
                GroupColumn::Key(0),
                GroupColumn::WindowStart,
                GroupColumn::WindowEnd,
            ],
            aggregates: vec![GroupAggregate {
                function: AggregateFunction::Count,
                args: vec![],
                distinct: false,
                filter: None,
                data_type: DataType::BigInt,
            }],
        };
        let ts = ArrowType::Timestamp(TimeUnit::Millisecond, None);
        let out = Arc::new(ArrowSchema::new(vec![
            Field::new("k", ArrowType::Utf8, true),
            Field::new("window_start", ts.clone(), false),
            Field::new("window_end", ts, false),
            Field::new("n", ArrowType::Int64, false),
        ]));
        WindowAggregate::new("w", &spec, &input_schema(), out, &StateBackend::memory()).unwrap()
    }

    fn rows(events: &[Event]) -> Vec<(String, i64, i64)> {
        let mut out = Vec::new();
        for e in events {
            if let Event::Batch(b) = e {
                let k = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
                let start = b
                    .column(1)
                    .as_any()
                    .downcast_ref::<TimestampMillisecondArray>()
                    .unwrap();
                let n = b.column(3).as_any().downcast_ref::<Int64Array>().unwrap();
                for i in 0..b.num_rows() {
                    out.push((k.value(i).to_string(), start.value(i), n.value(i)));
                }
            }
        }
        out
    }

    #[test]
    fn a_window_fires_once_the_watermark_reaches_its_end_and_later_rows_for_it_are_late() {
        let mut op = tumble_count();
        let mut out = Vec::new();
        op.on_batch(
            0,
            batch(&[("a", MIN), ("b", 2 * MIN), ("a", 9 * MIN), ("a", 11 * MIN)]),
            &mut out,
        )
        .unwrap();
        // One millisecond short of the end: nothing yet.
        op.on_watermark(10 * MIN - 2, &mut out).unwrap();
        assert!(rows(&out).is_empty());
        op.on_watermark(10 * MIN - 1, &mut out).unwrap();
        assert_eq!(rows(&out), vec![("a".into(), 0, 2), ("b".into(), 0, 1)]);
        // A row of the fired window is late: counted and kept for the late-data output; a row of
        // the open window is not.
        out.clear();
        op.on_batch(0, batch(&[("b", 5 * MIN), ("b", 10 * MIN)]), &mut out)
            .unwrap();
        assert_eq!(op.late_rows(), 1);
        assert_eq!(op.take_late().map(|b| b.num_rows()), Some(1));
        assert_eq!(op.live_windows(), 1, "the fired slice was freed");
        op.on_watermark(i64::MAX, &mut out).unwrap();
        assert_eq!(
            rows(&out),
            vec![("a".into(), 10 * MIN, 1), ("b".into(), 10 * MIN, 1)]
        );
        assert_eq!(op.live_windows(), 0);
    }

    fn valued_schema() -> Arc<ArrowSchema> {
        Arc::new(ArrowSchema::new(vec![
            Field::new("k", ArrowType::Utf8, true),
            Field::new("v", ArrowType::Int64, true),
            Field::new(
                "ts",
                ArrowType::Timestamp(TimeUnit::Millisecond, None),
                true,
            ),
        ]))
    }

    /// Rows of (k, v, ts in minutes).
    fn valued(rows: &[(&str, Option<i64>, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            valued_schema(),
            vec![
                Arc::new(StringArray::from(
                    rows.iter().map(|r| Some(r.0)).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
                Arc::new(TimestampMillisecondArray::from(
                    rows.iter().map(|r| r.2 * MIN).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    /// `window` over (k, v, ts), grouped by k (sessions partitioned by `partition`): COUNT(*),
    /// COUNT(*) FILTER (WHERE v > 2), SUM, MAX, COUNT(DISTINCT), FIRST_VALUE and LAST_VALUE of v.
    fn windowed(window: WindowKind, partition: Vec<usize>) -> WindowAggregate {
        windowed_in(window, partition, &StateBackend::memory())
    }

    /// [`windowed`], keeping its keys' slices or sessions in `backend`.
    fn windowed_in(
        window: WindowKind,
        partition: Vec<usize>,
        backend: &StateBackend,
    ) -> WindowAggregate {
        use crate::testkit::{bin, col, lit};
        use fsql_plan::{BinaryOp, Literal};
        let v = || col(1, DataType::BigInt);
        let agg = |function, args: Vec<fsql_plan::Expr>, distinct| GroupAggregate {
            function,
            args,
            distinct,
            filter: None,
            data_type: DataType::BigInt,
        };
        let mut filtered = agg(AggregateFunction::Count, vec![], false);
        filtered.filter = Some(bin(
            BinaryOp::Gt,
            v(),
            lit(Literal::Int(2), DataType::BigInt),
            DataType::Boolean,
        ));
        let aggregates = vec![
            agg(AggregateFunction::Count, vec![], false),
            filtered,
            agg(AggregateFunction::Sum, vec![v()], false),
            agg(AggregateFunction::Max, vec![v()], false),
            agg(AggregateFunction::Count, vec![v()], true),
            agg(AggregateFunction::FirstValue, vec![v()], false),
            agg(AggregateFunction::LastValue, vec![v()], false),
        ];
        let ts = ArrowType::Timestamp(TimeUnit::Millisecond, None);
        let mut fields = vec![
            Field::new("k", ArrowType::Utf8, true),
            Field::new("window_start", ts.clone(), false),
            Field::new("window_end", ts, false),
        ];
        for i in 0..aggregates.len() {
            fields.push(Field::new(format!("a{i}"), ArrowType::Int64, true));
        }
        let spec = WindowAggregateSpec {
            window,
            time: 2,
            partition,
            group: vec![
                GroupColumn::Key(0),
                GroupColumn::WindowStart,
                GroupColumn::WindowEnd,
            ],
            aggregates,
        };
        let out = Arc::new(ArrowSchema::new(fields));
        WindowAggregate::new("w", &spec, &valued_schema(), out, backend).unwrap()
    }

    /// Out-of-order rows of several keys, with late rows and NULLs, and watermarks between.
    fn restore_steps() -> Vec<crate::testkit::Step> {
        use crate::testkit::Step;
        vec![
            Step::Batch(
                0,
                valued(&[("a", Some(1), 1), ("b", Some(2), 3), ("a", Some(3), 12)]),
            ),
            Step::Batch(
                0,
                valued(&[("a", None, 4), ("c", Some(5), 7), ("b", Some(2), 2)]),
            ),
            Step::Watermark(4 * MIN),
            Step::Batch(
                0,
                valued(&[("b", Some(7), 13), ("a", Some(1), 8), ("c", Some(9), 31)]),
            ),
            Step::Watermark(11 * MIN),
            // Late for TUMBLE and CUMULATE's first window, not for every window kind.
            Step::Batch(
                0,
                valued(&[("a", Some(4), 5), ("b", Some(6), 14), ("d", Some(3), 9)]),
            ),
            Step::Batch(
                0,
                valued(&[("a", Some(2), 11), ("a", Some(8), 26), ("d", None, 27)]),
            ),
            Step::Watermark(20 * MIN),
            Step::Batch(
                0,
                valued(&[("c", Some(1), 33), ("b", Some(4), 21), ("a", Some(6), 24)]),
            ),
            Step::Watermark(i64::MAX),
        ]
    }

    /// TUMBLE, HOP, CUMULATE and SESSION (global and per key) over out-of-order rows of several
    /// keys, with late rows and NULLs: checkpointed after any step and restored, the operator
    /// emits exactly what the uninterrupted one does, including windows that fire right after
    /// the restore (before a new row rebuilt the key decoder).
    #[test]
    fn a_restored_window_aggregation_continues_exactly_where_the_checkpointed_one_was() {
        use crate::testkit::{check_restore, drive};
        let steps = restore_steps();
        let kinds = [
            (
                WindowKind::Tumble {
                    size_ms: 10 * MIN,
                    offset_ms: 0,
                },
                vec![],
            ),
            (
                WindowKind::Hop {
                    size_ms: 10 * MIN,
                    slide_ms: 5 * MIN,
                    offset_ms: 0,
                },
                vec![],
            ),
            (
                WindowKind::Cumulate {
                    step_ms: 5 * MIN,
                    size_ms: 15 * MIN,
                    offset_ms: 0,
                },
                vec![],
            ),
            (WindowKind::Session { gap_ms: 4 * MIN }, vec![]),
            (WindowKind::Session { gap_ms: 4 * MIN }, vec![0]),
        ];
        // With one key resident, every other key's slices are spilled between steps, read back
        // when a row or a firing window needs them, and checkpointed from RocksDB.
        let rocksdb = crate::testkit::rocksdb_backend(1);
        for (kind, partition) in &kinds {
            let whole = check_restore(&|| Box::new(windowed(*kind, partition.clone())), &steps);
            let results = whole.iter().filter(|l| !l.starts_with("watermark")).count();
            assert!(results >= 8, "{kind:?}: {whole:?}");
            let spilled = check_restore(
                &|| Box::new(windowed_in(*kind, partition.clone(), &rocksdb)),
                &steps,
            );
            assert_eq!(spilled, whole, "{kind:?}: spilled to RocksDB");
        }
        // The steps do hold late rows.
        let mut op = windowed(kinds[0].0, vec![]);
        drive(&mut op, &steps, &mut Vec::new()).unwrap();
        assert_eq!(op.late_rows(), 2);
    }

    /// What window aggregation state layout 2 held for `op` (sessions in memory): each group
    /// with its key's bytes, and the keys as key columns in the order the groups were written.
    fn session_layout_2(op: &WindowAggregate) -> Vec<u8> {
        let State::Session {
            sessions, groups, ..
        } = &op.state
        else {
            panic!("not a session window");
        };
        let mut w = StateWriter::default();
        w.u32(2);
        w.i64(op.watermark);
        w.u64(op.seq);
        let mut order: Vec<&[u8]> = Vec::new();
        sessions.snapshot_layout_1(&mut w, |g: &Groups, w| {
            w.count(g.groups.len());
            for group in &g.groups {
                let key = groups.key(group.key).unwrap();
                w.bytes(key);
                order.push(key);
                for acc in &group.accs {
                    acc.encode(w);
                }
            }
        });
        op.keys.snapshot_keys(&order, &mut w).unwrap();
        w.into_bytes()
    }

    /// A checkpoint of session windows in state layout 2 (group keys as bytes in each session),
    /// taken after any step, restores in memory and spilled to RocksDB, and the run goes on
    /// as if uninterrupted; a cut one is refused.
    #[test]
    fn a_layout_2_session_checkpoint_restores_the_same_sessions() {
        use crate::testkit::drive;
        let steps = restore_steps();
        let session = WindowKind::Session { gap_ms: 4 * MIN };
        let rocksdb = crate::testkit::rocksdb_backend(1);
        for partition in [vec![], vec![0]] {
            let mut whole = Vec::new();
            drive(
                &mut windowed(session, partition.clone()),
                &steps,
                &mut whole,
            )
            .unwrap();
            for cut in 0..=steps.len() {
                let mut before = Vec::new();
                let mut first = windowed(session, partition.clone());
                drive(&mut first, &steps[..cut], &mut before).unwrap();
                let old = session_layout_2(&first);
                for backend in [&StateBackend::memory(), &rocksdb] {
                    let mut second = windowed_in(session, partition.clone(), backend);
                    let mut r = StateReader::new(&old);
                    second.restore(&mut r).unwrap();
                    r.finish().unwrap();
                    let mut out = before.clone();
                    drive(&mut second, &steps[cut..], &mut out).unwrap();
                    assert_eq!(out, whole, "{partition:?}: layout 2 restored at step {cut}");
                }
                for len in [0, old.len() / 2, old.len() - 1] {
                    let mut r = StateReader::new(&old[..len]);
                    let restored = windowed(session, partition.clone()).restore(&mut r);
                    assert!(
                        restored.is_err() || r.finish().is_err(),
                        "layout 2 cut to {len} bytes was accepted"
                    );
                }
            }
        }
    }
}
