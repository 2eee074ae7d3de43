//! Functions compiled code calls for what Cranelift has no instruction for. They take plain
//! values (pointers with lengths for strings), never panic, and never allocate.

/// Byte-wise three-way comparison of two UTF-8 strings (Arrow's string order): -1, 0 or 1.
///
/// # Safety
/// `a..a+a_len` and `b..b+b_len` must be readable (compiled code passes Arrow string slices or
/// literals the kernel owns); a zero length may come with any pointer.
pub(crate) unsafe extern "C" fn str_cmp(a: *const u8, a_len: i64, b: *const u8, b_len: i64) -> i32 {
    let slice = |p: *const u8, len: i64| -> &[u8] {
        if len <= 0 || p.is_null() {
            &[]
        } else {
            // SAFETY: the caller guarantees `len` readable bytes at `p`.
            unsafe { std::slice::from_raw_parts(p, len as usize) }
        }
    };
    match slice(a, a_len).cmp(slice(b, b_len)) {
        std::cmp::Ordering::Less => -1,
        std::cmp::Ordering::Equal => 0,
        std::cmp::Ordering::Greater => 1,
    }
}

/// `a % b` of doubles (C's `fmod`, as Arrow's remainder kernel).
pub(crate) extern "C" fn fmod64(a: f64, b: f64) -> f64 {
    a % b
}

/// `a % b` of floats.
pub(crate) extern "C" fn fmod32(a: f32, b: f32) -> f32 {
    a % b
}

/// `a * b` of two `i128`s given as (low, high) halves, written to `out` as two halves; returns
/// 1 when the product overflows `i128` (then `out` is not written).
///
/// # Safety
/// `out` must be writable for two `i64`s (compiled code passes a stack slot of its own).
pub(crate) unsafe extern "C" fn mul_i128(
    a_lo: i64,
    a_hi: i64,
    b_lo: i64,
    b_hi: i64,
    out: *mut i64,
) -> i8 {
    let join = |lo: i64, hi: i64| (i128::from(hi) << 64) | i128::from(lo as u64);
    match join(a_lo, a_hi).checked_mul(join(b_lo, b_hi)) {
        Some(p) => {
            // SAFETY: the caller guarantees two writable `i64`s at `out`.
            unsafe {
                out.write_unaligned(p as i64);
                out.add(1).write_unaligned((p >> 64) as i64);
            }
            0
        }
        None => 1,
    }
}
