//! Foundation benchmarks (see `docs/BENCHMARKS.md`).
//!
//! 1. **Check**: a generated pipeline of about 2,000 lines with 300 views (projections, `CASE`,
//!    functions, filters, views reading views, `UNION ALL`, a ruleset, an `INSERT`) is compiled
//!    in-process with `fsql_compiler::compile_file` (as `fsql check` does: unused views kept), and
//!    the release `fsql check` binary is timed as a subprocess (wall time including process start).
//! 2. **Throughput**: `benches/sql/*.fsql|sql` pipelines (generator → Calc or OVER → blackhole)
//!    run in-process with `fsql_runtime::run` (unthrottled, one thread): events/s per core.
//!
//! ```sh
//! cargo bench --bench foundation               # prints a markdown report
//! cargo bench --bench foundation -- --write    # also rewrites the generated part of docs/BENCHMARKS.md
//! ```
//!
//! Environment: `FSQL_BENCH_ROWS` (rows per throughput run, default 10,000,000), `FSQL_BENCH_RUNS`
//! (throughput runs per pipeline, default 3), `FSQL_BENCH_CHECK_RUNS` (check runs, default 7),
//! `FSQL_BIN` (the `fsql` binary to time; default: the one cargo built for this bench),
//! `FSQL_BENCH_KEEP` (set: keep the generated pipeline and print its path).

/// The `fsql` binary's allocator, so figures are what a run gets.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fsql_compiler::{CompileOptions, Severity, compile_file, compile_source};
use fsql_runtime::RunOptions;

/// Target of the check benchmark: `fsql check` of the generated file, process wall time.
const CHECK_TARGET: Duration = Duration::from_secs(1);
/// Target of the stateless path: events per second on one core.
const STATELESS_TARGET: f64 = 5_000_000.0;
/// The row count written in the `benches/sql` files, replaced by `FSQL_BENCH_ROWS`.
const SQL_ROWS: &str = "10000000";
const VIEWS: usize = 300;
const BEGIN: &str = "<!-- foundation:begin -->";
const END: &str = "<!-- foundation:end -->";

fn main() {
    // `cargo bench` passes `--bench`; other unknown arguments are ignored too.
    let write = std::env::args().skip(1).any(|a| a == "--write");
    let rows: u64 = env_number("FSQL_BENCH_ROWS", 10_000_000);
    let runs = env_number("FSQL_BENCH_RUNS", 3).max(1) as usize;
    let check_runs = env_number("FSQL_BENCH_CHECK_RUNS", 7).max(1) as usize;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));

    let dir = std::env::temp_dir().join(format!("fsql-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    let check = bench_check(&dir, check_runs);
    if std::env::var_os("FSQL_BENCH_KEEP").is_some() {
        eprintln!("kept {}", dir.join("views300.fsql").display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }

    let pipelines = [
        (
            "payments-generator → blackhole (source only)",
            "benches/sql/payments_source_only.fsql",
        ),
        (
            "payments-generator → Calc → blackhole",
            "benches/sql/payments_filter_project.fsql",
        ),
        (
            "datagen → Calc → blackhole (the Flink comparison SQL)",
            "benches/sql/datagen_filter_project.sql",
        ),
        (
            "payments-generator → OVER 1 h COUNT+SUM per card (100k) → blackhole, watermark order",
            "benches/sql/over_card_1h.fsql",
        ),
        (
            "payments-generator → OVER 1 h COUNT+SUM per card (100k) → blackhole, arrival order",
            "benches/sql/over_card_1h_arrival.fsql",
        ),
    ];
    let throughput: Vec<Throughput> = pipelines
        .iter()
        .map(|(label, file)| bench_run(label, &root.join(file), file, rows, runs))
        .collect();

    let report = render(&check, &throughput, rows, runs, check_runs);
    println!("{report}");
    if write {
        let path = root.join("docs/BENCHMARKS.md");
        match rewrite_section(&path, &report) {
            Ok(()) => eprintln!("updated {}", path.display()),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a whole number")),
        Err(_) => default,
    }
}

// ---------------------------------------------------------------------------------------------
// 1. fsql check of a generated 300-view pipeline

struct CheckResult {
    lines: usize,
    bytes: usize,
    views: usize,
    in_process: Vec<Duration>,
    /// `None` when no binary was found.
    binary: Option<(PathBuf, Vec<Duration>)>,
}

fn bench_check(dir: &Path, runs: usize) -> CheckResult {
    let text = generate_pipeline(VIEWS);
    let path = dir.join("views300.fsql");
    std::fs::write(&path, &text).expect("write the generated pipeline");
    let options = CompileOptions {
        strict: false,
        keep_unused: true,
    };

    // Warm-up, and the generated file must be valid.
    let c = compile_file(&path, &options);
    let errors: Vec<String> = c
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.render(&c.sources))
        .collect();
    assert!(
        errors.is_empty(),
        "the generated pipeline has errors:\n{}",
        errors.join("\n")
    );
    let views = c
        .relations
        .keys()
        .filter(|k| k.starts_with('v') && k[1..].chars().all(|c| c.is_ascii_digit()))
        .count();
    assert_eq!(views, VIEWS, "every generated view is a relation");

    let in_process = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let c = compile_file(&path, &options);
            let d = t.elapsed();
            assert!(!c.has_errors());
            d
        })
        .collect();

    let binary = fsql_binary().map(|bin| {
        let times = (0..runs)
            .map(|_| {
                let t = Instant::now();
                let out = Command::new(&bin)
                    .arg("check")
                    .arg(&path)
                    .output()
                    .expect("run fsql check");
                let d = t.elapsed();
                assert!(
                    out.status.success(),
                    "fsql check failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                d
            })
            .collect();
        (bin, times)
    });
    CheckResult {
        lines: text.lines().count(),
        bytes: text.len(),
        views,
        in_process,
        binary,
    }
}

/// The release `fsql` binary: `FSQL_BIN`, else the one cargo builds for benches (the `bench`
/// profile inherits `release`, so this is `<target>/release/fsql`).
fn fsql_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("FSQL_BIN") {
        return Some(PathBuf::from(p));
    }
    let built = PathBuf::from(env!("CARGO_BIN_EXE_fsql"));
    if built.exists() {
        return Some(built);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    Some(target.join("release/fsql")).filter(|p| p.exists())
}

/// A realistic pipeline of about 2,000 lines: one source, `views` views (projections, CASE,
/// string/numeric/temporal functions, filters; most read earlier views, some are UNION ALLs), a
/// ruleset on the last view and an INSERT into a blackhole sink.
fn generate_pipeline(views: usize) -> String {
    const COLS: &str = "payment_id, card_id, merchant_id, amount, currency, status, channel, ts";
    let mut s = String::new();
    let _ = writeln!(
        s,
        "-- Generated by benches/foundation.rs: {views} views over the payments generator."
    );
    s.push_str(
        "SET 'pipeline.name' = 'views300';\n\
         SET 'table.exec.mini-batch.size' = '4096';\n\n\
         CREATE TABLE payments (\n\
         \x20 payment_id  BIGINT,\n\
         \x20 card_id     STRING,\n\
         \x20 merchant_id STRING,\n\
         \x20 amount      DOUBLE,\n\
         \x20 currency    STRING,\n\
         \x20 status      STRING,\n\
         \x20 channel     STRING,\n\
         \x20 ts          TIMESTAMP(3),\n\
         \x20 WATERMARK FOR ts AS ts - INTERVAL '2' SECOND\n\
         ) WITH (\n\
         \x20 'connector' = 'payments-generator',\n\
         \x20 'seed' = '7',\n\
         \x20 'number-of-rows' = '100000'\n\
         );\n\n\
         CREATE TABLE decisions_out (\n\
         \x20 payment_id BIGINT,\n\
         \x20 decision   STRING,\n\
         \x20 rule       STRING,\n\
         \x20 band       STRING,\n\
         \x20 gross      DOUBLE,\n\
         \x20 risk       BIGINT,\n\
         \x20 ts         TIMESTAMP(3)\n\
         ) WITH ('connector' = 'blackhole');\n",
    );
    for i in 0..views {
        let name = format!("v{i:03}");
        if i % 10 == 0 {
            let _ = writeln!(s, "\n-- group {}: views v{i:03} to v{:03}", i / 10, i + 9);
        } else {
            s.push('\n');
        }
        // Every 25th view (after the first ones) unions two earlier views.
        if i >= 25 && i % 25 == 0 {
            let (a, b) = (i - 1, i - 7);
            let _ = writeln!(
                s,
                "CREATE VIEW {name} AS\n\
                 SELECT * FROM v{a:03} WHERE risk > {r}\n\
                 UNION ALL\n\
                 SELECT * FROM v{b:03} WHERE band = 'high' AND gross > {g}.5;",
                r = 3 + i % 11,
                g = 100 + i,
            );
            continue;
        }
        // Every 10th view (and the first ones) reads the source; the rest read earlier views.
        let input = if i < 4 || i % 10 == 0 {
            None
        } else {
            Some(i - 1 - (i % 4))
        };
        let (c0, c1, c2) = (1 + i % 9, 50 + (i * 7) % 200, 900 + (i * 13) % 800);
        // Templates 0-3 need only the source's columns; 4 and 5 use the computed columns of a view.
        let template = if input.is_some() { i % 6 } else { i % 4 };
        let (band, gross, tag, risk, filter) = match template {
            0 => (
                format!(
                    "CASE WHEN amount >= {c2} THEN 'high' WHEN amount >= {c1} THEN 'mid' ELSE 'low' END"
                ),
                format!("ROUND(amount * 1.{:02}, 2)", i % 100),
                format!("UPPER(SUBSTR(card_id, 1, {}))", 6 + i % 5),
                format!("HOUR(ts) * {}", 1 + i % 4),
                format!("status = 'APPROVED' AND amount > {c0}"),
            ),
            1 => (
                "CASE channel WHEN 'web' THEN 'online' WHEN 'app' THEN 'mobile' ELSE 'store' END"
                    .to_string(),
                format!("GREATEST(amount - {c0}.25, 0.0)"),
                "CONCAT(currency, '-', merchant_id)".to_string(),
                "CASE WHEN currency NOT IN ('EUR', 'USD', 'GBP') THEN 3 ELSE 1 END".to_string(),
                "currency IS NOT NULL AND channel <> 'pos'".to_string(),
            ),
            2 => (
                format!("IF(amount > {c1}, 'large', 'small')"),
                format!("COALESCE(amount, 0.0) * {}.5", 1 + i % 3),
                "LOWER(REPLACE(merchant_id, 'm-', 'merchant_'))".to_string(),
                format!("CHAR_LENGTH(card_id) + {}", i % 7),
                format!("amount BETWEEN {c0} AND {}", c2 * 10),
            ),
            3 => (
                "DATE_FORMAT(ts, 'yyyy-MM-dd HH')".to_string(),
                format!("ABS(amount - {c1}.0)"),
                "LPAD(SPLIT_INDEX(card_id, '-', 1), 8, '0')".to_string(),
                "EXTRACT(MINUTE FROM ts)".to_string(),
                format!("card_id LIKE 'card-0%' OR amount > {c1}"),
            ),
            4 => (
                format!(
                    "CASE WHEN risk > {} THEN 'review' ELSE band END",
                    10 + i % 20
                ),
                format!("gross * 1.0{} + {c0}.5", i % 10),
                "CONCAT_WS('/', tag, status)".to_string(),
                "risk + IF(status = 'DECLINED', 5, 0)".to_string(),
                format!("gross > {c0} AND band <> 'low'"),
            ),
            _ => (
                "UPPER(band)".to_string(),
                format!("ROUND(gross / {}.0, 3)", 1 + i % 4),
                format!("SUBSTR(tag, 1, {})", 4 + i % 6),
                format!("risk * 2 - {}", i % 5),
                format!("risk < {} OR status = 'DECLINED'", 40 + i % 30),
            ),
        };
        let from = input.map_or_else(|| "payments".to_string(), |j| format!("v{j:03}"));
        if i % 2 == 1 {
            const ABOUT: [&str; 6] = [
                "amount bands, gross amount, card tag, hour risk",
                "channel bands, net amount, merchant tag, currency risk",
                "size bands, scaled amount, merchant name, card-length risk",
                "hour buckets, distance from a threshold, padded card number, minute risk",
                "review band, uplifted gross, tag path, declined risk",
                "normalised band, rounded gross, short tag, doubled risk",
            ];
            let _ = writeln!(s, "-- {name} <- {from}: {}", ABOUT[template]);
        }
        let _ = writeln!(
            s,
            "CREATE VIEW {name} AS\n\
             SELECT {COLS},\n\
             \x20 {band} AS band, {gross} AS gross,\n\
             \x20 {tag} AS tag, {risk} AS risk\n\
             FROM {from} WHERE {filter};"
        );
    }
    let last = format!("v{:03}", views - 1);
    let _ = write!(
        s,
        "\nCREATE RULESET decisions ON {last} KEY payment_id DEFAULT 'ALLOW' (\n\
         \x20 RULE declined_large PRIORITY 10 WHEN status = 'DECLINED' AND amount >= 1000 THEN 'BLOCK',\n\
         \x20 RULE risky_band     PRIORITY 20 WHEN band IN ('HIGH', 'REVIEW') AND risk > 20 THEN 'REVIEW',\n\
         \x20 RULE big_gross      PRIORITY 30 WHEN gross > 5000 THEN 'REVIEW',\n\
         \x20 RULE exotic         PRIORITY 40 WHEN currency NOT IN ('EUR', 'USD', 'GBP') AND amount > 500 THEN 'REVIEW',\n\
         \x20 RULE tiny_probe     PRIORITY 50 WHEN amount < 2 THEN 'REVIEW',\n\
         \x20 RULE odd_tag        PRIORITY 60 WHEN tag LIKE '%9' AND channel = 'web' THEN 'REVIEW'\n\
         );\n\n\
         INSERT INTO decisions_out\n\
         SELECT payment_id, decision, rule, band, gross, risk, ts\n\
         FROM decisions\n\
         WHERE decision <> 'ALLOW';\n"
    );
    s
}

// ---------------------------------------------------------------------------------------------
// 2. Throughput (stateless Calc and OVER pipelines)

struct Throughput {
    label: &'static str,
    file: &'static str,
    rows_in: u64,
    rows_out: u64,
    /// Wall time of each run (the run only: plan compiled beforehand).
    wall: Vec<Duration>,
    /// On-CPU time of the running thread for each run, when the kernel reports it.
    cpu: Vec<Option<Duration>>,
}

fn bench_run(
    label: &'static str,
    path: &Path,
    file: &'static str,
    rows: u64,
    runs: usize,
) -> Throughput {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let text = text.replace(SQL_ROWS, &rows.to_string());
    let c = compile_source(path, text, &CompileOptions::default(), &[]);
    if c.has_errors() {
        for d in &c.diagnostics {
            eprint!("{}", d.render(&c.sources));
        }
        panic!("{} does not compile", path.display());
    }
    let pipeline = c.pipeline.expect("a pipeline");
    let (mut rows_in, mut rows_out) = (0, 0);
    let mut wall = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..runs {
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
        .unwrap_or_else(|e| panic!("{file}: {e}"));
        wall.push(t.elapsed());
        cpu.push(thread_cpu().zip(cpu0).map(|(b, a)| b.saturating_sub(a)));
        rows_in = summary.rows_in();
        rows_out = summary.rows_out();
        assert_eq!(rows_in, rows, "{file}: every generated row is read");
        eprintln!(
            "{label}: {rows_in} rows in, {rows_out} out in {:.3} s",
            wall.last().map_or(0.0, Duration::as_secs_f64)
        );
    }
    Throughput {
        label,
        file,
        rows_in,
        rows_out,
        wall,
        cpu,
    }
}

/// Time the current thread spent on a CPU (`/proc/thread-self/schedstat`, nanoseconds).
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

// ---------------------------------------------------------------------------------------------
// Report

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn per_second(rows: u64, d: Duration) -> f64 {
    rows as f64 / d.as_secs_f64()
}

fn millions(x: f64) -> String {
    format!("{:.2} M", x / 1e6)
}

fn met(ok: bool) -> &'static str {
    if ok { "**met**" } else { "**not met**" }
}

fn render(
    check: &CheckResult,
    throughput: &[Throughput],
    rows: u64,
    runs: usize,
    check_runs: usize,
) -> String {
    let mut r = String::new();
    let _ = writeln!(
        r,
        "Generated by `cargo bench --bench foundation -- --write`.\n"
    );
    let _ = writeln!(r, "{}\n", machine());

    let _ = writeln!(
        r,
        "**Check** — a generated pipeline of {} lines ({} KB): {} views, a source, a sink, a \
         ruleset and an `INSERT`; median / best of {check_runs} runs.\n",
        check.lines,
        check.bytes / 1024,
        check.views
    );
    let _ = writeln!(r, "| what | median | best | target |");
    let _ = writeln!(r, "| --- | ---: | ---: | --- |");
    let best = |v: &[Duration]| v.iter().min().copied().unwrap_or_default();
    let _ = writeln!(
        r,
        "| `compile_file` in-process (parse, plan, type-check, lower) | {} | {} | |",
        ms(median(&check.in_process)),
        ms(best(&check.in_process))
    );
    match &check.binary {
        Some((_, times)) => {
            let m = median(times);
            let _ = writeln!(
                r,
                "| `fsql check` release binary, process wall time | {} | {} | < 1 s: {} |",
                ms(m),
                ms(best(times)),
                met(m < CHECK_TARGET)
            );
        }
        None => {
            let _ = writeln!(
                r,
                "| `fsql check` release binary | not found | | set `FSQL_BIN` |"
            );
        }
    }

    let _ = writeln!(
        r,
        "\n**Throughput** — in-process `fsql_runtime::run`, unthrottled, one thread, \
         {} rows per run, default batch size (1024); best and median of {runs} runs. \
         \"per CPU-s\" divides by the thread's on-CPU time, which is less sensitive to other load \
         on the machine.\n",
        rows
    );
    let _ = writeln!(
        r,
        "| pipeline | rows out | best events/s | median events/s | median per CPU-s | target |"
    );
    let _ = writeln!(r, "| --- | ---: | ---: | ---: | ---: | --- |");
    for t in throughput {
        let best_wall = best(&t.wall);
        let med_wall = median(&t.wall);
        let cpus: Vec<Duration> = t.cpu.iter().flatten().copied().collect();
        let cpu_rate = (cpus.len() == t.cpu.len() && !cpus.is_empty())
            .then(|| per_second(t.rows_in, median(&cpus)));
        let per_cpu = cpu_rate.map_or_else(|| "—".to_string(), millions);
        let target = if t.file.ends_with("payments_filter_project.fsql") {
            let wall_ok = met(per_second(t.rows_in, med_wall) >= STATELESS_TARGET);
            match cpu_rate {
                Some(c) => format!(
                    "≥ 5 M/s: {wall_ok} (median wall), {} (per CPU-s)",
                    met(c >= STATELESS_TARGET)
                ),
                None => format!("≥ 5 M/s: {wall_ok} (median wall)"),
            }
        } else {
            String::new()
        };
        let _ = writeln!(
            r,
            "| {} (`{}`) | {} | {} | {} | {} | {} |",
            t.label,
            t.file,
            t.rows_out,
            millions(per_second(t.rows_in, best_wall)),
            millions(per_second(t.rows_in, med_wall)),
            per_cpu,
            target
        );
    }
    r
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown", |(_, m)| m.trim());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .map_or("unknown".to_string(), |kb| {
            format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0)
        });
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let commit = output("git", &["rev-parse", "--short", "HEAD"]);
    let dirty = !output("git", &["status", "--porcelain"]).is_empty();
    let rustc = output("rustc", &["--version"]);
    format!(
        "- machine: {nproc} cores ({model}), {mem_gib} memory; shared with other builds, so noisy\n\
         - date: {date}\n\
         - commit: {commit}{}\n\
         - toolchain: {rustc}\n\
         - command: `cargo build --release --bin fsql && cargo bench --bench foundation -- --write`",
        if dirty {
            " (with uncommitted changes)"
        } else {
            ""
        },
    )
}

fn output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Replaces the text between the markers of `path` with `report`.
fn rewrite_section(path: &Path, report: &str) -> Result<(), String> {
    let doc = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END)) else {
        return Err(format!(
            "{} has no `{BEGIN}` … `{END}` section",
            path.display()
        ));
    };
    if e < b {
        return Err(format!(
            "{}: `{END}` comes before `{BEGIN}`",
            path.display()
        ));
    }
    let new = format!("{}{BEGIN}\n{}\n{}", &doc[..b], report.trim_end(), &doc[e..]);
    std::fs::write(path, new).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
