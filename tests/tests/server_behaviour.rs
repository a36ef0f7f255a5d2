//! Server behaviour suite: every case is written once and run against each
//! server (`nginx::<case>`, `apache::<case>`), with the real server and the
//! hsync module from `build/modules`. Decoding uses hsync-core directly.
//!
//! `HSYNC_SKIP_SERVER_TESTS=1` (or `=apache`, `=nginx`) skips servers;
//! `HSYNC_KEEP_TMP=1` keeps each server's directory (config, logs).

use hsync_core::http::{decode_signature_header, encode_signature_header};
use hsync_core::{patch, SigParams, Signature};
use hsync_tests::http::{self, Response};
use hsync_tests::squid::{self, Squid};
use hsync_tests::upstream::{hdr_lines, Upstream};
use hsync_tests::{corpus, start, temp_dir, Options, RunningServer, ServerKind};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest instance the tests let a delta rebuild.
const LIMIT: u64 = 1 << 30;

/// The log line every server writes (at info level) for an unusable signature.
const INVALID: &str = "invalid Hsync-Signature";
const DEFAULT_MAX_SIGNATURE: usize = 4608;

/// A document root with the subdirectories [`Options`] names; removed on drop.
struct Site {
    dir: PathBuf,
}

impl Site {
    fn new() -> Site {
        let dir = temp_dir("docroot");
        for sub in ["pre", "nt", "off"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        Site { dir }
    }

    fn put(&self, rel: &str, data: &[u8]) {
        std::fs::write(self.dir.join(rel), data).unwrap();
    }

    fn options(&self) -> Options {
        Options::new(&self.dir)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if std::env::var_os("HSYNC_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn read(p: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(p.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", p.as_ref().display()))
}

fn sig_header(old: &[u8]) -> String {
    encode_signature_header(&Signature::compute(old).to_bytes())
}

/// GET `path` asking for hsync against `old`.
fn hsync_get(s: &RunningServer, path: &str, old: &[u8], extra: &[(&str, &str)]) -> Response {
    let sig = sig_header(old);
    let mut h = vec![("Accept-Encoding", "hsync"), ("Hsync-Signature", sig.as_str())];
    h.extend_from_slice(extra);
    http::get(s.port, path, &h)
}

/// The body rebuilt from an hsync response.
fn decode(old: &[u8], r: &Response) -> Vec<u8> {
    assert_eq!(r.status, 200, "status");
    assert_eq!(r.content_encoding(), Some("hsync"), "Content-Encoding (headers {:?})", r.headers);
    patch(old, &r.body, LIMIT).unwrap_or_else(|e| panic!("patch failed: {e}"))
}

/// An ordinary (not hsync-coded) full response with `body`.
fn assert_untouched(r: &Response, body: &[u8], what: &str) {
    assert_eq!(r.status, 200, "{what}: status");
    assert_ne!(r.content_encoding(), Some("hsync"), "{what}: must not be hsync-coded");
    assert!(r.body == body, "{what}: body differs ({} bytes, want {})", r.body.len(), body.len());
}

/// Every line of the response field `name`, as sent.
fn lines<'a>(r: &'a Response, name: &str) -> Vec<&'a str> {
    r.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
}

/// The names the response varies on, over all its `Vary` lines, lowercased
/// and in order: nginx sends the core's one line as it is, httpd may join
/// lines of a field with "," and no space.
fn vary_names(r: &Response) -> Vec<String> {
    lines(r, "Vary").iter().flat_map(|l| l.split(',')).map(|n| n.trim().to_ascii_lowercase()).filter(|n| !n.is_empty()).collect()
}

/// The `Vary` every response hsync could apply to carries (unless turned off).
const HSYNC_VARY: [&str; 2] = ["accept-encoding", "hsync-signature"];

/// Whether the response varies on both hsync request fields.
fn varies_on_hsync(r: &Response) -> bool {
    let names = vary_names(r);
    HSYNC_VARY.iter().all(|h| names.iter().any(|n| n == h))
}

/// The value of the upstream's `/hdr/<case>` line for `name`.
fn hdr_value(case: &str, name: &str) -> &'static str {
    hdr_lines(case)
        .iter()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
        .unwrap_or_else(|| panic!("/hdr/{case} sends no {name}"))
}

/// Every pair of neighbouring versions in the corpus, as paths relative to it.
fn corpus_pairs() -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for dir in ["blog-home", "atom-feed", "pages/cnn", "pages/wikipedia-obama", "pages/igvita"] {
        let mut files: Vec<String> = std::fs::read_dir(corpus().join(dir))
            .unwrap_or_else(|e| panic!("corpus {}: {e}", corpus().join(dir).display()))
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        for w in files.windows(2) {
            pairs.push((format!("{dir}/{}", w[0]), format!("{dir}/{}", w[1])));
        }
    }
    assert!(pairs.len() >= 60, "corpus incomplete: {} pairs", pairs.len());
    pairs
}

fn static_corpus_roundtrip(kind: ServerKind) {
    let site = Site::new();
    let pairs = corpus_pairs();
    for (i, (_, new)) in pairs.iter().enumerate() {
        site.put(&format!("c{i}.html"), &read(corpus().join(new)));
    }
    let Some(s) = start(kind, &site.options()) else { return };
    let (mut sent, mut full) = (0, 0);
    for (i, (old, new)) in pairs.iter().enumerate() {
        let (old_b, new_b) = (read(corpus().join(old)), read(corpus().join(new)));
        let r = hsync_get(&s, &format!("/c{i}.html"), &old_b, &[]);
        assert!(decode(&old_b, &r) == new_b, "{old} -> {new}: rebuilt page differs");
        sent += r.body.len();
        full += new_b.len();
    }
    assert!(sent * 5 < full, "deltas too large: {sent} bytes for {full}");
    s.finish();
}

fn proxy_corpus_roundtrip(kind: ServerKind) {
    let site = Site::new();
    let up = Upstream::start();
    let Some(s) = start(kind, &Options { upstream: Some(up.addr), ..site.options() }) else { return };
    for (old, new) in corpus_pairs().iter().step_by(3) {
        let (old_b, new_b) = (read(corpus().join(old)), read(corpus().join(new)));
        let r = hsync_get(&s, &format!("/proxy/corpus/{new}"), &old_b, &[]);
        assert!(decode(&old_b, &r) == new_b, "proxied {old} -> {new}: rebuilt page differs");
    }
    s.finish();
}

fn proxy_regenerated_page(kind: ServerKind) {
    let site = Site::new();
    let up = Upstream::start();
    let Some(s) = start(kind, &Options { upstream: Some(up.addr), ..site.options() }) else { return };
    let first = http::get(s.port, "/proxy/counter", &[]);
    assert_eq!(first.status, 200);
    let n0: u64 = first.header("X-Counter").expect("X-Counter").parse().unwrap();
    assert!(first.body == Upstream::page(n0));
    let mut old = first.body;
    for _ in 0..3 {
        let r = hsync_get(&s, "/proxy/counter", &old, &[]);
        let n: u64 = r.header("X-Counter").expect("X-Counter").parse().unwrap();
        let page = Upstream::page(n);
        assert!(page != old, "the upstream must regenerate its page");
        assert!(decode(&old, &r) == page, "request {n}: rebuilt page differs");
        assert!(r.body.len() * 10 < page.len(), "delta of {} bytes for a {}-byte page", r.body.len(), page.len());
        old = page;
    }
    assert_eq!(up.count(), 4);
    s.finish();
}

fn response_headers(kind: ServerKind) {
    let site = Site::new();
    let (old, new) = (read(corpus().join("blog-home/029.html")), read(corpus().join("blog-home/030.html")));
    site.put("page.html", &new);
    let Some(s) = start(kind, &site.options()) else { return };

    let plain = http::get(s.port, "/page.html", &[]);
    assert_untouched(&plain, &new, "plain GET");
    assert_eq!(plain.header("Content-Length"), Some(new.len().to_string().as_str()));
    let etag = plain.header("ETag").expect("static files have an ETag").to_string();
    assert!(!etag.starts_with("W/"), "static ETag is strong: {etag}");

    let r = hsync_get(&s, "/page.html", &old, &[]);
    assert!(decode(&old, &r) == new);
    assert_eq!(r.header_all("Content-Encoding").as_deref(), Some("hsync"), "exactly one coding");
    assert_eq!(r.header("Content-Length"), None, "Content-Length must go");
    assert!(r.chunked, "HTTP/1.1 response of unknown length is chunked");
    assert_eq!(r.header("Accept-Ranges"), None, "Accept-Ranges must go");
    let vary = r.header_all("Vary").expect("Vary");
    for name in ["Accept-Encoding", "Hsync-Signature"] {
        assert!(vary.split(',').any(|v| v.trim().eq_ignore_ascii_case(name)), "Vary {vary:?} lacks {name}");
    }
    assert_eq!(r.header("ETag"), Some(format!("W/{etag}").as_str()), "ETag made weak");
    assert_eq!(r.header("Content-Type").map(|t| t.starts_with("text/html")), Some(true));

    // the ratio for the access log
    let ratio_logged = (0..100).any(|_| {
        let log = s.access_log_text();
        // after the request line: status, bytes, ratio (then possibly the coding)
        let ratio = |l: &str| l.rsplit_once('"').and_then(|(_, rest)| rest.split_whitespace().nth(2)?.parse::<f64>().ok());
        let ok = log.lines().any(|l| ratio(l).is_some_and(|x| x > 10.0));
        if !ok {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        ok
    });
    assert!(ratio_logged, "no hsync ratio in the access log:\n{}", s.access_log_text());
    s.finish();
}

fn if_none_match_304(kind: ServerKind) {
    let site = Site::new();
    let (old, new) = (read(corpus().join("pages/igvita/v1.html")), read(corpus().join("pages/igvita/v2.html")));
    site.put("page.html", &new);
    let Some(s) = start(kind, &site.options()) else { return };
    let r = hsync_get(&s, "/page.html", &old, &[]);
    assert!(decode(&old, &r) == new);
    let weak = r.header("ETag").expect("ETag").to_string();
    let strong = weak.strip_prefix("W/").expect("weak ETag").to_string();
    for tag in [&weak, &strong] {
        let r = hsync_get(&s, "/page.html", &new, &[("If-None-Match", tag.as_str())]);
        assert_eq!(r.status, 304, "If-None-Match: {tag}");
        assert!(r.body.is_empty());
        // as a client without hsync would
        let r = http::get(s.port, "/page.html", &[("If-None-Match", tag.as_str())]);
        assert_eq!(r.status, 304, "plain If-None-Match: {tag}");
    }
    let r = hsync_get(&s, "/page.html", &old, &[("If-None-Match", "W/\"other\"")]);
    assert!(decode(&old, &r) == new, "a different tag gets the delta");
    s.finish();
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data).read_to_end(&mut out).expect("gunzip");
    out
}

fn with_gzip(kind: ServerKind) {
    let site = Site::new();
    let (old, new) = (read(corpus().join("blog-home/010.html")), read(corpus().join("blog-home/011.html")));
    site.put("page.html", &new);
    let Some(s) = start(kind, &Options { gzip: true, ..site.options() }) else { return };
    let sig = sig_header(&old);

    let r = http::get(s.port, "/page.html", &[("Accept-Encoding", "gzip, hsync"), ("Hsync-Signature", &sig)]);
    assert_eq!(r.header_all("Content-Encoding").as_deref(), Some("hsync"), "hsync only, not gzip on top");
    assert!(decode(&old, &r) == new);

    let r = http::get(s.port, "/page.html", &[("Accept-Encoding", "gzip"), ("Hsync-Signature", &sig)]);
    assert_eq!(r.header_all("Content-Encoding").as_deref(), Some("gzip"));
    assert!(gunzip(&r.body) == new, "gzip body");

    let r = http::get(s.port, "/page.html", &[("Accept-Encoding", "gzip, hsync")]);
    assert_eq!(r.header_all("Content-Encoding").as_deref(), Some("gzip"), "no signature: gzip");
    assert!(gunzip(&r.body) == new, "gzip body");
    s.finish();
}

/// Deterministic text of `len` bytes.
fn text(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "delta",
        "block",
        "rolling",
        "<p>",
        "</p>\n",
        "signature",
        "cache",
        "server",
        "the",
        "of",
        "and",
        "nginx",
        "apache",
        "page",
        "version",
        "<div class=\"x\">",
    ];
    let mut out = Vec::with_capacity(len + 32);
    let mut x = seed | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(WORDS[(x & 15) as usize].as_bytes());
        out.push(b' ');
        if x >> 60 == 0 {
            out.extend_from_slice(format!("{}", x % 1_000_000).as_bytes());
        }
    }
    out.truncate(len);
    out
}

fn large_body(kind: ServerKind) {
    let site = Site::new();
    let old = text(52 << 20, 7);
    let mut new = old.clone();
    new.splice(10 << 20..10 << 20, b"<p>inserted paragraph</p>".iter().copied());
    new[30 << 20..(30 << 20) + 5000].copy_from_slice(&text(5000, 99));
    new.drain(45 << 20..(45 << 20) + 1000);
    new.extend_from_slice(&text(100_000, 3));
    site.put("big.html", &new);
    let (page_old, page_new) = (read(corpus().join("pages/cnn/v1.html")), read(corpus().join("pages/cnn/v2.html")));
    site.put("page.html", &page_new);
    let Some(s) = start(kind, &site.options()) else { return };
    // A page first: what any hsync response costs (the encoder's
    // compression contexts are pooled and kept).
    let r = hsync_get(&s, "/page.html", &page_old, &[]);
    assert!(decode(&page_old, &r) == page_new);
    let before = s.peak_rss_kb();
    let r = hsync_get(&s, "/big.html", &old, &[]);
    let after = s.peak_rss_kb();
    assert!(decode(&old, &r) == new, "50 MB page rebuilt differs");
    assert!(r.body.len() < new.len() / 20, "delta of {} bytes", r.body.len());
    eprintln!("{}: peak RSS {before} KiB after a 119 KB page, {after} KiB after 52 MB", kind.name());
    // Streamed: a 52 MB body costs about what a page does (the encoder's
    // window, and what the server reads at a time: httpd maps files in
    // 4 MiB pieces), never the body.
    assert!(after < before + 8 * 1024, "server peak RSS grew from {before} to {after} KiB");
    s.finish();
}

fn range_request(kind: ServerKind) {
    let site = Site::new();
    let (old, new) = (read(corpus().join("pages/cnn/v1.html")), read(corpus().join("pages/cnn/v2.html")));
    site.put("page.html", &new);
    let Some(s) = start(kind, &site.options()) else { return };
    let r = hsync_get(&s, "/page.html", &old, &[("Range", "bytes=100-199")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.content_encoding(), None);
    assert_eq!(r.header("Content-Range"), Some(format!("bytes 100-199/{}", new.len()).as_str()));
    assert!(r.body == new[100..200]);
    s.finish();
}

/// A HEAD with a signature gets every header field of the hsync GET
/// (RFC 9110 §9.3.2): `Content-Encoding: hsync` (so gzip / mod_deflate,
/// when on, stay out as they do for the GET), no `Content-Length`, the weak
/// ETag, the Vary; and no body. Without a signature: the plain fields.
fn head_request(kind: ServerKind) {
    let site = Site::new();
    let (old, new) = (read(corpus().join("pages/cnn/v1.html")), read(corpus().join("pages/cnn/v2.html")));
    site.put("page.html", &new);
    let up = Upstream::start();
    let sig = sig_header(&old);
    for gzip in [false, true] {
        let Some(s) = start(kind, &Options { upstream: Some(up.addr), gzip, ..site.options() }) else { return };
        let ae = if gzip { "gzip, hsync" } else { "hsync" };
        let h = [("Accept-Encoding", ae), ("Hsync-Signature", sig.as_str())];
        for path in ["/page.html", "/proxy/hdr/plain"] {
            let what = format!("gzip {gzip}, {path}");
            let plain = http::get(s.port, path, &[]);
            let get = http::get(s.port, path, &h);
            assert_eq!(get.content_encoding(), Some("hsync"), "{what}: GET");
            let r = http::request(s.port, "HEAD", path, &h);
            assert_eq!(r.status, 200, "{what}");
            assert!(r.body.is_empty(), "{what}");
            assert_eq!(lines(&r, "Content-Encoding"), ["hsync"], "{what}: {:?}", r.headers);
            assert_eq!(r.header("Content-Length"), None, "{what}: {:?}", r.headers);
            assert_eq!(r.header("Accept-Ranges"), None, "{what}: {:?}", r.headers);
            assert_eq!(vary_names(&r), HSYNC_VARY, "{what}: {:?}", r.headers);
            // the fields of the GET, which the HEAD stands for
            assert_eq!(r.header("ETag"), get.header("ETag"), "{what}: {:?}", r.headers);
            assert_eq!(vary_names(&r), vary_names(&get), "{what}");
            assert_eq!(r.header("Content-Type"), get.header("Content-Type"), "{what}");
            if let Some(tag) = plain.header("ETag") {
                assert_eq!(r.header("ETag"), Some(format!("W/{tag}").as_str()), "{what}: strong tag made weak");
            }
            // no signature: the plain response's fields
            let r = http::request(s.port, "HEAD", path, &[("Accept-Encoding", "hsync")]);
            assert_eq!(r.status, 200, "{what}");
            assert_eq!(r.content_encoding(), None, "{what}");
            assert_eq!(r.header("Content-Length"), plain.header("Content-Length"), "{what}");
            assert_eq!(r.header("ETag"), plain.header("ETag"), "{what}");
            assert_eq!(vary_names(&r), HSYNC_VARY, "{what}: {:?}", r.headers);
        }
        s.finish();
    }
}

/// A 304 to a request with a signature carries the weak ETag and the Vary
/// the hsync response would have had (RFC 9110 §15.4.5); one without a
/// signature keeps the plain response's strong tag, with the Vary.
fn not_modified_validators(kind: ServerKind) {
    let site = Site::new();
    let (old, new) = (read(corpus().join("pages/igvita/v1.html")), read(corpus().join("pages/igvita/v2.html")));
    site.put("page.html", &new);
    let Some(s) = start(kind, &site.options()) else { return };
    let strong = http::get(s.port, "/page.html", &[]).header("ETag").expect("ETag").to_string();
    let weak = format!("W/{strong}");

    let r = hsync_get(&s, "/page.html", &old, &[("If-None-Match", &weak)]);
    assert_eq!(r.status, 304, "{:?}", r.headers);
    assert_eq!(lines(&r, "ETag"), [weak.as_str()], "{:?}", r.headers);
    assert_eq!(vary_names(&r), HSYNC_VARY, "{:?}", r.headers);
    assert_eq!(r.content_encoding(), None, "a 304 has no coding");

    let r = http::get(s.port, "/page.html", &[("If-None-Match", &strong)]);
    assert_eq!(r.status, 304, "{:?}", r.headers);
    assert_eq!(lines(&r, "ETag"), [strong.as_str()], "{:?}", r.headers);
    assert_eq!(vary_names(&r), HSYNC_VARY, "{:?}", r.headers);
    s.finish();
}

fn no_transform(kind: ServerKind) {
    let site = Site::new();
    let (old, new) = (read(corpus().join("pages/cnn/v1.html")), read(corpus().join("pages/cnn/v2.html")));
    site.put("nt/page.html", &new);
    let up = Upstream::start();
    let Some(s) = start(kind, &Options { upstream: Some(up.addr), ..site.options() }) else { return };
    let r = hsync_get(&s, "/nt/page.html", &old, &[]);
    assert_untouched(&r, &new, "static no-transform");
    let page = Upstream::page(0);
    let r = hsync_get(&s, "/proxy/nt", &Upstream::page(1), &[]);
    assert_untouched(&r, &page, "proxied no-transform");
    s.finish();
}

fn already_encoded(kind: ServerKind) {
    let site = Site::new();
    let body = Upstream::gzip_body();
    site.put("pre/page.html", &body);
    let up = Upstream::start();
    let Some(s) = start(kind, &Options { upstream: Some(up.addr), ..site.options() }) else { return };
    let old = text(5000, 1);
    for path in ["/pre/page.html", "/proxy/gzip"] {
        let r = hsync_get(&s, path, &old, &[]);
        assert_untouched(&r, &body, path);
        assert_eq!(r.header_all("Content-Encoding").as_deref(), Some("gzip"), "{path}");
    }
    s.finish();
}

fn not_engaged(kind: ServerKind) {
    let site = Site::new();
    let (old, new) = (read(corpus().join("pages/igvita/v1.html")), read(corpus().join("pages/igvita/v2.html")));
    site.put("off/page.html", &new);
    site.put("page.txt", &new);
    site.put("page.html", &new);
    site.put("small.html", &new[..200]);
    let Some(s) = start(kind, &site.options()) else { return };
    let sig = sig_header(&old);
    for (path, h) in [
        ("/off/page.html", vec![("Accept-Encoding", "hsync"), ("Hsync-Signature", sig.as_str())]),
        ("/page.txt", vec![("Accept-Encoding", "hsync"), ("Hsync-Signature", sig.as_str())]),
        ("/page.html", vec![("Accept-Encoding", "gzip, br"), ("Hsync-Signature", sig.as_str())]),
        ("/page.html", vec![("Accept-Encoding", "hsync;q=0"), ("Hsync-Signature", sig.as_str())]),
        ("/page.html", vec![("Accept-Encoding", "hsync")]),
        ("/page.html", vec![("Hsync-Signature", sig.as_str())]),
    ] {
        let r = http::get(s.port, path, &h);
        let want = if path == "/small.html" { &new[..200] } else { &new[..] };
        assert_untouched(&r, want, &format!("{path} {h:?}"));
    }
    let r = hsync_get(&s, "/small.html", &old[..200], &[]);
    assert_untouched(&r, &new[..200], "below the minimum length");
    assert_eq!(s.log_count(INVALID), 0);
    s.finish();
}

/// Signature header values that must all be rejected.
fn bad_signatures(page: &[u8]) -> Vec<(&'static str, String)> {
    let good = Signature::compute(page).to_bytes();
    let enc = |b: &[u8]| encode_signature_header(b);
    let mut v = vec![
        ("bad base64", "!!not*base64$$".to_string()),
        ("empty", String::new()),
        ("truncated", enc(&good[..good.len() / 2])),
        ("truncated by one byte", enc(&good[..good.len() - 1])),
        ("text cut in a base64 quantum", enc(&good)[..enc(&good).len() - 1].to_string()),
    ];
    let mut b = good.clone();
    b[0] ^= 0x20;
    v.push(("wrong magic", enc(&b)));
    let mut b = good.clone();
    b[2] ^= 0x01;
    v.push(("bit flip in the version", enc(&b)));
    let mut b = good.clone();
    b[3] ^= 0x80;
    v.push(("bit flip in the widths", enc(&b)));
    v.push(("oversized", enc(&text(DEFAULT_MAX_SIGNATURE + 400, 5))));
    v.push(("far oversized", "A".repeat(8000)));
    // absurd block count: the instance length of a 3000-byte page made huge
    let small_sig = Signature::compute(&text(3000, 8));
    let small = small_sig.to_bytes();
    let (len, absurd) = (varint(3000), varint(3000 * 1_000_000_000_000));
    // magic, version, widths, sub-blocks, seed, then the block length
    let at = 14 + varint(small_sig.block_len() as u64).len();
    assert_eq!(small[at..at + len.len()], len[..], "instance length varint in the signature");
    let mut b = small[..at].to_vec();
    b.extend_from_slice(&absurd);
    b.extend_from_slice(&small[at + len.len()..]);
    v.push(("absurd block count", enc(&b)));
    v.push(("garbage of a plausible size", enc(&text(900, 11))));
    // Parameters the format allows but a server refuses (core/src/limits.rs):
    // a CPU attack (1-bit weak sums, 16-byte blocks: every position a
    // candidate) and a memory attack (16 MiB blocks, which the encoder
    // would buffer two of).
    for (what, block_len, weak_bits, strong_bits, instance_len) in
        [("1-bit weak sums and 16-byte blocks", 16u32, 1u8, 31u8, 16u64 << 10), ("16 MiB blocks", 1 << 24, 20, 20, 64 << 20)]
    {
        let params = SigParams { block_len, weak_bits, strong_bits, sub_log: 0, sub_bits: 0 };
        let blocks = instance_len.div_ceil(block_len as u64) as usize;
        let sig = Signature { params, seed: 1, instance_len, weak: vec![0; blocks], strong: vec![0; blocks], sub: vec![] };
        v.push((what, enc(&sig.to_bytes())));
    }
    for (what, value) in &v {
        assert!(decode_signature_header(value.as_bytes(), DEFAULT_MAX_SIGNATURE).is_err(), "test vector {what:?} is accepted by the core");
    }
    v
}

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

fn bad_signature(kind: ServerKind) {
    let site = Site::new();
    let (old, new) = (read(corpus().join("blog-home/020.html")), read(corpus().join("blog-home/021.html")));
    site.put("page.html", &new);
    let up = Upstream::start();
    let Some(s) = start(kind, &Options { upstream: Some(up.addr), ..site.options() }) else { return };
    let mut logged = 0;
    for (what, value) in bad_signatures(&old) {
        for (path, body) in [("/page.html", &new), ("/proxy/corpus/blog-home/021.html", &new)] {
            let r = http::get(s.port, path, &[("Accept-Encoding", "hsync"), ("Hsync-Signature", &value)]);
            assert_untouched(&r, body, &format!("{what} ({path})"));
            assert_eq!(vary_names(&r), HSYNC_VARY, "{what} ({path}): {:?}", r.headers);
            let n = s.wait_log_count(INVALID, logged + 1);
            assert!(n > logged, "{what} ({path}): no {INVALID:?} line in the error log");
            logged = n;
        }
    }
    // the server still encodes afterwards
    let r = hsync_get(&s, "/page.html", &old, &[]);
    assert!(decode(&old, &r) == new);
    s.finish();
}

fn max_signature_setting(kind: ServerKind) {
    let site = Site::new();
    let (old, new) = (read(corpus().join("blog-home/020.html")), read(corpus().join("blog-home/021.html")));
    site.put("page.html", &new);
    let Some(s) = start(kind, &Options { max_signature: Some(300), ..site.options() }) else { return };
    let sig = Signature::compute(&old).to_bytes();
    assert!(sig.len() > 300, "signature of {} bytes", sig.len());
    let r = hsync_get(&s, "/page.html", &old, &[]);
    assert_untouched(&r, &new, "signature above hsync_max_signature");
    assert!(s.wait_log_count(INVALID, 1) >= 1, "no {INVALID:?} line");
    let small = text(1000, 4);
    let r = hsync_get(&s, "/page.html", &small, &[]);
    assert!(decode(&small, &r) == new, "a signature within the limit is used");
    s.finish();
}

/// A server with the test upstream behind `/proxy/`, and a site with
/// `page.html` (the upstream's `page(0)` too).
fn with_upstream(kind: ServerKind, f: impl FnOnce(&mut Options)) -> Option<(Site, Upstream, RunningServer)> {
    let site = Site::new();
    site.put("page.html", &Upstream::page(0));
    let up = Upstream::start();
    let mut opts = Options { upstream: Some(up.addr), ..site.options() };
    f(&mut opts);
    let s = start(kind, &opts)?;
    Some((site, up, s))
}

/// Two `Vary` lines from the upstream (`Cookie`, `User-Agent`): one list on
/// the hsync response, with the hsync names after them, and the same on
/// the plain response.
fn vary_lines_merged(kind: ServerKind) {
    let Some((_site, _up, s)) = with_upstream(kind, |_| {}) else { return };
    let old = Upstream::page(1);
    let want = ["cookie", "user-agent", "accept-encoding", "hsync-signature"];
    let r = hsync_get(&s, "/proxy/hdr/vary2", &old, &[]);
    assert!(decode(&old, &r) == Upstream::page(0));
    assert_eq!(vary_names(&r), want, "{:?}", r.headers);
    let r = http::get(s.port, "/proxy/hdr/vary2", &[]);
    assert_untouched(&r, &Upstream::page(0), "plain");
    assert_eq!(vary_names(&r), want, "{:?}", r.headers);
    s.finish();
}

/// `no-transform` on the second `Cache-Control` line is seen: not coded,
/// the body intact, the response untouched (no Vary added).
fn no_transform_second_line(kind: ServerKind) {
    let Some((_site, _up, s)) = with_upstream(kind, |_| {}) else { return };
    let r = hsync_get(&s, "/proxy/hdr/cc2", &Upstream::page(1), &[]);
    assert_untouched(&r, &Upstream::page(0), "no-transform on a second line");
    assert!(!vary_names(&r).iter().any(|n| n == "hsync-signature"), "{:?}", r.headers);
    s.finish();
}

/// `Vary: *` stays `*`, alone, on the hsync response and the plain one.
fn vary_star(kind: ServerKind) {
    let Some((_site, _up, s)) = with_upstream(kind, |_| {}) else { return };
    let old = Upstream::page(1);
    let r = hsync_get(&s, "/proxy/hdr/vary-star", &old, &[]);
    assert!(decode(&old, &r) == Upstream::page(0));
    assert_eq!(vary_names(&r), ["*"], "{:?}", r.headers);
    let r = http::get(s.port, "/proxy/hdr/vary-star", &[]);
    assert_untouched(&r, &Upstream::page(0), "plain");
    assert_eq!(vary_names(&r), ["*"], "{:?}", r.headers);
    s.finish();
}

/// A static file's strong ETag becomes `W/"..."` on the hsync response; an
/// upstream's weak tag is sent as it is.
fn etags(kind: ServerKind) {
    let Some((_site, _up, s)) = with_upstream(kind, |_| {}) else { return };
    let old = Upstream::page(1);
    let strong = http::get(s.port, "/page.html", &[]).header("ETag").expect("static ETag").to_string();
    assert!(strong.starts_with('"'), "static ETag is strong: {strong}");
    let r = hsync_get(&s, "/page.html", &old, &[]);
    assert!(decode(&old, &r) == Upstream::page(0));
    assert_eq!(lines(&r, "ETag"), [format!("W/{strong}").as_str()], "{:?}", r.headers);

    let weak = hdr_value("weak-etag", "ETag");
    let r = hsync_get(&s, "/proxy/hdr/weak-etag", &old, &[]);
    assert!(decode(&old, &r) == Upstream::page(0));
    assert_eq!(lines(&r, "ETag"), [weak], "{:?}", r.headers);
    let r = http::get(s.port, "/proxy/hdr/weak-etag", &[]);
    assert_eq!(lines(&r, "ETag"), [weak], "plain: {:?}", r.headers);
    s.finish();
}

/// An upstream's `Content-Encoding: identity` makes way for exactly one
/// `Content-Encoding: hsync`, and the body decodes.
fn identity_coding(kind: ServerKind) {
    let Some((_site, _up, s)) = with_upstream(kind, |_| {}) else { return };
    let old = Upstream::page(1);
    let r = hsync_get(&s, "/proxy/hdr/identity", &old, &[]);
    assert_eq!(lines(&r, "Content-Encoding"), ["hsync"], "{:?}", r.headers);
    assert!(decode(&old, &r) == Upstream::page(0));
    s.finish();
}

/// Digests of the identity body (`Repr-Digest`, `Content-Digest`, `Digest`)
/// are removed from the hsync response and kept on a plain one.
fn digest_fields(kind: ServerKind) {
    let Some((_site, _up, s)) = with_upstream(kind, |_| {}) else { return };
    let old = Upstream::page(1);
    let names = ["Repr-Digest", "Content-Digest", "Digest"];
    let r = hsync_get(&s, "/proxy/hdr/digest", &old, &[]);
    assert!(decode(&old, &r) == Upstream::page(0));
    for d in names {
        assert!(lines(&r, d).is_empty(), "{d} describes the identity body: {:?}", r.headers);
    }
    let r = http::get(s.port, "/proxy/hdr/digest", &[]);
    assert_untouched(&r, &Upstream::page(0), "plain");
    for d in names {
        assert_eq!(lines(&r, d), [hdr_value("digest", d)], "{d} on the plain response: {:?}", r.headers);
    }
    s.finish();
}

/// A plain request for a page hsync could apply to gets `Vary:
/// Accept-Encoding, Hsync-Signature` (so that a shared cache keeps the
/// plain copy and the delta apart), static or proxied; with `hsync_vary
/// off` / `HsyncVary Off` it does not, while an hsync response still does.
fn vary_on_plain_responses(kind: ServerKind) {
    for vary in [true, false] {
        let Some((_site, _up, s)) = with_upstream(kind, |o| o.vary = vary) else { return };
        let old = Upstream::page(1);
        for path in ["/page.html", "/proxy/hdr/plain"] {
            for h in [vec![], vec![("Accept-Encoding", "gzip")], vec![("Accept-Encoding", "hsync")]] {
                let r = http::get(s.port, path, &h);
                assert_untouched(&r, &Upstream::page(0), path);
                let want: &[&str] = if vary { &HSYNC_VARY } else { &[] };
                assert_eq!(vary_names(&r), want, "vary {vary}, {path} {h:?}: {:?}", r.headers);
            }
            let r = hsync_get(&s, path, &old, &[]);
            assert!(decode(&old, &r) == Upstream::page(0));
            assert_eq!(vary_names(&r), HSYNC_VARY, "vary {vary}, {path}: hsync response {:?}", r.headers);
        }
        s.finish();
    }
}

/// Through a real shared cache (Squid, an accelerator in front of the
/// server) on a page it may keep for a minute: a client with a signature
/// gets the delta, never the plain copy Squid holds, and a plain client the
/// plain page, never a delta, in either order; the repeated plain request
/// is answered from Squid's cache (its access log says a hit and the
/// upstream sees no request), so the cache is really in play.
fn through_squid(kind: ServerKind) {
    const PATH: &str = "/proxy/hdr/max-age";
    let up_path = PATH.strip_prefix("/proxy").unwrap();
    let page = Upstream::page(0);
    let old = Upstream::page(1);
    let sig = sig_header(&old);
    let hsync = [("Accept-Encoding", "gzip, hsync"), ("Hsync-Signature", sig.as_str())];
    for plain_first in [true, false] {
        let Some((_site, up, s)) = with_upstream(kind, |_| {}) else { return };
        if !squid::available() {
            return;
        }
        let sq = Squid::start(s.addr());
        let order = if plain_first { "plain first" } else { "hsync first" };
        let mut log = 0;
        // One request through Squid; returns the response and Squid's verdict.
        let mut fetch = |h: &[(&str, &str)]| {
            let r = http::get(sq.port, PATH, h);
            log += 1;
            let lines = sq.wait_access_log(log);
            assert_eq!(lines.len(), log, "{order}: Squid logged {lines:?}");
            (r, lines[log - 1].clone())
        };
        let check_plain = |r: &Response, what: &str| {
            assert_untouched(r, &page, &format!("{order}: {what}"));
            assert!(varies_on_hsync(r), "{order}: {what}: {:?}", r.headers);
        };
        let check_hsync = |r: &Response, what: &str| {
            assert!(decode(&old, r) == page, "{order}: {what}: rebuilt page differs");
            assert!(r.body.len() * 10 < page.len(), "{order}: {what}: {} bytes is no delta", r.body.len());
        };
        if plain_first {
            let (r, l) = fetch(&[]);
            check_plain(&r, "first plain request");
            assert!(l.starts_with("TCP_MISS/200"), "{order}: {l}");
            let (r, l) = fetch(&hsync);
            check_hsync(&r, "hsync request after a plain one");
            assert!(l.starts_with("TCP_MISS/200"), "{order}: the plain copy must not answer a signature: {l}");
        } else {
            let (r, l) = fetch(&hsync);
            check_hsync(&r, "first hsync request");
            assert!(l.starts_with("TCP_MISS/200"), "{order}: {l}");
            let (r, l) = fetch(&[]);
            check_plain(&r, "plain request after an hsync one");
            assert!(l.starts_with("TCP_MISS/200"), "{order}: the delta must not answer a plain request: {l}");
        }
        assert_eq!(up.hits(up_path), 2, "{order}: both variants from the origin");
        // The plain variant again: from Squid's memory, not the origin.
        let (r, l) = fetch(&[]);
        check_plain(&r, "repeated plain request");
        assert!(l.starts_with("TCP_MEM_HIT/200") || l.starts_with("TCP_HIT/200"), "{order}: plain copy not cached: {l}");
        assert_eq!(up.hits(up_path), 2, "{order}: the repeated plain request reached the origin");
        // And a client with the same signature: the delta (Squid may keep
        // it too: it is the same for the same signature).
        let (r, _) = fetch(&hsync);
        check_hsync(&r, "repeated hsync request");
        eprintln!("{} {order}: Squid's access log:\n{}", kind.name(), sq.access_log().join("\n"));
        drop(sq);
        s.finish();
    }
}

hsync_tests::server_cases!(
    static_corpus_roundtrip,
    proxy_corpus_roundtrip,
    proxy_regenerated_page,
    response_headers,
    if_none_match_304,
    with_gzip,
    large_body,
    range_request,
    head_request,
    not_modified_validators,
    no_transform,
    already_encoded,
    not_engaged,
    bad_signature,
    max_signature_setting,
    vary_lines_merged,
    no_transform_second_line,
    vary_star,
    etags,
    identity_coding,
    digest_fields,
    vary_on_plain_responses,
    through_squid,
);
