//! A window TVF read without aggregation: each row once per window it belongs to.
//!
//! TUMBLE, HOP and CUMULATE rows are assigned as they arrive (stateless). SESSION rows wait,
//! per partition key, until their session fires, and then leave tagged with the whole merged
//! session, as Flink's SESSION TVF emits them.

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::SchemaRef;
use fsql_plan::{WindowAssignSpec, WindowKind};

use super::session::{Session, Sessions};
use super::{Slicing, event_millis, millis_array};
use crate::error::RuntimeError;
use crate::operator::{Event, LateRows, Operator};
use crate::operators::agg::key::KeyEncoder;

enum Assign {
    Sliced(Slicing),
    /// Buffered rows (one-row slices of input batches) per session.
    Session {
        sessions: Sessions<Vec<RecordBatch>>,
        partition: KeyEncoder,
    },
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
    /// A WindowAssign node producing `schema` (the input's columns and the three window columns).
    pub fn new(
        name: &str,
        spec: &WindowAssignSpec,
        schema: SchemaRef,
    ) -> Result<WindowAssign, RuntimeError> {
        let assign = match spec.window {
            WindowKind::Session { gap_ms } if gap_ms > 0 => Assign::Session {
                sessions: Sessions::new(gap_ms),
                partition: KeyEncoder::new(spec.partition.clone()),
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
    /// Stateless: nothing to checkpoint.
    fn snapshot(
        &mut self,
        _w: &mut crate::state::codec::StateWriter,
    ) -> Result<bool, RuntimeError> {
        Ok(false)
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
            } => {
                let keys = partition
                    .encode(&batch)
                    .map_err(|e| RuntimeError::arrow(&self.name, e))?;
                for i in 0..batch.num_rows() {
                    let held = match ts.is_null(i) {
                        true => None,
                        false => sessions.add(
                            keys.key(i),
                            Vec::new,
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
        Ok(())
    }

    fn on_watermark(&mut self, w: i64, out: &mut Vec<Event>) -> Result<(), RuntimeError> {
        if w > self.watermark {
            self.watermark = w;
            let mut fired = Vec::new();
            if let Assign::Session { sessions, .. } = &mut self.assign {
                sessions.fire(w, |_, s: Session<Vec<RecordBatch>>| fired.push(s));
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
        Ok(())
    }

    fn late_rows(&self) -> u64 {
        self.late.count()
    }

    fn take_late(&mut self) -> Option<RecordBatch> {
        self.late.take()
    }
}
