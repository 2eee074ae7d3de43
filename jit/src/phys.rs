//! The physical value classes compiled code handles, and which Arrow types map to them.

use arrow::datatypes::{DataType as ArrowType, IntervalUnit};
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
