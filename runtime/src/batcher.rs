//! Size- and linger-bounded batching: a batch is emitted when it holds `max_rows` rows or when its
//! first row has waited `linger`, so latency stays in milliseconds at low rates while throughput
//! stays high at high rates.
//!
//! Configured with Flink's mini-batch option names in `SET` statements:
//! - `'table.exec.mini-batch.size'`: rows per batch, default **1024** (fsql's default; Flink's is
//!   `-1`, "mini-batching off"; values <= 0 mean the default here).
//! - `'table.exec.mini-batch.allow-latency'`: the linger time as a duration (`'5 ms'`, `'1 s'`),
//!   default **5 ms** (fsql's default).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::duration::parse_duration;
use crate::error::RuntimeError;

/// The `SET` key of the batch size in rows.
pub const BATCH_SIZE_KEY: &str = "table.exec.mini-batch.size";
/// The `SET` key of the linger time.
pub const LINGER_KEY: &str = "table.exec.mini-batch.allow-latency";

/// How sources cut their input into batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchConfig {
    /// The most rows in one batch.
    pub max_rows: usize,
    /// The longest a row waits for its batch to fill up.
    pub linger: Duration,
}

impl BatchConfig {
    /// fsql's default batch size (rows).
    pub const DEFAULT_MAX_ROWS: usize = 1024;
    /// fsql's default linger time.
    pub const DEFAULT_LINGER: Duration = Duration::from_millis(5);

    /// Reads the batch size and linger from a pipeline's settings, with fsql's defaults.
    pub fn from_settings(settings: &BTreeMap<String, String>) -> Result<BatchConfig, RuntimeError> {
        let mut config = BatchConfig::default();
        if let Some(size) = settings.get(BATCH_SIZE_KEY) {
            let n: i64 = size.trim().parse().map_err(|_| {
                RuntimeError::Plan(format!(
                    "setting '{BATCH_SIZE_KEY}' = '{size}': expected a number of rows"
                ))
            })?;
            if n > 0 {
                config.max_rows = n as usize;
            }
        }
        if let Some(linger) = settings.get(LINGER_KEY) {
            config.linger = parse_duration(linger)
                .map_err(|e| RuntimeError::Plan(format!("setting '{LINGER_KEY}': {e}")))?;
        }
        Ok(config)
    }
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_rows: Self::DEFAULT_MAX_ROWS,
            linger: Self::DEFAULT_LINGER,
        }
    }
}

/// Tracks one batch being filled: how many rows it holds and since when.
///
/// The clock is passed in (`now`), so the policy is testable without sleeping.
#[derive(Clone, Debug)]
pub struct Batcher {
    config: BatchConfig,
    rows: usize,
    first_row_at: Option<Instant>,
}

impl Batcher {
    /// An empty batcher.
    pub fn new(config: BatchConfig) -> Self {
        Batcher {
            config,
            rows: 0,
            first_row_at: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> BatchConfig {
        self.config
    }

    /// Records `n` more rows at time `now`.
    pub fn add(&mut self, n: usize, now: Instant) {
        if n > 0 && self.rows == 0 {
            self.first_row_at = Some(now);
        }
        self.rows += n;
    }

    /// Rows in the current batch.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// How many more rows fit before the batch is full.
    pub fn room(&self) -> usize {
        self.config.max_rows.saturating_sub(self.rows)
    }

    /// Whether the batch reached its size bound.
    pub fn is_full(&self) -> bool {
        self.rows >= self.config.max_rows
    }

    /// When the batch must be emitted at the latest (its first row's arrival plus the linger).
    pub fn deadline(&self) -> Option<Instant> {
        self.first_row_at.map(|t| t + self.config.linger)
    }

    /// Whether the batch should be emitted now: it is full, or its first row waited `linger`.
    pub fn should_flush(&self, now: Instant) -> bool {
        self.rows > 0 && (self.is_full() || self.deadline().is_some_and(|d| now >= d))
    }

    /// Starts a new, empty batch.
    pub fn reset(&mut self) {
        self.rows = 0;
        self.first_row_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BatchConfig {
        BatchConfig {
            max_rows: 3,
            linger: Duration::from_millis(5),
        }
    }

    #[test]
    fn flushes_when_full() {
        let t0 = Instant::now();
        let mut b = Batcher::new(config());
        b.add(2, t0);
        assert!(!b.should_flush(t0));
        assert_eq!(b.room(), 1);
        b.add(1, t0);
        assert!(b.should_flush(t0), "a full batch goes out at once");
        b.reset();
        assert!(
            !b.should_flush(t0 + Duration::from_secs(1)),
            "an empty batch never flushes"
        );
    }

    #[test]
    fn flushes_after_linger_even_when_not_full() {
        let t0 = Instant::now();
        let mut b = Batcher::new(config());
        b.add(1, t0);
        assert_eq!(b.deadline(), Some(t0 + Duration::from_millis(5)));
        assert!(!b.should_flush(t0 + Duration::from_millis(4)));
        // A later row does not extend the first row's deadline.
        b.add(1, t0 + Duration::from_millis(4));
        assert!(b.should_flush(t0 + Duration::from_millis(5)));
    }

    #[test]
    fn settings_use_flink_names_and_fsql_defaults() {
        assert_eq!(
            BatchConfig::from_settings(&BTreeMap::new()).unwrap(),
            BatchConfig::default()
        );
        let mut s = BTreeMap::new();
        s.insert(BATCH_SIZE_KEY.to_string(), "100".to_string());
        s.insert(LINGER_KEY.to_string(), "2 s".to_string());
        let c = BatchConfig::from_settings(&s).unwrap();
        assert_eq!((c.max_rows, c.linger), (100, Duration::from_secs(2)));
        s.insert(LINGER_KEY.to_string(), "soon".to_string());
        assert!(
            BatchConfig::from_settings(&s)
                .unwrap_err()
                .to_string()
                .contains("allow-latency")
        );
    }
}
