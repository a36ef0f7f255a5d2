//! Builds two HTML pages A and B that XXH3 (64 and 128, seed 0) cannot tell
//! apart, and that hsync's signature (weak rolling sum + low bits of
//! xxh3-64 per block) cannot tell apart either. A client holding A that asks
//! for B gets a delta of COPYs only, whose END digest (xxh3-128) checks: it
//! silently keeps A.
//!
//! Run from the workspace root:
//!   cargo run --release -p hsync-core --example xxh3_collision -- OUTDIR [PAGE]
//! (PAGE defaults to ../shared/corpus/blog-home/001.html). Writes OUTDIR/a.html
//! and OUTDIR/b.html and prints the parameters it used. Deterministic: the same
//! page gives the same pair.
//!
//! # Why it works
//!
//! XXH3 of an input longer than 240 bytes (xxHash spec, "XXH3 long inputs";
//! twox-hash `xxhash3/large.rs` and `large/scalar.rs`) cuts the input into
//! blocks of 1024 bytes (16 stripes of 64 bytes with the default 192-byte
//! secret). Stripe `s` of a block is accumulated with the secret at offset
//! `8*s`; for each of its 8 lanes `i`, with `d` the lane's u64 (LE) and `k`
//! the secret's u64 at offset `8*s + 8*i`:
//!
//! ```text
//! acc[i ^ 1] += d;
//! v = d ^ k;  acc[i] += (v & 0xffff_ffff) * (v >> 32);
//! ```
//!
//! After the 16 stripes of a block the accumulators are scrambled; the
//! last block is accumulated stripe by stripe except its last stripe, and
//! the last 64 bytes of the input are accumulated once more with the secret
//! at offset 192 - 64 - 7 = 121. Then the accumulators are merged into the
//! 64-bit result, and (with another part of the secret) into the 128-bit one.
//!
//! If the low 32 bits of `d` equal the low 32 bits of `k`, `v & 0xffff_ffff`
//! is 0: the product is 0 whatever the high 32 bits of `d`, which then only
//! enter through `acc[i ^ 1] += d`, linearly. Take two such lanes with the
//! same lane index `i` in two stripes `s1 != s2` of the same 1024-byte block
//! (no scramble between them, neither in the input's last 64 bytes) and add
//! `delta` to the high half of the first and subtract it from the second:
//! `acc[i ^ 1]` gets `+ (delta << 32) - (delta << 32) = 0`, every
//! accumulator is as before, and so are XXH3-64 and XXH3-128 of the input.
//! Eight bytes differ.
//!
//! The same two lanes must also leave the signature of the block `j` that
//! holds them unchanged:
//! - strong check (low bits of xxh3-64 of the block): the block is hashed
//!   alone, so a lane's secret offset there comes from its offset inside the
//!   block. Block `j` is placed to start at a multiple of 1024 in the page:
//!   then the offsets inside the block and inside the page agree modulo
//!   1024, the same low halves work for both hashes, and the whole xxh3-64
//!   of the block is unchanged (the lanes are kept out of the block's last
//!   64 bytes, and in its first 1024).
//! - weak check (top `weak_bits` of `R = sum b_k * M^(n-1-k) mod 2^32`):
//!   linear in the bytes, so the change of R is
//!   `sum (b'_k - b_k) * M^(n-1-k)` over the 8 changed bytes; `delta` is
//!   searched until the top `weak_bits` of R are unchanged (about
//!   `2^weak_bits` tries, a few operations each).
//!
//! The crafted bytes sit in an HTML comment right after `<body ...>`; the
//! comment is padded so that block `j` (wholly inside the comment) starts at
//! a multiple of 1024, and the page length is chosen so that the block length
//! the client would pick (`SigParams::for_len`) is the one the layout assumed.
//! No crafted byte is `-`, `<`, `>` or NUL, so the comment cannot end early.

use hsync_core::hash::{xxh3_128, xxh3_64};
use hsync_core::{delta, patch, rollsum, SigParams, Signature};
use std::path::PathBuf;
use std::time::Instant;

/// The default XXH3 secret (xxHash `XXH3_kSecret`, 192 bytes).
#[rustfmt::skip]
const SECRET: [u8; 192] = [
    0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
    0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
    0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
    0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
    0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
    0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
    0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
    0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
    0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
    0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
    0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
    0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
];

/// Bytes of an XXH3 block (16 stripes of 64 with the default secret).
const XXH3_BLOCK: usize = 1024;
const STRIPE: usize = 64;

/// Opening and closing of the comment; the padding text inside it.
const OPEN: &[u8] = b"\n<!-- ";
const CLOSE: &[u8] = b" -->\n";
const FILL: &[u8] = b"hsync test vector: an XXH3 collision, see tests/vectors/attack/xxh3-collision in the hsync repository. ";

/// High halves of the two lanes in page A (printable, so A's comment reads as text).
const A_HIGH: [[u8; 4]; 2] = [*b"XXH3", *b"coll"];

/// Bytes the crafted lanes must not contain: they could end the comment.
fn forbidden(b: u8) -> bool {
    matches!(b, 0 | b'-' | b'<' | b'>')
}

fn lcm(a: usize, b: usize) -> usize {
    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    a / gcd(a, b) * b
}

/// Layout of page A: where the comment goes and where block `j` starts.
struct Layout {
    total: usize,
    params: SigParams,
    /// Start of signature block `j` in the page (a multiple of 1024 and of `block_len`).
    block_start: usize,
    /// Padding after block `j`, before the end of the comment (to reach `total`).
    extra: usize,
}

/// The smallest page length `N >= len0 + (bytes the comment needs)` whose
/// block length puts a block start on a multiple of 1024 after the comment
/// opens.
fn layout(len0: usize, insert_at: usize) -> Layout {
    let first = insert_at + OPEN.len();
    for total in len0.. {
        let params = SigParams::for_len(total as u64);
        let bl = params.block_len as usize;
        let step = lcm(bl, XXH3_BLOCK);
        let block_start = first.div_ceil(step) * step;
        let need = (block_start - insert_at) + bl + CLOSE.len();
        // The XXH3 block holding the lanes must lie before the page's last 64 bytes.
        if len0 + need <= total && block_start + XXH3_BLOCK + STRIPE < total {
            return Layout { total, params, block_start, extra: total - len0 - need };
        }
    }
    unreachable!()
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 2 || args.len() > 3 {
        eprintln!("usage: xxh3_collision OUTDIR [PAGE]   (PAGE default ../shared/corpus/blog-home/001.html)");
        std::process::exit(2);
    }
    let out = PathBuf::from(&args[1]);
    let page_path = PathBuf::from(args.get(2).map(String::as_str).unwrap_or("../shared/corpus/blog-home/001.html"));
    let page = std::fs::read(&page_path).unwrap_or_else(|e| panic!("{}: {e}", page_path.display()));
    let t0 = Instant::now();

    // Insert right after the opening <body ...> tag.
    let body = page.windows(5).position(|w| w.eq_ignore_ascii_case(b"<body")).expect("no <body> tag");
    let insert_at = body + page[body..].iter().position(|&b| b == b'>').expect("unterminated <body> tag") + 1;
    let lay = layout(page.len(), insert_at);
    let p = lay.params;
    let bl = p.block_len as usize;
    assert!(bl > 240, "block length {bl}: XXH3 of a block this short does not take the long path");
    let j = lay.block_start / bl;

    // Page A: the original with the comment, filled with FILL text.
    let comment_len = lay.total - page.len();
    let mut comment = Vec::with_capacity(comment_len);
    comment.extend_from_slice(OPEN);
    while comment.len() < comment_len - CLOSE.len() {
        let take = (comment_len - CLOSE.len() - comment.len()).min(FILL.len());
        comment.extend_from_slice(&FILL[..take]);
    }
    comment.extend_from_slice(CLOSE);
    let mut a = Vec::with_capacity(lay.total);
    a.extend_from_slice(&page[..insert_at]);
    a.extend_from_slice(&comment);
    a.extend_from_slice(&page[insert_at..]);
    assert_eq!(a.len(), lay.total);
    let bs = lay.block_start;

    // Lanes can go in the stripes of block j's first XXH3 block that are
    // accumulated as ordinary stripes for the block hash: not its last 64 bytes.
    let usable = (bl - STRIPE).min(XXH3_BLOCK) / STRIPE;
    assert!(usable >= 2);
    let weight = |k: usize| rollsum::out_factor(bl - 1 - k);
    let r_a = rollsum::hash(&a[bs..bs + bl]);

    let mut tries = 0u64;
    let mut found = None;
    'search: for lane in 0..8 {
        for s1 in 0..usable {
            for s2 in s1 + 1..usable {
                // Data offsets in block j, and the secret offsets the lanes meet.
                let offs = [s1 * STRIPE + 8 * lane, s2 * STRIPE + 8 * lane];
                let keys = [8 * s1 + 8 * lane, 8 * s2 + 8 * lane];
                let low: Vec<[u8; 4]> = keys.iter().map(|&o| SECRET[o..o + 4].try_into().unwrap()).collect();
                if low.iter().flatten().any(|&b| forbidden(b)) {
                    continue;
                }
                // Page A with these low halves and A_HIGH.
                let mut trial = a.clone();
                for (n, &o) in offs.iter().enumerate() {
                    trial[bs + o..bs + o + 4].copy_from_slice(&low[n]);
                    trial[bs + o + 4..bs + o + 8].copy_from_slice(&A_HIGH[n]);
                }
                let r = rollsum::hash(&trial[bs..bs + bl]);
                let target = rollsum::weak(r, p.weak_bits);
                let w: Vec<[u32; 4]> = offs.iter().map(|&o| std::array::from_fn(|t| weight(o + 4 + t))).collect();
                let h = [u32_at(&trial, bs + offs[0] + 4), u32_at(&trial, bs + offs[1] + 4)];
                // Deltas in a scrambled order (an odd multiplier), so that all
                // four bytes of each high half change.
                for k in 1..=u32::MAX {
                    tries += 1;
                    let d = k.wrapping_mul(0x9E37_79B9);
                    let nh = [h[0].wrapping_add(d), h[1].wrapping_sub(d)];
                    let (ob, nb) = (h.map(u32::to_le_bytes), nh.map(u32::to_le_bytes));
                    if (0..2).any(|n| (0..4).any(|t| ob[n][t] == nb[n][t] || forbidden(nb[n][t]))) {
                        continue;
                    }
                    // Change of R: each changed byte times its weight.
                    let mut r2 = r;
                    for n in 0..2 {
                        for t in 0..4 {
                            let diff = (nb[n][t] as u32).wrapping_sub(ob[n][t] as u32);
                            r2 = r2.wrapping_add(diff.wrapping_mul(w[n][t]));
                        }
                    }
                    if rollsum::weak(r2, p.weak_bits) == target {
                        found = Some((lane, s1, s2, offs, trial, nh, d, r, r2, target));
                        break 'search;
                    }
                }
            }
        }
    }
    let (lane, s1, s2, offs, a, nh, d, r_a2, r_b, weak_t) = found.expect("no delta found");
    let search = t0.elapsed();
    let mut b = a.clone();
    for (n, &o) in offs.iter().enumerate() {
        b[bs + o + 4..bs + o + 8].copy_from_slice(&nh[n].to_le_bytes());
    }

    // Checks: the claims, with hsync's own code.
    let changed: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
    assert_eq!(changed.len(), 8);
    assert_eq!(xxh3_64(&a), xxh3_64(&b), "xxh3-64 differs");
    assert_eq!(xxh3_128(&a), xxh3_128(&b), "xxh3-128 differs");
    assert_eq!(xxh3_64(&a[bs..bs + bl]), xxh3_64(&b[bs..bs + bl]), "block xxh3-64 differs");
    assert_eq!(rollsum::hash(&b[bs..bs + bl]), r_b);
    // Seed 0 is the check of signature version 2 (xxh3-64 unseeded): the
    // signatures of A and B are then equal and the delta copies A whole.
    // Delta version 1 (XXH3-128 digest) accepted it; BLAKE3 refuses it.
    assert_eq!(SigParams::for_len(a.len() as u64), p);
    let sig_a = Signature::compute_seeded(&a, p, 0);
    assert_eq!(sig_a, Signature::compute_seeded(&b, p, 0), "signatures differ");
    let dl = delta(&sig_a, &b).expect("delta");
    assert_eq!(patch(&a, &dl, u64::MAX), Err(hsync_core::Error::DigestMismatch), "the digest must catch the copy of A");
    let total = t0.elapsed();

    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("a.html"), &a).unwrap();
    std::fs::write(out.join("b.html"), &b).unwrap();

    println!("page: {} ({} bytes), comment inserted at offset {insert_at}", page_path.display(), page.len());
    println!("A, B: {} bytes; differ at offsets {changed:?}", a.len());
    println!(
        "signature: block_len {} weak_bits {} strong_bits {} sub_bits {} ({} blocks)",
        p.block_len,
        p.weak_bits,
        p.strong_bits,
        p.sub_bits,
        sig_a.block_count()
    );
    println!("block j = {j}: bytes {bs}..{} (start = {} * 1024), padding after it {}", bs + bl, bs / 1024, lay.extra);
    for n in 0..2 {
        let (s, o) = ([s1, s2][n], offs[n]);
        println!(
            "lane {lane} of stripe {s} (block offset {o}, page offset {}): low half {:02x?} = secret[{}..{}], high half (page offsets {}..{}) A {:02x?} -> B {:02x?}",
            bs + o,
            &a[bs + o..bs + o + 4],
            8 * s + 8 * lane,
            8 * s + 8 * lane + 4,
            bs + o + 4,
            bs + o + 8,
            &a[bs + o + 4..bs + o + 8],
            &b[bs + o + 4..bs + o + 8]
        );
    }
    println!("delta = {d:#010x} (added to the first high half, subtracted from the second)");
    println!("weak R of block j: A {r_a2:#010x} (before crafting {r_a:#010x}), B {r_b:#010x}; top {} bits {weak_t:#x} both", p.weak_bits);
    println!("xxh3-64 of block j: {:#018x} both", xxh3_64(&a[bs..bs + bl]));
    println!("xxh3-64 of page: {:#018x} both", xxh3_64(&a));
    println!("xxh3-128 of page: {:#034x} both", xxh3_128(&a));
    println!("delta B against sig(A, seed 0): {} bytes, all copies of A; patch(A, delta): digest mismatch (BLAKE3)", dl.len());
    println!("search: {tries} deltas tried, {:.1} ms; all with checks {:.1} ms", search.as_secs_f64() * 1e3, total.as_secs_f64() * 1e3);
    println!("wrote {} and {}", out.join("a.html").display(), out.join("b.html").display());
}
