//! The changelog check: a node that cannot consume an updating input (see
//! [`fsql_plan::changelog`]) is an error in Flink's words, naming the node whose updates reach it.

use fsql_plan::changelog::{ChangelogMode, UPDATING_SINK_CONNECTORS, modes, refusals};
use fsql_plan::{AggregateFunction, ExprKind, Node, Operator};

use crate::diagnostic::Diagnostic;
use crate::source::Span;

/// Errors for every node that reads updates it cannot consume; `span_of` gives the statement a
/// node comes from.
pub fn check_changelog(nodes: &[Node], span_of: &dyn Fn(&Node) -> Option<Span>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for r in refusals(nodes) {
        let (Some(consumer), Some(producer)) = (
            nodes.get(r.consumer.0 as usize),
            nodes.get(r.producer.0 as usize),
        ) else {
            continue;
        };
        let what = match &consumer.op {
            Operator::Sink(s) => format!("Table sink '{}'", s.table),
            op => format!("{} `{}`", kind(op), consumer.name),
        };
        let help = match &consumer.op {
            Operator::Sink(_) => format!(
                "an updating result can be written to a table with connector {}; or aggregate over a window TVF (GROUP BY window_start, window_end, ...), whose rows are final",
                UPDATING_SINK_CONNECTORS
                    .iter()
                    .map(|c| format!("'{c}'"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            _ => "a GROUP BY without a window updates its rows as input arrives; aggregate over a window TVF (GROUP BY window_start, window_end, ...) for final rows".into(),
        };
        out.push(
            Diagnostic::error(
                format!(
                    "{what} doesn't support consuming update changes which is produced by node {}",
                    describe(producer, nodes)
                ),
                span_of(consumer),
            )
            .with_help(help),
        );
    }
    // A TopN without a window keeps N rows per partition: without N it would keep them all.
    for node in nodes {
        if let Operator::Rank(r) = &node.op
            && r.limit.is_none()
        {
            out.push(
                Diagnostic::error(
                    "Rank end is not specified. Currently rank only support TopN, which means the rank end must be specified: ROW_NUMBER() without a window needs WHERE rownum <= N right over it",
                    span_of(node),
                )
                .with_help("add WHERE rownum <= N (or rownum = 1 for a deduplication) in the query that reads the ROW_NUMBER()"),
            );
        }
    }
    // Aggregates that cannot be retracted, over an updating input.
    let modes = modes(nodes);
    for node in nodes {
        let Operator::GroupAggregate(g) = &node.op else {
            continue;
        };
        let updating = node
            .inputs
            .iter()
            .any(|i| modes.get(i.0 as usize) == Some(&ChangelogMode::Updating));
        if let Some(a) = g.aggregates.iter().find(|a| {
            matches!(
                a.function,
                AggregateFunction::FirstValue | AggregateFunction::LastValue
            )
        }) && updating
        {
            out.push(Diagnostic::error(
                format!(
                    "{} over an updating input (the result of another GROUP BY) is not supported yet",
                    a.function.sql_name()
                ),
                span_of(node),
            ));
        }
    }
    out
}

/// The operator's name in messages (Flink's where it has one).
fn kind(op: &Operator) -> &'static str {
    match op {
        Operator::Over(_) => "OverAggregate",
        Operator::WindowAssign(_) => "WindowTableFunction",
        Operator::WindowAggregate(_) => "WindowAggregate",
        Operator::WindowRank(_) => "WindowRank",
        Operator::Join(j) if j.interval.is_some() => "IntervalJoin",
        Operator::Join(_) => "Join",
        Operator::TemporalJoin(_) => "TemporalJoin",
        Operator::MatchRecognize(_) => "Match",
        Operator::Ruleset(_) => "Ruleset",
        Operator::Predict(_) => "ML_PREDICT",
        Operator::Rank(_) => "Rank",
        _ => "Operator",
    }
}

/// `GroupAggregate(groupBy=[k], select=[k, COUNT(*), MAX(v)])` or `Rank(partitionBy=[k],
/// orderBy=[...], rankEnd=N)`, as Flink names the node.
pub fn describe(node: &Node, nodes: &[Node]) -> String {
    let input = node.inputs.first().and_then(|i| nodes.get(i.0 as usize));
    let column = |c: usize| {
        input
            .and_then(|n| n.schema.fields.get(c))
            .map_or_else(|| format!("${c}"), |f| f.name.clone())
    };
    let g = match &node.op {
        Operator::GroupAggregate(g) => g,
        Operator::Rank(r) => {
            let partition: Vec<String> = r.partition_by.iter().map(|&c| column(c)).collect();
            let order: Vec<String> = r
                .order_by
                .iter()
                .map(|k| {
                    let e = match k.expr.kind {
                        ExprKind::Column(c) => column(c),
                        _ => "...".into(),
                    };
                    format!("{e} {}", if k.descending { "DESC" } else { "ASC" })
                })
                .collect();
            return format!(
                "Rank(partitionBy=[{}], orderBy=[{}], rankEnd={})",
                partition.join(", "),
                order.join(", "),
                r.limit.map_or_else(|| "?".into(), |l| l.to_string())
            );
        }
        _ => return node.name.clone(),
    };
    let keys: Vec<String> = g.keys.iter().map(|&k| column(k)).collect();
    let mut select = keys.clone();
    for a in &g.aggregates {
        let args: Vec<String> = a
            .args
            .iter()
            .map(|e| match e.kind {
                ExprKind::Column(c) => column(c),
                _ => "...".into(),
            })
            .collect();
        let args = if args.is_empty() {
            "*".to_string()
        } else {
            args.join(", ")
        };
        let distinct = if a.distinct { "DISTINCT " } else { "" };
        select.push(format!("{}({distinct}{args})", a.function.sql_name()));
    }
    format!(
        "GroupAggregate(groupBy=[{}], select=[{}])",
        keys.join(", "),
        select.join(", ")
    )
}
