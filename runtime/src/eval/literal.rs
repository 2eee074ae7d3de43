//! Literal values as one-row Arrow arrays, from the plan's physical representation
//! (see `fsql_plan::Literal`).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, DurationMillisecondArray,
    Float32Array, Float64Array, Int8Array, Int16Array, Int32Array, Int64Array,
    IntervalYearMonthArray, StringArray, Time32MillisecondArray, new_null_array,
};
use arrow::compute::CastOptions;
use fsql_plan::{DataType, Literal};

use crate::error::EvalError;

fn invalid(lit: &Literal, ty: &DataType) -> EvalError {
    EvalError::InvalidLiteral(format!("{lit:?} is not a valid {ty} value"))
}

fn narrow<T: TryFrom<i64>>(v: i64, lit: &Literal, ty: &DataType) -> Result<T, EvalError> {
    T::try_from(v).map_err(|_| invalid(lit, ty))
}

/// The literal as a one-row array of `ty.to_arrow()`.
pub(crate) fn literal_array(lit: &Literal, ty: &DataType) -> Result<ArrayRef, EvalError> {
    let arrow_type = ty.to_arrow();
    let array: ArrayRef = match (lit, ty) {
        (Literal::Null, _) => new_null_array(&arrow_type, 1),
        (Literal::Boolean(b), DataType::Boolean) => Arc::new(BooleanArray::from(vec![*b])),
        (Literal::Int(v), DataType::TinyInt) => {
            Arc::new(Int8Array::from(vec![narrow::<i8>(*v, lit, ty)?]))
        }
        (Literal::Int(v), DataType::SmallInt) => {
            Arc::new(Int16Array::from(vec![narrow::<i16>(*v, lit, ty)?]))
        }
        (Literal::Int(v), DataType::Int) => {
            Arc::new(Int32Array::from(vec![narrow::<i32>(*v, lit, ty)?]))
        }
        (Literal::Int(v), DataType::BigInt) => Arc::new(Int64Array::from(vec![*v])),
        (Literal::Int(v), DataType::Float) => Arc::new(Float32Array::from(vec![*v as f32])),
        (Literal::Int(v), DataType::Double) => Arc::new(Float64Array::from(vec![*v as f64])),
        (Literal::Int(v), DataType::Decimal { precision, scale }) => {
            // An integer literal of a DECIMAL type is the whole number `v` (not unscaled).
            let factor = 10i128
                .checked_pow(u32::try_from(*scale).unwrap_or(0))
                .ok_or_else(|| invalid(lit, ty))?;
            let unscaled = i128::from(*v)
                .checked_mul(factor)
                .ok_or_else(|| invalid(lit, ty))?;
            Arc::new(
                Decimal128Array::from(vec![unscaled])
                    .with_precision_and_scale(*precision, *scale)
                    .map_err(|_| invalid(lit, ty))?,
            )
        }
        (Literal::Int(v), DataType::Date) => {
            Arc::new(Date32Array::from(vec![narrow::<i32>(*v, lit, ty)?]))
        }
        (Literal::Int(v), DataType::Time) => {
            Arc::new(Time32MillisecondArray::from(vec![narrow::<i32>(
                *v, lit, ty,
            )?]))
        }
        (Literal::Int(v), DataType::Timestamp { .. } | DataType::TimestampLtz { .. }) => {
            let array: ArrayRef = Arc::new(Int64Array::from(vec![*v]));
            arrow::compute::cast(&array, &arrow_type)?
        }
        (Literal::Int(v), DataType::IntervalDayTime) => {
            Arc::new(DurationMillisecondArray::from(vec![*v]))
        }
        (Literal::Int(v), DataType::IntervalYearMonth) => Arc::new(IntervalYearMonthArray::from(
            vec![narrow::<i32>(*v, lit, ty)?],
        )),
        (Literal::Float(bits), DataType::Float) => {
            Arc::new(Float32Array::from(vec![f64::from_bits(*bits) as f32]))
        }
        (Literal::Float(bits), DataType::Double) => {
            Arc::new(Float64Array::from(vec![f64::from_bits(*bits)]))
        }
        (Literal::Float(bits), DataType::Decimal { .. }) => {
            let array: ArrayRef = Arc::new(Float64Array::from(vec![f64::from_bits(*bits)]));
            arrow::compute::cast(&array, &arrow_type)?
        }
        (Literal::Decimal(text), DataType::Decimal { precision, scale }) => {
            let unscaled: i128 = text.trim().parse().map_err(|_| invalid(lit, ty))?;
            Arc::new(
                Decimal128Array::from(vec![unscaled])
                    .with_precision_and_scale(*precision, *scale)
                    .map_err(|_| invalid(lit, ty))?,
            )
        }
        (Literal::String(s), DataType::String) => Arc::new(StringArray::from(vec![s.as_str()])),
        (Literal::String(s), _) => {
            // A string literal typed as something else: convert it like CAST would.
            let array: ArrayRef = Arc::new(StringArray::from(vec![s.as_str()]));
            super::cast::cast_array(&array, &DataType::String, ty, false)
                .map_err(|_| invalid(lit, ty))?
        }
        (Literal::Bytes(b), DataType::Bytes) => Arc::new(BinaryArray::from(vec![b.as_slice()])),
        _ => {
            // Any other combination: try an Arrow cast from the natural array of the literal.
            let natural: ArrayRef = match lit {
                Literal::Boolean(b) => Arc::new(BooleanArray::from(vec![*b])),
                Literal::Int(v) => Arc::new(Int64Array::from(vec![*v])),
                Literal::Float(bits) => Arc::new(Float64Array::from(vec![f64::from_bits(*bits)])),
                _ => return Err(invalid(lit, ty)),
            };
            let options = CastOptions {
                safe: false,
                ..CastOptions::default()
            };
            arrow::compute::cast_with_options(&natural, &arrow_type, &options)
                .map_err(|_| invalid(lit, ty))?
        }
    };
    Ok(array)
}
