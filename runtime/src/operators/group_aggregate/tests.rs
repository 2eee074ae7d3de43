//! GroupAggregate behaviour: the changes it emits for new, changed, unchanged and emptied keys,
//! retraction of every aggregate over an updating input, and restore after any step.

use std::sync::Arc;

use arrow::array::{Int64Array, StringArray};
use fsql_plan::{AggregateFunction as F, DataType, GroupAggregate as Agg, GroupAggregateSpec};

use super::GroupAggregate;
use crate::operator::RowKind::{self, Delete, Insert, UpdateAfter, UpdateBefore};
use crate::source::runtime_schema;
use crate::state::StateBackend;
use crate::testkit::{Step, check_restore, col, drive, schema};

fn input() -> fsql_plan::Schema {
    schema(&[("k", DataType::String), ("v", DataType::BigInt)])
}

fn agg(function: F, args: Vec<fsql_plan::Expr>, data_type: DataType) -> Agg {
    Agg {
        function,
        args,
        distinct: false,
        filter: None,
        data_type,
    }
}

/// `SELECT k, COUNT(*), SUM(v), MIN(v), MAX(v) ... GROUP BY k`, state in memory.
fn make(retracting: bool) -> GroupAggregate {
    make_in(retracting, &StateBackend::memory())
}

/// The same, state in `backend`.
fn make_in(retracting: bool, backend: &StateBackend) -> GroupAggregate {
    let v = || col(1, DataType::BigInt);
    let spec = GroupAggregateSpec {
        keys: vec![0],
        aggregates: vec![
            agg(F::Count, vec![], DataType::BigInt),
            agg(F::Sum, vec![v()], DataType::BigInt),
            agg(F::Min, vec![v()], DataType::BigInt),
            agg(F::Max, vec![v()], DataType::BigInt),
        ],
    };
    let out = schema(&[
        ("k", DataType::String),
        ("n", DataType::BigInt),
        ("s", DataType::BigInt),
        ("lo", DataType::BigInt),
        ("hi", DataType::BigInt),
    ]);
    GroupAggregate::new(
        "g",
        &spec,
        &runtime_schema(&input()),
        runtime_schema(&out),
        retracting,
        None,
        backend,
    )
    .expect("a valid group aggregate")
}

fn batch(rows: &[(Option<&str>, Option<i64>)]) -> arrow::array::RecordBatch {
    crate::testkit::batch_of(
        &input(),
        vec![
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            )),
        ],
    )
}

fn changes(rows: &[(RowKind, Option<&str>, Option<i64>)]) -> Step {
    let b = batch(&rows.iter().map(|r| (r.1, r.2)).collect::<Vec<_>>());
    Step::Changes(0, b, rows.iter().map(|r| r.0).collect())
}

#[test]
fn new_keys_insert_changes_update_and_equal_results_stay_silent() {
    let steps = vec![
        Step::Batch(0, batch(&[(Some("a"), Some(5)), (Some("b"), Some(1))])),
        Step::Batch(0, batch(&[(Some("a"), Some(7))])),
        // COUNT changes, so the row is updated even though MIN/MAX/SUM... do not all change.
        Step::Batch(0, batch(&[(Some("b"), None)])),
    ];
    let mut op = make(false);
    let mut out = Vec::new();
    drive(&mut op, &steps, &mut out).unwrap();
    assert_eq!(
        out,
        vec![
            r#"+I {"k":"a","n":1,"s":5,"lo":5,"hi":5}"#,
            r#"+I {"k":"b","n":1,"s":1,"lo":1,"hi":1}"#,
            r#"-U {"k":"a","n":1,"s":5,"lo":5,"hi":5}"#,
            r#"+U {"k":"a","n":2,"s":12,"lo":5,"hi":7}"#,
            r#"-U {"k":"b","n":1,"s":1,"lo":1,"hi":1}"#,
            r#"+U {"k":"b","n":2,"s":1,"lo":1,"hi":1}"#,
        ]
    );
}

#[test]
fn retractions_move_min_and_max_and_delete_an_emptied_key() {
    let steps = vec![
        changes(&[
            (Insert, Some("a"), Some(5)),
            (Insert, Some("a"), Some(9)),
            (Insert, Some("a"), Some(1)),
        ]),
        changes(&[(UpdateBefore, Some("a"), Some(9))]),
        changes(&[(Delete, Some("a"), Some(1))]),
        // A retraction of a key without state is ignored.
        changes(&[(Delete, Some("z"), Some(1))]),
        changes(&[(UpdateBefore, Some("a"), Some(5))]),
        changes(&[(UpdateAfter, None, Some(3))]),
    ];
    let out = check_restore(&|| Box::new(make(true)), &steps);
    assert_eq!(
        out,
        vec![
            r#"+I {"k":"a","n":3,"s":15,"lo":1,"hi":9}"#,
            r#"-U {"k":"a","n":3,"s":15,"lo":1,"hi":9}"#,
            r#"+U {"k":"a","n":2,"s":6,"lo":1,"hi":5}"#,
            r#"-U {"k":"a","n":2,"s":6,"lo":1,"hi":5}"#,
            r#"+U {"k":"a","n":1,"s":5,"lo":5,"hi":5}"#,
            r#"-D {"k":"a","n":1,"s":5,"lo":5,"hi":5}"#,
            r#"+I {"k":null,"n":1,"s":3,"lo":3,"hi":3}"#,
        ]
    );
}

#[test]
fn keys_spilled_to_rocksdb_are_read_back_and_restored() {
    // One resident key: every other key is spilled between batches and read back when touched.
    let backend = crate::testkit::rocksdb_backend(1);
    let steps = vec![
        changes(&[(Insert, Some("a"), Some(5)), (Insert, Some("b"), Some(9))]),
        changes(&[(Insert, Some("c"), Some(1)), (Insert, Some("a"), Some(7))]),
        changes(&[
            (Delete, Some("b"), Some(9)),
            (UpdateBefore, Some("a"), Some(7)),
        ]),
    ];
    let in_rocksdb = check_restore(&|| Box::new(make_in(true, &backend)), &steps);
    let in_memory = check_restore(&|| Box::new(make(true)), &steps);
    assert_eq!(in_rocksdb, in_memory);
    assert_eq!(
        in_rocksdb.last().map(String::as_str),
        Some(r#"+U {"k":"a","n":1,"s":5,"lo":5,"hi":5}"#)
    );
}

#[test]
fn a_key_added_and_retracted_within_one_batch_emits_nothing() {
    let steps = vec![changes(&[
        (Insert, Some("a"), Some(5)),
        (Delete, Some("a"), Some(5)),
    ])];
    let mut op = make(true);
    let mut out = Vec::new();
    drive(&mut op, &steps, &mut out).unwrap();
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(op.live_keys(), 0);
}

#[test]
fn first_value_over_updates_is_refused() {
    let spec = GroupAggregateSpec {
        keys: vec![],
        aggregates: vec![agg(
            F::FirstValue,
            vec![col(1, DataType::BigInt)],
            DataType::BigInt,
        )],
    };
    let out = runtime_schema(&schema(&[("f", DataType::BigInt)]));
    let memory = StateBackend::memory();
    let err = GroupAggregate::new(
        "g",
        &spec,
        &runtime_schema(&input()),
        out,
        true,
        None,
        &memory,
    )
    .err()
    .expect("refused")
    .to_string();
    assert!(err.contains("FIRST_VALUE over an updating input"), "{err}");
}

#[test]
fn keys_idle_for_the_ttl_are_dropped_without_a_retraction() {
    let make = || {
        let v = || col(1, DataType::BigInt);
        let spec = GroupAggregateSpec {
            keys: vec![0],
            aggregates: vec![
                agg(F::Count, vec![], DataType::BigInt),
                agg(F::Sum, vec![v()], DataType::BigInt),
            ],
        };
        let out = schema(&[
            ("k", DataType::String),
            ("n", DataType::BigInt),
            ("s", DataType::BigInt),
        ]);
        let op = GroupAggregate::new(
            "g",
            &spec,
            &runtime_schema(&input()),
            runtime_schema(&out),
            false,
            Some(10),
            &StateBackend::memory(),
        )
        .expect("a valid group aggregate");
        Box::new(op) as Box<dyn crate::operator::Operator>
    };
    let steps = vec![
        Step::Batch(0, batch(&[(Some("a"), Some(5))])),
        // Touched before any watermark: `a` counts from this one.
        Step::Watermark(100),
        Step::Batch(0, batch(&[(Some("b"), Some(1))])),
        Step::Watermark(105),
        Step::Batch(0, batch(&[(Some("a"), Some(7))])),
        // `b` was last touched at 100: idle for 10 ms at 110. `a` (105) lives on.
        Step::Watermark(112),
        Step::Batch(0, batch(&[(Some("b"), Some(2)), (Some("a"), Some(1))])),
        Step::Watermark(200),
        Step::Batch(0, batch(&[(Some("a"), Some(4))])),
    ];
    assert_eq!(
        check_restore(&make, &steps),
        vec![
            r#"+I {"k":"a","n":1,"s":5}"#,
            "watermark 100",
            r#"+I {"k":"b","n":1,"s":1}"#,
            "watermark 105",
            r#"-U {"k":"a","n":1,"s":5}"#,
            r#"+U {"k":"a","n":2,"s":12}"#,
            "watermark 112",
            // `b` starts afresh; `a` still has its state.
            r#"+I {"k":"b","n":1,"s":2}"#,
            r#"-U {"k":"a","n":2,"s":12}"#,
            r#"+U {"k":"a","n":3,"s":13}"#,
            "watermark 200",
            r#"+I {"k":"a","n":1,"s":4}"#,
        ]
    );
}
