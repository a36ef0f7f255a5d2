//! Totals of signature + delta over every pair of successive versions in a
//! corpus directory, for exploring encoder options (not a benchmark of speed).
//! Usage: cargo run --release -p hsync-core --example corpus_sweep -- ../shared/corpus [level] [window_log] [batch] [block_scale]
use hsync_core::signature::Tuning;
use hsync_core::{patch, EncodeOptions, SigParams, Signature, MAX_SIGNATURE_LEN};
use std::path::{Path, PathBuf};

/// Largest instance the tests let a delta rebuild.
const LIMIT: u64 = 1 << 30;

fn series(dir: &Path, out: &mut Vec<Vec<PathBuf>>) {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            series(&p, out);
        } else if p.file_name().unwrap() != "README.md" {
            files.push(p);
        }
    }
    files.sort();
    if files.len() >= 2 {
        out.push(files);
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(a.get(1).map(String::as_str).unwrap_or("../shared/corpus"));
    let mut o = EncodeOptions::default();
    if let Some(v) = a.get(2) {
        o.level = v.parse().unwrap();
    }
    if let Some(v) = a.get(3) {
        o.window_log = v.parse().unwrap();
    }
    if let Some(v) = a.get(4) {
        o.batch = v.parse().unwrap();
    }
    if let Some(v) = a.get(5) {
        o.min_context = v.parse().unwrap();
    }
    if let Some(v) = a.get(6) {
        o.context_factor = v.parse().unwrap();
    }
    let mut t = Tuning::default();
    let env = |k: &str| std::env::var(k).ok();
    if let Some(v) = env("CREDIT") {
        o.context_credit = v.parse().unwrap();
    }
    if let Some(v) = env("CRATIO") {
        o.context_ratio = v.parse().unwrap();
    }
    if let Some(v) = env("FAST_AFTER") {
        o.fast_after = v.parse().unwrap();
    }
    if let Some(v) = env("SCALE") {
        t.block_scale = v.parse().unwrap();
    }
    if let Some(v) = env("SUBLOG") {
        t.sub_log = v.parse().unwrap();
    }
    if let Some(v) = env("SUBBITS") {
        t.sub_bits = v.parse().unwrap();
    }
    if let Some(v) = env("MARGIN") {
        t.margin = v.parse().unwrap();
    }
    if let Some(v) = env("MINBLOCK") {
        t.min_block = v.parse().unwrap();
    }
    if let Some(v) = env("PINNED") {
        t.pinned_margin = v.parse().unwrap();
    }
    let mut all = Vec::new();
    series(&dir, &mut all);
    let (mut tsig, mut tdel, mut tnew, mut lit) = (0usize, 0usize, 0usize, 0u64);
    for s in &all {
        let mut sub = (0, 0);
        for w in s.windows(2) {
            let old = std::fs::read(&w[0]).unwrap();
            let new = std::fs::read(&w[1]).unwrap();
            let maxsig: usize = std::env::var("MAXSIG").ok().map(|v| v.parse().unwrap()).unwrap_or(MAX_SIGNATURE_LEN);
            let p = SigParams::choose(old.len() as u64, maxsig, &t);
            let sig = Signature::compute_with(&old, p);
            let sb = sig.to_bytes();
            let mut d = Vec::new();
            let mut enc = hsync_core::Encoder::with_options(sig.clone(), o);
            enc.update(&new, &mut d).unwrap();
            enc.finish(&mut d).unwrap();
            lit += enc.stats().literal_bytes;
            if std::env::var("PAIRS").is_ok() {
                eprintln!("  {} sig {} delta {} literal {}", w[1].display(), sb.len(), d.len(), enc.stats().literal_bytes);
            }
            assert_eq!(patch(&old, &d, LIMIT).unwrap(), new);
            tsig += sb.len();
            tdel += d.len();
            tnew += new.len();
            sub.0 += sb.len();
            sub.1 += d.len();
        }
        eprintln!("{:40} sig {:7} delta {:7}", s[0].parent().unwrap().display(), sub.0, sub.1);
    }
    println!(
        "pairs total: literal {lit} sig {tsig} delta {tdel} sum {} new {tnew} ratio_vs_gzip {:.4}",
        tsig + tdel,
        (tsig + tdel) as f64 / 1_837_206.0
    );
}
