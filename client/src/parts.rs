//! Composite pages: when the proxy fetches or revalidates an HTML page, it
//! revalidates the stored parts the page references (`<img src>`, `<script
//! src>`, `<link rel=stylesheet href>`) at once, a few at a time, so that
//! the browser's requests for them, a moment later, find them fresh (a HIT,
//! no round trip) when their freshness allows it. The status page shows,
//! per page, which parts changed at its last revalidation.
//!
//! Bounds: the first [`MAX_SCAN`] bytes of the page are scanned, at most
//! [`MAX_PARTS`] references kept, [`CONCURRENCY`] revalidations at a time.
//! Only parts already stored, stale, and usable for a request without the
//! user's headers (their Vary names nothing the user sent) are revalidated,
//! and without any user header: no cookie or credential is sent on a
//! prefetch, and what comes back is stored under the shared cache's rules.

use crate::fetch::{Fetcher, Source};
use crate::log::Logger;
use hsync_core::hash::xxh3_64;
use http::{HeaderMap, Uri};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Bytes of a page scanned for references.
pub const MAX_SCAN: usize = 1 << 20;
/// References kept per page.
pub const MAX_PARTS: usize = 64;
/// Parts revalidated at a time.
pub const CONCURRENCY: usize = 4;
/// The access-log result of a part revalidated with its page.
pub const PREFETCH: &str = "PREFETCH";

/// One part revalidated with its page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Part {
    pub url: String,
    /// The fetcher's result (`REVALIDATED`, `DELTA`, `MISS`, ...), or `ERROR`.
    pub result: &'static str,
    /// Whether the part's body differs from the one stored before.
    pub changed: bool,
}

/// A page's last parts revalidation.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// Unix seconds it finished.
    pub at: u64,
    /// References found in the page (after the bounds).
    pub referenced: usize,
    /// The stored, stale parts revalidated.
    pub parts: Vec<Part>,
}

impl Report {
    pub fn changed(&self) -> impl Iterator<Item = &Part> {
        self.parts.iter().filter(|p| p.changed)
    }
}

/// The value of attribute `name` in a tag's attribute text (lowercased copy in `lower`, original in `orig`).
fn attr(orig: &str, lower: &str, name: &str) -> Option<String> {
    let b = lower.as_bytes();
    let mut i = 0;
    while i < b.len() {
        // Skip to an attribute name.
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' && b[i] != b'>' {
            i += 1;
        }
        let key = &lower[start..i];
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = None;
        if i < b.len() && b[i] == b'=' {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                let q = b[i];
                let vs = i + 1;
                let ve = b[vs..].iter().position(|&c| c == q).map(|p| vs + p).unwrap_or(b.len());
                value = Some(&orig[vs..ve]);
                i = ve + 1;
            } else {
                let vs = i;
                while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'>' {
                    i += 1;
                }
                value = Some(&orig[vs..i]);
            }
        }
        if key == name {
            return value.map(|v| v.replace("&amp;", "&"));
        }
        if start == i {
            i += 1;
        }
    }
    None
}

/// Where the tag starting at `at` ends (its `>`, outside quotes), or the end.
fn tag_end(b: &[u8], at: usize) -> usize {
    let mut quote = None;
    for (i, &c) in b.iter().enumerate().skip(at) {
        match (quote, c) {
            (None, b'>') => return i,
            (None, b'"' | b'\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
    }
    b.len()
}

/// Does `href` name a scheme other than http(s) (`data:`, `javascript:`, ...)?
fn other_scheme(href: &str) -> bool {
    let h = href.trim();
    match h.find([':', '/', '?', '#']) {
        Some(i) if h.as_bytes()[i] == b':' => {
            let scheme = h[..i].to_ascii_lowercase();
            scheme != "http" && scheme != "https"
        }
        _ => false,
    }
}

/// The parts `html` (the page at `page`) references: images, scripts and
/// style sheets, resolved to absolute http(s) URLs, without duplicates, in
/// order, at most [`MAX_PARTS`], from the first [`MAX_SCAN`] bytes.
pub fn references(page: &Uri, html: &[u8]) -> Vec<Uri> {
    let html = &html[..html.len().min(MAX_SCAN)];
    let orig = String::from_utf8_lossy(html);
    // ASCII lowercasing keeps byte offsets (String::from_utf8_lossy may not, so work on its bytes).
    let lower = orig.to_ascii_lowercase();
    let lb = lower.as_bytes();
    let mut out: Vec<Uri> = Vec::new();
    let mut i = 0;
    while let Some(p) = lb[i..].iter().position(|&c| c == b'<') {
        let at = i + p;
        if lb[at..].starts_with(b"<!--") {
            i = lower[at + 4..].find("-->").map(|e| at + 4 + e + 3).unwrap_or(lb.len());
            continue;
        }
        let end = tag_end(lb, at);
        let name_end = lb[at + 1..end].iter().position(|c| c.is_ascii_whitespace() || *c == b'/').map(|e| at + 1 + e).unwrap_or(end);
        let name = &lower[at + 1..name_end];
        let (a_orig, a_lower) = (&orig[name_end..end], &lower[name_end..end]);
        let href = match name {
            "img" | "script" => attr(a_orig, a_lower, "src"),
            "link" => attr(a_orig, a_lower, "rel")
                .filter(|r| r.split_ascii_whitespace().any(|t| t.eq_ignore_ascii_case("stylesheet")))
                .and_then(|_| attr(a_orig, a_lower, "href")),
            _ => None,
        };
        if name == "script" || name == "style" {
            // Skip the element's content (it may hold `<` of its own).
            let close = format!("</{name}");
            i = lower[end.min(lb.len())..].find(&close).map(|e| end + e).unwrap_or(lb.len());
        } else {
            i = end.min(lb.len());
        }
        if let Some(u) = href.filter(|h| !other_scheme(h)).and_then(|h| crate::dict::resolve(page, &h)) {
            if matches!(u.scheme_str(), Some("http") | Some("https")) && u != *page && !out.contains(&u) {
                out.push(u);
                if out.len() >= MAX_PARTS {
                    break;
                }
            }
        }
        if i >= lb.len() {
            break;
        }
    }
    out
}

/// Revalidates the stored, stale parts `html` references, [`CONCURRENCY`]
/// at a time, without user headers; writes a `PREFETCH` access line for
/// each (client `-`). Returns what happened.
pub async fn revalidate(fetcher: Arc<Fetcher>, page: &Uri, html: &[u8], log: Arc<Logger>) -> Report {
    let refs = references(page, html);
    let none = HeaderMap::new();
    let mut todo = Vec::new();
    for u in &refs {
        // Stored, stale, and usable for a request without user headers.
        if let Some((meta, false)) = fetcher.stored_meta_for(u, &none) {
            todo.push((u.clone(), meta.body_xxh3));
        }
    }
    let sem = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut set = tokio::task::JoinSet::new();
    for (i, (u, before)) in todo.into_iter().enumerate() {
        let (f, sem, log) = (fetcher.clone(), sem.clone(), log.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let (at, start) = (SystemTime::now(), Instant::now());
            let (r, joined) = f.fetch_joined(&u, &HeaderMap::new(), None).await;
            let (status, result, wire, changed) = match &r {
                Ok(o) => {
                    let changed = o.status == http::StatusCode::OK && xxh3_64(&o.body) != before;
                    (o.status.as_u16(), o.source, if joined { 0 } else { o.wire_bytes }, changed)
                }
                Err(_) => (502, Source::Pass, 0, false),
            };
            log.access(at, &format!("- GET {u} {status} {PREFETCH} {wire} 0 {}", start.elapsed().as_millis()));
            let result = if r.is_ok() { result.as_str() } else { "ERROR" };
            (i, Part { url: u.to_string(), result, changed })
        });
    }
    let mut parts = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(p) = r {
            parts.push(p);
        }
    }
    parts.sort_by_key(|p| p.0);
    Report { at: crate::cache::now_secs(), referenced: refs.len(), parts: parts.into_iter().map(|p| p.1).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_images_scripts_and_style_sheets() {
        let page: Uri = "http://example.org/blog/post.html".parse().unwrap();
        let html = br#"<html><head><link rel="stylesheet" href="/s.css"><link rel=icon href=/favicon.ico>
            <LINK REL='alternate stylesheet' HREF='alt.css'><script src="js/app.js?v=1&amp;x=2"></script>
            <script>if (a < b) { document.write('<img src="no.png">') }</script></head>
            <body><!-- <img src="commented.png"> --><img alt="x > y" src=../img/a.png><img src="/s.css">
            <img src="data:image/png;base64,AAAA"><img src="http://cdn.example.net/b.jpg#frag"><img src=''></body>"#;
        let got: Vec<String> = references(&page, html).iter().map(|u| u.to_string()).collect();
        assert_eq!(
            got,
            vec![
                "http://example.org/s.css",
                "http://example.org/blog/alt.css",
                "http://example.org/blog/js/app.js?v=1&x=2",
                "http://example.org/img/a.png",
                "http://cdn.example.net/b.jpg",
            ]
        );
    }

    #[test]
    fn bounded() {
        let page: Uri = "http://example.org/".parse().unwrap();
        let html: String = (0..200).map(|i| format!("<img src=/i{i}.png>")).collect();
        assert_eq!(references(&page, html.as_bytes()).len(), MAX_PARTS);
        assert!(references(&page, b"<img src=").is_empty());
        assert!(references(&page, b"<").is_empty());
    }
}
