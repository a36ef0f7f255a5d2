//! The notices the proxy puts at the top of HTML pages it serves other than
//! as the origin sent them: a stale copy (origin unreachable, or slow with
//! `--optimistic`, or within `stale-while-revalidate`), a page that moved, a
//! page its origin removed, and the kept copy of a removed page. One banner
//! style, one insertion point (right after `<body ...>`, else at the start).

use crate::proxy::fmt_time;

/// What a notice says.
#[derive(Debug, Clone, Copy)]
pub enum Notice<'a> {
    /// The origin could not be reached: the copy from `fetched_at` may be out of date.
    Unreachable { fetched_at: u64 },
    /// The origin was slow (or the page allows stale-while-revalidate): the
    /// copy from `fetched_at` is shown while the proxy fetches the current one.
    Updating { fetched_at: u64 },
    /// This page was reached by a permanent redirect from `from`.
    Moved { from: &'a str, to: &'a str },
    /// The origin answered 404/410 for a page the user had; `copy` is the
    /// proxy-internal URL of the copy from `fetched_at`.
    Removed { copy: &'a str, fetched_at: u64 },
    /// The kept copy of a removed page (`url`), from `fetched_at`.
    RemovedCopy { url: &'a str, fetched_at: u64 },
}

/// HTML-escapes text for element content and quoted attributes.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// The banner for `n`, a `<div>` fixed at the top of the page.
pub fn html(n: Notice<'_>) -> String {
    let (id, text) = match n {
        Notice::Unreachable { fetched_at } => (
            "hsync-stale-notice",
            format!("hsync: the site could not be reached; this copy from {} may be out of date.", fmt_time(fetched_at)),
        ),
        Notice::Updating { fetched_at } => (
            "hsync-stale-notice",
            format!(
                "hsync: the site is slow to answer; this is the copy from {}, being updated (reload for the current version).",
                fmt_time(fetched_at)
            ),
        ),
        Notice::Moved { from, to } => (
            "hsync-moved-notice",
            format!(
                "hsync: this page moved from <a href=\"{0}\">{1}</a> to {2}; update your links and bookmarks.",
                esc(from),
                esc(from),
                esc(to)
            ),
        ),
        Notice::Removed { copy, fetched_at } => (
            "hsync-removed-notice",
            format!(
                "hsync: this page was removed by its author. <a href=\"{}\">The copy you saw on {}</a> is kept by the proxy.",
                esc(copy),
                fmt_time(fetched_at)
            ),
        ),
        Notice::RemovedCopy { url, fetched_at } => (
            "hsync-removed-notice",
            format!("hsync: {} was removed by its author; this is the copy you saw on {}.", esc(url), fmt_time(fetched_at)),
        ),
    };
    format!(
        "<div id=\"{id}\" style=\"position:fixed;top:0;left:0;right:0;z-index:2147483647;\
         background:#fff3cd;color:#664d03;border-bottom:1px solid #e0c060;font:14px/1.5 system-ui,sans-serif;\
         padding:6px 12px;text-align:center\">{text}</div>"
    )
}

/// `body` with `snippet` inserted right after `<body ...>` (searched in the
/// first MiB, any case), or at the start when there is none.
pub fn inject(body: &[u8], snippet: &str) -> Vec<u8> {
    let lower: Vec<u8> = body.iter().take(1 << 20).map(|b| b.to_ascii_lowercase()).collect();
    let at = find(&lower, b"<body").and_then(|i| lower[i..].iter().position(|&b| b == b'>').map(|j| i + j + 1)).unwrap_or(0);
    let mut out = Vec::with_capacity(body.len() + snippet.len());
    out.extend_from_slice(&body[..at]);
    out.extend_from_slice(snippet.as_bytes());
    out.extend_from_slice(&body[at..]);
    out
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// Percent-encodes a URL for a query parameter.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` (and `+` as a space) in a query parameter.
pub fn query_unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The value of parameter `name` in a query string, decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| query_unescape(v)).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_round_trip() {
        let u = "http://example.org/a b?x=1&y=é#f";
        let q = format!("u={}&v=12", query_escape(u));
        assert_eq!(query_param(&q, "u").as_deref(), Some(u));
        assert_eq!(query_param(&q, "v").as_deref(), Some("12"));
        assert_eq!(query_param(&q, "w"), None);
    }

    #[test]
    fn notices_escape_urls() {
        let h = html(Notice::Moved { from: "http://a/<x>", to: "http://b/\"" });
        assert!(h.contains("&lt;x&gt;") && h.contains("&quot;") && !h.contains("<x>"));
        let h = html(Notice::Removed { copy: "/.hsync/copy?u=x", fetched_at: 0 });
        assert!(h.contains("1970-01-01 00:00 UTC") && h.contains("removed by its author"));
    }
}
