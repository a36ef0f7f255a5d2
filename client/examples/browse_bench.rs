//! Replays a browsing session over the successive corpus versions (blog home
//! page and Atom feed, 30 versions each) and prints the bytes on the wire:
//! through the hsync proxy (deltas) vs direct with gzip (a browser with a
//! cache: conditional requests, gzip bodies). Then measures the proxy's
//! cache-hit latency (p50/p99) over fresh connections.
//!
//! cargo run --release -p hsync-client --example browse_bench
#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use hsync_client::proxy::{self, ProxyConfig};
use hsync_client::{DiskCache, FetchOptions, Fetcher};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// GET straight from the origin (origin-form), returning all bytes read and the parsed response.
fn direct(origin: &Origin, path: &str, inm: Option<&str>) -> (usize, RawResponse) {
    let mut s = TcpStream::connect(origin.addr()).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nAccept-Encoding: gzip, deflate\r\nConnection: close\r\n", origin.addr());
    if let Some(t) = inm {
        req.push_str(&format!("If-None-Match: {t}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    (all.len(), parse_response(&all).unwrap())
}

fn main() {
    let origin = Origin::start_local(true);
    origin.state().modes.gzip.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(DiskCache::open(dir.path(), 1 << 30).unwrap());
    let fetcher = Arc::new(Fetcher::new(cache, FetchOptions { shared: true, timeout: Duration::from_secs(5), ..Default::default() }));
    let (addr, _h) = rt().block_on(proxy::spawn("127.0.0.1:0", fetcher.clone(), ProxyConfig::default())).unwrap();

    let resources = [("blog-home", "/index.html"), ("atom-feed", "/atom.xml")];
    let all: Vec<Vec<Vec<u8>>> = resources.iter().map(|(f, _)| versions(f)).collect();
    let n = all.iter().map(|v| v.len()).min().unwrap();
    let (mut page_bytes, mut direct_bytes, mut first_direct) = (0u64, 0u64, 0u64);
    let mut etags: Vec<Option<String>> = vec![None; resources.len()];
    let mut first_proxy = 0;
    println!("visit  page-bytes  direct-gzip  proxy-wire");
    #[allow(clippy::needless_range_loop)] // `i` is the visit, across resources
    for i in 0..n {
        let before = fetcher.stats.wire.load(Ordering::Relaxed);
        let (mut pb, mut db) = (0u64, 0u64);
        for (k, (_, path)) in resources.iter().enumerate() {
            let v = &all[k][i];
            origin.set_page(path, v);
            // Direct, like a browser with its own cache and gzip.
            let (wire, r) = direct(&origin, path, etags[k].as_deref());
            etags[k] = r.header("etag").map(String::from);
            db += wire as u64;
            // Through the proxy.
            let r = raw_get(addr, &origin.url(path), &[("Accept-Encoding", "gzip, deflate")]).unwrap();
            assert!(r.body == *v, "byte-exact through the proxy");
            pb += v.len() as u64;
        }
        let pw = fetcher.stats.wire.load(Ordering::Relaxed) - before;
        if i == 0 {
            first_direct = db;
            first_proxy = pw;
        }
        println!("{:>5}  {:>10}  {:>11}  {:>10}", i + 1, pb, db, pw);
        page_bytes += pb;
        direct_bytes += db;
    }
    let proxy_bytes = fetcher.stats.wire.load(Ordering::Relaxed);
    println!(
        "session of {n} visits x {} resources: pages {page_bytes} bytes; direct+gzip {direct_bytes} bytes on the wire; \
         hsync proxy {proxy_bytes} bytes ({:.3} of gzip)",
        resources.len(),
        proxy_bytes as f64 / direct_bytes as f64
    );
    println!(
        "updates only (visits 2..{n}): direct+gzip {} bytes; hsync proxy {} bytes ({:.3} of gzip)",
        direct_bytes - first_direct,
        proxy_bytes - first_proxy,
        (proxy_bytes - first_proxy) as f64 / (direct_bytes - first_direct) as f64
    );

    // Cache-hit latency: a fresh page, a new connection per request.
    origin.set_cache_control("max-age=3600");
    origin.set_page("/hit.html", &all[0][0]);
    let url = origin.url("/hit.html");
    raw_get(addr, &url, &[]).unwrap();
    let mut lat = Vec::new();
    for _ in 0..2000 {
        let t = Instant::now();
        let r = raw_get(addr, &url, &[]).unwrap();
        lat.push(t.elapsed());
        assert_eq!(r.header("x-hsync-cache"), Some("HIT"));
    }
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "proxy cache hit ({} bytes, new connection each, 2000 requests): p50 {:?} p99 {:?} max {:?}",
        all[0][0].len(),
        p(0.5),
        p(0.99),
        lat[lat.len() - 1]
    );
}
