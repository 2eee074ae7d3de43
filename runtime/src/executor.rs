//! Runs a whole [`Pipeline`] in one thread.
//!
//! Sources are polled in turn; each batch is pushed depth-first through the DAG (nodes are in
//! topological order; a node with several consumers hands each the same batch, a cheap clone).
//! Watermarks: a source's watermark is the maximum so far of its `WATERMARK FOR` expression over
//! its rows, emitted after the batch; a node's watermark is the minimum over its inputs, forwarded
//! only when it advances. A bounded source ends with a final watermark of `i64::MAX` (every window
//! flushes), and a node's `on_end` runs once all its inputs ended. [`run`] returns when every source
//! is exhausted or when the stop flag is set.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch, RecordBatchOptions};
use arrow::datatypes::{DataType as ArrowType, Int64Type, SchemaRef};
use fsql_plan::{
    Expr, ExprKind, LATE_DATA_SINK, NodeId, Operator as PlanOp, Pipeline, SourceSpec, WatermarkSpec,
};

use crate::batcher::BatchConfig;
use crate::checkpoint::CheckpointConfig;
use crate::control::{ControlChannel, ControlMessage};
use crate::error::RuntimeError;
use crate::eval::evaluate;
use crate::kafka::transaction::Transactions;
use crate::late_data::{LATE_DATA_PATH, LateData};
use crate::metrics::{Metrics, NodeMetrics, Progress};
use crate::operator::{Event, Operator, RowKind, conform_batch};
use crate::operators::predict::LoadedModel;
use crate::operators::{
    Calc, GroupAggregate, Join, MatchRecognize, Over, Passthrough, Predict, Rank, Ruleset,
    SinkOperator, TemporalJoin, WindowAggregate, WindowAssign, WindowRank,
};
use crate::sink::{PrintTarget, open_sink};
use crate::source::split_watermarks::SplitWatermarks;
use crate::source::test_input::{TestInput, TestSource};
use crate::source::{
    MalformedRecord, OpenOptions, Source, SourceContext, SourcePoll, open_source, runtime_schema,
};
use crate::state::StateBackend;
use crate::text::units_per_second;

use self::checkpointing::Checkpointing;

/// A callback receiving each malformed input record.
pub type MalformedReporter = Box<dyn FnMut(&MalformedRecord)>;

/// A callback observing every event a node emits.
pub type EventTrace = Box<dyn FnMut(NodeId, &Event)>;

/// Live progress: `report` receives the run's counters every `interval` (from the executor's
/// thread, between batches).
pub struct ProgressOptions {
    pub interval: Duration,
    pub report: Box<dyn FnMut(&Progress)>,
}

/// `SET 'state.ttl'` (or Flink's `'table.exec.state.ttl'`) in milliseconds; `None` or 0 = keep forever.
fn state_ttl_ms(settings: &BTreeMap<String, String>) -> Result<Option<i64>, RuntimeError> {
    let Some(text) = settings
        .get("state.ttl")
        .or_else(|| settings.get("table.exec.state.ttl"))
    else {
        return Ok(None);
    };
    let ttl =
        crate::parse_duration(text).map_err(|e| RuntimeError::Plan(format!("state.ttl: {e}")))?;
    let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    Ok((ms > 0).then_some(ms))
}

/// Whether expressions run compiled: `SET 'jit.enabled'`, on by default.
pub fn jit_enabled(settings: &BTreeMap<String, String>) -> bool {
    settings
        .get("jit.enabled")
        .is_none_or(|v| !v.eq_ignore_ascii_case("false"))
}

/// A source's idle timeout: its `'scan.watermark.idle-timeout'`, else
/// `SET 'table.exec.source.idle-timeout'`; `None` (never idle) by default, as in Flink.
fn idle_timeout(
    settings: &BTreeMap<String, String>,
    spec: &SourceSpec,
) -> Result<Option<Duration>, RuntimeError> {
    let (key, text) = match spec.connector.options.get("scan.watermark.idle-timeout") {
        Some(t) => ("scan.watermark.idle-timeout", t),
        None => match settings.get("table.exec.source.idle-timeout") {
            Some(t) => ("table.exec.source.idle-timeout", t),
            None => return Ok(None),
        },
    };
    let d = crate::parse_duration(text).map_err(|e| RuntimeError::option(&spec.table, key, e))?;
    Ok((!d.is_zero()).then_some(d))
}

/// How to run a pipeline.
#[derive(Default)]
pub struct RunOptions {
    /// Replaces a source's connector with these items (used by `fsql test`): table name → items in
    /// order. See [`TestInput`] for the accepted batch shapes.
    pub inputs: BTreeMap<String, Vec<TestInput>>,
    /// Nodes whose output batches are handed to the collector, besides `Collect` nodes.
    pub taps: Vec<NodeId>,
    /// Set to stop an unbounded run (e.g. on Ctrl-C); checked between batches.
    pub stop: Option<Arc<AtomicBool>>,
    /// Ignore `'rows-per-second'` throttling: run generators as fast as possible.
    pub unthrottled: bool,
    /// Where `print` sinks write (stdout by default); tests pass a [`crate::SharedBuffer`].
    pub print_output: Option<Box<dyn Write>>,
    /// Called for each malformed input record (the CLI prints `path:line: error` on stderr);
    /// records are counted in the summary either way.
    pub on_malformed: Option<MalformedReporter>,
    /// Observes every event a node emits, watermarks included (tests, debugging).
    pub trace: Option<EventTrace>,
    /// Hand what sinks receive to the collector instead of opening their connectors (`fsql test`
    /// never writes files or topics).
    pub capture_sinks: bool,
    /// Interpret every expression (`fsql run --no-jit`), whatever `SET 'jit.enabled'` says.
    pub no_jit: bool,
    /// The control stream: updates applied between batches, each acknowledged.
    pub control: Option<ControlChannel>,
    /// Live progress reports.
    pub progress: Option<ProgressOptions>,
    /// Restoring a checkpoint: start a node whose state cannot be restored (it was removed or
    /// changed) empty instead of refusing to run (Flink's `--allowNonRestoredState`).
    pub allow_non_restored_state: bool,
}

impl fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunOptions")
            .field("inputs", &self.inputs.keys().collect::<Vec<_>>())
            .field("taps", &self.taps)
            .field("stop", &self.stop)
            .field("unthrottled", &self.unthrottled)
            .field("print_output", &self.print_output.is_some())
            .field("on_malformed", &self.on_malformed.is_some())
            .field("trace", &self.trace.is_some())
            .field("capture_sinks", &self.capture_sinks)
            .field("no_jit", &self.no_jit)
            .field("control", &self.control.is_some())
            .field("progress", &self.progress.as_ref().map(|p| p.interval))
            .finish()
    }
}

/// Rows read by one source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceSummary {
    /// The source table.
    pub table: String,
    /// Rows decoded and emitted.
    pub rows: u64,
    /// Records that could not be decoded (reported and dead-lettered, not emitted).
    pub malformed: u64,
}

/// Rows written by one sink or handed out by one `Collect` node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkSummary {
    /// The sink table, or the node name of a query result.
    pub table: String,
    /// `print`, `blackhole`, `filesystem`..., or `query` for a `Collect` node.
    pub connector: String,
    /// Rows written.
    pub rows: u64,
}

/// What a run did.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    /// One entry per source node, in plan order.
    pub sources: Vec<SourceSummary>,
    /// One entry per sink and `Collect` node, in plan order.
    pub sinks: Vec<SinkSummary>,
    /// Per-node counters.
    pub metrics: Metrics,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// Whether the run ended because the stop flag was set (not because the input ended).
    pub stopped: bool,
    /// Checkpointing, when it was on.
    pub checkpoints: Option<CheckpointSummary>,
}

/// What a checkpointed run did with its checkpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointSummary {
    /// The checkpoint directory.
    pub dir: String,
    /// Checkpoints this run took (the last one where it ended or was stopped).
    pub taken: u64,
    /// Time the pipeline waited for checkpoints: taking them (operators hand over their state,
    /// sinks flush) and, where it must, waiting for one to be complete.
    pub taking: Duration,
    /// Time from taking each checkpoint to its completion (its files durable), summed: the
    /// files are written while the pipeline goes on.
    pub completing: Duration,
    /// The state bytes of the largest one.
    pub largest_bytes: u64,
    /// The checkpoint the run resumed from, and how long restoring it took.
    pub restored_from: Option<(u64, Duration)>,
}

impl RunSummary {
    /// Rows read by all sources.
    pub fn rows_in(&self) -> u64 {
        self.sources.iter().map(|s| s.rows).sum()
    }

    /// Rows written by all sinks and query results.
    pub fn rows_out(&self) -> u64 {
        self.sinks.iter().map(|s| s.rows).sum()
    }

    /// Malformed records over all sources.
    pub fn malformed(&self) -> u64 {
        self.sources.iter().map(|s| s.malformed).sum()
    }

    /// Late rows dropped over all nodes.
    pub fn late(&self) -> u64 {
        self.metrics.nodes.iter().map(|n| n.late).sum()
    }
}

/// `finished: N rows in, M out, K malformed in 1.234 s` (`..., K malformed, L late in ...` when
/// stateful operators dropped late rows).
impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} rows in, {} out, {} malformed",
            if self.stopped { "stopped" } else { "finished" },
            self.rows_in(),
            self.rows_out(),
            self.malformed(),
        )?;
        let late = self.late();
        if late > 0 {
            write!(f, ", {late} late")?;
        }
        write!(f, " in {:.3} s", self.elapsed.as_secs_f64())
    }
}

/// Receives the batches of `Collect` nodes and taps: the node, its rows and, for an updating
/// node, each row's kind (`None`: all `+I`).
pub type Collector<'c> = dyn FnMut(NodeId, &RecordBatch, Option<&[RowKind]>) + 'c;

/// Runs `pipeline` to completion (bounded sources) or until `options.stop` is set, handing the
/// batches of `Collect` nodes and of `options.taps` to `collector`.
pub fn run(
    pipeline: &Pipeline,
    options: RunOptions,
    collector: &mut Collector<'_>,
) -> Result<RunSummary, RuntimeError> {
    let start = Instant::now();
    let RunOptions {
        inputs,
        taps,
        stop,
        unthrottled,
        print_output,
        on_malformed,
        trace,
        capture_sinks,
        no_jit,
        control,
        progress,
        allow_non_restored_state,
    } = options;
    let print = print_output
        .map(PrintTarget::new)
        .unwrap_or_else(PrintTarget::stdout);
    // Test runs (given inputs, captured sinks) never checkpoint.
    let checkpoint_config = if inputs.is_empty() && !capture_sinks {
        CheckpointConfig::from_settings(&pipeline.settings)?
    } else {
        None
    };
    let restore = match &checkpoint_config {
        Some(config) => checkpointing::to_restore(config, pipeline)?,
        None => None,
    };
    let open = OpenOptions {
        batch: BatchConfig::from_settings(&pipeline.settings)?,
        unthrottled,
        capture_sinks,
        resume: restore
            .as_ref()
            .map(|(_, meta)| checkpointing::resume_positions(meta))
            .unwrap_or_default(),
        columns_read: None,
    };
    // The RocksDB backend's working instance starts from the restored checkpoint's files.
    let rocks_restore = restore.as_ref().and_then(|(path, meta)| {
        meta.rocksdb
            .as_ref()
            .map(|r| (path.join(checkpointing::ROCKSDB_DIR), r))
    });
    let ops = OperatorOptions {
        jit: !no_jit && jit_enabled(&pipeline.settings),
        backend: StateBackend::open(
            &pipeline.settings,
            rocks_restore.as_ref().map(|(p, r)| (p.as_path(), *r)),
        )?,
    };
    let mut exec = Executor::build(pipeline, inputs, &taps, &open, &ops, &print, collector)?;
    exec.trace = trace;
    exec.control = control;
    match checkpoint_config {
        Some(config) => {
            exec.checkpointing = Some(Checkpointing::new(config, pipeline)?);
            exec.check_checkpointable()?;
        }
        None if exec.transactional => {
            return Err(RuntimeError::Checkpoint(
                "an 'exactly-once' Kafka sink commits its output with checkpoints: SET 'execution.checkpointing.interval' and 'execution.checkpointing.dir'"
                    .into(),
            ));
        }
        None => {}
    }
    if let Some((path, meta)) = &restore {
        let started = Instant::now();
        exec.restore(pipeline, path, meta, allow_non_restored_state)?;
        exec.replay_control()?;
        exec.restored_from = Some((meta.id, started.elapsed()));
    }
    exec.progress = progress.map(|p| {
        let due = start + p.interval;
        (p, start, due)
    });
    let mut reporter: MalformedReporter =
        on_malformed.unwrap_or_else(|| Box::new(|_: &MalformedRecord| {}));
    let result = exec.run_loop(stop.as_deref(), reporter.as_mut());
    // A last checkpoint where the run ended or was stopped: a restart resumes exactly there
    // (and a transactional sink commits what the run wrote).
    let result = match result {
        Ok(stopped) => exec.checkpoint().map(|()| stopped),
        Err(e) => {
            exec.abandon_checkpoint();
            Err(e)
        }
    };
    let closed = exec.close();
    let stopped = result?;
    closed?;
    // Sinks flushed on close: commit what the run read (Kafka offsets), durably.
    exec.commit()?;
    Ok(exec.summary(pipeline, start.elapsed(), stopped))
}

/// The late-data sink's rows for `late`, which `operator` received behind the watermark: the
/// operator's name and each row as a JSON object.
fn late_rows(
    operator: &str,
    late: &RecordBatch,
    schema: SchemaRef,
) -> Result<RecordBatch, RuntimeError> {
    let n = late.num_rows();
    let mut rows = arrow::array::StringBuilder::new();
    let mut row = String::new();
    for i in 0..n {
        row.clear();
        crate::format::json_row(late, i, &mut row);
        rows.append_value(&row);
    }
    let rows = rows.finish();
    let operators = arrow::array::StringArray::from(vec![operator; n]);
    RecordBatch::try_new(schema, vec![Arc::new(operators), Arc::new(rows)])
        .map_err(|e| RuntimeError::arrow(operator, e))
}

/// Data and control signals along an edge.
#[derive(Clone, Debug)]
enum Signal {
    Event(Event),
    End,
}

struct NodeRt {
    op: Option<Box<dyn Operator>>,
    input_wms: Vec<i64>,
    wm: i64,
    ended: Vec<bool>,
    done: bool,
    consumers: Vec<(usize, usize)>,
    collect: bool,
    metrics: NodeMetrics,
}

/// A source with its computed columns and watermark generation.
struct SourceDriver {
    node: usize,
    name: String,
    source: Box<dyn Source>,
    /// Output column expressions over the physical batch; `None` when they are the identity.
    columns: Option<Vec<Expr>>,
    physical_width: usize,
    out_schema: SchemaRef,
    watermark: Option<WatermarkSpec>,
    wm: i64,
    ended: bool,
    /// Per-split watermarks, once the source reports splits (Kafka partitions).
    splits: Option<SplitWatermarks>,
    idle_timeout: Option<Duration>,
}

impl SourceDriver {
    fn new(
        node: usize,
        name: &str,
        spec: &SourceSpec,
        source: Box<dyn Source>,
        out_schema: SchemaRef,
        derive_wm: bool,
        idle_timeout: Option<Duration>,
    ) -> Self {
        let identity = spec.columns.len() == spec.physical.fields.len()
            && spec.columns.iter().enumerate().all(|(i, e)| {
                matches!(e.kind, ExprKind::Column(c) if c == i)
                    && Some(&e.data_type) == spec.physical.fields.get(i).map(|f| &f.data_type)
            });
        SourceDriver {
            node,
            name: name.to_string(),
            source,
            columns: (!identity).then(|| spec.columns.clone()),
            physical_width: spec.physical.fields.len(),
            out_schema,
            watermark: if derive_wm {
                spec.watermark.clone()
            } else {
                None
            },
            wm: i64::MIN,
            ended: false,
            splits: None,
            idle_timeout,
        }
    }

    /// Follows the source's split assignment; returns the watermark if it advanced (a split
    /// went away or became idle).
    fn tick(&mut self, now: Instant) -> Option<Event> {
        self.watermark.as_ref()?;
        self.sync_splits(now);
        let w = self.splits.as_ref()?.current(now)?;
        (w > self.wm).then(|| {
            self.wm = w;
            Event::Watermark(w)
        })
    }

    /// Follows the source's split assignment (an assigned split without rows holds the
    /// watermark back).
    fn sync_splits(&mut self, now: Instant) {
        if let Some(assigned) = self.source.splits() {
            let idle = self.idle_timeout;
            self.splits
                .get_or_insert_with(|| SplitWatermarks::new(idle))
                .assign(assigned, now);
        }
    }

    /// When a split becomes idle, if nothing arrives before.
    fn next_idle_at(&self, now: Instant) -> Option<Instant> {
        self.splits.as_ref()?.next_idle_at(now)
    }

    /// Turns a physical batch into output events (the batch, then a watermark if it advanced).
    /// `splits` gives each row's split for per-split watermarks.
    fn on_batch(
        &mut self,
        batch: RecordBatch,
        splits: Option<&[u32]>,
        now: Instant,
    ) -> Result<Vec<Event>, RuntimeError> {
        let mut events = Vec::with_capacity(2);
        if batch.num_rows() == 0 {
            return Ok(events);
        }
        let out = match &self.columns {
            Some(columns) if batch.num_columns() == self.physical_width => {
                let arrays = columns
                    .iter()
                    .map(|c| evaluate(c, &batch))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| RuntimeError::eval(&self.name, e))?;
                let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
                RecordBatch::try_new_with_options(self.out_schema.clone(), arrays, &options)
                    .map_err(|e| RuntimeError::arrow(&self.name, e))?
            }
            _ => conform_batch(&self.name, &batch, &self.out_schema)?,
        };
        if splits.is_some() {
            self.sync_splits(now);
        }
        let wm = match (&self.watermark, splits) {
            (Some(spec), None) => {
                let values =
                    evaluate(&spec.expr, &out).map_err(|e| RuntimeError::eval(&self.name, e))?;
                max_epoch_ms(&values)
            }
            (Some(spec), Some(splits)) => {
                let values =
                    evaluate(&spec.expr, &out).map_err(|e| RuntimeError::eval(&self.name, e))?;
                let idle = self.idle_timeout;
                let tracker = self
                    .splits
                    .get_or_insert_with(|| SplitWatermarks::new(idle));
                for (split, max) in max_epoch_ms_per_split(&values, splits) {
                    tracker.observe(split, max, now);
                }
                tracker.current(now)
            }
            (None, _) => None,
        };
        events.push(Event::Batch(out));
        if let Some(w) = wm
            && w > self.wm
        {
            self.wm = w;
            events.push(Event::Watermark(w));
        }
        Ok(events)
    }
}

/// A timestamp (or integer milliseconds) array as integers, with the conversion of one of them
/// to epoch milliseconds.
fn epoch_values(
    values: &arrow::array::ArrayRef,
) -> Option<(arrow::array::Int64Array, impl Fn(i64) -> i64)> {
    let per_second = match values.data_type() {
        ArrowType::Timestamp(unit, _) => units_per_second(*unit),
        _ => 1000,
    };
    let ints = arrow::compute::cast(values, &ArrowType::Int64).ok()?;
    let to_ms = move |v: i64| {
        if per_second >= 1000 {
            v.div_euclid(per_second / 1000)
        } else {
            v.saturating_mul(1000 / per_second)
        }
    };
    Some((ints.as_primitive::<Int64Type>().clone(), to_ms))
}

/// The largest value of a timestamp (or integer) array in epoch milliseconds, ignoring NULLs.
fn max_epoch_ms(values: &arrow::array::ArrayRef) -> Option<i64> {
    let (ints, to_ms) = epoch_values(values)?;
    arrow::compute::max(&ints).map(to_ms)
}

/// The largest value per split (epoch ms, NULLs ignored): `(split, max)` in order of first row.
fn max_epoch_ms_per_split(
    values: &arrow::array::ArrayRef,
    splits: &[u32],
) -> Vec<(u32, Option<i64>)> {
    let mut out: Vec<(u32, Option<i64>)> = Vec::new();
    let Some((ints, to_ms)) = epoch_values(values) else {
        return out;
    };
    for (row, split) in splits.iter().enumerate() {
        let v = (row < ints.len() && ints.is_valid(row)).then(|| to_ms(ints.value(row)));
        match out.iter_mut().find(|(s, _)| s == split) {
            Some((_, max)) => *max = (*max).max(v),
            None => out.push((*split, v)),
        }
    }
    out
}

fn kind_of(op: &PlanOp) -> &'static str {
    match op {
        PlanOp::Source(_) => "source",
        PlanOp::Calc { .. } => "calc",
        PlanOp::Union => "union",
        PlanOp::Ruleset(_) => "ruleset",
        PlanOp::Sink(_) => "sink",
        PlanOp::Collect => "collect",
        PlanOp::Over(_) => "over",
        PlanOp::WindowAssign(_) => "window",
        PlanOp::WindowAggregate(_) => "window-aggregate",
        PlanOp::GroupAggregate(_) => "group-aggregate",
        PlanOp::Join(_) => "join",
        PlanOp::WindowRank(_) => "window-rank",
        PlanOp::Rank(_) => "rank",
        PlanOp::TemporalJoin(_) => "temporal-join",
        PlanOp::MatchRecognize(_) => "match-recognize",
        PlanOp::Predict(_) => "predict",
    }
}

struct Executor<'c> {
    nodes: Vec<NodeRt>,
    sources: Vec<SourceDriver>,
    collector: &'c mut Collector<'c>,
    trace: Option<EventTrace>,
    /// Where late rows go (`pipeline.late-data.path`); counted in metrics either way.
    late_data: Option<LateData>,
    /// The sink node receiving late rows (`pipeline.late-data.sink`), and its schema.
    late_sink: Option<(usize, SchemaRef)>,
    control: Option<ControlChannel>,
    /// Live progress: the reporter, when the run started and when a report is next due.
    progress: Option<(ProgressOptions, Instant, Instant)>,
    /// A periodic commit waits for the sinks' output to be durable.
    commit_pending: bool,
    /// Checkpoints, when `execution.checkpointing.interval` is set.
    checkpointing: Option<Checkpointing>,
    /// Whether a sink writes in a Kafka transaction (committed with checkpoints).
    transactional: bool,
    /// Control messages handled so far (applied or rejected), and how many a restored
    /// checkpoint had handled (replayed before the first row).
    control_applied: u64,
    control_to_replay: u64,
    /// The checkpoint this run resumed from, and how long restoring it took.
    restored_from: Option<(u64, Duration)>,
    /// Where keyed state lives (its RocksDB instance is checkpointed with the operators).
    backend: StateBackend,
}

/// How the executor builds operators.
struct OperatorOptions {
    /// Expressions run compiled.
    jit: bool,
    /// One state backend per run: with RocksDB, one working instance every operator's keyed
    /// state shares (removed when the run's operators are dropped).
    backend: StateBackend,
}

impl<'c> Executor<'c> {
    fn build(
        pipeline: &Pipeline,
        mut inputs: BTreeMap<String, Vec<TestInput>>,
        taps: &[NodeId],
        open: &OpenOptions,
        ops: &OperatorOptions,
        print: &PrintTarget,
        collector: &'c mut Collector<'c>,
    ) -> Result<Self, RuntimeError> {
        let n = pipeline.nodes.len();
        for t in taps {
            if t.0 as usize >= n {
                return Err(RuntimeError::Plan(format!(
                    "tap on node {} but the plan has {n} nodes",
                    t.0
                )));
            }
        }
        let known: Vec<&str> = pipeline
            .nodes
            .iter()
            .filter_map(|n| match &n.op {
                PlanOp::Source(s) => Some(s.table.as_str()),
                _ => None,
            })
            .collect();
        if let Some(table) = inputs
            .keys()
            .find(|k| !known.iter().any(|t| t.eq_ignore_ascii_case(k)))
        {
            return Err(RuntimeError::TestInput {
                table: table.clone(),
                message: format!(
                    "the pipeline reads no such table (its sources: {})",
                    known.join(", ")
                ),
            });
        }
        let mut nodes = Vec::with_capacity(n);
        let mut sources = Vec::new();
        let mut transactions = Transactions::default();
        let mut consumers: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
        for (i, node) in pipeline.nodes.iter().enumerate() {
            if node.id.0 as usize != i {
                return Err(RuntimeError::Plan(format!(
                    "node `{}` has id {} at position {i}",
                    node.name, node.id.0
                )));
            }
            for (slot, input) in node.inputs.iter().enumerate() {
                let j = input.0 as usize;
                if j >= i {
                    return Err(RuntimeError::Plan(format!(
                        "node `{}` reads node {j}, which does not come before it",
                        node.name
                    )));
                }
                consumers[j].push((i, slot));
            }
            // Sources read connectors; the late-data sink is fed by the executor.
            let needs_inputs = match &node.op {
                PlanOp::Source(_) => false,
                PlanOp::Sink(s) => pipeline.settings.get(LATE_DATA_SINK) != Some(&s.table),
                _ => true,
            };
            if needs_inputs == node.inputs.is_empty() {
                return Err(RuntimeError::Plan(format!(
                    "node `{}` ({}) has {} inputs",
                    node.name,
                    kind_of(&node.op),
                    node.inputs.len()
                )));
            }
        }
        let (jit, backend) = (ops.jit, &ops.backend);
        let modes = fsql_plan::changelog::modes(&pipeline.nodes);
        for (i, node) in pipeline.nodes.iter().enumerate() {
            let schema = runtime_schema(&node.schema);
            // The runtime schema of the node's `k`-th input.
            let input = |k: usize| {
                node.inputs
                    .get(k)
                    .and_then(|i| pipeline.node(*i))
                    .map(|n| runtime_schema(&n.schema))
                    .ok_or_else(|| {
                        RuntimeError::Plan(format!("node `{}` lacks input {k}", node.name))
                    })
            };
            let op: Option<Box<dyn Operator>> = match &node.op {
                PlanOp::Source(spec) => {
                    let key = inputs
                        .keys()
                        .find(|k| **k == spec.table)
                        .or_else(|| inputs.keys().find(|k| k.eq_ignore_ascii_case(&spec.table)))
                        .cloned();
                    let (source, derive_wm): (Box<dyn Source>, bool) =
                        match key.and_then(|k| inputs.remove(&k)) {
                            Some(items) => {
                                let t = TestSource::new(
                                    &spec.table,
                                    items,
                                    runtime_schema(&spec.physical),
                                    schema.clone(),
                                );
                                let derive = !t.has_explicit_watermarks();
                                (Box::new(t), derive)
                            }
                            None => {
                                let open = OpenOptions {
                                    columns_read: pipeline.source_columns_read(node.id),
                                    ..open.clone()
                                };
                                (open_source(spec, &open)?, true)
                            }
                        };
                    sources.push(SourceDriver::new(
                        i,
                        &node.name,
                        spec,
                        source,
                        schema.clone(),
                        derive_wm,
                        idle_timeout(&pipeline.settings, spec)?,
                    ));
                    None
                }
                PlanOp::Calc {
                    filter,
                    projections,
                } => {
                    let calc = Calc::new(
                        &node.name,
                        filter.clone(),
                        projections.clone(),
                        schema.clone(),
                    );
                    Some(Box::new(if jit {
                        calc.compiled(&*input(0)?)
                    } else {
                        calc
                    }))
                }
                PlanOp::Union | PlanOp::Collect => {
                    Some(Box::new(Passthrough::new(&node.name, schema.clone())))
                }
                PlanOp::Ruleset(spec) => {
                    let ruleset = Ruleset::new(&node.name, spec.clone(), schema.clone());
                    Some(Box::new(if jit {
                        ruleset.compiled(&*input(0)?)
                    } else {
                        ruleset
                    }))
                }
                PlanOp::Over(spec) => {
                    let over = Over::new(
                        &node.name,
                        spec,
                        &*input(0)?,
                        schema.clone(),
                        pipeline.emit,
                        state_ttl_ms(&pipeline.settings)?,
                        backend,
                    )?;
                    Some(Box::new(if jit {
                        over.compiled(&*input(0)?)
                    } else {
                        over
                    }))
                }
                PlanOp::WindowAssign(spec) => Some(Box::new(WindowAssign::new(
                    &node.name,
                    spec,
                    schema.clone(),
                    backend,
                )?)),
                PlanOp::GroupAggregate(spec) => {
                    let retracting = node.inputs.iter().any(|i| {
                        modes.get(i.0 as usize)
                            == Some(&fsql_plan::changelog::ChangelogMode::Updating)
                    });
                    let agg = GroupAggregate::new(
                        &node.name,
                        spec,
                        &*input(0)?,
                        schema.clone(),
                        retracting,
                        state_ttl_ms(&pipeline.settings)?,
                        backend,
                    )?;
                    Some(Box::new(if jit { agg.compiled(&*input(0)?) } else { agg }))
                }
                PlanOp::WindowAggregate(spec) => {
                    let window = WindowAggregate::new(
                        &node.name,
                        spec,
                        &*input(0)?,
                        schema.clone(),
                        backend,
                    )?;
                    Some(Box::new(if jit {
                        window.compiled(&*input(0)?)
                    } else {
                        window
                    }))
                }
                PlanOp::Rank(spec) => Some(Box::new(Rank::new(
                    &node.name,
                    spec,
                    schema.clone(),
                    backend,
                )?)),
                PlanOp::WindowRank(spec) => Some(Box::new(WindowRank::new(
                    &node.name,
                    spec,
                    schema.clone(),
                    backend,
                )?)),
                PlanOp::MatchRecognize(spec) => Some(Box::new(MatchRecognize::new(
                    &node.name,
                    spec,
                    &*input(0)?,
                    schema.clone(),
                    pipeline.emit,
                    jit,
                    state_ttl_ms(&pipeline.settings)?,
                )?)),
                PlanOp::Predict(spec) => {
                    let decl = pipeline
                        .models
                        .iter()
                        .find(|m| m.name == spec.model)
                        .ok_or_else(|| {
                            RuntimeError::Plan(format!(
                                "node `{}` scores model `{}`, which the plan does not declare",
                                node.name, spec.model
                            ))
                        })?;
                    let model = LoadedModel::load(decl, jit)?;
                    Some(Box::new(Predict::new(
                        &node.name,
                        spec,
                        decl,
                        model,
                        schema.clone(),
                    )))
                }
                PlanOp::TemporalJoin(spec) => {
                    let join = TemporalJoin::new(
                        &node.name,
                        spec,
                        input(0)?,
                        input(1)?,
                        schema.clone(),
                        backend,
                    )?;
                    Some(Box::new(if jit { join.compiled() } else { join }))
                }
                PlanOp::Join(spec) => {
                    let join = Join::new(
                        &node.name,
                        spec,
                        input(0)?,
                        input(1)?,
                        schema.clone(),
                        backend,
                    )?;
                    Some(Box::new(if jit { join.compiled() } else { join }))
                }
                PlanOp::Sink(_) if open.capture_sinks => {
                    Some(Box::new(Passthrough::new(&node.name, schema.clone())))
                }
                PlanOp::Sink(spec) => {
                    let sink = open_sink(spec, &schema, print, &mut transactions)?;
                    Some(Box::new(SinkOperator::new(
                        &node.name,
                        schema.clone(),
                        sink,
                    )))
                }
            };
            nodes.push(NodeRt {
                op,
                input_wms: vec![i64::MIN; node.inputs.len()],
                wm: i64::MIN,
                ended: vec![false; node.inputs.len()],
                done: false,
                consumers: Vec::new(),
                collect: matches!(node.op, PlanOp::Collect)
                    || (open.capture_sinks && matches!(node.op, PlanOp::Sink(_)))
                    || taps.contains(&node.id),
                metrics: NodeMetrics {
                    id: node.id.0,
                    name: node.name.clone(),
                    kind: kind_of(&node.op),
                    ..NodeMetrics::default()
                },
            });
        }
        for (node, c) in nodes.iter_mut().zip(consumers) {
            node.consumers = c;
        }
        let late_data = pipeline
            .settings
            .get(LATE_DATA_PATH)
            .map(|p| LateData::new(std::path::PathBuf::from(p)));
        let late_sink = match pipeline.settings.get(LATE_DATA_SINK) {
            None => None,
            Some(table) => {
                let node = pipeline.nodes.iter().find(|n| {
                    n.inputs.is_empty() && matches!(&n.op, PlanOp::Sink(s) if &s.table == table)
                });
                let Some(node) = node else {
                    return Err(RuntimeError::Plan(format!(
                        "the late-data sink `{table}` has no sink node"
                    )));
                };
                Some((node.id.0 as usize, runtime_schema(&node.schema)))
            }
        };
        Ok(Executor {
            nodes,
            sources,
            collector,
            trace: None,
            late_data,
            late_sink,
            control: None,
            progress: None,
            commit_pending: false,
            checkpointing: None,
            transactional: !transactions.is_empty(),
            control_applied: 0,
            control_to_replay: 0,
            restored_from: None,
            backend: backend.clone(),
        })
    }

    /// Applies the control updates that arrived, in order, and acknowledges each (rejections
    /// included). Called between batches only: a batch is decided by one version throughout.
    fn apply_control(&mut self) -> Result<(), RuntimeError> {
        while let Some(message) = self
            .control
            .as_ref()
            .and_then(|c| c.messages.try_recv().ok())
        {
            self.apply_control_message(message)?;
        }
        Ok(())
    }

    /// Sleeps until `until`, or less when a control update arrives meanwhile: an idle pipeline
    /// applies it at once rather than at its next poll.
    fn idle_until(&mut self, until: Instant) -> Result<(), RuntimeError> {
        let now = Instant::now();
        if until <= now {
            return Ok(());
        }
        let Some(control) = &self.control else {
            std::thread::sleep(until - now);
            return Ok(());
        };
        match control.messages.recv_timeout(until - now) {
            Ok(message) => self.apply_control_message(message),
            // The reader ended (its errors arrive as messages first): sleep as without one.
            Err(RecvTimeoutError::Disconnected) => {
                std::thread::sleep(until.saturating_duration_since(Instant::now()));
                Ok(())
            }
            Err(RecvTimeoutError::Timeout) => Ok(()),
        }
    }

    /// Hands the counters to the progress reporter when a report is due.
    fn report_progress(&mut self, now: Instant) {
        let Some((options, start, due)) = &mut self.progress else {
            return;
        };
        if now < *due {
            return;
        }
        let (mut rows_in, mut rows_out, mut malformed, mut late) = (0, 0, 0, 0);
        for node in &self.nodes {
            let m = &node.metrics;
            match m.kind {
                "source" => rows_in += m.rows_out,
                "sink" | "collect" => rows_out += m.rows_in,
                _ => {}
            }
            malformed += m.malformed;
            late += node.op.as_ref().map_or(0, |op| op.late_rows());
        }
        let watermark = self
            .sources
            .iter()
            .filter(|s| s.watermark.is_some())
            .map(|s| s.wm)
            .min()
            .filter(|&w| w > i64::MIN);
        let lags: Vec<u64> = self.sources.iter().filter_map(|s| s.source.lag()).collect();
        let progress = Progress {
            elapsed: now.duration_since(*start),
            rows_in,
            rows_out,
            malformed,
            late,
            watermark,
            lag: (!lags.is_empty()).then(|| lags.iter().sum()),
        };
        (options.report)(&progress);
        *due = now + options.interval;
    }

    fn apply_control_message(&mut self, message: ControlMessage) -> Result<(), RuntimeError> {
        let outcome = match message.outcome {
            Err(reason) => Err(reason),
            Ok(mut update) => {
                let mut applied = 0;
                for node in &mut self.nodes {
                    if let Some(op) = &mut node.op
                        && op.update(&mut update)?
                    {
                        applied += 1;
                    }
                }
                if applied == 0 {
                    Err(format!(
                        "no operator of this plan runs `{}`",
                        update.target()
                    ))
                } else {
                    Ok(message.read_at.elapsed().as_micros())
                }
            }
        };
        self.control_applied += 1;
        if let Some(control) = &mut self.control {
            control.acks.write(
                &message.header,
                outcome.as_ref().map(|m| *m).map_err(String::as_str),
            )?;
        }
        Ok(())
    }

    /// Polls sources until all ended (`Ok(false)`) or the stop flag is set (`Ok(true)`).
    fn run_loop(
        &mut self,
        stop: Option<&AtomicBool>,
        reporter: &mut dyn FnMut(&MalformedRecord),
    ) -> Result<bool, RuntimeError> {
        loop {
            if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                return Ok(true);
            }
            self.apply_control()?;
            self.report_progress(Instant::now());
            if self.sources.iter().all(|s| s.ended) {
                return Ok(false);
            }
            let mut progressed = false;
            let mut wake: Option<Instant> = None;
            for k in 0..self.sources.len() {
                if self.sources[k].ended {
                    continue;
                }
                // Updates read meanwhile take effect before the next batch enters.
                self.apply_control()?;
                let now = Instant::now();
                let mut ctx = SourceContext::new(now, reporter);
                let poll = self.sources[k].source.poll(&mut ctx)?;
                let node = self.sources[k].node;
                self.nodes[node].metrics.malformed += ctx.malformed_count();
                match poll {
                    SourcePoll::Batch(batch) => {
                        progressed = true;
                        let events = self.sources[k].on_batch(batch, None, now)?;
                        self.emit(node, events)?;
                    }
                    SourcePoll::SplitBatch { batch, splits } => {
                        progressed = true;
                        let events = self.sources[k].on_batch(batch, Some(&splits), now)?;
                        self.emit(node, events)?;
                    }
                    SourcePoll::Watermark(w) => {
                        progressed = true;
                        if w > self.sources[k].wm {
                            self.sources[k].wm = w;
                            self.emit(node, vec![Event::Watermark(w)])?;
                        }
                    }
                    SourcePoll::Pending(at) => {
                        let at = at.unwrap_or(now + Duration::from_millis(1));
                        wake = Some(wake.map_or(at, |w| w.min(at)));
                    }
                    SourcePoll::End => {
                        progressed = true;
                        self.sources[k].ended = true;
                        self.sources[k].splits = None;
                        if self.sources[k].wm < i64::MAX {
                            self.sources[k].wm = i64::MAX;
                            self.emit(node, vec![Event::Watermark(i64::MAX)])?;
                        }
                        self.deliver(node, &Signal::End)?;
                    }
                }
                if !self.sources[k].ended {
                    if let Some(event) = self.sources[k].tick(now) {
                        self.emit(node, vec![event])?;
                    }
                    if let Some(at) = self.sources[k].next_idle_at(now) {
                        wake = Some(wake.map_or(at, |w| w.min(at)));
                    }
                }
                if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                    return Ok(true);
                }
            }
            let now = Instant::now();
            self.checkpoint_tick(now)?;
            if self.commit_pending {
                self.finish_commit()?;
            } else if self.sources.iter().any(|s| s.source.commit_due(now)) {
                self.begin_commit()?;
            }
            if !progressed {
                let now = Instant::now();
                let mut until = wake
                    .unwrap_or(now + Duration::from_millis(1))
                    .min(now + Duration::from_millis(10));
                if let Some((_, _, due)) = &self.progress {
                    until = until.min(*due);
                }
                self.idle_until(until)?;
            }
        }
    }

    /// Hands a node's output events to the collector (if it collects) and its consumers.
    fn emit(&mut self, node: usize, events: Vec<Event>) -> Result<(), RuntimeError> {
        for event in events {
            if let Some(trace) = self.trace.as_mut() {
                trace(NodeId(node as u32), &event);
            }
            match &event {
                Event::Batch(b) => {
                    let m = &mut self.nodes[node].metrics;
                    m.rows_out += b.num_rows() as u64;
                    m.batches_out += 1;
                    if self.nodes[node].collect {
                        (self.collector)(NodeId(node as u32), b, None);
                    }
                }
                Event::Changes(c) => {
                    let m = &mut self.nodes[node].metrics;
                    m.rows_out += c.batch.num_rows() as u64;
                    m.batches_out += 1;
                    if self.nodes[node].collect {
                        (self.collector)(NodeId(node as u32), &c.batch, Some(&c.kinds));
                    }
                }
                Event::Watermark(w) => self.nodes[node].metrics.watermark = Some(*w),
            }
            self.deliver(node, &Signal::Event(event))?;
        }
        Ok(())
    }

    fn deliver(&mut self, from: usize, signal: &Signal) -> Result<(), RuntimeError> {
        for k in 0..self.nodes[from].consumers.len() {
            let (to, slot) = self.nodes[from].consumers[k];
            self.handle(to, slot, signal.clone())?;
        }
        Ok(())
    }

    fn handle(&mut self, n: usize, slot: usize, signal: Signal) -> Result<(), RuntimeError> {
        let mut out = Vec::new();
        let node = &mut self.nodes[n];
        let Some(op) = node.op.as_mut() else {
            return Ok(());
        };
        match signal {
            Signal::Event(Event::Batch(batch)) => {
                node.metrics.rows_in += batch.num_rows() as u64;
                node.metrics.batches_in += 1;
                op.on_batch(slot, batch, &mut out)?;
                let mut to_sink = None;
                if let Some(late) = op.take_late() {
                    if let Some(late_data) = self.late_data.as_mut() {
                        late_data.write(&node.metrics.name, &late)?;
                    }
                    if let Some((sink, schema)) = &self.late_sink {
                        to_sink =
                            Some((*sink, late_rows(&node.metrics.name, &late, schema.clone())?));
                    }
                }
                self.emit(n, out)?;
                match to_sink {
                    Some((sink, rows)) => self.handle(sink, 0, Signal::Event(Event::Batch(rows))),
                    None => Ok(()),
                }
            }
            Signal::Event(Event::Changes(changes)) => {
                node.metrics.rows_in += changes.batch.num_rows() as u64;
                node.metrics.batches_in += 1;
                op.on_changes(slot, changes, &mut out)?;
                self.emit(n, out)
            }
            Signal::Event(Event::Watermark(w)) => {
                if w > node.input_wms[slot] {
                    node.input_wms[slot] = w;
                }
                let min = node.input_wms.iter().copied().min().unwrap_or(w);
                if min > node.wm {
                    node.wm = min;
                    op.on_watermark(min, &mut out)?;
                    self.emit(n, out)?;
                }
                Ok(())
            }
            Signal::End => {
                if !node.ended[slot] {
                    node.ended[slot] = true;
                    op.on_input_end(slot, &mut out)?;
                }
                if node.done || !node.ended.iter().all(|e| *e) {
                    return self.emit(n, out);
                }
                node.done = true;
                op.on_end(&mut out)?;
                self.emit(n, out)?;
                self.deliver(n, &Signal::End)
            }
        }
    }

    /// The operators of the graph (sources have none).
    fn operators(&mut self) -> impl Iterator<Item = &mut Box<dyn Operator>> {
        self.nodes.iter_mut().filter_map(|n| n.op.as_mut())
    }

    /// Flushes every sink and commits the sources' positions, waiting for both: the run's last
    /// commit (everything emitted so far has been processed: batches are pushed through the
    /// whole graph before the next poll).
    fn commit(&mut self) -> Result<(), RuntimeError> {
        for op in self.operators() {
            op.flush()?;
        }
        for source in &mut self.sources {
            source.source.mark();
            source.source.commit(true)?;
        }
        self.commit_pending = false;
        Ok(())
    }

    /// A periodic commit, which never stops the pipeline: sinks start flushing, sources mark
    /// their positions, and the positions are committed (in the background) once the sinks
    /// say the output is durable — now, or at a later [`Executor::finish_commit`].
    fn begin_commit(&mut self) -> Result<(), RuntimeError> {
        let mut durable = true;
        for op in self.operators() {
            durable &= op.flush_begin()?;
        }
        for source in &mut self.sources {
            source.source.mark();
        }
        self.commit_pending = true;
        if durable {
            self.finish_commit()?;
        }
        Ok(())
    }

    /// Commits the marked positions if every sink's output up to the mark is durable.
    fn finish_commit(&mut self) -> Result<(), RuntimeError> {
        let mut durable = true;
        for op in self.operators() {
            durable &= op.flushed()?;
        }
        if durable {
            for source in &mut self.sources {
                source.source.commit(false)?;
            }
            self.commit_pending = false;
        }
        Ok(())
    }

    /// Closes every operator; returns the first error after trying all.
    fn close(&mut self) -> Result<(), RuntimeError> {
        let mut first = None;
        for op in self.operators() {
            if let Err(e) = op.close() {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn summary(&self, pipeline: &Pipeline, elapsed: Duration, stopped: bool) -> RunSummary {
        let mut sources = Vec::new();
        let mut sinks = Vec::new();
        for (node, rt) in pipeline.nodes.iter().zip(&self.nodes) {
            match &node.op {
                PlanOp::Source(spec) => sources.push(SourceSummary {
                    table: spec.table.clone(),
                    rows: rt.metrics.rows_out,
                    malformed: rt.metrics.malformed,
                }),
                PlanOp::Sink(spec) => sinks.push(SinkSummary {
                    table: spec.table.clone(),
                    connector: spec.connector.connector.clone(),
                    rows: rt.metrics.rows_in,
                }),
                PlanOp::Collect => sinks.push(SinkSummary {
                    table: node.name.clone(),
                    connector: "query".to_string(),
                    rows: rt.metrics.rows_in,
                }),
                _ => {}
            }
        }
        RunSummary {
            sources,
            sinks,
            metrics: Metrics {
                nodes: self
                    .nodes
                    .iter()
                    .map(|n| {
                        let mut m = n.metrics.clone();
                        if let Some(op) = &n.op {
                            m.late = op.late_rows();
                        }
                        m
                    })
                    .collect(),
            },
            elapsed,
            stopped,
            checkpoints: self.checkpointing.as_ref().map(|c| CheckpointSummary {
                dir: c.dir().display().to_string(),
                taken: c.taken,
                taking: c.taking,
                completing: c.completing,
                largest_bytes: c.largest_bytes,
                restored_from: self.restored_from,
            }),
        }
    }
}

mod checkpointing;
#[cfg(test)]
mod tests;
