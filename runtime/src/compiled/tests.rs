//! Differential tests: randomly generated, well-typed expressions over random batches (NULLs,
//! extreme values, NaN and signed zeros, empty strings, sliced arrays), computed by the JIT and by
//! the interpreter; the results must be equal bit for bit, errors included.
//!
//! `FSQL_JIT_CASES` sets the number of generated cases (default 1500, what CI runs); `FSQL_JIT_SEED`
//! the first seed. A failure prints the seed and the expression, and the case replays alone with
//! `FSQL_JIT_CASES=1 FSQL_JIT_SEED=<seed>`; `FSQL_JIT_TRACE=1` prints each case (seed, expressions) before
//! running it, which finds the case that crashes a kernel.

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use fsql_plan::{BinaryOp, DataType, Expr, ExprKind, Literal};

use super::CompiledExprs;
use super::generated::{Outcome, Rng, binary, calc_case, node, ruleset_case};
use crate::operators::calc::Calc;
use crate::source::runtime_schema;
use crate::testkit::schema;

/// How the cases ended: the kernel ran, a batch went to the interpreter, nothing compiled.
#[derive(Default, Debug)]
struct Tally {
    compiled: usize,
    fell_back: usize,
    interpreted: usize,
}

fn cases() -> (u64, usize) {
    let seed = std::env::var("FSQL_JIT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let cases = std::env::var("FSQL_JIT_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1500);
    (seed, cases)
}

#[test]
fn jit_equals_interpreter_on_generated_expressions() {
    let (seed, cases) = cases();
    let mut tally = Tally::default();
    for k in 0..cases as u64 {
        if std::env::var_os("FSQL_JIT_TRACE").is_some() {
            eprintln!("case {}", seed + k);
        }
        match calc_case(Rng::seeded(seed + k)) {
            Ok(Outcome::Compiled) => tally.compiled += 1,
            Ok(Outcome::FellBack) => tally.fell_back += 1,
            Ok(Outcome::Interpreted) => tally.interpreted += 1,
            Err(diff) => panic!("seed {}\n{diff}", seed + k),
        }
    }
    // Most generated groups must really run compiled, or this test would prove little.
    assert!(
        tally.compiled * 10 >= cases * 6,
        "only {tally:?} of {cases} cases ran compiled"
    );
    eprintln!("{cases} generated filter/projection cases: {tally:?}");
}

#[test]
fn compiled_rulesets_decide_as_interpreted_ones() {
    let (seed, cases) = cases();
    for k in 0..(cases / 3).max(1) as u64 {
        if let Err(diff) = ruleset_case(Rng::seeded((seed + k) ^ 0x5EED)) {
            panic!("seed {}\n{diff}", seed + k);
        }
    }
}

#[test]
fn a_failing_interpreted_part_sends_the_batch_to_the_interpreter() {
    // CASE WHEN str = 'x' THEN CAST(str AS INT) ELSE 0 END: the CAST is interpreted over the whole
    // batch and fails on 'abc', a row the CASE never sends to it; the interpreter, which evaluates
    // the branch only on matching rows, gives the answer.
    let columns = vec![("str", DataType::String)];
    let batch = RecordBatch::try_new(
        runtime_schema(&schema(&columns)),
        vec![Arc::new(StringArray::from(vec!["12", "abc"]))],
    )
    .unwrap();
    let s = Expr::column(0, DataType::String, true);
    let is_number = binary(
        BinaryOp::Eq,
        s.clone(),
        Expr::literal(Literal::String("12".into()), DataType::String),
        DataType::Boolean,
    );
    let cast = node(
        ExprKind::Cast {
            arg: Box::new(s),
            safe: false,
        },
        DataType::Int,
    );
    let case = node(
        ExprKind::Case {
            branches: vec![(is_number, cast)],
            otherwise: Some(Box::new(Expr::literal(Literal::Int(0), DataType::Int))),
        },
        DataType::Int,
    );
    let mut compiled = CompiledExprs::new(None, std::slice::from_ref(&case), &batch.schema())
        .expect("the CASE compiles");
    assert!(compiled.run(&batch).unwrap().is_none(), "falls back");
    let out_schema = runtime_schema(&schema(&[("n", DataType::Int)]));
    let mut calc = Calc::new("calc", None, vec![case], out_schema).compiled(&batch.schema());
    let out = calc.apply(&batch).unwrap().unwrap();
    assert_eq!(
        crate::testkit::rows(&[out]),
        vec![r#"{"n":12}"#, r#"{"n":0}"#]
    );
}
