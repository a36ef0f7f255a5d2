//! patch() on an arbitrary delta: an error, or exactly the instance whose digest the delta carries.
//! The streaming decoder (patch_to) must agree: the same error or the same bytes.
//! The input is split: the first byte picks the base's length, the rest is the delta;
//! deltas made by the encoder are mutated from the seed corpus (see README).
#![no_main]
use hsync_core::{patch_to, patch_with_limits, PatchLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let base_len = data[0] as usize * 64;
    let old: Vec<u8> = (0..base_len).map(|i| (i * 7 % 251) as u8).collect();
    let delta = &data[1..];
    // 64 KiB: four times the largest base (16 KiB), which a delta can name
    // over and over; a higher limit only makes those runs slower (they are
    // bounded by it, which is what is checked).
    let limits = PatchLimits { max_output: 1 << 16 };
    let whole = patch_with_limits(&old, delta, &limits);
    let mut streamed = Vec::new();
    let n = patch_to(&old, delta, &limits, &mut |p| {
        streamed.extend_from_slice(p);
        Ok(())
    });
    match (&whole, n) {
        (Ok(out), Ok(n)) => {
            assert!(out.len() <= 1 << 16);
            assert_eq!(n, out.len() as u64);
            assert!(*out == streamed, "streamed bytes differ");
        }
        (Err(a), Err(b)) => assert_eq!(*a, b),
        (a, b) => panic!("decoders disagree: {a:?} vs {b:?}"),
    }
});
