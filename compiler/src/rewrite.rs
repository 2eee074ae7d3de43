//! Rewrites of the sqlparser AST before DataFusion sees it, for Flink syntax DataFusion reads
//! differently: the unit of `TIMESTAMPDIFF(DAY, a, b)` / `TIMESTAMPADD(HOUR, n, t)` is a keyword in
//! Flink, which sqlparser reads as a column name; it becomes the string `'DAY'` the stdlib expects.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Value, VisitMut, visit_expressions_mut,
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

/// Applies the rewrites to every expression of `node`.
pub fn flink_syntax<V: VisitMut>(node: &mut V) {
    let _ = visit_expressions_mut(node, |e: &mut Expr| {
        rewrite(e);
        ControlFlow::<()>::Continue(())
    });
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
