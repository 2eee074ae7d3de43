//! The fsql plan: the contract between the compiler and the runtime.
//!
//! `fsql compile` turns a `.fsql` file into a [`Plan`]: a typed operator graph ([`Pipeline`]) plus a
//! [`PlanHeader`] that records the format version, the compiler version and the source hash. The
//! runtime loads a plan and never sees SQL. Everything in here is plain data with a deterministic
//! serialisation (ordered maps, no floats in their text form), so the same source compiled by the same
//! compiler gives the same bytes.
//!
//! ```
//! use fsql_plan::{Plan, PlanHeader, Pipeline, FORMAT_VERSION};
//! let plan = Plan::new(PlanHeader::new("0.1.0", "sha256:00"), Pipeline::default());
//! let bytes = plan.to_bytes();
//! let back = Plan::from_bytes(&bytes).unwrap();
//! assert_eq!(back.header.format_version, FORMAT_VERSION);
//! assert_eq!(plan.to_bytes(), back.to_bytes());
//! ```

mod artefact;
pub mod changelog;
mod expr;
mod graph;
mod pattern;
pub mod state_backend;
mod types;
mod widening;

pub use artefact::{FORMAT_VERSION, Plan, PlanError, PlanHeader, sha256_hex};
pub use expr::{BinaryOp, Expr, ExprKind, Literal, UnaryOp};
pub use graph::{
    AggregateFunction, ConnectorSpec, EmitMode, GroupAggregate, GroupAggregateSpec, GroupColumn,
    IntervalBounds, JoinKind, JoinSpec, LATE_DATA_SINK, ModelDecl, Node, NodeId, Operator,
    OverAggregate, OverFrame, OverSpec, Pipeline, PredictSpec, RankSpec, Rule, RuleParameter,
    RulesetSpec, SinkSpec, SortKey, SourceSpec, TemporalJoinSpec, WatermarkSpec,
    WindowAggregateSpec, WindowAssignSpec, WindowKind, WindowRankSpec,
};
pub use pattern::{
    AfterMatch, MatchAggregate, MatchRecognizeSpec, Measure, Navigation, Pattern, RowsPerMatch,
};
pub use types::{DataType, Field, Schema};
pub use widening::InputMap;
