//! RFC 9842 dictionaries in the client: learning (`Use-As-Dictionary`,
//! `Link` and `<link rel="compression-dictionary">`), offering
//! (`Available-Dictionary`, `dcz`), decoding, and the rules around them
//! (same origin, freshness, privacy in a shared proxy, bounds, damage),
//! against an in-test server that keeps every version it served and answers
//! `dcz` against the one a request names.
mod common;

use bytes::Bytes;
use common::*;
use hsync_client::dict::{DictOptions, DictStore};
use hsync_client::proxy::{self, ProxyConfig};
use hsync_client::{DiskCache, FetchOptions, Fetcher, Outcome, Source};
use hsync_core::codec::dcz;
use hsync_core::store::{sha256, Hash};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the versioned server misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// dcz against the version the request names, when it has it.
    Normal,
    /// When a request names a dictionary: dcz against another version (its header naming that one).
    Unoffered,
    /// dcz against another version on every request, offered or not.
    AlwaysUnoffered,
    /// dcz against the named version, with one byte of the frame flipped.
    Corrupt,
    /// The header names the offered dictionary, the frame was made against another version.
    WrongDictionary,
}

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    available: Option<String>,
    dictionary_id: Option<String>,
    accept_encoding: Option<String>,
    cookie: Option<String>,
    content_encoding: Option<String>,
    body_bytes: usize,
}

struct Page {
    body: Vec<u8>,
    headers: Vec<(String, String)>,
}

#[derive(Default)]
struct State {
    pages: Mutex<HashMap<String, Page>>,
    versions: Mutex<HashMap<Hash, Vec<u8>>>,
    mode: Mutex<Option<Mode>>,
    log: Mutex<Vec<Seen>>,
}

/// A server that keeps every version it served and answers dcz.
struct Versioned {
    addr: SocketAddr,
    st: Arc<State>,
    _h: tokio::task::JoinHandle<()>,
}

impl Versioned {
    fn start() -> Versioned {
        let st = Arc::new(State::default());
        let listener = rt().block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let s2 = st.clone();
        let h = rt().spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let s3 = s2.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let s4 = s3.clone();
                        async move { Ok::<_, Infallible>(serve(&s4, req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Versioned { addr, st, _h: h }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn page(&self, path: &str, body: &[u8], headers: &[(&str, &str)]) {
        let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.st.pages.lock().unwrap().insert(path.to_string(), Page { body: body.to_vec(), headers });
    }

    /// Keeps a version the server may encode against without having served it.
    fn keep(&self, body: &[u8]) {
        self.st.versions.lock().unwrap().insert(sha256(body), body.to_vec());
    }

    fn mode(&self, m: Mode) {
        *self.st.mode.lock().unwrap() = Some(m);
    }

    fn log(&self) -> Vec<Seen> {
        self.st.log.lock().unwrap().clone()
    }

    fn last(&self) -> Seen {
        self.log().last().cloned().unwrap()
    }
}

fn b64(h: &Hash) -> String {
    use base64::Engine;
    format!(":{}:", base64::engine::general_purpose::STANDARD.encode(h))
}

fn encode(dict: &[u8], body: &[u8]) -> Vec<u8> {
    let h = sha256(dict);
    let p = dcz::prepared(&h, || Some(dict.to_vec())).unwrap();
    let mut e = dcz::DczEncoder::new(p, Some(body.len() as u64)).unwrap();
    let mut out = Vec::new();
    e.update(body, &mut out).unwrap();
    e.finish(&mut out).unwrap();
    out
}

fn serve(st: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let h = req.headers();
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut seen = Seen {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        available: get("available-dictionary"),
        dictionary_id: get("dictionary-id"),
        accept_encoding: get("accept-encoding"),
        cookie: get("cookie"),
        content_encoding: None,
        body_bytes: 0,
    };
    let pages = st.pages.lock().unwrap();
    let Some(page) = pages.get(&seen.path) else {
        st.log.lock().unwrap().push(seen);
        let mut r = Response::new(Full::new(Bytes::from_static(b"not found\n")));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    };
    let mut body = page.body.clone();
    let mut versions = st.versions.lock().unwrap();
    versions.insert(sha256(&body), body.clone());
    let mode = st.mode.lock().unwrap().unwrap_or(Mode::Normal);
    let accepts = seen.accept_encoding.as_deref().is_some_and(|a| a.split(',').any(|c| c.trim() == "dcz"));
    let named = seen.available.as_deref().and_then(|v| {
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD.decode(v.trim_matches(':')).ok()?;
        Hash::try_from(raw).ok()
    });
    // Some version other than the page itself and the named one.
    let other = || versions.iter().find(|(k, _)| Some(**k) != named && **k != sha256(&page.body)).map(|(_, v)| v.clone());
    let dcz_body = match (mode, named.and_then(|n| versions.get(&n).cloned())) {
        (Mode::AlwaysUnoffered, _) => other().map(|d| encode(&d, &body)),
        (_, None) => None,
        (_, Some(_)) if !accepts => None,
        (Mode::Normal, Some(d)) => Some(encode(&d, &body)),
        (Mode::Unoffered, Some(_)) => other().map(|d| encode(&d, &body)),
        (Mode::Corrupt, Some(d)) => {
            let mut e = encode(&d, &body);
            let n = e.len();
            e[n - 6] ^= 0x40;
            Some(e)
        }
        (Mode::WrongDictionary, Some(d)) => other().map(|o| {
            let mut e = encode(&o, &body);
            e[8..40].copy_from_slice(&sha256(&d));
            e
        }),
    };
    if let Some(z) = dcz_body {
        body = z;
        seen.content_encoding = Some("dcz".into());
    }
    seen.body_bytes = body.len();
    st.log.lock().unwrap().push(seen.clone());
    let mut r = Response::new(Full::new(Bytes::from(body)));
    for (k, v) in &page.headers {
        r.headers_mut().append(header::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    if seen.content_encoding.is_some() {
        r.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("dcz"));
    }
    r.headers_mut().append(header::VARY, HeaderValue::from_static("Accept-Encoding, Available-Dictionary"));
    r
}

fn fetcher_with(dir: &std::path::Path, opts: FetchOptions) -> Fetcher {
    Fetcher::new(Arc::new(DiskCache::open(dir, 1 << 30).unwrap()), FetchOptions { timeout: Duration::from_secs(5), ..opts })
}

fn fetcher(dir: &std::path::Path) -> Fetcher {
    fetcher_with(dir, FetchOptions::default())
}

fn get_with(f: &Fetcher, url: &str, h: &[(&str, &str)]) -> Result<Arc<Outcome>, String> {
    let mut headers = HeaderMap::new();
    for (k, v) in h {
        headers.append(header::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    rt().block_on(f.fetch(&url.parse().unwrap(), &headers, None)).map_err(|e| e.message.clone())
}

fn get(f: &Fetcher, url: &str) -> Arc<Outcome> {
    get_with(f, url, &[]).unwrap_or_else(|e| panic!("{url}: {e}"))
}

#[track_caller]
fn assert_body(o: &Outcome, want: &[u8], what: &str) {
    assert_eq!(o.status, 200, "{what}");
    assert!(o.body[..] == want[..], "{what}: {} bytes, want {}", o.body.len(), want.len());
    assert!(o.headers.get(header::CONTENT_ENCODING).is_none(), "{what}: served identity");
    assert_eq!(o.headers.get(header::CONTENT_LENGTH).unwrap().to_str().unwrap(), want.len().to_string(), "{what}");
}

fn blog() -> Vec<Vec<u8>> {
    versions("blog-home")
}

const DICT_FRESH: &str = "public, max-age=3600";

#[test]
fn fresh_dictionary_is_learnt_then_used_for_dcz() {
    let s = Versioned::start();
    let v = blog();
    s.page("/app/v1.html", &v[0], &[("cache-control", DICT_FRESH), ("use-as-dictionary", "match=\"/app/*\", id=\"blog-1\"")]);
    s.page("/app/v2.html", &v[1], &[("cache-control", "no-cache")]);
    let dir = tempfile::tempdir().unwrap();
    let f = fetcher(dir.path());
    let o = get(&f, &s.url("/app/v1.html"));
    assert_body(&o, &v[0], "the dictionary itself");
    assert_eq!(s.last().available, None, "nothing to offer yet");
    let d = f.dicts.as_ref().unwrap();
    assert_eq!(d.totals(), (1, v[0].len() as u64));

    let o = get(&f, &s.url("/app/v2.html"));
    let seen = s.last();
    assert_eq!(seen.available.as_deref(), Some(b64(&sha256(&v[0])).as_str()));
    assert_eq!(seen.dictionary_id.as_deref(), Some("\"blog-1\""));
    assert_eq!(seen.accept_encoding.as_deref(), Some("dcz, gzip"));
    assert_eq!(o.source, Source::Dcz);
    assert_body(&o, &v[1], "dcz against the dictionary");
    assert_eq!(o.dictionary_used.as_deref(), Some(hsync_core::store::hex(&sha256(&v[0])).as_str()));
    assert!(o.wire_bytes * 10 < v[1].len() as u64, "{} on the wire for {}", o.wire_bytes, v[1].len());
    // What is cached is the page itself, served identity next time.
    assert!(f.cache.get(&s.url("/app/v2.html")).unwrap().body[..] == v[1][..]);
    assert_eq!(f.stats.dcz_responses.load(std::sync::atomic::Ordering::Relaxed), 1);
    let line = hsync_client::cli::coding_line(&o).unwrap();
    assert!(line.starts_with(&format!("dcz: {} of {} bytes", o.wire_bytes, v[1].len())), "{line}");

    // The same dictionary again (refetched): still one, still offered, nothing counted as damaged.
    get_with(&f, &s.url("/app/v1.html"), &[("cache-control", "no-cache")]).unwrap();
    assert_eq!(d.totals().0, 1);
    s.page("/app/v3.html", &v[2], &[]);
    assert_eq!(get(&f, &s.url("/app/v3.html")).source, Source::Dcz);
    assert_eq!(d.damaged.load(std::sync::atomic::Ordering::Relaxed), 0);

    // A URL the pattern does not match gets no offer.
    s.page("/other.html", &v[2], &[]);
    get(&f, &s.url("/other.html"));
    assert_eq!(s.last().available, None);
    assert_eq!(s.last().accept_encoding.as_deref(), Some("gzip"));
}

#[test]
fn bytes_dcz_hsync_and_full_over_corpus_pairs() {
    // Each pair of successive versions: dcz against the previous version (the
    // in-test server), an hsync delta against it (the in-process hsync
    // origin), and the identity size.
    let s = Versioned::start();
    let origin = Origin::start_local(true);
    let (dir, dir2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (f, f2) = (fetcher(dir.path()), fetcher(dir2.path()));
    let mut sum = (0u64, 0u64, 0u64, 0usize);
    for (folder, n) in [("blog-home", 10), ("atom-feed", 10), ("pages/cnn", 2), ("pages/igvita", 2), ("pages/wikipedia-obama", 2)] {
        let vs = versions(folder);
        let tag = folder.replace('/', "-");
        let (mut dz, mut hs, mut full) = (0u64, 0u64, 0u64);
        for i in 0..vs.len().min(n) {
            let hp = format!("/{tag}.html");
            origin.set_page(&hp, &vs[i]);
            let o = get(&f2, &origin.url(&hp));
            assert_body(&o, &vs[i], folder);
            if i == 0 {
                continue;
            }
            assert!(matches!(o.source, Source::Delta | Source::Revalidated), "{folder} {i}: {:?}", o.source);
            let um = format!("match=\"/m/{tag}/*\"");
            s.page(&format!("/m/{tag}/d{i}"), &vs[i - 1], &[("cache-control", DICT_FRESH), ("use-as-dictionary", &um)]);
            get(&f, &s.url(&format!("/m/{tag}/d{i}")));
            s.page(&format!("/m/{tag}/p{i}"), &vs[i], &[]);
            let o2 = get(&f, &s.url(&format!("/m/{tag}/p{i}")));
            assert_eq!(o2.source, Source::Dcz, "{folder} {i}");
            assert_body(&o2, &vs[i], folder);
            dz += o2.wire_bytes;
            hs += o.wire_bytes;
            full += vs[i].len() as u64;
            sum.3 += 1;
        }
        eprintln!("{folder}: {full} bytes of new versions; dcz {dz} on the wire, hsync {hs}");
        sum = (sum.0 + dz, sum.1 + hs, sum.2 + full, sum.3);
        assert!(dz * 4 < full, "{folder}: dcz {dz} for {full}");
    }
    eprintln!(
        "{} pairs, {} bytes: dcz {} on the wire ({:.2}%), hsync {} ({:.2}%)",
        sum.3,
        sum.2,
        sum.0,
        100.0 * sum.0 as f64 / sum.2 as f64,
        sum.1,
        100.0 * sum.1 as f64 / sum.2 as f64
    );
}

#[test]
fn link_header_dictionary_is_fetched_once_and_used() {
    let s = Versioned::start();
    let v = blog();
    let dict_path = format!("/.well-known/hsync/dictionary/{}", hsync_core::store::hex(&sha256(&v[0])));
    s.page(&dict_path, &v[0], &[("cache-control", "public, max-age=31536000, immutable"), ("use-as-dictionary", "match=\"/news\"")]);
    let link = format!("<{dict_path}>; rel=\"compression-dictionary\"");
    s.page("/news", &v[1], &[("cache-control", "no-cache"), ("link", "</style.css>; rel=preload"), ("link", &link)]);
    let dir = tempfile::tempdir().unwrap();
    let f = fetcher(dir.path());
    let o = get(&f, &s.url("/news"));
    assert_body(&o, &v[1], "first");
    assert_eq!(o.dictionary_links, vec![s.url(&dict_path)]);
    let learnt = rt().block_on(f.fetch_dictionaries(&o));
    assert_eq!(learnt, vec![(s.url(&dict_path), Ok(v[0].len() as u64))]);
    // Once: the same link is not fetched again.
    let n = s.log().len();
    assert!(rt().block_on(f.fetch_dictionaries(&o)).is_empty());
    assert_eq!(s.log().len(), n);

    s.page("/news", &v[2], &[("cache-control", "no-cache"), ("link", &link)]);
    let o = get(&f, &s.url("/news"));
    assert_eq!(o.source, Source::Dcz, "{:?}", o.delta_failed);
    assert_body(&o, &v[2], "dcz after a Link");
    assert!(o.dictionary_links.is_empty(), "already held");
    let seen = s.last();
    assert_eq!(seen.available.as_deref(), Some(b64(&sha256(&v[0])).as_str()));
    assert_eq!(seen.dictionary_id, None);
    // The cached copy's signature goes along with the dictionary.
    assert_eq!(seen.accept_encoding.as_deref(), Some("dcz, hsync, gzip"));
}

#[test]
fn announced_version_already_held_costs_a_head_only() {
    // As the hsync modules do: each response announces the previous version
    // under /.well-known/hsync/dictionary/<sha-256>, which the client holds.
    let s = Versioned::start();
    let v = blog();
    let dir = tempfile::tempdir().unwrap();
    let f = fetcher(dir.path());
    let mut total = 0;
    for i in 0..6 {
        let mut h = vec![("cache-control".to_string(), "no-cache".to_string())];
        if i > 0 {
            let hex = hsync_core::store::hex(&sha256(&v[i - 1]));
            let dict = format!("/.well-known/hsync/dictionary/{hex}");
            s.page(&dict, &v[i - 1], &[("cache-control", "public, max-age=31536000, immutable"), ("use-as-dictionary", "match=\"/news\"")]);
            h.push(("link".into(), format!("<{dict}>; rel=\"compression-dictionary\"")));
        }
        let hr: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        s.page("/news", &v[i], &hr);
        let o = get(&f, &s.url("/news"));
        assert_body(&o, &v[i], &format!("version {i}"));
        if i >= 2 {
            assert_eq!(o.source, Source::Dcz, "version {i}");
            total += o.wire_bytes;
        }
        if i > 0 {
            assert_eq!(o.dictionary_held.len(), 1, "version {i}: the previous copy is the announced dictionary");
            let n = s.log().len();
            let learnt = rt().block_on(f.fetch_dictionaries(&o));
            assert_eq!(learnt[0].1, Ok(v[i - 1].len() as u64));
            let log = s.log();
            assert_eq!(log.len(), n + 1);
            assert_eq!(log[n].method, "HEAD", "only the headers of a dictionary we hold");
        }
    }
    eprintln!("blog-home versions 3-6 as dcz: {total} bytes on the wire");
    // The dictionaries replaced one another (same origin, match and destination).
    assert_eq!(f.dicts.as_ref().unwrap().totals().0, 1);
}

#[test]
fn html_link_element_dictionary_is_learnt() {
    let s = Versioned::start();
    let v = blog();
    s.page("/dict/a", &v[0], &[("cache-control", "max-age=600"), ("use-as-dictionary", "match=\"/blog/*\", match-dest=(\"document\")")]);
    let page = |b: &[u8]| {
        let mut p = b"<!doctype html><html><head><link rel=\"compression-dictionary\" href=\"../dict/a\">".to_vec();
        p.extend_from_slice(b);
        p
    };
    let html = [("cache-control", "no-cache"), ("content-type", "text/html; charset=utf-8")];
    s.page("/blog/index.html", &page(&v[1]), &html);
    let dir = tempfile::tempdir().unwrap();
    let f = fetcher(dir.path());
    let o = get(&f, &s.url("/blog/index.html"));
    assert_eq!(o.dictionary_links, vec![s.url("/dict/a")], "resolved against the page");
    assert!(rt().block_on(f.fetch_dictionaries(&o))[0].1.is_ok());
    s.page("/blog/index.html", &page(&v[2]), &html);
    let o = get(&f, &s.url("/blog/index.html"));
    assert_eq!(o.source, Source::Dcz);
    assert_body(&o, &page(&v[2]), "dcz after a <link>");
    // match-dest: a request for a script does not get the document's dictionary.
    s.page("/blog/app.js", &v[3], &[]);
    get_with(&f, &s.url("/blog/app.js"), &[("sec-fetch-dest", "script")]).unwrap();
    assert_eq!(s.last().available, None);
    get_with(&f, &s.url("/blog/app.js?x=1"), &[]).unwrap();
    assert!(s.last().available.is_some(), "no Sec-Fetch-Dest: a document");
}

#[test]
fn cross_origin_match_and_links_are_ignored() {
    let a = Versioned::start();
    let b = Versioned::start();
    let v = blog();
    let cross = format!("match=\"http://{}/*\"", b.addr);
    a.page("/x.html", &v[0], &[("cache-control", DICT_FRESH), ("use-as-dictionary", &cross)]);
    let link = format!("<http://{}/dict>; rel=\"compression-dictionary\"", b.addr);
    a.page("/y.html", &v[1], &[("cache-control", DICT_FRESH), ("use-as-dictionary", "match=\"/*\""), ("link", &link)]);
    b.page("/dict", &v[2], &[("cache-control", DICT_FRESH), ("use-as-dictionary", "match=\"/*\"")]);
    b.page("/z.html", &v[3], &[]);
    let dir = tempfile::tempdir().unwrap();
    let f = fetcher(dir.path());
    get(&f, &a.url("/x.html"));
    assert_eq!(f.dicts.as_ref().unwrap().totals().0, 0, "a match on another origin is not stored");
    let o = get(&f, &a.url("/y.html"));
    assert!(o.dictionary_links.is_empty(), "a dictionary on another origin is not fetched");
    assert_eq!(f.dicts.as_ref().unwrap().totals().0, 1);
    // A's "/*" dictionary is never offered to B.
    get(&f, &b.url("/z.html"));
    assert_eq!(b.last().available, None);
    // A itself gets it.
    a.page("/w.html", &v[3], &[]);
    assert_eq!(get(&f, &a.url("/w.html")).source, Source::Dcz);
}

#[test]
fn stale_or_unstorable_dictionaries_are_not_offered() {
    let s = Versioned::start();
    let v = blog();
    s.page("/s/dict", &v[0], &[("cache-control", "max-age=1"), ("use-as-dictionary", "match=\"/s/*\"")]);
    s.page("/n/dict", &v[0], &[("cache-control", "no-store, max-age=600"), ("use-as-dictionary", "match=\"/n/*\"")]);
    s.page("/z/dict", &v[0], &[("cache-control", "max-age=0"), ("use-as-dictionary", "match=\"/z/*\"")]);
    for p in ["/s/page", "/n/page", "/z/page"] {
        s.page(p, &v[1], &[]);
    }
    let dir = tempfile::tempdir().unwrap();
    let f = fetcher(dir.path());
    for p in ["/s/dict", "/n/dict", "/z/dict"] {
        get(&f, &s.url(p));
    }
    assert_eq!(f.dicts.as_ref().unwrap().totals().0, 1, "no-store and max-age=0 are not remembered");
    get(&f, &s.url("/s/page"));
    assert!(s.last().available.is_some(), "fresh: offered");
    std::thread::sleep(Duration::from_millis(2100));
    for p in ["/s/page", "/n/page", "/z/page"] {
        let o = get_with(&f, &s.url(p), &[("cache-control", "no-cache")]).unwrap();
        assert_body(&o, &v[1], p);
        assert_eq!(s.last().available, None, "{p}");
    }
}

#[test]
fn bad_dcz_answers_are_refetched_never_delivered() {
    let v = blog();
    for mode in [Mode::Unoffered, Mode::Corrupt, Mode::WrongDictionary] {
        let s = Versioned::start();
        s.keep(&v[5]);
        s.page("/app/d", &v[0], &[("cache-control", DICT_FRESH), ("use-as-dictionary", "match=\"/app/*\"")]);
        s.page("/app/p", &v[1], &[]);
        let dir = tempfile::tempdir().unwrap();
        let f = fetcher(dir.path());
        get(&f, &s.url("/app/d"));
        s.mode(mode);
        let n = s.log().len();
        let o = get(&f, &s.url("/app/p"));
        assert_body(&o, &v[1], &format!("{mode:?}"));
        assert_eq!(o.source, Source::Full, "{mode:?}");
        assert!(o.delta_failed.is_some(), "{mode:?}");
        eprintln!("{mode:?}: {}", o.delta_failed.as_deref().unwrap());
        let log = s.log();
        assert_eq!(log.len(), n + 2, "{mode:?}: one bad answer, one plain refetch");
        assert_eq!(log[n].content_encoding.as_deref(), Some("dcz"));
        assert!(log[n].available.is_some());
        assert_eq!(log[n + 1].available, None, "{mode:?}: the refetch offers nothing");
        assert_eq!(log[n + 1].content_encoding, None);
        // The dictionary was not to blame: it stays.
        assert_eq!(f.dicts.as_ref().unwrap().totals().0, 1);
    }
    // A server sending dcz to a request that offered nothing: a clear error, no bytes.
    let s = Versioned::start();
    s.keep(&v[5]);
    s.page("/q", &v[1], &[]);
    s.mode(Mode::AlwaysUnoffered);
    let dir = tempfile::tempdir().unwrap();
    let f = fetcher(dir.path());
    let r = get_with(&f, &s.url("/q"), &[]);
    assert!(r.as_ref().is_err_and(|e| e.contains("offered no dictionary")), "{:?}", r.map(|o| o.body.len()));
    assert!(f.cache.get(&s.url("/q")).is_none());
    // And with dictionaries off the same.
    let f = fetcher_with(tempfile::tempdir().unwrap().path(), FetchOptions { dictionary: None, ..Default::default() });
    assert!(get_with(&f, &s.url("/q"), &[]).is_err());
}

#[test]
fn no_dictionary_option_neither_learns_nor_offers() {
    let s = Versioned::start();
    let v = blog();
    s.page("/app/d", &v[0], &[("cache-control", DICT_FRESH), ("use-as-dictionary", "match=\"/app/*\"")]);
    s.page("/app/p", &v[1], &[]);
    let dir = tempfile::tempdir().unwrap();
    let f = fetcher_with(dir.path(), FetchOptions { dictionary: None, ..Default::default() });
    get(&f, &s.url("/app/d"));
    let o = get(&f, &s.url("/app/p"));
    assert_eq!(o.source, Source::Full);
    assert_eq!(s.last().available, None);
    assert_eq!(s.last().accept_encoding.as_deref(), Some("gzip"));
    assert!(!dir.path().join("dictionaries").exists());
}

#[test]
fn damaged_dictionary_file_is_dropped() {
    let s = Versioned::start();
    let v = blog();
    s.page("/app/d", &v[0], &[("cache-control", DICT_FRESH), ("use-as-dictionary", "match=\"/app/*\"")]);
    s.page("/app/p", &v[1], &[]);
    let dir = tempfile::tempdir().unwrap();
    let f = fetcher(dir.path());
    get(&f, &s.url("/app/d"));
    let d = f.dicts.clone().unwrap();
    let path = d.path_for(&s.url("/app/d"));
    let mut data = std::fs::read(&path).unwrap();
    data[100] ^= 1;
    std::fs::write(&path, &data).unwrap();
    let o = get(&f, &s.url("/app/p"));
    assert_body(&o, &v[1], "after damage");
    assert_eq!(s.last().available, None, "a damaged dictionary is not offered");
    assert_eq!(d.totals().0, 0);
    assert_eq!(d.damaged.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(!path.exists());

    // Found at start-up (a truncated file): dropped; an intact one survives a restart.
    get_with(&f, &s.url("/app/d"), &[("cache-control", "no-cache")]).unwrap();
    s.page("/other/d", &v[2], &[("cache-control", DICT_FRESH), ("use-as-dictionary", "match=\"/other/*\"")]);
    get(&f, &s.url("/other/d"));
    assert_eq!(d.totals().0, 2);
    let p2 = d.path_for(&s.url("/other/d"));
    let data = std::fs::read(&p2).unwrap();
    std::fs::write(&p2, &data[..data.len() - 3]).unwrap();
    drop(f);
    let f = fetcher(dir.path());
    let d = f.dicts.clone().unwrap();
    assert_eq!(d.totals(), (1, v[0].len() as u64));
    assert!(!p2.exists());
    assert_eq!(get(&f, &s.url("/app/p")).source, Source::Dcz, "the intact one is used after the restart");
}

#[test]
fn dictionary_memory_is_bounded_under_churn() {
    let s = Versioned::start();
    let v = blog();
    let dir = tempfile::tempdir().unwrap();
    let max_bytes = (v[0].len() * 3) as u64 + 1000;
    let opts =
        FetchOptions { dictionary: Some(DictOptions { max_bytes, max_count: 4, max_one: v[0].len() as u64 * 2 }), ..Default::default() };
    let f = fetcher_with(dir.path(), opts.clone());
    for i in 0..30 {
        let body = &v[i % v.len()];
        let um = format!("match=\"/c/{i}/*\"");
        s.page(&format!("/c/{i}/d"), body, &[("cache-control", DICT_FRESH), ("use-as-dictionary", &um)]);
        get(&f, &s.url(&format!("/c/{i}/d")));
        let (n, bytes) = f.dicts.as_ref().unwrap().totals();
        assert!(n <= 4 && bytes <= max_bytes, "{i}: {n} dictionaries, {bytes} bytes");
        let files = std::fs::read_dir(dir.path().join("dictionaries")).unwrap().count();
        assert!(files <= 4, "{i}: {files} files");
    }
    // The most recent ones are kept; an old one is not offered any more.
    s.page("/c/29/p", &v[0], &[]);
    s.page("/c/0/p", &v[0], &[]);
    get(&f, &s.url("/c/29/p"));
    assert!(s.last().available.is_some());
    get(&f, &s.url("/c/0/p"));
    assert!(s.last().available.is_none());
    // Too large for one dictionary: not kept.
    let big = v.iter().take(3).flatten().copied().collect::<Vec<u8>>();
    s.page("/big/d", &big, &[("cache-control", DICT_FRESH), ("use-as-dictionary", "match=\"/big/*\"")]);
    get(&f, &s.url("/big/d"));
    assert!(f.dicts.as_ref().unwrap().list().iter().all(|l| !l.url.ends_with("/big/d")));
    // The same pattern again replaces the older dictionary instead of piling up.
    let st = DictStore::open(dir.path().join("dictionaries"), opts.dictionary.unwrap()).unwrap();
    assert!(st.totals().0 <= 4);
}

// ------------------------------------------------------------------ proxy

struct InProc {
    addr: SocketAddr,
    fetcher: Arc<Fetcher>,
    _h: tokio::task::JoinHandle<()>,
}

fn proxy_with(dir: &std::path::Path, shared: bool) -> InProc {
    let cache = Arc::new(DiskCache::open(dir, 1 << 30).unwrap());
    let timeout = Duration::from_secs(5);
    let fetcher = Arc::new(Fetcher::new(cache, FetchOptions { shared, timeout, ..Default::default() }));
    let (addr, h) = rt().block_on(proxy::spawn("127.0.0.1:0", fetcher.clone(), ProxyConfig { timeout, ..Default::default() })).unwrap();
    InProc { addr, fetcher, _h: h }
}

fn wait_for(mut f: impl FnMut() -> bool) {
    for _ in 0..100 {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting");
}

#[test]
fn shared_proxy_never_offers_one_users_dictionary_to_another() {
    let s = Versioned::start();
    let v = blog();
    let dir = tempfile::tempdir().unwrap();
    let p = proxy_with(dir.path(), true);
    let dicts = p.fetcher.dicts.clone().unwrap();
    // Alice (with a cookie) receives a dictionary: not remembered.
    s.page("/a/d", &v[0], &[("cache-control", DICT_FRESH), ("use-as-dictionary", "match=\"/a/*\"")]);
    let r = raw_get(p.addr, &s.url("/a/d"), &[("Cookie", "session=alice")]).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(s.last().cookie.as_deref(), Some("session=alice"));
    assert_eq!(dicts.totals().0, 0, "a response to a request with Cookie is not a dictionary for a shared proxy");
    // Nor a private response, nor one that sets a cookie (to Bob, without a cookie).
    s.page("/p/d", &v[0], &[("cache-control", "private, max-age=600"), ("use-as-dictionary", "match=\"/p/*\"")]);
    s.page("/c/d", &v[0], &[("cache-control", DICT_FRESH), ("set-cookie", "x=1"), ("use-as-dictionary", "match=\"/c/*\"")]);
    raw_get(p.addr, &s.url("/p/d"), &[]).unwrap();
    raw_get(p.addr, &s.url("/c/d"), &[]).unwrap();
    assert_eq!(dicts.totals().0, 0);
    // Bob's page under /a/ gets no offer.
    s.page("/a/page", &v[1], &[]);
    let r = raw_get(p.addr, &s.url("/a/page"), &[]).unwrap();
    assert!(r.body == v[1]);
    assert_eq!(s.last().available, None);

    // Bob receives a dictionary without a cookie: remembered, offered to Bob's requests...
    s.page("/b/d", &v[0], &[("cache-control", DICT_FRESH), ("use-as-dictionary", "match=\"/b/*\"")]);
    raw_get(p.addr, &s.url("/b/d"), &[]).unwrap();
    assert_eq!(dicts.totals().0, 1);
    s.page("/b/page", &v[1], &[]);
    let r = raw_get(p.addr, &s.url("/b/page"), &[]).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body == v[1], "served identity");
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("x-hsync-cache"), Some("DCZ"));
    assert_eq!(s.last().content_encoding.as_deref(), Some("dcz"));
    // ...and never on a request carrying Cookie or Authorization.
    s.page("/b/page2", &v[2], &[]);
    for h in [("Cookie", "session=alice"), ("Authorization", "Basic YTpi")] {
        let r = raw_get(p.addr, &s.url("/b/page2"), &[h]).unwrap();
        assert!(r.body == v[2]);
        assert_eq!(s.last().available, None, "{h:?}");
    }
    // The status page counts dcz.
    let st = raw_get(p.addr, "http://hsync.proxy/status.json", &[]).unwrap();
    let j: serde_json::Value = serde_json::from_slice(&st.body).unwrap();
    assert_eq!(j["dcz_responses"], 1);
    assert_eq!(j["dictionaries"], 1);
    let page = raw_get(p.addr, "http://hsync.proxy/", &[]).unwrap();
    assert!(String::from_utf8_lossy(&page.body).contains("dcz responses"));
}

#[test]
fn one_user_proxy_remembers_private_dictionaries() {
    let s = Versioned::start();
    let v = blog();
    let dir = tempfile::tempdir().unwrap();
    let p = proxy_with(dir.path(), false);
    s.page("/a/d", &v[0], &[("cache-control", "private, max-age=600"), ("use-as-dictionary", "match=\"/a/*\"")]);
    raw_get(p.addr, &s.url("/a/d"), &[("Cookie", "session=me")]).unwrap();
    s.page("/a/page", &v[1], &[]);
    let r = raw_get(p.addr, &s.url("/a/page"), &[("Cookie", "session=me")]).unwrap();
    assert!(r.body == v[1]);
    assert_eq!(s.last().content_encoding.as_deref(), Some("dcz"));
    // A dictionary stored by the one-user proxy is not used by a shared proxy on the same directory.
    drop(p);
    let p = proxy_with(dir.path(), true);
    s.page("/a/page2", &v[2], &[]);
    raw_get(p.addr, &s.url("/a/page2"), &[]).unwrap();
    assert_eq!(s.last().available, None);
}

#[test]
fn proxy_strips_the_clients_dictionary_and_serves_identity() {
    let s = Versioned::start();
    let v = blog();
    let dir = tempfile::tempdir().unwrap();
    let p = proxy_with(dir.path(), true);
    s.keep(&v[0]);
    s.page("/x", &v[1], &[]);
    // The browser names a dictionary it holds (and that the server has): the proxy does not pass it on.
    let r = raw_get(
        p.addr,
        &s.url("/x"),
        &[("Accept-Encoding", "dcz, br, gzip"), ("Available-Dictionary", &b64(&sha256(&v[0]))), ("Dictionary-ID", "\"x\"")],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body == v[1]);
    assert_eq!(r.header("content-encoding"), None);
    let seen = s.last();
    assert_eq!((seen.available, seen.dictionary_id, seen.content_encoding), (None, None, None));
    assert_eq!(seen.accept_encoding.as_deref(), Some("gzip"));
}

#[test]
fn proxy_learns_announced_dictionaries_in_the_background() {
    let s = Versioned::start();
    let v = blog();
    let dir = tempfile::tempdir().unwrap();
    let p = proxy_with(dir.path(), true);
    s.page("/dict/n", &v[0], &[("cache-control", "public, max-age=31536000"), ("use-as-dictionary", "match=\"/news\"")]);
    s.page("/news", &v[1], &[("cache-control", "no-cache"), ("link", "</dict/n>; rel=\"compression-dictionary\"")]);
    let r = raw_get(p.addr, &s.url("/news"), &[]).unwrap();
    assert!(r.body == v[1]);
    let dicts = p.fetcher.dicts.clone().unwrap();
    wait_for(|| dicts.totals().0 == 1);
    s.page("/news", &v[2], &[("cache-control", "no-cache"), ("link", "</dict/n>; rel=\"compression-dictionary\"")]);
    let r = raw_get(p.addr, &s.url("/news"), &[]).unwrap();
    assert!(r.body == v[2]);
    assert_eq!(r.header("x-hsync-cache"), Some("DCZ"));
    assert_eq!(s.log().iter().filter(|l| l.path == "/dict/n").count(), 1, "fetched once");
}

#[test]
fn hsync_get_learns_and_uses_dictionaries() {
    let s = Versioned::start();
    let v = blog();
    s.page("/dict/n", &v[0], &[("cache-control", "public, max-age=31536000"), ("use-as-dictionary", "match=\"/news\"")]);
    s.page("/news", &v[1], &[("cache-control", "no-cache"), ("link", "</dict/n>; rel=\"compression-dictionary\"")]);
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let run = |no_dictionary: bool| {
        let args = hsync_client::cli::GetArgs {
            url: s.url("/news"),
            output: Some(out.path().join("news")),
            cache: Some(cache.path().to_path_buf()),
            headers: vec![],
            verbose: true,
            timeout: 5.0,
            max_size: 1 << 30,
            no_hsync: false,
            no_dictionary,
            cacert: vec![],
        };
        assert_eq!(hsync_client::cli::get(args), std::process::ExitCode::SUCCESS);
        std::fs::read(out.path().join("news")).unwrap()
    };
    assert!(run(false) == v[1]);
    assert_eq!(s.last().path, "/dict/n", "fetched after the page");
    s.page("/news", &v[2], &[("cache-control", "no-cache")]);
    assert!(run(true) == v[2]);
    assert_eq!(s.last().available, None, "--no-dictionary");
    s.page("/news", &v[3], &[("cache-control", "no-cache")]);
    assert!(run(false) == v[3]);
    assert_eq!(s.last().content_encoding.as_deref(), Some("dcz"));
}
