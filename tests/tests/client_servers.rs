//! The client against the real servers: the library (`Fetcher`), `hsync get`
//! and `hsync proxy` (driven by curl, and by headless Chromium) fetch pages
//! from nginx and Apache with the hsync modules while the pages change on
//! disk. Every case runs against each server (`nginx::<case>`,
//! `apache::<case>`); every body is compared byte for byte, and the server's
//! access log (status, bytes sent, `hsync_ratio`) confirms what travelled as
//! a delta.
//!
//! Needs the `hsync` binary (`cargo build --release -p hsync`; `HSYNC_BIN`
//! names another one) and curl; the Chromium case needs /usr/bin/chromium
//! (skipped with a notice without it, a failure if `HSYNC_REQUIRE_CHROMIUM`
//! is set). `HSYNC_SKIP_SERVER_TESTS=1` (or `=apache`, `=nginx`) skips
//! servers; `HSYNC_KEEP_TMP=1` keeps the temporary directories.
//!
//! The servers send `Last-Modified` and no `Cache-Control`, so a client may
//! treat a page as fresh for 10 % of its age (RFC 9111 heuristic freshness).
//! Files are therefore written once the server runs, with an mtime [`AGE`] in
//! the past (which also keeps Apache's ETags strong), and the tests wait
//! [`SETTLE`] after a change before fetching again, so that the client asks
//! the server. Successive versions of a file are dated at least a second
//! apart: nginx derives the ETag from mtime (seconds) and size, and
//! pages/cnn v1 and v2 have the same size.

use hsync_client::{DiskCache, FetchOptions, Fetcher, Outcome, Source};
use hsync_tests::proxy::HsyncProxy;
use hsync_tests::{corpus, hsync_bin, start, temp_dir, RunningServer, ServerKind};
use http::HeaderMap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How far in the past written files are dated.
const AGE: Duration = Duration::from_secs(3);
/// Wait after a change: past the heuristic freshness (about 0.1 × AGE) of
/// what the client holds, and at least a second after the previous version.
const SETTLE: Duration = Duration::from_millis(1200);
const STALE_WARNING: &str = "111 - \"Revalidation Failed\"";

/// A temporary directory, removed on drop (unless `HSYNC_KEEP_TMP`).
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        Scratch { dir: temp_dir(tag) }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("HSYNC_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A document root (with the subdirectories `Options` names).
struct Site {
    root: Scratch,
    /// The mtime (Unix seconds) last given to each file.
    dated: Mutex<HashMap<String, u64>>,
}

impl Site {
    fn new() -> Site {
        let root = Scratch::new("client-docroot");
        for sub in ["pre", "nt", "off"] {
            std::fs::create_dir_all(root.dir.join(sub)).unwrap();
        }
        Site { root, dated: Mutex::new(HashMap::new()) }
    }

    /// Writes `rel`, dated [`AGE`] ago, and at least a second (as the
    /// servers count for ETag and Last-Modified) after its previous version.
    fn put(&self, rel: &str, data: &[u8]) {
        let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        let mut dated = self.dated.lock().unwrap();
        let mtime = loop {
            let t = SystemTime::now() - AGE;
            if dated.get(rel).is_none_or(|&last| secs(t) > last) {
                break t;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        dated.insert(rel.to_string(), secs(mtime));
        let p = self.root.dir.join(rel);
        std::fs::write(&p, data).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_modified(mtime).unwrap();
    }

    fn remove(&self, rel: &str) {
        std::fs::remove_file(self.root.dir.join(rel)).unwrap();
    }

    fn options(&self) -> hsync_tests::Options {
        hsync_tests::Options::new(&self.root.dir)
    }
}

fn read(p: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(p.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", p.as_ref().display()))
}

/// blog-home version `n` (1-based).
fn blog(n: usize) -> Vec<u8> {
    read(corpus().join(format!("blog-home/{n:03}.html")))
}

fn url(s: &RunningServer, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", s.port)
}

/// Byte-exact comparison with a readable failure.
#[track_caller]
fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
        panic!("{what}: body differs ({} bytes, want {}; first difference at byte {at})", got.len(), want.len());
    }
}

// ---------------------------------------------------------------- access log

/// One access log line: `addr "request" status bytes ratio` (both harnesses).
#[derive(Debug)]
struct Logged {
    path: String,
    status: u16,
    /// nginx: `$bytes_sent` (head and body); Apache: `%b` (body).
    bytes: u64,
    /// `hsync_ratio`; `None` when the response was not hsync-coded ("-").
    ratio: Option<f64>,
}

fn parse_log(text: &str) -> Vec<Logged> {
    text.lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once('"')?;
            let (req, rest) = rest.split_once('"')?;
            let path = req.split_whitespace().nth(1)?.to_string();
            let mut f = rest.split_whitespace();
            let status = f.next()?.parse().ok()?;
            let bytes = f.next()?.parse().unwrap_or(0);
            let ratio = f.next().and_then(|r| r.parse::<f64>().ok());
            Some(Logged { path, status, bytes, ratio })
        })
        .collect()
}

/// The access log lines for `path`, once there are at least `n`.
fn log_for(s: &RunningServer, path: &str, n: usize) -> Vec<Logged> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines: Vec<Logged> = parse_log(&s.access_log_text()).into_iter().filter(|l| l.path == path).collect();
        if lines.len() >= n {
            return lines;
        }
        if Instant::now() > deadline {
            panic!("{n} access log lines for {path} expected, found {}:\n{}", lines.len(), s.access_log_text());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `n`th request for `path` (1-based) was answered with an hsync delta
/// far smaller than `page`.
#[track_caller]
fn assert_logged_delta(s: &RunningServer, path: &str, n: usize, page: &[u8]) {
    let lines = log_for(s, path, n);
    let l = &lines[n - 1];
    assert_eq!(l.status, 200, "request {n} for {path}: {l:?}");
    let ratio = l.ratio.unwrap_or_else(|| panic!("request {n} for {path} was not hsync-coded: {l:?}"));
    assert!(ratio > 5.0, "request {n} for {path}: ratio {ratio}");
    assert!(l.bytes * 5 < page.len() as u64, "request {n} for {path}: {} bytes sent for {}", l.bytes, page.len());
}

/// The `n`th request for `path` got a full, uncoded response of `page`.
#[track_caller]
fn assert_logged_full(s: &RunningServer, path: &str, n: usize, page: &[u8]) {
    let lines = log_for(s, path, n);
    let l = &lines[n - 1];
    assert_eq!(l.status, 200, "request {n} for {path}: {l:?}");
    assert_eq!(l.ratio, None, "request {n} for {path}: {l:?}");
    assert!(l.bytes >= page.len() as u64, "request {n} for {path}: {l:?}");
}

#[track_caller]
fn assert_logged_status(s: &RunningServer, path: &str, n: usize, status: u16) {
    let lines = log_for(s, path, n);
    assert_eq!(lines[n - 1].status, status, "request {n} for {path}: {:?}", lines[n - 1]);
    assert_eq!(lines.len(), n, "more requests for {path} than expected: {lines:?}");
}

// ------------------------------------------------------------------- library

struct Lib {
    rt: tokio::runtime::Runtime,
    f: Fetcher,
    _cache: Scratch,
}

impl Lib {
    fn new() -> Lib {
        let cache = Scratch::new("client-cache");
        let f = Fetcher::new(
            Arc::new(DiskCache::open(&cache.dir, 1 << 30).unwrap()),
            FetchOptions { timeout: Duration::from_secs(10), ..Default::default() },
        );
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Lib { rt, f, _cache: cache }
    }

    fn get(&self, url: &str) -> Arc<Outcome> {
        self.rt.block_on(self.f.fetch(&url.parse().unwrap(), &HeaderMap::new(), None)).unwrap_or_else(|e| panic!("{url}: {e}"))
    }
}

/// What the origin answered last (from the outcome's trace), e.g. "200 OK"
/// and the value of its Content-Encoding.
fn last_response(o: &Outcome) -> (String, Option<String>) {
    let ex = o.trace.last().unwrap_or_else(|| panic!("no request sent ({:?})", o.source));
    let status = ex.response.first().cloned().unwrap_or_default();
    let ce = ex.response.iter().find_map(|l| l.strip_prefix("content-encoding: ").map(str::to_string));
    (status, ce)
}

fn sent_signature(o: &Outcome) -> bool {
    o.trace.last().is_some_and(|ex| ex.request.iter().any(|l| l.starts_with("hsync-signature: ")))
}

/// The outcome is `page`, served as an ordinary identity response.
#[track_caller]
fn assert_page(o: &Outcome, page: &[u8], what: &str) {
    assert_eq!(o.status, 200, "{what}: status");
    assert_same(&o.body, page, what);
    assert!(o.headers.get("content-encoding").is_none(), "{what}: {:?}", o.headers);
    assert_eq!(o.headers.get("content-length").and_then(|v| v.to_str().ok()), Some(page.len().to_string().as_str()), "{what}");
}

fn library_fetches_changes_as_deltas(kind: ServerKind) {
    let site = Site::new();
    let Some(s) = start(kind, &site.options()) else { return };
    site.put("page.html", &blog(1));
    let lib = Lib::new();
    let u = url(&s, "/page.html");

    let o = lib.get(&u);
    assert_page(&o, &blog(1), "first fetch");
    assert_eq!(o.source, Source::Full);
    assert!(!sent_signature(&o), "nothing cached, no signature");
    assert_logged_full(&s, "/page.html", 1, &blog(1));

    // Unchanged: heuristically fresh right away, then revalidated with a 304.
    let o = lib.get(&u);
    assert!(matches!(o.source, Source::Fresh | Source::Revalidated), "{:?}", o.source);
    assert_page(&o, &blog(1), "unchanged, at once");
    let mut requests = 1 + usize::from(o.source == Source::Revalidated);
    std::thread::sleep(SETTLE);
    let o = lib.get(&u);
    assert_eq!(o.source, Source::Revalidated);
    assert_page(&o, &blog(1), "unchanged, revalidated");
    assert!(last_response(&o).0.contains("304"), "{:?}", o.trace);
    assert!(o.wire_bytes < 1000, "a 304 of {} bytes", o.wire_bytes);
    requests += 1;
    assert_logged_status(&s, "/page.html", requests, 304);

    // Changed on disk: deltas against the cached copy.
    for n in 2..=5 {
        let page = blog(n);
        site.put("page.html", &page);
        std::thread::sleep(SETTLE);
        let o = lib.get(&u);
        let what = format!("blog-home {n:03}");
        assert_eq!(o.source, Source::Delta, "{what}: {:?}", o.trace);
        assert!(sent_signature(&o));
        assert_eq!(last_response(&o).1.as_deref(), Some("hsync"), "{what}");
        assert_page(&o, &page, &what);
        assert!(o.wire_bytes * 5 < page.len() as u64, "{what}: {} bytes on the wire for {}", o.wire_bytes, page.len());
        assert_same(&lib.f.cache.get(&u).expect("cached").body, &page, &format!("{what}, cached"));
        requests += 1;
        assert_logged_delta(&s, "/page.html", requests, &page);
    }

    // A page whose two versions have the same size (the ETag differs by mtime only).
    let (v1, v2) = (read(corpus().join("pages/cnn/v1.html")), read(corpus().join("pages/cnn/v2.html")));
    assert_eq!(v1.len(), v2.len());
    site.put("cnn.html", &v1);
    let c = url(&s, "/cnn.html");
    let o = lib.get(&c);
    assert_eq!(o.source, Source::Full);
    assert_page(&o, &v1, "cnn v1");
    site.put("cnn.html", &v2);
    std::thread::sleep(SETTLE);
    let o = lib.get(&c);
    assert_eq!(o.source, Source::Delta, "{:?}", o.trace);
    assert_page(&o, &v2, "cnn v2");
    assert_logged_delta(&s, "/cnn.html", 2, &v2);
    s.finish();
}

// ----------------------------------------------------------------- hsync get

fn hsync_get(url: &str, out: &Path, cache: &Path) -> Output {
    let o = Command::new(hsync_bin())
        .args(["get", "-v", "--timeout", "10", url, "-o"])
        .arg(out)
        .arg("--cache")
        .arg(cache)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    eprintln!("hsync get {url}: {}\n{}", o.status, String::from_utf8_lossy(&o.stderr));
    o
}

/// The `-v` savings line: (body bytes, bytes on the wire, percent saved, source).
fn savings(stderr: &str) -> (u64, u64, f64, String) {
    let l = stderr.lines().find(|l| l.starts_with("hsync: ") && l.contains(" on the wire ")).unwrap_or_else(|| {
        panic!("no savings line in:\n{stderr}");
    });
    // "hsync: 97711 bytes, 1753 on the wire (98.2% saved) [DELTA]"
    let w: Vec<&str> = l.split_whitespace().collect();
    assert_eq!((w.len(), w[2], w[8]), (10, "bytes,", "saved)"), "{l}");
    let pct = w[7].trim_start_matches('(').trim_end_matches('%').parse().unwrap();
    (w[1].parse().unwrap(), w[3].parse().unwrap(), pct, w[9].trim_matches(|c| c == '[' || c == ']').to_string())
}

fn get_command_across_a_change(kind: ServerKind) {
    let site = Site::new();
    let Some(s) = start(kind, &site.options()) else { return };
    site.put("page.html", &blog(8));
    let work = Scratch::new("client-get");
    let (out, cache) = (work.dir.join("out.html"), work.dir.join("cache"));
    let u = url(&s, "/page.html");

    let o = hsync_get(&u, &out, &cache);
    assert!(o.status.success());
    assert_same(&read(&out), &blog(8), "first get");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(savings(&err).3, "MISS");
    assert!(!err.contains("> hsync-signature:"), "{err}");
    assert_logged_full(&s, "/page.html", 1, &blog(8));

    let page = blog(9);
    site.put("page.html", &page);
    std::thread::sleep(SETTLE);
    let o = hsync_get(&u, &out, &cache);
    assert!(o.status.success());
    assert_same(&read(&out), &page, "second get");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("> hsync-signature: "), "{err}");
    assert!(err.contains("< content-encoding: hsync"), "{err}");
    let (size, wire, pct, source) = savings(&err);
    assert_eq!(source, "DELTA");
    assert_eq!(size, page.len() as u64);
    assert!(wire * 5 < size && pct > 80.0, "{wire} bytes on the wire, {pct}% saved");
    assert_logged_delta(&s, "/page.html", 2, &page);

    // Unchanged: a 304 (or still fresh), the same file.
    std::thread::sleep(SETTLE);
    let o = hsync_get(&u, &out, &cache);
    assert!(o.status.success());
    assert_same(&read(&out), &page, "third get");
    assert_eq!(savings(&String::from_utf8_lossy(&o.stderr)).3, "REVALIDATED");
    assert_logged_status(&s, "/page.html", 3, 304);

    // Missing: an error, no file.
    let none = work.dir.join("none.html");
    let o = hsync_get(&url(&s, "/missing.html"), &none, &cache);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("404"));
    assert!(!none.exists());
    s.finish();
}

// --------------------------------------------------------------- hsync proxy

/// `hsync proxy` as a child process on a free port; killed on drop.
struct Proxy {
    p: HsyncProxy,
    _cache: Scratch,
}

impl Proxy {
    fn start() -> Proxy {
        let cache = Scratch::new("client-proxy");
        let p = HsyncProxy::start(["--timeout".as_ref(), "1".as_ref(), "--cache".as_ref(), cache.dir.as_os_str()]);
        Proxy { p, _cache: cache }
    }

    /// GET `url` through the proxy with curl.
    fn get(&self, url: &str) -> Curl {
        curl(self.p.addr, url)
    }
}

#[derive(Debug)]
struct Curl {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Curl {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// `curl -x http://PROXY URL`, as a browser would ask (gzip accepted).
fn curl(proxy: SocketAddr, url: &str) -> Curl {
    let work = Scratch::new("client-curl");
    let head = work.dir.join("head");
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-H", "Accept-Encoding: gzip, deflate", "-x"])
        .arg(format!("http://{proxy}"))
        .arg("-D")
        .arg(&head)
        .arg(url)
        .env_remove("no_proxy")
        .env_remove("NO_PROXY")
        .stdin(Stdio::null())
        .output()
        .expect("curl");
    assert!(o.status.success(), "curl {url}: {}\n{}", o.status, String::from_utf8_lossy(&o.stderr));
    let head = String::from_utf8(read(&head)).unwrap();
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap();
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    Curl { status, headers, body: o.stdout }
}

/// The proxy's status.json.
fn proxy_status(p: &Proxy) -> serde_json::Value {
    let r = p.get("http://hsync.proxy/status.json");
    assert_eq!(r.status, 200);
    serde_json::from_slice(&r.body).unwrap()
}

fn cached_urls(p: &Proxy) -> Vec<String> {
    proxy_status(p)["entries"].as_array().unwrap().iter().map(|e| e["url"].as_str().unwrap().to_string()).collect()
}

#[track_caller]
fn assert_served(r: &Curl, page: &[u8], cache: &str, what: &str) {
    assert_eq!(r.status, 200, "{what}: {:?}", r.headers);
    assert_same(&r.body, page, what);
    assert_eq!(r.header("content-encoding"), None, "{what}: identity to the client");
    assert_eq!(r.header("x-hsync-cache"), Some(cache), "{what}: {:?}", r.headers);
    assert_eq!(r.header("warning"), None, "{what}");
}

fn proxy_serves_changes_byte_exact(kind: ServerKind) {
    let site = Site::new();
    let Some(s) = start(kind, &site.options()) else { return };
    site.put("page.html", &blog(12));
    let p = Proxy::start();
    let u = url(&s, "/page.html");
    for (i, n) in (12..=16).enumerate() {
        let page = blog(n);
        if i > 0 {
            site.put("page.html", &page);
            std::thread::sleep(SETTLE);
        }
        let r = p.get(&u);
        let what = format!("load {} (blog-home {n:03})", i + 1);
        if i == 0 {
            assert_served(&r, &page, "MISS", &what);
            assert_logged_full(&s, "/page.html", 1, &page);
        } else {
            assert_served(&r, &page, "DELTA", &what);
            assert_logged_delta(&s, "/page.html", i + 1, &page);
        }
    }
    // Unchanged: the proxy revalidates (304) and sends the whole page.
    std::thread::sleep(SETTLE);
    let r = p.get(&u);
    assert_served(&r, &blog(16), "REVALIDATED", "unchanged");
    assert_logged_status(&s, "/page.html", 6, 304);
    let st = proxy_status(&p);
    let (wire, decoded) = (st["wire_bytes"].as_u64().unwrap(), st["decoded_bytes"].as_u64().unwrap());
    assert!(wire * 3 < decoded, "{wire} bytes on the wire for {decoded}");
    assert_eq!(cached_urls(&p), vec![u]);
    s.finish();
}

/// The stale page with the proxy's notice taken out.
fn without_notice(body: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(body);
    let start = text.find("<div id=\"hsync-stale-notice\"").expect("stale notice");
    let len = text[start..].find("</div>").expect("end of the notice") + "</div>".len();
    assert!(text[start..start + len].contains("may be out of date"), "{}", &text[start..start + len]);
    let mut out = body[..start].to_vec();
    out.extend_from_slice(&body[start + len..]);
    out
}

fn proxy_serves_stale_copy_when_server_is_down(kind: ServerKind) {
    let site = Site::new();
    let feed = read(corpus().join("atom-feed/007.xml"));
    let Some(mut s) = start(kind, &site.options()) else { return };
    site.put("page.html", &blog(20));
    site.put("feed.txt", &feed);
    let p = Proxy::start();
    let (pu, fu) = (url(&s, "/page.html"), url(&s, "/feed.txt"));
    assert_served(&p.get(&pu), &blog(20), "MISS", "page");
    assert_served(&p.get(&fu), &feed, "MISS", "feed");
    let page = blog(21);
    site.put("page.html", &page);
    std::thread::sleep(SETTLE);
    assert_served(&p.get(&pu), &page, "DELTA", "page changed");
    assert_logged_delta(&s, "/page.html", 2, &page);

    s.stop();
    std::thread::sleep(SETTLE);
    let t = Instant::now();
    let r = p.get(&pu);
    assert!(t.elapsed() < Duration::from_secs(5), "stale copy after {:?}", t.elapsed());
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-hsync-cache"), Some("STALE"));
    assert_eq!(r.header("warning"), Some(STALE_WARNING));
    assert_eq!(r.header("content-length"), Some(r.body.len().to_string().as_str()));
    assert_same(&without_notice(&r.body), &page, "stale page without the notice");
    // Not HTML: no notice, the copy as it is.
    let r = p.get(&fu);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("warning"), Some(STALE_WARNING));
    assert_same(&r.body, &feed, "stale feed");
    // Nothing cached: an error from the proxy.
    let r = p.get(&url(&s, "/never.html"));
    assert!(r.status == 502 || r.status == 504, "{r:?}");
    s.finish();
}

fn proxy_passes_not_found(kind: ServerKind) {
    let site = Site::new();
    let Some(mut s) = start(kind, &site.options()) else { return };
    site.put("gone.html", &blog(25));
    let p = Proxy::start();
    let u = url(&s, "/gone.html");
    assert_served(&p.get(&u), &blog(25), "MISS", "before");
    assert_eq!(cached_urls(&p), vec![u.clone()]);

    site.remove("gone.html");
    std::thread::sleep(SETTLE);
    let r = p.get(&u);
    assert_eq!(r.status, 404, "{r:?}");
    // The server's error page, with a notice linking to the copy (client/README.md, "Moved and removed pages").
    assert_eq!(r.header("x-hsync-cache"), Some("REMOVED"));
    assert_eq!(r.header("warning"), None);
    assert!(r.body.len() < 4000, "the server's error page, not the copy ({} bytes)", r.body.len());
    let text = String::from_utf8_lossy(&r.body);
    assert!(text.contains("removed by its author") && text.contains("/.hsync/copy?u="), "{text}");
    assert_logged_status(&s, "/gone.html", 2, 404);

    // The copy is kept for that link only: with the server down it is not served for the URL.
    s.stop();
    let r = p.get(&u);
    assert!(r.status == 502 || r.status == 504, "{r:?}");
    s.finish();
}

// ------------------------------------------------------ hsync proxy, Chromium

/// A Chromium process group (browser, renderer, helpers), killed on drop.
struct Chromium(Child);

impl Drop for Chromium {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the group this test spawned (`process_group(0)`).
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// A fresh headless Chromium (new profile) loads `url` through `proxy`:
/// the DOM it ends up with, and its net log (which records the response
/// heads it received).
fn chromium_load(proxy: SocketAddr, url: &str) -> (String, String) {
    let work = Scratch::new("client-chromium");
    let netlog = work.dir.join("netlog.json");
    let (dom_file, err_file) = (work.dir.join("dom.html"), work.dir.join("stderr"));
    let mut cmd = hsync_tests::chromium::dump_dom_command(&work.dir.join("profile"), proxy);
    cmd.arg(format!("--log-net-log={}", netlog.display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&dom_file).unwrap())
        .stderr(std::fs::File::create(&err_file).unwrap());
    let mut chromium = Chromium(cmd.process_group(0).spawn().expect("run chromium"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = chromium.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "chromium {url}: no exit after 60 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(chromium);
    assert!(status.success(), "chromium {url}: {status}\n{}", String::from_utf8_lossy(&read(&err_file)));
    let dom = String::from_utf8_lossy(&read(&dom_file)).into_owned();
    (dom, std::fs::read_to_string(&netlog).unwrap_or_default())
}

/// The response heads Chromium's net log records for requests of `url`
/// (status line first, then `name: value` lines).
fn response_heads(netlog: &str, url: &str) -> Vec<Vec<String>> {
    let log: serde_json::Value = serde_json::from_str(netlog).expect("Chromium's net log (JSON)");
    let types = &log["constants"]["logEventTypes"];
    let (start_job, read_headers) = (&types["URL_REQUEST_START_JOB"], &types["HTTP_TRANSACTION_READ_RESPONSE_HEADERS"]);
    let events = log["events"].as_array().expect("net log events");
    let ids: Vec<&serde_json::Value> =
        events.iter().filter(|e| &e["type"] == start_job && e["params"]["url"] == url).map(|e| &e["source"]["id"]).collect();
    events
        .iter()
        .filter(|e| &e["type"] == read_headers && ids.contains(&&e["source"]["id"]))
        .map(|e| e["params"]["headers"].as_array().unwrap().iter().map(|h| h.as_str().unwrap().to_string()).collect())
        .collect()
}

/// `page` with an element naming `tag` put before `</body>`, so that each
/// version written is told apart in the DOM (the blog-home titles repeat).
fn marked(page: &[u8], tag: &str) -> (Vec<u8>, String) {
    let marker = format!("hsync-chromium-{tag}");
    let at = page.windows(7).rposition(|w| w.eq_ignore_ascii_case(b"</body>")).expect("</body>");
    let mut out = page[..at].to_vec();
    out.extend_from_slice(format!("<p id=\"hsync-marker\">{marker}</p>\n").as_bytes());
    out.extend_from_slice(&page[at..]);
    (out, marker)
}

fn chromium_through_proxy_across_changes(kind: ServerKind) {
    if !hsync_tests::chromium::available() {
        return;
    }
    let site = Site::new();
    let Some(s) = start(kind, &site.options()) else { return };
    let p = Proxy::start();
    let u = url(&s, "/index.html");
    for (i, n) in (26..=28).enumerate() {
        let (page, marker) = marked(&blog(n), &format!("{}-blog-home-{n:03}", kind.name()));
        site.put("index.html", &page);
        if i > 0 {
            std::thread::sleep(SETTLE);
        }
        let what = format!("load {} (blog-home {n:03})", i + 1);
        let (dom, netlog) = chromium_load(p.p.addr, &u);
        assert!(dom.contains(&marker), "{what}: {marker} not in the DOM ({} bytes):\n{}", dom.len(), &dom[..dom.len().min(2000)]);
        for m in (26..=28).filter(|&m| m != n) {
            assert!(!dom.contains(&format!("blog-home-{m:03}")), "{what}: another version's marker in the DOM");
        }
        let cache = if i == 0 { "MISS" } else { "DELTA" };
        let heads = response_heads(&netlog, &u);
        assert_eq!(heads.len(), 1, "{what}: one response for the page in Chromium's net log: {heads:?}");
        assert_eq!(heads[0].first().map(String::as_str), Some("HTTP/1.1 200 OK"), "{what}: {heads:?}");
        assert!(heads[0].contains(&format!("x-hsync-cache: {cache}")), "{what}: {heads:?}");
        if i == 0 {
            assert_logged_full(&s, "/index.html", 1, &page);
        } else {
            assert_logged_delta(&s, "/index.html", i + 1, &page);
        }
    }
    // Chromium asked once per load (the log has no extra requests for the page).
    assert_eq!(log_for(&s, "/index.html", 3).len(), 3);
    let st = proxy_status(&p);
    let (wire, decoded) = (st["wire_bytes"].as_u64().unwrap(), st["decoded_bytes"].as_u64().unwrap());
    assert!(wire * 2 < decoded, "{wire} bytes on the wire for {decoded}");
    s.finish();
}

hsync_tests::server_cases!(
    library_fetches_changes_as_deltas,
    get_command_across_a_change,
    proxy_serves_changes_byte_exact,
    proxy_serves_stale_copy_when_server_is_down,
    proxy_passes_not_found,
    chromium_through_proxy_across_changes,
);
