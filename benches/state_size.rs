//! Bytes of operator state per live (key, window) entry.
//!
//! Each pipeline reads `N` rows with `N` distinct keys, all inside one window, so at its peak the
//! operator holds `N` live entries. A counting global allocator records the peak of live heap bytes;
//! the difference between a run with `N` keys and one with `N / 100` keys, divided by the difference
//! in keys, is the state per entry (fixed costs — batches in flight, the plan — cancel out).
//!
//! `cargo bench --bench state_size` (release build); `FSQL_STATE_KEYS` sets `N` (default 1,000,000).

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use fsql_compiler::{CompileOptions, compile_source};
use fsql_runtime::RunOptions;

/// The system allocator, counting live bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` with the same arguments; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The pipelines: a name, and the query over `src` (`seq` is the key, unique per row).
const CASES: &[(&str, &str)] = &[
    (
        "OVER RANGE 1 h COUNT+SUM per key (arrival order)",
        "SET 'pipeline.emit-mode' = 'arrival';
         INSERT INTO sink SELECT seq, COUNT(*) OVER w, SUM(amount) OVER w FROM src
         WINDOW w AS (PARTITION BY seq ORDER BY ts RANGE BETWEEN INTERVAL '1' HOUR PRECEDING AND CURRENT ROW)",
    ),
    (
        "TUMBLE 1 h COUNT+SUM per key",
        "INSERT INTO sink SELECT seq, COUNT(*), SUM(amount)
         FROM TABLE(TUMBLE(TABLE src, DESCRIPTOR(ts), INTERVAL '1' HOUR))
         GROUP BY window_start, window_end, seq",
    ),
];

/// Peak live heap bytes of running `query` over `keys` rows with distinct keys.
fn peak_bytes(query: &str, keys: u64) -> usize {
    let text = format!(
        "CREATE TABLE src (seq BIGINT, amount DOUBLE, ts AS TO_TIMESTAMP_LTZ(seq / 1000, 3),
           WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH ('connector' = 'datagen', 'number-of-rows' = '{keys}',
           'fields.seq.kind' = 'sequence', 'fields.seq.start' = '1', 'fields.seq.end' = '{keys}',
           'fields.amount.min' = '0', 'fields.amount.max' = '5000');
         CREATE TABLE sink (seq BIGINT, n BIGINT, total DOUBLE) WITH ('connector' = 'blackhole');
         {query};"
    );
    let c = compile_source(
        Path::new("state_size.fsql"),
        text,
        &CompileOptions::default(),
        &[],
    );
    let errors: String = c.diagnostics.iter().map(|d| d.render(&c.sources)).collect();
    let Some(pipeline) = c.pipeline else {
        panic!("the benchmark pipeline compiles: {errors}");
    };
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let options = RunOptions {
        unthrottled: true,
        ..RunOptions::default()
    };
    if let Err(e) = fsql_runtime::run(&pipeline, options, &mut |_, _| {}) {
        panic!("the benchmark pipeline runs: {e}");
    }
    PEAK.load(Ordering::Relaxed) - base
}

fn main() {
    let keys: u64 = std::env::var("FSQL_STATE_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let small = (keys / 100).max(1);
    println!(
        "| pipeline | live entries | peak heap | peak heap with {small} entries | bytes per entry |"
    );
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (name, query) in CASES {
        let big = peak_bytes(query, keys);
        let little = peak_bytes(query, small);
        let per = big.saturating_sub(little) as f64 / (keys - small) as f64;
        println!(
            "| {name} | {keys} | {:.1} MiB | {:.1} MiB | **{per:.0}** |",
            big as f64 / (1024.0 * 1024.0),
            little as f64 / (1024.0 * 1024.0)
        );
    }
}
