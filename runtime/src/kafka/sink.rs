//! The Kafka sink: each row becomes one record.
//!
//! Options (Flink's names): `'topic'`, `'format'` or `'value.format'` (`json`, `csv`, `raw`),
//! `'key.format'` + `'key.fields'` (`'a;b'`: the key is encoded from those columns),
//! `'value.fields-include'` (`ALL`, the default, or `EXCEPT_KEY`), `'sink.partitioner'`
//! (`default`: by key hash, murmur2 as Java clients and Flink use, records without a key spread;
//! `fixed`: all to partition 0, as Flink's one-task `fixed`; `round-robin`),
//! `'sink.delivery-guarantee'` (`at-least-once`, the default, `exactly-once` with
//! `'sink.transactional-id-prefix'`, or `none`), `properties.*`.
//! A `timestamp` `METADATA` column sets the record's timestamp; metadata columns are never
//! written into the value.
//!
//! The producer is idempotent unless `properties.enable.idempotence` says otherwise, so retries
//! never duplicate or reorder records within a partition. A delivery that fails after
//! librdkafka's retries (`properties.delivery.timeout.ms`) fails the pipeline at the next write
//! or flush: records are never dropped quietly. `at-least-once` waits for every record at each
//! flush (before the source commits offsets, and at the end); `none` does not wait.
//! `exactly-once` writes in the pipeline's producer transaction, committed with each checkpoint
//! (see [`super::transaction`]): consumers reading with `isolation.level=read_committed` see each
//! record once, across crashes and restarts.
//!
//! As `upsert-kafka` ([`KafkaSink::upsert`], Flink's connector) the sink also takes an updating
//! relation: the key is the table's PRIMARY KEY (the compiler passes it as `key.fields`), `+I` and
//! `+U` rows are records with the row as value, `-U` rows are dropped (the `+U` that follows
//! replaces the key's value) and `-D` rows are tombstones: the key with no value.

use std::cell::RefCell;
use std::rc::Rc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType as ArrowType, SchemaRef};
use fsql_plan::SinkSpec;

use super::producer::{Record, TopicProducer};
use super::transaction::{Transaction, Transactions, is_exactly_once};
use super::{
    KeyFields, client_config, default_property, kafka_error, key_fields, topics,
    value_format_option,
};
use crate::error::RuntimeError;
use crate::operator::RowKind;
use crate::sink::{RowFormat, Sink};

/// How records are spread over partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Partitioner {
    /// librdkafka's `partitioner` property (murmur2_random by default here).
    Default,
    Fixed,
    RoundRobin {
        partitions: i32,
        next: i32,
    },
}

/// Writes rows to a Kafka topic.
pub struct KafkaSink {
    table: String,
    producer: TopicProducer,
    value_columns: Vec<usize>,
    value_format: RowFormat,
    key: Option<(Vec<usize>, RowFormat)>,
    timestamp_column: Option<usize>,
    partitioner: Partitioner,
    wait_on_flush: bool,
    /// The pipeline's producer transaction (`exactly-once`).
    transaction: Option<Rc<RefCell<Transaction>>>,
    value: String,
    key_text: String,
    scratch: String,
    /// `upsert-kafka`: takes updates (see the module documentation).
    upsert: bool,
}

impl KafkaSink {
    /// Creates the producer for `spec`, whose rows have `schema`.
    pub fn open(
        spec: &SinkSpec,
        schema: &SchemaRef,
        transactions: &mut Transactions,
    ) -> Result<KafkaSink, RuntimeError> {
        let table = spec.table.as_str();
        let opts = &spec.connector.options;
        let topic = match topics(table, opts)?.as_slice() {
            [one] => one.clone(),
            _ => {
                return Err(RuntimeError::option(
                    table,
                    "topic",
                    "a sink writes exactly one topic",
                ));
            }
        };
        let mut config = client_config(table, opts)?;
        default_property(&mut config, "enable.idempotence", "true");
        default_property(&mut config, "partitioner", "murmur2_random");
        let wait_on_flush = match opts
            .get("sink.delivery-guarantee")
            .map(|g| g.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("at-least-once") => true,
            Some("none") => false,
            Some("exactly-once") => true,
            Some(other) => {
                return Err(RuntimeError::option(
                    table,
                    "sink.delivery-guarantee",
                    format!("'{other}' is not at-least-once, none or exactly-once"),
                ));
            }
        };
        let index_of = |name: &str| {
            schema.index_of(name).map_err(|_| {
                RuntimeError::option(table, "key.fields", format!("`{name}` is not a column"))
            })
        };
        let KeyFields { names, except_key } = key_fields(table, opts)?;
        let key_fields = names
            .iter()
            .map(|name| index_of(name))
            .collect::<Result<Vec<usize>, _>>()?;
        let key = if key_fields.is_empty() {
            None
        } else {
            Some((
                key_fields.clone(),
                RowFormat::from_options(
                    table,
                    opts,
                    "key.format",
                    "key.",
                    &["json", "csv", "raw"],
                )?,
            ))
        };
        let value_columns: Vec<usize> = (0..schema.fields().len())
            .filter(|i| !spec.metadata.contains_key(i))
            .filter(|i| !(except_key && key_fields.contains(i)))
            .collect();
        let (format_key, prefix) = value_format_option(opts);
        let value_format =
            RowFormat::from_options(table, opts, format_key, prefix, &["json", "csv", "raw"])?;
        let mut timestamp_column = None;
        for (i, key) in &spec.metadata {
            match (key.as_str(), schema.fields().get(*i).map(|f| f.data_type())) {
                ("timestamp", Some(ArrowType::Timestamp(..))) => timestamp_column = Some(*i),
                _ => {
                    return Err(RuntimeError::connector(
                        table,
                        format!("metadata column '{key}' cannot be written (only 'timestamp')"),
                    ));
                }
            }
        }
        let transaction = if is_exactly_once(spec) {
            Some(transactions.for_sink(spec)?)
        } else {
            None
        };
        let producer = match &transaction {
            Some(t) => TopicProducer::sharing(table, &topic, t.borrow().producer()),
            None => TopicProducer::new(table, &topic, &config)?,
        };
        let partitioner = match opts
            .get("sink.partitioner")
            .map(|p| p.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("default") => Partitioner::Default,
            Some("fixed") => Partitioner::Fixed,
            Some("round-robin") => Partitioner::RoundRobin {
                partitions: producer.partition_count()?,
                next: 0,
            },
            Some(other) => {
                return Err(RuntimeError::option(
                    table,
                    "sink.partitioner",
                    format!("'{other}' is not default, fixed or round-robin"),
                ));
            }
        };
        Ok(KafkaSink {
            table: table.to_string(),
            producer,
            value_columns,
            value_format,
            key,
            timestamp_column,
            partitioner,
            wait_on_flush,
            transaction,
            value: String::new(),
            key_text: String::new(),
            scratch: String::new(),
            upsert: false,
        })
    }

    /// The same sink as `upsert-kafka`: it writes updating relations, `-D` rows as tombstones.
    pub fn upsert(mut self) -> KafkaSink {
        self.upsert = true;
        self
    }

    fn partition(&mut self) -> Option<i32> {
        match &mut self.partitioner {
            Partitioner::Default => None,
            Partitioner::Fixed => Some(0),
            Partitioner::RoundRobin { partitions, next } => {
                let p = *next;
                *next = (*next + 1) % (*partitions).max(1);
                Some(p)
            }
        }
    }
}

impl Sink for KafkaSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), RuntimeError> {
        self.send(batch, None)
    }

    fn write_changes(
        &mut self,
        batch: &RecordBatch,
        kinds: &[RowKind],
    ) -> Result<(), RuntimeError> {
        if !self.upsert {
            return Err(RuntimeError::connector(
                &self.table,
                "connector 'kafka' doesn't support consuming update changes (use 'upsert-kafka')",
            ));
        }
        self.send(batch, Some(kinds))
    }

    fn flush(&mut self) -> Result<(), RuntimeError> {
        if self.wait_on_flush {
            self.producer.flush()
        } else {
            Ok(())
        }
    }

    fn flush_begin(&mut self) -> Result<bool, RuntimeError> {
        // In a transaction, output is durable when its checkpoint commits, not when delivered.
        if self.wait_on_flush && self.transaction.is_none() {
            self.producer.mark()
        } else {
            Ok(true)
        }
    }

    fn flushed(&mut self) -> Result<bool, RuntimeError> {
        if self.wait_on_flush && self.transaction.is_none() {
            self.producer.marked_delivered()
        } else {
            Ok(true)
        }
    }

    fn checkpoint_complete(&mut self, id: u64) -> Result<(), RuntimeError> {
        match &self.transaction {
            Some(t) => t.borrow_mut().commit(id),
            None => Ok(()),
        }
    }
}

impl KafkaSink {
    /// Sends a record per row of `batch`; with `kinds` (upsert-kafka), `-U` rows are skipped and
    /// `-D` rows become tombstones.
    fn send(&mut self, batch: &RecordBatch, kinds: Option<&[RowKind]>) -> Result<(), RuntimeError> {
        let value_batch = batch
            .project(&self.value_columns)
            .map_err(|e| kafka_error(&self.table, "projecting the value", e))?;
        let key_batch = match &self.key {
            Some((cols, _)) => Some(
                batch
                    .project(cols)
                    .map_err(|e| kafka_error(&self.table, "projecting the key", e))?,
            ),
            None => None,
        };
        let timestamps = self
            .timestamp_column
            .map(|i| {
                let ms = ArrowType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None);
                arrow::compute::cast(
                    &arrow::compute::cast(batch.column(i), &ms)?,
                    &ArrowType::Int64,
                )
            })
            .transpose()
            .map_err(|e| kafka_error(&self.table, "reading the timestamp column", e))?;
        for row in 0..batch.num_rows() {
            let kind = kinds.and_then(|k| k.get(row)).copied();
            if kind == Some(RowKind::UpdateBefore) {
                continue;
            }
            let tombstone = kind == Some(RowKind::Delete);
            let partition = self.partition();
            self.value.clear();
            if !tombstone {
                self.value_format
                    .write(&value_batch, row, &mut self.scratch, &mut self.value);
            }
            let key = match (&self.key, &key_batch) {
                (Some((_, format)), Some(kb)) => {
                    self.key_text.clear();
                    format.write(kb, row, &mut self.scratch, &mut self.key_text);
                    Some(self.key_text.as_bytes())
                }
                _ => None,
            };
            let timestamp = timestamps.as_ref().and_then(|t| {
                let t = t.as_primitive::<arrow::datatypes::Int64Type>();
                (!t.is_null(row)).then(|| t.value(row))
            });
            self.producer.send(Record {
                key,
                value: (!tombstone).then_some(self.value.as_bytes()),
                partition,
                timestamp,
                headers: None,
            })?;
        }
        Ok(())
    }
}
