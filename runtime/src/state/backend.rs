//! The state backend a run's keyed state lives in: memory (every key resident, Flink's `hashmap`)
//! or RocksDB (`rocksdb`), where a [`KeyedState`](super::KeyedState) keeps a bounded resident set
//! of decoded values and the other keys' values live encoded in one RocksDB instance on local disk.
//!
//! The RocksDB instance is the run's working storage, not its durable state: checkpoints still go
//! through `Operator::snapshot`, which copies spilled values' bytes out of RocksDB as they are. So
//! the instance is written without a write-ahead log and removed when the run ends.

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
    /// `state.backend.rocksdb.localdir`, or the system's temp dir).
    pub fn open(
        settings: &std::collections::BTreeMap<String, String>,
    ) -> Result<StateBackend, RuntimeError> {
        let options = StateBackendOptions::from_settings(settings).map_err(RuntimeError::Plan)?;
        match options.kind {
            BackendKind::HashMap => Ok(StateBackend::memory()),
            BackendKind::RocksDb => Ok(StateBackend {
                rocks: Some(Arc::new(RocksStore::open(&options)?)),
                resident_keys: options.resident_keys,
            }),
        }
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

    /// A new table's storage: a key prefix of its own in the RocksDB instance, and the resident
    /// budget; `None` for the in-memory backend.
    pub(crate) fn table(&self) -> Option<(RocksTable, usize)> {
        let store = self.rocks.as_ref()?;
        let n = store.next_table.fetch_add(1, Ordering::Relaxed);
        Some((
            RocksTable {
                store: Arc::clone(store),
                prefix: n.to_be_bytes(),
            },
            self.resident_keys,
        ))
    }
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
    next_table: AtomicU32,
    dir: WorkDir,
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

impl RocksStore {
    fn open(o: &StateBackendOptions) -> Result<RocksStore, RuntimeError> {
        let parent = o
            .local_dir
            .as_deref()
            .map_or_else(std::env::temp_dir, PathBuf::from);
        let path = fresh_dir(&parent);
        std::fs::create_dir_all(&path)
            .map_err(|e| RuntimeError::io(path.display().to_string(), e))?;
        let dir = WorkDir { path };
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
        Ok(RocksStore {
            db,
            write,
            next_table: AtomicU32::new(0),
            dir,
        })
    }
}

fn rocks_error(dir: &Path, e: rocksdb::Error) -> RuntimeError {
    RuntimeError::Checkpoint(format!("RocksDB state in {}: {e}", dir.display()))
}

/// One table's part of the run's RocksDB instance: the keys starting with its prefix.
pub(crate) struct RocksTable {
    store: Arc<RocksStore>,
    prefix: [u8; 4],
}

impl RocksTable {
    /// The RocksDB key of id `id`: the table's prefix, then the id (big-endian).
    fn key(&self, id: u32) -> [u8; 8] {
        let mut k = [0u8; 8];
        k[..4].copy_from_slice(&self.prefix);
        k[4..].copy_from_slice(&id.to_be_bytes());
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
        let end = u32::from_be_bytes(self.prefix).checked_add(1);
        match end {
            Some(end) => batch.delete_range(self.prefix, end.to_be_bytes()),
            None => batch.delete_range(&self.prefix[..], &[0xff; 9][..]),
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
