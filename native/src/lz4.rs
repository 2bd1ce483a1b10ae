//! The LZ4 block API of the system's liblz4 (linked by build.rs), declared by hand.
//!
//! Frames carry lz4-napi's "prepend size" layout (u32 LE uncompressed size, then one raw LZ4 block),
//! which is the plain block format liblz4 reads and writes, so either codec reads the other's bodies.

use std::ffi::{c_char, c_int, CStr};

extern "C" {
    fn LZ4_compress_default(src: *const c_char, dst: *mut c_char, src_size: c_int, dst_capacity: c_int) -> c_int;
    fn LZ4_decompress_safe(src: *const c_char, dst: *mut c_char, compressed_size: c_int, dst_capacity: c_int) -> c_int;
    fn LZ4_versionString() -> *const c_char;
}

/// Compresses `src` into `dst` (its length is the capacity). Returns the block size, or None when
/// the block does not fit: callers pass a capacity below the input size to mean "only if smaller".
pub fn compress_into(src: &[u8], dst: &mut [u8]) -> Option<usize> {
    let src_len = c_int::try_from(src.len()).ok()?;
    let cap = c_int::try_from(dst.len()).unwrap_or(c_int::MAX);
    // SAFETY: both pointers are valid for the lengths passed; liblz4 never writes past `cap`.
    let n = unsafe { LZ4_compress_default(src.as_ptr().cast(), dst.as_mut_ptr().cast(), src_len, cap) };
    if n > 0 {
        Some(n as usize)
    } else {
        None
    }
}

/// Decompresses one block into exactly `dst.len()` bytes. `LZ4_decompress_safe` is the hostile-input
/// safe decoder: it never reads past `src` nor writes past `dst`, and reports malformed blocks.
pub fn decompress_exact(src: &[u8], dst: &mut [u8]) -> Result<(), String> {
    let src_len = c_int::try_from(src.len()).map_err(|_| "compressed body too large".to_string())?;
    let cap = c_int::try_from(dst.len()).map_err(|_| "declared body too large".to_string())?;
    // SAFETY: both pointers are valid for the lengths passed.
    let n = unsafe { LZ4_decompress_safe(src.as_ptr().cast(), dst.as_mut_ptr().cast(), src_len, cap) };
    if n < 0 {
        Err(format!("LZ4 body is corrupt (error at input byte {})", -(n as i64) - 1))
    } else if n != cap {
        Err(format!("LZ4 body decompressed to {n} bytes, expected {cap}"))
    } else {
        Ok(())
    }
}

pub fn version() -> String {
    // SAFETY: liblz4 returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(LZ4_versionString()) }
        .to_string_lossy()
        .into_owned()
}
