//! Flink's meaning of type names inside SQL expressions (`CAST(x AS ...)`), where DataFusion's
//! defaults differ: `TIMESTAMP` is `TIMESTAMP(6)`, `DECIMAL` is `DECIMAL(10, 0)`, `STRING`, `BYTES`
//! and `TIMESTAMP_LTZ(p)` exist.

use std::sync::Arc;

use arrow::datatypes::{DataType as ArrowType, Field, FieldRef, TimeUnit};
use datafusion::common::Result;
use datafusion::logical_expr::planner::TypePlanner;
use sqlparser::ast::{DataType as SqlType, ExactNumberInfo, TimezoneInfo};

/// DataFusion's hook for SQL type names.
#[derive(Debug, Default)]
pub struct FlinkTypes;

fn unit(precision: u64) -> TimeUnit {
    match precision {
        0..=3 => TimeUnit::Millisecond,
        4..=6 => TimeUnit::Microsecond,
        _ => TimeUnit::Nanosecond,
    }
}

impl FlinkTypes {
    /// The Arrow type of a SQL type name, where Flink's meaning differs from DataFusion's.
    pub fn arrow_type(sql: &SqlType) -> Option<ArrowType> {
        Some(match sql {
            SqlType::Timestamp(p, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
                ArrowType::Timestamp(unit(p.unwrap_or(6)), None)
            }
            SqlType::Timestamp(p, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => {
                ArrowType::Timestamp(unit(p.unwrap_or(6)), Some("UTC".into()))
            }
            SqlType::Decimal(ExactNumberInfo::None) | SqlType::Numeric(ExactNumberInfo::None) => {
                ArrowType::Decimal128(10, 0)
            }
            SqlType::Decimal(ExactNumberInfo::Precision(p))
            | SqlType::Numeric(ExactNumberInfo::Precision(p)) => {
                ArrowType::Decimal128(u8::try_from(*p).ok()?.clamp(1, 38), 0)
            }
            SqlType::String(_) => ArrowType::Utf8,
            SqlType::Bytes(_) => ArrowType::Binary,
            SqlType::Custom(name, params) => {
                let n = name.to_string().to_ascii_uppercase();
                match n.as_str() {
                    "TIMESTAMP_LTZ" => {
                        let p = params
                            .first()
                            .and_then(|p| p.parse::<u64>().ok())
                            .unwrap_or(6);
                        ArrowType::Timestamp(unit(p), Some("UTC".into()))
                    }
                    "STRING" => ArrowType::Utf8,
                    "BYTES" => ArrowType::Binary,
                    _ => return None,
                }
            }
            _ => return None,
        })
    }
}

impl TypePlanner for FlinkTypes {
    fn plan_type_field(&self, sql_type: &SqlType) -> Result<Option<FieldRef>> {
        Ok(Self::arrow_type(sql_type).map(|t| Arc::new(Field::new("", t, true))))
    }
}
