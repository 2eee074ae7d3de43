//! `fsql explain`: the operator graph as text or Graphviz dot.

use std::fmt::Write;

use fsql_plan::changelog::ChangelogMode;
use fsql_plan::{
    AggregateFunction, EmitMode, GroupColumn, Node, Operator, OverFrame, Plan, WindowKind,
};

/// How each expression of node `n` runs: ` [compiled]`, ` [compiled; interpreted inside: ...]`
/// or ` [interpreted: why]`; nothing for plain columns, or when the JIT is off.
fn jit_notes(
    p: &fsql_plan::Pipeline,
    n: &Node,
    filter: Option<&fsql_plan::Expr>,
    outputs: &[fsql_plan::Expr],
    jit: bool,
) -> Vec<String> {
    let count = usize::from(filter.is_some()) + outputs.len();
    let input = n.inputs.first().and_then(|i| p.node(*i));
    let (true, Some(input)) = (jit, input) else {
        return vec![String::new(); count];
    };
    let schema = fsql_runtime::source::runtime_schema(&input.schema);
    fsql_runtime::compiled::describe(filter, outputs, &schema)
        .into_iter()
        .map(|d| {
            if d == "column" {
                String::new()
            } else {
                format!("   [{d}]")
            }
        })
        .collect()
}

/// Like [`jit_notes`], for expressions over rows of `schema` (a join's output, say), joined into
/// one note.
fn jit_note_over(schema: &fsql_plan::Schema, exprs: &[fsql_plan::Expr], jit: bool) -> String {
    if !jit || exprs.is_empty() {
        return String::new();
    }
    let schema = fsql_runtime::source::runtime_schema(schema);
    let notes: Vec<String> = fsql_runtime::compiled::describe(None, exprs, &schema)
        .into_iter()
        .filter(|d| d != "column")
        .collect();
    if notes.is_empty() {
        String::new()
    } else {
        format!("   [{}]", notes.join("; "))
    }
}

/// A readable listing: one block per operator with its inputs, schema, time and state.
pub fn text(plan: &Plan) -> String {
    let p = &plan.pipeline;
    let mut out = String::new();
    let emit = match p.emit {
        EmitMode::Watermark => "watermark order (event-time results once the watermark passes)",
        EmitMode::Arrival => "arrival order (each event emitted as it arrives)",
    };
    let _ = writeln!(out, "pipeline `{}`", p.name);
    let _ = writeln!(
        out,
        "  plan format {}, compiled by fsql {}",
        plan.header.format_version, plan.header.compiler_version
    );
    let _ = writeln!(out, "  source {}", plan.header.source_hash);
    let _ = writeln!(out, "  content {}", plan.header.content_hash);
    let _ = writeln!(out, "  emit: {emit}");
    let jit = fsql_runtime::jit_enabled(&p.settings);
    let _ = writeln!(
        out,
        "  expressions: {}",
        if jit {
            "compiled by the JIT where marked (`fsql run --no-jit` interprets all)"
        } else {
            "interpreted (SET 'jit.enabled' = 'false')"
        }
    );
    let backend = match fsql_plan::state_backend::StateBackendOptions::from_settings(&p.settings) {
        Ok(o) if o.kind == fsql_plan::state_backend::BackendKind::RocksDb => format!(
            "rocksdb (OVER, TopN and GROUP BY state beyond {} resident keys per operator live in RocksDB; checkpoints incremental)",
            o.resident_keys
        ),
        Ok(_) => "hashmap (every key in memory)".to_string(),
        Err(e) => format!("invalid: {e}"),
    };
    let _ = writeln!(out, "  state backend: {backend}");
    for (k, v) in &p.settings {
        let _ = writeln!(out, "  set '{k}' = '{}'", shown(k, v));
    }
    for m in &p.models {
        // The model is loaded as `fsql run` would: which scorer runs is decided at load time.
        let scorer = match fsql_runtime::operators::predict::LoadedModel::load(m, jit) {
            Ok(loaded) => {
                let e = loaded.model.ensemble();
                format!(
                    "objective {}, {} trees; scored by {}",
                    e.objective.name(),
                    e.trees.len(),
                    loaded.model.engine()
                )
            }
            Err(e) => format!("cannot be loaded: {e}"),
        };
        let _ = writeln!(
            out,
            "  model `{}` ({} inputs, {} outputs, {}) from `{}`: {scorer}",
            m.name,
            m.inputs.fields.len(),
            m.outputs.fields.len(),
            if m.raw_scores {
                "raw scores"
            } else {
                "predictions"
            },
            m.path
        );
    }
    let modes = fsql_plan::changelog::modes(&p.nodes);
    for n in &p.nodes {
        let _ = writeln!(out);
        let inputs = if n.inputs.is_empty() {
            String::new()
        } else {
            format!(
                " <- {}",
                n.inputs
                    .iter()
                    .map(|i| format!("#{}", i.0))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let _ = writeln!(out, "#{} {} `{}`{inputs}", n.id.0, kind(n), n.name);
        let cols: Vec<String> = n
            .schema
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let rowtime = if n.event_time == Some(i) {
                    " *ROWTIME*"
                } else {
                    ""
                };
                let null = if f.nullable { "" } else { " NOT NULL" };
                format!("{} {}{null}{rowtime}", f.name, f.data_type)
            })
            .collect();
        let _ = writeln!(out, "    schema: {}", cols.join(", "));
        match &n.op {
            Operator::Source(s) => {
                let _ = writeln!(out, "    connector: {}", connector(&s.connector));
                for (i, c) in s.columns.iter().enumerate() {
                    if !matches!(c.kind, fsql_plan::ExprKind::Column(_)) {
                        let _ = writeln!(out, "    computed: {} = {c}", n.schema.fields[i].name);
                    }
                }
                match &s.watermark {
                    Some(w) => {
                        let strategy = match w.max_out_of_orderness_ms {
                            Some(0) => "ascending timestamps".to_string(),
                            Some(ms) => format!("bounded out-of-orderness {ms} ms"),
                            None => "custom expression".to_string(),
                        };
                        let _ = writeln!(
                            out,
                            "    watermark: {} ({strategy}); rows behind it are late",
                            w.expr
                        );
                    }
                    None => {
                        let _ = writeln!(out, "    watermark: none (no event time)");
                    }
                }
            }
            Operator::Calc {
                filter,
                projections,
            } => {
                let mut notes = jit_notes(p, n, filter.as_ref(), projections, jit).into_iter();
                if let Some(f) = filter {
                    let note = notes.next().unwrap_or_default();
                    let _ = writeln!(out, "    filter: {f}{note}");
                }
                for (i, e) in projections.iter().enumerate() {
                    let note = notes.next().unwrap_or_default();
                    let _ = writeln!(out, "    {} := {e}{note}", n.schema.fields[i].name);
                }
            }
            Operator::Ruleset(r) => {
                let _ = writeln!(
                    out,
                    "    key: {} (version {}), default '{}'",
                    n.schema.fields[r.key].name, r.version, r.default_decision
                );
                for param in &r.parameters {
                    let value =
                        fsql_plan::Expr::literal(param.value.clone(), param.data_type.clone());
                    let _ = writeln!(
                        out,
                        "    parameter {} {} = {value} (read by rules as ${}; the control stream can change it)",
                        param.name, param.data_type, param.column
                    );
                }
                // Compiled with the parameters' values in place, as the runtime does.
                let conditions: Vec<_> = r.bound_rules().into_iter().map(|r| r.condition).collect();
                // The rules compile together (one first-match kernel): a rule that is just a
                // BOOLEAN column is part of it too.
                let notes = jit_notes(p, n, None, &conditions, jit)
                    .into_iter()
                    .map(|note| {
                        if note.is_empty() && jit {
                            "   [compiled]".to_string()
                        } else {
                            note
                        }
                    });
                for (rule, note) in r.rules.iter().zip(notes) {
                    let _ = writeln!(
                        out,
                        "    rule {} priority {}: WHEN {} THEN '{}'{note}",
                        rule.name, rule.priority, rule.condition, rule.decision
                    );
                }
            }
            Operator::Sink(s) => {
                let _ = writeln!(out, "    connector: {}", connector(&s.connector));
            }
            Operator::Over(o) => {
                let input = n.inputs.first().and_then(|i| p.node(*i));
                let _ = writeln!(
                    out,
                    "    {}",
                    partitioning(input, &o.partition_by, o.order_by)
                );
                let first = n.schema.fields.len() - o.aggregates.len();
                for (i, a) in o.aggregates.iter().enumerate() {
                    let args: Vec<String> = a.args.iter().map(ToString::to_string).collect();
                    let distinct = if a.distinct { "DISTINCT " } else { "" };
                    let note = input.map_or(String::new(), |input| {
                        jit_note_over(&input.schema, &a.args, jit)
                    });
                    let _ = writeln!(
                        out,
                        "    {} := {}({distinct}{}) {}{note}",
                        n.schema.fields[first + i].name,
                        aggregate_name(&a.function),
                        if args.is_empty() {
                            "*".into()
                        } else {
                            args.join(", ")
                        },
                        frame(&a.frame)
                    );
                }
                let emit = match p.emit {
                    EmitMode::Watermark => {
                        "rows are buffered and emitted in event-time order once the watermark passes them; rows behind the watermark are late here (counted, and written to the late-data file or table when set)"
                    }
                    EmitMode::Arrival => {
                        "each row is emitted as it arrives with all state seen so far; late rows still update state"
                    }
                };
                let _ = writeln!(out, "    emit: {emit}");
            }
            Operator::WindowAssign(w) => {
                let input = n.inputs.first().and_then(|i| p.node(*i));
                let _ = writeln!(
                    out,
                    "    {} on {}; each row once per window, with window_start, window_end, window_time",
                    window(&w.window),
                    column(input, w.time)
                );
            }
            Operator::GroupAggregate(g) => {
                let input = n.inputs.first().and_then(|i| p.node(*i));
                let keys: Vec<String> = g.keys.iter().map(|&c| column(input, c)).collect();
                let _ = writeln!(
                    out,
                    "    group by: {}",
                    if keys.is_empty() {
                        "() (a global aggregate)".to_string()
                    } else {
                        keys.join(", ")
                    }
                );
                write_aggregates(&mut out, &g.aggregates, &n.schema, g.keys.len(), input, jit);
                let _ = writeln!(
                    out,
                    "    emit: per input batch, each changed key: +I (new key), -U and +U (changed result), -D (last row retracted)"
                );
            }
            Operator::WindowAggregate(w) => {
                let input = n.inputs.first().and_then(|i| p.node(*i));
                let keys: Vec<String> = w
                    .group
                    .iter()
                    .filter_map(|g| match g {
                        GroupColumn::Key(c) => Some(column(input, *c)),
                        _ => None,
                    })
                    .collect();
                let _ = writeln!(
                    out,
                    "    {} on {}; group by: window_start, window_end{}",
                    window(&w.window),
                    column(input, w.time),
                    keys.iter().map(|k| format!(", {k}")).collect::<String>()
                );
                write_aggregates(
                    &mut out,
                    &w.aggregates,
                    &n.schema,
                    w.group.len(),
                    input,
                    jit,
                );
                let _ = writeln!(
                    out,
                    "    emit: one row per window and key when the watermark reaches window_end - 1 (in both emit modes); a row whose window already fired is late here (counted, and written to the late-data file or table when set)"
                );
            }
            Operator::Join(j) => {
                let side = |k: usize| n.inputs.get(k).and_then(|i| p.node(*i));
                let keys = join_keys(&j.left_keys, &j.right_keys);
                let _ = writeln!(out, "    {:?} join on {}", j.kind, keys);
                match &j.interval {
                    Some(b) => {
                        let _ = writeln!(
                            out,
                            "    interval: {} {} left.{} - right.{} {} {}; rows are dropped once the watermark passes their bound (unmatched outer rows emitted then); rows at or behind the watermark are late here",
                            duration(b.lower_ms),
                            if b.lower_inclusive { "<=" } else { "<" },
                            column(side(0), b.left_time),
                            column(side(1), b.right_time),
                            if b.upper_inclusive { "<=" } else { "<" },
                            duration(b.upper_ms),
                        );
                    }
                    None => {
                        let _ = writeln!(
                            out,
                            "    regular join: each input's rows are kept until the other input ends"
                        );
                    }
                }
                if let Some(r) = &j.residual {
                    let note = jit_note_over(&n.schema, std::slice::from_ref(r), jit);
                    let _ = writeln!(out, "    condition: {r}{note}");
                }
            }
            Operator::WindowRank(r) => {
                let input = n.inputs.first().and_then(|i| p.node(*i));
                let _ = writeln!(
                    out,
                    "    {}{}; a partition is emitted, numbered, when the watermark reaches {} - 1; rows of a fired window are late here",
                    row_number_over(input, &r.partition_by, &r.order_by),
                    r.limit
                        .map(|l| format!(", first {l} rows kept"))
                        .unwrap_or_default(),
                    column(input, r.window_end),
                );
            }
            Operator::Rank(r) => {
                let input = n.inputs.first().and_then(|i| p.node(*i));
                let _ = writeln!(
                    out,
                    "    {}, first {} rows kept; each row entering them emits its rank and the ranks it shifts (+I, -U, +U)",
                    row_number_over(input, &r.partition_by, &r.order_by),
                    r.limit.map_or_else(|| "?".into(), |l| l.to_string()),
                );
            }
            Operator::MatchRecognize(m) => {
                let input = n.inputs.first().and_then(|i| p.node(*i));
                let _ = writeln!(
                    out,
                    "    {}",
                    partitioning(input, &m.partition_by, m.order_by)
                );
                let _ = writeln!(
                    out,
                    "    pattern: {} over variables {}{}; {:?}; after match: {:?}{}{}",
                    pattern_text(&m.pattern, &m.variables),
                    m.variables.join(", "),
                    m.subsets
                        .iter()
                        .map(|(s, vars)| {
                            let names: Vec<&str> = vars
                                .iter()
                                .filter_map(|v| m.variables.get(*v).map(String::as_str))
                                .collect();
                            format!("; subset {s} = ({})", names.join(", "))
                        })
                        .collect::<String>(),
                    m.rows_per_match,
                    m.after_match,
                    m.within_ms
                        .map(|ms| format!("; within {ms} ms"))
                        .unwrap_or_default(),
                    if m.emit_timeouts {
                        ", timed-out partial matches emitted"
                    } else {
                        ""
                    }
                );
                // Conditions and measures run over evaluation rows: the input's columns, the
                // derived values, then the navigations.
                let eval = input.map(|input| m.evaluation_schema(&input.schema));
                let note = |e: &fsql_plan::Expr| {
                    eval.as_ref().map_or(String::new(), |eval| {
                        jit_note_over(eval, std::slice::from_ref(e), jit)
                    })
                };
                let notes: Vec<String> = m
                    .defines
                    .iter()
                    .map(|d| d.as_ref().map(note).unwrap_or_default())
                    .collect();
                for ((v, d), note) in m.variables.iter().zip(&m.defines).zip(notes) {
                    match d {
                        Some(e) => {
                            let _ = writeln!(out, "    define {v}: {e}{note}");
                        }
                        None => {
                            let _ = writeln!(out, "    define {v}: TRUE (not defined)");
                        }
                    }
                }
                for (k, e) in m.derived.iter().enumerate() {
                    let _ = writeln!(out, "    ${} := {e}", n_input_columns(input) + k);
                }
                for (k, (nav, t)) in m.navigations.iter().enumerate() {
                    let at = n_input_columns(input) + m.derived.len() + k;
                    let _ = writeln!(out, "    ${at} := {nav:?} ({t})");
                }
                for measure in &m.measures {
                    let note = note(&measure.expr);
                    let _ = writeln!(
                        out,
                        "    measure {} := {}{note}",
                        measure.name, measure.expr
                    );
                }
            }
            Operator::TemporalJoin(j) => {
                let side = |k: usize| n.inputs.get(k).and_then(|i| p.node(*i));
                let keys = join_keys(&j.left_keys, &j.right_keys);
                let _ = writeln!(
                    out,
                    "    {:?} temporal join on {}: each left row with the version valid at left.{} (right versions by {}); left rows wait for the watermark; rows at or behind it are late here",
                    j.kind,
                    keys,
                    column(side(0), j.left_time),
                    column(side(1), j.right_time),
                );
                if let Some(r) = &j.residual {
                    let note = jit_note_over(&n.schema, std::slice::from_ref(r), jit);
                    let _ = writeln!(out, "    condition: {r}{note}");
                }
            }
            Operator::Predict(pr) => {
                let input = n.inputs.first().and_then(|i| p.node(*i));
                let features: Vec<String> = pr.features.iter().map(|k| column(input, *k)).collect();
                let _ = writeln!(
                    out,
                    "    model `{}` on ({}); one scorer call per batch",
                    pr.model,
                    features.join(", ")
                );
            }
            Operator::Union | Operator::Collect => {}
        }
        let _ = writeln!(out, "    state: {}", state(n));
        if modes.get(n.id.0 as usize) == Some(&ChangelogMode::Updating) {
            let _ = writeln!(out, "    changelog: updating (rows are +I, -U, +U, -D)");
        }
        if !matches!(
            n.op,
            Operator::Calc { .. }
                | Operator::Ruleset(_)
                | Operator::Over(_)
                | Operator::WindowAggregate(_)
                | Operator::GroupAggregate(_)
                | Operator::Join(_)
                | Operator::TemporalJoin(_)
                | Operator::MatchRecognize(_)
                | Operator::Predict(_)
                | Operator::Union
                | Operator::Collect
                | Operator::Sink(_)
        ) {
            let _ = writeln!(
                out,
                "    expressions: interpreted (the JIT compiles filters, projections, rules, aggregate arguments, join conditions, pattern conditions and measures)"
            );
        }
    }
    out
}

/// One line per aggregate of a GROUP BY or window aggregation: its output column (the node's
/// columns after its `keys` group columns) and call, with the JIT's note on its arguments.
fn write_aggregates(
    out: &mut String,
    aggregates: &[fsql_plan::GroupAggregate],
    schema: &fsql_plan::Schema,
    keys: usize,
    input: Option<&Node>,
    jit: bool,
) {
    for (i, a) in aggregates.iter().enumerate() {
        let args: Vec<String> = a.args.iter().map(ToString::to_string).collect();
        let distinct = if a.distinct { "DISTINCT " } else { "" };
        let filter = a
            .filter
            .as_ref()
            .map(|f| format!(" FILTER (WHERE {f})"))
            .unwrap_or_default();
        let exprs: Vec<fsql_plan::Expr> = a.args.iter().chain(&a.filter).cloned().collect();
        let note = input.map_or(String::new(), |input| {
            jit_note_over(&input.schema, &exprs, jit)
        });
        let name = schema.fields.get(keys + i).map_or("?", |f| f.name.as_str());
        let _ = writeln!(
            out,
            "    {name} := {}({distinct}{}){filter}{note}",
            aggregate_name(&a.function),
            if args.is_empty() {
                "*".into()
            } else {
                args.join(", ")
            },
        );
    }
}

fn aggregate_name(f: &AggregateFunction) -> String {
    match f {
        AggregateFunction::Lag { offset } => format!("LAG[offset {offset}]"),
        other => other.sql_name().to_string(),
    }
}

/// `ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...)` of a TopN (with or without a window).
fn row_number_over(
    input: Option<&Node>,
    partition_by: &[usize],
    order_by: &[fsql_plan::SortKey],
) -> String {
    let keys: Vec<String> = partition_by.iter().map(|&c| column(input, c)).collect();
    let order: Vec<String> = order_by
        .iter()
        .map(|k| format!("{}{}", k.expr, if k.descending { " DESC" } else { "" }))
        .collect();
    format!(
        "ROW_NUMBER() OVER (PARTITION BY {} ORDER BY {})",
        keys.join(", "),
        if order.is_empty() {
            "(arrival)".into()
        } else {
            order.join(", ")
        }
    )
}

/// `left.a = right.b AND ...` of a join's key pairs.
fn join_keys(left: &[fsql_plan::Expr], right: &[fsql_plan::Expr]) -> String {
    let keys: Vec<String> = left
        .iter()
        .zip(right)
        .map(|(l, r)| format!("left.{l} = right.{r}"))
        .collect();
    if keys.is_empty() {
        "(no keys)".into()
    } else {
        keys.join(" AND ")
    }
}

/// Input column `i`'s name.
/// `partition by: k1, k2; order by: ts (event time)` with the input's column names.
fn partitioning(input: Option<&Node>, partition_by: &[usize], order_by: usize) -> String {
    let keys: Vec<String> = partition_by.iter().map(|&i| column(input, i)).collect();
    format!(
        "partition by: {}; order by: {} (event time)",
        if keys.is_empty() {
            "(none)".into()
        } else {
            keys.join(", ")
        },
        column(input, order_by)
    )
}

fn column(input: Option<&Node>, i: usize) -> String {
    input
        .and_then(|n| n.schema.fields.get(i))
        .map_or_else(|| format!("${i}"), |f| f.name.clone())
}

/// A window TVF as SQL-ish text.
fn window(w: &WindowKind) -> String {
    let d = duration;
    match *w {
        WindowKind::Tumble {
            size_ms,
            offset_ms: 0,
        } => {
            format!("TUMBLE({})", d(size_ms))
        }
        WindowKind::Tumble { size_ms, offset_ms } => {
            format!("TUMBLE({}, offset {})", d(size_ms), d(offset_ms))
        }
        WindowKind::Hop {
            size_ms,
            slide_ms,
            offset_ms,
        } => format!(
            "HOP(slide {}, size {}{})",
            d(slide_ms),
            d(size_ms),
            if offset_ms == 0 {
                String::new()
            } else {
                format!(", offset {}", d(offset_ms))
            }
        ),
        WindowKind::Cumulate {
            step_ms,
            size_ms,
            offset_ms,
        } => format!(
            "CUMULATE(step {}, max size {}{})",
            d(step_ms),
            d(size_ms),
            if offset_ms == 0 {
                String::new()
            } else {
                format!(", offset {}", d(offset_ms))
            }
        ),
        WindowKind::Session { gap_ms } => format!("SESSION(gap {})", d(gap_ms)),
    }
}

/// Milliseconds in the largest whole unit.
fn duration(ms: i64) -> String {
    if ms < 0 {
        return format!("-{}", duration(ms.saturating_neg()));
    }
    for (unit, len) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("min", 60_000),
        ("s", 1000),
    ] {
        if ms != 0 && ms % len == 0 {
            return format!("{} {unit}", ms / len);
        }
    }
    format!("{ms} ms")
}

fn frame(f: &OverFrame) -> String {
    match f {
        OverFrame::Range { preceding_ms } => format!("RANGE {preceding_ms} ms PRECEDING"),
        OverFrame::UnboundedRange => "RANGE UNBOUNDED PRECEDING".into(),
        OverFrame::Rows { preceding } => format!("ROWS {preceding} PRECEDING"),
        OverFrame::UnboundedRows => "ROWS UNBOUNDED PRECEDING".into(),
    }
}

/// `name 'key'='value' ...` of a connector.
fn connector(c: &fsql_plan::ConnectorSpec) -> String {
    let mut text = c.connector.clone();
    for (k, v) in &c.options {
        text.push_str(&format!(" '{k}'='{}'", shown(k, v)));
    }
    text
}

/// An option's value as `explain` prints it: secrets (passwords, client secrets, JAAS configs,
/// private keys, tokens) as `******`, since explain output ends up in tickets and chat.
fn shown<'a>(key: &str, value: &'a str) -> &'a str {
    let key = key.to_ascii_lowercase();
    let secret = [
        "password",
        "secret",
        "jaas.config",
        "key.pem",
        "oauthbearer.config",
    ]
    .iter()
    .any(|s| key.contains(s));
    if secret { "******" } else { value }
}

fn kind(n: &Node) -> &'static str {
    match n.op {
        Operator::Over(_) => "Over",
        Operator::WindowAssign(_) => "WindowAssign",
        Operator::WindowAggregate(_) => "WindowAggregate",
        Operator::GroupAggregate(_) => "GroupAggregate",
        Operator::Join(_) => "Join",
        Operator::WindowRank(_) => "WindowRank",
        Operator::Rank(_) => "Rank",
        Operator::TemporalJoin(_) => "TemporalJoin",
        Operator::MatchRecognize(_) => "MatchRecognize",
        Operator::Source(_) => "Source",
        Operator::Calc { .. } => "Calc",
        Operator::Union => "Union",
        Operator::Ruleset(_) => "Ruleset",
        Operator::Predict(_) => "Predict",
        Operator::Sink(_) => "Sink",
        Operator::Collect => "Collect",
    }
}

fn state(n: &Node) -> &'static str {
    match &n.op {
        Operator::Over(_) => {
            "per partition key: the rows of each bounded frame and one accumulator per aggregate"
        }
        Operator::WindowAggregate(w) if matches!(w.window, WindowKind::Session { .. }) => {
            "per key: its open sessions, one accumulator per aggregate each; freed when a session fires"
        }
        Operator::WindowAggregate(_) => {
            "per slice and key: one accumulator per aggregate; a slice is freed when the last window containing it fires"
        }
        Operator::GroupAggregate(_) => {
            "per key: its row count and one accumulator per aggregate (MIN/MAX over an updating input: the counted values), kept while the key has rows"
        }
        Operator::Join(j) if j.interval.is_some() => {
            "per join key: the rows of each input still within the interval of a future row"
        }
        Operator::Join(_) => "per join key: the rows of each input, until the other input ends",
        Operator::Rank(_) => {
            "per partition: its first N rows (the input is append-only: a row past N never returns)"
        }
        Operator::WindowRank(_) => {
            "per window partition: its rows (the first N with a limit) until the window fires"
        }
        Operator::TemporalJoin(_) => {
            "left rows until the watermark passes them; per key, the versions from the latest one at or before the watermark"
        }
        Operator::MatchRecognize(_) => {
            "per partition: rows not yet behind the watermark, the live match attempts (each its classified rows) and the rows they can still navigate to"
        }
        Operator::Source(_) => "source position only",
        _ => "none (stateless)",
    }
}

fn n_input_columns(input: Option<&Node>) -> usize {
    input.map_or(0, |n| n.schema.fields.len())
}

/// A row pattern as SQL.
fn pattern_text(p: &fsql_plan::Pattern, vars: &[String]) -> String {
    use fsql_plan::Pattern as P;
    let list = |ps: &[P], sep: &str| {
        ps.iter()
            .map(|p| pattern_text(p, vars))
            .collect::<Vec<_>>()
            .join(sep)
    };
    match p {
        P::Var(v) => vars.get(*v).cloned().unwrap_or_else(|| format!("#{v}")),
        P::Empty => "()".into(),
        P::Concat(ps) => list(ps, " "),
        P::Alt(ps) => format!("({})", list(ps, " | ")),
        P::Permute(ps) => format!("PERMUTE({})", list(ps, ", ")),
        P::Exclude(p) => format!("{{- {} -}}", pattern_text(p, vars)),
        P::Start => "^".into(),
        P::End => "$".into(),
        P::Repeat {
            pattern,
            min,
            max,
            greedy,
        } => {
            let q = match (min, max) {
                (0, None) => "*".to_string(),
                (1, None) => "+".to_string(),
                (0, Some(1)) => "?".to_string(),
                (n, None) => format!("{{{n},}}"),
                (n, Some(m)) if n == m => format!("{{{n}}}"),
                (n, Some(m)) => format!("{{{n},{m}}}"),
            };
            let reluctant = if *greedy { "" } else { "?" };
            format!("({}){q}{reluctant}", pattern_text(pattern, vars))
        }
    }
}

/// Graphviz: `fsql explain p.fsql --format dot | dot -Tsvg > p.svg`.
pub fn dot(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "digraph \"{}\" {{",
        plan.pipeline.name.replace('"', "'")
    );
    let _ = writeln!(
        out,
        "  rankdir=LR; node [shape=box, fontname=\"monospace\"];"
    );
    for n in &plan.pipeline.nodes {
        let _ = writeln!(
            out,
            "  n{} [label=\"#{} {}\\n{}\"];",
            n.id.0,
            n.id.0,
            kind(n),
            n.name.replace('"', "'")
        );
        for i in &n.inputs {
            let _ = writeln!(out, "  n{} -> n{};", i.0, n.id.0);
        }
    }
    let _ = writeln!(out, "}}");
    out
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn secrets_are_masked_and_other_options_shown() {
        assert_eq!(shown("properties.sasl.password", "hunter2"), "******");
        assert_eq!(shown("properties.ssl.key.password", "k"), "******");
        assert_eq!(shown("control.properties.sasl.jaas.config", "x"), "******");
        assert_eq!(
            shown("properties.sasl.oauthbearer.client.secret", "s"),
            "******"
        );
        assert_eq!(shown("properties.ssl.key.pem", "-----BEGIN"), "******");
        assert_eq!(shown("properties.sasl.username", "svc-fraud"), "svc-fraud");
        assert_eq!(
            shown("properties.ssl.key.location", "/etc/k.pem"),
            "/etc/k.pem"
        );
        assert_eq!(shown("topic", "payments"), "payments");
    }
}
