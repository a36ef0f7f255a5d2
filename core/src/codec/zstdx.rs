//! Thin wrappers over zstd for literal chunks: magicless frames compressed
//! against a prefix (the last bytes of the rebuilt instance, known to both sides).

use crate::error::{Error, Result};
use crate::limits::ZSTD_POOLED_CONTEXTS;
use std::sync::Mutex;
use zstd_safe::{CCtx, CParameter, DCtx, DParameter, FrameFormat};

/// log2 of the entries in zstd's hash and chain tables for a frame and
/// its prefix of `data` bytes in all: one entry per byte, and at most
/// 2^16 in the hash table and 2^18 in the chain table (1.25 MiB for
/// both). zstd would size them for the level (up to 2^22 entries at level
/// 9, 10+ MiB a context). Indexing the prefix is most of a chunk's time,
/// and the hash table is written at random: kept at 256 KiB, it stays in
/// cache (a 10 MB `hsync delta` ran 7 % faster than with 2^17). The chain
/// table is written in order and holds the matches further back: 2^18
/// keeps the corpus at 0.0735 of gzip, where 2^17 gave 0.0738 and 2^16
/// 0.0743. A page's chunk needs 2^15–2^17 entries.
fn table_logs(data: usize) -> (u32, u32) {
    let need = usize::BITS - data.saturating_sub(1).leading_zeros();
    (need.clamp(12, 16), need.clamp(12, 18))
}

/// Compression contexts not in use. A context is taken for one frame and
/// put back: a server with many worker threads (httpd's mpm_event runs
/// dozens per child) keeps as many contexts as frames are compressed at
/// once, not one per thread, up to [`ZSTD_POOLED_CONTEXTS`]; one put back
/// when the pool is full is freed, so a process's memory does not grow
/// with the highest concurrency it ever saw.
static CCTX_POOL: Mutex<Vec<CCtx<'static>>> = Mutex::new(Vec::new());

fn take_cctx() -> CCtx<'static> {
    let pooled = CCTX_POOL.lock().map(|mut p| p.pop()).unwrap_or(None);
    pooled.unwrap_or_else(CCtx::create)
}

fn put_cctx(c: CCtx<'static>) {
    let spare = match CCTX_POOL.lock() {
        Ok(mut p) if p.len() < ZSTD_POOLED_CONTEXTS => {
            p.push(c);
            None
        }
        _ => Some(c),
    };
    // Freed outside the lock.
    drop(spare);
}

/// Bytes held by the pooled contexts.
pub fn pooled_bytes() -> usize {
    CCTX_POOL.lock().map(|p| p.iter().map(|c| c.sizeof()).sum()).unwrap_or(0)
}

/// Compresses `src` as one magicless zstd frame referencing `prefix`.
/// Appends to `out`; returns the compressed length.
pub fn compress(level: i32, window_log: u32, prefix: &[u8], src: &[u8], out: &mut Vec<u8>) -> Result<usize> {
    let mut cctx = take_cctx();
    let r = compress_with(&mut cctx, level, window_log, prefix, src, out);
    put_cctx(cctx);
    r
}

fn set_params(cctx: &mut CCtx<'static>, level: i32, window_log: u32, data: usize) -> Result<()> {
    let err = |_| Error::Compression("zstd compression failed");
    cctx.reset(zstd_safe::ResetDirective::SessionAndParameters).map_err(err)?;
    cctx.set_parameter(CParameter::CompressionLevel(level)).map_err(err)?;
    cctx.set_parameter(CParameter::Format(FrameFormat::Magicless)).map_err(err)?;
    cctx.set_parameter(CParameter::ChecksumFlag(false)).map_err(err)?;
    cctx.set_parameter(CParameter::ContentSizeFlag(false)).map_err(err)?;
    cctx.set_parameter(CParameter::DictIdFlag(false)).map_err(err)?;
    cctx.set_parameter(CParameter::WindowLog(window_log)).map_err(err)?;
    let (hash_log, chain_log) = table_logs(data);
    cctx.set_parameter(CParameter::HashLog(hash_log)).map_err(err)?;
    cctx.set_parameter(CParameter::ChainLog(chain_log)).map_err(err)?;
    // Hash chains, not zstd's row match finder: a chunk is small and its
    // context large, and indexing the context is most of the work; the
    // chains index it about twice as fast (a page's delta is as small).
    cctx.set_parameter(CParameter::UseRowMatchFinder(zstd_safe::ParamSwitch::Disable)).map_err(err)?;
    Ok(())
}

fn compress_with(cctx: &mut CCtx<'static>, level: i32, window_log: u32, prefix: &[u8], src: &[u8], out: &mut Vec<u8>) -> Result<usize> {
    {
        let err = |_| Error::Compression("zstd compression failed");
        set_params(cctx, level, window_log, prefix.len() + src.len())?;
        // SAFETY: the prefix is referenced only until the end of the next
        // frame, which compress2 below completes before we return; the
        // 'static is never observed outside this call.
        let prefix: &'static [u8] = unsafe { std::mem::transmute::<&[u8], &'static [u8]>(prefix) };
        if !prefix.is_empty() {
            cctx.ref_prefix(prefix).map_err(err)?;
        }
        let start = out.len();
        out.resize(start + zstd_safe::compress_bound(src.len()), 0);
        let res = cctx.compress2(&mut out[start..], src);
        // Drop any reference to the prefix, whatever happened.
        let _ = cctx.reset(zstd_safe::ResetDirective::SessionOnly);
        let n = match res {
            Ok(n) => n,
            Err(_) => {
                out.truncate(start);
                return Err(Error::Compression("zstd compression failed"));
            }
        };
        out.truncate(start + n);
        Ok(n)
    }
}

/// Decompresses one magicless frame referencing `prefix` into `out`
/// (replaced); the result must be exactly `raw_len` bytes. The output buffer
/// is sized by `raw_len`, which the caller has already bounded, never by
/// what the frame claims.
pub fn decompress(dctx: &mut DCtx<'static>, prefix: &[u8], src: &[u8], raw_len: usize, out: &mut Vec<u8>) -> Result<()> {
    let err = |_| Error::Compression("corrupt literal chunk");
    dctx.reset(zstd_safe::ResetDirective::SessionAndParameters).map_err(err)?;
    dctx.set_parameter(DParameter::Format(FrameFormat::Magicless)).map_err(err)?;
    dctx.set_parameter(DParameter::WindowLogMax(26)).map_err(err)?;
    // SAFETY: as in compress(): the prefix is used by this one frame only,
    // and the session is reset before we return.
    let prefix: &'static [u8] = unsafe { std::mem::transmute::<&[u8], &'static [u8]>(prefix) };
    if !prefix.is_empty() {
        dctx.ref_prefix(prefix).map_err(err)?;
    }
    out.clear();
    out.resize(raw_len, 0);
    let res = dctx.decompress(&mut out[..], src);
    let _ = dctx.reset(zstd_safe::ResetDirective::SessionAndParameters);
    let n = res.map_err(err)?;
    if n != raw_len {
        return Err(Error::Malformed("literal chunk length differs from its header"));
    }
    // Exactly one frame (docs/protocol.md §4.2): zstd decodes frames that
    // follow one another as one output, which another decoder need not.
    if one_frame_len(src) != Some(src.len()) {
        return Err(Error::Malformed("literal chunk: bytes after its zstd frame"));
    }
    Ok(())
}

/// The length of the magicless frame `src` starts with, found by walking
/// its block headers (zstd's own walk, on the frame with its magic put back).
fn one_frame_len(src: &[u8]) -> Option<usize> {
    let mut framed = Vec::with_capacity(src.len() + 4);
    framed.extend_from_slice(&0xFD2F_B528u32.to_le_bytes()); // ZSTD_MAGICNUMBER
    framed.extend_from_slice(src);
    zstd_safe::find_frame_compressed_size(&framed).ok().map(|n| n - 4)
}

/// A decompression context for [`decompress`].
pub fn dctx() -> DCtx<'static> {
    DCtx::create()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{MAX_LIT_CHUNK, SERVER_MAX_BLOCK_LEN, ZSTD_TABLES_BOUND};

    /// Two frames one after the other decode as one output in zstd; the
    /// format allows one frame per chunk.
    #[test]
    fn one_frame_only() {
        let (a, b) = (b"hello, hello, hello".repeat(20), b"world, world".repeat(20));
        let (mut fa, mut fb) = (Vec::new(), Vec::new());
        compress(3, 20, &[], &a, &mut fa).unwrap();
        compress(3, 20, &[], &b, &mut fb).unwrap();
        let mut out = Vec::new();
        decompress(&mut dctx(), &[], &fa, a.len(), &mut out).unwrap();
        assert_eq!(out, a);
        let both = [fa.clone(), fb].concat();
        let e = decompress(&mut dctx(), &[], &both, a.len() + b.len(), &mut out).unwrap_err();
        assert!(matches!(e, Error::Malformed(m) if m.contains("after its zstd frame")), "{e:?}");
        let e = decompress(&mut dctx(), &[], &[&fa[..], b"x"].concat(), a.len(), &mut out).unwrap_err();
        assert!(matches!(e, Error::Malformed(_) | Error::Compression(_)), "{e:?}");
    }

    /// A context's memory after the largest chunk an encoder with the
    /// default options compresses: a 32 KiB batch against two windows of
    /// context and a block (the figure limits.rs promises), and after a
    /// chunk of the largest size a decoder accepts.
    #[test]
    fn context_memory_is_bounded() {
        let window = 1usize << crate::delta::EncodeOptions::default().window_log;
        let data: Vec<u8> = (0..(4usize << 20) as u32).map(|i| (i.wrapping_mul(2654435761) >> 21) as u8).collect();
        let mut c = CCtx::create();
        for (prefix, src) in [(2 * window + SERVER_MAX_BLOCK_LEN as usize, 32 << 10), (2 * window, MAX_LIT_CHUNK / 2)] {
            let mut out = Vec::new();
            compress_with(&mut c, 9, 20, &data[..prefix], &data[prefix..prefix + src], &mut out).unwrap();
            eprintln!("zstd context: {} bytes", c.sizeof());
            assert!(c.sizeof() <= ZSTD_TABLES_BOUND, "{} > {ZSTD_TABLES_BOUND}", c.sizeof());
        }
    }

    /// However many frames were compressed at once, the pool keeps at
    /// most ZSTD_POOLED_CONTEXTS contexts afterwards, and the contexts it
    /// hands out again still compress right.
    #[test]
    fn pool_keeps_a_bounded_number_of_contexts() {
        let threads = 4 * ZSTD_POOLED_CONTEXTS;
        let barrier = std::sync::Barrier::new(threads);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    let c = take_cctx();
                    barrier.wait(); // all of them in use at once
                    put_cctx(c);
                });
            }
        });
        assert!(CCTX_POOL.lock().unwrap().len() <= ZSTD_POOLED_CONTEXTS);
        let a: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut out = Vec::new();
        compress(3, 20, &a[..50_000], &a[50_000..], &mut out).unwrap();
        let mut back = Vec::new();
        decompress(&mut dctx(), &a[..50_000], &out, 50_000, &mut back).unwrap();
        assert_eq!(back, &a[50_000..]);
    }
}
