//! Hostile signatures against honest ones (BENCHMARKS.md, "Hostile
//! signatures"): for each case of `core/tests/hostile`, the encoder's time
//! on the same body with the hostile signature and with a signature that
//! matches nothing, their ratio, the search credit spent, and the peak of
//! the heap (Rust allocations; zstd's own tables are outside it).
//! Usage: cargo run --release -p hsync-core --example hostile [LEN...]
//! (default 65536 1048576 16777216; `REPS` runs per figure, default 9).
//! `hostile --write DIR LEN` writes each case's body, signature and honest
//! signature instead (`build/bench-hostile` serves them with nginx).
#[path = "../tests/hostile/mod.rs"]
mod hostile;

use hsync_core::{EncodeStats, Encoder, Signature};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Counts the live bytes of the heap and their peak.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counters are only read.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded to the system allocator with the same layout.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Encodes `body` fed in `piece`-byte pieces: output bytes, stats, peak heap growth.
fn encode(sig: &Signature, body: &[u8], piece: usize) -> (EncodeStats, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let mut e = Encoder::new(sig.clone());
    let mut out = Vec::new();
    for p in body.chunks(piece) {
        e.update(p, &mut out).unwrap();
        out.clear();
    }
    e.finish(&mut out).unwrap();
    (e.stats(), PEAK.load(Ordering::Relaxed) - base)
}

/// Median time of `reps` runs, in ms.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}

/// Writes `DIR/N.body`, `DIR/N.sig`, `DIR/N.honest.sig` and `DIR/N.name` for every case.
fn write(dir: &str, len: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for (i, c) in hostile::cases(len).into_iter().enumerate() {
        let body = &c.body[..len.min(c.body.len())];
        std::fs::write(format!("{dir}/{i}.body"), body).unwrap();
        std::fs::write(format!("{dir}/{i}.sig"), c.sig.to_bytes()).unwrap();
        std::fs::write(format!("{dir}/{i}.honest.sig"), hostile::non_matching(body).to_bytes()).unwrap();
        std::fs::write(format!("{dir}/{i}.name"), c.name).unwrap();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--write") {
        return write(&args[2], args[3].parse().expect("a length in bytes"));
    }
    let lens: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("a length in bytes")).collect();
    let lens = if lens.is_empty() { vec![64 << 10, 1 << 20, 16 << 20] } else { lens };
    let reps: usize = std::env::var("REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(9);
    println!("{:>9}  {:44} {:>9} {:>9} {:>6} {:>11} {:>7} {:>9}", "body", "case", "honest", "hostile", "ratio", "work", "pauses", "heap");
    for len in lens {
        for c in hostile::cases(len) {
            let body = &c.body[..len.min(c.body.len())];
            let honest = hostile::non_matching(body);
            let th = time(reps, || {
                encode(&honest, body, c.piece);
            });
            let tx = time(reps, || {
                encode(&c.sig, body, c.piece);
            });
            let (st, heap) = encode(&c.sig, body, c.piece);
            println!(
                "{:>9}  {:44} {:>7.3}ms {:>7.3}ms {:>6.2} {:>11} {:>7} {:>7}KiB",
                body.len(),
                c.name,
                th,
                tx,
                tx / th,
                st.search_work,
                st.search_pauses,
                heap >> 10
            );
        }
    }
}
