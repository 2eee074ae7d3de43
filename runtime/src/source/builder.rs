//! Typed column builders for decoders: values go straight into Arrow builders of the table's
//! physical types. A decoder stages one record as [`Cell`]s and commits it only once the whole
//! record decoded, so a malformed record leaves no partial row behind.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder,
    Float32Builder, Float64Builder, Int8Builder, Int16Builder, Int32Builder, Int64Builder,
    StringBuilder, Time32MillisecondBuilder,
};
use arrow::datatypes::{DataType as ArrowType, TimeUnit};
use arrow::error::ArrowError;
use fsql_plan::DataType;

use crate::text;

/// The physical kind of a decodable column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Boolean,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Float,
    Double,
    Decimal {
        precision: u8,
        scale: i8,
    },
    String,
    Bytes,
    /// Days since the epoch.
    Date,
    /// Milliseconds of the day.
    Time,
    /// A timestamp in `unit` since the epoch.
    Timestamp(TimeUnit),
    /// INTERVAL DAY TO SECOND in milliseconds.
    IntervalMs,
}

impl Kind {
    /// The kind of a SQL type, or `None` for nested types (ARRAY, MAP, ROW) decoders do not support.
    pub fn of(data_type: &DataType) -> Option<Kind> {
        Some(match data_type {
            DataType::Boolean => Kind::Boolean,
            DataType::TinyInt => Kind::TinyInt,
            DataType::SmallInt => Kind::SmallInt,
            DataType::Int => Kind::Int,
            DataType::BigInt => Kind::BigInt,
            DataType::Float => Kind::Float,
            DataType::Double => Kind::Double,
            DataType::Decimal { precision, scale } => Kind::Decimal {
                precision: *precision,
                scale: *scale,
            },
            DataType::String => Kind::String,
            DataType::Bytes => Kind::Bytes,
            DataType::Date => Kind::Date,
            DataType::Time => Kind::Time,
            DataType::Timestamp { .. } | DataType::TimestampLtz { .. } => {
                match data_type.to_arrow() {
                    ArrowType::Timestamp(unit, _) => Kind::Timestamp(unit),
                    _ => return None,
                }
            }
            DataType::IntervalDayTime => Kind::IntervalMs,
            DataType::Null
            | DataType::IntervalYearMonth
            | DataType::Array(_)
            | DataType::Map(..)
            | DataType::Row(_) => return None,
        })
    }

    /// The range of an integer kind.
    pub fn int_range(self) -> Option<(i64, i64)> {
        Some(match self {
            Kind::TinyInt => (i64::from(i8::MIN), i64::from(i8::MAX)),
            Kind::SmallInt => (i64::from(i16::MIN), i64::from(i16::MAX)),
            Kind::Int => (i64::from(i32::MIN), i64::from(i32::MAX)),
            Kind::BigInt | Kind::IntervalMs => (i64::MIN, i64::MAX),
            _ => return None,
        })
    }
}

/// One staged value of a record, already in the column's physical representation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cell {
    /// The field was not in the record (NULL).
    Absent,
    Null,
    Bool(bool),
    /// Integers, dates (days), times (ms), timestamps (in the column's unit), intervals (ms).
    Int(i64),
    Float(f64),
    /// An unscaled decimal (see [`Cell::decimal`]).
    Decimal(Unscaled),
    /// A byte range of the decoder's string buffer.
    Str(usize, usize),
}

impl Cell {
    /// A DECIMAL cell of the unscaled value `v`.
    pub fn decimal(v: i128) -> Cell {
        Cell::Decimal(Unscaled {
            lo: v as u64,
            hi: (v >> 64) as u64,
        })
    }
}

/// An unscaled decimal in two words. As an `i128` it would align [`Cell`] to 16 bytes, and a cell
/// built field by field and then copied whole stalls the CPU (the copy's 16-byte load cannot take
/// its value from the two 8-byte stores still in flight): that was a fifth of JSON decoding.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Unscaled {
    lo: u64,
    hi: u64,
}

impl Unscaled {
    /// The value.
    pub fn get(self) -> i128 {
        (i128::from(self.hi as i64) << 64) | i128::from(self.lo)
    }
}

/// Converts `text` to a cell of `kind` (CSV fields, JSON strings in typed columns). Strings are
/// appended to `strings`.
#[inline(always)]
pub fn parse_text(kind: Kind, text: &str, strings: &mut String) -> Result<Cell, String> {
    let bad = |what: &str| format!("cannot parse '{text}' as {what}");
    Ok(match kind {
        Kind::String | Kind::Bytes => {
            let start = strings.len();
            strings.push_str(text);
            Cell::Str(start, strings.len())
        }
        Kind::Boolean => {
            let t = text.trim();
            if t.eq_ignore_ascii_case("true") {
                Cell::Bool(true)
            } else if t.eq_ignore_ascii_case("false") {
                Cell::Bool(false)
            } else {
                return Err(bad("BOOLEAN"));
            }
        }
        Kind::TinyInt | Kind::SmallInt | Kind::Int | Kind::BigInt | Kind::IntervalMs => {
            let v: i64 = text.trim().parse().map_err(|_| bad(kind_name(kind)))?;
            check_int(kind, v)?
        }
        Kind::Float | Kind::Double => {
            let t = text.trim();
            let v: f64 = match t {
                "NaN" => f64::NAN,
                "Infinity" | "+Infinity" => f64::INFINITY,
                "-Infinity" => f64::NEG_INFINITY,
                _ => t.parse().map_err(|_| bad(kind_name(kind)))?,
            };
            Cell::Float(v)
        }
        Kind::Decimal { precision, scale } => Cell::decimal(
            text::parse_decimal(text, precision, scale)
                .ok_or_else(|| format!("cannot parse '{text}' as DECIMAL({precision}, {scale})"))?,
        ),
        Kind::Date => Cell::Int(i64::from(
            text::parse_date(text).ok_or_else(|| bad("DATE"))?,
        )),
        Kind::Time => Cell::Int(i64::from(
            text::parse_time(text).ok_or_else(|| bad("TIME"))?,
        )),
        Kind::Timestamp(unit) => {
            Cell::Int(text::parse_timestamp_in(text, unit).ok_or_else(|| bad("TIMESTAMP"))?)
        }
    })
}

/// An integer cell after checking it fits `kind`.
#[inline(always)]
pub fn check_int(kind: Kind, v: i64) -> Result<Cell, String> {
    match kind.int_range() {
        Some((lo, hi)) if v < lo || v > hi => {
            Err(format!("{v} is out of range for {}", kind_name(kind)))
        }
        _ => Ok(Cell::Int(v)),
    }
}

/// The SQL name of a kind, for messages.
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Boolean => "BOOLEAN",
        Kind::TinyInt => "TINYINT",
        Kind::SmallInt => "SMALLINT",
        Kind::Int => "INT",
        Kind::BigInt => "BIGINT",
        Kind::Float => "FLOAT",
        Kind::Double => "DOUBLE",
        Kind::Decimal { .. } => "DECIMAL",
        Kind::String => "STRING",
        Kind::Bytes => "BYTES",
        Kind::Date => "DATE",
        Kind::Time => "TIME",
        Kind::Timestamp(_) => "TIMESTAMP",
        Kind::IntervalMs => "INTERVAL",
    }
}

/// An Arrow builder for one column of a decodable type.
pub enum ColumnBuilder {
    Boolean(BooleanBuilder),
    TinyInt(Int8Builder),
    SmallInt(Int16Builder),
    Int(Int32Builder),
    BigInt(Int64Builder),
    Float(Float32Builder),
    Double(Float64Builder),
    Decimal(Decimal128Builder, u8, i8),
    String(StringBuilder),
    Bytes(BinaryBuilder),
    Date(Date32Builder),
    Time(Time32MillisecondBuilder),
    /// i64-backed temporal types, re-labelled with `ArrowType` on finish.
    Wide(Int64Builder, ArrowType),
}

impl ColumnBuilder {
    /// A builder for `data_type` (one of the [`Kind`]s).
    pub fn new(data_type: &DataType) -> Option<ColumnBuilder> {
        Some(match Kind::of(data_type)? {
            Kind::Boolean => ColumnBuilder::Boolean(BooleanBuilder::new()),
            Kind::TinyInt => ColumnBuilder::TinyInt(Int8Builder::new()),
            Kind::SmallInt => ColumnBuilder::SmallInt(Int16Builder::new()),
            Kind::Int => ColumnBuilder::Int(Int32Builder::new()),
            Kind::BigInt => ColumnBuilder::BigInt(Int64Builder::new()),
            Kind::Float => ColumnBuilder::Float(Float32Builder::new()),
            Kind::Double => ColumnBuilder::Double(Float64Builder::new()),
            Kind::Decimal { precision, scale } => {
                ColumnBuilder::Decimal(Decimal128Builder::new(), precision, scale)
            }
            Kind::String => ColumnBuilder::String(StringBuilder::new()),
            Kind::Bytes => ColumnBuilder::Bytes(BinaryBuilder::new()),
            Kind::Date => ColumnBuilder::Date(Date32Builder::new()),
            Kind::Time => ColumnBuilder::Time(Time32MillisecondBuilder::new()),
            Kind::Timestamp(_) | Kind::IntervalMs => {
                ColumnBuilder::Wide(Int64Builder::new(), data_type.to_arrow())
            }
        })
    }

    /// Appends a NULL.
    pub fn append_null(&mut self) {
        match self {
            ColumnBuilder::Boolean(b) => b.append_null(),
            ColumnBuilder::TinyInt(b) => b.append_null(),
            ColumnBuilder::SmallInt(b) => b.append_null(),
            ColumnBuilder::Int(b) => b.append_null(),
            ColumnBuilder::BigInt(b) => b.append_null(),
            ColumnBuilder::Float(b) => b.append_null(),
            ColumnBuilder::Double(b) => b.append_null(),
            ColumnBuilder::Decimal(b, ..) => b.append_null(),
            ColumnBuilder::String(b) => b.append_null(),
            ColumnBuilder::Bytes(b) => b.append_null(),
            ColumnBuilder::Date(b) => b.append_null(),
            ColumnBuilder::Time(b) => b.append_null(),
            ColumnBuilder::Wide(b, _) => b.append_null(),
        }
    }

    /// Appends a staged cell (its variant matches the column's kind; anything else is NULL).
    pub fn append(&mut self, cell: Cell, strings: &str) {
        match (self, cell) {
            (b, Cell::Absent | Cell::Null) => b.append_null(),
            (ColumnBuilder::Boolean(b), Cell::Bool(v)) => b.append_value(v),
            (ColumnBuilder::TinyInt(b), Cell::Int(v)) => b.append_value(v as i8),
            (ColumnBuilder::SmallInt(b), Cell::Int(v)) => b.append_value(v as i16),
            (ColumnBuilder::Int(b), Cell::Int(v)) => b.append_value(v as i32),
            (ColumnBuilder::BigInt(b), Cell::Int(v)) => b.append_value(v),
            (ColumnBuilder::Float(b), Cell::Float(v)) => b.append_value(v as f32),
            (ColumnBuilder::Double(b), Cell::Float(v)) => b.append_value(v),
            (ColumnBuilder::Decimal(b, ..), Cell::Decimal(v)) => b.append_value(v.get()),
            (ColumnBuilder::String(b), Cell::Str(s, e)) => {
                b.append_value(strings.get(s..e).unwrap_or(""))
            }
            (ColumnBuilder::Bytes(b), Cell::Str(s, e)) => {
                b.append_value(strings.get(s..e).unwrap_or("").as_bytes())
            }
            (ColumnBuilder::Date(b), Cell::Int(v)) => b.append_value(v as i32),
            (ColumnBuilder::Time(b), Cell::Int(v)) => b.append_value(v as i32),
            (ColumnBuilder::Wide(b, _), Cell::Int(v)) => b.append_value(v),
            (b, _) => b.append_null(),
        }
    }

    /// The column built so far; the builder starts over empty.
    pub fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        Ok(match self {
            ColumnBuilder::Boolean(b) => Arc::new(b.finish()),
            ColumnBuilder::TinyInt(b) => Arc::new(b.finish()),
            ColumnBuilder::SmallInt(b) => Arc::new(b.finish()),
            ColumnBuilder::Int(b) => Arc::new(b.finish()),
            ColumnBuilder::BigInt(b) => Arc::new(b.finish()),
            ColumnBuilder::Float(b) => Arc::new(b.finish()),
            ColumnBuilder::Double(b) => Arc::new(b.finish()),
            ColumnBuilder::Decimal(b, p, s) => {
                Arc::new(b.finish().with_precision_and_scale(*p, *s)?)
            }
            ColumnBuilder::String(b) => Arc::new(b.finish()),
            ColumnBuilder::Bytes(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Time(b) => Arc::new(b.finish()),
            ColumnBuilder::Wide(b, t) => {
                let data = b
                    .finish()
                    .into_data()
                    .into_builder()
                    .data_type(t.clone())
                    .build()?;
                arrow::array::make_array(data)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decimal_cell_holds_its_value_whatever_its_sign_and_size() {
        for v in [
            0,
            1,
            -1,
            -150,
            1 << 64,
            -(1 << 64),
            (1 << 64) - 1,
            i128::MAX,
            i128::MIN,
        ] {
            let Cell::Decimal(unscaled) = Cell::decimal(v) else {
                panic!("not a decimal cell");
            };
            assert_eq!(unscaled.get(), v);
        }
    }
}
