//! CRC-32C (Castagnoli), the frame checksum. Same definition as `src/codec/crc32c.ts`:
//! reflected polynomial 0x82F63B78, initial value and final xor 0xFFFFFFFF, and `seed` chains a
//! previous result (crc32c(a ++ b) == crc32c_update(crc32c(a), b)).
//!
//! On x86-64 with SSE4.2 (every x86-64 CPU since 2008) the `crc32` instruction does the work,
//! detected at run time; elsewhere a slicing-by-8 table.

const POLY: u32 = 0x82f6_3b78;

const fn make_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut s = 1;
    while s < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        s += 1;
    }
    t
}

static TABLES: [[u32; 256]; 8] = make_tables();

/// Extends the CRC-32C `seed` (0 for a fresh checksum) over `data`.
#[inline]
pub fn crc32c_update(seed: u32, data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU supports SSE4.2, checked just above.
            return unsafe { !hw::update(!seed, data) };
        }
    }
    !table_update(!seed, data)
}

/// Which implementation `crc32c_update` uses on this CPU.
pub fn implementation() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.2") {
            return "sse4.2";
        }
    }
    "table"
}

/// Portable slicing-by-8 over the raw (non-inverted) register.
fn table_update(mut crc: u32, data: &[u8]) -> u32 {
    let t = &TABLES;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let a = crc ^ u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        crc = t[7][(a & 0xff) as usize]
            ^ t[6][((a >> 8) & 0xff) as usize]
            ^ t[5][((a >> 16) & 0xff) as usize]
            ^ t[4][(a >> 24) as usize]
            ^ t[3][c[4] as usize]
            ^ t[2][c[5] as usize]
            ^ t[1][c[6] as usize]
            ^ t[0][c[7] as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc >> 8) ^ t[0][((crc ^ b as u32) & 0xff) as usize];
    }
    crc
}

#[cfg(target_arch = "x86_64")]
mod hw {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};

    /// SSE4.2 `crc32` over the raw register: one 8-byte word per instruction.
    #[target_feature(enable = "sse4.2")]
    pub unsafe fn update(crc: u32, data: &[u8]) -> u32 {
        let mut c = crc as u64;
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            c = _mm_crc32_u64(c, v);
        }
        let mut c = c as u32;
        for &b in words.remainder() {
            c = _mm_crc32_u8(c, b);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // RFC 3720 B.4 / the usual check value.
        assert_eq!(crc32c_update(0, b"123456789"), 0xe306_9283);
        assert_eq!(crc32c_update(0, &[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c_update(0, &[0xffu8; 32]), 0x62a8_ab43);
        assert_eq!(crc32c_update(0, b""), 0);
    }

    #[test]
    fn hardware_and_table_agree_and_chain() {
        let data: Vec<u8> = (0..10_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 10_000] {
            let d = &data[..len];
            let table = !table_update(!0, d);
            assert_eq!(crc32c_update(0, d), table, "len {len}");
            let split = len / 3;
            assert_eq!(
                crc32c_update(crc32c_update(0, &d[..split]), &d[split..]),
                table,
                "chained len {len}"
            );
        }
    }
}
