//! An operator's filter and output expressions run by a JIT kernel (`fsql-jit`), with the
//! interpreter computing the parts the JIT does not implement and taking over whenever the
//! kernel cannot give the interpreter's exact answer.
//!
//! Fallback is per batch: if an interpreted part fails (say, a `CAST` that fails on a row the
//! filter or an earlier CASE branch would have excluded), the whole batch goes through the
//! interpreter, which evaluates guarded expressions only on the rows they apply to and so returns
//! the reference result or the reference error.

use arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::Schema;
use fsql_jit::{Kernels, Part, Slot, Split};
use fsql_plan::Expr;

use crate::error::EvalError;
use crate::eval::evaluate;

/// What a compiled group computed over one batch.
#[derive(Debug)]
pub struct Computed {
    /// With a filter, the rows that passed; `None` when every row did.
    pub selection: Option<BooleanArray>,
    /// The number of rows of `columns`.
    pub rows: usize,
    /// One array per output expression, over the passing rows.
    pub columns: Vec<ArrayRef>,
}

/// A filter and output expressions with their compiled kernel.
#[derive(Debug)]
pub struct CompiledExprs {
    split: Split,
    kernels: Kernels,
    outputs: Vec<Expr>,
    /// Set when code generation failed: the interpreter runs from then on (and this says why).
    disabled: Option<String>,
}

impl CompiledExprs {
    /// The compiled form of `filter` and `outputs` over batches of `input`, or `None` when no
    /// part of them would be compiled.
    pub fn new(filter: Option<&Expr>, outputs: &[Expr], input: &Schema) -> Option<CompiledExprs> {
        let split = split(filter, outputs, input);
        let kernels = Kernels::new(split.kernel.clone()?);
        Some(CompiledExprs {
            split,
            kernels,
            outputs: outputs.to_vec(),
            disabled: None,
        })
    }

    /// Why compiled code no longer runs, if it does not.
    pub fn disabled(&self) -> Option<&str> {
        self.disabled.as_deref()
    }

    /// Filters `batch` and computes the outputs on the passing rows, as the interpreter would.
    /// `Ok(None)` means this batch must go through the interpreter.
    pub fn run(&mut self, batch: &RecordBatch) -> Result<Option<Computed>, EvalError> {
        if self.disabled.is_some() {
            return Ok(None);
        }
        let rows = batch.num_rows();
        let mut slots = Vec::with_capacity(self.split.slots.len());
        for slot in &self.split.slots {
            let array = match slot {
                Slot::Input(i) => match batch.columns().get(*i) {
                    Some(c) => c.clone(),
                    None => return Ok(None),
                },
                Slot::Interpreted { expr, .. } => match evaluate(expr, batch) {
                    Ok(a) => a,
                    Err(_) => return Ok(None),
                },
            };
            slots.push(array);
        }
        let kernel = match self.kernels.for_inputs(&slots) {
            Ok(k) => k,
            Err(e) => {
                self.disabled = Some(e.to_string());
                return Ok(None);
            }
        };
        let Ok(out) = kernel.run(&slots, rows) else {
            return Ok(None);
        };
        let selection = out
            .selection
            .filter(|s| s.count_set_bits() < rows)
            .map(|s| BooleanArray::new(s, None));
        let needs_rows = self
            .split
            .outputs
            .iter()
            .any(|p| !matches!(p, Part::Compiled { .. }));
        let filtered = match (&selection, needs_rows) {
            (Some(mask), true) if out.selected > 0 => Some(filter_record_batch(batch, mask)?),
            _ => None,
        };
        let passing = filtered.as_ref().unwrap_or(batch);
        let mut columns = Vec::with_capacity(self.outputs.len());
        if out.selected > 0 {
            for (part, expr) in self.split.outputs.iter().zip(&self.outputs) {
                columns.push(match part {
                    Part::Compiled { output } => out.columns[*output].clone(),
                    Part::Column(i) => passing.column(*i).clone(),
                    Part::Interpreted { .. } => evaluate(expr, passing)?,
                });
            }
        }
        Ok(Some(Computed {
            selection,
            rows: out.selected,
            columns,
        }))
    }
}

/// The expressions of an operator other than a Calc (aggregate arguments and FILTERs, a join's
/// condition, MATCH_RECOGNIZE measures): computed together by one kernel where the JIT reaches,
/// by the interpreter otherwise, or for any batch the kernel cannot take.
///
/// ```
/// use std::sync::Arc;
/// use arrow::array::{Array, ArrayRef, AsArray, Float64Array, RecordBatch};
/// use arrow::datatypes::{DataType as A, Field, Float64Type, Schema};
/// use fsql_plan::{BinaryOp, DataType, Expr, ExprKind, Literal};
/// use fsql_runtime::compiled::ExprGroup;
///
/// let schema = Arc::new(Schema::new(vec![Field::new("amount", A::Float64, true)]));
/// let amount = Expr::column(0, DataType::Double, true);
/// let tiny = Expr {
///     kind: ExprKind::Binary {
///         op: BinaryOp::Lt,
///         left: Box::new(amount),
///         right: Box::new(Expr::literal(Literal::float(2.0), DataType::Double)),
///     },
///     data_type: DataType::Boolean,
///     nullable: true,
/// };
/// let mut group = ExprGroup::new(vec![tiny]);
/// group.compile(&schema);
/// let column: ArrayRef = Arc::new(Float64Array::from(vec![Some(1.0), None, Some(5.0)]));
/// let batch = RecordBatch::try_new(schema, vec![column]).unwrap();
/// let out = group.evaluate(&batch).unwrap();
/// let tiny: Vec<_> = out[0].as_boolean().iter().collect();
/// assert_eq!(tiny, vec![Some(true), None, Some(false)]);
/// ```
#[derive(Debug)]
pub struct ExprGroup {
    exprs: Vec<Expr>,
    compiled: Option<CompiledExprs>,
}

impl ExprGroup {
    /// The group, interpreted until [`ExprGroup::compiled`].
    pub fn new(exprs: Vec<Expr>) -> ExprGroup {
        ExprGroup {
            exprs,
            compiled: None,
        }
    }

    /// Runs the group by compiled code over batches of `input` from now on, where the JIT
    /// reaches.
    pub fn compile(&mut self, input: &Schema) {
        self.compiled = CompiledExprs::new(None, &self.exprs, input);
    }

    /// The expressions, in order.
    pub fn exprs(&self) -> &[Expr] {
        &self.exprs
    }

    /// Each expression over every row of `batch`, in order.
    pub fn evaluate(&mut self, batch: &RecordBatch) -> Result<Vec<ArrayRef>, EvalError> {
        if batch.num_rows() > 0
            && let Some(compiled) = &mut self.compiled
            && let Some(computed) = compiled.run(batch)?
        {
            debug_assert_eq!(computed.rows, batch.num_rows());
            return Ok(computed.columns);
        }
        self.exprs.iter().map(|e| evaluate(e, batch)).collect()
    }
}

/// A BOOLEAN condition over whole rows (a join's residual condition): the rows it holds TRUE
/// for, computed by compiled code where the JIT reaches.
#[derive(Debug)]
pub struct Condition(ExprGroup);

impl Condition {
    /// The condition, interpreted until [`Condition::compiled`].
    pub fn new(condition: Expr) -> Condition {
        Condition(ExprGroup::new(vec![condition]))
    }

    /// Runs the condition by compiled code over batches of `input` from now on, where the JIT
    /// reaches.
    pub fn compile(&mut self, input: &Schema) {
        self.0.compile(input);
    }

    /// The condition.
    pub fn expr(&self) -> Option<&Expr> {
        self.0.exprs().first()
    }

    /// TRUE for the rows of `batch` the condition holds for (FALSE where it is FALSE or NULL).
    pub fn holds(&mut self, batch: &RecordBatch) -> Result<BooleanArray, EvalError> {
        let value = self.0.evaluate(batch)?.pop();
        let mask = value
            .as_ref()
            .and_then(|v| v.as_any().downcast_ref::<BooleanArray>())
            .cloned()
            .ok_or_else(|| EvalError::Unsupported("a condition that is not BOOLEAN".into()))?;
        Ok(crate::eval::null_as_false(mask))
    }
}

fn split(filter: Option<&Expr>, outputs: &[Expr], input: &Schema) -> Split {
    let types: Vec<_> = input
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    Split::new(filter, outputs, &types)
}

/// `fsql explain`'s note for each expression of a group: `filter` first (when given), then the
/// outputs, each "compiled", "compiled; interpreted inside: ...", "interpreted: why" or "column".
pub fn describe(filter: Option<&Expr>, outputs: &[Expr], input: &Schema) -> Vec<String> {
    let split = split(filter, outputs, input);
    let mut notes = Vec::new();
    if filter.is_some() {
        notes.push(split.describe(None));
    }
    notes.extend((0..outputs.len()).map(|i| split.describe(Some(i))));
    notes
}

pub mod generated;
#[cfg(test)]
mod tests;
