//! `dcz`, Dictionary-Compressed Zstandard (RFC 9842 §4): a response
//! compressed with zstd against a dictionary the browser already holds, a
//! version from the store. The content is a fixed 40-byte header (a zstd
//! skippable-frame header, `5E 2A 4D 18 20 00 00 00`, then the SHA-256 of
//! the dictionary) followed by one zstd frame whose dictionary is the
//! dictionary's raw content. The frame carries zstd's checksum, and its
//! window is at most what RFC 9842 lets a decoder refuse beyond:
//! max(8 MiB, 1.25 x the dictionary), up to 128 MiB.
//!
//! Preparing a dictionary (zstd indexing it) costs more than compressing a
//! page against it, so prepared dictionaries are kept per process in a
//! bounded cache ([`prepared`]).

use crate::error::{Error, Result};
use crate::limits::{DCZ_POOLED_CONTEXT_BYTES, ZSTD_POOLED_CONTEXTS};
use crate::store::Hash;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
use zstd_safe::zstd_sys as sys;

/// The first 8 bytes of every dcz body.
pub const DCZ_MAGIC: [u8; 8] = [0x5e, 0x2a, 0x4d, 0x18, 0x20, 0x00, 0x00, 0x00];
/// Bytes before the zstd frame: the magic and the dictionary's SHA-256.
pub const DCZ_HEADER_LEN: usize = 40;
/// The zstd level. Over the corpus, level 6 against the previous version
/// needs 1.17 times the bytes of `zstd -19 --patch-from` (level 3: 1.29,
/// level 9: 1.10) at a fraction of the time (BENCHMARKS.md).
pub const DCZ_LEVEL: i32 = 6;
/// The window a decoder must accept (RFC 9842 §4): 8 MiB, or 1.25 times
/// the dictionary when that is more, up to 128 MiB.
pub fn max_window_log(dict_len: usize) -> u32 {
    let need = (dict_len as u64).saturating_mul(5) / 4;
    let log = 64 - need.max(8 << 20).leading_zeros() - 1;
    log.clamp(23, 27)
}

/// A dictionary prepared for compression (zstd's tables over its content).
pub struct Prepared {
    cdict: NonNull<sys::ZSTD_CDict>,
    pub hash: Hash,
    pub len: usize,
    size: usize,
}

// SAFETY: a CDict is read-only once created; zstd documents it as usable
// by several compression contexts at once.
unsafe impl Send for Prepared {}
// SAFETY: as above.
unsafe impl Sync for Prepared {}

impl Prepared {
    /// Prepares `dict` (its raw content: never read as a zstd-format dictionary).
    pub fn new(dict: &[u8], hash: Hash) -> Result<Prepared> {
        // SAFETY: getCParams is a pure function; createCDict_advanced copies
        // the dictionary (byCopy) and returns NULL on failure.
        let cdict = unsafe {
            let params = sys::ZSTD_getCParams(DCZ_LEVEL, 0, dict.len());
            sys::ZSTD_createCDict_advanced(
                dict.as_ptr() as *const _,
                dict.len(),
                sys::ZSTD_dictLoadMethod_e::ZSTD_dlm_byCopy,
                sys::ZSTD_dictContentType_e::ZSTD_dct_rawContent,
                params,
                sys::ZSTD_customMem { customAlloc: None, customFree: None, opaque: std::ptr::null_mut() },
            )
        };
        let cdict = NonNull::new(cdict).ok_or(Error::Compression("cannot prepare the dictionary"))?;
        // SAFETY: a valid CDict.
        let size = unsafe { sys::ZSTD_sizeof_CDict(cdict.as_ptr()) };
        Ok(Prepared { cdict, hash, len: dict.len(), size })
    }

    /// Memory it holds.
    pub fn size(&self) -> usize {
        self.size
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        // SAFETY: created by ZSTD_createCDict_advanced, freed once.
        unsafe { sys::ZSTD_freeCDict(self.cdict.as_ptr()) };
    }
}

/// Prepared dictionaries of this process, most recently used last, bounded
/// by the memory they hold.
struct Cache {
    items: Vec<Arc<Prepared>>,
    bytes: usize,
}

static CACHE: Mutex<Cache> = Mutex::new(Cache { items: Vec::new(), bytes: 0 });

/// Memory the process's prepared dictionaries may hold (a page's takes
/// about 1 MiB at level 6).
pub const PREPARED_CACHE_BYTES: usize = 32 << 20;

/// The prepared dictionary `hash`, from the cache or made with `load`
/// (which returns the dictionary's bytes, e.g. from the store).
pub fn prepared(hash: &Hash, load: impl FnOnce() -> Option<Vec<u8>>) -> Option<Arc<Prepared>> {
    {
        let mut c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = c.items.iter().position(|p| p.hash == *hash) {
            let p = c.items.remove(i);
            c.items.push(p.clone());
            return Some(p);
        }
    }
    let dict = load()?;
    let p = Arc::new(Prepared::new(&dict, *hash).ok()?);
    let mut c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    c.bytes += p.size();
    c.items.push(p.clone());
    while c.bytes > PREPARED_CACHE_BYTES && c.items.len() > 1 {
        let old = c.items.remove(0);
        c.bytes -= old.size();
    }
    Some(p)
}

/// A compression context owned by the pool below.
struct PooledCtx(NonNull<sys::ZSTD_CCtx>);

// SAFETY: a context not in use, reset (it refers to no dictionary); it is
// only handed to one encoder at a time.
unsafe impl Send for PooledCtx {}

/// dcz contexts not in use, up to [`ZSTD_POOLED_CONTEXTS`] of at most
/// [`DCZ_POOLED_CONTEXT_BYTES`] each. A dcz context holds zstd's tables for
/// level 6 and a window of the dictionary and the page (1.7 MiB for a
/// 120 KB page, 3.8 MiB for 400 KB): made and freed for every response,
/// those allocations stayed in the free lists of every thread's malloc
/// arena (httpd's children kept ~100 MB so); taken from here, they are
/// made once.
static DCZ_POOL: Mutex<Vec<PooledCtx>> = Mutex::new(Vec::new());

fn take_ctx() -> Option<NonNull<sys::ZSTD_CCtx>> {
    let pooled = DCZ_POOL.lock().ok().and_then(|mut p| p.pop());
    // SAFETY: createCCtx returns NULL or a context we own.
    pooled.map(|c| c.0).or_else(|| NonNull::new(unsafe { sys::ZSTD_createCCtx() }))
}

fn put_ctx(c: NonNull<sys::ZSTD_CCtx>) {
    // SAFETY: a context we own, not in use: the reset drops the session and
    // the parameters, the reference to the dictionary included.
    let size = unsafe {
        sys::ZSTD_CCtx_reset(c.as_ptr(), sys::ZSTD_ResetDirective::ZSTD_reset_session_and_parameters);
        sys::ZSTD_sizeof_CCtx(c.as_ptr())
    };
    if size <= DCZ_POOLED_CONTEXT_BYTES {
        if let Ok(mut p) = DCZ_POOL.lock() {
            if p.len() < ZSTD_POOLED_CONTEXTS {
                p.push(PooledCtx(c));
                return;
            }
        }
    }
    // SAFETY: created by ZSTD_createCCtx, freed once (it left the pool's reach).
    unsafe { sys::ZSTD_freeCCtx(c.as_ptr()) };
}

/// Bytes held by the pooled dcz contexts.
pub fn pooled_bytes() -> usize {
    // SAFETY: pooled contexts are valid and not in use while the lock is held.
    DCZ_POOL.lock().map(|p| p.iter().map(|c| unsafe { sys::ZSTD_sizeof_CCtx(c.0.as_ptr()) }).sum()).unwrap_or(0)
}

/// Bytes held by the prepared dictionaries cached.
pub fn prepared_bytes() -> usize {
    CACHE.lock().map(|c| c.bytes).unwrap_or(0)
}

/// Streaming dcz encoder for one response.
pub struct DczEncoder {
    cctx: NonNull<sys::ZSTD_CCtx>,
    dict: Arc<Prepared>,
    header_done: bool,
    pub input_bytes: u64,
    pub output_bytes: u64,
}

// SAFETY: the context is used by one thread at a time (through &mut self).
unsafe impl Send for DczEncoder {}

impl DczEncoder {
    /// An encoder against `dict`; `expected_len`, when known, sizes the
    /// window (matches reach back over the dictionary and the body so far).
    pub fn new(dict: Arc<Prepared>, expected_len: Option<u64>) -> Result<DczEncoder> {
        let err = Error::Compression("zstd refused the dcz parameters");
        let cctx = take_ctx().ok_or(err.clone())?;
        let enc = DczEncoder { cctx, dict, header_done: false, input_bytes: 0, output_bytes: 0 };
        let span = enc.dict.len as u64 + expected_len.unwrap_or(enc.dict.len as u64).max(64 << 10);
        let want = 64 - span.next_power_of_two().leading_zeros() - 1;
        let window = want.clamp(17, max_window_log(enc.dict.len));
        let c = enc.cctx.as_ptr();
        // SAFETY: a valid context; refCDict keeps a pointer to the CDict,
        // which `enc.dict` (an Arc) keeps alive as long as the context.
        let ok = unsafe {
            [
                sys::ZSTD_CCtx_setParameter(c, sys::ZSTD_cParameter::ZSTD_c_compressionLevel, DCZ_LEVEL),
                sys::ZSTD_CCtx_setParameter(c, sys::ZSTD_cParameter::ZSTD_c_checksumFlag, 1),
                sys::ZSTD_CCtx_setParameter(c, sys::ZSTD_cParameter::ZSTD_c_windowLog, window as i32),
                sys::ZSTD_CCtx_refCDict(c, enc.dict.cdict.as_ptr()),
            ]
        };
        // SAFETY: ZSTD_isError only reads the code.
        if ok.iter().any(|&r| unsafe { sys::ZSTD_isError(r) } != 0) {
            return Err(err);
        }
        if let Some(n) = expected_len {
            // SAFETY: a valid context, before the first byte.
            unsafe { sys::ZSTD_CCtx_setPledgedSrcSize(c, n) };
        }
        Ok(enc)
    }

    fn header(&mut self, out: &mut Vec<u8>) {
        if !self.header_done {
            self.header_done = true;
            out.extend_from_slice(&DCZ_MAGIC);
            out.extend_from_slice(&self.dict.hash);
        }
    }

    fn run(&mut self, data: &[u8], out: &mut Vec<u8>, mode: sys::ZSTD_EndDirective) -> Result<()> {
        let before = out.len();
        self.header(out);
        self.input_bytes += data.len() as u64;
        let mut input = sys::ZSTD_inBuffer { src: data.as_ptr() as *const _, size: data.len(), pos: 0 };
        loop {
            let start = out.len();
            out.reserve(64 << 10);
            let room = out.capacity() - start;
            let mut output = sys::ZSTD_outBuffer { dst: out[start..].as_mut_ptr() as *mut _, size: room, pos: 0 };
            // SAFETY: `output` points at `room` bytes of `out`'s spare
            // capacity, `input` at `data`; set_len covers what zstd wrote.
            let left = unsafe {
                let r = sys::ZSTD_compressStream2(self.cctx.as_ptr(), &mut output, &mut input, mode);
                out.set_len(start + output.pos);
                r
            };
            // SAFETY: reads the code.
            if unsafe { sys::ZSTD_isError(left) } != 0 {
                return Err(Error::Compression("zstd failed to compress the dcz frame"));
            }
            let done = match mode {
                sys::ZSTD_EndDirective::ZSTD_e_continue => input.pos == input.size,
                _ => left == 0,
            };
            if done {
                break;
            }
        }
        self.output_bytes += (out.len() - before) as u64;
        Ok(())
    }

    pub fn update(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.run(data, out, sys::ZSTD_EndDirective::ZSTD_e_continue)
    }

    pub fn flush(&mut self, out: &mut Vec<u8>) -> Result<()> {
        self.run(&[], out, sys::ZSTD_EndDirective::ZSTD_e_flush)
    }

    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<()> {
        self.run(&[], out, sys::ZSTD_EndDirective::ZSTD_e_end)
    }
}

impl Drop for DczEncoder {
    fn drop(&mut self) {
        // Back to the pool (reset: it no longer refers to `self.dict`) or freed.
        put_ctx(self.cctx);
    }
}

/// Decodes a dcz body against `dict` (the client side): checks the header
/// names `dict`, decodes with it as raw content within RFC 9842's window,
/// and refuses output beyond `max_output`. zstd's checksum is verified.
pub fn decode(dict: &[u8], body: &[u8], max_output: u64) -> Result<Vec<u8>> {
    if body.len() < DCZ_HEADER_LEN || body[..8] != DCZ_MAGIC {
        return Err(Error::BadMagic("dcz body"));
    }
    if body[8..40] != crate::store::sha256(dict) {
        return Err(Error::WrongBase);
    }
    let frame = &body[DCZ_HEADER_LEN..];
    let mut d = zstd_safe::DCtx::create();
    let err = |_| Error::Malformed("corrupt dcz frame");
    d.set_parameter(zstd_safe::DParameter::WindowLogMax(max_window_log(dict.len()))).map_err(err)?;
    // SAFETY: the prefix is referenced for this one frame, decoded below
    // before `dict` can go away; the context is dropped at the end.
    let prefix: &'static [u8] = unsafe { std::mem::transmute::<&[u8], &'static [u8]>(dict) };
    d.ref_prefix(prefix).map_err(err)?;
    let mut out = Vec::new();
    let mut input = zstd_safe::InBuffer::around(frame);
    let mut chunk = vec![0u8; 128 << 10];
    loop {
        let mut o = zstd_safe::OutBuffer::around(&mut chunk[..]);
        let left = d.decompress_stream(&mut o, &mut input).map_err(err)?;
        let n = o.pos();
        out.extend_from_slice(&chunk[..n]);
        if out.len() as u64 > max_output {
            return Err(Error::TooLarge("decoded body larger than the configured maximum"));
        }
        if left == 0 {
            // The frame is complete (and its checksum verified); nothing may follow.
            return if input.pos() == frame.len() { Ok(out) } else { Err(Error::Malformed("bytes after the dcz frame")) };
        }
        if n == 0 && input.pos() == frame.len() {
            return Err(Error::Truncated("dcz frame"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sha256;

    fn page(seed: u32, n: usize) -> Vec<u8> {
        (0..n as u32).map(|i| b'a' + ((i.wrapping_mul(2654435761) ^ seed) >> 27) as u8).collect()
    }

    #[test]
    fn round_trip_against_a_dictionary() {
        let old = page(1, 150_000);
        let mut new = old.clone();
        new[70_000..70_010].copy_from_slice(b"0123456789");
        new.extend_from_slice(b"<p>appended</p>");
        let h = sha256(&old);
        let dict = prepared(&h, || Some(old.clone())).unwrap();
        let mut e = DczEncoder::new(dict, Some(new.len() as u64)).unwrap();
        let mut out = Vec::new();
        for c in new.chunks(7000) {
            e.update(c, &mut out).unwrap();
        }
        e.finish(&mut out).unwrap();
        assert_eq!(&out[..8], &DCZ_MAGIC);
        assert_eq!(&out[8..40], &h);
        assert!(out.len() < new.len() / 50, "{} bytes against the dictionary", out.len());
        assert_eq!(decode(&old, &out, 1 << 20).unwrap(), new);
        assert!(matches!(decode(&new, &out, 1 << 20), Err(Error::WrongBase)));
        let mut bad = out.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(decode(&old, &bad, 1 << 20).is_err(), "zstd's checksum catches a flipped byte");
        assert!(matches!(decode(&old, &out, 1000), Err(Error::TooLarge(_))));
        // The cache returns the same prepared dictionary.
        let again = prepared(&h, || panic!("cached")).unwrap();
        assert_eq!(again.len, old.len());
    }

    #[test]
    fn window_follows_rfc_9842() {
        assert_eq!(max_window_log(100_000), 23);
        assert_eq!(max_window_log(8 << 20), 23); // 10 MiB needed: 2^23 still the floor's log
        assert_eq!(max_window_log(100 << 20), 26);
        assert_eq!(max_window_log(1 << 30), 27);
    }

    /// Contexts come back from the pool with no trace of their last
    /// response: a page encoded against one dictionary, then against
    /// another (in the same and in other threads, some encoders dropped
    /// halfway, some with no length announced), decodes against its own;
    /// the pool stays bounded.
    #[test]
    fn pooled_contexts_start_clean() {
        let (a, b) = (page(3, 120_000), page(4, 90_000));
        let (ha, hb) = (sha256(&a), sha256(&b));
        let da = prepared(&ha, || Some(a.clone())).unwrap();
        let db = prepared(&hb, || Some(b.clone())).unwrap();
        std::thread::scope(|s| {
            for t in 0..3 * ZSTD_POOLED_CONTEXTS {
                let (da, db, a, b) = (da.clone(), db.clone(), &a, &b);
                s.spawn(move || {
                    for round in 0..4 {
                        let (dict, base) = if (t + round) % 2 == 0 { (&da, a) } else { (&db, b) };
                        let mut new = base.clone();
                        new[1000 + t] ^= 1;
                        let mut e = DczEncoder::new(dict.clone(), if round == 1 { None } else { Some(new.len() as u64) }).unwrap();
                        let mut out = Vec::new();
                        e.update(&new[..50_000], &mut out).unwrap();
                        if round == 3 {
                            continue; // dropped halfway through its frame
                        }
                        e.update(&new[50_000..], &mut out).unwrap();
                        e.finish(&mut out).unwrap();
                        assert_eq!(decode(base, &out, 1 << 20).unwrap(), new);
                    }
                });
            }
        });
        {
            let p = DCZ_POOL.lock().unwrap();
            assert!(!p.is_empty() && p.len() <= ZSTD_POOLED_CONTEXTS, "{} pooled", p.len());
        }
        // What the process keeps counts them (and the two dictionaries).
        assert!(crate::ffi::hsync_cached_bytes() as usize > da.size().max(db.size()));
    }
}
