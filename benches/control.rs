//! How long a rule update takes to apply once it is read (`cargo bench --bench control`).
//!
//! A pipeline (the payments generator at 20,000 rows/s, a 6-rule ruleset over an OVER feature, a
//! file sink) runs as `fsql run`, in local control mode. While it runs, 300 signed `replace_rule`
//! records are appended to its control file, 20 ms apart. Each acknowledgement carries
//! `applied_after_us`: from the moment the reader took the record (before its signature check and
//! the compilation of its condition) to the moment the executor applied it between two batches.
//! Reported: p50, p99 and max over the 300 updates, and that every one was applied.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const UPDATES: usize = 300;
const FSQL: &str = env!("CARGO_BIN_EXE_fsql");

fn main() {
    let dir = std::env::temp_dir().join(format!("fsql-bench-control-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
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
    assert!(out.status.success());
    let trusted = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let pipeline = format!(
        "{trusted}
SET 'control.path' = 'control.jsonl';
CREATE TABLE payments (payment_id BIGINT, card_id STRING, amount DOUBLE, status STRING, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH ('connector' = 'payments-generator', 'rows-per-second' = '20000');
CREATE VIEW features AS
SELECT payment_id, amount, status,
       COUNT(*) OVER (PARTITION BY card_id ORDER BY ts RANGE BETWEEN INTERVAL '10' MINUTE PRECEDING AND CURRENT ROW) AS txn_10m
FROM payments;
CREATE RULESET decisions ON features KEY payment_id DEFAULT 'ALLOW' (
  RULE r1 PRIORITY 1 WHEN amount > 5000 AND txn_10m > 3 THEN 'BLOCK',
  RULE r2 PRIORITY 2 WHEN status = 'DECLINED' AND amount > 1000 THEN 'BLOCK',
  RULE r3 PRIORITY 3 WHEN txn_10m >= 8 THEN 'REVIEW',
  RULE r4 PRIORITY 4 WHEN amount < 2 AND txn_10m >= 3 THEN 'REVIEW',
  RULE r5 PRIORITY 5 WHEN amount > 20000 THEN 'REVIEW',
  RULE r6 PRIORITY 6 WHEN amount < 1 THEN 'REVIEW');
CREATE TABLE out (payment_id BIGINT, decision STRING, ruleset_version BIGINT)
  WITH ('connector' = 'blackhole');
INSERT INTO out SELECT payment_id, decision, ruleset_version FROM decisions;
"
    );
    let file = dir.join("pipeline.fsql");
    std::fs::write(&file, pipeline).expect("write pipeline");
    // Sign every update first, so the loop below only appends.
    let records: Vec<String> = (0..UPDATES)
        .map(|i| {
            let update = dir.join("update.json");
            let threshold = 1000 + i;
            std::fs::write(
                &update,
                format!(
                    r#"{{"op": "replace_rule", "ruleset": "decisions", "version": {}, "rule": {{"name": "r2", "priority": 2, "when": "status = 'DECLINED' AND amount > {threshold}", "then": "BLOCK"}}}}"#,
                    i + 2
                ),
            )
            .expect("write update");
            let out = Command::new(FSQL)
                .args(["control", "sign", "--key-name", "ops", "--key", key.to_str().unwrap(), update.to_str().unwrap()])
                .output()
                .expect("sign");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        })
        .collect();
    let mut child = Command::new(FSQL)
        .args(["run", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("fsql run");
    std::thread::sleep(Duration::from_secs(2));
    let control = dir.join("control.jsonl");
    for record in &records {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&control)
            .expect("control file");
        writeln!(f, "{record}").expect("append");
        drop(f);
        std::thread::sleep(Duration::from_millis(20));
    }
    let acks = dir.join("control.jsonl.acks");
    let deadline = Instant::now() + Duration::from_secs(60);
    let lines = |p: &Path| std::fs::read_to_string(p).map_or(0, |t| t.lines().count());
    while lines(&acks) < UPDATES && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&acks).expect("acks");
    let mut micros: Vec<u64> = Vec::new();
    let mut rejected = 0;
    for line in text.lines() {
        let ack: serde_json::Value = serde_json::from_str(line).expect("ack");
        match ack["applied_after_us"].as_u64() {
            Some(us) => micros.push(us),
            None => rejected += 1,
        }
    }
    micros.sort_unstable();
    let at = |p: f64| micros[((micros.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
    println!(
        "rule updates: {} applied, {rejected} rejected, of {UPDATES} appended",
        micros.len()
    );
    println!(
        "read -> applied: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        at(0.5),
        at(0.99),
        at(1.0)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
