//! The operator graph of a pipeline.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::expr::Expr;
use crate::types::Schema;

/// Identifies a node within one [`Pipeline`]; nodes are stored in topological order, so a node's
/// inputs always have smaller ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u32);

/// When results leave stateful operators (see `docs/language.md`, "Time").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EmitMode {
    /// Flink's event-time semantics: rows are ordered by time and emitted once the watermark passes.
    #[default]
    Watermark,
    /// Each event is processed and emitted the moment it arrives, with all state seen so far.
    Arrival,
}

/// A compiled pipeline: every source, view, ruleset and sink as operators in one DAG.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    /// `SET 'pipeline.name'`, or the file stem.
    pub name: String,
    /// Every `SET` option, validated by the compiler.
    pub settings: BTreeMap<String, String>,
    pub emit: EmitMode,
    /// Nodes in topological order: `nodes[i].id == NodeId(i)`.
    pub nodes: Vec<Node>,
    /// Declared models (`CREATE MODEL`), executed once model scoring lands.
    pub models: Vec<ModelDecl>,
}

impl Pipeline {
    /// The node with this id.
    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id.0 as usize)
    }

    /// The ids of the nodes that read `id`'s output.
    pub fn consumers(&self, id: NodeId) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|n| n.inputs.contains(&id))
            .map(|n| n.id)
            .collect()
    }
}

/// One operator with its output schema.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub id: NodeId,
    /// A stable identity derived from the SQL (table, view or sink name, plus a suffix for inner
    /// operators), used for state and metrics so that they survive unrelated edits.
    pub name: String,
    pub inputs: Vec<NodeId>,
    pub schema: Schema,
    /// The position of the event-time attribute in `schema`, if the rows carry one.
    pub event_time: Option<usize>,
    pub op: Operator,
}

/// What a node does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Operator {
    /// Reads a connector; emits batches of `Node::schema` and watermarks.
    Source(SourceSpec),
    /// Filter then project (Flink's "Calc"): rows where `filter` is TRUE, mapped through `projections`.
    Calc {
        filter: Option<Expr>,
        projections: Vec<Expr>,
    },
    /// Bag union of all inputs (same schema).
    Union,
    /// First-match rule evaluation: appends `decision`, `rule` and `ruleset_version` columns.
    Ruleset(RulesetSpec),
    /// Writes its input to a connector (`INSERT INTO`).
    Sink(SinkSpec),
    /// The result of a bare `SELECT`: handed to the caller (printed by `fsql run`).
    Collect,
}

/// A connector and its `WITH (...)` options (validated by the compiler).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorSpec {
    /// `'connector'`: `filesystem`, `datagen`, `payments-generator`, `print`, `blackhole`, ...
    pub connector: String,
    /// All other options, e.g. `path`, `format`, `fields.id.kind`.
    pub options: BTreeMap<String, String>,
    /// The directory relative paths resolve against (the `.fsql` file's directory).
    pub base_dir: String,
}

/// A `CREATE TABLE` read as a source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceSpec {
    pub table: String,
    pub connector: ConnectorSpec,
    /// The columns the connector decodes (physical columns, in declaration order).
    pub physical: Schema,
    /// How the output columns are computed from the physical ones (`Column(i)` for a physical column,
    /// any expression for a computed column `c AS expr`); one per output column.
    pub columns: Vec<Expr>,
    pub watermark: Option<WatermarkSpec>,
}

/// `WATERMARK FOR rowtime AS expr`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WatermarkSpec {
    /// The event-time column, a position in the source's output schema.
    pub rowtime: usize,
    /// The watermark expression over the output row; the source's watermark is its maximum so far.
    pub expr: Expr,
    /// `Some(d)` when `expr` is `rowtime - INTERVAL d` (bounded out-of-orderness, in ms).
    pub max_out_of_orderness_ms: Option<i64>,
}

/// A `CREATE TABLE` written by `INSERT INTO`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SinkSpec {
    pub table: String,
    pub connector: ConnectorSpec,
}

/// `CREATE MODEL`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelDecl {
    pub name: String,
    pub inputs: Schema,
    pub outputs: Schema,
    pub options: BTreeMap<String, String>,
}

/// `CREATE RULESET name ON input KEY k DEFAULT 'd' (RULE ...)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RulesetSpec {
    pub name: String,
    /// The key column (position in the input schema).
    pub key: usize,
    pub default_decision: String,
    /// The ruleset version the plan starts with; control-stream updates increase it.
    pub version: i64,
    /// In evaluation order: ascending priority, then declaration order.
    pub rules: Vec<Rule>,
}

/// One rule of a ruleset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    pub priority: i64,
    /// A BOOLEAN expression over the ruleset's input row; the rule fires when it is TRUE.
    pub condition: Expr,
    pub decision: String,
}
