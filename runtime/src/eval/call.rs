//! Calls of stdlib functions: arguments are expanded to arrays and handed to the function's kernel.

use arrow::array::{ArrayRef, RecordBatch};
use fsql_plan::Expr;

use super::{Value, eval};
use crate::error::EvalError;

pub(crate) fn call(function: &str, args: &[Expr], batch: &RecordBatch) -> Result<Value, EvalError> {
    let f = fsql_stdlib::lookup(function)
        .ok_or_else(|| EvalError::UnknownFunction(function.to_string()))?;
    let values = args
        .iter()
        .map(|a| eval(a, batch))
        .collect::<Result<Vec<_>, _>>()?;
    // A call whose arguments are all constants is computed once (functions without arguments,
    // such as random numbers, run per row).
    let scalar = !values.is_empty() && values.iter().all(Value::is_scalar);
    let rows = if scalar { 1 } else { batch.num_rows() };
    let arrays: Vec<ArrayRef> = values.into_iter().map(|v| v.into_array(rows)).collect();
    let out = (f.kernel)(&arrays, rows).map_err(|e| EvalError::Function {
        function: function.to_string(),
        message: e.to_string(),
    })?;
    if out.len() != rows {
        return Err(EvalError::Function {
            function: function.to_string(),
            message: format!("kernel returned {} rows for {rows}", out.len()),
        });
    }
    Ok(Value::wrap(out, scalar))
}
