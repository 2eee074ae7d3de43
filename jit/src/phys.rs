//! The physical value classes compiled code handles, and which Arrow types map to them.

use arrow::datatypes::{DataType as ArrowType, IntervalUnit, TimeUnit};
use cranelift_codegen::ir::{Type, types};

/// How one value is held in registers and laid out in an Arrow array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Phys {
    /// BOOLEAN: an `i8` that is 0 or 1; a bit in Arrow's value bitmap.
    Bool,
    /// TINYINT.
    I8,
    /// SMALLINT.
    I16,
    /// INT, DATE (days), TIME (ms), INTERVAL YEAR TO MONTH (months).
    I32,
    /// BIGINT, TIMESTAMP (in its unit), INTERVAL DAY TO SECOND (ms).
    I64,
    F32,
    F64,
    /// DECIMAL(p, s) of any precision and scale: the unscaled `i128`.
    I128,
    /// STRING: a pointer and a length (read-only; compiled code never builds strings).
    Str,
}

impl Phys {
    /// The class of an Arrow type, or `None` when compiled code cannot read it.
    pub(crate) fn of(t: &ArrowType) -> Option<Phys> {
        use ArrowType as A;
        Some(match t {
            A::Boolean => Phys::Bool,
            A::Int8 => Phys::I8,
            A::Int16 => Phys::I16,
            A::Int32 | A::Date32 | A::Time32(_) | A::Interval(IntervalUnit::YearMonth) => Phys::I32,
            A::Int64 | A::Date64 | A::Time64(_) | A::Timestamp(..) | A::Duration(_) => Phys::I64,
            A::Float32 => Phys::F32,
            A::Float64 => Phys::F64,
            A::Decimal128(..) => Phys::I128,
            A::Utf8 => Phys::Str,
            _ => return None,
        })
    }

    /// Whether compiled code can write arrays of this class (strings are read-only).
    pub(crate) fn writable(self) -> bool {
        self != Phys::Str
    }

    /// The register type (for strings, that of the pointer).
    pub(crate) fn ir(self) -> Type {
        match self {
            Phys::Bool | Phys::I8 => types::I8,
            Phys::I16 => types::I16,
            Phys::I32 => types::I32,
            Phys::I64 | Phys::Str => types::I64,
            Phys::I128 => types::I128,
            Phys::F32 => types::F32,
            Phys::F64 => types::F64,
        }
    }

    /// Bytes per value in an Arrow values buffer (0 for bit-packed booleans and strings).
    pub(crate) fn width(self) -> usize {
        match self {
            Phys::Bool | Phys::Str => 0,
            Phys::I8 => 1,
            Phys::I16 => 2,
            Phys::I32 | Phys::F32 => 4,
            Phys::I64 | Phys::F64 => 8,
            Phys::I128 => 16,
        }
    }

    pub(crate) fn is_float(self) -> bool {
        matches!(self, Phys::F32 | Phys::F64)
    }
}

/// Whether two operand types compare without a conversion that changes values' scale: identical
/// types, two integer types (widened), integers and floats (as DOUBLE), or two strings. Mixed
/// timestamp units or DATE against TIMESTAMP are left to the interpreter.
pub(crate) fn comparable(l: &ArrowType, r: &ArrowType) -> bool {
    if l == r {
        return Phys::of(l).is_some();
    }
    if let (ArrowType::Decimal128(_, sl), ArrowType::Decimal128(_, sr)) = (l, r) {
        // Equal scales: the unscaled values compare as they are.
        return sl == sr;
    }
    let numeric = |t: &ArrowType| t.is_integer() || t.is_floating();
    let signed_int = |t: &ArrowType| {
        matches!(
            t,
            ArrowType::Int8 | ArrowType::Int16 | ArrowType::Int32 | ArrowType::Int64
        )
    };
    (signed_int(l) || l.is_floating())
        && (signed_int(r) || r.is_floating())
        && numeric(l)
        && numeric(r)
}

/// The class both operands of a comparison are brought to (see [`comparable`]).
pub(crate) fn common(l: Phys, r: Phys) -> Phys {
    if l == r {
        return l;
    }
    if l.is_float() || r.is_float() {
        return Phys::F64;
    }
    // Two integers: the wider one.
    if l.width() >= r.width() { l } else { r }
}

/// For `l + r` or `l - r` of two DECIMALs of one scale, the precision of the interpreter's raw
/// sum (Arrow's rule, Hive's: `max(p1 - s1, p2 - s2) + s + 1`, at most 38) when the result type
/// `t` has that scale too; `None` for any other operand types.
pub(crate) fn decimal_sum_precision(l: &ArrowType, r: &ArrowType, t: &ArrowType) -> Option<u8> {
    match (l, r, t) {
        (
            ArrowType::Decimal128(pl, sl),
            ArrowType::Decimal128(pr, sr),
            ArrowType::Decimal128(_, st),
        ) if sl == sr && sr == st => {
            let digits = (i16::from(*pl) - i16::from(*sl)).max(i16::from(*pr) - i16::from(*sr));
            Some((digits + i16::from(*sl) + 1).clamp(1, 38) as u8)
        }
        _ => None,
    }
}

/// For TIMESTAMP ± INTERVAL DAY TO SECOND (Arrow's millisecond duration) whose result keeps the
/// timestamp's type: the timestamp's unit, and whether the interval is the left operand.
pub(crate) fn timestamp_shift(
    l: &ArrowType,
    r: &ArrowType,
    t: &ArrowType,
    minus: bool,
) -> Option<(TimeUnit, bool)> {
    let ms = ArrowType::Duration(TimeUnit::Millisecond);
    // fsql's TIMESTAMP(p) is in milliseconds, microseconds or nanoseconds, never whole seconds.
    let fsql_unit = |t: &ArrowType| !matches!(t, ArrowType::Timestamp(TimeUnit::Second, _));
    if !fsql_unit(t) {
        return None;
    }
    match (l, r) {
        (ArrowType::Timestamp(unit, _), d) if *d == ms && l == t => Some((*unit, false)),
        (d, ArrowType::Timestamp(unit, _)) if *d == ms && r == t && !minus => Some((*unit, true)),
        _ => None,
    }
}

/// For `l * r` of two DECIMALs, the precision of the interpreter's raw product (Arrow's rule:
/// `p1 + p2 + 1`, at most 38) when the result type `t` has the product's scale `s1 + s2`;
/// `None` otherwise.
pub(crate) fn decimal_product_precision(l: &ArrowType, r: &ArrowType, t: &ArrowType) -> Option<u8> {
    match (l, r, t) {
        (
            ArrowType::Decimal128(pl, sl),
            ArrowType::Decimal128(pr, sr),
            ArrowType::Decimal128(_, st),
        ) if i16::from(*sl) + i16::from(*sr) == i16::from(*st) && *st >= 0 => {
            Some((u16::from(*pl) + u16::from(*pr) + 1).min(38) as u8)
        }
        _ => None,
    }
}
