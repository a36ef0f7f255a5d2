//! The encoder against the decoder: for any old instance, any edit of it,
//! any signature parameters the wire allows and any way of feeding the body
//! in pieces (with flushes), the delta rebuilds the new instance exactly.
//! With the block size a client picks and full 32+32-bit checksums a false
//! block match is out of reach, so only an exact rebuild passes; with
//! arbitrary (thin) checksums the digest may catch a false match
//! (`DigestMismatch`), and nothing else may go wrong. `encode_all`, with or
//! without the helper thread, gives the bytes of `update`s of 64 KiB.
#![no_main]
use hsync_core::{patch, EncodeOptions, Encoder, Error, SigLimits, SigParams, Signature};
use libfuzzer_sys::fuzz_target;

/// Largest instance the tests let a delta rebuild.
const LIMIT: u64 = 1 << 30;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (h, rest) = data.split_at(8);
    let split = (u16::from_le_bytes([h[0], h[1]]) as usize).min(rest.len());
    let old = &rest[..split];
    let insert = &rest[split..];
    // new = old[..p] + insert + old[q..], and a repeat of old when asked
    let p = h[2] as usize * old.len() / 255;
    let q = (p + h[3] as usize * (old.len() - p) / 255).min(old.len());
    let mut new = Vec::with_capacity(old.len() + insert.len());
    new.extend_from_slice(&old[..p]);
    new.extend_from_slice(insert);
    new.extend_from_slice(&old[q..]);
    if h[4] & 1 == 1 {
        new.extend_from_slice(old);
    }
    let chosen = h[5] & 0x80 == 0;
    let params = if chosen {
        let p = SigParams::for_len_within(old.len() as u64, 64 + (h[5] as usize & 0x7f) * 36);
        SigParams { weak_bits: 32, strong_bits: 32, ..p }
    } else {
        SigParams { block_len: 16 + (h[6] as u32 % 64) * 16, weak_bits: 1 + h[5] % 32, strong_bits: 1 + h[7] % 32, sub_log: 0, sub_bits: 0 }
    };
    let sig = Signature::compute_with(old, params);
    // What a server gets: the signature's bytes, parsed.
    let sig = Signature::parse(&sig.to_bytes(), &SigLimits::format()).expect("own signature parses");
    // Searching in place (optionally with the helper thread) gives the
    // bytes of updates of 64 KiB.
    let mut one = Vec::new();
    let mut enc = Encoder::new(sig.clone());
    for c in new.chunks(1 << 16) {
        enc.update(c, &mut one).expect("update");
    }
    enc.finish(&mut one).expect("finish");
    let opts = EncodeOptions { background: h[4] & 2 != 0, ..Default::default() };
    let mut all = Vec::new();
    Encoder::with_options(sig.clone(), opts)
        .encode_all(&new, |b| {
            all.extend_from_slice(b);
            Ok(())
        })
        .expect("encode_all");
    assert!(all == one, "encode_all differs from updates of 64 KiB");
    let mut enc = Encoder::new(sig);
    let mut delta = Vec::new();
    let piece = 1 + h[6] as usize * 13;
    for (i, c) in new.chunks(piece).enumerate() {
        enc.update(c, &mut delta).expect("update");
        if h[7] & 0x80 != 0 && i % 3 == 1 {
            enc.flush(&mut delta).expect("flush");
        }
    }
    enc.finish(&mut delta).expect("finish");
    match patch(old, &delta, LIMIT) {
        Ok(v) => assert!(v == new, "patch returned other bytes than the digest's"),
        Err(Error::DigestMismatch) if !chosen => {}
        // Anything else, the context credit included (the encoder must stay within it), is a bug.
        Err(e) => panic!("{e:?} (params {params:?}, old {} new {})", old.len(), new.len()),
    }
});
