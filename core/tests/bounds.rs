//! What a request can make a server's encoder use: heap memory bounded by
//! a figure that does not grow with the body (hsync.h, limits.rs), and
//! search work bounded by its credit, for honest and hostile signatures
//! alike. The heap is measured with a counting allocator (zstd's own
//! tables are allocated by its C code, outside it: `ZSTD_TABLES_BOUND`).
#[path = "hostile/mod.rs"]
mod hostile;

use hsync_core::limits::{ENCODER_HEAP_BOUND, INDEX_BYTES_PER_BLOCK, SEARCH_CREDIT_PER_BYTE, SEARCH_CREDIT_START};
use hsync_core::{EncodeStats, Encoder, SigParams, Signature};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// One measurement at a time (the test harness runs tests on threads).
static ONE: Mutex<()> = Mutex::new(());

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

/// Streams `body` in `piece`-byte pieces (as a server hands them over),
/// the output dropped as it comes: the encoder's stats and its peak heap
/// (the signature and the input piece excluded: they are the caller's).
fn measure(sig: &Signature, body: &[u8], piece: usize) -> (EncodeStats, usize) {
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::with_capacity(1 << 20);
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let mut e = Encoder::new(sig.clone());
    for p in body.chunks(piece) {
        e.update(p, &mut out).unwrap();
        out.clear();
    }
    e.finish(&mut out).unwrap();
    let stats = e.stats();
    drop(e);
    (stats, PEAK.load(Ordering::Relaxed) - base)
}

/// The bound for one signature: the index of its blocks plus the window.
fn bound(sig: &Signature) -> usize {
    ENCODER_HEAP_BOUND + sig.block_count() * INDEX_BYTES_PER_BLOCK
}

/// A 64 MB body of real page versions, and an old version of it with
/// edits every few KB: an honest request for a large response.
fn edited_pair(len: usize, every: usize) -> (Vec<u8>, Vec<u8>) {
    let text = hostile::noise(3, len);
    let mut old = text.clone();
    let mut i = 100;
    while i < old.len() {
        old[i] ^= 0x20;
        i += every;
    }
    (old, text)
}

#[test]
fn heap_is_bounded_whatever_the_signature_and_body() {
    let len = 64 << 20;
    let mut worst = 0.0f64;
    let mut report = Vec::new();
    // Honest: edits every 150 KiB and 600 KiB (pending literal chunks
    // spanning windows of copies), and a copy that shares nothing.
    for every in [150 << 10, 600 << 10] {
        let (old, new) = edited_pair(len, every);
        let sig = Signature::compute_with(&old, SigParams::for_http(old.len() as u64).unwrap());
        for piece in [4 << 10, 64 << 10, 1 << 20] {
            let (st, heap) = measure(&sig, &new, piece);
            report.push(format!("edits every {every} B, pieces of {piece} B: {heap} B heap, {} copied", st.copied_bytes));
            assert!(st.copied_bytes > len as u64 / 4, "the honest pair mostly matches: {} copied", st.copied_bytes);
            assert!(heap <= bound(&sig), "{}", report.last().unwrap());
            worst = worst.max(heap as f64 / bound(&sig) as f64);
        }
    }
    // Hostile, each at the largest block a server accepts where it applies.
    for c in hostile::cases(len) {
        let (_, heap) = measure(&c.sig, &c.body, c.piece);
        report.push(format!("{}: {heap} B heap", c.name));
        assert!(heap <= bound(&c.sig), "{}", report.last().unwrap());
        worst = worst.max(heap as f64 / bound(&c.sig) as f64);
    }
    eprintln!("{}\nworst: {:.0} % of the bound", report.join("\n"), worst * 100.0);
}

/// The search's work never exceeds its credit, and a hostile signature
/// spends it: the pause is what bounds it (BENCHMARKS.md has the times).
#[test]
fn search_work_stays_within_its_credit() {
    for len in [64 << 10, 4 << 20] {
        for c in hostile::cases(len) {
            let (st, _) = measure(&c.sig, &c.body, c.piece);
            let credit = SEARCH_CREDIT_START + SEARCH_CREDIT_PER_BYTE * st.input_bytes;
            assert!(st.search_work <= credit, "{}: {} > {credit}", c.name, st.search_work);
            if len > 1 << 20 && c.sig.block_len() < 1024 {
                assert!(st.search_pauses > 0, "{}: a hostile signature exhausts the credit", c.name);
            }
        }
    }
}
