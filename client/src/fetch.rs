//! Fetching a URL through the cache: RFC 9111 decisions from http-cache-semantics,
//! revalidation with the stored validators, hsync deltas against the cached copy,
//! verification, a refetch without a signature when anything fails, and the
//! stale copy when the origin cannot be reached.

use crate::cache::{now_secs, DiskCache, Entry, EntryWriter, Meta};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use http_cache_semantics::{AfterResponse, BeforeRequest, CacheOptions, CachePolicy};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The value of the Warning header on a copy served because the origin failed.
pub const STALE_WARNING: &str = "111 - \"Revalidation Failed\"";

/// Builds the HTTP/HTTPS client (rustls with the webpki roots).
pub fn build_client(connect_timeout: Duration) -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .expect("rustls ring provider supports the default protocol versions")
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(https)
}

#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Evaluate responses as a shared cache (a proxy): `private` is not stored.
    pub shared: bool,
    /// How long to wait for the origin to connect and answer (and between body chunks).
    pub timeout: Duration,
    /// Send Hsync-Signature for cached copies.
    pub hsync: bool,
    /// Largest body accepted (decoded).
    pub max_body: u64,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions { shared: false, timeout: Duration::from_secs(30), hsync: true, max_body: 1 << 30 }
    }
}

/// How a response was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Fresh in the cache; no request was sent.
    Fresh,
    /// The origin answered 304; the cached body was used.
    Revalidated,
    /// The origin sent an hsync delta, applied to the cached copy and verified.
    Delta,
    /// A full response (identity or gzip) from the origin.
    Full,
    /// The origin could not be reached; the cached copy was served as it is.
    Stale,
    /// Passed through from the origin and not cached (errors, no-store, other codings).
    Pass,
}

impl Source {
    pub fn as_str(&self) -> &'static str {
        match self {
            Source::Fresh => "HIT",
            Source::Revalidated => "REVALIDATED",
            Source::Delta => "DELTA",
            Source::Full => "MISS",
            Source::Stale => "STALE",
            Source::Pass => "PASS",
        }
    }
}

/// One request sent and what came back (for `-v`).
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    pub request: Vec<String>,
    pub response: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub url: String,
    pub status: StatusCode,
    /// Headers to serve: identity coding, Content-Length matching `body`.
    pub headers: HeaderMap,
    pub body: Bytes,
    pub source: Source,
    /// Response bytes (head + body as transferred) received from the origin.
    pub wire_bytes: u64,
    pub trace: Vec<Exchange>,
    /// Why the cached copy was served stale.
    pub stale_reason: Option<String>,
    /// Unix seconds the served copy was last confirmed by the origin.
    pub fetched_at: u64,
    /// Set when a delta failed to apply or verify and the page was refetched.
    pub delta_failed: Option<String>,
}

#[derive(Debug, Clone)]
pub struct FetchError {
    pub message: String,
    pub timeout: bool,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FetchError {}

impl FetchError {
    fn new(m: impl Into<String>) -> Self {
        FetchError { message: m.into(), timeout: false }
    }
    fn timeout(m: impl Into<String>) -> Self {
        FetchError { message: m.into(), timeout: true }
    }
}

/// Byte counters (since start).
#[derive(Debug, Default)]
pub struct Stats {
    /// Response bytes received from origins.
    pub wire: AtomicU64,
    /// Bytes of the bodies those responses stood for (after decoding / patching, or the cached body on a 304).
    pub decoded: AtomicU64,
}

/// Per-URL counters for the status page.
#[derive(Debug, Clone, Default)]
pub struct UrlStats {
    /// Responses served from a cached copy (fresh, 304, delta or stale); counted by the proxy.
    pub hits: u64,
    pub requests: u64,
    pub wire: u64,
    pub delivered: u64,
    pub last_source: Option<&'static str>,
}

pub type Progress = Arc<dyn Fn(u64, Option<u64>) + Send + Sync>;

type Shared = Result<Arc<Outcome>, Arc<FetchError>>;

pub struct Fetcher {
    client: HttpClient,
    pub cache: Arc<DiskCache>,
    pub opts: FetchOptions,
    inflight: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Shared>>>>,
    pub stats: Stats,
    pub per_url: Mutex<HashMap<String, UrlStats>>,
    /// Upstream requests actually sent (tests check coalescing with it).
    pub upstream_requests: AtomicU64,
}

/// Request headers that describe the connection, not the request.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Request headers the fetcher sets itself.
const OWN_REQUEST_HEADERS: [&str; 8] =
    ["accept-encoding", "hsync-signature", "if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "if-range", "host"];

pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter_map(|s| HeaderName::from_bytes(s.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
}

fn head_len(parts: &http::response::Parts) -> u64 {
    let mut n = 17u64; // "HTTP/1.1 200 OK\r\n" (approximately)
    for (k, v) in &parts.headers {
        n += (k.as_str().len() + v.len() + 4) as u64;
    }
    n + 2
}

fn header_lines(h: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    h.iter().map(|(k, v)| format!("{}: {}", k, String::from_utf8_lossy(v.as_bytes())))
}

fn content_encoding(h: &HeaderMap) -> String {
    h.get_all(header::CONTENT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty() && s != "identity")
        .collect::<Vec<_>>()
        .join(",")
}

/// Headers of a response as it will be stored and served: identity coding,
/// the hsync name taken out of Vary, no framing or hop-by-hop fields.
fn served_headers(h: &HeaderMap, body_len: Option<usize>, decoded: bool) -> HeaderMap {
    let mut out = h.clone();
    strip_hop_by_hop(&mut out);
    if decoded {
        out.remove(header::CONTENT_ENCODING);
    }
    out.remove(header::CONTENT_LENGTH);
    if let Some(n) = body_len {
        out.insert(header::CONTENT_LENGTH, HeaderValue::from(n as u64));
    }
    let vary: Vec<String> = out
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && !s.eq_ignore_ascii_case(hsync_core::http::SIGNATURE_HEADER))
        .collect();
    out.remove(header::VARY);
    if !vary.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&vary.join(", ")) {
            out.insert(header::VARY, v);
        }
    }
    out.remove(header::AGE);
    out.remove("warning");
    out
}

fn to_pairs(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter().map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect()
}

pub fn from_pairs(p: &[(String, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in p {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            h.append(k, v);
        }
    }
    h
}

fn response_parts(status: StatusCode, headers: HeaderMap) -> http::response::Parts {
    let (mut parts, _) = http::Response::new(()).into_parts();
    parts.status = status;
    parts.headers = headers;
    parts
}

enum Failure {
    /// Network trouble or a timeout: serve stale if possible.
    Net(FetchError),
    /// The response could not be used with this base (bad delta, 304 that does not match): refetch without.
    Retry(String),
}

impl Fetcher {
    pub fn new(cache: Arc<DiskCache>, opts: FetchOptions) -> Fetcher {
        Fetcher {
            client: build_client(opts.timeout),
            cache,
            opts,
            inflight: Mutex::new(HashMap::new()),
            stats: Stats::default(),
            per_url: Mutex::new(HashMap::new()),
            upstream_requests: AtomicU64::new(0),
        }
    }

    /// The shared client (the proxy uses it for requests it does not cache).
    pub fn client(&self) -> &HttpClient {
        &self.client
    }

    /// GETs `uri` through the cache. Concurrent calls for the same URL (without
    /// Authorization) share one upstream fetch.
    pub async fn fetch(&self, uri: &Uri, user_headers: &HeaderMap, progress: Option<Progress>) -> Shared {
        if user_headers.contains_key(header::AUTHORIZATION) {
            return self.fetch_uncoalesced(uri, user_headers, progress).await.map(Arc::new).map_err(Arc::new);
        }
        let key = uri.to_string();
        let cell = {
            let mut m = self.inflight.lock().unwrap();
            m.entry(key.clone()).or_default().clone()
        };
        let res = cell
            .get_or_init(|| async { self.fetch_uncoalesced(uri, user_headers, progress).await.map(Arc::new).map_err(Arc::new) })
            .await
            .clone();
        let mut m = self.inflight.lock().unwrap();
        if m.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            m.remove(&key);
        }
        res
    }

    fn logical_request(uri: &Uri, user: &HeaderMap) -> http::request::Parts {
        let mut h = user.clone();
        strip_hop_by_hop(&mut h);
        for n in OWN_REQUEST_HEADERS {
            h.remove(n);
        }
        let (mut parts, _) = Request::new(()).into_parts();
        parts.method = Method::GET;
        parts.uri = uri.clone();
        parts.headers = h;
        parts
    }

    fn policy_for(&self, req: &http::request::Parts, res: &http::response::Parts, now: SystemTime) -> CachePolicy {
        let opts = CacheOptions { shared: self.opts.shared, ..Default::default() };
        CachePolicy::new_options(req, res, now, opts)
    }

    fn note(&self, url: &str, f: impl FnOnce(&mut UrlStats)) {
        let mut m = self.per_url.lock().unwrap();
        f(m.entry(url.to_string()).or_default());
    }

    async fn fetch_uncoalesced(&self, uri: &Uri, user: &HeaderMap, progress: Option<Progress>) -> Result<Outcome, FetchError> {
        match uri.scheme_str() {
            Some("http") | Some("https") if uri.authority().is_some() => {}
            _ => return Err(FetchError::new(format!("unsupported URL: {uri}"))),
        }
        let url = uri.to_string();
        let logical = Self::logical_request(uri, user);
        let now = SystemTime::now();
        let entry = self.cache.get(&url);
        let mut revalidation: Option<HeaderMap> = None;
        if let Some(e) = &entry {
            match e.meta.policy.before_request(&logical, now) {
                BeforeRequest::Fresh(_) => {
                    let mut headers = from_pairs(&e.meta.headers);
                    headers.insert(header::AGE, HeaderValue::from(e.meta.policy.age(now).as_secs()));
                    self.note(&url, |s| s.last_source = Some(Source::Fresh.as_str()));
                    return Ok(Outcome {
                        url,
                        status: StatusCode::from_u16(e.meta.status).unwrap_or(StatusCode::OK),
                        headers,
                        body: e.body.clone(),
                        source: Source::Fresh,
                        wire_bytes: 0,
                        trace: vec![],
                        stale_reason: None,
                        fetched_at: e.meta.fetched_at,
                        delta_failed: None,
                    });
                }
                BeforeRequest::Stale { request, matches } => {
                    if matches {
                        revalidation = Some(request.headers);
                    }
                }
            }
        }

        let mut trace = Vec::new();
        let mut wire = 0u64;
        let mut base = entry.clone();
        let mut delta_failed = None;
        loop {
            let mut headers = match (&base, &revalidation) {
                (Some(_), Some(h)) => h.clone(),
                _ => logical.headers.clone(),
            };
            let sig = match &base {
                Some(e) if self.opts.hsync && (e.body.len() as u64) <= hsync_core::signature::MAX_INSTANCE_LEN && !e.body.is_empty() => {
                    Some(hsync_core::Signature::compute(&e.body).to_bytes())
                }
                _ => None,
            };
            if let Some(s) = &sig {
                headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("hsync, gzip"));
                headers.insert(
                    HeaderName::from_static("hsync-signature"),
                    HeaderValue::from_str(&hsync_core::http::encode_signature_header(s)).expect("base64url is a valid header value"),
                );
            } else {
                headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
            }
            let result = self.exchange(uri, &url, headers, &logical, base.as_ref(), progress.clone(), &mut trace, &mut wire).await;
            match result {
                Ok(mut o) => {
                    o.delta_failed = delta_failed;
                    self.stats.wire.fetch_add(o.wire_bytes, Ordering::Relaxed);
                    self.stats.decoded.fetch_add(o.body.len() as u64, Ordering::Relaxed);
                    let (wb, src) = (o.wire_bytes, o.source);
                    self.note(&url, |s| {
                        s.wire += wb;
                        s.last_source = Some(src.as_str());
                    });
                    return Ok(o);
                }
                Err(Failure::Retry(reason)) if base.is_some() => {
                    delta_failed = Some(reason);
                    base = None;
                    continue;
                }
                Err(Failure::Retry(reason)) => return Err(FetchError::new(reason)),
                Err(Failure::Net(err)) => {
                    self.stats.wire.fetch_add(wire, Ordering::Relaxed);
                    let Some(e) = entry else { return Err(err) };
                    let mut headers = from_pairs(&e.meta.headers);
                    headers.insert(header::AGE, HeaderValue::from(e.meta.policy.age(now).as_secs()));
                    headers.insert(HeaderName::from_static("warning"), HeaderValue::from_static(STALE_WARNING));
                    self.note(&url, |s| s.last_source = Some(Source::Stale.as_str()));
                    return Ok(Outcome {
                        url,
                        status: StatusCode::from_u16(e.meta.status).unwrap_or(StatusCode::OK),
                        headers,
                        body: e.body.clone(),
                        source: Source::Stale,
                        wire_bytes: wire,
                        trace,
                        stale_reason: Some(err.message),
                        fetched_at: e.meta.fetched_at,
                        delta_failed,
                    });
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn exchange(
        &self,
        uri: &Uri,
        url: &str,
        mut headers: HeaderMap,
        logical: &http::request::Parts,
        base: Option<&Entry>,
        progress: Option<Progress>,
        trace: &mut Vec<Exchange>,
        wire: &mut u64,
    ) -> Result<Outcome, Failure> {
        let host = uri.authority().map(|a| a.as_str().to_string()).unwrap_or_default();
        if let Ok(v) = HeaderValue::from_str(&host) {
            headers.insert(header::HOST, v);
        }
        if !headers.contains_key(header::USER_AGENT) {
            headers.insert(header::USER_AGENT, HeaderValue::from_static(concat!("hsync/", env!("CARGO_PKG_VERSION"))));
        }
        let mut ex = Exchange::default();
        ex.request.push(format!("GET {} HTTP/1.1", uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")));
        ex.request.extend(header_lines(&headers));
        let mut req = Request::new(Full::new(Bytes::new()));
        *req.uri_mut() = uri.clone();
        *req.headers_mut() = headers;
        self.upstream_requests.fetch_add(1, Ordering::Relaxed);
        let timeout = self.opts.timeout;
        let resp = match tokio::time::timeout(timeout, self.client.request(req)).await {
            Err(_) => {
                trace.push(ex);
                return Err(Failure::Net(FetchError::timeout(format!("{host}: no answer within {} s", timeout.as_secs_f64()))));
            }
            Ok(Err(e)) => {
                trace.push(ex);
                let mut msg = format!("{host}: {e}");
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg.push_str(&format!(": {s}"));
                    src = s.source();
                }
                return Err(Failure::Net(FetchError::new(msg)));
            }
            Ok(Ok(r)) => r,
        };
        let (parts, body) = resp.into_parts();
        ex.response.push(format!("{:?} {}", parts.version, parts.status));
        ex.response.extend(header_lines(&parts.headers));
        trace.push(ex);
        *wire += head_len(&parts);
        let now = SystemTime::now();
        let status = parts.status;
        let coding = content_encoding(&parts.headers);
        let total: Option<u64> = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|s| s.parse().ok());

        // 304: the cached copy is still good.
        if status == StatusCode::NOT_MODIFIED {
            drop(body);
            let Some(e) = base else {
                return Ok(self.pass(url, parts, Bytes::new(), *wire));
            };
            return match e.meta.policy.after_response(logical, &parts, now) {
                AfterResponse::NotModified(policy, new_parts) => {
                    let headers = served_headers(&new_parts.headers, Some(e.body.len()), true);
                    let meta = Meta {
                        url: url.to_string(),
                        status: e.meta.status,
                        headers: to_pairs(&headers),
                        policy,
                        body_len: 0,
                        body_xxh3: 0,
                        fetched_at: now_secs(),
                        wire_bytes: *wire,
                    };
                    let fetched_at = meta.fetched_at;
                    if let Err(err) = self.cache.update_meta(e, meta) {
                        eprintln!("hsync: cache write failed for {url}: {err}");
                    }
                    Ok(Outcome {
                        url: url.to_string(),
                        status: StatusCode::from_u16(e.meta.status).unwrap_or(StatusCode::OK),
                        headers,
                        body: e.body.clone(),
                        source: Source::Revalidated,
                        wire_bytes: *wire,
                        trace: trace.clone(),
                        stale_reason: None,
                        fetched_at,
                        delta_failed: None,
                    })
                }
                AfterResponse::Modified(..) => Err(Failure::Retry("304 does not match the cached copy".into())),
            };
        }

        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            self.cache.remove(url);
        }
        if status != StatusCode::OK {
            let body = self.read_body(body, None, progress, total, wire).await?;
            return Ok(self.pass(url, parts, body, *wire));
        }

        match coding.as_str() {
            "hsync" => {
                let delta = self.read_body(body, None, progress, total, wire).await?;
                let Some(e) = base else {
                    return Err(Failure::Retry("hsync response to a request without a signature".into()));
                };
                let new = match hsync_core::patch(&e.body, &delta, self.opts.max_body) {
                    Ok(n) => n,
                    Err(err) => return Err(Failure::Retry(format!("delta rejected: {err}"))),
                };
                Ok(self.store_full(url, logical, parts, Bytes::from(new), Source::Delta, *wire, trace, now))
            }
            "gzip" | "x-gzip" => {
                let gz = self.read_body(body, None, progress, total, wire).await?;
                let mut out = Vec::new();
                let mut dec = flate2::read::MultiGzDecoder::new(&gz[..]).take(self.opts.max_body + 1);
                if let Err(err) = dec.read_to_end(&mut out) {
                    return Err(Failure::Retry(format!("gzip body is corrupt: {err}")));
                }
                if out.len() as u64 > self.opts.max_body {
                    return Err(Failure::Retry("decoded body too large".into()));
                }
                Ok(self.store_full(url, logical, parts, Bytes::from(out), Source::Full, *wire, trace, now))
            }
            "" => {
                // Identity: decide from the head whether to store, and stream to the entry file.
                let head = response_parts(status, served_headers(&parts.headers, None, true));
                let policy = self.policy_for(logical, &head, now);
                let mut writer = if policy.is_storable() && total.is_none_or(|t| t <= self.cache.max_size()) {
                    self.cache.writer(url).ok()
                } else {
                    None
                };
                let body = self.read_body(body, writer.as_mut(), progress, total, wire).await?;
                let headers = served_headers(&parts.headers, Some(body.len()), true);
                let fetched_at = now_secs();
                match writer {
                    Some(w) => {
                        let meta = Meta {
                            url: url.to_string(),
                            status: 200,
                            headers: to_pairs(&headers),
                            policy,
                            body_len: 0,
                            body_xxh3: 0,
                            fetched_at,
                            wire_bytes: *wire,
                        };
                        if let Err(err) = w.commit(meta) {
                            eprintln!("hsync: cache write failed for {url}: {err}");
                        }
                    }
                    None => self.cache.remove(url),
                }
                Ok(Outcome {
                    url: url.to_string(),
                    status,
                    headers,
                    body,
                    source: Source::Full,
                    wire_bytes: *wire,
                    trace: trace.clone(),
                    stale_reason: None,
                    fetched_at,
                    delta_failed: None,
                })
            }
            _ => {
                // A coding we did not ask for: pass it on untouched, store nothing.
                let body = self.read_body(body, None, progress, total, wire).await?;
                Ok(self.pass(url, parts, body, *wire))
            }
        }
    }

    fn pass(&self, url: &str, parts: http::response::Parts, body: Bytes, wire: u64) -> Outcome {
        let mut headers = parts.headers;
        strip_hop_by_hop(&mut headers);
        headers.remove(header::CONTENT_LENGTH);
        if parts.status != StatusCode::NOT_MODIFIED {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len() as u64));
        }
        Outcome {
            url: url.to_string(),
            status: parts.status,
            headers,
            body,
            source: Source::Pass,
            wire_bytes: wire,
            trace: vec![],
            stale_reason: None,
            fetched_at: now_secs(),
            delta_failed: None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn store_full(
        &self,
        url: &str,
        logical: &http::request::Parts,
        parts: http::response::Parts,
        body: Bytes,
        source: Source,
        wire: u64,
        trace: &[Exchange],
        now: SystemTime,
    ) -> Outcome {
        let headers = served_headers(&parts.headers, Some(body.len()), true);
        let head = response_parts(parts.status, headers.clone());
        let policy = self.policy_for(logical, &head, now);
        let fetched_at = now_secs();
        if policy.is_storable() {
            let meta = Meta {
                url: url.to_string(),
                status: parts.status.as_u16(),
                headers: to_pairs(&headers),
                policy,
                body_len: 0,
                body_xxh3: 0,
                fetched_at,
                wire_bytes: wire,
            };
            if let Err(err) = self.cache.put(meta, &body) {
                eprintln!("hsync: cache write failed for {url}: {err}");
            }
        } else {
            self.cache.remove(url);
        }
        Outcome {
            url: url.to_string(),
            status: parts.status,
            headers,
            body,
            source,
            wire_bytes: wire,
            trace: trace.to_vec(),
            stale_reason: None,
            fetched_at,
            delta_failed: None,
        }
    }

    async fn read_body(
        &self,
        mut body: Incoming,
        mut sink: Option<&mut EntryWriter<'_>>,
        progress: Option<Progress>,
        total: Option<u64>,
        wire: &mut u64,
    ) -> Result<Bytes, Failure> {
        let mut buf = Vec::with_capacity(total.unwrap_or(0).min(64 << 20) as usize);
        loop {
            let frame = match tokio::time::timeout(self.opts.timeout, body.frame()).await {
                Err(_) => return Err(Failure::Net(FetchError::timeout("origin stopped sending the body"))),
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(Failure::Net(FetchError::new(format!("reading the body: {e}")))),
                Ok(Some(Ok(f))) => f,
            };
            if let Ok(data) = frame.into_data() {
                *wire += data.len() as u64;
                if buf.len() as u64 + data.len() as u64 > self.opts.max_body {
                    return Err(Failure::Net(FetchError::new("response body too large")));
                }
                buf.extend_from_slice(&data);
                if let Some(w) = sink.as_deref_mut() {
                    if w.write(&data).is_err() {
                        sink = None;
                    }
                }
                if let Some(p) = &progress {
                    p(buf.len() as u64, total);
                }
            }
        }
        Ok(Bytes::from(buf))
    }
}
