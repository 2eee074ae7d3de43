//! The executor's side of checkpoints: taking them between polls and restoring one before the
//! first poll (see [`crate::checkpoint`] for the protocol).
//!
//! A checkpoint has two phases. **Taking** it (between two polls, the pipeline waits): sinks
//! flush, operators hand over their state ([`Operator::snapshot_parts`]: bytes, or a view frozen
//! now that a background thread encodes), sources their positions, the RocksDB backend its
//! checkpoint (hard links). **Completing** it (on the checkpoint's writer thread, while the
//! pipeline goes on): state files encoded, hashed, written and synced, then `_metadata`, then
//! the rename to `chk-<n>/`. Only when the executor sees the writer thread done is the
//! checkpoint complete: sinks are told (the exactly-once Kafka sink commits), older ones are
//! retained or deleted. One checkpoint is in flight at a time; a crash before the rename
//! leaves the previous complete checkpoint the newest.
//!
//! [`Operator::snapshot_parts`]: crate::operator::Operator::snapshot_parts

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fsql_plan::{Pipeline, Schema};

use super::Executor;
use crate::checkpoint::metadata::{FORMAT, NodeEntry};
use crate::checkpoint::store::{read_state, state_file_name};
use crate::checkpoint::{
    AppendedFile, CheckpointConfig, CheckpointStore, Metadata, SourceEntry, SourcePosition,
};
use crate::error::RuntimeError;
use crate::source::split_watermarks::SplitWatermarks;
use crate::state::codec::{StateReader, StateWriter};
use crate::state::{RocksCheckpoint, StateSnapshot};

/// How long a restore waits for the control stream to replay the updates the checkpoint had
/// applied.
const CONTROL_REPLAY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running pipeline's checkpointing.
pub(super) struct Checkpointing {
    config: CheckpointConfig,
    store: CheckpointStore,
    pipeline: String,
    /// Per node, the digest of its definition.
    definitions: Vec<String>,
    /// Per node, its inputs' column names when a restore can widen its state
    /// ([`widenable_columns`]).
    input_columns: Vec<Option<Vec<Vec<String>>>>,
    /// The files the run appends to besides its sinks ([`appended_files`]).
    appended: Vec<PathBuf>,
    /// The number of the last checkpoint taken or restored.
    last_id: u64,
    next_at: Instant,
    /// Checkpoints completed by this run; the time the pipeline waited for checkpoints (taking
    /// them, and waiting for one to complete where it must); the time from taking each to its
    /// completion, summed; and the largest one's state bytes.
    pub(super) taken: u64,
    pub(super) taking: Duration,
    pub(super) completing: Duration,
    pub(super) largest_bytes: u64,
    /// The RocksDB files of the last checkpoint taken or restored (to tell which are new).
    previous_rocksdb: Option<RocksCheckpoint>,
    /// The checkpoint being completed by its writer thread.
    in_flight: Option<InFlight>,
}

/// A checkpoint taken and not complete yet: its writer thread is writing its files.
struct InFlight {
    id: u64,
    taken_at: Instant,
    /// Bytes the RocksDB backend's checkpoint added (written already).
    rocksdb_bytes: u64,
    /// Returns the state files' bytes once `chk-<id>/` is durable.
    writer: JoinHandle<Result<u64, RuntimeError>>,
}

/// The RocksDB checkpoint's directory inside a `chk-<n>` directory.
pub(super) const ROCKSDB_DIR: &str = "rocksdb";

/// A node's definition digest: its operator, input schemas and output schema, so state is
/// restored only into the node that wrote it.
fn definition(pipeline: &Pipeline, index: usize) -> String {
    let Some(node) = pipeline.nodes.get(index) else {
        return String::new();
    };
    let inputs: Vec<_> = node
        .inputs
        .iter()
        .filter_map(|i| pipeline.node(*i).map(|n| &n.schema))
        .collect();
    digest(&node.op, &inputs, &node.schema)
}

fn digest(op: &fsql_plan::Operator, inputs: &[&Schema], output: &Schema) -> String {
    let json = serde_json::to_vec(&(op, inputs, output)).unwrap_or_default();
    fsql_plan::sha256_hex(&json)
}

/// The input column names of node `index` a checkpoint records when its operator's state can be
/// restored across inputs that gained columns (those
/// [`Operator::narrowed`](fsql_plan::Operator::narrowed) maps, and only when their inputs' column
/// names are unique). Names suffice: a kept column keeps its type, which the digest checks.
fn widenable_columns(pipeline: &Pipeline, index: usize) -> Option<Vec<Vec<String>>> {
    let node = pipeline.nodes.get(index)?;
    let inputs: Vec<&Schema> = node
        .inputs
        .iter()
        .map(|i| pipeline.node(*i).map(|n| &n.schema))
        .collect::<Option<_>>()?;
    let maps: Vec<fsql_plan::InputMap> = inputs
        .iter()
        .map(|s| fsql_plan::InputMap::by_name(s, s))
        .collect::<Option<_>>()?;
    // Operators `narrowed` does not map are matched by their digest alone.
    node.op.narrowed(&maps)?;
    Some(
        inputs
            .iter()
            .map(|s| s.fields.iter().map(|f| f.name.clone()).collect())
            .collect(),
    )
}

/// The columns node `index` has gained since `entry` was checkpointed, when its state can be
/// restored as it is with rows widened: its inputs are the recorded ones with nullable columns
/// added, it reads none of them, and its output is the recorded one with them passed through —
/// the node, mapped back to the recorded columns (their types taken from the inputs now), has
/// the recorded digest. `None` when the node changed in any other way.
fn gained_columns(pipeline: &Pipeline, index: usize, entry: &NodeEntry) -> Option<Vec<String>> {
    let node = pipeline.nodes.get(index)?;
    let old = entry.input_columns.as_ref()?;
    if old.len() != node.inputs.len() {
        return None;
    }
    let mut maps = Vec::with_capacity(old.len());
    let mut inputs = Vec::with_capacity(old.len());
    let mut added = Vec::new();
    for (names, id) in old.iter().zip(&node.inputs) {
        let now = &pipeline.node(*id)?.schema;
        let was = Schema::new(
            names
                .iter()
                .map(|n| now.fields.iter().find(|f| &f.name == n).cloned())
                .collect::<Option<_>>()?,
        );
        let map = fsql_plan::InputMap::by_name(&was, now)?;
        added.extend(map.added().map(|c| now.fields[c].name.clone()));
        maps.push(map);
        inputs.push(was);
    }
    if added.is_empty() {
        return None;
    }
    let narrowed = node.op.narrowed(&maps)?;
    let output = Schema::new(
        node.schema
            .fields
            .iter()
            .filter(|f| !added.contains(&f.name))
            .cloned()
            .collect(),
    );
    let inputs: Vec<&Schema> = inputs.iter().collect();
    (digest(&narrowed, &inputs, &output) == entry.definition).then_some(added)
}

/// The files a run appends to besides its sinks: the late-data file (`pipeline.late-data.path`)
/// and each source's dead-letter file (`'dead-letter.path'`). They are written outside the
/// operators' state, so checkpoints record their lengths instead (see [`Metadata::appended`]).
fn appended_files(pipeline: &Pipeline) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = pipeline
        .settings
        .get(crate::late_data::LATE_DATA_PATH)
        .map(PathBuf::from)
        .into_iter()
        .collect();
    for node in &pipeline.nodes {
        if let fsql_plan::Operator::Source(spec) = &node.op
            && let Some(p) = spec
                .connector
                .options
                .get(crate::source::dead_letter::DEAD_LETTER_PATH)
        {
            files.push(crate::source::filesystem::resolve(
                &spec.connector.base_dir,
                p,
            ));
        }
    }
    files.sort();
    files.dedup();
    files
}

/// Cuts each appended file back to its length at the checkpoint: lines past it came from rows
/// the sources hand out again after the restore, which write them again. A file shorter than
/// recorded (rotated or emptied by hand) is left as it is.
fn cut_back_appended(meta: &Metadata) -> Result<(), RuntimeError> {
    for f in &meta.appended {
        let Ok(len) = std::fs::metadata(&f.path).map(|m| m.len()) else {
            continue;
        };
        if len > f.len {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&f.path)
                .and_then(|file| file.set_len(f.len))
                .map_err(|e| RuntimeError::io(&f.path, e))?;
        }
    }
    Ok(())
}

/// The checkpoint a run restores, read and checked. Without exactly-once sinks: the newest
/// complete one. With them: the one whose output the Kafka transaction committed last (a newer
/// one was written but its output never committed, so restoring it would lose that output); none
/// when nothing was ever committed.
pub(super) fn to_restore(
    config: &CheckpointConfig,
    pipeline: &Pipeline,
) -> Result<Option<(PathBuf, Metadata)>, RuntimeError> {
    let store = CheckpointStore::new(&config.dir);
    let chosen = match crate::kafka::transaction::committed_checkpoint(pipeline)? {
        None => store.latest()?,
        Some(None) => None,
        Some(Some(id)) => Some(
            store
                .list()?
                .into_iter()
                .find(|c| c.id == id)
                .ok_or_else(|| {
                    RuntimeError::Checkpoint(format!(
                        "the Kafka transaction committed the output of checkpoint {id}, which {} does not hold: its state is lost, and running without it would repeat that output",
                        config.dir.display()
                    ))
                })?,
        ),
    };
    match chosen {
        None => Ok(None),
        Some(c) => {
            let meta = crate::checkpoint::store::read_metadata(&c.path)?;
            Ok(Some((c.path, meta)))
        }
    }
}

/// The positions `meta` gives each source that had not ended, for opening them.
pub(super) fn resume_positions(meta: &Metadata) -> BTreeMap<String, SourcePosition> {
    meta.sources
        .iter()
        .filter(|s| !s.ended)
        .map(|s| (s.name.clone(), s.position.clone()))
        .collect()
}

impl Checkpointing {
    /// Checkpointing into `config.dir`; numbers continue after the checkpoints already there
    /// (a number is never reused, so an uncommitted checkpoint is never mistaken for a newer
    /// committed one).
    pub(super) fn new(
        config: CheckpointConfig,
        pipeline: &Pipeline,
    ) -> Result<Checkpointing, RuntimeError> {
        let store = CheckpointStore::new(&config.dir);
        let last_id = store.list()?.last().map_or(0, |c| c.id);
        Ok(Checkpointing {
            store,
            next_at: Instant::now() + config.interval,
            config,
            pipeline: pipeline.name.clone(),
            definitions: (0..pipeline.nodes.len())
                .map(|i| definition(pipeline, i))
                .collect(),
            input_columns: (0..pipeline.nodes.len())
                .map(|i| widenable_columns(pipeline, i))
                .collect(),
            appended: appended_files(pipeline),
            last_id,
            taken: 0,
            taking: Duration::ZERO,
            completing: Duration::ZERO,
            largest_bytes: 0,
            previous_rocksdb: None,
            in_flight: None,
        })
    }

    /// Whether the next checkpoint is due: its interval has passed since the last one completed
    /// (and none is in flight).
    pub(super) fn due(&self, now: Instant) -> bool {
        now >= self.next_at && self.in_flight.is_none()
    }

    /// Whether a checkpoint is being completed.
    pub(super) fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The checkpoint directory.
    pub(super) fn dir(&self) -> &Path {
        self.store.dir()
    }
}

/// Lowers the calling thread (a checkpoint's writer) to the lowest CPU priority, so that where
/// the pipeline and the writer compete for a core the pipeline wins: a checkpoint then takes
/// longer to become durable instead of slowing the pipeline. Best effort (Linux only).
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's own id; a failure only leaves its
    // priority as it was.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
    }
}

/// Why `e` happened, without the `checkpoint:` prefix its message would repeat.
fn reason(e: RuntimeError) -> String {
    match e {
        RuntimeError::Checkpoint(m) => m,
        e => e.to_string(),
    }
}

/// `e` with the node it happened in, when it does not name one.
fn in_node(name: &str, e: RuntimeError) -> RuntimeError {
    match e {
        RuntimeError::Checkpoint(m) => RuntimeError::state(name, m),
        e => e,
    }
}

impl Executor<'_> {
    /// Refuses to start a checkpointed run that could not be checkpointed: every operator
    /// snapshots its (still empty) state once and every source gives its position.
    pub(super) fn check_checkpointable(&mut self) -> Result<(), RuntimeError> {
        for node in &mut self.nodes {
            if let Some(op) = node.op.as_mut() {
                let mut w = StateWriter::default();
                op.snapshot(&mut w).map_err(|e| {
                    RuntimeError::Checkpoint(format!(
                        "checkpointing is on, but `{}` ({}) cannot be checkpointed: {}",
                        node.metrics.name,
                        node.metrics.kind,
                        reason(e)
                    ))
                })?;
            }
        }
        for source in &mut self.sources {
            source.source.position().map_err(|e| {
                RuntimeError::Checkpoint(format!(
                    "checkpointing is on, but source `{}` cannot resume: {}",
                    source.name,
                    reason(e)
                ))
            })?;
        }
        Ok(())
    }

    /// Takes a checkpoint now and waits until it is complete (the last checkpoint of a run, and
    /// every checkpoint of a pipeline with an exactly-once Kafka sink, whose transaction must
    /// commit before more output goes into it). One still in flight is completed first.
    pub(super) fn checkpoint(&mut self) -> Result<(), RuntimeError> {
        self.complete_checkpoint(true)?;
        self.take_checkpoint()?;
        self.complete_checkpoint(true)
    }

    /// Between polls: takes a checkpoint when one is due, and completes the one in flight when
    /// its writer thread is done.
    pub(super) fn checkpoint_tick(&mut self, now: Instant) -> Result<(), RuntimeError> {
        let Some(ck) = &self.checkpointing else {
            return Ok(());
        };
        if ck.in_flight() {
            self.complete_checkpoint(false)
        } else if ck.due(now) {
            let wait = self.transactional || !ck.config.asynchronous;
            self.take_checkpoint()?;
            // The transaction holds everything sent since the last commit: output after this
            // checkpoint must not go into the one that commits with it.
            self.complete_checkpoint(wait)
        } else {
            Ok(())
        }
    }

    /// A run that failed: waits for the checkpoint in flight (its files stay if it got that
    /// far: it is consistent) without completing it for the sinks.
    pub(super) fn abandon_checkpoint(&mut self) {
        if let Some(f) = self.checkpointing.as_mut().and_then(|c| c.in_flight.take()) {
            let _ = f.writer.join();
        }
    }

    /// The first phase of a checkpoint (the pipeline waits): sinks flush, then operators' state,
    /// positions and watermarks are taken, and the RocksDB backend's checkpoint made; the
    /// writer thread then writes the checkpoint's files.
    fn take_checkpoint(&mut self) -> Result<(), RuntimeError> {
        let Some(mut ck) = self.checkpointing.take() else {
            return Ok(());
        };
        let started = Instant::now();
        let result = self.begin_checkpoint(&mut ck, started);
        ck.taking += started.elapsed();
        self.checkpointing = Some(ck);
        result
    }

    fn begin_checkpoint(
        &mut self,
        ck: &mut Checkpointing,
        started: Instant,
    ) -> Result<(), RuntimeError> {
        for node in &mut self.nodes {
            if let Some(op) = node.op.as_mut() {
                op.flush().map_err(|e| in_node(&node.metrics.name, e))?;
            }
        }
        let id = ck.last_id + 1;
        let mut files: Vec<(usize, String, StateSnapshot)> = Vec::new();
        let mut nodes = Vec::with_capacity(self.nodes.len());
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if let Some(op) = node.op.as_mut()
                && let Some(state) = op
                    .snapshot_parts()
                    .map_err(|e| in_node(&node.metrics.name, e))?
            {
                files.push((i, state_file_name(i, &node.metrics.name), state));
            }
            nodes.push(NodeEntry {
                name: node.metrics.name.clone(),
                kind: node.metrics.kind.to_string(),
                definition: ck.definitions.get(i).cloned().unwrap_or_default(),
                watermark: node.wm,
                input_watermarks: node.input_wms.clone(),
                inputs_ended: node.ended.clone(),
                done: node.done,
                state: None,
                input_columns: ck.input_columns.get(i).cloned().flatten(),
            });
        }
        let mut sources = Vec::with_capacity(self.sources.len());
        for s in &mut self.sources {
            let position = if s.ended {
                SourcePosition::Rows(0)
            } else {
                s.source.position().map_err(|e| in_node(&s.name, e))?
            };
            sources.push(SourceEntry {
                name: s.name.clone(),
                position,
                watermark: s.wm,
                splits: s.splits.as_ref().map(|w| w.saved()).unwrap_or_default(),
                ended: s.ended,
            });
        }
        let mut meta = Metadata {
            format: FORMAT,
            id,
            pipeline: ck.pipeline.clone(),
            taken_at_ms: chrono::Utc::now().timestamp_millis(),
            control_applied: self.control_applied,
            sources,
            nodes,
            // Appends are flushed line by line, so the length on disk is what was written.
            appended: ck
                .appended
                .iter()
                .map(|p| AppendedFile {
                    path: p.display().to_string(),
                    len: std::fs::metadata(p).map_or(0, |m| m.len()),
                })
                .collect(),
            state_backend: self.backend.name().into(),
            rocksdb: None,
        };
        let tmp = ck.store.begin(id)?;
        // Every operator flushed its changed values while handing over its state; RocksDB's
        // checkpoint (memtables flushed, SST files hard-linked) is consistent only now.
        meta.rocksdb = self
            .backend
            .checkpoint(&tmp.join(ROCKSDB_DIR), ck.previous_rocksdb.as_ref())?;
        ck.previous_rocksdb.clone_from(&meta.rocksdb);
        let rocksdb_bytes = meta.rocksdb.as_ref().map_or(0, |r| r.new_bytes);
        let store = ck.store.clone();
        let writer = std::thread::Builder::new()
            .name(format!("fsql-checkpoint-{id}"))
            .spawn(move || {
                lowest_priority();
                store.finish(&tmp, &mut meta, files).map(|(_, bytes)| bytes)
            })
            .map_err(|e| {
                RuntimeError::Checkpoint(format!("starting the checkpoint's writer thread: {e}"))
            })?;
        ck.in_flight = Some(InFlight {
            id,
            taken_at: started,
            rocksdb_bytes,
            writer,
        });
        Ok(())
    }

    /// The second phase's end: once the writer thread has made the checkpoint in flight durable
    /// (`wait`: waiting for it), sinks are told it is complete and older checkpoints are
    /// retained or deleted. A checkpoint that failed to write fails the run.
    fn complete_checkpoint(&mut self, wait: bool) -> Result<(), RuntimeError> {
        let Some(ck) = self.checkpointing.as_mut() else {
            return Ok(());
        };
        match &ck.in_flight {
            Some(f) if wait || f.writer.is_finished() => {}
            _ => return Ok(()),
        }
        let Some(f) = ck.in_flight.take() else {
            return Ok(());
        };
        let waiting = Instant::now();
        let written = f.writer.join().map_err(|_| {
            RuntimeError::Checkpoint(format!("checkpoint {}: its writer thread panicked", f.id))
        })?;
        let now = Instant::now();
        ck.taking += now - waiting;
        ck.next_at = now + ck.config.interval;
        let bytes = written? + f.rocksdb_bytes;
        ck.completing += now - f.taken_at;
        ck.largest_bytes = ck.largest_bytes.max(bytes);
        ck.last_id = f.id;
        ck.taken += 1;
        let retained = ck.config.retained;
        for node in &mut self.nodes {
            if let Some(op) = node.op.as_mut() {
                op.checkpoint_complete(f.id)
                    .map_err(|e| in_node(&node.metrics.name, e))?;
            }
        }
        match &self.checkpointing {
            Some(ck) => ck.store.retain(retained),
            None => Ok(()),
        }
    }

    /// Restores checkpoint `meta` (read from `path`) into the freshly built graph: operator
    /// state, watermarks and ended inputs by node name; the sources were opened at its
    /// positions already.
    pub(super) fn restore(
        &mut self,
        pipeline: &Pipeline,
        path: &Path,
        meta: &Metadata,
        allow_non_restored: bool,
    ) -> Result<(), RuntimeError> {
        let refuse = |m: String| {
            RuntimeError::Checkpoint(format!(
                "{}: {m}; run with --allow-non-restored-state to start it without that state",
                path.display()
            ))
        };
        if meta.pipeline != pipeline.name {
            return Err(refuse(format!(
                "it was taken by pipeline `{}`, not `{}`",
                meta.pipeline, pipeline.name
            )));
        }
        if let Some(ck) = &mut self.checkpointing {
            ck.previous_rocksdb.clone_from(&meta.rocksdb);
        }
        let definitions = self
            .checkpointing
            .as_ref()
            .map(|c| c.definitions.clone())
            .unwrap_or_default();
        // Operators restored across inputs that gained columns, and those columns.
        let mut widened = 0;
        let mut gained: Vec<String> = Vec::new();
        for entry in &meta.nodes {
            let Some(i) = pipeline.nodes.iter().position(|n| n.name == entry.name) else {
                if entry.state.is_some() {
                    let why = format!(
                        "it holds state of `{}` ({}), which this pipeline does not have",
                        entry.name, entry.kind
                    );
                    if !allow_non_restored {
                        return Err(refuse(why));
                    }
                    eprintln!("warning: checkpoint: {why}: that state is dropped");
                }
                continue;
            };
            let node = &mut self.nodes[i];
            let mut changed = node.metrics.kind != entry.kind
                || definitions.get(i).is_some_and(|d| *d != entry.definition);
            if changed
                && entry.state.is_some()
                && let Some(added) = gained_columns(pipeline, i, entry)
            {
                // Stored rows are widened by name as the operator restores them.
                changed = false;
                for c in added {
                    if !gained.contains(&c) {
                        gained.push(c);
                    }
                }
                widened += 1;
            }
            if changed && entry.state.is_some() {
                let why = format!(
                    "`{}` ({}) is defined differently from when its state was checkpointed (its query, its input's columns or its output changed)",
                    entry.name, node.metrics.kind
                );
                if !allow_non_restored {
                    return Err(refuse(why));
                }
                eprintln!("warning: checkpoint: {why}: it starts without state");
                continue;
            }
            if let Some(state) = &entry.state {
                let bytes = read_state(path, state)?;
                let mut r = StateReader::new(&bytes);
                let op = node.op.as_mut().ok_or_else(|| {
                    refuse(format!("`{}` holds state but runs no operator", entry.name))
                })?;
                op.restore(&mut r).map_err(|e| in_node(&entry.name, e))?;
                r.finish()
                    .map_err(|e| RuntimeError::state(&entry.name, e))?;
            }
            node.wm = entry.watermark;
            if entry.input_watermarks.len() == node.input_wms.len() {
                node.input_wms.clone_from(&entry.input_watermarks);
            }
            if entry.inputs_ended.len() == node.ended.len() {
                node.ended.clone_from(&entry.inputs_ended);
                node.done = entry.done;
            }
        }
        if widened > 0 {
            eprintln!(
                "checkpoint: {widened} operator(s) restored although their input gained column(s) {}: rows they stored before hold NULL there",
                gained
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        for entry in &meta.sources {
            if let Some(s) = self.sources.iter_mut().find(|s| s.name == entry.name) {
                s.wm = entry.watermark;
                s.ended = entry.ended;
                if !entry.splits.is_empty() {
                    let idle = s.idle_timeout;
                    s.splits
                        .get_or_insert_with(|| SplitWatermarks::new(idle))
                        .restore(&entry.splits, Instant::now());
                }
            }
        }
        self.control_to_replay = meta.control_applied;
        cut_back_appended(meta)
    }

    /// Applies the control updates the restored checkpoint had applied, before any row is read,
    /// so rows are decided by the versions in force when it was taken.
    pub(super) fn replay_control(&mut self) -> Result<(), RuntimeError> {
        let deadline = Instant::now() + CONTROL_REPLAY_TIMEOUT;
        while self.control_applied < self.control_to_replay {
            let Some(control) = &self.control else {
                return Err(RuntimeError::Checkpoint(format!(
                    "the checkpoint had applied {} control updates, but this run reads no control stream",
                    self.control_to_replay
                )));
            };
            let left = deadline.saturating_duration_since(Instant::now());
            match control.messages.recv_timeout(left) {
                Ok(message) => self.apply_control_message(message)?,
                Err(_) => {
                    return Err(RuntimeError::Checkpoint(format!(
                        "the checkpoint had applied {} control updates; the control stream gave {} within {} s",
                        self.control_to_replay,
                        self.control_applied,
                        CONTROL_REPLAY_TIMEOUT.as_secs()
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use fsql_plan::{ConnectorSpec, Node, NodeId, Operator, Schema, SourceSpec};

    use super::*;

    fn source(table: &str, options: &[(&str, &str)]) -> Node {
        Node {
            id: NodeId(0),
            name: table.into(),
            inputs: vec![],
            schema: Schema::new(vec![]),
            event_time: None,
            op: Operator::Source(SourceSpec {
                table: table.into(),
                connector: ConnectorSpec {
                    connector: "filesystem".into(),
                    options: options
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    base_dir: "/pipelines/fraud".into(),
                },
                physical: Schema::new(vec![]),
                columns: vec![],
                watermark: None,
                metadata: BTreeMap::new(),
            }),
        }
    }

    #[test]
    fn the_late_data_file_and_every_dead_letter_file_are_recorded() {
        let mut pipeline = Pipeline {
            nodes: vec![
                source("a", &[("dead-letter.path", "bad/a.jsonl")]),
                source("b", &[("dead-letter.path", "file:///var/bad/b.jsonl")]),
                source("c", &[("path", "c.csv")]),
            ],
            ..Pipeline::default()
        };
        pipeline.settings.insert(
            "pipeline.late-data.path".into(),
            "/pipelines/fraud/late.jsonl".into(),
        );
        assert_eq!(
            appended_files(&pipeline),
            [
                PathBuf::from("/pipelines/fraud/bad/a.jsonl"),
                PathBuf::from("/pipelines/fraud/late.jsonl"),
                PathBuf::from("/var/bad/b.jsonl"),
            ]
        );
    }

    #[test]
    fn a_restore_cuts_appended_files_back_and_leaves_shorter_ones() {
        let dir = std::env::temp_dir().join(format!("fsql-appended-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let longer = dir.join("late.jsonl");
        let shorter = dir.join("dead.jsonl");
        std::fs::write(&longer, "one\ntwo\nthree\n").expect("write");
        std::fs::write(&shorter, "x\n").expect("write");
        let entry = |p: &Path, len| AppendedFile {
            path: p.display().to_string(),
            len,
        };
        let meta = Metadata {
            format: FORMAT,
            id: 1,
            pipeline: "p".into(),
            taken_at_ms: 0,
            control_applied: 0,
            sources: vec![],
            nodes: vec![],
            appended: vec![
                entry(&longer, 8),
                entry(&shorter, 10),
                entry(&dir.join("missing.jsonl"), 0),
            ],
            state_backend: "hashmap".into(),
            rocksdb: None,
        };
        cut_back_appended(&meta).expect("cut back");
        assert_eq!(
            std::fs::read_to_string(&longer).expect("read"),
            "one\ntwo\n"
        );
        assert_eq!(std::fs::read_to_string(&shorter).expect("read"), "x\n");
        assert!(!dir.join("missing.jsonl").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
