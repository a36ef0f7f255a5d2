//! The proxy's answers for the web as people browse it (issue 17): optimistic
//! answers on a slow origin and stale-while-revalidate, moved and removed
//! pages, and the parts of composite pages revalidated with them. Against
//! the in-process origin (real HTTP on loopback), driven by raw requests.
mod common;

use common::*;
use hsync_client::log::{Level, Logger};
use hsync_client::proxy::{self, ProxyConfig};
use hsync_client::{DiskCache, FetchOptions, Fetcher};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct P {
    addr: SocketAddr,
    fetcher: Arc<Fetcher>,
    log: Arc<Logger>,
    _dir: tempfile::TempDir,
    _h: tokio::task::JoinHandle<()>,
}

fn start(optimistic: Option<u64>, swap: bool) -> P {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(DiskCache::open(dir.path(), 1 << 30).unwrap());
    let timeout = Duration::from_secs(10);
    let fetcher = Arc::new(Fetcher::new(cache, FetchOptions { shared: true, timeout, ..Default::default() }));
    let log = Arc::new(Logger::memory(Level::Info));
    let cfg = ProxyConfig {
        timeout,
        log: log.clone(),
        optimistic: optimistic.map(Duration::from_millis),
        optimistic_swap: swap,
        ..Default::default()
    };
    let (addr, h) = rt().block_on(proxy::spawn("127.0.0.1:0", fetcher.clone(), cfg)).unwrap();
    P { addr, fetcher, log, _dir: dir, _h: h }
}

fn page(n: usize) -> Vec<u8> {
    versions("blog-home")[n].clone()
}

fn timed_get(p: &P, url: &str, extra: &[(&str, &str)]) -> (RawResponse, Duration) {
    let t = Instant::now();
    let r = raw_get(p.addr, url, extra).unwrap();
    (r, t.elapsed())
}

/// The body without the notice and script the proxy inserts after `<body ...>`.
fn strip_inserted(body: &[u8]) -> Vec<u8> {
    let s = String::from_utf8_lossy(body).into_owned();
    let mut s = s;
    for (open, close) in [("<div id=\"hsync-", "</div>"), ("<script>(function(){fetch(\"/.hsync/fresh", "</script>")] {
        while let Some(i) = s.find(open) {
            let j = s[i..].find(close).unwrap() + i + close.len();
            s.replace_range(i..j, "");
        }
    }
    s.into_bytes()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(15), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn access_lines(p: &P, word: &str) -> Vec<String> {
    p.log.lines().into_iter().filter(|l| l.split(' ').nth(5) == Some(word)).collect()
}

#[test]
fn optimistic_answer_on_a_slow_origin_then_the_current_version() {
    let origin = Origin::start_local(true);
    origin.set_cache_control("max-age=0");
    let p = start(Some(200), true);
    let url = origin.url("/slow.html");
    origin.set_page("/slow.html", &page(0));
    assert_eq!(raw_get(p.addr, &url, &[]).unwrap().header("x-hsync-cache"), Some("MISS"));

    // The origin now takes 1.5 s, and the page changed (and is fresh for a minute from now on).
    origin.set_cache_control("max-age=60");
    origin.set_page("/slow.html", &page(1));
    origin.state().modes.delay_ms.store(1500, Ordering::SeqCst);
    let (r, took) = timed_get(&p, &url, &[]);
    eprintln!("optimistic answer in {took:?}");
    assert!(took < Duration::from_millis(1000), "answered in {took:?}, not at once");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-hsync-cache"), Some("STALE_OPTIMISTIC"));
    assert_eq!(r.header("warning"), Some("110 - \"Response is Stale\""));
    assert!(r.header("age").is_some());
    assert_eq!(r.header("cache-control"), Some("no-store"), "the notice version is not to be kept by the browser");
    assert!(r.header("etag").is_none());
    let html = String::from_utf8_lossy(&r.body);
    assert!(html.contains("hsync-stale-notice") && html.contains("being updated"), "the notice");
    assert!(html.contains("/.hsync/fresh?u="), "the swap script");
    assert!(strip_inserted(&r.body) == page(0), "the stored copy");

    // The swap script's request waits for the revalidation and gets the current page.
    let v = {
        let i = html.find("&v=").unwrap() + 3;
        html[i..i + 16].to_string()
    };
    let fresh = origin.url(&format!("/.hsync/fresh?u={}&v={v}", hsync_client::notice::query_escape(&url)));
    let (r, took) = timed_get(&p, &fresh, &[]);
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert!(r.body == page(1), "the current version");
    assert!(took > Duration::from_millis(500), "it waited for the revalidation ({took:?})");
    // Asked again with the current version: nothing new.
    let now_v = format!("{:016x}", hsync_core::hash::xxh3_64(&page(1)));
    let r = raw_get(p.addr, &origin.url(&format!("/.hsync/fresh?u={}&v={now_v}", hsync_client::notice::query_escape(&url))), &[]).unwrap();
    assert_eq!(r.status, 204);
    // Never about another origin.
    let r = raw_get(p.addr, &format!("http://127.0.0.2:1/.hsync/fresh?u={}&v=0", hsync_client::notice::query_escape(&url)), &[]).unwrap();
    assert_eq!(r.status, 403);

    // The next load is current, at once (fresh now), and the origin was asked once for it.
    let n = origin.requests();
    let (r, took) = timed_get(&p, &url, &[]);
    assert_eq!(r.header("x-hsync-cache"), Some("HIT"));
    assert!(r.body == page(1));
    assert!(took < Duration::from_millis(500));
    assert_eq!(origin.requests(), n);
    let bg = access_lines(&p, "BACKGROUND");
    assert_eq!(bg.len(), 1, "{bg:?}");
    assert!(bg[0].contains(" - GET ") && bg[0].contains(" 200 BACKGROUND "), "{}", bg[0]);
    assert_eq!(access_lines(&p, "STALE_OPTIMISTIC").len(), 1);
}

#[test]
fn optimistic_answer_waits_for_a_quick_origin_and_coalesces() {
    let origin = Origin::start_local(true);
    origin.set_cache_control("max-age=0");
    let p = start(Some(300), false);
    let url = origin.url("/q.html");
    origin.set_page("/q.html", &page(2));
    raw_get(p.addr, &url, &[]).unwrap();
    origin.set_page("/q.html", &page(3));
    // Quick origin: the current version, not the copy.
    let r = raw_get(p.addr, &url, &[]).unwrap();
    assert_eq!(r.header("x-hsync-cache"), Some("DELTA"));
    assert!(r.body == page(3));
    // Slow origin, three requests at once: each answered at once, one revalidation.
    origin.state().modes.delay_ms.store(1500, Ordering::SeqCst);
    origin.set_page("/q.html", &page(4));
    let n = origin.requests();
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let (addr, url) = (p.addr, url.clone());
            std::thread::spawn(move || {
                let t = Instant::now();
                (raw_get(addr, &url, &[]).unwrap(), t.elapsed())
            })
        })
        .collect();
    for h in handles {
        let (r, took) = h.join().unwrap();
        assert!(took < Duration::from_millis(1200), "{took:?}");
        assert_eq!(r.header("x-hsync-cache"), Some("STALE_OPTIMISTIC"));
        assert!(strip_inserted(&r.body) == page(3));
        assert!(!String::from_utf8_lossy(&r.body).contains("/.hsync/fresh"), "no script without --optimistic-swap");
    }
    wait_until("the revalidation", || origin.requests() > n && p.fetcher.cache.get(&url).is_some_and(|e| e.body[..] == page(4)[..]));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(origin.requests(), n + 1, "one revalidation for the three");
}

#[test]
fn never_stale_for_must_revalidate_private_or_a_reload() {
    let origin = Origin::start_local(true);
    let p = start(Some(150), false);
    for (i, cc) in
        ["max-age=0, must-revalidate", "no-cache", "private, max-age=0", "s-maxage=0", "max-age=0, proxy-revalidate"].iter().enumerate()
    {
        origin.state().modes.delay_ms.store(0, Ordering::SeqCst);
        origin.set_cache_control(cc);
        let path = format!("/m{i}.html");
        let url = origin.url(&path);
        origin.set_page(&path, &page(0));
        raw_get(p.addr, &url, &[]).unwrap();
        origin.set_page(&path, &page(1));
        origin.state().modes.delay_ms.store(700, Ordering::SeqCst);
        let (r, took) = timed_get(&p, &url, &[]);
        assert!(took >= Duration::from_millis(700), "{cc}: answered in {took:?}, so not by the origin");
        assert!(r.body == page(1), "{cc}: the origin's current page");
        assert!(r.header("warning").is_none(), "{cc}");
    }
    // A reload (Cache-Control: max-age=0 from the browser) waits for the origin too.
    origin.state().modes.delay_ms.store(0, Ordering::SeqCst);
    origin.set_cache_control("max-age=0");
    let url = origin.url("/reload.html");
    origin.set_page("/reload.html", &page(0));
    raw_get(p.addr, &url, &[]).unwrap();
    origin.state().modes.delay_ms.store(700, Ordering::SeqCst);
    let (r, took) = timed_get(&p, &url, &[("Cache-Control", "max-age=0")]);
    assert!(took >= Duration::from_millis(700) && r.header("warning").is_none(), "{took:?}");
    // Without --optimistic a slow origin is waited for.
    let q = start(None, false);
    origin.state().modes.delay_ms.store(0, Ordering::SeqCst);
    raw_get(q.addr, &url, &[]).unwrap();
    origin.state().modes.delay_ms.store(700, Ordering::SeqCst);
    let (r, took) = timed_get(&q, &url, &[]);
    assert!(took >= Duration::from_millis(700) && r.header("warning").is_none(), "{took:?}");
}

#[test]
fn stale_while_revalidate_from_the_origin_is_honoured() {
    let origin = Origin::start_local(true);
    origin.set_cache_control("max-age=0, stale-while-revalidate=60");
    let p = start(None, false);
    let url = origin.url("/swr.html");
    origin.set_page("/swr.html", &page(5));
    raw_get(p.addr, &url, &[]).unwrap();
    origin.set_page("/swr.html", &page(6));
    origin.state().modes.delay_ms.store(800, Ordering::SeqCst);
    let (r, took) = timed_get(&p, &url, &[]);
    assert!(took < Duration::from_millis(500), "{took:?}");
    assert_eq!(r.header("x-hsync-cache"), Some("STALE_SWR"));
    assert_eq!(r.header("warning"), Some("110 - \"Response is Stale\""));
    assert!(strip_inserted(&r.body) == page(5));
    wait_until("the revalidation", || p.fetcher.cache.get(&url).is_some_and(|e| e.body[..] == page(6)[..]));
    let r = raw_get(p.addr, &url, &[]).unwrap();
    assert!(strip_inserted(&r.body) == page(6), "the next load is current");
    // Past the window: the origin is waited for.
    origin.state().modes.delay_ms.store(0, Ordering::SeqCst);
    origin.set_cache_control("max-age=0, stale-while-revalidate=0");
    let url = origin.url("/swr0.html");
    origin.set_page("/swr0.html", &page(5));
    raw_get(p.addr, &url, &[]).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    origin.state().modes.delay_ms.store(600, Ordering::SeqCst);
    let (r, took) = timed_get(&p, &url, &[]);
    assert!(took >= Duration::from_millis(600) && r.header("warning").is_none(), "{took:?}");
}

#[test]
fn moved_pages_are_fetched_at_their_new_address_and_say_so() {
    let origin = Origin::start_local(true);
    origin.set_cache_control("max-age=0");
    let p = start(None, false);
    for (status, from, to) in [(301u16, "/old.html", "/new.html"), (308, "/old2.html", "/sub/new2.html")] {
        let (old_url, new_url) = (origin.url(from), origin.url(to));
        origin.set_page(from, &page(7));
        assert_eq!(raw_get(p.addr, &old_url, &[]).unwrap().status, 200);
        // The page moves (and changes a little).
        origin.remove_page(from);
        origin.set_page(to, &page(8));
        origin.state().redirects.lock().unwrap().insert(from.into(), (status, to.into()));
        let r = raw_get(p.addr, &old_url, &[]).unwrap();
        assert_eq!(r.status, status);
        assert_eq!(r.header("location"), Some(to), "the redirect as the origin sent it");
        assert_eq!(r.header("x-hsync-cache"), Some("MOVED"));
        // The new address was fetched with a delta against the copy from the old one.
        wait_until("the fetch at the new address", || p.fetcher.cache.get(&new_url).is_some());
        let at_new: Vec<_> = origin.log().into_iter().filter(|l| l.path == to).collect();
        assert_eq!(at_new.len(), 1);
        assert!(at_new[0].signature && at_new[0].content_encoding.as_deref() == Some("hsync"), "{at_new:?}");
        assert!(p.fetcher.cache.get(&old_url).is_none(), "the copy moved");
        // The first visit at the new address says the page moved; the next does not.
        let r = raw_get(p.addr, &new_url, &[]).unwrap();
        assert_eq!(r.status, 200);
        let html = String::from_utf8_lossy(&r.body);
        assert!(html.contains("hsync-moved-notice") && html.contains(&old_url), "{}", &html[..300]);
        assert!(strip_inserted(&r.body) == page(8));
        let r = raw_get(p.addr, &new_url, &[]).unwrap();
        assert!(r.body == page(8), "no notice the second time");
        // The old address is now a plain redirect.
        let r = raw_get(p.addr, &old_url, &[]).unwrap();
        assert_eq!((r.status, r.header("x-hsync-cache")), (status, Some("PASS")));
    }
    // A temporary redirect leaves the stored page alone.
    origin.set_page("/t.html", &page(9));
    let url = origin.url("/t.html");
    raw_get(p.addr, &url, &[]).unwrap();
    origin.state().redirects.lock().unwrap().insert("/t.html".into(), (307, "/elsewhere.html".into()));
    let r = raw_get(p.addr, &url, &[]).unwrap();
    assert_eq!((r.status, r.header("x-hsync-cache")), (307, Some("PASS")));
    assert!(p.fetcher.cache.get(&url).is_some_and(|e| e.body[..] == page(9)[..]));
    assert_eq!(access_lines(&p, "MOVED").len(), 2);
}

#[test]
fn removed_pages_link_to_the_copy_the_user_saw() {
    let origin = Origin::start_local(true);
    origin.set_cache_control("max-age=0");
    let p = start(None, false);
    for (path, gone) in [("/r404.html", false), ("/r410.html", true)] {
        let url = origin.url(path);
        origin.set_page(path, &page(10));
        raw_get(p.addr, &url, &[]).unwrap();
        if gone {
            origin.state().gone.lock().unwrap().push(path.into());
        } else {
            origin.remove_page(path);
        }
        let r = raw_get(p.addr, &url, &[]).unwrap();
        assert_eq!(r.status, if gone { 410 } else { 404 });
        assert_eq!(r.header("x-hsync-cache"), Some("REMOVED"));
        let html = String::from_utf8_lossy(&r.body).into_owned();
        assert!(html.contains("removed by its author"), "{html}");
        assert!(html.contains(if gone { "<h1>Gone</h1>" } else { "not found" }), "the origin's answer: {html}");
        let link = {
            let i = html.find("href=\"/.hsync/copy?u=").unwrap() + 6;
            html[i..i + html[i..].find('"').unwrap()].replace("&amp;", "&")
        };
        // The copy, at the proxy-internal URL on the page's origin.
        let r = raw_get(p.addr, &origin.url(&link), &[]).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-hsync-cache"), Some("COPY"));
        assert_eq!(r.header("cache-control"), Some("no-store"));
        let copy = String::from_utf8_lossy(&r.body);
        assert!(copy.contains("was removed by its author; this is the copy you saw on"));
        assert!(strip_inserted(&r.body) == page(10));
        // Kept, but not served for the URL itself (the origin's answer is).
        assert!(p.fetcher.cache.get(&url).is_some());
        assert_eq!(raw_get(p.addr, &url, &[]).unwrap().status, if gone { 410 } else { 404 });
        // Not from another origin's pages.
        let r = raw_get(p.addr, &format!("http://127.0.0.2:1{link}"), &[]).unwrap();
        assert_eq!(r.status, 403);
    }
    assert_eq!(access_lines(&p, "REMOVED").len(), 4);
    assert_eq!(access_lines(&p, "COPY").len(), 2);
}

#[test]
fn removed_copies_are_never_another_users() {
    let origin = Origin::start_local(true);
    let p = start(None, false);
    // A page that varies on Cookie, stored for user a.
    origin.set_cache_control("max-age=0");
    origin.set_extra_headers(&[("Vary", "Cookie")]);
    origin.state().modes.personalize.store(true, Ordering::SeqCst);
    origin.set_page("/v.html", &page(11));
    let url = origin.url("/v.html");
    let r = raw_get(p.addr, &url, &[("Cookie", "user=a")]).unwrap();
    assert!(String::from_utf8_lossy(&r.body).starts_with(&personal_marker(Some("user=a"))));
    // A private page, for user b.
    origin.set_extra_headers(&[]);
    origin.set_cache_control("private, max-age=60");
    origin.set_page("/p.html", &page(12));
    let purl = origin.url("/p.html");
    raw_get(p.addr, &purl, &[("Cookie", "user=b")]).unwrap();
    origin.remove_page("/v.html");
    origin.remove_page("/p.html");
    let copy = |u: &str| origin.url(&format!("/.hsync/copy?u={}", hsync_client::notice::query_escape(u)));
    // User b, and a user without a cookie, get no copy of a's page; b's private page was never kept.
    for cookie in [Some("user=b"), None] {
        let h: Vec<(&str, &str)> = cookie.map(|c| vec![("Cookie", c)]).unwrap_or_default();
        let r = raw_get(p.addr, &url, &h).unwrap();
        assert_eq!((r.status, r.header("x-hsync-cache")), (404, Some("PASS")), "{cookie:?}");
        assert!(!String::from_utf8_lossy(&r.body).contains("removed by its author"));
        let r = raw_get(p.addr, &copy(&url), &h).unwrap();
        assert_eq!(r.status, 404, "{cookie:?}");
        assert!(!String::from_utf8_lossy(&r.body).contains("user=a"));
    }
    for cookie in ["user=b", "user=a"] {
        let r = raw_get(p.addr, &purl, &[("Cookie", cookie)]).unwrap();
        assert_eq!((r.status, r.header("x-hsync-cache")), (404, Some("PASS")));
        assert_eq!(raw_get(p.addr, &copy(&purl), &[("Cookie", cookie)]).unwrap().status, 404);
    }
    // User a gets the link and the copy.
    let r = raw_get(p.addr, &url, &[("Cookie", "user=a")]).unwrap();
    assert_eq!(r.header("x-hsync-cache"), Some("REMOVED"));
    let r = raw_get(p.addr, &copy(&url), &[("Cookie", "user=a")]).unwrap();
    assert_eq!(r.status, 200);
    assert!(strip_inserted(&r.body).starts_with(personal_marker(Some("user=a")).as_bytes()));
}

#[test]
fn parts_of_a_page_are_revalidated_with_it() {
    let origin = Origin::start_local(true);
    origin.set_cache_control("max-age=1");
    let p = start(None, false);
    let html = b"<!doctype html><html><head><link rel=stylesheet href=/s.txt></head><body><p>hello</p>\
        <img src=\"img/a.bin\"><img src=/b.bin><script src=/never-fetched.txt></script></body></html>";
    origin.set_page("/page.html", html);
    origin.set_page("/img/a.bin", &[1u8; 5000]);
    origin.set_page("/b.bin", &[2u8; 3000]);
    origin.set_page("/s.txt", b"body { color: red }");
    let page_url = origin.url("/page.html");
    for path in ["/page.html", "/img/a.bin", "/b.bin", "/s.txt"] {
        assert_eq!(raw_get(p.addr, &origin.url(path), &[]).unwrap().status, 200);
    }
    std::thread::sleep(Duration::from_millis(2100));
    // The image changes; the page does not.
    origin.set_page("/img/a.bin", &[3u8; 5000]);
    let r = raw_get(p.addr, &page_url, &[]).unwrap();
    assert_eq!(r.header("x-hsync-cache"), Some("REVALIDATED"));
    let status =
        || -> serde_json::Value { serde_json::from_slice(&raw_get(p.addr, "http://hsync.proxy/status.json", &[]).unwrap().body).unwrap() };
    // (The page's first fetch made a report too, with nothing stored to revalidate yet.)
    wait_until("the parts report", || status()["parts"][&page_url]["parts"].as_array().is_some_and(|a| !a.is_empty()));
    let rep = status()["parts"][&page_url].clone();
    assert_eq!(rep["referenced"], 4, "{rep}");
    let parts = rep["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 3, "the stored ones: {rep}");
    let changed: Vec<&str> = parts.iter().filter(|p| p["changed"] == true).map(|p| p["url"].as_str().unwrap()).collect();
    assert_eq!(changed, vec![origin.url("/img/a.bin")]);
    // The image is now a hit, with the new bytes, without asking the origin.
    let n = origin.requests();
    let r = raw_get(p.addr, &origin.url("/img/a.bin"), &[]).unwrap();
    assert_eq!(r.header("x-hsync-cache"), Some("HIT"));
    assert!(r.body == vec![3u8; 5000]);
    assert_eq!(raw_get(p.addr, &origin.url("/b.bin"), &[]).unwrap().header("x-hsync-cache"), Some("HIT"));
    assert_eq!(origin.requests(), n);
    // The status page lists it.
    let page = String::from_utf8(raw_get(p.addr, "http://hsync.proxy/", &[]).unwrap().body).unwrap();
    assert!(page.contains("Parts revalidated with their pages") && page.contains(&origin.url("/img/a.bin")), "{page}");
    let pre = access_lines(&p, "PREFETCH");
    assert_eq!(pre.len(), 3, "{pre:?}");
    assert!(pre.iter().all(|l| l.split(' ').nth(1) == Some("-")));
    // The prefetches carried no user header.
    assert!(origin.log().iter().all(|l| l.cookie.is_none()));
}
