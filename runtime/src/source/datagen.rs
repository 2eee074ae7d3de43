//! The `datagen` source (Flink's connector name and options).
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `rows-per-second` | 10000 | throttle (ignored with `RunOptions::unthrottled`) |
//! | `number-of-rows` | unbounded | total rows, then the source ends |
//! | `fields.<col>.kind` | `random` | `random` or `sequence` |
//! | `fields.<col>.min` / `.max` | the type's range; `[0, 1)` for FLOAT/DOUBLE | random numbers |
//! | `fields.<col>.length` | 100 | random string length |
//! | `fields.<col>.var-len` | false | random string length in `1..=length` |
//! | `fields.<col>.start` / `.end` | required for `sequence` | inclusive; a sequence bounds the source to `end - start + 1` rows, as in Flink |
//! | `fields.<col>.null-rate` | 0.0 | fraction of NULLs |
//! | `fields.<col>.max-past` | 0 | random TIMESTAMPs lie in `[now - max-past, now]` |
//! | `seed` (fsql) | 0 | random values are deterministic given the seed |
//! | `start-time` (fsql) | `2024-01-01 00:00:00` | the generator's clock origin |
//!
//! Differences from Flink: values are deterministic (Flink seeds randomly; fsql reruns reproduce);
//! "now" for TIMESTAMP/DATE fields is a virtual clock, `start-time` plus the row index divided by
//! `rows-per-second`, instead of the wall clock; FLOAT/DOUBLE default to `[0, 1)` rather than the
//! whole range of the type; random strings are lowercase hex, as Flink's.

use std::collections::BTreeMap;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;
use arrow::datatypes::TimeUnit;
use fsql_plan::SourceSpec;

use super::builder::{Cell, ColumnBuilder, Kind};
use super::rng::{Rng, mix};
use super::{
    OpenOptions, Source, SourceContext, SourcePoll, Throttle, option_number, runtime_schema,
};
use crate::checkpoint::SourcePosition;
use crate::error::RuntimeError;
use crate::text;

const FIELD_OPTIONS: [&str; 9] = [
    "kind",
    "min",
    "max",
    "length",
    "var-len",
    "start",
    "end",
    "null-rate",
    "max-past",
];

enum Gen {
    Sequence {
        next: i128,
        end: i128,
    },
    RandomInt {
        min: i64,
        max: i64,
    },
    RandomFloat {
        min: f64,
        max: f64,
    },
    RandomDecimal {
        min: i128,
        max: i128,
    },
    RandomString {
        length: usize,
        var_len: bool,
    },
    RandomBool,
    /// Random instant within `max_past` ms before the virtual now.
    RandomTime {
        max_past_ms: i64,
    },
}

struct FieldGen {
    kind: Kind,
    gen_: Gen,
    null_rate: f64,
    rng: Rng,
}

/// Generates rows of random or sequential values per column.
pub struct DatagenSource {
    table: String,
    schema: SchemaRef,
    fields: Vec<FieldGen>,
    builders: Vec<ColumnBuilder>,
    strings: String,
    throttle: Throttle,
    remaining: u64,
    index: u64,
    start_ms: i64,
    ms_per_row: f64,
}

fn field_option<'a>(opts: &'a BTreeMap<String, String>, col: &str, key: &str) -> Option<&'a str> {
    opts.get(&format!("fields.{col}.{key}")).map(String::as_str)
}

impl DatagenSource {
    /// Validates the options against the table's columns and prepares the generators.
    pub fn open(spec: &SourceSpec, options: &OpenOptions) -> Result<DatagenSource, RuntimeError> {
        let table = &spec.table;
        let opts = &spec.connector.options;
        // Every `fields.<col>.<opt>` must name a column and a known option.
        for key in opts.keys().filter(|k| k.starts_with("fields.")) {
            let rest = &key["fields.".len()..];
            let (col, opt) = rest.rsplit_once('.').unwrap_or((rest, ""));
            if spec.physical.index_of(col).is_none() {
                return Err(RuntimeError::option(
                    table,
                    key,
                    format!("`{col}` is not a column of the table"),
                ));
            }
            if !FIELD_OPTIONS.contains(&opt) {
                return Err(RuntimeError::option(
                    table,
                    key,
                    format!(
                        "unknown field option '{opt}' (known: {})",
                        FIELD_OPTIONS.join(", ")
                    ),
                ));
            }
        }
        let seed: u64 = option_number(spec, "seed")?.unwrap_or(0);
        let rate: f64 = option_number(spec, "rows-per-second")?.unwrap_or(10_000.0);
        let mut remaining: u64 = option_number(spec, "number-of-rows")?.unwrap_or(u64::MAX);
        let start_ms = match opts.get("start-time") {
            None => 1_704_067_200_000,
            Some(t) => text::parse_timestamp_in(t, arrow::datatypes::TimeUnit::Millisecond)
                .ok_or_else(|| {
                    RuntimeError::option(table, "start-time", format!("'{t}' is not a timestamp"))
                })?,
        };
        let mut fields = Vec::new();
        for (i, f) in spec.physical.fields.iter().enumerate() {
            let col = f.name.as_str();
            let kind = Kind::of(&f.data_type).ok_or_else(|| {
                RuntimeError::connector(
                    table,
                    format!(
                        "column `{col}` of type {} cannot be generated (not supported yet)",
                        f.data_type
                    ),
                )
            })?;
            let key = |k: &str| format!("fields.{col}.{k}");
            let num = |k: &str| -> Result<Option<f64>, RuntimeError> {
                field_option(opts, col, k)
                    .map(|v| {
                        v.trim().parse::<f64>().map_err(|_| {
                            RuntimeError::option(table, &key(k), format!("'{v}' is not a number"))
                        })
                    })
                    .transpose()
            };
            let int = |k: &str| -> Result<Option<i128>, RuntimeError> {
                field_option(opts, col, k)
                    .map(|v| {
                        v.trim().parse::<i128>().map_err(|_| {
                            RuntimeError::option(table, &key(k), format!("'{v}' is not an integer"))
                        })
                    })
                    .transpose()
            };
            let null_rate = num("null-rate")?.unwrap_or(0.0);
            let kind_opt = field_option(opts, col, "kind")
                .unwrap_or("random")
                .trim()
                .to_ascii_lowercase();
            let gen_ = match kind_opt.as_str() {
                "sequence" => {
                    let (Some(start), Some(end)) = (int("start")?, int("end")?) else {
                        return Err(RuntimeError::option(
                            table,
                            &key("start"),
                            "a sequence field needs both 'start' and 'end'",
                        ));
                    };
                    if end < start {
                        return Err(RuntimeError::option(
                            table,
                            &key("end"),
                            "must not be smaller than 'start'",
                        ));
                    }
                    let fits = match kind.int_range() {
                        Some((lo, hi)) => start >= i128::from(lo) && end <= i128::from(hi),
                        None => matches!(
                            kind,
                            Kind::String | Kind::Float | Kind::Double | Kind::Decimal { .. }
                        ),
                    };
                    if !fits {
                        return Err(RuntimeError::option(
                            table,
                            &key("kind"),
                            format!(
                                "a sequence cannot fill column `{col}` of type {}",
                                f.data_type
                            ),
                        ));
                    }
                    let count = end
                        .checked_sub(start)
                        .and_then(|d| u64::try_from(d).ok())
                        .map_or(u64::MAX, |d| d.saturating_add(1));
                    remaining = remaining.min(count);
                    Gen::Sequence { next: start, end }
                }
                "random" => match kind {
                    Kind::TinyInt
                    | Kind::SmallInt
                    | Kind::Int
                    | Kind::BigInt
                    | Kind::IntervalMs => {
                        let (lo, hi) = kind.int_range().unwrap_or((i64::MIN, i64::MAX));
                        let min = num("min")?.map_or(lo, |v| v as i64).clamp(lo, hi);
                        let max = num("max")?.map_or(hi, |v| v as i64).clamp(lo, hi);
                        Gen::RandomInt { min, max }
                    }
                    Kind::Float | Kind::Double => Gen::RandomFloat {
                        min: num("min")?.unwrap_or(0.0),
                        max: num("max")?.unwrap_or(1.0),
                    },
                    Kind::Decimal { precision, scale } => {
                        let factor = 10f64.powi(i32::from(scale));
                        let limit = 10i128.saturating_pow(u32::from(precision.min(38))) - 1;
                        let min = num("min")?
                            .map_or(0, |v| (v * factor).round() as i128)
                            .clamp(-limit, limit);
                        let max = num("max")?
                            .map_or(limit, |v| (v * factor).round() as i128)
                            .clamp(-limit, limit);
                        Gen::RandomDecimal { min, max }
                    }
                    Kind::String | Kind::Bytes => Gen::RandomString {
                        length: match num("length")? {
                            None => 100,
                            Some(v) if (0.0..=1_000_000.0).contains(&v) => v as usize,
                            Some(_) => {
                                return Err(RuntimeError::option(
                                    table,
                                    &key("length"),
                                    "must be between 0 and 1000000",
                                ));
                            }
                        },
                        var_len: field_option(opts, col, "var-len")
                            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
                    },
                    Kind::Boolean => Gen::RandomBool,
                    Kind::Timestamp(_) | Kind::Date | Kind::Time => {
                        let max_past_ms = match field_option(opts, col, "max-past") {
                            None => 0,
                            Some(v) => crate::parse_duration(v)
                                .map_err(|e| RuntimeError::option(table, &key("max-past"), e))?
                                .as_millis() as i64,
                        };
                        Gen::RandomTime { max_past_ms }
                    }
                },
                other => {
                    return Err(RuntimeError::option(
                        table,
                        &key("kind"),
                        format!("'{other}' is not random or sequence"),
                    ));
                }
            };
            fields.push(FieldGen {
                kind,
                gen_,
                null_rate,
                rng: Rng::new(mix(seed ^ mix(i as u64 + 1))),
            });
        }
        let builders = spec
            .physical
            .fields
            .iter()
            .filter_map(|f| ColumnBuilder::new(&f.data_type))
            .collect();
        let throttled = !options.unthrottled;
        Ok(DatagenSource {
            table: table.clone(),
            schema: runtime_schema(&spec.physical),
            fields,
            builders,
            strings: String::new(),
            throttle: Throttle::new(throttled.then_some(rate), options.batch),
            remaining,
            index: 0,
            start_ms,
            ms_per_row: if rate > 0.0 { 1000.0 / rate } else { 0.0 },
        })
    }

    fn generate(&mut self, rows: usize) -> Result<RecordBatch, RuntimeError> {
        for r in 0..rows {
            let now_ms = self.start_ms + ((self.index + r as u64) as f64 * self.ms_per_row) as i64;
            self.strings.clear();
            for (f, b) in self.fields.iter_mut().zip(self.builders.iter_mut()) {
                let cell = if f.rng.chance(f.null_rate) {
                    // Sequences still advance past a NULL.
                    if let Gen::Sequence { next, .. } = &mut f.gen_ {
                        *next += 1;
                    }
                    Cell::Null
                } else {
                    next_cell(f, now_ms, &mut self.strings)
                };
                b.append(cell, &self.strings);
            }
        }
        self.index += rows as u64;
        let columns = self
            .builders
            .iter_mut()
            .map(ColumnBuilder::finish)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| RuntimeError::arrow(&self.table, e))?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)
            .map_err(|e| RuntimeError::arrow(&self.table, e))
    }
}

fn next_cell(f: &mut FieldGen, now_ms: i64, strings: &mut String) -> Cell {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match &mut f.gen_ {
        Gen::Sequence { next, end } => {
            let v = *next;
            *next = (*next + 1).min(*end + 1);
            match f.kind {
                Kind::Float | Kind::Double => Cell::Float(v as f64),
                Kind::Decimal { scale, .. } => Cell::decimal(
                    v.saturating_mul(10i128.saturating_pow(u32::try_from(scale).unwrap_or(0))),
                ),
                Kind::String | Kind::Bytes => {
                    let start = strings.len();
                    strings.push_str(&v.to_string());
                    Cell::Str(start, strings.len())
                }
                _ => Cell::Int(v as i64),
            }
        }
        Gen::RandomInt { min, max } => Cell::Int(f.rng.range_i64(*min, *max)),
        Gen::RandomFloat { min, max } => Cell::Float(*min + f.rng.next_f64() * (*max - *min)),
        Gen::RandomDecimal { min, max } => {
            let span = max.saturating_sub(*min).max(0) as u128 + 1;
            let v = (u128::from(f.rng.next_u64()) % span) as i128;
            Cell::decimal(min.saturating_add(v))
        }
        Gen::RandomString { length, var_len } => {
            let len = if *var_len && *length > 0 {
                1 + f.rng.below(*length as u64) as usize
            } else {
                *length
            };
            let start = strings.len();
            for _ in 0..len {
                strings.push(HEX[(f.rng.next_u64() & 15) as usize] as char);
            }
            Cell::Str(start, strings.len())
        }
        Gen::RandomBool => Cell::Bool(f.rng.next_u64() & 1 == 1),
        Gen::RandomTime { max_past_ms } => {
            let ms = now_ms - f.rng.range_i64(0, *max_past_ms);
            match f.kind {
                Kind::Timestamp(unit) => Cell::Int(match unit {
                    TimeUnit::Second => ms.div_euclid(1000),
                    TimeUnit::Millisecond => ms,
                    TimeUnit::Microsecond => ms.saturating_mul(1000),
                    TimeUnit::Nanosecond => ms.saturating_mul(1_000_000),
                }),
                Kind::Date => Cell::Int(ms.div_euclid(86_400_000)),
                _ => Cell::Int(ms.rem_euclid(86_400_000)),
            }
        }
    }
}

impl Source for DatagenSource {
    fn poll(&mut self, ctx: &mut SourceContext<'_>) -> Result<SourcePoll, RuntimeError> {
        if self.remaining == 0 {
            return Ok(SourcePoll::End);
        }
        match self.throttle.next(ctx.now, self.remaining) {
            Ok(rows) => {
                self.remaining -= rows as u64;
                Ok(SourcePoll::Batch(self.generate(rows)?))
            }
            Err(wake) => Ok(SourcePoll::Pending(wake)),
        }
    }

    fn position(&mut self) -> Result<SourcePosition, RuntimeError> {
        Ok(SourcePosition::Rows(self.index))
    }

    /// The rows are a function of the options and the row number: resuming regenerates the
    /// rows already handed out (random columns draw in sequence) and drops them.
    fn seek(&mut self, position: &SourcePosition) -> Result<(), RuntimeError> {
        let SourcePosition::Rows(n) = *position else {
            return Err(RuntimeError::connector(
                &self.table,
                "a checkpoint gives this generator a Kafka position",
            ));
        };
        let mut skip = n.min(self.remaining);
        while skip > 0 {
            let rows = skip.min(4096) as usize;
            self.generate(rows)?;
            self.remaining -= rows as u64;
            skip -= rows as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    use arrow::array::{Array, AsArray, RecordBatch};
    use arrow::datatypes::{Float64Type, Int32Type, Int64Type};
    use fsql_plan::DataType;

    use super::*;
    use crate::testkit::*;

    fn open(
        options: &[(&str, &str)],
        fields: &[(&str, DataType)],
    ) -> Result<DatagenSource, RuntimeError> {
        let spec = source_spec("gen", connector("datagen", options, ""), schema(fields));
        DatagenSource::open(&spec, &open_options(64, true))
    }

    fn drain(source: &mut DatagenSource, limit: usize) -> Vec<RecordBatch> {
        drain_source(source, limit)
    }

    #[test]
    fn a_sequence_bounds_the_source_to_its_length() {
        let mut s = open(
            &[
                ("fields.id.kind", "sequence"),
                ("fields.id.start", "5"),
                ("fields.id.end", "104"),
            ],
            &[("id", DataType::BigInt), ("name", DataType::String)],
        )
        .unwrap();
        let batches = drain(&mut s, 100);
        let ids: Vec<i64> = batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        assert_eq!(ids, (5..=104).collect::<Vec<i64>>());
        // number-of-rows bounds it too, whichever is smaller.
        let mut s = open(
            &[
                ("number-of-rows", "10"),
                ("fields.id.kind", "sequence"),
                ("fields.id.start", "1"),
                ("fields.id.end", "1000"),
            ],
            &[("id", DataType::BigInt)],
        )
        .unwrap();
        assert_eq!(
            drain(&mut s, 100)
                .iter()
                .map(RecordBatch::num_rows)
                .sum::<usize>(),
            10
        );
    }

    #[test]
    fn random_values_respect_min_max_length_and_seed() {
        let opts = [
            ("number-of-rows", "500"),
            ("fields.n.min", "-3"),
            ("fields.n.max", "3"),
            ("fields.x.min", "10"),
            ("fields.x.max", "20"),
            ("fields.s.length", "8"),
            ("seed", "11"),
        ];
        let fields = [
            ("n", DataType::Int),
            ("x", DataType::Double),
            ("s", DataType::String),
            ("b", DataType::Boolean),
        ];
        let a = drain(&mut open(&opts, &fields).unwrap(), 100);
        for b in &a {
            assert!(
                b.column(0)
                    .as_primitive::<Int32Type>()
                    .values()
                    .iter()
                    .all(|v| (-3..=3).contains(v))
            );
            assert!(
                b.column(1)
                    .as_primitive::<Float64Type>()
                    .values()
                    .iter()
                    .all(|v| (10.0..=20.0).contains(v))
            );
            assert!(
                b.column(2)
                    .as_string::<i32>()
                    .iter()
                    .all(|s| s.is_some_and(|s| s.len() == 8))
            );
        }
        let again = drain(&mut open(&opts, &fields).unwrap(), 100);
        assert_eq!(rows(&a), rows(&again), "same seed, same rows");
        let mut other_opts = opts.to_vec();
        other_opts[6] = ("seed", "12");
        let other = drain(&mut open(&other_opts, &fields).unwrap(), 100);
        assert_ne!(rows(&a), rows(&other));
    }

    #[test]
    fn null_rate_and_timestamps() {
        let opts = [
            ("number-of-rows", "1000"),
            ("fields.v.null-rate", "0.5"),
            ("fields.t.max-past", "1 min"),
        ];
        let b = drain(
            &mut open(
                &opts,
                &[
                    ("v", DataType::BigInt),
                    ("t", DataType::Timestamp { precision: 3 }),
                ],
            )
            .unwrap(),
            100,
        );
        let nulls: usize = b.iter().map(|b| b.column(0).null_count()).sum();
        assert!((350..650).contains(&nulls), "{nulls}");
        assert_eq!(b.iter().map(|b| b.column(1).null_count()).sum::<usize>(), 0);
    }

    #[test]
    fn bad_options_are_named() {
        let err = |opts: &[(&str, &str)]| {
            open(opts, &[("id", DataType::BigInt)])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(err(&[("fields.nope.kind", "random")]).contains("`nope` is not a column"));
        assert!(err(&[("fields.id.kind", "sequence")]).contains("needs both 'start' and 'end'"));
        assert!(err(&[("fields.id.colour", "red")]).contains("unknown field option 'colour'"));
        assert!(err(&[("fields.id.kind", "weird")]).contains("'weird' is not random or sequence"));
        assert!(err(&[("rows-per-second", "fast")]).contains("'fast' is not a valid number"));
    }
}
