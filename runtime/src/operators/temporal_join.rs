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
use std::sync::Arc;

use arrow::array::{Array, RecordBatch, RecordBatchOptions};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::SchemaRef;
use fsql_plan::{Expr, JoinKind, TemporalJoinSpec};

use crate::compiled::Condition;
use crate::error::RuntimeError;
use crate::operator::{Event, LateRows, Operator};
use crate::operators::agg::key::KeyEncoder;
use crate::operators::window::event_millis;
use crate::state::codec::{StateError, StateReader, StateWriter, StoredRows};
use crate::state::{KeyedState, StateBackend, ValueCodec};

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
    /// Versions per key, by version time (one-row batches). With the RocksDB backend a key's
    /// versions spill beyond the resident budget.
    versions: KeyedState<BTreeMap<i64, RecordBatch>>,
    /// Where versions live (kept for restores).
    backend: StateBackend,
    /// Keys with versions added since the last pruning.
    dirty: Vec<Box<[u8]>>,
    watermark: i64,
    seq: u64,
    late: LateRows,
}

impl TemporalJoin {
    /// A temporal join of `left` with the versioned table `right`, producing `schema`, keeping
    /// versions in `backend`.
    pub fn new(
        name: &str,
        spec: &TemporalJoinSpec,
        left: SchemaRef,
        right: SchemaRef,
        schema: SchemaRef,
        backend: &StateBackend,
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
            inputs: [left, Arc::clone(&right)],
            keys: [spec.left_keys.clone(), spec.right_keys.clone()],
            encoders: [
                KeyEncoder::new((0..n).collect()),
                KeyEncoder::new((0..n).collect()),
            ],
            times: [spec.left_time, spec.right_time],
            residual: spec.residual.clone().map(Condition::new),
            waiting: BTreeMap::new(),
            versions: KeyedState::new(backend, name, || versions_codec(Arc::clone(&right))),
            backend: backend.clone(),
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

    /// Keeps the backend's resident budget of keys' versions in memory (see
    /// `KeyedState::settle`), failing when spilled versions could not be read back.
    fn settle(&mut self) -> Result<(), RuntimeError> {
        self.versions
            .settle()
            .map_err(|e| RuntimeError::backend(&self.name, e))
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
                .and_then(|k| self.versions.get_mut_by_key(k))
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
        self.settle()
    }

    fn on_watermark(&mut self, w: i64, out: &mut Vec<Event>) -> Result<(), RuntimeError> {
        if w > self.watermark {
            self.watermark = w;
            self.release(w, out)?;
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

    /// The watermark and arrival counter, the waiting left rows (gathered into one batch, each
    /// with its time, arrival number and key), every key's versions (their rows in one batch,
    /// by key id and time; with RocksDB only the keys, their versions are in its checkpoint)
    /// and the keys due for pruning.
    fn snapshot(&mut self, w: &mut StateWriter) -> Result<bool, RuntimeError> {
        let err = |e| RuntimeError::state(&self.name, e);
        w.u32(TEMPORAL_JOIN_STATE_LAYOUT);
        let spilled = self.versions.write_storage(w).map_err(err)?;
        w.i64(self.watermark);
        w.u64(self.seq);
        let waiting: Vec<RecordBatch> = self.waiting.values().map(|v| v.row.clone()).collect();
        w.rows(&waiting).map_err(err)?;
        for (&(t, seq), v) in &self.waiting {
            w.i64(t);
            w.u64(seq);
            match &v.key {
                None => w.bool(false),
                Some(key) => {
                    w.bool(true);
                    w.bytes(key);
                }
            }
        }
        let versions: Vec<RecordBatch> = self
            .versions
            .values()
            .filter(|_| !spilled)
            .flat_map(|(_, v)| v.values().cloned())
            .collect();
        w.rows(&versions).map_err(err)?;
        self.versions
            .snapshot(w, |v, w| {
                write_times(v, w);
                Ok(())
            })
            .map_err(err)?;
        w.count(self.dirty.len());
        for key in &self.dirty {
            w.bytes(key);
        }
        Ok(true)
    }

    fn restore(&mut self, r: &mut StateReader<'_>) -> Result<(), RuntimeError> {
        let name = &self.name;
        let err = |e| RuntimeError::state(name, e);
        let twice = |what: &str| err(StateError(format!("{what} appears twice")));
        let spilled = match r.u32().map_err(err)? {
            1 => false,
            TEMPORAL_JOIN_STATE_LAYOUT => r.bool().map_err(err)?,
            other => {
                return Err(err(StateError(format!(
                    "temporal join state has layout {other}, this fsql reads layouts 1 and {TEMPORAL_JOIN_STATE_LAYOUT}"
                ))));
            }
        };
        self.watermark = r.i64().map_err(err)?;
        self.seq = r.u64().map_err(err)?;
        let mut rows = r.rows(&self.inputs[0]).map_err(err)?;
        let mut waiting = BTreeMap::new();
        for _ in 0..rows.len() {
            let at = (r.i64().map_err(err)?, r.u64().map_err(err)?);
            let key = match r.bool().map_err(err)? {
                true => Some(r.bytes().map_err(err)?.into()),
                false => None,
            };
            let row = rows.next_row().map_err(err)?;
            if waiting.insert(at, Waiting { key, row }).is_some() {
                return Err(twice("a waiting row"));
            }
        }
        let mut rows = r.rows(&self.inputs[1]).map_err(err)?;
        let codec = || versions_codec(Arc::clone(&self.inputs[1]));
        let versions =
            KeyedState::restore_checkpointed(r, spilled, &self.backend, name, codec, |r| {
                read_times(r, &mut rows)
            })
            .map_err(err)?;
        rows.finish().map_err(err)?;
        let mut dirty = Vec::new();
        for _ in 0..r.count().map_err(err)? {
            dirty.push(r.bytes().map_err(err)?.into());
        }
        self.waiting = waiting;
        self.versions = versions;
        self.dirty = dirty;
        Ok(())
    }
}

/// The layout of a temporal join's checkpoint state (bumped when it changes). Layout 2 added
/// the storage flag (layout 1 is layout 2 in memory, without it).
const TEMPORAL_JOIN_STATE_LAYOUT: u32 = 2;

/// Writes a key's version times (its rows are written apart).
fn write_times(v: &BTreeMap<i64, RecordBatch>, w: &mut StateWriter) {
    w.count(v.len());
    for &t in v.keys() {
        w.i64(t);
    }
}

/// Reads what [`write_times`] wrote, each version's row the next of `rows`.
fn read_times(
    r: &mut StateReader<'_>,
    rows: &mut StoredRows,
) -> Result<BTreeMap<i64, RecordBatch>, StateError> {
    let mut v = BTreeMap::new();
    for _ in 0..r.count()? {
        let t = r.i64()?;
        if v.insert(t, rows.next_row()?).is_some() {
            return Err(StateError(format!("a key's version at {t} appears twice")));
        }
    }
    Ok(v)
}

/// How the RocksDB backend stores one key's versions: their rows (of the versioned table
/// `right`), then their times.
fn versions_codec(right: SchemaRef) -> ValueCodec<BTreeMap<i64, RecordBatch>> {
    ValueCodec {
        encode: Box::new(|v, w| {
            let rows: Vec<RecordBatch> = v.values().cloned().collect();
            w.rows(&rows)?;
            write_times(v, w);
            Ok(())
        }),
        decode: Box::new(move |r| {
            let mut rows = r.rows(&right)?;
            let v = read_times(r, &mut rows)?;
            rows.finish()?;
            Ok(v)
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, TimestampMillisecondArray};
    use arrow::datatypes::{DataType as ArrowType, Field, Schema as ArrowSchema, TimeUnit};
    use fsql_plan::{BinaryOp, DataType, Literal};

    use super::*;
    use crate::testkit::{Step, bin, check_restore, drive, lit};

    fn ts_field(name: &str) -> Field {
        Field::new(
            name,
            ArrowType::Timestamp(TimeUnit::Millisecond, None),
            true,
        )
    }

    /// Orders (k, ts) and rates (rk, rts, rate).
    fn schemas() -> [SchemaRef; 2] {
        [
            Arc::new(ArrowSchema::new(vec![
                Field::new("k", ArrowType::Int64, true),
                ts_field("ts"),
            ])),
            Arc::new(ArrowSchema::new(vec![
                Field::new("rk", ArrowType::Int64, true),
                ts_field("rts"),
                Field::new("rate", ArrowType::Int64, true),
            ])),
        ]
    }

    fn order(rows: &[(Option<i64>, i64)]) -> Step {
        let batch = RecordBatch::try_new(
            schemas()[0].clone(),
            vec![
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(TimestampMillisecondArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap();
        Step::Batch(0, batch)
    }

    fn rate(rows: &[(i64, i64, i64)]) -> Step {
        let batch = RecordBatch::try_new(
            schemas()[1].clone(),
            vec![
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(TimestampMillisecondArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap();
        Step::Batch(1, batch)
    }

    /// `orders [LEFT] JOIN rates FOR SYSTEM_TIME AS OF ts ON k = rk`, optionally `AND rate <> 12`.
    fn temporal(kind: JoinKind, residual: bool, backend: &StateBackend) -> TemporalJoin {
        let [left, right] = schemas();
        let out = Arc::new(ArrowSchema::new(
            left.fields()
                .iter()
                .chain(right.fields().iter())
                .map(|f| f.as_ref().clone())
                .collect::<Vec<_>>(),
        ));
        let spec = TemporalJoinSpec {
            kind,
            left_keys: vec![Expr::column(0, DataType::BigInt, true)],
            right_keys: vec![Expr::column(0, DataType::BigInt, true)],
            left_time: 1,
            right_time: 1,
            residual: residual.then(|| {
                bin(
                    BinaryOp::NotEq,
                    Expr::column(4, DataType::BigInt, true),
                    lit(Literal::Int(12), DataType::BigInt),
                    DataType::Boolean,
                )
            }),
        };
        TemporalJoin::new("tj", &spec, left, right, out, backend).unwrap()
    }

    /// Inner and LEFT temporal joins, with and without a residual condition: versions arriving
    /// out of order, left rows waiting for the watermark, several keys, a NULL key, late rows
    /// of both inputs and pruned versions, checkpointed after any step and restored, give
    /// exactly the uninterrupted output.
    #[test]
    fn a_restored_temporal_join_continues_exactly_where_the_checkpointed_one_was() {
        let steps = vec![
            rate(&[(1, 0, 10), (2, 5, 20)]),
            order(&[(Some(1), 3), (Some(2), 4), (Some(1), 12)]),
            rate(&[(1, 10, 11), (1, 8, 12)]),
            Step::Watermark(6),
            // (1, 5) is late.
            order(&[(Some(3), 9), (Some(1), 5), (Some(1), 9)]),
            rate(&[(3, 7, 30), (2, 15, 21)]),
            order(&[(None, 10), (Some(2), 16), (Some(1), 10), (Some(2), 9)]),
            Step::Watermark(12),
            // The version at 11 is late.
            rate(&[(1, 11, 13), (1, 14, 14)]),
            order(&[(Some(1), 20), (Some(3), 13)]),
            Step::Watermark(i64::MAX),
        ];
        let memory = StateBackend::memory();
        // With one key's versions resident, the others spill between steps and are read back.
        let rocksdb = crate::testkit::rocksdb_backend(1);
        for kind in [JoinKind::Inner, JoinKind::Left] {
            for residual in [false, true] {
                let whole = check_restore(&|| Box::new(temporal(kind, residual, &memory)), &steps);
                let rows = whole.iter().filter(|l| !l.starts_with("watermark")).count();
                assert!(rows >= 6, "{kind:?}: {whole:?}");
                let spilled =
                    check_restore(&|| Box::new(temporal(kind, residual, &rocksdb)), &steps);
                assert_eq!(spilled, whole, "{kind:?}, spilled to RocksDB");
                let mut op = temporal(kind, residual, &memory);
                drive(&mut op, &steps, &mut Vec::new()).unwrap();
                assert_eq!(op.late_rows(), 2);
            }
        }
    }
}
