//! [`KeyedState`]: one table of per-key state, the way every stateful operator holds its keys.
//!
//! A key (its row-encoded bytes, see `operators::agg::key`) gets a dense id the first time it is
//! seen; the operator then reaches the key's value by id, and may keep further per-key data in
//! its own vectors indexed by the same id (flat accumulators, spans), which costs no allocation
//! per key. Ids of removed keys are reused.
//!
//! Memory per key: the index holds only the 4-byte id (hashbrown's raw table: 5 bytes a bucket,
//! at most 7/8 full), the slot holds the key inline when it is short (22 bytes) and the value.
//! Hashes are not stored: the index rehashes a slot's key when it grows.

use hashbrown::HashTable;

use super::codec::{StateError, StateReader, StateWriter};
use crate::operators::agg::key::{KeyBytes, hash_key};

/// One live key: its bytes and its value.
struct Slot<V> {
    key: KeyBytes,
    value: V,
}

/// Per-key state by key bytes, with dense, reusable ids.
///
/// ```ignore
/// let mut counts: KeyedState<u64> = KeyedState::default();
/// let id = counts.id_or_insert_with(b"card-1", || 0);
/// *counts.get_mut(id).unwrap() += 1;
/// assert_eq!(counts.key(id), b"card-1");
/// ```
pub(crate) struct KeyedState<V> {
    index: HashTable<u32>,
    slots: Vec<Option<Slot<V>>>,
    free: Vec<u32>,
    hash: fn(&[u8]) -> u64,
}

impl<V> Default for KeyedState<V> {
    fn default() -> KeyedState<V> {
        KeyedState {
            index: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            hash: hash_key,
        }
    }
}

impl<V> KeyedState<V> {
    /// A table hashing keys with `hash` (tests force collisions with it).
    #[cfg(test)]
    pub(crate) fn with_hash(hash: fn(&[u8]) -> u64) -> KeyedState<V> {
        KeyedState {
            hash,
            ..KeyedState::default()
        }
    }

    /// The id of `key`, if it has state.
    #[inline]
    pub(crate) fn find(&self, key: &[u8]) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find((self.hash)(key), |&id| key_of(slots, id) == Some(key))
            .copied()
    }

    /// The id of `key`, its value created by `new` if the key has no state.
    #[inline]
    pub(crate) fn id_or_insert_with(&mut self, key: &[u8], new: impl FnOnce() -> V) -> u32 {
        let h = (self.hash)(key);
        let KeyedState {
            index,
            slots,
            free,
            hash,
        } = self;
        if let Some(&id) = index.find(h, |&id| key_of(slots, id) == Some(key)) {
            return id;
        }
        let slot = Some(Slot {
            key: KeyBytes::new(key),
            value: new(),
        });
        let id = match free.pop() {
            Some(id) => {
                slots[id as usize] = slot;
                id
            }
            None => {
                slots.push(slot);
                (slots.len() - 1) as u32
            }
        };
        let hash = *hash;
        index.insert_unique(h, id, |&id| key_of(slots, id).map_or(0, hash));
        id
    }

    /// The value of `key`, created by `new` if the key has no state.
    #[inline]
    pub(crate) fn get_or_insert_with(&mut self, key: &[u8], new: impl FnOnce() -> V) -> &mut V {
        let id = self.id_or_insert_with(key, new);
        match self.slots.get_mut(id as usize) {
            Some(Some(slot)) => &mut slot.value,
            // `id_or_insert_with` returns the id of a filled slot.
            _ => unreachable!("key {id} has no slot"),
        }
    }

    /// The value of `key`, if it has state.
    #[inline]
    pub(crate) fn get_by_key(&self, key: &[u8]) -> Option<&V> {
        self.find(key).and_then(|id| self.get(id))
    }

    /// The value of `key`, if it has state.
    #[inline]
    pub(crate) fn get_mut_by_key(&mut self, key: &[u8]) -> Option<&mut V> {
        self.find(key).and_then(|id| self.get_mut(id))
    }

    /// Drops the state of `key`.
    pub(crate) fn remove_key(&mut self, key: &[u8]) -> Option<V> {
        self.find(key).and_then(|id| self.remove(id))
    }

    #[inline]
    pub(crate) fn get(&self, id: u32) -> Option<&V> {
        self.slots
            .get(id as usize)
            .and_then(Option::as_ref)
            .map(|s| &s.value)
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut V> {
        self.slots
            .get_mut(id as usize)
            .and_then(Option::as_mut)
            .map(|s| &mut s.value)
    }

    /// The key bytes of `id` (empty if it has no state).
    pub(crate) fn key(&self, id: u32) -> &[u8] {
        key_of(&self.slots, id).unwrap_or(&[])
    }

    /// Drops the state of `id`; the id may be given to a new key.
    pub(crate) fn remove(&mut self, id: u32) -> Option<V> {
        let key = key_of(&self.slots, id)?;
        if let Ok(e) = self.index.find_entry((self.hash)(key), |&i| i == id) {
            e.remove();
        }
        let slot = self.slots.get_mut(id as usize)?.take()?;
        self.free.push(id);
        Some(slot.value)
    }

    /// Drops every key's state.
    pub(crate) fn clear(&mut self) {
        self.index.clear();
        self.slots.clear();
        self.free.clear();
    }

    /// Keys with state.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// One more than the largest id in use: the length side vectors indexed by id need.
    pub(crate) fn id_bound(&self) -> usize {
        self.slots.len()
    }

    /// The keys with state.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.slots.iter().flatten().map(|s| s.key.as_slice())
    }

    /// Every (id, value).
    pub(crate) fn values(&self) -> impl Iterator<Item = (u32, &V)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(id, s)| s.as_ref().map(|s| (id as u32, &s.value)))
    }

    /// Writes every key and value (`value` writes one), keeping ids and the free list as they
    /// are: operators keep per-key data in vectors indexed by id, which a restore must not
    /// renumber.
    pub(crate) fn snapshot(
        &self,
        w: &mut StateWriter,
        mut value: impl FnMut(&V, &mut StateWriter) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        w.count(self.slots.len());
        for slot in &self.slots {
            match slot {
                None => w.bool(false),
                Some(slot) => {
                    w.bool(true);
                    w.bytes(slot.key.as_slice());
                    value(&slot.value, w)?;
                }
            }
        }
        w.count(self.free.len());
        for &id in &self.free {
            w.u32(id);
        }
        Ok(())
    }

    /// Reads what [`KeyedState::snapshot`] wrote (`value` reads one value), with the same ids.
    pub(crate) fn restore(
        r: &mut StateReader<'_>,
        mut value: impl FnMut(&mut StateReader<'_>) -> Result<V, StateError>,
    ) -> Result<KeyedState<V>, StateError> {
        let mut state = KeyedState::default();
        let n = r.count()?;
        for id in 0..n {
            let slot = if r.bool()? {
                let key = r.bytes()?;
                if state.find(key).is_some() {
                    return Err(StateError(format!("key {key:?} appears twice")));
                }
                let id = u32::try_from(id).map_err(|_| StateError("too many keys".into()))?;
                let h = (state.hash)(key);
                let value = value(r)?;
                state.slots.push(Some(Slot {
                    key: KeyBytes::new(key),
                    value,
                }));
                let KeyedState {
                    index, slots, hash, ..
                } = &mut state;
                let hash = *hash;
                index.insert_unique(h, id, |&id| key_of(slots, id).map_or(0, hash));
                continue;
            } else {
                None
            };
            state.slots.push(slot);
        }
        let free = r.count()?;
        for _ in 0..free {
            let id = r.u32()?;
            if !matches!(state.slots.get(id as usize), Some(None)) {
                return Err(StateError(format!("free id {id} is not an empty slot")));
            }
            state.free.push(id);
        }
        Ok(state)
    }

    /// Hints the CPU to load the slot of `id`: for a key processed a few rows later, so its
    /// cache miss overlaps the current row's work.
    #[inline]
    pub(crate) fn prefetch(&self, id: u32) {
        if let Some(slot) = self.slots.get(id as usize) {
            prefetch(std::ptr::from_ref(slot).cast());
        }
    }
}

#[inline]
fn key_of<V>(slots: &[Option<Slot<V>>], id: u32) -> Option<&[u8]> {
    slots
        .get(id as usize)
        .and_then(Option::as_ref)
        .map(|s| s.key.as_slice())
}

/// A read prefetch hint (no effect on other architectures).
#[inline(always)]
pub(crate) fn prefetch(p: *const i8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch only hints the cache; it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restored_table_keeps_ids_keys_values_and_reuse_order() {
        let mut t: KeyedState<u64> = KeyedState::default();
        for k in 0..50u64 {
            t.id_or_insert_with(format!("card-{k}").as_bytes(), || k * 10);
        }
        t.remove(7);
        t.remove(3);
        let mut w = StateWriter::default();
        t.snapshot(&mut w, |v, w| {
            w.u64(*v);
            Ok(())
        })
        .unwrap();
        let bytes = w.into_bytes();
        let mut r = StateReader::new(&bytes);
        let mut back: KeyedState<u64> = KeyedState::restore(&mut r, |r| r.u64()).unwrap();
        r.finish().unwrap();
        assert_eq!(back.len(), 48);
        assert_eq!(back.find(b"card-20"), Some(20));
        assert_eq!(back.get(20), Some(&200));
        assert_eq!(back.find(b"card-7"), None);
        assert_eq!(
            back.values().map(|(id, v)| (id, *v)).collect::<Vec<_>>(),
            t.values().map(|(id, v)| (id, *v)).collect::<Vec<_>>()
        );
        // The free list is restored in order: the next new keys get the ids the original's would.
        assert_eq!(
            back.id_or_insert_with(b"new-1", || 0),
            t.id_or_insert_with(b"new-1", || 0)
        );
        assert_eq!(
            back.id_or_insert_with(b"new-2", || 0),
            t.id_or_insert_with(b"new-2", || 0)
        );
        // Every prefix of the bytes is refused, none panics.
        for cut in 0..bytes.len() {
            let mut r = StateReader::new(&bytes[..cut]);
            assert!(KeyedState::<u64>::restore(&mut r, |r| r.u64()).is_err());
        }
    }

    #[test]
    fn colliding_hashes_still_find_their_own_key() {
        let mut t: KeyedState<&str> = KeyedState::with_hash(|_| 7);
        let a = t.id_or_insert_with(b"a", || "a");
        let b = t.id_or_insert_with(b"b", || "b");
        let c = t.id_or_insert_with(&[9u8; 30], || "long");
        assert_eq!((a, b, c), (0, 1, 2));
        assert_eq!(t.id_or_insert_with(b"b", || "new"), 1);
        assert_eq!(t.get(c), Some(&"long"));
        assert_eq!(t.key(c), &[9u8; 30]);
        assert_eq!(t.len(), 3);
        assert_eq!(t.remove(a), Some("a"));
        assert_eq!(
            (t.find(b"b"), t.find(&[9u8; 30]), t.find(b"a")),
            (Some(1), Some(2), None)
        );
        assert_eq!(
            t.id_or_insert_with(b"z", || "z"),
            0,
            "a new key reuses the id"
        );
        assert_eq!(t.get(0), Some(&"z"));
        assert_eq!(t.remove(b), Some("b"));
        assert_eq!(t.remove(b), None, "removing twice is a no-op");
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.values().map(|(id, v)| (id, *v)).collect::<Vec<_>>(),
            [(0, "z"), (2, "long")]
        );
    }

    #[test]
    fn many_keys_survive_the_index_growing() {
        let mut t: KeyedState<u32> = KeyedState::default();
        for i in 0..100_000u32 {
            assert_eq!(t.id_or_insert_with(&i.to_be_bytes(), || i), i);
        }
        for i in (0..100_000u32).step_by(2) {
            assert_eq!(t.remove(i), Some(i));
        }
        for i in 0..100_000u32 {
            let found = t.find(&i.to_be_bytes());
            assert_eq!(found, (i % 2 == 1).then_some(i), "key {i}");
        }
        assert_eq!(t.len(), 50_000);
    }
}
