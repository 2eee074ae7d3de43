//! Searched `CASE`: the first branch whose condition is TRUE wins. Each condition is evaluated only
//! on rows no earlier branch took, and each value only on the rows its branch took, so a branch
//! never fails on rows it does not produce.

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, new_null_array};
use arrow::compute::kernels::interleave::interleave;
use fsql_plan::{DataType, Expr};

use super::logic::is_true;
use super::{Value, as_boolean, eval_selected, evaluate_masked};
use crate::error::EvalError;

pub(crate) fn case(
    branches: &[(Expr, Expr)],
    otherwise: Option<&Expr>,
    data_type: &DataType,
    batch: &RecordBatch,
) -> Result<Value, EvalError> {
    let rows = batch.num_rows();
    let target = data_type.to_arrow();
    let mut remaining = BooleanArray::from(vec![true; rows]);
    let mut sources: Vec<ArrayRef> = Vec::new();
    // Row i of the result is row `indices[i].1` of `sources[indices[i].0]`; `usize::MAX` until a
    // branch takes the row (then NULL).
    let mut indices: Vec<(usize, usize)> = vec![(usize::MAX, 0); rows];
    // Evaluates a branch value on the rows it took only; a scalar value is used as is (row 0 for
    // every row), an array has one row per taken row, in order.
    let mut take = |sources: &mut Vec<ArrayRef>,
                    expr: &Expr,
                    hit: &BooleanArray,
                    selected: usize|
     -> Result<(), EvalError> {
        let value = super::conform(eval_selected(expr, batch, hit, selected)?, &target)?;
        let k = sources.len();
        let scalar = value.is_scalar();
        let mut j = 0;
        for (i, on) in hit.values().iter().enumerate() {
            if on {
                indices[i] = (k, if scalar { 0 } else { j });
                j += 1;
            }
        }
        sources.push(match value {
            Value::Array(a) | Value::Scalar(a) => a,
        });
        Ok(())
    };
    for (condition, value) in branches {
        if remaining.true_count() == 0 {
            break;
        }
        let cond = as_boolean(&evaluate_masked(condition, batch, &remaining)?)?;
        let hit = BooleanArray::new(remaining.values() & is_true(&cond).values(), None);
        let selected = hit.true_count();
        if selected > 0 {
            take(&mut sources, value, &hit, selected)?;
        }
        remaining = BooleanArray::new(remaining.values() & &!hit.values(), None);
    }
    if let Some(otherwise) = otherwise {
        let selected = remaining.true_count();
        if selected > 0 {
            take(&mut sources, otherwise, &remaining, selected)?;
        }
    }
    // One full-length source taken by every row: return it as is.
    if sources.len() == 1
        && sources[0].len() == rows
        && indices.iter().enumerate().all(|(i, c)| *c == (0, i))
    {
        return Ok(Value::Array(sources.swap_remove(0)));
    }
    let null_source = sources.len();
    sources.push(new_null_array(&target, 1));
    for c in &mut indices {
        if c.0 == usize::MAX {
            *c = (null_source, 0);
        }
    }
    let refs: Vec<&dyn Array> = sources.iter().map(|a| a.as_ref()).collect();
    Ok(Value::Array(interleave(&refs, &indices)?))
}
