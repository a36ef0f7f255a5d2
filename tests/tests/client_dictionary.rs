//! The client's RFC 9842 support end to end: the library (`Fetcher`)
//! against nginx and Apache with `hsync_dictionary on` /
//! `HsyncDictionary On`. A generated page (no Cache-Control) announces the
//! previous stored version of itself (`Link` and, in HTML, an inserted
//! `<link rel="compression-dictionary">`); the client fetches that
//! dictionary, offers it on the next request, and the server answers `dcz`.
//! Every body is compared byte for byte with the file (the inserted element
//! taken out).
//!
//! Needs the modules built with dictionary support (`build/modules`);
//! `HSYNC_SKIP_SERVER_TESTS=1` (or `=nginx`, `=apache`) skips servers.

use hsync_client::{DiskCache, FetchOptions, Fetcher, Outcome, Source};
use hsync_tests::{corpus, start, temp_dir, without_inserted_link, ServerKind};
use http::HeaderMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How far in the past written files are dated (see client_servers.rs).
const AGE: Duration = Duration::from_secs(3);
/// Wait after a change: past the heuristic freshness of what the client holds.
const SETTLE: Duration = Duration::from_millis(1200);

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("HSYNC_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn blog(n: usize) -> Vec<u8> {
    std::fs::read(corpus().join(format!("blog-home/{n:03}.html"))).unwrap()
}

/// Writes `data` at `p`, dated `AGE` ago.
fn put(p: &std::path::Path, data: &[u8]) {
    std::fs::write(p, data).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
    f.set_modified(SystemTime::now() - AGE).unwrap();
}

#[track_caller]
fn assert_page(o: &Outcome, want: &[u8], what: &str) {
    assert_eq!(o.status, 200, "{what}");
    let got = without_inserted_link(&o.body);
    let got = if got == want { got } else { without_inserted_link(&got).strip_prefix(b"\n").map(<[u8]>::to_vec).unwrap_or(got) };
    assert!(got == want, "{what}: body differs ({} bytes, want {})", got.len(), want.len());
    assert!(o.headers.get("content-encoding").is_none(), "{what}");
}

fn announced_dictionary_then_dcz(kind: ServerKind) {
    let root = Scratch(temp_dir("dict-docroot"));
    let mut opts = hsync_tests::Options::new(&root.0);
    opts.dictionary = Some(Default::default());
    let Some(s) = start(kind, &opts) else { return };
    let page = root.0.join("page.html");
    let url = format!("http://127.0.0.1:{}/page.html", s.port);
    let cache = Scratch(temp_dir("dict-client-cache"));
    let f = Fetcher::new(
        Arc::new(DiskCache::open(&cache.0, 1 << 30).unwrap()),
        FetchOptions { timeout: Duration::from_secs(10), ..Default::default() },
    );
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let get = |what: &str| -> Arc<Outcome> {
        let o = rt.block_on(f.fetch(&url.parse().unwrap(), &HeaderMap::new(), None)).unwrap_or_else(|e| panic!("{what}: {e}"));
        eprintln!("{what}: {:?}, {} bytes, {} on the wire, links {:?}", o.source, o.body.len(), o.wire_bytes, o.dictionary_links);
        o
    };

    // Version 1: stored by the server as it streams past.
    put(&page, &blog(1));
    let o = get("version 1");
    assert_page(&o, &blog(1), "version 1");

    // Version 2 announces version 1 as a dictionary; the client fetches it.
    std::thread::sleep(SETTLE);
    put(&page, &blog(2));
    let o = get("version 2");
    assert_page(&o, &blog(2), "version 2");
    assert!(!o.dictionary_links.is_empty(), "version 2 announces a dictionary: {:?}", o.headers);
    assert!(o.dictionary_links[0].contains("/.well-known/hsync/dictionary/"), "{:?}", o.dictionary_links);
    let learnt = rt.block_on(f.fetch_dictionaries(&o));
    assert!(learnt.iter().any(|(_, r)| r.is_ok()), "{learnt:?}");
    assert_eq!(f.dicts.as_ref().unwrap().totals().0, 1);

    // Version 3 comes as dcz against the dictionary (with the cached copy's signature alongside).
    std::thread::sleep(SETTLE);
    put(&page, &blog(3));
    let o = get("version 3");
    let req = &o.trace.last().unwrap().request;
    assert!(req.iter().any(|l| l.starts_with("available-dictionary: :")), "{req:?}");
    assert!(req.iter().any(|l| l == "accept-encoding: dcz, hsync, gzip"), "{req:?}");
    assert_eq!(o.source, Source::Dcz, "{:?}", o.delta_failed);
    assert_page(&o, &blog(3), "version 3 (dcz)");
    assert!(o.wire_bytes * 5 < o.body.len() as u64, "{} on the wire for {}", o.wire_bytes, o.body.len());
    eprintln!("{}: dcz {} bytes on the wire for {}", kind.name(), o.wire_bytes, o.body.len());

    // With dictionaries off the same page comes as hsync or in full, never dcz.
    let cache2 = Scratch(temp_dir("dict-client-cache-off"));
    let f2 = Fetcher::new(
        Arc::new(DiskCache::open(&cache2.0, 1 << 30).unwrap()),
        FetchOptions { timeout: Duration::from_secs(10), dictionary: None, ..Default::default() },
    );
    let o = rt.block_on(f2.fetch(&url.parse().unwrap(), &HeaderMap::new(), None)).unwrap();
    assert_eq!(o.source, Source::Full);
    assert_page(&o, &blog(3), "dictionaries off");
    drop(f);
    s.finish();
}

hsync_tests::server_cases!(announced_dictionary_then_dcz);
