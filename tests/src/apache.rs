//! The Apache arm of the server harness: a throwaway Apache httpd 2.4
//! (Debian's /usr/sbin/apache2, in the foreground) with
//! `target/modules/mod_hsync.so`, its config, logs and pid file in a temp
//! dir, on a free loopback port; stopped on drop ([`RunningServer`]).
//!
//! The generated httpd.conf loads only what is needed from
//! /usr/lib/apache2/modules (mpm_event; authz_core, mime, filter, deflate,
//! headers, lua, proxy, proxy_http; log_config and unixd are built in) and
//! serves the locations of [`Options`] (with `Options.dictionary`,
//! `HsyncDictionary On` and its store in `<instance dir>/store`; the access
//! log ends with ` coding=%{hsync_coding}n`):
//!
//! * `/`       the docroot; `AddOutputFilterByType HSYNC text/html
//!   application/atom+xml application/x-rss+xml` (and `DEFLATE` for
//!   text/html with `gzip`; `.atom` files are application/atom+xml, `.rss`
//!   application/x-rss+xml as Debian types them; `HsyncFeed On` and
//!   `HsyncFeedImplicit On` with `Options.feed` / `feed_implicit`);
//! * `/fresh/` an hour of freshness (mod_expires), as nginx's `expires 1h`;
//! * `/pre/`   `Content-Encoding: gzip` added, `/nt/` `Cache-Control:
//!   no-transform` added, both by a mod_lua fixup hook, i.e. before the
//!   handler, as nginx's add_header is seen by its filters. (mod_headers'
//!   `Header set` is applied by an output filter that runs after HSYNC and
//!   DEFLATE, so neither would see it; `Header early` cannot be limited to
//!   a path.)
//! * `/off/`   without HSYNC (`FilterChain !`, DEFLATE added back with gzip);
//! * `/proxy/` `ProxyPass` to the upstream, prefix stripped.
//!
//! Build the module first: `build/modules apache`.

use crate::{free_port, temp_dir, Options, RunningServer, ServerKind};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where Debian keeps httpd's modules.
pub const MODULES_DIR: &str = "/usr/lib/apache2/modules";
/// Debian's httpd binary.
pub const HTTPD: &str = "/usr/sbin/apache2";

/// Apache-only knobs, beyond the shared [`Options`] (for tests/apache_module.rs).
#[derive(Debug, Clone, Default)]
pub struct Extra {
    /// `HsyncMinLength`, `HsyncCompressionLevel`.
    pub min_length: Option<u64>,
    pub level: Option<i32>,
    /// Replace the `AddOutputFilterByType` lines for `/` with these lines
    /// (e.g. `SetOutputFilter DEFLATE;HSYNC`); the module stays loaded.
    pub filters: Option<String>,
    /// Threads per child process (default 16).
    pub threads: Option<u32>,
    /// Appended to httpd.conf (server context).
    pub conf: String,
}

/// Starts Apache as [`Options`] say (panics with the error log if it cannot).
pub fn start(opts: &Options) -> RunningServer {
    start_with(opts, &Extra::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// Starts Apache with Apache-only extras; `Err` with the error log when
/// httpd refuses the configuration or exits.
pub fn start_with(opts: &Options, extra: &Extra) -> Result<RunningServer, String> {
    backdate(&opts.docroot);
    let dir = temp_dir("apache");
    let port = free_port();
    let conf = dir.join("httpd.conf");
    std::fs::write(&conf, config(opts, extra, &dir, port)).map_err(|e| e.to_string())?;
    // A directive's error goes to stderr, in `dir`, which a failed start
    // removes: check the configuration first and keep what httpd says.
    let check = Command::new(HTTPD)
        .arg("-t")
        .arg("-f")
        .arg(&conf)
        .env_remove("APACHE_CONFDIR")
        .env_remove("APACHE_ARGUMENTS")
        .output()
        .map_err(|e| format!("cannot run {HTTPD}: {e}"))?;
    if !check.status.success() {
        if std::env::var_os("HSYNC_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        return Err(format!("apache refused its configuration:\n{}", String::from_utf8_lossy(&check.stderr)));
    }
    // Cores of crashed children go to `dir` (CoreDumpDirectory; httpd's
    // children run as nobody).
    let _ = std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777));
    let mut cmd = Command::new(HTTPD);
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls setrlimit, which is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
            libc::setrlimit(libc::RLIMIT_CORE, &unlimited);
            Ok(())
        });
    }
    cmd.arg("-f").arg(&conf).arg("-DFOREGROUND");
    // Debian's apache2 reads its envvars only via apache2ctl; make sure
    // nothing from the environment points it at /etc/apache2.
    cmd.env_remove("APACHE_CONFDIR").env_remove("APACHE_ARGUMENTS");
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    if let Ok(f) = std::fs::File::create(dir.join("stderr.log")) {
        cmd.stderr(f);
    }
    let error_log = dir.join("error.log");
    let access_log = dir.join("access.log");
    let pid = dir.join("httpd.pid");
    let server = RunningServer::spawn(ServerKind::Apache, dir.clone(), cmd, port, Some(&pid), error_log, access_log).map_err(|e| {
        let stderr = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
        format!("{e}\n{stderr}")
    })?;
    wait_children_started(&server, opts.workers.max(1) as usize, extra.threads.unwrap_or(16).max(1) as usize);
    Ok(server)
}

/// Waits until every worker child has all its threads (workers, listener
/// and main): the port accepts as soon as the parent listens, and a test
/// should neither measure nor stop a half-started child. Best effort:
/// gives up after 10 s.
fn wait_children_started(server: &RunningServer, children: usize, threads: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if let Some(parent) = parent_pid(server) {
            let kids = child_pids(parent);
            let ready = kids
                .iter()
                .filter(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/status"))
                        .ok()
                        .and_then(|s| s.lines().find(|l| l.starts_with("Threads:"))?.split_whitespace().nth(1)?.parse::<usize>().ok())
                        .is_some_and(|n| n >= threads + 2)
                })
                .count();
            if ready >= children {
                return;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// httpd makes the ETag of a file modified less than a second before the
/// request weak (ap_make_etag), nginx never does; tests write their docroot
/// just before starting the server. Files younger than 2 s get an mtime
/// 10 s in the past, so that static ETags are strong as in production.
fn backdate(dir: &Path) {
    let now = std::time::SystemTime::now();
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            backdate(&p);
        } else if meta.modified().ok().and_then(|m| now.duration_since(m).ok()).is_none_or(|age| age.as_secs() < 2) {
            if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&p) {
                let _ = f.set_modified(now - std::time::Duration::from_secs(10));
            }
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn load(c: &mut String, name: &str, file: &str) {
    // log_config and unixd are compiled into Debian's httpd; the others are DSOs.
    let _ = writeln!(c, "<IfModule !{name}>\n    LoadModule {name} {MODULES_DIR}/{file}\n</IfModule>");
}

fn q(p: &Path) -> String {
    format!("\"{}\"", p.display())
}

/// The httpd.conf for `opts`, listening on 127.0.0.1:`port`, files in `dir`.
pub fn config(opts: &Options, extra: &Extra, dir: &Path, port: u16) -> String {
    let mut c = String::new();
    let docroot: PathBuf = opts.docroot.clone();
    let procs = opts.workers.max(1);
    let threads = extra.threads.unwrap_or(16).max(1);

    let _ = writeln!(c, "# generated by tests/src/apache.rs");
    let _ = writeln!(c, "ServerRoot {}\nServerName 127.0.0.1\nListen 127.0.0.1:{port}", q(dir));
    let _ = writeln!(c, "PidFile {}\nDefaultRuntimeDir {}", q(&dir.join("httpd.pid")), q(dir));
    let _ = writeln!(c, "ErrorLog {}\nLogLevel info", q(&dir.join("error.log")));
    // mpm_event, as Debian ships it; HSYNC_APACHE_MPM=worker|prefork to
    // run the suite under another MPM.
    let mpm = std::env::var("HSYNC_APACHE_MPM").unwrap_or_else(|_| "event".into());
    load(&mut c, &format!("mpm_{mpm}_module"), &format!("mod_mpm_{mpm}.so"));
    load(&mut c, "unixd_module", "mod_unixd.so");
    load(&mut c, "log_config_module", "mod_log_config.so");
    load(&mut c, "authz_core_module", "mod_authz_core.so");
    load(&mut c, "mime_module", "mod_mime.so");
    load(&mut c, "filter_module", "mod_filter.so");
    load(&mut c, "deflate_module", "mod_deflate.so");
    load(&mut c, "headers_module", "mod_headers.so");
    // mod_expires sets Cache-Control where HSYNC sees it (a page's
    // freshness); mod_headers' `Header set` acts in a filter after HSYNC.
    load(&mut c, "expires_module", "mod_expires.so");
    load(&mut c, "lua_module", "mod_lua.so");
    load(&mut c, "proxy_module", "mod_proxy.so");
    load(&mut c, "proxy_http_module", "mod_proxy_http.so");
    if opts.module {
        let _ = writeln!(c, "LoadModule hsync_module {}", q(&ServerKind::Apache.module()));
    }
    if is_root() {
        // httpd will not serve as root; the temp dir and docroot are world-readable.
        let _ = writeln!(c, "User nobody\nGroup nogroup");
    }
    let _ = writeln!(
        c,
        "ServerLimit {procs}\nStartServers {procs}\nThreadLimit {threads}\nThreadsPerChild {threads}\n\
         MaxRequestWorkers {}\nMinSpareThreads 1\nMaxSpareThreads {}\nMaxConnectionsPerChild 0",
        procs * threads,
        procs * threads
    );
    let _ = writeln!(c, "KeepAlive On\nMaxKeepAliveRequests 0\nKeepAliveTimeout 30\nTimeout 60\nGracefulShutdownTimeout 5");
    let _ = writeln!(c, "ServerTokens Prod\nFileETag MTime Size");
    // A crashed child leaves its core beside the logs (kept with HSYNC_KEEP_TMP).
    let _ = writeln!(c, "CoreDumpDirectory {}", q(dir));
    // MIME types as in the shared contract: .html, .txt (and .atom, .rss: feeds, .rss as
    // Debian's /etc/mime.types types it), else octet-stream.
    let types = dir.join("mime.types");
    let _ = std::fs::write(&types, "text/html html\ntext/plain txt\napplication/atom+xml atom\napplication/x-rss+xml rss\n");
    let _ = writeln!(c, "TypesConfig {}", q(&types));
    // The ratio, then (with the module) the coding: `coding=dcz`, `coding=hsync`, `coding=-`.
    let coding = if opts.module { " coding=%{hsync_coding}n" } else { "" };
    let _ =
        writeln!(c, "LogFormat \"%h \\\"%r\\\" %>s %b %{{hsync_ratio}}n{coding}\" hsync\nCustomLog {} hsync", q(&dir.join("access.log")));

    let _ = writeln!(c, "DocumentRoot {}", q(&docroot));
    let _ = writeln!(
        c,
        "<Directory {}>\n    Require all granted\n    AllowOverride None\n    Options None\n\
         \x20   <FilesMatch \"^(?!.*\\.(html|txt|atom|rss)$)\">\n        ForceType application/octet-stream\n    </FilesMatch>\n</Directory>",
        q(&docroot)
    );
    let _ = writeln!(c, "<Location />\n    Require all granted\n</Location>");

    // Response headers the filters must see: set before the handler runs.
    let lua = dir.join("headers.lua");
    let _ = std::fs::write(
        &lua,
        "function pre(r)\n  r.headers_out['Content-Encoding'] = 'gzip'\n  return apache2.DECLINED\nend\n\
         function nt(r)\n  r.headers_out['Cache-Control'] = 'no-transform'\n  return apache2.DECLINED\nend\n",
    );
    let _ = writeln!(c, "<Location /pre/>\n    LuaHookFixups {} pre\n</Location>", q(&lua));
    let _ = writeln!(c, "<Location /nt/>\n    LuaHookFixups {} nt\n</Location>", q(&lua));
    // /fresh/: an hour of freshness (mod_expires, a fixup: HSYNC sees it), as nginx's `expires 1h`.
    let _ = writeln!(c, "<Location /fresh/>\n    ExpiresActive On\n    ExpiresDefault \"access plus 1 hour\"\n</Location>");

    if let Some(up) = opts.upstream {
        let _ = writeln!(c, "ProxyPass /proxy/ http://{up}/\nProxyPassReverse /proxy/ http://{up}/");
    }

    if opts.module {
        match &extra.filters {
            Some(lines) => {
                let _ = writeln!(c, "{lines}");
            }
            None => {
                let _ = writeln!(c, "AddOutputFilterByType HSYNC text/html application/atom+xml application/x-rss+xml");
                if opts.gzip {
                    let _ = writeln!(c, "AddOutputFilterByType DEFLATE text/html");
                }
            }
        }
        if let Some(v) = opts.max_signature {
            let _ = writeln!(c, "HsyncMaxSignature {v}");
        }
        if !opts.vary {
            let _ = writeln!(c, "HsyncVary Off");
        }
        if opts.feed {
            let _ = writeln!(c, "HsyncFeed On");
        }
        if opts.feed_implicit {
            let _ = writeln!(c, "HsyncFeedImplicit On");
        }
        if let Some(v) = extra.min_length {
            let _ = writeln!(c, "HsyncMinLength {v}");
        }
        if let Some(v) = extra.level {
            let _ = writeln!(c, "HsyncCompressionLevel {v}");
        }
        if let Some(d) = &opts.dictionary {
            // The store in the instance's directory: created at startup and
            // handed to the children's user by the module.
            let size = d.store_max.map(|n| format!(" {n}")).unwrap_or_default();
            let _ = writeln!(c, "HsyncDictionary On\nHsyncDictionaryStore {}{size}", q(&dir.join("store")));
            if let Some(p) = &d.pattern {
                // httpd's quoting: only a quote is escaped; backslashes stay as they are.
                let _ = writeln!(c, "HsyncDictionaryMatch \"{}\"", p.replace('"', "\\\""));
            }
        }
        // /off/: no HSYNC (the chain is emptied there; DEFLATE comes back with gzip)
        let _ = writeln!(c, "<Location /off/>\n    FilterChain !");
        if opts.gzip {
            let _ = writeln!(c, "    AddOutputFilterByType DEFLATE text/html");
        }
        let _ = writeln!(c, "</Location>");
    } else if opts.gzip {
        let _ = writeln!(c, "AddOutputFilterByType DEFLATE text/html");
    }
    if let Some(cores) = std::env::var_os("HSYNC_APACHE_COREDIR") {
        // debugging crashed children: `ulimit -c unlimited` and a world-writable dir
        let _ = writeln!(c, "CoreDumpDirectory {}", q(Path::new(&cores)));
    }
    c.push_str(&extra.conf);
    c.push('\n');
    c
}

/// The worker children of a running httpd (for RSS measurements).
pub fn child_pids(parent: u32) -> Vec<u32> {
    let mut v = vec![];
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            // "pid (comm) state ppid ..."
            if let Some((_, rest)) = stat.rsplit_once(')') {
                if rest.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
                    v.push(pid);
                }
            }
        }
    }
    v
}

/// The parent httpd's pid, from the instance's pid file.
pub fn parent_pid(s: &RunningServer) -> Option<u32> {
    std::fs::read_to_string(s.dir.join("httpd.pid")).ok()?.trim().parse().ok()
}
