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

const fn pow(n: u32) -> u64 {
    let mut f: u64 = 1;
    let mut i = 0;
    while i < n {
        f = f.wrapping_mul(MULT);
        i += 1;
    }
    f
}

const P8: u64 = pow(8);

/// `WIDE[k][b] = TABLE[b] * MULT^(7-k)`: the weight of byte `b` at place
/// `k` of an 8-byte group, so whole-window hashing needs no multiplication
/// per byte (16 KiB, fits in L1).
static WIDE: [[u64; 256]; 8] = make_wide();

const fn make_wide() -> [[u64; 256]; 8] {
    let mut w = [[0u64; 256]; 8];
    let mut k = 0;
    while k < 8 {
        let f = pow(7 - k as u32);
        let mut b = 0;
        while b < 256 {
            w[k][b] = TABLE[b].wrapping_mul(f);
            b += 1;
        }
        k += 1;
    }
    w
}

/// Hash of a whole window: `sum TABLE[b_i] * MULT^(n-1-i)`.
///
/// Horner's rule eight bytes at a time, so that the chain of dependent
/// multiplications is one per eight bytes instead of one per byte; and two
/// chains at once, over the two halves of the window, joined at the end
/// (`h = h_first * MULT^len_second + h_second`): one chain alone waits on
/// its multiplications, two keep the table loads busy.
#[inline]
pub fn hash(data: &[u8]) -> u64 {
    let half = data.len() / 16 * 8;
    let (a, rest) = data.split_at(half);
    let (b, tail) = rest.split_at(half);
    let (mut ha, mut hb) = (0u64, 0u64);
    for (ca, cb) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        ha = ha.wrapping_mul(P8).wrapping_add(group(ca));
        hb = hb.wrapping_mul(P8).wrapping_add(group(cb));
    }
    let mut h = ha.wrapping_mul(pow_p8(half / 8)).wrapping_add(hb);
    let chunks = tail.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        h = h.wrapping_mul(P8).wrapping_add(group(c));
    }
    for &x in rest {
        h = h.wrapping_mul(MULT).wrapping_add(TABLE[x as usize]);
    }
    h
}

/// `sum TABLE[c_k] * MULT^(7-k)` for one 8-byte group.
#[inline(always)]
fn group(c: &[u8]) -> u64 {
    let w = &WIDE;
    let a = w[0][c[0] as usize].wrapping_add(w[1][c[1] as usize]);
    let b = w[2][c[2] as usize].wrapping_add(w[3][c[3] as usize]);
    let d = w[4][c[4] as usize].wrapping_add(w[5][c[5] as usize]);
    let e = w[6][c[6] as usize].wrapping_add(w[7][c[7] as usize]);
    a.wrapping_add(b).wrapping_add(d.wrapping_add(e))
}

/// `P8^k = MULT^(8k)`, by squaring.
#[inline]
fn pow_p8(mut k: usize) -> u64 {
    let (mut base, mut r) = (P8, 1u64);
    while k > 0 {
        if k & 1 == 1 {
            r = r.wrapping_mul(base);
        }
        base = base.wrapping_mul(base);
        k >>= 1;
    }
    r
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
    fn wide_hash_equals_horner() {
        let data: Vec<u8> = (0..3000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        for n in 0..data.len() {
            let mut h: u64 = 0;
            for &b in &data[..n] {
                h = h.wrapping_mul(MULT).wrapping_add(TABLE[b as usize]);
            }
            assert_eq!(hash(&data[..n]), h, "n = {n}");
        }
    }

    #[test]
    fn table_is_fixed() {
        // Pinned so that a change to the table (a protocol change) fails loudly.
        assert_eq!(TABLE[0], 0xE220_A839_7B1D_CDAF);
    }
}
