//! The state of a sliced window aggregation (TUMBLE, HOP, CUMULATE): per key, one accumulator
//! set per slice holding it.
//!
//! Keys are numbered once (a [`KeyedState`]) and each key's value holds its slices'
//! accumulators, so the RocksDB backend spills a key with all of them; a slice lists the keys it
//! holds, in first-seen order, which is the order a firing window emits them in. A window of
//! several slices (HOP, CUMULATE) merges its slices into a dense scratch table indexed by key
//! number.
//!
//! Layout 1 (before the RocksDB backend reached windows) kept accumulators per slice, by key
//! position; [`SlicedState::restore`] still reads it.

use std::collections::{BTreeMap, BTreeSet};

use super::Slicing;
use crate::operators::agg::accumulator::Accumulator;
use crate::state::codec::{StateError, StateReader, StateWriter};
use crate::state::{KeyedState, StateBackend, ValueCodec};

/// A numbered key's accumulators: `width` per slice holding the key, by slice end.
#[derive(Clone, Debug, Default)]
struct KeySlices {
    /// Slice ends, ascending.
    ends: Vec<i64>,
    /// `width` accumulators per slice, in the order of `ends`.
    accs: Vec<Accumulator>,
}

impl KeySlices {
    /// The position of slice `end` in `ends`.
    fn find(&self, end: i64) -> Option<usize> {
        match self.ends.last() {
            // Rows mostly come for a key's newest slice.
            Some(&last) if last == end => Some(self.ends.len() - 1),
            _ => self.ends.binary_search(&end).ok(),
        }
    }

    fn encode(&self, w: &mut StateWriter) {
        w.count(self.ends.len());
        for &e in &self.ends {
            w.i64(e);
        }
        for acc in &self.accs {
            acc.encode(w);
        }
    }

    fn decode(r: &mut StateReader<'_>, width: usize) -> Result<KeySlices, StateError> {
        let n = r.count()?;
        let mut ends: Vec<i64> = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            let e = r.i64()?;
            if ends.last().is_some_and(|&l| l >= e) {
                return Err(StateError(format!(
                    "a key's slices are not ascending at {e}"
                )));
            }
            ends.push(e);
        }
        let total = n
            .checked_mul(width)
            .ok_or_else(|| StateError("too many accumulators".into()))?;
        let mut accs = Vec::with_capacity(total.min(1 << 16));
        for _ in 0..total {
            accs.push(Accumulator::decode(r)?);
        }
        Ok(KeySlices { ends, accs })
    }
}

/// How a key's slices are stored in RocksDB (and, in memory, in a checkpoint).
fn codec(width: usize) -> ValueCodec<KeySlices> {
    ValueCodec {
        encode: Box::new(|k: &KeySlices, w: &mut StateWriter| {
            k.encode(w);
            Ok(())
        }),
        decode: Box::new(move |r: &mut StateReader<'_>| KeySlices::decode(r, width)),
    }
}

/// One slice: the numbers of the keys it holds, in first-seen order.
#[derive(Default)]
struct Slice {
    ids: Vec<u32>,
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
    /// The live keys with their slices (a key leaves when no slice holds it).
    keys: KeyedState<KeySlices>,
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
    /// The state of a node named `name`, keeping its keys in `backend`.
    pub(super) fn new(
        slicing: Slicing,
        width: usize,
        backend: &StateBackend,
        name: &str,
    ) -> SlicedState {
        SlicedState {
            slicing,
            width,
            keys: KeyedState::new(backend, name, || codec(width)),
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
        let width = self.width;
        let id = self.keys.id_or_insert_with(key, KeySlices::default);
        let ks = self.keys.get_mut(id)?;
        let at = match ks.find(slice_end) {
            Some(at) => at,
            None => {
                let at = ks.ends.partition_point(|&e| e < slice_end);
                if ks.ends.len() < 4 {
                    // Most keys hold a slice or two (a TUMBLE window is one): room for exactly
                    // one more, where a vector's first growth would make room for four.
                    ks.ends.reserve_exact(1);
                }
                ks.ends.insert(at, slice_end);
                let accs = new();
                if ks.accs.is_empty() {
                    ks.accs = accs;
                } else {
                    if ks.ends.len() <= 4 {
                        ks.accs.reserve_exact(width);
                    }
                    ks.accs.splice(at * width..at * width, accs);
                }
                self.slices.get_mut(&slice_end)?.ids.push(id);
                at
            }
        };
        ks.accs.get_mut(at * width..(at + 1) * width)
    }

    /// Between batches: keeps at most the backend's resident budget of keys in memory (see
    /// `KeyedState::settle`).
    pub(super) fn settle(&mut self) -> Result<(), StateError> {
        self.keys.settle()
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
            let total = match cursor.single {
                Some(se) => self.slices.get(&se).map_or(0, |s| s.ids.len()),
                None => self.merged_ids.len(),
            };
            let take = (max_rows - emitted).min(total - cursor.next);
            for g in cursor.next..cursor.next + take {
                match cursor.single {
                    // One slice (TUMBLE, and CUMULATE's first step): the key's accumulators
                    // of that slice are the result.
                    Some(se) => {
                        let Some(&id) = self.slices.get(&se).and_then(|s| s.ids.get(g)) else {
                            continue;
                        };
                        // Read back first if spilled; then borrowed with the key bytes.
                        if self.keys.get_mut(id).is_none() {
                            continue;
                        }
                        let Some(ks) = self.keys.get(id) else {
                            continue;
                        };
                        let Some(at) = ks.find(se) else {
                            continue;
                        };
                        emit(Fired {
                            start: cursor.start,
                            end: cursor.end,
                            key: self.keys.key(id),
                            accs: &ks.accs[at * width..(at + 1) * width],
                        });
                    }
                    // Several: the merged scratch.
                    None => emit(Fired {
                        start: cursor.start,
                        end: cursor.end,
                        key: self.keys.key(self.merged_ids[g]),
                        accs: &self.merged[g * width..(g + 1) * width],
                    }),
                }
            }
            emitted += take;
            if cursor.next + take < total {
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
        for (&se, slice) in self.slices.range(start + 1..=end) {
            for &id in &slice.ids {
                let Some(ks) = self.keys.get_mut(id) else {
                    continue;
                };
                let Some(at) = ks.find(se) else {
                    continue;
                };
                let accs = &ks.accs[at * width..(at + 1) * width];
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
        let width = self.width;
        while let Some((&se, _)) = self.slices.first_key_value() {
            if self.slicing.last_window_end(se) - 1 > w {
                break;
            }
            let Some((_, slice)) = self.slices.pop_first() else {
                break;
            };
            for id in slice.ids {
                let Some(ks) = self.keys.get_mut(id) else {
                    continue;
                };
                if let Some(at) = ks.find(se) {
                    ks.ends.remove(at);
                    ks.accs.drain(at * width..(at + 1) * width);
                }
                if ks.ends.is_empty() {
                    self.keys.remove(id);
                }
            }
        }
        false
    }
}

impl SlicedState {
    /// The numbered keys (row-encoded), in id order: the order [`SlicedState::snapshot`] writes
    /// them and [`SlicedState::restore`] reads them.
    pub(super) fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.keys.keys()
    }

    /// Writes the state for a checkpoint (layout 2 of a window aggregation): whether the keys'
    /// slices are in RocksDB, the keys with their ids (slices name keys by id) and, in memory,
    /// each one's slices and accumulators (with RocksDB they are in its checkpoint), each slice's
    /// keys in order, and the windows not fired yet. Between batches no firing is under way, so
    /// the merge scratch holds nothing to keep.
    pub(super) fn snapshot(&mut self, w: &mut StateWriter) -> Result<(), StateError> {
        if self.cursor.is_some() {
            return Err(StateError("a window is half emitted".into()));
        }
        self.keys.write_storage(w)?;
        self.keys.snapshot(w, |k, w| {
            k.encode(w);
            Ok(())
        })?;
        w.count(self.slices.len());
        for (&end, slice) in &self.slices {
            w.i64(end);
            w.count(slice.ids.len());
            for &id in &slice.ids {
                w.u32(id);
            }
        }
        w.count(self.pending.len());
        for &(end, start) in &self.pending {
            w.i64(end);
            w.i64(start);
        }
        Ok(())
    }

    /// Replaces the (empty) state with what [`SlicedState::snapshot`] wrote in `layout` (1: the
    /// slice-major layout before, turned key-major here), checking that slices and keys agree,
    /// so no later lookup goes out of range.
    pub(super) fn restore(
        &mut self,
        r: &mut StateReader<'_>,
        layout: u32,
        backend: &StateBackend,
        name: &str,
    ) -> Result<(), StateError> {
        let bad = |m: String| Err(StateError(m));
        let width = self.width;
        let (keys, slices) = if layout == 1 {
            restore_slice_major(r, width)?
        } else {
            let keys = if r.bool()? {
                KeyedState::restore_spilled(r, backend, name, || codec(width))?
            } else {
                KeyedState::restore(r, |r| KeySlices::decode(r, width))?
            };
            let mut slices = BTreeMap::new();
            for _ in 0..r.count()? {
                let (end, ids) = read_slice(r)?;
                if slices.insert(end, Slice { ids }).is_some() {
                    return bad(format!("slice {end} appears twice"));
                }
            }
            (keys, slices)
        };
        check_slices(&keys, &slices)?;
        let keys = if keys.in_rocksdb() {
            keys
        } else {
            keys.into_backend(backend, name, || codec(width))?
        };
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

/// A slice's end and the ids of the keys it holds (both layouts start a slice so).
fn read_slice(r: &mut StateReader<'_>) -> Result<(i64, Vec<u32>), StateError> {
    let end = r.i64()?;
    let ids = (0..r.count()?).map(|_| r.u32()).collect::<Result<_, _>>()?;
    Ok((end, ids))
}

/// Every slice names live keys, each at most once; with the keys' slices in memory, every key
/// holds exactly the slices that name it.
fn check_slices(
    keys: &KeyedState<KeySlices>,
    slices: &BTreeMap<i64, Slice>,
) -> Result<(), StateError> {
    let mut named: Vec<Vec<i64>> = vec![Vec::new(); keys.id_bound()];
    for (&end, slice) in slices {
        for &id in &slice.ids {
            let Some(ends) = named.get_mut(id as usize).filter(|_| keys.contains_id(id)) else {
                return Err(StateError(format!(
                    "slice {end} holds an unnumbered key {id}"
                )));
            };
            if ends.last() == Some(&end) {
                return Err(StateError(format!("slice {end} holds key {id} twice")));
            }
            ends.push(end);
        }
    }
    if keys.in_rocksdb() {
        // The keys' slices are in RocksDB: read back when used.
        return Ok(());
    }
    for (id, k) in keys.values() {
        let ends = named.get(id as usize).map_or(&[][..], Vec::as_slice);
        if k.ends.is_empty() || k.ends != ends {
            return Err(StateError(format!(
                "key {id}'s slices disagree with the slices"
            )));
        }
    }
    Ok(())
}

/// Reads layout 1 (per slice: its keys' ids, `width` accumulators per key, and an index), the
/// key numbering first, and turns it key-major.
fn restore_slice_major(
    r: &mut StateReader<'_>,
    width: usize,
) -> Result<(KeyedState<KeySlices>, BTreeMap<i64, Slice>), StateError> {
    let bad = |m: String| Err(StateError(m));
    // A key's entry then: how many slices hold it, and where it was last found.
    let mut keys = KeyedState::restore(r, |r| {
        r.u32()?;
        r.u32()?;
        r.i64()?;
        Ok(KeySlices::default())
    })?;
    let mut slices = BTreeMap::new();
    for _ in 0..r.count()? {
        let (end, ids) = read_slice(r)?;
        for &id in &ids {
            let Some(ks) = keys.get_mut(id) else {
                return bad(format!("slice {end} holds an unnumbered key {id}"));
            };
            if ks.ends.last().is_some_and(|&l| l >= end) {
                return bad(format!("slice {end} holds key {id} twice or out of order"));
            }
            ks.ends.push(end);
            for _ in 0..width {
                ks.accs.push(Accumulator::decode(r)?);
            }
        }
        // The index of keys last seen in later slices: derivable, so only read.
        for _ in 0..r.count()? {
            r.u32()?;
            r.u32()?;
        }
        if slices.insert(end, Slice { ids }).is_some() {
            return bad(format!("slice {end} appears twice"));
        }
    }
    Ok((keys, slices))
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
        let mut state =
            SlicedState::new(Slicing::of(&kind).unwrap(), 1, &StateBackend::memory(), "w");
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
