//! Watermark mode's buffer: rows waiting for the watermark to pass their event time, with the
//! input batches (with their evaluated arguments and partition keys) they come from. A batch is
//! released once all its waiting rows are processed.

use arrow::array::RecordBatch;
use arrow::compute::interleave_record_batch;
use arrow::error::ArrowError;

use super::partition::{BatchColumns, Batches, RowRef};
use crate::operators::agg::key::BatchKeys;

struct Stored {
    batch: RecordBatch,
    columns: BatchColumns,
    keys: BatchKeys,
    /// Rows of the batch still waiting.
    waiting: usize,
}

/// Rows waiting for the watermark.
#[derive(Default)]
pub(crate) struct Pending {
    slots: Vec<Option<Stored>>,
    free: Vec<u32>,
    rows: Vec<RowRef>,
    /// The smallest event time in `rows` (`i64::MAX` when empty).
    min_ts: i64,
}

static EMPTY: BatchColumns = BatchColumns {
    stored: Vec::new(),
    defaults: Vec::new(),
};

impl Pending {
    pub(crate) fn new() -> Pending {
        Pending {
            min_ts: i64::MAX,
            ..Pending::default()
        }
    }

    /// Keeps `batch` while rows of it wait; returns its slot.
    pub(crate) fn store(
        &mut self,
        batch: RecordBatch,
        columns: BatchColumns,
        keys: BatchKeys,
    ) -> u32 {
        let s = Stored {
            batch,
            columns,
            keys,
            waiting: 0,
        };
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(s);
                slot
            }
            None => {
                self.slots.push(Some(s));
                (self.slots.len() - 1) as u32
            }
        }
    }

    /// A row of a stored batch starts waiting.
    #[inline]
    pub(crate) fn push(&mut self, r: RowRef) {
        if let Some(Some(s)) = self.slots.get_mut(r.slot as usize) {
            s.waiting += 1;
        }
        self.min_ts = self.min_ts.min(r.ts);
        self.rows.push(r);
    }

    /// Frees the batch in `slot` if none of its rows wait (after storing and pushing its rows).
    pub(crate) fn seal(&mut self, slot: u32) {
        if self
            .slots
            .get(slot as usize)
            .is_some_and(|s| s.as_ref().is_some_and(|s| s.waiting == 0))
        {
            self.slots[slot as usize] = None;
            self.free.push(slot);
        }
    }

    /// Moves the rows with event time ≤ `w` into `ready`, in (event time, arrival) order.
    pub(crate) fn take_ready(&mut self, w: i64, ready: &mut Vec<RowRef>) {
        if self.rows.is_empty() || self.min_ts > w {
            return;
        }
        // Stable and adaptive: the kept rows are sorted and new ones mostly are, so this is
        // close to a linear merge of a few runs.
        self.rows.sort_by_key(|r| (r.ts, r.seq));
        let k = self.rows.partition_point(|r| r.ts <= w);
        ready.extend(self.rows.drain(..k));
        self.min_ts = self.rows.first().map_or(i64::MAX, |r| r.ts);
    }

    /// A waiting row of `slot` was processed.
    pub(crate) fn release(&mut self, slot: u32) {
        if let Some(Some(s)) = self.slots.get_mut(slot as usize) {
            s.waiting = s.waiting.saturating_sub(1);
        }
        self.seal(slot);
    }

    /// The input batch in `slot`.
    pub(crate) fn batch(&self, slot: u32) -> Option<&RecordBatch> {
        self.slots
            .get(slot as usize)
            .and_then(Option::as_ref)
            .map(|s| &s.batch)
    }

    /// The partition key of `row` of the batch in `slot`.
    #[inline]
    pub(crate) fn key(&self, slot: u32, row: u32) -> &[u8] {
        match self.slots.get(slot as usize) {
            Some(Some(s)) if (row as usize) < s.batch.num_rows() => s.keys.key(row as usize),
            _ => &[],
        }
    }

    /// The waiting rows (their input columns) in arrival order, for a checkpoint: re-buffered
    /// in this order after a restore, they wait exactly as they did.
    pub(crate) fn waiting_rows(&self) -> Result<Option<RecordBatch>, ArrowError> {
        if self.rows.is_empty() {
            return Ok(None);
        }
        let mut rows: Vec<&RowRef> = self.rows.iter().collect();
        rows.sort_by_key(|r| r.seq);
        let mut batches: Vec<&RecordBatch> = Vec::new();
        let mut index_of: Vec<usize> = vec![usize::MAX; self.slots.len()];
        let mut indices = Vec::with_capacity(rows.len());
        for r in rows {
            let slot = r.slot as usize;
            let Some(batch) = self.batch(r.slot) else {
                continue;
            };
            if index_of[slot] == usize::MAX {
                index_of[slot] = batches.len();
                batches.push(batch);
            }
            indices.push((index_of[slot], r.row as usize));
        }
        if batches.is_empty() {
            return Ok(None);
        }
        interleave_record_batch(&batches, &indices).map(Some)
    }

    /// The arrival sequence numbers of the waiting rows, in [`Pending::waiting_rows`]' order.
    pub(crate) fn waiting_seqs(&self) -> Vec<u64> {
        let mut seqs: Vec<u64> = self.rows.iter().map(|r| r.seq).collect();
        seqs.sort_unstable();
        seqs
    }

    /// Gives the rows waiting (just re-buffered from [`Pending::waiting_rows`], in that order)
    /// back their arrival sequence numbers; `false` if the counts differ.
    pub(crate) fn restore_seqs(&mut self, seqs: &[u64]) -> bool {
        if seqs.len() != self.rows.len() {
            return false;
        }
        for (r, s) in self.rows.iter_mut().zip(seqs) {
            r.seq = *s;
        }
        true
    }

    /// Rows waiting.
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// Batches held.
    pub(crate) fn batches(&self) -> usize {
        self.slots.iter().flatten().count()
    }
}

impl Batches for Pending {
    fn columns(&self, slot: u32) -> &BatchColumns {
        self.slots
            .get(slot as usize)
            .and_then(Option::as_ref)
            .map_or(&EMPTY, |s| &s.columns)
    }
}
