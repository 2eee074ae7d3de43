//! Rule conditions that arrive after compilation (control-stream updates): a condition's SQL is
//! compiled against the ruleset's input schema exactly as a `RULE ... WHEN` in the pipeline file
//! would be — same parser, planner, Flink type rules and lowering — by compiling a two-statement
//! pipeline: a table with the input's columns and a ruleset with the one rule.

use std::path::Path;

use fsql_plan::{Expr, Operator, Schema};

use crate::compile::{CompileOptions, compile_source};
use crate::diagnostic::Severity;

/// Compiles `condition` (SQL) over rows of `input`: the BOOLEAN expression a rule would hold, or
/// the compiler's messages.
///
/// ```
/// use fsql_plan::{DataType, Field, Schema};
/// let input = Schema::new(vec![Field::new("amount", DataType::Double, true)]);
/// assert!(fsql_compiler::compile_rule_condition(&input, "amount > 100").is_ok());
/// let err = fsql_compiler::compile_rule_condition(&input, "amount > 'x'").unwrap_err();
/// assert!(err.contains("cannot apply `>` to DOUBLE and STRING"), "{err}");
/// ```
pub fn compile_rule_condition(input: &Schema, condition: &str) -> Result<Expr, String> {
    let Some(first) = input.fields.first() else {
        return Err("the ruleset's input has no columns".into());
    };
    let columns: Vec<String> = input
        .fields
        .iter()
        .map(|f| format!("`{}` {}", f.name.replace('`', "``"), f.data_type))
        .collect();
    let text = format!(
        "CREATE TABLE __ruleset_input ({}) WITH ('connector' = 'filesystem', 'path' = 'unused', 'format' = 'json');\n\
         CREATE RULESET __update ON __ruleset_input KEY `{}` DEFAULT 'x' (\n  RULE __rule PRIORITY 0 WHEN {condition}\n  THEN 'x');\n",
        columns.join(", "),
        first.name.replace('`', "``")
    );
    let options = CompileOptions {
        strict: false,
        keep_unused: true,
    };
    let compiled = compile_source(Path::new("control-update"), text, &options, &[]);
    let errors: Vec<String> = compiled
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.message.clone())
        .collect();
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    // Exactly the one rule of the one ruleset: a condition that smuggled in other statements
    // would show up as more.
    let rulesets: Vec<_> = compiled
        .pipeline
        .iter()
        .flat_map(|p| &p.nodes)
        .filter_map(|n| match &n.op {
            Operator::Ruleset(r) => Some(r),
            _ => None,
        })
        .collect();
    match rulesets.as_slice() {
        [r] if r.rules.len() == 1 && compiled.tests.is_empty() => Ok(r.rules[0].condition.clone()),
        _ => Err("the condition is not one SQL expression".into()),
    }
}
