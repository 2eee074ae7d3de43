//! Numeric functions. Type-preserving functions (ABS, CEIL, FLOOR, SIGN, ROUND, TRUNCATE, MOD) keep the
//! integer width or decimal type of their argument like Flink; transcendental ones work on DOUBLE.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, BooleanArray, Decimal128Array, Float64Array,
    Int64Array, PrimitiveArray, new_null_array,
};
use arrow::compute::kernels::cmp::{gt, lt};
use arrow::compute::kernels::zip::zip;
use arrow::compute::{is_null, nullif, or};
use arrow::datatypes::{
    DataType, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
};

use crate::args::{
    arity, arrow_err, cast_to, common_type, float64, int64, invalid, is_integer, is_numeric, rows,
};
use crate::{Function, KernelError, Signature};

pub(crate) fn register(out: &mut Vec<Function>) {
    use DataType::{Float32, Float64, Int8, Int16, Int32, Int64};
    macro_rules! float_fn {
        ($name:literal, 1, $f:expr, $doc:literal) => {{
            extern "C" fn scalar(x: f64) -> f64 {
                let f: fn(f64) -> f64 = $f;
                f(x)
            }
            fn kernel(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
                float_unary($name, args, n, |x| scalar(x))
            }
            out.push(Function {
                name: $name,
                doc: $doc,
                signature: Signature::OneOf(vec![vec![Float64]]),
                return_type: |_| Ok(Float64),
                kernel,
                scalar: Some(crate::Scalar::F64(scalar)),
            });
        }};
        ($name:literal, 2, $f:expr, $doc:literal) => {{
            extern "C" fn scalar(a: f64, b: f64) -> f64 {
                let f: fn(f64, f64) -> f64 = $f;
                f(a, b)
            }
            fn kernel(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
                float_binary($name, args, n, |a, b| scalar(a, b))
            }
            out.push(Function {
                name: $name,
                doc: $doc,
                signature: Signature::OneOf(vec![vec![Float64, Float64]]),
                return_type: |_| Ok(Float64),
                kernel,
                scalar: Some(crate::Scalar::F64F64(scalar)),
            });
        }};
    }
    float_fn!(
        "sqrt",
        1,
        |x: f64| x.sqrt(),
        "SQRT(x): the square root of x (NaN if x < 0)."
    );
    float_fn!(
        "exp",
        1,
        |x: f64| x.exp(),
        "EXP(x): e raised to the power x."
    );
    float_fn!(
        "ln",
        1,
        |x: f64| x.ln(),
        "LN(x): the natural logarithm of x."
    );
    float_fn!(
        "log10",
        1,
        |x: f64| x.log10(),
        "LOG10(x): the base-10 logarithm of x."
    );
    float_fn!(
        "log2",
        1,
        |x: f64| x.ln() / std::f64::consts::LN_2,
        "LOG2(x): the base-2 logarithm of x (computed as ln(x) / ln(2) like Flink)."
    );
    float_fn!(
        "power",
        2,
        |a: f64, b: f64| a.powf(b),
        "POWER(x, y): x raised to the power y, as DOUBLE."
    );
    float_fn!("pow", 2, |a: f64, b: f64| a.powf(b), "Alias of POWER.");
    float_fn!(
        "sin",
        1,
        |x: f64| x.sin(),
        "SIN(x): the sine of x (radians)."
    );
    float_fn!(
        "cos",
        1,
        |x: f64| x.cos(),
        "COS(x): the cosine of x (radians)."
    );
    float_fn!(
        "tan",
        1,
        |x: f64| x.tan(),
        "TAN(x): the tangent of x (radians)."
    );
    float_fn!(
        "cot",
        1,
        |x: f64| 1.0 / x.tan(),
        "COT(x): the cotangent of x (radians)."
    );
    float_fn!(
        "asin",
        1,
        |x: f64| x.asin(),
        "ASIN(x): the arc sine of x, in radians."
    );
    float_fn!(
        "acos",
        1,
        |x: f64| x.acos(),
        "ACOS(x): the arc cosine of x, in radians."
    );
    float_fn!(
        "atan",
        1,
        |x: f64| x.atan(),
        "ATAN(x): the arc tangent of x, in radians."
    );
    float_fn!(
        "atan2",
        2,
        |a: f64, b: f64| a.atan2(b),
        "ATAN2(y, x): the angle of the point (x, y), in radians."
    );
    float_fn!(
        "sinh",
        1,
        |x: f64| x.sinh(),
        "SINH(x): the hyperbolic sine of x."
    );
    float_fn!(
        "cosh",
        1,
        |x: f64| x.cosh(),
        "COSH(x): the hyperbolic cosine of x."
    );
    float_fn!(
        "tanh",
        1,
        |x: f64| x.tanh(),
        "TANH(x): the hyperbolic tangent of x."
    );
    float_fn!(
        "degrees",
        1,
        |x: f64| x.to_degrees(),
        "DEGREES(x): radians x in degrees."
    );
    float_fn!(
        "radians",
        1,
        |x: f64| x.to_radians(),
        "RADIANS(x): degrees x in radians."
    );
    out.push(Function {
        name: "log",
        doc: "LOG(x): the natural logarithm of x; LOG(b, x): the base-b logarithm of x.",
        signature: Signature::OneOf(vec![vec![Float64], vec![Float64, Float64]]),
        return_type: |_| Ok(Float64),
        kernel: log,
        scalar: None,
    });
    out.push(Function {
        name: "pi",
        doc: "PI(): the constant π.",
        signature: Signature::OneOf(vec![vec![]]),
        return_type: |_| Ok(Float64),
        kernel: pi,
        scalar: None,
    });
    out.push(Function {
        name: "abs",
        doc: "ABS(x): the absolute value of x, of x's type (the minimum integer wraps, as in Flink).",
        signature: Signature::Any(1),
        return_type: numeric_same,
        kernel: abs,
        scalar: None,
    });
    out.push(Function {
        name: "sign",
        doc: "SIGN(x): -1, 0 or 1 with the sign of x, of x's type.",
        signature: Signature::Any(1),
        return_type: numeric_same,
        kernel: sign,
        scalar: None,
    });
    for (name, doc) in [
        (
            "ceil",
            "CEIL(x): the smallest integral value >= x; DECIMAL(p, s) gives DECIMAL(p, 0).",
        ),
        ("ceiling", "Alias of CEIL."),
    ] {
        out.push(Function {
            name,
            doc,
            signature: Signature::Any(1),
            return_type: integral_type,
            kernel: ceil,
            scalar: None,
        });
    }
    out.push(Function {
        name: "floor",
        doc: "FLOOR(x): the largest integral value <= x; DECIMAL(p, s) gives DECIMAL(p, 0).",
        signature: Signature::Any(1),
        return_type: integral_type,
        kernel: floor,
        scalar: None,
    });
    // ROUND and TRUNCATE take an optional digit count, so they cannot use `Any`; the listed types keep
    // integers and floats as they are, and route DECIMAL through DOUBLE (see `round_type`).
    let round_sig = || {
        let mut lists = Vec::new();
        for t in [Int8, Int16, Int32, Int64, Float32, Float64] {
            lists.push(vec![t.clone()]);
            lists.push(vec![t, Int64]);
        }
        Signature::OneOf(lists)
    };
    out.push(Function {
        name: "round",
        doc: "ROUND(x[, d]): x rounded half away from zero to d decimal places (default 0; negative d rounds \
              to tens, hundreds...), of x's type; a DOUBLE is rounded in its shortest decimal form like \
              Java's BigDecimal.valueOf, so ROUND(2.675, 2) = 2.68.",
        signature: round_sig(),
        return_type: round_type,
        kernel: round,
        scalar: None,
    });
    out.push(Function {
        name: "truncate",
        doc: "TRUNCATE(x[, d]): x truncated toward zero to d decimal places (default 0), of x's type.",
        signature: round_sig(),
        return_type: round_type,
        kernel: truncate,
        scalar: None,
    });
    out.push(Function {
        name: "mod",
        doc: "MOD(a, b): the remainder of integer a divided by b, with a's sign and b's type; NULL if b = 0 \
              (Flink fails the job instead).",
        signature: Signature::Any(2),
        return_type: mod_type,
        kernel: modulo,
        scalar: None,
    });
    out.push(Function {
        name: "greatest",
        doc: "GREATEST(x1, x2, ...): the largest argument; NULL if any argument is NULL (as in Flink).",
        signature: Signature::VariadicCommon { min: 1 },
        return_type: comparable_common,
        kernel: greatest,
        scalar: None,
    });
    out.push(Function {
        name: "least",
        doc: "LEAST(x1, x2, ...): the smallest argument; NULL if any argument is NULL (as in Flink).",
        signature: Signature::VariadicCommon { min: 1 },
        return_type: comparable_common,
        kernel: least,
        scalar: None,
    });
}

fn float_unary(
    function: &'static str,
    args: &[ArrayRef],
    n: usize,
    f: fn(f64) -> f64,
) -> Result<ArrayRef, KernelError> {
    arity(function, args, &[1])?;
    rows(function, args, n)?;
    Ok(Arc::new(
        float64(function, args, 0)?.unary::<_, Float64Type>(f),
    ))
}

fn float_binary(
    function: &'static str,
    args: &[ArrayRef],
    n: usize,
    f: fn(f64, f64) -> f64,
) -> Result<ArrayRef, KernelError> {
    arity(function, args, &[2])?;
    rows(function, args, n)?;
    let (a, b) = (float64(function, args, 0)?, float64(function, args, 1)?);
    let out: Float64Array = a
        .iter()
        .zip(b.iter())
        .map(|(a, b)| Some(f(a?, b?)))
        .collect();
    Ok(Arc::new(out))
}

fn log(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    arity("log", args, &[1, 2])?;
    if args.len() == 1 {
        float_unary("log", args, n, f64::ln)
    } else {
        // Flink: LOG(base, x) = ln(x) / ln(base).
        float_binary("log", args, n, |base, x| x.ln() / base.ln())
    }
}

fn pi(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    arity("pi", args, &[0])?;
    Ok(Arc::new(Float64Array::from(vec![std::f64::consts::PI; n])))
}

fn one_type(types: &[DataType]) -> Result<&DataType, String> {
    match types {
        [t] => Ok(t),
        _ => Err(format!("expects 1 argument, got {}", types.len())),
    }
}

/// The argument's own type, for numeric arguments.
fn numeric_same(types: &[DataType]) -> Result<DataType, String> {
    let t = one_type(types)?;
    if is_numeric(t) || t == &DataType::Null {
        Ok(t.clone())
    } else {
        Err(format!("expects a number, got {t}"))
    }
}

/// CEIL/FLOOR: integers and floats keep their type, DECIMAL(p, s) becomes DECIMAL(p, 0) (Flink's rule).
fn integral_type(types: &[DataType]) -> Result<DataType, String> {
    match numeric_same(types)? {
        DataType::Decimal128(p, s) if s > 0 => Ok(DataType::Decimal128(p, 0)),
        t => Ok(t),
    }
}

/// ROUND/TRUNCATE: integers and floats keep their type. A DECIMAL(p, s) (which only arrives when a caller
/// bypasses the signature) gives DECIMAL(p - s + 1, 0) without digits and DECIMAL(p + 1, s) with digits:
/// Flink's DECIMAL(p - s + d + 1, d) needs the value of d, which a type rule cannot see.
fn round_type(types: &[DataType]) -> Result<DataType, String> {
    let (x, d) = match types {
        [x] => (x, None),
        [x, d] => (x, Some(d)),
        _ => return Err(format!("expects 1 or 2 arguments, got {}", types.len())),
    };
    if let Some(d) = d
        && !is_integer(d)
        && d != &DataType::Null
    {
        return Err(format!("the number of digits must be an integer, got {d}"));
    }
    match x {
        DataType::Decimal128(p, s) if *s > 0 => Ok(match d {
            None => DataType::Decimal128((i16::from(*p) - i16::from(*s) + 1).clamp(1, 38) as u8, 0),
            Some(_) => DataType::Decimal128((*p + 1).min(38), *s),
        }),
        t if is_numeric(t) || t == &DataType::Null => Ok(t.clone()),
        t => Err(format!("expects a number, got {t}")),
    }
}

/// MOD: integer arguments; the result has the second argument's type (|a mod b| < |b|), as in Flink.
fn mod_type(types: &[DataType]) -> Result<DataType, String> {
    match types {
        [a, b]
            if (is_integer(a) || a == &DataType::Null)
                && (is_integer(b) || b == &DataType::Null) =>
        {
            Ok(if b == &DataType::Null {
                a.clone()
            } else {
                b.clone()
            })
        }
        [a, b] => Err(format!("expects two integers, got ({a}, {b})")),
        _ => Err(format!("expects 2 arguments, got {}", types.len())),
    }
}

fn comparable_common(types: &[DataType]) -> Result<DataType, String> {
    if types.is_empty() {
        return Err("expects at least 1 argument".into());
    }
    let t = common_type(types)?;
    if t.is_nested() {
        return Err(format!("cannot compare values of type {t}"));
    }
    Ok(t)
}

fn pow10(k: u32) -> Option<i128> {
    10_i128.checked_pow(k)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    HalfUp,
    Down,
}

/// Rounds the integer `v` to a multiple of 10^k (k >= 0).
fn round_int(v: i128, k: u32, mode: Mode) -> Option<i128> {
    if k == 0 {
        return Some(v);
    }
    let Some(f) = pow10(k) else {
        // 10^k exceeds every i128 value that can occur (|v| < 10^38), so the result is 0.
        return Some(0);
    };
    let (mut q, r) = (v / f, v % f);
    if mode == Mode::HalfUp && r.unsigned_abs() >= (f - r.abs()).unsigned_abs() {
        q += v.signum();
    }
    q.checked_mul(f)
}

/// Rounds `x` to `d` decimal places like Java's `BigDecimal.valueOf(x).setScale(d, mode)`: on the shortest
/// decimal representation of `x`, so 2.675 rounds to 2.68 although its binary value is 2.67499999...
fn round_f64(x: f64, d: i64, mode: Mode) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return if x == 0.0 { 0.0 } else { x };
    }
    let d = d.clamp(-400, 400);
    let repr = format!("{:e}", x.abs());
    let Some((mantissa, exp)) = repr.split_once('e') else {
        return x;
    };
    let Ok(exp) = exp.parse::<i64>() else {
        return x;
    };
    let digits: Vec<u8> = mantissa
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    // Digit j has weight 10^(exp - j); keep those with weight >= 10^-d.
    let last = exp + d;
    if last >= digits.len() as i64 - 1 {
        return x;
    }
    let (mut q, next) = if last < 0 {
        (
            0u64,
            if last == -1 {
                digits.first().copied().unwrap_or(0)
            } else {
                0
            },
        )
    } else {
        let kept = digits
            .iter()
            .take(last as usize + 1)
            .fold(0u64, |acc, d| acc * 10 + u64::from(*d));
        (kept, digits.get(last as usize + 1).copied().unwrap_or(0))
    };
    if mode == Mode::HalfUp && next >= 5 {
        q += 1;
    }
    if q == 0 {
        return 0.0;
    }
    let r = format!("{q}e{}", exp - last).parse::<f64>().unwrap_or(x);
    if x < 0.0 { -r } else { r }
}

fn map_primitive<T: ArrowPrimitiveType>(
    a: &ArrayRef,
    mut f: impl FnMut(usize, T::Native) -> Option<T::Native>,
) -> PrimitiveArray<T> {
    let a = a.as_primitive::<T>();
    (0..a.len())
        .map(|i| {
            if a.is_valid(i) {
                f(i, a.value(i))
            } else {
                None
            }
        })
        .collect()
}

/// Applies an integer operation (computed on i128, narrowed with Java's wrapping cast) to any integer
/// array, keeping its type; `Ok(None)` for non-integer types.
fn map_integers(a: &ArrayRef, f: impl Fn(usize, i128) -> Option<i128>) -> Option<ArrayRef> {
    macro_rules! go {
        ($t:ty, $native:ty) => {
            Some(Arc::new(map_primitive::<$t>(a, |i, v| {
                f(i, i128::from(v)).map(|r| r as $native)
            })))
        };
    }
    match a.data_type() {
        DataType::Int8 => go!(Int8Type, i8),
        DataType::Int16 => go!(Int16Type, i16),
        DataType::Int32 => go!(Int32Type, i32),
        DataType::Int64 => go!(Int64Type, i64),
        _ => None,
    }
}

fn decimal(
    function: &'static str,
    values: Decimal128Array,
    precision: u8,
    scale: i8,
) -> Result<ArrayRef, KernelError> {
    // Values that do not fit the precision become NULL rather than an invalid array.
    let limit = pow10(u32::from(precision)).unwrap_or(i128::MAX);
    let checked: Decimal128Array = values
        .iter()
        .map(|v| v.filter(|v| v.unsigned_abs() < limit.unsigned_abs()))
        .collect();
    checked
        .with_precision_and_scale(precision, scale)
        .map(|a| Arc::new(a) as ArrayRef)
        .map_err(arrow_err(function))
}

fn unsupported(function: &'static str, a: &ArrayRef) -> KernelError {
    KernelError::ArgType {
        function,
        index: 0,
        expected: "a number",
        actual: a.data_type().clone(),
    }
}

fn abs(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    const F: &str = "abs";
    arity(F, args, &[1])?;
    rows(F, args, n)?;
    let a = &args[0];
    if let Some(out) = map_integers(a, |_, v| Some(v.abs())) {
        return Ok(out);
    }
    match a.data_type() {
        DataType::Float32 => Ok(Arc::new(
            a.as_primitive::<Float32Type>()
                .unary::<_, Float32Type>(f32::abs),
        )),
        DataType::Float64 => Ok(Arc::new(
            a.as_primitive::<Float64Type>()
                .unary::<_, Float64Type>(f64::abs),
        )),
        DataType::Decimal128(p, s) => {
            let v = a
                .as_primitive::<Decimal128Type>()
                .unary::<_, Decimal128Type>(i128::wrapping_abs);
            decimal(F, v, *p, *s)
        }
        t if t.is_unsigned_integer() || t == &DataType::Null => Ok(Arc::clone(a)),
        _ => Err(unsupported(F, a)),
    }
}

fn float_sign(x: f64) -> f64 {
    if x == 0.0 || x.is_nan() {
        x
    } else {
        x.signum()
    }
}

fn sign(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    const F: &str = "sign";
    arity(F, args, &[1])?;
    rows(F, args, n)?;
    let a = &args[0];
    if let Some(out) = map_integers(a, |_, v| Some(v.signum())) {
        return Ok(out);
    }
    match a.data_type() {
        DataType::Float32 => Ok(Arc::new(
            a.as_primitive::<Float32Type>()
                .unary::<_, Float32Type>(|x| float_sign(f64::from(x)) as f32),
        )),
        DataType::Float64 => Ok(Arc::new(
            a.as_primitive::<Float64Type>()
                .unary::<_, Float64Type>(float_sign),
        )),
        DataType::Decimal128(p, s) => {
            let one = pow10(u32::try_from(*s).unwrap_or(0)).unwrap_or(1);
            let v = a
                .as_primitive::<Decimal128Type>()
                .unary::<_, Decimal128Type>(|v| v.signum() * one);
            decimal(F, v, *p, *s)
        }
        DataType::Null => Ok(Arc::clone(a)),
        t if t.is_unsigned_integer() => {
            let v = cast_to(F, a, &DataType::Int64)?;
            let out = map_integers(&v, |_, v| Some(v.signum())).ok_or_else(|| unsupported(F, a))?;
            cast_to(F, &out, t)
        }
        _ => Err(unsupported(F, a)),
    }
}

fn integral_kernel(
    function: &'static str,
    args: &[ArrayRef],
    n: usize,
    up: bool,
) -> Result<ArrayRef, KernelError> {
    arity(function, args, &[1])?;
    rows(function, args, n)?;
    let a = &args[0];
    match a.data_type() {
        t if t.is_integer() || t == &DataType::Null => Ok(Arc::clone(a)),
        DataType::Float32 => {
            let f = if up { f32::ceil } else { f32::floor };
            Ok(Arc::new(
                a.as_primitive::<Float32Type>().unary::<_, Float32Type>(f),
            ))
        }
        DataType::Float64 => {
            let f = if up { f64::ceil } else { f64::floor };
            Ok(Arc::new(
                a.as_primitive::<Float64Type>().unary::<_, Float64Type>(f),
            ))
        }
        DataType::Decimal128(p, s) if *s > 0 => {
            let f = pow10(u32::try_from(*s).unwrap_or(0)).unwrap_or(1);
            let v = a
                .as_primitive::<Decimal128Type>()
                .unary::<_, Decimal128Type>(|v| {
                    let q = v.div_euclid(f);
                    if up && q * f != v { q + 1 } else { q }
                });
            decimal(function, v, *p, 0)
        }
        DataType::Decimal128(_, _) => Ok(Arc::clone(a)),
        _ => Err(unsupported(function, a)),
    }
}

fn ceil(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    integral_kernel("ceil", args, n, true)
}

fn floor(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    integral_kernel("floor", args, n, false)
}

fn round_kernel(
    function: &'static str,
    mode: Mode,
    args: &[ArrayRef],
    n: usize,
) -> Result<ArrayRef, KernelError> {
    arity(function, args, &[1, 2])?;
    rows(function, args, n)?;
    let digits = if args.len() == 2 {
        Some(int64(function, args, 1)?)
    } else {
        None
    };
    let d_at = |i: usize| -> Option<i64> {
        match &digits {
            None => Some(0),
            Some(d) => d.is_valid(i).then(|| d.value(i)),
        }
    };
    let a = &args[0];
    if let Some(out) = map_integers(a, |i, v| {
        let d = d_at(i)?;
        if d >= 0 {
            return Some(v);
        }
        round_int(v, u32::try_from(d.unsigned_abs()).unwrap_or(u32::MAX), mode)
    }) {
        return Ok(out);
    }
    match a.data_type() {
        DataType::Float64 => Ok(Arc::new(map_primitive::<Float64Type>(a, |i, x| {
            Some(round_f64(x, d_at(i)?, mode))
        }))),
        DataType::Float32 => Ok(Arc::new(map_primitive::<Float32Type>(a, |i, x| {
            Some(round_f64(f64::from(x), d_at(i)?, mode) as f32)
        }))),
        DataType::Decimal128(_, s) => {
            let out_type = round_type(
                &args
                    .iter()
                    .map(|a| a.data_type().clone())
                    .collect::<Vec<_>>(),
            )
            .map_err(|m| invalid(function, m))?;
            let DataType::Decimal128(op, os) = out_type else {
                return Err(invalid(function, "unexpected decimal result type"));
            };
            let s = *s;
            let v = map_primitive::<Decimal128Type>(a, |i, v| {
                let d = d_at(i)?;
                let drop = i64::from(s) - d;
                let rounded = if drop > 0 {
                    round_int(v, u32::try_from(drop).unwrap_or(u32::MAX), mode)?
                } else {
                    v
                };
                // Rescale from s to the output scale os (os <= s).
                let shift = u32::try_from(i64::from(s) - i64::from(os)).unwrap_or(0);
                match pow10(shift) {
                    Some(f) => Some(rounded / f),
                    None => Some(0),
                }
            });
            decimal(function, v, op, os)
        }
        DataType::Null => Ok(Arc::clone(a)),
        _ => Err(unsupported(function, a)),
    }
}

fn round(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    round_kernel("round", Mode::HalfUp, args, n)
}

fn truncate(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    round_kernel("truncate", Mode::Down, args, n)
}

fn modulo(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    const F: &str = "mod";
    arity(F, args, &[2])?;
    rows(F, args, n)?;
    let types: Vec<DataType> = args.iter().map(|a| a.data_type().clone()).collect();
    let out_type = mod_type(&types).map_err(|m| invalid(F, m))?;
    if out_type == DataType::Null {
        return Ok(new_null_array(&DataType::Null, n));
    }
    let (a, b) = (int64(F, args, 0)?, int64(F, args, 1)?);
    let r: Int64Array = a
        .iter()
        .zip(b.iter())
        .map(|(a, b)| {
            let (a, b) = (a?, b?);
            // Java's % (the sign of the dividend); MIN % -1 is 0 there too.
            (b != 0).then(|| a.wrapping_rem(b))
        })
        .collect();
    cast_to(F, &(Arc::new(r) as ArrayRef), &out_type)
}

fn extreme(
    function: &'static str,
    greatest: bool,
    args: &[ArrayRef],
    n: usize,
) -> Result<ArrayRef, KernelError> {
    if args.is_empty() {
        return Err(KernelError::Arity {
            function,
            expected: "at least 1".into(),
            got: 0,
        });
    }
    rows(function, args, n)?;
    let types: Vec<DataType> = args.iter().map(|a| a.data_type().clone()).collect();
    let t = comparable_common(&types).map_err(|m| invalid(function, m))?;
    if t == DataType::Null {
        return Ok(new_null_array(&DataType::Null, n));
    }
    let values = args
        .iter()
        .map(|a| cast_to(function, a, &t))
        .collect::<Result<Vec<_>, _>>()?;
    let mut result = Arc::clone(&values[0]);
    let mut any_null: Option<BooleanArray> = None;
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            let better = if greatest {
                gt(v, &result)
            } else {
                lt(v, &result)
            }
            .map_err(arrow_err(function))?;
            result = zip(&better, v, &result).map_err(arrow_err(function))?;
        }
        if v.null_count() > 0 {
            let nulls = is_null(v.as_ref()).map_err(arrow_err(function))?;
            any_null = Some(match any_null {
                Some(acc) => or(&acc, &nulls).map_err(arrow_err(function))?,
                None => nulls,
            });
        }
    }
    match any_null {
        Some(mask) => nullif(result.as_ref(), &mask).map_err(arrow_err(function)),
        None => Ok(result),
    }
}

fn greatest(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    extreme("greatest", true, args, n)
}

fn least(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    extreme("least", false, args, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float32Array, Int8Array, Int32Array, StringArray};

    fn call(name: &str, args: Vec<ArrayRef>) -> Result<ArrayRef, KernelError> {
        let f = crate::lookup(name).expect("function exists");
        let n = args.first().map_or(1, |a| a.len());
        (f.kernel)(&args, n)
    }

    fn f64s(v: &[Option<f64>]) -> ArrayRef {
        Arc::new(Float64Array::from(v.to_vec()))
    }

    fn f(v: f64) -> ArrayRef {
        f64s(&[Some(v)])
    }

    fn i64s(v: &[Option<i64>]) -> ArrayRef {
        Arc::new(Int64Array::from(v.to_vec()))
    }

    fn i(v: i64) -> ArrayRef {
        i64s(&[Some(v)])
    }

    fn dec(v: &[Option<i128>], p: u8, s: i8) -> ArrayRef {
        Arc::new(
            Decimal128Array::from(v.to_vec())
                .with_precision_and_scale(p, s)
                .expect("decimal"),
        )
    }

    fn one_f64(name: &str, args: Vec<ArrayRef>) -> Option<f64> {
        let out = call(name, args).unwrap_or_else(|e| panic!("{name}: {e}"));
        let a = out.as_primitive::<Float64Type>();
        a.is_valid(0).then(|| a.value(0))
    }

    fn one_i64(name: &str, args: Vec<ArrayRef>) -> Option<i64> {
        let out = call(name, args).unwrap_or_else(|e| panic!("{name}: {e}"));
        let a = out.as_primitive::<Int64Type>();
        a.is_valid(0).then(|| a.value(0))
    }

    fn decs(a: &ArrayRef) -> (DataType, Vec<Option<i128>>) {
        (
            a.data_type().clone(),
            a.as_primitive::<Decimal128Type>().iter().collect(),
        )
    }

    #[test]
    fn transcendental() {
        assert_eq!(one_f64("sqrt", vec![f(9.0)]), Some(3.0));
        assert!(one_f64("sqrt", vec![f(-1.0)]).is_some_and(f64::is_nan));
        assert_eq!(one_f64("sqrt", vec![f64s(&[None])]), None);
        assert_eq!(one_f64("exp", vec![f(1.0)]), Some(std::f64::consts::E));
        assert_eq!(one_f64("ln", vec![f(1.0)]), Some(0.0));
        assert!(one_f64("ln", vec![f(-1.0)]).is_some_and(f64::is_nan));
        assert_eq!(one_f64("log10", vec![f(1000.0)]), Some(3.0));
        assert_eq!(one_f64("log2", vec![f(8.0)]), Some(3.0));
        assert_eq!(one_f64("log", vec![f(0.0)]), Some(f64::NEG_INFINITY));
        assert_eq!(one_f64("log", vec![f(2.0), f(8.0)]), Some(3.0));
        assert_eq!(
            one_f64("log", vec![f(8.0), f(2.0)]),
            Some(0.333_333_333_333_333_37)
        );
        assert_eq!(one_f64("log", vec![f(2.0), f64s(&[None])]), None);
        assert_eq!(one_f64("power", vec![f(2.0), f(10.0)]), Some(1024.0));
        assert_eq!(one_f64("pow", vec![f(4.0), f(0.5)]), Some(2.0));
        assert_eq!(one_f64("power", vec![i(2), i(3)]), Some(8.0));
        assert_eq!(one_f64("sin", vec![f(0.0)]), Some(0.0));
        assert_eq!(one_f64("cos", vec![f(0.0)]), Some(1.0));
        assert_eq!(one_f64("tan", vec![f(0.0)]), Some(0.0));
        assert_eq!(
            one_f64("atan2", vec![f(1.0), f(1.0)]),
            Some(std::f64::consts::FRAC_PI_4)
        );
        assert_eq!(
            one_f64("degrees", vec![f(std::f64::consts::PI)]),
            Some(180.0)
        );
        assert_eq!(
            one_f64("radians", vec![f(180.0)]),
            Some(std::f64::consts::PI)
        );
        let out = call("pi", vec![]).expect("pi");
        assert_eq!(out.len(), 1);
        let out = (crate::lookup("pi").expect("pi").kernel)(&[], 3).expect("pi");
        assert_eq!(
            out.as_primitive::<Float64Type>().value(2),
            std::f64::consts::PI
        );
        assert!(call("pi", vec![f(1.0)]).is_err());
        assert!(call("sqrt", vec![Arc::new(StringArray::from(vec!["4"]))]).is_err());
        assert!(call("sqrt", vec![f(1.0), f(1.0), f(1.0)]).is_err());
    }

    #[test]
    fn abs_keeps_type() {
        let out = call(
            "abs",
            vec![Arc::new(Int32Array::from(vec![
                Some(-5),
                None,
                Some(i32::MIN),
            ]))],
        )
        .expect("abs");
        assert_eq!(
            out.as_primitive::<Int32Type>().iter().collect::<Vec<_>>(),
            vec![Some(5), None, Some(i32::MIN)]
        );
        assert_eq!(one_f64("abs", vec![f(-2.5)]), Some(2.5));
        let out = call("abs", vec![dec(&[Some(-1234), None], 4, 2)]).expect("abs");
        assert_eq!(
            decs(&out),
            (DataType::Decimal128(4, 2), vec![Some(1234), None])
        );
        assert!(call("abs", vec![Arc::new(StringArray::from(vec!["x"]))]).is_err());
        assert!(numeric_same(&[DataType::Utf8]).is_err());
        assert_eq!(numeric_same(&[DataType::Int8]), Ok(DataType::Int8));
    }

    #[test]
    fn sign_keeps_type() {
        assert_eq!(one_i64("sign", vec![i(-5)]), Some(-1));
        assert_eq!(one_i64("sign", vec![i(0)]), Some(0));
        assert_eq!(one_f64("sign", vec![f(-2.5)]), Some(-1.0));
        assert_eq!(one_f64("sign", vec![f(0.0)]), Some(0.0));
        assert_eq!(one_f64("sign", vec![f64s(&[None])]), None);
        let out = call("sign", vec![dec(&[Some(-1234), Some(0)], 4, 2)]).expect("sign");
        assert_eq!(decs(&out).1, vec![Some(-100), Some(0)]);
        let out = call("sign", vec![Arc::new(Float32Array::from(vec![3.5f32]))]).expect("sign");
        assert_eq!(out.as_primitive::<Float32Type>().value(0), 1.0);
    }

    #[test]
    fn ceil_and_floor() {
        assert_eq!(one_f64("ceil", vec![f(2.1)]), Some(3.0));
        assert_eq!(one_f64("ceiling", vec![f(-2.1)]), Some(-2.0));
        assert_eq!(one_f64("floor", vec![f(-2.5)]), Some(-3.0));
        assert_eq!(one_f64("floor", vec![f64s(&[None])]), None);
        assert_eq!(one_i64("floor", vec![i(7)]), Some(7));
        let out = call(
            "ceil",
            vec![dec(&[Some(1234), Some(-1234), Some(1200), None], 4, 2)],
        )
        .expect("ceil");
        assert_eq!(
            decs(&out),
            (
                DataType::Decimal128(4, 0),
                vec![Some(13), Some(-12), Some(12), None]
            )
        );
        let out = call("floor", vec![dec(&[Some(1234), Some(-1234)], 4, 2)]).expect("floor");
        assert_eq!(
            decs(&out),
            (DataType::Decimal128(4, 0), vec![Some(12), Some(-13)])
        );
        assert_eq!(
            integral_type(&[DataType::Decimal128(10, 4)]),
            Ok(DataType::Decimal128(10, 0))
        );
        assert_eq!(integral_type(&[DataType::Float32]), Ok(DataType::Float32));
    }

    #[test]
    fn round_half_away_from_zero_on_decimal_form() {
        assert_eq!(round_f64(2.675, 2, Mode::HalfUp), 2.68);
        assert_eq!(round_f64(1.005, 2, Mode::HalfUp), 1.01);
        assert_eq!(round_f64(2.5, 0, Mode::HalfUp), 3.0);
        assert_eq!(round_f64(-2.5, 0, Mode::HalfUp), -3.0);
        assert_eq!(round_f64(0.5, 0, Mode::HalfUp), 1.0);
        assert_eq!(round_f64(0.49, 0, Mode::HalfUp), 0.0);
        let z = round_f64(-0.4, 0, Mode::HalfUp);
        assert!(z == 0.0 && z.is_sign_positive());
        assert_eq!(round_f64(1234.5678, -2, Mode::HalfUp), 1200.0);
        assert_eq!(round_f64(1250.0, -2, Mode::HalfUp), 1300.0);
        assert_eq!(round_f64(0.000123, 5, Mode::HalfUp), 0.00012);
        assert_eq!(round_f64(0.000125, 5, Mode::HalfUp), 0.00013);
        assert_eq!(round_f64(5.0, -1, Mode::HalfUp), 10.0);
        assert_eq!(round_f64(4.0, -1, Mode::HalfUp), 0.0);
        assert_eq!(round_f64(1e300, 2, Mode::HalfUp), 1e300);
        assert_eq!(round_f64(1e300, -400, Mode::HalfUp), 0.0);
        assert_eq!(round_f64(123.456, 400, Mode::HalfUp), 123.456);
        assert!(round_f64(f64::NAN, 2, Mode::HalfUp).is_nan());
        assert_eq!(round_f64(f64::INFINITY, 2, Mode::HalfUp), f64::INFINITY);
        assert_eq!(round_f64(-2.789, 2, Mode::Down), -2.78);
        assert_eq!(round_f64(2.789, 0, Mode::Down), 2.0);
        assert_eq!(round_f64(1e20, 2, Mode::Down), 1e20);
    }

    #[test]
    fn round_kernel_types() {
        assert_eq!(one_f64("round", vec![f(2.675), i(2)]), Some(2.68));
        assert_eq!(one_f64("round", vec![f(2.5)]), Some(3.0));
        assert_eq!(one_f64("round", vec![f(2.5), i64s(&[None])]), None);
        assert_eq!(one_f64("round", vec![f64s(&[None]), i(1)]), None);
        assert_eq!(one_i64("round", vec![i(1250), i(-2)]), Some(1300));
        assert_eq!(one_i64("round", vec![i(-1250), i(-2)]), Some(-1300));
        assert_eq!(one_i64("round", vec![i(1249), i(-2)]), Some(1200));
        assert_eq!(one_i64("round", vec![i(7), i(3)]), Some(7));
        assert_eq!(one_i64("round", vec![i(i64::MAX), i(-30)]), Some(0));
        assert_eq!(one_i64("truncate", vec![i(1259), i(-2)]), Some(1200));
        assert_eq!(one_f64("truncate", vec![f(-2.789), i(2)]), Some(-2.78));
        // Narrow integers wrap like Java's (byte) cast.
        let out =
            call("round", vec![Arc::new(Int8Array::from(vec![127i8])), i(-1)]).expect("round");
        assert_eq!(out.as_primitive::<Int8Type>().value(0), -126);
        let out = call(
            "round",
            vec![Arc::new(Float32Array::from(vec![123.456f32])), i(1)],
        )
        .expect("round");
        assert_eq!(out.as_primitive::<Float32Type>().value(0), 123.5);
        // Decimals (when a caller passes them directly).
        let out = call(
            "round",
            vec![
                dec(&[Some(9995), Some(-1234), None], 4, 2),
                i64s(&[Some(1); 3]),
            ],
        )
        .expect("round");
        assert_eq!(
            decs(&out),
            (
                DataType::Decimal128(5, 2),
                vec![Some(10000), Some(-1230), None]
            )
        );
        let out = call("round", vec![dec(&[Some(12345)], 10, 3)]).expect("round");
        assert_eq!(decs(&out), (DataType::Decimal128(8, 0), vec![Some(12)]));
        let out = call("truncate", vec![dec(&[Some(-12999)], 10, 3), i(1)]).expect("truncate");
        assert_eq!(decs(&out).1, vec![Some(-12900)]);
        assert!(round_type(&[DataType::Float64, DataType::Utf8]).is_err());
        assert!(call("round", vec![Arc::new(StringArray::from(vec!["1"]))]).is_err());
    }

    #[test]
    fn modulo_like_java() {
        assert_eq!(one_i64("mod", vec![i(7), i(-3)]), Some(1));
        assert_eq!(one_i64("mod", vec![i(-7), i(3)]), Some(-1));
        assert_eq!(one_i64("mod", vec![i(7), i(0)]), None);
        assert_eq!(one_i64("mod", vec![i(i64::MIN), i(-1)]), Some(0));
        assert_eq!(one_i64("mod", vec![i64s(&[None]), i(3)]), None);
        let out = call("mod", vec![i(7), Arc::new(Int32Array::from(vec![3]))]).expect("mod");
        assert_eq!(out.data_type(), &DataType::Int32);
        assert_eq!(out.as_primitive::<Int32Type>().value(0), 1);
        assert_eq!(
            mod_type(&[DataType::Int64, DataType::Int8]),
            Ok(DataType::Int8)
        );
        assert!(mod_type(&[DataType::Float64, DataType::Int8]).is_err());
        assert!(call("mod", vec![f(7.0), i(2)]).is_err());
    }

    #[test]
    fn greatest_and_least() {
        let out = call(
            "greatest",
            vec![
                i64s(&[Some(1), Some(1)]),
                i64s(&[None, Some(5)]),
                i64s(&[Some(3), Some(3)]),
            ],
        )
        .expect("greatest");
        assert_eq!(
            out.as_primitive::<Int64Type>().iter().collect::<Vec<_>>(),
            vec![None, Some(5)]
        );
        let out = call("least", vec![i(4), Arc::new(Int32Array::from(vec![2]))]).expect("least");
        assert_eq!(out.data_type(), &DataType::Int64);
        assert_eq!(out.as_primitive::<Int64Type>().value(0), 2);
        let strs = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![v])) };
        let out = call("least", vec![strs("b"), strs("a")]).expect("least");
        assert_eq!(out.as_string::<i32>().value(0), "a");
        assert!(one_f64("greatest", vec![f(1.0), f(f64::NAN)]).is_some_and(f64::is_nan));
        assert_eq!(one_i64("greatest", vec![i(9)]), Some(9));
        assert!(call("greatest", vec![i(1), strs("a")]).is_err());
        assert!(call("greatest", vec![]).is_err());
        assert_eq!(
            comparable_common(&[DataType::Int32, DataType::Decimal128(2, 1)]),
            Ok(DataType::Decimal128(11, 1))
        );
    }
}
