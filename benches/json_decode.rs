//! JSON lines → Arrow batches: fsql's `json` format against arrow-json's reader, on the same file,
//! in one run (`cargo bench --bench json_decode`).
//!
//! The file holds 1,000,000 payments from the payments generator (14 columns: BIGINT, DOUBLE,
//! BOOLEAN, TIMESTAMP(3) and ten strings, one of them mostly NULL), rendered as the
//! `json` sinks render rows, in `/dev/shm` when there is one so the disk is not measured. Each
//! decoder reads the whole file into 1,024-row batches of the table's Arrow schema on one
//! thread — so rows per second is rows per second per core:
//!
//! * **fsql**: the `filesystem` connector's source (`FileSource`: buffered reads, line splitting,
//!   UTF-8 checks, the decoder, the batcher), the path a JSON file or a Kafka topic's values take;
//! * **arrow-json**: `arrow_json::ReaderBuilder` over a `BufReader` of the same file, Arrow's own
//!   tape-based decoder.
//!
//! Both are checked to give equal batches first; each is then timed 5 times, alternating.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use fsql_plan::{ConnectorSpec, DataType, Field, Schema, SourceSpec};
use fsql_runtime::source::filesystem::FileSource;
use fsql_runtime::source::{OpenOptions, Source, SourceContext, SourcePoll, open_source};
use fsql_runtime::{BatchConfig, format};

const ROWS: usize = 1_000_000;
const ROUNDS: usize = 5;

fn columns() -> Vec<Field> {
    use DataType::*;
    [
        ("payment_id", BigInt),
        ("card_id", String),
        ("device_id", String),
        ("ip", String),
        ("merchant_id", String),
        ("email", String),
        ("country", String),
        ("amount", Double),
        ("currency", String),
        ("status", String),
        ("channel", String),
        ("ts", Timestamp { precision: 3 }),
        ("is_fraud", Boolean),
        ("scenario", String),
    ]
    .into_iter()
    .map(|(name, data_type)| Field::new(name, data_type, true))
    .collect()
}

fn spec(connector: &str, options: &[(&str, &str)], dir: &std::path::Path) -> SourceSpec {
    SourceSpec {
        table: "payments".to_string(),
        connector: ConnectorSpec {
            connector: connector.to_string(),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            base_dir: dir.display().to_string(),
        },
        physical: Schema::new(columns()),
        columns: Vec::new(),
        watermark: None,
        metadata: Default::default(),
    }
}

fn options() -> OpenOptions {
    OpenOptions {
        batch: BatchConfig {
            max_rows: BatchConfig::DEFAULT_MAX_ROWS,
            linger: Duration::from_secs(60),
        },
        unthrottled: true,
        capture_sinks: false,
        resume: Default::default(),
        columns_read: None,
    }
}

/// Polls `source` to its end; its batches.
fn drain(source: &mut dyn Source) -> Vec<RecordBatch> {
    let mut batches = Vec::new();
    let mut report = |_: &fsql_runtime::MalformedRecord| panic!("a malformed record");
    loop {
        let mut ctx = SourceContext::new(Instant::now(), &mut report);
        match source.poll(&mut ctx).expect("poll") {
            SourcePoll::Batch(b) => batches.push(b),
            SourcePoll::End => return batches,
            SourcePoll::Pending(_) | SourcePoll::Watermark(_) => {}
            other => panic!("unexpected poll result {other:?}"),
        }
    }
}

fn write_input(path: &PathBuf) -> u64 {
    let dir = path.parent().expect("dir");
    let rows = ROWS.to_string();
    let spec = spec(
        "payments-generator",
        &[("number-of-rows", rows.as_str())],
        dir,
    );
    let mut source = open_source(&spec, &options()).expect("generator");
    let mut out = BufWriter::new(File::create(path).expect("create"));
    let mut line = String::new();
    for batch in drain(source.as_mut()) {
        for row in 0..batch.num_rows() {
            line.clear();
            format::json_row(&batch, row, &mut line);
            line.push('\n');
            out.write_all(line.as_bytes()).expect("write");
        }
    }
    out.flush().expect("flush");
    std::fs::metadata(path).expect("metadata").len()
}

fn fsql_decode(path: &std::path::Path) -> Vec<RecordBatch> {
    let dir = path.parent().expect("dir");
    let file = path.file_name().and_then(|f| f.to_str()).expect("name");
    let spec = spec("filesystem", &[("path", file), ("format", "json")], dir);
    let mut source = FileSource::open(&spec, &options()).expect("open");
    drain(&mut source)
}

fn arrow_decode(path: &std::path::Path, schema: arrow::datatypes::SchemaRef) -> Vec<RecordBatch> {
    let reader = arrow_json::ReaderBuilder::new(schema)
        .with_batch_size(BatchConfig::DEFAULT_MAX_ROWS)
        .build(BufReader::new(File::open(path).expect("open")))
        .expect("reader");
    reader.collect::<Result<Vec<_>, _>>().expect("arrow-json")
}

fn main() {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!("fsql-bench-json-{}.jsonl", std::process::id()));
    let bytes = write_input(&path);
    println!(
        "input: {ROWS} payments, {:.0} MB ({} bytes a line) in {}",
        bytes as f64 / 1e6,
        bytes / ROWS as u64,
        dir.display()
    );

    let ours = fsql_decode(&path);
    let schema = ours[0].schema();
    let theirs = arrow_decode(&path, schema.clone());
    let ours_all = concat_batches(&schema, &ours).expect("concat");
    let theirs_all = concat_batches(&schema, &theirs).expect("concat");
    assert_eq!(ours_all.num_rows(), ROWS);
    assert_eq!(
        ours_all, theirs_all,
        "fsql and arrow-json decode differently"
    );
    println!("equal: {ROWS} rows, {} columns", schema.fields().len());

    let mut fsql_times = Vec::new();
    let mut arrow_times = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let n: usize = fsql_decode(&path).iter().map(RecordBatch::num_rows).sum();
        fsql_times.push(t.elapsed());
        assert_eq!(n, ROWS);
        let t = Instant::now();
        let n: usize = arrow_decode(&path, schema.clone())
            .iter()
            .map(RecordBatch::num_rows)
            .sum();
        arrow_times.push(t.elapsed());
        assert_eq!(n, ROWS);
    }
    let _ = std::fs::remove_file(&path);
    fsql_times.sort();
    arrow_times.sort();
    let rate = |d: Duration| ROWS as f64 / d.as_secs_f64();
    let (f, a) = (fsql_times[ROUNDS / 2], arrow_times[ROUNDS / 2]);
    println!("\nJSON lines -> Arrow, one thread, median of {ROUNDS} (best):");
    println!(
        "  fsql (FileSource, json):  {:.3} M records/s ({:.3} M) — {:.0} MB/s",
        rate(f) / 1e6,
        rate(fsql_times[0]) / 1e6,
        bytes as f64 / f.as_secs_f64() / 1e6
    );
    println!(
        "  arrow-json (Reader):      {:.3} M records/s ({:.3} M) — {:.0} MB/s",
        rate(a) / 1e6,
        rate(arrow_times[0]) / 1e6,
        bytes as f64 / a.as_secs_f64() / 1e6
    );
    println!("  ratio (fsql / arrow-json): {:.2}x", rate(f) / rate(a));
}
