//! Comparisons (`=`, `<`, `IS [NOT] DISTINCT FROM`...), with operands of different but comparable
//! Arrow types (timestamp units, integer widths) brought to a common type first.
//!
//! FLOAT and DOUBLE compare as IEEE-754 values, as Flink (Java's `==`, `<`) does: NaN equals
//! nothing, itself included, and is neither less nor greater than anything; `-0.0 = 0.0`; `<>` and
//! `IS DISTINCT FROM` are TRUE for NaN. (Arrow's kernels order floats totally instead, so floats do
//! not use them.)

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use arrow::buffer::{BooleanBuffer, NullBuffer};
use arrow::compute::kernels::cmp;
use arrow::datatypes::{
    ArrowPrimitiveType, DataType as ArrowType, Float32Type, Float64Type, TimeUnit,
};
use fsql_plan::BinaryOp;

use super::Value;
use crate::error::EvalError;

fn unit_rank(u: &TimeUnit) -> u8 {
    match u {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 1,
        TimeUnit::Microsecond => 2,
        TimeUnit::Nanosecond => 3,
    }
}

fn int_rank(t: &ArrowType) -> Option<u8> {
    Some(match t {
        ArrowType::Int8 => 1,
        ArrowType::Int16 => 2,
        ArrowType::Int32 => 3,
        ArrowType::Int64 => 4,
        _ => return None,
    })
}

/// The type both operands are cast to before a comparison, or `None` when they already agree or
/// no coercion applies (the kernel then reports the mismatch).
pub(crate) fn common_type(l: &ArrowType, r: &ArrowType) -> Option<ArrowType> {
    use ArrowType as A;
    if l == r {
        return None;
    }
    Some(match (l, r) {
        (A::Timestamp(ul, tz), A::Timestamp(ur, _)) => {
            let unit = if unit_rank(ul) >= unit_rank(ur) {
                *ul
            } else {
                *ur
            };
            A::Timestamp(unit, tz.clone())
        }
        (A::Timestamp(..), A::Date32) => l.clone(),
        (A::Date32, A::Timestamp(..)) => r.clone(),
        (A::Null, _) => r.clone(),
        (_, A::Null) => l.clone(),
        (A::Float64 | A::Float32, _) | (_, A::Float64 | A::Float32)
            if l.is_numeric() && r.is_numeric() =>
        {
            A::Float64
        }
        (A::Decimal128(pl, sl), A::Decimal128(pr, sr)) => {
            let scale = (*sl).max(*sr);
            let int_digits = (i16::from(*pl) - i16::from(*sl)).max(i16::from(*pr) - i16::from(*sr));
            let precision = (int_digits + i16::from(scale)).clamp(1, 38) as u8;
            A::Decimal128(precision, scale)
        }
        (A::Decimal128(_, s), _) | (_, A::Decimal128(_, s)) if l.is_integer() || r.is_integer() => {
            A::Decimal128(38, *s)
        }
        _ if int_rank(l).is_some() && int_rank(r).is_some() => {
            if int_rank(l) >= int_rank(r) {
                l.clone()
            } else {
                r.clone()
            }
        }
        (A::Utf8 | A::LargeUtf8 | A::Utf8View, A::Utf8 | A::LargeUtf8 | A::Utf8View) => A::Utf8,
        _ => return None,
    })
}

/// Casts both operands to their common type (see [`common_type`]).
pub(crate) fn coerce(l: Value, r: Value) -> Result<(Value, Value), EvalError> {
    match common_type(l.data_type(), r.data_type()) {
        None => Ok((l, r)),
        Some(t) => {
            let l = super::conform(l, &t)?;
            let r = super::conform(r, &t)?;
            Ok((l, r))
        }
    }
}

pub(crate) fn compare(op: BinaryOp, l: Value, r: Value) -> Result<Value, EvalError> {
    let (l, r) = coerce(l, r)?;
    let scalar = l.is_scalar() && r.is_scalar();
    match (l.data_type(), r.data_type()) {
        (ArrowType::Float64, ArrowType::Float64) => {
            return float_compare::<Float64Type>(op, &l, &r, scalar);
        }
        (ArrowType::Float32, ArrowType::Float32) => {
            return float_compare::<Float32Type>(op, &l, &r, scalar);
        }
        _ => {}
    }
    let out = match op {
        BinaryOp::Eq => cmp::eq(&l, &r)?,
        BinaryOp::NotEq => cmp::neq(&l, &r)?,
        BinaryOp::Lt => cmp::lt(&l, &r)?,
        BinaryOp::LtEq => cmp::lt_eq(&l, &r)?,
        BinaryOp::Gt => cmp::gt(&l, &r)?,
        BinaryOp::GtEq => cmp::gt_eq(&l, &r)?,
        BinaryOp::IsDistinctFrom => cmp::distinct(&l, &r)?,
        BinaryOp::IsNotDistinctFrom => cmp::not_distinct(&l, &r)?,
        other => {
            return Err(EvalError::Unsupported(format!(
                "`{}` is not a comparison",
                other.sql()
            )));
        }
    };
    Ok(Value::wrap(Arc::new(out) as ArrayRef, scalar))
}

/// IEEE-754 comparison of two float operands (arrays or one-row scalars).
fn float_compare<T>(op: BinaryOp, l: &Value, r: &Value, scalar: bool) -> Result<Value, EvalError>
where
    T: ArrowPrimitiveType,
    T::Native: PartialOrd,
{
    let (la, ra) = (l.array().as_primitive::<T>(), r.array().as_primitive::<T>());
    let len = if scalar {
        1
    } else if l.is_scalar() {
        ra.len()
    } else {
        la.len()
    };
    // Index of row `i` in each operand (a scalar repeats its one row).
    let li = |i: usize| if l.is_scalar() { 0 } else { i };
    let ri = |i: usize| if r.is_scalar() { 0 } else { i };
    let (lv, rv) = (la.values(), ra.values());
    let test = |f: &dyn Fn(T::Native, T::Native) -> bool| {
        BooleanBuffer::collect_bool(len, |i| f(lv[li(i)], rv[ri(i)]))
    };
    let valid = |a: &arrow::array::PrimitiveArray<T>, at: &dyn Fn(usize) -> usize| {
        BooleanBuffer::collect_bool(len, |i| a.is_valid(at(i)))
    };
    let out = match op {
        BinaryOp::IsDistinctFrom | BinaryOp::IsNotDistinctFrom => {
            let (lvalid, rvalid) = (valid(la, &li), valid(ra, &ri));
            let equal = test(&|a, b| a == b);
            // Not distinct: both NULL, or both valid and equal.
            let same = &(&(&lvalid & &rvalid) & &equal) | &(&!&lvalid & &!&rvalid);
            let values = if op == BinaryOp::IsNotDistinctFrom {
                same
            } else {
                !&same
            };
            BooleanArray::new(values, None)
        }
        _ => {
            let values = match op {
                BinaryOp::Eq => test(&|a, b| a == b),
                BinaryOp::NotEq => test(&|a, b| a != b),
                BinaryOp::Lt => test(&|a, b| a < b),
                BinaryOp::LtEq => test(&|a, b| a <= b),
                BinaryOp::Gt => test(&|a, b| a > b),
                BinaryOp::GtEq => test(&|a, b| a >= b),
                other => {
                    return Err(EvalError::Unsupported(format!(
                        "`{}` is not a comparison",
                        other.sql()
                    )));
                }
            };
            let lnulls = la.nulls().map(|_| NullBuffer::new(valid(la, &li)));
            let rnulls = ra.nulls().map(|_| NullBuffer::new(valid(ra, &ri)));
            BooleanArray::new(values, NullBuffer::union(lnulls.as_ref(), rnulls.as_ref()))
        }
    };
    Ok(Value::wrap(Arc::new(out) as ArrayRef, scalar))
}
