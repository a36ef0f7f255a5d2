//! A loopback origin whose pages a test sets and changes: each path has
//! its header lines and body, sent with Content-Length (one response
//! per connection). For pages that change between a browser's loads.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

type Pages = Arc<Mutex<HashMap<String, (Vec<String>, Vec<u8>)>>>;

pub struct Origin {
    pub addr: SocketAddr,
    pages: Pages,
}

impl Origin {
    /// Starts the server; it lives as long as the test process.
    pub fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let pages: Pages = Arc::default();
        let p = pages.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().map_while(Result::ok) {
                let p = p.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &p);
                });
            }
        });
        Origin { addr, pages }
    }

    /// Sets the page at `path` (query ignored): its header lines
    /// ("Name: value") and body. Unknown paths get a 404.
    pub fn set(&self, path: &str, headers: &[&str], body: &[u8]) {
        self.pages.lock().unwrap().insert(path.into(), (headers.iter().map(|h| h.to_string()).collect(), body.to_vec()));
    }
}

fn serve(conn: TcpStream, pages: &Pages) -> std::io::Result<()> {
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
    let page = pages.lock().unwrap().get(path).cloned();
    let mut w = conn;
    let (status, headers, body) = match page {
        Some((h, b)) => ("200 OK", h, b),
        None => ("404 Not Found", vec!["Content-Type: text/plain".into()], b"not here\n".to_vec()),
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
