//! A test upstream for `proxy_pass` cases: a loopback HTTP server in a
//! thread that generates its responses on each request.
//!
//! | path | response |
//! |---|---|
//! | `/counter` | [`Upstream::page`]`(n)` for the n-th request, `X-Counter: n`, with Content-Length |
//! | `/corpus/<path>` | that corpus file, text/html, streamed in pieces of 4000 bytes with no length (chunked for HTTP/1.1, else until close) |
//! | `/gzip` | 5000 opaque bytes ([`Upstream::gzip_body`]) labelled `Content-Encoding: gzip` |
//! | `/nt` | `page(0)` with `Cache-Control: no-transform` |
//! | `/hdr/<case>` | `page(0)` with Content-Length and the header lines [`HDR_CASES`] gives for `<case>` (all of them, in order, repeated names as separate lines) |
//!
//! [`Upstream::hits`] counts the requests for each path (every method).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The cases of `/hdr/<case>`: the header lines sent with `page(0)`, as
/// an origin would send them (a field named twice is two lines).
pub const HDR_CASES: &[(&str, &[&str])] = &[
    ("plain", &[]),
    ("vary2", &["Vary: Cookie", "Vary: User-Agent"]),
    ("cc2", &["Cache-Control: max-age=60", "Cache-Control: no-transform"]),
    ("vary-star", &["Vary: *"]),
    ("weak-etag", &["ETag: W/\"up-1\""]),
    ("identity", &["Content-Encoding: identity"]),
    ("digest", &["Repr-Digest: sha-256=:AAAA:", "Content-Digest: sha-256=:BBBB:", "Digest: SHA-256=CCCC"]),
    // Cacheable by a shared cache for a minute (tests/src/squid.rs).
    ("max-age", &["Cache-Control: max-age=60"]),
];

/// The header lines of `/hdr/<case>` (panics on an unknown case).
pub fn hdr_lines(case: &str) -> &'static [&'static str] {
    HDR_CASES.iter().find(|(c, _)| *c == case).unwrap_or_else(|| panic!("no /hdr/ case {case:?}")).1
}

pub struct Upstream {
    pub addr: SocketAddr,
    counter: Arc<AtomicU64>,
    hits: Arc<Mutex<HashMap<String, u64>>>,
}

impl Upstream {
    /// Starts the server; it lives as long as the test process.
    pub fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let counter = Arc::new(AtomicU64::new(0));
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let (c, h) = (counter.clone(), hits.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (c, h) = (c.clone(), h.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &c, &h);
                });
            }
        });
        Upstream { addr, counter, hits }
    }

    /// Requests for `path` (e.g. `/hdr/max-age`) so far, whatever the method.
    pub fn hits(&self, path: &str) -> u64 {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Requests to `/counter` so far.
    pub fn count(&self) -> u64 {
        self.counter.load(Ordering::SeqCst)
    }

    /// The page `/counter` returns for its n-th request (about 40 KB of
    /// HTML; successive pages differ in a few places).
    pub fn page(n: u64) -> Vec<u8> {
        let mut s = String::from("<!DOCTYPE html>\n<html><head><title>Generated page</title></head><body>\n");
        s.push_str(&format!("<h1>Generated page, request {n}</h1>\n"));
        for i in 0..500u64 {
            if i == 250 {
                s.push_str(&format!("<p class=\"counter\">This page was generated for request number {n}.</p>\n"));
            }
            s.push_str(&format!("<p id=\"p{i}\">Paragraph {i}: the quick brown fox jumps over the lazy dog {}.</p>\n", i * 7919 % 1000));
        }
        s.push_str(&format!("<footer>request {n}</footer></body></html>\n"));
        s.into_bytes()
    }

    /// The body of `/gzip`.
    pub fn gzip_body() -> Vec<u8> {
        let mut v = vec![0x1f, 0x8b, 8, 0];
        v.extend((0..4996u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8));
        v
    }
}

fn serve(conn: TcpStream, counter: &AtomicU64, hits: &Mutex<HashMap<String, u64>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("/").to_string();
    let http11 = parts.next() == Some("HTTP/1.1");
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    *hits.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
    let mut w = conn;
    let head_only = method == "HEAD";
    let fixed = |w: &mut TcpStream, extra: &str, body: &[u8]| -> std::io::Result<()> {
        write!(w, "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n", body.len())?;
        if !head_only {
            w.write_all(body)?;
        }
        Ok(())
    };
    if path == "/counter" {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        fixed(&mut w, &format!("X-Counter: {n}\r\n"), &Upstream::page(n))
    } else if path == "/gzip" {
        fixed(&mut w, "Content-Encoding: gzip\r\n", &Upstream::gzip_body())
    } else if path == "/nt" {
        fixed(&mut w, "Cache-Control: no-transform\r\n", &Upstream::page(0))
    } else if let Some(&(_, lines)) = path.strip_prefix("/hdr/").and_then(|c| HDR_CASES.iter().find(|(n, _)| *n == c)) {
        let extra: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
        fixed(&mut w, &extra, &Upstream::page(0))
    } else if let Some(rel) = path.strip_prefix("/corpus/").filter(|r| !r.contains("..")) {
        let Ok(data) = std::fs::read(crate::corpus().join(rel)) else {
            return write!(w, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        };
        let te = if http11 { "Transfer-Encoding: chunked\r\n" } else { "" };
        write!(w, "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n{te}Connection: close\r\n\r\n")?;
        if head_only {
            return Ok(());
        }
        for piece in data.chunks(4000) {
            if http11 {
                write!(w, "{:x}\r\n", piece.len())?;
                w.write_all(piece)?;
                w.write_all(b"\r\n")?;
            } else {
                w.write_all(piece)?;
            }
            w.flush()?;
        }
        if http11 {
            w.write_all(b"0\r\n\r\n")?;
        }
        Ok(())
    } else {
        write!(w, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    }
}
