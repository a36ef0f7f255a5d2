//! Signatures: what a client sends about the copy it holds.
//!
//! The instance is cut into blocks of `block_len` bytes (the last one may be
//! shorter). For each block the signature keeps the top `weak_len` bytes of
//! the rolling checksum and the low `strong_len` bytes of its xxh3-64. The
//! byte layout is in docs/protocol.md.

use crate::error::{Error, Result};
use crate::rollsum;
use crate::wire::{put_varint, Reader};
use xxhash_rust::xxh3::xxh3_64;

/// First bytes of every signature: "hs", then the format version.
pub const SIG_MAGIC: [u8; 2] = *b"hs";
pub const SIG_VERSION: u8 = 1;

/// Largest signature a client sends: 4608 bytes raw, 6144 in base64url,
/// under the 8 KiB header-line limit of nginx and Apache.
pub const MAX_SIGNATURE_LEN: usize = 4608;
pub const MIN_BLOCK_LEN: u32 = 16;
pub const MAX_BLOCK_LEN: u32 = 1 << 24;
/// Largest instance length a signature may describe (8 GiB; larger copies are refetched whole).
pub const MAX_INSTANCE_LEN: u64 = 1 << 33;

/// How a signature is cut and how many bytes each block costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigParams {
    pub block_len: u32,
    pub weak_len: u8,
    pub strong_len: u8,
}

/// Probability budget for a false block match anywhere in one response,
/// as a power of two: bits per block are chosen so that
/// `new_len * blocks * 2^-bits <= 2^-FALSE_MATCH_MARGIN`. A false match is
/// caught by the delta's whole-instance digest (the client then refetches).
pub const FALSE_MATCH_MARGIN: f64 = 12.0;

impl SigParams {
    /// Parameters a client picks for an instance of `len` bytes so that the
    /// signature stays within [`MAX_SIGNATURE_LEN`].
    pub fn for_len(len: u64) -> SigParams {
        Self::for_len_within(len, MAX_SIGNATURE_LEN)
    }

    /// As [`SigParams::for_len`], with another size cap (at least 64 bytes).
    ///
    /// The block length grows with the square root of the instance length
    /// (as in rsync): the cost of a changed region is about one block of
    /// literal bytes, and the signature costs `len / block_len` entries, so
    /// the sum is smallest near `sqrt(len * entry_bytes / edits)`.
    pub fn for_len_within(len: u64, max_sig: usize) -> SigParams {
        let max_sig = max_sig.max(64);
        let lenf = (len.max(1)) as f64;
        let mut block = (lenf.sqrt() * 2.0).ceil() as u64;
        block = block.clamp(64, MAX_BLOCK_LEN as u64);
        block = (block + 15) & !15;
        loop {
            let blocks = len.div_ceil(block).max(1);
            let bits = lenf.log2() + (blocks as f64).log2() + FALSE_MATCH_MARGIN;
            let per = ((bits / 8.0).ceil() as u64).clamp(4, 8) as u8;
            let size = header_len(block as u32, len) + blocks as usize * per as usize;
            if size <= max_sig || block >= MAX_BLOCK_LEN as u64 {
                let weak_len = per.div_ceil(2).min(4);
                return SigParams { block_len: block as u32, weak_len, strong_len: per - weak_len };
            }
            block = (block + block / 8 + 15) & !15;
            block = block.min(MAX_BLOCK_LEN as u64);
        }
    }

    pub fn entry_len(&self) -> usize {
        self.weak_len as usize + self.strong_len as usize
    }

    fn validate(&self) -> Result<()> {
        if !(MIN_BLOCK_LEN..=MAX_BLOCK_LEN).contains(&self.block_len) {
            return Err(Error::Malformed("block length out of range"));
        }
        if !(1..=4).contains(&self.weak_len) || !(1..=8).contains(&self.strong_len) {
            return Err(Error::Malformed("checksum widths out of range"));
        }
        Ok(())
    }
}

fn varint_len(v: u64) -> usize {
    let bits = 64 - v.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

fn header_len(block_len: u32, len: u64) -> usize {
    SIG_MAGIC.len() + 2 + varint_len(block_len as u64) + varint_len(len)
}

/// The strong checksum of a block, truncated to `bytes`.
#[inline]
pub fn strong(data: &[u8], bytes: u8) -> u64 {
    let h = xxh3_64(data);
    if bytes >= 8 {
        h
    } else {
        h & ((1u64 << (8 * bytes as u32)) - 1)
    }
}

/// A parsed or computed signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub params: SigParams,
    /// Length of the instance the signature describes.
    pub instance_len: u64,
    /// Per block: the weak checksum's top `weak_len` bytes.
    pub weak: Vec<u32>,
    /// Per block: the strong checksum's low `strong_len` bytes.
    pub strong: Vec<u64>,
}

/// Limits applied when parsing a signature from the wire.
#[derive(Debug, Clone, Copy)]
pub struct SigLimits {
    /// Largest accepted signature, in raw bytes.
    pub max_len: usize,
}

impl Default for SigLimits {
    fn default() -> Self {
        SigLimits { max_len: MAX_SIGNATURE_LEN }
    }
}

impl Signature {
    /// The signature of `data` with parameters chosen for its length.
    pub fn compute(data: &[u8]) -> Signature {
        Self::compute_with(data, SigParams::for_len(data.len() as u64))
    }

    /// The signature of `data` with the given parameters.
    pub fn compute_with(data: &[u8], params: SigParams) -> Signature {
        let mut b = SignatureBuilder::new(params);
        b.update(data);
        b.finish()
    }

    pub fn block_len(&self) -> u32 {
        self.params.block_len
    }

    pub fn block_count(&self) -> usize {
        self.weak.len()
    }

    /// Length of block `i` (the last one may be short).
    pub fn block_size(&self, i: usize) -> usize {
        let bl = self.params.block_len as u64;
        let start = i as u64 * bl;
        (self.instance_len - start).min(bl) as usize
    }

    /// Serialized size in bytes.
    pub fn encoded_len(&self) -> usize {
        header_len(self.params.block_len, self.instance_len) + self.block_count() * self.params.entry_len()
    }

    /// The wire form: exactly the bytes that go base64url-encoded into `Hsync-Signature`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let p = self.params;
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&SIG_MAGIC);
        out.push(SIG_VERSION);
        out.push((p.weak_len << 4) | p.strong_len);
        put_varint(&mut out, p.block_len as u64);
        put_varint(&mut out, self.instance_len);
        for (w, s) in self.weak.iter().zip(&self.strong) {
            out.extend_from_slice(&w.to_be_bytes()[4 - p.weak_len as usize..]);
            out.extend_from_slice(&s.to_be_bytes()[8 - p.strong_len as usize..]);
        }
        out
    }

    /// Parses a signature from untrusted bytes, enforcing `limits`.
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
        let widths = r.u8("signature header")?;
        let block_len = r.varint("signature block length")?;
        let instance_len = r.varint("signature instance length")?;
        if block_len > MAX_BLOCK_LEN as u64 {
            return Err(Error::Malformed("block length out of range"));
        }
        if instance_len > MAX_INSTANCE_LEN {
            return Err(Error::Malformed("instance length out of range"));
        }
        let params = SigParams { block_len: block_len as u32, weak_len: widths >> 4, strong_len: widths & 15 };
        params.validate()?;
        let entry = params.entry_len();
        let blocks = instance_len.div_ceil(block_len);
        let body = r.remaining();
        // Checked before anything is allocated: the count must agree with the bytes present.
        if body % entry != 0 {
            return Err(Error::Truncated("signature block table"));
        }
        if (body / entry) as u64 != blocks {
            return Err(Error::Malformed("block count does not match instance length"));
        }
        let blocks = blocks as usize;
        let mut weak = Vec::with_capacity(blocks);
        let mut strong = Vec::with_capacity(blocks);
        for _ in 0..blocks {
            let e = r.bytes(entry, "signature block table")?;
            let (w, s) = e.split_at(params.weak_len as usize);
            weak.push(w.iter().fold(0u32, |a, &b| (a << 8) | b as u32));
            strong.push(s.iter().fold(0u64, |a, &b| (a << 8) | b as u64));
        }
        Ok(Signature { params, instance_len, weak, strong })
    }
}

/// Computes a signature incrementally, for instances read in pieces.
pub struct SignatureBuilder {
    params: SigParams,
    block: Vec<u8>,
    sig: Signature,
}

impl SignatureBuilder {
    pub fn new(params: SigParams) -> Self {
        SignatureBuilder {
            params,
            block: Vec::with_capacity(params.block_len as usize),
            sig: Signature { params, instance_len: 0, weak: Vec::new(), strong: Vec::new() },
        }
    }

    fn push_block(&mut self, data: &[u8]) {
        self.sig.weak.push(rollsum::weak(rollsum::hash(data), self.params.weak_len));
        self.sig.strong.push(strong(data, self.params.strong_len));
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
            let blocks = len.div_ceil(p.block_len as u64) as usize;
            let size = header_len(p.block_len, len) + blocks * p.entry_len();
            assert!(size <= MAX_SIGNATURE_LEN, "len {len}: {size}");
        }
    }

    #[test]
    fn round_trip_and_streaming_agree() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let sig = Signature::compute(&data);
        let mut b = SignatureBuilder::new(sig.params);
        for chunk in data.chunks(777) {
            b.update(chunk);
        }
        assert_eq!(b.finish(), sig);
        let bytes = sig.to_bytes();
        assert_eq!(bytes.len(), sig.encoded_len());
        assert_eq!(Signature::parse(&bytes, &SigLimits::default()).unwrap(), sig);
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
        assert!(Signature::parse(&sig[..sig.len() - 1], &lim).is_err());
        let mut longer = sig.clone();
        longer.extend_from_slice(&[0; 5]);
        assert!(Signature::parse(&longer, &lim).is_err());
        assert!(matches!(Signature::parse(&sig, &SigLimits { max_len: 10 }), Err(Error::TooLarge(_))));
        // absurd instance length with a tiny body
        let mut absurd = vec![b'h', b's', 1, 0x32];
        put_varint(&mut absurd, 16);
        put_varint(&mut absurd, 1 << 39);
        assert!(Signature::parse(&absurd, &lim).is_err());
        // widths of zero
        let mut v = sig.clone();
        v[3] = 0;
        assert!(Signature::parse(&v, &lim).is_err());
    }
}
