//! Shared harness for the integration tests.
//!
//! The server behaviour suite (`tests/server_behaviour.rs`) is written once
//! and run against every [`ServerKind`]: [`start`] writes a configuration
//! for the real server into a temporary directory, starts it on a free
//! loopback port and returns a [`RunningServer`] that stops it on drop.
//! What a configuration must contain is fixed by [`Options`], so that the
//! nginx and the Apache arms serve the same URLs with the same behaviour.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub mod apache;
pub mod cdp;
pub mod chromium;
pub mod feed;
pub mod http;
pub mod nginx;
pub mod origin;
pub mod proxy;
pub mod pyspec;
pub mod squid;
pub mod upstream;

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// `../shared/corpus` beside the checkout.
pub fn corpus() -> PathBuf {
    root().parent().unwrap().join("shared").join("corpus")
}

/// The body without the first `<link rel="compression-dictionary" ...>`
/// element (the one a server with dictionaries on inserts into a page).
pub fn without_inserted_link(body: &[u8]) -> Vec<u8> {
    let lower = body.to_ascii_lowercase();
    let needle = b"<link rel=\"compression-dictionary\"";
    let Some(at) = lower.windows(needle.len()).position(|w| w == needle) else { return body.to_vec() };
    let end = at + lower[at..].iter().position(|&b| b == b'>').unwrap() + 1;
    let mut out = body[..at].to_vec();
    out.extend_from_slice(&body[end..]);
    out
}

/// The built server modules (`build/modules`).
pub fn modules_dir() -> PathBuf {
    root().join("target").join("modules")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    Nginx,
    Apache,
}

impl ServerKind {
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Nginx => "nginx",
            ServerKind::Apache => "apache",
        }
    }

    /// The module the harness loads.
    pub fn module(self) -> PathBuf {
        modules_dir().join(match self {
            ServerKind::Nginx => "ngx_http_hsync_module.so",
            ServerKind::Apache => "mod_hsync.so",
        })
    }
}

/// What the server under test serves. Both harnesses implement exactly
/// these locations (files have their ordinary MIME types by extension:
/// `.html` text/html, `.txt` text/plain, anything else
/// application/octet-stream; hsync applies to text/html only, the default
/// `hsync_types`):
///
/// | URL prefix | serves | hsync |
/// |---|---|---|
/// | `/`        | `docroot` | on |
/// | `/pre/`    | `docroot/pre/`, with a response header `Content-Encoding: gzip` added (precompressed files) | on |
/// | `/nt/`     | `docroot/nt/`, with `Cache-Control: no-transform` added | on |
/// | `/fresh/`  | `docroot/fresh/`, fresh for an hour (`Cache-Control: max-age=3600`, `Expires`) | on |
/// | `/off/`    | `docroot/off/` | off |
/// | `/proxy/`  | reverse proxy to `upstream`, prefix stripped (`/proxy/x` → `/x`) | on |
///
/// Error log at info level (the module's "invalid Hsync-Signature" lines
/// must land there); an access log whose lines end with the hsync ratio
/// (`$hsync_ratio`, `%{hsync_ratio}n`) and, with the module, ` coding=`
/// and the coding it applied (`$hsync_coding`, `%{hsync_coding}n`:
/// `hsync`, `dcz`, or nothing / `-`).
#[derive(Debug, Clone)]
pub struct Options {
    pub docroot: PathBuf,
    /// Where `/proxy/` goes (see [`upstream::Upstream`]).
    pub upstream: Option<SocketAddr>,
    /// Also gzip text/html (nginx `gzip on`; Apache mod_deflate), default level.
    pub gzip: bool,
    /// `hsync_max_signature` / the Apache equivalent; `None`: the default.
    pub max_signature: Option<u64>,
    /// Worker processes (nginx) / the closest equivalent; 1 by default.
    pub workers: u32,
    /// Load the hsync module at all (false: the same configuration without
    /// it and without its directives, for benchmarks).
    pub module: bool,
    /// `hsync_vary` / `HsyncVary` (on by default: responses hsync could
    /// apply to name its request fields in `Vary` even when it did not).
    pub vary: bool,
    /// RFC 9842 dictionaries (`hsync_dictionary on` / `HsyncDictionary On`),
    /// with the version store in `<server dir>/store`; `None`: off.
    pub dictionary: Option<Dictionary>,
    /// Feeds (docs/protocol.md §8): `hsync_feed on` / `HsyncFeed On`
    /// (`A-IM: feed`, 226).
    pub feed: bool,
    /// `hsync_feed_implicit on` / `HsyncFeedImplicit On`.
    pub feed_implicit: bool,
    /// Serve https:// instead of http:// (nginx only).
    pub tls: Option<Tls>,
}

/// The TLS settings of [`Options`]: a certificate (chain) and its key, PEM files.
#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Offer HTTP/2 too (ALPN h2).
    pub http2: bool,
}

/// The dictionary settings of [`Options`].
#[derive(Debug, Clone, Default)]
pub struct Dictionary {
    /// `max_size=` / the size argument of `HsyncDictionaryStore`; `None`: the default.
    pub store_max: Option<u64>,
    /// `hsync_dictionary_match` / `HsyncDictionaryMatch`; `None`: the page's own path.
    pub pattern: Option<String>,
}

impl Options {
    pub fn new(docroot: impl Into<PathBuf>) -> Options {
        Options {
            docroot: docroot.into(),
            upstream: None,
            gzip: false,
            max_signature: None,
            workers: 1,
            module: true,
            vary: true,
            dictionary: None,
            feed: false,
            feed_implicit: false,
            tls: None,
        }
    }
}

/// Starts `kind` with `opts`. `None` when server tests are skipped
/// (`HSYNC_SKIP_SERVER_TESTS=1`, or a comma-separated list of kinds such as
/// `apache`). Panics, telling to run build/modules, when the module is
/// missing.
pub fn start(kind: ServerKind, opts: &Options) -> Option<RunningServer> {
    if skipped(kind) {
        eprintln!("{} server tests skipped (HSYNC_SKIP_SERVER_TESTS)", kind.name());
        return None;
    }
    if opts.module && !kind.module().exists() {
        panic!(
            "{} is missing: run `build/modules {}` first (or set HSYNC_SKIP_SERVER_TESTS=1 to skip server tests)",
            kind.module().display(),
            kind.name()
        );
    }
    if opts.module {
        check_fresh(kind);
    }
    Some(match kind {
        ServerKind::Nginx => nginx::start(opts),
        ServerKind::Apache => apache::start(opts),
    })
}

fn mtime(p: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The newest modification time of the files under `dirs` (of the
/// workspace), subdirectories included.
fn newest_source(dirs: &[&str]) -> Option<std::time::SystemTime> {
    fn walk(d: &Path, newest: &mut Option<std::time::SystemTime>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, newest);
            } else {
                *newest = (*newest).max(mtime(&p));
            }
        }
    }
    let mut newest = None;
    for d in dirs {
        walk(&root().join(d), &mut newest);
    }
    newest
}

/// The module must not be older than the core sources the tests decode
/// with: a stale module speaks an older wire format.
fn check_fresh(kind: ServerKind) {
    let module = mtime(&kind.module()).unwrap();
    if newest_source(&["core/src"]).is_some_and(|t| t > module) {
        panic!("{} is older than core/src: run `build/modules {}` again", kind.module().display(), kind.name());
    }
}

/// The `hsync` command the tests run: `$HSYNC_BIN`, or the release build,
/// which must exist and be newer than its sources (a stale binary would
/// test old code).
pub fn hsync_bin() -> PathBuf {
    if let Some(b) = std::env::var_os("HSYNC_BIN") {
        return PathBuf::from(b);
    }
    let bin =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target")).join("release").join("hsync");
    let Some(built) = mtime(&bin) else {
        panic!("{} is missing: run `cargo build --release -p hsync` first (or set HSYNC_BIN)", bin.display())
    };
    if newest_source(&["client/src", "cli/src", "core/src"]).is_some_and(|t| t > built) {
        panic!("{} is older than its sources: run `cargo build --release -p hsync` again", bin.display());
    }
    bin
}

/// Whether HSYNC_SKIP_SERVER_TESTS skips `kind` (`1`, or a list naming it).
pub fn skipped(kind: ServerKind) -> bool {
    match std::env::var("HSYNC_SKIP_SERVER_TESTS") {
        Ok(v) => v == "1" || v.split(',').any(|k| k.trim().eq_ignore_ascii_case(kind.name())),
        Err(_) => false,
    }
}

/// A fresh directory for one server instance (config, logs, pid).
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join("hsync-tests").join(format!("{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Lines in a server error log that mean something went badly wrong.
pub const BAD_LOG_PATTERNS: &[&str] =
    &["exited on signal", "exit signal", "[alert]", ":alert]", "[emerg]", ":emerg]", "[crit]", ":crit]", "panic"];

/// A server started by a harness; stopped (SIGTERM, then SIGKILL) on drop.
pub struct RunningServer {
    pub kind: ServerKind,
    pub port: u16,
    /// The instance's directory (config, logs); removed on drop unless
    /// `HSYNC_KEEP_TMP` is set.
    pub dir: PathBuf,
    pub error_log: PathBuf,
    pub access_log: PathBuf,
    child: Option<Child>,
}

impl RunningServer {
    /// Spawns `cmd` (the server in the foreground) and waits until `ready`
    /// exists (e.g. its pid file; `None`: no such file) and `port`
    /// accepts connections. `Err` with the error log when it exits first.
    pub fn spawn(
        kind: ServerKind,
        dir: PathBuf,
        mut cmd: Command,
        port: u16,
        ready: Option<&Path>,
        error_log: PathBuf,
        access_log: PathBuf,
    ) -> Result<RunningServer, String> {
        let child = cmd.spawn().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
        let mut s = RunningServer { kind, port, dir, error_log, access_log, child: Some(child) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = s.child.as_mut().unwrap().try_wait().unwrap() {
                s.child = None;
                return Err(format!("{} exited with {status} at startup:\n{}", kind.name(), s.error_log_text()));
            }
            let file_ok = ready.is_none_or(|p| p.exists());
            if file_ok && TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(s);
            }
            if Instant::now() > deadline {
                return Err(format!("{} did not start listening on {port}:\n{}", kind.name(), s.error_log_text()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn error_log_text(&self) -> String {
        std::fs::read_to_string(&self.error_log).unwrap_or_default()
    }

    pub fn access_log_text(&self) -> String {
        std::fs::read_to_string(&self.access_log).unwrap_or_default()
    }

    /// How many error log lines contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.error_log_text().lines().filter(|l| l.contains(needle)).count()
    }

    /// Waits (briefly) until the error log has at least `n` lines with `needle`.
    pub fn wait_log_count(&self, needle: &str, n: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let c = self.log_count(needle);
            if c >= n || Instant::now() > deadline {
                return c;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's process ids: the one started and its descendants.
    pub fn pids(&self) -> Vec<u32> {
        let Some(child) = &self.child else { return Vec::new() };
        let mut pids = vec![child.id()];
        let mut all = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
            // "pid (comm) state ppid ..."; comm may contain spaces
            let ppid = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                all.push((pid, ppid));
            }
        }
        let mut i = 0;
        while i < pids.len() {
            let parent = pids[i];
            pids.extend(all.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
            i += 1;
        }
        pids
    }

    /// The largest peak resident set (VmHWM, KiB) among the server's processes.
    pub fn peak_rss_kb(&self) -> u64 {
        self.pids()
            .iter()
            .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
            .filter_map(|s| s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
    }

    /// Stops the server the way its Debian service does (SIGKILL after 10 s):
    /// nginx with SIGTERM, httpd with graceful-stop (SIGWINCH; Debian's
    /// apache2.service runs `apachectl graceful-stop`). httpd's immediate
    /// stop under mpm_event now and then crashes a child in its main thread
    /// (apr_os_sock_get, while worker threads exit), which would read as a
    /// crash of ours in the error log.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let sig = match self.kind {
            ServerKind::Nginx => libc::SIGTERM,
            ServerKind::Apache => libc::SIGWINCH,
        };
        // SAFETY: kill only sends a signal, to the server this handle started.
        unsafe {
            libc::kill(child.id() as libc::pid_t, sig);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Stops the server and asserts that its error log shows no crash,
    /// alert or emergency.
    pub fn finish(mut self) {
        self.stop();
        let log = self.error_log_text();
        let bad: Vec<&str> = log.lines().filter(|l| BAD_LOG_PATTERNS.iter().any(|p| l.contains(p))).collect();
        assert!(bad.is_empty(), "{} error log has bad lines:\n{}", self.kind.name(), bad.join("\n"));
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop();
        if std::env::var_os("HSYNC_KEEP_TMP").is_none() && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One `#[test]` per case and server: `server_cases!(a, b)` in a test file
/// makes `nginx::a`, `apache::a`, ... each calling `a(ServerKind::...)`.
#[macro_export]
macro_rules! server_cases {
    ($($case:ident),* $(,)?) => {
        mod nginx {
            $( #[test] fn $case() { super::$case($crate::ServerKind::Nginx) } )*
        }
        mod apache {
            $( #[test] fn $case() { super::$case($crate::ServerKind::Apache) } )*
        }
    };
}
