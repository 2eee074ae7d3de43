//! Aggregation state shared by OVER and window aggregation: argument values ([`value`]), keys
//! ([`key`]), incremental accumulators ([`accumulator`]) and the counted values of DISTINCT and
//! sliding MIN/MAX ([`value_counts`]), and which accumulator computes an aggregate function over
//! an argument type ([`accumulator_for`]).

pub(crate) mod accumulator;
pub(crate) mod key;
pub(crate) mod value;
pub(crate) mod value_counts;

use arrow::datatypes::DataType as ArrowType;
use fsql_plan::{AggregateFunction, Expr};

use self::accumulator::{AccKind, AccSpec, AvgOut, Domain, Moment};
use self::value::{Repr, ValueType};

/// How one aggregate call is computed.
#[derive(Clone, Debug)]
pub(crate) struct AccPlan {
    pub spec: AccSpec,
    /// How the argument is read (`None` for `COUNT(*)`).
    pub repr: Option<Repr>,
    /// The argument's value type (`BIGINT` for `COUNT(*)`).
    pub arg_type: ValueType,
}

/// The accumulator of `function(args)` producing `target` values; `bounded` when values are
/// also retracted (sliding frames). Not for LAG, which is not an accumulator.
pub(crate) fn accumulator_for(
    function: AggregateFunction,
    args: &[Expr],
    distinct: bool,
    bounded: bool,
    target: &ArrowType,
) -> Result<AccPlan, String> {
    let name = function.sql_name();
    let arg_type = match args.first() {
        Some(e) => Some(value_type(e, function)?),
        None => None,
    };
    let need_arg = || {
        arg_type
            .clone()
            .ok_or_else(|| format!("{name} needs an argument"))
    };
    let numeric = |vt: &ValueType| -> Result<Domain, String> {
        match vt {
            ValueType::Int(t) if t.is_integer() => Ok(Domain::Int),
            ValueType::Float | ValueType::Null => Ok(Domain::Float),
            ValueType::Decimal { scale } => Ok(Domain::Decimal { scale: *scale }),
            _ => Err(format!("{name} takes a numeric argument")),
        }
    };
    let spec = |kind| AccSpec {
        kind,
        distinct,
        bounded,
    };
    let plan = |kind, repr, arg_type| AccPlan {
        spec: spec(kind),
        repr: Some(repr),
        arg_type,
    };
    Ok(match function {
        AggregateFunction::Count => match &arg_type {
            None => AccPlan {
                spec: spec(AccKind::CountStar),
                repr: None,
                arg_type: ValueType::int64(),
            },
            Some(vt) => {
                if args.len() > 1 {
                    return Err("COUNT with several arguments is not supported".into());
                }
                let repr = if distinct { Repr::Full } else { Repr::Presence };
                plan(AccKind::Count, repr, vt.clone())
            }
        },
        AggregateFunction::Sum => {
            let vt = need_arg()?;
            plan(AccKind::Sum(numeric(&vt)?), Repr::Full, vt)
        }
        AggregateFunction::Avg => {
            let vt = need_arg()?;
            let d = numeric(&vt)?;
            let out = match target {
                t if t.is_integer() => AvgOut::Int,
                t if t.is_floating() => AvgOut::Float,
                ArrowType::Decimal128(_, s) => AvgOut::Decimal { scale: *s },
                other => return Err(format!("AVG cannot produce {other}")),
            };
            plan(AccKind::Avg(d, out), Repr::Full, vt)
        }
        AggregateFunction::Min => plan(AccKind::Min, Repr::Full, need_arg()?),
        AggregateFunction::Max => plan(AccKind::Max, Repr::Full, need_arg()?),
        AggregateFunction::FirstValue => plan(AccKind::FirstValue, Repr::Full, need_arg()?),
        AggregateFunction::LastValue => plan(AccKind::LastValue, Repr::Full, need_arg()?),
        AggregateFunction::StddevPop
        | AggregateFunction::StddevSamp
        | AggregateFunction::VarPop
        | AggregateFunction::VarSamp => {
            let vt = need_arg()?;
            numeric(&vt)?;
            let m = match function {
                AggregateFunction::StddevPop => Moment::StddevPop,
                AggregateFunction::StddevSamp => Moment::StddevSamp,
                AggregateFunction::VarPop => Moment::VarPop,
                _ => Moment::VarSamp,
            };
            plan(AccKind::Moment(m), Repr::Float, vt)
        }
        AggregateFunction::Lag { .. } => return Err("LAG is not an accumulator".into()),
    })
}

/// The value type of an aggregate's argument.
pub(crate) fn value_type(arg: &Expr, function: AggregateFunction) -> Result<ValueType, String> {
    ValueType::of(&arg.data_type.to_arrow()).ok_or_else(|| {
        format!(
            "{} over {} values is not supported",
            function.sql_name(),
            arg.data_type
        )
    })
}
