//! Feeds: only the entries a reader has not seen (docs/protocol.md §8).
//!
//! A feed reader polls an Atom or RSS URL; when one entry is added, the
//! whole feed goes out again. Here the server gives every feed response an
//! ETag that names the entries it holds ([`etag`], "ETaglets"), so that
//! the reader's `If-None-Match` says which entries it has, and answers
//!
//! - `A-IM: feed` (RFC 3229, the "feed" instance-manipulation) with
//!   `226 IM Used` and a document that keeps the feed's head but only the
//!   entries the reader lacks (explicit, `hsync_feed on`);
//! - optionally a request without `A-IM` with a `200` carrying the same
//!   document (implicit, `hsync_feed_implicit on`: `Vary: If-None-Match`,
//!   never stored by a shared cache);
//! - and with `304` when the reader's tag names the current version.
//!
//! Parsing ([`parse`]) is one streaming pass of quick-xml; truncating
//! copies byte ranges of the original document. The decision takes two
//! steps because the ETag depends on the body ([`decide`]): the server
//! holds a feed response's headers, buffers its body (at most
//! [`crate::limits::FEED_MAX_BYTES`]), then calls [`process`].
//!
//! What a server module does, per response:
//! 1. when the response headers are ready, [`check`] with the same
//!    [`crate::http::Exchange`] it builds for [`crate::http::decide`];
//!    `Err`: nothing to do for feeds (send as usual);
//! 2. `Ok`: hold the headers and buffer the body; if it grows past
//!    [`crate::limits::FEED_MAX_BYTES`], give up: send the headers
//!    unchanged, the buffered bytes, then the rest as it comes;
//! 3. at the end of the body, [`process`]: send [`FeedOutcome::status`]
//!    (200, 226 or 304: a 304 is header-only), apply
//!    [`FeedOutcome::edits`] as for `decide`'s, send [`FeedOutcome::body`]
//!    with its length, and set the coding note to [`FeedOutcome::coding`]
//!    (`feed` or empty). A truncated body or a 304 must not be coded by
//!    hsync or dcz afterwards (226 and 304 are not 200, and a truncated 200
//!    is `private`, which the dictionary store refuses); a whole 200 may be,
//!    its ETag then weakened as usual (`W/"hf1…"` is still recognized).

pub mod decide;
pub mod etag;
pub mod parse;
pub mod seen;

pub use decide::{accepts_feed, check, process, FeedKind, FeedOutcome, Skip, Whole};
pub use etag::{Etaglet, IfNoneMatch};
pub use parse::{parse, Entry, Feed, Kind, Source};

/// The media types a feed is recognized by, unless configured: Atom, RSS,
/// and RSS as Debian's /etc/mime.types names `.rss` (Apache's static files).
pub const DEFAULT_TYPES: [&str; 3] = ["application/atom+xml", "application/rss+xml", "application/x-rss+xml"];

/// A server's feed settings (nginx `hsync_feed`, `hsync_feed_implicit`,
/// `hsync_feed_types`; Apache `HsyncFeed`, `HsyncFeedImplicit`,
/// `HsyncFeedTypes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedConfig {
    /// Answer `A-IM: feed` with `226 IM Used` (default off).
    pub explicit: bool,
    /// Answer a request without `A-IM` whose `If-None-Match` names an
    /// older version with a truncated `200` (default off).
    pub implicit: bool,
    /// Media types (lowercase, no parameters) that are feeds.
    pub types: Vec<String>,
}

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig { explicit: false, implicit: false, types: DEFAULT_TYPES.iter().map(|t| t.to_string()).collect() }
    }
}

impl FeedConfig {
    /// A configuration from a server's settings, checked, with the same
    /// words for both servers: `types` is a space- or comma-separated list
    /// of media types, empty for the default.
    pub fn from_settings(explicit: bool, implicit: bool, types: &str) -> Result<FeedConfig, String> {
        let mut cfg = FeedConfig { explicit, implicit, ..FeedConfig::default() };
        let listed: Vec<String> =
            types.split(|c: char| c.is_ascii_whitespace() || c == ',').filter(|t| !t.is_empty()).map(|t| t.to_ascii_lowercase()).collect();
        for t in &listed {
            let ok = t.split_once('/').is_some_and(|(a, b)| {
                let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
                !a.is_empty() && !b.is_empty() && a.chars().all(tchar) && b.chars().all(tchar)
            });
            if !ok {
                return Err(format!("\"{t}\" is not a media type (type/subtype)"));
            }
        }
        if !listed.is_empty() {
            cfg.types = listed;
        }
        Ok(cfg)
    }

    /// Is a response with this `Content-Type` value a feed?
    pub fn is_feed_type(&self, content_type: Option<&[u8]>) -> bool {
        let Some(ct) = content_type else { return false };
        let mt = crate::http::fields::trim(ct.split(|&b| b == b';').next().unwrap_or_default());
        self.types.iter().any(|t| mt.eq_ignore_ascii_case(t.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings() {
        let c = FeedConfig::from_settings(true, false, "").unwrap();
        assert_eq!(c.types, DEFAULT_TYPES);
        let c = FeedConfig::from_settings(true, true, "application/atom+xml, Application/XML text/xml").unwrap();
        assert_eq!(c.types, ["application/atom+xml", "application/xml", "text/xml"]);
        assert!(c.is_feed_type(Some(b" application/XML ; charset=utf-8")));
        assert!(!c.is_feed_type(Some(b"application/rss+xml")));
        assert!(!c.is_feed_type(None));
        assert!(FeedConfig::from_settings(true, true, "atom").is_err());
        assert!(FeedConfig::from_settings(true, true, "a/b/c").is_err());
    }
}
