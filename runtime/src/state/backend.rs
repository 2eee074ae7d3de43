//! The state backend a run's keyed state lives in: memory (every key resident, Flink's `hashmap`)
//! or RocksDB (`rocksdb`), where a [`KeyedState`](super::KeyedState) keeps a bounded resident set
//! of decoded values and the other keys' values live encoded in one RocksDB instance on local disk.
//!
//! The RocksDB instance is the run's working storage; a checkpoint makes it durable incrementally:
//! each table writes the values changed since the last checkpoint ([`KeyedState::flush`]), then
//! [`StateBackend::checkpoint`] takes a RocksDB checkpoint into the checkpoint directory, which
//! hard-links the immutable SST files (shared with the working instance and with earlier
//! checkpoints) and copies only the small MANIFEST/OPTIONS files. The operators' own snapshots
//! then hold every key's id and bytes but no values. So the instance is written without a
//! write-ahead log, and it is removed when the run ends. A restore builds a new working instance
//! from the checkpoint's files (SSTs hard-linked, the rest copied, so the checkpoint is never
//! modified) and keys come back spilled: values load on first access.
//!
//! [`KeyedState::flush`]: super::KeyedState::flush

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use fsql_plan::state_backend::{BackendKind, Compression, StateBackendOptions};
use rocksdb::{
    BlockBasedOptions, Cache, DB, DBCompressionType, DBPinnableSlice, Options, WriteBatch,
    WriteOptions,
};

use super::codec::StateError;
use crate::error::RuntimeError;

/// The backend the operators of one run build their keyed state in (cheap to clone).
#[derive(Clone, Default)]
pub struct StateBackend {
    /// `None`: the in-memory backend.
    rocks: Option<Arc<RocksStore>>,
    resident_keys: usize,
}

impl StateBackend {
    /// The in-memory backend.
    pub fn memory() -> StateBackend {
        StateBackend::default()
    }

    /// The backend `settings` choose; a RocksDB one opens its working instance now (in
    /// `state.backend.rocksdb.localdir`, or the system's temp dir), starting from the RocksDB
    /// files of checkpoint `restore` when it has some (they are checked against its metadata).
    pub fn open(
        settings: &std::collections::BTreeMap<String, String>,
        restore: Option<(&Path, &RocksCheckpoint)>,
    ) -> Result<StateBackend, RuntimeError> {
        let options = StateBackendOptions::from_settings(settings).map_err(RuntimeError::Plan)?;
        match options.kind {
            BackendKind::HashMap => Ok(StateBackend::memory()),
            BackendKind::RocksDb => Ok(StateBackend {
                rocks: Some(Arc::new(RocksStore::open(&options, restore)?)),
                resident_keys: options.resident_keys,
            }),
        }
    }

    /// Takes a RocksDB checkpoint of the working instance into `dir` (which must not exist):
    /// the tables must have flushed their changed values first. `previous` (the last
    /// checkpoint's files) tells which files are new. `None` for the in-memory backend.
    pub fn checkpoint(
        &self,
        dir: &Path,
        previous: Option<&RocksCheckpoint>,
    ) -> Result<Option<RocksCheckpoint>, RuntimeError> {
        let Some(store) = &self.rocks else {
            return Ok(None);
        };
        let fail = |e: rocksdb::Error| rocks_error(dir, e);
        rocksdb::checkpoint::Checkpoint::new(&store.db)
            .and_then(|c| c.create_checkpoint(dir))
            .map_err(fail)?;
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
            let entry = entry.map_err(|e| io(dir, e))?;
            let bytes = entry.metadata().map_err(|e| io(&entry.path(), e))?.len();
            files.push((entry.file_name().to_string_lossy().into_owned(), bytes));
        }
        files.sort();
        let shared = |name: &str| {
            name.ends_with(".sst") && previous.is_some_and(|p| p.files.iter().any(|f| f.0 == name))
        };
        let new_bytes = files.iter().filter(|f| !shared(&f.0)).map(|f| f.1).sum();
        Ok(Some(RocksCheckpoint {
            dir: dir
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            bytes: files.iter().map(|f| f.1).sum(),
            new_bytes,
            files,
        }))
    }

    /// Flink's name of the backend (`hashmap` or `rocksdb`).
    pub fn name(&self) -> &'static str {
        if self.rocks.is_some() {
            "rocksdb"
        } else {
            "hashmap"
        }
    }

    /// The working directory of the RocksDB instance, if this is the RocksDB backend.
    pub fn working_dir(&self) -> Option<&Path> {
        self.rocks.as_deref().map(|r| r.dir.path.as_path())
    }

    /// The storage of table `name` (the node's stable name from the plan, so a restored run
    /// finds its values): a key prefix of its own in the RocksDB instance, and the resident
    /// budget; `None` for the in-memory backend.
    pub(crate) fn table(&self, name: &str) -> Option<(RocksTable, usize)> {
        let store = self.rocks.as_ref()?;
        let digest = fsql_plan::sha256_hex(name.as_bytes());
        let hex = digest.strip_prefix("sha256:").unwrap_or(&digest);
        let n = hex.get(..16).and_then(|h| u64::from_str_radix(h, 16).ok());
        Some((
            RocksTable {
                store: Arc::clone(store),
                prefix: n.unwrap_or(0).to_be_bytes(),
            },
            self.resident_keys,
        ))
    }
}

/// The RocksDB part of a checkpoint: a RocksDB checkpoint directory beside the state files.
/// Its files are listed with their sizes so a restore finds a missing or truncated one before
/// RocksDB opens them; their contents are guarded by RocksDB's own checksums (every SST block
/// carries a CRC32c, checked when read), not re-hashed per checkpoint, which would cost time
/// proportional to the whole state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RocksCheckpoint {
    /// The directory's name inside the checkpoint.
    pub dir: String,
    /// Its files: (name, bytes).
    pub files: Vec<(String, u64)>,
    /// Bytes of all its files.
    pub bytes: u64,
    /// Bytes of the files the previous checkpoint did not have: what this one added on disk.
    pub new_bytes: u64,
}

/// A directory removed when dropped (the RocksDB instance's working dir).
struct WorkDir {
    path: PathBuf,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        // Best effort: a leftover directory only costs disk space, and it is named as fsql's.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// One run's RocksDB instance. Fields drop in order: the database closes before its directory
/// is removed.
pub(crate) struct RocksStore {
    db: DB,
    write: WriteOptions,
    dir: WorkDir,
}

fn io(path: &Path, e: std::io::Error) -> RuntimeError {
    RuntimeError::io(path.display().to_string(), e)
}

/// Fills the empty working dir `to` with checkpoint `from`'s RocksDB files, after checking
/// they are all there with their sizes: SST files (never modified by RocksDB) hard-linked when
/// the file system allows, the others (the MANIFEST grows) copied.
fn seed_from(from: &Path, meta: &RocksCheckpoint, to: &Path) -> Result<(), RuntimeError> {
    for (name, bytes) in &meta.files {
        if name.contains('/') || name.contains("..") {
            return Err(RuntimeError::BackendSetup(format!(
                "{}: the file name `{name}` is not a plain name",
                from.display()
            )));
        }
        let src = from.join(name);
        let len = std::fs::metadata(&src).map_err(|e| io(&src, e))?.len();
        if len != *bytes {
            return Err(RuntimeError::BackendSetup(format!(
                "{}: {len} bytes where the metadata says {bytes}",
                src.display()
            )));
        }
        let dst = to.join(name);
        let linked = name.ends_with(".sst") && std::fs::hard_link(&src, &dst).is_ok();
        if !linked {
            std::fs::copy(&src, &dst).map_err(|e| io(&dst, e))?;
        }
    }
    Ok(())
}

fn compression(c: Compression) -> DBCompressionType {
    match c {
        Compression::None => DBCompressionType::None,
        Compression::Snappy => DBCompressionType::Snappy,
        Compression::Lz4 => DBCompressionType::Lz4,
        Compression::Zstd => DBCompressionType::Zstd,
    }
}

/// A directory name no other run of this machine uses.
fn fresh_dir(parent: &Path) -> PathBuf {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    parent.join(format!(
        "fsql-state-{}-{}-{nanos}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Removes the working dirs in `parent` that runs which no longer exist left behind (killed
/// before they could remove theirs): `fsql-state-<pid>-…` whose process is gone. A directory of
/// a live process, even an unrelated one that reused the pid, is left alone.
fn sweep_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("fsql-state-"))
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            // Best effort, like the removal at the end of a run.
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl RocksStore {
    fn open(
        o: &StateBackendOptions,
        restore: Option<(&Path, &RocksCheckpoint)>,
    ) -> Result<RocksStore, RuntimeError> {
        let parent = o
            .local_dir
            .as_deref()
            .map_or_else(std::env::temp_dir, PathBuf::from);
        if Path::new("/proc/self").exists() {
            sweep_stale(&parent);
        }
        let path = fresh_dir(&parent);
        std::fs::create_dir_all(&path)
            .map_err(|e| RuntimeError::io(path.display().to_string(), e))?;
        let dir = WorkDir { path };
        if let Some((from, meta)) = restore {
            seed_from(from, meta, &dir.path)?;
        }
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_write_buffer_size(usize::try_from(o.write_buffer_bytes).unwrap_or(usize::MAX));
        let levels: Vec<_> = o.compression.iter().map(|&c| compression(c)).collect();
        if let [one] = levels.as_slice() {
            opts.set_compression_type(*one);
        } else {
            opts.set_compression_per_level(&levels);
        }
        let mut table = BlockBasedOptions::default();
        let cache =
            Cache::new_lru_cache(usize::try_from(o.block_cache_bytes).unwrap_or(usize::MAX))
                .map_err(|e| rocks_error(&dir.path, e))?;
        table.set_block_cache(&cache);
        opts.set_block_based_table_factory(&table);
        let db = DB::open(&opts, &dir.path).map_err(|e| rocks_error(&dir.path, e))?;
        let mut write = WriteOptions::default();
        // Checkpoints copy the state out; the working instance need not survive a crash.
        write.disable_wal(true);
        Ok(RocksStore { db, write, dir })
    }
}

fn rocks_error(dir: &Path, e: rocksdb::Error) -> RuntimeError {
    RuntimeError::BackendSetup(format!("RocksDB in {}: {e}", dir.display()))
}

/// One table's part of the run's RocksDB instance: the keys starting with its prefix.
pub(crate) struct RocksTable {
    store: Arc<RocksStore>,
    prefix: [u8; 8],
}

impl RocksTable {
    /// The RocksDB key of id `id`: the table's prefix, then the id (big-endian).
    fn key(&self, id: u32) -> [u8; 12] {
        let mut k = [0u8; 12];
        k[..8].copy_from_slice(&self.prefix);
        k[8..].copy_from_slice(&id.to_be_bytes());
        k
    }

    /// The stored bytes of `id`'s value, if any.
    pub(crate) fn get(&self, id: u32) -> Result<Option<DBPinnableSlice<'_>>, StateError> {
        self.store.db.get_pinned(self.key(id)).map_err(error)
    }

    /// Writes `(id, bytes)` pairs in one batch.
    pub(crate) fn put_all<'a>(
        &self,
        values: impl IntoIterator<Item = (u32, &'a [u8])>,
    ) -> Result<(), StateError> {
        let mut batch = WriteBatch::default();
        for (id, bytes) in values {
            batch.put(self.key(id), bytes);
        }
        self.store
            .db
            .write_opt(batch, &self.store.write)
            .map_err(error)
    }

    /// Deletes `id`'s value.
    pub(crate) fn delete(&self, id: u32) -> Result<(), StateError> {
        self.store
            .db
            .delete_opt(self.key(id), &self.store.write)
            .map_err(error)
    }

    /// Deletes every value of the table.
    pub(crate) fn clear(&self) -> Result<(), StateError> {
        let mut batch = WriteBatch::default();
        let end = u64::from_be_bytes(self.prefix).checked_add(1);
        match end {
            Some(end) => batch.delete_range(self.prefix, end.to_be_bytes()),
            None => batch.delete_range(&self.prefix[..], &[0xff; 13][..]),
        }
        self.store
            .db
            .write_opt(batch, &self.store.write)
            .map_err(error)
    }

    /// Replaces `id`'s stored bytes (tests corrupt a value with it).
    #[cfg(test)]
    pub(crate) fn put_raw(&self, id: u32, bytes: &[u8]) {
        self.put_all([(id, bytes)]).expect("test write");
    }
}

fn error(e: rocksdb::Error) -> StateError {
    StateError(format!("RocksDB: {e}"))
}
