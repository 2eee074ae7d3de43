//! Unary operators, the binary-operator dispatch, Kleene AND/OR and `IN` lists.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow::buffer::BooleanBuffer;
use arrow::compute::kernels::{boolean, numeric};
use fsql_plan::{BinaryOp, Expr, UnaryOp};

use super::{Value, as_boolean, eval, evaluate_masked};
use crate::error::EvalError;

/// TRUE where the value is TRUE (not NULL, not FALSE); never NULL.
pub(crate) fn is_true(b: &BooleanArray) -> BooleanArray {
    let values = match b.nulls() {
        Some(nulls) => b.values() & nulls.inner(),
        None => b.values().clone(),
    };
    BooleanArray::new(values, None)
}

/// TRUE where the value is FALSE (not NULL, not TRUE); never NULL.
pub(crate) fn is_false(b: &BooleanArray) -> BooleanArray {
    let values = match b.nulls() {
        Some(nulls) => &!b.values() & nulls.inner(),
        None => !b.values(),
    };
    BooleanArray::new(values, None)
}

fn negate_all(b: &BooleanArray) -> BooleanArray {
    BooleanArray::new(!b.values(), None)
}

pub(crate) fn unary(op: UnaryOp, arg: Value) -> Result<Value, EvalError> {
    arg.map(|a| {
        let out: ArrayRef = match op {
            UnaryOp::Not => Arc::new(boolean::not(&as_boolean(a)?)?),
            UnaryOp::Negate => numeric::neg_wrapping(a.as_ref())?,
            UnaryOp::IsNull => Arc::new(boolean::is_null(a.as_ref())?),
            UnaryOp::IsNotNull => Arc::new(boolean::is_not_null(a.as_ref())?),
            UnaryOp::IsTrue => Arc::new(is_true(&as_boolean(a)?)),
            UnaryOp::IsNotTrue => Arc::new(negate_all(&is_true(&as_boolean(a)?))),
            UnaryOp::IsFalse => Arc::new(is_false(&as_boolean(a)?)),
            UnaryOp::IsNotFalse => Arc::new(negate_all(&is_false(&as_boolean(a)?))),
        };
        Ok(out)
    })
}

pub(crate) fn binary(
    op: BinaryOp,
    left: &Expr,
    right: &Expr,
    expr: &Expr,
    batch: &RecordBatch,
) -> Result<Value, EvalError> {
    match op {
        BinaryOp::And | BinaryOp::Or => and_or(op == BinaryOp::And, left, right, batch),
        _ => {
            let l = eval(left, batch)?;
            let r = eval(right, batch)?;
            match op {
                BinaryOp::Plus
                | BinaryOp::Minus
                | BinaryOp::Multiply
                | BinaryOp::Divide
                | BinaryOp::Modulo => {
                    super::arith::arithmetic(op, l, r, &expr.data_type, batch.num_rows())
                }
                BinaryOp::Concat => super::strings::concat(l, r, batch.num_rows()),
                _ => super::compare::compare(op, l, r),
            }
        }
    }
}

/// Kleene AND / OR. The right side is evaluated on all rows; if that fails, it is re-evaluated on
/// only the rows whose result the left side does not already decide (as Flink short-circuits).
fn and_or(
    is_and: bool,
    left: &Expr,
    right: &Expr,
    batch: &RecordBatch,
) -> Result<Value, EvalError> {
    let rows = batch.num_rows();
    let l = eval(left, batch)?;
    let l_scalar = l.is_scalar();
    let l_bool = as_boolean(l.array())?;
    // Short-circuit when the left side decides every row.
    let decided = if is_and {
        is_false(&l_bool)
    } else {
        is_true(&l_bool)
    };
    if decided.true_count() == decided.len() {
        return Ok(Value::wrap(Arc::new(l_bool), l_scalar));
    }
    let r = match eval(right, batch) {
        Ok(r) => r,
        Err(first_error) => {
            let l_full = as_boolean(&l.clone().into_array(rows))?;
            let open = negate_all(&if is_and {
                is_false(&l_full)
            } else {
                is_true(&l_full)
            });
            if open.true_count() == rows {
                return Err(first_error);
            }
            Value::Array(evaluate_masked(right, batch, &open)?)
        }
    };
    let scalar = l_scalar && r.is_scalar();
    let (l, r) = if scalar {
        (l_bool, as_boolean(r.array())?)
    } else {
        (
            as_boolean(&l.into_array(rows))?,
            as_boolean(&r.into_array(rows))?,
        )
    };
    let out = if is_and {
        boolean::and_kleene(&l, &r)?
    } else {
        boolean::or_kleene(&l, &r)?
    };
    Ok(Value::wrap(Arc::new(out), scalar))
}

/// `arg [NOT] IN (list)`: the Kleene OR of `arg = item`, so no match with a NULL item is NULL.
pub(crate) fn in_list(
    arg: &Expr,
    list: &[Expr],
    negated: bool,
    batch: &RecordBatch,
) -> Result<Value, EvalError> {
    let rows = batch.num_rows();
    let a = eval(arg, batch)?;
    let mut acc: Option<Value> = None;
    for item in list {
        let v = eval(item, batch)?;
        let eq = super::compare::compare(BinaryOp::Eq, a.clone(), v)?;
        acc = Some(match acc {
            None => eq,
            Some(prev) => {
                let scalar = prev.is_scalar() && eq.is_scalar();
                let (p, e) = if scalar {
                    (as_boolean(prev.array())?, as_boolean(eq.array())?)
                } else {
                    (
                        as_boolean(&prev.into_array(rows))?,
                        as_boolean(&eq.into_array(rows))?,
                    )
                };
                Value::wrap(Arc::new(boolean::or_kleene(&p, &e)?), scalar)
            }
        });
    }
    let result = match acc {
        Some(v) => v,
        // An empty list never matches.
        None => Value::Scalar(Arc::new(BooleanArray::new(
            BooleanBuffer::new_unset(1),
            None,
        ))),
    };
    if negated {
        result.map(|a| Ok(Arc::new(boolean::not(&as_boolean(a)?)?) as ArrayRef))
    } else {
        Ok(result)
    }
}
