//! What checkpoints cost: their duration and size with `N` cards of 24-hour velocity state, the
//! time to restore them, and the throughput of one pipeline with and without periodic
//! checkpoints, side by side in one run.
//!
//! The pipeline: per card, COUNT and SUM over the last 24 hours (OVER, arrival order), over `kN`
//! events: every card in turn, `k` times (`FSQL_CHECKPOINT_EVENTS_PER_CARD`, default 2), a card's
//! payments about 14 hours of event time apart, so every card is live to the end and holds its
//! last two payments whatever `k` is: a steady state, which a longer run (a larger `k`) keeps
//! while it spans several checkpoint intervals.
//!
//! 1. **Checkpoint**: the first `N` events (every card once), then the run is stopped: its last
//!    checkpoint holds all `N` cards. Reported: its state bytes and the time it took.
//! 2. **Recovery**: a run over the same directory restores it and stops: the restore time.
//! 3. **Throughput**: all `kN` events without checkpoints, with a checkpoint every
//!    `FSQL_CHECKPOINT_INTERVAL` (default 10 s) taken synchronously (`state.backend.async` =
//!    `false`: the pipeline waits until the files are durable, as before asynchronous snapshots),
//!    and with asynchronous ones (the default), alternating `FSQL_CHECKPOINT_ROUNDS` times
//!    (default 2); `FSQL_CHECKPOINT_MODES` (default `synchronous,asynchronous`) picks the modes. Reported per run: events per wall-clock second and per CPU-second of the
//!    executor thread, both up to the source's last row (the run's final checkpoint and its
//!    shutdown are left out), the checkpoints completed meanwhile, the time the pipeline waited
//!    for them, and their time from taking to durable.
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fsql_compiler::{CompileOptions, compile_source};
use fsql_plan::{NodeId, Pipeline};
use fsql_runtime::{Event, RunOptions, RunSummary};

/// Event time between two payments, in milliseconds: a card's next payment comes `cards`
/// payments later, about 14 hours on (12 h rounded up to whole milliseconds per payment), inside
/// the 24-hour frame, so each card holds its last two.
fn step_ms(cards: u64) -> u64 {
    (12 * 3_600_000u64).div_ceil(cards.max(1))
}

fn pipeline(
    cards: u64,
    events: u64,
    checkpoints: Option<(&Path, &str, bool)>,
    backend: &str,
) -> Pipeline {
    let step = step_ms(cards);
    let resident = std::env::var("FSQL_STATE_RESIDENT_KEYS").map_or(String::new(), |n| {
        format!("SET 'state.backend.rocksdb.resident-keys' = '{n}';")
    });
    let backend = format!("SET 'state.backend' = '{backend}'; {resident}");
    let settings = match checkpoints {
        Some((dir, interval, asynchronous)) => format!(
            "SET 'execution.checkpointing.interval' = '{interval}';
             SET 'execution.checkpointing.dir' = '{}';
             SET 'state.backend.async' = '{asynchronous}';",
            dir.display()
        ),
        None => String::new(),
    };
    let text = format!(
        "{settings} {backend}
         SET 'pipeline.emit-mode' = 'arrival';
         CREATE TABLE src (seq BIGINT, amount DOUBLE, card AS seq % {cards},
           ts AS TO_TIMESTAMP_LTZ(seq * {step}, 3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
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

/// What one run measured up to its source's last row (`stop_after`, or every row): wall-clock
/// time from the start and the executor thread's CPU time.
struct Measured {
    summary: RunSummary,
    wall: Duration,
    cpu: Duration,
}

/// Runs `pipeline`, stopping once its source emitted `stop_after` rows (if given; `stopped`:
/// stops before the first poll); measures up to the source's `last_row`-th row.
fn run(pipeline: &Pipeline, stop_after: Option<u64>, stopped: bool, last_row: u64) -> Measured {
    let stop = Arc::new(AtomicBool::new(stopped));
    let seen = Arc::new(AtomicU64::new(0));
    let source = NodeId(0);
    let start = Instant::now();
    let cpu0 = thread_cpu();
    let at_end: Arc<Mutex<Option<(Duration, Duration)>>> = Arc::default();
    let trace = {
        let (stop, seen, at_end) = (stop.clone(), seen.clone(), at_end.clone());
        Box::new(move |node: NodeId, event: &Event| {
            if let (true, Event::Batch(b)) = (node == source, event) {
                let n =
                    seen.fetch_add(b.num_rows() as u64, Ordering::Relaxed) + b.num_rows() as u64;
                if stop_after.is_some_and(|limit| n >= limit) {
                    stop.store(true, Ordering::Relaxed);
                }
                if n >= last_row
                    && let Ok(mut end) = at_end.lock()
                    && end.is_none()
                {
                    *end = Some((start.elapsed(), thread_cpu() - cpu0));
                }
            }
        }) as fsql_runtime::executor::EventTrace
    };
    let summary = fsql_runtime::run(
        pipeline,
        RunOptions {
            unthrottled: true,
            stop: Some(stop),
            trace: Some(trace),
            ..RunOptions::default()
        },
        &mut |_, _, _| {},
    )
    .unwrap_or_else(|e| panic!("the benchmark pipeline runs: {e}"));
    let (wall, cpu) = at_end
        .lock()
        .ok()
        .and_then(|e| *e)
        .unwrap_or((start.elapsed(), thread_cpu() - cpu0));
    Measured { summary, wall, cpu }
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
    let per_card: u64 = std::env::var("FSQL_CHECKPOINT_EVENTS_PER_CARD")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2);
    let events = per_card.max(2) * cards;
    let modes = std::env::var("FSQL_CHECKPOINT_MODES")
        .unwrap_or_else(|_| "synchronous,asynchronous".into());
    let rounds: usize = std::env::var("FSQL_CHECKPOINT_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2);

    // 1. One checkpoint of every card's state (taken when the run stops: synchronously).
    let dir = scratch("state");
    let full = pipeline(cards, events, Some((&dir, "1 h", true)), backend);
    let m = run(&full, Some(cards), false, cards);
    let taken = m.summary.checkpoints.clone().expect("checkpointing is on");
    println!("| {cards} cards of 24 h OVER state (COUNT, SUM) | |");
    println!("| --- | ---: |");
    println!(
        "| checkpoint: state bytes | {:.1} MiB ({:.0} bytes per card) |",
        mib(taken.largest_bytes),
        taken.largest_bytes as f64 / cards as f64
    );
    println!(
        "| checkpoint: duration, taken and written while the pipeline waits | {:.2} s |",
        taken.taking.as_secs_f64()
    );

    // 2. Restoring it.
    let m = run(&full, None, true, 0);
    let restored = m.summary.checkpoints.expect("checkpointing is on");
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

    // 3. Throughput without checkpoints, with synchronous and with asynchronous ones, alternating.
    let plain = pipeline(cards, events, None, backend);
    println!();
    println!(
        "| {events} events, {cards} cards, checkpoint every {interval} | events/s (wall) | events/CPU-s (executor) | wall ratio | CPU ratio | checkpoints | pipeline waited | taken → durable (mean) |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for round in 0..rounds {
        let base = run(&plain, None, false, events);
        let base_wall = events as f64 / base.wall.as_secs_f64();
        let base_cpu = events as f64 / base.cpu.as_secs_f64();
        println!(
            "| round {}: no checkpoints | {base_wall:.0} | {base_cpu:.0} | 1 | 1 | | | |",
            round + 1
        );
        for (label, asynchronous) in [("synchronous", false), ("asynchronous", true)] {
            if !modes.split(',').any(|m| m.trim() == label) {
                continue;
            }
            let dir = scratch(&format!("periodic-{round}-{label}"));
            let m = run(
                &pipeline(cards, events, Some((&dir, interval, asynchronous)), backend),
                None,
                false,
                events,
            );
            let c = m.summary.checkpoints.expect("checkpointing is on");
            let wall = events as f64 / m.wall.as_secs_f64();
            let cpu = events as f64 / m.cpu.as_secs_f64();
            // The run's last checkpoint (after the source's last row) is in the counts too.
            println!(
                "| round {}: {label} | {wall:.0} | {cpu:.0} | {:.3} | {:.3} | {} | {:.2} s of {:.2} s | {:.2} s |",
                round + 1,
                wall / base_wall,
                cpu / base_cpu,
                c.taken,
                c.taking.as_secs_f64(),
                m.summary.elapsed.as_secs_f64(),
                c.completing.as_secs_f64() / c.taken.max(1) as f64
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
