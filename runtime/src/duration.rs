//! Flink-style duration option values (`'5 s'`, `'100 ms'`, `'2 min'`, `'25 h'`, `'500ms'`).

use std::time::Duration;

/// Parses a duration the way Flink's `TimeUtils.parseDuration` does: a non-negative integer,
/// optional whitespace, and an optional unit (case-insensitive). Without a unit the number is
/// milliseconds. Units: `d`/`day`/`days`, `h`/`hour`/`hours`, `m`/`min`/`minute`/`minutes`,
/// `s`/`sec`/`secs`/`second`/`seconds`, `ms`/`milli`/`millis`/`millisecond`/`milliseconds`,
/// `us`/`µs`/`micro`/`micros`/`microsecond`/`microseconds`, `ns`/`nano`/`nanos`/`nanosecond`/`nanoseconds`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(fsql_runtime::parse_duration("5 ms"), Ok(Duration::from_millis(5)));
/// assert_eq!(fsql_runtime::parse_duration("25 h"), Ok(Duration::from_secs(25 * 3600)));
/// assert!(fsql_runtime::parse_duration("soon").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits_end);
    if number.is_empty() {
        return Err(format!(
            "invalid duration '{text}': expected a number followed by a unit, e.g. '5 s'"
        ));
    }
    let value: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration '{text}': the number is too large"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let nanos_per_unit: u128 = match unit.as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1_000_000,
        "d" | "day" | "days" => 86_400_000_000_000,
        "h" | "hour" | "hours" => 3_600_000_000_000,
        "m" | "min" | "minute" | "minutes" => 60_000_000_000,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000_000_000,
        "us" | "µs" | "micro" | "micros" | "microsecond" | "microseconds" => 1_000,
        "ns" | "nano" | "nanos" | "nanosecond" | "nanoseconds" => 1,
        other => {
            return Err(format!(
                "invalid duration '{text}': unknown unit '{other}' (use ms, s, min, h or d)"
            ));
        }
    };
    let nanos = u128::from(value) * nanos_per_unit;
    let secs = u64::try_from(nanos / 1_000_000_000)
        .map_err(|_| format!("invalid duration '{text}': too large"))?;
    // The remainder is below 10^9 and fits.
    let sub = (nanos % 1_000_000_000) as u32;
    Ok(Duration::new(secs, sub))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flink_spellings_parse() {
        assert_eq!(parse_duration("5 s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("100 ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2 min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1 h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("25 h"), Ok(Duration::from_secs(25 * 3600)));
        assert_eq!(parse_duration("3 DAYS"), Ok(Duration::from_secs(3 * 86400)));
        assert_eq!(parse_duration("250"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(" 7 us "), Ok(Duration::from_micros(7)));
    }

    #[test]
    fn bad_durations_are_explained() {
        assert!(
            parse_duration("")
                .unwrap_err()
                .contains("expected a number")
        );
        assert!(
            parse_duration("5 fortnights")
                .unwrap_err()
                .contains("unknown unit 'fortnights'")
        );
        assert!(parse_duration("-5 s").is_err());
        assert!(parse_duration("99999999999999999999999 s").is_err());
    }
}
