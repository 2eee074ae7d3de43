//! Control updates: what a payload says, and the checks that turn it into a change the runtime
//! applies. [`ControlState`] is the authority on what is in force — each ruleset's rules and
//! version, each model's version — and advances only on accepted updates, so a rejected update
//! never changes anything.
//!
//! Payloads (JSON):
//! * `{"op": "add_rule" | "replace_rule", "ruleset": R, "version": V,
//!    "rule": {"name": N, "priority": P, "when": "<SQL condition>", "then": "<decision>"}}`
//! * `{"op": "remove_rule", "ruleset": R, "version": V, "rule": N}`
//! * `{"op": "set_parameter", "ruleset": R, "version": V, "parameter": P, "value": 0.95}`
//! * `{"op": "set_model", "model": M, "version": V, "path": "<model file>"}` (or `"text"`: the
//!   model file's content inline)
//!
//! `version` must be greater than the target's current version (the plan's is 1): an old or
//! repeated update is a replay and is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fsql_model::Model;
use fsql_plan::{Field, ModelDecl, Operator, Pipeline, Rule, RulesetSpec, Schema};
use fsql_runtime::control::{AckHeader, ControlUpdate};
use serde::Deserialize;

/// A payload.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Update {
    AddRule {
        ruleset: String,
        version: i64,
        rule: RuleText,
    },
    ReplaceRule {
        ruleset: String,
        version: i64,
        rule: RuleText,
    },
    RemoveRule {
        ruleset: String,
        version: i64,
        rule: String,
    },
    SetParameter {
        ruleset: String,
        version: i64,
        parameter: String,
        value: serde_json::Value,
    },
    SetModel {
        model: String,
        version: i64,
        #[serde(default)]
        path: Option<String>,
        #[serde(default)]
        text: Option<String>,
    },
}

/// A rule as an update writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleText {
    pub name: String,
    pub priority: i64,
    pub when: String,
    pub then: String,
}

impl Update {
    fn op(&self) -> &'static str {
        match self {
            Update::AddRule { .. } => "add_rule",
            Update::ReplaceRule { .. } => "replace_rule",
            Update::RemoveRule { .. } => "remove_rule",
            Update::SetParameter { .. } => "set_parameter",
            Update::SetModel { .. } => "set_model",
        }
    }

    fn target(&self) -> &str {
        match self {
            Update::AddRule { ruleset, .. }
            | Update::ReplaceRule { ruleset, .. }
            | Update::RemoveRule { ruleset, .. }
            | Update::SetParameter { ruleset, .. } => ruleset,
            Update::SetModel { model, .. } => model,
        }
    }

    fn version(&self) -> i64 {
        match self {
            Update::AddRule { version, .. }
            | Update::ReplaceRule { version, .. }
            | Update::RemoveRule { version, .. }
            | Update::SetParameter { version, .. }
            | Update::SetModel { version, .. } => *version,
        }
    }
}

/// A ruleset in force and what its conditions are compiled against: the input's columns, then
/// the parameters.
struct RulesetState {
    spec: RulesetSpec,
    input: Schema,
}

/// A model in force.
struct ModelState {
    decl: ModelDecl,
    version: i64,
    /// How many nodes score it (each gets its own loaded copy).
    nodes: usize,
}

/// What is in force, from the plan on, as accepted updates change it.
pub struct ControlState {
    rulesets: BTreeMap<String, RulesetState>,
    models: BTreeMap<String, ModelState>,
    /// Relative model paths in `set_model` resolve here (the pipeline file's directory).
    base_dir: PathBuf,
    /// Build compiled scorers for new models (off with `--no-jit`).
    compile_models: bool,
}

impl ControlState {
    /// The rulesets and models of `pipeline`, at the plan's versions.
    pub fn new(pipeline: &Pipeline, base_dir: &Path, compile_models: bool) -> ControlState {
        let mut rulesets = BTreeMap::new();
        let mut predict_nodes: BTreeMap<&str, usize> = BTreeMap::new();
        for node in &pipeline.nodes {
            match &node.op {
                Operator::Ruleset(spec) => {
                    let mut input = node
                        .inputs
                        .first()
                        .and_then(|i| pipeline.node(*i))
                        .map(|n| n.schema.clone())
                        .unwrap_or_else(|| Schema::new(vec![]));
                    for p in &spec.parameters {
                        input
                            .fields
                            .push(Field::new(&p.name, p.data_type.clone(), false));
                    }
                    rulesets.insert(
                        spec.name.clone(),
                        RulesetState {
                            spec: spec.clone(),
                            input,
                        },
                    );
                }
                Operator::Predict(p) => *predict_nodes.entry(p.model.as_str()).or_default() += 1,
                _ => {}
            }
        }
        let models = pipeline
            .models
            .iter()
            .map(|m| {
                (
                    m.name.clone(),
                    ModelState {
                        decl: m.clone(),
                        version: 1,
                        nodes: predict_nodes.get(m.name.as_str()).copied().unwrap_or(0),
                    },
                )
            })
            .collect();
        ControlState {
            rulesets,
            models,
            base_dir: base_dir.to_path_buf(),
            compile_models,
        }
    }

    /// Checks a payload (already verified as signed by `key`) against what is in force; on
    /// success the state advances and the change to apply is returned.
    pub fn accept(
        &mut self,
        payload: &str,
        header: &mut AckHeader,
    ) -> Result<ControlUpdate, String> {
        let update: Update =
            serde_json::from_str(payload).map_err(|e| format!("not a control update: {e}"))?;
        header.op = Some(update.op().to_string());
        header.target = Some(update.target().to_string());
        header.version = Some(update.version());
        let version = update.version();
        match update {
            Update::AddRule { ruleset, rule, .. } | Update::ReplaceRule { ruleset, rule, .. } => {
                let replace = header.op.as_deref() == Some("replace_rule");
                let state = self.ruleset(&ruleset, version)?;
                let exists = state.spec.rules.iter().any(|r| r.name == rule.name);
                if replace && !exists {
                    return Err(format!(
                        "ruleset `{ruleset}` has no rule `{}` to replace",
                        rule.name
                    ));
                }
                if !replace && exists {
                    return Err(format!(
                        "ruleset `{ruleset}` already has a rule `{}` (use replace_rule)",
                        rule.name
                    ));
                }
                let condition = fsql_compiler::compile_rule_condition(&state.input, &rule.when)
                    .map_err(|e| format!("rule `{}`: {e}", rule.name))?;
                let mut spec = state.spec.clone();
                spec.rules.retain(|r| r.name != rule.name);
                spec.rules.push(Rule {
                    name: rule.name,
                    priority: rule.priority,
                    condition,
                    decision: rule.then,
                });
                // First match by priority; equal priorities keep their order (stable sort).
                spec.rules.sort_by_key(|r| r.priority);
                spec.version = version;
                state.spec = spec.clone();
                Ok(ControlUpdate::Ruleset(spec))
            }
            Update::RemoveRule { ruleset, rule, .. } => {
                let state = self.ruleset(&ruleset, version)?;
                if !state.spec.rules.iter().any(|r| r.name == rule) {
                    return Err(format!(
                        "ruleset `{ruleset}` has no rule `{rule}` to remove"
                    ));
                }
                let mut spec = state.spec.clone();
                spec.rules.retain(|r| r.name != rule);
                spec.version = version;
                state.spec = spec.clone();
                Ok(ControlUpdate::Ruleset(spec))
            }
            Update::SetParameter {
                ruleset,
                parameter,
                value,
                ..
            } => {
                let state = self.ruleset(&ruleset, version)?;
                let mut spec = state.spec.clone();
                let Some(p) = spec.parameters.iter_mut().find(|p| p.name == parameter) else {
                    return Err(format!(
                        "ruleset `{ruleset}` has no parameter `{parameter}`"
                    ));
                };
                let text = match &value {
                    serde_json::Value::String(s) => format!("'{}'", s.replace('\'', "''")),
                    serde_json::Value::Bool(b) => b.to_string(),
                    serde_json::Value::Number(n) => n.to_string(),
                    other => return Err(format!("`{other}` is not a parameter value")),
                };
                p.value = fsql_compiler::parameter_value(&text, &p.data_type)
                    .map_err(|e| format!("parameter `{parameter}`: {e}"))?;
                spec.version = version;
                state.spec = spec.clone();
                Ok(ControlUpdate::Ruleset(spec))
            }
            Update::SetModel {
                model, path, text, ..
            } => {
                let base_dir = self.base_dir.clone();
                let compile = self.compile_models;
                let Some(state) = self.models.get_mut(&model) else {
                    return Err(format!("the pipeline has no model `{model}`"));
                };
                if version <= state.version {
                    return Err(stale(version, state.version));
                }
                let text = match (path, text) {
                    (Some(p), None) => {
                        let p = if Path::new(&p).is_relative() {
                            base_dir.join(p)
                        } else {
                            PathBuf::from(p)
                        };
                        std::fs::read_to_string(&p)
                            .map_err(|e| format!("cannot read `{}`: {e}", p.display()))?
                    }
                    (None, Some(t)) => t,
                    _ => return Err("set_model takes either `path` or `text`".into()),
                };
                let mut models = Vec::with_capacity(state.nodes);
                for _ in 0..state.nodes.max(1) {
                    let m = Model::load(&text, compile).map_err(|e| e.to_string())?;
                    fsql_runtime::operators::predict::check_matches(&state.decl, &m)?;
                    models.push(m);
                }
                models.truncate(state.nodes);
                state.version = version;
                Ok(ControlUpdate::Model {
                    name: model,
                    version,
                    models,
                })
            }
        }
    }

    fn ruleset(&mut self, name: &str, version: i64) -> Result<&mut RulesetState, String> {
        let state = self
            .rulesets
            .get_mut(name)
            .ok_or_else(|| format!("the pipeline has no ruleset `{name}`"))?;
        if version <= state.spec.version {
            return Err(stale(version, state.spec.version));
        }
        Ok(state)
    }
}

fn stale(version: i64, current: i64) -> String {
    format!(
        "version {version} is not newer than the version in force ({current}): a replayed or out-of-date update"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> ControlState {
        let text = "CREATE TABLE t (id BIGINT, amount DOUBLE, country STRING)
              WITH ('connector' = 'filesystem', 'path' = 'x.jsonl', 'format' = 'json');
            CREATE RULESET r ON t KEY id DEFAULT 'ALLOW' PARAMETERS (big DOUBLE DEFAULT 100) (
              RULE a PRIORITY 10 WHEN amount > big THEN 'REVIEW');
            SELECT * FROM r;"
            .to_string();
        let c = fsql_compiler::compile_source(
            Path::new("t.fsql"),
            text,
            &fsql_compiler::CompileOptions::default(),
            &[],
        );
        let pipeline = c.pipeline.expect("compiles");
        ControlState::new(&pipeline, Path::new("."), false)
    }

    fn accept(s: &mut ControlState, payload: &str) -> Result<RulesetSpec, String> {
        match s.accept(payload, &mut AckHeader::default())? {
            ControlUpdate::Ruleset(spec) => Ok(spec),
            ControlUpdate::Model { .. } => Err("a model update".into()),
        }
    }

    #[test]
    fn rules_are_added_replaced_and_removed_in_priority_order() {
        let mut s = state();
        let spec = accept(&mut s, r#"{"op":"add_rule","ruleset":"r","version":2,"rule":{"name":"b","priority":5,"when":"country = 'XX' OR amount > big * 2","then":"BLOCK"}}"#).unwrap();
        assert_eq!(spec.version, 2);
        assert_eq!(
            spec.rules
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>(),
            ["b", "a"]
        );
        let spec = accept(&mut s, r#"{"op":"replace_rule","ruleset":"r","version":3,"rule":{"name":"b","priority":50,"when":"TRUE","then":"X"}}"#).unwrap();
        assert_eq!(
            spec.rules
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        let spec = accept(
            &mut s,
            r#"{"op":"remove_rule","ruleset":"r","version":4,"rule":"a"}"#,
        )
        .unwrap();
        assert_eq!(spec.rules.len(), 1);
        let spec = accept(
            &mut s,
            r#"{"op":"set_parameter","ruleset":"r","version":5,"parameter":"big","value":250}"#,
        )
        .unwrap();
        assert_eq!(spec.parameters[0].value, fsql_plan::Literal::float(250.0));
    }

    #[test]
    fn a_rejected_update_changes_nothing() {
        let mut s = state();
        for (payload, reason) in [
            (
                r#"{"op":"add_rule","ruleset":"r","version":2,"rule":{"name":"x","priority":1,"when":"amount > 'high'","then":"B"}}"#,
                "rule `x`",
            ),
            (
                r#"{"op":"add_rule","ruleset":"r","version":2,"rule":{"name":"a","priority":1,"when":"TRUE","then":"B"}}"#,
                "already has a rule `a`",
            ),
            (
                r#"{"op":"replace_rule","ruleset":"r","version":2,"rule":{"name":"zz","priority":1,"when":"TRUE","then":"B"}}"#,
                "no rule `zz`",
            ),
            (
                r#"{"op":"remove_rule","ruleset":"nope","version":2,"rule":"a"}"#,
                "no ruleset `nope`",
            ),
            (
                r#"{"op":"remove_rule","ruleset":"r","version":1,"rule":"a"}"#,
                "not newer",
            ),
            (
                r#"{"op":"set_parameter","ruleset":"r","version":2,"parameter":"big","value":"lots"}"#,
                "parameter `big`",
            ),
            (
                r#"{"op":"set_parameter","ruleset":"r","version":2,"parameter":"small","value":1}"#,
                "no parameter `small`",
            ),
            (
                r#"{"op":"set_model","model":"m","version":2,"path":"m.txt"}"#,
                "no model `m`",
            ),
            (
                r#"{"op":"drop_table","ruleset":"r","version":2}"#,
                "not a control update",
            ),
            (
                r#"{"op":"add_rule","ruleset":"r","version":2,"rule":{"name":"x","priority":1,"when":"TRUE) THEN 'B'); CREATE VIEW v AS SELECT 1 FROM t; --","then":"B"}}"#,
                "rule `x`",
            ),
        ] {
            let err = accept(&mut s, payload).unwrap_err();
            assert!(err.contains(reason), "{payload}: {err}");
        }
        // Version 2 is still free: nothing above advanced the state.
        let spec = accept(
            &mut s,
            r#"{"op":"remove_rule","ruleset":"r","version":2,"rule":"a"}"#,
        )
        .unwrap();
        assert!(spec.rules.is_empty());
    }
}
