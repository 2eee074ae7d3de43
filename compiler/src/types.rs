//! Flink type names (as written in `CREATE TABLE`) to [`DataType`].

use fsql_plan::{DataType, Field};
use pest::iterators::Pair;

use crate::diagnostic::{Diagnostic, closest};
use crate::parse::{Rule, ident_value};
use crate::source::{FileId, Span};

const TYPE_NAMES: &[&str] = &[
    "BOOLEAN",
    "TINYINT",
    "SMALLINT",
    "INT",
    "INTEGER",
    "BIGINT",
    "FLOAT",
    "REAL",
    "DOUBLE",
    "DECIMAL",
    "DEC",
    "NUMERIC",
    "STRING",
    "VARCHAR",
    "CHAR",
    "BYTES",
    "BINARY",
    "VARBINARY",
    "DATE",
    "TIME",
    "TIMESTAMP",
    "TIMESTAMP_LTZ",
    "ARRAY",
    "MAP",
    "ROW",
];

/// Resolves a `data_type` parse tree; `base` is the byte offset of the statement in `file`.
pub(crate) fn resolve_data_type(
    pair: Pair<Rule>,
    file: FileId,
    base: usize,
) -> Result<DataType, Diagnostic> {
    let span =
        |p: &Pair<Rule>| Span::new(file, base + p.as_span().start(), base + p.as_span().end());
    let whole = span(&pair);
    let mut inner = pair.into_inner().filter(|p| p.as_rule() != Rule::not_null);
    let Some(t) = inner.next() else {
        return Err(Diagnostic::error("missing data type", whole));
    };
    match t.as_rule() {
        Rule::array_type => {
            let item = t
                .into_inner()
                .next()
                .ok_or_else(|| Diagnostic::error("ARRAY needs an element type", whole))?;
            Ok(DataType::Array(Box::new(resolve_data_type(
                item, file, base,
            )?)))
        }
        Rule::map_type => {
            let mut it = t.into_inner();
            let (Some(k), Some(v)) = (it.next(), it.next()) else {
                return Err(Diagnostic::error("MAP needs a key and a value type", whole));
            };
            Ok(DataType::Map(
                Box::new(resolve_data_type(k, file, base)?),
                Box::new(resolve_data_type(v, file, base)?),
            ))
        }
        Rule::row_type => {
            let mut fields = Vec::new();
            for f in t.into_inner() {
                let mut it = f.into_inner();
                let (Some(n), Some(ty)) = (it.next(), it.next()) else {
                    continue;
                };
                let nullable = !ty.as_str().to_ascii_uppercase().contains("NOT NULL");
                fields.push(Field::new(
                    ident_value(n.as_str()),
                    resolve_data_type(ty, file, base)?,
                    nullable,
                ));
            }
            Ok(DataType::Row(fields))
        }
        _ => {
            let mut word = None;
            let mut params = Vec::new();
            let mut local_tz = false;
            for p in t.into_inner() {
                match p.as_rule() {
                    Rule::type_word => word = Some(p),
                    Rule::type_params => {
                        for n in p.into_inner() {
                            let v = n.as_str().parse::<i64>().map_err(|e| {
                                Diagnostic::error(format!("invalid type parameter: {e}"), span(&n))
                            })?;
                            params.push((v, span(&n)));
                        }
                    }
                    Rule::time_zone => local_tz = p.as_str().to_ascii_uppercase().contains("LOCAL"),
                    _ => {}
                }
            }
            let word = word.ok_or_else(|| Diagnostic::error("missing type name", whole))?;
            scalar(
                &word
                    .as_str()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
                &params,
                local_tz,
                span(&word),
            )
        }
    }
}

fn scalar(
    name: &str,
    params: &[(i64, Span)],
    local_tz: bool,
    span: Span,
) -> Result<DataType, Diagnostic> {
    let upper = name.to_ascii_uppercase();
    let param = |i: usize, default: i64| params.get(i).map_or(default, |p| p.0);
    let precision = |default: i64, max: i64| -> Result<u8, Diagnostic> {
        let p = param(0, default);
        if !(0..=max).contains(&p) {
            let at = params.first().map_or(span, |p| p.1);
            return Err(Diagnostic::error(
                format!("{upper} precision must be between 0 and {max}, got {p}"),
                at,
            ));
        }
        Ok(p as u8)
    };
    Ok(match upper.as_str() {
        "BOOLEAN" | "BOOL" => DataType::Boolean,
        "TINYINT" => DataType::TinyInt,
        "SMALLINT" => DataType::SmallInt,
        "INT" | "INTEGER" => DataType::Int,
        "BIGINT" => DataType::BigInt,
        "FLOAT" | "REAL" => DataType::Float,
        "DOUBLE" | "DOUBLE PRECISION" => DataType::Double,
        "DECIMAL" | "DEC" | "NUMERIC" => {
            let p = precision(10, 38)?;
            let s = param(1, 0);
            if s < 0 || s > i64::from(p) {
                let at = params.get(1).map_or(span, |p| p.1);
                return Err(Diagnostic::error(
                    format!("DECIMAL scale must be between 0 and the precision {p}, got {s}"),
                    at,
                ));
            }
            DataType::Decimal {
                precision: p.max(1),
                scale: s as i8,
            }
        }
        "STRING" | "VARCHAR" | "CHAR" => DataType::String,
        "BYTES" | "BINARY" | "VARBINARY" => DataType::Bytes,
        "DATE" => DataType::Date,
        "TIME" => {
            precision(0, 9)?;
            DataType::Time
        }
        "TIMESTAMP" if local_tz => DataType::TimestampLtz {
            precision: precision(6, 9)?,
        },
        "TIMESTAMP" => DataType::Timestamp {
            precision: precision(6, 9)?,
        },
        "TIMESTAMP_LTZ" => DataType::TimestampLtz {
            precision: precision(6, 9)?,
        },
        _ => {
            let d = Diagnostic::error(format!("unknown data type `{name}`"), span);
            return Err(match closest(&upper, TYPE_NAMES.iter().copied()) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None => d.with_help("Flink's types are BOOLEAN, TINYINT, SMALLINT, INT, BIGINT, FLOAT, DOUBLE, DECIMAL(p, s), STRING, VARCHAR(n), BYTES, DATE, TIME, TIMESTAMP(p), TIMESTAMP_LTZ(p), ARRAY<T>, MAP<K, V>, ROW<...>"),
            });
        }
    })
}
