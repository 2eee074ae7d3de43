//! The state-boundedness check (as Feldera does it): every stateful operator must have its state
//! bounded by a watermark and a window, `WITHIN`, or a state TTL, or `fsql check` says which one
//! grows without bound and how to bound it (`--strict` makes that an error).

use std::collections::BTreeMap;

use fsql_plan::{AggregateFunction, Node, Operator, OverFrame};

use crate::diagnostic::Diagnostic;

/// Warnings for operators whose state can grow without bound.
///
/// The match is exhaustive on purpose: each stateful operator added to the plan must say here what
/// bounds its state.
pub fn check_state_bounds(nodes: &[Node], settings: &BTreeMap<String, String>) -> Vec<Diagnostic> {
    // A state TTL drops idle keys, which bounds OVER and MATCH_RECOGNIZE state (joins do not apply
    // it yet).
    let ttl = settings.contains_key("state.ttl") || settings.contains_key("table.exec.state.ttl");
    nodes
        .iter()
        .flat_map(|node| match &node.op {
            // Stateless (sources keep only their read position).
            Operator::Source(_)
            | Operator::Calc { .. }
            | Operator::Union
            | Operator::Ruleset(_)
            | Operator::Predict(_)
            | Operator::Sink(_)
            | Operator::Collect
            | Operator::WindowAssign(_) => vec![],
            // A regular aggregation keeps every key it has seen, unless idle keys expire.
            Operator::GroupAggregate(_) if ttl => vec![],
            Operator::GroupAggregate(_) => vec![Diagnostic::warning(
                format!(
                    "state of `{}` grows without bound: a GROUP BY without a window keeps the aggregates of every key it has seen",
                    node.name
                ),
                None,
            )
            .with_help("aggregate over a window TVF (GROUP BY window_start, window_end, ...) to free each window's state, or SET 'state.ttl' to drop idle keys")],
            // N rows per partition, for every partition ever seen.
            Operator::Rank(_) => vec![Diagnostic::warning(
                format!(
                    "state of `{}` grows without bound: a TopN without a window keeps the first N rows of every partition it has seen",
                    node.name
                ),
                None,
            )
            .with_help("rank within windows (PARTITION BY window_start, window_end, ...) to free each window's rows")],
            // Windows are freed when the watermark passes them.
            Operator::WindowAggregate(_) | Operator::WindowRank(_) => vec![],
            // Left rows leave at the watermark; a key keeps its latest version (a versioned table
            // is as large as its key space).
            Operator::TemporalJoin(_) => vec![],
            // Match attempts end when WITHIN passes; without it, an attempt that can still grow
            // (`A B*` waiting for B rows) keeps its rows, and the partitions' last rows are kept for
            // PREV.
            Operator::MatchRecognize(m) if m.within_ms.is_none() && !ttl => vec![Diagnostic::warning(
                format!(
                    "state of `{}` grows without bound: a MATCH_RECOGNIZE without WITHIN keeps every unfinished match attempt",
                    node.name
                ),
                None,
            )
            .with_help("bound the pattern in time: PATTERN (...) WITHIN INTERVAL '10' MINUTE")],
            Operator::MatchRecognize(_) => vec![],
            // Interval joins free rows as the watermark passes their bounds; a regular join keeps
            // each input's rows until the other input ends, which is fine for a reference table
            // (no watermark) and unbounded between two streams.
            Operator::Join(j) => {
                let streams = node
                    .inputs
                    .iter()
                    .filter(|i| nodes.get(i.0 as usize).is_some_and(|n| n.event_time.is_some()))
                    .count();
                if j.interval.is_none() && streams == 2 {
                    vec![Diagnostic::warning(
                        format!(
                            "state of `{}` grows without bound: a regular join of two streams keeps every row of both",
                            node.name
                        ),
                        None,
                    )
                    .with_help("bound it in time (an interval join: AND l.ts BETWEEN r.ts - INTERVAL '1' HOUR AND r.ts)")]
                } else {
                    vec![]
                }
            }
            // A bounded frame evicts rows; an unbounded frame keeps O(1) per key, except for
            // DISTINCT aggregates, which keep every distinct value a key has ever had.
            Operator::Over(_) if ttl => vec![],
            Operator::Over(spec) => spec
                .aggregates
                .iter()
                .enumerate()
                .filter(|(_, a)| {
                    a.distinct
                        && matches!(a.frame, OverFrame::UnboundedRange | OverFrame::UnboundedRows)
                        && !matches!(a.function, AggregateFunction::Lag { .. })
                })
                .map(|(i, a)| {
                    let column = node
                        .schema
                        .fields
                        .get(spec_column(node, i))
                        .map_or_else(|| format!("#{i}"), |f| f.name.clone());
                    Diagnostic::warning(
                        format!(
                            "state of `{}` grows without bound: {:?}(DISTINCT ...) OVER an unbounded frame keeps every distinct value of every key (column `{column}`)",
                            node.name, a.function
                        ),
                        None,
                    )
                    .with_help("bound the frame, e.g. RANGE BETWEEN INTERVAL '24' HOUR PRECEDING AND CURRENT ROW, or SET 'state.ttl'")
                })
                .collect(),
        })
        .collect()
}

/// The output column of the `i`-th aggregate of an OVER node (after the input columns).
fn spec_column(node: &Node, i: usize) -> usize {
    match &node.op {
        Operator::Over(spec) => node.schema.fields.len() - spec.aggregates.len() + i,
        _ => i,
    }
}
