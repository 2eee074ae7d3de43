//! The Kafka source: records of one or more topics decoded straight into Arrow batches.
//!
//! Options (Flink's names): `'topic'` (`'a;b'` for several), `'format'` or `'value.format'`
//! (`json`, `csv`, `raw`) with the format's options (`json.*`, or `value.json.*` under
//! `'value.format'`), `'key.format'` + `'key.fields'` (`'a;b'`) with `key.json.*` options,
//! `'value.fields-include'` (`ALL`, the default: the value holds every physical column;
//! `EXCEPT_KEY`: the key fields are only in the key), `'scan.startup.mode'`, `'scan.bounded.mode'`
//! and their `-timestamp-millis` / `-specific-offsets` companions, `'scan.watermark.idle-timeout'`,
//! `properties.*` for librdkafka. `METADATA` columns: `topic`, `partition`, `offset`, `timestamp`,
//! `timestamp-type`.
//!
//! **Startup.** `group-offsets` (the default when `properties.group.id` is set) subscribes to the
//! topics as a member of the consumer group: several `fsql run` processes in one group split the
//! partitions, and each starts from the group's committed offsets (`properties.auto.offset.reset`,
//! default `earliest`, when there are none). The other modes (`earliest-offset`, the default
//! without a group id; `latest-offset`, `timestamp`, `specific-offsets`) assign every partition to
//! this process and start where the mode says.
//!
//! **Commits.** Auto-commit is off. With a group id, the source commits the offsets of the records
//! it handed out once the executor has processed them and the sinks have flushed
//! (`properties.auto.commit.interval.ms`, default 5 s, and at the end of the run), so a restart
//! with `group-offsets` resumes after the last committed record: at-least-once. When the group
//! takes partitions away, the offsets of every record already read from them are committed first,
//! so the next owner continues exactly where this process stopped.
//!
//! **Bounded runs.** `scan.bounded.mode` = `latest-offset` (the end offsets when the run starts),
//! `timestamp` or `specific-offsets` end each partition there; the source ends when every assigned
//! partition reached its end.
//!
//! **Nothing is lost.** A record that fails to decode (bad JSON, a missing value, a key that does
//! not parse) is counted, reported with `topic/partition@offset`, written to `'dead-letter.topic'`
//! (raw key and value, headers `fsql.error`, `fsql.table`, `fsql.topic`, `fsql.partition`,
//! `fsql.offset`) and/or `'dead-letter.path'`, and never dropped silently.
//!
//! **Batches** are emitted when full (`table.exec.mini-batch.size`), when the first row waited the
//! linger time, or as soon as no more records are waiting, so light load gets low latency and heavy
//! load full batches. Each batch carries the partition of every row for per-partition watermarks.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, Int32Builder, Int64Builder, RecordBatch, RecordBatchOptions, StringBuilder,
};
use arrow::datatypes::{DataType as ArrowType, SchemaRef, TimeUnit};
use fsql_plan::{Schema, SourceSpec};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Header, Message, OwnedHeaders, Timestamp};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::producer::{Record, TopicProducer};
use super::{
    KeyFields, client_config, default_property, kafka_error, key_fields, millis_option,
    parse_specific_offsets, topics, value_format_option,
};
use crate::batcher::Batcher;
use crate::checkpoint::{PartitionOffset, SourcePosition};
use crate::error::RuntimeError;
use crate::source::dead_letter::{DEAD_LETTER_PATH, DeadLetter};
use crate::source::record_decoder::{RecordDecoder, decoder_for};
use crate::source::{
    MalformedRecord, OpenOptions, Source, SourceContext, SourcePoll, runtime_schema,
};

/// How long metadata, watermark and offset lookups may take at open.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A partition of one of the source's topics: `(topic index, partition)`.
type Partition = (usize, i32);

/// The split id of a partition (per-split watermarks).
fn split_id((topic, partition): Partition) -> u32 {
    ((topic as u32) << 20) | (partition as u32 & 0xF_FFFF)
}

/// Where a physical column's values come from.
#[derive(Clone, Copy, Debug)]
enum ColumnSource {
    /// The `i`-th column of the value decoder.
    Value(usize),
    /// The `i`-th column of the key decoder.
    Key(usize),
    /// A metadata column (index into `meta`).
    Meta(usize),
}

/// A `METADATA` column's builder.
enum MetaBuilder {
    Topic(StringBuilder),
    Partition(Int32Builder),
    Offset(Int64Builder),
    /// Milliseconds, rebuilt with the column's timestamp type.
    Timestamp(Int64Builder, ArrowType),
    TimestampType(StringBuilder),
}

impl MetaBuilder {
    fn new(table: &str, key: &str, data_type: &ArrowType) -> Result<MetaBuilder, RuntimeError> {
        let unsupported = || {
            RuntimeError::connector(
                table,
                format!("metadata column '{key}' of type {data_type} is not supported yet"),
            )
        };
        Ok(match (key, data_type) {
            ("topic", ArrowType::Utf8) => MetaBuilder::Topic(StringBuilder::new()),
            ("partition", ArrowType::Int32) => MetaBuilder::Partition(Int32Builder::new()),
            ("offset", ArrowType::Int64) => MetaBuilder::Offset(Int64Builder::new()),
            ("timestamp", ArrowType::Timestamp(TimeUnit::Millisecond, _)) => {
                MetaBuilder::Timestamp(Int64Builder::new(), data_type.clone())
            }
            ("timestamp-type", ArrowType::Utf8) => MetaBuilder::TimestampType(StringBuilder::new()),
            _ => return Err(unsupported()),
        })
    }

    fn append(&mut self, topic: &str, partition: i32, offset: i64, ts: Timestamp) {
        match self {
            MetaBuilder::Topic(b) => b.append_value(topic),
            MetaBuilder::Partition(b) => b.append_value(partition),
            MetaBuilder::Offset(b) => b.append_value(offset),
            MetaBuilder::Timestamp(b, _) => b.append_option(ts.to_millis()),
            MetaBuilder::TimestampType(b) => b.append_value(match ts {
                Timestamp::NotAvailable => "NoTimestampType",
                Timestamp::CreateTime(_) => "CreateTime",
                Timestamp::LogAppendTime(_) => "LogAppendTime",
            }),
        }
    }

    fn finish(&mut self) -> Result<ArrayRef, arrow::error::ArrowError> {
        Ok(match self {
            MetaBuilder::Topic(b) | MetaBuilder::TimestampType(b) => Arc::new(b.finish()),
            MetaBuilder::Partition(b) => Arc::new(b.finish()),
            MetaBuilder::Offset(b) => Arc::new(b.finish()),
            MetaBuilder::Timestamp(b, t) => arrow::compute::cast(&b.finish(), t)?,
        })
    }
}

/// State shared with the consumer's rebalance callback (which runs inside `poll`, on the
/// source's own thread).
#[derive(Default)]
struct Shared {
    topics: Vec<String>,
    /// Whether offsets are committed (a group id is set).
    commit: bool,
    /// Whether partitions start at the group's committed offsets (`group-offsets`): only then
    /// does a committed offset at a bounded run's end mean the partition has nothing to read.
    from_committed: bool,
    /// End offsets (exclusive) of a bounded run, by partition (set once, after connecting):
    /// nothing at or past them is read or committed.
    bounds: OnceLock<HashMap<Partition, i64>>,
    /// The assignment changed: refresh the splits, emit what is staged.
    rebalanced: AtomicBool,
    /// A commit on revocation failed.
    failed: OnceLock<String>,
    /// A background (periodic) commit failed: the next commit must not be skipped as a repeat.
    commit_failed: AtomicBool,
    /// The offsets a checkpoint resumed partitions at (set once, when opening).
    resumed: OnceLock<HashMap<Partition, i64>>,
}

impl Shared {
    /// How far each partition has been read: librdkafka's position (the offset after the last
    /// record polled; every polled record is emitted, dead-lettered or past the bound before the
    /// next poll), capped at the run's bound. Only the partitions in `only`, when given.
    fn positions<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        only: Option<&TopicPartitionList>,
    ) -> HashMap<Partition, i64> {
        let Ok(list) = consumer.position() else {
            return HashMap::new();
        };
        list.elements()
            .iter()
            .filter_map(|e| {
                if only.is_some_and(|l| l.find_partition(e.topic(), e.partition()).is_none()) {
                    return None;
                }
                let p = (
                    self.topics.iter().position(|t| t == e.topic())?,
                    e.partition(),
                );
                // Nothing polled since the assignment: still where a checkpoint resumed it.
                let next = match e.offset() {
                    Offset::Offset(next) => next,
                    _ => *self.resumed.get()?.get(&p)?,
                };
                let end = self.bound(p).unwrap_or(i64::MAX);
                Some((p, next.min(end)))
            })
            .collect()
    }

    /// The end of `p` in a bounded run (0 when it holds nothing).
    fn bound(&self, p: Partition) -> Option<i64> {
        self.bounds.get().map(|b| b.get(&p).copied().unwrap_or(0))
    }

    /// `offsets` as a list to commit.
    fn to_list(&self, offsets: &HashMap<Partition, i64>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for ((t, p), next) in offsets {
            if let Some(topic) = self.topics.get(*t) {
                // Adding a valid offset to a fresh list cannot fail.
                let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(*next));
            }
        }
        tpl
    }
}

/// The consumer's callbacks: commit what was read from partitions before they are taken away.
struct Callbacks(Arc<Shared>);

impl ClientContext for Callbacks {}

impl ConsumerContext for Callbacks {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance
            && self.0.commit
        {
            let offsets = self.0.to_list(&self.0.positions(consumer, Some(revoked)));
            if offsets.count() > 0
                && let Err(e) = consumer.commit(&offsets, CommitMode::Sync)
            {
                let _ = self
                    .0
                    .failed
                    .set(format!("committing before a rebalance: {e}"));
            }
        }
        self.0.rebalanced.store(true, Ordering::Relaxed);
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {
        self.0.rebalanced.store(true, Ordering::Relaxed);
    }

    /// The result of a background commit: a failure is reported and retried by the next one.
    fn commit_callback(&self, result: KafkaResult<()>, _: &TopicPartitionList) {
        if let Err(e) = result {
            self.0.commit_failed.store(true, Ordering::Relaxed);
            eprintln!("warning: kafka: committing offsets failed ({e}); the next commit retries");
        }
    }
}

/// Reads a `kafka` table.
pub struct KafkaSource {
    table: String,
    schema: SchemaRef,
    consumer: BaseConsumer<Callbacks>,
    shared: Arc<Shared>,
    layout: Vec<ColumnSource>,
    value: Option<Box<dyn RecordDecoder>>,
    key: Option<Box<dyn RecordDecoder>>,
    meta: Vec<MetaBuilder>,
    quiet: bool,
    /// The split of each staged row.
    row_splits: Vec<u32>,
    /// The assigned splits, sorted.
    splits: Vec<u32>,
    /// Assigned partitions that reached their end.
    finished: Vec<Partition>,
    assigned: Vec<Partition>,
    dead_letter_file: Option<DeadLetter>,
    dead_letter_topic: Option<TopicProducer>,
    batcher: Batcher,
    max_rows: usize,
    commit_interval: Duration,
    last_commit: Instant,
    committed: HashMap<Partition, i64>,
    /// The positions the next commit commits ([`Source::mark`]).
    marked: Option<HashMap<Partition, i64>>,
    /// The last transient client error reported, and when (to report each kind once a minute).
    last_warning: Option<(String, Instant)>,
}

impl KafkaSource {
    /// Connects, subscribes or assigns partitions, and prepares the decoders.
    pub fn open(spec: &SourceSpec, options: &OpenOptions) -> Result<KafkaSource, RuntimeError> {
        let table = spec.table.as_str();
        let opts = &spec.connector.options;
        let topics = topics(table, opts)?;
        let mut config = client_config(table, opts)?;
        let group = config.get("group.id").is_some();
        let mode = opts
            .get("scan.startup.mode")
            .map(|m| m.trim().to_ascii_lowercase())
            .unwrap_or_else(|| {
                if group {
                    "group-offsets".into()
                } else {
                    "earliest-offset".into()
                }
            });
        if mode == "group-offsets" && !group {
            return Err(RuntimeError::option(
                table,
                "scan.startup.mode",
                "'group-offsets' needs 'properties.group.id'",
            ));
        }
        default_property(&mut config, "auto.offset.reset", "earliest");
        config.set("enable.auto.commit", "false");
        config.set("enable.auto.offset.store", "false");
        config.set("enable.partition.eof", "false");
        if !group {
            // librdkafka needs a group id even for assigned partitions; nothing is committed.
            config.set("group.id", format!("fsql-{table}"));
        }
        let commit_interval = match config.get("auto.commit.interval.ms") {
            Some(ms) => Duration::from_millis(ms.trim().parse().map_err(|_| {
                RuntimeError::option(
                    table,
                    "properties.auto.commit.interval.ms",
                    format!("'{ms}' is not a number of milliseconds"),
                )
            })?),
            None => Duration::from_secs(5),
        };
        let (layout, value, key, meta, quiet) = decoders(spec, options.columns_read.as_deref())?;
        let shared = Arc::new(Shared {
            topics: topics.clone(),
            commit: group,
            from_committed: mode == "group-offsets",
            ..Shared::default()
        });
        let consumer: BaseConsumer<Callbacks> = config
            .create_with_context(Callbacks(shared.clone()))
            .map_err(|e| kafka_error(table, "creating the consumer", e))?;
        let partitions = partitions_of(&consumer, table, &topics)?;
        // Resuming from a checkpoint: the partitions it read start after its offsets.
        let resume = match options.resume.get(table) {
            None => None,
            Some(SourcePosition::Offsets(list)) => {
                let resumed = list
                    .iter()
                    .filter_map(|p| {
                        let t = topics.iter().position(|t| *t == p.topic)?;
                        Some(((t, p.partition), p.offset))
                    })
                    .collect();
                let _ = shared.resumed.set(resumed);
                Some(resume_offsets(table, &topics, list)?)
            }
            Some(SourcePosition::Rows(_)) => {
                return Err(RuntimeError::Checkpoint(format!(
                    "the checkpoint has a row count for `{table}`, which now reads Kafka"
                )));
            }
        };
        if mode == "group-offsets" {
            if let Some(resume) = resume.as_ref().filter(|r| r.count() > 0) {
                // The group's committed offsets are rewound to the checkpoint's before joining,
                // so whichever partitions the group assigns start where the checkpoint was.
                consumer.commit(resume, CommitMode::Sync).map_err(|e| {
                    kafka_error(table, "rewinding the group to the checkpoint's offsets", e)
                })?;
            }
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            consumer
                .subscribe(&names)
                .map_err(|e| kafka_error(table, "subscribing", e))?;
        } else {
            let mut tpl = startup_offsets(&consumer, spec, &mode, &topics, &partitions)?;
            if let Some(resume) = &resume {
                for e in resume.elements() {
                    tpl.set_partition_offset(e.topic(), e.partition(), e.offset())
                        .map_err(|e| kafka_error(table, "building the assignment", e))?;
                }
            }
            consumer
                .assign(&tpl)
                .map_err(|e| kafka_error(table, "assigning partitions", e))?;
        }
        if let Some(bounds) = bounded_offsets(&consumer, spec, &topics, &partitions)? {
            let _ = shared.bounds.set(bounds);
        }
        let dead_letter_topic = match opts.get("dead-letter.topic") {
            Some(topic) => {
                let mut producer_config = client_config(table, opts)?;
                default_property(&mut producer_config, "enable.idempotence", "true");
                Some(TopicProducer::new(table, topic, &producer_config)?)
            }
            None => None,
        };
        let dead_letter_file = opts.get(DEAD_LETTER_PATH).map(|p| {
            DeadLetter::new(crate::source::filesystem::resolve(
                &spec.connector.base_dir,
                p,
            ))
        });
        let mut source = KafkaSource {
            table: table.to_string(),
            schema: runtime_schema(&spec.physical),
            consumer,
            shared,
            layout,
            value,
            key,
            meta,
            quiet,
            row_splits: Vec::new(),
            splits: Vec::new(),
            finished: Vec::new(),
            assigned: Vec::new(),
            dead_letter_file,
            dead_letter_topic,
            batcher: Batcher::new(options.batch),
            max_rows: options.batch.max_rows.max(1),
            commit_interval,
            last_commit: Instant::now(),
            committed: HashMap::new(),
            marked: None,
            last_warning: None,
        };
        source.refresh_assignment()?;
        Ok(source)
    }

    /// Reads the consumer's assignment into `assigned` and `splits`.
    fn refresh_assignment(&mut self) -> Result<(), RuntimeError> {
        let tpl = self
            .consumer
            .assignment()
            .map_err(|e| kafka_error(&self.table, "reading the assignment", e))?;
        self.assigned = tpl
            .elements()
            .iter()
            .filter_map(|e| {
                let t = self.shared.topics.iter().position(|t| t == e.topic())?;
                Some((t, e.partition()))
            })
            .collect();
        self.assigned.sort_unstable();
        self.splits = self.assigned.iter().map(|p| split_id(*p)).collect();
        self.splits.sort_unstable();
        let assigned = &self.assigned;
        self.finished.retain(|p| assigned.contains(p));
        if self.shared.bounds.get().is_some() {
            // A partition that starts at its committed offset, which is at its end already,
            // has nothing to read.
            let committed = if self.shared.from_committed && !self.assigned.is_empty() {
                self.consumer.committed(LOOKUP_TIMEOUT).ok()
            } else {
                None
            };
            for p in self.assigned.clone() {
                let committed = committed.as_ref().and_then(|l| {
                    match l.find_partition(&self.shared.topics[p.0], p.1)?.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    }
                });
                let resumed = self.shared.resumed.get().and_then(|r| r.get(&p).copied());
                self.finish_if_reached(p, committed.max(resumed));
            }
        }
        Ok(())
    }

    /// Marks `p` finished if `at` (an offset it was read up to) or the bound itself says so.
    fn finish_if_reached(&mut self, p: Partition, at: Option<i64>) {
        let Some(end) = self.shared.bound(p) else {
            return;
        };
        if (end <= 0 || at.is_some_and(|o| o >= end)) && !self.finished.contains(&p) {
            self.finished.push(p);
        }
    }

    /// Every assigned partition reached its bound (bounded runs only).
    fn all_finished(&mut self) -> Result<bool, RuntimeError> {
        if self.shared.bounds.get().is_none() || self.assigned.is_empty() {
            return Ok(false);
        }
        if self.finished.len() < self.assigned.len() {
            // The position moves past transaction markers, which are never delivered.
            let positions = self.shared.positions(&self.consumer, None);
            for p in self.assigned.clone() {
                self.finish_if_reached(p, positions.get(&p).copied());
            }
        }
        Ok(self.finished.len() >= self.assigned.len())
    }

    fn finish_batch(&mut self, rows: usize) -> Result<RecordBatch, RuntimeError> {
        let err = |e| RuntimeError::arrow(&self.table, e);
        let value = match self.value.as_mut() {
            Some(d) => d.finish().map_err(err)?,
            None => Vec::new(),
        };
        let key = match self.key.as_mut() {
            Some(d) => d.finish().map_err(err)?,
            None => Vec::new(),
        };
        let meta = self
            .meta
            .iter_mut()
            .map(MetaBuilder::finish)
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        let columns = self
            .layout
            .iter()
            .map(|c| {
                match c {
                    ColumnSource::Value(i) => value.get(*i),
                    ColumnSource::Key(i) => key.get(*i),
                    ColumnSource::Meta(i) => meta.get(*i),
                }
                .cloned()
                .ok_or_else(|| RuntimeError::connector(&self.table, "column layout mismatch"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)
            .map_err(|e| RuntimeError::arrow(&self.table, e))
    }

    /// Reports and dead-letters a record that could not be decoded.
    fn malformed(
        &mut self,
        ctx: &mut SourceContext<'_>,
        (topic, partition, offset): (&str, i32, i64),
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        error: String,
    ) -> Result<(), RuntimeError> {
        let record = MalformedRecord {
            table: self.table.clone(),
            file: None,
            line: None,
            origin: Some(format!("{topic}/{partition}@{offset}")),
            error,
            raw: String::from_utf8_lossy(value.unwrap_or_default()).into_owned(),
        };
        if let Some(dl) = self.dead_letter_file.as_mut() {
            dl.write(&record)?;
        }
        if let Some(dl) = &self.dead_letter_topic {
            let (p, o) = (partition.to_string(), offset.to_string());
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "fsql.error",
                    value: Some(record.error.as_str()),
                })
                .insert(Header {
                    key: "fsql.table",
                    value: Some(self.table.as_str()),
                })
                .insert(Header {
                    key: "fsql.topic",
                    value: Some(topic),
                })
                .insert(Header {
                    key: "fsql.partition",
                    value: Some(p.as_str()),
                })
                .insert(Header {
                    key: "fsql.offset",
                    value: Some(o.as_str()),
                });
            dl.send(Record {
                key,
                value,
                partition: None,
                timestamp: None,
                headers: Some(headers),
            })?;
        }
        ctx.malformed(&record, self.quiet);
        Ok(())
    }
}

/// Decodes one record's key and value into the staged rows, or says why it is malformed (then
/// nothing is appended).
fn decode(
    key_decoder: &mut Option<Box<dyn RecordDecoder>>,
    value_decoder: &mut Option<Box<dyn RecordDecoder>>,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<(), String> {
    {
        if let Some(d) = key_decoder.as_mut() {
            match key {
                Some(k) => {
                    if !d.stage_bytes(k).map_err(|e| format!("key: {e}"))? {
                        return Err("key: empty record".into());
                    }
                }
                None => d.stage_null(),
            }
        }
        if let Some(d) = value_decoder.as_mut() {
            match value {
                Some(v) => {
                    if !d.stage_bytes(v)? {
                        return Err("empty record".into());
                    }
                }
                None => return Err("the record has no value (a tombstone)".into()),
            }
        }
        if let Some(d) = key_decoder.as_mut() {
            d.commit();
        }
        if let Some(d) = value_decoder.as_mut() {
            d.commit();
        }
        Ok(())
    }
}

impl KafkaSource {
    fn warn(&mut self, e: &KafkaError) {
        let text = e.to_string();
        let now = Instant::now();
        let repeat = self.last_warning.as_ref().is_some_and(|(last, at)| {
            *last == text && now.saturating_duration_since(*at) < Duration::from_secs(60)
        });
        if !repeat {
            eprintln!("warning: table `{}`: kafka: {text}", self.table);
            self.last_warning = Some((text, now));
        }
    }
}

impl KafkaSource {
    /// The end offset of `p` as librdkafka last saw it in a fetch response (no request is
    /// made); `None` before the first fetch.
    fn cached_end(&self, p: Partition) -> Option<i64> {
        let topic = CString::new(self.shared.topics.get(p.0)?.as_str()).ok()?;
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the client handle lives as long as `self.consumer`; librdkafka reads the
        // NUL-terminated topic name and writes the two offsets, nothing else.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                self.consumer.client().native_ptr(),
                topic.as_ptr(),
                p.1,
                &mut low,
                &mut high,
            )
        };
        (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
            .then_some(high)
    }
}

impl Source for KafkaSource {
    fn poll(&mut self, ctx: &mut SourceContext<'_>) -> Result<SourcePoll, RuntimeError> {
        if let Some(e) = self.shared.failed.get() {
            return Err(kafka_error(&self.table, "consumer group", e));
        }
        if self.shared.rebalanced.swap(false, Ordering::Relaxed) {
            self.refresh_assignment()?;
        }
        let mut rows = 0;
        self.batcher.reset();
        self.row_splits.clear();
        while rows < self.max_rows {
            let timeout = if rows == 0 {
                Duration::from_millis(1)
            } else {
                Duration::ZERO
            };
            let Some(polled) = self.consumer.poll(timeout) else {
                break;
            };
            let message = match polled {
                Ok(m) => m,
                Err(e) => {
                    if is_fatal(&e) {
                        return Err(kafka_error(&self.table, "consuming", e));
                    }
                    self.warn(&e);
                    continue;
                }
            };
            let Some(t) = self.shared.topics.iter().position(|t| t == message.topic()) else {
                continue;
            };
            let partition = (t, message.partition());
            let offset = message.offset();
            if let Some(end) = self.shared.bound(partition)
                && offset >= end
            {
                // Past this run's end: not read, not committed.
                if !self.finished.contains(&partition) {
                    self.finished.push(partition);
                }
                continue;
            }
            let (key, value) = (message.key(), message.payload());
            match decode(&mut self.key, &mut self.value, key, value) {
                Ok(()) => {
                    let ts = message.timestamp();
                    let topic = &self.shared.topics[t];
                    for m in &mut self.meta {
                        m.append(topic, partition.1, offset, ts);
                    }
                    self.row_splits.push(split_id(partition));
                    rows += 1;
                    self.batcher.add(1, ctx.now);
                }
                Err(error) => {
                    let topic = self.shared.topics[t].clone();
                    let (key, value) = (key.map(<[u8]>::to_vec), value.map(<[u8]>::to_vec));
                    drop(message);
                    self.malformed(
                        ctx,
                        (&topic, partition.1, offset),
                        key.as_deref(),
                        value.as_deref(),
                        error,
                    )?;
                }
            }
            if self.shared.rebalanced.load(Ordering::Relaxed)
                || (rows > 0 && self.batcher.should_flush(Instant::now()))
            {
                break;
            }
        }
        if rows > 0 {
            let batch = self.finish_batch(rows)?;
            return Ok(SourcePoll::SplitBatch {
                batch,
                splits: std::mem::take(&mut self.row_splits),
            });
        }
        if self.shared.rebalanced.swap(false, Ordering::Relaxed) {
            self.refresh_assignment()?;
        }
        if self.all_finished()? {
            return Ok(SourcePoll::End);
        }
        Ok(SourcePoll::Pending(None))
    }

    fn splits(&self) -> Option<&[u32]> {
        Some(&self.splits)
    }

    fn commit_due(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_commit) >= self.commit_interval
    }

    fn lag(&self) -> Option<u64> {
        let positions = self.shared.positions(&self.consumer, None);
        let mut known = false;
        let mut lag = 0u64;
        for p in &self.assigned {
            let (Some(&position), Some(end)) = (positions.get(p), self.cached_end(*p)) else {
                continue;
            };
            let end = end.min(self.shared.bound(*p).unwrap_or(i64::MAX));
            known = true;
            lag += u64::try_from(end - position).unwrap_or(0);
        }
        known.then_some(lag)
    }

    /// The next offset of every partition read so far (librdkafka's position: past the last
    /// record polled, and every polled record has been emitted). A partition not read yet is
    /// left out: a restore starts it as the startup mode says.
    fn position(&mut self) -> Result<SourcePosition, RuntimeError> {
        let positions = self.shared.positions(&self.consumer, None);
        let mut list: Vec<PartitionOffset> = positions
            .into_iter()
            .filter_map(|((t, partition), offset)| {
                Some(PartitionOffset {
                    topic: self.shared.topics.get(t)?.clone(),
                    partition,
                    offset,
                })
            })
            .collect();
        list.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(SourcePosition::Offsets(list))
    }

    fn mark(&mut self) {
        if self.shared.commit {
            self.marked = Some(self.shared.positions(&self.consumer, None));
        }
    }

    fn commit(&mut self, wait: bool) -> Result<(), RuntimeError> {
        self.last_commit = Instant::now();
        if let Some(dl) = &self.dead_letter_topic {
            dl.flush()?;
        }
        if !self.shared.commit {
            return Ok(());
        }
        // The executor marks before every commit; without a mark there is nothing to commit.
        let Some(positions) = self.marked.take() else {
            return Ok(());
        };
        let retry = self.shared.commit_failed.swap(false, Ordering::Relaxed);
        if !retry
            && positions
                .iter()
                .all(|(p, o)| self.committed.get(p) == Some(o))
        {
            return Ok(());
        }
        // A periodic commit goes in the background: a synchronous one would stall the pipeline
        // for the broker's round trip (measured: 50–100 ms every commit interval).
        let mode = if wait {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        self.consumer
            .commit(&self.shared.to_list(&positions), mode)
            .map_err(|e| kafka_error(&self.table, "committing offsets", e))?;
        self.committed = positions;
        Ok(())
    }
}

/// Errors that end the run (the others are transient: librdkafka retries and reconnects).
fn is_fatal(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::UnknownTopicOrPartition
                | C::UnknownTopic
                | C::TopicAuthorizationFailed
                | C::GroupAuthorizationFailed
                | C::SaslAuthenticationFailed
                | C::Fatal
        )
    )
}

/// The decoders and the column layout of `spec`; the value's decoder leaves the physical columns
/// `read` does not mark NULL (key columns are always decoded).
#[allow(clippy::type_complexity)]
fn decoders(
    spec: &SourceSpec,
    read: Option<&[bool]>,
) -> Result<
    (
        Vec<ColumnSource>,
        Option<Box<dyn RecordDecoder>>,
        Option<Box<dyn RecordDecoder>>,
        Vec<MetaBuilder>,
        bool,
    ),
    RuntimeError,
> {
    let table = spec.table.as_str();
    let opts = &spec.connector.options;
    let KeyFields {
        names: key_fields,
        except_key,
    } = key_fields(table, opts)?;
    let arrow = runtime_schema(&spec.physical);
    let mut layout = Vec::new();
    let mut meta = Vec::new();
    let mut value_fields = Vec::new();
    let mut value_read = Vec::new();
    let mut key_cols = Vec::new();
    for (i, f) in spec.physical.fields.iter().enumerate() {
        if let Some(key) = spec.metadata.get(&i) {
            layout.push(ColumnSource::Meta(meta.len()));
            meta.push(MetaBuilder::new(table, key, arrow.field(i).data_type())?);
            continue;
        }
        let in_key = key_fields.contains(&f.name);
        if in_key && except_key {
            layout.push(ColumnSource::Key(key_cols.len()));
        } else {
            layout.push(ColumnSource::Value(value_fields.len()));
            value_fields.push(f.clone());
            value_read.push(read.is_none_or(|r| r.get(i).copied().unwrap_or(true)));
        }
        if in_key {
            key_cols.push(f.clone());
        }
    }
    if let Some(missing) = key_fields
        .iter()
        .find(|k| !key_cols.iter().any(|f| &f.name == *k))
    {
        return Err(RuntimeError::option(
            table,
            "key.fields",
            format!("`{missing}` is not a physical column"),
        ));
    }
    // Key fields read from the value too (ALL) come from the value, as in Flink.
    let value = if value_fields.is_empty() {
        None
    } else {
        let (format_key, prefix) = value_format_option(opts);
        Some(sub_decoder(
            spec,
            value_fields,
            Some(&value_read),
            format_key,
            prefix,
        )?)
    };
    let key = if key_cols.is_empty() {
        None
    } else {
        Some(sub_decoder(spec, key_cols, None, "key.format", "key.")?)
    };
    let quiet = value.as_ref().is_some_and(|v| v.1) || key.as_ref().is_some_and(|k| k.1);
    Ok((layout, value.map(|v| v.0), key.map(|k| k.0), meta, quiet))
}

/// A decoder for `fields` in the format option `format_key` names, with the format's options
/// under `prefix` (`key.json.*` for `key.`).
fn sub_decoder(
    spec: &SourceSpec,
    fields: Vec<fsql_plan::Field>,
    read: Option<&[bool]>,
    format_key: &str,
    prefix: &str,
) -> Result<(Box<dyn RecordDecoder>, bool), RuntimeError> {
    let mut options = BTreeMap::new();
    for (k, v) in &spec.connector.options {
        let k = if prefix.is_empty() {
            Some(k.as_str())
        } else {
            k.strip_prefix(prefix)
        };
        if let Some(k) = k.filter(|k| k.starts_with("json.") || k.starts_with("csv.")) {
            options.insert(k.to_string(), v.clone());
        }
    }
    if let Some(f) = spec.connector.options.get(format_key) {
        options.insert("format".to_string(), f.clone());
    }
    let sub = SourceSpec {
        table: spec.table.clone(),
        connector: fsql_plan::ConnectorSpec {
            connector: spec.connector.connector.clone(),
            options,
            base_dir: spec.connector.base_dir.clone(),
        },
        physical: Schema::new(fields),
        columns: Vec::new(),
        watermark: None,
        metadata: BTreeMap::new(),
    };
    decoder_for(&sub, &["json", "csv", "raw"], read)
}

/// Every partition of `topics` (an unknown topic is an error, as in Flink).
fn partitions_of(
    consumer: &BaseConsumer<Callbacks>,
    table: &str,
    topics: &[String],
) -> Result<Vec<Partition>, RuntimeError> {
    let mut out = Vec::new();
    for (t, topic) in topics.iter().enumerate() {
        let metadata = consumer
            .fetch_metadata(Some(topic), LOOKUP_TIMEOUT)
            .map_err(|e| kafka_error(table, &format!("reading metadata of '{topic}'"), e))?;
        let Some(m) = metadata.topics().iter().find(|m| m.name() == topic) else {
            return Err(kafka_error(table, &format!("topic '{topic}'"), "not found"));
        };
        if let Some(e) = m.error() {
            return Err(kafka_error(
                table,
                &format!("topic '{topic}'"),
                rdkafka::types::RDKafkaErrorCode::from(e),
            ));
        }
        out.extend(m.partitions().iter().map(|p| (t, p.id())));
    }
    Ok(out)
}

/// Where an assigned (non-group) run starts in each partition.
fn startup_offsets(
    consumer: &BaseConsumer<Callbacks>,
    spec: &SourceSpec,
    mode: &str,
    topics: &[String],
    partitions: &[Partition],
) -> Result<TopicPartitionList, RuntimeError> {
    let table = spec.table.as_str();
    let opts = &spec.connector.options;
    let mut tpl = TopicPartitionList::new();
    let add = |tpl: &mut TopicPartitionList, (t, p): Partition, offset: Offset| {
        tpl.add_partition_offset(&topics[t], p, offset)
            .map_err(|e| kafka_error(table, "building the assignment", e))
    };
    match mode {
        "earliest-offset" | "latest-offset" => {
            let offset = if mode == "earliest-offset" {
                Offset::Beginning
            } else {
                Offset::End
            };
            for p in partitions {
                add(&mut tpl, *p, offset)?;
            }
        }
        "specific-offsets" => {
            let text = opts.get("scan.startup.specific-offsets").ok_or_else(|| {
                RuntimeError::option(
                    table,
                    "scan.startup.specific-offsets",
                    "is required by 'specific-offsets'",
                )
            })?;
            let given = parse_specific_offsets(table, "scan.startup.specific-offsets", text)?;
            for p in partitions {
                let offset = given
                    .get(&p.1)
                    .map_or(Offset::Beginning, |o| Offset::Offset(*o));
                add(&mut tpl, *p, offset)?;
            }
        }
        "timestamp" => {
            let ms = millis_option(table, opts, "scan.startup.timestamp-millis")?;
            let mut query = TopicPartitionList::new();
            for p in partitions {
                add(&mut query, *p, Offset::Offset(ms))?;
            }
            let found = consumer
                .offsets_for_times(query, LOOKUP_TIMEOUT)
                .map_err(|e| kafka_error(table, "looking up offsets by timestamp", e))?;
            for e in found.elements() {
                let t = topics.iter().position(|t| t == e.topic()).unwrap_or(0);
                let offset = match e.offset() {
                    Offset::Offset(o) => Offset::Offset(o),
                    _ => Offset::End,
                };
                add(&mut tpl, (t, e.partition()), offset)?;
            }
        }
        other => {
            return Err(RuntimeError::option(
                table,
                "scan.startup.mode",
                format!(
                    "'{other}' is not one of earliest-offset, latest-offset, group-offsets, timestamp, specific-offsets"
                ),
            ));
        }
    }
    Ok(tpl)
}

/// A checkpoint's offsets as a partition list (topics the table no longer reads are left out).
fn resume_offsets(
    table: &str,
    topics: &[String],
    list: &[PartitionOffset],
) -> Result<TopicPartitionList, RuntimeError> {
    let mut tpl = TopicPartitionList::new();
    for p in list.iter().filter(|p| topics.contains(&p.topic)) {
        tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.offset))
            .map_err(|e| kafka_error(table, "reading the checkpoint's offsets", e))?;
    }
    Ok(tpl)
}

/// The end offsets of a bounded run (`None`: unbounded).
fn bounded_offsets(
    consumer: &BaseConsumer<Callbacks>,
    spec: &SourceSpec,
    topics: &[String],
    partitions: &[Partition],
) -> Result<Option<HashMap<Partition, i64>>, RuntimeError> {
    let table = spec.table.as_str();
    let opts = &spec.connector.options;
    let Some(mode) = opts
        .get("scan.bounded.mode")
        .map(|m| m.trim().to_ascii_lowercase())
    else {
        return Ok(None);
    };
    // The end of a partition now; 0 when it holds nothing (all its records deleted). A failed
    // lookup is tried again twice: a broker busy writing a large batch has been seen to answer
    // one with a malformed response.
    let high = |(t, p): Partition| {
        let mut tries = 0;
        loop {
            match consumer.fetch_watermarks(&topics[t], p, LOOKUP_TIMEOUT) {
                Ok((low, high)) => return Ok(if high <= low { 0 } else { high }),
                Err(_) if tries < 2 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => {
                    return Err(kafka_error(
                        table,
                        &format!("reading the end of {}/{p}", topics[t]),
                        e,
                    ));
                }
            }
        }
    };
    let mut bounds = HashMap::new();
    match mode.as_str() {
        "unbounded" => return Ok(None),
        "latest-offset" => {
            for p in partitions {
                bounds.insert(*p, high(*p)?);
            }
        }
        "specific-offsets" => {
            let text = opts.get("scan.bounded.specific-offsets").ok_or_else(|| {
                RuntimeError::option(
                    table,
                    "scan.bounded.specific-offsets",
                    "is required by 'specific-offsets'",
                )
            })?;
            let given = parse_specific_offsets(table, "scan.bounded.specific-offsets", text)?;
            for p in partitions {
                // A partition not listed is read to its current end.
                let end = match given.get(&p.1) {
                    Some(o) => *o,
                    None => high(*p)?,
                };
                bounds.insert(*p, end);
            }
        }
        "timestamp" => {
            let ms = millis_option(table, opts, "scan.bounded.timestamp-millis")?;
            let mut query = TopicPartitionList::new();
            for (t, p) in partitions {
                query
                    .add_partition_offset(&topics[*t], *p, Offset::Offset(ms))
                    .map_err(|e| kafka_error(table, "building a lookup", e))?;
            }
            let found = consumer
                .offsets_for_times(query, LOOKUP_TIMEOUT)
                .map_err(|e| kafka_error(table, "looking up offsets by timestamp", e))?;
            for e in found.elements() {
                let t = topics.iter().position(|t| t == e.topic()).unwrap_or(0);
                let end = match e.offset() {
                    Offset::Offset(o) => o,
                    _ => high((t, e.partition()))?,
                };
                bounds.insert((t, e.partition()), end);
            }
        }
        other => {
            return Err(RuntimeError::option(
                table,
                "scan.bounded.mode",
                format!(
                    "'{other}' is not one of unbounded, latest-offset, timestamp, specific-offsets"
                ),
            ));
        }
    }
    Ok(Some(bounds))
}
