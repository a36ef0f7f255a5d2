//! `hsync check URL`: a conformance checker for servers. It drives a live
//! server through docs/protocol.md and reports, for every requirement it
//! can test, whether the server meets it, with what was seen.
//!
//! The checks are grouped by subject, one function per group, each adding
//! [`Finding`]s to the report:
//!
//! - [`hsync`]: the negotiation and the coding (§2, §3.5, §4): a delta
//!   for real signatures of the page, decoded exactly, the digest, the
//!   response fields (Vary, ETag, …), no hsync unless asked, bad
//!   signatures, Range, HEAD, conditional requests, `no-transform`;
//! - [`timing`]: a hostile signature against an honest one (§6);
//! - [`dcz`]: RFC 9842 dictionaries when the page announces one (§7);
//! - [`feed`]: `A-IM: feed` when the URL is a feed with an ETaglet (§8).
//!
//! Requests go through the client's own HTTP stack
//! ([`crate::fetch::build_client`]); signatures, deltas, digests, dcz and
//! feeds are read with hsync-core's code, as every client reads them.
//!
//! Exit status ([`Report::exit_code`]): 0 every MUST passed; 1 some MUST
//! failed; 2 the server never offered hsync for an honest request (and no
//! MUST failed); [`EXIT_USAGE`] and [`EXIT_UNREACHABLE`] for errors.

pub mod dcz;
pub mod feed;
pub mod hsync;
pub mod timing;

use crate::fetch::{build_client, empty_body, HttpClient};
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::BodyExt;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Exit status: every MUST that could be checked passed.
pub const EXIT_PASS: u8 = 0;
/// Exit status: at least one MUST failed.
pub const EXIT_FAIL: u8 = 1;
/// Exit status: the server never answered an honest request with hsync.
pub const EXIT_NOT_SUPPORTED: u8 = 2;
/// Exit status: bad arguments (an unusable URL or option).
pub const EXIT_USAGE: u8 = 3;
/// Exit status: the URL could not be fetched plainly (no connection, a
/// timeout, or a status other than 200), so nothing could be checked.
pub const EXIT_UNREACHABLE: u8 = 4;

/// How strongly docs/protocol.md (or the RFC it applies) asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Level {
    #[serde(rename = "MUST")]
    Must,
    #[serde(rename = "SHOULD")]
    Should,
    /// Optional behaviour: offering hsync at all (a server MAY send the
    /// ordinary response to anyone), offering dcz.
    #[serde(rename = "MAY")]
    May,
}

impl Level {
    pub fn as_str(&self) -> &'static str {
        match self {
            Level::Must => "MUST",
            Level::Should => "SHOULD",
            Level::May => "MAY",
        }
    }
}

/// What one check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    /// The requirement does not apply to this URL or server (e.g. the page
    /// has no ETag, announces no dictionary, is not a feed); the detail says why.
    NotApplicable,
    /// Not run: something it depends on failed or is missing (hsync not
    /// offered), or it was turned off (`--timing 0`).
    Skipped,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::NotApplicable => "N/A",
            Outcome::Skipped => "SKIP",
        }
    }
}

/// A requirement the checker tests.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Requirement {
    /// Stable name, `group.what` (`hsync.vary`).
    pub id: &'static str,
    /// Section of docs/protocol.md (`2.3`), or an RFC section where the
    /// protocol applies one (`RFC 9110 §15.4.5` is cited in the text).
    pub section: &'static str,
    pub level: Level,
    /// The requirement, in a sentence.
    pub text: &'static str,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub id: &'static str,
    pub section: &'static str,
    pub level: Level,
    pub outcome: Outcome,
    pub requirement: &'static str,
    /// What was seen.
    pub detail: String,
}

/// Every requirement, in report order.
pub fn requirements() -> Vec<&'static Requirement> {
    let mut v: Vec<&'static Requirement> = Vec::new();
    v.extend(hsync::REQUIREMENTS);
    v.extend(timing::REQUIREMENTS);
    v.extend(dcz::REQUIREMENTS);
    v.extend(feed::REQUIREMENTS);
    v
}

/// The verdict, from the findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every MUST that applied passed.
    Conforms,
    /// Some MUST failed.
    Fails,
    /// hsync was never offered (and no MUST failed).
    NotSupported,
}

/// Counts for the summary line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub pass: usize,
    pub fail: usize,
    pub fail_must: usize,
    pub fail_should: usize,
    /// Optional behaviour not offered (hsync, dcz): failed, counted apart.
    pub fail_may: usize,
    pub not_applicable: usize,
    pub skipped: usize,
}

/// What was fetched plainly, for the report's head.
#[derive(Debug, Clone, Serialize)]
pub struct PageInfo {
    pub status: u16,
    pub content_type: Option<String>,
    pub bytes: usize,
    pub etag: Option<String>,
    /// Whether two plain requests in a row got the same bytes (a page that
    /// changes per request is compared by its digest only).
    pub stable: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub url: String,
    pub page: PageInfo,
    /// Whether the server answered an honest request with hsync.
    pub hsync_supported: bool,
    /// Why not, when it did not (what the plain response suggests).
    pub not_supported_because: Vec<String>,
    pub findings: Vec<Finding>,
    pub counts: Counts,
    pub verdict: Verdict,
    pub exit_code: u8,
    /// Requests sent in all.
    pub requests: u64,
}

impl Report {
    fn finish(url: String, page: PageInfo, supported: bool, because: Vec<String>, findings: Vec<Finding>, requests: u64) -> Report {
        let mut c = Counts::default();
        for f in &findings {
            match f.outcome {
                Outcome::Pass => c.pass += 1,
                Outcome::Fail => {
                    c.fail += 1;
                    match f.level {
                        Level::Must => c.fail_must += 1,
                        Level::Should => c.fail_should += 1,
                        Level::May => c.fail_may += 1,
                    }
                }
                Outcome::NotApplicable => c.not_applicable += 1,
                Outcome::Skipped => c.skipped += 1,
            }
        }
        let verdict = if c.fail_must > 0 {
            Verdict::Fails
        } else if !supported {
            Verdict::NotSupported
        } else {
            Verdict::Conforms
        };
        let exit_code = match verdict {
            Verdict::Conforms => EXIT_PASS,
            Verdict::Fails => EXIT_FAIL,
            Verdict::NotSupported => EXIT_NOT_SUPPORTED,
        };
        Report { url, page, hsync_supported: supported, not_supported_because: because, findings, counts: c, verdict, exit_code, requests }
    }

    /// The finding of requirement `id`, if it was reported.
    pub fn finding(&self, id: &str) -> Option<&Finding> {
        self.findings.iter().find(|f| f.id == id)
    }

    /// The summary line.
    pub fn summary(&self) -> String {
        let c = &self.counts;
        let verdict = match self.verdict {
            Verdict::Conforms => "conforms".to_string(),
            Verdict::Fails => format!("does not conform: {} MUST failed", c.fail_must),
            Verdict::NotSupported => "hsync not supported at this URL".to_string(),
        };
        let may = if c.fail_may > 0 { format!(", {} MAY", c.fail_may) } else { String::new() };
        format!(
            "{} passed, {} failed ({} MUST, {} SHOULD{may}), {} not applicable, {} skipped; {} requests: {verdict} (exit status {})",
            c.pass, c.fail, c.fail_must, c.fail_should, c.not_applicable, c.skipped, self.requests, self.exit_code
        )
    }

    /// The report for people: the page, one line per requirement, the summary.
    pub fn to_text(&self) -> String {
        let mut s = format!("hsync check {}\n", self.url);
        let p = &self.page;
        s.push_str(&format!(
            "page: {}, {}, {} bytes, ETag {}, {}\n",
            p.status,
            p.content_type.as_deref().unwrap_or("no Content-Type"),
            p.bytes,
            p.etag.as_deref().unwrap_or("none"),
            if p.stable { "the same bytes on every request" } else { "changes between requests (compared by digest only)" }
        ));
        // A failure says the requirement too; requirements skipped or not
        // applicable for the same reason share one line.
        let mut i = 0;
        while i < self.findings.len() {
            let f = &self.findings[i];
            let same = |g: &Finding| g.outcome == f.outcome && g.detail == f.detail;
            let run = self.findings[i..].iter().take_while(|g| same(g)).count();
            if run > 1 && matches!(f.outcome, Outcome::NotApplicable | Outcome::Skipped) {
                let ids: Vec<&str> = self.findings[i..i + run].iter().map(|g| g.id).collect();
                s.push_str(&format!("{:<4} {run} requirements ({}): {}\n", f.outcome.as_str(), ids.join(", "), f.detail));
                i += run;
                continue;
            }
            let what = if f.outcome == Outcome::Fail { format!("{}: ", f.requirement) } else { String::new() };
            s.push_str(&format!("{:<4} {:<6} §{:<4} {:<28} {what}{}\n", f.outcome.as_str(), f.level.as_str(), f.section, f.id, f.detail));
            i += 1;
        }
        if !self.hsync_supported {
            s.push_str("hsync was not offered for a valid signature of the page");
            if self.not_supported_because.is_empty() {
                s.push_str(".\n");
            } else {
                s.push_str(&format!("; the plain response suggests why: {}.\n", self.not_supported_because.join("; ")));
            }
        }
        s.push_str(&self.summary());
        s.push('\n');
        s
    }
}

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Extra header lines sent with every request (cookies, credentials).
    pub headers: HeaderMap,
    /// How long to wait for each response.
    pub timeout: Duration,
    /// Requests of each kind (honest, hostile) for the timing check; 0 skips it.
    pub timing_requests: usize,
    /// The timing check fails above this ratio of medians (hostile / honest).
    pub timing_bound: f64,
    /// Largest body read.
    pub max_body: u64,
    /// The roots trusted on https://; `None`: the system's (`--cacert` adds to them).
    pub roots: Option<std::sync::Arc<rustls::RootCertStore>>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            headers: HeaderMap::new(),
            timeout: Duration::from_secs(30),
            timing_requests: timing::DEFAULT_REQUESTS,
            timing_bound: timing::DEFAULT_BOUND,
            max_body: 256 << 20,
            roots: None,
        }
    }
}

/// Why no check could be run.
#[derive(Debug, Clone)]
pub struct CheckError {
    pub message: String,
    /// The exit status: [`EXIT_USAGE`] or [`EXIT_UNREACHABLE`].
    pub exit_code: u8,
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CheckError {}

/// One response, whole.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// From sending the request to the last byte of the body.
    pub elapsed: Duration,
}

impl Resp {
    /// Every line of field `name`, as sent.
    pub fn lines(&self, name: &str) -> Vec<String> {
        self.headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string()).collect()
    }

    /// The first line of `name`.
    pub fn first(&self, name: &str) -> Option<String> {
        self.lines(name).into_iter().next()
    }

    /// The members of a list field over all its lines, trimmed.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.lines(name)
            .iter()
            .flat_map(|l| l.split(',').map(|s| s.trim().to_string()).collect::<Vec<_>>())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// Does a list field hold `token` (case-insensitive; parameters ignored)?
    pub fn list_has(&self, name: &str, token: &str) -> bool {
        self.list(name).iter().any(|i| i.split(['=', ';']).next().unwrap_or("").trim().eq_ignore_ascii_case(token))
    }

    /// The content codings, lowercase, `identity` left out.
    pub fn codings(&self) -> Vec<String> {
        self.list("content-encoding").into_iter().map(|c| c.to_ascii_lowercase()).filter(|c| c != "identity").collect()
    }

    pub fn is_coded(&self, coding: &str) -> bool {
        self.codings().iter().any(|c| c == coding)
    }

    /// Does Vary name `field` (or is it `*`)?
    pub fn varies_on(&self, field: &str) -> bool {
        self.list("vary").iter().any(|n| n == "*" || n.eq_ignore_ascii_case(field))
    }

    /// Does Vary name all of `fields`?
    pub fn varies_on_all(&self, fields: &[&str]) -> bool {
        fields.iter().all(|f| self.varies_on(f))
    }

    /// `"Vary: a, b"` or `"no Vary"`, for details.
    pub fn show(&self, name: &str) -> String {
        let l = self.lines(name);
        if l.is_empty() {
            format!("no {name}")
        } else {
            format!("{name}: {}", l.join(" | "))
        }
    }

    /// `200, Content-Encoding: hsync, 1234 bytes`.
    pub fn brief(&self) -> String {
        let ce = self.lines("content-encoding");
        let ce = if ce.is_empty() { String::new() } else { format!(", Content-Encoding: {}", ce.join(" | ")) };
        format!("{}{ce}, {} bytes", self.status.as_u16(), self.body.len())
    }
}

/// What a request can fail with (the detail of the failing finding).
pub type Sent = Result<Resp, String>;

/// Sends the checker's requests to one URL, with the client's HTTP stack.
pub struct Probe {
    client: HttpClient,
    pub url: Uri,
    user: HeaderMap,
    timeout: Duration,
    max_body: u64,
    requests: std::sync::atomic::AtomicU64,
}

impl Probe {
    pub fn new(url: Uri, opts: &CheckOptions) -> Probe {
        Probe {
            client: match &opts.roots {
                Some(r) => crate::fetch::build_client_with(opts.timeout, r.clone()),
                None => build_client(opts.timeout),
            },
            url,
            user: opts.headers.clone(),
            timeout: opts.timeout,
            max_body: opts.max_body,
            requests: Default::default(),
        }
    }

    /// Requests sent so far.
    pub fn count(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// GET of the page with these header lines (besides the user's).
    pub async fn get(&self, headers: &[(&str, &str)]) -> Sent {
        self.send(Method::GET, &self.url.clone(), headers).await
    }

    /// One request; the whole response. A header line with an empty name
    /// is skipped (for optional ones).
    pub async fn send(&self, method: Method, uri: &Uri, headers: &[(&str, &str)]) -> Sent {
        // No Host: hyper sends it from the URL over HTTP/1.1, and over HTTP/2 the URL's authority is
        // `:authority` (nginx refuses a Host beside it as a duplicate).
        let mut h = HeaderMap::new();
        h.insert(http::header::USER_AGENT, HeaderValue::from_static(concat!("hsync-check/", env!("CARGO_PKG_VERSION"))));
        for (k, v) in &self.user {
            h.insert(k.clone(), v.clone());
        }
        for (k, v) in headers {
            if k.is_empty() {
                continue;
            }
            let k = HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("{k}: {e}"))?;
            let v = HeaderValue::from_bytes(v.as_bytes()).map_err(|e| format!("{k}: {e}"))?;
            h.append(k, v);
        }
        let mut req = Request::new(empty_body());
        *req.method_mut() = method;
        *req.uri_mut() = uri.clone();
        *req.headers_mut() = h;
        self.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let start = Instant::now();
        let resp = match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => return Err(format!("no answer within {} s", self.timeout.as_secs_f64())),
            Ok(Err(e)) => {
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg.push_str(&format!(": {s}"));
                    src = s.source();
                }
                return Err(format!("request failed: {msg}"));
            }
            Ok(Ok(r)) => r,
        };
        let (parts, mut body) = resp.into_parts();
        let mut buf = Vec::new();
        loop {
            let frame = match tokio::time::timeout(self.timeout, body.frame()).await {
                Err(_) => return Err("the body stopped coming".into()),
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(format!("reading the body: {e}")),
                Ok(Some(Ok(f))) => f,
            };
            if let Ok(d) = frame.into_data() {
                if buf.len() as u64 + d.len() as u64 > self.max_body {
                    return Err(format!("body over {} bytes", self.max_body));
                }
                buf.extend_from_slice(&d);
            }
        }
        Ok(Resp { status: parts.status, headers: parts.headers, body: Bytes::from(buf), elapsed: start.elapsed() })
    }
}

/// The plain page, as fetched before the checks, and what they share.
pub struct Ctx<'a> {
    pub probe: &'a Probe,
    /// The last plain response (no Accept-Encoding, no signature).
    pub page: Resp,
    /// Two plain requests in a row got the same bytes.
    pub stable: bool,
    pub findings: Vec<Finding>,
    pub opts: &'a CheckOptions,
}

impl Ctx<'_> {
    pub fn add(&mut self, r: &'static Requirement, outcome: Outcome, detail: impl Into<String>) {
        self.findings.push(Finding { id: r.id, section: r.section, level: r.level, outcome, requirement: r.text, detail: detail.into() });
    }

    pub fn pass(&mut self, r: &'static Requirement, detail: impl Into<String>) {
        self.add(r, Outcome::Pass, detail)
    }

    pub fn fail(&mut self, r: &'static Requirement, detail: impl Into<String>) {
        self.add(r, Outcome::Fail, detail)
    }

    pub fn na(&mut self, r: &'static Requirement, detail: impl Into<String>) {
        self.add(r, Outcome::NotApplicable, detail)
    }

    pub fn skip(&mut self, r: &'static Requirement, detail: impl Into<String>) {
        self.add(r, Outcome::Skipped, detail)
    }

    /// Pass when `ok`, else fail; the same detail either way.
    pub fn verdict(&mut self, r: &'static Requirement, ok: bool, detail: impl Into<String>) {
        self.add(r, if ok { Outcome::Pass } else { Outcome::Fail }, detail)
    }

    /// Skips every requirement of `group` not reported yet.
    pub fn skip_rest(&mut self, group: &[&'static Requirement], why: &str) {
        for r in group {
            if !self.findings.iter().any(|f| f.id == r.id) {
                self.skip(r, why);
            }
        }
    }

    /// Is `body` the page (when the page is stable; otherwise unknown: `None`)?
    pub fn is_page(&self, body: &[u8]) -> Option<bool> {
        self.stable.then(|| body == &self.page.body[..])
    }

    /// Is `body` the page as an ordinary response may carry it: exactly,
    /// or without the `<link rel="compression-dictionary">` element a
    /// server keeping versions inserts (§7.2), which it need not insert
    /// into a response it does not otherwise touch (`None`: page unstable).
    pub fn is_ordinary_page(&self, body: &[u8]) -> Option<bool> {
        self.stable.then(|| body == &self.page.body[..] || without_dictionary_link(body) == without_dictionary_link(&self.page.body))
    }

    /// The page's first `n` bytes, as [`Ctx::is_ordinary_page`] compares.
    pub fn is_ordinary_prefix(&self, body: &[u8]) -> Option<bool> {
        let starts = |page: &[u8]| page.len() >= body.len() && page[..body.len()] == *body;
        self.stable.then(|| starts(&self.page.body) || starts(&without_dictionary_link(&self.page.body)))
    }
}

/// `body` without its first `<link rel="compression-dictionary" …>`
/// element in the first 64 KiB (the one §7.2 has a server insert).
pub fn without_dictionary_link(body: &[u8]) -> Vec<u8> {
    let scan = &body[..body.len().min(crate::dict::HTML_SCAN)];
    let needle = b"<link rel=\"compression-dictionary\"";
    let Some(at) = scan.windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle)) else { return body.to_vec() };
    let Some(end) = body[at..].iter().position(|&b| b == b'>') else { return body.to_vec() };
    [&body[..at], &body[at + end + 1..]].concat()
}

/// A body compared with the page, for details.
pub fn same_or_not(ctx: &Ctx<'_>, body: &[u8]) -> &'static str {
    match ctx.is_page(body) {
        Some(true) => "the page's bytes",
        Some(false) => "NOT the page's bytes",
        None => "(page changes per request: not compared)",
    }
}

/// Deterministic printable bytes (xorshift), for copies that share nothing with a page.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b' ' + (x >> 40) as u8 % 94
        })
        .collect()
}

/// Parses the URL the checker is given.
pub fn parse_url(url: &str) -> Result<Uri, CheckError> {
    let usage = |m: String| CheckError { message: m, exit_code: EXIT_USAGE };
    let uri: Uri = url.parse().map_err(|e| usage(format!("bad URL {url:?}: {e}")))?;
    if !matches!(uri.scheme_str(), Some("http") | Some("https")) || uri.authority().is_none() {
        return Err(usage(format!("bad URL {url:?}: only http:// and https:// URLs")));
    }
    Ok(uri)
}

/// Runs every check against `url`.
pub async fn run(url: &str, opts: &CheckOptions) -> Result<Report, CheckError> {
    let uri = parse_url(url)?;
    let probe = Probe::new(uri, opts);
    let unreachable = |m: String| CheckError { message: m, exit_code: EXIT_UNREACHABLE };
    // The page as any client gets it: twice, to know whether it changes
    // per request (the dictionary modules also insert a link from the
    // second response on: a third settles it).
    let first = probe.get(&[]).await.map_err(|e| unreachable(format!("{url}: {e}")))?;
    if first.status != StatusCode::OK {
        return Err(unreachable(format!("{url}: a plain GET is answered {} (the checker needs a 200 page)", first.status)));
    }
    if !first.codings().is_empty() {
        return Err(unreachable(format!(
            "{url}: a GET without Accept-Encoding is answered with Content-Encoding {} (the checker needs the identity page)",
            first.codings().join(", ")
        )));
    }
    let mut page = probe.get(&[]).await.map_err(|e| unreachable(format!("{url}: {e}")))?;
    let mut stable = page.status == StatusCode::OK && page.body == first.body;
    if !stable {
        let third = probe.get(&[]).await.map_err(|e| unreachable(format!("{url}: {e}")))?;
        stable = third.status == StatusCode::OK && third.body == page.body;
        page = third;
    }
    if page.status != StatusCode::OK {
        return Err(unreachable(format!("{url}: a plain GET is answered {}", page.status)));
    }
    let info = PageInfo {
        status: page.status.as_u16(),
        content_type: page.first("content-type"),
        bytes: page.body.len(),
        etag: page.first("etag"),
        stable,
    };
    let mut ctx = Ctx { probe: &probe, page, stable, findings: Vec::new(), opts };
    let supported = hsync::check(&mut ctx).await;
    let because = if supported { Vec::new() } else { hsync::why_not(&ctx) };
    if supported {
        timing::check(&mut ctx).await;
    } else {
        ctx.skip_rest(timing::REQUIREMENTS, "hsync not offered");
    }
    dcz::check(&mut ctx).await;
    feed::check(&mut ctx).await;
    let findings = std::mem::take(&mut ctx.findings);
    Ok(Report::finish(url.to_string(), info, supported, because, findings, probe.count()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirement_ids_are_unique_and_grouped() {
        let all = requirements();
        let mut ids: Vec<&str> = all.iter().map(|r| r.id).collect();
        ids.sort();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n, "duplicate requirement ids");
        for r in all {
            assert!(r.id.contains('.'), "{}", r.id);
            assert!(!r.section.is_empty() && !r.text.is_empty(), "{}", r.id);
        }
    }

    #[test]
    fn verdicts_and_exit_codes() {
        let info = PageInfo { status: 200, content_type: None, bytes: 0, etag: None, stable: true };
        let f = |level, outcome| Finding { id: "x.y", section: "2", level, outcome, requirement: "r", detail: String::new() };
        let r =
            Report::finish("u".into(), info.clone(), true, vec![], vec![f(Level::Must, Outcome::Pass), f(Level::Should, Outcome::Fail)], 1);
        assert_eq!((r.verdict, r.exit_code), (Verdict::Conforms, EXIT_PASS));
        let r = Report::finish("u".into(), info.clone(), true, vec![], vec![f(Level::Must, Outcome::Fail)], 1);
        assert_eq!((r.verdict, r.exit_code), (Verdict::Fails, EXIT_FAIL));
        let r = Report::finish("u".into(), info.clone(), false, vec![], vec![f(Level::May, Outcome::Fail)], 1);
        assert_eq!((r.verdict, r.exit_code), (Verdict::NotSupported, EXIT_NOT_SUPPORTED));
        // A MUST failed outweighs "not supported".
        let r = Report::finish("u".into(), info, false, vec![], vec![f(Level::Must, Outcome::Fail)], 1);
        assert_eq!(r.exit_code, EXIT_FAIL);
    }
}
