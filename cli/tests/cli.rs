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
}
