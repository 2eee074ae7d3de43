//! The state of a sliced window aggregation (TUMBLE, HOP, CUMULATE): per slice, one accumulator
//! set per key.
//!
//! Keys are numbered once ([`KeyIds`]), so a slice finds a key's accumulators by number and a
//! firing window merges its slices into a dense scratch table indexed by key number — no hashing
//! of key bytes per (slice, key) when a HOP window merges `size / slide` slices.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::Slicing;
use crate::operators::agg::accumulator::Accumulator;
use crate::operators::agg::key::FxBuild;
use crate::operators::agg::value::Value;

/// A key's number, its bytes and values, and how many slices hold it.
struct KeyEntry {
    bytes: Box<[u8]>,
    values: Vec<Value>,
    slices: u32,
}

/// The numbering of live keys (a key leaves when no slice holds it).
#[derive(Default)]
struct KeyIds {
    index: HashMap<Box<[u8]>, u32, FxBuild>,
    keys: Vec<KeyEntry>,
    free: Vec<u32>,
}

impl KeyIds {
    fn id(&mut self, bytes: &[u8], values: impl FnOnce() -> Vec<Value>) -> u32 {
        if let Some(&id) = self.index.get(bytes) {
            return id;
        }
        let entry = KeyEntry {
            bytes: bytes.into(),
            values: values(),
            slices: 0,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.keys[id as usize] = entry;
                id
            }
            None => {
                self.keys.push(entry);
                (self.keys.len() - 1) as u32
            }
        };
        self.index.insert(bytes.into(), id);
        id
    }

    /// A slice holding key `id` was freed.
    fn release(&mut self, id: u32) {
        let Some(k) = self.keys.get_mut(id as usize) else {
            return;
        };
        k.slices = k.slices.saturating_sub(1);
        if k.slices == 0 {
            self.index.remove(&k.bytes);
            k.values = Vec::new();
            self.free.push(id);
        }
    }
}

/// One slice: accumulators per key number, in first-seen order.
#[derive(Default)]
struct Slice {
    index: HashMap<u32, u32, FxBuild>,
    groups: Vec<(u32, Vec<Accumulator>)>,
}

/// A fired window's result for one key.
pub(super) struct Fired<'a> {
    pub start: i64,
    pub end: i64,
    pub key: &'a [Value],
    pub accs: &'a [Accumulator],
}

/// Sliced windows of every key.
pub(super) struct SlicedState {
    slicing: Slicing,
    keys: KeyIds,
    /// By slice end.
    slices: BTreeMap<i64, Slice>,
    /// Windows with at least one slice, as (end, start), not yet fired.
    pending: BTreeSet<(i64, i64)>,
    /// Scratch for merging: key number → position in `merged`, or `u32::MAX`.
    slot: Vec<u32>,
    merged: Vec<(u32, Vec<Accumulator>)>,
    windows: Vec<(i64, i64)>,
}

impl SlicedState {
    pub(super) fn new(slicing: Slicing) -> SlicedState {
        SlicedState {
            slicing,
            keys: KeyIds::default(),
            slices: BTreeMap::new(),
            pending: BTreeSet::new(),
            slot: Vec::new(),
            merged: Vec::new(),
            windows: Vec::new(),
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
        values: impl FnOnce() -> Vec<Value>,
        new: impl FnOnce() -> Vec<Accumulator>,
    ) -> Option<&mut Vec<Accumulator>> {
        if !self.slices.contains_key(&slice_end) {
            self.slicing.windows_of_slice(slice_end, &mut self.windows);
            if self.windows.is_empty() {
                return None;
            }
            self.pending
                .extend(self.windows.iter().map(|&(s, e)| (e, s)));
            self.slices.insert(slice_end, Slice::default());
        }
        let id = self.keys.id(key, values);
        let slice = self.slices.get_mut(&slice_end)?;
        let at = match slice.index.get(&id) {
            Some(&at) => at as usize,
            None => {
                if let Some(k) = self.keys.keys.get_mut(id as usize) {
                    k.slices += 1;
                }
                slice.index.insert(id, slice.groups.len() as u32);
                slice.groups.push((id, new()));
                slice.groups.len() - 1
            }
        };
        Some(&mut slice.groups[at].1)
    }

    /// Fires every window ending at or before `w + 1` (by end, keys in first-seen order), then
    /// frees the slices no later window needs.
    pub(super) fn fire(
        &mut self,
        w: i64,
        merge: impl Fn(&mut [Accumulator], &[Accumulator]),
        mut emit: impl FnMut(Fired<'_>),
    ) {
        while let Some(&(end, start)) = self.pending.first() {
            if end - 1 > w {
                break;
            }
            self.pending.pop_first();
            self.merged.clear();
            for slice in self.slices.range(start + 1..=end).map(|(_, s)| s) {
                for (id, accs) in &slice.groups {
                    let i = *id as usize;
                    if self.slot.len() <= i {
                        self.slot.resize(i + 1, u32::MAX);
                    }
                    match self.slot[i] {
                        u32::MAX => {
                            self.slot[i] = self.merged.len() as u32;
                            self.merged.push((*id, accs.clone()));
                        }
                        at => merge(&mut self.merged[at as usize].1, accs),
                    }
                }
            }
            for (id, accs) in &self.merged {
                self.slot[*id as usize] = u32::MAX;
                let key = self
                    .keys
                    .keys
                    .get(*id as usize)
                    .map_or(&[][..], |k| &k.values[..]);
                emit(Fired {
                    start,
                    end,
                    key,
                    accs,
                });
            }
        }
        while let Some((&se, _)) = self.slices.first_key_value() {
            if self.slicing.last_window_end(se) - 1 > w {
                break;
            }
            if let Some((_, slice)) = self.slices.pop_first() {
                for (id, _) in slice.groups {
                    self.keys.release(id);
                }
            }
        }
    }
}
