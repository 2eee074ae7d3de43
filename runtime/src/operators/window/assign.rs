//! A window TVF read without aggregation: each row once per window it belongs to.
//!
//! TUMBLE, HOP and CUMULATE rows are assigned as they arrive (stateless). SESSION rows wait,
//! per partition key, until their session fires, and then leave tagged with the whole merged
//! session, as Flink's SESSION TVF emits them.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::{Schema as ArrowSchema, SchemaRef};
use fsql_plan::{WindowAssignSpec, WindowKind};

use super::session::{Session, Sessions};
use super::{Slicing, event_millis, millis_array};
use crate::error::RuntimeError;
use crate::operator::{Event, LateRows, Operator};
use crate::operators::agg::key::KeyEncoder;
use crate::state::codec::{StateError, StateReader, StateWriter};
use crate::state::row_codec::RowCodec;
use crate::state::{StateBackend, ValueCodec};

enum Assign {
    Sliced(Slicing),
    /// Buffered rows (one-row slices of input batches) per session.
    Session {
        sessions: Box<Sessions<Vec<RecordBatch>>>,
        partition: KeyEncoder,
        /// The input's rows.
        input: SchemaRef,
    },
}

/// A session's rows written with `rows` (cell by cell), and read back as one-row slices of one
/// batch.
fn rows_codec(rows: RowCodec) -> ValueCodec<Vec<RecordBatch>> {
    let rows = Arc::new(rows);
    let read = Arc::clone(&rows);
    ValueCodec {
        encode: Box::new(move |held: &Vec<RecordBatch>, w: &mut StateWriter| {
            let refs: Vec<(&RecordBatch, usize)> = held.iter().map(|b| (b, 0)).collect();
            rows.encode(&refs, w)
        }),
        decode: Box::new(move |r: &mut StateReader<'_>| {
            let batch = read.decode(r)?;
            Ok((0..batch.num_rows()).map(|i| batch.slice(i, 1)).collect())
        }),
    }
}

/// The WindowAssign operator.
pub struct WindowAssign {
    name: String,
    schema: SchemaRef,
    assign: Assign,
    time: usize,
    watermark: i64,
    /// Rows without an event time, or (SESSION) whose session already fired.
    late: LateRows,
    windows: Vec<(i64, i64)>,
}

impl WindowAssign {
    /// A WindowAssign node producing `schema` (the input's columns and the three window columns),
    /// keeping SESSION rows in `backend`.
    pub fn new(
        name: &str,
        spec: &WindowAssignSpec,
        schema: SchemaRef,
        backend: &StateBackend,
    ) -> Result<WindowAssign, RuntimeError> {
        // The input: the output without window_start, window_end and window_time.
        let n = schema.fields().len().saturating_sub(3);
        let input = Arc::new(ArrowSchema::new(schema.fields()[..n].to_vec()));
        let assign = match spec.window {
            WindowKind::Session { gap_ms } if gap_ms > 0 => Assign::Session {
                sessions: Box::new(Sessions::new(
                    gap_ms,
                    backend,
                    name,
                    rows_codec(RowCodec::new(Arc::clone(&input))),
                )),
                partition: KeyEncoder::new(spec.partition.clone()),
                input,
            },
            kind => Assign::Sliced(Slicing::of(&kind).ok_or_else(|| {
                RuntimeError::Plan(format!("window node `{name}`: invalid window {kind:?}"))
            })?),
        };
        Ok(WindowAssign {
            name: name.to_string(),
            schema,
            assign,
            time: spec.time,
            watermark: i64::MIN,
            late: LateRows::default(),
            windows: Vec::new(),
        })
    }

    /// Keeps the backend's resident budget of keys in memory (SESSION; see
    /// `KeyedState::settle`).
    fn settle(&mut self) -> Result<(), RuntimeError> {
        match &mut self.assign {
            Assign::Session { sessions, .. } => sessions
                .settle()
                .map_err(|e| RuntimeError::backend(&self.name, e)),
            Assign::Sliced(_) => Ok(()),
        }
    }

    /// `rows` (input columns) with the window columns appended.
    fn output(
        &self,
        rows: &RecordBatch,
        starts: Vec<i64>,
        ends: Vec<i64>,
    ) -> Result<RecordBatch, RuntimeError> {
        let arrow_err = |e| RuntimeError::arrow(&self.name, e);
        let fields = self.schema.fields();
        let n = rows.num_columns();
        let times: Vec<i64> = ends.iter().map(|e| e - 1).collect();
        let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
        columns.push(millis_array(starts, fields[n].data_type()).map_err(arrow_err)?);
        columns.push(millis_array(ends, fields[n + 1].data_type()).map_err(arrow_err)?);
        columns.push(millis_array(times, fields[n + 2].data_type()).map_err(arrow_err)?);
        RecordBatch::try_new(self.schema.clone(), columns).map_err(arrow_err)
    }
}

impl Operator for WindowAssign {
    /// TUMBLE, HOP and CUMULATE rows leave as they arrive: nothing to checkpoint. SESSION rows
    /// wait for their session to fire: the watermark, the input's column names (rows are
    /// written cell by cell, and read back by name across a new source column), then the
    /// sessions with their rows (with RocksDB, in its checkpoint).
    fn snapshot(&mut self, w: &mut StateWriter) -> Result<bool, RuntimeError> {
        let Assign::Session {
            sessions, input, ..
        } = &mut self.assign
        else {
            return Ok(false);
        };
        let err = |e| RuntimeError::state(&self.name, e);
        w.u32(SESSION_ASSIGN_STATE_LAYOUT);
        w.i64(self.watermark);
        RowCodec::new(Arc::clone(input)).write_names(w);
        sessions.snapshot(w).map_err(err)?;
        Ok(true)
    }

    fn restore(&mut self, r: &mut StateReader<'_>) -> Result<(), RuntimeError> {
        let name = &self.name;
        let err = |e| RuntimeError::state(name, e);
        let Assign::Session {
            sessions, input, ..
        } = &mut self.assign
        else {
            return Err(err(StateError(
                "a TUMBLE, HOP or CUMULATE window TVF has no state".into(),
            )));
        };
        let layout = r.u32().map_err(err)?;
        if !(1..=SESSION_ASSIGN_STATE_LAYOUT).contains(&layout) {
            return Err(err(StateError(format!(
                "SESSION window state has layout {layout}, this fsql reads layouts 1 to {SESSION_ASSIGN_STATE_LAYOUT}"
            ))));
        }
        self.watermark = r.i64().map_err(err)?;
        if layout == 1 {
            // Every session's rows in one batch first, then each session's number of rows.
            let mut rows = r.rows(input).map_err(err)?;
            sessions
                .restore_layout_1(r, |r| (0..r.count()?).map(|_| rows.next_row()).collect())
                .map_err(err)?;
            return rows.finish().map_err(err);
        }
        let codec = RowCodec::new(Arc::clone(input))
            .read_names(r)
            .map_err(err)?;
        sessions.set_payload(rows_codec(codec));
        sessions.restore(r, |_| Ok(())).map_err(err)
    }

    fn on_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Vec<Event>,
    ) -> Result<(), RuntimeError> {
        let arrow_err = |e| RuntimeError::arrow(&self.name, e);
        if self.time >= batch.num_columns() || batch.num_columns() + 3 != self.schema.fields().len()
        {
            return Err(RuntimeError::Plan(format!(
                "window node `{}`: a batch of {} columns does not fit its schema",
                self.name,
                batch.num_columns()
            )));
        }
        let ts = event_millis(batch.column(self.time)).map_err(arrow_err)?;
        let mut rows = Vec::new();
        let mut starts = Vec::new();
        let mut ends = Vec::new();
        let mut late = Vec::new();
        match &mut self.assign {
            Assign::Sliced(slicing) => {
                for i in 0..batch.num_rows() {
                    if ts.is_null(i) {
                        late.push(i as u32);
                        continue;
                    }
                    slicing.windows_of_slice(slicing.slice_end(ts.value(i)), &mut self.windows);
                    for &(s, e) in &self.windows {
                        rows.push(i as u32);
                        starts.push(s);
                        ends.push(e);
                    }
                }
            }
            Assign::Session {
                sessions,
                partition,
                ..
            } => {
                let keys = partition
                    .encode(&batch)
                    .map_err(|e| RuntimeError::arrow(&self.name, e))?;
                for i in 0..batch.num_rows() {
                    let held = match ts.is_null(i) {
                        true => None,
                        false => sessions.add(
                            keys.key(i),
                            ts.value(i),
                            self.watermark,
                            Vec::new,
                            |into, from| into.extend(from),
                        ),
                    };
                    match held {
                        Some(held) => held.push(batch.slice(i, 1)),
                        None => late.push(i as u32),
                    }
                }
            }
        }
        self.late.keep(&self.name, &batch, late)?;
        if !rows.is_empty() {
            let taken = take_record_batch(&batch, &UInt32Array::from(rows))
                .map_err(|e| RuntimeError::arrow(&self.name, e))?;
            out.push(Event::Batch(self.output(&taken, starts, ends)?));
        }
        self.settle()
    }

    fn on_watermark(&mut self, w: i64, out: &mut Vec<Event>) -> Result<(), RuntimeError> {
        if w > self.watermark {
            self.watermark = w;
            let mut fired = Vec::new();
            if let Assign::Session { sessions, .. } = &mut self.assign {
                sessions.fire(w, |s: Session<Vec<RecordBatch>>| fired.push(s));
            }
            for s in fired {
                let Some(first) = s.payload.first() else {
                    continue;
                };
                let rows = concat_batches(&first.schema(), &s.payload)
                    .map_err(|e| RuntimeError::arrow(&self.name, e))?;
                let n = rows.num_rows();
                out.push(Event::Batch(self.output(
                    &rows,
                    vec![s.start; n],
                    vec![s.end; n],
                )?));
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
}

/// The layout of a SESSION window TVF's checkpoint state (bumped when it changes): 2 writes
/// each session's rows cell by cell, in memory or in RocksDB (1: all rows as one batch first).
const SESSION_ASSIGN_STATE_LAYOUT: u32 = 2;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{DataType as ArrowType, Field, Schema as ArrowSchema, TimeUnit};

    use super::*;
    use crate::testkit::{Step, check_restore, drive};

    const MIN: i64 = 60_000;

    fn ts_field(name: &str) -> Field {
        Field::new(
            name,
            ArrowType::Timestamp(TimeUnit::Millisecond, None),
            true,
        )
    }

    /// Rows of (k, ts in minutes).
    fn batch(rows: &[(&str, i64)]) -> Step {
        let schema = Arc::new(ArrowSchema::new(vec![
            Field::new("k", ArrowType::Utf8, true),
            ts_field("ts"),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(
                    rows.iter().map(|r| Some(r.0)).collect::<Vec<_>>(),
                )),
                Arc::new(TimestampMillisecondArray::from(
                    rows.iter().map(|r| r.1 * MIN).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap();
        Step::Batch(0, batch)
    }

    fn assign(window: WindowKind, partition: Vec<usize>) -> WindowAssign {
        assign_in(window, partition, &StateBackend::memory())
    }

    /// [`assign`], keeping SESSION rows in `backend`.
    fn assign_in(
        window: WindowKind,
        partition: Vec<usize>,
        backend: &StateBackend,
    ) -> WindowAssign {
        let schema = Arc::new(ArrowSchema::new(vec![
            Field::new("k", ArrowType::Utf8, true),
            ts_field("ts"),
            ts_field("window_start"),
            ts_field("window_end"),
            ts_field("window_time"),
        ]));
        let spec = WindowAssignSpec {
            window,
            time: 1,
            partition,
        };
        WindowAssign::new("w", &spec, schema, backend).unwrap()
    }

    /// SESSION rows wait for their session, so the SESSION TVF has state: per key and globally,
    /// with sessions merging out of order and late rows, it continues exactly after a restore.
    /// TUMBLE keeps nothing and says so.
    #[test]
    fn a_restored_session_tvf_continues_exactly_where_the_checkpointed_one_was() {
        let steps = vec![
            batch(&[("a", 1), ("b", 2), ("a", 9)]),
            batch(&[("a", 5), ("c", 3), ("b", 20)]),
            Step::Watermark(6 * MIN),
            batch(&[("b", 4), ("a", 14), ("c", 30)]),
            Step::Watermark(13 * MIN),
            // ("a", 7) is late: its session [1, 13) fired. ("c", 31) extends a live session.
            batch(&[("a", 7), ("b", 23), ("c", 31)]),
            Step::Watermark(24 * MIN),
            batch(&[("b", 26), ("a", 40)]),
            Step::Watermark(i64::MAX),
        ];
        let session = WindowKind::Session { gap_ms: 4 * MIN };
        // With one key resident, the others' rows are spilled between steps, read back when a
        // row arrives or their session fires, and checkpointed from RocksDB.
        let rocksdb = crate::testkit::rocksdb_backend(1);
        for partition in [vec![0], vec![]] {
            let whole = check_restore(&|| Box::new(assign(session, partition.clone())), &steps);
            let rows = whole.iter().filter(|l| !l.starts_with("watermark")).count();
            assert_eq!(rows, 13, "{whole:?}");
            let spilled = check_restore(
                &|| Box::new(assign_in(session, partition.clone(), &rocksdb)),
                &steps,
            );
            assert_eq!(spilled, whole, "{partition:?}: spilled to RocksDB");
            check_layout_1_restore(session, &partition, &steps, &whole, &rocksdb);
        }
        let mut op = assign(session, vec![0]);
        drive(&mut op, &steps, &mut Vec::new()).unwrap();
        assert_eq!(op.late_rows(), 1);
        let tumble = WindowKind::Tumble {
            size_ms: 10 * MIN,
            offset_ms: 0,
        };
        let mut op = assign(tumble, vec![]);
        drive(&mut op, &steps, &mut Vec::new()).unwrap();
        assert!(!op.snapshot(&mut StateWriter::default()).unwrap());
    }

    /// A checkpoint of state layout 1 (every session's rows in one batch first), taken after any
    /// step, restores in memory and spilled to RocksDB, and the run goes on as if uninterrupted.
    fn check_layout_1_restore(
        session: WindowKind,
        partition: &[usize],
        steps: &[Step],
        whole: &[String],
        rocksdb: &StateBackend,
    ) {
        for cut in 0..=steps.len() {
            let mut before = Vec::new();
            let mut first = assign(session, partition.to_vec());
            drive(&mut first, &steps[..cut], &mut before).unwrap();
            let Assign::Session { sessions, .. } = &first.assign else {
                panic!("not a session window");
            };
            let mut rows = Vec::new();
            let mut held = StateWriter::default();
            sessions.snapshot_layout_1(&mut held, |b: &Vec<RecordBatch>, w| {
                w.count(b.len());
                rows.extend(b.iter().cloned());
            });
            let mut w = StateWriter::default();
            w.u32(1);
            w.i64(first.watermark);
            w.rows(&rows).unwrap();
            w.extend(&held.into_bytes());
            let old = w.into_bytes();
            for backend in [&StateBackend::memory(), rocksdb] {
                let mut second = assign_in(session, partition.to_vec(), backend);
                let mut r = StateReader::new(&old);
                second.restore(&mut r).unwrap();
                r.finish().unwrap();
                let mut out = before.clone();
                drive(&mut second, &steps[cut..], &mut out).unwrap();
                assert_eq!(out, whole, "{partition:?}: layout 1 restored at step {cut}");
            }
        }
    }
}
