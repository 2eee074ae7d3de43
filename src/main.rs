//! `fsql`: check, compile, explain, run and test streaming-SQL pipelines.
//!
//! Exit codes: 0 success, 1 a user error (bad pipeline, failed test, runtime failure), 2 usage.

mod checkpoint;
mod control;
mod explain;
mod load;
mod progress;
mod query_output;
mod test_runner;

/// jemalloc: per-key and per-row allocations are a large share of a pipeline's work, and
/// glibc's malloc spends more time and memory on them (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use fsql_compiler::{CompileOptions, Severity, compile_file};

#[derive(Parser)]
#[command(
    name = "fsql",
    version,
    about = "Streaming SQL for real-time features and fraud decisions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check pipelines and report every error and warning (with file:line:col).
    Check {
        /// `.fsql` files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Output format of the diagnostics.
        #[arg(long, value_enum, default_value_t = DiagFormat::Text)]
        format: DiagFormat,
        /// Treat warnings about unbounded state as errors.
        #[arg(long)]
        strict: bool,
    },
    /// Compile a pipeline into a plan artefact.
    Compile {
        file: PathBuf,
        /// Where to write the plan (default: FILE with the extension `.plan`).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Show a pipeline's operator graph: schemas, time semantics, state.
    Explain {
        /// A `.fsql` file or a compiled `.plan`.
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = ExplainFormat::Text)]
        format: ExplainFormat,
    },
    /// Run a pipeline (a `.fsql` file or a compiled `.plan`).
    Run {
        file: PathBuf,
        /// How to print the rows of a bare SELECT (default: table on a terminal, jsonl otherwise).
        #[arg(long, value_enum)]
        format: Option<RowFormat>,
        /// Ignore `rows-per-second` limits of generators and run as fast as possible.
        #[arg(long)]
        unthrottled: bool,
        /// Interpret every expression instead of compiling filters, projections and rules
        /// (overrides `SET 'jit.enabled'`).
        #[arg(long)]
        no_jit: bool,
        /// How often to report progress (rows in and out per second, Kafka lag, watermark, dead
        /// letters) on stderr, e.g. `5 s`: a status line redrawn on a terminal, a log line
        /// otherwise; `0` turns it off [default: 1 s on a terminal, 10 s otherwise].
        #[arg(long, value_name = "INTERVAL", value_parser = fsql_runtime::parse_duration)]
        progress: Option<Duration>,
        /// Resuming from a checkpoint: start operators whose state cannot be restored (removed,
        /// or defined differently) without it, instead of refusing to run.
        #[arg(long)]
        allow_non_restored_state: bool,
    },
    /// Run the TEST blocks of `.fsql` test files.
    Test {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Interpret every expression instead of compiling them.
        #[arg(long)]
        no_jit: bool,
        /// Run every test with this state backend (`hashmap` or `rocksdb`), whatever the file sets.
        #[arg(long, value_name = "NAME")]
        state_backend: Option<String>,
        /// With `--state-backend rocksdb`: values kept in memory per operator table (a tiny number
        /// makes every test spill and read back state).
        #[arg(long, value_name = "N")]
        state_resident_keys: Option<usize>,
    },
    /// Publish rule and model updates to a running pipeline's control stream.
    #[command(subcommand)]
    Control(ControlCommand),
    /// Look into a checkpoint directory (`execution.checkpointing.dir`).
    #[command(subcommand)]
    Checkpoint(CheckpointCommand),
}

#[derive(Subcommand)]
enum CheckpointCommand {
    /// List the complete checkpoints, oldest first; `fsql run` resumes from the last.
    List {
        /// The checkpoint directory.
        dir: PathBuf,
    },
    /// Show one checkpoint: source positions, watermarks, state per node.
    Inspect {
        /// A `chk-<n>` directory, or a checkpoint directory (its newest checkpoint).
        path: PathBuf,
    },
}

#[derive(Subcommand)]
enum ControlCommand {
    /// Make an Ed25519 signing key; prints the `control.trusted-keys` entry for pipelines.
    Keygen {
        /// The key's name (pipelines list trusted keys by name).
        #[arg(long)]
        name: String,
        /// Where to write the private key (created, never overwritten).
        #[arg(long)]
        key: PathBuf,
    },
    /// Print the signed control record of an update (JSON).
    Sign {
        update: PathBuf,
        #[arg(long)]
        key_name: String,
        #[arg(long)]
        key: PathBuf,
    },
    /// Check an update against a pipeline (its plan and the updates already published), sign it
    /// and append it to the pipeline's control file.
    Push {
        update: PathBuf,
        /// The pipeline: a `.fsql` file or a compiled `.plan`.
        #[arg(long)]
        plan: PathBuf,
        /// The ruleset the update is for (filled into the update when it names none).
        #[arg(long)]
        ruleset: Option<String>,
        #[arg(long)]
        key_name: String,
        #[arg(long)]
        key: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum DiagFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExplainFormat {
    Text,
    Dot,
}

/// How query results are printed.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum RowFormat {
    Table,
    Jsonl,
    Csv,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check {
            files,
            format,
            strict,
        } => check(&files, format, strict),
        Command::Compile { file, output } => compile(&file, output),
        Command::Explain { file, format } => load::load(&file).map(|plan| {
            let text = match format {
                ExplainFormat::Text => explain::text(&plan),
                ExplainFormat::Dot => explain::dot(&plan),
            };
            print!("{text}");
            true
        }),
        Command::Run {
            file,
            format,
            unthrottled,
            no_jit,
            progress,
            allow_non_restored_state,
        } => {
            let format = format.unwrap_or(if std::io::stdout().is_terminal() {
                RowFormat::Table
            } else {
                RowFormat::Jsonl
            });
            let terminal = std::io::stderr().is_terminal();
            let interval = progress.unwrap_or(Duration::from_secs(if terminal { 1 } else { 10 }));
            let progress = (!interval.is_zero()).then_some((interval, terminal));
            load::load(&file).and_then(|plan| {
                let options = query_output::RunFlags {
                    format,
                    unthrottled,
                    no_jit,
                    progress,
                    allow_non_restored_state,
                };
                query_output::run(&plan, &options)
            })
        }
        Command::Test {
            files,
            no_jit,
            state_backend,
            state_resident_keys,
        } => {
            let mut overrides = test_runner::SettingOverrides::new();
            if let Some(n) = state_resident_keys {
                overrides.insert(
                    "state.backend.rocksdb.resident-keys".into(),
                    n.max(1).to_string(),
                );
            }
            match state_backend.map(|b| {
                fsql_plan::state_backend::parse_backend(&b)
                    .map(|_| b)
                    .map_err(|e| format!("--state-backend: {e}"))
            }) {
                Some(Err(e)) => Err(e),
                Some(Ok(b)) => {
                    overrides.insert("state.backend".into(), b);
                    test_runner::run_files(&files, no_jit, &overrides)
                }
                None => test_runner::run_files(&files, no_jit, &overrides),
            }
        }
        Command::Checkpoint(CheckpointCommand::List { dir }) => checkpoint::list(&dir),
        Command::Checkpoint(CheckpointCommand::Inspect { path }) => checkpoint::inspect(&path),
        Command::Control(ControlCommand::Keygen { name, key }) => {
            control::publish::keygen(&name, &key)
        }
        Command::Control(ControlCommand::Sign {
            update,
            key_name,
            key,
        }) => control::publish::sign(&update, &key_name, &key),
        Command::Control(ControlCommand::Push {
            update,
            plan,
            ruleset,
            key_name,
            key,
        }) => load::load(&plan).and_then(|plan| {
            control::publish::push(&plan, &update, ruleset.as_deref(), &key_name, &key, true)
        }),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}

/// `fsql check`: every diagnostic of every file; false if any has an error.
fn check(files: &[PathBuf], format: DiagFormat, strict: bool) -> Result<bool, String> {
    let options = CompileOptions {
        strict,
        keep_unused: true,
    };
    let mut ok = true;
    let mut records = Vec::new();
    let (mut errors, mut warnings) = (0, 0);
    for file in files {
        let c = compile_file(file, &options);
        for d in &c.diagnostics {
            match d.severity {
                Severity::Error => errors += 1,
                Severity::Warning => warnings += 1,
            }
            match format {
                DiagFormat::Text => eprint!("{}", d.render(&c.sources)),
                DiagFormat::Json => records.push(d.to_record(&c.sources)),
            }
        }
        ok &= !c.has_errors();
    }
    match format {
        DiagFormat::Text => {
            if errors + warnings > 0 {
                eprintln!(
                    "{errors} error(s), {warnings} warning(s) in {} file(s)",
                    files.len()
                );
            } else {
                eprintln!("ok: {} file(s) checked", files.len());
            }
        }
        DiagFormat::Json => {
            let text = serde_json::to_string_pretty(&records).map_err(|e| e.to_string())?;
            println!("{text}");
        }
    }
    Ok(ok)
}

/// `fsql compile`: writes the plan artefact and prints its hash.
fn compile(file: &std::path::Path, output: Option<PathBuf>) -> Result<bool, String> {
    let plan = load::compile(file)?;
    let out = output.unwrap_or_else(|| file.with_extension("plan"));
    std::fs::write(&out, plan.to_bytes())
        .map_err(|e| format!("cannot write `{}`: {e}", out.display()))?;
    eprintln!("wrote {} ({})", out.display(), plan.header.content_hash);
    Ok(true)
}
