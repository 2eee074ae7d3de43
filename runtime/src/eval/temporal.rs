//! Timestamp/date/time ± interval. Day-time intervals move by an exact duration; year-month
//! intervals move the calendar month, clamping the day (Jan 31 + 1 month = Feb 28/29, like Java's
//! `plusMonths` that Flink uses).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    DataType as ArrowType, Date32Type, DurationMicrosecondType, DurationMillisecondType,
    DurationNanosecondType, DurationSecondType, Int64Type, IntervalDayTimeType,
    IntervalMonthDayNanoType, IntervalUnit, IntervalYearMonthType, Time32MillisecondType, TimeUnit,
};
use fsql_plan::DataType;

use super::Value;
use crate::error::EvalError;
use crate::text::{civil_from_days, days_from_civil, days_in_month, units_per_second};

/// A per-row interval: whole months plus nanoseconds.
type Delta = (i64, i128);

/// Reads each row of an interval array as (months, nanoseconds); NULL rows are `None`.
fn deltas(array: &ArrayRef) -> Result<Vec<Option<Delta>>, EvalError> {
    fn collect<T: arrow::array::ArrowPrimitiveType>(
        a: &ArrayRef,
        f: impl Fn(T::Native) -> Delta,
    ) -> Vec<Option<Delta>> {
        a.as_primitive::<T>().iter().map(|v| v.map(&f)).collect()
    }
    Ok(match array.data_type() {
        ArrowType::Duration(TimeUnit::Second) => {
            collect::<DurationSecondType>(array, |v| (0, i128::from(v) * 1_000_000_000))
        }
        ArrowType::Duration(TimeUnit::Millisecond) => {
            collect::<DurationMillisecondType>(array, |v| (0, i128::from(v) * 1_000_000))
        }
        ArrowType::Duration(TimeUnit::Microsecond) => {
            collect::<DurationMicrosecondType>(array, |v| (0, i128::from(v) * 1_000))
        }
        ArrowType::Duration(TimeUnit::Nanosecond) => {
            collect::<DurationNanosecondType>(array, |v| (0, i128::from(v)))
        }
        ArrowType::Interval(IntervalUnit::YearMonth) => {
            collect::<IntervalYearMonthType>(array, |v| (i64::from(v), 0))
        }
        ArrowType::Interval(IntervalUnit::DayTime) => collect::<IntervalDayTimeType>(array, |v| {
            (
                0,
                i128::from(v.days) * 86_400_000_000_000 + i128::from(v.milliseconds) * 1_000_000,
            )
        }),
        ArrowType::Interval(IntervalUnit::MonthDayNano) => {
            collect::<IntervalMonthDayNanoType>(array, |v| {
                (
                    i64::from(v.months),
                    i128::from(v.days) * 86_400_000_000_000 + i128::from(v.nanoseconds),
                )
            })
        }
        other => {
            return Err(EvalError::Unsupported(format!(
                "{other} is not an interval"
            )));
        }
    })
}

fn add_months_to_days(days: i64, months: i64) -> i64 {
    if months == 0 {
        return days;
    }
    let (y, m, d) = civil_from_days(days);
    let total = y * 12 + i64::from(m) - 1 + months;
    let (ny, nm) = (total.div_euclid(12), (total.rem_euclid(12) + 1) as u32);
    days_from_civil(ny, nm, d.min(days_in_month(ny, nm)))
}

/// Moves an epoch value in `per_second` units by `delta`, wrapping on overflow.
fn shift_instant(value: i64, per_second: i64, delta: Delta, subtract: bool) -> i64 {
    let (months, nanos) = if subtract {
        (-delta.0, -delta.1)
    } else {
        delta
    };
    let mut v = value;
    if months != 0 {
        let per_day = per_second * 86_400;
        let days = v.div_euclid(per_day);
        let rest = v.rem_euclid(per_day);
        v = add_months_to_days(days, months)
            .wrapping_mul(per_day)
            .wrapping_add(rest);
    }
    let units = nanos * i128::from(per_second) / 1_000_000_000;
    v.wrapping_add(units as i64)
}

/// `t ± interval` for a temporal `t`; the result has `result`'s type (a DATE stays a DATE, a
/// DATE plus a time interval becomes a TIMESTAMP when the plan says so).
pub(crate) fn shift(
    t: Value,
    iv: Value,
    subtract: bool,
    result: &DataType,
    rows: usize,
) -> Result<Value, EvalError> {
    let scalar = t.is_scalar() && iv.is_scalar();
    let n = if scalar { 1 } else { rows };
    let target = result.to_arrow();
    let mut t = t.into_array(n);
    // DATE + time interval typed as TIMESTAMP: compute on the timestamp form.
    if matches!(t.data_type(), ArrowType::Date32) && matches!(target, ArrowType::Timestamp(..)) {
        t = arrow::compute::cast(&t, &target)?;
    }
    let iv = iv.into_array(n);
    let d = deltas(&iv)?;
    let nulls = NullBuffer::union(t.nulls(), iv.nulls());
    let out: ArrayRef = match t.data_type().clone() {
        ArrowType::Timestamp(unit, tz) => {
            let per = units_per_second(unit);
            let ints = arrow::compute::cast(&t, &ArrowType::Int64)?;
            let vals = ints.as_primitive::<Int64Type>();
            let values: Vec<i64> = (0..n)
                .map(|i| {
                    d[i].map_or(0, |delta| {
                        shift_instant(vals.values()[i], per, delta, subtract)
                    })
                })
                .collect();
            let ints = PrimitiveArray::<Int64Type>::new(values.into(), nulls);
            let array: ArrayRef = Arc::new(ints);
            arrow::compute::cast(&array, &ArrowType::Timestamp(unit, tz))?
        }
        ArrowType::Date32 => {
            let vals = t.as_primitive::<Date32Type>();
            let moved: Vec<i32> = (0..n)
                .map(|i| {
                    d[i].map_or(0, |(months, nanos)| {
                        let (months, nanos) = if subtract {
                            (-months, -nanos)
                        } else {
                            (months, nanos)
                        };
                        let days = add_months_to_days(i64::from(vals.values()[i]), months);
                        let moved = days + (nanos / 86_400_000_000_000) as i64;
                        moved as i32
                    })
                })
                .collect();
            Arc::new(PrimitiveArray::<Date32Type>::new(moved.into(), nulls))
        }
        ArrowType::Time32(TimeUnit::Millisecond) => {
            let vals = t.as_primitive::<Time32MillisecondType>();
            let values: Vec<i32> = (0..n)
                .map(|i| {
                    d[i].map_or(0, |(_, nanos)| {
                        let ms = (nanos / 1_000_000) as i64;
                        let ms = if subtract { -ms } else { ms };
                        (i64::from(vals.values()[i]) + ms).rem_euclid(86_400_000) as i32
                    })
                })
                .collect();
            Arc::new(PrimitiveArray::<Time32MillisecondType>::new(
                values.into(),
                nulls,
            ))
        }
        other => return Err(EvalError::Unsupported(format!("{other} ± interval"))),
    };
    let out = if out.data_type() != &target && target != ArrowType::Null {
        arrow::compute::cast(&out, &target)?
    } else {
        out
    };
    Ok(Value::wrap(out, scalar))
}
