//! https:// with real components (issue 17): nginx with TLS (a test CA and
//! server certificate made here with rcgen, HTTP/2 offered) and the hsync
//! module; `hsync get --cacert`; `hsync proxy --intercept-tls` driven by
//! curl and by headless Chromium.
//!
//! Needs the `hsync` binary (`cargo build --release -p hsync`; `HSYNC_BIN`
//! names another one), the nginx module (`build/modules nginx`) and curl;
//! the Chromium case needs /usr/bin/chromium (skipped without it unless
//! `HSYNC_REQUIRE_CHROMIUM` is set).

use hsync_tests::cdp::Browser;
use hsync_tests::proxy::HsyncProxy;
use hsync_tests::{chromium, corpus, hsync_bin, start, temp_dir, without_inserted_link, Options, RunningServer, ServerKind, Tls};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Successive versions of the corpus's blog home page.
fn versions() -> Vec<Vec<u8>> {
    (1..=3).map(|i| std::fs::read(corpus().join("blog-home").join(format!("{i:03}.html"))).unwrap()).collect()
}

/// A test CA and a certificate it signed for `localhost` and 127.0.0.1, as PEM files in `dir`.
struct TestPki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_pki(dir: &Path) -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "hsync test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "localhost");
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let p = TestPki { ca: dir.join("test-ca.pem"), cert: dir.join("server.pem"), key: dir.join("server-key.pem") };
    std::fs::write(&p.ca, ca_cert.pem()).unwrap();
    std::fs::write(&p.cert, cert.pem()).unwrap();
    std::fs::write(&p.key, key.serialize_pem()).unwrap();
    p
}

/// nginx with TLS (and HTTP/2) and the module, serving `docroot`.
struct Site {
    dir: PathBuf,
    pki: TestPki,
    server: RunningServer,
}

impl Site {
    /// `dictionary`: with `hsync_dictionary on` (dcz; pages then carry an inserted `<link>`).
    fn start(dictionary: bool) -> Option<Site> {
        let dir = temp_dir("tls-site");
        let docroot = dir.join("www");
        std::fs::create_dir_all(&docroot).unwrap();
        let pki = make_pki(&dir);
        let tls = Tls { cert: pki.cert.clone(), key: pki.key.clone(), http2: true };
        let server =
            start(ServerKind::Nginx, &Options { tls: Some(tls), dictionary: dictionary.then(Default::default), ..Options::new(&docroot) })?;
        Some(Site { dir, pki, server })
    }
    fn put(&self, name: &str, body: &[u8]) {
        let p = self.dir.join("www").join(name);
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, body).unwrap();
        // Dated in the past, as in client_dictionary.rs, so that versions differ in Last-Modified.
        let f = std::fs::OpenOptions::new().write(true).open(&tmp).unwrap();
        f.set_modified(std::time::SystemTime::now() - Duration::from_secs(3)).unwrap();
        std::fs::rename(&tmp, &p).unwrap();
    }
    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.server.port)
    }
    /// The access log's lines for `path`: (status, hsync-coded?, over h2?).
    fn logged(&self, path: &str) -> Vec<(String, bool, bool)> {
        let needle = format!("\"GET {path} ");
        self.server
            .access_log_text()
            .lines()
            .filter(|l| l.contains(&needle))
            .map(|l| {
                let after = l.rsplit_once('"').map(|(_, a)| a).unwrap_or("");
                let f: Vec<&str> = after.split_whitespace().collect();
                (f[0].to_string(), l.contains("coding=hsync"), l.ends_with("h2=h2"))
            })
            .collect()
    }
    /// Waits (briefly) until the access log has `n` lines for `path`.
    fn wait_logged(&self, path: &str, n: usize) -> Vec<(String, bool, bool)> {
        at_least(n, || self.logged(path))
    }
}

/// `lines()` once it has `n` lines, or what it has after 5 s (access logs
/// are written after the response).
fn at_least<T>(n: usize, lines: impl Fn() -> Vec<T>) -> Vec<T> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let l = lines();
        if l.len() >= n || Instant::now() > deadline {
            return l;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn get(args: &[&str], url: &str, out: &Path, cache: &Path) -> Output {
    let o = Command::new(hsync_bin())
        .args(["get", "-v", "--timeout", "10"])
        .args(args)
        .arg(url)
        .arg("-o")
        .arg(out)
        .arg("--cache")
        .arg(cache)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    eprintln!("hsync get {url}: {}\n{}", o.status, String::from_utf8_lossy(&o.stderr));
    o
}

#[test]
fn get_with_cacert_gets_a_delta_over_h2() {
    let Some(site) = Site::start(false) else { return };
    let v = versions();
    site.put("page.html", &v[0]);
    let (cache, out) = (site.dir.join("cache"), site.dir.join("out.html"));
    let ca = site.pki.ca.to_str().unwrap().to_string();
    let url = site.url("localhost", "/page.html");
    let o = get(&["--cacert", &ca], &url, &out, &cache);
    assert!(o.status.success());
    assert!(std::fs::read(&out).unwrap() == v[0]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("< HTTP/2.0 200 OK"), "h2 offered by nginx, taken by the client:\n{err}");
    site.put("page.html", &v[1]);
    let o = get(&["--cacert", &ca], &url, &out, &cache);
    assert!(o.status.success());
    assert!(std::fs::read(&out).unwrap() == v[1], "the new version, rebuilt");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("< content-encoding: hsync") && err.contains("[DELTA]"), "{err}");
    let l = site.wait_logged("/page.html", 2);
    assert_eq!(l.len(), 2, "{l:?}");
    assert!(!l[0].1 && l[1].1, "the second one hsync-coded: {l:?}");
    assert!(l[0].2 && l[1].2, "both over HTTP/2: {l:?}");
    site.server.finish();
}

#[test]
fn get_gets_dcz_over_h2() {
    let Some(site) = Site::start(true) else { return };
    let v = versions();
    let (cache, out) = (site.dir.join("cache"), site.dir.join("out.html"));
    let ca = site.pki.ca.to_str().unwrap().to_string();
    let url = site.url("localhost", "/page.html");
    let mut last = String::new();
    for (i, page) in v.iter().enumerate() {
        // Past the heuristic freshness of the copy held.
        std::thread::sleep(Duration::from_millis(1200));
        site.put("page.html", page);
        let o = get(&["--cacert", &ca], &url, &out, &cache);
        assert!(o.status.success());
        assert!(without_inserted_link(&std::fs::read(&out).unwrap()) == *page, "version {i}");
        last = String::from_utf8_lossy(&o.stderr).to_string();
    }
    assert!(last.contains("< content-encoding: dcz") && last.contains("[DCZ]"), "{last}");
    let l = site.server.access_log_text();
    let dcz: Vec<&str> = l.lines().filter(|l| l.contains("coding=dcz")).collect();
    assert_eq!(dcz.len(), 1, "{l}");
    assert!(dcz[0].ends_with("h2=h2"), "{l}");
    site.server.finish();
}

#[test]
fn get_without_the_ca_refuses_the_certificate() {
    let Some(site) = Site::start(false) else { return };
    site.put("page.html", b"<html><body>hello</body></html>");
    let (cache, out) = (site.dir.join("cache"), site.dir.join("out.html"));
    let o = get(&[], &site.url("localhost", "/page.html"), &out, &cache);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("invalid peer certificate") && err.contains("not trusted"), "{err}");
    assert!(!out.exists());
    // A --cacert that is not a certificate file is a clear usage error.
    let bogus = site.dir.join("bogus.pem");
    std::fs::write(&bogus, "nothing\n").unwrap();
    let o = get(&["--cacert", bogus.to_str().unwrap()], &site.url("localhost", "/page.html"), &out, &cache);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no PEM certificate"));
    assert!(site.logged("/page.html").is_empty(), "no request reached nginx");
}

/// `hsync proxy` run as a user would, with its stderr kept.
struct Proxy {
    p: HsyncProxy,
    addr: String,
    dir: PathBuf,
}

impl Proxy {
    fn start(dir: &Path, args: &[&str]) -> Proxy {
        std::fs::create_dir_all(dir).unwrap();
        let mut all = vec!["--timeout".into(), "5".into(), "--cache".into(), dir.join("cache").into_os_string()];
        all.extend(["--ca-dir".into(), dir.join("ca").into_os_string(), "--access-log".into(), dir.join("access.log").into_os_string()]);
        all.extend(args.iter().map(std::ffi::OsString::from));
        let p = HsyncProxy::start(all);
        Proxy { addr: p.addr.to_string(), p, dir: dir.to_path_buf() }
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca").join("ca.pem")
    }

    /// The access lines for `url`: (status, result).
    fn logged(&self, url: &str) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        text.lines()
            .map(|l| l.split(' ').collect::<Vec<_>>())
            .filter(|f| f.len() == 9 && f[3] == url)
            .map(|f| (f[4].to_string(), f[5].to_string()))
            .collect()
    }

    fn wait_logged(&self, url: &str, n: usize) -> Vec<(String, String)> {
        at_least(n, || self.logged(url))
    }

    /// The SPKI hash printed at start (for Chromium's --ignore-certificate-errors-spki-list).
    fn spki(&self) -> String {
        // Printed right after the "listening on" line: wait for it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = {
                let s = self.p.stderr();
                s.lines().find_map(|l| l.split("--ignore-certificate-errors-spki-list=").nth(1)).map(|h| h.trim().to_string())
            };
            match found {
                Some(h) => return h,
                None if Instant::now() > deadline => panic!("no SPKI hash in the start lines"),
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("access log:\n{}", std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default());
        }
    }
}

/// `curl -x PROXY --cacert CA URL`: (exit success, HTTP status, body, stderr).
fn curl(proxy: &str, ca: &Path, url: &str) -> (bool, u16, Vec<u8>, String) {
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-w", "\n%{http_code}", "-x"])
        .arg(format!("http://{proxy}"))
        .arg("--cacert")
        .arg(ca)
        .arg(url)
        .env_remove("no_proxy")
        .env_remove("NO_PROXY")
        .stdin(Stdio::null())
        .output()
        .expect("curl");
    let mut body = o.stdout;
    let nl = body.iter().rposition(|&b| b == b'\n').unwrap_or(0);
    let code = String::from_utf8_lossy(&body[nl..]).trim().parse().unwrap_or(0);
    body.truncate(nl);
    (o.status.success(), code, body, String::from_utf8_lossy(&o.stderr).to_string())
}

#[test]
fn proxy_intercepts_listed_hosts_and_gets_deltas() {
    let Some(site) = Site::start(false) else { return };
    let v = versions();
    site.put("page.html", &v[0]);
    let port = site.server.port.to_string();
    let p = Proxy::start(
        &site.dir.join("proxy"),
        &["--intercept-tls", "localhost", "--connect-port", &port, "--cacert", site.pki.ca.to_str().unwrap()],
    );
    // The CA: created once, its key readable by its owner only.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&p.dir.join("ca").join("ca-key.pem")), 0o600);
    assert_eq!(mode(&p.dir.join("ca")), 0o700);
    p.spki();
    assert!(p.p.stderr().contains("certutil -d sql:"), "how to trust it is printed");
    let url = site.url("localhost", "/page.html");
    for (i, page) in v.iter().enumerate() {
        site.put("page.html", page);
        let (ok, code, body, err) = curl(&p.addr, &p.ca(), &url);
        assert!(ok && code == 200, "{i}: {code} {err}");
        assert!(body == *page, "version {i} served whole and exact");
    }
    let l = p.wait_logged(&url, 3);
    assert_eq!(l.iter().map(|(_, r)| r.as_str()).collect::<Vec<_>>(), ["MISS", "DELTA", "DELTA"], "{l:?}");
    let n = site.wait_logged("/page.html", 3);
    assert!(!n[0].1 && n[1].1 && n[2].1, "deltas from nginx: {n:?}");
    assert!(n.iter().all(|x| x.2), "the proxy spoke HTTP/2 to nginx: {n:?}");
    // The http:// URL of the same host is another entry: nothing cached for it.
    let status = Command::new("curl").args(["-sS", &format!("http://{}/status.json", p.addr)]).output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let urls: Vec<&str> = status["entries"].as_array().unwrap().iter().map(|e| e["url"].as_str().unwrap()).collect();
    assert_eq!(urls, [url.as_str()]);

    // A host not listed is tunnelled: the client sees the origin's own
    // certificate (trusted with the test CA, refused with the proxy's).
    let other = site.url("127.0.0.1", "/page.html");
    let (ok, code, body, err) = curl(&p.addr, &site.pki.ca, &other);
    assert!(ok && code == 200 && body == v[2], "{code} {err}");
    let (ok, _, _, err) = curl(&p.addr, &p.ca(), &other);
    assert!(!ok, "the proxy's CA does not vouch for a tunnelled host: {err}");
    let tunnel = format!("127.0.0.1:{port}");
    let l = p.wait_logged(&tunnel, 2);
    assert!(l.iter().all(|(s, r)| s == "200" && r == "PASS"), "{l:?}");
    assert!(p.logged(&other).is_empty(), "nothing inside a tunnel is seen");

    // The CA is made once: a second proxy on the same directory uses it.
    let spki = p.spki();
    drop(p);
    let p2 = Proxy::start(&site.dir.join("proxy"), &["--intercept-tls", "localhost", "--connect-port", &port]);
    assert_eq!(p2.spki(), spki);
    assert!(!p2.p.stderr().contains("created the local CA"));
    site.server.finish();
}

#[test]
fn proxy_refuses_an_untrusted_origin() {
    let Some(site) = Site::start(false) else { return };
    site.put("page.html", &versions()[0]);
    let port = site.server.port.to_string();
    // No --cacert: the test CA is not in the system's store.
    let p = Proxy::start(&site.dir.join("proxy"), &["--intercept-tls", "*", "--connect-port", &port]);
    let url = site.url("localhost", "/page.html");
    let (ok, code, body, err) = curl(&p.addr, &p.ca(), &url);
    assert!(ok, "{err}");
    assert_eq!(code, 502);
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("certificate is not trusted"), "{body}");
    let status = Command::new("curl").args(["-sS", &format!("http://{}/status.json", p.addr)]).output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["entry_count"], 0, "nothing cached");
    assert!(site.logged("/page.html").is_empty(), "no request sent over the refused connection");
}

#[test]
fn chromium_through_the_proxy_gets_deltas_over_https() {
    if !chromium::available() {
        return;
    }
    let Some(site) = Site::start(false) else { return };
    let v = versions();
    site.put("page.html", &v[0]);
    let port = site.server.port.to_string();
    let p = Proxy::start(
        &site.dir.join("proxy"),
        &["--intercept-tls", "localhost", "--connect-port", &port, "--cacert", site.pki.ca.to_str().unwrap()],
    );
    let browser = Browser::start_with(
        &site.dir.join("profile"),
        &[
            format!("--proxy-server=http://{}", p.addr),
            // Chromium never sends loopback through a proxy unless told to.
            "--proxy-bypass-list=<-loopback>".to_string(),
            format!("--ignore-certificate-errors-spki-list={}", p.spki()),
        ],
    );
    let mut page = browser.page();
    page.call("Network.setCacheDisabled", serde_json::json!({"cacheDisabled": true}));
    let url = site.url("localhost", "/page.html");
    for (i, want) in v.iter().enumerate().take(2) {
        site.put("page.html", want);
        let l = page.navigate(&url);
        assert_eq!(l.status, 200, "{i}: {:?}", l.headers);
        assert!(l.body == *want, "{i}: the page as the browser decoded it");
        assert_eq!(l.header("x-hsync-cache"), Some(if i == 0 { "MISS" } else { "DELTA" }), "{i}: {:?}", l.headers);
    }
    let l = p.wait_logged(&url, 2);
    assert_eq!(l.iter().map(|(_, r)| r.as_str()).collect::<Vec<_>>(), ["MISS", "DELTA"], "{l:?}");
    let n = site.wait_logged("/page.html", 2);
    assert!(n[1].1, "an hsync delta from nginx: {n:?}");
    drop(page);
    drop(browser);
    site.server.finish();
}

#[test]
fn check_over_h2_with_cacert() {
    let Some(site) = Site::start(false) else { return };
    site.put("page.html", &versions()[0]);
    let o = Command::new(hsync_bin())
        .args(["check", "--timing", "0", "--cacert", site.pki.ca.to_str().unwrap(), &site.url("localhost", "/page.html")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{text}\n{}", String::from_utf8_lossy(&o.stderr));
    let l = site.logged("/page.html");
    assert!(!l.is_empty() && l.iter().all(|x| x.2), "every request of the check over HTTP/2: {l:?}");
    site.server.finish();
}
