//! The `hsync` command: rdiff-style round trips, stdin/stdout, and one-line errors.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn hsync() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hsync"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hsync-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn corpus(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus").join(rel)
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "failed: {}", String::from_utf8_lossy(&o.stderr));
    o
}

fn one_line_error(o: &Output) {
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(e.trim_end().lines().count(), 1, "expected one line, got: {e}");
    assert!(e.starts_with("hsync: "), "{e}");
}

#[test]
fn signature_delta_patch_round_trip() {
    let d = tmp("rt");
    let (old, new) = (corpus("blog-home/029.html"), corpus("blog-home/030.html"));
    let p = |n: &str| d.join(n);
    ok(hsync().arg("signature").arg(&old).arg(p("sig")).output().unwrap());
    ok(hsync().arg("delta").arg(p("sig")).arg(&new).arg(p("delta")).output().unwrap());
    ok(hsync().arg("patch").arg(&old).arg(p("delta")).arg(p("out")).output().unwrap());
    assert_eq!(std::fs::read(p("out")).unwrap(), std::fs::read(&new).unwrap());
    let sig = std::fs::metadata(p("sig")).unwrap().len();
    let delta = std::fs::metadata(p("delta")).unwrap().len();
    assert!(sig <= 4608 && delta < 5_000, "sig {sig} delta {delta}");
}

#[test]
fn dash_means_stdin_and_stdout() {
    let d = tmp("dash");
    let old = std::fs::read(corpus("pages/igvita/v1.html")).unwrap();
    let new_path = corpus("pages/igvita/v2.html");
    let mut c = hsync().args(["signature", "-", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    c.stdin.take().unwrap().write_all(&old).unwrap();
    let sig = ok(c.wait_with_output().unwrap()).stdout;
    std::fs::write(d.join("old"), &old).unwrap();
    std::fs::write(d.join("sig"), &sig).unwrap();
    let delta = ok(hsync().arg("delta").arg(d.join("sig")).arg(&new_path).arg("-").output().unwrap()).stdout;
    let mut c = hsync().arg("patch").arg(d.join("old")).args(["-", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    c.stdin.take().unwrap().write_all(&delta).unwrap();
    let out = ok(c.wait_with_output().unwrap()).stdout;
    assert_eq!(out, std::fs::read(&new_path).unwrap());
}

#[test]
fn bad_input_gives_one_line_and_no_output_file() {
    let d = tmp("bad");
    let f = |n: &str| d.join(n);
    std::fs::write(f("old"), b"old content of the page").unwrap();
    std::fs::write(f("junk"), b"this is not a delta").unwrap();
    let o = hsync().arg("patch").arg(f("old")).arg(f("junk")).arg(f("out")).output().unwrap();
    one_line_error(&o);
    assert!(!Path::new(&f("out")).exists(), "a failed patch must not leave a file");
    let o = hsync().arg("delta").arg(f("junk")).arg(f("old")).arg(f("d")).output().unwrap();
    one_line_error(&o);
    let o = hsync().arg("signature").arg(f("missing")).arg(f("s")).output().unwrap();
    one_line_error(&o);
    // A delta for another base.
    ok(hsync().arg("signature").arg(f("old")).arg(f("sig")).output().unwrap());
    std::fs::write(f("new"), b"new content of the page").unwrap();
    ok(hsync().arg("delta").arg(f("sig")).arg(f("new")).arg(f("delta")).output().unwrap());
    std::fs::write(f("other"), b"another base").unwrap();
    let o = hsync().arg("patch").arg(f("other")).arg(f("delta")).arg(f("out")).output().unwrap();
    one_line_error(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("different base"));
}

#[test]
fn help_for_every_command() {
    for c in ["signature", "delta", "patch", "get", "proxy"] {
        let o = ok(hsync().args([c, "--help"]).output().unwrap());
        assert!(String::from_utf8_lossy(&o.stdout).contains("Usage"), "{c}");
    }
    let o = hsync().arg("nope").output().unwrap();
    assert!(!o.status.success());
    let o = ok(hsync().args(["proxy", "--help"]).output().unwrap());
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(help.contains("--access-log <FILE>") && help.contains("--log-level <LEVEL>") && help.contains("debug"), "{help}");
}

#[test]
fn proxy_refuses_a_bad_log_level() {
    let o = hsync().args(["proxy", "--log-level", "loud"]).output().unwrap();
    assert!(!o.status.success());
    let o = hsync().args(["proxy", "--listen", "127.0.0.1:1"]).env("HSYNC_LOG_LEVEL", "loud").output().unwrap();
    one_line_error(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("HSYNC_LOG_LEVEL"));
}

#[test]
fn output_through_a_symlink_or_fifo_is_written_not_replaced() {
    // `-o /dev/null` once replaced the device with a regular file (the
    // output is renamed into place); a symlink or FIFO shows the same
    // without touching /dev.
    let d = tmp("links");
    let old = corpus("blog-home/029.html");
    let target = d.join("target.sig");
    let link = d.join("link.sig");
    let _ = std::fs::remove_file(&link);
    std::fs::write(&target, b"stale").unwrap();
    std::os::unix::fs::symlink(&target, &link).unwrap();
    // A fixed seed: the same input then gives the same bytes.
    ok(hsync().args(["signature", "--seed", "7"]).arg(&old).arg(&link).output().unwrap());
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced");
    let direct = d.join("direct.sig");
    ok(hsync().args(["signature", "--seed", "7"]).arg(&old).arg(&direct).output().unwrap());
    assert_eq!(std::fs::read(&target).unwrap(), std::fs::read(&direct).unwrap());

    let fifo = d.join("fifo");
    let _ = std::fs::remove_file(&fifo);
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path; mkfifo only creates a file.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    ok(hsync().args(["signature", "--seed", "7"]).arg(&old).arg(&fifo).output().unwrap());
    assert_eq!(reader.join().unwrap(), std::fs::read(&direct).unwrap());
    let ft = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&ft), "the FIFO was replaced");
}

/// `a` then `b`, repeated up to `len` bytes: a large instance made of real
/// successive versions.
fn cycled(a: &[u8], b: &[u8], len: usize) -> Vec<u8> {
    a.iter().chain(b).cycle().take(len).copied().collect()
}

#[test]
fn large_patch_streams_to_a_file_only_when_verified() {
    // 3 MB: the old instance is mapped and the new one written as it is
    // rebuilt, through a temporary file renamed only once the digest matched.
    let d = tmp("large");
    let f = |n: &str| d.join(n);
    let page = std::fs::read(corpus("blog-home/029.html")).unwrap();
    let next = std::fs::read(corpus("blog-home/030.html")).unwrap();
    let old = cycled(&page, &next, 3 << 20);
    let mut new = old.clone();
    new.splice(1_000_000..1_000_100, b"an edit in the middle".iter().copied());
    new.extend_from_slice(&next);
    std::fs::write(f("old"), &old).unwrap();
    std::fs::write(f("new"), &new).unwrap();
    ok(hsync().arg("signature").arg(f("old")).arg(f("sig")).output().unwrap());
    ok(hsync().arg("delta").arg(f("sig")).arg(f("new")).arg(f("delta")).output().unwrap());
    ok(hsync().arg("patch").arg(f("old")).arg(f("delta")).arg(f("out")).output().unwrap());
    assert!(std::fs::read(f("out")).unwrap() == new, "rebuilt instance differs");
    // A flipped digest bit: one-line error, the existing output untouched,
    // no temporary file left, nothing on stdout.
    let mut bad = std::fs::read(f("delta")).unwrap();
    *bad.last_mut().unwrap() ^= 1;
    std::fs::write(f("bad"), &bad).unwrap();
    std::fs::write(f("out"), b"previous content").unwrap();
    let o = hsync().arg("patch").arg(f("old")).arg(f("bad")).arg(f("out")).output().unwrap();
    one_line_error(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("digest mismatch"));
    assert_eq!(std::fs::read(f("out")).unwrap(), b"previous content");
    let left: Vec<_> =
        std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n.to_string_lossy().contains("tmp")).collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    let o = hsync().arg("patch").arg(f("old")).arg(f("bad")).arg("-").output().unwrap();
    one_line_error(&o);
    assert!(o.stdout.is_empty(), "unverified bytes reached stdout");
}

#[test]
fn large_delta_is_the_same_on_one_thread_or_two_and_from_stdin() {
    // 4 MB of successive page versions with scattered edits: a mapped file
    // (searched in place), with one thread or two, and the same bytes
    // through stdin (read in pieces) all rebuild the new instance; the
    // thread count never changes the delta.
    let d = tmp("large-delta");
    let f = |n: &str| d.join(n);
    let a = std::fs::read(corpus("atom-feed/029.xml")).unwrap();
    let b = std::fs::read(corpus("atom-feed/030.xml")).unwrap();
    let old = cycled(&a, &b, 4 << 20);
    let mut new = old.clone();
    for i in 0..30 {
        let at = (i * 131_071 + 17) % new.len();
        new.splice(at..at + 10, format!("edit number {i}").bytes());
    }
    std::fs::write(f("old"), &old).unwrap();
    std::fs::write(f("new"), &new).unwrap();
    ok(hsync().arg("signature").arg(f("old")).arg(f("sig")).output().unwrap());
    let mut deltas = Vec::new();
    for t in ["1", "2"] {
        let name = format!("delta{t}");
        ok(hsync().args(["delta", "-T", t]).arg(f("sig")).arg(f("new")).arg(f(&name)).output().unwrap());
        deltas.push(std::fs::read(f(&name)).unwrap());
    }
    assert!(deltas[0] == deltas[1], "-T1 and -T2 deltas differ");
    let mut c = hsync().arg("delta").arg(f("sig")).arg("-").arg(f("piped")).stdin(Stdio::piped()).spawn().unwrap();
    c.stdin.take().unwrap().write_all(&new).unwrap();
    assert!(c.wait().unwrap().success());
    for delta in ["delta1", "piped"] {
        ok(hsync().arg("patch").arg(f("old")).arg(f(delta)).arg(f("out")).output().unwrap());
        assert!(std::fs::read(f("out")).unwrap() == new, "{delta}: rebuilt instance differs");
    }
    let o = hsync().args(["delta", "-T", "3"]).arg(f("sig")).arg(f("new")).arg(f("x")).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("1..=2"));
}

fn attack(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/attack/xxh3-collision").join(name)
}

/// tests/vectors/attack/xxh3-collision: `b.html` differs from `a.html` in
/// 8 bytes and shares its XXH3-128 and (unseeded) block checks. Before
/// signature version 3 and the BLAKE3 digest, these three commands exited
/// 0 and wrote `a.html`. Now the client gets `b.html`, or (when a 4-bit
/// check passes by chance) a digest error and no output: never `a.html`.
#[test]
fn colliding_pair_rebuilds_the_new_page_never_the_old() {
    let d = tmp("collide");
    let (a, b) = (attack("a.html"), attack("b.html"));
    let (want, old) = (std::fs::read(&b).unwrap(), std::fs::read(&a).unwrap());
    let mut rebuilt = 0;
    for round in 0..8 {
        let out = d.join(format!("out{round}"));
        ok(hsync().arg("signature").arg(&a).arg(d.join("sig")).output().unwrap());
        ok(hsync().arg("delta").arg(d.join("sig")).arg(&b).arg(d.join("delta")).output().unwrap());
        let o = hsync().arg("patch").arg(&a).arg(d.join("delta")).arg(&out).output().unwrap();
        if o.status.success() {
            let got = std::fs::read(&out).unwrap();
            assert!(got != old, "round {round}: the client kept the old page");
            assert!(got == want, "round {round}: rebuilt something else");
            rebuilt += 1;
        } else {
            one_line_error(&o);
            assert!(String::from_utf8_lossy(&o.stderr).contains("digest mismatch"));
            assert!(!out.exists(), "nothing unverified is left behind");
        }
    }
    assert!(rebuilt >= 5, "{rebuilt} of 8");
}

/// A delta of a few KB that names the same old blocks over and over
/// would write gigabytes: `--max-output` (8 GiB by default) refuses it.
#[test]
fn patch_refuses_output_beyond_its_limit() {
    let d = tmp("maxout");
    let (old, new) = (corpus("blog-home/029.html"), corpus("blog-home/030.html"));
    ok(hsync().arg("signature").arg(&old).arg(d.join("sig")).output().unwrap());
    ok(hsync().arg("delta").arg(d.join("sig")).arg(&new).arg(d.join("delta")).output().unwrap());
    let len = std::fs::metadata(&new).unwrap().len();
    let o = hsync()
        .arg("patch")
        .arg("--max-output")
        .arg((len - 1).to_string())
        .arg(&old)
        .arg(d.join("delta"))
        .arg(d.join("out"))
        .output()
        .unwrap();
    one_line_error(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("limit exceeded"), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!d.join("out").exists());
    ok(hsync().arg("patch").arg("--max-output").arg(len.to_string()).arg(&old).arg(d.join("delta")).arg(d.join("out")).output().unwrap());
}
