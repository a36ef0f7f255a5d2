//! The forward proxy, driven by a raw HTTP/1.1 client and curl.
mod common;

use common::*;
use hsync_client::proxy::{self, ProxyConfig};
use hsync_client::{DiskCache, FetchOptions, Fetcher};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The child-process proxy of `spawn_proxy_process` (a no-op in a normal run).
#[test]
fn proxy_child_main() {
    common::proxy_child_main();
}

struct InProc {
    addr: SocketAddr,
    fetcher: Arc<Fetcher>,
    _h: tokio::task::JoinHandle<()>,
}

fn in_process(dir: &std::path::Path, max: u64, timeout: Duration) -> InProc {
    in_process_with(dir, max, timeout, ProxyConfig { stale_notice: true, timeout, ..Default::default() })
}

fn in_process_with(dir: &std::path::Path, max: u64, timeout: Duration, cfg: ProxyConfig) -> InProc {
    let cache = Arc::new(DiskCache::open(dir, max).unwrap());
    let fetcher = Arc::new(Fetcher::new(cache, FetchOptions { shared: true, timeout, ..Default::default() }));
    let (addr, h) = rt().block_on(proxy::spawn("127.0.0.1:0", fetcher.clone(), cfg)).unwrap();
    InProc { addr, fetcher, _h: h }
}

fn status_json(proxy: SocketAddr) -> serde_json::Value {
    let r = raw_get(proxy, "http://hsync.proxy/status.json", &[]).unwrap();
    serde_json::from_slice(&r.body).unwrap()
}

#[test]
fn pages_through_the_proxy_are_byte_exact_and_delta_fetched() {
    let origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    let p = in_process(dir.path(), 1 << 30, Duration::from_secs(5));
    for (folder, path) in [("blog-home", "/index.html"), ("atom-feed", "/atom.xml")] {
        let url = origin.url(path);
        for (i, v) in versions(folder).iter().take(10).enumerate() {
            origin.set_page(path, v);
            let r = raw_get(p.addr, &url, &[("Accept-Encoding", "gzip, deflate")]).unwrap();
            assert_eq!(r.status, 200);
            assert!(r.body == *v, "{folder} v{} differs", i + 1);
            assert!(r.header("content-encoding").is_none(), "identity to the client");
            let want = if i == 0 { "MISS" } else { "DELTA" };
            assert_eq!(r.header("x-hsync-cache"), Some(want), "{folder} v{}", i + 1);
        }
        // The same version again: 304 upstream, full page to the client.
        let r = raw_get(p.addr, &url, &[]).unwrap();
        assert_eq!(r.header("x-hsync-cache"), Some("REVALIDATED"));
    }
    let s = status_json(p.addr);
    let (wire, decoded) = (s["wire_bytes"].as_u64().unwrap(), s["decoded_bytes"].as_u64().unwrap());
    eprintln!("proxy: {decoded} bytes delivered for {wire} on the wire");
    assert!(wire * 3 < decoded);
    // The status page.
    let page = raw_get(p.addr, "http://hsync.proxy/", &[]).unwrap();
    let html = String::from_utf8(page.body).unwrap();
    assert!(html.contains("<svg") && html.contains(&origin.url("/atom.xml")));
    let mut s = TcpStream::connect(p.addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    assert!(String::from_utf8_lossy(&all).contains("hsync proxy"));
}

#[test]
fn browser_revalidation_is_answered_by_the_proxy() {
    let origin = Origin::start_local(true);
    let dir = tempfile::tempdir().unwrap();
    let p = in_process(dir.path(), 1 << 30, Duration::from_secs(5));
    origin.set_page("/b.html", &versions("blog-home")[0]);
    let r = raw_get(p.addr, &origin.url("/b.html"), &[]).unwrap();
    let etag = r.header("etag").unwrap().to_string();
    let r = raw_get(p.addr, &origin.url("/b.html"), &[("If-None-Match", &etag)]).unwrap();
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    // The proxy's own revalidation upstream did not carry the browser's header as such.
    assert!(origin.last().if_none_match.is_some());
}

#[test]
fn stale_copy_with_warning_and_notice_when_origin_is_down() {
    let mut origin = Origin::start_local(true);
    // Stale but servable when the origin is down (a `no-cache` response never is).
    origin.set_cache_control("max-age=0");
    let dir = tempfile::tempdir().unwrap();
    let p = in_process(dir.path(), 1 << 30, Duration::from_secs(1));
    let page = &versions("blog-home")[2];
    let feed = &versions("atom-feed")[2];
    origin.set_page("/s.html", page);
    origin.set_page("/s.xml", feed);
    let (purl, furl) = (origin.url("/s.html"), origin.url("/s.xml"));
    assert_eq!(raw_get(p.addr, &purl, &[]).unwrap().status, 200);
    assert_eq!(raw_get(p.addr, &furl, &[]).unwrap().status, 200);

    // Origin hangs: after the timeout the cached copy is served.
    origin.state().modes.hang.store(true, Ordering::SeqCst);
    let t = Instant::now();
    let r = raw_get(p.addr, &furl, &[]).unwrap();
    assert!(t.elapsed() < Duration::from_secs(4));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("warning"), Some("111 - \"Revalidation Failed\""));
    assert!(r.body == *feed, "no notice in a feed");

    // Origin gone: connection refused.
    origin.stop();
    let r = raw_get(p.addr, &purl, &[]).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-hsync-cache"), Some("STALE"));
    assert_eq!(r.header("warning"), Some("111 - \"Revalidation Failed\""));
    let html = String::from_utf8_lossy(&r.body);
    assert!(html.contains("hsync-stale-notice") && html.contains("may be out of date"));
    assert_eq!(r.body.len(), page.len() + proxy::notice_html(0).len());
    // Nothing cached: 502.
    let r = raw_get(p.addr, &origin.url("/never.html"), &[]).unwrap();
    assert_eq!(r.status, 502);
}

#[test]
fn not_found_is_passed_and_the_copy_no_longer_served() {
    let mut origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    let p = in_process(dir.path(), 1 << 30, Duration::from_secs(1));
    origin.set_page("/gone.html", &versions("blog-home")[0]);
    let url = origin.url("/gone.html");
    assert_eq!(raw_get(p.addr, &url, &[]).unwrap().status, 200);
    assert!(p.fetcher.cache.get(&url).is_some());
    origin.remove_page("/gone.html");
    let r = raw_get(p.addr, &url, &[]).unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-hsync-cache"), Some("REMOVED"), "with a link to the copy (client/tests/web.rs)");
    // The copy is kept for that link (until evicted), marked removed: never served for the URL again.
    assert!(p.fetcher.cache.get(&url).is_some_and(|e| e.meta.removed_at.is_some()));
    origin.stop();
    let r = raw_get(p.addr, &url, &[]).unwrap();
    assert!(r.status == 502 || r.status == 504, "{}", r.status);
}

#[test]
fn private_and_no_store_are_not_stored_by_a_shared_proxy() {
    let origin = Origin::start_local(true);
    let dir = tempfile::tempdir().unwrap();
    let p = in_process(dir.path(), 1 << 30, Duration::from_secs(5));
    let v = &versions("blog-home")[0];
    for (i, cc) in ["private, max-age=60", "no-store"].iter().enumerate() {
        origin.set_cache_control(cc);
        let path = format!("/priv{i}.html");
        origin.set_page(&path, v);
        let r = raw_get(p.addr, &origin.url(&path), &[]).unwrap();
        assert!(r.body == *v);
        assert!(p.fetcher.cache.get(&origin.url(&path)).is_none(), "{cc} stored");
    }
}

#[test]
fn damaged_entry_on_disk_is_refetched() {
    let origin = Origin::start_local(true);
    let dir = tempfile::tempdir().unwrap();
    let p = in_process(dir.path(), 1 << 30, Duration::from_secs(5));
    let v = &versions("atom-feed")[5];
    origin.set_page("/x.xml", v);
    let url = origin.url("/x.xml");
    raw_get(p.addr, &url, &[]).unwrap();
    let path = p.fetcher.cache.path_for(&url);
    let mut data = std::fs::read(&path).unwrap();
    data[v.len() / 2] ^= 0x01;
    std::fs::write(&path, &data).unwrap();
    let r = raw_get(p.addr, &url, &[]).unwrap();
    assert!(r.body == *v);
    assert_eq!(r.header("x-hsync-cache"), Some("MISS"));
    assert!(!origin.last().signature);
    assert_eq!(status_json(p.addr)["corrupt_dropped"].as_u64(), Some(1));
}

#[test]
fn concurrent_requests_share_one_upstream_fetch() {
    let origin = Origin::start_local(true);
    // The origin sends the page slowly enough (0.5 s per 64 KiB) for all
    // eight requests, started together, to arrive while the first fetch is
    // in flight, even on a loaded machine (40 ms per 64 KiB was not).
    origin.state().modes.throttle_ms.store(500, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let p = in_process(dir.path(), 1 << 30, Duration::from_secs(5));
    let v = versions("blog-home")[7].clone();
    origin.set_page("/co.html", &v);
    let url = origin.url("/co.html");
    let start = std::sync::Arc::new(std::sync::Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            let addr = p.addr;
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                raw_get(addr, &url, &[]).unwrap().body
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap() == v);
    }
    let n = origin.log().iter().filter(|l| l.path == "/co.html").count();
    assert_eq!(n, 1, "one upstream fetch for 8 concurrent requests");
}

#[test]
fn connect_is_tunnelled() {
    let origin = Origin::start_local(true);
    let dir = tempfile::tempdir().unwrap();
    let o = origin.addr();
    let timeout = Duration::from_secs(5);
    // CONNECT reaches only the allowed ports: allow the origin's.
    let cfg = ProxyConfig { timeout, connect_ports: vec![o.port()], ..Default::default() };
    let p = in_process_with(dir.path(), 1 << 30, timeout, cfg);
    let v = &versions("blog-home")[1];
    origin.set_page("/t.html", v);
    let mut s = TcpStream::connect(p.addr).unwrap();
    s.write_all(format!("CONNECT {o} HTTP/1.1\r\nHost: {o}\r\n\r\n").as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
    s.write_all(format!("GET /t.html HTTP/1.1\r\nHost: {o}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let r = parse_response(&all).unwrap();
    assert!(r.body == *v);
    assert!(r.header("x-hsync-cache").is_none(), "tunnelled, not proxied");
}

#[test]
fn lru_bound_respected_through_the_proxy() {
    let origin = Origin::start_local(true);
    let dir = tempfile::tempdir().unwrap();
    let max = 500_000;
    let p = in_process(dir.path(), max, Duration::from_secs(5));
    let vs = versions("blog-home");
    for i in 0..10 {
        let path = format!("/l{i}.html");
        origin.set_page(&path, &vs[i * 2]);
        assert!(raw_get(p.addr, &origin.url(&path), &[]).unwrap().body == vs[i * 2]);
        let s = status_json(p.addr);
        assert!(s["cache_bytes"].as_u64().unwrap() <= max);
    }
    let on_disk: u64 = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert!(on_disk <= max);
    assert!(p.fetcher.cache.get(&origin.url("/l9.html")).is_some());
    assert!(p.fetcher.cache.get(&origin.url("/l0.html")).is_none());
}

#[test]
fn curl_through_the_proxy() {
    if !std::path::Path::new("/usr/bin/curl").exists() {
        eprintln!("SKIPPED: /usr/bin/curl not installed");
        return;
    }
    let origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    let p = in_process(dir.path(), 1 << 30, Duration::from_secs(5));
    let vs = versions("blog-home");
    for v in vs.iter().skip(10).take(3) {
        origin.set_page("/curl.html", v);
        let out = std::process::Command::new("curl")
            .args(["-sS", "--compressed", "--noproxy", "", "-x", &format!("http://{}", p.addr), &origin.url("/curl.html")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stdout == *v);
    }
}

/// kill -9 of a proxy process while it is receiving (and writing) a large
/// response, at several moments: what is left on disk is always either
/// absent or a complete verified entry, and a restarted proxy serves the right bytes.
#[test]
fn kill_9_during_large_response_leaves_consistent_cache() {
    let origin = Origin::start_local(true);
    origin.set_cache_control("max-age=0");
    let dir = tempfile::tempdir().unwrap();
    // 24 MiB built from corpus pages, sent in 64 KiB pieces 3 ms apart (~1.2 s).
    let mut big = Vec::new();
    for v in versions("blog-home").iter().cycle() {
        if big.len() > 24 << 20 {
            break;
        }
        big.extend_from_slice(v);
    }
    origin.set_page("/big.html", &big);
    let url = origin.url("/big.html");
    origin.state().modes.throttle_ms.store(3, Ordering::SeqCst);
    let mut mid_download = 0;
    for (round, delay_ms) in [150u64, 600, 1100, 1250, 1400, 2500].into_iter().enumerate() {
        let (mut child, addr) = spawn_proxy_process(dir.path(), &["--timeout", "10"]);
        let u = url.clone();
        let client = std::thread::spawn(move || raw_get(addr, &u, &[]));
        std::thread::sleep(Duration::from_millis(delay_ms));
        let tmp_bytes: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
            .sum();
        if tmp_bytes > 0 {
            mid_download += 1;
        }
        // SIGKILL.
        child.kill().unwrap();
        child.wait().unwrap();
        let _ = client.join();
        eprintln!("round {round}: killed after {delay_ms} ms with {tmp_bytes} bytes in temporary files");
        // Whatever an entry file exists, it is complete and verified.
        let entry = dir.path().join(format!("{}.hse", hsync_client::cache::key_for(&url)));
        let cache = DiskCache::open(dir.path(), 1 << 30).unwrap();
        match cache.get(&url) {
            Some(e) => assert!(e.body[..] == big[..], "round {round}: a stored entry is the whole page"),
            None => assert!(!entry.exists(), "round {round}: an unusable entry was left on disk"),
        }
        assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".tmp")));
        drop(cache);
    }
    assert!(mid_download >= 1, "at least one kill landed while the entry was being written");
    // A restarted proxy serves the right bytes (from a delta or a full fetch).
    origin.state().modes.throttle_ms.store(0, Ordering::SeqCst);
    let (mut child, addr) = spawn_proxy_process(dir.path(), &[]);
    let r = raw_get(addr, &url, &[]).unwrap();
    assert!(r.body == big);
    child.kill().unwrap();
    child.wait().unwrap();
}
