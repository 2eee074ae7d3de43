//! DataFusion expressions (after type coercion) to the plan's expression IR.

use arrow::datatypes::DataType as ArrowType;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::{Expr as DfExpr, ExprSchemable, Operator};
use fsql_plan::{BinaryOp, DataType, Expr, ExprKind, Literal, UnaryOp};

/// Why an expression has no plan form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

type R<T> = Result<T, Unsupported>;

/// The plan type of an Arrow type, or a message naming it.
pub fn plan_type(t: &ArrowType) -> R<DataType> {
    DataType::from_arrow(t).ok_or_else(|| Unsupported(format!("type {t} is not supported")))
}

/// Lowers `expr`, typed against `schema` (the operator's input).
pub fn lower_expr(expr: &DfExpr, schema: &DFSchema) -> R<Expr> {
    let data_type = plan_type(
        &expr
            .get_type(schema)
            .map_err(|e| Unsupported(e.strip_backtrace()))?,
    )?;
    let nullable = expr.nullable(schema).unwrap_or(true);
    let kind = match expr {
        DfExpr::Alias(a) => return lower_expr(&a.expr, schema),
        DfExpr::Column(c) => ExprKind::Column(
            schema
                .index_of_column(c)
                .map_err(|e| Unsupported(e.strip_backtrace()))?,
        ),
        DfExpr::Literal(v, _) => {
            let (lit, t) = literal(v)?;
            return Ok(Expr {
                nullable: lit == Literal::Null,
                kind: ExprKind::Literal(lit),
                data_type: t,
            });
        }
        DfExpr::BinaryExpr(b) => ExprKind::Binary {
            op: binary_op(b.op)?,
            left: Box::new(lower_expr(&b.left, schema)?),
            right: Box::new(lower_expr(&b.right, schema)?),
        },
        DfExpr::Not(e) => unary(UnaryOp::Not, e, schema)?,
        DfExpr::Negative(e) => unary(UnaryOp::Negate, e, schema)?,
        DfExpr::IsNull(e) | DfExpr::IsUnknown(e) => unary(UnaryOp::IsNull, e, schema)?,
        DfExpr::IsNotNull(e) | DfExpr::IsNotUnknown(e) => unary(UnaryOp::IsNotNull, e, schema)?,
        DfExpr::IsTrue(e) => unary(UnaryOp::IsTrue, e, schema)?,
        DfExpr::IsNotTrue(e) => unary(UnaryOp::IsNotTrue, e, schema)?,
        DfExpr::IsFalse(e) => unary(UnaryOp::IsFalse, e, schema)?,
        DfExpr::IsNotFalse(e) => unary(UnaryOp::IsNotFalse, e, schema)?,
        DfExpr::Cast(c) => ExprKind::Cast {
            arg: Box::new(lower_expr(&c.expr, schema)?),
            safe: false,
        },
        DfExpr::TryCast(c) => ExprKind::Cast {
            arg: Box::new(lower_expr(&c.expr, schema)?),
            safe: true,
        },
        DfExpr::Between(b) => {
            let e = lower_expr(&b.expr, schema)?;
            let low = lower_expr(&b.low, schema)?;
            let high = lower_expr(&b.high, schema)?;
            let cmp = |op, l: Expr, r: Expr| Expr {
                nullable: l.nullable || r.nullable,
                kind: ExprKind::Binary {
                    op,
                    left: Box::new(l),
                    right: Box::new(r),
                },
                data_type: DataType::Boolean,
            };
            let both = cmp(
                BinaryOp::And,
                cmp(BinaryOp::GtEq, e.clone(), low),
                cmp(BinaryOp::LtEq, e, high),
            );
            if b.negated {
                ExprKind::Unary {
                    op: UnaryOp::Not,
                    arg: Box::new(both),
                }
            } else {
                both.kind
            }
        }
        DfExpr::Case(c) => {
            let base = c
                .expr
                .as_deref()
                .map(|e| lower_expr(e, schema))
                .transpose()?;
            let mut branches = Vec::with_capacity(c.when_then_expr.len());
            for (when, then) in &c.when_then_expr {
                let mut cond = lower_expr(when, schema)?;
                if let Some(base) = &base {
                    cond = Expr {
                        nullable: true,
                        kind: ExprKind::Binary {
                            op: BinaryOp::Eq,
                            left: Box::new(base.clone()),
                            right: Box::new(cond),
                        },
                        data_type: DataType::Boolean,
                    };
                }
                branches.push((cond, lower_expr(then, schema)?));
            }
            let otherwise = c
                .else_expr
                .as_deref()
                .map(|e| lower_expr(e, schema))
                .transpose()?
                .map(Box::new);
            ExprKind::Case {
                branches,
                otherwise,
            }
        }
        DfExpr::InList(l) => ExprKind::InList {
            arg: Box::new(lower_expr(&l.expr, schema)?),
            list: l
                .list
                .iter()
                .map(|e| lower_expr(e, schema))
                .collect::<R<_>>()?,
            negated: l.negated,
        },
        DfExpr::Like(l) | DfExpr::SimilarTo(l) => {
            if matches!(expr, DfExpr::SimilarTo(_)) {
                return Err(Unsupported("SIMILAR TO is not supported; use LIKE".into()));
            }
            ExprKind::Like {
                arg: Box::new(lower_expr(&l.expr, schema)?),
                pattern: Box::new(lower_expr(&l.pattern, schema)?),
                negated: l.negated,
                case_insensitive: l.case_insensitive,
                escape: l.escape_char,
            }
        }
        DfExpr::ScalarFunction(f) if f.func.name() == crate::tvf::PREDICT_FUNCTION => {
            return Err(Unsupported(
                "PREDICT(...) is scored in a SELECT list or a WHERE clause; to use a score elsewhere (an aggregate, a join condition, a window), compute it in a view first".into(),
            ));
        }
        DfExpr::ScalarFunction(f) => ExprKind::Call {
            function: f.func.name().to_string(),
            args: f
                .args
                .iter()
                .map(|e| lower_expr(e, schema))
                .collect::<R<_>>()?,
        },
        other => {
            return Err(Unsupported(format!(
                "expression `{other}` is not supported in a streaming pipeline yet"
            )));
        }
    };
    Ok(Expr {
        kind,
        data_type,
        nullable,
    })
}

fn unary(op: UnaryOp, arg: &DfExpr, schema: &DFSchema) -> R<ExprKind> {
    Ok(ExprKind::Unary {
        op,
        arg: Box::new(lower_expr(arg, schema)?),
    })
}

fn binary_op(op: Operator) -> R<BinaryOp> {
    Ok(match op {
        Operator::Plus => BinaryOp::Plus,
        Operator::Minus => BinaryOp::Minus,
        Operator::Multiply => BinaryOp::Multiply,
        Operator::Divide => BinaryOp::Divide,
        Operator::Modulo => BinaryOp::Modulo,
        Operator::Eq => BinaryOp::Eq,
        Operator::NotEq => BinaryOp::NotEq,
        Operator::Lt => BinaryOp::Lt,
        Operator::LtEq => BinaryOp::LtEq,
        Operator::Gt => BinaryOp::Gt,
        Operator::GtEq => BinaryOp::GtEq,
        Operator::And => BinaryOp::And,
        Operator::Or => BinaryOp::Or,
        Operator::IsDistinctFrom => BinaryOp::IsDistinctFrom,
        Operator::IsNotDistinctFrom => BinaryOp::IsNotDistinctFrom,
        Operator::StringConcat => BinaryOp::Concat,
        other => return Err(Unsupported(format!("operator `{other}` is not supported"))),
    })
}

/// A DataFusion constant as a plan literal and its type.
pub fn literal(v: &ScalarValue) -> R<(Literal, DataType)> {
    let t = plan_type(&v.data_type())?;
    if v.is_null() {
        return Ok((Literal::Null, t));
    }
    let lit = match v {
        ScalarValue::Boolean(Some(b)) => Literal::Boolean(*b),
        ScalarValue::Int8(Some(x)) => Literal::Int(i64::from(*x)),
        ScalarValue::Int16(Some(x)) => Literal::Int(i64::from(*x)),
        ScalarValue::Int32(Some(x)) => Literal::Int(i64::from(*x)),
        ScalarValue::Int64(Some(x)) => Literal::Int(*x),
        ScalarValue::UInt8(Some(x)) => {
            return Ok((Literal::Int(i64::from(*x)), DataType::SmallInt));
        }
        ScalarValue::UInt16(Some(x)) => return Ok((Literal::Int(i64::from(*x)), DataType::Int)),
        ScalarValue::UInt32(Some(x)) => return Ok((Literal::Int(i64::from(*x)), DataType::BigInt)),
        ScalarValue::Float32(Some(x)) => Literal::float(f64::from(*x)),
        ScalarValue::Float64(Some(x)) => Literal::float(*x),
        ScalarValue::Decimal128(Some(x), _, _) => Literal::Decimal(x.to_string()),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Literal::String(s.clone()),
        ScalarValue::Binary(Some(b))
        | ScalarValue::LargeBinary(Some(b))
        | ScalarValue::BinaryView(Some(b)) => Literal::Bytes(b.clone()),
        ScalarValue::Date32(Some(d)) => Literal::Int(i64::from(*d)),
        // TIME is held as milliseconds of the day.
        ScalarValue::Time32Millisecond(Some(t)) => Literal::Int(i64::from(*t)),
        ScalarValue::Time32Second(Some(t)) => Literal::Int(i64::from(*t) * 1000),
        ScalarValue::Time64Microsecond(Some(t)) => Literal::Int(*t / 1000),
        ScalarValue::Time64Nanosecond(Some(t)) => Literal::Int(*t / 1_000_000),
        ScalarValue::TimestampSecond(Some(x), _) => Literal::Int(*x),
        ScalarValue::TimestampMillisecond(Some(x), _)
        | ScalarValue::TimestampMicrosecond(Some(x), _)
        | ScalarValue::TimestampNanosecond(Some(x), _) => Literal::Int(*x),
        ScalarValue::DurationMillisecond(Some(x)) => Literal::Int(*x),
        ScalarValue::IntervalYearMonth(Some(m)) => Literal::Int(i64::from(*m)),
        ScalarValue::IntervalDayTime(Some(v)) => {
            Literal::Int(i64::from(v.days) * 86_400_000 + i64::from(v.milliseconds))
        }
        ScalarValue::IntervalMonthDayNano(Some(v)) => {
            if v.months != 0 {
                if v.days != 0 || v.nanoseconds != 0 {
                    return Err(Unsupported(
                        "an interval mixing months with days or seconds is not supported".into(),
                    ));
                }
                return Ok((
                    Literal::Int(i64::from(v.months)),
                    DataType::IntervalYearMonth,
                ));
            }
            let ms = i64::from(v.days) * 86_400_000 + v.nanoseconds / 1_000_000;
            return Ok((Literal::Int(ms), DataType::IntervalDayTime));
        }
        other => return Err(Unsupported(format!("literal {other} is not supported"))),
    };
    Ok((lit, t))
}
