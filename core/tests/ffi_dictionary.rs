//! Dictionaries through the C ABI, as a server module drives them: a page
//! is stored as it streams, announced, served as a dictionary, and the
//! next version goes out as dcz against it.

use base64::Engine;
use hsync_core::codec::dcz;
use hsync_core::ffi::*;
use std::os::raw::c_char;

struct Cfg {
    c: hsync_config,
    _dir: String,
}

fn config(name: &str) -> Cfg {
    let dir = std::env::temp_dir().join(format!("hsync-ffi-dict-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir = dir.to_string_lossy().into_owned();
    let mut c = std::mem::MaybeUninit::<hsync_config>::uninit();
    // SAFETY: fills every field.
    let mut c = unsafe {
        hsync_config_default(c.as_mut_ptr());
        c.assume_init()
    };
    c.dictionary = 1;
    c.store = dir.as_ptr() as *const c_char;
    c.store_len = dir.len();
    let mut msg = [0 as c_char; 256];
    // SAFETY: a valid config and buffer.
    assert_eq!(unsafe { hsync_config_check(&c, msg.as_mut_ptr(), msg.len()) }, hsync_result::HSYNC_OK);
    Cfg { c, _dir: dir }
}

fn field(n: &str, v: &str) -> hsync_field {
    hsync_field { name: n.as_ptr() as _, name_len: n.len(), value: v.as_ptr() as _, value_len: v.len() }
}

/// One response through the module flow: its result, its edits, the body sent.
fn respond(
    c: &Cfg,
    uri: &str,
    req: &[(&str, &str)],
    resp: &[(&str, &str)],
    body: &[u8],
) -> (hsync_result, Vec<(i32, String, String)>, Vec<u8>) {
    let rq: Vec<hsync_field> = req.iter().map(|(n, v)| field(n, v)).collect();
    let rs: Vec<hsync_field> = resp.iter().map(|(n, v)| field(n, v)).collect();
    let x = hsync_exchange {
        method: b"GET".as_ptr() as _,
        method_len: 3,
        request: rq.as_ptr(),
        request_len: rq.len(),
        status: 200,
        uri: uri.as_ptr() as _,
        uri_len: uri.len(),
        response: rs.as_ptr(),
        response_len: rs.len(),
        content_length: body.len() as i64,
    };
    let mut r = std::ptr::null_mut();
    let mut msg = [0 as c_char; 256];
    // SAFETY: valid structures whose strings outlive the calls; the handle is freed once.
    unsafe {
        let rc = hsync_decide(&c.c, &x, &mut r, msg.as_mut_ptr(), msg.len());
        assert!(!r.is_null());
        let mut e = std::ptr::null();
        let n = hsync_response_edits(r, &mut e);
        let edits = (0..n)
            .map(|i| {
                let e = &*e.add(i);
                let s = |p: *const c_char, l: usize| String::from_utf8_lossy(std::slice::from_raw_parts(p as *const u8, l)).into_owned();
                (e.op as i32, s(e.name, e.name_len), s(e.value, e.value_len))
            })
            .collect();
        let mut sent = Vec::new();
        if rc == hsync_result::HSYNC_OK {
            for (i, piece) in body.chunks(3000).enumerate() {
                let last = (i + 1) * 3000 >= body.len();
                let (mut o, mut ol) = (std::ptr::null(), 0);
                assert_eq!(
                    hsync_encode(r, piece.as_ptr(), piece.len(), if last { HSYNC_LAST } else { 0 }, &mut o, &mut ol),
                    hsync_result::HSYNC_OK
                );
                sent.extend_from_slice(std::slice::from_raw_parts(o, ol));
            }
        } else {
            sent.extend_from_slice(body);
        }
        hsync_response_free(r);
        (rc, edits, sent)
    }
}

fn edit<'a>(edits: &'a [(i32, String, String)], name: &str) -> Option<&'a str> {
    edits.iter().find(|e| e.1.eq_ignore_ascii_case(name)).map(|e| e.2.as_str())
}

#[test]
fn a_page_is_stored_announced_served_and_then_sent_as_dcz() {
    let c = config("flow");
    let v1 = b"<!doctype html><html><head><title>v1</title></head><body>"
        .iter()
        .chain(&b"<p>news item</p>".repeat(400))
        .copied()
        .collect::<Vec<u8>>();
    let mut v2 = v1.clone();
    v2.extend_from_slice(b"<p>one more item</p>");
    let page = [("Content-Type", "text/html"), ("Cache-Control", "no-cache")];
    // First load: stored as it streams, sent as it is (nothing to link yet).
    let (rc, edits, sent) = respond(&c, "/news", &[("Accept-Encoding", "gzip")], &page, &v1);
    assert_eq!(rc, hsync_result::HSYNC_OK);
    assert_eq!(sent, v1);
    assert!(edit(&edits, "Link").is_none());
    // Second load: the stored version is linked, in the head and in a header.
    let (_, edits, sent) = respond(&c, "/news", &[("Accept-Encoding", "gzip")], &page, &v1);
    let link = edit(&edits, "Link").expect("a Link").to_string();
    let url = link.trim_start_matches('<').split('>').next().unwrap().to_string();
    assert!(String::from_utf8_lossy(&sent).contains(&format!("<head><link rel=\"compression-dictionary\" href=\"{url}\">")));
    // The dictionary URL serves the stored bytes, immutable, with its pattern.
    let x = hsync_exchange {
        method: b"GET".as_ptr() as _,
        method_len: 3,
        request: std::ptr::null(),
        request_len: 0,
        status: 0,
        uri: url.as_ptr() as _,
        uri_len: url.len(),
        response: std::ptr::null(),
        response_len: 0,
        content_length: -1,
    };
    let mut r = std::ptr::null_mut();
    // SAFETY: valid structures; the handle is freed once.
    let dict = unsafe {
        assert_eq!(hsync_serve(&c.c, &x, &mut r), hsync_result::HSYNC_OK);
        assert_eq!(hsync_response_status(r), 200);
        let mut b = std::ptr::null();
        let n = hsync_response_body(r, &mut b);
        let body = std::slice::from_raw_parts(b, n).to_vec();
        hsync_response_free(r);
        body
    };
    assert_eq!(dict, v1, "the first load's body, as stored");
    // The browser names it: v2 goes out as dcz, and decodes against it.
    let named = format!(":{}:", base64::engine::general_purpose::STANDARD.encode(hsync_core::store::sha256(&dict)));
    let (rc, edits, sent) =
        respond(&c, "/news", &[("Accept-Encoding", "gzip, br, zstd, dcb, dcz"), ("Available-Dictionary", &named)], &page, &v2);
    assert_eq!(rc, hsync_result::HSYNC_OK);
    assert_eq!(edit(&edits, "Content-Encoding"), Some("dcz"));
    let rebuilt = dcz::decode(&dict, &sent, 1 << 20).unwrap();
    assert!(rebuilt.ends_with(b"<p>one more item</p>"));
    assert!(sent.len() < 200, "{} bytes of dcz for a {}-byte page", sent.len(), v2.len());
    // Not a dictionary URL: declined.
    let x = hsync_exchange { uri: b"/news".as_ptr() as _, uri_len: 5, ..x };
    let mut r = std::ptr::null_mut();
    // SAFETY: as above.
    assert_eq!(unsafe { hsync_serve(&c.c, &x, &mut r) }, hsync_result::HSYNC_DECLINED);
}

/// The same page served again and again, with the `<link>` inserted each
/// time, is one stored version: the store keeps the body the server made,
/// not the one with the element (which names the latest version, and so
/// would make a new version of every response: found by
/// build/bench-dictionary, where the store churned 400 versions).
#[test]
fn an_unchanged_page_is_one_version_whatever_is_inserted() {
    let c = config("unchanged");
    let page = [("Content-Type", "text/html"), ("Cache-Control", "no-cache")];
    let v1 = b"<html><head><title>t</title></head><body>".iter().chain(&b"<p>x</p>".repeat(200)).copied().collect::<Vec<u8>>();
    for _ in 0..5 {
        let (rc, _, sent) = respond(&c, "/same", &[("Accept-Encoding", "gzip")], &page, &v1);
        assert_eq!(rc, hsync_result::HSYNC_OK);
        let (without, n) = {
            let s = String::from_utf8_lossy(&sent).into_owned();
            match s.find("<link rel=\"compression-dictionary\"") {
                Some(i) => {
                    let end = i + s[i..].find('>').unwrap() + 1;
                    (format!("{}{}", &s[..i], &s[end..]).into_bytes(), 1)
                }
                None => (sent.clone(), 0),
            }
        };
        assert_eq!(without, v1);
        assert!(n <= 1);
    }
    let versions = std::fs::read_dir(std::path::Path::new(&c._dir).join("v")).unwrap().count();
    assert_eq!(versions, 1, "one page, one version");
}
