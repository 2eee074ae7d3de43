//! `fsql test`: runs the `TEST` blocks of `.fsql` files against their pipeline.
//!
//! Each test feeds its `INPUT` rows and `WATERMARK`s to the named sources (every other source gets
//! no input, so tests never touch real connectors), runs the pipeline to the end of input, and
//! compares what each `EXPECT`ed relation produced: as a multiset (default) or in order, floats
//! within a tolerance. A test may add statements (`STATEMENTS $$...$$`) and expect a compile error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, new_null_array};
use arrow::datatypes::Schema as ArrowSchema;
use fsql_compiler::ast::{Spanned, SqlExpr, TestDef, TestItem};
use fsql_compiler::source::{SourceFile, SourceMap};
use fsql_compiler::{Compilation, CompileOptions, compile_source, constants};
use fsql_plan::{DataType, NodeId, Operator, Pipeline, Schema};
use fsql_runtime::format::{Style, render_value};
use fsql_runtime::{RowKind, RunOptions, TestInput};

/// The default relative tolerance for floating point comparisons.
const DEFAULT_TOLERANCE: f64 = 1e-9;

/// Settings every test's pipeline runs with on top of its own `SET`s (`fsql test
/// --state-backend rocksdb --state-resident-keys 2` runs a suite against the RocksDB backend
/// with almost every key spilled).
pub type SettingOverrides = BTreeMap<String, String>;

/// Runs every test of every file; prints one line per test and a summary. Ok(false) if any failed.
pub fn run_files(
    files: &[PathBuf],
    no_jit: bool,
    overrides: &SettingOverrides,
) -> Result<bool, String> {
    let (mut passed, mut failed) = (0usize, 0usize);
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
        let options = CompileOptions {
            strict: false,
            keep_unused: true,
        };
        let base = compile_source(file, text.clone(), &options, &[]);
        if base.tests.is_empty() {
            for d in &base.diagnostics {
                eprint!("{}", d.render(&base.sources));
            }
            eprintln!("{}: no TEST blocks", file.display());
            if base.has_errors() {
                failed += 1;
            }
            continue;
        }
        for test in &base.tests {
            let (line, _) = base
                .sources
                .file(test.name.span.file)
                .line_col(test.name.span.start);
            match run_test(file, &text, &base, test, no_jit, overrides) {
                Ok(()) => {
                    passed += 1;
                    println!("ok    {}  ({}:{line})", test.name.node, file.display());
                }
                Err(report) => {
                    failed += 1;
                    println!("FAIL  {}  ({}:{line})", test.name.node, file.display());
                    for l in report.lines() {
                        println!("      {l}");
                    }
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0)
}

fn run_test(
    file: &Path,
    text: &str,
    base: &Compilation,
    test: &TestDef,
    no_jit: bool,
    overrides: &SettingOverrides,
) -> Result<(), String> {
    let mut extra = Vec::new();
    let mut expected_error = None;
    for item in &test.items {
        match item {
            TestItem::Statements(sql) => {
                let mut sources = SourceMap::default();
                let id = sources.add(SourceFile::new(file, text.to_string()));
                let mut diags = Vec::new();
                extra.extend(fsql_compiler::parse::parse_text(
                    &mut sources,
                    id,
                    sql.base,
                    &sql.text,
                    &mut diags,
                ));
                if !diags.is_empty() {
                    if let Some(TestItem::ExpectError(_)) = test
                        .items
                        .iter()
                        .find(|i| matches!(i, TestItem::ExpectError(_)))
                    {
                        expected_error =
                            Some(diags.iter().map(|d| d.render(&sources)).collect::<String>());
                    } else {
                        return Err(diags.iter().map(|d| d.render(&sources)).collect());
                    }
                }
            }
            TestItem::ExpectError(_) => {}
            _ => {}
        }
    }
    let owned;
    let compilation = if extra.is_empty() {
        base
    } else {
        owned = compile_source(
            file,
            text.to_string(),
            &CompileOptions {
                strict: false,
                keep_unused: true,
            },
            &extra,
        );
        &owned
    };
    let rendered: String = compilation
        .diagnostics
        .iter()
        .map(|d| d.render(&compilation.sources))
        .collect();
    let errors: String = compilation
        .diagnostics
        .iter()
        .filter(|d| d.severity == fsql_compiler::Severity::Error)
        .map(|d| d.render(&compilation.sources))
        .collect();
    if let Some(TestItem::ExpectError(want)) = test
        .items
        .iter()
        .find(|i| matches!(i, TestItem::ExpectError(_)))
    {
        let all = format!("{}{}", expected_error.unwrap_or_default(), errors);
        if !compilation.has_errors() && all.is_empty() {
            return Err(format!(
                "expected an error containing '{}', but the pipeline compiled",
                want.node
            ));
        }
        if all.to_lowercase().contains(&want.node.to_lowercase()) {
            return Ok(());
        }
        return Err(format!(
            "expected an error containing '{}', got:\n{all}",
            want.node
        ));
    }
    let Some(pipeline) = &compilation.pipeline else {
        return Err(format!("the pipeline does not compile:\n{rendered}"));
    };
    let overridden;
    let pipeline = if overrides.is_empty() {
        pipeline
    } else {
        let mut p = pipeline.clone();
        p.settings
            .extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
        overridden = p;
        &overridden
    };

    // Inputs: every source gets its test rows, or nothing.
    let mut inputs: BTreeMap<String, Vec<TestInput>> = BTreeMap::new();
    for n in &pipeline.nodes {
        if let Operator::Source(s) = &n.op {
            inputs.insert(s.table.clone(), Vec::new());
        }
    }
    let mut expects = Vec::new();
    for item in &test.items {
        match item {
            TestItem::Input {
                table,
                columns,
                rows,
            } => {
                let physical =
                    source_physical(pipeline, compilation, &table.node).ok_or_else(|| {
                        format!(
                            "INPUT `{}`: the pipeline reads no table of that name",
                            table.node
                        )
                    })?;
                let batch = build_batch(&physical, columns, rows, &table.node)?;
                inputs
                    .entry(table.node.clone())
                    .or_default()
                    .push(TestInput::Batch(batch));
            }
            TestItem::Watermark { table, value } => {
                let wm = watermark_ms(value)?;
                if !inputs.contains_key(&table.node) {
                    return Err(format!(
                        "WATERMARK `{}`: the pipeline reads no table of that name",
                        table.node
                    ));
                }
                inputs
                    .entry(table.node.clone())
                    .or_default()
                    .push(TestInput::Watermark(wm));
            }
            TestItem::Expect {
                relation,
                changelog,
                ordered,
                tolerance,
                columns,
                rows,
            } => {
                let info = compilation.relations.get(&relation.node).ok_or_else(|| {
                    let names: Vec<&str> =
                        compilation.relations.keys().map(String::as_str).collect();
                    format!(
                        "EXPECT `{}`: no view, table or ruleset of that name (known: {})",
                        relation.node,
                        names.join(", ")
                    )
                })?;
                // CHANGELOG: the pseudo-column `op` (the row kind) comes first.
                let columns = match (changelog, columns.split_first()) {
                    (false, _) => &columns[..],
                    (true, Some((op, rest))) if op.node == OP_COLUMN => rest,
                    (true, _) => {
                        return Err(format!(
                            "EXPECT `{}` CHANGELOG: the first column is `{OP_COLUMN}`, the row kind ('+I', '-U', '+U', '-D')",
                            relation.node
                        ));
                    }
                };
                let indices = column_indices(&info.schema, columns, &relation.node)?;
                let mut fields: Vec<fsql_plan::Field> = indices
                    .iter()
                    .map(|&i| info.schema.fields[i].clone())
                    .collect();
                if *changelog {
                    fields.insert(0, fsql_plan::Field::new(OP_COLUMN, DataType::String, false));
                }
                let expected = build_rows(&Schema::new(fields), rows)?;
                expects.push(Expect {
                    relation: relation.clone(),
                    node: info.node,
                    changelog: *changelog,
                    indices,
                    ordered: *ordered,
                    tolerance: tolerance.unwrap_or(DEFAULT_TOLERANCE),
                    expected,
                });
            }
            TestItem::ExpectError(_) | TestItem::Statements(_) => {}
        }
    }
    let taps: Vec<NodeId> = expects.iter().map(|e| e.node).collect();
    let mut outputs: BTreeMap<NodeId, Vec<Output>> = BTreeMap::new();
    let options = RunOptions {
        inputs,
        taps,
        capture_sinks: true,
        no_jit,
        ..RunOptions::default()
    };
    fsql_runtime::run(pipeline, options, &mut |node, batch, kinds| {
        outputs.entry(node).or_default().push(Output {
            batch: batch.clone(),
            kinds: kinds.map(<[RowKind]>::to_vec),
        });
    })
    .map_err(|e| format!("the run failed: {e}"))?;

    let mut report = String::new();
    for e in &expects {
        let produced = outputs.get(&e.node).map(Vec::as_slice).unwrap_or(&[]);
        let actual = if e.changelog {
            changelog_rows(produced, &e.indices)
        } else {
            final_rows(produced, &e.indices)
        };
        if let Some(diff) = compare(&e.expected, &actual, e.ordered, e.tolerance) {
            report.push_str(&format!(
                "EXPECT {}{}{}:\n{diff}",
                e.relation.node,
                if e.changelog { " CHANGELOG" } else { "" },
                if e.ordered { " ORDERED" } else { "" }
            ));
        }
    }
    if report.is_empty() {
        Ok(())
    } else {
        Err(report)
    }
}

/// The pseudo-column of `EXPECT ... CHANGELOG` holding each row's kind.
const OP_COLUMN: &str = "op";

/// What a relation produced: a batch and, from an updating relation, each row's kind.
struct Output {
    batch: RecordBatch,
    kinds: Option<Vec<RowKind>>,
}

struct Expect {
    relation: Spanned<String>,
    node: NodeId,
    /// Compare the changes as emitted (with `op`) rather than the final rows.
    changelog: bool,
    indices: Vec<usize>,
    ordered: bool,
    tolerance: f64,
    expected: Vec<Vec<Value>>,
}

fn source_physical(pipeline: &Pipeline, c: &Compilation, table: &str) -> Option<Schema> {
    let node = c.relations.get(table)?.node;
    match &pipeline.nodes.get(node.0 as usize)?.op {
        Operator::Source(s) => Some(s.physical.clone()),
        _ => None,
    }
}

fn column_indices(
    schema: &Schema,
    columns: &[Spanned<String>],
    relation: &str,
) -> Result<Vec<usize>, String> {
    columns
        .iter()
        .map(|c| {
            schema.index_of(&c.node).ok_or_else(|| {
                let names: Vec<&str> = schema.fields.iter().map(|f| f.name.as_str()).collect();
                format!(
                    "`{relation}` has no column `{}` (columns: {})",
                    c.node,
                    names.join(", ")
                )
            })
        })
        .collect()
}

/// Evaluates constant rows into one Arrow array per column of `schema`.
fn eval_columns(schema: &Schema, rows: &[Vec<SqlExpr>]) -> Result<Vec<ArrayRef>, String> {
    let types: Vec<DataType> = schema.fields.iter().map(|f| f.data_type.clone()).collect();
    let mut columns: Vec<Vec<ArrayRef>> = vec![Vec::new(); types.len()];
    let one_row = RecordBatch::try_new_with_options(
        std::sync::Arc::new(ArrowSchema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )
    .map_err(|e| e.to_string())?;
    for (r, row) in rows.iter().enumerate() {
        if row.len() != types.len() {
            return Err(format!(
                "row {} has {} values but {} columns are named",
                r + 1,
                row.len(),
                types.len()
            ));
        }
        let refs: Vec<&SqlExpr> = row.iter().collect();
        let exprs = constants(&refs, &types).map_err(|d| {
            d.iter()
                .map(|d| d.message.clone())
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        for (i, e) in exprs.iter().enumerate() {
            let v = fsql_runtime::evaluate(e, &one_row).map_err(|err| {
                format!("row {}, column `{}`: {err}", r + 1, schema.fields[i].name)
            })?;
            columns[i].push(v);
        }
    }
    columns
        .into_iter()
        .zip(&types)
        .map(|(parts, t)| {
            if parts.is_empty() {
                return Ok(new_null_array(&t.to_arrow(), 0));
            }
            let refs: Vec<&dyn arrow::array::Array> = parts.iter().map(|a| a.as_ref()).collect();
            arrow::compute::concat(&refs).map_err(|e| e.to_string())
        })
        .collect()
}

/// An input batch in the table's physical schema: named columns from the rows, the rest NULL.
fn build_batch(
    physical: &Schema,
    columns: &[Spanned<String>],
    rows: &[Vec<SqlExpr>],
    table: &str,
) -> Result<RecordBatch, String> {
    let indices = column_indices(physical, columns, table)?;
    let named = Schema::new(
        indices
            .iter()
            .map(|&i| physical.fields[i].clone())
            .collect(),
    );
    let values = eval_columns(&named, rows)?;
    let arrays: Vec<ArrayRef> = physical
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| match indices.iter().position(|&j| j == i) {
            Some(k) => values[k].clone(),
            None => new_null_array(&f.data_type.to_arrow(), rows.len()),
        })
        .collect();
    RecordBatch::try_new_with_options(
        std::sync::Arc::new(physical.to_arrow()),
        arrays,
        &RecordBatchOptions::new().with_row_count(Some(rows.len())),
    )
    .map_err(|e| format!("INPUT `{table}`: {e}"))
}

fn watermark_ms(value: &SqlExpr) -> Result<i64, String> {
    let t = DataType::Timestamp { precision: 3 };
    let batch = eval_columns(
        &Schema::new(vec![fsql_plan::Field::new("wm", t, true)]),
        std::slice::from_ref(&vec![value.clone()]),
    )?;
    let arr = batch.first().ok_or("no watermark value")?;
    let ts = arr
        .as_any()
        .downcast_ref::<arrow::array::TimestampMillisecondArray>()
        .ok_or("a WATERMARK must be a timestamp")?;
    if ts.is_empty() || arrow::array::Array::is_null(ts, 0) {
        return Err("a WATERMARK must not be NULL".into());
    }
    Ok(ts.value(0))
}

/// A cell value for comparison.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Null,
    Float(f64),
    Text(String),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Null => write!(f, "NULL"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Text(s) => write!(f, "{s}"),
        }
    }
}

fn build_rows(schema: &Schema, rows: &[Vec<SqlExpr>]) -> Result<Vec<Vec<Value>>, String> {
    let arrays = eval_columns(schema, rows)?;
    Ok((0..rows.len())
        .map(|r| arrays.iter().map(|a| value(a.as_ref(), r)).collect())
        .collect())
}

fn value(array: &dyn arrow::array::Array, row: usize) -> Value {
    use arrow::datatypes::DataType as A;
    if array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        A::Float32 => Value::Float(f64::from(
            array
                .as_any()
                .downcast_ref::<arrow::array::Float32Array>()
                .map_or(0.0, |a| a.value(row)),
        )),
        A::Float64 => Value::Float(
            array
                .as_any()
                .downcast_ref::<arrow::array::Float64Array>()
                .map_or(0.0, |a| a.value(row)),
        ),
        _ => {
            let mut s = String::new();
            render_value(array, row, Style::Sql, &mut s);
            Value::Text(s)
        }
    }
}

/// Every produced row, its kind first (`+I` for an append-only relation), then the columns at
/// `indices`.
fn changelog_rows(outputs: &[Output], indices: &[usize]) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    for o in outputs {
        for r in 0..o.batch.num_rows() {
            let kind = o
                .kinds
                .as_ref()
                .and_then(|k| k.get(r))
                .copied()
                .unwrap_or(RowKind::Insert);
            let mut row = vec![Value::Text(kind.short().to_string())];
            row.extend(
                indices
                    .iter()
                    .map(|&i| value(o.batch.column(i).as_ref(), r)),
            );
            out.push(row);
        }
    }
    out
}

/// The relation's final rows, the columns at `indices`: `+I`/`+U` rows added, each `-U`/`-D`
/// removing one equal row (all columns compared), in the order they were added.
fn final_rows(outputs: &[Output], indices: &[usize]) -> Vec<Vec<Value>> {
    let mut rows: Vec<Vec<Value>> = Vec::new();
    for o in outputs {
        let b = &o.batch;
        for r in 0..b.num_rows() {
            let row: Vec<Value> = (0..b.num_columns())
                .map(|i| value(b.column(i).as_ref(), r))
                .collect();
            let kind = o.kinds.as_ref().and_then(|k| k.get(r)).copied();
            if kind.is_none_or(RowKind::is_accumulate) {
                rows.push(row);
            } else if let Some(at) = rows.iter().position(|x| *x == row) {
                rows.remove(at);
            }
        }
    }
    rows.into_iter()
        .map(|row| {
            indices
                .iter()
                .map(|&i| row.get(i).cloned().unwrap_or(Value::Null))
                .collect()
        })
        .collect()
}

fn same(a: &[Value], b: &[Value], tol: f64) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Value::Float(x), Value::Float(y)) => {
                (x.is_nan() && y.is_nan())
                    || x == y
                    || (x - y).abs() <= tol * x.abs().max(y.abs()).max(1.0)
            }
            _ => x == y,
        })
}

fn show(row: &[Value]) -> String {
    format!(
        "({})",
        row.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// None if equal; else a readable diff (`-` expected but missing, `+` produced but not expected).
fn compare(
    expected: &[Vec<Value>],
    actual: &[Vec<Value>],
    ordered: bool,
    tol: f64,
) -> Option<String> {
    let mut out = String::new();
    if ordered {
        if expected.len() == actual.len()
            && expected.iter().zip(actual).all(|(e, a)| same(e, a, tol))
        {
            return None;
        }
        out.push_str(&format!(
            "  expected {} row(s) in order, got {}:\n",
            expected.len(),
            actual.len()
        ));
        for i in 0..expected.len().max(actual.len()) {
            match (expected.get(i), actual.get(i)) {
                (Some(e), Some(a)) if same(e, a, tol) => {
                    out.push_str(&format!("    {}\n", show(e)))
                }
                (e, a) => {
                    if let Some(e) = e {
                        out.push_str(&format!("  - {}\n", show(e)));
                    }
                    if let Some(a) = a {
                        out.push_str(&format!("  + {}\n", show(a)));
                    }
                }
            }
        }
        return Some(out);
    }
    let mut unmatched: Vec<&Vec<Value>> = actual.iter().collect();
    let mut missing = Vec::new();
    for e in expected {
        match unmatched.iter().position(|a| same(e, a, tol)) {
            Some(i) => {
                unmatched.remove(i);
            }
            None => missing.push(e),
        }
    }
    if missing.is_empty() && unmatched.is_empty() {
        return None;
    }
    out.push_str(&format!(
        "  {} expected row(s) missing, {} unexpected row(s) (of {} expected, {} produced):\n",
        missing.len(),
        unmatched.len(),
        expected.len(),
        actual.len()
    ));
    for m in missing {
        out.push_str(&format!("  - {}\n", show(m)));
    }
    for u in unmatched {
        out.push_str(&format!("  + {}\n", show(u)));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiset_comparison_reports_missing_and_unexpected_rows() {
        let r = |a: &str, b: f64| vec![Value::Text(a.into()), Value::Float(b)];
        assert_eq!(
            compare(
                &[r("a", 1.0), r("b", 2.0)],
                &[r("b", 2.0), r("a", 1.0 + 1e-12)],
                false,
                1e-9
            ),
            None
        );
        let diff = compare(&[r("a", 1.0)], &[r("a", 1.5)], false, 1e-9).unwrap();
        assert!(
            diff.contains("- (a, 1)") && diff.contains("+ (a, 1.5)"),
            "{diff}"
        );
        assert!(
            compare(
                &[r("a", 1.0), r("b", 2.0)],
                &[r("b", 2.0), r("a", 1.0)],
                true,
                1e-9
            )
            .is_some()
        );
    }
}
