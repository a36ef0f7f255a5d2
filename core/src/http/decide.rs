//! The one decision a server makes per response, and every header edit
//! that follows from it. The shims hand over the request and response
//! header fields (all lines of repeated ones) when the response headers are
//! ready, and apply the edits returned: they write nothing about Vary, ETag,
//! Content-Length, Accept-Ranges, digests or the coding name themselves.

use super::fields::{self, Field};
use super::{accepts, decode_signature_header, Decline, ServerConfig, ENCODING, SIGNATURE_HEADER, VARY_NAMES};
use crate::signature::Signature;

/// What the server knows when the response headers are ready.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    pub method: &'a [u8],
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
    /// Remove every line of the field.
    Remove(&'static str),
}

impl Edit {
    pub fn name(&self) -> &'static str {
        match self {
            Edit::Set(n, _) | Edit::Remove(n) => n,
        }
    }
}

/// The response is sent hsync-coded (with `sig`), or as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Engage(Signature),
    Leave(Decline),
}

/// The decision for one response: engage or not, and the header edits to
/// apply either way (a response left alone may still need `Vary`, a 304 or
/// a HEAD the validators an hsync response would have had).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    pub edits: Vec<Edit>,
}

/// Response fields that describe the bytes of the identity body and are
/// wrong once it is recoded (RFC 9530 digests, the obsolete Content-MD5,
/// the length) or no longer apply (ranges of a body that is now a delta).
const RECODED_AWAY: [&str; 6] = ["Content-Length", "Accept-Ranges", "Content-Digest", "Repr-Digest", "Digest", "Content-MD5"];

/// Decides for one response: see the module documentation and
/// docs/protocol.md §2.2–2.3.
///
/// - A response hsync could never apply to, whatever the request (not 200
///   or 304, already coded, `no-transform`, shorter than the minimum) is
///   left alone, untouched.
/// - Otherwise the coding depends on the request's `Accept-Encoding` and
///   `Hsync-Signature`, so the response names them in `Vary` (unless
///   `cfg.vary` is off), whether hsync is applied or not: a shared cache
///   must not give a plain copy to a client that sent a signature, or a
///   delta to one that did not.
/// - A 304 to a request that asked for hsync carries the ETag the hsync
///   response would have had (weak) and its Vary, as RFC 9110 §15.4.5
///   asks, so that caches can freshen what they stored; a HEAD response
///   carries every header field of the hsync GET (§9.3.2), coding included.
/// - A GET for a 200 response with a usable signature and no Range is
///   engaged: `Content-Encoding: hsync`, the `Vary`, a weak `ETag`, and the
///   fields that described the identity bytes removed.
pub fn decide(cfg: &ServerConfig, x: &Exchange<'_>) -> Decision {
    let leave = |d: Decline, edits: Vec<Edit>| Decision { outcome: Outcome::Leave(d), edits };
    if let Err(d) = representation_qualifies(cfg, x) {
        return leave(d, Vec::new());
    }
    let method = x.method;
    if method != b"GET" && method != b"HEAD" {
        return leave(Decline::Method, Vec::new());
    }
    let mut edits = Vec::new();
    let vary = merged_vary(x.response);
    if cfg.vary {
        edits.extend(vary.clone());
    }
    let asked = fields::has(x.request, SIGNATURE_HEADER)
        && fields::lines(x.request, "Accept-Encoding").any(|v| accepts(&String::from_utf8_lossy(v), ENCODING));
    if !asked {
        return leave(Decline::NotAsked, edits);
    }
    // One signature: several lines are joined into a list, which is not one.
    let sig_value: Vec<u8> = join(fields::lines(x.request, SIGNATURE_HEADER));
    let sig = match decode_signature_header(&sig_value, cfg.max_signature) {
        Ok(s) => s,
        Err(e) => return leave(Decline::Invalid(e), edits),
    };
    if fields::has(x.request, "Range") {
        return leave(Decline::Range, edits);
    }
    let weak_etag = weakened_etag(x.response);
    if x.status == 304 {
        // The validators and Vary the hsync 200 would have carried.
        if !cfg.vary {
            edits.extend(vary);
        }
        edits.extend(weak_etag);
        return leave(Decline::Status, edits);
    }
    let mut edits = vec![Edit::Set("Content-Encoding", ENCODING.to_string())];
    edits.extend(vary);
    edits.extend(weak_etag);
    for f in RECODED_AWAY {
        if fields::has(x.response, f) || (f == "Content-Length" && x.content_length.is_some()) {
            edits.push(Edit::Remove(f));
        }
    }
    if method == b"HEAD" {
        // The header fields the GET would have had (RFC 9110 §9.3.2), and
        // no body to encode. The coding name also keeps a compression
        // filter after this one (mod_deflate) from recoding the response.
        return leave(Decline::Method, edits);
    }
    Decision { outcome: Outcome::Engage(sig), edits }
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
/// lines), then those hsync needs; `*` stays `*` (no edit).
fn merged_vary(response: &[Field<'_>]) -> Option<Edit> {
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
    for n in VARY_NAMES {
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
        let x = Exchange { method: method.as_bytes(), request: &req, status, response: &resp, content_length: None };
        decide(&ServerConfig::default(), &x)
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
        let x = Exchange { method: b"GET", request: &[], status: 200, response: &[], content_length: None };
        assert!(decide(&cfg, &x).edits.is_empty());
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
