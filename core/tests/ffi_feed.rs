//! Feeds through the C ABI, as a server module drives them: the feed check
//! when the headers are ready, the body buffered, then the feed step's
//! status, edits and body, over two successive versions of the corpus's
//! Atom feed; and the configuration's feed settings checked.

use hsync_core::feed;
use hsync_core::ffi::*;
use std::collections::HashSet;
use std::os::raw::c_char;
use std::path::PathBuf;

fn version(i: usize) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../shared/corpus/atom-feed/{i:03}.xml"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e} (clone beside ../shared)", p.display()))
}

fn config(explicit: bool, implicit: bool, types: &'static str) -> hsync_config {
    let mut c = std::mem::MaybeUninit::<hsync_config>::uninit();
    // SAFETY: fills every field.
    let mut c = unsafe {
        assert_eq!(hsync_config_default(c.as_mut_ptr()), hsync_result::HSYNC_OK);
        c.assume_init()
    };
    assert_eq!((c.feed, c.feed_implicit, c.feed_types_len), (0, 0, 0), "feeds are off by default");
    c.feed = explicit as i32;
    c.feed_implicit = implicit as i32;
    c.feed_types = types.as_ptr() as *const c_char;
    c.feed_types_len = types.len();
    c
}

fn check_config(c: &hsync_config) -> (hsync_result, String) {
    let mut msg = [0 as c_char; 256];
    // SAFETY: a valid config and buffer.
    let rc = unsafe { hsync_config_check(c, msg.as_mut_ptr(), msg.len()) };
    // SAFETY: NUL-terminated by hsync_config_check (or zeroed).
    (rc, unsafe { std::ffi::CStr::from_ptr(msg.as_ptr()) }.to_string_lossy().into_owned())
}

fn field(n: &str, v: &str) -> hsync_field {
    hsync_field { name: n.as_ptr() as _, name_len: n.len(), value: v.as_ptr() as _, value_len: v.len() }
}

struct Sent {
    status: u32,
    edits: Vec<(i32, String, String)>,
    body: Vec<u8>,
    coding: String,
}

impl Sent {
    fn etag(&self) -> String {
        self.edits.iter().find(|e| e.1 == "ETag").map(|e| e.2.clone()).expect("every feed response is tagged")
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.edits.iter().find(|e| e.1.eq_ignore_ascii_case(name) && e.0 != hsync_edit_op::HSYNC_EDIT_REMOVE as i32).map(|e| e.2.as_str())
    }
}

/// One response through the module flow: `None` when the check declines
/// (sent as it is), else what is sent.
fn respond(c: &hsync_config, method: &str, req: &[(&str, &str)], content_type: &str, body: &[u8]) -> Option<Sent> {
    let rq: Vec<hsync_field> = req.iter().map(|(n, v)| field(n, v)).collect();
    let len = body.len().to_string();
    let resp_lines = [
        ("Content-Type", content_type),
        ("Content-Length", len.as_str()),
        ("ETag", "\"origin\""),
        ("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT"),
    ];
    let rs: Vec<hsync_field> = resp_lines.iter().map(|(n, v)| field(n, v)).collect();
    let uri = "/feed.atom";
    let x = hsync_exchange {
        method: method.as_ptr() as _,
        method_len: method.len(),
        request: rq.as_ptr(),
        request_len: rq.len(),
        status: 200,
        uri: uri.as_ptr() as _,
        uri_len: uri.len(),
        response: rs.as_ptr(),
        response_len: rs.len(),
        content_length: body.len() as i64,
    };
    let mut msg = [0 as c_char; 256];
    // SAFETY: valid structures whose strings outlive the calls; the handle is freed once.
    unsafe {
        match hsync_feed_check(c, &x, msg.as_mut_ptr(), msg.len()) {
            hsync_result::HSYNC_OK => {}
            hsync_result::HSYNC_DECLINED => return None,
            rc => panic!("feed check: {rc:?}"),
        }
        let mut r = std::ptr::null_mut();
        // The server buffers the body in pieces; the core sees it whole.
        let mut buffered = Vec::new();
        for piece in body.chunks(4096) {
            buffered.extend_from_slice(piece);
        }
        assert!(buffered.len() <= HSYNC_FEED_MAX_BYTES);
        let rc = hsync_feed_process(c, &x, buffered.as_ptr(), buffered.len(), &mut r, msg.as_mut_ptr(), msg.len());
        assert_eq!(rc, hsync_result::HSYNC_OK);
        assert!(!r.is_null());
        let mut e = std::ptr::null();
        let n = hsync_response_edits(r, &mut e);
        let s = |p: *const c_char, l: usize| String::from_utf8_lossy(std::slice::from_raw_parts(p as *const u8, l)).into_owned();
        let edits = (0..n)
            .map(|i| {
                let e = &*e.add(i);
                (e.op as i32, s(e.name, e.name_len), s(e.value, e.value_len))
            })
            .collect();
        let mut b = std::ptr::null();
        let bl = hsync_response_body(r, &mut b);
        let out = Sent {
            status: hsync_response_status(r),
            edits,
            body: if bl == 0 { Vec::new() } else { std::slice::from_raw_parts(b, bl).to_vec() },
            coding: std::ffi::CStr::from_ptr(hsync_coding(r)).to_string_lossy().into_owned(),
        };
        // Another response's ratio and stats do not apply to a feed handle.
        let (mut i, mut o) = (1, 1);
        hsync_stats(r, &mut i, &mut o);
        assert_eq!((i, o), (0, 0));
        hsync_response_free(r);
        Some(out)
    }
}

fn keys(doc: &[u8]) -> HashSet<(Vec<u8>, Vec<u8>)> {
    feed::parse(doc).unwrap().entries.into_iter().map(|e| (e.id, e.version)).collect()
}

const ATOM: &str = "application/atom+xml";

#[test]
fn config_defaults_and_checks() {
    assert_eq!(check_config(&config(false, false, "")).0, hsync_result::HSYNC_OK);
    assert_eq!(check_config(&config(true, true, "application/atom+xml, text/xml")).0, hsync_result::HSYNC_OK);
    let (rc, msg) = check_config(&config(true, false, "atom"));
    assert_eq!(rc, hsync_result::HSYNC_E_CONFIG);
    assert_eq!(msg, "\"atom\" is not a media type (type/subtype)");
    assert_eq!(HSYNC_ABI_VERSION, 4);
    assert_eq!(hsync_abi_version(), 4);
}

#[test]
fn declined_when_off_or_not_a_feed() {
    let v1 = version(1);
    assert!(respond(&config(false, false, ""), "GET", &[], ATOM, &v1).is_none(), "off by default");
    let on = config(true, true, "");
    assert!(respond(&on, "HEAD", &[], ATOM, &v1).is_none());
    assert!(respond(&on, "GET", &[("Range", "bytes=0-10")], ATOM, &v1).is_none());
    assert!(respond(&on, "GET", &[], "text/html", &v1).is_none());
    assert!(respond(&on, "GET", &[], "application/atom+xml; charset=utf-8", &v1).is_some());
    assert!(respond(&config(true, false, "text/xml"), "GET", &[], ATOM, &v1).is_none(), "configured types replace the default");
}

#[test]
fn explicit_flow_over_two_versions() {
    let c = config(true, false, "");
    let (v1, v2) = (version(1), version(2));

    // A first-time reader gets the whole feed, tagged, private (it asked A-IM: feed).
    let first = respond(&c, "GET", &[("A-IM", "feed")], ATOM, &v1).unwrap();
    assert_eq!((first.status, first.coding.as_str()), (200, ""));
    assert_eq!(first.body, v1);
    let tag1 = first.etag();
    assert!(tag1.starts_with("\"hf1."), "{tag1}");
    assert!(first.header("Cache-Control").is_some_and(|v| v.contains("private")), "{:?}", first.edits);
    assert!(first.header("Vary").is_some_and(|v| v.contains("A-IM") && v.contains("If-None-Match")));

    // Same version again: 304, no body.
    let same = respond(&c, "GET", &[("A-IM", "feed"), ("If-None-Match", &tag1)], ATOM, &v1).unwrap();
    assert_eq!((same.status, same.body.len(), same.coding.as_str()), (304, 0, ""));

    // The next version: 226 with only the entries the reader lacks.
    let next = respond(&c, "GET", &[("A-IM", "feed"), ("If-None-Match", &tag1)], ATOM, &v2).unwrap();
    let whole2 = respond(&c, "GET", &[], ATOM, &v2).unwrap();
    assert_eq!(whole2.body, v2);
    assert_eq!(next.status, 226, "{:?}", next.edits);
    assert_eq!(next.coding, "feed");
    assert_eq!(next.header("IM"), Some("feed"));
    assert_eq!(next.header("Cache-Control"), Some("no-store"));
    assert!(next.edits.iter().any(|e| e.0 == hsync_edit_op::HSYNC_EDIT_REMOVE as i32 && e.1 == "Last-Modified"));
    assert_eq!(next.etag(), whole2.etag(), "a 226 carries the full feed's tag");
    assert!(next.body.len() < v2.len());
    let (k1, k2, got) = (keys(&v1), keys(&v2), keys(&next.body));
    let lacking: HashSet<_> = k2.difference(&k1).cloned().collect();
    assert!(!lacking.is_empty(), "the corpus's second version adds entries");
    assert_eq!(got, lacking, "exactly the entries the reader lacks");
    // The reader's accumulated set is the union.
    let acc: HashSet<_> = k1.union(&got).cloned().collect();
    assert_eq!(acc, k1.union(&k2).cloned().collect());

    // Without A-IM (implicit off): the whole feed, never a 226.
    let plain = respond(&c, "GET", &[("If-None-Match", &tag1)], ATOM, &v2).unwrap();
    assert_eq!((plain.status, plain.coding.as_str()), (200, ""));
    assert_eq!(plain.body, v2);
}

#[test]
fn implicit_flow_over_two_versions() {
    let c = config(false, true, "");
    let (v1, v2) = (version(1), version(2));
    let tag1 = respond(&c, "GET", &[], ATOM, &v1).unwrap().etag();
    let next = respond(&c, "GET", &[("If-None-Match", &tag1)], ATOM, &v2).unwrap();
    assert_eq!((next.status, next.coding.as_str()), (200, "feed"));
    assert_eq!(next.header("Cache-Control"), Some("private, max-age=0"));
    assert_eq!(keys(&next.body), keys(&v2).difference(&keys(&v1)).cloned().collect());
    // Through a proxy: whole.
    let via = respond(&c, "GET", &[("If-None-Match", &tag1), ("Via", "1.1 squid")], ATOM, &v2).unwrap();
    assert_eq!((via.status, via.coding.as_str(), via.body == v2), (200, "", true));
    // A-IM: feed with explicit off: whole, not a 226.
    let aim = respond(&c, "GET", &[("If-None-Match", &tag1), ("A-IM", "feed")], ATOM, &v2).unwrap();
    assert_eq!((aim.status, aim.body == v2), (200, true));
}

#[test]
fn bad_arguments() {
    let c = config(true, true, "");
    let mut r = std::ptr::null_mut();
    // SAFETY: NULLs are refused without being read.
    unsafe {
        assert_eq!(hsync_feed_check(&c, std::ptr::null(), std::ptr::null_mut(), 0), hsync_result::HSYNC_E_INVALID_ARG);
        assert_eq!(
            hsync_feed_process(&c, std::ptr::null(), std::ptr::null(), 0, &mut r, std::ptr::null_mut(), 0),
            hsync_result::HSYNC_E_INVALID_ARG
        );
        assert!(r.is_null());
        assert_eq!(std::ffi::CStr::from_ptr(hsync_coding(std::ptr::null())).to_bytes(), b"");
    }
}
