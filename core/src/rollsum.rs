//! The weak rolling checksum: a polynomial (Rabin–Karp) hash over a byte
//! substitution table, modulo 2^64. Rolling one byte costs two table loads
//! and two multiplications. The signature keeps its top bits, which depend
//! on every bit of every byte in the window.

/// Multiplier of the polynomial (odd, from the golden ratio).
pub const MULT: u64 = 0x9E37_79B9_7F4A_7C15;

/// Byte substitution table, fixed by the protocol (see docs/protocol.md):
/// `TABLE[i] = splitmix64` output number `i + 1` from seed 0.
pub const TABLE: [u64; 256] = make_table();

const fn make_table() -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut state: u64 = 0;
    let mut i = 0;
    while i < 256 {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        t[i] = z ^ (z >> 31);
        i += 1;
    }
    t
}

/// Hash of a whole window: `sum TABLE[b_i] * MULT^(n-1-i)`.
#[inline]
pub fn hash(data: &[u8]) -> u64 {
    let mut h: u64 = 0;
    for &b in data {
        h = h.wrapping_mul(MULT).wrapping_add(TABLE[b as usize]);
    }
    h
}

/// `MULT^(n-1)`, the weight of the byte leaving a window of `n` bytes.
pub fn out_factor(n: usize) -> u64 {
    let mut f: u64 = 1;
    for _ in 1..n {
        f = f.wrapping_mul(MULT);
    }
    f
}

/// Slides the window one byte: removes `out` (weight `factor`), adds `inb`.
#[inline(always)]
pub fn roll(h: u64, out: u8, inb: u8, factor: u64) -> u64 {
    h.wrapping_sub(TABLE[out as usize].wrapping_mul(factor))
        .wrapping_mul(MULT)
        .wrapping_add(TABLE[inb as usize])
}

/// The `bits` most significant bits of a rolling hash, as stored in a signature.
#[inline(always)]
pub fn weak(h: u64, bits: u8) -> u32 {
    (h >> (64 - bits as u32)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolling_equals_direct() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let n = 64;
        let f = out_factor(n);
        let mut h = hash(&data[..n]);
        for i in 1..data.len() - n {
            h = roll(h, data[i - 1], data[i + n - 1], f);
            assert_eq!(h, hash(&data[i..i + n]));
        }
    }

    #[test]
    fn table_is_fixed() {
        // Pinned so that a change to the table (a protocol change) fails loudly.
        assert_eq!(TABLE[0], 0xE220_A839_7B1D_CDAF);
    }
}
