//! Feeds through real servers (nginx `hsync_feed`, `hsync_feed_implicit`;
//! Apache `HsyncFeed`, `HsyncFeedImplicit`; docs/protocol.md §8), the
//! cases tests/tests/feed_nginx.rs and feed_apache.rs run
//! ([`feed_cases!`](crate::feed_cases)): the 30 successive versions of
//! ../shared/corpus/atom-feed served in turn as a static `feed.atom`, and
//! a reader polling each version with the ETag of the last response it
//! got. After every poll the entries it has accumulated (by Atom `id` and
//! `updated`, read with Python's feedparser, the reader feed readers use)
//! are exactly those of every version it has seen: nothing lost, nothing
//! received twice. First-time readers always get the whole feed, and a
//! request without `A-IM` never gets a 226. The same with an RSS 2.0 feed
//! made from the same real entries (`feed.rss`). Also: off by default, HEAD
//! and Range untouched, a proxied chunked feed and one over the bound, a
//! whole feed still hsync-coded, and Squid in front (a reader polling every
//! version through it loses nothing).

use crate::http::{self, Response};
use crate::{corpus, start, temp_dir, Options, RunningServer, ServerKind};
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;

pub const FEED: &str = "/feed.atom";

#[path = "../../core/tests/common/rss.rs"]
mod rss;

/// A feed's format: the corpus's Atom, or RSS 2.0 made from its entries.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    Atom,
    Rss,
}

impl Format {
    /// The file name in the document root (the servers type `.atom` as
    /// application/atom+xml, `.rss` as nginx's application/rss+xml or
    /// Debian's application/x-rss+xml for Apache).
    pub fn file(self) -> &'static str {
        match self {
            Format::Atom => "feed.atom",
            Format::Rss => "feed.rss",
        }
    }

    /// The 30 versions in this format.
    pub fn versions(self) -> Vec<Vec<u8>> {
        match self {
            Format::Atom => versions(),
            Format::Rss => versions().iter().map(|a| rss::to_rss(a)).collect(),
        }
    }

    /// feedparser's name for it.
    fn feedparser_version(self) -> &'static str {
        match self {
            Format::Atom => "atom10",
            Format::Rss => "rss20",
        }
    }
}

type Key = (String, String);

/// A document root with `feed.atom`; removed on drop.
pub struct Site {
    pub dir: PathBuf,
}

impl Site {
    pub fn new() -> Site {
        let dir = temp_dir("feed-docroot");
        std::fs::create_dir_all(&dir).unwrap();
        Site { dir }
    }

    /// Publishes `data` as the feed (whole, by rename).
    pub fn publish(&self, data: &[u8]) {
        self.publish_as("feed.atom", data)
    }

    /// Publishes `data` as `name` (whole, by rename).
    pub fn publish_as(&self, name: &str, data: &[u8]) {
        let tmp = self.dir.join(".feed.tmp");
        std::fs::write(&tmp, data).unwrap();
        std::fs::rename(&tmp, self.dir.join(name)).unwrap();
    }
}

impl Default for Site {
    fn default() -> Site {
        Site::new()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if std::env::var_os("HSYNC_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The 30 versions of ../shared/corpus/atom-feed, in order.
pub fn versions() -> Vec<Vec<u8>> {
    let dir = corpus().join("atom-feed");
    (1..=30).map(|i| std::fs::read(dir.join(format!("{i:03}.xml"))).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))).collect()
}

/// Debian's python3 with feedparser (where python3-feedparser installs),
/// else the one on PATH, if it has it.
fn python() -> Option<&'static str> {
    ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| Command::new(p).args(["-c", "import feedparser"]).stderr(std::process::Stdio::null()).status().is_ok_and(|s| s.success()))
}

/// Every document's entries as feedparser reads them: (id, updated or
/// published), one list per document; panics if one does not parse or is
/// not of `format`.
/// Without feedparser (a notice; a failure with HSYNC_REQUIRE_FEEDPARSER),
/// as hsync-core's own parser reads them.
fn feedparser(format: Format, docs: &[Vec<u8>]) -> Vec<Vec<Key>> {
    let Some(python) = python() else {
        eprintln!("feedparser missing (python3-feedparser): entries read with hsync-core's parser");
        assert!(std::env::var_os("HSYNC_REQUIRE_FEEDPARSER").is_none(), "HSYNC_REQUIRE_FEEDPARSER is set");
        let s = |b: Vec<u8>| String::from_utf8(b).unwrap();
        return docs
            .iter()
            .map(|d| hsync_core::feed::parse(d).expect("parses").entries.into_iter().map(|e| (s(e.id), s(e.version))).collect())
            .collect();
    };
    let dir = temp_dir("feedparser");
    std::fs::create_dir_all(&dir).unwrap();
    let paths: Vec<PathBuf> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let p = dir.join(format!("{i}.xml"));
            std::fs::write(&p, d).unwrap();
            p
        })
        .collect();
    let script = r#"
import json, sys, feedparser
out = []
want = sys.argv[1]
for p in sys.argv[2:]:
    with open(p, 'rb') as f:
        d = feedparser.parse(f.read())
    if d.bozo:
        sys.exit("%s does not parse: %r" % (p, d.bozo_exception))
    if d.version != want:
        sys.exit("%s is not %s: %r" % (p, want, d.version))
    out.append([[e.get('id', ''), e.get('updated', e.get('published', ''))] for e in d.entries])
print(json.dumps(out))
"#;
    let o = Command::new(python).arg("-c").arg(script).arg(format.feedparser_version()).args(&paths).output().expect("python3");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(o.status.success(), "feedparser: {}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|doc| {
            doc.as_array().unwrap().iter().map(|e| (e[0].as_str().unwrap().to_string(), e[1].as_str().unwrap().to_string())).collect()
        })
        .collect()
}

fn get(s: &RunningServer, headers: &[(&str, &str)]) -> Response {
    http::get(s.port, FEED, headers)
}

/// Checks a reader's view, read with feedparser: after each poll the
/// entries it has accumulated are exactly those of every version so far,
/// and (unless `whole_ok`, for responses that may be whole feeds) no entry
/// came twice. A poll answered 304 is `None`: no entries.
fn check_reader(format: Format, vs: &[Vec<u8>], polls: &[Option<Vec<u8>>], whole_ok: bool) {
    let mut docs: Vec<Vec<u8>> = vs.to_vec();
    docs.extend(polls.iter().flatten().cloned());
    let mut parsed = feedparser(format, &docs).into_iter();
    let of_version: Vec<Vec<Key>> = parsed.by_ref().take(vs.len()).collect();
    let of_poll: Vec<Vec<Key>> = polls.iter().map(|p| if p.is_some() { parsed.next().unwrap() } else { Vec::new() }).collect();
    let mut held: HashSet<Key> = HashSet::new();
    let mut union: HashSet<Key> = HashSet::new();
    for (k, (got, version)) in of_poll.iter().zip(of_version).enumerate() {
        union.extend(version.iter().cloned());
        for e in got {
            assert!(whole_ok || !held.contains(e), "version {}: {e:?} received again", k + 1);
            assert!(version.contains(e), "version {}: {e:?} is not in the feed", k + 1);
        }
        let got_ids: HashSet<&Key> = got.iter().collect();
        assert_eq!(got_ids.len(), got.len(), "version {}: an entry twice in one response", k + 1);
        held.extend(got.iter().cloned());
        assert_eq!(held, union, "version {}: the reader's entries are every version's so far", k + 1);
    }
}

/// The ETaglet of a feed response (panics if it has none).
pub fn etag(r: &Response) -> String {
    let t = r.header("ETag").unwrap_or_else(|| panic!("{} without an ETag: {:?}", r.status, r.headers)).to_string();
    assert!(t.starts_with("\"hf1."), "not an ETaglet: {t}");
    t
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Explicit,
    Implicit,
}

/// One reader polling every version; returns how many responses were
/// truncated.
fn poll_every_version(kind: ServerKind, mode: Mode, format: Format) -> usize {
    let site = Site::new();
    let vs = format.versions();
    let path = format!("/{}", format.file());
    let get = |s: &RunningServer, h: &[(&str, &str)]| http::get(s.port, &path, h);
    site.publish_as(format.file(), &vs[0]);
    let opts = Options { feed: mode == Mode::Explicit, feed_implicit: mode == Mode::Implicit, ..Options::new(&site.dir) };
    let Some(s) = start(kind, &opts) else { return 0 };

    // The responses a reader gets, and what a first-time reader gets.
    let mut polls: Vec<Option<Vec<u8>>> = Vec::new();
    let mut tag: Option<String> = None;
    let mut truncated = 0;
    // Truncated responses in the access log (the implicit mode's extra requests too).
    let mut logged = 0;
    for (k, v) in vs.iter().enumerate() {
        site.publish_as(format.file(), v);
        let mut h: Vec<(&str, &str)> = Vec::new();
        if mode == Mode::Explicit {
            h.push(("A-IM", "feed"));
        }
        if let Some(t) = &tag {
            h.push(("If-None-Match", t));
        }
        let r = get(&s, &h);
        let cc = r.header_all("Cache-Control").unwrap_or_default();
        match (mode, r.status) {
            (Mode::Explicit, 226) => {
                assert_eq!(r.header("IM"), Some("feed"));
                assert_eq!(cc, "no-store");
                truncated += 1;
            }
            (Mode::Implicit, 200) if r.body != *v => {
                assert_eq!(cc, "private, max-age=0");
                truncated += 1;
            }
            (_, 200) => assert_eq!(r.body, *v, "version {}: a 200 that is not truncated is the whole feed", k + 1),
            (_, st) => panic!("version {}: status {st}: {:?}", k + 1, r.headers),
        }
        assert!(r.header("Last-Modified").is_none() || r.body == *v, "a truncated feed has no Last-Modified");
        assert!(r.header_all("Vary").is_some_and(|v| v.contains("If-None-Match")), "{:?}", r.headers);
        if r.body != *v {
            assert!(r.header("Expires").is_some_and(|e| e.contains("1970")));
            assert_eq!(r.header("Content-Length").map(|l| l.parse::<usize>().unwrap()), Some(r.body.len()));
        }

        // The same version again: 304, with the same tag.
        let t = etag(&r);
        let mut again: Vec<(&str, &str)> = vec![("If-None-Match", &t)];
        if mode == Mode::Explicit {
            again.push(("A-IM", "feed"));
        }
        let n = get(&s, &again);
        assert_eq!(n.status, 304, "version {}: {:?}", k + 1, n.headers);
        assert_eq!(n.header("ETag"), Some(t.as_str()));
        assert!(n.body.is_empty());

        // A first-time reader gets the whole feed, tagged alike.
        let first = get(&s, if mode == Mode::Explicit { &[("A-IM", "feed")][..] } else { &[] });
        assert_eq!((first.status, first.body == *v), (200, true), "version {}: a first-time reader", k + 1);
        assert_eq!(first.header("ETag"), Some(t.as_str()), "a 226 carries the full feed's tag");

        // Without A-IM, never a 226; with an old tag through a proxy (Via), the whole feed.
        if let Some(old) = &tag {
            let plain = get(&s, &[("If-None-Match", old)]);
            assert_ne!(plain.status, 226);
            if mode == Mode::Explicit {
                assert_eq!((plain.status, plain.body == *v), (200, true), "explicit only: no truncation without A-IM");
            } else {
                assert_eq!((plain.status, &plain.body), (200, &r.body), "implicit: the same answer again");
                if r.body != *v {
                    logged += 1;
                }
            }
            let via = get(&s, &[("If-None-Match", old), ("Via", "1.1 cache")]);
            if mode == Mode::Implicit {
                assert_eq!((via.status, via.body == *v), (200, true), "implicit mode through a proxy: whole");
            }
            // Several tags (a cache adding its own): whole.
            let both = format!("{old}, \"other\"");
            let mut h: Vec<(&str, &str)> = vec![("If-None-Match", &both)];
            if mode == Mode::Explicit {
                h.push(("A-IM", "feed"));
            }
            let several = get(&s, &h);
            assert_eq!((several.status, several.body == *v), (200, true), "several tags: the whole feed");
        }

        polls.push(Some(r.body));
        tag = Some(t);
    }

    // The reader's view, with feedparser.
    check_reader(format, &vs, &polls, false);
    let log = s.access_log_text();
    assert_eq!(log.matches("coding=feed").count(), truncated + logged, "$hsync_coding says feed for each truncated response:\n{log}");
    s.finish();
    truncated
}

pub fn explicit_a_im_feed(kind: ServerKind) {
    let n = poll_every_version(kind, Mode::Explicit, Format::Atom);
    // Most successive versions share entries: the reader gets 226s.
    assert!(n == 0 || n >= 20, "only {n} truncated responses");
}

pub fn implicit_if_none_match(kind: ServerKind) {
    let n = poll_every_version(kind, Mode::Implicit, Format::Atom);
    assert!(n == 0 || n >= 20, "only {n} truncated responses");
}

/// The same reader on an RSS 2.0 feed of the same entries.
pub fn rss_explicit_a_im_feed(kind: ServerKind) {
    let n = poll_every_version(kind, Mode::Explicit, Format::Rss);
    assert!(n == 0 || n >= 20, "only {n} truncated responses");
}

pub fn rss_implicit_if_none_match(kind: ServerKind) {
    let n = poll_every_version(kind, Mode::Implicit, Format::Rss);
    assert!(n == 0 || n >= 20, "only {n} truncated responses");
}

/// Feeds off (the default): nothing changes, the origin's ETag stays.
pub fn off_by_default(kind: ServerKind) {
    let site = Site::new();
    let v = &versions()[0];
    site.publish(v);
    let Some(s) = start(kind, &Options::new(&site.dir)) else { return };
    let r = get(&s, &[("A-IM", "feed")]);
    assert_eq!((r.status, r.body == *v), (200, true));
    assert!(!r.header("ETag").unwrap_or_default().contains("hf1."));
    assert!(r.header("IM").is_none());
    s.finish();
}

/// HEAD and ranges pass untouched.
pub fn head_and_range_untouched(kind: ServerKind) {
    let site = Site::new();
    let v = &versions()[0];
    site.publish(v);
    let Some(s) = start(kind, &Options { feed: true, feed_implicit: true, ..Options::new(&site.dir) }) else { return };
    let h = http::request(s.port, "HEAD", FEED, &[("A-IM", "feed")]);
    assert_eq!(h.status, 200);
    assert!(!h.header("ETag").unwrap_or_default().contains("hf1."));
    let r = get(&s, &[("Range", "bytes=0-99")]);
    assert_eq!((r.status, r.body.len()), (206, 100));
    s.finish();
}

/// An origin that sends its one feed chunked (no length known to nginx),
/// in 16 KiB chunks; the feed can be changed.
struct ChunkedOrigin {
    addr: std::net::SocketAddr,
    feed: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl ChunkedOrigin {
    fn start() -> ChunkedOrigin {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let feed: std::sync::Arc<std::sync::Mutex<Vec<u8>>> = Default::default();
        let f = feed.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().map_while(Result::ok) {
                let f = f.clone();
                std::thread::spawn(move || -> std::io::Result<()> {
                    let mut r = BufReader::new(conn.try_clone()?);
                    loop {
                        let mut l = String::new();
                        if r.read_line(&mut l)? == 0 || l == "\r\n" || l == "\n" {
                            break;
                        }
                    }
                    let body = f.lock().unwrap().clone();
                    let mut w = conn;
                    w.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/atom+xml\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                    )?;
                    for c in body.chunks(16 << 10) {
                        write!(w, "{:x}\r\n", c.len())?;
                        w.write_all(c)?;
                        w.write_all(b"\r\n")?;
                        w.flush()?;
                    }
                    w.write_all(b"0\r\n\r\n")?;
                    w.flush()
                });
            }
        });
        ChunkedOrigin { addr, feed }
    }

    fn set(&self, body: &[u8]) {
        *self.feed.lock().unwrap() = body.to_vec();
    }
}

/// The entries of a feed as hsync-core identifies them (id, version).
pub fn core_keys(doc: &[u8]) -> HashSet<(Vec<u8>, Vec<u8>)> {
    hsync_core::feed::parse(doc).expect("a feed").entries.into_iter().map(|e| (e.id, e.version)).collect()
}

/// A proxied feed of unknown length, in pieces: truncated as a static one;
/// one longer than the bound (4 MiB) goes out exactly as the origin sent it.
pub fn proxied_chunked_and_over_the_bound(kind: ServerKind) {
    let site = Site::new();
    let origin = ChunkedOrigin::start();
    let vs = versions();
    let opts = Options { feed: true, upstream: Some(origin.addr), ..Options::new(&site.dir) };
    let Some(s) = start(kind, &opts) else { return };
    let path = "/proxy/feed.atom";

    origin.set(&vs[0]);
    let first = http::get(s.port, path, &[("A-IM", "feed")]);
    assert_eq!((first.status, first.body == vs[0]), (200, true));
    let tag = etag(&first);
    assert_eq!(first.header("Content-Length").map(|l| l.parse::<usize>().unwrap()), Some(vs[0].len()), "a held feed gets a length");
    origin.set(&vs[1]);
    let next = http::get(s.port, path, &[("A-IM", "feed"), ("If-None-Match", &tag)]);
    assert_eq!(next.status, 226, "{:?}", next.headers);
    assert!(!next.chunked);
    let want: HashSet<_> = core_keys(&vs[1]).difference(&core_keys(&vs[0])).cloned().collect();
    assert_eq!(core_keys(&next.body), want);
    let same = http::get(s.port, path, &[("A-IM", "feed"), ("If-None-Match", &etag(&next))]);
    assert_eq!(same.status, 304);

    // Over the bound: the entries are padded with a comment past 4 MiB.
    let mut big = vs[1].clone();
    let at = big.windows(7).rposition(|w| w == b"</feed>").unwrap();
    let pad = format!("<!--{}-->\n", "x".repeat(hsync_core::limits::FEED_MAX_BYTES + 1000));
    big.splice(at..at, pad.into_bytes());
    origin.set(&big);
    let r = http::get(s.port, path, &[("A-IM", "feed"), ("If-None-Match", &tag)]);
    assert_eq!(r.status, 200);
    assert!(r.body == big, "over the bound: the bytes as they came ({} of {})", r.body.len(), big.len());
    assert!(!r.header("ETag").unwrap_or_default().contains("hf1."), "over the bound: headers unchanged");
    s.finish();
}

/// A whole feed (a first-time reader) may still be hsync-coded; a 226 is not.
pub fn whole_feed_then_hsync(kind: ServerKind) {
    use hsync_core::http::encode_signature_header;
    use hsync_core::Signature;
    let site = Site::new();
    let vs = versions();
    site.publish(&vs[1]);
    let Some(s) = start(kind, &Options { feed: true, ..Options::new(&site.dir) }) else { return };
    let sig = encode_signature_header(&Signature::compute(&vs[0]).to_bytes());
    let r = get(&s, &[("A-IM", "feed"), ("Accept-Encoding", "hsync"), ("Hsync-Signature", &sig)]);
    assert_eq!((r.status, r.content_encoding()), (200, Some("hsync")), "{:?}", r.headers);
    let out = hsync_core::patch(&vs[0], &r.body, 64 << 20).expect("patch");
    assert_eq!(out, vs[1]);
    let coded_tag = r.header("ETag").filter(|t| t.contains("hf1.")).expect("the ETaglet, weakened or not").to_string();
    // That tag (weak, as hsync makes it) names this version: 304.
    let n = get(&s, &[("A-IM", "feed"), ("If-None-Match", &coded_tag), ("Accept-Encoding", "hsync"), ("Hsync-Signature", &sig)]);
    assert_eq!(n.status, 304, "{coded_tag}: {:?}", n.headers);

    // The tag of version 1, as a reader holding it would send.
    site.publish(&vs[0]);
    let old = etag(&get(&s, &[]));
    site.publish(&vs[1]);
    let t = get(&s, &[("A-IM", "feed"), ("If-None-Match", &old), ("Accept-Encoding", "hsync"), ("Hsync-Signature", &sig)]);
    assert_eq!((t.status, t.content_encoding()), (226, None), "{:?}", t.headers);
    let log = s.access_log_text();
    assert!(log.contains("coding=hsync") && log.contains("coding=feed"), "{log}");
    s.finish();
}

/// Through a real shared cache (Squid, an accelerator in front of nginx)
/// on a feed it may keep for an hour (`expires 1h`), both modes on: a
/// reader with `A-IM: feed` still gets its 226 with only the entries it
/// lacks; a 226 or a truncated 200 never reaches a request without `A-IM`
/// or a first-time reader; a reader relying on the implicit mode behind
/// Squid (which sends `Via`) gets whole feeds.
pub fn through_squid(kind: ServerKind) {
    use crate::squid::{self, Squid};
    let site = Site::new();
    std::fs::create_dir_all(site.dir.join("fresh")).unwrap();
    let vs = versions();
    let put = |v: &[u8]| {
        let tmp = site.dir.join("fresh/.feed.tmp");
        std::fs::write(&tmp, v).unwrap();
        std::fs::rename(&tmp, site.dir.join("fresh/feed.atom")).unwrap();
    };
    put(&vs[0]);
    let Some(s) = start(kind, &Options { feed: true, feed_implicit: true, ..Options::new(&site.dir) }) else { return };
    if !squid::available() {
        return;
    }
    let sq = Squid::start(s.addr());
    let path = "/fresh/feed.atom";
    let whole = |r: &Response, what: &str| {
        assert_eq!(r.status, 200, "{what}: {:?}", r.headers);
        assert!(vs.contains(&r.body), "{what}: not a whole version ({} bytes)", r.body.len());
    };

    // A first-time reader: the whole feed, which Squid may store.
    let first = http::get(sq.port, path, &[]);
    whole(&first, "first-time reader");
    let tag1 = etag(&first);
    let again = http::get(sq.port, path, &[]);
    whole(&again, "first-time reader again");

    put(&vs[1]);
    let direct = http::get(s.port, path, &[]);
    let tag2 = etag(&direct);

    // Explicit reader behind Squid: a 226 with exactly what it lacks.
    let r = http::get(sq.port, path, &[("A-IM", "feed"), ("If-None-Match", &tag1)]);
    assert_eq!(r.status, 226, "{:?}", r.headers);
    let want: HashSet<_> = core_keys(&vs[1]).difference(&core_keys(&vs[0])).cloned().collect();
    assert_eq!(core_keys(&r.body), want);
    assert_eq!(r.header("ETag"), Some(tag2.as_str()));

    // Implicit reader behind Squid (Via): whole feeds, never truncated.
    let r = http::get(sq.port, path, &[("If-None-Match", &tag1)]);
    whole(&r, "implicit reader behind a proxy");
    assert!(r.header("IM").is_none());

    // Nobody without A-IM, nor a first-time reader, gets what was truncated.
    for h in [&[][..], &[("If-None-Match", tag2.as_str())][..], &[("If-None-Match", "\"other\"")][..]] {
        let r = http::get(sq.port, path, h);
        assert_ne!(r.status, 226, "{h:?}");
        if r.status != 304 {
            whole(&r, &format!("{h:?}"));
        }
    }
    let r = http::get(sq.port, path, &[("A-IM", "feed")]);
    whole(&r, "A-IM reader without a tag");

    // The explicit reader again, with the tag it now holds: 304.
    let r = http::get(sq.port, path, &[("A-IM", "feed"), ("If-None-Match", &tag2)]);
    assert_eq!(r.status, 304, "{:?}", r.headers);
    eprintln!("Squid's access log:\n{}", sq.access_log().join("\n"));
    drop(sq);
    s.finish();
}

/// Readers polling every version through Squid (a shared cache in front
/// of the server, both modes on, the feed without freshness of its own so
/// that Squid revalidates): one with `A-IM: feed` gets 226s with only the
/// entries it lacks; one relying on the implicit mode gets whole feeds or
/// 304s (Squid sends `Via`, and adds the tags it holds); a first-time
/// reader after each poll gets the whole current feed. Neither loses an
/// entry (feedparser); the explicit one receives none twice.
pub fn squid_readers_poll_every_version(kind: ServerKind) {
    use crate::squid::{self, Squid};
    let site = Site::new();
    let vs = versions();
    site.publish(&vs[0]);
    let Some(s) = start(kind, &Options { feed: true, feed_implicit: true, ..Options::new(&site.dir) }) else { return };
    if !squid::available() {
        return;
    }
    let sq = Squid::start(s.addr());
    let mut explicit: Vec<Option<Vec<u8>>> = Vec::new();
    let mut implicit: Vec<Option<Vec<u8>>> = Vec::new();
    let (mut tag_e, mut tag_i): (Option<String>, Option<String>) = (None, None);
    let mut ims = 0;
    for (k, v) in vs.iter().enumerate() {
        site.publish(v);
        let mut h = vec![("A-IM", "feed")];
        if let Some(t) = &tag_e {
            h.push(("If-None-Match", t));
        }
        let r = http::get(sq.port, FEED, &h);
        match r.status {
            226 => {
                assert_eq!(r.header("IM"), Some("feed"));
                ims += 1;
                explicit.push(Some(r.body.clone()));
            }
            200 => {
                assert_eq!(r.body, *v, "version {}: a 200 to the explicit reader is the whole feed", k + 1);
                explicit.push(Some(r.body.clone()));
            }
            304 => explicit.push(None),
            st => panic!("version {}: {st} {:?}", k + 1, r.headers),
        }
        if r.status != 304 {
            tag_e = Some(etag(&r));
        }

        let h: Vec<(&str, &str)> = tag_i.iter().map(|t| ("If-None-Match", t.as_str())).collect();
        let r = http::get(sq.port, FEED, &h);
        match r.status {
            200 => {
                assert_eq!(r.body, *v, "version {}: behind Squid, the implicit reader gets whole feeds", k + 1);
                tag_i = Some(etag(&r));
                implicit.push(Some(r.body));
            }
            304 => implicit.push(None),
            st => panic!("version {}: {st} {:?}", k + 1, r.headers),
        }

        let first = http::get(sq.port, FEED, &[]);
        assert_eq!((first.status, first.body == *v), (200, true), "version {}: a first-time reader behind Squid", k + 1);
    }
    check_reader(Format::Atom, &vs, &explicit, false);
    check_reader(Format::Atom, &vs, &implicit, true);
    assert!(ims >= 20, "only {ims} 226s through Squid");
    eprintln!("Squid's access log:\n{}", sq.access_log().join("\n"));
    drop(sq);
    s.finish();
}

/// The feed cases as `#[test]`s for one server kind (`Nginx` or `Apache`).
#[macro_export]
macro_rules! feed_cases {
    ($kind:ident) => {
        $crate::feed_cases!(@ $kind, explicit_a_im_feed, implicit_if_none_match, rss_explicit_a_im_feed, rss_implicit_if_none_match,
            off_by_default, head_and_range_untouched, proxied_chunked_and_over_the_bound, whole_feed_then_hsync, through_squid,
            squid_readers_poll_every_version);
    };
    (@ $kind:ident, $($case:ident),*) => {
        $( #[test] fn $case() { $crate::feed::$case($crate::ServerKind::$kind) } )*
    };
}
