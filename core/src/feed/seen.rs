//! Feed versions this process has parsed, by the BLAKE3 hash of their
//! bytes: a reader polling an unchanged feed (a 304, or the whole feed to
//! a new reader) costs the hash, not another parse. The hash is the one
//! the ETaglet's digest is cut from, so it is computed anyway; being
//! collision-resistant, two bodies never share an entry, whatever the
//! origin's ETag or Last-Modified say.
//!
//! Bounded: [`FEED_SEEN_VERSIONS`] versions, each its entry hashes (at most
//! [`crate::limits::FEED_MAX_ENTRIES`] × 4 bytes) and its ETag: at most
//! about 260 KiB per process; the least recently used goes first.

use super::etag::Etaglet;
use super::parse::Feed;
use crate::error::Error;
use crate::limits::{FEED_ETAG_MAX_ENTRIES, FEED_SEEN_VERSIONS};
use std::sync::{Arc, Mutex};

/// What the decision needs of one version of a feed, besides its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Its ETaglet, as sent in `ETag`.
    pub etag: String,
    /// The hash of every entry, in document order (none when it did not parse).
    pub hashes: Vec<u32>,
    /// Why it did not parse.
    pub error: Option<Error>,
}

impl Version {
    /// A version from its bytes' BLAKE3 hash and their parse.
    fn of(digest: &blake3::Hash, parsed: &Result<Feed, Error>) -> Version {
        let hashes: Vec<u32> = parsed.as_ref().map_or(Vec::new(), |f| f.entries.iter().map(|e| e.hash).collect());
        let tag = Etaglet::from_parts(digest, hashes.iter().take(FEED_ETAG_MAX_ENTRIES).copied().collect());
        Version { etag: tag.to_header(), hashes, error: parsed.as_ref().err().cloned() }
    }
}

type Seen = Vec<([u8; 32], Arc<Version>)>;

static SEEN: Mutex<Seen> = Mutex::new(Vec::new());

/// The version of `body`: remembered, or parsed (and then remembered).
/// The parse, when one was made, comes with it (the caller truncates with
/// it); when remembered, `None`.
pub fn version(body: &[u8], parse: impl FnOnce(&[u8]) -> Result<Feed, Error>) -> (Arc<Version>, Option<Result<Feed, Error>>) {
    let digest = blake3::hash(body);
    let key = *digest.as_bytes();
    if let Some(v) = recall(&key) {
        return (v, None);
    }
    let parsed = parse(body);
    let v = Arc::new(Version::of(&digest, &parsed));
    remember(key, v.clone());
    (v, Some(parsed))
}

/// Bytes the remembered versions hold (their entry hashes and tags).
pub fn bytes() -> usize {
    let seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    seen.iter().map(|(_, v)| 32 + std::mem::size_of::<Version>() + v.hashes.len() * 4 + v.etag.len()).sum()
}

fn recall(key: &[u8; 32]) -> Option<Arc<Version>> {
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    let i = seen.iter().position(|(k, _)| k == key)?;
    // Most recently used last.
    let e = seen.remove(i);
    let v = e.1.clone();
    seen.push(e);
    Some(v)
}

fn remember(key: [u8; 32], v: Arc<Version>) {
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    seen.retain(|(k, _)| *k != key);
    if seen.len() >= FEED_SEEN_VERSIONS {
        seen.remove(0);
    }
    seen.push((key, v));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::parse::parse;

    #[test]
    fn remembered_by_bytes_and_bounded() {
        let doc =
            |i: usize| format!("<feed xmlns=\"http://www.w3.org/2005/Atom\"><entry><id>seen-{i}</id><updated>u</updated></entry></feed>");
        let mut parses = 0;
        let mut count = |b: &[u8]| {
            parses += 1;
            parse(b)
        };
        let (a, p) = version(doc(0).as_bytes(), &mut count);
        assert!(p.is_some());
        let (b, p) = version(doc(0).as_bytes(), &mut count);
        assert!(p.is_none(), "the same bytes: remembered");
        assert_eq!(a, b);
        assert_eq!(a.etag, Etaglet::of(doc(0).as_bytes(), parse(doc(0).as_bytes()).ok().as_ref()).to_header());
        let (c, _) = version(doc(1).as_bytes(), &mut count);
        assert_ne!(a.etag, c.etag, "other bytes: another version");
        for i in 2..FEED_SEEN_VERSIONS + 10 {
            version(doc(i).as_bytes(), &mut count);
        }
        assert!(SEEN.lock().unwrap().len() <= FEED_SEEN_VERSIONS);
        let (_, p) = version(doc(0).as_bytes(), &mut count);
        assert!(p.is_some(), "evicted: parsed again");
        assert_eq!(parses, FEED_SEEN_VERSIONS + 10 + 1);
        // Unparsable bodies are remembered with their error.
        let (bad, _) = version(b"<feed><entry>", parse);
        assert!(bad.error.is_some() && bad.hashes.is_empty());
    }
}
