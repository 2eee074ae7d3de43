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
    AfterMatch, DataType, Field, MatchAggregate, Navigation, Pattern, RowsPerMatch, Schema,
};
use sqlparser::ast::{
    AfterMatchSkip, Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident,
    MatchRecognizePattern, MatchRecognizeSymbol, Measure, OrderByExpr, Query, RepetitionQuantifier,
    SetExpr, SymbolDefinition, TableAlias, TableFactor, VisitMut, VisitorMut,
};
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan, Word};

/// The prefix of the synthetic relations `MATCH_RECOGNIZE` clauses become.
pub const MATCH_RELATION: &str = "__match";
/// The pseudo-variable `WITHIN` travels as through sqlparser.
const WITHIN_SYMBOL: &str = "__fsql_within";
/// The prefix of navigation columns in the evaluation row.
pub const NAV_COLUMN: &str = "__nav";

/// One `MATCH_RECOGNIZE` clause as written.
#[derive(Clone, Debug)]
pub struct MatchClause {
    /// The table or view it reads.
    pub input: String,
    pub partition_by: Vec<SqlExpr>,
    pub order_by: Vec<OrderByExpr>,
    pub measures: Vec<Measure>,
    pub all_rows: bool,
    pub after_match_skip: Option<AfterMatchSkip>,
    pub pattern: MatchRecognizePattern,
    pub defines: Vec<SymbolDefinition>,
    pub within: Option<SqlExpr>,
}

/// Moves `WITHIN <interval>` (between `PATTERN (...)` and `DEFINE`) to the front of the `DEFINE`
/// list as `__fsql_within AS <interval>,`, which sqlparser reads.
pub fn within_to_define(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let is_word = |t: &TokenWithSpan, kw: Keyword, text: &str| {
        matches!(&t.token, Token::Word(w) if w.quote_style.is_none()
            && (w.keyword == kw || w.value.eq_ignore_ascii_case(text)))
    };
    let Some(within) = tokens
        .iter()
        .position(|t| is_word(t, Keyword::WITHIN, "WITHIN"))
    else {
        return tokens;
    };
    let Some(define) = tokens[within..]
        .iter()
        .position(|t| is_word(t, Keyword::DEFINE, "DEFINE"))
        .map(|p| p + within)
    else {
        return tokens;
    };
    let interval: Vec<TokenWithSpan> = tokens[within + 1..define].to_vec();
    let span = tokens[within].span;
    let mut out: Vec<TokenWithSpan> = tokens[..within].to_vec();
    out.push(tokens[define].clone());
    out.push(TokenWithSpan::new(
        Token::Whitespace(sqlparser::tokenizer::Whitespace::Space),
        span,
    ));
    out.push(TokenWithSpan::new(
        Token::Word(Word {
            value: WITHIN_SYMBOL.into(),
            quote_style: None,
            keyword: Keyword::NoKeyword,
        }),
        span,
    ));
    out.push(TokenWithSpan::new(
        Token::Whitespace(sqlparser::tokenizer::Whitespace::Space),
        span,
    ));
    out.push(TokenWithSpan::new(Token::make_keyword("AS"), span));
    out.extend(interval);
    out.push(TokenWithSpan::new(Token::Comma, span));
    out.extend(tokens[define + 1..].iter().cloned());
    // Several clauses in one statement: handle the rest too.
    let rest_start = out.len() - (tokens.len() - define - 1);
    let (head, rest) = out.split_at(rest_start);
    let mut head = head.to_vec();
    head.extend(within_to_define(rest.to_vec()));
    head
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
            for s in symbols.iter() {
                if s.symbol.value == WITHIN_SYMBOL {
                    within = Some(s.definition.clone());
                } else {
                    defines.push(s.clone());
                }
            }
            let clause = MatchClause {
                input,
                partition_by: partition_by.clone(),
                order_by: order_by.clone(),
                measures: measures.clone(),
                all_rows: matches!(
                    rows_per_match,
                    Some(sqlparser::ast::RowsPerMatch::AllRows(_))
                ),
                after_match_skip: after_match_skip.clone(),
                pattern: pattern.clone(),
                defines,
                within,
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

/// `AFTER MATCH SKIP` with variable names resolved; Flink's default is `TO NEXT ROW`.
pub fn after_match(skip: Option<&AfterMatchSkip>, vars: &[String]) -> Result<AfterMatch, String> {
    let var = |ident: &Ident| {
        vars.iter().position(|v| *v == ident.value).ok_or_else(|| {
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

/// Where an expression is evaluated: the condition of a variable, or a measure.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Define(usize),
    Measure,
}

/// Rewrites navigation in expressions into `__nav<k>` columns, collecting the navigations.
pub struct Navigations<'a> {
    pub vars: &'a [String],
    pub input: &'a Schema,
    pub rowtime: usize,
    pub found: Vec<(Navigation, DataType)>,
}

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

    fn var(&self, name: &str) -> Option<usize> {
        self.vars.iter().position(|v| v == name)
    }

    /// The `__nav<k>` column for `nav`, added if new.
    fn add(&mut self, nav: Navigation, t: DataType) -> SqlExpr {
        let k = match self.found.iter().position(|(n, _)| *n == nav) {
            Some(k) => k,
            None => {
                self.found.push((nav, t));
                self.found.len() - 1
            }
        };
        SqlExpr::Identifier(Ident::new(format!("{NAV_COLUMN}{k}")))
    }

    /// `(var, column)` of `v.col` or `col`.
    fn reference(&self, e: &SqlExpr) -> Result<(Option<usize>, usize), String> {
        match e {
            SqlExpr::Identifier(id) => Ok((None, self.column(&id.value)?)),
            SqlExpr::CompoundIdentifier(parts) if parts.len() == 2 => {
                let var = self
                    .var(&parts[0].value)
                    .ok_or_else(|| format!("`{}` is not a pattern variable", parts[0].value))?;
                Ok((Some(var), self.column(&parts[1].value)?))
            }
            other => Err(format!(
                "expected a column or `variable.column` here, found `{other}`"
            )),
        }
    }

    fn type_of(&self, column: usize) -> DataType {
        self.input.fields[column].data_type.clone()
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
                let t = self.nav.type_of(column);
                Ok(Some(self.nav.add(
                    Navigation::Last {
                        var: Some(var),
                        column,
                        offset: 0,
                    },
                    t,
                )))
            }
            SqlExpr::Function(f) => {
                let name = f.name.to_string().to_ascii_uppercase();
                let args = args_of(f);
                let first_expr = || match args.first() {
                    Some(FunctionArgExpr::Expr(e)) => Ok(e.clone()),
                    _ => Err(format!("{name} needs a column argument")),
                };
                let nav = match name.as_str() {
                    "PREV" | "NEXT" => {
                        let (_, column) = self.nav.reference(&first_expr()?)?;
                        let offset = offset_arg(args.get(1), 1)?;
                        let t = self.nav.type_of(column);
                        if name == "PREV" {
                            (Navigation::Prev { column, offset }, t)
                        } else {
                            if matches!(self.context, Context::Define(_)) {
                                return Err(
                                    "NEXT cannot be used in DEFINE (the next row has not arrived)"
                                        .into(),
                                );
                            }
                            (Navigation::Next { column, offset }, t)
                        }
                    }
                    "FIRST" | "LAST" => {
                        let (var, column) = self.nav.reference(&first_expr()?)?;
                        let offset = offset_arg(args.get(1), 0)?;
                        let t = self.nav.type_of(column);
                        if name == "FIRST" {
                            (
                                Navigation::First {
                                    var,
                                    column,
                                    offset,
                                },
                                t,
                            )
                        } else {
                            (
                                Navigation::Last {
                                    var,
                                    column,
                                    offset,
                                },
                                t,
                            )
                        }
                    }
                    "COUNT" | "SUM" | "AVG" | "MIN" | "MAX" => {
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
                                let (var, column) = self.nav.reference(e)?;
                                (var, Some(column))
                            }
                            None => return Err(format!("{name} needs an argument")),
                        };
                        let function = match name.as_str() {
                            "COUNT" => MatchAggregate::Count,
                            "SUM" => MatchAggregate::Sum,
                            "AVG" => MatchAggregate::Avg,
                            "MIN" => MatchAggregate::Min,
                            _ => MatchAggregate::Max,
                        };
                        if column.is_none() && function != MatchAggregate::Count {
                            return Err(format!("{name}(*) is not an aggregate"));
                        }
                        let t = match (function, column) {
                            (MatchAggregate::Count, _) | (_, None) => DataType::BigInt,
                            (_, Some(c)) => self.nav.type_of(c),
                        };
                        (
                            Navigation::Aggregate {
                                function,
                                var,
                                column,
                            },
                            t,
                        )
                    }
                    "MATCH_ROWTIME" => {
                        (Navigation::MatchRowtime, self.nav.type_of(self.nav.rowtime))
                    }
                    "CLASSIFIER" => (Navigation::Classifier, DataType::String),
                    "MATCH_NUMBER" => (Navigation::MatchNumber, DataType::BigInt),
                    _ => return Ok(None),
                };
                Ok(Some(self.nav.add(nav.0, nav.1)))
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

/// The evaluation row's schema: the input's fields, then one per navigation.
pub fn evaluation_schema(input: &Schema, navigations: &[(Navigation, DataType)]) -> Schema {
    let mut fields = input.fields.clone();
    for (k, (_, t)) in navigations.iter().enumerate() {
        fields.push(Field::new(format!("{NAV_COLUMN}{k}"), t.clone(), true));
    }
    Schema::new(fields)
}

/// `ONE ROW PER MATCH` (the default; Flink's only mode) or `ALL ROWS PER MATCH`.
pub fn rows_per_match(clause: &MatchClause) -> RowsPerMatch {
    if clause.all_rows {
        RowsPerMatch::All
    } else {
        RowsPerMatch::One
    }
}
