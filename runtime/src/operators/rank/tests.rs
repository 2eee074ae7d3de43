//! TopN without a window: Flink's changes as rows enter, ties, deduplication keeping the last
//! row, and restore after any step (in memory and with every partition spilled to RocksDB).

use std::sync::Arc;

use arrow::array::{Int64Array, StringArray};
use fsql_plan::{DataType, RankSpec, SortKey};

use super::Rank;
use crate::source::runtime_schema;
use crate::state::StateBackend;
use crate::testkit::{Step, check_restore, col, schema};

fn input() -> fsql_plan::Schema {
    schema(&[("k", DataType::String), ("v", DataType::BigInt)])
}

/// `ROW_NUMBER() OVER (PARTITION BY k ORDER BY v DESC)` with `rownum <= limit`.
fn make(limit: u64, latest_on_ties: bool, backend: &StateBackend) -> Rank {
    let spec = RankSpec {
        partition_by: vec![0],
        order_by: vec![SortKey {
            expr: col(1, DataType::BigInt),
            descending: true,
            nulls_first: false,
        }],
        limit: Some(limit),
        latest_on_ties,
    };
    let out = schema(&[
        ("k", DataType::String),
        ("v", DataType::BigInt),
        ("rn", DataType::BigInt),
    ]);
    Rank::new("r", &spec, runtime_schema(&out), backend).expect("a valid rank")
}

fn rows(rows: &[(&str, i64)]) -> Step {
    Step::Batch(
        0,
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
        ),
    )
}

#[test]
fn rows_entering_the_top_n_shift_the_ranks_after_them() {
    let steps = vec![
        rows(&[("a", 5)]),
        rows(&[("a", 7), ("a", 6)]),
        rows(&[("a", 1), ("b", 3)]),
        // Ties with the first 7: ranked after it.
        rows(&[("a", 7)]),
    ];
    let expected = vec![
        r#"+I {"k":"a","v":5,"rn":1}"#,
        r#"-U {"k":"a","v":5,"rn":1}"#,
        r#"+U {"k":"a","v":7,"rn":1}"#,
        r#"+I {"k":"a","v":5,"rn":2}"#,
        r#"-U {"k":"a","v":5,"rn":2}"#,
        r#"+U {"k":"a","v":6,"rn":2}"#,
        r#"+I {"k":"b","v":3,"rn":1}"#,
        r#"-U {"k":"a","v":6,"rn":2}"#,
        r#"+U {"k":"a","v":7,"rn":2}"#,
    ];
    let memory = StateBackend::memory();
    assert_eq!(
        check_restore(&|| Box::new(make(2, false, &memory)), &steps),
        expected
    );
    let rocksdb = crate::testkit::rocksdb_backend(1);
    assert_eq!(
        check_restore(&|| Box::new(make(2, false, &rocksdb)), &steps),
        expected
    );
}

#[test]
fn deduplication_keeps_the_latest_of_equal_keys() {
    let memory = StateBackend::memory();
    let mut op = make(1, true, &memory);
    let mut out = Vec::new();
    crate::testkit::drive(&mut op, &[rows(&[("a", 5), ("a", 5), ("a", 4)])], &mut out).unwrap();
    assert_eq!(
        out,
        vec![
            r#"+I {"k":"a","v":5,"rn":1}"#,
            r#"-U {"k":"a","v":5,"rn":1}"#,
            r#"+U {"k":"a","v":5,"rn":1}"#,
        ]
    );
}
