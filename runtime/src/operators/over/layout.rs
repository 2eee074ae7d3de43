//! How an [`OverSpec`]'s aggregates map onto state: which argument columns are evaluated per batch
//! and kept per row (deduplicated across aggregates), each aggregate's frame in the event-time
//! column's unit, its accumulator and its result type.

use arrow::datatypes::DataType as ArrowType;
use fsql_plan::{AggregateFunction, Expr, ExprKind, OverFrame, OverSpec};

use crate::operators::agg::accumulator::{AccKind, AccSpec};
use crate::operators::agg::value::{Repr, ValueType, is_int_backed, reads_as_word};
use crate::operators::agg::{accumulator_for, value_type};

/// A frame, with RANGE offsets in the event-time column's unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    Range(i64),
    UnboundedRange,
    Rows(u64),
    UnboundedRows,
}

impl Frame {
    /// RANGE frames process rows with equal event times (peers) as one group.
    pub(crate) fn peers(self) -> bool {
        matches!(self, Frame::Range(_) | Frame::UnboundedRange)
    }

    /// Rows leave the frame (values are retracted).
    pub(crate) fn bounded(self) -> bool {
        matches!(self, Frame::Range(_) | Frame::Rows(_))
    }
}

/// What an aggregate computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Func {
    Acc(AccSpec),
    /// `LAG(x, offset, default)`: `default` indexes [`Layout::defaults`].
    Lag {
        offset: u64,
        default: Option<usize>,
    },
}

/// One aggregate of the spec.
#[derive(Clone, Debug)]
pub(crate) struct AggPlan {
    pub func: Func,
    pub frame: Frame,
    /// The stored column of its argument (`None` for `COUNT(*)`).
    pub col: Option<usize>,
    /// Its accumulator among a partition's [`Layout::accs`]; `None` for LAG, which reads the
    /// rows, and for a bounded `COUNT(*)`, which is the length of its frame.
    pub acc: Option<usize>,
    /// A sliding MIN, MAX or `COUNT(DISTINCT)` ([`AccSpec::scannable`]): its accumulator is
    /// kept only while its frame holds many rows; smaller frames are scanned.
    pub scan: bool,
    /// Where its accumulator is in a partition's: the kept ones first
    /// ([`Layout::kept_accs`]), then the scannable ones, present only while one of them is
    /// kept.
    pub at: usize,
    /// Its span among a partition's [`Layout::spans`]: aggregates of one frame hold the same
    /// rows, so they share one.
    pub span: usize,
    /// The last aggregate of its span: the one that stores the span's new bounds (the others
    /// compute the same bounds from the same old ones).
    pub writes_span: bool,
    /// The type of the values it produces...
    pub result: ValueType,
    /// ... and the output column's type they are cast to.
    pub target: ArrowType,
}

/// The most stored columns kept as words (their NULL-and-variant tags, two bits each, fill one
/// word per row).
pub(crate) const MAX_WORD_COLUMNS: u32 = 32;

/// The stored columns whose values are always NULL, a boolean, an integer (dates, times and
/// timestamps included) or a float: see [`Layout::word_columns`].
fn word_columns(stored: &[(Expr, Repr)], time_column: Option<usize>) -> u64 {
    let mut mask = 0u64;
    for (c, (expr, repr)) in stored.iter().enumerate().take(64) {
        let word = Some(c) != time_column
            && match repr {
                Repr::Presence | Repr::Float => true,
                Repr::Full => reads_as_word(&expr.data_type.to_arrow()),
            };
        if word && mask.count_ones() < MAX_WORD_COLUMNS {
            mask |= 1 << c;
        }
    }
    mask
}

/// The compiled spec.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    /// Argument columns evaluated per batch and kept with each row, and how they are read.
    pub stored: Vec<(Expr, Repr)>,
    /// LAG defaults, evaluated per batch (read for the current row only, never stored), with
    /// the type of the LAG argument they are cast to.
    pub defaults: Vec<(Expr, ArrowType)>,
    pub aggs: Vec<AggPlan>,
    /// Accumulators per partition (as checkpoints hold them: in aggregate order).
    pub accs: usize,
    /// Those that are not scannable (see [`AggPlan::at`]).
    pub kept_accs: usize,
    /// Spans per partition: one per distinct frame (LAG's apart from the aggregates').
    pub spans: usize,
    /// Words kept per row: its event time, and its arrival sequence when FIRST_VALUE or
    /// LAST_VALUE orders peers by it.
    pub row_words: usize,
    /// Which stored columns are kept as a word per row rather than a [`Value`]: bit `c` for
    /// column `c`, set for booleans, integers, timestamps and floats (a word and two tag bits
    /// instead of 24 bytes), at most [`MAX_WORD_COLUMNS`] of them.
    ///
    /// [`Value`]: crate::operators::agg::value::Value
    pub word_columns: u64,
    /// The stored column that is the ORDER BY column itself (`LAG(ts)`, for the time since the
    /// previous event): a row reads it off its event time, so it takes no room of its own.
    pub time_column: Option<usize>,
    /// When every aggregate is a sliding RANGE frame: the longest offset. A partition whose
    /// newest row is older than `watermark - expire_after` has nothing any later row can see, so
    /// it is dropped.
    pub expire_after: Option<i64>,
}

impl Layout {
    /// Compiles `spec`; `to_unit` turns milliseconds into the event-time column's unit and
    /// `targets` are the output types of the aggregates.
    pub(crate) fn new(
        spec: &OverSpec,
        to_unit: impl Fn(i64) -> i64,
        targets: &[ArrowType],
    ) -> Result<Layout, String> {
        if targets.len() != spec.aggregates.len() {
            return Err(format!(
                "{} aggregates but {} output columns for them",
                spec.aggregates.len(),
                targets.len()
            ));
        }
        let mut layout = Layout {
            stored: Vec::new(),
            defaults: Vec::new(),
            aggs: Vec::new(),
            accs: 0,
            kept_accs: 0,
            spans: 0,
            row_words: 1,
            word_columns: 0,
            time_column: None,
            expire_after: None,
        };
        for (agg, target) in spec.aggregates.iter().zip(targets) {
            let frame = match agg.frame {
                OverFrame::Range { preceding_ms } => {
                    if preceding_ms < 0 {
                        return Err(format!("negative RANGE offset {preceding_ms} ms"));
                    }
                    Frame::Range(to_unit(preceding_ms))
                }
                OverFrame::UnboundedRange => Frame::UnboundedRange,
                OverFrame::Rows { preceding } => Frame::Rows(preceding),
                OverFrame::UnboundedRows => Frame::UnboundedRows,
            };
            let arg = agg.args.first();
            let (func, repr, vt) = match agg.function {
                AggregateFunction::Lag { offset } => {
                    let vt = match arg {
                        Some(e) => value_type(e, agg.function)?,
                        None => return Err("LAG needs an argument".into()),
                    };
                    let default = match agg.args.get(1) {
                        Some(d) => {
                            layout
                                .defaults
                                .push((d.clone(), agg.args[0].data_type.to_arrow()));
                            Some(layout.defaults.len() - 1)
                        }
                        None => None,
                    };
                    (Func::Lag { offset, default }, Some(Repr::Full), vt)
                }
                f => {
                    let a = accumulator_for(f, &agg.args, agg.distinct, frame.bounded(), target)?;
                    (Func::Acc(a.spec), a.repr, a.arg_type)
                }
            };
            let col = match (repr, arg) {
                (Some(repr), Some(expr)) => Some(layout.store(expr, repr)),
                _ => None,
            };
            let result = match &func {
                Func::Acc(spec) => spec.result_type(&vt),
                Func::Lag { .. } => vt,
            };
            let acc = match func {
                Func::Acc(spec) if spec.kind == AccKind::CountStar && frame.bounded() => None,
                Func::Acc(spec) => {
                    if matches!(spec.kind, AccKind::FirstValue | AccKind::LastValue) {
                        layout.row_words = 2;
                    }
                    layout.accs += 1;
                    Some(layout.accs - 1)
                }
                Func::Lag { .. } => None,
            };
            let scan = acc.is_some() && matches!(func, Func::Acc(spec) if spec.scannable());
            layout.aggs.push(AggPlan {
                func,
                frame,
                col,
                acc,
                scan,
                at: 0,
                span: 0,
                writes_span: false,
                result,
                target: target.clone(),
            });
        }
        layout.share_spans();
        layout.place_accs();
        layout.time_column = layout.stored.iter().position(|(e, repr)| {
            *repr == Repr::Full
                && e.kind == ExprKind::Column(spec.order_by)
                && is_int_backed(&e.data_type.to_arrow())
        });
        layout.word_columns = word_columns(&layout.stored, layout.time_column);
        let all_range = layout
            .aggs
            .iter()
            .all(|a| matches!((a.func, a.frame), (Func::Acc(_), Frame::Range(_))));
        if all_range {
            layout.expire_after = layout
                .aggs
                .iter()
                .filter_map(|a| match a.frame {
                    Frame::Range(p) => Some(p),
                    _ => None,
                })
                .max();
        }
        Ok(layout)
    }

    /// Places the accumulators: the kept ones first, then the scannable ones.
    fn place_accs(&mut self) {
        let with_acc = |a: &&mut AggPlan| a.acc.is_some();
        self.kept_accs = self
            .aggs
            .iter()
            .filter(|a| a.acc.is_some() && !a.scan)
            .count();
        let (mut kept, mut scanned) = (0, self.kept_accs);
        for a in self.aggs.iter_mut().filter(with_acc) {
            let next = if a.scan { &mut scanned } else { &mut kept };
            a.at = *next;
            *next += 1;
        }
    }

    /// Gives aggregates of one frame one span, the last of them writing it.
    fn share_spans(&mut self) {
        let mut frames: Vec<(bool, Frame)> = Vec::new();
        for a in &mut self.aggs {
            let key = (matches!(a.func, Func::Lag { .. }), a.frame);
            a.span = frames.iter().position(|f| *f == key).unwrap_or_else(|| {
                frames.push(key);
                frames.len() - 1
            });
        }
        self.spans = frames.len();
        for span in 0..self.spans {
            if let Some(last) = self.aggs.iter_mut().rev().find(|a| a.span == span) {
                last.writes_span = true;
            }
        }
    }

    /// The stored column holding `expr` read as `repr` (shared with aggregates of the same
    /// argument; a presence column is served by a full one).
    fn store(&mut self, expr: &Expr, repr: Repr) -> usize {
        if let Some(i) = self.stored.iter().position(|(e, r)| {
            e == expr && (*r == repr || (repr == Repr::Presence && *r == Repr::Full))
        }) {
            return i;
        }
        if repr == Repr::Full
            && let Some(i) = self
                .stored
                .iter()
                .position(|(e, r)| e == expr && *r == Repr::Presence)
        {
            // Upgrade: a COUNT(x) column now also serves a full-value aggregate.
            self.stored[i].1 = Repr::Full;
            return i;
        }
        self.stored.push((expr.clone(), repr));
        self.stored.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use fsql_plan::{DataType, OverAggregate};

    use super::*;

    fn agg(
        function: AggregateFunction,
        args: Vec<Expr>,
        frame: OverFrame,
        t: DataType,
    ) -> OverAggregate {
        OverAggregate {
            function,
            args,
            distinct: false,
            frame,
            data_type: t,
        }
    }

    #[test]
    fn aggregates_of_one_argument_share_its_stored_column() {
        let v = Expr::column(2, DataType::Double, true);
        let w = OverFrame::Range {
            preceding_ms: 3_600_000,
        };
        let spec = OverSpec {
            partition_by: vec![1],
            order_by: 3,
            aggregates: vec![
                agg(
                    AggregateFunction::Count,
                    vec![v.clone()],
                    w,
                    DataType::BigInt,
                ),
                agg(AggregateFunction::Sum, vec![v.clone()], w, DataType::Double),
                agg(AggregateFunction::Count, vec![], w, DataType::BigInt),
                agg(
                    AggregateFunction::StddevPop,
                    vec![v.clone()],
                    w,
                    DataType::Double,
                ),
            ],
        };
        let targets: Vec<ArrowType> = spec
            .aggregates
            .iter()
            .map(|a| a.data_type.to_arrow())
            .collect();
        let l = Layout::new(&spec, |ms| ms * 1000, &targets).unwrap();
        assert_eq!(
            l.stored.iter().map(|(_, r)| *r).collect::<Vec<_>>(),
            vec![Repr::Full, Repr::Float]
        );
        assert_eq!(
            l.aggs.iter().map(|a| a.col).collect::<Vec<_>>(),
            vec![Some(0), Some(0), None, Some(1)]
        );
        assert_eq!(l.aggs[0].frame, Frame::Range(3_600_000_000));
        // One frame: one span, which the last aggregate writes.
        assert_eq!(l.spans, 1);
        assert_eq!(
            l.aggs
                .iter()
                .map(|a| (a.span, a.writes_span))
                .collect::<Vec<_>>(),
            vec![(0, false), (0, false), (0, false), (0, true)]
        );
        assert_eq!(l.expire_after, Some(3_600_000_000));
    }

    #[test]
    fn sum_of_a_string_is_rejected() {
        let s = Expr::column(0, DataType::String, true);
        let spec = OverSpec {
            partition_by: vec![],
            order_by: 1,
            aggregates: vec![agg(
                AggregateFunction::Sum,
                vec![s],
                OverFrame::UnboundedRows,
                DataType::String,
            )],
        };
        let err = Layout::new(&spec, |ms| ms, &[ArrowType::Utf8]).unwrap_err();
        assert_eq!(err, "SUM takes a numeric argument");
    }
}
