//! Every pair of successive versions in ../shared/corpus round-trips byte-exact.

use hsync_core::{delta, patch, Signature, MAX_SIGNATURE_LEN};
use std::path::{Path, PathBuf};

/// Largest instance the tests let a delta rebuild.
const LIMIT: u64 = 1 << 30;

fn series(dir: &Path, out: &mut Vec<Vec<PathBuf>>) {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            series(&p, out);
        } else if p.extension().is_some_and(|x| x == "html" || x == "xml") {
            files.push(p);
        }
    }
    files.sort();
    if files.len() >= 2 {
        out.push(files);
    }
}

#[test]
fn every_corpus_pair_round_trips() {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus");
    assert!(corpus.is_dir(), "corpus not found at {} (clone beside ../shared)", corpus.display());
    let mut all = Vec::new();
    series(&corpus, &mut all);
    let mut pairs = 0;
    for s in &all {
        for w in s.windows(2) {
            let old = std::fs::read(&w[0]).unwrap();
            let new = std::fs::read(&w[1]).unwrap();
            let sig = Signature::compute(&old);
            assert!(sig.encoded_len() <= MAX_SIGNATURE_LEN);
            let d = delta(&sig, &new).unwrap();
            assert_eq!(patch(&old, &d, LIMIT).unwrap(), new, "{}", w[1].display());
            assert!(d.len() < new.len() / 4, "{}: delta {} of {}", w[1].display(), d.len(), new.len());
            pairs += 1;
        }
    }
    assert_eq!(pairs, 61, "the corpus README describes 61 pairs");
}
