//! The reference pipeline (`pipelines/payments_risk/payments_risk.fsql`) in process, as it is
//! (features, patterns, model, rules; its generator source, its alerts file and printed decisions):
//!
//! 1. **Throughput**: unthrottled, `FSQL_BENCH_ROWS` generator rows (default 1,000,000): events/s
//!    of wall time and per CPU-second of the executor thread (`/proc/thread-self/schedstat`).
//! 2. **Latency**: paced at `FSQL_BENCH_RATE` events/s (default 20,000) for `FSQL_BENCH_SECONDS`
//!    (default 10): for every payment, from the moment the source hands its batch to the pipeline to
//!    the moment the ruleset emits its decision (`payment_id` in both), p50/p99/p999/max, after a
//!    1 s warm-up (the first batches wait for their kernels to be compiled). This is what the engine
//!    adds; the broker's share is measured by `benches/kafka_latency.rs`.
//! 3. **Peak memory**: the process's peak resident set (`VmHWM`) after each part.
//!
//! `FSQL_BENCH_CARDS` overrides the generator's `cards` (its distinct card count). Output: a markdown
//! table on stdout. `cargo bench --bench reference_pipeline` (release build).

/// The `fsql` binary's allocator, so figures are what a run gets.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use fsql_compiler::{CompileOptions, compile_source};
use fsql_plan::{Operator, Pipeline};
use fsql_runtime::{Event, RunOptions};

const FILE: &str = "pipelines/payments_risk/payments_risk.fsql";
/// Decisions of payments read in the latency run's first second are not counted.
const WARM_UP: Duration = Duration::from_secs(1);

fn env_number(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Sets generator option `key` of the pipeline text to `value` (added when absent).
fn set_option(text: &str, key: &str, value: u64) -> String {
    let needle = format!("'{key}' = '");
    if let Some(at) = text.find(&needle) {
        let from = at + needle.len();
        let to = from + text[from..].find('\'').expect("a closing quote");
        format!("{}{value}{}", &text[..from], &text[to..])
    } else {
        let anchor = "'connector' = 'payments-generator',";
        assert!(
            text.contains(anchor),
            "the pipeline reads the payments generator"
        );
        text.replacen(anchor, &format!("{anchor}\n  '{key}' = '{value}',"), 1)
    }
}

fn compile(text: String) -> Pipeline {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let c = compile_source(&root.join(FILE), text, &CompileOptions::default(), &[]);
    if c.has_errors() {
        for d in &c.diagnostics {
            eprint!("{}", d.render(&c.sources));
        }
        panic!("{FILE} does not compile");
    }
    c.pipeline.expect("a pipeline")
}

/// Time the current thread spent on a CPU.
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// The process's peak resident set, in MiB.
fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn payment_ids(batch: &RecordBatch, column: usize) -> Vec<i64> {
    batch
        .column(column)
        .as_primitive_opt::<Int64Type>()
        .map(|a| a.values().to_vec())
        .unwrap_or_default()
}

/// The node's `payment_id` column.
fn id_column(pipeline: &Pipeline, node: fsql_plan::NodeId) -> usize {
    let node = pipeline.node(node).expect("a node");
    node.schema
        .fields
        .iter()
        .position(|f| f.name == "payment_id")
        .unwrap_or_else(|| panic!("`{}` has no payment_id", node.name))
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rows = env_number("FSQL_BENCH_ROWS", 1_000_000);
    let rate = env_number("FSQL_BENCH_RATE", 20_000);
    let seconds = env_number("FSQL_BENCH_SECONDS", 10);
    let mut text = std::fs::read_to_string(root.join(FILE)).expect("the reference pipeline");
    if let Ok(cards) = std::env::var("FSQL_BENCH_CARDS") {
        text = set_option(
            &text,
            "cards",
            cards.parse().expect("FSQL_BENCH_CARDS is a number"),
        );
    }

    // 1. Throughput.
    let pipeline = compile(set_option(&text, "number-of-rows", rows));
    let cpu0 = thread_cpu();
    let t = Instant::now();
    let summary = fsql_runtime::run(
        &pipeline,
        RunOptions {
            unthrottled: true,
            ..RunOptions::default()
        },
        &mut |_, _, _| {},
    )
    .expect("runs");
    let wall = t.elapsed();
    let cpu = thread_cpu().zip(cpu0).map(|(b, a)| b.saturating_sub(a));
    eprintln!("throughput: {summary}");
    let rss_throughput = peak_rss_mib();

    // 2. Latency, paced.
    let paced_rows = rate * seconds;
    let pipeline = compile(set_option(
        &set_option(&text, "number-of-rows", paced_rows),
        "rows-per-second",
        rate,
    ));
    let source = pipeline
        .nodes
        .iter()
        .find(|n| matches!(n.op, Operator::Source(_)))
        .map(|n| n.id)
        .expect("a source");
    let decisions = pipeline
        .nodes
        .iter()
        .find(|n| matches!(n.op, Operator::Ruleset(_)))
        .map(|n| n.id)
        .expect("a ruleset");
    let (source_ids, decision_ids) = (
        id_column(&pipeline, source),
        id_column(&pipeline, decisions),
    );
    let read_at: Rc<RefCell<Vec<Option<Instant>>>> = Rc::default();
    // (read at, latency) per decision.
    let latencies: Rc<RefCell<Vec<(Instant, Duration)>>> = Rc::default();
    let (read, lat) = (read_at.clone(), latencies.clone());
    let trace = Box::new(move |node, event: &Event| {
        let Event::Batch(b) = event else {
            return;
        };
        let now = Instant::now();
        if node == source {
            let mut read = read.borrow_mut();
            for id in payment_ids(b, source_ids) {
                let i = id.max(0) as usize;
                if read.len() <= i {
                    read.resize(i + 1, None);
                }
                read[i] = Some(now);
            }
        } else if node == decisions {
            let read = read.borrow();
            let mut lat = lat.borrow_mut();
            for id in payment_ids(b, decision_ids) {
                if let Some(Some(r)) = read.get(id.max(0) as usize) {
                    lat.push((*r, now - *r));
                }
            }
        }
    });
    let summary = fsql_runtime::run(
        &pipeline,
        RunOptions {
            trace: Some(trace),
            ..RunOptions::default()
        },
        &mut |_, _, _| {},
    )
    .expect("runs");
    eprintln!("latency: {summary}");
    let all = latencies.take();
    let warm = all.iter().map(|(r, _)| *r).min().map(|t| t + WARM_UP);
    let mut v: Vec<Duration> = all
        .iter()
        .filter(|(r, _)| warm.is_some_and(|w| *r >= w))
        .map(|(_, l)| *l)
        .collect();
    v.sort_unstable();
    let rss_latency = peak_rss_mib();

    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
    let mib = |m: Option<f64>| m.map_or_else(|| "—".to_string(), |m| format!("{m:.0} MiB"));
    println!("| part | rows | result | peak RSS |");
    println!("| --- | ---: | --- | ---: |");
    println!(
        "| throughput, unthrottled | {} | {:.0} events/s wall ({:.2} s); {} | {} |",
        rows,
        rows as f64 / wall.as_secs_f64(),
        wall.as_secs_f64(),
        cpu.map_or_else(
            || "CPU time unknown".to_string(),
            |c| format!(
                "{:.0} events per CPU-second ({:.2} s)",
                rows as f64 / c.as_secs_f64(),
                c.as_secs_f64()
            )
        ),
        mib(rss_throughput),
    );
    println!(
        "| source → decision latency at {rate} events/s, after 1 s | {} decisions | p50 {} · p99 {} · p999 {} · max {} | {} |",
        v.len(),
        ms(percentile(&v, 0.5)),
        ms(percentile(&v, 0.99)),
        ms(percentile(&v, 0.999)),
        ms(v.last().copied().unwrap_or_default()),
        mib(rss_latency),
    );
}
