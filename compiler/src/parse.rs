//! Text to [`Statement`]s: pest splits the file and parses fsql's own statements; sqlparser parses
//! queries and embedded expressions. Errors become [`Diagnostic`]s with file spans; parsing goes on
//! with the next statement so one run reports every mistake.

use fsql_stdlib::sql as sql_library;
use pest::Parser as _;
use pest::iterators::Pair;
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser as SqlParser;
use sqlparser::tokenizer::Token;

use crate::ast::*;
use crate::diagnostic::{Diagnostic, closest};
use crate::source::{FileId, SourceFile, SourceMap, Span};
use crate::types::resolve_data_type;

#[derive(pest_derive::Parser)]
#[grammar = "grammar.pest"]
struct Grammar;

/// How deep `INCLUDE`s may nest before we assume a cycle.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Parses `file` (and, recursively, the files it includes) into statements.
pub fn parse_file(
    sources: &mut SourceMap,
    file: FileId,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Statement> {
    let mut out = Vec::new();
    parse_into(sources, file, 0, diags, &mut out);
    out
}

/// Parses a piece of text (e.g. a test's `STATEMENTS $$...$$`) that lives at `base` in `file`.
pub fn parse_text(
    sources: &mut SourceMap,
    file: FileId,
    base: usize,
    text: &str,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Statement> {
    let mut out = Vec::new();
    parse_statements(sources, file, base, text, 0, diags, &mut out);
    out
}

fn parse_into(
    sources: &mut SourceMap,
    file: FileId,
    depth: usize,
    diags: &mut Vec<Diagnostic>,
    out: &mut Vec<Statement>,
) {
    let text = sources.file(file).text.clone();
    parse_statements(sources, file, 0, &text, depth, diags, out);
}

fn parse_statements(
    sources: &mut SourceMap,
    file: FileId,
    base: usize,
    text: &str,
    depth: usize,
    diags: &mut Vec<Diagnostic>,
    out: &mut Vec<Statement>,
) {
    for (start, end) in split_statements(text) {
        let stmt_text = &text[start..end];
        let at = base + start;
        match leading_keywords(stmt_text).as_slice() {
            [first, ..] if first == "INCLUDE" => {
                match parse_include(file, at, stmt_text) {
                    Ok(path) => include(sources, file, path, depth, diags, out),
                    Err(d) => diags.push(d),
                }
                continue;
            }
            _ => {}
        }
        match parse_statement(file, at, stmt_text) {
            Ok(stmt) => out.push(stmt),
            Err(d) => diags.push(d),
        }
    }
}

fn include(
    sources: &mut SourceMap,
    from: FileId,
    path: Spanned<String>,
    depth: usize,
    diags: &mut Vec<Diagnostic>,
    out: &mut Vec<Statement>,
) {
    if depth >= MAX_INCLUDE_DEPTH {
        diags.push(Diagnostic::error(
            format!("INCLUDE nested more than {MAX_INCLUDE_DEPTH} deep (a cycle?)"),
            path.span,
        ));
        return;
    }
    if let Some(name) = path.node.strip_prefix(sql_library::INCLUDE_PREFIX) {
        let Some(text) = sql_library::file(name) else {
            diags.push(unknown_library_file(name, path.span));
            return;
        };
        let id = sources.add(SourceFile::new(&path.node, text.to_string()));
        parse_into(sources, id, depth + 1, diags, out);
        return;
    }
    let full = sources.file(from).dir().join(&path.node);
    // Only regular files: `INCLUDE '/dev/zero'` must not read forever.
    if !std::fs::metadata(&full).is_ok_and(|m| m.is_file()) {
        diags.push(Diagnostic::error(
            format!("cannot include `{}`: not a readable file", full.display()),
            path.span,
        ));
        return;
    }
    match std::fs::read_to_string(&full) {
        Ok(text) => {
            let id = sources.add(SourceFile::new(full, text));
            parse_into(sources, id, depth + 1, diags, out);
        }
        Err(e) => diags.push(Diagnostic::error(
            format!("cannot read included file `{}`: {e}", full.display()),
            path.span,
        )),
    }
}

/// `INCLUDE 'fsql:<name>'` of a name the SQL library does not have: a typo's correction, and the
/// whole list.
fn unknown_library_file(name: &str, span: Span) -> Diagnostic {
    let names = sql_library::FILES.iter().map(|(n, _)| *n);
    let prefix = sql_library::INCLUDE_PREFIX;
    let list = names
        .clone()
        .map(|n| format!("{prefix}{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let help = match closest(name, names) {
        Some(n) => format!("did you mean '{prefix}{n}'? The SQL library has {list}"),
        None => format!("the SQL library has {list}"),
    };
    Diagnostic::error(format!("unknown SQL library file `{prefix}{name}`"), span).with_help(help)
}

/// Byte ranges of the statements of `text`, split on `;` outside quotes and comments, trimmed.
pub fn split_statements(text: &str) -> Vec<(usize, usize)> {
    let Ok(mut pairs) = Grammar::parse(Rule::file, text) else {
        // The splitting grammar accepts every input; keep a whole-text fallback regardless.
        return vec![(0, text.len())];
    };
    let Some(file) = pairs.next() else {
        return vec![];
    };
    file.into_inner()
        .filter(|p| p.as_rule() == Rule::stmt_text)
        .map(|p| {
            let s = p.as_span();
            (s.start(), s.start() + s.as_str().trim_end().len())
        })
        .filter(|(s, e)| e > s)
        .collect()
}

/// The first few words of a statement, upper-cased, skipping comments.
fn leading_keywords(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut rest = text;
    while words.len() < 3 {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.find('\n').map_or("", |i| &r[i..]);
            continue;
        }
        if let Some(r) = rest.strip_prefix("/*") {
            rest = r.find("*/").map_or("", |i| &r[i + 2..]);
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        words.push(rest[..end].to_ascii_uppercase());
        rest = &rest[end..];
    }
    words
}

fn parse_statement(file: FileId, at: usize, text: &str) -> Result<Statement, Diagnostic> {
    let span = Span::new(file, at, at + text.len());
    let ctx = Ctx { file, base: at };
    let words = leading_keywords(text);
    let w = |i: usize| words.get(i).map_or("", String::as_str);
    let create_kind = if w(1) == "TEMPORARY" { w(2) } else { w(1) };
    let kind = match (w(0), create_kind) {
        ("SET", _) => ctx.set_stmt(text)?,
        ("CREATE", "TABLE") => StatementKind::CreateTable(ctx.create_table(text)?),
        ("CREATE", "MODEL") => StatementKind::CreateModel(ctx.create_model(text)?),
        ("CREATE", "RULESET") => StatementKind::CreateRuleset(ctx.create_ruleset(text)?),
        ("TEST", _) => StatementKind::Test(ctx.test(text)?),
        _ => StatementKind::Query(ctx.query(text)?),
    };
    Ok(Statement { kind, span })
}

fn parse_include(file: FileId, at: usize, text: &str) -> Result<Spanned<String>, Diagnostic> {
    let ctx = Ctx { file, base: at };
    let pair = ctx.pest(Rule::include_stmt, text, "INCLUDE")?;
    let s = first(pair, Rule::string);
    Ok(ctx.string(&s))
}

/// Parsing context of one statement: its file and where its text starts.
struct Ctx {
    file: FileId,
    base: usize,
}

impl Ctx {
    fn span(&self, pair: &Pair<Rule>) -> Span {
        let s = pair.as_span();
        Span::new(self.file, self.base + s.start(), self.base + s.end())
    }

    fn pest<'t>(
        &self,
        rule: Rule,
        text: &'t str,
        what: &str,
    ) -> Result<Pair<'t, Rule>, Diagnostic> {
        match Grammar::parse(rule, text) {
            Ok(mut pairs) => pairs
                .next()
                .ok_or_else(|| Diagnostic::error(format!("empty {what} statement"), None)),
            Err(e) => Err(self.pest_error(e, text, what)),
        }
    }

    fn pest_error(&self, e: pest::error::Error<Rule>, text: &str, what: &str) -> Diagnostic {
        let (start, end) = match e.location {
            pest::error::InputLocation::Pos(p) => (p, p + 1),
            pest::error::InputLocation::Span((s, e)) => (s, e),
        };
        let end = end.min(text.len()).max(start);
        let expected = match &e.variant {
            pest::error::ErrorVariant::ParsingError { positives, .. } => {
                let mut names: Vec<&str> = positives.iter().map(|r| rule_name(*r)).collect();
                names.sort_unstable();
                names.dedup();
                names.join(", ")
            }
            pest::error::ErrorVariant::CustomError { message } => message.clone(),
        };
        let found = text[start.min(text.len())..]
            .split_whitespace()
            .next()
            .map_or("end of statement".to_string(), |w| format!("`{w}`"));
        let message = if expected.is_empty() {
            format!("syntax error in {what}: unexpected {found}")
        } else {
            format!("syntax error in {what}: expected {expected}, found {found}")
        };
        Diagnostic::error(
            message,
            Span::new(self.file, self.base + start, self.base + end),
        )
    }

    fn ident(&self, pair: &Pair<Rule>) -> Spanned<String> {
        Spanned {
            node: ident_value(pair.as_str()),
            span: self.span(pair),
        }
    }

    fn string(&self, pair: &Pair<Rule>) -> Spanned<String> {
        Spanned {
            node: string_value(pair.as_str()),
            span: self.span(pair),
        }
    }

    /// Parses an embedded SQL expression with sqlparser.
    fn sql_expr(&self, pair: &Pair<Rule>) -> Result<SqlExpr, Diagnostic> {
        let text = pair.as_str().trim_end();
        let source = SqlText {
            file: self.file,
            base: self.base + pair.as_span().start(),
            text: text.to_string(),
        };
        let dialect = GenericDialect {};
        let result = SqlParser::new(&dialect)
            .try_with_sql(text)
            .and_then(|mut p| {
                let e = p.parse_expr()?;
                match p.peek_token().token {
                    Token::EOF => Ok(e),
                    t => Err(sqlparser::parser::ParserError::ParserError(format!(
                        "Expected: end of expression, found: {t}"
                    ))),
                }
            });
        match result {
            Ok(expr) if crate::depth::too_deep(&expr) => Err(Diagnostic::error(
                crate::depth::message(),
                source.snippet().whole(),
            )
            .with_help("split the expression into intermediate columns of a view")),
            Ok(expr) => Ok(SqlExpr { expr, source }),
            Err(e) => Err(sql_error(&source, &e.to_string())),
        }
    }

    fn data_type(&self, pair: Pair<Rule>) -> Result<Spanned<fsql_plan::DataType>, Diagnostic> {
        let span = self.span(&pair);
        resolve_data_type(pair, span.file, self.base).map(|node| Spanned { node, span })
    }

    fn options(&self, pair: Option<Pair<Rule>>) -> Vec<OptionDef> {
        let Some(pair) = pair else { return vec![] };
        pair.into_inner()
            .filter(|p| p.as_rule() == Rule::option)
            .filter_map(|p| {
                let mut it = p.into_inner();
                let key = it.next()?;
                let value = it.next()?;
                Some(OptionDef {
                    key: self.string(&key),
                    value: self.string(&value),
                })
            })
            .collect()
    }

    fn set_stmt(&self, text: &str) -> Result<StatementKind, Diagnostic> {
        let pair = self.pest(Rule::set_stmt, text, "SET")?;
        let mut strings = pair.into_inner().filter(|p| p.as_rule() == Rule::string);
        let (Some(k), Some(v)) = (strings.next(), strings.next()) else {
            return Err(Diagnostic::error("SET needs 'key' = 'value'", None));
        };
        Ok(StatementKind::Set {
            key: self.string(&k),
            value: self.string(&v),
        })
    }

    fn create_table(&self, text: &str) -> Result<TableDef, Diagnostic> {
        let pair = self.pest(Rule::create_table, text, "CREATE TABLE")?;
        let mut table = TableDef {
            name: Spanned {
                node: String::new(),
                span: self.span(&pair),
            },
            columns: vec![],
            watermark: None,
            primary_key: None,
            options: vec![],
        };
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::object_name => table.name = self.ident(&p),
                Rule::column_def => {
                    let inline_pk = p
                        .clone()
                        .into_inner()
                        .flat_map(|c| c.into_inner())
                        .any(|c| c.as_rule() == Rule::inline_pk);
                    let column = self.column(p)?;
                    if inline_pk {
                        table.primary_key = Some(vec![column.name.clone()]);
                    }
                    table.columns.push(column);
                }
                Rule::watermark_def => {
                    let mut it = p
                        .into_inner()
                        .filter(|q| matches!(q.as_rule(), Rule::ident | Rule::expr_text));
                    let (Some(col), Some(expr)) = (it.next(), it.next()) else {
                        continue;
                    };
                    table.watermark = Some(WatermarkDef {
                        column: self.ident(&col),
                        expr: self.sql_expr(&expr)?,
                    });
                }
                Rule::primary_key => {
                    let cols = p.into_inner().filter(|c| c.as_rule() == Rule::ident);
                    table.primary_key = Some(cols.map(|c| self.ident(&c)).collect());
                }
                Rule::with_options => table.options = self.options(Some(p)),
                _ => {}
            }
        }
        Ok(table)
    }

    fn column(&self, pair: Pair<Rule>) -> Result<ColumnDef, Diagnostic> {
        let mut it = pair.into_inner();
        let name_pair = it
            .next()
            .ok_or_else(|| Diagnostic::error("column without a name", None))?;
        let name = self.ident(&name_pair);
        let body = it
            .next()
            .ok_or_else(|| Diagnostic::error("column without a type", name.span))?;
        let kind = match body.as_rule() {
            Rule::computed_col => {
                let expr = first(body, Rule::expr_text);
                ColumnKind::Computed(self.sql_expr(&expr)?)
            }
            Rule::metadata_col => {
                let mut data_type = None;
                let mut key = None;
                let mut is_virtual = false;
                for p in body.into_inner() {
                    match p.as_rule() {
                        Rule::data_type => data_type = Some(self.data_type(p)?),
                        Rule::string => key = Some(string_value(p.as_str())),
                        Rule::virtual_kw => is_virtual = true,
                        _ => {}
                    }
                }
                let data_type = data_type.ok_or_else(|| {
                    Diagnostic::error("metadata column without a type", name.span)
                })?;
                ColumnKind::Metadata {
                    data_type,
                    key,
                    is_virtual,
                }
            }
            _ => ColumnKind::Physical {
                data_type: self.data_type(first(body, Rule::data_type))?,
            },
        };
        Ok(ColumnDef { name, kind })
    }

    fn columns(
        &self,
        pair: Pair<Rule>,
    ) -> Result<Vec<(Spanned<String>, fsql_plan::DataType)>, Diagnostic> {
        pair.into_inner()
            .filter(|p| p.as_rule() == Rule::model_column)
            .map(|p| {
                let mut it = p.into_inner();
                let (Some(n), Some(t)) = (it.next(), it.next()) else {
                    return Err(Diagnostic::error("column needs a name and a type", None));
                };
                Ok((self.ident(&n), self.data_type(t)?.node))
            })
            .collect()
    }

    fn create_model(&self, text: &str) -> Result<ModelDef, Diagnostic> {
        let pair = self.pest(Rule::create_model, text, "CREATE MODEL")?;
        let mut name = None;
        let mut lists = Vec::new();
        let mut options = vec![];
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::object_name => name = Some(self.ident(&p)),
                Rule::column_list => lists.push(self.columns(p)?),
                Rule::with_options => options = self.options(Some(p)),
                _ => {}
            }
        }
        let name = name.ok_or_else(|| Diagnostic::error("model without a name", None))?;
        let mut lists = lists.into_iter();
        Ok(ModelDef {
            name,
            inputs: lists.next().unwrap_or_default(),
            outputs: lists.next().unwrap_or_default(),
            options,
        })
    }

    fn create_ruleset(&self, text: &str) -> Result<RulesetDef, Diagnostic> {
        let pair = self.pest(Rule::create_ruleset, text, "CREATE RULESET")?;
        let whole = self.span(&pair);
        let mut names = Vec::new();
        let mut key = None;
        let mut default_decision = None;
        let mut rules = Vec::new();
        let mut parameters = Vec::new();
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::object_name => names.push(self.ident(&p)),
                Rule::ident => key = Some(self.ident(&p)),
                Rule::string => default_decision = Some(self.string(&p)),
                Rule::rule_def => rules.push(self.rule(p)?),
                Rule::rule_params => {
                    for param in p.into_inner() {
                        parameters.push(self.rule_param(param)?);
                    }
                }
                _ => {}
            }
        }
        let mut names = names.into_iter();
        let missing = |what: &str| Diagnostic::error(format!("ruleset without {what}"), whole);
        Ok(RulesetDef {
            name: names.next().ok_or_else(|| missing("a name"))?,
            input: names.next().ok_or_else(|| missing("an input"))?,
            key: key.ok_or_else(|| missing("a KEY"))?,
            default_decision: default_decision.ok_or_else(|| missing("a DEFAULT"))?,
            parameters,
            rules,
        })
    }

    fn rule_param(&self, pair: Pair<Rule>) -> Result<ParamDef, Diagnostic> {
        let whole = self.span(&pair);
        let mut name = None;
        let mut data_type = None;
        let mut value = None;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::ident => name = Some(self.ident(&p)),
                Rule::data_type => data_type = Some(self.data_type(p)?.node),
                Rule::param_value => {
                    let span = self.span(&p);
                    let text = match p.clone().into_inner().next() {
                        Some(s) if s.as_rule() == Rule::string => {
                            format!("'{}'", self.string(&s).node)
                        }
                        _ => p.as_str().to_string(),
                    };
                    value = Some(Spanned { node: text, span });
                }
                _ => {}
            }
        }
        let missing = || Diagnostic::error("a parameter is `name TYPE DEFAULT value`", whole);
        Ok(ParamDef {
            name: name.ok_or_else(missing)?,
            data_type: data_type.ok_or_else(missing)?,
            value: value.ok_or_else(missing)?,
        })
    }

    fn rule(&self, pair: Pair<Rule>) -> Result<RuleDef, Diagnostic> {
        let whole = self.span(&pair);
        let mut name = None;
        let mut priority = None;
        let mut condition = None;
        let mut decision = None;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::ident => name = Some(self.ident(&p)),
                Rule::integer => {
                    priority = Some(p.as_str().parse::<i64>().map_err(|e| {
                        Diagnostic::error(format!("invalid priority: {e}"), self.span(&p))
                    })?)
                }
                Rule::cond_text => condition = Some(self.sql_expr(&p)?),
                Rule::string => decision = Some(self.string(&p)),
                _ => {}
            }
        }
        let missing = |what: &str| Diagnostic::error(format!("rule without {what}"), whole);
        Ok(RuleDef {
            name: name.ok_or_else(|| missing("a name"))?,
            priority: priority.ok_or_else(|| missing("a PRIORITY"))?,
            condition: condition.ok_or_else(|| missing("a WHEN condition"))?,
            decision: decision.ok_or_else(|| missing("a THEN decision"))?,
        })
    }

    fn test(&self, text: &str) -> Result<TestDef, Diagnostic> {
        let pair = self.pest(Rule::test_stmt, text, "TEST")?;
        let mut name = None;
        let mut items = Vec::new();
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::ident => name = Some(self.ident(&p)),
                Rule::test_input => {
                    let mut table = None;
                    let mut columns = vec![];
                    let mut rows = vec![];
                    for q in p.into_inner() {
                        match q.as_rule() {
                            Rule::object_name => table = Some(self.ident(&q)),
                            Rule::column_names => columns = self.names(q),
                            Rule::row => rows.push(self.row(q)?),
                            _ => {}
                        }
                    }
                    if let Some(table) = table {
                        items.push(TestItem::Input {
                            table,
                            columns,
                            rows,
                        });
                    }
                }
                Rule::test_watermark => {
                    let mut it = p.into_inner();
                    if let (Some(t), Some(e)) = (it.next(), it.next()) {
                        items.push(TestItem::Watermark {
                            table: self.ident(&t),
                            value: self.sql_expr(&e)?,
                        });
                    }
                }
                Rule::test_expect => {
                    let mut relation = None;
                    let mut ordered = false;
                    let mut changelog = false;
                    let mut tolerance = None;
                    let mut columns = vec![];
                    let mut rows = vec![];
                    for q in p.into_inner() {
                        match q.as_rule() {
                            Rule::object_name => relation = Some(self.ident(&q)),
                            Rule::ordering => ordered = q.as_str().eq_ignore_ascii_case("ORDERED"),
                            Rule::changelog_kw => changelog = true,
                            Rule::tolerance => {
                                let n = first(q, Rule::number);
                                tolerance = Some(n.as_str().parse::<f64>().map_err(|e| {
                                    Diagnostic::error(
                                        format!("invalid tolerance: {e}"),
                                        self.span(&n),
                                    )
                                })?);
                            }
                            Rule::column_names => columns = self.names(q),
                            Rule::row => rows.push(self.row(q)?),
                            _ => {}
                        }
                    }
                    if let Some(relation) = relation {
                        items.push(TestItem::Expect {
                            relation,
                            changelog,
                            ordered,
                            tolerance,
                            columns,
                            rows,
                        });
                    }
                }
                Rule::test_expect_error => {
                    let s = first(p, Rule::string);
                    items.push(TestItem::ExpectError(self.string(&s)));
                }
                Rule::test_statements => {
                    let d = first(p, Rule::dollar_text);
                    let inner = d.as_str();
                    let body = &inner[2..inner.len() - 2];
                    items.push(TestItem::Statements(SqlText {
                        file: self.file,
                        base: self.base + d.as_span().start() + 2,
                        text: body.to_string(),
                    }));
                }
                _ => {}
            }
        }
        let name = name.ok_or_else(|| Diagnostic::error("test without a name", None))?;
        Ok(TestDef { name, items })
    }

    fn names(&self, pair: Pair<Rule>) -> Vec<Spanned<String>> {
        pair.into_inner()
            .filter(|p| p.as_rule() == Rule::ident)
            .map(|p| self.ident(&p))
            .collect()
    }

    fn row(&self, pair: Pair<Rule>) -> Result<Vec<SqlExpr>, Diagnostic> {
        pair.into_inner()
            .filter(|p| p.as_rule() == Rule::expr_text)
            .map(|p| self.sql_expr(&p))
            .collect()
    }

    fn query(&self, text: &str) -> Result<QueryDef, Diagnostic> {
        use sqlparser::ast::{Statement as S, TableObject};
        let source = SqlText {
            file: self.file,
            base: self.base,
            text: text.to_string(),
        };
        let dialect = GenericDialect {};
        let mut statements = crate::tvf::parse_statements(&dialect, text)
            .map_err(|e| sql_error(&source, &e.to_string()))?;
        let whole = source.snippet().whole();
        if statements.len() != 1 {
            return Err(Diagnostic::error("expected one statement", whole));
        }
        let statement = statements.remove(0);
        let snippet = source.snippet();
        let (kind, query) = match statement {
            S::Query(q) => (QueryKind::Select, q),
            S::CreateView(v) => {
                let name = object_name(&v.name, &snippet);
                let columns = v
                    .columns
                    .iter()
                    .map(|c| Spanned {
                        node: c.name.value.clone(),
                        span: snippet.span(c.name.span),
                    })
                    .collect();
                (QueryKind::CreateView { name, columns }, v.query)
            }
            S::Insert(insert) => {
                let TableObject::TableName(name) = &insert.table else {
                    return Err(Diagnostic::error("INSERT INTO needs a table name", whole));
                };
                if !insert.columns.is_empty() {
                    return Err(Diagnostic::error(
                        "INSERT INTO with a column list is not supported yet; select the sink's columns in order",
                        whole,
                    ));
                }
                let table = object_name(name, &snippet);
                match insert.source {
                    Some(q) => (QueryKind::Insert { table }, q),
                    None => return Err(Diagnostic::error("INSERT INTO needs a SELECT", whole)),
                }
            }
            other => {
                let first_word = leading_keywords(text).join(" ");
                return Err(Diagnostic::error(
                    format!("unsupported statement `{first_word}`: fsql pipelines use SET, CREATE TABLE, CREATE VIEW, CREATE MODEL, CREATE RULESET, INSERT INTO, SELECT, INCLUDE and TEST"),
                    whole,
                )
                .with_help(format!("sqlparser read it as: {}", truncate(&other.to_string(), 60))));
            }
        };
        if crate::depth::too_deep(&query) {
            return Err(Diagnostic::error(crate::depth::message(), whole)
                .with_help("split the expression into intermediate columns of a view"));
        }
        Ok(QueryDef {
            kind,
            query,
            source,
        })
    }
}

fn object_name(
    name: &sqlparser::ast::ObjectName,
    snippet: &crate::source::Snippet,
) -> Spanned<String> {
    use sqlparser::ast::Spanned as _;
    let node = name
        .0
        .iter()
        .filter_map(|p| p.as_ident().map(|i| i.value.clone()))
        .collect::<Vec<_>>()
        .join(".");
    Spanned {
        node,
        span: snippet.span(name.span()),
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(n).collect::<String>())
    }
}

/// The first inner pair of `rule` (the grammar guarantees one exists; the outer pair otherwise).
fn first(pair: Pair<Rule>, rule: Rule) -> Pair<Rule> {
    pair.clone()
        .into_inner()
        .find(|p| p.as_rule() == rule)
        .unwrap_or(pair)
}

/// The value of an identifier token: backticks removed and doubled backticks unescaped.
pub fn ident_value(raw: &str) -> String {
    match raw.strip_prefix('`').and_then(|r| r.strip_suffix('`')) {
        Some(inner) => inner.replace("``", "`"),
        None => raw.to_string(),
    }
}

/// The value of a string literal token: quotes removed and doubled quotes unescaped.
pub fn string_value(raw: &str) -> String {
    raw.strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .unwrap_or(raw)
        .replace("''", "'")
}

/// A sqlparser error ("... at Line: l, Column: c") as a diagnostic at that position.
fn sql_error(source: &SqlText, message: &str) -> Diagnostic {
    let snippet = source.snippet();
    let number_after = |key: &str| -> Option<u64> {
        let i = message.rfind(key)? + key.len();
        let digits: String = message[i..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    let span = match (number_after("Line: "), number_after("Column: ")) {
        (Some(l), Some(c)) => {
            let start = snippet.offset(l, c);
            let len = source.text[start - source.base..]
                .find(|ch: char| ch.is_whitespace() || ch == ',' || ch == ')')
                .unwrap_or(1)
                .max(1);
            Span::new(source.file, start, start + len)
        }
        _ => snippet.whole(),
    };
    let clean = message
        .trim_start_matches("sql parser error: ")
        .split(" at Line: ")
        .next()
        .unwrap_or(message)
        .to_string();
    Diagnostic::error(format!("syntax error: {clean}"), span)
}

fn rule_name(rule: Rule) -> &'static str {
    match rule {
        Rule::ident | Rule::plain_ident | Rule::quoted_ident => "an identifier",
        Rule::object_name => "a name",
        Rule::string => "a 'string'",
        Rule::integer | Rule::number => "a number",
        Rule::data_type | Rule::scalar_type | Rule::type_word => "a data type",
        Rule::expr_text | Rule::cond_text => "an expression",
        Rule::column_def => "a column definition",
        Rule::watermark_def => "WATERMARK FOR",
        Rule::primary_key => "PRIMARY KEY",
        Rule::with_options => "WITH (...)",
        Rule::option => "'key' = 'value'",
        Rule::rule_def => "RULE name PRIORITY n WHEN condition THEN 'decision'",
        Rule::test_input => "INPUT",
        Rule::test_expect | Rule::test_expect_error => "EXPECT",
        Rule::test_watermark => "WATERMARK",
        Rule::test_statements => "STATEMENTS",
        Rule::row => "a row (v1, v2, ...)",
        Rule::column_names => "a column list (c1, c2, ...)",
        Rule::column_list => "a column list (name TYPE, ...)",
        Rule::table_comment | Rule::column_comment => "COMMENT",
        Rule::partitioned_by => "PARTITIONED BY",
        Rule::not_null => "NOT NULL",
        Rule::kw_if_not_exists => "IF NOT EXISTS",
        Rule::EOI => "end of statement",
        _ => "more input",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Vec<Statement>, Vec<Diagnostic>) {
        let mut sources = SourceMap::default();
        let file = sources.add(SourceFile::new("t.fsql", text.to_string()));
        let mut diags = vec![];
        let stmts = parse_file(&mut sources, file, &mut diags);
        (stmts, diags)
    }

    #[test]
    fn splits_on_semicolons_outside_quotes_and_comments() {
        let text = "SET 'a' = 'x;y'; -- c;\nSELECT 1; /* ; */ SELECT 2";
        let parts: Vec<&str> = split_statements(text)
            .into_iter()
            .map(|(s, e)| &text[s..e])
            .collect();
        assert_eq!(parts, vec!["SET 'a' = 'x;y'", "SELECT 1", "SELECT 2"]);
    }

    #[test]
    fn create_table_with_watermark_computed_column_and_options() {
        let (stmts, diags) = parse(
            "CREATE TABLE payments (\n  id BIGINT, card_id STRING, amount DECIMAL(10, 2),\n  ts TIMESTAMP(3),\n  ts2 AS ts + INTERVAL '1' SECOND,\n  PRIMARY KEY (id) NOT ENFORCED,\n  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND\n) WITH ('connector' = 'filesystem', 'path' = 'p.jsonl');",
        );
        assert!(diags.is_empty(), "{diags:?}");
        let StatementKind::CreateTable(t) = &stmts[0].kind else {
            panic!()
        };
        assert_eq!(t.name.node, "payments");
        assert_eq!(t.columns.len(), 5);
        assert!(matches!(t.columns[4].kind, ColumnKind::Computed(_)));
        assert_eq!(t.watermark.as_ref().unwrap().column.node, "ts");
        assert_eq!(t.options.len(), 2);
        assert_eq!(t.primary_key.as_ref().unwrap()[0].node, "id");
    }

    #[test]
    fn syntax_errors_point_into_the_statement_and_parsing_goes_on() {
        let text = "CREATE TABLE t (a BIGINT,, b INT);\nSELECT FROM;\nSET 'k' = 'v';";
        let (stmts, diags) = parse(text);
        assert_eq!(diags.len(), 2, "{diags:?}");
        assert_eq!(stmts.len(), 1);
        let span = diags[0].span.unwrap();
        assert_eq!(&text[span.start..span.start + 1], ",");
    }

    #[test]
    fn ruleset_and_model_parse() {
        let (stmts, diags) = parse(
            "CREATE MODEL m INPUT (a DOUBLE, b DOUBLE) OUTPUT (score DOUBLE) WITH ('provider' = 'lightgbm', 'path' = 'm.txt');\n\
             CREATE RULESET d ON scored KEY id DEFAULT 'ALLOW' (\n  RULE high PRIORITY 10 WHEN score > 0.9 AND note <> 'THEN' AND CASE WHEN a THEN b ELSE c END THEN 'BLOCK',\n  RULE big PRIORITY 20 WHEN amount > 50000 THEN 'REVIEW')",
        );
        assert!(diags.is_empty(), "{diags:?}");
        let StatementKind::CreateRuleset(r) = &stmts[1].kind else {
            panic!()
        };
        assert_eq!(r.rules.len(), 2);
        assert_eq!(r.rules[0].decision.node, "BLOCK");
        assert!(r.rules[0].condition.source.text.contains("'THEN'"));
        assert!(
            r.rules[0].condition.source.text.ends_with("ELSE c END"),
            "{}",
            r.rules[0].condition.source.text
        );
        let StatementKind::CreateModel(m) = &stmts[0].kind else {
            panic!()
        };
        assert_eq!(m.inputs.len(), 2);
        assert_eq!(m.outputs[0].0.node, "score");
    }

    #[test]
    fn include_refuses_what_is_not_a_regular_file() {
        let (_, diags) = parse("INCLUDE '/dev/zero';\nINCLUDE 'missing.fsql';");
        assert_eq!(diags.len(), 2, "{diags:?}");
        assert!(
            diags
                .iter()
                .all(|d| d.message.contains("not a readable file")),
            "{diags:?}"
        );
    }

    #[test]
    fn include_of_the_sql_library_reads_the_embedded_file() {
        let mut sources = SourceMap::default();
        let file = sources.add(SourceFile::new(
            "p.fsql",
            "INCLUDE 'fsql:velocity/card.fsql';".to_string(),
        ));
        let mut diags = vec![];
        let stmts = parse_file(&mut sources, file, &mut diags);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(stmts.len(), 1);
        // Diagnostics in it name the library file.
        let library = sources.file(stmts[0].span.file);
        assert_eq!(
            library.path,
            std::path::Path::new("fsql:velocity/card.fsql")
        );
        assert!(library.text.contains("CREATE VIEW card_velocity AS"));
    }

    #[test]
    fn include_of_an_unknown_library_file_points_at_it_and_lists_the_library() {
        let text = "INCLUDE 'fsql:velocity/cards.fsql';\nINCLUDE 'fsql:nothing';";
        let (_, diags) = parse(text);
        assert_eq!(diags.len(), 2, "{diags:?}");
        let span = diags[0].span.unwrap();
        assert_eq!(&text[span.start..span.end], "'fsql:velocity/cards.fsql'");
        assert_eq!(
            diags[0].message,
            "unknown SQL library file `fsql:velocity/cards.fsql`"
        );
        let help = diags[0].help.as_deref().unwrap();
        assert!(
            help.starts_with("did you mean 'fsql:velocity/card.fsql'? The SQL library has "),
            "{help}"
        );
        let help = diags[1].help.as_deref().unwrap();
        assert!(help.starts_with("the SQL library has "), "{help}");
        for (name, _) in sql_library::FILES {
            assert!(help.contains(&format!("fsql:{name}")), "{help}");
        }
    }

    #[test]
    fn nested_unterminated_case_in_a_rule_is_an_error_not_a_hang() {
        let text = format!(
            "CREATE RULESET r ON t KEY k DEFAULT 'a' (RULE x PRIORITY 1 WHEN {} THEN 'b')",
            "CASE ".repeat(2000)
        );
        let start = std::time::Instant::now();
        let (_, diags) = parse(&text);
        assert!(!diags.is_empty());
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn expressions_nested_too_deep_are_refused_with_a_diagnostic() {
        let chain = |n: usize| vec!["a"; n].join(" + ");
        let (stmts, diags) = parse(&format!("SELECT {} FROM t", chain(200)));
        assert!(diags.is_empty() && stmts.len() == 1, "{diags:?}");
        let (_, diags) = parse(&format!("SELECT {} FROM t", chain(400)));
        assert!(
            diags[0].message.contains("nested more than 256 levels"),
            "{diags:?}"
        );
    }
}
