//! Event → decision latency through a real broker (`cargo bench --bench kafka_latency`).
//!
//! A stateless pipeline (`fsql run`, release) reads JSON payments from a 4-partition topic, decides
//! with a CASE over the amount and writes JSON decisions to a 1-partition topic. This process
//! produces payments at a fixed rate, each carrying its send time (`sent_us`, epoch µs), and a
//! consumer of the output topic takes each decision's arrival time minus `sent_us`: the latency a
//! caller waiting for the decision sees, producer and consumer clients included. Producer, broker,
//! `fsql` and consumer share the machine.
//!
//! Each rate runs for [`SECONDS`] after a 3 s warm-up (not measured). Client settings favour latency
//! over batching, on both sides of fsql as inside it: `linger.ms` 0 for this producer and fsql's
//! sink, `fetch.wait.max.ms` 10 for fsql's source and this consumer, and a 1 ms batch linger in
//! fsql (`table.exec.mini-batch.allow-latency`).
//!
//! The broker is `FSQL_KAFKA_BROKERS` when set, else one started with `scripts/kafka.sh`.
//! `FSQL_BENCH_LINGER_MS` (default 0) sets `linger.ms` of this producer and of fsql's sink: a few
//! milliseconds of batching trade that much latency for far fewer produce requests.

/// The `fsql` binary's allocator, so figures are what a run gets.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// One rate: the latencies (µs) of the decisions of payments sent after the warm-up, and how
/// many were sent and received in all.
fn run(broker: &str, rate: u64, through_fsql: bool) -> (Vec<i64>, u64, u64) {
    let tag = format!("{}-{rate}-{through_fsql}", std::process::id());
    let (input, output) = (format!("bench-in-{tag}"), format!("bench-out-{tag}"));
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .create()
        .expect("admin");
    let topics = [
        NewTopic::new(&input, 4, TopicReplication::Fixed(1)),
        NewTopic::new(&output, 1, TopicReplication::Fixed(1)),
    ];
    for r in block_on(admin.create_topics(&topics, &AdminOptions::new())).expect("create") {
        r.expect("topic created");
    }
    let dir = std::env::temp_dir().join(format!("fsql-bench-kafka-{tag}"));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let pipeline = dir.join("pipeline.fsql");
    std::fs::write(
        &pipeline,
        format!(
            "SET 'table.exec.mini-batch.allow-latency' = '1 ms';
CREATE TABLE payments (payment_id BIGINT, card_id STRING, amount DOUBLE, sent_us BIGINT)
  WITH ('connector' = 'kafka', 'topic' = '{input}', 'properties.bootstrap.servers' = '{broker}',
        'scan.startup.mode' = 'earliest-offset',
        'properties.fetch.wait.max.ms' = '10', 'format' = 'json');
CREATE TABLE decisions (payment_id BIGINT, decision STRING, sent_us BIGINT)
  WITH ('connector' = 'kafka', 'topic' = '{output}', 'properties.bootstrap.servers' = '{broker}',
        'properties.linger.ms' = '{linger}', 'format' = 'json');
INSERT INTO decisions
SELECT payment_id, CASE WHEN amount > 500 THEN 'REVIEW' ELSE 'ALLOW' END, sent_us FROM payments;
",
            linger = linger()
        ),
    )
    .expect("write pipeline");
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
    let read = if through_fsql {
        output.clone()
    } else {
        input.clone()
    };

    // The consumer of decisions, on its own thread.
    let done = Arc::new(AtomicBool::new(false));
    let measure_from = Arc::new(std::sync::atomic::AtomicI64::new(i64::MAX));
    let consumer_thread = {
        let (broker, output, done, measure_from) =
            (broker.to_string(), read, done.clone(), measure_from.clone());
        std::thread::spawn(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &broker)
                .set("group.id", format!("bench-reader-{output}"))
                .set("auto.offset.reset", "earliest")
                .set("enable.auto.commit", "false")
                .set("fetch.wait.max.ms", "10")
                .create()
                .expect("consumer");
            // Assigned, not subscribed: no group join delays the first records.
            let partitions = if output.starts_with("bench-in-") {
                4
            } else {
                1
            };
            let mut assignment = TopicPartitionList::new();
            for p in 0..partitions {
                assignment
                    .add_partition_offset(&output, p, Offset::Beginning)
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
                        received += 1;
                        let sent = m
                            .payload()
                            .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
                            .and_then(|v| v.get("sent_us").and_then(|s| s.as_i64()))
                            .expect("a decision with sent_us");
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
    let mut sent = 0u64;
    let mut keys: HashMap<u64, String> = HashMap::new();
    let mut measuring = false;
    while start.elapsed() < total {
        if !measuring && start.elapsed() >= WARM_UP {
            measure_from.store(now_us(), Ordering::Relaxed);
            measuring = true;
        }
        // Send what is due by now, at the rate.
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            let card = sent % 10_000;
            let key = keys
                .entry(card)
                .or_insert_with(|| format!("card-{card:06}"))
                .clone();
            let value = format!(
                r#"{{"payment_id":{sent},"card_id":"{key}","amount":{}.5,"sent_us":{}}}"#,
                sent % 1000,
                now_us()
            );
            let mut record = BaseRecord::to(&input).key(&key).payload(&value);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        producer.poll(Duration::from_millis(1));
                        record = r;
                    }
                }
            }
            sent += 1;
        }
        producer.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_micros(200));
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    done.store(true, Ordering::Relaxed);
    let (mut latencies, received) = consumer_thread.join().expect("consumer thread");
    if let Some(fsql) = &mut fsql {
        let _ = Command::new("kill")
            .args(["-INT", &fsql.id().to_string()])
            .status();
        let status = fsql.wait().expect("fsql ends");
        assert!(status.success(), "fsql run failed");
    }
    let _ = block_on(admin.delete_topics(&[&input, &output], &AdminOptions::new()));
    let _ = std::fs::remove_dir_all(&dir);
    latencies.sort_unstable();
    (latencies, sent, received)
}

fn main() {
    let broker = Broker::get();
    println!("broker: {}", broker.address);
    println!(
        "\n| path | rate | sent | received | measured | p50 | p99 | p999 | max |\n|---|---|---|---|---|---|---|---|---|"
    );
    let rates: Vec<u64> = match std::env::var("FSQL_BENCH_RATES") {
        Ok(list) => list
            .split(',')
            .map(|r| r.trim().parse().expect("FSQL_BENCH_RATES: numbers"))
            .collect(),
        Err(_) => RATES.to_vec(),
    };
    for (rate, through_fsql) in rates.iter().flat_map(|&r| [(r, false), (r, true)]) {
        let (latencies, sent, received) = run(&broker.address, rate, through_fsql);
        assert_eq!(sent, received, "every payment gets a decision");
        println!(
            "| {} | {rate}/s | {sent} | {received} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
            if through_fsql {
                "producer → fsql → consumer"
            } else {
                "producer → consumer (no fsql)"
            },
            latencies.len(),
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            percentile(&latencies, 0.999),
            latencies.last().copied().unwrap_or(0) as f64 / 1000.0
        );
    }
}
