//! The operator graph of a pipeline.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::expr::{Expr, ExprKind, Literal};
use crate::types::{DataType, Schema};

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

/// The setting naming the table that receives late rows: a sink node with no input in the plan,
/// fed by the runtime with `(operator, row)` for each row a stateful operator got behind the
/// watermark.
pub const LATE_DATA_SINK: &str = "pipeline.late-data.sink";

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

    /// Which physical columns of source node `id` the pipeline reads, so that its connector can
    /// leave the others NULL instead of decoding them (projection pushdown). `None` means every
    /// column: `id` is not a source, or a consumer is not a `Calc` (other operators may read or
    /// forward any column).
    ///
    /// ```
    /// # use fsql_plan::Pipeline;
    /// // A pipeline without nodes has no source to ask about.
    /// assert_eq!(Pipeline::default().source_columns_read(fsql_plan::NodeId(0)), None);
    /// ```
    pub fn source_columns_read(&self, id: NodeId) -> Option<Vec<bool>> {
        let node = self.node(id)?;
        let Operator::Source(spec) = &node.op else {
            return None;
        };
        if spec.columns.len() != node.schema.fields.len() {
            return None;
        }
        let mut outputs = vec![false; spec.columns.len()];
        for consumer in self.consumers(id) {
            let Operator::Calc {
                filter,
                projections,
            } = &self.node(consumer)?.op
            else {
                return None;
            };
            for e in filter.iter().chain(projections) {
                e.mark_columns(&mut outputs);
            }
        }
        if let Some(wm) = &spec.watermark {
            wm.expr.mark_columns(&mut outputs);
            if let Some(r) = outputs.get_mut(wm.rowtime) {
                *r = true;
            }
        }
        if let Some(r) = node.event_time.and_then(|t| outputs.get_mut(t)) {
            *r = true;
        }
        let mut read = vec![false; spec.physical.fields.len()];
        for (column, _) in spec.columns.iter().zip(&outputs).filter(|(_, r)| **r) {
            column.mark_columns(&mut read);
        }
        Some(read)
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
    /// OVER aggregation: every input row is emitted with aggregates over earlier rows of its
    /// partition, appended as new columns.
    Over(OverSpec),
    /// A window TVF read without aggregation: every input row once per window it belongs to, with
    /// `window_start`, `window_end` and `window_time` appended.
    WindowAssign(WindowAssignSpec),
    /// Window aggregation (`GROUP BY window_start, window_end, keys` over a window TVF): one row per
    /// window and key, emitted when the watermark passes the window's end.
    WindowAggregate(WindowAggregateSpec),
    /// Non-windowed aggregation (`GROUP BY keys` without a window TVF, or a global aggregate): an
    /// *updating* relation, one row per key, retracted and re-emitted as its aggregates change
    /// (Flink's GroupAggregate). Output = the key columns, then one column per aggregate.
    GroupAggregate(GroupAggregateSpec),
    /// A join of its two inputs (left, right): output = left columns, then right columns.
    Join(JoinSpec),
    /// Window TopN / deduplication: `ROW_NUMBER() OVER (PARTITION BY window_start, window_end, ...
    /// ORDER BY ...)` over windowed rows; output = input columns, then the row number.
    WindowRank(WindowRankSpec),
    /// TopN without a window (`ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...)` with `WHERE
    /// rownum <= N`), Flink's Rank: an *updating* relation holding each partition's first N rows
    /// with their row numbers, updated as rows enter. Output = input columns, then the row number.
    Rank(RankSpec),
    /// Event-time temporal join (`JOIN versioned FOR SYSTEM_TIME AS OF left.time`): each left row
    /// (input 0) with the version of its key that was valid at its time (input 1, a versioned
    /// table); output = left columns, then right columns.
    TemporalJoin(TemporalJoinSpec),
    /// Row pattern recognition (`MATCH_RECOGNIZE`): per partition, rows in time order matched
    /// against a pattern; output = the partition columns, then the measures, one row per match.
    MatchRecognize(crate::pattern::MatchRecognizeSpec),
    /// Model scoring (`ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(...))`): output = input columns,
    /// then the model's `OUTPUT` columns, then `<model>_version`.
    Predict(PredictSpec),
}

/// [`Operator::Predict`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictSpec {
    /// The [`ModelDecl`] scored.
    pub model: String,
    /// The input columns fed to the model, in the order of its `INPUT` clause.
    pub features: Vec<usize>,
}

/// [`Operator::TemporalJoin`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TemporalJoinSpec {
    /// `Inner` or `Left` (a left row without a valid version is NULL-padded).
    pub kind: JoinKind,
    /// Over the left input, pairwise with `right_keys` (the versioned table's primary key).
    pub left_keys: Vec<Expr>,
    pub right_keys: Vec<Expr>,
    /// The left input's event-time column (`AS OF`).
    pub left_time: usize,
    /// The versioned table's event-time column: a row is its key's version from that time on.
    pub right_time: usize,
    /// Further conditions over the joined row.
    pub residual: Option<Expr>,
}

/// [`Operator::WindowRank`]: each partition's rows are numbered in order once the watermark
/// passes its window's end.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowRankSpec {
    /// Partition columns (positions in the input), including the window's start and end.
    pub partition_by: Vec<usize>,
    /// The `window_end` column: a partition is complete once the watermark reaches it − 1 ms.
    pub window_end: usize,
    pub order_by: Vec<SortKey>,
    /// Only the first `limit` rows of a partition are emitted (from `WHERE rownum <= N`).
    pub limit: Option<u64>,
    /// Flink's Window Deduplication keeping the last row (one `ORDER BY` key, an event-time
    /// attribute, descending): among rows with equal times the latest arrival wins. Otherwise
    /// ties are numbered in arrival order.
    #[serde(default)]
    pub latest_on_ties: bool,
}

/// [`Operator::Rank`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RankSpec {
    /// Partition columns (positions in the input).
    pub partition_by: Vec<usize>,
    pub order_by: Vec<SortKey>,
    /// Rows per partition (from `WHERE rownum <= N`); the compiler refuses a Rank without one.
    pub limit: Option<u64>,
    /// A new row goes before the rows it ties with (Flink's deduplication keeping the last row:
    /// one `ORDER BY` key, an event-time attribute, descending); otherwise after them.
    #[serde(default)]
    pub latest_on_ties: bool,
}

/// One `ORDER BY` key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SortKey {
    pub expr: Expr,
    pub descending: bool,
    pub nulls_first: bool,
}

/// Which unmatched rows a join keeps (NULL-padded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
}

/// [`Operator::Join`]: rows whose keys are equal (NULL never matches), within the time bounds of
/// an interval join, for which `residual` is TRUE.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JoinSpec {
    pub kind: JoinKind,
    /// Equi-join keys over the left input, pairwise with `right_keys`.
    pub left_keys: Vec<Expr>,
    pub right_keys: Vec<Expr>,
    /// Interval join bounds; `None` for a regular join (which keeps both inputs' rows until the
    /// other input ends).
    pub interval: Option<IntervalBounds>,
    /// Further conditions over the joined row (left columns, then right columns).
    pub residual: Option<Expr>,
}

/// `lower ≤ left.time − right.time ≤ upper` (each bound inclusive or strict), in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IntervalBounds {
    /// The left input's event-time column.
    pub left_time: usize,
    /// The right input's event-time column.
    pub right_time: usize,
    pub lower_ms: i64,
    pub lower_inclusive: bool,
    pub upper_ms: i64,
    pub upper_inclusive: bool,
}

/// A window table-valued function: which windows a row with event time `t` belongs to.
///
/// All durations are milliseconds; windows are aligned to the epoch plus `offset_ms`, as Flink
/// aligns them. A window covers `[start, end)` and its `window_time` is `end - 1 ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WindowKind {
    /// `TUMBLE(data, timecol, size [, offset])`: consecutive windows of `size`.
    Tumble { size_ms: i64, offset_ms: i64 },
    /// `HOP(data, timecol, slide, size [, offset])`: windows of `size` starting every `slide`.
    Hop {
        size_ms: i64,
        slide_ms: i64,
        offset_ms: i64,
    },
    /// `CUMULATE(data, timecol, step, size [, offset])`: windows starting every `size` that grow by
    /// `step` up to `size`.
    Cumulate {
        step_ms: i64,
        size_ms: i64,
        offset_ms: i64,
    },
    /// `SESSION(data PARTITION BY keys, timecol, gap)`: per key, rows less than `gap` apart
    /// (touching windows `[t, t + gap)` merge).
    Session { gap_ms: i64 },
}

/// [`Operator::WindowAssign`]: output = input columns, then `window_start`, `window_end`,
/// `window_time`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowAssignSpec {
    pub window: WindowKind,
    /// The event-time column (position in the input).
    pub time: usize,
    /// SESSION's `PARTITION BY` columns (positions in the input): sessions are per partition.
    #[serde(default)]
    pub partition: Vec<usize>,
}

/// [`Operator::WindowAggregate`]: output = `group` columns, then one column per aggregate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowAggregateSpec {
    pub window: WindowKind,
    /// The event-time column (position in the input).
    pub time: usize,
    /// SESSION's `PARTITION BY` columns (positions in the input): sessions are per partition,
    /// and grouped by `group` within each session.
    #[serde(default)]
    pub partition: Vec<usize>,
    /// The grouping columns in output order.
    pub group: Vec<GroupColumn>,
    pub aggregates: Vec<GroupAggregate>,
}

/// [`Operator::GroupAggregate`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupAggregateSpec {
    /// The group key columns (positions in the input), in output order; empty for a global
    /// aggregate.
    pub keys: Vec<usize>,
    pub aggregates: Vec<GroupAggregate>,
}

/// One grouping column of a window aggregation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GroupColumn {
    WindowStart,
    WindowEnd,
    /// `window_end - 1 ms`: the event time of the result row.
    WindowTime,
    /// An input column (a group key).
    Key(usize),
}

/// One aggregate of a grouped (windowed) aggregation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupAggregate {
    pub function: AggregateFunction,
    /// Arguments over the input row (none for `COUNT(*)`).
    pub args: Vec<Expr>,
    pub distinct: bool,
    /// Rows for which this is not TRUE are not aggregated (`agg(x) FILTER (WHERE p)`).
    pub filter: Option<Expr>,
    /// The result type (the output column's type).
    pub data_type: DataType,
}

/// `agg(...) OVER (PARTITION BY ... ORDER BY rowtime <frame>)` for one partitioning; the aggregates
/// may have different frames (Flink allows one window per SELECT; fsql does not need that limit).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OverSpec {
    /// Partition key columns (positions in the input).
    pub partition_by: Vec<usize>,
    /// The event-time column rows are ordered by (ascending).
    pub order_by: usize,
    /// Appended to the input columns, in order.
    pub aggregates: Vec<OverAggregate>,
}

/// One aggregate of an [`OverSpec`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OverAggregate {
    pub function: AggregateFunction,
    /// Arguments over the input row (none for `COUNT(*)`).
    pub args: Vec<Expr>,
    /// `COUNT(DISTINCT x)` and friends.
    pub distinct: bool,
    pub frame: OverFrame,
    /// The result type (the output column's type).
    pub data_type: DataType,
}

/// Aggregate functions of OVER windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AggregateFunction {
    /// `COUNT(*)` (no argument) or `COUNT(x)` (non-NULL values).
    Count,
    Sum,
    Avg,
    Min,
    Max,
    FirstValue,
    LastValue,
    StddevPop,
    StddevSamp,
    VarPop,
    VarSamp,
    /// `LAG(x [, offset [, default]])`: the value `offset` rows before the current one.
    Lag {
        offset: u64,
    },
}

impl AggregateFunction {
    /// The function's SQL name (`STDDEV_POP`, `LAG`), for messages and plans shown to users.
    pub fn sql_name(self) -> &'static str {
        match self {
            AggregateFunction::Count => "COUNT",
            AggregateFunction::Sum => "SUM",
            AggregateFunction::Avg => "AVG",
            AggregateFunction::Min => "MIN",
            AggregateFunction::Max => "MAX",
            AggregateFunction::FirstValue => "FIRST_VALUE",
            AggregateFunction::LastValue => "LAST_VALUE",
            AggregateFunction::StddevPop => "STDDEV_POP",
            AggregateFunction::StddevSamp => "STDDEV_SAMP",
            AggregateFunction::VarPop => "VAR_POP",
            AggregateFunction::VarSamp => "VAR_SAMP",
            AggregateFunction::Lag { .. } => "LAG",
        }
    }
}

/// Which rows of the partition an OVER aggregate covers (always ending at the current row).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OverFrame {
    /// `RANGE BETWEEN INTERVAL 'x' PRECEDING AND CURRENT ROW`: rows with an event time in
    /// `[t - preceding_ms, t]`, rows with the same time (peers) included.
    Range { preceding_ms: i64 },
    /// `RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW` (the default frame): every row up to `t`,
    /// peers included.
    UnboundedRange,
    /// `ROWS BETWEEN n PRECEDING AND CURRENT ROW`: the current row and the `n` before it.
    Rows { preceding: u64 },
    /// `ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW`.
    UnboundedRows,
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
    /// `METADATA` columns: physical column position → the connector's metadata key (Kafka's
    /// `partition`, `offset`, `timestamp`, ...). The connector fills them instead of decoding.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<usize, String>,
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
    /// `METADATA` columns: column position → metadata key (Kafka's `timestamp` sets the record's
    /// timestamp); they are not written into the value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<usize, String>,
}

/// `CREATE MODEL`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelDecl {
    pub name: String,
    pub inputs: Schema,
    pub outputs: Schema,
    pub options: BTreeMap<String, String>,
    /// The model file, resolved against the pipeline file's directory.
    pub path: String,
    /// What the `OUTPUT` columns receive: raw scores (`'lightgbm.output' = 'raw'`) or the
    /// objective's transform (probabilities for classifiers; the default).
    pub raw_scores: bool,
}

impl ModelDecl {
    /// The name of the column [`Operator::Predict`] appends with the model's version.
    pub fn version_column(&self) -> String {
        format!("{}_version", self.name)
    }

    /// The `INPUT` columns as a message shows them: `amount DOUBLE, cnt_1h BIGINT`.
    pub fn input_list(&self) -> String {
        self.inputs
            .fields
            .iter()
            .map(|f| format!("{} {}", f.name, f.data_type))
            .collect::<Vec<_>>()
            .join(", ")
    }
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
    /// Named values rules read like columns (`PARAMETERS (...)`); the control stream changes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<RuleParameter>,
}

impl RulesetSpec {
    /// The rules with every parameter replaced by its value: what is evaluated.
    pub fn bound_rules(&self) -> Vec<Rule> {
        let mut rules = self.rules.clone();
        for rule in &mut rules {
            let mut stack = vec![&mut rule.condition];
            while let Some(e) = stack.pop() {
                if let ExprKind::Column(c) = e.kind
                    && let Some(p) = self.parameters.iter().find(|p| p.column == c)
                {
                    *e = Expr::literal(p.value.clone(), p.data_type.clone());
                    continue;
                }
                stack.extend(e.children_mut());
            }
        }
        rules
    }
}

/// A ruleset parameter: conditions read it as column `column` (past the input's columns).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleParameter {
    pub name: String,
    pub data_type: DataType,
    pub column: usize,
    pub value: Literal,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{BinaryOp, ExprKind};
    use crate::types::{DataType, Field};

    fn column(i: usize) -> Expr {
        Expr::column(i, DataType::BigInt, true)
    }

    fn node(id: u32, inputs: &[u32], fields: usize, op: Operator) -> Node {
        let schema = (0..fields)
            .map(|i| Field::new(format!("c{i}"), DataType::BigInt, true))
            .collect();
        Node {
            id: NodeId(id),
            name: format!("n{id}"),
            inputs: inputs.iter().map(|&i| NodeId(i)).collect(),
            schema: Schema::new(schema),
            event_time: None,
            op,
        }
    }

    fn calc(filter: Option<Expr>, projections: Vec<Expr>) -> Operator {
        Operator::Calc {
            filter,
            projections,
        }
    }

    /// Physical `p0..p4`; output columns `p0, p1, p2, p3 + p4`, the watermark on `p1`.
    fn source() -> Operator {
        let physical = (0..5)
            .map(|i| Field::new(format!("p{i}"), DataType::BigInt, true))
            .collect();
        let sum = Expr {
            kind: ExprKind::Binary {
                op: BinaryOp::Plus,
                left: Box::new(column(3)),
                right: Box::new(column(4)),
            },
            data_type: DataType::BigInt,
            nullable: true,
        };
        Operator::Source(SourceSpec {
            table: "t".into(),
            connector: ConnectorSpec {
                connector: "filesystem".into(),
                options: Default::default(),
                base_dir: String::new(),
            },
            physical: Schema::new(physical),
            columns: vec![column(0), column(1), column(2), sum],
            watermark: Some(WatermarkSpec {
                rowtime: 1,
                expr: column(1),
                max_out_of_orderness_ms: Some(0),
            }),
            metadata: Default::default(),
        })
    }

    #[test]
    fn a_source_read_by_calcs_reads_their_columns_its_computed_columns_and_its_watermark() {
        let mut p = Pipeline {
            nodes: vec![
                node(0, &[], 4, source()),
                node(1, &[0], 1, calc(None, vec![column(0)])),
                node(2, &[0], 4, calc(Some(column(3)), vec![])),
            ],
            ..Pipeline::default()
        };
        // p0 by a projection, p1 by the watermark, p3 and p4 through the computed column a
        // filter reads; nothing reads p2.
        assert_eq!(
            p.source_columns_read(NodeId(0)),
            Some(vec![true, true, false, true, true])
        );
        // Not a source.
        assert_eq!(p.source_columns_read(NodeId(1)), None);
        // Any other consumer may read every column.
        p.nodes.push(node(3, &[0], 4, Operator::Union));
        assert_eq!(p.source_columns_read(NodeId(0)), None);
    }
}
