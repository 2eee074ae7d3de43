//! `CAST` / `TRY_CAST` with Flink's rules.
//!
//! - STRING → number/boolean/temporal trims whitespace first; a value that does not parse is an
//!   error for `CAST` and NULL for `TRY_CAST` (Flink ≥ 1.15 behaviour).
//! - Integer narrowing wraps (Java's `(byte) 300 == 44`); floating point → integer truncates toward
//!   zero and saturates (Java's `(long) 1e30`); NaN becomes 0.
//! - Numeric → DECIMAL that overflows the precision is NULL (as Flink).
//! - → STRING renders values the way Flink does: `TRUE`/`FALSE`, Java-style doubles (`1.0E10`),
//!   timestamps as `YYYY-MM-DD HH:MM:SS.fff` padded to the type's precision.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Decimal128Builder, Int64Array,
    PrimitiveArray, StringArray, StringBuilder, Time32MillisecondArray, new_null_array,
};
use arrow::compute::CastOptions;
use arrow::datatypes::{
    DataType as ArrowType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
};
use fsql_plan::DataType;

use crate::error::EvalError;
use crate::format::{Style, render_value};
use crate::text;

/// Converts `array` (of SQL type `from`) to SQL type `to`. With `safe` (`TRY_CAST`) a value that
/// cannot be converted becomes NULL; without it the cast fails naming the first such value.
pub fn cast_array(
    array: &ArrayRef,
    from: &DataType,
    to: &DataType,
    safe: bool,
) -> Result<ArrayRef, EvalError> {
    let target = to.to_arrow();
    let source = array.data_type().clone();
    if source == target {
        return Ok(array.clone());
    }
    if source == ArrowType::Null {
        return Ok(new_null_array(&target, array.len()));
    }
    let out: ArrayRef = match (&source, &target) {
        (_, ArrowType::Utf8) => to_string(array, from)?,
        (ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View, _) => {
            let strings = arrow::compute::cast(array, &ArrowType::Utf8)?;
            from_string(strings.as_string::<i32>(), to)?
        }
        (s, t) if s.is_integer() && t.is_integer() => narrow_int(array, t)?,
        (ArrowType::Float32 | ArrowType::Float64, t) if t.is_integer() => float_to_int(array, t)?,
        (s, ArrowType::Decimal128(..)) if s.is_numeric() => {
            // Overflow is NULL for both CAST and TRY_CAST, as in Flink.
            return Ok(arrow::compute::cast(array, &target)?);
        }
        _ => arrow::compute::cast_with_options(array, &target, &CastOptions::default())?,
    };
    if safe {
        Ok(out)
    } else {
        check_failures(array, &out, from, to)
    }
}

/// Fails on the first row that was valid before and NULL after the conversion.
fn check_failures(
    input: &ArrayRef,
    output: &ArrayRef,
    from: &DataType,
    to: &DataType,
) -> Result<ArrayRef, EvalError> {
    if output.null_count() == input.null_count() {
        return Ok(output.clone());
    }
    for i in 0..input.len() {
        if input.is_valid(i) && output.is_null(i) {
            let mut value = String::new();
            render_value(input.as_ref(), i, Style::Sql, &mut value);
            if matches!(from, DataType::String) {
                value = format!("'{value}'");
            }
            return Err(EvalError::Cast {
                value,
                from: from.to_string(),
                to: to.to_string(),
            });
        }
    }
    Ok(output.clone())
}

fn to_string(array: &ArrayRef, from: &DataType) -> Result<ArrayRef, EvalError> {
    let style_owned = match (array.data_type(), from) {
        (
            ArrowType::Timestamp(unit, _),
            DataType::Timestamp { precision } | DataType::TimestampLtz { precision },
        ) => Some(text::unit_digits(*unit).min(u32::from(*precision))),
        _ => None,
    };
    let mut builder = StringBuilder::with_capacity(array.len(), array.len() * 8);
    let mut buf = String::new();
    for i in 0..array.len() {
        if array.is_null(i) {
            builder.append_null();
            continue;
        }
        buf.clear();
        match (array.data_type(), style_owned) {
            (ArrowType::Timestamp(unit, _), Some(digits)) => {
                let v = timestamp_value(array.as_ref(), i);
                text::format_timestamp(v, *unit, digits, &mut buf);
            }
            _ => render_value(array.as_ref(), i, Style::Sql, &mut buf),
        }
        builder.append_value(&buf);
    }
    Ok(Arc::new(builder.finish()))
}

/// The raw i64 of row `i` of a timestamp array of any unit.
pub(crate) fn timestamp_value(array: &dyn Array, i: usize) -> i64 {
    use arrow::datatypes::{
        TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
        TimestampSecondType,
    };
    match array.data_type() {
        ArrowType::Timestamp(TimeUnit::Second, _) => {
            array.as_primitive::<TimestampSecondType>().value(i)
        }
        ArrowType::Timestamp(TimeUnit::Millisecond, _) => {
            array.as_primitive::<TimestampMillisecondType>().value(i)
        }
        ArrowType::Timestamp(TimeUnit::Microsecond, _) => {
            array.as_primitive::<TimestampMicrosecondType>().value(i)
        }
        ArrowType::Timestamp(TimeUnit::Nanosecond, _) => {
            array.as_primitive::<TimestampNanosecondType>().value(i)
        }
        _ => 0,
    }
}

fn from_string(strings: &StringArray, to: &DataType) -> Result<ArrayRef, EvalError> {
    let target = to.to_arrow();
    Ok(match to {
        DataType::Timestamp { .. } | DataType::TimestampLtz { .. } => {
            let unit = match &target {
                ArrowType::Timestamp(unit, _) => *unit,
                _ => arrow::datatypes::TimeUnit::Millisecond,
            };
            let ints: Int64Array = strings
                .iter()
                .map(|s| s.and_then(|s| text::parse_timestamp_in(s, unit)))
                .collect();
            arrow::compute::cast(&(Arc::new(ints) as ArrayRef), &target)?
        }
        DataType::Date => Arc::new(
            strings
                .iter()
                .map(|s| s.and_then(text::parse_date))
                .collect::<Date32Array>(),
        ),
        DataType::Time => Arc::new(
            strings
                .iter()
                .map(|s| s.and_then(text::parse_time))
                .collect::<Time32MillisecondArray>(),
        ),
        DataType::Boolean => Arc::new(
            strings
                .iter()
                .map(|s| s.and_then(text::parse_bool))
                .collect::<BooleanArray>(),
        ),
        DataType::Decimal { precision, scale } => {
            let mut b = Decimal128Builder::with_capacity(strings.len());
            for s in strings.iter() {
                b.append_option(s.and_then(|s| text::parse_decimal(s, *precision, *scale)));
            }
            Arc::new(b.finish().with_precision_and_scale(*precision, *scale)?)
        }
        _ => {
            let trimmed: StringArray = strings.iter().map(|s| s.map(str::trim)).collect();
            arrow::compute::cast_with_options(
                &(Arc::new(trimmed) as ArrayRef),
                &target,
                &CastOptions::default(),
            )?
        }
    })
}

fn to_i64(array: &ArrayRef) -> Result<Vec<i64>, EvalError> {
    let wide = arrow::compute::cast(array, &ArrowType::Int64)?;
    Ok(wide.as_primitive::<Int64Type>().values().to_vec())
}

fn rebuild(values: Vec<i64>, array: &ArrayRef, target: &ArrowType) -> Result<ArrayRef, EvalError> {
    let nulls = array.nulls().cloned();
    Ok(match target {
        ArrowType::Int8 => Arc::new(PrimitiveArray::<Int8Type>::new(
            values.iter().map(|v| *v as i8).collect(),
            nulls,
        )),
        ArrowType::Int16 => Arc::new(PrimitiveArray::<Int16Type>::new(
            values.iter().map(|v| *v as i16).collect(),
            nulls,
        )),
        ArrowType::Int32 => Arc::new(PrimitiveArray::<Int32Type>::new(
            values.iter().map(|v| *v as i32).collect(),
            nulls,
        )),
        ArrowType::Int64 => Arc::new(PrimitiveArray::<Int64Type>::new(values.into(), nulls)),
        other => arrow::compute::cast(
            &(Arc::new(Int64Array::new(values.into(), nulls)) as ArrayRef),
            other,
        )?,
    })
}

/// Integer → integer with Java's wrapping narrowing.
fn narrow_int(array: &ArrayRef, target: &ArrowType) -> Result<ArrayRef, EvalError> {
    rebuild(to_i64(array)?, array, target)
}

/// Floating point → integer, truncating and saturating like Java's `(long)` / `(int)` casts.
fn float_to_int(array: &ArrayRef, target: &ArrowType) -> Result<ArrayRef, EvalError> {
    let doubles: Vec<f64> = match array.data_type() {
        ArrowType::Float32 => array
            .as_primitive::<Float32Type>()
            .values()
            .iter()
            .map(|v| f64::from(*v))
            .collect(),
        _ => array.as_primitive::<Float64Type>().values().to_vec(),
    };
    let values: Vec<i64> = match target {
        ArrowType::Int64 => doubles.iter().map(|d| *d as i64).collect(),
        // Java narrows to int first, then wraps to short/byte.
        _ => doubles.iter().map(|d| i64::from(*d as i32)).collect(),
    };
    rebuild(values, array, target)
}
