//! A bound on how deeply SQL expressions nest. Planning is recursive (and DataFusion's type
//! coercion is quadratic in chain length), and a plan artefact must load back, so an expression
//! deeper than [`MAX_EXPR_DEPTH`] is refused with a diagnostic rather than planned.

use std::ops::ControlFlow;

use sqlparser::ast::{Expr, Visit, Visitor};

/// The deepest expression nesting the compiler accepts: a sum of 256 terms, a CASE nested 256 deep.
pub const MAX_EXPR_DEPTH: usize = 256;

struct Depth {
    current: usize,
    max: usize,
}

impl Visitor for Depth {
    type Break = ();

    fn pre_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.current += 1;
        self.max = self.max.max(self.current);
        if self.current > MAX_EXPR_DEPTH {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.current -= 1;
        ControlFlow::Continue(())
    }
}

/// Whether some expression in `node` nests deeper than [`MAX_EXPR_DEPTH`].
pub fn too_deep<V: Visit>(node: &V) -> bool {
    let mut d = Depth { current: 0, max: 0 };
    node.visit(&mut d).is_break()
}

/// The message for an expression that is too deep.
pub fn message() -> String {
    format!(
        "expression nested more than {MAX_EXPR_DEPTH} levels deep (e.g. a chain of {MAX_EXPR_DEPTH}+ operators)"
    )
}
