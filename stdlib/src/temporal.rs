//! Date and time functions: EXTRACT (`date_part`) and its shorthands (YEAR, HOUR...), parsing and
//! formatting with Java patterns (TO_TIMESTAMP, TO_DATE, DATE_FORMAT, UNIX_TIMESTAMP, FROM_UNIXTIME),
//! TO_TIMESTAMP_LTZ and TIMESTAMPDIFF.
//!
//! fsql's session time zone is always UTC, so a TIMESTAMP_LTZ is read as its UTC wall clock and a
//! TIMESTAMP as itself; every timestamp unit is accepted.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Int32Array, Int64Array, TimestampMillisecondArray,
};
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Time32MillisecondType, Time32SecondType,
    Time64MicrosecondType, Time64NanosecondType, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

use crate::args::{Utf8Out, arity, float64, int64, invalid, is_string, rows, utf8};
use crate::javafmt::{Dialect, Pattern, parse_flink_date, parse_flink_timestamp};
use crate::{Function, KernelError, Signature};

/// Days from 0001-01-01 (chrono's day 1 of the common era) to 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;
/// Flink's range for TO_TIMESTAMP_LTZ: 0001-01-01 00:00:00.000 ..= 9999-12-31 23:59:59.999 (UTC).
const MIN_EPOCH_MILLIS: i64 = -62_135_596_800_000;
const MAX_EPOCH_MILLIS: i64 = 253_402_300_799_999;
const DEFAULT_FORMAT: &str = "yyyy-MM-dd HH:mm:ss";

const TS_MS: DataType = DataType::Timestamp(TimeUnit::Millisecond, None);

fn ts_ltz_ms() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

pub(crate) fn register(out: &mut Vec<Function>) {
    use DataType::{Float64, Int64, Utf8};
    out.push(Function {
        name: "date_part",
        doc: "EXTRACT(field FROM t) / DATE_PART('field', t): a field of a date, time or timestamp as BIGINT \
              (year, quarter, month, week (ISO), day, doy, dow (1 = Sunday), isodow, hour, minute, second, \
              millisecond, microsecond, nanosecond, epoch (seconds), decade, century, millennium, isoyear).",
        signature: Signature::Any(2),
        return_type: date_part_type,
        kernel: date_part,
        scalar: None,
    });
    macro_rules! extractor {
        ($name:literal, $field:expr, $doc:literal) => {{
            fn kernel(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
                extract_kernel($name, $field, args, n)
            }
            /// # Safety
            /// `valid` must be writable.
            unsafe extern "C" fn scalar(value: i64, unit: u8, valid: *mut u8) -> i64 {
                let field = field_of_timestamp($field, value, unit);
                // SAFETY: the caller guarantees `valid` is writable.
                unsafe { valid.write(u8::from(field.is_some())) };
                field.unwrap_or(0)
            }
            out.push(Function {
                name: $name,
                doc: $doc,
                signature: Signature::Any(1),
                return_type: extractor_type,
                kernel,
                scalar: Some(crate::Scalar::TimestampToBigInt(scalar)),
            });
        }};
    }
    extractor!(
        "year",
        Field::Year,
        "YEAR(t): the year of a date or timestamp, as BIGINT."
    );
    extractor!(
        "quarter",
        Field::Quarter,
        "QUARTER(t): the quarter (1-4) of a date or timestamp."
    );
    extractor!(
        "month",
        Field::Month,
        "MONTH(t): the month (1-12) of a date or timestamp."
    );
    extractor!(
        "week",
        Field::Week,
        "WEEK(t): the ISO 8601 week of the year (1-53)."
    );
    extractor!(
        "dayofmonth",
        Field::Day,
        "DAYOFMONTH(t): the day of the month (1-31)."
    );
    extractor!(
        "dayofweek",
        Field::DayOfWeek,
        "DAYOFWEEK(t): the day of the week, 1 = Sunday .. 7 = Saturday."
    );
    extractor!(
        "dayofyear",
        Field::DayOfYear,
        "DAYOFYEAR(t): the day of the year (1-366)."
    );
    extractor!("hour", Field::Hour, "HOUR(t): the hour of the day (0-23).");
    extractor!(
        "minute",
        Field::Minute,
        "MINUTE(t): the minute of the hour (0-59)."
    );
    extractor!(
        "second",
        Field::Second,
        "SECOND(t): the second of the minute (0-59), without fraction."
    );
    out.push(Function {
        name: "to_timestamp",
        doc: "TO_TIMESTAMP(s[, format]): parses a string into TIMESTAMP(3); default format \
              'yyyy-MM-dd HH:mm:ss[.fraction]' (fsql also accepts 'T' before the time); Java \
              DateTimeFormatter patterns; NULL when the string does not parse.",
        signature: Signature::OneOf(vec![vec![Utf8], vec![Utf8, Utf8]]),
        return_type: |_| Ok(TS_MS),
        kernel: to_timestamp,
        scalar: None,
    });
    out.push(Function {
        name: "to_timestamp_ltz",
        doc: "TO_TIMESTAMP_LTZ(n[, precision]): epoch seconds (precision 0), milliseconds (3, the default), \
              microseconds (6) or nanoseconds (9) to TIMESTAMP_LTZ(3); NULL outside years 1..9999.",
        signature: Signature::OneOf(vec![
            vec![Int64],
            vec![Int64, Int64],
            vec![Float64],
            vec![Float64, Int64],
        ]),
        return_type: |_| Ok(ts_ltz_ms()),
        kernel: to_timestamp_ltz,
        scalar: None,
    });
    out.push(Function {
        name: "to_date",
        doc: "TO_DATE(s[, format]): parses 'yyyy-MM-dd' (or a Java SimpleDateFormat pattern) into a DATE; \
              NULL when the string does not parse.",
        signature: Signature::OneOf(vec![vec![Utf8], vec![Utf8, Utf8]]),
        return_type: |_| Ok(DataType::Date32),
        kernel: to_date,
        scalar: None,
    });
    out.push(Function {
        name: "date_format",
        doc: "DATE_FORMAT(t, format): formats a timestamp (or a 'yyyy-MM-dd HH:mm:ss' string) with a Java \
              date pattern, in UTC.",
        signature: Signature::Any(2),
        return_type: date_format_type,
        kernel: date_format,
        scalar: None,
    });
    out.push(Function {
        name: "unix_timestamp",
        doc: "UNIX_TIMESTAMP(s[, format]): seconds since 1970-01-01 UTC of a string in format \
              (default 'yyyy-MM-dd HH:mm:ss', Java SimpleDateFormat, lenient); -9223372036854775808 \
              when it does not parse, as in Flink.",
        signature: Signature::OneOf(vec![vec![Utf8], vec![Utf8, Utf8]]),
        return_type: |_| Ok(DataType::Int64),
        kernel: unix_timestamp,
        scalar: None,
    });
    out.push(Function {
        name: "from_unixtime",
        doc: "FROM_UNIXTIME(seconds[, format]): formats epoch seconds in UTC (default 'yyyy-MM-dd HH:mm:ss').",
        signature: Signature::OneOf(vec![vec![Int64], vec![Int64, Utf8]]),
        return_type: |_| Ok(DataType::Utf8),
        kernel: from_unixtime,
        scalar: None,
    });
    out.push(Function {
        name: "timestampdiff",
        doc: "TIMESTAMPDIFF(unit, t1, t2): whole units from t1 to t2 as INT, truncated toward zero; unit is \
              'SECOND', 'MINUTE', 'HOUR', 'DAY', 'WEEK', 'MONTH', 'QUARTER' or 'YEAR'.",
        signature: Signature::Any(3),
        return_type: timestampdiff_type,
        kernel: timestampdiff,
        scalar: None,
    });
}

/// Whether `t` can be read as a date-time.
fn is_temporal(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Timestamp(_, _)
            | DataType::Date32
            | DataType::Date64
            | DataType::Time32(_)
            | DataType::Time64(_)
            | DataType::Null
    )
}

fn extractor_type(types: &[DataType]) -> Result<DataType, String> {
    match types {
        [t] if is_temporal(t) => Ok(DataType::Int64),
        [t] => Err(format!("expects a date, time or timestamp, got {t}")),
        _ => Err(format!("expects 1 argument, got {}", types.len())),
    }
}

fn date_part_type(types: &[DataType]) -> Result<DataType, String> {
    match types {
        [f, t] if (is_string(f) || f == &DataType::Null) && is_temporal(t) => Ok(DataType::Int64),
        [f, t] => Err(format!(
            "expects (field string, date/time/timestamp), got ({f}, {t})"
        )),
        _ => Err(format!("expects 2 arguments, got {}", types.len())),
    }
}

fn date_format_type(types: &[DataType]) -> Result<DataType, String> {
    match types {
        [t, f] if (is_temporal(t) || is_string(t)) && (is_string(f) || f == &DataType::Null) => {
            Ok(DataType::Utf8)
        }
        [t, f] => Err(format!(
            "expects (timestamp or string, format string), got ({t}, {f})"
        )),
        _ => Err(format!("expects 2 arguments, got {}", types.len())),
    }
}

fn timestampdiff_type(types: &[DataType]) -> Result<DataType, String> {
    match types {
        [u, a, b] if (is_string(u) || u == &DataType::Null) && is_temporal(a) && is_temporal(b) => {
            Ok(DataType::Int32)
        }
        [u, a, b] => Err(format!(
            "expects (unit string, timestamp, timestamp), got ({u}, {a}, {b})"
        )),
        _ => Err(format!("expects 3 arguments, got {}", types.len())),
    }
}

fn from_days(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt(days.checked_add(UNIX_EPOCH_DAYS_FROM_CE)?)
}

fn days_of(date: NaiveDate) -> i32 {
    date.num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE
}

fn from_epoch(v: i64, unit: TimeUnit) -> Option<NaiveDateTime> {
    let dt = match unit {
        TimeUnit::Second => DateTime::from_timestamp(v, 0),
        TimeUnit::Millisecond => DateTime::from_timestamp_millis(v),
        TimeUnit::Microsecond => DateTime::from_timestamp_micros(v),
        TimeUnit::Nanosecond => Some(DateTime::from_timestamp_nanos(v)),
    };
    dt.map(|d| d.naive_utc())
}

fn time_of_day(nanos: i64) -> Option<NaiveDateTime> {
    let secs = u32::try_from(nanos.div_euclid(1_000_000_000)).ok()?;
    let frac = u32::try_from(nanos.rem_euclid(1_000_000_000)).ok()?;
    let time = NaiveTime::from_num_seconds_from_midnight_opt(secs, frac)?;
    Some(NaiveDate::from_ymd_opt(1970, 1, 1)?.and_time(time))
}

/// The `index`-th argument read row by row as a wall-clock date-time (UTC for TIMESTAMP_LTZ, midnight
/// for a DATE, 1970-01-01 for a TIME). Values outside chrono's range read as NULL.
fn datetimes(
    function: &'static str,
    args: &[ArrayRef],
    index: usize,
) -> Result<Vec<Option<NaiveDateTime>>, KernelError> {
    let a = args.get(index).ok_or_else(|| KernelError::Arity {
        function,
        expected: format!("at least {}", index + 1),
        got: args.len(),
    })?;
    macro_rules! map {
        ($t:ty, $f:expr) => {
            a.as_primitive::<$t>()
                .iter()
                .map(|v| v.and_then($f))
                .collect()
        };
    }
    Ok(match a.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => {
            map!(TimestampSecondType, |v| from_epoch(v, TimeUnit::Second))
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            map!(TimestampMillisecondType, |v| from_epoch(
                v,
                TimeUnit::Millisecond
            ))
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            map!(TimestampMicrosecondType, |v| from_epoch(
                v,
                TimeUnit::Microsecond
            ))
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            map!(TimestampNanosecondType, |v| from_epoch(
                v,
                TimeUnit::Nanosecond
            ))
        }
        DataType::Date32 => map!(Date32Type, |d| from_days(d)
            .and_then(|d| d.and_hms_opt(0, 0, 0))),
        DataType::Date64 => map!(Date64Type, |v| from_epoch(v, TimeUnit::Millisecond)),
        DataType::Time32(TimeUnit::Second) => {
            map!(Time32SecondType, |v| time_of_day(
                i64::from(v) * 1_000_000_000
            ))
        }
        DataType::Time32(TimeUnit::Millisecond) => {
            map!(Time32MillisecondType, |v| time_of_day(
                i64::from(v) * 1_000_000
            ))
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            map!(Time64MicrosecondType, |v: i64| time_of_day(
                v.checked_mul(1000)?
            ))
        }
        DataType::Time64(TimeUnit::Nanosecond) => map!(Time64NanosecondType, time_of_day),
        DataType::Null => vec![None; a.len()],
        t => {
            return Err(KernelError::ArgType {
                function,
                index,
                expected: "a date, time or timestamp",
                actual: t.clone(),
            });
        }
    })
}

fn epoch_millis(dt: &NaiveDateTime) -> i64 {
    dt.and_utc().timestamp_millis()
}

/// A field EXTRACT can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Year,
    Quarter,
    Month,
    Week,
    Day,
    DayOfYear,
    DayOfWeek,
    IsoDayOfWeek,
    Hour,
    Minute,
    Second,
    Millisecond,
    Microsecond,
    Nanosecond,
    Epoch,
    Decade,
    Century,
    Millennium,
    IsoYear,
}

impl Field {
    fn parse(name: &str) -> Option<Field> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "year" | "years" => Field::Year,
            "quarter" | "quarters" => Field::Quarter,
            "month" | "months" => Field::Month,
            "week" | "weeks" => Field::Week,
            "day" | "days" | "dayofmonth" => Field::Day,
            "doy" | "dayofyear" => Field::DayOfYear,
            "dow" | "dayofweek" => Field::DayOfWeek,
            "isodow" => Field::IsoDayOfWeek,
            "hour" | "hours" => Field::Hour,
            "minute" | "minutes" => Field::Minute,
            "second" | "seconds" => Field::Second,
            "millisecond" | "milliseconds" => Field::Millisecond,
            "microsecond" | "microseconds" => Field::Microsecond,
            "nanosecond" | "nanoseconds" => Field::Nanosecond,
            "epoch" => Field::Epoch,
            "decade" | "decades" => Field::Decade,
            "century" | "centuries" => Field::Century,
            "millennium" | "millenniums" | "millennia" => Field::Millennium,
            "isoyear" => Field::IsoYear,
            _ => return None,
        })
    }

    /// The field's value, with Flink's conventions (DOW 1 = Sunday, MILLISECOND within the second,
    /// EPOCH truncated toward zero).
    fn of(self, dt: &NaiveDateTime) -> i64 {
        let year = i64::from(dt.year());
        let nanos = i64::from(dt.nanosecond() % 1_000_000_000);
        match self {
            Field::Year => year,
            Field::Quarter => i64::from((dt.month() - 1) / 3 + 1),
            Field::Month => i64::from(dt.month()),
            Field::Week => i64::from(dt.iso_week().week()),
            Field::Day => i64::from(dt.day()),
            Field::DayOfYear => i64::from(dt.ordinal()),
            Field::DayOfWeek => i64::from(dt.weekday().num_days_from_sunday()) + 1,
            Field::IsoDayOfWeek => i64::from(dt.weekday().number_from_monday()),
            Field::Hour => i64::from(dt.hour()),
            Field::Minute => i64::from(dt.minute()),
            Field::Second => i64::from(dt.second()),
            Field::Millisecond => nanos / 1_000_000,
            Field::Microsecond => nanos / 1_000,
            Field::Nanosecond => nanos,
            Field::Epoch => epoch_millis(dt) / 1000,
            Field::Decade => year / 10,
            Field::Century => {
                if year > 0 {
                    (year + 99) / 100
                } else {
                    (year - 99) / 100
                }
            }
            Field::Millennium => {
                if year > 0 {
                    (year + 999) / 1000
                } else {
                    (year - 999) / 1000
                }
            }
            Field::IsoYear => i64::from(dt.iso_week().year()),
        }
    }
}

/// `field` of the timestamp `value` in unit `unit` (0 s, 1 ms, 2 µs, 3 ns), as the kernel reads
/// it (`None`: outside the calendar's range, or an unknown unit).
fn field_of_timestamp(field: Field, value: i64, unit: u8) -> Option<i64> {
    let unit = match unit {
        0 => TimeUnit::Second,
        1 => TimeUnit::Millisecond,
        2 => TimeUnit::Microsecond,
        3 => TimeUnit::Nanosecond,
        _ => return None,
    };
    from_epoch(value, unit).map(|dt| field.of(&dt))
}

fn extract_kernel(
    function: &'static str,
    field: Field,
    args: &[ArrayRef],
    n: usize,
) -> Result<ArrayRef, KernelError> {
    arity(function, args, &[1])?;
    rows(function, args, n)?;
    let values = datetimes(function, args, 0)?;
    Ok(Arc::new(Int64Array::from_iter(
        values.iter().map(|v| v.as_ref().map(|dt| field.of(dt))),
    )))
}

fn date_part(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    const F: &str = "date_part";
    arity(F, args, &[2])?;
    rows(F, args, n)?;
    let fields = utf8(F, args, 0)?;
    let values = datetimes(F, args, 1)?;
    let mut last: Option<(&str, Field)> = None;
    let mut out = Vec::with_capacity(n);
    for (name, value) in fields.iter().zip(values.iter()) {
        let (Some(name), Some(dt)) = (name, value) else {
            out.push(None);
            continue;
        };
        let field = match last {
            Some((l, f)) if l == name => f,
            _ => {
                let f = Field::parse(name)
                    .ok_or_else(|| invalid(F, format!("unknown field '{name}' for EXTRACT")))?;
                last = Some((name, f));
                f
            }
        };
        out.push(Some(field.of(dt)));
    }
    Ok(Arc::new(Int64Array::from(out)))
}

/// Compiles Java patterns, remembering the last one (formats are nearly always constant).
struct PatternCache {
    function: &'static str,
    dialect: Dialect,
    last: Option<(String, Pattern)>,
}

impl PatternCache {
    fn new(function: &'static str, dialect: Dialect) -> Self {
        PatternCache {
            function,
            dialect,
            last: None,
        }
    }

    fn get(&mut self, pattern: &str) -> Result<&Pattern, KernelError> {
        let stale = !matches!(&self.last, Some((p, _)) if p == pattern);
        if stale {
            let compiled =
                Pattern::compile(pattern, self.dialect).map_err(|m| invalid(self.function, m))?;
            self.last = Some((pattern.to_string(), compiled));
        }
        match &self.last {
            Some((_, p)) => Ok(p),
            None => Err(invalid(self.function, "pattern cache is empty")),
        }
    }
}

/// Maps each row's (string, optional format) through `f`; NULL in, NULL out.
fn per_string_with_format<T>(
    function: &'static str,
    args: &[ArrayRef],
    n: usize,
    dialect: Dialect,
    mut f: impl FnMut(&str, Option<&Pattern>) -> Option<T>,
) -> Result<Vec<Option<T>>, KernelError> {
    arity(function, args, &[1, 2])?;
    rows(function, args, n)?;
    let s = utf8(function, args, 0)?;
    let fmt = if args.len() == 2 {
        Some(utf8(function, args, 1)?)
    } else {
        None
    };
    let mut cache = PatternCache::new(function, dialect);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        if s.is_null(i) || fmt.as_ref().is_some_and(|f| f.is_null(i)) {
            out.push(None);
            continue;
        }
        let pattern = match &fmt {
            Some(f) => Some(cache.get(f.value(i))?),
            None => None,
        };
        out.push(f(s.value(i), pattern));
    }
    Ok(out)
}

fn to_timestamp(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    let out = per_string_with_format("to_timestamp", args, n, Dialect::Modern, |s, p| {
        let dt = match p {
            // Like Flink: when the pattern does not match, fall back to the default format.
            Some(p) => p.parse(s).or_else(|| parse_flink_timestamp(s.trim())),
            None => parse_flink_timestamp(s),
        };
        dt.map(|dt| epoch_millis(&dt))
    })?;
    Ok(Arc::new(TimestampMillisecondArray::from(out)))
}

fn to_date(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    let out = per_string_with_format("to_date", args, n, Dialect::Legacy, |s, p| match p {
        Some(p) => p.parse(s).map(|dt| days_of(dt.date())),
        None => parse_flink_date(s).map(days_of),
    })?;
    Ok(Arc::new(Date32Array::from(out)))
}

fn unix_timestamp(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    let default = Pattern::compile(DEFAULT_FORMAT, Dialect::Legacy)
        .map_err(|m| invalid("unix_timestamp", m))?;
    let out = per_string_with_format("unix_timestamp", args, n, Dialect::Legacy, |s, p| {
        let parsed = p.unwrap_or(&default).parse(s);
        // Flink returns Long.MIN_VALUE for a string that does not parse.
        Some(parsed.map_or(i64::MIN, |dt| epoch_millis(&dt) / 1000))
    })?;
    Ok(Arc::new(Int64Array::from(out)))
}

fn from_unixtime(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    const F: &str = "from_unixtime";
    arity(F, args, &[1, 2])?;
    rows(F, args, n)?;
    let secs = int64(F, args, 0)?;
    let fmt = if args.len() == 2 {
        Some(utf8(F, args, 1)?)
    } else {
        None
    };
    let mut cache = PatternCache::new(F, Dialect::Legacy);
    let mut out = Utf8Out::new(F, n);
    for i in 0..n {
        if secs.is_null(i) || fmt.as_ref().is_some_and(|f| f.is_null(i)) {
            out.push_null();
            continue;
        }
        let pattern = cache.get(fmt.as_ref().map_or(DEFAULT_FORMAT, |f| f.value(i)))?;
        let dt = secs
            .value(i)
            .checked_mul(1000)
            .and_then(|ms| from_epoch(ms, TimeUnit::Millisecond));
        match dt {
            Some(dt) => out.push(&pattern.format(&dt))?,
            None => out.push_null(),
        }
    }
    Ok(out.finish())
}

fn date_format(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    const F: &str = "date_format";
    arity(F, args, &[2])?;
    rows(F, args, n)?;
    let fmt = utf8(F, args, 1)?;
    let mut out = Utf8Out::new(F, n);
    if args.first().is_some_and(|a| is_string(a.data_type())) {
        // Flink parses the string with SimpleDateFormat('yyyy-MM-dd HH:mm:ss') and formats it with
        // SimpleDateFormat too.
        let s = utf8(F, args, 0)?;
        let from = Pattern::compile(DEFAULT_FORMAT, Dialect::Legacy).map_err(|m| invalid(F, m))?;
        let mut cache = PatternCache::new(F, Dialect::Legacy);
        for i in 0..n {
            if s.is_null(i) || fmt.is_null(i) {
                out.push_null();
                continue;
            }
            let to = cache.get(fmt.value(i))?;
            match from.parse(s.value(i)) {
                Some(dt) => out.push(&to.format(&dt))?,
                None => out.push_null(),
            }
        }
    } else {
        let values = datetimes(F, args, 0)?;
        let mut cache = PatternCache::new(F, Dialect::Modern);
        for (i, v) in values.iter().enumerate() {
            match v {
                Some(dt) if fmt.is_valid(i) => out.push(&cache.get(fmt.value(i))?.format(dt))?,
                _ => out.push_null(),
            }
        }
    }
    Ok(out.finish())
}

fn to_timestamp_ltz(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    const F: &str = "to_timestamp_ltz";
    arity(F, args, &[1, 2])?;
    rows(F, args, n)?;
    let precision = if args.len() == 2 {
        Some(int64(F, args, 1)?)
    } else {
        None
    };
    let precision_at = |i: usize| -> Result<Option<i64>, KernelError> {
        match &precision {
            None => Ok(Some(3)),
            Some(p) if p.is_null(i) => Ok(None),
            Some(p) => match p.value(i) {
                v @ (0 | 3 | 6 | 9) => Ok(Some(v)),
                v => Err(invalid(
                    F,
                    format!("precision must be 0, 3, 6 or 9, got {v}"),
                )),
            },
        }
    };
    let in_range = |ms: i64| {
        (MIN_EPOCH_MILLIS..=MAX_EPOCH_MILLIS)
            .contains(&ms)
            .then_some(ms)
    };
    let mut out = Vec::with_capacity(n);
    let first_type = args
        .first()
        .map(|a| a.data_type().clone())
        .unwrap_or(DataType::Null);
    if first_type.is_floating() || matches!(first_type, DataType::Decimal128(_, _)) {
        let v = float64(F, args, 0)?;
        for i in 0..n {
            let Some(p) = precision_at(i)? else {
                out.push(None);
                continue;
            };
            out.push(v.is_valid(i).then(|| v.value(i)).and_then(|x| {
                let ms = (x * 10f64.powi(3 - p as i32)).trunc();
                // NaN and infinities are NULL; `as` saturates huge values, which the range check rejects.
                if !ms.is_finite() {
                    return None;
                }
                in_range(ms as i64)
            }));
        }
    } else {
        let v = int64(F, args, 0)?;
        for i in 0..n {
            let Some(p) = precision_at(i)? else {
                out.push(None);
                continue;
            };
            out.push(v.is_valid(i).then(|| v.value(i)).and_then(|x| {
                let ms = match p {
                    0 => x.checked_mul(1000)?,
                    3 => x,
                    6 => x.div_euclid(1000),
                    _ => x.div_euclid(1_000_000),
                };
                in_range(ms)
            }));
        }
    }
    Ok(Arc::new(
        TimestampMillisecondArray::from(out).with_timezone("UTC"),
    ))
}

/// A TIMESTAMPDIFF unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DiffUnit {
    Millis(i64),
    Months(i64),
}

fn diff_unit(name: &str) -> Option<DiffUnit> {
    let upper = name.trim().to_ascii_uppercase();
    let unit = upper.strip_prefix("SQL_TSI_").unwrap_or(&upper);
    Some(match unit {
        "SECOND" => DiffUnit::Millis(1000),
        "MINUTE" => DiffUnit::Millis(60_000),
        "HOUR" => DiffUnit::Millis(3_600_000),
        "DAY" => DiffUnit::Millis(86_400_000),
        "WEEK" => DiffUnit::Millis(7 * 86_400_000),
        "MONTH" => DiffUnit::Months(1),
        "QUARTER" => DiffUnit::Months(3),
        "YEAR" => DiffUnit::Months(12),
        _ => return None,
    })
}

fn add_months(date: NaiveDate, months: i64) -> Option<NaiveDate> {
    let m = Months::new(u32::try_from(months.unsigned_abs()).ok()?);
    if months >= 0 {
        date.checked_add_months(m)
    } else {
        date.checked_sub_months(m)
    }
}

/// Whole months from date `d1` to date `d0` (Calcite's `subtractMonths` on dates): the largest m with
/// `d1 + m months <= d0` (days clamped to the end of the month), negated when `d0 < d1`.
fn months_between_dates(d0: NaiveDate, d1: NaiveDate) -> Option<i64> {
    if d0 < d1 {
        return months_between_dates(d1, d0).map(|m| -m);
    }
    let mut m = (i64::from(d0.year()) * 12 + i64::from(d0.month0()))
        - (i64::from(d1.year()) * 12 + i64::from(d1.month0()));
    if add_months(d1, m)? > d0 {
        m -= 1;
    }
    Some(m)
}

/// Calcite's (and so Flink's) `subtractMonths(t0, t1)` on timestamps: months between the dates, minus
/// one when the dates are a whole number of months apart but t0's time of day is earlier than t1's.
fn months_between(t0: &NaiveDateTime, t1: &NaiveDateTime) -> Option<i64> {
    let mut x = months_between_dates(t0.date(), t1.date())?;
    if add_months(t1.date(), x)? == t0.date() && t0.time() < t1.time() {
        x -= 1;
    }
    Some(x)
}

fn timestampdiff(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    const F: &str = "timestampdiff";
    arity(F, args, &[3])?;
    rows(F, args, n)?;
    let units = utf8(F, args, 0)?;
    let a = datetimes(F, args, 1)?;
    let b = datetimes(F, args, 2)?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (Some(t1), Some(t2)) = (&a[i], &b[i]) else {
            out.push(None);
            continue;
        };
        if units.is_null(i) {
            out.push(None);
            continue;
        }
        let unit = diff_unit(units.value(i)).ok_or_else(|| {
            invalid(
                F,
                format!("unknown unit '{}' for TIMESTAMPDIFF", units.value(i)),
            )
        })?;
        // Java's (int) cast of the long result wraps; so does `as i32`.
        out.push(match unit {
            DiffUnit::Millis(per) => Some(((epoch_millis(t2) - epoch_millis(t1)) / per) as i32),
            DiffUnit::Months(per) => months_between(t2, t1).map(|m| (m / per) as i32),
        });
    }
    Ok(Arc::new(Int32Array::from(out)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Date32Array, Float64Array, StringArray, Time32MillisecondArray};
    use arrow::datatypes::Int64Type;

    fn call(name: &str, args: Vec<ArrayRef>) -> Result<ArrayRef, KernelError> {
        let f = crate::lookup(name).expect("function exists");
        let n = args.first().map_or(1, |a| a.len());
        (f.kernel)(&args, n)
    }

    fn strs(v: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(v.to_vec()))
    }

    fn s(v: &str) -> ArrayRef {
        strs(&[Some(v)])
    }

    fn ts(v: &[Option<&str>]) -> ArrayRef {
        let ms: Vec<Option<i64>> = v
            .iter()
            .map(|s| {
                s.map(|s| {
                    parse_flink_timestamp(s)
                        .map(|d| epoch_millis(&d))
                        .expect("ts")
                })
            })
            .collect();
        Arc::new(TimestampMillisecondArray::from(ms))
    }

    fn i64s(a: &ArrayRef) -> Vec<Option<i64>> {
        a.as_primitive::<Int64Type>().iter().collect()
    }

    fn texts(a: &ArrayRef) -> Vec<Option<String>> {
        a.as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect()
    }

    fn ts_texts(a: &ArrayRef) -> Vec<Option<String>> {
        a.as_primitive::<TimestampMillisecondType>()
            .iter()
            .map(|v| {
                v.and_then(|ms| from_epoch(ms, TimeUnit::Millisecond))
                    .map(|d| d.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
            })
            .collect()
    }

    fn extract(field: &str, t: ArrayRef) -> Vec<Option<i64>> {
        let n = t.len();
        i64s(&call("date_part", vec![strs(&vec![Some(field); n]), t]).expect("date_part"))
    }

    #[test]
    fn date_part_fields() {
        let t = ts(&[Some("2024-02-29 12:34:56.789"), None]);
        assert_eq!(extract("YEAR", Arc::clone(&t)), vec![Some(2024), None]);
        assert_eq!(extract("month", Arc::clone(&t)), vec![Some(2), None]);
        assert_eq!(extract("day", Arc::clone(&t)), vec![Some(29), None]);
        assert_eq!(extract("hour", Arc::clone(&t)), vec![Some(12), None]);
        assert_eq!(extract("minute", Arc::clone(&t)), vec![Some(34), None]);
        assert_eq!(extract("second", Arc::clone(&t)), vec![Some(56), None]);
        assert_eq!(
            extract("millisecond", Arc::clone(&t)),
            vec![Some(789), None]
        );
        assert_eq!(
            extract("microsecond", Arc::clone(&t)),
            vec![Some(789_000), None]
        );
        assert_eq!(extract("doy", Arc::clone(&t)), vec![Some(60), None]);
        assert_eq!(extract("quarter", Arc::clone(&t)), vec![Some(1), None]);
        assert_eq!(
            extract("dow", ts(&[Some("2024-03-03 00:00:00")])),
            vec![Some(1)]
        );
        assert_eq!(
            extract("isodow", ts(&[Some("2024-03-03 00:00:00")])),
            vec![Some(7)]
        );
        assert_eq!(
            extract("week", ts(&[Some("2021-01-01 00:00:00")])),
            vec![Some(53)]
        );
        assert_eq!(
            extract("isoyear", ts(&[Some("2021-01-01 00:00:00")])),
            vec![Some(2020)]
        );
        assert_eq!(
            extract("epoch", ts(&[Some("2024-01-01 00:00:01.5")])),
            vec![Some(1_704_067_201)]
        );
        assert_eq!(
            extract("epoch", ts(&[Some("1969-12-31 23:59:59.5")])),
            vec![Some(0)]
        );
        assert_eq!(
            extract("century", ts(&[Some("2000-08-03 00:00:00")])),
            vec![Some(20)]
        );
        assert_eq!(
            extract("millennium", ts(&[Some("2001-08-03 00:00:00")])),
            vec![Some(3)]
        );
        assert_eq!(
            extract("decade", ts(&[Some("2024-08-03 00:00:00")])),
            vec![Some(202)]
        );
    }

    #[test]
    fn date_part_on_dates_handles_leap_years() {
        let d = |y, m, dd| days_of(NaiveDate::from_ymd_opt(y, m, dd).expect("date"));
        let dates: ArrayRef = Arc::new(Date32Array::from(vec![
            Some(d(2024, 12, 31)),
            Some(d(2023, 12, 31)),
            Some(d(2000, 3, 1)),
        ]));
        assert_eq!(
            extract("doy", Arc::clone(&dates)),
            vec![Some(366), Some(365), Some(61)]
        );
        assert_eq!(
            extract("day", Arc::clone(&dates)),
            vec![Some(31), Some(31), Some(1)]
        );
        assert_eq!(extract("hour", dates), vec![Some(0), Some(0), Some(0)]);
    }

    #[test]
    fn date_part_accepts_other_units_and_times() {
        let micros: ArrayRef = Arc::new(arrow::array::TimestampMicrosecondArray::from(vec![Some(
            1_709_210_096_123_456,
        )]));
        assert_eq!(
            extract("microsecond", Arc::clone(&micros)),
            vec![Some(123_456)]
        );
        assert_eq!(extract("second", micros), vec![Some(56)]);
        let ltz: ArrayRef = Arc::new(
            TimestampMillisecondArray::from(vec![Some(1_709_210_096_000)]).with_timezone("UTC"),
        );
        assert_eq!(extract("hour", ltz), vec![Some(12)]);
        let time: ArrayRef = Arc::new(Time32MillisecondArray::from(vec![Some(45_296_789)]));
        assert_eq!(extract("minute", Arc::clone(&time)), vec![Some(34)]);
        assert_eq!(extract("millisecond", time), vec![Some(789)]);
    }

    #[test]
    fn date_part_errors() {
        let t = ts(&[Some("2024-02-29 12:34:56")]);
        assert!(call("date_part", vec![s("fortnight"), Arc::clone(&t)]).is_err());
        assert!(call("date_part", vec![s("year"), s("2024-01-01")]).is_err());
        assert!(call("date_part", vec![t]).is_err());
        assert_eq!(extract("year", ts(&[None])), vec![None]);
        assert!(date_part_type(&[DataType::Utf8, DataType::Int64]).is_err());
        assert_eq!(
            date_part_type(&[DataType::Utf8, TS_MS]),
            Ok(DataType::Int64)
        );
    }

    #[test]
    fn extractor_shorthands() {
        let t = ts(&[Some("2024-03-03 12:34:56.9"), None]);
        let get = |name: &str| i64s(&call(name, vec![Arc::clone(&t)]).expect(name));
        assert_eq!(get("year"), vec![Some(2024), None]);
        assert_eq!(get("quarter"), vec![Some(1), None]);
        assert_eq!(get("month"), vec![Some(3), None]);
        assert_eq!(get("week"), vec![Some(9), None]);
        assert_eq!(get("dayofmonth"), vec![Some(3), None]);
        assert_eq!(get("dayofweek"), vec![Some(1), None]);
        assert_eq!(get("dayofyear"), vec![Some(63), None]);
        assert_eq!(get("hour"), vec![Some(12), None]);
        assert_eq!(get("minute"), vec![Some(34), None]);
        assert_eq!(get("second"), vec![Some(56), None]);
        assert!(call("hour", vec![s("12:00")]).is_err());
        assert!(extractor_type(&[DataType::Utf8]).is_err());
        assert_eq!(extractor_type(&[DataType::Date32]), Ok(DataType::Int64));
    }

    #[test]
    fn to_timestamp_parses_like_flink() {
        let out = call(
            "to_timestamp",
            vec![strs(&[
                Some("2024-02-29 12:34:56"),
                Some("2024-02-29 12:34:56.7"),
                Some("2024-02-29T12:34:56.123456"),
                Some("2024-02-29"),
                Some("garbage"),
                Some(""),
                None,
            ])],
        )
        .expect("to_timestamp");
        assert_eq!(out.data_type(), &TS_MS);
        assert_eq!(
            ts_texts(&out),
            vec![
                Some("2024-02-29 12:34:56.000".into()),
                Some("2024-02-29 12:34:56.700".into()),
                Some("2024-02-29 12:34:56.123".into()),
                Some("2024-02-29 00:00:00.000".into()),
                None,
                None,
                None
            ]
        );
    }

    #[test]
    fn to_timestamp_with_format() {
        let out = call(
            "to_timestamp",
            vec![
                strs(&[
                    Some("29/02/2024 12:34"),
                    Some("2024-02-29 01:02:03"),
                    Some("nope"),
                    None,
                ]),
                strs(&[
                    Some("dd/MM/yyyy HH:mm"),
                    Some("dd/MM/yyyy HH:mm"),
                    Some("yyyy"),
                    Some("yyyy"),
                ]),
            ],
        )
        .expect("to_timestamp");
        // The second row does not match the pattern and falls back to the default format, like Flink.
        assert_eq!(
            ts_texts(&out),
            vec![
                Some("2024-02-29 12:34:00.000".into()),
                Some("2024-02-29 01:02:03.000".into()),
                None,
                None
            ]
        );
        assert!(call("to_timestamp", vec![s("2024"), s("yyyy-bb")]).is_err());
        let no_args: Vec<ArrayRef> = vec![];
        assert!((crate::lookup("to_timestamp").expect("f").kernel)(&no_args, 0).is_err());
        assert!(call("to_timestamp", vec![Arc::new(Int64Array::from(vec![1]))]).is_err());
    }

    #[test]
    fn to_timestamp_ltz_precisions() {
        let v: ArrayRef = Arc::new(Int64Array::from(vec![Some(1_709_210_096), None]));
        let p = |x: i64| -> ArrayRef { Arc::new(Int64Array::from(vec![x, x])) };
        let out = call("to_timestamp_ltz", vec![Arc::clone(&v), p(0)]).expect("ltz");
        assert_eq!(out.data_type(), &ts_ltz_ms());
        assert_eq!(
            ts_texts(&out),
            vec![Some("2024-02-29 12:34:56.000".into()), None]
        );
        let ms: ArrayRef = Arc::new(Int64Array::from(vec![Some(1_709_210_096_789), None]));
        let out = call("to_timestamp_ltz", vec![Arc::clone(&ms)]).expect("ltz");
        assert_eq!(
            ts_texts(&out),
            vec![Some("2024-02-29 12:34:56.789".into()), None]
        );
        let out = call("to_timestamp_ltz", vec![ms, p(3)]).expect("ltz");
        assert_eq!(
            ts_texts(&out),
            vec![Some("2024-02-29 12:34:56.789".into()), None]
        );
        let out = call("to_timestamp_ltz", vec![Arc::clone(&v), p(6)]).expect("ltz");
        assert_eq!(
            ts_texts(&out),
            vec![Some("1970-01-01 00:28:29.210".into()), None]
        );
        let f: ArrayRef = Arc::new(Float64Array::from(vec![Some(1.5), Some(f64::NAN)]));
        let out = call("to_timestamp_ltz", vec![f, p(0)]).expect("ltz");
        assert_eq!(
            ts_texts(&out),
            vec![Some("1970-01-01 00:00:01.500".into()), None]
        );
        let huge: ArrayRef = Arc::new(Int64Array::from(vec![i64::MAX, 253_402_300_800]));
        let out = call("to_timestamp_ltz", vec![huge, p(0)]).expect("ltz");
        assert_eq!(ts_texts(&out), vec![None, None]);
        assert!(call("to_timestamp_ltz", vec![v, p(4)]).is_err());
    }

    #[test]
    fn to_date_parses() {
        let out = call(
            "to_date",
            vec![strs(&[
                Some("2024-02-29"),
                Some("2024-02-29 12:00:00"),
                Some("2024-02-30"),
                Some("bad"),
                None,
            ])],
        )
        .expect("to_date");
        let d = days_of(NaiveDate::from_ymd_opt(2024, 2, 29).expect("date"));
        assert_eq!(
            out.as_primitive::<Date32Type>().iter().collect::<Vec<_>>(),
            vec![Some(d), Some(d), None, None, None]
        );
        // With a format SimpleDateFormat is lenient: Feb 30 is Mar 1.
        let out = call("to_date", vec![s("2024-02-30"), s("yyyy-MM-dd")]).expect("to_date");
        assert_eq!(out.as_primitive::<Date32Type>().value(0), d + 1);
        let out = call("to_date", vec![s("29.02.2024"), s("dd.MM.yyyy")]).expect("to_date");
        assert_eq!(out.as_primitive::<Date32Type>().value(0), d);
    }

    #[test]
    fn date_format_formats_in_utc() {
        let t = ts(&[Some("2024-02-29 12:34:56.789"), None]);
        let out = call(
            "date_format",
            vec![t, strs(&[Some("yyyy-MM-dd HH:mm:ss.SSS"); 2])],
        )
        .expect("date_format");
        assert_eq!(
            texts(&out),
            vec![Some("2024-02-29 12:34:56.789".into()), None]
        );
        let out = call(
            "date_format",
            vec![
                strs(&[Some("2024-02-29 12:34:56"), Some("bad")]),
                strs(&[Some("yyyyMMdd u"); 2]),
            ],
        )
        .expect("date_format");
        assert_eq!(texts(&out), vec![Some("20240229 4".into()), None]);
        let d: ArrayRef = Arc::new(Date32Array::from(vec![0]));
        let out = call("date_format", vec![d, s("yyyy-MM-dd HH:mm")]).expect("date_format");
        assert_eq!(texts(&out), vec![Some("1970-01-01 00:00".into())]);
        let t = ts(&[Some("2024-02-29 12:34:56")]);
        assert!(call("date_format", vec![Arc::clone(&t), s("'unterminated")]).is_err());
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![1]));
        assert!(call("date_format", vec![ints, s("yyyy")]).is_err());
        assert!(date_format_type(&[DataType::Int64, DataType::Utf8]).is_err());
    }

    #[test]
    fn unix_timestamp_and_back() {
        let out = call(
            "unix_timestamp",
            vec![strs(&[
                Some("2024-02-29 12:34:56"),
                Some("2024-02-30 25:00:00"),
                Some("bad"),
                None,
            ])],
        )
        .expect("unix_timestamp");
        assert_eq!(
            i64s(&out),
            vec![
                Some(1_709_210_096),
                Some(1_709_341_200),
                Some(i64::MIN),
                None
            ]
        );
        let out =
            call("unix_timestamp", vec![s("2024-02-29"), s("yyyy-MM-dd")]).expect("unix_timestamp");
        assert_eq!(i64s(&out), vec![Some(1_709_164_800)]);
        let out = call(
            "unix_timestamp",
            vec![s("1969-12-31 23:59:59.5"), s("yyyy-MM-dd HH:mm:ss.S")],
        )
        .expect("unix_timestamp");
        assert_eq!(i64s(&out), vec![Some(0)]);

        let secs: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(1_709_210_096),
            Some(-1),
            None,
            Some(i64::MAX),
        ]));
        let out = call("from_unixtime", vec![Arc::clone(&secs)]).expect("from_unixtime");
        assert_eq!(
            texts(&out),
            vec![
                Some("2024-02-29 12:34:56".into()),
                Some("1969-12-31 23:59:59".into()),
                None,
                None
            ]
        );
        let out = call(
            "from_unixtime",
            vec![secs, strs(&[Some("yyyy-MM-dd u EEE"); 4])],
        )
        .expect("from_unixtime");
        assert_eq!(texts(&out)[0], Some("2024-02-29 4 Thu".into()));
    }

    fn diff(unit: &str, a: &str, b: &str) -> Option<i32> {
        let out = call(
            "timestampdiff",
            vec![s(unit), ts(&[Some(a)]), ts(&[Some(b)])],
        )
        .expect("diff");
        let v = out.as_primitive::<arrow::datatypes::Int32Type>();
        v.is_valid(0).then(|| v.value(0))
    }

    #[test]
    fn timestampdiff_matches_flink() {
        assert_eq!(
            diff(
                "SECOND",
                "2024-02-29 12:34:56.789",
                "2024-02-29 12:34:58.100"
            ),
            Some(1)
        );
        assert_eq!(
            diff("DAY", "2024-02-29 12:00:00", "2024-03-01 11:00:00"),
            Some(0)
        );
        assert_eq!(
            diff("MONTH", "2024-01-31 00:00:00", "2024-02-29 00:00:00"),
            Some(1)
        );
        assert_eq!(
            diff("MINUTE", "2024-02-29 12:00:00", "2024-02-29 11:58:30"),
            Some(-1)
        );
        assert_eq!(
            diff("YEAR", "2020-02-29 00:00:00", "2021-02-28 00:00:00"),
            Some(1)
        );
        assert_eq!(
            diff("WEEK", "2024-02-01 00:00:00", "2024-02-29 00:00:00"),
            Some(4)
        );
        assert_eq!(
            diff("QUARTER", "2024-02-01 00:00:00", "2024-08-29 00:00:00"),
            Some(2)
        );
        assert_eq!(
            diff("MONTH", "2024-02-01 12:00:00", "2024-01-01 10:00:00"),
            Some(-2)
        );
        assert_eq!(
            diff("MONTH", "2024-01-01 12:00:00", "2024-02-01 10:00:00"),
            Some(0)
        );
        assert_eq!(
            diff("hour", "2024-01-01 00:00:00", "2024-01-02 00:00:00"),
            Some(24)
        );
        let out = call(
            "timestampdiff",
            vec![s("DAY"), ts(&[None]), ts(&[Some("2024-01-01 00:00:00")])],
        )
        .expect("diff");
        assert!(out.is_null(0));
        let t = ts(&[Some("2024-01-01 00:00:00")]);
        assert!(
            call(
                "timestampdiff",
                vec![s("FORTNIGHT"), Arc::clone(&t), Arc::clone(&t)]
            )
            .is_err()
        );
        assert!(call("timestampdiff", vec![s("DAY"), Arc::clone(&t)]).is_err());
        assert_eq!(
            timestampdiff_type(&[DataType::Utf8, TS_MS, DataType::Date32]),
            Ok(DataType::Int32)
        );
    }
}
