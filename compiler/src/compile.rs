//! The compiler driver: statements in order → catalog, DataFusion plans, plan nodes, diagnostics.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType as ArrowType, SchemaRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{DFSchema, DataFusionError, TableReference};
use datafusion::logical_expr::planner::{ContextProvider, ExprPlanner, TypePlanner};
use datafusion::logical_expr::{
    AggregateUDF, HigherOrderUDF, LogicalPlan, LogicalPlanBuilder, LogicalTableSource, ScalarUDF,
    TableSource, WindowUDF,
};
use datafusion::optimizer::{Analyzer, Optimizer, OptimizerContext};
use datafusion::sql::planner::{ParserOptions, PlannerContext, SqlToRel};
use fsql_plan::{
    BinaryOp, ConnectorSpec, DataType, EmitMode, Expr, ExprKind, Field, LATE_DATA_SINK, Literal,
    MatchRecognizeSpec, ModelDecl, Node, NodeId, Operator, Pipeline, Plan, PlanHeader, PredictSpec,
    Rule, RulesetSpec, Schema, SinkSpec, SourceSpec, WatermarkSpec, sha256_hex,
};

use crate::ast::*;
use crate::diagnostic::{Diagnostic, Severity, closest};
use crate::functions::SyntaxPlanner;
use crate::lower::{ScanResolver, VersionedTable, lower_plan, materialize, output_names, project};
use crate::lower_expr::{Unsupported, lower_expr};
use crate::options::{ConnectorInfo, Role, check_connector, check_role, check_setting};
use crate::parse::parse_file;
use crate::source::{FileId, SourceFile, SourceMap, Span};
use crate::tvf::{self, VersionedScan, WindowTvf};
use crate::typecheck::check_types;

/// How to compile.
#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    /// Turn state-boundedness warnings into errors (`fsql check --strict`).
    pub strict: bool,
    /// Keep views no sink or query reads (`fsql test` observes them).
    pub keep_unused: bool,
}

/// A relation the pipeline defines, by name: where its rows come from.
#[derive(Clone, Debug, PartialEq)]
pub struct RelationInfo {
    pub node: NodeId,
    pub schema: Schema,
}

/// The result of compiling one file: diagnostics and, when there are no errors, the pipeline.
#[derive(Debug)]
pub struct Compilation {
    pub sources: SourceMap,
    pub diagnostics: Vec<Diagnostic>,
    pub pipeline: Option<Pipeline>,
    /// Views, rulesets, sources and sinks by name (for `fsql test` and `fsql explain`).
    pub relations: BTreeMap<String, RelationInfo>,
    /// The file's `TEST` blocks.
    pub tests: Vec<TestDef>,
    /// The declared tables and their schemas (used to type test inputs).
    pub tables: BTreeMap<String, Schema>,
}

impl Compilation {
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    /// The plan artefact, if compilation succeeded.
    pub fn plan(&self) -> Option<Plan> {
        let pipeline = self.pipeline.clone()?;
        let mut text = Vec::new();
        for f in self.sources.files() {
            text.extend_from_slice(f.text.as_bytes());
        }
        let header = PlanHeader::new(env!("CARGO_PKG_VERSION"), &sha256_hex(&text));
        Some(Plan::new(header, pipeline))
    }
}

/// Compiles the file at `path`.
pub fn compile_file(path: &Path, options: &CompileOptions) -> Compilation {
    match std::fs::read_to_string(path) {
        Ok(text) => compile_source(path, text, options, &[]),
        Err(e) => Compilation {
            sources: SourceMap::default(),
            diagnostics: vec![Diagnostic::error(
                format!("cannot read `{}`: {e}", path.display()),
                None,
            )],
            pipeline: None,
            relations: BTreeMap::new(),
            tests: vec![],
            tables: BTreeMap::new(),
        },
    }
}

/// Compiles `text` (as the file `path`), followed by `extra` statements (a test's additions).
pub fn compile_source(
    path: &Path,
    text: String,
    options: &CompileOptions,
    extra: &[Statement],
) -> Compilation {
    let mut sources = SourceMap::default();
    let file = sources.add(SourceFile::new(path, text));
    let mut diags = Vec::new();
    let mut statements = parse_file(&mut sources, file, &mut diags);
    statements.extend(extra.iter().cloned());
    let dirs = sources
        .files()
        .iter()
        .map(|f| f.dir().display().to_string())
        .collect();
    let mut c = Compiler::new(dirs, diags);
    let name = path.file_stem().map_or_else(
        || "pipeline".to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    let mut tests = Vec::new();
    for stmt in &statements {
        match &stmt.kind {
            StatementKind::Test(t) => tests.push(t.clone()),
            _ => c.statement(stmt),
        }
    }
    let pipeline = c.finish(name, file, options);
    Compilation {
        sources,
        diagnostics: c.diags,
        pipeline,
        relations: c.relations,
        tests,
        tables: c
            .tables
            .iter()
            .map(|(k, t)| (k.clone(), t.schema.clone()))
            .collect(),
    }
}

/// The `METADATA` columns of a table: position among its physical and metadata columns → key
/// (`FROM 'key'`, or the column name).
fn metadata_keys(def: &TableDef) -> BTreeMap<usize, String> {
    def.columns
        .iter()
        .filter(|c| !matches!(c.kind, ColumnKind::Computed(_)))
        .enumerate()
        .filter_map(|(i, c)| match &c.kind {
            ColumnKind::Metadata { key, .. } => {
                Some((i, key.clone().unwrap_or_else(|| c.name.node.clone())))
            }
            _ => None,
        })
        .collect()
}

/// A table written by `INSERT INTO`, before its sink node is created.
struct PendingSink {
    def: TableDef,
    schema: Schema,
    inputs: Vec<NodeId>,
    event_time: Option<usize>,
}

/// A `CREATE TABLE` after analysis.
struct TableInfo {
    def: TableDef,
    /// Output columns (physical, metadata and computed, in declaration order).
    schema: Schema,
    physical: Schema,
    columns: Vec<Expr>,
    watermark: Option<WatermarkSpec>,
    /// The connector, if the options named a known one.
    connector: Option<&'static ConnectorInfo>,
    /// The source node, once a query reads the table.
    node: Option<NodeId>,
}

struct Compiler {
    /// The directory of each source file (by `FileId`): relative connector paths resolve there.
    dirs: Vec<String>,
    diags: Vec<Diagnostic>,
    settings: BTreeMap<String, String>,
    /// Where each setting's value was given (the last `SET` of a key wins).
    setting_spans: HashMap<String, Span>,
    tables: BTreeMap<String, TableInfo>,
    relations: BTreeMap<String, RelationInfo>,
    /// Where each name was defined (for "already defined" messages).
    defined: BTreeMap<String, Span>,
    /// The statement each query's nodes come from, by the label their names start with
    /// (`view`, `insert:table`, `select#1`): where a diagnostic about a node points.
    query_spans: BTreeMap<String, Span>,
    /// Names whose definition failed: references to them are not reported again.
    failed: BTreeSet<String>,
    nodes: Vec<Node>,
    /// Tables written by INSERT INTO, by name.
    sinks: BTreeMap<String, PendingSink>,
    models: Vec<ModelDecl>,
    udfs: HashMap<String, Arc<ScalarUDF>>,
    udafs: HashMap<String, Arc<AggregateUDF>>,
    udwfs: HashMap<String, Arc<WindowUDF>>,
    expr_planners: Vec<Arc<dyn ExprPlanner>>,
    config: ConfigOptions,
    selects: usize,
    /// Window TVFs of the queries so far, by their synthetic relation name (`__window<n>`).
    windows: BTreeMap<String, WindowTvf>,
    /// Versioned tables of temporal joins, by their synthetic relation name (`__versioned<n>`).
    versioned: BTreeMap<String, VersionedScan>,
    /// Those a temporal join read (the others were not on a join's right side).
    claimed: BTreeSet<String>,
    /// MATCH_RECOGNIZE clauses, by their synthetic relation name (`__match<n>`).
    matches: BTreeMap<String, MatchPlan>,
    /// `ML_PREDICT` calls, by their synthetic relation name (`__predict<n>`).
    predicts: BTreeMap<String, PredictPlan>,
}

/// Whether a pattern has an exclusion `{- ... -}`.
fn has_exclusion(p: &fsql_plan::Pattern) -> bool {
    use fsql_plan::Pattern as P;
    match p {
        P::Exclude(_) => true,
        P::Concat(ps) | P::Alt(ps) | P::Permute(ps) => ps.iter().any(has_exclusion),
        P::Repeat { pattern, .. } => has_exclusion(pattern),
        P::Var(_) | P::Empty | P::Start | P::End => false,
    }
}

/// A planned `MATCH_RECOGNIZE`: the relation it reads and the operator over it.
#[derive(Clone, Debug)]
struct MatchPlan {
    input: String,
    spec: MatchRecognizeSpec,
    schema: Schema,
    event_time: Option<usize>,
}

/// An `ML_PREDICT` call, checked: the relation it reads and the operator it becomes.
#[derive(Clone, Debug)]
struct PredictPlan {
    input: String,
    spec: PredictSpec,
    schema: Schema,
}

fn parser_options() -> ParserOptions {
    ParserOptions {
        // Flink resolves identifiers case-sensitively and keeps their case.
        enable_ident_normalization: false,
        collect_spans: true,
        map_string_types_to_utf8view: false,
        // Flink orders NULL as the smallest value: first ascending, last descending.
        default_null_ordering: datafusion::sql::planner::NullOrdering::NullsMin,
        ..ParserOptions::new()
    }
}

impl Compiler {
    fn new(dirs: Vec<String>, diags: Vec<Diagnostic>) -> Compiler {
        let mut config = ConfigOptions::new();
        config.sql_parser.enable_ident_normalization = false;
        config.sql_parser.map_string_types_to_utf8view = false;
        config.sql_parser.collect_spans = true;
        config.sql_parser.default_null_ordering = "nulls_min".into();
        let mut c = Compiler {
            dirs,
            diags,
            settings: BTreeMap::new(),
            setting_spans: HashMap::new(),
            tables: BTreeMap::new(),
            relations: BTreeMap::new(),
            defined: BTreeMap::new(),
            query_spans: BTreeMap::new(),
            failed: BTreeSet::new(),
            nodes: Vec::new(),
            sinks: BTreeMap::new(),
            models: Vec::new(),
            expr_planners: vec![],
            udfs: crate::functions::udfs(),
            udafs: crate::aggregates::udafs(),
            udwfs: crate::aggregates::udwfs(),
            config,
            selects: 0,
            windows: BTreeMap::new(),
            versioned: BTreeMap::new(),
            matches: BTreeMap::new(),
            predicts: BTreeMap::new(),
            claimed: BTreeSet::new(),
        };
        c.expr_planners = vec![Arc::new(SyntaxPlanner::new(&c.udfs))];
        c
    }

    fn error(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// Records a new name; false (with a diagnostic) if it is taken.
    fn define(&mut self, name: &Spanned<String>) -> bool {
        if let Some(prev) = self.defined.get(&name.node) {
            let _ = prev;
            self.error(Diagnostic::error(
                format!("`{}` is already defined", name.node),
                name.span,
            ));
            return false;
        }
        self.defined.insert(name.node.clone(), name.span);
        true
    }

    fn statement(&mut self, stmt: &Statement) {
        match &stmt.kind {
            StatementKind::Set { key, value } => {
                if let Some(d) = check_setting(&key.node, &value.node, key.span, value.span) {
                    self.error(d);
                }
                self.settings.insert(key.node.clone(), value.node.clone());
                self.setting_spans.insert(key.node.clone(), value.span);
            }
            StatementKind::CreateTable(t) => self.create_table(t),
            StatementKind::CreateModel(m) => self.create_model(m),
            StatementKind::CreateRuleset(r) => self.create_ruleset(r),
            StatementKind::Query(q) => self.query(q),
            StatementKind::Test(_) => {}
        }
    }

    // ---- CREATE TABLE ---------------------------------------------------------------------------

    fn create_table(&mut self, t: &TableDef) {
        if !self.define(&t.name) {
            return;
        }
        let connector = check_connector(&t.name.node, &t.options, t.name.span, &mut self.diags);
        if connector.is_some_and(|c| c.name == "upsert-kafka") && t.primary_key.is_none() {
            self.error(Diagnostic::error(
                crate::options::UPSERT_KAFKA_NEEDS_KEY,
                t.name.span,
            ));
        }
        let mut physical = Vec::new();
        for c in &t.columns {
            match &c.kind {
                ColumnKind::Physical { data_type } | ColumnKind::Metadata { data_type, .. } => {
                    physical.push(Field::new(&c.name.node, data_type.node.clone(), true));
                }
                ColumnKind::Computed(_) => {}
            }
        }
        for c in &t.columns {
            let ColumnKind::Metadata { key, .. } = &c.kind else {
                continue;
            };
            let key = key.clone().unwrap_or_else(|| c.name.node.clone());
            match connector.map(|c| c.metadata) {
                Some([]) => self.error(Diagnostic::error(
                    format!(
                        "connector '{}' has no metadata columns",
                        connector.map_or("", |c| c.name)
                    ),
                    c.name.span,
                )),
                Some(keys) if !keys.contains(&key.as_str()) => self.error(
                    Diagnostic::error(format!("unknown metadata key '{key}'"), c.name.span)
                        .with_help(format!("metadata keys: {}", keys.join(", "))),
                ),
                _ => {}
            }
        }
        let mut seen = BTreeSet::new();
        for c in &t.columns {
            if !seen.insert(c.name.node.clone()) {
                self.error(Diagnostic::error(
                    format!("column `{}` is declared twice", c.name.node),
                    c.name.span,
                ));
            }
        }
        let physical = Schema::new(physical);
        let physical_arrow = Arc::new(physical.to_arrow());
        let mut columns = Vec::new();
        let mut fields = Vec::new();
        let mut phys_index = 0;
        let mut ok = true;
        for c in &t.columns {
            match &c.kind {
                ColumnKind::Physical { .. } | ColumnKind::Metadata { .. } => {
                    let f = physical.fields[phys_index].clone();
                    columns.push(Expr::column(phys_index, f.data_type.clone(), true));
                    fields.push(f);
                    phys_index += 1;
                }
                ColumnKind::Computed(e) => {
                    match self.plan_exprs(&t.name.node, &physical_arrow, &[e]) {
                        Some(mut exprs) => {
                            let expr = exprs.remove(0);
                            fields.push(Field::new(
                                &c.name.node,
                                expr.data_type.clone(),
                                expr.nullable,
                            ));
                            columns.push(expr);
                        }
                        None => ok = false,
                    }
                }
            }
        }
        let schema = Schema::new(fields);
        let mut watermark = None;
        if let (Some(w), true) = (&t.watermark, ok) {
            watermark = self.watermark(t, w, &schema);
        }
        if let Some(pk) = &t.primary_key {
            for k in pk {
                if schema.index_of(&k.node).is_none() {
                    self.unknown_column(&k.node, k.span, &schema, &t.name.node);
                }
            }
        }
        if !ok {
            self.failed.insert(t.name.node.clone());
        }
        self.tables.insert(
            t.name.node.clone(),
            TableInfo {
                def: t.clone(),
                schema,
                physical,
                columns,
                watermark,
                connector,
                node: None,
            },
        );
    }

    fn watermark(
        &mut self,
        t: &TableDef,
        w: &WatermarkDef,
        schema: &Schema,
    ) -> Option<WatermarkSpec> {
        let Some(rowtime) = schema.index_of(&w.column.node) else {
            self.unknown_column(&w.column.node, w.column.span, schema, &t.name.node);
            return None;
        };
        let ty = &schema.fields[rowtime].data_type;
        let precision_ok = matches!(ty, DataType::Timestamp { precision } | DataType::TimestampLtz { precision } if *precision <= 3);
        if !precision_ok {
            self.error(Diagnostic::error(
                format!(
                    "the event-time column `{}` must be TIMESTAMP(3) or TIMESTAMP_LTZ(3), not {ty}",
                    w.column.node
                ),
                w.column.span,
            ));
            return None;
        }
        let arrow = Arc::new(schema.to_arrow());
        let expr = self.plan_exprs(&t.name.node, &arrow, &[&w.expr])?.remove(0);
        if !expr.data_type.is_timestamp() {
            self.error(Diagnostic::error(
                format!(
                    "a watermark expression must return a timestamp, this one returns {}",
                    expr.data_type
                ),
                w.expr.span(),
            ));
            return None;
        }
        let max_out_of_orderness_ms = match &expr.kind {
            ExprKind::Column(c) if *c == rowtime => Some(0),
            ExprKind::Binary {
                op: BinaryOp::Minus,
                left,
                right,
            } => match (&left.kind, &right.kind) {
                (ExprKind::Column(c), ExprKind::Literal(Literal::Int(ms)))
                    if *c == rowtime && right.data_type == DataType::IntervalDayTime =>
                {
                    Some(*ms)
                }
                _ => None,
            },
            _ => None,
        };
        Some(WatermarkSpec {
            rowtime,
            expr,
            max_out_of_orderness_ms,
        })
    }

    /// Plans expressions written in an fsql statement against a schema (as a projection over a
    /// table called `table`) and lowers them.
    fn plan_exprs(
        &mut self,
        table: &str,
        schema: &SchemaRef,
        exprs: &[&SqlExpr],
    ) -> Option<Vec<Expr>> {
        let provider = Provider { c: self };
        let planner = SqlToRel::new_with_options(&provider, parser_options());
        let df_schema = match DFSchema::try_from_qualified_schema(table, schema) {
            Ok(s) => s,
            Err(e) => {
                let d = Diagnostic::error(e.strip_backtrace(), exprs.first().map(|e| e.span()));
                self.error(d);
                return None;
            }
        };
        let mut planned = Vec::new();
        let mut errors = Vec::new();
        for (i, e) in exprs.iter().enumerate() {
            let mut sql = e.expr.clone();
            crate::rewrite::flink_syntax(&mut sql);
            match planner.sql_to_expr(sql, &df_schema, &mut PlannerContext::new()) {
                Ok(x) => planned.push(x.alias(format!("__expr{i}"))),
                Err(err) => errors.push(self.df_error(&err, &e.source)),
            }
        }
        if !errors.is_empty() {
            self.diags.extend(errors);
            return None;
        }
        let source = Arc::new(LogicalTableSource::new(schema.clone()));
        let plan = LogicalPlanBuilder::scan(table, source, None)
            .and_then(|b| b.project(planned))
            .and_then(|b| b.build());
        let span = exprs.first().map(|e| e.span());
        let plan = match plan {
            Ok(p) => p,
            Err(e) => {
                self.error(Diagnostic::error(clean(&e), span));
                return None;
            }
        };
        let type_errors = check_types(&plan, exprs[0].source.snippet());
        if !type_errors.is_empty() {
            self.diags.extend(type_errors);
            return None;
        }
        let plan = match Analyzer::new().execute_and_check(plan, &self.config, |_, _| {}) {
            Ok(p) => p,
            Err(e) => {
                self.error(Diagnostic::error(clean(&e), span));
                return None;
            }
        };
        let LogicalPlan::Projection(p) = &plan else {
            self.error(Diagnostic::error("internal: expected a projection", span));
            return None;
        };
        let lowered: Result<Vec<_>, _> = p
            .expr
            .iter()
            .map(|e| lower_expr(e, p.input.schema()))
            .collect();
        match lowered {
            Ok(v) => Some(v),
            Err(Unsupported(m)) => {
                self.error(Diagnostic::error(m, span));
                None
            }
        }
    }

    fn unknown_column(&mut self, name: &str, span: Span, schema: &Schema, relation: &str) {
        let d = Diagnostic::error(format!("column `{name}` not found in `{relation}`"), span);
        let d = match closest(name, schema.fields.iter().map(|f| f.name.as_str())) {
            Some(s) => d.with_help(format!("did you mean `{s}`?")),
            None => d.with_help(format!(
                "columns of `{relation}`: {}",
                schema
                    .fields
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
        self.error(d);
    }

    /// A DataFusion error as a diagnostic, located through its span or the statement.
    fn df_error(&self, err: &DataFusionError, source: &SqlText) -> Diagnostic {
        let snippet = source.snippet();
        let diag = err.diagnostic();
        let span = diag.and_then(|d| d.span).map(|s| snippet.df_span(s));
        let message = clean(err);
        // Unknown columns: DataFusion lists the valid fields; suggest the closest.
        if let Some(DataFusionError::SchemaError(e, _)) = find_schema_error(err)
            && let datafusion::common::SchemaError::FieldNotFound {
                field,
                valid_fields,
            } = e.as_ref()
        {
            let names: Vec<&str> = valid_fields.iter().map(|c| c.name.as_str()).collect();
            let mut d = Diagnostic::error(
                format!("column `{}` not found", field.name),
                span.or(Some(snippet.whole())),
            );
            d = match closest(&field.name, names.iter().copied()) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None => d.with_help(format!("available columns: {}", names.join(", "))),
            };
            return d;
        }
        // Without a span from DataFusion, point at the first name the message quotes, if the
        // statement mentions it as a whole word.
        let span = span.or_else(|| {
            let name = message.split('`').nth(1)?;
            let at = find_word(&source.text, name)?;
            Some(Span::new(
                source.file,
                source.base + at,
                source.base + at + name.len(),
            ))
        });
        let (message, help) = match message
            .split_once("; did you mean")
            .or_else(|| message.split_once("\nDid you mean"))
        {
            Some((m, rest)) => (
                m.trim_end_matches('.').to_string(),
                Some(format!("did you mean{rest}")),
            ),
            None => (message.trim_end_matches('.').to_string(), None),
        };
        let message = match message.strip_prefix("Invalid function ") {
            Some(name) => format!("unknown function {name}"),
            None => message,
        };
        let mut d = Diagnostic::error(message, span.or(Some(snippet.whole())));
        if let Some(h) = help {
            d = d.with_help(h);
        }
        if let Some(h) = diag.and_then(|d| d.helps.first()) {
            d = d.with_help(h.message.clone());
        }
        d
    }

    // ---- CREATE VIEW / INSERT INTO / SELECT ---------------------------------------------------

    fn query(&mut self, q: &QueryDef) {
        let (label, defines) = match &q.kind {
            QueryKind::CreateView { name, .. } => (name.node.clone(), Some(name.clone())),
            QueryKind::Insert { table } => (format!("insert:{}", table.node), None),
            QueryKind::Select => {
                self.selects += 1;
                if self.selects > 1 {
                    self.error(
                        Diagnostic::error(
                            "a pipeline has at most one bare SELECT (its rows are what `fsql run` prints)",
                            q.source.snippet().whole(),
                        )
                        .with_help("make it a view (CREATE VIEW name AS SELECT ...) or write it to a table with INSERT INTO"),
                    );
                    return;
                }
                (format!("select#{}", self.selects), None)
            }
        };
        if let Some(name) = &defines
            && !self.define(name)
        {
            return;
        }
        self.query_spans
            .entry(label.clone())
            .or_insert_with(|| q.source.snippet().whole());
        let Some(plan) = self.plan_query(q) else {
            if let Some(name) = defines {
                self.failed.insert(name.node);
            }
            return;
        };
        let names = output_names(&plan);
        let mut resolver = Resolver {
            c: self,
            error: None,
            label: label.clone(),
            created: BTreeMap::new(),
        };
        let mut nodes = std::mem::take(&mut resolver.c.nodes);
        let lowered = lower_plan(&plan, &mut nodes, &mut resolver);
        let scan_error = resolver.error.take();
        self.nodes = nodes;
        let whole = q.source.snippet().whole();
        let unclaimed: Vec<String> = self
            .versioned
            .keys()
            .filter(|k| !self.claimed.contains(*k))
            .cloned()
            .collect();
        for name in unclaimed {
            self.claimed.insert(name);
            self.error(
                Diagnostic::error(
                    "FOR SYSTEM_TIME AS OF is supported on the right side of a join (an event-time temporal join)",
                    whole,
                )
                .with_help("FROM orders o JOIN rates FOR SYSTEM_TIME AS OF o.ts AS r ON o.currency = r.currency"),
            );
        }
        let rel = match (lowered, scan_error) {
            (_, Some(d)) => {
                self.error(d);
                None
            }
            (Ok(rel), None) => Some(rel),
            (Err(Unsupported(m)), None) => {
                self.error(Diagnostic::error(m, whole));
                None
            }
        };
        let Some(mut rel) = rel else {
            if let Some(name) = defines {
                self.failed.insert(name.node);
            }
            return;
        };
        let mut names = names;
        if let QueryKind::CreateView { columns, .. } = &q.kind
            && !columns.is_empty()
        {
            if columns.len() != names.len() {
                self.error(Diagnostic::error(
                    format!(
                        "the view names {} columns but its query has {}",
                        columns.len(),
                        names.len()
                    ),
                    whole,
                ));
                return;
            }
            names = columns.iter().map(|c| c.node.clone()).collect();
        }
        for (f, n) in rel.schema.fields.iter_mut().zip(&names) {
            f.name = n.clone();
        }
        match &q.kind {
            QueryKind::CreateView { name, .. } => {
                let schema = rel.schema.clone();
                let node = materialize(rel, &mut self.nodes, &name.node);
                self.relations
                    .insert(name.node.clone(), RelationInfo { node, schema });
            }
            QueryKind::Select => {
                let schema = rel.schema.clone();
                let event_time = rel.event_time;
                let input = materialize(rel, &mut self.nodes, &label);
                self.push_node(&label, vec![input], schema, event_time, Operator::Collect);
            }
            QueryKind::Insert { table } => {
                let Some(info) = self.tables.get(&table.node) else {
                    let d =
                        Diagnostic::error(format!("table `{}` not found", table.node), table.span);
                    let d = match closest(&table.node, self.tables.keys().map(String::as_str)) {
                        Some(s) => d.with_help(format!("did you mean `{s}`?")),
                        None => {
                            d.with_help("declare it with CREATE TABLE ... WITH ('connector' = ...)")
                        }
                    };
                    self.error(d);
                    return;
                };
                let target = info.physical.clone();
                let def = info.def.clone();
                let Some(conn) = info.connector else {
                    return;
                };
                if let Some(d) = check_role(&table.node, conn, Role::Sink, table.span) {
                    self.error(d);
                    return;
                }
                if rel.schema.fields.len() != target.fields.len() {
                    self.error(Diagnostic::error(
                        format!(
                            "the query has {} columns but sink `{}` has {} ({})",
                            rel.schema.fields.len(),
                            table.node,
                            target.fields.len(),
                            target
                                .fields
                                .iter()
                                .map(|f| f.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        whole,
                    ));
                    return;
                }
                let mut casts = Vec::new();
                for (i, (have, want)) in rel.schema.fields.iter().zip(&target.fields).enumerate() {
                    let col = Expr::column(i, have.data_type.clone(), have.nullable);
                    // A numeric literal takes the sink column's numeric type (Flink types `0` as INT,
                    // DataFusion as BIGINT; either way `INSERT ... SELECT 0` into an INT is meant).
                    let literal = rel
                        .projections
                        .as_ref()
                        .and_then(|p| p.get(i))
                        .is_some_and(|e| matches!(e.kind, ExprKind::Literal(_)));
                    if have.data_type == want.data_type {
                        casts.push(col);
                    } else if implicitly_castable(&have.data_type, &want.data_type)
                        || (literal && have.data_type.is_numeric() && want.data_type.is_numeric())
                    {
                        casts.push(Expr {
                            kind: ExprKind::Cast {
                                arg: Box::new(col),
                                safe: false,
                            },
                            data_type: want.data_type.clone(),
                            nullable: have.nullable,
                        });
                    } else {
                        self.error(
                            Diagnostic::error(
                                format!(
                                    "column {} `{}` of the query is {} but sink column `{}` is {}",
                                    i + 1,
                                    have.name,
                                    have.data_type,
                                    want.name,
                                    want.data_type
                                ),
                                whole,
                            )
                            .with_help(format!(
                                "CAST it: CAST({} AS {})",
                                have.name, want.data_type
                            )),
                        );
                        return;
                    }
                }
                let sink_names: Vec<String> =
                    target.fields.iter().map(|f| f.name.clone()).collect();
                let rel = project(rel, casts, Some(sink_names));
                let schema = rel.schema.clone();
                let event_time = rel.event_time;
                let input = materialize(rel, &mut self.nodes, &label);
                let sink = self
                    .sinks
                    .entry(table.node.clone())
                    .or_insert_with(|| PendingSink {
                        def: def.clone(),
                        schema,
                        inputs: vec![],
                        event_time,
                    });
                sink.inputs.push(input);
                if sink.event_time != event_time {
                    sink.event_time = None;
                }
            }
        }
    }

    /// One sink node per table written by `INSERT INTO` (several INSERTs are unioned, as Flink's
    /// statement sets write one table from several queries).
    fn create_sinks(&mut self) {
        for (table, sink) in std::mem::take(&mut self.sinks) {
            let input = match sink.inputs.as_slice() {
                [one] => *one,
                inputs => self.push_node(
                    &format!("union:{table}"),
                    inputs.to_vec(),
                    sink.schema.clone(),
                    sink.event_time,
                    Operator::Union,
                ),
            };
            let spec = SinkSpec {
                table: table.clone(),
                connector: self.connector_spec(&sink.def),
                metadata: metadata_keys(&sink.def),
            };
            let id = self.push_node(
                &format!("sink:{table}"),
                vec![input],
                sink.schema.clone(),
                sink.event_time,
                Operator::Sink(spec),
            );
            self.relations.entry(table).or_insert(RelationInfo {
                node: id,
                schema: sink.schema,
            });
        }
    }

    /// `SET 'pipeline.late-data.sink' = 'table'`: a sink node with no input, which the executor
    /// feeds with the rows stateful operators receive behind the watermark, one row each:
    /// `operator` (the node's name) and `row` (the row as JSON).
    fn create_late_data_sink(&mut self) {
        // Both are recorded by the same `SET`.
        let (Some(table), Some(span)) = (
            self.settings.get(LATE_DATA_SINK).cloned(),
            self.setting_spans.get(LATE_DATA_SINK).copied(),
        ) else {
            return;
        };
        if self.settings.contains_key("pipeline.late-data.path") {
            self.error(
                Diagnostic::error("late rows go to a file or to a sink table, not both", span)
                    .with_help(
                        "remove SET 'pipeline.late-data.path' or SET 'pipeline.late-data.sink'",
                    ),
            );
            return;
        }
        let Some(info) = self.tables.get(&table) else {
            let d = Diagnostic::error(format!("table `{table}` not found"), span);
            let d = match closest(&table, self.tables.keys().map(String::as_str)) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None => d.with_help(format!(
                    "declare it: CREATE TABLE {table} (operator STRING, `row` STRING) WITH ('connector' = ...)"
                )),
            };
            self.error(d);
            return;
        };
        let (def, physical) = (info.def.clone(), info.physical.clone());
        let Some(conn) = info.connector else {
            return;
        };
        if let Some(d) = check_role(&table, conn, Role::Sink, span) {
            self.error(d);
            return;
        }
        if self.relations.contains_key(&table) {
            self.error(Diagnostic::error(
                format!(
                    "`{table}` receives the late rows; it cannot also be written by INSERT INTO"
                ),
                span,
            ));
            return;
        }
        let columns: Vec<(&str, &DataType)> = physical
            .fields
            .iter()
            .map(|f| (f.name.as_str(), &f.data_type))
            .collect();
        if columns != [("operator", &DataType::String), ("row", &DataType::String)] {
            let have = physical
                .fields
                .iter()
                .map(|f| format!("{} {}", f.name, f.data_type))
                .collect::<Vec<_>>()
                .join(", ");
            self.error(
                Diagnostic::error(
                    format!("the late-data sink `{table}` has columns ({have}), not (operator STRING, row STRING)"),
                    span,
                )
                .with_help(format!(
                    "declare it: CREATE TABLE {table} (operator STRING, `row` STRING) WITH (...)"
                )),
            );
            return;
        }
        let spec = SinkSpec {
            table: table.clone(),
            connector: self.connector_spec(&def),
            metadata: metadata_keys(&def),
        };
        let id = self.push_node(
            &format!("sink:{table}"),
            vec![],
            physical.clone(),
            None,
            Operator::Sink(spec),
        );
        self.relations.insert(
            table,
            RelationInfo {
                node: id,
                schema: physical,
            },
        );
    }

    fn plan_query(&mut self, q: &QueryDef) -> Option<LogicalPlan> {
        let mut query = q.query.clone();
        let mut next_match = self.matches.len();
        match crate::match_recognize::extract(&mut query, &mut next_match) {
            Ok(found) => {
                for (name, clause) in found {
                    let plan = self.plan_match(&name, &clause, &q.source)?;
                    self.matches.insert(name, plan);
                }
            }
            Err(m) => {
                self.error(Diagnostic::error(m, q.source.snippet().whole()));
                return None;
            }
        }
        let mut next = self.windows.len() + self.versioned.len() + self.predicts.len();
        let snippet = q.source.snippet();
        let found = tvf::extract(
            &mut query,
            &snippet,
            &mut TvfCatalogOf {
                c: self,
                source: &q.source,
            },
            &mut next,
        );
        let temporal = match found {
            Ok(found) => {
                let temporal = !found.versioned.is_empty();
                self.windows.extend(found.windows);
                self.versioned.extend(found.versioned);
                for (name, call) in found.predicts {
                    let plan = self.plan_predict(&call)?;
                    self.predicts.insert(name, plan);
                }
                temporal
            }
            Err(d) => {
                self.error(d);
                return None;
            }
        };
        let provider = Provider { c: self };
        let planner = SqlToRel::new_with_options(&provider, parser_options());
        crate::rewrite::flink_syntax(&mut *query);
        let stmt = sqlparser::ast::Statement::Query(query);
        let planned = planner.sql_statement_to_plan(stmt);
        let plan = match planned {
            Ok(p) => p,
            Err(e) => {
                if !self.references_failed(&e) {
                    let d = self.df_error(&e, &q.source);
                    self.error(d);
                }
                return None;
            }
        };
        let type_errors = check_types(&plan, q.source.snippet());
        if !type_errors.is_empty() {
            self.diags.extend(type_errors);
            return None;
        }
        let whole = q.source.snippet().whole();
        let plan = match Analyzer::new().execute_and_check(plan, &self.config, |_, _| {}) {
            Ok(p) => p,
            Err(e) => {
                self.error(Diagnostic::error(clean(&e), whole));
                return None;
            }
        };
        match optimizer(temporal).optimize(plan, &OptimizerContext::new(), |_, _| {}) {
            Ok(p) => Some(p),
            Err(e) => {
                self.error(Diagnostic::error(clean(&e), whole));
                None
            }
        }
    }

    /// Plans one MATCH_RECOGNIZE clause: its input, pattern, conditions and measures.
    fn plan_match(
        &mut self,
        name: &str,
        clause: &crate::match_recognize::MatchClause,
        source: &SqlText,
    ) -> Option<MatchPlan> {
        use crate::match_recognize::{self as mr, Context, Navigations};
        let whole = source.snippet().whole();
        let fail = |c: &mut Compiler, m: String| {
            c.error(Diagnostic::error(format!("MATCH_RECOGNIZE: {m}"), whole));
            None
        };
        let input = if let Some(r) = self.relations.get(&clause.input) {
            Some((
                r.schema.clone(),
                crate::lower::time_attributes(&self.nodes, r.node),
            ))
        } else {
            self.tables.get(&clause.input).map(|t| {
                (
                    t.schema.clone(),
                    t.watermark.iter().map(|w| w.rowtime).collect::<Vec<_>>(),
                )
            })
        };
        let Some((schema, times)) = input else {
            return fail(self, format!("table or view `{}` not found", clause.input));
        };
        let column = |e: &sqlparser::ast::Expr| match e {
            sqlparser::ast::Expr::Identifier(id) => {
                schema.fields.iter().position(|f| f.name == id.value)
            }
            _ => None,
        };
        let Some(first) = clause.order_by.first() else {
            return fail(self, "ORDER BY the time attribute is required".into());
        };
        let order_by = match column(&first.expr) {
            Some(c) if times.contains(&c) && first.options.asc != Some(false) => c,
            _ => {
                return fail(
                    self,
                    format!(
                        "ORDER BY must start with the input's time attribute, ascending (a column with a WATERMARK), found `{}`",
                        first.expr
                    ),
                );
            }
        };
        let mut order_then = Vec::new();
        for o in clause.order_by.iter().skip(1) {
            match column(&o.expr) {
                Some(c) => order_then.push((c, o.options.asc == Some(false))),
                None => {
                    return fail(
                        self,
                        format!(
                            "ORDER BY `{}`: expected a column of `{}`",
                            o.expr, clause.input
                        ),
                    );
                }
            }
        }
        let mut partition_by = Vec::new();
        for e in &clause.partition_by {
            match column(e) {
                Some(c) => partition_by.push(c),
                None => {
                    return fail(
                        self,
                        format!(
                            "PARTITION BY `{e}`: expected a column of `{}`",
                            clause.input
                        ),
                    );
                }
            }
        }
        let mut variables = Vec::new();
        let pattern = match mr::pattern(&clause.pattern, &mut variables) {
            Ok(p) => p,
            Err(m) => return fail(self, m),
        };
        for d in &clause.defines {
            if !variables.contains(&d.symbol.value) {
                return fail(
                    self,
                    format!("DEFINE `{}`: not a variable of PATTERN", d.symbol.value),
                );
            }
        }
        let subsets = match mr::subsets(clause, &variables) {
            Ok(s) => s,
            Err(m) => return fail(self, m),
        };
        let after_match =
            match mr::after_match(clause.after_match_skip.as_ref(), &variables, &subsets) {
                Ok(a) => a,
                Err(m) => return fail(self, m),
            };
        if clause.after_match_skip.is_none() {
            // Flink departs from the standard here; fsql follows Flink and says so.
            self.diags.push(
                Diagnostic::warning(
                    "MATCH_RECOGNIZE without AFTER MATCH SKIP skips TO NEXT ROW, as Flink 2.3 does (the next match may start inside this one); the SQL standard and Trino skip PAST LAST ROW",
                    whole,
                )
                .with_help(
                    "write AFTER MATCH SKIP PAST LAST ROW (the standard's default) or AFTER MATCH SKIP TO NEXT ROW",
                ),
            );
        }
        let mut navs = Navigations {
            vars: &variables,
            subsets: &subsets,
            input: &schema,
            found: Vec::new(),
            derived: Vec::new(),
        };
        let mut define_sql = Vec::new();
        for (v, var) in variables.iter().enumerate() {
            let d = clause.defines.iter().find(|d| d.symbol.value == *var);
            match d.map(|d| navs.rewrite(&d.definition, Context::Define(v))) {
                None => define_sql.push(None),
                Some(Ok(e)) => define_sql.push(Some(e)),
                Some(Err(m)) => return fail(self, format!("DEFINE {var}: {m}")),
            }
        }
        let mut measure_sql = Vec::new();
        for m in &clause.measures {
            match navs.rewrite(&m.expr, Context::Measure) {
                Ok(e) => measure_sql.push((m.alias.value.clone(), e)),
                Err(err) => return fail(self, format!("measure {}: {err}", m.alias.value)),
            }
        }
        let Navigations { found, derived, .. } = navs;
        let within_ms = match &clause.within {
            None => None,
            Some(e) => {
                let mut cat = TvfCatalogOf { c: self, source };
                match tvf::TvfCatalog::interval_ms(&mut cat, e) {
                    Ok(ms) if ms > 0 => Some(ms),
                    Ok(_) => return fail(self, "WITHIN must be a positive interval".into()),
                    Err(d) => {
                        self.error(d);
                        return None;
                    }
                }
            }
        };
        if clause.emit_timeouts && within_ms.is_none() {
            return fail(self, "EMIT TIMEOUTS needs WITHIN".into());
        }
        let rows_per_match = clause.rows_per_match;
        if rows_per_match == fsql_plan::RowsPerMatch::AllWithUnmatched && has_exclusion(&pattern) {
            return fail(
                self,
                "an exclusion cannot be used with WITH UNMATCHED ROWS: the rows it hides would show as unmatched (SQL:2016)".into(),
            );
        }
        // The expressions navigations read, over an input row.
        let derived = if derived.is_empty() {
            Vec::new()
        } else {
            let input_arrow: SchemaRef = Arc::new(schema.to_arrow());
            let sql: Vec<SqlExpr> = derived
                .into_iter()
                .map(|expr| SqlExpr {
                    expr,
                    source: source.clone(),
                })
                .collect();
            let refs: Vec<&SqlExpr> = sql.iter().collect();
            self.plan_exprs(name, &input_arrow, &refs)?
        };
        let mut spec = MatchRecognizeSpec {
            partition_by,
            order_by,
            order_then,
            variables: variables.clone(),
            subsets,
            derived,
            pattern,
            defines: Vec::new(),
            navigations: Vec::new(),
            measures: Vec::new(),
            rows_per_match,
            after_match,
            within_ms,
            emit_timeouts: clause.emit_timeouts,
        };
        let row = spec.row_schema(&schema);
        spec.navigations = found
            .into_iter()
            .map(|n| {
                let t = n.data_type(&row.fields, order_by);
                (n, t)
            })
            .collect();
        let arrow: SchemaRef = Arc::new(spec.evaluation_schema(&schema).to_arrow());
        let sql: Vec<SqlExpr> = define_sql
            .iter()
            .flatten()
            .chain(measure_sql.iter().map(|(_, e)| e))
            .map(|e| SqlExpr {
                expr: e.clone(),
                source: source.clone(),
            })
            .collect();
        let refs: Vec<&SqlExpr> = sql.iter().collect();
        let mut planned = if refs.is_empty() {
            Vec::new()
        } else {
            self.plan_exprs(name, &arrow, &refs)?
        }
        .into_iter();
        for (var, d) in variables.iter().zip(&define_sql) {
            match d {
                None => spec.defines.push(None),
                Some(_) => {
                    let e = planned.next()?;
                    if e.data_type != DataType::Boolean {
                        return fail(
                            self,
                            format!(
                                "DEFINE {var} must be a BOOLEAN condition, found {}",
                                e.data_type
                            ),
                        );
                    }
                    spec.defines.push(Some(e));
                }
            }
        }
        let mut measure_fields = Vec::new();
        let mut rowtime_measure = None;
        for ((alias, _), m) in measure_sql.iter().zip(&clause.measures) {
            let e = planned.next()?;
            let is_rowtime = matches!(&m.expr, sqlparser::ast::Expr::Function(f)
                if f.name.to_string().eq_ignore_ascii_case("MATCH_ROWTIME"));
            if is_rowtime {
                rowtime_measure = Some(measure_fields.len());
            }
            measure_fields.push(Field::new(alias, e.data_type.clone(), true));
            spec.measures.push(fsql_plan::Measure {
                name: alias.clone(),
                expr: e,
            });
        }
        // ONE ROW PER MATCH: the partitioning columns, then the measures. ALL ROWS PER MATCH: the
        // partitioning and ordering columns, the measures, then the input's other columns.
        let input_field = |c: &usize| schema.fields[*c].clone();
        let (fields, event_time) = if rows_per_match.all_rows() {
            let (leading, rest) = spec.all_rows_columns(schema.fields.len());
            let time = leading.iter().position(|&c| c == order_by);
            let mut fields: Vec<Field> = leading.iter().map(input_field).collect();
            fields.extend(measure_fields);
            fields.extend(rest.iter().map(input_field));
            (fields, time)
        } else {
            let mut fields: Vec<Field> = spec.partition_by.iter().map(input_field).collect();
            let time = rowtime_measure.map(|m| fields.len() + m);
            fields.extend(measure_fields);
            (fields, time)
        };
        Some(MatchPlan {
            input: clause.input.clone(),
            spec,
            schema: Schema::new(fields),
            event_time,
        })
    }

    fn references_failed(&self, e: &DataFusionError) -> bool {
        let m = e.to_string();
        self.failed.iter().any(|f| m.contains(&format!("`{f}`")))
    }

    fn push_node(
        &mut self,
        name: &str,
        inputs: Vec<NodeId>,
        schema: Schema,
        event_time: Option<usize>,
        op: Operator,
    ) -> NodeId {
        let id = NodeId(self.nodes.len() as u32);
        self.nodes.push(Node {
            id,
            name: name.to_string(),
            inputs,
            schema,
            event_time,
            op,
        });
        id
    }

    fn connector_spec(&self, def: &TableDef) -> ConnectorSpec {
        let connector = def
            .options
            .iter()
            .find(|o| o.key.node == "connector")
            .map(|o| o.value.node.clone())
            .unwrap_or_default();
        let mut options: BTreeMap<String, String> = def
            .options
            .iter()
            .filter(|o| o.key.node != "connector")
            .map(|o| (o.key.node.clone(), o.value.node.clone()))
            .collect();
        // upsert-kafka's record key is the PRIMARY KEY: the runtime's Kafka sink reads it as
        // `key.fields`, which the connector does not accept from the user.
        if connector == "upsert-kafka"
            && let Some(pk) = &def.primary_key
        {
            let names: Vec<&str> = pk.iter().map(|k| k.node.as_str()).collect();
            options.insert("key.fields".into(), names.join(";"));
        }
        let base_dir = self
            .dirs
            .get(def.name.span.file.0 as usize)
            .cloned()
            .unwrap_or_else(|| ".".into());
        ConnectorSpec {
            connector,
            options,
            base_dir,
        }
    }

    /// The source node of table `name`, created on first use.
    fn source_node(&mut self, name: &str) -> Result<(NodeId, Schema, Option<usize>), Diagnostic> {
        let Some(info) = self.tables.get(name) else {
            return Err(Diagnostic::error(format!("table `{name}` not found"), None));
        };
        if let Some(node) = info.node {
            return Ok((
                node,
                info.schema.clone(),
                info.watermark.as_ref().map(|w| w.rowtime),
            ));
        }
        let def = info.def.clone();
        let role_error = info
            .connector
            .and_then(|c| check_role(name, c, Role::Source, def.name.span));
        let failed = info.connector.is_none() || role_error.is_some();
        self.diags.extend(role_error);
        let info = self
            .tables
            .get(name)
            .ok_or_else(|| Diagnostic::error("table vanished", None))?;
        let spec = SourceSpec {
            table: name.to_string(),
            connector: self.connector_spec(&def),
            physical: info.physical.clone(),
            columns: info.columns.clone(),
            watermark: info.watermark.clone(),
            metadata: metadata_keys(&def),
        };
        let schema = info.schema.clone();
        let event_time = info.watermark.as_ref().map(|w| w.rowtime);
        let id = self.push_node(
            name,
            vec![],
            schema.clone(),
            event_time,
            Operator::Source(spec),
        );
        if let Some(t) = self.tables.get_mut(name) {
            t.node = Some(id);
        }
        self.relations
            .entry(name.to_string())
            .or_insert(RelationInfo {
                node: id,
                schema: schema.clone(),
            });
        if failed {
            self.failed.insert(name.to_string());
        }
        Ok((id, schema, event_time))
    }

    // ---- CREATE MODEL / CREATE RULESET --------------------------------------------------------

    fn create_model(&mut self, m: &ModelDef) {
        if !self.define(&m.name) {
            return;
        }
        let option = |key: &str| m.options.iter().find(|o| o.key.node == key);
        match option("provider") {
            None => self.error(
                Diagnostic::error(
                    format!("model `{}` has no 'provider' option", m.name.node),
                    m.name.span,
                )
                .with_help("add WITH ('provider' = 'lightgbm', 'path' = 'model.txt')"),
            ),
            Some(p) if p.value.node != "lightgbm" => self.error(
                Diagnostic::error(
                    format!("unknown model provider '{}'", p.value.node),
                    p.value.span,
                )
                .with_help("the supported provider is 'lightgbm'"),
            ),
            Some(_) => {}
        }
        const KEYS: [&str; 4] = ["provider", "path", "task", "lightgbm.output"];
        for o in &m.options {
            if !KEYS.contains(&o.key.node.as_str()) {
                let d =
                    Diagnostic::error(format!("unknown model option '{}'", o.key.node), o.key.span);
                self.error(match closest(&o.key.node, KEYS) {
                    Some(s) => d.with_help(format!("did you mean '{s}'?")),
                    None => d,
                });
            }
        }
        let raw_scores = match option("lightgbm.output") {
            None => false,
            Some(o) if o.value.node == "prediction" => false,
            Some(o) if o.value.node == "raw" => true,
            Some(o) => {
                self.error(
                    Diagnostic::error(
                        format!("unknown 'lightgbm.output' value '{}'", o.value.node),
                        o.value.span,
                    )
                    .with_help("'prediction' (the default: probabilities for classifiers) or 'raw' (summed tree outputs)"),
                );
                false
            }
        };
        for (name, ty) in &m.inputs {
            if !(ty.is_numeric() || *ty == DataType::Boolean) {
                self.error(Diagnostic::error(
                    format!(
                        "model input `{}` is {ty}; LightGBM features are numeric (or BOOLEAN)",
                        name.node
                    ),
                    name.span,
                ));
            }
        }
        for (name, ty) in &m.outputs {
            if *ty != DataType::Double {
                self.error(
                    Diagnostic::error(
                        format!(
                            "model output `{}` is {ty}; LightGBM scores are DOUBLE",
                            name.node
                        ),
                        name.span,
                    )
                    .with_help("declare it DOUBLE"),
                );
            }
        }
        let path = match option("path") {
            Some(p) => {
                let path = Path::new(&p.value.node);
                if path.is_relative() {
                    let dir = self
                        .dirs
                        .get(m.name.span.file.0 as usize)
                        .map_or(".", String::as_str);
                    Path::new(dir).join(path).display().to_string()
                } else {
                    p.value.node.clone()
                }
            }
            None => {
                self.error(Diagnostic::error(
                    format!("model `{}` needs a 'path' option", m.name.node),
                    m.name.span,
                ));
                String::new()
            }
        };
        if let Some(p) = option("path") {
            self.check_model_file(m, &path, p);
        }
        let fields = |cols: &[(Spanned<String>, DataType)], nullable: bool| {
            Schema::new(
                cols.iter()
                    .map(|(n, t)| Field::new(&n.node, t.clone(), nullable))
                    .collect(),
            )
        };
        self.models.push(ModelDecl {
            name: m.name.node.clone(),
            inputs: fields(&m.inputs, true),
            outputs: fields(&m.outputs, false),
            options: m
                .options
                .iter()
                .map(|o| (o.key.node.clone(), o.value.node.clone()))
                .collect(),
            path,
            raw_scores,
        });
    }

    /// Compares the model file with the declaration: feature count and names against `INPUT`,
    /// the number of scores against `OUTPUT`, the objective against `'task'`.
    fn check_model_file(&mut self, m: &ModelDef, path: &str, option: &OptionDef) {
        let at = option.value.span;
        // Messages name the file as the user wrote it; `path` is where it is read.
        let shown = option.value.node.as_str();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                self.error(Diagnostic::error(
                    format!("cannot read model file `{shown}`: {e}"),
                    at,
                ));
                return;
            }
        };
        let ensemble = match fsql_model::text_format::parse(&text) {
            Ok(e) => e,
            Err(e) => {
                self.error(Diagnostic::error(format!("`{shown}`: {e}"), at));
                return;
            }
        };
        let features = &ensemble.feature_names;
        let list = || features.join(", ");
        if features.len() != m.inputs.len() {
            let span = m.inputs.first().map_or(m.name.span, |(n, _)| n.span);
            self.error(
                Diagnostic::error(
                    format!(
                        "model `{}` declares {} INPUT columns but `{shown}` has {} features",
                        m.name.node,
                        m.inputs.len(),
                        features.len()
                    ),
                    span,
                )
                .with_help(format!("the model's features, in order: {}", list())),
            );
            return;
        }
        // A model trained without names has LightGBM's `Column_<i>`: only the count is checked.
        if ensemble.has_feature_names() {
            for (i, ((name, _), feature)) in m.inputs.iter().zip(features).enumerate() {
                if name.node != *feature {
                    self.error(
                        Diagnostic::error(
                            format!(
                                "INPUT column {} is `{}` but the model's feature {} is `{feature}`",
                                i + 1,
                                name.node,
                                i + 1
                            ),
                            name.span,
                        )
                        .with_help(format!("the model's features, in order: {}", list())),
                    );
                    return;
                }
            }
        }
        let scores = ensemble.num_class;
        if m.outputs.len() != scores {
            let span = m.outputs.first().map_or(m.name.span, |(n, _)| n.span);
            let what = if scores == 1 {
                format!("one score ({})", ensemble.objective.name())
            } else {
                format!(
                    "{scores} scores, one per class ({})",
                    ensemble.objective.name()
                )
            };
            self.error(Diagnostic::error(
                format!(
                    "model `{}` declares {} OUTPUT columns but `{shown}` gives {what}",
                    m.name.node,
                    m.outputs.len()
                ),
                span,
            ));
        }
        if let Some(task) = m.options.iter().find(|o| o.key.node == "task") {
            let objective = ensemble.objective.name();
            let classifier =
                ["binary", "multiclass", "multiclassova", "cross_entropy"].contains(&objective);
            let ok = match task.value.node.as_str() {
                "classification" => classifier,
                "regression" => !classifier,
                _ => {
                    self.error(
                        Diagnostic::error(
                            format!("unknown task '{}'", task.value.node),
                            task.value.span,
                        )
                        .with_help("'classification' or 'regression'"),
                    );
                    true
                }
            };
            if !ok {
                self.error(Diagnostic::error(
                    format!(
                        "'task' is '{}' but `{shown}` was trained with objective `{objective}`",
                        task.value.node
                    ),
                    task.value.span,
                ));
            }
        }
    }

    /// Checks an `ML_PREDICT` call: the model, the data, the feature columns and their types.
    fn plan_predict(&mut self, call: &tvf::PredictTvf) -> Option<PredictPlan> {
        let Some(model) = self
            .models
            .iter()
            .find(|m| m.name == call.model.node)
            .cloned()
        else {
            let d = Diagnostic::error(
                format!("model `{}` not found", call.model.node),
                call.model.span,
            );
            let d = match closest(
                &call.model.node,
                self.models.iter().map(|m| m.name.as_str()),
            ) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None => d.with_help("declare it with CREATE MODEL before the query"),
            };
            self.error(d);
            return None;
        };
        let Some(data) = self.relation_schema(&call.data) else {
            if !self.failed.contains(&call.data) {
                self.error(Diagnostic::error(
                    format!("table or view `{}` not found", call.data),
                    call.span,
                ));
            }
            return None;
        };
        if call.features.len() != model.inputs.fields.len() {
            self.error(
                Diagnostic::error(
                    format!(
                        "ML_PREDICT passes {} columns to model `{}`, whose INPUT has {}",
                        call.features.len(),
                        model.name,
                        model.inputs.fields.len()
                    ),
                    call.features.first().map_or(call.span, |f| f.span),
                )
                .with_help(format!("the model's INPUT: {}", model.input_list())),
            );
            return None;
        }
        let mut features = Vec::with_capacity(call.features.len());
        for f in &call.features {
            let Some(k) = data.index_of(&f.node) else {
                self.unknown_column(&f.node, f.span, &data, &call.data);
                return None;
            };
            let ty = &data.fields[k].data_type;
            if !(ty.is_numeric() || *ty == DataType::Boolean) {
                self.error(
                    Diagnostic::error(
                        format!(
                            "feature column `{}` is {ty}; model inputs are numeric (or BOOLEAN)",
                            f.node
                        ),
                        f.span,
                    )
                    .with_help("compute a numeric feature from it in a view (CASE, CAST, ...)"),
                );
                return None;
            }
            features.push(k);
        }
        let mut schema = data.clone();
        let version = Field::new(model.version_column(), DataType::BigInt, false);
        for field in model.outputs.fields.iter().chain([&version]) {
            if schema.index_of(&field.name).is_some() {
                self.error(
                    Diagnostic::error(
                        format!(
                            "ML_PREDICT's output column `{}` is already a column of `{}`",
                            field.name, call.data
                        ),
                        call.model.span,
                    )
                    .with_help(
                        "rename the model's OUTPUT column (a challenger model needs its own names)",
                    ),
                );
                return None;
            }
            schema.fields.push(field.clone());
        }
        Some(PredictPlan {
            input: call.data.clone(),
            spec: PredictSpec {
                model: model.name.clone(),
                features,
            },
            schema,
        })
    }

    /// The schema of a table, view or ruleset a query can read (not a sink).
    fn relation_schema(&self, name: &str) -> Option<Schema> {
        self.relations
            .get(name)
            .filter(|r| {
                !matches!(
                    self.nodes.get(r.node.0 as usize).map(|n| &n.op),
                    Some(Operator::Sink(_))
                )
            })
            .map(|r| r.schema.clone())
            .or_else(|| self.tables.get(name).map(|t| t.schema.clone()))
    }

    fn create_ruleset(&mut self, r: &RulesetDef) {
        if !self.define(&r.name) {
            return;
        }
        let input = match self.relation(&r.input.node) {
            Ok(i) => i,
            Err(d) => {
                if !self.failed.contains(&r.input.node) {
                    self.error(d.unwrap_or_else(|| {
                        Diagnostic::error(format!("`{}` not found", r.input.node), r.input.span)
                    }));
                }
                self.failed.insert(r.name.node.clone());
                return;
            }
        };
        let Some(key) = input.schema.index_of(&r.key.node) else {
            self.unknown_column(&r.key.node, r.key.span, &input.schema, &r.input.node);
            self.failed.insert(r.name.node.clone());
            return;
        };
        // Parameters are read like columns past the input's.
        let mut parameters = Vec::new();
        let mut with_parameters = input.schema.clone();
        for p in &r.parameters {
            if with_parameters.index_of(&p.name.node).is_some() {
                self.error(Diagnostic::error(
                    format!(
                        "parameter `{}` has the name of a column of `{}` (or of another parameter)",
                        p.name.node, r.input.node
                    ),
                    p.name.span,
                ));
                continue;
            }
            match parameter_value(&p.value.node, &p.data_type) {
                Ok(value) => parameters.push(fsql_plan::RuleParameter {
                    name: p.name.node.clone(),
                    data_type: p.data_type.clone(),
                    column: with_parameters.fields.len(),
                    value,
                }),
                Err(m) => {
                    self.error(Diagnostic::error(m, p.value.span));
                    continue;
                }
            }
            with_parameters
                .fields
                .push(Field::new(&p.name.node, p.data_type.clone(), false));
        }
        let arrow = Arc::new(with_parameters.to_arrow());
        let mut rules = Vec::new();
        let mut names = BTreeSet::new();
        for rule in &r.rules {
            if !names.insert(rule.name.node.clone()) {
                self.error(Diagnostic::error(
                    format!("rule `{}` is defined twice", rule.name.node),
                    rule.name.span,
                ));
                continue;
            }
            let Some(mut exprs) = self.plan_exprs(&r.input.node, &arrow, &[&rule.condition]) else {
                continue;
            };
            let condition = exprs.remove(0);
            if condition.data_type != DataType::Boolean {
                self.error(Diagnostic::error(
                    format!(
                        "a rule condition must be BOOLEAN, this one is {}",
                        condition.data_type
                    ),
                    rule.condition.span(),
                ));
                continue;
            }
            rules.push(Rule {
                name: rule.name.node.clone(),
                priority: rule.priority,
                condition,
                decision: rule.decision.node.clone(),
            });
        }
        // First match by priority; equal priorities keep declaration order (stable sort).
        rules.sort_by_key(|r| r.priority);
        let mut schema = input.schema.clone();
        schema
            .fields
            .push(Field::new("decision", DataType::String, false));
        schema
            .fields
            .push(Field::new("rule", DataType::String, true));
        schema
            .fields
            .push(Field::new("ruleset_version", DataType::BigInt, false));
        let event_time = self
            .nodes
            .get(input.node.0 as usize)
            .and_then(|n| n.event_time);
        let spec = RulesetSpec {
            name: r.name.node.clone(),
            key,
            default_decision: r.default_decision.node.clone(),
            version: 1,
            rules,
            parameters,
        };
        let id = self.push_node(
            &r.name.node,
            vec![input.node],
            schema.clone(),
            event_time,
            Operator::Ruleset(spec),
        );
        self.relations
            .insert(r.name.node.clone(), RelationInfo { node: id, schema });
    }

    /// A view, ruleset or table (instantiated as a source) by name.
    fn relation(&mut self, name: &str) -> Result<RelationInfo, Option<Diagnostic>> {
        if let Some(r) = self.relations.get(name) {
            return Ok(r.clone());
        }
        if self.tables.contains_key(name) {
            let (node, schema, _) = self.source_node(name).map_err(Some)?;
            return Ok(RelationInfo { node, schema });
        }
        Err(None)
    }

    // ---- the whole pipeline --------------------------------------------------------------------

    fn finish(
        &mut self,
        name: String,
        _file: FileId,
        options: &CompileOptions,
    ) -> Option<Pipeline> {
        self.create_sinks();
        self.create_late_data_sink();
        // A node's statement: an INSERT INTO for a sink (else its CREATE TABLE), the query that
        // created any other node.
        let span_of = |n: &Node| match &n.op {
            Operator::Sink(s) => self
                .query_spans
                .get(&format!("insert:{}", s.table))
                .copied()
                .or_else(|| self.tables.get(&s.table).map(|t| t.def.name.span)),
            _ => {
                let label = n.name.split('#').next().unwrap_or(&n.name);
                self.query_spans
                    .get(label)
                    .or_else(|| self.defined.get(label))
                    .copied()
            }
        };
        let refused = crate::changelog::check_changelog(&self.nodes, &span_of);
        self.diags.extend(refused);
        let warnings = crate::bounds::check_state_bounds(&self.nodes, &self.settings);
        for w in warnings {
            let w = if options.strict {
                Diagnostic {
                    severity: Severity::Error,
                    ..w
                }
            } else {
                w
            };
            self.diags.push(w);
        }
        if self.diags.iter().any(|d| d.severity == Severity::Error) {
            return None;
        }
        let emit = match self.settings.get("pipeline.emit-mode").map(String::as_str) {
            Some("arrival") => EmitMode::Arrival,
            _ => EmitMode::Watermark,
        };
        // The late-data and control files, checkpoints and the RocksDB working dir, like
        // connector paths, are relative to the pipeline file.
        for key in [
            "pipeline.late-data.path",
            "control.path",
            "control.ack.path",
            "execution.checkpointing.dir",
            "state.checkpoints.dir",
            "state.backend.rocksdb.localdir",
        ] {
            // Flink writes directories as URIs: `file:///checkpoints` is the path `/checkpoints`.
            if let Some(path) = self.settings.get_mut(key)
                && let Some(rest) = path.strip_prefix("file://")
            {
                *path = rest.to_string();
            }
            if let Some(path) = self.settings.get_mut(key)
                && Path::new(path.as_str()).is_relative()
                && let Some(dir) = self.dirs.first()
            {
                *path = Path::new(dir).join(path.as_str()).display().to_string();
            }
        }
        let mut nodes = std::mem::take(&mut self.nodes);
        if !options.keep_unused {
            nodes = prune(nodes, &mut self.relations);
        }
        Some(Pipeline {
            name: self.settings.get("pipeline.name").cloned().unwrap_or(name),
            settings: self.settings.clone(),
            emit,
            nodes,
            models: self.models.clone(),
        })
    }
}

/// A parameter's `DEFAULT` (or a control update's value) as a literal of its type; parameters are
/// BOOLEAN, integers, DOUBLE or STRING.
pub fn parameter_value(text: &str, ty: &DataType) -> Result<Literal, String> {
    let bad = || format!("`{text}` is not a {ty} value");
    match ty {
        DataType::Boolean => match text.to_ascii_uppercase().as_str() {
            "TRUE" => Ok(Literal::Boolean(true)),
            "FALSE" => Ok(Literal::Boolean(false)),
            _ => Err(bad()),
        },
        DataType::TinyInt | DataType::SmallInt | DataType::Int | DataType::BigInt => {
            let v: i64 = text.parse().map_err(|_| bad())?;
            let fits = match ty {
                DataType::TinyInt => i8::try_from(v).is_ok(),
                DataType::SmallInt => i16::try_from(v).is_ok(),
                DataType::Int => i32::try_from(v).is_ok(),
                _ => true,
            };
            if fits {
                Ok(Literal::Int(v))
            } else {
                Err(format!("{v} is out of range for {ty}"))
            }
        }
        DataType::Double | DataType::Float => text
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(Literal::float)
            .ok_or_else(bad),
        DataType::String => text
            .strip_prefix('\'')
            .and_then(|t| t.strip_suffix('\''))
            .map(|t| Literal::String(t.replace("''", "'")))
            .ok_or_else(|| format!("a STRING parameter's value is quoted: '{text}'")),
        other => Err(format!(
            "parameters are BOOLEAN, TINYINT..BIGINT, FLOAT, DOUBLE or STRING, not {other}"
        )),
    }
}

/// Flink's implicit casts on insert: numeric widening, precision changes of timestamps, NULL.
/// DataFusion's optimizer without the rules that change what a streaming operator sees:
/// `single_distinct_aggregation_to_group_by` splits `COUNT(DISTINCT x)` into two aggregations,
/// which would hide a window aggregation's window columns from the outer one; and, in a query
/// with a temporal join, `push_down_filter`, which would filter the versioned table before the
/// join and so let an older version that passes the condition stand in for the valid one.
fn optimizer(temporal_join: bool) -> Optimizer {
    let rules = Optimizer::new()
        .rules
        .into_iter()
        .filter(|r| r.name() != "single_distinct_aggregation_to_group_by")
        .filter(|r| !(temporal_join && r.name() == "push_down_filter"))
        .collect();
    Optimizer::with_rules(rules)
}

/// The catalog window TVFs are checked against.
struct TvfCatalogOf<'a> {
    c: &'a mut Compiler,
    source: &'a SqlText,
}

impl tvf::TvfCatalog for TvfCatalogOf<'_> {
    fn relation(&self, name: &str) -> Option<(Vec<String>, Vec<usize>)> {
        let names = |s: &Schema| s.fields.iter().map(|f| f.name.clone()).collect();
        if let Some(r) = self.c.relations.get(name) {
            return Some((
                names(&r.schema),
                crate::lower::time_attributes(&self.c.nodes, r.node),
            ));
        }
        let t = self.c.tables.get(name)?;
        Some((
            names(&t.schema),
            t.watermark.iter().map(|w| w.rowtime).collect(),
        ))
    }

    fn interval_ms(&mut self, e: &sqlparser::ast::Expr) -> Result<i64, Diagnostic> {
        use sqlparser::ast::Spanned as _;
        let span = self.source.snippet().span(e.span());
        let sql = SqlExpr {
            expr: e.clone(),
            source: self.source.clone(),
        };
        let empty: SchemaRef = Arc::new(arrow::datatypes::Schema::empty());
        let planned = self.c.plan_exprs("window", &empty, &[&sql]);
        match planned.as_deref() {
            Some(
                [
                    Expr {
                        kind: ExprKind::Literal(fsql_plan::Literal::Int(ms)),
                        data_type: DataType::IntervalDayTime,
                        ..
                    },
                ],
            ) => Ok(*ms),
            _ => Err(Diagnostic::error(
                format!("expected a constant INTERVAL (like INTERVAL '10' MINUTE), got `{e}`"),
                span,
            )),
        }
    }
}

fn implicitly_castable(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    let rank = |t: &DataType| match t {
        TinyInt => Some(1),
        SmallInt => Some(2),
        Int => Some(3),
        BigInt => Some(4),
        Decimal { .. } => Some(5),
        Float => Some(6),
        Double => Some(7),
        _ => None,
    };
    match (from, to) {
        (Null, _) => true,
        (Timestamp { .. }, Timestamp { .. }) | (TimestampLtz { .. }, TimestampLtz { .. }) => true,
        (Decimal { .. }, Decimal { .. }) => true,
        _ => matches!((rank(from), rank(to)), (Some(a), Some(b)) if a <= b),
    }
}

/// Removes nodes that feed no sink or query, renumbering ids (topological order is kept).
fn prune(nodes: Vec<Node>, relations: &mut BTreeMap<String, RelationInfo>) -> Vec<Node> {
    let mut live = vec![false; nodes.len()];
    for n in nodes.iter().rev() {
        let i = n.id.0 as usize;
        if matches!(n.op, Operator::Sink(_) | Operator::Collect) {
            live[i] = true;
        }
        if live[i] {
            for input in &n.inputs {
                live[input.0 as usize] = true;
            }
        }
    }
    let mut remap = vec![None; nodes.len()];
    let mut out = Vec::new();
    for mut n in nodes {
        let old = n.id.0 as usize;
        if !live[old] {
            continue;
        }
        let id = NodeId(out.len() as u32);
        remap[old] = Some(id);
        n.id = id;
        n.inputs = n
            .inputs
            .iter()
            .filter_map(|i| remap[i.0 as usize])
            .collect();
        out.push(n);
    }
    relations.retain(|_, r| remap[r.node.0 as usize].is_some());
    for r in relations.values_mut() {
        if let Some(id) = remap[r.node.0 as usize] {
            r.node = id;
        }
    }
    out
}

fn find_schema_error(e: &DataFusionError) -> Option<&DataFusionError> {
    match e {
        DataFusionError::SchemaError(..) => Some(e),
        DataFusionError::Context(_, inner) => find_schema_error(inner),
        DataFusionError::Diagnostic(_, inner) => find_schema_error(inner),
        _ => None,
    }
}

/// The byte offset of the first whole-word occurrence of `word` in `text`.
fn find_word(text: &str, word: &str) -> Option<usize> {
    if word.is_empty() {
        return None;
    }
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word).map(|(i, _)| i).find(|&i| {
        let before = text[..i].chars().next_back().is_none_or(|c| !is_ident(c));
        let after = text[i + word.len()..]
            .chars()
            .next()
            .is_none_or(|c| !is_ident(c));
        before && after
    })
}

/// A DataFusion error message without DataFusion's category prefixes.
fn clean(e: &DataFusionError) -> String {
    let mut m = e.strip_backtrace();
    for prefix in [
        "Error during planning: ",
        "Schema error: ",
        "This feature is not implemented: ",
        "Optimizer rule",
        "Execution error: ",
    ] {
        if let Some(rest) = m.strip_prefix(prefix) {
            m = rest.to_string();
        }
    }
    m
}

/// Resolves table scans while lowering (creates source nodes) and names the statement's operators.
struct Resolver<'a> {
    c: &'a mut Compiler,
    error: Option<Diagnostic>,
    /// The statement's identity (view name, `insert:<table>`, `select#n`).
    label: String,
    /// How many operators of each kind the statement created so far.
    created: BTreeMap<String, usize>,
}

impl ScanResolver for Resolver<'_> {
    fn node_name(&mut self, kind: &str) -> String {
        let n = self.created.entry(kind.to_string()).or_insert(0);
        *n += 1;
        format!("{}#{kind}{n}", self.label)
    }

    fn window(&self, table: &str) -> Option<WindowTvf> {
        self.c.windows.get(table).cloned()
    }

    fn versioned_table(&self, table: &str) -> Option<String> {
        self.c.versioned.get(table).map(|v| v.table.clone())
    }

    fn model(&self, name: &str) -> Option<ModelDecl> {
        self.c.models.iter().find(|m| m.name == name).cloned()
    }

    fn versioned(&mut self, table: &str) -> Option<VersionedTable> {
        self.c.claimed.insert(table.to_string());
        let v = self.c.versioned.get(table)?;
        let info = self.c.tables.get(&v.table);
        Some(VersionedTable {
            table: v.table.clone(),
            as_of: v.as_of.clone(),
            primary_key: info
                .and_then(|t| t.def.primary_key.as_ref())
                .map(|k| k.iter().map(|c| c.node.clone()).collect())
                .unwrap_or_default(),
        })
    }

    fn scan(
        &mut self,
        table: &str,
        nodes: &mut Vec<Node>,
    ) -> Result<(NodeId, Schema, Option<usize>), Unsupported> {
        if let Some(m) = self.c.matches.get(table).cloned() {
            let (input, _, _) = self.scan(&m.input, nodes)?;
            let id = NodeId(nodes.len() as u32);
            let name = self.node_name("match");
            nodes.push(Node {
                id,
                name,
                inputs: vec![input],
                schema: m.schema.clone(),
                event_time: m.event_time,
                op: Operator::MatchRecognize(m.spec),
            });
            return Ok((id, m.schema, m.event_time));
        }
        if let Some(p) = self.c.predicts.get(table).cloned() {
            let (input, _, event_time) = self.scan(&p.input, nodes)?;
            let id = NodeId(nodes.len() as u32);
            let name = self.node_name("predict");
            nodes.push(Node {
                id,
                name,
                inputs: vec![input],
                schema: p.schema.clone(),
                event_time,
                op: Operator::Predict(p.spec),
            });
            return Ok((id, p.schema, event_time));
        }
        if let Some(r) = self.c.relations.get(table)
            && !matches!(
                nodes.get(r.node.0 as usize).map(|n| &n.op),
                Some(Operator::Sink(_))
            )
        {
            let et = nodes.get(r.node.0 as usize).and_then(|n| n.event_time);
            return Ok((r.node, r.schema.clone(), et));
        }
        std::mem::swap(&mut self.c.nodes, nodes);
        let result = self.c.source_node(table);
        std::mem::swap(&mut self.c.nodes, nodes);
        result.map_err(|d| {
            let m = d.message.clone();
            self.error.get_or_insert(d);
            Unsupported(m)
        })
    }
}

/// DataFusion's view of the catalog: tables, views and rulesets by name, and the stdlib functions.
struct Provider<'a> {
    c: &'a Compiler,
}

impl ContextProvider for Provider<'_> {
    fn get_table_source(
        &self,
        name: TableReference,
    ) -> datafusion::common::Result<Arc<dyn TableSource>> {
        let mut table = name.table();
        if let Some(schema) = self
            .c
            .matches
            .get(table)
            .map(|m| &m.schema)
            .or_else(|| self.c.predicts.get(table).map(|p| &p.schema))
        {
            return Ok(Arc::new(LogicalTableSource::new(Arc::new(
                schema.to_arrow(),
            ))));
        }
        let window = self.c.windows.get(table);
        if let Some(w) = window {
            table = &w.data;
        }
        if let Some(v) = self.c.versioned.get(table) {
            table = &v.table;
        }
        let schema = self.c.relation_schema(table);
        let schema = match (schema, window) {
            (Some(s), Some(w)) => {
                let time = s
                    .fields
                    .iter()
                    .position(|f| f.name == w.time_column)
                    .unwrap_or(0);
                Some(tvf::window_schema(&s, time))
            }
            (s, _) => s,
        };
        match schema {
            Some(s) => Ok(Arc::new(LogicalTableSource::new(Arc::new(s.to_arrow())))),
            None => {
                let known = self
                    .c
                    .relations
                    .keys()
                    .chain(self.c.tables.keys())
                    .map(String::as_str);
                let hint = match closest(table, known) {
                    Some(s) => format!("; did you mean `{s}`?"),
                    None => String::new(),
                };
                Err(DataFusionError::Plan(format!(
                    "table or view `{table}` not found{hint}"
                )))
            }
        }
    }

    fn get_type_planner(&self) -> Option<Arc<dyn TypePlanner>> {
        Some(Arc::new(crate::sql_types::FlinkTypes))
    }

    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        &self.c.expr_planners
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.c.udfs.get(&name.to_ascii_lowercase()).cloned()
    }

    fn get_higher_order_meta(&self, _name: &str) -> Option<Arc<HigherOrderUDF>> {
        None
    }

    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        self.c.udafs.get(&name.to_ascii_lowercase()).cloned()
    }

    fn get_window_meta(&self, name: &str) -> Option<Arc<WindowUDF>> {
        self.c.udwfs.get(&name.to_ascii_lowercase()).cloned()
    }

    fn get_variable_type(&self, _variable_names: &[String]) -> Option<ArrowType> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        &self.c.config
    }

    fn udf_names(&self) -> Vec<String> {
        self.c.udfs.keys().cloned().collect()
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        vec![]
    }

    fn udaf_names(&self) -> Vec<String> {
        self.c.udafs.keys().cloned().collect()
    }

    fn udwf_names(&self) -> Vec<String> {
        self.c.udwfs.keys().cloned().collect()
    }
}

/// Plans constant expressions (test rows, watermarks), each cast to its target type.
pub fn constants(exprs: &[&SqlExpr], types: &[DataType]) -> Result<Vec<Expr>, Vec<Diagnostic>> {
    let mut c = Compiler::new(vec![".".into()], vec![]);
    let empty: SchemaRef = Arc::new(arrow::datatypes::Schema::empty());
    match c.plan_exprs("values", &empty, exprs) {
        Some(values) => Ok(values
            .into_iter()
            .zip(types)
            .map(|(e, t)| {
                if &e.data_type == t {
                    e
                } else {
                    let nullable = e.nullable;
                    Expr {
                        kind: ExprKind::Cast {
                            arg: Box::new(e),
                            safe: false,
                        },
                        data_type: t.clone(),
                        nullable,
                    }
                }
            })
            .collect()),
        None => Err(c.diags),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fsql_plan::{AggregateFunction, OverFrame};

    fn compile(text: &str) -> Compilation {
        compile_source(
            Path::new("t.fsql"),
            text.to_string(),
            &CompileOptions {
                keep_unused: true,
                ..Default::default()
            },
            &[],
        )
    }

    const SOURCE: &str = "CREATE TABLE p (id BIGINT, card STRING, amount DOUBLE, qty INT, ts TIMESTAMP(3), \
        WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) WITH ('connector' = 'datagen');\n";

    fn over_specs(c: &Compilation) -> Vec<&fsql_plan::OverSpec> {
        let pipeline = c.pipeline.as_ref().expect("compiles");
        pipeline
            .nodes
            .iter()
            .filter_map(|n| match &n.op {
                Operator::Over(o) => Some(o),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn over_windows_lower_with_frames_and_flink_types() {
        let c = compile(&format!(
            "{SOURCE}CREATE VIEW v AS SELECT id, \
             COUNT(*) OVER w AS n, SUM(amount) OVER w AS total, AVG(qty) OVER w AS avg_qty, \
             MAX(amount) OVER (PARTITION BY card ORDER BY ts ROWS BETWEEN 5 PRECEDING AND CURRENT ROW) AS mx, \
             LAG(ts) OVER (PARTITION BY card ORDER BY ts) AS prev_ts, \
             COUNT(DISTINCT amount) OVER w AS distinct_amounts \
             FROM p WINDOW w AS (PARTITION BY card ORDER BY ts RANGE BETWEEN INTERVAL '1' HOUR PRECEDING AND CURRENT ROW);"
        ));
        let errors: Vec<_> = c.diagnostics.iter().map(|d| d.render(&c.sources)).collect();
        assert!(!c.has_errors(), "{errors:?}");
        let aggs: Vec<_> = over_specs(&c)
            .into_iter()
            .flat_map(|o| o.aggregates.iter())
            .collect();
        assert_eq!(aggs.len(), 6);
        let count = aggs
            .iter()
            .find(|a| a.function == AggregateFunction::Count && !a.distinct)
            .unwrap();
        assert!(count.args.is_empty(), "COUNT(*) counts rows");
        assert_eq!(
            count.frame,
            OverFrame::Range {
                preceding_ms: 3_600_000
            }
        );
        assert_eq!(count.data_type, DataType::BigInt);
        let avg = aggs
            .iter()
            .find(|a| a.function == AggregateFunction::Avg)
            .unwrap();
        assert_eq!(avg.data_type, DataType::Int, "AVG(INT) is INT in Flink");
        let max = aggs
            .iter()
            .find(|a| a.function == AggregateFunction::Max)
            .unwrap();
        assert_eq!(max.frame, OverFrame::Rows { preceding: 5 });
        let lag = aggs
            .iter()
            .find(|a| matches!(a.function, AggregateFunction::Lag { offset: 1 }))
            .unwrap();
        assert_eq!(lag.data_type, DataType::Timestamp { precision: 3 });
        let v = &c.relations["v"];
        let names: Vec<&str> = v.schema.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "id",
                "n",
                "total",
                "avg_qty",
                "mx",
                "prev_ts",
                "distinct_amounts"
            ]
        );
    }

    #[test]
    fn window_aggregation_lowers_to_one_sliced_operator() {
        let c = compile(&format!(
            "{SOURCE}CREATE VIEW v AS SELECT card, window_start, window_end, COUNT(*) AS n, \
             SUM(amount) FILTER (WHERE qty > 1) AS s, COUNT(DISTINCT qty) AS d \
             FROM TABLE(HOP(TABLE p, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '1' HOUR)) \
             WHERE amount > 0 GROUP BY window_start, window_end, card;"
        ));
        let text: String = c.diagnostics.iter().map(|d| d.render(&c.sources)).collect();
        let nodes = &c.pipeline.as_ref().expect(&text).nodes;
        let specs: Vec<_> = nodes
            .iter()
            .filter_map(|n| match &n.op {
                Operator::WindowAggregate(w) => Some((n, w)),
                _ => None,
            })
            .collect();
        let [(node, w)] = specs.as_slice() else {
            panic!("one window aggregation: {nodes:#?}")
        };
        assert_eq!(
            w.window,
            fsql_plan::WindowKind::Hop {
                size_ms: 3_600_000,
                slide_ms: 60_000,
                offset_ms: 0
            }
        );
        assert!(w.group.contains(&fsql_plan::GroupColumn::WindowStart));
        assert!(w.group.contains(&fsql_plan::GroupColumn::WindowEnd));
        assert_eq!(w.aggregates.len(), 3);
        assert!(w.aggregates[1].filter.is_some() && w.aggregates[2].distinct);
        // The WHERE runs on the data rows, before the windows: a Calc feeds the aggregation.
        let input = &nodes[node.inputs[0].0 as usize];
        assert!(matches!(
            input.op,
            Operator::Calc {
                filter: Some(_),
                ..
            }
        ));
        // No event time after the aggregation unless window_time is grouped by.
        assert_eq!(node.event_time, None);
    }

    #[test]
    fn temporal_join_mistakes_are_explained() {
        let rates = |pk: &str, wm: &str| {
            format!(
                "CREATE TABLE rates (card STRING, rate DOUBLE, ut TIMESTAMP(3){pk}{wm}) \
                 WITH ('connector' = 'datagen');\n"
            )
        };
        let query = "CREATE VIEW v AS SELECT p.id, r.rate FROM p JOIN rates FOR SYSTEM_TIME AS OF p.ts AS r \
                     ON p.card = r.card;";
        let errors = |text: String| -> String {
            let c = compile(&text);
            c.diagnostics.iter().map(|d| d.render(&c.sources)).collect()
        };
        let wm = ", WATERMARK FOR ut AS ut - INTERVAL '1' SECOND";
        let pk = ", PRIMARY KEY (card) NOT ENFORCED";
        let no_pk = errors(format!("{SOURCE}{}{query}", rates("", wm)));
        assert!(no_pk.contains("needs a PRIMARY KEY"), "{no_pk}");
        let no_wm = errors(format!("{SOURCE}{}{query}", rates(pk, "")));
        assert!(no_wm.contains("needs a WATERMARK"), "{no_wm}");
        let ok = errors(format!("{SOURCE}{}{query}", rates(pk, wm)));
        assert!(!ok.contains("error"), "{ok}");
        let not_joined = errors(format!(
            "{SOURCE}{}CREATE VIEW w AS SELECT * FROM rates FOR SYSTEM_TIME AS OF ut;",
            rates(pk, wm)
        ));
        assert!(
            not_joined.contains("on the right side of a join"),
            "{not_joined}"
        );
    }

    #[test]
    fn grouping_sets_become_one_window_aggregation_per_set() {
        let c = compile(&format!(
            "{SOURCE}CREATE VIEW v AS SELECT window_start, window_end, card, qty, SUM(amount) AS s \
             FROM TABLE(TUMBLE(TABLE p, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) \
             GROUP BY window_start, window_end, ROLLUP (card, qty);"
        ));
        let text: String = c.diagnostics.iter().map(|d| d.render(&c.sources)).collect();
        let nodes = &c.pipeline.as_ref().expect(&text).nodes;
        let mut groups: Vec<usize> = nodes
            .iter()
            .filter_map(|n| match &n.op {
                Operator::WindowAggregate(w) => Some(w.group.len()),
                _ => None,
            })
            .collect();
        groups.sort_unstable();
        // (), (card), (card, qty): each with window_start and window_end.
        assert_eq!(groups, vec![2, 3, 4]);
        assert!(nodes.iter().any(|n| matches!(n.op, Operator::Union)));
    }

    #[test]
    fn window_tvf_mistakes_point_at_the_argument() {
        let c = compile(&format!(
            "{SOURCE}CREATE VIEW a AS SELECT window_start, window_end, COUNT(*) AS n \
             FROM TABLE(TUMBLE(TABLE p, DESCRIPTOR(id), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end;\n\
             CREATE VIEW b AS SELECT window_start, window_end, COUNT(*) AS n \
             FROM TABLE(TUMBLE(TABLE p, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '2' MINUTE)) GROUP BY window_start, window_end;\n\
             CREATE VIEW c AS SELECT card, COUNT(*) AS n FROM p GROUP BY card;"
        ));
        let text: String = c.diagnostics.iter().map(|d| d.render(&c.sources)).collect();
        assert!(
            text.contains("`id` is not one")
                && text.contains("the event-time attribute of `p` is `ts`"),
            "{text}"
        );
        assert!(
            text.contains("the offset of TUMBLE must be smaller in magnitude than its size"),
            "{text}"
        );
        // A GROUP BY without a window is an updating aggregation, whose state only grows.
        assert!(
            text.contains("a GROUP BY without a window keeps the aggregates of every key"),
            "{text}"
        );
        assert_eq!(c.diagnostics.len(), 3, "{text}");
    }

    #[test]
    fn over_must_be_ordered_by_event_time() {
        let c = compile(&format!(
            "{SOURCE}CREATE VIEW v AS SELECT COUNT(*) OVER (PARTITION BY card ORDER BY id) AS n FROM p;"
        ));
        let text: String = c.diagnostics.iter().map(|d| d.render(&c.sources)).collect();
        assert!(text.contains("OVER windows must be ordered by"), "{text}");
    }

    #[test]
    fn distinct_over_an_unbounded_frame_is_an_unbounded_state_warning() {
        let text = format!(
            "{SOURCE}CREATE VIEW v AS SELECT COUNT(DISTINCT amount) OVER (PARTITION BY card ORDER BY ts) AS n FROM p;"
        );
        let c = compile(&text);
        assert!(!c.has_errors());
        assert!(
            c.diagnostics
                .iter()
                .any(|d| d.severity == Severity::Warning
                    && d.message.contains("grows without bound"))
        );
        let strict = compile_source(
            Path::new("t.fsql"),
            text,
            &CompileOptions {
                strict: true,
                keep_unused: true,
            },
            &[],
        );
        assert!(strict.has_errors(), "--strict turns it into an error");
    }

    #[test]
    fn match_recognize_without_a_skip_warns_that_flink_skips_to_the_next_row() {
        let mr = |skip: &str| {
            format!(
                "{SOURCE}CREATE VIEW v AS SELECT * FROM p MATCH_RECOGNIZE (PARTITION BY card ORDER BY ts \
                 MEASURES A.amount AS a {skip} PATTERN (A B) WITHIN INTERVAL '1' MINUTE \
                 DEFINE A AS amount < 1) AS T;"
            )
        };
        let warned = |c: &Compilation| {
            c.diagnostics.iter().any(|d| {
                d.severity == Severity::Warning && d.message.contains("skip PAST LAST ROW")
            })
        };
        let c = compile(&mr(""));
        assert!(!c.has_errors() && warned(&c), "{:?}", c.diagnostics);
        let c = compile(&mr("AFTER MATCH SKIP TO NEXT ROW"));
        assert!(!c.has_errors() && !warned(&c), "{:?}", c.diagnostics);
    }
}
