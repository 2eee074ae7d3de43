//! fsql's built-in scalar function library.
//!
//! Each [`Function`] carries what the compiler needs (name, [`Signature`], return-type rule) and what the
//! runtime needs (a kernel over Arrow arrays). The compiler registers every function as a DataFusion
//! scalar UDF through its own adapter; the runtime's interpreter calls the kernels directly. Both therefore
//! agree on semantics, which follow Apache Flink SQL: names, argument order and NULL behaviour (almost every
//! function returns NULL when any argument is NULL). Deliberate deviations are listed in each function's
//! `doc` and in `docs/language.md`.
//!
//! Kernels never panic: wrong arity or argument types yield [`KernelError`]; data-dependent problems
//! (an unparsable timestamp string, a division by zero in `MOD`) follow Flink, usually by returning NULL.

#![warn(missing_docs)]

use std::sync::OnceLock;

use arrow::array::ArrayRef;
use arrow::datatypes::DataType;
use arrow::error::ArrowError;

mod args;
mod conditional;
mod javafmt;
mod math;
pub mod sql;
mod string;
mod temporal;

/// How a function's arguments are typed.
///
/// The compiler turns this into DataFusion's `TypeSignature`, which inserts the casts; kernels still check
/// (and, where harmless, cast) their inputs so a mistyped call is an error rather than a panic.
#[derive(Clone, Debug, PartialEq)]
pub enum Signature {
    /// One of these exact argument type lists (tried in order; DataFusion coerces arguments to the first
    /// that fits).
    OneOf(Vec<Vec<DataType>>),
    /// `min` or more arguments, all coerced to one common type (COALESCE, GREATEST, CONCAT...).
    VariadicCommon {
        /// The smallest number of arguments accepted.
        min: usize,
    },
    /// Exactly this many arguments of any type; `return_type` checks them.
    Any(usize),
}

/// Why a kernel refused its input.
///
/// Only argument problems (arity, types, constant arguments out of their domain) and resource limits are
/// errors; bad *data* follows Flink (usually NULL).
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The function was called with a number of arguments it does not accept.
    #[error("{function}: expected {expected} argument(s), got {got}")]
    Arity {
        /// The function's name.
        function: &'static str,
        /// The accepted counts, e.g. `"2 or 3"`.
        expected: String,
        /// The number of arguments given.
        got: usize,
    },
    /// An argument has a type the kernel cannot work with.
    #[error("{function}: argument {index} must be {expected}, got {actual}")]
    ArgType {
        /// The function's name.
        function: &'static str,
        /// Zero-based position of the argument.
        index: usize,
        /// What the kernel accepts, in words.
        expected: &'static str,
        /// The type it got.
        actual: DataType,
    },
    /// Anything else the function rejects (an unknown EXTRACT field, a result too large for Arrow...).
    #[error("{function}: {message}")]
    Invalid {
        /// The function's name.
        function: &'static str,
        /// What went wrong.
        message: String,
    },
    /// An Arrow compute kernel failed (for instance a cast between incompatible types).
    #[error("{function}: {source}")]
    Arrow {
        /// The function's name.
        function: &'static str,
        /// The Arrow error.
        #[source]
        source: ArrowError,
    },
}

/// A built-in scalar function: its signature for the compiler and its kernel for the runtime.
#[derive(Debug)]
pub struct Function {
    /// Canonical lower-case name as the compiler sees it (DataFusion lower-cases unquoted function names).
    pub name: &'static str,
    /// One-line description for docs/language.md and `fsql explain`.
    pub doc: &'static str,
    /// How arguments are typed and coerced.
    pub signature: Signature,
    /// Result type from the (already coerced) argument types; Err(message) if they are not acceptable.
    pub return_type: fn(&[DataType]) -> Result<DataType, String>,
    /// Evaluates the function on arrays that all have `num_rows` rows (scalars are already expanded).
    pub kernel: fn(&[ArrayRef], usize) -> Result<ArrayRef, KernelError>,
    /// The same function one row at a time, for compiled code (`fsql-jit` calls it per row), when
    /// it has a plain-value form; the kernel is built from the same code, so both agree.
    pub scalar: Option<Scalar>,
}

/// A function's row-at-a-time form over plain values, callable from generated code (C ABI).
/// NULL arguments never reach it: the result of a NULL argument is NULL (the caller's part).
///
/// ```
/// let Some(fsql_stdlib::Scalar::F64(sqrt)) = fsql_stdlib::lookup("sqrt").and_then(|f| f.scalar)
/// else {
///     panic!("SQRT has a scalar form");
/// };
/// assert_eq!(sqrt(9.0), 3.0);
/// ```
#[derive(Clone, Copy, Debug)]
pub enum Scalar {
    /// DOUBLE → DOUBLE.
    F64(extern "C" fn(f64) -> f64),
    /// (DOUBLE, DOUBLE) → DOUBLE.
    F64F64(extern "C" fn(f64, f64) -> f64),
    /// TIMESTAMP → BIGINT (a field such as the hour): `(value, unit, valid)` where `unit` is 0 for
    /// seconds, 1 milliseconds, 2 microseconds, 3 nanoseconds; `*valid` is set to 0 when the
    /// result is NULL (a timestamp outside the calendar's range), else 1.
    TimestampToBigInt(unsafe extern "C" fn(i64, u8, *mut u8) -> i64),
}

/// Every built-in function, sorted by name (aliases are separate entries sharing a kernel).
pub fn functions() -> &'static [Function] {
    static FUNCTIONS: OnceLock<Vec<Function>> = OnceLock::new();
    FUNCTIONS.get_or_init(|| {
        let mut all = Vec::new();
        string::register(&mut all);
        math::register(&mut all);
        conditional::register(&mut all);
        temporal::register(&mut all);
        all.sort_by(|a, b| a.name.cmp(b.name));
        all
    })
}

/// The function called `name` (case-insensitive), including aliases.
pub fn lookup(name: &str) -> Option<&'static Function> {
    let all = functions();
    let lower = name.to_ascii_lowercase();
    all.binary_search_by(|f| f.name.cmp(lower.as_str()))
        .ok()
        .and_then(|i| all.get(i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn functions_are_sorted_unique_and_lower_case() {
        let all = functions();
        assert!(all.len() > 60, "only {} functions", all.len());
        let mut seen = HashSet::new();
        for w in all.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
        for f in all {
            assert_eq!(f.name, f.name.to_ascii_lowercase());
            assert!(seen.insert(f.name), "duplicate {}", f.name);
            assert!(!f.doc.is_empty(), "{} has no doc", f.name);
        }
    }

    #[test]
    fn lookup_is_case_insensitive() {
        assert_eq!(lookup("UPPER").map(|f| f.name), Some("upper"));
        assert_eq!(lookup("Date_Part").map(|f| f.name), Some("date_part"));
        assert_eq!(
            lookup("character_length").map(|f| f.name),
            Some("character_length")
        );
        assert!(lookup("no_such_function").is_none());
    }

    #[test]
    fn required_names_exist() {
        for name in [
            "substr",
            "btrim",
            "ltrim",
            "rtrim",
            "coalesce",
            "nullif",
            "date_part",
            "strpos",
            "upper",
            "lower",
            "char_length",
            "character_length",
            "concat",
            "concat_ws",
            "replace",
            "lpad",
            "rpad",
            "initcap",
            "reverse",
            "left",
            "right",
            "repeat",
            "split_index",
            "ascii",
            "chr",
            "instr",
            "locate",
            "abs",
            "ceil",
            "ceiling",
            "floor",
            "round",
            "truncate",
            "power",
            "pow",
            "sqrt",
            "exp",
            "ln",
            "log10",
            "log2",
            "log",
            "mod",
            "sign",
            "pi",
            "sin",
            "cos",
            "tan",
            "greatest",
            "least",
            "if",
            "ifnull",
            "to_timestamp",
            "to_timestamp_ltz",
            "to_date",
            "date_format",
            "unix_timestamp",
            "from_unixtime",
            "timestampdiff",
            "hour",
            "minute",
            "second",
            "year",
            "month",
            "dayofmonth",
            "dayofweek",
            "dayofyear",
            "quarter",
            "week",
        ] {
            assert!(lookup(name).is_some(), "missing {name}");
        }
    }

    /// Every kernel refuses a call with no arguments or with absurd types without panicking, and every
    /// signature's own argument lists are accepted by `return_type`.
    #[test]
    fn kernels_reject_bad_input_without_panicking() {
        use arrow::array::{BooleanArray, new_null_array};
        use std::sync::Arc;
        let bools: ArrayRef = Arc::new(BooleanArray::from(vec![Some(true), None]));
        for f in functions() {
            let _ = (f.kernel)(&[], 2);
            for n in 1..=4 {
                let args = vec![Arc::clone(&bools); n];
                let _ = (f.kernel)(&args, 2);
                let nulls = vec![new_null_array(&DataType::Null, 2); n];
                let _ = (f.kernel)(&nulls, 2);
            }
            if let Signature::OneOf(lists) = &f.signature {
                for list in lists {
                    let rt = (f.return_type)(list);
                    assert!(rt.is_ok(), "{}: {:?} -> {:?}", f.name, list, rt);
                    let args: Vec<ArrayRef> = list.iter().map(|t| new_null_array(t, 3)).collect();
                    let out = (f.kernel)(&args, 3);
                    let out = out.unwrap_or_else(|e| panic!("{}: {e}", f.name));
                    assert_eq!(out.len(), 3, "{}", f.name);
                    assert_eq!(out.data_type(), &rt.unwrap_or(DataType::Null), "{}", f.name);
                }
            }
        }
    }
}
