//! [`KeyedState`]: one table of per-key state, the way every stateful operator holds its keys.
//!
//! A key (its row-encoded bytes, see `operators::agg::key`) gets a dense id the first time it is
//! seen; the operator then reaches the key's value by id, and may keep further per-key data in
//! its own vectors indexed by the same id, which costs no allocation per key (but stays resident
//! under the RocksDB backend, which spills only values). Ids of removed keys are reused.
//!
//! Memory per key: the index holds only the 4-byte id (hashbrown's raw table: 5 bytes a bucket,
//! at most 7/8 full), the slot holds the key inline when it is short (22 bytes) and the value.
//! Hashes are not stored: the index rehashes a slot's key when it grows.
//!
//! With the RocksDB backend ([`StateBackend`]) a table keeps a bounded *resident set*: at most
//! `state.backend.rocksdb.resident-keys` values stay decoded in memory. [`KeyedState::settle`]
//! (which operators call between batches) encodes the values of keys not used recently, with
//! the operator's [`ValueCodec`] (its checkpoint encoding of a value), writes them to RocksDB and
//! drops them from memory; an access by id or key ([`KeyedState::id_or_insert_with`],
//! [`KeyedState::get_mut`]) reads a spilled value back. A spilled key keeps its id and key bytes
//! in memory, so ids held in operators' queues and side vectors stay valid.
//!
//! **Asynchronous snapshots** ([`KeyedState::snapshot_deferred`]): a checkpoint *freezes* the
//! table (nothing is copied) and the checkpoint's writer thread encodes the slots as they were
//! then, in id order, while the pipeline goes on. Before the table changes a slot the writer has
//! not encoded yet, it encodes that slot itself (copy-on-write at the granularity of one key, as
//! Flink's copy-on-write state map does), so the bytes are exactly those of a snapshot taken at
//! the freeze. Slots never move (they are stored in [`Chunked`] storage); a table cleared or
//! dropped first finishes (or abandons) the frozen snapshot.

use std::cell::UnsafeCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use super::backend::{RocksTable, StateBackend};
use super::chunked::{Addresses, Chunked};
use super::codec::{StateError, StateReader, StateWriter};
use super::snapshot::DeferredPart;
use crate::operators::agg::key::{KeyBytes, hash_key};

/// One live key: its bytes and its value.
struct Slot<V> {
    key: KeyBytes,
    value: V,
}

/// The place of one id: a live key's slot, or nothing.
///
/// Cells are read through `&` and written only through the table's `&mut` methods. While a
/// snapshot is frozen, the checkpoint's writer thread reads cells too: it reads a cell only after
/// claiming its mark in [`Frozen`], and the table claims a cell's mark before it writes the cell,
/// so the two never touch one cell at once.
struct Cell<V>(UnsafeCell<Option<Slot<V>>>);

impl<V> Cell<V> {
    fn new(slot: Option<Slot<V>>) -> Cell<V> {
        Cell(UnsafeCell::new(slot))
    }

    /// The cell's content.
    ///
    /// # Safety
    /// No `&mut` to this cell's content may exist: the table gives them out only from its
    /// `&mut` methods after claiming the cell, and the writer thread never makes one.
    #[inline]
    unsafe fn read(&self) -> &Option<Slot<V>> {
        // SAFETY: the caller guarantees no writer of this cell (see the contract above).
        unsafe { &*self.0.get() }
    }
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
    /// The snapshot being encoded from the table as it was when frozen. Declared first, so it
    /// is dropped (abandoned, waiting for the writer to let go of the slots) before the slots.
    frozen: Option<FrozenHandle<V>>,
    index: HashTable<u32>,
    slots: Chunked<Cell<V>>,
    free: Vec<u32>,
    hash: fn(&[u8]) -> u64,
    /// The RocksDB backend's resident set; `None` in memory (every value resident).
    spill: Option<Box<Spill<V>>>,
}

impl<V> Default for KeyedState<V> {
    fn default() -> KeyedState<V> {
        KeyedState {
            frozen: None,
            index: HashTable::new(),
            slots: Chunked::default(),
            free: Vec::new(),
            hash: hash_key,
            spill: None,
        }
    }
}

/// How a table's values are written to and read from RocksDB: the operator's checkpoint
/// encoding of one value (what a `hashmap` checkpoint holds inline), given at construction.
pub(crate) struct ValueCodec<V> {
    pub encode: Box<EncodeValue<V>>,
    pub decode: Box<DecodeValue<V>>,
}

/// Writes one value (a [`ValueCodec`]'s encoder).
pub(crate) type EncodeValue<V> = dyn Fn(&V, &mut StateWriter) -> Result<(), StateError>;
/// Reads one value (a [`ValueCodec`]'s decoder).
pub(crate) type DecodeValue<V> = dyn Fn(&mut StateReader<'_>) -> Result<V, StateError>;
/// Writes one value on the checkpoint's writer thread ([`KeyedState::snapshot_deferred`]).
pub(crate) type SharedEncode<V> =
    dyn Fn(&V, &mut StateWriter) -> Result<(), StateError> + Send + Sync;

/// Per-id flag of the resident set: used since the clock hand last passed.
const REFERENCED: u8 = 1;
/// Per-id flag: the value is only in RocksDB (the slot holds `V::default()`).
const SPILLED: u8 = 2;
/// Per-id flag: changed since last written to RocksDB.
const DIRTY: u8 = 4;

/// The RocksDB backend's side of a table: which values are spilled, and the clock that picks
/// the next one to spill (a key used since the hand last passed it gets a second chance).
struct Spill<V> {
    table: RocksTable,
    codec: ValueCodec<V>,
    /// Values kept decoded at most (between batches).
    budget: usize,
    /// [`REFERENCED`] | [`SPILLED`] | [`DIRTY`] per id.
    flags: Vec<u8>,
    resident: usize,
    hand: usize,
    /// The first failure to read back or decode a spilled value, reported by
    /// [`KeyedState::settle`] (accessors return `Option`s and cannot carry it).
    error: Option<StateError>,
}

impl<V> Spill<V> {
    /// Marks `id` used (and, as the caller may change it, changed), reading its value back from
    /// RocksDB when it is spilled. The caller holds the table mutably and claimed `id`.
    #[inline]
    fn touch(&mut self, id: u32, slots: &Chunked<Cell<V>>) {
        self.touch_as(id, slots, DIRTY);
    }

    /// [`Spill::touch`], marking `id` `changed` (`DIRTY` or not).
    #[inline]
    fn touch_as(&mut self, id: u32, slots: &Chunked<Cell<V>>, changed: u8) {
        if let Some(f) = self.flags.get_mut(id as usize) {
            *f |= REFERENCED | changed;
            if *f & SPILLED != 0 {
                self.load(id, slots);
            }
        }
    }

    #[cold]
    fn load(&mut self, id: u32, slots: &Chunked<Cell<V>>) {
        let value = match self.table.get(id) {
            Ok(Some(bytes)) => {
                let mut r = StateReader::new(&bytes);
                (self.codec.decode)(&mut r).and_then(|v| r.finish().map(|()| v))
            }
            Ok(None) => Err(StateError(format!(
                "the spilled value of key {id} is missing"
            ))),
            Err(e) => Err(e),
        };
        // SAFETY: the caller holds the table mutably and claimed `id` (see `touch`).
        let slot = slots
            .get(id as usize)
            .and_then(|c| unsafe { &mut *c.0.get() }.as_mut());
        match (value, slot) {
            (Ok(v), Some(slot)) => {
                slot.value = v;
                if let Some(f) = self.flags.get_mut(id as usize) {
                    *f &= !SPILLED;
                }
                self.resident += 1;
            }
            (Err(e), _) => {
                self.error
                    .get_or_insert(StateError(format!("spilled state of key {id}: {e}")));
            }
            (Ok(_), _) => {}
        }
    }

    /// A new resident key `id`: not marked used, so a key seen once is spilled before one
    /// that is used again and again.
    fn inserted(&mut self, id: u32) {
        let at = id as usize;
        if self.flags.len() <= at {
            self.flags.resize(at + 1, 0);
        }
        self.flags[at] = DIRTY;
        self.resident += 1;
    }

    fn is_spilled(&self, id: u32) -> bool {
        self.flags
            .get(id as usize)
            .is_some_and(|f| f & SPILLED != 0)
    }
}

/// A frozen snapshot's mark of one id: not encoded yet.
const PENDING: u8 = 0;
/// Being encoded (by the writer thread, or by the table before it changes the slot).
const BUSY: u8 = 1;
/// Encoded: the table may change the slot.
const DONE: u8 = 2;

/// A snapshot of a table frozen for the checkpoint's writer thread (see the module docs).
struct Frozen<V> {
    /// The table's cells when it was frozen: they never move, and the table abandons the
    /// snapshot before it frees them.
    cells: Addresses<Cell<V>>,
    /// Per id in the snapshot: [`PENDING`], [`BUSY`] or [`DONE`].
    marks: Box<[AtomicU8]>,
    /// Slots the table encoded before changing them.
    copied: Mutex<Copies>,
    /// Whether values are written (in memory) or only keys (RocksDB holds the values).
    with_values: bool,
    encode: Arc<SharedEncode<V>>,
    /// The free list when frozen.
    free: Vec<u32>,
    /// Whether the snapshot was encoded (or abandoned), and the bytes when the table encoded
    /// it itself. Whoever encodes holds the lock meanwhile, so the cells are read by one
    /// encoder at most, and never after this is set.
    result: Mutex<Encoded>,
    /// Every id's mark is [`DONE`]: the table need not claim any more.
    finished: AtomicBool,
}

/// The slots a frozen table encoded itself before changing them: their bytes one after the
/// other (no allocation per slot), and where each id's are.
#[derive(Default)]
struct Copies {
    bytes: Vec<u8>,
    /// Id → (offset, length) in `bytes`.
    at: HashMap<u32, (usize, usize)>,
    /// A slot that could not be encoded.
    failed: Option<(u32, StateError)>,
}

// SAFETY: `cells` points into the table's storage, which stays allocated and in place while the
// snapshot may read it (see `Frozen::cells`); the writer thread only reads (`V: Sync`) cells it
// claimed, which the table does not write meanwhile.
unsafe impl<V: Send + Sync> Send for Frozen<V> {}
// SAFETY: as above; every other field is thread-safe.
unsafe impl<V: Send + Sync> Sync for Frozen<V> {}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes one slot as [`KeyedState::snapshot`] does.
fn encode_slot<V>(
    slot: &Option<Slot<V>>,
    with_values: bool,
    value: &mut dyn FnMut(&V, &mut StateWriter) -> Result<(), StateError>,
    w: &mut StateWriter,
) -> Result<(), StateError> {
    match slot {
        None => w.bool(false),
        Some(slot) => {
            w.bool(true);
            w.bytes(slot.key.as_slice());
            if with_values {
                value(&slot.value, w)?;
            }
        }
    }
    Ok(())
}

/// Whether a frozen snapshot was encoded (or abandoned), and its bytes when the table encoded it.
type Encoded = (bool, Option<Result<Vec<u8>, StateError>>);

/// Bytes a frozen snapshot's encoder gathers before handing them on.
const CHUNK: usize = 4 << 20;

impl<V> Frozen<V> {
    /// The cell of `id`.
    ///
    /// # Safety
    /// `id` has a mark, and the caller claimed it (set it [`BUSY`]).
    unsafe fn cell(&self, id: usize) -> &Option<Slot<V>> {
        // SAFETY: the cells stay in place and alive while frozen, and the claim keeps the table
        // from writing the cell.
        match unsafe { self.cells.get(id) } {
            // SAFETY: as above.
            Some(cell) => unsafe { cell.read() },
            None => {
                debug_assert!(false, "id {id} has a mark but no cell");
                &None
            }
        }
    }

    /// Before the table changes slot `id` (table side): encodes it first if the writer has not.
    /// Returns whether every slot is encoded (the table may forget the snapshot).
    #[inline]
    fn claim(&self, id: u32) -> bool {
        if let Some(mark) = self.marks.get(id as usize)
            && mark.load(Ordering::Acquire) != DONE
        {
            self.claim_slow(id as usize, mark);
        }
        self.finished.load(Ordering::Acquire)
    }

    #[cold]
    fn claim_slow(&self, id: usize, mark: &AtomicU8) {
        loop {
            match mark.compare_exchange(PENDING, BUSY, Ordering::Acquire, Ordering::Acquire) {
                Ok(_) => {
                    // SAFETY: `id` has a mark, claimed just now.
                    let slot = unsafe { self.cell(id) };
                    let mut value = |v: &V, w: &mut StateWriter| (self.encode)(v, w);
                    let mut copies = lock(&self.copied);
                    let from = copies.bytes.len();
                    let mut w = StateWriter::appending(std::mem::take(&mut copies.bytes));
                    let r = encode_slot(slot, self.with_values, &mut value, &mut w);
                    copies.bytes = w.into_bytes();
                    match r {
                        Ok(()) => {
                            let len = copies.bytes.len() - from;
                            copies.at.insert(id as u32, (from, len));
                        }
                        Err(e) => {
                            copies.bytes.truncate(from);
                            copies.failed.get_or_insert((id as u32, e));
                        }
                    }
                    drop(copies);
                    mark.store(DONE, Ordering::Release);
                    return;
                }
                Err(DONE) => return,
                // The writer is encoding it: a few microseconds.
                Err(_) => std::thread::yield_now(),
            }
        }
    }

    /// Encodes the snapshot into `out` (writer side, or the table finishing it itself): every
    /// slot in id order, the table's own copies for those it claimed first.
    fn encode(&self, out: &mut dyn FnMut(&[u8])) -> Result<(), StateError> {
        let mut w = StateWriter::default();
        w.count(self.marks.len());
        let mut value = |v: &V, w: &mut StateWriter| (self.encode)(v, w);
        for (id, mark) in self.marks.iter().enumerate() {
            if mark
                .compare_exchange(PENDING, BUSY, Ordering::Acquire, Ordering::Acquire)
                .is_ok()
            {
                // SAFETY: `id` has a mark, claimed just now.
                let slot = unsafe { self.cell(id) };
                let r = encode_slot(slot, self.with_values, &mut value, &mut w);
                mark.store(DONE, Ordering::Release);
                r?;
            } else {
                // The table claimed it: its copy is there once the mark is DONE (right after).
                while mark.load(Ordering::Acquire) != DONE {
                    std::thread::yield_now();
                }
                let mut copies = lock(&self.copied);
                let copy = copies.at.get(&(id as u32)).copied();
                match (copy, copies.failed.take()) {
                    (_, Some((_, e))) => return Err(e),
                    (Some((from, len)), None) => {
                        w.extend(copies.bytes.get(from..from + len).unwrap_or_default());
                    }
                    (None, None) => {
                        return Err(StateError(format!(
                            "the frozen snapshot lost the copy of key {id}"
                        )));
                    }
                }
            }
            if w.len() >= CHUNK {
                out(&std::mem::take(&mut w).into_bytes());
            }
        }
        w.count(self.free.len());
        for &id in &self.free {
            w.u32(id);
        }
        out(&w.into_bytes());
        Ok(())
    }

    /// The snapshot's bytes into `out` (writer side): encodes them unless the table has.
    fn take(&self, out: &mut dyn FnMut(&[u8])) -> Result<(), StateError> {
        let mut result = lock(&self.result);
        let r = if result.0 {
            match result.1.take() {
                Some(bytes) => bytes.map(|b| out(&b)),
                None => Err(StateError("the frozen snapshot was taken twice".into())),
            }
        } else {
            result.0 = true;
            self.encode(out)
        };
        drop(result);
        self.finished.store(true, Ordering::Release);
        r
    }
}

/// The table's hold on its frozen snapshot: dropping it (the table dropped while the writer
/// may still read its slots) abandons the snapshot, waiting for an encoding under way.
struct FrozenHandle<V>(Arc<Frozen<V>>);

impl<V> FrozenHandle<V> {
    /// Encodes the snapshot on this thread unless the writer has already: before the slots are
    /// freed, or frozen again.
    fn finish(self) {
        let mut result = lock(&self.0.result);
        if !result.0 {
            let mut bytes = Vec::new();
            let r = self.0.encode(&mut |b| bytes.extend_from_slice(b));
            *result = (true, Some(r.map(|()| bytes)));
        }
    }
}

impl<V> Drop for FrozenHandle<V> {
    fn drop(&mut self) {
        let mut result = lock(&self.0.result);
        if !result.0 {
            *result = (
                true,
                Some(Err(StateError(
                    "the operator's state was dropped before its checkpoint was written".into(),
                ))),
            );
        }
    }
}

impl<V> KeyedState<V> {
    /// An empty table in `backend`: in memory, or (RocksDB) a resident set whose spilled values
    /// `codec` encodes, under the key prefix of `name` (the node's stable name).
    pub(crate) fn new(
        backend: &StateBackend,
        name: &str,
        codec: impl FnOnce() -> ValueCodec<V>,
    ) -> KeyedState<V> {
        KeyedState {
            spill: backend.table(name).map(|(table, budget)| {
                Box::new(Spill {
                    table,
                    codec: codec(),
                    budget,
                    flags: Vec::new(),
                    resident: 0,
                    hand: 0,
                    error: None,
                })
            }),
            ..KeyedState::default()
        }
    }

    /// A table hashing keys with `hash` (tests force collisions with it).
    #[cfg(test)]
    pub(crate) fn with_hash(hash: fn(&[u8]) -> u64) -> KeyedState<V> {
        KeyedState {
            hash,
            ..KeyedState::default()
        }
    }

    /// Before the table changes slot `id`: the frozen snapshot encodes it first.
    #[inline]
    fn claim(&mut self, id: u32) {
        if let Some(f) = &self.frozen
            && f.0.claim(id)
        {
            self.frozen = None;
        }
    }

    /// Finishes the frozen snapshot (encoding what the writer has not) before the slots are freed
    /// or frozen again.
    fn thaw(&mut self) {
        if let Some(f) = self.frozen.take() {
            f.finish();
        }
    }

    /// The slot of `id`, for changing it (claimed first).
    #[inline]
    fn slot_mut(&mut self, id: u32) -> Option<&mut Option<Slot<V>>> {
        self.claim(id);
        // SAFETY: `&mut self` and the claim: nothing else reads or writes this cell. (Through
        // `&` to the storage: a `&mut` to all of it would overlap the cells the writer reads.)
        self.slots
            .get(id as usize)
            .map(|c| unsafe { &mut *c.0.get() })
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
        if let Some(&id) = {
            let slots = &self.slots;
            self.index.find(h, |&id| key_of(slots, id) == Some(key))
        } {
            if self.spill.is_some() {
                self.claim(id);
                if let Some(spill) = &mut self.spill {
                    spill.touch(id, &self.slots);
                }
            }
            return id;
        }
        let slot = Slot {
            key: KeyBytes::new(key),
            value: new(),
        };
        let id = match self.free.pop() {
            Some(id) => {
                if let Some(cell) = self.slot_mut(id) {
                    *cell = Some(slot);
                }
                id
            }
            None => self.slots.push(Cell::new(Some(slot))) as u32,
        };
        let KeyedState {
            index,
            slots,
            hash,
            spill,
            ..
        } = self;
        let hash = *hash;
        index.insert_unique(h, id, |&id| key_of(slots, id).map_or(0, hash));
        if let Some(spill) = spill {
            spill.inserted(id);
        }
        id
    }

    /// The value of `key`, created by `new` if the key has no state.
    #[inline]
    pub(crate) fn get_or_insert_with(&mut self, key: &[u8], new: impl FnOnce() -> V) -> &mut V {
        let id = self.id_or_insert_with(key, new);
        match self.slot_mut(id) {
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

    /// The value of `id`; `None` also for a spilled value (which only the `&mut` accessors
    /// read back).
    #[inline]
    pub(crate) fn get(&self, id: u32) -> Option<&V> {
        if self.spill.as_ref().is_some_and(|s| s.is_spilled(id)) {
            return None;
        }
        slot_of(&self.slots, id).map(|s| &s.value)
    }

    /// The value of `id`, read back first if it is spilled (`None` when that failed:
    /// [`KeyedState::settle`] reports why).
    #[inline]
    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut V> {
        self.get_mut_as(id, DIRTY)
    }

    /// The value of `id`, read back first if it is spilled, for a change that leaves what it
    /// encodes to as it is (bookkeeping kept only in memory, rows moved into a batch shared with
    /// other keys) or none at all (a join probing the rows it holds). Unlike
    /// [`KeyedState::get_mut`] the value is not marked changed, so the RocksDB backend does not
    /// write it again at the next checkpoint, nor when it spills it.
    #[inline]
    pub(crate) fn get_mut_unchanged(&mut self, id: u32) -> Option<&mut V> {
        self.get_mut_as(id, 0)
    }

    /// The value of `id`, read back first if it is spilled, marked `changed` (`DIRTY` or not).
    #[inline]
    fn get_mut_as(&mut self, id: u32, changed: u8) -> Option<&mut V> {
        self.claim(id);
        if let Some(spill) = &mut self.spill {
            spill.touch_as(id, &self.slots, changed);
            if spill.is_spilled(id) {
                return None;
            }
        }
        self.slot_mut(id)
            .and_then(Option::as_mut)
            .map(|s| &mut s.value)
    }

    /// The key bytes of `id` (empty if it has no state).
    pub(crate) fn key(&self, id: u32) -> &[u8] {
        key_of(&self.slots, id).unwrap_or(&[])
    }

    /// Drops the state of `id` (in RocksDB too); the id may be given to a new key.
    pub(crate) fn remove(&mut self, id: u32) -> Option<V> {
        self.claim(id);
        if let Some(spill) = &mut self.spill {
            spill.touch(id, &self.slots);
            if let Some(f) = spill.flags.get_mut(id as usize)
                && key_of(&self.slots, id).is_some()
            {
                if let Err(e) = spill.table.delete(id) {
                    spill.error.get_or_insert(e);
                }
                if *f & SPILLED == 0 {
                    spill.resident -= 1;
                }
                *f = 0;
            }
        }
        let key = key_of(&self.slots, id)?;
        if let Ok(e) = self.index.find_entry((self.hash)(key), |&i| i == id) {
            e.remove();
        }
        let slot = self.slot_mut(id)?.take()?;
        self.free.push(id);
        Some(slot.value)
    }

    /// Drops every key's state.
    pub(crate) fn clear(&mut self) {
        self.thaw();
        if let Some(spill) = &mut self.spill {
            if let Err(e) = spill.table.clear() {
                spill.error.get_or_insert(e);
            }
            spill.flags.clear();
            spill.resident = 0;
            spill.hand = 0;
        }
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

    /// Whether `id` holds a key.
    pub(crate) fn contains_id(&self, id: u32) -> bool {
        key_of(&self.slots, id).is_some()
    }

    /// The ids holding keys, in id order.
    pub(crate) fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.slots.len() as u32).filter(|&id| slot_of(&self.slots, id).is_some())
    }

    /// The keys with state.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.slots.len() as u32).filter_map(|id| key_of(&self.slots, id))
    }

    /// Every (id, value) resident in memory (with the RocksDB backend, spilled ones are left out).
    pub(crate) fn values(&self) -> impl Iterator<Item = (u32, &V)> {
        let spill = self.spill.as_deref();
        (0..self.slots.len() as u32)
            .filter(move |id| !spill.is_some_and(|s| s.is_spilled(*id)))
            .filter_map(|id| slot_of(&self.slots, id).map(|s| (id, &s.value)))
    }

    /// Writes every key and value (`value` writes one), keeping ids and the free list as they
    /// are: operators keep per-key data in vectors indexed by id, which a restore must not
    /// renumber. With the RocksDB backend only keys are written ([`KeyedState::flush`] first, and
    /// the values go into the RocksDB checkpoint; [`KeyedState::restore_spilled`] reads them).
    pub(crate) fn snapshot(
        &self,
        w: &mut StateWriter,
        mut value: impl FnMut(&V, &mut StateWriter) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        w.count(self.slots.len());
        for id in 0..self.slots.len() as u32 {
            let slot = self.slots.get(id as usize);
            // SAFETY: `&self`: the table writes no cell meanwhile.
            let slot = slot.map_or(&None, |c| unsafe { c.read() });
            encode_slot(slot, self.spill.is_none(), &mut value, w)?;
        }
        w.count(self.free.len());
        for &id in &self.free {
            w.u32(id);
        }
        Ok(())
    }

    /// Freezes the table for a snapshot the checkpoint's writer thread encodes: returns the
    /// encoder of the bytes [`KeyedState::snapshot`] would write now (`value` writes one value;
    /// with the RocksDB backend, flush first: only keys are written). Nothing is copied now;
    /// until the writer is done, the table encodes a slot itself before it changes it.
    pub(crate) fn snapshot_deferred(&mut self, value: Arc<SharedEncode<V>>) -> DeferredPart
    where
        V: Send + Sync + 'static,
    {
        self.thaw();
        let len = self.slots.len();
        let frozen = Arc::new(Frozen {
            cells: self.slots.addresses(),
            marks: (0..len).map(|_| AtomicU8::new(PENDING)).collect(),
            copied: Mutex::new(Copies::default()),
            with_values: self.spill.is_none(),
            encode: value,
            free: self.free.clone(),
            result: Mutex::new((false, None)),
            finished: AtomicBool::new(len == 0),
        });
        if len > 0 {
            self.frozen = Some(FrozenHandle(Arc::clone(&frozen)));
        }
        Box::new(move |out: &mut dyn FnMut(&[u8])| frozen.take(out))
    }

    /// Reads what [`KeyedState::snapshot`] wrote in memory (`value` reads one value), with the
    /// same ids.
    pub(crate) fn restore(
        r: &mut StateReader<'_>,
        value: impl FnMut(&mut StateReader<'_>) -> Result<V, StateError>,
    ) -> Result<KeyedState<V>, StateError> {
        Self::restore_into(KeyedState::default(), r, value)
    }

    /// Indexes the keys of `hashes` (their hash and id; the index is empty). The index places a
    /// key by the low bits of its hash (hashbrown: a power-of-two number of buckets, at most 7/8
    /// full), so the keys are sorted by those bits first and inserted in bucket order, touching
    /// the index's memory once front to back rather than missing the cache on every key (a
    /// restore of 10M keys). Fails on a key that appears twice.
    fn index_all(&mut self, hashes: &mut [(u64, u32)]) -> Result<(), StateError> {
        let KeyedState {
            index, slots, hash, ..
        } = self;
        let hash = *hash;
        index.reserve(hashes.len(), |&id| key_of(slots, id).map_or(0, hash));
        let mask = (index.capacity().saturating_mul(8) / 7)
            .max(1)
            .next_power_of_two()
            .saturating_sub(1) as u64;
        hashes.sort_unstable_by_key(|&(h, _)| h & mask);
        for &(h, id) in hashes.iter() {
            // Keys are compared only when their hashes' tags match (rarely: no slot is read).
            match index.entry(
                h,
                |&other| key_of(slots, other) == key_of(slots, id),
                |&id| key_of(slots, id).map_or(0, hash),
            ) {
                Entry::Occupied(_) => {
                    let key = key_of(slots, id).unwrap_or_default();
                    return Err(StateError(format!("key {key:?} appears twice")));
                }
                Entry::Vacant(v) => {
                    v.insert(id);
                }
            }
        }
        Ok(())
    }

    /// Reads a snapshot's slots into the empty table `state`.
    fn restore_into(
        mut state: KeyedState<V>,
        r: &mut StateReader<'_>,
        mut value: impl FnMut(&mut StateReader<'_>) -> Result<V, StateError>,
    ) -> Result<KeyedState<V>, StateError> {
        let n = r.count()?;
        // The slots first, in id order, noting each key's hash; then the index, all at once.
        // (`count` refuses a count beyond the bytes left, and a slot takes a byte at least.)
        let mut hashes: Vec<(u64, u32)> = Vec::with_capacity(n);
        for id in 0..n {
            if r.bool()? {
                let key = r.bytes()?;
                let id = u32::try_from(id).map_err(|_| StateError("too many keys".into()))?;
                hashes.push(((state.hash)(key), id));
                let value = value(r)?;
                state.slots.push(Cell::new(Some(Slot {
                    key: KeyBytes::new(key),
                    value,
                })));
            } else {
                state.slots.push(Cell::new(None));
            }
        }
        state.index_all(&mut hashes)?;
        if let Some(spill) = &mut state.spill {
            // Every restored key starts spilled: its value is in RocksDB.
            spill.flags = (0..state.slots.len() as u32)
                .map(|id| {
                    if slot_of(&state.slots, id).is_some() {
                        SPILLED
                    } else {
                        0
                    }
                })
                .collect();
        }
        let free = r.count()?;
        for _ in 0..free {
            let id = r.u32()?;
            if !matches!(
                state
                    .slots
                    .get(id as usize)
                    .map(|_| slot_of(&state.slots, id)),
                Some(None)
            ) {
                return Err(StateError(format!("free id {id} is not an empty slot")));
            }
            state.free.push(id);
        }
        Ok(state)
    }

    /// Whether the values live in RocksDB (the RocksDB backend), so a snapshot holds only keys.
    pub(crate) fn in_rocksdb(&self) -> bool {
        self.spill.is_some()
    }

    /// Values resident in memory (all of them with the in-memory backend).
    #[cfg(test)]
    pub(crate) fn resident(&self) -> usize {
        self.spill.as_ref().map_or(self.len(), |s| s.resident)
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

impl<V: Default> KeyedState<V> {
    /// Reads what [`KeyedState::snapshot`] wrote with the RocksDB backend (keys only) into a
    /// table of `backend` whose RocksDB instance was restored from the same checkpoint: every
    /// key starts spilled. The in-memory backend cannot read it (the values are in RocksDB).
    pub(crate) fn restore_spilled(
        r: &mut StateReader<'_>,
        backend: &StateBackend,
        name: &str,
        codec: impl FnOnce() -> ValueCodec<V>,
    ) -> Result<KeyedState<V>, StateError> {
        let state = KeyedState::new(backend, name, codec);
        if state.spill.is_none() {
            return Err(StateError(
                "it was checkpointed with the RocksDB state backend, which holds its values: restore it with SET 'state.backend' = 'rocksdb'".into(),
            ));
        }
        Self::restore_into(state, r, |_| Ok(V::default()))
    }

    /// Reads a table's snapshot into `backend`, by the flag [`KeyedState::write_storage`] wrote:
    /// `spilled`, its keys ([`KeyedState::restore_spilled`]); else its keys and values (`value`
    /// reads one), moved into the backend ([`KeyedState::into_backend`]).
    pub(crate) fn restore_checkpointed(
        r: &mut StateReader<'_>,
        spilled: bool,
        backend: &StateBackend,
        name: &str,
        codec: impl FnOnce() -> ValueCodec<V>,
        value: impl FnMut(&mut StateReader<'_>) -> Result<V, StateError>,
    ) -> Result<KeyedState<V>, StateError> {
        if spilled {
            Self::restore_spilled(r, backend, name, codec)
        } else {
            Self::restore(r, value)?.into_backend(backend, name, codec)
        }
    }

    /// Moves this table (restored in memory) into `backend`: with RocksDB, values beyond the
    /// resident budget are spilled right away.
    pub(crate) fn into_backend(
        mut self,
        backend: &StateBackend,
        name: &str,
        codec: impl FnOnce() -> ValueCodec<V>,
    ) -> Result<KeyedState<V>, StateError> {
        let mut spill = KeyedState::<V>::new(backend, name, codec).spill.take();
        if let Some(spill) = &mut spill {
            for id in 0..self.slots.len() as u32 {
                if slot_of(&self.slots, id).is_some() {
                    spill.inserted(id);
                }
            }
        }
        self.spill = spill;
        self.settle()?;
        Ok(self)
    }

    /// Starts a checkpoint of the table: with RocksDB, writes the values changed since the last
    /// one to it ([`KeyedState::flush`]), so its checkpoint holds every value; then writes and
    /// returns whether the values are in RocksDB (`true`: the table's snapshot holds its keys
    /// only). [`KeyedState::restore_checkpointed`] reads the snapshot back by this flag.
    pub(crate) fn write_storage(&mut self, w: &mut StateWriter) -> Result<bool, StateError> {
        self.flush()?;
        let spilled = self.in_rocksdb();
        w.bool(spilled);
        Ok(spilled)
    }

    /// Before a checkpoint (RocksDB backend): writes every value changed since the last flush,
    /// so RocksDB holds every key's current value.
    pub(crate) fn flush(&mut self) -> Result<(), StateError> {
        let KeyedState { slots, spill, .. } = self;
        let Some(spill) = spill.as_deref_mut() else {
            return Ok(());
        };
        if let Some(e) = spill.error.take() {
            return Err(e);
        }
        let mut ids = Vec::new();
        let mut bytes = Vec::new();
        for (id, f) in spill.flags.iter_mut().enumerate() {
            if let Some(slot) = slot_of(slots, id as u32)
                && *f & (DIRTY | SPILLED) == DIRTY
            {
                let mut w = StateWriter::default();
                (spill.codec.encode)(&slot.value, &mut w)?;
                bytes.push(w.into_bytes());
                ids.push(id as u32);
                *f &= !DIRTY;
            }
        }
        spill
            .table
            .put_all(ids.into_iter().zip(bytes.iter().map(Vec::as_slice)))
    }

    /// Between batches: spills the values of the keys used least recently until at most the
    /// resident budget is in memory (RocksDB backend; nothing in memory), and reports the first
    /// spilled value that could not be read back since the last call.
    pub(crate) fn settle(&mut self) -> Result<(), StateError> {
        let Some(spill) = self.spill.as_deref_mut() else {
            return Ok(());
        };
        if let Some(e) = spill.error.take() {
            return Err(e);
        }
        if spill.resident <= spill.budget {
            return Ok(());
        }
        let mut evicted = Vec::new();
        let mut bytes = Vec::new();
        let n = spill.flags.len().min(self.slots.len());
        // Two sweeps clear every second chance, so the loop ends.
        let mut steps = 2 * n + 1;
        let mut failed = None;
        while let Some(spill) = self.spill.as_deref_mut() {
            if spill.resident <= spill.budget || steps == 0 {
                break;
            }
            steps -= 1;
            let id = spill.hand;
            spill.hand = if id + 1 >= n { 0 } else { id + 1 };
            match spill.flags.get(id) {
                Some(f) if *f & (SPILLED | REFERENCED) == 0 => {}
                Some(f) if *f & SPILLED == 0 => {
                    spill.flags[id] &= !REFERENCED;
                    continue;
                }
                _ => continue,
            }
            if slot_of(&self.slots, id as u32).is_none() {
                continue;
            }
            // The slot's value is replaced: a frozen snapshot encodes it first.
            self.claim(id as u32);
            let KeyedState { slots, spill, .. } = self;
            // SAFETY: `&mut self` and the claim just made.
            let slot = slots.get(id).map(|c| unsafe { &mut *c.0.get() });
            let (Some(spill), Some(Some(slot))) = (spill.as_deref_mut(), slot) else {
                continue;
            };
            let f = &mut spill.flags[id];
            if *f & DIRTY != 0 {
                let mut w = StateWriter::default();
                if let Err(e) = (spill.codec.encode)(&slot.value, &mut w) {
                    failed = Some(e);
                    break;
                }
                bytes.push(w.into_bytes());
                evicted.push(id as u32);
            }
            slot.value = V::default();
            *f = SPILLED;
            spill.resident -= 1;
        }
        if let Some(spill) = self.spill.as_deref() {
            spill
                .table
                .put_all(evicted.iter().copied().zip(bytes.iter().map(Vec::as_slice)))?;
        }
        failed.map_or(Ok(()), Err)
    }
}

/// The slot of `id`, if it holds a key.
#[inline]
fn slot_of<V>(slots: &Chunked<Cell<V>>, id: u32) -> Option<&Slot<V>> {
    // SAFETY: a shared borrow of the cells: the table writes none meanwhile (it writes only
    // through `&mut self`), and the writer thread only reads.
    slots
        .get(id as usize)
        .and_then(|c| unsafe { c.read() }.as_ref())
}

#[inline]
fn key_of<V>(slots: &Chunked<Cell<V>>, id: u32) -> Option<&[u8]> {
    slot_of(slots, id).map(|s| s.key.as_slice())
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

    /// A restore indexes every key at once (in the order of the index's buckets): each key is
    /// found under its id, ids freed before the checkpoint stay free, and a key written twice is
    /// refused.
    #[test]
    fn a_restore_indexes_every_key_under_its_id_and_refuses_a_key_twice() {
        let mut t: KeyedState<u64> = KeyedState::default();
        for i in 0..50_000u64 {
            t.id_or_insert_with(format!("card-{i}").as_bytes(), || i);
        }
        for i in (0..50_000u32).step_by(3) {
            t.remove(i);
        }
        let bytes = snapshot_bytes(&t);
        let back = KeyedState::restore(&mut StateReader::new(&bytes), |r| r.u64()).unwrap();
        assert_eq!(back.len(), t.len());
        for i in 0..50_000u32 {
            let found = back.find(format!("card-{i}").as_bytes());
            assert_eq!(found, (i % 3 != 0).then_some(i), "key {i}");
            assert_eq!(back.get(i), t.get(i));
        }
        // The same key in two slots.
        let mut w = StateWriter::default();
        w.count(2);
        for v in [1u64, 2] {
            w.bool(true);
            w.bytes(b"card-7");
            w.u64(v);
        }
        w.count(0);
        let bytes = w.into_bytes();
        let e = KeyedState::restore(&mut StateReader::new(&bytes), |r| r.u64()).err();
        assert!(e.is_some_and(|e| e.0.contains("appears twice")));
    }

    fn snapshot_bytes(t: &KeyedState<u64>) -> Vec<u8> {
        let mut w = StateWriter::default();
        t.snapshot(&mut w, |v, w| {
            w.u64(*v);
            Ok(())
        })
        .unwrap();
        w.into_bytes()
    }

    fn shared_u64() -> Arc<SharedEncode<u64>> {
        Arc::new(|v: &u64, w: &mut StateWriter| {
            w.u64(*v);
            Ok(())
        })
    }

    fn run_part(part: DeferredPart) -> Result<Vec<u8>, StateError> {
        let mut bytes = Vec::new();
        part(&mut |b| bytes.extend_from_slice(b))?;
        Ok(bytes)
    }

    #[test]
    fn a_frozen_snapshot_is_the_table_as_it_was_frozen_however_it_changes_meanwhile() {
        for concurrent in [false, true] {
            let mut t: KeyedState<u64> = KeyedState::default();
            for k in 0..20_000u64 {
                t.id_or_insert_with(format!("card-{k}").as_bytes(), || k);
            }
            for id in (0..20_000).step_by(7) {
                t.remove(id);
            }
            let want = snapshot_bytes(&t);
            let mut part = Some(t.snapshot_deferred(shared_u64()));
            let writer = if concurrent {
                part.take().map(|p| std::thread::spawn(move || run_part(p)))
            } else {
                None
            };
            // Changes of every kind while frozen: values, removals, ids reused, new keys well
            // past the room reserved at the freeze (the table finishes the snapshot before its
            // storage moves), a clear.
            for id in (0..20_000).rev() {
                if let Some(v) = t.get_mut(id) {
                    *v += 1_000_000;
                }
                if id % 3 == 0 {
                    t.remove(id);
                }
            }
            for k in 0..40_000u64 {
                t.id_or_insert_with(format!("new-{k}").as_bytes(), || k);
            }
            let got = match (writer, part) {
                (Some(w), _) => w.join().expect("writer"),
                // The writer runs after all the changes (the table finished the snapshot when
                // its storage had to grow).
                (None, Some(p)) => run_part(p),
                (None, None) => Err(StateError("no part".into())),
            };
            assert_eq!(got.expect("encoded"), want, "concurrent: {concurrent}");
            t.clear();
            assert_eq!(t.len(), 0);
        }
        // Frozen, then the writer runs after the table finished it (its storage had to grow).
        let mut t: KeyedState<u64> = KeyedState::default();
        for k in 0..100u64 {
            t.id_or_insert_with(format!("card-{k}").as_bytes(), || k);
        }
        let want = snapshot_bytes(&t);
        let part = t.snapshot_deferred(shared_u64());
        for k in 0..5000u64 {
            *t.get_or_insert_with(format!("card-{k}").as_bytes(), || 0) += 1;
        }
        assert_eq!(run_part(part).unwrap(), want);
        // Dropped before the writer ran: the part fails instead of reading freed memory.
        let part = t.snapshot_deferred(shared_u64());
        drop(t);
        let e = run_part(part).unwrap_err();
        assert!(e.0.contains("dropped before"), "{e}");
        // An empty table.
        let mut t: KeyedState<u64> = KeyedState::default();
        let want = snapshot_bytes(&t);
        let part = t.snapshot_deferred(shared_u64());
        t.id_or_insert_with(b"a", || 1);
        assert_eq!(run_part(part).unwrap(), want);
    }

    #[test]
    fn a_frozen_rocksdb_snapshot_holds_the_keys_as_they_were() {
        let backend = rocks(2);
        let mut t = KeyedState::new(&backend, "t", u64_codec);
        for k in 0..500u64 {
            t.id_or_insert_with(format!("card-{k}").as_bytes(), || k);
            t.settle().unwrap();
        }
        t.flush().unwrap();
        let want = snapshot_bytes(&t);
        let part = t.snapshot_deferred(shared_u64());
        let writer = std::thread::spawn(move || run_part(part));
        // Reading back, spilling and removing keys while frozen.
        for id in 0..500u32 {
            if id % 2 == 0 {
                t.remove(id);
            } else {
                *t.get_mut(id).unwrap() += 1;
            }
            t.settle().unwrap();
        }
        assert_eq!(writer.join().expect("writer").unwrap(), want);
    }

    fn rocks(resident: usize) -> StateBackend {
        crate::testkit::rocksdb_backend(resident)
    }

    fn u64_codec() -> ValueCodec<u64> {
        ValueCodec {
            encode: Box::new(|v, w| {
                w.u64(*v);
                Ok(())
            }),
            decode: Box::new(|r| r.u64()),
        }
    }

    fn counts(t: &KeyedState<u64>) -> Vec<(u32, u64)> {
        t.values().map(|(id, v)| (id, *v)).collect()
    }

    #[test]
    fn spilled_values_come_back_on_access_and_only_the_budget_stays_resident() {
        let backend = rocks(3);
        let dir = backend.working_dir().unwrap().to_path_buf();
        let mut t = KeyedState::new(&backend, "t", u64_codec);
        for k in 0..100u64 {
            let id = t.id_or_insert_with(format!("card-{k}").as_bytes(), || 0);
            *t.get_mut(id).unwrap() += k;
            t.settle().unwrap();
            assert!(t.resident() <= 3, "{} resident", t.resident());
        }
        assert_eq!(t.len(), 100);
        // Spilled values are not visible without reading them back...
        assert_eq!(t.get(5), None);
        assert_eq!(counts(&t).len(), 3);
        // ...and every one comes back by id or by key, with its id and key bytes kept.
        for k in 0..100u32 {
            assert_eq!(t.get_mut(k).copied(), Some(u64::from(k)), "key {k}");
            assert_eq!(t.key(k), format!("card-{k}").as_bytes());
            t.settle().unwrap();
        }
        let id = t.id_or_insert_with(b"card-42", || 0);
        assert_eq!((id, t.get(id).copied()), (42, Some(42)));
        // Updates to a value read back are kept when it is spilled again.
        *t.get_mut(7).unwrap() = 700;
        for k in 50..100 {
            t.get_mut(k);
            t.settle().unwrap();
        }
        assert_eq!(t.get(7), None, "key 7 was spilled again");
        assert_eq!(t.get_mut(7).copied(), Some(700));
        drop(t);
        drop(backend);
        assert!(!dir.exists(), "the working dir is removed at the end");
        // One left by a killed run (its process is gone) is removed by the next run's start.
        let parent = dir.parent().unwrap();
        let stale = parent.join("fsql-state-4194304999-0-1");
        let live = parent.join(format!("fsql-state-{}-999-1", std::process::id()));
        std::fs::create_dir_all(stale.join("x")).unwrap();
        std::fs::create_dir_all(&live).unwrap();
        let next = rocks(3);
        assert!(!stale.exists() && live.exists());
        drop(next);
        let _ = std::fs::remove_dir_all(live);
    }

    #[test]
    fn a_value_read_back_unchanged_is_not_written_again() {
        use std::sync::atomic::AtomicUsize;
        let writes = Arc::new(AtomicUsize::new(0));
        // `u64_codec`, counting the values it encodes.
        let codec = {
            let writes = Arc::clone(&writes);
            move || {
                let ValueCodec { encode, decode } = u64_codec();
                ValueCodec {
                    encode: Box::new(move |v: &u64, w: &mut StateWriter| {
                        writes.fetch_add(1, Ordering::Relaxed);
                        encode(v, w)
                    }),
                    decode,
                }
            }
        };
        let backend = rocks(1);
        let mut t = KeyedState::new(&backend, "t", codec);
        for k in 0..10u64 {
            t.id_or_insert_with(format!("card-{k}").as_bytes(), || k);
            t.settle().unwrap();
        }
        t.flush().unwrap();
        let written = writes.load(Ordering::Relaxed);
        assert!(written >= 10, "every new value is written once: {written}");
        // Read back and spilled again, unchanged: nothing is written, and the values are intact.
        for round in 0..2 {
            for k in 0..10u32 {
                assert_eq!(
                    t.get_mut_unchanged(k).copied(),
                    Some(u64::from(k)),
                    "{round}"
                );
                t.settle().unwrap();
            }
            t.flush().unwrap();
        }
        assert_eq!(writes.load(Ordering::Relaxed), written);
        // Read back through `get_mut`, a value counts as changed and is written again.
        t.get_mut(3);
        t.settle().unwrap();
        t.flush().unwrap();
        assert_eq!(writes.load(Ordering::Relaxed), written + 1);
    }

    #[test]
    fn the_clock_keeps_recently_used_keys_resident() {
        let backend = rocks(2);
        let mut t = KeyedState::new(&backend, "t", u64_codec);
        let hot = t.id_or_insert_with(b"hot", || 1);
        for k in 0..20u64 {
            t.id_or_insert_with(format!("cold-{k}").as_bytes(), || k);
            t.get_mut(hot);
            t.settle().unwrap();
            assert!(
                t.get(hot).is_some(),
                "the key used every batch stays resident"
            );
        }
    }

    #[test]
    fn removing_a_spilled_key_deletes_it_and_its_id_is_reused_fresh() {
        let backend = rocks(1);
        let mut t = KeyedState::new(&backend, "t", u64_codec);
        let a = t.id_or_insert_with(b"a", || 10);
        t.settle().unwrap();
        let b = t.id_or_insert_with(b"b", || 20);
        t.settle().unwrap();
        assert_eq!(t.get(a), None, "a is spilled");
        // State TTL removes an idle key by id: the value comes back with it and leaves RocksDB.
        assert_eq!(t.remove(a), Some(10));
        assert_eq!(t.find(b"a"), None);
        let c = t.id_or_insert_with(b"c", || 30);
        assert_eq!(c, a, "the id is reused");
        t.settle().unwrap();
        t.get_mut(b);
        t.settle().unwrap();
        assert_eq!(t.get_mut(c).copied(), Some(30), "not a's old value");
        assert_eq!(t.len(), 2);
        t.clear();
        assert_eq!((t.len(), t.resident()), (0, 0));
        assert_eq!(t.id_or_insert_with(b"a", || 1), 0);
        assert_eq!(t.get_mut(0).copied(), Some(1));
    }

    #[test]
    fn a_rocksdb_snapshot_holds_keys_and_the_values_come_back_from_rocksdb() {
        let backend = rocks(4);
        let mut t = KeyedState::new(&backend, "t", u64_codec);
        let mut memory: KeyedState<u64> = KeyedState::default();
        for k in 0..40u64 {
            let key = format!("card-{k}");
            t.id_or_insert_with(key.as_bytes(), || k * 3);
            memory.id_or_insert_with(key.as_bytes(), || k * 3);
            t.settle().unwrap();
        }
        t.remove(9);
        memory.remove(9);
        *t.get_mut(20).unwrap() = 1;
        *memory.get_mut(20).unwrap() = 1;
        t.flush().unwrap();
        let keys_only = snapshot_bytes(&t);
        let inline = snapshot_bytes(&memory);
        assert!(
            keys_only.len() + 39 * 8 == inline.len(),
            "no values in the snapshot"
        );
        // Restored against the instance the flush wrote to: keys spilled, values read back.
        let mut r = StateReader::new(&keys_only);
        let mut back = KeyedState::restore_spilled(&mut r, &backend, "t", u64_codec).unwrap();
        r.finish().unwrap();
        assert_eq!((back.len(), back.resident()), (39, 0));
        assert_eq!(back.find(b"card-9"), None);
        for k in (0..40u32).filter(|&k| k != 9) {
            let want = if k == 20 { 1 } else { u64::from(k) * 3 };
            assert_eq!(back.get_mut(k).copied(), Some(want), "key {k}");
        }
        // The in-memory backend cannot read it: its values are in RocksDB.
        let e = KeyedState::restore_spilled(
            &mut StateReader::new(&keys_only),
            &StateBackend::memory(),
            "t",
            u64_codec,
        )
        .err()
        .unwrap();
        assert!(
            e.0.contains("restore it with SET 'state.backend' = 'rocksdb'"),
            "{e}"
        );
        // An in-memory snapshot restores into RocksDB, spilling beyond the budget at once.
        let mut r = StateReader::new(&inline);
        let back = KeyedState::restore(&mut r, |r| r.u64()).unwrap();
        let mut back = back.into_backend(&rocks(2), "t", u64_codec).unwrap();
        assert_eq!((back.len(), back.resident()), (39, 2));
        assert_eq!(back.get_mut(21).copied(), Some(63));
    }

    #[test]
    fn a_corrupt_spilled_value_is_an_error_not_a_panic() {
        let backend = rocks(1);
        let mut t = KeyedState::new(&backend, "t", u64_codec);
        let a = t.id_or_insert_with(b"a", || 10);
        t.settle().unwrap();
        t.id_or_insert_with(b"b", || 20);
        t.settle().unwrap();
        let spill = t.spill.as_ref().unwrap();
        spill.table.put_raw(a, &[1, 2, 3]);
        assert_eq!(t.get_mut(a), None);
        let e = t.settle().unwrap_err();
        assert!(e.0.contains("spilled state of key 0"), "{e}");
        // A restore finds the damage when the key is used.
        t.flush().unwrap();
        let mut w = StateWriter::default();
        t.snapshot(&mut w, |_, _| Ok(())).unwrap();
        let bytes = w.into_bytes();
        let mut back =
            KeyedState::restore_spilled(&mut StateReader::new(&bytes), &backend, "t", u64_codec)
                .unwrap();
        assert!(back.settle().is_ok());
        assert_eq!(back.get_mut(a), None);
        assert!(back.settle().is_err());
    }

    #[test]
    fn a_rocksdb_checkpoint_is_incremental_restores_as_taken_and_a_damaged_one_is_refused() {
        let dir = crate::testkit::temp_dir("rocks-checkpoint");
        let settings: std::collections::BTreeMap<String, String> = [
            ("state.backend", "rocksdb".to_string()),
            ("state.backend.rocksdb.resident-keys", "3".to_string()),
            (
                "state.backend.rocksdb.localdir",
                dir.join("work").display().to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let backend = StateBackend::open(&settings, None).unwrap();
        let mut t = KeyedState::new(&backend, "t", u64_codec);
        for k in 0..1000u64 {
            t.id_or_insert_with(format!("card-{k}").as_bytes(), || k);
            t.settle().unwrap();
        }
        let keys = |t: &mut KeyedState<u64>| {
            t.flush().unwrap();
            let mut w = StateWriter::default();
            t.snapshot(&mut w, |_, _| Ok(())).unwrap();
            w.into_bytes()
        };
        let first_keys = keys(&mut t);
        let first = backend
            .checkpoint(&dir.join("chk-1"), None)
            .unwrap()
            .unwrap();
        assert!(
            first.files.iter().any(|f| f.0.ends_with(".sst")),
            "{first:?}"
        );
        assert_eq!(first.new_bytes, first.bytes);
        // One changed key later, the next checkpoint shares the first one's SST files.
        *t.get_mut(5).unwrap() = 5000;
        let second_keys = keys(&mut t);
        let second = backend
            .checkpoint(&dir.join("chk-2"), Some(&first))
            .unwrap()
            .unwrap();
        assert!(
            second.new_bytes < second.bytes && second.new_bytes < first.bytes,
            "{first:?} {second:?}"
        );
        // Each restores as it was taken, into its own new instance; the checkpoint is not touched.
        for (chk, meta, keys, want5) in [
            ("chk-1", &first, &first_keys, 5),
            ("chk-2", &second, &second_keys, 5000),
        ] {
            let restored = StateBackend::open(&settings, Some((&dir.join(chk), meta))).unwrap();
            let mut r = StateReader::new(keys);
            let mut back = KeyedState::restore_spilled(&mut r, &restored, "t", u64_codec).unwrap();
            assert_eq!((back.len(), back.resident()), (1000, 0));
            assert_eq!(back.get_mut(5).copied(), Some(want5), "{chk}");
            assert_eq!(back.get_mut(999).copied(), Some(999), "{chk}");
            *back.get_mut(6).unwrap() = 0;
            back.flush().unwrap();
            // Its own checkpoint flushes the change to an SST file of the new instance.
            restored
                .checkpoint(&dir.join(format!("{chk}-again")), Some(meta))
                .unwrap();
        }
        let again = StateBackend::open(&settings, Some((&dir.join("chk-1"), &first))).unwrap();
        let mut r = StateReader::new(&first_keys);
        let mut back = KeyedState::restore_spilled(&mut r, &again, "t", u64_codec).unwrap();
        assert_eq!(
            back.get_mut(6).copied(),
            Some(6),
            "a restored run never writes into its checkpoint"
        );
        // A truncated or missing file is refused before RocksDB opens the files.
        let sst = &first
            .files
            .iter()
            .find(|f| f.0.ends_with(".sst"))
            .unwrap()
            .0;
        let path = dir.join("chk-1").join(sst);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(1)
            .unwrap();
        let e = StateBackend::open(&settings, Some((&dir.join("chk-1"), &first)))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("1 bytes where the metadata says"), "{e}");
        std::fs::remove_file(&path).unwrap();
        assert!(StateBackend::open(&settings, Some((&dir.join("chk-1"), &first))).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
