//! Searched `CASE`: the first branch whose condition is TRUE wins. Each condition is evaluated only
//! on rows no earlier branch took, and each value only on the rows its branch took, so a branch
//! never fails on rows it does not produce.

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, new_null_array};
use arrow::compute::kernels::interleave::interleave;
use fsql_plan::{DataType, Expr};

use super::logic::is_true;
use super::{Value, as_boolean, evaluate_masked};
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
    let mut choice: Vec<Option<usize>> = vec![None; rows];
    let mut take = |sources: &mut Vec<ArrayRef>,
                    values: ArrayRef,
                    hit: &BooleanArray|
     -> Result<(), EvalError> {
        let values = super::conform(Value::Array(values), &target)?.into_array(rows);
        sources.push(values);
        let k = sources.len() - 1;
        for (i, on) in hit.values().iter().enumerate() {
            if on {
                choice[i] = Some(k);
            }
        }
        Ok(())
    };
    for (condition, value) in branches {
        if remaining.true_count() == 0 {
            break;
        }
        let cond = as_boolean(&evaluate_masked(condition, batch, &remaining)?)?;
        let hit = BooleanArray::new(remaining.values() & is_true(&cond).values(), None);
        if hit.true_count() > 0 {
            let values = evaluate_masked(value, batch, &hit)?;
            take(&mut sources, values, &hit)?;
        }
        remaining = BooleanArray::new(remaining.values() & &!hit.values(), None);
    }
    if let Some(otherwise) = otherwise
        && remaining.true_count() > 0
    {
        let values = evaluate_masked(otherwise, batch, &remaining)?;
        take(&mut sources, values, &remaining)?;
    }
    // One source taken by every row: return it as is.
    if sources.len() == 1 && choice.iter().all(|c| *c == Some(0)) {
        return Ok(Value::Array(sources.swap_remove(0)));
    }
    let null_source = sources.len();
    sources.push(new_null_array(&target, 1));
    let indices: Vec<(usize, usize)> = choice
        .iter()
        .enumerate()
        .map(|(i, c)| c.map_or((null_source, 0), |k| (k, i)))
        .collect();
    let refs: Vec<&dyn Array> = sources.iter().map(|a| a.as_ref()).collect();
    Ok(Value::Array(interleave(&refs, &indices)?))
}
