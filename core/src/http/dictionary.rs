//! Compression dictionaries for browsers (RFC 9842): which responses go
//! into the version store, how a page announces the dictionary a browser
//! should keep, which request names one the store holds (`dcz`), and the
//! dictionary URLs the modules serve from the store.
//!
//! Chromium keeps a dictionary only while its response is fresh. So:
//! - a *fresh* response (`max-age` > 0, or `Expires` after `Date`) is its own
//!   dictionary: `Use-As-Dictionary: match="<its path>"`;
//! - a response that is not fresh (most generated pages) announces the
//!   latest stored version of the same page under a content-addressed URL
//!   ([`DICTIONARY_PREFIX`]`<sha-256 hex>`), which the module serves from the
//!   store, immutable for a year: a `Link` header, and for HTML the
//!   `<link rel="compression-dictionary">` element inserted into the head
//!   (Chromium fetches the element's dictionary at idle, not the header's).

use super::fields::{self, Field};
use crate::store::{self, Hash, Meta, Store};
use std::sync::Arc;

/// Where the modules serve stored versions as dictionaries.
pub const DICTIONARY_PREFIX: &str = "/.well-known/hsync/dictionary/";
/// How long a served dictionary stays fresh (it never changes: its URL is its hash).
pub const DICTIONARY_MAX_AGE: u64 = 365 * 24 * 3600;
/// The content coding (RFC 9842 §4).
pub const DCZ: &str = "dcz";

/// The dictionary settings of a location.
#[derive(Clone)]
pub struct DictConfig {
    pub store: Arc<Store>,
    /// The URL pattern announced for a page (`match`); `None`: the page's own path.
    pub pattern: Option<String>,
}

impl std::fmt::Debug for DictConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DictConfig").field("store", &self.store.dir()).field("pattern", &self.pattern).finish()
    }
}

/// The path of a request target (without its query).
pub fn path_of(uri: &[u8]) -> &[u8] {
    let end = uri.iter().position(|&b| b == b'?' || b == b'#').unwrap_or(uri.len());
    &uri[..end]
}

/// A path as a URL pattern (RFC 9842 §2.1.1 uses the URL Pattern syntax,
/// where `* : ( ) { } + ? \` are special): each escaped.
pub fn pattern_for_path(path: &str) -> String {
    let mut p = String::with_capacity(path.len());
    for c in path.chars() {
        if "*:(){}+?\\".contains(c) {
            p.push('\\');
        }
        p.push(c);
    }
    p
}

/// Is the response fresh for a browser's cache: `max-age` > 0 on any
/// Cache-Control line, or (without max-age) an `Expires` later than `Date`?
pub fn fresh(response: &[Field<'_>]) -> bool {
    for item in fields::list(response, "Cache-Control") {
        if fields::token(item).eq_ignore_ascii_case(b"max-age") {
            let v = item.splitn(2, |&b| b == b'=').nth(1).map(fields::trim).unwrap_or(b"");
            let v = v.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(v);
            return std::str::from_utf8(v).ok().and_then(|s| s.parse::<u64>().ok()).is_some_and(|n| n > 0);
        }
    }
    let date = |name| fields::lines(response, name).next().and_then(|v| parse_http_date(std::str::from_utf8(v).ok()?));
    matches!((date("Expires"), date("Date")), (Some(e), Some(d)) if e > d)
}

/// Seconds since the epoch of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn parse_http_date(s: &str) -> Option<i64> {
    let p: Vec<&str> = s.split_whitespace().collect();
    if p.len() != 6 || p[5] != "GMT" {
        return None;
    }
    let day: i64 = p[1].parse().ok()?;
    let month =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"].iter().position(|m| *m == p[2])? as i64 + 1;
    let year: i64 = p[3].parse().ok()?;
    let t: Vec<i64> = p[4].split(':').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    if t.len() != 3 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + t[0] * 3600 + t[1] * 60 + t[2])
}

/// May the response's body go into the store (RFC 9842 §7-8 and the
/// privacy of shared caches): no `Set-Cookie`, no `private` or `no-store`,
/// not an answer to a request with `Authorization`.
pub fn storable(request: &[Field<'_>], response: &[Field<'_>]) -> bool {
    !fields::has(request, "Authorization")
        && !fields::has(response, "Set-Cookie")
        && !fields::list(response, "Cache-Control").any(|d| {
            let t = fields::token(d);
            t.eq_ignore_ascii_case(b"private") || t.eq_ignore_ascii_case(b"no-store")
        })
}

/// The dictionary a request names (`Available-Dictionary: :<base64>:`, a
/// structured-field byte sequence of the SHA-256), if well formed.
pub fn available_dictionary(request: &[Field<'_>]) -> Option<Hash> {
    let mut lines = fields::lines(request, "Available-Dictionary");
    let v = fields::trim(lines.next()?);
    if lines.next().is_some() {
        return None;
    }
    let b64 = v.strip_prefix(b":")?.strip_suffix(b":")?;
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    raw.try_into().ok()
}

/// The `Use-As-Dictionary` value for a pattern; HTML pages are dictionaries
/// for navigations (`match-dest=("document")`).
pub fn use_as_dictionary(pattern: &str, html: bool) -> String {
    let quoted = pattern.replace('\\', "\\\\").replace('"', "\\\"");
    if html {
        format!("match=\"{quoted}\", match-dest=(\"document\")")
    } else {
        format!("match=\"{quoted}\"")
    }
}

/// How long a page that is not fresh keeps linking the version a
/// returning browser names, instead of the latest one (a day: a browser
/// that comes back within a day pays no new dictionary download, and one
/// day of a page's changes still codes to a small delta; see
/// docs/protocol.md §7).
pub const KEEP_LINKED: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The URL of a stored version.
pub fn dictionary_url(h: &Hash) -> String {
    format!("{DICTIONARY_PREFIX}{}", store::hex(h))
}

/// Is the response HTML (by its Content-Type)?
pub fn is_html(response: &[Field<'_>]) -> bool {
    fields::lines(response, "Content-Type").next().is_some_and(|v| {
        let t = fields::token(fields::split_list(v).next().unwrap_or(b""));
        let t = t.split(|&b| b == b';').next().unwrap_or(b"");
        fields::trim(t).eq_ignore_ascii_case(b"text/html")
    })
}

/// The answer to a request for a dictionary URL.
pub struct Served {
    pub status: u32,
    pub fields: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// Serves `uri` if it is a dictionary URL: the stored version, verified,
/// immutable, with its `Use-As-Dictionary`; a 404 when the store no longer
/// holds it. `None`: not a dictionary URL.
pub fn serve(cfg: &DictConfig, method: &[u8], uri: &[u8]) -> Option<Served> {
    let path = std::str::from_utf8(path_of(uri)).ok()?;
    let hex = path.strip_prefix(DICTIONARY_PREFIX)?;
    let head = method == b"HEAD";
    if method != b"GET" && !head {
        return Some(Served { status: 405, fields: vec![("Allow", "GET, HEAD".into()), ("Content-Length", "0".into())], body: Vec::new() });
    }
    match store::unhex(hex).and_then(|h| cfg.store.get(&h).map(|v| (h, v))) {
        Some((h, (Meta { content_type, pattern }, body))) => {
            let html = content_type.to_ascii_lowercase().starts_with("text/html");
            let fields = vec![
                ("Content-Type", content_type),
                ("Cache-Control", format!("public, max-age={DICTIONARY_MAX_AGE}, immutable")),
                ("ETag", format!("\"{}\"", store::hex(&h))),
                ("Use-As-Dictionary", use_as_dictionary(&pattern, html)),
                ("Content-Length", body.len().to_string()),
            ];
            Some(Served { status: 200, fields, body: if head { Vec::new() } else { body } })
        }
        None => Some(Served {
            status: 404,
            fields: vec![("Content-Type", "text/plain".into()), ("Cache-Control", "no-store".into())],
            body: if head { Vec::new() } else { b"hsync: no such dictionary\n".to_vec() },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness() {
        assert!(fresh(&[Field::new("Cache-Control", "public, max-age=3600")]));
        assert!(!fresh(&[Field::new("Cache-Control", "max-age=0")]));
        assert!(!fresh(&[Field::new("Cache-Control", "no-cache")]));
        assert!(!fresh(&[]));
        let d = Field::new("Date", "Wed, 02 Dec 2026 10:00:00 GMT");
        assert!(fresh(&[d, Field::new("Expires", "Wed, 02 Dec 2026 11:00:00 GMT")]));
        assert!(!fresh(&[d, Field::new("Expires", "Wed, 02 Dec 2026 09:00:00 GMT")]));
        assert!(!fresh(&[d, Field::new("Expires", "0")]));
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784111777));
    }

    #[test]
    fn request_and_response_fields() {
        let h = crate::store::sha256(b"x");
        use base64::Engine;
        let v = format!(":{}:", base64::engine::general_purpose::STANDARD.encode(h));
        assert_eq!(available_dictionary(&[Field::new("Available-Dictionary", &v)]), Some(h));
        assert_eq!(available_dictionary(&[Field::new("Available-Dictionary", "abc")]), None);
        assert!(storable(&[], &[Field::new("Cache-Control", "max-age=5")]));
        assert!(!storable(&[Field::new("Authorization", "x")], &[]));
        assert!(!storable(&[], &[Field::new("Set-Cookie", "a=b")]));
        assert!(!storable(&[], &[Field::new("Cache-Control", "no-cache"), Field::new("Cache-Control", "private")]));
        assert_eq!(pattern_for_path("/a(b)/c?"), "/a\\(b\\)/c\\?");
        assert_eq!(use_as_dictionary("/p", true), "match=\"/p\", match-dest=(\"document\")");
        assert!(is_html(&[Field::new("Content-Type", "text/html; charset=utf-8")]));
        assert!(!is_html(&[Field::new("Content-Type", "application/atom+xml")]));
        assert_eq!(path_of(b"/a/b?x=1"), b"/a/b");
    }
}
