//! The fsql compiler: `.fsql` text to a checked, typed [`fsql_plan::Plan`].
//!
//! ```no_run
//! use fsql_compiler::{CompileOptions, compile_file};
//! let c = compile_file(std::path::Path::new("pipeline.fsql"), &CompileOptions::default());
//! for d in &c.diagnostics {
//!     eprint!("{}", d.render(&c.sources));
//! }
//! let plan = c.plan().expect("no errors");
//! std::fs::write("pipeline.plan", plan.to_bytes()).unwrap();
//! ```
//!
//! Pipeline: [`parse`] (pest + sqlparser) → `compile` (catalog, DataFusion planning and type
//! coercion, Flink type rules) → `lower` (DataFusion logical plans to plan nodes).

mod aggregates;
pub mod ast;
mod bounds;
mod changelog;
mod compile;
mod depth;
pub mod diagnostic;
mod functions;
mod lower;
mod lower_expr;
mod lower_join;
mod match_recognize;
pub mod options;
pub mod parse;
mod rewrite;
mod rule_update;
pub mod source;
mod sql_types;
mod tvf;
mod typecheck;
mod types;

pub use compile::{
    Compilation, CompileOptions, RelationInfo, compile_file, compile_source, constants,
    parameter_value,
};
pub use diagnostic::{Diagnostic, Severity};
pub use rule_update::compile_rule_condition;
