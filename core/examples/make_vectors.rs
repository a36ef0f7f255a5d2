//! Writes the interoperability test vectors in tests/vectors/ from real
//! page versions in ../shared/corpus. Run from the workspace root:
//!   cargo run --release -p hsync-core --example make_vectors
//! Each vector is a folder: `old`, `new`, `sig` (exactly the signature bytes
//! a client sends, before base64url), `delta` (exactly a response body).
//! Folders under `bad/` hold a delta that must be rejected, with the error
//! kind in `expect`.
use hsync_core::{delta, Signature};
use std::fs;
use std::path::Path;

fn write(dir: &Path, old: &[u8], new: &[u8]) -> Vec<u8> {
    fs::create_dir_all(dir).unwrap();
    let sig = Signature::compute(old);
    let d = delta(&sig, new).unwrap();
    fs::write(dir.join("old"), old).unwrap();
    fs::write(dir.join("new"), new).unwrap();
    fs::write(dir.join("sig"), sig.to_bytes()).unwrap();
    fs::write(dir.join("delta"), &d).unwrap();
    d
}

fn bad(dir: &Path, old: &[u8], delta: &[u8], expect: &str) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("old"), old).unwrap();
    fs::write(dir.join("delta"), delta).unwrap();
    fs::write(dir.join("expect"), format!("{expect}\n")).unwrap();
}

fn main() {
    let corpus = Path::new("../shared/corpus");
    let out = Path::new("tests/vectors");
    let pairs = [
        ("igvita", "pages/igvita/v1.html", "pages/igvita/v2.html"),
        ("cnn", "pages/cnn/v1.html", "pages/cnn/v2.html"),
        ("blog-home-029-030", "blog-home/029.html", "blog-home/030.html"),
        ("atom-feed-018-019", "atom-feed/018.xml", "atom-feed/019.xml"),
    ];
    let mut keep = None;
    for (name, a, b) in pairs {
        let old = fs::read(corpus.join(a)).unwrap();
        let new = fs::read(corpus.join(b)).unwrap();
        let d = write(&out.join(name), &old, &new);
        if name == "igvita" {
            keep = Some((old, d));
        }
    }
    write(&out.join("empty-old"), b"", b"<html>a page that the client did not have</html>\n");
    write(&out.join("empty-new"), b"<html>old</html>\n", b"");
    write(&out.join("tiny"), b"<p>hello</p>\n", b"<p>hello, world</p>\n");
    let (old, d) = keep.unwrap();
    let mut flipped = d.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    bad(&out.join("bad/digest"), &old, &flipped, "DigestMismatch");
    bad(&out.join("bad/truncated"), &old, &d[..d.len() / 2], "Truncated");
    bad(&out.join("bad/wrong-base"), &old[..old.len() - 1], &d, "WrongBase");
    let mut magic = d.clone();
    magic[0] = b'X';
    bad(&out.join("bad/magic"), &old, &magic, "BadMagic");
    let mut version = d.clone();
    version[3] = 9;
    bad(&out.join("bad/version"), &old, &version, "UnsupportedVersion");
}
