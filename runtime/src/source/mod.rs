//! Sources: connectors that produce batches of a table's physical columns.
//!
//! | connector | module | bounded |
//! |---|---|---|
//! | `filesystem` (`json`, `csv`) | [`filesystem`] | yes |
//! | `datagen` | [`datagen`] | with `number-of-rows` or a `sequence` field |
//! | `payments-generator` | [`payments`] | with `number-of-rows` |
//! | `nexmark` | [`nexmark`] | with `events.num` |
//! | `kafka` | [`crate::kafka::source`] | with `scan.bounded.mode` |
//!
//! The executor drives a source by calling [`Source::poll`]; computed columns and watermarks are
//! applied on top by the executor, so a source only decodes.

pub mod builder;
mod csv_decode;
pub mod datagen;
pub mod dead_letter;
pub mod filesystem;
mod json_decode;
mod json_lexer;
pub mod json_reference;
mod line_reader;
pub mod nexmark;
pub mod payments;
pub(crate) mod record_decoder;
pub mod rng;
pub mod split_watermarks;
pub mod test_input;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use fsql_plan::{Schema, SourceSpec};

use crate::batcher::{BatchConfig, Batcher};
use crate::error::RuntimeError;

/// What one poll of a source produced.
#[derive(Debug)]
pub enum SourcePoll {
    /// A batch of the table's physical columns.
    Batch(RecordBatch),
    /// A batch whose rows come from several splits (Kafka partitions): `splits[i]` is the split
    /// of row `i`. Watermarks are then kept per split ([`split_watermarks`]).
    SplitBatch {
        /// The rows.
        batch: RecordBatch,
        /// One split id per row.
        splits: Vec<u32>,
    },
    /// An explicit watermark (test inputs); connectors derive watermarks from the table's
    /// `WATERMARK FOR` instead.
    Watermark(i64),
    /// Nothing now; poll again at the given time (or soon, if `None`).
    Pending(Option<Instant>),
    /// The source is exhausted (bounded sources only).
    End,
}

/// A record that could not be decoded: counted, reported and dead-lettered, never silently dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MalformedRecord {
    /// The table (source) name.
    pub table: String,
    /// The file it came from, for file sources.
    pub file: Option<String>,
    /// Its 1-based line number in `file`.
    pub line: Option<u64>,
    /// Where it came from when not a file line (`topic/partition@offset` for Kafka).
    pub origin: Option<String>,
    /// Why it could not be decoded.
    pub error: String,
    /// The raw record text (lossy UTF-8).
    pub raw: String,
}

/// `path:line: error`, the form the CLI prints on stderr.
impl fmt::Display for MalformedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}: {}", self.error),
            (Some(file), None) => write!(f, "{file}: {}", self.error),
            (None, _) if self.origin.is_some() => write!(
                f,
                "{} ({}): {}",
                self.table,
                self.origin.as_deref().unwrap_or_default(),
                self.error
            ),
            _ => write!(f, "{}: {}", self.table, self.error),
        }
    }
}

/// What a source may use while polling: the clock and the malformed-record reporter.
pub struct SourceContext<'a> {
    /// The time of this poll.
    pub now: Instant,
    reporter: &'a mut dyn FnMut(&MalformedRecord),
    malformed: u64,
}

impl<'a> SourceContext<'a> {
    /// A context for one poll at `now`, reporting malformed records to `reporter`.
    pub fn new(now: Instant, reporter: &'a mut dyn FnMut(&MalformedRecord)) -> Self {
        SourceContext {
            now,
            reporter,
            malformed: 0,
        }
    }

    /// Counts a malformed record and reports it unless `quiet` (`'json.ignore-parse-errors'`).
    pub fn malformed(&mut self, record: &MalformedRecord, quiet: bool) {
        self.malformed += 1;
        if !quiet {
            (self.reporter)(record);
        }
    }

    /// Malformed records seen during this poll.
    pub fn malformed_count(&self) -> u64 {
        self.malformed
    }
}

/// A connector that produces batches of a table's physical schema.
pub trait Source {
    /// Produces the next batch (or watermark, or says it has nothing now, or that it ended).
    fn poll(&mut self, ctx: &mut SourceContext<'_>) -> Result<SourcePoll, RuntimeError>;

    /// The splits assigned now (Kafka partitions), for per-split watermarks; `None` for a source
    /// without splits.
    fn splits(&self) -> Option<&[u32]> {
        None
    }

    /// Remembers the current positions as the ones the next [`Source::commit`] commits: called
    /// between batches, when the sinks begin flushing the output of every row emitted so far.
    fn mark(&mut self) {}

    /// Called once the sinks made the output of the rows up to the last [`Source::mark`]
    /// durable: a source with positions to commit (Kafka offsets) commits those, after making
    /// its own side outputs (dead letters) durable. With
    /// `wait` (the run's last commit) it returns once the commit is durable; otherwise
    /// (periodic commits, which must not stall the pipeline) the commit may complete in the
    /// background, a failed one being retried by the next.
    fn commit(&mut self, _wait: bool) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// Whether the source wants a [`Source::commit`] now (its commit interval passed).
    fn commit_due(&self, _now: Instant) -> bool {
        false
    }

    /// Where the source is, for a checkpoint: the position after the last row it handed out
    /// (called between polls). The default refuses: a source that cannot resume cannot be
    /// checkpointed.
    fn position(&mut self) -> Result<crate::checkpoint::SourcePosition, RuntimeError> {
        Err(RuntimeError::Checkpoint(
            "this connector cannot resume from a position".into(),
        ))
    }

    /// Resumes after `position` (from [`Source::position`] of an earlier run), before the first
    /// poll.
    fn seek(&mut self, _position: &crate::checkpoint::SourcePosition) -> Result<(), RuntimeError> {
        Err(RuntimeError::Checkpoint(
            "this connector cannot resume from a position".into(),
        ))
    }

    /// Records available but not read yet (Kafka: the consumer lag), when the source knows.
    fn lag(&self) -> Option<u64> {
        None
    }
}

/// The Arrow schema of batches of `schema`; every field is nullable at runtime (nullability is a
/// compile-time property, and a NULL the compiler did not predict, e.g. from integer division by
/// zero, must not fail a batch).
pub fn runtime_schema(schema: &Schema) -> SchemaRef {
    let arrow = schema.to_arrow();
    let fields: Vec<arrow::datatypes::Field> = arrow
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    Arc::new(arrow::datatypes::Schema::new(fields))
}

/// Everything a connector needs to open.
#[derive(Clone)]
pub struct OpenOptions {
    /// Batch size and linger.
    pub batch: BatchConfig,
    /// Ignore `rows-per-second` throttling.
    pub unthrottled: bool,
    /// Sinks hand their input to the collector instead of opening connectors.
    pub capture_sinks: bool,
    /// Positions to resume from (a checkpoint's), by table.
    pub resume: std::collections::BTreeMap<String, crate::checkpoint::SourcePosition>,
    /// The physical columns the pipeline reads ([`fsql_plan::Pipeline::source_columns_read`];
    /// `None`: all). The `json` format leaves the others NULL without decoding them.
    pub columns_read: Option<Vec<bool>>,
}

/// Opens the connector of `spec`.
pub fn open_source(
    spec: &SourceSpec,
    options: &OpenOptions,
) -> Result<Box<dyn Source>, RuntimeError> {
    let mut source: Box<dyn Source> = match spec.connector.connector.as_str() {
        "filesystem" => Box::new(filesystem::FileSource::open(spec, options)?),
        "datagen" => Box::new(datagen::DatagenSource::open(spec, options)?),
        "payments-generator" => Box::new(payments::PaymentsSource::open(spec, options)?),
        "nexmark" => Box::new(nexmark::NexmarkSource::open(spec, options)?),
        // Kafka resumes as it connects (see `KafkaSource::open`).
        "kafka" => {
            return Ok(Box::new(crate::kafka::source::KafkaSource::open(
                spec, options,
            )?));
        }
        other => {
            return Err(RuntimeError::connector(
                &spec.table,
                format!(
                    "connector '{other}' cannot be read by this runtime (known: filesystem, datagen, payments-generator, nexmark, kafka)"
                ),
            ));
        }
    };
    if let Some(position) = options.resume.get(&spec.table) {
        source.seek(position).map_err(|e| match e {
            RuntimeError::Checkpoint(m) => RuntimeError::connector(&spec.table, m),
            e => e,
        })?;
    }
    Ok(source)
}

/// Paces a generator at `rows_per_second` and cuts its output into size/linger-bounded batches.
#[derive(Clone, Debug)]
pub struct Throttle {
    rate: Option<f64>,
    start: Option<Instant>,
    produced: u64,
    batcher: Batcher,
}

impl Throttle {
    /// A throttle at `rate` rows per second (`None`: as fast as possible).
    pub fn new(rate: Option<f64>, batch: BatchConfig) -> Self {
        Throttle {
            rate: rate.filter(|r| *r > 0.0),
            start: None,
            produced: 0,
            batcher: Batcher::new(batch),
        }
    }

    /// How many rows to generate now (at most `remaining`), or when to ask again.
    pub fn next(&mut self, now: Instant, remaining: u64) -> Result<usize, Option<Instant>> {
        let max = self.batcher.config().max_rows.max(1);
        let cap = remaining.min(max as u64) as usize;
        let Some(rate) = self.rate else {
            self.produced += cap as u64;
            return Ok(cap);
        };
        let start = *self.start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start).as_secs_f64();
        let due_total = (elapsed * rate) as u64 + 1;
        let due = due_total.saturating_sub(self.produced).min(remaining) as usize;
        self.batcher.reset();
        if due == 0 {
            return Err(at(start, self.produced as f64 / rate));
        }
        if due >= max {
            self.produced += max as u64;
            return Ok(max);
        }
        // Fewer rows than a batch are due: wait for the linger time counted from the moment the
        // oldest due row became due.
        let oldest_due = at(start, self.produced as f64 / rate).unwrap_or(now);
        self.batcher.add(due, oldest_due);
        if self.batcher.should_flush(now) {
            self.produced += due as u64;
            Ok(due)
        } else {
            Err(self.batcher.deadline())
        }
    }
}

/// `start` plus `secs` seconds, or `None` if that is not representable.
fn at(start: Instant, secs: f64) -> Option<Instant> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .and_then(|d| start.checked_add(d))
}

/// Reads an option as a number.
pub(crate) fn option_number<T: std::str::FromStr>(
    spec: &SourceSpec,
    key: &str,
) -> Result<Option<T>, RuntimeError> {
    match spec.connector.options.get(key) {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|_| {
            RuntimeError::option(&spec.table, key, format!("'{v}' is not a valid number"))
        }),
    }
}

/// Reads an option as a boolean (`true`/`false`, case-insensitive).
pub(crate) fn option_bool(
    options: &std::collections::BTreeMap<String, String>,
    table: &str,
    key: &str,
) -> Result<bool, RuntimeError> {
    match options.get(key).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if v == "true" => Ok(true),
        Some(v) if v == "false" => Ok(false),
        Some(v) => Err(RuntimeError::option(
            table,
            key,
            format!("'{v}' is not true or false"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_paces_rows_and_batches_by_linger() {
        let config = BatchConfig {
            max_rows: 100,
            linger: Duration::from_millis(5),
        };
        let mut t = Throttle::new(Some(1000.0), config);
        let t0 = Instant::now();
        // The first row is due at once but waits for the linger.
        assert!(t.next(t0, u64::MAX).is_err());
        // After 5 ms, 6 rows are due (rows 0..=5 at 1 row/ms), emitted together.
        assert_eq!(t.next(t0 + Duration::from_millis(5), u64::MAX), Ok(6));
        // 200 ms later far more than a batch is due: a full batch goes at once.
        assert_eq!(t.next(t0 + Duration::from_millis(205), u64::MAX), Ok(100));
        // Unthrottled: full batches, capped by what remains.
        let mut fast = Throttle::new(None, config);
        assert_eq!(fast.next(t0, 250), Ok(100));
        assert_eq!(fast.next(t0, 30), Ok(30));
    }
}
