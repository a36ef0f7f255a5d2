//! nginx with `hsync_dictionary on` (RFC 9842 Compression Dictionary
//! Transport, docs/protocol.md §7) over plain HTTP, with the crate's raw
//! client: what a browser would be sent, checked field by field, and the
//! dcz bodies decoded with hsync-core. The browser itself is
//! `tests/dictionary_browser.rs`; the Apache arm of these checks lives
//! with the Apache module.
//!
//! Pages: `/fresh/` (static, `expires 1h`: its own dictionary), and
//! `/proxy/` to a settable [`Origin`] (generated `no-cache` pages: they
//! link the last stored version, served from the module's own URL).

use base64::Engine;
use hsync_core::codec::dcz;
use hsync_core::http::encode_signature_header;
use hsync_core::store::{hex, sha256};
use hsync_core::Signature;
use hsync_tests::http::{self, Response};
use hsync_tests::origin::Origin;
use hsync_tests::{start, temp_dir, Dictionary, Options, RunningServer, ServerKind, BAD_LOG_PATTERNS};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const PREFIX: &str = "/.well-known/hsync/dictionary/";
/// What a current Chromium sends.
const BROWSER_AE: &str = "gzip, deflate, br, zstd, dcb, dcz";
const NO_CACHE: [&str; 2] = ["Content-Type: text/html; charset=utf-8", "Cache-Control: no-cache"];

/// A document root with `fresh/`; removed on drop.
struct Site {
    dir: PathBuf,
}

impl Site {
    fn new() -> Site {
        let dir = temp_dir("dict-docroot");
        std::fs::create_dir_all(dir.join("fresh")).unwrap();
        Site { dir }
    }

    fn put(&self, rel: &str, data: &[u8]) {
        std::fs::write(self.dir.join(rel), data).unwrap();
    }

    fn options(&self, origin: &Origin) -> Options {
        Options { upstream: Some(origin.addr), dictionary: Some(Dictionary::default()), ..Options::new(&self.dir) }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if std::env::var_os("HSYNC_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Version `n` of a page of about 30 KB (versions differ in a few places).
fn page(n: u32) -> Vec<u8> {
    let mut s = String::from("<!DOCTYPE html>\n<html><head><title>A page</title></head><body>\n");
    for i in 0..400u32 {
        if i == 200 {
            s.push_str(&format!("<p class=\"news\">Version {n} of this page.</p>\n"));
        }
        s.push_str(&format!("<p id=\"p{i}\">Paragraph {i}: some text that stays the same {}.</p>\n", i * 7919 % 1000));
    }
    s.push_str(&format!("<footer>version {n}</footer></body></html>\n"));
    s.into_bytes()
}

fn named(dict: &[u8]) -> String {
    format!(":{}:", base64::engine::general_purpose::STANDARD.encode(sha256(dict)))
}

fn dict_url(dict: &[u8]) -> String {
    format!("{PREFIX}{}", hex(&sha256(dict)))
}

fn link_element(dict: &[u8]) -> String {
    format!("<link rel=\"compression-dictionary\" href=\"{}\">", dict_url(dict))
}

/// The body without the inserted `<link rel="compression-dictionary">`
/// elements, and how many there were.
fn without_links(body: &[u8]) -> (Vec<u8>, usize) {
    let needle = format!("<link rel=\"compression-dictionary\" href=\"{PREFIX}");
    let text = String::from_utf8_lossy(body).into_owned();
    let (mut out, mut rest, mut n) = (String::new(), text.as_str(), 0);
    while let Some(i) = rest.find(&needle) {
        out.push_str(&rest[..i]);
        rest = &rest[i + rest[i..].find('>').unwrap() + 1..];
        n += 1;
    }
    out.push_str(rest);
    (out.into_bytes(), n)
}

/// `body` is `page` with `links` inserted elements (and only that).
fn assert_linked(body: &[u8], page: &[u8], links: usize, what: &str) {
    let (rest, n) = without_links(body);
    assert!(rest == page, "{what}: not the page ({} B without links, want {} B)", rest.len(), page.len());
    assert_eq!(n, links, "{what}: inserted elements");
}

/// GET as a browser holding `dict` would.
fn dcz_get(s: &RunningServer, path: &str, dict: &[u8]) -> Response {
    let ad = named(dict);
    http::get(s.port, path, &[("Accept-Encoding", BROWSER_AE), ("Available-Dictionary", &ad)])
}

/// The body of a dcz response, decoded against `dict`.
fn decode(dict: &[u8], r: &Response, what: &str) -> Vec<u8> {
    assert_eq!(r.status, 200, "{what}: {:?}", r.headers);
    assert_eq!(r.content_encoding(), Some("dcz"), "{what}: {:?}", r.headers);
    assert!(vary(r).iter().any(|v| v == "available-dictionary"), "{what}: Vary {:?}", r.header_all("Vary"));
    dcz::decode(dict, &r.body, 1 << 26).unwrap_or_else(|e| panic!("{what}: dcz decoding failed: {e}"))
}

fn vary(r: &Response) -> Vec<String> {
    r.header_all("Vary").unwrap_or_default().split(',').map(|v| v.trim().to_ascii_lowercase()).collect()
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body).read_to_end(&mut out).expect("gunzip");
    out
}

/// The access log line of the last request for `target`, once written.
fn last_log_line(s: &RunningServer, target: &str) -> String {
    let needle = format!("\"GET {target} HTTP/1.1\"");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(l) = s.access_log_text().lines().rfind(|l| l.contains(&needle)) {
            return l.to_string();
        }
        assert!(Instant::now() < deadline, "no access log line for {target}:\n{}", s.access_log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn store_dir(s: &RunningServer) -> PathBuf {
    s.dir.join("store")
}

/// Files in a subdirectory of the store (`v`: versions, `p`: keys).
fn count(s: &RunningServer, sub: &str) -> usize {
    std::fs::read_dir(store_dir(s).join(sub)).map(|d| d.count()).unwrap_or(0)
}

/// nginx tests are skipped (`HSYNC_SKIP_SERVER_TESTS`, as [`start`] reads it).
fn skipped() -> bool {
    std::env::var("HSYNC_SKIP_SERVER_TESTS").is_ok_and(|v| v == "1" || v.split(',').any(|k| k.trim().eq_ignore_ascii_case("nginx")))
}

/// (1) A static page made fresh by `expires` (the headers filter runs
/// before the module's, so the core sees its Cache-Control) is its own
/// dictionary; once the file changes, a browser naming the old version
/// gets dcz, which decodes to the new file; the access log says so.
#[test]
fn fresh_static_page_then_dcz() {
    let (site, origin) = (Site::new(), Origin::start());
    let Some(s) = start(ServerKind::Nginx, &site.options(&origin)) else { return };
    let (v1, v2) = (page(1), page(2));
    site.put("fresh/a.html", &v1);

    let r = http::get(s.port, "/fresh/a.html", &[("Accept-Encoding", BROWSER_AE)]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, v1, "sent as it is");
    assert_eq!(r.content_encoding(), None);
    assert_eq!(r.header("Content-Length"), Some(v1.len().to_string().as_str()), "the length stays: {:?}", r.headers);
    assert!(r.header("Cache-Control").is_some_and(|c| c.contains("max-age=3600")), "{:?}", r.headers);
    assert_eq!(r.header("Use-As-Dictionary"), Some("match=\"/fresh/a.html\", match-dest=(\"document\")"));
    assert!(vary(&r).iter().any(|v| v == "available-dictionary"), "{:?}", r.headers);
    assert!(last_log_line(&s, "/fresh/a.html").ends_with(" coding="), "identity: an empty coding");
    assert_eq!(count(&s, "v"), 1, "stored once");

    site.put("fresh/a.html", &v2);
    let r = dcz_get(&s, "/fresh/a.html", &v1);
    assert!(decode(&v1, &r, "fresh page") == v2);
    assert!(r.chunked && r.header("Content-Length").is_none(), "{:?}", r.headers);
    assert!(r.header("ETag").is_some_and(|e| e.starts_with("W/")), "weak ETag: {:?}", r.headers);
    assert!(r.header("Use-As-Dictionary").is_some(), "still its own dictionary");
    assert!(r.body.len() < v2.len() / 20, "{} B of dcz for a {} B page", r.body.len(), v2.len());
    assert!(last_log_line(&s, "/fresh/a.html").ends_with(" coding=dcz"), "{}", last_log_line(&s, "/fresh/a.html"));
    eprintln!("fresh page: {} B as dcz, {} B as it is", r.body.len(), v2.len());

    // hsync still works beside it, and is logged as such.
    let sig = encode_signature_header(&Signature::compute(&v1).to_bytes());
    let r = http::get(s.port, "/fresh/a.html", &[("Accept-Encoding", "hsync"), ("Hsync-Signature", &sig)]);
    assert_eq!(r.content_encoding(), Some("hsync"));
    assert!(last_log_line(&s, "/fresh/a.html").ends_with(" coding=hsync"));
    // dcz wins over hsync when both are possible.
    let ad = named(&v1);
    let r =
        http::get(s.port, "/fresh/a.html", &[("Accept-Encoding", "hsync, dcz"), ("Hsync-Signature", &sig), ("Available-Dictionary", &ad)]);
    assert!(decode(&v1, &r, "dcz and hsync") == v2);
    s.finish();
}

/// (2) A no-cache page behind proxy_pass links the last stored version
/// (a `<link>` in its head and a `Link` header); the module serves that
/// version from its own URL, immutable, with its Use-As-Dictionary, and
/// without storing or coding it again; then dcz against it.
#[test]
fn no_cache_proxied_page_links_its_dictionary() {
    let (site, origin) = (Site::new(), Origin::start());
    let Some(s) = start(ServerKind::Nginx, &site.options(&origin)) else { return };
    let (v1, v2) = (page(1), page(2));
    origin.set("/gen.html", &NO_CACHE, &v1);

    let r = http::get(s.port, "/proxy/gen.html", &[("Accept-Encoding", BROWSER_AE)]);
    assert_eq!(r.body, v1, "nothing stored yet: sent as it is");
    assert!(r.header("Link").is_none() && r.header("Use-As-Dictionary").is_none(), "{:?}", r.headers);

    let r = http::get(s.port, "/proxy/gen.html", &[("Accept-Encoding", BROWSER_AE)]);
    let link = r.header("Link").unwrap_or_else(|| panic!("no Link: {:?}", r.headers)).to_string();
    assert_eq!(link, format!("<{}>; rel=\"compression-dictionary\"", dict_url(&v1)));
    let text = String::from_utf8_lossy(&r.body);
    assert!(text.contains(&format!("<head>{}", link_element(&v1))), "the element right after <head>");
    assert_linked(&r.body, &v1, 1, "second load");
    assert!(r.chunked && r.header("Content-Length").is_none(), "the length changed: {:?}", r.headers);
    assert_eq!(r.content_encoding(), None);
    assert!(last_log_line(&s, "/proxy/gen.html").ends_with(" coding="));

    // The dictionary URL: the first body, as stored.
    let url = dict_url(&v1);
    let d = http::get(s.port, &url, &[("Accept-Encoding", BROWSER_AE)]);
    assert_eq!(d.status, 200, "{:?}", d.headers);
    assert!(d.body == v1, "the stored bytes");
    assert_eq!(d.header("Content-Length"), Some(v1.len().to_string().as_str()));
    assert_eq!(d.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(d.header("Cache-Control"), Some("public, max-age=31536000, immutable"));
    assert_eq!(d.header("ETag"), Some(format!("\"{}\"", hex(&sha256(&v1))).as_str()));
    assert_eq!(d.header("Use-As-Dictionary"), Some("match=\"/proxy/gen.html\", match-dest=(\"document\")"));
    assert!(d.header("Vary").is_none() && d.header("Link").is_none(), "not decided on again: {:?}", d.headers);
    assert_eq!(d.header_all("Cache-Control").unwrap().matches("max-age").count(), 1);
    assert!(last_log_line(&s, &url).contains(" 200 "));
    assert_eq!(count(&s, "p"), 1, "only the page has versions, not its dictionary URL");
    assert_eq!(count(&s, "v"), 1, "the same body twice, one version (the inserted link is not stored)");
    // HEAD: the fields, no body.
    let h = http::request(s.port, "HEAD", &url, &[]);
    assert_eq!((h.status, h.header("Content-Length")), (200, Some(v1.len().to_string().as_str())));
    // A query does not change which version the hash names.
    assert!(http::get(s.port, &format!("{url}?x=1"), &[]).body == v1);

    // The page changes; the browser names what it fetched.
    origin.set("/gen.html", &NO_CACHE, &v2);
    let r = dcz_get(&s, "/proxy/gen.html", &v1);
    assert_linked(&decode(&v1, &r, "proxied page"), &v2, 1, "the new version, with one link");
    assert!(r.header("Link").is_some(), "{:?}", r.headers);
    assert!(last_log_line(&s, "/proxy/gen.html").ends_with(" coding=dcz"));
    eprintln!("no-cache page: {} B as dcz, {} B as it is", r.body.len(), v2.len());
    s.finish();
}

/// (3) A dictionary URL the store does not hold, or not a hash at all,
/// is a 404 (never a 5xx); a malformed `Available-Dictionary`, or one
/// naming nothing stored, gets the ordinary response.
#[test]
fn unknown_dictionaries_and_malformed_names() {
    let (site, origin) = (Site::new(), Origin::start());
    let Some(s) = start(ServerKind::Nginx, &site.options(&origin)) else { return };
    let v1 = page(1);
    site.put("fresh/a.html", &v1);
    for target in [dict_url(b"never stored"), format!("{PREFIX}zz"), PREFIX.to_string(), format!("{}/x", dict_url(b"y"))] {
        let r = http::get(s.port, &target, &[("Accept-Encoding", BROWSER_AE)]);
        assert_eq!(r.status, 404, "{target}: {:?}", r.headers);
        assert!(r.header("Use-As-Dictionary").is_none());
    }
    let r = http::request(s.port, "POST", &dict_url(b"never stored"), &[("Content-Length", "0")]);
    assert!(r.status < 500, "POST: {}", r.status);
    for ad in ["garbage", ":AAAA:", "::", ":not base64!:", &named(b"never stored")] {
        let r = http::get(s.port, "/fresh/a.html", &[("Accept-Encoding", BROWSER_AE), ("Available-Dictionary", ad)]);
        assert_eq!((r.status, r.content_encoding()), (200, None), "{ad}");
        assert!(r.body == v1, "{ad}");
    }
    s.finish();
}

/// (4) HEAD, Range and 304 store nothing and break nothing; with a
/// stored version named, HEAD shows the dcz GET's fields, a Range or a
/// 304 stays what nginx makes of it.
#[test]
fn head_range_and_not_modified() {
    let (site, origin) = (Site::new(), Origin::start());
    let Some(s) = start(ServerKind::Nginx, &site.options(&origin)) else { return };
    let (v1, v2) = (page(1), page(2));
    site.put("fresh/h.html", &v1);
    let h = http::request(s.port, "HEAD", "/fresh/h.html", &[("Accept-Encoding", BROWSER_AE)]);
    assert_eq!(h.status, 200);
    let lm = h.header("Last-Modified").unwrap().to_string();
    let r = http::get(s.port, "/fresh/h.html", &[("Range", "bytes=0-99")]);
    assert!(r.status == 206 && r.body == v1[..100], "{}", r.status);
    let r = http::get(s.port, "/fresh/h.html", &[("If-Modified-Since", &lm)]);
    assert_eq!(r.status, 304);
    assert_eq!(count(&s, "v"), 0, "HEAD, Range and 304 store nothing");

    let r = http::get(s.port, "/fresh/h.html", &[]);
    assert!(r.body == v1);
    assert_eq!(count(&s, "v"), 1);
    site.put("fresh/h.html", &v2);
    // HEAD naming the stored version: the dcz GET's fields, no body.
    let ad = named(&v1);
    let dcz_req = [("Accept-Encoding", BROWSER_AE), ("Available-Dictionary", ad.as_str())];
    let h = http::request(s.port, "HEAD", "/fresh/h.html", &dcz_req);
    assert_eq!((h.status, h.content_encoding()), (200, Some("dcz")), "{:?}", h.headers);
    assert!(h.header("Content-Length").is_none());
    // A Range of the new file, as it is.
    let r = http::get(s.port, "/fresh/h.html", &[dcz_req[0], dcz_req[1], ("Range", "bytes=10-19")]);
    assert_eq!((r.status, r.content_encoding()), (206, None));
    assert!(r.body == v2[10..20]);
    // A 304 against the dcz response's tag.
    let r = dcz_get(&s, "/fresh/h.html", &v1);
    let etag = r.header("ETag").unwrap().to_string();
    assert!(decode(&v1, &r, "dcz GET") == v2);
    let r = http::get(s.port, "/fresh/h.html", &[dcz_req[0], dcz_req[1], ("If-None-Match", &etag)]);
    assert_eq!(r.status, 304, "{:?}", r.headers);
    assert_eq!(r.header("ETag"), Some(etag.as_str()));
    assert_eq!(count(&s, "v"), 2, "only the two full GETs stored a version");
    // The same for a no-cache proxied page that links a version.
    origin.set("/g.html", &NO_CACHE, &v1);
    http::get(s.port, "/proxy/g.html", &[]);
    let h = http::request(s.port, "HEAD", "/proxy/g.html", &[]);
    assert_eq!(h.status, 200);
    assert!(h.header("Link").is_some() && h.header("Content-Length").is_none(), "{:?}", h.headers);
    let r = http::get(s.port, "/proxy/g.html", &[("Range", "bytes=0-9")]);
    assert!(r.status == 206 || r.status == 200, "{}", r.status);
    assert_eq!(count(&s, "p"), 2);
    s.finish();
}

/// Runs `nginx -t` on `conf` (written to a fresh directory): success, and what it said.
fn nginx_t(conf: impl Fn(&Path) -> String) -> (bool, String) {
    let dir = temp_dir("dict-conf");
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf(&dir)).unwrap();
    let out = Command::new(hsync_tests::nginx::binary())
        .arg("-t")
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&path)
        .arg("-e")
        .arg(dir.join("error.log"))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
    (out.status.success(), text)
}

/// (5) `hsync_dictionary on` without a store fails `nginx -t` with the
/// core's words; a store too small, or a bad size, too.
#[test]
fn dictionary_without_store_is_a_configuration_error() {
    if skipped() {
        return;
    }
    let site = Site::new();
    let opts = Options { dictionary: Some(Dictionary::default()), ..Options::new(&site.dir) };
    let (ok, text) = nginx_t(|d| hsync_tests::nginx::config(&opts, d, 1));
    assert!(ok, "with a store: {text}");
    let (ok, text) = nginx_t(|d| {
        let c = hsync_tests::nginx::config(&opts, d, 1);
        c.lines().filter(|l| !l.contains("hsync_dictionary_store")).collect::<Vec<_>>().join("\n")
    });
    assert!(!ok && text.contains("dictionaries need a version store"), "{text}");
    let small = Options { dictionary: Some(Dictionary { store_max: Some(1000), pattern: None }), ..opts.clone() };
    let (ok, text) = nginx_t(|d| hsync_tests::nginx::config(&small, d, 1));
    assert!(!ok && text.contains("at least 1 MiB"), "{text}");
    let (ok, text) = nginx_t(|d| hsync_tests::nginx::config(&opts, d, 1).replace("/store;", "/store max_size=lots;"));
    assert!(!ok && text.contains("invalid max_size"), "{text}");
    // Dictionaries off: no store needed.
    let (ok, text) = nginx_t(|d| hsync_tests::nginx::config(&Options::new(&site.dir), d, 1));
    assert!(ok, "{text}");
}

/// (6) With `gzip on`: a page sent as it is (stored, or given a link) is
/// still gzipped for a client that accepts gzip only, and so is a
/// dictionary; a dcz response is not gzipped as well.
#[test]
fn gzip_and_dictionaries() {
    let (site, origin) = (Site::new(), Origin::start());
    let Some(s) = start(ServerKind::Nginx, &Options { gzip: true, ..site.options(&origin) }) else { return };
    let (v1, v2) = (page(1), page(2));
    origin.set("/z.html", &NO_CACHE, &v1);
    let gz = [("Accept-Encoding", "gzip")];
    let r = http::get(s.port, "/proxy/z.html", &gz);
    assert_eq!(r.content_encoding(), Some("gzip"), "{:?}", r.headers);
    assert!(gunzip(&r.body) == v1);
    let r = http::get(s.port, "/proxy/z.html", &gz);
    assert_eq!(r.content_encoding(), Some("gzip"), "a linked page is gzipped: {:?}", r.headers);
    assert_linked(&gunzip(&r.body), &v1, 1, "gzipped linked page");
    // The store holds the identity bytes (gzip comes after the copy).
    let d = http::get(s.port, &dict_url(&v1), &gz);
    assert_eq!((d.status, d.content_encoding()), (200, Some("gzip")), "{:?}", d.headers);
    assert!(gunzip(&d.body) == v1);
    origin.set("/z.html", &NO_CACHE, &v2);
    let r = dcz_get(&s, "/proxy/z.html", &v1);
    assert_eq!(r.header_all("Content-Encoding").as_deref(), Some("dcz"), "dcz only: {:?}", r.headers);
    assert_linked(&decode(&v1, &r, "dcz with gzip on"), &v2, 1, "dcz with gzip on");
    // A fresh static page: gzip for gzip-only clients, with its Use-As-Dictionary.
    site.put("fresh/f.html", &v1);
    let r = http::get(s.port, "/fresh/f.html", &gz);
    assert_eq!(r.content_encoding(), Some("gzip"));
    assert!(r.header("Use-As-Dictionary").is_some());
    assert!(gunzip(&r.body) == v1);
    s.finish();
}

/// (7) Two workers writing and reading the store at once: every answer
/// right, nothing in the error log.
#[test]
fn workers_share_the_store() {
    let (site, origin) = (Site::new(), Origin::start());
    let opts = Options { workers: 2, ..site.options(&origin) };
    let Some(s) = start(ServerKind::Nginx, &opts) else { return };
    let v: Vec<Vec<u8>> = (0..4).map(page).collect();
    for i in 0..4 {
        origin.set(&format!("/w{i}.html"), &NO_CACHE, &v[0]);
        site.put(&format!("fresh/w{i}.html"), &v[0]);
    }
    let port = s.port;
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let v = v.clone();
            std::thread::spawn(move || {
                let mut dcz_seen = 0;
                for n in 0..30 {
                    let path = if (t + n) % 2 == 0 { format!("/proxy/w{}.html", n % 4) } else { format!("/fresh/w{}.html", n % 4) };
                    let r = if n % 3 == 0 {
                        http::get(port, &path, &[("Accept-Encoding", BROWSER_AE)])
                    } else {
                        let ad = named(&v[0]);
                        http::get(port, &path, &[("Accept-Encoding", BROWSER_AE), ("Available-Dictionary", &ad)])
                    };
                    assert_eq!(r.status, 200, "{path}");
                    let body = match r.content_encoding() {
                        Some("dcz") => {
                            dcz_seen += 1;
                            dcz::decode(&v[0], &r.body, 1 << 26).unwrap()
                        }
                        None => r.body.clone(),
                        other => panic!("{path}: {other:?}"),
                    };
                    assert!(without_links(&body).0 == v[0], "{path}");
                    if let Some(l) = r.header("Link") {
                        let url = &l[1..l.find('>').unwrap()];
                        let d = http::get(port, url, &[]);
                        assert_eq!(d.status, 200, "{url}");
                        assert_eq!(format!("{PREFIX}{}", hex(&sha256(&d.body))), url);
                    }
                }
                dcz_seen
            })
        })
        .collect();
    let dcz_total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(dcz_total > 0, "no dcz at all");
    let log = s.error_log_text();
    assert!(!log.contains("cannot be opened") && !log.contains("[error]"), "{log}");
    for bad in BAD_LOG_PATTERNS {
        assert!(!log.contains(bad), "{bad}: {log}");
    }
    eprintln!("240 requests on 2 workers, {dcz_total} dcz, {} versions stored", count(&s, "v"));
    s.finish();
}

/// Starts nginx on `opts`' configuration as `edit` changes it.
fn start_edited(opts: &Options, edit: impl Fn(String) -> String) -> RunningServer {
    let dir = temp_dir("dict-edited");
    let port = hsync_tests::free_port();
    std::fs::write(dir.join("nginx.conf"), edit(hsync_tests::nginx::config(opts, &dir, port))).unwrap();
    let mut cmd = Command::new(hsync_tests::nginx::binary());
    cmd.arg("-p").arg(&dir).arg("-c").arg(dir.join("nginx.conf")).arg("-e").arg(dir.join("error.log"));
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let (pid, error_log, access_log) = (dir.join("nginx.pid"), dir.join("error.log"), dir.join("access.log"));
    RunningServer::spawn(ServerKind::Nginx, dir, cmd, port, Some(&pid), error_log, access_log).unwrap()
}

/// The dictionary URLs are answered before what the location would do in
/// their place: its `return` and `rewrite`, `try_files`, static files; and
/// `expires` there replaces their Cache-Control (one line, not two).
#[test]
fn dictionary_urls_come_first_in_their_location() {
    if skipped() {
        return;
    }
    let (site, origin) = (Site::new(), Origin::start());
    let v1 = page(1);
    site.put("fresh/a.html", &v1);
    let url = dict_url(&v1);
    let check = |s: &RunningServer, what: &str| {
        let r = http::get(s.port, "/fresh/a.html", &[]);
        assert_eq!(r.status, 200, "{what}");
        let d = http::get(s.port, &url, &[]);
        assert_eq!(d.status, 200, "{what}: {:?}", d.headers);
        assert!(d.body == v1, "{what}");
        d
    };
    // `return` and `rewrite` in the location the URL falls in.
    let s = start_edited(&site.options(&origin), |c| {
        let c = c.replacen("        location / {\n        }", "        location /.well-known/ {\n            rewrite ^ /nothing;\n            return 403;\n        }\n\n        location / {\n        }", 1);
        assert!(c.contains("return 403"));
        c
    });
    check(&s, "return");
    assert_eq!(http::get(s.port, "/.well-known/other", &[]).status, 403, "the location's own answer otherwise");
    s.finish();
    // try_files (precontent) and expires in `location /`.
    let s = start_edited(&site.options(&origin), |c| {
        let c = c.replacen(
            "        location / {\n        }",
            "        location / {\n            try_files /nothing =410;\n            expires 5m;\n        }",
            1,
        );
        assert!(c.contains("=410"));
        c
    });
    let d = check(&s, "try_files");
    let cc: Vec<&str> = d.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("Cache-Control")).map(|(_, v)| v.as_str()).collect();
    assert_eq!(cc, ["max-age=300"], "expires replaces the line: {:?}", d.headers);
    assert!(d.header("Use-As-Dictionary").is_some());
    assert_eq!(http::get(s.port, &dict_url(b"gone"), &[]).status, 404);
    s.finish();
}

/// The store belongs to the workers' user: nginx started as root with
/// `user nobody` creates it (and its subdirectories) for nobody, whose
/// workers then write versions there.
#[test]
fn the_store_belongs_to_the_workers_user() {
    // SAFETY: geteuid has no preconditions.
    if skipped() || unsafe { libc::geteuid() } != 0 {
        return;
    }
    // SAFETY: a NUL-terminated name; the result is read at once.
    let nobody = unsafe { libc::getpwnam(c"nobody".as_ptr()) };
    if nobody.is_null() {
        return;
    }
    // SAFETY: non-NULL, just returned; getgrgid's result is read at once.
    let (uid, group) = unsafe {
        let gr = libc::getgrgid((*nobody).pw_gid);
        if gr.is_null() {
            return;
        }
        ((*nobody).pw_uid, std::ffi::CStr::from_ptr((*gr).gr_name).to_string_lossy().into_owned())
    };
    let (site, origin) = (Site::new(), Origin::start());
    // The docroot must be readable by nobody.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for d in [site.dir.parent().unwrap(), site.dir.as_path(), &site.dir.join("fresh")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let v1 = page(1);
    site.put("fresh/o.html", &v1);
    let opts = site.options(&origin);
    let dir = temp_dir("dict-user");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = hsync_tests::free_port();
    let conf = hsync_tests::nginx::config(&opts, &dir, port).replace("user root root;", &format!("user nobody {group};"));
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let mut cmd = Command::new(hsync_tests::nginx::binary());
    cmd.arg("-p").arg(&dir).arg("-c").arg(dir.join("nginx.conf")).arg("-e").arg(dir.join("error.log"));
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let s = RunningServer::spawn(
        ServerKind::Nginx,
        dir.clone(),
        cmd,
        port,
        Some(&dir.join("nginx.pid")),
        dir.join("error.log"),
        dir.join("access.log"),
    )
    .unwrap();
    for sub in ["", "v", "p", "tmp"] {
        let m = std::fs::metadata(dir.join("store").join(sub)).unwrap();
        assert_eq!(m.uid(), uid, "store/{sub} belongs to nobody");
    }
    let r = http::get(port, "/fresh/o.html", &[]);
    assert!(r.status == 200 && r.header("Use-As-Dictionary").is_some(), "{:?}", r.headers);
    let deadline = Instant::now() + Duration::from_secs(5);
    while count(&s, "v") == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(count(&s, "v"), 1, "a version written by a worker running as nobody:\n{}", s.error_log_text());
    let r = dcz_get(&s, "/fresh/o.html", &v1);
    assert!(decode(&v1, &r, "as nobody") == v1);
    s.finish();
}
