//! The state backend a pipeline's `SET` options choose (`state.backend` and the RocksDB options),
//! parsed in one place so the compiler's checks and the runtime read the settings the same way.

use std::collections::BTreeMap;

/// Where keyed state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// Every key resident in memory (Flink's `hashmap`, the default).
    HashMap,
    /// A bounded resident set in memory over a RocksDB instance on local disk (`rocksdb`).
    RocksDb,
}

/// RocksDB's block compression (Flink's `*_COMPRESSION` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Snappy,
    Lz4,
    Zstd,
}

/// The state backend and its options, with Flink's defaults where Flink has the option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateBackendOptions {
    pub kind: BackendKind,
    /// `state.backend.rocksdb.localdir`: where the working RocksDB instance lives (a fresh
    /// directory inside it, removed when the run ends); `None` = the system's temp dir.
    pub local_dir: Option<String>,
    /// `state.backend.rocksdb.block.cache-size` in bytes (Flink: 8 MB).
    pub block_cache_bytes: u64,
    /// `state.backend.rocksdb.writebuffer.size` in bytes (Flink: 64 MB).
    pub write_buffer_bytes: u64,
    /// `state.backend.rocksdb.compression.per-level`: one entry per LSM level (Flink:
    /// `SNAPPY_COMPRESSION`); the last entry also covers deeper levels.
    pub compression: Vec<Compression>,
    /// `state.backend.rocksdb.resident-keys` (fsql's): keys per operator table whose values stay
    /// decoded in memory; colder ones live only in RocksDB.
    pub resident_keys: usize,
}

/// Default for [`StateBackendOptions::resident_keys`].
pub const DEFAULT_RESIDENT_KEYS: usize = 100_000;

impl Default for StateBackendOptions {
    fn default() -> StateBackendOptions {
        StateBackendOptions {
            kind: BackendKind::HashMap,
            local_dir: None,
            block_cache_bytes: 8 << 20,
            write_buffer_bytes: 64 << 20,
            compression: vec![Compression::Snappy],
            resident_keys: DEFAULT_RESIDENT_KEYS,
        }
    }
}

/// Checks one setting's value (`Err`: why it is invalid).
pub type CheckValue = fn(&str) -> Result<(), String>;

/// The `SET` keys this module reads, each with the check of its value.
pub const STATE_BACKEND_SETTINGS: &[(&str, CheckValue)] = &[
    ("state.backend", |v| parse_backend(v).map(drop)),
    ("state.backend.type", |v| parse_backend(v).map(drop)),
    ("state.backend.rocksdb.localdir", |_| Ok(())),
    ("state.backend.rocksdb.block.cache-size", |v| {
        parse_memory_size(v).map(drop)
    }),
    ("state.backend.rocksdb.writebuffer.size", |v| {
        parse_memory_size(v).map(drop)
    }),
    ("state.backend.rocksdb.compression.per-level", |v| {
        parse_compression(v).map(drop)
    }),
    ("state.backend.rocksdb.resident-keys", |v| {
        parse_resident_keys(v).map(drop)
    }),
    ("state.backend.incremental", parse_incremental),
];

impl StateBackendOptions {
    /// The options `settings` give (unset ones keep their defaults); an invalid value names its key.
    pub fn from_settings(
        settings: &BTreeMap<String, String>,
    ) -> Result<StateBackendOptions, String> {
        let mut o = StateBackendOptions::default();
        let get = |k: &str| settings.get(k).map(String::as_str);
        let at = |k: &str, e: String| format!("'{k}': {e}");
        for key in ["state.backend", "state.backend.type"] {
            if let Some(v) = get(key) {
                o.kind = parse_backend(v).map_err(|e| at(key, e))?;
            }
        }
        o.local_dir = get("state.backend.rocksdb.localdir").map(str::to_owned);
        let key = "state.backend.rocksdb.block.cache-size";
        if let Some(v) = get(key) {
            o.block_cache_bytes = parse_memory_size(v).map_err(|e| at(key, e))?;
        }
        let key = "state.backend.rocksdb.writebuffer.size";
        if let Some(v) = get(key) {
            o.write_buffer_bytes = parse_memory_size(v).map_err(|e| at(key, e))?;
        }
        let key = "state.backend.rocksdb.compression.per-level";
        if let Some(v) = get(key) {
            o.compression = parse_compression(v).map_err(|e| at(key, e))?;
        }
        let key = "state.backend.rocksdb.resident-keys";
        if let Some(v) = get(key) {
            o.resident_keys = parse_resident_keys(v).map_err(|e| at(key, e))?;
        }
        let key = "state.backend.incremental";
        if let Some(v) = get(key) {
            parse_incremental(v).map_err(|e| at(key, e))?;
        }
        Ok(o)
    }
}

/// Flink's backend names (`hashmap`, `rocksdb`).
pub fn parse_backend(v: &str) -> Result<BackendKind, String> {
    match v.to_ascii_lowercase().as_str() {
        "hashmap" => Ok(BackendKind::HashMap),
        "rocksdb" => Ok(BackendKind::RocksDb),
        _ => Err(format!("expected 'hashmap' or 'rocksdb', got '{v}'")),
    }
}

/// A Flink memory size: a whole number with an optional unit (`b`, `kb`, `mb`, `gb`, `tb`, also
/// `k`, `m`, `g`, `t`, `kib`, …; powers of 1024 as in Flink), e.g. `64mb`, `8 mb`, `1073741824`.
pub fn parse_memory_size(v: &str) -> Result<u64, String> {
    let t = v.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("expected a memory size such as '64mb', got '{v}'"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" | "bytes" => 0,
        "k" | "kb" | "kib" | "kibibytes" => 10,
        "m" | "mb" | "mib" | "mebibytes" => 20,
        "g" | "gb" | "gib" | "gibibytes" => 30,
        "t" | "tb" | "tib" | "tebibytes" => 40,
        other => return Err(format!("unknown memory unit '{other}' in '{v}'")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("memory size '{v}' is too large"))
}

/// Flink's per-level compression list: comma-separated `NO_COMPRESSION`, `SNAPPY_COMPRESSION`,
/// `LZ4_COMPRESSION`, `ZSTD_COMPRESSION`.
pub fn parse_compression(v: &str) -> Result<Vec<Compression>, String> {
    v.split([',', ';'])
        .map(|c| match c.trim().to_ascii_uppercase().as_str() {
            "NO_COMPRESSION" => Ok(Compression::None),
            "SNAPPY_COMPRESSION" => Ok(Compression::Snappy),
            "LZ4_COMPRESSION" => Ok(Compression::Lz4),
            "ZSTD_COMPRESSION" => Ok(Compression::Zstd),
            other => Err(format!(
                "unknown compression '{other}' (expected NO_COMPRESSION, SNAPPY_COMPRESSION, LZ4_COMPRESSION or ZSTD_COMPRESSION)"
            )),
        })
        .collect()
}

fn parse_resident_keys(v: &str) -> Result<usize, String> {
    match v.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("expected a positive whole number, got '{v}'")),
    }
}

/// `state.backend.incremental` (Flink's switch): accepted for Flink scripts, as the backend
/// decides: the RocksDB backend's checkpoints are always incremental (unchanged SST files are
/// shared by hard link), the in-memory backend's always full.
fn parse_incremental(v: &str) -> Result<(), String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "false" => Ok(()),
        _ => Err(format!("expected 'true' or 'false', got '{v}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_flinks_and_values_parse_with_units() {
        let o = StateBackendOptions::from_settings(&BTreeMap::new()).unwrap();
        assert_eq!(o, StateBackendOptions::default());
        assert_eq!(o.kind, BackendKind::HashMap);
        let s: BTreeMap<String, String> = [
            ("state.backend", "rocksdb"),
            ("state.backend.rocksdb.block.cache-size", "256 mb"),
            ("state.backend.rocksdb.writebuffer.size", "1gb"),
            (
                "state.backend.rocksdb.compression.per-level",
                "NO_COMPRESSION, LZ4_COMPRESSION,ZSTD_COMPRESSION",
            ),
            ("state.backend.rocksdb.resident-keys", "5"),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
        let o = StateBackendOptions::from_settings(&s).unwrap();
        assert_eq!(o.kind, BackendKind::RocksDb);
        assert_eq!(o.block_cache_bytes, 256 << 20);
        assert_eq!(o.write_buffer_bytes, 1 << 30);
        assert_eq!(
            o.compression,
            [Compression::None, Compression::Lz4, Compression::Zstd]
        );
        assert_eq!(o.resident_keys, 5);
    }

    #[test]
    fn bad_values_are_refused_with_their_key() {
        for (k, v, want) in [
            (
                "state.backend",
                "filesystem",
                "expected 'hashmap' or 'rocksdb'",
            ),
            (
                "state.backend.rocksdb.block.cache-size",
                "8 parsecs",
                "unknown memory unit",
            ),
            (
                "state.backend.rocksdb.writebuffer.size",
                "mb",
                "expected a memory size",
            ),
            (
                "state.backend.rocksdb.compression.per-level",
                "GZIP",
                "unknown compression",
            ),
            (
                "state.backend.rocksdb.resident-keys",
                "0",
                "positive whole number",
            ),
            (
                "state.backend.incremental",
                "yes",
                "expected 'true' or 'false'",
            ),
        ] {
            let s = BTreeMap::from([(k.to_string(), v.to_string())]);
            let e = StateBackendOptions::from_settings(&s).unwrap_err();
            assert!(
                e.starts_with(&format!("'{k}'")) && e.contains(want),
                "{k}={v}: {e}"
            );
        }
        assert!(parse_memory_size("99999999999999 tb").is_err());
    }
}
