//! `hsync check URL` (client/src/check/) against real servers: nginx and
//! Apache with the modules (every MUST passes, exit 0), servers without
//! them (a clean "not supported", exit 2), and deliberately broken
//! configurations, each caught by the check that names what it breaks.
//!
//! Runs `target/release/hsync` (`cargo build --release -p hsync` first,
//! or `HSYNC_BIN`). `HSYNC_SKIP_SERVER_TESTS` skips the real servers.

use hsync_core::http::{accepts, decode_signature_header};
use hsync_tests::feed::versions;
use hsync_tests::upstream::Upstream;
use hsync_tests::{corpus, hsync_bin, skipped, start, temp_dir, Options, RunningServer, ServerKind};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// What one `hsync check` run said.
struct Checked {
    code: i32,
    report: Value,
    text: String,
}

impl Checked {
    fn outcome(&self, id: &str) -> String {
        self.finding(id)["outcome"].as_str().unwrap_or("").to_string()
    }

    fn finding(&self, id: &str) -> &Value {
        let all = self.report["findings"].as_array().expect("findings");
        all.iter().find(|f| f["id"] == id).unwrap_or_else(|| panic!("no finding {id} in\n{}", self.text))
    }

    /// Ids of the findings with this outcome (and level, if given).
    fn ids(&self, outcome: &str, level: Option<&str>) -> Vec<String> {
        self.report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .filter(|f| f["outcome"] == outcome && level.is_none_or(|l| f["level"] == l))
            .map(|f| f["id"].as_str().unwrap().to_string())
            .collect()
    }

    fn assert_outcome(&self, id: &str, want: &str) {
        assert_eq!(self.outcome(id), want, "{id}: {}\n{}", self.finding(id)["detail"], self.text);
    }
}

/// Runs `hsync check` on `url` twice: as JSON (parsed) and as text (for messages).
fn check(url: &str, extra: &[&str]) -> Checked {
    let run = |json: bool| {
        let mut c = Command::new(hsync_bin());
        c.arg("check").arg(url).args(extra);
        if json {
            c.arg("--json");
        }
        c.output().expect("run hsync check")
    };
    let out = run(true);
    let code = out.status.code().expect("exit status");
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("--json output: {e}: {}", String::from_utf8_lossy(&out.stdout)));
    let text = String::from_utf8_lossy(&run(false).stdout).into_owned();
    eprintln!("{text}");
    assert_eq!(report["exit_code"].as_i64(), Some(code as i64), "{text}");
    Checked { code, report, text }
}

/// A document root: a corpus page at `/page.html`, `/fresh/page.html` and
/// `/nt/page.html`, the Atom feed at `/feed.atom`; removed on drop.
struct Site {
    dir: PathBuf,
}

impl Site {
    fn new() -> Site {
        let dir = temp_dir("check-docroot");
        let page = std::fs::read(corpus().join("blog-home/030.html")).expect("corpus page");
        for sub in ["", "fresh", "nt", "off"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
            std::fs::write(dir.join(sub).join("page.html"), &page).unwrap();
        }
        std::fs::write(dir.join("feed.atom"), versions().pop().unwrap()).unwrap();
        Site { dir }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if std::env::var_os("HSYNC_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn url(s: &RunningServer, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", s.port)
}

/// The timing check's options where it must pass: it runs, with a bound
/// that a loaded test machine does not reach for a server that does the
/// same work for both signatures (a timing is not a behaviour; the fake
/// server below that takes 30 ms more shows the check catches it).
const LOADED: &[&str] = &["--timing", "5", "--timing-bound", "50"];

/// Every MUST passes; the checks that need the modules' features ran.
fn modules_conform(kind: ServerKind) {
    let site = Site::new();
    let opts = Options { dictionary: Some(Default::default()), feed: true, ..Options::new(&site.dir) };
    let Some(s) = start(kind, &opts) else { return };

    let c = check(&url(&s, "/page.html"), LOADED);
    assert_eq!(c.code, 0, "{}", c.text);
    assert!(c.ids("fail", None).is_empty(), "{}", c.text);
    for id in [
        "hsync.offered",
        "delta.identical",
        "delta.edited",
        "delta.unrelated",
        "delta.sub-blocks",
        "delta.digest",
        "hsync.vary",
        "hsync.etag",
        "hsync.etag-weak",
        "plain.vary",
        "negotiate.q0",
        "negotiate.star",
        "signature.malformed",
        "signature.oversized",
        "signature.version",
        "signature.truncated",
        "signature.limits",
        "range.signed",
        "head.signed",
        "head.plain",
        "conditional.signed",
        "conditional.plain",
        "timing.hostile",
        // the page links the version the server stored: fetched, then dcz
        "dcz.dictionary",
        "dcz.offered",
        "dcz.decode",
        "dcz.vary",
        "dcz.unknown-dictionary",
    ] {
        c.assert_outcome(id, "pass");
    }
    c.assert_outcome("hsync.no-transform", "not_applicable");
    c.assert_outcome("feed.im-used", "not_applicable");

    // A fresh page is its own dictionary.
    let c = check(&url(&s, "/fresh/page.html"), &["--timing", "0"]);
    assert_eq!(c.code, 0, "{}", c.text);
    assert!(c.ids("fail", None).is_empty(), "{}", c.text);
    c.assert_outcome("dcz.decode", "pass");
    assert!(c.finding("dcz.dictionary")["detail"].as_str().unwrap().contains("the page itself"), "{}", c.text);

    // The feed: hsync and A-IM: feed.
    let c = check(&url(&s, "/feed.atom"), &["--timing", "0"]);
    assert_eq!(c.code, 0, "{}", c.text);
    assert!(c.ids("fail", None).is_empty(), "{}", c.text);
    for id in [
        "hsync.offered",
        "delta.edited",
        "feed.etaglet",
        "feed.not-modified",
        "feed.im-used",
        "feed.im-used-fields",
        "feed.whole-private",
        "feed.several-tags",
        "feed.q0",
        "feed.no-a-im",
        "feed.vary",
    ] {
        c.assert_outcome(id, "pass");
    }

    // no-transform: never coded, so "not supported" here, and said why.
    let c = check(&url(&s, "/nt/page.html"), &["--timing", "0"]);
    assert_eq!(c.code, 2, "{}", c.text);
    c.assert_outcome("hsync.no-transform", "pass");
    assert!(c.ids("fail", Some("MUST")).is_empty(), "{}", c.text);
    assert!(c.text.contains("no-transform"), "{}", c.text);
    s.finish();
}

/// Without the module: a clean "not supported" (exit 2), no failure of
/// any MUST, and the report says why (no sign of hsync in Vary).
fn without_module(kind: ServerKind) {
    let site = Site::new();
    let Some(s) = start(kind, &Options { module: false, ..Options::new(&site.dir) }) else { return };
    let c = check(&url(&s, "/page.html"), LOADED);
    assert_eq!(c.code, 2, "{}", c.text);
    assert_eq!(c.report["verdict"], "not_supported", "{}", c.text);
    assert_eq!(c.ids("fail", None), ["hsync.offered"], "{}", c.text);
    assert!(c.ids("pass", None).is_empty(), "nothing of hsync passes without it:\n{}", c.text);
    assert!(c.text.contains("does not name Hsync-Signature"), "{}", c.text);
    s.finish();
}

/// `hsync_vary off` / `HsyncVary Off`: ordinary responses lose the Vary
/// that §2.2 asks for (a SHOULD): caught, exit 0 all the same.
fn vary_off(kind: ServerKind) {
    let site = Site::new();
    let Some(s) = start(kind, &Options { vary: false, ..Options::new(&site.dir) }) else { return };
    let c = check(&url(&s, "/page.html"), &["--timing", "0"]);
    assert_eq!(c.code, 0, "{}", c.text);
    assert_eq!(c.ids("fail", None), ["plain.vary"], "{}", c.text);
    c.assert_outcome("hsync.vary", "pass");
    s.finish();
}

hsync_tests::server_cases!(modules_conform, without_module, vary_off);

/// The ids that failed, as a set.
fn failed(c: &Checked) -> BTreeSet<String> {
    c.ids("fail", None).into_iter().collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// Apache with `Header unset Vary` (mod_headers' filter runs after HSYNC):
/// every response loses its Vary, and a shared cache would hand deltas
/// to clients that sent no signature.
#[test]
fn apache_header_filter_drops_vary() {
    if skipped(ServerKind::Apache) {
        return;
    }
    let site = Site::new();
    let extra = hsync_tests::apache::Extra { conf: "Header unset Vary\n".into(), ..Default::default() };
    let opts = Options { dictionary: Some(Default::default()), feed: true, ..Options::new(&site.dir) };
    let s = hsync_tests::apache::start_with(&opts, &extra).unwrap_or_else(|e| panic!("{e}"));
    let c = check(&url(&s, "/page.html"), &["--timing", "0"]);
    assert_eq!(c.code, 1, "{}", c.text);
    let want = ["hsync.vary", "plain.vary", "head.signed", "conditional.signed", "dcz.vary", "dcz.plain-vary"];
    assert_eq!(failed(&c), set(&want), "{}", c.text);
    // The feed's 226 and whole responses lose theirs too.
    let c = check(&url(&s, "/feed.atom"), &["--timing", "0"]);
    assert_eq!(c.code, 1, "{}", c.text);
    for id in ["hsync.vary", "feed.im-used-fields", "feed.vary"] {
        c.assert_outcome(id, "fail");
    }
    c.assert_outcome("feed.im-used", "pass");
    s.finish();
}

/// nginx in front of nginx with the module, hiding Vary (`proxy_hide_header
/// Vary`): the deltas pass through, their Vary does not.
#[test]
fn nginx_proxy_hides_vary() {
    if skipped(ServerKind::Nginx) {
        return;
    }
    let site = Site::new();
    let Some(back) = start(ServerKind::Nginx, &Options::new(&site.dir)) else { return };
    let up = back.addr();
    let front_opts = Options { module: false, upstream: Some(up), ..Options::new(&site.dir) };
    let pass = format!("proxy_pass http://{up}/;");
    let front =
        hsync_tests::nginx::start_edited(&front_opts, |c| c.replace(&pass, &format!("{pass}\n            proxy_hide_header Vary;")));
    let c = check(&url(&front, "/proxy/page.html"), &["--timing", "0"]);
    assert_eq!(c.code, 1, "{}", c.text);
    assert_eq!(failed(&c), set(&["hsync.vary", "plain.vary", "head.signed", "conditional.signed"]), "{}", c.text);
    front.finish();
    back.finish();
}

// ------------------------------------------------- a deliberately broken server

/// What the fake server gets wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Nothing: a correct hsync server (so that every other fault's
    /// failures are that fault's).
    None,
    /// Never codes (a server without hsync).
    Never,
    /// The delta's END carries a digest of other bytes.
    WrongDigest,
    /// `hsync;q=0` counts as accepting hsync.
    AcceptsQ0,
    /// `*` counts as accepting hsync.
    AcceptsStar,
    /// An unusable signature is answered 400.
    RejectsBadSignature,
    /// A Range request with a signature gets the whole delta.
    CodesRanges,
    /// The delta keeps the identity response's strong ETag.
    StrongEtag,
    /// No Vary anywhere.
    NoVary,
    /// A HEAD with a signature gets the plain fields.
    PlainHead,
    /// A signature of 64-byte blocks with 12-bit weak sums (the hostile
    /// one) costs 30 ms more.
    SlowOnHostile,
}

/// A loopback hsync server written from docs/protocol.md with hsync-core,
/// serving `page` at every path, wrong in one way.
fn fake(fault: Fault, page: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().map_while(Result::ok) {
            let page = page.clone();
            std::thread::spawn(move || {
                let _ = serve_fake(conn, fault, &page);
            });
        }
    });
    addr
}

fn serve_fake(conn: TcpStream, fault: Fault, page: &[u8]) -> std::io::Result<()> {
    let mut r = BufReader::new(conn.try_clone()?);
    conn.set_nodelay(true)?;
    let mut w = std::io::BufWriter::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let method = line.split_whitespace().next().unwrap_or("").to_string();
        let mut h: Vec<(String, String)> = Vec::new();
        loop {
            let mut l = String::new();
            if r.read_line(&mut l)? == 0 || l == "\r\n" || l == "\n" {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                h.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        let ae = get("accept-encoding").unwrap_or("");
        let asks = if fault == Fault::Never {
            false
        } else {
            accepts(ae, "hsync")
                || (fault == Fault::AcceptsQ0 && ae.contains("hsync"))
                || (fault == Fault::AcceptsStar && ae.split(',').any(|c| c.trim() == "*"))
        };
        let sig = get("hsync-signature").filter(|_| asks).map(|v| decode_signature_header(v.as_bytes(), 4608));
        let range = get("range")
            .and_then(|v| v.strip_prefix("bytes=")?.split_once('-').map(|(a, b)| (a.parse::<usize>().ok(), b.parse::<usize>().ok())));
        let etag = "\"fake-1\"";
        let vary = if fault == Fault::NoVary { "" } else { "Vary: Accept-Encoding, Hsync-Signature\r\n" };
        let mut head = String::new();
        let mut body: Vec<u8> = Vec::new();
        let mut status = "200 OK";
        let coded = match &sig {
            Some(Err(_)) if fault == Fault::RejectsBadSignature => {
                status = "400 Bad Request";
                body = b"bad signature".to_vec();
                false
            }
            Some(Ok(s)) if range.is_none() || fault == Fault::CodesRanges => {
                if fault == Fault::SlowOnHostile && s.params.block_len == 64 && s.params.weak_bits == 12 {
                    std::thread::sleep(Duration::from_millis(30));
                }
                if !(method == "HEAD" && fault == Fault::PlainHead) {
                    body = hsync_core::delta(s, page).unwrap();
                    if fault == Fault::WrongDigest {
                        let n = body.len();
                        body[n - 1] ^= 1;
                    }
                    true
                } else {
                    false
                }
            }
            _ => false,
        };
        let tag = if coded && fault != Fault::StrongEtag { format!("W/{etag}") } else { etag.to_string() };
        let inm = get("if-none-match").is_some_and(|v| v.split(',').any(|t| t.trim().trim_start_matches("W/") == etag));
        if !coded && status == "200 OK" {
            if inm {
                status = "304 Not Modified";
            } else if let Some((Some(a), Some(b))) = range {
                status = "206 Partial Content";
                let b = b.min(page.len() - 1);
                head.push_str(&format!("Content-Range: bytes {a}-{b}/{}\r\n", page.len()));
                body = page[a..=b].to_vec();
            } else {
                body = page.to_vec();
            }
        } else if coded && inm {
            status = "304 Not Modified";
        }
        if coded {
            head.push_str("Content-Encoding: hsync\r\n");
        }
        if status.starts_with("304") {
            body.clear();
        }
        let len = if method == "HEAD" && coded {
            String::new()
        } else {
            format!("Content-Length: {}\r\n", if method == "HEAD" { page.len() } else { body.len() })
        };
        write!(w, "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nETag: {tag}\r\n{vary}{head}{len}\r\n")?;
        if method != "HEAD" && !status.starts_with("304") {
            w.write_all(&body)?;
        }
        w.flush()?;
    }
}

/// The fake server with `fault`, checked.
fn check_fake(fault: Fault, extra: &[&str]) -> Checked {
    let addr = fake(fault, Upstream::page(0));
    check(&format!("http://{addr}/page.html"), extra)
}

#[test]
fn fake_server_conforms_without_a_fault() {
    let c = check_fake(Fault::None, LOADED);
    assert_eq!(c.code, 0, "{}", c.text);
    assert!(failed(&c).is_empty(), "{}", c.text);
}

#[test]
fn broken_servers_are_caught() {
    let deltas = ["delta.identical", "delta.edited", "delta.unrelated", "delta.sub-blocks", "delta.digest", "signature.padding"];
    let cases: &[(Fault, &[&str], i32)] = &[
        (Fault::Never, &["hsync.offered"], 2),
        (Fault::WrongDigest, &deltas, 1),
        (Fault::AcceptsQ0, &["negotiate.q0"], 1),
        (Fault::AcceptsStar, &["negotiate.star"], 1),
        (
            Fault::RejectsBadSignature,
            &["signature.malformed", "signature.oversized", "signature.version", "signature.truncated", "signature.limits"],
            1,
        ),
        (Fault::CodesRanges, &["range.signed"], 1),
        (Fault::StrongEtag, &["hsync.etag", "hsync.etag-weak"], 1),
        (Fault::NoVary, &["hsync.vary", "plain.vary", "head.signed", "conditional.signed"], 1),
        (Fault::PlainHead, &["head.signed"], 0),
    ];
    for &(fault, want, code) in cases {
        let c = check_fake(fault, &["--timing", "0"]);
        assert_eq!(failed(&c), set(want), "{fault:?}:\n{}", c.text);
        assert_eq!(c.code, code, "{fault:?}:\n{}", c.text);
    }
    // The timing check: a server that takes 30 ms more for the hostile signature.
    let c = check_fake(Fault::SlowOnHostile, &["--timing", "5"]);
    assert_eq!(failed(&c), set(&["timing.hostile"]), "{}", c.text);
    assert_eq!(c.code, 0, "a SHOULD: {}", c.text);
}

#[test]
fn nothing_to_check() {
    let c = Command::new(hsync_bin()).args(["check", "http://127.0.0.1:1/"]).output().unwrap();
    assert_eq!(c.status.code(), Some(4), "{c:?}");
    let c = Command::new(hsync_bin()).args(["check", "ftp://example.org/"]).output().unwrap();
    assert_eq!(c.status.code(), Some(3), "{c:?}");
    let c = Command::new(hsync_bin()).args(["check", "--timing-bound"]).output().unwrap();
    assert_eq!(c.status.code(), Some(3), "{c:?}");
    let c = Command::new(hsync_bin()).args(["check", "--list"]).output().unwrap();
    assert_eq!(c.status.code(), Some(0), "{c:?}");
    assert!(String::from_utf8_lossy(&c.stdout).contains("hsync.vary"));
}
