//! DataFusion logical plans to plan nodes.
//!
//! Each relational operator lowers to a [`Rel`]: a pending filter/projection over an existing node.
//! Filters and projections fuse into one `Calc` node when the relation is materialised, as Flink's
//! Calc does; anything stateful that has no streaming operator yet is reported, not approximated.

use std::sync::Arc;

use arrow::datatypes::Field as ArrowField;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, DataFusionError, ScalarValue, TableReference};
use datafusion::logical_expr::{
    Expr as DfExpr, ExprSchemable, LogicalPlan, WindowFrame, WindowFrameBound, WindowFrameUnits,
};
use fsql_plan::{
    AggregateFunction, BinaryOp, DataType, Expr, ExprKind, Field, GroupAggregate, GroupColumn,
    ModelDecl, Node, NodeId, Operator, OverAggregate, OverFrame, OverSpec, PredictSpec, RankSpec,
    Schema, SortKey, WindowAggregateSpec, WindowAssignSpec, WindowRankSpec,
};

use crate::aggregates::aggregate_function;
use crate::lower_expr::{Unsupported, lower_expr, plan_type};
use crate::tvf::{PREDICT_FUNCTION, WindowTvf, window_schema};

/// A relation: rows of `input` where `filter` holds, mapped through `projections`.
#[derive(Clone, Debug)]
pub struct Rel {
    pub input: NodeId,
    pub filter: Option<Expr>,
    /// `None` = the input's columns unchanged.
    pub projections: Option<Vec<Expr>>,
    pub schema: Schema,
    pub event_time: Option<usize>,
}

impl Rel {
    /// Its projections, or (it has none) the identity over its columns.
    fn projections_or_identity(&self) -> Vec<Expr> {
        self.projections
            .clone()
            .unwrap_or_else(|| column_refs(&self.schema.fields))
    }

    /// Node `input`'s rows as they are.
    pub fn node(input: NodeId, schema: Schema, event_time: Option<usize>) -> Rel {
        Rel {
            input,
            filter: None,
            projections: None,
            schema,
            event_time,
        }
    }
}

/// Resolves a scanned table name to the node producing it (creating source nodes on first use),
/// and names the operators a statement creates.
pub trait ScanResolver {
    /// A stable name for the next operator of `kind` the current statement creates
    /// (e.g. `card_velocity#over1`).
    fn node_name(&mut self, kind: &str) -> String;

    fn scan(
        &mut self,
        table: &str,
        nodes: &mut Vec<Node>,
    ) -> Result<(NodeId, Schema, Option<usize>), Unsupported>;

    /// The window TVF a synthetic `__window<n>` table stands for.
    fn window(&self, table: &str) -> Option<WindowTvf>;

    /// The versioned table a synthetic `__versioned<n>` table stands for (a temporal join's right
    /// side); claims it, so that one not under a join can be reported.
    fn versioned(&mut self, table: &str) -> Option<VersionedTable>;

    /// The table a synthetic `__versioned<n>` table reads.
    fn versioned_table(&self, table: &str) -> Option<String>;

    /// The model `CREATE MODEL name` declared (for scalar `PREDICT` calls).
    fn model(&self, name: &str) -> Option<ModelDecl>;
}

/// A temporal join's versioned table.
#[derive(Clone, Debug)]
pub struct VersionedTable {
    pub table: String,
    /// The left input's time column (`FOR SYSTEM_TIME AS OF`).
    pub as_of: String,
    pub primary_key: Vec<String>,
}

/// Lowers `plan` into nodes appended to `nodes`.
pub fn lower_plan(
    plan: &LogicalPlan,
    nodes: &mut Vec<Node>,
    resolver: &mut dyn ScanResolver,
) -> Result<Rel, Unsupported> {
    lower(plan, nodes, resolver, None)
}

/// Expressions whose scalar `PREDICT` calls were lifted into model-scoring nodes: `rel` now ends
/// with those nodes, `schema` describes its rows, and each call in `exprs` became a reference to
/// its score column.
struct Scored {
    exprs: Vec<DfExpr>,
    schema: DFSchema,
    rel: Rel,
}

/// Lifts every `PREDICT(m, x, ...)` call of `exprs` (over `schema`, the rows of `rel`) into an
/// [`Operator::Predict`] node: a calc appends the features to the row, the model appends its
/// score and version, and the call becomes the score column. Input columns keep their
/// positions, so the expressions are lowered over the appended row as before.
fn lift_predictions(
    exprs: Vec<DfExpr>,
    schema: &DFSchema,
    mut rel: Rel,
    nodes: &mut Vec<Node>,
    resolver: &mut dyn ScanResolver,
) -> Result<Scored, Unsupported> {
    // Score columns are named after the node count, so that the calls of a filter and of the
    // projection above it (each lifted on its own) never share a name.
    let first = nodes.len();
    let mut calls: Vec<(String, Vec<DfExpr>)> = Vec::new();
    let exprs = exprs
        .into_iter()
        .map(|e| {
            e.transform_up(|x| match x {
                DfExpr::ScalarFunction(f) if f.func.name() == PREDICT_FUNCTION => {
                    let model = match f.args.first() {
                        Some(DfExpr::Literal(ScalarValue::Utf8(Some(m)), _)) => m.clone(),
                        _ => {
                            return Err(DataFusionError::Plan(
                                "PREDICT(model, feature, ...) names a model first".into(),
                            ));
                        }
                    };
                    let column = format!("{PREDICT_FUNCTION}{}", first + calls.len());
                    calls.push((model, f.args[1..].to_vec()));
                    Ok(Transformed::yes(DfExpr::Column(Column::from_name(column))))
                }
                other => Ok(Transformed::no(other)),
            })
            .map(|t| t.data)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Unsupported(e.strip_backtrace()))?;
    if calls.is_empty() {
        return Ok(Scored {
            exprs,
            schema: schema.clone(),
            rel,
        });
    }
    let arrow_field = |f: &Field| {
        Arc::new(ArrowField::new(
            f.name.clone(),
            f.data_type.to_arrow(),
            f.nullable,
        ))
    };
    // The DataFusion view of `rel`'s row: `schema`, then what an earlier lift appended.
    let mut fields: Vec<(Option<TableReference>, Arc<ArrowField>)> = schema
        .iter()
        .map(|(q, f)| (q.cloned(), f.clone()))
        .collect();
    for f in rel.schema.fields.iter().skip(fields.len()) {
        fields.push((None, arrow_field(f)));
    }
    for (k, (name, args)) in calls.iter().enumerate() {
        let k = first + k;
        let model = resolver.model(name).ok_or_else(|| {
            Unsupported(format!(
                "PREDICT: model `{name}` not found (declare it with CREATE MODEL before the query)"
            ))
        })?;
        if args.len() != model.inputs.fields.len() {
            return Err(Unsupported(format!(
                "PREDICT passes {} features to model `{name}`, whose INPUT has {} ({})",
                args.len(),
                model.inputs.fields.len(),
                model.input_list()
            )));
        }
        let [output] = model.outputs.fields.as_slice() else {
            return Err(Unsupported(format!(
                "PREDICT returns one value, and model `{name}` has {} OUTPUT columns: score it with ML_PREDICT(TABLE t, MODEL {name}, DESCRIPTOR(...)), which appends them all",
                model.outputs.fields.len()
            )));
        };
        // The row so far, then the features.
        let width = rel.schema.fields.len();
        let mut projections: Vec<Expr> = column_refs(&rel.schema.fields);
        let mut names: Vec<String> = rel.schema.fields.iter().map(|f| f.name.clone()).collect();
        for (i, arg) in args.iter().enumerate() {
            let feature = lower_expr(arg, schema)?;
            if !(feature.data_type.is_numeric() || feature.data_type == DataType::Boolean) {
                return Err(Unsupported(format!(
                    "PREDICT: feature {} of model `{name}` (`{arg}`) is {}; model inputs are numeric (or BOOLEAN)",
                    i + 1,
                    feature.data_type
                )));
            }
            projections.push(feature);
            names.push(format!("{PREDICT_FUNCTION}{k}_feature{i}"));
        }
        let featured = project(rel, projections, Some(names));
        let calc = materialize(featured.clone(), nodes, &resolver.node_name("calc"));
        let mut out = featured.schema.clone();
        let score = format!("{PREDICT_FUNCTION}{k}");
        out.fields
            .push(Field::new(score.clone(), output.data_type.clone(), false));
        out.fields.push(Field::new(
            format!("{PREDICT_FUNCTION}{k}_version"),
            DataType::BigInt,
            false,
        ));
        let id = push_node(
            nodes,
            resolver.node_name("predict"),
            vec![calc],
            out.clone(),
            featured.event_time,
            Operator::Predict(PredictSpec {
                model: model.name.clone(),
                features: (width..width + args.len()).collect(),
            }),
        );
        rel = Rel::node(id, out.clone(), featured.event_time);
        // The DataFusion view of the same row: the features and the version are never
        // referenced by name, the score is.
        for field in &out.fields[width..] {
            fields.push((None, arrow_field(field)));
        }
    }
    let schema = DFSchema::new_with_metadata(fields, Default::default())
        .map_err(|e| Unsupported(e.strip_backtrace()))?;
    Ok(Scored { exprs, schema, rel })
}

/// Lowers `plan`. With `windowed`, a window TVF scan below filters and projections is not
/// materialised: the relation reads the TVF's data with its three window columns *virtual*
/// (positions past the data node's columns) and the TVF lands in `windowed`, for the window
/// aggregation above to slice by.
fn lower(
    plan: &LogicalPlan,
    nodes: &mut Vec<Node>,
    resolver: &mut dyn ScanResolver,
    mut windowed: Option<&mut Option<WindowTvf>>,
) -> Result<Rel, Unsupported> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let table = scan.table_name.table();
            let (node, schema, event_time) = match resolver.window(table) {
                None if table.starts_with(crate::tvf::VERSIONED_RELATION) => {
                    let real = resolver
                        .versioned_table(table)
                        .ok_or_else(|| Unsupported("unknown versioned table".into()))?;
                    resolver.scan(&real, nodes)?
                }
                None => resolver.scan(table, nodes)?,
                Some(tvf) => {
                    let (data, data_schema, _) = resolver.scan(&tvf.data, nodes)?;
                    let time = column_of(&data_schema, &tvf.time_column)?;
                    let schema = window_schema(&data_schema, time);
                    match windowed.as_deref_mut() {
                        Some(slot) => {
                            *slot = Some(tvf);
                            (data, schema, Some(time))
                        }
                        None => {
                            let partition = tvf
                                .partition
                                .iter()
                                .map(|k| column_of(&data_schema, k))
                                .collect::<Result<Vec<_>, _>>()?;
                            let event_time = Some(schema.fields.len() - 1);
                            let id = push_node(
                                nodes,
                                resolver.node_name("window"),
                                vec![data],
                                schema.clone(),
                                event_time,
                                Operator::WindowAssign(WindowAssignSpec {
                                    window: tvf.kind,
                                    time,
                                    partition,
                                }),
                            );
                            (id, schema, event_time)
                        }
                    }
                }
            };
            let mut rel = Rel::node(node, schema, event_time);
            // Filters DataFusion pushed into the scan (as hints; the Filter above stays) apply to the
            // full table row, before the scan's projection.
            if !scan.filters.is_empty() {
                let full = DFSchema::try_from_qualified_schema(
                    scan.table_name.clone(),
                    &scan.source.schema(),
                )
                .map_err(|e| Unsupported(e.strip_backtrace()))?;
                for f in &scan.filters {
                    rel = filter(rel, lower_expr(f, &full)?);
                }
            }
            if let Some(indices) = &scan.projection {
                let exprs = indices
                    .iter()
                    .map(|&i| {
                        let f = rel.schema.fields.get(i).ok_or_else(|| {
                            Unsupported(format!("projection index {i} out of range"))
                        })?;
                        Ok(Expr::column(i, f.data_type.clone(), f.nullable))
                    })
                    .collect::<Result<Vec<_>, Unsupported>>()?;
                rel = project(rel, exprs, None);
            }
            Ok(rel)
        }
        LogicalPlan::Filter(f) => {
            let rel = lower(&f.input, nodes, resolver, windowed)?;
            let scored = lift_predictions(
                vec![f.predicate.clone()],
                f.input.schema(),
                rel,
                nodes,
                resolver,
            )?;
            let pred = lower_expr(&scored.exprs[0], &scored.schema)?;
            let mut rel = filter(scored.rel, pred);
            // The filter's rows are its input's: drop what scoring appended.
            let width = f.input.schema().fields().len();
            if rel.schema.fields.len() > width {
                let columns = column_refs(&rel.schema.fields[..width]);
                rel = project(rel, columns, None);
            }
            limit_rank(&rel, nodes);
            Ok(rel)
        }
        LogicalPlan::Projection(p) => {
            let rel = lower(&p.input, nodes, resolver, windowed)?;
            let scored = lift_predictions(p.expr.clone(), p.input.schema(), rel, nodes, resolver)?;
            let exprs = scored
                .exprs
                .iter()
                .map(|e| lower_expr(e, &scored.schema))
                .collect::<Result<Vec<_>, _>>()?;
            let names = output_names(plan);
            Ok(project(scored.rel, exprs, Some(names)))
        }
        LogicalPlan::SubqueryAlias(a) => lower(&a.input, nodes, resolver, windowed),
        LogicalPlan::Aggregate(a) => {
            let mut window = None;
            let rel = lower(&a.input, nodes, resolver, Some(&mut window))?;
            let Some(tvf) = window else {
                return group_aggregate(a, rel, nodes, resolver);
            };
            window_aggregate(a, rel, tvf, nodes, resolver)
        }
        LogicalPlan::Window(w) if is_row_number(&w.window_expr) => {
            let rel = lower_plan(&w.input, nodes, resolver)?;
            let mut spec = window_rank(&w.window_expr, w.input.schema(), &rel)?;
            // ORDER BY one event-time attribute, descending: a deduplication keeping the last row.
            let times = time_attributes(nodes, rel.input);
            let latest_on_ties = match spec.order_by().as_slice() {
                [k] if k.descending => match (&k.expr.kind, &rel.projections) {
                    (ExprKind::Column(c), None) => times.contains(c),
                    (ExprKind::Column(c), Some(p)) => p.get(*c).is_some_and(
                        |e| matches!(e.kind, ExprKind::Column(i) if times.contains(&i)),
                    ),
                    _ => false,
                },
                _ => false,
            };
            spec.set_latest_on_ties(latest_on_ties);
            // The result is no longer a time attribute: rows leave by window, not by time.
            let input = materialize(rel, nodes, &resolver.node_name("calc"));
            let inputs = w.input.schema().fields().len();
            let names: Vec<String> = w
                .schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    if i < inputs {
                        f.name().clone()
                    } else {
                        "rank$0".into()
                    }
                })
                .collect();
            let schema = schema_of(w.schema.as_ref(), &names)?;
            let id = push_node(
                nodes,
                resolver.node_name("rank"),
                vec![input],
                schema.clone(),
                None,
                spec.into_operator(),
            );
            Ok(Rel::node(id, schema, None))
        }
        LogicalPlan::Window(w) => {
            let rel = lower_plan(&w.input, nodes, resolver)?;
            let event_time = rel.event_time;
            let input = materialize(rel, nodes, &resolver.node_name("calc"));
            let spec = over_spec(&w.window_expr, w.input.schema(), event_time)?;
            // Input columns keep their names; aggregate columns get short internal names (the
            // query's aliases name them in the projection above).
            let inputs = w.input.schema().fields().len();
            let names: Vec<String> = w
                .schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| match i.checked_sub(inputs) {
                    Some(a) => format!("over${a}"),
                    None => f.name().clone(),
                })
                .collect();
            let schema = schema_of(w.schema.as_ref(), &names)?;
            let id = push_node(
                nodes,
                resolver.node_name("over"),
                vec![input],
                schema.clone(),
                event_time,
                Operator::Over(spec),
            );
            Ok(Rel::node(id, schema, event_time))
        }
        LogicalPlan::Join(j) => {
            let versioned = versioned_scan(&j.right).and_then(|t| resolver.versioned(&t));
            let left = lower_plan(&j.left, nodes, resolver)?;
            let right = lower_plan(&j.right, nodes, resolver)?;
            if let Some(v) = versioned {
                return crate::lower_join::temporal_join(j, left, right, &v, nodes, resolver, plan);
            }
            let spec = crate::lower_join::join_spec(j, left.event_time, right.event_time)?;
            let left_width = left.schema.fields.len();
            // An interval join keeps the left input's time attribute (its output watermark is
            // held back by the bounds); a regular join keeps one only when the other input has
            // none (its watermark then stays at the minimum until that input ends).
            let event_time = match (&spec.interval, left.event_time, right.event_time) {
                (Some(_), lt, _) => lt,
                (None, Some(lt), None) => Some(lt),
                (None, None, Some(rt)) => Some(left_width + rt),
                _ => None,
            };
            let inputs = vec![
                materialize(left, nodes, &resolver.node_name("calc")),
                materialize(right, nodes, &resolver.node_name("calc")),
            ];
            let schema = schema_of(j.schema.as_ref(), &output_names(plan))?;
            let id = push_node(
                nodes,
                resolver.node_name("join"),
                inputs,
                schema.clone(),
                event_time,
                Operator::Join(spec),
            );
            Ok(Rel::node(id, schema, event_time))
        }
        LogicalPlan::Union(u) => {
            let mut inputs = Vec::new();
            let mut event_time = None;
            for (i, input) in u.inputs.iter().enumerate() {
                let rel = lower_plan(input, nodes, resolver)?;
                if i == 0 {
                    event_time = rel.event_time;
                } else if rel.event_time != event_time {
                    event_time = None;
                }
                inputs.push(materialize(rel, nodes, &resolver.node_name("calc")));
            }
            let schema = schema_of(u.schema.as_ref(), &output_names(plan))?;
            let id = push_node(
                nodes,
                resolver.node_name("union"),
                inputs,
                schema.clone(),
                event_time,
                Operator::Union,
            );
            Ok(Rel::node(id, schema, event_time))
        }
        other => Err(Unsupported(format!(
            "{} is not supported in a streaming pipeline yet",
            describe(other)
        ))),
    }
}

/// The window aggregation of DataFusion `Aggregate` `a` over `rel`, a relation over a window TVF's
/// data whose window columns are virtual (see [`lower`]).
///
/// The filter and projections below the aggregation run on the data rows (a Calc); the window
/// columns may only pass through them to the GROUP BY, where they become [`GroupColumn`]s.
fn window_aggregate(
    a: &datafusion::logical_expr::Aggregate,
    rel: Rel,
    tvf: WindowTvf,
    nodes: &mut Vec<Node>,
    resolver: &mut dyn ScanResolver,
) -> Result<Rel, Unsupported> {
    let misuse = || {
        Unsupported(
            "window_start, window_end and window_time of a window TVF can be grouped by, not used in expressions below the aggregation (use them in the SELECT list, or in a view over the aggregation)".into(),
        )
    };
    let data = nodes
        .get(rel.input.0 as usize)
        .ok_or_else(|| Unsupported("window input missing".into()))?;
    let data_schema = data.schema.clone();
    let width = data.schema.fields.len();
    let time_col = {
        let t = column_of(&data.schema, &tvf.time_column)?;
        let f = &data.schema.fields[t];
        Expr::column(t, f.data_type.clone(), f.nullable)
    };
    let virtual_role = |c: usize| match c.checked_sub(width) {
        Some(0) => Some(GroupColumn::WindowStart),
        Some(1) => Some(GroupColumn::WindowEnd),
        Some(2) => Some(GroupColumn::WindowTime),
        _ => None,
    };
    let touches_window = |e: &Expr| e.columns().iter().any(|&c| c >= width);
    if rel.filter.as_ref().is_some_and(touches_window) {
        return Err(misuse());
    }
    let mut projections: Vec<Expr> = rel.projections_or_identity();
    let mut fields = rel.schema.fields.clone();
    // Virtual window columns become placeholders (the time column) with a role.
    let mut roles: Vec<Option<GroupColumn>> = Vec::with_capacity(projections.len());
    for (p, f) in projections.iter_mut().zip(fields.iter_mut()) {
        let role = match p.kind {
            ExprKind::Column(c) => virtual_role(c),
            _ if touches_window(p) => return Err(misuse()),
            _ => None,
        };
        if role.is_some() {
            // A placeholder: the window column is the aggregation's to compute.
            *p = time_col.clone();
            f.name = format!("__unused{}", roles.len());
            f.data_type = time_col.data_type.clone();
            f.nullable = time_col.nullable;
        }
        roles.push(role);
    }
    let time_pos = match projections
        .iter()
        .zip(&roles)
        .position(|(p, r)| r.is_none() && *p == time_col)
    {
        Some(i) => i,
        None => {
            projections.push(time_col.clone());
            fields.push(Field::new(
                "__rowtime",
                time_col.data_type.clone(),
                time_col.nullable,
            ));
            roles.push(None);
            projections.len() - 1
        }
    };
    // SESSION's partition columns, from the data (the query may not read them otherwise).
    let mut partition = Vec::new();
    for k in &tvf.partition {
        let c = column_of(&data_schema, k)?;
        let f = &data_schema.fields[c];
        let e = Expr::column(c, f.data_type.clone(), f.nullable);
        let at = match projections
            .iter()
            .zip(&roles)
            .position(|(p, r)| r.is_none() && *p == e)
        {
            Some(i) => i,
            None => {
                projections.push(e);
                fields.push(Field::new(
                    format!("__partition{}", partition.len()),
                    f.data_type.clone(),
                    f.nullable,
                ));
                roles.push(None);
                projections.len() - 1
            }
        };
        partition.push(at);
    }
    // Expressions over the aggregation's input (positions of `projections`).
    let is_role = |e: &Expr, roles: &[Option<GroupColumn>]| {
        e.columns()
            .iter()
            .any(|&c| roles.get(c).is_some_and(Option::is_some))
    };
    let input_schema = a.input.schema();
    // DataFusion's group expressions, and the grouping sets over them (positions in `distinct`).
    let grouping_sets = matches!(a.group_expr.as_slice(), [DfExpr::GroupingSet(_)]);
    let (distinct, sets): (Vec<&DfExpr>, Vec<Vec<usize>>) = match a.group_expr.as_slice() {
        [DfExpr::GroupingSet(gs)] => {
            let distinct = gs.distinct_expr();
            let sets = expand_grouping_sets(gs, &distinct);
            (distinct, sets)
        }
        other => (other.iter().collect(), vec![(0..other.len()).collect()]),
    };
    let mut columns = Vec::new();
    for g in &distinct {
        let e = lower_expr(g, input_schema)?;
        let column = match e.kind {
            ExprKind::Column(c) => match roles.get(c).copied().flatten() {
                Some(role) => role,
                None => GroupColumn::Key(c),
            },
            _ if is_role(&e, &roles) => return Err(misuse()),
            _ => {
                // Over the aggregation's input row (no window column: checked above), computed
                // from the Calc's input.
                let width = rel.schema.fields.len();
                projections.push(inline(e.clone(), &projections[..width]));
                fields.push(Field::new(
                    format!("__key{}", columns.len()),
                    e.data_type.clone(),
                    e.nullable,
                ));
                roles.push(None);
                GroupColumn::Key(projections.len() - 1)
            }
        };
        columns.push(column);
    }
    for set in &sets {
        let has = |r: GroupColumn| set.iter().any(|&i| columns[i] == r);
        if !has(GroupColumn::WindowStart) || !has(GroupColumn::WindowEnd) {
            return Err(Unsupported(
                "a window aggregation groups by both window_start and window_end (GROUP BY window_start, window_end, ...), in every grouping set, as in Flink".into(),
            ));
        }
    }
    let group_len = a
        .group_expr_len()
        .map_err(|e| Unsupported(e.strip_backtrace()))?;
    let mut aggregates = Vec::new();
    for (i, expr) in a.aggr_expr.iter().enumerate() {
        let agg = lower_aggregate(a, group_len + i, expr, "window aggregations", |_| true)?;
        if agg
            .args
            .iter()
            .chain(&agg.filter)
            .any(|e| is_role(e, &roles))
        {
            return Err(misuse());
        }
        aggregates.push(agg);
    }
    let calc = Rel {
        input: rel.input,
        filter: rel.filter,
        projections: Some(projections),
        schema: Schema::new(fields),
        event_time: Some(time_pos),
    };
    let input = materialize(calc, nodes, &resolver.node_name("calc"));
    // One window aggregation per grouping set: its group columns, then the aggregates.
    let group_field = |i: usize| -> Result<Field, Unsupported> {
        let f = a.schema.field(i);
        Ok(Field::new(
            f.name(),
            plan_type(f.data_type())?,
            f.is_nullable(),
        ))
    };
    let agg_fields = aggregates
        .iter()
        .enumerate()
        .map(|(j, g)| {
            let nullable = a.schema.field(group_len + j).is_nullable();
            Field::new(format!("agg${j}"), g.data_type.clone(), nullable)
        })
        .collect::<Vec<_>>();
    let mut outputs = Vec::new();
    for set in &sets {
        let group: Vec<GroupColumn> = set.iter().map(|&i| columns[i]).collect();
        let mut schema_fields = set
            .iter()
            .map(|&i| group_field(i))
            .collect::<Result<Vec<_>, _>>()?;
        schema_fields.extend(agg_fields.iter().cloned());
        let event_time = group.iter().position(|g| *g == GroupColumn::WindowTime);
        let id = push_node(
            nodes,
            resolver.node_name("window"),
            vec![input],
            Schema::new(schema_fields.clone()),
            event_time,
            Operator::WindowAggregate(WindowAggregateSpec {
                window: tvf.kind,
                time: time_pos,
                partition: partition.clone(),
                group,
                aggregates: aggregates.clone(),
            }),
        );
        outputs.push((id, set.clone(), schema_fields, event_time));
    }
    if !grouping_sets {
        let Some((id, _, fields, event_time)) = outputs.pop() else {
            return Err(Unsupported("no grouping".into()));
        };
        return Ok(Rel::node(id, Schema::new(fields), event_time));
    }
    // GROUPING SETS: each set's rows in the full layout (absent keys NULL, DataFusion's grouping
    // id: a bit per absent key, the last key in the lowest bit), then their union.
    let n = distinct.len();
    let mut full: Vec<Field> = (0..n)
        .map(|i| group_field(i).map(|f| Field::new(f.name, f.data_type, true)))
        .collect::<Result<Vec<_>, _>>()?;
    full.push(Field::new(
        datafusion::logical_expr::Aggregate::INTERNAL_GROUPING_ID,
        DataType::BigInt,
        false,
    ));
    full.extend(agg_fields.iter().cloned());
    let mut inputs = Vec::new();
    for (id, set, fields, _) in outputs {
        let mut exprs = Vec::new();
        let mut mask: i64 = 0;
        for (i, f) in full.iter().take(n).enumerate() {
            match set.iter().position(|&x| x == i) {
                Some(p) => exprs.push(Expr::column(
                    p,
                    fields[p].data_type.clone(),
                    fields[p].nullable,
                )),
                None => {
                    mask |= 1 << (n - 1 - i);
                    exprs.push(Expr::literal(fsql_plan::Literal::Null, f.data_type.clone()));
                }
            }
        }
        exprs.push(Expr::literal(
            fsql_plan::Literal::Int(mask),
            DataType::BigInt,
        ));
        for (j, f) in agg_fields.iter().enumerate() {
            exprs.push(Expr::column(set.len() + j, f.data_type.clone(), f.nullable));
        }
        let rel = Rel::node(id, Schema::new(fields), None);
        let names = full.iter().map(|f| f.name.clone()).collect();
        let rel = project(rel, exprs, Some(names));
        inputs.push(materialize(rel, nodes, &resolver.node_name("calc")));
    }
    let schema = Schema::new(full);
    let id = push_node(
        nodes,
        resolver.node_name("union"),
        inputs,
        schema.clone(),
        None,
        Operator::Union,
    );
    Ok(Rel::node(id, schema, None))
}

/// The non-windowed aggregation of DataFusion `Aggregate` `a` over `rel`: an updating
/// [`Operator::GroupAggregate`] over a Calc that computes the group keys that are not columns.
fn group_aggregate(
    a: &datafusion::logical_expr::Aggregate,
    rel: Rel,
    nodes: &mut Vec<Node>,
    resolver: &mut dyn ScanResolver,
) -> Result<Rel, Unsupported> {
    if matches!(a.group_expr.as_slice(), [DfExpr::GroupingSet(_)]) {
        return Err(Unsupported(
            "GROUPING SETS, ROLLUP and CUBE without a window TVF are not supported yet (they are over window TVFs)".into(),
        ));
    }
    let input_schema = a.input.schema();
    let mut projections: Vec<Expr> = rel.projections_or_identity();
    let mut fields = rel.schema.fields.clone();
    let mut keys = Vec::new();
    for g in &a.group_expr {
        let e = lower_expr(g, input_schema)?;
        let key = match e.kind {
            ExprKind::Column(c) => c,
            _ => {
                // Over the aggregation's input row: computed from the Calc's input.
                let width = rel.schema.fields.len();
                projections.push(inline(e.clone(), &projections[..width]));
                fields.push(Field::new(
                    format!("__key{}", keys.len()),
                    e.data_type.clone(),
                    e.nullable,
                ));
                projections.len() - 1
            }
        };
        keys.push(key);
    }
    let group_len = a.group_expr.len();
    let mut aggregates = Vec::new();
    for (i, expr) in a.aggr_expr.iter().enumerate() {
        aggregates.push(lower_aggregate(a, group_len + i, expr, "GROUP BY", |f| {
            !matches!(f, AggregateFunction::Lag { .. })
        })?);
    }
    let calc = Rel {
        input: rel.input,
        filter: rel.filter,
        projections: Some(projections),
        schema: Schema::new(fields),
        event_time: None,
    };
    let input = materialize(calc, nodes, &resolver.node_name("calc"));
    let mut out = Vec::with_capacity(group_len + aggregates.len());
    for i in 0..group_len {
        let f = a.schema.field(i);
        out.push(Field::new(
            f.name(),
            plan_type(f.data_type())?,
            f.is_nullable(),
        ));
    }
    for (j, g) in aggregates.iter().enumerate() {
        let nullable = a.schema.field(group_len + j).is_nullable();
        out.push(Field::new(
            format!("agg${j}"),
            g.data_type.clone(),
            nullable,
        ));
    }
    let schema = Schema::new(out);
    let id = push_node(
        nodes,
        resolver.node_name("group"),
        vec![input],
        schema.clone(),
        None,
        Operator::GroupAggregate(fsql_plan::GroupAggregateSpec { keys, aggregates }),
    );
    Ok(Rel::node(id, schema, None))
}

/// The sets of a `GROUPING SETS` / `ROLLUP` / `CUBE`, as positions in `distinct`.
fn expand_grouping_sets(
    gs: &datafusion::logical_expr::GroupingSet,
    distinct: &[&DfExpr],
) -> Vec<Vec<usize>> {
    use datafusion::logical_expr::GroupingSet;
    let position = |e: &DfExpr| distinct.iter().position(|d| *d == e);
    match gs {
        GroupingSet::GroupingSets(sets) => sets
            .iter()
            .map(|set| set.iter().filter_map(position).collect())
            .collect(),
        GroupingSet::Rollup(exprs) => (0..=exprs.len())
            .rev()
            .map(|k| exprs[..k].iter().filter_map(position).collect())
            .collect(),
        GroupingSet::Cube(exprs) => {
            let n = exprs.len();
            (0..1usize << n)
                .map(|bits| {
                    (0..n)
                        .filter(|i| bits & (1 << (n - 1 - i)) == 0)
                        .filter_map(|i| position(&exprs[i]))
                        .collect()
                })
                .collect()
        }
    }
}

/// Whether a DataFusion `Window` node computes just `ROW_NUMBER()`.
fn is_row_number(exprs: &[DfExpr]) -> bool {
    use datafusion::logical_expr::expr::WindowFunctionDefinition;
    match exprs {
        [e] => matches!(
            unalias(e),
            DfExpr::WindowFunction(wf) if matches!(&wf.fun, WindowFunctionDefinition::WindowUDF(u) if u.name() == "row_number")
        ),
        _ => false,
    }
}

/// A `ROW_NUMBER()` ranking: over windows, or (TopN without a window) over the whole stream.
enum RankKind {
    Window(WindowRankSpec),
    Unbounded(RankSpec),
}

impl RankKind {
    fn order_by(&self) -> &Vec<SortKey> {
        match self {
            RankKind::Window(w) => &w.order_by,
            RankKind::Unbounded(r) => &r.order_by,
        }
    }

    fn set_latest_on_ties(&mut self, latest: bool) {
        match self {
            RankKind::Window(w) => w.latest_on_ties = latest,
            RankKind::Unbounded(r) => r.latest_on_ties = latest,
        }
    }

    fn into_operator(self) -> Operator {
        match self {
            RankKind::Window(w) => Operator::WindowRank(w),
            RankKind::Unbounded(r) => Operator::Rank(r),
        }
    }
}

/// `ROW_NUMBER() OVER (PARTITION BY window_start, window_end, ... ORDER BY ...)` over windowed rows
/// (`rel`): Flink's Window TopN and Window Deduplication; partitioned otherwise, Flink's TopN
/// without a window (an updating relation).
fn window_rank(exprs: &[DfExpr], input: &DFSchema, rel: &Rel) -> Result<RankKind, Unsupported> {
    let refuse = || {
        Unsupported(
            "ROW_NUMBER() is supported as Flink's TopN / deduplication: OVER ([PARTITION BY ...] ORDER BY ...), with WHERE rownum <= N".into(),
        )
    };
    let [e] = exprs else { return Err(refuse()) };
    let DfExpr::WindowFunction(wf) = unalias(e) else {
        return Err(refuse());
    };
    let params = &wf.params;
    let partition_by = params
        .partition_by
        .iter()
        .map(|p| match p {
            DfExpr::Column(c) => input.index_of_column(c).map_err(|_| refuse()),
            _ => Err(refuse()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let named = |name: &str| {
        partition_by.iter().copied().find(|&i| {
            rel.schema.fields.get(i).is_some_and(|f| {
                f.name == name
                    && matches!(
                        f.data_type,
                        DataType::Timestamp { .. } | DataType::TimestampLtz { .. }
                    )
            })
        })
    };
    let window = match (named("window_start"), named("window_end")) {
        (Some(_), Some(window_end)) => Some(window_end),
        _ => None,
    };
    let order_by = params
        .order_by
        .iter()
        .map(|s| {
            Ok(SortKey {
                expr: lower_expr(&s.expr, input)?,
                descending: !s.asc,
                nulls_first: s.nulls_first,
            })
        })
        .collect::<Result<Vec<_>, Unsupported>>()?;
    Ok(match window {
        Some(window_end) => RankKind::Window(WindowRankSpec {
            partition_by,
            window_end,
            order_by,
            limit: None,
            latest_on_ties: false,
        }),
        None => RankKind::Unbounded(RankSpec {
            partition_by,
            order_by,
            limit: None,
            latest_on_ties: false,
        }),
    })
}

/// `WHERE rownum <= N` (or `< N`, `= 1`) right over a window rank: the rank keeps only the first N
/// rows of each partition (the filter stays, so the result is the same either way).
fn limit_rank(rel: &Rel, nodes: &mut [Node]) {
    let Some(node) = nodes.get_mut(rel.input.0 as usize) else {
        return;
    };
    let rank_column = node.schema.fields.len().saturating_sub(1);
    let spec_limit = match &mut node.op {
        Operator::WindowRank(spec) => &mut spec.limit,
        Operator::Rank(spec) => &mut spec.limit,
        _ => return,
    };
    let Some(pred) = &rel.filter else { return };
    let mut conjuncts = vec![pred];
    let mut limit: Option<u64> = None;
    while let Some(e) = conjuncts.pop() {
        let ExprKind::Binary { op, left, right } = &e.kind else {
            continue;
        };
        if *op == BinaryOp::And {
            conjuncts.push(left);
            conjuncts.push(right);
            continue;
        }
        let (ExprKind::Column(c), ExprKind::Literal(fsql_plan::Literal::Int(n))) =
            (&left.kind, &right.kind)
        else {
            continue;
        };
        if *c != rank_column || *n < 1 {
            continue;
        }
        let n = *n as u64;
        let bound = match op {
            BinaryOp::LtEq | BinaryOp::Eq => Some(n),
            BinaryOp::Lt => Some(n - 1),
            _ => None,
        };
        if let Some(b) = bound {
            limit = Some(limit.map_or(b, |l| l.min(b)));
        }
    }
    if let Some(l) = limit {
        *spec_limit = Some(spec_limit.map_or(l, |x| x.min(l)));
    }
}

/// The columns of node `id` that are event-time attributes (never behind its watermark): its
/// `event_time`, both inputs' times after an interval join (whose watermark is held back by the
/// bounds), and those a Calc passes through.
pub fn time_attributes(nodes: &[Node], id: NodeId) -> Vec<usize> {
    let Some(node) = nodes.get(id.0 as usize) else {
        return vec![];
    };
    let mut out: Vec<usize> = node.event_time.into_iter().collect();
    let inner = |k: usize| {
        node.inputs
            .get(k)
            .filter(|i| i.0 < id.0)
            .map_or_else(Vec::new, |&i| time_attributes(nodes, i))
    };
    match &node.op {
        // The data's time attributes stay ones (window_time is the node's event time).
        Operator::WindowAssign(_) => out.extend(inner(0)),
        Operator::Join(j) => {
            if let (Some(b), Some(left)) = (&j.interval, node.inputs.first()) {
                let width = nodes
                    .get(left.0 as usize)
                    .map_or(0, |n| n.schema.fields.len());
                out.extend([b.left_time, width + b.right_time]);
            }
        }
        Operator::Calc { projections, .. } => {
            if let Some(&input) = node.inputs.first()
                && input.0 < id.0
            {
                let inner = time_attributes(nodes, input);
                out.extend(
                    projections
                        .iter()
                        .enumerate()
                        .filter_map(|(i, p)| match p.kind {
                            ExprKind::Column(c) if inner.contains(&c) => Some(i),
                            _ => None,
                        }),
                );
            }
        }
        _ => {}
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The synthetic versioned table a join's right side scans (through projections and filters).
fn versioned_scan(plan: &LogicalPlan) -> Option<String> {
    match plan {
        LogicalPlan::TableScan(t) => {
            let name = t.table_name.table();
            name.starts_with(crate::tvf::VERSIONED_RELATION)
                .then(|| name.to_string())
        }
        LogicalPlan::Projection(p) => versioned_scan(&p.input),
        LogicalPlan::Filter(f) => versioned_scan(&f.input),
        LogicalPlan::SubqueryAlias(a) => versioned_scan(&a.input),
        _ => None,
    }
}

/// An aggregate call's arguments over `schema`; `COUNT(*)` (which arrives as `COUNT(*)` or
/// `COUNT(1)`) has none: it counts rows.
/// Aggregate call `expr` of `a` (its output is `a`'s column `column`) over `a`'s input. `place`
/// names the aggregation in errors, and `allowed` says which functions it takes.
fn lower_aggregate(
    a: &datafusion::logical_expr::Aggregate,
    column: usize,
    expr: &DfExpr,
    place: &str,
    allowed: impl Fn(&AggregateFunction) -> bool,
) -> Result<GroupAggregate, Unsupported> {
    let input_schema = a.input.schema();
    let DfExpr::AggregateFunction(af) = unalias(expr) else {
        return Err(Unsupported(format!(
            "`{expr}` is not an aggregate function"
        )));
    };
    let name = af.func.name();
    let upper = name.to_uppercase();
    let function = aggregate_function(name)
        .filter(|f| allowed(f))
        .ok_or_else(|| Unsupported(format!("{upper} is not supported in {place}")))?;
    let params = &af.params;
    if !params.order_by.is_empty() {
        return Err(Unsupported(format!(
            "{upper}(... ORDER BY ...) is not supported"
        )));
    }
    let args = aggregate_args(function, &params.args, input_schema)?;
    let filter = params
        .filter
        .as_ref()
        .map(|f| lower_expr(f, input_schema))
        .transpose()?;
    Ok(GroupAggregate {
        function,
        args,
        distinct: params.distinct,
        filter,
        data_type: plan_type(a.schema.field(column).data_type())?,
    })
}

fn aggregate_args(
    function: AggregateFunction,
    args: &[DfExpr],
    schema: &DFSchema,
) -> Result<Vec<Expr>, Unsupported> {
    #[allow(deprecated)]
    match (function, args) {
        (AggregateFunction::Count, [DfExpr::Wildcard { .. }]) => Ok(vec![]),
        (AggregateFunction::Count, [DfExpr::Literal(v, _)]) if !v.is_null() => Ok(vec![]),
        _ => args.iter().map(|a| lower_expr(a, schema)).collect(),
    }
}

/// The position of column `name` in `schema`.
fn column_of(schema: &Schema, name: &str) -> Result<usize, Unsupported> {
    schema
        .fields
        .iter()
        .position(|f| f.name == name)
        .ok_or_else(|| Unsupported(format!("column `{name}` not found")))
}

/// The OVER operator of one DataFusion `Window` node (its expressions share PARTITION BY and
/// ORDER BY; each may have its own frame).
fn over_spec(
    exprs: &[DfExpr],
    input: &DFSchema,
    event_time: Option<usize>,
) -> Result<OverSpec, Unsupported> {
    use datafusion::logical_expr::expr::{WindowFunction, WindowFunctionDefinition};
    let mut partition_by: Option<Vec<usize>> = None;
    let mut order_by = None;
    let mut aggregates = Vec::new();
    for expr in exprs {
        let (DfExpr::WindowFunction(wf), data_type) = (unalias(expr), expr.get_type(input)) else {
            return Err(Unsupported(format!("`{expr}` is not a window function")));
        };
        let WindowFunction { fun, params } = wf.as_ref();
        let name = fun.name().to_string();
        let upper = name.to_uppercase();
        // PARTITION BY: columns.
        let keys = params
            .partition_by
            .iter()
            .map(|p| match p {
                DfExpr::Column(c) => input.index_of_column(c).map_err(|e| Unsupported(e.strip_backtrace())),
                other => Err(Unsupported(format!("PARTITION BY `{other}`: partition by columns (compute expressions in a view first)"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        match &partition_by {
            None => partition_by = Some(keys),
            Some(k) if *k == keys => {}
            Some(_) => {
                return Err(Unsupported(
                    "OVER windows of one operator must share PARTITION BY".into(),
                ));
            }
        }
        // ORDER BY the event-time attribute, ascending (as Flink requires).
        let [sort] = params.order_by.as_slice() else {
            return Err(Unsupported(format!(
                "{upper} OVER (...) needs ORDER BY the event-time attribute"
            )));
        };
        let column = match &sort.expr {
            DfExpr::Column(c) => input.index_of_column(c).ok(),
            _ => None,
        };
        if column.is_none() || column != event_time || !sort.asc {
            return Err(Unsupported(match event_time {
                Some(i) => format!(
                    "OVER windows must be ordered by the event-time attribute ascending (ORDER BY `{}`), as in Flink",
                    input.field(i).name()
                ),
                None => "OVER windows must be ordered by an event-time attribute (a column with WATERMARK FOR), ascending, as in Flink".to_string(),
            }));
        }
        order_by = column;
        let frame = frame(&params.window_frame, &upper)?;
        let (function, args) = match fun {
            WindowFunctionDefinition::AggregateUDF(udaf) => {
                let f = aggregate_function(udaf.name()).ok_or_else(|| {
                    Unsupported(format!("{upper} is not supported in OVER windows"))
                })?;
                (f, aggregate_args(f, &params.args, input)?)
            }
            WindowFunctionDefinition::WindowUDF(udwf)
                if matches!(udwf.name(), "first_value" | "last_value") =>
            {
                let f = aggregate_function(udwf.name()).ok_or_else(|| {
                    Unsupported(format!("{upper} is not supported in OVER windows"))
                })?;
                let args = params
                    .args
                    .iter()
                    .map(|a| lower_expr(a, input))
                    .collect::<Result<Vec<_>, _>>()?;
                (f, args)
            }
            WindowFunctionDefinition::WindowUDF(udwf) if udwf.name() == "lag" => {
                let offset = match params.args.get(1) {
                    None => 1,
                    Some(DfExpr::Literal(v, _)) => v.to_string().parse::<u64>().map_err(|_| {
                        Unsupported("LAG's offset must be a non-negative integer literal".into())
                    })?,
                    Some(_) => {
                        return Err(Unsupported(
                            "LAG's offset must be an integer literal".into(),
                        ));
                    }
                };
                let mut args = vec![lower_expr(
                    params
                        .args
                        .first()
                        .ok_or_else(|| Unsupported("LAG needs an argument".into()))?,
                    input,
                )?];
                if let Some(default) = params.args.get(2) {
                    args.push(lower_expr(default, input)?);
                }
                (AggregateFunction::Lag { offset }, args)
            }
            other => {
                return Err(Unsupported(format!(
                    "{} is not supported in OVER windows",
                    other.name().to_uppercase()
                )));
            }
        };
        let data_type = plan_type(&data_type.map_err(|e| Unsupported(e.strip_backtrace()))?)?;
        aggregates.push(OverAggregate {
            function,
            args,
            distinct: params.distinct,
            frame,
            data_type,
        });
    }
    Ok(OverSpec {
        partition_by: partition_by.unwrap_or_default(),
        order_by: order_by.ok_or_else(|| Unsupported("OVER needs ORDER BY".into()))?,
        aggregates,
    })
}

fn unalias(e: &DfExpr) -> &DfExpr {
    match e {
        DfExpr::Alias(a) => unalias(&a.expr),
        other => other,
    }
}

/// The plan frame of a DataFusion window frame (frames must end at the current row).
fn frame(f: &WindowFrame, function: &str) -> Result<OverFrame, Unsupported> {
    if !matches!(f.end_bound, WindowFrameBound::CurrentRow) {
        return Err(Unsupported(format!(
            "{function} OVER (...): a streaming OVER frame must end at CURRENT ROW"
        )));
    }
    let WindowFrameBound::Preceding(start) = &f.start_bound else {
        return Err(Unsupported(format!(
            "{function} OVER (...): the frame must start at a PRECEDING bound"
        )));
    };
    match (f.units, start.is_null()) {
        (WindowFrameUnits::Rows, true) => Ok(OverFrame::UnboundedRows),
        (WindowFrameUnits::Range, true) => Ok(OverFrame::UnboundedRange),
        (WindowFrameUnits::Rows, false) => {
            let n = start.to_string().parse::<u64>().map_err(|_| {
                Unsupported(format!(
                    "{function} OVER (...): ROWS needs a whole number of rows, got {start}"
                ))
            })?;
            Ok(OverFrame::Rows { preceding: n })
        }
        (WindowFrameUnits::Range, false) => match crate::lower_expr::literal(start) {
            Ok((fsql_plan::Literal::Int(ms), DataType::IntervalDayTime)) if ms >= 0 => {
                Ok(OverFrame::Range { preceding_ms: ms })
            }
            _ => Err(Unsupported(format!(
                "{function} OVER (...): RANGE over event time needs an INTERVAL day-to-second bound, got {start}"
            ))),
        },
        (WindowFrameUnits::Groups, _) => Err(Unsupported("GROUPS frames are not supported".into())),
    }
}

fn describe(plan: &LogicalPlan) -> &'static str {
    match plan {
        LogicalPlan::Aggregate(_) => "GROUP BY / aggregation",
        LogicalPlan::Window(_) => "an OVER window",
        LogicalPlan::Join(_) => "a JOIN",
        LogicalPlan::Sort(_) => "ORDER BY",
        LogicalPlan::Limit(_) => "LIMIT",
        LogicalPlan::Distinct(_) => "DISTINCT",
        LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => "a query without a FROM table",
        LogicalPlan::Subquery(_) => "a subquery",
        LogicalPlan::Unnest(_) => "UNNEST",
        LogicalPlan::RecursiveQuery(_) => "a recursive query",
        _ => "this query shape",
    }
}

/// The names a user sees for a plan's columns: aliases and column names, `EXPR$i` (as Flink) for
/// unnamed expressions.
pub fn output_names(plan: &LogicalPlan) -> Vec<String> {
    use datafusion::logical_expr::Expr as DfExpr;
    let names: Vec<String> = match plan {
        LogicalPlan::Projection(p) => p
            .expr
            .iter()
            .enumerate()
            .map(|(i, e)| match e {
                DfExpr::Alias(a) => a.name.clone(),
                DfExpr::Column(c) => c.name.clone(),
                _ => format!("EXPR${i}"),
            })
            .collect(),
        other => other
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect(),
    };
    uniquify(names)
}

/// Makes names unique as Flink does: a name already taken gets a number appended (`id`, `id0`,
/// `id1`, ...), as after `SELECT *` over a join of two tables with an `id` column.
fn uniquify(names: Vec<String>) -> Vec<String> {
    let mut taken = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let mut unique = name.clone();
        let mut i = 0;
        while !taken.insert(unique.clone()) {
            unique = format!("{name}{i}");
            i += 1;
        }
        out.push(unique);
    }
    out
}

/// The plan schema of a DataFusion schema with the given column names.
pub fn schema_of(schema: &DFSchema, names: &[String]) -> Result<Schema, Unsupported> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let name = names.get(i).cloned().unwrap_or_else(|| f.name().clone());
            Ok(Field::new(name, plan_type(f.data_type())?, f.is_nullable()))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Schema::new)
}

/// A reference to each of `fields`, in order (an identity projection).
fn column_refs(fields: &[fsql_plan::Field]) -> Vec<Expr> {
    fields
        .iter()
        .enumerate()
        .map(|(i, f)| Expr::column(i, f.data_type.clone(), f.nullable))
        .collect()
}

/// Replaces column references of `expr` by the expressions they stand for.
pub(crate) fn inline(expr: Expr, projections: &[Expr]) -> Expr {
    let Expr {
        kind,
        data_type,
        nullable,
    } = expr;
    let kind = match kind {
        ExprKind::Column(i) => match projections.get(i) {
            Some(p) => return p.clone(),
            None => ExprKind::Column(i),
        },
        ExprKind::Literal(l) => ExprKind::Literal(l),
        ExprKind::Unary { op, arg } => ExprKind::Unary {
            op,
            arg: Box::new(inline(*arg, projections)),
        },
        ExprKind::Binary { op, left, right } => ExprKind::Binary {
            op,
            left: Box::new(inline(*left, projections)),
            right: Box::new(inline(*right, projections)),
        },
        ExprKind::Cast { arg, safe } => ExprKind::Cast {
            arg: Box::new(inline(*arg, projections)),
            safe,
        },
        ExprKind::Case {
            branches,
            otherwise,
        } => ExprKind::Case {
            branches: branches
                .into_iter()
                .map(|(c, v)| (inline(c, projections), inline(v, projections)))
                .collect(),
            otherwise: otherwise.map(|e| Box::new(inline(*e, projections))),
        },
        ExprKind::InList { arg, list, negated } => ExprKind::InList {
            arg: Box::new(inline(*arg, projections)),
            list: list.into_iter().map(|e| inline(e, projections)).collect(),
            negated,
        },
        ExprKind::Like {
            arg,
            pattern,
            negated,
            case_insensitive,
            escape,
        } => ExprKind::Like {
            arg: Box::new(inline(*arg, projections)),
            pattern: Box::new(inline(*pattern, projections)),
            negated,
            case_insensitive,
            escape,
        },
        ExprKind::Call { function, args } => ExprKind::Call {
            function,
            args: args.into_iter().map(|e| inline(e, projections)).collect(),
        },
    };
    Expr {
        kind,
        data_type,
        nullable,
    }
}

/// `rel` filtered by `pred` (a predicate over `rel`'s columns).
pub fn filter(mut rel: Rel, pred: Expr) -> Rel {
    let pred = match &rel.projections {
        Some(p) => inline(pred, p),
        None => pred,
    };
    rel.filter = Some(match rel.filter.take() {
        Some(f) => Expr {
            nullable: f.nullable || pred.nullable,
            kind: ExprKind::Binary {
                op: BinaryOp::And,
                left: Box::new(f),
                right: Box::new(pred),
            },
            data_type: DataType::Boolean,
        },
        None => pred,
    });
    rel
}

/// `rel` mapped through `exprs` (over `rel`'s columns); `names` names the new columns.
pub fn project(mut rel: Rel, exprs: Vec<Expr>, names: Option<Vec<String>>) -> Rel {
    let event_time = rel.event_time.and_then(|t| {
        exprs
            .iter()
            .position(|e| matches!(e.kind, ExprKind::Column(c) if c == t))
    });
    let schema = Schema::new(
        exprs
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let name = names
                    .as_ref()
                    .and_then(|n| n.get(i).cloned())
                    .or_else(|| match e.kind {
                        ExprKind::Column(c) => rel.schema.fields.get(c).map(|f| f.name.clone()),
                        _ => None,
                    })
                    .unwrap_or_else(|| format!("EXPR${i}"));
                Field::new(name, e.data_type.clone(), e.nullable)
            })
            .collect(),
    );
    let exprs = match &rel.projections {
        Some(p) => exprs.into_iter().map(|e| inline(e, p)).collect(),
        None => exprs,
    };
    rel.projections = Some(exprs);
    rel.schema = schema;
    rel.event_time = event_time;
    rel
}

/// Whether the relation is its input unchanged (no node needed).
fn is_identity(rel: &Rel, nodes: &[Node]) -> bool {
    if rel.filter.is_some() {
        return false;
    }
    let Some(input) = nodes.get(rel.input.0 as usize) else {
        return false;
    };
    match &rel.projections {
        None => true,
        Some(p) => {
            p.len() == input.schema.fields.len()
                && p.iter()
                    .enumerate()
                    .all(|(i, e)| matches!(e.kind, ExprKind::Column(c) if c == i))
                && rel
                    .schema
                    .fields
                    .iter()
                    .zip(&input.schema.fields)
                    .all(|(a, b)| a.name == b.name)
        }
    }
}

/// A node producing `rel`: its input if nothing changes, else a new `Calc` named `name`.
pub fn materialize(rel: Rel, nodes: &mut Vec<Node>, name: &str) -> NodeId {
    if is_identity(&rel, nodes) {
        return rel.input;
    }
    let projections = rel.projections_or_identity();
    push_node(
        nodes,
        name.to_string(),
        vec![rel.input],
        rel.schema,
        rel.event_time,
        Operator::Calc {
            filter: rel.filter,
            projections,
        },
    )
}

/// Appends a node to `nodes` (a node's id is its position) and returns its id.
pub(crate) fn push_node(
    nodes: &mut Vec<Node>,
    name: String,
    inputs: Vec<NodeId>,
    schema: Schema,
    event_time: Option<usize>,
    op: Operator,
) -> NodeId {
    let id = NodeId(nodes.len() as u32);
    nodes.push(Node {
        id,
        name,
        inputs,
        schema,
        event_time,
        op,
    });
    id
}
