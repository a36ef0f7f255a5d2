//! The version store under the conditions a server puts it in: a churn of
//! 10,000 versions, several processes writing the same and different
//! versions at once, writers killed with SIGKILL mid-write, a damaged file,
//! and a version evicted between a browser's two requests.

use hsync_core::http::{decide, Coding, DictConfig, Exchange, Field, ServerConfig};
use hsync_core::store::{self, Meta, Store};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hsync-store-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn meta() -> Meta {
    Meta { content_type: "text/html".into(), pattern: "/p".into() }
}

fn body(n: u32, len: usize) -> Vec<u8> {
    let head = format!("<html><head><title>version {n}</title></head><body>");
    head.bytes().chain((0..len as u32).map(|i| b'a' + ((i.wrapping_mul(2654435761) ^ n) >> 28) as u8)).collect()
}

fn put(s: &Arc<Store>, key: &str, b: &[u8]) -> Option<store::Hash> {
    let mut w = s.writer(key, &meta()).unwrap();
    for c in b.chunks(4096) {
        w.write(c);
    }
    w.commit().unwrap()
}

/// Every file under v/ is a whole version whose body hashes to its name.
fn all_verified(d: &Path) -> usize {
    let s = Store::open(d, u64::MAX, u64::MAX).unwrap();
    let mut n = 0;
    for e in std::fs::read_dir(d.join("v")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let h = store::unhex(&name).expect("versions are named by their hash");
        assert!(s.get(&h).is_some(), "{name} is not a whole, verified version");
        n += 1;
    }
    n
}

#[test]
fn bounded_under_a_churn_of_ten_thousand_versions() {
    let d = dir("churn");
    let max = 4 << 20;
    let s = Arc::new(Store::open(&d, max, 256 << 10).unwrap());
    let t = Instant::now();
    for i in 0..10_000u32 {
        put(&s, &format!("/page/{}", i % 100), &body(i, 2_000 + (i as usize * 37) % 30_000)).unwrap();
        if i % 500 == 0 {
            assert!(s.size() <= max, "after {i}: {} bytes", s.size());
        }
    }
    assert!(s.size() <= max);
    eprintln!("10,000 versions in {:.1} s, {} bytes held", t.elapsed().as_secs_f64(), s.size());
    // The most recent ones are there, the oldest evicted.
    assert!(s.latest("/page/99").is_some());
    assert!(s.get(&store::sha256(&body(0, 2_000))).is_none());
    assert!(all_verified(&d) > 10);
    let _ = std::fs::remove_dir_all(&d);
}

/// Not a test of its own: the writer that `several_processes_write_at_once`
/// and `writers_killed_mid_write` start (`HSYNC_STORE_WRITER=dir,mode`).
#[test]
fn store_writer_child() {
    let Ok(spec) = std::env::var("HSYNC_STORE_WRITER") else { return };
    let (d, mode) = spec.split_once(',').unwrap();
    let s = Arc::new(Store::open(d, 8 << 20, 1 << 20).unwrap());
    let me = std::process::id();
    match mode {
        "race" => {
            for i in 0..300u32 {
                // Half the versions are the same in every process.
                let n = if i % 2 == 0 { i } else { me * 1000 + i };
                put(&s, &format!("/k{}", i % 10), &body(n, 5_000 + (i as usize % 7) * 1000)).unwrap();
            }
        }
        _ => loop {
            // Slow writes of large versions, to be killed mid-way.
            let mut w = s.writer("/slow", &meta()).unwrap();
            for c in body(me, 900_000).chunks(30_000) {
                w.write(c);
                std::thread::sleep(Duration::from_millis(2));
            }
            w.commit().unwrap();
        },
    }
}

fn child(d: &Path, mode: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "store_writer_child", "--nocapture"])
        .env("HSYNC_STORE_WRITER", format!("{},{mode}", d.display()))
        .spawn()
        .unwrap()
}

#[test]
fn several_processes_write_at_once() {
    let d = dir("race");
    Store::open(&d, 8 << 20, 1 << 20).unwrap();
    let kids: Vec<_> = (0..4).map(|_| child(&d, "race")).collect();
    for mut k in kids {
        assert!(k.wait().unwrap().success());
    }
    let s = Store::open(&d, 8 << 20, 1 << 20).unwrap();
    assert!(s.size() <= 8 << 20);
    let n = all_verified(&d);
    assert!(n > 0);
    for k in 0..10 {
        let h = s.latest(&format!("/k{k}")).expect("a latest version for every key");
        assert!(s.get(&h).is_some());
    }
    assert!(std::fs::read_dir(d.join("tmp")).unwrap().next().is_none(), "no temporary file left");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn writers_killed_mid_write_leave_no_version_that_is_served() {
    let d = dir("kill");
    Store::open(&d, 8 << 20, 1 << 20).unwrap();
    for delay in [20u64, 90, 150, 260, 400, 700] {
        let mut k = child(&d, "slow");
        std::thread::sleep(Duration::from_millis(delay));
        k.kill().unwrap();
        k.wait().unwrap();
        all_verified(&d);
    }
    // Whatever was committed is whole; a temporary file may be left, and
    // goes when it is old (a later open).
    let leftovers = std::fs::read_dir(d.join("tmp")).unwrap().count();
    eprintln!("{} versions committed, {leftovers} temporary files left by killed writers", all_verified(&d));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_damaged_or_evicted_version_gives_the_plain_response() {
    let d = dir("gone");
    let s = Arc::new(Store::open(&d, 8 << 20, 1 << 20).unwrap());
    let dc = DictConfig { store: s.clone(), pattern: None };
    let v1 = body(1, 20_000);
    let h = put(&s, "/p", &v1).unwrap();
    use base64::Engine;
    let named = format!(":{}:", base64::engine::general_purpose::STANDARD.encode(h));
    let req = [Field::new("Accept-Encoding", "gzip, dcz"), Field::new("Available-Dictionary", &named)];
    let resp = [Field::new("Content-Type", "text/html")];
    let x = Exchange { method: b"GET", uri: b"/other", request: &req, status: 200, response: &resp, content_length: None };
    // The damage happens before the process ever prepared the dictionary.
    let path = d.join("v").join(store::hex(&h));
    let mut data = std::fs::read(&path).unwrap();
    let n = data.len();
    data[n - 10] ^= 0x40;
    std::fs::write(&path, &data).unwrap();
    let dec = decide(&ServerConfig::default(), Some(&dc), &x);
    assert_eq!(dec.coding(), Some(&Coding::Identity), "a damaged version is never used");
    assert!(!path.exists(), "and it is dropped");
    // Stored again, then evicted between the page and the next request.
    let h2 = put(&s, "/q", &body(2, 20_000)).unwrap();
    std::fs::remove_file(d.join("v").join(store::hex(&h2))).unwrap();
    let named = format!(":{}:", base64::engine::general_purpose::STANDARD.encode(h2));
    let req = [Field::new("Accept-Encoding", "dcz"), Field::new("Available-Dictionary", &named)];
    let x = Exchange { request: &req, uri: b"/q", ..x };
    let dec = decide(&ServerConfig::default(), Some(&dc), &x);
    assert_eq!(dec.coding(), Some(&Coding::Identity), "an evicted version: the plain response, never an error");
    let _ = std::fs::remove_dir_all(&d);
}
