//! Random well-typed expressions over random batches (NULLs, extreme values, NaN and signed
//! zeros, empty strings, arrays read at an offset), and the differential check of one case: the JIT
//! against the interpreter, equal bit for bit, errors included. The unit tests draw cases from
//! seeds, the `jit` fuzz target from the fuzzer's bytes.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, DurationMillisecondArray, Float32Array,
    Float64Array, Int8Array, Int16Array, Int32Array, Int64Array, RecordBatch, StringArray,
    Time32MillisecondArray, TimestampMicrosecondArray, TimestampMillisecondArray,
};
use fsql_plan::{
    BinaryOp, DataType, Expr, ExprKind, Field, Literal, Rule, RulesetSpec, Schema, UnaryOp,
};

use super::CompiledExprs;
use crate::operators::calc::Calc;
use crate::operators::ruleset::Ruleset;
use crate::source::runtime_schema;

fn schema(fields: &[(&str, DataType)]) -> Schema {
    Schema::new(
        fields
            .iter()
            .map(|(n, t)| Field::new(*n, t.clone(), true))
            .collect(),
    )
}

/// Where the generator's choices come from.
pub struct Rng(Source);

enum Source {
    /// splitmix64: small, fast, and the same sequence everywhere.
    Seed(u64),
    /// A fuzzer's input, two bytes per choice (zeros once it runs out), so that mutating a byte
    /// changes one choice.
    Bytes(Vec<u8>, usize),
}

impl Rng {
    /// Choices from a seed (tests).
    pub fn seeded(seed: u64) -> Rng {
        Rng(Source::Seed(seed))
    }

    /// Choices read from `bytes` (fuzzing).
    pub fn from_bytes(bytes: &[u8]) -> Rng {
        Rng(Source::Bytes(bytes.to_vec(), 0))
    }

    /// The next 64 random bits (16 from a fuzzer's bytes).
    fn bits(&mut self) -> u64 {
        match &mut self.0 {
            Source::Seed(state) => {
                *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = *state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^ (z >> 31)
            }
            Source::Bytes(bytes, at) => {
                let b = |i: usize| u64::from(bytes.get(i).copied().unwrap_or(0));
                let v = b(*at) | (b(*at + 1) << 8);
                *at += 2;
                v
            }
        }
    }

    /// A choice in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.bits() % n.max(1) as u64) as usize
    }

    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const TS3: DataType = DataType::Timestamp { precision: 3 };
const TS6: DataType = DataType::Timestamp { precision: 6 };
const DEC: DataType = DataType::Decimal {
    precision: 10,
    scale: 2,
};
/// The type of `DEC * DEC` with one digit less than the interpreter's raw product (21): products
/// beyond it are NULL.
const DEC_PRODUCT: DataType = DataType::Decimal {
    precision: 20,
    scale: 4,
};

/// The input columns: every type compiled code reads, and some it leaves to the interpreter.
pub fn columns() -> Vec<(&'static str, DataType)> {
    vec![
        ("b", DataType::Boolean),
        ("t", DataType::TinyInt),
        ("s", DataType::SmallInt),
        ("i", DataType::Int),
        ("l", DataType::BigInt),
        ("f", DataType::Float),
        ("d", DataType::Double),
        ("str", DataType::String),
        ("day", DataType::Date),
        ("ts", TS3),
        ("ts6", TS6),
        ("dur", DataType::IntervalDayTime),
        ("dec", DEC),
        ("tm", DataType::Time),
        ("b2", DataType::Boolean),
        ("l2", DataType::BigInt),
        ("d2", DataType::Double),
        ("str2", DataType::String),
    ]
}

const INTS: [DataType; 4] = [
    DataType::TinyInt,
    DataType::SmallInt,
    DataType::Int,
    DataType::BigInt,
];

fn is_int(t: &DataType) -> bool {
    INTS.contains(t)
}

fn is_float(t: &DataType) -> bool {
    matches!(t, DataType::Float | DataType::Double)
}

fn int_extremes(t: &DataType) -> [i64; 3] {
    match t {
        DataType::TinyInt => [i8::MIN.into(), i8::MAX.into(), -1],
        DataType::SmallInt => [i16::MIN.into(), i16::MAX.into(), -1],
        DataType::Int => [i32::MIN.into(), i32::MAX.into(), -1],
        _ => [i64::MIN, i64::MAX, -1],
    }
}

fn float_value(rng: &mut Rng) -> f64 {
    *rng.pick(&[
        0.0,
        -0.0,
        1.0,
        -1.5,
        2.5,
        1e300,
        -1e-300,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        3e9,
        -3e9,
        1e20,
        0.1,
        7.0,
    ])
}

fn int_value(rng: &mut Rng, t: &DataType) -> i64 {
    let [min, max, minus_one] = int_extremes(t);
    match rng.below(6) {
        0 => min,
        1 => max,
        2 => minus_one,
        3 => 0,
        _ => (rng.below(21) as i64) - 10,
    }
}

/// An unscaled DECIMAL(10, 2): mostly small, some near the precision's limit (sums overflow
/// it), and rarely beyond it or at the ends of `i128` (arrays may hold them; sums then fail).
fn decimal_value(rng: &mut Rng) -> i128 {
    match rng.below(16) {
        0 => *rng.pick(&[9_999_999_999, -9_999_999_999, 5_000_000_000, -5_000_000_000]),
        1 if rng.one_in(2) => *rng.pick(&[
            i128::MAX,
            i128::MIN,
            10i128.pow(37),
            -(10i128.pow(38)),
            10i128.pow(12),
            -3 * 10i128.pow(12),
        ]),
        _ => rng.below(20_000) as i128 - 10_000,
    }
}

fn string_value(rng: &mut Rng) -> &'static str {
    // Short ones, and pairs of equal length that differ at one end (compiled equality with a
    // literal of 1 to 16 bytes compares them by whole words).
    const STRINGS: [&str; 18] = [
        "",
        "a",
        "abc",
        "ab",
        "B",
        "ü",
        "a%",
        " x ",
        "12",
        "zz",
        "abcd",
        "abce",
        "abcdefg",
        "xbcdefg",
        "hello world",
        "hello worle",
        "0123456789abcdef",
        "0123456789abcdefg",
    ];
    STRINGS[rng.below(STRINGS.len())]
}

/// A random literal of type `t` (sometimes NULL).
fn literal(rng: &mut Rng, t: &DataType) -> Expr {
    if rng.one_in(8) {
        return Expr::literal(Literal::Null, t.clone());
    }
    let value = match t {
        DataType::Boolean => Literal::Boolean(rng.one_in(2)),
        t if is_int(t) => Literal::Int(int_value(rng, t)),
        DataType::Float | DataType::Double => Literal::float(float_value(rng)),
        DataType::String => Literal::String(string_value(rng).to_string()),
        DataType::Date => Literal::Int(*rng.pick(&[0, 19_000, -1, 20_000])),
        DataType::Time => Literal::Int(*rng.pick(&[0, 1_000, 86_399_999])),
        DataType::Timestamp { .. } | DataType::IntervalDayTime => {
            Literal::Int(*rng.pick(&[0, 1_700_000_000_000, -5, 60_000, -1_999, i64::MAX]))
        }
        DataType::Decimal { .. } => Literal::Decimal(rng.pick(&["0", "12345", "-99"]).to_string()),
        _ => Literal::Null,
    };
    Expr::literal(value, t.clone())
}

pub(crate) fn node(kind: ExprKind, t: DataType) -> Expr {
    Expr {
        kind,
        data_type: t,
        nullable: true,
    }
}

pub(crate) fn binary(op: BinaryOp, l: Expr, r: Expr, t: DataType) -> Expr {
    node(
        ExprKind::Binary {
            op,
            left: Box::new(l),
            right: Box::new(r),
        },
        t,
    )
}

fn call(function: &str, args: Vec<Expr>, t: DataType) -> Expr {
    node(
        ExprKind::Call {
            function: function.into(),
            args,
        },
        t,
    )
}

/// Generates well-typed expressions over [`columns`] and batches of them.
pub struct Generator {
    rng: Rng,
    columns: Vec<(&'static str, DataType)>,
}

impl Generator {
    pub fn new(rng: Rng) -> Generator {
        Generator {
            rng,
            columns: columns(),
        }
    }

    fn leaf(&mut self, t: &DataType) -> Expr {
        let matching: Vec<usize> = (0..self.columns.len())
            .filter(|i| self.columns[*i].1 == *t)
            .collect();
        if !matching.is_empty() && !self.rng.one_in(3) {
            let i = *self.rng.pick(&matching);
            return Expr::column(i, t.clone(), true);
        }
        literal(&mut self.rng, t)
    }

    /// A type for a sub-expression.
    pub fn some_type(&mut self) -> DataType {
        self.rng
            .pick(&[
                DataType::Boolean,
                DataType::TinyInt,
                DataType::SmallInt,
                DataType::Int,
                DataType::BigInt,
                DataType::BigInt,
                DataType::Float,
                DataType::Double,
                DataType::Double,
                DataType::String,
                DataType::Date,
                TS3,
                TS6,
                DEC,
                DEC_PRODUCT,
            ])
            .clone()
    }

    /// An expression of type `t` at most `depth` levels deep.
    pub fn expr(&mut self, t: &DataType, depth: usize) -> Expr {
        if depth == 0 || self.rng.one_in(4) {
            return self.leaf(t);
        }
        let d = depth - 1;
        match t {
            DataType::Boolean => self.boolean(d),
            t if is_int(t) || is_float(t) => self.number(t, d),
            DataType::String => match self.rng.below(6) {
                0 => call("upper", vec![self.expr(t, d)], t.clone()),
                5 => call(
                    "coalesce",
                    vec![self.expr(t, d), self.expr(t, d)],
                    t.clone(),
                ),
                1 => self.case(t, d),
                2 => {
                    let from = self.rng.pick(&INTS).clone();
                    node(
                        ExprKind::Cast {
                            arg: Box::new(self.expr(&from, d)),
                            safe: false,
                        },
                        t.clone(),
                    )
                }
                _ => self.leaf(t),
            },
            t if *t == DEC_PRODUCT => match self.rng.below(3) {
                0 => binary(
                    BinaryOp::Multiply,
                    self.expr(&DEC, d),
                    self.expr(&DEC, d),
                    t.clone(),
                ),
                1 => self.case(t, d),
                _ => self.leaf(t),
            },
            DataType::Decimal { .. } => match self.rng.below(3) {
                0 => binary(
                    *self.rng.pick(&[BinaryOp::Plus, BinaryOp::Minus]),
                    self.expr(t, d),
                    self.expr(t, d),
                    t.clone(),
                ),
                1 => self.case(t, d),
                _ => self.leaf(t),
            },
            DataType::Timestamp { .. } if self.rng.one_in(3) => {
                // TIMESTAMP ± INTERVAL DAY TO SECOND (either order for +).
                let minus = self.rng.one_in(2);
                let ts = self.expr(t, d);
                let iv = self.expr(&DataType::IntervalDayTime, d);
                let (l, r) = if !minus && self.rng.one_in(2) {
                    (iv, ts)
                } else {
                    (ts, iv)
                };
                let op = if minus {
                    BinaryOp::Minus
                } else {
                    BinaryOp::Plus
                };
                binary(op, l, r, t.clone())
            }
            _ => match self.rng.below(3) {
                0 => self.case(t, d),
                1 => call(
                    "coalesce",
                    vec![self.expr(t, d), self.expr(t, d)],
                    t.clone(),
                ),
                _ => self.leaf(t),
            },
        }
    }

    fn case(&mut self, t: &DataType, d: usize) -> Expr {
        let branches = (0..1 + self.rng.below(3))
            .map(|_| (self.expr(&DataType::Boolean, d), self.expr(t, d)))
            .collect();
        let otherwise = (!self.rng.one_in(3)).then(|| Box::new(self.expr(t, d)));
        node(
            ExprKind::Case {
                branches,
                otherwise,
            },
            t.clone(),
        )
    }

    fn number(&mut self, t: &DataType, d: usize) -> Expr {
        match self.rng.below(9) {
            0..=2 => {
                let op = *self.rng.pick(&[
                    BinaryOp::Plus,
                    BinaryOp::Minus,
                    BinaryOp::Multiply,
                    BinaryOp::Divide,
                    BinaryOp::Modulo,
                ]);
                binary(op, self.expr(t, d), self.expr(t, d), t.clone())
            }
            3 => node(
                ExprKind::Unary {
                    op: UnaryOp::Negate,
                    arg: Box::new(self.expr(t, d)),
                },
                t.clone(),
            ),
            4 => {
                let from = self
                    .rng
                    .pick(&[
                        DataType::TinyInt,
                        DataType::Int,
                        DataType::BigInt,
                        DataType::Float,
                        DataType::Double,
                        DEC,
                    ])
                    .clone();
                node(
                    ExprKind::Cast {
                        arg: Box::new(self.expr(&from, d)),
                        safe: self.rng.one_in(2),
                    },
                    t.clone(),
                )
            }
            5 => self.case(t, d),
            6 if self.rng.one_in(3) => {
                let f = *self.rng.pick(&["coalesce", "ifnull"]);
                let n = if f == "ifnull" {
                    2
                } else {
                    1 + self.rng.below(3)
                };
                let args = (0..n).map(|_| self.expr(t, d)).collect();
                call(f, args, t.clone())
            }
            6 if *t == DataType::BigInt && self.rng.one_in(2) => {
                // A timestamp field: a stdlib function called per row (its scalar form).
                let f = *self
                    .rng
                    .pick(&["hour", "minute", "year", "dayofweek", "week"]);
                let ts = self.rng.pick(&[TS3, TS6]).clone();
                call(f, vec![self.expr(&ts, d)], DataType::BigInt)
            }
            6 if *t == DataType::Double && self.rng.one_in(2) => {
                // A stdlib function compiled code calls per row (its scalar form).
                let (f, arity) =
                    *self
                        .rng
                        .pick(&[("sqrt", 1), ("ln", 1), ("power", 2), ("atan2", 2)]);
                let args = (0..arity).map(|_| self.expr(t, d)).collect();
                call(f, args, DataType::Double)
            }
            6 if *t == DataType::Int => call(
                "char_length",
                vec![self.expr(&DataType::String, d)],
                DataType::Int,
            ),
            6 => call("abs", vec![self.expr(t, d)], t.clone()),
            7 => call(
                "coalesce",
                vec![self.expr(t, d), self.expr(t, d)],
                t.clone(),
            ),
            _ => self.leaf(t),
        }
    }

    fn boolean(&mut self, d: usize) -> Expr {
        let b = DataType::Boolean;
        match self.rng.below(10) {
            0..=2 => {
                let lt = self.some_type();
                // Mostly the same type; sometimes another numeric type or another timestamp unit.
                let rt = if self.rng.one_in(3) && (is_int(&lt) || is_float(&lt)) {
                    self.rng
                        .pick(&[
                            DataType::TinyInt,
                            DataType::BigInt,
                            DataType::Float,
                            DataType::Double,
                        ])
                        .clone()
                } else if lt == TS3 && self.rng.one_in(3) {
                    TS6
                } else {
                    lt.clone()
                };
                let op = *self.rng.pick(&[
                    BinaryOp::Eq,
                    BinaryOp::NotEq,
                    BinaryOp::Lt,
                    BinaryOp::LtEq,
                    BinaryOp::Gt,
                    BinaryOp::GtEq,
                    BinaryOp::IsDistinctFrom,
                    BinaryOp::IsNotDistinctFrom,
                ]);
                binary(op, self.expr(&lt, d), self.expr(&rt, d), b)
            }
            3 | 4 => {
                let op = *self.rng.pick(&[BinaryOp::And, BinaryOp::Or]);
                binary(op, self.expr(&b, d), self.expr(&b, d), b)
            }
            5 => {
                let op = *self.rng.pick(&[
                    UnaryOp::Not,
                    UnaryOp::IsNull,
                    UnaryOp::IsNotNull,
                    UnaryOp::IsTrue,
                    UnaryOp::IsNotTrue,
                    UnaryOp::IsFalse,
                    UnaryOp::IsNotFalse,
                ]);
                let arg_type = if matches!(op, UnaryOp::IsNull | UnaryOp::IsNotNull) {
                    self.some_type()
                } else {
                    b.clone()
                };
                node(
                    ExprKind::Unary {
                        op,
                        arg: Box::new(self.expr(&arg_type, d)),
                    },
                    b,
                )
            }
            6 => {
                let t = self.some_type();
                let list = (0..self.rng.below(4)).map(|_| self.expr(&t, d)).collect();
                node(
                    ExprKind::InList {
                        arg: Box::new(self.expr(&t, d)),
                        list,
                        negated: self.rng.one_in(2),
                    },
                    b,
                )
            }
            7 => self.case(&b, d),
            8 => {
                // Every shape: exact, prefix, suffix, substring, general (with `_` on multi-byte
                // characters and backtracking `%`), escapes (trailing ones too), backslashes.
                let pattern = self
                    .rng
                    .pick(&[
                        "%a%", "a_", "", "%", "ab%", "%c", "abc", "_", "%b_%", "a%c%", "%%", "a!%",
                        "!_%", "a!", "a\\_", "\\%", "h%o%w%", "0%9%f", "__", "ü",
                    ])
                    .to_string();
                let escape = match self.rng.below(3) {
                    0 => None,
                    1 => Some('!'),
                    _ => Some('\\'),
                };
                node(
                    ExprKind::Like {
                        arg: Box::new(self.expr(&DataType::String, d)),
                        pattern: Box::new(Expr::literal(
                            Literal::String(pattern),
                            DataType::String,
                        )),
                        negated: self.rng.one_in(2),
                        case_insensitive: self.rng.one_in(6),
                        escape,
                    },
                    b,
                )
            }
            _ => self.leaf(&b),
        }
    }

    /// A batch of `rows` rows, taken from a larger one at an offset so bitmaps are read at
    /// offsets too; each column has NULLs or not.
    pub fn batch(&mut self, rows: usize) -> RecordBatch {
        let offset = self.rng.below(9);
        let total = rows + offset;
        let columns: Vec<ArrayRef> = self
            .columns
            .clone()
            .iter()
            .map(|(_, t)| {
                let nulls = !self.rng.one_in(3);
                let valid = |rng: &mut Rng| !nulls || !rng.one_in(5);
                let rng = &mut self.rng;
                let array: ArrayRef = match t {
                    DataType::Boolean => Arc::new(
                        (0..total)
                            .map(|_| valid(rng).then(|| rng.one_in(2)))
                            .collect::<BooleanArray>(),
                    ),
                    DataType::TinyInt => Arc::new(
                        (0..total)
                            .map(|_| valid(rng).then(|| int_value(rng, t) as i8))
                            .collect::<Int8Array>(),
                    ),
                    DataType::SmallInt => Arc::new(
                        (0..total)
                            .map(|_| valid(rng).then(|| int_value(rng, t) as i16))
                            .collect::<Int16Array>(),
                    ),
                    DataType::Int => Arc::new(
                        (0..total)
                            .map(|_| valid(rng).then(|| int_value(rng, t) as i32))
                            .collect::<Int32Array>(),
                    ),
                    DataType::BigInt => Arc::new(
                        (0..total)
                            .map(|_| valid(rng).then(|| int_value(rng, t)))
                            .collect::<Int64Array>(),
                    ),
                    DataType::Float => Arc::new(
                        (0..total)
                            .map(|_| valid(rng).then(|| float_value(rng) as f32))
                            .collect::<Float32Array>(),
                    ),
                    DataType::Double => Arc::new(
                        (0..total)
                            .map(|_| valid(rng).then(|| float_value(rng)))
                            .collect::<Float64Array>(),
                    ),
                    DataType::String => Arc::new(
                        (0..total)
                            .map(|_| valid(rng).then(|| string_value(rng)))
                            .collect::<StringArray>(),
                    ),
                    DataType::Date => Arc::new(
                        (0..total)
                            .map(|_| valid(rng).then(|| rng.below(40_000) as i32 - 1_000))
                            .collect::<Date32Array>(),
                    ),
                    DataType::Time => Arc::new(
                        (0..total)
                            .map(|_| valid(rng).then(|| rng.below(86_400_000) as i32))
                            .collect::<Time32MillisecondArray>(),
                    ),
                    DataType::Timestamp { precision: 3 } => Arc::new(
                        (0..total)
                            .map(|_| valid(rng).then(|| rng.below(3) as i64 * 60_000 - 5))
                            .collect::<TimestampMillisecondArray>(),
                    ),
                    DataType::Timestamp { .. } => Arc::new(
                        (0..total)
                            .map(|_| valid(rng).then(|| rng.below(3) as i64 * 60_000_000))
                            .collect::<TimestampMicrosecondArray>(),
                    ),
                    DataType::IntervalDayTime => Arc::new(
                        (0..total)
                            .map(|_| valid(rng).then(|| rng.below(100_000) as i64 - 50_000))
                            .collect::<DurationMillisecondArray>(),
                    ),
                    _ => Arc::new(
                        (0..total)
                            .map(|_| valid(rng).then(|| decimal_value(rng)))
                            .collect::<Decimal128Array>()
                            .with_precision_and_scale(10, 2)
                            .expect("decimal(10,2)"),
                    ),
                };
                array.slice(offset, rows)
            })
            .collect();
        let fields: Vec<(&str, DataType)> = self.columns.clone();
        RecordBatch::try_new(runtime_schema(&schema(&fields)), columns).expect("generated batch")
    }
}

/// How a generated case ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The kernel computed the batch, and its result equals the interpreter's.
    Compiled,
    /// The batch went to the interpreter (an interpreted part failed).
    FellBack,
    /// Nothing in the case compiles.
    Interpreted,
}

/// A generated filter and outputs over a generated batch: the compiled group against the
/// interpreted Calc. `Err` describes a difference (the expressions and both results).
pub fn calc_case(rng: Rng) -> Result<Outcome, String> {
    let mut g = Generator::new(rng);
    let depth = 1 + g.rng.below(5);
    let filter = (!g.rng.one_in(3)).then(|| g.expr(&DataType::Boolean, depth));
    let outputs: Vec<Expr> = (0..1 + g.rng.below(3))
        .map(|_| {
            let t = g.some_type();
            g.expr(&t, depth)
        })
        .collect();
    let rows = *g.rng.pick(&[0, 1, 7, 63, 64, 65, 130]);
    let batch = g.batch(rows);
    let out_fields: Vec<(String, DataType)> = outputs
        .iter()
        .enumerate()
        .map(|(i, e)| (format!("o{i}"), e.data_type.clone()))
        .collect();
    let out_refs: Vec<(&str, DataType)> = out_fields
        .iter()
        .map(|(n, t)| (n.as_str(), t.clone()))
        .collect();
    let out_schema = runtime_schema(&schema(&out_refs));
    let mut calc = Calc::new("calc", filter.clone(), outputs.clone(), out_schema.clone());
    let expected = calc.apply(&batch).map_err(|e| e.to_string());
    if std::env::var_os("FSQL_JIT_TRACE").is_some() {
        eprintln!(
            "filter {:?}\noutputs {:?}\nrows {}",
            filter.as_ref().map(|f| f.to_string()),
            outputs.iter().map(|o| o.to_string()).collect::<Vec<_>>(),
            batch.num_rows()
        );
    }
    let Some(mut compiled) = CompiledExprs::new(filter.as_ref(), &outputs, &batch.schema()) else {
        return Ok(Outcome::Interpreted);
    };
    let describe = || {
        format!(
            "filter: {}\noutputs: {}",
            filter.as_ref().map(|f| f.to_string()).unwrap_or_default(),
            outputs
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n         ")
        )
    };
    let computed = compiled.run(&batch).map_err(|e| format!("in `calc`: {e}"));
    let got = match computed {
        Ok(None) => return Ok(Outcome::FellBack),
        Ok(Some(c)) if c.rows == 0 => Ok(None),
        Ok(Some(c)) => Ok(Some(
            RecordBatch::try_new_with_options(
                out_schema,
                c.columns,
                &arrow::array::RecordBatchOptions::new().with_row_count(Some(c.rows)),
            )
            .map_err(|e| format!("{}\nbad output: {e}", describe()))?,
        )),
        Err(e) => Err(e),
    };
    let same = match (&got, &expected) {
        (Ok(Some(a)), Ok(Some(b))) => same_batch(a, b),
        _ => got == expected,
    };
    if !same {
        return Err(format!(
            "{}\ninterpreter: {expected:?}\njit:         {got:?}",
            describe()
        ));
    }
    Ok(Outcome::Compiled)
}

/// Equal schemas, NULLs and values, bit for bit, except that any two NaNs are equal: which NaN an
/// operation on NaNs returns (sign, payload) is up to the machine and the compiler (LLVM does not
/// preserve it), and SQL cannot tell NaNs apart.
fn same_batch(a: &RecordBatch, b: &RecordBatch) -> bool {
    fn floats<T: arrow::array::ArrowPrimitiveType>(
        x: &dyn arrow::array::Array,
        y: &dyn arrow::array::Array,
        bits: impl Fn(T::Native) -> (u64, bool),
    ) -> bool {
        use arrow::array::AsArray;
        let (x, y) = (x.as_primitive::<T>(), y.as_primitive::<T>());
        (0..x.len()).all(|i| {
            x.is_valid(i) == y.is_valid(i) && {
                let ((xb, xnan), (yb, ynan)) = (bits(x.value(i)), bits(y.value(i)));
                x.is_null(i) || (xnan && ynan) || xb == yb
            }
        })
    }
    use arrow::array::Array;
    use arrow::datatypes::{DataType as A, Float32Type, Float64Type};
    a.schema() == b.schema()
        && a.num_rows() == b.num_rows()
        && a.columns().iter().zip(b.columns()).all(|(x, y)| {
            x.len() == y.len()
                && match x.data_type() {
                    A::Float64 => floats::<Float64Type>(x, y, |v| (v.to_bits(), v.is_nan())),
                    A::Float32 => {
                        floats::<Float32Type>(x, y, |v| (u64::from(v.to_bits()), v.is_nan()))
                    }
                    _ => x == y,
                }
        })
}

/// Three generated rules over a generated batch: the compiled ruleset against the interpreted
/// one. `Err` describes a difference.
pub fn ruleset_case(rng: Rng) -> Result<(), String> {
    let mut g = Generator::new(rng);
    let depth = 1 + g.rng.below(4);
    let rules: Vec<Rule> = (0..3)
        .map(|k| Rule {
            name: format!("r{k}"),
            priority: k,
            condition: g.expr(&DataType::Boolean, depth),
            decision: format!("d{k}"),
        })
        .collect();
    let spec = RulesetSpec {
        name: "rules".into(),
        key: 0,
        default_decision: "allow".into(),
        version: 1,
        rules,
        parameters: vec![],
    };
    let rows = *g.rng.pick(&[1, 9, 64, 100]);
    let batch = g.batch(rows);
    let mut fields: Vec<(&str, DataType)> = g.columns.clone();
    fields.push(("decision", DataType::String));
    fields.push(("rule", DataType::String));
    fields.push(("ruleset_version", DataType::BigInt));
    let out = runtime_schema(&schema(&fields));
    let mut interpreted = Ruleset::new("rules", spec.clone(), out.clone());
    let expected = interpreted.apply(&batch).map_err(|e| e.to_string());
    let mut compiled = Ruleset::new("rules", spec.clone(), out).compiled(&batch.schema());
    let got = compiled.apply(&batch).map_err(|e| e.to_string());
    if got != expected {
        return Err(format!(
            "rules: {}\ninterpreter: {expected:?}\njit:         {got:?}",
            spec.rules
                .iter()
                .map(|r| r.condition.to_string())
                .collect::<Vec<_>>()
                .join("\n       ")
        ));
    }
    Ok(())
}
