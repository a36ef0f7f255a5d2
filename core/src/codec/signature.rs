//! Signatures: what a client sends about the copy it holds.
//!
//! The instance is cut into blocks of `block_len` bytes (the last one may be
//! shorter). For each block the signature keeps the top `weak_bits` of the
//! rolling checksum and the low `strong_bits` of its xxh3-64 seeded with the
//! signature's random seed, packed as a bit stream. The byte layout is in
//! docs/protocol.md.

use crate::codec::wire::{put_varint, Reader};
use crate::error::{Error, Result};
use crate::hash::xxh3_64_with_seed;
pub use crate::limits::{SigLimits, MAX_BLOCK_LEN, MAX_INSTANCE_LEN, MAX_SIGNATURE_LEN, MIN_BLOCK_LEN, MIN_SUB_LEN};
use crate::rollsum;

/// First bytes of every signature: "hs", then the format version.
pub const SIG_MAGIC: [u8; 2] = *b"hs";
/// Version 3: the strong and sub-block checks are seeded (version 2 used
/// fixed seeds, so content crafted against them could force false matches).
pub const SIG_VERSION: u8 = 3;
/// Mixed into the seed for the sub-block checks, so that they differ from
/// the strong check of a block of the same length.
pub const SUB_SEED: u64 = 0x6873_796e_6373_7562; // "hsyncsub"

/// A seed for a new signature, from the operating system's random source.
/// The server cannot know it in advance, so content crafted by a third
/// party cannot aim at a client's checks.
pub fn random_seed() -> u64 {
    // getrandom only fails where the OS has no random source at all; a
    // seed from the clock and the address space then still varies.
    getrandom::u64().unwrap_or_else(|_| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        let local = 0u8;
        crate::hash::xxh3_64_with_seed(&t.to_le_bytes(), &local as *const u8 as u64)
    })
}

/// How a signature is cut and how many bits each block costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigParams {
    pub block_len: u32,
    /// Bits of the rolling checksum kept per block (1..=32).
    pub weak_bits: u8,
    /// Bits of the strong checksum kept per block (1..=32).
    pub strong_bits: u8,
    /// Each block is also cut into `2^sub_log` sub-blocks ...
    pub sub_log: u8,
    /// ... each with a check of `sub_bits` bits (0: no sub-block checks).
    pub sub_bits: u8,
}

/// Knobs of [`SigParams::choose`].
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// Block length is about `block_scale * sqrt(len)`.
    pub block_scale: f64,
    pub min_block: u32,
    /// Sub-blocks per block (log2; 0 = none) and bits per sub-block check.
    pub sub_log: u8,
    pub sub_bits: u8,
    /// See [`FALSE_MATCH_MARGIN`].
    pub margin: f64,
    /// Margin (bits) for the check of the block right after a match.
    pub pinned_margin: f64,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning { block_scale: 1.5, min_block: 64, sub_log: 0, sub_bits: 16, margin: FALSE_MATCH_MARGIN, pinned_margin: FALSE_MATCH_MARGIN }
    }
}

/// Probability budget for a false match found by the search, as a power of
/// two: a search match needs two consecutive blocks, and their bits are
/// chosen so that `new_len * blocks * 2^-(2 * bits) <= 2^-FALSE_MATCH_MARGIN`.
/// A false match is caught by the delta's whole-instance digest (the client
/// then refetches).
pub const FALSE_MATCH_MARGIN: f64 = 12.0;

impl SigParams {
    /// Parameters a client picks for an instance of `len` bytes so that the
    /// signature stays within [`MAX_SIGNATURE_LEN`].
    pub fn for_len(len: u64) -> SigParams {
        Self::for_len_within(len, MAX_SIGNATURE_LEN)
    }

    /// The parameters for a signature sent over HTTP: those of
    /// [`SigParams::for_len`] when a server accepts them
    /// ([`SigLimits::server`]), `None` for an empty instance or one so
    /// large (about 150 MB or more) that its blocks would exceed a
    /// server's limit; the client then asks for the whole response.
    pub fn for_http(len: u64) -> Option<SigParams> {
        let p = Self::for_len(len);
        (len > 0 && p.check(&SigLimits::server()).is_ok()).then_some(p)
    }

    /// As [`SigParams::for_len`], with another size cap (at least 64 bytes).
    pub fn for_len_within(len: u64, max_sig: usize) -> SigParams {
        Self::choose(len, max_sig, &Tuning::default())
    }

    /// The choice behind [`SigParams::for_len`], with its knobs exposed for
    /// experiments (the corpus sweep example).
    ///
    /// - The block length grows with the square root of the instance length
    ///   (as in rsync): a changed region costs about a block of literal bytes
    ///   and the signature costs one entry per block, so their sum is
    ///   smallest near `sqrt(len * entry / edits)`.
    /// - A block is checked alone only at one position, right after a match
    ///   (`blocks` comparisons in all): `log2(blocks) + pinned_margin` bits.
    ///   A match found by searching anywhere needs the next block to match
    ///   too, so twice the bits cover `len * blocks` comparisons with
    ///   `margin` to spare. The delta's digest catches what slips through.
    /// - The weak sum gets enough bits that a chance match of it (which
    ///   costs a strong check, a whole block hashed) is rare: at most 8
    ///   bytes hashed per input byte on average.
    /// - Optional sub-block checks (off by default) let an edit cost a
    ///   sub-block of literal bytes instead of a block, at a price in bits.
    pub fn choose(len: u64, max_sig: usize, t: &Tuning) -> SigParams {
        let max_sig = max_sig.max(64);
        let lenf = (len.max(1)) as f64;
        let mut block = ((lenf.sqrt() * t.block_scale).ceil() as u64).clamp(t.min_block.max(MIN_BLOCK_LEN) as u64, MAX_BLOCK_LEN as u64);
        loop {
            let mut sub_log = t.sub_log;
            while sub_log > 0 && (block >> sub_log) < 16 {
                sub_log -= 1;
            }
            let sub_bits = if sub_log == 0 { 0 } else { t.sub_bits };
            let align = 16u64 << sub_log;
            let block_len = (block.div_ceil(align) * align).min(MAX_BLOCK_LEN as u64);
            let blocks = len.div_ceil(block_len).max(1);
            let lb = (blocks as f64).log2();
            let pinned = lb + t.pinned_margin;
            let search = (lenf.log2() + lb + t.margin) / 2.0;
            // A position whose weak sum matches a block's by chance (one in
            // 2^weak_bits / blocks) costs the server a strong check, a block
            // hashed: len / 2^weak_bits bytes hashed per input byte. At most
            // 8 (about a fifth of the cost of rolling through the byte) keeps
            // large instances from spending the search credit in vain.
            let cheap = lenf.log2() - 3.0 + 4.0;
            let per = (pinned.max(search).max(cheap).ceil() as u8).clamp(16, 64);
            let weak_bits = (per - 4).min(32);
            let p = SigParams { block_len: block_len as u32, weak_bits, strong_bits: per - weak_bits, sub_log, sub_bits };
            if p.signature_len(len) <= max_sig as u64 || block_len >= MAX_BLOCK_LEN as u64 {
                return p;
            }
            block = block_len + block_len / 32;
        }
    }

    /// Bits per block entry.
    pub fn entry_bits(&self) -> usize {
        self.weak_bits as usize + self.strong_bits as usize
    }

    /// Length of a sub-block (the unit of COPY in a delta).
    pub fn sub_len(&self) -> u32 {
        if self.sub_bits == 0 {
            self.block_len
        } else {
            self.block_len >> self.sub_log
        }
    }

    /// Sub-blocks per block.
    pub fn subs_per_block(&self) -> usize {
        (self.block_len / self.sub_len()) as usize
    }

    /// Bytes of the whole signature for an instance of `len` bytes, in u64
    /// with checked arithmetic (`u64::MAX` if it overflows, which no
    /// parsed length can equal): on a 32-bit target a product in `usize`
    /// would wrap and let a tiny header pass for a huge table.
    pub fn signature_len(&self, len: u64) -> u64 {
        let blocks = len.div_ceil(self.block_len.max(1) as u64);
        let subs = if self.sub_bits == 0 { 0 } else { len.div_ceil(self.sub_len().max(1) as u64) };
        let bits = blocks.checked_mul(self.entry_bits() as u64).and_then(|b| b.checked_add(subs.checked_mul(self.sub_bits as u64)?));
        match bits {
            Some(b) => (header_len(self.block_len, len) as u64).saturating_add(b.div_ceil(8)),
            None => u64::MAX,
        }
    }

    /// Checks the parameters against the format and against `limits`.
    pub fn check(&self, limits: &SigLimits) -> Result<()> {
        if !(MIN_BLOCK_LEN..=MAX_BLOCK_LEN).contains(&self.block_len) {
            return Err(Error::Malformed("block length out of range"));
        }
        if !(1..=32).contains(&self.weak_bits) || !(1..=32).contains(&self.strong_bits) {
            return Err(Error::Malformed("checksum widths out of range"));
        }
        if self.block_len < limits.min_block_len || self.block_len > limits.max_block_len {
            return Err(Error::TooLarge("block length outside the accepted range"));
        }
        if self.weak_bits < limits.min_weak_bits || self.strong_bits < limits.min_strong_bits {
            return Err(Error::TooLarge("checksums narrower than accepted"));
        }
        if self.sub_bits > 16 || (self.sub_bits == 0) != (self.sub_log == 0) || self.sub_log > 8 {
            return Err(Error::Malformed("sub-block parameters out of range"));
        }
        if self.sub_bits > 0 && (!self.block_len.is_multiple_of(1 << self.sub_log) || self.sub_len() < MIN_SUB_LEN) {
            return Err(Error::Malformed("sub-block length out of range"));
        }
        Ok(())
    }
}

fn varint_len(v: u64) -> usize {
    let bits = 64 - v.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

fn header_len(block_len: u32, len: u64) -> usize {
    SIG_MAGIC.len() + 4 + 8 + varint_len(block_len as u64) + varint_len(len)
}

/// The strong checksum of a block: xxh3-64 seeded with the signature's
/// seed, truncated to its low `bits`.
#[inline]
pub fn strong(data: &[u8], bits: u8, seed: u64) -> u32 {
    (xxh3_64_with_seed(data, seed) & ((1u64 << bits) - 1)) as u32
}

/// The check of a sub-block, `bits` wide.
#[inline]
pub fn sub_check(data: &[u8], bits: u8, seed: u64) -> u16 {
    (xxh3_64_with_seed(data, seed ^ SUB_SEED) & ((1u64 << bits) - 1)) as u16
}

/// Writes fields of up to 32 bits, most significant bit first.
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    n: u32,
}

impl BitWriter<'_> {
    fn put(&mut self, v: u32, bits: u8) {
        self.acc = (self.acc << bits) | (v as u64 & ((1u64 << bits) - 1));
        self.n += bits as u32;
        while self.n >= 8 {
            self.n -= 8;
            self.out.push((self.acc >> self.n) as u8);
        }
        self.acc &= (1u64 << self.n) - 1;
    }

    fn finish(self) {
        if self.n > 0 {
            self.out.push((self.acc << (8 - self.n)) as u8);
        }
    }
}

struct BitReader<'a> {
    it: std::slice::Iter<'a, u8>,
    acc: u64,
    n: u32,
}

impl BitReader<'_> {
    fn get(&mut self, bits: u8) -> Result<u32> {
        while self.n < bits as u32 {
            let b = *self.it.next().ok_or(Error::Truncated("signature block table"))?;
            self.acc = (self.acc << 8) | b as u64;
            self.n += 8;
        }
        self.n -= bits as u32;
        let v = (self.acc >> self.n) as u32 & (((1u64 << bits) - 1) as u32);
        self.acc &= (1u64 << self.n) - 1;
        Ok(v)
    }
}

/// A parsed or computed signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub params: SigParams,
    /// Seed of the strong and sub-block checks, chosen by the client.
    pub seed: u64,
    /// Length of the instance the signature describes.
    pub instance_len: u64,
    /// Per block: the weak checksum's top `weak_bits`.
    pub weak: Vec<u32>,
    /// Per block: the strong checksum's low `strong_bits`.
    pub strong: Vec<u32>,
    /// Per sub-block: its check (empty when `sub_bits` is 0).
    pub sub: Vec<u16>,
}

impl Signature {
    /// The signature of `data` with parameters chosen for its length and a random seed.
    pub fn compute(data: &[u8]) -> Signature {
        Self::compute_with(data, SigParams::for_len(data.len() as u64))
    }

    /// The signature of `data` with the given parameters and a random seed.
    pub fn compute_with(data: &[u8], params: SigParams) -> Signature {
        Self::compute_seeded(data, params, random_seed())
    }

    /// The signature of `data` with the given parameters and seed (test
    /// vectors, reproducible runs).
    pub fn compute_seeded(data: &[u8], params: SigParams, seed: u64) -> Signature {
        let mut b = SignatureBuilder::with_seed(params, seed);
        b.update(data);
        b.finish()
    }

    pub fn block_len(&self) -> u32 {
        self.params.block_len
    }

    pub fn block_count(&self) -> usize {
        self.weak.len()
    }

    /// Serialized size in bytes.
    pub fn encoded_len(&self) -> usize {
        usize::try_from(self.params.signature_len(self.instance_len)).unwrap_or(usize::MAX)
    }

    /// Number of sub-blocks (the COPY unit).
    pub fn sub_count(&self) -> usize {
        self.instance_len.div_ceil(self.params.sub_len() as u64) as usize
    }

    /// The wire form: exactly the bytes that go base64url-encoded into `Hsync-Signature`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let p = self.params;
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&SIG_MAGIC);
        out.push(SIG_VERSION);
        out.push(p.weak_bits);
        out.push(p.strong_bits);
        out.push(if p.sub_bits == 0 { 0 } else { (p.sub_log << 4) | (p.sub_bits - 1) });
        out.extend_from_slice(&self.seed.to_be_bytes());
        put_varint(&mut out, p.block_len as u64);
        put_varint(&mut out, self.instance_len);
        let mut w = BitWriter { out: &mut out, acc: 0, n: 0 };
        for (&wk, &st) in self.weak.iter().zip(&self.strong) {
            w.put(wk, p.weak_bits);
            w.put(st, p.strong_bits);
        }
        for &c in &self.sub {
            w.put(c as u32, p.sub_bits);
        }
        w.finish();
        out
    }

    /// Parses a signature from untrusted bytes, enforcing `limits`
    /// ([`SigLimits::server`] for a request, [`SigLimits::format`] for any
    /// valid signature).
    pub fn parse(bytes: &[u8], limits: &SigLimits) -> Result<Signature> {
        if bytes.len() > limits.max_len {
            return Err(Error::TooLarge("signature longer than the configured maximum"));
        }
        let mut r = Reader::new(bytes);
        let magic = r.bytes(2, "signature header")?;
        if magic != SIG_MAGIC {
            return Err(Error::BadMagic("signature"));
        }
        let version = r.u8("signature header")?;
        if version != SIG_VERSION {
            return Err(Error::UnsupportedVersion(version));
        }
        let weak_bits = r.u8("signature header")?;
        let strong_bits = r.u8("signature header")?;
        let subs = r.u8("signature header")?;
        let seed = u64::from_be_bytes(r.bytes(8, "signature header")?.try_into().expect("8 bytes"));
        let block_len = r.varint("signature block length")?;
        let instance_len = r.varint("signature instance length")?;
        if !(MIN_BLOCK_LEN as u64..=MAX_BLOCK_LEN as u64).contains(&block_len) {
            return Err(Error::Malformed("block length out of range"));
        }
        if instance_len > MAX_INSTANCE_LEN {
            return Err(Error::Malformed("instance length out of range"));
        }
        let (sub_log, sub_bits) = if subs == 0 { (0, 0) } else { (subs >> 4, (subs & 15) + 1) };
        let params = SigParams { block_len: block_len as u32, weak_bits, strong_bits, sub_log, sub_bits };
        params.check(limits)?;
        // Checked before anything is allocated: the counts must agree with the bytes present.
        let expect = params.signature_len(instance_len);
        if expect != bytes.len() as u64 {
            return Err(if expect > bytes.len() as u64 {
                Error::Truncated("signature block table")
            } else {
                Error::Malformed("signature longer than its block count")
            });
        }
        // Both counts are below 8 per byte of the signature (checked above).
        let blocks = usize::try_from(instance_len.div_ceil(block_len)).map_err(|_| Error::TooLarge("signature block count"))?;
        let nsub = if sub_bits == 0 {
            0
        } else {
            usize::try_from(instance_len.div_ceil(params.sub_len() as u64)).map_err(|_| Error::TooLarge("signature block count"))?
        };
        let mut weak = Vec::with_capacity(blocks);
        let mut strong = Vec::with_capacity(blocks);
        let mut sub = Vec::with_capacity(nsub);
        let mut br = BitReader { it: r.bytes(r.remaining(), "signature block table")?.iter(), acc: 0, n: 0 };
        for _ in 0..blocks {
            weak.push(br.get(weak_bits)?);
            strong.push(br.get(strong_bits)?);
        }
        for _ in 0..nsub {
            sub.push(br.get(sub_bits)? as u16);
        }
        if br.acc != 0 {
            return Err(Error::Malformed("signature padding bits are not zero"));
        }
        Ok(Signature { params, seed, instance_len, weak, strong, sub })
    }
}

/// Computes a signature incrementally, for instances read in pieces.
pub struct SignatureBuilder {
    params: SigParams,
    block: Vec<u8>,
    sig: Signature,
}

impl SignatureBuilder {
    /// A builder with a random seed.
    pub fn new(params: SigParams) -> Self {
        Self::with_seed(params, random_seed())
    }

    pub fn with_seed(params: SigParams, seed: u64) -> Self {
        SignatureBuilder {
            params,
            block: Vec::with_capacity(params.block_len as usize),
            sig: Signature { params, seed, instance_len: 0, weak: Vec::new(), strong: Vec::new(), sub: Vec::new() },
        }
    }

    fn push_block(&mut self, data: &[u8]) {
        let p = self.params;
        let seed = self.sig.seed;
        self.sig.weak.push(rollsum::weak(rollsum::hash(data), p.weak_bits));
        self.sig.strong.push(strong(data, p.strong_bits, seed));
        if p.sub_bits > 0 {
            for piece in data.chunks(p.sub_len() as usize) {
                self.sig.sub.push(sub_check(piece, p.sub_bits, seed));
            }
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        let bl = self.params.block_len as usize;
        self.sig.instance_len += data.len() as u64;
        if !self.block.is_empty() {
            let take = (bl - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.block.len() == bl {
                let block = std::mem::take(&mut self.block);
                self.push_block(&block);
                self.block = block;
                self.block.clear();
            }
        }
        while data.len() >= bl {
            self.push_block(&data[..bl]);
            data = &data[bl..];
        }
        self.block.extend_from_slice(data);
    }

    pub fn finish(mut self) -> Signature {
        if !self.block.is_empty() {
            let block = std::mem::take(&mut self.block);
            self.push_block(&block);
        }
        self.sig
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_fit_the_header_budget() {
        for len in [0u64, 1, 100, 5_000, 150_000, 1 << 20, 10 << 20, 1 << 30, 1 << 33] {
            let p = SigParams::for_len(len);
            assert!(p.signature_len(len) <= MAX_SIGNATURE_LEN as u64, "len {len}: {}", p.signature_len(len));
            assert!(p.check(&SigLimits::format()).is_ok());
        }
    }

    #[test]
    fn client_params_are_accepted_by_servers_up_to_the_http_bound() {
        for len in [1u64, 100, 5_000, 150_000, 1 << 20, 10 << 20, 64 << 20, 128 << 20] {
            let p = SigParams::for_http(len).unwrap_or_else(|| panic!("no HTTP signature for {len} bytes"));
            assert_eq!(p, SigParams::for_len(len));
            p.check(&SigLimits::server()).unwrap();
        }
        // Beyond it the client sends no signature (and refetches whole).
        assert_eq!(SigParams::for_http(0), None);
        assert_eq!(SigParams::for_http(1 << 30), None);
        assert!(SigParams::for_len(1 << 30).check(&SigLimits::server()).is_err());
    }

    #[test]
    fn round_trip_and_streaming_agree() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        for params in [
            SigParams::for_len(data.len() as u64),
            SigParams { block_len: 512, weak_bits: 13, strong_bits: 7, sub_log: 3, sub_bits: 11 },
            SigParams { block_len: 64, weak_bits: 32, strong_bits: 32, sub_log: 0, sub_bits: 0 },
        ] {
            let sig = Signature::compute_with(&data, params);
            let mut b = SignatureBuilder::with_seed(sig.params, sig.seed);
            for chunk in data.chunks(777) {
                b.update(chunk);
            }
            assert_eq!(b.finish(), sig);
            let bytes = sig.to_bytes();
            assert_eq!(bytes.len(), sig.encoded_len());
            assert_eq!(Signature::parse(&bytes, &SigLimits::format()).unwrap(), sig);
        }
    }

    /// The seed changes every strong and sub-block check (a block's checks
    /// cannot be predicted without it), and is carried in the signature.
    #[test]
    fn seeds_change_the_checks() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
        let p = SigParams { block_len: 512, weak_bits: 16, strong_bits: 16, sub_log: 2, sub_bits: 16 };
        let a = Signature::compute_seeded(&data, p, 1);
        let b = Signature::compute_seeded(&data, p, 2);
        assert_eq!(a.weak, b.weak, "the weak sum is not seeded");
        let same = a.strong.iter().zip(&b.strong).filter(|(x, y)| x == y).count();
        assert!(same * 100 < a.strong.len(), "{same} of {} strong checks equal", a.strong.len());
        let same = a.sub.iter().zip(&b.sub).filter(|(x, y)| x == y).count();
        assert!(same * 100 < a.sub.len());
        assert_eq!(Signature::parse(&b.to_bytes(), &SigLimits::format()).unwrap().seed, 2);
        assert_ne!(random_seed(), random_seed());
    }

    #[test]
    fn parse_rejects_bad_input() {
        let sig = Signature::compute(&vec![7u8; 10_000]).to_bytes();
        let lim = SigLimits::default();
        assert!(matches!(Signature::parse(&[], &lim), Err(Error::Truncated(_))));
        assert!(matches!(Signature::parse(b"xx\x01", &lim), Err(Error::BadMagic(_))));
        let mut v = sig.clone();
        v[2] = 9;
        assert_eq!(Signature::parse(&v, &lim), Err(Error::UnsupportedVersion(9)));
        // Versions 1 (table-driven weak sum) and 2 (unseeded checks) are not spoken any more.
        for old in [1, 2] {
            v[2] = old;
            assert_eq!(Signature::parse(&v, &lim), Err(Error::UnsupportedVersion(old)));
        }
        assert!(Signature::parse(&sig[..sig.len() - 1], &lim).is_err());
        let mut longer = sig.clone();
        longer.extend_from_slice(&[0; 5]);
        assert!(Signature::parse(&longer, &lim).is_err());
        assert!(matches!(Signature::parse(&sig, &SigLimits { max_len: 10, ..lim }), Err(Error::TooLarge(_))));
        // Widths of zero or too wide.
        for (i, b) in [(3usize, 0u8), (4, 0), (3, 33), (4, 40)] {
            let mut v = sig.clone();
            v[i] = b;
            assert!(Signature::parse(&v, &lim).is_err());
        }
    }

    fn header(weak: u8, strong: u8, block_len: u64, instance_len: u64) -> Vec<u8> {
        let mut h = vec![b'h', b's', SIG_VERSION, weak, strong, 0];
        h.extend_from_slice(&7u64.to_be_bytes());
        put_varint(&mut h, block_len);
        put_varint(&mut h, instance_len);
        h
    }

    /// An absurd instance length with a tiny body allocates nothing and
    /// fails. The table it claims (2^33 / 16 blocks of 64 bits, 2^35
    /// bits) does not fit a 32-bit `usize`: the length is computed in u64
    /// with checked arithmetic, so it cannot wrap to a small figure.
    #[test]
    fn absurd_lengths_are_computed_without_wrapping() {
        let p = SigParams { block_len: 16, weak_bits: 32, strong_bits: 32, sub_log: 1, sub_bits: 16 };
        let len = MAX_INSTANCE_LEN;
        let want = (len / 16) * 64 / 8 + (len / 8) * 16 / 8 + header_len(16, len) as u64;
        assert_eq!(p.signature_len(len), want);
        assert!(want > u32::MAX as u64);
        assert_eq!(p.signature_len(u64::MAX), u64::MAX, "overflow saturates");
        let absurd = header(32, 32, 16, MAX_INSTANCE_LEN);
        assert!(matches!(Signature::parse(&absurd, &SigLimits::format()), Err(Error::Truncated(_))));
        let too_long = header(32, 32, 16, MAX_INSTANCE_LEN + 1);
        assert!(matches!(Signature::parse(&too_long, &SigLimits::format()), Err(Error::Malformed(_))));
    }

    /// What a server refuses although the format allows it: the hostile
    /// parameters of a CPU attack (weak_bits 1, 16-byte blocks) and of a
    /// memory attack (2^24-byte blocks: the encoder buffers two blocks).
    #[test]
    fn server_limits_refuse_hostile_parameters() {
        let server = SigLimits::server();
        let cases: [(u8, u8, u64, u64); 5] = [
            (1, 31, 16, 1 << 20),       // every position a filter hit
            (32, 32, 16, 1 << 12),      // 16-byte blocks
            (11, 20, 64, 1 << 16),      // one weak bit too few
            (30, 3, 64, 1 << 16),       // strong check too narrow
            (20, 20, 1 << 24, 1 << 26), // 143-byte signature, 16 MiB blocks
        ];
        for (weak, strong, bl, len) in cases {
            let p = SigParams { block_len: bl as u32, weak_bits: weak, strong_bits: strong, sub_log: 0, sub_bits: 0 };
            let mut sig = header(weak, strong, bl, len);
            sig.resize(p.signature_len(len) as usize, 0);
            assert!(Signature::parse(&sig, &SigLimits::format()).is_ok(), "{weak}/{strong}/{bl}: valid format");
            assert!(matches!(Signature::parse(&sig, &server), Err(Error::TooLarge(_))), "{weak}/{strong}/{bl}: a server must refuse it");
        }
    }
}
