//! Partition keys: the `PARTITION BY` columns of a batch encoded once per batch with Arrow's row
//! format (one allocation per batch, none per row), hashed with a fast non-cryptographic hash
//! ([`hash_key`]) and kept inline when short ([`KeyBytes`]), so finding a partition touches the
//! hash table and the partition itself, nothing else.

use std::hash::{BuildHasher, Hasher};

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::{DataType as ArrowType, Schema as ArrowSchema};
use arrow::error::ArrowError;
use arrow::row::{RowConverter, Rows, SortField};

use super::value::ValueType;
use crate::state::codec::{StateError, StateReader, StateWriter};

/// The type of `input` column `c`, a group key: it must exist and hold values an aggregate's
/// keys can be made of (a plan error otherwise).
pub(crate) fn group_key_type(input: &ArrowSchema, c: usize) -> Result<&ArrowType, String> {
    let t = input
        .fields()
        .get(c)
        .ok_or_else(|| format!("key column ${c} does not exist"))?
        .data_type();
    match ValueType::of(t) {
        Some(_) => Ok(t),
        None => Err(format!("cannot group by {t} values")),
    }
}

/// The partition keys of one batch.
pub(crate) enum BatchKeys {
    /// No `PARTITION BY`: every row is in the one partition (key `[]`).
    Single,
    Rows(Rows),
}

impl BatchKeys {
    /// The key bytes of row `i`.
    #[inline]
    pub(crate) fn key(&self, i: usize) -> &[u8] {
        match self {
            BatchKeys::Single => &[],
            BatchKeys::Rows(rows) => rows.row(i).data(),
        }
    }
}

/// Encodes the partition columns of batches.
pub(crate) struct KeyEncoder {
    columns: Vec<usize>,
    converter: Option<RowConverter>,
}

impl KeyEncoder {
    pub(crate) fn new(columns: Vec<usize>) -> KeyEncoder {
        KeyEncoder {
            columns,
            converter: None,
        }
    }

    /// The keys of every row of `batch`.
    pub(crate) fn encode(&mut self, batch: &RecordBatch) -> Result<BatchKeys, ArrowError> {
        if self.columns.is_empty() {
            return Ok(BatchKeys::Single);
        }
        let mut arrays = Vec::with_capacity(self.columns.len());
        for &c in &self.columns {
            if c >= batch.num_columns() {
                return Err(ArrowError::InvalidArgumentError(format!(
                    "partition column ${c} does not exist (the input has {} columns)",
                    batch.num_columns()
                )));
            }
            arrays.push(batch.column(c).clone());
        }
        if self.converter.is_none() {
            let fields = arrays
                .iter()
                .map(|a| SortField::new(a.data_type().clone()))
                .collect();
            self.converter = Some(RowConverter::new(fields)?);
        }
        match &self.converter {
            Some(conv) => Ok(BatchKeys::Rows(conv.convert_columns(&arrays)?)),
            None => Ok(BatchKeys::Single),
        }
    }
}

impl KeyEncoder {
    /// The keys of `batch`'s rows computed by `exprs` (a join's key expressions), and whether each
    /// row's key is free of NULLs (a NULL never matches). The encoder's columns are `0..exprs.len()`.
    pub(crate) fn encode_exprs(
        &mut self,
        node: &str,
        exprs: &[fsql_plan::Expr],
        batch: &RecordBatch,
    ) -> Result<(BatchKeys, Vec<bool>), crate::error::RuntimeError> {
        use crate::error::RuntimeError;
        let n = batch.num_rows();
        let mut arrays = Vec::with_capacity(exprs.len());
        let mut valid = vec![true; n];
        for e in exprs {
            let a = crate::eval::evaluate(e, batch).map_err(|e| RuntimeError::eval(node, e))?;
            if let Some(nulls) = a.logical_nulls() {
                for (i, v) in valid.iter_mut().enumerate() {
                    *v &= nulls.is_valid(i);
                }
            }
            arrays.push(a);
        }
        let fields: Vec<arrow::datatypes::Field> = arrays
            .iter()
            .enumerate()
            .map(|(i, a)| {
                arrow::datatypes::Field::new(format!("k{i}"), a.data_type().clone(), true)
            })
            .collect();
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(n));
        let key_batch = RecordBatch::try_new_with_options(
            std::sync::Arc::new(arrow::datatypes::Schema::new(fields)),
            arrays,
            &options,
        )
        .map_err(|e| RuntimeError::arrow(node, e))?;
        let keys = self
            .encode(&key_batch)
            .map_err(|e| RuntimeError::arrow(node, e))?;
        Ok((keys, valid))
    }

    /// The key columns of encoded keys (the inverse of [`KeyEncoder::encode`]), in key column
    /// order; none without key columns.
    pub(crate) fn decode(&self, keys: &[&[u8]]) -> Result<Vec<arrow::array::ArrayRef>, ArrowError> {
        let Some(conv) = &self.converter else {
            return Ok(vec![]);
        };
        let parser = conv.parser();
        conv.convert_rows(keys.iter().map(|k| parser.parse(k)))
    }
}

impl KeyEncoder {
    /// Writes `keys` (rows this encoder produced) for a checkpoint as the key columns they
    /// encode (Arrow IPC). Key bytes are decoded again when results are built, and Arrow's row
    /// decoder trusts its input, so [`KeyEncoder::restore_keys`] checks every restored key
    /// against these columns encoded afresh rather than decoding bytes read from a file.
    pub(crate) fn snapshot_keys(
        &self,
        keys: &[&[u8]],
        w: &mut StateWriter,
    ) -> Result<(), StateError> {
        let conv = match &self.converter {
            Some(conv) if !keys.is_empty() => conv,
            // No key columns (every key is `[]`), or no row seen yet (no keys).
            _ => {
                w.bool(false);
                return Ok(());
            }
        };
        let parser = conv.parser();
        let columns = conv
            .convert_rows(keys.iter().map(|k| parser.parse(k)))
            .map_err(|e| StateError(format!("decoding keys: {e}")))?;
        let fields: Vec<arrow::datatypes::Field> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                arrow::datatypes::Field::new(format!("k{i}"), c.data_type().clone(), true)
            })
            .collect();
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(keys.len()));
        let batch = RecordBatch::try_new_with_options(
            std::sync::Arc::new(arrow::datatypes::Schema::new(fields)),
            columns,
            &options,
        )
        .map_err(|e| StateError(format!("decoding keys: {e}")))?;
        w.bool(true);
        w.batch(&batch)
    }

    /// Reads what [`KeyEncoder::snapshot_keys`] wrote and checks that `restored` (the keys read
    /// back with the state, in the order they were written) are exactly those columns encoded
    /// again. The encoder then encodes as the one that produced them did, so keys of later rows
    /// match, and results of restored keys can be built before any new row arrives.
    pub(crate) fn restore_keys<'k>(
        &mut self,
        r: &mut StateReader<'_>,
        restored: impl Iterator<Item = &'k [u8]>,
    ) -> Result<(), StateError> {
        let encoded = if r.bool()? {
            let batch = r.batch()?;
            if batch.num_columns() != self.columns.len() {
                return Err(StateError(format!(
                    "keys of {} columns where the key has {}",
                    batch.num_columns(),
                    self.columns.len()
                )));
            }
            let fields = batch
                .columns()
                .iter()
                .map(|c| SortField::new(c.data_type().clone()))
                .collect();
            let bad = |e: ArrowError| StateError(format!("encoding keys: {e}"));
            let conv = RowConverter::new(fields).map_err(bad)?;
            let rows = conv.convert_columns(batch.columns()).map_err(bad)?;
            self.converter = Some(conv);
            Some(rows)
        } else {
            None
        };
        let mut n = 0;
        for (i, key) in restored.enumerate() {
            let expected = match &encoded {
                Some(rows) if i < rows.num_rows() => rows.row(i).data(),
                None if self.columns.is_empty() => &[],
                _ => return Err(StateError(format!("key {i} has no key columns written"))),
            };
            if key != expected {
                return Err(StateError(format!("key {i} differs from its key columns")));
            }
            n = i + 1;
        }
        match encoded {
            Some(rows) if rows.num_rows() != n => Err(StateError(format!(
                "{} keys written, {n} in the state",
                rows.num_rows()
            ))),
            _ => Ok(()),
        }
    }
}

/// A word-at-a-time hasher built on folded multiplication (as foldhash and ahash use): fast on
/// short keys and mixing every input bit into the low bits the table indexes by. Not
/// DoS-resistant: keys come from the pipeline's own data, and a skewed key space costs time,
/// not correctness.
#[derive(Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

impl Default for FxHasher {
    fn default() -> FxHasher {
        FxHasher { hash: SEED_0 }
    }
}

const SEED_0: u64 = 0x243f_6a88_85a3_08d3;
const SEED_1: u64 = 0x1319_8a2e_0370_7344;
const SEED_2: u64 = 0xa409_3822_299f_31d0;

/// The 128-bit product of `a` and `b`, folded to 64 bits.
#[inline]
fn folded_mul(a: u64, b: u64) -> u64 {
    let full = (a as u128).wrapping_mul(b as u128);
    (full as u64) ^ ((full >> 64) as u64)
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = folded_mul(self.hash ^ word, SEED_1);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        folded_mul(self.hash, SEED_2)
    }
}

/// The hash of key bytes.
#[inline]
pub(crate) fn hash_key(bytes: &[u8]) -> u64 {
    let mut h = FxHasher::default();
    h.write(bytes);
    h.finish()
}

/// Key bytes, inline up to 22 bytes (a row-encoded BIGINT is 9, a short string about 20).
#[derive(Clone, Debug)]
pub(crate) enum KeyBytes {
    Inline { len: u8, bytes: [u8; 22] },
    Heap(Box<[u8]>),
}

impl KeyBytes {
    pub(crate) fn new(key: &[u8]) -> KeyBytes {
        if key.len() <= 22 {
            let mut bytes = [0u8; 22];
            bytes[..key.len()].copy_from_slice(key);
            KeyBytes::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            KeyBytes::Heap(key.into())
        }
    }

    #[inline]
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            KeyBytes::Inline { len, bytes } => &bytes[..*len as usize],
            KeyBytes::Heap(b) => b,
        }
    }
}

impl Default for KeyBytes {
    fn default() -> KeyBytes {
        KeyBytes::new(&[])
    }
}

// Hashed and compared as the byte slice, so a map keyed by `KeyBytes` is searched with `&[u8]`.
impl std::hash::Hash for KeyBytes {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl PartialEq for KeyBytes {
    fn eq(&self, other: &KeyBytes) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for KeyBytes {}

impl std::borrow::Borrow<[u8]> for KeyBytes {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

/// Builds [`FxHasher`]s.
#[derive(Clone, Copy, Default)]
pub(crate) struct FxBuild;

impl BuildHasher for FxBuild {
    type Hasher = FxHasher;

    fn build_hasher(&self) -> FxHasher {
        FxHasher::default()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn equal_key_values_encode_to_equal_bytes() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![
                    Some("a"),
                    Some("b"),
                    Some("a"),
                    None,
                ])),
                Arc::new(Int64Array::from(vec![1, 1, 1, 1])),
            ],
        )
        .unwrap();
        let mut enc = KeyEncoder::new(vec![0, 1]);
        let keys = enc.encode(&batch).unwrap();
        assert_eq!(keys.key(0), keys.key(2));
        assert_ne!(keys.key(0), keys.key(1));
        assert_ne!(keys.key(0), keys.key(3));
        let single = KeyEncoder::new(vec![]).encode(&batch).unwrap();
        assert_eq!(single.key(3), &[] as &[u8]);
    }

    #[test]
    fn hasher_spreads_big_endian_integer_keys_over_low_bits() {
        // Row-format BIGINT keys differ in their last bytes; the table indexes by low bits.
        let mut buckets = std::collections::HashSet::new();
        for k in 0u64..4096 {
            let mut key = vec![1u8];
            key.extend_from_slice(&(k ^ (1 << 63)).to_be_bytes());
            let mut s = FxBuild.build_hasher();
            s.write(&key);
            buckets.insert(s.finish() & 4095);
        }
        assert!(
            buckets.len() > 2500,
            "{} of 4096 buckets used",
            buckets.len()
        );
    }

    #[test]
    fn short_keys_stay_inline() {
        assert_eq!(std::mem::size_of::<KeyBytes>(), 24);
        let short = KeyBytes::new(b"card-1");
        assert!(matches!(short, KeyBytes::Inline { .. }));
        assert_eq!(short.as_slice(), b"card-1");
        let long = KeyBytes::new(&[7u8; 40]);
        assert!(matches!(long, KeyBytes::Heap(_)));
        assert_eq!(long.as_slice(), &[7u8; 40]);
    }

    #[test]
    fn hasher_separates_lengths_and_contents() {
        let h = |b: &[u8]| {
            let mut s = FxBuild.build_hasher();
            s.write(b);
            s.finish()
        };
        assert_ne!(h(b"a"), h(b"a\0"));
        assert_ne!(h(b"abcdefgh1"), h(b"abcdefgh2"));
        assert_eq!(h(b"card-42"), h(b"card-42"));
    }

    #[test]
    fn restored_keys_must_be_the_key_columns_encoded_again() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("a"), None])),
                Arc::new(Int64Array::from(vec![1, 2])),
            ],
        )
        .unwrap();
        let mut enc = KeyEncoder::new(vec![0, 1]);
        let keys = enc.encode(&batch).unwrap();
        let stored = [keys.key(0).to_vec(), keys.key(1).to_vec()];
        let stored: Vec<&[u8]> = stored.iter().map(|k| &k[..]).collect();
        let mut w = StateWriter::default();
        enc.snapshot_keys(&stored, &mut w).unwrap();
        let bytes = w.into_bytes();
        // A fresh encoder takes the restored keys and can decode them before seeing a row.
        let mut back = KeyEncoder::new(vec![0, 1]);
        let mut r = StateReader::new(&bytes);
        back.restore_keys(&mut r, stored.iter().copied()).unwrap();
        r.finish().unwrap();
        let decoded = back.decode(&stored).unwrap();
        assert_eq!(decoded[0].as_ref(), batch.column(0).as_ref());
        assert_eq!(decoded[1].as_ref(), batch.column(1).as_ref());
        // A key that is not what its columns encode to, or a missing or extra key, is refused.
        let mut tampered = stored[1].to_vec();
        tampered[0] ^= 0xff;
        for keys in [
            vec![stored[0], &tampered[..]],
            vec![stored[0]],
            vec![stored[0], stored[1], stored[1]],
        ] {
            let mut fresh = KeyEncoder::new(vec![0, 1]);
            let mut r = StateReader::new(&bytes);
            assert!(fresh.restore_keys(&mut r, keys.into_iter()).is_err());
        }
    }
}
