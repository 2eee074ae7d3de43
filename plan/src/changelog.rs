//! Changelog modes: which nodes of a pipeline emit an *updating* relation (rows with kinds `+I`,
//! `-U`, `+U`, `-D`, Flink's `RowKind`) rather than an append-only one, and which nodes cannot
//! consume one.
//!
//! A [`Operator::GroupAggregate`] and a [`Operator::Rank`] (TopN without a window) produce updates; stateless nodes (Calc, Union, Collect and
//! sinks) and regular inner joins pass their inputs' mode on; every other operator emits an
//! append-only relation and consumes only append-only inputs (as Flink's OVER, window TVFs,
//! interval and temporal joins and MATCH_RECOGNIZE do; fsql's outer joins, Ruleset and ML_PREDICT
//! do not consume updates yet).
//! The compiler refuses a plan with a [`Refusal`]; the runtime never needs the modes, because
//! updating nodes send the runtime's `Event::Changes` (rows with their kinds) instead of plain
//! batches.

use crate::graph::{JoinKind, Node, NodeId, Operator};

/// Whether a node's output is append-only or updating.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangelogMode {
    /// Only inserts (`+I`): every row, once.
    AppendOnly,
    /// Rows are inserted, updated (`-U`/`+U`) and deleted (`-D`).
    Updating,
}

/// The connectors a sink table can write an updating relation to.
pub const UPDATING_SINK_CONNECTORS: &[&str] = &["print", "blackhole", "upsert-kafka"];

/// Each node's changelog mode, indexed by node id (`nodes` in topological order, as a
/// pipeline's are).
pub fn modes(nodes: &[Node]) -> Vec<ChangelogMode> {
    let mut modes: Vec<ChangelogMode> = Vec::with_capacity(nodes.len());
    for node in nodes {
        let mode = match &node.op {
            Operator::GroupAggregate(_) | Operator::Rank(_) => ChangelogMode::Updating,
            op if passes_updates(op) => {
                let updating = node
                    .inputs
                    .iter()
                    .any(|i| modes.get(i.0 as usize) == Some(&ChangelogMode::Updating));
                if updating {
                    ChangelogMode::Updating
                } else {
                    ChangelogMode::AppendOnly
                }
            }
            _ => ChangelogMode::AppendOnly,
        };
        modes.push(mode);
    }
    modes
}

/// Whether `op` emits an updating relation when an input is one (its rows keep their kinds).
fn passes_updates(op: &Operator) -> bool {
    match op {
        Operator::Calc { .. } | Operator::Union | Operator::Collect | Operator::Sink(_) => true,
        Operator::Join(j) => j.interval.is_none() && j.kind == JoinKind::Inner,
        _ => false,
    }
}

/// Whether `op` accepts an updating input.
pub fn consumes_updates(op: &Operator) -> bool {
    match op {
        Operator::Calc { .. }
        | Operator::Union
        | Operator::Collect
        | Operator::GroupAggregate(_) => true,
        Operator::Join(j) => j.interval.is_none() && j.kind == JoinKind::Inner,
        Operator::Sink(s) => UPDATING_SINK_CONNECTORS.contains(&s.connector.connector.as_str()),
        _ => false,
    }
}

/// A node that reads an updating input it cannot consume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The node that cannot consume updates.
    pub consumer: NodeId,
    /// The node whose updates reach it: the GroupAggregate they come from.
    pub producer: NodeId,
}

/// Every node that reads an updating input it cannot consume, in node order.
pub fn refusals(nodes: &[Node]) -> Vec<Refusal> {
    let modes = modes(nodes);
    let updating = |id: NodeId| modes.get(id.0 as usize) == Some(&ChangelogMode::Updating);
    let mut out = Vec::new();
    for node in nodes {
        if consumes_updates(&node.op) {
            continue;
        }
        if let Some(&input) = node.inputs.iter().find(|&&i| updating(i)) {
            out.push(Refusal {
                consumer: node.id,
                producer: origin(nodes, &modes, input),
            });
        }
    }
    out
}

/// The node the updates of updating node `id` come from: the first GroupAggregate or Rank upstream
/// (through Calc, Union, ... which only pass them on).
pub fn origin(nodes: &[Node], modes: &[ChangelogMode], mut id: NodeId) -> NodeId {
    while let Some(node) = nodes.get(id.0 as usize) {
        if matches!(node.op, Operator::GroupAggregate(_) | Operator::Rank(_)) {
            break;
        }
        match node
            .inputs
            .iter()
            .find(|i| modes.get(i.0 as usize) == Some(&ChangelogMode::Updating))
        {
            Some(&input) => id = input,
            None => break,
        }
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{ConnectorSpec, GroupAggregateSpec, Node, SinkSpec};
    use crate::types::Schema;

    fn node(id: u32, inputs: &[u32], op: Operator) -> Node {
        Node {
            id: NodeId(id),
            name: format!("n{id}"),
            inputs: inputs.iter().map(|&i| NodeId(i)).collect(),
            schema: Schema::new(vec![]),
            event_time: None,
            op,
        }
    }

    fn sink(connector: &str) -> Operator {
        Operator::Sink(SinkSpec {
            table: "t".into(),
            connector: ConnectorSpec {
                connector: connector.into(),
                options: Default::default(),
                base_dir: String::new(),
            },
            metadata: Default::default(),
        })
    }

    #[test]
    fn updates_flow_through_calcs_to_a_sink_that_refuses_them() {
        let agg = Operator::GroupAggregate(GroupAggregateSpec {
            keys: vec![0],
            aggregates: vec![],
        });
        let calc = Operator::Calc {
            filter: None,
            projections: vec![],
        };
        let p = vec![
            node(0, &[], Operator::Union),
            node(1, &[0], agg),
            node(2, &[1], calc),
            node(3, &[2], sink("filesystem")),
            node(4, &[2], sink("print")),
        ];
        assert_eq!(
            modes(&p),
            vec![
                ChangelogMode::AppendOnly,
                ChangelogMode::Updating,
                ChangelogMode::Updating,
                ChangelogMode::Updating,
                ChangelogMode::Updating,
            ]
        );
        assert_eq!(
            refusals(&p),
            vec![Refusal {
                consumer: NodeId(3),
                producer: NodeId(1)
            }]
        );
    }
}
