//! The typed expression IR: one tree form that both the interpreter and (later) the JIT execute.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::types::DataType;

/// A typed scalar expression over the columns of one operator's input.
///
/// Columns are referred to by position, so a plan is self-contained and the runtime never resolves
/// names. `data_type` is the type of the result; `nullable` says whether it can be NULL.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Expr {
    pub kind: ExprKind,
    pub data_type: DataType,
    pub nullable: bool,
}

/// The node kinds of [`Expr`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExprKind {
    /// The input column at this position.
    Column(usize),
    Literal(Literal),
    Unary {
        op: UnaryOp,
        arg: Box<Expr>,
    },
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    /// `CAST(arg AS data_type)`; with `safe` (`TRY_CAST`) a failed conversion is NULL, else an error.
    Cast {
        arg: Box<Expr>,
        safe: bool,
    },
    /// Searched `CASE WHEN c THEN v ... ELSE e END` (a simple `CASE x WHEN` is lowered to this).
    Case {
        branches: Vec<(Expr, Expr)>,
        otherwise: Option<Box<Expr>>,
    },
    /// `arg [NOT] IN (list...)` with SQL's three-valued result.
    InList {
        arg: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    /// `arg [NOT] LIKE pattern [ESCAPE c]`; `case_insensitive` for `ILIKE`.
    Like {
        arg: Box<Expr>,
        pattern: Box<Expr>,
        negated: bool,
        case_insensitive: bool,
        escape: Option<char>,
    },
    /// A call of a `stdlib` function, by its canonical (lower-case) name.
    Call {
        function: String,
        args: Vec<Expr>,
    },
}

/// Unary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UnaryOp {
    Not,
    Negate,
    IsNull,
    IsNotNull,
    IsTrue,
    IsNotTrue,
    IsFalse,
    IsNotFalse,
}

/// Binary operators. Arithmetic operands have the same type (the compiler inserts casts), except
/// timestamp ± interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BinaryOp {
    Plus,
    Minus,
    Multiply,
    Divide,
    Modulo,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    /// `IS NOT DISTINCT FROM`: equality where NULL equals NULL.
    IsNotDistinctFrom,
    IsDistinctFrom,
    And,
    Or,
    /// String concatenation `||`.
    Concat,
}

impl BinaryOp {
    /// The SQL spelling of the operator.
    pub fn sql(&self) -> &'static str {
        match self {
            BinaryOp::Plus => "+",
            BinaryOp::Minus => "-",
            BinaryOp::Multiply => "*",
            BinaryOp::Divide => "/",
            BinaryOp::Modulo => "%",
            BinaryOp::Eq => "=",
            BinaryOp::NotEq => "<>",
            BinaryOp::Lt => "<",
            BinaryOp::LtEq => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::GtEq => ">=",
            BinaryOp::IsNotDistinctFrom => "IS NOT DISTINCT FROM",
            BinaryOp::IsDistinctFrom => "IS DISTINCT FROM",
            BinaryOp::And => "AND",
            BinaryOp::Or => "OR",
            BinaryOp::Concat => "||",
        }
    }
}

/// A constant. Its SQL type is the enclosing [`Expr`]'s `data_type`; the variant holds the value in
/// the runtime's physical representation (e.g. a `TIMESTAMP(3)` is epoch milliseconds in `Int`).
/// Floats are held as their bit patterns so plans serialise deterministically (NaN included).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Literal {
    Null,
    Boolean(bool),
    /// Any integer-backed value: TINYINT..BIGINT, DATE (days), TIME (ms), TIMESTAMP (in its unit),
    /// INTERVAL DAY TO SECOND (ms), INTERVAL YEAR TO MONTH (months).
    Int(i64),
    /// IEEE-754 bits of a FLOAT or DOUBLE value (FLOAT stored widened to f64).
    Float(u64),
    /// Unscaled DECIMAL value, as a decimal string (i128 is not portable through JSON).
    Decimal(String),
    String(String),
    Bytes(Vec<u8>),
}

impl Literal {
    /// A float literal from its value.
    pub fn float(v: f64) -> Literal {
        Literal::Float(v.to_bits())
    }
}

impl Expr {
    /// A literal of the given type.
    pub fn literal(value: Literal, data_type: DataType) -> Expr {
        let nullable = value == Literal::Null;
        Expr {
            kind: ExprKind::Literal(value),
            data_type,
            nullable,
        }
    }

    /// A reference to input column `index`.
    pub fn column(index: usize, data_type: DataType, nullable: bool) -> Expr {
        Expr {
            kind: ExprKind::Column(index),
            data_type,
            nullable,
        }
    }

    /// Sets `read[i]` for every input column `i` the expression reads (positions past `read`'s
    /// end are ignored).
    pub fn mark_columns(&self, read: &mut [bool]) {
        if let ExprKind::Column(i) = self.kind
            && let Some(r) = read.get_mut(i)
        {
            *r = true;
        }
        for child in self.children() {
            child.mark_columns(read);
        }
    }

    /// The direct children of this node.
    pub fn children(&self) -> Vec<&Expr> {
        match &self.kind {
            ExprKind::Column(_) | ExprKind::Literal(_) => vec![],
            ExprKind::Unary { arg, .. } | ExprKind::Cast { arg, .. } => vec![arg],
            ExprKind::Binary { left, right, .. } => vec![left, right],
            ExprKind::Case {
                branches,
                otherwise,
            } => branches
                .iter()
                .flat_map(|(c, v)| [c, v])
                .chain(otherwise.as_deref())
                .collect(),
            ExprKind::InList { arg, list, .. } => std::iter::once(&**arg).chain(list).collect(),
            ExprKind::Like { arg, pattern, .. } => vec![arg, pattern],
            ExprKind::Call { args, .. } => args.iter().collect(),
        }
    }

    /// The direct children of this node, mutably (same order as [`Expr::children`]).
    pub fn children_mut(&mut self) -> Vec<&mut Expr> {
        match &mut self.kind {
            ExprKind::Column(_) | ExprKind::Literal(_) => vec![],
            ExprKind::Unary { arg, .. } | ExprKind::Cast { arg, .. } => vec![arg],
            ExprKind::Binary { left, right, .. } => vec![left, right],
            ExprKind::Case {
                branches,
                otherwise,
            } => branches
                .iter_mut()
                .flat_map(|(c, v)| [c, v])
                .chain(otherwise.as_deref_mut())
                .collect(),
            ExprKind::InList { arg, list, .. } => std::iter::once(&mut **arg).chain(list).collect(),
            ExprKind::Like { arg, pattern, .. } => vec![arg, pattern],
            ExprKind::Call { args, .. } => args.iter_mut().collect(),
        }
    }

    /// The input columns this expression reads, ascending and without repeats.
    pub fn columns(&self) -> Vec<usize> {
        let mut out = Vec::new();
        let mut stack = vec![self];
        while let Some(e) = stack.pop() {
            if let ExprKind::Column(i) = e.kind {
                out.push(i);
            }
            stack.extend(e.children());
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Renders an expression as SQL-like text with columns as `$index` (for `fsql explain`).
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ExprKind::Column(i) => write!(f, "${i}"),
            ExprKind::Literal(l) => match l {
                Literal::Null => write!(f, "NULL"),
                Literal::Boolean(b) => write!(f, "{}", if *b { "TRUE" } else { "FALSE" }),
                Literal::Int(v) => match self.data_type {
                    DataType::Timestamp { .. } | DataType::TimestampLtz { .. } => {
                        write!(f, "{}:{v}", self.data_type)
                    }
                    DataType::IntervalDayTime => write!(f, "INTERVAL {v} MILLISECOND"),
                    _ => write!(f, "{v}"),
                },
                Literal::Float(bits) => write!(f, "{:?}", f64::from_bits(*bits)),
                Literal::Decimal(v) => write!(f, "{v}:{}", self.data_type),
                Literal::String(s) => write!(f, "'{}'", s.replace('\'', "''")),
                Literal::Bytes(b) => {
                    write!(f, "X'")?;
                    for byte in b {
                        write!(f, "{byte:02X}")?;
                    }
                    write!(f, "'")
                }
            },
            ExprKind::Unary { op, arg } => match op {
                UnaryOp::Not => write!(f, "NOT ({arg})"),
                UnaryOp::Negate => write!(f, "-({arg})"),
                UnaryOp::IsNull => write!(f, "({arg}) IS NULL"),
                UnaryOp::IsNotNull => write!(f, "({arg}) IS NOT NULL"),
                UnaryOp::IsTrue => write!(f, "({arg}) IS TRUE"),
                UnaryOp::IsNotTrue => write!(f, "({arg}) IS NOT TRUE"),
                UnaryOp::IsFalse => write!(f, "({arg}) IS FALSE"),
                UnaryOp::IsNotFalse => write!(f, "({arg}) IS NOT FALSE"),
            },
            ExprKind::Binary { op, left, right } => write!(f, "({left} {} {right})", op.sql()),
            ExprKind::Cast { arg, safe } => {
                let name = if *safe { "TRY_CAST" } else { "CAST" };
                write!(f, "{name}({arg} AS {})", self.data_type)
            }
            ExprKind::Case {
                branches,
                otherwise,
            } => {
                write!(f, "CASE")?;
                for (c, v) in branches {
                    write!(f, " WHEN {c} THEN {v}")?;
                }
                if let Some(e) = otherwise {
                    write!(f, " ELSE {e}")?;
                }
                write!(f, " END")
            }
            ExprKind::InList { arg, list, negated } => {
                write!(f, "{arg} {}IN (", if *negated { "NOT " } else { "" })?;
                for (i, e) in list.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{e}")?;
                }
                write!(f, ")")
            }
            ExprKind::Like {
                arg,
                pattern,
                negated,
                case_insensitive,
                ..
            } => {
                let not = if *negated { "NOT " } else { "" };
                let op = if *case_insensitive { "ILIKE" } else { "LIKE" };
                write!(f, "{arg} {not}{op} {pattern}")
            }
            ExprKind::Call { function, args } => {
                write!(f, "{}(", function.to_uppercase())?;
                for (i, e) in args.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{e}")?;
                }
                write!(f, ")")
            }
        }
    }
}
