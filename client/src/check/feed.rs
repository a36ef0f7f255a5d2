//! Feeds (docs/protocol.md §8, RFC 3229 `A-IM: feed`), when the URL is an
//! Atom or RSS feed whose ETag is an ETaglet (`"hf1.…"`, §8.3). The server
//! cannot be made to have an older version, but the ETaglet names the
//! entries: a tag naming all of them but the first is what a reader that
//! missed the newest entry holds, and the 226 must send that entry alone.

use super::{Ctx, Level, Requirement, Resp};
use hsync_core::feed::{parse, Etaglet, Feed};
use hsync_core::http::dictionary::parse_http_date;

const fn req(id: &'static str, section: &'static str, level: Level, text: &'static str) -> Requirement {
    Requirement { id, section, level, text }
}

pub const ETAGLET: Requirement = req(
    "feed.etaglet",
    "8.3",
    Level::Must,
    "the feed's ETag is the ETaglet of the body sent: its BLAKE3 prefix and the hashes of its first 32 entries",
);
pub const NOT_MODIFIED: Requirement = req(
    "feed.not-modified",
    "8.4",
    Level::Must,
    "If-None-Match naming the current ETaglet gets 304 with that ETag, with or without A-IM: feed",
);
pub const IM_USED: Requirement = req(
    "feed.im-used",
    "8.4",
    Level::Must,
    "A-IM: feed with an ETaglet naming every entry but the newest gets 226 IM Used, IM: feed, and that one entry",
);
pub const IM_USED_FIELDS: Requirement = req(
    "feed.im-used-fields",
    "8.5",
    Level::Must,
    "the 226 carries the full feed's ETaglet, Cache-Control: no-store, Vary naming A-IM and If-None-Match, an Expires in the past, no Last-Modified",
);
pub const WHOLE_PRIVATE: Requirement = req(
    "feed.whole-private",
    "8.4",
    Level::Must,
    "A-IM: feed with an ETaglet naming none of the entries gets the whole feed, made private (without public or s-maxage)",
);
pub const SEVERAL: Requirement =
    req("feed.several-tags", "8.4", Level::Must, "A-IM: feed with several entity-tags in If-None-Match gets the whole feed");
pub const Q0: Requirement = req("feed.q0", "8.4", Level::Must, "A-IM: feed;q=0 is never answered 226");
pub const NO_AIM: Requirement = req(
    "feed.no-a-im",
    "8.4",
    Level::Must,
    "without A-IM a reader never gets 226; a truncated 200 (implicit mode) says Cache-Control: private, max-age=0, an Expires in the past, no Last-Modified",
);
pub const VIA: Requirement =
    req("feed.via", "8.5", Level::Must, "a request through a proxy (Via) without A-IM gets the whole feed, never a truncated one");
pub const VARY: Requirement =
    req("feed.vary", "8.5", Level::Should, "the whole feed's Vary names If-None-Match (and A-IM with the explicit mode on)");

pub const REQUIREMENTS: &[&Requirement] =
    &[&ETAGLET, &NOT_MODIFIED, &IM_USED, &IM_USED_FIELDS, &WHOLE_PRIVATE, &SEVERAL, &Q0, &NO_AIM, &VIA, &VARY];

/// What came back for a request with an ETaglet.
enum Answer {
    /// 226 with these entry hashes.
    ImUsed(Vec<u32>),
    /// 200 with every entry of the feed.
    Whole,
    /// 200 with these entry hashes only.
    Truncated(Vec<u32>),
    /// Anything else, described.
    Other(String),
}

fn answer(r: &Resp, feed: &Feed) -> Answer {
    let hashes = |b: &[u8]| parse(b).map(|f| f.entries.iter().map(|e| e.hash).collect::<Vec<_>>());
    match r.status.as_u16() {
        226 => match hashes(&r.body) {
            Ok(h) => Answer::ImUsed(h),
            Err(e) => Answer::Other(format!("226 whose body is not a feed: {e}")),
        },
        200 => match hashes(&r.body) {
            Ok(h) if h.len() == feed.entries.len() => Answer::Whole,
            Ok(h) => Answer::Truncated(h),
            Err(e) => Answer::Other(format!("200 whose body is not a feed: {e}")),
        },
        s => Answer::Other(format!("status {s}")),
    }
}

/// Is an `Expires` value in the past?
fn expired(r: &Resp) -> bool {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    r.first("expires").and_then(|e| parse_http_date(&e)).is_some_and(|t| t < now)
}

/// The tag a reader holds that has every entry of `tag` but the first,
/// from another version (its body digest made up).
fn missing_newest(tag: &Etaglet) -> String {
    Etaglet { digest: *b"hsync-check!", hashes: tag.hashes[1..].to_vec() }.to_header()
}

/// A tag naming none of the feed's entries.
fn holds_nothing(tag: &Etaglet) -> String {
    let hashes = (0..3u32).map(|i| 0x9e37_79b1u32.wrapping_mul(i + 1)).filter(|h| !tag.names(*h)).collect();
    Etaglet { digest: *b"hsync-check?", hashes }.to_header()
}

pub async fn check(cx: &mut Ctx<'_>) {
    let na = |cx: &mut Ctx<'_>, why: &str| {
        for r in REQUIREMENTS {
            cx.na(r, why);
        }
    };
    let feed = match parse(&cx.page.body) {
        Ok(f) => f,
        Err(_) => return na(cx, "not an Atom or RSS feed"),
    };
    let Some(etag) = cx.page.first("etag") else {
        return na(cx, "the feed has no ETag: feeds are not enabled (hsync_feed / HsyncFeed)");
    };
    let Some(tag) = Etaglet::parse(etag.as_bytes()) else {
        return na(cx, &format!("the feed's ETag {etag} is not an ETaglet (\"hf1.…\"): feeds are not enabled (hsync_feed / HsyncFeed)"));
    };
    let want = Etaglet::of(&cx.page.body, Some(&feed));
    if want == tag {
        cx.pass(&ETAGLET, format!("{} entries, {} named: {}", feed.entries.len(), tag.hashes.len(), shorten(&etag)));
    } else if want.digest != tag.digest {
        cx.fail(&ETAGLET, format!("{}: its digest is not the body's BLAKE3 prefix", shorten(&etag)));
    } else {
        cx.fail(&ETAGLET, format!("{}: names {} entry hashes, the body's first entries hash otherwise", shorten(&etag), tag.hashes.len()));
    }

    // 304 for the current tag, with and without A-IM.
    let mut bad = Vec::new();
    for aim in ["feed", ""] {
        let name = if aim.is_empty() { "" } else { "a-im" };
        match cx.probe.get(&[(name, aim), ("if-none-match", &etag)]).await {
            Err(e) => bad.push(e),
            Ok(r) if r.status.as_u16() == 304 && r.first("etag").as_deref() == Some(etag.as_str()) => {}
            Ok(r) => bad.push(format!("A-IM: {}: {}, {}", if aim.is_empty() { "none" } else { aim }, r.brief(), r.show("etag"))),
        }
    }
    if bad.is_empty() {
        cx.pass(&NOT_MODIFIED, "304 with the ETag, with A-IM: feed and without");
    } else {
        cx.fail(&NOT_MODIFIED, bad.join("; "));
    }

    // The 226: a reader that lacks the newest entry.
    if tag.hashes.len() < 2 {
        for r in [&IM_USED, &IM_USED_FIELDS, &WHOLE_PRIVATE, &SEVERAL, &Q0, &NO_AIM, &VIA] {
            cx.na(r, "the feed has fewer than two entries: no reader can lack only some");
        }
        return vary(cx, false);
    }
    let held = missing_newest(&tag);
    // What that reader lacks: the newest entry, and those past the ones
    // an ETaglet names (sent again, §8.3).
    let lacks: Vec<u32> = feed.entries.iter().take(1).chain(feed.entries.iter().skip(tag.hashes.len())).map(|e| e.hash).collect();
    let explicit = match cx.probe.get(&[("a-im", "feed"), ("if-none-match", &held)]).await {
        Err(e) => {
            cx.fail(&IM_USED, e);
            cx.skip(&IM_USED_FIELDS, "no 226");
            false
        }
        Ok(r) => match answer(&r, &feed) {
            Answer::ImUsed(h) => {
                let one = h == lacks;
                let im = r.list_has("im", "feed");
                let detail = format!(
                    "226, {}, {} of {} entries: {}",
                    r.show("im"),
                    h.len(),
                    feed.entries.len(),
                    if one { "those it lacks" } else { "NOT those it lacks" }
                );
                cx.verdict(&IM_USED, one && im, detail);
                im_used_fields(cx, &r, &etag);
                true
            }
            Answer::Whole => {
                cx.na(&IM_USED, "the whole feed: the explicit mode is off (hsync_feed / HsyncFeed)");
                cx.na(&IM_USED_FIELDS, "no 226: the explicit mode is off");
                false
            }
            Answer::Truncated(h) => {
                cx.fail(
                    &IM_USED,
                    format!("a 200 with {} of {} entries to A-IM: feed (a truncated feed must be 226)", h.len(), feed.entries.len()),
                );
                cx.skip(&IM_USED_FIELDS, "no 226");
                false
            }
            Answer::Other(o) => {
                cx.fail(&IM_USED, o);
                cx.skip(&IM_USED_FIELDS, "no 226");
                false
            }
        },
    };

    let nothing = holds_nothing(&tag);
    let several = format!("{held}, \"hsync-check-other\"");
    for (r, headers) in [
        (&WHOLE_PRIVATE, [("a-im", "feed"), ("if-none-match", nothing.as_str())]),
        (&SEVERAL, [("a-im", "feed"), ("if-none-match", several.as_str())]),
        (&Q0, [("a-im", "feed;q=0"), ("if-none-match", held.as_str())]),
    ] {
        if !explicit {
            cx.na(r, "the explicit mode is off");
            continue;
        }
        match cx.probe.get(&headers).await {
            Err(e) => cx.fail(r, e),
            Ok(x) => match answer(&x, &feed) {
                Answer::Whole if r.id == WHOLE_PRIVATE.id => {
                    let private = x.list_has("cache-control", "private")
                        && !x.list_has("cache-control", "public")
                        && !x.list_has("cache-control", "s-maxage");
                    cx.verdict(r, private, format!("the whole feed, {}", x.show("cache-control")));
                }
                Answer::Whole => cx.pass(r, format!("the whole feed ({})", x.brief())),
                Answer::ImUsed(h) => cx.fail(r, format!("226 with {} entries", h.len())),
                Answer::Truncated(h) => cx.fail(r, format!("200 with {} of {} entries", h.len(), feed.entries.len())),
                Answer::Other(o) => cx.fail(r, o),
            },
        }
    }

    // Without A-IM: never 226; a truncated 200 only in the implicit mode, with its fields.
    let implicit = match cx.probe.get(&[("if-none-match", &held)]).await {
        Err(e) => {
            cx.fail(&NO_AIM, e);
            false
        }
        Ok(r) => match answer(&r, &feed) {
            Answer::Whole => {
                cx.pass(&NO_AIM, "the whole feed (the implicit mode is off)");
                false
            }
            Answer::Truncated(h) => {
                let mut bad = Vec::new();
                if !(r.list_has("cache-control", "private") && r.list("cache-control").iter().any(|d| d.replace(' ', "") == "max-age=0")) {
                    bad.push(r.show("cache-control"));
                }
                if !expired(&r) {
                    bad.push(r.show("expires"));
                }
                if !r.lines("last-modified").is_empty() {
                    bad.push(r.show("last-modified"));
                }
                if !r.varies_on("if-none-match") {
                    bad.push(r.show("vary"));
                }
                if r.first("etag").as_deref() != Some(etag.as_str()) {
                    bad.push(format!("{} (not the full feed's)", r.show("etag")));
                }
                if h != lacks {
                    bad.push(format!("{} entries, not the {} the reader lacks", h.len(), lacks.len()));
                }
                let detail = if bad.is_empty() {
                    format!("a truncated 200 (implicit mode): {}, {}", r.show("cache-control"), r.show("expires"))
                } else {
                    format!("a truncated 200: {}", bad.join("; "))
                };
                cx.verdict(&NO_AIM, bad.is_empty(), detail);
                true
            }
            Answer::ImUsed(_) => {
                cx.fail(&NO_AIM, "226 to a request without A-IM");
                false
            }
            Answer::Other(o) => {
                cx.fail(&NO_AIM, o);
                false
            }
        },
    };
    if implicit {
        match cx.probe.get(&[("if-none-match", &held), ("via", "1.1 hsync-check")]).await {
            Err(e) => cx.fail(&VIA, e),
            Ok(r) => match answer(&r, &feed) {
                Answer::Whole => cx.pass(&VIA, "Via: 1.1 hsync-check: the whole feed"),
                Answer::Truncated(h) => {
                    cx.fail(&VIA, format!("Via: 1.1 hsync-check: a 200 with {} of {} entries", h.len(), feed.entries.len()))
                }
                Answer::ImUsed(_) => cx.fail(&VIA, "Via: 1.1 hsync-check: 226 without A-IM"),
                Answer::Other(o) => cx.fail(&VIA, o),
            },
        }
    } else {
        cx.na(&VIA, "the implicit mode is off: no reader gets a truncated 200");
    }
    vary(cx, explicit)
}

fn im_used_fields(cx: &mut Ctx<'_>, r: &Resp, etag: &str) {
    let mut bad = Vec::new();
    if r.first("etag").as_deref() != Some(etag) {
        bad.push(format!("{} (not the full feed's)", r.show("etag")));
    }
    if !r.list_has("cache-control", "no-store") {
        bad.push(r.show("cache-control"));
    }
    if !r.varies_on_all(&["a-im", "if-none-match"]) {
        bad.push(r.show("vary"));
    }
    if !expired(r) {
        bad.push(r.show("expires"));
    }
    if !r.lines("last-modified").is_empty() {
        bad.push(r.show("last-modified"));
    }
    if bad.is_empty() {
        cx.pass(&IM_USED_FIELDS, format!("{}, {}, {}", r.show("cache-control"), r.show("vary"), r.show("expires")));
    } else {
        cx.fail(&IM_USED_FIELDS, bad.join("; "));
    }
}

fn vary(cx: &mut Ctx<'_>, explicit: bool) {
    let mut want = vec!["if-none-match"];
    if explicit {
        want.push("a-im");
    }
    let ok = cx.page.varies_on_all(&want);
    let detail = format!("plain GET: {}", cx.page.show("vary"));
    cx.verdict(&VARY, ok, detail);
}

fn shorten(tag: &str) -> String {
    if tag.len() > 40 {
        format!("{}…", &tag[..36])
    } else {
        tag.to_string()
    }
}
