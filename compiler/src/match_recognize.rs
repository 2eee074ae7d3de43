//! `MATCH_RECOGNIZE`: from sqlparser's clause to a [`MatchRecognizeSpec`].
//!
//! Like window TVFs, `t MATCH_RECOGNIZE (...)` in a FROM clause becomes a synthetic relation
//! (`__match<n>`, its alias kept) whose columns are the `PARTITION BY` columns and the measures, so
//! DataFusion plans the rest of the query unchanged; lowering turns a scan of it into the
//! operator.
//!
//! Conditions and measures refer to pattern variables and navigation (`A.amount`, `PREV(amount)`,
//! `LAST(B.amount, 1)`, `SUM(A.amount)`, `MATCH_ROWTIME()`...). Each such reference becomes a column
//! `__nav<k>` of an *evaluation row* (the input columns, then the navigations), so the rewritten
//! expression is planned and type-checked by the ordinary expression path.
//!
//! sqlparser reads the clause except Flink's `WITHIN INTERVAL ...`, which [`within_to_define`] moves
//! into `DEFINE` as the pseudo-variable `__fsql_within` before parsing; a reluctant quantifier
//! (`B+?`) arrives as `?` applied directly to a quantified variable.

use std::ops::ControlFlow;

use fsql_plan::{
    AfterMatch, MatchAggregate, MatchRecognizeSpec, Navigation, Pattern, RowsPerMatch, Schema,
};
use sqlparser::ast::{
    AfterMatchSkip, Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident,
    MatchRecognizePattern, MatchRecognizeSymbol, Measure, OrderByExpr, Query, RepetitionQuantifier,
    SetExpr, SymbolDefinition, TableAlias, TableFactor, VisitMut, VisitorMut,
};
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan, Word};

use crate::tvf::next_significant;

/// The prefix of the synthetic relations `MATCH_RECOGNIZE` clauses become.
pub const MATCH_RELATION: &str = "__match";
/// The pseudo-variable `WITHIN` travels as through sqlparser.
const WITHIN_SYMBOL: &str = "__fsql_within";
/// The pseudo-variable `EMIT TIMEOUTS` travels as through sqlparser.
const TIMEOUTS_SYMBOL: &str = "__fsql_timeouts";
/// The prefix of the pseudo-variables `SUBSET` definitions travel as through sqlparser.
const SUBSET_PREFIX: &str = "__fsql_subset_";
/// The marker an exclusion `{- p -}` travels as through sqlparser: `(__fsql_exclude (p))`.
const EXCLUDE_SYMBOL: &str = "__fsql_exclude";
/// The prefix `FINAL f(...)` travels as through sqlparser (`__fsql_final_f(...)`).
const FINAL_PREFIX: &str = "__fsql_final_";

/// One `MATCH_RECOGNIZE` clause as written.
#[derive(Clone, Debug)]
pub struct MatchClause {
    /// The table or view it reads.
    pub input: String,
    pub partition_by: Vec<SqlExpr>,
    pub order_by: Vec<OrderByExpr>,
    pub measures: Vec<Measure>,
    pub rows_per_match: RowsPerMatch,
    pub after_match_skip: Option<AfterMatchSkip>,
    pub pattern: MatchRecognizePattern,
    /// `SUBSET name = (v, ...)`, as written.
    pub subsets: Vec<(String, SqlExpr)>,
    pub defines: Vec<SymbolDefinition>,
    pub within: Option<SqlExpr>,
    /// `WITHIN ... EMIT TIMEOUTS`
    pub emit_timeouts: bool,
}

/// Rewrites what sqlparser cannot read inside each `MATCH_RECOGNIZE (...)` into forms it can:
///
/// * Flink's `WITHIN <interval> [EMIT TIMEOUTS]` and the standard's `SUBSET u = (a, b), ...`
///   (between `PATTERN (...)` and `DEFINE`, in either order) move to the front of the `DEFINE`
///   list as pseudo-variables: `__fsql_within AS <interval>, __fsql_timeouts AS TRUE,
///   __fsql_subset_u AS (a, b),`;
/// * `RUNNING f(...)` becomes `f(...)` (the default) and `FINAL f(...)` becomes
///   `__fsql_final_f(...)`.
pub fn clauses(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let is_mr = matches!(&tokens[i].token, Token::Word(w)
            if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("MATCH_RECOGNIZE"));
        let open = next_significant(&tokens, i + 1);
        let close = (is_mr && matches!(tokens.get(open).map(|t| &t.token), Some(Token::LParen)))
            .then(|| matching_paren(&tokens, open))
            .flatten();
        match close {
            Some(close) => {
                out.extend(tokens[i..=open].iter().cloned());
                out.extend(clause_body(&tokens[open + 1..close]));
                out.push(tokens[close].clone());
                i = close + 1;
            }
            None => {
                out.push(tokens[i].clone());
                i += 1;
            }
        }
    }
    out
}

/// The `)` closing the `(` at `open`.
fn matching_paren(tokens: &[TokenWithSpan], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (k, t) in tokens.iter().enumerate().skip(open) {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(k);
                }
            }
            _ => {}
        }
    }
    None
}

fn is_word(t: &TokenWithSpan, text: &str) -> bool {
    matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(text))
}

fn word(value: String, span: sqlparser::tokenizer::Span) -> TokenWithSpan {
    TokenWithSpan::new(
        Token::Word(Word {
            value,
            quote_style: None,
            keyword: Keyword::NoKeyword,
        }),
        span,
    )
}

/// Whether token `k` is outside any parentheses opened in `toks`.
fn top_level(toks: &[TokenWithSpan], k: usize) -> bool {
    toks[..k]
        .iter()
        .map(|t| match t.token {
            Token::LParen => 1i64,
            Token::RParen => -1,
            _ => 0,
        })
        .sum::<i64>()
        == 0
}

/// The tokens between `MATCH_RECOGNIZE (` and its `)`, rewritten (see [`clauses`]).
fn clause_body(body: &[TokenWithSpan]) -> Vec<TokenWithSpan> {
    let space = |span| {
        TokenWithSpan::new(
            Token::Whitespace(sqlparser::tokenizer::Whitespace::Space),
            span,
        )
    };
    // RUNNING / FINAL before a function call, at any depth.
    let mut toks: Vec<TokenWithSpan> = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let semantics = ["RUNNING", "FINAL"]
            .into_iter()
            .find(|k| is_word(&body[i], k));
        let f = next_significant(body, i + 1);
        let call = matches!(body.get(f).map(|t| &t.token), Some(Token::Word(_)))
            && matches!(
                body.get(next_significant(body, f + 1)).map(|t| &t.token),
                Some(Token::LParen)
            );
        match (semantics, call, body.get(f).map(|t| &t.token)) {
            (Some("FINAL"), true, Some(Token::Word(w))) => {
                toks.push(word(format!("{FINAL_PREFIX}{}", w.value), body[f].span));
                i = f + 1;
            }
            (Some(_), true, _) => i = f,
            _ => {
                toks.push(body[i].clone());
                i += 1;
            }
        }
    }
    // The clauses between PATTERN (...) and DEFINE, at the body's top level.
    let Some(pattern) =
        (0..toks.len()).find(|&k| is_word(&toks[k], "PATTERN") && top_level(&toks, k))
    else {
        return toks;
    };
    let open = next_significant(&toks, pattern + 1);
    let Some(close) = matching_paren(&toks, open) else {
        return toks;
    };
    // `{- p -}` (sqlparser reads only `{- v -}`) becomes `(__fsql_exclude (p))`.
    let mut rewritten: Vec<TokenWithSpan> = toks[..open].to_vec();
    let mut x = open;
    while x <= close {
        let t = &toks[x];
        let next = toks.get(x + 1).map(|t| &t.token);
        match (&t.token, next) {
            (Token::LBrace, Some(Token::Minus)) => {
                rewritten.push(TokenWithSpan::new(Token::LParen, t.span));
                rewritten.push(word(EXCLUDE_SYMBOL.into(), t.span));
                rewritten.push(TokenWithSpan::new(Token::LParen, t.span));
                x += 2;
            }
            (Token::Minus, Some(Token::RBrace)) => {
                rewritten.push(TokenWithSpan::new(Token::RParen, t.span));
                rewritten.push(TokenWithSpan::new(Token::RParen, t.span));
                x += 2;
            }
            _ => {
                rewritten.push(t.clone());
                x += 1;
            }
        }
    }
    let after = rewritten.len();
    rewritten.extend(toks[close + 1..].iter().cloned());
    let toks = rewritten;
    let Some(define) =
        (after..toks.len()).find(|&k| is_word(&toks[k], "DEFINE") && top_level(&toks, k))
    else {
        return toks;
    };
    let mut moved: Vec<TokenWithSpan> = Vec::new();
    let mut k = after;
    loop {
        k = next_significant(&toks, k);
        if k >= define {
            break;
        }
        let t = &toks[k];
        let span = t.span;
        let end = (k + 1..define)
            .find(|&e| {
                ["WITHIN", "SUBSET", "EMIT"]
                    .iter()
                    .any(|w| is_word(&toks[e], w))
                    && top_level(&toks, e)
            })
            .unwrap_or(define);
        let pseudo = |name: &str, value: &[TokenWithSpan]| {
            let mut out = vec![
                space(span),
                word(name.into(), span),
                space(span),
                TokenWithSpan::new(Token::make_keyword("AS"), span),
                space(span),
            ];
            out.extend(value.iter().cloned());
            out.push(TokenWithSpan::new(Token::Comma, span));
            out
        };
        if is_word(t, "WITHIN") {
            moved.extend(pseudo(WITHIN_SYMBOL, &toks[k + 1..end]));
        } else if is_word(t, "EMIT")
            && end == next_significant(&toks, next_significant(&toks, k + 1) + 1)
            && is_word(&toks[next_significant(&toks, k + 1)], "TIMEOUTS")
        {
            let yes = TokenWithSpan::new(Token::make_keyword("TRUE"), span);
            moved.extend(pseudo(TIMEOUTS_SYMBOL, &[yes]));
        } else if is_word(t, "SUBSET") {
            // name = ( ... ) [, name = ( ... )]*
            let mut x = next_significant(&toks, k + 1);
            while x < end {
                let (Some(Token::Word(name)), eq) = (
                    toks.get(x).map(|t| &t.token),
                    next_significant(&toks, x + 1),
                ) else {
                    break;
                };
                let open = next_significant(&toks, eq + 1);
                if toks.get(eq).map(|t| &t.token) != Some(&Token::Eq)
                    || toks.get(open).map(|t| &t.token) != Some(&Token::LParen)
                {
                    break;
                }
                let Some(close) = matching_paren(&toks, open).filter(|c| *c < end) else {
                    break;
                };
                let name = format!("{SUBSET_PREFIX}{}", name.value);
                moved.extend(pseudo(&name, &toks[open..=close]));
                x = next_significant(&toks, close + 1);
                if toks.get(x).map(|t| &t.token) == Some(&Token::Comma) {
                    x = next_significant(&toks, x + 1);
                }
            }
            if x < end {
                // Not a SUBSET clause we understand: leave it for sqlparser to report.
                return toks;
            }
        } else {
            // Whatever else sits here is left in place for sqlparser to report.
            return toks;
        }
        k = end;
    }
    let mut out: Vec<TokenWithSpan> = toks[..after].to_vec();
    out.push(space(toks[define].span));
    out.push(toks[define].clone());
    out.extend(moved);
    out.extend(toks[define + 1..].iter().cloned());
    out
}

/// Replaces every `MATCH_RECOGNIZE` clause in `query` by a `__match<n>` relation (numbered from
/// `*next`), returning the clauses with their relation names.
pub fn extract(query: &mut Query, next: &mut usize) -> Result<Vec<(String, MatchClause)>, String> {
    let mut found = Vec::new();
    extract_query(query, next, &mut found)?;
    Ok(found)
}

fn extract_query(
    q: &mut Query,
    next: &mut usize,
    found: &mut Vec<(String, MatchClause)>,
) -> Result<(), String> {
    if let Some(with) = &mut q.with {
        for cte in &mut with.cte_tables {
            extract_query(&mut cte.query, next, found)?;
        }
    }
    extract_set(&mut q.body, next, found)
}

fn extract_set(
    s: &mut SetExpr,
    next: &mut usize,
    found: &mut Vec<(String, MatchClause)>,
) -> Result<(), String> {
    match s {
        SetExpr::Select(select) => {
            for twj in &mut select.from {
                extract_factor(&mut twj.relation, next, found)?;
                for j in &mut twj.joins {
                    extract_factor(&mut j.relation, next, found)?;
                }
            }
            Ok(())
        }
        SetExpr::Query(q) => extract_query(q, next, found),
        SetExpr::SetOperation { left, right, .. } => {
            extract_set(left, next, found)?;
            extract_set(right, next, found)
        }
        _ => Ok(()),
    }
}

fn extract_factor(
    f: &mut TableFactor,
    next: &mut usize,
    found: &mut Vec<(String, MatchClause)>,
) -> Result<(), String> {
    match f {
        TableFactor::Derived { subquery, .. } => extract_query(subquery, next, found),
        TableFactor::NestedJoin {
            table_with_joins, ..
        } => {
            extract_factor(&mut table_with_joins.relation, next, found)?;
            for j in &mut table_with_joins.joins {
                extract_factor(&mut j.relation, next, found)?;
            }
            Ok(())
        }
        TableFactor::MatchRecognize {
            table,
            partition_by,
            order_by,
            measures,
            rows_per_match,
            after_match_skip,
            pattern,
            symbols,
            alias,
        } => {
            let input = match table.as_ref() {
                TableFactor::Table {
                    name, alias: None, ..
                } => name
                    .0
                    .last()
                    .map(|p| p.to_string())
                    .ok_or("MATCH_RECOGNIZE needs a table or view name")?,
                _ => {
                    return Err(
                        "MATCH_RECOGNIZE reads a table or view by name (put a subquery in a view)"
                            .into(),
                    );
                }
            };
            let mut defines = Vec::new();
            let mut within = None;
            let mut emit_timeouts = false;
            let mut subsets = Vec::new();
            for s in symbols.iter() {
                if s.symbol.value == WITHIN_SYMBOL {
                    within = Some(s.definition.clone());
                } else if s.symbol.value == TIMEOUTS_SYMBOL {
                    emit_timeouts = true;
                } else if let Some(name) = s.symbol.value.strip_prefix(SUBSET_PREFIX) {
                    subsets.push((name.to_string(), s.definition.clone()));
                } else {
                    defines.push(s.clone());
                }
            }
            use sqlparser::ast::{EmptyMatchesMode, RowsPerMatch as Rows};
            let rows_per_match = match rows_per_match {
                None | Some(Rows::OneRow) => RowsPerMatch::One,
                Some(Rows::AllRows(None | Some(EmptyMatchesMode::Show))) => {
                    RowsPerMatch::AllShowEmpty
                }
                Some(Rows::AllRows(Some(EmptyMatchesMode::Omit))) => RowsPerMatch::AllOmitEmpty,
                Some(Rows::AllRows(Some(EmptyMatchesMode::WithUnmatched))) => {
                    RowsPerMatch::AllWithUnmatched
                }
            };
            let clause = MatchClause {
                input,
                partition_by: partition_by.clone(),
                order_by: order_by.clone(),
                measures: measures.clone(),
                rows_per_match,
                after_match_skip: after_match_skip.clone(),
                pattern: pattern.clone(),
                subsets,
                defines,
                within,
                emit_timeouts,
            };
            let name = format!("{MATCH_RELATION}{}", *next);
            *next += 1;
            let alias: Option<TableAlias> = alias.clone();
            *f = crate::tvf::synthetic_table(name.clone(), alias);
            found.push((name, clause));
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The pattern with variables numbered in order of first appearance (added to `vars`).
pub fn pattern(p: &MatchRecognizePattern, vars: &mut Vec<String>) -> Result<Pattern, String> {
    use MatchRecognizePattern as P;
    let mut var = |s: &MatchRecognizeSymbol| -> Pattern {
        match s {
            MatchRecognizeSymbol::Named(ident) => {
                let name = ident.value.clone();
                let index = match vars.iter().position(|v| *v == name) {
                    Some(i) => i,
                    None => {
                        vars.push(name);
                        vars.len() - 1
                    }
                };
                Pattern::Var(index)
            }
            MatchRecognizeSymbol::Start => Pattern::Start,
            MatchRecognizeSymbol::End => Pattern::End,
        }
    };
    Ok(match p {
        P::Symbol(s) => var(s),
        P::Exclude(s) => Pattern::Exclude(Box::new(var(s))),
        P::Permute(symbols) => Pattern::Permute(symbols.iter().map(var).collect()),
        P::Concat(parts) => Pattern::Concat(
            parts
                .iter()
                .map(|p| pattern(p, vars))
                .collect::<Result<_, _>>()?,
        ),
        P::Group(inner) => {
            if let P::Concat(parts) = inner.as_ref()
                && let [P::Symbol(MatchRecognizeSymbol::Named(marker)), excluded] = &parts[..]
                && marker.value == EXCLUDE_SYMBOL
            {
                return Ok(Pattern::Exclude(Box::new(pattern(excluded, vars)?)));
            }
            let inner = pattern(inner, vars)?;
            if inner == Pattern::Concat(vec![]) {
                Pattern::Empty
            } else {
                inner
            }
        }
        P::Alternation(alternatives) => Pattern::Alt(
            alternatives
                .iter()
                .map(|p| pattern(p, vars))
                .collect::<Result<_, _>>()?,
        ),
        P::Repetition(inner, q) => {
            // `x+?` arrives as `?` applied to `x+` directly (a written `(x+)?` has a group).
            if let (P::Repetition(base, q0), RepetitionQuantifier::AtMostOne) = (inner.as_ref(), q)
            {
                let (min, max) = bounds(q0)?;
                return Ok(Pattern::Repeat {
                    pattern: Box::new(pattern(base, vars)?),
                    min,
                    max,
                    greedy: false,
                });
            }
            let (min, max) = bounds(q)?;
            Pattern::Repeat {
                pattern: Box::new(pattern(inner, vars)?),
                min,
                max,
                greedy: true,
            }
        }
    })
}

fn bounds(q: &RepetitionQuantifier) -> Result<(u32, Option<u32>), String> {
    use RepetitionQuantifier as Q;
    let b = match q {
        Q::ZeroOrMore => (0, None),
        Q::OneOrMore => (1, None),
        Q::AtMostOne => (0, Some(1)),
        Q::Exactly(n) => (*n, Some(*n)),
        Q::AtLeast(n) => (*n, None),
        Q::AtMost(n) => (0, Some(*n)),
        Q::Range(n, m) => (*n, Some(*m)),
    };
    if let (min, Some(max)) = b
        && max < min
    {
        return Err(format!(
            "quantifier {{{min},{max}}}: the maximum is below the minimum"
        ));
    }
    Ok(b)
}

/// `AFTER MATCH SKIP` with variable names resolved (a `SUBSET` name after the variables); Flink's
/// default is `TO NEXT ROW`.
pub fn after_match(
    skip: Option<&AfterMatchSkip>,
    vars: &[String],
    subsets: &[(String, Vec<usize>)],
) -> Result<AfterMatch, String> {
    let var = |ident: &Ident| {
        vars.iter()
            .position(|v| *v == ident.value)
            .or_else(|| {
                subsets
                    .iter()
                    .position(|(s, _)| *s == ident.value)
                    .map(|s| vars.len() + s)
            })
            .ok_or_else(|| {
                format!(
                    "AFTER MATCH SKIP names `{}`, which is not a pattern variable",
                    ident.value
                )
            })
    };
    Ok(match skip {
        None | Some(AfterMatchSkip::ToNextRow) => AfterMatch::ToNextRow,
        Some(AfterMatchSkip::PastLastRow) => AfterMatch::PastLastRow,
        Some(AfterMatchSkip::ToFirst(v)) => AfterMatch::ToFirst(var(v)?),
        Some(AfterMatchSkip::ToLast(v)) => AfterMatch::ToLast(var(v)?),
    })
}

/// `SUBSET name = (v1, v2, ...)` definitions with variables resolved (indexes of `vars`).
pub fn subsets(clause: &MatchClause, vars: &[String]) -> Result<Vec<(String, Vec<usize>)>, String> {
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    for (name, e) in &clause.subsets {
        if vars.contains(name) || out.iter().any(|(n, _)| n == name) {
            return Err(format!(
                "SUBSET `{name}`: the name is already a pattern variable or subset"
            ));
        }
        let items: Vec<&SqlExpr> = match e {
            SqlExpr::Nested(one) => vec![one.as_ref()],
            SqlExpr::Tuple(items) => items.iter().collect(),
            other => {
                return Err(format!(
                    "SUBSET `{name}`: expected (variable, ...), found {other}"
                ));
            }
        };
        let mut members = Vec::new();
        for item in items {
            let SqlExpr::Identifier(id) = item else {
                return Err(format!(
                    "SUBSET {name} names `{item}`, which is not a pattern variable"
                ));
            };
            let v = vars.iter().position(|v| *v == id.value).ok_or_else(|| {
                format!(
                    "SUBSET {name} names `{}`, which is not a pattern variable",
                    id.value
                )
            })?;
            members.push(v);
        }
        out.push((name.clone(), members));
    }
    Ok(out)
}

/// Where an expression is evaluated: the condition of a variable, or a measure.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Define(usize),
    Measure,
}

/// Rewrites navigation in expressions into `__nav<k>` columns, collecting the navigations and
/// the expressions over one row they read (`SUM(A.price * A.qty)`).
pub struct Navigations<'a> {
    pub vars: &'a [String],
    /// `SUBSET` names: variable indexes after `vars`.
    pub subsets: &'a [(String, Vec<usize>)],
    pub input: &'a Schema,
    pub found: Vec<Navigation>,
    /// Expressions over an input row, qualifiers removed; stored after the input's columns.
    pub derived: Vec<SqlExpr>,
}

/// The functions navigation is written with (before `FINAL` prefixes).
const NAVIGATION_FUNCTIONS: &[&str] = &[
    "PREV",
    "NEXT",
    "FIRST",
    "LAST",
    "COUNT",
    "SUM",
    "AVG",
    "MIN",
    "MAX",
    "STDDEV",
    "STDDEV_POP",
    "STDDEV_SAMP",
    "VARIANCE",
    "VAR_POP",
    "VAR_SAMP",
    "MATCH_ROWTIME",
    "CLASSIFIER",
    "MATCH_NUMBER",
    "TIMED_OUT",
    "EXPECTED",
];

impl Navigations<'_> {
    /// `e` with its navigation replaced by `__nav<k>` columns.
    pub fn rewrite(&mut self, e: &SqlExpr, context: Context) -> Result<SqlExpr, String> {
        let mut e = e.clone();
        let mut v = Rewriter {
            nav: self,
            context,
            error: None,
        };
        let _ = e.visit(&mut v);
        match v.error {
            Some(err) => Err(err),
            None => Ok(e),
        }
    }

    fn column(&self, name: &str) -> Result<usize, String> {
        self.input
            .fields
            .iter()
            .position(|f| f.name == name)
            .ok_or_else(|| format!("column `{name}` not found in the MATCH_RECOGNIZE input"))
    }

    /// A variable or subset by name.
    fn var(&self, name: &str) -> Option<usize> {
        self.vars.iter().position(|v| v == name).or_else(|| {
            self.subsets
                .iter()
                .position(|(s, _)| s == name)
                .map(|s| self.vars.len() + s)
        })
    }

    /// The `__nav<k>` column for `nav`, added if new.
    fn add(&mut self, nav: Navigation) -> SqlExpr {
        let k = match self.found.iter().position(|n| *n == nav) {
            Some(k) => k,
            None => {
                self.found.push(nav);
                self.found.len() - 1
            }
        };
        SqlExpr::Identifier(Ident::new(MatchRecognizeSpec::navigation_name(k)))
    }

    /// `(var, column)` of a navigation's argument: `v.col`, `col`, or an expression over the
    /// columns of one variable (`A.price * A.qty`), which becomes a derived column.
    fn argument(&mut self, e: &SqlExpr) -> Result<(Option<usize>, usize), String> {
        match e {
            SqlExpr::Identifier(id) => Ok((None, self.column(&id.value)?)),
            SqlExpr::CompoundIdentifier(parts) if parts.len() == 2 => {
                let var = self
                    .var(&parts[0].value)
                    .ok_or_else(|| format!("`{}` is not a pattern variable", parts[0].value))?;
                Ok((Some(var), self.column(&parts[1].value)?))
            }
            _ => {
                let mut var: Option<usize> = None;
                let mut unqualified = false;
                let mut error: Option<String> = None;
                let mut row = e.clone();
                let mixed = || {
                    format!(
                        "`{e}`: the columns of an aggregate's or a navigation's argument must all be of the same pattern variable"
                    )
                };
                let _ = sqlparser::ast::visit_expressions_mut(&mut row, |x| {
                    match x {
                        SqlExpr::CompoundIdentifier(parts) if parts.len() == 2 => {
                            match self.var(&parts[0].value) {
                                None => {
                                    error = Some(format!(
                                        "`{}` is not a pattern variable",
                                        parts[0].value
                                    ));
                                }
                                Some(v) if var.is_some_and(|w| w != v) || unqualified => {
                                    error = Some(mixed());
                                }
                                Some(v) => {
                                    var = Some(v);
                                    *x = SqlExpr::Identifier(parts[1].clone());
                                }
                            }
                        }
                        SqlExpr::Identifier(_) if var.is_some() => error = Some(mixed()),
                        SqlExpr::Identifier(_) => unqualified = true,
                        SqlExpr::Function(f)
                            if NAVIGATION_FUNCTIONS
                                .contains(&f.name.to_string().to_ascii_uppercase().as_str())
                                || f.name.to_string().starts_with(FINAL_PREFIX) =>
                        {
                            error = Some(format!(
                                "`{e}`: navigation and aggregates cannot be nested here"
                            ));
                        }
                        _ => {}
                    }
                    if error.is_some() {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                });
                if let Some(error) = error {
                    return Err(error);
                }
                let k = match self.derived.iter().position(|d| *d == row) {
                    Some(k) => k,
                    None => {
                        self.derived.push(row);
                        self.derived.len() - 1
                    }
                };
                Ok((var, self.input.fields.len() + k))
            }
        }
    }
}

struct Rewriter<'n, 'a> {
    nav: &'n mut Navigations<'a>,
    context: Context,
    error: Option<String>,
}

fn args_of(f: &sqlparser::ast::Function) -> Vec<FunctionArgExpr> {
    match &f.args {
        FunctionArguments::List(list) => list
            .args
            .iter()
            .filter_map(|a| match a {
                FunctionArg::Unnamed(e) => Some(e.clone()),
                _ => None,
            })
            .collect(),
        _ => vec![],
    }
}

fn offset_arg(e: Option<&FunctionArgExpr>, default: u32) -> Result<u32, String> {
    match e {
        None => Ok(default),
        Some(FunctionArgExpr::Expr(SqlExpr::Value(v))) => {
            v.value.to_string().parse::<u32>().map_err(|_| {
                format!(
                    "a navigation offset must be a whole number, found `{}`",
                    v.value
                )
            })
        }
        Some(other) => Err(format!(
            "a navigation offset must be a constant, found `{other}`"
        )),
    }
}

impl Rewriter<'_, '_> {
    /// `FIRST(v.col [, n])` (`first`) / `LAST(v.col [, n])`.
    fn logical(&mut self, f: &sqlparser::ast::Function, first: bool) -> Result<Navigation, String> {
        let name = if first { "FIRST" } else { "LAST" };
        let args = args_of(f);
        let Some(FunctionArgExpr::Expr(arg)) = args.first() else {
            return Err(format!("{name} needs a column argument"));
        };
        let (var, column) = self.nav.argument(arg)?;
        let offset = offset_arg(args.get(1), 0)?;
        Ok(if first {
            Navigation::First {
                var,
                column,
                offset,
            }
        } else {
            Navigation::Last {
                var,
                column,
                offset,
            }
        })
    }

    fn replace(&mut self, e: &SqlExpr) -> Result<Option<SqlExpr>, String> {
        match e {
            SqlExpr::CompoundIdentifier(parts) if parts.len() == 2 => {
                let Some(var) = self.nav.var(&parts[0].value) else {
                    return Ok(None);
                };
                let column = self.nav.column(&parts[1].value)?;
                // In a variable's own condition, `V.col` is the row being classified.
                if self.context == Context::Define(var) {
                    return Ok(Some(SqlExpr::Identifier(parts[1].clone())));
                }
                Ok(Some(self.nav.add(Navigation::Last {
                    var: Some(var),
                    column,
                    offset: 0,
                })))
            }
            SqlExpr::Function(f) => {
                let written = f.name.to_string();
                let (is_final, name) = match written.strip_prefix(FINAL_PREFIX) {
                    Some(rest) => (true, rest.to_ascii_uppercase()),
                    None => (false, written.to_ascii_uppercase()),
                };
                let measure_only = |what: &str| -> Result<(), String> {
                    match self.context {
                        Context::Measure => Ok(()),
                        Context::Define(_) => {
                            Err(format!("{what} cannot be used in DEFINE, only in MEASURES"))
                        }
                    }
                };
                if is_final {
                    measure_only("FINAL")?;
                }
                let args = args_of(f);
                let first_expr = || match args.first() {
                    Some(FunctionArgExpr::Expr(e)) => Ok(e.clone()),
                    _ => Err(format!("{name} needs a column argument")),
                };
                let nav = match name.as_str() {
                    "PREV" | "NEXT" => {
                        let offset = offset_arg(args.get(1), 1)?;
                        if name == "NEXT" {
                            measure_only("NEXT")?;
                        }
                        match first_expr()? {
                            // Physical navigation from the row a logical one finds.
                            SqlExpr::Function(inner)
                                if matches!(
                                    inner.name.to_string().to_ascii_uppercase().as_str(),
                                    "FIRST" | "LAST"
                                ) =>
                            {
                                let first = inner.name.to_string().eq_ignore_ascii_case("FIRST");
                                let logical = self.logical(&inner, first)?;
                                let by = i64::from(offset);
                                Navigation::Shifted {
                                    logical: Box::new(logical),
                                    by: if name == "PREV" { -by } else { by },
                                }
                            }
                            arg => {
                                let (_, column) = self.nav.argument(&arg)?;
                                if name == "PREV" {
                                    Navigation::Prev { column, offset }
                                } else {
                                    Navigation::Next { column, offset }
                                }
                            }
                        }
                    }
                    "FIRST" | "LAST" => self.logical(f, name == "FIRST")?,
                    "COUNT" | "SUM" | "AVG" | "MIN" | "MAX" | "STDDEV" | "STDDEV_POP"
                    | "STDDEV_SAMP" | "VARIANCE" | "VAR_POP" | "VAR_SAMP" => {
                        let (var, column) = match args.first() {
                            Some(
                                FunctionArgExpr::Wildcard | FunctionArgExpr::WildcardWithOptions(_),
                            ) => (None, None),
                            Some(FunctionArgExpr::QualifiedWildcard(obj)) => {
                                let v = obj.to_string();
                                let var = self
                                    .nav
                                    .var(&v)
                                    .ok_or_else(|| format!("`{v}` is not a pattern variable"))?;
                                (Some(var), None)
                            }
                            Some(FunctionArgExpr::Expr(e)) => {
                                let (var, column) = self.nav.argument(e)?;
                                (var, Some(column))
                            }
                            None => return Err(format!("{name} needs an argument")),
                        };
                        let distinct = matches!(&f.args, FunctionArguments::List(list)
                            if list.duplicate_treatment
                                == Some(sqlparser::ast::DuplicateTreatment::Distinct));
                        let function = match name.as_str() {
                            "COUNT" if distinct => MatchAggregate::CountDistinct,
                            "COUNT" => MatchAggregate::Count,
                            "SUM" => MatchAggregate::Sum,
                            "AVG" => MatchAggregate::Avg,
                            "MIN" => MatchAggregate::Min,
                            "MAX" => MatchAggregate::Max,
                            "STDDEV_POP" => MatchAggregate::StddevPop,
                            "STDDEV" | "STDDEV_SAMP" => MatchAggregate::StddevSamp,
                            "VAR_POP" => MatchAggregate::VarPop,
                            _ => MatchAggregate::VarSamp,
                        };
                        if distinct && function != MatchAggregate::CountDistinct {
                            return Err(format!("{name}(DISTINCT ...) is not supported here"));
                        }
                        if column.is_none() && function != MatchAggregate::Count {
                            return Err(format!("{name}(*) is not an aggregate"));
                        }
                        Navigation::Aggregate {
                            function,
                            var,
                            column,
                        }
                    }
                    "MATCH_ROWTIME" => Navigation::MatchRowtime,
                    "CLASSIFIER" => match args.first() {
                        None => Navigation::Classifier,
                        Some(FunctionArgExpr::Expr(SqlExpr::Identifier(v))) => {
                            let var = self.nav.var(&v.value).ok_or_else(|| {
                                format!("CLASSIFIER({}): not a pattern variable", v.value)
                            })?;
                            Navigation::ClassifierOf(var)
                        }
                        Some(other) => {
                            return Err(format!(
                                "CLASSIFIER takes a pattern variable, found `{other}`"
                            ));
                        }
                    },
                    "MATCH_NUMBER" => Navigation::MatchNumber,
                    "TIMED_OUT" | "EXPECTED" => {
                        measure_only(&format!("{name}()"))?;
                        if name == "TIMED_OUT" {
                            Navigation::TimedOut
                        } else {
                            Navigation::Expected
                        }
                    }
                    _ if is_final => {
                        return Err(format!(
                            "FINAL applies to navigation and aggregates, not to {name}"
                        ));
                    }
                    _ => return Ok(None),
                };
                let nav = if is_final {
                    Navigation::Final(Box::new(nav))
                } else {
                    nav
                };
                Ok(Some(self.nav.add(nav)))
            }
            _ => Ok(None),
        }
    }
}

impl VisitorMut for Rewriter<'_, '_> {
    type Break = ();

    fn pre_visit_expr(&mut self, e: &mut SqlExpr) -> ControlFlow<()> {
        match self.replace(e) {
            Ok(Some(new)) => {
                *e = new;
                ControlFlow::Continue(())
            }
            Ok(None) => ControlFlow::Continue(()),
            Err(err) => {
                self.error = Some(err);
                ControlFlow::Break(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sqlparser::ast::Statement;
    use sqlparser::dialect::GenericDialect;

    use super::*;

    /// The clause of `CREATE VIEW v AS SELECT * FROM t MATCH_RECOGNIZE (<body>)`.
    fn clause(body: &str) -> Result<MatchClause, String> {
        let sql = format!("CREATE VIEW v AS SELECT * FROM t MATCH_RECOGNIZE ({body}) AS m");
        let statements =
            crate::tvf::parse_statements(&GenericDialect {}, &sql).map_err(|e| e.to_string())?;
        let Some(Statement::CreateView(view)) = statements.into_iter().next() else {
            return Err("not a view".into());
        };
        let mut query = *view.query;
        let mut next = 0;
        let mut found = extract(&mut query, &mut next)?;
        found
            .pop()
            .map(|(_, c)| c)
            .ok_or_else(|| "no clause".into())
    }

    #[test]
    fn what_sqlparser_cannot_read_travels_through_define() {
        let c = clause(
            "PARTITION BY k ORDER BY ts
             MEASURES FINAL LAST(B.x) AS f, RUNNING COUNT(*) AS n
             ALL ROWS PER MATCH OMIT EMPTY MATCHES
             PATTERN (A {- B+ -} C) WITHIN INTERVAL '10' MINUTE EMIT TIMEOUTS
             SUBSET U = (A, C), W = (B)
             DEFINE A AS x > 0",
        )
        .unwrap();
        assert!(c.emit_timeouts);
        assert_eq!(
            c.within.map(|e| e.to_string()).as_deref(),
            Some("INTERVAL '10' MINUTE")
        );
        let subsets: Vec<(String, String)> = c
            .subsets
            .iter()
            .map(|(n, e)| (n.clone(), e.to_string()))
            .collect();
        assert_eq!(
            subsets,
            vec![("U".into(), "(A, C)".into()), ("W".into(), "(B)".into())]
        );
        assert_eq!(c.defines.len(), 1);
        assert_eq!(c.rows_per_match, RowsPerMatch::AllOmitEmpty);
        let measures: Vec<String> = c.measures.iter().map(|m| m.expr.to_string()).collect();
        assert_eq!(measures, vec!["__fsql_final_LAST(B.x)", "COUNT(*)"]);
        let mut vars = Vec::new();
        let p = pattern(&c.pattern, &mut vars).unwrap();
        assert_eq!(
            p,
            Pattern::Concat(vec![
                Pattern::Var(0),
                Pattern::Exclude(Box::new(Pattern::Repeat {
                    pattern: Box::new(Pattern::Var(1)),
                    min: 1,
                    max: None,
                    greedy: true
                })),
                Pattern::Var(2),
            ])
        );
        assert_eq!(vars, vec!["A", "B", "C"]);
    }

    #[test]
    fn the_clauses_may_come_in_either_order_and_columns_named_like_keywords_stay() {
        let c = clause(
            "PARTITION BY k ORDER BY ts MEASURES final AS f, running AS r
             PATTERN (A B) SUBSET U = (A, B) WITHIN INTERVAL '1' SECOND DEFINE A AS final > 0",
        )
        .unwrap();
        assert!(!c.emit_timeouts);
        assert!(c.within.is_some());
        assert_eq!(c.subsets.len(), 1);
        let measures: Vec<String> = c.measures.iter().map(|m| m.expr.to_string()).collect();
        assert_eq!(measures, vec!["final", "running"]);
        // Something else between PATTERN and DEFINE is left for sqlparser to report.
        assert!(clause("ORDER BY ts MEASURES 1 AS x PATTERN (A) BOGUS DEFINE A AS TRUE").is_err());
    }
}
