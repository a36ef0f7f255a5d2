//! Feeds through real Apache httpd (`HsyncFeed`, `HsyncFeedImplicit`): the
//! cases of tests/src/feed.rs.

hsync_tests::feed_cases!(Apache);

use hsync_tests::apache::{self, Extra};
use hsync_tests::feed::{core_keys, etag, versions, Site, FEED};
use hsync_tests::http;
use hsync_tests::{skipped, Options, ServerKind};
use std::collections::HashSet;
use std::io::Read;

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b).read_to_end(&mut out).expect("gzip");
    out
}

fn start(opts: &Options, extra: &Extra) -> hsync_tests::RunningServer {
    apache::start_with(opts, extra).unwrap_or_else(|e| panic!("{e}"))
}

/// mod_deflate on the feed type too, after HSYNC (its place,
/// AP_FTYPE_CONTENT_SET): the feed step sees the identity body. By
/// default mod_deflate adds `-gzip` to the ETag (DeflateAlterETag
/// AddSuffix), which the core reads as its own tag; with `DeflateAlterETag
/// NoChange` the tag is the core's as it is. Either way: a 226 with the
/// new entries, gzip'd by the core (mod_filter runs DEFLATE on a 200
/// only), a 304 for the tag it carries, and an implicit reader's truncated
/// 200, gzip'd by mod_deflate.
#[test]
fn deflate_after_the_feed_step() {
    if skipped(ServerKind::Apache) {
        return;
    }
    let vs = versions();
    let want: HashSet<_> = core_keys(&vs[1]).difference(&core_keys(&vs[0])).cloned().collect();
    let gz = ("Accept-Encoding", "gzip");
    for no_change in [false, true] {
        let site = Site::new();
        site.publish(&vs[0]);
        let opts = Options { feed: true, feed_implicit: true, ..Options::new(&site.dir) };
        let extra = Extra {
            filters: Some("AddOutputFilterByType HSYNC application/atom+xml\nAddOutputFilterByType DEFLATE application/atom+xml".into()),
            conf: if no_change { "DeflateAlterETag NoChange\n".into() } else { String::new() },
            ..Extra::default()
        };
        let s = start(&opts, &extra);
        let first = http::get(s.port, FEED, &[gz, ("A-IM", "feed")]);
        assert_eq!((first.status, first.content_encoding()), (200, Some("gzip")), "{:?}", first.headers);
        assert_eq!(gunzip(&first.body), vs[0]);
        let tag = first.header("ETag").unwrap().to_string();
        assert!(tag.starts_with("\"hf1."), "{tag}");
        site.publish(&vs[1]);
        let r = http::get(s.port, FEED, &[gz, ("A-IM", "feed"), ("If-None-Match", &tag)]);
        let i = http::get(s.port, FEED, &[gz, ("If-None-Match", &tag)]);
        assert_eq!(tag.ends_with("-gzip\""), !no_change, "{tag}");
        assert_eq!((r.status, r.content_encoding()), (226, Some("gzip")), "{:?}", r.headers);
        assert_eq!(core_keys(&gunzip(&r.body)), want);
        let n = http::get(s.port, FEED, &[gz, ("A-IM", "feed"), ("If-None-Match", &etag(&r))]);
        assert_eq!(n.status, 304, "{:?}", n.headers);
        assert_eq!((i.status, i.content_encoding()), (200, Some("gzip")), "{:?}", i.headers);
        assert_eq!(core_keys(&gunzip(&i.body)), want);
        // The whole feed's tag as mod_deflate altered it names this version: 304.
        let whole = http::get(s.port, FEED, &[gz]);
        let n = http::get(s.port, FEED, &[gz, ("If-None-Match", whole.header("ETag").unwrap())]);
        assert_eq!(n.status, 304, "{:?}", n.headers);
        s.finish();
    }
}

/// The directives: errors in the core's words; HsyncFeedTypes replaces
/// the types; HsyncFeed Off in a <Location> turns it off there.
#[test]
fn directives() {
    if skipped(ServerKind::Apache) {
        return;
    }
    let site = Site::new();
    let vs = versions();
    site.publish(&vs[0]);
    for (bad, why) in [
        ("HsyncFeed maybe", "HsyncFeed must be On or Off"),
        ("HsyncFeedImplicit 2", "HsyncFeedImplicit must be On or Off"),
        ("HsyncFeedTypes atom", "hsync: \"atom\" is not a media type (type/subtype)"),
        ("<Location /x>\n  HsyncFeedTypes application/atom+xml nonsense\n</Location>", "\"nonsense\" is not a media type"),
        ("HsyncFeedTypes", "HsyncFeedTypes takes at least one media type"),
    ] {
        match apache::start_with(&Options::new(&site.dir), &Extra { conf: format!("{bad}\n"), ..Extra::default() }) {
            Ok(_) => panic!("{bad} accepted"),
            Err(log) => assert!(log.contains(why), "{bad}: {log}"),
        }
    }
    std::fs::create_dir_all(site.dir.join("plain")).unwrap();
    std::fs::write(site.dir.join("plain/feed.atom"), &vs[0]).unwrap();
    let opts = Options { feed: true, ..Options::new(&site.dir) };
    let s = start(&opts, &Extra { conf: "<Location /plain/>\n  HsyncFeed Off\n</Location>\n".into(), ..Extra::default() });
    let a_im = [("A-IM", "feed")];
    assert!(etag(&http::get(s.port, FEED, &a_im)).starts_with("\"hf1."));
    let r = http::get(s.port, "/plain/feed.atom", &a_im);
    assert!(!r.header("ETag").unwrap_or_default().contains("hf1."), "HsyncFeed Off in a Location: {:?}", r.headers);
    s.finish();
    let s = start(&opts, &Extra { conf: "HsyncFeedTypes application/rss+xml, text/xml\n".into(), ..Extra::default() });
    let r = http::get(s.port, FEED, &a_im);
    assert!(!r.header("ETag").unwrap_or_default().contains("hf1."), "not one of HsyncFeedTypes: {:?}", r.headers);
    s.finish();
}

/// A handler that fails after part of a feed went into the filter (held):
/// the client gets httpd's error page alone, none of the held bytes.
#[test]
fn handler_failing_midway() {
    if skipped(ServerKind::Apache) {
        return;
    }
    let site = Site::new();
    let vs = versions();
    let lua = site.dir.join("broken.lua");
    std::fs::write(
        &lua,
        "function handle(r)\n  r.content_type = 'application/atom+xml'\n  local f = io.open(r.document_root .. '/feed.atom', 'rb')\n  \
         local d = f:read('*a')\n  f:close()\n  r:puts(d:sub(1, 20000))\n  r:rflush()\n  return 500\nend\n",
    )
    .unwrap();
    site.publish(&vs[0]);
    let opts = Options { feed: true, feed_implicit: true, ..Options::new(&site.dir) };
    let s = start(&opts, &Extra { conf: format!("LuaMapHandler ^/broken \"{}\" handle\n", lua.display()), ..Extra::default() });
    let r = http::get(s.port, "/broken", &[("A-IM", "feed")]);
    assert_eq!(r.status, 500, "{:?}", r.headers);
    assert!(!r.body.windows(5).any(|w| w == b"<feed"), "the held feed bytes are not sent");
    s.finish();
}
