//! The checkpoint directory: `chk-<n>/` directories, each with `_metadata` and one state file
//! per stateful node, written atomically.
//!
//! A checkpoint is written into `chk-<n>.inprogress/`, every file synced, then renamed to
//! `chk-<n>/` and the parent directory synced: a crash at any point leaves either the whole
//! checkpoint or no `chk-<n>` at all (a leftover `.inprogress` directory is ignored and
//! removed by the next write). Retention deletes the same way round: a checkpoint is renamed to
//! `chk-<n>.deleting/` before its files go.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::metadata::{FORMAT, Metadata, StateFile};
use crate::error::RuntimeError;
use crate::state::StateSnapshot;

/// The name of a checkpoint's metadata file.
pub const METADATA_FILE: &str = "_metadata";

/// A checkpoint directory.
#[derive(Clone, Debug)]
pub struct CheckpointStore {
    dir: PathBuf,
}

/// A complete checkpoint on disk.
#[derive(Clone, Debug)]
pub struct StoredCheckpoint {
    pub id: u64,
    pub path: PathBuf,
}

fn io(path: &Path, e: std::io::Error) -> RuntimeError {
    RuntimeError::io(path.display().to_string(), e)
}

impl CheckpointStore {
    /// The store in `dir` (created on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> CheckpointStore {
        CheckpointStore { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The complete checkpoints, oldest first (none when the directory does not exist).
    pub fn list(&self) -> Result<Vec<StoredCheckpoint>, RuntimeError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io(&self.dir, e))?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_prefix("chk-"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let path = entry.path();
            if path.join(METADATA_FILE).is_file() {
                out.push(StoredCheckpoint { id, path });
            }
        }
        out.sort_by_key(|c| c.id);
        Ok(out)
    }

    /// The newest complete checkpoint.
    pub fn latest(&self) -> Result<Option<StoredCheckpoint>, RuntimeError> {
        Ok(self.list()?.pop())
    }

    /// Writes checkpoint `meta.id` with `files` (name → state bytes) atomically; fills in the
    /// metadata's state-file sizes and digests. Returns its directory.
    pub fn write(
        &self,
        meta: &mut Metadata,
        files: Vec<(usize, String, Vec<u8>)>,
    ) -> Result<PathBuf, RuntimeError> {
        self.write_with(meta, files, |_, _| Ok(()))
    }

    /// [`CheckpointStore::write`], with `more` adding to the checkpoint's directory (while it is
    /// still `.inprogress`) and to its metadata before the metadata is written: the RocksDB
    /// backend's checkpoint.
    pub fn write_with(
        &self,
        meta: &mut Metadata,
        files: Vec<(usize, String, Vec<u8>)>,
        more: impl FnOnce(&Path, &mut Metadata) -> Result<(), RuntimeError>,
    ) -> Result<PathBuf, RuntimeError> {
        let tmp = self.begin(meta.id)?;
        more(&tmp, meta)?;
        let files = files
            .into_iter()
            .map(|(i, name, bytes)| (i, name, StateSnapshot::ready(bytes)))
            .collect();
        self.finish(&tmp, meta, files).map(|(done, _)| done)
    }

    /// The first phase of writing checkpoint `id`: its empty `chk-<id>.inprogress/` directory
    /// (a leftover of an interrupted write removed first). Nothing there is a checkpoint until
    /// [`CheckpointStore::finish`] renames it.
    pub fn begin(&self, id: u64) -> Result<PathBuf, RuntimeError> {
        fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))?;
        let tmp = self.dir.join(format!("chk-{id}.inprogress"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
        }
        fs::create_dir(&tmp).map_err(|e| io(&tmp, e))?;
        Ok(tmp)
    }

    /// The second phase (on the checkpoint's writer thread, while the pipeline runs on): writes
    /// each node's state file into `tmp` (encoding deferred parts, hashing as it writes) and
    /// fills in the metadata's sizes and digests, then `_metadata`, syncs, and renames `tmp` to
    /// `chk-<n>/`. Returns the checkpoint's directory and its state files' bytes.
    pub fn finish(
        &self,
        tmp: &Path,
        meta: &mut Metadata,
        files: Vec<(usize, String, StateSnapshot)>,
    ) -> Result<(PathBuf, u64), RuntimeError> {
        let mut total = 0;
        for (node, file, state) in files {
            let path = tmp.join(&file);
            let name = meta.nodes.get(node).map_or("", |n| n.name.as_str());
            let (bytes, sha256) = write_parts_synced(&path, state, name)?;
            total += bytes;
            if let Some(entry) = meta.nodes.get_mut(node) {
                entry.state = Some(StateFile {
                    file,
                    bytes,
                    sha256,
                });
            }
        }
        let json = serde_json::to_vec_pretty(meta)
            .map_err(|e| RuntimeError::Checkpoint(format!("encoding the metadata: {e}")))?;
        write_synced(&tmp.join(METADATA_FILE), &json)?;
        sync_dir(tmp)?;
        let name = format!("chk-{}", meta.id);
        let done = self.dir.join(&name);
        fs::rename(tmp, &done).map_err(|e| io(&done, e))?;
        sync_dir(&self.dir)?;
        Ok((done, total))
    }

    /// Deletes complete checkpoints older than the newest `keep`, and leftovers of interrupted
    /// writes and deletions.
    pub fn retain(&self, keep: usize) -> Result<(), RuntimeError> {
        let all = self.list()?;
        let drop = all.len().saturating_sub(keep.max(1));
        for c in &all[..drop] {
            // Renamed first: a deletion cut short (the process killed) must not leave a
            // `chk-<n>` directory without its metadata, which is no checkpoint, so never listed
            // and never deleted. A `.deleting` leftover is swept below.
            let doomed = c.path.with_extension("deleting");
            fs::rename(&c.path, &doomed).map_err(|e| io(&c.path, e))?;
            fs::remove_dir_all(&doomed).map_err(|e| io(&doomed, e))?;
        }
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.ends_with(".inprogress") || name.ends_with(".deleting") {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        Ok(())
    }
}

/// Reads and checks a checkpoint's metadata.
pub fn read_metadata(checkpoint: &Path) -> Result<Metadata, RuntimeError> {
    let path = checkpoint.join(METADATA_FILE);
    let bytes = fs::read(&path).map_err(|e| io(&path, e))?;
    let meta: Metadata = serde_json::from_slice(&bytes).map_err(|e| {
        RuntimeError::Checkpoint(format!(
            "{}: not a checkpoint's metadata: {e}",
            path.display()
        ))
    })?;
    if meta.format != FORMAT {
        return Err(RuntimeError::Checkpoint(format!(
            "{}: checkpoint format {} (this fsql reads format {FORMAT})",
            path.display(),
            meta.format
        )));
    }
    Ok(meta)
}

/// Reads a state file of `checkpoint`, checking its size and digest.
pub fn read_state(checkpoint: &Path, state: &StateFile) -> Result<Vec<u8>, RuntimeError> {
    if state.file.contains(['/', '\\']) || state.file.starts_with('.') {
        return Err(RuntimeError::Checkpoint(format!(
            "{}: state file name '{}' leaves the checkpoint",
            checkpoint.display(),
            state.file
        )));
    }
    let path = checkpoint.join(&state.file);
    let bytes = fs::read(&path).map_err(|e| io(&path, e))?;
    if bytes.len() as u64 != state.bytes || fsql_plan::sha256_hex(&bytes) != state.sha256 {
        return Err(RuntimeError::Checkpoint(format!(
            "{}: the state file is damaged (its size or digest differs from the metadata's)",
            path.display()
        )));
    }
    Ok(bytes)
}

/// A state file's name for node `index` called `name`: the position keeps names unique, the
/// name (its characters outside `[A-Za-z0-9_-]` replaced) keeps it readable.
pub fn state_file_name(index: usize, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    format!("{index:04}-{clean}.state")
}

/// Writes `state`'s parts (node `node`'s) to a new file at `path`, synced; returns its length
/// and SHA-256 (`sha256:<hex>`), computed as the bytes go out.
fn write_parts_synced(
    path: &Path,
    state: StateSnapshot,
    node: &str,
) -> Result<(u64, String), RuntimeError> {
    use sha2::{Digest, Sha256};
    let file = fs::File::create(path).map_err(|e| io(path, e))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    state.write_to(
        |bytes: &[u8]| {
            hasher.update(bytes);
            len += bytes.len() as u64;
            out.write_all(bytes).map_err(|e| io(path, e))
        },
        |e| RuntimeError::state(node, e),
    )?;
    let file = out.into_inner().map_err(|e| io(path, e.into_error()))?;
    file.sync_all().map_err(|e| io(path, e))?;
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256:");
    for b in hasher.finalize() {
        hex.push_str(&format!("{b:02x}"));
    }
    Ok((len, hex))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), RuntimeError> {
    let mut f = fs::File::create(path).map_err(|e| io(path, e))?;
    f.write_all(bytes).map_err(|e| io(path, e))?;
    f.sync_all().map_err(|e| io(path, e))
}

fn sync_dir(dir: &Path) -> Result<(), RuntimeError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::metadata::NodeEntry;

    fn meta(id: u64) -> Metadata {
        Metadata {
            format: FORMAT,
            id,
            pipeline: "p".into(),
            taken_at_ms: 0,
            control_applied: 0,
            sources: vec![],
            state_backend: "hashmap".into(),
            rocksdb: None,
            nodes: vec![NodeEntry {
                name: "features".into(),
                kind: "over".into(),
                definition: "d".into(),
                watermark: 5,
                input_watermarks: vec![5],
                inputs_ended: vec![false],
                done: false,
                state: None,
                input_columns: None,
            }],
            appended: vec![],
        }
    }

    #[test]
    fn checkpoints_are_written_whole_listed_in_order_and_retained() {
        let dir = std::env::temp_dir().join(format!("fsql-store-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = CheckpointStore::new(&dir);
        assert!(store.latest().unwrap().is_none());
        for id in 1..=3 {
            let mut m = meta(id);
            let path = store
                .write(
                    &mut m,
                    vec![(0, state_file_name(0, "features"), vec![id as u8; 10])],
                )
                .unwrap();
            let back = read_metadata(&path).unwrap();
            assert_eq!(back, m);
            let state = back.nodes[0].state.as_ref().unwrap();
            assert_eq!(read_state(&path, state).unwrap(), vec![id as u8; 10]);
        }
        // An interrupted write is not a checkpoint.
        fs::create_dir_all(dir.join("chk-4.inprogress")).unwrap();
        fs::create_dir_all(dir.join("chk-5")).unwrap();
        // Nor is one whose deletion was cut short.
        fs::create_dir_all(dir.join("chk-0.deleting")).unwrap();
        assert_eq!(store.latest().unwrap().unwrap().id, 3);
        store.retain(2).unwrap();
        let ids: Vec<u64> = store.list().unwrap().iter().map(|c| c.id).collect();
        assert_eq!(ids, [2, 3]);
        assert!(!dir.join("chk-4.inprogress").exists());
        assert!(!dir.join("chk-0.deleting").exists());
        assert!(!dir.join("chk-1").exists() && !dir.join("chk-1.deleting").exists());
        // A damaged state file is refused.
        let latest = store.latest().unwrap().unwrap();
        let m = read_metadata(&latest.path).unwrap();
        let state = m.nodes[0].state.clone().unwrap();
        fs::write(latest.path.join(&state.file), [9u8; 10]).unwrap();
        let e = read_state(&latest.path, &state).unwrap_err();
        assert!(e.to_string().contains("damaged"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
