//! The stateless operators: Calc (filter + project), Union, Ruleset, Sink and Collect.

pub mod calc;
pub mod passthrough;
pub mod ruleset;
pub mod sink;

pub use calc::Calc;
pub use passthrough::Passthrough;
pub use ruleset::Ruleset;
pub use sink::SinkOperator;
