//! Rows kept in `ORDER BY` order per partition, shared by Window TopN (`window/rank.rs`) and
//! TopN without a window (`rank.rs`): each row with its byte-comparable sort key and arrival
//! number, their checkpoint (and RocksDB) encoding, and the sort-key encoder.

use arrow::array::{ArrayRef, RecordBatch};
use std::sync::Arc;

use arrow::compute::SortOptions;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::row::{RowConverter, Rows, SortField};
use fsql_plan::SortKey;

use crate::error::RuntimeError;
use crate::eval::evaluate;
use crate::state::ValueCodec;
use crate::state::codec::{StateError, StateReader, StateWriter};

/// A kept row: its sort key, arrival order, and the row itself (a one-row slice).
pub(crate) struct Ranked {
    pub sort: Box<[u8]>,
    pub seq: u64,
    pub row: RecordBatch,
}

/// Writes one partition's kept rows: the rows as one batch, then each one's sort key and arrival
/// number (the RocksDB backend's encoding of a partition).
fn encode_ranked(ranked: &[Ranked], w: &mut StateWriter) -> Result<(), StateError> {
    let rows: Vec<RecordBatch> = ranked.iter().map(|k| k.row.clone()).collect();
    w.rows(&rows)?;
    w.count(ranked.len());
    for k in ranked {
        w.bytes(&k.sort);
        w.u64(k.seq);
    }
    Ok(())
}

/// Reads what [`encode_ranked`] wrote (rows of `input`; rows written before it gained columns
/// are widened).
fn decode_ranked(r: &mut StateReader<'_>, input: &Schema) -> Result<Vec<Ranked>, StateError> {
    let mut rows = r.rows(input)?;
    let ranked = (0..r.count()?)
        .map(|_| {
            Ok(Ranked {
                sort: r.bytes()?.into(),
                seq: r.u64()?,
                row: rows.next_row()?,
            })
        })
        .collect::<Result<Vec<_>, StateError>>()?;
    rows.finish()?;
    Ok(ranked)
}

/// How a partition's kept rows (rows of `input`) are stored: in RocksDB, and in memory
/// checkpoints of TopN without a window.
pub(crate) fn codec(input: SchemaRef) -> ValueCodec<Vec<Ranked>> {
    ValueCodec {
        encode: Box::new(|ranked, w| encode_ranked(ranked, w)),
        decode: Box::new(move |r| decode_ranked(r, &input)),
    }
}

/// A TopN's input schema: its output without the row number.
pub(crate) fn input_schema(output: &Schema) -> SchemaRef {
    let n = output.fields().len().saturating_sub(1);
    Arc::new(Schema::new(output.fields()[..n].to_vec()))
}

/// Encodes `ORDER BY` keys of batches as byte-comparable rows (Arrow's row format: descending
/// and NULL order folded in). The encoder is built from the first batch's types; a restored
/// operator builds it again from its next batch, which encodes keys the same way.
pub(crate) struct SortKeyEncoder {
    order_by: Vec<SortKey>,
    converter: Option<RowConverter>,
}

impl SortKeyEncoder {
    pub(crate) fn new(order_by: &[SortKey]) -> SortKeyEncoder {
        SortKeyEncoder {
            order_by: order_by.to_vec(),
            converter: None,
        }
    }

    /// The sort keys of `batch`'s rows (node `name` for errors).
    pub(crate) fn encode(&mut self, name: &str, batch: &RecordBatch) -> Result<Rows, RuntimeError> {
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.order_by.len());
        for k in &self.order_by {
            arrays.push(evaluate(&k.expr, batch).map_err(|e| RuntimeError::eval(name, e))?);
        }
        if arrays.is_empty() {
            // No ORDER BY: every row sorts equal (arrival order decides).
            arrays.push(std::sync::Arc::new(arrow::array::NullArray::new(
                batch.num_rows(),
            )));
        }
        let converter = match &mut self.converter {
            Some(c) => c,
            None => {
                let fields = arrays
                    .iter()
                    .zip(
                        self.order_by
                            .iter()
                            .map(Some)
                            .chain(std::iter::repeat(None)),
                    )
                    .map(|(a, k)| {
                        let options = k.map_or(SortOptions::default(), |k| SortOptions {
                            descending: k.descending,
                            nulls_first: k.nulls_first,
                        });
                        SortField::new_with_options(a.data_type().clone(), options)
                    })
                    .collect();
                self.converter
                    .insert(RowConverter::new(fields).map_err(|e| RuntimeError::arrow(name, e))?)
            }
        };
        converter
            .convert_columns(&arrays)
            .map_err(|e| RuntimeError::arrow(name, e))
    }
}
