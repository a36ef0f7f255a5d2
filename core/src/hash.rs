//! The hashes: XXH3 for the checks of signatures (64-bit, as specified by
//! xxHash), from `twox-hash`, which picks its SIMD code (AVX2 or SSE2) at
//! run time; and BLAKE3 for the digest that verifies a rebuilt instance,
//! which must be collision-resistant (XXH3-128, used before, is not:
//! tests/vectors/attack/xxh3-collision holds two pages that differ in 8
//! bytes and share it). The `blake3` crate also picks its SIMD code
//! (AVX-512, AVX2, SSE4.1) at run time.

use twox_hash::{XxHash3_128, XxHash3_64};

/// XXH3-64 of `data`.
#[inline]
pub fn xxh3_64(data: &[u8]) -> u64 {
    XxHash3_64::oneshot(data)
}

/// XXH3-64 of `data` with `seed`.
#[inline]
pub fn xxh3_64_with_seed(data: &[u8], seed: u64) -> u64 {
    XxHash3_64::oneshot_with_seed(seed, data)
}

/// XXH3-128 of `data`.
#[inline]
pub fn xxh3_128(data: &[u8]) -> u128 {
    XxHash3_128::oneshot(data)
}

/// Length of the digest that ends a delta (BLAKE3, 256 bits).
pub const DIGEST_LEN: usize = 32;

/// The digest of a whole instance.
pub type Digest = [u8; DIGEST_LEN];

/// BLAKE3-256 of `data`.
#[inline]
pub fn digest(data: &[u8]) -> Digest {
    *blake3::hash(data).as_bytes()
}

/// BLAKE3-256 of data given in pieces.
#[derive(Clone, Default)]
pub struct Digester(blake3::Hasher);

impl Digester {
    pub fn new() -> Self {
        Digester(blake3::Hasher::new())
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(&self) -> Digest {
        *self.0.finalize().as_bytes()
    }
}

/// XXH3-64 of data given in pieces.
pub struct Xxh3_64(XxHash3_64);

impl Xxh3_64 {
    pub fn new() -> Self {
        Xxh3_64(XxHash3_64::new())
    }

    pub fn update(&mut self, data: &[u8]) {
        std::hash::Hasher::write(&mut self.0, data);
    }

    pub fn digest(&self) -> u64 {
        std::hash::Hasher::finish(&self.0)
    }
}

impl Default for Xxh3_64 {
    fn default() -> Self {
        Self::new()
    }
}

/// XXH3-128 of data given in pieces.
pub struct Xxh3_128(XxHash3_128);

impl Xxh3_128 {
    pub fn new() -> Self {
        Xxh3_128(XxHash3_128::new())
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.write(data);
    }

    pub fn digest128(&self) -> u128 {
        self.0.finish_128()
    }
}

impl Default for Xxh3_128 {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference values for the empty input, and streaming equal to
    /// one-shot wherever the input is cut.
    #[test]
    fn known_values_and_streaming() {
        assert_eq!(xxh3_64(b""), 0x2D06_8005_38D3_94C2);
        assert_eq!(xxh3_128(b""), 0x99AA_06D3_0147_98D8_6001_C324_468D_497F);
        let data: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
        for cut in [0, 1, 239, 240, 241, 1024, 65_536, 99_999] {
            let mut h = Xxh3_128::new();
            h.update(&data[..cut]);
            h.update(&data[cut..]);
            assert_eq!(h.digest128(), xxh3_128(&data));
            let mut g = Xxh3_64::new();
            g.update(&data[..cut]);
            g.update(&data[cut..]);
            assert_eq!(g.digest(), xxh3_64(&data));
            let mut d = Digester::new();
            d.update(&data[..cut]);
            d.update(&data[cut..]);
            assert_eq!(d.finish(), digest(&data));
        }
        // BLAKE3's published value for the empty input.
        assert_eq!(digest(b"")[..4], [0xaf, 0x13, 0x49, 0xb9]);
    }
}
