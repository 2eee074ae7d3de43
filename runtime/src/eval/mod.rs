//! The expression interpreter: evaluates a plan [`Expr`] over a [`RecordBatch`], vectorised over
//! Arrow arrays with Arrow's compute kernels.
//!
//! Semantics follow Flink SQL: three-valued logic (Kleene AND/OR), NULL propagation, integer
//! arithmetic that wraps on overflow (Java), truncating integer division. Deliberate fsql choice:
//! integer division or modulo by zero yields NULL (Flink fails the job), so one bad row neither
//! stops the pipeline nor disappears. `CASE` branches, and the right side of `AND`/`OR`, are only
//! evaluated on the rows that need them, so a `CAST` that would fail on a row a guard excludes
//! does not fail the batch.
//!
//! Internally sub-expressions are [`Value`]s: full-length arrays or one-row scalars (literals and
//! constant sub-trees), so comparisons against constants use Arrow's scalar kernels.

mod arith;
mod call;
mod case;
mod cast;
mod compare;
mod literal;
mod logic;
mod strings;
mod temporal;

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Datum, NullArray, RecordBatch, RecordBatchOptions,
    new_null_array,
};
use arrow::compute::kernels::filter::FilterBuilder;
use arrow::compute::kernels::interleave::interleave;
use arrow::datatypes::{DataType as ArrowType, Field, Schema};
use fsql_plan::{Expr, ExprKind};

use crate::error::EvalError;

pub use cast::cast_array;
pub(crate) use cast::timestamp_value as timestamp_raw;
pub(crate) use logic::is_true as logic_is_true;

/// Evaluates `expr` over `batch`; the result has one value per row and the Arrow type
/// `expr.data_type.to_arrow()`.
///
/// ```
/// use std::sync::Arc;
/// use arrow::array::{Array, Int64Array, RecordBatch};
/// use arrow::datatypes::{DataType as A, Field, Schema};
/// use fsql_plan::{BinaryOp, DataType, Expr, ExprKind, Literal};
///
/// let schema = Arc::new(Schema::new(vec![Field::new("x", A::Int64, true)]));
/// let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
/// let plus_one = Expr {
///     kind: ExprKind::Binary {
///         op: BinaryOp::Plus,
///         left: Box::new(Expr::column(0, DataType::BigInt, true)),
///         right: Box::new(Expr::literal(Literal::Int(1), DataType::BigInt)),
///     },
///     data_type: DataType::BigInt,
///     nullable: true,
/// };
/// let out = fsql_runtime::evaluate(&plus_one, &batch).unwrap();
/// assert_eq!(out.as_any().downcast_ref::<Int64Array>().unwrap().values(), &[2, 3]);
/// ```
pub fn evaluate(expr: &Expr, batch: &RecordBatch) -> Result<ArrayRef, EvalError> {
    Ok(eval(expr, batch)?.into_array(batch.num_rows()))
}

/// Evaluates a BOOLEAN `expr` over `batch` and returns it as a [`BooleanArray`] (NULL = unknown).
pub fn evaluate_predicate(expr: &Expr, batch: &RecordBatch) -> Result<BooleanArray, EvalError> {
    let array = evaluate(expr, batch)?;
    as_boolean(&array)
}

/// `mask` with NULL (unknown) rows made FALSE, as a filter treats them.
pub fn null_as_false(mask: BooleanArray) -> BooleanArray {
    if mask.null_count() > 0 {
        arrow::compute::prep_null_mask_filter(&mask)
    } else {
        mask
    }
}

/// Evaluates `expr` only on the rows where `mask` is TRUE; the other rows of the result are NULL.
///
/// This is how guarded expressions (CASE branches, rule conditions after an earlier rule fired,
/// the right side of AND/OR) avoid failing on rows they do not apply to.
pub fn evaluate_masked(
    expr: &Expr,
    batch: &RecordBatch,
    mask: &BooleanArray,
) -> Result<ArrayRef, EvalError> {
    let n = batch.num_rows();
    let mask = null_as_false(mask.clone());
    let selected = mask.true_count();
    if selected == n {
        return evaluate(expr, batch);
    }
    if selected == 0 {
        return Ok(new_null_array(&expr.data_type.to_arrow(), n));
    }
    let values = eval_selected(expr, batch, &mask, selected)?.into_array(selected);
    let nulls = new_null_array(values.data_type(), 1);
    let mut k = 0;
    let indices: Vec<(usize, usize)> = mask
        .values()
        .iter()
        .map(|on| {
            if on {
                k += 1;
                (0, k - 1)
            } else {
                (1, 0)
            }
        })
        .collect();
    Ok(interleave(&[values.as_ref(), nulls.as_ref()], &indices)?)
}

/// Evaluates `expr` on the `selected` rows of `batch` where `mask` (without NULLs) is TRUE: an
/// array of `selected` rows, or a scalar.
pub(crate) fn eval_selected(
    expr: &Expr,
    batch: &RecordBatch,
    mask: &BooleanArray,
    selected: usize,
) -> Result<Value, EvalError> {
    if selected == batch.num_rows() {
        return eval(expr, batch);
    }
    eval(expr, &filter_read_columns(expr, batch, mask, selected)?)
}

/// The rows of `batch` where `mask` is TRUE, filtering only the columns `expr` reads: the others
/// become typeless placeholders that cost nothing, so a guarded sub-expression (a CASE branch, the
/// right side of AND/OR) does not copy the whole batch, strings included. Positions, the column
/// count and the row count are those of a full filter, which is all the interpreter looks at.
fn filter_read_columns(
    expr: &Expr,
    batch: &RecordBatch,
    mask: &BooleanArray,
    selected: usize,
) -> Result<RecordBatch, EvalError> {
    let read = expr.columns();
    let schema = batch.schema();
    let filter = FilterBuilder::new(mask);
    let filter = if read.len() > 1 {
        filter.optimize().build()
    } else {
        filter.build()
    };
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (i, field) in schema.fields().iter().enumerate() {
        if read.binary_search(&i).is_ok() {
            fields.push(field.clone());
            columns.push(filter.filter(batch.column(i))?);
        } else {
            fields.push(Arc::new(Field::new(field.name(), ArrowType::Null, true)));
            columns.push(Arc::new(NullArray::new(selected)));
        }
    }
    let options = RecordBatchOptions::new().with_row_count(Some(selected));
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns,
        &options,
    )?)
}

/// An intermediate result: a full-length array, or a one-row scalar broadcast over all rows.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    Array(ArrayRef),
    Scalar(ArrayRef),
}

impl Value {
    pub(crate) fn array(&self) -> &ArrayRef {
        match self {
            Value::Array(a) | Value::Scalar(a) => a,
        }
    }

    pub(crate) fn is_scalar(&self) -> bool {
        matches!(self, Value::Scalar(_))
    }

    pub(crate) fn data_type(&self) -> &ArrowType {
        self.array().data_type()
    }

    /// The value as a full-length array of `rows` rows.
    pub(crate) fn into_array(self, rows: usize) -> ArrayRef {
        match self {
            Value::Array(a) => a,
            Value::Scalar(a) => broadcast(&a, rows),
        }
    }

    /// Wraps a kernel result: scalar when all operands were scalars.
    pub(crate) fn wrap(array: ArrayRef, scalar: bool) -> Value {
        if scalar {
            Value::Scalar(array)
        } else {
            Value::Array(array)
        }
    }

    /// Applies `f` to the array (scalar-ness is kept).
    pub(crate) fn map(
        self,
        f: impl FnOnce(&ArrayRef) -> Result<ArrayRef, EvalError>,
    ) -> Result<Value, EvalError> {
        Ok(match self {
            Value::Array(a) => Value::Array(f(&a)?),
            Value::Scalar(a) => Value::Scalar(f(&a)?),
        })
    }
}

impl Datum for Value {
    fn get(&self) -> (&dyn Array, bool) {
        match self {
            Value::Array(a) => (a.as_ref(), false),
            Value::Scalar(a) => (a.as_ref(), true),
        }
    }
}

/// Repeats the single value of `scalar` `rows` times.
pub(crate) fn broadcast(scalar: &ArrayRef, rows: usize) -> ArrayRef {
    if rows == 1 {
        return scalar.clone();
    }
    if scalar.is_null(0) {
        return new_null_array(scalar.data_type(), rows);
    }
    let indices = vec![(0usize, 0usize); rows];
    // Interleaving a valid one-row array with in-range indices cannot fail.
    interleave(&[scalar.as_ref()], &indices)
        .unwrap_or_else(|_| new_null_array(scalar.data_type(), rows))
}

pub(crate) fn as_boolean(array: &ArrayRef) -> Result<BooleanArray, EvalError> {
    if let Some(b) = array.as_any().downcast_ref::<BooleanArray>() {
        return Ok(b.clone());
    }
    if array.data_type() == &ArrowType::Null {
        return Ok(BooleanArray::new_null(array.len()));
    }
    Err(EvalError::Unsupported(format!(
        "expected a BOOLEAN operand, found {}",
        array.data_type()
    )))
}

/// Evaluates one node (recursively).
pub(crate) fn eval(expr: &Expr, batch: &RecordBatch) -> Result<Value, EvalError> {
    let value = match &expr.kind {
        ExprKind::Column(i) => {
            if *i >= batch.num_columns() {
                return Err(EvalError::ColumnOutOfRange {
                    index: *i,
                    columns: batch.num_columns(),
                });
            }
            Value::Array(batch.column(*i).clone())
        }
        ExprKind::Literal(lit) => Value::Scalar(literal::literal_array(lit, &expr.data_type)?),
        ExprKind::Unary { op, arg } => logic::unary(*op, eval(arg, batch)?)?,
        ExprKind::Binary { op, left, right } => logic::binary(*op, left, right, expr, batch)?,
        ExprKind::Cast { arg, safe } => {
            let value = eval(arg, batch)?;
            let scalar = value.is_scalar();
            let out = cast::cast_array(value.array(), &arg.data_type, &expr.data_type, *safe)?;
            Value::wrap(out, scalar)
        }
        ExprKind::Case {
            branches,
            otherwise,
        } => case::case(branches, otherwise.as_deref(), &expr.data_type, batch)?,
        ExprKind::InList { arg, list, negated } => logic::in_list(arg, list, *negated, batch)?,
        ExprKind::Like {
            arg,
            pattern,
            negated,
            case_insensitive,
            escape,
        } => {
            let arg = eval(arg, batch)?;
            let pattern = eval(pattern, batch)?;
            strings::like(arg, pattern, *negated, *case_insensitive, *escape)?
        }
        ExprKind::Call { function, args } => call::call(function, args, batch)?,
    };
    conform(value, &expr.data_type.to_arrow())
}

/// Casts `value` to `target` when a kernel returned a different (equivalent) Arrow type.
pub(crate) fn conform(value: Value, target: &ArrowType) -> Result<Value, EvalError> {
    if value.data_type() == target || target == &ArrowType::Null {
        return Ok(value);
    }
    value.map(|a| Ok(arrow::compute::cast(a, target)?))
}

#[cfg(test)]
mod tests;
