//! The interoperability vectors in tests/vectors/ (see its README) decode,
//! and the signatures are exactly what this implementation computes.

use hsync_core::{patch, SigLimits, SigParams, Signature};
use std::fs;
use std::path::PathBuf;

/// Largest instance the tests let a delta rebuild.
const LIMIT: u64 = 1 << 30;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors")
}

#[test]
fn good_vectors_decode() {
    let mut n = 0;
    for e in fs::read_dir(dir()).unwrap() {
        let p = e.unwrap().path();
        if !p.join("delta").exists() || p.join("expect").exists() {
            continue;
        }
        let old = fs::read(p.join("old")).unwrap();
        let new = fs::read(p.join("new")).unwrap();
        let sig = fs::read(p.join("sig")).unwrap();
        let delta = fs::read(p.join("delta")).unwrap();
        let parsed = Signature::parse(&sig, &SigLimits::default()).unwrap();
        assert_eq!(parsed.to_bytes(), sig, "{}: signature re-encodes differently", p.display());
        let again = Signature::compute_seeded(&old, SigParams::for_len(old.len() as u64), parsed.seed);
        assert_eq!(again.to_bytes(), sig, "{}: signature of old differs", p.display());
        assert_eq!(patch(&old, &delta, LIMIT).unwrap(), new, "{}", p.display());
        n += 1;
    }
    assert!(n >= 5, "expected the vectors in {}, found {n}", dir().display());
}

#[test]
fn bad_vectors_fail_as_expected() {
    let mut n = 0;
    for e in fs::read_dir(dir().join("bad")).unwrap() {
        let p = e.unwrap().path();
        let old = fs::read(p.join("old")).unwrap();
        let delta = fs::read(p.join("delta")).unwrap();
        let expect = fs::read_to_string(p.join("expect")).unwrap();
        let err = patch(&old, &delta, LIMIT).expect_err(&p.display().to_string());
        let kind = format!("{err:?}");
        assert!(kind.starts_with(expect.trim()), "{}: got {kind}, expected {}", p.display(), expect.trim());
        n += 1;
    }
    assert!(n >= 7);
}
