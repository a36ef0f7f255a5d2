//! The feed decision, in two steps (docs/protocol.md §8):
//!
//! 1. [`check`], when the response headers are ready: is this a feed
//!    response the server must hold (headers and body, up to
//!    [`FEED_MAX_BYTES`]) before anything is sent?
//! 2. [`process`], when the whole body is there: the status, the header
//!    edits and the body to send.

use super::etag::{Etaglet, IfNoneMatch};
use super::parse::parse;
use super::seen;
use super::FeedConfig;
use crate::error::Error;
use crate::http::fields::{self, Field};
use crate::http::{Edit, Exchange};
use crate::limits::FEED_MAX_BYTES;
use std::borrow::Cow;

/// The instance-manipulation of RFC 3229 this implements.
pub const IM_FEED: &str = "feed";
/// `Expires` of a truncated response: long past, for HTTP/1.0 caches.
pub const EXPIRED: &str = "Thu, 01 Jan 1970 00:00:00 GMT";
/// `Cache-Control` of a 226: stored by no cache at all.
pub const CACHE_CONTROL_226: &str = "no-store";
/// `Cache-Control` of a truncated 200: never by a shared cache, and stale
/// at once in the reader's own.
pub const CACHE_CONTROL_TRUNCATED: &str = "private, max-age=0";

/// Why a response is not held for the feed decision (step 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Neither `feed` nor `feed_implicit` is on.
    Off,
    /// Not a GET (HEAD included: its body is not there to hash).
    Method,
    /// The request has `Range`.
    Range,
    /// Not 200.
    Status,
    /// The Content-Type is not one of the configured feed types.
    NotFeed,
    /// A content coding other than identity.
    AlreadyEncoded,
    /// Known to be longer than [`FEED_MAX_BYTES`] (or found to be, by the
    /// server while buffering: it then sends everything as it is).
    TooLarge,
}

/// Why a feed is sent whole (step 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whole {
    /// No `If-None-Match`, or the request asks for no truncation this
    /// server does (no `A-IM: feed` with `feed` on, implicit mode off or
    /// the request has `A-IM`).
    NotAsked,
    /// Several entity-tags in `If-None-Match` (a cache may have added its
    /// own: which reader asked cannot be told).
    Several,
    /// One entity-tag that is not an ETaglet.
    Foreign,
    /// The body is not a feed this parser reads, or is over a limit.
    Unparsable(Error),
    /// `Cache-Control: no-transform` (the response's; for the implicit
    /// mode also the request's).
    NoTransform,
    /// The reader holds none of the current entries: truncating saves nothing.
    NothingHeld,
    /// Implicit mode, and the request came through a proxy (`Via`): its
    /// `If-None-Match` may be the tag of the proxy's cached copy, sent to
    /// revalidate it for a reader that holds nothing.
    Proxied,
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Skip::Off => "feeds are off",
            Skip::Method => "method is not GET",
            Skip::Range => "range request",
            Skip::Status => "status is not 200",
            Skip::NotFeed => "not a feed type",
            Skip::AlreadyEncoded => "response already has a content coding",
            Skip::TooLarge => "feed larger than FEED_MAX_BYTES",
        })
    }
}

impl std::fmt::Display for Whole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Whole::NotAsked => write!(f, "no truncation asked"),
            Whole::Several => write!(f, "several entity-tags in If-None-Match"),
            Whole::Foreign => write!(f, "If-None-Match is not an hsync feed tag"),
            Whole::Unparsable(e) => write!(f, "feed not parsed: {e}"),
            Whole::NoTransform => write!(f, "Cache-Control: no-transform"),
            Whole::NothingHeld => write!(f, "the reader holds none of the entries"),
            Whole::Proxied => write!(f, "implicit mode through a proxy (Via)"),
        }
    }
}

impl std::fmt::Display for FeedKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FeedKind::Skipped(s) => write!(f, "skipped: {s}"),
            FeedKind::Whole(w) => write!(f, "whole feed: {w}"),
            FeedKind::NotModified => write!(f, "304 Not Modified"),
            FeedKind::ImUsed => write!(f, "226 IM Used, entries the reader lacks"),
            FeedKind::Truncated => write!(f, "200, entries the reader lacks (implicit)"),
        }
    }
}

/// What kind of response goes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedKind {
    /// Not held at all: send the response as it is (no edits).
    Skipped(Skip),
    /// The whole feed, with its ETaglet and `Vary`.
    Whole(Whole),
    /// `304 Not Modified`: the request's If-None-Match names this version.
    NotModified,
    /// `226 IM Used`, `IM: feed`: the entries the reader does not have.
    ImUsed,
    /// `200` with the entries the reader does not have (implicit mode).
    Truncated,
}

/// The answer to a feed response: what the server sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedOutcome<'b> {
    /// 200, 226 or 304.
    pub status: u32,
    /// Header edits, applied as for [`crate::http::decide`]'s.
    pub edits: Vec<Edit>,
    /// The body to send: the one given (borrowed) or the truncated
    /// document (owned); empty for a 304.
    pub body: Cow<'b, [u8]>,
    /// `"feed"` when the body was truncated (226 or implicit 200), for
    /// `$hsync_coding` and the `hsync_coding` note; `""` otherwise.
    pub coding: &'static str,
    pub kind: FeedKind,
    /// Entries in the feed, and sent (for logs and figures).
    pub entries: usize,
    pub sent: usize,
}

/// Step 1: must the server hold this response for [`process`]? On `Ok`,
/// it buffers the body, up to [`FEED_MAX_BYTES`] bytes, holding the
/// headers; past that it gives up and sends everything unchanged.
pub fn check(cfg: &FeedConfig, x: &Exchange<'_>) -> Result<(), Skip> {
    if !cfg.explicit && !cfg.implicit {
        return Err(Skip::Off);
    }
    if x.method != b"GET" {
        return Err(Skip::Method);
    }
    if fields::has(x.request, "Range") {
        return Err(Skip::Range);
    }
    if x.status != 200 {
        return Err(Skip::Status);
    }
    if !cfg.is_feed_type(fields::lines(x.response, "Content-Type").next()) {
        return Err(Skip::NotFeed);
    }
    if fields::list(x.response, "Content-Encoding").any(|c| !c.eq_ignore_ascii_case(b"identity")) {
        return Err(Skip::AlreadyEncoded);
    }
    let len = x.content_length.or_else(|| {
        let v = fields::lines(x.response, "Content-Length").next()?;
        std::str::from_utf8(v).ok()?.trim().parse().ok()
    });
    if len.is_some_and(|l| l > FEED_MAX_BYTES as u64) {
        return Err(Skip::TooLarge);
    }
    Ok(())
}

/// Does an `A-IM` list (RFC 3229 §10.5.3: `#( instance-manipulation
/// [ ";" "q" "=" qvalue ] )`, names case-insensitive) accept `feed`?
pub fn accepts_feed(request: &[Field<'_>]) -> bool {
    fields::list(request, "A-IM").any(|item| {
        let mut parts = item.split(|&b| b == b';');
        let name = fields::trim(parts.next().unwrap_or_default());
        if !name.eq_ignore_ascii_case(IM_FEED.as_bytes()) {
            return false;
        }
        let q = parts.find_map(|p| {
            let p = fields::trim(p);
            let v = p.strip_prefix(b"q=").or_else(|| p.strip_prefix(b"Q="))?;
            std::str::from_utf8(v).ok()?.trim().parse::<f32>().ok()
        });
        q.is_none_or(|q| q > 0.0)
    })
}

/// Fields that describe the bytes of the body sent as the origin made it,
/// wrong once it is truncated (RFC 9530 digests, Content-MD5, the length,
/// ranges of it) or that would let a cache revalidate a truncated copy
/// (`Last-Modified`: an HTTP/1.0 cache could turn a 304 to its
/// `If-Modified-Since` into the truncated body for another reader).
const TRUNCATED_AWAY: [&str; 7] =
    ["Content-Length", "Accept-Ranges", "Content-Digest", "Repr-Digest", "Digest", "Content-MD5", "Last-Modified"];
/// Those that describe a body a 304 does not have.
const NOT_MODIFIED_AWAY: [&str; 5] = ["Content-Length", "Content-Digest", "Digest", "Content-MD5", "Accept-Ranges"];

/// The `Vary` edit naming `extra` besides what the response varies on
/// already (all its lines); `*` stays, a complete one is not rewritten.
fn vary(response: &[Field<'_>], extra: &[&str]) -> Option<Edit> {
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
    for &n in extra {
        if !names.iter().any(|e| e.eq_ignore_ascii_case(n)) {
            names.push(n.to_string());
        }
    }
    let lines = fields::lines(response, "Vary").count();
    (names.len() > before || lines > 1).then(|| Edit::Set("Vary", names.join(", ")))
}

/// `Cache-Control` with `private` (and without `public` or `s-maxage`,
/// which would contradict it); `None` when it says `private` already.
fn privatized(response: &[Field<'_>]) -> Option<Edit> {
    if fields::list_has(response, "Cache-Control", "private") {
        return None;
    }
    let mut d: Vec<String> = fields::list(response, "Cache-Control")
        .filter(|i| !fields::token(i).eq_ignore_ascii_case(b"public") && !fields::token(i).eq_ignore_ascii_case(b"s-maxage"))
        .map(|i| String::from_utf8_lossy(i).into_owned())
        .collect();
    d.push("private".into());
    Some(Edit::Set("Cache-Control", d.join(", ")))
}

fn removed(response: &[Field<'_>], x: &Exchange<'_>, names: &[&'static str]) -> Vec<Edit> {
    names
        .iter()
        .filter(|f| fields::has(response, f) || (**f == "Content-Length" && x.content_length.is_some()))
        .map(|f| Edit::Remove(f))
        .collect()
}

/// Step 2: the response to send, from the whole body. Never fails: when
/// anything is unsure the whole feed goes out (see [`Whole`]).
///
/// - Every feed response gets the ETaglet of its body as its `ETag`
///   (replacing the origin's) and `Vary` naming what the answer could
///   depend on (`A-IM` with `feed` on, `If-None-Match` with the implicit
///   mode on).
/// - `If-None-Match` naming this version (weak comparison, any number of
///   tags) or `*`: `304`, with that ETag and Vary.
/// - `A-IM: feed` (with `feed` on) and exactly one ETaglet in
///   `If-None-Match`: `226 IM Used`, `IM: feed`, the entries whose hash
///   the tag does not name, `Cache-Control: no-store`.
/// - No `A-IM`, no `Via`, the implicit mode on, exactly one ETaglet:
///   `200` with the same truncated document, `Cache-Control: private, max-age=0`.
/// - Otherwise the whole feed; answering `A-IM: feed`, made `private`.
/// - Both truncated answers: `Expires` in the past, no `Last-Modified`,
///   no length or digest of the origin's body.
pub fn process<'b>(cfg: &FeedConfig, x: &Exchange<'_>, body: &'b [u8]) -> FeedOutcome<'b> {
    if let Err(s) = check(cfg, x) {
        return FeedOutcome {
            status: x.status,
            edits: Vec::new(),
            body: Cow::Borrowed(body),
            coding: "",
            kind: FeedKind::Skipped(s),
            entries: 0,
            sent: 0,
        };
    }
    if body.len() > FEED_MAX_BYTES {
        return FeedOutcome {
            status: x.status,
            edits: Vec::new(),
            body: Cow::Borrowed(body),
            coding: "",
            kind: FeedKind::Skipped(Skip::TooLarge),
            entries: 0,
            sent: 0,
        };
    }
    // The tag and entry hashes of these bytes: remembered (polls of an
    // unchanged feed), else parsed here.
    let (version, parsed) = seen::version(body, parse);
    let n = version.hashes.len();
    let etag = version.etag.clone();
    let mut vary_names: Vec<&str> = Vec::new();
    if cfg.explicit {
        vary_names.push("A-IM");
    }
    vary_names.push("If-None-Match");
    if !cfg.implicit && !cfg.explicit {
        vary_names.clear();
    }
    let mut edits = vec![Edit::Set("ETag", etag.clone())];
    edits.extend(vary(x.response, &vary_names));
    let explicit = cfg.explicit && accepts_feed(x.request);
    let whole = |mut edits: Vec<Edit>, why: Whole| {
        if explicit {
            // A shared cache must never hold a response to `A-IM: feed`:
            // it would revalidate it with its own tag for the next reader
            // asking the same, and pass on the 226 that answers it.
            edits.extend(privatized(x.response));
        }
        FeedOutcome { status: 200, edits, body: Cow::Borrowed(body), coding: "", kind: FeedKind::Whole(why), entries: n, sent: n }
    };

    let inm = IfNoneMatch::of(x.request);
    if inm.matches(&etag) {
        edits.extend(removed(x.response, x, &NOT_MODIFIED_AWAY));
        return FeedOutcome { status: 304, edits, body: Cow::Borrowed(&[]), coding: "", kind: FeedKind::NotModified, entries: n, sent: 0 };
    }
    let implicit = cfg.implicit && !fields::has(x.request, "A-IM");
    let tags = match &inm {
        IfNoneMatch::Tags(t) if explicit || implicit => t,
        _ => return whole(edits, Whole::NotAsked),
    };
    if tags.len() != 1 {
        return whole(edits, Whole::Several);
    }
    if !explicit && fields::has(x.request, "Via") {
        return whole(edits, Whole::Proxied);
    }
    let Some(held) = Etaglet::parse(tags[0]) else { return whole(edits, Whole::Foreign) };
    if let Some(e) = &version.error {
        return whole(edits, Whole::Unparsable(e.clone()));
    }
    if fields::list_has(x.response, "Cache-Control", "no-transform")
        || (!explicit && fields::list_has(x.request, "Cache-Control", "no-transform"))
    {
        return whole(edits, Whole::NoTransform);
    }
    let sent = version.hashes.iter().filter(|&&h| !held.names(h)).count();
    if sent == n {
        return whole(edits, Whole::NothingHeld);
    }
    // Truncating needs the entries' places: the parse made above, or one now.
    let feed = match parsed.unwrap_or_else(|| parse(body)) {
        Ok(f) => f,
        Err(e) => return whole(edits, Whole::Unparsable(e)),
    };
    let truncated = feed.truncate(body, |_, e| !held.names(e.hash));
    let mut edits = vec![Edit::Set("ETag", etag)];
    let mut truncated = Cow::Owned(truncated);
    let (status, kind) = if explicit {
        edits.push(Edit::Set("IM", IM_FEED.to_string()));
        edits.push(Edit::Set("Cache-Control", CACHE_CONTROL_226.to_string()));
        edits.extend(vary(x.response, &["A-IM", "If-None-Match", "Accept-Encoding"]));
        // The servers' own compression passes a 226 by (nginx's gzip filter
        // takes only 200, 403 and 404): compressed here, for readers that
        // take gzip, as the whole feed would have been.
        if accepts_gzip(x.request) {
            if let Some(z) = gzip(&truncated) {
                truncated = Cow::Owned(z);
                edits.push(Edit::Set("Content-Encoding", "gzip".to_string()));
            }
        }
        (226, FeedKind::ImUsed)
    } else {
        edits.push(Edit::Set("Cache-Control", CACHE_CONTROL_TRUNCATED.to_string()));
        edits.extend(vary(x.response, &vary_names));
        (200, FeedKind::Truncated)
    };
    edits.push(Edit::Set("Expires", EXPIRED.to_string()));
    edits.extend(removed(x.response, x, &TRUNCATED_AWAY));
    FeedOutcome { status, edits, body: truncated, coding: IM_FEED, kind, entries: n, sent }
}

/// Does the request accept the gzip content coding (any of its
/// `Accept-Encoding` lines, q > 0)?
fn accepts_gzip(request: &[Field<'_>]) -> bool {
    fields::lines(request, "Accept-Encoding").any(|v| crate::http::accepts(&String::from_utf8_lossy(v), "gzip"))
}

/// `body` gzip'd at level 6 (a 226 is a few entries: cheap), when smaller.
fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut z = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 3 + 64), flate2::Compression::new(6));
    z.write_all(body).ok()?;
    let out = z.finish().ok()?;
    (out.len() < body.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FEED: &str = r#"<?xml version="1.0"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>
  <entry><id>3</id><updated>c</updated></entry>
  <entry><id>2</id><updated>b</updated></entry>
  <entry><id>1</id><updated>a</updated></entry>
</feed>
"#;

    fn older() -> String {
        FEED.replace("  <entry><id>3</id><updated>c</updated></entry>\n", "")
    }

    fn tag(doc: &str) -> String {
        Etaglet::of(doc.as_bytes(), parse(doc.as_bytes()).ok().as_ref()).to_header()
    }

    fn run<'b>(cfg: &FeedConfig, req: &[(&str, &str)], resp: &[(&str, &str)], body: &'b str) -> FeedOutcome<'b> {
        let req: Vec<Field> = req.iter().map(|(n, v)| Field::new(n, v)).collect();
        let resp: Vec<Field> = resp.iter().map(|(n, v)| Field::new(n, v)).collect();
        let x = Exchange { method: b"GET", uri: b"/feed", request: &req, status: 200, response: &resp, content_length: None };
        process(cfg, &x, body.as_bytes())
    }

    fn value<'a>(o: &'a FeedOutcome, name: &str) -> Option<&'a str> {
        o.edits.iter().find_map(|e| match e {
            Edit::Set(n, v) if n.eq_ignore_ascii_case(name) => Some(v.as_str()),
            _ => None,
        })
    }

    const ATOM: (&str, &str) = ("Content-Type", "application/atom+xml; charset=utf-8");

    #[test]
    fn explicit_feed_im() {
        let cfg = FeedConfig { explicit: true, ..FeedConfig::default() };
        let old = tag(&older());
        let o = run(&cfg, &[("A-IM", "vcdiff, feed"), ("If-None-Match", &old)], &[ATOM, ("Last-Modified", "x"), ("ETag", "\"o\"")], FEED);
        assert_eq!((o.status, &o.kind, o.coding, o.sent, o.entries), (226, &FeedKind::ImUsed, "feed", 1, 3));
        assert_eq!(value(&o, "IM"), Some("feed"));
        assert_eq!(value(&o, "ETag"), Some(tag(FEED).as_str()));
        assert_eq!(value(&o, "Cache-Control"), Some("no-store"));
        assert_eq!(value(&o, "Vary"), Some("A-IM, If-None-Match, Accept-Encoding"));
        assert_eq!(value(&o, "Expires"), Some(EXPIRED));
        assert_eq!(value(&o, "Content-Encoding"), None, "no Accept-Encoding: identity");
        assert!(o.edits.contains(&Edit::Remove("Last-Modified")));
        let body = std::str::from_utf8(&o.body).unwrap();
        assert!(body.contains("<id>3</id>") && !body.contains("<id>2</id>"), "{body}");
        // A reader that takes gzip gets the 226 gzip'd (no server filter
        // compresses a 226), when that is smaller.
        let big = FEED.replace("<id>3</id>", &format!("<id>3</id><content>{}</content>", "news ".repeat(100)));
        for (ae, gz) in [("gzip", true), ("deflate, gzip;q=0.5", true), ("gzip;q=0", false), ("br", false)] {
            let o = run(&cfg, &[("A-IM", "feed"), ("If-None-Match", &old), ("Accept-Encoding", ae)], &[ATOM], &big);
            assert_eq!((o.status, value(&o, "Content-Encoding")), (226, gz.then_some("gzip")), "{ae}");
            let body = if gz {
                let mut d = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&o.body[..]), &mut d).unwrap();
                d
            } else {
                o.body.to_vec()
            };
            let body = String::from_utf8(body).unwrap();
            assert!(body.contains("news news") && !body.contains("<id>2</id>"), "{ae}: {body}");
        }
        // The same request without A-IM: the whole feed, tagged.
        let o = run(&cfg, &[("If-None-Match", &old)], &[ATOM], FEED);
        assert_eq!((o.status, &o.kind), (200, &FeedKind::Whole(Whole::NotAsked)));
        assert_eq!(value(&o, "ETag"), Some(tag(FEED).as_str()));
        assert_eq!(value(&o, "Vary"), Some("A-IM, If-None-Match"));
        assert!(matches!(o.body, Cow::Borrowed(_)));
        // Through a proxy, explicit still works (a shared cache never
        // holds a response to A-IM, so the tag is the reader's).
        let o = run(&cfg, &[("A-IM", "feed"), ("If-None-Match", &old), ("Via", "1.1 squid")], &[ATOM], FEED);
        assert_eq!(o.status, 226);
        // A first poll with A-IM: whole, private.
        let o = run(&cfg, &[("A-IM", "feed")], &[ATOM, ("Cache-Control", "max-age=60")], FEED);
        assert_eq!((o.status, value(&o, "Cache-Control")), (200, Some("max-age=60, private")));
        let o = run(&cfg, &[("A-IM", "feed")], &[ATOM, ("Cache-Control", "Private")], FEED);
        assert_eq!(value(&o, "Cache-Control"), None);
        // q=0 refuses it.
        let o = run(&cfg, &[("A-IM", "feed;q=0"), ("If-None-Match", &old)], &[ATOM], FEED);
        assert_eq!(o.kind, FeedKind::Whole(Whole::NotAsked));
    }

    #[test]
    fn implicit_truncation() {
        let cfg = FeedConfig { implicit: true, ..FeedConfig::default() };
        let old = tag(&older());
        let o = run(&cfg, &[("If-None-Match", &format!("W/{old}"))], &[ATOM, ("Content-Length", "300"), ("Vary", "Accept-Encoding")], FEED);
        assert_eq!((o.status, &o.kind, o.coding), (200, &FeedKind::Truncated, "feed"));
        assert_eq!(value(&o, "Cache-Control"), Some("private, max-age=0"));
        assert_eq!(value(&o, "Vary"), Some("Accept-Encoding, If-None-Match"));
        assert!(o.edits.contains(&Edit::Remove("Content-Length")));
        // With A-IM (of another kind): not implicit.
        let o = run(&cfg, &[("A-IM", "vcdiff"), ("If-None-Match", &old)], &[ATOM], FEED);
        assert_eq!(o.kind, FeedKind::Whole(Whole::NotAsked));
        // Through a proxy: the tag may be the proxy's own, for a reader
        // holding nothing.
        let o = run(&cfg, &[("If-None-Match", &old), ("Via", "1.1 squid")], &[ATOM], FEED);
        assert_eq!((o.status, &o.kind), (200, &FeedKind::Whole(Whole::Proxied)));
        assert_eq!(value(&o, "Cache-Control"), None);
        // A-IM: feed while only the implicit mode is on: whole.
        let o = run(&cfg, &[("A-IM", "feed"), ("If-None-Match", &old)], &[ATOM], FEED);
        assert_eq!(o.kind, FeedKind::Whole(Whole::NotAsked));
    }

    #[test]
    fn not_modified_and_doubt() {
        let cfg = FeedConfig { explicit: true, implicit: true, ..FeedConfig::default() };
        let cur = tag(FEED);
        let old = tag(&older());
        for inm in [cur.clone(), format!("W/{cur}"), format!("\"x\", {cur}"), "*".to_string()] {
            let o = run(&cfg, &[("If-None-Match", &inm), ("A-IM", "feed")], &[ATOM, ("Content-Length", "9")], FEED);
            assert_eq!((o.status, &o.kind, o.body.len()), (304, &FeedKind::NotModified, 0), "{inm}");
            assert_eq!(value(&o, "ETag"), Some(cur.as_str()));
            assert!(o.edits.contains(&Edit::Remove("Content-Length")));
        }
        let two = format!("{old}, \"other\"");
        let hundred = vec![old.as_str(); 100].join(", ");
        for (inm, why) in [
            (two.as_str(), Whole::Several),
            (hundred.as_str(), Whole::Several),
            ("\"5f-1\"", Whole::Foreign),
            ("\"hf1.%%%\"", Whole::Foreign),
            (&tag("<feed xmlns=\"http://www.w3.org/2005/Atom\"><entry><id>9</id></entry></feed>"), Whole::NothingHeld),
        ] {
            for a_im in [true, false] {
                let req: Vec<(&str, &str)> =
                    if a_im { vec![("A-IM", "feed"), ("If-None-Match", inm)] } else { vec![("If-None-Match", inm)] };
                let o = run(&cfg, &req, &[ATOM, ("Cache-Control", "public, max-age=60, s-maxage=600")], FEED);
                assert_eq!((o.status, &o.kind), (200, &FeedKind::Whole(why.clone())), "{inm}");
                assert_eq!(value(&o, "ETag"), Some(cur.as_str()));
                assert_eq!(value(&o, "Vary"), Some("A-IM, If-None-Match"));
                // Answering A-IM: never stored by a shared cache.
                assert_eq!(value(&o, "Cache-Control"), a_im.then_some("max-age=60, private"));
            }
        }
        let o = run(&cfg, &[("If-None-Match", &old)], &[ATOM, ("Cache-Control", "max-age=60, no-transform")], FEED);
        assert_eq!(o.kind, FeedKind::Whole(Whole::NoTransform));
        let o = run(&cfg, &[("If-None-Match", &old), ("Cache-Control", "no-transform")], &[ATOM], FEED);
        assert_eq!(o.kind, FeedKind::Whole(Whole::NoTransform));
        // An unparsable body still gets a (digest-only) tag and its 304.
        let junk = "<feed xmlns=\"http://www.w3.org/2005/Atom\"><entry>";
        let o = run(&cfg, &[("If-None-Match", &old)], &[ATOM], junk);
        assert!(matches!(o.kind, FeedKind::Whole(Whole::Unparsable(_))));
        let t = value(&o, "ETag").unwrap().to_string();
        assert_eq!(run(&cfg, &[("If-None-Match", &t)], &[ATOM], junk).status, 304);
    }

    #[test]
    fn skipped_responses_are_untouched() {
        let cfg = FeedConfig { explicit: true, implicit: true, ..FeedConfig::default() };
        for resp in [
            vec![("Content-Type", "text/html")],
            vec![ATOM, ("Content-Encoding", "gzip")],
            vec![ATOM, ("Content-Length", "99999999")],
            vec![],
        ] {
            let o = run(&cfg, &[("If-None-Match", "\"x\"")], &resp, FEED);
            assert!(matches!(o.kind, FeedKind::Skipped(_)) && o.edits.is_empty(), "{resp:?}");
        }
        let o = run(&FeedConfig::default(), &[], &[ATOM], FEED);
        assert_eq!(o.kind, FeedKind::Skipped(Skip::Off));
        let req: Vec<Field> = vec![Field::new("Range", "bytes=0-1")];
        let resp = [Field::new("Content-Type", "application/rss+xml")];
        let x = Exchange { method: b"GET", uri: b"/", request: &req, status: 200, response: &resp, content_length: None };
        assert_eq!(check(&cfg, &x), Err(Skip::Range));
        let x = Exchange { method: b"HEAD", request: &[], ..x };
        assert_eq!(check(&cfg, &x), Err(Skip::Method));
    }
}
