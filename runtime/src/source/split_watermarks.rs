//! Per-split watermarks with an idle timeout (Flink's per-partition watermarks).
//!
//! A source whose input is divided into splits (Kafka partitions) reads them interleaved, each
//! in its own order. A single watermark over all rows would run ahead of the slowest split and
//! make its rows late. So each split keeps its own watermark (the maximum of the `WATERMARK FOR`
//! expression over its rows), and the source's watermark is the **minimum over its splits**. An
//! assigned split that has produced nothing yet holds the watermark back too.
//!
//! A split that sends nothing for the idle timeout (`'scan.watermark.idle-timeout'` or
//! `SET 'table.exec.source.idle-timeout'`, processing time, off by default as in Flink) stops
//! holding it back until it has rows again. When every split is idle the watermark stays where
//! it is. The source's watermark never goes back: rows of a split that wakes up behind it are
//! late.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The watermark state of one split.
#[derive(Clone, Copy, Debug)]
struct Split {
    /// The maximum watermark value over its rows (`i64::MIN` before the first).
    wm: i64,
    /// When it last produced a row (or was assigned).
    active_at: Instant,
}

/// Tracks the watermark of each split of one source and combines them.
#[derive(Clone, Debug, Default)]
pub struct SplitWatermarks {
    splits: BTreeMap<u32, Split>,
    idle_timeout: Option<Duration>,
}

impl SplitWatermarks {
    /// No splits yet; `idle_timeout` of `None` (or zero) never marks a split idle.
    pub fn new(idle_timeout: Option<Duration>) -> Self {
        SplitWatermarks {
            splits: BTreeMap::new(),
            idle_timeout: idle_timeout.filter(|d| !d.is_zero()),
        }
    }

    /// The splits currently assigned: new ones start active at `now` with no watermark; splits
    /// no longer assigned stop counting.
    pub fn assign(&mut self, splits: &[u32], now: Instant) {
        self.splits.retain(|id, _| splits.contains(id));
        for id in splits {
            self.splits.entry(*id).or_insert(Split {
                wm: i64::MIN,
                active_at: now,
            });
        }
    }

    /// Split `id` produced rows whose largest watermark value is `wm` (`None`: all NULL).
    pub fn observe(&mut self, id: u32, wm: Option<i64>, now: Instant) {
        let split = self.splits.entry(id).or_insert(Split {
            wm: i64::MIN,
            active_at: now,
        });
        split.active_at = now;
        if let Some(w) = wm {
            split.wm = split.wm.max(w);
        }
    }

    /// The minimum watermark over the splits that are not idle at `now`; `None` when there are
    /// no splits or all are idle (the source's watermark should then stay where it is).
    pub fn current(&self, now: Instant) -> Option<i64> {
        self.splits
            .values()
            .filter(|s| !self.is_idle(s, now))
            .map(|s| s.wm)
            .min()
    }

    /// When the next split becomes idle if nothing arrives (so the caller can re-check then).
    pub fn next_idle_at(&self, now: Instant) -> Option<Instant> {
        let timeout = self.idle_timeout?;
        self.splits
            .values()
            .map(|s| s.active_at + timeout)
            .filter(|t| *t > now)
            .min()
    }

    /// Each split's watermark (`i64::MIN`: none yet), for a checkpoint.
    pub fn saved(&self) -> Vec<(u32, i64)> {
        self.splits.iter().map(|(id, s)| (*id, s.wm)).collect()
    }

    /// Takes the splits' watermarks from a checkpoint: a split that had ended is then not
    /// waited for again (it has nothing more to send, and its last watermark still counts).
    pub fn restore(&mut self, saved: &[(u32, i64)], now: Instant) {
        for (id, wm) in saved {
            self.observe(*id, (*wm > i64::MIN).then_some(*wm), now);
        }
    }

    fn is_idle(&self, split: &Split, now: Instant) -> bool {
        self.idle_timeout
            .is_some_and(|t| now.saturating_duration_since(split.active_at) >= t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(base: Instant, n: u64) -> Instant {
        base + Duration::from_millis(n)
    }

    #[test]
    fn the_slowest_split_holds_the_watermark_back() {
        let t = Instant::now();
        let mut w = SplitWatermarks::new(None);
        w.assign(&[0, 1], t);
        assert_eq!(w.current(t), Some(i64::MIN), "split 1 has no rows yet");
        w.observe(0, Some(1_000), t);
        assert_eq!(w.current(t), Some(i64::MIN));
        w.observe(1, Some(400), t);
        assert_eq!(w.current(t), Some(400));
        w.observe(1, Some(300), t);
        assert_eq!(
            w.current(t),
            Some(400),
            "a split's watermark never goes back"
        );
        w.observe(1, Some(2_000), t);
        assert_eq!(w.current(t), Some(1_000));
    }

    #[test]
    fn an_idle_split_stops_holding_it_back_until_it_has_rows_again() {
        let t = Instant::now();
        let mut w = SplitWatermarks::new(Some(Duration::from_millis(100)));
        w.assign(&[0, 1], t);
        w.observe(0, Some(5_000), ms(t, 50));
        assert_eq!(w.current(ms(t, 99)), Some(i64::MIN));
        assert_eq!(w.next_idle_at(ms(t, 99)), Some(ms(t, 100)));
        assert_eq!(w.current(ms(t, 100)), Some(5_000), "split 1 is idle");
        assert_eq!(w.current(ms(t, 150)), None, "both idle: stay put");
        w.observe(1, Some(4_000), ms(t, 160));
        assert_eq!(
            w.current(ms(t, 160)),
            Some(4_000),
            "split 1 is active again"
        );
    }

    #[test]
    fn unassigned_splits_stop_counting() {
        let t = Instant::now();
        let mut w = SplitWatermarks::new(None);
        w.assign(&[0, 1, 2], t);
        w.observe(0, Some(10), t);
        w.observe(1, Some(20), t);
        w.assign(&[0, 1], t);
        assert_eq!(w.current(t), Some(10));
        w.assign(&[], t);
        assert_eq!(w.current(t), None);
    }

    #[test]
    fn zero_timeout_means_never_idle() {
        let t = Instant::now();
        let mut w = SplitWatermarks::new(Some(Duration::ZERO));
        w.assign(&[0], t);
        assert_eq!(w.current(ms(t, 1_000_000)), Some(i64::MIN));
        assert_eq!(w.next_idle_at(t), None);
    }
}
