//! A shared proxy never hands one user's bytes to another: coalescing, Vary,
//! Set-Cookie, the stale fallback and the delta base; plus the status page
//! against DNS rebinding, CONNECT ports, streamed forwarding and the bound
//! on what a delta may rebuild.
mod common;

use common::*;
use hsync_client::proxy::{self, ProxyConfig};
use hsync_client::{DiskCache, FetchOptions, Fetcher};
use http::HeaderMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

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

fn proxy_with(dir: &std::path::Path, opts: FetchOptions, cfg: ProxyConfig) -> InProc {
    let cache = Arc::new(DiskCache::open(dir, 1 << 30).unwrap());
    let fetcher = Arc::new(Fetcher::new(cache, opts));
    let (addr, h) = rt().block_on(proxy::spawn("127.0.0.1:0", fetcher.clone(), cfg)).unwrap();
    InProc { addr, fetcher, _h: h }
}

/// The default mode: a cache shared by several users.
fn shared_proxy(dir: &std::path::Path, timeout: Duration) -> InProc {
    proxy_with(dir, FetchOptions { shared: true, timeout, ..Default::default() }, ProxyConfig { timeout, ..Default::default() })
}

/// `--cache-private`: a cache for one user.
fn private_proxy(dir: &std::path::Path, timeout: Duration) -> InProc {
    proxy_with(dir, FetchOptions { shared: false, timeout, ..Default::default() }, ProxyConfig { timeout, ..Default::default() })
}

const A: &str = "session=a";

fn marker_a() -> String {
    personal_marker(Some(A))
}

fn marker_anon() -> String {
    personal_marker(None)
}

fn starts(body: &[u8], marker: &str) -> bool {
    body.starts_with(marker.as_bytes())
}

fn contains(hay: &[u8], needle: &str) -> bool {
    let n = needle.as_bytes();
    hay.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

fn upstream_count(origin: &Origin, path: &str) -> usize {
    origin.log().iter().filter(|l| l.path == path).count()
}

/// A (with a session cookie) and B (without) ask for the same page at the same
/// moment, 20 times, for a personal page (`private, no-store`, `Vary: Cookie`,
/// Set-Cookie) and two public ones varying on Cookie: each gets its own page,
/// B never gets A's Set-Cookie, and for the personal page the origin sees both requests.
#[test]
fn two_users_at_once_never_get_each_others_page() {
    let origin = Origin::start_local(true);
    let st = origin.state();
    st.modes.personalize.store(true, Ordering::SeqCst);
    st.modes.delay_ms.store(120, Ordering::SeqCst);
    origin.set_extra_headers(&[("vary", "Cookie")]);
    let dir = tempfile::tempdir().unwrap();
    let p = shared_proxy(dir.path(), Duration::from_secs(5));
    let page = versions("blog-home")[3].clone();
    for (i, (cc, set_cookie)) in
        [("private, no-store", true), ("public, max-age=60", true), ("public, max-age=60", false)].into_iter().enumerate()
    {
        origin.set_cache_control(cc);
        st.modes.set_cookie.store(set_cookie, Ordering::SeqCst);
        let path = format!("/users{i}.html");
        origin.set_page(&path, &page);
        let url = origin.url(&path);
        for round in 0..20 {
            let before = upstream_count(&origin, &path);
            // Either one may be first (the one whose fetch the other could wait for).
            let first_a = round % 2 == 0;
            let spawn = |cookie: Option<&'static str>| {
                let (url, addr) = (url.clone(), p.addr);
                std::thread::spawn(move || {
                    let extra: Vec<(&str, &str)> = cookie.map(|c| ("Cookie", c)).into_iter().collect();
                    raw_get(addr, &url, &extra).unwrap()
                })
            };
            let (first, second) = if first_a { (Some(A), None) } else { (None, Some(A)) };
            let t1 = spawn(first);
            std::thread::sleep(Duration::from_millis(30));
            let t2 = spawn(second);
            let (r1, r2) = (t1.join().unwrap(), t2.join().unwrap());
            let (a, b) = if first_a { (r1, r2) } else { (r2, r1) };
            let ctx = format!("{cc} (set-cookie {set_cookie}), round {round}");
            assert_eq!((a.status, b.status), (200, 200), "{ctx}");
            assert!(starts(&a.body, &marker_a()) && a.body[marker_a().len()..] == page[..], "{ctx}: A got someone else's page");
            assert!(starts(&b.body, &marker_anon()) && b.body[marker_anon().len()..] == page[..], "{ctx}: B got someone else's page");
            assert!(b.header("set-cookie").is_none(), "{ctx}: B got a Set-Cookie: {:?}", b.header("set-cookie"));
            if set_cookie {
                assert_eq!(a.header("set-cookie"), Some(renewed_cookie(A).as_str()), "{ctx}: A's own Set-Cookie");
            }
            if i == 0 {
                assert_eq!(upstream_count(&origin, &path) - before, 2, "{ctx}: the origin saw both requests");
            }
        }
    }
}

/// Ordinary public pages still share one upstream fetch, also when they vary
/// on a field the requests agree on; requests that differ on it do not share.
#[test]
fn coalescing_follows_vary() {
    let origin = Origin::start_local(true);
    origin.state().modes.delay_ms.store(300, Ordering::SeqCst);
    origin.set_cache_control("max-age=0");
    origin.set_extra_headers(&[("vary", "Accept-Language")]);
    let dir = tempfile::tempdir().unwrap();
    let p = shared_proxy(dir.path(), Duration::from_secs(5));
    let v = versions("blog-home")[5].clone();
    origin.set_page("/lang.html", &v);
    let url = origin.url("/lang.html");
    let run = |langs: &[&'static str]| {
        let threads: Vec<_> = langs
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let (url, addr, l) = (url.clone(), p.addr, *l);
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20 * i as u64));
                    raw_get(addr, &url, &[("Accept-Language", l)]).unwrap()
                })
            })
            .collect();
        for t in threads {
            let r = t.join().unwrap();
            assert_eq!(r.status, 200);
            assert!(r.body == v);
        }
    };
    // Nothing stored yet: the response's Vary decides; all agree, so one fetch.
    run(&["en", "en", "en", "en"]);
    assert_eq!(upstream_count(&origin, "/lang.html"), 1, "one upstream fetch for 4 identical requests");
    // Stored with Vary: Accept-Language: the French ones do not wait for the English fetch.
    let before = upstream_count(&origin, "/lang.html");
    run(&["en", "en", "fr", "fr"]);
    let n = upstream_count(&origin, "/lang.html") - before;
    assert!((2..=3).contains(&n), "en shared, fr fetched apart: {n} upstream requests");
}

/// The origin is gone: B does not get A's stored variant; A does (stale, with
/// the Warning) unless the request asks for a validated answer; and a
/// response that forbids serving stale is never served stale.
#[test]
fn stale_fallback_obeys_vary_and_revalidation_directives() {
    let mut origin = Origin::start_local(true);
    origin.state().modes.personalize.store(true, Ordering::SeqCst);
    origin.set_extra_headers(&[("vary", "Cookie")]);
    origin.set_cache_control("max-age=0");
    let page = versions("blog-home")[4].clone();
    origin.set_page("/me.html", &page);
    let url = origin.url("/me.html");
    let dir = tempfile::tempdir().unwrap();
    let p = shared_proxy(dir.path(), Duration::from_secs(1));
    let a = raw_get(p.addr, &url, &[("Cookie", A)]).unwrap();
    assert_eq!(a.status, 200);
    assert!(starts(&a.body, &marker_a()));
    assert!(p.fetcher.cache.get(&url).is_some(), "A's variant stored");
    origin.stop();

    let b = raw_get(p.addr, &url, &[]).unwrap();
    assert!(matches!(b.status, 502 | 504), "B got {} instead of an error", b.status);
    assert!(!contains(&b.body, A), "B got A's page");
    let b2 = raw_get(p.addr, &url, &[("Cookie", "session=b")]).unwrap();
    assert!(matches!(b2.status, 502 | 504) && !contains(&b2.body, A), "another user got A's page");

    let a = raw_get(p.addr, &url, &[("Cookie", A)]).unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-hsync-cache"), Some("STALE"));
    assert_eq!(a.header("warning"), Some("111 - \"Revalidation Failed\""));
    assert!(starts(&a.body, &marker_a()));

    for (k, v) in
        [("Cache-Control", "no-cache"), ("Cache-Control", "no-store"), ("Pragma", "no-cache"), ("Cache-Control", "max-age=0, no-cache")]
    {
        let r = raw_get(p.addr, &url, &[("Cookie", A), (k, v)]).unwrap();
        assert!(matches!(r.status, 502 | 504), "request {k}: {v} got a stale copy ({})", r.status);
    }

    // Responses that must be revalidated are never served stale.
    for cc in ["max-age=0, must-revalidate", "no-cache", "max-age=60, no-cache", "max-age=0, proxy-revalidate", "s-maxage=0"] {
        let mut origin = Origin::start_local(true);
        origin.set_cache_control(cc);
        origin.set_page("/strict.html", &page);
        let url = origin.url("/strict.html");
        let r = raw_get(p.addr, &url, &[]).unwrap();
        assert_eq!(r.status, 200);
        assert!(p.fetcher.cache.get(&url).is_some(), "{cc}: stored");
        origin.stop();
        let r = raw_get(p.addr, &url, &[]).unwrap();
        assert!(matches!(r.status, 502 | 504), "{cc}: served stale ({})", r.status);
        assert!(r.header("warning").is_none());
    }
}

/// A's variant is never the base of B's request: no signature of it, none of its validators.
#[test]
fn another_users_variant_is_not_a_delta_base() {
    let origin = Origin::start_local(true);
    origin.state().modes.personalize.store(true, Ordering::SeqCst);
    origin.set_extra_headers(&[("vary", "Cookie")]);
    origin.set_cache_control("max-age=0");
    let vs = versions("blog-home");
    origin.set_page("/d.html", &vs[0]);
    let url = origin.url("/d.html");
    let dir = tempfile::tempdir().unwrap();
    let p = shared_proxy(dir.path(), Duration::from_secs(5));
    assert_eq!(raw_get(p.addr, &url, &[("Cookie", A)]).unwrap().status, 200);
    // A's own variant is A's base.
    origin.set_page("/d.html", &vs[1]);
    let a = raw_get(p.addr, &url, &[("Cookie", A)]).unwrap();
    assert!(starts(&a.body, &marker_a()) && a.body[marker_a().len()..] == vs[1][..]);
    let l = origin.last();
    assert!(l.signature && l.if_none_match.is_some(), "A revalidates its own copy: {l:?}");
    // B's request carries nothing of A's entry.
    let b = raw_get(p.addr, &url, &[]).unwrap();
    assert!(starts(&b.body, &marker_anon()) && b.body[marker_anon().len()..] == vs[1][..]);
    let l = origin.last();
    assert_eq!(l.cookie, None);
    assert!(!l.signature, "B's request carried the signature of A's page");
    assert!(l.if_none_match.is_none(), "B's request carried A's validators: {:?}", l.if_none_match);
    assert_eq!(b.header("x-hsync-cache"), Some("MISS"));
}

/// Set-Cookie is never stored nor replayed: a shared proxy does not store
/// such a response at all; a one-user proxy stores it without the header
/// (and without the request's cookie).
#[test]
fn set_cookie_is_never_stored() {
    let origin = Origin::start_local(true);
    let st = origin.state();
    st.modes.set_cookie.store(true, Ordering::SeqCst);
    st.modes.personalize.store(true, Ordering::SeqCst);
    let page = versions("atom-feed")[2].clone();

    // Shared: not stored.
    origin.set_cache_control("public, max-age=60");
    origin.set_page("/s.xml", &page);
    let url = origin.url("/s.xml");
    let dir = tempfile::tempdir().unwrap();
    let p = shared_proxy(dir.path(), Duration::from_secs(5));
    let r = raw_get(p.addr, &url, &[("Cookie", A)]).unwrap();
    assert_eq!(r.header("set-cookie"), Some(renewed_cookie(A).as_str()), "the live response keeps it");
    assert!(p.fetcher.cache.get(&url).is_none(), "a shared cache stored a response with Set-Cookie");
    let r = raw_get(p.addr, &url, &[]).unwrap();
    assert!(r.header("set-cookie").is_none() && starts(&r.body, &marker_anon()));

    // One user (--cache-private): stored without Set-Cookie, and served from the cache without it.
    origin.set_cache_control("private, max-age=60");
    origin.set_extra_headers(&[("vary", "Cookie")]);
    origin.set_page("/p.xml", &page);
    let url = origin.url("/p.xml");
    let dir = tempfile::tempdir().unwrap();
    let p = private_proxy(dir.path(), Duration::from_secs(5));
    let r = raw_get(p.addr, &url, &[("Cookie", A)]).unwrap();
    assert_eq!(r.header("set-cookie"), Some(renewed_cookie(A).as_str()), "the live response keeps it");
    let e = p.fetcher.cache.get(&url).expect("stored by a one-user proxy");
    assert!(e.meta.headers.iter().all(|(k, _)| !k.eq_ignore_ascii_case("set-cookie")), "stored headers: {:?}", e.meta.headers);
    // Past the body (which is A's page, marker included): the stored metadata and policy.
    let file = std::fs::read(p.fetcher.cache.path_for(&url)).unwrap();
    let meta = &file[e.meta.body_len as usize..];
    for secret in ["set-cookie", "renewed=", A] {
        assert!(!contains(meta, secret), "{secret:?} written to the cache file");
    }
    let r = raw_get(p.addr, &url, &[("Cookie", A)]).unwrap();
    assert_eq!(r.header("x-hsync-cache"), Some("HIT"));
    assert!(r.header("set-cookie").is_none(), "Set-Cookie replayed from the cache");
    assert!(starts(&r.body, &marker_a()));
    // Another cookie does not match the stored variant.
    let n = origin.requests();
    let r = raw_get(p.addr, &url, &[("Cookie", "session=b")]).unwrap();
    assert!(starts(&r.body, &personal_marker(Some("session=b"))));
    assert_eq!(origin.requests(), n + 1);
}

/// An entry stored by a one-user proxy is not used by a shared proxy on the same directory.
#[test]
fn shared_proxy_ignores_entries_of_a_one_user_proxy() {
    let origin = Origin::start_local(true);
    origin.state().modes.personalize.store(true, Ordering::SeqCst);
    origin.set_cache_control("private, max-age=600");
    origin.set_page("/mine.html", &versions("blog-home")[1]);
    let url = origin.url("/mine.html");
    let dir = tempfile::tempdir().unwrap();
    {
        let p = private_proxy(dir.path(), Duration::from_secs(5));
        assert!(starts(&raw_get(p.addr, &url, &[("Cookie", A)]).unwrap().body, &marker_a()));
        assert!(p.fetcher.cache.get(&url).is_some());
    }
    let p = shared_proxy(dir.path(), Duration::from_secs(5));
    let r = raw_get(p.addr, &url, &[]).unwrap();
    assert_eq!(r.header("x-hsync-cache"), Some("MISS"));
    assert!(starts(&r.body, &marker_anon()));
}

fn origin_form(addr: SocketAddr, path: &str, host: &str) -> RawResponse {
    raw_request(addr, &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")).unwrap()
}

/// DNS rebinding: a page whose name resolves to the proxy sends its own Host; it gets no status page.
#[test]
fn status_page_only_for_its_own_names() {
    let origin = Origin::start_local(true);
    origin.set_page("/secret-history.html", &versions("blog-home")[0]);
    let dir = tempfile::tempdir().unwrap();
    let p = shared_proxy(dir.path(), Duration::from_secs(5));
    raw_get(p.addr, &origin.url("/secret-history.html"), &[]).unwrap();
    let port = p.addr.port();
    for host in [
        format!("evil.example:{port}"),
        "evil.example".into(),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
        "127.0.0.1.evil.example".into(),
    ] {
        for path in ["/status.json", "/"] {
            let r = origin_form(p.addr, path, &host);
            assert!(matches!(r.status, 400 | 403), "Host {host} {path}: {}", r.status);
            assert!(!contains(&r.body, "secret-history") && !r.body.starts_with(b"{") && !contains(&r.body, "<html"), "Host {host} {path}");
        }
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        format!("127.8.9.10:{port}"),
        "hsync.proxy".into(),
    ] {
        let r = origin_form(p.addr, "/status.json", &host);
        assert_eq!(r.status, 200, "Host {host}");
        assert_eq!(r.header("cache-control"), Some("no-store"));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert!(v["entries"].to_string().contains("secret-history"));
    }
    // Through the proxy (absolute form).
    let r = raw_get(p.addr, "http://hsync.proxy/status.json", &[]).unwrap();
    assert_eq!(r.status, 200);
    assert!(serde_json::from_slice::<serde_json::Value>(&r.body).is_ok());
}

/// A local IPv4 address other than loopback, if the machine has one (no
/// packet is sent: connecting a UDP socket only picks the route).
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("10.255.255.255:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// Which URLs are cached is the browsing history of a shared proxy's users:
/// the status page lists them to the proxy's own machine only (a client on
/// another address gets the totals), and always in the one-user mode.
#[test]
fn a_shared_proxy_lists_cached_urls_to_its_own_machine_only() {
    let Some(ip) = non_loopback_ip() else {
        eprintln!("SKIPPED: this machine has no address but loopback");
        return;
    };
    let origin = Origin::start_local(true);
    origin.set_page("/someones-history.html", &versions("blog-home")[0]);
    for shared in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(DiskCache::open(dir.path(), 1 << 30).unwrap());
        let fetcher = Arc::new(Fetcher::new(cache, FetchOptions { shared, ..Default::default() }));
        let (addr, _h) = rt().block_on(proxy::spawn("0.0.0.0:0", fetcher, ProxyConfig::default())).unwrap();
        let local = SocketAddr::from(([127, 0, 0, 1], addr.port()));
        let remote = SocketAddr::new(ip, addr.port());
        raw_get(local, &origin.url("/someones-history.html"), &[]).unwrap();
        for (who, at) in [("loopback", local), ("another address", remote)] {
            let listed = !shared || at == local;
            let r = raw_get(at, "http://hsync.proxy/status.json", &[]).unwrap();
            assert_eq!(r.status, 200, "{who}");
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["entry_count"].as_u64(), Some(1), "{who}: totals for everyone");
            assert_eq!(v["entries"].to_string().contains("someones-history"), listed, "shared {shared}, {who}: {v}");
            let page = raw_get(at, "http://hsync.proxy/", &[]).unwrap();
            assert_eq!(contains(&page.body, "someones-history"), listed, "shared {shared}, {who}: the HTML page");
        }
    }
}

/// CONNECT reaches only the allowed ports (443 by default).
#[test]
fn connect_to_a_port_not_allowed_is_refused() {
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    target.set_nonblocking(true).unwrap();
    let t = target.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = shared_proxy(dir.path(), Duration::from_secs(5));
    let mut s = TcpStream::connect(p.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("CONNECT {t} HTTP/1.1\r\nHost: {t}\r\n\r\n").as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 403"), "{}", String::from_utf8_lossy(&head));
    std::thread::sleep(Duration::from_millis(200));
    match target.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the proxy connected to port {}: {other:?}", t.port()),
    }
}

fn vm_hwm_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Deterministic filler for large bodies.
fn filler(i: usize, buf: &mut [u8]) {
    for (j, b) in buf.iter_mut().enumerate() {
        *b = ((i * 7919 + j * 31) ^ (j >> 7)) as u8;
    }
}

/// A 50 MB upload and a 50 MB download pass through a proxy process without
/// its memory growing by anything like the body size.
#[test]
fn forwarded_bodies_are_streamed() {
    const N: usize = 50 << 20;
    const CHUNK: usize = 64 << 10;
    let origin = Origin::start_local(false);
    let mut big = vec![0u8; N];
    for (i, c) in big.chunks_mut(CHUNK).enumerate() {
        filler(i, c);
    }
    origin.set_page("/big.bin", &big);
    let want = format!("received {N} {:016x}\n", hsync_core::hash::xxh3_64(&big));
    let big_digest = hsync_core::hash::xxh3_64(&big);
    drop(big);
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn_proxy_process(dir.path(), &[]);
    let pid = child.id();
    let post_head = |len: usize| {
        format!("POST {} HTTP/1.1\r\nHost: {}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n", origin.url("/upload"), origin.addr())
    };
    // Warm up (a small upload), then measure.
    let r = raw_request(addr, &format!("{}hello", post_head(5))).unwrap();
    assert_eq!(r.status, 200);
    let before = vm_hwm_kb(pid);

    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(post_head(N).as_bytes()).unwrap();
    let mut chunk = vec![0u8; CHUNK];
    for i in 0..N / CHUNK {
        filler(i, &mut chunk);
        s.write_all(&chunk).unwrap();
    }
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let r = parse_response(&all).unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(String::from_utf8_lossy(&r.body), want);
    let after_upload = vm_hwm_kb(pid);

    // A Range request is forwarded, not cached: the whole 50 MB file comes back through it.
    let r = raw_get(addr, &origin.url("/big.bin"), &[("Range", "bytes=0-")]).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.header("x-hsync-cache").is_none(), "forwarded, not cached");
    assert_eq!(r.body.len(), N);
    assert_eq!(hsync_core::hash::xxh3_64(&r.body), big_digest);
    let after_download = vm_hwm_kb(pid);
    child.kill().unwrap();
    child.wait().unwrap();
    eprintln!("proxy VmHWM: {before} kB, after the upload {after_upload} kB, after the download {after_download} kB");
    let limit = 16 << 10; // kB: a third of the body
    assert!(after_upload - before < limit, "upload held in memory: {before} -> {after_upload} kB");
    assert!(after_download - before < limit, "download held in memory: {before} -> {after_download} kB");
}

/// Request bodies over `max_body` are refused (413) and never reach the origin whole.
#[test]
fn forwarded_request_body_over_the_limit_is_refused() {
    let origin = Origin::start_local(false);
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_secs(5);
    let max = 1usize << 20;
    let p = proxy_with(
        dir.path(),
        FetchOptions { shared: true, timeout, max_body: max as u64, ..Default::default() },
        ProxyConfig { timeout, ..Default::default() },
    );
    let upload = origin.url("/upload");
    let host = origin.addr();
    // Declared too large: refused before any of it is read.
    let mut s = TcpStream::connect(p.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("POST {upload} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", 2 * max).as_bytes())
        .unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let r = parse_response(&all).expect("an answer before the body was sent");
    assert_eq!(r.status, 413);

    // Chunked, so the size is found out while streaming.
    let chunked = |total: usize| {
        let mut s = TcpStream::connect(p.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut w = s.try_clone().unwrap();
        let head = format!("POST {upload} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
        let writer = std::thread::spawn(move || {
            let chunk = vec![b'x'; 16 << 10];
            let mut sent = 0;
            let _ = w.write_all(head.as_bytes());
            while sent < total {
                let n = chunk.len().min(total - sent);
                if w.write_all(format!("{n:x}\r\n").as_bytes())
                    .and_then(|_| w.write_all(&chunk[..n]))
                    .and_then(|_| w.write_all(b"\r\n"))
                    .is_err()
                {
                    return;
                }
                sent += n;
            }
            let _ = w.write_all(b"0\r\n\r\n");
        });
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        writer.join().unwrap();
        parse_response(&all).ok()
    };
    let r = chunked(3 * max);
    // A refusal may also arrive as a reset connection; it is never a success.
    assert!(r.as_ref().is_none_or(|r| r.status == 413), "{:?}", r.map(|r| r.status));
    assert!(origin.log().iter().all(|l| l.path != "/upload"), "the origin got the whole over-limit body");
    // Under the limit it goes through.
    let r = chunked(max / 2).expect("an answer");
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).starts_with(&format!("received {} ", max / 2)));
}

/// A delta that would rebuild a page over `max_body` is refused (and so is the page itself).
#[test]
fn delta_cannot_rebuild_more_than_max_body() {
    let origin = Origin::start_local(true);
    let dir = tempfile::tempdir().unwrap();
    let max = 100_000u64;
    let cache = Arc::new(DiskCache::open(dir.path(), 1 << 30).unwrap());
    let f = Fetcher::new(cache, FetchOptions { timeout: Duration::from_secs(5), max_body: max, ..Default::default() });
    let v1 = versions("blog-home")[0][..60_000].to_vec();
    let v2 = [&v1[..], &v1[..], &v1[..]].concat();
    origin.set_page("/grow.html", &v1);
    let url: http::Uri = origin.url("/grow.html").parse().unwrap();
    let o = rt().block_on(f.fetch(&url, &HeaderMap::new(), None)).unwrap();
    assert!(o.body[..] == v1[..]);
    origin.set_page("/grow.html", &v2);
    let before = origin.requests();
    let res = rt().block_on(f.fetch(&url, &HeaderMap::new(), None));
    let log = origin.log();
    assert_eq!(log[before].content_encoding.as_deref(), Some("hsync"), "the origin sent a delta");
    assert!(log[before].body_bytes < 10_000);
    match res {
        Ok(o) => panic!("a {}-byte page accepted with max_body {max} ({:?})", o.body.len(), o.source),
        Err(e) => assert!(e.message.contains("limit"), "{e}"),
    }
}
