//! Compression dictionaries (docs/protocol.md §7, RFC 9842 `dcz`), when the
//! page announces one: `Use-As-Dictionary` on the page itself, or a
//! dictionary named by `Link: <u>; rel="compression-dictionary"` or an
//! HTML `<link rel="compression-dictionary">`. The dictionary is fetched,
//! then the page asked for again naming it.

use super::{Ctx, Level, Requirement, Resp};
use crate::dict;
use base64::Engine;
use hsync_core::codec::dcz::{self as codec, DCZ_HEADER_LEN, DCZ_MAGIC};
use hsync_core::store::{hex, sha256, unhex};
use http::{Method, Uri};

const fn req(id: &'static str, section: &'static str, level: Level, text: &'static str) -> Requirement {
    Requirement { id, section, level, text }
}

pub const DICTIONARY: Requirement = req(
    "dcz.dictionary",
    "7.2",
    Level::Must,
    "an announced dictionary URL answers 200 with Use-As-Dictionary; a content-addressed one (/.well-known/hsync/dictionary/<sha-256>) holds bytes of that hash",
);
pub const OFFERED: Requirement = req(
    "dcz.offered",
    "7.3",
    Level::Should,
    "a request naming the announced dictionary (Available-Dictionary, Accept-Encoding: dcz) gets Content-Encoding: dcz",
);
pub const DECODE: Requirement = req(
    "dcz.decode",
    "7.3",
    Level::Must,
    "the dcz body is RFC 9842's header naming the offered dictionary, then a zstd frame that decodes with it (checksum verified) to exactly the page",
);
pub const VARY: Requirement = req("dcz.vary", "7.3", Level::Must, "the dcz response's Vary names Accept-Encoding and Available-Dictionary");
pub const ETAG: Requirement =
    req("dcz.etag", "7.3", Level::Must, "the dcz response does not carry the identity response's strong ETag (RFC 9110 §8.8.3)");
pub const UNKNOWN: Requirement =
    req("dcz.unknown-dictionary", "7.3", Level::Must, "a request naming a dictionary the server does not hold is never answered with dcz");
pub const NOT_ACCEPTED: Requirement =
    req("dcz.not-accepted", "7.3", Level::Must, "Available-Dictionary without dcz in Accept-Encoding is never answered with dcz");
pub const PLAIN_VARY: Requirement = req(
    "dcz.plain-vary",
    "7.3",
    Level::Should,
    "a response that announces a dictionary (so may be dcz-coded) names Available-Dictionary in Vary also when it is not coded",
);

pub const REQUIREMENTS: &[&Requirement] = &[&DICTIONARY, &OFFERED, &DECODE, &VARY, &ETAG, &UNKNOWN, &NOT_ACCEPTED, &PLAIN_VARY];

fn available(body: &[u8]) -> String {
    format!(":{}:", base64::engine::general_purpose::STANDARD.encode(sha256(body)))
}

/// The dictionary the page announces: its bytes and where they came from;
/// `Err` with why there is none usable (`None`: nothing announced).
async fn dictionary(cx: &mut Ctx<'_>) -> Option<Result<(Vec<u8>, String), String>> {
    let ua = cx.page.lines("use-as-dictionary");
    if !ua.is_empty() {
        let refs: Vec<&str> = ua.iter().map(String::as_str).collect();
        return Some(match dict::parse_use_as_dictionary(&refs) {
            Some(_) => Ok((cx.page.body.to_vec(), format!("the page itself (Use-As-Dictionary: {})", ua.join(", ")))),
            None => Err(format!("the page's Use-As-Dictionary is not usable: {}", ua.join(", "))),
        });
    }
    let links = cx.page.lines("link");
    let mut hrefs = dict::link_dictionaries(&links.iter().map(String::as_str).collect::<Vec<_>>());
    let html = cx.page.first("content-type").is_some_and(|t| t.to_ascii_lowercase().starts_with("text/html"));
    if html {
        hrefs.extend(dict::html_dictionaries(&cx.page.body));
    }
    let href = hrefs.first()?.clone();
    let Some(uri) = dict::resolve_same_origin(&cx.probe.url, &href) else {
        return Some(Err(format!("the announced dictionary {href:?} is not on the page's origin")));
    };
    Some(fetch(cx, &uri).await)
}

/// Fetches an announced dictionary and reports [`DICTIONARY`].
async fn fetch(cx: &mut Ctx<'_>, uri: &Uri) -> Result<(Vec<u8>, String), String> {
    let r = match cx.probe.send(Method::GET, uri, &[]).await {
        Ok(r) => r,
        Err(e) => {
            cx.fail(&DICTIONARY, format!("{uri}: {e}"));
            return Err("the dictionary could not be fetched".into());
        }
    };
    let mut bad = Vec::new();
    if r.status.as_u16() != 200 || !r.codings().is_empty() {
        bad.push(r.brief());
    }
    if r.lines("use-as-dictionary").is_empty() {
        bad.push("no Use-As-Dictionary".into());
    }
    let named = uri.path().strip_prefix(hsync_core::http::dictionary::DICTIONARY_PREFIX).and_then(unhex);
    if let Some(h) = named {
        if sha256(&r.body) != h {
            bad.push(format!("its {} bytes hash to {}, not to the hash in its URL", r.body.len(), hex(&sha256(&r.body))));
        }
    }
    if bad.is_empty() {
        let what = if named.is_some() { ", the bytes of the hash its URL names" } else { "" };
        cx.pass(&DICTIONARY, format!("{}: {}{what}, {}", uri.path(), r.brief(), r.show("use-as-dictionary")));
        Ok((r.body.to_vec(), format!("{} ({} bytes)", uri.path(), r.body.len())))
    } else {
        cx.fail(&DICTIONARY, format!("{uri}: {}", bad.join("; ")));
        Err("the announced dictionary is not usable".into())
    }
}

fn etag_kept(cx: &Ctx<'_>, r: &Resp) -> bool {
    cx.page.first("etag").is_some_and(|p| !p.starts_with("W/") && r.first("etag").as_deref() == Some(p.as_str()))
}

pub async fn check(cx: &mut Ctx<'_>) {
    let (dict_body, source) = match dictionary(cx).await {
        None => {
            for r in REQUIREMENTS {
                cx.na(r, "the page announces no dictionary (no Use-As-Dictionary, Link or <link> rel=compression-dictionary)");
            }
            return;
        }
        Some(Err(e)) => {
            if !cx.findings.iter().any(|f| f.id == DICTIONARY.id) {
                cx.fail(&DICTIONARY, e.clone());
            }
            cx.skip_rest(REQUIREMENTS, &e);
            return;
        }
        Some(Ok(d)) => d,
    };
    if !cx.findings.iter().any(|f| f.id == DICTIONARY.id) {
        cx.pass(&DICTIONARY, source.clone());
    }
    let avail = available(&dict_body);
    let sent = cx.probe.get(&[("accept-encoding", "dcz, gzip"), ("available-dictionary", &avail)]).await;
    let r = match sent {
        Err(e) => {
            cx.fail(&OFFERED, e);
            cx.skip_rest(&[&DECODE, &VARY, &ETAG], "no dcz response");
            return others(cx, &avail).await;
        }
        Ok(r) if !r.is_coded("dcz") => {
            cx.fail(&OFFERED, format!("naming {source}: {}", r.brief()));
            cx.skip_rest(&[&DECODE, &VARY, &ETAG], "no dcz response");
            return others(cx, &avail).await;
        }
        Ok(r) => r,
    };
    cx.pass(&OFFERED, format!("naming {source}: {}", r.brief()));
    let b = &r.body;
    if b.len() < DCZ_HEADER_LEN || b[..8] != DCZ_MAGIC {
        cx.fail(&DECODE, format!("the body does not start with the dcz magic ({} bytes)", b.len()));
    } else if b[8..40] != sha256(&dict_body) {
        cx.fail(
            &DECODE,
            format!(
                "the dcz header names dictionary {}…, not the one offered",
                hex(b[8..40].try_into().expect("32 bytes")).get(..16).unwrap_or("")
            ),
        );
    } else {
        match codec::decode(&dict_body, b, cx.opts.max_body) {
            Err(e) => cx.fail(&DECODE, format!("the frame does not decode: {e}")),
            Ok(new) => match cx.is_page(&new) {
                Some(false) => cx.fail(&DECODE, format!("decodes to {} bytes that are not the page's {}", new.len(), cx.page.body.len())),
                _ => cx.pass(&DECODE, format!("{} bytes decode to {}, {}", b.len(), new.len(), super::same_or_not(cx, &new))),
            },
        }
    }
    cx.verdict(&VARY, r.varies_on_all(&["accept-encoding", "available-dictionary"]), r.show("vary"));
    let kept = etag_kept(cx, &r);
    cx.verdict(&ETAG, !kept, format!("identity {}; dcz {}", cx.page.show("etag"), r.show("etag")));
    others(cx, &avail).await
}

/// The requests that must not get dcz, and the plain Vary.
async fn others(cx: &mut Ctx<'_>, avail: &str) {
    let unknown = available(b"no server holds this dictionary: hsync check");
    for (r, headers) in [
        (&UNKNOWN, [("accept-encoding", "dcz, gzip"), ("available-dictionary", unknown.as_str())]),
        (&NOT_ACCEPTED, [("accept-encoding", "gzip"), ("available-dictionary", avail)]),
    ] {
        match cx.probe.get(&headers).await {
            Err(e) => cx.fail(r, e),
            Ok(x) if x.is_coded("dcz") || x.status.as_u16() != 200 => cx.fail(r, format!("{}: {}", headers[1].1, x.brief())),
            Ok(x) => cx.pass(r, format!("Accept-Encoding: {}: {}", headers[0].1, x.brief())),
        }
    }
    let ok = cx.page.varies_on("available-dictionary");
    let detail = format!("plain GET: {}", cx.page.show("vary"));
    cx.verdict(&PLAIN_VARY, ok, detail);
}
