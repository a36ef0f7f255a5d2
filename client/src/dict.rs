//! The client's memory of compression dictionaries (RFC 9842).
//!
//! A response carrying `Use-As-Dictionary` is remembered (its identity
//! body) for as long as it is fresh; later requests whose URL matches it
//! name it (`Available-Dictionary: :<base64 SHA-256>:`, and `dcz` in
//! Accept-Encoding) and a server keeping that version answers `dcz`.
//!
//! Storage reuses [`DiskCache`] in the `dictionaries/` subdirectory of the
//! HTTP cache: one crash-safe, verified file per dictionary URL; a file that
//! fails its checks, or whose body does not hash to the SHA-256 recorded for
//! it, is deleted and never used. The memory is bounded in bytes and count;
//! expired dictionaries go first, then the least recently used.
//!
//! Rules (RFC 9842 §2, §7-8, as applied here):
//! - **Same origin.** A dictionary is offered only for URLs of its own
//!   origin; a `match` naming another origin makes the dictionary unusable
//!   (it is not stored).
//! - **Match.** `match` is read as a URL Pattern over the path (the query is
//!   not compared): literal characters, `\`-escapes, `*` (any run of
//!   characters) and `:name` (one or more characters other than `/`).
//!   Patterns using other URL Pattern syntax (groups, modifiers, regular
//!   expressions) are not understood and the dictionary is not stored.
//!   `match-dest` is compared with the request's `Sec-Fetch-Dest`, or
//!   `document` when the request has none (what `hsync get` fetches is a
//!   top-level document, as a navigation would).
//! - **Choice.** Among fresh matching dictionaries: the longest `match`,
//!   then the most recently received.
//! - **Freshness.** A dictionary lives for its response's freshness
//!   lifetime (RFC 9111, as the cache computes it); a response that is not
//!   fresh, or has `no-store`, is not remembered.
//! - **Privacy (shared proxy).** See `Fetcher`: a shared cache remembers only
//!   dictionaries from responses a shared cache may store, to requests without
//!   Cookie or Authorization, and offers them only on such requests.

use crate::cache::DiskCache;
use bytes::Bytes;
use hsync_core::store::{self, Hash};
use http::Uri;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// Bounds of the dictionary memory.
#[derive(Debug, Clone)]
pub struct DictOptions {
    /// Total bytes of dictionary bodies kept.
    pub max_bytes: u64,
    /// Number of dictionaries kept.
    pub max_count: usize,
    /// Largest single dictionary accepted (and largest body fetched for a
    /// `rel="compression-dictionary"` link).
    pub max_one: u64,
}

impl Default for DictOptions {
    fn default() -> Self {
        DictOptions { max_bytes: 64 << 20, max_count: 256, max_one: 16 << 20 }
    }
}

/// What is recorded about a dictionary (stored with its body).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DictMeta {
    /// `scheme://host:port` of the response that carried it.
    pub origin: String,
    /// The `match` pattern, as a path pattern.
    pub pattern: String,
    /// `match-dest` (empty: any destination).
    pub dest: Vec<String>,
    /// `id`, sent back as `Dictionary-ID`.
    pub id: Option<String>,
    /// SHA-256 of the body, lowercase hex.
    pub sha256: String,
    /// Unix seconds after which the dictionary is not used.
    pub expires: u64,
    /// Unix milliseconds it was received (the most recent wins a tie).
    pub received_ms: u64,
    /// Stored under a shared cache's rules.
    pub shared: bool,
}

/// A dictionary chosen for a request, with its verified body.
#[derive(Debug, Clone)]
pub struct Chosen {
    pub url: String,
    pub meta: DictMeta,
    pub hash: Hash,
    pub body: Bytes,
}

#[derive(Debug, Clone)]
struct Info {
    url: String,
    meta: DictMeta,
    hash: Hash,
    len: u64,
    last_used: u64,
}

/// The dictionary memory (see the module documentation).
pub struct DictStore {
    /// Opened when the directory exists or the first dictionary is stored
    /// (so a cache that never sees one gets no `dictionaries/` directory).
    cache: OnceLock<DiskCache>,
    dir: PathBuf,
    opts: DictOptions,
    index: Mutex<Vec<Info>>,
    clock: AtomicU64,
    /// Held while a dictionary is stored, so concurrent inserts keep the bounds.
    writing: Mutex<()>,
    /// Dictionaries found damaged (and deleted) since start.
    pub damaged: AtomicU64,
}

/// One dictionary as the status page shows it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub url: String,
    pub meta: DictMeta,
    pub len: u64,
}

impl DictStore {
    /// Opens (creating) the dictionary directory; entries that fail the
    /// cache's checks are removed by [`DiskCache::open`], bodies are checked
    /// against their SHA-256 when first used.
    pub fn open(dir: impl Into<PathBuf>, opts: DictOptions) -> io::Result<DictStore> {
        let dir = dir.into();
        let s = DictStore {
            cache: OnceLock::new(),
            dir,
            opts,
            index: Mutex::new(Vec::new()),
            clock: AtomicU64::new(1),
            writing: Mutex::new(()),
            damaged: AtomicU64::new(0),
        };
        if s.dir.is_dir() {
            let cache = s.cache()?;
            let mut index = Vec::new();
            for e in cache.list() {
                match e.dictionary.clone().and_then(|m| Some((store::unhex(&m.sha256)?, m))) {
                    Some((hash, meta)) if pattern_ok(&meta.pattern) => {
                        index.push(Info { url: e.url, meta, hash, len: e.body_len, last_used: 0 })
                    }
                    _ => cache.remove(&e.url),
                }
            }
            *s.index.lock().unwrap() = index;
            s.evict(0, crate::cache::now_secs());
        }
        Ok(s)
    }

    /// The directory's cache, opened (and the directory created) on first use.
    fn cache(&self) -> io::Result<&DiskCache> {
        if let Some(c) = self.cache.get() {
            return Ok(c);
        }
        // The DiskCache bound is a safety net: this store evicts first, by its own rules.
        let c = DiskCache::open(&self.dir, self.opts.max_bytes + (self.opts.max_count as u64) * (64 << 10))?;
        let _ = self.cache.set(c);
        Ok(self.cache.get().expect("set above"))
    }

    pub fn options(&self) -> &DictOptions {
        &self.opts
    }

    /// The file a dictionary URL is kept in (tests damage it).
    pub fn path_for(&self, url: &str) -> PathBuf {
        self.dir.join(format!("{}.hse", crate::cache::key_for(url)))
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    /// The dictionary to offer for a request: same origin, fresh, matching
    /// path and destination, stored under the right rules (`shared`: only
    /// dictionaries stored as shared); the longest pattern, then the most
    /// recent. Its body is read and verified; a damaged one is dropped and
    /// the next candidate tried.
    pub fn choose(&self, uri: &Uri, dest: &str, shared: bool, now: u64) -> Option<Chosen> {
        let origin = origin_of(uri)?;
        let path = uri.path();
        loop {
            let pick = {
                let idx = self.index.lock().unwrap();
                idx.iter()
                    .filter(|i| i.meta.origin == origin && i.meta.expires > now && (!shared || i.meta.shared))
                    .filter(|i| i.meta.dest.is_empty() || i.meta.dest.iter().any(|d| d == dest))
                    .filter(|i| pattern_matches(&i.meta.pattern, path))
                    .max_by_key(|i| (i.meta.pattern.len(), i.meta.received_ms, i.last_used))
                    .cloned()
            };
            let info = pick?;
            match self.load(&info) {
                Some(body) => {
                    let t = self.tick();
                    if let Some(i) = self.index.lock().unwrap().iter_mut().find(|i| i.url == info.url) {
                        i.last_used = t;
                    }
                    return Some(Chosen { url: info.url, meta: info.meta, hash: info.hash, body });
                }
                None => continue,
            }
        }
    }

    /// Reads and verifies a dictionary's body; a damaged one is deleted.
    fn load(&self, info: &Info) -> Option<Bytes> {
        let ok = self
            .cache
            .get()
            .and_then(|c| c.get(&info.url))
            .filter(|e| e.meta.dictionary.as_ref().is_some_and(|m| m.sha256 == info.meta.sha256))
            .map(|e| e.body);
        match ok {
            Some(b) if store::sha256(&b) == info.hash => Some(b),
            _ => {
                self.damaged.fetch_add(1, Ordering::Relaxed);
                self.remove(&info.url);
                None
            }
        }
    }

    pub fn remove(&self, url: &str) {
        if let Some(c) = self.cache.get() {
            c.remove(url);
        }
        self.index.lock().unwrap().retain(|i| i.url != url);
    }

    /// Is a fresh dictionary from `url` held (under these rules)?
    pub fn holds_fresh(&self, url: &str, shared: bool, now: u64) -> bool {
        self.index.lock().unwrap().iter().any(|i| i.url == url && i.meta.expires > now && (!shared || i.meta.shared))
    }

    /// Remembers a dictionary (replacing one from the same URL, and older ones
    /// with the same origin, pattern and destinations, which would never be
    /// chosen again). Returns whether it was kept.
    pub fn insert(&self, url: &str, meta: DictMeta, policy: http_cache_semantics::CachePolicy, body: &[u8]) -> io::Result<bool> {
        let len = body.len() as u64;
        if len > self.opts.max_one || len > self.opts.max_bytes || !pattern_ok(&meta.pattern) {
            return Ok(false);
        }
        let Some(hash) = store::unhex(&meta.sha256) else { return Ok(false) };
        let _writing = self.writing.lock().unwrap();
        // The same dictionary again (a revalidated or refetched response): only its lifetime
        // moves, in memory; the file keeps the earlier expiry, which is on the safe side.
        {
            let mut idx = self.index.lock().unwrap();
            let same = |i: &Info| {
                i.url == url
                    && i.meta.sha256 == meta.sha256
                    && i.meta.pattern == meta.pattern
                    && i.meta.dest == meta.dest
                    && i.meta.id == meta.id
                    && i.meta.shared == meta.shared
                    && i.meta.origin == meta.origin
            };
            if let Some(i) = idx.iter_mut().find(|i| same(i)) {
                i.meta.expires = i.meta.expires.max(meta.expires);
                i.last_used = self.clock.fetch_add(1, Ordering::Relaxed);
                return Ok(true);
            }
        }
        let stale: Vec<String> = self
            .index
            .lock()
            .unwrap()
            .iter()
            .filter(|i| {
                i.url == url
                    || (i.meta.origin == meta.origin
                        && i.meta.pattern == meta.pattern
                        && i.meta.dest == meta.dest
                        && i.meta.shared == meta.shared)
            })
            .map(|i| i.url.clone())
            .collect();
        for u in stale {
            self.remove(&u);
        }
        self.evict(len, crate::cache::now_secs());
        let m = crate::cache::Meta {
            url: url.to_string(),
            status: 200,
            headers: Vec::new(),
            policy,
            body_len: 0,
            body_xxh3: 0,
            fetched_at: crate::cache::now_secs(),
            wire_bytes: 0,
            shared: Some(meta.shared),
            dictionary: Some(meta.clone()),
            removed_at: None,
        };
        self.cache()?.put(m, body)?;
        let t = self.tick();
        self.index.lock().unwrap().push(Info { url: url.to_string(), meta, hash, len, last_used: t });
        Ok(true)
    }

    /// Makes room for `incoming` more bytes and one more entry: expired
    /// dictionaries first, then the least recently used.
    fn evict(&self, incoming: u64, now: u64) {
        let victims = {
            let mut idx = self.index.lock().unwrap();
            let mut out = Vec::new();
            idx.retain(|i| {
                let keep = i.meta.expires > now;
                if !keep {
                    out.push(i.url.clone());
                }
                keep
            });
            let extra = usize::from(incoming > 0);
            loop {
                let total: u64 = idx.iter().map(|i| i.len).sum();
                if idx.is_empty() || (idx.len() + extra <= self.opts.max_count && total + incoming <= self.opts.max_bytes) {
                    break;
                }
                let (pos, _) = idx.iter().enumerate().min_by_key(|(_, i)| (i.last_used, i.meta.received_ms)).unwrap();
                out.push(idx.remove(pos).url);
            }
            out
        };
        if let Some(c) = self.cache.get() {
            for u in victims {
                c.remove(&u);
            }
        }
    }

    /// The dictionaries held, most recently received first.
    pub fn list(&self) -> Vec<Listed> {
        let mut v: Vec<Listed> =
            self.index.lock().unwrap().iter().map(|i| Listed { url: i.url.clone(), meta: i.meta.clone(), len: i.len }).collect();
        v.sort_by_key(|l| std::cmp::Reverse(l.meta.received_ms));
        v
    }

    /// (count, bytes) held.
    pub fn totals(&self) -> (usize, u64) {
        let idx = self.index.lock().unwrap();
        (idx.len(), idx.iter().map(|i| i.len).sum())
    }
}

/// `scheme://host:port` of an absolute http(s) URI (host lowercase, port explicit).
pub fn origin_of(uri: &Uri) -> Option<String> {
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let host = uri.host()?.to_ascii_lowercase();
    Some(format!("{scheme}://{host}:{}", uri.port_u16().unwrap_or(default)))
}

/// A parsed `Use-As-Dictionary` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UseAs {
    pub pattern: String,
    pub dest: Vec<String>,
    pub id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Item {
    Str(String),
    Token(String),
    List(Vec<String>),
}

/// Parses a structured-field dictionary (RFC 8941), enough of it for
/// `Use-As-Dictionary`: strings, tokens, numbers, booleans, inner lists of
/// strings or tokens; parameters are skipped.
fn parse_sf_dict(s: &str) -> Option<Vec<(String, Item)>> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') {
            *i += 1;
        }
    };
    let string = |i: &mut usize| -> Option<String> {
        // b[*i] == '"'
        *i += 1;
        let mut v = String::new();
        while *i < b.len() {
            match b[*i] {
                b'\\' => {
                    let c = *b.get(*i + 1)?;
                    if c != b'"' && c != b'\\' {
                        return None;
                    }
                    v.push(c as char);
                    *i += 2;
                }
                b'"' => {
                    *i += 1;
                    return Some(v);
                }
                c if (0x20..0x7f).contains(&c) => {
                    v.push(c as char);
                    *i += 1;
                }
                _ => return None,
            }
        }
        None
    };
    let bare = |i: &mut usize| -> String {
        let st = *i;
        while *i < b.len() && !b" \t,;()\"".contains(&b[*i]) {
            *i += 1;
        }
        s[st..*i].to_string()
    };
    let params = |i: &mut usize| -> Option<()> {
        while *i < b.len() && b[*i] == b';' {
            *i += 1;
            ws(i);
            let _ = bare_key(b, i);
            if *i < b.len() && b[*i] == b'=' {
                *i += 1;
                if *i < b.len() && b[*i] == b'"' {
                    string(i)?;
                } else {
                    bare(i);
                }
            }
        }
        Some(())
    };
    loop {
        ws(&mut i);
        if i >= b.len() {
            break;
        }
        let key = bare_key(b, &mut i);
        if key.is_empty() {
            return None;
        }
        let item = if i < b.len() && b[i] == b'=' {
            i += 1;
            if i < b.len() && b[i] == b'"' {
                Item::Str(string(&mut i)?)
            } else if i < b.len() && b[i] == b'(' {
                i += 1;
                let mut l = Vec::new();
                loop {
                    ws(&mut i);
                    match b.get(i) {
                        Some(b')') => {
                            i += 1;
                            break;
                        }
                        Some(b'"') => l.push(string(&mut i)?),
                        Some(_) => {
                            let t = bare(&mut i);
                            if t.is_empty() {
                                return None;
                            }
                            l.push(t)
                        }
                        None => return None,
                    }
                    params(&mut i)?;
                }
                Item::List(l)
            } else {
                Item::Token(bare(&mut i))
            }
        } else {
            Item::Token("?1".into())
        };
        params(&mut i)?;
        out.push((key, item));
        ws(&mut i);
        match b.get(i) {
            None => break,
            Some(b',') => i += 1,
            Some(_) => return None,
        }
    }
    Some(out)
}

fn bare_key(b: &[u8], i: &mut usize) -> String {
    let st = *i;
    while *i < b.len() && (b[*i].is_ascii_lowercase() || b[*i].is_ascii_digit() || b"_-.*".contains(&b[*i])) {
        *i += 1;
    }
    String::from_utf8_lossy(&b[st..*i]).into_owned()
}

/// Reads `Use-As-Dictionary` (all its lines). `None`: absent, malformed, no
/// `match`, a `type` other than `raw`, or an `id` over 1024 characters.
pub fn parse_use_as_dictionary(values: &[&str]) -> Option<UseAs> {
    if values.is_empty() {
        return None;
    }
    let d = parse_sf_dict(&values.join(", "))?;
    let mut u = UseAs { pattern: String::new(), dest: Vec::new(), id: None };
    let mut have_match = false;
    for (k, v) in d {
        match (k.as_str(), v) {
            ("match", Item::Str(s)) => {
                u.pattern = s;
                have_match = true;
            }
            ("match-dest", Item::List(l)) => u.dest = l,
            ("id", Item::Str(s)) if s.len() <= 1024 => u.id = Some(s),
            ("id", _) => return None,
            ("type", Item::Token(t)) if t == "raw" => {}
            ("type", _) => return None,
            ("match" | "match-dest", _) => return None,
            _ => {}
        }
    }
    (have_match && !u.pattern.is_empty()).then_some(u)
}

/// The path pattern of a `match` value for a dictionary from `dict_url`:
/// absolute paths as they are; an absolute URL only on the same origin
/// (its path); `None` for another origin or a relative pattern.
pub fn same_origin_pattern(dict_url: &Uri, m: &str) -> Option<String> {
    if m.starts_with('/') && !m.starts_with("//") {
        return Some(m.to_string());
    }
    let lower = m.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        // The origin part holds no pattern syntax we accept; the rest is the path pattern.
        let rest_at = m.find("://")? + 3;
        let path_at = m[rest_at..].find('/').map(|p| rest_at + p).unwrap_or(m.len());
        let origin: Uri = m[..path_at].parse().ok()?;
        if origin_of(&origin)? != origin_of(dict_url)? {
            return None;
        }
        let p = &m[path_at..];
        return Some(if p.is_empty() { "/".to_string() } else { p.to_string() });
    }
    None
}

#[derive(Debug, Clone, Copy)]
enum Tok {
    Lit(u8),
    Star,
    Name,
}

const MAX_PATTERN: usize = 2048;
const MAX_PATH: usize = 16 << 10;

fn compile(p: &str) -> Option<Vec<Tok>> {
    let b = p.as_bytes();
    if b.len() > MAX_PATTERN {
        return None;
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                out.push(Tok::Lit(*b.get(i + 1)?));
                i += 2;
            }
            b'*' => {
                out.push(Tok::Star);
                i += 1;
            }
            b':' => {
                let st = i + 1;
                let mut j = st;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b'$') {
                    j += 1;
                }
                if j == st || b[st].is_ascii_digit() {
                    return None;
                }
                out.push(Tok::Name);
                i = j;
            }
            b'(' | b')' | b'{' | b'}' | b'+' | b'?' => return None,
            c => {
                out.push(Tok::Lit(c));
                i += 1;
            }
        }
    }
    Some(out)
}

/// Is `p` a pattern this client understands?
pub fn pattern_ok(p: &str) -> bool {
    p.starts_with('/') && compile(p).is_some()
}

/// Does the path pattern `p` match `path` (see the module documentation)?
pub fn pattern_matches(p: &str, path: &str) -> bool {
    let (Some(toks), pb) = (compile(p), path.as_bytes()) else { return false };
    if pb.len() > MAX_PATH {
        return false;
    }
    // dp[j]: the tokens so far can match path[..j].
    let mut dp = vec![false; pb.len() + 1];
    dp[0] = true;
    for t in toks {
        let mut next = vec![false; pb.len() + 1];
        match t {
            Tok::Lit(c) => {
                for j in 0..pb.len() {
                    next[j + 1] = dp[j] && pb[j] == c;
                }
            }
            Tok::Star => {
                let mut any = false;
                for j in 0..=pb.len() {
                    any |= dp[j];
                    next[j] = any;
                }
            }
            Tok::Name => {
                // One or more characters other than '/'.
                let mut run = false;
                for j in 0..pb.len() {
                    run = if pb[j] == b'/' { false } else { run || dp[j] };
                    next[j + 1] = run;
                }
            }
        }
        dp = next;
    }
    dp[pb.len()]
}

/// The targets of `Link: <u>; rel="compression-dictionary"` lines.
pub fn link_dictionaries(values: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for v in values {
        let b = v.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let Some(lt) = v[i..].find('<').map(|p| p + i) else { break };
            let Some(gt) = v[lt..].find('>').map(|p| p + lt) else { break };
            let target = &v[lt + 1..gt];
            // Parameters run to the next ',' outside quotes.
            let mut j = gt + 1;
            let mut quoted = false;
            while j < b.len() && (quoted || b[j] != b',') {
                if b[j] == b'"' {
                    quoted = !quoted;
                }
                j += 1;
            }
            let params = &v[gt + 1..j];
            let rel = params.split(';').map(str::trim).find_map(|p| {
                let (k, val) = p.split_once('=')?;
                k.trim().eq_ignore_ascii_case("rel").then(|| val.trim().trim_matches('"').to_ascii_lowercase())
            });
            if rel.is_some_and(|r| r.split_whitespace().any(|t| t == "compression-dictionary")) {
                out.push(target.to_string());
            }
            i = j + 1;
        }
    }
    out
}

/// How much of an HTML body is scanned for `<link rel="compression-dictionary">`.
pub const HTML_SCAN: usize = 64 << 10;

/// The `href`s of `<link rel="compression-dictionary">` elements in the
/// first [`HTML_SCAN`] bytes of an HTML body (entities `&amp;` decoded).
pub fn html_dictionaries(body: &[u8]) -> Vec<String> {
    let b = &body[..body.len().min(HTML_SCAN)];
    let lower: Vec<u8> = b.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(p) = find(&lower[i..], b"<link").map(|p| p + i) {
        let end = find(&lower[p..], b">").map(|e| e + p).unwrap_or(lower.len());
        let attrs = parse_attrs(&b[p + 5..end]);
        let rel = attrs.iter().find(|(k, _)| k == "rel").map(|(_, v)| v.to_ascii_lowercase());
        if rel.is_some_and(|r| r.split_whitespace().any(|t| t == "compression-dictionary")) {
            if let Some((_, href)) = attrs.iter().find(|(k, _)| k == "href") {
                out.push(href.replace("&amp;", "&"));
            }
        }
        i = end;
        if out.len() >= 4 {
            break;
        }
    }
    out
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn parse_attrs(b: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        let st = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' && b[i] != b'/' {
            i += 1;
        }
        if st == i {
            break;
        }
        let name = String::from_utf8_lossy(&b[st..i]).to_ascii_lowercase();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut val = String::new();
        if i < b.len() && b[i] == b'=' {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                let q = b[i];
                let vs = i + 1;
                i = vs;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
                val = String::from_utf8_lossy(&b[vs..i]).into_owned();
                i += 1;
            } else {
                let vs = i;
                while i < b.len() && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                val = String::from_utf8_lossy(&b[vs..i]).into_owned();
            }
        }
        out.push((name, val));
    }
    out
}

/// Resolves a link target against the page's URL; `None` unless it is an
/// http(s) URL of the same origin.
pub fn resolve_same_origin(base: &Uri, href: &str) -> Option<Uri> {
    let u = resolve(base, href)?;
    (origin_of(&u)? == origin_of(base)?).then_some(u)
}

/// `href` resolved against `base` (RFC 3986 §5.2, for http(s) URLs; the fragment dropped), any origin.
pub fn resolve(base: &Uri, href: &str) -> Option<Uri> {
    let href = href.trim();
    let href = href.split('#').next().unwrap_or("");
    let abs = if href.contains("://") {
        href.to_string()
    } else if let Some(rest) = href.strip_prefix("//") {
        format!("{}://{rest}", base.scheme_str()?)
    } else if href.starts_with('/') {
        format!("{}://{}{href}", base.scheme_str()?, base.authority()?)
    } else if href.is_empty() {
        return None;
    } else {
        let dir = base.path().rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        format!("{}://{}{dir}/{href}", base.scheme_str()?, base.authority()?)
    };
    let u: Uri = abs.parse().ok()?;
    // RFC 3986 §5.2.4: remove the dot segments of the path.
    let mut segs: Vec<&str> = Vec::new();
    let raw: Vec<&str> = u.path().split('/').skip(1).collect();
    for (i, seg) in raw.iter().enumerate() {
        let last = i + 1 == raw.len();
        match *seg {
            "." => {
                if last {
                    segs.push("");
                }
            }
            ".." => {
                segs.pop();
                if last {
                    segs.push("");
                }
            }
            s => segs.push(s),
        }
    }
    let query = u.query().map(|q| format!("?{q}")).unwrap_or_default();
    format!("{}://{}/{}{query}", u.scheme_str()?, u.authority()?, segs.join("/")).parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_as_dictionary_fields() {
        let u = parse_use_as_dictionary(&["match=\"/js/*\", match-dest=(\"script\" \"document\"), id=\"v1\""]).unwrap();
        assert_eq!(u, UseAs { pattern: "/js/*".into(), dest: vec!["script".into(), "document".into()], id: Some("v1".into()) });
        assert_eq!(parse_use_as_dictionary(&["match=\"/a\\\\b\""]).unwrap().pattern, "/a\\b");
        assert!(parse_use_as_dictionary(&["match-dest=(\"document\")"]).is_none());
        assert!(parse_use_as_dictionary(&["match=\"/a\", type=other"]).is_none());
        assert!(parse_use_as_dictionary(&["match=\"/a\", type=raw"]).is_some());
        assert!(parse_use_as_dictionary(&["match=/a"]).is_none());
        assert!(parse_use_as_dictionary(&["match=\"/a"]).is_none());
        assert!(parse_use_as_dictionary(&[]).is_none());
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("/js/*", "/js/app.v2.js"));
        assert!(pattern_matches("/js/*", "/js/"));
        assert!(!pattern_matches("/js/*", "/css/a.css"));
        assert!(pattern_matches("/p/:id/x", "/p/12/x"));
        assert!(!pattern_matches("/p/:id/x", "/p/1/2/x"));
        assert!(!pattern_matches("/p/:id/x", "/p//x"));
        assert!(pattern_matches("/a\\(b\\)", "/a(b)"));
        assert!(pattern_matches("/index.html", "/index.html"));
        assert!(!pattern_matches("/index.html", "/index.htm"));
        assert!(pattern_matches("*", "/anything"));
        assert!(pattern_matches("/*a*a*b", "/xaxaxxb"));
        assert!(!pattern_ok("/a(b)"));
        assert!(!pattern_ok("/a/:id?"));
        assert!(!pattern_ok("js/*"));
        let base: Uri = "http://Example.org:80/dir/page".parse().unwrap();
        assert_eq!(same_origin_pattern(&base, "/x/*").as_deref(), Some("/x/*"));
        assert_eq!(same_origin_pattern(&base, "http://example.org/y/*").as_deref(), Some("/y/*"));
        assert_eq!(same_origin_pattern(&base, "http://other.org/y/*"), None);
        assert_eq!(same_origin_pattern(&base, "https://example.org/y/*"), None);
        assert_eq!(same_origin_pattern(&base, "y/*"), None);
    }

    #[test]
    fn links() {
        assert_eq!(
            link_dictionaries(&["</style.css>; rel=preload, </.well-known/hsync/dictionary/ab>; rel=\"compression-dictionary\""]),
            vec!["/.well-known/hsync/dictionary/ab".to_string()]
        );
        let html =
            b"<!doctype html><html><head><LINK Rel=\"compression-dictionary\" href='/d?a=1&amp;b=2'><link rel=stylesheet href=/s.css>";
        assert_eq!(html_dictionaries(html), vec!["/d?a=1&b=2".to_string()]);
        let base: Uri = "http://example.org/dir/page".parse().unwrap();
        assert_eq!(resolve_same_origin(&base, "/d").unwrap().to_string(), "http://example.org/d");
        assert_eq!(resolve_same_origin(&base, "d2").unwrap().to_string(), "http://example.org/dir/d2");
        assert!(resolve_same_origin(&base, "http://evil.org/d").is_none());
        assert!(resolve_same_origin(&base, "//evil.org/d").is_none());
        assert_eq!(resolve_same_origin(&base, "http://example.org:80/d").unwrap().path(), "/d");
        assert_eq!(resolve_same_origin(&base, "../x/./y?q=1").unwrap().to_string(), "http://example.org/x/y?q=1");
        assert_eq!(resolve_same_origin(&base, "/a/../../b/").unwrap().path(), "/b/");
    }
}
