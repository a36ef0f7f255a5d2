//! Hostile signatures, each with the body it is aimed at, and an honest
//! signature that matches nothing in the same body (the yardstick: "any
//! signature costs at most about 1.5 times a non-matching one"). Shared by
//! `core/tests/bounds.rs` (behaviour) and `core/examples/hostile.rs` (time).
//!
//! Every hostile signature here is one a server accepts
//! ([`SigLimits::server`]): what the limits refuse outright (weak_bits 1,
//! 16-byte or 16 MiB blocks) is tested in `signature.rs`.
#![allow(dead_code)]

use hsync_core::signature::{strong, SigLimits, SigParams, Signature, MAX_SIGNATURE_LEN};
use hsync_core::{limits, rollsum};

/// Deterministic bytes (xorshift), printable enough to look like text.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b' ' + (x >> 40) as u8 % 94
        })
        .collect()
}

/// `period` random bytes repeated to `len`: a body whose windows are only
/// `period` different ones, which a signature can list all of.
pub fn periodic(seed: u64, period: usize, len: usize) -> Vec<u8> {
    noise(seed, period).into_iter().cycle().take(len).collect()
}

/// Most blocks of `bits` bits per block that fit a 4608-byte signature.
fn max_blocks(block_len: u32, bits: usize) -> usize {
    let p = SigParams { block_len, weak_bits: 1, strong_bits: 1, sub_log: 0, sub_bits: 0 };
    let header = p.signature_len(0) as usize + 5; // a 5-byte instance length
    (MAX_SIGNATURE_LEN - header) * 8 / bits
}

/// A signature with the given per-block checks (an instance of
/// `weak.len()` whole blocks), checked to be one a server accepts.
fn forge(block_len: u32, weak_bits: u8, strong_bits: u8, seed: u64, weak: Vec<u32>, strong: Vec<u32>) -> Signature {
    let params = SigParams { block_len, weak_bits, strong_bits, sub_log: 0, sub_bits: 0 };
    let sig = Signature { params, seed, instance_len: weak.len() as u64 * block_len as u64, weak, strong, sub: vec![] };
    let parsed = Signature::parse(&sig.to_bytes(), &SigLimits::server()).expect("a server accepts the forged signature");
    assert_eq!(parsed, sig);
    sig
}

/// The honest yardstick: the signature a client computes for a copy that
/// shares nothing with `body` (unrelated bytes of the same length).
pub fn non_matching(body: &[u8]) -> Signature {
    let other = noise(0xD1FF, body.len().max(1));
    Signature::compute_seeded(&other, SigParams::for_len(other.len() as u64), 99)
}

/// Hostile: the narrowest checks a server accepts (12 + 4 bits per block,
/// 64-byte blocks) and as many blocks as fit, their weak sums spread over
/// all 4096 values: more than half of the positions of any body hit the
/// filter and lead to a strong check.
pub fn dense_filter() -> Signature {
    let n = max_blocks(64, 16);
    let weak = (0..n as u32).map(|i| (i * 2654435761u32) >> 20).collect();
    let strong = (0..n as u32).map(|i| i % 16).collect();
    forge(64, limits::SERVER_MIN_WEAK_BITS, limits::SERVER_MIN_STRONG_BITS, 5, weak, strong)
}

/// Hostile, aimed at `periodic(seed, period, _)`: a block for every
/// window of the body, with the full 32-bit weak sum (every position a
/// candidate whose weak sum matches) and a strong check that fails (so
/// every position pays a strong hash and finds nothing). `period` at most
/// about 1,000 (the blocks must fit the signature).
pub fn every_position_a_candidate(body: &[u8], period: usize, block_len: u32) -> Signature {
    windows(body, period, block_len, false)
}

/// Hostile, as [`every_position_a_candidate`] but the strong check of
/// every block passes too, and the block after it (the confirmation) then
/// fails: every position pays three hashes of a block. With the largest
/// block a server accepts, 128 KiB, that is 384 KiB hashed per position
/// unless the credit stops it.
pub fn every_position_confirmed_in_vain(body: &[u8], period: usize, block_len: u32) -> Signature {
    windows(body, period, block_len, true)
}

fn windows(body: &[u8], period: usize, block_len: u32, strong_ok: bool) -> Signature {
    let bl = block_len as usize;
    assert!(body.len() >= period + 2 * bl);
    let seed = 11;
    let bits = 32 + limits::SERVER_MIN_STRONG_BITS as usize;
    assert!(period < max_blocks(block_len, bits), "period {period} too long for one signature");
    let mut weak = Vec::with_capacity(period);
    let mut strongs = Vec::with_capacity(period);
    for i in 0..period {
        let w = &body[i..i + bl];
        weak.push(rollsum::weak(rollsum::hash(w), 32));
        let s = strong(w, limits::SERVER_MIN_STRONG_BITS, seed);
        // Block i + 1 is the window one position on, never the one a block
        // further on: the confirmation fails (but for 1 in 16, by chance).
        strongs.push(if strong_ok { s } else { (s + 1) % 16 });
    }
    forge(block_len, 32, limits::SERVER_MIN_STRONG_BITS, seed, weak, strongs)
}

/// Every hostile case: a name, the body, the signature, and how the body
/// is fed (`piece`: bytes per `update`).
pub struct Case {
    pub name: &'static str,
    pub body: Vec<u8>,
    pub sig: Signature,
    pub piece: usize,
}

/// The cases for a body of about `len` bytes.
pub fn cases(len: usize) -> Vec<Case> {
    let text = noise(42, len);
    let per = periodic(7, 1009, len.max(300 << 10));
    let per_small = periodic(8, 997, len.max(300 << 10));
    vec![
        Case { name: "dense filter (12+4 bits, 64 B blocks)", body: text.clone(), sig: dense_filter(), piece: 64 << 10 },
        Case {
            name: "every position a candidate (64 B)",
            sig: every_position_a_candidate(&per_small, 997, 64),
            body: per_small.clone(),
            piece: 64 << 10,
        },
        Case {
            name: "every position confirmed in vain (64 B)",
            sig: every_position_confirmed_in_vain(&per_small, 997, 64),
            body: per_small,
            piece: 64 << 10,
        },
        Case {
            name: "every position confirmed in vain (128 KiB)",
            sig: every_position_confirmed_in_vain(&per, 1009, limits::SERVER_MAX_BLOCK_LEN),
            body: per,
            piece: 64 << 10,
        },
    ]
}
