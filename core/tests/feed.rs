//! Feeds over the 30 real versions of ../shared/corpus/atom-feed, as Atom
//! and as RSS 2.0 built from the same entries: for every pair of versions
//! (i, j > i) a reader holding i gets from j exactly the entries of j it
//! lacks (by identity and version), the head intact, in document order,
//! and a document that parses (quick-xml here, Python's feedparser in one
//! test); a reader polling every version accumulates exactly the union.
//! Then hostile input: deep nesting, too many entries, billion laughs,
//! truncated XML, entries without identity, duplicate identities, long or
//! malformed If-None-Match, and random mutations (never a panic).

use hsync_core::feed::{self, Etaglet, FeedConfig, FeedKind, FeedOutcome, Whole};
use hsync_core::http::{Edit, Exchange, Field};
use proptest::prelude::*;
use std::collections::HashSet;
use std::path::PathBuf;

#[path = "common/rss.rs"]
mod rss;
use rss::{rfc822, to_rss};

fn corpus() -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/atom-feed");
    assert!(dir.is_dir(), "corpus not found at {} (clone beside ../shared)", dir.display());
    let v: Vec<Vec<u8>> = (1..=30).map(|i| std::fs::read(dir.join(format!("{i:03}.xml"))).unwrap()).collect();
    assert_eq!(v.len(), 30);
    v
}

type Key = (Vec<u8>, Vec<u8>);

fn keys(doc: &[u8]) -> Vec<Key> {
    feed::parse(doc).unwrap().entries.into_iter().map(|e| (e.id, e.version)).collect()
}

fn tag(doc: &[u8]) -> String {
    Etaglet::of(doc, feed::parse(doc).ok().as_ref()).to_header()
}

fn both() -> FeedConfig {
    FeedConfig { explicit: true, implicit: true, ..FeedConfig::default() }
}

fn request<'b>(cfg: &FeedConfig, content_type: &str, req: &[(&str, &str)], body: &'b [u8]) -> FeedOutcome<'b> {
    let req: Vec<Field> = req.iter().map(|(n, v)| Field::new(n, v)).collect();
    let len = body.len().to_string();
    let resp = [Field::new("Content-Type", content_type), Field::new("Content-Length", &len), Field::new("ETag", "\"origin\"")];
    let x = Exchange { method: b"GET", uri: b"/atom.xml", request: &req, status: 200, response: &resp, content_length: None };
    feed::process(cfg, &x, body)
}

fn etag_of(o: &FeedOutcome) -> String {
    o.edits
        .iter()
        .find_map(|e| match e {
            Edit::Set("ETag", v) => Some(v.clone()),
            _ => None,
        })
        .expect("every feed response is tagged")
}

/// The properties for one series of versions (Atom, or RSS built from it).
fn every_pair(versions: &[Vec<u8>], content_type: &str) -> usize {
    let mut truncated = 0;
    for (i, vi) in versions.iter().enumerate() {
        let held: HashSet<Key> = keys(vi).into_iter().collect();
        let ti = tag(vi);
        for vj in &versions[i + 1..] {
            let fj = feed::parse(vj).unwrap();
            let want: Vec<Key> = keys(vj).into_iter().filter(|k| !held.contains(k)).collect();
            for (a_im, status) in [(true, 226), (false, 200)] {
                let mut req = vec![("If-None-Match", ti.as_str())];
                if a_im {
                    req.push(("A-IM", "feed"));
                }
                let o = request(&both(), content_type, &req, vj);
                assert_eq!(etag_of(&o), tag(vj), "the full feed's ETag");
                if vi == vj {
                    assert_eq!(o.status, 304);
                    continue;
                }
                if want.len() == fj.entries.len() {
                    assert_eq!(o.kind, FeedKind::Whole(Whole::NothingHeld));
                    assert_eq!(&o.body[..], &vj[..]);
                    continue;
                }
                assert_eq!(o.status, status, "{:?}", o.kind);
                assert_eq!(o.coding, "feed");
                // Exactly the entries the reader lacks, in document order.
                assert_eq!(keys(&o.body), want);
                // Head and tail intact, every kept entry verbatim.
                assert!(o.body.starts_with(fj.head(vj)));
                let last = fj.entries.last().unwrap().span.end;
                assert!(o.body.ends_with(&vj[last..]));
                let t = feed::parse(&o.body).unwrap();
                for e in &t.entries {
                    let orig = fj.entries.iter().find(|f| f.hash == e.hash).unwrap();
                    assert_eq!(o.body[e.span.clone()], vj[orig.span.clone()]);
                }
                assert_eq!(t.kind, fj.kind);
                truncated += 1;
            }
        }
    }
    truncated
}

/// A reader polling every version: it accumulates exactly the union of the
/// versions' entries, and never receives an entry it holds in a truncated
/// response. Returns the bytes received (bodies).
fn poll_every_version(versions: &[Vec<u8>], content_type: &str, a_im: bool) -> u64 {
    let mut have: HashSet<Key> = HashSet::new();
    let mut union: HashSet<Key> = HashSet::new();
    let mut etag: Option<String> = None;
    let mut bytes = 0u64;
    for v in versions {
        union.extend(keys(v));
        let mut req = Vec::new();
        if let Some(t) = &etag {
            req.push(("If-None-Match", t.as_str()));
        }
        if a_im {
            req.push(("A-IM", "feed"));
        }
        let o = request(&both(), content_type, &req, v);
        bytes += o.body.len() as u64;
        match o.status {
            304 => {}
            200 | 226 => {
                let got = keys(&o.body);
                if !o.coding.is_empty() {
                    for k in &got {
                        assert!(!have.contains(k), "a truncated response resent an entry the reader has");
                    }
                }
                have.extend(got);
            }
            s => panic!("status {s}"),
        }
        etag = Some(etag_of(&o));
        assert_eq!(have, union, "the reader lost an entry");
    }
    bytes
}

#[test]
fn atom_every_pair_gets_exactly_the_new_entries() {
    let v = corpus();
    let n = every_pair(&v, "application/atom+xml");
    eprintln!("{n} truncated responses");
    assert!(n > 600, "{n} truncated responses");
}

#[test]
fn rss_every_pair_gets_exactly_the_new_entries() {
    let v: Vec<Vec<u8>> = corpus().iter().map(|a| to_rss(a)).collect();
    assert_eq!(rfc822("2015-09-20T16:05:34.660Z"), "Sun, 20 Sep 2015 16:05:34 GMT");
    assert_eq!(feed::parse(&v[0]).unwrap().kind, feed::Kind::Rss2);
    assert_eq!(keys(&v[29]).len(), 20);
    let n = every_pair(&v, "application/rss+xml; charset=utf-8");
    eprintln!("{n} truncated responses");
    assert!(n > 600, "{n} truncated responses");
}

#[test]
fn a_reader_polling_every_version_accumulates_the_union() {
    let atom = corpus();
    let rss: Vec<Vec<u8>> = atom.iter().map(|a| to_rss(a)).collect();
    for (v, ct) in [(&atom, "application/atom+xml"), (&rss, "application/rss+xml")] {
        let explicit = poll_every_version(v, ct, true);
        let implicit = poll_every_version(v, ct, false);
        let full: u64 = v.iter().map(|d| d.len() as u64).sum();
        assert_eq!(explicit, implicit);
        assert!(explicit * 2 < full, "{ct}: {explicit} of {full} bytes");
    }
}

/// Python's feedparser (Debian `python3-feedparser`) reads every truncated
/// document of successive versions without complaint and finds the
/// entries expected. Skipped, loudly, when it is not installed.
#[test]
fn feedparser_accepts_truncated_documents() {
    // Debian's python3 (where the package installs), else the one on PATH.
    let python = ["/usr/bin/python3", "python3"].into_iter().find(|p| {
        std::process::Command::new(p)
            .args(["-c", "import feedparser"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    let Some(python) = python else {
        eprintln!("SKIPPED: python3-feedparser is not installed (build/deps installs it)");
        assert!(std::env::var_os("HSYNC_REQUIRE_FEEDPARSER").is_none(), "HSYNC_REQUIRE_FEEDPARSER is set");
        return;
    };
    let dir = std::env::temp_dir().join(format!("hsync-feedparser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let atom = corpus();
    let rss: Vec<Vec<u8>> = atom.iter().map(|a| to_rss(a)).collect();
    let mut expected = Vec::new();
    for (name, v, ct) in [("atom", &atom, "application/atom+xml"), ("rss", &rss, "application/rss+xml")] {
        for i in 0..v.len() - 1 {
            let o = request(&both(), ct, &[("A-IM", "feed"), ("If-None-Match", &tag(&v[i]))], &v[i + 1]);
            if o.status != 226 {
                continue;
            }
            let path = dir.join(format!("{name}-{i:02}.xml"));
            std::fs::write(&path, &o.body).unwrap();
            let ids: Vec<String> = keys(&o.body).into_iter().map(|(id, _)| String::from_utf8(id).unwrap()).collect();
            expected.push((path, ids));
        }
    }
    assert!(expected.len() > 20, "{}", expected.len());
    let script = r#"
import sys, json, feedparser
for path in sys.argv[1:]:
    d = feedparser.parse(path)
    print(json.dumps({"bozo": int(d.bozo), "err": str(d.get("bozo_exception", "")), "title": d.feed.get("title", ""), "ids": [e.get("id", "") for e in d.entries]}))
"#;
    let out = std::process::Command::new(python).arg("-c").arg(script).args(expected.iter().map(|(p, _)| p)).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), expected.len());
    for (line, (path, ids)) in lines.iter().zip(&expected) {
        assert!(line.contains("\"bozo\": 0"), "{}: {line}", path.display());
        assert!(line.contains("mlz000"), "{}: the feed's title survives: {line}", path.display());
        let want = format!("\"ids\": {}", serde_like(ids));
        assert!(line.contains(&want), "{}: {line}\nwant {want}", path.display());
    }
    eprintln!("feedparser read {} truncated documents; the first: {}", lines.len(), lines[0]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A JSON list of strings as Python's json.dumps writes it (ASCII escapes).
fn serde_like(ids: &[String]) -> String {
    let items: Vec<String> = ids
        .iter()
        .map(|s| {
            let mut o = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => o += "\\\"",
                    '\\' => o += "\\\\",
                    c if (c as u32) < 0x80 => o.push(c),
                    c => {
                        let mut b = [0u16; 2];
                        for u in c.encode_utf16(&mut b) {
                            o += &format!("\\u{u:04x}");
                        }
                    }
                }
            }
            o + "\""
        })
        .collect();
    format!("[{}]", items.join(", "))
}

// ---- Hostile input ----

const SMALL: &str = r#"<?xml version="1.0"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><id>urn:f</id>
<entry><id>urn:3</id><updated>3</updated><title>three</title></entry>
<entry><id>urn:2</id><updated>2</updated><title>two</title></entry>
<entry><id>urn:1</id><updated>1</updated><title>one</title></entry>
</feed>
"#;

fn atom_with(entries: &str) -> String {
    format!("<feed xmlns=\"http://www.w3.org/2005/Atom\"><title>t</title>\n{entries}</feed>\n")
}

#[test]
fn deep_nesting_and_too_many_entries_send_the_whole_feed() {
    let deep = atom_with(&format!("<entry><id>x</id>{}{}</entry>", "<div>".repeat(100_000), "</div>".repeat(100_000)));
    assert!(matches!(feed::parse(deep.as_bytes()), Err(hsync_core::Error::TooLarge(_))));
    let t = tag(SMALL.as_bytes());
    let o = request(&both(), "application/atom+xml", &[("If-None-Match", &t)], deep.as_bytes());
    assert!(matches!(o.kind, FeedKind::Whole(Whole::Unparsable(_))), "{:?}", o.kind);
    assert_eq!(&o.body[..], deep.as_bytes());

    let many: String = (0..hsync_core::limits::FEED_MAX_ENTRIES + 1).map(|i| format!("<entry><id>{i}</id></entry>\n")).collect();
    let many = atom_with(&many);
    assert!(matches!(feed::parse(many.as_bytes()), Err(hsync_core::Error::TooLarge(_))));
    let big_entry =
        atom_with(&format!("<entry><id>x</id><content>{}</content></entry>", "a".repeat(hsync_core::limits::FEED_MAX_ENTRY_BYTES)));
    assert!(matches!(feed::parse(big_entry.as_bytes()), Err(hsync_core::Error::TooLarge(_))));
    // A body over the buffering bound is not even parsed.
    let huge = vec![b' '; hsync_core::limits::FEED_MAX_BYTES + 1];
    let o = request(&both(), "application/atom+xml", &[("If-None-Match", &t)], &huge);
    assert!(matches!(o.kind, FeedKind::Skipped(_)) && o.edits.is_empty());
}

#[test]
fn dtd_entities_are_never_expanded() {
    let mut dtd = String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE feed [\n<!ENTITY lol \"lol\">\n");
    for i in 1..10 {
        let prev = if i == 1 { "lol".to_string() } else { format!("lol{}", i - 1) };
        dtd += &format!("<!ENTITY lol{i} \"{}\">\n", format!("&{prev};").repeat(10));
    }
    dtd += "]>\n";
    let doc = format!(
        "{dtd}<feed xmlns=\"http://www.w3.org/2005/Atom\"><title>&lol9;</title>\n<entry><id>&lol9;</id><updated>1</updated><title>&lol9;&lol9;</title></entry>\n<entry><id>b</id><updated>&lol9;</updated></entry>\n</feed>\n"
    );
    let started = std::time::Instant::now();
    let f = feed::parse(doc.as_bytes()).unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    assert_eq!(f.entries[0].id, b"&lol9;", "kept as written, not expanded");
    assert_eq!(f.entries[1].version, b"&lol9;");
    // Truncation copies bytes: the DTD stays in the head, nothing grows.
    let older = doc.replace("<entry><id>&lol9;</id><updated>1</updated><title>&lol9;&lol9;</title></entry>\n", "");
    let o = request(&both(), "application/atom+xml", &[("A-IM", "feed"), ("If-None-Match", &tag(older.as_bytes()))], doc.as_bytes());
    assert_eq!(o.status, 226);
    assert!(o.body.len() < doc.len());
    assert!(o.body.starts_with(dtd.as_bytes()));
    assert_eq!(keys(&o.body), vec![(b"&lol9;".to_vec(), b"1".to_vec())]);
}

#[test]
fn truncated_xml_never_panics_and_is_sent_whole() {
    let v = corpus();
    let doc = &v[10];
    let t = tag(&v[9]);
    let end = doc.iter().rposition(|&b| b == b'>').unwrap();
    for cut in (0..=end).step_by(997).chain([end, end - 1, end - 9]) {
        let part = &doc[..cut];
        if let Ok(f) = feed::parse(part) {
            panic!("a document cut at {cut} parsed: {:?}", f.kind);
        }
        let o = request(&both(), "application/atom+xml", &[("A-IM", "feed"), ("If-None-Match", &t)], part);
        assert_eq!((o.status, &o.body[..]), (200, part));
    }
    for cut in 0..SMALL.len() - 1 {
        let part = &SMALL.as_bytes()[..cut];
        assert!(feed::parse(part).is_err(), "{cut}");
    }
}

#[test]
fn entries_without_identity_and_duplicates() {
    // No id: the entry's bytes are its identity; a change makes it new.
    let old = atom_with("<entry><title>a</title></entry>\n<entry><title>b</title></entry>\n");
    let new = atom_with("<entry><title>a</title></entry>\n<entry><title>b, edited</title></entry>\n<entry><title>c</title></entry>\n");
    let o = request(&both(), "application/atom+xml", &[("A-IM", "feed"), ("If-None-Match", &tag(old.as_bytes()))], new.as_bytes());
    assert_eq!(o.status, 226);
    let body = String::from_utf8(o.body.to_vec()).unwrap();
    assert!(!body.contains("<title>a</title>") && body.contains("b, edited") && body.contains("<title>c</title>"), "{body}");
    // Duplicate identities: all held or all sent, never half.
    let old = atom_with("<entry><id>d</id><updated>1</updated></entry>\n<entry><id>x</id></entry>\n");
    let new = atom_with("<entry><id>n</id></entry>\n<entry><id>d</id><updated>1</updated><title>1</title></entry>\n<entry><id>d</id><updated>1</updated><title>2</title></entry>\n");
    let o = request(&both(), "application/atom+xml", &[("If-None-Match", &tag(old.as_bytes()))], new.as_bytes());
    assert_eq!((o.status, &o.kind, o.sent), (200, &FeedKind::Truncated, 1));
    let o = request(
        &both(),
        "application/atom+xml",
        &[("If-None-Match", &tag(atom_with("<entry><id>n</id></entry>\n").as_bytes()))],
        new.as_bytes(),
    );
    assert_eq!(o.sent, 2);
    // An updated entry is sent again (same id, new `updated`).
    let old = SMALL.to_string();
    let new = SMALL.replace("<updated>2</updated>", "<updated>2b</updated>");
    let o = request(&both(), "application/atom+xml", &[("A-IM", "feed"), ("If-None-Match", &tag(old.as_bytes()))], new.as_bytes());
    assert_eq!(keys(&o.body), vec![(b"urn:2".to_vec(), b"2b".to_vec())]);
}

#[test]
fn hostile_if_none_match() {
    let doc = SMALL.as_bytes();
    let older = SMALL.replace("<entry><id>urn:3</id><updated>3</updated><title>three</title></entry>\n", "");
    let old = tag(older.as_bytes());
    let hundred = vec![old.as_str(); 100].join(", ");
    let foreign_hashes = Etaglet { digest: [9; 12], hashes: vec![1, 2, 3, 0xdead_beef] }.to_header();
    let long = format!("\"hf1.{}\"", "A".repeat(100_000));
    for inm in [
        hundred.as_str(),
        "\"hf1.\"",
        "\"hf1.AAAA\"",
        "hf1.AAAAAAAAAAAAAAAA",
        "W/\"\"",
        "\"",
        ",,,",
        &long,
        &foreign_hashes,
        "\"hf1.A=AAAAAAAAAAAAAAA\"",
    ] {
        for a_im in [true, false] {
            let mut req = vec![("If-None-Match", inm)];
            if a_im {
                req.push(("A-IM", "feed"));
            }
            let o = request(&both(), "application/atom+xml", &req, doc);
            assert_eq!((o.status, &o.body[..]), (200, doc), "{}", &inm[..inm.len().min(40)]);
            assert!(matches!(o.kind, FeedKind::Whole(_)));
        }
    }
    // The same tag on two lines is two tags: whole.
    let o = request(&both(), "application/atom+xml", &[("If-None-Match", &old), ("If-None-Match", &old)], doc);
    assert_eq!(o.kind, FeedKind::Whole(Whole::Several));
}

fn mutate(doc: &[u8], ops: &[(u32, u8, u8)]) -> Vec<u8> {
    const FRAGMENTS: [&[u8]; 12] =
        [b"<", b">", b"</entry>", b"<entry>", b"<![CDATA[", b"]]>", b"<!--", b"&amp;", b"&x;", b"<id>", b"</id>", b"\xff"];
    let mut d = doc.to_vec();
    for &(at, op, byte) in ops {
        if d.is_empty() {
            break;
        }
        let at = at as usize % d.len();
        match op % 4 {
            0 => d[at] ^= byte | 1,
            1 => {
                d.remove(at);
            }
            2 => {
                let f = FRAGMENTS[byte as usize % FRAGMENTS.len()];
                d.splice(at..at, f.iter().copied());
            }
            _ => d.truncate(at),
        }
    }
    d
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random mutations never panic; whatever is sent truncated parses and
    /// holds only entries of the feed, verbatim.
    #[test]
    fn mutations_never_panic(ops in proptest::collection::vec((any::<u32>(), any::<u8>(), any::<u8>()), 1..6), a_im in any::<bool>()) {
        let older = SMALL.replace("<entry><id>urn:3</id><updated>3</updated><title>three</title></entry>\n", "");
        let old = tag(older.as_bytes());
        let doc = mutate(SMALL.as_bytes(), &ops);
        let mut req = vec![("If-None-Match", old.as_str())];
        if a_im { req.push(("A-IM", "feed")); }
        let o = request(&both(), "application/atom+xml", &req, &doc);
        if !o.coding.is_empty() {
            let t = feed::parse(&o.body).expect("a truncated document parses");
            let f = feed::parse(&doc).unwrap();
            for e in &t.entries {
                prop_assert!(f.entries.iter().any(|g| g.hash == e.hash && doc[g.span.clone()] == o.body[e.span.clone()]));
            }
        }
        // Mutated ETaglets too.
        let bad = String::from_utf8_lossy(&mutate(old.as_bytes(), &ops)).into_owned();
        let o = request(&both(), "application/atom+xml", &[("If-None-Match", &bad), ("A-IM", "feed")], SMALL.as_bytes());
        prop_assert!(o.status == 200 || o.status == 226 || o.status == 304);
    }
}

#[test]
fn corpus_mutations_never_panic() {
    let v = corpus();
    let t = tag(&v[0]);
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..200 {
        let ops: Vec<(u32, u8, u8)> = (0..1 + i % 4).map(|_| (next() as u32, next() as u8, next() as u8)).collect();
        let doc = mutate(&v[5], &ops);
        let o = request(&both(), "application/atom+xml", &[("If-None-Match", &t), ("A-IM", "feed")], &doc);
        if !o.coding.is_empty() {
            feed::parse(&o.body).expect("a truncated document parses");
        }
    }
}

// ---- Behind a shared cache ----

/// A shared cache as RFC 9111 allows one to behave, at its most
/// aggressive: it stores every 200 not marked `private` or `no-store`
/// (under the request's values of the names in `Vary`), treats every
/// stored response as stale, revalidates with its own tag (`If-None-Match`
/// of the stored response when the reader sent none; with `add_tags`, the
/// tags of every stored response added to the reader's), sends `Via`, and
/// serves its stored body when the origin answers its own tag with 304.
struct SharedCache {
    add_tags: bool,
    /// (the request's values of the names in Vary, ETag, body)
    stored: Vec<(VaryKey, String, Vec<u8>)>,
}

type VaryKey = Vec<(String, Option<String>)>;

/// The response as sent after the edits: (status, ETag, Cache-Control, Vary, body).
fn apply(o: &FeedOutcome, origin_cc: &str) -> (u32, String, String, String, Vec<u8>) {
    let (mut cc, mut vary) = (origin_cc.to_string(), String::new());
    for e in &o.edits {
        match e {
            Edit::Set("Cache-Control", v) => cc = v.clone(),
            Edit::Set("Vary", v) => vary = v.clone(),
            _ => {}
        }
    }
    (o.status, etag_of(o), cc, vary, o.body.to_vec())
}

impl SharedCache {
    fn get(&mut self, cfg: &FeedConfig, req: &[(&str, &str)], doc: &[u8]) -> (u32, String, Vec<u8>) {
        let value = |n: &str| req.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.to_string());
        let hit = self.stored.iter().find(|(key, _, _)| key.iter().all(|(n, v)| value(n) == *v)).cloned();
        let reader_inm = value("If-None-Match");
        let mut up: Vec<(String, String)> =
            req.iter().filter(|(n, _)| *n != "If-None-Match").map(|(n, v)| (n.to_string(), v.to_string())).collect();
        let mut tags: Vec<String> = reader_inm.iter().cloned().collect();
        if let Some((_, t, _)) = &hit {
            if tags.is_empty() {
                tags.push(t.clone());
            }
        }
        if self.add_tags {
            for (_, t, _) in &self.stored {
                if !tags.contains(t) {
                    tags.push(t.clone());
                }
            }
        }
        if !tags.is_empty() {
            up.push(("If-None-Match".into(), tags.join(", ")));
        }
        up.push(("Via".into(), "1.1 squid".into()));
        let up: Vec<(&str, &str)> = up.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let o = request(cfg, "application/atom+xml", &up, doc);
        let (status, etag, cc, vary, body) = apply(&o, "max-age=60");
        if status == 304 {
            if reader_inm.as_deref().is_some_and(|t| t == etag) {
                return (304, etag, Vec::new());
            }
            // The origin confirmed one of the cache's tags: serve that copy.
            let (_, t, b) = self.stored.iter().find(|(_, t, _)| *t == etag).cloned().expect("304 for a tag the cache holds");
            return (200, t, b);
        }
        let storable = status == 200 && !cc.contains("private") && !cc.contains("no-store");
        if storable {
            let key = vary.split(',').map(|n| n.trim()).filter(|n| !n.is_empty()).map(|n| (n.to_string(), value(n))).collect();
            self.stored.retain(|(k, _, _)| *k != key);
            self.stored.push((key, etag.clone(), body.clone()));
        }
        (status, etag, body)
    }
}

#[test]
fn readers_behind_a_shared_cache_lose_nothing() {
    let v = corpus();
    for (explicit, implicit) in [(true, false), (false, true), (true, true)] {
        let cfg = FeedConfig { explicit, implicit, ..FeedConfig::default() };
        for add_tags in [false, true] {
            let mut cache = SharedCache { add_tags, stored: Vec::new() };
            // (first version polled, every how many versions, sends A-IM)
            let readers = [(0, 1, explicit), (9, 3, explicit), (19, 1, explicit), (4, 2, false), (25, 1, false)];
            type Reader = (Option<String>, HashSet<Key>, HashSet<Key>);
            let mut state: Vec<Reader> = vec![(None, HashSet::new(), HashSet::new()); readers.len()];
            let mut saved = 0;
            for (k, doc) in v.iter().enumerate() {
                for (r, &(first, every, a_im)) in readers.iter().enumerate() {
                    if k < first || (k - first) % every != 0 {
                        continue;
                    }
                    let (etag, have, union) = &mut state[r];
                    let mut req = Vec::new();
                    if let Some(t) = etag.as_deref() {
                        req.push(("If-None-Match", t));
                    }
                    if a_im {
                        req.push(("A-IM", "feed"));
                    }
                    let (status, new_tag, body) = cache.get(&cfg, &req, doc);
                    if status != 304 {
                        let got = keys(&body);
                        if got.len() < keys(doc).len() {
                            saved += 1;
                            assert!(etag.is_some(), "a first-time reader got a truncated feed");
                            assert!(status == 200 || a_im, "a 226 to a request without A-IM");
                        }
                        have.extend(got);
                    }
                    *etag = Some(new_tag);
                    union.extend(keys(doc));
                    assert_eq!(
                        have, union,
                        "reader {r} lost an entry at version {k} (explicit {explicit}, implicit {implicit}, add_tags {add_tags})"
                    );
                }
            }
            // Explicit readers behind a cache that does not add its tags
            // to theirs still get only what they lack (one that does makes
            // every answer a whole feed: several tags).
            eprintln!("explicit {explicit}, implicit {implicit}, cache adds its tags {add_tags}: {saved} truncated responses");
            if explicit && !add_tags {
                assert!(saved > 40, "{saved}");
            }
        }
    }
}
