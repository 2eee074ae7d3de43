//! Checkpoints: consistent snapshots of a running pipeline, and recovery from them.
//!
//! The executor runs a pipeline on one thread and pushes every batch through the whole graph
//! before it polls again, so *between two polls* the pipeline is consistent without barriers:
//! every row a source handed out has been processed by every operator, and nothing is in flight.
//! A checkpoint is taken there, every `execution.checkpointing.interval`:
//!
//! 1. sinks make their output durable ([`crate::operator::Operator::flush`]);
//! 2. every operator hands over its state ([`crate::operator::Operator::snapshot_parts`]: bytes
//!    in the [`crate::state::codec`] encoding, or a view of its state frozen now that is encoded
//!    later), sources their positions ([`crate::source::Source::position`]), the executor the
//!    watermarks and the number of control updates applied; the RocksDB backend makes its
//!    checkpoint (hard links) into `chk-<n>.inprogress/` ([`store::CheckpointStore::begin`]).
//!    Up to here the pipeline waits;
//! 3. a writer thread, while the pipeline goes on, encodes what was deferred and
//!    [`store::CheckpointStore::finish`]es the checkpoint: state files written, hashed and
//!    synced, `_metadata` last, and the directory renamed to `chk-<n>/`. A directory without
//!    `_metadata` is not a checkpoint, so a crash before the rename leaves the previous one;
//! 4. once the executor sees the writer done, sinks are told it is complete
//!    ([`crate::operator::Operator::checkpoint_complete`]): the transactional Kafka sink commits
//!    its transaction there (with such a sink the pipeline waits for this, so that no output of
//!    after the checkpoint goes into the transaction it commits);
//! 5. older checkpoints beyond `execution.checkpointing.num-retained` are deleted.
//!
//! One checkpoint is in flight at a time. `SET 'state.backend.async' = 'false'` makes the
//! pipeline wait for every checkpoint to complete.
//!
//! `fsql run` restores the latest complete checkpoint of its directory before it reads anything.
//! See `docs/operations.md` for the guarantees each sink gives.

pub mod metadata;
pub mod store;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::RuntimeError;

pub use metadata::{
    AppendedFile, Metadata, NodeEntry, PartitionOffset, SourceEntry, SourcePosition,
};
pub use store::CheckpointStore;

/// `SET 'execution.checkpointing.interval'`: how often a checkpoint is taken.
pub const INTERVAL: &str = "execution.checkpointing.interval";
/// `SET 'execution.checkpointing.dir'`: where checkpoints are written (Flink 2's name; Flink 1's
/// `state.checkpoints.dir` is read too).
pub const DIR: &str = "execution.checkpointing.dir";
/// Flink 1's name of [`DIR`].
pub const DIR_LEGACY: &str = "state.checkpoints.dir";
/// `SET 'execution.checkpointing.num-retained'`: complete checkpoints kept (default 1, as Flink).
pub const NUM_RETAINED: &str = "execution.checkpointing.num-retained";
/// `SET 'state.backend.async'` (Flink 1's name): `'true'` (the default) writes a checkpoint's
/// files while the pipeline goes on; `'false'` makes the pipeline wait until they are durable.
pub const ASYNC: &str = "state.backend.async";

/// How a pipeline checkpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointConfig {
    /// Time between the completion of one checkpoint (its files durable) and the start of the
    /// next.
    pub interval: Duration,
    /// The checkpoint directory (`chk-<n>/` directories inside).
    pub dir: PathBuf,
    /// Complete checkpoints kept (at least 1).
    pub retained: usize,
    /// Whether the pipeline goes on while a checkpoint's files are written ([`ASYNC`]).
    pub asynchronous: bool,
}

impl CheckpointConfig {
    /// The configuration `settings` give: `None` when no interval is set (no checkpoints, as in
    /// Flink). An interval without a directory is an error: a checkpoint must go somewhere.
    pub fn from_settings(
        settings: &BTreeMap<String, String>,
    ) -> Result<Option<CheckpointConfig>, RuntimeError> {
        let Some(interval) = settings.get(INTERVAL) else {
            return Ok(None);
        };
        let interval = crate::parse_duration(interval)
            .map_err(|m| RuntimeError::Checkpoint(format!("'{INTERVAL}': {m}")))?;
        if interval.is_zero() {
            return Ok(None);
        }
        let dir = settings
            .get(DIR)
            .or_else(|| settings.get(DIR_LEGACY))
            .ok_or_else(|| {
                RuntimeError::Checkpoint(format!(
                    "'{INTERVAL}' is set but no checkpoint directory: SET '{DIR}' = 'path'"
                ))
            })?;
        let dir = PathBuf::from(dir.strip_prefix("file://").unwrap_or(dir));
        let retained = match settings.get(NUM_RETAINED) {
            None => 1,
            Some(n) => n
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| {
                    RuntimeError::Checkpoint(format!(
                        "'{NUM_RETAINED}' must be a positive whole number, got '{n}'"
                    ))
                })?,
        };
        let asynchronous = match settings.get(ASYNC).map(|v| v.trim().to_ascii_lowercase()) {
            None => true,
            Some(v) if v == "true" => true,
            Some(v) if v == "false" => false,
            Some(v) => {
                return Err(RuntimeError::Checkpoint(format!(
                    "'{ASYNC}' must be 'true' or 'false', got '{v}'"
                )));
            }
        };
        Ok(Some(CheckpointConfig {
            interval,
            dir,
            retained,
            asynchronous,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn checkpointing_is_on_with_an_interval_and_needs_a_directory() {
        assert_eq!(
            CheckpointConfig::from_settings(&settings(&[])).unwrap(),
            None
        );
        let c = CheckpointConfig::from_settings(&settings(&[
            (INTERVAL, "10 s"),
            (DIR_LEGACY, "file:///tmp/chk"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            c,
            CheckpointConfig {
                interval: Duration::from_secs(10),
                dir: PathBuf::from("/tmp/chk"),
                retained: 1,
                asynchronous: true,
            }
        );
        let e = CheckpointConfig::from_settings(&settings(&[(INTERVAL, "10 s")])).unwrap_err();
        assert!(e.to_string().contains(DIR), "{e}");
        let e = CheckpointConfig::from_settings(&settings(&[
            (INTERVAL, "1 s"),
            (DIR, "c"),
            (NUM_RETAINED, "0"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains(NUM_RETAINED), "{e}");
        let sync = CheckpointConfig::from_settings(&settings(&[
            (INTERVAL, "1 s"),
            (DIR, "c"),
            (ASYNC, "False"),
        ]))
        .unwrap()
        .unwrap();
        assert!(!sync.asynchronous);
        let e = CheckpointConfig::from_settings(&settings(&[
            (INTERVAL, "1 s"),
            (DIR, "c"),
            (ASYNC, "sometimes"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains(ASYNC), "{e}");
    }
}
