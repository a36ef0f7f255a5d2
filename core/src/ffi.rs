//! The C ABI the server modules link against. `core/include/hsync.h` is
//! generated from this file by cbindgen (`core/tests/header.rs` checks that
//! the checked-in header is what this file generates: run it with
//! `HSYNC_BLESS=1` to rewrite it).
//!
//! One flow for both servers, so that nginx and Apache make exactly the
//! same decisions and header edits (all of them are made here):
//!
//! 1. at configuration time: `hsync_config_check` on every configuration
//!    (same limits, same error text in both servers);
//! 2. when the response headers are ready: `hsync_decide` with the request
//!    and response header fields (every line of repeated ones), then apply
//!    the edits from `hsync_response_edits` whatever the result, log the
//!    message at info level when the result is negative, and, on `HSYNC_OK`
//!    only, send the body through `hsync_encode`;
//! 3. `hsync_ratio` for the access log, `hsync_response_free` at the end.
//!
//! Feeds (docs/protocol.md §8) come first, when the headers are ready:
//! `hsync_feed_check`; on `HSYNC_OK` hold the headers, buffer the body (at
//! most `HSYNC_FEED_MAX_BYTES`; past it send everything unchanged), then
//! `hsync_feed_process` and send its status, edits and body. A whole 200
//! may then go through `hsync_decide` as usual (with the edits applied).
//!
//! Opaque handles, one result enum for every function that can fail, and a
//! panic boundary on every exported function with a typed fallback per
//! return type: a bug here degrades to "serve the response as usual", never
//! to unwinding into nginx or httpd.

#![allow(non_camel_case_types)]

use crate::codec::dcz::DczEncoder;
use crate::delta::{EncodeOptions, Encoder};
use crate::feed::FeedConfig;
use crate::http::insert::Inserter;
use crate::http::{self, Coding, Decision, Decline, DictConfig, Edit, Exchange, Field, Outcome, ServerConfig};
use crate::store;
use std::os::raw::{c_char, c_int, c_uint};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Version of this ABI. A shim compares `hsync_abi_version()` with the
/// `HSYNC_ABI_VERSION` its header defined when it was compiled, and refuses
/// to start on a mismatch.
pub const HSYNC_ABI_VERSION: u32 = 4;

/// The most body bytes a server buffers for `hsync_feed_process`
/// (`FEED_MAX_BYTES`, 4 MiB): past it, it sends the held headers
/// unchanged, the buffered bytes, then the rest as it comes.
pub const HSYNC_FEED_MAX_BYTES: usize = 4 << 20;
const _: () = assert!(HSYNC_FEED_MAX_BYTES == crate::limits::FEED_MAX_BYTES);

/// Flags of [`hsync_encode`]: the server is flushing.
pub const HSYNC_FLUSH: c_uint = 1;
/// Flags of [`hsync_encode`]: the last piece of the body.
pub const HSYNC_LAST: c_uint = 2;

/// The result of every function that can fail: the codec's errors
/// ([`crate::Error::code`]) and the ABI's own.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum hsync_result {
    /// Engaged, or done.
    HSYNC_OK = 0,
    /// Nothing to do (apply the edits, if any, and send the response as it is).
    HSYNC_DECLINED = 1,
    HSYNC_E_INVALID_ARG = -1,
    HSYNC_E_TRUNCATED = -2,
    HSYNC_E_BAD_MAGIC = -3,
    HSYNC_E_VERSION = -4,
    HSYNC_E_MALFORMED = -5,
    HSYNC_E_TOO_LARGE = -6,
    HSYNC_E_WRONG_BASE = -7,
    HSYNC_E_DIGEST = -8,
    HSYNC_E_COMPRESSION = -9,
    HSYNC_E_IO = -10,
    /// A bug in the core was caught at the boundary.
    HSYNC_E_PANIC = -11,
    /// A configuration value out of range (`hsync_config_check`).
    HSYNC_E_CONFIG = -12,
}

impl From<&crate::Error> for hsync_result {
    fn from(e: &crate::Error) -> Self {
        use crate::Error as E;
        match e {
            E::Truncated(_) => hsync_result::HSYNC_E_TRUNCATED,
            E::BadMagic(_) => hsync_result::HSYNC_E_BAD_MAGIC,
            E::UnsupportedVersion(_) => hsync_result::HSYNC_E_VERSION,
            E::Malformed(_) => hsync_result::HSYNC_E_MALFORMED,
            E::TooLarge(_) => hsync_result::HSYNC_E_TOO_LARGE,
            E::WrongBase => hsync_result::HSYNC_E_WRONG_BASE,
            E::DigestMismatch => hsync_result::HSYNC_E_DIGEST,
            E::Compression(_) => hsync_result::HSYNC_E_COMPRESSION,
            E::Io(_) => hsync_result::HSYNC_E_IO,
        }
    }
}

/// A server's settings. Fill it with [`hsync_config_default`], change what
/// the configuration says, and check it with [`hsync_config_check`].
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hsync_config {
    /// Responses with a known length below this are left alone (default 256).
    pub min_length: u64,
    /// Largest decoded `Hsync-Signature` accepted, bytes (default 4608; 64 to 65536).
    pub max_signature: u64,
    /// zstd level for literal bytes: 0 for the core's default, or 1 to 22.
    pub level: c_int,
    /// Non-zero (the default): responses hsync could apply to name
    /// `Accept-Encoding, Hsync-Signature` in `Vary` also when hsync was not
    /// applied, as nginx's `gzip_vary on` does; zero turns that off.
    pub vary: c_int,
    /// Non-zero: compression dictionaries for browsers (RFC 9842 `dcz`),
    /// with the version store in `store` (default off).
    pub dictionary: c_int,
    /// The version store's directory (absolute; not NUL-terminated),
    /// shared by the server's workers, which must be able to write it.
    pub store: *const c_char,
    pub store_len: usize,
    /// The store's bound in bytes (default 64 MiB; each version at most a
    /// quarter of it, and at most 4 MiB).
    pub store_max: u64,
    /// The URL pattern a page announces its dictionary for (`match`);
    /// NULL: the page's own path.
    pub dict_match: *const c_char,
    pub dict_match_len: usize,
    /// Non-zero: answer `A-IM: feed` with `226 IM Used` and only the
    /// entries the reader lacks (docs/protocol.md §8; default off).
    pub feed: c_int,
    /// Non-zero: answer a request without `A-IM` whose `If-None-Match`
    /// names an older version of a feed with those entries only, in a
    /// `200` (default off).
    pub feed_implicit: c_int,
    /// The media types that are feeds, space- or comma-separated (not
    /// NUL-terminated); NULL or empty: `application/atom+xml
    /// application/rss+xml application/x-rss+xml`.
    pub feed_types: *const c_char,
    pub feed_types_len: usize,
}

/// One header line: name and value, not NUL-terminated.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hsync_field {
    pub name: *const c_char,
    pub name_len: usize,
    pub value: *const c_char,
    pub value_len: usize,
}

/// What the server knows when the response headers are ready.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hsync_exchange {
    pub method: *const c_char,
    pub method_len: usize,
    /// Every request header line, repeated fields as several entries.
    pub request: *const hsync_field,
    pub request_len: usize,
    pub status: c_uint,
    /// The request target (path and query) as the client sent it.
    pub uri: *const c_char,
    pub uri_len: usize,
    /// Every response header line the server will send.
    pub response: *const hsync_field,
    pub response_len: usize,
    /// The response's length when the server keeps it outside its header
    /// lines (nginx's `content_length_n`), or -1 (then a `Content-Length`
    /// line is read, if any).
    pub content_length: i64,
}

/// What an edit does to the response's header lines.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum hsync_edit_op {
    /// Replace every line of the field with one line of this value (add it if absent).
    HSYNC_EDIT_SET = 1,
    /// Remove every line of the field.
    HSYNC_EDIT_REMOVE = 2,
    /// Add one line, keeping the field's other lines.
    HSYNC_EDIT_APPEND = 3,
}

/// One header edit. The strings belong to the response handle.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hsync_edit {
    pub op: hsync_edit_op,
    pub name: *const c_char,
    pub name_len: usize,
    /// Empty for `HSYNC_EDIT_REMOVE`.
    pub value: *const c_char,
    pub value_len: usize,
}

/// One response: its decision, the edits, and when engaged the body's
/// way through the core (an inserted element, a copy into the version
/// store, the coding); or a response the core makes itself (a dictionary).
pub struct hsync_response {
    edits: Vec<Edit>,
    view: Vec<hsync_edit>,
    body: Option<Body>,
    out: Vec<u8>,
    done: bool,
    /// A response made by the core (`hsync_serve`): its status and body.
    status: c_uint,
    served: Vec<u8>,
    /// The coding note of a feed response (`hsync_feed_process`): "feed"
    /// when truncated; `None` for the others.
    note: Option<&'static [u8]>,
}

/// The body of an engaged response on its way through the core.
struct Body {
    insert: Option<Inserter>,
    tee: Option<store::Writer>,
    coder: Coder,
    /// Bytes in (as the server gave them) and out.
    input: u64,
    output: u64,
    scratch: Vec<u8>,
}

enum Coder {
    Hsync(Box<Encoder>),
    Dcz(Box<DczEncoder>),
    Identity,
}

impl Coder {
    fn name(&self) -> &'static [u8] {
        match self {
            Coder::Hsync(_) => b"hsync\0",
            Coder::Dcz(_) => b"dcz\0",
            Coder::Identity => b"\0",
        }
    }
}

impl Body {
    /// Feeds body bytes (`last`: the end; `flush`: the server flushes).
    fn feed(&mut self, data: &[u8], flush: bool, last: bool, out: &mut Vec<u8>) -> crate::Result<()> {
        self.input += data.len() as u64;
        let mut piece = std::mem::take(&mut self.scratch);
        piece.clear();
        let bytes: &[u8] = match &mut self.insert {
            Some(ins) => {
                ins.feed(data, &mut piece);
                if last {
                    ins.flush(&mut piece);
                } else if flush {
                    ins.flush_partial(&mut piece);
                }
                &piece
            }
            None => data,
        };
        // The store keeps the body as the server made it, before the
        // inserted <link>: that element names the latest version, so a
        // copy with it would be a new version on every response.
        if let Some(w) = &mut self.tee {
            w.write(data);
        }
        let before = out.len();
        let r = match &mut self.coder {
            Coder::Hsync(e) => e.update(bytes, out).and_then(|()| match (last, flush) {
                (true, _) => e.finish(out),
                (false, true) => e.flush(out),
                _ => Ok(()),
            }),
            Coder::Dcz(e) => e.update(bytes, out).and_then(|()| match (last, flush) {
                (true, _) => e.finish(out),
                (false, true) => e.flush(out),
                _ => Ok(()),
            }),
            Coder::Identity => {
                out.extend_from_slice(bytes);
                Ok(())
            }
        };
        self.output += (out.len() - before) as u64;
        self.scratch = piece;
        if last {
            // The whole body went through: it becomes a stored version.
            if let Some(w) = self.tee.take() {
                let _ = w.commit();
            }
        }
        r
    }
}

/// A new handle with its edits' C view.
fn handle(edits: Vec<Edit>, body: Option<Body>, status: c_uint, served: Vec<u8>) -> Box<hsync_response> {
    let mut r = Box::new(hsync_response { edits, view: Vec::new(), body, out: Vec::new(), done: false, status, served, note: None });
    r.view = r
        .edits
        .iter()
        .map(|e| {
            let (op, value) = match e {
                Edit::Set(_, v) => (hsync_edit_op::HSYNC_EDIT_SET, v.as_str()),
                Edit::Append(_, v) => (hsync_edit_op::HSYNC_EDIT_APPEND, v.as_str()),
                Edit::Remove(_) => (hsync_edit_op::HSYNC_EDIT_REMOVE, ""),
            };
            let name = e.name();
            hsync_edit {
                op,
                name: name.as_ptr() as *const c_char,
                name_len: name.len(),
                value: value.as_ptr() as *const c_char,
                value_len: value.len(),
            }
        })
        .collect();
    r
}

/// The panic boundary: `f`'s result, or `fallback` if it panicked.
fn guard<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// # Safety
/// `p` is NULL or points to `len` readable bytes that outlive `'a`.
unsafe fn bytes<'a>(p: *const c_char, len: usize) -> Option<&'a [u8]> {
    if p.is_null() {
        None
    } else {
        // SAFETY: the caller's promise.
        Some(unsafe { std::slice::from_raw_parts(p as *const u8, len) })
    }
}

/// Writes `text` NUL-terminated into `msg` (truncated to `cap - 1` bytes).
///
/// # Safety
/// `msg` is NULL or points to `cap` writable bytes.
unsafe fn put_msg(msg: *mut c_char, cap: usize, text: &str) {
    if msg.is_null() || cap == 0 {
        return;
    }
    let n = text.len().min(cap - 1);
    // SAFETY: n + 1 <= cap bytes are writable at msg.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), msg as *mut u8, n);
        *msg.add(n) = 0;
    }
}

/// # Safety
/// `f` is NULL with `n` 0, or points to `n` fields whose strings are readable.
unsafe fn fields<'a>(f: *const hsync_field, n: usize) -> Option<Vec<Field<'a>>> {
    if n == 0 {
        return Some(Vec::new());
    }
    if f.is_null() {
        return None;
    }
    // SAFETY: the caller's promise.
    let raw = unsafe { std::slice::from_raw_parts(f, n) };
    raw.iter()
        // SAFETY: each field's strings are readable for their lengths.
        .map(|x| Some(Field { name: unsafe { bytes(x.name, x.name_len) }?, value: unsafe { bytes(x.value, x.value_len) }.unwrap_or(b"") }))
        .collect()
}

/// Default bound of the version store (64 MiB).
pub const HSYNC_STORE_MAX_DEFAULT: u64 = 64 << 20;

impl hsync_config {
    fn server(&self) -> std::result::Result<ServerConfig, String> {
        if self.dictionary != 0 {
            // SAFETY: the caller's promise on the config's strings.
            let dir = unsafe { bytes(self.store, self.store_len) }.unwrap_or(b"");
            if dir.is_empty() || dir[0] != b'/' {
                return Err("dictionaries need a version store: an absolute directory path".into());
            }
            if self.store_max < 1 << 20 {
                return Err(format!("the version store must hold at least 1 MiB, not {} bytes", self.store_max));
            }
        }
        self.feeds()?;
        http::ServerConfig::from_settings(self.min_length, self.max_signature, self.level, self.vary != 0)
    }

    /// The feed settings, checked.
    fn feeds(&self) -> std::result::Result<FeedConfig, String> {
        // SAFETY: the caller's promise on the config's strings.
        let types = unsafe { bytes(self.feed_types, self.feed_types_len) }.unwrap_or(b"");
        let types = std::str::from_utf8(types).map_err(|_| "feed types must be ASCII media types".to_string())?;
        FeedConfig::from_settings(self.feed != 0, self.feed_implicit != 0, types)
    }

    /// The dictionary settings, with the store opened for this process;
    /// `None` when off, or when the store cannot be opened (said once on
    /// stderr, which both servers send to their error log).
    fn dictionaries(&self) -> Option<DictConfig> {
        if self.dictionary == 0 {
            return None;
        }
        // SAFETY: the caller's promise on the config's strings.
        let (dir, pattern) = unsafe { (bytes(self.store, self.store_len)?, bytes(self.dict_match, self.dict_match_len)) };
        let dir = std::path::Path::new(std::str::from_utf8(dir).ok()?);
        let entry = (self.store_max / 4).min(4 << 20);
        match store::shared(dir, self.store_max, entry) {
            Ok(store) => Some(DictConfig { store, pattern: pattern.map(|p| String::from_utf8_lossy(p).into_owned()) }),
            Err(e) => {
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| eprintln!("hsync: the version store {} cannot be opened ({e}): dictionaries off", dir.display()));
                None
            }
        }
    }
}

/// An exchange's strings and fields, read from the C structure.
struct Parts<'a> {
    method: &'a [u8],
    uri: &'a [u8],
    request: Vec<Field<'a>>,
    response: Vec<Field<'a>>,
    status: c_uint,
    content_length: Option<u64>,
}

impl<'a> Parts<'a> {
    /// # Safety
    /// `x`'s strings and fields are readable for `'a`.
    unsafe fn of(x: &hsync_exchange) -> Option<Parts<'a>> {
        // SAFETY: the caller's promise on the exchange's strings.
        unsafe {
            Some(Parts {
                method: bytes(x.method, x.method_len)?,
                uri: bytes(x.uri, x.uri_len).unwrap_or(b"/"),
                request: fields(x.request, x.request_len)?,
                response: fields(x.response, x.response_len)?,
                status: x.status,
                content_length: u64::try_from(x.content_length).ok(),
            })
        }
    }

    fn exchange(&self) -> Exchange<'_> {
        Exchange {
            method: self.method,
            uri: self.uri,
            request: &self.request,
            status: self.status,
            response: &self.response,
            content_length: self.content_length,
        }
    }
}

/// Fills `cfg` with the defaults.
///
/// # Safety
/// `cfg` is NULL or points to a writable `hsync_config`.
#[no_mangle]
pub unsafe extern "C" fn hsync_config_default(cfg: *mut hsync_config) -> hsync_result {
    guard(hsync_result::HSYNC_E_PANIC, || {
        if cfg.is_null() {
            return hsync_result::HSYNC_E_INVALID_ARG;
        }
        let d = ServerConfig::default();
        // SAFETY: checked non-NULL; the caller's promise.
        unsafe {
            *cfg = hsync_config {
                min_length: d.min_length,
                max_signature: d.max_signature as u64,
                level: 0,
                vary: 1,
                dictionary: 0,
                store: std::ptr::null(),
                store_len: 0,
                store_max: HSYNC_STORE_MAX_DEFAULT,
                dict_match: std::ptr::null(),
                dict_match_len: 0,
                feed: 0,
                feed_implicit: 0,
                feed_types: std::ptr::null(),
                feed_types_len: 0,
            }
        };
        hsync_result::HSYNC_OK
    })
}

/// Checks a configuration: `HSYNC_OK`, or `HSYNC_E_CONFIG` with the
/// reason (the same words in both servers) in `msg`.
///
/// # Safety
/// `cfg` points to an `hsync_config`; `msg` is NULL or `msg_cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn hsync_config_check(cfg: *const hsync_config, msg: *mut c_char, msg_cap: usize) -> hsync_result {
    guard(hsync_result::HSYNC_E_PANIC, || {
        // SAFETY: the caller's promise.
        let Some(c) = (unsafe { cfg.as_ref() }) else { return hsync_result::HSYNC_E_INVALID_ARG };
        match c.server() {
            Ok(_) => hsync_result::HSYNC_OK,
            Err(e) => {
                // SAFETY: the caller's promise.
                unsafe { put_msg(msg, msg_cap, &e) };
                hsync_result::HSYNC_E_CONFIG
            }
        }
    })
}

/// The ABI version of the linked core (see `HSYNC_ABI_VERSION`).
#[no_mangle]
pub extern "C" fn hsync_abi_version() -> u32 {
    HSYNC_ABI_VERSION
}

/// Bytes the core keeps in this process between requests: its pooled zstd
/// contexts (delta and dcz), its prepared dictionaries and the feed
/// versions it has parsed. Each is bounded (core/src/limits.rs); a server
/// may log it, and `build/soak` tells them from memory that leaks.
#[no_mangle]
pub extern "C" fn hsync_cached_bytes() -> u64 {
    guard(0, || {
        (crate::codec::zstdx::pooled_bytes()
            + crate::codec::dcz::pooled_bytes()
            + crate::codec::dcz::prepared_bytes()
            + crate::feed::seen::bytes()) as u64
    })
}

/// Decides for one response. Whatever the result, `*out` is a new handle
/// (free it with `hsync_response_free`) whose edits the server applies:
/// - `HSYNC_OK`: engaged; send the body through `hsync_encode`;
/// - `HSYNC_DECLINED`: send the body as it is;
/// - negative: the same, and `msg` receives the reason for an info-level
///   log line (a malformed or refused signature); never an error status.
///
/// On `HSYNC_E_INVALID_ARG` or `HSYNC_E_PANIC`, `*out` is NULL: send the
/// response as it is.
///
/// # Safety
/// `cfg` and `x` point to valid structures whose strings are readable;
/// `out` is writable; `msg` is NULL or `msg_cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn hsync_decide(
    cfg: *const hsync_config,
    x: *const hsync_exchange,
    out: *mut *mut hsync_response,
    msg: *mut c_char,
    msg_cap: usize,
) -> hsync_result {
    guard(hsync_result::HSYNC_E_PANIC, || {
        if out.is_null() {
            return hsync_result::HSYNC_E_INVALID_ARG;
        }
        // SAFETY: checked non-NULL.
        unsafe { *out = std::ptr::null_mut() };
        // SAFETY: the caller's promise.
        let (Some(c), Some(x)) = (unsafe { cfg.as_ref() }, unsafe { x.as_ref() }) else {
            return hsync_result::HSYNC_E_INVALID_ARG;
        };
        let Ok(scfg) = c.server() else { return hsync_result::HSYNC_E_INVALID_ARG };
        // SAFETY: the caller's promise on the exchange's strings.
        let Some(parts) = (unsafe { Parts::of(x) }) else { return hsync_result::HSYNC_E_INVALID_ARG };
        let exchange = parts.exchange();
        let dict = c.dictionaries();
        let Decision { outcome, edits } = http::decide(&scfg, dict.as_ref(), &exchange);
        let (rc, body) = match outcome {
            Outcome::Engage(plan) => {
                let coder = match plan.coding {
                    Coding::Hsync(sig) => {
                        let mut opts = EncodeOptions::default();
                        if c.level > 0 {
                            opts.level = c.level;
                        }
                        Coder::Hsync(Box::new(Encoder::with_options(sig, opts)))
                    }
                    // The length is pledged to zstd only when the body goes in unchanged.
                    Coding::Dcz(p) => match DczEncoder::new(p, exchange.content_length.filter(|_| plan.insert.is_none())) {
                        Ok(e) => Coder::Dcz(Box::new(e)),
                        Err(_) => return hsync_result::HSYNC_E_COMPRESSION,
                    },
                    Coding::Identity => Coder::Identity,
                };
                let tee = match (plan.store, &dict) {
                    (Some((key, meta)), Some(dc)) => dc.store.writer(&key, &meta).ok(),
                    _ => None,
                };
                let insert = plan.insert.map(Inserter::new);
                (hsync_result::HSYNC_OK, Some(Body { insert, tee, coder, input: 0, output: 0, scratch: Vec::new() }))
            }
            Outcome::Leave(Decline::Invalid(e)) => {
                // SAFETY: the caller's promise.
                unsafe { put_msg(msg, msg_cap, &Decline::Invalid(e.clone()).to_string()) };
                (hsync_result::from(&e), None)
            }
            Outcome::Leave(_) => (hsync_result::HSYNC_DECLINED, None),
        };
        let r = handle(edits, body, 0, Vec::new());
        // SAFETY: checked non-NULL.
        unsafe { *out = Box::into_raw(r) };
        rc
    })
}

/// The header edits to apply, in order: their count, and in `*edits` an
/// array of them that stays valid until `hsync_response_free`.
///
/// # Safety
/// `r` is a handle from `hsync_decide` (or NULL); `edits` is writable.
#[no_mangle]
pub unsafe extern "C" fn hsync_response_edits(r: *const hsync_response, edits: *mut *const hsync_edit) -> usize {
    guard(0, || {
        // SAFETY: the caller's promise.
        let Some(r) = (unsafe { r.as_ref() }) else { return 0 };
        if edits.is_null() {
            return 0;
        }
        // SAFETY: checked non-NULL.
        unsafe { *edits = r.view.as_ptr() };
        r.view.len()
    })
}

/// Body phase of an engaged response: feeds `in_len` bytes (may be 0) and
/// returns in `*out` / `*out_len` the encoded bytes ready so far (possibly
/// none; valid until the next call or `hsync_response_free`). With
/// `HSYNC_LAST` the delta is completed. A negative result means the delta
/// cannot be completed: end the response so that the client sees it
/// truncated (close the connection), never a complete-looking body.
///
/// # Safety
/// `r` is an engaged handle; `input` points to `input_len` readable bytes;
/// `out` and `out_len` are writable.
#[no_mangle]
pub unsafe extern "C" fn hsync_encode(
    r: *mut hsync_response,
    input: *const u8,
    input_len: usize,
    flags: c_uint,
    out: *mut *const u8,
    out_len: *mut usize,
) -> hsync_result {
    guard(hsync_result::HSYNC_E_PANIC, || {
        // SAFETY: the caller's promise.
        let Some(r) = (unsafe { r.as_mut() }) else { return hsync_result::HSYNC_E_INVALID_ARG };
        if out.is_null() || out_len.is_null() || (input.is_null() && input_len > 0) || r.done {
            return hsync_result::HSYNC_E_INVALID_ARG;
        }
        let Some(body) = r.body.as_mut() else { return hsync_result::HSYNC_E_INVALID_ARG };
        r.out.clear();
        // SAFETY: the caller's promise.
        let data = if input_len == 0 { &[][..] } else { unsafe { std::slice::from_raw_parts(input, input_len) } };
        let last = flags & HSYNC_LAST != 0;
        let res = body.feed(data, flags & HSYNC_FLUSH != 0, last, &mut r.out);
        r.done = last;
        if let Err(e) = res {
            return hsync_result::from(&e);
        }
        // SAFETY: checked non-NULL.
        unsafe {
            *out = r.out.as_ptr();
            *out_len = r.out.len();
        }
        hsync_result::HSYNC_OK
    })
}

/// Bytes of body in and of delta out so far (0 and 0 for a declined handle).
///
/// # Safety
/// `r` is a handle or NULL; `input` and `output` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hsync_stats(r: *const hsync_response, input: *mut u64, output: *mut u64) {
    guard((), || {
        // SAFETY: the caller's promise.
        let (i, o) = unsafe { r.as_ref() }.and_then(|r| r.body.as_ref()).map_or((0, 0), |b| (b.input, b.output));
        // SAFETY: each is checked non-NULL; the caller's promise.
        unsafe {
            if !input.is_null() {
                *input = i;
            }
            if !output.is_null() {
                *output = o;
            }
        }
    })
}

/// Writes the ratio of body bytes to delta bytes as "12.34" into `buf`,
/// NUL-terminated, and returns its length: 0 (and an empty string, when
/// `cap > 0`) when unknown, on a declined handle, or if the core failed.
///
/// # Safety
/// `r` is a handle or NULL; `buf` is NULL or `cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn hsync_ratio(r: *const hsync_response, buf: *mut c_char, cap: usize) -> usize {
    // SAFETY: the caller's promise on buf.
    unsafe { put_msg(buf, cap, "") };
    guard(0, || {
        // SAFETY: the caller's promise.
        let Some(b) = (unsafe { r.as_ref() }).and_then(|r| r.body.as_ref()).filter(|b| !matches!(b.coder, Coder::Identity)) else {
            return 0;
        };
        let text = http::ratio(b.input, b.output);
        if buf.is_null() || cap <= text.len() {
            return 0;
        }
        // SAFETY: the caller's promise; the text fits.
        unsafe { put_msg(buf, cap, &text) };
        text.len()
    })
}

/// The content coding of an engaged response, NUL-terminated: "hsync",
/// "dcz", or "" (left alone, or sent as it is: stored, or given a link),
/// for the access log (`$hsync_coding`, `%{hsync_coding}n`); for a handle
/// from `hsync_feed_process`, "feed" when the body was truncated, else "".
///
/// # Safety
/// `r` is a handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn hsync_coding(r: *const hsync_response) -> *const c_char {
    guard(c"".as_ptr(), || {
        // SAFETY: the caller's promise.
        let r = unsafe { r.as_ref() };
        if let Some(note) = r.and_then(|r| r.note) {
            return note.as_ptr() as *const c_char;
        }
        let name = r.and_then(|r| r.body.as_ref()).map_or(&b"\0"[..], |b| b.coder.name());
        name.as_ptr() as *const c_char
    })
}

/// Request phase, before any handler: answers the module's own URLs (the
/// dictionaries of RFC 9842, served from the version store). `HSYNC_OK`:
/// send the response the handle describes (`hsync_response_status`, the
/// fields as SET edits, `hsync_response_body`) instead of running the
/// location's handler; `HSYNC_DECLINED`: not one of them (or dictionaries
/// are off), go on as usual. Only the method and the target are read from
/// the exchange.
///
/// # Safety
/// As `hsync_decide`.
#[no_mangle]
pub unsafe extern "C" fn hsync_serve(cfg: *const hsync_config, x: *const hsync_exchange, out: *mut *mut hsync_response) -> hsync_result {
    guard(hsync_result::HSYNC_E_PANIC, || {
        if out.is_null() {
            return hsync_result::HSYNC_E_INVALID_ARG;
        }
        // SAFETY: checked non-NULL.
        unsafe { *out = std::ptr::null_mut() };
        // SAFETY: the caller's promise.
        let (Some(c), Some(x)) = (unsafe { cfg.as_ref() }, unsafe { x.as_ref() }) else {
            return hsync_result::HSYNC_E_INVALID_ARG;
        };
        // SAFETY: the caller's promise on the exchange's strings.
        let (method, uri) = unsafe { (bytes(x.method, x.method_len).unwrap_or(b""), bytes(x.uri, x.uri_len).unwrap_or(b"")) };
        if !uri.starts_with(http::dictionary::DICTIONARY_PREFIX.as_bytes()) {
            return hsync_result::HSYNC_DECLINED;
        }
        let Some(dc) = c.dictionaries() else { return hsync_result::HSYNC_DECLINED };
        let Some(s) = http::dictionary::serve(&dc, method, uri) else { return hsync_result::HSYNC_DECLINED };
        let edits = s.fields.into_iter().map(|(n, v)| Edit::Set(n, v)).collect();
        // SAFETY: checked non-NULL.
        unsafe { *out = Box::into_raw(handle(edits, None, s.status, s.body)) };
        hsync_result::HSYNC_OK
    })
}

/// The status of a response made by `hsync_serve` or `hsync_feed_process`
/// (0 otherwise).
///
/// # Safety
/// `r` is a handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn hsync_response_status(r: *const hsync_response) -> c_uint {
    // SAFETY: the caller's promise.
    guard(0, || unsafe { r.as_ref() }.map_or(0, |r| r.status))
}

/// The body of a response made by `hsync_serve` or `hsync_feed_process`:
/// its length, and in `*body` its bytes (valid until `hsync_response_free`).
///
/// # Safety
/// `r` is a handle or NULL; `body` is writable.
#[no_mangle]
pub unsafe extern "C" fn hsync_response_body(r: *const hsync_response, body: *mut *const u8) -> usize {
    guard(0, || {
        // SAFETY: the caller's promise.
        let Some(r) = (unsafe { r.as_ref() }) else { return 0 };
        if body.is_null() {
            return 0;
        }
        // SAFETY: checked non-NULL.
        unsafe { *body = r.served.as_ptr() };
        r.served.len()
    })
}

/// Feeds, step 1, when the response headers are ready (the same exchange
/// as for `hsync_decide`): `HSYNC_OK`: a feed response to hold: keep the
/// headers, buffer the body (at most `HSYNC_FEED_MAX_BYTES`; past it, send
/// the headers unchanged, the buffered bytes, then the rest) and call
/// `hsync_feed_process` at its end; `HSYNC_DECLINED`: not one (feeds off,
/// not a GET, a range, not 200, not a feed type, coded, known too long):
/// go on as usual. `msg` (NULL or `msg_cap` bytes) receives why, for a
/// debug-level log line.
///
/// # Safety
/// As `hsync_decide`.
#[no_mangle]
pub unsafe extern "C" fn hsync_feed_check(
    cfg: *const hsync_config,
    x: *const hsync_exchange,
    msg: *mut c_char,
    msg_cap: usize,
) -> hsync_result {
    guard(hsync_result::HSYNC_E_PANIC, || {
        // SAFETY: the caller's promise.
        let (Some(c), Some(x)) = (unsafe { cfg.as_ref() }, unsafe { x.as_ref() }) else {
            return hsync_result::HSYNC_E_INVALID_ARG;
        };
        let Ok(fc) = c.feeds() else { return hsync_result::HSYNC_E_INVALID_ARG };
        if !fc.explicit && !fc.implicit {
            return hsync_result::HSYNC_DECLINED;
        }
        // SAFETY: the caller's promise on the exchange's strings.
        let Some(parts) = (unsafe { Parts::of(x) }) else { return hsync_result::HSYNC_E_INVALID_ARG };
        match crate::feed::check(&fc, &parts.exchange()) {
            Ok(()) => hsync_result::HSYNC_OK,
            Err(s) => {
                // SAFETY: the caller's promise.
                unsafe { put_msg(msg, msg_cap, &s.to_string()) };
                hsync_result::HSYNC_DECLINED
            }
        }
    })
}

/// Feeds, step 2, with the whole body (`body_len` bytes, at most
/// `HSYNC_FEED_MAX_BYTES`) and the same exchange as for `hsync_feed_check`.
/// `HSYNC_OK`: `*out` is a new handle (free it with `hsync_response_free`):
/// send `hsync_response_status` (200, 226 or 304: a 304 has no body) with
/// the edits of `hsync_response_edits` applied and `hsync_response_body`
/// as the body, its length as `Content-Length`; `hsync_coding` says "feed"
/// when the body was truncated. A whole 200 (coding "") may then be coded
/// by `hsync_decide` as any response; a truncated one or a 304 must not.
/// `msg` receives what was decided, for a debug-level log line. On a
/// negative result `*out` is NULL: send the response as it was.
///
/// # Safety
/// As `hsync_decide`; `body` points to `body_len` readable bytes (NULL
/// when 0).
#[no_mangle]
pub unsafe extern "C" fn hsync_feed_process(
    cfg: *const hsync_config,
    x: *const hsync_exchange,
    body: *const u8,
    body_len: usize,
    out: *mut *mut hsync_response,
    msg: *mut c_char,
    msg_cap: usize,
) -> hsync_result {
    guard(hsync_result::HSYNC_E_PANIC, || {
        if out.is_null() {
            return hsync_result::HSYNC_E_INVALID_ARG;
        }
        // SAFETY: checked non-NULL.
        unsafe { *out = std::ptr::null_mut() };
        // SAFETY: the caller's promise.
        let (Some(c), Some(x)) = (unsafe { cfg.as_ref() }, unsafe { x.as_ref() }) else {
            return hsync_result::HSYNC_E_INVALID_ARG;
        };
        if body.is_null() && body_len > 0 {
            return hsync_result::HSYNC_E_INVALID_ARG;
        }
        let Ok(fc) = c.feeds() else { return hsync_result::HSYNC_E_INVALID_ARG };
        // SAFETY: the caller's promise on the exchange's strings.
        let Some(parts) = (unsafe { Parts::of(x) }) else { return hsync_result::HSYNC_E_INVALID_ARG };
        // SAFETY: the caller's promise.
        let data = if body_len == 0 { &[][..] } else { unsafe { std::slice::from_raw_parts(body, body_len) } };
        let o = crate::feed::process(&fc, &parts.exchange(), data);
        // SAFETY: the caller's promise.
        unsafe { put_msg(msg, msg_cap, &o.kind.to_string()) };
        let note: &'static [u8] = if o.coding.is_empty() { b"\0" } else { b"feed\0" };
        let mut r = handle(o.edits, None, o.status, o.body.into_owned());
        r.note = Some(note);
        // SAFETY: checked non-NULL.
        unsafe { *out = Box::into_raw(r) };
        hsync_result::HSYNC_OK
    })
}

/// Frees a handle (NULL is fine).
///
/// # Safety
/// `r` is NULL or a handle from `hsync_decide`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn hsync_response_free(r: *mut hsync_response) {
    guard((), || {
        if !r.is_null() {
            // SAFETY: the caller's promise: it came from Box::into_raw.
            drop(unsafe { Box::from_raw(r) });
        }
    })
}

/// A static, NUL-terminated description of a result code (any int:
/// unknown values give "unknown error").
#[no_mangle]
pub extern "C" fn hsync_strerror(code: c_int) -> *const c_char {
    let s: &'static [u8] = match code {
        0 => b"ok\0",
        1 => b"declined\0",
        -1 => b"invalid argument\0",
        -2 => b"truncated input\0",
        -3 => b"bad magic\0",
        -4 => b"unsupported version\0",
        -5 => b"malformed input\0",
        -6 => b"limit exceeded\0",
        -7 => b"wrong base\0",
        -8 => b"digest mismatch\0",
        -9 => b"compression error\0",
        -10 => b"i/o error\0",
        -11 => b"internal error (panic caught)\0",
        -12 => b"configuration value out of range\0",
        _ => b"unknown error\0",
    };
    s.as_ptr() as *const c_char
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codec's error codes and the ABI's enum are one numbering.
    #[test]
    fn error_codes_agree() {
        use crate::Error as E;
        for e in [
            E::Truncated(""),
            E::BadMagic(""),
            E::UnsupportedVersion(9),
            E::Malformed(""),
            E::TooLarge(""),
            E::WrongBase,
            E::DigestMismatch,
            E::Compression(""),
            E::Io(String::new()),
        ] {
            assert_eq!(hsync_result::from(&e) as i32, e.code(), "{e:?}");
        }
    }
}
