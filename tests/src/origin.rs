//! A loopback origin whose pages a test sets and changes: each path has
//! its header lines and body, sent with Content-Length (one response
//! per connection). For pages that change between a browser's loads,
//! redirects and removed pages (any status), and a slow origin
//! ([`Origin::set_delay`]).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Per path: status line, header lines, body.
type Pages = Arc<Mutex<HashMap<String, (String, Vec<String>, Vec<u8>)>>>;

pub struct Origin {
    pub addr: SocketAddr,
    pages: Pages,
    /// Milliseconds to wait before answering each request.
    delay_ms: Arc<AtomicU64>,
    /// Requests answered, by path.
    served: Arc<Mutex<HashMap<String, usize>>>,
}

impl Origin {
    /// Starts the server; it lives as long as the test process.
    pub fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let pages: Pages = Arc::default();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let served: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let (p, d, sv) = (pages.clone(), delay_ms.clone(), served.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().map_while(Result::ok) {
                let (p, d, sv) = (p.clone(), d.clone(), sv.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &p, &d, &sv);
                });
            }
        });
        Origin { addr, pages, delay_ms, served }
    }

    /// Answers `path` with `status` ("301 Moved Permanently", "410 Gone", ...).
    pub fn set_status(&self, path: &str, status: &str, headers: &[&str], body: &[u8]) {
        self.pages.lock().unwrap().insert(path.into(), (status.into(), headers.iter().map(|h| h.to_string()).collect(), body.to_vec()));
    }

    /// Waits `ms` milliseconds before answering each request (a slow origin).
    pub fn set_delay(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Requests answered for `path` so far.
    pub fn served(&self, path: &str) -> usize {
        self.served.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Sets the page at `path` (query ignored): its header lines
    /// ("Name: value") and body. Unknown paths get a 404.
    pub fn set(&self, path: &str, headers: &[&str], body: &[u8]) {
        self.set_status(path, "200 OK", headers, body);
    }
}

fn serve(conn: TcpStream, pages: &Pages, delay_ms: &AtomicU64, served: &Mutex<HashMap<String, usize>>) -> std::io::Result<()> {
    let mut r = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let (method, target) = {
        let mut it = line.split_whitespace();
        (it.next().unwrap_or("").to_string(), it.next().unwrap_or("/").to_string())
    };
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    let path = target.split('?').next().unwrap_or("/");
    let delay = delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        std::thread::sleep(Duration::from_millis(delay));
    }
    let page = pages.lock().unwrap().get(path).cloned();
    *served.lock().unwrap().entry(path.to_string()).or_default() += 1;
    let mut w = conn;
    let (status, headers, body) = match page {
        Some((s, h, b)) => (s, h, b),
        None => ("404 Not Found".to_string(), vec!["Content-Type: text/plain".into()], b"not here\n".to_vec()),
    };
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for h in headers {
        head.push_str(&h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    if method != "HEAD" {
        w.write_all(&body)?;
    }
    w.flush()
}
