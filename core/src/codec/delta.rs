//! The delta encoder: one streaming pass over the new instance.
//!
//! Memory is bounded by the signature (its index) plus a window: the last
//! `2^window_log` bytes of output (the context literal chunks are compressed
//! against), the pending literal batch and one block. It never grows with
//! the length of the body. Output is produced as input arrives.

use super::pipeline::{render, stopped, wait, Digest, DigestLoan, Helper, Job, Waiting, MAX_WAITING};
use crate::codec::wire::{put_varint, zigzag};
use crate::error::Result;
use crate::hash::Digester;
use crate::limits::{
    CONTEXT_CREDIT_PER_BYTE, CONTEXT_CREDIT_START, COST_CANDIDATE, COST_CHAIN_STEP, COST_HASH, SEARCH_CREDIT_PER_BYTE, SEARCH_CREDIT_START,
};
pub use crate::limits::{MAX_LIT_CHUNK, MAX_WINDOW_LOG, MIN_WINDOW_LOG};
use crate::rollsum;
use crate::signature::{strong, sub_check, Signature};
use std::cell::Cell;

pub const DELTA_MAGIC: [u8; 3] = *b"hsd";
/// Version 2: the END digest is BLAKE3-256 (version 1 carried XXH3-128,
/// which content can be crafted to collide), and literal chunks' context
/// is bounded by a credit (docs/protocol.md §4.2).
pub const DELTA_VERSION: u8 = 2;

pub(crate) const OP_END: u8 = 0;
pub(crate) const OP_COPY: u8 = 1;
pub(crate) const OP_INSERT: u8 = 2;
pub(crate) const OP_LIT_ZSTD: u8 = 3;
pub(crate) const OP_LIT_RAW: u8 = 4;

/// Tunables of the encoder. The defaults suit web pages.
#[derive(Debug, Clone, Copy)]
pub struct EncodeOptions {
    /// zstd level for literal chunks.
    pub level: i32,
    /// Literal chunks are compressed against the last `2^window_log` bytes of output.
    pub window_log: u8,
    /// Literal bytes gathered before a chunk is compressed and emitted.
    pub batch: usize,
    /// Context bytes a chunk may be compressed against: up to a window of
    /// output before it plus a window of copies after it, drawn from a
    /// credit that starts at `context_credit` and grows by one byte for every
    /// `context_ratio` bytes of input, but never less than `min_context`.
    /// Indexing context is what costs time: a page gets all it can use, a
    /// long body with many small edits a share proportionate to its length.
    pub context_credit: usize,
    pub context_ratio: usize,
    pub min_context: usize,
    /// A chunk gets at most `context_factor` times its length as context
    /// (at least `min_context`): small chunks need little.
    pub context_factor: usize,
    /// Once this many literal bytes have been compressed, later chunks use
    /// `fast_level`: a body that is mostly new content is not worth level 9.
    pub fast_after: u64,
    pub fast_level: i32,
    /// Compress literal chunks on a helper thread while the search goes
    /// on, and with [`Encoder::encode_all`] hash the instance for the
    /// digest there too, between chunks. The encoder compresses queued
    /// chunks itself when it would otherwise wait (the CLI uses it; a
    /// server worker keeps it off). The delta's bytes are the same either way;
    /// output is released in order, once the chunks before it are done.
    pub background: bool,
    /// How that thread is started (`None`: `std::thread::Builder`). The
    /// CLI passes a spawner that places the thread on another CPU: placing
    /// threads is the business of the program, not of a library that
    /// servers link.
    pub spawner: Option<Spawner>,
}

/// Starts a thread running the given function (see [`EncodeOptions::spawner`]).
pub type Spawner = fn(Box<dyn FnOnce() + Send>) -> std::io::Result<std::thread::JoinHandle<()>>;

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            level: 9,
            window_log: 18,
            batch: 32 << 10,
            context_credit: 1 << 20,
            context_ratio: 4,
            min_context: 16 << 10,
            context_factor: 32,
            fast_after: 512 << 10,
            fast_level: 1,
            background: false,
            spawner: None,
        }
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
    /// Search credit spent ([`crate::limits::SEARCH_CREDIT_START`]): never
    /// more than the start plus [`crate::limits::SEARCH_CREDIT_PER_BYTE`]
    /// per input byte.
    pub search_work: u64,
    /// Times the search stopped for lack of credit.
    pub search_pauses: u64,
}

/// Lookup from weak checksum to block, built once per request from the signature.
struct Index {
    mask: u32,
    heads: Vec<u32>, // 1 + block index, 0 = empty
    next: Vec<u32>,
    /// Blocks whose checksums another block shares (repeated content).
    dup: Vec<bool>,
    /// One bit per value of the low bits (at most `FILTER_BITS`) of a weak
    /// checksum, `filter_mask` selecting them: set when some block has it. The search tests every position against it
    /// first; at 2^16 bits for at most a few thousand blocks, nearly every
    /// test says no, so the loop rarely branches away.
    filter: Vec<u64>,
    filter_mask: u32,
}

const FILTER_BITS: u8 = 16;

/// Blocks of a chain compared at one position at most.
const MAX_CHAIN: usize = 32;
/// Blocks confirmed (the block after them checked) at one position at most.
const MAX_CONFIRMS: usize = 2;
const REFUSED_SLOTS: usize = 64;
/// Input taken into the buffer at a time (see [`Encoder::update`]).
const UPDATE_PIECE: usize = 64 << 10;

impl Index {
    fn new(sig: &Signature, full_blocks: usize) -> Index {
        let size = (full_blocks * 2).next_power_of_two().max(16);
        let mask = (size - 1) as u32;
        let mut heads = vec![0u32; size];
        let mut next = vec![0u32; full_blocks];
        let mut dups = vec![false; full_blocks];
        // Twins (blocks with the same weak and strong checks) are found with
        // a table keyed by both checks, one probe or so per block whatever
        // the signature: walking the chains instead cost up to 32 steps per
        // block for a signature whose blocks all share one weak sum. The
        // table's hash is keyed by the signature's seed, which a hostile
        // signature sets, so probing is also bounded (a full scan at worst
        // is 2 x blocks slots, and a sequence of probes ends at an empty one).
        // Twins (blocks with the same weak and strong checks) are found with
        // a table keyed by both checks: about one probe per block whatever
        // the signature. Walking the chains instead cost up to 32 steps per
        // block for a signature whose blocks all share one weak sum. The
        // table's hash has a key of this process's own, so that a hostile
        // signature cannot pile its entries into one run of slots.
        let mut twins = vec![0u32; size];
        let secret = process_key();
        let slot_of = |j: usize| {
            let pair = (sig.weak[j] as u64) << 32 | sig.strong[j] as u64;
            crate::hash::xxh3_64_with_seed(&pair.to_le_bytes(), secret) as usize & (size - 1)
        };
        // Insert in reverse so that chains list lower block numbers first;
        // skip twins (the encoder checks the expected block directly).
        for j in (0..full_blocks).rev() {
            let mut t = slot_of(j);
            let mut twin = None;
            while twins[t] != 0 {
                let k = (twins[t] - 1) as usize;
                if sig.weak[k] == sig.weak[j] && sig.strong[k] == sig.strong[j] {
                    twin = Some(k);
                    break;
                }
                t = (t + 1) & (size - 1);
            }
            if let Some(k) = twin {
                dups[j] = true;
                dups[k] = true;
                continue;
            }
            twins[t] = j as u32 + 1;
            let slot = (sig.weak[j] & mask) as usize;
            next[j] = heads[slot];
            heads[slot] = j as u32 + 1;
        }
        let fb = sig.params.weak_bits.min(FILTER_BITS);
        let filter_mask = ((1u64 << fb) - 1) as u32;
        let mut filter = vec![0u64; (1usize << fb).div_ceil(64)];
        for &w in &sig.weak[..full_blocks] {
            let v = (w & filter_mask) as usize;
            filter[v / 64] |= 1 << (v % 64);
        }
        Index { mask, heads, next, dup: dups, filter, filter_mask }
    }
}

/// A random key of this process, for hash tables whose keys a client chooses.
fn process_key() -> u64 {
    static KEY: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *KEY.get_or_init(crate::signature::random_seed)
}

/// Streaming delta encoder for one response.
pub struct Encoder {
    sig: Signature,
    opts: EncodeOptions,
    index: Index,
    bl: usize,
    full_blocks: usize,
    /// Sub-block (COPY unit) length, sub-blocks per block, and their count.
    ul: usize,
    k: usize,
    units: usize,
    /// Set right after a whole block matched: the next mismatch tries sub-blocks forward.
    just_matched: bool,
    factor: u32,
    window: usize,
    /// Bytes of the new instance not yet dropped; `base` is the absolute offset of `buf[0]`.
    buf: Vec<u8>,
    base: u64,
    /// Start of the rolling window (index into `buf`).
    pos: usize,
    /// Start of bytes not yet assigned to an op.
    lit_start: usize,
    /// Rolling hash of `buf[pos..pos + bl]`, valid when `Some`; that position was already looked up.
    roll: Option<u32>,
    /// The block after the last one matched.
    expected: usize,
    /// Open run of copied sub-blocks (start, count) and where it starts in the output.
    run: Option<(usize, usize)>,
    run_pos: u64,
    /// Runs copied since the pending literal chunk began (first sub-block,
    /// count, output offset): the chunk is compressed against them too.
    dict_runs: Vec<(usize, usize, u64)>,
    dict_len: usize,
    /// Context bytes indexed so far (see `EncodeOptions::context_credit`).
    context_used: u64,
    /// Block the decoder expects the next COPY to start at (for relative encoding).
    copy_next: usize,
    /// Pending literal chunk: its bytes, its ops, and the absolute output offset where it starts.
    batch: Vec<u8>,
    batch_ops: Vec<u8>,
    batch_start: Option<u64>,
    hasher: Digester,
    /// Work the search may still do ([`crate::limits::SEARCH_CREDIT_START`]):
    /// grows with the input, so that no signature and no body make the
    /// work per byte unbounded.
    search_credit: Cell<u64>,
    /// Set when the credit ran out: the search waits for more input.
    search_paused: Cell<bool>,
    search_spent: Cell<u64>,
    search_pauses: Cell<u64>,
    /// What one candidate may cost at most (see `can_search`).
    max_candidate_cost: u64,
    /// The expected block was already checked at `pos`.
    expected_tried: bool,
    /// Rolling hashes of windows whose candidates were all refused: the
    /// same content recurring (periodic text) is not checked again.
    refused: [Cell<u64>; REFUSED_SLOTS],
    header_done: bool,
    finished: bool,
    /// Set by `encode_all`: the input is searched where it lies.
    in_place: bool,
    /// An instance lent to the helper for its digest (`encode_all`).
    loan: Option<DigestLoan>,
    stats: EncodeStats,
    /// With `background`: the helper thread, and output held back behind
    /// chunks it has not finished.
    helper: Option<Helper>,
    held: Vec<u8>,
    waiting: std::collections::VecDeque<Waiting>,
    next_seq: u64,
    /// Buffers of finished chunks, kept for the next ones, each set in the
    /// same roles (head, context, literal bytes, ops) so that only the
    /// context buffer grows to a window's size.
    spare: Vec<[Vec<u8>; 4]>,
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
        let ul = sig.params.sub_len() as usize;
        let k = sig.params.subs_per_block();
        let units = sig.instance_len.div_ceil(ul as u64) as usize;
        Encoder {
            ul,
            k,
            units,
            // The start of the instance acts as an anchor: an edit in the
            // first block keeps the sub-blocks before it.
            just_matched: true,
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
            run_pos: 0,
            dict_runs: Vec::new(),
            dict_len: 0,
            context_used: 0,
            copy_next: 0,
            batch: Vec::new(),
            batch_ops: Vec::new(),
            batch_start: None,
            hasher: Digester::new(),
            search_credit: Cell::new(SEARCH_CREDIT_START),
            search_paused: Cell::new(false),
            search_spent: Cell::new(0),
            search_pauses: Cell::new(0),
            max_candidate_cost: {
                let hash_cost = COST_HASH + bl as u64;
                COST_CANDIDATE + MAX_CHAIN as u64 * COST_CHAIN_STEP + (1 + 2 * MAX_CONFIRMS as u64) * hash_cost
            },
            expected_tried: false,
            refused: std::array::from_fn(|_| Cell::new(0)),
            header_done: false,
            finished: false,
            in_place: false,
            loan: None,
            stats: EncodeStats::default(),
            // Started now, so that it is ready when the first chunk is.
            helper: if opts.background { Helper::spawn(opts.spawner).ok() } else { None },
            held: Vec::new(),
            waiting: std::collections::VecDeque::new(),
            next_seq: 0,
            spare: Vec::new(),
        }
    }

    pub fn signature(&self) -> &Signature {
        &self.sig
    }

    pub fn stats(&self) -> EncodeStats {
        EncodeStats { search_work: self.search_spent.get(), search_pauses: self.search_pauses.get(), ..self.stats }
    }

    fn header(&mut self, out: &mut Vec<u8>) {
        if self.header_done {
            return;
        }
        self.header_done = true;
        out.extend_from_slice(&DELTA_MAGIC);
        out.push(DELTA_VERSION);
        put_varint(out, self.ul as u64);
        put_varint(out, self.sig.instance_len);
        out.push(self.opts.window_log);
    }

    /// Feeds the next piece of the new instance; appends whatever output is ready to `out`.
    pub fn update(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        assert!(!self.finished && !self.in_place, "update after finish or encode_all");
        let before = out.len();
        let r = self.staged(out, false, |e, out| {
            e.header(out);
            e.hasher.update(data);
            e.take_input(data.len());
            // A piece at a time: the buffer holds the window plus one piece,
            // however much the server hands over at once (httpd reads files in
            // 4 MiB maps).
            for piece in data.chunks(UPDATE_PIECE) {
                let mut buf = std::mem::take(&mut e.buf);
                buf.extend_from_slice(piece);
                let r = e.scan(&buf, out, false);
                e.buf = buf;
                r?;
                e.compact();
            }
            Ok(())
        });
        self.stats.output_bytes += (out.len() - before) as u64;
        r
    }

    fn take_input(&mut self, n: usize) {
        self.stats.input_bytes += n as u64;
        self.search_credit.set(self.search_credit.get().saturating_add(SEARCH_CREDIT_PER_BYTE * n as u64));
        self.search_paused.set(false);
    }

    /// Emits everything pending so far (the server is flushing); the delta stays open.
    pub fn flush(&mut self, out: &mut Vec<u8>) -> Result<()> {
        let before = out.len();
        let r = self.staged(out, true, |e, out| {
            e.header(out);
            e.close_run(out);
            let buf = std::mem::take(&mut e.buf);
            let r = e.flush_batch(&buf, out);
            e.buf = buf;
            r
        });
        self.stats.output_bytes += (out.len() - before) as u64;
        r
    }

    /// Ends the delta: trailing literal bytes, the tail block, the digest.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        let before = out.len();
        let r = self.staged(out, true, |e, out| {
            let buf = std::mem::take(&mut e.buf);
            let r = e.finish_ops(&buf, out);
            e.buf = buf;
            r
        });
        self.stats.output_bytes += (out.len() - before) as u64;
        if r.is_ok() {
            self.finished = true;
        }
        r
    }

    /// The whole delta of `data`, an instance already in memory (a mapped
    /// file), instead of `update` and `finish`: the bytes that feeding it
    /// to `update` in pieces of 64 KiB gives, but searched where they lie
    /// rather than copied through the encoder's window. Output goes to
    /// `emit` as it is produced, about every MiB of input; nothing is held
    /// but the output not yet emitted.
    pub fn encode_all(mut self, data: &[u8], mut emit: impl FnMut(&[u8]) -> std::io::Result<()>) -> Result<EncodeStats> {
        assert!(self.stats.input_bytes == 0 && !self.header_done, "encode_all on a used encoder");
        self.in_place = true;
        if let Some(h) = &self.helper {
            let mut q = h.shared.state.lock().map_err(|_| stopped())?;
            q.digest = Digest::Lent { at: data.as_ptr() as usize, len: data.len(), hashed: 0, state: Box::new(Digester::new()) };
            h.shared.signal();
            drop(q);
            // Dropped with `self`, at the latest when this returns.
            self.loan = Some(DigestLoan(h.shared.clone()));
        }
        let mut out = Vec::new();
        let emit_every = 16 * UPDATE_PIECE;
        let mut end = 0;
        while end < data.len() {
            let start = end;
            end = (end + UPDATE_PIECE).min(data.len());
            let step = &data[..end];
            self.staged(&mut out, false, |e, out| {
                e.header(out);
                e.take_input(end - start);
                e.scan(step, out, false)
            })?;
            if out.len() >= emit_every || end % emit_every == 0 {
                self.stats.output_bytes += out.len() as u64;
                emit(&out)?;
                out.clear();
            }
        }
        // Every chunk is placed before the digest is taken: this thread
        // compresses the last one if the helper is busy, and the helper
        // hashes meanwhile.
        self.staged(&mut out, true, |e, out| e.last_ops(data, out))?;
        self.end_op(data, &mut out);
        self.stats.output_bytes += out.len() as u64;
        emit(&out)?;
        self.finished = true;
        Ok(self.stats())
    }

    fn finish_ops(&mut self, buf: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.last_ops(buf, out)?;
        self.end_op(buf, out);
        Ok(())
    }

    /// The ops for the rest of the input, and its last chunk.
    fn last_ops(&mut self, buf: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.header(out);
        self.scan(buf, out, true)?;
        if self.just_matched {
            self.just_matched = false;
            self.extend_forward(buf, out);
        }
        let end = buf.len();
        // The instance's short last block can only match the very end.
        let tail = (self.sig.instance_len % self.bl as u64) as usize;
        let mut tail_units = None;
        if tail > 0 && end - self.lit_start >= tail {
            let w = &buf[end - tail..end];
            let j = self.sig.block_count() - 1;
            if rollsum::weak(rollsum::hash(w), self.sig.params.weak_bits) == self.sig.weak[j]
                && strong(w, self.sig.params.strong_bits, self.sig.seed) == self.sig.strong[j]
            {
                tail_units = Some(self.extend_backward(buf, end - tail, j * self.k));
            }
        }
        self.pos = end;
        match tail_units {
            Some((q, first)) => {
                self.push_literal(buf, q, out)?;
                self.push_copy(first, self.units - first, q, out);
                self.stats.copied_bytes += (end - q) as u64;
                self.lit_start = end;
            }
            None => self.push_literal(buf, end, out)?,
        }
        self.close_run(out);
        self.flush_batch(buf, out)
    }

    /// END: the instance's length and digest.
    fn end_op(&self, buf: &[u8], out: &mut Vec<u8>) {
        let digest = match &self.loan {
            Some(loan) => loan.take(buf),
            None if self.in_place => crate::hash::digest(buf),
            None => self.hasher.finish(),
        };
        out.push(OP_END);
        put_varint(out, self.stats.input_bytes);
        out.extend_from_slice(&digest);
    }

    /// Length of sub-block `i` of the old instance.
    fn unit_size(&self, i: usize) -> usize {
        (self.sig.instance_len - (i * self.ul) as u64).min(self.ul as u64) as usize
    }

    /// From a block match at `at` whose first sub-block is `first`, walks
    /// back over the sub-blocks before it while their checks agree with the
    /// pending literal bytes. Returns the new start and first sub-block.
    fn extend_backward(&self, buf: &[u8], mut at: usize, mut first: usize) -> (usize, usize) {
        let bits = self.sig.params.sub_bits;
        if bits == 0 {
            return (at, first);
        }
        while first > 0 && at >= self.lit_start + self.ul {
            let i = first - 1;
            if sub_check(&buf[at - self.ul..at], bits, self.sig.seed) != self.sig.sub[i] {
                break;
            }
            at -= self.ul;
            first -= 1;
        }
        (at, first)
    }

    /// Right after a block match, when the next block does not match whole:
    /// copies the sub-blocks of that next block that still agree, up to the
    /// edit. Returns whether it advanced.
    fn extend_forward(&mut self, buf: &[u8], out: &mut Vec<u8>) -> bool {
        let bits = self.sig.params.sub_bits;
        if bits == 0 {
            return false;
        }
        let first = self.expected * self.k;
        let end = ((self.expected + 1) * self.k).min(self.units);
        let mut i = first;
        while i < end {
            let len = self.unit_size(i);
            if self.pos + len > buf.len() || sub_check(&buf[self.pos..self.pos + len], bits, self.sig.seed) != self.sig.sub[i] {
                break;
            }
            self.pos += len;
            self.stats.copied_bytes += len as u64;
            i += 1;
        }
        if i == first {
            return false;
        }
        let at = self.pos - (self.run_bytes(first, i - first));
        self.push_copy(first, i - first, at, out);
        self.lit_start = self.pos;
        true
    }

    /// Does block `j` match `buf[at..at + bl]` (weak and strong)?
    #[inline]
    fn block_at(&self, buf: &[u8], j: usize, at: usize) -> bool {
        let p = self.sig.params;
        let win = &buf[at..at + self.bl];
        self.sig.strong[j] == strong(win, p.strong_bits, self.sig.seed)
            && self.sig.weak[j] == rollsum::weak(rollsum::hash(win), p.weak_bits)
    }

    /// A block found by searching (anywhere, not right after a match) is
    /// taken only when the block after it matches too: the search compares
    /// every position with every block, so it needs about twice the bits of
    /// the pinned check after a match. That doubling assumes the two checks
    /// are independent; they are not when the confirming block's content
    /// recurs (periodic text: the next block then truly matches at many
    /// positions where this one does not, and every such position is one
    /// more chance for a false match of this block alone). So a block that
    /// repeats in the old instance does not confirm. Returns the block, if any.
    ///
    /// Every step is paid from the search credit (see [`crate::limits`]);
    /// the caller checks that the credit covers [`Encoder::max_candidate_cost`].
    #[inline]
    fn candidate(&self, buf: &[u8], h: u32, at: usize) -> Option<usize> {
        let p = self.sig.params;
        let w = rollsum::weak(h, p.weak_bits);
        let mut spent = COST_CANDIDATE;
        let r = self.walk(buf, h, w, at, &mut spent);
        self.search_credit.set(self.search_credit.get().saturating_sub(spent));
        self.search_spent.set(self.search_spent.get() + spent);
        r
    }

    /// The work of [`Encoder::candidate`], adding its cost to `spent`.
    #[inline]
    fn walk(&self, buf: &[u8], h: u32, w: u32, at: usize, spent: &mut u64) -> Option<usize> {
        let p = self.sig.params;
        let mut i = self.index.heads[(w & self.index.mask) as usize];
        if i == 0 {
            return None;
        }
        // Keyed by the whole hash, marked (bit 32) so that an empty slot matches nothing.
        let key = h as u64 | 1 << 32;
        let slot = &self.refused[(h ^ (h >> 17)) as usize % REFUSED_SLOTS];
        if slot.get() == key {
            return None;
        }
        let hash_cost = COST_HASH + self.bl as u64;
        let win = &buf[at..at + self.bl];
        let next_ok = at + 2 * self.bl <= buf.len();
        let mut s: Option<u32> = None;
        let mut walked = 0;
        // Blocks with this weak and strong check are twins, of which the
        // chain holds one; with the expected block preferred, at most two
        // are confirmed per position.
        let mut confirms = 0;
        while i != 0 && walked < MAX_CHAIN && confirms < MAX_CONFIRMS {
            *spent += COST_CHAIN_STEP;
            let j = (i - 1) as usize;
            if self.sig.weak[j] == w {
                let sv = *s.get_or_insert_with(|| {
                    *spent += hash_cost;
                    strong(win, p.strong_bits, self.sig.seed)
                });
                if self.sig.strong[j] == sv {
                    // Prefer continuing the current run when the expected block is a twin.
                    let e = self.expected;
                    let j = if e < self.full_blocks && self.sig.weak[e] == w && self.sig.strong[e] == sv { e } else { j };
                    if next_ok && j + 1 < self.full_blocks && !self.index.dup[j + 1] {
                        confirms += 1;
                        *spent += 2 * hash_cost;
                        if self.block_at(buf, j + 1, at + self.bl) {
                            return Some(j);
                        }
                    }
                }
            }
            i = self.index.next[j];
            walked += 1;
        }
        if s.is_some() {
            slot.set(key);
        }
        None
    }

    /// Whether the credit covers the most one call of
    /// [`Encoder::candidate`] can cost; if not, the search pauses until
    /// more input brings more credit.
    #[inline]
    fn can_search(&self) -> bool {
        if self.search_credit.get() >= self.max_candidate_cost {
            return true;
        }
        if !self.search_paused.replace(true) {
            self.search_pauses.set(self.search_pauses.get() + 1);
        }
        false
    }

    /// Matches as far as the buffered input allows. A search match needs
    /// the block after it in the buffer, so unless `last` it stops one
    /// block short of the end.
    fn scan(&mut self, buf: &[u8], out: &mut Vec<u8>, last: bool) -> Result<()> {
        let bl = self.bl;
        let reach = if last { bl } else { 2 * bl };
        if self.full_blocks == 0 {
            // Nothing to match: everything is literal.
            let end = buf.len();
            self.pos = end;
            if end - self.lit_start >= self.opts.batch {
                self.push_literal(buf, end, out)?;
            }
            return Ok(());
        }
        let p = self.sig.params;
        loop {
            if self.pos + bl > buf.len() {
                break;
            }
            let matched = match self.roll {
                None => {
                    // Fast path: the block after the last match, checked
                    // directly, once (input that arrives a byte at a time
                    // must not make it hash the same block again and again).
                    let e = self.expected;
                    if e < self.full_blocks && !std::mem::replace(&mut self.expected_tried, true) && self.block_at(buf, e, self.pos) {
                        Some(e)
                    } else if std::mem::take(&mut self.just_matched) && self.extend_forward(buf, out) {
                        continue;
                    } else if self.pos + reach > buf.len() {
                        break;
                    } else {
                        let h = rollsum::hash(&buf[self.pos..self.pos + bl]);
                        self.roll = Some(h);
                        if self.can_search() {
                            self.candidate(buf, h, self.pos)
                        } else {
                            None
                        }
                    }
                }
                Some(mut h) => {
                    // Roll forward through unmatched bytes, one lookup per byte.
                    let limit = buf.len().saturating_sub(reach);
                    let mut pos = self.pos;
                    let mut found = None;
                    let filter = &self.index.filter[..];
                    let fmask = self.index.filter_mask;
                    let wl = p.weak_bits;
                    let factor = self.factor;
                    let batch_end = self.lit_start + self.opts.batch;
                    while pos < limit {
                        if self.search_paused.get() {
                            // Out of credit until more input arrives: only
                            // roll (the hash stays valid for when it does).
                            let end = limit.min(batch_end.max(pos + 1));
                            while pos < end {
                                h = rollsum::roll(h, buf[pos], buf[pos + bl], factor);
                                pos += 1;
                            }
                            break;
                        }
                        h = rollsum::roll(h, buf[pos], buf[pos + bl], factor);
                        pos += 1;
                        let v = (rollsum::weak(h, wl) & fmask) as usize;
                        if filter[v / 64] >> (v % 64) & 1 != 0 && self.can_search() {
                            if let Some(j) = self.candidate(buf, h, pos) {
                                found = Some(j);
                                break;
                            }
                        }
                        if pos >= batch_end {
                            break;
                        }
                    }
                    self.pos = pos;
                    self.roll = Some(h);
                    if found.is_none() {
                        if self.pos - self.lit_start >= self.opts.batch {
                            let at = self.pos;
                            self.push_literal(buf, at, out)?;
                            continue;
                        }
                        break;
                    }
                    found
                }
            };
            if let Some(j) = matched {
                let at = self.pos;
                let (q, first) = self.extend_backward(buf, at, j * self.k);
                self.push_literal(buf, q, out)?;
                self.push_copy(first, (j + 1) * self.k - first, q, out);
                self.stats.copied_bytes += (at - q + bl) as u64;
                self.pos += bl;
                self.lit_start = self.pos;
                self.roll = None;
                self.expected = j + 1;
                self.expected_tried = false;
                self.just_matched = true;
                self.maybe_flush_span(buf, out)?;
            }
        }
        Ok(())
    }

    /// Assigns `buf[lit_start..end]` to an INSERT in the literal batch.
    fn push_literal(&mut self, buf: &[u8], end: usize, out: &mut Vec<u8>) -> Result<()> {
        if end <= self.lit_start {
            return Ok(());
        }
        self.close_run(out);
        // In pieces: a chunk never exceeds the batch size (the tail left
        // at the end can be two blocks, and blocks can be large).
        while self.lit_start < end {
            if self.batch.len() >= self.opts.batch {
                self.flush_batch(buf, out)?;
            }
            let n = (end - self.lit_start).min(self.opts.batch - self.batch.len());
            let bytes = &buf[self.lit_start..self.lit_start + n];
            if self.batch_start.is_none() {
                self.batch_start = Some(self.base + self.lit_start as u64);
            }
            self.batch.extend_from_slice(bytes);
            self.batch_ops.push(OP_INSERT);
            put_varint(&mut self.batch_ops, n as u64);
            self.stats.literal_bytes += n as u64;
            self.lit_start += n;
        }
        Ok(())
    }

    /// Appends sub-blocks `first..first + n` to the open COPY run, or starts one.
    fn push_copy(&mut self, first: usize, n: usize, at: usize, out: &mut Vec<u8>) {
        if let Some((start, count)) = self.run {
            if start + count == first {
                self.run = Some((start, count + n));
                return;
            }
            self.close_run(out);
        }
        self.run = Some((first, n));
        self.run_pos = self.base + at as u64;
    }

    /// Bytes covered by `count` sub-blocks from `first`.
    fn run_bytes(&self, first: usize, count: usize) -> usize {
        let end = ((first + count) as u64 * self.ul as u64).min(self.sig.instance_len);
        (end - first as u64 * self.ul as u64) as usize
    }

    fn close_run(&mut self, out: &mut Vec<u8>) {
        if let Some((start, count)) = self.run.take() {
            let dst = if self.batch_start.is_some() { &mut self.batch_ops } else { out };
            dst.push(OP_COPY);
            put_varint(dst, zigzag(start as i64 - self.copy_next as i64));
            put_varint(dst, count as u64);
            self.copy_next = start + count;
            self.stats.copy_ops += 1;
            if self.batch_start.is_some() && self.dict_len < self.window {
                // Known to both sides: the pending chunk may refer to it.
                let room = (self.window - self.dict_len).div_ceil(self.ul);
                let n = count.min(room);
                self.dict_runs.push((start, n, self.run_pos));
                self.dict_len += self.run_bytes(start, n);
            }
        }
    }

    /// The pending chunk is emitted once enough copied content follows it to
    /// serve as context, or when it spans so much output that keeping it
    /// would pin that output in memory.
    fn maybe_flush_span(&mut self, buf: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if let Some(start) = self.batch_start {
            let open = self.run.map_or(0, |(f, n)| self.run_bytes(f, n));
            if self.base + self.pos as u64 - start > 4 * self.window as u64 || self.dict_len + open >= self.window {
                self.close_run(out);
                self.flush_batch(buf, out)?;
            }
        }
        Ok(())
    }

    fn flush_batch(&mut self, buf: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let Some(start) = self.batch_start.take() else { return Ok(()) };
        let rel = (start - self.base) as usize;
        debug_assert!(rel >= self.window || self.base == 0);
        // Context: the output just before the chunk, then the runs copied after it.
        let raw = self.batch.len();
        let earned = self.opts.context_credit as u64 + self.stats.input_bytes / self.opts.context_ratio.max(1) as u64;
        let credit = earned.saturating_sub(self.context_used).min(usize::MAX as u64) as usize;
        let wanted = raw.saturating_mul(self.opts.context_factor).min(credit / 2);
        let budget = self.window.min(self.opts.min_context.max(wanted));
        // The decoder's bound on context (docs/protocol.md §4.2), which
        // this chunk must not exceed whatever the preferences above say.
        let allowed = (CONTEXT_CREDIT_START + CONTEXT_CREDIT_PER_BYTE * (start + raw as u64)).saturating_sub(self.context_used);
        let allowed = allowed.min(usize::MAX as u64) as usize;
        let tail = budget.min(rel).min(allowed);
        let [mut head, mut prefix, batch, ops] = self.spare.pop().unwrap_or_default();
        let mut runs = Vec::new();
        let mut ctx = 0usize;
        for &(first, n, at) in &self.dict_runs {
            if ctx >= budget {
                break;
            }
            // Whole units within the allowance (the last may be shorter).
            let n = n.min((budget - ctx).div_ceil(self.ul)).min((allowed - tail - ctx) / self.ul);
            if n == 0 {
                break;
            }
            let len = self.run_bytes(first, n);
            runs.push((first, n, (at - self.base) as usize, len));
            ctx += len;
        }
        // Sized once, exactly: fresh memory is what a chunk costs most
        // after zstd's own work, and the heap stays compact.
        prefix.clear();
        prefix.reserve_exact(tail + ctx);
        prefix.extend_from_slice(&buf[rel - tail..rel]);
        for &(_, _, from, len) in &runs {
            prefix.extend_from_slice(&buf[from..from + len]);
        }
        self.context_used += prefix.len() as u64;
        head.clear();
        head.push(OP_LIT_ZSTD);
        put_varint(&mut head, raw as u64);
        put_varint(&mut head, tail as u64);
        put_varint(&mut head, runs.len() as u64);
        let mut next = 0usize;
        for &(first, n, _, _) in &runs {
            put_varint(&mut head, zigzag(first as i64 - next as i64));
            put_varint(&mut head, n as u64);
            next = first + n;
        }
        let level = if self.stats.literal_bytes > self.opts.fast_after { self.opts.fast_level } else { self.opts.level };
        let mut job = Job {
            level,
            window_log: self.opts.window_log as u32 + 2,
            head,
            prefix,
            batch: std::mem::replace(&mut self.batch, batch),
            ops: std::mem::replace(&mut self.batch_ops, ops),
        };
        self.batch.clear();
        self.batch_ops.clear();
        self.dict_runs.clear();
        self.dict_len = 0;
        self.stats.literal_chunks += 1;
        if self.opts.background {
            return self.send(job, out.len());
        }
        let seg = render(&mut job);
        self.recycle(job);
        out.extend_from_slice(&seg?);
        Ok(())
    }

    /// Gives a job's buffers back for the next chunks.
    fn recycle(&mut self, job: Job) {
        if self.spare.len() < 2 {
            self.spare.push([job.head, job.prefix, job.batch, job.ops]);
        }
    }

    /// Hands a chunk to the helper thread; its bytes will go at offset `at`
    /// of the held output (its current end). With too many in flight,
    /// first helps with the oldest.
    fn send(&mut self, job: Job, at: usize) -> Result<()> {
        if self.helper.is_none() {
            self.helper = Some(Helper::spawn(self.opts.spawner)?);
        }
        while self.waiting.iter().filter(|w| w.seg.is_none()).count() >= MAX_WAITING {
            self.progress(true)?;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let shared = &self.helper.as_ref().expect("helper started").shared;
        let mut q = shared.state.lock().map_err(|_| stopped())?;
        q.jobs.push_back((seq, job));
        shared.signal();
        drop(q);
        self.waiting.push_back(Waiting { seq, at, seg: None });
        Ok(())
    }

    /// Puts the chunks the helper finished in their places. When `block`
    /// and it finished none, compresses the oldest queued chunk here, or
    /// waits for one to finish.
    fn progress(&mut self, block: bool) -> Result<()> {
        let shared = self.helper.as_ref().expect("helper started").shared.clone();
        let mut q = shared.state.lock().map_err(|_| stopped())?;
        loop {
            if !q.done.is_empty() {
                let done = std::mem::take(&mut q.done);
                drop(q);
                for (seq, seg, job) in done {
                    self.place(seq, seg, job)?;
                }
                return Ok(());
            }
            if !block {
                return Ok(());
            }
            if let Some((seq, mut job)) = q.jobs.pop_front() {
                drop(q);
                let seg = render(&mut job);
                return self.place(seq, seg, job);
            }
            if self.thread_gone() {
                return Err(stopped());
            }
            q = wait(&shared, q);
        }
    }

    fn thread_gone(&self) -> bool {
        self.helper.as_ref().is_none_or(|h| h.thread.is_finished())
    }

    fn place(&mut self, seq: u64, seg: Result<Vec<u8>>, job: Job) -> Result<()> {
        self.recycle(job);
        let w = self.waiting.iter_mut().find(|w| w.seq == seq).expect("a chunk sent");
        w.seg = Some(seg?);
        Ok(())
    }

    /// Runs `f` writing to the held output, then moves to `out` all of it
    /// that no longer waits on the helper (all of it if `wait`). Without
    /// `background`, `f` writes to `out` directly.
    fn staged(&mut self, out: &mut Vec<u8>, wait: bool, f: impl FnOnce(&mut Self, &mut Vec<u8>) -> Result<()>) -> Result<()> {
        if !self.opts.background {
            return f(self, out);
        }
        let mut held = std::mem::take(&mut self.held);
        let r = f(self, &mut held).and_then(|()| self.collect(wait));
        let mut from = 0;
        while let Some(w) = self.waiting.front_mut() {
            let Some(seg) = w.seg.take() else { break };
            out.extend_from_slice(&held[from..w.at]);
            out.extend_from_slice(&seg);
            from = w.at;
            self.waiting.pop_front();
        }
        if self.waiting.is_empty() {
            out.extend_from_slice(&held[from..]);
            held.clear();
        } else if from > 0 {
            held.drain(..from);
            for w in &mut self.waiting {
                w.at -= from;
            }
        }
        self.held = held;
        r
    }

    /// Takes the chunks that are done, or (if `wait`) all of them.
    fn collect(&mut self, wait: bool) -> Result<()> {
        if !wait {
            return if self.waiting.is_empty() { Ok(()) } else { self.progress(false) };
        }
        while self.waiting.iter().any(|w| w.seg.is_none()) {
            self.progress(true)?;
        }
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
    Encoder::with_options(sig.clone(), opts).encode_all(new, |b| {
        out.extend_from_slice(b);
        Ok(())
    })?;
    Ok(out)
}
