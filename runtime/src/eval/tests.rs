//! Interpreter behaviour a SQL user would notice.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray, TimestampMicrosecondArray, TimestampMillisecondArray,
};
use arrow::datatypes::{Field, Schema, TimeUnit};
use fsql_plan::{BinaryOp, DataType, Expr, ExprKind, Literal, UnaryOp};

use super::evaluate;
use crate::error::EvalError;

pub(crate) fn col(i: usize, t: DataType) -> Expr {
    Expr::column(i, t, true)
}

pub(crate) fn int(v: i64) -> Expr {
    Expr::literal(Literal::Int(v), DataType::Int)
}

pub(crate) fn bigint(v: i64) -> Expr {
    Expr::literal(Literal::Int(v), DataType::BigInt)
}

pub(crate) fn string(s: &str) -> Expr {
    Expr::literal(Literal::String(s.into()), DataType::String)
}

pub(crate) fn null(t: DataType) -> Expr {
    Expr::literal(Literal::Null, t)
}

pub(crate) fn boolean(b: bool) -> Expr {
    Expr::literal(Literal::Boolean(b), DataType::Boolean)
}

pub(crate) fn bin(op: BinaryOp, l: Expr, r: Expr, t: DataType) -> Expr {
    Expr {
        kind: ExprKind::Binary {
            op,
            left: Box::new(l),
            right: Box::new(r),
        },
        data_type: t,
        nullable: true,
    }
}

pub(crate) fn un(op: UnaryOp, a: Expr, t: DataType) -> Expr {
    Expr {
        kind: ExprKind::Unary {
            op,
            arg: Box::new(a),
        },
        data_type: t,
        nullable: true,
    }
}

fn cast(a: Expr, t: DataType, safe: bool) -> Expr {
    Expr {
        kind: ExprKind::Cast {
            arg: Box::new(a),
            safe,
        },
        data_type: t,
        nullable: true,
    }
}

pub(crate) fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap()
}

fn one_row() -> RecordBatch {
    batch(vec![("x", Arc::new(Int32Array::from(vec![1])) as ArrayRef)])
}

fn bools(a: &ArrayRef) -> Vec<Option<bool>> {
    a.as_boolean().iter().collect()
}

fn ints(a: &ArrayRef) -> Vec<Option<i32>> {
    a.as_primitive::<arrow::datatypes::Int32Type>()
        .iter()
        .collect()
}

fn strs(a: &ArrayRef) -> Vec<Option<String>> {
    a.as_string::<i32>()
        .iter()
        .map(|s| s.map(str::to_string))
        .collect()
}

#[test]
fn three_valued_and_or_not_truth_table() {
    // All 9 combinations of TRUE / FALSE / NULL.
    let l = BooleanArray::from(vec![
        Some(true),
        Some(true),
        Some(true),
        Some(false),
        Some(false),
        Some(false),
        None,
        None,
        None,
    ]);
    let r = BooleanArray::from(vec![
        Some(true),
        Some(false),
        None,
        Some(true),
        Some(false),
        None,
        Some(true),
        Some(false),
        None,
    ]);
    let b = batch(vec![
        ("l", Arc::new(l) as ArrayRef),
        ("r", Arc::new(r) as ArrayRef),
    ]);
    let and = evaluate(
        &bin(
            BinaryOp::And,
            col(0, DataType::Boolean),
            col(1, DataType::Boolean),
            DataType::Boolean,
        ),
        &b,
    )
    .unwrap();
    let or = evaluate(
        &bin(
            BinaryOp::Or,
            col(0, DataType::Boolean),
            col(1, DataType::Boolean),
            DataType::Boolean,
        ),
        &b,
    )
    .unwrap();
    let not = evaluate(
        &un(UnaryOp::Not, col(0, DataType::Boolean), DataType::Boolean),
        &b,
    )
    .unwrap();
    let (t, f, n) = (Some(true), Some(false), None);
    assert_eq!(bools(&and), vec![t, f, n, f, f, f, n, f, n]);
    assert_eq!(bools(&or), vec![t, t, t, t, f, n, t, n, n]);
    assert_eq!(bools(&not), vec![f, f, f, t, t, t, n, n, n]);
    let is_true = evaluate(
        &un(
            UnaryOp::IsTrue,
            col(1, DataType::Boolean),
            DataType::Boolean,
        ),
        &b,
    )
    .unwrap();
    assert_eq!(bools(&is_true), vec![t, f, f, t, f, f, t, f, f]);
    let is_not_false = evaluate(
        &un(
            UnaryOp::IsNotFalse,
            col(1, DataType::Boolean),
            DataType::Boolean,
        ),
        &b,
    )
    .unwrap();
    assert_eq!(bools(&is_not_false), vec![t, f, t, t, f, t, t, f, t]);
}

#[test]
fn integer_arithmetic_wraps_like_java() {
    let b = batch(vec![(
        "x",
        Arc::new(Int32Array::from(vec![i32::MAX, i32::MIN])) as ArrayRef,
    )]);
    let plus = evaluate(
        &bin(BinaryOp::Plus, col(0, DataType::Int), int(1), DataType::Int),
        &b,
    )
    .unwrap();
    assert_eq!(ints(&plus), vec![Some(i32::MIN), Some(i32::MIN + 1)]);
    let times = evaluate(
        &bin(
            BinaryOp::Multiply,
            col(0, DataType::Int),
            int(2),
            DataType::Int,
        ),
        &b,
    )
    .unwrap();
    assert_eq!(ints(&times), vec![Some(-2), Some(0)]);
    let neg = evaluate(
        &un(UnaryOp::Negate, col(0, DataType::Int), DataType::Int),
        &b,
    )
    .unwrap();
    assert_eq!(ints(&neg), vec![Some(-i32::MAX), Some(i32::MIN)]);
    let div = evaluate(
        &bin(
            BinaryOp::Divide,
            col(0, DataType::Int),
            int(-1),
            DataType::Int,
        ),
        &b,
    )
    .unwrap();
    assert_eq!(ints(&div), vec![Some(-i32::MAX), Some(i32::MIN)]);
}

#[test]
fn division_truncates_and_by_zero_is_null() {
    let b = batch(vec![
        (
            "a",
            Arc::new(Int64Array::from(vec![7, -7, 7, 5])) as ArrayRef,
        ),
        (
            "b",
            Arc::new(Int64Array::from(vec![Some(2), Some(2), Some(0), None])) as ArrayRef,
        ),
        (
            "d",
            Arc::new(Float64Array::from(vec![1.0, -1.0, 0.0, 2.0])) as ArrayRef,
        ),
    ]);
    let div = evaluate(
        &bin(
            BinaryOp::Divide,
            col(0, DataType::BigInt),
            col(1, DataType::BigInt),
            DataType::BigInt,
        ),
        &b,
    )
    .unwrap();
    let got: Vec<Option<i64>> = div
        .as_primitive::<arrow::datatypes::Int64Type>()
        .iter()
        .collect();
    assert_eq!(got, vec![Some(3), Some(-3), None, None]);
    let rem = evaluate(
        &bin(
            BinaryOp::Modulo,
            col(0, DataType::BigInt),
            col(1, DataType::BigInt),
            DataType::BigInt,
        ),
        &b,
    )
    .unwrap();
    let got: Vec<Option<i64>> = rem
        .as_primitive::<arrow::datatypes::Int64Type>()
        .iter()
        .collect();
    assert_eq!(got, vec![Some(1), Some(-1), None, None]);
    // Dividing by a literal zero: every row NULL, no error.
    let by_zero = evaluate(
        &bin(
            BinaryOp::Divide,
            col(0, DataType::BigInt),
            bigint(0),
            DataType::BigInt,
        ),
        &b,
    )
    .unwrap();
    assert_eq!(by_zero.null_count(), 4);
    // Floats follow IEEE-754.
    let zero = Expr::literal(Literal::float(0.0), DataType::Double);
    let fdiv = evaluate(
        &bin(
            BinaryOp::Divide,
            col(2, DataType::Double),
            zero,
            DataType::Double,
        ),
        &b,
    )
    .unwrap();
    let f = fdiv.as_primitive::<arrow::datatypes::Float64Type>();
    assert_eq!(f.value(0), f64::INFINITY);
    assert_eq!(f.value(1), f64::NEG_INFINITY);
    assert!(f.value(2).is_nan());
}

#[test]
fn in_list_is_three_valued() {
    let b = batch(vec![(
        "x",
        Arc::new(Int32Array::from(vec![Some(1), Some(2), None])) as ArrayRef,
    )]);
    let in_list = |negated: bool, list: Vec<Expr>| Expr {
        kind: ExprKind::InList {
            arg: Box::new(col(0, DataType::Int)),
            list,
            negated,
        },
        data_type: DataType::Boolean,
        nullable: true,
    };
    let with_null = evaluate(&in_list(false, vec![int(1), null(DataType::Int)]), &b).unwrap();
    assert_eq!(bools(&with_null), vec![Some(true), None, None]);
    let not_with_null = evaluate(&in_list(true, vec![int(1), null(DataType::Int)]), &b).unwrap();
    assert_eq!(bools(&not_with_null), vec![Some(false), None, None]);
    let plain = evaluate(&in_list(true, vec![int(1), int(3)]), &b).unwrap();
    assert_eq!(bools(&plain), vec![Some(false), Some(true), None]);
}

#[test]
fn like_with_escape_and_ilike() {
    let b = batch(vec![(
        "s",
        Arc::new(StringArray::from(vec![
            Some("50% off"),
            Some("500 off"),
            Some("50_x"),
            None,
        ])) as ArrayRef,
    )]);
    let like = |pattern: &str, escape: Option<char>, ci: bool| Expr {
        kind: ExprKind::Like {
            arg: Box::new(col(0, DataType::String)),
            pattern: Box::new(string(pattern)),
            negated: false,
            case_insensitive: ci,
            escape,
        },
        data_type: DataType::Boolean,
        nullable: true,
    };
    let escaped = evaluate(&like("50!%%", Some('!'), false), &b).unwrap();
    assert_eq!(
        bools(&escaped),
        vec![Some(true), Some(false), Some(false), None]
    );
    let unescaped = evaluate(&like("50%", None, false), &b).unwrap();
    assert_eq!(
        bools(&unescaped),
        vec![Some(true), Some(true), Some(true), None]
    );
    let underscore = evaluate(&like("50#_%", Some('#'), false), &b).unwrap();
    assert_eq!(
        bools(&underscore),
        vec![Some(false), Some(false), Some(true), None]
    );
    // Without ESCAPE a backslash is an ordinary character (standard SQL, Flink >= FLINK-39424).
    let literal_backslash = evaluate(&like("50\\%%", None, false), &b).unwrap();
    assert_eq!(
        bools(&literal_backslash),
        vec![Some(false), Some(false), Some(false), None]
    );
    let explicit_backslash = evaluate(&like("50\\%%", Some('\\'), false), &b).unwrap();
    assert_eq!(
        bools(&explicit_backslash),
        vec![Some(true), Some(false), Some(false), None]
    );
    let windows = batch(vec![(
        "p",
        Arc::new(StringArray::from(vec!["C:\\tmp"])) as ArrayRef,
    )]);
    let path = Expr {
        kind: ExprKind::Like {
            arg: Box::new(col(0, DataType::String)),
            pattern: Box::new(string("C:\\%")),
            negated: false,
            case_insensitive: false,
            escape: None,
        },
        data_type: DataType::Boolean,
        nullable: true,
    };
    assert_eq!(bools(&evaluate(&path, &windows).unwrap()), vec![Some(true)]);
    let ilike = evaluate(&like("%OFF", None, true), &b).unwrap();
    assert_eq!(
        bools(&ilike),
        vec![Some(true), Some(true), Some(false), None]
    );
}

#[test]
fn case_takes_first_true_branch_and_does_not_fail_on_unselected_rows() {
    let b = batch(vec![(
        "s",
        Arc::new(StringArray::from(vec![Some("12"), Some("abc"), None])) as ArrayRef,
    )]);
    let is_digits = Expr {
        kind: ExprKind::Like {
            arg: Box::new(col(0, DataType::String)),
            pattern: Box::new(string("1%")),
            negated: false,
            case_insensitive: false,
            escape: None,
        },
        data_type: DataType::Boolean,
        nullable: true,
    };
    // CASE WHEN s LIKE '1%' THEN CAST(s AS INT) WHEN TRUE THEN -1 END: the CAST must not see 'abc'.
    let case = Expr {
        kind: ExprKind::Case {
            branches: vec![
                (
                    is_digits,
                    cast(col(0, DataType::String), DataType::Int, false),
                ),
                (boolean(true), int(-1)),
            ],
            otherwise: None,
        },
        data_type: DataType::Int,
        nullable: true,
    };
    assert_eq!(
        ints(&evaluate(&case, &b).unwrap()),
        vec![Some(12), Some(-1), Some(-1)]
    );
    // No ELSE and no match gives NULL; an ELSE catches the rest.
    let case = |otherwise: Option<Expr>| Expr {
        kind: ExprKind::Case {
            branches: vec![(
                un(UnaryOp::IsNull, col(0, DataType::String), DataType::Boolean),
                string("missing"),
            )],
            otherwise: otherwise.map(Box::new),
        },
        data_type: DataType::String,
        nullable: true,
    };
    assert_eq!(
        strs(&evaluate(&case(None), &b).unwrap()),
        vec![None, None, Some("missing".into())]
    );
    assert_eq!(
        strs(&evaluate(&case(Some(string("present"))), &b).unwrap()),
        vec![
            Some("present".into()),
            Some("present".into()),
            Some("missing".into())
        ]
    );
}

#[test]
fn guarded_branches_read_the_right_columns_of_a_wide_batch() {
    // Guarded evaluation filters only the columns a branch reads: the others are placeholders, so
    // positions must still line up, and array and constant branches must land on their own rows.
    let b = batch(vec![
        (
            "s",
            Arc::new(StringArray::from(vec!["s0", "s1", "s2", "s3"])) as ArrayRef,
        ),
        (
            "x",
            Arc::new(Int64Array::from(vec![Some(5), Some(1), None, Some(3)])) as ArrayRef,
        ),
        (
            "t",
            Arc::new(StringArray::from(vec![Some("t0"), Some("t1"), None, None])) as ArrayRef,
        ),
    ]);
    let x = || col(1, DataType::BigInt);
    // CASE WHEN x > 2 THEN t WHEN x = 1 THEN 'one' ELSE s END
    let case = Expr {
        kind: ExprKind::Case {
            branches: vec![
                (
                    bin(BinaryOp::Gt, x(), bigint(2), DataType::Boolean),
                    col(2, DataType::String),
                ),
                (
                    bin(BinaryOp::Eq, x(), bigint(1), DataType::Boolean),
                    string("one"),
                ),
            ],
            otherwise: Some(Box::new(col(0, DataType::String))),
        },
        data_type: DataType::String,
        nullable: true,
    };
    assert_eq!(
        strs(&evaluate(&case, &b).unwrap()),
        vec![
            Some("t0".into()),
            Some("one".into()),
            Some("s2".into()),
            None
        ]
    );
    // x > 2 AND t IS NULL: the right side sees only the rows the left side leaves open.
    let and = bin(
        BinaryOp::And,
        bin(BinaryOp::Gt, x(), bigint(2), DataType::Boolean),
        un(UnaryOp::IsNull, col(2, DataType::String), DataType::Boolean),
        DataType::Boolean,
    );
    assert_eq!(
        bools(&evaluate(&and, &b).unwrap()),
        vec![Some(false), Some(false), None, Some(true)]
    );
}

#[test]
fn and_guard_protects_a_failing_cast() {
    let b = batch(vec![(
        "s",
        Arc::new(StringArray::from(vec!["7", "x"])) as ArrayRef,
    )]);
    let guard = bin(
        BinaryOp::Eq,
        col(0, DataType::String),
        string("7"),
        DataType::Boolean,
    );
    let check = bin(
        BinaryOp::Gt,
        cast(col(0, DataType::String), DataType::Int, false),
        int(5),
        DataType::Boolean,
    );
    let and = bin(BinaryOp::And, guard, check, DataType::Boolean);
    assert_eq!(
        bools(&evaluate(&and, &b).unwrap()),
        vec![Some(true), Some(false)]
    );
}

#[test]
fn cast_failure_is_an_error_and_try_cast_is_null() {
    let b = batch(vec![(
        "s",
        Arc::new(StringArray::from(vec![Some(" 42 "), Some("4x2"), None])) as ArrayRef,
    )]);
    let err = evaluate(&cast(col(0, DataType::String), DataType::Int, false), &b).unwrap_err();
    assert!(matches!(err, EvalError::Cast { .. }), "{err}");
    assert_eq!(err.to_string(), "cannot cast '4x2' from STRING to INT");
    let safe = evaluate(&cast(col(0, DataType::String), DataType::Int, true), &b).unwrap();
    assert_eq!(ints(&safe), vec![Some(42), None, None]);
    // Flink's narrowing wraps; doubles truncate; booleans and doubles render like Flink.
    let wide = batch(vec![(
        "x",
        Arc::new(Int32Array::from(vec![300])) as ArrayRef,
    )]);
    let tiny = evaluate(
        &cast(col(0, DataType::Int), DataType::TinyInt, false),
        &wide,
    )
    .unwrap();
    assert_eq!(
        tiny.as_primitive::<arrow::datatypes::Int8Type>().value(0),
        44
    );
    let d = Expr::literal(Literal::float(-3.9), DataType::Double);
    assert_eq!(
        ints(&evaluate(&cast(d, DataType::Int, false), &one_row()).unwrap()),
        vec![Some(-3)]
    );
    let s = evaluate(&cast(boolean(true), DataType::String, false), &one_row()).unwrap();
    assert_eq!(strs(&s), vec![Some("TRUE".into())]);
    let s = evaluate(
        &cast(
            Expr::literal(Literal::float(1e10), DataType::Double),
            DataType::String,
            false,
        ),
        &one_row(),
    )
    .unwrap();
    assert_eq!(strs(&s), vec![Some("1.0E10".into())]);
    let ts = evaluate(
        &cast(
            string("2024-01-01 10:00:00.5"),
            DataType::Timestamp { precision: 3 },
            false,
        ),
        &one_row(),
    )
    .unwrap();
    let s = evaluate(
        &cast(
            col(0, DataType::Timestamp { precision: 3 }),
            DataType::String,
            false,
        ),
        &batch(vec![("t", ts)]),
    )
    .unwrap();
    assert_eq!(strs(&s), vec![Some("2024-01-01 10:00:00.500".into())]);
}

#[test]
fn timestamp_minus_interval_and_month_arithmetic() {
    let ts = Arc::new(TimestampMillisecondArray::from(vec![
        Some(1_704_103_200_000),
        None,
    ])) as ArrayRef; // 2024-01-01 10:00
    let b = batch(vec![("ts", ts)]);
    let t3 = DataType::Timestamp { precision: 3 };
    let two_seconds = Expr::literal(Literal::Int(2000), DataType::IntervalDayTime);
    let minus = evaluate(
        &bin(BinaryOp::Minus, col(0, t3.clone()), two_seconds, t3.clone()),
        &b,
    )
    .unwrap();
    let got: Vec<Option<i64>> = minus
        .as_primitive::<arrow::datatypes::TimestampMillisecondType>()
        .iter()
        .collect();
    assert_eq!(got, vec![Some(1_704_103_198_000), None]);
    // 2024-01-31 + 1 month = 2024-02-29 (clamped, leap year).
    let jan31 = Expr::literal(Literal::Int(1_706_659_200_000), t3.clone());
    let month = Expr::literal(Literal::Int(1), DataType::IntervalYearMonth);
    let plus = evaluate(&bin(BinaryOp::Plus, jan31, month, t3.clone()), &one_row()).unwrap();
    let s = evaluate(
        &cast(col(0, t3.clone()), DataType::String, false),
        &batch(vec![("t", plus)]),
    )
    .unwrap();
    assert_eq!(strs(&s), vec![Some("2024-02-29 00:00:00.000".into())]);
}

#[test]
fn timestamps_compare_across_units() {
    let ms = Arc::new(TimestampMillisecondArray::from(vec![1_000, 2_000])) as ArrayRef;
    let us = Arc::new(TimestampMicrosecondArray::from(vec![1_000_000, 1_500_000])) as ArrayRef;
    let b = batch(vec![("a", ms), ("b", us)]);
    let eq = bin(
        BinaryOp::Eq,
        col(0, DataType::Timestamp { precision: 3 }),
        col(1, DataType::Timestamp { precision: 6 }),
        DataType::Boolean,
    );
    assert_eq!(
        bools(&evaluate(&eq, &b).unwrap()),
        vec![Some(true), Some(false)]
    );
    assert_eq!(TimeUnit::Millisecond, TimeUnit::Millisecond);
}

#[test]
fn distinct_from_treats_nulls_as_equal_and_concat_propagates_null() {
    let b = batch(vec![
        (
            "a",
            Arc::new(Int32Array::from(vec![Some(1), None, None])) as ArrayRef,
        ),
        (
            "b",
            Arc::new(Int32Array::from(vec![Some(1), None, Some(2)])) as ArrayRef,
        ),
        (
            "s",
            Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])) as ArrayRef,
        ),
    ]);
    let nd = bin(
        BinaryOp::IsNotDistinctFrom,
        col(0, DataType::Int),
        col(1, DataType::Int),
        DataType::Boolean,
    );
    assert_eq!(
        bools(&evaluate(&nd, &b).unwrap()),
        vec![Some(true), Some(true), Some(false)]
    );
    let eq = bin(
        BinaryOp::Eq,
        col(0, DataType::Int),
        col(1, DataType::Int),
        DataType::Boolean,
    );
    assert_eq!(
        bools(&evaluate(&eq, &b).unwrap()),
        vec![Some(true), None, None]
    );
    let cat = bin(
        BinaryOp::Concat,
        col(2, DataType::String),
        string("!"),
        DataType::String,
    );
    assert_eq!(
        strs(&evaluate(&cat, &b).unwrap()),
        vec![Some("a!".into()), None, Some("c!".into())]
    );
}

#[test]
fn constant_expressions_broadcast_to_the_batch() {
    let b = batch(vec![(
        "x",
        Arc::new(Int32Array::from(vec![1, 2, 3])) as ArrayRef,
    )]);
    let e = bin(BinaryOp::Plus, int(1), int(2), DataType::Int);
    assert_eq!(ints(&evaluate(&e, &b).unwrap()), vec![Some(3); 3]);
    let bad = col(5, DataType::Int);
    assert!(matches!(
        evaluate(&bad, &b),
        Err(EvalError::ColumnOutOfRange {
            index: 5,
            columns: 1
        })
    ));
}

#[test]
fn stdlib_calls_run_their_kernel() {
    let b = batch(vec![(
        "s",
        Arc::new(StringArray::from(vec![Some("abc"), None])) as ArrayRef,
    )]);
    let call = |name: &str| Expr {
        kind: ExprKind::Call {
            function: name.into(),
            args: vec![col(0, DataType::String)],
        },
        data_type: DataType::String,
        nullable: true,
    };
    assert_eq!(
        strs(&evaluate(&call("upper"), &b).unwrap()),
        vec![Some("ABC".into()), None]
    );
    let err = evaluate(&call("no_such_fn"), &b).unwrap_err();
    assert_eq!(err.to_string(), "unknown function `no_such_fn`");
}
