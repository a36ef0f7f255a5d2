//! dcz over the corpus (BENCHMARKS.md): for every pair of successive
//! versions, the dcz body of the new one against the old one as the
//! dictionary, its time, and the totals against gzip -6 (from the `gzip`
//! command) and `zstd -19 --patch-from`.
//! Usage: cargo run --release -p hsync-core --example dcz_corpus
use hsync_core::codec::dcz::{decode, DczEncoder, Prepared};
use hsync_core::store::sha256;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

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

fn main() {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus");
    let mut all = Vec::new();
    series(&corpus, &mut all);
    let (mut dcz, mut gz, mut pf, mut n) = (0usize, 0usize, 0usize, 0usize);
    let (mut t_prep, mut t_enc) = (0f64, 0f64);
    for s in &all {
        for w in s.windows(2) {
            let old = std::fs::read(&w[0]).unwrap();
            let new = std::fs::read(&w[1]).unwrap();
            let t = Instant::now();
            let dict = Arc::new(Prepared::new(&old, sha256(&old)).unwrap());
            t_prep += t.elapsed().as_secs_f64();
            let reps = 20;
            let t = Instant::now();
            let mut out = Vec::new();
            for _ in 0..reps {
                out.clear();
                let mut e = DczEncoder::new(dict.clone(), Some(new.len() as u64)).unwrap();
                e.update(&new, &mut out).unwrap();
                e.finish(&mut out).unwrap();
            }
            t_enc += t.elapsed().as_secs_f64() / reps as f64;
            assert_eq!(decode(&old, &out, 1 << 30).unwrap(), new);
            dcz += out.len();
            gz += Command::new("gzip").args(["-6", "-c", "-n"]).arg(&w[1]).output().unwrap().stdout.len();
            let p = format!("--patch-from={}", w[0].display());
            pf += Command::new("zstd").args(["-q", "-c", "-19", &p]).arg(&w[1]).output().unwrap().stdout.len();
            n += 1;
        }
    }
    println!("{n} pairs: gzip -6 {gz} B, zstd -19 --patch-from {pf} B, dcz {dcz} B");
    println!("dcz / gzip {:.4}, dcz / patch-from {:.3}", dcz as f64 / gz as f64, dcz as f64 / pf as f64);
    println!("per pair: prepare the dictionary {:.0} us, encode {:.0} us", t_prep / n as f64 * 1e6, t_enc / n as f64 * 1e6);
}
