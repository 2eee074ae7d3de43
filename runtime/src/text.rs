//! Text forms of SQL values: parsing (decoders, `CAST` from STRING) and rendering (sinks, `CAST` to
//! STRING, query output). Pure functions over physical values; no allocation beyond the output.

use std::fmt::Write as _;

use arrow::datatypes::TimeUnit;

const SECONDS_PER_DAY: i64 = 86_400;
const MS_PER_DAY: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a day number since 1970-01-01 (`civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The number of days of `month` (1-12) in `year`.
pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// How many units of `unit` make one second.
pub fn units_per_second(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    }
}

/// Splits a timestamp value in `unit` into (seconds since the epoch, nanoseconds of the second).
pub fn split_timestamp(value: i64, unit: TimeUnit) -> (i64, u32) {
    let per = units_per_second(unit);
    let secs = value.div_euclid(per);
    let sub = value.rem_euclid(per);
    // `sub < per <= 10^9`, so the product stays below 10^9.
    (secs, (sub * (1_000_000_000 / per)) as u32)
}

/// Joins seconds and nanoseconds into a value in `unit` (truncating finer digits), or `None` on overflow.
pub fn join_timestamp(secs: i64, nanos: u32, unit: TimeUnit) -> Option<i64> {
    let per = units_per_second(unit);
    secs.checked_mul(per)?
        .checked_add(i64::from(nanos) / (1_000_000_000 / per))
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, min: usize, max: usize) -> Option<(i64, usize)> {
        let start = self.pos;
        let mut value: i64 = 0;
        while self.pos < self.bytes.len() && self.pos - start < max {
            let b = self.bytes[self.pos];
            if !b.is_ascii_digit() {
                break;
            }
            value = value * 10 + i64::from(b - b'0');
            self.pos += 1;
        }
        let n = self.pos - start;
        (n >= min).then_some((value, n))
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.bytes.get(self.pos) == Some(&byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn done(&self) -> bool {
        self.pos == self.bytes.len()
    }
}

fn parse_date_part(c: &mut Cursor<'_>) -> Option<i64> {
    let negative = c.eat(b'-');
    let (year, _) = c.digits(4, 6)?;
    let year = if negative { -year } else { year };
    if !c.eat(b'-') {
        return None;
    }
    let (month, _) = c.digits(1, 2)?;
    if !c.eat(b'-') {
        return None;
    }
    let (day, _) = c.digits(1, 2)?;
    let (month, day) = (u32::try_from(month).ok()?, u32::try_from(day).ok()?);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// Parses `HH:MM[:SS[.fffffffff]]` into (seconds of the day, nanoseconds).
fn parse_time_part(c: &mut Cursor<'_>) -> Option<(i64, u32)> {
    let (h, _) = c.digits(1, 2)?;
    if !c.eat(b':') {
        return None;
    }
    let (m, _) = c.digits(2, 2)?;
    let mut s = 0;
    let mut nanos = 0u32;
    if c.eat(b':') {
        s = c.digits(2, 2)?.0;
        if c.eat(b'.') {
            let (frac, n) = c.digits(1, 9)?;
            // Ignore digits beyond nanoseconds.
            while c.peek().is_some_and(|b| b.is_ascii_digit()) {
                c.pos += 1;
            }
            nanos = (frac * 10i64.pow(9 - n as u32)) as u32;
        }
    }
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    Some((h * 3600 + m * 60 + s, nanos))
}

/// Parses a timestamp into (seconds since the epoch, nanoseconds).
///
/// Accepts `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS[.f...]]` and the ISO-8601 form with `T`, optionally
/// followed by `Z` or a `+HH:MM`/`-HH:MM` offset (the value is then converted to UTC).
pub fn parse_timestamp(text: &str) -> Option<(i64, u32)> {
    parse_timestamp_fixed(text.as_bytes()).or_else(|| parse_timestamp_any(text))
}

/// [`parse_timestamp`] for every form it accepts.
fn parse_timestamp_any(text: &str) -> Option<(i64, u32)> {
    let mut c = Cursor {
        bytes: text.trim().as_bytes(),
        pos: 0,
    };
    let days = parse_date_part(&mut c)?;
    if c.done() {
        return Some((days * SECONDS_PER_DAY, 0));
    }
    if !(c.eat(b' ') || c.eat(b'T') || c.eat(b't')) {
        return None;
    }
    let (secs_of_day, nanos) = parse_time_part(&mut c)?;
    let mut secs = days * SECONDS_PER_DAY + secs_of_day;
    if c.eat(b'Z') || c.eat(b'z') {
    } else if let Some(sign @ (b'+' | b'-')) = c.peek() {
        c.pos += 1;
        let (oh, _) = c.digits(2, 2)?;
        c.eat(b':');
        let (om, _) = c.digits(2, 2)?;
        let offset = oh * 3600 + om * 60;
        secs += if sign == b'+' { -offset } else { offset };
    }
    c.done().then_some((secs, nanos))
}

/// [`parse_timestamp`]'s common form, `YYYY-MM-DD HH:MM:SS[.f...]` (or with `T`), by fixed
/// positions: the value the general parser gives, or `None` for any other text (which that parser
/// then reads). Timestamps in JSON records are nearly always in this form, and this is most of
/// decoding them.
fn parse_timestamp_fixed(b: &[u8]) -> Option<(i64, u32)> {
    let head: &[u8; 19] = b.first_chunk()?;
    let shape_ok = head[4] == b'-'
        && head[7] == b'-'
        && matches!(head[10], b' ' | b'T' | b't')
        && head[13] == b':'
        && head[16] == b':';
    if !shape_ok {
        return None;
    }
    let num = |at: usize, len: usize| -> Option<i64> {
        head[at..at + len].iter().try_fold(0i64, |v, d| {
            d.is_ascii_digit().then(|| v * 10 + i64::from(d - b'0'))
        })
    };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, m, s) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let mut nanos = 0u32;
    match &b[19..] {
        [] => {}
        [b'.', frac @ ..] if (1..=9).contains(&frac.len()) => {
            let mut v = 0u32;
            for d in frac {
                if !d.is_ascii_digit() {
                    return None;
                }
                v = v * 10 + u32::from(d - b'0');
            }
            nanos = v * 10u32.pow(9 - frac.len() as u32);
        }
        _ => return None,
    }
    let (month, day) = (month as u32, day as u32);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    Some((
        days_from_civil(year, month, day) * SECONDS_PER_DAY + h * 3600 + m * 60 + s,
        nanos,
    ))
}

/// Parses a timestamp (see [`parse_timestamp`]) into a value of `unit`.
pub fn parse_timestamp_in(text: &str, unit: TimeUnit) -> Option<i64> {
    let (secs, nanos) = parse_timestamp(text)?;
    join_timestamp(secs, nanos, unit)
}

/// Parses `YYYY-MM-DD` into days since the epoch.
pub fn parse_date(text: &str) -> Option<i32> {
    let mut c = Cursor {
        bytes: text.trim().as_bytes(),
        pos: 0,
    };
    let days = parse_date_part(&mut c)?;
    if c.done() {
        i32::try_from(days).ok()
    } else {
        None
    }
}

/// Parses `HH:MM[:SS[.fff]]` into milliseconds of the day.
pub fn parse_time(text: &str) -> Option<i32> {
    let mut c = Cursor {
        bytes: text.trim().as_bytes(),
        pos: 0,
    };
    let (secs, nanos) = parse_time_part(&mut c)?;
    if c.done() {
        i32::try_from(secs * 1000 + i64::from(nanos / 1_000_000)).ok()
    } else {
        None
    }
}

/// Flink's string-to-BOOLEAN rule: `true`/`t`/`yes`/`y`/`1` and `false`/`f`/`no`/`n`/`0`,
/// case-insensitive, surrounding whitespace ignored.
pub fn parse_bool(text: &str) -> Option<bool> {
    let t = text.trim();
    for s in ["true", "t", "yes", "y", "1"] {
        if t.eq_ignore_ascii_case(s) {
            return Some(true);
        }
    }
    for s in ["false", "f", "no", "n", "0"] {
        if t.eq_ignore_ascii_case(s) {
            return Some(false);
        }
    }
    None
}

/// Parses a decimal number (`-12.345`, `1e3`) into an unscaled value with `scale` digits after the
/// point, rounding half away from zero, or `None` if it is not a number or exceeds `precision` digits.
pub fn parse_decimal(text: &str, precision: u8, scale: i8) -> Option<i128> {
    let t = text.trim().as_bytes();
    let (negative, t) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (mantissa, exponent) = match t.iter().position(|b| *b == b'e' || *b == b'E') {
        Some(i) => {
            let exp: i32 = std::str::from_utf8(&t[i + 1..]).ok()?.parse().ok()?;
            if exp.unsigned_abs() > 1000 {
                return None;
            }
            (&t[..i], exp)
        }
        None => (t, 0),
    };
    let mut digits: i128 = 0;
    let mut frac_digits: i32 = 0;
    let mut seen_point = false;
    let mut any_digit = false;
    let mut dropped_round_up = false;
    let mut dropped_any = false;
    for &b in mantissa {
        match b {
            b'.' if !seen_point => seen_point = true,
            b'0'..=b'9' => {
                any_digit = true;
                if digits > i128::MAX / 100 {
                    // Too many significant digits: remember rounding of the first dropped one.
                    if !dropped_any {
                        dropped_round_up = b >= b'5';
                        dropped_any = true;
                    }
                    if !seen_point {
                        frac_digits -= 1;
                    }
                    continue;
                }
                digits = digits * 10 + i128::from(b - b'0');
                if seen_point {
                    frac_digits += 1;
                }
            }
            _ => return None,
        }
    }
    if !any_digit {
        return None;
    }
    // value = digits * 10^(exponent - frac_digits); we want value * 10^scale.
    let shift = exponent - frac_digits + i32::from(scale);
    let mut unscaled = if shift >= 0 {
        digits.checked_mul(10i128.checked_pow(shift as u32)?)?
    } else {
        let div = 10i128.checked_pow((-shift) as u32);
        match div {
            Some(div) => {
                let q = digits / div;
                let r = digits % div;
                if r * 2 >= div { q + 1 } else { q }
            }
            None => 0,
        }
    };
    if dropped_any && dropped_round_up && shift >= 0 {
        unscaled += 1;
    }
    if unscaled >= 10i128.checked_pow(u32::from(precision))? {
        return None;
    }
    Some(if negative { -unscaled } else { unscaled })
}

/// Renders an unscaled decimal with `scale` fraction digits (`1250`, 2 → `12.50`).
pub fn format_decimal(unscaled: i128, scale: i8, out: &mut String) {
    if scale <= 0 {
        let _ = write!(out, "{unscaled}");
        for _ in 0..(-i32::from(scale)) {
            out.push('0');
        }
        return;
    }
    let scale = scale as usize;
    let digits = unscaled.unsigned_abs().to_string();
    if unscaled < 0 {
        out.push('-');
    }
    if digits.len() <= scale {
        out.push_str("0.");
        for _ in 0..scale - digits.len() {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    }
}

fn push_2(out: &mut String, v: u32) {
    out.push((b'0' + (v / 10 % 10) as u8) as char);
    out.push((b'0' + (v % 10) as u8) as char);
}

/// Renders days since the epoch as `YYYY-MM-DD`.
pub fn format_date(days: i64, out: &mut String) {
    let (y, m, d) = civil_from_days(days);
    if (0..=9999).contains(&y) {
        let y = y as u32;
        push_2(out, y / 100);
        push_2(out, y % 100);
    } else {
        let _ = write!(out, "{y}");
    }
    out.push('-');
    push_2(out, m);
    out.push('-');
    push_2(out, d);
}

/// Renders seconds of the day plus nanoseconds as `HH:MM:SS` followed by `fraction_digits` digits.
fn format_time_of_day(secs: u32, nanos: u32, fraction_digits: u32, out: &mut String) {
    push_2(out, secs / 3600);
    out.push(':');
    push_2(out, secs / 60 % 60);
    out.push(':');
    push_2(out, secs % 60);
    push_fraction(nanos, fraction_digits, out);
}

fn push_fraction(nanos: u32, digits: u32, out: &mut String) {
    if digits == 0 {
        return;
    }
    out.push('.');
    let mut v = nanos / 10u32.pow(9 - digits.min(9));
    let mut buf = [b'0'; 9];
    for i in (0..digits.min(9) as usize).rev() {
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    for b in &buf[..digits.min(9) as usize] {
        out.push(*b as char);
    }
}

/// Renders milliseconds of the day as `HH:MM:SS`, with `.fff` when the milliseconds are not zero.
pub fn format_time(ms: i64, out: &mut String) {
    let ms = ms.rem_euclid(MS_PER_DAY);
    let nanos = (ms % 1000) as u32 * 1_000_000;
    format_time_of_day(
        (ms / 1000) as u32,
        nanos,
        if nanos == 0 { 0 } else { 3 },
        out,
    );
}

/// Renders a timestamp the SQL way, `YYYY-MM-DD HH:MM:SS.fff`, with `fraction_digits` digits
/// (Flink's `CAST(ts AS STRING)` pads to the type's precision).
pub fn format_timestamp(value: i64, unit: TimeUnit, fraction_digits: u32, out: &mut String) {
    let (secs, nanos) = split_timestamp(value, unit);
    format_date(secs.div_euclid(SECONDS_PER_DAY), out);
    out.push(' ');
    format_time_of_day(
        secs.rem_euclid(SECONDS_PER_DAY) as u32,
        nanos,
        fraction_digits,
        out,
    );
}

/// The number of fraction digits a timestamp unit carries (3 for milliseconds...).
pub fn unit_digits(unit: TimeUnit) -> u32 {
    match unit {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 3,
        TimeUnit::Microsecond => 6,
        TimeUnit::Nanosecond => 9,
    }
}

/// Java's `LocalTime.toString` fraction rule: none, or 3, 6 or 9 digits, as few as needed.
fn java_fraction_digits(nanos: u32) -> u32 {
    if nanos == 0 {
        0
    } else if nanos.is_multiple_of(1_000_000) {
        3
    } else if nanos.is_multiple_of(1_000) {
        6
    } else {
        9
    }
}

/// Renders like Java's `LocalTime.toString`: `HH:MM`, `HH:MM:SS` or `HH:MM:SS.fff`.
fn java_time(secs: u32, nanos: u32, always_seconds: bool, out: &mut String) {
    push_2(out, secs / 3600);
    out.push(':');
    push_2(out, secs / 60 % 60);
    if always_seconds || !secs.is_multiple_of(60) || nanos != 0 {
        out.push(':');
        push_2(out, secs % 60);
        push_fraction(nanos, java_fraction_digits(nanos), out);
    }
}

/// Renders a timestamp like Java's `LocalDateTime.toString` (what Flink's print sink shows):
/// `2024-01-01T10:00`, `2024-01-01T10:00:05`, `2024-01-01T10:00:05.120`.
pub fn format_java_local_date_time(value: i64, unit: TimeUnit, out: &mut String) {
    let (secs, nanos) = split_timestamp(value, unit);
    format_date(secs.div_euclid(SECONDS_PER_DAY), out);
    out.push('T');
    java_time(secs.rem_euclid(SECONDS_PER_DAY) as u32, nanos, false, out);
}

/// Renders an instant like Java's `Instant.toString`: `2024-01-01T10:00:00Z`.
pub fn format_java_instant(value: i64, unit: TimeUnit, out: &mut String) {
    let (secs, nanos) = split_timestamp(value, unit);
    format_date(secs.div_euclid(SECONDS_PER_DAY), out);
    out.push('T');
    java_time(secs.rem_euclid(SECONDS_PER_DAY) as u32, nanos, true, out);
    out.push('Z');
}

/// Renders milliseconds of the day like Java's `LocalTime.toString`.
pub fn format_java_time(ms: i64, out: &mut String) {
    let ms = ms.rem_euclid(MS_PER_DAY);
    java_time(
        (ms / 1000) as u32,
        (ms % 1000) as u32 * 1_000_000,
        false,
        out,
    );
}

/// Renders milliseconds like Java's `Duration.toString` (`PT1H30M`, `PT0.5S`, `PT0S`).
pub fn format_java_duration(ms: i64, out: &mut String) {
    if ms == 0 {
        out.push_str("PT0S");
        return;
    }
    out.push_str("PT");
    let hours = ms / 3_600_000;
    let minutes = ms / 60_000 % 60;
    let millis = ms % 60_000;
    if hours != 0 {
        let _ = write!(out, "{hours}H");
    }
    if minutes != 0 {
        let _ = write!(out, "{minutes}M");
    }
    if millis != 0 {
        if millis < 0 && millis > -1000 {
            out.push('-');
        }
        let _ = write!(out, "{}", millis / 1000);
        if millis % 1000 != 0 {
            let _ = write!(out, ".{:03}", (millis % 1000).abs());
            while out.ends_with('0') {
                out.pop();
            }
        }
        out.push('S');
    }
}

/// Renders months like Java's `Period.toString` (`P1Y2M`, `P0D`).
pub fn format_java_period(months: i32, out: &mut String) {
    if months == 0 {
        out.push_str("P0D");
        return;
    }
    out.push('P');
    if months / 12 != 0 {
        let _ = write!(out, "{}Y", months / 12);
    }
    if months % 12 != 0 {
        let _ = write!(out, "{}M", months % 12);
    }
}

/// Renders a shortest round-trip decimal in Java's `Double.toString` layout: plain notation with at
/// least one fraction digit for 10^-3 <= |v| < 10^7 (`1.0`, `0.001`), else `d.dddE±n` (`1.0E7`).
fn java_float_layout(scientific: &str, out: &mut String) {
    // `scientific` is Rust's `{:e}` form: `-1.2345e-7`, `1e7`.
    let (mantissa, exp) = scientific.split_once('e').unwrap_or((scientific, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    // The mantissa's digits without its point (`d` or `d.ddd`), on the stack.
    let mut digits = StackText::new();
    for part in mantissa.split('.') {
        let _ = digits.write_str(part);
    }
    let digits = digits.as_str();
    if negative {
        out.push('-');
    }
    if (-3..7).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(digits);
                for _ in digits.len()..int_len {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        } else {
            out.push_str("0.");
            for _ in 0..(-exp - 1) {
                out.push('0');
            }
            out.push_str(digits);
        }
    } else {
        out.push_str(&digits[..1]);
        out.push('.');
        if digits.len() > 1 {
            out.push_str(&digits[1..]);
        } else {
            out.push('0');
        }
        let _ = write!(out, "E{exp}");
    }
}

/// A small text buffer on the stack: `{:e}` of a float and its digits without allocating.
struct StackText {
    bytes: [u8; 48],
    len: usize,
}

impl StackText {
    fn new() -> StackText {
        StackText {
            bytes: [0; 48],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(self.bytes.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        self.bytes
            .get_mut(self.len..end)
            .ok_or(std::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// `{:e}` of `v` laid out as Java lays it out.
fn java_layout(v: impl std::fmt::LowerExp, out: &mut String) {
    let mut text = StackText::new();
    if write!(text, "{v:e}").is_ok() {
        java_float_layout(text.as_str(), out);
    } else {
        // Longer than any float's `{:e}`: not reached.
        java_float_layout(&format!("{v:e}"), out);
    }
}

/// Renders a DOUBLE like Java's `Double.toString` (Flink's text form of DOUBLE): `1.0`, `0.5`,
/// `1.0E10`, `NaN`, `Infinity`.
pub fn format_java_double(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
    } else if v == 0.0 {
        out.push_str(if v.is_sign_negative() { "-0.0" } else { "0.0" });
    } else {
        java_layout(v, out);
    }
}

/// Renders a FLOAT like Java's `Float.toString`.
pub fn format_java_float(v: f32, out: &mut String) {
    if v.is_nan() || v.is_infinite() || v == 0.0 {
        format_java_double(f64::from(v), out);
    } else {
        java_layout(v, out);
    }
}

/// Appends `s` as a JSON string literal (quoted, escaped).
pub fn push_json_string(s: &str, out: &mut String) {
    out.push('"');
    let mut rest = s;
    // Runs of characters that need no escape are copied whole.
    while let Some(at) = rest
        .bytes()
        .position(|b| b == b'"' || b == b'\\' || b < 0x20)
    {
        let (plain, tail) = rest.split_at(at);
        out.push_str(plain);
        let mut chars = tail.chars();
        match chars.next() {
            Some('"') => out.push_str("\\\""),
            Some('\\') => out.push_str("\\\\"),
            Some('\n') => out.push_str("\\n"),
            Some('\r') => out.push_str("\\r"),
            Some('\t') => out.push_str("\\t"),
            Some(c) => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            None => {}
        }
        rest = chars.as_str();
    }
    out.push_str(rest);
    out.push('"');
}

/// Appends standard base64 (with padding) of `bytes` (how Flink's JSON format writes BYTES).
pub fn push_base64(bytes: &[u8], out: &mut String) {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts_ms(text: &str) -> Option<i64> {
        parse_timestamp_in(text, TimeUnit::Millisecond)
    }

    #[test]
    fn timestamps_parse_in_sql_and_iso_forms() {
        let expected = 1_704_103_200_123; // 2024-01-01 10:00:00.123 UTC
        assert_eq!(ts_ms("2024-01-01 10:00:00.123"), Some(expected));
        assert_eq!(ts_ms("2024-01-01T10:00:00.123"), Some(expected));
        assert_eq!(ts_ms("2024-01-01T10:00:00.123Z"), Some(expected));
        assert_eq!(ts_ms("2024-01-01T11:00:00.123+01:00"), Some(expected));
        assert_eq!(ts_ms("2024-01-01 10:00"), Some(expected - 123));
        assert_eq!(ts_ms("2024-01-01"), Some(1_704_067_200_000));
        assert_eq!(ts_ms("1969-12-31 23:59:59.999"), Some(-1));
        assert_eq!(ts_ms("2024-02-30 10:00:00"), None);
        assert_eq!(ts_ms("2024-01-01 25:00:00"), None);
        assert_eq!(ts_ms("yesterday"), None);
        assert_eq!(ts_ms("2024-01-01 10:00:00 junk"), None);
    }

    #[test]
    fn timestamps_render_sql_and_java_styles() {
        let mut s = String::new();
        format_timestamp(1_704_103_200_123, TimeUnit::Millisecond, 3, &mut s);
        assert_eq!(s, "2024-01-01 10:00:00.123");
        s.clear();
        format_timestamp(-1, TimeUnit::Millisecond, 3, &mut s);
        assert_eq!(s, "1969-12-31 23:59:59.999");
        s.clear();
        format_java_local_date_time(1_704_103_200_000, TimeUnit::Millisecond, &mut s);
        assert_eq!(s, "2024-01-01T10:00");
        s.clear();
        format_java_local_date_time(1_704_103_200_120, TimeUnit::Millisecond, &mut s);
        assert_eq!(s, "2024-01-01T10:00:00.120");
        s.clear();
        format_java_instant(1_704_103_200_000, TimeUnit::Millisecond, &mut s);
        assert_eq!(s, "2024-01-01T10:00:00Z");
    }

    #[test]
    fn dates_round_trip() {
        for days in [-719_468, -1, 0, 19_723, 2_932_896] {
            let mut s = String::new();
            format_date(days, &mut s);
            assert_eq!(parse_date(&s).map(i64::from), Some(days), "{s}");
        }
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_time("10:00:01.5"), Some(36_001_500));
    }

    #[test]
    fn doubles_render_like_java() {
        let cases = [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (123.456, "123.456"),
            (1e7, "1.0E7"),
            (1.5e10, "1.5E10"),
            (0.001, "0.001"),
            (1.0e-4, "1.0E-4"),
            (-2.5, "-2.5"),
            (9_999_999.0, "9999999.0"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (v, expected) in cases {
            let mut s = String::new();
            format_java_double(v, &mut s);
            assert_eq!(s, expected);
        }
        let mut s = String::new();
        format_java_float(0.1, &mut s);
        assert_eq!(s, "0.1");
        for (v, expected) in [
            (100.0, "100.0"),
            (1_234_567.0, "1234567.0"),
            (0.0123, "0.0123"),
            (0.000_123, "1.23E-4"),
            (-1.7976931348623157e308, "-1.7976931348623157E308"),
        ] {
            s.clear();
            format_java_double(v, &mut s);
            assert_eq!(s, expected);
        }
        // Every double's text reads back as the same double.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x);
            if !v.is_finite() {
                continue;
            }
            s.clear();
            format_java_double(v, &mut s);
            assert_eq!(s.parse::<f64>().ok(), Some(v), "{s}");
        }
    }

    #[test]
    fn json_strings_are_escaped_as_serde_json_escapes_them() {
        for text in [
            "",
            "plain",
            "a\"b",
            "back\\slash",
            "tab\tnew\nline\r",
            "\u{1}\u{1f}x",
            "é€😀\"",
            "\"\"",
        ] {
            let mut s = String::new();
            push_json_string(text, &mut s);
            assert_eq!(
                serde_json::from_str::<String>(&s).ok().as_deref(),
                Some(text),
                "{s}"
            );
        }
        let mut s = String::new();
        push_json_string("q\"\u{7}", &mut s);
        assert_eq!(s, "\"q\\\"\\u0007\"");
    }

    #[test]
    fn decimals_parse_and_render() {
        assert_eq!(parse_decimal("12.345", 10, 2), Some(1235));
        assert_eq!(parse_decimal("-12.344", 10, 2), Some(-1234));
        assert_eq!(parse_decimal("1e3", 10, 2), Some(100_000));
        assert_eq!(parse_decimal("12345", 4, 0), None);
        assert_eq!(parse_decimal("1.2.3", 10, 2), None);
        assert_eq!(parse_decimal("", 10, 2), None);
        let mut s = String::new();
        format_decimal(-5, 2, &mut s);
        assert_eq!(s, "-0.05");
        s.clear();
        format_decimal(1250, 2, &mut s);
        assert_eq!(s, "12.50");
    }

    #[test]
    fn durations_render_like_java() {
        let mut s = String::new();
        format_java_duration(5_400_000, &mut s);
        assert_eq!(s, "PT1H30M");
        s.clear();
        format_java_duration(1_500, &mut s);
        assert_eq!(s, "PT1.5S");
        s.clear();
        push_base64(b"hello", &mut s);
        assert_eq!(s, "aGVsbG8=");
    }

    #[test]
    fn the_fixed_position_timestamp_parser_agrees_with_the_general_one() {
        let mut checked = 0;
        for date in [
            "2024-01-01",
            "2024-02-29",
            "2023-02-29",
            "1969-12-31",
            "2024-13-01",
            "2024-00-10",
            "2024-1-01",
            "20x4-01-01",
        ] {
            for sep in [" ", "T", "t", "_"] {
                for time in [
                    "00:00:00", "23:59:59", "24:00:00", "12:60:00", "12:00:61", "1:00:00",
                    "12:00:0x",
                ] {
                    for frac in [
                        "",
                        ".1",
                        ".123",
                        ".123456789",
                        ".1234567891",
                        ".",
                        ".12a",
                        "Z",
                        "+01:00",
                        " ",
                    ] {
                        let text = format!("{date}{sep}{time}{frac}");
                        if let Some(fast) = parse_timestamp_fixed(text.as_bytes()) {
                            assert_eq!(Some(fast), parse_timestamp_any(&text), "{text}");
                            checked += 1;
                        }
                    }
                }
            }
        }
        // The fixed parser took the common forms (and left every other text to the general one).
        assert_eq!(checked, 3 * 3 * 2 * 4, "{checked}");
        assert_eq!(
            parse_timestamp("2024-01-01 10:00:00.123"),
            Some((1_704_103_200, 123_000_000))
        );
    }
}
