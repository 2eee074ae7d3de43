//! Flink's type rules where DataFusion is more lenient: DataFusion would coerce `card_id > 100` by
//! casting the string, Flink rejects it. Checked on the plan before DataFusion's type coercion.

use datafusion::common::DFSchema;
use datafusion::common::tree_node::TreeNode;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, Operator};

use arrow::datatypes::DataType as A;

use crate::diagnostic::Diagnostic;
use crate::source::{Snippet, Span};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Numeric,
    String,
    Boolean,
    Temporal,
    Null,
    Other,
}

fn family(t: &A) -> Family {
    match t {
        A::Null => Family::Null,
        A::Boolean => Family::Boolean,
        t if t.is_numeric() => Family::Numeric,
        A::Utf8 | A::LargeUtf8 | A::Utf8View => Family::String,
        A::Timestamp(..)
        | A::Date32
        | A::Date64
        | A::Time32(_)
        | A::Time64(_)
        | A::Interval(_)
        | A::Duration(_) => Family::Temporal,
        _ => Family::Other,
    }
}

/// Type errors in the expressions of `plan`, located in `snippet`.
pub fn check_types(plan: &LogicalPlan, snippet: Snippet) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    check_plan(plan, &snippet, &mut out);
    out
}

fn check_plan(plan: &LogicalPlan, snippet: &Snippet, out: &mut Vec<Diagnostic>) {
    for input in plan.inputs() {
        check_plan(input, snippet, out);
    }
    let Some(input) = plan.inputs().first().map(|p| p.schema().clone()) else {
        return;
    };
    match plan {
        LogicalPlan::Filter(f) => {
            check_expr(&f.predicate, &input, snippet, out);
            if let Ok(t) = f.predicate.get_type(&input)
                && !matches!(family(&t), Family::Boolean | Family::Null)
                && out.is_empty()
            {
                out.push(Diagnostic::error(
                    format!(
                        "a WHERE condition must be BOOLEAN, this one is {}",
                        type_name(&t)
                    ),
                    span_of(&f.predicate, snippet),
                ));
            }
        }
        LogicalPlan::Projection(p) => {
            for e in &p.expr {
                check_expr(e, &input, snippet, out);
            }
        }
        _ => {}
    }
}

fn check_expr(expr: &Expr, schema: &DFSchema, snippet: &Snippet, out: &mut Vec<Diagnostic>) {
    let ty = |e: &Expr| e.get_type(schema).ok();
    if let Expr::BinaryExpr(b) = expr {
        check_expr(&b.left, schema, snippet, out);
        check_expr(&b.right, schema, snippet, out);
        let (Some(l), Some(r)) = (ty(&b.left), ty(&b.right)) else {
            return;
        };
        let (fl, fr) = (family(&l), family(&r));
        let bad = match b.op {
            Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq
            | Operator::IsDistinctFrom
            | Operator::IsNotDistinctFrom => {
                let pair = |a, b| (fl == a && fr == b) || (fl == b && fr == a);
                pair(Family::String, Family::Numeric)
                    || pair(Family::Boolean, Family::Numeric)
                    || pair(Family::Boolean, Family::String)
                    || pair(Family::Boolean, Family::Temporal)
                    || pair(Family::Numeric, Family::Temporal)
                        && !is_literal_temporal(&b.left, &b.right)
            }
            Operator::Plus
            | Operator::Minus
            | Operator::Multiply
            | Operator::Divide
            | Operator::Modulo => [fl, fr]
                .iter()
                .any(|f| matches!(f, Family::String | Family::Boolean)),
            Operator::And | Operator::Or => [fl, fr]
                .iter()
                .any(|f| !matches!(f, Family::Boolean | Family::Null)),
            _ => false,
        };
        if bad {
            let what = match b.op {
                Operator::And | Operator::Or => format!("{} needs BOOLEAN operands", b.op),
                _ => format!(
                    "cannot apply `{}` to {} and {}",
                    b.op,
                    type_name(&l),
                    type_name(&r)
                ),
            };
            out.push(
                Diagnostic::error(format!("type mismatch: {what}"), span_of(expr, snippet))
                    .with_help("CAST one side so both have the same type family"),
            );
        }
        return;
    }
    if let Expr::Not(e) = expr {
        check_expr(e, schema, snippet, out);
        if let Some(t) = ty(e)
            && !matches!(family(&t), Family::Boolean | Family::Null)
        {
            out.push(Diagnostic::error(
                format!(
                    "type mismatch: NOT needs a BOOLEAN operand, got {}",
                    type_name(&t)
                ),
                span_of(e, snippet),
            ));
        }
        return;
    }
    if let Expr::ScalarFunction(f) = expr
        && let Some(function) = fsql_stdlib::lookup(f.func.name())
        && let fsql_stdlib::Signature::OneOf(lists) = &function.signature
    {
        let arg_types: Vec<Option<A>> = f.args.iter().map(ty).collect();
        let fits = |list: &Vec<A>| {
            list.len() == arg_types.len()
                && list.iter().zip(&arg_types).all(|(want, have)| match have {
                    None => true,
                    Some(have) => {
                        matches!(family(have), Family::Null) || family(have) == family(want)
                    }
                })
        };
        if !lists.is_empty() && !lists.iter().any(fits) {
            let have: Vec<String> = arg_types
                .iter()
                .map(|t| t.as_ref().map_or_else(|| "?".to_string(), type_name))
                .collect();
            let expected: Vec<String> = lists
                .iter()
                .map(|l| l.iter().map(type_name).collect::<Vec<_>>().join(", "))
                .collect();
            out.push(
                Diagnostic::error(
                    format!(
                        "type mismatch: {}({}) is not defined",
                        function.name.to_uppercase(),
                        have.join(", ")
                    ),
                    span_of(expr, snippet),
                )
                .with_help(format!(
                    "{} takes ({})",
                    function.name.to_uppercase(),
                    expected.join(") or (")
                )),
            );
        }
    }
    let _ = expr.apply_children(|child| {
        check_expr(child, schema, snippet, out);
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
}

fn is_literal_temporal(_l: &Expr, _r: &Expr) -> bool {
    false
}

/// The Flink name of an Arrow type, for messages.
fn type_name(t: &A) -> String {
    fsql_plan::DataType::from_arrow(t).map_or_else(|| t.to_string(), |d| d.to_string())
}

/// The span covering the columns an expression mentions, or the whole statement.
fn span_of(expr: &Expr, snippet: &Snippet) -> Span {
    let mut spans = Vec::new();
    let _ = expr.apply(|e| {
        if let Expr::Column(c) = e
            && let Some(s) = c.spans().first()
        {
            spans.push(snippet.df_span(s));
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    spans
        .into_iter()
        .reduce(Span::to)
        .unwrap_or_else(|| snippet.whole())
}
