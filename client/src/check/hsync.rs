//! The hsync coding itself (docs/protocol.md §2, §3.5, §4): offered and
//! decoded exactly for real signatures of the page, the digest, the fields
//! of the hsync and the ordinary response, no hsync unless asked, bad
//! signatures, Range, HEAD, conditional requests and `no-transform`.

use super::{noise, Ctx, Level, Requirement, Resp, Sent};
use hsync_core::http::{encode_signature_header, signature_for};
use hsync_core::signature::{SigParams, Signature, Tuning, MAX_SIGNATURE_LEN};
use hsync_core::{Error, PatchLimits};
use http::Method;
use std::io::Read;

const fn req(id: &'static str, section: &'static str, level: Level, text: &'static str) -> Requirement {
    Requirement { id, section, level, text }
}

pub const OFFERED: Requirement = req(
    "hsync.offered",
    "2.2",
    Level::May,
    "a GET with Accept-Encoding: hsync and a valid signature of the page is answered with an hsync delta",
);
pub const DELTA_IDENTICAL: Requirement =
    req("delta.identical", "4.4", Level::Must, "the delta for a copy identical to the page rebuilds exactly the page");
pub const DELTA_EDITED: Requirement =
    req("delta.edited", "4.4", Level::Must, "the delta for an edited copy (bytes replaced, inserted, removed) rebuilds exactly the page");
pub const DELTA_UNRELATED: Requirement =
    req("delta.unrelated", "4.4", Level::Must, "the delta for a copy that shares nothing with the page rebuilds exactly the page");
pub const DELTA_SUB: Requirement = req(
    "delta.sub-blocks",
    "3.4",
    Level::Must,
    "a signature with sub-blocks gets a delta (COPY units are sub-blocks) that rebuilds exactly the page, or the ordinary response",
);
pub const DIGEST: Requirement =
    req("delta.digest", "4.1", Level::Must, "every delta ends with END: the length and the BLAKE3-256 digest of the page it rebuilds");
pub const CODING: Requirement = req(
    "hsync.one-coding",
    "2.3",
    Level::Must,
    "to Accept-Encoding: hsync, gzip the delta is a 200 with exactly one content coding, hsync (not also gzip)",
);
pub const VARY: Requirement =
    req("hsync.vary", "2.3", Level::Must, "the hsync response's Vary names Accept-Encoding and Hsync-Signature (or is *)");
pub const ETAG: Requirement =
    req("hsync.etag", "2.3", Level::Must, "the hsync response does not carry the identity response's strong ETag (RFC 9110 §8.8.3)");
pub const ETAG_WEAK: Requirement =
    req("hsync.etag-weak", "2.3", Level::Should, "the hsync response's ETag is the identity response's entity-tag, made weak");
pub const FIELDS: Requirement = req(
    "hsync.identity-fields",
    "2.3",
    Level::Must,
    "fields describing the identity bytes (Content-Length, Accept-Ranges: bytes, Content-Digest, Repr-Digest, Digest, Content-MD5) are not sent with a delta",
);
pub const PLAIN_VARY: Requirement = req(
    "plain.vary",
    "2.2",
    Level::Should,
    "the ordinary response to a request that could have been coded names Accept-Encoding and Hsync-Signature in Vary",
);
pub const NO_AE: Requirement =
    req("negotiate.no-accept-encoding", "2.2", Level::Must, "a signature without Accept-Encoding gets the ordinary response");
pub const OTHER_AE: Requirement = req(
    "negotiate.other-codings",
    "2.2",
    Level::Must,
    "a signature with Accept-Encoding: gzip, deflate (no hsync) gets the ordinary response",
);
pub const Q0: Requirement =
    req("negotiate.q0", "2.2", Level::Must, "a signature with Accept-Encoding: hsync;q=0, identity gets the ordinary response");
pub const STAR: Requirement =
    req("negotiate.star", "2.2", Level::Must, "a signature with only Accept-Encoding: * gets the ordinary response");
pub const NO_SIG: Requirement =
    req("negotiate.no-signature", "2.2", Level::Must, "Accept-Encoding: hsync without Hsync-Signature gets the ordinary response");
pub const MALFORMED: Requirement = req(
    "signature.malformed",
    "3.5",
    Level::Must,
    "malformed signatures (not base64url, wrong magic, widths out of range, wrong length, padding bits set, garbage) get the ordinary 200, never an error",
);
pub const OVERSIZED: Requirement = req(
    "signature.oversized",
    "2.2",
    Level::Must,
    "a signature over 4608 bytes gets the ordinary 200, or from a server configured for longer ones a delta that rebuilds the page; never an error",
);
pub const VERSION: Requirement =
    req("signature.version", "5", Level::Must, "signatures of another version (1, 2, 4) get the ordinary 200, never an error");
pub const TRUNCATED: Requirement =
    req("signature.truncated", "3.5", Level::Must, "truncated signatures get the ordinary 200, never an error");
pub const LIMITS: Requirement = req(
    "signature.limits",
    "3.5",
    Level::Should,
    "signatures whose parameters only make the server's work grow (16-byte blocks with 1-bit weak sums; 16 MiB blocks) get the ordinary 200",
);
pub const PADDING: Requirement = req("signature.padding", "2.2", Level::Should, "a signature with base64 padding is used as without it");
pub const RANGE: Requirement =
    req("range.signed", "2.2", Level::Must, "a Range request with a signature gets the ordinary response (206 with the range, or 200)");
pub const HEAD_SIGNED: Requirement = req(
    "head.signed",
    "2.2",
    Level::Should,
    "HEAD with a signature gets the fields of the hsync GET (RFC 9110 §9.3.2): Content-Encoding: hsync, its Vary and ETag, no Content-Length",
);
pub const HEAD_PLAIN: Requirement =
    req("head.plain", "2.2", Level::Must, "HEAD without a signature is answered as a plain GET would be, without Content-Encoding: hsync");
pub const COND_SIGNED: Requirement = req(
    "conditional.signed",
    "2.2",
    Level::Must,
    "If-None-Match with the hsync ETag or the identity tag, sent with a signature, gets 304 with the hsync response's ETag and Vary (RFC 9110 §13.1.2, §15.4.5)",
);
pub const COND_PLAIN: Requirement =
    req("conditional.plain", "2.2", Level::Must, "If-None-Match with the identity ETag, without a signature, gets 304 with that ETag");
pub const NO_TRANSFORM: Requirement =
    req("hsync.no-transform", "2.2", Level::Must, "a response with Cache-Control: no-transform is never hsync-coded");

/// In report order.
pub const REQUIREMENTS: &[&Requirement] = &[
    &OFFERED,
    &DELTA_IDENTICAL,
    &DELTA_EDITED,
    &DELTA_UNRELATED,
    &DELTA_SUB,
    &DIGEST,
    &CODING,
    &VARY,
    &ETAG,
    &ETAG_WEAK,
    &FIELDS,
    &PLAIN_VARY,
    &NO_AE,
    &OTHER_AE,
    &Q0,
    &STAR,
    &NO_SIG,
    &MALFORMED,
    &OVERSIZED,
    &VERSION,
    &TRUNCATED,
    &LIMITS,
    &PADDING,
    &RANGE,
    &HEAD_SIGNED,
    &HEAD_PLAIN,
    &COND_SIGNED,
    &COND_PLAIN,
    &NO_TRANSFORM,
];

const SIG: &str = "hsync-signature";
const AE: &str = "accept-encoding";

/// The header value for a signature.
pub fn header(sig: &Signature) -> String {
    encode_signature_header(&sig.to_bytes())
}

/// The types both modules code by default (README, packaging).
const DEFAULT_TYPES: [&str; 6] =
    ["text/html", "application/xhtml+xml", "application/atom+xml", "application/rss+xml", "text/xml", "application/xml"];

/// The modules' default `hsync_min_length` / `HsyncMinLength`.
const DEFAULT_MIN_LENGTH: usize = 256;

/// A copy of the page with an edit: bytes replaced near a third, some
/// inserted before, some removed near two thirds.
fn edited(page: &[u8]) -> Vec<u8> {
    let n = page.len();
    let (a, b) = (n / 3, 2 * n / 3);
    let cut = (n / 12).min(300);
    let mut v = Vec::with_capacity(n + 100);
    v.extend_from_slice(&page[..a]);
    v.extend_from_slice(b"<!-- hsync check: an edit the server's page does not have -->");
    v.extend_from_slice(&page[(a + cut).min(b)..b]);
    v.extend_from_slice(&page[(b + cut).min(n)..]);
    v
}

/// The outcome of decoding one delta.
struct Decoded {
    /// The rebuilt page, or why not.
    result: Result<Vec<u8>, Error>,
    /// The digest the delta's END carries (its last 32 bytes).
    digest: Option<[u8; 32]>,
}

fn decode(cx: &Ctx<'_>, old: &[u8], delta: &[u8]) -> Decoded {
    let limits = PatchLimits { max_output: cx.opts.max_body };
    let digest = delta.len().checked_sub(32).map(|at| delta[at..].try_into().expect("32 bytes"));
    Decoded { result: hsync_core::patch_with_limits(old, delta, &limits), digest }
}

/// What the deltas' digests showed, for [`DIGEST`].
#[derive(Default)]
struct Digests {
    checked: usize,
    bad: Vec<String>,
}

impl Digests {
    fn note(&mut self, cx: &Ctx<'_>, what: &str, d: &Decoded) {
        self.checked += 1;
        let want = cx.stable.then(|| hsync_core::hash::digest(&cx.page.body));
        match (&d.result, d.digest, want) {
            (Err(Error::DigestMismatch), _, _) => {
                self.bad.push(format!("{what}: the rebuilt bytes do not match the digest the delta carries"))
            }
            (Err(Error::Truncated(_)), _, _) => self.bad.push(format!("{what}: the delta ends before its END")),
            (_, Some(got), Some(want)) if got != want => {
                self.bad.push(format!("{what}: the digest is not the page's BLAKE3-256 ({}…)", hex(&got[..6])))
            }
            _ => {}
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Reports one delta's decoding for `r` (a requirement of the delta.* kind).
fn report_delta(cx: &mut Ctx<'_>, r: &'static Requirement, what: &str, old: &[u8], sent: &Sent, digests: &mut Digests) {
    let resp = match sent {
        Err(e) => return cx.fail(r, e.clone()),
        Ok(resp) => resp,
    };
    if !resp.is_coded("hsync") {
        return cx.na(r, format!("the server sent the ordinary response ({}) for {what}", resp.brief()));
    }
    let d = decode(cx, old, &resp.body);
    digests.note(cx, what, &d);
    match &d.result {
        Err(e) => cx.fail(r, format!("{what}: the {}-byte delta does not decode: {e}", resp.body.len())),
        Ok(new) => match cx.is_page(new) {
            Some(false) => {
                cx.fail(r, format!("{what}: the delta rebuilds {} bytes that are not the page's {}", new.len(), cx.page.body.len()))
            }
            same => cx.pass(
                r,
                format!(
                    "{what}: {}-byte delta for {} bytes, digest verified{}",
                    resp.body.len(),
                    new.len(),
                    if same.is_some() { ", the page's bytes" } else { " (page changes per request)" }
                ),
            ),
        },
    }
}

/// Is `sent` the ordinary response with the page? `Ok(detail)` or `Err(what is wrong)`.
/// `range`: the request asked for bytes 0-99 (a 206 with them is ordinary too).
fn ordinary(cx: &Ctx<'_>, sent: &Sent, range: bool) -> Result<String, String> {
    let r = sent.as_ref().map_err(|e| e.clone())?;
    if r.is_coded("hsync") {
        return Err(format!("hsync-coded ({})", r.brief()));
    }
    let body = if r.is_coded("gzip") || r.is_coded("x-gzip") {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&r.body[..])
            .take(cx.opts.max_body)
            .read_to_end(&mut out)
            .map_err(|e| format!("gzip body: {e}"))?;
        out
    } else if r.codings().is_empty() {
        r.body.to_vec()
    } else {
        return Ok(format!("{} (not compared)", r.brief()));
    };
    match r.status.as_u16() {
        200 => match cx.is_ordinary_page(&body) {
            Some(false) => Err(format!("200 with {} bytes that are not the page's {}", body.len(), cx.page.body.len())),
            _ => Ok(r.brief()),
        },
        206 if range => {
            if body.len() > 100 || cx.is_ordinary_prefix(&body) == Some(false) {
                Err(format!("206 whose {} bytes are not the page's first 100", body.len()))
            } else {
                Ok(format!("{} ({})", r.brief(), r.show("content-range")))
            }
        }
        s => Err(format!("status {s} ({})", r.brief())),
    }
}

/// Sends each `(what, headers)` case; the requirement passes when all get the ordinary response.
async fn all_ordinary(cx: &mut Ctx<'_>, r: &'static Requirement, cases: Vec<(String, Vec<(&str, String)>)>) {
    let mut bad = Vec::new();
    let mut seen = Vec::new();
    let n = cases.len();
    for (what, headers) in cases {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let sent = cx.probe.get(&h).await;
        match ordinary(cx, &sent, false) {
            Ok(d) => {
                if seen.is_empty() {
                    seen.push(d);
                }
            }
            Err(e) => bad.push(format!("{what}: {e}")),
        }
    }
    if bad.is_empty() {
        let one = if n == 1 { String::new() } else { format!("{n} cases, each ") };
        cx.pass(r, format!("{one}the ordinary response ({})", seen.join("")));
    } else {
        cx.fail(r, bad.join("; "));
    }
}

/// The signature bytes with byte `at` replaced.
fn with_byte(sig: &[u8], at: usize, v: u8) -> Vec<u8> {
    let mut b = sig.to_vec();
    b[at] = v;
    b
}

fn b64(b: &[u8]) -> String {
    encode_signature_header(b)
}

/// Signatures no server may use, by requirement.
fn bad_signatures(page: &[u8]) -> [Vec<(String, String)>; 3] {
    let good_sig = signature_for(page).expect("a page that has a signature");
    let good = good_sig.to_bytes();
    let mut malformed = vec![
        ("not base64url".to_string(), "!!not*base64$$".to_string()),
        ("an empty value".into(), String::new()),
        ("garbage of a plausible size".into(), b64(&noise(11, 900))),
        ("wrong magic".into(), b64(&with_byte(&good, 0, b'H'))),
        ("weak_bits 0".into(), b64(&with_byte(&good, 3, 0))),
        ("strong_bits 40".into(), b64(&with_byte(&good, 4, 40))),
        ("one byte longer than its table".into(), b64(&[&good[..], &[0]].concat())),
    ];
    let p = good_sig.params;
    let bits = good_sig.block_count() * p.entry_bits() + good_sig.sub.len() * p.sub_bits as usize;
    if !bits.is_multiple_of(8) {
        let mut b = good.clone();
        *b.last_mut().expect("a signature has bytes") |= 1;
        malformed.push(("padding bits set".into(), b64(&b)));
    }
    let versions = [1u8, 2, 4].iter().map(|v| (format!("version {v}"), b64(&with_byte(&good, 2, *v)))).collect();
    let text = b64(&good);
    let truncated = vec![
        ("cut in half".to_string(), b64(&good[..good.len() / 2])),
        ("one byte short".into(), b64(&good[..good.len() - 1])),
        ("the header alone".into(), b64(&good[..14])),
        ("text cut inside a base64 quantum".into(), text[..text.len() - 1].to_string()),
    ];
    [malformed, versions, truncated]
}

/// An old copy and a valid signature of it longer than 4608 bytes (but
/// whose header line stays under 8 KiB): the page cycled to 41,472 bytes,
/// 64-byte blocks with 32 + 32 bits.
fn oversized(page: &[u8]) -> (Vec<u8>, Signature) {
    let old: Vec<u8> = page.iter().copied().cycle().take(648 * 64).collect();
    let params = SigParams { block_len: 64, weak_bits: 32, strong_bits: 32, sub_log: 0, sub_bits: 0 };
    let sig = Signature::compute_with(&old, params);
    debug_assert!(sig.encoded_len() > MAX_SIGNATURE_LEN);
    (old, sig)
}

/// Format-valid signatures a server should refuse (§3.5).
fn refused() -> Vec<(String, String)> {
    [("16-byte blocks with 1-bit weak sums", 16u32, 1u8, 31u8, 16u64 << 10), ("16 MiB blocks", 1 << 24, 20, 20, 64 << 20)]
        .into_iter()
        .map(|(what, block_len, weak_bits, strong_bits, instance_len)| {
            let params = SigParams { block_len, weak_bits, strong_bits, sub_log: 0, sub_bits: 0 };
            let blocks = instance_len.div_ceil(block_len as u64) as usize;
            let sig = Signature { params, seed: 1, instance_len, weak: vec![0; blocks], strong: vec![0; blocks], sub: vec![] };
            (what.to_string(), header(&sig))
        })
        .collect()
}

/// What the plain response suggests about why hsync was not offered.
pub fn why_not(cx: &Ctx<'_>) -> Vec<String> {
    let p = &cx.page;
    let mut v = Vec::new();
    if p.list_has("cache-control", "no-transform") {
        v.push("it says Cache-Control: no-transform, which forbids any coding (§2.2)".to_string());
    }
    let ty = p.first("content-type").unwrap_or_default();
    let media = ty.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if !DEFAULT_TYPES.contains(&media.as_str()) {
        v.push(format!(
            "its type {} is not one the modules code by default (hsync_types / AddOutputFilterByType HSYNC)",
            if media.is_empty() { "(none)".to_string() } else { media }
        ));
    }
    if p.body.len() < DEFAULT_MIN_LENGTH {
        v.push(format!(
            "it is {} bytes, under the modules' default minimum of {DEFAULT_MIN_LENGTH} (hsync_min_length / HsyncMinLength)",
            p.body.len()
        ));
    }
    if !p.varies_on("hsync-signature") {
        v.push("its Vary does not name Hsync-Signature, as the modules' responses do: no sign of hsync at this URL (module not loaded, `hsync on;` or the HSYNC filter not applied here, or a cache or proxy in front)".into());
    }
    if v.is_empty() {
        v.push(
            "nothing in it explains the ordinary response: the server's error log (info level) says why it declined the signature".into(),
        );
    }
    v
}

/// Runs the hsync checks; whether hsync was offered.
pub async fn check(cx: &mut Ctx<'_>) -> bool {
    let page = cx.page.body.clone();
    let no_transform = cx.page.list_has("cache-control", "no-transform");
    let Some(sig) = signature_for(&page) else {
        cx.na(&OFFERED, format!("the page ({} bytes) is empty or too large for any signature a server accepts", page.len()));
        cx.skip_rest(REQUIREMENTS, "no signature can describe the page");
        return false;
    };
    let gate = cx.probe.get(&[(AE, "hsync, gzip"), (SIG, &header(&sig))]).await;
    let offered = gate.as_ref().is_ok_and(|r| r.is_coded("hsync"));
    if no_transform {
        match &gate {
            Ok(r) if r.is_coded("hsync") => cx.fail(&NO_TRANSFORM, format!("the page says no-transform, yet: {}", r.brief())),
            Ok(r) => cx.pass(&NO_TRANSFORM, format!("the page says {}: the ordinary response ({})", r.show("cache-control"), r.brief())),
            Err(e) => cx.fail(&NO_TRANSFORM, e.clone()),
        }
    }
    let gate = match gate {
        Ok(r) if offered => r,
        Ok(r) => {
            cx.fail(&OFFERED, format!("the ordinary response ({}; {})", r.brief(), r.show("vary")));
            cx.skip_rest(REQUIREMENTS, "hsync not offered");
            return false;
        }
        Err(e) => {
            cx.fail(&OFFERED, e);
            cx.skip_rest(REQUIREMENTS, "hsync not offered");
            return false;
        }
    };
    cx.pass(&OFFERED, format!("{} for a signature of {} bytes", gate.brief(), sig.encoded_len()));

    // Deltas for real copies: identical, edited, unrelated, with sub-blocks.
    let mut digests = Digests::default();
    report_delta(cx, &DELTA_IDENTICAL, "identical copy", &page, &Ok(gate.clone()), &mut digests);
    let ed = edited(&page);
    let ed_sig = signature_for(&ed).expect("an edited page has a signature");
    let sent = cx.probe.get(&[(AE, "hsync"), (SIG, &header(&ed_sig))]).await;
    report_delta(cx, &DELTA_EDITED, "edited copy", &ed, &sent, &mut digests);
    let other = noise(0xD1FF, page.len());
    let other_sig = signature_for(&other).expect("same length as the page");
    let sent = cx.probe.get(&[(AE, "hsync"), (SIG, &header(&other_sig))]).await;
    report_delta(cx, &DELTA_UNRELATED, "unrelated copy", &other, &sent, &mut digests);
    let tuning = Tuning { sub_log: 2, sub_bits: 16, ..Tuning::default() };
    let sub_params = SigParams::choose(ed.len() as u64, MAX_SIGNATURE_LEN, &tuning);
    if sub_params.sub_bits == 0 || sub_params.check(&hsync_core::SigLimits::server()).is_err() {
        cx.na(&DELTA_SUB, "no sub-block signature of the page fits the limits");
    } else {
        let s = Signature::compute_with(&ed, sub_params);
        let sent = cx.probe.get(&[(AE, "hsync"), (SIG, &header(&s))]).await;
        let what = format!("edited copy, {}-byte blocks in {} sub-blocks", sub_params.block_len, 1 << sub_params.sub_log);
        report_delta(cx, &DELTA_SUB, &what, &ed, &sent, &mut digests);
    }

    // The fields of the hsync response.
    check_fields(cx, &gate);

    // The ordinary response's Vary.
    let plain_vary = cx.page.varies_on_all(&["accept-encoding", "hsync-signature"]);
    let detail = format!("plain GET: {}", cx.page.show("vary"));
    cx.verdict(&PLAIN_VARY, plain_vary, detail);

    // No hsync unless asked.
    let h = header(&sig);
    let s = h.clone();
    all_ordinary(cx, &NO_AE, vec![("no Accept-Encoding".into(), vec![(SIG, s.clone())])]).await;
    all_ordinary(cx, &OTHER_AE, vec![("gzip, deflate".into(), vec![(AE, "gzip, deflate".into()), (SIG, s.clone())])]).await;
    all_ordinary(cx, &Q0, vec![("hsync;q=0, identity".into(), vec![(AE, "hsync;q=0, identity".into()), (SIG, s.clone())])]).await;
    all_ordinary(cx, &STAR, vec![("*".into(), vec![(AE, "*".into()), (SIG, s.clone())])]).await;
    all_ordinary(cx, &NO_SIG, vec![("hsync, no signature".into(), vec![(AE, "hsync".into())])]).await;

    // Bad signatures.
    let [malformed, versions, truncated] = bad_signatures(&page);
    let cases = |v: Vec<(String, String)>| v.into_iter().map(|(w, s)| (w, vec![(AE, "hsync".to_string()), (SIG, s)])).collect::<Vec<_>>();
    all_ordinary(cx, &MALFORMED, cases(malformed)).await;
    check_oversized(cx, &page, &mut digests).await;
    all_ordinary(cx, &VERSION, cases(versions)).await;
    all_ordinary(cx, &TRUNCATED, cases(truncated)).await;
    all_ordinary(cx, &LIMITS, cases(refused())).await;
    check_padding(cx, &page, &ed, &mut digests).await;

    // Range, HEAD, conditional requests.
    let sent = cx.probe.get(&[(AE, "hsync"), (SIG, &h), ("range", "bytes=0-99")]).await;
    match ordinary(cx, &sent, true) {
        Ok(d) => cx.pass(&RANGE, format!("Range: bytes=0-99: {d}")),
        Err(e) => cx.fail(&RANGE, format!("Range: bytes=0-99: {e}")),
    }
    check_head(cx, &gate, &h).await;
    check_conditional(cx, &gate, &h).await;
    if !no_transform {
        cx.na(&NO_TRANSFORM, "the page does not say Cache-Control: no-transform (check a URL that does)");
    }

    if digests.bad.is_empty() {
        cx.pass(&DIGEST, format!("{} deltas: each END's digest is the page's BLAKE3-256 and verifies", digests.checked));
    } else {
        cx.fail(&DIGEST, digests.bad.join("; "));
    }
    // Report order: the digest right after the deltas.
    let at = cx.findings.iter().position(|f| f.id == DELTA_SUB.id).map_or(0, |i| i + 1);
    let d = cx.findings.pop().expect("just added");
    cx.findings.insert(at, d);
    true
}

fn check_fields(cx: &mut Ctx<'_>, r: &Resp) {
    let one = r.status.as_u16() == 200 && r.codings() == ["hsync"] && r.lines("content-encoding").len() == 1;
    cx.verdict(&CODING, one, format!("{}, {}", r.status.as_u16(), r.show("content-encoding")));
    let vary = r.varies_on_all(&["accept-encoding", "hsync-signature"]);
    cx.verdict(&VARY, vary, r.show("vary"));

    let plain_tag = cx.page.first("etag");
    let tag = r.first("etag");
    match &plain_tag {
        None => {
            cx.na(&ETAG, format!("the identity response has no ETag (hsync response: {})", r.show("etag")));
            cx.na(&ETAG_WEAK, "the identity response has no ETag");
        }
        Some(p) => {
            let strong_kept = !p.starts_with("W/") && tag.as_deref() == Some(p.as_str());
            cx.verdict(&ETAG, !strong_kept, format!("identity ETag: {p}; hsync {}", r.show("etag")));
            let want = if p.starts_with("W/") { p.clone() } else { format!("W/{p}") };
            cx.verdict(&ETAG_WEAK, tag.as_deref() == Some(want.as_str()), format!("want ETag: {want}; seen {}", r.show("etag")));
        }
    }
    let mut bad = Vec::new();
    if let Some(cl) = r.first("content-length") {
        if cl.parse::<usize>().ok() != Some(r.body.len()) {
            bad.push(format!("Content-Length: {cl} for a {}-byte delta", r.body.len()));
        }
    }
    if r.list_has("accept-ranges", "bytes") {
        bad.push("Accept-Ranges: bytes".into());
    }
    for f in ["content-digest", "repr-digest", "digest", "content-md5"] {
        let plain = cx.page.lines(f);
        if !plain.is_empty() && r.lines(f) == plain {
            bad.push(format!("{f} of the identity bytes"));
        }
    }
    if bad.is_empty() {
        cx.pass(&FIELDS, format!("{}, {}", r.show("content-length"), r.show("accept-ranges")));
    } else {
        cx.fail(&FIELDS, bad.join("; "));
    }
}

async fn check_oversized(cx: &mut Ctx<'_>, page: &[u8], digests: &mut Digests) {
    let (old, sig) = oversized(page);
    let what = format!("a valid {}-byte signature", sig.encoded_len());
    let sent = cx.probe.get(&[(AE, "hsync"), (SIG, &header(&sig))]).await;
    let mut bad = Vec::new();
    let mut seen = Vec::new();
    match &sent {
        Ok(r) if r.is_coded("hsync") => {
            let d = decode(cx, &old, &r.body);
            digests.note(cx, "oversized signature", &d);
            match &d.result {
                Ok(new) if cx.is_page(new) != Some(false) => {
                    seen.push(format!("{what}: used (the server accepts longer signatures), the delta rebuilds the page"))
                }
                Ok(_) => bad.push(format!("{what}: a delta that rebuilds other bytes than the page")),
                Err(e) => bad.push(format!("{what}: a delta that does not decode: {e}")),
            }
        }
        _ => match ordinary(cx, &sent, false) {
            Ok(d) => seen.push(format!("{what}: the ordinary response ({d})")),
            Err(e) => bad.push(format!("{what}: {e}")),
        },
    }
    let text = "A".repeat(7000);
    match ordinary(cx, &cx.probe.get(&[(AE, "hsync"), (SIG, &text)]).await, false) {
        Ok(_) => seen.push("7000 characters of garbage: the ordinary response".into()),
        Err(e) => bad.push(format!("7000 characters of garbage: {e}")),
    }
    if bad.is_empty() {
        cx.pass(&OVERSIZED, seen.join("; "));
    } else {
        cx.fail(&OVERSIZED, bad.join("; "));
    }
}

async fn check_padding(cx: &mut Ctx<'_>, page: &[u8], ed: &[u8], digests: &mut Digests) {
    use base64::Engine;
    // A signature whose length is not a multiple of 3 has padding.
    let Some((old, sig)) = [page, ed, &page[..page.len().saturating_sub(1)]]
        .into_iter()
        .filter_map(|o| Some((o, signature_for(o)?)))
        .find(|(_, s)| !s.encoded_len().is_multiple_of(3))
    else {
        return cx.na(&PADDING, "no signature of the page needs padding");
    };
    let padded = base64::engine::general_purpose::URL_SAFE.encode(sig.to_bytes());
    let sent = cx.probe.get(&[(AE, "hsync"), (SIG, &padded)]).await;
    match &sent {
        Ok(r) if r.is_coded("hsync") => {
            let d = decode(cx, old, &r.body);
            digests.note(cx, "padded signature", &d);
            match d.result {
                Ok(new) if cx.is_page(&new) != Some(false) => {
                    cx.pass(&PADDING, format!("{} ending {:?}: a delta that decodes", r.brief(), &padded[padded.len() - 2..]))
                }
                Ok(_) => cx.fail(&PADDING, "a delta that rebuilds other bytes than the page"),
                Err(e) => cx.fail(&PADDING, format!("a delta that does not decode: {e}")),
            }
        }
        Ok(r) => cx.fail(&PADDING, format!("the ordinary response ({})", r.brief())),
        Err(e) => cx.fail(&PADDING, e.clone()),
    }
}

async fn check_head(cx: &mut Ctx<'_>, gate: &Resp, h: &str) {
    let uri = cx.probe.url.clone();
    match cx.probe.send(Method::HEAD, &uri, &[(AE, "hsync, gzip"), (SIG, h)]).await {
        Err(e) => cx.fail(&HEAD_SIGNED, e),
        Ok(r) => {
            let mut bad = Vec::new();
            if r.status.as_u16() != 200 {
                bad.push(format!("status {}", r.status.as_u16()));
            }
            if r.codings() != ["hsync"] {
                bad.push(r.show("content-encoding"));
            }
            if !r.varies_on_all(&["accept-encoding", "hsync-signature"]) {
                bad.push(r.show("vary"));
            }
            // A feed's HEAD keeps the origin's tag: its ETaglet needs the body (§8.1).
            let etaglet = gate.first("etag").is_some_and(|t| hsync_core::feed::Etaglet::parse(t.as_bytes()).is_some());
            if r.first("etag") != gate.first("etag") && !etaglet {
                bad.push(format!("{} where the GET has {}", r.show("etag"), gate.show("etag")));
            }
            if r.first("content-length").is_some_and(|l| l == cx.page.body.len().to_string()) {
                bad.push(format!("{} (the identity length, not the delta's)", r.show("content-length")));
            }
            if bad.is_empty() {
                cx.pass(&HEAD_SIGNED, format!("{}, {}, {}", r.show("content-encoding"), r.show("vary"), r.show("etag")));
            } else {
                cx.fail(&HEAD_SIGNED, bad.join("; "));
            }
        }
    }
    match cx.probe.send(Method::HEAD, &uri, &[(AE, "hsync")]).await {
        Err(e) => cx.fail(&HEAD_PLAIN, e),
        Ok(r) if r.is_coded("hsync") || r.status.as_u16() != 200 => {
            cx.fail(&HEAD_PLAIN, format!("{}: {}", r.status.as_u16(), r.show("content-encoding")))
        }
        Ok(r) => cx.pass(&HEAD_PLAIN, format!("{}, {}", r.status.as_u16(), r.show("content-length"))),
    }
}

async fn check_conditional(cx: &mut Ctx<'_>, gate: &Resp, h: &str) {
    let (Some(plain_tag), Some(hsync_tag)) = (cx.page.first("etag"), gate.first("etag")) else {
        cx.na(&COND_SIGNED, format!("no ETag to revalidate with (identity: {}; hsync: {})", cx.page.show("etag"), gate.show("etag")));
        cx.na(&COND_PLAIN, format!("the identity response has no ETag ({})", cx.page.show("etag")));
        return;
    };
    if !cx.stable {
        cx.na(&COND_SIGNED, "the page changes per request: a 304 cannot be expected");
        cx.na(&COND_PLAIN, "the page changes per request: a 304 cannot be expected");
        return;
    }
    let strong = plain_tag.strip_prefix("W/").unwrap_or(&plain_tag).to_string();
    let mut bad = Vec::new();
    for tag in [hsync_tag.clone(), strong] {
        match cx.probe.get(&[(AE, "hsync, gzip"), (SIG, h), ("if-none-match", &tag)]).await {
            Err(e) => bad.push(format!("If-None-Match: {tag}: {e}")),
            Ok(r) if r.status.as_u16() != 304 => bad.push(format!("If-None-Match: {tag}: {}", r.brief())),
            Ok(r) => {
                if r.first("etag").as_deref() != Some(hsync_tag.as_str()) {
                    bad.push(format!("If-None-Match: {tag}: 304 with {} (the hsync 200 has {hsync_tag})", r.show("etag")));
                }
                if !r.varies_on_all(&["accept-encoding", "hsync-signature"]) {
                    bad.push(format!("If-None-Match: {tag}: 304 with {}", r.show("vary")));
                }
            }
        }
    }
    if bad.is_empty() {
        cx.pass(&COND_SIGNED, format!("304 with ETag: {hsync_tag} and the Vary, for either tag"));
    } else {
        cx.fail(&COND_SIGNED, bad.join("; "));
    }
    match cx.probe.get(&[("if-none-match", &plain_tag)]).await {
        Err(e) => cx.fail(&COND_PLAIN, e),
        Ok(r) if r.status.as_u16() == 304 && r.first("etag").as_deref() == Some(plain_tag.as_str()) => {
            cx.pass(&COND_PLAIN, format!("304, {}", r.show("etag")))
        }
        Ok(r) => cx.fail(&COND_PLAIN, format!("If-None-Match: {plain_tag}: {}, {}", r.brief(), r.show("etag"))),
    }
}
