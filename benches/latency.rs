//! Event-to-feature latency of an arrival-order OVER pipeline (`benches/sql/latency_over_arrival.fsql`):
//! the payments generator paces 100k events/s; for every event we measure
//!
//! * **read → emit**: from the moment the source hands the event's batch to the pipeline to the moment
//!   the event's feature row leaves the last operator (what the engine adds), and
//! * **due → emit**: from the moment the generator's pace makes the event due (its arrival) to the
//!   same emission, which adds the batching linger (`table.exec.mini-batch.allow-latency`) and the
//!   polling granularity.
//!
//! `cargo bench --bench latency` prints p50/p99/p999/max of both (release build).

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
use fsql_plan::Operator;
use fsql_runtime::{Event, RunOptions};

const FILE: &str = "benches/sql/latency_over_arrival.fsql";
const RATE: f64 = 100_000.0;

fn ids(batch: &RecordBatch) -> Vec<i64> {
    batch
        .column(0)
        .as_primitive::<Int64Type>()
        .values()
        .to_vec()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join(FILE);
    let text = std::fs::read_to_string(&path).expect("the latency pipeline");
    let c = compile_source(&path, text, &CompileOptions::default(), &[]);
    let pipeline = c.pipeline.expect("compiles");
    let source = pipeline
        .nodes
        .iter()
        .find(|n| matches!(n.op, Operator::Source(_)))
        .map(|n| n.id)
        .expect("a source");

    // payment_id (1-based) → when its batch left the source.
    let read_at: Rc<RefCell<Vec<Option<Instant>>>> = Rc::new(RefCell::new(Vec::new()));
    let trace_read = read_at.clone();
    let trace = Box::new(move |node, event: &Event| {
        if node == source
            && let Event::Batch(b) = event
        {
            let now = Instant::now();
            let mut read = trace_read.borrow_mut();
            for id in ids(b) {
                let i = id as usize;
                if read.len() <= i {
                    read.resize(i + 1, None);
                }
                read[i] = Some(now);
            }
        }
    });
    let mut read_to_emit = Vec::new();
    let mut due_to_emit = Vec::new();
    let start = Instant::now();
    let summary = fsql_runtime::run(
        &pipeline,
        RunOptions {
            trace: Some(trace),
            ..RunOptions::default()
        },
        &mut |_, batch, _| {
            let now = Instant::now();
            let read = read_at.borrow();
            for id in ids(batch) {
                if let Some(Some(r)) = read.get(id as usize) {
                    read_to_emit.push(now - *r);
                }
                let due = start + Duration::from_secs_f64((id - 1) as f64 / RATE);
                due_to_emit.push(now.saturating_duration_since(due));
            }
        },
    )
    .expect("runs");
    println!("{summary}");
    println!(
        "events: {}, pace {RATE} events/s, {FILE}",
        read_to_emit.len()
    );
    for (label, mut v) in [("read → emit", read_to_emit), ("due → emit", due_to_emit)] {
        v.sort_unstable();
        println!(
            "{label:12} p50 {:>9.3} ms  p99 {:>9.3} ms  p999 {:>9.3} ms  max {:>9.3} ms",
            percentile(&v, 0.5).as_secs_f64() * 1e3,
            percentile(&v, 0.99).as_secs_f64() * 1e3,
            percentile(&v, 0.999).as_secs_f64() * 1e3,
            v.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        );
    }
}
