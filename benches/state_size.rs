//! Bytes of operator state per live (key, window) entry.
//!
//! Each pipeline reads `N` rows with `N` distinct keys, all inside one window, so at its peak the
//! operator holds `N` live entries. A counting global allocator records the peak of live heap bytes;
//! the difference between a run with `N` keys and one with `N / 100` keys, divided by the difference
//! in keys, is the state per entry (fixed costs — batches in flight, the plan — cancel out).
//!
//! A second table measures MATCH_RECOGNIZE state against its `WITHIN` interval: every row opens an
//! attempt that stays open until `WITHIN` ends it, so the live partial matches are the rows of the
//! last `WITHIN` (100 rows per millisecond of event time). Its peak heap should grow linearly with
//! them, whatever the input batches they came in.
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
    peak_of(format!(
        "CREATE TABLE src (seq BIGINT, amount DOUBLE, ts AS TO_TIMESTAMP_LTZ(seq / 1000, 3),
           WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH ('connector' = 'datagen', 'number-of-rows' = '{keys}',
           'fields.seq.kind' = 'sequence', 'fields.seq.start' = '1', 'fields.seq.end' = '{keys}',
           'fields.amount.min' = '0', 'fields.amount.max' = '5000');
         CREATE TABLE sink (seq BIGINT, n BIGINT, total DOUBLE) WITH ('connector' = 'blackhole');
         {query};"
    ))
}

/// Peak live heap bytes of the card-testing pattern over `rows` rows, 100 per millisecond, each
/// its own card and small: every row opens an attempt that `WITHIN` ends.
fn match_peak_bytes(within_s: u64, rows: u64) -> usize {
    peak_of(format!(
        "CREATE TABLE src (seq BIGINT, amount DOUBLE, ts AS TO_TIMESTAMP_LTZ(seq / 100, 3),
           WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH ('connector' = 'datagen', 'number-of-rows' = '{rows}',
           'fields.seq.kind' = 'sequence', 'fields.seq.start' = '1', 'fields.seq.end' = '{rows}',
           'fields.amount.min' = '0', 'fields.amount.max' = '1');
         CREATE TABLE sink (seq BIGINT, n BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO sink SELECT seq, n FROM src MATCH_RECOGNIZE (
           PARTITION BY seq ORDER BY ts
           MEASURES COUNT(S.amount) AS n
           AFTER MATCH SKIP PAST LAST ROW
           PATTERN (S{{3,}} L) WITHIN INTERVAL '{within_s}' SECOND
           DEFINE S AS S.amount < 2, L AS L.amount > 15) AS T;"
    ))
}

fn peak_of(text: String) -> usize {
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
    if let Err(e) = fsql_runtime::run(&pipeline, options, &mut |_, _, _| {}) {
        panic!("the benchmark pipeline runs: {e}");
    }
    PEAK.load(Ordering::Relaxed) - base
}

fn main() {
    // Live partial matches at the peak: the rows of the last WITHIN, 100 per millisecond. Bytes
    // per partial match: the growth over the 1 s run, divided by the growth in partial matches.
    println!(
        "| MATCH_RECOGNIZE `WITHIN` | live partial matches | peak heap | bytes per added partial match |"
    );
    println!("| ---: | ---: | ---: | ---: |");
    let rows = 2_000_000;
    let base = match_peak_bytes(1, rows);
    for within_s in [1u64, 2, 4, 8] {
        let live = within_s * 100_000;
        let peak = if within_s == 1 {
            base
        } else {
            match_peak_bytes(within_s, rows)
        };
        let per = peak.saturating_sub(base) as f64 / (live - 100_000).max(1) as f64;
        println!(
            "| {within_s} s | {live} | {:.1} MiB | {} |",
            peak as f64 / (1024.0 * 1024.0),
            if within_s == 1 {
                "(baseline)".to_string()
            } else {
                format!("**{per:.0}**")
            }
        );
    }
    println!();
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
