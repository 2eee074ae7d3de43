//! Splitting an operator's expressions between compiled code and the interpreter.
//!
//! Each node the JIT implements is compiled. A sub-expression it does not implement (a function
//! call, `LIKE`, DECIMAL arithmetic...) becomes a *slot*: the interpreter evaluates it over the
//! batch first and the compiled code reads the result like an input column. So one unsupported
//! function leaves the rest of a rule compiled, and the interpreter stays the one reference for
//! everything the JIT does not do.

use arrow::datatypes::DataType as ArrowType;
use fsql_plan::{BinaryOp, DataType, Expr, ExprKind, Literal, UnaryOp};

use crate::phys::{Phys, comparable};

/// A kernel input.
#[derive(Clone, Debug, PartialEq)]
pub enum Slot {
    /// Column `index` of the operator's input batch.
    Input(usize),
    /// A sub-expression the interpreter evaluates over the batch before the kernel runs, and why
    /// it is not compiled.
    Interpreted { expr: Expr, reason: String },
}

/// How one expression of the group is computed.
#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    /// By the kernel: its output number `output` (for the filter, the kernel's selection).
    Compiled { output: usize },
    /// It is input column `index`: passed through, nothing computed.
    Column(usize),
    /// By the interpreter as a whole, and why. A filter in this state is still applied by the
    /// kernel, which reads the interpreter's result from a slot.
    Interpreted { reason: String },
}

/// What one kernel computes: an optional filter and outputs, over `slots` (columns `Column(k)` of
/// these expressions are slot `k`, whose Arrow type is `slots[k]`). Equal specs compile to the
/// same code, so this is the code cache's key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KernelSpec {
    pub filter: Option<Expr>,
    pub outputs: Vec<Expr>,
    pub slots: Vec<ArrowType>,
}

/// The split of one operator's filter and output expressions.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// The kernel's inputs, in slot order.
    pub slots: Vec<Slot>,
    pub filter: Option<Part>,
    pub outputs: Vec<Part>,
    /// The kernel, when anything is compiled.
    pub kernel: Option<KernelSpec>,
}

impl Split {
    /// Splits `filter` and `outputs`, expressions over a batch whose columns have `input_types`.
    ///
    /// ```
    /// use arrow::datatypes::DataType as A;
    /// use fsql_jit::{Part, Split};
    /// use fsql_plan::{DataType, Expr, ExprKind};
    ///
    /// let upper = Expr {
    ///     kind: ExprKind::Call { function: "upper".into(), args: vec![Expr::column(1, DataType::String, true)] },
    ///     data_type: DataType::String,
    ///     nullable: true,
    /// };
    /// let split = Split::new(None, &[Expr::column(0, DataType::BigInt, true), upper], &[A::Int64, A::Utf8]);
    /// assert_eq!(split.outputs[0], Part::Column(0));
    /// assert!(matches!(split.outputs[1], Part::Interpreted { .. }));
    /// assert!(split.kernel.is_none());
    /// ```
    pub fn new(filter: Option<&Expr>, outputs: &[Expr], input_types: &[ArrowType]) -> Split {
        let mut b = Builder {
            input_types,
            slots: Vec::new(),
        };
        let mut kernel_outputs = Vec::new();
        let filter = filter.map(|f| match b.root(f) {
            Ok(native) => (Part::Compiled { output: 0 }, native),
            Err(reason) => {
                let slot = b.slot(Slot::Interpreted {
                    expr: f.clone(),
                    reason: reason.clone(),
                });
                (
                    Part::Interpreted { reason },
                    Expr::column(slot, f.data_type.clone(), f.nullable),
                )
            }
        });
        let outputs: Vec<Part> = outputs
            .iter()
            .map(|e| {
                if let ExprKind::Column(i) = e.kind {
                    return Part::Column(i);
                }
                let writable = Phys::of(&e.data_type.to_arrow()).is_some_and(Phys::writable);
                if !writable {
                    return Part::Interpreted {
                        reason: format!("{} results are interpreted", e.data_type),
                    };
                }
                match b.root(e) {
                    Ok(native) => {
                        kernel_outputs.push(native);
                        Part::Compiled {
                            output: kernel_outputs.len() - 1,
                        }
                    }
                    Err(reason) => Part::Interpreted { reason },
                }
            })
            .collect();
        let compiled_filter = matches!(filter, Some((Part::Compiled { .. }, _)));
        let kernel = (compiled_filter || !kernel_outputs.is_empty()).then(|| KernelSpec {
            filter: filter.as_ref().map(|(_, e)| e.clone()),
            outputs: kernel_outputs,
            slots: b.slot_types(),
        });
        let slots = if kernel.is_some() { b.slots } else { vec![] };
        Split {
            slots,
            filter: filter.map(|(p, _)| p),
            outputs,
            kernel,
        }
    }

    /// One line for `fsql explain`: how output `index` (or the filter, `None`) is computed.
    pub fn describe(&self, index: Option<usize>) -> String {
        let part = match index {
            None => self.filter.as_ref(),
            Some(i) => self.outputs.get(i),
        };
        let Some(part) = part else {
            return String::new();
        };
        match part {
            Part::Column(_) => "column".into(),
            Part::Interpreted { reason } => format!("interpreted: {reason}"),
            Part::Compiled { output } => {
                let expr = self.kernel.as_ref().and_then(|k| match index {
                    None => k.filter.as_ref(),
                    Some(_) => k.outputs.get(*output),
                });
                let inner: Vec<String> = expr
                    .map(Expr::columns)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|s| match self.slots.get(s) {
                        Some(Slot::Interpreted { expr, reason }) => {
                            Some(format!("{expr} ({reason})"))
                        }
                        _ => None,
                    })
                    .collect();
                if inner.is_empty() {
                    "compiled".into()
                } else {
                    format!("compiled; interpreted inside: {}", inner.join("; "))
                }
            }
        }
    }
}

struct Builder<'a> {
    input_types: &'a [ArrowType],
    slots: Vec<Slot>,
}

impl Builder<'_> {
    fn slot_types(&self) -> Vec<ArrowType> {
        self.slots
            .iter()
            .map(|s| match s {
                Slot::Input(i) => self.input_types[*i].clone(),
                Slot::Interpreted { expr, .. } => expr.data_type.to_arrow(),
            })
            .collect()
    }

    /// The slot number of `slot`, added if new (equal sub-expressions share one slot).
    fn slot(&mut self, slot: Slot) -> usize {
        match self.slots.iter().position(|s| match (s, &slot) {
            (Slot::Input(a), Slot::Input(b)) => a == b,
            (Slot::Interpreted { expr: a, .. }, Slot::Interpreted { expr: b, .. }) => a == b,
            _ => false,
        }) {
            Some(k) => k,
            None => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        }
    }

    /// `e` rewritten over slots, or why it cannot be compiled; slots added by a failed attempt
    /// are removed again.
    fn root(&mut self, e: &Expr) -> Result<Expr, String> {
        let mark = self.slots.len();
        let out = self.native(e);
        if out.is_err() {
            self.slots.truncate(mark);
        }
        out
    }

    fn native(&mut self, e: &Expr) -> Result<Expr, String> {
        if let ExprKind::Column(i) = e.kind {
            let Some(t) = self.input_types.get(i) else {
                return Err(format!("column ${i} does not exist"));
            };
            if Phys::of(t).is_none() || *t != e.data_type.to_arrow() {
                return Err(format!("{} columns are interpreted", e.data_type));
            }
            let slot = self.slot(Slot::Input(i));
            return Ok(Expr::column(slot, e.data_type.clone(), e.nullable));
        }
        unsupported(e).map_or(Ok(()), Err)?;
        let mut out = e.clone();
        let mut failure = None;
        for_each_child(&mut out, &mut |child| {
            if failure.is_some() {
                return;
            }
            match self.native(child) {
                Ok(native) => *child = native,
                Err(reason) => {
                    if Phys::of(&child.data_type.to_arrow()).is_none() {
                        failure = Some(reason);
                        return;
                    }
                    let slot = self.slot(Slot::Interpreted {
                        expr: child.clone(),
                        reason,
                    });
                    *child = Expr::column(slot, child.data_type.clone(), child.nullable);
                }
            }
        });
        match failure {
            Some(reason) => Err(reason),
            None => Ok(out),
        }
    }
}

fn for_each_child(e: &mut Expr, f: &mut impl FnMut(&mut Expr)) {
    match &mut e.kind {
        ExprKind::Column(_) | ExprKind::Literal(_) => {}
        ExprKind::Unary { arg, .. } | ExprKind::Cast { arg, .. } => f(arg),
        ExprKind::Binary { left, right, .. } => {
            f(left);
            f(right);
        }
        ExprKind::Case {
            branches,
            otherwise,
        } => {
            for (c, v) in branches {
                f(c);
                f(v);
            }
            if let Some(o) = otherwise {
                f(o);
            }
        }
        ExprKind::InList { arg, list, .. } => {
            f(arg);
            list.iter_mut().for_each(f);
        }
        ExprKind::Like { arg, pattern, .. } => {
            f(arg);
            f(pattern);
        }
        ExprKind::Call { args, .. } => args.iter_mut().for_each(f),
    }
}

/// Why compiled code cannot compute node `e` itself (its children aside), or `None` if it can.
pub(crate) fn unsupported(e: &Expr) -> Option<String> {
    let t = e.data_type.to_arrow();
    let phys = Phys::of(&t);
    if phys.is_none() {
        return Some(format!("{} values are interpreted", e.data_type));
    }
    let arrow = |c: &Expr| c.data_type.to_arrow();
    match &e.kind {
        ExprKind::Column(_) => None,
        ExprKind::Literal(lit) => {
            (!literal_ok(lit, &e.data_type)).then(|| "this literal is interpreted".into())
        }
        ExprKind::Unary { op, arg } => {
            let a = Phys::of(&arrow(arg));
            match op {
                UnaryOp::IsNull | UnaryOp::IsNotNull => a
                    .is_none()
                    .then(|| format!("IS NULL on {} is interpreted", arg.data_type)),
                UnaryOp::Negate => (arrow(arg) != t || !(t.is_integer() || t.is_floating()))
                    .then(|| format!("negating {} is interpreted", arg.data_type)),
                _ => (a != Some(Phys::Bool)).then(|| "a non-BOOLEAN operand".to_string()),
            }
        }
        ExprKind::Binary { op, left, right } => {
            let (l, r) = (arrow(left), arrow(right));
            match op {
                BinaryOp::And | BinaryOp::Or => (Phys::of(&l) != Some(Phys::Bool)
                    || Phys::of(&r) != Some(Phys::Bool))
                .then(|| "a non-BOOLEAN operand".to_string()),
                BinaryOp::Plus
                | BinaryOp::Minus
                | BinaryOp::Multiply
                | BinaryOp::Divide
                | BinaryOp::Modulo => {
                    if *op == BinaryOp::Multiply
                        && crate::phys::decimal_product_precision(&l, &r, &t).is_some()
                    {
                        return None;
                    }
                    if matches!(op, BinaryOp::Plus | BinaryOp::Minus)
                        && (crate::phys::decimal_sum_precision(&l, &r, &t).is_some()
                            || crate::phys::timestamp_shift(&l, &r, &t, *op == BinaryOp::Minus)
                                .is_some())
                    {
                        return None;
                    }
                    let numeric = t.is_integer() || t.is_floating();
                    (!numeric || l != t || r != t).then(|| {
                        format!(
                            "{} {} {} is interpreted",
                            left.data_type,
                            op.sql(),
                            right.data_type
                        )
                    })
                }
                BinaryOp::Concat => Some("|| is interpreted".into()),
                _ => (!comparable(&l, &r)).then(|| {
                    format!(
                        "comparing {} with {} is interpreted",
                        left.data_type, right.data_type
                    )
                }),
            }
        }
        ExprKind::Cast { arg, .. } => {
            let from = arrow(arg);
            let ok = from == t
                || ((from.is_integer() || from.is_floating())
                    && (t.is_integer() || t.is_floating()));
            let signed = |x: &ArrowType| {
                !matches!(
                    x,
                    ArrowType::UInt8 | ArrowType::UInt16 | ArrowType::UInt32 | ArrowType::UInt64
                )
            };
            (!ok || !signed(&from) || !signed(&t)).then(|| {
                format!(
                    "CAST from {} to {} is interpreted",
                    arg.data_type, e.data_type
                )
            })
        }
        ExprKind::Case {
            branches,
            otherwise,
        } => {
            let values_ok = branches
                .iter()
                .map(|(_, v)| v)
                .chain(otherwise.as_deref())
                .all(|v| arrow(v) == t);
            let conds_ok = branches
                .iter()
                .all(|(c, _)| Phys::of(&arrow(c)) == Some(Phys::Bool));
            (!values_ok || !conds_ok).then(|| "a CASE with mixed types is interpreted".into())
        }
        ExprKind::InList { arg, list, .. } => {
            let a = arrow(arg);
            (!list.iter().all(|i| comparable(&a, &arrow(i))))
                .then(|| format!("IN over {} is interpreted", arg.data_type))
        }
        ExprKind::Like {
            arg,
            pattern,
            case_insensitive,
            ..
        } => {
            if *case_insensitive {
                Some("ILIKE is interpreted (Unicode case folding)".into())
            } else if !matches!(pattern.kind, ExprKind::Literal(Literal::String(_))) {
                Some("LIKE with a pattern that is not a constant is interpreted".into())
            } else {
                (Phys::of(&arrow(arg)) != Some(Phys::Str))
                    .then(|| format!("LIKE on {} is interpreted", arg.data_type))
            }
        }
        ExprKind::Call { function, args }
            if matches!(function.as_str(), "coalesce" | "ifnull")
                && !args.is_empty()
                && args.iter().all(|a| arrow(a) == t) =>
        {
            None
        }
        ExprKind::Call { function, args } => {
            let all = |ok: fn(&ArrowType) -> bool| args.iter().all(|a| ok(&arrow(a)));
            let (callable, result) = match fsql_stdlib::lookup(function).and_then(|f| f.scalar) {
                Some(fsql_stdlib::Scalar::F64(_)) => (
                    args.len() == 1 && all(|a| *a == ArrowType::Float64),
                    ArrowType::Float64,
                ),
                Some(fsql_stdlib::Scalar::F64F64(_)) => (
                    args.len() == 2 && all(|a| *a == ArrowType::Float64),
                    ArrowType::Float64,
                ),
                Some(fsql_stdlib::Scalar::TimestampToBigInt(_)) => (
                    args.len() == 1 && all(|a| matches!(a, ArrowType::Timestamp(..))),
                    ArrowType::Int64,
                ),
                None => (false, ArrowType::Null),
            };
            (!(callable && t == result)).then(|| {
                format!(
                    "function {} is interpreted (a vectorised stdlib kernel)",
                    function.to_uppercase()
                )
            })
        }
    }
}

/// Whether compiled code holds literal `lit` of type `ty` (the combinations the interpreter reads
/// without a conversion that could fail).
pub(crate) fn literal_ok(lit: &Literal, ty: &DataType) -> bool {
    use DataType as D;
    match (lit, ty) {
        (Literal::Null, _) => Phys::of(&ty.to_arrow()).is_some(),
        (Literal::Boolean(_), D::Boolean) => true,
        (Literal::Int(v), D::TinyInt) => i8::try_from(*v).is_ok(),
        (Literal::Int(v), D::SmallInt) => i16::try_from(*v).is_ok(),
        (Literal::Int(v), D::Int | D::Date | D::Time | D::IntervalYearMonth) => {
            i32::try_from(*v).is_ok()
        }
        (
            Literal::Int(_),
            D::BigInt
            | D::Timestamp { .. }
            | D::TimestampLtz { .. }
            | D::IntervalDayTime
            | D::Float
            | D::Double,
        ) => true,
        (Literal::Float(_), D::Float | D::Double) => true,
        (Literal::String(_), D::String) => true,
        (Literal::Decimal(text), D::Decimal { .. }) => text.trim().parse::<i128>().is_ok(),
        (Literal::Int(v), D::Decimal { scale, .. }) => decimal_int(*v, *scale).is_some(),
        _ => false,
    }
}

/// The unscaled value of integer literal `v` typed DECIMAL with `scale` (the interpreter's
/// reading: the whole number `v`), or `None` when it does not fit.
pub(crate) fn decimal_int(v: i64, scale: i8) -> Option<i128> {
    10i128
        .checked_pow(u32::try_from(scale).ok()?)?
        .checked_mul(i128::from(v))
}
