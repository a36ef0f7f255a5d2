//! `hsync proxy` as a child process: started on a free loopback port, its
//! stderr (start lines, access lines) kept, killed on drop (the stderr
//! printed if the test is failing).

use crate::hsync_bin;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

pub struct HsyncProxy {
    child: Child,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl HsyncProxy {
    /// `hsync proxy --listen 127.0.0.1:0 ARGS...`, once it says where it listens.
    pub fn start<I, S>(args: I) -> HsyncProxy
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut child = Command::new(hsync_bin())
            .args(["proxy", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", hsync_bin().display()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let (pipe, log) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(a) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(a.split('/').next().unwrap_or("").to_string());
                }
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let Some(addr) = rx.recv_timeout(Duration::from_secs(20)).ok().and_then(|a| a.parse().ok()) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hsync proxy did not start:\n{}", stderr.lock().unwrap());
        };
        HsyncProxy { child, addr, stderr }
    }

    /// What it has written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for HsyncProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("hsync proxy stderr:\n{}", self.stderr.lock().unwrap());
        }
    }
}
