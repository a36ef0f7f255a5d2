//! A minimal blocking HTTP/1.1 client over `TcpStream`: one request per
//! connection, the raw framing kept visible (chunked or not, Content-Length).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// Whether it came with `Transfer-Encoding: chunked`.
    pub chunked: bool,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// All values of `name`, joined with ", ".
    pub fn header_all(&self, name: &str) -> Option<String> {
        let v: Vec<&str> = self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect();
        if v.is_empty() {
            None
        } else {
            Some(v.join(", "))
        }
    }

    pub fn content_encoding(&self) -> Option<&str> {
        self.header("Content-Encoding")
    }
}

/// Connects to 127.0.0.1:`port`. A refused connection is tried again for
/// up to a second: a server that said it listens can still be a moment from
/// accepting on a loaded machine (Squid was seen so); every server here is
/// expected up, so anything longer is a failure.
fn connect(port: u16) -> TcpStream {
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("connect to 127.0.0.1:{port}: {e}"),
        }
    }
}

/// Sends `method path` with `headers` to 127.0.0.1:`port` and reads the
/// whole response. Panics on a malformed or truncated response.
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut s = connect(port);
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    parse(&raw, method == "HEAD")
}

pub fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    request(port, "GET", path, headers)
}

/// Parses one raw response (`head_only`: no body follows).
pub fn parse(raw: &[u8], head_only: bool) -> Response {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in response: {:?}", String::from_utf8_lossy(&raw[..raw.len().min(500)])));
    let head = std::str::from_utf8(&raw[..end]).expect("headers are not UTF-8");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').expect("header line");
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let rest = &raw[end + 4..];
    let mut r = Response { status, headers, body: Vec::new(), chunked: false };
    if head_only || status == 304 || status == 204 {
        assert!(rest.is_empty(), "{status} response with a body of {} bytes", rest.len());
        return r;
    }
    if r.header("Transfer-Encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        r.chunked = true;
        r.body = dechunk(rest);
    } else if let Some(len) = r.header("Content-Length") {
        let len: usize = len.parse().expect("Content-Length");
        assert_eq!(rest.len(), len, "body length differs from Content-Length");
        r.body = rest.to_vec();
    } else {
        r.body = rest.to_vec();
    }
    r
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    loop {
        let nl = data.windows(2).position(|w| w == b"\r\n").expect("truncated chunked body (no chunk size)");
        let size_text = std::str::from_utf8(&data[..nl]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).expect("chunk size");
        data = &data[nl + 2..];
        if size == 0 {
            assert!(data.starts_with(b"\r\n"), "trailers or garbage after the last chunk");
            return out;
        }
        assert!(data.len() >= size + 2, "truncated chunked body");
        out.extend_from_slice(&data[..size]);
        assert_eq!(&data[size..size + 2], b"\r\n", "chunk not followed by CRLF");
        data = &data[size + 2..];
    }
}
