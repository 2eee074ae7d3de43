//! Stateless pipeline throughput: payments-generator → Calc (filter + project) → blackhole.
//!
//! `cargo run --release -p fsql-runtime --example stateless_bench -- [rows] [batch-size]`
//! (defaults: 5,000,000 rows, 1024 rows per batch). Prints events per second end to end.

use std::time::Instant;

use fsql_plan::{
    BinaryOp, ConnectorSpec, DataType, Expr, ExprKind, Field, Literal, Node, NodeId, Operator,
    Pipeline, Schema, SinkSpec, SourceSpec,
};
use fsql_runtime::{RunOptions, run};

fn main() {
    let mut args = std::env::args().skip(1);
    let rows: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(5_000_000);
    let batch: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1024);
    let ts = DataType::Timestamp { precision: 3 };
    let physical = Schema::new(vec![
        Field::new("payment_id", DataType::BigInt, true),
        Field::new("card_id", DataType::String, true),
        Field::new("amount", DataType::Double, true),
        Field::new("ts", ts.clone(), true),
    ]);
    let columns = physical
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| Expr::column(i, f.data_type.clone(), true))
        .collect();
    let source = SourceSpec {
        table: "payments".into(),
        connector: ConnectorSpec {
            connector: "payments-generator".into(),
            options: [("number-of-rows".to_string(), rows.to_string())]
                .into_iter()
                .collect(),
            base_dir: String::new(),
        },
        physical: physical.clone(),
        columns,
        watermark: None,
    };
    let out_schema = Schema::new(vec![
        Field::new("payment_id", DataType::BigInt, true),
        Field::new("card_id", DataType::String, true),
        Field::new("amount_eur", DataType::Double, true),
        Field::new("ts", ts.clone(), true),
    ]);
    let bin = |op, l: Expr, r: Expr, t: DataType| Expr {
        kind: ExprKind::Binary {
            op,
            left: Box::new(l),
            right: Box::new(r),
        },
        data_type: t,
        nullable: true,
    };
    let calc = Operator::Calc {
        filter: Some(bin(
            BinaryOp::Gt,
            Expr::column(2, DataType::Double, true),
            Expr::literal(Literal::float(100.0), DataType::Double),
            DataType::Boolean,
        )),
        projections: vec![
            Expr::column(0, DataType::BigInt, true),
            Expr::column(1, DataType::String, true),
            bin(
                BinaryOp::Multiply,
                Expr::column(2, DataType::Double, true),
                Expr::literal(Literal::float(0.92), DataType::Double),
                DataType::Double,
            ),
            Expr::column(3, ts, true),
        ],
    };
    let sink = SinkSpec {
        table: "out".into(),
        connector: ConnectorSpec {
            connector: "blackhole".into(),
            options: Default::default(),
            base_dir: String::new(),
        },
    };
    let node = |id: u32, name: &str, inputs: Vec<NodeId>, schema: Schema, op| Node {
        id: NodeId(id),
        name: name.into(),
        inputs,
        schema,
        event_time: None,
        op,
    };
    let pipeline = Pipeline {
        name: "stateless-bench".into(),
        settings: [("table.exec.mini-batch.size".to_string(), batch.to_string())]
            .into_iter()
            .collect(),
        nodes: vec![
            node(0, "payments", vec![], physical, Operator::Source(source)),
            node(1, "big", vec![NodeId(0)], out_schema.clone(), calc),
            node(2, "out", vec![NodeId(1)], out_schema, Operator::Sink(sink)),
        ],
        ..Pipeline::default()
    };
    let start = Instant::now();
    match run(&pipeline, RunOptions::default(), &mut |_, _| {}) {
        Ok(summary) => {
            let secs = start.elapsed().as_secs_f64();
            println!("{summary}");
            println!(
                "{:.2} M events/s end to end ({} rows, batch {batch})",
                summary.rows_in() as f64 / secs / 1e6,
                summary.rows_in()
            );
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
