//! The control stream's runtime side: updates that were already verified (signature, version) and
//! type-checked against the plan by the control reader (`fsql`'s `control` module), applied by the
//! executor **between batches**, so every event is decided by exactly one version, and
//! acknowledged in the order they were read.
//!
//! The reader keeps the authoritative view of what is in force (each ruleset's rules, each model's
//! version): it computes a ruleset's complete new rules from an `add_rule` or `remove_rule`, so
//! what reaches the executor is a whole replacement that cannot fail to apply.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use fsql_model::Model;
use fsql_plan::RulesetSpec;

use crate::append_file::AppendFile;
use crate::error::RuntimeError;
use crate::kafka::control::{ControlProducer, ControlTopic};

/// A change to running operators.
pub enum ControlUpdate {
    /// A ruleset's complete new rules; `spec.version` is the update's version.
    Ruleset(RulesetSpec),
    /// A model's new version, loaded and compiled: one copy for each node that scores it (a
    /// loaded model is not shared between operators).
    Model {
        name: String,
        version: i64,
        models: Vec<Model>,
    },
}

impl ControlUpdate {
    /// The ruleset or model the update changes.
    pub fn target(&self) -> &str {
        match self {
            ControlUpdate::Ruleset(spec) => &spec.name,
            ControlUpdate::Model { name, .. } => name,
        }
    }
}

/// What an acknowledgement says about one control record.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AckHeader {
    /// The operation (`add_rule`, `replace_rule`, `remove_rule`, `set_parameter`, `set_model`),
    /// when the record could be read that far.
    pub op: Option<String>,
    /// The ruleset or model named.
    pub target: Option<String>,
    pub version: Option<i64>,
    /// The signing key's name.
    pub key: Option<String>,
    /// Where the record came from (`file:line`, `topic/partition@offset`).
    pub position: String,
}

/// One control record, read and checked: an update to apply, or the reason it is rejected.
pub struct ControlMessage {
    pub header: AckHeader,
    pub outcome: Result<ControlUpdate, String>,
    /// When the record was read (the apply latency is measured from here).
    pub read_at: Instant,
}

/// Where the control stream's settings point: a file (local mode) or a Kafka topic.
///
/// * `'control.path'`: a file of records, one per line, read as it grows; acknowledgements go to
///   `'control.ack.path'` (default: the path with `.acks` appended).
/// * `'control.topic'`: a Kafka topic with one partition, read from its beginning by every run;
///   acknowledgements go to `'control.ack.topic'` (default: the topic with `-acks` appended);
///   `'control.properties.*'` configure the clients (`control.properties.bootstrap.servers`).
#[derive(Clone, Debug, PartialEq)]
pub enum ControlAddress {
    File { path: PathBuf, acks: PathBuf },
    Kafka { topic: String, acks: String },
}

impl ControlAddress {
    /// `None` when the pipeline has no control stream.
    pub fn from_settings(
        settings: &BTreeMap<String, String>,
    ) -> Result<Option<ControlAddress>, String> {
        match (settings.get("control.path"), settings.get("control.topic")) {
            (Some(_), Some(_)) => Err("set 'control.path' or 'control.topic', not both".into()),
            (Some(path), None) => Ok(Some(ControlAddress::File {
                path: PathBuf::from(path),
                acks: settings
                    .get("control.ack.path")
                    .map_or_else(|| PathBuf::from(format!("{path}.acks")), PathBuf::from),
            })),
            (None, Some(topic)) => Ok(Some(ControlAddress::Kafka {
                topic: topic.clone(),
                acks: settings
                    .get("control.ack.topic")
                    .cloned()
                    .unwrap_or_else(|| format!("{topic}-acks")),
            })),
            (None, None) => Ok(None),
        }
    }

    /// Where the records are, for messages.
    pub fn describe(&self) -> String {
        match self {
            ControlAddress::File { path, .. } => path.display().to_string(),
            ControlAddress::Kafka { topic, .. } => format!("topic '{topic}'"),
        }
    }
}

/// Reads control records as they are published.
pub enum ControlSource {
    File {
        path: PathBuf,
        offset: u64,
        line: usize,
        partial: String,
    },
    Kafka(ControlTopic),
}

impl ControlSource {
    pub fn open(
        address: &ControlAddress,
        settings: &BTreeMap<String, String>,
    ) -> Result<ControlSource, RuntimeError> {
        Ok(match address {
            ControlAddress::File { path, .. } => ControlSource::File {
                path: path.clone(),
                offset: 0,
                line: 0,
                partial: String::new(),
            },
            ControlAddress::Kafka { topic, .. } => {
                ControlSource::Kafka(ControlTopic::open(topic, settings)?)
            }
        })
    }

    /// The records published since the last call, as `(position, text)`, waiting up to `wait`
    /// for some; `at_end` says everything published so far was read.
    pub fn poll(
        &mut self,
        wait: Duration,
        at_end: &mut bool,
    ) -> Result<Vec<(String, String)>, RuntimeError> {
        match self {
            ControlSource::Kafka(topic) => topic.poll(wait, at_end),
            ControlSource::File {
                path,
                offset,
                line,
                partial,
            } => {
                let mut out = Vec::new();
                // A missing file is an empty stream (nothing published yet).
                if let Ok(mut file) = std::fs::File::open(&*path) {
                    file.seek(SeekFrom::Start(*offset))
                        .map_err(|e| RuntimeError::io(path.display().to_string(), e))?;
                    let mut reader = BufReader::new(file);
                    let mut buf = String::new();
                    loop {
                        buf.clear();
                        let n = reader
                            .read_line(&mut buf)
                            .map_err(|e| RuntimeError::io(path.display().to_string(), e))?;
                        if n == 0 {
                            break;
                        }
                        *offset += n as u64;
                        partial.push_str(&buf);
                        // A record still being written waits for its newline.
                        if !partial.ends_with('\n') {
                            continue;
                        }
                        *line += 1;
                        let record = std::mem::take(partial);
                        let record = record.trim_end_matches(['\n', '\r']);
                        if !record.trim().is_empty() {
                            out.push((format!("{}:{line}", path.display()), record.to_string()));
                        }
                    }
                }
                *at_end = true;
                if out.is_empty() {
                    std::thread::sleep(wait);
                }
                Ok(out)
            }
        }
    }

    /// Every record published so far (`fsql control push` replays them before checking a new one).
    pub fn read_all(&mut self) -> Result<Vec<(String, String)>, RuntimeError> {
        let mut all = Vec::new();
        let mut at_end = false;
        let started = std::time::Instant::now();
        while !at_end {
            all.extend(self.poll(Duration::from_millis(100), &mut at_end)?);
            if started.elapsed() > Duration::from_secs(30) {
                return Err(RuntimeError::connector(
                    "control stream",
                    "timed out reading the published records",
                ));
            }
        }
        Ok(all)
    }
}

/// Appends a record to the control stream (`fsql control push`).
pub fn publish(
    address: &ControlAddress,
    settings: &BTreeMap<String, String>,
    key: &str,
    record: &str,
) -> Result<(), RuntimeError> {
    match address {
        ControlAddress::File { path, .. } => {
            AppendFile::new(path.clone()).append(&format!("{record}\n"))
        }
        ControlAddress::Kafka { topic, .. } => {
            ControlProducer::open(topic, settings)?.send(Some(key), record)
        }
    }
}

/// Where acknowledgements go: one JSON object per control record, in order.
pub enum AckLog {
    File(AppendFile),
    Kafka(ControlProducer),
}

impl AckLog {
    pub fn open(
        address: &ControlAddress,
        settings: &BTreeMap<String, String>,
    ) -> Result<AckLog, RuntimeError> {
        Ok(match address {
            ControlAddress::File { acks, .. } => AckLog::File(AppendFile::new(acks.clone())),
            ControlAddress::Kafka { acks, .. } => {
                AckLog::Kafka(ControlProducer::open(acks, settings)?)
            }
        })
    }

    /// Writes `{"position", "op", "target", "version", "key", "status": "applied"|"rejected",
    /// "reason", "applied_after_us"}`.
    pub fn write(
        &mut self,
        header: &AckHeader,
        outcome: Result<u128, &str>,
    ) -> Result<(), RuntimeError> {
        let mut ack = serde_json::json!({
            "position": header.position,
            "op": header.op,
            "target": header.target,
            "version": header.version,
            "key": header.key,
        });
        match outcome {
            Ok(micros) => {
                ack["status"] = "applied".into();
                ack["applied_after_us"] = serde_json::Value::from(micros as u64);
            }
            Err(reason) => {
                ack["status"] = "rejected".into();
                ack["reason"] = reason.into();
            }
        }
        match self {
            AckLog::File(file) => file.append(&format!("{ack}\n")),
            AckLog::Kafka(producer) => producer.send(header.target.as_deref(), &ack.to_string()),
        }
    }
}

/// The executor's end of the control stream: the reader's messages and the acknowledgement log.
pub struct ControlChannel {
    pub messages: Receiver<ControlMessage>,
    pub acks: AckLog,
}
