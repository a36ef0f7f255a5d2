//! The encoder given any signature a server accepts and any body, fed in
//! pieces of any size: it never panics, its search never spends more than
//! its credit, and the delta decodes to the body (or, with a signature that
//! is not the old instance's, fails its digest or base check: never other
//! bytes). The first two bytes give the signature's length, then the
//! signature, then the body.
#![no_main]
use hsync_core::limits::{SEARCH_CREDIT_PER_BYTE, SEARCH_CREDIT_START};
use hsync_core::{patch, Encoder, SigLimits, Signature};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let n = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
    let piece = 1 + data[2] as usize * 61;
    let (sig, body) = data[3..].split_at(n.min(data.len() - 3));
    let Ok(sig) = Signature::parse(sig, &SigLimits::server()) else { return };
    let instance_len = sig.instance_len;
    let mut enc = Encoder::new(sig);
    let mut delta = Vec::new();
    for c in body.chunks(piece) {
        enc.update(c, &mut delta).expect("update");
    }
    enc.finish(&mut delta).expect("finish");
    let st = enc.stats();
    assert!(st.search_work <= SEARCH_CREDIT_START + SEARCH_CREDIT_PER_BYTE * st.input_bytes);
    // No old instance has this signature (it is arbitrary): decoding against
    // zeros of its length gives the body or an error, never other bytes.
    if instance_len <= 1 << 20 {
        let old = vec![0u8; instance_len as usize];
        if let Ok(out) = patch(&old, &delta, 1 << 24) {
            assert!(out == body, "a delta decoded to bytes other than the body");
        }
    }
});
