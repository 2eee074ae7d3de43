//! Event → decision latency through a real broker (`cargo bench --bench kafka_latency`).
//!
//! Two workloads (`FSQL_BENCH_PIPELINE`):
//! * default: a stateless pipeline reads JSON payments from a 4-partition topic, decides with a CASE
//!   over the amount and writes JSON decisions to a 1-partition topic (`FSQL_BENCH_RATES`, default
//!   20,000 and 100,000 a second);
//! * `reference`: the reference pipeline on Kafka (`pipelines/payments_risk/payments_risk_kafka.fsql`,
//!   its features, patterns, model and rules) reads its generator's payments, in order, from a
//!   1-partition topic and writes every authorisation's decision (default rate 20,000 a second).
//!
//! This process produces the payments at a fixed rate, noting when each was sent, and a consumer
//! of the decisions topic takes each decision's arrival time minus its payment's send time (by
//! `payment_id`): the latency a caller waiting for the decision sees, producer and consumer clients
//! included. Each rate also runs without fsql (the consumer reads the payments topic): the
//! broker's and the clients' share. Producer, broker, `fsql` (release) and consumer share the
//! machine; fsql's CPU time and peak resident set are reported.
//!
//! Each rate runs for [`SECONDS`] after a 3 s warm-up (not measured). Client settings favour latency
//! over batching, on both sides of fsql as inside it: `linger.ms` 0 for this producer and fsql's
//! sink, `fetch.wait.max.ms` 10 for fsql's source and this consumer, and a 1 ms batch linger in
//! fsql (`table.exec.mini-batch.allow-latency`).
//!
//! The broker is `FSQL_KAFKA_BROKERS` when set, else one started with `scripts/kafka.sh`.
//! `FSQL_BENCH_LINGER_MS` (default 0) sets `linger.ms` of this producer and of the stateless
//! pipeline's sink: a few milliseconds of batching trade that much latency for far fewer produce
//! requests.

/// The `fsql` binary's allocator, so figures are what a run gets.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const FSQL: &str = env!("CARGO_BIN_EXE_fsql");
/// Events per second; `FSQL_BENCH_RATES` (e.g. `2000,20000`) overrides them.
const RATES: [u64; 2] = [20_000, 100_000];
const SECONDS: u64 = 10;
const WARM_UP: Duration = Duration::from_secs(3);

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// The broker: the environment's, or one this bench starts (and stops when dropped).
struct Broker {
    address: String,
    started: bool,
}

impl Broker {
    fn get() -> Broker {
        if let Ok(address) = std::env::var("FSQL_KAFKA_BROKERS")
            && !address.is_empty()
        {
            return Broker {
                address,
                started: false,
            };
        }
        let out = Command::new("bash")
            .args(["scripts/kafka.sh", "start"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(Stdio::inherit())
            .output()
            .expect("scripts/kafka.sh start");
        let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let address = line
            .strip_prefix("FSQL_KAFKA_BROKERS=")
            .expect("kafka.sh prints the address")
            .to_string();
        Broker {
            address,
            started: true,
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.started {
            let _ = Command::new("bash")
                .args(["scripts/kafka.sh", "stop"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status();
        }
    }
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0) as f64 / 1000.0
}

/// `linger.ms` of the producers (`FSQL_BENCH_LINGER_MS`, default 0).
fn linger() -> String {
    std::env::var("FSQL_BENCH_LINGER_MS").unwrap_or_else(|_| "0".into())
}

/// One produced record: its key, its JSON value, its `payment_id` and whether fsql decides it.
struct Record {
    key: String,
    value: String,
    payment_id: i64,
    decided: bool,
}

/// What a run sends and which pipeline decides it.
enum Workload {
    /// `payment_id`s 0, 1, 2, … on 10,000 cards, every one decided by a CASE.
    Stateless,
    /// The reference pipeline (`pipelines/payments_risk/payments_risk_kafka.fsql`) on the
    /// payments its generator writes, in order: every authorisation is decided.
    Reference(Vec<Record>),
}

/// The reference pipeline's topics (their names in the file), each made unique per run.
const REFERENCE_TOPICS: [&str; 9] = [
    "payments",
    "payments-dead",
    "payments-late",
    "payment-decisions",
    "payment-features",
    "refund-decisions",
    "pattern-alerts",
    "payments-risk-control",
    "payments-risk-control-acks",
];

fn reference_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/payments_risk")
}

/// The reference generator's first `rows` payments (its file `payments_to_kafka.fsql`, written to
/// a JSON file instead of a topic), in order.
fn reference_payments(rows: u64) -> Vec<Record> {
    let dir = std::env::temp_dir().join(format!("fsql-bench-payments-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let file = dir.join("payments.jsonl");
    let text = std::fs::read_to_string(reference_dir().join("payments_to_kafka.fsql"))
        .expect("payments_to_kafka.fsql");
    let kafka = text
        .find("'connector' = 'kafka'")
        .expect("the feeder writes to Kafka");
    let end = kafka + text[kafka..].find(");").expect("the sink's WITH ends");
    let text = format!(
        "{}'connector' = 'filesystem', 'path' = '{}', 'format' = 'json'{}",
        &text[..kafka],
        file.display(),
        &text[end..]
    )
    .replace(
        "'number-of-rows' = '200000'",
        &format!("'number-of-rows' = '{rows}'"),
    );
    let pipeline = dir.join("generate.fsql");
    std::fs::write(&pipeline, text).expect("write the generator pipeline");
    let status = Command::new(FSQL)
        .args(["run", "--unthrottled", "--progress", "0"])
        .arg(&pipeline)
        .status()
        .expect("fsql runs");
    assert!(status.success(), "generating payments failed");
    let records = std::fs::read_to_string(&file)
        .expect("the payments")
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON payment");
            Record {
                key: v["card_id"].as_str().unwrap_or_default().to_string(),
                payment_id: v["payment_id"].as_i64().expect("payment_id"),
                // The reference pipeline decides authorisations.
                decided: v["kind"] == "AUTH",
                value: line.to_string(),
            }
        })
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    records
}

/// What one run measured.
struct Measured {
    /// Latencies (µs) of the decisions of payments sent after the warm-up.
    latencies: Vec<i64>,
    sent: u64,
    /// Payments sent that get a decision.
    to_decide: u64,
    received: u64,
    /// fsql's CPU time (user + system) and peak resident set, when it ran.
    fsql_cpu: Option<Duration>,
    fsql_peak_mib: Option<f64>,
}

/// A process's CPU time so far (user + system, `/proc/<pid>/stat`).
fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// A process's peak resident set in MiB (`VmHWM`).
fn process_peak_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// One rate of one workload, through fsql or (the clients and the broker alone) not.
fn run(broker: &str, rate: u64, workload: &Workload, through_fsql: bool) -> Measured {
    let tag = format!("{}-{rate}-{through_fsql}", std::process::id());
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .create()
        .expect("admin");
    let dir = std::env::temp_dir().join(format!("fsql-bench-kafka-{tag}"));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let (topics, input, output, pipeline): (Vec<(String, i32)>, String, String, _) = match workload
    {
        Workload::Stateless => {
            let (input, output) = (format!("bench-in-{tag}"), format!("bench-out-{tag}"));
            let pipeline = dir.join("pipeline.fsql");
            std::fs::write(
                &pipeline,
                format!(
                    "SET 'table.exec.mini-batch.allow-latency' = '1 ms';
CREATE TABLE payments (payment_id BIGINT, card_id STRING, amount DOUBLE)
  WITH ('connector' = 'kafka', 'topic' = '{input}', 'properties.bootstrap.servers' = '{broker}',
        'scan.startup.mode' = 'earliest-offset',
        'properties.fetch.wait.max.ms' = '10', 'format' = 'json');
CREATE TABLE decisions (payment_id BIGINT, decision STRING)
  WITH ('connector' = 'kafka', 'topic' = '{output}', 'properties.bootstrap.servers' = '{broker}',
        'properties.linger.ms' = '{linger}', 'format' = 'json');
INSERT INTO decisions
SELECT payment_id, CASE WHEN amount > 500 THEN 'REVIEW' ELSE 'ALLOW' END FROM payments;
",
                    linger = linger()
                ),
            )
            .expect("write pipeline");
            (
                vec![(input.clone(), 4), (output.clone(), 1)],
                input,
                output,
                pipeline,
            )
        }
        Workload::Reference(_) => {
            let name = |t: &str| format!("bench-{t}-{tag}");
            let mut text =
                std::fs::read_to_string(reference_dir().join("payments_risk_kafka.fsql"))
                    .expect("payments_risk_kafka.fsql")
                    .replace("127.0.0.1:9092", broker)
                    .replace(
                        "'execution.checkpointing.dir' = 'checkpoints'",
                        &format!(
                            "'execution.checkpointing.dir' = '{}'",
                            dir.join("chk").display()
                        ),
                    );
            for t in REFERENCE_TOPICS {
                text = text.replace(&format!("= '{t}'"), &format!("= '{}'", name(t)));
            }
            // Beside the original, so its INCLUDEs, model and reference table resolve.
            let pipeline = reference_dir().join(format!(".bench-{tag}.fsql"));
            std::fs::write(&pipeline, text).expect("write pipeline");
            (
                REFERENCE_TOPICS.iter().map(|t| (name(t), 1)).collect(),
                name("payments"),
                name("payment-decisions"),
                pipeline,
            )
        }
    };
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(1)))
        .collect();
    for r in block_on(admin.create_topics(&new, &AdminOptions::new())).expect("create") {
        r.expect("topic created");
    }
    let mut fsql: Option<Child> = through_fsql.then(|| {
        Command::new(FSQL)
            .args(["run", "--progress", "0"])
            .arg(&pipeline)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("fsql starts")
    });
    // Without fsql, the consumer reads the payments themselves: the clients and the broker alone.
    let (read, read_partitions) = if through_fsql {
        (output.clone(), 1)
    } else {
        (input.clone(), topics[0].1)
    };

    // The records to send, and when each was sent (µs; 0: not yet), found by payment_id.
    let stateless: Vec<Record>;
    let records: &[Record] = match workload {
        Workload::Stateless => {
            let total = rate * (WARM_UP.as_secs() + SECONDS) + rate;
            stateless = (0..total)
                .map(|i| {
                    let key = format!("card-{:06}", i % 10_000);
                    let value = format!(
                        r#"{{"payment_id":{i},"card_id":"{key}","amount":{}.5}}"#,
                        i % 1000
                    );
                    Record {
                        key,
                        value,
                        payment_id: i as i64,
                        decided: true,
                    }
                })
                .collect();
            &stateless
        }
        Workload::Reference(records) => records,
    };
    let index: Arc<HashMap<i64, usize>> = Arc::new(
        records
            .iter()
            .enumerate()
            .map(|(i, r)| (r.payment_id, i))
            .collect(),
    );
    let sent_at: Arc<Vec<AtomicI64>> =
        Arc::new((0..records.len()).map(|_| AtomicI64::new(0)).collect());

    // The consumer of decisions, on its own thread.
    let done = Arc::new(AtomicBool::new(false));
    let measure_from = Arc::new(AtomicI64::new(i64::MAX));
    let consumer_thread = {
        let (broker, read, done, measure_from, index, sent_at) = (
            broker.to_string(),
            read,
            done.clone(),
            measure_from.clone(),
            index.clone(),
            sent_at.clone(),
        );
        std::thread::spawn(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &broker)
                .set("group.id", format!("bench-reader-{read}"))
                .set("auto.offset.reset", "earliest")
                .set("enable.auto.commit", "false")
                .set("fetch.wait.max.ms", "10")
                .create()
                .expect("consumer");
            // Assigned, not subscribed: no group join delays the first records.
            let mut assignment = TopicPartitionList::new();
            for p in 0..read_partitions {
                assignment
                    .add_partition_offset(&read, p, Offset::Beginning)
                    .expect("partition");
            }
            consumer.assign(&assignment).expect("assign");
            let mut latencies = Vec::new();
            let mut received = 0u64;
            let mut idle_since: Option<Instant> = None;
            loop {
                match consumer.poll(Duration::from_millis(50)) {
                    Some(Ok(m)) => {
                        let arrived = now_us();
                        idle_since = None;
                        let id = m
                            .payload()
                            .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
                            .and_then(|v| v.get("payment_id").and_then(|s| s.as_i64()))
                            .expect("a record with payment_id");
                        let sent = index
                            .get(&id)
                            .and_then(|&i| sent_at.get(i))
                            .map_or(0, |s| s.load(Ordering::Relaxed));
                        // Without fsql every payment comes back, decided or not: count those fsql
                        // would decide.
                        received += 1;
                        if sent >= measure_from.load(Ordering::Relaxed) {
                            latencies.push(arrived - sent);
                        }
                    }
                    Some(Err(e)) => panic!("consumer: {e}"),
                    None => {
                        if done.load(Ordering::Relaxed) {
                            let since = *idle_since.get_or_insert_with(Instant::now);
                            if since.elapsed() > Duration::from_secs(3) {
                                return (latencies, received);
                            }
                        }
                    }
                }
            }
        })
    };

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("linger.ms", linger())
        .create()
        .expect("producer");
    let start = Instant::now();
    let total = WARM_UP + Duration::from_secs(SECONDS);
    let (mut sent, mut to_decide) = (0usize, 0u64);
    let mut measuring = false;
    while start.elapsed() < total && sent < records.len() {
        if !measuring && start.elapsed() >= WARM_UP {
            measure_from.store(now_us(), Ordering::Relaxed);
            measuring = true;
        }
        // Send what is due by now, at the rate.
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as usize).min(records.len());
        while sent < due {
            let r = &records[sent];
            sent_at[sent].store(now_us(), Ordering::Relaxed);
            let mut record = BaseRecord::to(&input).key(&r.key).payload(&r.value);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        producer.poll(Duration::from_millis(1));
                        record = back;
                    }
                }
            }
            if !through_fsql || r.decided {
                to_decide += 1;
            }
            sent += 1;
        }
        producer.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_micros(200));
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    done.store(true, Ordering::Relaxed);
    let (mut latencies, received) = consumer_thread.join().expect("consumer thread");
    let (mut fsql_cpu, mut fsql_peak_mib) = (None, None);
    if let Some(fsql) = &mut fsql {
        fsql_cpu = process_cpu(fsql.id());
        fsql_peak_mib = process_peak_mib(fsql.id());
        let _ = Command::new("kill")
            .args(["-INT", &fsql.id().to_string()])
            .status();
        let status = fsql.wait().expect("fsql ends");
        assert!(status.success(), "fsql run failed");
    }
    let names: Vec<&str> = topics.iter().map(|(t, _)| t.as_str()).collect();
    let _ = block_on(admin.delete_topics(&names, &AdminOptions::new()));
    if matches!(workload, Workload::Reference(_)) {
        let _ = std::fs::remove_file(&pipeline);
    }
    let _ = std::fs::remove_dir_all(&dir);
    latencies.sort_unstable();
    Measured {
        latencies,
        sent: sent as u64,
        to_decide,
        received,
        fsql_cpu,
        fsql_peak_mib,
    }
}

fn main() {
    let broker = Broker::get();
    println!("broker: {}", broker.address);
    let reference = std::env::var("FSQL_BENCH_PIPELINE").is_ok_and(|p| p == "reference");
    let rates: Vec<u64> = match std::env::var("FSQL_BENCH_RATES") {
        Ok(list) => list
            .split(',')
            .map(|r| r.trim().parse().expect("FSQL_BENCH_RATES: numbers"))
            .collect(),
        Err(_) if reference => vec![20_000],
        Err(_) => RATES.to_vec(),
    };
    let workload = if reference {
        let most = rates.iter().max().copied().unwrap_or(0);
        Workload::Reference(reference_payments(most * (WARM_UP.as_secs() + SECONDS)))
    } else {
        Workload::Stateless
    };
    println!(
        "\n| path | rate | sent | decided | received | measured | p50 | p99 | p999 | max | fsql CPU | fsql peak RSS |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for (rate, through_fsql) in rates.iter().flat_map(|&r| [(r, false), (r, true)]) {
        let m = run(&broker.address, rate, &workload, through_fsql);
        assert_eq!(m.to_decide, m.received, "every payment gets a decision");
        let path = match (reference, through_fsql) {
            (_, false) => "producer → consumer (no fsql)",
            (false, true) => "producer → fsql (stateless) → consumer",
            (true, true) => "producer → fsql (reference pipeline) → consumer",
        };
        println!(
            "| {path} | {rate}/s | {} | {} | {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {} | {} |",
            m.sent,
            m.to_decide,
            m.received,
            m.latencies.len(),
            percentile(&m.latencies, 0.5),
            percentile(&m.latencies, 0.99),
            percentile(&m.latencies, 0.999),
            m.latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
            m.fsql_cpu
                .map_or("—".into(), |c| format!("{:.2} s", c.as_secs_f64())),
            m.fsql_peak_mib
                .map_or("—".into(), |p| format!("{p:.0} MiB")),
        );
    }
}
