//! The byte encoding of operator state in checkpoints.
//!
//! A snapshot is a flat little-endian byte string an operator writes field by field
//! ([`StateWriter`]) and reads back in the same order ([`StateReader`]); there is no schema in
//! the bytes, so each operator starts its snapshot with a version tag of its own layout and
//! refuses another. Rows go in as Arrow IPC streams ([`StateWriter::batch`]), so any column type
//! round-trips exactly. Reading never panics: truncated or corrupt bytes are a
//! [`StateError`], which names what was being read.
//!
//! ```
//! use fsql_runtime::state::codec::{StateReader, StateWriter};
//!
//! let mut w = StateWriter::default();
//! w.u32(7);
//! w.str("card-1");
//! let bytes = w.into_bytes();
//! let mut r = StateReader::new(&bytes);
//! assert_eq!(r.u32().unwrap(), 7);
//! assert_eq!(r.str().unwrap(), "card-1");
//! r.finish().unwrap();
//! ```

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions, new_null_array};
use arrow::compute::concat_batches;
use arrow::datatypes::Schema;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;

/// State bytes that cannot be decoded (truncated, corrupt, or of another layout).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StateError(pub String);

/// Builds a snapshot's bytes.
#[derive(Debug, Default)]
pub struct StateWriter {
    buf: Vec<u8>,
}

impl StateWriter {
    /// A writer appending to `buf` (what it holds already stays in front).
    pub fn appending(buf: Vec<u8>) -> StateWriter {
        StateWriter { buf }
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// Appends a boolean as one byte.
    pub fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }

    /// Appends a `u32`.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Appends a `u64`.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Appends an `i64`.
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Appends an `i128`.
    pub fn i128(&mut self, v: i128) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Appends an `f64` as its bit pattern (NaN payloads and `-0.0` survive).
    pub fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }

    /// Appends a length or count (as a `u64`).
    pub fn count(&mut self, n: usize) {
        self.u64(n as u64);
    }

    /// Appends length-prefixed bytes.
    pub fn bytes(&mut self, v: &[u8]) {
        self.count(v.len());
        self.buf.extend_from_slice(v);
    }

    /// Appends a length-prefixed UTF-8 string.
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }

    /// Appends a batch as a length-prefixed Arrow IPC stream.
    pub fn batch(&mut self, batch: &RecordBatch) -> Result<(), StateError> {
        let mut ipc = Vec::new();
        {
            let mut w = StreamWriter::try_new(&mut ipc, &batch.schema())
                .map_err(|e| StateError(format!("encoding rows: {e}")))?;
            w.write(batch)
                .map_err(|e| StateError(format!("encoding rows: {e}")))?;
            w.finish()
                .map_err(|e| StateError(format!("encoding rows: {e}")))?;
        }
        self.bytes(&ipc);
        Ok(())
    }

    /// Appends the rows of `parts` (batches of one schema, such as the one-row slices an
    /// operator keeps) as one batch: their number, then, when there are any, the rows
    /// ([`StateWriter::batch`]). [`StateReader::rows`] hands them back in the same order.
    pub fn rows(&mut self, parts: &[RecordBatch]) -> Result<(), StateError> {
        let n = parts.iter().map(RecordBatch::num_rows).sum();
        self.count(n);
        let Some(first) = parts.first().filter(|_| n > 0) else {
            return Ok(());
        };
        let rows = concat_batches(&first.schema(), parts)
            .map_err(|e| StateError(format!("gathering rows: {e}")))?;
        self.batch(&rows)
    }

    /// Appends bytes another writer produced (a part of the same snapshot encoded elsewhere).
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads a snapshot's bytes in the order they were written.
#[derive(Debug)]
pub struct StateReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> StateReader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        StateReader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], StateError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                StateError(format!(
                    "state ends after {} bytes where {n} more were expected",
                    self.buf.len()
                ))
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StateError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, StateError> {
        Ok(self.array::<1>()?[0])
    }

    /// Reads a boolean.
    pub fn bool(&mut self) -> Result<bool, StateError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(StateError(format!("byte {b} where a boolean was expected"))),
        }
    }

    /// Reads a `u32`.
    pub fn u32(&mut self) -> Result<u32, StateError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// Reads a `u64`.
    pub fn u64(&mut self) -> Result<u64, StateError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Reads an `i64`.
    pub fn i64(&mut self) -> Result<i64, StateError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// Reads an `i128`.
    pub fn i128(&mut self) -> Result<i128, StateError> {
        Ok(i128::from_le_bytes(self.array()?))
    }

    /// Reads an `f64`.
    pub fn f64(&mut self) -> Result<f64, StateError> {
        Ok(f64::from_bits(self.u64()?))
    }

    /// Reads a length or count; it cannot exceed the bytes left (each counted item takes at least one
    /// byte), so a corrupt length never makes a reader allocate more than the snapshot's size.
    pub fn count(&mut self) -> Result<usize, StateError> {
        let n = self.u64()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n > left {
            return Err(StateError(format!(
                "a length of {n} with only {left} bytes left"
            )));
        }
        Ok(n as usize)
    }

    /// Reads length-prefixed bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8], StateError> {
        let n = self.count()?;
        self.take(n)
    }

    /// Reads a length-prefixed UTF-8 string.
    pub fn str(&mut self) -> Result<&'a str, StateError> {
        let b = self.bytes()?;
        std::str::from_utf8(b).map_err(|e| StateError(format!("a string that is not UTF-8: {e}")))
    }

    /// Reads a batch written by [`StateWriter::batch`].
    ///
    /// Arrow's IPC reader panics on some malformed input (a damaged field type, say), so the
    /// decoding runs under `catch_unwind`: damaged rows are an error like any other damage.
    pub fn batch(&mut self) -> Result<RecordBatch, StateError> {
        let ipc = self.bytes()?;
        check_ipc_lengths(ipc)?;
        let decode = || {
            let mut reader = StreamReader::try_new(Cursor::new(ipc), None)
                .map_err(|e| StateError(format!("decoding rows: {e}")))?;
            let schema = reader.schema();
            match reader.next() {
                Some(batch) => batch.map_err(|e| StateError(format!("decoding rows: {e}"))),
                None => Ok(RecordBatch::new_empty(Arc::clone(&schema))),
            }
        };
        std::panic::catch_unwind(decode)
            .unwrap_or_else(|_| Err(StateError("decoding rows: malformed Arrow IPC data".into())))
    }

    /// Reads what [`StateWriter::rows`] wrote for an input now of `schema`: rows written before
    /// the input gained columns are widened to it ([`widen`]).
    pub fn rows(&mut self, schema: &Schema) -> Result<StoredRows, StateError> {
        let n = self.count()?;
        if n == 0 {
            return Ok(StoredRows {
                rows: None,
                next: 0,
            });
        }
        let rows = widen(self.batch()?, schema)?;
        if rows.num_rows() != n {
            return Err(StateError(format!(
                "{} rows where {n} were written",
                rows.num_rows()
            )));
        }
        Ok(StoredRows {
            rows: Some(rows),
            next: 0,
        })
    }

    /// Checks a layout tag written with [`StateWriter::u32`] first: a snapshot of another
    /// layout (another fsql version's) is refused rather than misread.
    pub fn expect_tag(&mut self, what: &str, tag: u32) -> Result<(), StateError> {
        let got = self.u32()?;
        if got == tag {
            Ok(())
        } else {
            Err(StateError(format!(
                "{what} state has layout {got}, this fsql reads layout {tag}"
            )))
        }
    }

    /// The bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Checks that every byte was read: trailing bytes mean the layouts disagree.
    pub fn finish(&self) -> Result<(), StateError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(StateError(format!(
                "{} bytes left over after the state was read",
                self.buf.len() - self.pos
            )))
        }
    }
}

/// Stored rows as rows of `to`: unchanged when they have its columns, else (their input gained
/// columns since they were written, which the restore checked against the plan) each column of
/// `to` taken by name, and a column the rows lack all NULL. The schema becomes `to`'s.
pub fn widen(rows: RecordBatch, to: &Schema) -> Result<RecordBatch, StateError> {
    let refuse = |m: String| Err(StateError(format!("stored rows do not fit the input: {m}")));
    let options = RecordBatchOptions::new().with_row_count(Some(rows.num_rows()));
    let have = rows.schema();
    let columns = if have.fields().len() == to.fields().len() {
        rows.columns().to_vec()
    } else {
        let mut used = 0;
        let mut columns = Vec::with_capacity(to.fields().len());
        for f in to.fields() {
            match have.column_with_name(f.name()) {
                Some((i, had)) if had.data_type() == f.data_type() => {
                    used += 1;
                    columns.push(Arc::clone(rows.column(i)));
                }
                Some((_, had)) => {
                    return refuse(format!(
                        "column `{}` was {}, is {}",
                        f.name(),
                        had.data_type(),
                        f.data_type()
                    ));
                }
                None if f.is_nullable() => {
                    columns.push(new_null_array(f.data_type(), rows.num_rows()));
                }
                None => return refuse(format!("new column `{}` is NOT NULL", f.name())),
            }
        }
        if used != have.fields().len() {
            return refuse(format!(
                "{} stored columns, {used} of them in the input",
                have.fields().len()
            ));
        }
        columns
    };
    RecordBatch::try_new_with_options(Arc::new(to.clone()), columns, &options)
        .map_err(|e| StateError(format!("stored rows of another shape: {e}")))
}

/// Rows read by [`StateReader::rows`], handed out one at a time in the order they were written.
#[derive(Debug)]
pub struct StoredRows {
    rows: Option<RecordBatch>,
    next: usize,
}

impl StoredRows {
    /// All the rows as one batch (`None`: there were none).
    pub fn batch(&self) -> Option<&RecordBatch> {
        self.rows.as_ref()
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.rows.as_ref().map_or(0, RecordBatch::num_rows)
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next row, as a one-row batch (sharing the buffers of the others).
    pub fn next_row(&mut self) -> Result<RecordBatch, StateError> {
        match &self.rows {
            Some(rows) if self.next < rows.num_rows() => {
                self.next += 1;
                Ok(rows.slice(self.next - 1, 1))
            }
            _ => Err(StateError(format!(
                "row {} is referenced but only {} were written",
                self.next,
                self.len()
            ))),
        }
    }

    /// Checks that every row was handed out: the state references each row exactly once.
    pub fn finish(&self) -> Result<(), StateError> {
        if self.next == self.len() {
            Ok(())
        } else {
            Err(StateError(format!(
                "{} rows written, {} referenced",
                self.len(),
                self.next
            )))
        }
    }
}

/// Checks the lengths an Arrow IPC stream declares (each message's metadata and body) against
/// the bytes there are, before Arrow's reader allocates them: it trusts them, and a damaged
/// length would make it allocate terabytes and abort the process.
fn check_ipc_lengths(ipc: &[u8]) -> Result<(), StateError> {
    let bad = |m: &str| StateError(format!("decoding rows: {m}"));
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(ipc.get(at..at + 4)?.try_into().ok()?))
    };
    let mut at = 0usize;
    loop {
        let Some(mut len) = word(at) else {
            return Ok(());
        };
        at += 4;
        if len == 0xFFFF_FFFF {
            len = word(at).ok_or_else(|| bad("a message length is cut off"))?;
            at += 4;
        }
        if len == 0 {
            return Ok(());
        }
        let meta = ipc
            .get(at..at.saturating_add(len as usize))
            .ok_or_else(|| bad("a message is longer than the rows' bytes"))?;
        let message = arrow::ipc::root_as_message(meta)
            .map_err(|e| bad(&format!("a message is damaged: {e}")))?;
        at += len as usize;
        let body = usize::try_from(message.bodyLength())
            .ok()
            .filter(|&b| b <= ipc.len() - at)
            .ok_or_else(|| bad("a message body is longer than the rows' bytes"))?;
        at += body;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn stored_rows_widen_by_name_with_the_new_column_null() {
        let old = Arc::new(Schema::new(vec![
            Field::new("card", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]));
        let rows = RecordBatch::try_new(
            old,
            vec![
                Arc::new(StringArray::from(vec!["a", "b"])),
                Arc::new(Int64Array::from(vec![1, 2])),
            ],
        )
        .unwrap();
        let mut w = StateWriter::default();
        w.rows(&[rows]).unwrap();
        let bytes = w.into_bytes();
        // A column added between the two: `n` moves, the new one is NULL.
        let wide = Schema::new(vec![
            Field::new("card", DataType::Utf8, true),
            Field::new("device", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]);
        let got = StateReader::new(&bytes).rows(&wide).unwrap();
        let got = got.batch().unwrap();
        assert_eq!(got.schema().as_ref(), &wide);
        assert_eq!(got.column(1).null_count(), 2);
        let n = got.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(n.values(), &[1, 2]);
        // Refused: a new column that is NOT NULL, a stored column the input no longer has, a
        // column whose type changed.
        let not_null = Schema::new(vec![
            Field::new("card", DataType::Utf8, true),
            Field::new("device", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
        ]);
        let dropped = Schema::new(vec![
            Field::new("card", DataType::Utf8, true),
            Field::new("device", DataType::Utf8, true),
            Field::new("m", DataType::Int64, true),
        ]);
        let retyped = Schema::new(vec![
            Field::new("card", DataType::Utf8, true),
            Field::new("device", DataType::Utf8, true),
            Field::new("n", DataType::Float64, true),
        ]);
        for to in [not_null, dropped, retyped] {
            let e = StateReader::new(&bytes).rows(&to).unwrap_err();
            assert!(e.0.contains("stored rows do not fit the input"), "{e:?}");
        }
    }

    #[test]
    fn values_and_rows_round_trip() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("card", DataType::Utf8, true),
            Field::new("amount", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("c1"), None])),
                Arc::new(Int64Array::from(vec![Some(5), Some(-7)])),
            ],
        )
        .unwrap();
        let mut w = StateWriter::default();
        w.bool(true);
        w.i64(-3);
        w.i128(i128::MIN);
        w.f64(-0.0);
        w.batch(&batch).unwrap();
        w.str("é");
        let bytes = w.into_bytes();
        let mut r = StateReader::new(&bytes);
        assert!(r.bool().unwrap());
        assert_eq!(r.i64().unwrap(), -3);
        assert_eq!(r.i128().unwrap(), i128::MIN);
        assert_eq!(r.f64().unwrap().to_bits(), (-0.0f64).to_bits());
        assert_eq!(r.batch().unwrap(), batch);
        assert_eq!(r.str().unwrap(), "é");
        r.finish().unwrap();
    }

    #[test]
    fn damaged_rows_are_an_error_not_a_panic() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("card", DataType::Utf8, true),
            Field::new("amount", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("c1"), None, Some("c3")])),
                Arc::new(Int64Array::from(vec![Some(5), Some(-7), None])),
            ],
        )
        .unwrap();
        let mut w = StateWriter::default();
        w.batch(&batch).unwrap();
        let bytes = w.into_bytes();
        // Every byte of the Arrow IPC payload damaged in turn (two ways): an error or some
        // batch, never a panic out of the reader.
        for at in 8..bytes.len() {
            for flip in [0xff, 0x01] {
                let mut damaged = bytes.clone();
                damaged[at] ^= flip;
                let _ = StateReader::new(&damaged).batch();
            }
        }
    }

    #[test]
    fn truncated_or_corrupt_state_is_an_error_not_a_panic() {
        let mut w = StateWriter::default();
        w.str("abcdef");
        w.u64(9);
        let bytes = w.into_bytes();
        for cut in 0..bytes.len() {
            let mut r = StateReader::new(&bytes[..cut]);
            let ok = r.str().is_ok() && r.u64().is_ok();
            assert!(!ok, "a snapshot cut at {cut} bytes read as whole");
        }
        // A huge length is refused before anything is allocated.
        let mut w = StateWriter::default();
        w.u64(u64::MAX);
        let bytes = w.into_bytes();
        assert!(StateReader::new(&bytes).bytes().is_err());
        let mut r = StateReader::new(&[2]);
        assert!(r.bool().is_err());
        let mut w = StateWriter::default();
        w.u32(1);
        let bytes = w.into_bytes();
        assert!(StateReader::new(&bytes).expect_tag("OVER", 2).is_err());
    }

    #[test]
    fn kept_rows_round_trip_as_one_batch_and_are_handed_out_in_order() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(vec![Some(1), None, Some(3)]))],
        )
        .unwrap();
        let kept = [batch.slice(2, 1), batch.slice(0, 2)];
        let mut w = StateWriter::default();
        w.rows(&kept).unwrap();
        w.rows(&[]).unwrap();
        let bytes = w.into_bytes();
        let mut r = StateReader::new(&bytes);
        let mut rows = r.rows(&schema).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows.next_row().unwrap(), batch.slice(2, 1));
        assert!(rows.finish().is_err(), "two rows were not handed out");
        assert_eq!(rows.next_row().unwrap(), batch.slice(0, 1));
        assert_eq!(rows.next_row().unwrap(), batch.slice(1, 1));
        assert!(rows.next_row().is_err(), "only three rows were written");
        rows.finish().unwrap();
        let none = r.rows(&schema).unwrap();
        assert!(none.is_empty() && none.batch().is_none());
        r.finish().unwrap();
        // Rows that do not fit the input (here: it has a NOT NULL column they lack) are refused.
        let other = Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("m", DataType::Int64, false),
        ]);
        assert!(StateReader::new(&bytes).rows(&other).is_err());
    }
}
