//! What checkpoints cost: their duration and size with `N` cards of 24-hour velocity state, the
//! time to restore them, and the throughput of one pipeline with and without periodic
//! checkpoints, side by side in one run.
//!
//! The pipeline: per card, COUNT and SUM over the last 24 hours (OVER, arrival order), over `2N`
//! events (every card twice, 1 ms of event time apart, so every card is live to the end).
//!
//! 1. **Checkpoint**: the first `N` events (every card once), then the run is stopped: its last
//!    checkpoint holds all `N` cards. Reported: its state bytes and the time it took.
//! 2. **Recovery**: a run over the same directory restores it and stops: the restore time.
//! 3. **Throughput**: all `2N` events without checkpoints, then with a checkpoint every
//!    `FSQL_CHECKPOINT_INTERVAL` (default 10 s), alternating twice; events per CPU-second of the
//!    executor thread, and the ratio.
//!
//! Each part runs once per state backend: `FSQL_CHECKPOINT_BACKENDS` (default `hashmap,rocksdb`).
//! With RocksDB, `FSQL_STATE_RESIDENT_KEYS` sets `state.backend.rocksdb.resident-keys` (default
//! fsql's), and the checkpoint's bytes are its state files plus the RocksDB files it added (the
//! rest are hard links to earlier checkpoints' files).
//!
//! `cargo bench --bench checkpoint` (release build); `FSQL_CHECKPOINT_CARDS` sets `N` (default
//! 10,000,000).

/// The `fsql` binary's allocator, so figures are what a run gets.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use fsql_compiler::{CompileOptions, compile_source};
use fsql_plan::{NodeId, Pipeline};
use fsql_runtime::{Event, RunOptions, RunSummary};

fn pipeline(
    cards: u64,
    events: u64,
    checkpoints: Option<(&Path, &str)>,
    backend: &str,
) -> Pipeline {
    let resident = std::env::var("FSQL_STATE_RESIDENT_KEYS").map_or(String::new(), |n| {
        format!("SET 'state.backend.rocksdb.resident-keys' = '{n}';")
    });
    let backend = format!("SET 'state.backend' = '{backend}'; {resident}");
    let settings = match checkpoints {
        Some((dir, interval)) => format!(
            "SET 'execution.checkpointing.interval' = '{interval}';
             SET 'execution.checkpointing.dir' = '{}';",
            dir.display()
        ),
        None => String::new(),
    };
    let text = format!(
        "{settings} {backend}
         SET 'pipeline.emit-mode' = 'arrival';
         CREATE TABLE src (seq BIGINT, amount DOUBLE, card AS seq % {cards},
           ts AS TO_TIMESTAMP_LTZ(seq, 3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH ('connector' = 'datagen', 'number-of-rows' = '{events}',
           'fields.seq.kind' = 'sequence', 'fields.seq.start' = '0', 'fields.seq.end' = '{}',
           'fields.amount.min' = '0', 'fields.amount.max' = '5000');
         CREATE TABLE sink (card BIGINT, n BIGINT, total DOUBLE) WITH ('connector' = 'blackhole');
         INSERT INTO sink SELECT card, COUNT(*) OVER w, SUM(amount) OVER w FROM src
         WINDOW w AS (PARTITION BY card ORDER BY ts
                      RANGE BETWEEN INTERVAL '24' HOUR PRECEDING AND CURRENT ROW);",
        events - 1
    );
    let c = compile_source(
        Path::new("checkpoint_bench.fsql"),
        text,
        &CompileOptions::default(),
        &[],
    );
    let errors: String = c.diagnostics.iter().map(|d| d.render(&c.sources)).collect();
    c.pipeline
        .unwrap_or_else(|| panic!("the benchmark pipeline compiles: {errors}"))
}

/// Time the current thread spent on a CPU.
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

/// Runs `pipeline`, stopping once its source emitted `stop_after` rows (if given); returns the
/// summary and the executor thread's CPU time.
fn run(pipeline: &Pipeline, stop_after: Option<u64>, stopped: bool) -> (RunSummary, Duration) {
    let stop = Arc::new(AtomicBool::new(stopped));
    let seen = Arc::new(AtomicU64::new(0));
    let source = NodeId(0);
    let trace = stop_after.map(|limit| {
        let (stop, seen) = (stop.clone(), seen.clone());
        Box::new(move |node: NodeId, event: &Event| {
            if let (true, Event::Batch(b)) = (node == source, event)
                && seen.fetch_add(b.num_rows() as u64, Ordering::Relaxed) + b.num_rows() as u64
                    >= limit
            {
                stop.store(true, Ordering::Relaxed);
            }
        }) as fsql_runtime::executor::EventTrace
    });
    let cpu = thread_cpu();
    let summary = fsql_runtime::run(
        pipeline,
        RunOptions {
            unthrottled: true,
            stop: Some(stop),
            trace,
            ..RunOptions::default()
        },
        &mut |_, _, _| {},
    )
    .unwrap_or_else(|e| panic!("the benchmark pipeline runs: {e}"));
    (summary, thread_cpu() - cpu)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "fsql-bench-checkpoint-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    let cards: u64 = std::env::var("FSQL_CHECKPOINT_CARDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000_000);
    let interval = std::env::var("FSQL_CHECKPOINT_INTERVAL").unwrap_or_else(|_| "10 s".to_string());
    let backends =
        std::env::var("FSQL_CHECKPOINT_BACKENDS").unwrap_or_else(|_| "hashmap,rocksdb".to_string());
    for backend in backends.split(',') {
        println!("## state.backend = '{backend}'");
        println!();
        bench(cards, &interval, backend);
        println!();
    }
}

fn bench(cards: u64, interval: &str, backend: &str) {
    let events = 2 * cards;

    // 1. One checkpoint of every card's state.
    let dir = scratch("state");
    let full = pipeline(cards, events, Some((&dir, "1 h")), backend);
    let (summary, _) = run(&full, Some(cards), false);
    let taken = summary.checkpoints.clone().expect("checkpointing is on");
    println!("| {cards} cards of 24 h OVER state (COUNT, SUM) | |");
    println!("| --- | ---: |");
    println!(
        "| checkpoint: state bytes | {:.1} MiB ({:.0} bytes per card) |",
        mib(taken.largest_bytes),
        taken.largest_bytes as f64 / cards as f64
    );
    println!(
        "| checkpoint: duration (the pipeline waits) | {:.2} s |",
        taken.taking.as_secs_f64()
    );

    // 2. Restoring it.
    let (summary, _) = run(&full, None, true);
    let restored = summary.checkpoints.expect("checkpointing is on");
    let (id, took) = restored
        .restored_from
        .expect("the run restored the checkpoint");
    println!(
        "| recovery: restore of chk-{id} ({:.1} MiB) | {:.2} s ({:.0} MiB/s) |",
        mib(taken.largest_bytes),
        took.as_secs_f64(),
        mib(taken.largest_bytes) / took.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);

    // 3. Throughput with and without periodic checkpoints, alternating.
    let plain = pipeline(cards, events, None, backend);
    let mut without = Vec::new();
    let mut with = Vec::new();
    let mut spent = Vec::new();
    for round in 0..2 {
        let (_, cpu) = run(&plain, None, false);
        without.push(events as f64 / cpu.as_secs_f64());
        let dir = scratch(&format!("periodic-{round}"));
        let (summary, cpu) = run(
            &pipeline(cards, events, Some((&dir, interval)), backend),
            None,
            false,
        );
        let c = summary.checkpoints.expect("checkpointing is on");
        with.push(events as f64 / cpu.as_secs_f64());
        spent.push((c.taken, c.taking, cpu));
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!();
    println!(
        "| {events} events, {cards} cards | without checkpoints | checkpoint every {interval} | ratio |"
    );
    println!("| --- | ---: | ---: | ---: |");
    for (round, ((a, b), (taken, taking, cpu))) in without.iter().zip(&with).zip(&spent).enumerate()
    {
        println!(
            "| round {} | {a:.0} events/CPU-s | {b:.0} events/CPU-s ({taken} checkpoints, {:.2} s of {:.2} s) | {:.3} |",
            round + 1,
            taking.as_secs_f64(),
            cpu.as_secs_f64(),
            b / a
        );
    }
}
