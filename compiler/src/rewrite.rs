//! Rewrites of the sqlparser AST before DataFusion sees it, for Flink syntax DataFusion reads
//! differently:
//! * the unit of `TIMESTAMPDIFF(DAY, a, b)` / `TIMESTAMPADD(HOUR, n, t)` is a keyword in Flink, which
//!   sqlparser reads as a column name; it becomes the string `'DAY'` the stdlib expects;
//! * an unnamed `SELECT` expression is named `EXPR$i` (its position), as Flink names it, so two
//!   unnamed expressions DataFusion would display alike (`CAST(s AS INT)`, `TRY_CAST(...)`) do
//!   not clash.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, Query, SelectItem, SetExpr,
    Value, VisitMut, VisitorMut, visit_expressions_mut,
};

const UNITS: &[&str] = &[
    "SECOND",
    "MINUTE",
    "HOUR",
    "DAY",
    "WEEK",
    "MONTH",
    "QUARTER",
    "YEAR",
    "MILLISECOND",
    "MICROSECOND",
    "NANOSECOND",
];

/// Applies the rewrites to every expression and query of `node`.
pub fn flink_syntax<V: VisitMut>(node: &mut V) {
    let _ = visit_expressions_mut(node, |e: &mut Expr| {
        rewrite(e);
        ControlFlow::<()>::Continue(())
    });
    let _ = node.visit(&mut NameExpressions);
}

/// Names unnamed `SELECT` expressions `EXPR$i`.
struct NameExpressions;

impl VisitorMut for NameExpressions {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        name_expressions(&mut query.body);
        ControlFlow::Continue(())
    }
}

fn name_expressions(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            for (i, item) in select.projection.iter_mut().enumerate() {
                if let SelectItem::UnnamedExpr(e) = item
                    && !matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
                {
                    let expr = std::mem::replace(e, Expr::value(Value::Null));
                    *item = SelectItem::ExprWithAlias {
                        expr,
                        alias: Ident::new(format!("EXPR${i}")),
                    };
                }
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            name_expressions(left);
            name_expressions(right);
        }
        _ => {}
    }
}

fn rewrite(e: &mut Expr) {
    let Expr::Function(f) = e else { return };
    let name = f.name.to_string().to_ascii_uppercase();
    if name != "TIMESTAMPDIFF" && name != "TIMESTAMPADD" {
        return;
    }
    let FunctionArguments::List(list) = &mut f.args else {
        return;
    };
    let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(first))) = list.args.first_mut() else {
        return;
    };
    if let Expr::Identifier(id) = first {
        let unit = id.value.to_ascii_uppercase();
        if id.quote_style.is_none() && UNITS.contains(&unit.as_str()) {
            *first = Expr::value(Value::SingleQuotedString(unit));
        }
    }
}
