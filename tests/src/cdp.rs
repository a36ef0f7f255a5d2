//! Headless Chromium driven over the DevTools protocol, for cases that
//! need one browser session across several loads (RFC 9842 dictionaries
//! are kept within a session) and what the browser really received: the
//! response's headers and its body as decoded.

use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::{stream::MaybeTlsStream, Message, WebSocket};

/// A Chromium with a fresh profile and a DevTools port.
pub struct Browser {
    child: Child,
    port: u16,
    profile: PathBuf,
}

impl Browser {
    /// Starts Chromium headless with a fresh profile under `profile`.
    pub fn start(profile: &Path) -> Browser {
        Browser::start_with(profile, &[])
    }

    /// [`Browser::start`] with more command-line switches (e.g. `--proxy-server=…`).
    pub fn start_with(profile: &Path, extra: &[String]) -> Browser {
        let _ = std::fs::remove_dir_all(profile);
        std::fs::create_dir_all(profile).unwrap();
        let mut cmd = Command::new(crate::chromium::BIN);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-quic",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--blink-settings=imagesEnabled=false",
            // Only loopback exists: a page's links to other hosts fail at
            // once instead of holding the load event.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
            "--remote-debugging-port=0",
            "about:blank",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().expect("start chromium");
        let err = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(rest) = line.split("DevTools listening on ws://127.0.0.1:").nth(1) {
                        let port: u16 = rest.split('/').next().unwrap().parse().unwrap();
                        let _ = tx.send(port);
                        sent = true;
                    }
                }
            }
        });
        let port = rx.recv_timeout(Duration::from_secs(30)).expect("chromium's DevTools port");
        Browser { child, port, profile: profile.to_path_buf() }
    }

    /// A new tab.
    pub fn page(&self) -> Page {
        let target = http_json(self.port, "PUT", "/json/new?about:blank");
        let ws = target["webSocketDebuggerUrl"].as_str().expect("a page's DevTools URL").to_string();
        let (socket, _) = tungstenite::connect(ws).expect("connect to the page");
        let mut p = Page { ws: socket, next: 0, events: VecDeque::new() };
        p.call("Network.enable", json!({}));
        p.call("Page.enable", json!({}));
        p
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SAFETY: kill only sends a signal, to the process group this handle started.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A minimal HTTP request to the DevTools endpoint.
fn http_json(port: u16, method: &str, path: &str) -> Value {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").unwrap();
    // DevTools keeps the connection open whatever the request says: read
    // the head, then exactly Content-Length bytes.
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let text = loop {
        let n = s.read(&mut buf).unwrap();
        all.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&all).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()))
                .unwrap_or(body.len());
            if body.len() >= len || n == 0 {
                break text;
            }
        } else if n == 0 {
            break text;
        }
    };
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("DevTools {path}: {e}: {text}"))
}

/// One tab.
pub struct Page {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next: u64,
    events: VecDeque<Value>,
}

/// What a navigation got: the document's response as the browser saw it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub status: u64,
    /// Response header names in lower case.
    pub headers: Vec<(String, String)>,
    /// Request header names in lower case (what the browser sent, e.g. `available-dictionary`).
    pub request_headers: Vec<(String, String)>,
    /// The body after content decoding.
    pub body: Vec<u8>,
    /// Bytes received for it on the wire (encoded).
    pub encoded_bytes: u64,
}

impl Loaded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn request_header(&self, name: &str) -> Option<&str> {
        self.request_headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .map(|m| m.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap_or("").to_string())).collect())
        .unwrap_or_default()
}

impl Page {
    fn read(&mut self) -> Value {
        loop {
            match self.ws.read().expect("DevTools socket") {
                Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                Message::Close(_) => panic!("DevTools closed the page"),
                _ => {}
            }
        }
    }

    /// Calls a DevTools method and returns its result (events received
    /// meanwhile are kept for [`Page::navigate`]).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        self.ws.send(Message::Text(json!({"id": id, "method": method, "params": params}).to_string())).unwrap();
        loop {
            let v = self.read();
            if v["id"].as_u64() == Some(id) {
                if let Some(e) = v.get("error") {
                    panic!("{method}: {e}");
                }
                return v["result"].clone();
            }
            self.events.push_back(v);
        }
    }

    fn event(&mut self, deadline: Instant) -> Option<Value> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        if Instant::now() > deadline {
            return None;
        }
        if let MaybeTlsStream::Plain(s) = self.ws.get_ref() {
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        }
        match self.ws.read() {
            Ok(Message::Text(t)) => Some(serde_json::from_str(&t).unwrap()),
            Ok(_) => self.event(deadline),
            Err(tungstenite::Error::Io(e)) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                self.event(deadline)
            }
            Err(e) => panic!("DevTools socket: {e}"),
        }
    }

    /// Navigates to `url` and waits for the load; the main document's response.
    pub fn navigate(&mut self, url: &str) -> Loaded {
        self.events.clear();
        let frame = self.call("Page.navigate", json!({"url": url}));
        let loader = frame["loaderId"].as_str().unwrap_or("").to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut request_id, mut response, mut request_headers, mut encoded, mut loaded, mut finished) =
            (None, None, Vec::new(), 0u64, false, false);
        while !(loaded && finished) {
            let e = self.event(deadline).unwrap_or_else(|| panic!("{url}: no load within 30 s"));
            let p = &e["params"];
            match e["method"].as_str().unwrap_or("") {
                "Network.requestWillBeSent" if p["loaderId"] == loader.as_str() && p["type"] == "Document" => {
                    request_id = p["requestId"].as_str().map(String::from);
                }
                "Network.requestWillBeSentExtraInfo" if p["requestId"].as_str() == request_id.as_deref() => {
                    request_headers = pairs(&p["headers"]);
                }
                "Network.responseReceived" if p["requestId"].as_str() == request_id.as_deref() => {
                    response = Some(p["response"].clone());
                }
                "Network.loadingFinished" if p["requestId"].as_str() == request_id.as_deref() => {
                    encoded = p["encodedDataLength"].as_f64().unwrap_or(0.0) as u64;
                    finished = true;
                }
                "Page.loadEventFired" => loaded = true,
                _ => {}
            }
        }
        let response = response.expect("the document's response");
        let rid = request_id.unwrap();
        let b = self.call("Network.getResponseBody", json!({"requestId": rid}));
        let text = b["body"].as_str().unwrap_or("");
        let body = if b["base64Encoded"].as_bool() == Some(true) {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(text).unwrap()
        } else {
            text.as_bytes().to_vec()
        };
        if request_headers.is_empty() {
            request_headers = pairs(&response["requestHeaders"]);
        }
        Loaded {
            status: response["status"].as_u64().unwrap_or(0),
            headers: pairs(&response["headers"]),
            request_headers,
            body,
            encoded_bytes: encoded,
        }
    }

    /// Lets the page sit idle (Chromium fetches `<link rel=compression-dictionary>` at idle).
    pub fn idle(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while self.event(deadline).is_some() {}
    }
}
