//! The state-boundedness check (as Feldera does it): every stateful operator must have its state
//! bounded by a watermark and a window, `WITHIN`, or a state TTL, or `fsql check` says which one
//! grows without bound and how to bound it.

use std::collections::BTreeMap;

use fsql_plan::{Node, Operator};

use crate::diagnostic::Diagnostic;

/// Warnings for operators whose state can grow without bound.
///
/// Every operator the plan has today keeps no state across batches (sources, calc, union,
/// rulesets, sinks), so they are bounded by construction; the match is exhaustive so that each new
/// stateful operator has to state its bound here.
pub fn check_state_bounds(nodes: &[Node], settings: &BTreeMap<String, String>) -> Vec<Diagnostic> {
    let _has_ttl =
        settings.contains_key("state.ttl") || settings.contains_key("table.exec.state.ttl");
    let mut out = Vec::new();
    for node in nodes {
        match &node.op {
            Operator::Source(_)
            | Operator::Calc { .. }
            | Operator::Union
            | Operator::Ruleset(_)
            | Operator::Sink(_)
            | Operator::Collect => {}
        }
        let _ = &mut out;
    }
    out
}
