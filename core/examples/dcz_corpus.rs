//! dcz over the corpus (BENCHMARKS.md): for every pair of successive
//! versions, the dcz body of the new one against the old one as the
//! dictionary, its time, and the totals against gzip -6 (from the `gzip`
//! command) and `zstd -19 --patch-from`; per series, when linking a
//! dictionary pays (a browser downloads the linked version once, gzip'd
//! at nginx's level 1, then each later visit costs the dcz body instead
//! of the gzip'd page).
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
    let gzip = |level: &str, p: &Path| Command::new("gzip").args([level, "-c", "-n"]).arg(p).output().unwrap().stdout.len();
    for s in &all {
        let (mut s_dcz, mut s_gz1, mut s_n) = (0usize, 0usize, 0usize);
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
            gz += gzip("-6", &w[1]);
            s_dcz += out.len();
            s_gz1 += gzip("-1", &w[1]);
            s_n += 1;
            let p = format!("--patch-from={}", w[0].display());
            pf += Command::new("zstd").args(["-q", "-c", "-19", &p]).arg(&w[1]).output().unwrap().stdout.len();
            n += 1;
        }
        // Linking costs one download of the dictionary (about a gzip'd
        // page) and saves (gzip - dcz) on each later visit.
        let (g, d) = (s_gz1 as f64 / s_n as f64, s_dcz as f64 / s_n as f64);
        let name = s[0].parent().unwrap().strip_prefix(&corpus).unwrap_or(s[0].parent().unwrap()).display().to_string();
        println!(
            "{name}: {s_n} pairs, a page gzip -1 {g:.0} B, dcz {d:.0} B; the dictionary download is repaid after {:.2} later visits",
            g / (g - d)
        );
    }
    println!("{n} pairs: gzip -6 {gz} B, zstd -19 --patch-from {pf} B, dcz {dcz} B");
    println!("dcz / gzip {:.4}, dcz / patch-from {:.3}", dcz as f64 / gz as f64, dcz as f64 / pf as f64);
    println!("per pair: prepare the dictionary {:.0} us, encode {:.0} us", t_prep / n as f64 * 1e6, t_enc / n as f64 * 1e6);
}
