//! ETaglets: the ETag of a feed response, which names the entries it holds.
//!
//! Format (docs/protocol.md §8.3): a strong entity-tag
//! `"hf1.<base64url, no padding>"` of
//!
//! - 12 bytes: the first 12 bytes of the BLAKE3 hash of the whole body
//!   (the version: two different bodies never share an ETag, so ordinary
//!   conditional requests keep their meaning);
//! - then one 4-byte big-endian hash per entry ([`super::parse::entry_hash`]
//!   of its identity and version), for the first
//!   [`FEED_ETAG_MAX_ENTRIES`] entries in document order.
//!
//! Fifteen entries make an ETag of 102 characters, twenty 129, the most
//! (32) 193. A tag that does not start with `hf1.`, does not decode, or
//! whose length is not 12 plus a multiple of 4 is not an ETaglet: the
//! request is answered with the whole feed.
//!
//! Apache's compression filters append `-gzip` (mod_deflate's default
//! `DeflateAlterETag AddSuffix`) or `-br` (mod_brotli) inside the quotes of
//! the tag of a response they compress; such a tag names the same version
//! and entries, and is read as the tag without the suffix.

use super::parse::Feed;
use crate::http::fields;
use crate::limits::FEED_ETAG_MAX_ENTRIES;
use base64::Engine;

/// The tag's prefix (inside the quotes): format 1 of hsync feeds.
pub const PREFIX: &str = "hf1.";
/// Bytes of the body hash.
pub const DIGEST_LEN: usize = 12;
/// Longest opaque-tag of an ETaglet, quotes included.
pub const MAX_LEN: usize = 2 + PREFIX.len() + (DIGEST_LEN + 4 * FEED_ETAG_MAX_ENTRIES).div_ceil(3) * 4;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Suffixes compression filters append to a tag (see the module's comment).
const CODING_SUFFIXES: [&[u8]; 2] = [b"-gzip", b"-br"];

/// An ETaglet's opaque-tag (quotes kept) without a compression filter's
/// suffix, when it has one; `None` otherwise.
fn unsuffixed(opaque: &[u8]) -> Option<Vec<u8>> {
    let inner = opaque.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if !inner.starts_with(PREFIX.as_bytes()) {
        return None;
    }
    let bare = CODING_SUFFIXES.iter().find_map(|s| inner.strip_suffix(*s))?;
    Some([&b"\""[..], bare, b"\""].concat())
}

/// A decoded ETaglet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Etaglet {
    pub digest: [u8; DIGEST_LEN],
    /// The entry hashes it names, in the order of the document it was made for.
    pub hashes: Vec<u32>,
}

impl Etaglet {
    /// The ETaglet of a feed body (`feed` parsed from `doc`, or `None` when
    /// it could not be: then the tag names no entry).
    pub fn of(doc: &[u8], feed: Option<&Feed>) -> Etaglet {
        let mut digest = [0; DIGEST_LEN];
        digest.copy_from_slice(&blake3::hash(doc).as_bytes()[..DIGEST_LEN]);
        let hashes = feed.map_or(Vec::new(), |f| f.entries.iter().take(FEED_ETAG_MAX_ENTRIES).map(|e| e.hash).collect());
        Etaglet { digest, hashes }
    }

    /// The ETaglet of a body whose BLAKE3 hash is `digest`, naming `hashes`.
    pub fn from_parts(digest: &blake3::Hash, hashes: Vec<u32>) -> Etaglet {
        let mut d = [0; DIGEST_LEN];
        d.copy_from_slice(&digest.as_bytes()[..DIGEST_LEN]);
        Etaglet { digest: d, hashes }
    }

    /// The quoted entity-tag, as sent in `ETag`.
    pub fn to_header(&self) -> String {
        let mut raw = Vec::with_capacity(DIGEST_LEN + 4 * self.hashes.len());
        raw.extend_from_slice(&self.digest);
        for h in &self.hashes {
            raw.extend_from_slice(&h.to_be_bytes());
        }
        format!("\"{PREFIX}{}\"", B64.encode(raw))
    }

    /// Decodes one entity-tag (`"hf1...."` or weak `W/"hf1...."`);
    /// `None` when it is not an ETaglet.
    pub fn parse(tag: &[u8]) -> Option<Etaglet> {
        let opaque = opaque(tag)?;
        Self::decode(opaque).or_else(|| Self::decode(&unsuffixed(opaque)?))
    }

    /// Decodes an opaque-tag, quotes included.
    fn decode(opaque: &[u8]) -> Option<Etaglet> {
        if opaque.len() > MAX_LEN {
            return None;
        }
        let inner = opaque.strip_prefix(b"\"")?.strip_suffix(b"\"")?.strip_prefix(PREFIX.as_bytes())?;
        let raw = B64.decode(inner).ok()?;
        if raw.len() < DIGEST_LEN || !(raw.len() - DIGEST_LEN).is_multiple_of(4) || (raw.len() - DIGEST_LEN) / 4 > FEED_ETAG_MAX_ENTRIES {
            return None;
        }
        let mut digest = [0; DIGEST_LEN];
        digest.copy_from_slice(&raw[..DIGEST_LEN]);
        let hashes = raw[DIGEST_LEN..].chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect();
        Some(Etaglet { digest, hashes })
    }

    /// Does the reader holding this tag have the entry with hash `h`?
    pub fn names(&self, h: u32) -> bool {
        self.hashes.contains(&h)
    }
}

/// The opaque-tag of an entity-tag (RFC 9110 §8.8.3): `W/` dropped,
/// quotes kept; `None` when it is not one.
pub fn opaque(tag: &[u8]) -> Option<&[u8]> {
    let t = fields::trim(tag);
    let t = t.strip_prefix(b"W/").unwrap_or(t);
    let ok = t.len() >= 2
        && t[0] == b'"'
        && t[t.len() - 1] == b'"'
        && t[1..t.len() - 1].iter().all(|&c| c == 0x21 || (0x23..=0x7e).contains(&c) || c >= 0x80);
    ok.then_some(t)
}

/// What a request's `If-None-Match` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfNoneMatch<'a> {
    Absent,
    /// `*`.
    Any,
    /// The entity-tags listed, in order, over all lines (malformed ones
    /// included: they match nothing but still count).
    Tags(Vec<&'a [u8]>),
}

impl<'a> IfNoneMatch<'a> {
    pub fn of(request: &'a [fields::Field<'a>]) -> IfNoneMatch<'a> {
        if !fields::has(request, "If-None-Match") {
            return IfNoneMatch::Absent;
        }
        let tags: Vec<&[u8]> = fields::list(request, "If-None-Match").collect();
        if tags.iter().any(|t| *t == b"*") {
            return IfNoneMatch::Any;
        }
        IfNoneMatch::Tags(tags)
    }

    /// Does it match `etag` by the weak comparison If-None-Match uses
    /// (RFC 9110 §13.1.2: same opaque-tag, either or both weak)?
    pub fn matches(&self, etag: &str) -> bool {
        match self {
            IfNoneMatch::Absent => false,
            IfNoneMatch::Any => true,
            IfNoneMatch::Tags(tags) => {
                let Some(ours) = opaque(etag.as_bytes()) else { return false };
                tags.iter().filter_map(|t| opaque(t)).any(|t| t == ours || unsuffixed(t).is_some_and(|u| u == ours))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Field;

    #[test]
    fn round_trip_and_lengths() {
        for n in [0, 1, 15, 20, FEED_ETAG_MAX_ENTRIES] {
            let e = Etaglet { digest: [7; DIGEST_LEN], hashes: (0..n as u32).map(|i| i.wrapping_mul(0x9e37_79b9)).collect() };
            let h = e.to_header();
            assert!(h.len() <= MAX_LEN, "{n}: {}", h.len());
            assert_eq!(Etaglet::parse(h.as_bytes()), Some(e.clone()));
            assert_eq!(Etaglet::parse(format!("W/{h}").as_bytes()), Some(e));
            if n == 15 {
                assert_eq!(h.len(), 102);
            }
        }
        assert_eq!(MAX_LEN, 194);
    }

    #[test]
    fn malformed_etaglets_are_foreign() {
        let good = Etaglet { digest: [1; DIGEST_LEN], hashes: vec![1, 2] }.to_header();
        for bad in [
            "",
            "hf1.AAAA",
            "\"hf1.\"",
            "\"hf1.!!!!\"",
            "\"hf2.AAAAAAAAAAAAAAAA\"",
            "\"hf1.AAAAAAAAAAAAAAAAAA\"", // 13 bytes
            &good[..good.len() - 1],
            "\"5f1-2a\"",
        ] {
            assert_eq!(Etaglet::parse(bad.as_bytes()), None, "{bad}");
        }
        let long = Etaglet { digest: [0; DIGEST_LEN], hashes: vec![0; FEED_ETAG_MAX_ENTRIES + 1] }.to_header();
        assert_eq!(Etaglet::parse(long.as_bytes()), None);
    }

    #[test]
    fn if_none_match_weak_comparison() {
        let f = [Field::new("If-None-Match", "\"a\", W/\"b\""), Field::new("if-none-match", "\"c,d\"")];
        let inm = IfNoneMatch::of(&f);
        assert_eq!(inm, IfNoneMatch::Tags(vec![&b"\"a\""[..], b"W/\"b\"", b"\"c,d\""]));
        for (t, m) in [("\"a\"", true), ("W/\"a\"", true), ("\"b\"", true), ("\"c,d\"", true), ("\"c\"", false), ("a", false)] {
            assert_eq!(inm.matches(t), m, "{t}");
        }
        assert!(IfNoneMatch::of(&[Field::new("If-None-Match", "*")]).matches("\"x\""));
        // A compression filter's suffix on one of ours: the same tag; on
        // another tag: no.
        let ours = Etaglet { digest: [7; DIGEST_LEN], hashes: vec![1, 2, 3] }.to_header();
        let inner = &ours[1..ours.len() - 1];
        for (t, m) in [(format!("\"{inner}-gzip\""), true), (format!("W/\"{inner}-br\""), true), (format!("\"{inner}-zstd\""), false)] {
            let f = [Field::new("If-None-Match", &t)];
            assert_eq!(IfNoneMatch::of(&f).matches(&ours), m, "{t}");
            assert_eq!(Etaglet::parse(t.as_bytes()).is_some(), m, "{t}");
        }
        let f = [Field::new("If-None-Match", "\"a-gzip\"")];
        assert!(!IfNoneMatch::of(&f).matches("\"a\""), "not ours: compared as it is");
        assert_eq!(IfNoneMatch::of(&[]), IfNoneMatch::Absent);
    }
}
