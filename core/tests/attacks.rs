//! Regression tests for the attacks on the codec (issue: "a digest nobody
//! can collide, bounded cost for any input"): each one built the way an
//! attacker would, each one accepted or unbounded before.

use hsync_core::hash::{digest, xxh3_128, xxh3_64};
use hsync_core::limits::{CONTEXT_CREDIT_START, MAX_WINDOW_LOG};
use hsync_core::{delta, patch, Error, SigParams, Signature};
use std::path::PathBuf;

const LIMIT: u64 = 1 << 30;

fn attack_file(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/attack/xxh3-collision").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Two pages that differ in 8 bytes and share XXH3-128 (and their
/// signature under the unseeded checks of signature version 2): the delta
/// from A to B is "copy A", and with the XXH3-128 digest of delta version
/// 1 the client accepted it and kept A. BLAKE3 refuses it.
#[test]
fn colliding_pages_cannot_pass_for_each_other() {
    let (a, b) = (attack_file("a.html"), attack_file("b.html"));
    assert_eq!(a.iter().zip(&b).filter(|(x, y)| x != y).count(), 8);
    // The construction still holds: XXH3 cannot tell them apart ...
    assert_eq!(xxh3_128(&a), xxh3_128(&b));
    assert_eq!(xxh3_64(&a), xxh3_64(&b));
    // ... the digest can.
    assert_ne!(digest(&a), digest(&b));
    // Seed 0 is the old unseeded strong check: every block of B passes for A's.
    let p = SigParams::for_len(a.len() as u64);
    let sig = Signature::compute_seeded(&a, p, 0);
    assert_eq!(sig, Signature::compute_seeded(&b, p, 0));
    let d = delta(&sig, &b).unwrap();
    assert_eq!(patch(&a, &d, LIMIT), Err(Error::DigestMismatch), "the client must not keep A");
}

/// With the seed a client picks, the crafted block no longer passes for
/// A's (the attacker cannot aim at a check it cannot compute): the delta
/// carries B's bytes and the client gets B. A 4-bit strong check still
/// passes by chance one time in 16; the digest then refuses the result and
/// the client refetches. Never A.
#[test]
fn seeded_checks_keep_crafted_blocks_from_being_copied() {
    let (a, b) = (attack_file("a.html"), attack_file("b.html"));
    let mut got_b = 0;
    for seed in 1..=64u64 {
        let sig = Signature::compute_seeded(&a, SigParams::for_len(a.len() as u64), seed);
        let d = delta(&sig, &b).unwrap();
        match patch(&a, &d, LIMIT) {
            Ok(out) => {
                assert!(out == b, "seed {seed}: rebuilt something other than B");
                got_b += 1;
            }
            Err(e) => assert_eq!(e, Error::DigestMismatch, "seed {seed}"),
        }
    }
    assert!(got_b >= 48, "only {got_b} of 64 seeds gave B");
}

fn put(v: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        v.push(x as u8 | 0x80);
        x >>= 7;
    }
    v.push(x as u8);
}

/// A magicless zstd frame holding one byte, stored (it decodes whatever
/// the prefix it is given).
const FRAME_X: [u8; 6] = [0x00, 0x58, 0x09, 0x00, 0x00, b'x'];

/// A delta of `chunks` literal chunks of one byte each, every one with the
/// whole of `old` (in 1 KiB units) named `repeat` times as context: each
/// chunk is valid on its own (at most a window of runs), the output is
/// `chunks` bytes, and the decoder's work is the context it copies.
fn context_bomb(old: &[u8], chunks: usize, repeat: u64) -> Vec<u8> {
    let units = old.len() as u64 / 1024;
    let mut d = b"hsd\x02".to_vec();
    put(&mut d, 1024);
    put(&mut d, old.len() as u64);
    d.push(MAX_WINDOW_LOG);
    for _ in 0..chunks {
        d.push(3); // LIT_ZSTD: raw_len 1, tail 0, runs
        put(&mut d, 1);
        put(&mut d, 0);
        put(&mut d, repeat);
        for i in 0..repeat {
            put(&mut d, if i == 0 { 0 } else { 2 * units - 1 }); // back to unit 0
            put(&mut d, units);
        }
        put(&mut d, FRAME_X.len() as u64);
        d.extend_from_slice(&FRAME_X);
        d.push(2); // INSERT 1
        put(&mut d, 1);
    }
    d.push(0);
    put(&mut d, chunks as u64);
    d.extend_from_slice(&digest(&vec![b'x'; chunks]));
    d
}

/// A decoder bomb: a 32 KB delta whose literal chunks each name a window
/// of context. Delta version 1 allowed two windows of 16 MiB per chunk,
/// whatever the chunk's length: 48 MiB copied for one output byte, seconds
/// of CPU before the END is even read. Version 2 bounds the context of all
/// chunks by a credit that grows with the output.
#[test]
fn context_bomb_is_refused_early() {
    let old: Vec<u8> = (0..64u32 << 10).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    // Within one window per chunk (64 x 64 KiB = 4 MiB), 2,000 chunks.
    let d = context_bomb(&old, 2000, 64);
    assert!(d.len() < 400 << 10, "{} bytes", d.len());
    let t = std::time::Instant::now();
    assert!(matches!(patch(&old, &d, LIMIT), Err(Error::TooLarge(_))));
    // Refused before copying more than the credit (a few MiB): not a
    // timing test, a generous sanity bound against a hang.
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    // Up to the credit, the same construction decodes: 2 MiB of context in
    // all for 2 chunks of 1 MiB each.
    let ok = context_bomb(&old, 2, 16);
    assert!(ok.len() < 1000);
    assert_eq!(patch(&old, &ok, LIMIT).unwrap(), b"xx");
    // One unit more and it is over (the credit is exact).
    let over = context_bomb(&old, 2, 17);
    const { assert!(2 * 17 * 64 * 1024 > CONTEXT_CREDIT_START + 2) };
    assert!(matches!(patch(&old, &over, LIMIT), Err(Error::TooLarge(_))));
}

/// COPY ops can name the same old blocks again and again: a delta of a
/// few bytes per 64 KiB of output. The output limit the caller passes is
/// what stops it.
#[test]
fn repeated_copies_stop_at_the_output_limit() {
    let old = vec![b'a'; 64 << 10];
    let mut d = b"hsd\x02".to_vec();
    put(&mut d, 1024);
    put(&mut d, old.len() as u64);
    d.push(18);
    for i in 0..10_000u64 {
        d.push(1); // COPY all 64 units, starting back at 0
        put(&mut d, if i == 0 { 0 } else { 2 * 64 - 1 });
        put(&mut d, 64);
    }
    d.push(0);
    put(&mut d, 10_000 * 65536);
    d.extend_from_slice(&[0; 32]);
    assert!(d.len() < 40_000);
    assert!(matches!(patch(&old, &d, 1 << 20), Err(Error::TooLarge(_))), "655 MB of output for a 40 KB delta");
}
