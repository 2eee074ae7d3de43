//! Window TopN and deduplication: `ROW_NUMBER() OVER (PARTITION BY window_start, window_end, ...
//! ORDER BY ...)` over windowed rows, usually followed by `WHERE rownum <= N`.
//!
//! Rows wait per partition until the watermark reaches their window's end − 1 (the window is then
//! complete), and leave numbered in `ORDER BY` order (ties in arrival order). With a limit only the
//! first N rows of a partition are kept, so state is N rows per partition. A row arriving for a
//! window that already fired is late.

use std::collections::BTreeMap;

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch};
use arrow::compute::SortOptions;
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, SortField};
use fsql_plan::WindowRankSpec;

use super::event_millis;
use crate::error::RuntimeError;
use crate::eval::evaluate;
use crate::operator::{Event, LateRows, Operator};
use crate::operators::agg::key::KeyEncoder;
use crate::state::KeyedState;

/// A kept row: its sort key, arrival order, and the row itself (a one-row slice).
struct Ranked {
    sort: Box<[u8]>,
    seq: u64,
    row: RecordBatch,
}

/// The WindowRank operator.
pub struct WindowRank {
    name: String,
    schema: SchemaRef,
    spec: WindowRankSpec,
    partitions: KeyEncoder,
    sorter: Option<RowConverter>,
    /// Rows per partition key.
    kept: KeyedState<Vec<Ranked>>,
    /// Partition keys by window end.
    by_end: BTreeMap<i64, Vec<Box<[u8]>>>,
    watermark: i64,
    seq: u64,
    late: LateRows,
}

impl WindowRank {
    /// A window rank producing `schema` (the input's columns, then the row number).
    pub fn new(
        name: &str,
        spec: &WindowRankSpec,
        schema: SchemaRef,
    ) -> Result<WindowRank, RuntimeError> {
        if schema.fields().is_empty() {
            return Err(RuntimeError::Plan(format!(
                "window rank node `{name}` has no columns"
            )));
        }
        Ok(WindowRank {
            name: name.to_string(),
            schema,
            partitions: KeyEncoder::new(spec.partition_by.clone()),
            spec: spec.clone(),
            sorter: None,
            kept: KeyedState::default(),
            by_end: BTreeMap::new(),
            watermark: i64::MIN,
            seq: 0,
            late: LateRows::default(),
        })
    }

    fn arrow_err(&self, e: arrow::error::ArrowError) -> RuntimeError {
        RuntimeError::arrow(&self.name, e)
    }

    /// The byte-comparable `ORDER BY` keys of `batch`'s rows.
    fn sort_keys(&mut self, batch: &RecordBatch) -> Result<arrow::row::Rows, RuntimeError> {
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.spec.order_by.len());
        for k in &self.spec.order_by {
            arrays.push(evaluate(&k.expr, batch).map_err(|e| RuntimeError::eval(&self.name, e))?);
        }
        if arrays.is_empty() {
            // No ORDER BY: every row sorts equal (arrival order decides).
            arrays.push(std::sync::Arc::new(arrow::array::NullArray::new(
                batch.num_rows(),
            )));
        }
        if self.sorter.is_none() {
            let fields = arrays
                .iter()
                .zip(
                    self.spec
                        .order_by
                        .iter()
                        .map(Some)
                        .chain(std::iter::repeat(None)),
                )
                .map(|(a, k)| {
                    let options = k.map_or(SortOptions::default(), |k| SortOptions {
                        descending: k.descending,
                        nulls_first: k.nulls_first,
                    });
                    SortField::new_with_options(a.data_type().clone(), options)
                })
                .collect();
            self.sorter = Some(RowConverter::new(fields).map_err(|e| self.arrow_err(e))?);
        }
        match &self.sorter {
            Some(s) => s.convert_columns(&arrays).map_err(|e| self.arrow_err(e)),
            None => Err(RuntimeError::Plan("no sorter".into())),
        }
    }

    /// Emits every partition whose window ends at or before `w + 1`.
    fn fire(&mut self, w: i64, out: &mut Vec<Event>) -> Result<(), RuntimeError> {
        let mut rows: Vec<RecordBatch> = Vec::new();
        let mut numbers: Vec<i64> = Vec::new();
        while let Some((&end, _)) = self.by_end.first_key_value() {
            if end - 1 > w {
                break;
            }
            let keys = self.by_end.pop_first().map(|(_, k)| k).unwrap_or_default();
            for key in keys {
                let Some(mut ranked) = self.kept.remove_key(&key) else {
                    continue;
                };
                ranked.sort_by(|a, b| a.sort.cmp(&b.sort).then(a.seq.cmp(&b.seq)));
                for (i, r) in ranked.into_iter().enumerate() {
                    numbers.push(i as i64 + 1);
                    rows.push(r.row);
                }
            }
        }
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let input = concat_batches(&first.schema(), &rows).map_err(|e| self.arrow_err(e))?;
        let mut columns = input.columns().to_vec();
        columns.push(std::sync::Arc::new(Int64Array::from(numbers)));
        let batch =
            RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| self.arrow_err(e))?;
        out.push(Event::Batch(batch));
        Ok(())
    }
}

impl Operator for WindowRank {
    fn on_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        _out: &mut Vec<Event>,
    ) -> Result<(), RuntimeError> {
        if batch.num_columns() + 1 != self.schema.fields().len()
            || self.spec.window_end >= batch.num_columns()
        {
            return Err(RuntimeError::Plan(format!(
                "window rank node `{}`: a batch of {} columns does not fit its schema",
                self.name,
                batch.num_columns()
            )));
        }
        let ends =
            event_millis(batch.column(self.spec.window_end)).map_err(|e| self.arrow_err(e))?;
        let keys = self
            .partitions
            .encode(&batch)
            .map_err(|e| RuntimeError::arrow(&self.name, e))?;
        let sort = self.sort_keys(&batch)?;
        let limit = self.spec.limit.map_or(usize::MAX, |l| l as usize);
        let mut late = Vec::new();
        for i in 0..batch.num_rows() {
            if ends.is_null(i) || ends.value(i) - 1 <= self.watermark {
                late.push(i as u32);
                continue;
            }
            let key = keys.key(i);
            let ranked = match self.kept.get_mut_by_key(key) {
                Some(r) => r,
                None => {
                    self.by_end
                        .entry(ends.value(i))
                        .or_default()
                        .push(key.into());
                    self.kept.get_or_insert_with(key, Vec::new)
                }
            };
            let entry = Ranked {
                sort: sort.row(i).data().into(),
                seq: self.seq,
                row: batch.slice(i, 1),
            };
            self.seq += 1;
            if self.spec.latest_on_ties
                && limit == 1
                && ranked.first().is_some_and(|kept| kept.sort == entry.sort)
            {
                // Deduplication keeping the last row: the latest of equal times wins.
                ranked[0] = entry;
            } else if ranked.len() < limit {
                ranked.push(entry);
            } else if let Some((worst, _)) = ranked
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.sort.cmp(&b.1.sort).then(a.1.seq.cmp(&b.1.seq)))
                .filter(|(_, w)| entry.sort < w.sort)
            {
                // Beats the current last of the top N (ties keep the earlier row).
                ranked[worst] = entry;
            }
        }
        self.late.keep(&self.name, &batch, late)?;
        Ok(())
    }

    fn on_watermark(&mut self, w: i64, out: &mut Vec<Event>) -> Result<(), RuntimeError> {
        if w > self.watermark {
            self.watermark = w;
            self.fire(w, out)?;
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
