//! Java date-time patterns (`yyyy-MM-dd HH:mm:ss.SSS`), as Flink's temporal functions use them.
//!
//! Flink uses two Java formatters with slightly different rules, and users see the difference, so both
//! are modelled as a [`Dialect`]:
//! - [`Dialect::Modern`] is `java.time.DateTimeFormatter` (TO_TIMESTAMP with a format, DATE_FORMAT of a
//!   TIMESTAMP): `S` is a fraction of the second, `u` is the year, `[...]` are optional sections, the whole
//!   input must be consumed and out-of-range fields fail, except a day-of-month past the month's end, which
//!   is clamped to its last day (Java's SMART resolver).
//! - [`Dialect::Legacy`] is `java.text.SimpleDateFormat` (UNIX_TIMESTAMP, FROM_UNIXTIME, TO_DATE with a
//!   format, DATE_FORMAT of a STRING): `S` is a count of milliseconds, `u` is the ISO day of the week,
//!   trailing input is ignored and fields overflow into the next unit (Feb 30 is Mar 1, hour 25 is 01:00
//!   the next day), as the lenient legacy parser does.
//!
//! Missing fields default to 1970-01-01 00:00:00, as in Flink. Parsed zone offsets are accepted and
//! ignored (Flink ignores them too); formatted zones are always UTC, the only session time zone of fsql.

use chrono::{Datelike, Months, NaiveDate, NaiveDateTime, TimeDelta, Timelike};

/// Which Java formatter's rules to follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// `java.time.DateTimeFormatter` with the SMART resolver.
    Modern,
    /// `java.text.SimpleDateFormat`, lenient.
    Legacy,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Lit(String),
    Field(char, usize),
    Optional(Vec<Tok>),
}

/// A compiled Java date-time pattern.
#[derive(Clone, Debug)]
pub(crate) struct Pattern {
    toks: Vec<Tok>,
    dialect: Dialect,
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

fn supported(letter: char, dialect: Dialect) -> bool {
    match letter {
        'G' | 'y' | 'u' | 'Y' | 'M' | 'L' | 'd' | 'D' | 'E' | 'a' | 'h' | 'H' | 'k' | 'K' | 'm'
        | 's' | 'S' | 'w' | 'X' | 'Z' | 'z' => true,
        'n' | 'Q' | 'q' | 'x' => dialect == Dialect::Modern,
        _ => false,
    }
}

impl Pattern {
    /// Compiles `pattern`; Err names the first unsupported or malformed part.
    pub(crate) fn compile(pattern: &str, dialect: Dialect) -> Result<Pattern, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut stack: Vec<Vec<Tok>> = vec![Vec::new()];
        let mut i = 0;
        fn push_lit(toks: &mut Vec<Tok>, s: &str) {
            if let Some(Tok::Lit(prev)) = toks.last_mut() {
                prev.push_str(s);
            } else {
                toks.push(Tok::Lit(s.to_string()));
            }
        }
        while let Some(&c) = chars.get(i) {
            let Some(top) = stack.last_mut() else {
                return Err("unbalanced ']'".into());
            };
            if c == '\'' {
                if chars.get(i + 1) == Some(&'\'') {
                    push_lit(top, "'");
                    i += 2;
                    continue;
                }
                let mut text = String::new();
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None => return Err(format!("unterminated quote in pattern '{pattern}'")),
                        Some('\'') if chars.get(j + 1) == Some(&'\'') => {
                            text.push('\'');
                            j += 2;
                        }
                        Some('\'') => break,
                        Some(&other) => {
                            text.push(other);
                            j += 1;
                        }
                    }
                }
                push_lit(top, &text);
                i = j + 1;
            } else if c.is_ascii_alphabetic() {
                let mut n = 1;
                while chars.get(i + n) == Some(&c) {
                    n += 1;
                }
                if !supported(c, dialect) {
                    return Err(format!("unsupported pattern letter '{c}' in '{pattern}'"));
                }
                if (c == 'S' || c == 'n') && n > 9 {
                    return Err(format!("too many pattern letters '{c}' in '{pattern}'"));
                }
                top.push(Tok::Field(c, n));
                i += n;
            } else if dialect == Dialect::Modern && c == '[' {
                stack.push(Vec::new());
                i += 1;
            } else if dialect == Dialect::Modern && c == ']' {
                let inner = stack.pop().unwrap_or_default();
                match stack.last_mut() {
                    Some(parent) => parent.push(Tok::Optional(inner)),
                    None => return Err(format!("unbalanced ']' in pattern '{pattern}'")),
                }
                i += 1;
            } else if dialect == Dialect::Modern && matches!(c, '{' | '}' | '#') {
                return Err(format!("reserved character '{c}' in pattern '{pattern}'"));
            } else {
                push_lit(top, c.encode_utf8(&mut [0; 4]));
                i += 1;
            }
        }
        // Unclosed optional sections end at the end of the pattern, as in Java.
        while stack.len() > 1 {
            let inner = stack.pop().unwrap_or_default();
            if let Some(parent) = stack.last_mut() {
                parent.push(Tok::Optional(inner));
            }
        }
        Ok(Pattern {
            toks: stack.pop().unwrap_or_default(),
            dialect,
        })
    }

    /// Formats a wall-clock date-time (read as UTC).
    pub(crate) fn format(&self, dt: &NaiveDateTime) -> String {
        let mut out = String::new();
        format_toks(&self.toks, self.dialect, dt, &mut out);
        out
    }

    /// Parses `input`, or None when it does not match (the caller decides what that means).
    pub(crate) fn parse(&self, input: &str) -> Option<NaiveDateTime> {
        let mut st = Parsed::default();
        let end = parse_toks(&self.toks, self.dialect, input, 0, &mut st)?;
        if self.dialect == Dialect::Modern && end != input.len() {
            return None;
        }
        match self.dialect {
            Dialect::Modern => st.resolve_smart(),
            Dialect::Legacy => st.resolve_lenient(),
        }
    }
}

fn pad(out: &mut String, value: i64, width: usize) {
    if value < 0 {
        out.push('-');
    }
    let digits = value.unsigned_abs().to_string();
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(&digits);
}

/// The US week numbering Java uses by default: weeks start on Sunday, week 1 contains January 1st.
/// Returns (week-based year, week of that year).
pub(crate) fn us_week(date: NaiveDate) -> (i32, u32) {
    let start_of_week = |d: NaiveDate| {
        d.checked_sub_signed(TimeDelta::days(i64::from(
            d.weekday().num_days_from_sunday(),
        )))
    };
    let Some(sow) = start_of_week(date) else {
        return (date.year(), 1);
    };
    let y = date.year();
    if let (Some(next_jan1), Some(last)) = (
        NaiveDate::from_ymd_opt(y + 1, 1, 1),
        sow.checked_add_signed(TimeDelta::days(6)),
    ) && last >= next_jan1
    {
        return (y + 1, 1);
    }
    match NaiveDate::from_ymd_opt(y, 1, 1).and_then(start_of_week) {
        Some(sow1) => (y, ((sow - sow1).num_days() / 7 + 1) as u32),
        None => (y, 1),
    }
}

fn format_toks(toks: &[Tok], dialect: Dialect, dt: &NaiveDateTime, out: &mut String) {
    for tok in toks {
        match tok {
            Tok::Lit(s) => out.push_str(s),
            Tok::Optional(inner) => format_toks(inner, dialect, dt, out),
            Tok::Field(c, n) => format_field(*c, *n, dialect, dt, out),
        }
    }
}

fn format_field(c: char, n: usize, dialect: Dialect, dt: &NaiveDateTime, out: &mut String) {
    let year = i64::from(dt.year());
    let year_of_era = if year >= 1 { year } else { 1 - year };
    let two_digit = |out: &mut String, y: i64| pad(out, y.rem_euclid(100), 2);
    match c {
        'G' => out.push_str(if year >= 1 { "AD" } else { "BC" }),
        'y' if n == 2 => two_digit(out, year_of_era),
        'y' => pad(out, year_of_era, n),
        'u' if dialect == Dialect::Legacy => {
            pad(out, i64::from(dt.weekday().number_from_monday()), n)
        }
        'u' if n == 2 => two_digit(out, year),
        'u' => pad(out, year, n),
        'Y' => {
            let (wy, _) = us_week(dt.date());
            if n == 2 {
                two_digit(out, i64::from(wy))
            } else {
                pad(out, i64::from(wy), n)
            }
        }
        'M' | 'L' => {
            let m = dt.month() as usize;
            let name = MONTHS.get(m.wrapping_sub(1)).copied().unwrap_or("");
            match n {
                1 | 2 => pad(out, m as i64, n),
                3 => out.push_str(name.get(..3).unwrap_or(name)),
                4 => out.push_str(name),
                _ => out.push_str(name.get(..1).unwrap_or(name)),
            }
        }
        'd' => pad(out, i64::from(dt.day()), n),
        'D' => pad(out, i64::from(dt.ordinal()), n),
        'E' => {
            let name = DAYS
                .get(dt.weekday().num_days_from_monday() as usize)
                .copied()
                .unwrap_or("");
            match n {
                1..=3 => out.push_str(name.get(..3).unwrap_or(name)),
                4 => out.push_str(name),
                _ if dialect == Dialect::Modern => out.push_str(name.get(..1).unwrap_or(name)),
                _ => out.push_str(name),
            }
        }
        'a' => out.push_str(if dt.hour() < 12 { "AM" } else { "PM" }),
        'H' => pad(out, i64::from(dt.hour()), n),
        'k' => pad(
            out,
            if dt.hour() == 0 {
                24
            } else {
                i64::from(dt.hour())
            },
            n,
        ),
        'h' => {
            let h = dt.hour() % 12;
            pad(out, if h == 0 { 12 } else { i64::from(h) }, n)
        }
        'K' => pad(out, i64::from(dt.hour() % 12), n),
        'm' => pad(out, i64::from(dt.minute()), n),
        's' => pad(out, i64::from(dt.second()), n),
        'S' if dialect == Dialect::Legacy => pad(
            out,
            i64::from(dt.nanosecond() % 1_000_000_000 / 1_000_000),
            n,
        ),
        'S' => {
            let nanos = format!("{:09}", dt.nanosecond() % 1_000_000_000);
            out.push_str(nanos.get(..n.min(9)).unwrap_or(""));
        }
        'n' => pad(out, i64::from(dt.nanosecond() % 1_000_000_000), n),
        'w' => pad(out, i64::from(us_week(dt.date()).1), n),
        'Q' | 'q' => {
            let q = (dt.month() - 1) / 3 + 1;
            match n {
                1 | 2 => pad(out, i64::from(q), n),
                3 => out.push_str(&format!("Q{q}")),
                _ => out.push_str(
                    ["1st quarter", "2nd quarter", "3rd quarter", "4th quarter"]
                        .get(q as usize - 1)
                        .copied()
                        .unwrap_or(""),
                ),
            }
        }
        'X' => out.push('Z'),
        'x' => out.push_str(match n {
            1 => "+00",
            2 | 4 => "+0000",
            _ => "+00:00",
        }),
        'Z' => out.push_str(match (dialect, n) {
            (Dialect::Modern, 4) => "GMT",
            (Dialect::Modern, 5) => "Z",
            _ => "+0000",
        }),
        'z' => out.push_str("UTC"),
        _ => {}
    }
}

/// Fields read so far.
#[derive(Clone, Debug, Default)]
struct Parsed {
    year: Option<i64>,
    month: Option<i64>,
    day: Option<i64>,
    day_of_year: Option<i64>,
    hour: Option<i64>,
    hour_of_ampm: Option<i64>,
    pm: Option<bool>,
    minute: Option<i64>,
    second: Option<i64>,
    nano: Option<i64>,
    milli: Option<i64>,
}

fn is_numeric_tok(tok: &Tok) -> bool {
    match tok {
        Tok::Field(c, n) => match c {
            'M' | 'L' | 'Q' | 'q' => *n <= 2,
            'y' | 'Y' | 'u' | 'd' | 'D' | 'H' | 'k' | 'h' | 'K' | 'm' | 's' | 'S' | 'n' | 'w' => {
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// Reads between `min` and `max` ASCII digits at `pos`; returns (value, digits read).
fn digits(input: &str, pos: usize, min: usize, max: usize) -> Option<(i64, usize)> {
    let bytes = input.as_bytes().get(pos..)?;
    let n = bytes
        .iter()
        .take(max)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if n < min || n == 0 {
        return None;
    }
    let mut v: i64 = 0;
    for b in bytes.get(..n)? {
        v = v * 10 + i64::from(b - b'0');
    }
    Some((v, n))
}

/// Matches one of `names` (or its first three letters) case-insensitively at `pos`.
fn name_at(input: &str, pos: usize, names: &[&str]) -> Option<(usize, usize)> {
    let rest = input.get(pos..)?;
    for (i, name) in names.iter().enumerate() {
        if rest.len() >= name.len() && rest.get(..name.len())?.eq_ignore_ascii_case(name) {
            return Some((i, name.len()));
        }
    }
    for (i, name) in names.iter().enumerate() {
        let short = name.get(..3)?;
        if rest.len() >= 3 && rest.get(..3).is_some_and(|r| r.eq_ignore_ascii_case(short)) {
            return Some((i, 3));
        }
    }
    None
}

/// Skips a zone offset (`Z`, `+HH`, `+HHMM`, `+HH:MM`) or zone name; Flink ignores parsed zones.
fn skip_zone(input: &str, pos: usize) -> Option<usize> {
    let rest = input.get(pos..)?;
    let b = rest.as_bytes();
    match b.first()? {
        b'Z' | b'z' => Some(pos + 1),
        b'+' | b'-' => {
            let (_, h) = digits(input, pos + 1, 2, 2)?;
            let mut p = pos + 1 + h;
            if input.as_bytes().get(p) == Some(&b':') {
                p += 1;
            }
            match digits(input, p, 2, 2) {
                Some((_, m)) => Some(p + m),
                None => Some(pos + 1 + h),
            }
        }
        c if c.is_ascii_alphabetic() => {
            let n = b
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'/' || **c == b'_')
                .count();
            Some(pos + n)
        }
        _ => None,
    }
}

fn parse_toks(
    toks: &[Tok],
    dialect: Dialect,
    input: &str,
    mut pos: usize,
    st: &mut Parsed,
) -> Option<usize> {
    for (i, tok) in toks.iter().enumerate() {
        match tok {
            Tok::Lit(s) => {
                if !input.get(pos..)?.starts_with(s.as_str()) {
                    return None;
                }
                pos += s.len();
            }
            Tok::Optional(inner) => {
                let mut attempt = st.clone();
                if let Some(p) = parse_toks(inner, dialect, input, pos, &mut attempt) {
                    *st = attempt;
                    pos = p;
                }
            }
            Tok::Field(c, n) => {
                let adjacent = toks.get(i + 1).is_some_and(is_numeric_tok);
                pos = parse_field(*c, *n, adjacent, dialect, input, pos, st)?;
            }
        }
    }
    Some(pos)
}

fn parse_field(
    c: char,
    n: usize,
    adjacent: bool,
    dialect: Dialect,
    input: &str,
    pos: usize,
    st: &mut Parsed,
) -> Option<usize> {
    // Text fields first.
    match c {
        'M' | 'L' if n >= 3 => {
            let (m, len) = name_at(input, pos, &MONTHS)?;
            st.month = Some(m as i64 + 1);
            return Some(pos + len);
        }
        'E' => {
            let (_, len) = name_at(input, pos, &DAYS)?;
            return Some(pos + len);
        }
        'a' => {
            let (i, len) = name_at_exact(input, pos, &["AM", "PM"])?;
            st.pm = Some(i == 1);
            return Some(pos + len);
        }
        'G' => {
            let (_, len) = name_at_exact(input, pos, &["AD", "BC"])?;
            return Some(pos + len);
        }
        'X' | 'x' | 'Z' | 'z' => return skip_zone(input, pos),
        _ => {}
    }
    let natural_max = match c {
        'y' | 'Y' | 'u' | 'S' | 'n' => 9,
        'D' => 3,
        _ => 2,
    };
    let (min, max) = if adjacent {
        (n, n)
    } else if dialect == Dialect::Legacy {
        (1, 9)
    } else {
        (1, natural_max.max(n))
    };
    let (v, len) = digits(input, pos, min, max)?;
    match c {
        'y' | 'Y' => st.year = Some(if n == 2 && len == 2 { 2000 + v } else { v }),
        'u' if dialect == Dialect::Modern => {
            st.year = Some(if n == 2 && len == 2 { 2000 + v } else { v })
        }
        'u' | 'w' => {}
        'M' | 'L' => st.month = Some(v),
        'Q' | 'q' => {}
        'd' => st.day = Some(v),
        'D' => st.day_of_year = Some(v),
        'H' => st.hour = Some(v),
        'k' => {
            st.hour = Some(if dialect == Dialect::Modern && v == 24 {
                0
            } else {
                v
            })
        }
        'h' | 'K' => st.hour_of_ampm = Some(v),
        'm' => st.minute = Some(v),
        's' => st.second = Some(v),
        'S' if dialect == Dialect::Legacy => st.milli = Some(v),
        'S' => st.nano = Some(v * 10_i64.pow(9 - len.min(9) as u32)),
        'n' => st.nano = Some(v),
        _ => return None,
    }
    Some(pos + len)
}

fn name_at_exact(input: &str, pos: usize, names: &[&str]) -> Option<(usize, usize)> {
    let rest = input.get(pos..)?;
    names.iter().enumerate().find_map(|(i, name)| {
        rest.get(..name.len())
            .filter(|r| r.eq_ignore_ascii_case(name))
            .map(|_| (i, name.len()))
    })
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let (ny, nm) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    match (
        NaiveDate::from_ymd_opt(ny, nm, 1),
        NaiveDate::from_ymd_opt(year, month, 1),
    ) {
        (Some(next), Some(this)) => (next - this).num_days() as u32,
        _ => 31,
    }
}

/// Builds a date-time with Java's SMART rules: fields must be in range, except that a day-of-month past
/// the end of the month is clamped to its last day and 24:00:00 is midnight of the next day.
pub(crate) fn smart_datetime(
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    nano: i64,
) -> Option<NaiveDateTime> {
    let year = i32::try_from(year).ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let day = (day as u32).min(days_in_month(year, month as u32));
    let date = NaiveDate::from_ymd_opt(year, month as u32, day)?;
    if hour == 24 && minute == 0 && second == 0 && nano == 0 {
        return date.succ_opt()?.and_hms_opt(0, 0, 0);
    }
    if !(0..=23).contains(&hour)
        || !(0..=59).contains(&minute)
        || !(0..=59).contains(&second)
        || !(0..=999_999_999).contains(&nano)
    {
        return None;
    }
    date.and_hms_nano_opt(hour as u32, minute as u32, second as u32, nano as u32)
}

impl Parsed {
    fn hour_of_day(&self, lenient: bool) -> Option<i64> {
        if let Some(h) = self.hour {
            return Some(h);
        }
        match self.hour_of_ampm {
            Some(h) => {
                if !lenient && !(0..=12).contains(&h) {
                    return None;
                }
                Some(h % 12 + if self.pm == Some(true) { 12 } else { 0 })
            }
            None => Some(if self.pm == Some(true) { 12 } else { 0 }),
        }
    }

    fn resolve_smart(&self) -> Option<NaiveDateTime> {
        let year = self.year.unwrap_or(1970);
        let hour = self.hour_of_day(false)?;
        let (minute, second, nano) = (
            self.minute.unwrap_or(0),
            self.second.unwrap_or(0),
            self.nano.unwrap_or(0),
        );
        if let (Some(doy), None, None) = (self.day_of_year, self.month, self.day) {
            let date = NaiveDate::from_yo_opt(i32::try_from(year).ok()?, u32::try_from(doy).ok()?)?;
            return smart_datetime(
                year,
                i64::from(date.month()),
                i64::from(date.day()),
                hour,
                minute,
                second,
                nano,
            );
        }
        smart_datetime(
            year,
            self.month.unwrap_or(1),
            self.day.unwrap_or(1),
            hour,
            minute,
            second,
            nano,
        )
    }

    fn resolve_lenient(&self) -> Option<NaiveDateTime> {
        let year = i32::try_from(self.year.unwrap_or(1970)).ok()?;
        let mut date = NaiveDate::from_ymd_opt(year, 1, 1)?;
        let months = self.month.unwrap_or(1) - 1;
        date = if months >= 0 {
            date.checked_add_months(Months::new(u32::try_from(months).ok()?))?
        } else {
            date.checked_sub_months(Months::new(u32::try_from(-months).ok()?))?
        };
        let days = match (self.day_of_year, self.month, self.day) {
            (Some(doy), None, None) => doy - 1,
            _ => self.day.unwrap_or(1) - 1,
        };
        let mut dt = date
            .checked_add_signed(TimeDelta::try_days(days)?)?
            .and_hms_opt(0, 0, 0)?;
        let hour = self.hour_of_day(true)?;
        for delta in [
            TimeDelta::try_hours(hour)?,
            TimeDelta::try_minutes(self.minute.unwrap_or(0))?,
            TimeDelta::try_seconds(self.second.unwrap_or(0))?,
            TimeDelta::try_milliseconds(self.milli.unwrap_or(0))?,
            TimeDelta::nanoseconds(self.nano.unwrap_or(0)),
        ] {
            dt = dt.checked_add_signed(delta)?;
        }
        Some(dt)
    }
}

/// Flink's default timestamp parser (`yyyy-[M]M-[d]d[ [H]H:[m]m:[s]s[.fraction]]`), used by the one-argument
/// TO_TIMESTAMP. fsql also accepts `T` between date and time (ISO 8601), which Flink rejects.
pub(crate) fn parse_flink_timestamp(s: &str) -> Option<NaiveDateTime> {
    let b = s.as_bytes();
    let (year, n) = digits(s, 0, 4, 4)?;
    let mut p = n;
    let expect = |p: usize, c: u8| (b.get(p) == Some(&c)).then_some(p + 1);
    p = expect(p, b'-')?;
    let (month, n) = digits(s, p, 1, 2)?;
    p = expect(p + n, b'-')?;
    let (day, n) = digits(s, p, 1, 2)?;
    p += n;
    if p == b.len() {
        return smart_datetime(year, month, day, 0, 0, 0, 0);
    }
    if !matches!(b.get(p), Some(b' ') | Some(b'T')) {
        return None;
    }
    let (hour, n) = digits(s, p + 1, 1, 2)?;
    p = expect(p + 1 + n, b':')?;
    let (minute, n) = digits(s, p, 1, 2)?;
    p = expect(p + n, b':')?;
    let (second, n) = digits(s, p, 1, 2)?;
    p += n;
    let mut nano = 0;
    if b.get(p) == Some(&b'.') {
        p += 1;
        if let Some((v, n)) = digits(s, p, 1, 9) {
            nano = v * 10_i64.pow(9 - n as u32);
            p += n;
        }
    }
    if p != b.len() {
        return None;
    }
    smart_datetime(year, month, day, hour, minute, second, nano)
}

/// Flink's default date parser for TO_DATE(string): the part before the first space (fsql: or `T`) is
/// `year[-month[-day]]`, each part an integer, and the date must exist (no clamping).
pub(crate) fn parse_flink_date(s: &str) -> Option<NaiveDate> {
    let s = match s.find([' ', 'T']) {
        Some(i) if i > 0 => s.get(..i)?,
        _ => s,
    };
    let mut parts = s.splitn(3, '-');
    let int = |p: Option<&str>| -> Option<i64> { p?.trim().parse::<i32>().ok().map(i64::from) };
    let year = int(parts.next())?;
    let month = match parts.next() {
        Some(m) => int(Some(m))?,
        None => 1,
    };
    let day = match parts.next() {
        Some(d) => int(Some(d))?,
        None => 1,
    };
    if !(0..=9999).contains(&year) {
        return None;
    }
    NaiveDate::from_ymd_opt(
        i32::try_from(year).ok()?,
        u32::try_from(month).ok()?,
        u32::try_from(day).ok()?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").expect("test datetime")
    }

    fn modern(p: &str) -> Pattern {
        Pattern::compile(p, Dialect::Modern).expect("pattern")
    }

    fn legacy(p: &str) -> Pattern {
        Pattern::compile(p, Dialect::Legacy).expect("pattern")
    }

    #[test]
    fn formats_like_java() {
        let t = dt("2024-02-29 12:34:56.789");
        assert_eq!(
            modern("yyyy-MM-dd HH:mm:ss.SSS").format(&t),
            "2024-02-29 12:34:56.789"
        );
        assert_eq!(
            modern("yyyy/MM/dd EEE MMM hh a").format(&t),
            "2024/02/29 Thu Feb 12 PM"
        );
        assert_eq!(
            modern("D w u yy M d H m s").format(&t),
            "60 9 2024 24 2 29 12 34 56"
        );
        assert_eq!(modern("SS S").format(&t), "78 7");
        assert_eq!(legacy("yyyy-MM-dd u EEE").format(&t), "2024-02-29 4 Thu");
        assert_eq!(legacy("SSS").format(&dt("2024-02-29 12:34:56.000")), "000");
        assert_eq!(modern("w Y").format(&dt("2024-12-31 12:34:56")), "1 2025");
        assert_eq!(
            modern("h K k H a").format(&dt("2024-02-29 00:34:56")),
            "12 0 24 0 AM"
        );
        assert_eq!(
            modern("yyyy-MM-dd'T'HH:mm:ss''X").format(&t),
            "2024-02-29T12:34:56'Z"
        );
        assert_eq!(
            modern("SSSSSS n").format(&dt("2024-02-29 12:34:56.123456")),
            "123456 123456000"
        );
        assert_eq!(modern("MMMM EEEE QQQ").format(&t), "February Thursday Q1");
    }

    #[test]
    fn rejects_bad_patterns() {
        assert!(Pattern::compile("yyyy-MM-dd 'T", Dialect::Modern).is_err());
        assert!(Pattern::compile("yyyy-bb", Dialect::Modern).is_err());
        assert!(Pattern::compile("yyyy]", Dialect::Modern).is_err());
        assert!(Pattern::compile("yyyy {", Dialect::Modern).is_err());
        assert!(Pattern::compile("yyyy [x]", Dialect::Legacy).is_err());
        assert!(Pattern::compile("SSSSSSSSSS", Dialect::Modern).is_err());
        // '[' is a literal in SimpleDateFormat.
        assert!(Pattern::compile("[yyyy]", Dialect::Legacy).is_ok());
    }

    #[test]
    fn parses_modern_smart() {
        let p = modern("dd/MM/yyyy HH:mm");
        assert_eq!(p.parse("29/02/2024 12:34"), Some(dt("2024-02-29 12:34:00")));
        assert_eq!(
            modern("yyyyMMddHHmmssSSS").parse("20240229123456789"),
            Some(dt("2024-02-29 12:34:56.789"))
        );
        assert_eq!(
            modern("yyyy-MM-dd").parse("2024-02-30"),
            Some(dt("2024-02-29 00:00:00"))
        );
        assert_eq!(modern("yyyy-MM-dd").parse("2024-02-32"), None);
        assert_eq!(modern("yyyy-MM-dd").parse("2024-02-29x"), None);
        assert_eq!(
            modern("HH:mm").parse("12:34"),
            Some(dt("1970-01-01 12:34:00"))
        );
        assert_eq!(
            modern("yyyy-MM-dd hh:mm:ss a").parse("2024-02-29 01:02:03 PM"),
            Some(dt("2024-02-29 13:02:03"))
        );
        assert_eq!(
            modern("yyyy-MM-dd[ HH]").parse("2024-02-29 12"),
            Some(dt("2024-02-29 12:00:00"))
        );
        assert_eq!(
            modern("yyyy-MM-dd[ HH]").parse("2024-02-29"),
            Some(dt("2024-02-29 00:00:00"))
        );
        assert_eq!(
            modern("yy-MM-dd").parse("24-02-29"),
            Some(dt("2024-02-29 00:00:00"))
        );
        assert_eq!(
            modern("yyyy-MM-dd'T'HH:mm:ssXXX").parse("2024-02-29T12:34:56+02:00"),
            Some(dt("2024-02-29 12:34:56"))
        );
        assert_eq!(
            modern("yyyy-MM-dd'T'HH:mm:ssX").parse("2024-02-29T12:34:56Z"),
            Some(dt("2024-02-29 12:34:56"))
        );
        assert_eq!(
            modern("dd MMM yyyy").parse("29 feb 2024"),
            Some(dt("2024-02-29 00:00:00"))
        );
        assert_eq!(modern("yyyy-MM-dd HH").parse("2024-02-29 25"), None);
        assert_eq!(
            modern("yyyy D").parse("2024 60"),
            Some(dt("2024-02-29 00:00:00"))
        );
        assert_eq!(modern("yyyy").parse(""), None);
    }

    #[test]
    fn parses_legacy_leniently() {
        let p = legacy("yyyy-MM-dd HH:mm:ss");
        assert_eq!(
            p.parse("2024-02-30 25:00:00"),
            Some(dt("2024-03-02 01:00:00"))
        );
        assert_eq!(
            p.parse("2024-02-29 12:34:56xyz"),
            Some(dt("2024-02-29 12:34:56"))
        );
        assert_eq!(p.parse("2024-2-9 1:2:3"), Some(dt("2024-02-09 01:02:03")));
        assert_eq!(p.parse("2024-02-29"), None);
        assert_eq!(p.parse("bad"), None);
        // SSS counts milliseconds in SimpleDateFormat: ".5" is 5 ms.
        assert_eq!(
            legacy("yyyy-MM-dd HH:mm:ss.SSS").parse("2024-02-29 12:34:56.5"),
            Some(dt("2024-02-29 12:34:56.005"))
        );
        assert_eq!(
            legacy("yyyy-MM-dd").parse("2024-13-01"),
            Some(dt("2025-01-01 00:00:00"))
        );
        assert_eq!(
            legacy("yyyy-MM-dd").parse("2024-00-01"),
            Some(dt("2023-12-01 00:00:00"))
        );
        assert_eq!(
            legacy("yyyyMMdd").parse("20240229"),
            Some(dt("2024-02-29 00:00:00"))
        );
        assert_eq!(legacy("yyyy-MM-dd").parse("999999999-01-01"), None);
    }

    #[test]
    fn default_timestamp_parser() {
        assert_eq!(
            parse_flink_timestamp("2024-02-29 12:34:56"),
            Some(dt("2024-02-29 12:34:56"))
        );
        assert_eq!(
            parse_flink_timestamp("2024-02-29 12:34:56.7"),
            Some(dt("2024-02-29 12:34:56.700"))
        );
        assert_eq!(
            parse_flink_timestamp("2024-02-29 12:34:56.123456"),
            Some(dt("2024-02-29 12:34:56.123456"))
        );
        assert_eq!(
            parse_flink_timestamp("2024-02-29 12:34:56."),
            Some(dt("2024-02-29 12:34:56"))
        );
        assert_eq!(
            parse_flink_timestamp("2024-02-29T12:34:56"),
            Some(dt("2024-02-29 12:34:56"))
        );
        assert_eq!(
            parse_flink_timestamp("2024-02-29"),
            Some(dt("2024-02-29 00:00:00"))
        );
        assert_eq!(
            parse_flink_timestamp("2024-2-9 1:2:3"),
            Some(dt("2024-02-09 01:02:03"))
        );
        assert_eq!(
            parse_flink_timestamp("2024-02-30 12:34:56"),
            Some(dt("2024-02-29 12:34:56"))
        );
        assert_eq!(
            parse_flink_timestamp("2024-02-29 24:00:00"),
            Some(dt("2024-03-01 00:00:00"))
        );
        assert_eq!(parse_flink_timestamp(" 2024-02-29 12:34:56"), None);
        assert_eq!(parse_flink_timestamp("2024-02-29 12:34:56xyz"), None);
        assert_eq!(parse_flink_timestamp("12024-02-29 12:34:56"), None);
        assert_eq!(parse_flink_timestamp("2024-02-29 12:34"), None);
        assert_eq!(parse_flink_timestamp("garbage"), None);
        assert_eq!(parse_flink_timestamp(""), None);
        assert_eq!(parse_flink_timestamp("2024-1é-01"), None);
    }

    #[test]
    fn default_date_parser() {
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
        assert_eq!(parse_flink_date("2024-02-29"), d(2024, 2, 29));
        assert_eq!(parse_flink_date("2024-02-29 12:00:00"), d(2024, 2, 29));
        assert_eq!(parse_flink_date("2024-02-29T12:00:00"), d(2024, 2, 29));
        assert_eq!(parse_flink_date("2024"), d(2024, 1, 1));
        assert_eq!(parse_flink_date("2024-3"), d(2024, 3, 1));
        assert_eq!(parse_flink_date("2024-02-30"), None);
        assert_eq!(parse_flink_date("bad"), None);
        assert_eq!(parse_flink_date(""), None);
    }

    #[test]
    fn us_weeks() {
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).expect("date");
        assert_eq!(us_week(d(2024, 2, 29)), (2024, 9));
        assert_eq!(us_week(d(2024, 12, 31)), (2025, 1));
        assert_eq!(us_week(d(2024, 1, 1)), (2024, 1));
        assert_eq!(us_week(d(2023, 1, 1)), (2023, 1));
        assert_eq!(us_week(d(2023, 1, 8)), (2023, 2));
    }
}
