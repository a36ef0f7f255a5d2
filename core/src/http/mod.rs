//! The HTTP decisions, made once for every server: does a request ask for
//! hsync, does a response qualify, which header values change. Both server
//! modules call these (through the C ABI in `ffi.rs`), so nginx and Apache
//! cannot disagree.

pub mod decide;
pub mod dictionary;
pub mod fields;
pub mod insert;

pub use decide::{decide, Coding, Decision, Edit, Exchange, Outcome, Plan};
pub use dictionary::DictConfig;
pub use fields::Field;

use crate::error::{Error, Result};
use crate::signature::{SigLimits, Signature};
use base64::Engine;

/// The content-coding token.
pub const ENCODING: &str = "hsync";
/// The request header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Hsync-Signature";
/// What the response's Vary must name.
pub const VARY_NAMES: [&str; 2] = ["Accept-Encoding", "Hsync-Signature"];

/// Server-side settings that change decisions.
#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    /// Responses with a known length below this are sent as they are.
    pub min_length: u64,
    /// Largest signature accepted, in raw (decoded) bytes.
    pub max_signature: usize,
    /// Name `Accept-Encoding` and `Hsync-Signature` in `Vary` on responses
    /// hsync could apply to, also when it did not (as nginx's `gzip_vary`).
    pub vary: bool,
}

/// Largest `max_signature` a server may be configured with: 64 KiB, whose
/// base64 (87 KiB) servers must then accept in a header line.
pub const MAX_SIGNATURE_SETTING: u64 = 64 << 10;
/// Smallest: a signature's header alone takes up to 30 bytes.
pub const MIN_SIGNATURE_SETTING: u64 = 64;

impl ServerConfig {
    /// A configuration from a server's settings, checked: the same limits
    /// and the same words for both servers. `level` 0 is the core's default.
    pub fn from_settings(min_length: u64, max_signature: u64, level: i32, vary: bool) -> std::result::Result<ServerConfig, String> {
        if !(MIN_SIGNATURE_SETTING..=MAX_SIGNATURE_SETTING).contains(&max_signature) {
            return Err(format!(
                "the largest signature must be between {MIN_SIGNATURE_SETTING} and {MAX_SIGNATURE_SETTING} bytes, not {max_signature}"
            ));
        }
        if !(0..=22).contains(&level) {
            return Err(format!("the compression level must be between 1 and 22 (or 0 for the default), not {level}"));
        }
        Ok(ServerConfig { min_length, max_signature: max_signature as usize, vary })
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { min_length: 256, max_signature: crate::signature::MAX_SIGNATURE_LEN, vary: true }
    }
}

/// Why a request or response is left alone. `Invalid` ones deserve a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decline {
    /// The client did not ask (no signature header, or hsync not accepted).
    NotAsked,
    /// Not a GET, or a Range request.
    Method,
    Range,
    /// The signature header is present but unusable.
    Invalid(Error),
    Status,
    AlreadyEncoded,
    NoTransform,
    TooShort,
}

impl std::fmt::Display for Decline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decline::NotAsked => write!(f, "client did not ask for hsync"),
            Decline::Method => write!(f, "method is not GET"),
            Decline::Range => write!(f, "range request"),
            Decline::Invalid(e) => write!(f, "invalid Hsync-Signature: {e}"),
            Decline::Status => write!(f, "status is not 200"),
            Decline::AlreadyEncoded => write!(f, "response already has a content coding"),
            Decline::NoTransform => write!(f, "Cache-Control: no-transform"),
            Decline::TooShort => write!(f, "response shorter than the minimum length"),
        }
    }
}

/// Does an Accept-Encoding value accept `coding` (present with q > 0)?
/// A `*` entry counts only when `coding` is not listed on its own.
pub fn accepts(accept_encoding: &str, coding: &str) -> bool {
    let mut star = None;
    for item in accept_encoding.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        if name.is_empty() {
            continue;
        }
        let mut q = 1.0f32;
        for p in parts {
            let p = p.trim();
            if let Some(v) = p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")) {
                q = v.trim().parse().unwrap_or(0.0);
            }
        }
        if name.eq_ignore_ascii_case(coding) {
            return q > 0.0;
        }
        if name == "*" {
            star = Some(q > 0.0);
        }
    }
    // hsync needs a signature anyway; `*` alone is not taken as a request for it.
    let _ = star;
    false
}

/// Decodes the `Hsync-Signature` value (base64url; padding tolerated) and
/// parses it, checking the size before anything is allocated.
pub fn decode_signature_header(value: &[u8], max_signature: usize) -> Result<Signature> {
    let value = trim_ascii(value);
    let value = strip_padding(value);
    if value.is_empty() {
        return Err(Error::Truncated("empty signature header"));
    }
    if value.len() > max_signature.div_ceil(3).saturating_mul(4) {
        return Err(Error::TooLarge("signature longer than the configured maximum"));
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(value).map_err(|_| Error::Malformed("signature is not base64url"))?;
    Signature::parse(&raw, &SigLimits { max_len: max_signature, ..SigLimits::server() })
}

/// The signature a client sends for the copy it holds, with a fresh
/// random seed: `None` when no server would accept one (an empty copy, or
/// one so large that its blocks would exceed [`crate::limits::SERVER_MAX_BLOCK_LEN`]);
/// the client then asks for the whole response.
pub fn signature_for(body: &[u8]) -> Option<Signature> {
    let params = crate::signature::SigParams::for_http(body.len() as u64)?;
    Some(Signature::compute_with(body, params))
}

/// Encodes a signature for the `Hsync-Signature` request header.
pub fn encode_signature_header(sig_bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig_bytes)
}

fn trim_ascii(mut v: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = v {
        if first.is_ascii_whitespace() {
            v = rest
        } else {
            break;
        }
    }
    while let [rest @ .., last] = v {
        if last.is_ascii_whitespace() {
            v = rest
        } else {
            break;
        }
    }
    v
}

fn strip_padding(mut v: &[u8]) -> &[u8] {
    while let [rest @ .., b'='] = v {
        v = rest;
    }
    v
}

/// The request half of the decision. `signature` is the raw header value.
pub fn check_request(
    cfg: &ServerConfig,
    method: &[u8],
    accept_encoding: Option<&[u8]>,
    signature: Option<&[u8]>,
    has_range: bool,
) -> std::result::Result<Signature, Decline> {
    let Some(sig) = signature else { return Err(Decline::NotAsked) };
    let ae = accept_encoding.and_then(|v| std::str::from_utf8(v).ok()).unwrap_or("");
    if !accepts(ae, ENCODING) {
        return Err(Decline::NotAsked);
    }
    if method != b"GET" {
        return Err(Decline::Method);
    }
    if has_range {
        return Err(Decline::Range);
    }
    decode_signature_header(sig, cfg.max_signature).map_err(Decline::Invalid)
}

/// The response half: status, existing coding, no-transform, length.
/// `content_length` is `None` when unknown (chunked, generated).
pub fn check_response(
    cfg: &ServerConfig,
    status: u32,
    content_encoding: Option<&[u8]>,
    cache_control: Option<&[u8]>,
    content_length: Option<u64>,
) -> std::result::Result<(), Decline> {
    if status != 200 {
        return Err(Decline::Status);
    }
    if let Some(ce) = content_encoding {
        let ce = trim_ascii(ce);
        if !ce.is_empty() && !ce.eq_ignore_ascii_case(b"identity") {
            return Err(Decline::AlreadyEncoded);
        }
    }
    if let Some(cc) = cache_control {
        let cc = String::from_utf8_lossy(cc);
        if cc.split(',').any(|d| d.trim().eq_ignore_ascii_case("no-transform")) {
            return Err(Decline::NoTransform);
        }
    }
    if let Some(len) = content_length {
        if len < cfg.min_length {
            return Err(Decline::TooShort);
        }
    }
    Ok(())
}

/// The Vary value to send: the existing one plus the names hsync needs.
pub fn vary(existing: Option<&str>) -> String {
    let existing = existing.unwrap_or("").trim();
    if existing == "*" {
        return "*".into();
    }
    let mut names: Vec<String> = existing.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    for n in VARY_NAMES {
        if !names.iter().any(|e| e.eq_ignore_ascii_case(n)) {
            names.push(n.to_string());
        }
    }
    names.join(", ")
}

/// The ETag to send with an hsync-coded response: the same tag made weak,
/// as nginx's gzip filter does. The client stores the rebuilt page under it,
/// and `If-None-Match` (which compares weakly) still yields a 304.
pub fn etag(existing: &str) -> String {
    let e = existing.trim();
    if e.starts_with("W/") || e.is_empty() {
        e.to_string()
    } else {
        format!("W/{e}")
    }
}

/// A ratio for access logs, `$hsync_ratio` / `%{hsync_ratio}n`: original
/// bytes over sent bytes, two decimals (like `$gzip_ratio`).
pub fn ratio(input: u64, output: u64) -> String {
    if output == 0 {
        return String::new();
    }
    format!("{:.2}", input as f64 / output as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_parsing() {
        assert!(accepts("gzip, hsync", "hsync"));
        assert!(accepts("HSYNC;q=0.5", "hsync"));
        assert!(!accepts("hsync;q=0", "hsync"));
        assert!(!accepts("gzip, br", "hsync"));
        assert!(!accepts("*", "hsync"));
        assert!(!accepts("", "hsync"));
        assert!(!accepts("hsyncx", "hsync"));
    }

    #[test]
    fn request_decisions() {
        let cfg = ServerConfig::default();
        let sig = Signature::compute(&vec![b'a'; 5000]).to_bytes();
        let hdr = encode_signature_header(&sig);
        let ok = check_request(&cfg, b"GET", Some(b"gzip, hsync"), Some(hdr.as_bytes()), false);
        assert!(ok.is_ok());
        assert_eq!(check_request(&cfg, b"HEAD", Some(b"hsync"), Some(hdr.as_bytes()), false).unwrap_err(), Decline::Method);
        assert_eq!(check_request(&cfg, b"GET", Some(b"hsync"), Some(hdr.as_bytes()), true).unwrap_err(), Decline::Range);
        assert_eq!(check_request(&cfg, b"GET", Some(b"gzip"), Some(hdr.as_bytes()), false).unwrap_err(), Decline::NotAsked);
        assert_eq!(check_request(&cfg, b"GET", Some(b"hsync"), None, false).unwrap_err(), Decline::NotAsked);
        for bad in [&b"!!!"[..], b"", b"aGVsbG8", &hdr.as_bytes()[..hdr.len() - 3]] {
            assert!(matches!(check_request(&cfg, b"GET", Some(b"hsync"), Some(bad), false), Err(Decline::Invalid(_))));
        }
        let padded = format!("{hdr}==");
        assert!(check_request(&cfg, b"GET", Some(b"hsync"), Some(padded.as_bytes()), false).is_ok());
        // Any configured maximum, however large, is computed without overflow.
        assert!(decode_signature_header(hdr.as_bytes(), usize::MAX).is_ok());
        let small = ServerConfig { max_signature: 100, ..cfg };
        assert!(matches!(
            check_request(&small, b"GET", Some(b"hsync"), Some(hdr.as_bytes()), false),
            Err(Decline::Invalid(Error::TooLarge(_)))
        ));
    }

    #[test]
    fn response_decisions() {
        let cfg = ServerConfig::default();
        assert!(check_response(&cfg, 200, None, None, None).is_ok());
        assert!(check_response(&cfg, 200, Some(b"identity"), Some(b"max-age=5"), Some(100_000)).is_ok());
        assert_eq!(check_response(&cfg, 206, None, None, None), Err(Decline::Status));
        assert_eq!(check_response(&cfg, 304, None, None, None), Err(Decline::Status));
        assert_eq!(check_response(&cfg, 200, Some(b"gzip"), None, None), Err(Decline::AlreadyEncoded));
        assert_eq!(check_response(&cfg, 200, None, Some(b"public, No-Transform"), None), Err(Decline::NoTransform));
        assert_eq!(check_response(&cfg, 200, None, None, Some(10)), Err(Decline::TooShort));
    }

    #[test]
    fn header_values() {
        assert_eq!(vary(None), "Accept-Encoding, Hsync-Signature");
        assert_eq!(vary(Some("accept-encoding, Cookie")), "accept-encoding, Cookie, Hsync-Signature");
        assert_eq!(vary(Some("*")), "*");
        assert_eq!(etag("\"abc\""), "W/\"abc\"");
        assert_eq!(etag("W/\"abc\""), "W/\"abc\"");
        assert_eq!(ratio(1000, 10), "100.00");
    }
}
