//! Where delta time goes on one pair (exploration): the whole encoder with
//! and without literal context, in place and streamed, and each hashing
//! pass alone; each first call also shows its time and page faults in this
//! fresh process. `ONLY=N` runs the default encoder N times (for `perf`).
//! Usage: cargo run --release --example speed OLD NEW
use hsync_core::{rollsum, signature::strong, EncodeOptions, Encoder, Signature};
use std::time::Instant;

fn time<T>(what: &str, len: usize, mut f: impl FnMut() -> T) -> T {
    let n = 20;
    let f0 = minflt();
    let t0 = Instant::now();
    let mut r = f();
    println!("{what:32} {:8.3} ms  (first call, {} faults)", t0.elapsed().as_secs_f64() * 1e3, minflt() - f0);
    let t = Instant::now();
    for _ in 0..n {
        r = std::hint::black_box(f());
    }
    let dt = t.elapsed().as_secs_f64() / n as f64;
    println!("{what:32} {:8.3} ms  {:7.0} MB/s", dt * 1e3, len as f64 / dt / 1e6);
    r
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let old = std::fs::read(&a[1]).unwrap();
    let new = std::fs::read(&a[2]).unwrap();
    let sig = Signature::compute(&old);
    let bl = sig.params.block_len as usize;
    let run = |o: EncodeOptions| {
        let mut out = Vec::new();
        let mut e = Encoder::with_options(sig.clone(), o);
        for piece in new.chunks(64 << 10) {
            e.update(piece, &mut out).unwrap();
        }
        e.finish(&mut out).unwrap();
        out.len()
    };
    let mut d = EncodeOptions::default();
    if let Ok(v) = std::env::var("FAST_AFTER") {
        d.fast_after = v.parse().unwrap();
    }
    if let Ok(k) = std::env::var("ONLY") {
        // For profiling the default encoder alone.
        let mut t = 0;
        for _ in 0..k.parse::<usize>().unwrap() {
            t += run(d);
        }
        println!("{t}");
        return;
    }
    let n = time("delta (default)", new.len(), || run(d));
    println!("  {n} bytes");
    let all = |o: EncodeOptions| {
        let mut n = 0;
        Encoder::with_options(sig.clone(), o)
            .encode_all(&new, |b| {
                n += b.len();
                Ok(())
            })
            .unwrap();
        n
    };
    let n = time("delta, encode_all (in place)", new.len(), || all(d));
    println!("  {n} bytes");
    let n = time("delta, encode_all, background", new.len(), || all(EncodeOptions { background: true, ..d }));
    println!("  {n} bytes");
    let n = time("delta, no context", new.len(), || {
        run(EncodeOptions { context_credit: 0, context_ratio: usize::MAX, min_context: 0, context_factor: 0, ..d })
    });
    println!("  {n} bytes");
    let n = time("delta, level 1", new.len(), || run(EncodeOptions { level: 1, ..d }));
    println!("  {n} bytes");
    time("xxh3-128 digest", new.len(), || hsync_core::hash::xxh3_128(&new));
    time("strong per block", new.len(), || new.chunks_exact(bl).map(|c| strong(c, 32, 0x1234_5678) as u64).sum::<u64>());
    time("weak per block", new.len(), || new.chunks_exact(bl).map(rollsum::hash).fold(0u32, |a, b| a ^ b));
    let f = rollsum::out_factor(bl);
    time("rolling every byte", new.len(), || {
        let mut h = rollsum::hash(&new[..bl]);
        let mut acc = 0u32;
        for i in 0..new.len() - bl {
            h = rollsum::roll(h, new[i], new[i + bl], f);
            acc ^= rollsum::weak(h, 20);
        }
        acc
    });
}

/// Minor page faults of this process so far.
fn minflt() -> i64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    u.ru_minflt
}
