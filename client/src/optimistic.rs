//! Optimistic answers: serving the stored copy at once while the proxy
//! revalidates it in the background, when that is allowed.
//!
//! * `--optimistic MS`: when the origin has not answered within MS
//!   milliseconds and a stored copy matches the request, that copy is served
//!   (`Age`, `Warning: 110 - "Response is Stale"`, an HTML notice) and the
//!   revalidation goes on in the background; its result is stored, so the
//!   next request gets the current version.
//! * RFC 5861 `stale-while-revalidate=N` from the origin: within N seconds
//!   of the copy going stale it is served at once, revalidated behind it,
//!   without `--optimistic`.
//!
//! Never for a copy RFC 9111 forbids serving stale ([`crate::fetch::stale_allowed`]:
//! `must-revalidate`, `no-cache`, and in a shared cache `proxy-revalidate`
//! and `s-maxage`; a request's `no-cache`/`no-store`), nor when the request
//! limits the age it accepts (`max-age`, `min-fresh`, as a browser's reload
//! does) — `private` and `no-store` responses are never stored by a shared
//! proxy to begin with. One background revalidation per URL at a time,
//! bounded by [`Background::timeout`].
//!
//! The optional swap script (`--optimistic-swap`) asks the proxy, on the
//! page's own origin, for `/.hsync/fresh?u=URL&v=VERSION`: it waits for the
//! revalidation and answers the current page (204 when it is the same
//! version), which the script writes over the stale document.

use crate::cache::Meta;
use crate::fetch::{from_pairs, stale_allowed, Fetcher};
use crate::notice::query_escape;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{StatusCode, Uri};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The Warning on a copy served stale while it is revalidated (RFC 7234 §5.5.1;
/// the field is obsolete in RFC 9111, but still informative).
pub const WARNING_STALE: &str = "110 - \"Response is Stale\"";
/// Access-log results: a stale copy served because the origin was slower than `--optimistic`,
pub const STALE_OPTIMISTIC: &str = "STALE_OPTIMISTIC";
/// and within the origin's `stale-while-revalidate`.
pub const STALE_SWR: &str = "STALE_SWR";
/// Paths the proxy answers itself on every origin (for the swap script and notices).
pub const INTERNAL_PREFIX: &str = "/.hsync/";
pub const FRESH_PATH: &str = "/.hsync/fresh";
pub const COPY_PATH: &str = "/.hsync/copy";
/// How long `/.hsync/fresh` waits for a revalidation in flight.
pub const FRESH_WAIT: Duration = Duration::from_secs(20);

/// How a stale copy may be served for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    /// How long to wait for the origin before serving the copy.
    pub wait: Duration,
    /// The access-log result when the copy is served.
    pub result: &'static str,
}

/// Cache-Control directive `name=N` (seconds), from all lines of the field.
fn cc_seconds(h: &HeaderMap, name: &str) -> Option<u64> {
    h.get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter_map(|d| d.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.trim().trim_matches('"').parse().ok())
}

/// Whether (and how) the stored copy `meta` may be served at once for a
/// request with headers `req` while it is revalidated: `None` when it is
/// fresh (served as a HIT anyway) or may not be served stale.
/// `now`: Unix seconds.
pub fn mode(meta: &Meta, fresh: bool, req: &HeaderMap, shared: bool, optimistic: Option<Duration>, now: u64) -> Option<Mode> {
    if fresh || meta.status != 200 {
        return None;
    }
    let stored = from_pairs(&meta.headers);
    if !stale_allowed(&stored, req, shared) {
        return None;
    }
    // Nor a private response (which only a one-user proxy stores).
    let private = stored.get_all(header::CACHE_CONTROL).iter().filter_map(|v| v.to_str().ok()).flat_map(|s| s.split(','));
    if private.map(|d| d.split('=').next().unwrap_or("").trim().to_ascii_lowercase()).any(|d| d == "private" || d == "no-store") {
        return None;
    }
    // A request limiting the age it accepts (a reload sends max-age=0) gets no stale copy.
    if cc_seconds(req, "max-age").is_some() || cc_seconds(req, "min-fresh").is_some() {
        return None;
    }
    if let Some(window) = cc_seconds(&stored, "stale-while-revalidate") {
        // Staleness: the time since the copy was received, less its freshness lifetime then.
        let at = std::time::UNIX_EPOCH + Duration::from_secs(meta.fetched_at);
        let lifetime = meta.policy.time_to_live(at).as_secs();
        let staleness = now.saturating_sub(meta.fetched_at).saturating_sub(lifetime);
        if staleness <= window {
            return Some(Mode { wait: Duration::ZERO, result: STALE_SWR });
        }
    }
    optimistic.map(|wait| Mode { wait, result: STALE_OPTIMISTIC })
}

/// The background revalidations in flight: one per URL.
pub struct Background {
    inflight: Mutex<HashMap<String, tokio::sync::watch::Receiver<bool>>>,
    /// The longest a background revalidation may take.
    pub timeout: Duration,
}

/// A background revalidation registered for a URL; dropping it says it is done.
pub struct Running {
    bg: Arc<Background>,
    url: String,
    done: tokio::sync::watch::Sender<bool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.done.send(true);
        self.bg.inflight.lock().unwrap().remove(&self.url);
    }
}

impl Background {
    pub fn new(timeout: Duration) -> Arc<Background> {
        Arc::new(Background { inflight: Mutex::new(HashMap::new()), timeout })
    }

    /// Registers a background revalidation of `url`; `Err` with a receiver
    /// that turns `true` when it is done if one already runs.
    pub fn begin(self: &Arc<Self>, url: &str) -> Result<Running, tokio::sync::watch::Receiver<bool>> {
        let mut m = self.inflight.lock().unwrap();
        if let Some(rx) = m.get(url) {
            return Err(rx.clone());
        }
        let (tx, rx) = tokio::sync::watch::channel(false);
        m.insert(url.to_string(), rx);
        Ok(Running { bg: self.clone(), url: url.to_string(), done: tx })
    }

    /// Waits (at most `max`) for the background revalidation of `url`, if one runs.
    pub async fn wait(&self, url: &str, max: Duration) {
        let rx = self.inflight.lock().unwrap().get(url).cloned();
        if let Some(mut rx) = rx {
            let _ = tokio::time::timeout(max, rx.wait_for(|d| *d)).await;
        }
    }

    pub fn running(&self) -> usize {
        self.inflight.lock().unwrap().len()
    }
}

/// The script put in a stale HTML copy by `--optimistic-swap`: it asks the
/// proxy (same origin, so no CORS and no other site's pages) for the
/// current version and, if it differs from `version`, writes it over the
/// document. A Content-Security-Policy without `'unsafe-inline'` blocks it.
pub fn swap_script(url: &str, version: u64) -> String {
    format!(
        "<script>(function(){{fetch(\"{FRESH_PATH}?u={}&v={version:016x}\",{{cache:\"no-store\"}})\
         .then(function(r){{return r.status==200?r.text():null}}).then(function(t){{if(t){{document.open();document.write(t);\
         document.close()}}}}).catch(function(){{}})}})()</script>",
        query_escape(url)
    )
}

/// Is `target` (a URL named in an internal request's query) on the origin
/// the request was sent to (`host`: the request's authority; `None`: the
/// proxy's own name, which may name any origin)?
pub fn same_origin(target: &Uri, via: Option<&Uri>) -> bool {
    match via {
        None => true,
        Some(v) => crate::dict::origin_of(target).is_some() && crate::dict::origin_of(target) == crate::dict::origin_of(v),
    }
}

/// `/.hsync/fresh?u=URL&v=VERSION`: after the background revalidation of
/// URL (waited for, at most [`FRESH_WAIT`]), the current stored page if its
/// version (body XXH3-64, hex) is not VERSION and it was confirmed by the
/// origin within the last minute (or is fresh); else 204. Only entries the
/// fetcher would use for this request (shared rules, Vary) are answered.
pub async fn fresh(fetcher: &Fetcher, bg: &Background, target: &Uri, version: &str, req: &HeaderMap) -> (StatusCode, HeaderMap, Bytes) {
    bg.wait(&target.to_string(), FRESH_WAIT).await;
    let mut h = HeaderMap::new();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let Some(e) = fetcher.stored_for(target, req, false) else { return (StatusCode::NO_CONTENT, h, Bytes::new()) };
    let recent = crate::cache::now_secs().saturating_sub(e.meta.fetched_at) <= 60;
    let fresh = fetcher.stored_meta_for(target, req).is_some_and(|(_, f)| f);
    if format!("{:016x}", e.meta.body_xxh3) == version || !(recent || fresh) {
        return (StatusCode::NO_CONTENT, h, Bytes::new());
    }
    let stored = Fetcher::served_from(&e);
    if let Some(ct) = stored.get(header::CONTENT_TYPE) {
        h.insert(header::CONTENT_TYPE, ct.clone());
    }
    (StatusCode::OK, h, e.body.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderName;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        m
    }

    fn meta(cc: &str, age_s: u64) -> Meta {
        let now = std::time::SystemTime::now();
        let at = now - Duration::from_secs(age_s);
        let req = http::Request::get("http://example.org/").body(()).unwrap();
        let res = http::Response::builder().header("cache-control", cc).body(()).unwrap();
        let policy = http_cache_semantics::CachePolicy::new_options(
            &req,
            &res,
            at,
            http_cache_semantics::CacheOptions { shared: true, ..Default::default() },
        );
        Meta {
            url: "http://example.org/".into(),
            status: 200,
            headers: vec![("cache-control".into(), cc.into())],
            policy,
            body_len: 0,
            body_xxh3: 0,
            fetched_at: crate::cache::now_secs() - age_s,
            wire_bytes: 0,
            shared: Some(true),
            dictionary: None,
            removed_at: None,
        }
    }

    #[test]
    fn when_a_stale_copy_may_be_served_at_once() {
        let now = crate::cache::now_secs();
        let opt = Some(Duration::from_millis(200));
        let none = h(&[]);
        // --optimistic: a stale copy that may be served stale.
        assert_eq!(mode(&meta("max-age=10", 60), false, &none, true, opt, now).unwrap().result, STALE_OPTIMISTIC);
        assert_eq!(mode(&meta("max-age=10", 60), false, &none, true, None, now), None);
        assert_eq!(mode(&meta("max-age=10", 60), true, &none, true, opt, now), None, "fresh: a HIT anyway");
        for cc in [
            "max-age=10, private",
            "max-age=10, must-revalidate",
            "no-cache",
            "max-age=10, proxy-revalidate",
            "s-maxage=10",
            "no-cache, stale-while-revalidate=600",
        ] {
            assert_eq!(mode(&meta(cc, 60), false, &none, true, opt, now), None, "{cc}");
        }
        for rq in [("cache-control", "no-cache"), ("cache-control", "max-age=0"), ("pragma", "no-cache"), ("cache-control", "min-fresh=5")]
        {
            assert_eq!(mode(&meta("max-age=10", 60), false, &h(&[rq]), true, opt, now), None, "{rq:?}");
        }
        // stale-while-revalidate: within the window, at once, without --optimistic.
        let m = mode(&meta("max-age=10, stale-while-revalidate=120", 60), false, &none, true, None, now).unwrap();
        assert_eq!((m.wait, m.result), (Duration::ZERO, STALE_SWR));
        assert_eq!(mode(&meta("max-age=10, stale-while-revalidate=20", 60), false, &none, true, None, now), None);
        assert_eq!(
            mode(&meta("max-age=10, stale-while-revalidate=20", 60), false, &none, true, opt, now).unwrap().result,
            STALE_OPTIMISTIC
        );
    }

    #[test]
    fn origins() {
        let a: Uri = "http://a.example/x".parse().unwrap();
        let b: Uri = "http://b.example/.hsync/fresh".parse().unwrap();
        let a2: Uri = "http://a.example/.hsync/fresh".parse().unwrap();
        assert!(same_origin(&a, None) && same_origin(&a, Some(&a2)) && !same_origin(&a, Some(&b)));
    }
}
