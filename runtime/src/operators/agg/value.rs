//! Values of aggregate arguments as the OVER operator holds them in state: [`Value`] (one
//! argument of one row, no heap allocation except for strings and bytes), [`ValueColumn`] (an
//! argument column of a batch, typed once per batch so reading a row is a match and a load) and
//! [`build_array`] (results back to an Arrow column of the output type).
//!
//! Every integer-backed Arrow type (integers, dates, times, timestamps, durations, year-month
//! intervals) is held as [`Value::Int`]; [`ValueType::Int`] remembers the Arrow type to rebuild.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Decimal128Array, Float64Array, Int64Array,
    PrimitiveArray, StringArray, new_null_array,
};
use arrow::buffer::NullBuffer;
use arrow::compute::{CastOptions, cast, cast_with_options};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType as ArrowType, Date32Type, Date64Type, Decimal128Type,
    DurationMicrosecondType, DurationMillisecondType, DurationNanosecondType, DurationSecondType,
    Int8Type, Int16Type, Int32Type, Int64Type, IntervalUnit, IntervalYearMonthType,
    Time32MillisecondType, Time32SecondType, Time64MicrosecondType, Time64NanosecondType, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::error::ArrowError;

use crate::state::codec::{StateError, StateReader, StateWriter};

/// An `i128` stored as two words, so that [`Value`] stays 24 bytes (an `i128` field would align
/// the enum to 16 bytes and make it 32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Dec {
    lo: u64,
    hi: i64,
}

impl Dec {
    pub(crate) fn new(v: i128) -> Dec {
        Dec {
            lo: v as u64,
            hi: (v >> 64) as i64,
        }
    }

    pub(crate) fn get(self) -> i128 {
        ((self.hi as i128) << 64) | self.lo as i128
    }
}

/// One value of an aggregate argument (or result).
///
/// Ordering and equality are total and agree with each other (floats compare by
/// `f64::total_cmp`, so NaN equals NaN and `-0.0 < 0.0`), which is what MIN/MAX multisets and
/// DISTINCT maps need. Values of different variants never meet in one column except NULL, which
/// sorts first.
#[derive(Clone, Debug, Default)]
pub(crate) enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// The unscaled value; the scale is the column's ([`ValueType::Decimal`]).
    Decimal(Dec),
    /// A string of at most [`SHORT_STR`] bytes, inline: most keys, codes and ids an aggregate
    /// keeps per row are that short, and each would otherwise be an allocation.
    ShortStr {
        len: u8,
        bytes: [u8; SHORT_STR],
    },
    /// A longer string. [`Value::str`] picks the variant by length, so equal strings are always
    /// the same variant.
    Str(Arc<str>),
    Bytes(Arc<[u8]>),
}

/// The longest string a [`Value`] holds inline (the value stays 24 bytes).
const SHORT_STR: usize = 22;

impl Value {
    /// A string value: inline when short, else shared.
    pub(crate) fn str(s: &str) -> Value {
        let mut bytes = [0u8; SHORT_STR];
        match bytes.get_mut(..s.len()) {
            Some(to) => {
                to.copy_from_slice(s.as_bytes());
                Value::ShortStr {
                    len: s.len() as u8,
                    bytes,
                }
            }
            None => Value::Str(Arc::from(s)),
        }
    }

    /// A string value's UTF-8 bytes (strings order and hash by them, as `str` does).
    fn str_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::ShortStr { len, bytes } => bytes.get(..*len as usize),
            Value::Str(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    /// Writes the value for a checkpoint.
    pub(crate) fn encode(&self, w: &mut StateWriter) {
        match self {
            Value::Null => w.u8(0),
            Value::Bool(b) => {
                w.u8(1);
                w.bool(*b);
            }
            Value::Int(i) => {
                w.u8(2);
                w.i64(*i);
            }
            Value::Float(f) => {
                w.u8(3);
                w.f64(*f);
            }
            Value::Decimal(d) => {
                w.u8(4);
                w.i128(d.get());
            }
            Value::ShortStr { .. } | Value::Str(_) => {
                w.u8(5);
                w.bytes(self.str_bytes().unwrap_or_default());
            }
            Value::Bytes(b) => {
                w.u8(6);
                w.bytes(b);
            }
        }
    }

    /// Reads a value [`Value::encode`] wrote.
    pub(crate) fn decode(r: &mut StateReader<'_>) -> Result<Value, StateError> {
        Ok(match r.u8()? {
            0 => Value::Null,
            1 => Value::Bool(r.bool()?),
            2 => Value::Int(r.i64()?),
            3 => Value::Float(r.f64()?),
            4 => Value::Decimal(Dec::new(r.i128()?)),
            5 => Value::str(r.str()?),
            6 => Value::Bytes(Arc::from(r.bytes()?)),
            t => return Err(StateError(format!("value tag {t}"))),
        })
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int(_) => 2,
            Value::Float(_) => 3,
            Value::Decimal(_) => 4,
            Value::ShortStr { .. } | Value::Str(_) => 5,
            Value::Bytes(_) => 6,
        }
    }

    fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(v) => Some(*v),
            Value::Float(f) => Some(*f as i64),
            Value::Bool(b) => Some(*b as i64),
            Value::Decimal(d) => Some(d.get() as i64),
            _ => None,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(v) => Some(*v as f64),
            _ => None,
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Value {}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Value) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Value) -> Ordering {
        match (self, other) {
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (Value::Float(a), Value::Float(b)) => a.total_cmp(b),
            (Value::Decimal(a), Value::Decimal(b)) => a.get().cmp(&b.get()),
            (Value::ShortStr { .. } | Value::Str(_), Value::ShortStr { .. } | Value::Str(_)) => {
                self.str_bytes().cmp(&other.str_bytes())
            }
            (Value::Bytes(a), Value::Bytes(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Value::Null => state.write_u8(0),
            Value::Bool(b) => state.write_u8(2 + *b as u8),
            Value::Int(v) => state.write_i64(*v),
            Value::Float(f) => state.write_u64(f.to_bits()),
            Value::Decimal(d) => d.hash(state),
            Value::ShortStr { .. } | Value::Str(_) => {
                // As `str` hashes: its bytes, then 0xff.
                state.write(self.str_bytes().unwrap_or_default());
                state.write_u8(0xff);
            }
            Value::Bytes(b) => b.hash(state),
        }
    }
}

/// What the values of a column are, and the Arrow type to rebuild them as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ValueType {
    /// Only NULLs (an untyped `NULL` argument).
    Null,
    Bool,
    /// Integer-backed; the Arrow type the integers are rebuilt as.
    Int(ArrowType),
    Float,
    Decimal {
        scale: i8,
    },
    Str,
    Bytes,
}

impl ValueType {
    /// The value type of an Arrow type, `None` for types the OVER operator cannot hold in state
    /// (lists, maps, structs...).
    pub(crate) fn of(t: &ArrowType) -> Option<ValueType> {
        Some(match t {
            ArrowType::Null => ValueType::Null,
            ArrowType::Boolean => ValueType::Bool,
            t if is_int_backed(t) => ValueType::Int(t.clone()),
            ArrowType::Float16 | ArrowType::Float32 | ArrowType::Float64 => ValueType::Float,
            ArrowType::Decimal128(_, s) => ValueType::Decimal { scale: *s },
            ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View => ValueType::Str,
            ArrowType::Binary
            | ArrowType::LargeBinary
            | ArrowType::BinaryView
            | ArrowType::FixedSizeBinary(_) => ValueType::Bytes,
            _ => return None,
        })
    }

    /// The type of counts and integer sums.
    pub(crate) fn int64() -> ValueType {
        ValueType::Int(ArrowType::Int64)
    }
}

/// Arrow types whose values are integers (held as [`Value::Int`]).
/// Whether [`ValueColumn::new`] reads a column of `t` (as [`Repr::Full`]) into NULL, boolean,
/// integer or float values only: what [`ValueColumn::word`] gives as words.
pub(crate) fn reads_as_word(t: &ArrowType) -> bool {
    matches!(
        t,
        ArrowType::Null
            | ArrowType::Boolean
            | ArrowType::Float16
            | ArrowType::Float32
            | ArrowType::Float64
    ) || is_int_backed(t)
}

pub(crate) fn is_int_backed(t: &ArrowType) -> bool {
    is_plain_int(t)
        || matches!(
            t,
            ArrowType::Date32
                | ArrowType::Date64
                | ArrowType::Time32(_)
                | ArrowType::Time64(_)
                | ArrowType::Timestamp(_, _)
                | ArrowType::Duration(_)
                | ArrowType::Interval(IntervalUnit::YearMonth)
        )
}

fn is_plain_int(t: &ArrowType) -> bool {
    matches!(
        t,
        ArrowType::Int8
            | ArrowType::Int16
            | ArrowType::Int32
            | ArrowType::Int64
            | ArrowType::UInt8
            | ArrowType::UInt16
            | ArrowType::UInt32
            | ArrowType::UInt64
    )
}

/// A NULL, boolean, integer or float [`Value`] packed as a tag (two bits) and a word: how OVER
/// keeps such stored columns per row, in 8 bytes and two bits instead of a 24-byte value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Word {
    pub tag: u8,
    pub bits: i64,
}

impl Word {
    pub(crate) const NULL: Word = Word { tag: 0, bits: 0 };

    #[inline]
    pub(crate) fn int(v: i64) -> Word {
        Word { tag: 1, bits: v }
    }

    #[inline]
    pub(crate) fn float(v: f64) -> Word {
        Word {
            tag: 2,
            bits: v.to_bits() as i64,
        }
    }

    #[inline]
    pub(crate) fn bool(v: bool) -> Word {
        Word {
            tag: 3,
            bits: i64::from(v),
        }
    }

    /// The word of `v`, if it is NULL, a boolean, an integer or a float.
    #[inline]
    pub(crate) fn of(v: &Value) -> Option<Word> {
        Some(match v {
            Value::Null => Word::NULL,
            Value::Int(i) => Word::int(*i),
            Value::Float(f) => Word::float(*f),
            Value::Bool(b) => Word::bool(*b),
            _ => return None,
        })
    }

    /// The value (`tag` is taken modulo 4).
    #[inline]
    pub(crate) fn value(self) -> Value {
        match self.tag & 3 {
            0 => Value::Null,
            1 => Value::Int(self.bits),
            2 => Value::Float(f64::from_bits(self.bits as u64)),
            _ => Value::Bool(self.bits != 0),
        }
    }
}

/// How a stored argument column is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Repr {
    /// The value itself.
    Full,
    /// Only whether it is NULL (`COUNT(x)`): non-NULL rows read as `Int(1)`, nothing is copied.
    Presence,
    /// The value as a DOUBLE (variance and standard deviation).
    Float,
}

/// One argument column of a batch, typed once so that rows read cheaply.
#[derive(Clone, Debug)]
pub(crate) enum ValueColumn {
    Null,
    Presence(Option<NullBuffer>),
    Bool(BooleanArray),
    Int(Int64Array),
    Float(Float64Array),
    Decimal(Decimal128Array),
    Str(StringArray),
    Bytes(BinaryArray),
}

impl ValueColumn {
    /// Reads `array` as `repr`.
    pub(crate) fn new(array: &ArrayRef, repr: Repr) -> Result<ValueColumn, ArrowError> {
        match repr {
            Repr::Presence => Ok(ValueColumn::Presence(array.logical_nulls())),
            Repr::Float => {
                if array.data_type() == &ArrowType::Null {
                    return Ok(ValueColumn::Null);
                }
                let f = cast(array, &ArrowType::Float64)?;
                Ok(ValueColumn::Float(
                    f.as_primitive::<arrow::datatypes::Float64Type>().clone(),
                ))
            }
            Repr::Full => Self::full(array),
        }
    }

    fn full(array: &ArrayRef) -> Result<ValueColumn, ArrowError> {
        let t = array.data_type();
        Ok(match t {
            ArrowType::Null => ValueColumn::Null,
            ArrowType::Boolean => ValueColumn::Bool(array.as_boolean().clone()),
            t if is_int_backed(t) => ValueColumn::Int(widen(array)?),
            ArrowType::Float64 => ValueColumn::Float(array.as_primitive().clone()),
            ArrowType::Float16 | ArrowType::Float32 => {
                let f = cast(array, &ArrowType::Float64)?;
                ValueColumn::Float(f.as_primitive().clone())
            }
            ArrowType::Decimal128(_, _) => ValueColumn::Decimal(array.as_primitive().clone()),
            ArrowType::Utf8 => ValueColumn::Str(array.as_string::<i32>().clone()),
            ArrowType::LargeUtf8 | ArrowType::Utf8View => {
                ValueColumn::Str(cast(array, &ArrowType::Utf8)?.as_string::<i32>().clone())
            }
            ArrowType::Binary => ValueColumn::Bytes(array.as_binary::<i32>().clone()),
            ArrowType::LargeBinary | ArrowType::BinaryView | ArrowType::FixedSizeBinary(_) => {
                ValueColumn::Bytes(cast(array, &ArrowType::Binary)?.as_binary::<i32>().clone())
            }
            other => {
                return Err(ArrowError::NotYetImplemented(format!(
                    "OVER aggregates over {other} values"
                )));
            }
        })
    }

    /// Whether [`ValueColumn::word`] reads this column.
    pub(crate) fn has_words(&self) -> bool {
        matches!(
            self,
            ValueColumn::Null
                | ValueColumn::Presence(_)
                | ValueColumn::Bool(_)
                | ValueColumn::Int(_)
                | ValueColumn::Float(_)
        )
    }

    /// The value of row `i` as a [`Word`], if the column [`has_words`](Self::has_words).
    #[inline]
    pub(crate) fn word(&self, i: usize) -> Option<Word> {
        let null = |nulls: Option<&NullBuffer>| nulls.is_some_and(|n| n.is_null(i));
        Some(match self {
            ValueColumn::Null => Word::NULL,
            ValueColumn::Presence(nulls) if null(nulls.as_ref()) => Word::NULL,
            ValueColumn::Presence(_) => Word::int(1),
            ValueColumn::Bool(a) if a.is_null(i) => Word::NULL,
            ValueColumn::Bool(a) => Word::bool(a.value(i)),
            ValueColumn::Int(a) if a.is_null(i) => Word::NULL,
            ValueColumn::Int(a) => Word::int(a.value(i)),
            ValueColumn::Float(a) if a.is_null(i) => Word::NULL,
            ValueColumn::Float(a) => Word::float(a.value(i)),
            _ => return None,
        })
    }

    /// The value of row `i`.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> Value {
        match self {
            ValueColumn::Null => Value::Null,
            ValueColumn::Presence(nulls) => {
                if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                    Value::Null
                } else {
                    Value::Int(1)
                }
            }
            ValueColumn::Bool(a) => {
                if a.is_null(i) {
                    Value::Null
                } else {
                    Value::Bool(a.value(i))
                }
            }
            ValueColumn::Int(a) => {
                if a.is_null(i) {
                    Value::Null
                } else {
                    Value::Int(a.value(i))
                }
            }
            ValueColumn::Float(a) => {
                if a.is_null(i) {
                    Value::Null
                } else {
                    Value::Float(a.value(i))
                }
            }
            ValueColumn::Decimal(a) => {
                if a.is_null(i) {
                    Value::Null
                } else {
                    Value::Decimal(Dec::new(a.value(i)))
                }
            }
            ValueColumn::Str(a) => {
                if a.is_null(i) {
                    Value::Null
                } else {
                    Value::str(a.value(i))
                }
            }
            ValueColumn::Bytes(a) => {
                if a.is_null(i) {
                    Value::Null
                } else {
                    Value::Bytes(Arc::from(a.value(i)))
                }
            }
        }
    }
}

/// An integer-backed array as `Int64` (values of 64-bit types are shared, not copied).
pub(crate) fn widen(array: &ArrayRef) -> Result<Int64Array, ArrowError> {
    fn share<T: ArrowPrimitiveType<Native = i64>>(a: &ArrayRef) -> Int64Array {
        let p = a.as_primitive::<T>();
        Int64Array::new(p.values().clone(), p.nulls().cloned())
    }
    fn convert<T: ArrowPrimitiveType>(a: &ArrayRef, f: impl Fn(T::Native) -> i64) -> Int64Array {
        a.as_primitive::<T>().unary::<_, Int64Type>(f)
    }
    use ArrowType as A;
    Ok(match array.data_type() {
        A::Int64 => share::<Int64Type>(array),
        A::Date64 => share::<Date64Type>(array),
        A::Time64(TimeUnit::Microsecond) => share::<Time64MicrosecondType>(array),
        A::Time64(TimeUnit::Nanosecond) => share::<Time64NanosecondType>(array),
        A::Timestamp(TimeUnit::Second, _) => share::<TimestampSecondType>(array),
        A::Timestamp(TimeUnit::Millisecond, _) => share::<TimestampMillisecondType>(array),
        A::Timestamp(TimeUnit::Microsecond, _) => share::<TimestampMicrosecondType>(array),
        A::Timestamp(TimeUnit::Nanosecond, _) => share::<TimestampNanosecondType>(array),
        A::Duration(TimeUnit::Second) => share::<DurationSecondType>(array),
        A::Duration(TimeUnit::Millisecond) => share::<DurationMillisecondType>(array),
        A::Duration(TimeUnit::Microsecond) => share::<DurationMicrosecondType>(array),
        A::Duration(TimeUnit::Nanosecond) => share::<DurationNanosecondType>(array),
        A::Int8 => convert::<Int8Type>(array, |v| v as i64),
        A::Int16 => convert::<Int16Type>(array, |v| v as i64),
        A::Int32 => convert::<Int32Type>(array, |v| v as i64),
        A::UInt8 => convert::<UInt8Type>(array, |v| v as i64),
        A::UInt16 => convert::<UInt16Type>(array, |v| v as i64),
        A::UInt32 => convert::<UInt32Type>(array, |v| v as i64),
        A::UInt64 => convert::<UInt64Type>(array, |v| v as i64),
        A::Date32 => convert::<Date32Type>(array, |v| v as i64),
        A::Time32(TimeUnit::Second) => convert::<Time32SecondType>(array, |v| v as i64),
        A::Time32(TimeUnit::Millisecond) => convert::<Time32MillisecondType>(array, |v| v as i64),
        A::Interval(IntervalUnit::YearMonth) => {
            convert::<IntervalYearMonthType>(array, |v| v as i64)
        }
        other => {
            return Err(ArrowError::NotYetImplemented(format!(
                "{other} as an integer"
            )));
        }
    })
}

/// Integers as an array of the integer-backed type `t`; values wrap like Java's narrowing casts.
fn ints_as(values: &[Value], t: &ArrowType) -> Option<ArrayRef> {
    fn build<T: ArrowPrimitiveType>(
        values: &[Value],
        t: &ArrowType,
        f: impl Fn(i64) -> T::Native,
    ) -> ArrayRef {
        let array: PrimitiveArray<T> = values.iter().map(|v| v.as_i64().map(&f)).collect();
        Arc::new(array.with_data_type(t.clone()))
    }
    use ArrowType as A;
    Some(match t {
        A::Int8 => build::<Int8Type>(values, t, |v| v as i8),
        A::Int16 => build::<Int16Type>(values, t, |v| v as i16),
        A::Int32 => build::<Int32Type>(values, t, |v| v as i32),
        A::Int64 => build::<Int64Type>(values, t, |v| v),
        A::UInt8 => build::<UInt8Type>(values, t, |v| v as u8),
        A::UInt16 => build::<UInt16Type>(values, t, |v| v as u16),
        A::UInt32 => build::<UInt32Type>(values, t, |v| v as u32),
        A::UInt64 => build::<UInt64Type>(values, t, |v| v as u64),
        A::Date32 => build::<Date32Type>(values, t, |v| v as i32),
        A::Date64 => build::<Date64Type>(values, t, |v| v),
        A::Time32(TimeUnit::Second) => build::<Time32SecondType>(values, t, |v| v as i32),
        A::Time32(TimeUnit::Millisecond) => build::<Time32MillisecondType>(values, t, |v| v as i32),
        A::Time64(TimeUnit::Microsecond) => build::<Time64MicrosecondType>(values, t, |v| v),
        A::Time64(TimeUnit::Nanosecond) => build::<Time64NanosecondType>(values, t, |v| v),
        A::Timestamp(TimeUnit::Second, _) => build::<TimestampSecondType>(values, t, |v| v),
        A::Timestamp(TimeUnit::Millisecond, _) => {
            build::<TimestampMillisecondType>(values, t, |v| v)
        }
        A::Timestamp(TimeUnit::Microsecond, _) => {
            build::<TimestampMicrosecondType>(values, t, |v| v)
        }
        A::Timestamp(TimeUnit::Nanosecond, _) => build::<TimestampNanosecondType>(values, t, |v| v),
        A::Duration(TimeUnit::Second) => build::<DurationSecondType>(values, t, |v| v),
        A::Duration(TimeUnit::Millisecond) => build::<DurationMillisecondType>(values, t, |v| v),
        A::Duration(TimeUnit::Microsecond) => build::<DurationMicrosecondType>(values, t, |v| v),
        A::Duration(TimeUnit::Nanosecond) => build::<DurationNanosecondType>(values, t, |v| v),
        A::Interval(IntervalUnit::YearMonth) => {
            build::<IntervalYearMonthType>(values, t, |v| v as i32)
        }
        _ => return None,
    })
}

/// Values of type `vt` as an Arrow array of type `target` (the output column's).
///
/// Integers reach integer targets by wrapping (Java's narrowing: `SUM(INT)` overflows like an
/// `int`); every other difference goes through Arrow's cast, with values that do not fit the
/// target (a DECIMAL precision) becoming NULL, as Flink's decimal overflow does.
pub(crate) fn build_array(
    values: &[Value],
    vt: &ValueType,
    target: &ArrowType,
) -> Result<ArrayRef, ArrowError> {
    let natural: ArrayRef = match vt {
        ValueType::Null => return Ok(new_null_array(target, values.len())),
        ValueType::Int(src) => {
            if is_plain_int(target)
                && is_plain_int(src)
                && let Some(a) = ints_as(values, target)
            {
                return Ok(a);
            }
            match ints_as(values, src) {
                Some(a) => a,
                None => ints_as(values, &ArrowType::Int64)
                    .unwrap_or_else(|| new_null_array(&ArrowType::Int64, values.len())),
            }
        }
        ValueType::Bool => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Value::Bool(b) => Some(*b),
                    _ => None,
                })
                .collect::<BooleanArray>(),
        ),
        ValueType::Float => Arc::new(values.iter().map(Value::as_f64).collect::<Float64Array>()),
        ValueType::Decimal { scale } => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Value::Decimal(d) => Some(d.get()),
                    _ => None,
                })
                .collect::<PrimitiveArray<Decimal128Type>>()
                .with_precision_and_scale(38, *scale)?,
        ),
        ValueType::Str => Arc::new(
            values
                .iter()
                .map(|v| v.str_bytes().and_then(|b| std::str::from_utf8(b).ok()))
                .collect::<StringArray>(),
        ),
        ValueType::Bytes => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Value::Bytes(b) => Some(&**b),
                    _ => None,
                })
                .collect::<BinaryArray>(),
        ),
    };
    if natural.data_type() == target {
        return Ok(natural);
    }
    let options = CastOptions {
        safe: true,
        ..CastOptions::default()
    };
    cast_with_options(&natural, target, &options)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn value_is_24_bytes() {
        assert_eq!(std::mem::size_of::<Value>(), 24);
    }

    #[test]
    fn strings_order_hash_and_round_trip_alike_inline_or_shared() {
        use std::hash::BuildHasher;
        let texts = [
            "",
            "a",
            "ab",
            "0123456789012345678901",
            "01234567890123456789012",
            "b",
        ];
        let values: Vec<Value> = texts.iter().map(|t| Value::str(t)).collect();
        assert!(matches!(values[3], Value::ShortStr { len: 22, .. }));
        assert!(matches!(values[4], Value::Str(_)));
        let hasher = std::collections::hash_map::RandomState::new();
        for (a, ta) in values.iter().zip(texts) {
            for (b, tb) in values.iter().zip(texts) {
                assert_eq!(a.cmp(b), ta.cmp(tb), "{ta:?} vs {tb:?}");
            }
            assert_eq!(hasher.hash_one(a), hasher.hash_one(ta), "{ta:?}");
            let mut w = StateWriter::default();
            a.encode(&mut w);
            let bytes = w.into_bytes();
            let mut old = StateWriter::default();
            old.u8(5);
            old.str(ta);
            assert_eq!(bytes, old.into_bytes(), "the encoding of {ta:?}");
            let back = Value::decode(&mut StateReader::new(&bytes)).expect("decodes");
            assert_eq!(&back, a);
        }
        let array = build_array(&values, &ValueType::Str, &ArrowType::Utf8).expect("builds");
        let strings = array.as_string::<i32>();
        assert_eq!(strings.iter().flatten().collect::<Vec<_>>(), texts);
    }

    #[test]
    fn decimals_round_trip_through_two_words() {
        for v in [
            0i128,
            1,
            -1,
            i128::MAX,
            i128::MIN,
            12_345_678_901_234_567_890_123,
        ] {
            assert_eq!(Dec::new(v).get(), v);
        }
    }

    #[test]
    fn values_order_totally_with_null_first() {
        let set: BTreeSet<Value> = [
            Value::Float(2.0),
            Value::Float(-0.0),
            Value::Null,
            Value::Float(0.0),
            Value::Float(f64::NAN),
            Value::Float(f64::NAN),
        ]
        .into_iter()
        .collect();
        let got: Vec<String> = set.iter().map(|v| format!("{v:?}")).collect();
        assert_eq!(
            got,
            [
                "Null",
                "Float(-0.0)",
                "Float(0.0)",
                "Float(2.0)",
                "Float(NaN)"
            ]
        );
    }

    #[test]
    fn columns_read_timestamps_and_small_ints_as_i64() {
        let ts: ArrayRef = Arc::new(
            arrow::array::TimestampMillisecondArray::from(vec![Some(5), None]).with_timezone("UTC"),
        );
        let c = ValueColumn::new(&ts, Repr::Full).unwrap();
        assert_eq!((c.get(0), c.get(1)), (Value::Int(5), Value::Null));
        let back = build_array(
            &[c.get(0), c.get(1)],
            &ValueType::of(ts.data_type()).unwrap(),
            ts.data_type(),
        )
        .unwrap();
        assert_eq!(&back, &ts);
        let small: ArrayRef = Arc::new(arrow::array::Int16Array::from(vec![-3]));
        assert_eq!(
            ValueColumn::new(&small, Repr::Full).unwrap().get(0),
            Value::Int(-3)
        );
        let presence = ValueColumn::new(&ts, Repr::Presence).unwrap();
        assert_eq!(
            (presence.get(0), presence.get(1)),
            (Value::Int(1), Value::Null)
        );
    }

    #[test]
    fn integer_results_wrap_into_narrower_targets() {
        let values = [Value::Int(i32::MAX as i64 + 1), Value::Null];
        let a = build_array(&values, &ValueType::int64(), &ArrowType::Int32).unwrap();
        let a = a.as_primitive::<Int32Type>();
        assert_eq!(a.value(0), i32::MIN);
        assert!(a.is_null(1));
    }

    #[test]
    fn decimals_rescale_to_the_output_type() {
        let values = [Value::Decimal(Dec::new(12345)), Value::Null];
        let a = build_array(
            &values,
            &ValueType::Decimal { scale: 2 },
            &ArrowType::Decimal128(38, 6),
        )
        .unwrap();
        assert_eq!(a.as_primitive::<Decimal128Type>().value(0), 123_450_000);
    }
}
