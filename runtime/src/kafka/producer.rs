//! A producer that never loses a record silently: delivery failures (after librdkafka's own
//! retries, bounded by `delivery.timeout.ms`) are remembered and fail the next send or flush.
//! Used by the sink and by the source's dead-letter topic.
//!
//! Records are counted by *epoch* until delivered, so that "everything sent before this point is
//! acknowledged" can be asked without waiting: [`TopicProducer::mark`] closes the current epoch
//! and [`TopicProducer::marked_delivered`] says when its last record was acknowledged. Two
//! epochs are enough: a mark is only taken once the previous one was delivered.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use super::kafka_error;
use crate::error::RuntimeError;

/// How long a send waits for room in librdkafka's queue, and a flush for deliveries.
const WAIT: Duration = Duration::from_secs(60);

/// Records delivery outcomes (called on librdkafka's polling thread).
#[derive(Default)]
pub(super) struct Deliveries {
    failed: OnceLock<String>,
    /// Records sent and not yet acknowledged, per epoch parity (the delivery opaque).
    outstanding: [AtomicI64; 2],
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, epoch: usize) {
        if let Err((e, _)) = result {
            let _ = self.failed.set(e.to_string());
        }
        self.outstanding[epoch & 1].fetch_sub(1, Ordering::AcqRel);
    }
}

pub(super) struct Record<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub partition: Option<i32>,
    pub timestamp: Option<i64>,
    pub headers: Option<OwnedHeaders>,
}

/// A producer for one topic of one table.
pub(super) struct TopicProducer {
    table: String,
    topic: String,
    inner: Arc<ThreadedProducer<Deliveries>>,
    /// The parity of the epoch records are sent in now.
    epoch: AtomicUsize,
    /// The parity of the epoch [`TopicProducer::mark`] closed, until it is delivered.
    draining: Option<usize>,
}

impl TopicProducer {
    pub(super) fn new(
        table: &str,
        topic: &str,
        config: &ClientConfig,
    ) -> Result<TopicProducer, RuntimeError> {
        let inner = config
            .create_with_context(Deliveries::default())
            .map_err(|e| kafka_error(table, "creating the producer", e))?;
        Ok(TopicProducer::sharing(table, topic, Arc::new(inner)))
    }

    /// A producer for `topic` sending through `inner`, which other tables' producers may share
    /// (the exactly-once sinks' transaction).
    pub(super) fn sharing(
        table: &str,
        topic: &str,
        inner: Arc<ThreadedProducer<Deliveries>>,
    ) -> TopicProducer {
        TopicProducer {
            table: table.to_string(),
            topic: topic.to_string(),
            inner,
            epoch: AtomicUsize::new(0),
            draining: None,
        }
    }

    /// Queues a record; waits while librdkafka's queue is full.
    pub(super) fn send(&self, record: Record<'_>) -> Result<(), RuntimeError> {
        self.check()?;
        let started = Instant::now();
        let mut headers = record.headers;
        let epoch = self.epoch.load(Ordering::Relaxed);
        let outstanding = &self.inner.context().outstanding[epoch];
        // Counted before the send: its delivery report may come before `send` returns.
        outstanding.fetch_add(1, Ordering::AcqRel);
        loop {
            let mut r: BaseRecord<'_, [u8], [u8], usize> =
                BaseRecord::with_opaque_to(&self.topic, epoch);
            if let Some(k) = record.key {
                r = r.key(k);
            }
            if let Some(v) = record.value {
                r = r.payload(v);
            }
            if let Some(p) = record.partition {
                r = r.partition(p);
            }
            if let Some(t) = record.timestamp {
                r = r.timestamp(t);
            }
            if let Some(h) = headers.take() {
                r = r.headers(h);
            }
            match self.inner.send(r) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    headers = back.headers;
                    if started.elapsed() > WAIT {
                        outstanding.fetch_sub(1, Ordering::AcqRel);
                        return Err(kafka_error(
                            &self.table,
                            &format!("producing to '{}'", self.topic),
                            "the producer queue stayed full (is the broker reachable?)",
                        ));
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err((e, _)) => {
                    outstanding.fetch_sub(1, Ordering::AcqRel);
                    return Err(kafka_error(
                        &self.table,
                        &format!("producing to '{}'", self.topic),
                        e,
                    ));
                }
            }
        }
    }

    /// Waits until every queued record is delivered; fails if any delivery failed.
    pub(super) fn flush(&self) -> Result<(), RuntimeError> {
        // rdkafka's `flush(timeout)` waits for delivery reports by polling up to 100 ms at a
        // time, but this producer's own thread serves those reports, so each such wait ran its
        // full 100 ms and stalled the pipeline at every commit. Ask librdkafka to send now and
        // check without waiting instead, briefly sleeping between checks.
        let started = Instant::now();
        loop {
            match self.inner.flush(Duration::ZERO) {
                Ok(()) => break,
                Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut))
                    if started.elapsed() < WAIT =>
                {
                    std::thread::sleep(Duration::from_micros(100));
                }
                Err(e) => {
                    return Err(kafka_error(
                        &self.table,
                        &format!("flushing records to '{}'", self.topic),
                        e,
                    ));
                }
            }
        }
        self.check()
    }

    /// Closes the current epoch: later records count in the other one. Asks librdkafka to send
    /// what it holds now (ignoring `linger.ms`) and returns whether the closed epoch is
    /// delivered already. A mark while the previous one drains only checks it.
    pub(super) fn mark(&mut self) -> Result<bool, RuntimeError> {
        if self.draining.is_none() {
            let closed = self.epoch.fetch_xor(1, Ordering::Relaxed);
            self.draining = Some(closed);
            // Only a nudge: `Flush(TimedOut)` just says records are still in flight.
            let _ = self.inner.flush(Duration::ZERO);
        }
        self.marked_delivered()
    }

    /// Whether every record sent before the last [`TopicProducer::mark`] is acknowledged (an
    /// error when a delivery failed).
    pub(super) fn marked_delivered(&mut self) -> Result<bool, RuntimeError> {
        self.check()?;
        let Some(closed) = self.draining else {
            return Ok(true);
        };
        let left = self.inner.context().outstanding[closed].load(Ordering::Acquire);
        debug_assert!(left >= 0, "more deliveries than records sent");
        if left > 0 {
            return Ok(false);
        }
        self.draining = None;
        Ok(true)
    }

    /// The number of partitions of the topic.
    pub(super) fn partition_count(&self) -> Result<i32, RuntimeError> {
        let metadata = self
            .inner
            .client()
            .fetch_metadata(Some(&self.topic), WAIT)
            .map_err(|e| {
                kafka_error(
                    &self.table,
                    &format!("reading metadata of '{}'", self.topic),
                    e,
                )
            })?;
        metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.topic)
            .map(|t| t.partitions().len() as i32)
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                kafka_error(&self.table, &format!("topic '{}'", self.topic), "not found")
            })
    }

    fn check(&self) -> Result<(), RuntimeError> {
        match self.inner.context().failed.get() {
            Some(e) => Err(kafka_error(
                &self.table,
                &format!("delivering records to '{}' failed", self.topic),
                e,
            )),
            None => Ok(()),
        }
    }
}
