//! fsql runtime: executes a compiled plan (`fsql_plan::Pipeline`) over Arrow batches.
//!
//! - [`eval`]: the expression interpreter (the reference executor of the expression IR).
//! - [`compiled`]: filters and projections run by the Cranelift JIT (`fsql-jit`), the
//!   interpreter taking over where the JIT does not reach.
//! - [`operator`] / [`operators`]: the operator trait, the stateless operators and OVER
//!   aggregation.
//! - [`source`] / [`sink`]: connectors (filesystem, datagen, payments-generator, nexmark; print, blackhole,
//!   filesystem).
//! - [`batcher`]: size- and linger-bounded batching.
//! - [`executor`]: runs a pipeline ([`run`]); [`checkpoint`]: its snapshots and recovery.
//! - [`format`] / [`text`]: rendering of values and rows, shared by sinks and the CLI.

pub mod append_file;
pub mod batcher;
pub mod checkpoint;
pub mod compiled;
pub mod control;
pub mod duration;
pub mod error;
pub mod eval;
pub mod executor;
pub mod format;
pub mod kafka;
pub mod late_data;
pub mod metrics;
pub mod operator;
pub mod operators;
pub mod sink;
pub mod source;
pub mod state;
pub mod text;

#[cfg(test)]
pub(crate) mod testkit;

pub use batcher::{BatchConfig, Batcher};
pub use duration::parse_duration;
pub use error::{EvalError, RuntimeError};
pub use eval::{evaluate, evaluate_masked, evaluate_predicate};
pub use executor::{
    CheckpointSummary, Collector, MalformedReporter, ProgressOptions, RunOptions, RunSummary,
    SinkSummary, SourceSummary, jit_enabled, run,
};
pub use format::{OutputFormat, QueryWriter};
pub use metrics::{Metrics, NodeMetrics};
pub use operator::{Changes, Event, Operator, RowKind};
pub use sink::SharedBuffer;
pub use source::test_input::TestInput;
pub use source::{MalformedRecord, Source, SourcePoll};
