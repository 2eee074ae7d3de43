//! `fsql run`: runs a plan and prints the rows of its bare SELECTs.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use fsql_plan::changelog::ChangelogMode;
use fsql_plan::{Operator, Plan};
use std::time::Duration;

use fsql_runtime::format::{OutputFormat, QueryWriter};
use fsql_runtime::{ProgressOptions, RunOptions};

use crate::RowFormat;

/// How many malformed records are printed one by one before only counting them.
const MAX_REPORTED_MALFORMED: usize = 20;

/// The first column of an updating query's output: each row's kind (`+I`, `-U`, `+U`, `-D`).
const OP_COLUMN: &str = "op";

/// `batch` with its rows' kinds as a first column [`OP_COLUMN`].
fn with_op_column(
    batch: &RecordBatch,
    kinds: &[fsql_runtime::RowKind],
) -> std::io::Result<RecordBatch> {
    let op: ArrayRef = Arc::new(StringArray::from_iter_values(
        kinds.iter().map(|k| k.short()),
    ));
    let mut fields = vec![Arc::new(Field::new(OP_COLUMN, DataType::Utf8, false))];
    fields.extend(batch.schema().fields().iter().cloned());
    let mut columns = vec![op];
    columns.extend(batch.columns().iter().cloned());
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(std::io::Error::other)
}

/// The flags of `fsql run`.
pub struct RunFlags {
    /// How query rows are printed.
    pub format: RowFormat,
    pub unthrottled: bool,
    pub no_jit: bool,
    /// Live progress: the interval, and whether stderr is a terminal.
    pub progress: Option<(Duration, bool)>,
    pub allow_non_restored_state: bool,
}

/// Runs `plan` to the end of its input (or Ctrl-C), printing query rows; a summary goes to stderr,
/// and with `progress` live progress too.
pub fn run(plan: &Plan, flags: &RunFlags) -> Result<bool, String> {
    let RunFlags {
        format,
        unthrottled,
        no_jit,
        progress,
        allow_non_restored_state,
    } = *flags;
    let pipeline = &plan.pipeline;
    let collect: Vec<_> = pipeline
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Operator::Collect))
        .collect();
    // An updating query prints its changes with their kind in a first column `op`, as Flink's
    // SQL client does in its changelog mode.
    let modes = fsql_plan::changelog::modes(&pipeline.nodes);
    let updating = collect
        .first()
        .is_some_and(|n| modes.get(n.id.0 as usize) == Some(&ChangelogMode::Updating));
    let mut columns: Vec<String> = collect
        .first()
        .map(|n| n.schema.fields.iter().map(|f| f.name.clone()).collect())
        .unwrap_or_default();
    if updating {
        columns.insert(0, OP_COLUMN.into());
    }
    let format = match format {
        RowFormat::Table => OutputFormat::Table,
        RowFormat::Jsonl => OutputFormat::Jsonl,
        RowFormat::Csv => OutputFormat::Csv,
    };
    let stdout = std::io::stdout();
    let mut writer = QueryWriter::new(format, stdout.lock());
    let stop = Arc::new(AtomicBool::new(false));
    // Ctrl-C / SIGTERM: stop between batches, flush sinks and commit offsets; a second one exits.
    let on_signal = stop.clone();
    let _ = ctrlc::set_handler(move || {
        if on_signal.swap(true, Ordering::Relaxed) {
            std::process::exit(130);
        }
    });
    let mut write_error = None;
    let mut reported = 0usize;
    let on_malformed: fsql_runtime::MalformedReporter = Box::new(move |record| {
        reported += 1;
        if reported <= MAX_REPORTED_MALFORMED {
            eprintln!("malformed record: {record}");
        } else if reported == MAX_REPORTED_MALFORMED + 1 {
            eprintln!("(more malformed records are counted but not shown)");
        }
    });
    let jit = !no_jit && fsql_runtime::jit_enabled(&pipeline.settings);
    let control = match crate::control::ControlConfig::from_settings(&pipeline.settings)? {
        Some(config) => Some(crate::control::start(config, pipeline, jit, stop.clone())?),
        None => None,
    };
    let options = RunOptions {
        stop: Some(stop.clone()),
        unthrottled,
        on_malformed: Some(on_malformed),
        no_jit,
        control,
        progress: progress.map(|(interval, terminal)| ProgressOptions {
            interval,
            report: crate::progress::reporter(terminal),
        }),
        allow_non_restored_state,
        ..RunOptions::default()
    };
    let summary = fsql_runtime::run(pipeline, options, &mut |node, batch, kinds| {
        let is_collect = pipeline
            .node(node)
            .is_some_and(|n| matches!(n.op, Operator::Collect));
        if !is_collect || write_error.is_some() {
            return;
        }
        let written = match kinds {
            Some(kinds) => with_op_column(batch, kinds).and_then(|b| writer.write(&b)),
            None => writer.write(batch),
        };
        if let Err(e) = written {
            // A closed pipe (`fsql run ... | head`) ends the run quietly.
            write_error = Some(e);
            stop.store(true, Ordering::Relaxed);
        }
    })
    .map_err(|e| e.to_string());
    // The control reader stops with the run.
    stop.store(true, Ordering::Relaxed);
    if progress.is_some_and(|(_, terminal)| terminal) {
        crate::progress::clear_line();
    }
    let summary = summary?;
    if write_error.is_none() && !collect.is_empty() {
        let _ = writer.finish(&columns).map(|mut w| w.flush());
    }
    eprintln!("{summary}");
    if let Some(c) = &summary.checkpoints {
        let resumed = c.restored_from.map_or(String::new(), |(id, took)| {
            format!(", resumed from chk-{id} in {:.3} s", took.as_secs_f64())
        });
        eprintln!(
            "checkpoints: {} taken in {} (largest {:.1} MiB; the pipeline waited {:.3} s, taken to durable {:.3} s){resumed}",
            c.taken,
            c.dir,
            c.largest_bytes as f64 / (1024.0 * 1024.0),
            c.taking.as_secs_f64(),
            c.completing.as_secs_f64()
        );
    }
    if summary.late() > 0 {
        let settings = &pipeline.settings;
        match (
            settings.get(fsql_runtime::late_data::LATE_DATA_PATH),
            settings.get(fsql_plan::LATE_DATA_SINK),
        ) {
            (Some(path), _) => eprintln!("late rows were written to {path}"),
            (None, Some(table)) => eprintln!("late rows were written to table `{table}`"),
            (None, None) => eprintln!(
                "{} late row(s) arrived behind the watermark; SET 'pipeline.late-data.path' (a file) or 'pipeline.late-data.sink' (a table) to keep them",
                summary.late()
            ),
        }
    }
    Ok(true)
}
