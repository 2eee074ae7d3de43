//! The state of a sliced window aggregation (TUMBLE, HOP, CUMULATE): per slice, one accumulator
//! set per key.
//!
//! Keys are numbered once (a [`KeyedState`]), so a slice finds a key's accumulators by number and a
//! firing window merges its slices into a dense scratch table indexed by key number — no hashing
//! of key bytes per (slice, key) when a HOP window merges `size / slide` slices.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::Slicing;
use crate::operators::agg::accumulator::Accumulator;
use crate::operators::agg::key::FxBuild;
use crate::state::KeyedState;
use crate::state::codec::{StateError, StateReader, StateWriter};

/// A numbered key: how many slices hold it, and where it was last found — the slice it was last
/// added to and its position there — so a key's next row in the same slice (every row of a
/// TUMBLE window) needs no lookup in the slice.
#[derive(Clone, Copy)]
struct KeyEntry {
    slices: u32,
    last_pos: u32,
    /// The end of that slice; `NO_SLICE` when it is freed.
    last_slice: i64,
}

const NO_SLICE: i64 = i64::MIN;

/// One slice: per key number, one accumulator per aggregate, stored flat (`width` per key) in
/// first-seen order of the keys. `index` holds the positions of the keys whose last slice is a
/// later one (the others are found through their [`KeyEntry`]).
#[derive(Default)]
struct Slice {
    index: HashMap<u32, u32, FxBuild>,
    ids: Vec<u32>,
    accs: Vec<Accumulator>,
}

/// A fired window's result for one key.
pub(super) struct Fired<'a> {
    pub start: i64,
    pub end: i64,
    /// The key, row-encoded.
    pub key: &'a [u8],
    pub accs: &'a [Accumulator],
}

/// Sliced windows of every key.
pub(super) struct SlicedState {
    slicing: Slicing,
    /// Accumulators per key (the aggregates).
    width: usize,
    /// The numbering of live keys (a key leaves when no slice holds it).
    keys: KeyedState<KeyEntry>,
    /// By slice end.
    slices: BTreeMap<i64, Slice>,
    /// Windows with at least one slice, as (end, start), not yet fired.
    pending: BTreeSet<(i64, i64)>,
    /// Scratch for merging: key number → position in `merged`, or `u32::MAX`.
    slot: Vec<u32>,
    merged_ids: Vec<u32>,
    merged: Vec<Accumulator>,
    windows: Vec<(i64, i64)>,
    /// A window whose results were partly emitted.
    cursor: Option<Cursor>,
}

impl SlicedState {
    pub(super) fn new(slicing: Slicing, width: usize) -> SlicedState {
        SlicedState {
            slicing,
            width,
            keys: KeyedState::default(),
            slices: BTreeMap::new(),
            pending: BTreeSet::new(),
            slot: Vec::new(),
            merged_ids: Vec::new(),
            merged: Vec::new(),
            windows: Vec::new(),
            cursor: None,
        }
    }

    /// Slices holding state.
    pub(super) fn len(&self) -> usize {
        self.slices.len()
    }

    /// The end of the slice holding event time `t`.
    pub(super) fn slice_end(&self, t: i64) -> i64 {
        self.slicing.slice_end(t)
    }

    /// The accumulators of `key` in the slice ending at `slice_end`, or `None` when that slice
    /// is in no window (between HOP windows smaller than their slide).
    pub(super) fn accumulators(
        &mut self,
        slice_end: i64,
        key: &[u8],
        new: impl FnOnce() -> Vec<Accumulator>,
    ) -> Option<&mut [Accumulator]> {
        if !self.slices.contains_key(&slice_end) {
            self.slicing.windows_of_slice(slice_end, &mut self.windows);
            if self.windows.is_empty() {
                return None;
            }
            self.pending
                .extend(self.windows.iter().map(|&(s, e)| (e, s)));
            self.slices.insert(slice_end, Slice::default());
        }
        let id = self.keys.id_or_insert_with(key, || KeyEntry {
            slices: 0,
            last_pos: 0,
            last_slice: NO_SLICE,
        });
        let entry = *self.keys.get(id)?;
        if entry.last_slice == slice_end {
            let at = entry.last_pos as usize;
            let slice = self.slices.get_mut(&slice_end)?;
            return slice.accs.get_mut(at * self.width..(at + 1) * self.width);
        }
        // The key's last slice is another one: its position there goes into that slice's index.
        if let Some(last) = self.slices.get_mut(&entry.last_slice) {
            last.index.insert(id, entry.last_pos);
        }
        let slice = self.slices.get_mut(&slice_end)?;
        let (at, slices) = match slice.index.get(&id) {
            Some(&at) => (at as usize, entry.slices),
            None => {
                let at = slice.ids.len();
                slice.ids.push(id);
                slice.accs.extend(new());
                (at, entry.slices + 1)
            }
        };
        if let Some(e) = self.keys.get_mut(id) {
            *e = KeyEntry {
                slices,
                last_pos: at as u32,
                last_slice: slice_end,
            };
        }
        slice.accs.get_mut(at * self.width..(at + 1) * self.width)
    }

    /// Fires the windows ending at or before `w + 1` (by end, keys in first-seen order), emitting
    /// at most `max_rows` results; returns whether more remain (call again with the same `w`).
    /// Once every due window is out, frees the slices no later window needs.
    pub(super) fn fire(
        &mut self,
        w: i64,
        max_rows: usize,
        merge: impl Fn(&mut [Accumulator], &[Accumulator]),
        mut emit: impl FnMut(Fired<'_>),
    ) -> bool {
        let width = self.width;
        let mut emitted = 0;
        loop {
            let cursor = match self.cursor.take() {
                Some(c) => c,
                None => {
                    let Some(&(end, start)) = self.pending.first() else {
                        break;
                    };
                    if end - 1 > w {
                        break;
                    }
                    self.pending.pop_first();
                    let mut slices = self.slices.range(start + 1..=end);
                    let single = match (slices.next(), slices.next()) {
                        (Some((&se, _)), None) => Some(se),
                        _ => None,
                    };
                    if single.is_none() {
                        self.merge_window(start, end, &merge);
                    }
                    Cursor {
                        start,
                        end,
                        single,
                        next: 0,
                    }
                }
            };
            // One slice (TUMBLE, and CUMULATE's first step): its accumulators are the result;
            // several: the merged scratch.
            let (ids, accs) = match cursor.single.and_then(|se| self.slices.get(&se)) {
                Some(slice) => (&slice.ids, &slice.accs),
                None => (&self.merged_ids, &self.merged),
            };
            let take = (max_rows - emitted).min(ids.len() - cursor.next);
            for g in cursor.next..cursor.next + take {
                emit(Fired {
                    start: cursor.start,
                    end: cursor.end,
                    key: self.keys.key(ids[g]),
                    accs: &accs[g * width..(g + 1) * width],
                });
            }
            emitted += take;
            if cursor.next + take < ids.len() {
                self.cursor = Some(Cursor {
                    next: cursor.next + take,
                    ..cursor
                });
                return true;
            }
            if emitted >= max_rows {
                // This window is done; others may be due.
                return self.pending.first().is_some_and(|&(end, _)| end - 1 <= w)
                    || self.free_slices(w);
            }
        }
        self.free_slices(w)
    }

    /// Merges the slices of window `(start, end]` per key into the scratch.
    fn merge_window(
        &mut self,
        start: i64,
        end: i64,
        merge: &impl Fn(&mut [Accumulator], &[Accumulator]),
    ) {
        let width = self.width;
        self.merged_ids.clear();
        self.merged.clear();
        for slice in self.slices.range(start + 1..=end).map(|(_, s)| s) {
            for (g, &id) in slice.ids.iter().enumerate() {
                let accs = &slice.accs[g * width..(g + 1) * width];
                let i = id as usize;
                if self.slot.len() <= i {
                    self.slot.resize(i + 1, u32::MAX);
                }
                match self.slot[i] {
                    u32::MAX => {
                        self.slot[i] = self.merged_ids.len() as u32;
                        self.merged_ids.push(id);
                        self.merged.extend_from_slice(accs);
                    }
                    at => {
                        let at = at as usize;
                        merge(&mut self.merged[at * width..(at + 1) * width], accs);
                    }
                }
            }
        }
        for &id in &self.merged_ids {
            self.slot[id as usize] = u32::MAX;
        }
    }

    /// Frees the slices no window after `w` needs; always false (nothing left to emit).
    fn free_slices(&mut self, w: i64) -> bool {
        while let Some((&se, _)) = self.slices.first_key_value() {
            if self.slicing.last_window_end(se) - 1 > w {
                break;
            }
            if let Some((_, slice)) = self.slices.pop_first() {
                for id in slice.ids {
                    self.release(id, se);
                }
            }
        }
        false
    }
}

impl SlicedState {
    /// The slice ending at `se`, which held key `id`, was freed.
    fn release(&mut self, id: u32, se: i64) {
        let Some(k) = self.keys.get_mut(id) else {
            return;
        };
        k.slices = k.slices.saturating_sub(1);
        if k.last_slice == se {
            k.last_slice = NO_SLICE;
        }
        if k.slices == 0 {
            self.keys.remove(id);
        }
    }
}

impl SlicedState {
    /// The numbered keys (row-encoded), in id order: the order [`SlicedState::snapshot`] writes
    /// them and [`SlicedState::restore`] reads them.
    pub(super) fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.keys.keys()
    }

    /// Writes the state for a checkpoint: the key numbering with its ids (slices name keys by
    /// id), each slice's keys, accumulators and index, and the windows not fired yet. Between
    /// batches no firing is under way, so the merge scratch holds nothing to keep.
    pub(super) fn snapshot(&self, w: &mut StateWriter) -> Result<(), StateError> {
        if self.cursor.is_some() {
            return Err(StateError("a window is half emitted".into()));
        }
        self.keys.snapshot(w, |k, w| {
            w.u32(k.slices);
            w.u32(k.last_pos);
            w.i64(k.last_slice);
            Ok(())
        })?;
        w.count(self.slices.len());
        for (&end, slice) in &self.slices {
            w.i64(end);
            w.count(slice.ids.len());
            for &id in &slice.ids {
                w.u32(id);
            }
            for acc in &slice.accs {
                acc.encode(w);
            }
            // Sorted, so equal state gives equal bytes.
            let mut index: Vec<(u32, u32)> = slice.index.iter().map(|(&i, &at)| (i, at)).collect();
            index.sort_unstable();
            w.count(index.len());
            for (id, at) in index {
                w.u32(id);
                w.u32(at);
            }
        }
        w.count(self.pending.len());
        for &(end, start) in &self.pending {
            w.i64(end);
            w.i64(start);
        }
        Ok(())
    }

    /// Replaces the (empty) state with what [`SlicedState::snapshot`] wrote, checking that
    /// slices, positions and key entries agree, so no later lookup goes out of range.
    pub(super) fn restore(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        let bad = |m: String| Err(StateError(m));
        let keys = KeyedState::restore(r, |r| {
            Ok(KeyEntry {
                slices: r.u32()?,
                last_pos: r.u32()?,
                last_slice: r.i64()?,
            })
        })?;
        // Per key id: the slices holding it, and the last slice it was seen in (no duplicates).
        let mut held = vec![0u32; keys.id_bound()];
        let mut seen_in = vec![usize::MAX; keys.id_bound()];
        let mut slices = BTreeMap::new();
        for n in 0..r.count()? {
            let end = r.i64()?;
            let len = r.count()?;
            let mut ids = Vec::with_capacity(len);
            for _ in 0..len {
                let id = r.u32()?;
                let i = id as usize;
                if keys.get(id).is_none() || seen_in.get(i) == Some(&n) {
                    return bad(format!("slice {end} holds key {id} twice or unnumbered"));
                }
                seen_in[i] = n;
                held[i] += 1;
                ids.push(id);
            }
            let Some(width) = len.checked_mul(self.width) else {
                return bad(format!("slice {end} has too many keys"));
            };
            let mut accs = Vec::new();
            for _ in 0..width {
                accs.push(Accumulator::decode(r)?);
            }
            let mut index = HashMap::default();
            for _ in 0..r.count()? {
                let (id, at) = (r.u32()?, r.u32()?);
                if ids.get(at as usize) != Some(&id) || index.insert(id, at).is_some() {
                    return bad(format!("slice {end} indexes key {id} at {at} wrongly"));
                }
            }
            if slices.insert(end, Slice { index, ids, accs }).is_some() {
                return bad(format!("slice {end} appears twice"));
            }
        }
        for (id, k) in keys.values() {
            let last = slices
                .get(&k.last_slice)
                .and_then(|s: &Slice| s.ids.get(k.last_pos as usize));
            if k.slices != held[id as usize]
                || k.slices == 0
                || (k.last_slice != NO_SLICE && last != Some(&id))
            {
                return bad(format!("key {id}'s slices disagree with the slices"));
            }
        }
        let mut pending = BTreeSet::new();
        for _ in 0..r.count()? {
            let (end, start) = (r.i64()?, r.i64()?);
            if start >= end || !pending.insert((end, start)) {
                return bad(format!("window [{start}, {end}) is invalid or twice"));
            }
        }
        self.keys = keys;
        self.slices = slices;
        self.pending = pending;
        self.cursor = None;
        Ok(())
    }
}

/// Where an interrupted firing resumes.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    start: i64,
    end: i64,
    /// The window's only slice (its end), or `None` when its slices were merged.
    single: Option<i64>,
    /// The next key position to emit.
    next: usize,
}

#[cfg(test)]
mod tests {
    use fsql_plan::WindowKind;

    use super::*;
    use crate::operators::agg::accumulator::{AccKind, AccSpec};
    use crate::operators::agg::value::Value;

    const COUNT: AccSpec = AccSpec {
        kind: AccKind::CountStar,
        distinct: false,
        bounded: false,
    };

    /// Fires at `w` in steps of `max_rows`; (start, key, count) in emission order.
    fn fire_all(state: &mut SlicedState, w: i64, max_rows: usize) -> Vec<(i64, u8, Value)> {
        let mut out = Vec::new();
        loop {
            let mut step = Vec::new();
            let more = state.fire(
                w,
                max_rows,
                |into, from| into[0].merge(&COUNT, &from[0]),
                |f| step.push((f.start, f.key[0], f.accs[0].result(&COUNT))),
            );
            assert!(step.len() <= max_rows);
            out.extend(step);
            if !more {
                return out;
            }
        }
    }

    #[test]
    fn firing_in_small_steps_emits_every_window_once_in_order() {
        let kind = WindowKind::Hop {
            size_ms: 20,
            slide_ms: 10,
            offset_ms: 0,
        };
        let mut state = SlicedState::new(Slicing::of(&kind).unwrap(), 1);
        for (t, key) in [(1, 1u8), (2, 2), (3, 1), (12, 3), (13, 1), (25, 2)] {
            let se = state.slice_end(t);
            let accs = state
                .accumulators(se, &[key], || vec![COUNT.new_acc()])
                .unwrap();
            accs[0].add(&COUNT, (0, 0), &Value::Null);
        }
        let expected = vec![
            (-10, 1, Value::Int(2)),
            (-10, 2, Value::Int(1)),
            (0, 1, Value::Int(3)),
            (0, 2, Value::Int(1)),
            (0, 3, Value::Int(1)),
            (10, 3, Value::Int(1)),
            (10, 1, Value::Int(1)),
            (10, 2, Value::Int(1)),
            (20, 2, Value::Int(1)),
        ];
        assert_eq!(fire_all(&mut state, i64::MAX, 2), expected);
        assert_eq!(state.len(), 0, "every slice freed");
    }
}
