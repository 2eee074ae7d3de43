//! DataFusion logical plans to plan nodes.
//!
//! Each relational operator lowers to a [`Rel`]: a pending filter/projection over an existing node.
//! Filters and projections fuse into one `Calc` node when the relation is materialised, as Flink's
//! Calc does; anything stateful that has no streaming operator yet is reported, not approximated.

use datafusion::common::DFSchema;
use datafusion::logical_expr::LogicalPlan;
use fsql_plan::{BinaryOp, DataType, Expr, ExprKind, Field, Node, NodeId, Operator, Schema};

use crate::lower_expr::{Unsupported, lower_expr, plan_type};

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

/// Resolves a scanned table name to the node producing it (creating source nodes on first use).
pub trait ScanResolver {
    fn scan(
        &mut self,
        table: &str,
        nodes: &mut Vec<Node>,
    ) -> Result<(NodeId, Schema, Option<usize>), Unsupported>;
}

/// Lowers `plan` into nodes appended to `nodes`.
pub fn lower_plan(
    plan: &LogicalPlan,
    nodes: &mut Vec<Node>,
    resolver: &mut dyn ScanResolver,
) -> Result<Rel, Unsupported> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let (node, schema, event_time) = resolver.scan(scan.table_name.table(), nodes)?;
            let mut rel = Rel {
                input: node,
                filter: None,
                projections: None,
                schema,
                event_time,
            };
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
            let rel = lower_plan(&f.input, nodes, resolver)?;
            let pred = lower_expr(&f.predicate, f.input.schema())?;
            Ok(filter(rel, pred))
        }
        LogicalPlan::Projection(p) => {
            let rel = lower_plan(&p.input, nodes, resolver)?;
            let exprs = p
                .expr
                .iter()
                .map(|e| lower_expr(e, p.input.schema()))
                .collect::<Result<Vec<_>, _>>()?;
            let names = output_names(plan);
            Ok(project(rel, exprs, Some(names)))
        }
        LogicalPlan::SubqueryAlias(a) => lower_plan(&a.input, nodes, resolver),
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
                inputs.push(materialize(rel, nodes, "union#input"));
            }
            let schema = schema_of(u.schema.as_ref(), &output_names(plan))?;
            let id = NodeId(nodes.len() as u32);
            nodes.push(Node {
                id,
                name: "union".into(),
                inputs,
                schema: schema.clone(),
                event_time,
                op: Operator::Union,
            });
            Ok(Rel {
                input: id,
                filter: None,
                projections: None,
                schema,
                event_time,
            })
        }
        other => Err(Unsupported(format!(
            "{} is not supported in a streaming pipeline yet",
            describe(other)
        ))),
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
    match plan {
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
    }
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

/// Replaces column references of `expr` by the expressions they stand for.
fn inline(expr: Expr, projections: &[Expr]) -> Expr {
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
    let projections = rel.projections.unwrap_or_else(|| {
        rel.schema
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| Expr::column(i, f.data_type.clone(), f.nullable))
            .collect()
    });
    let id = NodeId(nodes.len() as u32);
    nodes.push(Node {
        id,
        name: name.to_string(),
        inputs: vec![rel.input],
        schema: rel.schema,
        event_time: rel.event_time,
        op: Operator::Calc {
            filter: rel.filter,
            projections,
        },
    });
    id
}
