//! Helpers for unit tests: hand-built plans and batches.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use fsql_plan::{
    BinaryOp, ConnectorSpec, DataType, Expr, ExprKind, Field, Literal, Node, NodeId, Operator,
    Pipeline, Schema, SinkSpec, SourceSpec, WatermarkSpec,
};

use crate::executor::{RunOptions, RunSummary, run};
use crate::source::runtime_schema;

pub fn schema(fields: &[(&str, DataType)]) -> Schema {
    Schema::new(
        fields
            .iter()
            .map(|(n, t)| Field::new(*n, t.clone(), true))
            .collect(),
    )
}

pub fn col(i: usize, t: DataType) -> Expr {
    Expr::column(i, t, true)
}

pub fn bin(op: BinaryOp, l: Expr, r: Expr, t: DataType) -> Expr {
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

pub fn lit(v: Literal, t: DataType) -> Expr {
    Expr::literal(v, t)
}

pub fn connector(name: &str, options: &[(&str, &str)], base_dir: &str) -> ConnectorSpec {
    ConnectorSpec {
        connector: name.to_string(),
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        base_dir: base_dir.to_string(),
    }
}

/// A source spec whose output columns are its physical columns.
pub fn source_spec(table: &str, connector: ConnectorSpec, physical: Schema) -> SourceSpec {
    let columns = physical
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| col(i, f.data_type.clone()))
        .collect();
    SourceSpec {
        table: table.to_string(),
        connector,
        physical,
        columns,
        watermark: None,
        metadata: Default::default(),
    }
}

/// `WATERMARK FOR <rowtime> AS <rowtime> - INTERVAL delay_ms`.
pub fn watermark(rowtime: usize, delay_ms: i64) -> WatermarkSpec {
    let t = DataType::Timestamp { precision: 3 };
    WatermarkSpec {
        rowtime,
        expr: bin(
            BinaryOp::Minus,
            col(rowtime, t.clone()),
            lit(Literal::Int(delay_ms), DataType::IntervalDayTime),
            t,
        ),
        max_out_of_orderness_ms: Some(delay_ms),
    }
}

pub struct PlanBuilder {
    pub pipeline: Pipeline,
}

impl PlanBuilder {
    pub fn new() -> Self {
        PlanBuilder {
            pipeline: Pipeline {
                name: "test".into(),
                ..Pipeline::default()
            },
        }
    }

    pub fn setting(mut self, k: &str, v: &str) -> Self {
        self.pipeline.settings.insert(k.to_string(), v.to_string());
        self
    }

    pub fn add(&mut self, name: &str, inputs: &[u32], schema: Schema, op: Operator) -> NodeId {
        let id = NodeId(self.pipeline.nodes.len() as u32);
        self.pipeline.nodes.push(Node {
            id,
            name: name.to_string(),
            inputs: inputs.iter().map(|i| NodeId(*i)).collect(),
            schema,
            event_time: None,
            op,
        });
        id
    }

    pub fn source(&mut self, spec: SourceSpec) -> NodeId {
        let schema = spec.physical.clone();
        let name = spec.table.clone();
        self.add(&name, &[], schema, Operator::Source(spec))
    }

    pub fn sink(
        &mut self,
        input: NodeId,
        table: &str,
        connector: ConnectorSpec,
        schema: Schema,
    ) -> NodeId {
        self.add(
            table,
            &[input.0],
            schema,
            Operator::Sink(SinkSpec {
                table: table.to_string(),
                connector,
                metadata: Default::default(),
            }),
        )
    }
}

pub fn batch_of(schema: &Schema, columns: Vec<ArrayRef>) -> RecordBatch {
    RecordBatch::try_new(runtime_schema(schema), columns).expect("test batch")
}

/// Runs a pipeline and returns the collected batches per node with the summary.
pub fn run_collect(
    pipeline: &Pipeline,
    options: RunOptions,
) -> (BTreeMap<u32, Vec<RecordBatch>>, RunSummary) {
    let mut got: BTreeMap<u32, Vec<RecordBatch>> = BTreeMap::new();
    let summary = run(pipeline, options, &mut |id, b, _| {
        got.entry(id.0).or_default().push(b.clone())
    })
    .expect("run");
    (got, summary)
}

/// All rows of the batches as JSON lines.
pub fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            let mut s = String::new();
            crate::format::json_row(b, r, &mut s);
            out.push(s);
        }
    }
    out
}

/// A fresh temporary directory for a test.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fsql-runtime-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

pub fn arc<A: arrow::array::Array + 'static>(a: A) -> ArrayRef {
    Arc::new(a)
}

/// An input event for [`check_restore`]: a batch on an input, a watermark, or the end of an
/// input (a bounded reference table that was read whole).
#[derive(Clone, Debug)]
pub enum Step {
    Batch(usize, RecordBatch),
    /// Changes (rows with kinds) on an input.
    Changes(usize, RecordBatch, Vec<crate::operator::RowKind>),
    Watermark(i64),
    End(usize),
}

/// Feeds `steps` to `op`, appending what it emits to `out` (rows as JSON lines, changes as
/// `+I {...}` and so on, watermarks as `watermark <w>`).
pub fn drive(
    op: &mut dyn crate::operator::Operator,
    steps: &[Step],
    out: &mut Vec<String>,
) -> Result<(), crate::RuntimeError> {
    use crate::operator::Event;
    for step in steps {
        let mut events = Vec::new();
        match step {
            Step::Batch(input, b) => op.on_batch(*input, b.clone(), &mut events)?,
            Step::Changes(input, batch, kinds) => op.on_changes(
                *input,
                crate::operator::Changes {
                    batch: batch.clone(),
                    kinds: kinds.clone(),
                },
                &mut events,
            )?,
            Step::Watermark(w) => op.on_watermark(*w, &mut events)?,
            Step::End(input) => op.on_input_end(*input, &mut events)?,
        }
        for e in events {
            match e {
                Event::Batch(b) => out.extend(rows(&[b])),
                Event::Changes(c) => out.extend(
                    rows(std::slice::from_ref(&c.batch))
                        .into_iter()
                        .zip(&c.kinds)
                        .map(|(row, kind)| format!("{} {row}", kind.short())),
                ),
                Event::Watermark(w) => out.push(format!("watermark {w}")),
            }
        }
    }
    Ok(())
}

/// Checks that an operator checkpointed after each prefix of `steps` and restored into a fresh
/// one (from `make`) gives, over the rest, exactly the output of one uninterrupted run: the
/// property recovery relies on. Returns the uninterrupted output.
pub fn check_restore(
    make: &dyn Fn() -> Box<dyn crate::operator::Operator>,
    steps: &[Step],
) -> Vec<String> {
    use crate::state::codec::{StateReader, StateWriter};
    let mut whole = Vec::new();
    drive(make().as_mut(), steps, &mut whole).expect("the uninterrupted run");
    for cut in 0..=steps.len() {
        let mut out = Vec::new();
        let mut first = make();
        drive(first.as_mut(), &steps[..cut], &mut out).expect("the run before the checkpoint");
        let mut w = StateWriter::default();
        let stateful = first.snapshot(&mut w).expect("snapshot");
        let bytes = w.into_bytes();
        let mut second = make();
        if stateful {
            let mut r = StateReader::new(&bytes);
            second.restore(&mut r).expect("restore");
            r.finish().expect("the whole state was read");
            // A restored operator snapshots to the same bytes: nothing was lost or invented.
            let mut again = StateWriter::default();
            second.snapshot(&mut again).expect("snapshot after restore");
            assert!(
                again.into_bytes() == bytes,
                "the state changed across a restore at step {cut}"
            );
        }
        drive(second.as_mut(), &steps[cut..], &mut out).expect("the run after the restore");
        assert_eq!(out, whole, "restored at step {cut} of {}", steps.len());
        // Truncated state is refused, never misread or a panic.
        for len in [0, bytes.len() / 3, bytes.len().saturating_sub(1)] {
            if len < bytes.len() {
                let mut r = StateReader::new(&bytes[..len]);
                let restored = make().restore(&mut r).and_then(|()| {
                    r.finish()
                        .map_err(|e| crate::RuntimeError::state("test", e))
                });
                assert!(restored.is_err(), "state cut to {len} bytes was accepted");
            }
        }
    }
    whole
}

/// Options for opening a source in a unit test: batches of at most `max_rows`.
pub fn open_options(max_rows: usize, unthrottled: bool) -> crate::source::OpenOptions {
    crate::source::OpenOptions {
        batch: crate::batcher::BatchConfig {
            max_rows,
            ..crate::batcher::BatchConfig::default()
        },
        unthrottled,
        capture_sinks: false,
        resume: Default::default(),
        columns_read: None,
    }
}

/// Polls `source` until it ends (or `limit` batches came), returning its batches.
pub fn drain_source(source: &mut dyn crate::source::Source, limit: usize) -> Vec<RecordBatch> {
    use crate::source::{SourceContext, SourcePoll};
    let mut noop = |_: &crate::source::MalformedRecord| {};
    let mut out = Vec::new();
    while out.len() < limit {
        let mut ctx = SourceContext::new(std::time::Instant::now(), &mut noop);
        match source.poll(&mut ctx).expect("poll") {
            SourcePoll::Batch(b) => out.push(b),
            SourcePoll::End => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}

/// A RocksDB state backend (a fresh working instance in the system temp dir) keeping at most
/// `resident_keys` values per table in memory: with 1, every other key's state is spilled between
/// steps and read back, so tests exercise the spill path on every access.
pub fn rocksdb_backend(resident_keys: usize) -> crate::state::StateBackend {
    let settings = [
        ("state.backend".to_string(), "rocksdb".to_string()),
        (
            "state.backend.rocksdb.resident-keys".to_string(),
            resident_keys.to_string(),
        ),
    ]
    .into_iter()
    .collect();
    crate::state::StateBackend::open(&settings, None).expect("a RocksDB working instance")
}
