//! The server's request decision on an arbitrary Hsync-Signature header value never panics.
#![no_main]
use hsync_core::http::{check_request, ServerConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = check_request(&ServerConfig::default(), b"GET", Some(b"gzip, hsync"), Some(data), false);
});
