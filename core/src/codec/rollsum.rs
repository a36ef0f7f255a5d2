//! The weak rolling checksum (signature version 2): a polynomial
//! (Rabin–Karp) hash of the bytes, modulo 2^32,
//! `R(b_0 .. b_{n-1}) = sum b_k * M^(n-1-k)`. The signature keeps its top
//! bits, which depend on every bit of every byte in the window.
//!
//! Why this form: the encoder hashes every block it copies (the check of the
//! block right after a match), so whole-window hashing is the cost per byte
//! of a mostly unchanged body. Without a substitution table the window sum
//! is a dot product with powers of `M`, which vector units compute many
//! lanes at a time (8 bytes per 256-bit multiply); rolling one byte is one
//! multiplication and two additions.

/// Multiplier of the polynomial (odd; xxHash32's first prime).
pub const MULT: u32 = 0x9E37_79B1;

/// Lanes of the whole-window hash: byte `i` of the window goes to lane `i % LANES`.
const LANES: usize = 64;

/// `POW[k] = MULT^k`, for `k <= LANES`.
const POW: [u32; LANES + 1] = {
    let mut p = [0u32; LANES + 1];
    let mut k = 0;
    while k <= LANES {
        p[k] = out_factor(k);
        k += 1;
    }
    p
};

/// Hash of a whole window: `sum b_i * MULT^(n-1-i) mod 2^32`.
#[inline]
pub fn hash(data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if data.len() >= 2 * LANES && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked at run time).
            return unsafe { hash_avx2(data) };
        }
    }
    hash_lanes(data)
}

/// [`hash_lanes`] with AVX2: eight 8-lane accumulators, so that eight
/// multiplications are in flight at once.
///
/// # Safety
/// The CPU must have AVX2 (the caller checks at run time).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn hash_avx2(data: &[u8]) -> u32 {
    use std::arch::x86_64::*;
    let m = _mm256_set1_epi32(POW[LANES] as i32);
    let mut a = [_mm256_setzero_si256(); LANES / 8];
    let steps = data.len() / LANES;
    let p = data.as_ptr();
    for s in 0..steps {
        let q = p.add(s * LANES);
        for (g, acc) in a.iter_mut().enumerate() {
            // SAFETY: q + 8g + 8 <= data.as_ptr() + data.len().
            let b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(q.add(8 * g) as *const __m128i));
            *acc = _mm256_add_epi32(_mm256_mullo_epi32(*acc, m), b);
        }
    }
    let mut acc = [0u32; LANES];
    for (g, v) in a.iter().enumerate() {
        _mm256_storeu_si256(acc.as_mut_ptr().add(8 * g) as *mut __m256i, *v);
    }
    join(&acc, &data[steps * LANES..])
}

/// Horner's rule per lane, `LANES` bytes a step: lane `k` accumulates the
/// bytes at `i % LANES == k` with multiplier `MULT^LANES`; the lanes are
/// then joined with their weights `MULT^(LANES-1-k)`, and the tail shorter
/// than a step is added byte by byte.
#[inline(always)]
fn hash_lanes(data: &[u8]) -> u32 {
    let mut acc = [0u32; LANES];
    let steps = data.chunks_exact(LANES);
    let tail = steps.remainder();
    for c in steps {
        for k in 0..LANES {
            acc[k] = acc[k].wrapping_mul(POW[LANES]).wrapping_add(c[k] as u32);
        }
    }
    join(&acc, tail)
}

/// Joins the lanes with their weights and adds the tail.
#[inline(always)]
fn join(acc: &[u32; LANES], tail: &[u8]) -> u32 {
    let mut h = 0u32;
    for k in 0..LANES {
        h = h.wrapping_add(acc[k].wrapping_mul(POW[LANES - 1 - k]));
    }
    for &b in tail {
        h = h.wrapping_mul(MULT).wrapping_add(b as u32);
    }
    h
}

/// `MULT^n`: the weight a byte has once it has left a window of `n` bytes.
pub const fn out_factor(n: usize) -> u32 {
    let (mut base, mut r, mut k) = (MULT, 1u32, n);
    while k > 0 {
        if k & 1 == 1 {
            r = r.wrapping_mul(base);
        }
        base = base.wrapping_mul(base);
        k >>= 1;
    }
    r
}

/// Slides the window one byte: adds `inb`, removes `out` (`factor` from
/// [`out_factor`] of the window length). The two byte terms do not depend
/// on `h`, so the chain from one position to the next is one
/// multiplication and one addition.
#[inline(always)]
pub fn roll(h: u32, out: u8, inb: u8, factor: u32) -> u32 {
    h.wrapping_mul(MULT).wrapping_add((inb as u32).wrapping_sub((out as u32).wrapping_mul(factor)))
}

/// The `bits` most significant bits of a rolling hash, as stored in a signature.
#[inline(always)]
pub fn weak(h: u32, bits: u8) -> u32 {
    h >> (32 - bits as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn horner(d: &[u8]) -> u32 {
        d.iter().fold(0u32, |h, &b| h.wrapping_mul(MULT).wrapping_add(b as u32))
    }

    #[test]
    fn rolling_equals_direct() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect();
        for n in [1usize, 16, 64, 200] {
            let f = out_factor(n);
            let mut h = hash(&data[..n]);
            for i in 1..data.len() - n {
                h = roll(h, data[i - 1], data[i + n - 1], f);
                assert_eq!(h, hash(&data[i..i + n]), "n = {n}, i = {i}");
            }
        }
    }

    #[test]
    fn lanes_equal_horner() {
        let data: Vec<u8> = (0..3000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        for n in 0..data.len() {
            assert_eq!(hash(&data[..n]), horner(&data[..n]), "n = {n}");
            assert_eq!(hash_lanes(&data[..n]), horner(&data[..n]), "n = {n}");
        }
        // Any alignment of the window (the vector path loads unaligned).
        for off in 1..40 {
            let w = &data[off..off + 777];
            assert_eq!(hash(w), horner(w), "offset {off}");
        }
    }

    #[test]
    fn out_factor_is_power() {
        for n in [0usize, 1, 2, 31, 32, 33, 6800, 1 << 24] {
            assert_eq!(out_factor(n), (0..n).fold(1u32, |f, _| f.wrapping_mul(MULT)));
        }
    }

    #[test]
    fn values_are_fixed() {
        // Pinned so that a change of the checksum (a protocol change) fails loudly.
        assert_eq!(hash(b"hsync"), 0x5e07_9255);
        let long: Vec<u8> = (0..768).map(|i| i as u8).collect();
        assert_eq!(hash(&long), 0x2b78_6e80);
        assert_eq!(hash(b""), 0);
        assert_eq!(hash(&[1]), 1);
        assert_eq!(hash(&[1, 0]), MULT);
    }
}
