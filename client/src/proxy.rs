//! The caching forward proxy: absolute-form `http://` GETs go through the
//! [`Fetcher`] (cache, revalidation, hsync deltas, stale copies when the
//! origin is down); `CONNECT` is tunnelled untouched to the allowed ports
//! (443 by default), unless its host is one to intercept (`--intercept-tls`,
//! [`crate::mitm`]): then the proxy terminates TLS with a certificate of its
//! local CA and the requests inside go the same way as http:// ones, to
//! `https://host/…`; everything else is forwarded as it is, bodies streamed
//! both ways. The proxy's own status page answers at `http://hsync.proxy/`
//! and at `/` on a loopback address on the proxy's port, and to no other
//! Host (so a web page cannot read it by DNS rebinding).
//!
//! Every request gets an access line when its response is done (see
//! [`crate::log`] and the README); origins that cannot be reached, and the
//! stale copies served because of it, a warning.

use crate::cache::now_secs;
use crate::fetch::{empty_body, strip_hop_by_hop, BoxError, FetchError, Fetcher, Outcome, Source};
use crate::log::{Level, Logger};
use crate::notice::{self, esc, Notice};
use crate::optimistic::{self, Background, Mode};
use crate::parts;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::{TcpListener, TcpStream};

/// The host name the status page answers to.
pub const STATUS_HOST: &str = "hsync.proxy";

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Inject a visible banner into stale HTML pages.
    pub stale_notice: bool,
    /// Timeout for CONNECT targets.
    pub timeout: Duration,
    /// The ports CONNECT may reach (anything else gets 403): 443 by default.
    pub connect_ports: Vec<u16>,
    /// Where access lines and warnings go (by default nowhere).
    pub log: Arc<Logger>,
    /// `--optimistic MS`: when the origin has not answered in this time, serve
    /// the stored copy (if it may be served stale) and revalidate behind it.
    pub optimistic: Option<Duration>,
    /// `--optimistic-swap`: stale HTML copies served at once carry a small
    /// script that swaps in the current version when the proxy has it.
    pub optimistic_swap: bool,
    /// Revalidate the stored parts (images, scripts, style sheets) of an HTML
    /// page when the page is fetched or revalidated (`--no-parts`: off).
    pub parts: bool,
    /// Terminate TLS for these CONNECT hosts (`--intercept-tls`); `None`: tunnel every CONNECT.
    pub intercept: Option<Arc<crate::mitm::Interceptor>>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            stale_notice: true,
            timeout: Duration::from_secs(5),
            connect_ports: vec![443],
            log: Arc::new(Logger::default()),
            optimistic: None,
            optimistic_swap: false,
            parts: true,
            intercept: None,
        }
    }
}

pub struct Proxy {
    pub fetcher: Arc<Fetcher>,
    pub cfg: ProxyConfig,
    /// Body bytes sent to clients for cached GETs.
    pub delivered: AtomicU64,
    pub started: SystemTime,
    local: SocketAddr,
    /// Background revalidations (optimistic answers, stale-while-revalidate).
    bg: Arc<Background>,
    /// Pages that moved (301/308) and whose notice is still to be shown: new URL → old URL.
    moved: Mutex<HashMap<String, String>>,
    /// Per HTML page, its last parts revalidation (see [`crate::parts`]).
    parts: Mutex<HashMap<String, parts::Report>>,
    /// Pages whose parts are being revalidated.
    parts_running: Mutex<HashSet<String>>,
}

/// What a fetch gives (see [`Fetcher::fetch_joined`]).
type Shared = Result<Arc<Outcome>, Arc<FetchError>>;

/// Response bodies: whole (pages the proxy made or cached) or streamed (forwarded).
type RespBody = UnsyncBoxBody<Bytes, BoxError>;
type Resp = Response<RespBody>;

fn full(b: impl Into<Bytes>) -> RespBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed_unsync()
}

fn text(status: StatusCode, msg: impl Into<String>) -> Resp {
    let mut r = Response::new(full(msg.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// Splits `host[:port]` (with `[v6]` brackets); the port defaults to 80.
fn split_host(hp: &str) -> Option<(String, u16)> {
    let a: http::uri::Authority = hp.trim().parse().ok()?;
    if a.as_str().contains('@') {
        return None;
    }
    let host = a.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    Some((host, a.port_u16().unwrap_or(80)))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A request body that notes when it last moved (so a forwarded upload is
/// timed by its idleness, not its length) and whether it went over the limit.
struct Watched<B> {
    inner: B,
    start: Instant,
    /// Milliseconds from `start` to the last frame.
    last: Arc<AtomicU64>,
    over_limit: Arc<AtomicBool>,
}

impl<B: Body<Data = Bytes, Error = BoxError> + Unpin> Body for Watched<B> {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(_))) => self.last.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed),
            Poll::Ready(Some(Err(e))) if e.downcast_ref::<LengthLimitError>().is_some() => self.over_limit.store(true, Ordering::Relaxed),
            _ => {}
        }
        r
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The access line's result for a response the proxy made itself (its status
/// page, a refused request), with no cache lookup and no origin.
pub const NONE: &str = "NONE";

/// What the access line says of a response besides the request and its body.
struct Note {
    /// MISS, HIT, DELTA, DCZ, REVALIDATED, STALE, PASS or NONE.
    result: &'static str,
    /// Bytes received from the origin; `None`: the body's bytes (a forwarded response, passed on as it came).
    wire: Option<u64>,
}

impl Note {
    fn own() -> Note {
        Note { result: NONE, wire: Some(0) }
    }
    fn pass_failed() -> Note {
        Note { result: Source::Pass.as_str(), wire: Some(0) }
    }
}

/// The start of a request's access line: when, who, what.
#[derive(Clone)]
struct Access {
    log: Arc<Logger>,
    at: SystemTime,
    start: Instant,
    /// `CLIENT METHOD URL`.
    head: String,
}

impl Access {
    fn write(&self, status: u16, result: &str, wire: u64, delivered: u64) {
        let ms = self.start.elapsed().as_millis();
        self.log.access(self.at, &format!("{} {status} {result} {wire} {delivered} {ms}", self.head));
    }
}

/// A response body that counts what it delivers and writes the access line
/// when it is dropped: after the last byte, or when the client went away.
struct LoggedBody {
    inner: RespBody,
    delivered: u64,
    line: Option<(Access, u16, &'static str, Option<u64>)>,
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r {
            if let Some(d) = f.data_ref() {
                self.delivered += d.len() as u64;
            }
        }
        r
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some((a, status, result, wire)) = self.line.take() {
            a.write(status, result, wire.unwrap_or(self.delivered), self.delivered);
        }
    }
}

/// An error and its causes, `a: b: c` (hyper's own says only "client error (Connect)").
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The URL as logged: without user:password@ in the authority.
fn log_url(u: &Uri) -> String {
    let s = u.to_string();
    match u.authority().map(|a| a.as_str()) {
        Some(a) if a.contains('@') => s.replacen(a, a.rsplit('@').next().unwrap_or(""), 1),
        _ => s,
    }
}

/// Binds `addr` and serves in the background; returns the bound address.
pub async fn spawn(addr: &str, fetcher: Arc<Fetcher>, cfg: ProxyConfig) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let bg = Background::new(fetcher.opts.timeout * 4);
    let proxy = Arc::new(Proxy {
        fetcher,
        cfg,
        delivered: AtomicU64::new(0),
        started: SystemTime::now(),
        local,
        bg,
        moved: Mutex::new(HashMap::new()),
        parts: Mutex::new(HashMap::new()),
        parts_running: Mutex::new(HashSet::new()),
    });
    let h = tokio::spawn(async move { proxy.serve(listener).await });
    Ok((local, h))
}

impl Proxy {
    async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    self.cfg.log.error(format!("accept: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let this = self.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let this = this.clone();
                    async move { Ok::<_, Infallible>(this.handle(req, peer).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    }

    /// Is `host[:port]` the proxy itself: `hsync.proxy`, or a loopback
    /// address or `localhost` on the proxy's port?
    fn is_own_host(&self, hp: &str) -> bool {
        match split_host(hp) {
            Some((host, _)) if host == STATUS_HOST => true,
            Some((host, port)) => port == self.local.port() && is_loopback(&host),
            None => false,
        }
    }

    async fn handle(self: &Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> Resp {
        let access = self.cfg.log.enabled(Level::Info).then(|| Access {
            log: self.cfg.log.clone(),
            at: SystemTime::now(),
            start: Instant::now(),
            head: format!("{} {} {}", peer.ip().to_canonical(), req.method(), log_url(req.uri())),
        });
        let connect = req.method() == Method::CONNECT;
        let (resp, note) = self.route(req, peer, access.clone()).await;
        let Some(access) = access else { return resp };
        if connect && resp.status() == StatusCode::OK {
            // The tunnel writes its line when it closes.
            return resp;
        }
        let status = resp.status().as_u16();
        let (parts, body) = resp.into_parts();
        let body = LoggedBody { inner: body, delivered: 0, line: Some((access, status, note.result, note.wire)) };
        Response::from_parts(parts, body.boxed_unsync())
    }

    async fn route(self: &Arc<Self>, req: Request<Incoming>, peer: SocketAddr, access: Option<Access>) -> (Resp, Note) {
        if req.method() == Method::CONNECT {
            return self.connect(req, peer, access).await;
        }
        let own = match req.uri().authority() {
            // Absolute form: a request for the proxy itself, or one to forward.
            Some(a) => self.is_own_host(a.as_str()),
            // Origin form: only for the proxy itself, and only under its own names. Any other
            // Host is a page that had its name resolved to us (DNS rebinding): no status page.
            None => {
                let Some(host) = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()) else {
                    return (text(StatusCode::BAD_REQUEST, "hsync proxy: Host required\n"), Note::own());
                };
                if !self.is_own_host(host) {
                    let r = text(
                        StatusCode::FORBIDDEN,
                        format!(
                            "hsync proxy: unknown host; the status page is at http://{STATUS_HOST}/ or http://127.0.0.1:{}/\n",
                            self.local.port()
                        ),
                    );
                    return (r, Note::own());
                }
                true
            }
        };
        if own {
            // Which URLs are cached is the browsing history of the proxy's
            // users: a shared proxy lists them only to this machine.
            let urls = !self.fetcher.opts.shared || peer.ip().to_canonical().is_loopback();
            let r = match req.uri().path() {
                "/" | "/index.html" => self.status_page(urls),
                "/status.json" => self.status_json(urls),
                _ => text(
                    StatusCode::NOT_FOUND,
                    "hsync proxy: send absolute-form requests (configure me as an HTTP proxy); the status page is at /\n",
                ),
            };
            return (r, Note::own());
        }
        let cacheable = req.method() == Method::GET
            && matches!(req.uri().scheme_str(), Some("http") | Some("https"))
            && !req.headers().contains_key(header::RANGE);
        if !cacheable {
            return self.forward(req).await;
        }
        let uri = req.uri().clone();
        let headers = req.headers().clone();
        if matches!(uri.path(), optimistic::FRESH_PATH | optimistic::COPY_PATH) {
            return self.internal(&uri, &headers).await;
        }
        let log = &self.cfg.log;
        // A stored copy that may be served at once while it is revalidated (--optimistic, stale-while-revalidate)?
        let mode = self
            .fetcher
            .stored_meta_for(&uri, &headers)
            .and_then(|(meta, fresh)| optimistic::mode(&meta, fresh, &headers, self.fetcher.opts.shared, self.cfg.optimistic, now_secs()));
        let (res, joined) = match mode {
            None => self.fetcher.fetch_joined(&uri, &headers, None).await,
            Some(m) => match self.optimistic_fetch(&uri, &headers, m).await {
                Ok(r) => r,
                Err(served) => return served,
            },
        };
        if let Ok(o) = &res {
            if !joined {
                self.after_fetch(&uri, o);
            }
        }
        match res {
            Ok(o) => {
                if !joined {
                    if let Some(r) = &o.delta_failed {
                        log.debug(format!("{}: {r}; refetched without a signature", log_url(&uri)));
                    }
                }
                if let Some(r) = &o.stale_reason {
                    log.warn(format!("origin unreachable, serving the stale copy from {}: {}: {r}", fmt_time(o.fetched_at), log_url(&uri)));
                }
                if !o.dictionary_links.is_empty() {
                    // Announced dictionaries are fetched in the background, once each.
                    let f = self.fetcher.clone();
                    let o = o.clone();
                    let log = log.clone();
                    tokio::spawn(async move {
                        for (u, r) in f.fetch_dictionaries(&o).await {
                            match r {
                                Ok(n) => log.debug(format!("dictionary {u}: {n} bytes kept")),
                                Err(e) => log.debug(format!("dictionary {u}: not kept: {e}")),
                            }
                        }
                    });
                }
                // A request that took another's result received nothing itself: its bytes are on that line.
                let wire = Some(if joined { 0 } else { o.wire_bytes });
                if matches!(o.status, StatusCode::MOVED_PERMANENTLY | StatusCode::PERMANENT_REDIRECT) {
                    if let Some(r) = self.moved(&uri, &headers, &o) {
                        return (r, Note { result: MOVED, wire });
                    }
                }
                if matches!(o.status, StatusCode::NOT_FOUND | StatusCode::GONE) {
                    if let Some(r) = self.removed(&uri, &headers, &o) {
                        return (r, Note { result: REMOVED, wire });
                    }
                }
                let note = Note { result: o.source.as_str(), wire };
                (self.respond(&headers, &o), note)
            }
            Err(e) => {
                let what = if e.unreachable { "origin unreachable" } else { "origin failed" };
                log.warn(format!("{what}, no copy to serve: {}: {e}", log_url(&uri)));
                let status = if e.timeout { StatusCode::GATEWAY_TIMEOUT } else { StatusCode::BAD_GATEWAY };
                (text(status, format!("hsync proxy: {uri}: {e}\n")), Note { result: Source::Full.as_str(), wire: Some(0) })
            }
        }
    }

    /// The fetch of a request whose stored copy may be served at once (`m`):
    /// the revalidation runs in the background (one per URL); if it ends
    /// within `m.wait`, its result is the answer (`Ok`), else the stored copy
    /// is served stale (`Err`, the response) and the result stored for the
    /// next request.
    async fn optimistic_fetch(self: &Arc<Self>, uri: &Uri, headers: &HeaderMap, m: Mode) -> Result<(Shared, bool), (Resp, Note)> {
        let url = uri.to_string();
        let running = match self.bg.begin(&url) {
            Ok(r) => r,
            Err(mut done) => {
                // One already runs: wait for it as long as we would for the origin, else the copy.
                if !m.wait.is_zero() && tokio::time::timeout(m.wait, done.wait_for(|d| *d)).await.is_ok() {
                    return Ok(self.fetcher.fetch_joined(uri, headers, None).await);
                }
                return match self.serve_stale(uri, headers, m) {
                    Some(r) => Err(r),
                    None => Ok(self.fetcher.fetch_joined(uri, headers, None).await),
                };
            }
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let this = self.clone();
        let (u, h) = (uri.clone(), headers.clone());
        tokio::spawn(async move {
            let _running = running;
            let (at, start) = (SystemTime::now(), Instant::now());
            let Ok((res, joined)) = tokio::time::timeout(this.bg.timeout, this.fetcher.fetch_joined(&u, &h, None)).await else {
                this.cfg.log.warn(format!("background revalidation timed out: {}", log_url(&u)));
                return;
            };
            if let Ok(o) = &res {
                if !joined {
                    this.after_fetch(&u, o);
                }
            }
            // Nobody waits any more (the copy was served): the exchange gets its own line.
            if let Err((res, joined)) = tx.send((res, joined)) {
                let (status, wire) = match &res {
                    Ok(o) => (o.status.as_u16(), if joined { 0 } else { o.wire_bytes }),
                    Err(e) => (if e.timeout { 504 } else { 502 }, 0),
                };
                this.cfg.log.access(at, &format!("- GET {} {status} {BACKGROUND} {wire} 0 {}", log_url(&u), start.elapsed().as_millis()));
            }
        });
        tokio::pin!(rx);
        if !m.wait.is_zero() {
            tokio::select! {
                r = &mut rx => match r {
                    Ok(r) => return Ok(r),
                    Err(_) => return Ok((Err(Arc::new(FetchError::timeout_error("background revalidation timed out"))), false)),
                },
                _ = tokio::time::sleep(m.wait) => {}
            }
        }
        match self.serve_stale(uri, headers, m) {
            Some(r) => Err(r),
            // The copy went away meanwhile: wait for the origin after all.
            None => match rx.await {
                Ok(r) => Ok(r),
                Err(_) => Ok((Err(Arc::new(FetchError::timeout_error("background revalidation timed out"))), false)),
            },
        }
    }

    /// The stored copy for this request, served stale while it is revalidated:
    /// `Age`, `Warning: 110`, and for HTML the notice (and the swap script).
    fn serve_stale(&self, uri: &Uri, req_headers: &HeaderMap, m: Mode) -> Option<(Resp, Note)> {
        let e = self.fetcher.stored_for(uri, req_headers, false)?;
        let mut headers = Fetcher::served_from(&e);
        headers.insert(header::AGE, HeaderValue::from(e.meta.policy.age(SystemTime::now()).as_secs()));
        headers.insert(HeaderName::from_static("warning"), HeaderValue::from_static(optimistic::WARNING_STALE));
        let mut body = e.body.clone();
        if is_html(&headers) {
            let mut snippet = String::new();
            if self.cfg.stale_notice {
                snippet.push_str(&notice::html(Notice::Updating { fetched_at: e.meta.fetched_at }));
            }
            if self.cfg.optimistic_swap {
                snippet.push_str(&optimistic::swap_script(&e.meta.url, e.meta.body_xxh3));
            }
            if !snippet.is_empty() {
                body = mark_html(&mut headers, &body, &snippet);
            }
        }
        headers.insert(HeaderName::from_static("x-hsync-cache"), HeaderValue::from_static(m.result));
        headers.append(header::VIA, HeaderValue::from_static("1.1 hsync"));
        self.count(&e.meta.url, body.len() as u64, true);
        self.cfg.log.debug(format!("{}: the copy from {} served at once, revalidating", log_url(uri), fmt_time(e.meta.fetched_at)));
        let mut r = Response::new(full(body));
        *r.headers_mut() = headers;
        Some((r, Note { result: m.result, wire: Some(0) }))
    }

    /// Counts a response delivered for `url` (status page).
    fn count(&self, url: &str, delivered: u64, hit: bool) {
        self.delivered.fetch_add(delivered, Ordering::Relaxed);
        let mut m = self.fetcher.per_url.lock().unwrap();
        let s = m.entry(url.to_string()).or_default();
        s.requests += 1;
        s.delivered += delivered;
        if hit {
            s.hits += 1;
        }
    }

    /// After a page came from the origin (fetched, revalidated): its stored
    /// parts are revalidated in the background, one run per page at a time.
    fn after_fetch(self: &Arc<Self>, uri: &Uri, o: &Outcome) {
        if !self.cfg.parts
            || o.status != StatusCode::OK
            || !matches!(o.source, Source::Full | Source::Delta | Source::Dcz | Source::Revalidated)
            || !is_html(&o.headers)
        {
            return;
        }
        if !self.parts_running.lock().unwrap().insert(o.url.clone()) {
            return;
        }
        let (this, page, body) = (self.clone(), uri.clone(), o.body.clone());
        tokio::spawn(async move {
            let report = parts::revalidate(this.fetcher.clone(), &page, &body, this.cfg.log.clone()).await;
            let url = page.to_string();
            {
                let mut m = this.parts.lock().unwrap();
                if m.len() >= 1024 {
                    m.clear();
                }
                m.insert(url.clone(), report);
            }
            this.parts_running.lock().unwrap().remove(&url);
        });
    }

    /// A 301/308 for a page we hold: the copy moves to the new address (the
    /// delta base of its first fetch there, which starts now, without the
    /// user's cookies or credentials), the first page delivered there says
    /// it moved, and the client gets the redirect as the origin sent it.
    fn moved(self: &Arc<Self>, uri: &Uri, headers: &HeaderMap, o: &Outcome) -> Option<Resp> {
        let loc = o.headers.get(header::LOCATION)?.to_str().ok()?;
        let new = crate::dict::resolve(uri, loc)?;
        if new == *uri || new.scheme_str() != Some("http") {
            return None;
        }
        let e = self.fetcher.stored_for(uri, headers, false)?;
        let (old_url, new_url) = (uri.to_string(), new.to_string());
        self.fetcher.cache.remove(&old_url);
        if self.fetcher.cache.get_meta(&new_url).is_none() {
            self.fetcher.seed(&new_url, e);
        }
        {
            let mut m = self.moved.lock().unwrap();
            if m.len() >= 256 {
                m.clear();
            }
            m.insert(new_url, old_url);
        }
        let mut h = headers.clone();
        h.remove(header::COOKIE);
        h.remove(header::AUTHORIZATION);
        let this = self.clone();
        tokio::spawn(async move {
            let (at, start) = (SystemTime::now(), Instant::now());
            let (res, joined) = this.fetcher.fetch_joined(&new, &h, None).await;
            if let Ok(o) = &res {
                if !joined {
                    this.after_fetch(&new, o);
                }
                let wire = if joined { 0 } else { o.wire_bytes };
                this.cfg.log.access(
                    at,
                    &format!("- GET {} {} {BACKGROUND} {wire} 0 {}", log_url(&new), o.status.as_u16(), start.elapsed().as_millis()),
                );
            }
        });
        let mut r = self.respond(headers, o);
        r.headers_mut().insert(HeaderName::from_static("x-hsync-cache"), HeaderValue::from_static(MOVED));
        Some(r)
    }

    /// A 404/410 for an HTML page the user had: the origin's answer with a
    /// notice linking to the kept copy (`/.hsync/copy?u=URL`, on the page's origin).
    fn removed(&self, uri: &Uri, headers: &HeaderMap, o: &Outcome) -> Option<Resp> {
        let e = self.fetcher.stored_for(uri, headers, true)?;
        if !is_html(&Fetcher::served_from(&e)) {
            return None;
        }
        let copy = format!("{}?u={}", optimistic::COPY_PATH, notice::query_escape(&e.meta.url));
        let snippet = notice::html(Notice::Removed { copy: &copy, fetched_at: e.meta.fetched_at });
        let mut h = o.headers.clone();
        // A coded body (gzip, ...) cannot take the notice, nor be shown as text.
        let coded = h.get_all(header::CONTENT_ENCODING).iter().any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        let body = if is_html(&o.headers) && !coded {
            mark_html(&mut h, &o.body, &snippet)
        } else {
            // Not a page the notice fits in: a page of our own around the origin's text.
            let text = if coded { String::new() } else { String::from_utf8_lossy(&o.body[..o.body.len().min(64 << 10)]).into_owned() };
            let page = format!(
                "<!doctype html><html><head><meta charset=utf-8><title>{}</title></head><body>{snippet}<pre style=\"margin-top:4em\">{}</pre></body></html>",
                o.status,
                esc(&text)
            );
            h.remove(header::CONTENT_ENCODING);
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            mark_html(&mut h, page.as_bytes(), "")
        };
        h.insert(HeaderName::from_static("x-hsync-cache"), HeaderValue::from_static(REMOVED));
        h.append(header::VIA, HeaderValue::from_static("1.1 hsync"));
        self.count(&e.meta.url, body.len() as u64, false);
        let mut r = Response::new(full(body));
        *r.status_mut() = o.status;
        *r.headers_mut() = h;
        Some(r)
    }

    /// `/.hsync/fresh` and `/.hsync/copy` on any origin (see [`crate::optimistic`]):
    /// only about a URL of that same origin, only entries the fetcher would
    /// use for this request (shared rules, Vary).
    async fn internal(&self, uri: &Uri, headers: &HeaderMap) -> (Resp, Note) {
        let q = uri.query().unwrap_or("");
        let Some(target) = notice::query_param(q, "u").and_then(|u| u.parse::<Uri>().ok()) else {
            return (text(StatusCode::BAD_REQUEST, "hsync proxy: u=URL expected\n"), Note::own());
        };
        if !optimistic::same_origin(&target, Some(uri)) {
            return (text(StatusCode::FORBIDDEN, "hsync proxy: only a URL of this origin\n"), Note::own());
        }
        if uri.path() == optimistic::FRESH_PATH {
            let v = notice::query_param(q, "v").unwrap_or_default();
            let (status, h, body) = optimistic::fresh(&self.fetcher, &self.bg, &target, &v, headers).await;
            let mut r = Response::new(full(body));
            *r.status_mut() = status;
            *r.headers_mut() = h;
            return (r, Note::own());
        }
        let Some(e) = self.fetcher.stored_for(&target, headers, true) else {
            return (text(StatusCode::NOT_FOUND, "hsync proxy: no copy of that page is kept\n"), Note::own());
        };
        let mut h = Fetcher::served_from(&e);
        let mut body = e.body.clone();
        if is_html(&h) {
            body = mark_html(&mut h, &body, &notice::html(Notice::RemovedCopy { url: &e.meta.url, fetched_at: e.meta.fetched_at }));
        } else {
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        h.insert(HeaderName::from_static("x-hsync-cache"), HeaderValue::from_static(COPY));
        h.append(header::VIA, HeaderValue::from_static("1.1 hsync"));
        self.count(&e.meta.url, body.len() as u64, true);
        let mut r = Response::new(full(body));
        *r.headers_mut() = h;
        (r, Note { result: COPY, wire: Some(0) })
    }

    fn respond(&self, req_headers: &HeaderMap, o: &Outcome) -> Resp {
        let mut headers = o.headers.clone();
        let mut body = o.body.clone();
        // Never pass a coding the client did not ask for: hsync only makes sense between us and the origin.
        let ce = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
        if ce.contains("hsync") {
            return text(StatusCode::BAD_GATEWAY, "hsync proxy: origin sent an hsync response that could not be decoded\n");
        }
        // Nor a dcz body: it is made against the proxy's dictionary, which the client does not hold.
        if ce.contains("dcz") {
            return text(StatusCode::BAD_GATEWAY, "hsync proxy: origin sent a dcz response that could not be decoded\n");
        }
        if o.source == Source::Stale && self.cfg.stale_notice && is_html(&headers) {
            body = Bytes::from(inject_notice(&body, o.fetched_at));
            headers.remove(header::ETAG);
            headers.remove(header::LAST_MODIFIED);
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len() as u64));
        }
        if o.status == StatusCode::OK && is_html(&headers) {
            // The first page delivered at the new address of a page that moved says so.
            let from = self.moved.lock().unwrap().remove(&o.url);
            if let Some(from) = from {
                body = mark_html(&mut headers, &body, &notice::html(Notice::Moved { from: &from, to: &o.url }));
            }
        }
        headers.insert(HeaderName::from_static("x-hsync-cache"), HeaderValue::from_static(o.source.as_str()));
        headers.append(header::VIA, HeaderValue::from_static("1.1 hsync"));
        let mut status = o.status;
        // The browser's own revalidation, answered from what we hold.
        if o.status == StatusCode::OK && o.source != Source::Stale && not_modified_for(req_headers, &headers) {
            status = StatusCode::NOT_MODIFIED;
            body = Bytes::new();
            headers.remove(header::CONTENT_LENGTH);
        }
        self.delivered.fetch_add(body.len() as u64, Ordering::Relaxed);
        {
            let mut m = self.fetcher.per_url.lock().unwrap();
            let s = m.entry(o.url.clone()).or_default();
            s.requests += 1;
            s.delivered += body.len() as u64;
            if matches!(o.source, Source::Fresh | Source::Revalidated | Source::Delta | Source::Stale) {
                s.hits += 1;
            }
        }
        let mut r = Response::new(full(body));
        *r.status_mut() = status;
        *r.headers_mut() = headers;
        r
    }

    /// A tunnel; its access line (`200 PASS`, the bytes from the origin both
    /// as on the wire and delivered) is written when it closes.
    async fn connect(self: &Arc<Self>, req: Request<Incoming>, peer: SocketAddr, access: Option<Access>) -> (Resp, Note) {
        let Some((target, port)) = req.uri().authority().and_then(|a| Some((a.to_string(), a.port_u16()?))) else {
            return (text(StatusCode::BAD_REQUEST, "CONNECT needs host:port\n"), Note::own());
        };
        if !self.cfg.connect_ports.contains(&port) {
            let r = text(StatusCode::FORBIDDEN, format!("hsync proxy: CONNECT to port {port} is not allowed (see --connect-port)\n"));
            return (r, Note::own());
        }
        if let Some(mitm) = self.cfg.intercept.as_ref().and_then(|m| Some((m, split_host(&target)?))).filter(|(m, (h, _))| m.intercepts(h))
        {
            return self.intercept(req, peer, access, mitm.0, mitm.1 .0, port);
        }
        let upstream = match tokio::time::timeout(self.cfg.timeout, TcpStream::connect(&target)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                self.cfg.log.warn(format!("origin unreachable: CONNECT {target}: {e}"));
                return (text(StatusCode::BAD_GATEWAY, format!("hsync proxy: {target}: {e}\n")), Note::pass_failed());
            }
            Err(_) => {
                self.cfg.log.warn(format!("origin unreachable: CONNECT {target}: connect timed out"));
                return (text(StatusCode::GATEWAY_TIMEOUT, format!("hsync proxy: {target}: connect timed out\n")), Note::pass_failed());
            }
        };
        tokio::spawn(async move {
            let mut upstream = upstream;
            let mut down = 0;
            if let Ok(up) = hyper::upgrade::on(req).await {
                let mut client = TokioIo::new(up);
                if let Ok((_, d)) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    down = d;
                }
            }
            if let Some(a) = access {
                a.write(200, Source::Pass.as_str(), down, down);
            }
        });
        (Response::new(empty_body()), Note::pass_failed())
    }

    /// A CONNECT to a host to intercept: answered 200 at once, then TLS with
    /// the client (a certificate of the local CA for `host`), then HTTP/1.1
    /// inside, each request handled as an absolute `https://host[:port]/…`
    /// one. The CONNECT's access line (`200 NONE`) is written when the
    /// connection closes; each request inside has its own.
    fn intercept(
        self: &Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
        access: Option<Access>,
        mitm: &crate::mitm::Interceptor,
        host: String,
        port: u16,
    ) -> (Resp, Note) {
        let tls = match mitm.server_config(&host) {
            Ok(c) => c,
            Err(e) => {
                self.cfg.log.error(format!("CONNECT {host}:{port}: {e}"));
                return (text(StatusCode::INTERNAL_SERVER_ERROR, format!("hsync proxy: {e}\n")), Note::own());
            }
        };
        let this = self.clone();
        tokio::spawn(async move {
            let done = |a: Option<Access>| {
                if let Some(a) = a {
                    a.write(200, NONE, 0, 0);
                }
            };
            let Ok(up) = hyper::upgrade::on(req).await else { return done(access) };
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            let stream = match tokio::time::timeout(this.cfg.timeout.max(Duration::from_secs(10)), acceptor.accept(TokioIo::new(up))).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    this.cfg.log.log(
                        Level::Info,
                        format!(
                            "TLS with the client failed for {host}:{port}: {e} (does the client trust the proxy's CA? see --intercept-tls)"
                        ),
                    );
                    return done(access);
                }
                Err(_) => return done(access),
            };
            let authority = {
                let h = if host.contains(':') { format!("[{host}]") } else { host.clone() };
                if port == 443 {
                    h
                } else {
                    format!("{h}:{port}")
                }
            };
            let svc = {
                let this = this.clone();
                service_fn(move |req: Request<Incoming>| {
                    let (this, authority, host) = (this.clone(), authority.clone(), host.clone());
                    async move { Ok::<_, Infallible>(this.intercepted(req, peer, &authority, &host).await) }
                })
            };
            let _ = hyper::server::conn::http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), svc).await;
            done(access)
        });
        (Response::new(empty_body()), Note::own())
    }

    /// A request inside an intercepted TLS connection to `authority`: its
    /// Host must name the CONNECT host (else 421); then it is handled as
    /// `https://authority/…`.
    async fn intercepted(self: &Arc<Self>, mut req: Request<Incoming>, peer: SocketAddr, authority: &str, host: &str) -> Resp {
        let named = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).and_then(split_host).map(|(h, _)| h);
        if named.as_deref().is_some_and(|h| h != host) {
            return text(StatusCode::MISDIRECTED_REQUEST, format!("hsync proxy: this connection is for {host}\n"));
        }
        // Absolute form inside the tunnel: it too must be for this host.
        let target = req.uri().host().map(|h| h.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase());
        if target.as_deref().is_some_and(|h| h != host) {
            return text(StatusCode::MISDIRECTED_REQUEST, format!("hsync proxy: this connection is for {host}\n"));
        }
        let uri = format!("https://{authority}{}", req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"));
        match uri.parse::<Uri>() {
            Ok(u) => *req.uri_mut() = u,
            Err(_) => return text(StatusCode::BAD_REQUEST, "hsync proxy: bad request target\n"),
        }
        self.handle(req, peer).await
    }

    /// Anything not cached: forwarded as it is, both bodies streamed (never
    /// held whole), the request body bounded by the fetcher's `max_body`.
    async fn forward(&self, req: Request<Incoming>) -> (Resp, Note) {
        let (mut parts, body) = req.into_parts();
        if parts.uri.authority().is_none() {
            return (text(StatusCode::BAD_REQUEST, "hsync proxy: absolute-form request expected\n"), Note::own());
        }
        let (url, method) = (log_url(&parts.uri), parts.method.clone());
        let max = self.fetcher.opts.max_body;
        let too_large = || text(StatusCode::PAYLOAD_TOO_LARGE, format!("hsync proxy: request body over the limit of {max} bytes\n"));
        if body.size_hint().lower() > max {
            return (too_large(), Note::own());
        }
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(header::HOST);
        let start = Instant::now();
        let last = Arc::new(AtomicU64::new(0));
        let over_limit = Arc::new(AtomicBool::new(false));
        let body =
            Watched { inner: Limited::new(body, max as usize).boxed_unsync(), start, last: last.clone(), over_limit: over_limit.clone() };
        let req = Request::from_parts(parts, body.boxed_unsync());
        // The origin has `timeout` to answer once the client stops sending; a long upload that keeps moving is fine.
        let timeout = self.fetcher.opts.timeout;
        let request = self.fetcher.client().request(req);
        tokio::pin!(request);
        let resp = loop {
            let idle_until = start + Duration::from_millis(last.load(Ordering::Relaxed)) + timeout;
            tokio::select! {
                r = &mut request => break r,
                _ = tokio::time::sleep_until(idle_until.into()) => {
                    if start + Duration::from_millis(last.load(Ordering::Relaxed)) + timeout <= Instant::now() {
                        self.cfg.log.warn(format!("origin unreachable: {method} {url}: no answer in time"));
                        return (text(StatusCode::GATEWAY_TIMEOUT, "hsync proxy: origin did not answer in time\n"), Note::pass_failed());
                    }
                }
            }
        };
        let resp = match resp {
            Ok(r) => r,
            Err(_) if over_limit.load(Ordering::Relaxed) => return (too_large(), Note::pass_failed()),
            Err(e) => {
                let why = crate::tls::explain(with_sources(&e));
                self.cfg.log.warn(format!("origin unreachable: {method} {url}: {why}"));
                return (text(StatusCode::BAD_GATEWAY, format!("hsync proxy: {why}\n")), Note::pass_failed());
            }
        };
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.append(header::VIA, HeaderValue::from_static("1.1 hsync"));
        (Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync()), Note { result: Source::Pass.as_str(), wire: None })
    }

    fn totals(&self) -> (u64, u64, u64) {
        let wire = self.fetcher.stats.wire.load(Ordering::Relaxed);
        let decoded = self.fetcher.stats.decoded.load(Ordering::Relaxed);
        let delivered = self.delivered.load(Ordering::Relaxed);
        (wire, decoded, delivered)
    }

    /// The status as JSON; `urls`: with the cached URLs (see `handle`).
    fn status_json(&self, urls: bool) -> Resp {
        let (wire, decoded, delivered) = self.totals();
        let per = self.fetcher.per_url.lock().unwrap().clone();
        let list = if urls { self.fetcher.cache.list() } else { Vec::new() };
        let entries: Vec<serde_json::Value> = list
            .into_iter()
            .map(|e| {
                let s = per.get(&e.url).cloned().unwrap_or_default();
                serde_json::json!({"url": e.url, "size": e.body_len, "fetched_at": e.fetched_at, "hits": s.hits,
                    "requests": s.requests, "wire": s.wire, "delivered": s.delivered})
            })
            .collect();
        let st = &self.fetcher.stats;
        let dicts = self.fetcher.dicts.as_ref().map(|d| d.totals()).unwrap_or((0, 0));
        let v = serde_json::json!({
            "wire_bytes": wire, "decoded_bytes": decoded, "delivered_bytes": delivered,
            "upstream_requests": self.fetcher.upstream_requests.load(Ordering::Relaxed),
            "cache_bytes": self.fetcher.cache.total_size(), "cache_max": self.fetcher.cache.max_size(),
            "corrupt_dropped": self.fetcher.cache.corrupt_dropped.load(Ordering::Relaxed),
            "entry_count": self.fetcher.cache.list().len(), "urls_shown": urls,
            "dcz_responses": st.dcz_responses.load(Ordering::Relaxed), "dcz_wire_bytes": st.dcz_wire.load(Ordering::Relaxed),
            "dcz_decoded_bytes": st.dcz_decoded.load(Ordering::Relaxed),
            "dictionary_fetches": st.dictionary_fetches.load(Ordering::Relaxed),
            "dictionary_wire_bytes": st.dictionary_wire.load(Ordering::Relaxed),
            "dictionaries": dicts.0, "dictionary_bytes": dicts.1,
            "dictionaries_damaged": self.fetcher.dicts.as_ref().map(|d| d.damaged.load(Ordering::Relaxed)).unwrap_or(0),
            "dictionaries_enabled": self.fetcher.dicts.is_some(),
            "entries": entries,
            "background_revalidations": self.bg.running(),
            "parts": if urls { serde_json::to_value(&*self.parts.lock().unwrap()).unwrap_or_default() } else { serde_json::json!({}) },
        });
        let mut r = Response::new(full(v.to_string()));
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }

    /// The status page; `urls`: with the cached URLs (see `handle`).
    fn status_page(&self, urls: bool) -> Resp {
        let (wire, decoded, delivered) = self.totals();
        let per = if urls { self.fetcher.per_url.lock().unwrap().clone() } else { Default::default() };
        let list = self.fetcher.cache.list();
        let mut html = String::from(
            "<!doctype html><html><head><meta charset=utf-8><title>hsync proxy</title><style>\
             body{font:14px/1.4 system-ui,sans-serif;margin:2em}table{border-collapse:collapse}\
             td,th{padding:2px 10px;border-bottom:1px solid #ddd;text-align:right}td.u{text-align:left;max-width:50em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}\
             </style></head><body><h1>hsync proxy</h1>",
        );
        let saved = if decoded > 0 { 100.0 * (1.0 - wire as f64 / decoded as f64) } else { 0.0 };
        html.push_str(&format!(
            "<p>Since start: <b>{}</b> received from origins for <b>{}</b> of responses ({:.1}% saved); <b>{}</b> delivered to clients. \
             Cache: {} in {} entries (limit {}); {} damaged entries dropped.</p>",
            human(wire),
            human(decoded),
            saved,
            human(delivered),
            human(self.fetcher.cache.total_size()),
            list.len(),
            human(self.fetcher.cache.max_size()),
            self.fetcher.cache.corrupt_dropped.load(Ordering::Relaxed)
        ));
        let st = &self.fetcher.stats;
        match &self.fetcher.dicts {
            Some(d) => {
                let (n, bytes) = d.totals();
                html.push_str(&format!(
                    "<p>Dictionaries (RFC 9842): <b>{}</b> dcz responses, {} on the wire for {}; {} dictionaries held ({}); \
                     {} fetched ({}).</p>",
                    st.dcz_responses.load(Ordering::Relaxed),
                    human(st.dcz_wire.load(Ordering::Relaxed)),
                    human(st.dcz_decoded.load(Ordering::Relaxed)),
                    n,
                    human(bytes),
                    st.dictionary_fetches.load(Ordering::Relaxed),
                    human(st.dictionary_wire.load(Ordering::Relaxed)),
                ));
            }
            None => html.push_str("<p>Dictionaries (RFC 9842): off.</p>"),
        }
        // Chart: delivered vs on the wire for the busiest URLs.
        let mut busiest: Vec<(String, u64, u64)> = per.iter().map(|(u, s)| (u.clone(), s.delivered, s.wire)).collect();
        busiest.sort_by_key(|b| std::cmp::Reverse(b.1));
        busiest.truncate(15);
        if !busiest.is_empty() {
            let max = busiest.iter().map(|b| b.1.max(b.2)).max().unwrap_or(1).max(1) as f64;
            let h = busiest.len() * 26 + 24;
            html.push_str(&format!(
                "<h2>Delivered (grey) vs received on the wire (green)</h2><svg width=760 height={h} xmlns='http://www.w3.org/2000/svg' font-size=11>"
            ));
            for (i, (url, del, w)) in busiest.iter().enumerate() {
                let y = i * 26;
                let dw = (*del as f64 / max * 440.0).max(1.0);
                let ww = (*w as f64 / max * 440.0).max(1.0);
                html.push_str(&format!(
                    "<text x=0 y={} >{}</text><rect x=300 y={} width={dw:.1} height=10 fill='#bbb'/><rect x=300 y={} width={ww:.1} height=10 fill='#2a2'/>\
                     <text x={:.1} y={}>{} / {}</text>",
                    y + 14,
                    esc(&shorten(url, 48)),
                    y + 2,
                    y + 13,
                    305.0 + dw.max(ww),
                    y + 14,
                    human(*del),
                    human(*w)
                ));
            }
            html.push_str("</svg>");
        }
        if !urls {
            html.push_str(
                "<p>The cached URLs are listed only on the proxy's own machine (http://127.0.0.1/ there): \
                 this proxy is shared, and they are its users' browsing history.</p></body></html>",
            );
            return html_response(html);
        }
        html.push_str(
            "<h2>Cached</h2><table><tr><th>URL</th><th>size</th><th>last fetched</th><th>hits</th><th>wire</th><th>delivered</th></tr>",
        );
        for e in &list {
            let s = per.get(&e.url).cloned().unwrap_or_default();
            html.push_str(&format!(
                "<tr><td class=u><a href=\"{0}\">{0}</a></td><td>{1}</td><td>{2}</td><td>{3}</td><td>{4}</td><td>{5}</td></tr>",
                esc(&e.url),
                human(e.body_len),
                fmt_time(e.fetched_at),
                s.hits,
                human(s.wire),
                human(s.delivered)
            ));
        }
        html.push_str("</table>");
        let reports = self.parts.lock().unwrap().clone();
        if !reports.is_empty() {
            let mut pages: Vec<(&String, &parts::Report)> = reports.iter().collect();
            pages.sort_by_key(|(_, r)| std::cmp::Reverse(r.at));
            html.push_str(
                "<h2>Parts revalidated with their pages</h2><table><tr><th>page</th><th>when</th><th>referenced</th>\
                 <th>revalidated</th><th>changed</th></tr>",
            );
            for (page, r) in pages {
                let changed: Vec<String> =
                    r.changed().map(|p| format!("<a href=\"{0}\">{1}</a>", esc(&p.url), esc(&shorten(&p.url, 60)))).collect();
                html.push_str(&format!(
                    "<tr><td class=u><a href=\"{0}\">{0}</a></td><td>{1}</td><td>{2}</td><td>{3}</td><td class=u>{4}</td></tr>",
                    esc(page),
                    fmt_time(r.at),
                    r.referenced,
                    r.parts.len(),
                    if changed.is_empty() { "none".to_string() } else { changed.join("<br>") }
                ));
            }
            html.push_str("</table>");
        }
        html.push_str("</body></html>");
        html_response(html)
    }
}

/// `body` (HTML) with `snippet` inserted after `<body>`; the headers say it
/// is no longer the origin's page (no validators) and not to be stored.
fn mark_html(headers: &mut HeaderMap, body: &[u8], snippet: &str) -> Bytes {
    let out = Bytes::from(notice::inject(body, snippet));
    headers.remove(header::ETAG);
    headers.remove(header::LAST_MODIFIED);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(out.len() as u64));
    out
}

/// The access-log result of a 301/308 for a stored page (see `Proxy::moved`).
pub const MOVED: &str = "MOVED";
/// Of a 404/410 for a stored page, answered with the notice linking to the copy.
pub const REMOVED: &str = "REMOVED";
/// Of the kept copy of a removed page (`/.hsync/copy`).
pub const COPY: &str = "COPY";
/// Of a revalidation finished in the background (client `-`).
pub const BACKGROUND: &str = "BACKGROUND";

/// A page of the proxy's own, never stored by a cache.
fn html_response(html: String) -> Resp {
    let mut r = Response::new(full(html));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn is_html(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/html"))
}

/// Does the client's conditional request match what we serve?
fn not_modified_for(req: &HeaderMap, resp: &HeaderMap) -> bool {
    if let Some(inm) = req.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        let Some(etag) = resp.get(header::ETAG).and_then(|v| v.to_str().ok()) else { return false };
        let strip = |s: &str| s.trim().trim_start_matches("W/").to_string();
        return inm.split(',').any(|t| t.trim() == "*" || strip(t) == strip(etag));
    }
    if let (Some(ims), Some(lm)) =
        (req.get(header::IF_MODIFIED_SINCE).and_then(|v| v.to_str().ok()), resp.get(header::LAST_MODIFIED).and_then(|v| v.to_str().ok()))
    {
        return ims.trim() == lm.trim();
    }
    false
}

/// The banner put right after `<body ...>` (or at the start) of a stale HTML page.
pub fn notice_html(fetched_at: u64) -> String {
    notice::html(Notice::Unreachable { fetched_at })
}

pub fn inject_notice(body: &[u8], fetched_at: u64) -> Vec<u8> {
    notice::inject(body, &notice_html(fetched_at))
}

fn shorten(s: &str, n: usize) -> String {
    let s = s.trim_start_matches("http://").trim_start_matches("https://");
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let t: String = s.chars().take(n - 1).collect();
        format!("{t}…")
    }
}

pub fn human(n: u64) -> String {
    if n < 10_000 {
        format!("{n} B")
    } else if n < 10_000_000 {
        format!("{:.1} kB", n as f64 / 1e3)
    } else {
        format!("{:.1} MB", n as f64 / 1e6)
    }
}

/// `YYYY-MM-DD HH:MM UTC` from Unix seconds.
pub fn fmt_time(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, (rem % 3600) / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notice_goes_after_body() {
        let out = String::from_utf8(inject_notice(b"<html><BODY class=x><p>hi</p></body>", 0)).unwrap();
        assert!(out.starts_with("<html><BODY class=x><div id=\"hsync-stale-notice\""));
        assert!(out.contains("1970-01-01 00:00 UTC"));
        let out = String::from_utf8(inject_notice(b"<p>no body tag</p>", 86400 * 365)).unwrap();
        assert!(out.starts_with("<div id=\"hsync-stale-notice\""));
        assert!(out.contains("1971-01-01"));
    }

    #[test]
    fn conditional() {
        let mut req = HeaderMap::new();
        let mut resp = HeaderMap::new();
        resp.insert(header::ETAG, HeaderValue::from_static("W/\"abc\""));
        assert!(!not_modified_for(&req, &resp));
        req.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"abc\""));
        assert!(not_modified_for(&req, &resp));
        req.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"abd\""));
        assert!(!not_modified_for(&req, &resp));
    }
}
