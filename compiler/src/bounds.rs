//! The state-boundedness check (as Feldera does it): every stateful operator must have its state
//! bounded by a watermark and a window, `WITHIN`, or a state TTL, or `fsql check` says which one
//! grows without bound and how to bound it (`--strict` makes that an error).

use std::collections::BTreeMap;

use fsql_plan::{Node, Operator};

use crate::diagnostic::Diagnostic;

/// Warnings for operators whose state can grow without bound.
///
/// No operator of today's plans keeps state across batches (sources keep only their read
/// position), so none is reported. The match is exhaustive on purpose: each stateful operator
/// added to the plan must say here what bounds its state.
pub fn check_state_bounds(nodes: &[Node], _settings: &BTreeMap<String, String>) -> Vec<Diagnostic> {
    nodes
        .iter()
        .filter_map(|node| match &node.op {
            Operator::Source(_)
            | Operator::Calc { .. }
            | Operator::Union
            | Operator::Ruleset(_)
            | Operator::Sink(_)
            | Operator::Collect => None,
        })
        .collect()
}
