//! The operators: Calc (filter + project), Union, Ruleset, Predict (model scoring), Sink and
//! Collect (stateless); GroupAggregate (updating), OVER aggregation, window aggregation, joins and MATCH_RECOGNIZE (stateful),
//! over shared aggregation state ([`agg`]).

pub(crate) mod agg;
pub mod calc;
pub mod group_aggregate;
pub mod join;
pub mod match_recognize;
pub mod over;
pub mod passthrough;
pub mod predict;
pub mod rank;
pub(crate) mod ranked;
pub mod ruleset;
pub mod sink;
pub mod temporal_join;
pub mod window;

pub use calc::Calc;
pub use group_aggregate::GroupAggregate;
pub use join::Join;
pub use match_recognize::MatchRecognize;
pub use over::Over;
pub use passthrough::Passthrough;
pub use predict::Predict;
pub use rank::Rank;
pub use ruleset::Ruleset;
pub use sink::SinkOperator;
pub use temporal_join::TemporalJoin;
pub use window::{WindowAggregate, WindowAssign, WindowRank};
