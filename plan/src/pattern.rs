//! `MATCH_RECOGNIZE` in the plan: the row pattern, the variables' conditions and the measures.
//!
//! Conditions and measures are ordinary [`Expr`]s over an *evaluation row*: the input columns of
//! the row being classified (or, for measures, of the match's last row), followed by one column per
//! [`Navigation`] the matcher computes for that row and run (`PREV(amount)`, `LAST(A.amount)`,
//! `SUM(A.amount)`, `CLASSIFIER()`...). So the interpreter and the JIT evaluate them like any
//! other expression, vectorised over all the candidate rows of a step.

use serde::{Deserialize, Serialize};

use crate::expr::Expr;
use crate::types::{DataType, Field, Schema};

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
///
/// `column` indexes the *stored row*: the input columns, then [`MatchRecognizeSpec::derived`].
/// `var` indexes [`MatchRecognizeSpec::variables`], then [`MatchRecognizeSpec::subsets`]
/// (`None`: every row of the match, the universal variable).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Navigation {
    /// `PREV(col, n)`: the value `n` rows before the current row, within the match (as Flink:
    /// the row before a match's first row is not visible).
    Prev { column: usize, offset: u32 },
    /// `NEXT(col, n)` (measures only): the value `n` rows after the current row, within the
    /// match.
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
    /// `PREV(FIRST/LAST(v.col, n), m)` / `NEXT(...)`: the row `by` rows after (negative: before)
    /// the row the logical navigation finds, within the match.
    Shifted { logical: Box<Navigation>, by: i64 },
    /// `CLASSIFIER()`: the variable the row is mapped to.
    Classifier,
    /// `CLASSIFIER(v)`: the variable of the last row mapped to `v` (a subset) so far.
    ClassifierOf(usize),
    /// `MATCH_NUMBER()`: 1 for the partition's first match, and so on.
    MatchNumber,
    /// `MATCH_ROWTIME()`: the time attribute of the match's last row.
    MatchRowtime,
    /// `FINAL nav` (measures only): `nav` over the whole match rather than the rows up to the
    /// current one (they differ only in `ALL ROWS PER MATCH`).
    Final(Box<Navigation>),
    /// `TIMED_OUT()`: whether the row is a partial match that `WITHIN` ended (`EMIT TIMEOUTS`).
    TimedOut,
    /// `EXPECTED()`: for a timed-out partial match, the variable it was waiting for.
    Expected,
}

impl Navigation {
    /// The type of its value, given the stored row's fields and the time attribute's position.
    pub fn data_type(&self, row: &[Field], rowtime: usize) -> DataType {
        let of = |c: &usize| row.get(*c).map_or(DataType::Null, |f| f.data_type.clone());
        match self {
            Navigation::Prev { column, .. }
            | Navigation::Next { column, .. }
            | Navigation::First { column, .. }
            | Navigation::Last { column, .. } => of(column),
            Navigation::Aggregate {
                function: MatchAggregate::Count | MatchAggregate::CountDistinct,
                ..
            }
            | Navigation::Aggregate { column: None, .. }
            | Navigation::MatchNumber => DataType::BigInt,
            Navigation::Aggregate {
                function:
                    MatchAggregate::StddevPop
                    | MatchAggregate::StddevSamp
                    | MatchAggregate::VarPop
                    | MatchAggregate::VarSamp,
                ..
            } => DataType::Double,
            Navigation::Aggregate {
                column: Some(c), ..
            } => of(c),
            Navigation::Classifier | Navigation::ClassifierOf(_) | Navigation::Expected => {
                DataType::String
            }
            Navigation::Shifted { logical, .. } => logical.data_type(row, rowtime),
            Navigation::MatchRowtime => of(&rowtime),
            Navigation::Final(inner) => inner.data_type(row, rowtime),
            Navigation::TimedOut => DataType::Boolean,
        }
    }
}

/// Aggregates allowed over pattern variables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MatchAggregate {
    Count,
    /// `COUNT(DISTINCT v.col)`
    CountDistinct,
    Sum,
    Avg,
    Min,
    Max,
    StddevPop,
    StddevSamp,
    VarPop,
    VarSamp,
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

/// `ONE ROW PER MATCH` or `ALL ROWS PER MATCH` with how it shows empty matches and unmatched
/// rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RowsPerMatch {
    One,
    /// `ALL ROWS PER MATCH [SHOW EMPTY MATCHES]`: an empty match shows as one row.
    AllShowEmpty,
    /// `ALL ROWS PER MATCH OMIT EMPTY MATCHES`
    AllOmitEmpty,
    /// `ALL ROWS PER MATCH WITH UNMATCHED ROWS`: also every row in no match, measures NULL.
    AllWithUnmatched,
}

impl RowsPerMatch {
    /// Whether each row of a match is an output row.
    pub fn all_rows(self) -> bool {
        self != RowsPerMatch::One
    }
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
    /// `SUBSET name = (v1, v2, ...)`: union variables (indexes of `variables`), addressed in
    /// navigations after the variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<(String, Vec<usize>)>,
    /// Expressions over an input row that navigations read (`SUM(A.price * A.qty)`): computed
    /// once per input row and stored after its columns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub derived: Vec<Expr>,
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
    /// `WITHIN ... EMIT TIMEOUTS`: partial matches `WITHIN` ends are output too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub emit_timeouts: bool,
}

impl MatchRecognizeSpec {
    /// The name of derived column `k` in stored and evaluation rows.
    pub fn derived_name(k: usize) -> String {
        format!("__arg{k}")
    }

    /// The name of navigation `k`'s column in evaluation rows.
    pub fn navigation_name(k: usize) -> String {
        format!("__nav{k}")
    }

    /// The stored row: the input's fields, then the derived values.
    pub fn row_schema(&self, input: &Schema) -> Schema {
        let mut fields = input.fields.clone();
        for (k, e) in self.derived.iter().enumerate() {
            fields.push(Field::new(Self::derived_name(k), e.data_type.clone(), true));
        }
        Schema::new(fields)
    }

    /// The rows conditions and measures are evaluated over: the stored row, then one column per
    /// navigation.
    pub fn evaluation_schema(&self, input: &Schema) -> Schema {
        let mut schema = self.row_schema(input);
        for (k, (_, t)) in self.navigations.iter().enumerate() {
            schema
                .fields
                .push(Field::new(Self::navigation_name(k), t.clone(), true));
        }
        schema
    }

    /// Whether a row classified as `row_var` belongs to `var` (a variable or a subset).
    pub fn covers(&self, var: usize, row_var: usize) -> bool {
        if var == row_var {
            return true;
        }
        var.checked_sub(self.variables.len())
            .and_then(|s| self.subsets.get(s))
            .is_some_and(|(_, members)| members.contains(&row_var))
    }

    /// The input columns of `ALL ROWS PER MATCH` output, in the standard's order: the
    /// partitioning columns, the ordering columns, then (after the measures) the rest.
    pub fn all_rows_columns(&self, input_width: usize) -> (Vec<usize>, Vec<usize>) {
        let mut leading = self.partition_by.clone();
        for c in std::iter::once(self.order_by).chain(self.order_then.iter().map(|o| o.0)) {
            if !leading.contains(&c) {
                leading.push(c);
            }
        }
        let rest = (0..input_width).filter(|c| !leading.contains(c)).collect();
        (leading, rest)
    }
}
