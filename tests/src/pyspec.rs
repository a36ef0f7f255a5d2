//! The second implementation of the protocol, `tools/python/hsync_spec.py`
//! (written from docs/protocol.md alone), driven through its command line.
//! It needs Debian's python3 with python3-xxhash and python3-zstandard
//! (build/deps installs them): without them, [`PySpec::find`] gives a skip
//! notice, or a failure when `HSYNC_REQUIRE_PYTHON` is set (as `build/test`
//! does).

use crate::{root, temp_dir};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The script.
pub fn script() -> PathBuf {
    root().join("tools").join("python").join("hsync_spec.py")
}

/// What `patch -v` reports about a delta it applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub unit_len: u64,
    pub copied: u64,
    pub inserted: u64,
    /// Literal chunks (LIT_ZSTD and LIT_RAW).
    pub chunks: u64,
}

/// A Python interpreter that runs the script, with a scratch directory
/// (removed on drop unless `HSYNC_KEEP_TMP` is set).
pub struct PySpec {
    pub python: &'static str,
    dir: PathBuf,
    n: AtomicU32,
}

impl PySpec {
    /// Debian's python3 (where the packages install), else the one on PATH,
    /// if it imports both modules.
    pub fn find() -> Option<PySpec> {
        let found = ["/usr/bin/python3", "python3"]
            .into_iter()
            .find(|p| Command::new(p).args(["-c", "import xxhash, zstandard"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success()));
        let Some(python) = found else {
            if std::env::var_os("HSYNC_REQUIRE_PYTHON").is_some() {
                panic!("HSYNC_REQUIRE_PYTHON is set but no python3 imports xxhash and zstandard (build/deps installs python3-xxhash python3-zstandard)");
            }
            eprintln!(
                "SKIPPED: no python3 with xxhash and zstandard (apt-get install python3-xxhash python3-zstandard); set HSYNC_REQUIRE_PYTHON to make this a failure"
            );
            return None;
        };
        Some(PySpec { python, dir: temp_dir("pyspec"), n: AtomicU32::new(0) })
    }

    /// Runs the script with `args`.
    pub fn run<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Output {
        Command::new(self.python).arg(script()).args(args).output().unwrap_or_else(|e| panic!("{}: {e}", self.python))
    }

    /// A fresh path in the scratch directory.
    fn path(&self, tag: &str) -> PathBuf {
        self.dir.join(format!("{}-{tag}", self.n.fetch_add(1, Ordering::Relaxed)))
    }

    fn put(&self, tag: &str, data: &[u8]) -> PathBuf {
        let p = self.path(tag);
        std::fs::write(&p, data).unwrap();
        p
    }

    /// The signature of `old` with `seed`; `sub`: sub-blocks `(sub_log, sub_bits)`.
    pub fn signature(&self, old: &[u8], seed: u64, sub: Option<(u8, u8)>) -> Vec<u8> {
        let (old_p, sig_p) = (self.put("old", old), self.path("sig"));
        let mut args = vec!["signature".to_string(), "--seed".to_string(), seed.to_string()];
        if let Some((log, bits)) = sub {
            args.extend(["--sub".to_string(), format!("{log}:{bits}")]);
        }
        args.extend([old_p.display().to_string(), sig_p.display().to_string()]);
        let o = self.run(&args);
        assert!(o.status.success(), "hsync_spec.py signature: {}", String::from_utf8_lossy(&o.stderr));
        let sig = std::fs::read(&sig_p).unwrap();
        let _ = (std::fs::remove_file(old_p), std::fs::remove_file(sig_p));
        sig
    }

    /// Applies `delta` to `old`: the rebuilt instance and what the delta did,
    /// or the script's message (`KIND: reason`) when it rejects the delta.
    pub fn patch(&self, old: &[u8], delta: &[u8]) -> Result<(Vec<u8>, Stats), String> {
        let (old_p, delta_p, new_p) = (self.put("old", old), self.put("delta", delta), self.path("new"));
        let o = self.run(&[Path::new("patch"), Path::new("-v"), &old_p, &delta_p, &new_p]);
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        let result = match o.status.code() {
            Some(0) => Ok((std::fs::read(&new_p).unwrap(), parse_stats(&stderr))),
            Some(1) => Err(stderr.trim().to_string()),
            _ => panic!("hsync_spec.py patch failed unexpectedly ({}): {stderr}", o.status),
        };
        for p in [old_p, delta_p, new_p] {
            let _ = std::fs::remove_file(p);
        }
        result
    }
}

/// `unit_len U copied C inserted I chunks N`.
fn parse_stats(s: &str) -> Stats {
    let line = s.lines().find(|l| l.starts_with("unit_len ")).unwrap_or_else(|| panic!("no stats in {s:?}"));
    let v: Vec<u64> = line.split_whitespace().skip(1).step_by(2).map(|n| n.parse().unwrap()).collect();
    Stats { unit_len: v[0], copied: v[1], inserted: v[2], chunks: v[3] }
}

impl Drop for PySpec {
    fn drop(&mut self) {
        if std::env::var_os("HSYNC_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
