//! `MATCH_RECOGNIZE`: per partition, rows in event-time order run through the pattern's Pike VM
//! ([`matcher`]); each final match becomes one output row of the partition columns and the
//! measures (`ONE ROW PER MATCH`), or one row per matched row (`ALL ROWS PER MATCH`, measures
//! RUNNING up to that row unless FINAL).
//!
//! * **Order.** In watermark order rows wait until the watermark passes them and are then fed
//!   sorted by (event time, arrival), as Flink does; rows behind the watermark go to the late-data
//!   output. In arrival order they are fed as they come.
//! * **Conditions** are evaluated over *evaluation rows* — the candidate row's columns, then the
//!   navigations ([`Navigation`]) computed for that candidate and thread. A condition that reads
//!   the row alone runs once per input batch; the others run once per *wave* — consecutive rows
//!   of distinct partitions, fed first and advanced after —, all candidates of a variable in one
//!   batch, by a JIT kernel (the interpreter with the JIT off). As in
//!   Flink, navigation only sees the rows of the match attempt: `PREV` of an attempt's first row
//!   is NULL, and aggregates include the row being classified.
//! * **WITHIN**: an attempt may take a row only if the row is less than the bound after the
//!   attempt's first row; once the watermark shows no such row can come, its pending match is
//!   final. With `EMIT TIMEOUTS`, an attempt that ends so without a match is output as a partial
//!   match (`TIMED_OUT()`, `EXPECTED()`).
//! * **Rows** are stored once per partition, from the oldest one a live attempt refers to; with
//!   `WITH UNMATCHED ROWS`, a row no match took is output when it is dropped.
//! * **Checkpoints** ([`snapshot`]) hold the partitions — matchers, stored rows, deadlines —, the
//!   rows waiting for the watermark and the counters, so a restored node continues exactly where
//!   the checkpointed one was.

mod matcher;
mod program;
mod snapshot;

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, RecordBatchOptions,
    StringArray, new_null_array,
};
use arrow::compute::kernels::interleave::interleave;
use arrow::datatypes::{DataType as ArrowType, Field, Float64Type, Int64Type, Schema, SchemaRef};
use fsql_plan::{DataType, EmitMode, MatchAggregate, MatchRecognizeSpec, Navigation};

use fsql_plan::RowsPerMatch;

use self::matcher::{Found, Matcher, Skip, SkipError, steps_of};
use self::program::Inst;
use crate::compiled::{CompiledExprs, ExprGroup};
use crate::error::RuntimeError;
use crate::eval::{evaluate_predicate, timestamp_raw};
use crate::operator::{Event, LateRows, Operator, batch_with_schema};
use crate::operators::agg::key::{FxBuild, KeyBytes, KeyEncoder};
use crate::state::codec::{StateReader, StateWriter};
use crate::state::{KeyedState, StateSnapshot};
use crate::text::units_per_second;

/// A row of an input batch (its columns, then the derived values): the batch is shared by all its
/// rows, so a row costs a pointer and an index wherever it is kept.
#[derive(Clone)]
struct RowRef {
    batch: Arc<RecordBatch>,
    index: usize,
}

impl RowRef {
    /// Column `column` of the row, as a one-row array.
    fn cell(&self, column: usize) -> Option<ArrayRef> {
        self.batch
            .columns()
            .get(column)
            .map(|c| c.slice(self.index, 1))
    }
}

/// The position of `r`'s batch in `batches` (for `interleave`), added if it is not there yet.
/// Rows come mostly from the newest batch, so the search starts at the end.
fn batch_slot<'b>(batches: &mut Vec<&'b RecordBatch>, r: &'b RowRef) -> usize {
    match batches
        .iter()
        .rposition(|b| std::ptr::eq(*b, r.batch.as_ref()))
    {
        Some(k) => k,
        None => {
            batches.push(r.batch.as_ref());
            batches.len() - 1
        }
    }
}

/// The columns (`width` of them) of `rows`, in order, gathered from their batches.
fn gather(rows: &[&RowRef], width: usize) -> Result<Vec<ArrayRef>, arrow::error::ArrowError> {
    gather_where(rows, width, |_| None)
}

/// [`gather`] of the columns `dropped` gives no array for (it gives all-NULL arrays, shared
/// between batches, for the columns not kept).
fn gather_where(
    rows: &[&RowRef],
    width: usize,
    mut dropped: impl FnMut(usize) -> Option<ArrayRef>,
) -> Result<Vec<ArrayRef>, arrow::error::ArrowError> {
    let mut batches: Vec<&RecordBatch> = Vec::new();
    let mut indices = Vec::with_capacity(rows.len());
    for r in rows {
        indices.push((batch_slot(&mut batches, r), r.index));
    }
    (0..width)
        .map(|c| match dropped(c) {
            Some(nulls) => Ok(nulls),
            None => {
                let arrays: Vec<&dyn Array> =
                    batches.iter().map(|b| b.column(c).as_ref()).collect();
                interleave(&arrays, &indices)
            }
        })
        .collect()
}

/// With `ONE ROW PER MATCH`, which of the `width` input columns a stored row must keep: the
/// partition and order columns (output, ordering), and every column a condition, navigation or
/// measure reads. `None` with `ALL ROWS PER MATCH` (every column is output).
fn kept_columns(spec: &MatchRecognizeSpec, width: usize) -> Option<Vec<bool>> {
    if spec.rows_per_match.all_rows() {
        return None;
    }
    let mut read: Vec<usize> = spec.partition_by.clone();
    read.push(spec.order_by);
    read.extend(spec.order_then.iter().map(|(c, _)| *c));
    for (nav, _) in &spec.navigations {
        navigation_columns(nav, spec.order_by, &mut read);
    }
    for e in spec
        .defines
        .iter()
        .flatten()
        .chain(spec.measures.iter().map(|m| &m.expr))
    {
        read.extend(e.columns());
    }
    let mut kept = vec![false; width];
    for c in read {
        if let Some(k) = kept.get_mut(c) {
            *k = true;
        }
    }
    Some(kept)
}

/// The stored-row columns navigation `nav` reads (`rowtime`: the time attribute's).
fn navigation_columns(nav: &Navigation, rowtime: usize, out: &mut Vec<usize>) {
    match nav {
        Navigation::Prev { column, .. }
        | Navigation::Next { column, .. }
        | Navigation::First { column, .. }
        | Navigation::Last { column, .. } => out.push(*column),
        Navigation::Aggregate { column, .. } => out.extend(*column),
        Navigation::Shifted { logical, .. } => navigation_columns(logical, rowtime, out),
        Navigation::Final(inner) => navigation_columns(inner, rowtime, out),
        Navigation::MatchRowtime => out.push(rowtime),
        Navigation::Classifier
        | Navigation::ClassifierOf(_)
        | Navigation::MatchNumber
        | Navigation::TimedOut
        | Navigation::Expected => {}
    }
}

/// A row of a partition.
struct Stored {
    row: RowRef,
    /// Event time in milliseconds.
    ts: i64,
    /// Whether a match (or a timed-out partial match) took it.
    in_match: bool,
}

/// One partition: its matcher and the rows its attempts can still refer to.
#[derive(Default)]
struct Partition {
    matcher: Matcher,
    /// Rows from `first` on.
    rows: std::collections::VecDeque<Stored>,
    first: u64,
    /// Whether the partition is in the operator's deadline queue.
    queued: bool,
    /// The event time of the latest row fed (for the state TTL).
    last_ts: i64,
    /// Whether the partition is in the operator's TTL queue.
    ttl_queued: bool,
    /// Tells this partition from an earlier one of its id in the queues ([`Due`]).
    stamp: u32,
    /// Whether a row of the partition is in the operator's wave (fed, not yet stepped).
    in_wave: bool,
}

/// Row `seq` of a partition whose kept rows start at `first`.
fn row_at(rows: &std::collections::VecDeque<Stored>, first: u64, seq: u64) -> Option<&Stored> {
    rows.get(usize::try_from(seq.checked_sub(first)?).ok()?)
}

impl Partition {
    fn row(&self, seq: u64) -> Option<&Stored> {
        row_at(&self.rows, self.first, seq)
    }

    fn row_mut(&mut self, seq: u64) -> Option<&mut Stored> {
        let at = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        self.rows.get_mut(at)
    }

    /// Whether an attempt is open (or a match waits to be final).
    fn is_open(&self) -> bool {
        !self.matcher.is_idle()
    }

    /// When the oldest live attempt can no longer take a row: its first row's time + `within`.
    fn deadline(&self, within: i64) -> Option<i64> {
        self.matcher
            .threads()
            .iter()
            .filter_map(|t| self.row(t.start).map(|r| r.ts.saturating_add(within)))
            .min()
    }
}

/// A row of a match (or of a thread's rows so far) with its classification.
#[derive(Clone)]
struct Classified {
    row: RowRef,
    var: usize,
    /// Inside an exclusion `{- ... -}`: not an output row.
    excluded: bool,
}

/// What an output group is.
#[derive(Clone, Copy)]
enum Kind {
    /// A match, with its `MATCH_NUMBER()`.
    Match(u64),
    /// A partial match `WITHIN` ended, with the variable it waited for.
    TimedOut(Option<usize>),
    /// A row no match took (`WITH UNMATCHED ROWS`).
    Unmatched,
}

/// A queue entry: partition `id` (the one of that `stamp`: an entry outlives a partition dropped
/// meanwhile, whose id another may take) is due at `at` — its oldest attempt expires, or the TTL
/// may end it. 16 bytes, by id rather than key: there is one per partition and queue (millions);
/// the partitions due in one pass are taken in (time, key) order ([`pop_due`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at: i64,
    id: u32,
    stamp: u32,
}

impl Due {
    fn of(at: i64, id: u32, p: &Partition) -> std::cmp::Reverse<Due> {
        std::cmp::Reverse(Due {
            at,
            id,
            stamp: p.stamp,
        })
    }
}

/// A queue of partitions, earliest first.
type DueQueue = std::collections::BinaryHeap<std::cmp::Reverse<Due>>;

/// Takes the entries of `queue` due by `ready(at)` whose partition is still the one queued, in
/// (time, key) order: the order matches and timeouts come out in.
fn pop_due(
    queue: &mut DueQueue,
    partitions: &KeyedState<Partition>,
    ready: impl Fn(i64) -> bool,
) -> Vec<Due> {
    let mut due = Vec::new();
    while let Some(&std::cmp::Reverse(d)) = queue.peek()
        && ready(d.at)
    {
        queue.pop();
        if partitions.get(d.id).is_some_and(|p| p.stamp == d.stamp) {
            due.push(d);
        }
    }
    due.sort_by_key(|d| (d.at, partitions.key(d.id)));
    due
}

/// A row waiting for the watermark (watermark order).
struct Waiting {
    ts: i64,
    /// The results of the conditions that depend on the row alone (see `row_conditions`).
    mask: u64,
    /// The further ORDER BY columns, row-encoded (compared as bytes).
    then: Vec<u8>,
    seq: u64,
    key: KeyBytes,
    row: RowRef,
}

/// The `MATCH_RECOGNIZE` operator.
pub struct MatchRecognize {
    name: String,
    spec: MatchRecognizeSpec,
    program: Vec<Inst>,
    /// `AFTER MATCH SKIP`, a subset's variables resolved.
    skip: Skip,
    schema: SchemaRef,
    emit: EmitMode,
    keys: KeyEncoder,
    /// Encodes the further ORDER BY columns (with `order_then`).
    then: Option<arrow::row::RowConverter>,
    partitions: KeyedState<Partition>,
    /// The partitions with an open attempt or a row in the wave, when idle partitions are kept
    /// (`forget_idle` off): a set much smaller than `partitions`, so that the check a row that
    /// starts nothing needs (is an attempt open in its partition?) stays in cache. When idle
    /// partitions are dropped, `partitions` holds little more than the open ones, and the check
    /// asks it instead.
    active: Option<std::collections::HashSet<KeyBytes, FxBuild>>,
    waiting: Vec<Waiting>,
    arrivals: u64,
    watermark_ms: i64,
    late: LateRows,
    /// Final matches not yet turned into output rows: the partition's rows they use.
    found: Vec<FoundRows>,
    /// Per variable, its condition compiled over evaluation rows (with the JIT on).
    compiled: Vec<Option<CompiledExprs>>,
    /// The MEASURES, over evaluation rows (compiled with the JIT on).
    measures: ExprGroup,
    /// Per variable, whether its condition reads the row alone (no navigation): it is then
    /// evaluated once per input batch, for every row, whatever the attempts.
    row_only: Vec<bool>,
    /// Per variable whose condition navigates, the AND of its conjuncts that read the row alone
    /// (`amount > 200` of `amount > 200 AND COUNT(S.*) >= 3`), compiled with the JIT on: it is
    /// evaluated once per input batch, and a row it does not hold for is refused without
    /// computing the navigations. In a row's mask, such a variable's bit says the guard failed.
    guards: Vec<Option<(fsql_plan::Expr, Option<CompiledExprs>)>>,
    /// The values navigations read that are expressions of a row (`SUM(A.price * A.qty)`),
    /// computed per input batch (compiled with the JIT on).
    derived: ExprGroup,
    /// The stored row: the input's columns, then `derived`.
    row_schema: SchemaRef,
    /// With `ONE ROW PER MATCH`, the input columns anything reads from a stored row (keys,
    /// order, conditions, navigations, measures); the others are dropped (NULL, and nullable in
    /// `row_schema`) when rows are compacted into state. `None`: every column is output.
    kept_columns: Option<Vec<bool>>,
    /// The shape of the rows a condition is evaluated over, built once.
    eval: EvalShape,
    /// Partitions with live attempts by when their oldest one expires (with `WITHIN`), so a
    /// watermark visits only the partitions it affects.
    deadlines: DueQueue,
    /// `SET 'state.ttl'` in milliseconds of event time: a partition fed no row for longer (behind
    /// the watermark) ends as if its input ended, and its state is dropped.
    ttl_ms: Option<i64>,
    /// Partitions by when the TTL may end them (checked again when popped: a later row moves it).
    idle_deadlines: DueQueue,
    /// The next partition's [`Partition::stamp`].
    stamps: u32,
    /// The pattern's first variables as a mask, when all read the row alone: a row none of them
    /// accepts starts no attempt.
    first_mask: Option<u64>,
    /// Whether a partition without an open attempt or a stored row can be dropped: nothing reads
    /// its row count (`^`) or match count (`MATCH_NUMBER()`).
    forget_idle: bool,
    /// Rows stored since the last [`MatchRecognize::compact`], by partition and number.
    retained: Vec<Retained>,
    /// `first_mask` when such a row changes nothing in a partition without an open attempt (no
    /// `^` counts rows, no unmatched row is output): it is then not even stored.
    idle_skip: Option<u64>,
    /// Rows fed to their partitions whose conditions are not evaluated yet: at most one per
    /// partition (a *wave*), so that a condition that navigates is evaluated once per wave, over
    /// one batch, rather than once per row. Empty between two calls of the operator.
    wave: Vec<Fed>,
}

/// A row stored since the last compaction: row `seq` of partition `id`, the one of `stamp` (the
/// partition may be dropped, and its id taken by another, before the rows are compacted).
#[derive(Clone, Copy)]
struct Retained {
    id: u32,
    stamp: u32,
    seq: u64,
}

/// A row of the wave: its partition, and the (thread, variable) pairs it is tested against with
/// the results known so far (those of conditions that read the row alone).
struct Fed {
    key: KeyBytes,
    /// The partition's id in `partitions`.
    id: u32,
    ts: i64,
    /// The row's results of the conditions and guards that read the row alone.
    mask: u64,
    pending: Vec<(usize, usize)>,
    accepted: Vec<bool>,
}

/// The error for a partition a fed row refers to but the state no longer holds (a bug).
fn lost_partition(name: &str) -> RuntimeError {
    RuntimeError::Plan(format!("`{name}`: a partition of the wave is missing"))
}

/// A final match, timed-out partial match or unmatched row, with everything its output rows
/// need (its rows outlive the partition's pruning).
struct FoundRows {
    rows: Vec<Classified>,
    /// The row it starts at: where an empty match was found, or the unmatched row.
    anchor: RowRef,
    kind: Kind,
}

impl MatchRecognize {
    /// The operator for `spec`, producing `schema` (ONE ROW PER MATCH: partition columns, then
    /// measures; ALL ROWS PER MATCH: partition and ordering columns, measures, the other input
    /// columns). With `jit`, conditions, measures and derived values run compiled.
    pub fn new(
        name: &str,
        spec: &MatchRecognizeSpec,
        input: &Schema,
        schema: SchemaRef,
        emit: EmitMode,
        jit: bool,
        state_ttl_ms: Option<i64>,
    ) -> Result<MatchRecognize, RuntimeError> {
        let program = program::compile(&spec.pattern)
            .map_err(|m| RuntimeError::Plan(format!("`{name}`: {m}")))?;
        let kept_columns = kept_columns(spec, input.fields().len());
        let mut fields: Vec<Field> = input
            .fields()
            .iter()
            .enumerate()
            .map(|(c, f)| {
                let dropped = kept_columns
                    .as_ref()
                    .is_some_and(|kept| !kept.get(c).copied().unwrap_or(true));
                f.as_ref().clone().with_nullable(f.is_nullable() || dropped)
            })
            .collect();
        for (k, e) in spec.derived.iter().enumerate() {
            let name = MatchRecognizeSpec::derived_name(k);
            fields.push(Field::new(name, e.data_type.to_arrow(), true));
        }
        let row_schema = Arc::new(Schema::new(fields.clone()));
        for (k, (_, t)) in spec.navigations.iter().enumerate() {
            let name = MatchRecognizeSpec::navigation_name(k);
            fields.push(Field::new(name, t.to_arrow(), true));
        }
        let evaluation = Schema::new(fields);
        let mut derived = ExprGroup::new(spec.derived.clone());
        if jit {
            derived.compile(input);
        }
        let compiled = spec
            .defines
            .iter()
            .map(|d| {
                d.as_ref()
                    .filter(|_| jit)
                    .and_then(|d| CompiledExprs::new(None, std::slice::from_ref(d), &evaluation))
            })
            .collect();
        let mut measures = ExprGroup::new(spec.measures.iter().map(|m| m.expr.clone()).collect());
        if jit {
            measures.compile(&evaluation);
        }
        let width = input.fields().len();
        let row_only: Vec<bool> = spec
            .defines
            .iter()
            .map(|d| {
                spec.variables.len() <= 64
                    && d.as_ref()
                        .is_none_or(|d| d.columns().iter().all(|&c| c < width))
            })
            .collect();
        let guards = spec
            .defines
            .iter()
            .zip(&row_only)
            .map(|(d, &only)| {
                let d = d.as_ref().filter(|_| !only && spec.variables.len() <= 64)?;
                let guard = conjuncts(d)
                    .into_iter()
                    .filter(|c| c.columns().iter().all(|&c| c < width))
                    .cloned()
                    .reduce(|a, b| fsql_plan::Expr {
                        kind: fsql_plan::ExprKind::Binary {
                            op: fsql_plan::BinaryOp::And,
                            left: Box::new(a),
                            right: Box::new(b),
                        },
                        data_type: DataType::Boolean,
                        nullable: true,
                    })?;
                let compiled = if jit {
                    CompiledExprs::new(None, std::slice::from_ref(&guard), &evaluation)
                } else {
                    None
                };
                Some((guard, compiled))
            })
            .collect();
        let first_mask = Matcher::first_variables(&program)
            .filter(|vars| {
                vars.iter()
                    .all(|&v| row_only.get(v).copied().unwrap_or(false))
            })
            .map(|vars| vars.iter().fold(0u64, |m, &v| m | (1 << v)));
        let mut skip = Skip::from(spec.after_match);
        if let fsql_plan::AfterMatch::ToFirst(v) | fsql_plan::AfterMatch::ToLast(v) =
            spec.after_match
            && let Some((_, members)) = v
                .checked_sub(spec.variables.len())
                .and_then(|s| spec.subsets.get(s))
        {
            skip.to = members.clone();
        }
        let forget_idle = !program.contains(&Inst::Start)
            && !spec.navigations.iter().any(|(n, _)| match n {
                Navigation::Final(inner) => **inner == Navigation::MatchNumber,
                n => *n == Navigation::MatchNumber,
            });
        let idle_skip = first_mask.filter(|_| {
            spec.rows_per_match != RowsPerMatch::AllWithUnmatched && !program.contains(&Inst::Start)
        });
        Ok(MatchRecognize {
            name: name.to_string(),
            spec: spec.clone(),
            program,
            skip,
            schema,
            emit,
            keys: KeyEncoder::new(spec.partition_by.clone()),
            then: None,
            partitions: KeyedState::default(),
            active: (!forget_idle).then(|| std::collections::HashSet::with_hasher(FxBuild)),
            waiting: Vec::new(),
            arrivals: 0,
            watermark_ms: i64::MIN,
            late: LateRows::default(),
            found: Vec::new(),
            compiled,
            measures,
            first_mask,
            idle_skip,
            retained: Vec::new(),
            wave: Vec::new(),
            forget_idle,
            deadlines: DueQueue::new(),
            ttl_ms: state_ttl_ms.filter(|t| *t > 0),
            idle_deadlines: DueQueue::new(),
            stamps: 1,
            row_only,
            guards,
            derived,
            eval: EvalShape::new(spec, &row_schema),
            row_schema,
            kept_columns,
        })
    }

    /// `batch` with the derived values after its columns (the stored row's shape).
    fn with_derived(&mut self, batch: &RecordBatch) -> Result<RecordBatch, RuntimeError> {
        if self.spec.derived.is_empty() {
            return Ok(batch.clone());
        }
        let mut columns = batch.columns().to_vec();
        columns.extend(
            self.derived
                .evaluate(batch)
                .map_err(|e| RuntimeError::eval(&self.name, e))?,
        );
        batch_with_schema(&self.name, &self.row_schema, columns, batch.num_rows())
    }

    /// Whether timed-out partial matches are output.
    fn timeouts(&self) -> bool {
        self.spec.emit_timeouts
    }

    /// Whether rows no match took are output.
    fn with_unmatched(&self) -> bool {
        self.spec.rows_per_match == RowsPerMatch::AllWithUnmatched
    }

    /// Per row of `batch`, bit `v` set when the row satisfies variable `v`'s condition, for the
    /// conditions that read the row alone, and when the row fails variable `v`'s guard, for
    /// the conditions that navigate and have one (vectorised over the whole batch, compiled
    /// when the JIT is on).
    fn row_conditions(&mut self, batch: &RecordBatch) -> Result<Vec<u64>, RuntimeError> {
        let mut masks = vec![0u64; batch.num_rows()];
        for (v, define) in self.spec.defines.iter().enumerate() {
            if let Some((guard, compiled)) = self.guards.get_mut(v).and_then(Option::as_mut) {
                let result = predicate(compiled.as_mut(), guard, batch, &self.name)?;
                for (i, m) in masks.iter_mut().enumerate() {
                    if !(result.is_valid(i) && result.value(i)) {
                        *m |= 1 << v;
                    }
                }
                continue;
            }
            if !self.row_only[v] {
                continue;
            }
            let Some(define) = define else {
                masks.iter_mut().for_each(|m| *m |= 1 << v);
                continue;
            };
            let compiled = self.compiled.get_mut(v).and_then(Option::as_mut);
            let result = predicate(compiled, define, batch, &self.name)?;
            for (i, m) in masks.iter_mut().enumerate() {
                if result.is_valid(i) && result.value(i) {
                    *m |= 1 << v;
                }
            }
        }
        Ok(masks)
    }

    /// The further ORDER BY columns of `batch`, row-encoded (`None` without any).
    fn order_then(
        &mut self,
        batch: &RecordBatch,
    ) -> Result<Option<arrow::row::Rows>, RuntimeError> {
        if self.spec.order_then.is_empty() || self.emit != EmitMode::Watermark {
            return Ok(None);
        }
        let columns: Vec<ArrayRef> = self
            .spec
            .order_then
            .iter()
            .filter_map(|(c, _)| batch.columns().get(*c).cloned())
            .collect();
        if self.then.is_none() {
            let fields = columns
                .iter()
                .zip(&self.spec.order_then)
                .map(|(c, (_, descending))| {
                    arrow::row::SortField::new_with_options(
                        c.data_type().clone(),
                        arrow::compute::SortOptions {
                            descending: *descending,
                            nulls_first: !*descending,
                        },
                    )
                })
                .collect();
            self.then = Some(arrow::row::RowConverter::new(fields).map_err(|e| self.arrow_err(e))?);
        }
        let Some(converter) = &self.then else {
            return Ok(None);
        };
        let rows = converter
            .convert_columns(&columns)
            .map_err(|e| RuntimeError::arrow(&self.name, e))?;
        Ok(Some(rows))
    }

    fn arrow_err(&self, e: arrow::error::ArrowError) -> RuntimeError {
        RuntimeError::arrow(&self.name, e)
    }

    /// Event times of `batch` in milliseconds (`None` for NULL).
    fn times(&self, batch: &RecordBatch) -> Result<Vec<Option<i64>>, RuntimeError> {
        let column = batch
            .columns()
            .get(self.spec.order_by)
            .ok_or_else(|| RuntimeError::Plan(format!("`{}`: no time column", self.name)))?;
        let per_ms = match column.data_type() {
            ArrowType::Timestamp(unit, _) => units_per_second(*unit) / 1000,
            other => {
                return Err(RuntimeError::Plan(format!(
                    "`{}`: the time column is {other}",
                    self.name
                )));
            }
        };
        Ok((0..batch.num_rows())
            .map(|i| {
                column.is_valid(i).then(|| {
                    let raw = timestamp_raw(column.as_ref(), i);
                    if per_ms == 0 {
                        raw.saturating_mul(1000)
                    } else {
                        raw.div_euclid(per_ms)
                    }
                })
            })
            .collect())
    }

    /// The id of `key`'s partition, whether a row of it is in the wave, and whether it is open.
    fn lookup(&self, key: &[u8]) -> (Option<u32>, bool, bool) {
        let found = self.partitions.find(key);
        match found.and_then(|id| self.partitions.get(id)) {
            Some(p) => (found, p.in_wave, p.is_open()),
            None => (found, false, false),
        }
    }

    /// Feeds one row to its partition's matcher: opens the attempt it may start and lists the
    /// (thread, variable) pairs it is tested against. The row joins the current wave; its
    /// conditions are evaluated, and its partition's matcher advanced, when the wave is
    /// flushed ([`MatchRecognize::flush_wave`]), which a second row of the same partition
    /// forces first.
    fn feed(&mut self, key: KeyBytes, row: RowRef, ts: i64, mask: u64) -> Result<(), RuntimeError> {
        // A row that starts no attempt changes nothing in a partition without an open attempt
        // (once the wave's row of its partition, which may open one, is classified).
        let starts_nothing = self.idle_skip.is_some_and(|first| mask & first == 0);
        if starts_nothing
            && self
                .active
                .as_ref()
                .is_some_and(|active| !active.contains(key.as_slice()))
        {
            // Neither open nor in the wave: not even looked up in `partitions`.
            return Ok(());
        }
        let (mut found, mut in_wave, mut open) = self.lookup(key.as_slice());
        if in_wave {
            // The partition's previous row must be classified first (which may drop it).
            self.flush_wave()?;
            (found, in_wave, open) = self.lookup(key.as_slice());
            debug_assert!(!in_wave, "the wave was flushed");
        }
        if starts_nothing && !open {
            return Ok(());
        }
        let id = match found {
            Some(id) => id,
            None => {
                let stamp = self.stamps;
                self.stamps = stamp.wrapping_add(1);
                self.partitions
                    .id_or_insert_with(key.as_slice(), || Partition {
                        last_ts: i64::MIN,
                        stamp,
                        ..Partition::default()
                    })
            }
        };
        if let Some(active) = &mut self.active
            && !active.contains(key.as_slice())
        {
            active.insert(key.clone());
        }
        let partition = self
            .partitions
            .get_mut(id)
            .ok_or_else(|| lost_partition(&self.name))?;
        partition.in_wave = true;
        if partition.rows.len() == partition.rows.capacity() && partition.rows.len() < 4 {
            // Most partitions hold a row or two: grow one row at a time up to 4 (a deque's
            // first growth would make room for 4 at once).
            partition.rows.reserve_exact(1);
        }
        partition.rows.push_back(Stored {
            row,
            ts,
            in_match: false,
        });
        let open = self.first_mask.is_none_or(|first| mask & first != 0);
        let pending = partition.matcher.pending(&self.program, open);
        let accepted = pending
            .iter()
            .map(|&(_, v)| self.row_only[v] && mask & (1 << v) != 0)
            .collect();
        self.wave.push(Fed {
            key,
            id,
            ts,
            mask,
            pending,
            accepted,
        });
        Ok(())
    }

    /// Evaluates the conditions the wave's rows wait for — per variable, one batch over every
    /// row of the wave — and then advances each row's matcher, in the order the rows came.
    fn flush_wave(&mut self) -> Result<(), RuntimeError> {
        if self.wave.is_empty() {
            return Ok(());
        }
        let mut wave = std::mem::take(&mut self.wave);
        self.decide(&mut wave)?;
        for fed in wave.drain(..) {
            self.step(fed)?;
        }
        // Keeps the vector's capacity for the next wave.
        self.wave = wave;
        Ok(())
    }

    /// Sets `accepted` for the wave's pairs whose variable's condition navigates: per variable,
    /// one evaluation row per pair, evaluated as one batch.
    fn decide(&mut self, wave: &mut [Fed]) -> Result<(), RuntimeError> {
        for (v, define) in self.spec.defines.iter().enumerate() {
            if self.row_only[v] {
                continue;
            }
            // A row its guard refused stays refused.
            let guarded = self.guards.get(v).is_some_and(Option::is_some);
            let pairs: Vec<(usize, usize)> = wave
                .iter()
                .enumerate()
                .filter(|(_, fed)| !guarded || fed.mask & (1 << v) == 0)
                .flat_map(|(w, fed)| {
                    fed.pending
                        .iter()
                        .enumerate()
                        .filter(|(_, p)| p.1 == v)
                        .map(move |(k, _)| (w, k))
                })
                .collect();
            if pairs.is_empty() {
                continue;
            }
            let Some(define) = define else {
                for (w, k) in pairs {
                    wave[w].accepted[k] = true;
                }
                continue;
            };
            let eval = evaluation_rows(
                &self.spec,
                &mut self.eval,
                &self.partitions,
                wave,
                &pairs,
                v,
                &self.name,
            )?;
            let compiled = self.compiled.get_mut(v).and_then(Option::as_mut);
            let result = predicate(compiled, define, &eval, &self.name)?;
            for (i, &(w, k)) in pairs.iter().enumerate() {
                wave[w].accepted[k] = result.is_valid(i) && result.value(i);
            }
        }
        Ok(())
    }

    /// Advances the matcher of a fed row's partition with the results of its conditions, and
    /// does the partition's bookkeeping: matches found, rows pruned, queues.
    fn step(&mut self, fed: Fed) -> Result<(), RuntimeError> {
        let Fed {
            key,
            id,
            ts,
            accepted,
            ..
        } = fed;
        let (timeouts, unmatched) = (self.timeouts(), self.with_unmatched());
        let partition = self
            .partitions
            .get_mut(id)
            .ok_or_else(|| lost_partition(&self.name))?;
        partition.in_wave = false;
        let within = self.spec.within_ms;
        let Partition {
            matcher,
            rows,
            first,
            ..
        } = &mut *partition;
        let first = *first;
        let alive = |start: u64| {
            let t0 = row_at(rows, first, start).map(|r| r.ts);
            match (within, t0) {
                (Some(w), Some(t0)) => ts - t0 < w,
                _ => true,
            }
        };
        let found = matcher
            .advance(&self.program, &accepted, alive, &self.skip, timeouts)
            .map_err(|e| skip_error(&self.name, &self.spec, e))?;
        collect(partition, found, &mut self.found);
        prune(partition, unmatched.then_some(&mut self.found));
        let seq = partition.matcher.rows() - 1;
        if partition.row(seq).is_some() {
            self.retained.push(Retained {
                id,
                stamp: partition.stamp,
                seq,
            });
        }
        partition.last_ts = partition.last_ts.max(ts);
        let idle = partition.matcher.is_idle();
        let forget = idle && self.forget_idle && partition.rows.is_empty();
        if let (Some(ttl), false, false) = (self.ttl_ms, forget, partition.ttl_queued) {
            partition.ttl_queued = true;
            let due = partition.last_ts.saturating_add(ttl);
            self.idle_deadlines.push(Due::of(due, id, partition));
        }
        // Fed, it was made active; it stays so while an attempt is open.
        if let (true, Some(active)) = (idle, &mut self.active) {
            active.remove(key.as_slice());
        }
        if let (Some(w), false) = (within, partition.queued)
            && let Some(deadline) = partition.deadline(w)
        {
            partition.queued = true;
            self.deadlines.push(Due::of(deadline, id, partition));
        } else if forget {
            self.partitions.remove(id);
        }
        Ok(())
    }

    /// Ends the attempts no future row can extend (their WITHIN bound is behind the watermark).
    fn expire(&mut self) -> Result<(), RuntimeError> {
        let Some(within) = self.spec.within_ms else {
            return Ok(());
        };
        // A future row has a time after the watermark; it fits an attempt only if it is less than
        // `within` after the attempt's first row.
        let wm = self.watermark_ms;
        let horizon = wm.saturating_add(1);
        let (timeouts, unmatched) = (self.timeouts(), self.with_unmatched());
        for Due { id, .. } in pop_due(&mut self.deadlines, &self.partitions, |t| t <= horizon) {
            let Some(partition) = self.partitions.get_mut(id) else {
                continue;
            };
            partition.queued = false;
            let Partition {
                matcher,
                rows,
                first,
                ..
            } = &mut *partition;
            let first = *first;
            let alive = |start: u64| {
                row_at(rows, first, start).is_none_or(|r| r.ts.saturating_add(within) > horizon)
            };
            let found = matcher
                .expire(&self.program, alive, &self.skip, timeouts)
                .map_err(|e| skip_error(&self.name, &self.spec, e))?;
            collect(partition, found, &mut self.found);
            prune(partition, unmatched.then_some(&mut self.found));
            let idle = partition.matcher.is_idle();
            let forget = if let Some(deadline) = partition.deadline(within) {
                partition.queued = true;
                self.deadlines.push(Due::of(deadline, id, partition));
                false
            } else {
                self.forget_idle && idle && partition.rows.is_empty()
            };
            if let (true, Some(active)) = (idle, &mut self.active) {
                active.remove(self.partitions.key(id));
            }
            if forget {
                self.partitions.remove(id);
            }
        }
        Ok(())
    }

    /// The output rows of the final matches (and timed-out and unmatched rows) found so far.
    fn emit(&mut self, out: &mut Vec<Event>) -> Result<(), RuntimeError> {
        if self.found.is_empty() {
            return Ok(());
        }
        let found = std::mem::take(&mut self.found);
        let all_rows = self.spec.rows_per_match.all_rows();
        // One evaluation row per output row: its group, and the row of the group it is at
        // (`None`: an empty match or an unmatched row).
        let mut units: Vec<(usize, Option<usize>)> = Vec::new();
        for (g, f) in found.iter().enumerate() {
            match f.kind {
                Kind::Unmatched => units.push((g, None)),
                _ if !all_rows => units.push((g, f.rows.len().checked_sub(1))),
                _ if f.rows.is_empty() => {
                    if self.spec.rows_per_match != RowsPerMatch::AllOmitEmpty {
                        units.push((g, None));
                    }
                }
                _ => units.extend(
                    f.rows
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| !r.excluded)
                        .map(|(k, _)| (g, Some(k))),
                ),
            }
        }
        if units.is_empty() {
            return Ok(());
        }
        let n = units.len();
        let current: Vec<&RowRef> = units
            .iter()
            .map(|&(g, at)| {
                let f = &found[g];
                at.and_then(|k| f.rows.get(k)).map_or(&f.anchor, |r| &r.row)
            })
            .collect();
        let inputs =
            gather(&current, self.row_schema.fields().len()).map_err(|e| self.arrow_err(e))?;
        // Measures see the current row of the match: none for an empty match (its anchor row
        // is output, but `price` in a measure is `LAST(price)` over no rows).
        let mut columns: Vec<ArrayRef> = inputs.clone();
        if units.iter().any(|(_, at)| at.is_none()) {
            let no_row: arrow::array::BooleanArray =
                units.iter().map(|(_, at)| Some(at.is_none())).collect();
            for c in &mut columns {
                *c = arrow::compute::nullif(c, &no_row).map_err(|e| self.arrow_err(e))?;
            }
        }
        let width = columns.len();
        let seen: Vec<Vec<Seen<'_>>> = found
            .iter()
            .map(|f| {
                f.rows
                    .iter()
                    .map(|r| Seen {
                        row: &r.row,
                        var: r.var,
                    })
                    .collect()
            })
            .collect();
        for (k, (nav, t)) in self.spec.navigations.iter().enumerate() {
            if !self
                .eval
                .measures_read
                .get(width + k)
                .copied()
                .unwrap_or(true)
            {
                // Read by conditions only.
                columns.push(self.eval.nulls(width + k, n));
                continue;
            }
            let located = units
                .iter()
                .map(|&(g, at)| {
                    let frame = Frame {
                        rows: &seen[g],
                        at,
                        kind: found[g].kind,
                    };
                    locate(&self.spec, nav, t, &frame, &self.name)
                })
                .collect::<Result<Vec<_>, _>>()?;
            columns.push(navigation_column(located, t).map_err(|e| self.arrow_err(e))?);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        let eval = RecordBatch::try_new_with_options(self.eval.schema.clone(), columns, &options)
            .map_err(|e| self.arrow_err(e))?;
        let mut measures = self
            .measures
            .evaluate(&eval)
            .map_err(|e| RuntimeError::eval(&self.name, e))?;
        if found.iter().any(|f| matches!(f.kind, Kind::Unmatched)) {
            // An unmatched row's measures are NULL.
            let unmatched: arrow::array::BooleanArray = units
                .iter()
                .map(|&(g, _)| Some(matches!(found[g].kind, Kind::Unmatched)))
                .collect();
            for m in &mut measures {
                *m = arrow::compute::nullif(m, &unmatched).map_err(|e| self.arrow_err(e))?;
            }
        }
        let input_column = |c: &usize| inputs[*c].clone();
        let output: Vec<ArrayRef> = if all_rows {
            let (leading, rest) = self.spec.all_rows_columns(self.input_width());
            leading
                .iter()
                .map(input_column)
                .chain(measures)
                .chain(rest.iter().map(input_column))
                .collect()
        } else {
            self.spec
                .partition_by
                .iter()
                .map(input_column)
                .chain(measures)
                .collect()
        };
        let batch = batch_with_schema(&self.name, &self.schema, output, n)?;
        out.push(Event::Batch(batch));
        Ok(())
    }

    /// The number of the input's columns (the stored row has the derived values after them).
    fn input_width(&self) -> usize {
        self.row_schema.fields().len() - self.spec.derived.len()
    }

    /// Ends the partitions the state TTL expires: fed no row for longer than the TTL behind the
    /// watermark. Each finishes as if its input ended (a pending match is emitted; with `EMIT
    /// TIMEOUTS`, an open attempt is reported) and is dropped; a later row starts afresh.
    fn expire_idle(&mut self) -> Result<(), RuntimeError> {
        let Some(ttl) = self.ttl_ms else {
            return Ok(());
        };
        let wm = self.watermark_ms;
        for Due { id, .. } in pop_due(&mut self.idle_deadlines, &self.partitions, |t| t < wm) {
            let Some(partition) = self.partitions.get_mut(id) else {
                continue;
            };
            let due = partition.last_ts.saturating_add(ttl);
            if due >= wm {
                self.idle_deadlines.push(Due::of(due, id, partition));
                continue;
            }
            let key = KeyBytes::new(self.partitions.key(id));
            self.finish_partition(key.as_slice())?;
            self.partitions.remove(id);
            if let Some(active) = &mut self.active {
                active.remove(key.as_slice());
            }
        }
        Ok(())
    }

    /// Ends a partition's input (`$` holds): its attempts finish with what they have, and its
    /// rows no attempt needs are dropped.
    fn finish_partition(&mut self, key: &[u8]) -> Result<(), RuntimeError> {
        let (timeouts, unmatched) = (self.timeouts(), self.with_unmatched());
        let Some(partition) = self.partitions.get_mut_by_key(key) else {
            return Ok(());
        };
        let found = partition
            .matcher
            .finish(&self.program, &self.skip, timeouts)
            .map_err(|e| skip_error(&self.name, &self.spec, e))?;
        collect(partition, found, &mut self.found);
        prune(partition, unmatched.then_some(&mut self.found));
        Ok(())
    }

    /// Copies the rows stored since the last call out of their input batches into one batch of
    /// their own, so that state holds the rows live attempts need rather than whole input
    /// batches (one long attempt would otherwise keep a batch of thousands of rows alive), and
    /// of those rows only the columns the node reads ([`MatchRecognize::kept_columns`]).
    fn compact(&mut self) -> Result<(), RuntimeError> {
        if self.retained.is_empty() {
            return Ok(());
        }
        let mut kept: Vec<Retained> = Vec::new();
        let mut rows: Vec<RowRef> = Vec::new();
        for r in std::mem::take(&mut self.retained) {
            if let Some(stored) = self
                .partitions
                .get(r.id)
                .filter(|p| p.stamp == r.stamp)
                .and_then(|p| p.row(r.seq))
            {
                rows.push(stored.row.clone());
                kept.push(r);
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        let refs: Vec<&RowRef> = rows.iter().collect();
        let n = rows.len();
        let (kept_columns, eval) = (&self.kept_columns, &mut self.eval);
        // The NULLs of the columns not kept are slices of one array per column.
        let dropped = |c: usize| {
            let stored = kept_columns
                .as_ref()
                .is_none_or(|kept| kept.get(c).copied().unwrap_or(true));
            (!stored).then(|| eval.nulls(c, n))
        };
        let columns = gather_where(&refs, self.row_schema.fields().len(), dropped)
            .map_err(|e| self.arrow_err(e))?;
        drop(refs);
        drop(rows);
        let batch = Arc::new(batch_with_schema(&self.name, &self.row_schema, columns, n)?);
        for (index, r) in kept.into_iter().enumerate() {
            if let Some(stored) = self
                .partitions
                .get_mut(r.id)
                .filter(|p| p.stamp == r.stamp)
                .and_then(|p| p.row_mut(r.seq))
            {
                stored.row = RowRef {
                    batch: batch.clone(),
                    index,
                };
            }
        }
        Ok(())
    }

    fn release(&mut self, up_to: i64) -> Result<(), RuntimeError> {
        let mut ready: Vec<Waiting> = Vec::new();
        let mut keep = Vec::with_capacity(self.waiting.len());
        for w in std::mem::take(&mut self.waiting) {
            if w.ts <= up_to {
                ready.push(w);
            } else {
                keep.push(w);
            }
        }
        self.waiting = keep;
        ready.sort_by(|a, b| (a.ts, &a.then, a.seq).cmp(&(b.ts, &b.then, b.seq)));
        for w in ready {
            self.feed(w.key, w.row, w.ts, w.mask)?;
        }
        self.flush_wave()?;
        self.compact()
    }
}

/// `condition` over `batch`: by its compiled kernel when there is one and it computes the
/// batch, else by the interpreter.
fn predicate(
    compiled: Option<&mut CompiledExprs>,
    condition: &fsql_plan::Expr,
    batch: &RecordBatch,
    name: &str,
) -> Result<arrow::array::BooleanArray, RuntimeError> {
    let by_kernel = match compiled {
        Some(c) => c
            .run(batch)
            .map_err(|e| RuntimeError::eval(name, e))?
            .and_then(|out| out.columns.into_iter().next())
            .and_then(|a| a.as_boolean_opt().cloned()),
        None => None,
    };
    match by_kernel {
        Some(r) => Ok(r),
        None => evaluate_predicate(condition, batch).map_err(|e| RuntimeError::eval(name, e)),
    }
}

/// The operands of `e`'s top-level ANDs, left to right (`e` itself when it is no AND).
fn conjuncts(e: &fsql_plan::Expr) -> Vec<&fsql_plan::Expr> {
    match &e.kind {
        fsql_plan::ExprKind::Binary {
            op: fsql_plan::BinaryOp::And,
            left,
            right,
        } => {
            let mut all = conjuncts(left);
            all.extend(conjuncts(right));
            all
        }
        _ => vec![e],
    }
}

fn skip_error(name: &str, spec: &MatchRecognizeSpec, e: SkipError) -> RuntimeError {
    let var = |v: usize| {
        spec.variables
            .get(v)
            .or_else(|| {
                v.checked_sub(spec.variables.len())
                    .and_then(|s| spec.subsets.get(s))
                    .map(|(name, _)| name)
            })
            .cloned()
            .unwrap_or_default()
    };
    RuntimeError::Plan(match e {
        SkipError::ToFirstRowOfMatch(v) => format!(
            "in `{name}`: AFTER MATCH SKIP TO {} would start the next match at the first row of this one (the SQL standard makes this an error)",
            var(v)
        ),
        SkipError::NoSuchRow(v) => format!(
            "in `{name}`: AFTER MATCH SKIP TO {} but no row of the match is {}",
            var(v),
            var(v)
        ),
        SkipError::TooManyThreads => format!(
            "in `{name}`: more than {} match attempts are alive in one partition; bound the pattern with WITHIN or make it less ambiguous",
            matcher::MAX_THREADS
        ),
    })
}

/// Turns the matcher's final matches (and timed-out partial matches) into groups of rows kept
/// for the output, marking their rows as taken.
fn collect(partition: &mut Partition, found: Vec<Found>, into: &mut Vec<FoundRows>) {
    let matches = found.iter().filter(|f| f.timed_out.is_none()).count() as u64;
    let mut number = partition.matcher.matches - matches;
    for f in found {
        let kind = match f.timed_out {
            Some(expected) => Kind::TimedOut(expected),
            None => {
                number += 1;
                Kind::Match(number)
            }
        };
        let mut rows = Vec::new();
        for step in steps_of(&f.last) {
            if let Some(stored) = partition.row_mut(step.row) {
                stored.in_match = true;
                rows.push(Classified {
                    row: stored.row.clone(),
                    var: step.var as usize,
                    excluded: step.excluded,
                });
            }
        }
        let Some(anchor) = partition.row_mut(f.start) else {
            continue;
        };
        anchor.in_match = true;
        into.push(FoundRows {
            rows,
            anchor: anchor.row.clone(),
            kind,
        });
    }
}

/// Drops the rows no live attempt refers to; with `unmatched`, those no match took are output
/// there.
fn prune(partition: &mut Partition, mut unmatched: Option<&mut Vec<FoundRows>>) {
    let needed = partition.matcher.oldest_needed();
    while partition.first < needed {
        let Some(stored) = partition.rows.pop_front() else {
            break;
        };
        partition.first += 1;
        if let Some(out) = unmatched.as_deref_mut()
            && !stored.in_match
        {
            out.push(FoundRows {
                rows: Vec::new(),
                anchor: stored.row,
                kind: Kind::Unmatched,
            });
        }
    }
}

/// The evaluation rows of conditions: the stored row's columns, then one per navigation. Built
/// once: their schema, which columns each variable's condition reads, and NULLs of each column
/// for the columns it does not read (so the rows for one condition are a few slices, not a copy
/// of every column and every navigation).
struct EvalShape {
    schema: SchemaRef,
    /// Per variable, per column: its condition reads it.
    reads: Vec<Vec<bool>>,
    /// Per column: a measure reads it.
    measures_read: Vec<bool>,
    /// Per column, NULLs of its type (sliced to the rows needed; grown when more are).
    nulls: Vec<ArrayRef>,
    /// Per column, one NULL of its type (a wave of one row needs no slice).
    null: Vec<ArrayRef>,
}

impl EvalShape {
    fn new(spec: &MatchRecognizeSpec, row_schema: &Schema) -> EvalShape {
        let types: Vec<ArrowType> = row_schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .chain(spec.navigations.iter().map(|(_, t)| t.to_arrow()))
            .collect();
        let read_by = |exprs: &mut dyn Iterator<Item = &fsql_plan::Expr>| {
            let mut reads = vec![false; types.len()];
            for c in exprs.flat_map(fsql_plan::Expr::columns) {
                if let Some(r) = reads.get_mut(c) {
                    *r = true;
                }
            }
            reads
        };
        let reads = spec
            .defines
            .iter()
            .map(|d| read_by(&mut d.iter()))
            .collect();
        let measures_read = read_by(&mut spec.measures.iter().map(|m| &m.expr));
        EvalShape {
            schema: Arc::new(Schema::new(
                types
                    .iter()
                    .enumerate()
                    .map(|(i, t)| Field::new(format!("c{i}"), t.clone(), true))
                    .collect::<Vec<_>>(),
            )),
            reads,
            measures_read,
            nulls: types.iter().map(|t| new_null_array(t, 1)).collect(),
            null: types.iter().map(|t| new_null_array(t, 1)).collect(),
        }
    }

    /// Whether variable `v`'s condition reads column `c`.
    fn reads(&self, v: usize, c: usize) -> bool {
        self.reads
            .get(v)
            .and_then(|r| r.get(c))
            .copied()
            .unwrap_or(true)
    }

    /// `n` NULLs of column `c`'s type.
    fn nulls(&mut self, c: usize, n: usize) -> ArrayRef {
        if let (1, Some(null)) = (n, self.null.get(c)) {
            return null.clone();
        }
        let Some(nulls) = self.nulls.get_mut(c) else {
            return new_null_array(self.schema.field(c).data_type(), n);
        };
        if nulls.len() < n {
            *nulls = new_null_array(self.schema.field(c).data_type(), n.next_power_of_two());
        }
        if nulls.len() == n {
            nulls.clone()
        } else {
            nulls.slice(0, n)
        }
    }
}

/// The evaluation rows of variable `v`'s condition for the wave's `pairs` (wave row, pending
/// pair), one per pair: the row being classified, then the navigations the condition reads,
/// computed over the pair's thread's rows plus that row (RUNNING semantics). Columns the
/// condition does not read are NULL.
fn evaluation_rows(
    spec: &MatchRecognizeSpec,
    shape: &mut EvalShape,
    partitions: &KeyedState<Partition>,
    wave: &[Fed],
    pairs: &[(usize, usize)],
    v: usize,
    name: &str,
) -> Result<RecordBatch, RuntimeError> {
    let n = pairs.len();
    let arrow = |e| RuntimeError::arrow(name, e);
    let mut owners: Vec<(&Partition, &RowRef)> = Vec::with_capacity(n);
    for &(w, _) in pairs {
        let partition = wave
            .get(w)
            .and_then(|fed| partitions.get(fed.id))
            .ok_or_else(|| lost_partition(name))?;
        let current = partition.rows.back().ok_or_else(|| lost_partition(name))?;
        owners.push((partition, &current.row));
    }
    let width = shape.schema.fields().len() - spec.navigations.len();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(shape.schema.fields().len());
    let current: Vec<Option<&RowRef>> = owners.iter().map(|(_, row)| Some(*row)).collect();
    for j in 0..width {
        columns.push(if shape.reads(v, j) {
            cells(&current, j, shape.schema.field(j).data_type()).map_err(arrow)?
        } else {
            shape.nulls(j, n)
        });
    }
    let read: Vec<bool> = (0..spec.navigations.len())
        .map(|k| shape.reads(v, width + k))
        .collect();
    let mut values: Vec<Vec<Located<'_>>> = read.iter().map(|_| Vec::new()).collect();
    if read.iter().any(|&r| r) {
        // The threads' rows are linked lists of steps allocated as rows came, so following one
        // misses the cache at every step: LANES lists are followed in lockstep, so that their
        // misses overlap.
        const LANES: usize = 8;
        let mut histories: Vec<Vec<Seen<'_>>> = vec![Vec::new(); LANES.min(n)];
        for (lanes, owners) in pairs.chunks(LANES).zip(owners.chunks(LANES)) {
            let mut cursors: Vec<Option<&matcher::Step>> = Vec::with_capacity(LANES);
            for (&(w, k), &(partition, _)) in lanes.iter().zip(owners) {
                let thread = wave
                    .get(w)
                    .and_then(|fed| fed.pending.get(k))
                    .and_then(|&(t, _)| partition.matcher.threads().get(t))
                    .ok_or_else(|| lost_partition(name))?;
                cursors.push(thread.last.as_deref());
            }
            histories.iter_mut().for_each(Vec::clear);
            while cursors.iter().any(Option::is_some) {
                for ((cursor, history), &(partition, _)) in
                    cursors.iter_mut().zip(&mut histories).zip(owners)
                {
                    if let Some(step) = *cursor {
                        if let Some(stored) = partition.row(step.row) {
                            history.push(Seen {
                                row: &stored.row,
                                var: step.var as usize,
                            });
                        }
                        *cursor = step.prev.as_deref();
                    }
                }
            }
            for (history, &(partition, row)) in histories.iter_mut().zip(owners) {
                history.reverse();
                history.push(Seen { row, var: v });
                let frame = Frame {
                    rows: history,
                    at: history.len().checked_sub(1),
                    kind: Kind::Match(partition.matcher.matches + 1),
                };
                for (k, (nav, t)) in spec.navigations.iter().enumerate() {
                    if let (true, Some(out)) = (read[k], values.get_mut(k)) {
                        out.push(locate(spec, nav, t, &frame, name)?);
                    }
                }
            }
        }
    }
    for (k, ((_, t), located)) in spec.navigations.iter().zip(values).enumerate() {
        columns.push(if read[k] {
            navigation_column(located, t).map_err(arrow)?
        } else {
            shape.nulls(width + k, n)
        });
    }
    let options = RecordBatchOptions::new().with_row_count(Some(n));
    RecordBatch::try_new_with_options(shape.schema.clone(), columns, &options).map_err(arrow)
}

/// Column `column` of `rows`, in order (`None`, or a row without that column: NULL), of type
/// `data_type`: one gather over the rows' batches.
fn cells(
    rows: &[Option<&RowRef>],
    column: usize,
    data_type: &ArrowType,
) -> Result<ArrayRef, arrow::error::ArrowError> {
    let mut batches: Vec<&RecordBatch> = Vec::new();
    let mut indices = Vec::with_capacity(rows.len());
    let mut nulls = false;
    for r in rows {
        match r.filter(|r| r.batch.num_columns() > column) {
            Some(r) => {
                indices.push((batch_slot(&mut batches, r), r.index));
            }
            None => {
                nulls = true;
                indices.push((usize::MAX, 0));
            }
        }
    }
    if let ([batch], false) = (batches.as_slice(), nulls)
        && let [(_, i)] = indices.as_slice()
    {
        return Ok(batch.column(column).slice(*i, 1));
    }
    let null = new_null_array(
        batches
            .first()
            .map_or(data_type, |b| b.column(column).data_type()),
        1,
    );
    let at_null = batches.len();
    for (k, _) in &mut indices {
        if *k == usize::MAX {
            *k = at_null;
        }
    }
    let arrays: Vec<&dyn Array> = batches
        .iter()
        .map(|b| b.column(column).as_ref())
        .chain(std::iter::once(null.as_ref()))
        .collect();
    interleave(&arrays, &indices)
}

/// A navigation's value for one evaluation row, found without building an array where it can
/// be: a cell of a row, or a count.
enum Located<'a> {
    /// Column `.1` of a row (`None`: no such row, NULL).
    Cell(Option<&'a RowRef>, usize),
    Count(i64),
    /// Computed by [`navigate`] as a one-row array of the navigation's type.
    Value(ArrayRef),
}

/// A navigation's column over evaluation rows, from the values [`locate`] found: one gather
/// when they are all cells of one column, an array of counts when all are counts.
fn navigation_column(
    located: Vec<Located<'_>>,
    t: &DataType,
) -> Result<ArrayRef, arrow::error::ArrowError> {
    let arrow_type = t.to_arrow();
    let column = match located.first() {
        Some(Located::Cell(_, c)) => Some(*c),
        _ => None,
    };
    let column: ArrayRef = if let Some(column) = column.filter(|&c| {
        located
            .iter()
            .all(|l| matches!(l, Located::Cell(_, d) if *d == c))
    }) {
        let rows: Vec<Option<&RowRef>> = located
            .iter()
            .map(|l| match l {
                Located::Cell(row, _) => *row,
                _ => None,
            })
            .collect();
        cells(&rows, column, &arrow_type)?
    } else if located.iter().all(|l| matches!(l, Located::Count(_))) {
        Arc::new(Int64Array::from_iter_values(located.iter().map(
            |l| match l {
                Located::Count(c) => *c,
                _ => 0,
            },
        )))
    } else {
        let mut arrays = Vec::with_capacity(located.len());
        for l in located {
            let a: ArrayRef = match l {
                Located::Cell(row, c) => row
                    .and_then(|r| r.cell(c))
                    .unwrap_or_else(|| new_null_array(&arrow_type, 1)),
                Located::Count(c) => Arc::new(Int64Array::from(vec![c])),
                Located::Value(a) => a,
            };
            arrays.push(if a.data_type() == &arrow_type {
                a
            } else {
                arrow::compute::cast(&a, &arrow_type)?
            });
        }
        concat(&arrays, t)?
    };
    if column.data_type() == &arrow_type {
        Ok(column)
    } else {
        arrow::compute::cast(&column, &arrow_type)
    }
}

/// Where navigation `nav` of type `t` finds its value in `frame` ([`navigate`]'s semantics):
/// the row and column for a plain reference, the number for COUNT and COUNT(DISTINCT) of a
/// string column, otherwise the value [`navigate`] computes.
fn locate<'a>(
    spec: &MatchRecognizeSpec,
    nav: &Navigation,
    t: &DataType,
    frame: &Frame<'_, 'a>,
    name: &str,
) -> Result<Located<'a>, RuntimeError> {
    let rows = frame.rows;
    let running: &[Seen<'a>] = frame.at.and_then(|at| rows.get(..=at)).unwrap_or(&[]);
    let covered = |var: Option<usize>| {
        running
            .iter()
            .filter(move |r| var.is_none_or(|v| spec.covers(v, r.var)))
    };
    let cell = |row: Option<&Seen<'a>>, column: usize| Located::Cell(row.map(|r| r.row), column);
    Ok(match nav {
        Navigation::Prev { column, offset } => cell(
            frame
                .at
                .and_then(|at| at.checked_sub(*offset as usize))
                .and_then(|i| rows.get(i)),
            *column,
        ),
        Navigation::Next { column, offset } => cell(
            frame
                .at
                .and_then(|at| at.checked_add(*offset as usize))
                .and_then(|i| rows.get(i)),
            *column,
        ),
        Navigation::First {
            var,
            column,
            offset,
        } => cell(covered(*var).nth(*offset as usize), *column),
        Navigation::Last {
            var,
            column,
            offset,
        } => cell(covered(*var).rev().nth(*offset as usize), *column),
        Navigation::MatchRowtime => cell(frame.at.and_then(|at| rows.get(at)), spec.order_by),
        Navigation::Aggregate {
            function: MatchAggregate::Count,
            var,
            column,
        } => Located::Count(match column {
            None => covered(*var).count() as i64,
            Some(c) => covered(*var)
                .filter(|r| {
                    r.row
                        .batch
                        .columns()
                        .get(*c)
                        .is_some_and(|a| a.is_valid(r.row.index))
                })
                .count() as i64,
        }),
        Navigation::Aggregate {
            function: MatchAggregate::CountDistinct,
            var,
            column: Some(c),
        } if covered(*var).all(|r| {
            r.row
                .batch
                .columns()
                .get(*c)
                .is_none_or(|a| a.data_type() == &ArrowType::Utf8)
        }) =>
        {
            let mut distinct: Vec<&str> = covered(*var)
                .filter_map(|r| {
                    let a = r.row.batch.columns().get(*c)?.as_string_opt::<i32>()?;
                    a.is_valid(r.row.index).then(|| a.value(r.row.index))
                })
                .collect();
            distinct.sort_unstable();
            distinct.dedup();
            Located::Count(distinct.len() as i64)
        }
        // FINAL: as if the current row were the last.
        Navigation::Final(inner) => {
            let last = Frame {
                rows,
                at: rows.len().checked_sub(1),
                kind: frame.kind,
            };
            return locate(spec, inner, t, &last, name);
        }
        _ => Located::Value(navigate(spec, nav, t, frame, name)?),
    })
}

fn concat(values: &[ArrayRef], t: &DataType) -> Result<ArrayRef, arrow::error::ArrowError> {
    if values.is_empty() {
        return Ok(new_null_array(&t.to_arrow(), 0));
    }
    let refs: Vec<&dyn Array> = values.iter().map(|a| a.as_ref()).collect();
    arrow::compute::concat(&refs)
}

/// A row of a frame with its variable (borrowed from a match's or a partition's rows).
#[derive(Clone, Copy)]
struct Seen<'a> {
    row: &'a RowRef,
    var: usize,
}

/// Where a navigation is evaluated: the rows of a match (or, in a condition, a thread's rows
/// then the row being classified), the current one, and what the rows are.
struct Frame<'f, 'a> {
    rows: &'f [Seen<'a>],
    /// The current row (`None`: an empty match or an unmatched row). RUNNING navigation sees
    /// the rows up to it.
    at: Option<usize>,
    kind: Kind,
}

/// One navigation's value (a one-row array of type `t`) in `frame`: the navigations [`locate`]
/// does not find as a cell or a count (aggregates other than COUNT, CLASSIFIER, MATCH_NUMBER,
/// shifted logical offsets, timeouts).
fn navigate(
    spec: &MatchRecognizeSpec,
    nav: &Navigation,
    t: &DataType,
    frame: &Frame<'_, '_>,
    name: &str,
) -> Result<ArrayRef, RuntimeError> {
    let arrow_type = t.to_arrow();
    let null = || new_null_array(&arrow_type, 1);
    let rows = frame.rows;
    let running: &[Seen<'_>] = frame.at.and_then(|at| rows.get(..=at)).unwrap_or(&[]);
    let current = frame.at.and_then(|at| rows.get(at));
    let cell = |row: Option<&Seen<'_>>, column: usize| -> ArrayRef {
        row.and_then(|r| r.row.cell(column)).unwrap_or_else(null)
    };
    let of_var = |var: Option<usize>| -> Vec<&Seen<'_>> {
        running
            .iter()
            .filter(|r| var.is_none_or(|v| spec.covers(v, r.var)))
            .collect()
    };
    // The position in `rows` of the row a logical navigation finds.
    let logical = |nav: &Navigation| -> Option<usize> {
        let (var, offset, first) = match nav {
            Navigation::First { var, offset, .. } => (*var, *offset as usize, true),
            Navigation::Last { var, offset, .. } => (*var, *offset as usize, false),
            _ => return None,
        };
        let at: Vec<usize> = (0..running.len())
            .filter(|&i| var.is_none_or(|v| spec.covers(v, running[i].var)))
            .collect();
        if first {
            at.get(offset).copied()
        } else {
            at.len()
                .checked_sub(1 + offset)
                .and_then(|i| at.get(i).copied())
        }
    };
    let value = match nav {
        // Plain references, MATCH_ROWTIME() and FINAL are located by [`locate`], which calls this
        // for the other navigations only.
        Navigation::Prev { .. }
        | Navigation::Next { .. }
        | Navigation::First { .. }
        | Navigation::Last { .. }
        | Navigation::MatchRowtime
        | Navigation::Final(_) => null(),
        Navigation::Aggregate {
            function,
            var,
            column,
        } => aggregate(*function, &of_var(*var), *column, t)
            .map_err(|e| RuntimeError::arrow(name, e))?,
        Navigation::Classifier => match current.and_then(|r| spec.variables.get(r.var)) {
            Some(v) => Arc::new(StringArray::from(vec![v.as_str()])),
            None => null(),
        },
        Navigation::ClassifierOf(var) => match of_var(Some(*var))
            .last()
            .and_then(|r| spec.variables.get(r.var))
        {
            Some(v) => Arc::new(StringArray::from(vec![v.as_str()])),
            None => null(),
        },
        Navigation::Shifted { logical: inner, by } => {
            let column = match inner.as_ref() {
                Navigation::First { column, .. } | Navigation::Last { column, .. } => *column,
                _ => usize::MAX,
            };
            let row = logical(inner)
                .and_then(|i| i64::try_from(i).ok())
                .and_then(|i| i.checked_add(*by))
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| rows.get(i));
            cell(row, column)
        }
        Navigation::MatchNumber => match frame.kind {
            Kind::Match(number) => Arc::new(Int64Array::from(vec![
                i64::try_from(number).unwrap_or(i64::MAX),
            ])),
            _ => null(),
        },
        Navigation::TimedOut => Arc::new(arrow::array::BooleanArray::from(vec![matches!(
            frame.kind,
            Kind::TimedOut(_)
        )])),
        Navigation::Expected => match frame.kind {
            Kind::TimedOut(Some(v)) => match spec.variables.get(v) {
                Some(v) => Arc::new(StringArray::from(vec![v.as_str()])),
                None => null(),
            },
            _ => null(),
        },
    };
    if value.data_type() == &arrow_type {
        Ok(value)
    } else {
        arrow::compute::cast(&value, &arrow_type).map_err(|e| RuntimeError::arrow(name, e))
    }
}

/// COUNT/SUM/AVG/MIN/MAX over `column` of `rows` (NULLs ignored; COUNT(*) counts rows).
fn aggregate(
    function: MatchAggregate,
    rows: &[&Seen<'_>],
    column: Option<usize>,
    t: &DataType,
) -> Result<ArrayRef, arrow::error::ArrowError> {
    let Some(column) = column else {
        return Ok(Arc::new(Int64Array::from(vec![rows.len() as i64])));
    };
    let cells: Vec<ArrayRef> = rows.iter().filter_map(|r| r.row.cell(column)).collect();
    let arrow_type = t.to_arrow();
    if cells.is_empty() {
        return Ok(match function {
            MatchAggregate::Count | MatchAggregate::CountDistinct => {
                Arc::new(Int64Array::from(vec![0]))
            }
            _ => new_null_array(&arrow_type, 1),
        });
    }
    let refs: Vec<&dyn Array> = cells.iter().map(|a| a.as_ref()).collect();
    let values = arrow::compute::concat(&refs)?;
    let valid = values.len() - values.null_count();
    match function {
        MatchAggregate::Count => return Ok(Arc::new(Int64Array::from(vec![valid as i64]))),
        MatchAggregate::CountDistinct => {
            let converter = arrow::row::RowConverter::new(vec![arrow::row::SortField::new(
                values.data_type().clone(),
            )])?;
            let encoded = converter.convert_columns(std::slice::from_ref(&values))?;
            let mut distinct: Vec<&[u8]> = (0..values.len())
                .filter(|&i| values.is_valid(i))
                .map(|i| encoded.row(i).data())
                .collect();
            distinct.sort_unstable();
            distinct.dedup();
            return Ok(Arc::new(Int64Array::from(vec![distinct.len() as i64])));
        }
        _ => {}
    }
    if valid == 0 {
        return Ok(new_null_array(&arrow_type, 1));
    }
    if matches!(
        function,
        MatchAggregate::StddevPop
            | MatchAggregate::StddevSamp
            | MatchAggregate::VarPop
            | MatchAggregate::VarSamp
    ) {
        let v = arrow::compute::cast(&values, &ArrowType::Float64)?;
        let present: Vec<f64> = v.as_primitive::<Float64Type>().iter().flatten().collect();
        let n = present.len() as f64;
        let mean = present.iter().sum::<f64>() / n;
        let squares: f64 = present.iter().map(|x| (x - mean) * (x - mean)).sum();
        let samp = matches!(
            function,
            MatchAggregate::StddevSamp | MatchAggregate::VarSamp
        );
        if samp && present.len() < 2 {
            return Ok(new_null_array(&arrow_type, 1));
        }
        let variance = squares / if samp { n - 1.0 } else { n };
        let r = match function {
            MatchAggregate::StddevPop | MatchAggregate::StddevSamp => variance.sqrt(),
            _ => variance,
        };
        return Ok(Arc::new(Float64Array::from(vec![r])));
    }
    let floating = matches!(t, DataType::Float | DataType::Double);
    let result: ArrayRef = if floating {
        let v = arrow::compute::cast(&values, &ArrowType::Float64)?;
        let v = v.as_primitive::<Float64Type>();
        let present = v.iter().flatten();
        let r = match function {
            MatchAggregate::Sum => present.sum::<f64>(),
            MatchAggregate::Avg => present.sum::<f64>() / valid as f64,
            MatchAggregate::Min => present.fold(f64::INFINITY, f64::min),
            _ => present.fold(f64::NEG_INFINITY, f64::max),
        };
        Arc::new(Float64Array::from(vec![r]))
    } else if matches!(values.data_type(), ArrowType::Utf8) {
        let s = values.as_string::<i32>();
        let present = s.iter().flatten();
        let r = match function {
            MatchAggregate::Min => present.min(),
            _ => present.max(),
        };
        Arc::new(StringArray::from(vec![r]))
    } else {
        let v = arrow::compute::cast(&values, &ArrowType::Int64)?;
        let v = v.as_primitive::<Int64Type>();
        let present = v.iter().flatten();
        let r = match function {
            MatchAggregate::Sum => present.fold(0i64, i64::wrapping_add),
            MatchAggregate::Avg => present.fold(0i64, i64::wrapping_add) / valid as i64,
            MatchAggregate::Min => present.min().unwrap_or(0),
            _ => present.max().unwrap_or(0),
        };
        Arc::new(Int64Array::from(vec![r]))
    };
    if result.data_type() == &arrow_type {
        Ok(result)
    } else {
        arrow::compute::cast(&result, &arrow_type)
    }
}

impl Operator for MatchRecognize {
    fn on_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Vec<Event>,
    ) -> Result<(), RuntimeError> {
        let input = batch;
        let batch = Arc::new(self.with_derived(&input)?);
        let times = self.times(&batch)?;
        let masks = self.row_conditions(&batch)?;
        let keys = self.keys.encode(&batch).map_err(|e| self.arrow_err(e))?;
        let then = self.order_then(&batch)?;
        let mut late = Vec::new();
        for (i, ts) in times.iter().enumerate() {
            let Some(ts) = *ts else {
                late.push(i as u32);
                continue;
            };
            let key = KeyBytes::new(keys.key(i));
            let row = RowRef {
                batch: batch.clone(),
                index: i,
            };
            match self.emit {
                EmitMode::Watermark => {
                    if ts <= self.watermark_ms {
                        late.push(i as u32);
                        continue;
                    }
                    self.waiting.push(Waiting {
                        ts,
                        mask: masks[i],
                        then: then
                            .as_ref()
                            .map(|rows| rows.row(i).data().to_vec())
                            .unwrap_or_default(),
                        seq: self.arrivals,
                        key,
                        row,
                    });
                    self.arrivals += 1;
                }
                EmitMode::Arrival => self.feed(key, row, ts, masks[i])?,
            }
        }
        if self.emit == EmitMode::Arrival {
            self.flush_wave()?;
            self.compact()?;
        }
        self.late.keep(&self.name, &input, late)?;
        self.emit(out)
    }

    fn on_watermark(
        &mut self,
        watermark_ms: i64,
        out: &mut Vec<Event>,
    ) -> Result<(), RuntimeError> {
        if self.emit == EmitMode::Watermark {
            self.release(watermark_ms)?;
        }
        self.watermark_ms = self.watermark_ms.max(watermark_ms);
        self.expire()?;
        self.expire_idle()?;
        self.emit(out)?;
        out.push(Event::Watermark(watermark_ms));
        Ok(())
    }

    fn on_end(&mut self, out: &mut Vec<Event>) -> Result<(), RuntimeError> {
        self.release(i64::MAX)?;
        let mut keys: Vec<KeyBytes> = self.partitions.keys().map(KeyBytes::new).collect();
        keys.sort_by(|a, b| a.as_slice().cmp(b.as_slice()));
        for key in keys {
            self.finish_partition(key.as_slice())?;
        }
        if let Some(active) = &mut self.active {
            active.clear();
        }
        self.emit(out)
    }

    fn late_rows(&self) -> u64 {
        self.late.count()
    }

    fn take_late(&mut self) -> Option<RecordBatch> {
        self.late.take()
    }

    /// The partitions (matchers, stored rows, deadlines), the rows waiting for the watermark, the
    /// watermark and the arrival counter (`snapshot.rs` has the layout).
    fn snapshot(&mut self, w: &mut StateWriter) -> Result<bool, RuntimeError> {
        self.write_state(w)?;
        Ok(true)
    }

    /// [`Operator::snapshot`]'s bytes, the stored rows gathered and encoded by the checkpoint's
    /// writer thread ([`MatchRecognize::state_parts`]).
    fn snapshot_parts(&mut self) -> Result<Option<StateSnapshot>, RuntimeError> {
        self.state_parts().map(Some)
    }

    fn restore(&mut self, r: &mut StateReader<'_>) -> Result<(), RuntimeError> {
        self.read_state(r)
    }
}

/// The operator against the backtracking reference matcher of `matcher::differential`, on
/// generated patterns and partitioned inputs split into random batches, in both emit modes: what
/// the operator adds — partitions, ordering, the rows it skips, drops and copies — must not change
/// which matches are found.
#[cfg(test)]
mod due_queue {
    use super::*;

    #[test]
    fn due_partitions_come_in_time_then_key_order_and_dropped_ones_not_at_all() {
        let mut partitions: KeyedState<Partition> = KeyedState::default();
        let mut queue = DueQueue::new();
        // Ids in the opposite order of keys: the queue's own order (time, id) is not the one
        // partitions are processed in.
        for (stamp, key) in (1..).zip([b"d".as_slice(), b"c", b"b", b"a"]) {
            let id = partitions.id_or_insert_with(key, || Partition {
                stamp,
                ..Partition::default()
            });
            let p = partitions.get(id).expect("partition");
            queue.push(Due::of(if key == b"d" { 5 } else { 10 }, id, p));
        }
        // "c" is dropped, and its id taken by "e" (queued later, at 20): the entry queued for
        // "c" names a partition that is gone.
        let c = partitions.find(b"c").expect("c");
        partitions.remove(c);
        let e = partitions.id_or_insert_with(b"e", || Partition {
            stamp: 99,
            ..Partition::default()
        });
        assert_eq!(e, c, "the id is reused");
        queue.push(Due::of(20, e, partitions.get(e).expect("e")));

        let keys = |due: Vec<Due>| -> Vec<(i64, Vec<u8>)> {
            due.iter()
                .map(|d| (d.at, partitions.key(d.id).to_vec()))
                .collect()
        };
        let due = pop_due(&mut queue, &partitions, |t| t <= 10);
        assert_eq!(
            keys(due),
            vec![(5, b"d".to_vec()), (10, b"a".to_vec()), (10, b"b".to_vec())]
        );
        assert_eq!(
            keys(pop_due(&mut queue, &partitions, |t| t <= 20)),
            vec![(20, b"e".to_vec())]
        );
        assert!(queue.is_empty());
    }
}

#[cfg(test)]
mod differential {
    use std::collections::BTreeMap;

    use arrow::array::{Int64Array, StringArray, TimestampMillisecondArray};
    use fsql_plan::{AfterMatch, BinaryOp, Expr, ExprKind, Literal, Measure, Pattern};

    use super::matcher::differential::{LETTERS, Matches, Rng, VARS, gen_case, reference};
    use super::*;
    use crate::testkit::{bin, col, lit};

    /// `c IN (set)`.
    fn letter_in(set: &[char]) -> Expr {
        if set.is_empty() {
            return lit(Literal::Boolean(false), DataType::Boolean);
        }
        Expr {
            kind: ExprKind::InList {
                arg: Box::new(col(1, DataType::String)),
                list: set
                    .iter()
                    .map(|c| lit(Literal::String(c.to_string()), DataType::String))
                    .collect(),
                negated: false,
            },
            data_type: DataType::Boolean,
            nullable: true,
        }
    }

    /// Input (key, c, ts, seq); variables 0..3 accept their letters, variable 3 at most two rows
    /// per match (as the reference's `accepts`). ALL ROWS PER MATCH with the match's first row and
    /// each row's variable as measures, so the output spells out every match.
    fn spec(p: Pattern, sets: &[Vec<char>], skip: AfterMatch) -> MatchRecognizeSpec {
        let count_3 = Navigation::Aggregate {
            function: MatchAggregate::Count,
            var: Some(3),
            column: None,
        };
        let first_seq = Navigation::First {
            var: None,
            column: 3,
            offset: 0,
        };
        let at_most_two = bin(
            BinaryOp::LtEq,
            col(4, DataType::BigInt),
            lit(Literal::Int(2), DataType::BigInt),
            DataType::Boolean,
        );
        let defines = (0..VARS)
            .map(|v| {
                let letters = letter_in(&sets[v]);
                Some(if v == 3 {
                    bin(
                        BinaryOp::And,
                        letters,
                        at_most_two.clone(),
                        DataType::Boolean,
                    )
                } else {
                    letters
                })
            })
            .collect();
        MatchRecognizeSpec {
            partition_by: vec![0],
            order_by: 2,
            order_then: vec![],
            variables: (0..VARS).map(|v| format!("V{v}")).collect(),
            subsets: vec![],
            derived: vec![],
            pattern: p,
            defines,
            navigations: vec![
                (count_3, DataType::BigInt),
                (first_seq, DataType::BigInt),
                (Navigation::Classifier, DataType::String),
            ],
            measures: vec![
                Measure {
                    name: "first_seq".into(),
                    expr: col(5, DataType::BigInt),
                },
                Measure {
                    name: "var".into(),
                    expr: col(6, DataType::String),
                },
            ],
            rows_per_match: RowsPerMatch::AllShowEmpty,
            after_match: skip,
            within_ms: None,
            emit_timeouts: false,
        }
    }

    #[test]
    fn one_row_per_match_keeps_only_the_columns_it_reads() {
        // Input (key, c, ts, seq): ALL ROWS PER MATCH outputs every column, so keeps them all.
        let mut s = spec(
            Pattern::Var(0),
            &[vec!['a'], vec![], vec![], vec![]],
            AfterMatch::PastLastRow,
        );
        assert_eq!(kept_columns(&s, 4), None);
        // ONE ROW PER MATCH: the key and the time, `c` (the conditions) and `seq` (FIRST(seq)).
        s.rows_per_match = RowsPerMatch::One;
        assert_eq!(kept_columns(&s, 4), Some(vec![true; 4]));
        // Without the conditions and FIRST(seq), `c` and `seq` are read by nothing.
        s.defines = vec![None; VARS];
        s.navigations = vec![(Navigation::MatchNumber, DataType::BigInt)];
        s.measures = vec![Measure {
            name: "n".into(),
            expr: col(4, DataType::BigInt),
        }];
        assert_eq!(kept_columns(&s, 4), Some(vec![true, false, true, false]));
        // A measure reading `seq` of the last row keeps it.
        s.measures.push(Measure {
            name: "seq".into(),
            expr: col(3, DataType::BigInt),
        });
        assert_eq!(kept_columns(&s, 4), Some(vec![true, false, true, true]));
    }

    #[test]
    fn the_operator_finds_the_matches_the_reference_matcher_prefers() {
        let cases: u64 = std::env::var("FSQL_MR_OPERATOR_CASES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(500);
        let input = Arc::new(Schema::new(vec![
            Field::new("key", ArrowType::Int64, true),
            Field::new("c", ArrowType::Utf8, true),
            Field::new(
                "ts",
                ArrowType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None),
                true,
            ),
            Field::new("seq", ArrowType::Int64, true),
        ]));
        let output = Arc::new(Schema::new(vec![
            Field::new("key", ArrowType::Int64, true),
            Field::new(
                "ts",
                ArrowType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None),
                true,
            ),
            Field::new("first_seq", ArrowType::Int64, true),
            Field::new("var", ArrowType::Utf8, true),
            Field::new("c", ArrowType::Utf8, true),
            Field::new("seq", ArrowType::Int64, true),
        ]));
        let mut compared = 0;
        for seed in 0..cases {
            let mut r = Rng(crate::compiled::generated::Rng::seeded(seed ^ 0x5eed));
            let (p, sets, skip) = gen_case(&mut r);
            // Up to 3 keys, rows interleaved; `seq` is the row's global position and its time.
            let n = r.below(30) as usize;
            let keys: Vec<i64> = (0..n).map(|_| r.below(3) as i64).collect();
            let letters: Vec<char> = (0..n).map(|_| LETTERS[r.below(3) as usize]).collect();
            let mut expected: BTreeMap<i64, Result<Matches, ()>> = BTreeMap::new();
            let mut positions: Vec<u64> = Vec::with_capacity(n);
            for key in 0..3 {
                let rows: Vec<usize> = (0..n).filter(|&i| keys[i] == key).collect();
                let text: Vec<char> = rows.iter().map(|&i| letters[i]).collect();
                if !rows.is_empty() {
                    expected.insert(key, reference(&p, &text, &sets, skip).map_err(|_| ()));
                }
            }
            for i in 0..n {
                positions.push((0..i).filter(|&j| keys[j] == keys[i]).count() as u64);
            }
            let emit = if r.below(2) == 0 {
                EmitMode::Watermark
            } else {
                EmitMode::Arrival
            };
            let spec = spec(p.clone(), &sets, skip);
            let mut op = MatchRecognize::new("mr", &spec, &input, output.clone(), emit, true, None)
                .expect("the operator builds");
            let mut out = Vec::new();
            let mut failed = false;
            let mut at = 0;
            while at < n && !failed {
                let len = (1 + r.below(6) as usize).min(n - at);
                let range = at..at + len;
                let batch = RecordBatch::try_new(
                    input.clone(),
                    vec![
                        Arc::new(Int64Array::from_iter_values(range.clone().map(|i| keys[i]))),
                        Arc::new(StringArray::from_iter_values(
                            range.clone().map(|i| letters[i].to_string()),
                        )),
                        Arc::new(TimestampMillisecondArray::from_iter_values(
                            range.clone().map(|i| i as i64),
                        )),
                        Arc::new(Int64Array::from_iter_values(
                            range.clone().map(|i| i as i64),
                        )),
                    ],
                )
                .expect("batch");
                failed |= op.on_batch(0, batch, &mut out).is_err();
                failed |= op.on_watermark((at + len) as i64 - 1, &mut out).is_err();
                at += len;
            }
            failed |= !failed && op.on_end(&mut out).is_err();
            let context = format!(
                "seed {seed}: pattern {p:?}, sets {sets:?}, {skip:?}, {emit:?}, keys {keys:?}, letters {letters:?}"
            );
            if expected.values().any(Result::is_err) {
                assert!(
                    failed,
                    "the reference fails, the operator does not: {context}"
                );
                continue;
            }
            assert!(!failed, "the operator fails: {context}");
            // Per key, per match (its first row, or the row of an empty match): rows and variables.
            let mut got: BTreeMap<i64, BTreeMap<u64, Vec<(u64, usize)>>> = BTreeMap::new();
            for e in &out {
                let Event::Batch(b) = e else { continue };
                let key = b.column(0).as_primitive::<Int64Type>();
                let first = b.column(2).as_primitive::<Int64Type>();
                let var = b.column(3).as_string::<i32>();
                let seq = b.column(5).as_primitive::<Int64Type>();
                for i in 0..b.num_rows() {
                    let row = seq.value(i) as usize;
                    let start = if first.is_valid(i) {
                        first.value(i) as usize
                    } else {
                        row
                    };
                    let rows = got
                        .entry(key.value(i))
                        .or_default()
                        .entry(positions[start])
                        .or_default();
                    if var.is_valid(i) {
                        let v = var.value(i)[1..].parse::<usize>().expect("V<n>");
                        rows.push((positions[row], v));
                    }
                }
            }
            for (key, matches) in &expected {
                let Ok(matches) = matches else { continue };
                let want: BTreeMap<u64, Vec<(u64, usize)>> = matches.iter().cloned().collect();
                let have = got.remove(key).unwrap_or_default();
                assert_eq!(have, want, "key {key}, {context}");
                compared += usize::from(!want.is_empty());
            }
            assert!(
                got.is_empty(),
                "matches in no partition: {got:?}, {context}"
            );
        }
        assert!(
            compared as u64 * 3 >= cases,
            "only {compared} partitions had a match"
        );
    }
}
