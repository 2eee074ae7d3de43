//! Calc (Flink's name for filter + projection): keeps rows whose filter is TRUE (NULL and FALSE
//! drop), then computes the projections on the kept rows only. With the JIT on, one compiled
//! kernel does both ([`CompiledExprs`]); the interpreter is the fallback and the reference.
//! Rows of an updating input keep their kinds (a filter drops a row and its kind together);
//! they are interpreted.

use arrow::array::{Array, RecordBatch, RecordBatchOptions};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use fsql_plan::Expr;

use crate::compiled::CompiledExprs;
use crate::error::RuntimeError;
use crate::eval::{evaluate, evaluate_predicate};
use crate::operator::{Changes, Event, Operator};

/// Filter then project.
pub struct Calc {
    name: String,
    filter: Option<Expr>,
    projections: Vec<Expr>,
    schema: SchemaRef,
    compiled: Option<CompiledExprs>,
}

impl Calc {
    /// A Calc producing `schema` (one field per projection), interpreted.
    pub fn new(
        name: &str,
        filter: Option<Expr>,
        projections: Vec<Expr>,
        schema: SchemaRef,
    ) -> Calc {
        Calc {
            name: name.to_string(),
            filter,
            projections,
            schema,
            compiled: None,
        }
    }

    /// The same Calc run by compiled code over batches of `input` where the JIT reaches.
    pub fn compiled(mut self, input: &arrow::datatypes::Schema) -> Calc {
        self.compiled = CompiledExprs::new(self.filter.as_ref(), &self.projections, input);
        self
    }

    /// Applies the Calc to one batch (`None` when no row passes).
    pub fn apply(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>, RuntimeError> {
        if let Some(compiled) = &mut self.compiled {
            let computed = compiled
                .run(batch)
                .map_err(|e| RuntimeError::eval(&self.name, e))?;
            if let Some(c) = computed {
                if c.rows == 0 {
                    return Ok(None);
                }
                let options = RecordBatchOptions::new().with_row_count(Some(c.rows));
                let out =
                    RecordBatch::try_new_with_options(self.schema.clone(), c.columns, &options)
                        .map_err(|e| RuntimeError::arrow(&self.name, e))?;
                return Ok(Some(out));
            }
        }
        self.interpret(batch)
    }

    /// Applies the Calc to changes: the passing rows with their kinds (`None` when no row
    /// passes).
    pub fn apply_changes(&self, changes: &Changes) -> Result<Option<Changes>, RuntimeError> {
        let batch = &changes.batch;
        let taken;
        let changes = match &self.filter {
            None => changes,
            Some(f) => {
                let keep =
                    evaluate_predicate(f, batch).map_err(|e| RuntimeError::eval(&self.name, e))?;
                let rows: Vec<u32> = (0..batch.num_rows())
                    .filter(|&i| keep.is_valid(i) && keep.value(i))
                    .map(|i| i as u32)
                    .collect();
                taken = changes.take(&self.name, &rows)?;
                &taken
            }
        };
        Ok(self.project(&changes.batch)?.map(|batch| Changes {
            batch,
            kinds: changes.kinds.clone(),
        }))
    }

    /// The interpreter's answer: the reference.
    fn interpret(&self, batch: &RecordBatch) -> Result<Option<RecordBatch>, RuntimeError> {
        let filtered;
        let input = match &self.filter {
            None => batch,
            Some(f) => {
                let keep =
                    evaluate_predicate(f, batch).map_err(|e| RuntimeError::eval(&self.name, e))?;
                let passing = keep.true_count();
                if passing == 0 {
                    return Ok(None);
                }
                if passing == batch.num_rows() && keep.null_count() == 0 {
                    batch
                } else {
                    filtered = filter_record_batch(batch, &keep)
                        .map_err(|e| RuntimeError::arrow(&self.name, e))?;
                    &filtered
                }
            }
        };
        self.project(input)
    }

    /// The projections of every row of `input`, interpreted (`None` without rows).
    fn project(&self, input: &RecordBatch) -> Result<Option<RecordBatch>, RuntimeError> {
        if input.num_rows() == 0 {
            return Ok(None);
        }
        let columns = self
            .projections
            .iter()
            .map(|p| evaluate(p, input))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| RuntimeError::eval(&self.name, e))?;
        let options = RecordBatchOptions::new().with_row_count(Some(input.num_rows()));
        let out = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)
            .map_err(|e| RuntimeError::arrow(&self.name, e))?;
        Ok(Some(out))
    }
}

impl Operator for Calc {
    /// Stateless: nothing to checkpoint.
    fn snapshot(
        &mut self,
        _w: &mut crate::state::codec::StateWriter,
    ) -> Result<bool, RuntimeError> {
        Ok(false)
    }

    fn on_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Vec<Event>,
    ) -> Result<(), RuntimeError> {
        if let Some(b) = self.apply(&batch)? {
            out.push(Event::Batch(b));
        }
        Ok(())
    }

    fn on_changes(
        &mut self,
        _input: usize,
        changes: Changes,
        out: &mut Vec<Event>,
    ) -> Result<(), RuntimeError> {
        if let Some(c) = self.apply_changes(&changes)? {
            out.push(Event::Changes(c));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray};
    use fsql_plan::{BinaryOp, DataType, Literal};

    use super::*;
    use crate::source::runtime_schema;
    use crate::testkit::*;

    #[test]
    fn filter_keeps_only_true_rows_then_projects() {
        let input = schema(&[("id", DataType::BigInt), ("name", DataType::String)]);
        let batch = batch_of(
            &input,
            vec![
                arc(Int64Array::from(vec![Some(1), Some(2), None, Some(4)])),
                arc(StringArray::from(vec!["a", "b", "c", "d"])),
            ],
        );
        // WHERE id > 1 (NULL id: unknown, dropped) SELECT name, id * 10
        let out_schema = schema(&[("name", DataType::String), ("id10", DataType::BigInt)]);
        let mut calc = Calc::new(
            "calc",
            Some(bin(
                BinaryOp::Gt,
                col(0, DataType::BigInt),
                lit(Literal::Int(1), DataType::BigInt),
                DataType::Boolean,
            )),
            vec![
                col(1, DataType::String),
                bin(
                    BinaryOp::Multiply,
                    col(0, DataType::BigInt),
                    lit(Literal::Int(10), DataType::BigInt),
                    DataType::BigInt,
                ),
            ],
            runtime_schema(&out_schema),
        );
        let out = calc.apply(&batch).unwrap().unwrap();
        assert_eq!(
            rows(&[out]),
            vec![r#"{"name":"b","id10":20}"#, r#"{"name":"d","id10":40}"#]
        );
        // No row passing gives no batch at all.
        let mut none = Calc::new(
            "calc",
            Some(bin(
                BinaryOp::Gt,
                col(0, DataType::BigInt),
                lit(Literal::Int(100), DataType::BigInt),
                DataType::Boolean,
            )),
            vec![col(1, DataType::String)],
            runtime_schema(&schema(&[("name", DataType::String)])),
        );
        assert!(none.apply(&batch).unwrap().is_none());
    }

    #[test]
    fn projection_errors_name_the_node() {
        let input = schema(&[("s", DataType::String)]);
        let batch = batch_of(&input, vec![arc(StringArray::from(vec!["x"]))]);
        let bad = fsql_plan::Expr {
            kind: fsql_plan::ExprKind::Cast {
                arg: Box::new(col(0, DataType::String)),
                safe: false,
            },
            data_type: DataType::Int,
            nullable: true,
        };
        let mut calc = Calc::new(
            "my_view",
            None,
            vec![bad],
            runtime_schema(&schema(&[("n", DataType::Int)])),
        );
        let err = calc.apply(&batch).unwrap_err().to_string();
        assert_eq!(err, "in `my_view`: cannot cast 'x' from STRING to INT");
    }
}
