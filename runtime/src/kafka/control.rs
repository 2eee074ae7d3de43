//! The control stream on Kafka: a topic of signed control records, read from its beginning by
//! every run (so what is in force is rebuilt from the records, in order), and a topic of
//! acknowledgements. `'control.properties.*'` configure both clients, like a table's
//! `'properties.*'`.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::producer::{Record, TopicProducer};
use super::{client_config, default_property, kafka_error};
use crate::error::RuntimeError;

/// The name errors are reported under.
const WHAT: &str = "control stream";
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// `control.properties.*` as a table's `properties.*`.
fn properties(settings: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    settings
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("control.")
                .filter(|k| k.starts_with("properties."))
                .map(|k| (k.to_string(), v.clone()))
        })
        .collect()
}

/// The control topic, read from the beginning of every partition.
pub struct ControlTopic {
    consumer: BaseConsumer,
    topic: String,
}

impl ControlTopic {
    pub fn open(
        topic: &str,
        settings: &BTreeMap<String, String>,
    ) -> Result<ControlTopic, RuntimeError> {
        let mut config = client_config(WHAT, &properties(settings))?;
        // No consumer group: every run reads all records; nothing is committed.
        default_property(&mut config, "group.id", "fsql-control");
        config.set("enable.auto.commit", "false");
        config.set("enable.partition.eof", "true");
        let consumer: BaseConsumer = config
            .create()
            .map_err(|e| kafka_error(WHAT, "creating the consumer", e))?;
        let metadata = consumer
            .fetch_metadata(Some(topic), METADATA_TIMEOUT)
            .map_err(|e| kafka_error(WHAT, &format!("reading the metadata of '{topic}'"), e))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        match partitions.len() {
            0 => {
                return Err(kafka_error(
                    WHAT,
                    &format!("topic '{topic}'"),
                    "does not exist (create it with one partition)",
                ));
            }
            1 => {}
            n => {
                return Err(kafka_error(
                    WHAT,
                    &format!("topic '{topic}'"),
                    format!(
                        "has {n} partitions; control records are applied in order, so the topic must have one"
                    ),
                ));
            }
        }
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition_offset(topic, *p, Offset::Beginning)
                .map_err(|e| kafka_error(WHAT, "assigning partitions", e))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| kafka_error(WHAT, "assigning partitions", e))?;
        Ok(ControlTopic {
            consumer,
            topic: topic.to_string(),
        })
    }

    /// The records that arrive within `timeout` (at most 64), as `(position, text)`; `at_end` is
    /// set once the partition reported its end (everything published so far was read).
    pub fn poll(
        &mut self,
        timeout: Duration,
        at_end: &mut bool,
    ) -> Result<Vec<(String, String)>, RuntimeError> {
        let mut out = Vec::new();
        let mut wait = timeout;
        while let Some(message) = self.consumer.poll(wait) {
            wait = Duration::ZERO;
            match message {
                Ok(m) => {
                    let text =
                        String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                    out.push((
                        format!("{}/{}@{}", self.topic, m.partition(), m.offset()),
                        text,
                    ));
                }
                Err(rdkafka::error::KafkaError::PartitionEOF(_)) => *at_end = true,
                Err(e) => return Err(kafka_error(WHAT, &format!("reading '{}'", self.topic), e)),
            }
            if out.len() >= 64 {
                break;
            }
        }
        Ok(out)
    }
}

/// A topic records are appended to: acknowledgements, or published control records.
pub struct ControlProducer {
    producer: TopicProducer,
}

impl ControlProducer {
    pub fn open(
        topic: &str,
        settings: &BTreeMap<String, String>,
    ) -> Result<ControlProducer, RuntimeError> {
        let mut config = client_config(WHAT, &properties(settings))?;
        default_property(&mut config, "enable.idempotence", "true");
        Ok(ControlProducer {
            producer: TopicProducer::new(WHAT, topic, &config)?,
        })
    }

    /// Sends one record (keyed by the ruleset or model it is about) and waits for its delivery.
    pub fn send(&self, key: Option<&str>, text: &str) -> Result<(), RuntimeError> {
        self.producer.send(Record {
            key: key.map(str::as_bytes),
            value: Some(text.as_bytes()),
            partition: None,
            timestamp: None,
            headers: None,
        })?;
        self.producer.flush()
    }
}
