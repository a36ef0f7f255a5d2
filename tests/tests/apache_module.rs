//! mod_hsync in a real Apache httpd 2.4 (Debian's apache2), apache-only.
//!
//! The shared, server-parameterized suite lives in server_behaviour.rs; this
//! file covers the Apache arm on its own (and the Apache-specific points:
//! ordering with mod_deflate, the directives, the log note, no crashed
//! child). Needs `build/modules apache` first; HSYNC_SKIP_SERVER_TESTS=1
//! (or =apache) skips it, as for the shared suite.

use hsync_core::http::encode_signature_header;
use hsync_core::{patch, Signature};
use hsync_tests::apache::{self, Extra};
use hsync_tests::http::{self, Response};
use hsync_tests::{Options, RunningServer, ServerKind};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Largest instance the tests let a delta rebuild.
const LIMIT: u64 = 1 << 30;

fn corpus_file(name: &str) -> Vec<u8> {
    std::fs::read(hsync_tests::corpus().join("blog-home").join(name)).expect("corpus file")
}

fn sig_header(old: &[u8]) -> String {
    encode_signature_header(&Signature::compute(old).to_bytes())
}

/// One Apache per test binary would race on ports with nothing; each test
/// starts its own (they are cheap), but the upstream and docroot are shared.
struct Fixture {
    docroot: PathBuf,
    upstream: SocketAddr,
    old: Vec<u8>,
    new: Vec<u8>,
}

/// Same rule as the shared suite: HSYNC_SKIP_SERVER_TESTS=1 (or a list
/// containing "apache") skips; a missing module is an error.
fn skip() -> bool {
    if let Ok(v) = std::env::var("HSYNC_SKIP_SERVER_TESTS") {
        if v == "1" || v.split(',').any(|k| k.trim().eq_ignore_ascii_case("apache")) {
            eprintln!("apache server tests skipped (HSYNC_SKIP_SERVER_TESTS)");
            return true;
        }
    }
    let module = ServerKind::Apache.module();
    assert!(module.exists(), "{} is missing: run `build/modules apache` first", module.display());
    // a module older than the core sources speaks an older wire format
    let mtime = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let newest =
        std::fs::read_dir(hsync_tests::root().join("core/src")).into_iter().flatten().flatten().filter_map(|e| mtime(&e.path())).max();
    assert!(
        newest.is_none_or(|t| Some(t) <= mtime(&module)),
        "{} is older than core/src: run `build/modules apache` again",
        module.display()
    );
    false
}

const BIG: usize = 50 * 1024 * 1024;

fn big_body(seed: u8) -> Vec<u8> {
    // Mostly stable HTML-ish text with a changing byte every 64 KiB.
    let line = b"<p>hsync big body line, the quick brown fox jumps over the lazy dog 0123456789</p>\n";
    let mut v = Vec::with_capacity(BIG);
    while v.len() < BIG {
        v.extend_from_slice(line);
    }
    v.truncate(BIG);
    for i in (0..BIG).step_by(65536) {
        v[i] = b'a' + ((seed as usize + i / 65536) % 26) as u8;
    }
    v
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let old = corpus_file("029.html");
        let new = corpus_file("030.html");
        let docroot = std::env::temp_dir().join(format!("hsync-apache-docroot-{}", std::process::id()));
        std::fs::create_dir_all(&docroot).unwrap();
        std::fs::write(docroot.join("page.html"), &new).unwrap();
        std::fs::write(docroot.join("small.html"), &new[..100]).unwrap();
        std::fs::write(docroot.join("page.txt"), &new).unwrap();
        std::fs::write(docroot.join("big.html"), big_body(1)).unwrap();
        for sub in ["pre", "nt", "off"] {
            std::fs::create_dir_all(docroot.join(sub)).unwrap();
            std::fs::write(docroot.join(sub).join("page.html"), &new).unwrap();
        }
        let upstream = start_upstream(old.clone(), new.clone());
        Fixture { docroot, upstream, old, new }
    })
}

/// The test upstream: regenerates its pages on every request.
///   /page        030.html (+ a counter comment, so every answer differs), Content-Length
///   /chunked     the same, chunked
///   /notransform the same with Cache-Control: no-transform
///   /encoded     Content-Encoding: gzip (opaque bytes), text/html
///   /etag        ETag "v30"; If-None-Match matching it (weakly) -> 304
/// (Responses with particular header lines are server_behaviour.rs cases,
/// against both servers, with tests/src/upstream.rs's `/hdr/<case>`.)
///   /big         50 MB, chunked
fn start_upstream(_old: Vec<u8>, new: Vec<u8>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let new = Arc::new(new);
    let big = Arc::new(Mutex::new(None::<Arc<Vec<u8>>>));
    let counter = Arc::new(AtomicU64::new(0));
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let new = new.clone();
            let big = big.clone();
            let counter = counter.clone();
            std::thread::spawn(move || {
                let _ = serve(s, &new, &big, &counter);
            });
        }
    });
    addr
}

fn serve(s: TcpStream, new: &[u8], big: &Mutex<Option<Arc<Vec<u8>>>>, counter: &AtomicU64) -> std::io::Result<()> {
    let mut r = BufReader::new(s.try_clone()?);
    let mut w = s;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut inm = None;
        let mut body_len = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("if-none-match") {
                    inm = Some(v.trim().to_string());
                }
                if k.eq_ignore_ascii_case("content-length") {
                    body_len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut discard = vec![0; body_len];
        r.read_exact(&mut discard)?;
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let mut page = new.to_vec();
        page.extend_from_slice(format!("<!-- generated {n} -->\n").as_bytes());
        let head = method == "HEAD";
        let p = path.split('?').next().unwrap_or("");
        match p {
            "/page" | "/notransform" | "/etag" => {
                let mut extra = String::new();
                if p == "/notransform" {
                    extra.push_str("Cache-Control: public, no-transform\r\n");
                }
                if p == "/etag" {
                    page = new.to_vec();
                    extra.push_str("ETag: \"v30\"\r\n");
                    if inm.as_deref().is_some_and(|v| v.split(',').any(|t| t.trim().trim_start_matches("W/") == "\"v30\"")) {
                        write!(w, "HTTP/1.1 304 Not Modified\r\nETag: \"v30\"\r\n\r\n")?;
                        continue;
                    }
                }
                write!(w, "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n{extra}\r\n", page.len())?;
                if !head {
                    w.write_all(&page)?;
                }
            }
            "/chunked" => {
                write!(w, "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n")?;
                if !head {
                    for c in page.chunks(7000) {
                        write!(w, "{:x}\r\n", c.len())?;
                        w.write_all(c)?;
                        w.write_all(b"\r\n")?;
                    }
                    w.write_all(b"0\r\n\r\n")?;
                }
            }
            "/encoded" => {
                let body = b"\x1f\x8b\x08\x00 pretend this is gzip, long enough to pass the minimum length ......................................................................................................................................................................................................";
                write!(
                    w,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )?;
                if !head {
                    w.write_all(body)?;
                }
            }
            "/big" => {
                let b = {
                    let mut g = big.lock().unwrap();
                    g.get_or_insert_with(|| Arc::new(big_body(2))).clone()
                };
                write!(w, "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n")?;
                if !head {
                    for c in b.chunks(256 * 1024) {
                        write!(w, "{:x}\r\n", c.len())?;
                        w.write_all(c)?;
                        w.write_all(b"\r\n")?;
                    }
                    w.write_all(b"0\r\n\r\n")?;
                }
            }
            _ => {
                write!(w, "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nnot found")?;
            }
        }
        w.flush()?;
    }
}

fn server(f: impl FnOnce(&mut Options, &mut Extra)) -> RunningServer {
    let fx = fixture();
    let mut opts = Options::new(&fx.docroot);
    opts.upstream = Some(fx.upstream);
    opts.gzip = true;
    let mut extra = Extra::default();
    f(&mut opts, &mut extra);
    apache::start_with(&opts, &extra).unwrap_or_else(|e| panic!("{e}"))
}

fn get(a: &RunningServer, path: &str, headers: &[(&str, &str)]) -> Response {
    http::get(a.port, path, headers)
}

fn hsync_headers(sig: &str) -> Vec<(&str, &str)> {
    vec![("Accept-Encoding", "gzip, hsync"), ("Hsync-Signature", sig)]
}

fn tokens(r: &Response, name: &str) -> Vec<String> {
    r.header_all(name).map(|v| v.split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect()).unwrap_or_default()
}

/// The checks every hsync-coded answer must pass; returns the rebuilt body.
fn assert_hsync(r: &Response, old: &[u8]) -> Vec<u8> {
    assert_eq!(r.status, 200, "{:?}", r.headers);
    assert_eq!(r.content_encoding(), Some("hsync"), "{:?}", r.headers);
    assert!(r.header("Content-Length").is_none(), "{:?}", r.headers);
    assert!(r.header("Accept-Ranges").is_none(), "{:?}", r.headers);
    let vary = tokens(r, "Vary");
    for n in ["Accept-Encoding", "Hsync-Signature"] {
        assert!(vary.iter().any(|v| v.eq_ignore_ascii_case(n)), "Vary {vary:?}");
    }
    patch(old, &r.body, LIMIT).expect("delta applies")
}

#[test]
fn static_page_is_sent_as_delta() {
    if skip() {
        return;
    }
    let fx = fixture();
    let a = server(|_, _| {});
    let sig = sig_header(&fx.old);
    let r = get(&a, "/page.html", &hsync_headers(&sig));
    assert_eq!(assert_hsync(&r, &fx.old), fx.new);
    assert!(r.body.len() * 10 < fx.new.len(), "delta {} bytes for {}", r.body.len(), fx.new.len());
    let etag = r.header("ETag").expect("etag").to_string();
    assert!(etag.starts_with("W/\""), "{etag}");
    // the note for %{hsync_ratio}n
    let log = a.access_log_text();
    let last = log.lines().last().unwrap_or("").to_string();
    let ratio: f64 = last.rsplit(' ').find(|f| !f.starts_with("coding=")).unwrap().parse().unwrap_or_else(|_| panic!("{log}"));
    assert!(ratio > 10.0, "{last}");
    // the weak ETag revalidates: 304
    let r = get(&a, "/page.html", &[("Accept-Encoding", "gzip, hsync"), ("Hsync-Signature", &sig), ("If-None-Match", &etag)]);
    assert_eq!(r.status, 304, "{:?}", r.headers);
    assert!(r.content_encoding().is_none());
    a.finish();
}

#[test]
fn gzip_and_hsync_coexist_in_any_order() {
    if skip() {
        return;
    }
    let fx = fixture();
    let sig = sig_header(&fx.old);
    // whatever the order of the filter lines, hsync wins when asked, gzip otherwise
    for lines in [
        None,
        Some("AddOutputFilterByType DEFLATE text/html\nAddOutputFilterByType HSYNC text/html"),
        Some("SetOutputFilter DEFLATE;HSYNC"),
        Some("SetOutputFilter HSYNC;DEFLATE"),
    ] {
        let a = server(|_, e| e.filters = lines.map(String::from));
        let r = get(&a, "/page.html", &hsync_headers(&sig));
        assert_eq!(assert_hsync(&r, &fx.old), fx.new, "{lines:?}");
        let r = get(&a, "/page.html", &[("Accept-Encoding", "gzip")]);
        assert_eq!(r.content_encoding(), Some("gzip"), "{lines:?} {:?}", r.headers);
        // asks for both but has no signature: gzip
        let r = get(&a, "/page.html", &[("Accept-Encoding", "gzip, hsync")]);
        assert_eq!(r.content_encoding(), Some("gzip"), "{lines:?} {:?}", r.headers);
        // a bad signature: gzip
        let r = get(&a, "/page.html", &[("Accept-Encoding", "gzip, hsync"), ("Hsync-Signature", "!!")]);
        assert_eq!(r.content_encoding(), Some("gzip"), "{lines:?} {:?}", r.headers);
        // no Accept-Encoding: as is
        let r = get(&a, "/page.html", &[]);
        assert!(r.content_encoding().is_none());
        assert_eq!(r.body, fx.new);
        a.finish();
    }
}

#[test]
fn requests_left_alone() {
    if skip() {
        return;
    }
    let fx = fixture();
    let a = server(|o, _| o.gzip = false);
    let sig = sig_header(&fx.old);
    let h = [("Accept-Encoding", "hsync"), ("Hsync-Signature", sig.as_str())];
    // Range: the ordinary 206
    let mut hr = h.to_vec();
    hr.push(("Range", "bytes=0-99"));
    let r = get(&a, "/page.html", &hr);
    assert_eq!(r.status, 206);
    assert!(r.content_encoding().is_none());
    assert_eq!(r.body, &fx.new[..100]);
    // HEAD: the fields of the hsync GET, no body (server_behaviour::head_request)
    let r = http::request(a.port, "HEAD", "/page.html", &h);
    assert_eq!(r.status, 200);
    assert_eq!(r.content_encoding(), Some("hsync"));
    assert!(r.header("Content-Length").is_none(), "{:?}", r.headers);
    // POST is not GET (405 from the static handler, but never hsync)
    let r = http::request(a.port, "POST", "/page.html", &h);
    assert!(r.content_encoding().is_none());
    // shorter than HsyncMinLength (default 256)
    let r = get(&a, "/small.html", &h);
    assert_eq!(r.status, 200);
    assert!(r.content_encoding().is_none());
    assert_eq!(r.body, &fx.new[..100]);
    // not text/html: the filter is not configured for it
    let r = get(&a, "/page.txt", &h);
    assert!(r.content_encoding().is_none());
    // 404
    let r = get(&a, "/missing.html", &h);
    assert_eq!(r.status, 404);
    assert!(r.content_encoding().is_none());
    // /off/, /pre/, /nt/ of the shared layout
    let r = get(&a, "/off/page.html", &h);
    assert_eq!(r.status, 200);
    assert!(r.content_encoding().is_none());
    let r = get(&a, "/nt/page.html", &h);
    assert_eq!(r.status, 200);
    assert!(r.content_encoding().is_none(), "{:?}", r.headers);
    assert_eq!(r.body, fx.new);
    let r = get(&a, "/pre/page.html", &h);
    assert_eq!(r.status, 200);
    assert_eq!(r.content_encoding(), Some("gzip"));
    assert_eq!(r.body, fx.new);
    a.finish();
}

#[test]
fn bad_signatures_get_the_full_page_and_a_log_line() {
    if skip() {
        return;
    }
    let fx = fixture();
    let a = server(|o, _| o.gzip = false);
    let good = sig_header(&fx.old);
    let truncated = &good[..good.len() - 10];
    let garbage = "A".repeat(200);
    let huge = "B".repeat(7_000);
    let bads = ["!!!", "", "aGVsbG8", truncated, garbage.as_str(), huge.as_str()];
    for bad in bads {
        let r = get(&a, "/page.html", &[("Accept-Encoding", "hsync"), ("Hsync-Signature", bad)]);
        assert_eq!(r.status, 200, "{bad:.20}");
        assert!(r.content_encoding().is_none(), "{bad:.20}");
        assert_eq!(r.body, fx.new);
        let r = get(&a, "/proxy/page", &[("Accept-Encoding", "hsync"), ("Hsync-Signature", bad)]);
        assert_eq!(r.status, 200);
        assert!(r.content_encoding().is_none());
    }
    let n = a.wait_log_count("invalid Hsync-Signature", 2 * bads.len());
    assert_eq!(n, 2 * bads.len(), "{}", a.error_log_text());
    assert!(a.error_log_text().contains("[hsync:info]"));
    a.finish();
}

#[test]
fn proxied_pages() {
    if skip() {
        return;
    }
    let fx = fixture();
    let a = server(|_, _| {});
    let sig = sig_header(&fx.old);
    for path in ["/proxy/page", "/proxy/chunked"] {
        let r = get(&a, path, &hsync_headers(&sig));
        let body = assert_hsync(&r, &fx.old);
        assert!(body.starts_with(&fx.new) && body.ends_with(b"-->\n"), "{path}");
    }
    // no-transform: not hsync (mod_deflate, like nginx's gzip, ignores no-transform)
    let r = get(&a, "/proxy/notransform", &[("Accept-Encoding", "hsync"), ("Hsync-Signature", &sig)]);
    assert_eq!(r.status, 200);
    assert!(r.content_encoding().is_none(), "{:?}", r.headers);
    assert!(r.body.starts_with(&fx.new));
    // already encoded: passed through untouched
    let r = get(&a, "/proxy/encoded", &hsync_headers(&sig));
    assert_eq!(r.content_encoding(), Some("gzip"));
    assert!(r.body.starts_with(b"\x1f\x8b\x08\x00 pretend"));
    // ETag from upstream made weak; If-None-Match with it -> 304 from upstream
    let r = get(&a, "/proxy/etag", &hsync_headers(&sig));
    assert_eq!(assert_hsync(&r, &fx.old), fx.new);
    let etag = r.header("ETag").unwrap().to_string();
    assert_eq!(etag, "W/\"v30\"");
    let r = get(&a, "/proxy/etag", &[("Accept-Encoding", "gzip, hsync"), ("Hsync-Signature", &sig), ("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    // HEAD through the proxy: the fields of the hsync GET
    let r = http::request(a.port, "HEAD", "/proxy/page", &hsync_headers(&sig));
    assert_eq!(r.status, 200);
    assert_eq!(r.content_encoding(), Some("hsync"), "{:?}", r.headers);
    assert!(r.header("Content-Length").is_none(), "{:?}", r.headers);
    a.finish();
}

#[test]
fn fifty_megabytes_streamed() {
    if skip() {
        return;
    }
    let a = server(|_, _| {});
    let old = big_body(0);
    let sig = sig_header(&old);
    for path in ["/big.html", "/proxy/big"] {
        let r = get(&a, path, &hsync_headers(&sig));
        let body = assert_hsync(&r, &old);
        assert_eq!(body.len(), BIG, "{path}");
        assert!(body == big_body(if path == "/big.html" { 1 } else { 2 }), "{path}");
        assert!(r.body.len() < BIG / 10, "{path}: delta {} bytes", r.body.len());
    }
    // no whole-body buffering: the children's peak RSS stays far below 50 MB extra
    let parent = apache::parent_pid(&a).expect("pid");
    for pid in apache::child_pids(parent) {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            let hwm = status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok());
            if let Some(kb) = hwm {
                assert!(kb < 60 * 1024, "child {pid} peak RSS {kb} kB");
            }
        }
    }
    a.finish();
}

#[test]
fn directives() {
    if skip() {
        return;
    }
    let fx = fixture();
    let sig = sig_header(&fx.old);
    // HsyncMinLength above the page length: left alone
    let a = server(|o, e| {
        o.gzip = false;
        e.min_length = Some(1_000_000);
    });
    let r = get(&a, "/page.html", &hsync_headers(&sig));
    assert!(r.content_encoding().is_none());
    // ... but a response of unknown length is still encoded
    let r = get(&a, "/proxy/chunked", &hsync_headers(&sig));
    assert_hsync(&r, &fx.old);
    a.finish();
    // HsyncMaxSignature below the signature size: invalid, logged
    let a = server(|o, _| {
        o.gzip = false;
        o.max_signature = Some(100);
    });
    let r = get(&a, "/page.html", &hsync_headers(&sig));
    assert!(r.content_encoding().is_none());
    assert_eq!(a.wait_log_count("invalid Hsync-Signature", 1), 1);
    a.finish();
    // a level, and per-directory settings overriding the server's
    let a = server(|o, e| {
        o.gzip = false;
        e.level = Some(19);
        e.conf = format!("<Directory \"{}\">\n  HsyncMinLength 1000000\n</Directory>\n", fx.docroot.display());
    });
    let r = get(&a, "/page.html", &hsync_headers(&sig));
    assert!(r.content_encoding().is_none(), "per-dir HsyncMinLength");
    let r = get(&a, "/proxy/page", &hsync_headers(&sig));
    assert_hsync(&r, &fx.old);
    a.finish();
    // bad values are configuration errors
    for (bad, why) in [
        ("HsyncCompressionLevel 99", "the compression level must be between 1 and 22 (or 0 for the default), not 99"),
        ("HsyncMinLength -1", "HsyncMinLength must be a non-negative integer"),
        ("HsyncMaxSignature 0", "the largest signature must be between 64 and 65536 bytes, not 0"),
        ("HsyncMaxSignature 65537", "the largest signature must be between 64 and 65536 bytes, not 65537"),
        ("<Location /x>\n  HsyncMaxSignature 63\n</Location>", "the largest signature must be between 64 and 65536 bytes, not 63"),
        ("HsyncMinLength x", "HsyncMinLength must be a non-negative integer"),
        ("HsyncVary maybe", "HsyncVary must be On or Off"),
    ] {
        let mut o = Options::new(&fx.docroot);
        o.upstream = None;
        let e = Extra { conf: format!("{bad}\n"), ..Extra::default() };
        match apache::start_with(&o, &e) {
            Ok(_) => panic!("{bad} accepted"),
            // the core's words (hsync_config_check), as nginx prints them
            Err(log) => assert!(log.contains(why), "{bad}: {log}"),
        }
    }
    // the limits themselves are fine
    let a = server(|o, e| {
        o.max_signature = Some(65536);
        e.conf = "HsyncCompressionLevel 22\n<Location /x>\n  HsyncMaxSignature 64\n</Location>\n".into();
    });
    assert_hsync(&get(&a, "/page.html", &hsync_headers(&sig)), &fx.old);
    a.finish();
}

/// `Vary: Accept-Encoding, Hsync-Signature` on every response hsync could
/// apply to, also when it did not (HsyncVary On, the default), with and
/// without mod_deflate; with HsyncVary Off only on hsync responses.
#[test]
fn vary_on_declined_responses() {
    if skip() {
        return;
    }
    let fx = fixture();
    let sig = sig_header(&fx.old);
    let both = ["Accept-Encoding", "Hsync-Signature"];
    for gzip in [false, true] {
        let a = server(|o, _| o.gzip = gzip);
        for h in [vec![], vec![("Accept-Encoding", "gzip")], vec![("Accept-Encoding", "hsync")]] {
            let r = get(&a, "/page.html", &h);
            assert_eq!(tokens(&r, "Vary"), both, "gzip {gzip}, {h:?}: {:?}", r.headers);
        }
        let r = get(&a, "/page.html", &hsync_headers(&sig));
        assert_hsync(&r, &fx.old);
        assert_eq!(tokens(&r, "Vary"), both, "{:?}", r.headers);
        // not text/html: HSYNC is not configured for it
        let r = get(&a, "/page.txt", &[]);
        assert!(r.header("Vary").is_none(), "{:?}", r.headers);
        a.finish();
    }
    let a = server(|o, e| {
        o.gzip = false;
        e.conf = "HsyncVary Off\n".into();
    });
    let r = get(&a, "/page.html", &[("Accept-Encoding", "hsync")]);
    assert!(r.header("Vary").is_none(), "HsyncVary Off: {:?}", r.headers);
    let r = get(&a, "/page.html", &hsync_headers(&sig));
    assert_hsync(&r, &fx.old);
    a.finish();
}

/// A 304 and a HEAD response carry the validators the hsync response would
/// have had: the weak ETag and the Vary (RFC 9110 §15.4.5), although
/// mod_filter runs AddOutputFilterByType filters on status 200 only, and
/// the HEAD the coding too (server_behaviour.rs has the shared cases; these
/// are the filter configurations of httpd).
#[test]
fn not_modified_and_head_carry_the_validators() {
    if skip() {
        return;
    }
    let fx = fixture();
    let sig = sig_header(&fx.old);
    for (filters, vary_off) in [(None, false), (Some("SetOutputFilter HSYNC"), false), (None, true)] {
        let a = server(|o, e| {
            o.gzip = false;
            e.filters = filters.map(String::from);
            if vary_off {
                e.conf = "HsyncVary Off\n".into();
            }
        });
        let what = format!("{filters:?}, HsyncVary Off {vary_off}");
        let plain = get(&a, "/page.html", &[]);
        let strong = plain.header("ETag").unwrap().to_string();
        let weak = format!("W/{strong}");

        let mut h = hsync_headers(&sig);
        h.push(("If-None-Match", &weak));
        let r = get(&a, "/page.html", &h);
        assert_eq!(r.status, 304, "{what}");
        assert_eq!(r.header("ETag"), Some(weak.as_str()), "{what}: {:?}", r.headers);
        assert_eq!(tokens(&r, "Vary"), ["Accept-Encoding", "Hsync-Signature"], "{what}: {:?}", r.headers);
        assert!(r.content_encoding().is_none());

        // a client without hsync revalidating: its own tag, and the Vary (unless off)
        let r = get(&a, "/page.html", &[("If-None-Match", &strong)]);
        assert_eq!(r.status, 304, "{what}");
        assert_eq!(r.header("ETag"), Some(strong.as_str()), "{what}: {:?}", r.headers);
        assert_eq!(r.header("Vary").is_some(), !vary_off, "{what}: {:?}", r.headers);

        let r = http::request(a.port, "HEAD", "/page.html", &hsync_headers(&sig));
        assert_eq!(r.status, 200);
        assert_eq!(r.content_encoding(), Some("hsync"), "{what}: {:?}", r.headers);
        assert!(r.header("Content-Length").is_none(), "{what}: {:?}", r.headers);
        assert_eq!(r.header("ETag"), Some(weak.as_str()), "{what}: {:?}", r.headers);
        assert_eq!(tokens(&r, "Vary"), ["Accept-Encoding", "Hsync-Signature"], "{what}: {:?}", r.headers);
        a.finish();
    }
    // A 304 of a type HSYNC is not configured for is left alone.
    let a = server(|o, _| o.gzip = false);
    let tag = get(&a, "/page.txt", &[]).header("ETag").unwrap().to_string();
    let mut h = hsync_headers(&sig);
    h.push(("If-None-Match", &tag));
    let r = get(&a, "/page.txt", &h);
    assert_eq!(r.status, 304);
    assert_eq!(r.header("ETag"), Some(tag.as_str()));
    assert!(r.header("Vary").is_none(), "{:?}", r.headers);
    // HEAD through the proxy: the upstream's tag made weak
    let r = http::request(a.port, "HEAD", "/proxy/etag", &hsync_headers(&sig));
    assert_eq!(r.status, 200);
    assert_eq!(r.content_encoding(), Some("hsync"), "{:?}", r.headers);
    assert_eq!(r.header("ETag"), Some("W/\"v30\""), "{:?}", r.headers);
    a.finish();
}

#[test]
fn module_loaded_but_not_configured_changes_nothing() {
    if skip() {
        return;
    }
    let fx = fixture();
    let a = server(|o, e| {
        o.gzip = false;
        e.filters = Some(String::new());
    });
    let r = get(&a, "/page.html", &hsync_headers(&sig_header(&fx.old)));
    assert!(r.content_encoding().is_none());
    assert_eq!(r.body, fx.new);
    a.finish();
}

#[test]
fn concurrent_requests() {
    if skip() {
        return;
    }
    let fx = fixture();
    let a = server(|_, _| {});
    let sig = sig_header(&fx.old);
    // scoped threads: a failing request cannot leave the server running
    std::thread::scope(|sc| {
        for i in 0..8 {
            let (a, sig) = (&a, &sig);
            sc.spawn(move || {
                for j in 0..25 {
                    let path = if (i + j) % 2 == 0 { "/page.html" } else { "/proxy/chunked" };
                    let r = get(a, path, &hsync_headers(sig));
                    let body = assert_hsync(&r, &fx.old);
                    assert!(body.starts_with(&fx.new));
                }
            });
        }
    });
    a.finish();
}
