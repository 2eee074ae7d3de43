//! The `json` format (JSON lines), decoded straight into Arrow builders.
//!
//! Flink's rules: field names match columns case-sensitively; a missing field is NULL; extra fields
//! are ignored; numbers go into integer/float/decimal columns (numeric strings too); any scalar
//! into STRING (nested objects/arrays as their JSON text); BOOLEAN from `true`/`false` (or those
//! strings). TIMESTAMP columns accept `'YYYY-MM-DD HH:MM:SS[.fff]'`, ISO-8601 with `T` (optional `Z`
//! or offset), or epoch milliseconds as a JSON number. ARRAY/MAP/ROW columns are not supported
//! yet (an error at open names the column).
//!
//! Difference from Flink: a fractional number for an integer column is malformed (Flink truncates
//! it silently).
//!
//! The record is parsed by a serde visitor that looks keys up without allocating and stages values
//! in a reused buffer; the row is committed to the builders only when the whole line decoded.

use std::collections::HashMap;
use std::fmt;

use arrow::array::ArrayRef;
use arrow::error::ArrowError;
use fsql_plan::SourceSpec;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::builder::{Cell, ColumnBuilder, Kind, check_int, kind_name, parse_text};
use super::record_decoder::{RecordDecoder, builders};
use crate::error::RuntimeError;
use crate::text;

/// Decodes JSON lines into the physical columns of a table.
pub(crate) struct JsonDecoder {
    names: Vec<String>,
    kinds: Vec<Kind>,
    index: HashMap<String, usize>,
    staging: Vec<Cell>,
    strings: String,
    builders: Vec<ColumnBuilder>,
}

impl JsonDecoder {
    pub(crate) fn new(spec: &SourceSpec) -> Result<Self, RuntimeError> {
        let builders = builders(spec, "json")?;
        let kinds = spec
            .physical
            .fields
            .iter()
            .filter_map(|f| Kind::of(&f.data_type))
            .collect();
        let names: Vec<String> = spec
            .physical
            .fields
            .iter()
            .map(|f| f.name.clone())
            .collect();
        let index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        Ok(JsonDecoder {
            staging: vec![Cell::Absent; names.len()],
            names,
            kinds,
            index,
            strings: String::new(),
            builders,
        })
    }
}

impl RecordDecoder for JsonDecoder {
    fn stage(&mut self, line: &str) -> Result<bool, String> {
        if line.trim().is_empty() {
            return Ok(false);
        }
        self.strings.clear();
        for c in self.staging.iter_mut() {
            *c = Cell::Absent;
        }
        let mut de = serde_json::Deserializer::from_str(line);
        let seed = RowSeed { decoder: self };
        let parsed = seed.deserialize(&mut de).and_then(|()| de.end());
        if let Err(e) = parsed {
            return Err(describe(&e));
        }
        Ok(true)
    }

    fn stage_null(&mut self) {
        self.staging.fill(Cell::Absent);
    }

    fn commit(&mut self) {
        for (builder, cell) in self.builders.iter_mut().zip(self.staging.iter()) {
            builder.append(*cell, &self.strings);
        }
    }

    fn finish(&mut self) -> Result<Vec<ArrayRef>, ArrowError> {
        self.builders
            .iter_mut()
            .map(ColumnBuilder::finish)
            .collect()
    }
}

/// serde_json's message without its "at line 1" (a record is one line), with the column.
fn describe(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let base = match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg.as_str(),
    };
    let prefix = match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "invalid JSON: ",
        _ => "",
    };
    format!("{prefix}{base} (at column {})", e.column())
}

struct RowSeed<'a> {
    decoder: &'a mut JsonDecoder,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let d = self.decoder;
        // Records usually list their fields in the table's column order: the column after the
        // last one found is compared first, before the hash lookup.
        let mut guess = 0;
        while let Some(slot) = map.next_key_seed(KeySeed {
            index: &d.index,
            names: &d.names,
            guess,
        })? {
            match slot {
                Some(i) => {
                    guess = i + 1;
                    let kind = d.kinds[i];
                    let cell = map.next_value_seed(ValueSeed {
                        kind,
                        name: &d.names[i],
                        strings: &mut d.strings,
                    })?;
                    d.staging[i] = cell;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct KeySeed<'a> {
    index: &'a HashMap<String, usize>,
    names: &'a [String],
    /// The column the key most likely names.
    guess: usize,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<usize>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a field name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<usize>, E> {
        if self.names.get(self.guess).is_some_and(|n| n == v) {
            return Ok(Some(self.guess));
        }
        Ok(self.index.get(v).copied())
    }
}

struct ValueSeed<'a> {
    kind: Kind,
    name: &'a str,
    strings: &'a mut String,
}

impl ValueSeed<'_> {
    fn err<E: de::Error>(&self, what: &str) -> E {
        E::custom(format!(
            "column `{}`: expected {}, found {what}",
            self.name,
            kind_name(self.kind)
        ))
    }

    fn wrap<E: de::Error>(&self, r: Result<Cell, String>) -> Result<Cell, E> {
        r.map_err(|m| E::custom(format!("column `{}`: {m}", self.name)))
    }

    fn push_str(&mut self, s: &str) -> Cell {
        let start = self.strings.len();
        self.strings.push_str(s);
        Cell::Str(start, self.strings.len())
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Cell;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Cell, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Cell;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} value", kind_name(self.kind))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Cell, E> {
        Ok(Cell::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Cell, E> {
        Ok(Cell::Null)
    }

    fn visit_bool<E: de::Error>(mut self, v: bool) -> Result<Cell, E> {
        match self.kind {
            Kind::Boolean => Ok(Cell::Bool(v)),
            Kind::String => Ok(self.push_str(if v { "true" } else { "false" })),
            _ => Err(self.err("a boolean")),
        }
    }

    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<Cell, E> {
        match self.kind {
            Kind::TinyInt | Kind::SmallInt | Kind::Int | Kind::BigInt | Kind::IntervalMs => {
                self.wrap(check_int(self.kind, v))
            }
            Kind::Float | Kind::Double => Ok(Cell::Float(v as f64)),
            Kind::Decimal { precision, scale } => {
                let r = text::parse_decimal(&v.to_string(), precision, scale)
                    .map(Cell::Decimal)
                    .ok_or_else(|| format!("{v} does not fit DECIMAL({precision}, {scale})"));
                self.wrap(r)
            }
            Kind::String => Ok(self.push_str(&v.to_string())),
            Kind::Timestamp(unit) => {
                // Epoch milliseconds.
                let secs = v.div_euclid(1000);
                let nanos = (v.rem_euclid(1000) * 1_000_000) as u32;
                text::join_timestamp(secs, nanos, unit)
                    .map(Cell::Int)
                    .ok_or_else(|| {
                        E::custom(format!("column `{}`: {v} ms is out of range", self.name))
                    })
            }
            _ => Err(self.err("a number")),
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Cell, E> {
        match i64::try_from(v) {
            Ok(v) => self.visit_i64(v),
            Err(_) => match self.kind {
                Kind::Float | Kind::Double => Ok(Cell::Float(v as f64)),
                _ => Err(E::custom(format!(
                    "column `{}`: {v} is out of range for {}",
                    self.name,
                    kind_name(self.kind)
                ))),
            },
        }
    }

    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<Cell, E> {
        match self.kind {
            Kind::Float | Kind::Double => Ok(Cell::Float(v)),
            Kind::Decimal { precision, scale } => {
                let mut s = String::new();
                text::format_java_double(v, &mut s);
                let r = text::parse_decimal(&s, precision, scale)
                    .map(Cell::Decimal)
                    .ok_or_else(|| format!("{s} does not fit DECIMAL({precision}, {scale})"));
                self.wrap(r)
            }
            Kind::TinyInt | Kind::SmallInt | Kind::Int | Kind::BigInt | Kind::IntervalMs => {
                if v.fract() == 0.0 && v.abs() < 9.2e18 {
                    self.wrap(check_int(self.kind, v as i64))
                } else {
                    Err(self.err(&format!("the fractional number {v}")))
                }
            }
            Kind::String => {
                let mut s = String::new();
                text::format_java_double(v, &mut s);
                Ok(self.push_str(&s))
            }
            Kind::Timestamp(_) if v.fract() == 0.0 && v.abs() < 9.2e18 => self.visit_i64(v as i64),
            _ => Err(self.err("a number")),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Cell, E> {
        let kind = self.kind;
        let r = parse_text(kind, v, self.strings);
        self.wrap(r)
    }

    fn visit_map<A: MapAccess<'de>>(mut self, map: A) -> Result<Cell, A::Error> {
        if self.kind != Kind::String {
            return Err(self.err("an object"));
        }
        let value: serde_json::Value =
            de::Deserialize::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(self.push_str(&value.to_string()))
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, seq: A) -> Result<Cell, A::Error> {
        if self.kind != Kind::String {
            return Err(self.err("an array"));
        }
        let value: serde_json::Value =
            de::Deserialize::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(self.push_str(&value.to_string()))
    }
}
