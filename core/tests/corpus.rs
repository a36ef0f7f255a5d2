//! Every pair of successive versions in ../shared/corpus round-trips
//! byte-exact, and the search never runs short of its credit on them.

use hsync_core::limits::{SEARCH_CREDIT_PER_BYTE, SEARCH_CREDIT_START};
use hsync_core::{patch, EncodeOptions, Encoder, Signature, MAX_SIGNATURE_LEN};
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
    let mut most = 0.0f64;
    for s in &all {
        for w in s.windows(2) {
            let old = std::fs::read(&w[0]).unwrap();
            let new = std::fs::read(&w[1]).unwrap();
            let sig = Signature::compute(&old);
            assert!(sig.encoded_len() <= MAX_SIGNATURE_LEN);
            let mut d = Vec::new();
            let st = Encoder::with_options(sig, EncodeOptions::default())
                .encode_all(&new, |b| {
                    d.extend_from_slice(b);
                    Ok(())
                })
                .unwrap();
            // An honest search spends a small part of its credit.
            assert_eq!(st.search_pauses, 0, "{}: the search ran out of credit", w[1].display());
            let share = st.search_work as f64 / (SEARCH_CREDIT_START + SEARCH_CREDIT_PER_BYTE * st.input_bytes) as f64;
            most = most.max(share);
            assert_eq!(patch(&old, &d, LIMIT).unwrap(), new, "{}", w[1].display());
            assert!(d.len() < new.len() / 4, "{}: delta {} of {}", w[1].display(), d.len(), new.len());
            pairs += 1;
        }
    }
    assert_eq!(pairs, 61, "the corpus README describes 61 pairs");
    eprintln!("the search spent at most {:.0} % of its credit", most * 100.0);
    assert!(most < 0.5);
}
