//! Applying a delta to the old instance. Every field is checked before use,
//! nothing is allocated from an unchecked length, and the result is
//! returned only after its digest matched.

use crate::codec::wire::{unzigzag, Reader};
use crate::codec::zstdx;
use crate::delta::{DELTA_MAGIC, DELTA_VERSION, OP_COPY, OP_END, OP_INSERT, OP_LIT_RAW, OP_LIT_ZSTD};
use crate::error::{Error, Result};
use crate::hash::{digest, Digest, Digester, DIGEST_LEN};
use crate::limits::{
    CONTEXT_CREDIT_PER_BYTE, CONTEXT_CREDIT_START, MAX_BLOCK_LEN, MAX_LIT_CHUNK, MAX_WINDOW_LOG, MIN_SUB_LEN, MIN_WINDOW_LOG,
};

/// Limits for [`patch_with_limits`]. There is no default: the caller
/// says how large a response it is ready to hold (a proxy, its body limit).
#[derive(Debug, Clone, Copy)]
pub struct PatchLimits {
    /// Largest instance a delta may rebuild.
    pub max_output: u64,
}

/// The header fields of a delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaHeader {
    /// Length of the COPY unit (a sub-block of the signature).
    pub block_len: u32,
    pub base_len: u64,
    pub window_log: u8,
}

fn read_header(r: &mut Reader<'_>) -> Result<DeltaHeader> {
    let magic = r.bytes(3, "delta header")?;
    if magic != DELTA_MAGIC {
        return Err(Error::BadMagic("delta"));
    }
    let v = r.u8("delta header")?;
    if v != DELTA_VERSION {
        return Err(Error::UnsupportedVersion(v));
    }
    let block_len = r.varint("delta unit length")?;
    if !(MIN_SUB_LEN as u64..=MAX_BLOCK_LEN as u64).contains(&block_len) {
        return Err(Error::Malformed("delta unit length out of range"));
    }
    let base_len = r.varint("delta base length")?;
    let window_log = r.u8("delta header")?;
    if !(MIN_WINDOW_LOG..=MAX_WINDOW_LOG).contains(&window_log) {
        return Err(Error::Malformed("delta window out of range"));
    }
    Ok(DeltaHeader { block_len: block_len as u32, base_len, window_log })
}

/// Reads only the header of a delta.
pub fn delta_header(delta: &[u8]) -> Result<DeltaHeader> {
    read_header(&mut Reader::new(delta))
}

/// Rebuilds the new instance from `old` and `delta`, refusing to produce
/// more than `max_output` bytes.
pub fn patch(old: &[u8], delta: &[u8], max_output: u64) -> Result<Vec<u8>> {
    patch_with_limits(old, delta, &PatchLimits { max_output })
}

/// A run of `count` units starting `rel` units from `next`, checked against
/// the base instance: (first unit, byte range). `None` when any part of it
/// falls outside, or it is empty.
fn unit_run(next: u64, rel: i64, count: u64, units: u64, ul: u64, base_len: u64) -> Option<(u64, u64, u64)> {
    let first = u64::try_from(i64::try_from(next).ok()?.checked_add(rel)?).ok()?;
    if count == 0 || first >= units || count > units - first {
        return None;
    }
    // first + count <= units = ceil(base_len / ul): the products stay below base_len + ul.
    Some((first, first.checked_mul(ul)?, (first + count).checked_mul(ul)?.min(base_len)))
}

pub fn patch_with_limits(old: &[u8], delta: &[u8], limits: &PatchLimits) -> Result<Vec<u8>> {
    let mut out = Whole(Vec::new());
    decode(old, delta, limits, &mut out)?;
    Ok(out.0)
}

/// Streaming form of [`patch_with_limits`]: hands the rebuilt instance to
/// `sink` in order, piece by piece, holding only the last window of it (the
/// context of literal chunks) instead of all of it. Returns its length.
///
/// The pieces are verified only when this returns `Ok`: on any error the
/// caller MUST discard everything `sink` received (the CLI writes them to a
/// temporary file that is renamed into place only on success).
pub fn patch_to(old: &[u8], delta: &[u8], limits: &PatchLimits, sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> Result<u64> {
    let mut out = Streamed { buf: Vec::new(), sent: 0, hasher: Digester::new(), sink, keep: 0 };
    decode(old, delta, limits, &mut out)?;
    Ok(out.sent)
}

/// Where [`decode`] puts the rebuilt instance.
trait Out {
    /// Bytes written so far.
    fn len(&self) -> u64;
    fn extend(&mut self, bytes: &[u8]) -> Result<()>;
    /// The last `n` bytes written (`n` at most the window given to [`Out::window`]).
    fn tail(&self, n: usize) -> &[u8];
    fn window(&mut self, w: usize);
    /// Everything written, then the digest of it all.
    fn finish(&mut self) -> Result<Digest>;
}

/// The whole instance in memory.
struct Whole(Vec<u8>);

impl Out for Whole {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn extend(&mut self, bytes: &[u8]) -> Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
    fn tail(&self, n: usize) -> &[u8] {
        &self.0[self.0.len() - n..]
    }
    fn window(&mut self, _: usize) {}
    fn finish(&mut self) -> Result<Digest> {
        Ok(digest(&self.0))
    }
}

/// The last window and a batch in memory; older bytes handed to the sink.
struct Streamed<'a> {
    buf: Vec<u8>,
    /// Bytes already handed to the sink (they precede `buf`).
    sent: u64,
    hasher: Digester,
    sink: &'a mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    keep: usize,
}

/// Bytes gathered beyond the window before they are handed on.
const STREAM_BATCH: usize = 256 << 10;

impl Streamed<'_> {
    fn send(&mut self, n: usize) -> Result<()> {
        let piece = &self.buf[..n];
        self.hasher.update(piece);
        (self.sink)(piece)?;
        self.sent += n as u64;
        self.buf.drain(..n);
        Ok(())
    }
}

impl Out for Streamed<'_> {
    fn len(&self) -> u64 {
        self.sent + self.buf.len() as u64
    }
    fn extend(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            let room = (self.keep + STREAM_BATCH).saturating_sub(self.buf.len()).max(1);
            let n = bytes.len().min(room);
            self.buf.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.buf.len() >= self.keep + STREAM_BATCH {
                self.send(self.buf.len() - self.keep)?;
            }
        }
        Ok(())
    }
    fn tail(&self, n: usize) -> &[u8] {
        &self.buf[self.buf.len() - n..]
    }
    fn window(&mut self, w: usize) {
        self.keep = w;
    }
    fn finish(&mut self) -> Result<Digest> {
        self.send(self.buf.len())?;
        Ok(self.hasher.finish())
    }
}

fn decode(old: &[u8], delta: &[u8], limits: &PatchLimits, out: &mut dyn Out) -> Result<()> {
    let mut r = Reader::new(delta);
    let h = read_header(&mut r)?;
    if h.base_len != old.len() as u64 {
        return Err(Error::WrongBase);
    }
    let ul = h.block_len as u64;
    let units = h.base_len.div_ceil(ul);
    let mut prefix: Vec<u8> = Vec::new();
    let window = 1usize << h.window_log;
    out.window(window);
    let mut lit: Vec<u8> = Vec::new();
    let mut lit_pos = 0usize;
    let mut copy_next: u64 = 0;
    let mut dctx = zstdx::dctx();
    // Context bytes of the literal chunks so far (docs/protocol.md §4.2).
    let mut context_used: u64 = 0;
    let grow = |out: &dyn Out, n: u64| -> Result<()> {
        if out.len().checked_add(n).is_none_or(|total| total > limits.max_output) {
            return Err(Error::TooLarge("rebuilt instance larger than the configured maximum"));
        }
        Ok(())
    };
    loop {
        match r.u8("delta op")? {
            OP_COPY => {
                let rel = unzigzag(r.varint("copy start")?);
                let count = r.varint("copy count")?;
                let (start, from, to) =
                    unit_run(copy_next, rel, count, units, ul, h.base_len).ok_or(Error::Malformed("copy outside the base instance"))?;
                grow(out, to - from)?;
                out.extend(&old[from as usize..to as usize])?;
                copy_next = start + count;
            }
            OP_INSERT => {
                let n = r.varint("insert length")?;
                if n == 0 || n > (lit.len() - lit_pos) as u64 {
                    return Err(Error::Malformed("insert longer than the literal bytes available"));
                }
                grow(out, n)?;
                out.extend(&lit[lit_pos..lit_pos + n as usize])?;
                lit_pos += n as usize;
            }
            op @ (OP_LIT_ZSTD | OP_LIT_RAW) => {
                if lit_pos != lit.len() {
                    return Err(Error::Malformed("literal chunk before the previous one was used"));
                }
                let raw = r.varint("literal length")?;
                if raw == 0 || raw > MAX_LIT_CHUNK as u64 {
                    return Err(Error::Malformed("literal chunk length out of range"));
                }
                if op == OP_LIT_RAW {
                    let bytes = r.bytes(raw as usize, "literal bytes")?;
                    lit.clear();
                    lit.extend_from_slice(bytes);
                } else {
                    // Context: the last `tail` bytes of output, then the old
                    // runs named here. Each is checked before it is copied:
                    // the whole copy work of a delta is bounded by its
                    // context credit, which grows with the output.
                    let credit = CONTEXT_CREDIT_START
                        .saturating_add(CONTEXT_CREDIT_PER_BYTE.saturating_mul(out.len().saturating_add(raw)))
                        .saturating_sub(context_used);
                    let tail = r.varint("literal context length")?;
                    if tail > window as u64 || tail > out.len() {
                        return Err(Error::Malformed("literal context longer than the output or the window"));
                    }
                    if tail > credit {
                        return Err(Error::TooLarge("literal context beyond the delta's context credit"));
                    }
                    let runs = r.varint("literal context runs")?;
                    prefix.clear();
                    prefix.extend_from_slice(out.tail(tail as usize));
                    let mut next: u64 = 0;
                    let mut runs_len: u64 = 0;
                    for _ in 0..runs {
                        let rel = unzigzag(r.varint("context run start")?);
                        let count = r.varint("context run length")?;
                        let (first, from, to) = unit_run(next, rel, count, units, ul, h.base_len)
                            .ok_or(Error::Malformed("context run outside the base instance"))?;
                        runs_len += to - from;
                        if runs_len > window as u64 + ul {
                            return Err(Error::Malformed("literal context larger than the window"));
                        }
                        if tail + runs_len > credit {
                            return Err(Error::TooLarge("literal context beyond the delta's context credit"));
                        }
                        prefix.extend_from_slice(&old[from as usize..to as usize]);
                        next = first + count;
                    }
                    context_used += prefix.len() as u64;
                    let n = r.varint("compressed literal length")?;
                    let comp = r.bytes(usize::try_from(n).unwrap_or(usize::MAX).min(r.remaining() + 1), "compressed literal bytes")?;
                    zstdx::decompress(&mut dctx, &prefix, comp, raw as usize, &mut lit)?;
                }
                lit_pos = 0;
            }
            OP_END => {
                let total = r.varint("instance length")?;
                let digest = r.bytes(DIGEST_LEN, "instance digest")?;
                if !r.is_empty() {
                    return Err(Error::Malformed("bytes after the end of the delta"));
                }
                if lit_pos != lit.len() {
                    return Err(Error::Malformed("unused literal bytes"));
                }
                if total != out.len() || out.finish()?[..] != digest[..] {
                    return Err(Error::DigestMismatch);
                }
                return Ok(());
            }
            _ => return Err(Error::Malformed("unknown delta op")),
        }
    }
}
