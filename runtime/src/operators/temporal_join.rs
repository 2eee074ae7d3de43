//! Event-time temporal join: `left [LEFT] JOIN versioned FOR SYSTEM_TIME AS OF left.time`.
//!
//! The right input is a versioned table: each row is its key's version from its event time on.
//! A left row at `t` waits until the watermark (the minimum of both inputs) reaches `t` — then
//! every version up to `t` has arrived — and leaves joined with its key's latest version at or
//! before `t` (a LEFT join pads it with NULLs when there is none). Per key, versions older than the
//! latest one at or before the watermark can no longer be chosen and are dropped. A left row at or
//! behind the watermark, or a version at or behind it, is late (counted, sent to the late-data
//! output): its result could no longer be exact.

use std::collections::BTreeMap;

use arrow::array::{Array, RecordBatch, RecordBatchOptions};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::SchemaRef;
use fsql_plan::{Expr, JoinKind, TemporalJoinSpec};

use crate::compiled::Condition;
use crate::error::RuntimeError;
use crate::operator::{Event, LateRows, Operator};
use crate::operators::agg::key::KeyEncoder;
use crate::operators::window::event_millis;
use crate::state::KeyedState;

/// A left row waiting for the watermark: its key (`None`: a NULL key, never matched) and the row.
struct Waiting {
    key: Option<Box<[u8]>>,
    row: RecordBatch,
}

/// The TemporalJoin operator.
pub struct TemporalJoin {
    name: String,
    schema: SchemaRef,
    kind: JoinKind,
    inputs: [SchemaRef; 2],
    keys: [Vec<Expr>; 2],
    encoders: [KeyEncoder; 2],
    times: [usize; 2],
    residual: Option<Condition>,
    /// Left rows by (time, arrival).
    waiting: BTreeMap<(i64, u64), Waiting>,
    /// Versions per key, by version time (one-row batches).
    versions: KeyedState<BTreeMap<i64, RecordBatch>>,
    /// Keys with versions added since the last pruning.
    dirty: Vec<Box<[u8]>>,
    watermark: i64,
    seq: u64,
    late: LateRows,
}

impl TemporalJoin {
    /// A temporal join of `left` with the versioned table `right`, producing `schema`.
    pub fn new(
        name: &str,
        spec: &TemporalJoinSpec,
        left: SchemaRef,
        right: SchemaRef,
        schema: SchemaRef,
    ) -> Result<TemporalJoin, RuntimeError> {
        let plan_err = |m: &str| RuntimeError::Plan(format!("temporal join node `{name}`: {m}"));
        if schema.fields().len() != left.fields().len() + right.fields().len() {
            return Err(plan_err("output columns do not match the inputs"));
        }
        if spec.left_keys.len() != spec.right_keys.len() {
            return Err(plan_err("unpaired keys"));
        }
        if spec.left_time >= left.fields().len() || spec.right_time >= right.fields().len() {
            return Err(plan_err("time column out of range"));
        }
        if !matches!(spec.kind, JoinKind::Inner | JoinKind::Left) {
            return Err(plan_err("only inner and LEFT temporal joins exist"));
        }
        let n = spec.left_keys.len();
        Ok(TemporalJoin {
            name: name.to_string(),
            schema,
            kind: spec.kind,
            inputs: [left, right],
            keys: [spec.left_keys.clone(), spec.right_keys.clone()],
            encoders: [
                KeyEncoder::new((0..n).collect()),
                KeyEncoder::new((0..n).collect()),
            ],
            times: [spec.left_time, spec.right_time],
            residual: spec.residual.clone().map(Condition::new),
            waiting: BTreeMap::new(),
            versions: KeyedState::default(),
            dirty: Vec::new(),
            watermark: i64::MIN,
            seq: 0,
            late: LateRows::default(),
        })
    }

    /// The same node with its residual condition computed by compiled code where the JIT
    /// reaches.
    pub fn compiled(mut self) -> TemporalJoin {
        if let Some(residual) = &mut self.residual {
            residual.compile(&self.schema);
        }
        self
    }

    fn arrow_err(&self, e: arrow::error::ArrowError) -> RuntimeError {
        RuntimeError::arrow(&self.name, e)
    }

    /// Emits the waiting left rows at or before `w`, joined with their versions.
    fn release(&mut self, w: i64, out: &mut Vec<Event>) -> Result<(), RuntimeError> {
        let mut lefts: Vec<RecordBatch> = Vec::new();
        let mut rights: Vec<Option<RecordBatch>> = Vec::new();
        while let Some(entry) = self.waiting.first_entry() {
            let (t, _) = *entry.key();
            if t > w {
                break;
            }
            let Waiting { key, row } = entry.remove();
            let version = key
                .as_ref()
                .and_then(|k| self.versions.get_by_key(k))
                .and_then(|v| v.range(..=t).next_back())
                .map(|(_, r)| r.clone());
            if version.is_none() && self.kind == JoinKind::Inner {
                continue;
            }
            lefts.push(row);
            rights.push(version);
        }
        // Per key, only the latest version at or before the watermark can still be chosen.
        for key in std::mem::take(&mut self.dirty) {
            if let Some(v) = self.versions.get_mut_by_key(&key)
                && let Some((&keep, _)) = v.range(..=w).next_back()
            {
                *v = v.split_off(&keep);
            }
        }
        if lefts.is_empty() {
            return Ok(());
        }
        let joined = self.build(&lefts, &rights)?;
        let joined = self.apply_residual(joined, &lefts, &rights)?;
        if joined.num_rows() > 0 {
            out.push(Event::Batch(joined));
        }
        Ok(())
    }

    /// Left rows next to their versions (NULLs where none).
    fn build(
        &self,
        lefts: &[RecordBatch],
        rights: &[Option<RecordBatch>],
    ) -> Result<RecordBatch, RuntimeError> {
        let err = |e| self.arrow_err(e);
        let left = concat_batches(&self.inputs[0], lefts).map_err(err)?;
        let null_row = RecordBatch::try_new(
            self.inputs[1].clone(),
            self.inputs[1]
                .fields()
                .iter()
                .map(|f| arrow::array::new_null_array(f.data_type(), 1))
                .collect(),
        )
        .map_err(err)?;
        let right_rows: Vec<&RecordBatch> = rights
            .iter()
            .map(|r| r.as_ref().unwrap_or(&null_row))
            .collect();
        let right = concat_batches(&self.inputs[1], right_rows).map_err(err)?;
        let mut columns = left.columns().to_vec();
        columns.extend(right.columns().iter().cloned());
        let options = RecordBatchOptions::new().with_row_count(Some(left.num_rows()));
        RecordBatch::try_new_with_options(self.schema.clone(), columns, &options).map_err(err)
    }

    /// Applies the residual condition: an inner join drops failing rows; a LEFT join pads them.
    fn apply_residual(
        &mut self,
        joined: RecordBatch,
        lefts: &[RecordBatch],
        rights: &[Option<RecordBatch>],
    ) -> Result<RecordBatch, RuntimeError> {
        let Some(residual) = &mut self.residual else {
            return Ok(joined);
        };
        let pass = residual
            .holds(&joined)
            .map_err(|e| RuntimeError::eval(&self.name, e))?;
        if self.kind == JoinKind::Inner {
            return filter_record_batch(&joined, &pass).map_err(|e| self.arrow_err(e));
        }
        // LEFT: a row whose version fails the condition is padded instead.
        let rights: Vec<Option<RecordBatch>> = rights
            .iter()
            .enumerate()
            .map(|(i, r)| if pass.value(i) { r.clone() } else { None })
            .collect();
        self.build(lefts, &rights)
    }
}

impl Operator for TemporalJoin {
    fn on_batch(
        &mut self,
        input: usize,
        batch: RecordBatch,
        _out: &mut Vec<Event>,
    ) -> Result<(), RuntimeError> {
        let side = input.min(1);
        if batch.num_columns() != self.inputs[side].fields().len() {
            return Err(RuntimeError::Plan(format!(
                "temporal join node `{}`: input {input} has {} columns, expected {}",
                self.name,
                batch.num_columns(),
                self.inputs[side].fields().len()
            )));
        }
        let ts = event_millis(batch.column(self.times[side])).map_err(|e| self.arrow_err(e))?;
        let (encoded, valid) =
            self.encoders[side].encode_exprs(&self.name, &self.keys[side], &batch)?;
        // Each row's key bytes, `None` where a key column is NULL.
        let keys =
            (0..batch.num_rows()).map(|i| valid[i].then(|| Box::<[u8]>::from(encoded.key(i))));
        let mut late = Vec::new();
        for (i, key) in keys.into_iter().enumerate() {
            if ts.is_null(i) || ts.value(i) <= self.watermark {
                late.push(i as u32);
                continue;
            }
            let t = ts.value(i);
            if side == 0 {
                self.waiting.insert(
                    (t, self.seq),
                    Waiting {
                        key,
                        row: batch.slice(i, 1),
                    },
                );
                self.seq += 1;
            } else if let Some(key) = key {
                // A version with a NULL key can never be chosen.
                self.versions
                    .get_or_insert_with(&key, BTreeMap::new)
                    .insert(t, batch.slice(i, 1));
                self.dirty.push(key);
            }
        }
        self.late.keep(&self.name, &batch, late)?;
        Ok(())
    }

    fn on_watermark(&mut self, w: i64, out: &mut Vec<Event>) -> Result<(), RuntimeError> {
        if w > self.watermark {
            self.watermark = w;
            self.release(w, out)?;
        }
        out.push(Event::Watermark(w));
        Ok(())
    }

    fn late_rows(&self) -> u64 {
        self.late.count()
    }

    fn take_late(&mut self) -> Option<RecordBatch> {
        self.late.take()
    }
}
