//! Writes the interoperability test vectors in tests/vectors/ from real
//! page versions in ../shared/corpus. Run from the workspace root:
//!   cargo run --release -p hsync-core --example make_vectors
//! Each vector is a folder: `old`, `new`, `sig` (exactly the signature bytes
//! a client sends, before base64url), `delta` (exactly a response body).
//! Folders under `bad/` hold a delta that must be rejected, with the error
//! kind in `expect`. Signatures use a fixed seed per vector (a client picks
//! a random one), derived from the vector's name.
use hsync_core::{delta, SigParams, Signature};
use std::fs;
use std::path::Path;

/// The seed of a vector's signature.
fn seed_for(dir: &Path) -> u64 {
    hsync_core::hash::xxh3_64(dir.file_name().unwrap().to_string_lossy().as_bytes())
}

fn write(dir: &Path, old: &[u8], new: &[u8]) -> Vec<u8> {
    fs::create_dir_all(dir).unwrap();
    let sig = Signature::compute_seeded(old, SigParams::for_len(old.len() as u64), seed_for(dir));
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
    // Version 1 (XXH3-128 digest) is refused: its digest can be collided.
    let mut v1 = d.clone();
    v1[3] = 1;
    bad(&out.join("bad/version-1"), &old, &v1, "UnsupportedVersion");
    // A literal chunk whose context names the old instance's units over and
    // over, beyond the context credit (docs/protocol.md §4.2).
    let small = &old[..16 << 10];
    bad(&out.join("bad/context"), small, &context_bomb(small), "TooLarge");
}

/// A delta whose only literal chunk (one byte) has the whole of `old`
/// named 160 times as context: 2.5 MiB, over the 2 MiB credit.
fn context_bomb(old: &[u8]) -> Vec<u8> {
    let put = |v: &mut Vec<u8>, mut x: u64| {
        while x >= 0x80 {
            v.push(x as u8 | 0x80);
            x >>= 7;
        }
        v.push(x as u8);
    };
    let units = old.len() as u64 / 1024;
    let mut d = b"hsd\x02".to_vec();
    put(&mut d, 1024);
    put(&mut d, old.len() as u64);
    d.push(22);
    d.push(3); // LIT_ZSTD
    put(&mut d, 1); // raw_len
    put(&mut d, 0); // tail
    put(&mut d, 160); // runs
    for i in 0..160 {
        // zigzag(first - prev): back to unit 0 after the first run.
        put(&mut d, if i == 0 { 0 } else { 2 * units - 1 });
        put(&mut d, units);
    }
    // A magicless zstd frame holding the byte 'x' (decodes whatever the prefix).
    let frame = [0x00, 0x58, 0x09, 0x00, 0x00, b'x'];
    put(&mut d, frame.len() as u64);
    d.extend_from_slice(&frame);
    d.push(2); // INSERT 1
    put(&mut d, 1);
    d.push(0); // END
    put(&mut d, 1);
    d.extend_from_slice(&hsync_core::hash::digest(b"x"));
    d
}
