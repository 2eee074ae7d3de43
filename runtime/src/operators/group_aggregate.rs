//! GroupAggregate: non-windowed `GROUP BY` (and global aggregates), Flink's updating
//! aggregation. Each key's accumulators live in a [`KeyedState`]; every batch is folded per key
//! (Flink's mini-batch aggregation, which fsql always uses: batching is always on), and a key
//! whose result changed emits `+I` (new key), `-U` then `+U` (changed), or `-D` (its last row
//! was retracted). A result equal to the one emitted before is not emitted again.
//!
//! Input rows of kind `+I`/`+U` are added to their key's accumulators, `-U`/`-D` retracted
//! from them (so MIN/MAX keep their values counted when the input is updating); a retraction for
//! a key without state is ignored, as Flink does.
//!
//! With `state.ttl`, a key that no row touched while the watermark advanced by the TTL is
//! dropped without a retraction (Flink's idle state retention, in event time as fsql's other
//! operators apply it): a later row of the key starts it again with `+I`.

use std::collections::VecDeque;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow::datatypes::{DataType as ArrowType, Schema as ArrowSchema, SchemaRef};
use fsql_plan::{AggregateFunction, GroupAggregateSpec};

use crate::compiled::ExprGroup;
use crate::error::RuntimeError;
use crate::operator::{Changes, Event, Operator, RowKind};
use crate::operators::agg::accumulator::{AccSpec, Accumulator};
use crate::operators::agg::accumulator_for;
use crate::operators::agg::key::{KeyEncoder, group_key_type};
use crate::operators::agg::value::{Repr, Value, ValueColumn, ValueType, build_array};
use crate::state::codec::{StateError, StateReader, StateWriter};
use crate::state::{KeyedState, StateBackend, ValueCodec};

/// The layout of [`GroupAggregate`]'s checkpoint state.
const GROUP_AGGREGATE_STATE_LAYOUT: u32 = 1;

/// One aggregate call.
struct AggSlot {
    spec: AccSpec,
    /// The argument and how it is read (`None` for `COUNT(*)`).
    arg: Option<Repr>,
    has_filter: bool,
    result: ValueType,
    target: ArrowType,
}

/// One key's state.
#[derive(Default)]
struct Group {
    /// Rows added minus rows retracted: the key is deleted when it drops to 0.
    rows: i64,
    accs: Vec<Accumulator>,
}

/// How a [`Group`] is written to a checkpoint and to RocksDB (`width` accumulators).
fn codec(width: usize) -> ValueCodec<Group> {
    ValueCodec {
        encode: Box::new(|g, w| {
            g.encode(w);
            Ok(())
        }),
        decode: Box::new(move |r| Group::decode(r, width)),
    }
}

impl Group {
    fn encode(&self, w: &mut StateWriter) {
        w.i64(self.rows);
        for acc in &self.accs {
            acc.encode(w);
        }
    }

    fn decode(r: &mut StateReader<'_>, width: usize) -> Result<Group, StateError> {
        let rows = r.i64()?;
        if rows <= 0 {
            return Err(StateError(format!("a group with {rows} rows")));
        }
        let accs = (0..width)
            .map(|_| Accumulator::decode(r))
            .collect::<Result<_, _>>()?;
        Ok(Group { rows, accs })
    }
}

/// A key the current batch touched: its id, and the result it had before the batch (`None`:
/// the key had no rows).
struct Touched {
    id: u32,
    before: Option<Vec<Value>>,
}

/// Idle state retention (`state.ttl`): when each key was last touched, and a queue of checks.
/// An id has at most one queued check (`queued`); the check drops the key if it was not touched
/// for the TTL, queues itself again if it was, and ends if the id has no key any more.
struct Retention {
    ttl_ms: i64,
    /// The watermark when each id's key was last touched (`i64::MIN`: before any watermark).
    touched: Vec<i64>,
    queued: Vec<bool>,
    /// (watermark at which to check, id), in check order.
    checks: VecDeque<(i64, u32)>,
}

impl Retention {
    /// Key `id` was touched at watermark `w`.
    fn touch(&mut self, id: u32, w: i64) {
        let at = id as usize;
        if self.touched.len() <= at {
            self.touched.resize(at + 1, i64::MIN);
            self.queued.resize(at + 1, false);
        }
        self.touched[at] = w;
        if !self.queued[at] {
            self.queued[at] = true;
            let due = self.due(w, w);
            self.checks.push_back((due, id));
        }
    }

    /// When a key touched at `touched` expires, at watermark `w` (a key touched before any
    /// watermark counts from the first one).
    fn due(&self, touched: i64, w: i64) -> i64 {
        let from = if touched == i64::MIN { w } else { touched };
        from.saturating_add(self.ttl_ms)
    }
}

/// The GroupAggregate operator.
pub struct GroupAggregate {
    name: String,
    schema: SchemaRef,
    input_width: usize,
    keys: KeyEncoder,
    /// The output types of the key columns.
    key_types: Vec<ArrowType>,
    aggs: Vec<AggSlot>,
    groups: KeyedState<Group>,
    /// Where `groups` lives (kept for restores).
    backend: StateBackend,
    /// Each aggregate's argument and FILTER (when it has them), in aggregate order.
    exprs: ExprGroup,
    watermark: i64,
    /// `state.ttl`, when set.
    retention: Option<Retention>,
}

impl GroupAggregate {
    /// A group aggregation over rows of `input` producing `schema` (the keys, then one column
    /// per aggregate), keeping its keys' state in `backend`. `retracting`: the input is
    /// updating, so values are also retracted. `state_ttl_ms`: idle keys are dropped.
    pub fn new(
        name: &str,
        spec: &GroupAggregateSpec,
        input: &ArrowSchema,
        schema: SchemaRef,
        retracting: bool,
        state_ttl_ms: Option<i64>,
        backend: &StateBackend,
    ) -> Result<GroupAggregate, RuntimeError> {
        let plan_err = |m: String| RuntimeError::Plan(format!("group aggregate `{name}`: {m}"));
        let width = input.fields().len();
        let out = schema.fields();
        if out.len() != spec.keys.len() + spec.aggregates.len() {
            return Err(plan_err(format!(
                "{} output columns for {} keys and {} aggregates",
                out.len(),
                spec.keys.len(),
                spec.aggregates.len()
            )));
        }
        for &k in &spec.keys {
            group_key_type(input, k).map_err(plan_err)?;
        }
        let mut aggs = Vec::new();
        let mut exprs = Vec::new();
        for (a, f) in spec.aggregates.iter().zip(&out[spec.keys.len()..]) {
            if retracting
                && matches!(
                    a.function,
                    AggregateFunction::FirstValue | AggregateFunction::LastValue
                )
            {
                return Err(plan_err(format!(
                    "{} over an updating input is not supported",
                    a.function.sql_name()
                )));
            }
            let plan = accumulator_for(a.function, &a.args, a.distinct, retracting, f.data_type())
                .map_err(plan_err)?;
            let arg = match (plan.repr, a.args.first()) {
                (Some(r), Some(e)) => {
                    exprs.push(e.clone());
                    Some(r)
                }
                _ => None,
            };
            exprs.extend(a.filter.clone());
            aggs.push(AggSlot {
                arg,
                has_filter: a.filter.is_some(),
                result: plan.spec.result_type(&plan.arg_type),
                spec: plan.spec,
                target: f.data_type().clone(),
            });
        }
        Ok(GroupAggregate {
            name: name.to_string(),
            input_width: width,
            keys: KeyEncoder::new(spec.keys.clone()),
            key_types: out[..spec.keys.len()]
                .iter()
                .map(|f| f.data_type().clone())
                .collect(),
            schema,
            groups: KeyedState::new(backend, name, || codec(aggs.len())),
            backend: backend.clone(),
            aggs,
            exprs: ExprGroup::new(exprs),
            watermark: i64::MIN,
            retention: state_ttl_ms.map(|ttl_ms| Retention {
                ttl_ms,
                touched: Vec::new(),
                queued: Vec::new(),
                checks: VecDeque::new(),
            }),
        })
    }

    /// The same node with its arguments and FILTERs computed by compiled code where the JIT
    /// reaches.
    pub fn compiled(mut self, input: &ArrowSchema) -> GroupAggregate {
        self.exprs.compile(input);
        self
    }

    /// Keys holding state.
    pub fn live_keys(&self) -> usize {
        self.groups.len()
    }

    /// Drops the keys idle for the TTL at watermark `w` (without emitting anything).
    fn expire(&mut self, w: i64) {
        let Some(r) = &mut self.retention else {
            return;
        };
        while let Some(&(due, id)) = r.checks.front() {
            if due > w {
                break;
            }
            r.checks.pop_front();
            let at = id as usize;
            let live = self.groups.contains_id(id);
            let touched = r.touched.get(at).copied().unwrap_or(i64::MIN);
            let due = r.due(touched, w);
            if !live {
                r.queued[at] = false;
            } else if due <= w {
                self.groups.remove(id);
                r.queued[at] = false;
            } else {
                if touched == i64::MIN {
                    // Touched before the first watermark: it counts from this one.
                    r.touched[at] = w;
                }
                r.checks.push_back((due.max(w.saturating_add(1)), id));
            }
        }
    }

    /// Keeps the backend's resident budget of keys in memory (see `KeyedState::settle`).
    fn settle(&mut self) -> Result<(), RuntimeError> {
        self.groups
            .settle()
            .map_err(|e| RuntimeError::backend(&self.name, e))
    }

    /// Adds (or, for `-U`/`-D`, retracts) the rows of `batch` and emits what changed.
    fn process(
        &mut self,
        batch: &RecordBatch,
        kinds: Option<&[RowKind]>,
        out: &mut Vec<Event>,
    ) -> Result<(), RuntimeError> {
        if batch.num_columns() != self.input_width {
            return Err(RuntimeError::Plan(format!(
                "group aggregate `{}` expects {} input columns but a batch has {}",
                self.name,
                self.input_width,
                batch.num_columns()
            )));
        }
        if kinds.is_some_and(|k| k.len() != batch.num_rows()) {
            return Err(RuntimeError::Plan(format!(
                "group aggregate `{}`: a batch's row kinds do not match its rows",
                self.name
            )));
        }
        let keys = self
            .keys
            .encode(batch)
            .map_err(|e| RuntimeError::arrow(&self.name, e))?;
        let values = self
            .exprs
            .evaluate(batch)
            .map_err(|e| RuntimeError::eval(&self.name, e))?;
        let (args, filters) = self.columns(values)?;
        let mut touched: Vec<Touched> = Vec::new();
        // Whether an id is in `touched` (ids are dense).
        let mut seen: Vec<bool> = Vec::new();
        for i in 0..batch.num_rows() {
            let add = kinds.is_none_or(|k| k[i].is_accumulate());
            let key = keys.key(i);
            let id = if add {
                let aggs = &self.aggs;
                self.groups.id_or_insert_with(key, || Group {
                    rows: 0,
                    accs: aggs.iter().map(|a| a.spec.new_acc()).collect(),
                })
            } else {
                match self.groups.find(key) {
                    Some(id) => id,
                    // Nothing to retract from (Flink ignores it too).
                    None => continue,
                }
            };
            let at = id as usize;
            if seen.len() <= at {
                seen.resize(at + 1, false);
            }
            let Some(group) = self.groups.get_mut(id) else {
                continue;
            };
            if !seen[at] {
                seen[at] = true;
                if let Some(r) = &mut self.retention {
                    r.touch(id, self.watermark);
                }
                let before = (group.rows > 0).then(|| results(group, &self.aggs));
                touched.push(Touched { id, before });
            }
            group.rows += if add { 1 } else { -1 };
            for (j, a) in self.aggs.iter().enumerate() {
                if filters[j]
                    .as_ref()
                    .is_some_and(|f| f.is_null(i) || !f.value(i))
                {
                    continue;
                }
                let v = args[j].as_ref().map_or(Value::Null, |c| c.get(i));
                if add {
                    group.accs[j].add(&a.spec, (0, 0), &v);
                } else {
                    group.accs[j].retract(&a.spec, (0, 0), &v);
                }
            }
        }
        self.emit(touched, out)?;
        self.settle()
    }

    /// Each aggregate's argument and FILTER column, from the evaluated expressions.
    #[allow(clippy::type_complexity)]
    fn columns(
        &self,
        values: Vec<ArrayRef>,
    ) -> Result<(Vec<Option<ValueColumn>>, Vec<Option<BooleanArray>>), RuntimeError> {
        let missing = || {
            RuntimeError::Plan(format!(
                "group aggregate `{}`: an aggregate argument was not computed",
                self.name
            ))
        };
        let mut values = values.into_iter();
        let mut args = Vec::with_capacity(self.aggs.len());
        let mut filters = Vec::with_capacity(self.aggs.len());
        for a in &self.aggs {
            args.push(match a.arg {
                Some(repr) => {
                    let v = values.next().ok_or_else(missing)?;
                    Some(
                        ValueColumn::new(&v, repr)
                            .map_err(|e| RuntimeError::arrow(&self.name, e))?,
                    )
                }
                None => None,
            });
            filters.push(if a.has_filter {
                let v = values.next().ok_or_else(missing)?;
                let b = v
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .cloned()
                    .ok_or_else(|| {
                        RuntimeError::Plan(format!(
                            "group aggregate `{}`: a FILTER is not BOOLEAN",
                            self.name
                        ))
                    })?;
                Some(b)
            } else {
                None
            });
        }
        Ok((args, filters))
    }

    /// The changes of the keys a batch touched, in the order it first touched them; keys left
    /// without rows are removed.
    fn emit(&mut self, touched: Vec<Touched>, out: &mut Vec<Event>) -> Result<(), RuntimeError> {
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut rows: Vec<Vec<Value>> = Vec::new();
        let mut kinds: Vec<RowKind> = Vec::new();
        for t in touched {
            // Resident: the batch touched it, and keys are only spilled between batches.
            let after = match self.groups.get_mut(t.id) {
                Some(g) if g.rows > 0 => Some(results(g, &self.aggs)),
                _ => None,
            };
            let key = self.groups.key(t.id).to_vec();
            let mut push = |kind, values| {
                keys.push(key.clone());
                rows.push(values);
                kinds.push(kind);
            };
            match (t.before, after) {
                (None, Some(after)) => push(RowKind::Insert, after),
                (Some(before), Some(after)) => {
                    if before != after {
                        push(RowKind::UpdateBefore, before);
                        push(RowKind::UpdateAfter, after);
                    }
                }
                (Some(before), None) => {
                    push(RowKind::Delete, before);
                    self.groups.remove(t.id);
                }
                (None, None) => {
                    self.groups.remove(t.id);
                }
            }
        }
        if kinds.is_empty() {
            return Ok(());
        }
        let batch = self.build(&keys, &rows)?;
        out.push(Event::Changes(Changes { batch, kinds }));
        Ok(())
    }

    /// The output batch: the decoded keys, then the aggregate values.
    fn build(&self, keys: &[Vec<u8>], rows: &[Vec<Value>]) -> Result<RecordBatch, RuntimeError> {
        let err = |e| RuntimeError::arrow(&self.name, e);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        if !self.key_types.is_empty() {
            let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            let decoded = self.keys.decode(&keys).map_err(err)?;
            if decoded.len() != self.key_types.len() {
                return Err(RuntimeError::Plan(format!(
                    "group aggregate `{}`: {} key columns decoded for {}",
                    self.name,
                    decoded.len(),
                    self.key_types.len()
                )));
            }
            for (values, target) in decoded.into_iter().zip(&self.key_types) {
                columns.push(if values.data_type() == target {
                    values
                } else {
                    arrow::compute::cast(&values, target).map_err(err)?
                });
            }
        }
        for (j, a) in self.aggs.iter().enumerate() {
            let values: Vec<Value> = rows
                .iter()
                .map(|r| r.get(j).cloned().unwrap_or(Value::Null))
                .collect();
            columns.push(build_array(&values, &a.result, &a.target).map_err(err)?);
        }
        crate::operator::batch_with_schema(&self.name, &self.schema, columns, rows.len())
    }
}

impl Operator for GroupAggregate {
    fn on_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Vec<Event>,
    ) -> Result<(), RuntimeError> {
        self.process(&batch, None, out)
    }

    fn on_changes(
        &mut self,
        _input: usize,
        changes: Changes,
        out: &mut Vec<Event>,
    ) -> Result<(), RuntimeError> {
        self.process(&changes.batch, Some(&changes.kinds), out)
    }

    /// Idle keys expire as the watermark passes their TTL.
    fn on_watermark(&mut self, w: i64, out: &mut Vec<Event>) -> Result<(), RuntimeError> {
        if w > self.watermark {
            self.watermark = w;
            self.expire(w);
        }
        out.push(Event::Watermark(w));
        self.settle()
    }

    /// Whether the values are in RocksDB, every key (in id order) with its row count and
    /// accumulators (with RocksDB: the keys only, the values are in its checkpoint), then the
    /// keys as key columns (see [`KeyEncoder::snapshot_keys`]). Changes are emitted within each
    /// batch, so none wait.
    fn snapshot(&mut self, w: &mut StateWriter) -> Result<bool, RuntimeError> {
        let err = |e| RuntimeError::state(&self.name, e);
        w.u32(GROUP_AGGREGATE_STATE_LAYOUT);
        self.groups.write_storage(w).map_err(err)?;
        self.groups
            .snapshot(w, |g, w| {
                g.encode(w);
                Ok(())
            })
            .map_err(err)?;
        let keys: Vec<&[u8]> = self.groups.keys().collect();
        self.keys.snapshot_keys(&keys, w).map_err(err)?;
        w.i64(self.watermark);
        if let Some(r) = &self.retention {
            w.count(r.touched.len());
            for (&t, &q) in r.touched.iter().zip(&r.queued) {
                w.i64(t);
                w.bool(q);
            }
            w.count(r.checks.len());
            for &(due, id) in &r.checks {
                w.i64(due);
                w.u32(id);
            }
        }
        Ok(true)
    }

    fn restore(&mut self, r: &mut StateReader<'_>) -> Result<(), RuntimeError> {
        let name = &self.name;
        let err = |e| RuntimeError::state(name, e);
        r.expect_tag("group aggregation", GROUP_AGGREGATE_STATE_LAYOUT)
            .map_err(err)?;
        let width = self.aggs.len();
        let spilled = r.bool().map_err(err)?;
        let groups = KeyedState::restore_checkpointed(
            r,
            spilled,
            &self.backend,
            name,
            || codec(width),
            |r| Group::decode(r, width),
        )
        .map_err(err)?;
        self.keys.restore_keys(r, groups.keys()).map_err(err)?;
        self.watermark = r.i64().map_err(err)?;
        if let Some(retention) = &mut self.retention {
            let n = r.count().map_err(err)?;
            let mut touched = Vec::with_capacity(n);
            let mut queued = Vec::with_capacity(n);
            for _ in 0..n {
                touched.push(r.i64().map_err(err)?);
                queued.push(r.bool().map_err(err)?);
            }
            let mut checks = VecDeque::new();
            let mut checked = vec![false; n];
            for _ in 0..r.count().map_err(err)? {
                let due = r.i64().map_err(err)?;
                let id = r.u32().map_err(err)?;
                match checked.get_mut(id as usize) {
                    Some(c) if !*c && queued[id as usize] => *c = true,
                    _ => {
                        return Err(err(StateError(format!(
                            "an expiry check of key {id} that is not queued, or queued twice"
                        ))));
                    }
                }
                checks.push_back((due, id));
            }
            if checked != queued {
                return Err(err(StateError("a queued key without its check".into())));
            }
            // Every live key has its check.
            if groups
                .ids()
                .any(|id| !queued.get(id as usize).copied().unwrap_or(false))
            {
                return Err(err(StateError("a key without an expiry check".into())));
            }
            *retention = Retention {
                ttl_ms: retention.ttl_ms,
                touched,
                queued,
                checks,
            };
        }
        self.groups = groups;
        Ok(())
    }
}

/// The aggregates' results over `group`'s accumulators.
fn results(group: &Group, aggs: &[AggSlot]) -> Vec<Value> {
    group
        .accs
        .iter()
        .zip(aggs)
        .map(|(acc, a)| acc.result(&a.spec))
        .collect()
}

#[cfg(test)]
mod tests;
