//! Inputs that gained columns: an operator as it would read the inputs it had before.
//!
//! A new source column flows through every `SELECT *` view below it, so a stateful operator
//! reading such a view sees a wider input — and, in the plan, every column after the new one at
//! another position. Its state is still good: what it keeps (argument values, rows of the old
//! columns) does not depend on a column it does not read. To tell, a restore maps the operator's
//! columns back to the positions its checkpoint was taken with ([`Operator::narrowed`]) and
//! compares definitions; stored rows are then widened with the new column NULL.
//!
//! ```
//! use fsql_plan::{DataType, Field, InputMap, Schema};
//! let old = Schema::new(vec![Field::new("card_id", DataType::String, true),
//!                            Field::new("amount", DataType::Double, true)]);
//! let new = Schema::new(vec![Field::new("card_id", DataType::String, true),
//!                            Field::new("device_id", DataType::String, true),
//!                            Field::new("amount", DataType::Double, true)]);
//! let map = InputMap::by_name(&old, &new).unwrap();
//! assert_eq!(map.old_position(2), Some(1));   // amount moved from 1 to 2
//! assert_eq!(map.old_position(1), None);      // device_id is new
//! assert_eq!(map.added().collect::<Vec<_>>(), vec![1]);
//! ```

use std::collections::HashMap;

use crate::expr::{Expr, ExprKind};
use crate::graph::{
    GroupAggregate, GroupColumn, JoinSpec, Operator, OverSpec, SortKey, TemporalJoinSpec,
};
use crate::pattern::{MatchRecognizeSpec, Navigation};
use crate::types::Schema;

/// Where each column of an input is in the same input as it was before it gained columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputMap {
    /// Per current column, its position in the old input (`None`: the column is new).
    old_of_new: Vec<Option<usize>>,
    old_width: usize,
}

impl InputMap {
    /// Matches columns by name: every old column must be in `new` with the same type and
    /// nullability, names must be unique in both, and a new column must be nullable (rows from
    /// before it hold NULL). `None` when `new` is not `old` with columns added.
    pub fn by_name(old: &Schema, new: &Schema) -> Option<InputMap> {
        let mut by_name = HashMap::with_capacity(old.fields.len());
        for (i, f) in old.fields.iter().enumerate() {
            if by_name.insert(f.name.as_str(), i).is_some() {
                return None;
            }
        }
        let mut seen = std::collections::HashSet::with_capacity(new.fields.len());
        let mut old_of_new = Vec::with_capacity(new.fields.len());
        for f in &new.fields {
            if !seen.insert(f.name.as_str()) {
                return None;
            }
            match by_name.get(f.name.as_str()) {
                Some(&i) if old.fields[i] == *f => old_of_new.push(Some(i)),
                Some(_) => return None,
                None if f.nullable => old_of_new.push(None),
                None => return None,
            }
        }
        (old_of_new.iter().flatten().count() == old.fields.len()).then_some(InputMap {
            old_of_new,
            old_width: old.fields.len(),
        })
    }

    /// The old position of current column `i`; `None` for a new column or one out of range.
    pub fn old_position(&self, i: usize) -> Option<usize> {
        self.old_of_new.get(i).copied().flatten()
    }

    /// The old positions of current columns `columns`; `None` when one is new.
    pub fn old_positions(&self, columns: &[usize]) -> Option<Vec<usize>> {
        columns.iter().map(|&c| self.old_position(c)).collect()
    }

    /// The positions of the new columns.
    pub fn added(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.old_of_new.len()).filter(|&i| self.old_of_new[i].is_none())
    }

    fn new_width(&self) -> usize {
        self.old_of_new.len()
    }

    /// Column `i` of a row made of this input followed by further columns (an evaluation row:
    /// derived values, navigations): input columns are mapped, the ones after them shift.
    fn row_position(&self, i: usize) -> Option<usize> {
        match i.checked_sub(self.new_width()) {
            Some(extra) => Some(self.old_width + extra),
            None => self.old_position(i),
        }
    }
}

/// The old position of a current column of `map`'s input, as a function.
fn col(map: &InputMap) -> impl Fn(usize) -> Option<usize> + '_ {
    move |i| map.old_position(i)
}

/// Rewrites every column of `e` with `map`; `None` when some column has no old position.
fn remap(e: &Expr, map: &dyn Fn(usize) -> Option<usize>) -> Option<Expr> {
    let mut e = e.clone();
    let mut stack = vec![&mut e];
    while let Some(node) = stack.pop() {
        if let ExprKind::Column(i) = &mut node.kind {
            *i = map(*i)?;
        }
        stack.extend(node.children_mut());
    }
    Some(e)
}

impl Operator {
    /// This operator as it would read its inputs before they gained columns (`maps`, one per
    /// input), or `None` when it reads a new column or its kind is not mapped. Mapped are the
    /// stateful operators, whose state either holds no input row (aggregates, keys) or holds
    /// rows that are widened on restore (OVER's waiting rows, a pattern's rows, a join's or
    /// TopN's kept rows, versions, session rows).
    pub fn narrowed(&self, maps: &[InputMap]) -> Option<Operator> {
        Some(match (self, maps) {
            (Operator::Over(spec), [map]) => Operator::Over(narrow_over(spec, map)?),
            (Operator::MatchRecognize(spec), [map]) => {
                Operator::MatchRecognize(narrow_match(spec, map)?)
            }
            (Operator::Join(spec), [left, right]) => {
                Operator::Join(narrow_join(spec, left, right)?)
            }
            (Operator::TemporalJoin(spec), [left, right]) => {
                Operator::TemporalJoin(narrow_temporal_join(spec, left, right)?)
            }
            (Operator::GroupAggregate(spec), [map]) => {
                let mut out = spec.clone();
                out.keys = map.old_positions(&spec.keys)?;
                out.aggregates = narrow_aggregates(&spec.aggregates, &col(map))?;
                Operator::GroupAggregate(out)
            }
            (Operator::WindowAggregate(spec), [map]) => {
                let mut out = spec.clone();
                out.time = map.old_position(spec.time)?;
                out.partition = map.old_positions(&spec.partition)?;
                out.group = spec
                    .group
                    .iter()
                    .map(|g| match g {
                        GroupColumn::Key(c) => map.old_position(*c).map(GroupColumn::Key),
                        other => Some(*other),
                    })
                    .collect::<Option<_>>()?;
                out.aggregates = narrow_aggregates(&spec.aggregates, &col(map))?;
                Operator::WindowAggregate(out)
            }
            (Operator::WindowAssign(spec), [map]) => {
                let mut out = spec.clone();
                out.time = map.old_position(spec.time)?;
                out.partition = map.old_positions(&spec.partition)?;
                Operator::WindowAssign(out)
            }
            (Operator::Rank(spec), [map]) => {
                let mut out = spec.clone();
                out.partition_by = map.old_positions(&spec.partition_by)?;
                out.order_by = narrow_sort_keys(&spec.order_by, &col(map))?;
                Operator::Rank(out)
            }
            (Operator::WindowRank(spec), [map]) => {
                let mut out = spec.clone();
                out.partition_by = map.old_positions(&spec.partition_by)?;
                out.window_end = map.old_position(spec.window_end)?;
                out.order_by = narrow_sort_keys(&spec.order_by, &col(map))?;
                Operator::WindowRank(out)
            }
            _ => return None,
        })
    }
}

fn narrow_over(spec: &OverSpec, map: &InputMap) -> Option<OverSpec> {
    let col = |i: usize| map.old_position(i);
    let mut out = spec.clone();
    out.partition_by = map.old_positions(&spec.partition_by)?;
    out.order_by = col(spec.order_by)?;
    for a in &mut out.aggregates {
        a.args = remap_all(&a.args, &col)?;
    }
    Some(out)
}

fn narrow_match(spec: &MatchRecognizeSpec, map: &InputMap) -> Option<MatchRecognizeSpec> {
    let col = |i: usize| map.old_position(i);
    // Navigations and conditions read a row of the input followed by derived values and
    // navigations.
    let row = |i: usize| map.row_position(i);
    let mut out = spec.clone();
    out.partition_by = map.old_positions(&spec.partition_by)?;
    out.order_by = col(spec.order_by)?;
    out.order_then = spec
        .order_then
        .iter()
        .map(|&(c, asc)| Some((col(c)?, asc)))
        .collect::<Option<_>>()?;
    out.derived = remap_all(&spec.derived, &col)?;
    out.defines = spec
        .defines
        .iter()
        .map(|d| remap_opt(d.as_ref(), &row))
        .collect::<Option<_>>()?;
    out.navigations = spec
        .navigations
        .iter()
        .map(|(n, t)| Some((narrow_navigation(n, &row)?, t.clone())))
        .collect::<Option<_>>()?;
    for m in &mut out.measures {
        m.expr = remap(&m.expr, &row)?;
    }
    Some(out)
}

fn narrow_navigation(n: &Navigation, row: &dyn Fn(usize) -> Option<usize>) -> Option<Navigation> {
    let mut out = n.clone();
    match &mut out {
        Navigation::Prev { column, .. }
        | Navigation::Next { column, .. }
        | Navigation::First { column, .. }
        | Navigation::Last { column, .. }
        | Navigation::Aggregate {
            column: Some(column),
            ..
        } => *column = row(*column)?,
        Navigation::Shifted { logical: inner, .. } | Navigation::Final(inner) => {
            **inner = narrow_navigation(inner, row)?;
        }
        Navigation::Aggregate { column: None, .. }
        | Navigation::Classifier
        | Navigation::ClassifierOf(_)
        | Navigation::MatchNumber
        | Navigation::MatchRowtime
        | Navigation::TimedOut
        | Navigation::Expected => {}
    }
    Some(out)
}

fn narrow_aggregates(
    aggs: &[GroupAggregate],
    col: &dyn Fn(usize) -> Option<usize>,
) -> Option<Vec<GroupAggregate>> {
    aggs.iter()
        .map(|a| {
            Some(GroupAggregate {
                args: remap_all(&a.args, col)?,
                filter: remap_opt(a.filter.as_ref(), col)?,
                ..a.clone()
            })
        })
        .collect()
}

fn narrow_sort_keys(
    keys: &[SortKey],
    col: &dyn Fn(usize) -> Option<usize>,
) -> Option<Vec<SortKey>> {
    keys.iter()
        .map(|k| {
            Some(SortKey {
                expr: remap(&k.expr, col)?,
                ..k.clone()
            })
        })
        .collect()
}

/// `e`, if any, rewritten with `col`; `None` when it reads a column without an old position.
fn remap_opt(e: Option<&Expr>, col: &dyn Fn(usize) -> Option<usize>) -> Option<Option<Expr>> {
    match e {
        Some(e) => remap(e, col).map(Some),
        None => Some(None),
    }
}

/// Every expression of `exprs` rewritten with `col`.
fn remap_all(exprs: &[Expr], col: &dyn Fn(usize) -> Option<usize>) -> Option<Vec<Expr>> {
    exprs.iter().map(|e| remap(e, col)).collect()
}

/// A column of a join's output row (the left columns, then the right ones) at its old position.
fn joined<'a>(left: &'a InputMap, right: &'a InputMap) -> impl Fn(usize) -> Option<usize> + 'a {
    move |i| match i.checked_sub(left.new_width()) {
        Some(j) => right.old_position(j).map(|j| left.old_width + j),
        None => left.old_position(i),
    }
}

fn narrow_temporal_join(
    spec: &TemporalJoinSpec,
    left: &InputMap,
    right: &InputMap,
) -> Option<TemporalJoinSpec> {
    Some(TemporalJoinSpec {
        left_keys: remap_all(&spec.left_keys, &col(left))?,
        right_keys: remap_all(&spec.right_keys, &col(right))?,
        left_time: left.old_position(spec.left_time)?,
        right_time: right.old_position(spec.right_time)?,
        residual: remap_opt(spec.residual.as_ref(), &joined(left, right))?,
        ..spec.clone()
    })
}

fn narrow_join(spec: &JoinSpec, left: &InputMap, right: &InputMap) -> Option<JoinSpec> {
    let mut interval = spec.interval;
    if let Some(b) = &mut interval {
        b.left_time = left.old_position(b.left_time)?;
        b.right_time = right.old_position(b.right_time)?;
    }
    Some(JoinSpec {
        left_keys: remap_all(&spec.left_keys, &col(left))?,
        right_keys: remap_all(&spec.right_keys, &col(right))?,
        interval,
        residual: remap_opt(spec.residual.as_ref(), &joined(left, right))?,
        ..spec.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{AggregateFunction, OverAggregate, OverFrame};
    use crate::types::{DataType, Field};

    fn schema(names: &[&str]) -> Schema {
        Schema::new(
            names
                .iter()
                .map(|n| Field::new(*n, DataType::BigInt, true))
                .collect(),
        )
    }

    fn over(partition: usize, order: usize, arg: usize) -> Operator {
        Operator::Over(OverSpec {
            partition_by: vec![partition],
            order_by: order,
            aggregates: vec![OverAggregate {
                function: AggregateFunction::Sum,
                args: vec![Expr::column(arg, DataType::BigInt, true)],
                distinct: false,
                frame: OverFrame::UnboundedRange,
                data_type: DataType::BigInt,
            }],
        })
    }

    #[test]
    fn an_operator_over_a_wider_input_maps_back_to_the_old_positions() {
        let map = InputMap::by_name(&schema(&["k", "t", "a"]), &schema(&["k", "x", "t", "a"]))
            .expect("columns added");
        // The new plan reads k, t, a at 0, 2, 3; before the new column x they were at 0, 1, 2.
        assert_eq!(
            over(0, 2, 3).narrowed(std::slice::from_ref(&map)),
            Some(over(0, 1, 2))
        );
        // An operator that reads the new column has no old form.
        assert_eq!(over(0, 2, 1).narrowed(&[map]), None);
    }

    #[test]
    fn only_added_nullable_columns_of_the_same_type_map() {
        let old = schema(&["k", "t"]);
        assert!(
            InputMap::by_name(&old, &schema(&["k"])).is_none(),
            "a column dropped"
        );
        assert!(
            InputMap::by_name(&old, &schema(&["k", "k", "t"])).is_none(),
            "names repeat"
        );
        let mut retyped = schema(&["k", "t"]);
        retyped.fields[1].data_type = DataType::Double;
        assert!(
            InputMap::by_name(&old, &retyped).is_none(),
            "a type changed"
        );
        let mut not_null = schema(&["k", "x", "t"]);
        not_null.fields[1].nullable = false;
        assert!(
            InputMap::by_name(&old, &not_null).is_none(),
            "a NOT NULL column added"
        );
        let same = InputMap::by_name(&old, &old).expect("unchanged");
        assert_eq!(same.added().count(), 0);
    }

    #[test]
    fn evaluation_rows_of_a_pattern_shift_past_the_input() {
        let map = InputMap::by_name(&schema(&["k", "t"]), &schema(&["x", "k", "t"])).expect("map");
        // Column 3 of a new evaluation row (past 3 input columns) is column 2 of the old one.
        assert_eq!(map.row_position(3), Some(2));
        assert_eq!(map.row_position(1), Some(0));
        assert_eq!(map.row_position(0), None);
    }
}
