//! Encoder statistics for one pair (exploration): `stats OLD NEW`.
use hsync_core::{EncodeOptions, Encoder, Signature};
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let old = std::fs::read(&a[1]).unwrap();
    let new = std::fs::read(&a[2]).unwrap();
    let sig = Signature::compute(&old);
    println!("{:?} ({} blocks, {} bytes)", sig.params, sig.block_count(), sig.encoded_len());
    let mut n = 0;
    let st = Encoder::with_options(sig, EncodeOptions::default())
        .encode_all(&new, |b| {
            n += b.len();
            Ok(())
        })
        .unwrap();
    println!("{st:?}\ndelta {n} bytes");
}
