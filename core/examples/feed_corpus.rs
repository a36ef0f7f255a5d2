//! Feed figures over ../shared/corpus/atom-feed (30 versions), for
//! BENCHMARKS.md:
//!
//! - bytes a reader polling every version receives (bodies): the full feed
//!   gzip'd each time, against `A-IM: feed` (226 with the entries it lacks,
//!   then gzip'd; the implicit mode sends the same bodies), an hsync delta
//!   (with the signature the reader sends) and dcz against the previous
//!   version, all with the first poll in full;
//! - CPU per request of the feed decision (parse, ETaglet, truncate) for a
//!   reader one version behind, against gzip -1 and -6 of the same feed
//!   (flate2, zlib backend: what a server's gzip filter costs).
//!
//! `cargo run --release -p hsync-core --example feed_corpus [-- DIR]`

use flate2::write::GzEncoder;
use flate2::Compression;
use hsync_core::codec::dcz::{DczEncoder, Prepared};
use hsync_core::feed::{self, Etaglet, FeedConfig};
use hsync_core::http::{Edit, Exchange, Field};
use hsync_core::store::sha256;
use std::hint::black_box;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::new(level));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Mean time of `f` over at least `min` of wall time.
fn time<T>(min: Duration, mut f: impl FnMut() -> T) -> Duration {
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < min || n < 5 {
        black_box(f());
        n += 1;
    }
    start.elapsed() / n
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/atom-feed"));
    let versions: Vec<Vec<u8>> = (1..=30).map(|i| std::fs::read(dir.join(format!("{i:03}.xml"))).expect("corpus version")).collect();
    let cfg = FeedConfig { explicit: true, implicit: true, ..FeedConfig::default() };
    let tag = |d: &[u8]| Etaglet::of(d, feed::parse(d).ok().as_ref()).to_header();
    let resp = [Field::new("Content-Type", "application/atom+xml")];

    // Bytes for a reader polling every version.
    let (mut raw_full, mut gz_full, mut raw_im, mut gz_im, mut gz1_full) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut entries_total, mut entries_sent) = (0usize, 0usize);
    let mut etag: Option<String> = None;
    let mut etag_len = 0;
    for v in &versions {
        raw_full += v.len() as u64;
        gz_full += gzip(v, 6).len() as u64;
        gz1_full += gzip(v, 1).len() as u64;
        let req_owned: Vec<(String, String)> = match &etag {
            Some(t) => vec![("A-IM".into(), "feed".into()), ("If-None-Match".into(), t.clone())],
            None => vec![],
        };
        let req: Vec<Field> = req_owned.iter().map(|(n, v)| Field::new(n, v)).collect();
        let x = Exchange { method: b"GET", uri: b"/atom.xml", request: &req, status: 200, response: &resp, content_length: None };
        let o = feed::process(&cfg, &x, v);
        raw_im += o.body.len() as u64;
        gz_im += gzip(&o.body, 6).len() as u64;
        entries_total += o.entries;
        entries_sent += o.sent;
        let t = o.edits.iter().find_map(|e| if let Edit::Set("ETag", t) = e { Some(t.clone()) } else { None }).unwrap();
        etag_len = etag_len.max(t.len());
        etag = Some(t);
    }
    // The other ways to the same reader, version to version (the first
    // poll in full, gzip -6): an hsync delta (the signature the client
    // sends counted in, raw), dcz against the previous version.
    let first_gz = gzip(&versions[0], 6).len() as u64;
    let (mut hsync_bytes, mut dcz_bytes) = (first_gz, first_gz);
    for w in versions.windows(2) {
        let sig = hsync_core::http::signature_for(&w[0]).expect("a signature");
        hsync_bytes += (sig.to_bytes().len() + hsync_core::delta(&sig, &w[1]).unwrap().len()) as u64;
        let dict = std::sync::Arc::new(Prepared::new(&w[0], sha256(&w[0])).unwrap());
        let mut out = Vec::new();
        let mut e = DczEncoder::new(dict, Some(w[1].len() as u64)).unwrap();
        e.update(&w[1], &mut out).unwrap();
        e.finish(&mut out).unwrap();
        dcz_bytes += out.len() as u64;
    }

    println!("Polling all 30 versions (first poll in full), bytes of bodies:");
    println!("  full feed, identity      {raw_full:>10}");
    println!("  full feed, gzip -1       {gz1_full:>10}");
    println!("  full feed, gzip -6       {gz_full:>10}   1");
    println!("  A-IM: feed, identity     {raw_im:>10}   {:.3} of gzip'd full", raw_im as f64 / gz_full as f64);
    println!("  A-IM: feed, gzip -6      {gz_im:>10}   {:.3} of gzip'd full", gz_im as f64 / gz_full as f64);
    println!("  implicit (200), gzip -6  {gz_im:>10}   the same bodies as A-IM: feed");
    println!("  hsync (sig + delta)      {hsync_bytes:>10}   {:.3}", hsync_bytes as f64 / gz_full as f64);
    println!("  dcz (previous version)   {dcz_bytes:>10}   {:.3}", dcz_bytes as f64 / gz_full as f64);
    println!("  entries sent             {entries_sent:>10} of {entries_total} in the 30 versions");
    println!("  longest ETag             {etag_len:>10} characters (sent back in If-None-Match on every poll)");

    // CPU per request: reader one version behind.
    let min = Duration::from_millis(300);
    let (mut t_parse, mut t_process, mut t_304, mut t_gz1, mut t_gz6) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let pairs = versions.len() - 1;
    for k in 1..versions.len() {
        let (old, new) = (&versions[k - 1], &versions[k]);
        let t_old = tag(old);
        let t_new = tag(new);
        let req = [Field::new("A-IM", "feed"), Field::new("If-None-Match", &t_old)];
        let x = Exchange { method: b"GET", uri: b"/atom.xml", request: &req, status: 200, response: &resp, content_length: None };
        t_parse += time(min, || feed::parse(new).unwrap().entries.len());
        t_process += time(min, || feed::process(&cfg, &x, new).body.len());
        let req304 = [Field::new("If-None-Match", &t_new)];
        let x304 = Exchange { request: &req304, ..x };
        t_304 += time(min, || feed::process(&cfg, &x304, new).status);
        t_gz1 += time(min, || gzip(new, 1).len());
        t_gz6 += time(min, || gzip(new, 6).len());
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6 / pairs as f64;
    let avg_len = versions[1..].iter().map(|v| v.len()).sum::<usize>() / pairs;
    println!("\nCPU per request, mean over the {pairs} successive pairs (feeds of {avg_len} bytes on average), one core:");
    println!("  parse only                            {:>8.0} us", us(t_parse));
    println!("  process: 226 (parse, ETaglet, cut)    {:>8.0} us", us(t_process));
    println!("  process: 304 (parse, ETaglet)         {:>8.0} us", us(t_304));
    println!("  gzip -1 of the whole feed             {:>8.0} us", us(t_gz1));
    println!("  gzip -6 of the whole feed             {:>8.0} us", us(t_gz6));
}
