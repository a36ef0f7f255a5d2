//! The one decision a server makes per response, and every header edit
//! that follows from it. The shims hand over the request and response
//! header fields (all lines of repeated ones) when the response headers are
//! ready, and apply the edits returned: they write nothing about Vary, ETag,
//! Content-Length, Accept-Ranges, digests or the coding name themselves.

use super::dictionary::{self as dict, DictConfig, DCZ};
use super::fields::{self, Field};
use super::{accepts, decode_signature_header, Decline, ServerConfig, ENCODING, SIGNATURE_HEADER, VARY_NAMES};
use crate::codec::dcz::Prepared;
use crate::signature::Signature;
use crate::store::{Hash, Meta};
use std::sync::Arc;

/// What the server knows when the response headers are ready.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    pub method: &'a [u8],
    /// The request target (path and query), as the client sent it.
    pub uri: &'a [u8],
    /// The request's header fields, every line.
    pub request: &'a [Field<'a>],
    pub status: u32,
    /// The response's header fields, every line.
    pub response: &'a [Field<'a>],
    /// The response's length when the server knows it outside the fields
    /// (nginx's `content_length_n`); otherwise a `Content-Length` field is
    /// read, and without either the length is unknown (streamed).
    pub content_length: Option<u64>,
}

/// A change to the response's header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Replace every line of the field with this one (add it if absent).
    Set(&'static str, String),
    /// Add one line, keeping the field's other lines (`Link`).
    Append(&'static str, String),
    /// Remove every line of the field.
    Remove(&'static str),
}

impl Edit {
    pub fn name(&self) -> &'static str {
        match self {
            Edit::Set(n, _) | Edit::Append(n, _) | Edit::Remove(n) => n,
        }
    }
}

/// How the body of an engaged response is coded.
#[derive(Clone)]
pub enum Coding {
    /// An hsync delta against the client's signature.
    Hsync(Signature),
    /// dcz against a stored version the client holds.
    Dcz(Arc<Prepared>),
    /// As it is (the body is engaged only to be stored or to get a link).
    Identity,
}

impl Coding {
    /// The content-coding token, `""` for identity.
    pub fn name(&self) -> &'static str {
        match self {
            Coding::Hsync(_) => ENCODING,
            Coding::Dcz(_) => DCZ,
            Coding::Identity => "",
        }
    }
}

impl std::fmt::Debug for Coding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Coding::Hsync(s) => write!(f, "Hsync({} blocks)", s.block_count()),
            Coding::Dcz(p) => write!(f, "Dcz({})", crate::store::hex(&p.hash)),
            Coding::Identity => write!(f, "Identity"),
        }
    }
}

impl PartialEq for Coding {
    fn eq(&self, o: &Coding) -> bool {
        match (self, o) {
            (Coding::Hsync(a), Coding::Hsync(b)) => a == b,
            (Coding::Dcz(a), Coding::Dcz(b)) => a.hash == b.hash,
            (Coding::Identity, Coding::Identity) => true,
            _ => false,
        }
    }
}

/// What an engaged response's body goes through: an element inserted into
/// its head, then (a copy) into the version store, then the coding.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub coding: Coding,
    /// An element to insert after the page's `<head>` tag.
    pub insert: Option<String>,
    /// Store the body as a version of this key (the request target).
    pub store: Option<(String, Meta)>,
}

/// The response's body is engaged (see [`Plan`]), or sent as it is.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Engage(Plan),
    Leave(Decline),
}

/// The decision for one response: engage or not, and the header edits to
/// apply either way (a response left alone may still need `Vary`, a 304 or
/// a HEAD the validators an hsync response would have had).
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub outcome: Outcome,
    pub edits: Vec<Edit>,
}

impl Decision {
    /// The coding of an engaged response (`None` when left alone).
    pub fn coding(&self) -> Option<&Coding> {
        match &self.outcome {
            Outcome::Engage(p) => Some(&p.coding),
            Outcome::Leave(_) => None,
        }
    }
}

/// Response fields that describe the bytes of the identity body and are
/// wrong once it is recoded (RFC 9530 digests, the obsolete Content-MD5,
/// the length) or no longer apply (ranges of a body that is now a delta).
const RECODED_AWAY: [&str; 6] = ["Content-Length", "Accept-Ranges", "Content-Digest", "Repr-Digest", "Digest", "Content-MD5"];

/// The version a request names in `Available-Dictionary`, when the store
/// holds it and it is younger than [`dict::KEEP_LINKED`]: a page that is
/// not fresh keeps linking it rather than the latest version, so that a
/// browser coming back with it does not fetch a new dictionary at idle
/// after every change of the page (which would cost it a whole page per
/// visit, more than the delta saves). Older ones give way to the latest,
/// so the deltas do not grow as the page drifts.
fn kept_dictionary(dc: &DictConfig, x: &Exchange<'_>) -> Option<Hash> {
    let h = dict::available_dictionary(x.request)?;
    dc.store.age(&h).filter(|age| *age < dict::KEEP_LINKED).map(|_| h)
}

/// Decides for one response: see the module documentation and
/// docs/protocol.md §2.2–2.3 (and §7 for dictionaries).
///
/// - A response no coding could apply to, whatever the request (not 200
///   or 304, already coded, `no-transform`, shorter than the minimum) is
///   left alone, untouched.
/// - Otherwise the coding depends on the request's `Accept-Encoding` and
///   `Hsync-Signature` (and `Available-Dictionary` with dictionaries), so
///   the response names them in `Vary` (unless `cfg.vary` is off), whether
///   a coding is applied or not.
/// - With dictionaries (`dict`), a storable GET response is kept in the
///   version store and announces a dictionary (see [`dict`]); a request
///   that names a stored version and accepts `dcz` gets `dcz`, which wins
///   over hsync.
/// - A 304 to a request that would have been coded carries the ETag the
///   coded response would have had (weak) and its Vary (RFC 9110 §15.4.5);
///   a HEAD response carries every header field of the coded GET (§9.3.2).
/// - A GET for a 200 response with a usable signature (or dictionary) and
///   no Range is engaged: the coding's name, the `Vary`, a weak `ETag`,
///   and the fields that described the identity bytes removed.
pub fn decide(cfg: &ServerConfig, dc: Option<&DictConfig>, x: &Exchange<'_>) -> Decision {
    let leave = |d: Decline, edits: Vec<Edit>| Decision { outcome: Outcome::Leave(d), edits };
    if let Err(d) = representation_qualifies(cfg, x) {
        return leave(d, Vec::new());
    }
    let method = x.method;
    let head = method == b"HEAD";
    if method != b"GET" && !head {
        return leave(Decline::Method, Vec::new());
    }
    let mut edits = Vec::new();
    let vary = merged_vary(x.response, dc.is_some());
    if cfg.vary {
        edits.extend(vary.clone());
    }
    let range = fields::has(x.request, "Range");

    // Dictionaries: what the response announces, and whether it is stored.
    let mut announce = Vec::new();
    let mut insert = None;
    let mut store = None;
    if let Some(dc) = dc.filter(|_| x.status == 200 && !range && dict::storable(x.request, x.response)) {
        let key = String::from_utf8_lossy(x.uri).into_owned();
        let path = String::from_utf8_lossy(dict::path_of(x.uri)).into_owned();
        let pattern = dc.pattern.clone().unwrap_or_else(|| dict::pattern_for_path(&path));
        let html = dict::is_html(x.response);
        if dict::fresh(x.response) {
            announce.push(Edit::Set("Use-As-Dictionary", dict::use_as_dictionary(&pattern, html)));
        } else if let Some(h) = kept_dictionary(dc, x).or_else(|| dc.store.latest(&key)) {
            let url = dict::dictionary_url(&h);
            announce.push(Edit::Append("Link", format!("<{url}>; rel=\"compression-dictionary\"")));
            if html {
                insert = Some(format!("<link rel=\"compression-dictionary\" href=\"{url}\">"));
            }
        }
        let content_type = fields::lines(x.response, "Content-Type").next().map(|v| String::from_utf8_lossy(v).into_owned());
        store = Some((key, Meta { content_type: content_type.unwrap_or_default(), pattern }));
    }

    // The coding: dcz when the request names a version the store holds,
    // else hsync when it sent a usable signature.
    let ae: Vec<&[u8]> = fields::lines(x.request, "Accept-Encoding").collect();
    let ae_accepts = |c: &str| ae.iter().any(|v| accepts(&String::from_utf8_lossy(v), c));
    let dcz = dc.filter(|_| !range && ae_accepts(DCZ)).and_then(|dc| {
        // Only a version the store holds (docs/protocol.md §7.3): one it
        // lost is not used from this process's prepared copy either, so
        // every worker answers the same.
        let h = dict::available_dictionary(x.request).filter(|h| dc.store.has(h))?;
        crate::codec::dcz::prepared(&h, || dc.store.get(&h).map(|(_, body)| body))
    });
    let asked = fields::has(x.request, SIGNATURE_HEADER) && ae_accepts(ENCODING);
    let coding = match dcz {
        Some(p) => Ok(Coding::Dcz(p)),
        None if !asked => Err(Decline::NotAsked),
        None => {
            // One signature: several lines are joined into a list, which is not one.
            let sig_value: Vec<u8> = join(fields::lines(x.request, SIGNATURE_HEADER));
            match decode_signature_header(&sig_value, cfg.max_signature) {
                Err(e) => Err(Decline::Invalid(e)),
                Ok(_) if range => Err(Decline::Range),
                Ok(sig) => Ok(Coding::Hsync(sig)),
            }
        }
    };
    let weak_etag = weakened_etag(x.response);
    if x.status == 304 {
        // The validators and Vary the 200 would have carried: a coded one,
        // or one whose body gets a dictionary's element, has the weak tag.
        if coding.is_ok() || links_in_body(dc, x, range) {
            if !cfg.vary {
                edits.extend(vary);
            }
            edits.extend(weak_etag);
        }
        return leave(Decline::Status, edits);
    }
    let coding = match coding {
        Ok(c) => c,
        // Invalid signatures are logged; the response stays as it is.
        Err(d @ Decline::Invalid(_)) => return leave(d, [edits, announce].concat()),
        Err(d) => {
            if insert.is_none() && (store.is_none() || head) {
                edits.extend(announce);
                return leave(d, edits);
            }
            Coding::Identity
        }
    };
    if coding != Coding::Identity {
        edits = vec![Edit::Set("Content-Encoding", coding.name().to_string())];
        edits.extend(vary);
    }
    if coding != Coding::Identity || insert.is_some() {
        // The body sent is not the identity body any more.
        edits.extend(weak_etag);
        for f in RECODED_AWAY {
            if fields::has(x.response, f) || (f == "Content-Length" && x.content_length.is_some()) {
                edits.push(Edit::Remove(f));
            }
        }
    }
    edits.extend(announce);
    if head {
        // The header fields the GET would have had (RFC 9110 §9.3.2), and
        // no body. The coding name also keeps a compression filter after
        // this one (mod_deflate) from recoding the response.
        return leave(Decline::Method, edits);
    }
    Decision { outcome: Outcome::Engage(Plan { coding, insert, store }), edits }
}

/// Would a 200 to this request have the element of §7.2 inserted into its
/// body (and so its ETag made weak)? Decided from the 304's fields as the
/// 200's are: an HTML page that is not fresh and may be stored, with a
/// version to link. A 304 must carry the ETag the 200 would have had
/// (RFC 9110 §15.4.5): the origin's strong tag would name the body
/// without the element, and a cache that refreshed its stored page with
/// it could then combine that page with ranges of the other.
fn links_in_body(dc: Option<&DictConfig>, x: &Exchange<'_>, range: bool) -> bool {
    let Some(dc) = dc else { return false };
    if range || !dict::is_html(x.response) || dict::fresh(x.response) || !dict::storable(x.request, x.response) {
        return false;
    }
    let key = String::from_utf8_lossy(x.uri).into_owned();
    kept_dictionary(dc, x).or_else(|| dc.store.latest(&key)).is_some()
}

/// Whether the response (not the request) allows hsync: 200 or 304, no
/// content coding but `identity`, no `no-transform`, at least the minimum
/// length when known.
fn representation_qualifies(cfg: &ServerConfig, x: &Exchange<'_>) -> Result<(), Decline> {
    if x.status != 200 && x.status != 304 {
        return Err(Decline::Status);
    }
    if fields::list(x.response, "Content-Encoding").any(|c| !c.eq_ignore_ascii_case(b"identity")) {
        return Err(Decline::AlreadyEncoded);
    }
    if fields::list_has(x.response, "Cache-Control", "no-transform") {
        return Err(Decline::NoTransform);
    }
    if x.status == 200 {
        let len = x.content_length.or_else(|| {
            let v = join(fields::lines(x.response, "Content-Length"));
            std::str::from_utf8(&v).ok()?.trim().parse().ok()
        });
        if len.is_some_and(|l| l < cfg.min_length) {
            return Err(Decline::TooShort);
        }
    }
    Ok(())
}

/// The `Vary` edit: every name the response already varies on (all its
/// lines), then those the codings need; `*` stays `*` (no edit).
fn merged_vary(response: &[Field<'_>], dictionaries: bool) -> Option<Edit> {
    let mut names: Vec<String> = Vec::new();
    for n in fields::list(response, "Vary") {
        if n == b"*" {
            return None;
        }
        let n = String::from_utf8_lossy(n).into_owned();
        if !names.iter().any(|e| e.eq_ignore_ascii_case(&n)) {
            names.push(n);
        }
    }
    let before = names.len();
    let extra: &[&str] = if dictionaries { &["Available-Dictionary"] } else { &[] };
    for &n in VARY_NAMES.iter().chain(extra) {
        if !names.iter().any(|e| e.eq_ignore_ascii_case(n)) {
            names.push(n.to_string());
        }
    }
    let lines = fields::lines(response, "Vary").count();
    // Already complete on one line: nothing to change.
    (names.len() > before || lines > 1).then(|| Edit::Set("Vary", names.join(", ")))
}

/// The `ETag` edit: a strong tag made weak (as nginx's gzip filter does);
/// none when there is no tag or it is weak already.
fn weakened_etag(response: &[Field<'_>]) -> Option<Edit> {
    let tag = fields::trim(fields::lines(response, "ETag").next()?);
    if tag.is_empty() || tag.starts_with(b"W/") {
        return None;
    }
    Some(Edit::Set("ETag", format!("W/{}", String::from_utf8_lossy(tag))))
}

fn join<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, l) in lines.enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(l);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::encode_signature_header;

    fn sig() -> String {
        encode_signature_header(&Signature::compute(&vec![b'a'; 5000]).to_bytes())
    }

    fn decide_with(method: &str, req: &[(&str, &str)], status: u32, resp: &[(&str, &str)]) -> Decision {
        let req: Vec<Field> = req.iter().map(|(n, v)| Field::new(n, v)).collect();
        let resp: Vec<Field> = resp.iter().map(|(n, v)| Field::new(n, v)).collect();
        let x = Exchange { method: method.as_bytes(), uri: b"/page", request: &req, status, response: &resp, content_length: None };
        decide(&ServerConfig::default(), None, &x)
    }

    fn set<'a>(d: &'a Decision, name: &str) -> Option<&'a str> {
        d.edits.iter().find_map(|e| match e {
            Edit::Set(n, v) if n.eq_ignore_ascii_case(name) => Some(v.as_str()),
            _ => None,
        })
    }

    #[test]
    fn engages_with_every_edit() {
        let s = sig();
        let d = decide_with(
            "GET",
            &[("Accept-Encoding", "gzip, hsync"), ("Hsync-Signature", &s)],
            200,
            &[
                ("Vary", "Cookie"),
                ("Vary", "User-Agent"),
                ("ETag", "\"abc\""),
                ("Content-Length", "9000"),
                ("Accept-Ranges", "bytes"),
                ("Repr-Digest", "sha-256=:x:"),
                ("Content-Encoding", "identity"),
            ],
        );
        assert!(matches!(d.outcome, Outcome::Engage(_)));
        assert_eq!(set(&d, "Content-Encoding"), Some("hsync"));
        assert_eq!(set(&d, "Vary"), Some("Cookie, User-Agent, Accept-Encoding, Hsync-Signature"));
        assert_eq!(set(&d, "ETag"), Some("W/\"abc\""));
        for f in ["Content-Length", "Accept-Ranges", "Repr-Digest"] {
            assert!(d.edits.contains(&Edit::Remove(f)), "{f}");
        }
        assert!(!d.edits.contains(&Edit::Remove("Content-Digest")), "only fields present are removed");
    }

    #[test]
    fn no_transform_on_a_second_line_is_seen() {
        let s = sig();
        let d = decide_with(
            "GET",
            &[("Accept-Encoding", "hsync"), ("Hsync-Signature", &s)],
            200,
            &[("Cache-Control", "max-age=60"), ("Cache-Control", "no-transform")],
        );
        assert_eq!(d, Decision { outcome: Outcome::Leave(Decline::NoTransform), edits: vec![] });
    }

    #[test]
    fn declined_but_eligible_responses_still_vary() {
        for req in [vec![], vec![("Accept-Encoding", "gzip")], vec![("Accept-Encoding", "hsync;q=0"), ("Hsync-Signature", "x")]] {
            let d = decide_with("GET", &req, 200, &[("Vary", "Accept-Encoding")]);
            assert_eq!(d.outcome, Outcome::Leave(Decline::NotAsked));
            assert_eq!(set(&d, "Vary"), Some("Accept-Encoding, Hsync-Signature"));
        }
        let d = decide_with("GET", &[("Accept-Encoding", "hsync"), ("Hsync-Signature", "!!")], 200, &[]);
        assert!(matches!(d.outcome, Outcome::Leave(Decline::Invalid(_))));
        assert_eq!(set(&d, "Vary"), Some("Accept-Encoding, Hsync-Signature"));
        // Vary: * stays; a complete Vary is not rewritten.
        assert!(decide_with("GET", &[], 200, &[("Vary", "*")]).edits.is_empty());
        assert!(decide_with("GET", &[], 200, &[("Vary", "accept-encoding, hsync-signature")]).edits.is_empty());
        // Off: no Vary on a declined response.
        let cfg = ServerConfig { vary: false, ..Default::default() };
        let x = Exchange { method: b"GET", uri: b"/", request: &[], status: 200, response: &[], content_length: None };
        assert!(decide(&cfg, None, &x).edits.is_empty());
    }

    #[test]
    fn ineligible_responses_are_untouched() {
        let s = sig();
        let req = [("Accept-Encoding", "hsync"), ("Hsync-Signature", s.as_str())];
        for (status, resp) in [
            (404, vec![]),
            (206, vec![]),
            (200, vec![("Content-Encoding", "gzip")]),
            (200, vec![("Content-Encoding", "identity"), ("Content-Encoding", "br")]),
            (200, vec![("Content-Length", "10")]),
        ] {
            let d = decide_with("GET", &req, status, &resp);
            assert!(matches!(d.outcome, Outcome::Leave(_)) && d.edits.is_empty(), "{status} {resp:?}: {d:?}");
        }
    }

    #[test]
    fn not_modified_and_head_get_the_hsync_validators() {
        let s = sig();
        let req = [("Accept-Encoding", "hsync"), ("Hsync-Signature", s.as_str())];
        for (method, status) in [("GET", 304), ("HEAD", 200)] {
            let d = decide_with(method, &req, status, &[("ETag", "\"v1\""), ("Content-Length", "9000")]);
            assert!(matches!(d.outcome, Outcome::Leave(_)));
            assert_eq!(set(&d, "ETag"), Some("W/\"v1\""), "{method} {status}");
            assert_eq!(set(&d, "Vary"), Some("Accept-Encoding, Hsync-Signature"));
            // HEAD: the GET's fields, coding included; a 304: the validators only.
            let head = method == "HEAD";
            assert_eq!(set(&d, "Content-Encoding"), head.then_some("hsync"));
            assert_eq!(d.edits.contains(&Edit::Remove("Content-Length")), head);
        }
        // Without a signature: the plain response's strong tag, and Vary.
        let d = decide_with("GET", &[], 304, &[("ETag", "\"v1\"")]);
        assert_eq!(set(&d, "ETag"), None);
        assert_eq!(set(&d, "Vary"), Some("Accept-Encoding, Hsync-Signature"));
    }

    #[test]
    fn range_and_other_methods() {
        let s = sig();
        let d = decide_with("GET", &[("Accept-Encoding", "hsync"), ("Hsync-Signature", &s), ("Range", "bytes=0-9")], 200, &[]);
        assert_eq!(d.outcome, Outcome::Leave(Decline::Range));
        let d = decide_with("POST", &[("Accept-Encoding", "hsync"), ("Hsync-Signature", &s)], 200, &[]);
        assert_eq!(d, Decision { outcome: Outcome::Leave(Decline::Method), edits: vec![] });
    }
}

#[cfg(test)]
mod dictionary_tests {
    use super::*;
    use crate::store::{sha256, Store};
    use base64::Engine;

    fn store(name: &str) -> Arc<Store> {
        let d = std::env::temp_dir().join(format!("hsync-decide-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        Arc::new(Store::open(d, 1 << 24, 1 << 22).unwrap())
    }

    fn run(dc: &DictConfig, method: &str, uri: &str, req: &[(&str, &str)], status: u32, resp: &[(&str, &str)]) -> Decision {
        let req: Vec<Field> = req.iter().map(|(n, v)| Field::new(n, v)).collect();
        let resp: Vec<Field> = resp.iter().map(|(n, v)| Field::new(n, v)).collect();
        let x = Exchange { method: method.as_bytes(), uri: uri.as_bytes(), request: &req, status, response: &resp, content_length: None };
        decide(&ServerConfig::default(), Some(dc), &x)
    }

    fn put(s: &Arc<Store>, key: &str, body: &[u8]) -> crate::store::Hash {
        let mut w = s.writer(key, &Meta { content_type: "text/html".into(), pattern: key.into() }).unwrap();
        w.write(body);
        w.commit().unwrap().unwrap()
    }

    fn value<'a>(d: &'a Decision, name: &str) -> Option<&'a str> {
        d.edits.iter().find_map(|e| match e {
            Edit::Set(n, v) | Edit::Append(n, v) if n.eq_ignore_ascii_case(name) => Some(v.as_str()),
            _ => None,
        })
    }

    const HTML: (&str, &str) = ("Content-Type", "text/html; charset=utf-8");

    #[test]
    fn fresh_pages_are_their_own_dictionary() {
        let dc = DictConfig { store: store("fresh"), pattern: None };
        let d = run(&dc, "GET", "/news/?x=1", &[], 200, &[HTML, ("Cache-Control", "max-age=3600")]);
        assert_eq!(value(&d, "Use-As-Dictionary"), Some("match=\"/news/\", match-dest=(\"document\")"));
        let Outcome::Engage(p) = &d.outcome else { panic!("{d:?}") };
        assert_eq!(p.coding, Coding::Identity);
        assert_eq!(p.insert, None);
        assert_eq!(p.store.as_ref().unwrap().0, "/news/?x=1");
        assert_eq!(value(&d, "Vary"), Some("Accept-Encoding, Hsync-Signature, Available-Dictionary"));
        assert!(!d.edits.contains(&Edit::Remove("Content-Length")), "the body is sent as it is");
    }

    #[test]
    fn other_pages_link_the_latest_stored_version() {
        let s = store("link");
        let dc = DictConfig { store: s.clone(), pattern: Some("/app/*".into()) };
        // Nothing stored yet: stored, nothing announced.
        let d = run(&dc, "GET", "/app/page", &[], 200, &[HTML, ("Cache-Control", "no-cache"), ("ETag", "\"e1\"")]);
        assert_eq!(value(&d, "Link"), None);
        assert!(matches!(&d.outcome, Outcome::Engage(p) if p.insert.is_none() && p.store.is_some()));
        let h = put(&s, "/app/page", b"<html><head></head>v1</html>");
        let d = run(&dc, "GET", "/app/page", &[], 200, &[HTML, ("Cache-Control", "no-cache"), ("ETag", "\"e1\"")]);
        let url = format!("/.well-known/hsync/dictionary/{}", crate::store::hex(&h));
        assert_eq!(value(&d, "Link"), Some(format!("<{url}>; rel=\"compression-dictionary\"").as_str()));
        let Outcome::Engage(p) = &d.outcome else { panic!() };
        assert_eq!(p.insert.as_deref(), Some(format!("<link rel=\"compression-dictionary\" href=\"{url}\">").as_str()));
        assert_eq!(p.store.as_ref().unwrap().1.pattern, "/app/*");
        // The body changes: its length goes, its tag is weakened.
        assert!(d.edits.contains(&Edit::Remove("Content-Length")) || !d.edits.iter().any(|e| e.name() == "Content-Length"));
        assert_eq!(value(&d, "ETag"), Some("W/\"e1\""));
        // A 304 carries the weak tag the 200 (with the element) has; not
        // before a version is stored, nor for a page that is fresh.
        let d = run(&dc, "GET", "/app/page", &[], 304, &[HTML, ("Cache-Control", "no-cache"), ("ETag", "\"e1\"")]);
        assert_eq!(value(&d, "ETag"), Some("W/\"e1\""));
        let d = run(&dc, "GET", "/app/other", &[], 304, &[HTML, ("Cache-Control", "no-cache"), ("ETag", "\"e1\"")]);
        assert_eq!(value(&d, "ETag"), None);
        let d = run(&dc, "GET", "/app/page", &[], 304, &[HTML, ("Cache-Control", "max-age=60"), ("ETag", "\"e1\"")]);
        assert_eq!(value(&d, "ETag"), None);
        // Not HTML: the header only, no insertion.
        let d = run(&dc, "GET", "/app/page", &[], 200, &[("Content-Type", "application/atom+xml")]);
        assert!(value(&d, "Link").is_some());
        assert!(matches!(&d.outcome, Outcome::Engage(p) if p.insert.is_none()));
    }

    #[test]
    fn a_returning_browser_keeps_its_dictionary_while_young() {
        let s = store("keep");
        let dc = DictConfig { store: s.clone(), pattern: None };
        let v1 = put(&s, "/p", b"<html><head></head>v1</html>");
        let v2 = put(&s, "/p", b"<html><head></head>v2</html>");
        let link = |h: &Hash| format!("</.well-known/hsync/dictionary/{}>; rel=\"compression-dictionary\"", crate::store::hex(h));
        let resp = [HTML, ("Cache-Control", "no-cache")];
        let named = |h: &Hash| format!(":{}:", base64::engine::general_purpose::STANDARD.encode(h));
        use base64::Engine;
        // A browser with v1 keeps v1 (no new download at idle) ...
        let ad = named(&v1);
        let d = run(&dc, "GET", "/p", &[("Accept-Encoding", "gzip, dcz"), ("Available-Dictionary", &ad)], 200, &resp);
        assert_eq!(value(&d, "Link"), Some(link(&v1).as_str()));
        assert!(matches!(&d.outcome, Outcome::Engage(p) if matches!(p.coding, Coding::Dcz(_))));
        // ... a browser with none, or with one the store lost, gets the latest.
        let d = run(&dc, "GET", "/p", &[("Accept-Encoding", "gzip, dcz")], 200, &resp);
        assert_eq!(value(&d, "Link"), Some(link(&v2).as_str()));
        let ad = named(&[7; 32]);
        let d = run(&dc, "GET", "/p", &[("Accept-Encoding", "gzip, dcz"), ("Available-Dictionary", &ad)], 200, &resp);
        assert_eq!(value(&d, "Link"), Some(link(&v2).as_str()));
        // ... and so does one whose version is older than a day.
        let old = std::time::SystemTime::now() - dict::KEEP_LINKED - std::time::Duration::from_secs(60);
        let f = std::fs::File::options().write(true).open(s.dir().join("v").join(crate::store::hex(&v1))).unwrap();
        f.set_modified(old).unwrap();
        let ad = named(&v1);
        let d = run(&dc, "GET", "/p", &[("Accept-Encoding", "gzip, dcz"), ("Available-Dictionary", &ad)], 200, &resp);
        assert_eq!(value(&d, "Link"), Some(link(&v2).as_str()));
    }

    #[test]
    fn private_responses_are_never_stored_or_announced() {
        let dc = DictConfig { store: store("private"), pattern: None };
        for (req, resp) in [
            (vec![("Authorization", "Basic x")], vec![HTML]),
            (vec![], vec![HTML, ("Set-Cookie", "s=1")]),
            (vec![], vec![HTML, ("Cache-Control", "private, max-age=60")]),
            (vec![], vec![HTML, ("Cache-Control", "no-store")]),
        ] {
            let d = run(&dc, "GET", "/p", &req, 200, &resp);
            assert!(matches!(d.outcome, Outcome::Leave(_)), "{req:?} {resp:?}: {d:?}");
            assert!(value(&d, "Use-As-Dictionary").is_none() && value(&d, "Link").is_none());
        }
    }

    #[test]
    fn a_named_stored_version_gets_dcz() {
        let s = store("dcz");
        let dc = DictConfig { store: s.clone(), pattern: None };
        let h = put(&s, "/p", &b"<html><head></head>version one</html>".repeat(50));
        let named = format!(":{}:", base64::engine::general_purpose::STANDARD.encode(h));
        let req = [("Accept-Encoding", "gzip, br, zstd, dcb, dcz"), ("Available-Dictionary", named.as_str())];
        let d = run(&dc, "GET", "/p", &req, 200, &[HTML, ("ETag", "\"v2\""), ("Content-Length", "2000")]);
        assert!(matches!(&d.outcome, Outcome::Engage(p) if matches!(&p.coding, Coding::Dcz(x) if x.hash == h)), "{d:?}");
        assert_eq!(value(&d, "Content-Encoding"), Some("dcz"));
        assert_eq!(value(&d, "ETag"), Some("W/\"v2\""));
        assert!(d.edits.contains(&Edit::Remove("Content-Length")));
        // Without dcz accepted, or naming a version not stored: no dcz.
        let d = run(&dc, "GET", "/p", &[("Accept-Encoding", "gzip"), ("Available-Dictionary", &named)], 200, &[HTML]);
        assert_eq!(d.coding(), Some(&Coding::Identity));
        let other = format!(":{}:", base64::engine::general_purpose::STANDARD.encode(sha256(b"nope")));
        let d = run(&dc, "GET", "/p", &[("Accept-Encoding", "dcz"), ("Available-Dictionary", &other)], 200, &[HTML]);
        assert_eq!(d.coding(), Some(&Coding::Identity));
        // The store loses it: no dcz, though this process prepared it.
        let f = s.dir().join("v").join(crate::store::hex(&h));
        let kept = std::fs::read(&f).unwrap();
        std::fs::remove_file(&f).unwrap();
        let d = run(&dc, "GET", "/p", &req, 200, &[HTML]);
        assert_eq!(d.coding(), Some(&Coding::Identity));
        std::fs::write(&f, kept).unwrap();
        // HEAD: the fields of the dcz GET; a 304: the weak tag and the Vary.
        let d = run(&dc, "HEAD", "/p", &req, 200, &[HTML, ("ETag", "\"v2\"")]);
        assert!(matches!(d.outcome, Outcome::Leave(_)));
        assert_eq!(value(&d, "Content-Encoding"), Some("dcz"));
        let d = run(&dc, "GET", "/p", &req, 304, &[("ETag", "\"v2\"")]);
        assert_eq!(value(&d, "ETag"), Some("W/\"v2\""));
        assert_eq!(value(&d, "Content-Encoding"), None);
    }
}
