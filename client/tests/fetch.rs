//! The library and `hsync get` against an in-process origin implementing hsync.
mod common;

use common::*;
use hsync_client::{DiskCache, FetchOptions, Fetcher, Source};
use http::HeaderMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

fn fetcher(dir: &std::path::Path, max: u64) -> Fetcher {
    let cache = Arc::new(DiskCache::open(dir, max).unwrap());
    Fetcher::new(cache, FetchOptions { timeout: Duration::from_secs(5), ..Default::default() })
}

fn get(f: &Fetcher, url: &str) -> Arc<hsync_client::Outcome> {
    rt().block_on(f.fetch(&url.parse().unwrap(), &HeaderMap::new(), None)).unwrap_or_else(|e| panic!("{url}: {e}"))
}

#[test]
fn deltas_over_corpus_versions_are_byte_exact_and_small() {
    let origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    let f = fetcher(dir.path(), 1 << 30);
    for (folder, path) in [("blog-home", "/blog/index.html"), ("atom-feed", "/atom.xml")] {
        let vs = versions(folder);
        let url = origin.url(path);
        let (mut wire, mut size) = (0u64, 0u64);
        for (i, v) in vs.iter().take(12).enumerate() {
            origin.set_page(path, v);
            let o = get(&f, &url);
            assert_eq!(o.status, 200);
            assert!(o.body[..] == v[..], "{folder} version {} differs", i + 1);
            if i == 0 {
                assert_eq!(o.source, Source::Full);
            } else {
                if origin.is_local() {
                    assert!(origin.last().signature, "signature sent for version {}", i + 1);
                }
                assert!(matches!(o.source, Source::Delta | Source::Revalidated), "{:?}", o.source);
                wire += o.wire_bytes;
                size += o.body.len() as u64;
            }
            assert_eq!(o.headers.get("content-length").unwrap().to_str().unwrap(), v.len().to_string());
            assert!(o.headers.get("content-encoding").is_none());
            // What is stored is exactly the page.
            assert!(f.cache.get(&url).unwrap().body[..] == v[..]);
        }
        eprintln!("{folder}: {size} bytes of updates for {wire} on the wire");
        assert!(wire * 5 < size, "{folder}: deltas should be far smaller ({wire} vs {size})");
    }
}

#[test]
fn unchanged_page_revalidates_with_304() {
    let origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    let f = fetcher(dir.path(), 1 << 30);
    let v = &versions("blog-home")[0];
    origin.set_page("/p.html", v);
    let url = origin.url("/p.html");
    assert_eq!(get(&f, &url).source, Source::Full);
    let o = get(&f, &url);
    assert_eq!(o.source, Source::Revalidated);
    assert!(o.body[..] == v[..]);
    assert!(o.wire_bytes < 1000);
    if origin.is_local() {
        let l = origin.last();
        assert_eq!(l.status, 304);
        assert!(l.if_none_match.is_some());
    }
}

#[test]
fn fresh_copy_is_served_without_a_request() {
    let origin = Origin::start_local(true);
    origin.set_cache_control("max-age=600");
    let dir = tempfile::tempdir().unwrap();
    let f = fetcher(dir.path(), 1 << 30);
    origin.set_page("/f.html", &versions("blog-home")[0]);
    let url = origin.url("/f.html");
    get(&f, &url);
    let n = origin.requests();
    let o = get(&f, &url);
    assert_eq!(o.source, Source::Fresh);
    assert_eq!(origin.requests(), n);
    assert!(o.headers.contains_key("age"));
}

#[test]
fn no_store_is_never_stored() {
    let origin = Origin::start_local(true);
    origin.set_cache_control("no-store");
    let dir = tempfile::tempdir().unwrap();
    let f = fetcher(dir.path(), 1 << 30);
    origin.set_page("/n.html", &versions("blog-home")[0]);
    let url = origin.url("/n.html");
    let o = get(&f, &url);
    assert!(o.body[..] == versions("blog-home")[0][..]);
    assert!(f.cache.get(&url).is_none());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn server_without_hsync_works() {
    let origin = Origin::start_local(false);
    let dir = tempfile::tempdir().unwrap();
    let f = fetcher(dir.path(), 1 << 30);
    let vs = versions("blog-home");
    let url = origin.url("/x.html");
    for v in vs.iter().take(3) {
        origin.set_page("/x.html", v);
        let o = get(&f, &url);
        assert!(o.body[..] == v[..]);
        assert_eq!(o.source, Source::Full);
    }
    assert!(origin.log().iter().skip(1).all(|l| l.signature && l.content_encoding.is_none()));
}

#[test]
fn gzip_responses_are_decoded() {
    let origin = Origin::start_local(false);
    origin.state().modes.gzip.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let f = fetcher(dir.path(), 1 << 30);
    let v = &versions("atom-feed")[3];
    origin.set_page("/feed.xml", v);
    let o = get(&f, &origin.url("/feed.xml"));
    assert_eq!(origin.last().content_encoding.as_deref(), Some("gzip"));
    assert!(o.body[..] == v[..]);
    assert!(o.wire_bytes < v.len() as u64 / 2);
    assert!(f.cache.get(&origin.url("/feed.xml")).unwrap().body[..] == v[..]);
}

#[test]
fn corrupt_delta_is_refetched_without_signature() {
    let origin = Origin::start_local(true);
    let dir = tempfile::tempdir().unwrap();
    let f = fetcher(dir.path(), 1 << 30);
    let vs = versions("blog-home");
    let url = origin.url("/c.html");
    origin.set_page("/c.html", &vs[0]);
    get(&f, &url);
    origin.state().modes.garbage_delta.store(true, Ordering::SeqCst);
    origin.set_page("/c.html", &vs[1]);
    let before = origin.requests();
    let o = get(&f, &url);
    assert!(o.body[..] == vs[1][..]);
    assert!(o.delta_failed.is_some());
    let log = origin.log();
    assert_eq!(log.len(), before + 2);
    assert_eq!(log[before].content_encoding.as_deref(), Some("hsync"));
    assert!(!log[before + 1].signature && log[before + 1].if_none_match.is_none());
    assert!(f.cache.get(&url).unwrap().body[..] == vs[1][..]);
}

#[test]
fn damaged_cache_entries_are_never_served() {
    let origin = Origin::start_local(true);
    let dir = tempfile::tempdir().unwrap();
    let vs = versions("blog-home");
    let url = origin.url("/d.html");
    origin.set_page("/d.html", &vs[0]);
    let f = fetcher(dir.path(), 1 << 30);
    get(&f, &url);
    let path = f.cache.path_for(&url);
    // Flip one byte in the body, then truncate, then garbage in the trailer.
    type Damage<'a> = &'a dyn Fn(&mut Vec<u8>);
    let damage: [Damage; 3] = [&|d: &mut Vec<u8>| d[1000] ^= 0x20, &|d: &mut Vec<u8>| d.truncate(d.len() / 2), &|d: &mut Vec<u8>| {
        let n = d.len();
        d[n - 30] ^= 1
    }];
    for hurt in damage {
        let mut data = std::fs::read(&path).unwrap();
        hurt(&mut data);
        std::fs::write(&path, &data).unwrap();
        let before = origin.requests();
        let o = get(&f, &url);
        assert!(o.body[..] == vs[0][..]);
        assert_eq!(o.source, Source::Full, "a damaged entry is absent");
        assert!(!origin.log()[before].signature);
    }
    assert!(f.cache.corrupt_dropped.load(Ordering::Relaxed) >= 3);
    // A damaged entry found at start-up is dropped too.
    let mut data = std::fs::read(&path).unwrap();
    data.truncate(data.len() - 3);
    std::fs::write(&path, &data).unwrap();
    std::fs::write(dir.path().join("0123.99.1.tmp"), b"half-written").unwrap();
    let c = DiskCache::open(dir.path(), 1 << 30).unwrap();
    assert!(c.list().is_empty());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn cache_survives_restart_and_respects_lru_bound() {
    let origin = Origin::start_local(true);
    let dir = tempfile::tempdir().unwrap();
    let vs = versions("blog-home");
    let max = 450_000u64;
    {
        let f = fetcher(dir.path(), max);
        for i in 0..3 {
            origin.set_page(&format!("/p{i}.html"), &vs[i * 5]);
            get(&f, &origin.url(&format!("/p{i}.html")));
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(f.cache.list().len(), 3);
    }
    // Restart: the entries are still there; touch p0 so p1 is the oldest.
    let f = fetcher(dir.path(), max);
    assert_eq!(f.cache.list().len(), 3);
    std::thread::sleep(Duration::from_millis(20));
    let o = get(&f, &origin.url("/p0.html"));
    assert_eq!(o.source, Source::Revalidated);
    for i in 3..8 {
        std::thread::sleep(Duration::from_millis(20));
        origin.set_page(&format!("/p{i}.html"), &vs[i * 3]);
        get(&f, &origin.url(&format!("/p{i}.html")));
        assert!(f.cache.total_size() <= max, "total {} over {max}", f.cache.total_size());
        let on_disk: u64 = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
        assert!(on_disk <= max);
        // The page just fetched is always kept.
        assert!(f.cache.get(&origin.url(&format!("/p{i}.html"))).is_some());
    }
    let urls: Vec<String> = f.cache.list().into_iter().map(|e| e.url).collect();
    assert!(!urls.contains(&origin.url("/p1.html")), "least recently used goes first: {urls:?}");
}

#[test]
fn get_command_writes_output_file() {
    let origin = Origin::start_local(true);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.html");
    let vs = versions("blog-home");
    for v in vs.iter().take(2) {
        origin.set_page("/g.html", v);
        let args = hsync_client::cli::GetArgs {
            url: origin.url("/g.html"),
            output: Some(out.clone()),
            cache: Some(dir.path().join("cache")),
            headers: vec!["X-Test: 1".into()],
            verbose: true,
            timeout: 5.0,
            max_size: 1 << 30,
            no_hsync: false,
            no_dictionary: false,
            cacert: vec![],
        };
        assert_eq!(hsync_client::cli::get(args), std::process::ExitCode::SUCCESS);
        assert!(std::fs::read(&out).unwrap() == *v);
    }
    assert_eq!(origin.last().content_encoding.as_deref(), Some("hsync"));
    let args = hsync_client::cli::GetArgs {
        url: origin.url("/missing.html"),
        output: Some(dir.path().join("none")),
        cache: Some(dir.path().join("cache")),
        headers: vec![],
        verbose: false,
        timeout: 5.0,
        max_size: 1 << 30,
        no_hsync: false,
        no_dictionary: false,
        cacert: vec![],
    };
    assert_ne!(hsync_client::cli::get(args), std::process::ExitCode::SUCCESS);
    assert!(!dir.path().join("none").exists());
}
