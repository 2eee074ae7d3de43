//! Ruleset: for each row, the first rule (in `rules` order) whose condition is TRUE gives the row's
//! `decision` and `rule` (its name); no rule firing gives the default decision and a NULL rule.
//! `ruleset_version` carries the version of the rules that decided. Output = input columns +
//! `decision`, `rule`, `ruleset_version`.
//!
//! A rule's condition is only evaluated on rows no earlier rule decided, so a condition that would
//! fail on such rows does not fail the batch. With the JIT on, the rules compile to one kernel
//! computing `CASE WHEN c1 THEN 0 WHEN c2 THEN 1 ... END`, the index of the rule that fires.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, StringBuilder};
use arrow::datatypes::{Int32Type, Schema, SchemaRef};
use fsql_plan::{DataType, Expr, ExprKind, Literal, Rule, RulesetSpec};

use crate::compiled::CompiledExprs;
use crate::control::ControlUpdate;
use crate::error::RuntimeError;
use crate::eval::{evaluate_masked, logic_is_true};
use crate::operator::{Event, Operator, batch_with_schema};

/// First-match rule evaluation.
pub struct Ruleset {
    name: String,
    spec: RulesetSpec,
    /// `spec`'s rules with the parameters' values in place: what is evaluated.
    rules: Vec<Rule>,
    schema: SchemaRef,
    compiled: Option<CompiledExprs>,
    /// The input schema the rules were compiled for (kept to recompile on an update).
    compiled_for: Option<SchemaRef>,
}

impl Ruleset {
    /// A ruleset node producing `schema` (input columns + decision, rule, ruleset_version).
    pub fn new(name: &str, spec: RulesetSpec, schema: SchemaRef) -> Ruleset {
        Ruleset {
            name: name.to_string(),
            rules: spec.bound_rules(),
            spec,
            schema,
            compiled: None,
            compiled_for: None,
        }
    }

    /// The same ruleset with its conditions compiled, over batches of `input`.
    pub fn compiled(mut self, input: &Schema) -> Ruleset {
        self.compiled = CompiledExprs::new(None, &[first_match(&self.rules)], input);
        self.compiled_for = Some(Arc::new(input.clone()));
        self
    }

    /// The rules in force.
    pub fn spec(&self) -> &RulesetSpec {
        &self.spec
    }

    /// The index of the rule that fires on each row, by the compiled kernel; `None` when the
    /// batch must be interpreted.
    fn fired_compiled(
        &mut self,
        batch: &RecordBatch,
    ) -> Result<Option<Vec<Option<usize>>>, RuntimeError> {
        let Some(compiled) = &mut self.compiled else {
            return Ok(None);
        };
        let computed = compiled
            .run(batch)
            .map_err(|e| RuntimeError::eval(&self.name, e))?;
        Ok(computed.and_then(|c| {
            let index = c.columns.first()?.as_primitive_opt::<Int32Type>()?.clone();
            Some(
                index
                    .iter()
                    .map(|k| k.and_then(|k| usize::try_from(k).ok()))
                    .collect(),
            )
        }))
    }

    /// The index of the rule that fires on each row, interpreted.
    fn fired_interpreted(&self, batch: &RecordBatch) -> Result<Vec<Option<usize>>, RuntimeError> {
        let rows = batch.num_rows();
        let mut fired: Vec<Option<usize>> = vec![None; rows];
        let mut open = BooleanArray::from(vec![true; rows]);
        for (k, rule) in self.rules.iter().enumerate() {
            if open.true_count() == 0 {
                break;
            }
            let cond = evaluate_masked(&rule.condition, batch, &open)
                .and_then(|a| crate::eval::as_boolean(&a))
                .map_err(|e| {
                    RuntimeError::eval(&format!("{}: rule {}", self.name, rule.name), e)
                })?;
            let hit = logic_is_true(&cond);
            let hit = BooleanArray::new(open.values() & hit.values(), None);
            for (i, on) in hit.values().iter().enumerate() {
                if on {
                    fired[i] = Some(k);
                }
            }
            open = BooleanArray::new(open.values() & &!hit.values(), None);
        }
        Ok(fired)
    }

    /// Decides every row of `batch`.
    pub fn apply(&mut self, batch: &RecordBatch) -> Result<RecordBatch, RuntimeError> {
        let rows = batch.num_rows();
        let fired = match self.fired_compiled(batch)? {
            Some(fired) => fired,
            None => self.fired_interpreted(batch)?,
        };
        let mut decision = StringBuilder::with_capacity(rows, rows * 6);
        let mut rule = StringBuilder::with_capacity(rows, rows * 8);
        for f in &fired {
            match f.and_then(|k| self.rules.get(k)) {
                Some(r) => {
                    decision.append_value(&r.decision);
                    rule.append_value(&r.name);
                }
                None => {
                    decision.append_value(&self.spec.default_decision);
                    rule.append_null();
                }
            }
        }
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns.push(Arc::new(decision.finish()));
        columns.push(Arc::new(rule.finish()));
        columns.push(Arc::new(Int64Array::from(vec![self.spec.version; rows])));
        // The appended columns are cast if the plan typed them differently (e.g. VARCHAR(n)).
        batch_with_schema(&self.name, &self.schema, columns, rows)
    }
}

/// `CASE WHEN c1 THEN 0 WHEN c2 THEN 1 ... END` (INT): the index of the first rule whose
/// condition is TRUE, NULL when none is. CASE evaluates a condition only on rows no earlier branch
/// took, which is exactly the rules' first-match semantics.
fn first_match(rules: &[Rule]) -> Expr {
    let branches = rules
        .iter()
        .enumerate()
        .map(|(k, rule)| {
            let index = Expr::literal(
                Literal::Int(i64::try_from(k).unwrap_or(i64::MAX)),
                DataType::Int,
            );
            (rule.condition.clone(), index)
        })
        .collect();
    Expr {
        kind: ExprKind::Case {
            branches,
            otherwise: None,
        },
        data_type: DataType::Int,
        nullable: true,
    }
}

impl Operator for Ruleset {
    /// Stateless: nothing to checkpoint.
    fn snapshot(
        &mut self,
        _w: &mut crate::state::codec::StateWriter,
    ) -> Result<bool, RuntimeError> {
        Ok(false)
    }

    /// New rules take effect from the next batch; compiled again when the old ones were.
    fn update(&mut self, update: &mut ControlUpdate) -> Result<bool, RuntimeError> {
        let ControlUpdate::Ruleset(spec) = update else {
            return Ok(false);
        };
        if spec.name != self.spec.name {
            return Ok(false);
        }
        self.spec = spec.clone();
        self.rules = self.spec.bound_rules();
        if let Some(input) = &self.compiled_for {
            self.compiled = CompiledExprs::new(None, &[first_match(&self.rules)], input);
        }
        Ok(true)
    }

    fn on_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Vec<Event>,
    ) -> Result<(), RuntimeError> {
        if batch.num_rows() > 0 {
            out.push(Event::Batch(self.apply(&batch)?));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Float64Array, Int64Array};
    use fsql_plan::{BinaryOp, DataType, Literal, Rule};

    use super::*;
    use crate::source::runtime_schema;
    use crate::testkit::*;

    fn rule(name: &str, priority: i64, threshold: f64, decision: &str) -> Rule {
        Rule {
            name: name.to_string(),
            priority,
            condition: bin(
                BinaryOp::Gt,
                col(1, DataType::Double),
                lit(Literal::float(threshold), DataType::Double),
                DataType::Boolean,
            ),
            decision: decision.to_string(),
        }
    }

    #[test]
    fn first_matching_rule_in_order_wins_else_default() {
        let input = schema(&[("id", DataType::BigInt), ("score", DataType::Double)]);
        let mut out = input.clone();
        out.fields
            .push(fsql_plan::Field::new("decision", DataType::String, false));
        out.fields
            .push(fsql_plan::Field::new("rule", DataType::String, true));
        out.fields.push(fsql_plan::Field::new(
            "ruleset_version",
            DataType::BigInt,
            false,
        ));
        let spec = RulesetSpec {
            name: "decisions".into(),
            key: 0,
            default_decision: "ALLOW".into(),
            version: 7,
            // Order matters, not threshold: `review` comes first and also matches high scores.
            rules: vec![
                rule("review", 10, 0.5, "REVIEW"),
                rule("block", 20, 0.9, "BLOCK"),
            ],
            parameters: vec![],
        };
        let mut rs = Ruleset::new("decisions", spec, runtime_schema(&out));
        let batch = batch_of(
            &input,
            vec![
                arc(Int64Array::from(vec![1, 2, 3])),
                arc(Float64Array::from(vec![Some(0.95), Some(0.1), None])),
            ],
        );
        let got = rs.apply(&batch).unwrap();
        assert_eq!(
            rows(&[got]),
            vec![
                r#"{"id":1,"score":0.95,"decision":"REVIEW","rule":"review","ruleset_version":7}"#,
                r#"{"id":2,"score":0.1,"decision":"ALLOW","rule":null,"ruleset_version":7}"#,
                r#"{"id":3,"score":null,"decision":"ALLOW","rule":null,"ruleset_version":7}"#,
            ]
        );
    }
}
