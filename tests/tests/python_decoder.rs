//! The second implementation, `tools/python/hsync_spec.py`, written from
//! docs/protocol.md alone (issue 16), against everything the Rust side
//! makes: the test vectors, the CLI's signatures (byte for byte, same seed),
//! the CLI's encoder with the Python implementation's sub-block signatures,
//! and the deltas real nginx and Apache modules send for the Python
//! implementation's signatures over the corpus (so the servers validate
//! Python signatures and Python decodes their deltas).
//!
//! Needs `/usr/bin/python3` with python3-xxhash and python3-zstandard
//! (build/deps): skipped with a notice without them, a failure when
//! `HSYNC_REQUIRE_PYTHON` is set. The CLI cases need `cargo build --release
//! -p hsync`, the server cases `build/modules`.

use base64::Engine as _;
use hsync_tests::http::{self, Response};
use hsync_tests::pyspec::PySpec;
use hsync_tests::{corpus, hsync_bin, root, start, temp_dir, Options, ServerKind};
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::process::Command;

fn read(p: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(p.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", p.as_ref().display()))
}

/// A random seed, as a client draws one per request (§2.1).
fn random_seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x6873796e63);
    h.finish()
}

/// Deterministic bytes (xorshift64*), not too compressible.
fn pseudo_random(len: usize, mut x: u64) -> Vec<u8> {
    x |= 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545F4914F6CDD1D) >> 56) as u8
        })
        .collect()
}

/// A varint at the start of `b` (value, length): enough to read headers.
fn varint(b: &[u8]) -> (u64, usize) {
    let mut v = 0;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return (v, i + 1);
        }
    }
    panic!("bad varint");
}

/// The block length a signature names.
fn sig_block_len(sig: &[u8]) -> u64 {
    varint(&sig[14..]).0
}

/// Runs the CLI; panics with its stderr when it fails.
fn hsync(args: &[&Path]) {
    let o = Command::new(hsync_bin()).args(args).output().expect("hsync");
    assert!(o.status.success(), "hsync {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn vectors() {
    let Some(py) = PySpec::find() else { return };
    let dir = root().join("tests").join("vectors");
    let o = py.run(&[Path::new("vectors"), &dir]);
    let out = String::from_utf8_lossy(&o.stdout);
    eprintln!("{out}");
    assert!(o.status.success() && out.contains("all vectors pass"), "hsync_spec.py vectors:\n{out}{}", String::from_utf8_lossy(&o.stderr));
    // The command line too: every bad delta rejected, exit status 1, its kind named.
    let mut bad = 0;
    for e in std::fs::read_dir(dir.join("bad")).unwrap() {
        let case = e.unwrap().path();
        let expect = String::from_utf8(read(case.join("expect"))).unwrap().trim().to_string();
        match py.patch(&read(case.join("old")), &read(case.join("delta"))) {
            Ok(_) => panic!("{}: accepted", case.display()),
            Err(msg) => assert!(msg.contains(&format!(": {expect}: ")), "{}: want {expect}, got {msg}", case.display()),
        }
        bad += 1;
    }
    assert!(bad >= 7, "only {bad} bad vectors");
}

#[test]
fn signatures_match_rust() {
    let Some(py) = PySpec::find() else { return };
    let dir = temp_dir("pysig");
    let mut inputs: Vec<(String, Vec<u8>)> =
        ["blog-home/001.html", "atom-feed/001.xml", "pages/cnn/v1.html", "pages/igvita/v1.html", "pages/wikipedia-obama/v1.html"]
            .iter()
            .map(|f| (f.to_string(), read(corpus().join(f))))
            .collect();
    // Edges of the block rule, and lengths past 5.2 MB, where §3.3 step 4 grows blocks.
    for len in [0, 1, 13, 63, 64, 65, 1000, 4097, 100_000, 5_500_000, 10_000_000] {
        inputs.push((format!("{len} bytes"), pseudo_random(len, len as u64)));
    }
    for (i, (name, data)) in inputs.iter().enumerate() {
        let seed = if i == 0 { u64::MAX } else { random_seed() };
        let (old, sig) = (dir.join(format!("{i}.old")), dir.join(format!("{i}.sig")));
        std::fs::write(&old, data).unwrap();
        hsync(&[Path::new("signature"), Path::new("--seed"), Path::new(&seed.to_string()), &old, &sig]);
        let rust = read(&sig);
        let python = py.signature(data, seed, None);
        assert!(
            python == rust,
            "{name}, seed {seed}: Python's signature ({} bytes) differs from Rust's ({} bytes)",
            python.len(),
            rust.len()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Python implementation's sub-block checks (§3.4) are the ones the Rust
/// encoder computes: one byte changed in a block costs one sub-block of
/// literal bytes, not the block.
#[test]
fn sub_blocks_with_rust_encoder() {
    let Some(py) = PySpec::find() else { return };
    let dir = temp_dir("pysub");
    let old = read(corpus().join("blog-home/029.html"));
    let mut new = old.clone();
    new[old.len() / 2 + 100] ^= 0x20;
    std::fs::write(dir.join("new"), &new).unwrap();
    for (sub_log, sub_bits) in [(1, 16), (2, 16), (3, 8)] {
        let sig = py.signature(&old, random_seed(), Some((sub_log, sub_bits)));
        let block_len = sig_block_len(&sig);
        std::fs::write(dir.join("sig"), &sig).unwrap();
        hsync(&[Path::new("delta"), &dir.join("sig"), &dir.join("new"), &dir.join("delta")]);
        let (rebuilt, stats) = py.patch(&old, &read(dir.join("delta"))).unwrap_or_else(|e| panic!("sub {sub_log}: {e}"));
        assert!(rebuilt == new, "sub {sub_log}: rebuilt differs");
        assert_eq!(stats.unit_len, block_len >> sub_log, "sub {sub_log}: the delta's unit is the sub-block");
        assert!(stats.inserted < block_len, "sub {sub_log}: {stats:?}: the edited block was not partly copied (block_len {block_len})");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every pair of neighbouring versions in the corpus, as paths relative to it.
fn corpus_pairs() -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for dir in ["blog-home", "atom-feed", "pages/cnn", "pages/wikipedia-obama", "pages/igvita"] {
        let mut files: Vec<String> =
            std::fs::read_dir(corpus().join(dir)).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        files.sort();
        for w in files.windows(2) {
            pairs.push((format!("{dir}/{}", w[0]), format!("{dir}/{}", w[1])));
        }
    }
    assert!(pairs.len() >= 60, "corpus incomplete: {} pairs", pairs.len());
    pairs
}

/// GET `path` with the Python implementation's signature of `old`.
fn python_get(port: u16, path: &str, sig: &[u8]) -> Response {
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig);
    http::get(port, path, &[("Accept-Encoding", "hsync"), ("Hsync-Signature", &header)])
}

/// The corpus through a real server: Python signs, the module encodes,
/// Python decodes; with sub-blocks too.
fn server_deltas(kind: ServerKind) {
    let Some(py) = PySpec::find() else { return };
    let docroot = temp_dir("pydocroot");
    let pairs = corpus_pairs();
    for (i, (_, new)) in pairs.iter().enumerate() {
        std::fs::write(docroot.join(format!("c{i}.html")), read(corpus().join(new))).unwrap();
    }
    // One byte changed in the middle of a block, for sub-blocks.
    let page = read(corpus().join("blog-home/030.html"));
    let mut edited = page.clone();
    edited[page.len() / 2 + 100] ^= 0x20;
    std::fs::write(docroot.join("edited.html"), &edited).unwrap();
    let Some(s) = start(kind, &Options::new(&docroot)) else { return };

    let (mut sent, mut full, mut most_chunks) = (0, 0, 0);
    for (i, (old, new)) in pairs.iter().enumerate() {
        let (old_b, new_b) = (read(corpus().join(old)), read(corpus().join(new)));
        let seed = random_seed();
        // Sub-blocks on every fourth request, where they fit the servers' limit.
        let sub = Some((2, 16)).filter(|_| i % 4 == 1 && old_b.len() < 400_000);
        let sig = py.signature(&old_b, seed, sub);
        assert!(sig.len() <= 4608, "{old}: a {}-byte signature", sig.len());
        let r = python_get(s.port, &format!("/c{i}.html"), &sig);
        let what = format!("{} {old} -> {new} (seed {seed}, sub {sub:?})", kind.name());
        assert_eq!(r.status, 200, "{what}: status");
        assert_eq!(
            r.content_encoding(),
            Some("hsync"),
            "{what}: the server did not take the Python signature; error log:\n{}",
            s.error_log_text()
        );
        let (rebuilt, stats) = py.patch(&old_b, &r.body).unwrap_or_else(|e| panic!("{what}: Python rejects the server's delta: {e}"));
        assert!(rebuilt == new_b, "{what}: rebuilt page differs");
        if let Some((log, _)) = sub {
            assert_eq!(stats.unit_len, sig_block_len(&sig) >> log, "{what}: unit is not the sub-block");
        }
        sent += r.body.len();
        full += new_b.len();
        most_chunks = most_chunks.max(stats.chunks);
    }
    eprintln!("{}: {} pairs, {sent} bytes of deltas for {full}; at most {most_chunks} literal chunks in one", kind.name(), pairs.len());
    assert!(sent * 5 < full, "deltas too large: {sent} bytes for {full}");
    assert!(most_chunks >= 2, "no delta had several literal chunks");

    let sig = py.signature(&page, random_seed(), Some((2, 16)));
    let block_len = sig_block_len(&sig);
    let r = python_get(s.port, "/edited.html", &sig);
    assert_eq!(r.content_encoding(), Some("hsync"), "sub-block signature refused; error log:\n{}", s.error_log_text());
    let (rebuilt, stats) = py.patch(&page, &r.body).unwrap_or_else(|e| panic!("edited page: {e}"));
    assert!(rebuilt == edited, "edited page: rebuilt differs");
    assert_eq!(stats.unit_len, block_len >> 2);
    assert!(stats.inserted < block_len, "{stats:?}: the edited block was not partly copied (block_len {block_len})");

    s.finish();
    if std::env::var_os("HSYNC_KEEP_TMP").is_none() {
        let _ = std::fs::remove_dir_all(&docroot);
    }
}

hsync_tests::server_cases!(server_deltas);
