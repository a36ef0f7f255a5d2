//! The delta encoder: one streaming pass over the new instance.
//!
//! Memory is bounded by the signature (its index) plus a window: the last
//! `2^window_log` bytes of output (the context literal chunks are compressed
//! against), the pending literal batch and one block. It never grows with
//! the length of the body. Output is produced as input arrives.

use crate::error::Result;
use crate::rollsum;
use crate::signature::{strong, Signature};
use crate::wire::{put_varint, zigzag};
use crate::zstdx;
use xxhash_rust::xxh3::Xxh3;

pub const DELTA_MAGIC: [u8; 3] = *b"hsd";
pub const DELTA_VERSION: u8 = 1;

pub(crate) const OP_END: u8 = 0;
pub(crate) const OP_COPY: u8 = 1;
pub(crate) const OP_INSERT: u8 = 2;
pub(crate) const OP_LIT_ZSTD: u8 = 3;
pub(crate) const OP_LIT_RAW: u8 = 4;

/// Largest literal chunk (decoded) a decoder accepts.
pub const MAX_LIT_CHUNK: usize = 1 << 20;
pub const MIN_WINDOW_LOG: u8 = 10;
pub const MAX_WINDOW_LOG: u8 = 24;

/// Tunables of the encoder. The defaults suit web pages.
#[derive(Debug, Clone, Copy)]
pub struct EncodeOptions {
    /// zstd level for literal chunks.
    pub level: i32,
    /// Literal chunks are compressed against the last `2^window_log` bytes of output.
    pub window_log: u8,
    /// Literal bytes gathered before a chunk is compressed and emitted.
    pub batch: usize,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions { level: 6, window_log: 17, batch: 16 << 10 }
    }
}

/// What an encoder did, for logs (`$hsync_ratio`) and reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncodeStats {
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub copied_bytes: u64,
    pub literal_bytes: u64,
    pub copy_ops: u64,
    pub literal_chunks: u64,
}

/// Lookup from weak checksum to block, built once per request from the signature.
struct Index {
    mask: u32,
    heads: Vec<u32>, // 1 + block index, 0 = empty
    next: Vec<u32>,
}

const MAX_CHAIN: usize = 32;

impl Index {
    fn new(sig: &Signature, full_blocks: usize) -> Index {
        let size = (full_blocks * 2).next_power_of_two().max(16);
        let mask = (size - 1) as u32;
        let mut heads = vec![0u32; size];
        let mut next = vec![0u32; full_blocks];
        // Insert in reverse so that chains list lower block numbers first;
        // skip exact duplicates (the encoder checks the expected block directly).
        for j in (0..full_blocks).rev() {
            let slot = (sig.weak[j] & mask) as usize;
            let mut i = heads[slot];
            let mut dup = false;
            let mut walked = 0;
            while i != 0 && walked < MAX_CHAIN {
                let k = (i - 1) as usize;
                if sig.weak[k] == sig.weak[j] && sig.strong[k] == sig.strong[j] {
                    dup = true;
                    break;
                }
                i = next[k];
                walked += 1;
            }
            if dup {
                // Keep the lower-numbered twin as the representative.
                continue;
            }
            next[j] = heads[slot];
            heads[slot] = j as u32 + 1;
        }
        Index { mask, heads, next }
    }
}

/// Streaming delta encoder for one response.
pub struct Encoder {
    sig: Signature,
    opts: EncodeOptions,
    index: Index,
    bl: usize,
    full_blocks: usize,
    factor: u64,
    window: usize,
    /// Bytes of the new instance not yet dropped; `base` is the absolute offset of `buf[0]`.
    buf: Vec<u8>,
    base: u64,
    /// Start of the rolling window (index into `buf`).
    pos: usize,
    /// Start of bytes not yet assigned to an op.
    lit_start: usize,
    /// Rolling hash of `buf[pos..pos + bl]`, valid when `Some`; that position was already looked up.
    roll: Option<u64>,
    /// The block after the last one matched.
    expected: usize,
    /// Open run of copied blocks (start, count).
    run: Option<(usize, usize)>,
    /// Block the decoder expects the next COPY to start at (for relative encoding).
    copy_next: usize,
    /// Pending literal chunk: its bytes, its ops, and the absolute output offset where it starts.
    batch: Vec<u8>,
    batch_ops: Vec<u8>,
    batch_start: Option<u64>,
    hasher: Xxh3,
    header_done: bool,
    finished: bool,
    stats: EncodeStats,
}

impl Encoder {
    /// An encoder for deltas against the instance `sig` describes.
    pub fn new(sig: Signature) -> Self {
        Self::with_options(sig, EncodeOptions::default())
    }

    pub fn with_options(sig: Signature, mut opts: EncodeOptions) -> Self {
        opts.window_log = opts.window_log.clamp(MIN_WINDOW_LOG, MAX_WINDOW_LOG);
        opts.batch = opts.batch.clamp(1, MAX_LIT_CHUNK / 2);
        let bl = sig.params.block_len as usize;
        let full_blocks = (sig.instance_len / bl as u64) as usize;
        let index = Index::new(&sig, full_blocks);
        Encoder {
            sig,
            opts,
            index,
            bl,
            full_blocks,
            factor: rollsum::out_factor(bl),
            window: 1usize << opts.window_log,
            buf: Vec::new(),
            base: 0,
            pos: 0,
            lit_start: 0,
            roll: None,
            expected: 0,
            run: None,
            copy_next: 0,
            batch: Vec::new(),
            batch_ops: Vec::new(),
            batch_start: None,
            hasher: Xxh3::new(),
            header_done: false,
            finished: false,
            stats: EncodeStats::default(),
        }
    }

    pub fn signature(&self) -> &Signature {
        &self.sig
    }

    pub fn stats(&self) -> EncodeStats {
        self.stats
    }

    fn header(&mut self, out: &mut Vec<u8>) {
        if self.header_done {
            return;
        }
        self.header_done = true;
        out.extend_from_slice(&DELTA_MAGIC);
        out.push(DELTA_VERSION);
        put_varint(out, self.bl as u64);
        put_varint(out, self.sig.instance_len);
        out.push(self.opts.window_log);
    }

    /// Feeds the next piece of the new instance; appends whatever output is ready to `out`.
    pub fn update(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        assert!(!self.finished, "update after finish");
        let before = out.len();
        self.header(out);
        self.hasher.update(data);
        self.stats.input_bytes += data.len() as u64;
        self.buf.extend_from_slice(data);
        self.scan(out)?;
        self.compact();
        self.stats.output_bytes += (out.len() - before) as u64;
        Ok(())
    }

    /// Emits everything pending so far (the server is flushing); the delta stays open.
    pub fn flush(&mut self, out: &mut Vec<u8>) -> Result<()> {
        let before = out.len();
        self.header(out);
        self.close_run(out);
        self.flush_batch(out)?;
        self.stats.output_bytes += (out.len() - before) as u64;
        Ok(())
    }

    /// Ends the delta: trailing literal bytes, the tail block, the digest.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        let before = out.len();
        self.header(out);
        let end = self.buf.len();
        let mut lit_end = end;
        // The instance's short last block can only match the very end.
        let tail = (self.sig.instance_len % self.bl as u64) as usize;
        let mut tail_match = false;
        if tail > 0 && end - self.lit_start >= tail {
            let w = &self.buf[end - tail..end];
            let j = self.sig.block_count() - 1;
            if rollsum::weak(rollsum::hash(w), self.sig.params.weak_len) == self.sig.weak[j]
                && strong(w, self.sig.params.strong_len) == self.sig.strong[j]
            {
                lit_end = end - tail;
                tail_match = true;
            }
        }
        self.pos = end;
        self.push_literal(lit_end, out)?;
        if tail_match {
            self.push_copy(self.sig.block_count() - 1, out);
            self.lit_start = end;
            self.stats.copied_bytes += tail as u64;
        }
        self.close_run(out);
        self.flush_batch(out)?;
        out.push(OP_END);
        put_varint(out, self.stats.input_bytes);
        out.extend_from_slice(&self.hasher.digest128().to_be_bytes());
        self.finished = true;
        self.stats.output_bytes += (out.len() - before) as u64;
        Ok(())
    }

    #[inline]
    fn candidate(&self, h: u64, win: &[u8]) -> Option<usize> {
        let p = self.sig.params;
        let w = rollsum::weak(h, p.weak_len);
        let mut i = self.index.heads[(w & self.index.mask) as usize];
        if i == 0 {
            return None;
        }
        let mut s: Option<u64> = None;
        let mut walked = 0;
        while i != 0 && walked < MAX_CHAIN {
            let j = (i - 1) as usize;
            if self.sig.weak[j] == w {
                let sv = *s.get_or_insert_with(|| strong(win, p.strong_len));
                if self.sig.strong[j] == sv {
                    // Prefer continuing the current run when the expected block is a twin.
                    let e = self.expected;
                    if e < self.full_blocks && self.sig.weak[e] == w && self.sig.strong[e] == sv {
                        return Some(e);
                    }
                    return Some(j);
                }
            }
            i = self.index.next[j];
            walked += 1;
        }
        None
    }

    fn scan(&mut self, out: &mut Vec<u8>) -> Result<()> {
        let bl = self.bl;
        if self.full_blocks == 0 {
            // Nothing to match: everything is literal.
            let end = self.buf.len();
            self.pos = end;
            if end - self.lit_start >= self.opts.batch {
                self.push_literal(end, out)?;
            }
            return Ok(());
        }
        let p = self.sig.params;
        loop {
            if self.pos + bl > self.buf.len() {
                break;
            }
            let matched = match self.roll {
                None => {
                    let win = &self.buf[self.pos..self.pos + bl];
                    // Fast path: the block after the last match, checked directly.
                    let e = self.expected;
                    if e < self.full_blocks
                        && self.sig.strong[e] == strong(win, p.strong_len)
                        && self.sig.weak[e] == rollsum::weak(rollsum::hash(win), p.weak_len)
                    {
                        Some(e)
                    } else {
                        let h = rollsum::hash(win);
                        self.roll = Some(h);
                        self.candidate(h, win)
                    }
                }
                Some(mut h) => {
                    // Roll forward through unmatched bytes, one lookup per byte.
                    let buf = &self.buf;
                    let limit = buf.len() - bl;
                    let mut pos = self.pos;
                    let mut found = None;
                    let heads = &self.index.heads;
                    let mask = self.index.mask;
                    let wl = p.weak_len;
                    while pos < limit {
                        h = rollsum::roll(h, buf[pos], buf[pos + bl], self.factor);
                        pos += 1;
                        if heads[(rollsum::weak(h, wl) & mask) as usize] != 0 {
                            if let Some(j) = self.candidate(h, &buf[pos..pos + bl]) {
                                found = Some(j);
                                break;
                            }
                        }
                        if pos - self.lit_start >= self.opts.batch {
                            break;
                        }
                    }
                    self.pos = pos;
                    self.roll = Some(h);
                    if found.is_none() {
                        if self.pos - self.lit_start >= self.opts.batch {
                            let at = self.pos;
                            self.push_literal(at, out)?;
                            continue;
                        }
                        break;
                    }
                    found
                }
            };
            if let Some(j) = matched {
                let at = self.pos;
                self.push_literal(at, out)?;
                self.push_copy(j, out);
                self.pos += bl;
                self.lit_start = self.pos;
                self.roll = None;
                self.expected = j + 1;
                self.stats.copied_bytes += bl as u64;
                self.maybe_flush_span(out)?;
            }
        }
        Ok(())
    }

    /// Assigns `buf[lit_start..end]` to an INSERT in the literal batch.
    fn push_literal(&mut self, end: usize, out: &mut Vec<u8>) -> Result<()> {
        if end <= self.lit_start {
            return Ok(());
        }
        self.close_run(out);
        let bytes = &self.buf[self.lit_start..end];
        if self.batch_start.is_none() {
            self.batch_start = Some(self.base + self.lit_start as u64);
        }
        self.batch.extend_from_slice(bytes);
        self.batch_ops.push(OP_INSERT);
        put_varint(&mut self.batch_ops, bytes.len() as u64);
        self.stats.literal_bytes += bytes.len() as u64;
        self.lit_start = end;
        if self.batch.len() >= self.opts.batch {
            self.flush_batch(out)?;
        }
        Ok(())
    }

    fn push_copy(&mut self, j: usize, out: &mut Vec<u8>) {
        if let Some((start, count)) = self.run {
            if start + count == j {
                self.run = Some((start, count + 1));
                return;
            }
            self.close_run(out);
        }
        self.run = Some((j, 1));
    }

    fn close_run(&mut self, out: &mut Vec<u8>) {
        if let Some((start, count)) = self.run.take() {
            let dst = if self.batch_start.is_some() { &mut self.batch_ops } else { out };
            dst.push(OP_COPY);
            put_varint(dst, zigzag(start as i64 - self.copy_next as i64));
            put_varint(dst, count as u64);
            self.copy_next = start + count;
            self.stats.copy_ops += 1;
        }
    }

    /// A batch that spans too much output would pin that output in memory: flush it.
    fn maybe_flush_span(&mut self, out: &mut Vec<u8>) -> Result<()> {
        if let Some(start) = self.batch_start {
            if self.base + self.pos as u64 - start > 4 * self.window as u64 {
                self.close_run(out);
                self.flush_batch(out)?;
            }
        }
        Ok(())
    }

    fn flush_batch(&mut self, out: &mut Vec<u8>) -> Result<()> {
        let Some(start) = self.batch_start.take() else { return Ok(()) };
        let rel = (start - self.base) as usize;
        let prefix = &self.buf[rel.saturating_sub(self.window)..rel];
        debug_assert!(rel >= self.window || self.base == 0);
        let raw = self.batch.len();
        let mark = out.len();
        out.push(OP_LIT_ZSTD);
        put_varint(out, raw as u64);
        let mut comp = Vec::new();
        let n = zstdx::compress(self.opts.level, self.opts.window_log as u32 + 1, prefix, &self.batch, &mut comp)?;
        if n < raw {
            put_varint(out, n as u64);
            out.extend_from_slice(&comp);
        } else {
            out.truncate(mark);
            out.push(OP_LIT_RAW);
            put_varint(out, raw as u64);
            out.extend_from_slice(&self.batch);
        }
        out.extend_from_slice(&self.batch_ops);
        self.batch.clear();
        self.batch_ops.clear();
        self.stats.literal_chunks += 1;
        Ok(())
    }

    /// Drops bytes no longer needed: keeps one window of history before the
    /// oldest byte a future literal chunk may start at.
    fn compact(&mut self) {
        let oldest = match self.batch_start {
            Some(s) => (s - self.base) as usize,
            None => self.lit_start,
        };
        let keep = oldest.min(self.pos).saturating_sub(self.window);
        if keep > 0 && keep >= self.buf.len() / 2 {
            self.buf.drain(..keep);
            self.base += keep as u64;
            self.pos -= keep;
            self.lit_start -= keep;
        }
    }
}

/// One-shot: the delta turning the signed instance into `new`.
pub fn delta(sig: &Signature, new: &[u8]) -> Result<Vec<u8>> {
    delta_with(sig, new, EncodeOptions::default())
}

pub fn delta_with(sig: &Signature, new: &[u8], opts: EncodeOptions) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut e = Encoder::with_options(sig.clone(), opts);
    e.update(new, &mut out)?;
    e.finish(&mut out)?;
    Ok(out)
}
