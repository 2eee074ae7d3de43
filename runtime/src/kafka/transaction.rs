//! Exactly-once Kafka output: every `'sink.delivery-guarantee' = 'exactly-once'` sink of a
//! pipeline writes in one producer transaction, committed with each checkpoint.
//!
//! **Protocol.** Records go into an open transaction. At a checkpoint the executor flushes the
//! producer (every record acknowledged), writes the checkpoint durably, then calls
//! [`Transaction::commit`], which puts a *commit marker* into the same transaction — the
//! checkpoint's number, committed as the offset of partition 0 of the first sink's topic for the
//! consumer group `fsql-checkpoint-<prefix>` (`send_offsets_to_transaction`) — and commits it.
//! Output and marker become visible to `read_committed` consumers together, or not at all.
//!
//! **Recovery.** [`committed_checkpoint`] reads the marker: the checkpoint it names is the one
//! whose output is committed, so that is the checkpoint a restart restores (a newer one was
//! written but its transaction never committed, and its output is discarded with it). Opening
//! the producer with the same `transactional.id` (`<prefix>-0`) fences the crashed process and
//! aborts its open transaction. With no marker yet, nothing was ever committed: the run starts
//! from the beginning.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fsql_plan::{Operator as PlanOp, Pipeline, SinkSpec};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::producer::Deliveries;
use super::{client_config, kafka_error, topics};
use crate::error::RuntimeError;

/// How long transaction calls (init, commit, the marker) may take before the run fails.
const TIMEOUT: Duration = Duration::from_secs(60);

/// `'sink.transactional-id-prefix'` (Flink's name): the producer's `transactional.id` is
/// `<prefix>-0`, and the commit marker's group `fsql-checkpoint-<prefix>`.
pub const PREFIX_OPTION: &str = "sink.transactional-id-prefix";

/// Whether `spec` asks for exactly-once delivery.
pub fn is_exactly_once(spec: &SinkSpec) -> bool {
    spec.connector.connector == "kafka"
        && spec
            .connector
            .options
            .get("sink.delivery-guarantee")
            .is_some_and(|g| g.trim().eq_ignore_ascii_case("exactly-once"))
}

/// The transaction's identity: the prefix, the brokers, and the marker's topic.
fn identity(spec: &SinkSpec) -> Result<(String, String, String), RuntimeError> {
    let table = spec.table.as_str();
    let opts = &spec.connector.options;
    let prefix = opts
        .get(PREFIX_OPTION)
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            RuntimeError::option(
                table,
                PREFIX_OPTION,
                "is required by 'exactly-once': it names the sink's producer transaction, the same in every run",
            )
        })?;
    let brokers = opts
        .get("properties.bootstrap.servers")
        .cloned()
        .unwrap_or_default();
    let topic = topics(table, opts)?.into_iter().next().unwrap_or_default();
    Ok((prefix, brokers, topic))
}

fn marker_group(prefix: &str) -> String {
    format!("fsql-checkpoint-{prefix}")
}

/// The pipeline's exactly-once sinks, checked to share one transaction: their first spec.
fn transactional_sink(pipeline: &Pipeline) -> Result<Option<&SinkSpec>, RuntimeError> {
    let mut first: Option<(&SinkSpec, (String, String, String))> = None;
    for node in &pipeline.nodes {
        let PlanOp::Sink(spec) = &node.op else {
            continue;
        };
        if !is_exactly_once(spec) {
            continue;
        }
        let id = identity(spec)?;
        match &first {
            None => first = Some((spec, id)),
            Some((f, fid)) if fid.0 != id.0 || fid.1 != id.1 => {
                return Err(RuntimeError::option(
                    &spec.table,
                    PREFIX_OPTION,
                    format!(
                        "every exactly-once sink of a pipeline writes in one transaction: give it the same '{PREFIX_OPTION}' and 'properties.bootstrap.servers' as `{}`",
                        f.table
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(first.map(|(s, _)| s))
}

/// `None` when the pipeline has no exactly-once sink; otherwise the number of the checkpoint
/// whose output was committed last (`Some(None)`: none ever was).
pub fn committed_checkpoint(pipeline: &Pipeline) -> Result<Option<Option<u64>>, RuntimeError> {
    let Some(spec) = transactional_sink(pipeline)? else {
        return Ok(None);
    };
    let (prefix, _, topic) = identity(spec)?;
    let table = spec.table.as_str();
    let mut config = client_config(table, &spec.connector.options)?;
    config.set("group.id", marker_group(&prefix));
    config.set("enable.auto.commit", "false");
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| kafka_error(table, "reading the commit marker", e))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&topic, 0);
    let committed = consumer
        .committed_offsets(tpl, TIMEOUT)
        .map_err(|e| kafka_error(table, "reading the commit marker", e))?;
    let id = committed.elements().first().and_then(|e| match e.offset() {
        Offset::Offset(n) if n > 0 => u64::try_from(n).ok(),
        _ => None,
    });
    Ok(Some(id))
}

/// The open producer transaction the pipeline's exactly-once sinks share.
pub(super) struct Transaction {
    table: String,
    producer: Arc<ThreadedProducer<Deliveries>>,
    /// The topic whose partition 0 carries the commit marker (the first sink's).
    marker_topic: String,
    group: ConsumerGroupMetadata,
    /// The last checkpoint committed.
    committed: u64,
}

impl Transaction {
    /// Opens the producer (fencing an earlier process with the same transactional id and
    /// aborting what it left open) and begins the first transaction.
    fn open(spec: &SinkSpec) -> Result<Transaction, RuntimeError> {
        let table = spec.table.as_str();
        let (prefix, _, topic) = identity(spec)?;
        let mut config: ClientConfig = client_config(table, &spec.connector.options)?;
        config.set("transactional.id", format!("{prefix}-0"));
        config.set("enable.idempotence", "true");
        let producer: ThreadedProducer<Deliveries> = config
            .create_with_context(Deliveries::default())
            .map_err(|e| kafka_error(table, "creating the transactional producer", e))?;
        producer
            .init_transactions(TIMEOUT)
            .map_err(|e| kafka_error(table, "initialising transactions", e))?;
        producer
            .begin_transaction()
            .map_err(|e| kafka_error(table, "beginning a transaction", e))?;
        let mut group_config = client_config(table, &spec.connector.options)?;
        group_config.set("group.id", marker_group(&prefix));
        let consumer: BaseConsumer = group_config
            .create()
            .map_err(|e| kafka_error(table, "preparing the commit marker", e))?;
        let group = consumer.group_metadata().ok_or_else(|| {
            kafka_error(table, "preparing the commit marker", "no group metadata")
        })?;
        Ok(Transaction {
            table: table.to_string(),
            producer: Arc::new(producer),
            marker_topic: topic,
            group,
            committed: 0,
        })
    }

    /// The producer the sinks send through.
    pub(super) fn producer(&self) -> Arc<ThreadedProducer<Deliveries>> {
        Arc::clone(&self.producer)
    }

    /// Commits everything sent so far with the marker of checkpoint `id` (durable already),
    /// and begins the next transaction. Several sinks call this for one checkpoint: the first
    /// call commits.
    pub(super) fn commit(&mut self, id: u64) -> Result<(), RuntimeError> {
        if id <= self.committed {
            return Ok(());
        }
        let offset = i64::try_from(id).unwrap_or(i64::MAX);
        let mut marker = TopicPartitionList::new();
        marker
            .add_partition_offset(&self.marker_topic, 0, Offset::Offset(offset))
            .map_err(|e| kafka_error(&self.table, "writing the commit marker", e))?;
        self.producer
            .send_offsets_to_transaction(&marker, &self.group, TIMEOUT)
            .map_err(|e| kafka_error(&self.table, "writing the commit marker", e))?;
        self.producer
            .commit_transaction(TIMEOUT)
            .map_err(|e| kafka_error(&self.table, "committing the transaction", e))?;
        self.producer
            .begin_transaction()
            .map_err(|e| kafka_error(&self.table, "beginning a transaction", e))?;
        self.committed = id;
        Ok(())
    }
}

/// The pipeline's transaction, opened by its first exactly-once sink and shared by the others
/// (see [`transactional_sink`] for the check that they can share it).
#[derive(Default)]
pub struct Transactions {
    open: BTreeMap<String, std::rc::Rc<std::cell::RefCell<Transaction>>>,
}

impl Transactions {
    /// The transaction `spec` writes in, opened on first use.
    pub(super) fn for_sink(
        &mut self,
        spec: &SinkSpec,
    ) -> Result<std::rc::Rc<std::cell::RefCell<Transaction>>, RuntimeError> {
        let (prefix, brokers, _) = identity(spec)?;
        let key = format!("{brokers}\u{0}{prefix}");
        if let Some(t) = self.open.get(&key) {
            return Ok(t.clone());
        }
        let t = std::rc::Rc::new(std::cell::RefCell::new(Transaction::open(spec)?));
        self.open.insert(key, t.clone());
        Ok(t)
    }

    /// Whether any sink writes in a transaction.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}
