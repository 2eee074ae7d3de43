//! Run counters: rows and batches per node, malformed records per source. The CLI prints them
//! (`fsql run --metrics`) and the summary line; later issues export them.

use std::fmt::Write as _;
use std::time::Duration;

use fsql_plan::NodeId;

/// Counters of one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeMetrics {
    /// The node id (its position in the plan).
    pub id: u32,
    /// The node's stable name.
    pub name: String,
    /// `source`, `calc`, `union`, `ruleset`, `over`, `sink` or `collect`.
    pub kind: &'static str,
    /// Rows received from inputs.
    pub rows_in: u64,
    /// Rows emitted.
    pub rows_out: u64,
    /// Batches received.
    pub batches_in: u64,
    /// Batches emitted.
    pub batches_out: u64,
    /// Records a source could not decode.
    pub malformed: u64,
    /// Rows a stateful operator (OVER) dropped because they arrived behind its watermark.
    pub late: u64,
    /// The node's current watermark (epoch ms), if any arrived.
    pub watermark: Option<i64>,
}

/// Counters of every node of a pipeline, indexed by node id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// One entry per node, by id.
    pub nodes: Vec<NodeMetrics>,
}

impl Metrics {
    /// The counters of node `id`.
    pub fn node(&self, id: NodeId) -> Option<&NodeMetrics> {
        self.nodes.get(id.0 as usize)
    }

    /// A fixed-width text table, one line per node (with a `late` column when any node dropped
    /// late rows).
    pub fn render(&self) -> String {
        let late = self.nodes.iter().any(|n| n.late > 0);
        let width = self
            .nodes
            .iter()
            .map(|n| n.name.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let mut out = String::new();
        let _ = write!(
            out,
            "{:>3}  {:<width$}  {:<8} {:>12} {:>12} {:>9}",
            "id", "node", "kind", "rows in", "rows out", "malformed"
        );
        let _ = if late {
            writeln!(out, " {:>9}", "late")
        } else {
            writeln!(out)
        };
        for n in &self.nodes {
            let _ = write!(
                out,
                "{:>3}  {:<width$}  {:<8} {:>12} {:>12} {:>9}",
                n.id, n.name, n.kind, n.rows_in, n.rows_out, n.malformed
            );
            let _ = if late {
                writeln!(out, " {:>9}", n.late)
            } else {
                writeln!(out)
            };
        }
        out
    }
}

/// A running pipeline's counters at one moment: what `fsql run` shows as live progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Since the run started.
    pub elapsed: Duration,
    /// Rows all sources emitted.
    pub rows_in: u64,
    /// Rows all sinks and query results received.
    pub rows_out: u64,
    /// Records sources could not decode (dead letters).
    pub malformed: u64,
    /// Rows stateful operators received behind their watermark.
    pub late: u64,
    /// The lowest source watermark (epoch ms), once every source with one has emitted it.
    pub watermark: Option<i64>,
    /// Records in the sources' topics not read yet (last known end offsets minus positions),
    /// when a source knows it (Kafka).
    pub lag: Option<u64>,
}
