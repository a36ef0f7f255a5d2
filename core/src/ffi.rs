//! The C ABI the server modules link against (`core/include/hsync.h`).
//!
//! Opaque handles, integer result codes, and a panic boundary on every
//! exported function: a bug here degrades to "serve the response as usual",
//! never to unwinding into nginx or httpd.

#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]

use crate::delta::{EncodeOptions, Encoder};
use crate::http::{self, Decline, ServerConfig};
use std::os::raw::{c_char, c_int, c_uint};
use std::panic::{catch_unwind, AssertUnwindSafe};

pub const HSYNC_OK: c_int = 0;
pub const HSYNC_DECLINED: c_int = 1;
pub const HSYNC_E_INVALID_ARG: c_int = -1;
pub const HSYNC_E_PANIC: c_int = -11;

pub const HSYNC_FLUSH: c_uint = 1;
pub const HSYNC_LAST: c_uint = 2;

/// Mirrors `hsync_config` in hsync.h.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hsync_config {
    pub min_length: u64,
    pub max_signature: u64,
    pub level: c_int,
}

impl From<&hsync_config> for ServerConfig {
    fn from(c: &hsync_config) -> Self {
        ServerConfig { min_length: c.min_length, max_signature: c.max_signature.min(1 << 20) as usize, vary: true }
    }
}

/// One response being encoded.
pub struct hsync_encoder {
    cfg: ServerConfig,
    enc: Encoder,
    out: Vec<u8>,
    vary: String,
    etag: String,
    done: bool,
}

fn guard<F: FnOnce() -> c_int>(f: F) -> c_int {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(HSYNC_E_PANIC)
}

unsafe fn bytes<'a>(p: *const c_char, len: usize) -> Option<&'a [u8]> {
    if p.is_null() {
        None
    } else {
        Some(std::slice::from_raw_parts(p as *const u8, len))
    }
}

unsafe fn put_msg(msg: *mut c_char, cap: usize, text: &str) {
    if msg.is_null() || cap == 0 {
        return;
    }
    let n = text.len().min(cap - 1);
    std::ptr::copy_nonoverlapping(text.as_ptr(), msg as *mut u8, n);
    *msg.add(n) = 0;
}

fn decline_code(d: &Decline) -> c_int {
    match d {
        Decline::Invalid(e) => e.code(),
        _ => HSYNC_DECLINED,
    }
}

/// Fills `cfg` with the defaults.
#[no_mangle]
pub unsafe extern "C" fn hsync_config_default(cfg: *mut hsync_config) {
    let _ = guard(|| {
        if !cfg.is_null() {
            let d = ServerConfig::default();
            *cfg = hsync_config { min_length: d.min_length, max_signature: d.max_signature as u64, level: 0 };
        }
        HSYNC_OK
    });
}

/// Request phase: see hsync.h.
#[no_mangle]
pub unsafe extern "C" fn hsync_request(
    cfg: *const hsync_config,
    method: *const c_char,
    method_len: usize,
    accept_encoding: *const c_char,
    accept_encoding_len: usize,
    signature: *const c_char,
    signature_len: usize,
    has_range: c_int,
    out: *mut *mut hsync_encoder,
    msg: *mut c_char,
    msg_cap: usize,
) -> c_int {
    guard(|| {
        if cfg.is_null() || out.is_null() || method.is_null() {
            return HSYNC_E_INVALID_ARG;
        }
        *out = std::ptr::null_mut();
        let c = &*cfg;
        let scfg = ServerConfig::from(c);
        let r = http::check_request(
            &scfg,
            bytes(method, method_len).unwrap_or(b""),
            bytes(accept_encoding, accept_encoding_len),
            bytes(signature, signature_len),
            has_range != 0,
        );
        match r {
            Ok(sig) => {
                let mut opts = EncodeOptions::default();
                if c.level > 0 {
                    opts.level = c.level;
                }
                let enc = Encoder::with_options(sig, opts);
                let h = Box::new(hsync_encoder { cfg: scfg, enc, out: Vec::new(), vary: String::new(), etag: String::new(), done: false });
                *out = Box::into_raw(h);
                HSYNC_OK
            }
            Err(d) => {
                put_msg(msg, msg_cap, &d.to_string());
                decline_code(&d)
            }
        }
    })
}

/// Response phase: see hsync.h.
#[no_mangle]
pub unsafe extern "C" fn hsync_response(
    e: *mut hsync_encoder,
    status: c_uint,
    content_encoding: *const c_char,
    content_encoding_len: usize,
    cache_control: *const c_char,
    cache_control_len: usize,
    content_length: i64,
    msg: *mut c_char,
    msg_cap: usize,
) -> c_int {
    guard(|| {
        let Some(e) = e.as_mut() else { return HSYNC_E_INVALID_ARG };
        let len = if content_length >= 0 { Some(content_length as u64) } else { None };
        match http::check_response(
            &e.cfg,
            status,
            bytes(content_encoding, content_encoding_len),
            bytes(cache_control, cache_control_len),
            len,
        ) {
            Ok(()) => HSYNC_OK,
            Err(d) => {
                put_msg(msg, msg_cap, &d.to_string());
                decline_code(&d)
            }
        }
    })
}

unsafe fn header_value(slot: &mut String, value: String, out: *mut *const c_char, out_len: *mut usize) -> c_int {
    if out.is_null() || out_len.is_null() {
        return HSYNC_E_INVALID_ARG;
    }
    *slot = value;
    *out = slot.as_ptr() as *const c_char;
    *out_len = slot.len();
    HSYNC_OK
}

/// The Vary value to set, given the existing one (NULL if none).
#[no_mangle]
pub unsafe extern "C" fn hsync_vary(
    e: *mut hsync_encoder,
    existing: *const c_char,
    existing_len: usize,
    out: *mut *const c_char,
    out_len: *mut usize,
) -> c_int {
    guard(|| {
        let Some(e) = e.as_mut() else { return HSYNC_E_INVALID_ARG };
        let ex = bytes(existing, existing_len).map(String::from_utf8_lossy);
        let v = http::vary(ex.as_deref());
        header_value(&mut e.vary, v, out, out_len)
    })
}

/// The ETag value to set, given the existing one; HSYNC_DECLINED when there is none.
#[no_mangle]
pub unsafe extern "C" fn hsync_etag(
    e: *mut hsync_encoder,
    existing: *const c_char,
    existing_len: usize,
    out: *mut *const c_char,
    out_len: *mut usize,
) -> c_int {
    guard(|| {
        let Some(e) = e.as_mut() else { return HSYNC_E_INVALID_ARG };
        let Some(ex) = bytes(existing, existing_len) else { return HSYNC_DECLINED };
        let v = http::etag(&String::from_utf8_lossy(ex));
        header_value(&mut e.etag, v, out, out_len)
    })
}

/// Body phase: feeds `in`, returns the output ready so far.
#[no_mangle]
pub unsafe extern "C" fn hsync_encode(
    e: *mut hsync_encoder,
    input: *const u8,
    input_len: usize,
    flags: c_uint,
    out: *mut *const u8,
    out_len: *mut usize,
) -> c_int {
    guard(|| {
        let Some(e) = e.as_mut() else { return HSYNC_E_INVALID_ARG };
        if out.is_null() || out_len.is_null() || (input.is_null() && input_len > 0) {
            return HSYNC_E_INVALID_ARG;
        }
        if e.done {
            return HSYNC_E_INVALID_ARG;
        }
        e.out.clear();
        let data = if input_len == 0 { &[][..] } else { std::slice::from_raw_parts(input, input_len) };
        let mut r = e.enc.update(data, &mut e.out);
        if r.is_ok() && flags & HSYNC_LAST != 0 {
            r = e.enc.finish(&mut e.out);
            e.done = true;
        } else if r.is_ok() && flags & HSYNC_FLUSH != 0 {
            r = e.enc.flush(&mut e.out);
        }
        if let Err(err) = r {
            return err.code();
        }
        *out = e.out.as_ptr();
        *out_len = e.out.len();
        HSYNC_OK
    })
}

/// Bytes in and out so far.
#[no_mangle]
pub unsafe extern "C" fn hsync_stats(e: *const hsync_encoder, input: *mut u64, output: *mut u64) {
    let _ = guard(|| {
        if let Some(e) = e.as_ref() {
            let s = e.enc.stats();
            if !input.is_null() {
                *input = s.input_bytes;
            }
            if !output.is_null() {
                *output = s.output_bytes;
            }
        }
        HSYNC_OK
    });
}

/// Writes the ratio for access logs ("12.34") into `buf`; returns its length (0 when unknown).
#[no_mangle]
pub unsafe extern "C" fn hsync_ratio(e: *const hsync_encoder, buf: *mut c_char, cap: usize) -> c_int {
    guard(|| {
        let Some(e) = e.as_ref() else { return 0 };
        let s = e.enc.stats();
        let r = http::ratio(s.input_bytes, s.output_bytes);
        if buf.is_null() || cap <= r.len() {
            return 0;
        }
        put_msg(buf, cap, &r);
        r.len() as c_int
    })
}

/// Frees an encoder (NULL is fine).
#[no_mangle]
pub unsafe extern "C" fn hsync_encoder_free(e: *mut hsync_encoder) {
    let _ = guard(|| {
        if !e.is_null() {
            drop(Box::from_raw(e));
        }
        HSYNC_OK
    });
}

/// A static description of a result code.
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
        _ => b"unknown error\0",
    };
    s.as_ptr() as *const c_char
}
