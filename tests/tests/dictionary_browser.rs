//! A stock headless Chromium against real nginx and Apache with the
//! module and `hsync_dictionary on` (RFC 9842 Compression Dictionary
//! Transport). In one browser session a page changes between loads; the
//! last load must come back as `Content-Encoding: dcz` (the server's
//! access log says `coding=dcz`), and what the browser decoded must be
//! the new version. Three pages:
//!
//! - a *fresh* generated page behind `proxy_pass`/`ProxyPass`
//!   (`Cache-Control: max-age=3600`): it is its own dictionary
//!   (`Use-As-Dictionary`);
//! - a `no-cache` generated page behind the proxy, and
//! - a static file (no freshness): both announce the last stored version
//!   by a `<link rel="compression-dictionary">` inserted in the head,
//!   which Chromium fetches at idle from the module's own URL; then the
//!   store loses that version and the next load is the plain page.
//!
//! What Chromium 156 does, measured while writing this: it names a
//! dictionary only while the dictionary response is fresh, only within
//! one browser session, and a fresh page is served from its cache on a
//! second navigation, hence the query on the fresh page's second load
//! (the match pattern is a path: any query matches it).

use base64::Engine;
use hsync_core::store::{hex, sha256};
use hsync_tests::cdp::{Browser, Loaded, Page};
use hsync_tests::origin::Origin;
use hsync_tests::{chromium, corpus, start, temp_dir, Dictionary, Options, RunningServer, ServerKind, BAD_LOG_PATTERNS};
use std::time::{Duration, Instant};

const PREFIX: &str = "/.well-known/hsync/dictionary/";

/// Successive versions of a real page.
fn versions() -> Vec<Vec<u8>> {
    (1..=4).map(|i| std::fs::read(corpus().join(format!("blog-home/{i:03}.html"))).unwrap()).collect()
}

fn b64_hash(body: &[u8]) -> String {
    format!(":{}:", base64::engine::general_purpose::STANDARD.encode(sha256(body)))
}

fn link_element(body: &[u8]) -> String {
    format!("<link rel=\"compression-dictionary\" href=\"{PREFIX}{}\">", hex(&sha256(body)))
}

/// The body without the `<link rel="compression-dictionary" ...>`
/// elements the module inserts, and how many there were.
fn without_links(body: &[u8]) -> (Vec<u8>, usize) {
    let needle = format!("<link rel=\"compression-dictionary\" href=\"{PREFIX}");
    let text = String::from_utf8_lossy(body).into_owned();
    let mut out = String::with_capacity(text.len());
    let (mut rest, mut n) = (text.as_str(), 0);
    while let Some(i) = rest.find(&needle) {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('>').map(|e| i + e + 1).unwrap_or(rest.len());
        rest = &rest[end..];
        n += 1;
    }
    out.push_str(rest);
    (out.into_bytes(), n)
}

/// Access log lines for `target` (`"GET <target> HTTP/1.1"`).
fn log_lines(s: &RunningServer, target: &str) -> Vec<String> {
    let needle = format!("\"GET {target} HTTP/1.1\"");
    s.access_log_text().lines().filter(|l| l.contains(&needle)).map(String::from).collect()
}

/// Lets the page idle until the server has served `target` with a 200
/// (Chromium fetches linked dictionaries when the page is idle).
fn idle_until_served(p: &mut Page, s: &RunningServer, target: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !log_lines(s, target).iter().any(|l| l.contains("\" 200 ")) {
        assert!(Instant::now() < deadline, "Chromium did not fetch {target} within 15 s; access log:\n{}", s.access_log_text());
        p.idle(Duration::from_millis(200));
    }
    // Let the browser store it before the next navigation.
    p.idle(Duration::from_millis(500));
}

fn describe(l: &Loaded) -> String {
    format!(
        "status {} content-encoding {:?} encoded {} B, sent available-dictionary {:?}, accept-encoding {:?}",
        l.status,
        l.header("content-encoding"),
        l.encoded_bytes,
        l.request_header("available-dictionary"),
        l.request_header("accept-encoding")
    )
}

/// The last load must be dcz against `dict`, decode to `page`, and say so
/// in the access log.
fn assert_dcz(s: &RunningServer, l: &Loaded, target: &str, dict: &[u8], page: &[u8]) {
    let what = format!("{} {target}: {}", s.kind.name(), describe(l));
    assert_eq!(l.status, 200, "{what}");
    assert_eq!(l.request_header("available-dictionary"), Some(b64_hash(dict).as_str()), "{what}");
    assert_eq!(l.header("content-encoding"), Some("dcz"), "{what}");
    let vary = l.header("vary").unwrap_or("").to_ascii_lowercase();
    assert!(vary.contains("available-dictionary") && vary.contains("accept-encoding"), "{what}: Vary {vary:?}");
    let (body, _) = without_links(&l.body);
    assert!(body == page, "{what}: the decoded body ({} B) is not the new version ({} B)", body.len(), page.len());
    assert!(l.encoded_bytes < page.len() as u64 / 4, "{what}: not a delta");
    let lines = log_lines(s, target);
    assert!(lines.last().is_some_and(|l| l.ends_with("coding=dcz")), "{what}: access log {lines:?}");
    eprintln!("{what}: {} of {} B", l.encoded_bytes, page.len());
}

/// A fresh page is its own dictionary.
fn fresh_page(p: &mut Page, s: &RunningServer, origin: &Origin, v: &[Vec<u8>]) {
    let base = format!("http://localhost:{}", s.port);
    let headers = ["Content-Type: text/html; charset=utf-8", "Cache-Control: max-age=3600"];
    origin.set("/fresh.html", &headers, &v[0]);
    let l = p.navigate(&format!("{base}/proxy/fresh.html"));
    let what = format!("{} fresh page, first load: {}", s.kind.name(), describe(&l));
    assert_eq!(l.body, v[0], "{what}");
    let uad = l.header("use-as-dictionary").unwrap_or_else(|| panic!("{what}: no Use-As-Dictionary: {:?}", l.headers));
    assert!(uad.contains("match=\"/proxy/fresh.html\""), "{what}: {uad}");
    origin.set("/fresh.html", &headers, &v[1]);
    let l = p.navigate(&format!("{base}/proxy/fresh.html?2"));
    assert_dcz(s, &l, "/proxy/fresh.html?2", &v[0], &v[1]);
}

/// A page that is not fresh links the last stored version; `set` puts
/// version `i` in place before each load.
fn linked_page(p: &mut Page, s: &RunningServer, target: &str, v: &[Vec<u8>], set: &dyn Fn(usize)) {
    let url = format!("http://localhost:{}{target}", s.port);
    let name = format!("{} {target}", s.kind.name());
    set(0);
    let l = p.navigate(&url);
    assert_eq!(without_links(&l.body).0, v[0], "{name}, first load: {}", describe(&l));
    set(1);
    let l = p.navigate(&url);
    let what = format!("{name}, second load: {}", describe(&l));
    let (body, links) = without_links(&l.body);
    assert_eq!(body, v[1], "{what}");
    assert_eq!(links, 1, "{what}: one inserted <link>");
    let link = link_element(&v[0]);
    assert!(String::from_utf8_lossy(&l.body).contains(&link), "{what}: the link to the first version, {link}");
    let header = l.header("link").unwrap_or_else(|| panic!("{what}: no Link header: {:?}", l.headers));
    assert!(header.contains(&format!("<{PREFIX}{}>", hex(&sha256(&v[0])))), "{what}: Link {header}");
    idle_until_served(p, s, &format!("{PREFIX}{}", hex(&sha256(&v[0]))));
    set(2);
    let l = p.navigate(&url);
    assert_dcz(s, &l, target, &v[0], &v[2]);
    // The store loses the version between two loads (evicted, or the
    // disk was cleaned): the browser still names it, and gets the plain
    // page.
    std::fs::remove_file(s.dir.join("store/v").join(hex(&sha256(&v[0])))).unwrap();
    set(3);
    let l = p.navigate(&url);
    let what = format!("{name}, after eviction: {}", describe(&l));
    assert_eq!(l.status, 200, "{what}");
    assert_eq!(l.request_header("available-dictionary"), Some(b64_hash(&v[0]).as_str()), "{what}");
    assert_ne!(l.header("content-encoding"), Some("dcz"), "{what}");
    assert_eq!(without_links(&l.body).0, v[3], "{what}");
}

fn browser_gets_dcz(kind: ServerKind) {
    if !chromium::available() {
        return;
    }
    let v = versions();
    let origin = Origin::start();
    let docroot = temp_dir("dict-browser-root");
    let opts = Options { upstream: Some(origin.addr), dictionary: Some(Dictionary::default()), workers: 2, ..Options::new(&docroot) };
    let Some(s) = start(kind, &opts) else { return };
    let browser = Browser::start(&temp_dir("dict-browser-profile"));
    let mut p = browser.page();

    fresh_page(&mut p, &s, &origin, &v);
    let generated = ["Content-Type: text/html; charset=utf-8", "Cache-Control: no-cache"];
    linked_page(&mut p, &s, "/proxy/generated.html", &v, &|i| origin.set("/generated.html", &generated, &v[i]));
    linked_page(&mut p, &s, "/static.html", &v, &|i| std::fs::write(docroot.join("static.html"), &v[i]).unwrap());

    let errors = s.error_log_text();
    for bad in BAD_LOG_PATTERNS {
        assert!(!errors.contains(bad), "{}: error log has {bad:?}:\n{errors}", kind.name());
    }
}

#[test]
fn nginx_chromium_gets_dcz() {
    browser_gets_dcz(ServerKind::Nginx);
}

#[test]
fn apache_chromium_gets_dcz() {
    browser_gets_dcz(ServerKind::Apache);
}
