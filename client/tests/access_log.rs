//! The proxy's log: access lines (one per request), warnings for unreachable
//! origins and stale copies, the level filter, and never a Cookie or
//! Authorization value.
mod common;

use common::*;
use hsync_client::log::{Level, Logger};
use hsync_client::proxy::{self, ProxyConfig};
use hsync_client::{DiskCache, FetchOptions, Fetcher};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The child-process proxy of `spawn_proxy_process` (a no-op in a normal run).
#[test]
fn proxy_child_main() {
    common::proxy_child_main();
}

struct P {
    addr: SocketAddr,
    log: Arc<Logger>,
    _h: tokio::task::JoinHandle<()>,
}

fn proxy_logging(dir: &std::path::Path, level: Level, connect_ports: Vec<u16>) -> P {
    let timeout = Duration::from_secs(1);
    let log = Arc::new(Logger::memory(level));
    let cache = Arc::new(DiskCache::open(dir, 1 << 30).unwrap());
    let fetcher = Arc::new(Fetcher::new(cache, FetchOptions { shared: true, timeout, ..Default::default() }));
    let cfg = ProxyConfig { timeout, connect_ports, log: log.clone(), ..Default::default() };
    let (addr, h) = rt().block_on(proxy::spawn("127.0.0.1:0", fetcher, cfg)).unwrap();
    P { addr, log, _h: h }
}

/// An access line's fields: time client method url status result wire delivered ms.
#[derive(Debug)]
struct Line {
    client: String,
    method: String,
    url: String,
    status: u16,
    result: String,
    wire: u64,
    delivered: u64,
}

fn parse(l: &str) -> Option<Line> {
    let f: Vec<&str> = l.split(' ').collect();
    if f.len() != 9 || matches!(f[1], "ERROR" | "WARN" | "INFO" | "DEBUG") {
        return None;
    }
    assert!(f[0].ends_with('Z') && f[0].contains('T'), "time: {l}");
    f[8].parse::<u64>().expect("milliseconds");
    Some(Line {
        client: f[1].into(),
        method: f[2].into(),
        url: f[3].into(),
        status: f[4].parse().unwrap(),
        result: f[5].into(),
        wire: f[6].parse().unwrap(),
        delivered: f[7].parse().unwrap(),
    })
}

/// Waits for the `n`th access line (written when the response body is dropped) and returns it.
fn access_line(log: &Logger, n: usize) -> Line {
    let t = Instant::now();
    loop {
        let lines: Vec<Line> = log.lines().iter().filter_map(|l| parse(l)).collect();
        if lines.len() > n {
            return lines.into_iter().nth(n).unwrap();
        }
        assert!(t.elapsed() < Duration::from_secs(10), "no access line {n}: {:?}", log.lines());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn miss_delta_hit_pass_and_connect_lines() {
    let origin = Origin::start_local(true);
    let dir = tempfile::tempdir().unwrap();
    let p = proxy_logging(dir.path(), Level::Info, vec![origin.addr().port()]);
    let vs = versions("blog-home");
    let url = origin.url("/a.html");
    origin.set_cache_control("max-age=0");
    origin.set_page("/a.html", &vs[0]);
    let r = raw_get(p.addr, &url, &[]).unwrap();
    assert_eq!(r.header("x-hsync-cache"), Some("MISS"));
    let l = access_line(&p.log, 0);
    assert_eq!(
        (l.client.as_str(), l.method.as_str(), l.url.as_str(), l.status, l.result.as_str()),
        ("127.0.0.1", "GET", url.as_str(), 200, "MISS")
    );
    assert_eq!(l.delivered, vs[0].len() as u64);
    assert!(l.wire > 0);

    // A new version: an hsync delta, far fewer bytes on the wire than delivered.
    origin.set_cache_control("max-age=300");
    origin.set_page("/a.html", &vs[1]);
    let r = raw_get(p.addr, &url, &[]).unwrap();
    assert_eq!(r.header("x-hsync-cache"), Some("DELTA"));
    let l = access_line(&p.log, 1);
    assert_eq!((l.status, l.result.as_str(), l.delivered), (200, "DELTA", vs[1].len() as u64));
    assert!(l.wire > 0 && l.wire * 5 < l.delivered, "{l:?}");

    // Fresh now: a hit, nothing on the wire.
    let r = raw_get(p.addr, &url, &[]).unwrap();
    assert_eq!(r.header("x-hsync-cache"), Some("HIT"));
    let l = access_line(&p.log, 2);
    assert_eq!((l.status, l.result.as_str(), l.wire, l.delivered), (200, "HIT", 0, vs[1].len() as u64));

    // A POST is passed through, its response counted as it streams.
    let o = origin.addr();
    let raw = format!("POST http://{o}/upload HTTP/1.1\r\nHost: {o}\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
    let r = raw_request(p.addr, &raw).unwrap();
    assert_eq!(r.status, 200);
    let l = access_line(&p.log, 3);
    assert_eq!((l.method.as_str(), l.status, l.result.as_str()), ("POST", 200, "PASS"));
    assert_eq!(l.url, format!("http://{o}/upload"));
    assert_eq!((l.wire, l.delivered), (r.body.len() as u64, r.body.len() as u64));

    // CONNECT: the line comes when the tunnel closes, with the bytes from the origin.
    let mut s = TcpStream::connect(p.addr).unwrap();
    s.write_all(format!("CONNECT {o} HTTP/1.1\r\nHost: {o}\r\n\r\n").as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    s.write_all(format!("GET /a.html HTTP/1.1\r\nHost: {o}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    drop(s);
    let l = access_line(&p.log, 4);
    assert_eq!((l.method.as_str(), l.url.as_str(), l.status, l.result.as_str()), ("CONNECT", o.to_string().as_str(), 200, "PASS"));
    assert_eq!((l.wire, l.delivered), (all.len() as u64, all.len() as u64));

    // A CONNECT to a port not allowed: refused by the proxy itself.
    let r = raw_request(p.addr, "CONNECT example.org:25 HTTP/1.1\r\nHost: example.org:25\r\nConnection: close\r\n\r\n").unwrap();
    assert_eq!(r.status, 403);
    let l = access_line(&p.log, 5);
    assert_eq!((l.status, l.result.as_str(), l.wire), (403, "NONE", 0));
    // No warnings on the way.
    assert!(!p.log.lines().iter().any(|l| l.contains(" WARN ")), "{:?}", p.log.lines());
    eprintln!("{}", p.log.lines().join("\n"));
}

#[test]
fn origin_down_stale_line_and_warnings() {
    let mut origin = Origin::start_local(true);
    origin.set_cache_control("max-age=0");
    let dir = tempfile::tempdir().unwrap();
    let p = proxy_logging(dir.path(), Level::Info, vec![443]);
    let page = &versions("atom-feed")[1];
    origin.set_page("/f.xml", page);
    let url = origin.url("/f.xml");
    assert_eq!(raw_get(p.addr, &url, &[]).unwrap().status, 200);
    access_line(&p.log, 0);
    origin.stop();
    let r = raw_get(p.addr, &url, &[]).unwrap();
    assert_eq!(r.header("x-hsync-cache"), Some("STALE"));
    let l = access_line(&p.log, 1);
    assert_eq!((l.status, l.result.as_str(), l.wire, l.delivered), (200, "STALE", 0, page.len() as u64));
    let lines = p.log.lines();
    let warn = lines.iter().find(|l| l.contains(" WARN ")).expect("a warning");
    assert!(warn.contains("origin unreachable, serving the stale copy from ") && warn.contains(&url), "{warn}");
    // Nothing cached: the 502 gets a MISS line and its own warning.
    let other = origin.url("/never.html");
    assert_eq!(raw_get(p.addr, &other, &[]).unwrap().status, 502);
    let l = access_line(&p.log, 2);
    assert_eq!((l.status, l.result.as_str(), l.wire), (502, "MISS", 0));
    assert!(p.log.lines().iter().any(|l| l.contains(" WARN origin unreachable, no copy to serve: ") && l.contains(&other)));
    // A forwarded request to the dead origin: a warning too.
    let o = origin.addr();
    let r = raw_request(p.addr, &format!("POST http://{o}/upload HTTP/1.1\r\nHost: {o}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
        .unwrap();
    assert_eq!(r.status, 502);
    let l = access_line(&p.log, 3);
    assert_eq!((l.method.as_str(), l.status, l.result.as_str(), l.wire), ("POST", 502, "PASS", 0));
    assert!(p.log.lines().iter().any(|l| l.contains(&format!(" WARN origin unreachable: POST http://{o}/upload: "))));
    eprintln!("{}", p.log.lines().join("\n"));
}

#[test]
fn level_filters_lines() {
    for (level, access, warn) in
        [(Level::Debug, true, true), (Level::Info, true, true), (Level::Warn, false, true), (Level::Error, false, false)]
    {
        let mut origin = Origin::start_local(true);
        origin.set_cache_control("max-age=0");
        let dir = tempfile::tempdir().unwrap();
        let p = proxy_logging(dir.path(), level, vec![443]);
        origin.set_page("/x.html", &versions("blog-home")[0]);
        let url = origin.url("/x.html");
        assert_eq!(raw_get(p.addr, &url, &[]).unwrap().status, 200);
        origin.stop();
        assert_eq!(raw_get(p.addr, &url, &[]).unwrap().header("x-hsync-cache"), Some("STALE"));
        // Lines are written when the response is done: give them the time.
        std::thread::sleep(Duration::from_millis(200));
        let lines = p.log.lines();
        assert_eq!(lines.iter().filter(|l| parse(l).is_some()).count(), if access { 2 } else { 0 }, "{level:?}: {lines:?}");
        assert_eq!(lines.iter().filter(|l| l.contains(" WARN ")).count(), usize::from(warn), "{level:?}: {lines:?}");
    }
}

#[test]
fn no_cookie_or_authorization_in_any_line() {
    let mut origin = Origin::start_local(true);
    origin.set_cache_control("max-age=0");
    let dir = tempfile::tempdir().unwrap();
    let p = proxy_logging(dir.path(), Level::Debug, vec![443]);
    origin.set_page("/p.html", &versions("blog-home")[0]);
    let url = origin.url("/p.html");
    let secrets = [("Cookie", "session=SECRETCOOKIE42"), ("Authorization", "Bearer SECRETTOKEN42")];
    assert_eq!(raw_get(p.addr, &url, &secrets).unwrap().status, 200);
    assert_eq!(raw_get(p.addr, &url, &[secrets[0]]).unwrap().status, 200);
    let o = origin.addr();
    let post = format!(
        "POST http://{o}/upload HTTP/1.1\r\nHost: {o}\r\nCookie: session=SECRETCOOKIE42\r\nAuthorization: Basic U0VDUkVUQkFTSUM=\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(raw_request(p.addr, &post).unwrap().status, 200);
    // Credentials in the URL are not logged either.
    let with_user = format!("http://alice:SECRETPASS42@{o}/p.html");
    raw_get(p.addr, &with_user, &secrets).unwrap();
    origin.stop();
    raw_get(p.addr, &url, &secrets).unwrap();
    raw_request(p.addr, &post).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let lines = p.log.lines();
    assert!(lines.iter().filter(|l| parse(l).is_some()).count() >= 5, "{lines:?}");
    assert!(lines.iter().any(|l| l.contains(" WARN ")));
    for l in &lines {
        for s in ["SECRETCOOKIE42", "SECRETTOKEN42", "U0VDUkVUQkFTSUM", "SECRETPASS42", "alice"] {
            assert!(!l.contains(s), "{s} in {l}");
        }
    }
}

/// `hsync proxy --access-log FILE --log-level LEVEL`, in a process.
#[test]
fn access_log_file_and_level_flag() {
    let origin = Origin::start_local(true);
    origin.set_page("/z.html", &versions("blog-home")[0]);
    let url = origin.url("/z.html");
    for (level, want) in [("info", 1), ("warn", 0)] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("access.log");
        let cache = dir.path().join("cache");
        let (mut child, addr) = spawn_proxy_process(&cache, &["--access-log", file.to_str().unwrap(), "--log-level", level]);
        let r = raw_get(addr, &url, &[]);
        std::thread::sleep(Duration::from_millis(300));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(r.unwrap().status, 200);
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), want, "{level}: {text:?}");
        if want == 1 {
            let l = parse(lines[0]).unwrap();
            assert_eq!((l.method.as_str(), l.url.as_str(), l.status, l.result.as_str()), ("GET", url.as_str(), 200, "MISS"));
        }
    }
}
