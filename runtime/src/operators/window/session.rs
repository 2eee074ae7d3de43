//! SESSION windows: per key, disjoint sessions `[first, last + gap)`; a row at `t` opens
//! `[t, t + gap)` and merges every session it touches (Flink merges windows that intersect or
//! touch). A session fires when the watermark reaches its end − 1.

use std::collections::BTreeSet;

use crate::operators::agg::value::Value;
use crate::state::KeyedState;
use crate::state::codec::{StateError, StateReader, StateWriter};

/// One session of one key, with what it holds (accumulators, or buffered rows).
pub(super) struct Session<T> {
    pub start: i64,
    pub end: i64,
    pub payload: T,
}

struct KeySessions<T> {
    key: Vec<Value>,
    /// Disjoint, by start.
    sessions: Vec<Session<T>>,
}

/// The sessions of every key.
pub(super) struct Sessions<T> {
    gap: i64,
    keys: KeyedState<KeySessions<T>>,
    /// `(end, key id)` of live sessions (stale entries are skipped when popped).
    fire: BTreeSet<(i64, u32)>,
}

impl<T> Sessions<T> {
    pub(super) fn new(gap: i64) -> Sessions<T> {
        Sessions {
            gap,
            keys: KeyedState::default(),
            fire: BTreeSet::new(),
        }
    }

    /// Live sessions.
    pub(super) fn len(&self) -> usize {
        self.keys.values().map(|(_, k)| k.sessions.len()).sum()
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
        let slot = match self.keys.find(key) {
            Some(s) => s,
            None => {
                if end - 1 <= watermark {
                    return None;
                }
                self.keys.id_or_insert_with(key, || KeySessions {
                    key: key_values(),
                    sessions: Vec::new(),
                })
            }
        };
        let ks = self.keys.get_mut(slot)?;
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
            let Some(ks) = self.keys.get_mut(slot) else {
                // A stale entry of a key whose sessions all fired.
                continue;
            };
            // Sessions are disjoint and sorted, so the due ones are a prefix.
            while ks.sessions.first().is_some_and(|s| s.end - 1 <= watermark) {
                let s = ks.sessions.remove(0);
                emit(&ks.key, s);
            }
            if ks.sessions.is_empty() {
                self.keys.remove(slot);
            }
        }
    }
}

impl<T> Sessions<T> {
    /// Every live session's payload, in the order [`Sessions::snapshot`] writes them (by key
    /// id, then by start).
    pub(super) fn payloads(&self) -> impl Iterator<Item = &T> {
        self.keys
            .values()
            .flat_map(|(_, k)| k.sessions.iter().map(|s| &s.payload))
    }

    /// Writes every key's sessions (`payload` writes what one holds) and the firing queue as it
    /// is, stale entries included: they decide the order in which due sessions are emitted.
    pub(super) fn snapshot(
        &self,
        w: &mut StateWriter,
        mut payload: impl FnMut(&T, &mut StateWriter) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        self.keys.snapshot(w, |ks, w| {
            w.count(ks.key.len());
            for v in &ks.key {
                v.encode(w);
            }
            w.count(ks.sessions.len());
            for s in &ks.sessions {
                w.i64(s.start);
                w.i64(s.end);
                payload(&s.payload, w)?;
            }
            Ok(())
        })?;
        w.count(self.fire.len());
        for &(end, id) in &self.fire {
            w.i64(end);
            w.u32(id);
        }
        Ok(())
    }

    /// Replaces the (empty) sessions with what [`Sessions::snapshot`] wrote (`payload` reads
    /// what one session holds). A key's sessions must be disjoint and sorted, as merging keeps
    /// them: [`Sessions::add`] relies on it.
    pub(super) fn restore(
        &mut self,
        r: &mut StateReader<'_>,
        mut payload: impl FnMut(&mut StateReader<'_>) -> Result<T, StateError>,
    ) -> Result<(), StateError> {
        let keys = KeyedState::restore(r, |r| {
            let mut key = Vec::new();
            for _ in 0..r.count()? {
                key.push(Value::decode(r)?);
            }
            let mut sessions: Vec<Session<T>> = Vec::new();
            for _ in 0..r.count()? {
                let (start, end) = (r.i64()?, r.i64()?);
                if start >= end || sessions.last().is_some_and(|s| s.end >= start) {
                    return Err(StateError(format!(
                        "session [{start}, {end}) is empty or overlaps the one before"
                    )));
                }
                sessions.push(Session {
                    start,
                    end,
                    payload: payload(r)?,
                });
            }
            Ok(KeySessions { key, sessions })
        })?;
        let mut fire = BTreeSet::new();
        for _ in 0..r.count()? {
            if !fire.insert((r.i64()?, r.u32()?)) {
                return Err(StateError("a session is queued twice".into()));
            }
        }
        self.keys = keys;
        self.fire = fire;
        Ok(())
    }
}
