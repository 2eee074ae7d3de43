//! A checkpoint's `_metadata`: what it holds, as JSON a person can read (`fsql checkpoint
//! inspect`). Operator state itself is in one binary file per stateful node beside it.

use serde::{Deserialize, Serialize};

/// The layout of `_metadata` (and of the state files it lists) this fsql writes and reads.
pub const FORMAT: u32 = 1;

/// Everything a checkpoint holds but the operators' state bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// [`FORMAT`] when written.
    pub format: u32,
    /// The checkpoint's number: 1, 2, ... within its directory.
    pub id: u64,
    /// The pipeline's name (`pipeline.name`).
    pub pipeline: String,
    /// Wall-clock time it was taken (epoch milliseconds).
    pub taken_at_ms: i64,
    /// Control-stream updates applied before it (rules, models, parameters in force); recovery
    /// applies as many from the stream before it reads any row.
    pub control_applied: u64,
    /// Per source: where to resume.
    pub sources: Vec<SourceEntry>,
    /// Per node of the graph (sources included): its time and, for stateful ones, its state.
    pub nodes: Vec<NodeEntry>,
    /// The files the run appends to besides its sinks (the late-data file, dead-letter files)
    /// and their lengths: a restore cuts them back to these, as the rows that wrote the rest are
    /// read again.
    #[serde(default)]
    pub appended: Vec<AppendedFile>,
    /// The state backend it was taken with (`hashmap`; `rocksdb`: the keyed state's values are
    /// in [`Metadata::rocksdb`]).
    #[serde(default = "hashmap")]
    pub state_backend: String,
    /// The RocksDB checkpoint beside the state files (RocksDB backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rocksdb: Option<crate::state::RocksCheckpoint>,
}

/// An appended file's length at a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppendedFile {
    pub path: String,
    /// Its length in bytes (0: it did not exist yet).
    pub len: u64,
}

fn hashmap() -> String {
    "hashmap".into()
}

/// Where one source resumes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceEntry {
    /// The source node's name (its table).
    pub name: String,
    /// The position after the last row it handed out.
    pub position: SourcePosition,
    /// Its watermark (epoch ms; `i64::MIN` before the first).
    pub watermark: i64,
    /// Per split (Kafka partition), its own watermark: the source's is their minimum.
    #[serde(default)]
    pub splits: Vec<(u32, i64)>,
    /// Whether it had ended.
    pub ended: bool,
}

/// A source's position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourcePosition {
    /// Rows handed out so far (generators and files: deterministic, so a restore skips them).
    Rows(u64),
    /// Kafka: the next offset to read, per partition read so far.
    Offsets(Vec<PartitionOffset>),
}

/// The next offset to read from one Kafka partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// One node's part of a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeEntry {
    /// The node's stable name (from the SQL: view, table, `sink:<table>`...).
    pub name: String,
    /// Its kind (`over`, `match-recognize`, ...).
    pub kind: String,
    /// A digest of the node's definition and input schema: a restore into a node whose
    /// definition changed is refused rather than misread.
    pub definition: String,
    /// The node's watermark and those of its inputs (epoch ms).
    pub watermark: i64,
    pub input_watermarks: Vec<i64>,
    /// Which inputs had ended, and whether the node had.
    pub inputs_ended: Vec<bool>,
    pub done: bool,
    /// The file holding its state (`None`: it has none) and that file's size and digest.
    pub state: Option<StateFile>,
    /// Per input, its column names in order: for stateful operators whose state a restore can
    /// carry across inputs that gained columns (see `fsql_plan::InputMap`). Absent for other
    /// operators and in older checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_columns: Option<Vec<Vec<String>>>,
}

/// An operator's state file in a checkpoint directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    pub file: String,
    pub bytes: u64,
    /// `sha256:<hex>` of the bytes: a damaged file is detected, not misread.
    pub sha256: String,
}
