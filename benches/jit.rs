//! The JIT against the interpreter and DataFusion's vectorised physical expressions, on the same
//! SQL and the same 1M-row batch, in one run (`cargo bench --bench jit`):
//!
//! 1. a 12-condition rule predicate (`benches/sql/jit_rule.sql`'s WHERE): the JIT kernel's
//!    selection, the interpreter's `evaluate_predicate`, DataFusion's `PhysicalExpr::evaluate`,
//!    and the interpreter one row at a time (1-row batches, as a per-event rule engine would run);
//! 2. a 10-expression projection (`jit_projection.sql`): the kernel's outputs, the interpreter's
//!    `evaluate` per expression, DataFusion's;
//! 3. compile time of a 30-node expression (distinct constants, so no cache hit): p50 and p99.
//!
//! The fsql expressions come from compiling the SQL with fsql's compiler; DataFusion's from
//! `SessionContext::parse_sql_expr` on the same text. All results are checked equal first.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::Schema;
use datafusion::common::DFSchema;
use datafusion::prelude::SessionContext;
use fsql_compiler::{CompileOptions, compile_source};
use fsql_jit::{Kernel, Split};
use fsql_plan::{BinaryOp, DataType, Expr, ExprKind, Literal, Operator};
use fsql_runtime::compiled::CompiledExprs;
use fsql_runtime::{evaluate, evaluate_predicate};

const ROWS: usize = 1_000_000;
const ROUNDS: usize = 9;

const COLUMNS: &str = "card BIGINT, amount DOUBLE, cnt_1h BIGINT, sum_24h DOUBLE, \
    device_age INT, hour_of_day INT, ip_risk DOUBLE, is_new BOOLEAN, merchant STRING, \
    country STRING, home_country STRING";

const RULE: &str = "(amount > 900 AND cnt_1h >= 5) \
    OR (country <> home_country AND amount > 500 AND device_age < 2) \
    OR (ip_risk > 0.8 AND hour_of_day >= 0 AND hour_of_day <= 5) \
    OR (sum_24h > 5000 AND is_new) \
    OR (merchant = 'm-13' AND cnt_1h > 20 AND amount < 2)";

const PROJECTION: [&str; 10] = [
    "amount * 1.2",
    "amount - sum_24h / 24",
    "cnt_1h + 1",
    "CASE WHEN amount > 1000 THEN 3 WHEN amount > 100 THEN 2 ELSE 1 END",
    "amount >= 1000",
    "cnt_1h * 2 + device_age",
    "CAST(ip_risk * 100 AS BIGINT)",
    "ip_risk * amount",
    "hour_of_day % 24",
    "sum_24h - amount > 0",
];

/// Random choices (the runtime's expression generator's), as `u64`s.
struct Rng(fsql_runtime::compiled::generated::Rng);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n as usize) as u64
    }
}

/// One batch of payments-like features, 2 % NULLs in the nullable ones.
fn batch(schema: Arc<Schema>) -> RecordBatch {
    let mut r = Rng(fsql_runtime::compiled::generated::Rng::seeded(42));
    let null = |r: &mut Rng| r.below(50) == 0;
    let card: Int64Array = (0..ROWS).map(|_| Some(r.below(100_000) as i64)).collect();
    let amount: Float64Array = (0..ROWS)
        .map(|_| (!null(&mut r)).then(|| r.below(200_000) as f64 / 100.0))
        .collect();
    let cnt: Int64Array = (0..ROWS).map(|_| Some(r.below(30) as i64)).collect();
    let sum: Float64Array = (0..ROWS)
        .map(|_| (!null(&mut r)).then(|| r.below(1_000_000) as f64 / 100.0))
        .collect();
    let device_age: Int32Array = (0..ROWS).map(|_| Some(r.below(400) as i32)).collect();
    let hour: Int32Array = (0..ROWS).map(|_| Some(r.below(24) as i32)).collect();
    let ip_risk: Float64Array = (0..ROWS)
        .map(|_| (!null(&mut r)).then(|| r.below(1000) as f64 / 1000.0))
        .collect();
    let is_new: BooleanArray = (0..ROWS).map(|_| Some(r.below(10) == 0)).collect();
    let merchant: StringArray = (0..ROWS)
        .map(|_| Some(format!("m-{}", r.below(200))))
        .collect();
    const COUNTRIES: [&str; 6] = ["DE", "FR", "GB", "US", "NG", "BR"];
    let country: StringArray = (0..ROWS)
        .map(|_| Some(COUNTRIES[r.below(6) as usize]))
        .collect();
    let home: StringArray = (0..ROWS)
        .map(|_| {
            Some(if r.below(10) == 0 {
                COUNTRIES[r.below(6) as usize]
            } else {
                "DE"
            })
        })
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(card),
        Arc::new(amount),
        Arc::new(cnt),
        Arc::new(sum),
        Arc::new(device_age),
        Arc::new(hour),
        Arc::new(ip_risk),
        Arc::new(is_new),
        Arc::new(merchant),
        Arc::new(country),
        Arc::new(home),
    ];
    RecordBatch::try_new(schema, columns).expect("bench batch")
}

/// The Calc fsql compiles for `SELECT <select> FROM tx [WHERE <filter>]`, and its input schema.
fn fsql_calc(select: &str, filter: Option<&str>) -> (Option<Expr>, Vec<Expr>, Arc<Schema>) {
    let where_ = filter.map(|f| format!(" WHERE {f}")).unwrap_or_default();
    let text = format!(
        "CREATE TABLE tx ({COLUMNS}) WITH ('connector' = 'datagen');\n\
         SELECT {select} FROM tx{where_};\n"
    );
    let path = Path::new("jit_bench.fsql");
    let c = compile_source(path, text, &CompileOptions::default(), &[]);
    let pipeline = c.pipeline.unwrap_or_else(|| {
        panic!("bench SQL does not compile: {:?}", c.diagnostics);
    });
    let source = pipeline
        .nodes
        .iter()
        .find(|n| matches!(n.op, Operator::Source(_)))
        .expect("a source");
    let schema = fsql_runtime::source::runtime_schema(&source.schema);
    let calc = pipeline
        .nodes
        .iter()
        .find_map(|n| match &n.op {
            Operator::Calc {
                filter,
                projections,
            } => Some((filter.clone(), projections.clone())),
            _ => None,
        })
        .expect("a Calc");
    (calc.0, calc.1, schema)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mask(b: &BooleanArray) -> Vec<bool> {
    (0..b.len()).map(|i| b.is_valid(i) && b.value(i)).collect()
}

fn main() {
    let ctx = SessionContext::new();

    // 1. The rule predicate (FSQL_BENCH_RULE replaces it, to explore).
    let rule_text = std::env::var("FSQL_BENCH_RULE").unwrap_or_else(|_| RULE.to_string());
    let rule: &str = &rule_text;
    let (filter, _, schema) = fsql_calc("card", Some(rule));
    let filter = filter.expect("a filter");
    let batch = batch(schema.clone());
    let df_schema = DFSchema::try_from(schema.as_ref().clone()).expect("DataFusion schema");
    let df_rule = ctx
        .create_physical_expr(
            ctx.parse_sql_expr(rule, &df_schema)
                .expect("DataFusion parses"),
            &df_schema,
        )
        .expect("DataFusion plans");
    let mut compiled = CompiledExprs::new(Some(&filter), &[], &schema).expect("the rule compiles");
    let split = Split::new(Some(&filter), &[], &fsql_types(&schema));
    println!("rule: {rule}\n  fsql: {}", split.describe(None));

    let jit_mask = |c: &mut CompiledExprs| {
        let out = c.run(&batch).expect("runs").expect("compiled");
        out.selection
            .unwrap_or_else(|| BooleanArray::from(vec![true; ROWS]))
    };
    let interpreted = evaluate_predicate(&filter, &batch).expect("interprets");
    let df_out = df_rule
        .evaluate(&batch)
        .and_then(|v| v.into_array(ROWS))
        .expect("DataFusion evaluates");
    let df_bool = df_out
        .as_any()
        .downcast_ref::<BooleanArray>()
        .expect("boolean")
        .clone();
    let jit = jit_mask(&mut compiled);
    assert_eq!(mask(&jit), mask(&interpreted), "JIT vs interpreter");
    assert_eq!(mask(&jit), mask(&df_bool), "JIT vs DataFusion");
    let passing = mask(&jit).iter().filter(|b| **b).count();

    let (mut t_jit, mut t_int, mut t_df) = (vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        std::hint::black_box(jit_mask(&mut compiled));
        t_jit.push(t.elapsed());
        let t = Instant::now();
        std::hint::black_box(evaluate_predicate(&filter, &batch).expect("interprets"));
        t_int.push(t.elapsed());
        let t = Instant::now();
        std::hint::black_box(df_rule.evaluate(&batch).expect("evaluates"));
        t_df.push(t.elapsed());
    }
    // One row at a time, on the first 20,000 rows.
    let sample = 20_000;
    let t = Instant::now();
    for i in 0..sample {
        std::hint::black_box(evaluate_predicate(&filter, &batch.slice(i, 1)).expect("row"));
    }
    let per_row = t.elapsed() / sample as u32;
    let (jit, int, df) = (median(t_jit), median(t_int), median(t_df));
    let row = per_row * ROWS as u32;
    println!(
        "rule predicate, {ROWS} rows ({passing} pass), median of {ROUNDS}:\n  \
         JIT {:.2} ms | interpreter (vectorised) {:.2} ms | DataFusion {:.2} ms | \
         interpreter row at a time {:.0} ms (from {sample} rows)\n  \
         DataFusion/JIT {:.1}x | vectorised interpreter/JIT {:.1}x | row interpreter/JIT {:.0}x",
        ms(jit),
        ms(int),
        ms(df),
        ms(row),
        df.as_secs_f64() / jit.as_secs_f64(),
        int.as_secs_f64() / jit.as_secs_f64(),
        row.as_secs_f64() / jit.as_secs_f64(),
    );

    // 2. The projection.
    let select = PROJECTION.join(", ");
    let (_, projections, _) = fsql_calc(&select, None);
    let mut compiled =
        CompiledExprs::new(None, &projections, &schema).expect("the projection compiles");
    let split = Split::new(None, &projections, &fsql_types(&schema));
    for (i, sql) in PROJECTION.iter().enumerate() {
        println!("  {sql}: {}", split.describe(Some(i)));
    }
    let df_exprs: Vec<_> = PROJECTION
        .iter()
        .map(|sql| {
            ctx.create_physical_expr(
                ctx.parse_sql_expr(sql, &df_schema).expect("parses"),
                &df_schema,
            )
            .expect("plans")
        })
        .collect();
    let jit_out = compiled
        .run(&batch)
        .expect("runs")
        .expect("compiled")
        .columns;
    for (i, e) in projections.iter().enumerate() {
        let int = evaluate(e, &batch).expect("interprets");
        assert_eq!(&jit_out[i], &int, "output {i}: JIT vs interpreter");
    }
    let (mut t_jit, mut t_int, mut t_df) = (vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        std::hint::black_box(compiled.run(&batch).expect("runs"));
        t_jit.push(t.elapsed());
        let t = Instant::now();
        for e in &projections {
            std::hint::black_box(evaluate(e, &batch).expect("interprets"));
        }
        t_int.push(t.elapsed());
        let t = Instant::now();
        for e in &df_exprs {
            std::hint::black_box(e.evaluate(&batch).expect("evaluates"));
        }
        t_df.push(t.elapsed());
    }
    let (jit, int, df) = (median(t_jit), median(t_int), median(t_df));
    println!(
        "10-expression projection, {ROWS} rows, median of {ROUNDS}:\n  \
         JIT {:.2} ms | interpreter {:.2} ms | DataFusion {:.2} ms\n  \
         DataFusion/JIT {:.1}x | interpreter/JIT {:.1}x",
        ms(jit),
        ms(int),
        ms(df),
        df.as_secs_f64() / jit.as_secs_f64(),
        int.as_secs_f64() / jit.as_secs_f64(),
    );

    // 3. Compile time of 30-node expressions with distinct constants.
    let mut times = Vec::new();
    let types = fsql_types(&schema);
    for k in 0..2_000i64 {
        let e = thirty_nodes(k);
        assert_eq!(nodes(&e), 30);
        let split = Split::new(Some(&e), &[], &types);
        let spec = split.kernel.expect("compiles");
        let t = Instant::now();
        let kernel = Kernel::compile(&spec, &vec![true; spec.slots.len()]).expect("compiles");
        times.push(t.elapsed());
        drop(kernel);
    }
    times.sort();
    let p = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!(
        "compile a 30-node predicate ({} samples): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        times.len(),
        ms(p(0.5)),
        ms(p(0.99)),
        ms(p(1.0)),
    );
}

fn fsql_types(schema: &Schema) -> Vec<arrow::datatypes::DataType> {
    schema
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect()
}

fn nodes(e: &Expr) -> usize {
    1 + e.children().into_iter().map(nodes).sum::<usize>()
}

/// `((amount * k > sum_24h - 1.5 AND cnt_1h + k >= 7) OR (card % 10 <> k % 10 AND
/// ip_risk * amount < 3k)) AND NOT merchant = 'm-k'`: 30 nodes, constants from `k`.
fn thirty_nodes(k: i64) -> Expr {
    let col = |i: usize, t: DataType| Expr::column(i, t, true);
    let bin = |op, l, r, t| Expr {
        kind: ExprKind::Binary {
            op,
            left: Box::new(l),
            right: Box::new(r),
        },
        data_type: t,
        nullable: true,
    };
    let dbl = |v: f64| Expr::literal(Literal::float(v), DataType::Double);
    let big = |v: i64| Expr::literal(Literal::Int(v), DataType::BigInt);
    // amount * c > sum_24h - c  (7 nodes)
    let a = bin(
        BinaryOp::Gt,
        bin(
            BinaryOp::Multiply,
            col(1, DataType::Double),
            dbl(k as f64),
            DataType::Double,
        ),
        bin(
            BinaryOp::Minus,
            col(3, DataType::Double),
            dbl(1.5),
            DataType::Double,
        ),
        DataType::Boolean,
    );
    // cnt_1h + k >= 7 (5 nodes)
    let b = bin(
        BinaryOp::GtEq,
        bin(
            BinaryOp::Plus,
            col(2, DataType::BigInt),
            big(k),
            DataType::BigInt,
        ),
        big(7),
        DataType::Boolean,
    );
    // card % 10 <> k (5 nodes)
    let c = bin(
        BinaryOp::NotEq,
        bin(
            BinaryOp::Modulo,
            col(0, DataType::BigInt),
            big(10),
            DataType::BigInt,
        ),
        big(k % 10),
        DataType::Boolean,
    );
    // ip_risk * amount < k (5 nodes)
    let d = bin(
        BinaryOp::Lt,
        bin(
            BinaryOp::Multiply,
            col(6, DataType::Double),
            col(1, DataType::Double),
            DataType::Double,
        ),
        dbl(k as f64 * 3.0),
        DataType::Boolean,
    );
    // merchant = 'm-k' (3 nodes)
    let e = bin(
        BinaryOp::Eq,
        col(8, DataType::String),
        Expr::literal(Literal::String(format!("m-{k}")), DataType::String),
        DataType::Boolean,
    );
    // ((a AND b) OR (c AND d)) AND NOT e: 1 + (1 + 13 + 11) + 4 = 30 nodes.
    let ab = bin(BinaryOp::And, a, b, DataType::Boolean);
    let cd = bin(BinaryOp::And, c, d, DataType::Boolean);
    let or = bin(BinaryOp::Or, ab, cd, DataType::Boolean);
    let not_e = Expr {
        kind: ExprKind::Unary {
            op: fsql_plan::UnaryOp::Not,
            arg: Box::new(e),
        },
        data_type: DataType::Boolean,
        nullable: true,
    };
    bin(BinaryOp::And, or, not_e, DataType::Boolean)
}
