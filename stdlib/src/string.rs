//! String functions. Positions and lengths count characters (Unicode scalar values), 1-based like SQL.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Int32Array, StringArray};
use arrow::datatypes::DataType;
use regex::{NoExpand, Regex, RegexBuilder};

use crate::args::{Utf8Out, arity, cast_to, check_len, int64, rows, utf8};
use crate::{Function, KernelError, Signature};

pub(crate) fn register(out: &mut Vec<Function>) {
    use DataType::{Int64, Utf8};
    let s1 = || Signature::OneOf(vec![vec![Utf8]]);
    let s2 = || Signature::OneOf(vec![vec![Utf8, Utf8]]);
    let s_i = || Signature::OneOf(vec![vec![Utf8, Int64]]);
    let utf8_out: fn(&[DataType]) -> Result<DataType, String> = |_| Ok(Utf8);
    let int_out: fn(&[DataType]) -> Result<DataType, String> = |_| Ok(DataType::Int32);
    let mut add = |name, doc, signature, return_type, kernel| {
        out.push(Function {
            name,
            doc,
            signature,
            return_type,
            kernel,
            scalar: None,
        });
    };
    add(
        "substr",
        "SUBSTR(s, start[, len]) / SUBSTRING(s FROM start [FOR len]): characters from 1-based start (a negative \
         start counts from the end); NULL if len < 0.",
        Signature::OneOf(vec![vec![Utf8, Int64], vec![Utf8, Int64, Int64]]),
        utf8_out,
        substr,
    );
    add(
        "substring",
        "Alias of SUBSTR.",
        Signature::OneOf(vec![vec![Utf8, Int64], vec![Utf8, Int64, Int64]]),
        utf8_out,
        substr,
    );
    add(
        "btrim",
        "TRIM([BOTH] [chars FROM] s): removes leading and trailing spaces (or any of the given characters).",
        Signature::OneOf(vec![vec![Utf8], vec![Utf8, Utf8]]),
        utf8_out,
        btrim,
    );
    add(
        "trim",
        "TRIM(s): alias of BTRIM (the SQL front end plans a plain TRIM(s) under this name).",
        Signature::OneOf(vec![vec![Utf8], vec![Utf8, Utf8]]),
        utf8_out,
        btrim,
    );
    add(
        "ltrim",
        "LTRIM(s) / TRIM(LEADING [chars FROM] s): removes leading spaces (or any of the given characters).",
        Signature::OneOf(vec![vec![Utf8], vec![Utf8, Utf8]]),
        utf8_out,
        ltrim,
    );
    add(
        "rtrim",
        "RTRIM(s) / TRIM(TRAILING [chars FROM] s): removes trailing spaces (or any of the given characters).",
        Signature::OneOf(vec![vec![Utf8], vec![Utf8, Utf8]]),
        utf8_out,
        rtrim,
    );
    add(
        "strpos",
        "POSITION(needle IN s) / STRPOS(s, needle): 1-based position of the first occurrence, 0 if absent.",
        s2(),
        int_out,
        strpos,
    );
    add(
        "instr",
        "INSTR(s, needle): 1-based position of the first occurrence of needle in s, 0 if absent.",
        s2(),
        int_out,
        strpos,
    );
    add(
        "locate",
        "LOCATE(needle, s[, start]): 1-based position of needle in s at or after start, 0 if absent.",
        Signature::OneOf(vec![vec![Utf8, Utf8], vec![Utf8, Utf8, Int64]]),
        int_out,
        locate,
    );
    add(
        "upper",
        "UPPER(s): s in upper case (Unicode).",
        s1(),
        utf8_out,
        upper,
    );
    add(
        "lower",
        "LOWER(s): s in lower case (Unicode).",
        s1(),
        utf8_out,
        lower,
    );
    add(
        "initcap",
        "INITCAP(s): the first letter of each word in upper case, the rest in lower case (words are runs of \
         ASCII letters and digits, as in Flink).",
        s1(),
        utf8_out,
        initcap,
    );
    add(
        "char_length",
        "CHAR_LENGTH(s): the number of characters in s, as INT.",
        s1(),
        int_out,
        char_length,
    );
    add(
        "character_length",
        "Alias of CHAR_LENGTH.",
        s1(),
        int_out,
        char_length,
    );
    add(
        "concat",
        "CONCAT(s1, s2, ...): the strings joined; NULL if any argument is NULL.",
        Signature::VariadicCommon { min: 1 },
        utf8_out,
        concat,
    );
    add(
        "concat_ws",
        "CONCAT_WS(sep, s1, s2, ...): the non-NULL strings joined by sep; NULL if sep is NULL.",
        Signature::VariadicCommon { min: 2 },
        utf8_out,
        concat_ws,
    );
    add(
        "replace",
        "REPLACE(s, from, to): every occurrence of from in s replaced by to.",
        Signature::OneOf(vec![vec![Utf8, Utf8, Utf8]]),
        utf8_out,
        replace,
    );
    add(
        "lpad",
        "LPAD(s, len, pad): s left-padded with pad to len characters (or cut to len); NULL if len < 0 or \
         pad is empty.",
        Signature::OneOf(vec![vec![Utf8, Int64, Utf8]]),
        utf8_out,
        lpad,
    );
    add(
        "rpad",
        "RPAD(s, len, pad): s right-padded with pad to len characters (or cut to len); NULL if len < 0 or \
         pad is empty.",
        Signature::OneOf(vec![vec![Utf8, Int64, Utf8]]),
        utf8_out,
        rpad,
    );
    add(
        "reverse",
        "REVERSE(s): the characters of s in reverse order.",
        s1(),
        utf8_out,
        reverse,
    );
    add(
        "left",
        "LEFT(s, n): the first n characters of s ('' if n < 0).",
        s_i(),
        utf8_out,
        left,
    );
    add(
        "right",
        "RIGHT(s, n): the last n characters of s ('' if n < 0).",
        s_i(),
        utf8_out,
        right,
    );
    add(
        "repeat",
        "REPEAT(s, n): s repeated n times ('' if n <= 0).",
        s_i(),
        utf8_out,
        repeat,
    );
    add(
        "split_index",
        "SPLIT_INDEX(s, sep, i): the i-th (0-based) field of s split by sep; NULL if i is negative or out of \
         range.",
        Signature::OneOf(vec![vec![Utf8, Utf8, Int64]]),
        utf8_out,
        split_index,
    );
    add(
        "ascii",
        "ASCII(s): the first byte of s as a signed number (0 for ''), as Flink computes it.",
        s1(),
        int_out,
        ascii,
    );
    add(
        "chr",
        "CHR(n): the character with code n modulo 256 ('' for negative n).",
        Signature::OneOf(vec![vec![Int64]]),
        utf8_out,
        chr,
    );
    add(
        "regexp_extract",
        "REGEXP_EXTRACT(s, regex[, group]): the given group (default 0, the whole match) of the first match; \
         NULL if there is no match or the regex is invalid.",
        Signature::OneOf(vec![vec![Utf8, Utf8], vec![Utf8, Utf8, Int64]]),
        utf8_out,
        regexp_extract,
    );
    add(
        "regexp_replace",
        "REGEXP_REPLACE(s, regex, replacement): every match replaced by the literal replacement; NULL if the \
         regex is invalid.",
        Signature::OneOf(vec![vec![Utf8, Utf8, Utf8]]),
        utf8_out,
        regexp_replace,
    );
    add(
        "startswith",
        "STARTSWITH(s, prefix): whether s starts with prefix.",
        s2(),
        |_| Ok(DataType::Boolean),
        startswith,
    );
    add(
        "endswith",
        "ENDSWITH(s, suffix): whether s ends with suffix.",
        s2(),
        |_| Ok(DataType::Boolean),
        endswith,
    );
    add(
        "to_base64",
        "TO_BASE64(s): the Base64 encoding of s's UTF-8 bytes.",
        s1(),
        utf8_out,
        to_base64,
    );
    add(
        "from_base64",
        "FROM_BASE64(s): Base64-decoded s as a string; NULL if s is not valid Base64.",
        s1(),
        utf8_out,
        from_base64,
    );
}

/// Number of characters in `s`.
fn char_count(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.chars().count()
    }
}

/// Byte offset of character `idx` (or `s.len()` past the end).
fn byte_at(s: &str, idx: usize) -> usize {
    if s.is_ascii() {
        return idx.min(s.len());
    }
    s.char_indices().nth(idx).map_or(s.len(), |(b, _)| b)
}

/// Characters `start..end` of `s`.
fn char_slice(s: &str, start: usize, end: usize) -> &str {
    let (b0, b1) = (byte_at(s, start), byte_at(s, end));
    s.get(b0..b1.max(b0)).unwrap_or("")
}

/// 1-based character position of the byte offset `b` in `s`.
fn char_pos(s: &str, b: usize) -> i32 {
    let before = s.get(..b).unwrap_or(s);
    i32::try_from(char_count(before))
        .unwrap_or(i32::MAX)
        .saturating_add(1)
}

/// Applies `f` to every non-NULL value of the single string argument.
fn map_strings(
    function: &'static str,
    args: &[ArrayRef],
    n: usize,
    mut f: impl FnMut(&str, &mut String) -> bool,
) -> Result<ArrayRef, KernelError> {
    arity(function, args, &[1])?;
    rows(function, args, n)?;
    let s = utf8(function, args, 0)?;
    let mut out = Utf8Out::new(function, n);
    let mut buf = String::new();
    for v in s.iter() {
        match v {
            Some(v) => {
                buf.clear();
                if f(v, &mut buf) {
                    out.push(&buf)?;
                } else {
                    out.push_null();
                }
            }
            None => out.push_null(),
        }
    }
    Ok(out.finish())
}

/// Flink's substring: 1-based `pos` (0 means 1, negative counts from the end), optional `len`.
fn flink_substr(s: &str, pos: i64, len: Option<i64>) -> Option<&str> {
    if len.is_some_and(|l| l < 0) {
        return None;
    }
    let n = char_count(s) as i64;
    let start = if pos > 0 {
        pos - 1
    } else if pos < 0 {
        n + pos
    } else {
        0
    };
    if start < 0 || start >= n {
        return Some("");
    }
    let end = match len {
        Some(l) if n - start >= l => start + l,
        _ => n,
    };
    Some(char_slice(s, start as usize, end as usize))
}

fn substr(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    const F: &str = "substr";
    arity(F, args, &[2, 3])?;
    rows(F, args, n)?;
    let s = utf8(F, args, 0)?;
    let pos = int64(F, args, 1)?;
    let len = if args.len() == 3 {
        Some(int64(F, args, 2)?)
    } else {
        None
    };
    let mut out = Utf8Out::new(F, n);
    for i in 0..n {
        let l = match &len {
            Some(l) if l.is_null(i) => {
                out.push_null();
                continue;
            }
            Some(l) => Some(l.value(i)),
            None => None,
        };
        if s.is_null(i) || pos.is_null(i) {
            out.push_null();
            continue;
        }
        out.push_opt(flink_substr(s.value(i), pos.value(i), l))?;
    }
    Ok(out.finish())
}

#[derive(Clone, Copy)]
enum Side {
    Both,
    Leading,
    Trailing,
}

fn trim_kernel(
    function: &'static str,
    side: Side,
    args: &[ArrayRef],
    n: usize,
) -> Result<ArrayRef, KernelError> {
    arity(function, args, &[1, 2])?;
    rows(function, args, n)?;
    let s = utf8(function, args, 0)?;
    let chars = if args.len() == 2 {
        Some(utf8(function, args, 1)?)
    } else {
        None
    };
    let mut out = Utf8Out::new(function, n);
    for i in 0..n {
        if s.is_null(i) || chars.as_ref().is_some_and(|c| c.is_null(i)) {
            out.push_null();
            continue;
        }
        let set = chars.as_ref().map_or(" ", |c| c.value(i));
        let pred = |c: char| set.contains(c);
        let v = s.value(i);
        out.push(match side {
            Side::Both => v.trim_matches(pred),
            Side::Leading => v.trim_start_matches(pred),
            Side::Trailing => v.trim_end_matches(pred),
        })?;
    }
    Ok(out.finish())
}

fn btrim(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    trim_kernel("btrim", Side::Both, args, n)
}

fn ltrim(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    trim_kernel("ltrim", Side::Leading, args, n)
}

fn rtrim(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    trim_kernel("rtrim", Side::Trailing, args, n)
}

/// Position of `needle` in `hay` (1-based characters, 0 if absent, 1 for an empty needle).
fn position(hay: &str, needle: &str) -> i32 {
    match hay.find(needle) {
        Some(b) => char_pos(hay, b),
        None => 0,
    }
}

fn strpos(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    const F: &str = "strpos";
    arity(F, args, &[2])?;
    rows(F, args, n)?;
    let hay = utf8(F, args, 0)?;
    let needle = utf8(F, args, 1)?;
    let out: Int32Array = hay
        .iter()
        .zip(needle.iter())
        .map(|(h, s)| Some(position(h?, s?)))
        .collect();
    Ok(Arc::new(out))
}

fn locate(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    const F: &str = "locate";
    arity(F, args, &[2, 3])?;
    rows(F, args, n)?;
    let needle = utf8(F, args, 0)?;
    let hay = utf8(F, args, 1)?;
    let start = if args.len() == 3 {
        Some(int64(F, args, 2)?)
    } else {
        None
    };
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        if needle.is_null(i) || hay.is_null(i) || start.as_ref().is_some_and(|s| s.is_null(i)) {
            out.push(None);
            continue;
        }
        let (nd, h) = (needle.value(i), hay.value(i));
        // Flink: an empty needle is found at 1 whatever the start; a start below 1 counts as 1.
        if nd.is_empty() {
            out.push(Some(1));
            continue;
        }
        let from = start.as_ref().map_or(1, |s| s.value(i)).max(1) - 1;
        let from = usize::try_from(from).unwrap_or(usize::MAX);
        if from > char_count(h) {
            out.push(Some(0));
            continue;
        }
        let b = byte_at(h, from);
        out.push(Some(match h.get(b..).and_then(|rest| rest.find(nd)) {
            Some(off) => char_pos(h, b + off),
            None => 0,
        }));
    }
    Ok(Arc::new(Int32Array::from(out)))
}

fn upper(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    map_strings("upper", args, n, |s, buf| {
        if s.is_ascii() {
            buf.extend(s.chars().map(|c| c.to_ascii_uppercase()));
        } else {
            buf.push_str(&s.to_uppercase());
        }
        true
    })
}

fn lower(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    map_strings("lower", args, n, |s, buf| {
        if s.is_ascii() {
            buf.extend(s.chars().map(|c| c.to_ascii_lowercase()));
        } else {
            buf.push_str(&s.to_lowercase());
        }
        true
    })
}

/// Calcite's INITCAP, which Flink uses: words are runs of ASCII letters and digits; other characters
/// (including non-ASCII letters) separate words and are kept as they are.
fn initcap(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    map_strings("initcap", args, n, |s, buf| {
        let mut start = true;
        for c in s.chars() {
            if c.is_ascii_alphanumeric() {
                buf.push(if start {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                });
                start = false;
            } else {
                buf.push(c);
                start = true;
            }
        }
        true
    })
}

fn char_length(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    const F: &str = "char_length";
    arity(F, args, &[1])?;
    rows(F, args, n)?;
    let s = utf8(F, args, 0)?;
    let out: Int32Array = s
        .iter()
        .map(|v| v.map(|v| i32::try_from(char_count(v)).unwrap_or(i32::MAX)))
        .collect();
    Ok(Arc::new(out))
}

fn reverse(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    map_strings("reverse", args, n, |s, buf| {
        buf.extend(s.chars().rev());
        true
    })
}

fn ascii(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    const F: &str = "ascii";
    arity(F, args, &[1])?;
    rows(F, args, n)?;
    let s = utf8(F, args, 0)?;
    // Flink reads the first UTF-8 byte as a Java (signed) byte.
    let out: Int32Array = s
        .iter()
        .map(|v| v.map(|v| v.as_bytes().first().map_or(0, |b| i32::from(*b as i8))))
        .collect();
    Ok(Arc::new(out))
}

fn chr(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    const F: &str = "chr";
    arity(F, args, &[1])?;
    rows(F, args, n)?;
    let codes = int64(F, args, 0)?;
    let mut out = Utf8Out::new(F, n);
    let mut buf = [0u8; 4];
    for v in codes.iter() {
        match v {
            Some(c) if c < 0 => out.push("")?,
            Some(c) => out.push(char::from((c & 0xFF) as u8).encode_utf8(&mut buf))?,
            None => out.push_null(),
        }
    }
    Ok(out.finish())
}

/// Every argument cast to Utf8 (CONCAT and CONCAT_WS accept any type, like their DataFusion coercion).
fn all_utf8(function: &'static str, args: &[ArrayRef]) -> Result<Vec<StringArray>, KernelError> {
    args.iter()
        .enumerate()
        .map(|(i, a)| {
            let a = cast_to(function, a, &DataType::Utf8)?;
            utf8(function, &[a], 0).map_err(|e| match e {
                KernelError::ArgType {
                    function,
                    expected,
                    actual,
                    ..
                } => KernelError::ArgType {
                    function,
                    index: i,
                    expected,
                    actual,
                },
                other => other,
            })
        })
        .collect()
}

fn concat(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    const F: &str = "concat";
    if args.is_empty() {
        return Err(KernelError::Arity {
            function: F,
            expected: "at least 1".into(),
            got: 0,
        });
    }
    rows(F, args, n)?;
    let parts = all_utf8(F, args)?;
    let mut out = Utf8Out::new(F, n);
    let mut buf = String::new();
    'rows: for i in 0..n {
        buf.clear();
        for p in &parts {
            if p.is_null(i) {
                out.push_null();
                continue 'rows;
            }
            buf.push_str(p.value(i));
        }
        out.push(&buf)?;
    }
    Ok(out.finish())
}

fn concat_ws(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    const F: &str = "concat_ws";
    if args.len() < 2 {
        return Err(KernelError::Arity {
            function: F,
            expected: "at least 2".into(),
            got: args.len(),
        });
    }
    rows(F, args, n)?;
    let parts = all_utf8(F, args)?;
    let (sep, rest) = parts.split_at(1);
    let sep = &sep[0];
    let mut out = Utf8Out::new(F, n);
    let mut buf = String::new();
    for i in 0..n {
        if sep.is_null(i) {
            out.push_null();
            continue;
        }
        buf.clear();
        let mut first = true;
        for p in rest.iter().filter(|p| p.is_valid(i)) {
            if !first {
                buf.push_str(sep.value(i));
            }
            buf.push_str(p.value(i));
            first = false;
        }
        out.push(&buf)?;
    }
    Ok(out.finish())
}

fn replace(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    const F: &str = "replace";
    arity(F, args, &[3])?;
    rows(F, args, n)?;
    let (s, from, to) = (utf8(F, args, 0)?, utf8(F, args, 1)?, utf8(F, args, 2)?);
    let mut out = Utf8Out::new(F, n);
    for i in 0..n {
        if s.is_null(i) || from.is_null(i) || to.is_null(i) {
            out.push_null();
            continue;
        }
        let (s, from, to) = (s.value(i), from.value(i), to.value(i));
        // Bound the result before building it: at most one match per character (+1) for an empty
        // pattern, otherwise one per from.len() bytes.
        let matches = if from.is_empty() {
            char_count(s) + 1
        } else {
            s.len() / from.len()
        };
        check_len(
            F,
            matches
                .checked_mul(to.len())
                .and_then(|m| m.checked_add(s.len())),
        )?;
        out.push(&s.replace(from, to))?;
    }
    Ok(out.finish())
}

fn pad_kernel(
    function: &'static str,
    left: bool,
    args: &[ArrayRef],
    n: usize,
) -> Result<ArrayRef, KernelError> {
    arity(function, args, &[3])?;
    rows(function, args, n)?;
    let s = utf8(function, args, 0)?;
    let len = int64(function, args, 1)?;
    let pad = utf8(function, args, 2)?;
    let mut out = Utf8Out::new(function, n);
    let mut buf = String::new();
    for i in 0..n {
        if s.is_null(i) || len.is_null(i) || pad.is_null(i) {
            out.push_null();
            continue;
        }
        let (s, len, pad) = (s.value(i), len.value(i), pad.value(i));
        if len < 0 || pad.is_empty() {
            out.push_null();
            continue;
        }
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        check_len(function, len.checked_mul(4))?;
        let n_chars = char_count(s);
        buf.clear();
        if len <= n_chars {
            buf.push_str(char_slice(s, 0, len));
        } else {
            let fill = pad.chars().cycle().take(len - n_chars);
            if left {
                buf.extend(fill);
                buf.push_str(s);
            } else {
                buf.push_str(s);
                buf.extend(fill);
            }
        }
        out.push(&buf)?;
    }
    Ok(out.finish())
}

fn lpad(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    pad_kernel("lpad", true, args, n)
}

fn rpad(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    pad_kernel("rpad", false, args, n)
}

fn str_int_kernel(
    function: &'static str,
    args: &[ArrayRef],
    n: usize,
    mut f: impl FnMut(&str, i64, &mut String) -> Result<(), KernelError>,
) -> Result<ArrayRef, KernelError> {
    arity(function, args, &[2])?;
    rows(function, args, n)?;
    let s = utf8(function, args, 0)?;
    let k = int64(function, args, 1)?;
    let mut out = Utf8Out::new(function, n);
    let mut buf = String::new();
    for i in 0..n {
        if s.is_null(i) || k.is_null(i) {
            out.push_null();
            continue;
        }
        buf.clear();
        f(s.value(i), k.value(i), &mut buf)?;
        out.push(&buf)?;
    }
    Ok(out.finish())
}

fn left(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    str_int_kernel("left", args, n, |s, k, buf| {
        if k > 0 {
            buf.push_str(char_slice(s, 0, usize::try_from(k).unwrap_or(usize::MAX)));
        }
        Ok(())
    })
}

fn right(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    str_int_kernel("right", args, n, |s, k, buf| {
        if k > 0 {
            let total = char_count(s);
            let k = usize::try_from(k).unwrap_or(usize::MAX).min(total);
            buf.push_str(char_slice(s, total - k, total));
        }
        Ok(())
    })
}

fn repeat(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    str_int_kernel("repeat", args, n, |s, k, buf| {
        if k > 0 && !s.is_empty() {
            let k = usize::try_from(k).unwrap_or(usize::MAX);
            check_len("repeat", s.len().checked_mul(k))?;
            buf.push_str(&s.repeat(k));
        }
        Ok(())
    })
}

/// Java's `Character.isWhitespace` (Unicode whitespace except no-break spaces).
fn java_whitespace(c: char) -> bool {
    c.is_whitespace() && !matches!(c, '\u{00A0}' | '\u{2007}' | '\u{202F}')
}

/// The `idx`-th field as commons-lang's `splitByWholeSeparatorPreserveAllTokens` (which Flink uses)
/// produces it: an empty string has no fields, an empty separator splits on whitespace.
fn split_field<'a>(s: &'a str, sep: &str, idx: i64) -> Option<&'a str> {
    let idx = usize::try_from(idx).ok()?;
    if s.is_empty() {
        return None;
    }
    if sep.is_empty() {
        s.split(java_whitespace).nth(idx)
    } else {
        s.split(sep).nth(idx)
    }
}

fn split_index(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    const F: &str = "split_index";
    arity(F, args, &[3])?;
    rows(F, args, n)?;
    let (s, sep, idx) = (utf8(F, args, 0)?, utf8(F, args, 1)?, int64(F, args, 2)?);
    let mut out = Utf8Out::new(F, n);
    for i in 0..n {
        if s.is_null(i) || sep.is_null(i) || idx.is_null(i) {
            out.push_null();
            continue;
        }
        out.push_opt(split_field(s.value(i), sep.value(i), idx.value(i)))?;
    }
    Ok(out.finish())
}

/// Compiles regexes, remembering the last one; an invalid regex is `None` (Flink returns NULL).
#[derive(Default)]
struct RegexCache {
    last: Option<(String, Option<Regex>)>,
}

impl RegexCache {
    fn get(&mut self, pattern: &str) -> Option<&Regex> {
        if !matches!(&self.last, Some((p, _)) if p == pattern) {
            let compiled = RegexBuilder::new(pattern).size_limit(1 << 20).build().ok();
            self.last = Some((pattern.to_string(), compiled));
        }
        self.last.as_ref().and_then(|(_, r)| r.as_ref())
    }
}

fn regexp_extract(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    const F: &str = "regexp_extract";
    arity(F, args, &[2, 3])?;
    rows(F, args, n)?;
    let (s, re) = (utf8(F, args, 0)?, utf8(F, args, 1)?);
    let group = if args.len() == 3 {
        Some(int64(F, args, 2)?)
    } else {
        None
    };
    let mut cache = RegexCache::default();
    let mut out = Utf8Out::new(F, n);
    for i in 0..n {
        if s.is_null(i) || re.is_null(i) || group.as_ref().is_some_and(|g| g.is_null(i)) {
            out.push_null();
            continue;
        }
        let g = group.as_ref().map_or(0, |g| g.value(i));
        let found = usize::try_from(g).ok().and_then(|g| {
            let caps = cache.get(re.value(i))?.captures(s.value(i))?;
            caps.get(g).map(|m| m.as_str())
        });
        out.push_opt(found)?;
    }
    Ok(out.finish())
}

fn regexp_replace(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    const F: &str = "regexp_replace";
    arity(F, args, &[3])?;
    rows(F, args, n)?;
    let (s, re, to) = (utf8(F, args, 0)?, utf8(F, args, 1)?, utf8(F, args, 2)?);
    let mut cache = RegexCache::default();
    let mut out = Utf8Out::new(F, n);
    for i in 0..n {
        if s.is_null(i) || re.is_null(i) || to.is_null(i) {
            out.push_null();
            continue;
        }
        let (v, to) = (s.value(i), to.value(i));
        let Some(regex) = cache.get(re.value(i)) else {
            out.push_null();
            continue;
        };
        // At most one match per character (+1, for empty matches).
        check_len(
            F,
            (char_count(v) + 1)
                .checked_mul(to.len())
                .and_then(|m| m.checked_add(v.len())),
        )?;
        out.push(&regex.replace_all(v, NoExpand(to)))?;
    }
    Ok(out.finish())
}

fn affix_kernel(
    function: &'static str,
    args: &[ArrayRef],
    n: usize,
    f: fn(&str, &str) -> bool,
) -> Result<ArrayRef, KernelError> {
    arity(function, args, &[2])?;
    rows(function, args, n)?;
    let (s, a) = (utf8(function, args, 0)?, utf8(function, args, 1)?);
    let out: BooleanArray = s
        .iter()
        .zip(a.iter())
        .map(|(s, a)| Some(f(s?, a?)))
        .collect();
    Ok(Arc::new(out))
}

fn startswith(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    affix_kernel("startswith", args, n, |s, a| s.starts_with(a))
}

fn endswith(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    affix_kernel("endswith", args, n, |s, a| s.ends_with(a))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn to_base64(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    map_strings("to_base64", args, n, |s, buf| {
        for chunk in s.as_bytes().chunks(3) {
            let byte = |k: usize| chunk.get(k).copied().unwrap_or(0);
            let b = [byte(0), byte(1), byte(2)];
            let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for k in 0..4 {
                if k <= chunk.len() {
                    buf.push(char::from(B64[((v >> (18 - 6 * k)) & 63) as usize]));
                } else {
                    buf.push('=');
                }
            }
        }
        true
    })
}

/// Decodes standard Base64 (padding optional, as Java's decoder); None if invalid.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let body = s
        .strip_suffix("==")
        .or_else(|| s.strip_suffix('='))
        .unwrap_or(s);
    if s.len() != body.len() && !s.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in body.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A single leftover character (6 bits) cannot encode a byte.
    if body.len() % 4 == 1 {
        return None;
    }
    Some(out)
}

fn from_base64(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    map_strings("from_base64", args, n, |s, buf| match decode_base64(s) {
        Some(bytes) => {
            buf.push_str(&String::from_utf8_lossy(&bytes));
            true
        }
        None => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::Int32Type;

    fn call(name: &str, args: Vec<ArrayRef>) -> Result<ArrayRef, KernelError> {
        let f = crate::lookup(name).expect("function exists");
        let n = args.first().map_or(1, |a| a.len());
        (f.kernel)(&args, n)
    }

    fn strs(v: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(v.to_vec()))
    }

    fn s(v: &str) -> ArrayRef {
        strs(&[Some(v)])
    }

    fn null_s() -> ArrayRef {
        strs(&[None])
    }

    fn i(v: i64) -> ArrayRef {
        Arc::new(Int64Array::from(vec![v]))
    }

    fn null_i() -> ArrayRef {
        Arc::new(Int64Array::from(vec![None]))
    }

    /// The single value of a one-row string result.
    fn one(name: &str, args: Vec<ArrayRef>) -> Option<String> {
        let out = call(name, args).unwrap_or_else(|e| panic!("{name}: {e}"));
        let a = out.as_string::<i32>();
        a.is_valid(0).then(|| a.value(0).to_string())
    }

    fn one_int(name: &str, args: Vec<ArrayRef>) -> Option<i32> {
        let out = call(name, args).unwrap_or_else(|e| panic!("{name}: {e}"));
        let a = out.as_primitive::<Int32Type>();
        a.is_valid(0).then(|| a.value(0))
    }

    fn some(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn substr_like_flink() {
        assert_eq!(one("substr", vec![s("hello"), i(-3), i(2)]), some("ll"));
        assert_eq!(one("substr", vec![s("hello"), i(0), i(2)]), some("he"));
        assert_eq!(one("substr", vec![s("hello"), i(2)]), some("ello"));
        assert_eq!(one("substr", vec![s("hello"), i(10)]), some(""));
        assert_eq!(one("substr", vec![s("hello"), i(-10), i(3)]), some(""));
        assert_eq!(one("substr", vec![s("hello"), i(2), i(-1)]), None);
        assert_eq!(
            one("substr", vec![s("hello"), i(2), i(i64::MAX)]),
            some("ello")
        );
        assert_eq!(one("substr", vec![s("hello"), i(i64::MIN)]), some(""));
        assert_eq!(one("substr", vec![s(""), i(1), i(1)]), some(""));
        assert_eq!(one("substring", vec![s("añ😀b"), i(2), i(2)]), some("ñ😀"));
        assert_eq!(one("substr", vec![null_s(), i(1)]), None);
        assert_eq!(one("substr", vec![s("x"), null_i()]), None);
        assert_eq!(one("substr", vec![s("x"), i(1), null_i()]), None);
        assert!(call("substr", vec![s("x")]).is_err());
        assert!(call("substr", vec![s("x"), s("1")]).is_err());
    }

    #[test]
    fn trims() {
        assert_eq!(one("btrim", vec![s("  a b  ")]), some("a b"));
        assert_eq!(one("trim", vec![s("  a b  ")]), some("a b"));
        assert_eq!(one("btrim", vec![s("xyhixy"), s("xy")]), some("hi"));
        assert_eq!(one("ltrim", vec![s(" \ta ")]), some("\ta "));
        assert_eq!(one("rtrim", vec![s(" a ")]), some(" a"));
        assert_eq!(one("ltrim", vec![s("ééa"), s("é")]), some("a"));
        assert_eq!(one("btrim", vec![s("")]), some(""));
        assert_eq!(one("btrim", vec![null_s()]), None);
        assert_eq!(one("btrim", vec![s("a"), null_s()]), None);
    }

    #[test]
    fn positions() {
        assert_eq!(one_int("strpos", vec![s("abc"), s("c")]), Some(3));
        assert_eq!(one_int("strpos", vec![s("abc"), s("")]), Some(1));
        assert_eq!(one_int("strpos", vec![s("abc"), s("x")]), Some(0));
        assert_eq!(one_int("strpos", vec![s("aañb"), s("ñb")]), Some(3));
        assert_eq!(one_int("strpos", vec![null_s(), s("x")]), None);
        assert_eq!(one_int("instr", vec![s("abcb"), s("b")]), Some(2));
        assert_eq!(one_int("instr", vec![s(""), s("")]), Some(1));
        assert_eq!(one_int("locate", vec![s("b"), s("abcb"), i(3)]), Some(4));
        assert_eq!(one_int("locate", vec![s("b"), s("abcb"), i(0)]), Some(2));
        assert_eq!(one_int("locate", vec![s("b"), s("abcb"), i(-1)]), Some(2));
        assert_eq!(one_int("locate", vec![s(""), s("abc"), i(5)]), Some(1));
        assert_eq!(one_int("locate", vec![s("a"), s("abc"), i(4)]), Some(0));
        assert_eq!(one_int("locate", vec![s("c"), s("abc"), i(3)]), Some(3));
        assert_eq!(one_int("locate", vec![s("b"), s("ñbñb"), i(3)]), Some(4));
        assert_eq!(one_int("locate", vec![s("ñ"), s("añb")]), Some(2));
        assert_eq!(one_int("locate", vec![s("a"), s("abc"), null_i()]), None);
    }

    #[test]
    fn case_functions() {
        assert_eq!(one("upper", vec![s("straße é")]), some("STRASSE É"));
        assert_eq!(one("lower", vec![s("ÀB")]), some("àb"));
        assert_eq!(one("upper", vec![s("")]), some(""));
        assert_eq!(one("upper", vec![null_s()]), None);
        assert_eq!(
            one("initcap", vec![s("hello wORLD-foo élan 3rd_x")]),
            some("Hello World-Foo éLan 3rd_X")
        );
        assert_eq!(one("initcap", vec![null_s()]), None);
    }

    #[test]
    fn lengths() {
        assert_eq!(one_int("char_length", vec![s("añ😀")]), Some(3));
        assert_eq!(one_int("character_length", vec![s("")]), Some(0));
        assert_eq!(one_int("char_length", vec![null_s()]), None);
        let big: ArrayRef = Arc::new(arrow::array::LargeStringArray::from(vec!["abc"]));
        assert_eq!(one_int("char_length", vec![big]), Some(3));
        assert!(call("char_length", vec![i(1)]).is_err());
    }

    #[test]
    fn concats() {
        assert_eq!(one("concat", vec![s("a"), s("b"), s("")]), some("ab"));
        assert_eq!(one("concat", vec![s("a"), null_s()]), None);
        assert_eq!(one("concat", vec![s("a"), i(1)]), some("a1"));
        assert_eq!(
            one("concat_ws", vec![s("-"), s("a"), null_s(), s("b")]),
            some("a-b")
        );
        assert_eq!(one("concat_ws", vec![null_s(), s("a")]), None);
        assert_eq!(one("concat_ws", vec![s("-"), null_s()]), some(""));
        assert!(call("concat", vec![]).is_err());
        assert!(call("concat_ws", vec![s("-")]).is_err());
    }

    #[test]
    fn replace_and_pads() {
        assert_eq!(
            one("replace", vec![s("abab"), s("b"), s("xy")]),
            some("axyaxy")
        );
        assert_eq!(one("replace", vec![s("ab"), s(""), s("x")]), some("xaxbx"));
        assert_eq!(one("replace", vec![s("ab"), null_s(), s("x")]), None);
        assert_eq!(one("lpad", vec![s("hi"), i(4), s("??")]), some("??hi"));
        assert_eq!(one("lpad", vec![s("hi"), i(5), s("ab")]), some("abahi"));
        assert_eq!(one("lpad", vec![s("hi"), i(1), s("??")]), some("h"));
        assert_eq!(one("lpad", vec![s("hi"), i(0), s("?")]), some(""));
        assert_eq!(one("lpad", vec![s("hi"), i(5), s("")]), None);
        assert_eq!(one("lpad", vec![s("hi"), i(-1), s("x")]), None);
        assert_eq!(one("rpad", vec![s("hi"), i(5), s("ab")]), some("hiaba"));
        assert_eq!(one("rpad", vec![s("hi"), i(1), s("ab")]), some("h"));
        assert_eq!(one("rpad", vec![s("é"), i(3), s("ü")]), some("éüü"));
        assert_eq!(one("rpad", vec![null_s(), i(3), s("x")]), None);
        assert!(call("lpad", vec![s("a"), i(i64::MAX), s("x")]).is_err());
    }

    #[test]
    fn left_right_repeat_reverse() {
        assert_eq!(one("left", vec![s("hello"), i(2)]), some("he"));
        assert_eq!(one("left", vec![s("hello"), i(-1)]), some(""));
        assert_eq!(one("left", vec![s("héllo"), i(99)]), some("héllo"));
        assert_eq!(one("right", vec![s("hello"), i(2)]), some("lo"));
        assert_eq!(one("right", vec![s("héllo"), i(4)]), some("éllo"));
        assert_eq!(one("right", vec![s("hello"), i(-2)]), some(""));
        assert_eq!(one("right", vec![s("hi"), i(5)]), some("hi"));
        assert_eq!(one("left", vec![null_s(), i(1)]), None);
        assert_eq!(one("repeat", vec![s("ab"), i(3)]), some("ababab"));
        assert_eq!(one("repeat", vec![s("ab"), i(0)]), some(""));
        assert_eq!(one("repeat", vec![s("ab"), i(-2)]), some(""));
        assert_eq!(one("repeat", vec![s("ab"), null_i()]), None);
        assert!(call("repeat", vec![s("ab"), i(i64::MAX)]).is_err());
        assert_eq!(one("reverse", vec![s("añb")]), some("bña"));
        assert_eq!(one("reverse", vec![null_s()]), None);
    }

    #[test]
    fn split_index_like_flink() {
        assert_eq!(
            one("split_index", vec![s("a,b,,c"), s(","), i(2)]),
            some("")
        );
        assert_eq!(
            one("split_index", vec![s("a,b,,c"), s(","), i(3)]),
            some("c")
        );
        assert_eq!(
            one("split_index", vec![s("a||b"), s("||"), i(1)]),
            some("b")
        );
        assert_eq!(one("split_index", vec![s("a,b"), s(","), i(5)]), None);
        assert_eq!(one("split_index", vec![s("a b"), s(""), i(1)]), some("b"));
        assert_eq!(one("split_index", vec![s(""), s(","), i(0)]), None);
        assert_eq!(one("split_index", vec![s("a,b"), s(","), i(-1)]), None);
        assert_eq!(one("split_index", vec![s("a,"), s(","), i(1)]), some(""));
        assert_eq!(one("split_index", vec![null_s(), s(","), i(0)]), None);
    }

    #[test]
    fn ascii_and_chr() {
        assert_eq!(one_int("ascii", vec![s("abc")]), Some(97));
        assert_eq!(one_int("ascii", vec![s("")]), Some(0));
        assert_eq!(one_int("ascii", vec![s("é")]), Some(-61));
        assert_eq!(one_int("ascii", vec![null_s()]), None);
        assert_eq!(one("chr", vec![i(97)]), some("a"));
        assert_eq!(one("chr", vec![i(353)]), some("a"));
        assert_eq!(one("chr", vec![i(-1)]), some(""));
        assert_eq!(one("chr", vec![i(0)]), some("\0"));
        assert_eq!(one("chr", vec![i(200)]), some("È"));
        assert_eq!(one("chr", vec![null_i()]), None);
    }

    #[test]
    fn regexps() {
        assert_eq!(
            one(
                "regexp_extract",
                vec![s("foothebar"), s("foo(.*?)(bar)"), i(2)]
            ),
            some("bar")
        );
        assert_eq!(
            one("regexp_extract", vec![s("foothebar"), s("foo(.*?)(bar)")]),
            some("foothebar")
        );
        assert_eq!(
            one(
                "regexp_extract",
                vec![s("foothebar"), s("foo(.*?)(bar)"), i(5)]
            ),
            None
        );
        assert_eq!(
            one(
                "regexp_extract",
                vec![s("foothebar"), s("foo(.*?)(bar)"), i(-1)]
            ),
            None
        );
        assert_eq!(
            one("regexp_extract", vec![s("foothebar"), s("xyz"), i(0)]),
            None
        );
        assert_eq!(
            one("regexp_extract", vec![s("foothebar"), s("("), i(0)]),
            None
        );
        assert_eq!(
            one("regexp_extract", vec![s("ab"), s("a(x)?b"), i(1)]),
            None
        );
        assert_eq!(one("regexp_extract", vec![null_s(), s("a")]), None);
        assert_eq!(
            one("regexp_replace", vec![s("foobar"), s("o+"), s("$0-")]),
            some("f$0-bar")
        );
        assert_eq!(
            one("regexp_replace", vec![s("foobar"), s("(o)"), s("X")]),
            some("fXXbar")
        );
        assert_eq!(
            one("regexp_replace", vec![s("foobar"), s("("), s("X")]),
            None
        );
        assert_eq!(
            one("regexp_replace", vec![s("a.b"), s("\\."), s("\\$")]),
            some("a\\$b")
        );
        assert_eq!(
            one("regexp_replace", vec![s("ab"), s(""), s("-")]),
            some("-a-b-")
        );
        assert_eq!(one("regexp_replace", vec![s("ab"), s("a"), null_s()]), None);
    }

    #[test]
    fn affixes_and_base64() {
        let b = |name: &str, a: &str, x: &str| {
            let out = call(name, vec![s(a), s(x)]).expect("call");
            out.as_boolean().value(0)
        };
        assert!(b("startswith", "hello", "he"));
        assert!(!b("startswith", "hello", "lo"));
        assert!(b("endswith", "hello", "lo"));
        assert!(b("endswith", "hello", ""));
        assert!(
            call("startswith", vec![null_s(), s("a")])
                .expect("call")
                .is_null(0)
        );
        assert_eq!(one("to_base64", vec![s("hello")]), some("aGVsbG8="));
        assert_eq!(one("to_base64", vec![s("")]), some(""));
        assert_eq!(one("to_base64", vec![s("ab")]), some("YWI="));
        assert_eq!(one("from_base64", vec![s("aGVsbG8=")]), some("hello"));
        assert_eq!(one("from_base64", vec![s("aGVsbG8")]), some("hello"));
        assert_eq!(one("from_base64", vec![s("YWI=")]), some("ab"));
        assert_eq!(one("from_base64", vec![s("!!!")]), None);
        assert_eq!(one("from_base64", vec![s("a")]), None);
        assert_eq!(one("from_base64", vec![null_s()]), None);
        for text in ["", "f", "fo", "foo", "foob", "fooba", "foobar", "añ😀"] {
            let enc = one("to_base64", vec![s(text)]).expect("encoded");
            assert_eq!(one("from_base64", vec![s(&enc)]), some(text));
        }
    }

    #[test]
    fn multi_row_with_nulls() {
        let out = call("upper", vec![strs(&[Some("a"), None, Some("b")])]).expect("upper");
        let a = out.as_string::<i32>();
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            vec![Some("A"), None, Some("B")]
        );
    }
}
