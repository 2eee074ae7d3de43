//! End-to-end tests of the Kafka connector against a real Kafka-protocol broker on 127.0.0.1.
//!
//! The broker's address comes from `FSQL_KAFKA_BROKERS` (`scripts/test.sh` starts one with
//! `scripts/kafka.sh start`). Each test uses its own topics, so they can share the broker.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use serde_json::Value;

const FSQL: &str = env!("CARGO_BIN_EXE_fsql");

fn brokers() -> String {
    std::env::var("FSQL_KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!(
            "FSQL_KAFKA_BROKERS is not set: start the test broker with \
             `eval \"$(scripts/kafka.sh start)\" && export FSQL_KAFKA_BROKERS` \
             (scripts/test.sh does this)"
        )
    })
}

/// A name unique to this test run.
fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{name}-{}-{nanos}", std::process::id())
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(&format!("fsql-kafka-{name}")));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn admin() -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("admin client")
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Topics created for one test (each with `partitions`), deleted when it ends so the shared
/// broker stays small.
struct Topics(Vec<String>);

impl Topics {
    /// Creates the topics and waits for the result (before anything produces, which would
    /// auto-create them with one partition).
    fn create(names: &[&str], partitions: i32) -> Topics {
        let new: Vec<NewTopic<'_>> = names
            .iter()
            .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
            .collect();
        for r in block_on(admin().create_topics(&new, &AdminOptions::new())).expect("create") {
            r.expect("topic created");
        }
        Topics(names.iter().map(|n| n.to_string()).collect())
    }
}

impl Drop for Topics {
    fn drop(&mut self) {
        let names: Vec<&str> = self.0.iter().map(String::as_str).collect();
        let _ = block_on(admin().delete_topics(&names, &AdminOptions::new()));
    }
}

/// Delivery reports: the (partition, offset) each record landed at, by its index.
#[derive(Default)]
struct Landed(Mutex<HashMap<usize, (i32, i64)>>);

impl ClientContext for Landed {}

impl ProducerContext for Landed {
    type DeliveryOpaque = Box<usize>;

    fn delivery(&self, result: &DeliveryResult<'_>, index: Box<usize>) {
        let m = result.as_ref().expect("delivered");
        self.0
            .lock()
            .expect("lock")
            .insert(*index, (m.partition(), m.offset()));
    }
}

/// Produces `(key, value)` records (`None` value: a tombstone) and returns where each landed.
fn produce(topic: &str, records: &[(String, Option<String>)]) -> HashMap<usize, (i32, i64)> {
    let producer: BaseProducer<Landed> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .create_with_context(Landed::default())
        .expect("producer");
    for (i, (key, value)) in records.iter().enumerate() {
        let mut record = BaseRecord::with_opaque_to(topic, Box::new(i)).key(key.as_str());
        if let Some(v) = value {
            record = record.payload(v.as_str());
        }
        let mut record = Some(record);
        while let Some(r) = record.take() {
            if let Err((e, back)) = producer.send(r) {
                assert!(
                    e.to_string().contains("Queue full"),
                    "producing failed: {e}"
                );
                producer.poll(Duration::from_millis(10));
                record = Some(back);
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    let landed = std::mem::take(&mut *producer.context().0.lock().expect("lock"));
    assert_eq!(landed.len(), records.len(), "every record was delivered");
    landed
}

/// One consumed record.
struct Consumed {
    partition: i32,
    key: Option<Vec<u8>>,
    value: Option<String>,
    headers: BTreeMap<String, String>,
}

/// Reads every record of `topic` (all partitions, from the start) until `expected` arrived or
/// `timeout` passed.
fn consume_all(topic: &str, expected: usize, timeout: Duration) -> Vec<Consumed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("receive.message.max.bytes", RECEIVE_MAX_BYTES)
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for p in metadata.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < expected && Instant::now() < deadline {
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.expect("consume");
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Consumed {
            partition: m.partition(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(|v| String::from_utf8_lossy(v).into_owned()),
            headers,
        });
    }
    // Anything beyond `expected` would be a duplicate: wait briefly for it.
    let settle = Instant::now() + Duration::from_millis(500);
    while Instant::now() < settle {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            out.push(Consumed {
                partition: m.partition(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(|v| String::from_utf8_lossy(v).into_owned()),
                headers: BTreeMap::new(),
            });
        }
    }
    out
}

fn run_fsql(dir: &Path, sql: &str) -> Output {
    let file = dir.join(format!("{}.fsql", unique("pipeline")));
    std::fs::write(&file, sql).expect("write pipeline");
    run_file(&file, &[])
}

/// `fsql run` of `file` with `args` before it; panics unless it succeeds.
fn run_file(file: &Path, args: &[&str]) -> Output {
    let out = Command::new(FSQL)
        .arg("run")
        .args(args)
        .arg(file)
        .output()
        .expect("fsql runs");
    assert!(
        out.status.success(),
        "fsql run {} failed:\n{}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn spawn_fsql(dir: &Path, sql: &str) -> Child {
    let file = dir.join(format!("{}.fsql", unique("pipeline")));
    std::fs::write(&file, sql).expect("write pipeline");
    Command::new(FSQL)
        .arg("run")
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fsql starts")
}

/// `N` from the run summary's `N rows in`.
fn rows_in(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| {
            let rest = l
                .strip_prefix("finished: ")
                .or_else(|| l.strip_prefix("stopped: "))?;
            rest.split(" rows in").next()?.trim().parse().ok()
        })
        .unwrap_or_else(|| panic!("no run summary in:\n{stderr}"))
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("bad JSON {text}: {e}"))
}

const CARDS: u64 = 1_000;
const BASE_MS: i64 = 1_767_225_600_000; // 2026-01-01 00:00:00 UTC

/// Payment `i` as JSON: one every 10 ms of event time, `CARDS` cards, amounts of x.5.
fn payment(i: u64) -> (String, String) {
    let card = format!("card-{}", (i * 7919) % CARDS);
    let ts = BASE_MS + i as i64 * 10;
    let secs = ts.div_euclid(1000);
    let ms = ts.rem_euclid(1000);
    let time = chrono_like(secs, ms);
    let amount = (i % 1000) as f64 + 0.5;
    let value =
        format!(r#"{{"payment_id":{i},"card_id":"{card}","amount":{amount},"ts":"{time}"}}"#);
    (card, value)
}

/// The payments `range` as records to produce.
fn payments(range: std::ops::Range<u64>) -> Vec<(String, Option<String>)> {
    range
        .map(|i| {
            let (card, value) = payment(i);
            (card, Some(value))
        })
        .collect()
}

/// `YYYY-MM-DD HH:MM:SS.mmm` for epoch seconds `secs` (UTC, days after 1970 by civil arithmetic).
fn chrono_like(secs: i64, ms: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{ms:03}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// 1% of the records are malformed in one of three ways; the rest are payments.
fn malformed(i: u64) -> Option<Option<String>> {
    (i % 100 == 37).then(|| {
        match (i / 100) % 3 {
        0 => Some(format!(r#"{{"payment_id":{i},"card_id":"x","amount":"#)),
        1 => Some(
            r#"{"payment_id":"not a number","card_id":"x","amount":1.5,"ts":"2026-01-01 00:00:00"}"#
                .to_string(),
        ),
        _ => None,
    }
    })
}

/// The records of the big test: `FSQL_KAFKA_TEST_RECORDS`, default 1,000,000.
fn big_test_records() -> u64 {
    std::env::var("FSQL_KAFKA_TEST_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// The test broker (noida-db 0.2.3) ignores a fetch request's size limits and answers with every
/// byte from the fetch offset to the end of each partition asked for; librdkafka drops a response
/// larger than `receive.message.max.bytes` (default 100 MB) as "Bad message format". So the
/// producers here compress (lz4, as production producers usually do) and the consumers accept
/// larger responses. Against Apache Kafka or Redpanda neither is needed.
const RECEIVE_MAX_BYTES: &str = "2147483647";

#[test]
fn json_payments_from_four_partitions_become_decisions_and_dead_letters() {
    let n = big_test_records();
    let input = unique("payments");
    let output = unique("decisions");
    let dlq = unique("payments-dlq");
    let _topics = (
        Topics::create(&[&input], 4),
        Topics::create(&[&output, &dlq], 1),
    );
    let records: Vec<(String, Option<String>)> = (0..n)
        .map(|i| {
            let (card, value) = payment(i);
            match malformed(i) {
                Some(bad) => (card, bad),
                None => (card, Some(value)),
            }
        })
        .collect();
    let landed = produce(&input, &records);
    let dir = scratch("million");
    let sql = format!(
        "CREATE TABLE payments (
           payment_id BIGINT, card_id STRING, amount DOUBLE, ts TIMESTAMP(3),
           kafka_partition INT METADATA FROM 'partition' VIRTUAL,
           kafka_offset BIGINT METADATA FROM 'offset' VIRTUAL,
           WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
         ) WITH ('connector' = 'kafka', 'topic' = '{input}',
           'properties.bootstrap.servers' = '{b}', 'properties.group.id' = '{g}',
           'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset',
           'properties.receive.message.max.bytes' = '{receive}',
           'format' = 'json', 'dead-letter.topic' = '{dlq}');
         CREATE TABLE decisions (
           payment_id BIGINT, card_id STRING, cnt BIGINT, total DOUBLE, decision STRING,
           kafka_partition INT, kafka_offset BIGINT
         ) WITH ('connector' = 'kafka', 'topic' = '{output}',
           'properties.bootstrap.servers' = '{b}', 'properties.compression.type' = 'lz4',
           'format' = 'json', 'key.format' = 'raw', 'key.fields' = 'card_id');
         INSERT INTO decisions
         SELECT payment_id, card_id, cnt, total,
                CASE WHEN cnt > 300 OR amount > 990 THEN 'REVIEW' ELSE 'APPROVE' END,
                kafka_partition, kafka_offset
         FROM (SELECT payment_id, card_id, amount, kafka_partition, kafka_offset,
                      COUNT(*) OVER w AS cnt, SUM(amount) OVER w AS total
               FROM payments
               WINDOW w AS (PARTITION BY card_id ORDER BY ts
                            RANGE BETWEEN INTERVAL '1' HOUR PRECEDING AND CURRENT ROW));",
        b = brokers(),
        g = unique("group"),
        receive = RECEIVE_MAX_BYTES,
    );
    let out = run_fsql(&dir, &sql);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let bad = (0..n).filter(|i| malformed(*i).is_some()).count();
    let good = n as usize - bad;

    // The accounting identity: every record is processed, dead-lettered or late, exactly once.
    assert_eq!(rows_in(&stderr), good as u64, "{stderr}");
    assert!(
        stderr.contains(&format!("{bad} malformed")),
        "summary counts the malformed records: {stderr}"
    );
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("finished: "))
        .unwrap_or_default();
    assert!(
        summary.contains("malformed in"),
        "no row is late (the summary would count them): {summary}"
    );

    // Expected features: per card, the payments of the last hour up to and including this one.
    let mut expected: HashMap<u64, (i64, f64, &str)> = HashMap::new();
    let mut windows: HashMap<String, VecDeque<(i64, f64)>> = HashMap::new();
    for i in (0..n).filter(|i| malformed(*i).is_none()) {
        let (card, _) = payment(i);
        let ts = BASE_MS + i as i64 * 10;
        let amount = (i % 1000) as f64 + 0.5;
        let w = windows.entry(card).or_default();
        w.push_back((ts, amount));
        while w.front().is_some_and(|(t, _)| *t < ts - 3_600_000) {
            w.pop_front();
        }
        let cnt = w.len() as i64;
        let total: f64 = w.iter().map(|(_, a)| a).sum();
        let decision = if cnt > 300 || amount > 990.0 {
            "REVIEW"
        } else {
            "APPROVE"
        };
        expected.insert(i, (cnt, total, decision));
    }

    let decisions = consume_all(&output, good, Duration::from_secs(300));
    assert_eq!(decisions.len(), good, "one decision per valid payment");
    let mut seen = vec![false; n as usize];
    for d in &decisions {
        let v = json(d.value.as_deref().expect("a value"));
        let id = v["payment_id"].as_u64().expect("payment_id");
        assert!(!seen[id as usize], "payment {id} decided twice");
        seen[id as usize] = true;
        let (cnt, total, decision) = expected[&id];
        assert_eq!(v["cnt"].as_i64(), Some(cnt), "cnt of {id}: {v}");
        assert_eq!(v["total"].as_f64(), Some(total), "total of {id}: {v}");
        assert_eq!(
            v["decision"].as_str(),
            Some(decision),
            "decision of {id}: {v}"
        );
        let (p, o) = landed[&(id as usize)];
        assert_eq!(v["kafka_partition"].as_i64(), Some(i64::from(p)), "{v}");
        assert_eq!(v["kafka_offset"].as_i64(), Some(o), "{v}");
        assert_eq!(
            d.key.as_deref(),
            Some(payment(id).0.as_bytes()),
            "key is card_id"
        );
    }

    // Dead letters: the raw record, with where it came from and why.
    let dead = consume_all(&dlq, bad, Duration::from_secs(60));
    assert_eq!(dead.len(), bad, "one dead letter per malformed record");
    let mut by_position: HashMap<(i32, i64), u64> = HashMap::new();
    for (i, (p, o)) in &landed {
        by_position.insert((*p, *o), *i as u64);
    }
    for d in &dead {
        assert_eq!(d.headers["fsql.topic"], input);
        assert_eq!(d.headers["fsql.table"], "payments");
        let p: i32 = d.headers["fsql.partition"].parse().expect("partition");
        let o: i64 = d.headers["fsql.offset"].parse().expect("offset");
        let i = by_position[&(p, o)];
        let original = malformed(i).expect("it was one of the malformed records");
        assert_eq!(d.value, original, "raw value of record {i}");
        assert_eq!(d.key.as_deref(), Some(payment(i).0.as_bytes()), "raw key");
        assert!(!d.headers["fsql.error"].is_empty());
        assert_eq!(d.partition, 0, "the dead-letter topic has one partition");
    }
}

/// A stateless pipeline: input → doubled amounts → output, through consumer group `group`.
fn stateless_sql(input: &str, output: &str, group: &str, bounded: bool) -> String {
    format!(
        "CREATE TABLE payments (payment_id BIGINT, card_id STRING, amount DOUBLE, ts TIMESTAMP(3))
         WITH ('connector' = 'kafka', 'topic' = '{input}',
           'properties.bootstrap.servers' = '{b}', 'properties.group.id' = '{group}',
           'properties.auto.commit.interval.ms' = '200',
           'scan.startup.mode' = 'group-offsets', {bounded} 'format' = 'json');
         CREATE TABLE doubled (payment_id BIGINT, amount DOUBLE)
         WITH ('connector' = 'kafka', 'topic' = '{output}',
           'properties.bootstrap.servers' = '{b}', 'format' = 'json');
         INSERT INTO doubled SELECT payment_id, amount * 2 FROM payments;",
        b = brokers(),
        bounded = if bounded {
            "'scan.bounded.mode' = 'latest-offset',"
        } else {
            ""
        },
    )
}

/// The payment ids of an output topic's records, sorted.
fn ids_and_amounts(records: &[Consumed]) -> Vec<(u64, f64)> {
    let mut rows: Vec<(u64, f64)> = records
        .iter()
        .map(|r| {
            let v = json(r.value.as_deref().expect("value"));
            (
                v["payment_id"].as_u64().expect("id"),
                v["amount"].as_f64().expect("amount"),
            )
        })
        .collect();
    rows.sort_by_key(|a| a.0);
    rows
}

/// Waits until consumer group `group` has `members` members that each hold partitions.
fn wait_for_group(group: &str, members: usize) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(list) = consumer.fetch_group_list(Some(group), Duration::from_secs(5))
            && let Some(g) = list.groups().iter().find(|g| g.name() == group)
            && g.state() == "Stable"
            && g.members().len() == members
            && g.members()
                .iter()
                .all(|m| m.assignment().is_some_and(|a| !a.is_empty()))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "group {group} never had {members} members with partitions"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn interrupt(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

#[test]
fn two_processes_in_one_group_split_the_partitions_and_match_one_process() {
    const N: u64 = 40_000;
    let input = unique("split-in");
    let together = unique("split-out");
    let alone = unique("alone-out");
    let _topics = (
        Topics::create(&[&input], 4),
        Topics::create(&[&together, &alone], 1),
    );
    let dir = scratch("split");
    let group = unique("split-group");
    let sql = stateless_sql(&input, &together, &group, false);
    let a = spawn_fsql(&dir, &sql);
    let b = spawn_fsql(&dir, &sql);
    wait_for_group(&group, 2);
    produce(&input, &payments(0..N));
    let out = consume_all(&together, N as usize, Duration::from_secs(120));
    interrupt(&a);
    interrupt(&b);
    let a = a.wait_with_output().expect("a exits");
    let b = b.wait_with_output().expect("b exits");
    let (ea, eb) = (
        String::from_utf8_lossy(&a.stderr).into_owned(),
        String::from_utf8_lossy(&b.stderr).into_owned(),
    );
    assert!(a.status.success() && b.status.success(), "{ea}\n{eb}");
    let (ra, rb) = (rows_in(&ea), rows_in(&eb));
    assert!(
        ra > 0 && rb > 0,
        "both processes read partitions: {ra} + {rb}"
    );
    assert_eq!(ra + rb, N, "together they read every record once");

    // The same input through one process.
    run_fsql(
        &dir,
        &stateless_sql(&input, &alone, &unique("alone-group"), true),
    );
    let single = consume_all(&alone, N as usize, Duration::from_secs(60));
    assert_eq!(single.len(), N as usize);
    assert_eq!(ids_and_amounts(&out), ids_and_amounts(&single));
    let expected: Vec<(u64, f64)> = (0..N)
        .map(|i| (i, ((i % 1000) as f64 + 0.5) * 2.0))
        .collect();
    assert_eq!(ids_and_amounts(&single), expected);
}

#[test]
fn a_restarted_pipeline_resumes_from_its_group_offsets() {
    let input = unique("resume-in");
    let output = unique("resume-out");
    let _topics = (Topics::create(&[&input], 4), Topics::create(&[&output], 1));
    let dir = scratch("resume");
    let group = unique("resume-group");
    let sql = stateless_sql(&input, &output, &group, true);
    produce(&input, &payments(0..30_000));
    let first = run_fsql(&dir, &sql);
    assert_eq!(rows_in(&String::from_utf8_lossy(&first.stderr)), 30_000);
    produce(&input, &payments(30_000..45_000));
    let second = run_fsql(&dir, &sql);
    assert_eq!(
        rows_in(&String::from_utf8_lossy(&second.stderr)),
        15_000,
        "the second run reads only the new records"
    );
    let third = run_fsql(&dir, &sql);
    assert_eq!(rows_in(&String::from_utf8_lossy(&third.stderr)), 0);
    let out = consume_all(&output, 45_000, Duration::from_secs(60));
    let ids: Vec<u64> = ids_and_amounts(&out).into_iter().map(|r| r.0).collect();
    assert_eq!(
        ids,
        (0..45_000).collect::<Vec<_>>(),
        "no loss, no duplicates"
    );
    // The same group with `earliest-offset` reads the topic from its start again, although the
    // group's committed offsets are at its end.
    let again = sql.replace(
        "'scan.startup.mode' = 'group-offsets'",
        "'scan.startup.mode' = 'earliest-offset'",
    );
    assert_ne!(again, sql);
    let fourth = run_fsql(&dir, &again);
    assert_eq!(rows_in(&String::from_utf8_lossy(&fourth.stderr)), 45_000);
}

/// Periodic commits run in the background, after the sink's acknowledgements: a run killed with
/// SIGKILL (no final commit) has committed part of what it read, and a restart from the group's
/// offsets reads only the rest, with every record decided at least once.
#[test]
fn a_killed_pipeline_resumes_from_its_last_periodic_commit_without_loss() {
    const RECORDS: u64 = 200_000;
    let input = unique("killed-in");
    let output = unique("killed-out");
    let _topics = (Topics::create(&[&input], 4), Topics::create(&[&output], 1));
    let dir = scratch("killed");
    let group = unique("killed-group");
    produce(&input, &payments(0..RECORDS));
    // The first run reads from the start with the group's id, committing to it without joining
    // it (partitions assigned, not subscribed): a killed member would hold the group's
    // partitions until the broker expired it, which the test broker never does.
    let sql = |bounded| {
        let text = stateless_sql(&input, &output, &group, bounded);
        if bounded {
            text
        } else {
            text.replace(
                "'scan.startup.mode' = 'group-offsets'",
                "'scan.startup.mode' = 'earliest-offset'",
            )
        }
    };
    let mut first = spawn_fsql(&dir, &sql(false));
    // Let it read a part, commit along the way (every 200 ms), then kill it mid-stream.
    let seen = consume_all(&output, 40_000, Duration::from_secs(60));
    assert!(seen.len() >= 40_000, "the first run wrote {}", seen.len());
    first.kill().expect("SIGKILL");
    let _ = first.wait();
    let mut second = spawn_fsql(&dir, &sql(true));
    let deadline = Instant::now() + Duration::from_secs(120);
    while second.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = second.kill();
            panic!("the restarted run did not finish in 120 s (never got the partitions?)");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let second = second.wait_with_output().expect("second run");
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let reread = rows_in(&String::from_utf8_lossy(&second.stderr));
    assert!(
        reread < RECORDS,
        "the restart read all {reread} records: nothing was committed while running"
    );
    // Both runs' output: the first run's decisions of records it had not committed come again.
    let written = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create::<BaseConsumer>()
        .expect("consumer")
        .fetch_watermarks(&output, 0, Duration::from_secs(10))
        .expect("end offset")
        .1;
    let out = consume_all(&output, written as usize, Duration::from_secs(120));
    assert_eq!(out.len() as i64, written);
    let mut ids: Vec<u64> = ids_and_amounts(&out).into_iter().map(|r| r.0).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids,
        (0..RECORDS).collect::<Vec<_>>(),
        "every record decided at least once"
    );
}

/// `fsql run --progress` reports while it reads a topic: rows in and the consumer lag of the
/// records not read yet, which shrinks to 0; rows read plus the lag never exceed what was produced.
#[test]
fn progress_reports_rows_read_and_the_consumer_lag() {
    const RECORDS: u64 = 200_000;
    let input = unique("progress-in");
    let output = unique("progress-out");
    let _topics = Topics::create(&[&input, &output], 1);
    let dir = scratch("progress");
    produce(&input, &payments(0..RECORDS));
    let file = dir.join("progress.fsql");
    std::fs::write(
        &file,
        stateless_sql(&input, &output, &unique("progress"), true),
    )
    .expect("write pipeline");
    let out = Command::new(FSQL)
        .args(["run", "--progress", "10 ms"])
        .arg(&file)
        .output()
        .expect("fsql runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(rows_in(&stderr), RECORDS);
    // `progress: 0.1 s | in 512,000/s (51,200) | out ... | lag 148,800 | dead letters 0 | late 0`
    let field = |line: &str, name: &str| -> Option<u64> {
        let rest = line.split(" | ").find_map(|f| f.strip_prefix(name))?;
        let number = rest.rsplit('(').next()?.trim_end_matches(')');
        number.replace(',', "").parse().ok()
    };
    let reports: Vec<(u64, Option<u64>)> = stderr
        .lines()
        .filter(|l| l.starts_with("progress: "))
        .map(|l| (field(l, "in ").expect("rows in"), field(l, "lag ")))
        .collect();
    assert!(reports.len() >= 2, "progress lines:\n{stderr}");
    let lags: Vec<u64> = reports.iter().filter_map(|r| r.1).collect();
    assert!(
        lags.iter().any(|&l| l > 0),
        "some report sees records not read yet:\n{stderr}"
    );
    for (rows, lag) in &reports {
        assert!(
            rows + lag.unwrap_or(0) <= RECORDS,
            "{rows} rows read and {lag:?} lag of {RECORDS}:\n{stderr}"
        );
    }
    assert!(
        reports.windows(2).all(|w| w[0].0 <= w[1].0),
        "rows in only grow"
    );
}

/// The control stream on a Kafka topic: `fsql control push` publishes a checked, signed rule to
/// the topic; a running pipeline applies it between batches and acknowledges it on the ack topic;
/// a record with a type error, produced directly, is rejected there with the reason.
#[test]
fn control_updates_arrive_through_a_topic_and_are_acknowledged_on_another() {
    let dir = scratch("control");
    let control = unique("control");
    let acks = format!("{control}-acks");
    let _topics = Topics::create(&[&control, &acks], 1);
    let key = dir.join("ops.key");
    let out = Command::new(FSQL)
        .args([
            "control",
            "keygen",
            "--name",
            "ops",
            "--key",
            key.to_str().unwrap(),
        ])
        .output()
        .expect("keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trusted = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let sql = format!(
        "{trusted}
SET 'control.topic' = '{control}';
SET 'control.properties.bootstrap.servers' = '{brokers}';
CREATE TABLE payments (payment_id BIGINT, amount DOUBLE, ts TIMESTAMP(3))
  WITH ('connector' = 'payments-generator', 'number-of-rows' = '8000', 'rows-per-second' = '1000');
CREATE RULESET decisions ON payments KEY payment_id DEFAULT 'ALLOW' (
  RULE big PRIORITY 10 WHEN amount > 1000 THEN 'REVIEW');
CREATE TABLE out (payment_id BIGINT, amount DOUBLE, decision STRING, rule STRING, ruleset_version BIGINT)
  WITH ('connector' = 'filesystem', 'path' = '{out}', 'format' = 'json');
INSERT INTO out SELECT payment_id, amount, decision, rule, ruleset_version FROM decisions;
",
        brokers = brokers(),
        out = dir.join("out.jsonl").display()
    );
    let pipeline = dir.join("control.fsql");
    std::fs::write(&pipeline, &sql).expect("write pipeline");
    let mut child = Command::new(FSQL)
        .arg("run")
        .arg(&pipeline)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fsql starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(dir.join("out.jsonl")).map_or(0, |t| t.lines().count()) < 300 {
        assert!(Instant::now() < deadline, "no output");
        std::thread::sleep(Duration::from_millis(20));
    }
    let update = dir.join("tiny.json");
    std::fs::write(
        &update,
        r#"{"op": "add_rule", "version": 2, "rule": {"name": "tiny", "priority": 5, "when": "amount < 5", "then": "BLOCK"}}"#,
    )
    .expect("write update");
    let out = Command::new(FSQL)
        .args([
            "control",
            "push",
            "--plan",
            pipeline.to_str().unwrap(),
            "--ruleset",
            "decisions",
            "--key-name",
            "ops",
            "--key",
            key.to_str().unwrap(),
            update.to_str().unwrap(),
        ])
        .output()
        .expect("push");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A type error, signed and produced without push's check.
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"op": "add_rule", "ruleset": "decisions", "version": 3, "rule": {"name": "bad", "priority": 1, "when": "amount || 1 > 'x' AND", "then": "BLOCK"}}"#,
    )
    .expect("write update");
    let signed = Command::new(FSQL)
        .args([
            "control",
            "sign",
            "--key-name",
            "ops",
            "--key",
            key.to_str().unwrap(),
            bad.to_str().unwrap(),
        ])
        .output()
        .expect("sign");
    produce(
        &control,
        &[(
            "decisions".to_string(),
            Some(String::from_utf8_lossy(&signed.stdout).trim().to_string()),
        )],
    );
    let acked = consume_all(&acks, 2, Duration::from_secs(30));
    let status = child.wait().expect("fsql ends");
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    let acked: Vec<Value> = acked
        .iter()
        .map(|c| json(c.value.as_deref().unwrap_or("null")))
        .collect();
    assert_eq!(acked.len(), 2, "{acked:?}");
    assert_eq!(acked[0]["status"], "applied", "{acked:?}");
    assert_eq!(acked[0]["version"], 2);
    assert_eq!(acked[1]["status"], "rejected", "{acked:?}");
    assert!(
        acked[1]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("rule `bad`"),
        "{acked:?}"
    );
    let rows: Vec<Value> = std::fs::read_to_string(dir.join("out.jsonl"))
        .unwrap()
        .lines()
        .map(json)
        .collect();
    assert_eq!(rows.len(), 8000);
    let mut last = 1;
    for row in &rows {
        let version = row["ruleset_version"].as_i64().unwrap();
        assert!(version >= last && version <= 2, "{row}");
        last = version;
        let amount = row["amount"].as_f64().unwrap();
        let expected = if version == 2 && amount < 5.0 {
            "BLOCK"
        } else if amount > 1000.0 {
            "REVIEW"
        } else {
            "ALLOW"
        };
        assert_eq!(row["decision"], expected, "{row}");
    }
    assert_eq!(last, 2, "the update reached the output");
}

/// Events in the crash test (`FSQL_CRASH_EVENTS` overrides the issue's 1,000,000 for local runs).
fn crash_events() -> u64 {
    std::env::var("FSQL_CRASH_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000)
}

/// The crash test's pipeline: per-card OVER features, a card-testing MATCH_RECOGNIZE pattern and
/// LightGBM scoring, read from `input`, writing decisions and alerts to `decisions` and `alerts`
/// in one Kafka transaction (`prefix`), checkpointed into `chk` every 500 ms.
fn stateful_sql(input: &str, decisions: &str, alerts: &str, prefix: &str) -> String {
    let b = brokers();
    let model = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("model/tests/models/categorical_binary.txt")
        .display()
        .to_string();
    let sink = |topic: &str| {
        format!(
            "'connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{b}', \
             'format' = 'json', 'key.format' = 'json', 'key.fields' = 'card_id', \
             'sink.delivery-guarantee' = 'exactly-once', 'sink.transactional-id-prefix' = '{prefix}'"
        )
    };
    format!(
        "SET 'execution.checkpointing.interval' = '500 ms';
SET 'execution.checkpointing.dir' = 'chk';
CREATE TABLE payments (payment_id BIGINT, card_id STRING, amount DOUBLE, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH ('connector' = 'kafka', 'topic' = '{input}', 'properties.bootstrap.servers' = '{b}',
  'format' = 'json', 'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset',
  'properties.receive.message.max.bytes' = '{receive}');
CREATE MODEL risk INPUT (merchant_cat DOUBLE, amount_z DOUBLE, channel DOUBLE, noise DOUBLE)
  OUTPUT (score DOUBLE) WITH ('provider' = 'lightgbm', 'path' = '{model}', 'task' = 'classification');
CREATE VIEW features AS
SELECT payment_id, card_id, amount, ts,
  COUNT(*) OVER h AS n_1h, SUM(amount) OVER h AS sum_1h, MAX(amount) OVER h AS max_1h,
  COUNT(*) OVER m AS n_10m
FROM payments
WINDOW h AS (PARTITION BY card_id ORDER BY ts RANGE BETWEEN INTERVAL '1' HOUR PRECEDING AND CURRENT ROW),
       m AS (PARTITION BY card_id ORDER BY ts RANGE BETWEEN INTERVAL '10' MINUTE PRECEDING AND CURRENT ROW);
CREATE VIEW inputs AS
SELECT payment_id, card_id, ts, n_1h, sum_1h,
  CAST(n_10m % 7 AS DOUBLE) AS merchant_cat, (amount - sum_1h / n_1h) / 100 AS amount_z,
  CAST(n_1h % 3 AS DOUBLE) AS channel, max_1h / 1000 AS noise
FROM features;
CREATE TABLE decisions (payment_id BIGINT, card_id STRING, n_1h BIGINT, sum_1h DOUBLE, score DOUBLE)
WITH ({decisions_sink});
CREATE TABLE alerts (card_id STRING, first_ts TIMESTAMP(3), tiny BIGINT, big_payment BIGINT)
WITH ({alerts_sink});
INSERT INTO decisions
SELECT payment_id, card_id, n_1h, sum_1h, score
FROM ML_PREDICT(TABLE inputs, MODEL risk, DESCRIPTOR(merchant_cat, amount_z, channel, noise));
INSERT INTO alerts
SELECT card_id, first_ts, tiny, big_payment
FROM payments MATCH_RECOGNIZE (
  PARTITION BY card_id ORDER BY ts
  MEASURES FIRST(S.ts) AS first_ts, COUNT(S.*) AS tiny, B.payment_id AS big_payment
  ONE ROW PER MATCH AFTER MATCH SKIP PAST LAST ROW
  PATTERN (S{{3,}} B) WITHIN INTERVAL '10' MINUTE
  DEFINE S AS S.amount < 2, B AS B.amount > 200
) AS T;
",
        decisions_sink = sink(decisions),
        alerts_sink = sink(alerts),
        receive = RECEIVE_MAX_BYTES,
    )
}

/// The committed records of `topic` (read_committed), sorted: the output as a multiset.
fn committed_output(topic: &str, expected: usize) -> Vec<String> {
    let mut values: Vec<String> = consume_all(topic, expected, Duration::from_secs(120))
        .into_iter()
        .map(|c| format!("{}|{}", c.partition, c.value.unwrap_or_default()))
        .collect();
    values.sort_unstable();
    values
}

/// The durable-state acceptance test: a stateful pipeline (OVER features, MATCH_RECOGNIZE,
/// LightGBM scoring) over 1M events is killed with SIGKILL at random moments, at least 5 times,
/// and restarted each time from its last checkpoint; the committed output equals a failure-free
/// run's exactly: no loss, no duplicates.
#[test]
fn a_pipeline_killed_at_random_moments_commits_exactly_the_output_of_a_failure_free_run() {
    let events = crash_events();
    let input = unique("crash-in");
    let (ref_decisions, ref_alerts) = (unique("crash-ref-decisions"), unique("crash-ref-alerts"));
    let (decisions, alerts) = (unique("crash-decisions"), unique("crash-alerts"));
    let _topics = Topics::create(
        &[&input, &ref_decisions, &ref_alerts, &decisions, &alerts],
        2,
    );
    let dir = scratch("crash");
    // The input: the payments generator's stream, with card-testing attacks, into the topic.
    let generate = format!(
        "CREATE TABLE g (payment_id BIGINT, card_id STRING, amount DOUBLE, ts TIMESTAMP(3))
         WITH ('connector' = 'payments-generator', 'number-of-rows' = '{events}', 'seed' = '11',
               'fraud-rate' = '0.002');
         CREATE TABLE t (payment_id BIGINT, card_id STRING, amount DOUBLE, ts TIMESTAMP(3))
         WITH ('connector' = 'kafka', 'topic' = '{input}', 'properties.bootstrap.servers' = '{}',
               'format' = 'json', 'key.format' = 'json', 'key.fields' = 'card_id',
               'properties.compression.type' = 'lz4');
         INSERT INTO t SELECT * FROM g;",
        brokers()
    );
    let out = run_fsql(&dir, &generate);
    assert_eq!(rows_in(&String::from_utf8_lossy(&out.stderr)), events);

    // The failure-free run.
    let reference = dir.join("reference");
    std::fs::create_dir_all(&reference).expect("dir");
    let out = run_fsql(
        &reference,
        &stateful_sql(&input, &ref_decisions, &ref_alerts, &unique("ref")),
    );
    assert_eq!(rows_in(&String::from_utf8_lossy(&out.stderr)), events);
    let want_decisions = committed_output(&ref_decisions, events as usize);
    assert_eq!(
        want_decisions.len() as u64,
        events,
        "one decision per event"
    );
    let want_alerts = committed_output(&ref_alerts, 1);
    assert!(
        !want_alerts.is_empty(),
        "the generator's card testing is detected"
    );

    // The same pipeline, killed at random moments and restarted.
    let crashing = dir.join("crashing");
    std::fs::create_dir_all(&crashing).expect("dir");
    let sql = stateful_sql(&input, &decisions, &alerts, &unique("crash"));
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut rng = seed;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // One file, so every run is the same pipeline (its name and checkpoint directory).
    let file = crashing.join("crashing.fsql");
    std::fs::write(&file, &sql).expect("write pipeline");
    let run = || {
        let mut command = Command::new(FSQL);
        command
            .arg("run")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    };
    let mut kills = 0;
    while kills < 5 {
        let mut child = run().spawn().expect("fsql starts");
        // A random moment: during start-up and restore, between and during checkpoints.
        let deadline = Instant::now() + Duration::from_millis(300 + next() % 4_000);
        while Instant::now() < deadline {
            if child.try_wait().expect("wait").is_some() {
                let out = child.wait_with_output().expect("output");
                panic!(
                    "the run ended before its kill after {kills} kills (seed {seed}): {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        kills += 1;
    }
    let out = run().output().expect("fsql runs");
    let finished = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "the last run failed (seed {seed}):\n{finished}"
    );
    assert!(kills >= 5, "killed {kills} times");
    assert!(
        finished.contains("resumed from chk-"),
        "the last run resumed from a checkpoint:\n{finished}"
    );
    let got_decisions = committed_output(&decisions, events as usize);
    let got_alerts = committed_output(&alerts, want_alerts.len());
    assert_eq!(
        got_decisions.len(),
        want_decisions.len(),
        "decisions after {kills} kills (seed {seed})"
    );
    assert!(
        got_decisions == want_decisions,
        "decisions differ after {kills} kills (seed {seed})"
    );
    assert_eq!(
        got_alerts, want_alerts,
        "alerts after {kills} kills (seed {seed})"
    );
    let resumed = finished.lines().find(|l| l.starts_with("checkpoints:"));
    eprintln!(
        "crash test: {events} events, {kills} kills (seed {seed}); the last run: {}; committed: {} decisions and {} alerts, equal to the failure-free run's",
        resumed.unwrap_or("?"),
        got_decisions.len(),
        got_alerts.len()
    );
}

/// `upsert-kafka` writes an updating relation keyed by the table's PRIMARY KEY: `+I`/`+U` rows are
/// records, `-U` rows are dropped and `-D` rows are tombstones (the key without a value).
#[test]
fn an_upsert_kafka_sink_writes_updates_and_deletes_as_tombstones() {
    let output = unique("upsert-out");
    let _topics = Topics::create(&[&output], 1);
    let dir = scratch("upsert");
    std::fs::write(
        dir.join("bids.jsonl"),
        "{\"auction\":1,\"price\":10}\n{\"auction\":2,\"price\":10}\n\
         {\"auction\":1,\"price\":20}\n{\"auction\":2,\"price\":30}\n",
    )
    .expect("input file");
    // One row per batch, so each bid's changes are emitted on their own.
    let sql = format!(
        "SET 'table.exec.mini-batch.size' = '1';\n\
         CREATE TABLE bids (auction BIGINT, price BIGINT)\n\
           WITH ('connector' = 'filesystem', 'path' = 'bids.jsonl', 'format' = 'json');\n\
         CREATE VIEW max_price AS SELECT auction, MAX(price) AS mx FROM bids GROUP BY auction;\n\
         CREATE TABLE per_max (mx BIGINT, c BIGINT, PRIMARY KEY (mx) NOT ENFORCED) WITH (\n\
           'connector' = 'upsert-kafka', 'topic' = '{output}',\n\
           'key.format' = 'json', 'value.format' = 'json',\n\
           'properties.bootstrap.servers' = '{}');\n\
         INSERT INTO per_max SELECT mx, COUNT(*) AS c FROM max_price GROUP BY mx;\n",
        brokers()
    );
    run_fsql(&dir, &sql);
    let records: Vec<(String, Option<String>)> = consume_all(&output, 6, Duration::from_secs(30))
        .into_iter()
        .map(|r| {
            let key = String::from_utf8_lossy(&r.key.unwrap_or_default()).into_owned();
            (key, r.value)
        })
        .collect();
    let record = |k: i64, c: Option<i64>| {
        (
            format!("{{\"mx\":{k}}}"),
            c.map(|c| format!("{{\"mx\":{k},\"c\":{c}}}")),
        )
    };
    assert_eq!(
        records,
        vec![
            record(10, Some(1)),
            record(10, Some(2)),
            record(10, Some(1)),
            record(20, Some(1)),
            record(10, None),
            record(30, Some(1)),
        ]
    );
}

/// A copy of one of the reference pipeline's files, edited for a test and written beside the
/// original (so its `INCLUDE`s, model and reference table resolve); deleted when dropped.
struct ReferenceCopy(PathBuf);

impl ReferenceCopy {
    fn new(file: &str, edit: impl FnOnce(String) -> String) -> ReferenceCopy {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/payments_risk");
        let text = std::fs::read_to_string(dir.join(file)).expect("read the reference pipeline");
        let copy = dir.join(format!(".{}.fsql", unique("kafka-test")));
        std::fs::write(&copy, edit(text)).expect("write the copy");
        ReferenceCopy(copy)
    }

    /// `fsql run` of the copy with `args` before it; panics unless it succeeds.
    fn run(&self, args: &[&str]) -> Output {
        run_file(&self.0, args)
    }
}

impl Drop for ReferenceCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The values of a topic's records as JSON, after `expected` arrived (and a moment for more).
fn topic_json(topic: &str, expected: usize) -> Vec<Value> {
    consume_all(topic, expected, Duration::from_secs(60))
        .into_iter()
        .map(|c| json(&c.value.unwrap_or_default()))
        .collect()
}

/// Rows as sorted tuples of the named fields' JSON text: a multiset to compare.
fn fields(rows: &[Value], names: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = rows
        .iter()
        .map(|r| {
            names
                .iter()
                .map(|n| r[*n].to_string())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    out.sort_unstable();
    out
}

/// Issue 9's production shape: `pipelines/payments_risk/payments_risk_kafka.fsql`, fed by
/// `payments_to_kafka.fsql`, decides every authorisation once, with the same decisions, scores,
/// features, refund decisions and pattern alerts as the local-mode pipeline (`payments_risk.fsql`,
/// the generator read in process) on the same payments; a payment far behind the watermark is
/// decided too, a malformed one goes to the dead-letter topic and one without an event time to the
/// late topic.
#[test]
fn the_reference_pipeline_on_kafka_decides_as_the_local_pipeline_does() {
    const ROWS: u64 = 20_000;
    const NAMES: [&str; 9] = [
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
    let topic: HashMap<&str, String> = NAMES.iter().map(|n| (*n, unique(n))).collect();
    let names: Vec<&str> = topic.values().map(String::as_str).collect();
    // One partition each: the pipeline reads the payments in the generator's order, as the
    // local one does (in arrival mode, results follow the order rows arrive in).
    let _topics = Topics::create(&names, 1);
    let dir = scratch("reference");
    let rows = |text: String| {
        text.replace(
            "'number-of-rows' = '200000'",
            &format!("'number-of-rows' = '{ROWS}'"),
        )
    };
    let on_kafka = |text: String| {
        let mut text = rows(text).replace("127.0.0.1:9092", &brokers());
        for name in NAMES {
            text = text.replace(&format!("= '{name}'"), &format!("= '{}'", topic[name]));
        }
        text
    };

    // The payments, then a malformed record, an authorisation as old as the first payment (far behind
    // the watermark) and one without an event time.
    ReferenceCopy::new("payments_to_kafka.fsql", on_kafka).run(&[
        "--unthrottled",
        "--progress",
        "0",
    ]);
    let payments = topic_json(&topic["payments"], ROWS as usize);
    assert_eq!(payments.len(), ROWS as usize);
    let auths = payments.iter().filter(|p| p["kind"] == "AUTH").count();
    let refunds = payments.iter().filter(|p| p["kind"] == "REFUND").count();
    let mut late = payments
        .iter()
        .rev()
        .find(|p| p["kind"] == "AUTH")
        .expect("an authorisation")
        .clone();
    late["payment_id"] = Value::from(1_000_000_000_u64);
    late["ts"] = payments[0]["ts"].clone();
    let mut timeless = late.clone();
    timeless["payment_id"] = Value::from(1_000_000_001_u64);
    timeless["ts"] = Value::Null;
    produce(
        &topic["payments"],
        &[
            (
                "bad".into(),
                Some("{\"payment_id\": \"not a number\"}".into()),
            ),
            ("late".into(), Some(late.to_string())),
            ("timeless".into(), Some(timeless.to_string())),
        ],
    );

    // The pipeline on Kafka, to the end of the topic.
    let chk = dir.join("chk");
    let pipeline = ReferenceCopy::new("payments_risk_kafka.fsql", |text| {
        on_kafka(text)
            .replace(
                "'execution.checkpointing.dir' = 'checkpoints'",
                &format!("'execution.checkpointing.dir' = '{}'", chk.display()),
            )
            .replace(
                "'format' = 'json',\n  'scan.watermark.idle-timeout'",
                "'format' = 'json',\n  'scan.bounded.mode' = 'latest-offset',\n  'scan.watermark.idle-timeout'",
            )
    });
    let out = pipeline.run(&["--progress", "0"]);
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(summary.contains("1 malformed"), "{summary}");

    // The same pipeline in local mode: the generator's payments in process.
    let local = ReferenceCopy::new("payments_risk.fsql", |text| {
        rows(text).replace("'path' = 'out/", &format!("'path' = '{}/", dir.display()))
    });
    let printed = local.run(&["--unthrottled", "--progress", "0", "--format", "jsonl"]);
    let local_decisions: Vec<Value> = String::from_utf8_lossy(&printed.stdout)
        .lines()
        .map(json)
        .collect();
    let read_lines = |name: &str| -> Vec<Value> {
        std::fs::read_to_string(dir.join(name))
            .expect("a local output file")
            .lines()
            .map(json)
            .collect()
    };
    let (local_refunds, local_alerts) = (
        read_lines("refund_decisions.jsonl"),
        read_lines("pattern_alerts.jsonl"),
    );
    assert!(local_decisions.len() > 100 && !local_alerts.is_empty());

    // Every authorisation decided once: in arrival order the late one too; the one without an
    // event time cannot be placed in any window, and is not. The decisions that are not ALLOW are
    // the ones local mode prints, with the same scores and rules.
    let decisions = topic_json(&topic["payment-decisions"], auths + 1);
    let mut decided: Vec<u64> = decisions
        .iter()
        .map(|d| d["payment_id"].as_u64().expect("payment_id"))
        .collect();
    let mut expected: Vec<u64> = payments
        .iter()
        .filter(|p| p["kind"] == "AUTH")
        .map(|p| p["payment_id"].as_u64().expect("payment_id"))
        .chain([1_000_000_000])
        .collect();
    decided.sort_unstable();
    expected.sort_unstable();
    assert_eq!(decided, expected, "every authorisation decided once");
    let not_allowed: Vec<Value> = decisions
        .iter()
        .filter(|d| d["decision"] != "ALLOW" && d["payment_id"] != 1_000_000_000)
        .cloned()
        .collect();
    let decision_fields = ["payment_id", "decision", "rule", "score", "ruleset_version"];
    assert_eq!(
        fields(&not_allowed, &decision_fields),
        fields(&local_decisions, &decision_fields)
    );

    // Feature vectors: one per authorisation, with the features local mode prints.
    let features = topic_json(&topic["payment-features"], auths + 1);
    assert_eq!(features.len(), auths + 1);
    let by_id: HashMap<u64, &Value> = features
        .iter()
        .map(|f| (f["payment_id"].as_u64().expect("payment_id"), f))
        .collect();
    for d in &local_decisions {
        let f = by_id[&d["payment_id"].as_u64().expect("payment_id")];
        for name in ["card_cnt_10m", "card_cnt_1h", "card_amt_1h"] {
            assert_eq!(f[name], d[name], "{name} of {d}");
        }
    }

    // Refund decisions (every refund; local mode writes those not ALLOW) and pattern alerts.
    let refund_decisions = topic_json(&topic["refund-decisions"], refunds);
    assert_eq!(refund_decisions.len(), refunds);
    let refund_fields = ["payment_id", "auth_id", "decision", "rule"];
    let flagged: Vec<Value> = refund_decisions
        .into_iter()
        .filter(|d| d["decision"] != "ALLOW")
        .collect();
    assert_eq!(
        fields(&flagged, &refund_fields),
        fields(&local_refunds, &refund_fields)
    );
    let alert_fields = [
        "alert",
        "card_id",
        "merchant_id",
        "payment_id",
        "first_ts",
        "last_ts",
        "n_events",
    ];
    assert_eq!(
        fields(
            &topic_json(&topic["pattern-alerts"], local_alerts.len()),
            &alert_fields
        ),
        fields(&local_alerts, &alert_fields)
    );

    // The malformed record in the dead-letter topic; the payment without an event time in the late
    // topic, from each stateful operator that received it.
    let dead = consume_all(&topic["payments-dead"], 1, Duration::from_secs(30));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].key.as_deref(), Some(&b"bad"[..]));
    let late_rows = topic_json(&topic["payments-late"], 1);
    assert!(!late_rows.is_empty());
    for row in &late_rows {
        assert!(
            row["row"]
                .as_str()
                .is_some_and(|r| r.contains("\"payment_id\":1000000001")),
            "{row}"
        );
    }
}
