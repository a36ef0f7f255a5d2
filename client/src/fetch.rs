//! Fetching a URL through the cache: RFC 9111 decisions from http-cache-semantics,
//! revalidation with the stored validators, hsync deltas against the cached copy,
//! verification, a refetch without a signature when anything fails, and the
//! stale copy when the origin cannot be reached.
//!
//! Privacy rules (a shared cache must never hand one user's bytes to another):
//! * The cache holds one entry per URL. It is used at all (fresh hit,
//!   validators, delta base, stale copy) only when the request matches it on
//!   the fields its Vary names; otherwise the request is treated as a miss.
//! * `no-store` is never stored, `private` only when not shared, and
//!   `Set-Cookie`/`Set-Cookie2` never: the live response carries them to the
//!   client that caused them, the stored copy has them removed, and a shared
//!   cache does not store such a response at all.
//! * The stored request keeps no cookie or credential: only Cache-Control,
//!   Pragma, whether Authorization was present, and digests of the fields
//!   the response varies on (see [`policy_request`]).
//! * Concurrent requests share one upstream fetch only when neither carries
//!   Cookie or Authorization and they agree on Cache-Control, Pragma and the
//!   stored entry's Vary fields; a follower takes the leader's result only if
//!   a shared cache could store it and serve it to the follower.
//! * The stale fallback obeys Vary and refuses whenever RFC 9111 forbids
//!   serving stale (see [`stale_allowed`]).

use crate::cache::{now_secs, DiskCache, Entry, EntryWriter, Meta};
use crate::dict::{self, Chosen, DictMeta, DictOptions, DictStore};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use http_cache_semantics::{AfterResponse, BeforeRequest, CacheOptions, CachePolicy};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Request bodies the client sends: empty for the fetcher's GETs, streamed for forwarded requests.
pub type ReqBody = UnsyncBoxBody<Bytes, BoxError>;

pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, ReqBody>;

/// An empty request body.
pub fn empty_body() -> ReqBody {
    Full::new(Bytes::new()).map_err(|never| match never {}).boxed_unsync()
}

/// The value of the Warning header on a copy served because the origin failed.
pub const STALE_WARNING: &str = "111 - \"Revalidation Failed\"";

/// Builds the HTTP/HTTPS client trusting the system's roots (see [`crate::tls`]).
pub fn build_client(connect_timeout: Duration) -> HttpClient {
    build_client_with(connect_timeout, crate::tls::system_roots())
}

/// Builds the HTTP/HTTPS client trusting `roots`; https:// origins that
/// offer HTTP/2 by ALPN get it, the others HTTP/1.1.
pub fn build_client_with(connect_timeout: Duration, roots: Arc<rustls::RootCertStore>) -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(crate::tls::client_config(roots))
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(https)
}

#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Evaluate responses as a shared cache (a proxy for several users):
    /// `private` responses and responses with Set-Cookie are not stored.
    pub shared: bool,
    /// How long to wait for the origin to connect and answer (and between body chunks).
    pub timeout: Duration,
    /// Send Hsync-Signature for cached copies.
    pub hsync: bool,
    /// Largest body accepted (decoded, and rebuilt from a delta); the proxy
    /// also bounds forwarded request bodies with it.
    pub max_body: u64,
    /// Remember RFC 9842 dictionaries (in `<cache dir>/dictionaries`), offer
    /// them and decode `dcz`; `None`: off (`--no-dictionary`).
    pub dictionary: Option<DictOptions>,
    /// The roots trusted on https:// connections; `None`: the system's
    /// (see [`crate::tls::roots_with`] for adding `--cacert` files).
    pub roots: Option<Arc<rustls::RootCertStore>>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            shared: false,
            timeout: Duration::from_secs(30),
            hsync: true,
            max_body: 1 << 30,
            dictionary: Some(DictOptions::default()),
            roots: None,
        }
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
    /// The origin sent `dcz`: the page compressed against a dictionary we
    /// offered, decoded and verified (the dictionary's hash, zstd's checksum).
    Dcz,
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
            Source::Dcz => "DCZ",
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
    /// The SHA-256 (hex) of the dictionary a `dcz` response was decoded with.
    pub dictionary_used: Option<String>,
    /// Same-origin dictionaries the response announced (`Link` or HTML
    /// `<link rel="compression-dictionary">`) and that are not held yet:
    /// [`Fetcher::fetch_dictionaries`] fetches them.
    pub dictionary_links: Vec<String>,
    /// Of those, the ones named by the SHA-256 of a body the client already
    /// holds (the previous cached copy, or this body), as hsync servers name
    /// their dictionary URLs (`/.well-known/hsync/dictionary/<hex>`): only
    /// their headers are fetched (HEAD), the body is the one held.
    pub dictionary_held: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone)]
pub struct FetchError {
    pub message: String,
    pub timeout: bool,
    /// The origin could not be reached, or the exchange broke off (network
    /// trouble or a timeout), rather than an unusable answer.
    pub unreachable: bool,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FetchError {}

impl FetchError {
    fn new(m: impl Into<String>) -> Self {
        FetchError { message: m.into(), timeout: false, unreachable: false }
    }
    fn timeout(m: impl Into<String>) -> Self {
        FetchError { message: m.into(), timeout: true, unreachable: false }
    }
    /// A timeout (answered 504 by the proxy).
    pub fn timeout_error(m: impl Into<String>) -> Self {
        FetchError { message: m.into(), timeout: true, unreachable: true }
    }
}

/// Byte counters (since start).
#[derive(Debug, Default)]
pub struct Stats {
    /// Response bytes received from origins.
    pub wire: AtomicU64,
    /// Bytes of the bodies those responses stood for (after decoding / patching, or the cached body on a 304).
    pub decoded: AtomicU64,
    /// `dcz` responses decoded, their bytes on the wire, and the bytes they stood for.
    pub dcz_responses: AtomicU64,
    pub dcz_wire: AtomicU64,
    pub dcz_decoded: AtomicU64,
    /// Dictionaries fetched (announced by a Link or `<link>`), and their bytes on the wire (counted in `wire` too).
    pub dictionary_fetches: AtomicU64,
    pub dictionary_wire: AtomicU64,
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

/// One upstream fetch that concurrent requests for a URL may share.
struct Flight {
    /// The logical request headers of the caller that opened it.
    leader: HeaderMap,
    /// The result, with the logical request headers of the caller whose fetch produced it.
    cell: tokio::sync::OnceCell<(HeaderMap, Shared)>,
}

/// Takes a flight out of the map when a participant is done with it: on
/// completion, or when it is dropped (its client went away) and nobody else
/// waits for it, so an abandoned flight never lingers.
struct Leave<'a> {
    map: &'a Mutex<HashMap<String, Arc<Flight>>>,
    key: String,
    flight: Arc<Flight>,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let mut m = self.map.lock().unwrap();
        // Joins clone the Arc under this lock: besides the map's and ours, any count is a waiter.
        let done = self.flight.cell.initialized() || Arc::strong_count(&self.flight) <= 2;
        if done && m.get(&self.key).is_some_and(|f| Arc::ptr_eq(f, &self.flight)) {
            m.remove(&self.key);
        }
    }
}

pub struct Fetcher {
    client: HttpClient,
    pub cache: Arc<DiskCache>,
    pub opts: FetchOptions,
    inflight: Mutex<HashMap<String, Arc<Flight>>>,
    pub stats: Stats,
    pub per_url: Mutex<HashMap<String, UrlStats>>,
    /// Upstream requests actually sent (tests check coalescing with it).
    pub upstream_requests: AtomicU64,
    /// The dictionary memory (`None`: dictionaries off).
    pub dicts: Option<Arc<DictStore>>,
    /// Announced dictionary URLs already tried (each is fetched once); bounded.
    tried: Mutex<HashSet<String>>,
    /// Copies of pages that moved (301/308), by their new URL: the delta
    /// base of the first fetch there (see [`Fetcher::seed`]); bounded.
    seeds: Mutex<HashMap<String, Entry>>,
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

/// Request headers the fetcher sets itself. A client's own `Available-Dictionary`
/// and `Dictionary-ID` go too: the fetcher offers only its own dictionaries
/// and always serves identity, so a dcz body meant for a client's dictionary
/// is never asked for.
const OWN_REQUEST_HEADERS: [&str; 10] = [
    "accept-encoding",
    "hsync-signature",
    "if-none-match",
    "if-modified-since",
    "if-match",
    "if-unmodified-since",
    "if-range",
    "host",
    "available-dictionary",
    "dictionary-id",
];

/// The request field naming an offered dictionary (RFC 9842 §2.2).
pub const AVAILABLE_DICTIONARY: &str = "available-dictionary";
/// The request field carrying the offered dictionary's `id` (RFC 9842 §2.3).
pub const DICTIONARY_ID: &str = "dictionary-id";
/// How many announced dictionaries one response may make the fetcher fetch.
const MAX_LINKS: usize = 2;

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
        .filter(|s| {
            !s.is_empty()
                && !s.eq_ignore_ascii_case(hsync_core::http::SIGNATURE_HEADER)
                && !s.eq_ignore_ascii_case(AVAILABLE_DICTIONARY)
                && !s.eq_ignore_ascii_case(DICTIONARY_ID)
        })
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

/// Response fields that are never stored nor replayed from the cache.
const NEVER_STORED: [&str; 2] = ["set-cookie", "set-cookie2"];

fn has_set_cookie(h: &HeaderMap) -> bool {
    NEVER_STORED.iter().any(|n| h.contains_key(*n))
}

/// `h` without Set-Cookie and Set-Cookie2: what may be stored or served from the cache.
fn without_cookies(h: &HeaderMap) -> HeaderMap {
    let mut out = h.clone();
    for n in NEVER_STORED {
        out.remove(n);
    }
    out
}

/// All the values of field `name` joined with ", " (`None` when absent), so
/// that two requests are compared on every line of a field, not the first.
fn combined(h: &HeaderMap, name: &str) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    for v in h.get_all(name) {
        let o = out.get_or_insert_with(Vec::new);
        if !o.is_empty() {
            o.extend_from_slice(b", ");
        }
        o.extend_from_slice(v.as_bytes());
    }
    out
}

/// Splits a Vary value into lowercase field names; `None` for `*` (which
/// never matches) or a value that cannot be read.
fn parse_vary<'a>(values: impl Iterator<Item = &'a str>) -> Option<Vec<String>> {
    let mut names = Vec::new();
    for n in values.flat_map(|s| s.split(',')).map(str::trim).filter(|s| !s.is_empty()) {
        if n == "*" {
            return None;
        }
        names.push(n.to_ascii_lowercase());
    }
    Some(names)
}

/// The field names a response varies on (`None`: `Vary: *` or unreadable).
pub fn vary_names(h: &HeaderMap) -> Option<Vec<String>> {
    let mut values = Vec::new();
    for v in h.get_all(header::VARY) {
        values.push(v.to_str().ok()?);
    }
    parse_vary(values.into_iter())
}

/// Do two requests agree on every one of these fields?
fn same_fields(a: &HeaderMap, b: &HeaderMap, names: &[String]) -> bool {
    names.iter().all(|n| combined(a, n) == combined(b, n))
}

/// The directive names of a Cache-Control (or Pragma) field, lowercase.
fn directives(h: &HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .flat_map(|s| s.split(',').map(|d| d.split('=').next().unwrap_or("").trim().to_ascii_lowercase()).collect::<Vec<_>>())
        .filter(|d| !d.is_empty())
        .collect()
}

/// Does a request carry something that makes its response personal (and so never shared)?
fn personal(h: &HeaderMap) -> bool {
    h.contains_key(header::COOKIE) || h.contains_key(header::AUTHORIZATION)
}

/// May a caller with logical request headers `me` wait for the fetch opened by
/// `leader`? Only if they agree on what steers a cache (Cache-Control, Pragma)
/// and on the fields the stored entry varies on (`stored_vary`).
fn may_join(leader: &HeaderMap, me: &HeaderMap, stored_vary: Option<&str>) -> bool {
    if personal(me) || personal(leader) {
        return false;
    }
    if !same_fields(leader, me, &["cache-control".into(), "pragma".into()]) {
        return false;
    }
    match stored_vary {
        None => true,
        Some(v) => parse_vary(std::iter::once(v)).is_some_and(|names| same_fields(leader, me, &names)),
    }
}

/// May the result `o` of a fetch made for a request with headers `runner` be
/// handed to another caller with headers `me`? Only a response a shared
/// cache could store and then serve to `me`: storable for a shared cache
/// (so not `private`, not `no-store`), no Set-Cookie, and `me` agrees with
/// `runner` on every field the response's Vary names (`*` never agrees).
fn shareable(uri: &Uri, runner: &HeaderMap, me: &HeaderMap, o: &Outcome) -> bool {
    if has_set_cookie(&o.headers) || personal(runner) || personal(me) {
        return false;
    }
    let Some(names) = vary_names(&o.headers) else { return false };
    if !same_fields(runner, me, &names) {
        return false;
    }
    if directives(&o.headers, "cache-control").iter().any(|d| d == "private" || d == "no-store") {
        return false;
    }
    let (mut req, _) = Request::new(()).into_parts();
    req.uri = uri.clone();
    req.headers = runner.clone();
    let res = response_parts(o.status, o.headers.clone());
    CachePolicy::new_options(&req, &res, SystemTime::now(), CacheOptions { shared: true, ..Default::default() }).is_storable()
}

/// The request as the stored policy records it. http-cache-semantics keeps
/// the request's headers to match later requests against the entry's Vary;
/// storing them as they are would put users' cookies and credentials on
/// disk. So it gets only what its decisions need: Cache-Control and Pragma
/// (each joined into one line), whether Authorization was present, and,
/// for each field named in `vary`, a SHA-256 digest of all that field's
/// values. Lookups build the same form from the new request with the stored
/// entry's Vary names, so comparing the digests compares the whole fields.
pub fn policy_request(logical: &http::request::Parts, vary: &[String]) -> http::request::Parts {
    let mut h = HeaderMap::new();
    for n in [header::CACHE_CONTROL, header::PRAGMA] {
        if let Some(v) = combined(&logical.headers, n.as_str()).and_then(|v| HeaderValue::from_bytes(&v).ok()) {
            h.insert(n, v);
        }
    }
    if logical.headers.contains_key(header::AUTHORIZATION) {
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("present"));
    }
    for name in vary {
        let Ok(hn) = HeaderName::from_bytes(name.as_bytes()) else { continue };
        if hn == header::CACHE_CONTROL || hn == header::PRAGMA {
            continue;
        }
        h.remove(&hn);
        if let Some(v) = combined(&logical.headers, name) {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            ctx.update(b"hsync vary\0");
            ctx.update(name.as_bytes());
            ctx.update(b"\0");
            ctx.update(&v);
            let hex: String = ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect();
            h.insert(hn, HeaderValue::from_str(&hex).expect("hex is a valid header value"));
        }
    }
    let (mut parts, _) = Request::new(()).into_parts();
    parts.method = logical.method.clone();
    parts.uri = logical.uri.clone();
    parts.headers = h;
    parts
}

/// May a stored response be served stale (the origin being unreachable) for
/// this request? Not when the response says `must-revalidate` or `no-cache`
/// (RFC 9111 §5.2.2.2, §5.2.2.4), nor in a shared cache `proxy-revalidate`
/// or `s-maxage` (§5.2.2.8, §5.2.2.10), nor when the request says
/// `no-cache`/`no-store` (§5.2.1.4, §5.2.1.5; Pragma: no-cache without
/// Cache-Control counts as no-cache, §5.4).
pub fn stale_allowed(stored: &HeaderMap, req: &HeaderMap, shared: bool) -> bool {
    let res = directives(stored, "cache-control");
    let mut refuse = vec!["must-revalidate", "no-cache"];
    if shared {
        refuse.extend(["proxy-revalidate", "s-maxage"]);
    }
    if res.iter().any(|d| refuse.contains(&d.as_str())) {
        return false;
    }
    if !stored.contains_key(header::CACHE_CONTROL) && directives(stored, "pragma").iter().any(|d| d == "no-cache") {
        return false;
    }
    let rq = directives(req, "cache-control");
    if rq.iter().any(|d| d == "no-cache" || d == "no-store") {
        return false;
    }
    if !req.contains_key(header::CACHE_CONTROL) && directives(req, "pragma").iter().any(|d| d == "no-cache") {
        return false;
    }
    true
}

/// A structured-field string (RFC 8941) holding `s`, if it can.
fn sf_string(s: &str) -> Option<HeaderValue> {
    if !s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return None;
    }
    HeaderValue::from_str(&format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))).ok()
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

/// What handling one answer needs besides the answer itself.
struct Round<'a> {
    url: &'a str,
    logical: &'a http::request::Parts,
    /// The cached copy the request was made against (validators, signature).
    base: Option<&'a Entry>,
    /// The dictionary offered with the request (`Available-Dictionary`).
    offered: Option<&'a Chosen>,
    progress: Option<Progress>,
    trace: &'a mut Vec<Exchange>,
    wire: &'a mut u64,
    now: SystemTime,
}

/// The response's Content-Length, when it has one.
fn total_len(parts: &http::response::Parts) -> Option<u64> {
    parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|s| s.parse().ok())
}

enum Failure {
    /// Network trouble or a timeout: serve stale if possible.
    Net(FetchError),
    /// The response could not be used with this base (bad delta, 304 that does not match): refetch without.
    Retry(String),
    /// The origin answered, but with something unusable whatever the base (a body over the limit): fail.
    Fatal(FetchError),
}

impl Fetcher {
    pub fn new(cache: Arc<DiskCache>, opts: FetchOptions) -> Fetcher {
        let dicts = opts.dictionary.clone().and_then(|d| match DictStore::open(cache.dir().join("dictionaries"), d) {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                eprintln!("hsync: dictionaries off: {}: {e}", cache.dir().join("dictionaries").display());
                None
            }
        });
        Fetcher {
            dicts,
            tried: Mutex::new(HashSet::new()),
            seeds: Mutex::new(HashMap::new()),
            client: build_client_with(opts.timeout, opts.roots.clone().unwrap_or_else(crate::tls::system_roots)),
            cache,
            opts,
            inflight: Mutex::new(HashMap::new()),
            stats: Stats::default(),
            per_url: Mutex::new(HashMap::new()),
            upstream_requests: AtomicU64::new(0),
        }
    }

    /// The stored entry's metadata for this request (its trailer only), if
    /// the fetcher would use the entry for it: stored under this cache's
    /// rules (a shared cache: as shared), not marked removed, and matching
    /// the request on every field its Vary names. With whether it is fresh
    /// for the request (RFC 9111 §4.2, request directives included).
    pub fn stored_meta_for(&self, uri: &Uri, user: &HeaderMap) -> Option<(Meta, bool)> {
        let meta = self.cache.get_meta(&uri.to_string())?;
        if meta.removed_at.is_some() {
            return None;
        }
        let fresh = self.matching(&meta, uri, user)?;
        Some((meta, fresh))
    }

    /// Does `meta` serve this request (this cache's rules, Vary)? `Some(fresh)`.
    fn matching(&self, meta: &Meta, uri: &Uri, user: &HeaderMap) -> Option<bool> {
        if self.opts.shared && meta.shared != Some(true) {
            return None;
        }
        let logical = Self::logical_request(uri, user);
        let headers = without_cookies(&from_pairs(&meta.headers));
        let keyed = policy_request(&logical, &vary_names(&headers)?);
        match meta.policy.before_request(&keyed, SystemTime::now()) {
            BeforeRequest::Fresh(_) => Some(true),
            BeforeRequest::Stale { matches: true, .. } => Some(false),
            BeforeRequest::Stale { matches: false, .. } => None,
        }
    }

    /// The whole verified entry for this request, as [`Fetcher::stored_meta_for`]
    /// decides (`removed`: only an entry the origin removed, else only one it did not).
    pub fn stored_for(&self, uri: &Uri, user: &HeaderMap, removed: bool) -> Option<Entry> {
        let e = self.cache.get(&uri.to_string())?;
        if e.meta.removed_at.is_some() != removed || e.meta.status != 200 {
            return None;
        }
        self.matching(&e.meta, uri, user)?;
        Some(e)
    }

    /// The headers a stored entry is served with (never a Set-Cookie).
    pub fn served_from(e: &Entry) -> HeaderMap {
        Self::from_entry(e)
    }

    /// Offers `e` (the copy of a page that moved) as the delta base of the
    /// next fetch of `new_url`, if nothing is stored there by then.
    pub fn seed(&self, new_url: &str, e: Entry) {
        let mut m = self.seeds.lock().unwrap();
        if m.len() >= 64 {
            m.clear();
        }
        m.insert(new_url.to_string(), e);
    }

    /// The shared client (the proxy uses it for requests it does not cache).
    pub fn client(&self) -> &HttpClient {
        &self.client
    }

    /// GETs `uri` through the cache. Concurrent calls for the same URL may
    /// share one upstream fetch (see `may_join` and `shareable`): never with
    /// Cookie or Authorization, never a response a shared cache could not
    /// serve to the other caller.
    pub async fn fetch(&self, uri: &Uri, user_headers: &HeaderMap, progress: Option<Progress>) -> Shared {
        self.fetch_joined(uri, user_headers, progress).await.0
    }

    /// [`Fetcher::fetch`], also saying whether the result is another
    /// request's, taken without an exchange of this request's own (`true`:
    /// its bytes on the wire were counted for that request).
    pub async fn fetch_joined(&self, uri: &Uri, user_headers: &HeaderMap, progress: Option<Progress>) -> (Shared, bool) {
        let alone = |progress: Option<Progress>| async move {
            self.fetch_uncoalesced(uri, user_headers, progress).await.map(Arc::new).map_err(Arc::new)
        };
        if personal(user_headers) {
            return (alone(progress).await, false);
        }
        let key = uri.to_string();
        let mine = Self::logical_request(uri, user_headers).headers;
        let stored_vary = self.cache.stored_vary(&key);
        let flight = {
            let mut m = self.inflight.lock().unwrap();
            match m.get(&key) {
                Some(f) if may_join(&f.leader, &mine, stored_vary.as_deref()) => Some(f.clone()),
                Some(_) => None,
                None => {
                    let f = Arc::new(Flight { leader: mine.clone(), cell: tokio::sync::OnceCell::new() });
                    m.insert(key.clone(), f.clone());
                    Some(f)
                }
            }
        };
        let Some(flight) = flight else { return (alone(progress).await, false) };
        let leave = Leave { map: &self.inflight, key, flight };
        let mut ran = false;
        let (runner, res) = leave
            .flight
            .cell
            .get_or_init(|| {
                ran = true;
                let mine = mine.clone();
                let progress = progress.clone();
                async move { (mine, alone(progress).await) }
            })
            .await
            .clone();
        drop(leave);
        match &res {
            Ok(o) if !ran && !shareable(uri, &runner, &mine, o) => (alone(progress).await, false),
            _ => (res, !ran),
        }
    }

    /// May dictionaries be learnt from and offered for this request? Always
    /// in a private cache; in a shared one only without Cookie or
    /// Authorization (see the README's privacy rule).
    fn dictionaries_for(&self, logical: &http::request::Parts) -> Option<&DictStore> {
        let d = self.dicts.as_deref()?;
        (!(self.opts.shared && personal(&logical.headers))).then_some(d)
    }

    /// The dictionary to offer for a request (see [`DictStore::choose`]);
    /// its body is read and verified off the async workers.
    async fn offer(&self, uri: &Uri, logical: &http::request::Parts) -> Option<Chosen> {
        self.dictionaries_for(logical)?;
        let d = self.dicts.clone()?;
        let dest = logical.headers.get("sec-fetch-dest").and_then(|v| v.to_str().ok()).unwrap_or("document").to_ascii_lowercase();
        let (uri, shared) = (uri.clone(), self.opts.shared);
        tokio::task::spawn_blocking(move || d.choose(&uri, &dest, shared, now_secs())).await.ok().flatten()
    }

    /// How long a response may serve as a dictionary: its freshness
    /// lifetime, if it is a 200 this cache may store (never `no-store`;
    /// for a shared cache also not `private`, no Set-Cookie, not to a
    /// request with Cookie or Authorization). `None`: not to be remembered.
    fn dictionary_lifetime(&self, logical: &http::request::Parts, status: StatusCode, headers: &HeaderMap) -> Option<(u64, CachePolicy)> {
        if status != StatusCode::OK {
            return None;
        }
        if self.opts.shared && (personal(&logical.headers) || has_set_cookie(headers)) {
            return None;
        }
        if directives(headers, "cache-control").iter().any(|d| d == "no-store") {
            return None;
        }
        let now = SystemTime::now();
        let keyed = policy_request(logical, &[]);
        let mut res = without_cookies(headers);
        res.remove(header::AGE);
        let policy = self.policy_for(&keyed, &response_parts(status, res), now);
        let ttl = policy.time_to_live(now).as_secs();
        (policy.is_storable() && ttl > 0).then_some((now_secs() + ttl, policy))
    }

    /// Remembers the response as a dictionary if it says `Use-As-Dictionary`
    /// (and may be remembered); notes the dictionaries it announces.
    fn learn(&self, uri: &Uri, logical: &http::request::Parts, o: &mut Outcome, previous: Option<&Bytes>) {
        let Some(d) = self.dictionaries_for(logical) else { return };
        if o.status != StatusCode::OK || !matches!(o.source, Source::Full | Source::Delta | Source::Dcz | Source::Revalidated) {
            return;
        }
        self.remember(d, uri, logical, &o.headers, &o.body);
        let now = now_secs();
        let values = |n: &str| o.headers.get_all(n).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>();
        let mut hrefs = dict::link_dictionaries(&values("link"));
        let html = o
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.to_ascii_lowercase().starts_with("text/html"));
        if html {
            hrefs.extend(dict::html_dictionaries(&o.body));
        }
        let tried = self.tried.lock().unwrap();
        for h in hrefs {
            let Some(u) = dict::resolve_same_origin(uri, &h) else { continue };
            let u = u.to_string();
            if o.dictionary_links.len() < MAX_LINKS
                && !o.dictionary_links.contains(&u)
                && !tried.contains(&u)
                && !d.holds_fresh(&u, self.opts.shared, now)
            {
                // Named by a hash (hsync's dictionary URLs): perhaps a body we hold.
                if let Some(h) = u.rsplit('/').next().and_then(hsync_core::store::unhex) {
                    // A shared cache takes this response's body only if a shared cache could store it
                    // (the previous copy came from the shared cache, so it could).
                    let this = (!self.opts.shared
                        || !(has_set_cookie(&o.headers)
                            || directives(&o.headers, "cache-control").iter().any(|d| d == "private" || d == "no-store")))
                    .then_some(&o.body);
                    let held = [previous, this].into_iter().flatten().find(|b| hsync_core::store::sha256(b) == h).cloned();
                    if let Some(b) = held {
                        o.dictionary_held.push((u.clone(), b));
                    }
                }
                o.dictionary_links.push(u);
            }
        }
    }

    /// Stores `body` as a dictionary if the headers say `Use-As-Dictionary`
    /// with a same-origin pattern we understand, and the response may be remembered.
    fn remember(&self, d: &DictStore, uri: &Uri, logical: &http::request::Parts, headers: &HeaderMap, body: &[u8]) -> bool {
        let values: Vec<&str> = headers.get_all("use-as-dictionary").iter().filter_map(|v| v.to_str().ok()).collect();
        let Some(u) = dict::parse_use_as_dictionary(&values) else { return false };
        let Some(pattern) = dict::same_origin_pattern(uri, &u.pattern).filter(|p| dict::pattern_ok(p)) else { return false };
        let Some((expires, policy)) = self.dictionary_lifetime(logical, StatusCode::OK, headers) else { return false };
        let Some(origin) = dict::origin_of(uri) else { return false };
        if body.is_empty() {
            return false;
        }
        let received_ms = SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|t| t.as_millis() as u64).unwrap_or(0);
        let meta = DictMeta {
            origin,
            pattern,
            dest: u.dest,
            id: u.id,
            sha256: hsync_core::store::hex(&hsync_core::store::sha256(body)),
            expires,
            received_ms,
            shared: self.opts.shared,
        };
        match d.insert(&uri.to_string(), meta, policy, body) {
            Ok(kept) => kept,
            Err(e) => {
                eprintln!("hsync: dictionary write failed for {uri}: {e}");
                false
            }
        }
    }

    /// Fetches announced dictionaries (an outcome's `dictionary_links`), each
    /// URL once per process, same-origin only (checked when they were noted),
    /// without the user's headers (so without cookies), identity, bounded by
    /// the dictionary size limit, and remembers those that carry
    /// `Use-As-Dictionary`. Returns, for each URL, the bytes kept or why not.
    /// `hsync get` awaits it after the page; the proxy runs it in the background.
    pub async fn fetch_dictionaries(&self, o: &Outcome) -> Vec<(String, Result<u64, String>)> {
        let mut out = Vec::new();
        let Some(d) = self.dicts.clone() else { return out };
        for link in o.dictionary_links.iter().take(MAX_LINKS) {
            {
                let mut tried = self.tried.lock().unwrap();
                if tried.len() >= 4096 {
                    tried.clear();
                }
                if !tried.insert(link.clone()) {
                    continue;
                }
            }
            let held = o.dictionary_held.iter().find(|(u, _)| u == link).map(|(_, b)| b.clone());
            let r = match held {
                // A server whose HEAD answer does not fit (no Use-As-Dictionary, another length):
                // the dictionary is fetched whole.
                Some(b) => match self.fetch_dictionary(&d, link, Some(b)).await {
                    Ok(n) => Ok(n),
                    Err(_) => self.fetch_dictionary(&d, link, None).await,
                },
                None => self.fetch_dictionary(&d, link, None).await,
            };
            out.push((link.clone(), r));
        }
        out
    }

    /// Fetches one announced dictionary; with `held` (a body we hold that
    /// the URL names by its hash), only its headers (HEAD).
    async fn fetch_dictionary(&self, d: &DictStore, link: &str, held: Option<Bytes>) -> Result<u64, String> {
        let uri: Uri = link.parse().map_err(|e| format!("bad URL: {e}"))?;
        let logical = Self::logical_request(&uri, &HeaderMap::new());
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        let mut trace = Vec::new();
        let mut wire = 0u64;
        let res = async {
            let method = if held.is_some() { Method::HEAD } else { Method::GET };
            let (parts, body) = self.send(&uri, method, headers, &mut trace, &mut wire).await.map_err(|f| match f {
                Failure::Net(e) | Failure::Fatal(e) => e.message,
                Failure::Retry(m) => m,
            })?;
            if parts.status != StatusCode::OK {
                return Err(format!("HTTP {}", parts.status));
            }
            if !content_encoding(&parts.headers).is_empty() {
                return Err("not sent as identity".into());
            }
            let max = d.options().max_one;
            if total_len(&parts).is_some_and(|n| n > max) {
                return Err(format!("over the dictionary limit of {max} bytes"));
            }
            let body = match held {
                Some(b) => {
                    drop(body);
                    if total_len(&parts).is_some_and(|n| n != b.len() as u64) {
                        return Err("its length is not the held body's".into());
                    }
                    b
                }
                None => self.read_limited(body, max, &mut wire).await?,
            };
            let served = served_headers(&parts.headers, Some(body.len()), true);
            if !served.contains_key("use-as-dictionary") {
                return Err("no Use-As-Dictionary".into());
            }
            if self.remember(d, &uri, &logical, &served, &body) {
                Ok(body.len() as u64)
            } else {
                Err("not usable as a dictionary (pattern, freshness or privacy)".into())
            }
        }
        .await;
        self.stats.wire.fetch_add(wire, Ordering::Relaxed);
        self.stats.dictionary_wire.fetch_add(wire, Ordering::Relaxed);
        self.stats.dictionary_fetches.fetch_add(1, Ordering::Relaxed);
        res
    }

    /// Reads a body of at most `max` bytes.
    async fn read_limited(&self, mut body: Incoming, max: u64, wire: &mut u64) -> Result<Bytes, String> {
        let mut buf = Vec::new();
        loop {
            let frame = match tokio::time::timeout(self.opts.timeout, body.frame()).await {
                Err(_) => return Err("timed out".into()),
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(format!("reading the body: {e}")),
                Ok(Some(Ok(f))) => f,
            };
            if let Ok(data) = frame.into_data() {
                *wire += data.len() as u64;
                if buf.len() as u64 + data.len() as u64 > max {
                    return Err(format!("over the dictionary limit of {max} bytes"));
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(Bytes::from(buf))
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

    /// Builds the stored policy and decides whether to store: `stored` are the
    /// headers to store (without Set-Cookie), `live` the ones received.
    fn store_policy(
        &self,
        logical: &http::request::Parts,
        status: StatusCode,
        stored: &HeaderMap,
        live: &HeaderMap,
        now: SystemTime,
    ) -> (CachePolicy, bool) {
        let names = vary_names(stored);
        let keyed = policy_request(logical, names.as_deref().unwrap_or(&[]));
        let policy = self.policy_for(&keyed, &response_parts(status, stored.clone()), now);
        let store = policy.is_storable() && names.is_some() && !(self.opts.shared && has_set_cookie(live));
        (policy, store)
    }

    /// An entry's headers as served from the cache (never a Set-Cookie, even from an entry written by an older version).
    fn from_entry(e: &Entry) -> HeaderMap {
        without_cookies(&from_pairs(&e.meta.headers))
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
        let mut entry = self.cache.get(&url);
        if self.opts.shared && entry.as_ref().is_some_and(|e| e.meta.shared != Some(true)) {
            // Stored by a one-user proxy (or a version that did not say): not for a shared cache.
            entry = None;
        }
        if entry.as_ref().is_some_and(|e| e.meta.removed_at.is_some()) {
            // The origin said 404/410: the copy is kept for the proxy's link only.
            entry = None;
        }
        // The stored validators, sent when the entry is the base.
        let mut validators = HeaderMap::new();
        if let Some(e) = entry.take() {
            // Another variant (the request does not match the entry's Vary) is as good as nothing stored:
            // no fresh hit, no validators, no delta base, no stale copy.
            let keyed = vary_names(&Self::from_entry(&e)).map(|names| policy_request(&logical, &names));
            match keyed.map(|k| e.meta.policy.before_request(&k, now)) {
                None | Some(BeforeRequest::Stale { matches: false, .. }) => {}
                Some(BeforeRequest::Stale { request, matches: true }) => {
                    for n in [header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE] {
                        for v in request.headers.get_all(&n) {
                            validators.append(n.clone(), v.clone());
                        }
                    }
                    entry = Some(e);
                }
                Some(BeforeRequest::Fresh(_)) => {
                    let mut headers = Self::from_entry(&e);
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
                        dictionary_used: None,
                        dictionary_links: Vec::new(),
                        dictionary_held: Vec::new(),
                    });
                }
            }
        }

        let mut trace = Vec::new();
        let mut wire = 0u64;
        // Nothing usable stored: perhaps the copy of the page that moved here (a delta base only).
        let seed = if entry.is_none() { self.seeds.lock().unwrap().remove(&url) } else { None };
        let mut base = entry.clone().or(seed);
        let mut delta_failed = None;
        let mut dict_off = false;
        loop {
            let offer = if dict_off { None } else { self.offer(uri, &logical).await };
            let mut headers = logical.headers.clone();
            if base.is_some() {
                for (n, v) in &validators {
                    headers.append(n.clone(), v.clone());
                }
            }
            let sig = match &base {
                // A fresh random seed each time; none when no server would
                // accept a signature for this copy (empty, or ~150 MB and more).
                Some(e) if self.opts.hsync && hsync_core::signature::SigParams::for_http(e.body.len() as u64).is_some() => {
                    let body = e.body.clone();
                    tokio::task::spawn_blocking(move || hsync_core::http::signature_for(&body).map(|s| s.to_bytes())).await.ok().flatten()
                }
                _ => None,
            };
            let accept = match (&offer, &sig) {
                (Some(_), Some(_)) => "dcz, hsync, gzip",
                (Some(_), None) => "dcz, gzip",
                (None, Some(_)) => "hsync, gzip",
                (None, None) => "gzip",
            };
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(accept));
            if let Some(s) = &sig {
                headers.insert(
                    HeaderName::from_static("hsync-signature"),
                    HeaderValue::from_str(&hsync_core::http::encode_signature_header(s)).expect("base64url is a valid header value"),
                );
            }
            if let Some(d) = &offer {
                use base64::Engine;
                let v = format!(":{}:", base64::engine::general_purpose::STANDARD.encode(d.hash));
                headers.insert(
                    HeaderName::from_static(AVAILABLE_DICTIONARY),
                    HeaderValue::from_str(&v).expect("base64 is a valid header value"),
                );
                if let Some(id) = d.meta.id.as_ref().and_then(|id| sf_string(id)) {
                    headers.insert(HeaderName::from_static(DICTIONARY_ID), id);
                }
            }
            let result =
                self.exchange(uri, &url, headers, &logical, base.as_ref(), offer.as_ref(), progress.clone(), &mut trace, &mut wire).await;
            match result {
                Ok(mut o) => {
                    o.delta_failed = delta_failed;
                    if o.source == Source::Dcz {
                        o.dictionary_used = offer.as_ref().map(|d| d.meta.sha256.clone());
                        self.stats.dcz_responses.fetch_add(1, Ordering::Relaxed);
                        self.stats.dcz_wire.fetch_add(o.wire_bytes, Ordering::Relaxed);
                        self.stats.dcz_decoded.fetch_add(o.body.len() as u64, Ordering::Relaxed);
                    }
                    self.learn(uri, &logical, &mut o, entry.as_ref().map(|e| &e.body));
                    self.stats.wire.fetch_add(o.wire_bytes, Ordering::Relaxed);
                    self.stats.decoded.fetch_add(o.body.len() as u64, Ordering::Relaxed);
                    let (wb, src) = (o.wire_bytes, o.source);
                    self.note(&url, |s| {
                        s.wire += wb;
                        s.last_source = Some(src.as_str());
                    });
                    return Ok(o);
                }
                Err(Failure::Retry(reason)) if base.is_some() || offer.is_some() => {
                    // Refetch plainly: no signature, no dictionary.
                    delta_failed = Some(reason);
                    base = None;
                    dict_off = true;
                    continue;
                }
                Err(Failure::Retry(reason)) => return Err(FetchError::new(reason)),
                Err(Failure::Fatal(err)) => {
                    self.stats.wire.fetch_add(wire, Ordering::Relaxed);
                    return Err(err);
                }
                Err(Failure::Net(mut err)) => {
                    err.unreachable = true;
                    self.stats.wire.fetch_add(wire, Ordering::Relaxed);
                    // `entry` is the variant matching this request, if any.
                    let Some(e) = entry else { return Err(err) };
                    let mut headers = Self::from_entry(&e);
                    if !stale_allowed(&headers, &logical.headers, self.opts.shared) {
                        return Err(err);
                    }
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
                        dictionary_used: None,
                        dictionary_links: Vec::new(),
                        dictionary_held: Vec::new(),
                    });
                }
            }
        }
    }

    /// One request to the origin and the handling of its answer, by kind:
    /// 304, another status, an hsync delta, gzip, identity, another coding.
    #[allow(clippy::too_many_arguments)]
    async fn exchange(
        &self,
        uri: &Uri,
        url: &str,
        headers: HeaderMap,
        logical: &http::request::Parts,
        base: Option<&Entry>,
        offered: Option<&Chosen>,
        progress: Option<Progress>,
        trace: &mut Vec<Exchange>,
        wire: &mut u64,
    ) -> Result<Outcome, Failure> {
        let (parts, body) = self.send(uri, Method::GET, headers, trace, wire).await?;
        let mut r = Round { url, logical, base, offered, progress, trace, wire, now: SystemTime::now() };
        let status = parts.status;
        if status == StatusCode::NOT_MODIFIED {
            drop(body);
            return self.not_modified(&mut r, parts);
        }
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            // The copy stays (until evicted), marked: no longer served for
            // this URL, but the proxy links to it ("removed by its author").
            self.cache.mark_removed(url, now_secs());
        }
        if status != StatusCode::OK {
            return self.passed(&mut r, parts, body).await;
        }
        match content_encoding(&parts.headers).as_str() {
            "hsync" => self.delta(&mut r, parts, body).await,
            "dcz" => self.dcz(&mut r, parts, body).await,
            "gzip" | "x-gzip" => self.gzip(&mut r, parts, body).await,
            "" => self.identity(&mut r, parts, body).await,
            // A coding we did not ask for: pass it on untouched, store nothing.
            _ => self.passed(&mut r, parts, body).await,
        }
    }

    /// Sends the request; the response's head, traced and counted.
    async fn send(
        &self,
        uri: &Uri,
        method: Method,
        mut headers: HeaderMap,
        trace: &mut Vec<Exchange>,
        wire: &mut u64,
    ) -> Result<(http::response::Parts, Incoming), Failure> {
        let host = uri.authority().map(|a| a.as_str().to_string()).unwrap_or_default();
        if let Ok(v) = HeaderValue::from_str(&host) {
            headers.insert(header::HOST, v);
        }
        if !headers.contains_key(header::USER_AGENT) {
            headers.insert(header::USER_AGENT, HeaderValue::from_static(concat!("hsync/", env!("CARGO_PKG_VERSION"))));
        }
        let mut ex = Exchange::default();
        ex.request.push(format!("{method} {} HTTP/1.1", uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")));
        ex.request.extend(header_lines(&headers));
        // The Host shown above is sent by hyper for HTTP/1.1 (from the URL); over HTTP/2 the URL's
        // authority is `:authority`, and a Host beside it is refused by nginx as a duplicate.
        headers.remove(header::HOST);
        let mut req = Request::new(empty_body());
        *req.method_mut() = method;
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
                // A certificate the client does not trust is a refusal, not an outage: no stale copy either.
                if crate::tls::is_certificate_error(&msg) {
                    return Err(Failure::Fatal(FetchError::new(crate::tls::explain(msg))));
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
        Ok((parts, body))
    }

    /// 304: the cached copy is still good; its metadata is refreshed.
    fn not_modified(&self, r: &mut Round<'_>, parts: http::response::Parts) -> Result<Outcome, Failure> {
        let url = r.url;
        let Some(e) = r.base else {
            return Ok(self.pass(url, parts, Bytes::new(), *r.wire));
        };
        let mut names = vary_names(&Self::from_entry(e)).unwrap_or_default();
        names.extend(vary_names(&parts.headers).unwrap_or_default());
        let keyed = policy_request(r.logical, &names);
        let (policy, new_parts) = match e.meta.policy.after_response(&keyed, &parts, r.now) {
            AfterResponse::NotModified(policy, new_parts) => (policy, new_parts),
            AfterResponse::Modified(..) => return Err(Failure::Retry("304 does not match the cached copy".into())),
        };
        let stored = without_cookies(&served_headers(&new_parts.headers, Some(e.body.len()), true));
        let store = policy.is_storable() && vary_names(&stored).is_some() && !(self.opts.shared && has_set_cookie(&parts.headers));
        let fetched_at = now_secs();
        if store {
            let meta = Meta {
                url: url.to_string(),
                status: e.meta.status,
                headers: to_pairs(&stored),
                policy,
                body_len: 0,
                body_xxh3: 0,
                fetched_at,
                wire_bytes: *r.wire,
                shared: Some(self.opts.shared),
                dictionary: None,
                removed_at: None,
            };
            if let Err(err) = self.cache.update_meta(e, meta) {
                eprintln!("hsync: cache write failed for {url}: {err}");
            }
        } else {
            self.cache.remove(url);
        }
        // The live answer carries the 304's cookies to the client that caused it.
        let mut headers = stored;
        for n in NEVER_STORED {
            for v in parts.headers.get_all(n) {
                headers.append(HeaderName::from_static(n), v.clone());
            }
        }
        Ok(Outcome {
            url: url.to_string(),
            status: StatusCode::from_u16(e.meta.status).unwrap_or(StatusCode::OK),
            headers,
            body: e.body.clone(),
            source: Source::Revalidated,
            wire_bytes: *r.wire,
            trace: r.trace.clone(),
            stale_reason: None,
            fetched_at,
            delta_failed: None,
            dictionary_used: None,
            dictionary_links: Vec::new(),
            dictionary_held: Vec::new(),
        })
    }

    /// A response passed on as it came, and not stored (another status,
    /// another coding).
    async fn passed(&self, r: &mut Round<'_>, parts: http::response::Parts, body: Incoming) -> Result<Outcome, Failure> {
        let body = self.read_body(body, None, r.progress.clone(), total_len(&parts), r.wire).await?;
        Ok(self.pass(r.url, parts, body, *r.wire))
    }

    /// An hsync delta: applied to the base off the async workers, verified.
    async fn delta(&self, r: &mut Round<'_>, parts: http::response::Parts, body: Incoming) -> Result<Outcome, Failure> {
        let delta = self.read_body(body, None, r.progress.clone(), total_len(&parts), r.wire).await?;
        let Some(e) = r.base else {
            return Err(Failure::Retry("hsync response to a request without a signature".into()));
        };
        let old = e.body.clone();
        let limits = hsync_core::PatchLimits { max_output: self.opts.max_body };
        let new = match tokio::task::spawn_blocking(move || hsync_core::patch_with_limits(&old, &delta, &limits)).await {
            Ok(Ok(n)) => n,
            Ok(Err(err)) => return Err(Failure::Retry(format!("delta rejected: {err}"))),
            Err(err) => return Err(Failure::Retry(format!("delta rejected: {err}"))),
        };
        Ok(self.store_full(r.url, r.logical, parts, Bytes::from(new), Source::Delta, *r.wire, r.trace, r.now))
    }

    /// A dcz body (RFC 9842): decoded against the dictionary we offered, off
    /// the async workers, within the body limit. The frame must name that
    /// dictionary; the decoder checks it again and verifies zstd's checksum.
    /// Anything wrong: refetch plainly.
    async fn dcz(&self, r: &mut Round<'_>, parts: http::response::Parts, body: Incoming) -> Result<Outcome, Failure> {
        let data = self.read_body(body, None, r.progress.clone(), total_len(&parts), r.wire).await?;
        let Some(d) = r.offered else {
            return Err(Failure::Retry("dcz response to a request that offered no dictionary".into()));
        };
        use hsync_core::codec::dcz;
        if data.len() < dcz::DCZ_HEADER_LEN || data[..8] != dcz::DCZ_MAGIC {
            return Err(Failure::Retry("dcz body without the dcz header".into()));
        }
        if data[8..40] != d.hash {
            return Err(Failure::Retry("dcz response against a dictionary that was not offered".into()));
        }
        let dict = d.body.clone();
        let max = self.opts.max_body;
        let new = match tokio::task::spawn_blocking(move || dcz::decode(&dict, &data, max)).await {
            Ok(Ok(n)) => n,
            Ok(Err(hsync_core::Error::TooLarge(_))) => return Err(Failure::Fatal(FetchError::new("decoded body too large"))),
            Ok(Err(err)) => return Err(Failure::Retry(format!("dcz body rejected: {err}"))),
            Err(err) => return Err(Failure::Retry(format!("dcz body rejected: {err}"))),
        };
        Ok(self.store_full(r.url, r.logical, parts, Bytes::from(new), Source::Dcz, *r.wire, r.trace, r.now))
    }

    /// A gzip'd body: inflated off the async workers, within the body limit.
    async fn gzip(&self, r: &mut Round<'_>, parts: http::response::Parts, body: Incoming) -> Result<Outcome, Failure> {
        let gz = self.read_body(body, None, r.progress.clone(), total_len(&parts), r.wire).await?;
        let max = self.opts.max_body;
        let inflated = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&gz[..]).take(max + 1).read_to_end(&mut out).map(|_| out)
        })
        .await;
        let out = match inflated {
            Ok(Ok(out)) => out,
            Ok(Err(err)) => return Err(Failure::Retry(format!("gzip body is corrupt: {err}"))),
            Err(err) => return Err(Failure::Retry(format!("gzip body is corrupt: {err}"))),
        };
        if out.len() as u64 > max {
            return Err(Failure::Fatal(FetchError::new("decoded body too large")));
        }
        Ok(self.store_full(r.url, r.logical, parts, Bytes::from(out), Source::Full, *r.wire, r.trace, r.now))
    }

    /// An identity body: whether to store it is decided from the head, and
    /// it streams into the entry file as it arrives.
    async fn identity(&self, r: &mut Round<'_>, parts: http::response::Parts, body: Incoming) -> Result<Outcome, Failure> {
        let url = r.url;
        let total = total_len(&parts);
        let live = served_headers(&parts.headers, None, true);
        let (policy, store) = self.store_policy(r.logical, parts.status, &without_cookies(&live), &live, r.now);
        let mut writer = if store && total.is_none_or(|t| t <= self.cache.max_size()) { self.cache.writer(url).ok() } else { None };
        let body = self.read_body(body, writer.as_mut(), r.progress.clone(), total, r.wire).await?;
        let headers = served_headers(&parts.headers, Some(body.len()), true);
        let fetched_at = now_secs();
        match writer {
            Some(w) => {
                let meta = Meta {
                    url: url.to_string(),
                    status: 200,
                    headers: to_pairs(&without_cookies(&headers)),
                    policy,
                    body_len: 0,
                    body_xxh3: 0,
                    fetched_at,
                    wire_bytes: *r.wire,
                    shared: Some(self.opts.shared),
                    dictionary: None,
                    removed_at: None,
                };
                if let Err(err) = w.commit(meta) {
                    eprintln!("hsync: cache write failed for {url}: {err}");
                }
            }
            None => self.cache.remove(url),
        }
        Ok(Outcome {
            url: url.to_string(),
            status: parts.status,
            headers,
            body,
            source: Source::Full,
            wire_bytes: *r.wire,
            trace: r.trace.clone(),
            stale_reason: None,
            fetched_at,
            delta_failed: None,
            dictionary_used: None,
            dictionary_links: Vec::new(),
            dictionary_held: Vec::new(),
        })
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
            dictionary_used: None,
            dictionary_links: Vec::new(),
            dictionary_held: Vec::new(),
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
        let stored = without_cookies(&headers);
        let (policy, store) = self.store_policy(logical, parts.status, &stored, &headers, now);
        let fetched_at = now_secs();
        if store {
            let meta = Meta {
                url: url.to_string(),
                status: parts.status.as_u16(),
                headers: to_pairs(&stored),
                policy,
                body_len: 0,
                body_xxh3: 0,
                fetched_at,
                wire_bytes: wire,
                shared: Some(self.opts.shared),
                dictionary: None,
                removed_at: None,
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
            dictionary_used: None,
            dictionary_links: Vec::new(),
            dictionary_held: Vec::new(),
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
                    return Err(Failure::Fatal(FetchError::new(format!("response body over the limit of {} bytes", self.opts.max_body))));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn vary_names_and_star() {
        assert_eq!(
            vary_names(&h(&[("vary", "Cookie, accept-language"), ("vary", "X-A")])),
            Some(vec!["cookie".into(), "accept-language".into(), "x-a".into()])
        );
        assert_eq!(vary_names(&h(&[])), Some(vec![]));
        assert_eq!(vary_names(&h(&[("vary", "Cookie, *")])), None);
    }

    #[test]
    fn fields_compared_on_every_line() {
        let a = h(&[("cookie", "x=1"), ("cookie", "y=2")]);
        let b = h(&[("cookie", "x=1")]);
        assert!(!same_fields(&a, &b, &["cookie".into()]));
        assert!(same_fields(&a, &a.clone(), &["cookie".into()]));
        assert!(!may_join(&h(&[]), &h(&[("cache-control", "no-cache")]), None));
        assert!(!may_join(&h(&[("accept-language", "en")]), &h(&[("accept-language", "fr")]), Some("Accept-Language")));
        assert!(may_join(&h(&[("accept-language", "en")]), &h(&[("accept-language", "fr")]), Some("Accept-Encoding")));
        assert!(!may_join(&h(&[]), &h(&[]), Some("*")));
    }

    #[test]
    fn stale_refusals() {
        let none = h(&[]);
        assert!(stale_allowed(&h(&[("cache-control", "max-age=0")]), &none, true));
        for cc in ["max-age=0, must-revalidate", "no-cache", "no-cache=\"set-cookie\"", "proxy-revalidate", "s-maxage=10"] {
            assert!(!stale_allowed(&h(&[("cache-control", cc)]), &none, true), "{cc}");
        }
        assert!(stale_allowed(&h(&[("cache-control", "s-maxage=10")]), &none, false));
        assert!(!stale_allowed(&h(&[("pragma", "no-cache")]), &none, false));
        let ok = h(&[("cache-control", "max-age=0")]);
        for (k, v) in [("cache-control", "no-cache"), ("cache-control", "max-age=5, no-store"), ("pragma", "no-cache")] {
            assert!(!stale_allowed(&ok, &h(&[(k, v)]), true), "{k}: {v}");
        }
    }

    #[test]
    fn stored_request_holds_no_secrets() {
        let (mut req, _) = Request::new(()).into_parts();
        req.uri = "http://example.org/".parse().unwrap();
        req.headers =
            h(&[("cookie", "session=secret"), ("authorization", "Basic c2VjcmV0"), ("cache-control", "max-age=0"), ("x-other", "v")]);
        let keyed = policy_request(&req, &["cookie".into()]);
        let text = format!("{:?}", keyed.headers);
        assert!(!text.contains("secret") && !text.contains("c2VjcmV0") && !text.contains("x-other"), "{text}");
        assert_eq!(keyed.headers.get("cache-control").unwrap(), "max-age=0");
        assert_eq!(keyed.headers.get("authorization").unwrap(), "present");
        let digest = keyed.headers.get("cookie").unwrap().clone();
        assert_eq!(digest.len(), 64);
        // The same cookie gives the same digest; another one (or an extra line) does not.
        assert_eq!(policy_request(&req, &["cookie".into()]).headers.get("cookie"), Some(&digest));
        req.headers.append(header::COOKIE, HeaderValue::from_static("more=1"));
        assert_ne!(policy_request(&req, &["cookie".into()]).headers.get("cookie"), Some(&digest));
    }
}
