//! Helpers shared by the kernels: argument checking, lenient input casts, bounded string output and the
//! common-type rule used by the variadic functions.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, StringArray, StringBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit};
use arrow::error::ArrowError;

use crate::KernelError;

/// Largest total string payload of one output array (Arrow's `Utf8` uses i32 offsets).
pub(crate) const MAX_STRING_BYTES: usize = i32::MAX as usize;

/// Wraps an Arrow error with the function's name.
pub(crate) fn arrow_err(function: &'static str) -> impl Fn(ArrowError) -> KernelError {
    move |source| KernelError::Arrow { function, source }
}

/// An [`KernelError::Invalid`] with the given message.
pub(crate) fn invalid(function: &'static str, message: impl Into<String>) -> KernelError {
    KernelError::Invalid {
        function,
        message: message.into(),
    }
}

/// Checks that the number of arguments is one of `allowed`.
pub(crate) fn arity(
    function: &'static str,
    args: &[ArrayRef],
    allowed: &[usize],
) -> Result<(), KernelError> {
    if allowed.contains(&args.len()) {
        return Ok(());
    }
    let expected = allowed
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(" or ");
    Err(KernelError::Arity {
        function,
        expected,
        got: args.len(),
    })
}

/// The `index`-th argument (which the caller has checked exists).
fn arg<'a>(
    function: &'static str,
    args: &'a [ArrayRef],
    index: usize,
) -> Result<&'a ArrayRef, KernelError> {
    args.get(index).ok_or_else(|| KernelError::Arity {
        function,
        expected: format!("at least {}", index + 1),
        got: args.len(),
    })
}

fn type_error(
    function: &'static str,
    index: usize,
    expected: &'static str,
    actual: &DataType,
) -> KernelError {
    KernelError::ArgType {
        function,
        index,
        expected,
        actual: actual.clone(),
    }
}

/// Whether `t` is one of Arrow's string types.
pub(crate) fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Whether `t` is a signed or unsigned integer type.
pub(crate) fn is_integer(t: &DataType) -> bool {
    t.is_integer()
}

/// Whether `t` is an integer, floating point or decimal type.
pub(crate) fn is_numeric(t: &DataType) -> bool {
    t.is_integer() || t.is_floating() || matches!(t, DataType::Decimal128(_, _))
}

/// Casts `array` to `to`, naming the function in the error.
pub(crate) fn cast_to(
    function: &'static str,
    array: &ArrayRef,
    to: &DataType,
) -> Result<ArrayRef, KernelError> {
    if array.data_type() == to {
        return Ok(Arc::clone(array));
    }
    cast(array, to).map_err(arrow_err(function))
}

/// The `index`-th argument as a `Utf8` array (LargeUtf8, Utf8View and untyped NULL are cast).
pub(crate) fn utf8(
    function: &'static str,
    args: &[ArrayRef],
    index: usize,
) -> Result<StringArray, KernelError> {
    let a = arg(function, args, index)?;
    match a.data_type() {
        DataType::Utf8 => Ok(a.as_string::<i32>().clone()),
        t if is_string(t) || t == &DataType::Null => Ok(cast_to(function, a, &DataType::Utf8)?
            .as_string::<i32>()
            .clone()),
        t => Err(type_error(function, index, "a string", t)),
    }
}

/// The `index`-th argument as an `Int64` array (other integer types and untyped NULL are cast).
pub(crate) fn int64(
    function: &'static str,
    args: &[ArrayRef],
    index: usize,
) -> Result<Int64Array, KernelError> {
    let a = arg(function, args, index)?;
    match a.data_type() {
        DataType::Int64 => Ok(a.as_primitive::<Int64Type>().clone()),
        t if is_integer(t) || t == &DataType::Null => Ok(cast_to(function, a, &DataType::Int64)?
            .as_primitive::<Int64Type>()
            .clone()),
        t => Err(type_error(function, index, "an integer", t)),
    }
}

/// The `index`-th argument as a `Float64` array (any numeric type and untyped NULL are cast).
pub(crate) fn float64(
    function: &'static str,
    args: &[ArrayRef],
    index: usize,
) -> Result<Float64Array, KernelError> {
    let a = arg(function, args, index)?;
    match a.data_type() {
        DataType::Float64 => Ok(a.as_primitive::<Float64Type>().clone()),
        t if is_numeric(t) || t == &DataType::Null => Ok(cast_to(function, a, &DataType::Float64)?
            .as_primitive::<Float64Type>()
            .clone()),
        t => Err(type_error(function, index, "a number", t)),
    }
}

/// The `index`-th argument as a `Boolean` array (untyped NULL is cast).
pub(crate) fn boolean(
    function: &'static str,
    args: &[ArrayRef],
    index: usize,
) -> Result<BooleanArray, KernelError> {
    let a = arg(function, args, index)?;
    match a.data_type() {
        DataType::Boolean => Ok(a.as_boolean().clone()),
        DataType::Null => Ok(BooleanArray::new_null(a.len())),
        t => Err(type_error(function, index, "a boolean", t)),
    }
}

/// Checks that every argument has `num_rows` rows.
pub(crate) fn rows(
    function: &'static str,
    args: &[ArrayRef],
    num_rows: usize,
) -> Result<(), KernelError> {
    match args.iter().find(|a| a.len() != num_rows) {
        Some(a) => Err(invalid(
            function,
            format!("argument has {} rows, expected {num_rows}", a.len()),
        )),
        None => Ok(()),
    }
}

/// Builds a `Utf8` array, refusing (instead of panicking) when the payload would overflow i32 offsets.
pub(crate) struct Utf8Out {
    builder: StringBuilder,
    bytes: usize,
    function: &'static str,
}

impl Utf8Out {
    /// An empty builder for `rows` values.
    pub(crate) fn new(function: &'static str, rows: usize) -> Self {
        Utf8Out {
            builder: StringBuilder::with_capacity(rows, rows.saturating_mul(8)),
            bytes: 0,
            function,
        }
    }

    /// Appends a value.
    pub(crate) fn push(&mut self, value: &str) -> Result<(), KernelError> {
        self.bytes = self.bytes.saturating_add(value.len());
        if self.bytes > MAX_STRING_BYTES {
            return Err(too_large(self.function));
        }
        self.builder.append_value(value);
        Ok(())
    }

    /// Appends NULL.
    pub(crate) fn push_null(&mut self) {
        self.builder.append_null();
    }

    /// Appends a value or NULL.
    pub(crate) fn push_opt(&mut self, value: Option<&str>) -> Result<(), KernelError> {
        match value {
            Some(v) => self.push(v),
            None => {
                self.push_null();
                Ok(())
            }
        }
    }

    /// The finished array.
    pub(crate) fn finish(mut self) -> ArrayRef {
        Arc::new(self.builder.finish())
    }
}

/// The error for a string result beyond what one Arrow array can hold.
pub(crate) fn too_large(function: &'static str) -> KernelError {
    invalid(
        function,
        "result string is too large (more than 2 GiB in one batch)",
    )
}

/// Checks that a single string of `len` bytes can be produced.
pub(crate) fn check_len(function: &'static str, len: Option<usize>) -> Result<usize, KernelError> {
    match len {
        Some(n) if n <= MAX_STRING_BYTES => Ok(n),
        _ => Err(too_large(function)),
    }
}

/// Digits needed for an integer type viewed as a decimal.
fn integer_digits(t: &DataType) -> Option<u8> {
    Some(match t {
        DataType::Int8 | DataType::UInt8 => 3,
        DataType::Int16 | DataType::UInt16 => 5,
        DataType::Int32 | DataType::UInt32 => 10,
        DataType::Int64 => 19,
        DataType::UInt64 => 20,
        _ => return None,
    })
}

fn integer_rank(t: &DataType) -> Option<u8> {
    Some(match t {
        DataType::Int8 => 1,
        DataType::UInt8 | DataType::Int16 => 2,
        DataType::UInt16 | DataType::Int32 => 3,
        DataType::UInt32 | DataType::Int64 => 4,
        _ => return None,
    })
}

fn integer_of_rank(rank: u8) -> DataType {
    match rank {
        1 => DataType::Int8,
        2 => DataType::Int16,
        3 => DataType::Int32,
        _ => DataType::Int64,
    }
}

fn finer(a: TimeUnit, b: TimeUnit) -> TimeUnit {
    fn rank(u: TimeUnit) -> u8 {
        match u {
            TimeUnit::Second => 0,
            TimeUnit::Millisecond => 1,
            TimeUnit::Microsecond => 2,
            TimeUnit::Nanosecond => 3,
        }
    }
    if rank(a) >= rank(b) { a } else { b }
}

/// The common type of two types, following Flink's widening (INT + DECIMAL(2,1) → DECIMAL(11,1),
/// FLOAT + INT → FLOAT, anything approximate + DOUBLE/DECIMAL → DOUBLE, TIMESTAMP + TIMESTAMP_LTZ → LTZ).
fn common2(a: &DataType, b: &DataType) -> Result<DataType, String> {
    use DataType::*;
    if a == b {
        return Ok(a.clone());
    }
    Ok(match (a, b) {
        (Null, t) | (t, Null) => t.clone(),
        (x, y) if is_string(x) && is_string(y) => Utf8,
        (Binary | LargeBinary | BinaryView, Binary | LargeBinary | BinaryView) => Binary,
        (x, y) if integer_rank(x).is_some() && integer_rank(y).is_some() => {
            integer_of_rank(integer_rank(x).max(integer_rank(y)).unwrap_or(4))
        }
        (Float64, y) | (y, Float64) if is_numeric(y) => Float64,
        (Float32, y) | (y, Float32) if is_integer(y) || y == &Float16 => Float32,
        (Float32 | Float16, Decimal128(_, _)) | (Decimal128(_, _), Float32 | Float16) => Float64,
        (Float16, y) | (y, Float16) if is_integer(y) => Float32,
        (Decimal128(p1, s1), Decimal128(p2, s2)) => merge_decimal(*p1, *s1, *p2, *s2),
        (Decimal128(p, s), y) | (y, Decimal128(p, s)) if integer_digits(y).is_some() => {
            merge_decimal(*p, *s, integer_digits(y).unwrap_or(20), 0)
        }
        (Timestamp(u1, tz1), Timestamp(u2, tz2)) => {
            Timestamp(finer(*u1, *u2), tz1.clone().or_else(|| tz2.clone()))
        }
        (Timestamp(u, tz), Date32) | (Date32, Timestamp(u, tz)) => Timestamp(*u, tz.clone()),
        _ => return Err(format!("no common type for {a} and {b}")),
    })
}

fn merge_decimal(p1: u8, s1: i8, p2: u8, s2: i8) -> DataType {
    let int_digits = (i16::from(p1) - i16::from(s1)).max(i16::from(p2) - i16::from(s2));
    let scale = s1.max(s2);
    let precision = (int_digits + i16::from(scale)).clamp(1, 38);
    DataType::Decimal128(precision as u8, scale)
}

/// The common type of all `types` (untyped NULLs are ignored; all-NULL gives `Null`).
pub(crate) fn common_type(types: &[DataType]) -> Result<DataType, String> {
    types
        .iter()
        .try_fold(DataType::Null, |acc, t| common2(&acc, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_type_follows_flink_widening() {
        use DataType::*;
        assert_eq!(common_type(&[Int32, Int64]), Ok(Int64));
        assert_eq!(
            common_type(&[Int32, Decimal128(2, 1)]),
            Ok(Decimal128(11, 1))
        );
        assert_eq!(common_type(&[Float32, Int64]), Ok(Float32));
        assert_eq!(common_type(&[Float32, Float64, Int8]), Ok(Float64));
        assert_eq!(common_type(&[Null, Utf8, LargeUtf8]), Ok(Utf8));
        assert_eq!(common_type(&[Null, Null]), Ok(Null));
        assert_eq!(
            common_type(&[
                Timestamp(TimeUnit::Millisecond, None),
                Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            ]),
            Ok(Timestamp(TimeUnit::Microsecond, Some("UTC".into())))
        );
        assert!(common_type(&[Utf8, Int32]).is_err());
        assert!(common_type(&[Boolean, Date32]).is_err());
    }

    #[test]
    fn utf8_out_counts_bytes() {
        let mut out = Utf8Out::new("t", 2);
        assert!(out.push("ab").is_ok());
        out.push_null();
        assert_eq!(out.finish().len(), 2);
        assert!(check_len("t", Some(MAX_STRING_BYTES + 1)).is_err());
        assert!(check_len("t", None).is_err());
    }
}
