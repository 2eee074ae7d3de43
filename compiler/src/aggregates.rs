//! OVER-window functions for DataFusion's planner, typed as Flink types them (`SUM(INT)` is `INT`,
//! `AVG(INT)` is `INT`, `AVG(DECIMAL(p, s))` is `DECIMAL(38, max(s, 6))`). They exist for planning:
//! the runtime's OVER operator executes them, so DataFusion never asks for an accumulator.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, not_impl_err, plan_err};
use datafusion::logical_expr::function::{
    AccumulatorArgs, PartitionEvaluatorArgs, WindowUDFFieldArgs,
};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, PartitionEvaluator, Signature, Volatility,
    WindowUDF, WindowUDFImpl,
};
use fsql_plan::AggregateFunction;

/// How an aggregate's result type follows from its argument type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum ResultType {
    /// `BIGINT NOT NULL` (COUNT).
    Count,
    /// The argument's type; DECIMAL(p, s) becomes DECIMAL(38, s) (SUM).
    Sum,
    /// The argument's type; DECIMAL(p, s) becomes DECIMAL(38, max(s, 6)) (AVG, STDDEV, VAR).
    Average,
    /// The argument's type (MIN, MAX, FIRST_VALUE, LAST_VALUE).
    Same,
}

/// A Flink aggregate as a DataFusion aggregate UDF (planning only).
#[derive(Debug, PartialEq, Eq, Hash)]
struct FlinkAggregate {
    name: &'static str,
    result: ResultType,
    numeric_only: bool,
    signature: Signature,
}

const AGGREGATES: &[(&str, ResultType, bool)] = &[
    ("count", ResultType::Count, false),
    ("sum", ResultType::Sum, true),
    ("avg", ResultType::Average, true),
    ("min", ResultType::Same, false),
    ("max", ResultType::Same, false),
    ("first_value", ResultType::Same, false),
    ("last_value", ResultType::Same, false),
    ("stddev_pop", ResultType::Average, true),
    ("stddev_samp", ResultType::Average, true),
    ("stddev", ResultType::Average, true),
    ("var_pop", ResultType::Average, true),
    ("var_samp", ResultType::Average, true),
    ("variance", ResultType::Average, true),
];

/// The plan function of an aggregate by its (DataFusion, lower-case) name.
pub fn aggregate_function(name: &str) -> Option<AggregateFunction> {
    Some(match name {
        "count" => AggregateFunction::Count,
        "sum" => AggregateFunction::Sum,
        "avg" => AggregateFunction::Avg,
        "min" => AggregateFunction::Min,
        "max" => AggregateFunction::Max,
        "first_value" => AggregateFunction::FirstValue,
        "last_value" => AggregateFunction::LastValue,
        "stddev_pop" => AggregateFunction::StddevPop,
        "stddev_samp" | "stddev" => AggregateFunction::StddevSamp,
        "var_pop" => AggregateFunction::VarPop,
        "var_samp" | "variance" => AggregateFunction::VarSamp,
        _ => return None,
    })
}

/// Every aggregate, by name.
pub fn udafs() -> HashMap<String, Arc<AggregateUDF>> {
    AGGREGATES
        .iter()
        .map(|&(name, result, numeric_only)| {
            let signature = if name == "count" {
                Signature::variadic_any(Volatility::Immutable)
            } else {
                Signature::any(1, Volatility::Immutable)
            };
            let f = FlinkAggregate {
                name,
                result,
                numeric_only,
                signature,
            };
            (name.to_string(), Arc::new(AggregateUDF::from(f)))
        })
        .collect()
}

/// The window functions, by name: `LAG`, `FIRST_VALUE` / `LAST_VALUE` (DataFusion plans those two
/// as window functions, not aggregates, when they have an OVER clause), and `ROW_NUMBER` (Window
/// TopN and deduplication).
pub fn udwfs() -> HashMap<String, Arc<WindowUDF>> {
    let mut f: HashMap<String, Arc<WindowUDF>> = ["lag", "first_value", "last_value"]
        .into_iter()
        .map(|name| {
            let f = ValueWindowFunction {
                name,
                signature: Signature::variadic_any(Volatility::Immutable),
            };
            (name.to_string(), Arc::new(WindowUDF::from(f)))
        })
        .collect();
    f.insert(
        "row_number".into(),
        Arc::new(WindowUDF::from(RowNumber {
            signature: Signature::nullary(Volatility::Immutable),
        })),
    );
    f
}

/// `ROW_NUMBER()`: a row's 1-based position in its ordered partition (planning only).
#[derive(Debug, PartialEq, Eq, Hash)]
struct RowNumber {
    signature: Signature,
}

impl WindowUDFImpl for RowNumber {
    fn name(&self) -> &str {
        "row_number"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn partition_evaluator(
        &self,
        _args: PartitionEvaluatorArgs,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        not_impl_err!("ROW_NUMBER runs in fsql's window rank operator, not in DataFusion")
    }

    fn field(&self, field_args: WindowUDFFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(Field::new(
            field_args.name(),
            DataType::Int64,
            false,
        )))
    }
}

impl AggregateUDFImpl for FlinkAggregate {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let upper = self.name.to_uppercase();
        if self.result == ResultType::Count {
            return Ok(DataType::Int64);
        }
        let Some(arg) = arg_types.first() else {
            return plan_err!("{upper} needs an argument");
        };
        if self.numeric_only && !arg.is_numeric() && *arg != DataType::Null {
            let name = fsql_plan::DataType::from_arrow(arg)
                .map_or_else(|| arg.to_string(), |t| t.to_string());
            return plan_err!(
                "type mismatch: {upper}({name}) is not defined; {upper} takes a numeric argument"
            );
        }
        Ok(match (self.result, arg) {
            (ResultType::Sum, DataType::Decimal128(_, s)) => DataType::Decimal128(38, *s),
            (ResultType::Average, DataType::Decimal128(_, s)) => {
                DataType::Decimal128(38, (*s).max(6))
            }
            (_, DataType::Null) => DataType::Float64,
            (_, t) => t.clone(),
        })
    }

    fn is_nullable(&self) -> bool {
        self.result != ResultType::Count
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        not_impl_err!(
            "{} runs in fsql's OVER operator, not in DataFusion",
            self.name.to_uppercase()
        )
    }
}

/// A window function whose result has its first argument's type: `LAG(x [, offset [, default]])`,
/// `FIRST_VALUE(x)`, `LAST_VALUE(x)` (planning only).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ValueWindowFunction {
    name: &'static str,
    signature: Signature,
}

impl WindowUDFImpl for ValueWindowFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn partition_evaluator(
        &self,
        _args: PartitionEvaluatorArgs,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        not_impl_err!(
            "{} runs in fsql's OVER operator, not in DataFusion",
            self.name.to_uppercase()
        )
    }

    fn field(&self, field_args: WindowUDFFieldArgs) -> Result<FieldRef> {
        let t = field_args
            .input_fields()
            .first()
            .map_or(DataType::Null, |f| f.data_type().clone());
        Ok(Arc::new(Field::new(field_args.name(), t, true)))
    }
}
