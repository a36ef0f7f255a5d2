//! The version store: recent identity bodies of responses, named by their
//! SHA-256, for the compression dictionaries of RFC 9842 (`dcz`). A browser
//! names the version it holds (`Available-Dictionary`), and the server
//! compresses the new response against the same bytes from here.
//!
//! One directory, shared by every worker of a server (nginx's worker
//! processes, httpd's children and threads), surviving restarts:
//!
//! ```text
//! DIR/v/<sha256 hex>     a version: "HSV1", metadata length (u32 LE), metadata, body
//! DIR/p/<sha256 hex>     the latest version stored for a key (a page's URI): a hash in hex
//! DIR/tmp/               versions being written
//! DIR/ledger             bytes held in v/ (u64 LE), updated under an flock of DIR/lock
//! ```
//!
//! - **Crash-safe**: a version is written to `tmp/` and renamed into `v/`
//!   only once complete; a kill -9 at any moment leaves at most a stray
//!   temporary file (removed when it is old), never a partial version.
//! - **Verified**: every read hashes the body and compares it with the
//!   name; a version that does not match (a disk error, a hand edit) is
//!   deleted and never used.
//! - **Bounded**: by total bytes ([`Store::max_bytes`], least recently
//!   used versions evicted, down to 90 % so that evictions are rare) and
//!   per version ([`Store::max_entry`]). The ledger is an estimate kept
//!   under the lock; every eviction rescans the directory and corrects it.
//!
//! The interface (`get`, `has`, `latest`, `writer`) is what a fleet would
//! need from a shared engine too: docs/dictionary-store.md.

use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// A version's name: the SHA-256 of its body.
pub type Hash = [u8; 32];

const MAGIC: &[u8; 4] = b"HSV1";
/// Largest metadata block accepted when reading.
const MAX_META: usize = 4096;
/// Temporary files older than this belong to a writer that died.
const STALE_TMP: Duration = Duration::from_secs(600);

/// What is kept beside a version's body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Meta {
    /// The response's Content-Type, to serve the version as a dictionary.
    pub content_type: String,
    /// The URL pattern (RFC 9842 `match`) the version is a dictionary for.
    pub pattern: String,
}

impl Meta {
    fn encode(&self) -> Vec<u8> {
        format!("{}\n{}", self.content_type.replace('\n', " "), self.pattern.replace('\n', " ")).into_bytes()
    }

    fn decode(b: &[u8]) -> Option<Meta> {
        let s = std::str::from_utf8(b).ok()?;
        let (ct, pat) = s.split_once('\n')?;
        Some(Meta { content_type: ct.to_string(), pattern: pat.to_string() })
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Hash {
    Sha256::digest(data).into()
}

/// Lower-case hex of a hash.
pub fn hex(h: &Hash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// A hash from 64 hex digits.
pub fn unhex(s: &str) -> Option<Hash> {
    if s.len() != 64 {
        return None;
    }
    let mut h = [0u8; 32];
    for (i, c) in s.as_bytes().chunks(2).enumerate() {
        h[i] = u8::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok()?;
    }
    Some(h)
}

/// The store in one directory (see the module documentation).
pub struct Store {
    dir: PathBuf,
    max_bytes: u64,
    max_entry: u64,
    seq: AtomicU64,
}

impl Store {
    /// Opens (creating) the store in `dir`, bounded to `max_bytes` in all
    /// and `max_entry` per version. Removes temporary files left by dead
    /// writers.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64, max_entry: u64) -> io::Result<Store> {
        let dir = dir.into();
        for sub in ["v", "p", "tmp"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        let store = Store { dir, max_bytes, max_entry: max_entry.min(max_bytes), seq: AtomicU64::new(0) };
        if let Ok(rd) = fs::read_dir(store.dir.join("tmp")) {
            let now = SystemTime::now();
            for e in rd.flatten() {
                let old = e.metadata().and_then(|m| m.modified()).map(|t| now.duration_since(t).unwrap_or_default() > STALE_TMP);
                if old.unwrap_or(false) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    pub fn max_entry(&self) -> u64 {
        self.max_entry
    }

    fn version_path(&self, h: &Hash) -> PathBuf {
        self.dir.join("v").join(hex(h))
    }

    fn key_path(&self, key: &str) -> PathBuf {
        self.dir.join("p").join(hex(&sha256(key.as_bytes())))
    }

    /// Is version `h` stored? (Not verified: [`Store::get`] verifies.)
    pub fn has(&self, h: &Hash) -> bool {
        self.version_path(h).is_file()
    }

    /// Version `h`, verified: its metadata and body. A version whose body
    /// does not hash to its name is deleted. Marks it recently used.
    pub fn get(&self, h: &Hash) -> Option<(Meta, Vec<u8>)> {
        let path = self.version_path(h);
        let data = fs::read(&path).ok()?;
        match parse(&data).filter(|(_, body)| sha256(body) == *h) {
            Some((meta, body)) => {
                let (meta, body) = (meta, body.to_vec());
                if let Ok(f) = OpenOptions::new().write(true).open(&path) {
                    let _ = f.set_modified(SystemTime::now());
                }
                Some((meta, body))
            }
            None => {
                self.remove(h, data.len() as u64);
                None
            }
        }
    }

    /// How long ago the version `h` was stored (`None`: not stored).
    pub fn age(&self, h: &Hash) -> Option<std::time::Duration> {
        let stored = fs::metadata(self.version_path(h)).ok()?.modified().ok()?;
        Some(std::time::SystemTime::now().duration_since(stored).unwrap_or_default())
    }

    /// The latest version stored for `key` (a page's URI), if it is still there.
    pub fn latest(&self, key: &str) -> Option<Hash> {
        let s = fs::read_to_string(self.key_path(key)).ok()?;
        let h = unhex(s.trim())?;
        self.has(&h).then_some(h)
    }

    /// Starts writing a version of `key`'s response. Nothing is visible
    /// until [`Writer::commit`]; dropping the writer abandons it.
    pub fn writer(self: &Arc<Self>, key: &str, meta: &Meta) -> io::Result<Writer> {
        let m = meta.encode();
        let mut head = Vec::with_capacity(8 + m.len());
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&(m.len() as u32).to_le_bytes());
        head.extend_from_slice(&m);
        Ok(Writer {
            store: self.clone(),
            key: key.to_string(),
            head,
            mem: Vec::new(),
            spill: None,
            hasher: Sha256::new(),
            len: 0,
            failed: false,
            meta: meta.clone(),
        })
    }

    fn remove(&self, h: &Hash, size: u64) {
        if fs::remove_file(self.version_path(h)).is_ok() {
            let _ = self.account(-(size as i64));
        }
    }

    /// Adds `delta` bytes to the ledger, under the lock; evicts when over.
    fn account(&self, delta: i64) -> io::Result<()> {
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(self.dir.join("lock"))?;
        let _guard = Flock::exclusive(&lock)?;
        let ledger = self.dir.join("ledger");
        let mut total = fs::read(&ledger).ok().and_then(|b| b.try_into().ok()).map(u64::from_le_bytes).unwrap_or(0);
        total = total.saturating_add_signed(delta);
        if total > self.max_bytes {
            total = self.evict(self.max_bytes / 10 * 9);
        }
        write_atomic(&ledger, &total.to_le_bytes(), &self.dir.join("tmp"))
    }

    /// Removes least recently used versions until at most `target` bytes
    /// remain; returns the bytes left (a rescan: the ledger's truth).
    fn evict(&self, target: u64) -> u64 {
        let mut all: Vec<(SystemTime, u64, PathBuf)> = fs::read_dir(self.dir.join("v"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        let m = e.metadata().ok()?;
                        Some((m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len(), e.path()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut total: u64 = all.iter().map(|a| a.1).sum();
        all.sort();
        for (_, size, path) in all {
            if total <= target {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                total -= size;
            }
        }
        total
    }

    /// Bytes held in versions, counted afresh.
    pub fn size(&self) -> u64 {
        fs::read_dir(self.dir.join("v")).map(|rd| rd.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0)
    }
}

/// A version being written (see [`Store::writer`]): in memory up to
/// [`STORE_SPILL`](crate::limits::STORE_SPILL) bytes, then in a file in
/// `tmp/`. Most responses are versions the store already holds, and they
/// then cost their hash and no file write.
pub struct Writer {
    store: Arc<Store>,
    key: String,
    /// The version file's magic and metadata.
    head: Vec<u8>,
    mem: Vec<u8>,
    spill: Option<(PathBuf, io::BufWriter<File>)>,
    hasher: Sha256,
    len: u64,
    failed: bool,
    meta: Meta,
}

impl Writer {
    /// Appends body bytes. Past the store's largest version, or after a
    /// write error, the version is abandoned (the response goes on).
    pub fn write(&mut self, data: &[u8]) {
        if self.failed {
            return;
        }
        self.len += data.len() as u64;
        if self.len > self.store.max_entry {
            self.abandon();
            return;
        }
        self.hasher.update(data);
        if self.spill.is_none() && self.mem.len() + data.len() <= crate::limits::STORE_SPILL {
            self.mem.extend_from_slice(data);
            return;
        }
        if self.spill.is_none() && self.start_spill().is_err() {
            self.abandon();
            return;
        }
        if self.spill.as_mut().is_none_or(|(_, f)| f.write_all(data).is_err()) {
            self.abandon();
        }
    }

    /// Moves what is in memory to a file in `tmp/`.
    fn start_spill(&mut self) -> io::Result<()> {
        let seq = self.store.seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self.store.dir.join("tmp").join(format!("{}.{seq}", std::process::id()));
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        let mut f = io::BufWriter::with_capacity(64 << 10, file);
        let res = f.write_all(&self.head).and_then(|_| f.write_all(&self.mem));
        self.spill = Some((tmp, f));
        self.mem = Vec::new();
        res
    }

    /// Whether the version was abandoned (too large, or a write failed).
    pub fn abandoned(&self) -> bool {
        self.failed
    }

    fn abandon(&mut self) {
        self.failed = true;
        self.mem = Vec::new();
        if let Some((tmp, f)) = self.spill.take() {
            drop(f);
            let _ = fs::remove_file(&tmp);
        }
    }

    /// Puts the version in place (unless the same one is already there)
    /// and makes it the latest for its key. Returns its hash, or `None`
    /// when it was abandoned. The same bytes stored for another page
    /// (another pattern or type) take this page's metadata: the version
    /// is served as a dictionary for the page that stored it last, which
    /// is the page that links it next (otherwise a page whose first
    /// version equals another page's would link a dictionary that
    /// announces the other page's pattern, and never get dcz).
    pub fn commit(mut self) -> io::Result<Option<Hash>> {
        if self.failed {
            return Ok(None);
        }
        self.failed = true; // from here on, Drop has nothing to clean up but a spill file
        let h: Hash = std::mem::take(&mut self.hasher).finalize().into();
        let dest = self.store.version_path(&h);
        let spill = self.spill.take();
        let size = self.len + self.head.len() as u64;
        let old = fs::metadata(&dest).ok().filter(|m| m.is_file()).map(|m| m.len());
        if old.is_some() && read_meta(&dest).as_ref() == Some(&self.meta) {
            if let Some((tmp, f)) = spill {
                drop(f);
                let _ = fs::remove_file(&tmp);
            }
            // Seen again: it is recent.
            if let Ok(f) = OpenOptions::new().write(true).open(&dest) {
                let _ = f.set_modified(SystemTime::now());
            }
        } else {
            // A new version, or the same bytes for another page (its
            // metadata replaces the other's, in one rename).
            match spill {
                Some((tmp, f)) => {
                    // No fsync: a version torn by a power cut fails its
                    // hash check when read and is dropped then.
                    let done = f.into_inner().map_err(|e| e.into_error()).map(drop);
                    if let Err(e) = done.and_then(|_| fs::rename(&tmp, &dest)) {
                        let _ = fs::remove_file(&tmp);
                        return Err(e);
                    }
                }
                None => {
                    let mut data = std::mem::take(&mut self.head);
                    data.extend_from_slice(&self.mem);
                    write_atomic(&dest, &data, &self.store.dir.join("tmp"))?;
                }
            }
            self.store.account(size as i64 - old.unwrap_or(0) as i64)?;
        }
        let key_path = self.store.key_path(&self.key);
        let hx = hex(&h);
        if fs::read(&key_path).ok().as_deref() != Some(hx.as_bytes()) {
            write_atomic(&key_path, hx.as_bytes(), &self.store.dir.join("tmp"))?;
        }
        Ok(Some(h))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.failed {
            self.abandon();
        }
    }
}

/// The metadata of the version file at `path` (its head only).
fn read_meta(path: &Path) -> Option<Meta> {
    use std::io::Read;
    let mut head = Vec::with_capacity(8 + MAX_META);
    File::open(path).ok()?.take(8 + MAX_META as u64).read_to_end(&mut head).ok()?;
    if head.len() < 8 || &head[..4] != MAGIC {
        return None;
    }
    let n = u32::from_le_bytes(head[4..8].try_into().ok()?) as usize;
    Meta::decode(head.get(8..8 + n)?)
}

/// A version file's metadata and body; `None` if malformed.
fn parse(data: &[u8]) -> Option<(Meta, &[u8])> {
    if data.len() < 8 || &data[..4] != MAGIC {
        return None;
    }
    let n = u32::from_le_bytes(data[4..8].try_into().ok()?) as usize;
    if n > MAX_META || 8 + n > data.len() {
        return None;
    }
    Some((Meta::decode(&data[8..8 + n])?, &data[8 + n..]))
}

/// The store in `dir` for this process: opened once, shared by every
/// thread (the server's configuration names it; workers reuse it). The
/// bounds are those of the first opening.
pub fn shared(dir: &Path, max_bytes: u64, max_entry: u64) -> io::Result<Arc<Store>> {
    static OPEN: Mutex<Vec<Arc<Store>>> = Mutex::new(Vec::new());
    let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = open.iter().find(|s| s.dir == dir) {
        return Ok(s.clone());
    }
    let s = Arc::new(Store::open(dir, max_bytes, max_entry)?);
    open.push(s.clone());
    Ok(s)
}

/// Writes `data` to `path` through a temporary file in `tmp_dir` and a rename.
fn write_atomic(path: &Path, data: &[u8], tmp_dir: &Path) -> io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = tmp_dir.join(format!("w.{}.{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
    fs::write(&tmp, data)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// An exclusive `flock` held until dropped (serializes the ledger's
/// updates between the server's processes and threads).
struct Flock<'a>(&'a File);

impl<'a> Flock<'a> {
    fn exclusive(f: &'a File) -> io::Result<Flock<'a>> {
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock on a file descriptor this File owns.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Flock(f))
    }
}

impl Drop for Flock<'_> {
    fn drop(&mut self) {
        use std::os::unix::io::AsRawFd;
        // SAFETY: unlocks the descriptor locked in `exclusive`.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hsync-store-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn meta() -> Meta {
        Meta { content_type: "text/html".into(), pattern: "/page".into() }
    }

    fn put(s: &Arc<Store>, key: &str, body: &[u8]) -> Option<Hash> {
        let mut w = s.writer(key, &meta()).unwrap();
        for c in body.chunks(1000) {
            w.write(c);
        }
        w.commit().unwrap()
    }

    #[test]
    fn large_versions_spill_to_a_file() {
        let d = tmpdir("spill");
        let s = Arc::new(Store::open(&d, 16 << 20, 4 << 20).unwrap());
        let body: Vec<u8> = (0..(crate::limits::STORE_SPILL * 3)).map(|i| (i * 7 % 251) as u8).collect();
        // Abandoned after spilling: the file in tmp/ goes too.
        let mut w = s.writer("/big", &meta()).unwrap();
        w.write(&body);
        assert!(fs::read_dir(d.join("tmp")).unwrap().count() == 1);
        drop(w);
        assert_eq!(fs::read_dir(d.join("tmp")).unwrap().count(), 0);
        let h = put(&s, "/big", &body).unwrap();
        assert_eq!(s.get(&h), Some((meta(), body.clone())));
        assert_eq!(put(&s, "/big", &body), Some(h));
        assert_eq!(fs::read_dir(d.join("tmp")).unwrap().count(), 0);
        assert_eq!(s.size(), fs::metadata(d.join("v").join(hex(&h))).unwrap().len());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn versions_round_trip_and_are_verified() {
        let d = tmpdir("rt");
        let s = Arc::new(Store::open(&d, 1 << 20, 1 << 16).unwrap());
        let body = b"<html>version one</html>".repeat(100);
        let h = put(&s, "/page", &body).unwrap();
        assert_eq!(h, sha256(&body));
        assert_eq!(s.latest("/page"), Some(h));
        assert_eq!(s.get(&h), Some((meta(), body.clone())));
        // The same version again: one file.
        assert_eq!(put(&s, "/page", &body), Some(h));
        assert_eq!(fs::read_dir(d.join("v")).unwrap().count(), 1);
        // The same bytes for another page: one file, with that page's pattern.
        let other = Meta { content_type: "text/html".into(), pattern: "/other".into() };
        let mut w = s.writer("/other", &other).unwrap();
        w.write(&body);
        assert_eq!(w.commit().unwrap(), Some(h));
        assert_eq!(fs::read_dir(d.join("v")).unwrap().count(), 1);
        assert_eq!(s.get(&h), Some((other, body.clone())));
        assert_eq!((s.latest("/page"), s.latest("/other")), (Some(h), Some(h)));
        // A flipped byte on disk: dropped, never served.
        let p = d.join("v").join(hex(&h));
        let mut data = fs::read(&p).unwrap();
        let n = data.len();
        data[n - 3] ^= 1;
        fs::write(&p, &data).unwrap();
        assert_eq!(s.get(&h), None);
        assert!(!p.exists());
        assert_eq!(s.latest("/page"), None);
        // Too large: abandoned, nothing stored.
        assert_eq!(put(&s, "/big", &vec![b'x'; 1 << 17]), None);
        assert_eq!(s.latest("/big"), None);
        assert!(fs::read_dir(d.join("tmp")).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .chars()
            .next()
            .unwrap()
            .is_ascii_digit()));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn bounded_under_churn() {
        let d = tmpdir("churn");
        let max = 200 << 10;
        let s = Arc::new(Store::open(&d, max, 16 << 10).unwrap());
        for i in 0..2000u32 {
            let body = format!("<html>version {i} {}</html>", "x".repeat((i % 50) as usize * 100)).into_bytes();
            put(&s, &format!("/p{}", i % 7), &body).unwrap();
            assert!(s.size() <= max, "after {i}: {} > {max}", s.size());
        }
        let _ = fs::remove_dir_all(&d);
    }
}
