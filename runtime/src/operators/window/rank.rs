//! Window TopN and deduplication: `ROW_NUMBER() OVER (PARTITION BY window_start, window_end, ...
//! ORDER BY ...)` over windowed rows, usually followed by `WHERE rownum <= N`.
//!
//! Rows wait per partition until the watermark reaches their window's end − 1 (the window is then
//! complete), and leave numbered in `ORDER BY` order (ties in arrival order). With a limit only the
//! first N rows of a partition are kept, so state is N rows per partition. A row arriving for a
//! window that already fired is late.

use std::collections::BTreeMap;

use arrow::array::{Array, Int64Array, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use fsql_plan::WindowRankSpec;

use super::event_millis;
use crate::error::RuntimeError;
use crate::operator::{Event, LateRows, Operator};
use crate::operators::agg::key::KeyEncoder;
use crate::operators::ranked::{Ranked, SortKeyEncoder, codec, input_schema};
use crate::state::codec::{StateError, StateReader, StateWriter};
use crate::state::{KeyedState, StateBackend};

/// The WindowRank operator.
pub struct WindowRank {
    name: String,
    schema: SchemaRef,
    spec: WindowRankSpec,
    partitions: KeyEncoder,
    sorter: SortKeyEncoder,
    /// Rows per partition key.
    kept: KeyedState<Vec<Ranked>>,
    /// Where `kept` lives (kept for restores).
    backend: StateBackend,
    /// Partition keys by window end.
    by_end: BTreeMap<i64, Vec<Box<[u8]>>>,
    watermark: i64,
    seq: u64,
    late: LateRows,
}

impl WindowRank {
    /// A window rank producing `schema` (the input's columns, then the row number), keeping its
    /// partitions' rows in `backend`.
    pub fn new(
        name: &str,
        spec: &WindowRankSpec,
        schema: SchemaRef,
        backend: &StateBackend,
    ) -> Result<WindowRank, RuntimeError> {
        if schema.fields().is_empty() {
            return Err(RuntimeError::Plan(format!(
                "window rank node `{name}` has no columns"
            )));
        }
        // The input's columns: the output's but the row number.
        let input = input_schema(&schema);
        Ok(WindowRank {
            name: name.to_string(),
            schema,
            partitions: KeyEncoder::new(spec.partition_by.clone()),
            spec: spec.clone(),
            sorter: SortKeyEncoder::new(&spec.order_by),
            kept: KeyedState::new(backend, name, || codec(input)),
            backend: backend.clone(),
            by_end: BTreeMap::new(),
            watermark: i64::MIN,
            seq: 0,
            late: LateRows::default(),
        })
    }

    fn arrow_err(&self, e: arrow::error::ArrowError) -> RuntimeError {
        RuntimeError::arrow(&self.name, e)
    }

    /// Keeps the backend's resident budget of partitions in memory (see `KeyedState::settle`).
    fn settle(&mut self) -> Result<(), RuntimeError> {
        self.kept
            .settle()
            .map_err(|e| RuntimeError::backend(&self.name, e))
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
        let sort = self.sorter.encode(&self.name, &batch)?;
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
        self.settle()
    }

    fn on_watermark(&mut self, w: i64, out: &mut Vec<Event>) -> Result<(), RuntimeError> {
        if w > self.watermark {
            self.watermark = w;
            self.fire(w, out)?;
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

    /// The watermark, the arrival counter (it breaks ties), every partition's kept rows with
    /// their sort keys (the rows gathered into one batch), and the partitions by window end.
    /// The sort-key encoder is rebuilt from the next batch, as it was built from the first.
    fn snapshot(&mut self, w: &mut StateWriter) -> Result<bool, RuntimeError> {
        let err = |e| RuntimeError::state(&self.name, e);
        w.u32(WINDOW_RANK_STATE_LAYOUT);
        w.i64(self.watermark);
        w.u64(self.seq);
        // Layout 2: whether the rows are in RocksDB (the snapshot holds the keys) or here.
        if self.kept.write_storage(w).map_err(err)? {
            self.kept.snapshot(w, |_, _| Ok(())).map_err(err)?;
        } else {
            let rows: Vec<RecordBatch> = self
                .kept
                .values()
                .flat_map(|(_, ranked)| ranked.iter().map(|k| k.row.clone()))
                .collect();
            w.rows(&rows).map_err(err)?;
            self.kept
                .snapshot(w, |ranked, w| {
                    w.count(ranked.len());
                    for k in ranked {
                        w.bytes(&k.sort);
                        w.u64(k.seq);
                    }
                    Ok(())
                })
                .map_err(err)?;
        }
        w.count(self.by_end.len());
        for (&end, keys) in &self.by_end {
            w.i64(end);
            w.count(keys.len());
            for key in keys {
                w.bytes(key);
            }
        }
        Ok(true)
    }

    /// Reads what [`WindowRank::snapshot`] wrote; every kept partition must be queued exactly
    /// once by its window end, and only kept ones.
    fn restore(&mut self, r: &mut StateReader<'_>) -> Result<(), RuntimeError> {
        let name = &self.name;
        let err = |e| RuntimeError::state(name, e);
        let bad = |m: &str| err(StateError(m.into()));
        // Layout 1 (before the RocksDB backend) is layout 2's inline rows without the flag.
        let flagged = match r.u32().map_err(err)? {
            1 => false,
            WINDOW_RANK_STATE_LAYOUT => true,
            got => {
                return Err(bad(&format!(
                    "Window TopN state has layout {got}, this fsql reads layouts 1 and {WINDOW_RANK_STATE_LAYOUT}"
                )));
            }
        };
        self.watermark = r.i64().map_err(err)?;
        self.seq = r.u64().map_err(err)?;
        let in_rocksdb = flagged && r.bool().map_err(err)?;
        let input = input_schema(&self.schema);
        let kept = if in_rocksdb {
            KeyedState::restore_spilled(r, &self.backend, name, || codec(input)).map_err(err)?
        } else {
            let mut rows = r.rows(&input).map_err(err)?;
            let kept = KeyedState::restore(r, |r| {
                (0..r.count()?)
                    .map(|_| {
                        Ok(Ranked {
                            sort: r.bytes()?.into(),
                            seq: r.u64()?,
                            row: rows.next_row()?,
                        })
                    })
                    .collect()
            })
            .map_err(err)?;
            rows.finish().map_err(err)?;
            kept.into_backend(&self.backend, name, || codec(input))
                .map_err(err)?
        };
        let mut queued = vec![false; kept.id_bound()];
        let mut by_end = BTreeMap::new();
        for _ in 0..r.count().map_err(err)? {
            let end = r.i64().map_err(err)?;
            let mut keys = Vec::new();
            for _ in 0..r.count().map_err(err)? {
                let key = r.bytes().map_err(err)?;
                match kept.find(key) {
                    Some(id) if !queued[id as usize] => queued[id as usize] = true,
                    _ => return Err(bad("a queued partition is not kept, or queued twice")),
                }
                keys.push(key.into());
            }
            if by_end.insert(end, keys).is_some() {
                return Err(bad("a window end is queued twice"));
            }
        }
        if queued.iter().filter(|q| **q).count() != kept.len() {
            return Err(bad("a kept partition is not queued"));
        }
        self.kept = kept;
        self.by_end = by_end;
        Ok(())
    }
}

/// The layout of a Window TopN node's checkpoint state (bumped when it changes). 2: a flag says
/// whether the partitions' rows are inline or in the RocksDB checkpoint.
const WINDOW_RANK_STATE_LAYOUT: u32 = 2;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{DataType as ArrowType, Field, Schema as ArrowSchema, TimeUnit};
    use fsql_plan::{DataType, Expr, SortKey};

    use super::*;
    use crate::testkit::{Step, check_restore, drive};

    const MIN: i64 = 60_000;

    fn ts_type() -> ArrowType {
        ArrowType::Timestamp(TimeUnit::Millisecond, None)
    }

    /// (window_start, window_end, supplier, price, ts).
    fn input_schema() -> Arc<ArrowSchema> {
        Arc::new(ArrowSchema::new(vec![
            Field::new("window_start", ts_type(), false),
            Field::new("window_end", ts_type(), false),
            Field::new("supplier", ArrowType::Utf8, true),
            Field::new("price", ArrowType::Int64, true),
            Field::new("ts", ts_type(), true),
        ]))
    }

    /// Rows of (supplier, price, ts in minutes) in 10-minute TUMBLE windows.
    fn batch(rows: &[(&str, Option<i64>, i64)]) -> RecordBatch {
        let start = |t: i64| t - t.rem_euclid(10);
        RecordBatch::try_new(
            input_schema(),
            vec![
                Arc::new(TimestampMillisecondArray::from(
                    rows.iter().map(|r| start(r.2) * MIN).collect::<Vec<_>>(),
                )),
                Arc::new(TimestampMillisecondArray::from(
                    rows.iter()
                        .map(|r| (start(r.2) + 10) * MIN)
                        .collect::<Vec<_>>(),
                )),
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

    /// A Window TopN over [`input_schema`] keeping its partitions in `backend`.
    fn rank_in(
        backend: &StateBackend,
        partition_by: Vec<usize>,
        order_by: Vec<SortKey>,
        limit: Option<u64>,
    ) -> WindowRank {
        let mut fields: Vec<Field> = input_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("rownum", ArrowType::Int64, false));
        let spec = WindowRankSpec {
            partition_by,
            window_end: 1,
            order_by,
            limit,
            latest_on_ties: false,
        };
        WindowRank::new("topn", &spec, Arc::new(ArrowSchema::new(fields)), backend).unwrap()
    }

    fn key(column: usize, t: DataType, descending: bool) -> SortKey {
        SortKey {
            expr: Expr::column(column, t, true),
            descending,
            nulls_first: !descending,
        }
    }

    /// Top 2 by price per window and supplier, every row per window in price order, and the
    /// last row per window (deduplication): out-of-order rows, ties, NULL prices and rows of
    /// windows that already fired, checkpointed after any step and restored, give exactly the
    /// uninterrupted output.
    #[test]
    fn a_restored_window_topn_continues_exactly_where_the_checkpointed_one_was() {
        let steps = vec![
            Step::Batch(
                0,
                batch(&[("s1", Some(5), 1), ("s2", Some(3), 2), ("s1", Some(9), 12)]),
            ),
            Step::Batch(
                0,
                batch(&[("s1", Some(7), 4), ("s1", None, 3), ("s2", Some(3), 8)]),
            ),
            Step::Watermark(5 * MIN),
            Step::Batch(
                0,
                batch(&[("s1", Some(8), 6), ("s2", Some(1), 15), ("s1", Some(5), 9)]),
            ),
            Step::Watermark(10 * MIN),
            // The first window fired: its rows are late now.
            Step::Batch(
                0,
                batch(&[
                    ("s1", Some(99), 7),
                    ("s2", Some(4), 11),
                    ("s1", Some(2), 19),
                ]),
            ),
            Step::Watermark(15 * MIN),
            Step::Batch(0, batch(&[("s2", Some(4), 13), ("s3", Some(6), 25)])),
            Step::Watermark(i64::MAX),
        ];
        let price = || key(3, DataType::BigInt, true);
        type Make<'a> = Box<dyn Fn(&StateBackend) -> WindowRank + 'a>;
        let makers: Vec<Make> = vec![
            Box::new(|b| rank_in(b, vec![0, 1, 2], vec![price()], Some(2))),
            Box::new(|b| rank_in(b, vec![0, 1], vec![key(3, DataType::BigInt, false)], None)),
            Box::new(|b| {
                let mut r = rank_in(
                    b,
                    vec![0, 1],
                    vec![key(4, DataType::Timestamp { precision: 3 }, true)],
                    Some(1),
                );
                r.spec.latest_on_ties = true;
                r
            }),
        ];
        // The RocksDB backend with one partition resident: the others' rows are spilled between
        // steps and read back, checkpointed as keys plus RocksDB, and the output is the same.
        let rocks = crate::testkit::rocksdb_backend(1);
        for make in &makers {
            let memory = StateBackend::memory();
            let whole = check_restore(&|| Box::new(make(&memory)), &steps);
            let rows = whole.iter().filter(|l| !l.starts_with("watermark")).count();
            assert!(rows >= 3, "{whole:?}");
            let mut op = make(&memory);
            drive(&mut op, &steps, &mut Vec::new()).unwrap();
            assert_eq!(op.late_rows(), 1);
            let in_rocks = check_restore(&|| Box::new(make(&rocks)), &steps);
            assert_eq!(in_rocks, whole, "RocksDB and memory differ");
        }
    }
}
