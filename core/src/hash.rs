//! XXH3, the hash of signatures and digests (64- and 128-bit, as
//! specified by xxHash), from `twox-hash`, which picks its SIMD code (AVX2
//! or SSE2) at run time. `xxhash-rust`, used before, picks it when compiled,
//! so a build for baseline x86-64 hashed with SSE2 only: 1.5–2.5× slower
//! on the benchmark VM, for the same values.

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
        }
    }
}
