//! Test helpers: an in-process origin server that implements hsync with
//! hsync-core, a raw HTTP/1.1 client for talking to the proxy, and corpus access.
//!
//! The origin serves the files of a document root (`docroot`), so a test that
//! only writes pages and fetches them can run against any server sharing that
//! directory: set `HSYNC_TEST_ORIGIN_BASE` (e.g. `http://127.0.0.1:8081`) and
//! `HSYNC_TEST_ORIGIN_DOCROOT` and [`Origin::start`] uses those instead
//! (tests needing the in-process server's special modes skip themselves then).
#![allow(dead_code)]

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

/// `../shared/corpus` beside the checkout (`HSYNC_CORPUS` overrides it).
pub const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus");

/// The shared runtime the origin and in-process proxies run on.
pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap())
}

pub fn corpus_dir() -> PathBuf {
    PathBuf::from(std::env::var("HSYNC_CORPUS").unwrap_or_else(|_| CORPUS.to_string()))
}

/// The successive versions of a corpus resource, in order.
pub fn versions(folder: &str) -> Vec<Vec<u8>> {
    let dir = corpus_dir().join(folder);
    let mut names: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display())).map(|d| d.unwrap().path()).collect();
    names.sort();
    names.into_iter().map(|p| std::fs::read(p).unwrap()).collect()
}

#[derive(Debug, Clone)]
pub struct Logged {
    pub path: String,
    pub signature: bool,
    pub if_none_match: Option<String>,
    pub status: u16,
    pub content_encoding: Option<String>,
    pub body_bytes: usize,
    /// The request's Cookie (all lines joined).
    pub cookie: Option<String>,
    pub method: String,
    /// Bytes of request body received (the `/upload` endpoint).
    pub request_body: u64,
}

/// Switches of the in-process origin.
#[derive(Debug, Default)]
pub struct Modes {
    /// Implement hsync (otherwise a plain server).
    pub hsync: AtomicBool,
    /// Answer gzip when accepted (and hsync is not used).
    pub gzip: AtomicBool,
    /// Send garbage bodies labelled Content-Encoding: hsync.
    pub garbage_delta: AtomicBool,
    /// Accept connections but never answer.
    pub hang: AtomicBool,
    /// Send bodies in 64 KiB pieces this many ms apart (0 = at once).
    pub throttle_ms: AtomicU64,
    /// Personalize pages by the request's Cookie: the body starts with
    /// `<!-- for USER -->` (USER the Cookie value, or `anonymous`).
    pub personalize: AtomicBool,
    /// Answer requests carrying a Cookie with `Set-Cookie: renewed=...` (derived from it).
    pub set_cookie: AtomicBool,
    /// Wait this many ms before answering (so concurrent requests overlap).
    pub delay_ms: AtomicU64,
}

/// The first line of a page personalized for `cookie` (see [`Modes::personalize`]).
pub fn personal_marker(cookie: Option<&str>) -> String {
    format!("<!-- for {} -->\n", cookie.unwrap_or("anonymous"))
}

/// The Set-Cookie the origin sends for `cookie` (see [`Modes::set_cookie`]).
pub fn renewed_cookie(cookie: &str) -> String {
    format!("renewed={}; Path=/", cookie.replace(|c: char| !c.is_ascii_alphanumeric(), "_"))
}

pub struct OriginState {
    pub docroot: PathBuf,
    pub modes: Modes,
    pub cache_control: Mutex<String>,
    /// Response header lines added to every 200 and 304 (e.g. `Vary: Cookie`).
    pub extra_headers: Mutex<Vec<(String, String)>>,
    pub log: Mutex<Vec<Logged>>,
    /// Paths answered with a redirect: (status, Location).
    pub redirects: Mutex<HashMap<String, (u16, String)>>,
    /// Paths answered 410 Gone.
    pub gone: Mutex<Vec<String>>,
    conns: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

pub struct Origin {
    pub base: String,
    pub docroot: PathBuf,
    /// `None` when pointed at an external server.
    pub state: Option<Arc<OriginState>>,
    accept: Option<tokio::task::JoinHandle<()>>,
    _tmp: Option<tempfile::TempDir>,
}

impl Origin {
    /// An in-process origin on 127.0.0.1:0 with hsync on, or the external one named by the environment.
    pub fn start() -> Origin {
        if let (Ok(base), Ok(root)) = (std::env::var("HSYNC_TEST_ORIGIN_BASE"), std::env::var("HSYNC_TEST_ORIGIN_DOCROOT")) {
            return Origin { base: base.trim_end_matches('/').to_string(), docroot: root.into(), state: None, accept: None, _tmp: None };
        }
        Self::start_local(true)
    }

    /// Always the in-process origin.
    pub fn start_local(hsync: bool) -> Origin {
        let tmp = tempfile::tempdir().unwrap();
        let state = Arc::new(OriginState {
            docroot: tmp.path().to_path_buf(),
            modes: Modes::default(),
            cache_control: Mutex::new("no-cache".into()),
            extra_headers: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            redirects: Mutex::new(HashMap::new()),
            gone: Mutex::new(Vec::new()),
            conns: Mutex::new(Vec::new()),
        });
        state.modes.hsync.store(hsync, Ordering::SeqCst);
        let listener = rt().block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let st = state.clone();
        let accept = rt().spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let st2 = st.clone();
                let h = tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let st3 = st2.clone();
                        async move { Ok::<_, Infallible>(serve(st3, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
                st.conns.lock().unwrap().push(h);
            }
        });
        Origin {
            base: format!("http://{addr}"),
            docroot: tmp.path().to_path_buf(),
            state: Some(state),
            accept: Some(accept),
            _tmp: Some(tmp),
        }
    }

    pub fn is_local(&self) -> bool {
        self.state.is_some()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn addr(&self) -> SocketAddr {
        self.base.trim_start_matches("http://").parse().unwrap()
    }

    /// Writes (replaces atomically) the file served at `path`.
    pub fn set_page(&self, path: &str, body: &[u8]) {
        let p = self.docroot.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let tmp = p.with_extension("tmp-write");
        std::fs::write(&tmp, body).unwrap();
        std::fs::rename(&tmp, &p).unwrap();
    }

    pub fn remove_page(&self, path: &str) {
        let _ = std::fs::remove_file(self.docroot.join(path.trim_start_matches('/')));
    }

    pub fn state(&self) -> &OriginState {
        self.state.as_ref().expect("in-process origin")
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state().log.lock().unwrap().clone()
    }

    pub fn last(&self) -> Logged {
        self.log().last().cloned().expect("a request")
    }

    pub fn requests(&self) -> usize {
        self.state.as_ref().map(|s| s.log.lock().unwrap().len()).unwrap_or(0)
    }

    pub fn set_cache_control(&self, cc: &str) {
        *self.state().cache_control.lock().unwrap() = cc.to_string();
    }

    /// Replaces the extra response header lines (see [`OriginState::extra_headers`]).
    pub fn set_extra_headers(&self, h: &[(&str, &str)]) {
        *self.state().extra_headers.lock().unwrap() = h.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    }

    /// Stops listening and drops every open connection.
    pub fn stop(&mut self) {
        if let Some(a) = self.accept.take() {
            a.abort();
        }
        if let Some(s) = &self.state {
            for c in s.conns.lock().unwrap().drain(..) {
                c.abort();
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A body fed from a channel (so it can be throttled).
struct ChanBody(tokio::sync::mpsc::Receiver<Bytes>);

impl Body for ChanBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") | Some("htm") => "text/html; charset=utf-8",
        Some("xml") => "application/atom+xml",
        Some("txt") => "text/plain",
        _ => "application/octet-stream",
    }
}

fn strip_w(s: &str) -> &str {
    s.trim().trim_start_matches("W/")
}

async fn serve(st: Arc<OriginState>, req: Request<Incoming>) -> Response<ChanBody> {
    let path = req.uri().path().to_string();
    let h = req.headers();
    let sig_hdr = h.get("hsync-signature").map(|v| v.as_bytes().to_vec());
    let ae = h.get(header::ACCEPT_ENCODING).map(|v| v.as_bytes().to_vec());
    let inm = h.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).map(|s| s.to_string());
    let has_range = h.contains_key(header::RANGE);
    let cookie: Option<String> = {
        let v: Vec<String> = h.get_all(header::COOKIE).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect();
        (!v.is_empty()).then(|| v.join("; "))
    };
    let method = req.method().clone();
    if st.modes.hang.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let mut log = Logged {
        path: path.clone(),
        signature: sig_hdr.is_some(),
        if_none_match: inm.clone(),
        status: 200,
        content_encoding: None,
        body_bytes: 0,
        cookie: cookie.clone(),
        method: method.to_string(),
        request_body: 0,
    };
    if method == Method::POST && path == "/upload" {
        // Reads the whole request body as it comes (holding none of it) and answers with its length and digest.
        let mut body = req.into_body();
        let mut hasher = hsync_core::hash::Xxh3_64::new();
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return respond(StatusCode::BAD_REQUEST, vec![], b"body broken\n".to_vec(), 0);
            };
            if let Ok(d) = frame.into_data() {
                n += d.len() as u64;
                hasher.update(&d);
            }
        }
        log.request_body = n;
        st.log.lock().unwrap().push(log);
        let msg = format!("received {n} {:016x}\n", hasher.digest());
        return respond(
            StatusCode::OK,
            vec![("content-type", "text/plain".into()), ("content-length", msg.len().to_string())],
            msg.into_bytes(),
            0,
        );
    }
    let delay = st.modes.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let redirect = st.redirects.lock().unwrap().get(&path).cloned();
    if let Some((status, location)) = redirect {
        log.status = status;
        st.log.lock().unwrap().push(log);
        let h = vec![("location", location), ("content-type", "text/html".into())];
        return respond(StatusCode::from_u16(status).unwrap(), h, b"<p>moved</p>".to_vec(), 0);
    }
    if st.gone.lock().unwrap().contains(&path) {
        log.status = 410;
        st.log.lock().unwrap().push(log);
        return respond(
            StatusCode::GONE,
            vec![("content-type", "text/html".into())],
            b"<html><body><h1>Gone</h1></body></html>".to_vec(),
            0,
        );
    }
    let file = st.docroot.join(path.trim_start_matches('/'));
    let file = if path.ends_with('/') { file.join("index.html") } else { file };
    let body = match std::fs::read(&file) {
        Ok(b) => b,
        Err(_) => {
            log.status = 404;
            st.log.lock().unwrap().push(log);
            return respond(StatusCode::NOT_FOUND, vec![("content-type", "text/plain".into())], b"not found\n".to_vec(), 0);
        }
    };
    let body = if st.modes.personalize.load(Ordering::SeqCst) {
        let mut b = personal_marker(cookie.as_deref()).into_bytes();
        b.extend_from_slice(&body);
        b
    } else {
        body
    };
    let tag = format!("\"{:016x}\"", hsync_core::hash::xxh3_64(&body));
    let cc = st.cache_control.lock().unwrap().clone();
    let mut headers: Vec<(String, String)> =
        vec![("content-type".into(), content_type(&file).into()), ("cache-control".into(), cc.clone())];
    headers.extend(st.extra_headers.lock().unwrap().iter().cloned());
    if let (Some(c), true) = (&cookie, st.modes.set_cookie.load(Ordering::SeqCst)) {
        headers.push(("set-cookie".into(), renewed_cookie(c)));
    }
    let mut headers: Vec<(&str, String)> = headers.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    if let Some(inm) = &inm {
        if inm.split(',').any(|t| strip_w(t) == tag) {
            log.status = 304;
            st.log.lock().unwrap().push(log);
            headers.push(("etag", tag));
            return respond(StatusCode::NOT_MODIFIED, headers, Vec::new(), 0);
        }
    }
    let cfg = hsync_core::http::ServerConfig::default();
    let throttle = st.modes.throttle_ms.load(Ordering::SeqCst);
    if st.modes.hsync.load(Ordering::SeqCst) {
        if let Ok(sig) = hsync_core::http::check_request(&cfg, b"GET", ae.as_deref(), sig_hdr.as_deref(), has_range) {
            if hsync_core::http::check_response(&cfg, 200, None, Some(cc.as_bytes()), Some(body.len() as u64)).is_ok() {
                let out = if st.modes.garbage_delta.load(Ordering::SeqCst) {
                    let mut g = b"hsd\x01".to_vec();
                    g.extend((0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
                    g
                } else {
                    let mut enc = hsync_core::Encoder::new(sig);
                    let mut out = Vec::new();
                    enc.update(&body, &mut out).unwrap();
                    enc.finish(&mut out).unwrap();
                    out
                };
                log.content_encoding = Some("hsync".into());
                log.body_bytes = out.len();
                st.log.lock().unwrap().push(log);
                headers.push(("content-encoding", "hsync".into()));
                headers.push(("etag", hsync_core::http::etag(&tag)));
                headers.push(("vary", hsync_core::http::vary(None)));
                return respond(StatusCode::OK, headers, out, throttle);
            }
        }
    }
    headers.push(("vary", "Accept-Encoding".into()));
    let gzip_ok = ae.as_deref().map(|a| String::from_utf8_lossy(a).contains("gzip")).unwrap_or(false);
    if st.modes.gzip.load(Ordering::SeqCst) && gzip_ok {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(&body).unwrap();
        let gz = e.finish().unwrap();
        log.content_encoding = Some("gzip".into());
        log.body_bytes = gz.len();
        st.log.lock().unwrap().push(log);
        headers.push(("content-encoding", "gzip".into()));
        headers.push(("etag", format!("W/{tag}")));
        headers.push(("content-length", gz.len().to_string()));
        return respond(StatusCode::OK, headers, gz, throttle);
    }
    log.body_bytes = body.len();
    st.log.lock().unwrap().push(log);
    headers.push(("etag", tag));
    headers.push(("content-length", body.len().to_string()));
    respond(StatusCode::OK, headers, body, throttle)
}

fn respond(status: StatusCode, headers: Vec<(&str, String)>, body: Vec<u8>, throttle_ms: u64) -> Response<ChanBody> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        if throttle_ms == 0 {
            let _ = tx.send(Bytes::from(body)).await;
        } else {
            for c in body.chunks(64 << 10) {
                if tx.send(Bytes::copy_from_slice(c)).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(throttle_ms)).await;
            }
        }
    });
    let mut r = Response::new(ChanBody(rx));
    *r.status_mut() = status;
    for (k, v) in headers {
        r.headers_mut().append(http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(&v).unwrap());
    }
    r
}

/// A response read by [`raw_get`].
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(|s| s.as_str())
    }
}

/// Sends `GET <url>` (absolute form) to a proxy over a plain TcpStream, `Connection: close`.
pub fn raw_get(proxy: SocketAddr, url: &str, extra: &[(&str, &str)]) -> std::io::Result<RawResponse> {
    let mut s = TcpStream::connect(proxy)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let host = url.split("//").nth(1).unwrap_or("").split('/').next().unwrap_or("");
    let mut req = format!("GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: hsync-test\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut all = Vec::new();
    s.read_to_end(&mut all)?;
    parse_response(&all)
}

/// Sends `raw` (a whole request head, and body if any) to `addr` and reads the answer until the connection closes.
pub fn raw_request(addr: SocketAddr, raw: &str) -> std::io::Result<RawResponse> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(raw.as_bytes())?;
    let mut all = Vec::new();
    s.read_to_end(&mut all)?;
    parse_response(&all)
}

pub fn parse_response(all: &[u8]) -> std::io::Result<RawResponse> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let end = all.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| bad("no end of head"))?;
    let head = String::from_utf8_lossy(&all[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).ok_or_else(|| bad("status"))?;
    let mut headers = HashMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let mut body = all[end + 4..].to_vec();
    if let Some(n) = headers.get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        if body.len() < n {
            return Err(bad("short body"));
        }
        body.truncate(n);
    } else if headers.get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    }
    Ok(RawResponse { status, headers, body })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let i = b.windows(2).position(|w| w == b"\r\n")?;
        let n = usize::from_str_radix(std::str::from_utf8(&b[..i]).ok()?.split(';').next()?.trim(), 16).ok()?;
        b = &b[i + 2..];
        if n == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..n)?);
        b = b.get(n + 2..)?;
    }
}

/// Starts `hsync proxy` in its own process (so tests can kill -9 it).
///
/// Runs the binary named by `HSYNC_BIN` when set; otherwise re-runs this test
/// executable with `HSYNC_PROXY_CHILD` set, where the `proxy_child_main` test
/// calls `hsync_client::cli::proxy` — the very function `hsync proxy` calls.
pub fn spawn_proxy_process(cache: &Path, extra: &[&str]) -> (std::process::Child, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut args: Vec<String> = vec!["--listen".into(), addr.to_string(), "--cache".into(), cache.display().to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut cmd = match std::env::var("HSYNC_BIN") {
        Ok(bin) => {
            let mut c = std::process::Command::new(bin);
            c.arg("proxy").args(&args);
            c
        }
        Err(_) => {
            let mut c = std::process::Command::new(std::env::current_exe().unwrap());
            c.args(["--exact", "proxy_child_main", "--nocapture", "--test-threads=1"]);
            c.env("HSYNC_PROXY_CHILD", args.join("\n"));
            c
        }
    };
    cmd.stdout(std::process::Stdio::null());
    let child = cmd.spawn().expect("spawn proxy process");
    wait_listening(addr);
    (child, addr)
}

/// Body of the `proxy_child_main` test: runs the proxy when asked to by [`spawn_proxy_process`].
pub fn proxy_child_main() {
    use clap::{Args, Command};
    let Ok(args) = std::env::var("HSYNC_PROXY_CHILD") else { return };
    let cmd = hsync_client::cli::ProxyArgs::augment_args(Command::new("proxy"));
    let m = cmd.get_matches_from(std::iter::once("proxy".to_string()).chain(args.split('\n').map(String::from)));
    let pa = <hsync_client::cli::ProxyArgs as clap::FromArgMatches>::from_arg_matches(&m).unwrap();
    let code = hsync_client::cli::proxy(pa);
    eprintln!("proxy exited: {code:?}");
    std::process::exit(1);
}

/// Waits until something accepts connections on `addr`.
pub fn wait_listening(addr: SocketAddr) {
    for _ in 0..200 {
        if TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("nothing listening on {addr}");
}

/// A free port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
