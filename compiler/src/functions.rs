//! The stdlib's functions as DataFusion scalar UDFs, so DataFusion's planner resolves and coerces
//! calls with fsql's signatures (and can execute them as a batch oracle with fsql's kernels).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result, plan_err};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult};
use datafusion::logical_expr::type_coercion::binary::type_union_resolution;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use fsql_stdlib::Function;

use crate::tvf::PREDICT_FUNCTION;

/// Every stdlib function as a UDF, by name, and the scalar model call.
pub fn udfs() -> HashMap<String, Arc<ScalarUDF>> {
    let mut udfs: HashMap<String, Arc<ScalarUDF>> = fsql_stdlib::functions()
        .iter()
        .map(|f| {
            (
                f.name.to_string(),
                Arc::new(ScalarUDF::from(StdlibUdf::new(f))),
            )
        })
        .collect();
    udfs.insert(
        PREDICT_FUNCTION.to_string(),
        Arc::new(ScalarUDF::from(PredictUdf {
            // Volatile, so that the optimizer leaves calls where the query has them: not pushed
            // into a scan's filters, not merged as common subexpressions.
            signature: Signature::variadic_any(Volatility::Volatile),
        })),
    );
    udfs
}

/// `PREDICT(m, x, ...)` (`__fsql_predict('m', x, ...)` after the token rewrite): a model's score,
/// a DOUBLE. Lowering checks the model and its features and lifts the call into a
/// [`fsql_plan::Operator::Predict`] node; it is never executed as a function.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PredictUdf {
    signature: Signature,
}

impl ScalarUDFImpl for PredictUdf {
    fn name(&self) -> &str {
        PREDICT_FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.first() {
            Some(DataType::Utf8) => Ok(DataType::Float64),
            _ => plan_err!("PREDICT(model, feature, ...) names a model first"),
        }
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        plan_err!("PREDICT is scored by a model operator, not evaluated as a function")
    }
}

#[derive(Debug)]
struct StdlibUdf {
    function: &'static Function,
    signature: Signature,
}

impl PartialEq for StdlibUdf {
    fn eq(&self, other: &Self) -> bool {
        self.function.name == other.function.name
    }
}
impl Eq for StdlibUdf {}
impl std::hash::Hash for StdlibUdf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.function.name.hash(state);
    }
}

impl StdlibUdf {
    fn new(function: &'static Function) -> Self {
        let signature = match &function.signature {
            fsql_stdlib::Signature::OneOf(lists) => {
                let sigs: Vec<TypeSignature> = lists
                    .iter()
                    .map(|l| {
                        if l.is_empty() {
                            TypeSignature::Nullary
                        } else {
                            TypeSignature::Exact(l.clone())
                        }
                    })
                    .collect();
                if sigs.len() == 1 {
                    Signature::new(
                        sigs.into_iter().next().unwrap_or(TypeSignature::Nullary),
                        Volatility::Immutable,
                    )
                } else {
                    Signature::one_of(sigs, Volatility::Immutable)
                }
            }
            fsql_stdlib::Signature::VariadicCommon { .. } => {
                Signature::user_defined(Volatility::Immutable)
            }
            fsql_stdlib::Signature::Any(0) => Signature::nullary(Volatility::Immutable),
            fsql_stdlib::Signature::Any(n) => Signature::any(*n, Volatility::Immutable),
        };
        StdlibUdf {
            function,
            signature,
        }
    }
}

impl ScalarUDFImpl for StdlibUdf {
    fn name(&self) -> &str {
        self.function.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        (self.function.return_type)(arg_types).map_err(|m| {
            DataFusionError::Plan(format!("{}: {m}", self.function.name.to_uppercase()))
        })
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let fsql_stdlib::Signature::VariadicCommon { min } = self.function.signature else {
            return Ok(arg_types.to_vec());
        };
        if arg_types.len() < min {
            return plan_err!(
                "{} needs at least {min} argument(s), got {}",
                self.function.name.to_uppercase(),
                arg_types.len()
            );
        }
        match type_union_resolution(arg_types) {
            Some(t) => Ok(vec![t; arg_types.len()]),
            None => plan_err!(
                "{}: arguments have no common type ({})",
                self.function.name.to_uppercase(),
                arg_types
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<Vec<_>>>()?;
        (self.function.kernel)(&arrays, rows)
            .map(ColumnarValue::Array)
            .map_err(|e| DataFusionError::Execution(e.to_string()))
    }
}

/// Plans SQL syntax that DataFusion hands to expression planners (`EXTRACT`, `POSITION`,
/// `SUBSTRING`) as calls of the stdlib functions that implement it.
#[derive(Debug)]
pub struct SyntaxPlanner {
    udfs: HashMap<String, Arc<ScalarUDF>>,
}

impl SyntaxPlanner {
    pub fn new(udfs: &HashMap<String, Arc<ScalarUDF>>) -> Self {
        SyntaxPlanner { udfs: udfs.clone() }
    }

    fn call(&self, name: &str, args: Vec<Expr>) -> Result<PlannerResult<Vec<Expr>>> {
        match self.udfs.get(name) {
            Some(f) => Ok(PlannerResult::Planned(Expr::ScalarFunction(
                ScalarFunction::new_udf(f.clone(), args),
            ))),
            None => Ok(PlannerResult::Original(args)),
        }
    }
}

impl ExprPlanner for SyntaxPlanner {
    fn plan_extract(&self, args: Vec<Expr>) -> Result<PlannerResult<Vec<Expr>>> {
        self.call("date_part", args)
    }

    fn plan_position(&self, args: Vec<Expr>) -> Result<PlannerResult<Vec<Expr>>> {
        self.call("strpos", args)
    }

    fn plan_substring(&self, args: Vec<Expr>) -> Result<PlannerResult<Vec<Expr>>> {
        self.call("substr", args)
    }
}
