//! Window table-valued functions: TUMBLE, HOP, CUMULATE and SESSION.
//!
//! * [`WindowAssign`] reads a window TVF without aggregation: each row once per window it belongs
//!   to, with `window_start`, `window_end` and `window_time` appended.
//! * [`WindowAggregate`] is window aggregation. TUMBLE, HOP and CUMULATE windows are cut into
//!   *slices* ([`Slicing`]) — the window itself for TUMBLE, `gcd(size, slide)` for HOP, the step
//!   for CUMULATE — so an event updates one accumulator per aggregate whatever the window's
//!   size/slide; a window's result merges its slices when the watermark passes its end. SESSION
//!   windows are kept per key and merged as rows arrive ([`session`]).
//! * [`WindowRank`] numbers the rows of each window partition in order once the window is complete
//!   (Window TopN and deduplication).
//!
//! Semantics follow Flink: windows are `[start, end)` aligned to the epoch plus the offset, a
//! window fires when the watermark reaches `end - 1`, `window_time = end - 1 ms`; a row is late
//! when the slice (SESSION: the session) it falls into has already fired — it goes to the
//! late-data output, never silently away. Windows fire in both emit modes (a window's result is
//! final only once the watermark passes it). Only windows with rows are emitted.

mod aggregate;
mod assign;
mod rank;
mod session;
mod sliced;
mod slicing;

pub use aggregate::WindowAggregate;
pub use assign::WindowAssign;
pub use rank::WindowRank;
pub(crate) use slicing::Slicing;

use arrow::array::{Array, ArrayRef, Int64Array};
use arrow::datatypes::{DataType as ArrowType, TimeUnit};

use crate::operators::agg::value::widen;

/// The event times of a timestamp column in epoch milliseconds (NULL stays NULL).
pub(crate) fn event_millis(column: &ArrayRef) -> Result<Int64Array, arrow::error::ArrowError> {
    let ms = match column.data_type() {
        ArrowType::Timestamp(TimeUnit::Millisecond, _) | ArrowType::Int64 => column.clone(),
        ArrowType::Timestamp(_, tz) => arrow::compute::cast(
            column,
            &ArrowType::Timestamp(TimeUnit::Millisecond, tz.clone()),
        )?,
        other => {
            return Err(arrow::error::ArrowError::InvalidArgumentError(format!(
                "a window's time column must be a timestamp, not {other}"
            )));
        }
    };
    let out = widen(&ms)?;
    debug_assert_eq!(out.len(), column.len());
    Ok(out)
}

/// Epoch milliseconds as a column of `target` (a timestamp type).
pub(crate) fn millis_array(
    values: Vec<i64>,
    target: &ArrowType,
) -> Result<ArrayRef, arrow::error::ArrowError> {
    let a: ArrayRef = std::sync::Arc::new(arrow::array::TimestampMillisecondArray::from(values));
    if a.data_type() == target {
        Ok(a)
    } else {
        arrow::compute::cast(&a, target)
    }
}
