//! Rows inside spilled values: a RocksDB value that holds rows (a pattern's partition, a join
//! key's kept rows) writes them cell by cell as tagged [`Value`]s and reads them back as columns
//! of the operator's row schema.
//!
//! Checkpoints write all of an operator's rows as one Arrow IPC stream; per value, IPC would
//! repeat the schema (kilobytes for a few rows) and cost microseconds of setup on every spill and
//! read-back. This encoding is the cells alone, so a value is about the size of its data. Rows
//! with a column of a type without a [`Value`] form (lists, maps, structs) are written as IPC.
//!
//! ```ignore
//! let codec = RowCodec::new(schema);
//! codec.encode(&[(&batch, 3), (&batch, 7)], &mut w)?;
//! let rows = codec.decode(&mut r)?; // two rows of `schema`
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, RecordBatchOptions, new_null_array};
use arrow::compute::kernels::interleave::interleave;
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal128Type, DurationMicrosecondType,
    DurationMillisecondType, DurationNanosecondType, DurationSecondType, Float16Type, Float32Type,
    Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, IntervalUnit, IntervalYearMonthType,
    SchemaRef, Time32MillisecondType, Time32SecondType, Time64MicrosecondType,
    Time64NanosecondType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};

use super::codec::{StateError, StateReader, StateWriter};
use crate::operators::agg::value::{Dec, Value, ValueType, build_array};

/// Writes and reads rows of one schema.
pub(crate) struct RowCodec {
    schema: SchemaRef,
    /// Per column, its [`Value`] form; `None` when some column has none (rows go as IPC).
    types: Option<Vec<ValueType>>,
    /// For rows written with fewer columns (before the input gained columns): where each column
    /// written goes in `schema`, matched by name ([`RowCodec::with_written`]).
    written: Option<Vec<usize>>,
}

impl RowCodec {
    /// A codec for rows of `schema`.
    pub(crate) fn new(schema: SchemaRef) -> RowCodec {
        let types = schema
            .fields()
            .iter()
            .map(|f| ValueType::of(f.data_type()))
            .collect::<Option<Vec<_>>>();
        RowCodec {
            schema,
            types,
            written: None,
        }
    }

    /// This codec, also reading rows written with the columns `names` (an older input's, which
    /// the current schema has with columns added): their cells go to the columns of the same
    /// name, and the added columns are NULL. `None` when a name is not in the schema.
    fn with_written(mut self, names: &[String]) -> Option<RowCodec> {
        if names.len() != self.schema.fields().len() {
            let map = names
                .iter()
                .map(|n| self.schema.index_of(n).ok())
                .collect::<Option<Vec<_>>>()?;
            self.written = Some(map);
        }
        Some(self)
    }

    /// Writes the column names rows are written with, for an operator's state file: a restore
    /// across a new source column reads older spilled rows by name ([`RowCodec::read_names`]).
    pub(crate) fn write_names(&self, w: &mut StateWriter) {
        w.count(self.schema.fields().len());
        for f in self.schema.fields() {
            w.str(f.name());
        }
    }

    /// This codec, also reading the rows written with the names [`RowCodec::write_names`] wrote.
    pub(crate) fn read_names(self, r: &mut StateReader<'_>) -> Result<RowCodec, StateError> {
        let names = (0..r.count()?)
            .map(|_| r.str().map(str::to_string))
            .collect::<Result<Vec<_>, _>>()?;
        self.with_written(&names)
            .ok_or_else(|| StateError("spilled rows have columns the input does not have".into()))
    }

    /// Writes `rows` (each a batch of this schema and a row of it), in order: a tag, then their
    /// number, width and every cell row by row, or (without cells) the rows as Arrow IPC.
    pub(crate) fn encode(
        &self,
        rows: &[(&RecordBatch, usize)],
        w: &mut StateWriter,
    ) -> Result<(), StateError> {
        let width = self.schema.fields().len();
        for &(batch, i) in rows {
            if batch.num_columns() != width || i >= batch.num_rows() {
                return Err(StateError("a kept row does not fit its schema".into()));
            }
        }
        if self.types.is_none() {
            w.u8(IPC);
            return w.rows(&[gather(rows, &self.schema)?]);
        }
        w.u8(CELLS);
        w.u64(rows.len() as u64);
        w.u32(width as u32);
        for &(batch, i) in rows {
            for column in batch.columns() {
                value_at(column.as_ref(), i)?.encode(w);
            }
        }
        Ok(())
    }

    /// Reads what [`RowCodec::encode`] wrote, as one batch of this schema.
    pub(crate) fn decode(&self, r: &mut StateReader<'_>) -> Result<RecordBatch, StateError> {
        let types = match (r.u8()?, &self.types) {
            (CELLS, Some(types)) => types,
            (IPC, _) => {
                let rows = r.rows(&self.schema)?;
                return Ok(rows
                    .batch()
                    .cloned()
                    .unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(&self.schema))));
            }
            (tag, _) => return Err(StateError(format!("spilled rows with tag {tag}"))),
        };
        let n = usize::try_from(r.u64()?).map_err(|_| StateError("too many rows".into()))?;
        let width = r.u32()? as usize;
        let full = types.len();
        let targets: Vec<usize> = if width == full {
            (0..full).collect()
        } else {
            match &self.written {
                Some(map) if map.len() == width => map.clone(),
                _ => {
                    return Err(StateError(format!(
                        "spilled rows of {width} columns, the input has {full}"
                    )));
                }
            }
        };
        // Every cell takes at least its tag byte.
        if n.saturating_mul(width) > r.remaining() {
            return Err(StateError(format!(
                "{n} rows of {width} cells past the end"
            )));
        }
        // Columns not written (added since) stay NULL.
        let mut columns: Vec<Vec<Value>> = vec![Vec::with_capacity(n); full];
        for _ in 0..n {
            for &c in &targets {
                columns[c].push(Value::decode(r)?);
            }
        }
        for column in &mut columns {
            column.resize(n, Value::Null);
        }
        let arrays = columns
            .iter()
            .zip(types)
            .zip(self.schema.fields())
            .map(|((values, vt), f)| build_array(values, vt, f.data_type()))
            .collect::<Result<Vec<ArrayRef>, _>>()
            .map_err(|e| StateError(format!("rebuilding spilled rows: {e}")))?;
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        RecordBatch::try_new_with_options(Arc::clone(&self.schema), arrays, &options)
            .map_err(|e| StateError(format!("rebuilding spilled rows: {e}")))
    }
}

/// [`RowCodec::encode`]'s tags.
const IPC: u8 = 0;
const CELLS: u8 = 1;

/// `rows` (each a batch of `schema` and a row of it) gathered into one batch, in order.
pub(crate) fn gather(
    rows: &[(&RecordBatch, usize)],
    schema: &SchemaRef,
) -> Result<RecordBatch, StateError> {
    let bad = |e| StateError(format!("gathering kept rows: {e}"));
    let mut sources: Vec<&RecordBatch> = Vec::new();
    let mut index: HashMap<*const RecordBatch, usize> = HashMap::new();
    let indices: Vec<(usize, usize)> = rows
        .iter()
        .map(|&(b, i)| {
            let at = *index.entry(std::ptr::from_ref(b)).or_insert_with(|| {
                sources.push(b);
                sources.len() - 1
            });
            (at, i)
        })
        .collect();
    let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
    let columns = if sources.is_empty() {
        schema
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), 0))
            .collect()
    } else {
        (0..schema.fields().len())
            .map(|c| {
                let arrays: Vec<&dyn Array> =
                    sources.iter().map(|b| b.column(c).as_ref()).collect();
                interleave(&arrays, &indices)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?
    };
    RecordBatch::try_new_with_options(Arc::clone(schema), columns, &options).map_err(bad)
}

/// Row `i` of `array` as a [`Value`] (integers of every width and time unit as `Int`, floats as
/// `Float`; [`build_array`] turns them back into the column's type exactly).
fn value_at(array: &dyn Array, i: usize) -> Result<Value, StateError> {
    if array.is_null(i) {
        return Ok(Value::Null);
    }
    macro_rules! int {
        ($t:ty) => {
            Value::Int(array.as_primitive::<$t>().value(i) as i64)
        };
    }
    Ok(match array.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Bool(array.as_boolean().value(i)),
        DataType::Int8 => int!(Int8Type),
        DataType::Int16 => int!(Int16Type),
        DataType::Int32 => int!(Int32Type),
        DataType::Int64 => int!(Int64Type),
        DataType::UInt8 => int!(UInt8Type),
        DataType::UInt16 => int!(UInt16Type),
        DataType::UInt32 => int!(UInt32Type),
        DataType::UInt64 => int!(UInt64Type),
        DataType::Date32 => int!(Date32Type),
        DataType::Date64 => int!(Date64Type),
        DataType::Time32(TimeUnit::Second) => int!(Time32SecondType),
        DataType::Time32(TimeUnit::Millisecond) => int!(Time32MillisecondType),
        DataType::Time64(TimeUnit::Microsecond) => int!(Time64MicrosecondType),
        DataType::Time64(TimeUnit::Nanosecond) => int!(Time64NanosecondType),
        DataType::Timestamp(TimeUnit::Second, _) => int!(TimestampSecondType),
        DataType::Timestamp(TimeUnit::Millisecond, _) => int!(TimestampMillisecondType),
        DataType::Timestamp(TimeUnit::Microsecond, _) => int!(TimestampMicrosecondType),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => int!(TimestampNanosecondType),
        DataType::Duration(TimeUnit::Second) => int!(DurationSecondType),
        DataType::Duration(TimeUnit::Millisecond) => int!(DurationMillisecondType),
        DataType::Duration(TimeUnit::Microsecond) => int!(DurationMicrosecondType),
        DataType::Duration(TimeUnit::Nanosecond) => int!(DurationNanosecondType),
        DataType::Interval(IntervalUnit::YearMonth) => int!(IntervalYearMonthType),
        DataType::Float16 => Value::Float(array.as_primitive::<Float16Type>().value(i).to_f64()),
        DataType::Float32 => Value::Float(f64::from(array.as_primitive::<Float32Type>().value(i))),
        DataType::Float64 => Value::Float(array.as_primitive::<Float64Type>().value(i)),
        DataType::Decimal128(_, _) => {
            Value::Decimal(Dec::new(array.as_primitive::<Decimal128Type>().value(i)))
        }
        DataType::Utf8 => Value::str(array.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => Value::str(array.as_string::<i64>().value(i)),
        DataType::Utf8View => Value::str(array.as_string_view().value(i)),
        DataType::Binary => Value::Bytes(Arc::from(array.as_binary::<i32>().value(i))),
        DataType::LargeBinary => Value::Bytes(Arc::from(array.as_binary::<i64>().value(i))),
        DataType::BinaryView => Value::Bytes(Arc::from(array.as_binary_view().value(i))),
        DataType::FixedSizeBinary(_) => {
            Value::Bytes(Arc::from(array.as_fixed_size_binary().value(i)))
        }
        other => {
            return Err(StateError(format!(
                "a {other} value cannot be spilled cell by cell"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use arrow::array::{
        BooleanArray, Decimal128Array, Float32Array, Int16Array, StringArray,
        TimestampMillisecondArray, UInt64Array,
    };
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("i", DataType::Int16, true),
            Field::new("u", DataType::UInt64, true),
            Field::new("f", DataType::Float32, true),
            Field::new("d", DataType::Decimal128(10, 2), true),
            Field::new("b", DataType::Boolean, true),
            Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                true,
            ),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![
                    Some("a string longer than twenty-two bytes"),
                    None,
                    Some("x"),
                ])),
                Arc::new(Int16Array::from(vec![Some(-3), Some(i16::MAX), None])),
                Arc::new(UInt64Array::from(vec![Some(u64::MAX), None, Some(1)])),
                Arc::new(Float32Array::from(vec![Some(0.1), Some(f32::NAN), None])),
                Arc::new(
                    Decimal128Array::from(vec![Some(12345), None, Some(-1)])
                        .with_precision_and_scale(10, 2)
                        .unwrap(),
                ),
                Arc::new(BooleanArray::from(vec![None, Some(true), Some(false)])),
                Arc::new(
                    TimestampMillisecondArray::from(vec![Some(1_700_000_000_123), None, Some(0)])
                        .with_timezone("UTC"),
                ),
            ],
        )
        .unwrap()
    }

    #[test]
    fn rows_round_trip_cell_by_cell_in_the_order_given() {
        let b = batch();
        let codec = RowCodec::new(b.schema());
        let mut w = StateWriter::default();
        codec.encode(&[(&b, 2), (&b, 0), (&b, 1)], &mut w).unwrap();
        let bytes = w.into_bytes();
        let mut r = StateReader::new(&bytes);
        let back = codec.decode(&mut r).unwrap();
        r.finish().unwrap();
        let order = arrow::array::UInt32Array::from(vec![2, 0, 1]);
        let want = arrow::compute::take_record_batch(&b, &order).unwrap();
        // NaN != NaN, so compare the bits through the Arrow IPC-free debug form.
        assert_eq!(format!("{back:?}"), format!("{want:?}"));
        // Truncated bytes are an error, never a panic.
        for len in 0..bytes.len() {
            assert!(codec.decode(&mut StateReader::new(&bytes[..len])).is_err());
        }
    }

    #[test]
    fn rows_written_before_the_input_gained_a_column_read_with_it_null() {
        let b = batch();
        let narrow = RowCodec::new(b.schema());
        let mut w = StateWriter::default();
        narrow.encode(&[(&b, 0)], &mut w).unwrap();
        let bytes = w.into_bytes();
        let mut fields: Vec<Field> = b.schema().fields().iter().map(|f| (**f).clone()).collect();
        fields.insert(1, Field::new("new", DataType::Utf8, true));
        let wide = RowCodec::new(Arc::new(Schema::new(fields)));
        assert!(
            wide.decode(&mut StateReader::new(&bytes)).is_err(),
            "without the old names the widths disagree"
        );
        let mut w = StateWriter::default();
        narrow.write_names(&mut w);
        let names = w.into_bytes();
        let wide = wide.read_names(&mut StateReader::new(&names)).unwrap();
        let back = wide.decode(&mut StateReader::new(&bytes)).unwrap();
        assert_eq!(back.num_columns(), 8);
        assert_eq!(back.column(1).null_count(), 1);
        assert_eq!(
            back.column(0).as_string::<i32>().value(0),
            b.column(0).as_string::<i32>().value(0)
        );
    }
}
