//! Headless Chromium browsing corpus pages that change between loads, through the proxy.
//!
//! Skipped (with a notice) when /usr/bin/chromium is absent, unless
//! HSYNC_REQUIRE_CHROMIUM is set, in which case its absence is a failure.
mod common;

use common::*;
use hsync_client::proxy::{self, ProxyConfig};
use hsync_client::{DiskCache, FetchOptions, Fetcher};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

fn dump_dom(proxy: std::net::SocketAddr, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = hsync_tests::chromium::dump_dom_command(profile.path(), proxy).arg(url).output().expect("run chromium");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of the first `<title>`.
fn title(html: &[u8]) -> String {
    let s = String::from_utf8_lossy(html);
    let a = s.find("<title>").map(|i| i + 7).unwrap_or(0);
    let b = s[a..].find("</title>").map(|j| a + j).unwrap_or(a);
    s[a..b].trim().to_string()
}

#[test]
fn chromium_browses_changing_pages_through_the_proxy() {
    if !hsync_tests::chromium::available() {
        return;
    }
    let mut origin = Origin::start_local(true);
    // Revalidated on every load, and servable stale when the origin is down (a `no-cache` page never is).
    origin.set_cache_control("max-age=0");
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(DiskCache::open(dir.path(), 1 << 30).unwrap());
    let fetcher = Arc::new(Fetcher::new(cache, FetchOptions { shared: true, timeout: Duration::from_secs(2), ..Default::default() }));
    let (addr, _h) = rt().block_on(proxy::spawn("127.0.0.1:0", fetcher.clone(), ProxyConfig::default())).unwrap();
    let vs = versions("blog-home");
    let url = origin.url("/index.html");
    for (i, v) in vs.iter().enumerate().take(4) {
        origin.set_page("/index.html", v);
        let dom = dump_dom(addr, &url);
        let t = title(v);
        assert!(!t.is_empty() && dom.contains(&t), "v{}: title {t:?} not in the DOM", i + 1);
        // The page the browser got is exactly this version (the proxy's copy is byte-exact).
        let stored = fetcher.cache.get(&url).expect("page cached");
        assert!(stored.body[..] == v[..], "v{} stored copy differs", i + 1);
    }
    let s = fetcher.per_url.lock().unwrap().get(&url).cloned().unwrap();
    eprintln!("chromium: {} requests, {} bytes delivered, {} on the wire", s.requests, s.delivered, s.wire);
    assert!(s.wire * 3 < s.delivered, "deltas used: {s:?}");
    assert!(origin.log().iter().filter(|l| l.path == "/index.html").any(|l| l.content_encoding.as_deref() == Some("hsync")));

    // Origin down: the browser sees the stale copy with the notice.
    origin.stop();
    let dom = dump_dom(addr, &url);
    assert!(dom.contains("hsync-stale-notice"), "notice shown");
    assert!(dom.contains(&title(&vs[3])));
}

/// `--optimistic 200 --optimistic-swap` on a slow origin: Chromium gets the
/// stale copy at once, and its swap script writes the current version over
/// it once the proxy has revalidated the page (the DOM ends up current,
/// without the notice).
#[test]
fn chromium_swaps_in_the_current_version() {
    if !hsync_tests::chromium::available() {
        return;
    }
    let origin = Origin::start_local(true);
    origin.set_cache_control("max-age=0");
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(DiskCache::open(dir.path(), 1 << 30).unwrap());
    let fetcher = Arc::new(Fetcher::new(cache, FetchOptions { shared: true, timeout: Duration::from_secs(10), ..Default::default() }));
    let log = Arc::new(hsync_client::log::Logger::memory(hsync_client::log::Level::Info));
    let cfg = ProxyConfig { optimistic: Some(Duration::from_millis(200)), optimistic_swap: true, log: log.clone(), ..Default::default() };
    let (addr, _h) = rt().block_on(proxy::spawn("127.0.0.1:0", fetcher.clone(), cfg)).unwrap();
    // Two versions told apart by a marker in the body.
    let marked = |n: usize| -> (Vec<u8>, String) {
        let tag = format!("hsync-test-version-{n}");
        let page = String::from_utf8_lossy(&versions("blog-home")[n]).replacen("</body>", &format!("<p>{tag}</p></body>"), 1);
        (page.into_bytes(), tag)
    };
    let ((v1, old), (v2, new)) = (marked(10), marked(12));
    let url = origin.url("/index.html");
    origin.set_page("/index.html", &v1);
    assert!(dump_dom(addr, &url).contains(&old));
    origin.set_page("/index.html", &v2);
    origin.state().modes.delay_ms.store(1500, Ordering::SeqCst);
    let profile = tempfile::tempdir().unwrap();
    let out = hsync_tests::chromium::dump_dom_command(profile.path(), addr)
        .arg("--virtual-time-budget=8000")
        .arg(&url)
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains(&new) && !dom.contains(&old), "the current version swapped in");
    assert!(!dom.contains("hsync-stale-notice"), "without the notice");
    // The browser got the stale copy first, then asked for the current one.
    let lines = log.lines();
    assert!(lines.iter().any(|l| l.contains(" 200 STALE_OPTIMISTIC ")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("/.hsync/fresh?u=") && l.contains(" 200 NONE ")), "{lines:?}");
}
