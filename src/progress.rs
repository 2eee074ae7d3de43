//! Live progress of `fsql run` on stderr: on a terminal, one status line redrawn in place; otherwise
//! (a service's log) one `progress:` line per interval.
//!
//! ```text
//! progress: 12.0 s | in 20,013/s (240,156) | out 20,010/s (240,100) | lag 0 | watermark 2024-01-01 00:04:00.000 | dead letters 0 | late 0
//! ```
//!
//! Rates are over the last interval; totals are in parentheses. `lag` (records in the source topics
//! not read yet) appears for Kafka sources, `watermark` (the lowest source watermark, UTC) once
//! there is one.

use std::io::Write;

use fsql_runtime::metrics::Progress;
use fsql_runtime::text::civil_from_days;

/// Reports `Progress` on stderr: redrawn in place on a terminal, a line each time otherwise.
pub fn reporter(terminal: bool) -> Box<dyn FnMut(&Progress)> {
    let mut previous: Option<Progress> = None;
    Box::new(move |p: &Progress| {
        let line = render(p, previous.as_ref());
        let mut err = std::io::stderr().lock();
        // A report that cannot be written (closed stderr) is not worth stopping the run for.
        let _ = if terminal {
            write!(err, "\r\x1b[K{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
        previous = Some(p.clone());
    })
}

/// Clears a status line left on a terminal (before the run's summary is printed).
pub fn clear_line() {
    eprint!("\r\x1b[K");
}

/// One progress line; rates against `previous` (or since the start).
pub fn render(p: &Progress, previous: Option<&Progress>) -> String {
    let (since, rows_in, rows_out) = previous.map_or((0.0, 0, 0), |q| {
        (q.elapsed.as_secs_f64(), q.rows_in, q.rows_out)
    });
    let seconds = (p.elapsed.as_secs_f64() - since).max(1e-9);
    let rate = |now: u64, before: u64| now.saturating_sub(before) as f64 / seconds;
    let mut line = format!(
        "progress: {:.1} s | in {}/s ({}) | out {}/s ({})",
        p.elapsed.as_secs_f64(),
        grouped(rate(p.rows_in, rows_in).round() as u64),
        grouped(p.rows_in),
        grouped(rate(p.rows_out, rows_out).round() as u64),
        grouped(p.rows_out),
    );
    if let Some(lag) = p.lag {
        line.push_str(&format!(" | lag {}", grouped(lag)));
    }
    if let Some(w) = p.watermark {
        // The input ended: the final watermark is not a time.
        let at = if w == i64::MAX {
            "end of input".to_string()
        } else {
            timestamp(w)
        };
        line.push_str(&format!(" | watermark {at}"));
    }
    line.push_str(&format!(
        " | dead letters {} | late {}",
        grouped(p.malformed),
        grouped(p.late)
    ));
    line
}

/// `1234567` → `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Epoch milliseconds as `YYYY-MM-DD HH:MM:SS.mmm` (UTC).
fn timestamp(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn progress(seconds: u64, rows_in: u64, rows_out: u64) -> Progress {
        Progress {
            elapsed: Duration::from_secs(seconds),
            rows_in,
            rows_out,
            malformed: 3,
            late: 0,
            watermark: Some(1_704_067_440_000),
            lag: Some(1500),
        }
    }

    #[test]
    fn a_line_has_rates_over_the_interval_and_totals() {
        let before = progress(10, 200_000, 199_000);
        let now = progress(11, 220_013, 219_010);
        assert_eq!(
            render(&now, Some(&before)),
            "progress: 11.0 s | in 20,013/s (220,013) | out 20,010/s (219,010) | lag 1,500 | \
             watermark 2024-01-01 00:04:00.000 | dead letters 3 | late 0"
        );
    }

    #[test]
    fn sources_without_lag_or_watermark_leave_them_out() {
        let mut p = progress(2, 10, 10);
        p.lag = None;
        p.watermark = None;
        assert_eq!(
            render(&p, None),
            "progress: 2.0 s | in 5/s (10) | out 5/s (10) | dead letters 3 | late 0"
        );
    }
}
