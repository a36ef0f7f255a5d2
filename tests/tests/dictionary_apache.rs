//! RFC 9842 dictionaries (`dcz`) through mod_hsync in a real Apache httpd
//! 2.4, over plain HTTP: a fresh static page is its own dictionary; a
//! no-cache proxied page links its stored version, which the module serves
//! itself; the next version goes out as dcz and decodes to the page; what
//! must not be stored is not; broken or unknown dictionaries give the
//! ordinary response; mod_deflate and several children get along with it.
//!
//! Needs `build/modules apache`; HSYNC_SKIP_SERVER_TESTS=1 (or =apache)
//! skips it.

use base64::Engine;
use hsync_core::codec::dcz;
use hsync_core::store::{hex, sha256};
use hsync_tests::apache::{self, Extra};
use hsync_tests::http::{self, Response};
use hsync_tests::{Dictionary, Options, RunningServer, ServerKind};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a browser sends (Chromium 13x).
const BROWSER_AE: &str = "gzip, deflate, br, zstd, dcb, dcz";
const PREFIX: &str = "/.well-known/hsync/dictionary/";

fn skip() -> bool {
    if let Ok(v) = std::env::var("HSYNC_SKIP_SERVER_TESTS") {
        if v == "1" || v.split(',').any(|k| k.trim().eq_ignore_ascii_case("apache")) {
            eprintln!("apache server tests skipped (HSYNC_SKIP_SERVER_TESTS)");
            return true;
        }
    }
    let module = ServerKind::Apache.module();
    assert!(module.exists(), "{} is missing: run `build/modules apache` first", module.display());
    false
}

/// An HTML page of about 20 KB; versions differ in a few paragraphs.
fn page(title: &str, version: u32) -> Vec<u8> {
    let mut s = format!("<!DOCTYPE html>\n<html><head><title>{title}</title></head><body>\n<h1>{title}, version {version}</h1>\n");
    for i in 0..300u32 {
        let n = (if i % 61 == 7 { i * 7919 + version * 13 } else { i * 7919 }) % 1000;
        s.push_str(&format!("<p id=\"p{i}\">Paragraph {i} of {title}: the quick brown fox jumps over the lazy dog {n}.</p>\n"));
    }
    s.push_str("</body></html>\n");
    s.into_bytes()
}

/// `Available-Dictionary` naming `dict`.
fn named(dict: &[u8]) -> String {
    format!(":{}:", base64::engine::general_purpose::STANDARD.encode(sha256(dict)))
}

fn dict_url(dict: &[u8]) -> String {
    format!("{PREFIX}{}", hex(&sha256(dict)))
}

fn link_element(url: &str) -> String {
    format!("<link rel=\"compression-dictionary\" href=\"{url}\">")
}

/// The body without the inserted `<link rel="compression-dictionary">`, and its URL.
fn strip_link(body: &[u8]) -> (Vec<u8>, Option<String>) {
    let text = String::from_utf8_lossy(body).into_owned();
    let start = "<link rel=\"compression-dictionary\" href=\"";
    let Some(i) = text.find(start) else { return (body.to_vec(), None) };
    let rest = &text[i + start.len()..];
    let end = rest.find("\">").expect("an unterminated link element");
    let url = rest[..end].to_string();
    let mut out = text[..i].to_string();
    out.push_str(&rest[end + 2..]);
    (out.into_bytes(), Some(url))
}

/// Two bodies are equal (on failure: their lengths and where they part, not the bytes).
#[track_caller]
fn same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
        let ctx = |b: &[u8]| String::from_utf8_lossy(&b[at.saturating_sub(40).min(b.len())..(at + 80).min(b.len())]).into_owned();
        panic!("{what}: {} bytes, {} expected; they part at {at}:\n got: {:?}\nwant: {:?}", got.len(), want.len(), ctx(got), ctx(want));
    }
}

/// Whether the response links a dictionary in a `Link` header.
fn linked(r: &Response) -> bool {
    r.header_all("Link").is_some_and(|l| l.contains("rel=\"compression-dictionary\""))
}

fn has_vary(r: &Response, name: &str) -> bool {
    r.header_all("Vary").is_some_and(|v| v.split(',').any(|n| n.trim().eq_ignore_ascii_case(name)))
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data).read_to_end(&mut out).expect("gzip body");
    out
}

// ------------------------------------------------------------------ origin

/// A tiny origin for ProxyPass: `/page/<name>` answers the HTML set with
/// [`Origin::set`], `Cache-Control: no-cache` (a generated page), with its
/// length; anything else 404. Counts requests per path.
struct Origin {
    addr: SocketAddr,
    pages: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    hits: Arc<Mutex<HashMap<String, u64>>>,
}

impl Origin {
    fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let pages: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let hits: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let (p, h) = (pages.clone(), hits.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (p, h) = (p.clone(), h.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &p, &h);
                });
            }
        });
        Origin { addr, pages, hits }
    }

    fn set(&self, name: &str, body: &[u8]) {
        self.pages.lock().unwrap().insert(name.to_string(), body.to_vec());
    }

    fn hits(&self, prefix: &str) -> u64 {
        self.hits.lock().unwrap().iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| v).sum()
    }
}

fn serve(conn: TcpStream, pages: &Mutex<HashMap<String, Vec<u8>>>, hits: &Mutex<HashMap<String, u64>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut w = conn;
    // mod_proxy reuses connections: one request after another.
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("/").to_string();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
                break;
            }
        }
        *hits.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
        let body = path.strip_prefix("/page/").and_then(|n| pages.lock().unwrap().get(n).cloned());
        match body {
            Some(b) => {
                write!(
                    w,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nCache-Control: no-cache\r\nLink: </style.css>; rel=preload; as=style\r\nContent-Length: {}\r\n\r\n",
                    b.len()
                )?;
                if method != "HEAD" {
                    w.write_all(&b)?;
                }
            }
            None => {
                let b = b"origin: not found\n";
                write!(w, "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n", b.len())?;
                if method != "HEAD" {
                    w.write_all(b)?;
                }
            }
        }
        w.flush()?;
    }
}

// ------------------------------------------------------------------ server

/// A temporary directory, removed on drop (kept with `HSYNC_KEEP_TMP`,
/// or when the test fails).
struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("HSYNC_KEEP_TMP").is_none() && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn temp(tag: &str) -> TempDir {
    TempDir(hsync_tests::temp_dir(tag))
}

fn docroot(tag: &str) -> TempDir {
    let d = temp(&format!("dict-docroot-{tag}"));
    let _ = std::fs::set_permissions(&*d, std::os::unix::fs::PermissionsExt::from_mode(0o755));
    d
}

fn write_file(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// `ExpiresDefault` sets `Cache-Control: max-age` in a fixup, before the
/// handler: HSYNC (a filter) sees it (so does `ExpiresByType`'s filter;
/// mod_headers' `Header set` acts in a filter that runs after HSYNC).
const FRESH_CONF: &str = "<Location /fresh/>\n    ExpiresActive On\n    ExpiresDefault \"access plus 1 hour\"\n</Location>\n";

fn start(docroot: &Path, origin: Option<&Origin>, dict: Option<Dictionary>, gzip: bool, extra: &Extra) -> RunningServer {
    let mut o = Options::new(docroot);
    o.upstream = origin.map(|o| o.addr);
    o.dictionary = dict;
    o.gzip = gzip;
    apache::start_with(&o, extra).unwrap_or_else(|e| panic!("{e}"))
}

fn get(s: &RunningServer, path: &str, headers: &[(&str, &str)]) -> Response {
    let r = http::get(s.port, path, headers);
    assert!(r.status < 500, "{path}: {} {:?}\n{}", r.status, r.headers, s.error_log_text());
    r
}

/// The access log line for the `n`th request (1-based) whose request line contains `needle`.
fn log_line(s: &RunningServer, needle: &str, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = s.access_log_text();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(needle)).collect();
        if lines.len() >= n {
            return lines[n - 1].to_string();
        }
        assert!(Instant::now() < deadline, "no access log line {n} for {needle}:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A dcz response to a request naming `dict`: checks the fields and returns the decoded body.
#[track_caller]
fn assert_dcz(r: &Response, dict: &[u8]) -> Vec<u8> {
    assert_eq!(r.status, 200, "{:?}", r.headers);
    assert_eq!(r.content_encoding(), Some("dcz"), "{:?}", r.headers);
    assert!(has_vary(r, "Available-Dictionary") && has_vary(r, "Accept-Encoding"), "{:?}", r.headers);
    assert_eq!(r.header("Content-Length").map(|_| ()), if r.chunked { None } else { Some(()) });
    assert!(
        &r.body[..4] == b"\x5e\x2a\x4d\x18" && r.body[8..40] == sha256(dict),
        "not a dcz header: {:?}",
        &r.body[..40.min(r.body.len())]
    );
    dcz::decode(dict, &r.body, 1 << 26).expect("a dcz body that decodes against the dictionary")
}

// ------------------------------------------------------------------ tests

/// (1) A fresh static page is its own dictionary; its next version goes
/// out as dcz against it, and the log says so.
#[test]
fn fresh_static_page_is_its_own_dictionary_then_dcz() {
    if skip() {
        return;
    }
    let root = docroot("fresh");
    let file = root.join("fresh/news.html");
    let v1 = page("news", 1);
    write_file(&file, &v1);
    let s = start(&root, None, Some(Dictionary::default()), false, &Extra { conf: FRESH_CONF.into(), ..Extra::default() });

    let r = get(&s, "/fresh/news.html", &[("Accept-Encoding", BROWSER_AE)]);
    assert_eq!(r.status, 200);
    same(&r.body, &v1, "sent as it is");
    assert!(r.header("Cache-Control").is_some_and(|c| c.contains("max-age=3600")), "{:?}", r.headers);
    assert_eq!(r.header("Use-As-Dictionary"), Some("match=\"/fresh/news.html\", match-dest=(\"document\")"), "{:?}", r.headers);
    assert!(r.content_encoding().is_none());
    assert!(has_vary(&r, "Available-Dictionary"), "{:?}", r.headers);
    assert!(log_line(&s, "GET /fresh/news.html", 1).ends_with(" coding=-"));

    // The file changes; the browser names v1.
    let v2 = page("news", 2);
    write_file(&file, &v2);
    let r = get(&s, "/fresh/news.html", &[("Accept-Encoding", BROWSER_AE), ("Available-Dictionary", &named(&v1))]);
    same(&assert_dcz(&r, &v1), &v2, "decoded");
    assert!(r.body.len() * 20 < v2.len(), "{} bytes of dcz for {}", r.body.len(), v2.len());
    assert_eq!(r.header("Use-As-Dictionary"), Some("match=\"/fresh/news.html\", match-dest=(\"document\")"), "v2 is the next dictionary");
    let line = log_line(&s, "GET /fresh/news.html", 2);
    assert!(line.ends_with(" coding=dcz"), "{line}");
    eprintln!("fresh static page: {} bytes, dcz {} bytes; log: {line}", v2.len(), r.body.len());

    // Without dcz in Accept-Encoding: the page as it is.
    let r = get(&s, "/fresh/news.html", &[("Accept-Encoding", "gzip"), ("Available-Dictionary", &named(&v1))]);
    assert!(r.content_encoding().is_none());
    same(&r.body, &v2, "gzip only");
    s.finish();
}

/// (2) A no-cache page behind ProxyPass: stored, then linked (element and
/// header); the dictionary URL serves the stored bytes, immutable; the next
/// version goes out as dcz against them.
#[test]
fn no_cache_proxied_page_links_its_stored_version_then_dcz() {
    if skip() {
        return;
    }
    let root = docroot("proxy");
    let origin = Origin::start();
    let v1 = page("app", 1);
    origin.set("a", &v1);
    let debug = Extra { conf: "LogLevel info hsync:debug\n".into(), ..Extra::default() };
    let s = start(&root, Some(&origin), Some(Dictionary::default()), false, &debug);

    // First load: stored as it streams, nothing to link yet.
    let r = get(&s, "/proxy/page/a", &[("Accept-Encoding", BROWSER_AE)]);
    assert!(r.status == 200 && r.body == v1, "{} {:?}", r.status, r.headers);
    assert!(r.header_all("Link").is_some_and(|l| !l.contains("compression-dictionary")), "{:?}", r.headers);
    assert!(r.header("Use-As-Dictionary").is_none(), "{:?}", r.headers);

    // Second load: v1 linked, in the head and in a header; the length goes.
    let url = dict_url(&v1);
    let r = get(&s, "/proxy/page/a", &[("Accept-Encoding", BROWSER_AE)]);
    assert_eq!(r.status, 200);
    // The dictionary's Link is added beside the page's own (HSYNC_EDIT_APPEND).
    let links: Vec<&str> = r.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("Link")).map(|(_, v)| v.as_str()).collect();
    let ours = format!("<{url}>; rel=\"compression-dictionary\"");
    assert!(links.iter().any(|l| l.contains("</style.css>; rel=preload")), "{links:?}");
    assert!(links.iter().any(|l| l.split(", <").any(|x| x.trim_start_matches('<') == ours.trim_start_matches('<'))), "{links:?}");
    let text = String::from_utf8_lossy(&r.body);
    assert!(text.contains(&format!("<head>{}", link_element(&url))), "{}", &text[..200]);
    same(&strip_link(&r.body).0, &v1, "linked");
    assert!(r.header("Content-Length").is_none() && r.chunked, "{:?}", r.headers);
    assert!(r.content_encoding().is_none());

    // The dictionary URL: the stored bytes, immutable, with their pattern.
    let d = get(&s, &url, &[("Accept-Encoding", BROWSER_AE)]);
    assert_eq!(d.status, 200, "{:?}", d.headers);
    same(&d.body, &v1, "dictionary");
    assert!(d.header("Content-Type").is_some_and(|t| t.starts_with("text/html")), "{:?}", d.headers);
    let cc = d.header("Cache-Control").unwrap_or("");
    assert!(cc.contains("immutable") && cc.contains("max-age=31536000"), "{cc}");
    assert_eq!(d.header("Use-As-Dictionary"), Some("match=\"/proxy/page/a\", match-dest=(\"document\")"));
    assert_eq!(d.header("ETag"), Some(format!("\"{}\"", hex(&sha256(&v1))).as_str()));
    assert!(d.content_encoding().is_none(), "not processed again: {:?}", d.headers);
    // HEAD: the fields, no body.
    let h = http::request(s.port, "HEAD", &url, &[]);
    assert_eq!((h.status, h.header("Content-Length")), (200, Some(v1.len().to_string().as_str())), "{:?}", h.headers);
    assert_eq!(origin.hits("/.well-known"), 0);

    // v2, to a browser holding v1: dcz, decoding to v2 with the latest link.
    let v2 = page("app", 2);
    origin.set("a", &v2);
    let r = get(&s, "/proxy/page/a", &[("Accept-Encoding", BROWSER_AE), ("Available-Dictionary", &named(&v1))]);
    let decoded = assert_dcz(&r, &v1);
    let (plain, linked_url) = strip_link(&decoded);
    same(&plain, &v2, "decoded");
    // A browser holding a young version keeps it linked (dict::KEEP_LINKED),
    // rather than the latest one (the second load, as sent).
    assert_eq!(linked_url, Some(dict_url(&v1)), "the version the browser holds");
    let r = get(&s, "/proxy/page/a", &[("Accept-Encoding", BROWSER_AE)]);
    // The store keeps bodies as the backend made them, without the
    // inserted element: the latest version is v2 itself.
    assert_eq!(strip_link(&r.body).1, Some(dict_url(&v2)), "without one: the latest (v2, as the backend made it)");
    assert!(linked(&r));
    assert!(r.header("ETag").is_none_or(|e| e.starts_with("W/")));
    let line = log_line(&s, "GET /proxy/page/a", 3);
    assert!(line.ends_with(" coding=dcz"), "{line}");
    assert!(log_line(&s, "GET /proxy/page/a", 4).ends_with(" coding=-"));
    eprintln!("proxied no-cache page: {} bytes, dcz {} bytes; log: {line}", decoded.len(), r.body.len());
    // The module's debug lines: each decision, each body, each dictionary served.
    for needle in [
        "hsync: decided ok for GET /proxy/page/a (status 200): dcz",
        "hsync: body done (dcz)",
        "hsync: dictionary /.well-known/hsync/dictionary/",
        "hsync: a dictionary response, left as it is",
    ] {
        assert!(s.log_count(needle) > 0, "no {needle:?} in the error log:\n{}", s.error_log_text());
    }
    s.finish();
}

/// (3) A dictionary the store does not hold (unknown, evicted, malformed):
/// the ordinary response for that URL, never a 5xx; the dictionary URL of
/// a location where dictionaries are off is not the module's; and it is
/// the module's wherever they are on, also in front of a ProxyPass.
#[test]
fn unknown_evicted_or_malformed_dictionaries_get_the_ordinary_response() {
    if skip() {
        return;
    }
    let root = docroot("unknown");
    let origin = Origin::start();
    let v1 = page("u", 1);
    origin.set("u", &v1);
    let extra = Extra { conf: format!("ProxyPass /.well-known/hsync/ http://{}/wk/\n", origin.addr), ..Extra::default() };
    let s = start(&root, Some(&origin), Some(Dictionary::default()), false, &extra);

    // Unknown hash, bad hex, other method.
    let r = get(&s, &format!("{PREFIX}{}", "0".repeat(64)), &[]);
    assert_eq!(r.status, 404, "{:?}", r.headers);
    assert!(r.header("Cache-Control").is_some_and(|c| c.contains("no-store")));
    assert_eq!(get(&s, &format!("{PREFIX}xyz"), &[]).status, 404);
    assert_eq!(http::request(s.port, "POST", &format!("{PREFIX}{}", "0".repeat(64)), &[("Content-Length", "0")]).status, 405);
    assert_eq!(origin.hits("/wk/"), 0, "ProxyPass never reached: the module answers first");

    // Stored, then served in front of the ProxyPass.
    get(&s, "/proxy/page/u", &[]);
    let d = get(&s, &dict_url(&v1), &[]);
    assert_eq!(d.status, 200);
    same(&d.body, &v1, "dictionary");

    // Malformed and unknown Available-Dictionary: the ordinary response.
    for bad in ["garbage", ":!!!:", ":AAAA:", &format!(":{}:", base64::engine::general_purpose::STANDARD.encode([0u8; 32]))] {
        let r = get(&s, "/proxy/page/u", &[("Accept-Encoding", BROWSER_AE), ("Available-Dictionary", bad)]);
        assert_eq!(r.status, 200, "{bad}");
        assert!(r.content_encoding().is_none(), "{bad}: {:?}", r.headers);
        same(&strip_link(&r.body).0, &v1, bad);
    }

    // Evicted (its file gone): 404 at its URL, the ordinary page for dcz.
    let h = hex(&sha256(&v1));
    std::fs::remove_file(s.dir.join("store/v").join(&h)).expect("the stored version");
    assert_eq!(get(&s, &dict_url(&v1), &[]).status, 404);
    let r = get(&s, "/proxy/page/u", &[("Accept-Encoding", BROWSER_AE), ("Available-Dictionary", &named(&v1))]);
    assert!(r.content_encoding().is_none(), "{:?}", r.headers);
    same(&strip_link(&r.body).0, &v1, "ordinary page");
    assert_eq!(origin.hits("/wk/"), 0);
    s.finish();

    // Dictionaries on only for /proxy/: the well-known URL is the docroot's 404.
    let store_dir = temp("dict-store-loc");
    let extra = Extra {
        conf: format!(
            "HsyncDictionaryStore {}\n<Location /proxy/>\n    HsyncDictionary On\n</Location>\n",
            store_dir.join("store").display()
        ),
        ..Extra::default()
    };
    let s = start(&root, Some(&origin), None, false, &extra);
    get(&s, "/proxy/page/u", &[]);
    let r = get(&s, "/proxy/page/u", &[]);
    assert!(linked(&r), "on under /proxy/: {:?}", r.headers);
    let r = get(&s, &dict_url(&v1), &[]);
    assert_eq!(r.status, 404);
    assert!(!String::from_utf8_lossy(&r.body).contains("hsync"), "not the module's: {:?}", String::from_utf8_lossy(&r.body));
    s.finish();
}

/// (4) HEAD, Range and 304 store nothing and break nothing.
#[test]
fn head_range_and_304_do_not_store() {
    if skip() {
        return;
    }
    let root = docroot("hr304");
    let origin = Origin::start();
    let v1 = page("h", 1);
    origin.set("h", &v1);
    origin.set("r", &v1);
    write_file(&root.join("plain/p.html"), &v1);
    let s = start(&root, Some(&origin), Some(Dictionary::default()), false, &Extra::default());
    let store_v = s.dir.join("store/v");
    let versions = || std::fs::read_dir(&store_v).map(|d| d.count()).unwrap_or(0);

    // HEAD first: nothing stored, so the next GET links nothing.
    let h = http::request(s.port, "HEAD", "/proxy/page/h", &[("Accept-Encoding", BROWSER_AE)]);
    assert_eq!(h.status, 200);
    assert_eq!(versions(), 0, "a HEAD stored something");
    assert!(!linked(&get(&s, "/proxy/page/h", &[])));
    // Now stored: a HEAD gets the GET's fields (the Link, no length), no body.
    let h = http::request(s.port, "HEAD", "/proxy/page/h", &[("Accept-Encoding", BROWSER_AE)]);
    assert!(linked(&h) && h.header("Content-Length").is_none(), "{:?}", h.headers);

    // Range: the range, nothing stored.
    let n = versions();
    // (mod_proxy passes the Range on; this origin ignores it: a full 200, sent as it is.)
    let r = get(&s, "/proxy/page/r", &[("Range", "bytes=0-99"), ("Accept-Encoding", BROWSER_AE), ("Available-Dictionary", &named(&v1))]);
    assert!(r.status == 200 && r.body == v1 && r.content_encoding().is_none(), "{} {:?}", r.status, r.headers);
    let r = get(&s, "/plain/p.html", &[("Range", "bytes=10-19")]);
    assert!(r.status == 206 && r.body == v1[10..20], "{} {:?}", r.status, r.headers);
    assert_eq!(versions(), n, "a Range request stored something");

    // 304 of a static file: nothing stored; the next GET stores, the one after links.
    let etag = get(&s, "/plain/p.html", &[("Range", "bytes=0-0")]).header("ETag").unwrap().to_string();
    let n = versions();
    let r = get(&s, "/plain/p.html", &[("If-None-Match", &etag), ("Accept-Encoding", BROWSER_AE)]);
    assert_eq!(r.status, 304, "{:?}", r.headers);
    assert_eq!(versions(), n, "a 304 stored something");
    let r = get(&s, "/plain/p.html", &[]);
    assert!(r.header("Link").is_none() && r.body == v1);
    let r = get(&s, "/plain/p.html", &[]);
    assert!(r.header("Link").is_some(), "{:?}", r.headers);
    same(&strip_link(&r.body).0, &v1, "ordinary page");
    // A 304 to a browser holding that version.
    let r = get(
        &s,
        "/plain/p.html",
        &[("If-None-Match", &format!("W/{etag}")), ("Accept-Encoding", BROWSER_AE), ("Available-Dictionary", &named(&v1))],
    );
    assert_eq!(r.status, 304, "{:?}", r.headers);
    s.finish();
}

/// (5) HsyncDictionary On without a store stops httpd at `apache2 -t`,
/// with the core's words; bad store sizes name their line.
#[test]
fn dictionary_without_a_store_is_a_startup_error() {
    if skip() {
        return;
    }
    let root = docroot("nostore");
    let o = Options::new(&*root);
    for conf in ["HsyncDictionary On\n", "<Location /x/>\n    HsyncDictionary On\n</Location>\n"] {
        let e = apache::start_with(&o, &Extra { conf: conf.into(), ..Extra::default() }).err().expect("httpd started");
        assert!(e.contains("hsync: dictionaries need a version store: an absolute directory path"), "{e}");
    }
    let store_dir = temp("dict-size");
    let store = store_dir.join("store");
    let e = apache::start_with(&o, &Extra { conf: format!("HsyncDictionaryStore {} 10K\n", store.display()), ..Extra::default() })
        .err()
        .expect("httpd started");
    assert!(e.contains("the version store must hold at least 1 MiB, not 10240 bytes") && e.contains("line"), "{e}");
    let e = apache::start_with(&o, &Extra { conf: format!("HsyncDictionaryStore {} 12Q\n", store.display()), ..Extra::default() })
        .err()
        .expect("httpd started");
    assert!(e.contains("HsyncDictionaryStore: the size must be"), "{e}");
    // Off everywhere: no store needed.
    let s = apache::start_with(&o, &Extra { conf: "HsyncDictionary Off\n".into(), ..Extra::default() }).unwrap();
    s.finish();
    // A size with a suffix, and the store handed to the children's user.
    let s = apache::start_with(
        &o,
        &Extra { conf: format!("HsyncDictionaryStore {} 2M\nHsyncDictionary On\n", store.display()), ..Extra::default() },
    )
    .unwrap();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        use std::os::unix::fs::MetadataExt;
        let nobody = std::fs::metadata(&store).unwrap().uid();
        assert_ne!(nobody, 0, "the store is still root's");
        for sub in ["v", "p", "tmp"] {
            assert_eq!(std::fs::metadata(store.join(sub)).unwrap().uid(), nobody, "{sub}");
        }
    }
    s.finish();
}

/// (6) With mod_deflate: a stored / linked page (identity) is still gzipped
/// for a gzip-only client; a dcz response is not.
#[test]
fn deflate_compresses_linked_pages_but_not_dcz() {
    if skip() {
        return;
    }
    let root = docroot("deflate");
    let origin = Origin::start();
    let v1 = page("z", 1);
    origin.set("z", &v1);
    write_file(&root.join("fresh/f.html"), &v1);
    let s = start(&root, Some(&origin), Some(Dictionary::default()), true, &Extra { conf: FRESH_CONF.into(), ..Extra::default() });

    let r = get(&s, "/proxy/page/z", &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.content_encoding(), Some("gzip"), "{:?}", r.headers);
    same(&gunzip(&r.body), &v1, "gunzipped");
    let r = get(&s, "/proxy/page/z", &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.content_encoding(), Some("gzip"), "{:?}", r.headers);
    assert!(linked(&r), "{:?}", r.headers);
    let (plain, url) = strip_link(&gunzip(&r.body));
    same(&plain, &v1, "gunzipped, without the link");
    assert_eq!(url, Some(dict_url(&v1)));

    let v2 = page("z", 2);
    origin.set("z", &v2);
    let r = get(&s, "/proxy/page/z", &[("Accept-Encoding", "gzip, dcz"), ("Available-Dictionary", &named(&v1))]);
    assert_eq!(r.header_all("Content-Encoding").as_deref(), Some("dcz"), "exactly one coding: {:?}", r.headers);
    same(&strip_link(&assert_dcz(&r, &v1)).0, &v2, "decoded");

    // A fresh page, gzipped on the way: its dictionary is the identity body.
    let r = get(&s, "/fresh/f.html", &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.content_encoding(), Some("gzip"));
    assert!(r.header("Use-As-Dictionary").is_some(), "{:?}", r.headers);
    same(&gunzip(&r.body), &v1, "gunzipped");
    write_file(&root.join("fresh/f.html"), &v2);
    let r = get(&s, "/fresh/f.html", &[("Accept-Encoding", BROWSER_AE), ("Available-Dictionary", &named(&v1))]);
    assert_eq!(r.header_all("Content-Encoding").as_deref(), Some("dcz"), "{:?}", r.headers);
    same(&assert_dcz(&r, &v1), &v2, "decoded");
    // The dictionary URL itself may be gzipped: the browser hashes what it decodes.
    let d = get(&s, &dict_url(&v1), &[("Accept-Encoding", "gzip")]);
    let body = if d.content_encoding() == Some("gzip") { gunzip(&d.body) } else { d.body.clone() };
    same(&body, &v1, "dictionary");
    s.finish();
}

/// (7) Two children with several threads each writing and reading one
/// store at once, under a store bound that forces evictions: every
/// response right, nothing bad in the error log, the store within bounds.
#[test]
fn several_children_share_the_store() {
    if skip() {
        return;
    }
    let root = docroot("children");
    let origin = Origin::start();
    const PAGES: usize = 12;
    for i in 0..PAGES {
        origin.set(&format!("p{i}"), &page(&format!("p{i}"), 0));
    }
    let mut o = Options::new(&*root);
    o.upstream = Some(origin.addr);
    o.workers = 2;
    let max = 1u64 << 20;
    o.dictionary = Some(Dictionary { store_max: Some(max), pattern: None });
    let s = apache::start_with(&o, &Extra { threads: Some(8), ..Extra::default() }).unwrap_or_else(|e| panic!("{e}"));
    let origin = Arc::new(origin);
    let port = s.port;
    let dcz_count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            let origin = origin.clone();
            let dcz_count = dcz_count.clone();
            std::thread::spawn(move || {
                for k in 0..40u32 {
                    let i = ((t * 7 + k) as usize) % PAGES;
                    let name = format!("p{i}");
                    let path = format!("/proxy/page/{name}");
                    if k % 5 == 0 {
                        origin.set(&name, &page(&name, t * 100 + k));
                    }
                    let r = http::get(port, &path, &[("Accept-Encoding", BROWSER_AE)]);
                    assert_eq!(r.status, 200, "{path}");
                    assert!(r.content_encoding().is_none());
                    // Fetch the linked dictionary and use it, as a browser would.
                    let Some(url) = strip_link(&r.body).1 else { continue };
                    let d = http::get(port, &url, &[]);
                    if d.status == 404 {
                        continue; // evicted meanwhile
                    }
                    assert_eq!(d.status, 200, "{url}");
                    assert_eq!(hex(&sha256(&d.body)), url.trim_start_matches(PREFIX), "a dictionary is what its name says");
                    let r2 = http::get(port, &path, &[("Accept-Encoding", BROWSER_AE), ("Available-Dictionary", &named(&d.body))]);
                    assert_eq!(r2.status, 200);
                    if r2.content_encoding() == Some("dcz") {
                        let body = dcz::decode(&d.body, &r2.body, 1 << 26).expect("dcz decodes");
                        assert!(strip_link(&body).0.starts_with(b"<!DOCTYPE html>"));
                        dcz_count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    } else {
                        assert!(r2.content_encoding().is_none(), "{:?}", r2.headers);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client thread failed");
    }
    let n = dcz_count.load(std::sync::atomic::Ordering::Relaxed);
    assert!(n > 50, "only {n} dcz responses");
    let size: u64 = std::fs::read_dir(s.dir.join("store/v")).unwrap().flatten().map(|e| e.metadata().unwrap().len()).sum();
    assert!(size <= max, "store holds {size} bytes, bound {max}");
    let pids = apache::child_pids(apache::parent_pid(&s).unwrap());
    assert_eq!(pids.len(), 2, "two children");
    let errors: Vec<String> =
        s.error_log_text().lines().filter(|l| l.contains(":error]") || l.contains("hsync: the version store")).map(String::from).collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    eprintln!("two children: {n} dcz responses; store {size} bytes of {max}");
    s.finish();
}

/// A page streamed by the backend (chunked, in pieces of 4000 bytes, no
/// length) is stored as it streams and goes out as dcz as it streams.
#[test]
fn streamed_proxied_pages_are_stored_and_sent_as_dcz() {
    if skip() {
        return;
    }
    let corpus = |n: u32| std::fs::read(hsync_tests::corpus().join(format!("blog-home/{n:03}.html"))).expect("corpus file");
    let (v1, v2) = (corpus(1), corpus(2));
    let up = hsync_tests::upstream::Upstream::start();
    let root = docroot("streamed");
    let mut o = Options::new(&*root);
    o.upstream = Some(up.addr);
    o.dictionary = Some(Dictionary::default());
    let s = apache::start_with(&o, &Extra::default()).unwrap_or_else(|e| panic!("{e}"));
    let r = get(&s, "/proxy/corpus/blog-home/001.html", &[("Accept-Encoding", BROWSER_AE)]);
    assert!(r.chunked && r.content_encoding().is_none(), "{:?}", r.headers);
    same(&r.body, &v1, "first load");
    let d = get(&s, &dict_url(&v1), &[]);
    assert_eq!(d.status, 200, "stored as it streamed");
    same(&d.body, &v1, "dictionary");
    // The next version, named against the first: dcz, streamed.
    let r = get(&s, "/proxy/corpus/blog-home/002.html", &[("Accept-Encoding", BROWSER_AE), ("Available-Dictionary", &named(&v1))]);
    assert!(r.chunked, "{:?}", r.headers);
    // The version the browser names is young: linked (and inserted, though
    // mod_proxy flushed before the <head> tag came).
    let (decoded, link) = strip_link(&assert_dcz(&r, &v1));
    same(&decoded, &v2, "decoded");
    assert_eq!(link, Some(dict_url(&v1)));
    let line = log_line(&s, "GET /proxy/corpus/blog-home/002.html", 1);
    assert!(line.ends_with(" coding=dcz"), "{line}");
    eprintln!("streamed corpus page: {} bytes as dcz {} bytes ({line})", v2.len(), r.body.len());
    s.finish();
}
