//! [`Chunked`]: a growable sequence whose elements never move.
//!
//! A [`KeyedState`](super::KeyedState) holds one slot per key. In a `Vec` that doubles, a table
//! of three million keys holds up to a million more empty slots, and while it grows it briefly
//! holds the old and the new buffer (a third of a gigabyte for the largest OVER table of the
//! reference pipeline at one million cards). In chunks, it holds at most one partly filled chunk,
//! and growing copies nothing. The elements' addresses stay fixed, so a frozen snapshot's writer
//! thread can read them while the table grows ([`Addresses`]).

/// The first chunk holds `1 << FIRST_BITS` elements; each next one as many as all before it...
const FIRST_BITS: u32 = 4;
/// ... up to `1 << LAST_BITS` elements, the size of every chunk after that.
const LAST_BITS: u32 = 12;
/// Chunks that double (holding the first `1 << LAST_BITS` elements).
const GROWING: usize = (LAST_BITS - FIRST_BITS + 1) as usize;

/// The chunk of element `i`, and its place in the chunk.
#[inline]
fn locate(i: usize) -> (usize, usize) {
    if i >= 1 << LAST_BITS {
        (GROWING - 1 + (i >> LAST_BITS), i & ((1 << LAST_BITS) - 1))
    } else if i < 1 << FIRST_BITS {
        (0, i)
    } else {
        let b = i.ilog2();
        ((b - FIRST_BITS + 1) as usize, i - (1 << b))
    }
}

/// The number of elements chunk `c` holds.
fn chunk_len(c: usize) -> usize {
    match c {
        0 => 1 << FIRST_BITS,
        c if c < GROWING => 1 << (c + FIRST_BITS as usize - 1),
        _ => 1 << LAST_BITS,
    }
}

/// A growable sequence stored in chunks that are never reallocated: small sequences stay small
/// (the first chunks double from 16 elements), large ones grow by 4,096 elements at a time, and
/// an element never moves once pushed.
///
/// ```ignore
/// let mut v = Chunked::default();
/// for i in 0..10_000 {
///     assert_eq!(v.push(i), i);
/// }
/// assert_eq!(v.get(9_999), Some(&9_999));
/// ```
pub(crate) struct Chunked<T> {
    /// Each chunk is allocated with its full [`chunk_len`] capacity, and only pushed to within
    /// it, so its buffer never moves.
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Chunked<T> {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        let (c, at) = locate(i);
        self.chunks.get(c)?.get(at)
    }

    /// Appends `value`; its index.
    pub(crate) fn push(&mut self, value: T) -> usize {
        let i = self.len;
        let (c, _) = locate(i);
        if c == self.chunks.len() {
            self.chunks.push(Vec::with_capacity(chunk_len(c)));
        }
        let chunk = &mut self.chunks[c];
        debug_assert!(chunk.len() < chunk.capacity(), "a chunk never reallocates");
        chunk.push(value);
        self.len += 1;
        i
    }

    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
    }

    /// The addresses of the elements there are now, for a reader that must not borrow the
    /// sequence (a frozen snapshot's writer thread).
    pub(crate) fn addresses(&self) -> Addresses<T> {
        Addresses {
            chunks: self.chunks.iter().map(|c| c.as_ptr()).collect(),
            len: self.len,
        }
    }
}

/// Where the elements of a [`Chunked`] were when taken: valid while the sequence is neither
/// cleared nor dropped (pushing moves nothing).
pub(crate) struct Addresses<T> {
    chunks: Vec<*const T>,
    len: usize,
}

impl<T> Addresses<T> {
    /// Element `i` (`i` below the length when taken).
    ///
    /// # Safety
    /// The sequence is still alive and was not cleared, and nothing writes element `i`
    /// meanwhile.
    pub(crate) unsafe fn get(&self, i: usize) -> Option<&T> {
        if i >= self.len {
            return None;
        }
        let (c, at) = locate(i);
        let base = self.chunks.get(c)?;
        // SAFETY: `i` was below the length, so `at` is within chunk `c`'s initialised elements,
        // which stay in place while the sequence lives uncleared (the caller's guarantee).
        Some(unsafe { &*base.add(at) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_map_to_consecutive_places_in_chunks_of_the_stated_sizes() {
        let mut expected = (0, 0);
        for i in 0..40_000 {
            assert_eq!(locate(i), expected, "element {i}");
            expected.1 += 1;
            if expected.1 == chunk_len(expected.0) {
                expected = (expected.0 + 1, 0);
            }
        }
        assert_eq!(chunk_len(0), 16);
        assert_eq!(chunk_len(GROWING - 1), 2048);
        assert_eq!(chunk_len(GROWING), 4096);
    }

    #[test]
    fn elements_keep_their_addresses_as_the_sequence_grows() {
        let mut v = Chunked::default();
        let mut first = Vec::new();
        for i in 0..20_000u64 {
            assert_eq!(v.push(i), i as usize);
            if i % 997 == 0 {
                first.push((i, std::ptr::from_ref(v.get(i as usize).unwrap())));
            }
        }
        let at = v.addresses();
        for (i, p) in first {
            assert!(std::ptr::eq(v.get(i as usize).unwrap(), p));
            // SAFETY: `v` is alive, uncleared and not written.
            assert!(std::ptr::eq(unsafe { at.get(i as usize) }.unwrap(), p));
        }
        assert_eq!(v.len(), 20_000);
        assert_eq!(v.get(20_000), None);
        // SAFETY: as above.
        assert!(unsafe { at.get(20_000) }.is_none());
        v.clear();
        assert_eq!((v.len(), v.get(0)), (0, None));
    }
}
