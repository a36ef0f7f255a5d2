//! Command-line entry points for `hsync get` and `hsync proxy`.
use crate::cache::DiskCache;
use crate::fetch::{FetchOptions, Fetcher, Outcome, Progress, Source};
use crate::proxy::{self, ProxyConfig};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::Uri;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Default bound of the cache directory (1 GiB).
pub const DEFAULT_MAX_SIZE: u64 = 1 << 30;

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// URL to fetch (http:// or https://)
    pub url: String,
    /// Write the body to FILE instead of stdout
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Cache directory [default: $XDG_CACHE_HOME/hsync or ~/.cache/hsync]
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Extra request header, 'Name: value' (repeatable)
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// Print the request and response heads and the bytes saved to stderr
    #[arg(short, long)]
    pub verbose: bool,
    /// Seconds to wait for the server
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub timeout: f64,
    /// Largest total size of the cache, in bytes
    #[arg(long, default_value_t = DEFAULT_MAX_SIZE, value_name = "BYTES")]
    pub max_size: u64,
    /// Do not send a signature (plain conditional requests only)
    #[arg(long)]
    pub no_hsync: bool,
    /// Do not remember or offer compression dictionaries (RFC 9842, dcz)
    #[arg(long)]
    pub no_dictionary: bool,
    /// Also trust the CA certificates in FILE (PEM, one or more) for
    /// https://, besides the system's trust store (repeatable)
    #[arg(long = "cacert", value_name = "FILE")]
    pub cacert: Vec<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct ProxyArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Cache directory [default: $XDG_CACHE_HOME/hsync/proxy or ~/.cache/hsync/proxy]
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Largest total size of the cache, in bytes (least recently used entries are evicted)
    #[arg(long, default_value_t = DEFAULT_MAX_SIZE, value_name = "BYTES")]
    pub max_size: u64,
    /// Seconds to wait for an origin before serving the cached copy
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub timeout: f64,
    /// Do not inject the "may be out of date" banner into stale HTML pages
    #[arg(long)]
    pub no_stale_notice: bool,
    /// When the origin has not answered within MS milliseconds, serve the
    /// stored copy at once (if it may be served stale: Warning 110, Age, a
    /// notice in HTML) and finish the revalidation in the background
    #[arg(long, value_name = "MS")]
    pub optimistic: Option<u64>,
    /// Put a small script in stale HTML copies served at once that swaps in
    /// the current version when the proxy has it (blocked by a
    /// Content-Security-Policy without 'unsafe-inline')
    #[arg(long)]
    pub optimistic_swap: bool,
    /// Do not revalidate the stored images, scripts and style sheets of an
    /// HTML page when the page is fetched or revalidated
    #[arg(long)]
    pub no_parts: bool,
    /// Be a cache for one user: also store responses marked Cache-Control:
    /// private, and responses that set cookies (without their Set-Cookie).
    /// Never use it when the proxy serves several people
    #[arg(long)]
    pub cache_private: bool,
    /// Port that CONNECT may reach (repeatable; the list replaces the default, 443)
    #[arg(long = "connect-port", value_name = "PORT", default_values_t = [443u16])]
    pub connect_ports: Vec<u16>,
    /// Do not remember or offer compression dictionaries (RFC 9842, dcz)
    #[arg(long)]
    pub no_dictionary: bool,
    /// Append the access lines (one per request: time, client, method, URL,
    /// status, cache result, bytes from the origin, bytes delivered,
    /// milliseconds) to FILE instead of stderr
    #[arg(long, value_name = "FILE")]
    pub access_log: Option<PathBuf>,
    /// How much to log: lines of LEVEL and more severe (the access lines
    /// are info, with --access-log too) [default: $HSYNC_LOG_LEVEL, or info]
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub log_level: Option<crate::log::Level>,
    /// Decrypt https:// for HOSTS (comma-separated: example.com,
    /// *.example.org for the names below it, * for all; without a value:
    /// all) so that it is cached and gets deltas too. The proxy answers
    /// those CONNECTs with certificates of its own local CA (see --ca-dir),
    /// which the browser must be told to trust; it prints how at start.
    /// Other hosts are tunnelled untouched. Whoever can read the CA's key
    /// can impersonate any site to a browser that trusts it
    #[arg(long = "intercept-tls", value_name = "HOSTS", num_args = 0..=1, default_missing_value = "*")]
    pub intercept_tls: Option<String>,
    /// A host whose https:// to decrypt, as in --intercept-tls (repeatable; implies it)
    #[arg(long = "intercept-host", value_name = "HOST")]
    pub intercept_hosts: Vec<String>,
    /// Where the local CA of --intercept-tls is kept (created on first use:
    /// ca.pem, and ca-key.pem readable by its owner only)
    /// [default: $XDG_DATA_HOME/hsync/ca or ~/.local/share/hsync/ca]
    #[arg(long = "ca-dir", value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,
    /// Also trust the CA certificates in FILE (PEM, one or more) for
    /// origins' https://, besides the system's trust store (repeatable)
    #[arg(long = "cacert", value_name = "FILE")]
    pub cacert: Vec<PathBuf>,
}

/// What `hsync check` exits with, for `--help` and the man page.
pub const CHECK_EXIT_STATUS: &str = "\
Exit status:
  0  every MUST that applies passed (SHOULDs may have failed)
  1  at least one MUST failed
  2  hsync not supported: no valid signature got hsync (no MUST failed)
  3  usage error: bad arguments or URL
  4  nothing to check: no connection, or a plain GET not answered 200";

#[derive(clap::Args, Debug)]
#[command(after_help = CHECK_EXIT_STATUS)]
pub struct CheckArgs {
    /// URL of a page (or feed) the server should code with hsync (http:// or https://)
    #[arg(required_unless_present = "list")]
    pub url: Option<String>,
    /// Print the report as JSON (one object: page, findings, counts, verdict, exit_code)
    #[arg(long)]
    pub json: bool,
    /// Extra request header sent with every request, 'Name: value' (repeatable)
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// Seconds to wait for each response
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub timeout: f64,
    /// Requests of each kind (honest, hostile signature) for the timing check; 0 skips it
    #[arg(long = "timing", default_value_t = crate::check::timing::DEFAULT_REQUESTS, value_name = "N")]
    pub timing_requests: usize,
    /// The timing check fails when the hostile requests' median time exceeds
    /// the honest ones' by more than this factor (and by 2 ms)
    #[arg(long, default_value_t = crate::check::timing::DEFAULT_BOUND, value_name = "RATIO")]
    pub timing_bound: f64,
    /// List the requirements checked (id, section of docs/protocol.md, level) and exit
    #[arg(long)]
    pub list: bool,
    /// Also trust the CA certificates in FILE (PEM, one or more) for
    /// https://, besides the system's trust store (repeatable)
    #[arg(long = "cacert", value_name = "FILE")]
    pub cacert: Vec<PathBuf>,
}

/// `hsync check`: drives the server at URL through the protocol and
/// prints one line per requirement, then a summary (see [`CHECK_EXIT_STATUS`]).
pub fn check(args: CheckArgs) -> ExitCode {
    use crate::check::{self, CheckOptions, EXIT_UNREACHABLE, EXIT_USAGE};
    let usage = |m: String| {
        eprintln!("hsync check: {m}");
        ExitCode::from(EXIT_USAGE)
    };
    if args.list {
        let all = check::requirements();
        if args.json {
            println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
        } else {
            for r in all {
                println!("{:<6} §{:<4} {:<28} {}", r.level.as_str(), r.section, r.id, r.text);
            }
        }
        return ExitCode::SUCCESS;
    }
    let mut headers = HeaderMap::new();
    for h in &args.headers {
        match parse_header(h) {
            Ok((n, v)) => {
                headers.append(n, v);
            }
            Err(e) => return usage(e),
        }
    }
    if !(args.timeout > 0.0 && args.timeout.is_finite()) {
        return usage(format!("--timeout {}: must be a positive number of seconds", args.timeout));
    }
    if !(args.timing_bound >= 1.0 && args.timing_bound.is_finite()) {
        return usage(format!("--timing-bound {}: must be a ratio of at least 1", args.timing_bound));
    }
    let url = args.url.clone().unwrap_or_default();
    if let Err(e) = check::parse_url(&url) {
        return usage(e.message);
    }
    let roots = match crate::tls::roots_with(&args.cacert) {
        Ok(r) => r,
        Err(e) => return usage(format!("--cacert {e}")),
    };
    let opts = CheckOptions {
        roots: Some(roots),
        headers,
        timeout: Duration::from_secs_f64(args.timeout),
        timing_requests: args.timing_requests,
        timing_bound: args.timing_bound,
        ..Default::default()
    };
    let rt = match runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hsync check: {e}");
            return ExitCode::from(EXIT_UNREACHABLE);
        }
    };
    match rt.block_on(check::run(&url, &opts)) {
        Ok(report) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
            } else {
                print!("{}", report.to_text());
            }
            ExitCode::from(report.exit_code)
        }
        Err(e) => {
            if args.json {
                let v = serde_json::json!({ "url": url, "error": e.message, "exit_code": e.exit_code });
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            }
            eprintln!("hsync check: {}", e.message);
            ExitCode::from(e.exit_code)
        }
    }
}

/// `$XDG_CACHE_HOME/hsync` or `~/.cache/hsync`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("hsync");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("hsync")
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("hsync: {msg}");
    ExitCode::from(1)
}

fn parse_header(h: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (n, v) = h.split_once(':').ok_or_else(|| format!("bad header {h:?}: expected 'Name: value'"))?;
    let n = HeaderName::from_bytes(n.trim().as_bytes()).map_err(|_| format!("bad header name in {h:?}"))?;
    let v = HeaderValue::from_str(v.trim()).map_err(|_| format!("bad header value in {h:?}"))?;
    Ok((n, v))
}

/// The saving line printed by `get -v`.
pub fn savings_line(o: &Outcome) -> String {
    let n = o.body.len() as u64;
    let saved = if n > 0 { 100.0 * (1.0 - o.wire_bytes as f64 / n as f64) } else { 0.0 };
    format!("hsync: {n} bytes, {} on the wire ({saved:.1}% saved) [{}]", o.wire_bytes, o.source.as_str())
}

/// What the body travelled as, after the savings line of `get -v`:
/// `dcz: 1234 of 150000 bytes (dictionary 3f2a…)`, `hsync: …` for a delta.
pub fn coding_line(o: &Outcome) -> Option<String> {
    let n = o.body.len();
    match o.source {
        Source::Dcz => Some(format!(
            "dcz: {} of {n} bytes (dictionary {})",
            o.wire_bytes,
            o.dictionary_used.as_deref().map(|h| &h[..16.min(h.len())]).unwrap_or("?")
        )),
        Source::Delta => Some(format!("delta: {} of {n} bytes", o.wire_bytes)),
        _ => None,
    }
}

pub fn get(args: GetArgs) -> ExitCode {
    let uri: Uri = match args.url.parse() {
        Ok(u) => u,
        Err(e) => return fail(format!("bad URL {:?}: {e}", args.url)),
    };
    if !matches!(uri.scheme_str(), Some("http") | Some("https")) || uri.authority().is_none() {
        return fail(format!("bad URL {:?}: only http:// and https:// are supported", args.url));
    }
    let mut headers = HeaderMap::new();
    for h in &args.headers {
        match parse_header(h) {
            Ok((n, v)) => {
                headers.append(n, v);
            }
            Err(e) => return fail(e),
        }
    }
    let dir = args.cache.clone().unwrap_or_else(default_cache_dir);
    let cache = match DiskCache::open(&dir, args.max_size) {
        Ok(c) => Arc::new(c),
        Err(e) => return fail(format!("cache {}: {e}", dir.display())),
    };
    let roots = match crate::tls::roots_with(&args.cacert) {
        Ok(r) => r,
        Err(e) => return fail(format!("--cacert {e}")),
    };
    let opts = FetchOptions {
        shared: false,
        timeout: Duration::from_secs_f64(args.timeout.max(0.001)),
        hsync: !args.no_hsync,
        dictionary: if args.no_dictionary { None } else { Some(Default::default()) },
        roots: Some(roots),
        ..Default::default()
    };
    let fetcher = Fetcher::new(cache, opts);
    let rt = match runtime() {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let bar: Arc<Mutex<Option<indicatif::ProgressBar>>> = Arc::new(Mutex::new(None));
    let progress: Option<Progress> = if std::io::stderr().is_terminal() {
        let bar = bar.clone();
        Some(Arc::new(move |done: u64, total: Option<u64>| {
            let mut b = bar.lock().unwrap();
            if b.is_none() && total.is_none_or(|t| t >= 1 << 20) && done > 0 {
                let pb = match total {
                    Some(t) => indicatif::ProgressBar::new(t),
                    None => indicatif::ProgressBar::new_spinner(),
                };
                pb.set_style(
                    indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                *b = Some(pb);
            }
            if let Some(pb) = b.as_ref() {
                pb.set_position(done);
            }
        }))
    } else {
        None
    };
    let result = rt.block_on(fetcher.fetch(&uri, &headers, progress));
    if let Some(pb) = bar.lock().unwrap().take() {
        pb.finish_and_clear();
    }
    let o = match result {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    // Dictionaries the page announced: fetched after it (same origin, once), for the next time.
    let learnt = if o.dictionary_links.is_empty() { Vec::new() } else { rt.block_on(fetcher.fetch_dictionaries(&o)) };
    if args.verbose {
        let mut err = std::io::stderr().lock();
        if o.source == Source::Fresh {
            let _ = writeln!(err, "* fresh in the cache ({}), no request sent", dir.display());
        }
        for ex in &o.trace {
            for l in &ex.request {
                let _ = writeln!(err, "> {l}");
            }
            let _ = writeln!(err, ">");
            for l in &ex.response {
                let _ = writeln!(err, "< {l}");
            }
            let _ = writeln!(err, "<");
        }
        if let Some(r) = &o.delta_failed {
            let _ = writeln!(err, "* {r}; refetched without a signature");
        }
        let _ = writeln!(err, "{}", savings_line(&o));
        if let Some(l) = coding_line(&o) {
            let _ = writeln!(err, "{l}");
        }
        for (u, r) in &learnt {
            let _ = match r {
                Ok(n) => writeln!(err, "* dictionary {u}: {n} bytes kept"),
                Err(e) => writeln!(err, "* dictionary {u}: not kept: {e}"),
            };
        }
    }
    if let Some(r) = &o.stale_reason {
        eprintln!("hsync: warning: serving the cached copy from {}: {r}", proxy::fmt_time(o.fetched_at));
    }
    if o.status.as_u16() >= 400 {
        return fail(format!("{}: HTTP {}", args.url, o.status));
    }
    let written = match &args.output {
        Some(p) => write_atomic(p, &o.body),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&o.body).and_then(|_| out.flush())
        }
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format!("writing output: {e}")),
    }
}

/// Whether an output file may be written as a temporary file renamed into
/// place: only when `p` is absent or a regular file. A device (`-o
/// /dev/null`), a FIFO or a symlink is written through, as curl does;
/// renaming over it would replace the device or the link itself.
pub fn replace_by_rename(p: &std::path::Path) -> bool {
    match std::fs::symlink_metadata(p) {
        Ok(m) => m.file_type().is_file(),
        Err(_) => true,
    }
}

fn write_atomic(p: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    if !replace_by_rename(p) {
        let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(p)?;
        return f.write_all(data).and_then(|_| f.flush());
    }
    let tmp = p.with_file_name(format!(
        ".{}.hsync-{}.tmp",
        p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        std::process::id()
    ));
    let r = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, p)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

pub fn proxy(args: ProxyArgs) -> ExitCode {
    let level = match args.log_level {
        Some(l) => l,
        None => match std::env::var("HSYNC_LOG_LEVEL") {
            Ok(v) if !v.trim().is_empty() => match v.parse() {
                Ok(l) => l,
                Err(e) => return fail(format!("HSYNC_LOG_LEVEL: {e}")),
            },
            _ => crate::log::Level::Info,
        },
    };
    let log = match crate::log::Logger::new(level, args.access_log.as_deref()) {
        Ok(l) => Arc::new(l),
        Err(e) => {
            return fail(format!("access log {}: {e}", args.access_log.as_ref().map(|p| p.display().to_string()).unwrap_or_default()))
        }
    };
    let dir = args.cache.clone().unwrap_or_else(|| default_cache_dir().join("proxy"));
    let cache = match DiskCache::open(&dir, args.max_size) {
        Ok(c) => Arc::new(c),
        Err(e) => return fail(format!("cache {}: {e}", dir.display())),
    };
    let timeout = Duration::from_secs_f64(args.timeout.max(0.001));
    let roots = match crate::tls::roots_with(&args.cacert) {
        Ok(r) => r,
        Err(e) => return fail(format!("--cacert {e}")),
    };
    let mut hosts = Vec::new();
    for h in args.intercept_tls.iter().chain(args.intercept_hosts.iter()) {
        match crate::mitm::HostPattern::parse_list(h) {
            Ok(p) => hosts.extend(p),
            Err(e) => return fail(format!("--intercept-tls: {e}")),
        }
    }
    if args.intercept_tls.is_some() && hosts.is_empty() {
        return fail("--intercept-tls: no host given (use * for all)");
    }
    let intercept = if hosts.is_empty() {
        None
    } else {
        let dir = args.ca_dir.clone().unwrap_or_else(crate::mitm::default_ca_dir);
        match crate::mitm::Interceptor::open(&dir, hosts) {
            Ok((i, created)) => {
                if created {
                    eprintln!("hsync proxy: created the local CA in {}", dir.display());
                }
                Some(Arc::new(i))
            }
            Err(e) => return fail(format!("--intercept-tls: {e}")),
        }
    };
    let opts = FetchOptions {
        shared: !args.cache_private,
        timeout,
        hsync: true,
        dictionary: if args.no_dictionary { None } else { Some(Default::default()) },
        roots: Some(roots),
        ..Default::default()
    };
    let fetcher = Arc::new(Fetcher::new(cache, opts));
    let cfg = ProxyConfig {
        stale_notice: !args.no_stale_notice,
        timeout,
        connect_ports: args.connect_ports.clone(),
        log,
        optimistic: args.optimistic.map(Duration::from_millis),
        optimistic_swap: args.optimistic_swap,
        parts: !args.no_parts,
        intercept: intercept.clone(),
    };
    let rt = match runtime() {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    rt.block_on(async {
        let (addr, handle) = match proxy::spawn(&args.listen, fetcher, cfg).await {
            Ok(x) => x,
            Err(e) => return fail(format!("listen on {}: {e}", args.listen)),
        };
        let access = args.access_log.as_ref().map(|p| format!(", access log {}", p.display())).unwrap_or_default();
        eprintln!("hsync proxy listening on http://{addr}/ (cache {}{access})", dir.display());
        if let Some(i) = &intercept {
            eprintln!("{}", i.instructions(&addr.to_string()));
        }
        let _ = handle.await;
        ExitCode::SUCCESS
    })
}
