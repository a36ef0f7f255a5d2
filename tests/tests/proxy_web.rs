//! `hsync proxy` (the binary) for the web as people browse it (issue 17),
//! with real components: curl through the proxy, to nginx and Apache with
//! the hsync module, which pass `/proxy/` to a settable loopback origin
//! ([`hsync_tests::origin::Origin`]: slow answers, redirects, removed pages).
//!
//! * a slow origin: `--optimistic 200` answers the stored copy at once
//!   (Warning 110, Age, the notice), the revalidation (a delta through the
//!   module) finishes behind it, and the next load is current;
//! * a page that moved (301, 308): the redirect as sent, the page fetched at
//!   its new address with a delta against the old copy, a notice there once;
//! * a page removed (404, 410): the origin's answer with a link to the copy,
//!   which the proxy serves with its notice;
//! * a page whose image changed but whose HTML did not: revalidating the page
//!   revalidates the image, which is then a HIT with the new bytes, and the
//!   status page says it changed.
//!
//! Needs the `hsync` binary (`cargo build --release -p hsync`, or `HSYNC_BIN`)
//! and curl; `HSYNC_SKIP_SERVER_TESTS` skips servers as elsewhere.

use hsync_tests::origin::Origin;
use hsync_tests::proxy::HsyncProxy;
use hsync_tests::{corpus, start, temp_dir, Options, ServerKind};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HTML: &str = "Content-Type: text/html; charset=utf-8";

fn blog(n: usize) -> Vec<u8> {
    std::fs::read(corpus().join(format!("blog-home/{n:03}.html"))).unwrap()
}

/// `hsync proxy` as a child process; killed on drop. Its stderr (access lines) is kept.
struct Proxy {
    p: HsyncProxy,
    addr: SocketAddr,
    cache: PathBuf,
}

impl Proxy {
    fn start(extra: &[&str]) -> Proxy {
        let cache = temp_dir("web-proxy");
        let mut args = vec!["--timeout".into(), "10".into(), "--cache".into(), cache.clone().into_os_string()];
        args.extend(extra.iter().map(std::ffi::OsString::from));
        let p = HsyncProxy::start(args);
        Proxy { addr: p.addr, p, cache }
    }

    /// The access lines whose result is `word`.
    fn lines(&self, word: &str) -> Vec<String> {
        self.p.stderr().lines().filter(|l| l.split(' ').nth(5) == Some(word)).map(String::from).collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if std::env::var_os("HSYNC_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.cache);
        }
    }
}

#[derive(Debug)]
struct Curl {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Seconds to the first byte of the answer.
    ttfb: f64,
}

impl Curl {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `curl -x http://PROXY URL` (no redirects followed).
fn curl(p: &Proxy, url: &str) -> Curl {
    let dir = temp_dir("web-curl");
    let (head, body) = (dir.join("head"), dir.join("body"));
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-H", "Accept-Encoding: gzip, deflate", "-w", "%{time_starttransfer}", "-x"])
        .arg(format!("http://{}", p.addr))
        .arg("-D")
        .arg(&head)
        .arg("-o")
        .arg(&body)
        .arg(url)
        .env_remove("no_proxy")
        .env_remove("NO_PROXY")
        .stdin(Stdio::null())
        .output()
        .expect("curl");
    assert!(o.status.success(), "curl {url}: {}\n{}", o.status, String::from_utf8_lossy(&o.stderr));
    let head = std::fs::read_to_string(&head).unwrap();
    let body = std::fs::read(&body).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap();
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    Curl { status, headers, body, ttfb: String::from_utf8_lossy(&o.stdout).trim().parse().unwrap_or(f64::NAN) }
}

/// The page without what the proxy inserted after `<body ...>`.
fn without_notice(body: &[u8]) -> Vec<u8> {
    let mut s = String::from_utf8_lossy(body).into_owned();
    while let Some(i) = s.find("<div id=\"hsync-") {
        let j = s[i..].find("</div>").unwrap() + i + 6;
        s.replace_range(i..j, "");
    }
    s.into_bytes()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn server(kind: ServerKind, origin: &Origin, tag: &str) -> Option<(hsync_tests::RunningServer, PathBuf)> {
    let docroot = temp_dir(tag);
    let s = start(kind, &Options { upstream: Some(origin.addr), ..Options::new(&docroot) })?;
    Some((s, docroot))
}

fn optimistic_on_a_slow_origin(kind: ServerKind) {
    let origin = Origin::start();
    let Some((s, docroot)) = server(kind, &origin, "web-slow") else { return };
    let p = Proxy::start(&["--optimistic", "200"]);
    let url = format!("http://127.0.0.1:{}/proxy/slow.html", s.port);
    origin.set("/slow.html", &[HTML, "Cache-Control: max-age=0"], &blog(26));
    assert_eq!(curl(&p, &url).header("x-hsync-cache"), Some("MISS"));

    origin.set("/slow.html", &[HTML, "Cache-Control: max-age=60"], &blog(27));
    origin.set_delay(2000);
    let r = curl(&p, &url);
    eprintln!("{}: first byte after {:.3} s with --optimistic 200 and a 2 s origin", kind.name(), r.ttfb);
    assert!(r.ttfb < 1.0, "first byte after {} s", r.ttfb);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-hsync-cache"), Some("STALE_OPTIMISTIC"));
    assert_eq!(r.header("warning"), Some("110 - \"Response is Stale\""));
    assert!(r.header("age").is_some());
    assert!(r.text().contains("hsync-stale-notice"));
    assert!(without_notice(&r.body) == blog(26), "the stored copy");

    // The revalidation (a delta through the module) finishes behind it; the next load is current, at once.
    wait_until("the background revalidation", || !p.lines("BACKGROUND").is_empty());
    let bg = p.lines("BACKGROUND");
    assert!(bg[0].contains(" 200 BACKGROUND "), "{bg:?}");
    let wire: u64 = bg[0].split(' ').nth(6).unwrap().parse().unwrap();
    assert!(wire < blog(27).len() as u64 / 5, "a delta: {wire} bytes for {}", blog(27).len());
    let r = curl(&p, &url);
    assert_eq!(r.header("x-hsync-cache"), Some("HIT"));
    assert!(r.body == blog(27));
    assert!(r.ttfb < 1.0);
    assert_eq!(origin.served("/slow.html"), 2);
    s.finish();
    let _ = std::fs::remove_dir_all(docroot);
}

fn moved_and_removed_pages(kind: ServerKind) {
    let origin = Origin::start();
    let Some((s, docroot)) = server(kind, &origin, "web-moved") else { return };
    let p = Proxy::start(&[]);
    let u = |path: &str| format!("http://127.0.0.1:{}/proxy{path}", s.port);
    let cc = [HTML, "Cache-Control: max-age=0"];
    for (status, from, to) in [("301 Moved Permanently", "/old.html", "/new.html"), ("308 Permanent Redirect", "/old2.html", "/new2.html")]
    {
        origin.set(from, &cc, &blog(28));
        assert_eq!(curl(&p, &u(from)).status, 200);
        let location = format!("/proxy{to}");
        origin.set_status(from, status, &[&format!("Location: {location}")], b"moved\n");
        origin.set(to, &cc, &blog(29));
        let r = curl(&p, &u(from));
        assert_eq!(r.status.to_string(), status[..3]);
        assert_eq!(r.header("location"), Some(location.as_str()));
        assert_eq!(r.header("x-hsync-cache"), Some("MOVED"));
        wait_until("the fetch at the new address", || origin.served(to) == 1);
        // A delta against the old copy: the background line's wire bytes are small.
        wait_until("its access line", || p.lines("BACKGROUND").iter().any(|l| l.contains(&u(to))));
        let line = p.lines("BACKGROUND").into_iter().find(|l| l.contains(&u(to))).unwrap();
        let wire: u64 = line.split(' ').nth(6).unwrap().parse().unwrap();
        assert!(wire < blog(29).len() as u64 / 5, "{line}");
        let r = curl(&p, &u(to));
        assert!(r.text().contains("hsync-moved-notice") && r.text().contains(&u(from)), "the first visit says it moved");
        assert!(without_notice(&r.body) == blog(29));
        assert!(curl(&p, &u(to)).body == blog(29), "once");
    }
    for (status, path) in [("404 Not Found", "/r1.html"), ("410 Gone", "/r2.html")] {
        origin.set(path, &cc, &blog(30));
        assert_eq!(curl(&p, &u(path)).status, 200);
        origin.set_status(path, status, &[HTML], b"<html><body><h1>no longer here</h1></body></html>");
        let r = curl(&p, &u(path));
        assert_eq!(r.status.to_string(), status[..3]);
        assert_eq!(r.header("x-hsync-cache"), Some("REMOVED"));
        let html = r.text();
        assert!(html.contains("no longer here") && html.contains("removed by its author"), "{html}");
        let i = html.find("href=\"/.hsync/copy?u=").unwrap() + 6;
        let link = html[i..i + html[i..].find('"').unwrap()].replace("&amp;", "&");
        let r = curl(&p, &format!("http://127.0.0.1:{}{link}", s.port));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-hsync-cache"), Some("COPY"));
        assert!(r.text().contains("this is the copy you saw on"));
        assert!(without_notice(&r.body) == blog(30));
    }
    s.finish();
    let _ = std::fs::remove_dir_all(docroot);
}

fn image_changed_html_did_not(kind: ServerKind) {
    let origin = Origin::start();
    let Some((s, docroot)) = server(kind, &origin, "web-parts") else { return };
    let p = Proxy::start(&[]);
    let u = |path: &str| format!("http://127.0.0.1:{}/proxy{path}", s.port);
    let html = b"<!doctype html><html><head><title>t</title></head><body><p>a page</p><img src=\"pic.png\"></body></html>";
    origin.set("/page.html", &[HTML, "Cache-Control: max-age=1", "ETag: \"p1\""], html);
    origin.set("/pic.png", &["Content-Type: image/png", "Cache-Control: max-age=1"], &[7u8; 4000]);
    assert_eq!(curl(&p, &u("/page.html")).status, 200);
    assert_eq!(curl(&p, &u("/pic.png")).status, 200);
    std::thread::sleep(Duration::from_millis(2100));
    origin.set("/pic.png", &["Content-Type: image/png", "Cache-Control: max-age=1"], &[8u8; 4000]);
    let r = curl(&p, &u("/page.html"));
    assert!(r.body == html);
    let status = || -> serde_json::Value { serde_json::from_slice(&curl(&p, "http://hsync.proxy/status.json").body).unwrap() };
    wait_until("the image's prefetch", || status()["parts"][&u("/page.html")]["parts"].as_array().is_some_and(|a| !a.is_empty()));
    assert_eq!(p.lines("PREFETCH").len(), 1);
    let n = origin.served("/pic.png");
    let r = curl(&p, &u("/pic.png"));
    assert_eq!(r.header("x-hsync-cache"), Some("HIT"), "answered without a round trip");
    assert!(r.body == vec![8u8; 4000], "the new image");
    assert_eq!(origin.served("/pic.png"), n);
    let st = status();
    let parts = &st["parts"][&u("/page.html")]["parts"];
    assert_eq!(parts[0]["url"], u("/pic.png"));
    assert_eq!(parts[0]["changed"], true, "{st}");
    let page = curl(&p, "http://hsync.proxy/").text();
    assert!(page.contains("Parts revalidated with their pages") && page.contains(&u("/pic.png")));
    s.finish();
    let _ = std::fs::remove_dir_all(docroot);
}

hsync_tests::server_cases!(optimistic_on_a_slow_origin, moved_and_removed_pages, image_changed_html_did_not);
