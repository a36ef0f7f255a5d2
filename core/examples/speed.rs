//! Quick timing of delta encoding for one pair at several levels (exploration).
use hsync_core::{EncodeOptions, Encoder, Signature};
use std::time::Instant;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let old = std::fs::read(&a[1]).unwrap();
    let new = std::fs::read(&a[2]).unwrap();
    let sig = Signature::compute(&old);
    let minc: usize = std::env::var("MINC").ok().map(|v| v.parse().unwrap()).unwrap_or(16 << 10);
    let fac: usize = std::env::var("FAC").ok().map(|v| v.parse().unwrap()).unwrap_or(usize::MAX);
    for level in [3, 5, 6, 7, 9] {
        for wl in [18u8] {
            let o = EncodeOptions { level, window_log: wl, min_context: minc, context_factor: fac, ..Default::default() };
            let n = 50;
            let t = Instant::now();
            let mut len = 0;
            for _ in 0..n {
                let mut out = Vec::new();
                let mut e = Encoder::with_options(sig.clone(), o);
                e.update(&new, &mut out).unwrap();
                e.finish(&mut out).unwrap();
                len = out.len();
            }
            let dt = t.elapsed().as_secs_f64() / n as f64;
            println!("level {level:2} wl {wl}: {len:6} bytes, {:.3} ms/delta, {:.0} MB/s", dt * 1e3, new.len() as f64 / dt / 1e6);
        }
    }
    let t = Instant::now();
    for _ in 0..50 { std::hint::black_box(flate2_like(&new)); }
    println!("memcpy ref {:.3} ms", t.elapsed().as_secs_f64() / 50.0 * 1e3);
}
fn flate2_like(d: &[u8]) -> usize { d.iter().map(|&b| b as usize).sum() }
