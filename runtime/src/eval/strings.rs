//! String operators: `LIKE`/`ILIKE` with an escape character, and `||`.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringArray};
use arrow::compute::kernels::{comparison, concat_elements};
use arrow::datatypes::DataType as ArrowType;

use super::Value;
use crate::error::EvalError;

/// Rewrites a pattern with escape character `escape` (or none) into Arrow's LIKE syntax, whose
/// escape is `\`.
fn translate_pattern(pattern: &str, escape: Option<char>) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if Some(c) == escape {
            match chars.next() {
                Some(next) => {
                    out.push('\\');
                    out.push(next);
                }
                // A trailing escape stands for itself.
                None => {
                    out.push('\\');
                    out.push(c);
                }
            }
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    out
}

fn to_utf8(v: Value) -> Result<Value, EvalError> {
    if v.data_type() == &ArrowType::Utf8 {
        return Ok(v);
    }
    super::conform(v, &ArrowType::Utf8)
}

/// `arg [NOT] [I]LIKE pattern [ESCAPE c]`. Without `ESCAPE` there is no escape character: a
/// backslash matches itself (standard SQL, and Flink since FLINK-39424, fixed in 1.20.4/2.0.2/
/// 2.1.2/2.2/2.3).
pub(crate) fn like(
    arg: Value,
    pattern: Value,
    negated: bool,
    case_insensitive: bool,
    escape: Option<char>,
) -> Result<Value, EvalError> {
    let arg = to_utf8(arg)?;
    let mut pattern = to_utf8(pattern)?;
    if escape != Some('\\') {
        pattern = pattern.map(|p| {
            let p = p.as_string::<i32>();
            let translated: StringArray = p
                .iter()
                .map(|v| v.map(|s| translate_pattern(s, escape)))
                .collect();
            Ok(Arc::new(translated) as ArrayRef)
        })?;
    }
    let scalar = arg.is_scalar() && pattern.is_scalar();
    let out = match (negated, case_insensitive) {
        (false, false) => comparison::like(&arg, &pattern)?,
        (false, true) => comparison::ilike(&arg, &pattern)?,
        (true, false) => comparison::nlike(&arg, &pattern)?,
        (true, true) => comparison::nilike(&arg, &pattern)?,
    };
    Ok(Value::wrap(Arc::new(out), scalar))
}

/// `l || r`: NULL if either side is NULL.
pub(crate) fn concat(l: Value, r: Value, rows: usize) -> Result<Value, EvalError> {
    let l = to_utf8(l)?;
    let r = to_utf8(r)?;
    let scalar = l.is_scalar() && r.is_scalar();
    let n = if scalar { 1 } else { rows };
    let (l, r) = (l.into_array(n), r.into_array(n));
    let out = concat_elements::concat_elements_utf8(l.as_string::<i32>(), r.as_string::<i32>())?;
    let out: ArrayRef = Arc::new(out);
    debug_assert_eq!(out.len(), n);
    Ok(Value::wrap(out, scalar))
}
