//! SESSION windows: per key, disjoint sessions `[first, last + gap)`; a row at `t` opens
//! `[t, t + gap)` and merges every session it touches (Flink merges windows that intersect or
//! touch). A session fires when the watermark reaches its end − 1.

use std::collections::{BTreeSet, HashMap};

use crate::operators::agg::key::FxBuild;
use crate::operators::agg::value::Value;

/// One session of one key, with what it holds (accumulators, or buffered rows).
pub(super) struct Session<T> {
    pub start: i64,
    pub end: i64,
    pub payload: T,
}

struct KeySessions<T> {
    /// The key's row encoding (its entry in the index); empty when the slot is free.
    bytes: Box<[u8]>,
    key: Vec<Value>,
    /// Disjoint, by start.
    sessions: Vec<Session<T>>,
}

/// The sessions of every key.
pub(super) struct Sessions<T> {
    gap: i64,
    index: HashMap<Box<[u8]>, usize, FxBuild>,
    slots: Vec<KeySessions<T>>,
    free: Vec<usize>,
    /// `(end, slot)` of live sessions (stale entries are skipped when popped).
    fire: BTreeSet<(i64, usize)>,
}

impl<T> Sessions<T> {
    pub(super) fn new(gap: i64) -> Sessions<T> {
        Sessions {
            gap,
            index: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            fire: BTreeSet::new(),
        }
    }

    /// Live sessions.
    pub(super) fn len(&self) -> usize {
        self.slots.iter().map(|k| k.sessions.len()).sum()
    }

    /// The session a row of `key` at `t` belongs to after merging, or `None` when that session
    /// would already have fired at `watermark` (the row is late; nothing changes).
    pub(super) fn add(
        &mut self,
        key: &[u8],
        key_values: impl FnOnce() -> Vec<Value>,
        t: i64,
        watermark: i64,
        new: impl Fn() -> T,
        merge: impl Fn(&mut T, T),
    ) -> Option<&mut T> {
        let (start, end) = (t, t.saturating_add(self.gap));
        let slot = match self.index.get(key) {
            Some(&s) => s,
            None => {
                if end - 1 <= watermark {
                    return None;
                }
                let ks = KeySessions {
                    bytes: key.into(),
                    key: key_values(),
                    sessions: Vec::new(),
                };
                let s = match self.free.pop() {
                    Some(s) => {
                        self.slots[s] = ks;
                        s
                    }
                    None => {
                        self.slots.push(ks);
                        self.slots.len() - 1
                    }
                };
                self.index.insert(key.into(), s);
                s
            }
        };
        let ks = &mut self.slots[slot];
        // Sessions touching [start, end].
        let first = ks.sessions.partition_point(|s| s.end < start);
        let last = ks.sessions.partition_point(|s| s.start <= end);
        let (mut lo, mut hi) = (start, end);
        for s in &ks.sessions[first..last] {
            lo = lo.min(s.start);
            hi = hi.max(s.end);
        }
        if hi - 1 <= watermark {
            return None;
        }
        let mut merged = Session {
            start: lo,
            end: hi,
            payload: new(),
        };
        for s in ks.sessions.drain(first..last) {
            merge(&mut merged.payload, s.payload);
        }
        ks.sessions.insert(first, merged);
        self.fire.insert((hi, slot));
        Some(&mut ks.sessions[first].payload)
    }

    /// Removes every session ending at or before `watermark + 1`, calling `emit(key, session)`
    /// in (end, key) order.
    pub(super) fn fire(&mut self, watermark: i64, mut emit: impl FnMut(&[Value], Session<T>)) {
        while let Some(&(end, slot)) = self.fire.first() {
            if end - 1 > watermark {
                break;
            }
            self.fire.pop_first();
            let Some(ks) = self.slots.get_mut(slot) else {
                continue;
            };
            if ks.sessions.is_empty() {
                // A stale entry of a freed slot.
                continue;
            }
            // Sessions are disjoint and sorted, so the due ones are a prefix.
            while ks.sessions.first().is_some_and(|s| s.end - 1 <= watermark) {
                let s = ks.sessions.remove(0);
                emit(&ks.key, s);
            }
            if ks.sessions.is_empty() {
                self.index.remove(&ks.bytes);
                ks.key.clear();
                self.free.push(slot);
            }
        }
    }
}
