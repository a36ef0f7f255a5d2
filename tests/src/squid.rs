//! A real Squid (Debian's `squid`) as a shared cache in front of a test
//! server: an accelerator (reverse proxy) on a free loopback port whose
//! only parent is the origin, with a memory cache and nothing else on
//! disk. Its configuration, pid file, logs and stderr live in a temp dir;
//! [`Squid`] stops it on drop and, when the test failed, prints its
//! stderr and cache.log and keeps the directory.

use crate::{free_port, temp_dir};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = "/usr/sbin/squid";

/// Whether to run a Squid case: a skip notice when Squid is missing, a
/// failure instead when `HSYNC_REQUIRE_SQUID` is set (as `build/test` does).
pub fn available() -> bool {
    if Path::new(BIN).exists() {
        return true;
    }
    if std::env::var_os("HSYNC_REQUIRE_SQUID").is_some() {
        panic!("HSYNC_REQUIRE_SQUID is set but {BIN} is missing (build/deps installs it)");
    }
    eprintln!("SKIPPED: {BIN} not installed (apt-get install squid); set HSYNC_REQUIRE_SQUID to make this a failure");
    false
}

/// A running Squid; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Squid {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

/// The squid.conf of an accelerator on 127.0.0.1:`port` for `origin`.
pub fn config(dir: &Path, port: u16, origin: SocketAddr) -> String {
    let d = dir.display();
    let mut c = String::new();
    // A reverse proxy (as a CDN's edge is) for one origin, which gets every
    // request; no other host is ever looked up or contacted.
    let _ = writeln!(c, "http_port 127.0.0.1:{port} accel defaultsite={origin} no-vhost");
    let _ = writeln!(c, "cache_peer {} parent {} 0 no-query no-digest originserver name=origin", origin.ip(), origin.port());
    let _ = writeln!(c, "cache_peer_access origin allow all\nnever_direct allow all");
    let _ = writeln!(c, "http_access allow all\ncache allow all");
    // Memory only: without a cache_dir Squid (since 4.0) keeps objects in
    // cache_mem, which is what is used here; the pages are about 40 KB, under
    // the default 512 KB limit per object in memory, set here all the same.
    let _ = writeln!(c, "cache_mem 16 MB\nmaximum_object_size_in_memory 1 MB\nmemory_cache_mode always");
    // Everything the instance writes, in its own directory.
    let _ = writeln!(c, "pid_filename {d}/squid.pid\ncache_log {d}/cache.log\ncoredump_dir {d}\ncache_store_log none");
    let _ = writeln!(c, "netdb_filename none\nlogfile_rotate 0\ndigest_generation off");
    // One line per request: Squid's verdict (TCP_MISS, TCP_MEM_HIT, ...), the
    // status, and what decides the variant and the coding (the signature's
    // first 12 characters).
    let _ = writeln!(
        c,
        "logformat hsync %Ss/%03>Hs %rm %ru ae=\"%{{Accept-Encoding}}>h\" sig=%.12{{Hsync-Signature}}>h ce=\"%{{Content-Encoding}}<h\" vary=\"%{{Vary}}<h\""
    );
    let _ = writeln!(c, "access_log stdio:{d}/access.log hsync");
    // No helper processes, no ports beyond the one above, no network use:
    // DNS (never needed for an IP peer) would only ever go to loopback.
    let _ = writeln!(c, "pinger_enable off\nicp_port 0\nhtcp_port 0\nsnmp_port 0");
    let _ = writeln!(c, "dns_nameservers 127.0.0.1\nudp_incoming_address 127.0.0.1\nudp_outgoing_address 127.0.0.1");
    let _ = writeln!(c, "visible_hostname hsync-test-squid");
    // Stop on SIGTERM without waiting for clients (the default waits 30 s;
    // Squid still takes a second or two to exit).
    let _ = writeln!(c, "shutdown_lifetime 0 seconds");
    c
}

impl Squid {
    /// Starts Squid in the foreground in front of `origin` (panics with its
    /// stderr and cache.log if it does not come up).
    pub fn start(origin: SocketAddr) -> Squid {
        let dir = temp_dir("squid");
        // Started as root, Squid runs as its cache_effective_user (Debian's
        // `proxy`), which must write its logs and pid file here.
        let _ = std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777));
        let port = free_port();
        let conf = dir.join("squid.conf");
        std::fs::write(&conf, config(&dir, port, origin)).unwrap();
        let stderr = std::fs::File::create(dir.join("stderr.log")).unwrap();
        // -N: no daemon, one process; -d 1: important messages to stderr too.
        let child = Command::new(BIN)
            .arg("-N")
            .arg("-d")
            .arg("1")
            .arg("-f")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"));
        let mut s = Squid { port, dir, child: Some(child) };
        // Ready when it says it accepts connections (-d 1 puts that on
        // stderr); a probing connection would be logged as a failed request.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = s.child.as_mut().unwrap().try_wait().unwrap() {
                s.child = None;
                panic!("squid exited with {status} at startup:\n{}", s.diagnostics());
            }
            let stderr = std::fs::read_to_string(s.dir.join("stderr.log")).unwrap_or_default();
            if stderr.contains("Accepting reverse-proxy HTTP Socket connections") {
                return s;
            }
            if Instant::now() > deadline {
                panic!("squid did not start listening on {port}:\n{}", s.diagnostics());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The access log's lines so far (see the `hsync` logformat in [`config`]).
    pub fn access_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default().lines().map(String::from).collect()
    }

    /// Waits (briefly: Squid logs a request after answering it) until the
    /// access log has `n` lines, and returns them.
    pub fn wait_access_log(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines = self.access_log();
            if lines.len() >= n || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Squid's stderr and cache.log, for a failure message.
    pub fn diagnostics(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!(
            "--- squid stderr ---\n{}--- cache.log ---\n{}--- access.log ---\n{}",
            read("stderr.log"),
            read("cache.log"),
            read("access.log")
        )
    }

    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        // SAFETY: kill only sends a signal, to the process this handle started.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
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
}

impl Drop for Squid {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("squid in {} (kept):\n{}", self.dir.display(), self.diagnostics());
        } else if std::env::var_os("HSYNC_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
