//! DataFusion `Join`s to [`JoinSpec`]s: equi-join keys, the time bounds of an interval join
//! (conditions like `l.ts BETWEEN r.ts - INTERVAL '4' HOUR AND r.ts` on the two inputs' event-time
//! attributes), and the rest of the condition as a residual predicate.

use datafusion::common::DFSchema;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr as DfExpr, JoinType, Operator as DfOp};
use fsql_plan::{BinaryOp, DataType, Expr, ExprKind, IntervalBounds, JoinKind, JoinSpec};

use crate::lower_expr::{Unsupported, literal, lower_expr};

/// Which input a column of the joined schema belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Left,
    Right,
}

/// `column + offset_ms` on one side.
#[derive(Clone, Copy, Debug)]
struct TimeTerm {
    side: Side,
    offset_ms: i64,
}

/// A bound on `left.time − right.time`.
#[derive(Clone, Copy, Debug)]
struct Bound {
    value: i64,
    inclusive: bool,
}

/// The join's spec, given its inputs' event-time columns (positions in each input).
pub fn join_spec(
    join: &datafusion::logical_expr::Join,
    left_time: Option<usize>,
    right_time: Option<usize>,
) -> Result<JoinSpec, Unsupported> {
    let kind = match join.join_type {
        JoinType::Inner => JoinKind::Inner,
        JoinType::Left => JoinKind::Left,
        JoinType::Right => JoinKind::Right,
        JoinType::Full => JoinKind::Full,
        other => {
            return Err(Unsupported(format!("{other} joins are not supported")));
        }
    };
    let (left, right) = (join.left.schema(), join.right.schema());
    let mut left_keys = Vec::new();
    let mut right_keys = Vec::new();
    for (l, r) in &join.on {
        left_keys.push(lower_expr(l, left)?);
        right_keys.push(lower_expr(r, right)?);
    }
    let both = left
        .join(right)
        .map_err(|e| Unsupported(e.strip_backtrace()))?;
    let left_width = left.fields().len();
    let (mut lower, mut upper): (Option<Bound>, Option<Bound>) = (None, None);
    let mut time_conjuncts = Vec::new();
    let mut residual = Vec::new();
    if let Some(filter) = &join.filter {
        for c in split_conjunction(filter) {
            let bounds = time_bounds(c, &both, left_width, left_time, right_time);
            if bounds.is_empty() {
                residual.push(c.clone());
                continue;
            }
            time_conjuncts.push(c.clone());
            for (is_lower, b) in bounds {
                let slot = if is_lower { &mut lower } else { &mut upper };
                // Several bounds on one side: the tightest holds.
                let tighter = |old: &Bound| {
                    let (new, old) = (key(b, is_lower), key(*old, is_lower));
                    if is_lower { new > old } else { new < old }
                };
                if slot.as_ref().is_none_or(tighter) {
                    *slot = Some(b);
                }
            }
        }
    }
    let interval = match (lower, upper, left_time, right_time) {
        (Some(lo), Some(hi), Some(lt), Some(rt)) => Some(IntervalBounds {
            left_time: lt,
            right_time: rt,
            lower_ms: lo.value,
            lower_inclusive: lo.inclusive,
            upper_ms: hi.value,
            upper_inclusive: hi.inclusive,
        }),
        _ => {
            // Not an interval join: time conditions are ordinary conditions.
            residual.extend(time_conjuncts);
            None
        }
    };
    if interval.is_none() && kind != JoinKind::Inner {
        return Err(Unsupported(format!(
            "a {kind:?} OUTER join needs time bounds between the inputs' event-time attributes (an interval join, e.g. ON l.id = r.id AND l.ts BETWEEN r.ts - INTERVAL '1' HOUR AND r.ts): without them its NULL-padded rows would have to be retracted later"
        )));
    }
    let residual = residual
        .iter()
        .map(|c| lower_expr(c, &both))
        .reduce(|a, b| {
            let (a, b) = (a?, b?);
            Ok(Expr {
                nullable: a.nullable || b.nullable,
                kind: ExprKind::Binary {
                    op: BinaryOp::And,
                    left: Box::new(a),
                    right: Box::new(b),
                },
                data_type: DataType::Boolean,
            })
        })
        .transpose()?;
    Ok(JoinSpec {
        kind,
        left_keys,
        right_keys,
        interval,
        residual,
    })
}

/// A bound's value made comparable across inclusive and strict forms (in half milliseconds).
fn key(b: Bound, is_lower: bool) -> i128 {
    let v = b.value as i128 * 2;
    match (b.inclusive, is_lower) {
        (true, _) => v,
        (false, true) => v + 1,
        (false, false) => v - 1,
    }
}

/// The bounds on `left.time − right.time` a conjunct states: `(is_lower, bound)` pairs; none when
/// it is not a comparison of the two event-time attributes.
fn time_bounds(
    c: &DfExpr,
    both: &DFSchema,
    left_width: usize,
    left_time: Option<usize>,
    right_time: Option<usize>,
) -> Vec<(bool, Bound)> {
    let term = |e: &DfExpr| time_term(e, both, left_width, left_time, right_time);
    match c {
        DfExpr::Between(b) if !b.negated => {
            let (Some(x), Some(lo), Some(hi)) = (term(&b.expr), term(&b.low), term(&b.high)) else {
                return vec![];
            };
            [compare(x, DfOp::GtEq, lo), compare(x, DfOp::LtEq, hi)]
                .into_iter()
                .flatten()
                .collect()
        }
        DfExpr::BinaryExpr(BinaryExpr { left, op, right }) => match (term(left), term(right)) {
            // `l.ts = r.ts + x`: both bounds at once.
            (Some(a), Some(b)) if *op == DfOp::Eq => {
                [compare(a, DfOp::GtEq, b), compare(a, DfOp::LtEq, b)]
                    .into_iter()
                    .flatten()
                    .collect()
            }
            (Some(a), Some(b)) => compare(a, *op, b).into_iter().collect(),
            _ => vec![],
        },
        _ => vec![],
    }
}

/// `a op b` as a bound on `left.time − right.time`, when `a` and `b` are on different sides.
fn compare(a: TimeTerm, op: DfOp, b: TimeTerm) -> Option<(bool, Bound)> {
    // Orient as left op right.
    let (l, op, r) = match (a.side, b.side) {
        (Side::Left, Side::Right) => (a, op, b),
        (Side::Right, Side::Left) => (b, flip(op)?, a),
        _ => return None,
    };
    // l.t + lo op r.t + ro  ⇔  l.t − r.t op ro − lo
    let value = r.offset_ms.checked_sub(l.offset_ms)?;
    Some(match op {
        DfOp::GtEq => (
            true,
            Bound {
                value,
                inclusive: true,
            },
        ),
        DfOp::Gt => (
            true,
            Bound {
                value,
                inclusive: false,
            },
        ),
        DfOp::LtEq => (
            false,
            Bound {
                value,
                inclusive: true,
            },
        ),
        DfOp::Lt => (
            false,
            Bound {
                value,
                inclusive: false,
            },
        ),
        _ => return None,
    })
}

fn flip(op: DfOp) -> Option<DfOp> {
    Some(match op {
        DfOp::Gt => DfOp::Lt,
        DfOp::GtEq => DfOp::LtEq,
        DfOp::Lt => DfOp::Gt,
        DfOp::LtEq => DfOp::GtEq,
        _ => return None,
    })
}

/// `col`, `col + INTERVAL` or `col - INTERVAL`, where `col` is one input's event-time attribute.
fn time_term(
    e: &DfExpr,
    both: &DFSchema,
    left_width: usize,
    left_time: Option<usize>,
    right_time: Option<usize>,
) -> Option<TimeTerm> {
    match e {
        DfExpr::Column(c) => {
            let i = both.index_of_column(c).ok()?;
            let (side, column, time) = match i.checked_sub(left_width) {
                None => (Side::Left, i, left_time),
                Some(r) => (Side::Right, r, right_time),
            };
            (time == Some(column)).then_some(TimeTerm { side, offset_ms: 0 })
        }
        DfExpr::Cast(c) => time_term(&c.expr, both, left_width, left_time, right_time),
        DfExpr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let base = time_term(left, both, left_width, left_time, right_time)?;
            let DfExpr::Literal(v, _) = right.as_ref() else {
                return None;
            };
            let (fsql_plan::Literal::Int(ms), DataType::IntervalDayTime) = literal(v).ok()? else {
                return None;
            };
            let offset_ms = match op {
                DfOp::Plus => base.offset_ms.checked_add(ms)?,
                DfOp::Minus => base.offset_ms.checked_sub(ms)?,
                _ => return None,
            };
            Some(TimeTerm { offset_ms, ..base })
        }
        _ => None,
    }
}

/// An event-time temporal join: `left [LEFT] JOIN versioned FOR SYSTEM_TIME AS OF left.time ON
/// left.k = versioned.pk`.
pub fn temporal_join(
    j: &datafusion::logical_expr::Join,
    left: crate::lower::Rel,
    right: crate::lower::Rel,
    versioned: &crate::lower::VersionedTable,
    nodes: &mut Vec<fsql_plan::Node>,
    resolver: &mut dyn crate::lower::ScanResolver,
    plan: &datafusion::logical_expr::LogicalPlan,
) -> Result<crate::lower::Rel, Unsupported> {
    use crate::lower::{Rel, materialize, output_names, push_node, schema_of, time_attributes};
    use fsql_plan::{Operator, TemporalJoinSpec};
    let table = &versioned.table;
    let kind = match j.join_type {
        JoinType::Inner => JoinKind::Inner,
        JoinType::Left => JoinKind::Left,
        other => {
            return Err(Unsupported(format!(
                "a temporal join (FOR SYSTEM_TIME AS OF) is an inner or LEFT join, not {other}"
            )));
        }
    };
    if versioned.primary_key.is_empty() {
        return Err(Unsupported(format!(
            "`{table}` needs a PRIMARY KEY (...) NOT ENFORCED to be a versioned table: FOR SYSTEM_TIME AS OF finds the version of each key"
        )));
    }
    let (ls, rs) = (j.left.schema(), j.right.schema());
    let mut left_keys = Vec::new();
    let mut right_keys = Vec::new();
    let mut key_names = Vec::new();
    for (l, r) in &j.on {
        left_keys.push(lower_expr(l, ls)?);
        right_keys.push(lower_expr(r, rs)?);
        if let DfExpr::Column(c) = r {
            key_names.push(c.name.clone());
        }
    }
    if let Some(missing) = versioned
        .primary_key
        .iter()
        .find(|k| !key_names.contains(k))
    {
        return Err(Unsupported(format!(
            "a temporal join's condition must equate the primary key of `{table}`: `{missing}` is missing (ON ... = {table}.{missing})"
        )));
    }
    let no_watermark = || {
        Unsupported(format!(
            "`{table}` needs a WATERMARK to be a versioned table: each row is its key's version from its event time on"
        ))
    };
    // The version time, even when the query does not read it: appended to the right side (and
    // dropped again after the join).
    let mut right = right;
    let mut extra = false;
    let right_time = match right.event_time {
        Some(t) => t,
        None => {
            let source = nodes.get(right.input.0 as usize).ok_or_else(no_watermark)?;
            let st = source.event_time.ok_or_else(no_watermark)?;
            let f = source
                .schema
                .fields
                .get(st)
                .cloned()
                .ok_or_else(no_watermark)?;
            let Some(p) = right.projections.as_mut() else {
                return Err(no_watermark());
            };
            p.push(Expr::column(st, f.data_type.clone(), f.nullable));
            right.schema.fields.push(fsql_plan::Field::new(
                "__version_time",
                f.data_type,
                f.nullable,
            ));
            extra = true;
            right.schema.fields.len() - 1
        }
    };
    // The AS OF column, even when the query does not read it: appended to the left side (and
    // dropped again after the join).
    let mut left = left;
    let (left_time, left_extra) = match ls
        .fields()
        .iter()
        .position(|f| *f.name() == versioned.as_of)
    {
        Some(t) => (t, false),
        None => {
            let missing = || {
                Unsupported(format!(
                    "FOR SYSTEM_TIME AS OF `{}`: no such column on the left side of the join",
                    versioned.as_of
                ))
            };
            let source = nodes.get(left.input.0 as usize).ok_or_else(missing)?;
            let st = source
                .schema
                .fields
                .iter()
                .position(|f| f.name == versioned.as_of)
                .ok_or_else(missing)?;
            let f = source.schema.fields[st].clone();
            let Some(p) = left.projections.as_mut() else {
                return Err(missing());
            };
            p.push(Expr::column(st, f.data_type.clone(), f.nullable));
            left.schema.fields.push(f);
            if source.event_time == Some(st) {
                left.event_time = Some(left.schema.fields.len() - 1);
            }
            (left.schema.fields.len() - 1, true)
        }
    };
    let (lw, rw) = (ls.fields().len(), rs.fields().len());
    // Positions in the joined row: left (+ its extra column), then right (+ its extra column).
    let shift = usize::from(left_extra);
    let both = ls.join(rs).map_err(|e| Unsupported(e.strip_backtrace()))?;
    let residual = match &j.filter {
        Some(f) => {
            let e = lower_expr(f, &both)?;
            let moved: Vec<Expr> = both
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let at = if i < lw { i } else { i + shift };
                    Expr::column(
                        at,
                        crate::lower_expr::plan_type(f.data_type()).unwrap_or(DataType::Null),
                        f.is_nullable(),
                    )
                })
                .collect();
            Some(crate::lower::inline(e, &moved))
        }
        None => None,
    };
    let left_field = left_extra.then(|| left.schema.fields[left_time].clone());
    let left_node = materialize(left, nodes, &resolver.node_name("calc"));
    if !time_attributes(nodes, left_node).contains(&left_time) {
        return Err(Unsupported(format!(
            "FOR SYSTEM_TIME AS OF `{}`: an event-time temporal join needs the left side's event-time attribute",
            versioned.as_of
        )));
    }
    let right_field = extra.then(|| right.schema.fields[right_time].clone());
    let right_node = materialize(right, nodes, &resolver.node_name("calc"));
    let visible = schema_of(j.schema.as_ref(), &output_names(plan))?;
    let mut fields = visible.fields[..lw].to_vec();
    fields.extend(left_field);
    fields.extend(visible.fields[lw..].iter().cloned());
    fields.extend(right_field);
    let schema = fsql_plan::Schema::new(fields);
    let id = push_node(
        nodes,
        resolver.node_name("temporal-join"),
        vec![left_node, right_node],
        schema.clone(),
        Some(left_time),
        Operator::TemporalJoin(TemporalJoinSpec {
            kind,
            left_keys,
            right_keys,
            left_time,
            right_time,
            residual,
        }),
    );
    let keep: Vec<usize> = (0..lw).chain(lw + shift..lw + shift + rw).collect();
    let projections = (left_extra || extra).then(|| {
        keep.iter()
            .map(|&i| {
                Expr::column(
                    i,
                    schema.fields[i].data_type.clone(),
                    schema.fields[i].nullable,
                )
            })
            .collect()
    });
    Ok(Rel {
        input: id,
        filter: None,
        projections,
        schema: visible,
        event_time: (!left_extra).then_some(left_time),
    })
}
