//! `MATCH_RECOGNIZE` in the plan: the row pattern, the variables' conditions and the measures.
//!
//! Conditions and measures are ordinary [`Expr`]s over an *evaluation row*: the input columns of
//! the row being classified (or, for measures, of the match's last row), followed by one column per
//! [`Navigation`] the matcher computes for that row and run (`PREV(amount)`, `LAST(A.amount)`,
//! `SUM(A.amount)`, `CLASSIFIER()`...). So the interpreter and the JIT evaluate them like any
//! other expression, vectorised over all the candidate rows of a step.

use serde::{Deserialize, Serialize};

use crate::expr::Expr;
use crate::types::DataType;

/// A row pattern (`PATTERN (...)`) over variable indexes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Pattern {
    /// One row classified as variable `index`.
    Var(usize),
    /// The pattern that matches no rows: `()`.
    Empty,
    /// `p1 p2 ...`
    Concat(Vec<Pattern>),
    /// `p1 | p2 | ...`, preferring the leftmost.
    Alt(Vec<Pattern>),
    /// `p{min,max}`; `greedy` prefers more repetitions, reluctant (`*?`, `+?`, `{n,m}?`) fewer.
    Repeat {
        pattern: Box<Pattern>,
        min: u32,
        max: Option<u32>,
        greedy: bool,
    },
    /// `PERMUTE(p1, p2, ...)`: every order, the lexicographic order of the list preferred.
    Permute(Vec<Pattern>),
    /// `{- p -}`: matched, but its rows are left out of `ALL ROWS PER MATCH` output.
    Exclude(Box<Pattern>),
    /// `^`: the start of the partition.
    Start,
    /// `$`: the end of the partition.
    End,
}

/// A value the matcher computes for an evaluation row.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Navigation {
    /// `PREV(col, n)`: the value `n` rows before the current row in the partition (physical).
    Prev { column: usize, offset: u32 },
    /// `NEXT(col, n)` (measures only: the row `n` after the current one).
    Next { column: usize, offset: u32 },
    /// `FIRST(v.col, n)` / `LAST(v.col, n)` (`v.col` alone is `LAST(v.col)`): the `n`-th row
    /// from the start (or end) of the rows mapped to `var` so far (`None`: all rows of the match).
    First {
        var: Option<usize>,
        column: usize,
        offset: u32,
    },
    Last {
        var: Option<usize>,
        column: usize,
        offset: u32,
    },
    /// An aggregate over the rows mapped to `var` (`None`: all rows) so far; `column: None` is
    /// `COUNT(*)` / `COUNT(v.*)`.
    Aggregate {
        function: MatchAggregate,
        var: Option<usize>,
        column: Option<usize>,
    },
    /// `CLASSIFIER()`: the variable the row is mapped to.
    Classifier,
    /// `MATCH_NUMBER()`: 1 for the partition's first match, and so on.
    MatchNumber,
    /// `MATCH_ROWTIME()`: the time attribute of the match's last row.
    MatchRowtime,
}

/// Aggregates allowed over pattern variables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MatchAggregate {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

/// One output column of a match.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Measure {
    pub name: String,
    /// Over the evaluation row (input columns of the match's last row, then `navigations`).
    pub expr: Expr,
}

/// `AFTER MATCH SKIP ...`
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AfterMatch {
    PastLastRow,
    ToNextRow,
    ToFirst(usize),
    ToLast(usize),
}

/// `ONE ROW PER MATCH` or `ALL ROWS PER MATCH`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RowsPerMatch {
    One,
    All,
}

/// A `MATCH_RECOGNIZE` operator.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MatchRecognizeSpec {
    /// Input column positions of `PARTITION BY`.
    pub partition_by: Vec<usize>,
    /// The time attribute rows are ordered by.
    pub order_by: usize,
    /// Further `ORDER BY` columns for rows with equal times: (column, descending).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order_then: Vec<(usize, bool)>,
    /// Pattern variable names, in order of first appearance in `PATTERN`.
    pub variables: Vec<String>,
    pub pattern: Pattern,
    /// Per variable, its `DEFINE` condition over the evaluation row (`None`: always true).
    pub defines: Vec<Option<Expr>>,
    /// The values after the input columns of the evaluation row, shared by conditions and
    /// measures.
    pub navigations: Vec<(Navigation, DataType)>,
    pub measures: Vec<Measure>,
    pub rows_per_match: RowsPerMatch,
    pub after_match: AfterMatch,
    /// `WITHIN INTERVAL ...`: a match spans at most this many milliseconds of event time.
    pub within_ms: Option<i64>,
}
