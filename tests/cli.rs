//! End-to-end tests of the `fsql` binary: what a user sees on the terminal and in files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fsql(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fsql"))
        .args(args)
        .output()
        .expect("run fsql")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fresh directory under the target dir for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fsql-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).expect("write file");
    p
}

/// Runs `fsql run PIPELINE`, stops it with SIGTERM after 1.5 s (the savepoint: its last
/// checkpoint), and checks that it stopped cleanly.
fn stop_after_a_while(pipeline: &Path) {
    let child = Command::new(env!("CARGO_BIN_EXE_fsql"))
        .args(["run", pipeline.to_str().expect("path")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("fsql starts");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let out = child.wait_with_output().expect("stopped");
    let stderr = text(&out.stderr);
    assert!(
        out.status.success() && stderr.contains("stopped:"),
        "{stderr}"
    );
}

const THREE_MISTAKES: &str = "CREATE TABLE payments (
  payment_id BIGINT, card_id STRING, amount DOUBLE, ts TIMESTAMP(3)
) WITH ('connector' = 'filesystem', 'path' = 'p.jsonl', 'format' = 'json', 'dead-leter.path' = 'dead.jsonl');

CREATE VIEW v1 AS SELECT payment_id, amout FROM payments;

CREATE VIEW v2 AS SELECT payment_id FROM payments WHERE card_id > 100;

SELECT * FROM v2;
";

#[test]
fn check_reports_every_mistake_with_position_caret_and_suggestion() {
    let dir = scratch("check");
    let file = write(&dir, "bad.fsql", THREE_MISTAKES);
    let out = fsql(&["check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    // Unknown column with a close name.
    assert!(err.contains("column `amout` not found"), "{err}");
    assert!(err.contains("bad.fsql:5:38"), "{err}");
    assert!(err.contains("did you mean `amount`?"), "{err}");
    // Type mismatch in WHERE.
    assert!(err.contains("type mismatch"), "{err}");
    assert!(err.contains("bad.fsql:7:57"), "{err}");
    // Unknown connector option.
    assert!(err.contains("unknown option 'dead-leter.path'"), "{err}");
    assert!(err.contains("bad.fsql:3:76"), "{err}");
    assert!(err.contains("did you mean 'dead-letter.path'?"), "{err}");
    assert!(err.contains("^^^^^"), "{err}");
    assert!(err.contains("3 error(s)"), "{err}");

    let out = fsql(&["check", "--format", "json", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let records: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let records = records.as_array().expect("array");
    assert_eq!(records.len(), 3, "{records:?}");
    let lines: Vec<u64> = records
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert!(
        lines.contains(&3) && lines.contains(&5) && lines.contains(&7),
        "{lines:?}"
    );
    assert!(
        records
            .iter()
            .all(|r| r["severity"] == "error" && r["column"].is_u64() && r["help"].is_string())
    );
}

#[test]
fn compile_is_deterministic_and_other_plan_versions_are_refused() {
    let dir = scratch("compile");
    let file = write(
        &dir,
        "p.fsql",
        "CREATE TABLE e (seq BIGINT) WITH ('connector' = 'datagen', 'fields.seq.kind' = 'sequence', 'fields.seq.start' = '1', 'fields.seq.end' = '5');\nSELECT seq * 2 AS twice FROM e WHERE seq > 2;\n",
    );
    let (a, b) = (dir.join("a.plan"), dir.join("b.plan"));
    for p in [&a, &b] {
        let out = fsql(&["compile", file.to_str().unwrap(), "-o", p.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let (bytes_a, bytes_b) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(bytes_a, bytes_b);

    let out = fsql(&["explain", a.to_str().unwrap()]);
    assert!(out.status.success());
    let explain = text(&out.stdout);
    assert!(
        explain.contains("Source `e`") && explain.contains("Collect"),
        "{explain}"
    );

    let out = fsql(&["run", a.to_str().unwrap(), "--format", "jsonl"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "{\"twice\":6}\n{\"twice\":8}\n{\"twice\":10}\n"
    );

    let bumped = text(&bytes_a).replacen("\"format_version\": 1", "\"format_version\": 999", 1);
    let c = write(&dir, "bumped.plan", &bumped);
    let out = fsql(&["run", c.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("plan format version 999 is not supported") && err.contains("recompile"),
        "{err}"
    );
}

#[test]
fn query_mode_prints_rows_and_reports_malformed_lines() {
    let dir = scratch("query");
    write(
        &dir,
        "in.jsonl",
        "{\"id\": 1, \"name\": \"ann\", \"amount\": 10.5, \"ts\": \"2024-01-01 10:00:00\"}\n\
         not json\n\
         {\"id\": 2, \"name\": \"bob\", \"amount\": 250, \"ts\": \"2024-01-01T10:00:01.5\"}\n\
         {\"id\": 3, \"name\": null, \"amount\": 300, \"ts\": 1704103202000}\n\
         {\"id\": \"x\", \"name\": \"eve\", \"amount\": 1, \"ts\": \"2024-01-01 10:00:03\"}\n",
    );
    let file = write(
        &dir,
        "q.fsql",
        "CREATE TABLE t (id BIGINT, name STRING, amount DOUBLE, ts TIMESTAMP(3))\n\
         WITH ('connector' = 'filesystem', 'path' = 'in.jsonl', 'format' = 'json', 'dead-letter.path' = 'dead.jsonl');\n\
         SELECT id, UPPER(name) AS name, amount * 2 AS doubled, ts FROM t WHERE amount > 100;\n",
    );
    let out = fsql(&["run", file.to_str().unwrap(), "--format", "jsonl"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "{\"id\":2,\"name\":\"BOB\",\"doubled\":500.0,\"ts\":\"2024-01-01 10:00:01.500\"}\n\
         {\"id\":3,\"name\":null,\"doubled\":600.0,\"ts\":\"2024-01-01 10:00:02.000\"}\n"
    );
    let err = text(&out.stderr);
    assert!(err.contains("in.jsonl:2:"), "{err}");
    assert!(err.contains("in.jsonl:5:"), "{err}");
    let dead = std::fs::read_to_string(dir.join("dead.jsonl")).expect("dead letters written");
    assert_eq!(dead.lines().count(), 2, "{dead}");
    assert!(
        dead.contains("\"line\":2") && dead.contains("not json"),
        "{dead}"
    );
}

#[test]
fn an_updating_query_prints_each_change_with_its_kind() {
    let dir = scratch("changelog");
    write(
        &dir,
        "bids.jsonl",
        "{\"auction\": 1, \"price\": 10}\n{\"auction\": 1, \"price\": 20}\n{\"auction\": 2, \"price\": 5}\n",
    );
    // One row per batch: every bid updates its auction on its own.
    let file = write(
        &dir,
        "q.fsql",
        "SET 'table.exec.mini-batch.size' = '1';\n\
         CREATE TABLE bids (auction BIGINT, price BIGINT)\n\
         WITH ('connector' = 'filesystem', 'path' = 'bids.jsonl', 'format' = 'json');\n\
         CREATE TABLE printed (auction BIGINT, mx BIGINT) WITH ('connector' = 'print');\n\
         INSERT INTO printed SELECT auction, MAX(price) FROM bids GROUP BY auction;\n\
         SELECT auction, COUNT(*) AS n FROM bids GROUP BY auction;\n",
    );
    let out = fsql(&["run", file.to_str().unwrap(), "--format", "jsonl"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    // The print sink's lines and the query's rows interleave as batches flow.
    let printed: Vec<&str> = stdout.lines().filter(|l| !l.starts_with('{')).collect();
    assert_eq!(
        printed,
        vec!["+I[1, 10]", "-U[1, 10]", "+U[1, 20]", "+I[2, 5]"],
        "{stdout}"
    );
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with('{')).collect();
    assert_eq!(
        rows,
        vec![
            "{\"op\":\"+I\",\"auction\":1,\"n\":1}",
            "{\"op\":\"-U\",\"auction\":1,\"n\":1}",
            "{\"op\":\"+U\",\"auction\":1,\"n\":2}",
            "{\"op\":\"+I\",\"auction\":2,\"n\":1}",
        ],
        "{stdout}"
    );
    // Updates cannot go to a file: refused before anything runs, in Flink's words.
    let bad = write(
        &dir,
        "bad.fsql",
        "CREATE TABLE bids (auction BIGINT, price BIGINT)\n\
         WITH ('connector' = 'filesystem', 'path' = 'bids.jsonl', 'format' = 'json');\n\
         CREATE TABLE out (auction BIGINT, mx BIGINT)\n\
         WITH ('connector' = 'filesystem', 'path' = 'out.jsonl', 'format' = 'json');\n\
         INSERT INTO out SELECT auction, MAX(price) FROM bids GROUP BY auction;\n",
    );
    let out = fsql(&["check", bad.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "Table sink 'out' doesn't support consuming update changes which is produced by node GroupAggregate(groupBy=[auction], select=[auction, MAX(price)])"
        ) && stderr.contains("bad.fsql:5:"),
        "{stderr}"
    );
}

#[test]
fn a_failing_test_prints_a_diff_and_exits_1() {
    let dir = scratch("test");
    let file = write(
        &dir,
        "t.test.fsql",
        "CREATE TABLE t (id BIGINT, amount DOUBLE) WITH ('connector' = 'filesystem', 'path' = 'x', 'format' = 'json');\n\
         CREATE VIEW big AS SELECT id, amount FROM t WHERE amount > 10;\n\
         TEST passes (INPUT t (id, amount) VALUES (1, 5.0), (2, 50.0), EXPECT big (id) VALUES (2));\n\
         TEST fails (INPUT t (id, amount) VALUES (1, 5.0), (2, 50.0), EXPECT big (id, amount) VALUES (1, 5.0));\n",
    );
    let out = fsql(&["test", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("ok    passes"), "{stdout}");
    assert!(stdout.contains("FAIL  fails"), "{stdout}");
    assert!(
        stdout.contains("- (1, 5)") && stdout.contains("+ (2, 50)"),
        "{stdout}"
    );
    assert!(stdout.contains("1 passed, 1 failed"), "{stdout}");
}

#[test]
fn usage_errors_exit_2() {
    let out = fsql(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let out = fsql(&["check"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn reference_pipeline_prints_deterministic_decisions_on_the_generator() {
    let pipeline = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/pipelines/payments_risk/payments_risk.fsql"
    );
    let first = fsql(&["run", pipeline, "--format", "jsonl"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let stdout = text(&first.stdout);
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(rows.len() > 100, "{} decisions", rows.len());
    assert!(
        rows.iter()
            .all(|r| r["decision"] != "ALLOW" && r["ruleset_version"] == 1)
    );
    for rule in [
        "model_block",
        "model_review",
        "tiny_probe",
        "exotic_large",
        "night_large",
        "declined_large",
    ] {
        assert!(
            rows.iter().any(|r| r["rule"] == rule),
            "rule {rule} never fired"
        );
    }
    assert!(
        rows.iter()
            .any(|r| r["is_fraud"] == true && r["scenario"] == "card_testing")
    );
    // 200,000 generated payments and the 5,000 merchants of the reference table.
    assert!(
        text(&first.stderr).contains("205000 rows in"),
        "{}",
        text(&first.stderr)
    );
    assert!(
        rows.iter()
            .all(|r| r["score"].as_f64().is_some() && r["fraud_gbm_version"] == 1)
    );
    // Interpreted (and scored by LightGBM's C API instead of the compiled model), the same rows
    // come out: the seeded generator makes runs repeatable, and the JIT (filters, projections,
    // the ruleset, the model) changes nothing.
    let second = fsql(&["run", pipeline, "--format", "jsonl", "--no-jit"]);
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert_eq!(
        first.stdout, second.stdout,
        "the same decisions with and without the JIT"
    );
}

/// Every `fsql test` file (the SQL library's included) and every bounded example gives the same results with the JIT on and
/// off.
#[test]
fn every_suite_and_example_gives_the_same_results_with_and_without_the_jit() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["tests/suites", "examples", "pipelines", "stdlib/sql"] {
        let mut stack = vec![root.join(dir)];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).expect("a directory").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.to_string_lossy().ends_with(".test.fsql") {
                    files.push(path);
                }
            }
        }
    }
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    for file in &files {
        let file = file.to_str().expect("a UTF-8 path");
        let jit = fsql(&["test", file]);
        let interpreted = fsql(&["test", file, "--no-jit"]);
        assert!(jit.status.success(), "{file}: {}", text(&jit.stdout));
        assert!(
            interpreted.status.success(),
            "{file} --no-jit: {}",
            text(&interpreted.stdout)
        );
        assert_eq!(text(&jit.stdout), text(&interpreted.stdout), "{file}");
    }
    let example = root.join("examples/filter_json/filter.fsql");
    let example = example.to_str().expect("a UTF-8 path");
    let jit = fsql(&["run", example, "--format", "jsonl"]);
    let interpreted = fsql(&["run", example, "--format", "jsonl", "--no-jit"]);
    assert!(jit.status.success(), "{}", text(&jit.stderr));
    assert!(
        text(&jit.stdout).lines().count() > 2,
        "{}",
        text(&jit.stdout)
    );
    assert_eq!(jit.stdout, interpreted.stdout);
}

#[test]
fn rows_behind_the_watermark_go_to_the_late_data_file_and_none_vanish() {
    let dir = scratch("late");
    write(
        &dir,
        "in.jsonl",
        "{\"id\":1,\"k\":\"a\",\"ts\":\"2024-01-01 00:00:10\"}\n\
         {\"id\":2,\"k\":\"a\",\"ts\":\"2024-01-01 00:00:20\"}\n\
         {\"id\":3,\"k\":\"a\",\"ts\":\"2024-01-01 00:00:05\"}\n\
         {\"id\":4,\"k\":\"a\",\"ts\":\"2024-01-01 00:00:21\"}\n",
    );
    let file = write(
        &dir,
        "late.fsql",
        "SET 'table.exec.mini-batch.size' = '1';\n\
         SET 'pipeline.late-data.path' = 'late-rows.jsonl';\n\
         CREATE TABLE t (id BIGINT, k STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)\n\
         WITH ('connector' = 'filesystem', 'path' = 'in.jsonl', 'format' = 'json');\n\
         SELECT id, COUNT(*) OVER (PARTITION BY k ORDER BY ts) AS n FROM t;\n",
    );
    let out = fsql(&["run", file.to_str().unwrap(), "--format", "jsonl"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "{\"id\":1,\"n\":1}\n{\"id\":2,\"n\":2}\n{\"id\":4,\"n\":3}\n"
    );
    assert!(
        text(&out.stderr).contains("4 rows in, 3 out, 0 malformed, 1 late"),
        "{}",
        text(&out.stderr)
    );
    let late = std::fs::read_to_string(dir.join("late-rows.jsonl")).expect("late rows written");
    assert_eq!(
        late,
        "{\"operator\":\"select#1#over1\",\"row\":{\"id\":3,\"k\":\"a\",\"ts\":\"2024-01-01 00:00:05.000\"}}\n"
    );
}

#[test]
fn late_rows_can_go_to_a_sink_table_the_pipeline_names() {
    let dir = scratch("late-sink");
    write(
        &dir,
        "in.jsonl",
        "{\"id\":1,\"k\":\"a\",\"ts\":\"2024-01-01 00:00:10\"}\n\
         {\"id\":2,\"k\":\"a\",\"ts\":\"2024-01-01 00:00:20\"}\n\
         {\"id\":3,\"k\":\"a\",\"ts\":\"2024-01-01 00:00:05\"}\n",
    );
    let file = write(
        &dir,
        "late.fsql",
        "SET 'table.exec.mini-batch.size' = '1';\n\
         SET 'pipeline.late-data.sink' = 'late_rows';\n\
         CREATE TABLE t (id BIGINT, k STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)\n\
         WITH ('connector' = 'filesystem', 'path' = 'in.jsonl', 'format' = 'json');\n\
         CREATE TABLE late_rows (operator STRING, `row` STRING)\n\
         WITH ('connector' = 'filesystem', 'path' = 'late-rows.jsonl', 'format' = 'json');\n\
         SELECT id, COUNT(*) OVER (PARTITION BY k ORDER BY ts) AS n FROM t;\n",
    );
    let out = fsql(&["run", file.to_str().unwrap(), "--format", "jsonl"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "{\"id\":1,\"n\":1}\n{\"id\":2,\"n\":2}\n"
    );
    assert!(
        text(&out.stderr).contains("1 late in") && text(&out.stderr).contains("table `late_rows`"),
        "{}",
        text(&out.stderr)
    );
    let late = std::fs::read_to_string(dir.join("late-rows.jsonl")).expect("late rows written");
    assert_eq!(
        late,
        "{\"operator\":\"select#1#over1\",\"row\":\"{\\\"id\\\":3,\\\"k\\\":\\\"a\\\",\\\"ts\\\":\\\"2024-01-01 00:00:05.000\\\"}\"}\n"
    );
}

#[test]
fn a_plan_with_a_long_expression_chain_loads_back_and_deeper_ones_are_refused_at_compile_time() {
    let dir = scratch("deep");
    let chain = |n: usize| vec!["seq"; n].join(" + ");
    let source = |n: usize| {
        format!(
            "CREATE TABLE e (seq BIGINT) WITH ('connector' = 'datagen', 'fields.seq.kind' = 'sequence', \
             'fields.seq.start' = '1', 'fields.seq.end' = '2');\nSELECT {} AS total FROM e;\n",
            chain(n)
        )
    };
    let file = write(&dir, "deep.fsql", &source(250));
    let plan = dir.join("deep.plan");
    let out = fsql(&[
        "compile",
        file.to_str().unwrap(),
        "-o",
        plan.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = fsql(&["run", plan.to_str().unwrap(), "--format", "jsonl"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "{\"total\":250}\n{\"total\":500}\n");

    let file = write(&dir, "deeper.fsql", &source(300));
    let out = fsql(&["check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("nested more than 256 levels"),
        "{}",
        text(&out.stderr)
    );
}

/// `fsql check` compares a model file with the `CREATE MODEL` declaring it: a feature count or a
/// feature name that differs is an error at the column, with the model's features as help.
#[test]
fn check_refuses_a_model_whose_features_do_not_match_the_input() {
    let dir = scratch("model-check");
    let model = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/model/tests/models/categorical_binary.txt"
    );
    let declare = |inputs: &str| {
        format!(
            "CREATE MODEL m\n  INPUT ({inputs})\n  OUTPUT (score DOUBLE)\n  WITH ('provider' = 'lightgbm', 'path' = '{model}');\n"
        )
    };
    let renamed = write(
        &dir,
        "renamed.fsql",
        &declare("merchant_cat DOUBLE, amount DOUBLE, channel DOUBLE, noise DOUBLE"),
    );
    let out = fsql(&["check", renamed.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("INPUT column 2 is `amount` but the model's feature 2 is `amount_z`"),
        "{err}"
    );
    assert!(err.contains("renamed.fsql:2:31"), "{err}");
    assert!(err.contains("^^^^^^"), "{err}");
    assert!(
        err.contains("the model's features, in order: merchant_cat, amount_z, channel, noise"),
        "{err}"
    );
    let short = write(
        &dir,
        "short.fsql",
        &declare("merchant_cat DOUBLE, amount_z DOUBLE"),
    );
    let out = fsql(&["check", short.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("declares 2 INPUT columns but"), "{err}");
    assert!(err.contains("has 4 features"), "{err}");
    assert!(err.contains("short.fsql:2:10"), "{err}");
    let fine = write(
        &dir,
        "fine.fsql",
        &declare("merchant_cat DOUBLE, amount_z DOUBLE, channel DOUBLE, noise DOUBLE"),
    );
    let out = fsql(&["check", fine.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// `ML_PREDICT` over 100,000 rows read from a file gives exactly LightGBM's own predictions
/// (its C API on the same rows), for a binary and a multiclass model with categorical splits and
/// NULL features, with the compiled scorer and without it.
#[test]
fn ml_predict_equals_lightgbm_on_100k_rows() {
    const ROWS: usize = 100_000;
    let dir = scratch("ml-predict");
    let models = concat!(env!("CARGO_MANIFEST_DIR"), "/model/tests/models");
    // Rows: merchant_cat (0..40 and fractions, NULL), amount_z, channel (INT), noise.
    let mut state: u64 = 11;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as f64 / (1u64 << 31) as f64
    };
    let mut input = String::new();
    let mut features = Vec::with_capacity(ROWS * 4);
    for id in 0..ROWS {
        let cat = if next() < 0.05 {
            None
        } else {
            Some((next() * 44.0).floor() - 2.0)
        };
        let z = if next() < 0.05 {
            None
        } else {
            Some(next() * 6.0 - 3.0)
        };
        let channel = (next() * 6.0).floor() as i64;
        let noise = next() * 2.0 - 1.0;
        let json = |v: Option<f64>| v.map_or("null".to_string(), |v| format!("{v:?}"));
        input.push_str(&format!(
            "{{\"id\":{id},\"merchant_cat\":{},\"amount_z\":{},\"channel\":{channel},\"noise\":{noise:?}}}\n",
            json(cat),
            json(z)
        ));
        features.extend([
            cat.unwrap_or(f64::NAN),
            z.unwrap_or(f64::NAN),
            channel as f64,
            noise,
        ]);
    }
    write(&dir, "rows.jsonl", &input);
    for (file, outputs) in [
        ("categorical_binary.txt", 1),
        ("categorical_multiclass.txt", 3),
    ] {
        let text_of_model = std::fs::read_to_string(format!("{models}/{file}")).unwrap();
        // LightGBM itself, reading the model file.
        let reference = lightgbm3::Booster::from_string(&text_of_model).unwrap();
        let expected = reference.predict(&features, 4, true).unwrap();
        let columns: Vec<String> = (0..outputs).map(|k| format!("p{k}")).collect();
        let declared: Vec<String> = columns.iter().map(|c| format!("{c} DOUBLE")).collect();
        let pipeline = format!(
            "CREATE TABLE rows (id BIGINT, merchant_cat DOUBLE, amount_z DOUBLE, channel INT, noise DOUBLE)
               WITH ('connector' = 'filesystem', 'path' = 'rows.jsonl', 'format' = 'json');
             CREATE MODEL m INPUT (merchant_cat DOUBLE, amount_z DOUBLE, channel DOUBLE, noise DOUBLE)
               OUTPUT ({}) WITH ('provider' = 'lightgbm', 'path' = '{models}/{file}');
             CREATE TABLE scores (id BIGINT, {}, m_version BIGINT)
               WITH ('connector' = 'filesystem', 'path' = 'scores.jsonl', 'format' = 'json');
             INSERT INTO scores SELECT id, {}, m_version
               FROM ML_PREDICT(TABLE rows, MODEL m, DESCRIPTOR(merchant_cat, amount_z, channel, noise));",
            declared.join(", "),
            declared.join(", "),
            columns.join(", ")
        );
        let path = write(&dir, "predict.fsql", &pipeline);
        let explain = fsql(&["explain", path.to_str().unwrap()]);
        assert!(
            text(&explain.stdout).contains("scored by compiled (Cranelift; equal to LightGBM"),
            "{}",
            text(&explain.stdout)
        );
        for jit in [true, false] {
            let _ = std::fs::remove_file(dir.join("scores.jsonl"));
            let mut args = vec!["run", path.to_str().unwrap()];
            if !jit {
                args.push("--no-jit");
            }
            let out = fsql(&args);
            assert!(out.status.success(), "{}", text(&out.stderr));
            let written = std::fs::read_to_string(dir.join("scores.jsonl")).unwrap();
            let mut got = vec![f64::NAN; ROWS * outputs];
            let mut seen = 0;
            for line in written.lines() {
                let row: serde_json::Value = serde_json::from_str(line).unwrap();
                let id = row["id"].as_u64().unwrap() as usize;
                assert_eq!(row["m_version"], 1);
                for (k, c) in columns.iter().enumerate() {
                    got[id * outputs + k] = row[c].as_f64().unwrap();
                }
                seen += 1;
            }
            assert_eq!(seen, ROWS, "{file}: one score row per input row");
            let differ = (0..got.len())
                .filter(|&k| got[k].to_bits() != expected[k].to_bits())
                .count();
            assert_eq!(
                differ, 0,
                "{file} (jit {jit}): {differ} scores differ from LightGBM's"
            );
        }
    }
}

/// A running pipeline changes rules and models through its control file: a new rule decides from
/// the next batch on, a rule with a type error and a forged or replayed record are rejected with
/// the reason and change nothing, a new model version scores from the next batch on. Every output
/// row is checked against the versions it says decided it: its decision is the one those rules
/// give, its score the one that model gives, so no row was decided by a mix of versions.
#[test]
fn control_updates_change_rules_and_models_of_a_running_pipeline() {
    use std::io::Write as _;
    let dir = scratch("control");
    let models = concat!(env!("CARGO_MANIFEST_DIR"), "/model/tests/models");
    // Keys: `ops` is trusted, `eve` is not.
    for name in ["ops", "eve"] {
        let out = fsql(&[
            "control",
            "keygen",
            "--name",
            name,
            "--key",
            dir.join(format!("{name}.key")).to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let line = text(&out.stdout);
        assert!(
            line.starts_with(&format!("SET 'control.trusted-keys' = '{name}:")),
            "{line}"
        );
        write(&dir, &format!("{name}.pub"), line.trim());
    }
    let trusted = std::fs::read_to_string(dir.join("ops.pub")).unwrap();
    let pipeline = format!(
        "{trusted}
SET 'control.path' = 'control.jsonl';
CREATE TABLE payments (payment_id BIGINT, amount DOUBLE, ts TIMESTAMP(3))
  WITH ('connector' = 'payments-generator', 'number-of-rows' = '12000', 'rows-per-second' = '1000');
CREATE VIEW features AS
SELECT payment_id, amount, CAST(payment_id % 40 AS DOUBLE) AS merchant_cat,
       LN(amount) - 3 AS amount_z, CAST(payment_id % 5 AS DOUBLE) AS channel, 0.25 AS noise
FROM payments;
CREATE MODEL risk INPUT (merchant_cat DOUBLE, amount_z DOUBLE, channel DOUBLE, noise DOUBLE)
  OUTPUT (score DOUBLE) WITH ('provider' = 'lightgbm', 'path' = '{models}/categorical_binary.txt');
CREATE VIEW scored AS
SELECT * FROM ML_PREDICT(TABLE features, MODEL risk, DESCRIPTOR(merchant_cat, amount_z, channel, noise));
CREATE RULESET decisions ON scored KEY payment_id DEFAULT 'ALLOW' PARAMETERS (big_at DOUBLE DEFAULT 1000) (
  RULE big PRIORITY 10 WHEN amount > big_at THEN 'REVIEW');
CREATE TABLE out (payment_id BIGINT, amount DOUBLE, merchant_cat DOUBLE, amount_z DOUBLE,
  channel DOUBLE, noise DOUBLE, score DOUBLE, decision STRING, rule STRING,
  ruleset_version BIGINT, risk_version BIGINT)
  WITH ('connector' = 'filesystem', 'path' = 'out.jsonl', 'format' = 'json');
INSERT INTO out SELECT payment_id, amount, merchant_cat, amount_z, channel, noise, score, decision,
  rule, ruleset_version, risk_version FROM decisions;
"
    );
    let path = write(&dir, "control.fsql", &pipeline);
    let path = path.to_str().unwrap();
    let ops = dir.join("ops.key");
    let eve = dir.join("eve.key");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fsql"))
        .args(["run", path])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start fsql run");
    let rows_written =
        || std::fs::read_to_string(dir.join("out.jsonl")).map_or(0, |t| t.lines().count());
    let wait_until = |what: &str, f: &dyn Fn() -> bool| {
        let start = std::time::Instant::now();
        while !f() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "timed out waiting for {what}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    wait_until("the first rows", &|| rows_written() >= 500);
    let push = |update: &str, name: &str, key: &Path| {
        let file = write(&dir, "update.json", update);
        fsql(&[
            "control",
            "push",
            "--plan",
            path,
            "--ruleset",
            "decisions",
            "--key-name",
            name,
            "--key",
            key.to_str().unwrap(),
            file.to_str().unwrap(),
        ])
    };
    let append = |record: &str| {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("control.jsonl"))
            .unwrap();
        writeln!(f, "{}", record.trim()).unwrap();
    };
    let sign = |update: &str, name: &str, key: &Path| {
        let file = write(&dir, "signed.json", update);
        let out = fsql(&[
            "control",
            "sign",
            "--key-name",
            name,
            "--key",
            key.to_str().unwrap(),
            file.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    // 1. A new rule, checked and published by `fsql control push`.
    let tiny = r#"{"op": "add_rule", "version": 2, "rule": {"name": "tiny", "priority": 5, "when": "amount < 5", "then": "BLOCK"}}"#;
    let out = push(tiny, "ops", &ops);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_until("version 2 in the output", &|| {
        std::fs::read_to_string(dir.join("out.jsonl"))
            .is_ok_and(|t| t.contains("\"ruleset_version\":2"))
    });
    // 2. A rule with a type error: push refuses it; signed and appended anyway, the runtime rejects it.
    let bad = r#"{"op": "add_rule", "ruleset": "decisions", "version": 3, "rule": {"name": "bad", "priority": 1, "when": "amount > 'a lot'", "then": "BLOCK"}}"#;
    let out = push(bad, "ops", &ops);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("update refused: rule `bad`"),
        "{}",
        text(&out.stderr)
    );
    append(&sign(bad, "ops", &ops));
    // 3. A forged record (eve's key under ops' name) and an unknown key.
    let takeover = r#"{"op": "remove_rule", "ruleset": "decisions", "version": 9, "rule": "big"}"#;
    append(&sign(takeover, "ops", &eve));
    append(&sign(takeover, "eve", &eve));
    // 4. The first update again: a replay.
    let published = std::fs::read_to_string(dir.join("control.jsonl")).unwrap();
    append(published.lines().next().unwrap());
    // 5. A new model version.
    let model = format!(
        r#"{{"op": "set_model", "model": "risk", "version": 2, "path": "{models}/zero_as_missing.txt"}}"#
    );
    let out = push(&model, "ops", &ops);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // 6. A parameter: the big-amount threshold.
    let threshold = r#"{"op": "set_parameter", "version": 3, "parameter": "big_at", "value": 500}"#;
    let out = push(threshold, "ops", &ops);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let acks_path = dir.join("control.jsonl.acks");
    wait_until("seven acknowledgements", &|| {
        std::fs::read_to_string(&acks_path).is_ok_and(|t| t.lines().count() >= 7)
    });
    let status = child.wait().expect("fsql run ends");
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");

    let acks: Vec<serde_json::Value> = std::fs::read_to_string(&acks_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let status_of = |i: usize| {
        (
            acks[i]["status"].as_str().unwrap().to_string(),
            acks[i]["reason"].as_str().unwrap_or("").to_string(),
        )
    };
    assert_eq!(acks.len(), 7, "{acks:?}");
    assert_eq!(status_of(0).0, "applied", "{acks:?}");
    assert!(status_of(1).1.contains("rule `bad`"), "{acks:?}");
    assert!(status_of(2).1.contains("bad signature"), "{acks:?}");
    assert!(
        status_of(3).1.contains("key `eve` is not trusted"),
        "{acks:?}"
    );
    assert!(
        status_of(4)
            .1
            .contains("not newer than the version in force"),
        "{acks:?}"
    );
    assert_eq!(status_of(5).0, "applied", "{acks:?}");
    assert_eq!(acks[5]["target"], "risk");
    assert_eq!(status_of(6).0, "applied", "{acks:?}");
    assert_eq!(acks[6]["op"], "set_parameter");

    // Every row against the versions it names.
    let mut scorers = std::collections::BTreeMap::new();
    for (version, file) in [(1, "categorical_binary.txt"), (2, "zero_as_missing.txt")] {
        let model_text = std::fs::read_to_string(format!("{models}/{file}")).unwrap();
        scorers.insert(
            version,
            lightgbm3::Booster::from_string(&model_text).unwrap(),
        );
    }
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("out.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 12000);
    let (mut last_rules, mut last_model) = (1, 1);
    for row in &rows {
        let rules = row["ruleset_version"].as_i64().unwrap();
        let model = row["risk_version"].as_i64().unwrap();
        assert!(
            rules >= last_rules && model >= last_model,
            "versions only move forward: {row}"
        );
        (last_rules, last_model) = (rules, model);
        let amount = row["amount"].as_f64().unwrap();
        let big_at = if rules >= 3 { 500.0 } else { 1000.0 };
        let expected = if rules >= 2 && amount < 5.0 {
            ("BLOCK", Some("tiny"))
        } else if amount > big_at {
            ("REVIEW", Some("big"))
        } else {
            ("ALLOW", None)
        };
        assert_eq!(
            (row["decision"].as_str().unwrap(), row["rule"].as_str()),
            expected,
            "{row}"
        );
        let features: Vec<f64> = ["merchant_cat", "amount_z", "channel", "noise"]
            .iter()
            .map(|c| row[*c].as_f64().unwrap())
            .collect();
        let score = scorers[&model].predict(&features, 4, true).unwrap();
        assert_eq!(
            row["score"].as_f64().unwrap().to_bits(),
            score[0].to_bits(),
            "{row}"
        );
    }
    assert_eq!(
        (last_rules, last_model),
        (3, 2),
        "every update reached the output"
    );
    assert!(
        rows.iter().any(|r| r["rule"] == "tiny"),
        "the new rule fired"
    );
    assert!(
        rows.iter().any(|r| r["ruleset_version"] == 1),
        "rows before the update kept version 1"
    );
}

/// `examples/rule_change`, by the commands its header gives (run from a copy of the example's
/// directory): a key, the run, the pushed rule change. The update is applied and acknowledged, and
/// every decision is the one the version of the rules it names gives: REVIEW over 1,000 before,
/// BLOCK over 500 after.
#[test]
fn the_rule_change_example_decides_by_the_new_rule_after_the_push() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rule_change");
    let dir = scratch("rule-change-example");
    for file in ["rule_change.fsql", "block_large.json"] {
        std::fs::copy(example.join(file), dir.join(file)).expect("copy the example");
    }
    let in_dir = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_fsql"))
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("run fsql")
    };
    // fsql control keygen --name ops --key ops.key > trusted_keys.fsql
    let keygen = in_dir(&["control", "keygen", "--name", "ops", "--key", "ops.key"]);
    assert!(keygen.status.success(), "{}", text(&keygen.stderr));
    write(&dir, "trusted_keys.fsql", &text(&keygen.stdout));
    // fsql run rule_change.fsql &
    let mut run = Command::new(env!("CARGO_BIN_EXE_fsql"))
        .args(["run", "rule_change.fsql"])
        .current_dir(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start fsql run");
    let start = std::time::Instant::now();
    while std::fs::read_to_string(dir.join("decisions.jsonl")).map_or(0, |t| t.lines().count())
        < 1000
    {
        let ended = run.try_wait().expect("poll fsql run").is_some();
        if ended || start.elapsed() > std::time::Duration::from_secs(30) {
            let _ = run.kill();
            let mut stderr = String::new();
            std::io::Read::read_to_string(run.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            panic!("no decisions after {:?}: {stderr}", start.elapsed());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // fsql control push --plan rule_change.fsql --ruleset decisions --key-name ops --key ops.key block_large.json
    let push = in_dir(&[
        "control",
        "push",
        "--plan",
        "rule_change.fsql",
        "--ruleset",
        "decisions",
        "--key-name",
        "ops",
        "--key",
        "ops.key",
        "block_large.json",
    ]);
    assert!(push.status.success(), "{}", text(&push.stderr));
    // wait; cat control.jsonl.acks
    let status = run.wait().expect("fsql run ends");
    let mut stderr = String::new();
    std::io::Read::read_to_string(run.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    let acks = std::fs::read_to_string(dir.join("control.jsonl.acks")).expect("acks written");
    let ack: serde_json::Value = serde_json::from_str(acks.trim()).expect("one ack");
    assert_eq!(
        (&ack["status"], &ack["op"], &ack["version"]),
        (
            &serde_json::json!("applied"),
            &serde_json::json!("replace_rule"),
            &serde_json::json!(2)
        ),
        "{acks}"
    );
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("decisions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 20000);
    let mut decided_by = [0, 0];
    for row in &rows {
        let version = row["ruleset_version"].as_i64().unwrap();
        let amount = row["amount"].as_f64().unwrap();
        let expected = match version {
            1 if amount > 1000.0 => ("REVIEW", Some("large")),
            2 if amount > 500.0 => ("BLOCK", Some("large")),
            1 | 2 if row["card_cnt_10m"].as_i64().unwrap() >= 5 => ("REVIEW", Some("busy_card")),
            1 | 2 => ("ALLOW", None),
            _ => panic!("an unknown version: {row}"),
        };
        assert_eq!(
            (row["decision"].as_str().unwrap(), row["rule"].as_str()),
            expected,
            "{row}"
        );
        decided_by[version as usize - 1] += 1;
    }
    assert!(decided_by[0] >= 1000 && decided_by[1] > 0, "{decided_by:?}");
    // The new rule decided: a payment between 500 and 1,000 was blocked.
    assert!(
        rows.iter()
            .any(|r| r["decision"] == "BLOCK" && r["amount"].as_f64().is_some_and(|a| a <= 1000.0))
    );
}

/// Compiled code reaches beyond Calc: aggregate arguments, join conditions, pattern conditions
/// and measures, with DECIMAL sums, LIKE, TIMESTAMP + INTERVAL and stdlib calls. `explain` marks
/// each, and a run gives the same rows with the JIT on and off.
#[test]
fn explain_marks_compiled_expressions_in_every_operator_and_both_ways_agree() {
    let dir = scratch("jit-everywhere");
    write(&dir, "payments.jsonl", PAYMENTS);
    write(&dir, "limits.jsonl", LIMITS);
    let file = write(&dir, "all.fsql", EVERY_OPERATOR);
    let file = file.to_str().expect("a UTF-8 path");
    let explain = text(&fsql(&["explain", file]).stdout);
    for line in [
        "over$0 := SUM(CASE WHEN ($1 < 2.0) THEN 1 ELSE 0 END) RANGE 600000 ms PRECEDING   [compiled]",
        "total := ($2 + $3)   [compiled]",
        "declined := $4 LIKE 'DECL%'   [compiled]",
        "declined_any_case := $4 ILIKE 'decl%'   [interpreted: ILIKE is interpreted (Unicode case folding)]",
        "one_minute_later := ($5 + INTERVAL 60000 MILLISECOND)   [compiled]",
        "root := SQRT($1)   [compiled]",
        "measure doubled := ($6 * CAST(2 AS DOUBLE))   [compiled]",
        "measure ln_large := LN($6)   [compiled]",
        "condition: ($1 > ($4 * 0.5))   [compiled]",
    ] {
        assert!(explain.contains(line), "missing `{line}` in\n{explain}");
    }
    let mut outputs = Vec::new();
    for no_jit in [false, true] {
        let mut args = vec!["run", file];
        if no_jit {
            args.push("--no-jit");
        }
        for sink in ["f_out", "t_out", "l_out"] {
            let _ = std::fs::remove_file(dir.join(format!("{sink}.jsonl")));
        }
        let out = fsql(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let read = |sink: &str| {
            std::fs::read_to_string(dir.join(format!("{sink}.jsonl"))).expect("sink written")
        };
        outputs.push([read("f_out"), read("t_out"), read("l_out")]);
    }
    assert_eq!(outputs[0], outputs[1]);
    let [features, testing, over_limit] = &outputs[0];
    // 99999999.99 + 0.01 still fits DECIMAL(11, 2); a NULL price gives a NULL total.
    assert!(
        features.contains("\"total\":\"100000000.00\""),
        "{features}"
    );
    assert!(features.contains("\"total\":null"), "{features}");
    // LIKE 'DECL%' holds for DECLINED and DECL%; ILIKE 'decl%' for decl_soft too.
    assert_eq!(
        features.matches("\"declined\":true").count(),
        2,
        "{features}"
    );
    assert_eq!(
        features.matches("\"declined_any_case\":true").count(),
        3,
        "{features}"
    );
    assert!(
        features.contains("\"one_minute_later\":\"2024-01-01 10:01:00.000\""),
        "{features}"
    );
    assert_eq!(features.lines().count(), 6, "{features}");
    assert_eq!(
        testing,
        "{\"card_id\":\"c1\",\"doubled\":1900.0,\"ln_large\":6.856461984594587}\n"
    );
    assert_eq!(over_limit.lines().count(), 2, "{over_limit}");
}

const EVERY_OPERATOR: &str = r#"CREATE TABLE payments (
  card_id STRING, amount DOUBLE, price DECIMAL(10, 2), fee DECIMAL(10, 2), status STRING, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'payments.jsonl', 'format' = 'json');
CREATE TABLE limits (
  card_id STRING, limit_amt DOUBLE, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'limits.jsonl', 'format' = 'json');
CREATE VIEW features AS
SELECT card_id, amount, ts,
  price + fee AS total,
  status LIKE 'DECL%' AS declined,
  status ILIKE 'decl%' AS declined_any_case,
  ts + INTERVAL '1' MINUTE AS one_minute_later,
  SQRT(amount) AS root,
  SUM(CASE WHEN amount < 2 THEN 1 ELSE 0 END) OVER (
    PARTITION BY card_id ORDER BY ts RANGE BETWEEN INTERVAL '10' MINUTE PRECEDING AND CURRENT ROW) AS tiny_10m
FROM payments;
CREATE VIEW testing AS
SELECT * FROM payments MATCH_RECOGNIZE (
  PARTITION BY card_id ORDER BY ts
  MEASURES L.amount * 2 AS doubled, LN(L.amount) AS ln_large
  PATTERN (S{3,} L) WITHIN INTERVAL '10' MINUTE
  DEFINE S AS S.amount < 2, L AS L.amount > 500);
CREATE VIEW over_limit AS
SELECT p.card_id, p.amount FROM payments p JOIN limits l ON p.card_id = l.card_id
  AND p.ts BETWEEN l.ts - INTERVAL '1' MINUTE AND l.ts AND p.amount > l.limit_amt * 0.5;
CREATE TABLE f_out (card_id STRING, amount DOUBLE, ts TIMESTAMP(3), total DECIMAL(11, 2), declined BOOLEAN,
  declined_any_case BOOLEAN, one_minute_later TIMESTAMP(3), root DOUBLE, tiny_10m BIGINT) WITH ('connector' = 'filesystem', 'path' = 'f_out.jsonl', 'format' = 'json');
CREATE TABLE t_out (card_id STRING, doubled DOUBLE, ln_large DOUBLE) WITH ('connector' = 'filesystem', 'path' = 't_out.jsonl', 'format' = 'json');
CREATE TABLE l_out (card_id STRING, amount DOUBLE) WITH ('connector' = 'filesystem', 'path' = 'l_out.jsonl', 'format' = 'json');
INSERT INTO f_out SELECT * FROM features;
INSERT INTO t_out SELECT * FROM testing;
INSERT INTO l_out SELECT * FROM over_limit;
"#;

const PAYMENTS: &str = r#"{"card_id": "c1", "amount": 1.0, "price": 12.5, "fee": 0.5, "status": "DECLINED", "ts": "2024-01-01 10:00:00"}
{"card_id": "c1", "amount": 0.5, "price": 99999999.99, "fee": 0.01, "status": "APPROVED", "ts": "2024-01-01 10:01:00"}
{"card_id": "c1", "amount": 1.5, "price": 10.0, "fee": 1.0, "status": "decl_soft", "ts": "2024-01-01 10:02:00"}
{"card_id": "c1", "amount": 950.0, "price": 950.0, "fee": 2.0, "status": "APPROVED", "ts": "2024-01-01 10:03:00"}
{"card_id": "c2", "amount": 4.0, "price": -5.25, "fee": 0.25, "status": "DECL%", "ts": "2024-01-01 10:03:30"}
{"card_id": "c2", "amount": 700.0, "price": null, "fee": 1.0, "status": "APPROVED", "ts": "2024-01-01 10:04:00"}
"#;

const LIMITS: &str = r#"{"card_id": "c1", "limit_amt": 1000.0, "ts": "2024-01-01 10:03:30"}
{"card_id": "c2", "limit_amt": 100.0, "ts": "2024-01-01 10:04:10"}
"#;

/// Issue 4's absence extension end to end: on the generator's authorisations and captures, the
/// "authorisation not captured within 10 minutes" query reports exactly the injected
/// `auth_without_capture` authorisations (those at least the longest capture delay before the
/// stream's end, whose captures are all in the stream).
#[test]
fn an_absence_pattern_reports_exactly_the_authorisations_never_captured() {
    let dir = scratch("absence");
    let table = "CREATE TABLE payments (
  payment_id BIGINT, card_id STRING, status STRING, kind STRING, auth_id BIGINT, scenario STRING,
  ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH ('connector' = 'payments-generator', 'number-of-rows' = '300000', 'cards' = '10000',
  'events-per-second-of-event-time' = '100', 'auth-capture' = 'true', 'uncaptured-rate' = '0.002');
";
    // 300,000 rows at 100 per second of event time span 50 minutes; captures come within 5.
    let cutoff = "TIMESTAMP '2024-01-01 00:45:00'";
    let detected = write(
        &dir,
        "detected.fsql",
        &format!(
            "{table}
CREATE VIEW uncaptured AS
SELECT *
FROM payments
  MATCH_RECOGNIZE (
    PARTITION BY card_id
    ORDER BY ts
    MEASURES A.payment_id AS auth, A.scenario AS scenario, A.ts AS auth_ts, TIMED_OUT() AS timed_out
    ONE ROW PER MATCH
    AFTER MATCH SKIP TO NEXT ROW
    PATTERN (A X*? C) WITHIN INTERVAL '10' MINUTE EMIT TIMEOUTS
    DEFINE
      A AS A.kind = 'AUTH' AND A.status = 'APPROVED',
      C AS C.kind = 'CAPTURE' AND C.auth_id = A.payment_id
  ) AS T;
SELECT auth, scenario FROM uncaptured WHERE timed_out AND auth_ts < {cutoff};
"
        ),
    );
    let injected = write(
        &dir,
        "injected.fsql",
        &format!(
            "{table}
SELECT payment_id AS auth, scenario FROM payments
WHERE scenario = 'auth_without_capture' AND ts < {cutoff};
"
        ),
    );
    let lines = |file: &Path| {
        let out = fsql(&["run", file.to_str().unwrap(), "--format", "jsonl"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let mut lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    let injected = lines(&injected);
    let detected = lines(&detected);
    assert!(injected.len() >= 100, "only {} injected", injected.len());
    assert!(
        injected.iter().all(|l| l.contains("auth_without_capture")),
        "{injected:?}"
    );
    assert_eq!(detected, injected);
}

/// The savepoint and upgrade acceptance: a pipeline stopped with SIGTERM leaves a final
/// checkpoint; the same pipeline with a new source column, a new feature view reading it and a
/// changed rule resumes from it and gives every existing feature exactly as an uninterrupted run
/// does; a change to a stateful view is refused with a message naming the operator, unless the
/// user allows dropping its state.
#[test]
fn a_changed_pipeline_resumes_from_a_savepoint_and_an_incompatible_change_is_refused() {
    let dir = scratch("savepoint");
    let v1 = "SET 'pipeline.name' = 'upgrade';
SET 'execution.checkpointing.interval' = '300 ms';
SET 'execution.checkpointing.dir' = 'chk';
CREATE TABLE payments (payment_id BIGINT, card_id STRING, device_id STRING, amount DOUBLE, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH ('connector' = 'payments-generator', 'number-of-rows' = '60000', 'rows-per-second' = '20000', 'seed' = '3');
CREATE VIEW card_1h AS
SELECT payment_id, card_id, amount, ts, COUNT(*) OVER w AS card_n_1h, SUM(amount) OVER w AS card_sum_1h
FROM payments WINDOW w AS (PARTITION BY card_id ORDER BY ts RANGE BETWEEN INTERVAL '1' HOUR PRECEDING AND CURRENT ROW);
CREATE RULESET decide ON card_1h KEY payment_id DEFAULT 'ALLOW' (
  RULE busy PRIORITY 10 WHEN card_n_1h > 5 THEN 'REVIEW');
CREATE TABLE out (payment_id BIGINT, card_id STRING, card_n_1h BIGINT, card_sum_1h DOUBLE, decision STRING)
WITH ('connector' = 'filesystem', 'path' = 'out.jsonl', 'format' = 'json');
INSERT INTO out SELECT payment_id, card_id, card_n_1h, card_sum_1h, decision FROM decide;
";
    // The second version: a changed threshold, a new source column (in the middle of the table,
    // so the columns after it move) and a new view that reads it.
    let v2 = v1
        .replace("card_n_1h > 5 THEN", "card_n_1h > 8 THEN")
        .replace(
            "device_id STRING, amount DOUBLE",
            "device_id STRING, merchant_id STRING, amount DOUBLE",
        )
        + "CREATE VIEW device_10m AS
SELECT payment_id, device_id, merchant_id, COUNT(*) OVER w AS device_n_10m
FROM payments WINDOW w AS (PARTITION BY device_id ORDER BY ts RANGE BETWEEN INTERVAL '10' MINUTE PRECEDING AND CURRENT ROW);
CREATE TABLE out2 (payment_id BIGINT, merchant_id STRING, device_n_10m BIGINT) WITH ('connector' = 'filesystem', 'path' = 'out2.jsonl', 'format' = 'json');
INSERT INTO out2 SELECT payment_id, merchant_id, device_n_10m FROM device_10m;
";
    assert!(v2.contains("merchant_id STRING, amount"));
    let v3 = v2.replace("INTERVAL '1' HOUR PRECEDING", "INTERVAL '2' HOUR PRECEDING");
    let rows = |dir: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join("out.jsonl"))
            .expect("output")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect()
    };
    // The uninterrupted run of the first version.
    let reference = dir.join("reference");
    std::fs::create_dir_all(&reference).expect("dir");
    let out = fsql(&[
        "run",
        write(&reference, "p.fsql", v1).to_str().expect("path"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let want = rows(&reference);
    assert_eq!(want.len(), 60_000);

    // The first version, stopped (SIGTERM) after about a second: its savepoint.
    let run = dir.join("run");
    std::fs::create_dir_all(&run).expect("dir");
    let p1 = write(&run, "p1.fsql", v1);
    stop_after_a_while(&p1);
    let before = rows(&run).len();
    assert!(
        before > 0 && before < 60_000,
        "stopped part-way: {before} rows"
    );

    // The second version resumes from it: features of existing cards as if never stopped.
    let out = fsql(&["run", write(&run, "p2.fsql", &v2).to_str().expect("path")]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("resumed from chk-"), "{stderr}");
    let got = rows(&run);
    assert_eq!(got.len(), want.len(), "every payment once");
    let features = |r: &serde_json::Value| {
        (
            r["payment_id"].clone(),
            r["card_n_1h"].clone(),
            r["card_sum_1h"].clone(),
        )
    };
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(features(g), features(w));
    }
    // The changed threshold decides the rows after the savepoint only.
    let changed: Vec<usize> = (0..got.len())
        .filter(|&i| got[i]["decision"] != want[i]["decision"])
        .collect();
    assert!(!changed.is_empty(), "the new rule took effect");
    assert!(
        changed.iter().all(|&i| i >= before),
        "rows before the savepoint keep their decisions"
    );
    let out2 = std::fs::read_to_string(run.join("out2.jsonl")).expect("the new view ran");
    let first: serde_json::Value =
        serde_json::from_str(out2.lines().next().expect("a row")).expect("json");
    assert!(
        first["merchant_id"].is_string(),
        "the new column is read: {first}"
    );

    // A change to the OVER view's frame cannot reuse its state.
    let p3 = write(&run, "p3.fsql", &v3);
    let out = fsql(&["run", p3.to_str().expect("path")]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "refused");
    assert!(
        stderr.contains("`card_1h#over1` (over) is defined differently")
            && stderr.contains("--allow-non-restored-state"),
        "{stderr}"
    );
    let out = fsql(&[
        "run",
        p3.to_str().expect("path"),
        "--allow-non-restored-state",
    ]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("it starts without state"), "{stderr}");
}

/// `SELECT *` views pass a new source column through the stateful operators below them: an
/// OVER aggregation (rows waiting for the watermark included), a MATCH_RECOGNIZE over all
/// columns, an interval join and a Window TopN keep rows of the old columns, a window
/// aggregation keys and accumulators. Their checkpoint still restores
/// — the rows they stored before hold NULL in the new column — and every output equals an
/// uninterrupted run's. An operator that reads the new column in its state is still refused.
#[test]
fn stateful_select_star_views_resume_across_a_new_source_column() {
    let dir = scratch("widen");
    let v1 = "SET 'pipeline.name' = 'widen';
SET 'execution.checkpointing.interval' = '300 ms';
SET 'execution.checkpointing.dir' = 'chk';
CREATE TABLE payments (payment_id BIGINT, card_id STRING, device_id STRING, amount DOUBLE, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH ('connector' = 'payments-generator', 'number-of-rows' = '60000', 'rows-per-second' = '20000', 'seed' = '3',
  'cards' = '2000');
CREATE VIEW card_1h AS
SELECT *, COUNT(*) OVER w AS card_n_1h, SUM(amount) OVER w AS card_sum_1h
FROM payments WINDOW w AS (PARTITION BY card_id ORDER BY ts RANGE BETWEEN INTERVAL '1' HOUR PRECEDING AND CURRENT ROW);
CREATE TABLE out (payment_id BIGINT, card_n_1h BIGINT, card_sum_1h DOUBLE)
WITH ('connector' = 'filesystem', 'path' = 'out.jsonl', 'format' = 'json');
INSERT INTO out SELECT payment_id, card_n_1h, card_sum_1h FROM card_1h;
CREATE VIEW rising AS SELECT * FROM card_1h MATCH_RECOGNIZE (
  PARTITION BY card_id ORDER BY ts
  MEASURES A.payment_id AS first_id, LAST(B.payment_id) AS last_id, COUNT(B.*) AS n
  ONE ROW PER MATCH AFTER MATCH SKIP PAST LAST ROW
  PATTERN (A B{2,}) WITHIN INTERVAL '1' HOUR
  DEFINE B AS B.amount > PREV(B.amount));
CREATE TABLE out_mr (card_id STRING, first_id BIGINT, last_id BIGINT, n BIGINT)
WITH ('connector' = 'filesystem', 'path' = 'out_mr.jsonl', 'format' = 'json');
INSERT INTO out_mr SELECT card_id, first_id, last_id, n FROM rising;
CREATE VIEW again AS SELECT a.payment_id AS a_id, b.payment_id AS b_id FROM card_1h a JOIN card_1h b
  ON a.card_id = b.card_id AND b.ts > a.ts AND b.ts <= a.ts + INTERVAL '1' MINUTE;
CREATE TABLE out_join (a_id BIGINT, b_id BIGINT)
WITH ('connector' = 'filesystem', 'path' = 'out_join.jsonl', 'format' = 'json');
INSERT INTO out_join SELECT a_id, b_id FROM again;
CREATE TABLE out_win (card_id STRING, window_start TIMESTAMP(3), n BIGINT, top_id BIGINT)
WITH ('connector' = 'filesystem', 'path' = 'out_win.jsonl', 'format' = 'json');
INSERT INTO out_win SELECT card_id, window_start, COUNT(*), MAX(payment_id)
FROM TABLE(TUMBLE(TABLE card_1h, DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY card_id, window_start, window_end;
CREATE TABLE out_top (card_id STRING, window_start TIMESTAMP(3), payment_id BIGINT)
WITH ('connector' = 'filesystem', 'path' = 'out_top.jsonl', 'format' = 'json');
INSERT INTO out_top SELECT card_id, window_start, payment_id FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end, card_id ORDER BY amount DESC) AS rn
  FROM TABLE(TUMBLE(TABLE card_1h, DESCRIPTOR(ts), INTERVAL '10' SECOND))
) WHERE rn <= 1;
";
    // A new source column in the middle: every column after it moves.
    let v2 = v1.replace(
        "device_id STRING, amount DOUBLE",
        "device_id STRING, merchant_id STRING, amount DOUBLE",
    );
    assert!(v2.contains("merchant_id STRING, amount"));
    let lines = |dir: &Path, file: &str| -> Vec<String> {
        let mut l: Vec<String> = std::fs::read_to_string(dir.join(file))
            .expect("output")
            .lines()
            .map(str::to_string)
            .collect();
        l.sort();
        l
    };
    let reference = dir.join("reference");
    std::fs::create_dir_all(&reference).expect("dir");
    let out = fsql(&[
        "run",
        write(&reference, "p.fsql", v1).to_str().expect("path"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(lines(&reference, "out.jsonl").len(), 60_000);
    assert!(
        !lines(&reference, "out_mr.jsonl").is_empty(),
        "the pattern matches"
    );
    assert!(
        !lines(&reference, "out_join.jsonl").is_empty(),
        "the join joins"
    );

    // Every output of a resumed run equals the uninterrupted run's.
    let same_outputs = |run: &Path, label: &str| {
        for file in [
            "out.jsonl",
            "out_mr.jsonl",
            "out_join.jsonl",
            "out_win.jsonl",
            "out_top.jsonl",
        ] {
            assert_eq!(lines(run, file), lines(&reference, file), "{label}: {file}");
        }
    };

    let run = dir.join("run");
    std::fs::create_dir_all(&run).expect("dir");
    stop_after_a_while(&write(&run, "p1.fsql", v1));
    let before = lines(&run, "out.jsonl").len();
    assert!(before > 0 && before < 60_000, "stopped part-way: {before}");

    // Without the widening every stateful operator here would be refused as changed.
    let out = fsql(&["run", write(&run, "p2.fsql", &v2).to_str().expect("path")]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("resumed from chk-")
            && stderr.contains("input gained column(s) `merchant_id`"),
        "{stderr}"
    );
    same_outputs(&run, "memory");

    // The same upgrade with state in RocksDB and 100 of the 2,000 cards resident per operator:
    // rows spilled before the new column are read back by name, with it NULL.
    let in_rocksdb = |v: &str| {
        format!(
            "SET 'state.backend' = 'rocksdb';\nSET 'state.backend.rocksdb.resident-keys' = '100';\n{v}"
        )
    };
    let run = dir.join("run-rocksdb");
    std::fs::create_dir_all(&run).expect("dir");
    stop_after_a_while(&write(&run, "p1.fsql", &in_rocksdb(v1)));
    let out = fsql(&[
        "run",
        write(&run, "p2.fsql", &in_rocksdb(&v2))
            .to_str()
            .expect("path"),
    ]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("input gained column(s) `merchant_id`"),
        "{stderr}"
    );
    same_outputs(&run, "rocksdb");
    let run = dir.join("run");

    // An aggregate over the new column changes the OVER node's state: refused.
    let v3 = v2.replace(
        "SUM(amount) OVER w AS card_sum_1h",
        "SUM(amount) OVER w AS card_sum_1h, COUNT(merchant_id) OVER w AS m",
    );
    let out = fsql(&["run", write(&run, "p3.fsql", &v3).to_str().expect("path")]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "refused");
    assert!(
        stderr.contains("`card_1h#over1` (over) is defined differently"),
        "{stderr}"
    );
}

/// Late rows go to a file outside the operators' state. A run killed between two checkpoints
/// wrote late rows its restart reads again; the restore cuts the file back to its length at the
/// checkpoint, so the file ends up as an uninterrupted run's, line for line.
#[test]
fn a_killed_run_writes_each_late_row_once() {
    let dir = scratch("late-rows-restore");
    let pipeline = "SET 'pipeline.name' = 'late';
SET 'execution.checkpointing.interval' = '200 ms';
SET 'execution.checkpointing.dir' = 'chk';
SET 'pipeline.late-data.path' = 'late.jsonl';
CREATE TABLE payments (payment_id BIGINT, card_id STRING, amount DOUBLE, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH ('connector' = 'payments-generator', 'number-of-rows' = '1200000', 'seed' = '5',
  'out-of-orderness' = '10 s', 'out-of-order-fraction' = '0.02', 'rows-per-second' = '300000');
CREATE TABLE out (payment_id BIGINT, n BIGINT) WITH ('connector' = 'filesystem', 'path' = 'out.jsonl', 'format' = 'json');
INSERT INTO out SELECT payment_id, COUNT(*) OVER w FROM payments
WINDOW w AS (PARTITION BY card_id ORDER BY ts RANGE BETWEEN INTERVAL '1' HOUR PRECEDING AND CURRENT ROW);
";
    let read = |dir: &Path, name: &str| std::fs::read(dir.join(name)).expect(name);
    let reference = dir.join("reference");
    std::fs::create_dir_all(&reference).expect("dir");
    let out = fsql(&[
        "run",
        write(&reference, "p.fsql", pipeline)
            .to_str()
            .expect("path"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let want = read(&reference, "late.jsonl");
    assert!(want.len() > 100_000, "the reference run has late rows");

    // Killed once a checkpoint is complete and late rows have been written, then restarted
    // (checkpoints complete in the background, so the first may be done only well into the run;
    // the input is paced, 4 s of it, so that on a busy machine the run is still part-way then).
    let run = dir.join("run");
    std::fs::create_dir_all(&run).expect("dir");
    let p = write(&run, "p.fsql", pipeline);
    let mut child = Command::new(env!("CARGO_BIN_EXE_fsql"))
        .args(["run", p.to_str().expect("path")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("fsql starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !(run.join("chk/chk-1").exists()
        && std::fs::metadata(run.join("late.jsonl")).is_ok_and(|m| m.len() > 0))
    {
        assert!(std::time::Instant::now() < deadline, "no checkpoint");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "killed before it ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    child.kill().expect("SIGKILL");
    child.wait().expect("killed");
    let at_kill = read(&run, "late.jsonl").len();
    assert!(at_kill < want.len(), "killed part-way: {at_kill} bytes");

    let out = fsql(&["run", p.to_str().expect("path")]);
    let stderr = text(&out.stderr);
    assert!(
        out.status.success() && stderr.contains("resumed from chk-"),
        "{stderr}"
    );
    let got = read(&run, "late.jsonl");
    assert_eq!(got.len(), want.len(), "no late row lost or written twice");
    assert!(got == want, "the same late rows in the same order");
    assert!(
        read(&run, "out.jsonl") == read(&reference, "out.jsonl"),
        "the same output"
    );
}

/// The RocksDB state backend end to end: a pipeline keeping its OVER state in RocksDB (few keys
/// resident, so most cards' rows live on disk), stopped with SIGTERM and resumed from its
/// checkpoint, writes exactly what an uninterrupted run with in-memory state writes, and leaves
/// no working files behind.
#[test]
fn a_rocksdb_pipeline_stopped_and_resumed_writes_what_an_in_memory_run_writes() {
    let dir = scratch("rocksdb");
    let pipeline = |backend: &str| {
        format!(
            "SET 'pipeline.name' = 'rocks';
SET 'execution.checkpointing.interval' = '300 ms';
SET 'execution.checkpointing.dir' = 'chk';
SET 'state.backend' = '{backend}';
SET 'state.backend.rocksdb.localdir' = 'work';
SET 'state.backend.rocksdb.resident-keys' = '50';
SET 'state.ttl' = '30 min';
CREATE TABLE payments (payment_id BIGINT, card_id STRING, amount DOUBLE, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH ('connector' = 'payments-generator', 'number-of-rows' = '40000', 'rows-per-second' = '15000', 'seed' = '5');
CREATE VIEW card_1h AS
SELECT payment_id, card_id, ts, COUNT(*) OVER w AS n_1h, SUM(amount) OVER w AS sum_1h, MAX(amount) OVER w AS max_1h
FROM payments WINDOW w AS (PARTITION BY card_id ORDER BY ts RANGE BETWEEN INTERVAL '1' HOUR PRECEDING AND CURRENT ROW);
CREATE TABLE out (payment_id BIGINT, card_id STRING, n_1h BIGINT, sum_1h DOUBLE, max_1h DOUBLE)
WITH ('connector' = 'filesystem', 'path' = 'out.jsonl', 'format' = 'json');
INSERT INTO out SELECT payment_id, card_id, n_1h, sum_1h, max_1h FROM card_1h;
"
        )
    };
    let output = |dir: &Path| std::fs::read_to_string(dir.join("out.jsonl")).expect("output");
    let reference = dir.join("memory");
    std::fs::create_dir_all(&reference).expect("dir");
    let p = write(&reference, "p.fsql", &pipeline("hashmap"));
    let out = fsql(&["run", p.to_str().expect("path")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let want = output(&reference);
    assert_eq!(want.lines().count(), 40_000);

    let run = dir.join("rocks");
    std::fs::create_dir_all(run.join("work")).expect("dir");
    let p = write(&run, "p.fsql", &pipeline("rocksdb"));
    let explain = text(&fsql(&["explain", p.to_str().expect("path")]).stdout);
    assert!(
        explain.contains(
            "state backend: rocksdb (OVER, TopN and GROUP BY state beyond 50 resident keys"
        ),
        "{explain}"
    );
    stop_after_a_while(&p);
    let before = output(&run).lines().count();
    assert!(
        before > 0 && before < 40_000,
        "stopped part-way: {before} rows"
    );

    let out = fsql(&["run", p.to_str().expect("path")]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("resumed from chk-"), "{stderr}");
    assert!(
        output(&run) == want,
        "the resumed RocksDB run differs from the in-memory one"
    );
    let left: Vec<_> = std::fs::read_dir(run.join("work"))
        .expect("work dir")
        .collect();
    assert!(left.is_empty(), "the working instance is removed: {left:?}");
}

/// Checkpoints are written while the pipeline goes on: a crash between taking a checkpoint and
/// its files becoming durable leaves `chk-<n>.inprogress/` with part of its files and no
/// `_metadata`. The restart resumes from the previous complete checkpoint and writes exactly
/// what an uninterrupted run writes; the leftover is replaced.
#[test]
fn a_checkpoint_cut_short_while_its_files_were_written_is_skipped_for_the_previous_one() {
    let dir = scratch("async-crash");
    let pipeline = "SET 'pipeline.name' = 'async';
SET 'execution.checkpointing.interval' = '200 ms';
SET 'execution.checkpointing.dir' = 'chk';
SET 'execution.checkpointing.num-retained' = '2';
CREATE TABLE payments (payment_id BIGINT, card_id STRING, amount DOUBLE, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH ('connector' = 'payments-generator', 'number-of-rows' = '40000', 'rows-per-second' = '15000', 'seed' = '9');
CREATE VIEW card_1h AS
SELECT payment_id, card_id, COUNT(*) OVER w AS n_1h, SUM(amount) OVER w AS sum_1h
FROM payments WINDOW w AS (PARTITION BY card_id ORDER BY ts RANGE BETWEEN INTERVAL '1' HOUR PRECEDING AND CURRENT ROW);
CREATE TABLE out (payment_id BIGINT, card_id STRING, n_1h BIGINT, sum_1h DOUBLE)
WITH ('connector' = 'filesystem', 'path' = 'out.jsonl', 'format' = 'json');
INSERT INTO out SELECT payment_id, card_id, n_1h, sum_1h FROM card_1h;
";
    let output = |dir: &Path| std::fs::read_to_string(dir.join("out.jsonl")).expect("output");
    let reference = dir.join("reference");
    std::fs::create_dir_all(&reference).expect("dir");
    let p = write(&reference, "p.fsql", pipeline);
    let out = fsql(&["run", p.to_str().expect("path")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let want = output(&reference);

    let run = dir.join("run");
    std::fs::create_dir_all(&run).expect("dir");
    let p = write(&run, "p.fsql", pipeline);
    stop_after_a_while(&p);
    let chk = run.join("chk");
    let newest = std::fs::read_dir(&chk)
        .expect("checkpoints")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_prefix("chk-")?.parse::<u64>().ok()
        })
        .max()
        .expect("a checkpoint");
    // What the writer thread of the next checkpoint leaves when the process dies mid-write.
    let cut = chk.join(format!("chk-{}.inprogress", newest + 1));
    std::fs::create_dir_all(cut.join("rocksdb")).expect("dir");
    std::fs::write(cut.join("0002-card_1h.state"), b"half a state file").expect("write");

    let out = fsql(&["run", p.to_str().expect("path")]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("resumed from chk-{newest} ")),
        "{stderr}"
    );
    assert!(
        output(&run) == want,
        "the resumed run differs from the uninterrupted one"
    );
    assert!(!cut.exists(), "the leftover is replaced");
    let after: Vec<u64> = std::fs::read_dir(&chk)
        .expect("checkpoints")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_prefix("chk-")?.parse::<u64>().ok()
        })
        .collect();
    assert!(
        after.iter().all(|&n| n > newest) && after.len() == 2,
        "the resumed run numbered its checkpoints on from chk-{newest}: {after:?}"
    );
    for n in after {
        assert!(chk.join(format!("chk-{n}/_metadata")).is_file());
    }
}
