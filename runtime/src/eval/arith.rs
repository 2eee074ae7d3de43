//! Arithmetic: integer ops wrap on overflow (Java semantics, as Flink), integer division truncates,
//! integer division or modulo by zero is NULL (fsql's choice: the row survives); floats follow
//! IEEE-754 (division by zero gives ±Infinity or NaN); decimals use Arrow's decimal kernels with a
//! zero divisor giving NULL; timestamps and dates move by intervals.

use std::sync::Arc;

use arrow::array::AsArray;
use arrow::array::{Array, ArrayRef, ArrowPrimitiveType, PrimitiveArray};
use arrow::buffer::{BooleanBuffer, NullBuffer};
use arrow::compute::kernels::{cmp, nullif, numeric};
use arrow::datatypes::{
    ArrowNativeTypeOp, DataType as ArrowType, Int8Type, Int16Type, Int32Type, Int64Type,
};
use fsql_plan::{BinaryOp, DataType};

use super::Value;
use crate::error::EvalError;

pub(crate) fn arithmetic(
    op: BinaryOp,
    l: Value,
    r: Value,
    result: &DataType,
    rows: usize,
) -> Result<Value, EvalError> {
    use ArrowType as A;
    let temporal = |t: &ArrowType| {
        matches!(
            t,
            A::Timestamp(..) | A::Date32 | A::Time32(_) | A::Time64(_)
        )
    };
    let interval = |t: &ArrowType| matches!(t, A::Duration(_) | A::Interval(_));
    match (l.data_type(), r.data_type()) {
        (lt, rt) if temporal(lt) && interval(rt) => {
            return super::temporal::shift(l, r, op == BinaryOp::Minus, result, rows);
        }
        (lt, rt) if interval(lt) && temporal(rt) && op == BinaryOp::Plus => {
            return super::temporal::shift(r, l, false, result, rows);
        }
        _ => {}
    }
    // A NULL-typed operand (an untyped NULL literal) makes the result NULL.
    if l.data_type() == &A::Null || r.data_type() == &A::Null {
        let scalar = l.is_scalar() && r.is_scalar();
        let n = if scalar { 1 } else { rows };
        return Ok(Value::wrap(
            arrow::array::new_null_array(&result.to_arrow(), n),
            scalar,
        ));
    }
    // Operands normally share one type (the compiler inserts casts); align them if not.
    let (l, r) = if l.data_type() != r.data_type()
        && l.data_type().is_numeric()
        && r.data_type().is_numeric()
    {
        super::compare::coerce(l, r)?
    } else {
        (l, r)
    };
    let scalar = l.is_scalar() && r.is_scalar();
    let is_int = l.data_type().is_integer();
    let out: ArrayRef = match op {
        BinaryOp::Plus => numeric::add_wrapping(&l, &r)?,
        BinaryOp::Minus => numeric::sub_wrapping(&l, &r)?,
        BinaryOp::Multiply => numeric::mul_wrapping(&l, &r)?,
        BinaryOp::Divide | BinaryOp::Modulo if is_int => {
            let n = if scalar { 1 } else { rows };
            let (la, ra) = (l.into_array(n), r.into_array(n));
            let ra = if ra.data_type() == la.data_type() {
                ra
            } else {
                arrow::compute::cast(&ra, la.data_type())?
            };
            int_div_rem(&la, &ra, op == BinaryOp::Modulo)?
        }
        BinaryOp::Divide | BinaryOp::Modulo => {
            let (l, r) = if matches!(l.data_type(), A::Decimal128(..) | A::Decimal256(..)) {
                (l, null_zero_divisor(r)?)
            } else {
                (l, r)
            };
            if op == BinaryOp::Divide {
                numeric::div(&l, &r)?
            } else {
                numeric::rem(&l, &r)?
            }
        }
        other => {
            return Err(EvalError::Unsupported(format!(
                "`{}` is not arithmetic",
                other.sql()
            )));
        }
    };
    Ok(Value::wrap(out, scalar))
}

/// Replaces zero divisors with NULL (decimal division by zero is NULL rather than an error).
fn null_zero_divisor(r: Value) -> Result<Value, EvalError> {
    r.map(|a| {
        let zero = arrow::array::new_null_array(a.data_type(), 1);
        // Build a one-row zero of the divisor's type by casting an integer 0.
        let zero = arrow::compute::cast(
            &(Arc::new(arrow::array::Int64Array::from(vec![0])) as ArrayRef),
            a.data_type(),
        )
        .unwrap_or(zero);
        let is_zero = cmp::eq(a, &arrow::array::Scalar::new(zero))?;
        Ok(nullif::nullif(a.as_ref(), &is_zero)?)
    })
}

fn div_rem_typed<T: ArrowPrimitiveType>(l: &ArrayRef, r: &ArrayRef, rem: bool) -> ArrayRef
where
    T::Native: ArrowNativeTypeOp,
{
    let l: &PrimitiveArray<T> = l.as_primitive();
    let r: &PrimitiveArray<T> = r.as_primitive();
    let values: Vec<T::Native> = l
        .values()
        .iter()
        .zip(r.values().iter())
        .map(|(&a, &b)| {
            if b.is_zero() {
                T::Native::ZERO
            } else if rem {
                a.mod_wrapping(b)
            } else {
                a.div_wrapping(b)
            }
        })
        .collect();
    let nonzero = NullBuffer::new(BooleanBuffer::collect_bool(r.len(), |i| {
        !r.values()[i].is_zero()
    }));
    let nulls = NullBuffer::union(
        NullBuffer::union(l.nulls(), r.nulls()).as_ref(),
        Some(&nonzero),
    );
    Arc::new(PrimitiveArray::<T>::new(values.into(), nulls))
}

/// Truncating integer division / Java remainder, wrapping (`MIN / -1 = MIN`), NULL for a zero divisor.
fn int_div_rem(l: &ArrayRef, r: &ArrayRef, rem: bool) -> Result<ArrayRef, EvalError> {
    Ok(match l.data_type() {
        ArrowType::Int8 => div_rem_typed::<Int8Type>(l, r, rem),
        ArrowType::Int16 => div_rem_typed::<Int16Type>(l, r, rem),
        ArrowType::Int32 => div_rem_typed::<Int32Type>(l, r, rem),
        ArrowType::Int64 => div_rem_typed::<Int64Type>(l, r, rem),
        other => {
            return Err(EvalError::Unsupported(format!(
                "integer division of {other}"
            )));
        }
    })
}
