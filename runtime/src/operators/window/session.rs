//! SESSION windows: per key, disjoint sessions `[first, last + gap)`; a row at `t` opens
//! `[t, t + gap)` and merges every session it touches (Flink merges windows that intersect or
//! touch). A session fires when the watermark reaches its end − 1.
//!
//! A partition key's sessions are its value in a [`KeyedState`] of the operator's state backend:
//! with RocksDB, the sessions of keys not used recently are spilled and read back when a row of
//! the key arrives or one of its sessions fires. Their encoding is the checkpoint's.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::operators::agg::value::Value;
use crate::state::codec::{StateError, StateReader, StateWriter};
use crate::state::{KeyedState, StateBackend, ValueCodec};

/// One session of one key, with what it holds (accumulators, or buffered rows).
pub(super) struct Session<T> {
    pub start: i64,
    pub end: i64,
    pub payload: T,
}

/// The sessions of one partition key: disjoint, by start.
struct KeySessions<T> {
    sessions: Vec<Session<T>>,
}

impl<T> Default for KeySessions<T> {
    fn default() -> KeySessions<T> {
        KeySessions {
            sessions: Vec::new(),
        }
    }
}

impl<T> KeySessions<T> {
    /// Writes the sessions: an empty list (where layout 1 kept the key's values), then each
    /// session's bounds and payload.
    fn encode(&self, codec: &ValueCodec<T>, w: &mut StateWriter) -> Result<(), StateError> {
        w.count(0);
        w.count(self.sessions.len());
        for s in &self.sessions {
            w.i64(s.start);
            w.i64(s.end);
            (codec.encode)(&s.payload, w)?;
        }
        Ok(())
    }

    /// Reads what [`KeySessions::encode`] wrote (`payload` reads one payload). The sessions must
    /// be disjoint and sorted, as merging keeps them: [`Sessions::add`] relies on it.
    fn decode(
        r: &mut StateReader<'_>,
        mut payload: impl FnMut(&mut StateReader<'_>) -> Result<T, StateError>,
    ) -> Result<KeySessions<T>, StateError> {
        // Key values written by an older fsql, never used.
        for _ in 0..r.count()? {
            Value::decode(r)?;
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
        if sessions.is_empty() {
            return Err(StateError("a key without sessions".into()));
        }
        Ok(KeySessions { sessions })
    }
}

/// The [`KeyedState`] codec of a key's sessions.
fn value_codec<T: 'static>(payload: &Arc<ValueCodec<T>>) -> ValueCodec<KeySessions<T>> {
    let (write, read) = (Arc::clone(payload), Arc::clone(payload));
    ValueCodec {
        encode: Box::new(move |k: &KeySessions<T>, w: &mut StateWriter| k.encode(&write, w)),
        decode: Box::new(move |r: &mut StateReader<'_>| KeySessions::decode(r, &*read.decode)),
    }
}

/// The sessions of every key.
pub(super) struct Sessions<T> {
    gap: i64,
    keys: KeyedState<KeySessions<T>>,
    /// `(end, key id)` of live sessions (stale entries are skipped when popped).
    fire: BTreeSet<(i64, u32)>,
    /// Live sessions, over all keys (spilled ones included).
    live: usize,
    payload: Arc<ValueCodec<T>>,
    backend: StateBackend,
    name: String,
}

impl<T: 'static> Sessions<T> {
    /// Sessions with a `gap`, kept in `backend` under the table `name`, each session's payload
    /// written and read by `payload` (in checkpoints and in RocksDB alike).
    pub(super) fn new(
        gap: i64,
        backend: &StateBackend,
        name: &str,
        payload: ValueCodec<T>,
    ) -> Sessions<T> {
        let payload = Arc::new(payload);
        Sessions {
            gap,
            keys: KeyedState::new(backend, name, || value_codec(&payload)),
            fire: BTreeSet::new(),
            live: 0,
            payload,
            backend: backend.clone(),
            name: name.to_string(),
        }
    }

    /// Replaces how payloads are read and written, before a restore (the rows a restore reads
    /// may have been written with fewer columns).
    pub(super) fn set_payload(&mut self, payload: ValueCodec<T>) {
        self.payload = Arc::new(payload);
    }

    /// Live sessions.
    pub(super) fn len(&self) -> usize {
        self.live
    }

    /// The session a row of `key` at `t` belongs to after merging, or `None` when that session
    /// would already have fired at `watermark` (the row is late; nothing changes). `merge` adds
    /// a merged session's payload to the new one's.
    pub(super) fn add(
        &mut self,
        key: &[u8],
        t: i64,
        watermark: i64,
        new: impl Fn() -> T,
        mut merge: impl FnMut(&mut T, T),
    ) -> Option<&mut T> {
        let (start, end) = (t, t.saturating_add(self.gap));
        let slot = match self.keys.find(key) {
            Some(s) => s,
            None => {
                if end - 1 <= watermark {
                    return None;
                }
                self.keys.id_or_insert_with(key, KeySessions::default)
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
        // A new key's session is not late (checked above), so a key never stays without one.
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
        // Saturating: the count comes from a checkpoint when the sessions are in RocksDB.
        self.live = (self.live + 1).saturating_sub(last - first);
        ks.sessions.insert(first, merged);
        self.fire.insert((hi, slot));
        Some(&mut ks.sessions[first].payload)
    }

    /// Removes every session ending at or before `watermark + 1`, calling `emit(session)` in
    /// (end, key) order. (A spilled key whose sessions cannot be read back is reported by the
    /// next [`Sessions::settle`].)
    pub(super) fn fire(&mut self, watermark: i64, mut emit: impl FnMut(Session<T>)) {
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
                emit(ks.sessions.remove(0));
                self.live = self.live.saturating_sub(1);
            }
            if ks.sessions.is_empty() {
                self.keys.remove(slot);
            }
        }
    }

    /// Between batches: keeps the backend's resident budget of keys in memory.
    pub(super) fn settle(&mut self) -> Result<(), StateError> {
        self.keys.settle()
    }

    /// Writes whether the sessions are in RocksDB, every key with (in memory) its sessions, the
    /// number of live sessions and the firing queue as it is, stale entries included: they
    /// decide the order in which due sessions are emitted. With RocksDB, the changed sessions
    /// are written to it first.
    pub(super) fn snapshot(&mut self, w: &mut StateWriter) -> Result<(), StateError> {
        self.keys.write_storage(w)?;
        let payload = &self.payload;
        self.keys.snapshot(w, |ks, w| ks.encode(payload, w))?;
        w.count(self.live);
        self.write_queue(w);
        Ok(())
    }

    fn write_queue(&self, w: &mut StateWriter) {
        w.count(self.fire.len());
        for &(end, id) in &self.fire {
            w.i64(end);
            w.u32(id);
        }
    }

    /// Replaces the (empty) sessions with what [`Sessions::snapshot`] wrote. Sessions restored
    /// in memory are shown to `check` (all payloads) before any is spilled.
    pub(super) fn restore(
        &mut self,
        r: &mut StateReader<'_>,
        check: impl FnOnce(&mut dyn Iterator<Item = &T>) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        let keys = if r.bool()? {
            KeyedState::restore_spilled(r, &self.backend, &self.name, || {
                value_codec(&self.payload)
            })?
        } else {
            let payload = &self.payload;
            KeyedState::restore(r, |r| KeySessions::decode(r, &*payload.decode))?
        };
        let live = r.count()?;
        self.restore_from(keys, Some(live), r, check)
    }

    /// Replaces the (empty) sessions with what layout 1 wrote (always in memory: the keys with
    /// their sessions, then the firing queue), each payload read by `payload`.
    pub(super) fn restore_layout_1(
        &mut self,
        r: &mut StateReader<'_>,
        mut payload: impl FnMut(&mut StateReader<'_>) -> Result<T, StateError>,
    ) -> Result<(), StateError> {
        let keys = KeyedState::restore(r, |r| KeySessions::decode(r, &mut payload))?;
        self.restore_from(keys, None, r, |_| Ok(()))
    }

    /// Takes `keys` (restored in memory or, spilled, from RocksDB) with `live` sessions (counted
    /// when `None`), and reads the firing queue. In memory, the count must match the sessions
    /// and `check` accept their payloads.
    fn restore_from(
        &mut self,
        keys: KeyedState<KeySessions<T>>,
        live: Option<usize>,
        r: &mut StateReader<'_>,
        check: impl FnOnce(&mut dyn Iterator<Item = &T>) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        let mut fire = BTreeSet::new();
        for _ in 0..r.count()? {
            let (end, id) = (r.i64()?, r.u32()?);
            if !fire.insert((end, id)) {
                return Err(StateError("a session is queued twice".into()));
            }
        }
        let (keys, live) = if keys.in_rocksdb() {
            let live = live.ok_or_else(|| StateError("spilled sessions without a count".into()))?;
            (keys, live)
        } else {
            let counted = keys.values().map(|(_, k)| k.sessions.len()).sum();
            if live.is_some_and(|n| n != counted) {
                return Err(StateError(
                    "the number of sessions disagrees with the sessions".into(),
                ));
            }
            check(
                &mut keys
                    .values()
                    .flat_map(|(_, k)| k.sessions.iter().map(|s| &s.payload)),
            )?;
            let payload = &self.payload;
            let keys = keys.into_backend(&self.backend, &self.name, || value_codec(payload))?;
            (keys, counted)
        };
        self.live = live;
        self.keys = keys;
        self.fire = fire;
        Ok(())
    }
}

#[cfg(test)]
impl<T: 'static> Sessions<T> {
    /// Writes the sessions (kept in memory) as layout 1 did: every key with its sessions, each
    /// payload written by `payload`, then the firing queue.
    pub(super) fn snapshot_layout_1(
        &self,
        w: &mut StateWriter,
        mut payload: impl FnMut(&T, &mut StateWriter),
    ) {
        self.keys
            .snapshot(w, |ks, w| {
                w.count(0);
                w.count(ks.sessions.len());
                for s in &ks.sessions {
                    w.i64(s.start);
                    w.i64(s.end);
                    payload(&s.payload, w);
                }
                Ok(())
            })
            .unwrap();
        self.write_queue(w);
    }
}
