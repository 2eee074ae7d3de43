//! Comparisons (`=`, `<`, `IS [NOT] DISTINCT FROM`...), with operands of different but comparable
//! Arrow types (timestamp units, integer widths) brought to a common type first.

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::compute::kernels::cmp;
use arrow::datatypes::{DataType as ArrowType, TimeUnit};
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
