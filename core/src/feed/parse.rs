//! Finding the entries of an Atom 1.0, RSS 2.0 (and 0.9x) or RSS 1.0
//! document, with their identity and their byte span, in one streaming
//! pass of `quick-xml` over the bytes as they are (nothing is decoded,
//! rewritten or re-serialized: a truncated document is cut from the
//! original bytes, see [`Feed::truncate`]).
//!
//! - Namespaces are resolved (`<atom:entry>` under any prefix, a default
//!   namespace, a prefix rebound inside an entry): an Atom entry is an
//!   element `entry` in the Atom namespace that is a child of the root
//!   `feed`; an RSS 2.0 item an unqualified `item` child of the `channel`
//!   of the root `rss`; an RSS 1.0 item an `item` in the RSS 1.0 namespace
//!   that is a child of the root `rdf:RDF`.
//! - CDATA sections, comments, processing instructions and references are
//!   events of the tokenizer like any other, so a `</entry>` inside a CDATA
//!   section or a comment is text, not the end of the entry.
//! - DTD entities are never expanded (quick-xml only reports the DOCTYPE):
//!   a reference to one is kept as its raw text (`&lol9;`), so a
//!   "billion laughs" document costs its length and no more.
//! - Everything is bounded ([`crate::limits`]): the document's size, the
//!   depth, the number of entries, an entry's size. Over a limit, or on any
//!   XML error, [`parse`] returns an error and the caller sends the whole
//!   feed as it is.

use crate::error::{Error, Result};
use crate::limits::{FEED_MAX_BYTES, FEED_MAX_DEPTH, FEED_MAX_ENTRIES, FEED_MAX_ENTRY_BYTES};
use quick_xml::events::Event;
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::NsReader;
use std::ops::Range;

pub const ATOM_NS: &[u8] = b"http://www.w3.org/2005/Atom";
pub const RDF_NS: &[u8] = b"http://www.w3.org/1999/02/22-rdf-syntax-ns#";
pub const RSS1_NS: &[u8] = b"http://purl.org/rss/1.0/";
pub const DC_NS: &[u8] = b"http://purl.org/dc/elements/1.1/";

/// The kind of feed, from its root element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `<feed xmlns="http://www.w3.org/2005/Atom">`, entries `<entry>`.
    Atom,
    /// `<rss>` (2.0 and 0.9x), items `<item>` in its `<channel>`.
    Rss2,
    /// `<rdf:RDF>` with RSS 1.0 `<item>`s.
    Rss1,
}

/// Where an entry's identity came from (part of its hash, so that an item
/// that gains a `guid` is a new item, never one the reader is said to have).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Atom `id` (version: `updated`, else `published`).
    AtomId,
    /// RSS `guid` (version: `pubDate`, else `dc:date`).
    Guid,
    /// RSS `link` (version: `pubDate`, else `dc:date`).
    Link,
    /// RSS 1.0 `rdf:about` (version: `dc:date`).
    About,
    /// None of these: the entry's bytes (any change makes it new).
    Bytes,
}

/// One entry (or item) of a feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its bytes in the document: from `<` of its start tag to `>` of its end tag.
    pub span: Range<usize>,
    pub source: Source,
    /// The identity's text (references to the predefined entities and
    /// character references resolved, others kept raw; trimmed).
    pub id: Vec<u8>,
    /// The version's text (`updated`, `pubDate`...), empty if none.
    pub version: Vec<u8>,
    /// The 32-bit hash of `(source, id, version)` named in ETags.
    pub hash: u32,
}

/// A parsed feed: its kind and its entries in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    pub kind: Kind,
    pub entries: Vec<Entry>,
    /// The document's length (the spans refer to it).
    pub len: usize,
}

/// The seed of the entry hashes. Fixed, not a per-deployment secret: every
/// server of a deployment, before and after a restart, must give a version
/// the same ETag (docs/protocol.md §8.3 says why that costs nothing).
pub const ENTRY_HASH_SEED: u64 = 0x6873_796e_635f_6665; // "hsync_fe"

/// The 32-bit hash an ETag names for an entry: XXH3-64 of the source tag,
/// the identity's length, the identity and the version, truncated.
pub fn entry_hash(source: Source, id: &[u8], version: &[u8]) -> u32 {
    let mut buf = Vec::with_capacity(9 + id.len() + version.len());
    buf.push(match source {
        Source::AtomId => b'a',
        Source::Guid => b'g',
        Source::Link => b'l',
        Source::About => b'r',
        Source::Bytes => b'b',
    });
    buf.extend_from_slice(&(id.len() as u64).to_le_bytes());
    buf.extend_from_slice(id);
    buf.extend_from_slice(version);
    crate::hash::xxh3_64_with_seed(&buf, ENTRY_HASH_SEED) as u32
}

/// Which child element of an entry is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Id,
    Updated,
    Published,
    Guid,
    Link,
    PubDate,
    DcDate,
}

/// What is gathered while inside an entry.
#[derive(Default)]
struct Current {
    start: usize,
    about: Option<Vec<u8>>,
    fields: Vec<(Field, Vec<u8>)>,
    reading: Option<(Field, Vec<u8>)>,
}

impl Current {
    fn get(&self, f: Field) -> Option<&[u8]> {
        self.fields.iter().find(|(g, _)| *g == f).map(|(_, v)| v.as_slice())
    }
}

/// The namespaces that matter here, so that nothing borrowed from the
/// reader outlives the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ns {
    None,
    Atom,
    Rdf,
    Rss1,
    Dc,
    Other,
}

fn classify(r: &ResolveResult<'_>) -> Ns {
    match r {
        ResolveResult::Unbound => Ns::None,
        ResolveResult::Bound(Namespace(n)) => match n.as_bytes() {
            ATOM_NS => Ns::Atom,
            RDF_NS => Ns::Rdf,
            RSS1_NS => Ns::Rss1,
            DC_NS => Ns::Dc,
            _ => Ns::Other,
        },
        ResolveResult::Unknown(_) => Ns::Other,
    }
}

fn trimmed(v: &[u8]) -> Vec<u8> {
    crate::http::fields::trim(v).to_vec()
}

/// Parses a feed document. Any error (not XML, not a feed, over a limit)
/// means: send the whole feed.
pub fn parse(doc: &[u8]) -> Result<Feed> {
    if doc.len() > FEED_MAX_BYTES {
        return Err(Error::TooLarge("feed larger than FEED_MAX_BYTES"));
    }
    let mut reader = NsReader::from_reader(doc);
    {
        let c = reader.config_mut();
        c.trim_text(false);
        c.check_end_names = true;
        c.expand_empty_elements = false;
        c.allow_unmatched_ends = false;
    }
    let mut kind = None;
    let mut depth = 0usize;
    // Depth (after its start tag) of the element whose children are entries.
    let mut container: Option<usize> = None;
    let mut entries = Vec::new();
    let mut cur: Option<Current> = None;
    let mut root_closed = false;
    loop {
        let before = reader.buffer_position() as usize;
        let (res, ev) = reader.read_resolved_event().map_err(|_| Error::Malformed("feed is not well-formed XML"))?;
        let ns = classify(&res);
        let after = reader.buffer_position() as usize;
        if let Some(c) = &cur {
            if after - c.start > FEED_MAX_ENTRY_BYTES {
                return Err(Error::TooLarge("feed entry larger than FEED_MAX_ENTRY_BYTES"));
            }
        }
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                if root_closed {
                    return Err(Error::Malformed("feed has content after its root element"));
                }
                let local = e.local_name();
                let local = local.as_ref().as_bytes();
                let level = depth + 1; // this element's depth
                if level > FEED_MAX_DEPTH {
                    return Err(Error::TooLarge("feed nested deeper than FEED_MAX_DEPTH"));
                }
                if level == 1 {
                    kind = Some(if local == b"feed" && ns == Ns::Atom {
                        container = Some(1);
                        Kind::Atom
                    } else if local == b"rss" && ns == Ns::None {
                        Kind::Rss2
                    } else if local == b"RDF" && ns == Ns::Rdf {
                        container = Some(1);
                        Kind::Rss1
                    } else {
                        return Err(Error::Malformed("not an Atom or RSS feed"));
                    });
                } else if level == 2 && kind == Some(Kind::Rss2) && container.is_none() && local == b"channel" && ns == Ns::None && !empty {
                    container = Some(2);
                }
                let is_entry = container == Some(depth)
                    && cur.is_none()
                    && match kind {
                        Some(Kind::Atom) => local == b"entry" && ns == Ns::Atom,
                        Some(Kind::Rss2) => local == b"item" && ns == Ns::None,
                        Some(Kind::Rss1) => local == b"item" && ns == Ns::Rss1,
                        None => false,
                    };
                if is_entry {
                    if entries.len() >= FEED_MAX_ENTRIES {
                        return Err(Error::TooLarge("feed has more than FEED_MAX_ENTRIES entries"));
                    }
                    let mut c = Current { start: before, ..Default::default() };
                    if kind == Some(Kind::Rss1) {
                        for a in e.attributes().flatten() {
                            let (ar, an) = reader.resolver().resolve_attribute(a.key);
                            if an.as_ref().as_bytes() == b"about" && classify(&ar) == Ns::Rdf {
                                let v = a.normalized_value(quick_xml::XmlVersion::Implicit1_0).unwrap_or_else(|_| a.value.clone());
                                c.about = Some(trimmed(v.as_bytes()));
                            }
                        }
                    }
                    if empty {
                        entries.push(finish(doc, c, after, kind.unwrap_or(Kind::Atom)));
                    } else {
                        cur = Some(c);
                    }
                } else if let Some(c) = &mut cur {
                    // A direct child of the entry naming its identity or version.
                    if container.map(|d| d.saturating_add(2)) == Some(level) && c.reading.is_none() && !empty {
                        let f = match kind {
                            Some(Kind::Atom) if ns == Ns::Atom => match local {
                                b"id" => Some(Field::Id),
                                b"updated" => Some(Field::Updated),
                                b"published" => Some(Field::Published),
                                _ => None,
                            },
                            Some(Kind::Rss2) if ns == Ns::None => match local {
                                b"guid" => Some(Field::Guid),
                                b"link" => Some(Field::Link),
                                b"pubDate" => Some(Field::PubDate),
                                _ => None,
                            },
                            Some(Kind::Rss1) if ns == Ns::Rss1 && local == b"link" => Some(Field::Link),
                            Some(Kind::Rss1 | Kind::Rss2) if ns == Ns::Dc && local == b"date" => Some(Field::DcDate),
                            _ => None,
                        };
                        if let Some(f) = f.filter(|f| c.get(*f).is_none()) {
                            c.reading = Some((f, Vec::new()));
                        }
                    }
                }
                if !empty {
                    depth = level;
                }
            }
            Event::End(_) => {
                if depth == 0 {
                    return Err(Error::Malformed("unmatched end tag"));
                }
                depth -= 1;
                if depth == 0 {
                    root_closed = true;
                }
                if let Some(c) = &mut cur {
                    let entry_level = container.unwrap_or(0).saturating_add(1);
                    if depth == entry_level {
                        if let Some((f, v)) = c.reading.take() {
                            c.fields.push((f, trimmed(&v)));
                        }
                    } else if depth + 1 == entry_level {
                        let c = cur.take().unwrap_or_default();
                        entries.push(finish(doc, c, after, kind.unwrap_or(Kind::Atom)));
                    }
                }
                if kind == Some(Kind::Rss2) && container == Some(2) && depth == 1 {
                    // The channel ended: items of a second channel are not entries.
                    container = Some(usize::MAX);
                }
            }
            Event::Text(ref t) => {
                if let Some((_, v)) = cur.as_mut().and_then(|c| c.reading.as_mut()) {
                    v.extend_from_slice(t.xml10_content().as_bytes());
                } else if depth == 0 && !t.xml10_content().trim().is_empty() {
                    return Err(Error::Malformed("text outside the root element"));
                }
            }
            Event::CData(ref t) => {
                if let Some((_, v)) = cur.as_mut().and_then(|c| c.reading.as_mut()) {
                    v.extend_from_slice(t.xml10_content().as_bytes());
                }
            }
            Event::GeneralRef(ref r) => {
                if let Some((_, v)) = cur.as_mut().and_then(|c| c.reading.as_mut()) {
                    let name = r.xml10_content();
                    let predefined = match name.as_ref() {
                        "lt" => Some('<'),
                        "gt" => Some('>'),
                        "amp" => Some('&'),
                        "apos" => Some('\''),
                        "quot" => Some('"'),
                        _ => None,
                    };
                    match predefined.or_else(|| r.resolve_char_ref().ok().flatten()) {
                        Some(ch) => v.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes()),
                        // An entity of the DTD: never expanded, kept as written.
                        None => {
                            v.push(b'&');
                            v.extend_from_slice(name.as_bytes());
                            v.push(b';');
                        }
                    }
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
    if !root_closed || depth != 0 {
        return Err(Error::Truncated("feed ends inside an element"));
    }
    let kind = kind.ok_or(Error::Malformed("no root element"))?;
    Ok(Feed { kind, entries, len: doc.len() })
}

/// The identity of a finished entry.
fn finish(doc: &[u8], c: Current, end: usize, kind: Kind) -> Entry {
    let span = c.start..end;
    let date = |fs: &[Field]| fs.iter().find_map(|f| c.get(*f)).unwrap_or_default().to_vec();
    let nonempty = |f: Field| c.get(f).filter(|v| !v.is_empty()).map(|v| v.to_vec());
    let (source, id, version) = match kind {
        Kind::Atom => match nonempty(Field::Id) {
            Some(id) => (Source::AtomId, id, date(&[Field::Updated, Field::Published])),
            None => (Source::Bytes, Vec::new(), Vec::new()),
        },
        Kind::Rss2 | Kind::Rss1 => {
            let version = date(&[Field::PubDate, Field::DcDate]);
            if let Some(g) = nonempty(Field::Guid) {
                (Source::Guid, g, version)
            } else if let Some(a) = c.about.clone().filter(|a| !a.is_empty()) {
                (Source::About, a, version)
            } else if let Some(l) = nonempty(Field::Link) {
                (Source::Link, l, version)
            } else {
                (Source::Bytes, Vec::new(), Vec::new())
            }
        }
    };
    let (id, version) = if source == Source::Bytes {
        (crate::hash::xxh3_128(&doc[span.clone()]).to_le_bytes().to_vec(), Vec::new())
    } else {
        (id, version)
    };
    let hash = entry_hash(source, &id, &version);
    Entry { span, source, id, version, hash }
}

fn is_blank(b: &[u8]) -> bool {
    b.iter().all(|c| c.is_ascii_whitespace())
}

impl Feed {
    /// The document's head: everything before the first entry (the whole
    /// document when it has none).
    pub fn head<'d>(&self, doc: &'d [u8]) -> &'d [u8] {
        &doc[..self.entries.first().map_or(doc.len(), |e| e.span.start)]
    }

    /// The document with only the entries `keep` says, cut from the
    /// original bytes: the head, each kept entry verbatim in document
    /// order followed by the whitespace after it, and the tail (after the
    /// last entry). Anything between entries that is not whitespace
    /// (another element, a comment) is kept where it was.
    /// `doc` must be the document parsed (another one is returned whole).
    pub fn truncate(&self, doc: &[u8], keep: impl Fn(usize, &Entry) -> bool) -> Vec<u8> {
        let Some(last) = self.entries.last().filter(|_| doc.len() == self.len) else { return doc.to_vec() };
        let mut out = Vec::with_capacity(doc.len());
        out.extend_from_slice(self.head(doc));
        for (i, e) in self.entries.iter().enumerate() {
            let kept = keep(i, e);
            if kept {
                out.extend_from_slice(&doc[e.span.clone()]);
            }
            if let Some(next) = self.entries.get(i + 1) {
                let gap = &doc[e.span.end..next.span.start];
                if kept || !is_blank(gap) {
                    out.extend_from_slice(gap);
                }
            }
        }
        out.extend_from_slice(&doc[last.span.end..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ATOM: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>T</title>
  <id>urn:feed</id>
  <entry>
    <id>urn:1</id><updated>2024-01-02T00:00:00Z</updated>
    <content type="html"><![CDATA[</entry> <entry> &amp;]]></content>
    <!-- </entry> -->
  </entry>
  <entry><id> urn:2 &amp; &#x41; </id><updated>2024-01-01T00:00:00Z</updated><source><id>urn:other</id></source></entry>
  <entry><title>no id</title></entry>
</feed>
"#;

    #[test]
    fn atom_entries_and_spans() {
        let doc = ATOM.as_bytes();
        let f = parse(doc).unwrap();
        assert_eq!(f.kind, Kind::Atom);
        assert_eq!(f.entries.len(), 3);
        for e in &f.entries {
            assert!(doc[e.span.clone()].starts_with(b"<entry>"), "{:?}", std::str::from_utf8(&doc[e.span.clone()]));
            assert!(doc[e.span.clone()].ends_with(b"</entry>"));
        }
        assert_eq!(f.entries[0].id, b"urn:1");
        assert_eq!(f.entries[0].version, b"2024-01-02T00:00:00Z");
        assert_eq!(f.entries[1].id, b"urn:2 & A");
        assert_eq!(f.entries[2].source, Source::Bytes);
        assert!(f.head(doc).ends_with(b"<id>urn:feed</id>\n  "));
        let t = f.truncate(doc, |i, _| i == 1);
        let t = String::from_utf8(t).unwrap();
        assert!(t.starts_with(&ATOM[..ATOM.find("  <entry>").unwrap()]));
        assert!(t.ends_with("</source></entry>\n  \n</feed>\n"), "{t}");
        let g = parse(t.as_bytes()).unwrap();
        assert_eq!(g.entries.len(), 1);
        assert_eq!(g.entries[0].hash, f.entries[1].hash);
        // Nothing kept: the head and the tail.
        let none = parse(&f.truncate(doc, |_, _| false)).unwrap();
        assert!(none.entries.is_empty());
    }

    #[test]
    fn prefixes_and_default_namespaces() {
        let doc = br#"<a:feed xmlns:a="http://www.w3.org/2005/Atom" xmlns="urn:x">
<a:entry><a:id>1</a:id><id>not this</id><a:updated>u</a:updated></a:entry>
<entry><id>extension, not an entry</id></entry>
<e:entry xmlns:e="http://www.w3.org/2005/Atom"><e:id>2</e:id></e:entry>
</a:feed>"#;
        let f = parse(doc).unwrap();
        let ids: Vec<&[u8]> = f.entries.iter().map(|e| e.id.as_slice()).collect();
        assert_eq!(ids, [&b"1"[..], b"2"]);
        assert_eq!(f.entries[0].version, b"u");
        // An RSS 2.0 feed with a foreign default namespace on an item child.
        let doc = br#"<rss version="2.0"><channel><title>t</title>
<item><guid isPermaLink="false">g1</guid><pubDate>d1</pubDate></item>
<item><link>http://x/2</link></item>
<item><title>only a title</title></item>
<foo:item xmlns:foo="urn:foo">not an item</foo:item>
</channel></rss>"#;
        let f = parse(doc).unwrap();
        assert_eq!(f.kind, Kind::Rss2);
        let s: Vec<Source> = f.entries.iter().map(|e| e.source).collect();
        assert_eq!(s, [Source::Guid, Source::Link, Source::Bytes]);
        assert_eq!(f.entries[0].version, b"d1");
        // RSS 1.0.
        let doc = br#"<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel rdf:about="http://x/"><title>t</title></channel>
<item rdf:about="http://x/1"><title>1</title><dc:date>2024</dc:date></item>
<item rdf:about="http://x/2"><title>2</title></item>
</rdf:RDF>"#;
        let f = parse(doc).unwrap();
        assert_eq!(f.kind, Kind::Rss1);
        assert_eq!(f.entries.len(), 2);
        assert_eq!((f.entries[0].id.as_slice(), f.entries[0].version.as_slice()), (&b"http://x/1"[..], &b"2024"[..]));
    }

    #[test]
    fn bom_crlf_and_empty_feeds() {
        let doc = b"\xef\xbb\xbf<?xml version=\"1.0\"?>\r\n<rss version=\"2.0\"><channel>\r\n<item><guid>a\r\nb</guid></item>\r\n</channel></rss>\r\n";
        let f = parse(doc).unwrap();
        assert_eq!(f.entries[0].id, b"a\nb");
        assert!(f.head(doc).starts_with(b"\xef\xbb\xbf"));
        let empty = b"<feed xmlns=\"http://www.w3.org/2005/Atom\"><title>t</title></feed>";
        let f = parse(empty).unwrap();
        assert!(f.entries.is_empty());
        assert_eq!(f.truncate(empty, |_, _| false), empty);
        // Items of a second channel are not entries; nothing overflows.
        let two = b"<rss><channel><item><guid>1</guid></item></channel><channel><item><guid>2</guid></item></channel></rss>";
        assert_eq!(parse(two).unwrap().entries.len(), 1);
    }

    #[test]
    fn errors_not_panics() {
        for bad in [
            &b""[..],
            b"not xml",
            b"<html><body/></html>",
            b"<feed xmlns=\"http://www.w3.org/2005/Atom\"><entry>",
            b"<feed xmlns=\"http://www.w3.org/2005/Atom\"></entry></feed>",
            b"<feed xmlns=\"http://www.w3.org/2005/Atom\"></feed><feed/>",
            b"<rss><channel><item></channel></rss>",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
