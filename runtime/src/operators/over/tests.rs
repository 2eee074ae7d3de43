//! OVER operator behaviour: Flink's reference results, both emit modes, lateness, NULLs, state
//! bounds, and incremental results checked against a brute-force recomputation.

use std::sync::Arc;

use arrow::array::{
    Array, AsArray, Decimal128Array, Float64Array, Int32Array, Int64Array, StringArray,
    TimestampMicrosecondArray, TimestampMillisecondArray,
};
use arrow::datatypes::Float64Type;
use arrow::util::display::array_value_to_string;
use fsql_plan::{
    AggregateFunction as F, DataType, Expr, ExprKind, Field, Literal, OverAggregate, OverFrame,
    OverSpec, Schema,
};

use super::*;
use crate::source::runtime_schema;

/// 2024-01-01 00:00:00 UTC in epoch ms.
const BASE: i64 = 1_704_067_200_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

fn at(h: i64, m: i64) -> i64 {
    BASE + h * HOUR + m * MINUTE
}

fn input_schema() -> Schema {
    Schema::new(vec![
        Field::new("id", DataType::BigInt, true),
        Field::new("k", DataType::String, true),
        Field::new("v", DataType::Double, true),
        Field::new("ts", DataType::Timestamp { precision: 3 }, true),
    ])
}

fn id() -> Expr {
    Expr::column(0, DataType::BigInt, true)
}

fn v() -> Expr {
    Expr::column(2, DataType::Double, true)
}

fn ts_col() -> Expr {
    Expr::column(3, DataType::Timestamp { precision: 3 }, true)
}

fn range(ms: i64) -> OverFrame {
    OverFrame::Range { preceding_ms: ms }
}

fn rows(n: u64) -> OverFrame {
    OverFrame::Rows { preceding: n }
}

/// An aggregate named `name` (the output column).
fn agg(
    name: &str,
    function: F,
    args: Vec<Expr>,
    frame: OverFrame,
    t: DataType,
) -> (String, OverAggregate) {
    (
        name.to_string(),
        OverAggregate {
            function,
            args,
            distinct: false,
            frame,
            data_type: t,
        },
    )
}

fn distinct(mut a: (String, OverAggregate)) -> (String, OverAggregate) {
    a.1.distinct = true;
    a
}

/// An OVER node over `input` (PARTITION BY `partition_by` ORDER BY `order_by`).
fn over_on(
    input: &Schema,
    partition_by: Vec<usize>,
    order_by: usize,
    aggs: Vec<(String, OverAggregate)>,
    emit: EmitMode,
) -> Over {
    over_in(
        input,
        partition_by,
        order_by,
        aggs,
        emit,
        &StateBackend::memory(),
    )
}

/// [`over_on`] with its partitions in `backend`.
fn over_in(
    input: &Schema,
    partition_by: Vec<usize>,
    order_by: usize,
    aggs: Vec<(String, OverAggregate)>,
    emit: EmitMode,
    backend: &StateBackend,
) -> Over {
    let mut out = input.clone();
    for (name, a) in &aggs {
        out.fields.push(Field::new(name, a.data_type.clone(), true));
    }
    let spec = OverSpec {
        partition_by,
        order_by,
        aggregates: aggs.into_iter().map(|(_, a)| a).collect(),
    };
    Over::new(
        "over",
        &spec,
        &runtime_schema(input),
        runtime_schema(&out),
        emit,
        None,
        backend,
    )
    .expect("over")
}

/// PARTITION BY k ORDER BY ts over (id, k, v, ts).
fn over(aggs: Vec<(String, OverAggregate)>, emit: EmitMode) -> Over {
    over_on(&input_schema(), vec![1], 3, aggs, emit)
}

type Row<'a> = (i64, &'a str, Option<f64>, i64);

fn batch(rows: &[Row]) -> RecordBatch {
    RecordBatch::try_new(
        runtime_schema(&input_schema()),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.2))),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.3),
            )),
        ],
    )
    .unwrap()
}

/// Drives an operator and keeps what it emitted.
struct Harness {
    op: Over,
    out: Vec<RecordBatch>,
    watermarks: Vec<i64>,
}

impl Harness {
    fn new(op: Over) -> Harness {
        Harness {
            op,
            out: Vec::new(),
            watermarks: Vec::new(),
        }
    }

    fn take(&mut self, events: Vec<Event>) -> usize {
        let mut n = 0;
        for e in events {
            match e {
                Event::Batch(b) => {
                    n += b.num_rows();
                    self.out.push(b);
                }
                Event::Watermark(w) => self.watermarks.push(w),
                Event::Changes(_) => panic!("OVER emits append-only rows"),
            }
        }
        n
    }

    /// Feeds a batch; returns the rows emitted by this call.
    fn push_batch(&mut self, b: RecordBatch) -> usize {
        let mut events = Vec::new();
        self.op.on_batch(0, b, &mut events).expect("on_batch");
        self.take(events)
    }

    fn push(&mut self, rows: &[Row]) -> usize {
        self.push_batch(batch(rows))
    }

    /// Advances the watermark; returns the rows emitted.
    fn watermark(&mut self, w: i64) -> usize {
        let mut events = Vec::new();
        self.op.on_watermark(w, &mut events).expect("on_watermark");
        assert!(
            matches!(events.last(), Some(Event::Watermark(x)) if *x == w),
            "watermark forwarded last"
        );
        self.take(events)
    }

    fn end(&mut self) -> usize {
        self.watermark(i64::MAX)
    }

    /// The named output columns of every emitted row, as text (`NULL` for nulls).
    fn table(&self, cols: &[&str]) -> Vec<String> {
        let mut lines = Vec::new();
        for b in &self.out {
            let idx: Vec<usize> = cols
                .iter()
                .map(|c| b.schema().index_of(c).expect("column"))
                .collect();
            for r in 0..b.num_rows() {
                let cells: Vec<String> = idx
                    .iter()
                    .map(|&i| {
                        let c = b.column(i);
                        if c.is_null(r) {
                            "NULL".to_string()
                        } else {
                            array_value_to_string(c.as_ref(), r).unwrap()
                        }
                    })
                    .collect();
                lines.push(cells.join(", "));
            }
        }
        lines
    }

    /// A column of every emitted row as DOUBLEs.
    fn floats(&self, col: &str) -> Vec<Option<f64>> {
        let mut values = Vec::new();
        for b in &self.out {
            let c = b.column(b.schema().index_of(col).expect("column")).clone();
            let c = cast(&c, &ArrowType::Float64).unwrap();
            values.extend(c.as_primitive::<Float64Type>().iter());
        }
        values
    }
}

/// The rows of Flink's reference run (id, k, v, ts).
fn reference_rows() -> Vec<Row<'static>> {
    vec![
        (1, "a", Some(1.0), at(0, 0)),
        (2, "a", Some(2.0), at(0, 30)),
        (3, "b", Some(5.0), at(0, 30)),
        (4, "a", Some(4.0), at(1, 0)),
        (5, "a", Some(8.0), at(1, 0)),
        (6, "a", Some(16.0), at(1, 30)),
        (7, "a", None, at(2, 0) + 1),
    ]
}

#[test]
fn range_frame_matches_flink_and_includes_its_lower_bound_and_peers() {
    let w = range(HOUR);
    let mut h = Harness::new(over(
        vec![
            agg("c", F::Count, vec![], w, DataType::BigInt),
            agg("s", F::Sum, vec![v()], w, DataType::Double),
            agg("mn", F::Min, vec![v()], w, DataType::Double),
            agg("mx", F::Max, vec![v()], w, DataType::Double),
            agg("av", F::Avg, vec![v()], w, DataType::Double),
            agg("cv", F::Count, vec![v()], w, DataType::BigInt),
        ],
        EmitMode::Watermark,
    ));
    assert_eq!(h.push(&reference_rows()), 0, "watermark mode waits");
    assert_eq!(h.end(), 7);
    assert_eq!(
        h.table(&["id", "c", "s", "mn", "mx", "av", "cv"]),
        vec![
            "1, 1, 1.0, 1.0, 1.0, 1.0, 1",
            "2, 2, 3.0, 1.0, 2.0, 1.5, 2",
            "3, 1, 5.0, 5.0, 5.0, 5.0, 1",
            "4, 4, 15.0, 1.0, 8.0, 3.75, 4",
            "5, 4, 15.0, 1.0, 8.0, 3.75, 4",
            "6, 4, 30.0, 2.0, 16.0, 7.5, 4",
            "7, 2, 16.0, 16.0, 16.0, 16.0, 1",
        ]
    );
    assert_eq!(h.op.pending_rows(), 0);
    assert_eq!(
        h.op.pending_batches(),
        0,
        "batches are released once processed"
    );
    // Input columns pass through with the node's names.
    assert_eq!(
        h.table(&["k", "v", "ts"])[6],
        "a, NULL, 2024-01-01T02:00:00.001"
    );
}

#[test]
fn rows_frame_matches_flink_one_row_at_a_time() {
    let w = rows(2);
    let mut h = Harness::new(over(
        vec![
            agg("c", F::Count, vec![], w, DataType::BigInt),
            agg("s", F::Sum, vec![v()], w, DataType::Double),
            agg("fv", F::FirstValue, vec![v()], w, DataType::Double),
            agg("lv", F::LastValue, vec![v()], w, DataType::Double),
            agg("sp", F::StddevPop, vec![v()], w, DataType::Double),
            agg("vs", F::VarSamp, vec![v()], w, DataType::Double),
            distinct(agg("cd", F::Count, vec![v()], w, DataType::BigInt)),
        ],
        EmitMode::Watermark,
    ));
    h.push(&reference_rows());
    h.end();
    assert_eq!(
        h.table(&["id", "c", "s", "fv", "lv", "sp", "vs", "cd"]),
        vec![
            "1, 1, 1.0, 1.0, 1.0, 0.0, NULL, 1",
            "2, 2, 3.0, 1.0, 2.0, 0.5, 0.5, 2",
            "3, 1, 5.0, 5.0, 5.0, 0.0, NULL, 1",
            "4, 3, 7.0, 1.0, 4.0, 1.2472191289246473, 2.333333333333334, 3",
            "5, 3, 14.0, 2.0, 8.0, 2.4944382578492945, 9.333333333333336, 3",
            "6, 3, 28.0, 4.0, 16.0, 4.988876515698589, 37.33333333333334, 3",
            "7, 3, 24.0, 8.0, 16.0, 4.0, 32.0, 2",
        ]
    );
}

#[test]
fn lag_under_a_range_frame_is_taken_after_all_peers() {
    let w = OverFrame::UnboundedRange;
    let mut h = Harness::new(over(
        vec![
            agg("c", F::Count, vec![], w, DataType::BigInt),
            agg("prv", F::Lag { offset: 1 }, vec![v()], w, DataType::Double),
            agg(
                "prv2",
                F::Lag { offset: 2 },
                vec![id()],
                w,
                DataType::BigInt,
            ),
            agg("s", F::Sum, vec![v()], w, DataType::Double),
            agg(
                "prv_or",
                F::Lag { offset: 1 },
                vec![v(), Expr::literal(Literal::float(-1.0), DataType::Double)],
                w,
                DataType::Double,
            ),
        ],
        EmitMode::Watermark,
    ));
    // Partition `a` holds ids 1, 2, 4, 5, 6, 7, as in Flink's LAG(id, 2) reference.
    h.push(&reference_rows());
    h.end();
    assert_eq!(
        h.table(&["id", "c", "prv", "prv2", "s", "prv_or"]),
        vec![
            "1, 1, NULL, NULL, 1.0, -1.0",
            "2, 2, 1.0, NULL, 3.0, 1.0",
            "3, 1, NULL, NULL, 5.0, -1.0",
            "4, 4, 4.0, 2, 15.0, 4.0",
            "5, 4, 4.0, 2, 15.0, 4.0",
            "6, 5, 8.0, 4, 31.0, 8.0",
            "7, 6, 16.0, 5, 31.0, 16.0",
        ]
    );
}

#[test]
fn lag_under_a_rows_frame_is_taken_row_by_row() {
    let w = OverFrame::UnboundedRows;
    let mut h = Harness::new(over(
        vec![
            agg("c", F::Count, vec![], w, DataType::BigInt),
            agg("prv", F::Lag { offset: 1 }, vec![v()], w, DataType::Double),
        ],
        EmitMode::Watermark,
    ));
    h.push(&reference_rows());
    h.end();
    assert_eq!(
        h.table(&["id", "c", "prv"]),
        vec![
            "1, 1, NULL",
            "2, 2, 1.0",
            "3, 1, NULL",
            "4, 3, 2.0",
            "5, 4, 4.0",
            "6, 5, 8.0",
            "7, 6, 16.0",
        ]
    );
}

#[test]
fn several_frames_share_one_partitioning() {
    let mut h = Harness::new(over(
        vec![
            agg("c_1h", F::Count, vec![], range(HOUR), DataType::BigInt),
            agg(
                "c_10m",
                F::Count,
                vec![],
                range(10 * MINUTE),
                DataType::BigInt,
            ),
            agg("c_2", F::Count, vec![], rows(1), DataType::BigInt),
            agg(
                "prev_ts",
                F::Lag { offset: 1 },
                vec![ts_col()],
                OverFrame::UnboundedRange,
                DataType::Timestamp { precision: 3 },
            ),
        ],
        EmitMode::Watermark,
    ));
    h.push(&[
        (1, "a", None, at(0, 0)),
        (2, "a", None, at(0, 5)),
        (3, "a", None, at(0, 20)),
        (4, "b", None, at(0, 21)),
        (5, "a", None, at(1, 0)),
    ]);
    h.end();
    assert_eq!(
        h.table(&["id", "c_1h", "c_10m", "c_2", "prev_ts"]),
        vec![
            "1, 1, 1, 1, NULL",
            "2, 2, 2, 2, 2024-01-01T00:00:00",
            "3, 3, 1, 2, 2024-01-01T00:05:00",
            "4, 1, 1, 1, NULL",
            "5, 4, 1, 2, 2024-01-01T00:20:00",
        ]
    );
}

#[test]
fn partitions_are_isolated_and_keys_may_be_null_or_composite() {
    let input = input_schema();
    let w = OverFrame::UnboundedRows;
    // PARTITION BY k, v.
    let mut h = Harness::new(over_on(
        &input,
        vec![1, 2],
        3,
        vec![
            agg("c", F::Count, vec![], w, DataType::BigInt),
            agg("ids", F::Sum, vec![id()], w, DataType::BigInt),
        ],
        EmitMode::Watermark,
    ));
    h.push(&[
        (1, "a", Some(1.0), at(0, 1)),
        (2, "b", Some(1.0), at(0, 2)),
        (3, "a", None, at(0, 3)),
        (4, "a", Some(1.0), at(0, 4)),
        (5, "a", None, at(0, 5)),
        (6, "b", Some(2.0), at(0, 6)),
    ]);
    h.end();
    assert_eq!(
        h.table(&["id", "c", "ids"]),
        vec![
            "1, 1, 1", "2, 1, 2", "3, 1, 3", "4, 2, 5", "5, 2, 8", "6, 1, 6"
        ]
    );
    assert_eq!(h.op.partitions(), 4);
}

#[test]
fn out_of_order_rows_within_the_watermark_delay_give_the_sorted_result() {
    let aggs = || {
        vec![
            agg("c", F::Count, vec![], range(HOUR), DataType::BigInt),
            agg("s", F::Sum, vec![v()], rows(1), DataType::Double),
            agg("f", F::FirstValue, vec![v()], range(HOUR), DataType::Double),
            agg(
                "p",
                F::Lag { offset: 1 },
                vec![id()],
                OverFrame::UnboundedRows,
                DataType::BigInt,
            ),
        ]
    };
    let sorted = reference_rows();
    let mut a = Harness::new(over(aggs(), EmitMode::Watermark));
    a.push(&sorted);
    a.end();
    // The same rows, shuffled, in three batches, with watermarks 1 h behind.
    let mut b = Harness::new(over(aggs(), EmitMode::Watermark));
    let r = &sorted;
    b.push(&[r[2], r[0]]);
    b.watermark(at(0, 0) - HOUR);
    b.push(&[r[5], r[1], r[3]]);
    b.watermark(at(0, 30));
    b.push(&[r[4], r[6]]);
    b.end();
    assert_eq!(b.op.late_rows(), 0);
    let cols = ["id", "c", "s", "f", "p"];
    let mut got = b.table(&cols);
    let mut want = a.table(&cols);
    // Peers 4 and 5 arrived in the same order, so even ROWS and LAG agree row by row.
    want.sort();
    got.sort();
    assert_eq!(got, want);
}

#[test]
fn late_rows_are_counted_and_not_emitted() {
    let w = OverFrame::UnboundedRange;
    let mut h = Harness::new(over(
        vec![
            agg("c", F::Count, vec![], w, DataType::BigInt),
            agg("s", F::Sum, vec![v()], w, DataType::Double),
        ],
        EmitMode::Watermark,
    ));
    let s = |x: i64| BASE + x * 1000;
    h.push(&[(1, "a", Some(1.0), s(10))]);
    assert_eq!(
        h.watermark(s(10)),
        1,
        "rows at the watermark are emitted when it arrives"
    );
    // Behind the watermark, and exactly at it: late.
    h.push(&[
        (2, "a", Some(2.0), s(5)),
        (3, "a", Some(4.0), s(11)),
        (8, "b", Some(1.0), s(10)),
    ]);
    h.end();
    assert_eq!(h.table(&["id", "c", "s"]), vec!["1, 1, 1.0", "3, 2, 5.0"]);
    assert_eq!(h.op.late_rows(), 2);
    assert_eq!(h.op.pending_batches(), 0);
}

#[test]
fn arrival_mode_emits_each_row_at_once_with_the_state_so_far() {
    let w = range(HOUR);
    let mut h = Harness::new(over(
        vec![
            agg("c", F::Count, vec![], w, DataType::BigInt),
            agg("s", F::Sum, vec![v()], w, DataType::Double),
            agg("mx", F::Max, vec![v()], w, DataType::Double),
            agg(
                "p",
                F::Lag { offset: 1 },
                vec![id()],
                OverFrame::UnboundedRange,
                DataType::BigInt,
            ),
            agg("r", F::Count, vec![], rows(1), DataType::BigInt),
        ],
        EmitMode::Arrival,
    ));
    let rows_in: [Row; 6] = [
        (1, "a", Some(1.0), at(0, 0)),
        (2, "a", Some(2.0), at(0, 30)),
        (4, "a", Some(4.0), at(1, 0)),
        (5, "a", Some(8.0), at(1, 0)),
        (3, "a", Some(5.0), at(0, 45)),
        (6, "a", Some(16.0), at(1, 30)),
    ];
    for r in rows_in {
        assert_eq!(h.push(&[r]), 1, "row {} emitted by its own on_batch", r.0);
    }
    assert_eq!(h.watermark(at(5, 0)), 0);
    assert_eq!(
        h.table(&["id", "c", "s", "mx", "p", "r"]),
        vec![
            "1, 1, 1.0, 1.0, NULL, 1",
            "2, 2, 3.0, 2.0, 1, 2",
            // A later peer (5) is not seen yet.
            "4, 3, 7.0, 4.0, 2, 2",
            "5, 4, 15.0, 8.0, 4, 2",
            // Out of order: its frame [23:45, 00:45] over what is retained; LAG by event time.
            "3, 3, 8.0, 5.0, 2, 2",
            // ... and it is in the frame of later rows.
            "6, 5, 35.0, 16.0, 5, 2",
        ]
    );
    assert_eq!(h.watermarks, vec![at(5, 0)]);
    assert_eq!(h.op.late_rows(), 0);
}

#[test]
fn arrival_mode_keeps_input_order_within_a_batch() {
    let mut h = Harness::new(over(
        vec![agg(
            "c",
            F::Count,
            vec![],
            OverFrame::UnboundedRows,
            DataType::BigInt,
        )],
        EmitMode::Arrival,
    ));
    assert_eq!(
        h.push(&[
            (1, "a", None, at(0, 2)),
            (2, "b", None, at(0, 1)),
            (3, "a", None, at(0, 3)),
            (4, "a", None, at(0, 1)),
        ]),
        4
    );
    // Row 4 is older than row 3: its own unbounded result includes the newer rows already
    // seen (documented), and it counts for later rows.
    assert_eq!(h.table(&["id", "c"]), vec!["1, 1", "2, 1", "3, 2", "4, 3"]);
    h.push(&[(5, "a", None, at(0, 4))]);
    assert_eq!(h.table(&["id", "c"])[4], "5, 4");
}

#[test]
fn nulls_are_ignored_except_by_count_star_and_lag() {
    let w = rows(10);
    let mut h = Harness::new(over(
        vec![
            agg("c", F::Count, vec![], w, DataType::BigInt),
            agg("cv", F::Count, vec![v()], w, DataType::BigInt),
            agg("s", F::Sum, vec![v()], w, DataType::Double),
            agg("a", F::Avg, vec![v()], w, DataType::Double),
            agg("mn", F::Min, vec![v()], w, DataType::Double),
            agg("fv", F::FirstValue, vec![v()], w, DataType::Double),
            agg("lv", F::LastValue, vec![v()], w, DataType::Double),
            agg("sd", F::StddevSamp, vec![v()], w, DataType::Double),
            agg("vp", F::VarPop, vec![v()], w, DataType::Double),
            agg("lag", F::Lag { offset: 1 }, vec![v()], w, DataType::Double),
            distinct(agg("cd", F::Count, vec![v()], w, DataType::BigInt)),
        ],
        EmitMode::Watermark,
    ));
    h.push(&[
        (1, "a", None, at(0, 1)),
        (2, "a", Some(3.0), at(0, 2)),
        (3, "a", None, at(0, 3)),
    ]);
    h.end();
    assert_eq!(
        h.table(&[
            "id", "c", "cv", "s", "a", "mn", "fv", "lv", "sd", "vp", "lag", "cd"
        ]),
        vec![
            "1, 1, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0",
            "2, 2, 1, 3.0, 3.0, 3.0, 3.0, 3.0, NULL, 0.0, NULL, 1",
            "3, 3, 1, 3.0, 3.0, 3.0, 3.0, 3.0, NULL, 0.0, 3.0, 1",
        ]
    );
}

#[test]
fn integer_and_decimal_arguments_keep_flinks_result_types() {
    let input = Schema::new(vec![
        Field::new("n", DataType::Int, true),
        Field::new(
            "d",
            DataType::Decimal {
                precision: 10,
                scale: 2,
            },
            true,
        ),
        Field::new("ts", DataType::Timestamp { precision: 3 }, true),
    ]);
    let n = Expr::column(0, DataType::Int, true);
    let d = Expr::column(
        1,
        DataType::Decimal {
            precision: 10,
            scale: 2,
        },
        true,
    );
    let w = OverFrame::UnboundedRows;
    let dec = |p, s| DataType::Decimal {
        precision: p,
        scale: s,
    };
    let mut h = Harness::new(over_on(
        &input,
        vec![],
        2,
        vec![
            agg("sn", F::Sum, vec![n.clone()], w, DataType::Int),
            agg("an", F::Avg, vec![n.clone()], w, DataType::Int),
            agg("sd", F::Sum, vec![d.clone()], w, dec(38, 2)),
            agg("ad", F::Avg, vec![d.clone()], w, dec(38, 6)),
            agg("mx", F::Max, vec![d], w, dec(10, 2)),
        ],
        EmitMode::Watermark,
    ));
    let b = RecordBatch::try_new(
        runtime_schema(&input),
        vec![
            Arc::new(Int32Array::from(vec![i32::MAX, 1, -4])),
            Arc::new(
                Decimal128Array::from(vec![100, 200, 200])
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
            Arc::new(TimestampMillisecondArray::from(vec![1, 2, 3])),
        ],
    )
    .unwrap();
    h.push_batch(b);
    h.end();
    assert_eq!(
        h.table(&["sn", "an", "sd", "ad", "mx"]),
        vec![
            "2147483647, 2147483647, 1.00, 1.000000, 1.00",
            // INT sums wrap like Java's int; AVG(INT) sums in BIGINT and truncates.
            "-2147483648, 1073741824, 3.00, 1.500000, 2.00",
            "2147483644, 715827881, 5.00, 1.666667, 2.00",
        ]
    );
    let out = &h.out[0];
    assert_eq!(out.schema().field(3).data_type(), &ArrowType::Int32);
    assert_eq!(
        out.schema().field(6).data_type(),
        &ArrowType::Decimal128(38, 6)
    );
}

#[test]
fn microsecond_event_times_use_millisecond_offsets_and_watermarks() {
    let input = Schema::new(vec![
        Field::new("id", DataType::BigInt, true),
        Field::new("ts", DataType::TimestampLtz { precision: 6 }, true),
    ]);
    let mut h = Harness::new(over_on(
        &input,
        vec![],
        1,
        vec![agg("c", F::Count, vec![], range(1), DataType::BigInt)],
        EmitMode::Watermark,
    ));
    let b = RecordBatch::try_new(
        runtime_schema(&input),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![1_000, 1_500, 2_000, 2_001])
                    .with_timezone("UTC"),
            ),
        ],
    )
    .unwrap();
    h.push_batch(b);
    // Watermark 1 ms = 1000 µs: only the first row is due.
    assert_eq!(h.watermark(1), 1);
    h.end();
    // [t - 1000 µs, t]: 2.000 ms sees 1.000 ms (inclusive), 2.001 ms does not.
    assert_eq!(h.table(&["id", "c"]), vec!["1, 1", "2, 2", "3, 3", "4, 3"]);
}

#[test]
fn range_state_is_bounded_and_idle_partitions_expire() {
    let w = range(10_000);
    let mut h = Harness::new(over(
        vec![
            agg("c", F::Count, vec![], w, DataType::BigInt),
            agg("mx", F::Max, vec![v()], w, DataType::Double),
        ],
        EmitMode::Watermark,
    ));
    for i in 0..200 {
        let t = BASE + i * 1000;
        h.push(&[
            (i, "hot", Some(i as f64), t),
            (1000 + i, if i == 0 { "cold" } else { "hot" }, Some(0.0), t),
        ]);
        h.watermark(t);
    }
    // The hot key keeps ~10 s of rows (2 per second, both ends inclusive), not 400.
    assert!(h.op.retained_rows() <= 24, "{}", h.op.retained_rows());
    assert_eq!(h.op.partitions(), 1, "the cold key expired");
    assert_eq!(h.table(&["c"]).last().map(String::as_str), Some("22"));
    // A new row of the expired key starts from empty state.
    h.push(&[(9999, "cold", Some(1.0), BASE + 300_000)]);
    h.end();
    assert_eq!(
        h.table(&["id", "c", "mx"]).last().map(String::as_str),
        Some("9999, 1, 1.0")
    );
    assert_eq!(
        h.op.partitions(),
        0,
        "the final watermark drops every RANGE partition"
    );
}

#[test]
fn rows_and_unbounded_partitions_are_kept() {
    let mut h = Harness::new(over(
        vec![agg("c", F::Count, vec![], rows(2), DataType::BigInt)],
        EmitMode::Watermark,
    ));
    h.push(&[(1, "a", None, BASE), (2, "b", None, BASE + 1)]);
    h.end();
    assert_eq!(h.op.partitions(), 2);
    assert_eq!(h.op.retained_rows(), 2);
}

#[test]
fn a_spec_the_runtime_cannot_run_is_a_plan_error() {
    let spec = OverSpec {
        partition_by: vec![],
        order_by: 1,
        aggregates: vec![],
    };
    let input = input_schema();
    let err = Over::new(
        "bad",
        &spec,
        &runtime_schema(&input),
        runtime_schema(&input),
        EmitMode::Watermark,
        None,
        &StateBackend::memory(),
    )
    .err()
    .unwrap();
    assert_eq!(
        err.to_string(),
        "invalid plan: OVER node `bad`: ORDER BY `k` must be an event-time attribute, not Utf8"
    );
}

// ---- brute force ----------------------------------------------------------------------------

/// xorshift64*: deterministic pseudo-random inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy, Debug)]
struct Ev {
    id: i64,
    key: usize,
    v: Option<f64>,
    ts: i64,
}

const KEYS: [&str; 3] = ["a", "b", "c"];

fn events(rng: &mut Rng, n: usize) -> Vec<Ev> {
    let mut ts = BASE;
    (0..n)
        .map(|i| {
            // Gaps of 0 make peers; the RANGE frames below are a few ms long.
            ts += [0, 0, 1, 2, 3, 7][rng.below(6) as usize];
            Ev {
                id: i as i64,
                key: rng.below(KEYS.len() as u64) as usize,
                v: (rng.below(7) != 0).then(|| rng.below(11) as f64 - 5.0),
                ts,
            }
        })
        .collect()
}

/// The functions checked, by name.
fn functions() -> Vec<(&'static str, F, bool)> {
    vec![
        ("count_star", F::Count, false),
        ("count", F::Count, false),
        ("sum", F::Sum, false),
        ("avg", F::Avg, false),
        ("min", F::Min, false),
        ("max", F::Max, false),
        ("first", F::FirstValue, false),
        ("last", F::LastValue, false),
        ("stddev_pop", F::StddevPop, false),
        ("var_samp", F::VarSamp, false),
        ("count_distinct", F::Count, true),
        ("sum_distinct", F::Sum, true),
        ("lag2", F::Lag { offset: 2 }, false),
        // Over `CAST(v AS BIGINT)` and `CAST(v AS DECIMAL(10, 2))`: exact sums, which small
        // frames compute by scanning their rows.
        ("sum_int", F::Sum, false),
        ("avg_int", F::Avg, false),
        ("count_int", F::Count, false),
        ("sum_dec", F::Sum, false),
        ("avg_dec", F::Avg, false),
    ]
}

/// `name` over the frame values `vals` (in processing order); `lag` is LAG's value.
fn naive(name: &str, vals: &[Option<f64>], lag: Option<f64>) -> Option<f64> {
    let nn: Vec<f64> = vals.iter().flatten().copied().collect();
    let mut uniq: Vec<f64> = nn.clone();
    uniq.sort_by(f64::total_cmp);
    uniq.dedup();
    let sum = |xs: &[f64]| xs.iter().sum::<f64>();
    let moments = |sample: bool| -> Option<f64> {
        let n = nn.len() as f64;
        if nn.is_empty() || (sample && nn.len() == 1) {
            return None;
        }
        let s = sum(&nn);
        let sq: f64 = nn.iter().map(|x| x * x).sum();
        Some(((sq - s * s / n) / if sample { n - 1.0 } else { n }).max(0.0))
    };
    match name {
        "count_star" => Some(vals.len() as f64),
        "count" => Some(nn.len() as f64),
        "sum" => (!nn.is_empty()).then(|| sum(&nn)),
        "avg" => (!nn.is_empty()).then(|| sum(&nn) / nn.len() as f64),
        "min" => nn.iter().copied().reduce(f64::min),
        "max" => nn.iter().copied().reduce(f64::max),
        "first" => nn.first().copied(),
        "last" => nn.last().copied(),
        "stddev_pop" => moments(false).map(f64::sqrt),
        "var_samp" => moments(true),
        "count_distinct" => Some(uniq.len() as f64),
        "sum_distinct" => (!uniq.is_empty()).then(|| sum(&uniq)),
        "lag2" => lag,
        "sum_int" | "sum_dec" => naive("sum", vals, lag),
        "count_int" => naive("count", vals, lag),
        // AVG of BIGINT is a BIGINT, truncated toward zero (Flink).
        "avg_int" => naive("avg", vals, lag).map(f64::trunc),
        // AVG of DECIMAL(10, 2) is a DECIMAL(38, 6), rounded half up.
        "avg_dec" => naive("avg", vals, lag).map(|a| (a * 1e6).round() / 1e6),
        _ => unreachable!(),
    }
}

/// Expected column `name` over `frame` for in-order `evs` (processing order = input order);
/// `arrival` makes RANGE frames ignore later peers.
fn expected(evs: &[Ev], frame: OverFrame, name: &str, arrival: bool) -> Vec<Option<f64>> {
    let peers = matches!(frame, OverFrame::Range { .. } | OverFrame::UnboundedRange);
    evs.iter()
        .enumerate()
        .map(|(i, e)| {
            let part: Vec<&Ev> = evs.iter().filter(|x| x.key == e.key).collect();
            let pos = part.iter().position(|x| x.id == evs[i].id).unwrap();
            let anchor = if peers && !arrival {
                part.iter().rposition(|x| x.ts == e.ts).unwrap()
            } else {
                pos
            };
            let frame_rows: Vec<&&Ev> = match frame {
                OverFrame::Range { preceding_ms } => part[..=anchor]
                    .iter()
                    .filter(|x| x.ts >= e.ts - preceding_ms)
                    .collect(),
                OverFrame::UnboundedRange => part[..=anchor].iter().collect(),
                OverFrame::Rows { preceding } => part[pos.saturating_sub(preceding as usize)..=pos]
                    .iter()
                    .collect(),
                OverFrame::UnboundedRows => part[..=pos].iter().collect(),
            };
            let vals: Vec<Option<f64>> = frame_rows.iter().map(|x| x.v).collect();
            let lag = anchor.checked_sub(2).and_then(|j| part[j].v);
            naive(name, &vals, lag)
        })
        .collect()
}

fn brute_force_aggs(frames: &[(&str, OverFrame)], lag: bool) -> Vec<(String, OverAggregate)> {
    let mut aggs = Vec::new();
    for (fname, frame) in frames {
        for (name, f, dist) in functions() {
            if !lag && name == "lag2" {
                continue;
            }
            let cast = |t: DataType| Expr {
                kind: ExprKind::Cast {
                    arg: Box::new(v()),
                    safe: false,
                },
                data_type: t,
                nullable: true,
            };
            let dec = |precision, scale| DataType::Decimal { precision, scale };
            let (args, t) = match name {
                "count_star" => (vec![], DataType::BigInt),
                "sum_int" | "avg_int" | "count_int" => {
                    (vec![cast(DataType::BigInt)], DataType::BigInt)
                }
                "sum_dec" => (vec![cast(dec(10, 2))], dec(38, 2)),
                "avg_dec" => (vec![cast(dec(10, 2))], dec(38, 6)),
                _ if matches!(f, F::Count) => (vec![v()], DataType::BigInt),
                _ => (vec![v()], DataType::Double),
            };
            let mut a = agg(&format!("{name}_{fname}"), f, args, *frame, t);
            a.1.distinct = dist;
            aggs.push(a);
        }
    }
    aggs
}

fn check_brute_force(frames: &[(&str, OverFrame)], lag: bool, emit: EmitMode, seed: u64) {
    let mut rng = Rng(seed);
    let evs = events(&mut rng, 300);
    let mut h = Harness::new(over(brute_force_aggs(frames, lag), emit));
    let mut i = 0;
    while i < evs.len() {
        let n = (1 + rng.below(40) as usize).min(evs.len() - i);
        let chunk: Vec<Row> = evs[i..i + n]
            .iter()
            .map(|e| (e.id, KEYS[e.key], e.v, e.ts))
            .collect();
        h.push(&chunk);
        // Behind the newest event time, so later peers are not late.
        h.watermark(evs[i + n - 1].ts - 1 - rng.below(3) as i64);
        i += n;
    }
    h.end();
    assert_eq!(h.op.late_rows(), 0);
    let ids: Vec<i64> = h.floats("id").iter().map(|x| x.unwrap() as i64).collect();
    assert_eq!(
        ids,
        (0..evs.len() as i64).collect::<Vec<_>>(),
        "output order"
    );
    for (fname, frame) in frames {
        for (name, _, _) in functions() {
            if !lag && name == "lag2" {
                continue;
            }
            let col = format!("{name}_{fname}");
            let want = expected(&evs, *frame, name, emit == EmitMode::Arrival);
            let got = h.floats(&col);
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g, w, "{col} ({emit:?}, seed {seed}), row {k}: {:?}", evs[k]);
            }
        }
    }
}

/// Short frames, and frames whose row counts rise past and fall back below the size up to which
/// MIN, MAX and COUNT(DISTINCT) are computed by scanning their rows (`SCAN_ROWS`, 8).
const ALL_FRAMES: [(&str, OverFrame); 8] = [
    ("range5", OverFrame::Range { preceding_ms: 5 }),
    ("range0", OverFrame::Range { preceding_ms: 0 }),
    ("range30", OverFrame::Range { preceding_ms: 30 }),
    ("range60", OverFrame::Range { preceding_ms: 60 }),
    ("unb_range", OverFrame::UnboundedRange),
    ("rows3", OverFrame::Rows { preceding: 3 }),
    ("rows12", OverFrame::Rows { preceding: 12 }),
    ("unb_rows", OverFrame::UnboundedRows),
];

#[test]
fn every_function_and_frame_matches_brute_force_in_watermark_mode() {
    for seed in [1, 7, 42] {
        check_brute_force(&ALL_FRAMES, true, EmitMode::Watermark, seed);
    }
}

#[test]
fn every_function_and_frame_matches_brute_force_in_arrival_mode() {
    for seed in [3, 11, 99] {
        check_brute_force(&ALL_FRAMES, true, EmitMode::Arrival, seed);
    }
}

#[test]
fn range_only_specs_with_partition_expiry_match_brute_force() {
    let frames = [
        ("range5", OverFrame::Range { preceding_ms: 5 }),
        ("range2", OverFrame::Range { preceding_ms: 2 }),
    ];
    for seed in [5, 6] {
        check_brute_force(&frames, false, EmitMode::Watermark, seed);
        check_brute_force(&frames, false, EmitMode::Arrival, seed);
    }
}

/// Arrival mode over rows that arrive out of order (but never behind the watermark): each row
/// sees the rows of its partition seen so far, in event-time order; unbounded frames see all of
/// them (including newer ones, as documented).
fn expected_out_of_order(arrived: &[Ev], frame: OverFrame, name: &str) -> Vec<Option<f64>> {
    arrived
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut seen: Vec<(usize, &Ev)> = arrived[..=i]
                .iter()
                .enumerate()
                .filter(|(_, x)| x.key == e.key)
                .collect();
            seen.sort_by_key(|(a, x)| (x.ts, *a));
            let q = seen.iter().position(|(a, _)| *a == i).unwrap();
            let rows_in: Vec<&Ev> = match frame {
                OverFrame::Range { preceding_ms } => seen
                    .iter()
                    .filter(|(_, x)| x.ts >= e.ts - preceding_ms && x.ts <= e.ts)
                    .map(|(_, x)| *x)
                    .collect(),
                OverFrame::UnboundedRange | OverFrame::UnboundedRows => {
                    seen.iter().map(|(_, x)| *x).collect()
                }
                OverFrame::Rows { preceding } => seen[q.saturating_sub(preceding as usize)..=q]
                    .iter()
                    .map(|(_, x)| *x)
                    .collect(),
            };
            let vals: Vec<Option<f64>> = rows_in.iter().map(|x| x.v).collect();
            let lag = q.checked_sub(2).and_then(|j| seen[j].1.v);
            naive(name, &vals, lag)
        })
        .collect()
}

#[test]
fn arrival_mode_out_of_order_rows_within_the_watermark_delay_see_their_whole_frame() {
    const DELAY: i64 = 6;
    for seed in [8, 13, 21] {
        let mut rng = Rng(seed);
        let mut evs = events(&mut rng, 300);
        // Each row arrives up to DELAY ms after its event time, so rows come out of order.
        let mut arrival: Vec<(i64, usize)> = evs
            .iter()
            .enumerate()
            .map(|(i, e)| (e.ts + rng.below(DELAY as u64 + 1) as i64, i))
            .collect();
        arrival.sort();
        evs = arrival.iter().map(|(_, i)| evs[*i]).collect();
        let mut h = Harness::new(over(brute_force_aggs(&ALL_FRAMES, true), EmitMode::Arrival));
        let mut i = 0;
        let mut newest = i64::MIN;
        while i < evs.len() {
            let n = (1 + rng.below(20) as usize).min(evs.len() - i);
            let chunk: Vec<Row> = evs[i..i + n]
                .iter()
                .map(|e| (e.id, KEYS[e.key], e.v, e.ts))
                .collect();
            assert_eq!(h.push(&chunk), n);
            newest = newest.max(evs[i..i + n].iter().map(|e| e.ts).max().unwrap());
            // No later row is older than newest - DELAY.
            h.watermark(newest - DELAY - 1);
            i += n;
        }
        h.end();
        let ids: Vec<i64> = h.floats("id").iter().map(|x| x.unwrap() as i64).collect();
        assert_eq!(
            ids,
            evs.iter().map(|e| e.id).collect::<Vec<_>>(),
            "arrival order"
        );
        for (fname, frame) in ALL_FRAMES {
            for (name, _, _) in functions() {
                let col = format!("{name}_{fname}");
                let want = expected_out_of_order(&evs, frame, name);
                let got = h.floats(&col);
                for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(g, w, "{col} (seed {seed}), row {k}: {:?}", evs[k]);
                }
            }
        }
    }
}

#[test]
fn sliding_min_max_over_a_long_sequence_match_recomputation() {
    // A long, mostly monotone then zig-zag sequence: the extreme leaves the frame often.
    let mut rng = Rng(2024);
    let w = rows(50);
    let mut h = Harness::new(over(
        vec![
            agg("mn", F::Min, vec![v()], w, DataType::Double),
            agg("mx", F::Max, vec![v()], w, DataType::Double),
        ],
        EmitMode::Watermark,
    ));
    let vals: Vec<f64> = (0..3000)
        .map(|i| {
            if i < 1000 {
                i as f64
            } else {
                (rng.below(1000) as f64) * if i % 2 == 0 { 1.0 } else { -1.0 }
            }
        })
        .collect();
    let rows_in: Vec<Row> = vals
        .iter()
        .enumerate()
        .map(|(i, x)| (i as i64, "a", Some(*x), BASE + i as i64))
        .collect();
    for c in rows_in.chunks(256) {
        h.push(c);
    }
    h.end();
    let mn = h.floats("mn");
    let mx = h.floats("mx");
    for i in 0..vals.len() {
        let win = &vals[i.saturating_sub(50)..=i];
        assert_eq!(mn[i], win.iter().copied().reduce(f64::min), "min at {i}");
        assert_eq!(mx[i], win.iter().copied().reduce(f64::max), "max at {i}");
    }
    assert!(h.op.retained_rows() <= 51);
}

// ---- in a pipeline --------------------------------------------------------------------------

#[test]
fn the_executor_runs_over_nodes_and_reports_late_rows() {
    use crate::executor::RunOptions;
    use crate::source::test_input::TestInput;
    use crate::testkit::{PlanBuilder, connector, rows as json_rows, run_collect, source_spec};
    use fsql_plan::{NodeId, Operator as PlanOp};

    let mut p = PlanBuilder::new();
    let src = p.source(source_spec(
        "t",
        connector("kafka", &[], ""),
        input_schema(),
    ));
    let mut out_schema = input_schema();
    out_schema
        .fields
        .push(Field::new("c", DataType::BigInt, false));
    let over_node = p.add(
        "over",
        &[src.0],
        out_schema.clone(),
        PlanOp::Over(OverSpec {
            partition_by: vec![1],
            order_by: 3,
            aggregates: vec![OverAggregate {
                function: F::Count,
                args: vec![],
                distinct: false,
                frame: OverFrame::UnboundedRange,
                data_type: DataType::BigInt,
            }],
        }),
    );
    let q = p.add("q", &[over_node.0], out_schema, PlanOp::Collect);
    let mut options = RunOptions::default();
    options.inputs.insert(
        "t".into(),
        vec![
            TestInput::Batch(batch(&[
                (1, "a", None, BASE + 10),
                (2, "a", None, BASE + 5),
            ])),
            TestInput::Watermark(BASE + 10),
            TestInput::Batch(batch(&[
                (3, "a", None, BASE + 7),
                (4, "a", None, BASE + 20),
            ])),
        ],
    );
    let (got, summary) = run_collect(&p.pipeline, options);
    assert_eq!(
        json_rows(&got[&q.0])
            .iter()
            .map(|r| r.split(',').next_back().unwrap().to_string())
            .collect::<Vec<_>>(),
        vec![r#""c":1}"#, r#""c":2}"#, r#""c":3}"#]
    );
    let m = summary.metrics.node(NodeId(over_node.0)).unwrap();
    assert_eq!((m.kind, m.rows_in, m.rows_out, m.late), ("over", 4, 3, 1));
    assert_eq!(summary.late(), 1);
    assert!(
        summary
            .to_string()
            .starts_with("finished: 4 rows in, 3 out, 0 malformed, 1 late in "),
        "{summary}"
    );
    assert!(summary.metrics.render().contains("late"));
}

/// Every accumulator kind (sliding and unbounded, DISTINCT, MIN/MAX multisets, FIRST/LAST_VALUE,
/// moments, LAG) over out-of-order rows, with late rows and expiring partitions: checkpointed
/// after any step and restored, the operator continues exactly as if it had never stopped.
#[test]
fn a_restored_operator_continues_exactly_where_the_checkpointed_one_was() {
    use crate::testkit::{Step, check_restore};
    let w = range(30 * MINUTE);
    let aggs = || {
        vec![
            agg("c", F::Count, vec![], w, DataType::BigInt),
            agg("s", F::Sum, vec![v()], w, DataType::Double),
            agg("mn", F::Min, vec![v()], w, DataType::Double),
            agg(
                "mx",
                F::Max,
                vec![v()],
                OverFrame::UnboundedRows,
                DataType::Double,
            ),
            agg("fv", F::FirstValue, vec![v()], w, DataType::Double),
            agg("lv", F::LastValue, vec![v()], rows(2), DataType::Double),
            agg("sd", F::StddevSamp, vec![v()], w, DataType::Double),
            distinct(agg("dc", F::Count, vec![v()], w, DataType::BigInt)),
            agg(
                "lg",
                F::Lag { offset: 1 },
                vec![v()],
                OverFrame::UnboundedRows,
                DataType::Double,
            ),
        ]
    };
    let steps = vec![
        Step::Batch(
            0,
            batch(&[(1, "a", Some(1.0), at(0, 0)), (2, "b", Some(5.0), at(0, 5))]),
        ),
        Step::Batch(
            0,
            batch(&[
                (3, "a", Some(2.0), at(0, 10)),
                (4, "a", Some(2.0), at(0, 2)),
            ]),
        ),
        Step::Watermark(at(0, 6)),
        Step::Batch(
            0,
            batch(&[(5, "a", None, at(0, 20)), (6, "c", Some(7.0), at(0, 1))]),
        ),
        Step::Batch(
            0,
            batch(&[
                (7, "b", Some(-1.5), at(0, 40)),
                (8, "a", Some(9.0), at(0, 41)),
            ]),
        ),
        Step::Watermark(at(0, 30)),
        Step::Batch(
            0,
            batch(&[
                (9, "a", Some(3.0), at(2, 0)),
                (10, "c", Some(3.0), at(2, 1)),
            ]),
        ),
        Step::Watermark(at(1, 50)),
        Step::Watermark(i64::MAX),
    ];
    for emit in [EmitMode::Watermark, EmitMode::Arrival] {
        let whole = check_restore(&|| Box::new(over(aggs(), emit)), &steps);
        assert!(
            whole.iter().filter(|l| !l.starts_with("watermark")).count() >= 8,
            "{emit:?}: the run emitted rows: {whole:?}"
        );
        // The RocksDB backend with one partition resident: every other partition's rows are
        // spilled between steps and read back, checkpointed from RocksDB and restored into it,
        // and the output is the in-memory backend's.
        let rocks = crate::testkit::rocksdb_backend(1);
        let in_rocks = check_restore(
            &|| Box::new(over_in(&input_schema(), vec![1], 3, aggs(), emit, &rocks)),
            &steps,
        );
        assert_eq!(in_rocks, whole, "{emit:?}: RocksDB and memory differ");
    }
}

#[test]
fn an_asynchronous_snapshot_holds_the_state_of_the_moment_it_was_taken() {
    // Two identical operators: one snapshotted synchronously, one frozen at the same point and
    // encoded on another thread while it processes more rows (changing, removing and adding
    // partitions, reusing ids). The frozen one's bytes are the synchronous one's.
    let w = range(30 * MINUTE);
    let aggs = || {
        vec![
            agg("c", F::Count, vec![], w, DataType::BigInt),
            agg("s", F::Sum, vec![v()], w, DataType::Double),
            agg("mn", F::Min, vec![v()], w, DataType::Double),
        ]
    };
    let keys: Vec<String> = (0..3000).map(|k| format!("card-{k}")).collect();
    let rows_at = |from: usize, to: usize, t: i64| -> RecordBatch {
        let rows: Vec<Row> = (from..to)
            .map(|i| {
                (
                    i as i64,
                    keys[i % keys.len()].as_str(),
                    Some(i as f64),
                    at(0, 0) + t,
                )
            })
            .collect();
        batch(&rows)
    };
    let rocks = crate::testkit::rocksdb_backend(50);
    let backends = [StateBackend::memory(), rocks];
    for backend in &backends {
        let mut sync = over_in(
            &input_schema(),
            vec![1],
            3,
            aggs(),
            EmitMode::Arrival,
            backend,
        );
        // The same node name would share the RocksDB key range: give the second its own.
        let other = crate::testkit::rocksdb_backend(50);
        let frozen_backend = if backend.working_dir().is_some() {
            &other
        } else {
            backend
        };
        let mut frozen = over_in(
            &input_schema(),
            vec![1],
            3,
            aggs(),
            EmitMode::Arrival,
            frozen_backend,
        );
        let mut out = Vec::new();
        for op in [&mut sync, &mut frozen] {
            op.on_batch(0, rows_at(0, 3000, 0), &mut out).unwrap();
            op.on_watermark(at(0, 0) + 1000, &mut out).unwrap();
            // Half the keys again, so partitions differ in size.
            op.on_batch(0, rows_at(0, 1500, MINUTE), &mut out).unwrap();
        }
        let mut want = StateWriter::default();
        assert!(sync.snapshot(&mut want).unwrap());
        let parts = frozen.snapshot_parts().unwrap().expect("stateful");
        assert!(parts.is_deferred(), "the partitions are encoded later");
        let writer = std::thread::spawn(move || parts.into_bytes());
        // Meanwhile: every partition changes, then they all expire and their ids are reused.
        frozen
            .on_batch(0, rows_at(1000, 9000, 20 * MINUTE), &mut out)
            .unwrap();
        frozen.on_watermark(at(1, 0), &mut out).unwrap();
        frozen
            .on_batch(0, rows_at(0, 3000, 2 * HOUR), &mut out)
            .unwrap();
        let got = writer.join().expect("writer").expect("encoded");
        assert_eq!(got, want.into_bytes(), "{:?}", backend.name());
        // And a frozen operator dropped before its writer ran leaves a failing part, not a
        // dangling read.
        let parts = frozen.snapshot_parts().unwrap().expect("stateful");
        drop(frozen);
        let e = parts.into_bytes().unwrap_err();
        assert!(
            e.0.contains("dropped before its checkpoint was written"),
            "{e}"
        );
    }
}
