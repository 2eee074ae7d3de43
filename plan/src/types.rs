//! SQL types as Flink names them, and their Arrow representation.

use std::fmt;

use arrow_schema::{DataType as ArrowType, Field as ArrowField, TimeUnit};
use serde::{Deserialize, Serialize};

/// A SQL data type in Flink's vocabulary.
///
/// Each maps to exactly one Arrow type ([`DataType::to_arrow`]), the runtime's in-memory form.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DataType {
    /// The type of an untyped `NULL` literal.
    Null,
    Boolean,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Float,
    Double,
    Decimal {
        precision: u8,
        scale: i8,
    },
    /// `STRING` / `VARCHAR(n)`; the length is kept for display only (Flink does not truncate on read).
    String,
    Bytes,
    Date,
    /// `TIME(p)`: milliseconds of the day.
    Time,
    /// `TIMESTAMP(p)`: a wall-clock timestamp without time zone.
    Timestamp {
        precision: u8,
    },
    /// `TIMESTAMP_LTZ(p)`: an instant, shown in the session time zone (UTC in fsql).
    TimestampLtz {
        precision: u8,
    },
    /// `INTERVAL DAY TO SECOND`, held as milliseconds.
    IntervalDayTime,
    /// `INTERVAL YEAR TO MONTH`, held as months.
    IntervalYearMonth,
    Array(Box<DataType>),
    Map(Box<DataType>, Box<DataType>),
    Row(Vec<Field>),
}

impl DataType {
    /// Whether the type is one of the integer or floating point or decimal types.
    pub fn is_numeric(&self) -> bool {
        matches!(
            self,
            DataType::TinyInt
                | DataType::SmallInt
                | DataType::Int
                | DataType::BigInt
                | DataType::Float
                | DataType::Double
                | DataType::Decimal { .. }
        )
    }

    /// Whether the type can be an event-time attribute (`WATERMARK FOR` column).
    pub fn is_timestamp(&self) -> bool {
        matches!(
            self,
            DataType::Timestamp { .. } | DataType::TimestampLtz { .. }
        )
    }

    /// The Arrow type the runtime uses for values of this type.
    pub fn to_arrow(&self) -> ArrowType {
        fn unit(precision: u8) -> TimeUnit {
            match precision {
                0..=3 => TimeUnit::Millisecond,
                4..=6 => TimeUnit::Microsecond,
                _ => TimeUnit::Nanosecond,
            }
        }
        match self {
            DataType::Null => ArrowType::Null,
            DataType::Boolean => ArrowType::Boolean,
            DataType::TinyInt => ArrowType::Int8,
            DataType::SmallInt => ArrowType::Int16,
            DataType::Int => ArrowType::Int32,
            DataType::BigInt => ArrowType::Int64,
            DataType::Float => ArrowType::Float32,
            DataType::Double => ArrowType::Float64,
            DataType::Decimal { precision, scale } => ArrowType::Decimal128(*precision, *scale),
            DataType::String => ArrowType::Utf8,
            DataType::Bytes => ArrowType::Binary,
            DataType::Date => ArrowType::Date32,
            DataType::Time => ArrowType::Time32(TimeUnit::Millisecond),
            DataType::Timestamp { precision } => ArrowType::Timestamp(unit(*precision), None),
            DataType::TimestampLtz { precision } => {
                ArrowType::Timestamp(unit(*precision), Some("UTC".into()))
            }
            DataType::IntervalDayTime => ArrowType::Duration(TimeUnit::Millisecond),
            DataType::IntervalYearMonth => {
                ArrowType::Interval(arrow_schema::IntervalUnit::YearMonth)
            }
            DataType::Array(item) => {
                ArrowType::List(ArrowField::new("element", item.to_arrow(), true).into())
            }
            DataType::Map(key, value) => {
                let entries = ArrowField::new(
                    "entries",
                    ArrowType::Struct(
                        vec![
                            ArrowField::new("key", key.to_arrow(), false),
                            ArrowField::new("value", value.to_arrow(), true),
                        ]
                        .into(),
                    ),
                    false,
                );
                ArrowType::Map(entries.into(), false)
            }
            DataType::Row(fields) => ArrowType::Struct(
                fields
                    .iter()
                    .map(|f| ArrowField::new(&f.name, f.data_type.to_arrow(), f.nullable))
                    .collect::<Vec<_>>()
                    .into(),
            ),
        }
    }

    /// The fsql type of an Arrow type, for the types fsql supports.
    pub fn from_arrow(t: &ArrowType) -> Option<DataType> {
        fn precision(u: &TimeUnit) -> u8 {
            match u {
                TimeUnit::Second => 0,
                TimeUnit::Millisecond => 3,
                TimeUnit::Microsecond => 6,
                TimeUnit::Nanosecond => 9,
            }
        }
        Some(match t {
            ArrowType::Null => DataType::Null,
            ArrowType::Boolean => DataType::Boolean,
            ArrowType::Int8 => DataType::TinyInt,
            ArrowType::Int16 => DataType::SmallInt,
            ArrowType::Int32 => DataType::Int,
            ArrowType::Int64 => DataType::BigInt,
            ArrowType::Float32 => DataType::Float,
            ArrowType::Float64 => DataType::Double,
            ArrowType::Decimal128(p, s) => DataType::Decimal {
                precision: *p,
                scale: *s,
            },
            ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View => DataType::String,
            ArrowType::Binary | ArrowType::LargeBinary | ArrowType::BinaryView => DataType::Bytes,
            ArrowType::Date32 => DataType::Date,
            ArrowType::Time32(_) | ArrowType::Time64(_) => DataType::Time,
            ArrowType::Timestamp(u, None) => DataType::Timestamp {
                precision: precision(u),
            },
            ArrowType::Timestamp(u, Some(_)) => DataType::TimestampLtz {
                precision: precision(u),
            },
            ArrowType::Duration(_) => DataType::IntervalDayTime,
            ArrowType::Interval(arrow_schema::IntervalUnit::YearMonth) => {
                DataType::IntervalYearMonth
            }
            ArrowType::Interval(_) => DataType::IntervalDayTime,
            ArrowType::List(f) | ArrowType::LargeList(f) => {
                DataType::Array(Box::new(DataType::from_arrow(f.data_type())?))
            }
            ArrowType::Map(entries, _) => match entries.data_type() {
                ArrowType::Struct(kv) if kv.len() == 2 => DataType::Map(
                    Box::new(DataType::from_arrow(kv[0].data_type())?),
                    Box::new(DataType::from_arrow(kv[1].data_type())?),
                ),
                _ => return None,
            },
            ArrowType::Struct(fields) => DataType::Row(
                fields
                    .iter()
                    .map(|f| {
                        Some(Field::new(
                            f.name(),
                            DataType::from_arrow(f.data_type())?,
                            f.is_nullable(),
                        ))
                    })
                    .collect::<Option<Vec<_>>>()?,
            ),
            _ => return None,
        })
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataType::Null => write!(f, "NULL"),
            DataType::Boolean => write!(f, "BOOLEAN"),
            DataType::TinyInt => write!(f, "TINYINT"),
            DataType::SmallInt => write!(f, "SMALLINT"),
            DataType::Int => write!(f, "INT"),
            DataType::BigInt => write!(f, "BIGINT"),
            DataType::Float => write!(f, "FLOAT"),
            DataType::Double => write!(f, "DOUBLE"),
            DataType::Decimal { precision, scale } => write!(f, "DECIMAL({precision}, {scale})"),
            DataType::String => write!(f, "STRING"),
            DataType::Bytes => write!(f, "BYTES"),
            DataType::Date => write!(f, "DATE"),
            DataType::Time => write!(f, "TIME(3)"),
            DataType::Timestamp { precision } => write!(f, "TIMESTAMP({precision})"),
            DataType::TimestampLtz { precision } => write!(f, "TIMESTAMP_LTZ({precision})"),
            DataType::IntervalDayTime => write!(f, "INTERVAL DAY TO SECOND"),
            DataType::IntervalYearMonth => write!(f, "INTERVAL YEAR TO MONTH"),
            DataType::Array(t) => write!(f, "ARRAY<{t}>"),
            DataType::Map(k, v) => write!(f, "MAP<{k}, {v}>"),
            DataType::Row(fields) => {
                write!(f, "ROW<")?;
                for (i, field) in fields.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "`{}` {}", field.name, field.data_type)?;
                    if !field.nullable {
                        write!(f, " NOT NULL")?;
                    }
                }
                write!(f, ">")
            }
        }
    }
}

/// A named, typed column.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    pub data_type: DataType,
    pub nullable: bool,
}

impl Field {
    pub fn new(name: impl Into<String>, data_type: DataType, nullable: bool) -> Self {
        Field {
            name: name.into(),
            data_type,
            nullable,
        }
    }
}

/// The columns of a relation, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Schema {
    pub fields: Vec<Field>,
}

impl Schema {
    pub fn new(fields: Vec<Field>) -> Self {
        Schema { fields }
    }

    /// The position of the column called `name` (case-sensitive, as Flink resolves identifiers).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// The Arrow schema of batches of this relation.
    pub fn to_arrow(&self) -> arrow_schema::Schema {
        arrow_schema::Schema::new(
            self.fields
                .iter()
                .map(|f| ArrowField::new(&f.name, f.data_type.to_arrow(), f.nullable))
                .collect::<Vec<_>>(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrow_round_trip_keeps_flink_types() {
        let types = [
            DataType::Boolean,
            DataType::BigInt,
            DataType::Decimal {
                precision: 10,
                scale: 2,
            },
            DataType::String,
            DataType::Timestamp { precision: 3 },
            DataType::TimestampLtz { precision: 3 },
            DataType::Array(Box::new(DataType::Int)),
            DataType::Map(Box::new(DataType::String), Box::new(DataType::Double)),
        ];
        for t in types {
            assert_eq!(DataType::from_arrow(&t.to_arrow()), Some(t.clone()), "{t}");
        }
    }

    #[test]
    fn display_uses_flink_names() {
        assert_eq!(
            DataType::TimestampLtz { precision: 3 }.to_string(),
            "TIMESTAMP_LTZ(3)"
        );
        assert_eq!(
            DataType::Map(Box::new(DataType::String), Box::new(DataType::BigInt)).to_string(),
            "MAP<STRING, BIGINT>"
        );
    }
}
