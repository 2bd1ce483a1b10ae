//! The batch frame, byte for byte the layout of src/codec/frame.ts:
//!
//! ```text
//! offset size  field
//! 0      4     magic "MGF1"
//! 4      1     version (1)
//! 5      1     flags: bit 0 = body is LZ4-compressed
//! 6      2     reserved (0)
//! 8      4     payload count (u32 LE)
//! 12     4     raw body length (u32 LE): Σ(4 + payload length)
//! 16     4     CRC-32C over bytes 0..15 and the body as stored (u32 LE)
//! 20     …     body: per payload a u32 LE length and its bytes; if compressed, u32 LE raw length
//!              and the LZ4 block of the raw body (lz4-napi's prepend-size layout)
//! ```
//!
//! Decoding is hostile-input safe: every length is checked against the bytes present and the hard
//! limits before anything is allocated; the largest allocation a frame can cause is its declared
//! raw body, at most `MAX_FRAME_BODY` and at most ~255× the bytes actually received.
//!
//! This module knows nothing of Node-API: output memory comes from a caller-supplied allocator, so
//! the Rust tests run it on plain vectors.

use crate::crc32c::crc32c_update;
use crate::fail::{Fail, Kind, CODE_CODEC};
use crate::lz4;
use std::cell::RefCell;
use std::mem::MaybeUninit;

pub const FRAME_MAGIC: u32 = 0x3146_474d; // "MGF1" read as u32 LE
pub const FRAME_VERSION: u8 = 1;
pub const FRAME_HEADER_BYTES: usize = 20;
pub const FLAG_LZ4: u8 = 1;
/// Largest raw body a frame may declare (256 MiB).
pub const MAX_FRAME_BODY: usize = 256 * 1024 * 1024;
/// Most payloads a frame may declare.
pub const MAX_FRAME_PAYLOADS: usize = 1_000_000;
/// Bodies smaller than this are not worth compressing.
pub const COMPRESS_MIN_BYTES: usize = 512;
/// Scratch buffers above this size are released after use instead of kept for the next batch.
const SCRATCH_KEEP_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub flags: u8,
    pub count: usize,
    pub raw_length: usize,
    pub crc: u32,
}

#[inline]
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Reads and checks the fixed header (not the checksum, which needs the body).
pub fn read_header(frame: &[u8]) -> Result<Header, Fail> {
    if frame.len() < FRAME_HEADER_BYTES {
        return Err(Fail::codec(format_args!("truncated header ({} bytes)", frame.len())));
    }
    if u32_at(frame, 0) != FRAME_MAGIC {
        return Err(Fail::codec("bad magic (not a metaguard frame)"));
    }
    let version = frame[4];
    if version != FRAME_VERSION {
        return Err(Fail::codec(format_args!("unsupported version {version}")));
    }
    let flags = frame[5];
    if flags & !FLAG_LZ4 != 0 || frame[6] != 0 || frame[7] != 0 {
        return Err(Fail::codec("unknown flags"));
    }
    let count = u32_at(frame, 8) as usize;
    let raw_length = u32_at(frame, 12) as usize;
    if count > MAX_FRAME_PAYLOADS {
        return Err(Fail::codec(format_args!(
            "declares {count} payloads (limit {MAX_FRAME_PAYLOADS})"
        )));
    }
    if raw_length > MAX_FRAME_BODY {
        return Err(Fail::codec(format_args!(
            "declares a {raw_length}-byte body (limit {MAX_FRAME_BODY})"
        )));
    }
    if raw_length < count * 4 {
        return Err(Fail::codec(format_args!(
            "body of {raw_length} bytes cannot hold {count} payloads"
        )));
    }
    let stored = frame.len() - FRAME_HEADER_BYTES;
    if flags & FLAG_LZ4 == 0 && stored != raw_length {
        return Err(Fail::codec(format_args!(
            "body is {stored} bytes, header says {raw_length}"
        )));
    }
    Ok(Header {
        flags,
        count,
        raw_length,
        crc: u32_at(frame, 16),
    })
}

/// Reads the header and verifies the checksum; after this the body is the one the sender sealed.
pub fn open(frame: &[u8]) -> Result<Header, Fail> {
    let header = read_header(frame)?;
    let crc = crc32c_update(crc32c_update(0, &frame[..16]), &frame[FRAME_HEADER_BYTES..]);
    if crc != header.crc {
        return Err(Fail::codec("checksum mismatch (corrupt or tampered frame)"));
    }
    if header.flags & FLAG_LZ4 != 0 {
        compressed_block(frame, &header)?;
    }
    Ok(header)
}

/// The LZ4 block of a compressed frame, after checking its size prefix and that it can plausibly
/// expand to the declared raw length (so a tiny frame cannot make us allocate 256 MiB).
pub fn compressed_block<'f>(frame: &'f [u8], header: &Header) -> Result<&'f [u8], Fail> {
    let stored = &frame[FRAME_HEADER_BYTES..];
    if stored.len() < 4 {
        return Err(Fail::codec("truncated compressed body"));
    }
    let declared = u32_at(stored, 0) as usize;
    if declared != header.raw_length {
        return Err(Fail::codec(format_args!(
            "compressed body declares {declared} bytes, header says {}",
            header.raw_length
        )));
    }
    // LZ4 expands at most ~255x; a smaller input cannot honestly produce `raw_length` bytes.
    if header.raw_length > (stored.len() - 4) * 255 + 16 {
        return Err(Fail::codec("compressed body too small for its declared size"));
    }
    Ok(&stored[4..])
}

/// Decompresses the body of an opened compressed frame into `dst` (exactly `raw_length` bytes).
pub fn decompress_body(frame: &[u8], header: &Header, dst: &mut [u8]) -> Result<(), Fail> {
    let block = compressed_block(frame, header)?;
    lz4::decompress_exact(block, dst).map_err(Fail::codec)
}

/// Splits a raw body into `(offset, length)` pairs, checking every length. No copies.
pub fn split_body(body: &[u8], count: usize, out: &mut Vec<(usize, usize)>) -> Result<(), Fail> {
    out.clear();
    out.reserve_exact(count);
    let mut off = 0usize;
    for i in 0..count {
        if body.len() - off < 4 {
            return Err(Fail::codec(format_args!("payload {i} length runs past the body")));
        }
        let len = u32_at(body, off) as usize;
        off += 4;
        if len > body.len() - off {
            return Err(Fail::codec(format_args!(
                "payload {i} ({len} bytes) runs past the body"
            )));
        }
        out.push((off, len));
        off += len;
    }
    if off != body.len() {
        return Err(Fail::codec(format_args!(
            "{} trailing bytes after {count} payloads",
            body.len() - off
        )));
    }
    Ok(())
}

/// Size of the raw body for `payloads`, checked against the limits a decoder enforces (a frame
/// that no decoder would accept is refused at the sender).
pub fn raw_length_of<P: AsRef<[u8]>>(payloads: &[P]) -> Result<usize, Fail> {
    if payloads.len() > MAX_FRAME_PAYLOADS {
        return Err(Fail::new(
            Kind::RangeError,
            CODE_CODEC,
            format!(
                "frame: {} payloads exceed the limit of {MAX_FRAME_PAYLOADS} per frame",
                payloads.len()
            ),
        ));
    }
    let mut raw = 0usize;
    for p in payloads {
        raw += 4 + p.as_ref().len();
    }
    if raw > MAX_FRAME_BODY {
        return Err(Fail::new(
            Kind::RangeError,
            CODE_CODEC,
            format!("frame: a {raw}-byte body exceeds the limit of {MAX_FRAME_BODY} bytes per frame"),
        ));
    }
    Ok(raw)
}

fn write_header(frame: &mut [u8], flags: u8, count: usize, raw_length: usize) {
    frame[0..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
    frame[4] = FRAME_VERSION;
    frame[5] = flags;
    frame[6] = 0;
    frame[7] = 0;
    frame[8..12].copy_from_slice(&(count as u32).to_le_bytes());
    frame[12..16].copy_from_slice(&(raw_length as u32).to_le_bytes());
}

fn seal(frame: &mut [u8]) {
    let crc = crc32c_update(crc32c_update(0, &frame[..16]), &frame[FRAME_HEADER_BYTES..]);
    frame[16..20].copy_from_slice(&crc.to_le_bytes());
}

/// Writes the raw body (per payload: u32 LE length, bytes) into `dst`, which is exactly its size.
fn write_raw_body<P: AsRef<[u8]>>(payloads: &[P], dst: &mut [u8]) {
    let mut off = 0;
    for p in payloads {
        let p = p.as_ref();
        dst[off..off + 4].copy_from_slice(&(p.len() as u32).to_le_bytes());
        dst[off + 4..off + 4 + p.len()].copy_from_slice(p);
        off += 4 + p.len();
    }
}

thread_local! {
    /// Raw body and compressed block of the last batch, reused so a steady stream of batches does
    /// not allocate. Per thread: the addon is loaded in piscina worker threads too.
    static RAW_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static PACKED_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch vector (a fresh one if it is somehow already in use), and
/// drops the scratch afterwards if one huge batch grew it past `SCRATCH_KEEP_BYTES`.
fn with_scratch<R>(key: &'static std::thread::LocalKey<RefCell<Vec<u8>>>, f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut v) => {
            let r = f(&mut v);
            if v.capacity() > SCRATCH_KEEP_BYTES {
                *v = Vec::new();
            }
            r
        }
        Err(_) => f(&mut Vec::new()),
    })
}

/// Compresses a raw body into a new frame from `alloc`, if that makes the stored body (4-byte size
/// and LZ4 block) smaller than the raw one. Returns false, having allocated nothing, when it does
/// not (the rule of src/codec/js.ts).
fn compress_frame<'o>(
    raw: &[u8],
    count: usize,
    alloc: impl FnOnce(usize) -> Result<&'o mut [u8], Fail>,
) -> Result<bool, Fail> {
    with_scratch(&PACKED_SCRATCH, |packed| {
        // Give liblz4 exactly the room that would still be a saving and let it give up otherwise.
        let room = raw.len() - 5;
        packed.clear();
        packed.reserve(room);
        let Some(n) = compress_uninit(raw, &mut packed.spare_capacity_mut()[..room]) else {
            return Ok(false);
        };
        // SAFETY: liblz4 initialised the first `n` bytes.
        unsafe { packed.set_len(n) };
        let frame = alloc(FRAME_HEADER_BYTES + 4 + n)?;
        write_header(frame, FLAG_LZ4, count, raw.len());
        frame[20..24].copy_from_slice(&(raw.len() as u32).to_le_bytes());
        frame[24..].copy_from_slice(packed);
        seal(frame);
        Ok(true)
    })
}

/// Encodes `payloads` into a frame whose memory comes from `alloc(frame length)`. With `compress`,
/// the body is LZ4-compressed when the raw body is at least `COMPRESS_MIN_BYTES` and compression
/// makes it smaller (the rule of src/codec/js.ts).
pub fn encode<'o, P: AsRef<[u8]>>(
    payloads: &[P],
    compress: bool,
    alloc: impl FnOnce(usize) -> Result<&'o mut [u8], Fail>,
) -> Result<(), Fail> {
    let raw_length = raw_length_of(payloads)?;
    let count = payloads.len();
    if compress && raw_length >= COMPRESS_MIN_BYTES {
        with_scratch(&RAW_SCRATCH, |raw| {
            raw.clear();
            raw.reserve(raw_length);
            for p in payloads {
                let p = p.as_ref();
                raw.extend_from_slice(&(p.len() as u32).to_le_bytes());
                raw.extend_from_slice(p);
            }
            let mut alloc = Some(alloc);
            if compress_frame(raw, count, |n| (alloc.take().expect("allocator used once"))(n))? {
                return Ok(());
            }
            let frame = (alloc.take().expect("allocator used once"))(FRAME_HEADER_BYTES + raw_length)?;
            write_header(frame, 0, count, raw_length);
            frame[FRAME_HEADER_BYTES..].copy_from_slice(raw);
            seal(frame);
            Ok(())
        })
    } else {
        let frame = alloc(FRAME_HEADER_BYTES + raw_length)?;
        write_header(frame, 0, count, raw_length);
        write_raw_body(payloads, &mut frame[FRAME_HEADER_BYTES..]);
        seal(frame);
        Ok(())
    }
}

/// What `seal_laid_out` did with the frame it was given.
#[derive(Debug, PartialEq, Eq)]
pub enum Sealed {
    /// The header and checksum were written into the given frame, which is the result.
    InPlace,
    /// The body compressed: the result is a new frame from the allocator.
    Compressed,
}

/// Finishes a frame whose caller reserved the 20 header bytes and laid out the raw body after them
/// (the JavaScript side does that layout: per payload it is much cheaper there than through
/// Node-API). `count` is the number of payloads in the body; the body's structure is checked, so a
/// wrong `count` is an error rather than a frame no decoder accepts.
pub fn seal_laid_out<'o>(
    frame: &mut [u8],
    count: usize,
    compress: bool,
    alloc: impl FnOnce(usize) -> Result<&'o mut [u8], Fail>,
) -> Result<Sealed, Fail> {
    if frame.len() < FRAME_HEADER_BYTES {
        return Err(Fail::new(
            Kind::RangeError,
            CODE_CODEC,
            "sealFrame: the frame has no room for its header",
        ));
    }
    let raw_length = frame.len() - FRAME_HEADER_BYTES;
    if count > MAX_FRAME_PAYLOADS {
        return Err(Fail::new(
            Kind::RangeError,
            CODE_CODEC,
            format!("frame: {count} payloads exceed the limit of {MAX_FRAME_PAYLOADS} per frame"),
        ));
    }
    if raw_length > MAX_FRAME_BODY {
        return Err(Fail::new(
            Kind::RangeError,
            CODE_CODEC,
            format!("frame: a {raw_length}-byte body exceeds the limit of {MAX_FRAME_BODY} bytes per frame"),
        ));
    }
    if !body_is_well_formed(&frame[FRAME_HEADER_BYTES..], count) {
        return Err(Fail::new(
            Kind::Error,
            CODE_CODEC,
            format!("sealFrame: the body does not hold {count} length-prefixed payloads"),
        ));
    }
    if compress && raw_length >= COMPRESS_MIN_BYTES && compress_frame(&frame[FRAME_HEADER_BYTES..], count, alloc)? {
        return Ok(Sealed::Compressed);
    }
    write_header(frame, 0, count, raw_length);
    seal(frame);
    Ok(Sealed::InPlace)
}

/// True when `body` is exactly `count` length-prefixed payloads (what `split_body` accepts).
fn body_is_well_formed(body: &[u8], count: usize) -> bool {
    let mut off = 0usize;
    for _ in 0..count {
        if body.len() - off < 4 {
            return false;
        }
        let len = u32_at(body, off) as usize;
        off += 4;
        if len > body.len() - off {
            return false;
        }
        off += len;
    }
    off == body.len()
}

fn compress_uninit(src: &[u8], dst: &mut [MaybeUninit<u8>]) -> Option<usize> {
    // SAFETY: liblz4 only writes to `dst` (never reads it), within its length.
    let dst = unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast::<u8>(), dst.len()) };
    lz4::compress_into(src, dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_vec(payloads: &[Vec<u8>], compress: bool) -> Vec<u8> {
        let mut out = Vec::new();
        encode(payloads, compress, |n| {
            out.resize(n, 0);
            Ok(&mut out[..])
        })
        .unwrap();
        out
    }

    fn decode_vec(frame: &[u8]) -> Result<Vec<Vec<u8>>, Fail> {
        let header = open(frame)?;
        let body: Vec<u8> = if header.flags & FLAG_LZ4 != 0 {
            let mut body = vec![0u8; header.raw_length];
            decompress_body(frame, &header, &mut body)?;
            body
        } else {
            frame[FRAME_HEADER_BYTES..].to_vec()
        };
        let mut spans = Vec::new();
        split_body(&body, header.count, &mut spans)?;
        Ok(spans.iter().map(|&(o, l)| body[o..o + l].to_vec()).collect())
    }

    fn sample(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("payload number {i} with some text").into_bytes())
            .collect()
    }

    #[test]
    fn round_trips() {
        for n in [0, 1, 2, 10, 1000] {
            for compress in [false, true] {
                let p = sample(n);
                let frame = encode_vec(&p, compress);
                assert_eq!(decode_vec(&frame).unwrap(), p, "n={n} compress={compress}");
                if compress && n >= 100 {
                    assert_eq!(frame[5], FLAG_LZ4);
                }
            }
        }
        let empties = vec![Vec::new(); 7];
        assert_eq!(decode_vec(&encode_vec(&empties, true)).unwrap(), empties);
    }

    #[test]
    fn sealing_a_laid_out_body_matches_encode() {
        for (n, compress) in [(0, true), (3, false), (3, true), (500, false), (500, true)] {
            let p = sample(n);
            let expected = encode_vec(&p, compress);
            let raw = raw_length_of(&p).unwrap();
            let mut laid = vec![0u8; FRAME_HEADER_BYTES + raw];
            write_raw_body(&p, &mut laid[FRAME_HEADER_BYTES..]);
            let mut fresh = Vec::new();
            let how = seal_laid_out(&mut laid, n, compress, |len| {
                fresh.resize(len, 0);
                Ok(&mut fresh[..])
            })
            .unwrap();
            let got = if how == Sealed::Compressed { fresh } else { laid };
            assert_eq!(got, expected, "n={n} compress={compress}");
        }
        let mut laid = vec![0u8; FRAME_HEADER_BYTES + 8];
        assert!(seal_laid_out(&mut laid, 3, false, |_| unreachable!()).is_err());
        assert!(seal_laid_out(&mut laid, 1, false, |_| unreachable!()).is_err());
        assert_eq!(
            seal_laid_out(&mut laid, 2, false, |_| unreachable!()).unwrap(),
            Sealed::InPlace
        );
    }

    #[test]
    fn incompressible_stays_raw() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let p: Vec<Vec<u8>> = (0..4)
            .map(|_| {
                (0..1000)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect()
            })
            .collect();
        let frame = encode_vec(&p, true);
        assert_eq!(frame[5], 0);
        assert_eq!(decode_vec(&frame).unwrap(), p);
    }

    #[test]
    fn every_truncation_and_bit_flip_is_an_error() {
        for compress in [false, true] {
            let frame = encode_vec(&sample(40), compress);
            for len in 0..frame.len() {
                assert!(decode_vec(&frame[..len]).is_err());
            }
            for bit in 0..frame.len() * 8 {
                let mut f = frame.clone();
                f[bit / 8] ^= 1 << (bit % 8);
                assert!(decode_vec(&f).is_err(), "bit {bit}");
            }
        }
    }

    #[test]
    fn huge_claims_are_refused_before_allocation() {
        let mut frame = encode_vec(&sample(3), false);
        frame[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(read_header(&frame).is_err());
        let mut frame = encode_vec(&sample(3), false);
        frame[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(read_header(&frame).is_err());
        // A correctly sealed compressed frame claiming 200 MiB from a 30-byte block.
        let mut frame = vec![0u8; 20 + 4 + 30];
        write_header(&mut frame, FLAG_LZ4, 1, 200 << 20);
        frame[20..24].copy_from_slice(&(200u32 << 20).to_le_bytes());
        seal(&mut frame);
        let header = read_header(&frame).unwrap();
        assert!(compressed_block(&frame, &header).is_err());
    }
}
