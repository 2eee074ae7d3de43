//! Which windows and slices an event time belongs to, for TUMBLE, HOP and CUMULATE.
//!
//! A slice is the largest interval no window boundary cuts: every window is a run of whole
//! slices, so per-slice accumulators merged at firing time give each window's result.

use fsql_plan::WindowKind;

/// The slice and window geometry of one TUMBLE, HOP or CUMULATE window TVF (milliseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slicing {
    Tumble {
        size: i64,
        offset: i64,
    },
    /// `slice` = the slide when it divides the size, else `gcd(size, slide)`.
    Hop {
        size: i64,
        slide: i64,
        offset: i64,
        slice: i64,
    },
    Cumulate {
        step: i64,
        size: i64,
        offset: i64,
    },
}

impl Slicing {
    /// The slicing of `kind`; `None` for SESSION (not sliced) or non-positive sizes.
    pub(crate) fn of(kind: &WindowKind) -> Option<Slicing> {
        match *kind {
            WindowKind::Tumble { size_ms, offset_ms } if size_ms > 0 => Some(Slicing::Tumble {
                size: size_ms,
                offset: offset_ms,
            }),
            WindowKind::Hop {
                size_ms,
                slide_ms,
                offset_ms,
            } if size_ms > 0 && slide_ms > 0 => Some(Slicing::Hop {
                size: size_ms,
                slide: slide_ms,
                offset: offset_ms,
                slice: gcd(size_ms, slide_ms),
            }),
            WindowKind::Cumulate {
                step_ms,
                size_ms,
                offset_ms,
            } if step_ms > 0 && size_ms > 0 && size_ms % step_ms == 0 => Some(Slicing::Cumulate {
                step: step_ms,
                size: size_ms,
                offset: offset_ms,
            }),
            _ => None,
        }
    }

    fn slice_width(&self) -> i64 {
        match *self {
            Slicing::Tumble { size, .. } => size,
            Slicing::Hop { slice, .. } => slice,
            Slicing::Cumulate { step, .. } => step,
        }
    }

    fn offset(&self) -> i64 {
        match *self {
            Slicing::Tumble { offset, .. }
            | Slicing::Hop { offset, .. }
            | Slicing::Cumulate { offset, .. } => offset,
        }
    }

    /// The end of the slice holding event time `t`.
    pub(crate) fn slice_end(&self, t: i64) -> i64 {
        let w = self.slice_width();
        align(t, w, self.offset()).saturating_add(w)
    }

    /// Every window `(start, end)` containing the slice ending at `slice_end`, by end.
    pub(crate) fn windows_of_slice(&self, slice_end: i64, out: &mut Vec<(i64, i64)>) {
        out.clear();
        match *self {
            Slicing::Tumble { size, .. } => out.push((slice_end - size, slice_end)),
            Slicing::Hop {
                size,
                slide,
                offset,
                slice,
            } => {
                // Windows start on the slide grid (as Flink's sliding windows do), at or before
                // the slice's start, and end at or after the slice's end.
                let mut start = align(slice_end - slice, slide, offset);
                while start + size >= slice_end {
                    out.push((start, start + size));
                    start -= slide;
                }
                out.reverse();
            }
            Slicing::Cumulate { step, size, offset } => {
                let start = align(slice_end - step, size, offset);
                let mut end = slice_end;
                while end <= start + size {
                    out.push((start, end));
                    end += step;
                }
            }
        }
    }

    /// The last window end a slice contributes to: it is freed once that window fired.
    pub(crate) fn last_window_end(&self, slice_end: i64) -> i64 {
        match *self {
            Slicing::Tumble { .. } => slice_end,
            Slicing::Hop {
                size,
                slide,
                offset,
                slice,
            } => align(slice_end - slice, slide, offset) + size,
            Slicing::Cumulate { step, size, offset } => {
                align(slice_end - step, size, offset) + size
            }
        }
    }
}

/// The start of the `width` grid cell (shifted by `offset`) holding `t`.
fn align(t: i64, width: i64, offset: i64) -> i64 {
    t - (t - offset).rem_euclid(width)
}

fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn windows(s: &Slicing, t: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        s.windows_of_slice(s.slice_end(t), &mut out);
        out
    }

    /// Every window containing `t`, by brute force over the window grid.
    fn brute(kind: &WindowKind, t: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        match *kind {
            WindowKind::Hop {
                size_ms,
                slide_ms,
                offset_ms,
            } => {
                let mut start = align(t - 10 * size_ms, slide_ms, offset_ms);
                while start <= t {
                    if t < start + size_ms {
                        out.push((start, start + size_ms));
                    }
                    start += slide_ms;
                }
            }
            WindowKind::Cumulate {
                step_ms,
                size_ms,
                offset_ms,
            } => {
                let start = align(t, size_ms, offset_ms);
                let mut end = start + step_ms;
                while end <= start + size_ms {
                    if t < end {
                        out.push((start, end));
                    }
                    end += step_ms;
                }
            }
            WindowKind::Tumble { size_ms, offset_ms } => {
                let s = align(t, size_ms, offset_ms);
                out.push((s, s + size_ms));
            }
            WindowKind::Session { .. } => {}
        }
        out
    }

    #[test]
    fn slices_give_exactly_the_windows_containing_an_event() {
        let kinds = [
            WindowKind::Tumble {
                size_ms: 10 * MIN,
                offset_ms: 0,
            },
            WindowKind::Tumble {
                size_ms: 10 * MIN,
                offset_ms: 3 * MIN,
            },
            WindowKind::Hop {
                size_ms: 10 * MIN,
                slide_ms: 5 * MIN,
                offset_ms: 0,
            },
            WindowKind::Hop {
                size_ms: 10 * MIN,
                slide_ms: 4 * MIN,
                offset_ms: MIN,
            },
            WindowKind::Hop {
                size_ms: 3 * MIN,
                slide_ms: 5 * MIN,
                offset_ms: 0,
            },
            WindowKind::Cumulate {
                step_ms: 2 * MIN,
                size_ms: 10 * MIN,
                offset_ms: 0,
            },
        ];
        for kind in &kinds {
            let s = Slicing::of(kind).expect("sliced");
            for t in (-30 * MIN..30 * MIN).step_by(17_000) {
                let got = windows(&s, t);
                assert_eq!(got, brute(kind, t), "{kind:?} at {t}");
                if let Some(last) = got.last() {
                    assert_eq!(s.last_window_end(s.slice_end(t)), last.1, "{kind:?} at {t}");
                }
            }
        }
    }

    #[test]
    fn flink_doc_windows() {
        // HOP 10 min / 5 min: an event at 08:07 is in [08:00, 08:10) and [08:05, 08:15); windows
        // start on the slide grid.
        let hop = Slicing::of(&WindowKind::Hop {
            size_ms: 10 * MIN,
            slide_ms: 5 * MIN,
            offset_ms: 0,
        })
        .unwrap();
        assert_eq!(
            windows(&hop, 487 * MIN),
            vec![(480 * MIN, 490 * MIN), (485 * MIN, 495 * MIN)]
        );
    }
}
