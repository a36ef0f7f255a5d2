//! The on-disk cache: one file per URL, written atomically, checked on every read.
//!
//! An entry file `<xxh3-128 of the URL>.hse` holds
//! `body || meta (JSON) || meta_len: u32 LE || meta_xxh3: u64 LE || body_xxh3: u64 LE || MAGIC`.
//! The metadata sits after the body so a response can be written while it
//! arrives. It is written to a temporary file, fsynced and renamed into
//! place (then the directory is fsynced), so a crash leaves either the old
//! entry or the new one, plus perhaps a stray `.tmp` file that `open` removes.
//! Every read checks the trailer, the metadata digest, the body length and
//! the body digest; an entry failing any check is deleted and treated as absent.
//!
//! Recency for least-recently-used eviction is the file's modification
//! time, touched on every hit, so it survives restarts.

use hsync_core::hash::{xxh3_128, xxh3_64, Xxh3_64 as Xxh3};
use http_cache_semantics::CachePolicy;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

const MAGIC: &[u8; 8] = b"HSYNCE01";
const TRAILER: usize = 4 + 8 + 8 + 8;
const EXT: &str = "hse";
/// Largest metadata block accepted when reading.
const MAX_META: u32 = 4 << 20;

/// What is stored next to the body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub url: String,
    pub status: u16,
    /// The response headers as served (identity coding, hsync names removed from Vary).
    pub headers: Vec<(String, String)>,
    /// The RFC 9111 state (http-cache-semantics).
    pub policy: CachePolicy,
    pub body_len: u64,
    pub body_xxh3: u64,
    /// Unix seconds of the last exchange with the origin (200 or 304).
    pub fetched_at: u64,
    /// Bytes that came over the wire the last time the body was fetched.
    pub wire_bytes: u64,
    /// Whether the entry was stored under a shared cache's rules (`None`:
    /// written by a version that did not record it). A shared cache uses
    /// only entries stored as shared: one stored by a one-user proxy
    /// (`--cache-private`) in the same directory may hold that user's
    /// private pages.
    #[serde(default)]
    pub shared: Option<bool>,
    /// For an entry of the dictionary memory ([`crate::dict`]): what the dictionary is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dictionary: Option<crate::dict::DictMeta>,
    /// Unix seconds when the origin first answered 404 or 410 for this
    /// stored page: the copy is kept (until evicted) for the proxy's
    /// "removed by its author" link, and no longer served for the URL itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_at: Option<u64>,
}

impl Meta {
    /// The stored response's Vary field names, comma-joined (`None` without Vary).
    pub fn vary(&self) -> Option<String> {
        let v: Vec<&str> = self
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("vary"))
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        (!v.is_empty()).then(|| v.join(", "))
    }
}

/// A verified entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub meta: Meta,
    pub body: bytes::Bytes,
}

/// What the index knows about an entry, for eviction and the status page.
#[derive(Debug, Clone)]
pub struct EntryInfo {
    pub url: String,
    pub size: u64,
    pub body_len: u64,
    pub last_used: SystemTime,
    pub fetched_at: u64,
    /// The stored response's Vary (see [`Meta::vary`]).
    pub vary: Option<String>,
    /// What the entry is, in the dictionary memory.
    pub dictionary: Option<crate::dict::DictMeta>,
}

struct Index {
    map: HashMap<String, EntryInfo>,
    total: u64,
}

pub struct DiskCache {
    dir: PathBuf,
    max_size: u64,
    index: Mutex<Index>,
    tmp_seq: AtomicU64,
    /// Entries found corrupt (and deleted) since start.
    pub corrupt_dropped: AtomicU64,
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The file name stem for a URL.
pub fn key_for(url: &str) -> String {
    format!("{:032x}", xxh3_128(url.as_bytes()))
}

impl DiskCache {
    /// Opens (creating) a cache directory bounded to `max_size` bytes.
    /// Removes temporary files left by a crash, and entries whose trailer is unreadable.
    pub fn open(dir: impl Into<PathBuf>, max_size: u64) -> io::Result<DiskCache> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        let mut map = HashMap::new();
        let mut total = 0;
        for de in fs::read_dir(&dir)? {
            let de = de?;
            let path = de.path();
            let name = de.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                let _ = fs::remove_file(&path);
                continue;
            }
            let Some(stem) = name.strip_suffix(&format!(".{EXT}")) else { continue };
            match read_meta_only(&path) {
                Ok((meta, size, mtime)) if key_for(&meta.url) == stem => {
                    total += size;
                    let vary = meta.vary();
                    map.insert(
                        stem.to_string(),
                        EntryInfo {
                            url: meta.url,
                            size,
                            body_len: meta.body_len,
                            last_used: mtime,
                            fetched_at: meta.fetched_at,
                            vary,
                            dictionary: meta.dictionary,
                        },
                    );
                }
                _ => {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        let cache = DiskCache {
            dir,
            max_size,
            index: Mutex::new(Index { map, total }),
            tmp_seq: AtomicU64::new(0),
            corrupt_dropped: AtomicU64::new(0),
        };
        cache.evict(None);
        Ok(cache)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// Path of the entry file for `url` (tests use it to damage entries).
    pub fn path_for(&self, url: &str) -> PathBuf {
        self.dir.join(format!("{}.{EXT}", key_for(url)))
    }

    /// Reads and verifies the entry for `url`. A damaged entry is deleted and `None` returned.
    pub fn get(&self, url: &str) -> Option<Entry> {
        let path = self.path_for(url);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(_) => {
                self.forget(url);
                return None;
            }
        };
        match verify(&data) {
            Some((meta, body_len)) if meta.url == url => {
                let mut data = data;
                let size = data.len() as u64;
                data.truncate(body_len);
                // Touch for LRU; failure to touch is harmless.
                let now = SystemTime::now();
                if let Ok(f) = OpenOptions::new().write(true).open(&path) {
                    let _ = f.set_modified(now);
                }
                let mut idx = self.index.lock().unwrap();
                let key = key_for(url);
                let info = idx.map.entry(key).or_insert_with(|| EntryInfo {
                    url: url.to_string(),
                    size,
                    body_len: meta.body_len,
                    last_used: now,
                    fetched_at: meta.fetched_at,
                    vary: meta.vary(),
                    dictionary: meta.dictionary.clone(),
                });
                info.last_used = now;
                Some(Entry { meta, body: bytes::Bytes::from(data) })
            }
            _ => {
                self.corrupt_dropped.fetch_add(1, Ordering::Relaxed);
                let _ = fs::remove_file(&path);
                self.forget(url);
                None
            }
        }
    }

    /// Starts writing a new entry; call [`EntryWriter::commit`] to put it in place.
    pub fn writer(&self, url: &str) -> io::Result<EntryWriter<'_>> {
        let seq = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!("{}.{}.{}.tmp", key_for(url), std::process::id(), seq));
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        Ok(EntryWriter { cache: self, url: url.to_string(), tmp, file: Some(file), hasher: Xxh3::new(), len: 0, failed: false })
    }

    /// Writes a whole entry atomically.
    pub fn put(&self, mut meta: Meta, body: &[u8]) -> io::Result<()> {
        let mut w = self.writer(&meta.url.clone())?;
        w.write(body)?;
        meta.url = w.url.clone();
        w.commit(meta)
    }

    /// The metadata of the entry for `url`, from its trailer only (the body
    /// is neither read nor checked: use [`DiskCache::get`] before serving it).
    pub fn get_meta(&self, url: &str) -> Option<Meta> {
        match read_meta_only(&self.path_for(url)) {
            Ok((meta, _, _)) if meta.url == url => Some(meta),
            _ => None,
        }
    }

    /// Marks the stored page as removed by its origin (404/410), once:
    /// see [`Meta::removed_at`]. Returns whether an entry is so marked.
    pub fn mark_removed(&self, url: &str, at: u64) -> bool {
        let Some(e) = self.get(url) else { return false };
        if e.meta.removed_at.is_some() {
            return true;
        }
        if e.meta.status != 200 {
            self.remove(url);
            return false;
        }
        let mut meta = e.meta.clone();
        meta.removed_at = Some(at);
        self.update_meta(&e, meta).is_ok()
    }

    /// Replaces the metadata of an entry, keeping its body (after a 304).
    pub fn update_meta(&self, entry: &Entry, meta: Meta) -> io::Result<()> {
        self.put(meta, &entry.body)
    }

    pub fn remove(&self, url: &str) {
        let _ = fs::remove_file(self.path_for(url));
        self.forget(url);
    }

    fn forget(&self, url: &str) {
        let mut idx = self.index.lock().unwrap();
        if let Some(info) = idx.map.remove(&key_for(url)) {
            idx.total -= info.size;
        }
    }

    /// Everything in the index, most recently used first.
    pub fn list(&self) -> Vec<EntryInfo> {
        let idx = self.index.lock().unwrap();
        let mut v: Vec<EntryInfo> = idx.map.values().cloned().collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.last_used));
        v
    }

    /// The Vary of the entry held for `url`, as the index knows it (no disk read).
    pub fn stored_vary(&self, url: &str) -> Option<String> {
        self.index.lock().unwrap().map.get(&key_for(url)).and_then(|i| i.vary.clone())
    }

    pub fn total_size(&self) -> u64 {
        self.index.lock().unwrap().total
    }

    /// Removes least recently used entries until the total fits; `keep` is never evicted.
    fn evict(&self, keep: Option<&str>) {
        let mut idx = self.index.lock().unwrap();
        while idx.total > self.max_size {
            let victim = idx.map.iter().filter(|(k, _)| Some(k.as_str()) != keep).min_by_key(|(_, i)| i.last_used).map(|(k, _)| k.clone());
            let Some(k) = victim else { break };
            let info = idx.map.remove(&k).unwrap();
            idx.total -= info.size;
            let _ = fs::remove_file(self.dir.join(format!("{k}.{EXT}")));
        }
    }
}

/// A new entry being written to a temporary file.
pub struct EntryWriter<'a> {
    cache: &'a DiskCache,
    url: String,
    tmp: PathBuf,
    file: Option<File>,
    hasher: Xxh3,
    len: u64,
    failed: bool,
}

impl EntryWriter<'_> {
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("an earlier write failed"));
        }
        if let Err(e) = self.file.as_mut().unwrap().write_all(data) {
            self.failed = true;
            return Err(e);
        }
        self.hasher.update(data);
        self.len += data.len() as u64;
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends the metadata (its length and digest fields are filled in here),
    /// fsyncs, renames into place and evicts what no longer fits.
    pub fn commit(mut self, mut meta: Meta) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("an earlier write failed"));
        }
        meta.url = self.url.clone();
        meta.body_len = self.len;
        meta.body_xxh3 = self.hasher.digest();
        let json = serde_json::to_vec(&meta).map_err(io::Error::other)?;
        let mut f = self.file.take().unwrap();
        let mut trailer = Vec::with_capacity(json.len() + TRAILER);
        trailer.extend_from_slice(&json);
        trailer.extend_from_slice(&(json.len() as u32).to_le_bytes());
        trailer.extend_from_slice(&xxh3_64(&json).to_le_bytes());
        trailer.extend_from_slice(&meta.body_xxh3.to_le_bytes());
        trailer.extend_from_slice(MAGIC);
        f.write_all(&trailer)?;
        f.sync_all()?;
        drop(f);
        let size = self.len + trailer.len() as u64;
        if size > self.cache.max_size {
            let _ = fs::remove_file(&self.tmp);
            self.cache.remove(&self.url);
            return Ok(());
        }
        let dest = self.cache.path_for(&self.url);
        fs::rename(&self.tmp, &dest)?;
        if let Ok(d) = File::open(&self.cache.dir) {
            let _ = d.sync_all();
        }
        {
            let mut idx = self.cache.index.lock().unwrap();
            let key = key_for(&self.url);
            let info = EntryInfo {
                url: self.url.clone(),
                size,
                body_len: self.len,
                last_used: SystemTime::now(),
                fetched_at: meta.fetched_at,
                vary: meta.vary(),
                dictionary: meta.dictionary.clone(),
            };
            if let Some(old) = idx.map.insert(key, info) {
                idx.total -= old.size;
            }
            idx.total += size;
        }
        self.cache.evict(Some(&key_for(&self.url)));
        Ok(())
    }
}

impl Drop for EntryWriter<'_> {
    fn drop(&mut self) {
        if self.file.is_some() {
            self.file = None;
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Checks a whole entry file; returns the metadata and the body length.
fn verify(data: &[u8]) -> Option<(Meta, usize)> {
    if data.len() < TRAILER || &data[data.len() - 8..] != MAGIC {
        return None;
    }
    let t = data.len() - TRAILER;
    let meta_len = u32::from_le_bytes(data[t..t + 4].try_into().ok()?);
    let meta_sum = u64::from_le_bytes(data[t + 4..t + 12].try_into().ok()?);
    let body_sum = u64::from_le_bytes(data[t + 12..t + 20].try_into().ok()?);
    if meta_len > MAX_META || meta_len as usize > t {
        return None;
    }
    let body_len = t - meta_len as usize;
    let json = &data[body_len..t];
    if xxh3_64(json) != meta_sum {
        return None;
    }
    let meta: Meta = serde_json::from_slice(json).ok()?;
    let body = &data[..body_len];
    if meta.body_len != body_len as u64 || meta.body_xxh3 != body_sum || xxh3_64(body) != body_sum {
        return None;
    }
    Some((meta, body_len))
}

/// Reads only the trailer and metadata (for the index at start-up).
fn read_meta_only(path: &Path) -> io::Result<(Meta, u64, SystemTime)> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "bad cache entry");
    let mut f = File::open(path)?;
    let md = f.metadata()?;
    let size = md.len();
    if size < TRAILER as u64 {
        return Err(bad());
    }
    f.seek(SeekFrom::Start(size - TRAILER as u64))?;
    let mut t = [0u8; TRAILER];
    f.read_exact(&mut t)?;
    if &t[20..] != MAGIC {
        return Err(bad());
    }
    let meta_len = u32::from_le_bytes(t[0..4].try_into().unwrap());
    let meta_sum = u64::from_le_bytes(t[4..12].try_into().unwrap());
    if meta_len > MAX_META || meta_len as u64 + TRAILER as u64 > size {
        return Err(bad());
    }
    f.seek(SeekFrom::Start(size - TRAILER as u64 - meta_len as u64))?;
    let mut json = vec![0u8; meta_len as usize];
    f.read_exact(&mut json)?;
    if xxh3_64(&json) != meta_sum {
        return Err(bad());
    }
    let meta: Meta = serde_json::from_slice(&json).map_err(|_| bad())?;
    if meta.body_len + meta_len as u64 + TRAILER as u64 != size {
        return Err(bad());
    }
    Ok((meta, size, md.modified().unwrap_or(UNIX_EPOCH)))
}
