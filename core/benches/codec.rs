//! Throughput of signature, delta and patch (criterion).
//! `cargo bench -p hsync-core --bench codec`
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hsync_core::{delta, patch, EncodeOptions, Encoder, Signature};
use std::path::PathBuf;

/// Largest instance the tests let a delta rebuild.
const LIMIT: u64 = 1 << 30;

fn corpus(rel: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus").join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// ~10 MB: successive feed versions concatenated (old), and the same with the
/// next versions (new): realistic edits at many places.
fn big_pair() -> (Vec<u8>, Vec<u8>) {
    let (mut old, mut new) = (Vec::new(), Vec::new());
    while old.len() < 10_000_000 {
        for i in 1..30 {
            old.extend(corpus(&format!("atom-feed/{i:03}.xml")));
            new.extend(corpus(&format!("atom-feed/{:03}.xml", i + 1)));
        }
    }
    (old, new)
}

fn bench(c: &mut Criterion) {
    let page_old = corpus("blog-home/029.html");
    let page_new = corpus("blog-home/030.html");
    let (big_old, big_new) = big_pair();
    for (name, old, new) in [("page-150KB", &page_old, &page_new), ("feeds-10MB", &big_old, &big_new)] {
        let sig = Signature::compute(old);
        let d = delta(&sig, new).unwrap();
        let mut g = c.benchmark_group(name);
        g.sample_size(if old.len() > 1 << 20 { 10 } else { 50 });
        g.throughput(Throughput::Bytes(old.len() as u64));
        g.bench_function(BenchmarkId::new("signature", old.len()), |b| b.iter(|| Signature::compute(old)));
        g.throughput(Throughput::Bytes(new.len() as u64));
        g.bench_function(BenchmarkId::new("delta", new.len()), |b| {
            b.iter(|| {
                let mut out = Vec::with_capacity(d.len());
                let mut e = Encoder::new(sig.clone());
                for chunk in new.chunks(16 << 10) {
                    e.update(chunk, &mut out).unwrap();
                }
                e.finish(&mut out).unwrap();
                out
            })
        });
        // The one-shot API and the CLI on a mapped file: searched in place,
        // on one thread and with literal chunks on a helper thread.
        for (id, background) in [("delta-in-place", false), ("delta-in-place-2-threads", true)] {
            g.bench_function(BenchmarkId::new(id, new.len()), |b| {
                b.iter(|| {
                    let mut out = Vec::with_capacity(d.len());
                    let o = EncodeOptions { background, ..Default::default() };
                    Encoder::with_options(sig.clone(), o)
                        .encode_all(new, |c| {
                            out.extend_from_slice(c);
                            Ok(())
                        })
                        .unwrap();
                    out
                })
            });
        }
        g.bench_function(BenchmarkId::new("patch", new.len()), |b| b.iter(|| patch(old, &d, LIMIT).unwrap()));
        g.finish();
    }
}

/// What a server module pays per request when hsync does not engage: the
/// one call into the core that decides (the not-engaged overhead of the
/// nginx and Apache benchmarks, measured without their noise), with the
/// header lines a browser sends and a typical response's.
fn decline(c: &mut Criterion) {
    use hsync_core::ffi::*;
    let mut cfg = std::mem::MaybeUninit::<hsync_config>::uninit();
    // SAFETY: hsync_config_default fills every field.
    let cfg = unsafe {
        hsync_config_default(cfg.as_mut_ptr());
        cfg.assume_init()
    };
    let field = |n: &'static str, v: &'static str| hsync_field {
        name: n.as_ptr() as _,
        name_len: n.len(),
        value: v.as_ptr() as _,
        value_len: v.len(),
    };
    let request = [
        field("Host", "example.org"),
        field("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36"),
        field("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        field("Accept-Encoding", "gzip, deflate, br, zstd"),
        field("Accept-Language", "en-US,en;q=0.9"),
        field("Cookie", "session=abcdef0123456789"),
    ];
    let response = [
        field("Content-Type", "text/html"),
        field("Last-Modified", "Tue, 01 Dec 2026 10:00:00 GMT"),
        field("ETag", "\"5bd9218f-251b8\""),
        field("Accept-Ranges", "bytes"),
    ];
    let mut g = c.benchmark_group("ffi");
    for (name, req) in [("no-headers", &request[..0]), ("browser-headers", &request[..])] {
        g.bench_function(BenchmarkId::new("hsync_decide-declines", name), |b| {
            b.iter(|| {
                let x = hsync_exchange {
                    method: b"GET".as_ptr() as _,
                    method_len: 3,
                    request: req.as_ptr(),
                    request_len: req.len(),
                    status: 200,
                    uri: b"/page.html".as_ptr() as _,
                    uri_len: 10,
                    response: response.as_ptr(),
                    response_len: response.len(),
                    content_length: 152_008,
                };
                let mut r = std::ptr::null_mut();
                let mut msg = [0 as std::os::raw::c_char; 256];
                // SAFETY: valid structures whose strings outlive the call.
                let rc = unsafe { hsync_decide(&cfg, &x, &mut r, msg.as_mut_ptr(), msg.len()) };
                assert!(rc == hsync_result::HSYNC_DECLINED && !r.is_null());
                // SAFETY: the handle hsync_decide returned, freed once.
                unsafe { hsync_response_free(r) };
                rc
            })
        });
    }
    g.finish();
}

/// The digest that ends every delta, chosen by its cost per page
/// (BENCHMARKS.md): BLAKE3-256 against SHA-256 (the `sha2` crate with its
/// SHA-NI code) and the XXH3-128 of delta version 1, which is not
/// collision-resistant.
fn digest(c: &mut Criterion) {
    use sha2::Digest as _;
    let page = corpus("blog-home/030.html");
    let (_, big) = big_pair();
    let mut g = c.benchmark_group("digest");
    for (name, data) in [("4KB", &page[..4096]), ("page-150KB", &page[..]), ("feeds-10MB", &big[..])] {
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.sample_size(if data.len() > 1 << 20 { 20 } else { 100 });
        g.bench_function(BenchmarkId::new("blake3", name), |b| b.iter(|| hsync_core::hash::digest(data)));
        g.bench_function(BenchmarkId::new("sha256", name), |b| b.iter(|| sha2::Sha256::digest(data)));
        g.bench_function(BenchmarkId::new("xxh3-128", name), |b| b.iter(|| hsync_core::hash::xxh3_128(data)));
    }
    g.finish();
}

/// The version store on the request path (BENCHMARKS.md): whether a
/// version is held, the latest version of a page, a read with its SHA-256
/// check, the copy of a response already held, a prepared dictionary from the process's cache, and a dcz
/// encoding of the next version of the page against it.
fn store(c: &mut Criterion) {
    use hsync_core::codec::dcz;
    use hsync_core::store::{sha256, Meta, Store};
    let dir = std::env::temp_dir().join(format!("hsync-bench-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let s = std::sync::Arc::new(Store::open(&dir, 64 << 20, 4 << 20).unwrap());
    let old = corpus("blog-home/029.html");
    let new = corpus("blog-home/030.html");
    let mut w = s.writer("/index.html", &Meta { content_type: "text/html".into(), pattern: "/index.html".into() }).unwrap();
    w.write(&old);
    let h = w.commit().unwrap().unwrap();
    assert_eq!(h, sha256(&old));
    let mut g = c.benchmark_group("store");
    g.bench_function("has", |b| b.iter(|| s.has(&h)));
    g.bench_function("latest", |b| b.iter(|| s.latest("/index.html").unwrap()));
    g.bench_function("get-and-verify-152KB", |b| b.iter(|| s.get(&h).unwrap()));
    // What every stored response pays as it streams: the copy, its hash,
    // and the commit of a version the store already holds.
    g.bench_function("write-seen-152KB", |b| {
        b.iter(|| {
            let mut w = s.writer("/index.html", &Meta { content_type: "text/html".into(), pattern: "/index.html".into() }).unwrap();
            w.write(&old);
            w.commit().unwrap().unwrap()
        })
    });
    let p = dcz::prepared(&h, || s.get(&h).map(|v| v.1)).unwrap();
    g.bench_function("prepared-cached", |b| b.iter(|| dcz::prepared(&h, || None).unwrap()));
    g.bench_function("prepare-152KB", |b| b.iter(|| dcz::Prepared::new(&old, h).unwrap()));
    g.throughput(Throughput::Bytes(new.len() as u64));
    g.bench_function("dcz-encode-152KB", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(4096);
            let mut e = dcz::DczEncoder::new(p.clone(), Some(new.len() as u64)).unwrap();
            e.update(&new, &mut out).unwrap();
            e.finish(&mut out).unwrap();
            out
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench, decline, digest, store);
criterion_main!(benches);
