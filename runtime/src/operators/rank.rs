//! TopN without a window (Flink's Rank over an append-only input): `ROW_NUMBER() OVER
//! (PARTITION BY ... ORDER BY ...)` with `WHERE rownum <= N`, an updating relation.
//!
//! Each partition keeps its first N rows in `ORDER BY` order (ties in arrival order, or the
//! latest first for a deduplication keeping the last row). The input is append-only, so a row
//! that falls out of the first N can never come back, and N rows per partition are all the state.
//! Rows are processed one by one and emit Flink's changes (its `AppendOnlyTopNFunction`): a row
//! entering at rank r takes rank r (`-U` the row that had it, `+U` the new row), every row after
//! it moves down one rank (`-U` at its old rank... as the row before it takes it), and the row
//! that moves to a rank no row had before is inserted (`+I`); the row pushed past N is retracted
//! by the `-U` of its last rank.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use fsql_plan::RankSpec;

use crate::error::RuntimeError;
use crate::operator::{Changes, Event, Operator, RowKind};
use crate::operators::agg::key::KeyEncoder;
use crate::operators::ranked::{Ranked, SortKeyEncoder, codec, input_schema};
use crate::state::codec::{StateReader, StateWriter};
use crate::state::{KeyedState, StateBackend};

/// The layout of [`Rank`]'s checkpoint state.
const RANK_STATE_LAYOUT: u32 = 1;

/// The Rank operator.
pub struct Rank {
    name: String,
    schema: SchemaRef,
    partitions: KeyEncoder,
    sorter: SortKeyEncoder,
    limit: usize,
    latest_on_ties: bool,
    /// Each partition's first rows, in rank order.
    kept: KeyedState<Vec<Ranked>>,
    /// Where `kept` lives (kept for restores).
    backend: StateBackend,
    /// Arrival counter (it breaks ties).
    seq: u64,
}

impl Rank {
    /// A TopN producing `schema` (the input's columns, then the row number), keeping its
    /// partitions' rows in `backend`.
    pub fn new(
        name: &str,
        spec: &RankSpec,
        schema: SchemaRef,
        backend: &StateBackend,
    ) -> Result<Rank, RuntimeError> {
        let Some(limit) = spec.limit else {
            return Err(RuntimeError::Plan(format!(
                "rank node `{name}` has no limit (WHERE rownum <= N)"
            )));
        };
        if schema.fields().is_empty() {
            return Err(RuntimeError::Plan(format!(
                "rank node `{name}` has no columns"
            )));
        }
        let input = input_schema(&schema);
        Ok(Rank {
            name: name.to_string(),
            schema,
            partitions: KeyEncoder::new(spec.partition_by.clone()),
            sorter: SortKeyEncoder::new(&spec.order_by),
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            latest_on_ties: spec.latest_on_ties,
            kept: KeyedState::new(backend, name, || codec(input)),
            backend: backend.clone(),
            seq: 0,
        })
    }

    /// Keeps the backend's resident budget of partitions in memory (see `KeyedState::settle`).
    fn settle(&mut self) -> Result<(), RuntimeError> {
        self.kept
            .settle()
            .map_err(|e| RuntimeError::backend(&self.name, e))
    }
}

/// Where a row with sort key `sort` goes among a partition's kept rows `ranked`: after the rows
/// it ties with, or (`latest_on_ties`) before them.
fn position(ranked: &[Ranked], sort: &[u8], latest_on_ties: bool) -> usize {
    ranked.partition_point(|k| {
        if latest_on_ties {
            &*k.sort < sort
        } else {
            &*k.sort <= sort
        }
    })
}

/// The changes row `entry` entering a partition's kept rows `ranked` at `at` (< `limit`) makes,
/// appended to `out` as (row, rank, kind).
fn enter(
    ranked: &mut Vec<Ranked>,
    entry: Ranked,
    at: usize,
    limit: usize,
    out: &mut Vec<(RecordBatch, i64, RowKind)>,
) {
    let mut current = entry.row.clone();
    let mut rank = at + 1;
    for moved in &ranked[at..] {
        if rank > limit {
            break;
        }
        out.push((moved.row.clone(), rank as i64, RowKind::UpdateBefore));
        out.push((current, rank as i64, RowKind::UpdateAfter));
        current = moved.row.clone();
        rank += 1;
    }
    if rank <= limit {
        out.push((current, rank as i64, RowKind::Insert));
    }
    ranked.insert(at, entry);
    ranked.truncate(limit);
}

impl Operator for Rank {
    fn on_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Vec<Event>,
    ) -> Result<(), RuntimeError> {
        if batch.num_columns() + 1 != self.schema.fields().len() {
            return Err(RuntimeError::Plan(format!(
                "rank node `{}`: a batch of {} columns does not fit its schema",
                self.name,
                batch.num_columns()
            )));
        }
        if self.limit == 0 {
            // `rownum < 1`: no row is ever ranked.
            return Ok(());
        }
        let keys = self
            .partitions
            .encode(&batch)
            .map_err(|e| RuntimeError::arrow(&self.name, e))?;
        let sort = self.sorter.encode(&self.name, &batch)?;
        let mut changes = Vec::new();
        for i in 0..batch.num_rows() {
            let seq = self.seq;
            self.seq += 1;
            let key = sort.row(i).data();
            let ranked = self.kept.get_or_insert_with(keys.key(i), Vec::new);
            let at = position(ranked, key, self.latest_on_ties);
            if at >= self.limit {
                continue;
            }
            // A copy of the row, so the kept rows do not hold their whole input batches.
            let row = arrow::compute::take_record_batch(
                &batch,
                &arrow::array::UInt32Array::from(vec![i as u32]),
            )
            .map_err(|e| RuntimeError::arrow(&self.name, e))?;
            let entry = Ranked {
                sort: key.into(),
                seq,
                row,
            };
            enter(ranked, entry, at, self.limit, &mut changes);
        }
        if let Some((first, _, _)) = changes.first() {
            let rows: Vec<&RecordBatch> = changes.iter().map(|(r, _, _)| r).collect();
            let input = concat_batches(&first.schema(), rows)
                .map_err(|e| RuntimeError::arrow(&self.name, e))?;
            let mut columns = input.columns().to_vec();
            columns.push(Arc::new(Int64Array::from_iter_values(
                changes.iter().map(|(_, rank, _)| *rank),
            )));
            let batch = RecordBatch::try_new(self.schema.clone(), columns)
                .map_err(|e| RuntimeError::arrow(&self.name, e))?;
            out.push(Event::Changes(Changes {
                batch,
                kinds: changes.iter().map(|(_, _, k)| *k).collect(),
            }));
        }
        self.settle()
    }

    /// The arrival counter, whether the rows are in RocksDB, and every partition's kept rows
    /// with their sort keys (with RocksDB: the keys only). The sort-key encoder is rebuilt from
    /// the next batch, as it was built from the first.
    fn snapshot(&mut self, w: &mut StateWriter) -> Result<bool, RuntimeError> {
        let err = |e| RuntimeError::state(&self.name, e);
        w.u32(RANK_STATE_LAYOUT);
        w.u64(self.seq);
        // With RocksDB the snapshot holds the keys alone (`encode` is not called).
        self.kept.write_storage(w).map_err(err)?;
        let encode = codec(input_schema(&self.schema)).encode;
        self.kept
            .snapshot(w, |ranked, w| encode(ranked, w))
            .map_err(err)?;
        Ok(true)
    }

    fn restore(&mut self, r: &mut StateReader<'_>) -> Result<(), RuntimeError> {
        let name = &self.name;
        let err = |e| RuntimeError::state(name, e);
        r.expect_tag("TopN", RANK_STATE_LAYOUT).map_err(err)?;
        self.seq = r.u64().map_err(err)?;
        let input = input_schema(&self.schema);
        let spilled = r.bool().map_err(err)?;
        let decode = codec(Arc::clone(&input)).decode;
        self.kept = KeyedState::restore_checkpointed(
            r,
            spilled,
            &self.backend,
            name,
            || codec(input),
            |r| decode(r),
        )
        .map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
