//! Table-valued functions and table arguments: Flink's window TVFs
//! `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL ...))` (and HOP, CUMULATE, SESSION), model
//! scoring `ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(f1, ...))`, and the versioned table of a
//! temporal join (`t FOR SYSTEM_TIME AS OF x`) become references to synthetic relations DataFusion
//! can plan.
//!
//! Two steps, both before DataFusion sees the query:
//! * [`parse_statements`]: `TABLE t [PARTITION BY k | (k1, k2)]` and `MODEL m` as function
//!   arguments are not expressions sqlparser reads; at token level they become
//!   `__fsql_table(t [, k1, k2])` and `__fsql_model(m)`. The scalar `PREDICT(m, x, ...)` becomes
//!   `__fsql_predict('m', x, ...)`, which lowering lifts into a model-scoring operator.
//! * [`extract`]: each window TVF in a FROM clause is replaced by a table named `__window<n>`
//!   (its alias kept) and described by a [`WindowTvf`]. The catalog gives that table the data's
//!   columns plus `window_start`, `window_end` and `window_time`; lowering turns a scan of it into
//!   a window assignment, or fuses it into the window aggregation above it. Each `ML_PREDICT`
//!   becomes `__predict<n>`, described by a [`PredictTvf`].

use fsql_plan::{DataType, Field, Schema, WindowKind};
use sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName,
    ObjectNamePart, Query, SetExpr, Spanned as _, TableAlias, TableFactor,
};
use sqlparser::dialect::Dialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Word};

use crate::ast::Spanned;
use crate::diagnostic::Diagnostic;
use crate::source::{Snippet, Span};

/// The name of the function `TABLE t` arguments become.
const TABLE_ARG: &str = "__fsql_table";
/// The name of the function `MODEL m` arguments become.
const MODEL_ARG: &str = "__fsql_model";
/// The function scalar `PREDICT(m, ...)` calls become (the model name its first argument).
pub const PREDICT_FUNCTION: &str = "__fsql_predict";
/// The prefix of the synthetic relations `ML_PREDICT` calls become.
pub const PREDICT_RELATION: &str = "__predict";
/// The prefix of the synthetic relations window TVFs become.
pub const WINDOW_RELATION: &str = "__window";
/// The table function `name FOR SYSTEM_TIME AS OF t` becomes.
const VERSIONED_ARG: &str = "__fsql_versioned";
/// The prefix of the synthetic relations temporal joins' versioned tables become.
pub const VERSIONED_RELATION: &str = "__versioned";

/// Parses SQL statements, reading `TABLE t [PARTITION BY ...]` function arguments (Flink's table
/// arguments of window TVFs).
pub fn parse_statements(
    dialect: &dyn Dialect,
    text: &str,
) -> Result<Vec<sqlparser::ast::Statement>, ParserError> {
    let tokens = Tokenizer::new(dialect, text)
        .tokenize_with_location()
        .map_err(|e| ParserError::TokenizerError(e.to_string()))?;
    let tokens = crate::match_recognize::clauses(tokens);
    Parser::new(dialect)
        .with_tokens_with_locations(table_arguments(tokens))
        .parse_statements()
}

/// Rewrites `f(TABLE t PARTITION BY (a, b), ...)` to `f(__fsql_table(t, a, b), ...)`.
fn table_arguments(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        let is_table = matches!(&t.token, Token::Word(w) if w.keyword == Keyword::TABLE && w.quote_style.is_none());
        if is_table && in_argument_position(&out) {
            // The table name: words separated by periods.
            let mut j = next_significant(&tokens, i + 1);
            let mut name = Vec::new();
            while let Some(tok) = tokens.get(j) {
                match &tok.token {
                    Token::Word(_)
                        if name
                            .last()
                            .is_none_or(|t: &TokenWithSpan| t.token == Token::Period) =>
                    {
                        name.push(tok.clone());
                    }
                    Token::Period
                        if matches!(name.last().map(|t| &t.token), Some(Token::Word(_))) =>
                    {
                        name.push(tok.clone());
                    }
                    _ => break,
                }
                j = next_significant(&tokens, j + 1);
            }
            if !matches!(name.last().map(|t| &t.token), Some(Token::Word(_))) {
                out.push(t.clone());
                i += 1;
                continue;
            }
            let span = t.span;
            let word = |value: &str| {
                TokenWithSpan::new(
                    Token::Word(Word {
                        value: value.into(),
                        quote_style: None,
                        keyword: Keyword::NoKeyword,
                    }),
                    span,
                )
            };
            out.push(word(TABLE_ARG));
            out.push(TokenWithSpan::new(Token::LParen, span));
            out.extend(name);
            // PARTITION BY k | PARTITION BY (k1, k2)
            let is_kw = |j: usize, k: Keyword| matches!(tokens.get(j).map(|t| &t.token), Some(Token::Word(w)) if w.keyword == k);
            if is_kw(j, Keyword::PARTITION) && is_kw(next_significant(&tokens, j + 1), Keyword::BY)
            {
                j = next_significant(&tokens, next_significant(&tokens, j + 1) + 1);
                let parenthesized = matches!(tokens.get(j).map(|t| &t.token), Some(Token::LParen));
                if parenthesized {
                    j = next_significant(&tokens, j + 1);
                }
                while let Some(tok) = tokens.get(j) {
                    if !matches!(tok.token, Token::Word(_)) {
                        break;
                    }
                    out.push(TokenWithSpan::new(Token::Comma, tok.span));
                    out.push(tok.clone());
                    j = next_significant(&tokens, j + 1);
                    if parenthesized
                        && matches!(tokens.get(j).map(|t| &t.token), Some(Token::Comma))
                    {
                        j = next_significant(&tokens, j + 1);
                    } else {
                        break;
                    }
                }
                if parenthesized && matches!(tokens.get(j).map(|t| &t.token), Some(Token::RParen)) {
                    j += 1;
                }
            }
            out.push(TokenWithSpan::new(Token::RParen, span));
            i = j;
            continue;
        }
        let is_model = matches!(&t.token, Token::Word(w) if w.value.eq_ignore_ascii_case("MODEL") && w.quote_style.is_none());
        let name_at = next_significant(&tokens, i + 1);
        if is_model
            && in_argument_position(&out)
            && matches!(tokens.get(name_at).map(|t| &t.token), Some(Token::Word(_)))
        {
            out.push(TokenWithSpan::new(
                Token::Word(Word {
                    value: MODEL_ARG.into(),
                    quote_style: None,
                    keyword: Keyword::NoKeyword,
                }),
                t.span,
            ));
            out.push(TokenWithSpan::new(Token::LParen, t.span));
            out.push(tokens[name_at].clone());
            out.push(TokenWithSpan::new(Token::RParen, t.span));
            i = name_at + 1;
            continue;
        }
        if let Some(next) = scalar_predict(&tokens, i, &mut out) {
            i = next;
            continue;
        }
        if let Some(next) = versioned_scan(&tokens, i, &mut out) {
            i = next;
            continue;
        }
        out.push(t.clone());
        i += 1;
    }
    out
}

/// `PREDICT(m, ...)`, the scalar model call, becomes `__fsql_predict('m', ...)`: the model name
/// as a string DataFusion plans as a literal; returns the position after the model name.
fn scalar_predict(
    tokens: &[TokenWithSpan],
    i: usize,
    out: &mut Vec<TokenWithSpan>,
) -> Option<usize> {
    let t = &tokens[i];
    if !matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("PREDICT"))
    {
        return None;
    }
    let open = next_significant(tokens, i + 1);
    let name_at = next_significant(tokens, open + 1);
    let after = next_significant(tokens, name_at + 1);
    let (Some(Token::LParen), Some(Token::Word(model)), Some(Token::Comma | Token::RParen)) = (
        tokens.get(open).map(|t| &t.token),
        tokens.get(name_at).map(|t| &t.token),
        tokens.get(after).map(|t| &t.token),
    ) else {
        return None;
    };
    out.push(TokenWithSpan::new(
        Token::Word(Word {
            value: PREDICT_FUNCTION.into(),
            quote_style: None,
            keyword: Keyword::NoKeyword,
        }),
        t.span,
    ));
    out.push(tokens[open].clone());
    out.push(TokenWithSpan::new(
        Token::SingleQuotedString(model.value.clone()),
        tokens[name_at].span,
    ));
    Some(name_at + 1)
}

/// `name FOR SYSTEM_TIME AS OF a.b` (a temporal join's versioned table), with `name` already in
/// `out`, becomes `__fsql_versioned(name, a.b)`; returns the position after it.
fn versioned_scan(
    tokens: &[TokenWithSpan],
    i: usize,
    out: &mut Vec<TokenWithSpan>,
) -> Option<usize> {
    let word = |j: usize, v: &str| matches!(tokens.get(j).map(|t| &t.token), Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(v));
    if !word(i, "FOR") {
        return None;
    }
    let mut j = i;
    for v in ["SYSTEM_TIME", "AS", "OF"] {
        j = next_significant(tokens, j + 1);
        if !word(j, v) {
            return None;
        }
    }
    // The time column: words separated by periods.
    let mut time = Vec::new();
    j = next_significant(tokens, j + 1);
    while let Some(tok) = tokens.get(j) {
        let want_word = time
            .last()
            .is_none_or(|t: &TokenWithSpan| t.token == Token::Period);
        match &tok.token {
            Token::Word(_) if want_word => time.push(tok.clone()),
            Token::Period if !want_word => time.push(tok.clone()),
            _ => break,
        }
        j += 1;
    }
    if !matches!(time.last().map(|t| &t.token), Some(Token::Word(_))) {
        return None;
    }
    // The table name at the end of `out`.
    while matches!(out.last().map(|t| &t.token), Some(Token::Whitespace(_))) {
        out.pop();
    }
    let mut name = Vec::new();
    while let Some(t) = out.last() {
        let want_word = name
            .last()
            .is_none_or(|t: &TokenWithSpan| t.token == Token::Period);
        match &t.token {
            Token::Word(_) if want_word => {}
            Token::Period if !want_word => {}
            _ => break,
        }
        name.push(out.pop()?);
    }
    name.reverse();
    if !matches!(name.first().map(|t| &t.token), Some(Token::Word(_))) {
        out.extend(name);
        return None;
    }
    let span = tokens[i].span;
    out.push(TokenWithSpan::new(
        Token::Whitespace(sqlparser::tokenizer::Whitespace::Space),
        span,
    ));
    out.push(TokenWithSpan::new(
        Token::Word(Word {
            value: VERSIONED_ARG.into(),
            quote_style: None,
            keyword: Keyword::NoKeyword,
        }),
        span,
    ));
    out.push(TokenWithSpan::new(Token::LParen, span));
    out.extend(name);
    out.push(TokenWithSpan::new(Token::Comma, span));
    out.extend(time);
    out.push(TokenWithSpan::new(Token::RParen, span));
    Some(j)
}

/// After `name(`, `,` or `=>`: where a function argument starts.
fn in_argument_position(out: &[TokenWithSpan]) -> bool {
    let mut sig = out
        .iter()
        .rev()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)));
    match sig.next().map(|t| &t.token) {
        Some(Token::Comma | Token::RArrow) => true,
        // A function's parenthesis (not `FROM (TABLE t)`): a name that is not a keyword, or a
        // window TVF's.
        Some(Token::LParen) => matches!(
            sig.next().map(|t| &t.token),
            Some(Token::Word(w)) if w.keyword == Keyword::NoKeyword
                || ["TUMBLE", "HOP", "CUMULATE", "SESSION", "ML_PREDICT"]
                    .contains(&w.value.to_ascii_uppercase().as_str())
        ),
        _ => false,
    }
}

/// The position of the first token at or after `j` that is not whitespace (`tokens.len()` if none).
pub(crate) fn next_significant(tokens: &[TokenWithSpan], mut j: usize) -> usize {
    while matches!(tokens.get(j).map(|t| &t.token), Some(Token::Whitespace(_))) {
        j += 1;
    }
    j
}

/// One window TVF of a query.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowTvf {
    pub kind: WindowKind,
    /// The table or view the TVF reads (`DATA`).
    pub data: String,
    /// The event-time column (`TIMECOL`).
    pub time_column: String,
    /// SESSION's `PARTITION BY` columns.
    pub partition: Vec<String>,
}

/// The columns a window TVF appends to its data's.
pub const WINDOW_COLUMNS: [&str; 3] = ["window_start", "window_end", "window_time"];

/// The schema of a window TVF over `data` with event time at `time`: the data's columns, then
/// `window_start`, `window_end` (TIMESTAMP(3)) and `window_time` (the time column's type at
/// precision 3, as Flink types it).
pub fn window_schema(data: &Schema, time: usize) -> Schema {
    let mut fields = data.fields.clone();
    let ts = DataType::Timestamp { precision: 3 };
    let time_type = match data.fields.get(time).map(|f| &f.data_type) {
        Some(DataType::TimestampLtz { .. }) => DataType::TimestampLtz { precision: 3 },
        _ => ts.clone(),
    };
    fields.push(Field::new(WINDOW_COLUMNS[0], ts.clone(), false));
    fields.push(Field::new(WINDOW_COLUMNS[1], ts, false));
    fields.push(Field::new(WINDOW_COLUMNS[2], time_type, false));
    Schema::new(fields)
}

/// What [`extract`] needs from the catalog.
pub trait TvfCatalog {
    /// The column names of relation `name` and the positions of its event-time attributes.
    fn relation(&self, name: &str) -> Option<(Vec<String>, Vec<usize>)>;
    /// The milliseconds of a constant `INTERVAL` day-to-second expression.
    fn interval_ms(&mut self, e: &SqlExpr) -> Result<i64, Diagnostic>;
}

/// Replaces every window TVF in `query` by a `__window<n>` relation (numbered from `*next`).
pub fn extract(
    query: &mut Query,
    snippet: &Snippet<'_>,
    catalog: &mut dyn TvfCatalog,
    next: &mut usize,
) -> Result<Extracted, Diagnostic> {
    let mut v = Extract {
        snippet,
        catalog,
        next,
        found: Extracted::default(),
    };
    v.query(query)?;
    Ok(v.found)
}

/// The window TVFs, model scorings and versioned tables of a query, by their synthetic relation
/// names.
#[derive(Debug, Default)]
pub struct Extracted {
    pub windows: Vec<(String, WindowTvf)>,
    pub versioned: Vec<(String, VersionedScan)>,
    pub predicts: Vec<(String, PredictTvf)>,
}

/// `ML_PREDICT(TABLE data, MODEL model, DESCRIPTOR(features...))`.
#[derive(Clone, Debug, PartialEq)]
pub struct PredictTvf {
    pub data: String,
    pub model: Spanned<String>,
    /// The data's columns fed to the model, in the order of its `INPUT` clause.
    pub features: Vec<Spanned<String>>,
    /// The whole call (for errors about it).
    pub span: Span,
}

/// `table FOR SYSTEM_TIME AS OF time`: the versioned table of an event-time temporal join.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionedScan {
    pub table: String,
    /// The left input's time column (its name; the qualifier is dropped).
    pub as_of: String,
}

struct Extract<'a, 's> {
    snippet: &'a Snippet<'s>,
    catalog: &'a mut dyn TvfCatalog,
    next: &'a mut usize,
    found: Extracted,
}

impl Extract<'_, '_> {
    /// Walks the FROM clauses of `q` (and of its CTEs, set operations and derived tables); not
    /// its expressions, which can nest deeply and hold no window TVF.
    fn query(&mut self, q: &mut Query) -> Result<(), Diagnostic> {
        if let Some(with) = &mut q.with {
            for cte in &mut with.cte_tables {
                self.query(&mut cte.query)?;
            }
        }
        self.set_expr(&mut q.body)
    }

    fn set_expr(&mut self, body: &mut SetExpr) -> Result<(), Diagnostic> {
        match body {
            SetExpr::Select(select) => {
                for t in &mut select.from {
                    self.factor(&mut t.relation)?;
                    for j in &mut t.joins {
                        self.factor(&mut j.relation)?;
                    }
                }
                Ok(())
            }
            SetExpr::Query(q) => self.query(q),
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left)?;
                self.set_expr(right)
            }
            _ => Ok(()),
        }
    }

    fn factor(&mut self, factor: &mut TableFactor) -> Result<(), Diagnostic> {
        match factor {
            TableFactor::Derived { subquery, .. } => return self.query(subquery),
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => {
                self.factor(&mut table_with_joins.relation)?;
                for j in &mut table_with_joins.joins {
                    self.factor(&mut j.relation)?;
                }
                return Ok(());
            }
            _ => {}
        }
        if let TableFactor::Table {
            name,
            args: Some(args),
            alias,
            ..
        } = factor
            && name.to_string() == VERSIONED_ARG
        {
            let parts: Vec<String> = args
                .args
                .iter()
                .filter_map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => ident(e),
                    _ => None,
                })
                .collect();
            let [table, time] = parts.as_slice() else {
                return Err(Diagnostic::error(
                    "FOR SYSTEM_TIME AS OF takes the time column of the other side of the join",
                    self.snippet.span(name.span()),
                ));
            };
            let scan = VersionedScan {
                table: table.clone(),
                as_of: time.rsplit('.').next().unwrap_or(time).to_string(),
            };
            let synthetic = format!("{VERSIONED_RELATION}{}", *self.next);
            *self.next += 1;
            self.found.versioned.push((synthetic.clone(), scan));
            let alias = alias.take().or_else(|| {
                // The table keeps its own name as the qualifier, as in Flink.
                Some(sqlparser::ast::TableAlias {
                    explicit: false,
                    name: Ident::new(table.rsplit('.').next().unwrap_or(table)),
                    columns: vec![],
                    at: None,
                })
            });
            *factor = synthetic_table(synthetic, alias);
            return Ok(());
        }
        if let TableFactor::Table {
            name,
            args: Some(args),
            alias,
            ..
        } = factor
            && name.to_string().eq_ignore_ascii_case("ML_PREDICT")
        {
            let span = self.snippet.span(name.span());
            let synthetic = self.predict(&args.args, span)?;
            *factor = synthetic_table(synthetic, alias.take());
            return Ok(());
        }
        let TableFactor::TableFunction { expr, alias } = factor else {
            return Ok(());
        };
        let SqlExpr::Function(f) = expr else {
            return Ok(());
        };
        let function = f.name.to_string().to_ascii_uppercase();
        if function == "ML_PREDICT" {
            let span = self.snippet.span(f.span());
            let list = match &f.args {
                FunctionArguments::List(l) => &l.args[..],
                _ => &[],
            };
            let synthetic = self.predict(list, span)?;
            *factor = synthetic_table(synthetic, alias.take());
            return Ok(());
        }
        if !["TUMBLE", "HOP", "CUMULATE", "SESSION"].contains(&function.as_str()) {
            return Ok(());
        }
        let span = self.snippet.span(f.span());
        let tvf = self.window(&function, &f.args, span)?;
        let name = format!("{WINDOW_RELATION}{}", *self.next);
        *self.next += 1;
        self.found.windows.push((name.clone(), tvf));
        *factor = synthetic_table(name, alias.take());
        Ok(())
    }

    /// `ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(a, b, ...))`, Flink's argument order: checked,
    /// recorded, and the name of the synthetic relation that stands for it returned.
    fn predict(&mut self, list: &[FunctionArg], span: Span) -> Result<String, Diagnostic> {
        const USAGE: &str = "ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(feature1, feature2, ...))";
        let args: Vec<&SqlExpr> = list
            .iter()
            .filter_map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            })
            .collect();
        if args.len() != list.len() || !(3..=4).contains(&args.len()) {
            return Err(Diagnostic::error(
                "ML_PREDICT takes a table, a model and a descriptor of feature columns",
                span,
            )
            .with_help(USAGE));
        }
        let function_args = |e: &SqlExpr, name: &str| -> Option<Vec<Spanned<String>>> {
            let SqlExpr::Function(f) = e else {
                return None;
            };
            if !f.name.to_string().eq_ignore_ascii_case(name) {
                return None;
            }
            match &f.args {
                FunctionArguments::List(l) => l
                    .args
                    .iter()
                    .map(|a| match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => {
                            ident(e).map(|node| Spanned {
                                node,
                                span: self.snippet.span(e.span()),
                            })
                        }
                        _ => None,
                    })
                    .collect(),
                _ => None,
            }
        };
        let data = match function_args(args[0], TABLE_ARG).as_deref() {
            Some([t]) => t.node.clone(),
            _ => {
                return Err(Diagnostic::error(
                    "the first argument of ML_PREDICT is a table: `TABLE name`",
                    self.snippet.span(args[0].span()),
                )
                .with_help(USAGE));
            }
        };
        let model = match function_args(args[1], MODEL_ARG) {
            Some(mut m) if m.len() == 1 => m.remove(0),
            _ => {
                return Err(Diagnostic::error(
                    "the second argument of ML_PREDICT is a model: `MODEL name`",
                    self.snippet.span(args[1].span()),
                )
                .with_help(USAGE));
            }
        };
        let features = match function_args(args[2], "DESCRIPTOR") {
            Some(f) if !f.is_empty() => f,
            _ => {
                return Err(Diagnostic::error(
                    "the third argument of ML_PREDICT lists the feature columns: `DESCRIPTOR(a, b, ...)`",
                    self.snippet.span(args[2].span()),
                )
                .with_help(USAGE));
            }
        };
        if let Some(config) = args.get(3) {
            return Err(Diagnostic::error(
                "ML_PREDICT's runtime config argument is not supported: a LightGBM model is scored in-process, synchronously",
                self.snippet.span(config.span()),
            ));
        }
        let synthetic = format!("{PREDICT_RELATION}{}", *self.next);
        *self.next += 1;
        let call = PredictTvf {
            data,
            model,
            features,
            span,
        };
        self.found.predicts.push((synthetic.clone(), call));
        Ok(synthetic)
    }

    fn window(
        &mut self,
        function: &str,
        args: &FunctionArguments,
        span: Span,
    ) -> Result<WindowTvf, Diagnostic> {
        let params: &[&str] = match function {
            "TUMBLE" => &["DATA", "TIMECOL", "SIZE", "OFFSET"],
            "HOP" => &["DATA", "TIMECOL", "SLIDE", "SIZE", "OFFSET"],
            "CUMULATE" => &["DATA", "TIMECOL", "STEP", "SIZE", "OFFSET"],
            _ => &["DATA", "TIMECOL", "GAP"],
        };
        let usage = match function {
            "TUMBLE" => "TUMBLE(TABLE t, DESCRIPTOR(rowtime), INTERVAL '10' MINUTE [, offset])",
            "HOP" => "HOP(TABLE t, DESCRIPTOR(rowtime), slide, size [, offset])",
            "CUMULATE" => "CUMULATE(TABLE t, DESCRIPTOR(rowtime), step, max size [, offset])",
            _ => "SESSION(TABLE t PARTITION BY key, DESCRIPTOR(rowtime), gap)",
        };
        let list = match args {
            FunctionArguments::List(l) => &l.args[..],
            _ => &[],
        };
        let mut values: Vec<Option<&SqlExpr>> = vec![None; params.len()];
        for (i, arg) in list.iter().enumerate() {
            let (slot, e) = match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => (i, e),
                FunctionArg::Named {
                    name,
                    arg: FunctionArgExpr::Expr(e),
                    ..
                } => {
                    let n = name.value.to_ascii_uppercase();
                    let slot = params.iter().position(|p| *p == n).ok_or_else(|| {
                        Diagnostic::error(
                            format!("{function} has no parameter `{}`", name.value),
                            self.snippet.span(name.span),
                        )
                        .with_help(format!("its parameters are {}", params.join(", ")))
                    })?;
                    (slot, e)
                }
                other => {
                    return Err(Diagnostic::error(
                        format!("unexpected argument `{other}` of {function}"),
                        span,
                    )
                    .with_help(usage));
                }
            };
            let Some(v) = values.get_mut(slot) else {
                return Err(Diagnostic::error(
                    format!("{function} takes at most {} arguments", params.len()),
                    self.snippet.span(e.span()),
                )
                .with_help(usage));
            };
            *v = Some(e);
        }
        let required = if params.last() == Some(&"OFFSET") {
            params.len() - 1
        } else {
            params.len()
        };
        if let Some(missing) = values[..required].iter().position(Option::is_none) {
            return Err(Diagnostic::error(
                format!("{function} needs its {} argument", params[missing]),
                span,
            )
            .with_help(usage));
        }
        let arg = |i: usize| values.get(i).copied().flatten();
        // DATA: TABLE t [PARTITION BY ...]
        let (data, partition) = match arg(0) {
            Some(SqlExpr::Function(f)) if f.name.to_string() == TABLE_ARG => {
                let names: Vec<String> = match &f.args {
                    FunctionArguments::List(l) => l
                        .args
                        .iter()
                        .map(|a| match a {
                            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => ident(e),
                            _ => None,
                        })
                        .collect::<Option<Vec<_>>>()
                        .unwrap_or_default(),
                    _ => vec![],
                };
                match names.split_first() {
                    Some((t, keys)) => (t.clone(), keys.to_vec()),
                    None => {
                        return Err(Diagnostic::error(
                            format!("{function}: the table argument is not a table name"),
                            span,
                        ));
                    }
                }
            }
            Some(e) => {
                return Err(Diagnostic::error(
                    format!("the first argument of {function} is a table: `TABLE name`"),
                    self.snippet.span(e.span()),
                )
                .with_help(usage));
            }
            None => {
                return Err(Diagnostic::error(
                    format!("{function} needs its DATA argument"),
                    span,
                ));
            }
        };
        if !partition.is_empty() && function != "SESSION" {
            return Err(Diagnostic::error(
                format!("{function} does not take PARTITION BY (only SESSION does)"),
                span,
            ));
        }
        let Some((columns, times)) = self.catalog.relation(&data) else {
            return Err(Diagnostic::error(
                format!("table or view `{data}` not found"),
                arg(0).map(|e| self.snippet.span(e.span())),
            ));
        };
        // TIMECOL: DESCRIPTOR(c)
        let time_expr = arg(1);
        let time_column = match time_expr {
            Some(SqlExpr::Function(f)) if f.name.to_string().eq_ignore_ascii_case("DESCRIPTOR") => {
                match &f.args {
                    FunctionArguments::List(l) => match l.args.as_slice() {
                        [FunctionArg::Unnamed(FunctionArgExpr::Expr(e))] => ident(e),
                        _ => None,
                    },
                    _ => None,
                }
            }
            _ => None,
        };
        let time_span = time_expr.map(|e| self.snippet.span(e.span()));
        let Some(time_column) = time_column else {
            return Err(Diagnostic::error(
                format!("the time column of {function} is given as DESCRIPTOR(column)"),
                time_span,
            )
            .with_help(usage));
        };
        let Some(pos) = columns.iter().position(|c| *c == time_column) else {
            return Err(Diagnostic::error(
                format!("column `{time_column}` not found in `{data}`"),
                time_span,
            ));
        };
        if !times.contains(&pos) {
            let names: Vec<String> = times
                .iter()
                .filter_map(|&t| columns.get(t))
                .map(|c| format!("`{c}`"))
                .collect();
            let help = match names.as_slice() {
                [] => format!(
                    "`{data}` has no event-time attribute: declare WATERMARK FOR {time_column} AS ... on its source"
                ),
                [one] => format!("the event-time attribute of `{data}` is {one}"),
                many => format!(
                    "the event-time attributes of `{data}` are {}",
                    many.join(", ")
                ),
            };
            return Err(Diagnostic::error(
                format!("window TVFs need an event-time attribute, and `{time_column}` is not one"),
                time_span,
            )
            .with_help(help));
        }
        for k in &partition {
            if !columns.contains(k) {
                return Err(Diagnostic::error(
                    format!("PARTITION BY column `{k}` not found in `{data}`"),
                    span,
                ));
            }
        }
        // A duration argument: positive, or for an offset (which may be negative) smaller in
        // magnitude than the size, as Flink requires.
        let mut interval = |i: usize, size: Option<i64>| -> Result<i64, Diagnostic> {
            let Some(e) = arg(i) else { return Ok(0) };
            let ms = self.catalog.interval_ms(e)?;
            let name = params[i].to_ascii_lowercase();
            let problem = match size {
                None if ms <= 0 => Some(format!(
                    "the {name} of {function} must be a positive interval"
                )),
                Some(size) if ms.unsigned_abs() >= size.unsigned_abs() => Some(format!(
                    "the offset of {function} must be smaller in magnitude than its size ({size} ms), got {ms} ms"
                )),
                _ => None,
            };
            match problem {
                Some(m) => Err(Diagnostic::error(m, self.snippet.span(e.span()))),
                None => Ok(ms),
            }
        };
        let kind = match function {
            "TUMBLE" => {
                let size_ms = interval(2, None)?;
                WindowKind::Tumble {
                    size_ms,
                    offset_ms: interval(3, Some(size_ms))?,
                }
            }
            "HOP" => {
                let slide_ms = interval(2, None)?;
                let size_ms = interval(3, None)?;
                WindowKind::Hop {
                    size_ms,
                    slide_ms,
                    offset_ms: interval(4, Some(size_ms))?,
                }
            }
            "CUMULATE" => {
                let step_ms = interval(2, None)?;
                let size_ms = interval(3, None)?;
                if size_ms % step_ms != 0 {
                    return Err(Diagnostic::error(
                        "the max size of CUMULATE must be a whole multiple of its step",
                        span,
                    ));
                }
                WindowKind::Cumulate {
                    step_ms,
                    size_ms,
                    offset_ms: interval(4, Some(size_ms))?,
                }
            }
            _ => WindowKind::Session {
                gap_ms: interval(2, None)?,
            },
        };
        Ok(WindowTvf {
            kind,
            data,
            time_column,
            partition,
        })
    }
}

fn ident(e: &SqlExpr) -> Option<String> {
    match e {
        SqlExpr::Identifier(i) => Some(i.value.clone()),
        SqlExpr::CompoundIdentifier(parts) => Some(
            parts
                .iter()
                .map(|p| p.value.as_str())
                .collect::<Vec<_>>()
                .join("."),
        ),
        _ => None,
    }
}

/// A plain table reference to the synthetic relation `name` (what a TVF or a versioned table
/// read is replaced by).
pub(crate) fn synthetic_table(name: String, alias: Option<TableAlias>) -> TableFactor {
    TableFactor::Table {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]),
        alias,
        args: None,
        with_hints: vec![],
        version: None,
        with_ordinality: false,
        partitions: vec![],
        json_path: None,
        sample: None,
        index_hints: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::GenericDialect;

    fn rewritten(sql: &str) -> String {
        parse_statements(&GenericDialect {}, sql)
            .map_or_else(|e| e.to_string(), |s| s[0].to_string())
    }

    #[test]
    fn table_arguments_become_calls() {
        assert_eq!(
            rewritten(
                "SELECT * FROM TABLE(TUMBLE(TABLE Bid, DESCRIPTOR(ts), INTERVAL '1' MINUTE))"
            ),
            "SELECT * FROM TABLE(TUMBLE(__fsql_table(Bid), DESCRIPTOR(ts), INTERVAL '1' MINUTE))"
        );
        assert_eq!(
            rewritten(
                "SELECT * FROM TABLE(SESSION(TABLE Bid PARTITION BY (a, b), DESCRIPTOR(ts), INTERVAL '1' MINUTE))"
            ),
            "SELECT * FROM TABLE(SESSION(__fsql_table(Bid, a, b), DESCRIPTOR(ts), INTERVAL '1' MINUTE))"
        );
        assert_eq!(
            rewritten(
                "SELECT * FROM TABLE(SESSION(DATA => TABLE Bid PARTITION BY a, TIMECOL => DESCRIPTOR(ts), GAP => INTERVAL '1' MINUTE))"
            ),
            "SELECT * FROM TABLE(SESSION(DATA => __fsql_table(Bid, a), TIMECOL => DESCRIPTOR(ts), GAP => INTERVAL '1' MINUTE))"
        );
    }

    #[test]
    fn other_table_keywords_are_untouched() {
        for sql in [
            "SELECT * FROM (TABLE t)",
            "SELECT a FROM t WHERE b IN (1, 2)",
        ] {
            let plain = Parser::parse_sql(&GenericDialect {}, sql)
                .map_or_else(|e| e.to_string(), |s| s[0].to_string());
            assert_eq!(rewritten(sql), plain);
        }
    }
}
