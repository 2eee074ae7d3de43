//! `fsql checkpoint list|inspect`: what a checkpoint directory holds, for the engineer deciding
//! what a restart will resume from.

use std::path::Path;

use fsql_runtime::checkpoint::store::read_metadata;
use fsql_runtime::checkpoint::{CheckpointStore, SourcePosition};

/// Lists the complete checkpoints of `dir`, oldest first (the newest is what `fsql run`
/// resumes from).
pub fn list(dir: &Path) -> Result<bool, String> {
    let all = CheckpointStore::new(dir)
        .list()
        .map_err(|e| e.to_string())?;
    if all.is_empty() {
        println!("no complete checkpoint in {}", dir.display());
        return Ok(true);
    }
    println!(
        "{:<10} {:<24} {:>12} {:>8}  pipeline",
        "checkpoint", "taken at (UTC)", "state bytes", "nodes"
    );
    for c in &all {
        let meta = read_metadata(&c.path).map_err(|e| e.to_string())?;
        // With RocksDB: the state files plus the RocksDB checkpoint (its SST files are shared
        // with other checkpoints through hard links; `inspect` says how much is new).
        let bytes: u64 = meta
            .nodes
            .iter()
            .filter_map(|n| n.state.as_ref())
            .map(|s| s.bytes)
            .sum::<u64>()
            + meta.rocksdb.as_ref().map_or(0, |r| r.bytes);
        println!(
            "{:<10} {:<24} {:>12} {:>8}  {}",
            format!("chk-{}", meta.id),
            time(meta.taken_at_ms),
            bytes,
            meta.nodes.len(),
            meta.pipeline
        );
    }
    Ok(true)
}

/// Prints one checkpoint: sources and where they resume, nodes with their watermarks and
/// state sizes. `path` is a `chk-<n>` directory or a checkpoint directory (its newest).
pub fn inspect(path: &Path) -> Result<bool, String> {
    let path = if path
        .join(fsql_runtime::checkpoint::store::METADATA_FILE)
        .is_file()
    {
        path.to_path_buf()
    } else {
        CheckpointStore::new(path)
            .latest()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no complete checkpoint in {}", path.display()))?
            .path
    };
    let meta = read_metadata(&path).map_err(|e| e.to_string())?;
    println!("checkpoint {} of pipeline `{}`", meta.id, meta.pipeline);
    println!("  path:            {}", path.display());
    println!("  taken at:        {} UTC", time(meta.taken_at_ms));
    println!("  control updates: {} applied", meta.control_applied);
    println!("  state backend:   {}", meta.state_backend);
    if let Some(r) = &meta.rocksdb {
        println!(
            "  rocksdb:         {} bytes in {} files ({}/), {} bytes new since the previous checkpoint (the rest hard-linked)",
            r.bytes,
            r.files.len(),
            r.dir,
            r.new_bytes
        );
    }
    println!("sources:");
    for s in &meta.sources {
        let at = match &s.position {
            _ if s.ended => "ended".to_string(),
            SourcePosition::Rows(n) => format!("after row {n}"),
            SourcePosition::Offsets(list) => list
                .iter()
                .map(|p| format!("{}/{}@{}", p.topic, p.partition, p.offset))
                .collect::<Vec<_>>()
                .join(" "),
        };
        println!("  {:<24} watermark {:<24} {at}", s.name, time(s.watermark));
    }
    println!("nodes:");
    for n in &meta.nodes {
        let state = n.state.as_ref().map_or("-".to_string(), |s| {
            format!("{} bytes ({})", s.bytes, s.file)
        });
        println!(
            "  {:<32} {:<16} watermark {:<24} state {state}",
            n.name,
            n.kind,
            time(n.watermark)
        );
    }
    if !meta.appended.is_empty() {
        println!("appended files (cut back to these lengths on restore):");
        for f in &meta.appended {
            println!("  {} {} bytes", f.path, f.len);
        }
    }
    Ok(true)
}

/// An epoch-milliseconds time as `YYYY-MM-DD HH:MM:SS.mmm` (`-` before the first watermark,
/// `end` for the final one).
fn time(ms: i64) -> String {
    match ms {
        i64::MIN => "-".into(),
        i64::MAX => "end".into(),
        ms => chrono::DateTime::from_timestamp_millis(ms).map_or(ms.to_string(), |t| {
            t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
        }),
    }
}
