//! Every limit of the codec, in one place: what the wire formats allow,
//! what a server accepts from a client, and the credits that bound the
//! work an encoder or a decoder does for input it does not control.
//!
//! The figures a server promises (docs/protocol.md §4.3, `hsync.h`):
//! - memory per request: the signature's index (at most
//!   [`INDEX_BYTES_PER_BLOCK`] bytes per block, a 4608-byte signature has at
//!   most 2,834 blocks under [`SigLimits::server`]) plus the buffered window
//!   ([`ENCODER_WINDOW_BOUND`]) plus zstd's tables ([`ZSTD_TABLES_BOUND`]),
//!   whatever the body; `core/tests/bounds.rs` measures it.
//! - CPU per request: the search's extra work (candidates, chain steps,
//!   strong checks) is charged to a credit that starts at
//!   [`SEARCH_CREDIT_START`] and grows by [`SEARCH_CREDIT_PER_BYTE`] per
//!   input byte, so that no signature costs more than about 1.5 times a
//!   signature that matches nothing (BENCHMARKS.md, "Hostile signatures").
//!
//! A decoder (the client) bounds what a delta makes it do: the output
//! ([`crate::PatchLimits`], always given by the caller) and the context
//! copied for literal chunks ([`CONTEXT_CREDIT_START`] plus
//! [`CONTEXT_CREDIT_PER_BYTE`] per output byte).

// ---- Signature format (docs/protocol.md §3) ----

/// Largest signature a client sends: 4608 bytes raw, 6144 in base64url,
/// under the 8 KiB header-line limit of nginx and Apache.
pub const MAX_SIGNATURE_LEN: usize = 4608;
/// Block lengths the format can express.
pub const MIN_BLOCK_LEN: u32 = 16;
pub const MAX_BLOCK_LEN: u32 = 1 << 24;
/// Shortest sub-block.
pub const MIN_SUB_LEN: u32 = 8;
/// Largest instance length a signature may describe (8 GiB; larger copies are refetched whole).
pub const MAX_INSTANCE_LEN: u64 = 1 << 33;

// ---- What a server accepts (docs/protocol.md §3.5) ----

/// Shortest block a server accepts. Clients choose 64 bytes or more
/// (`SigParams::for_len`); shorter blocks only multiply the positions a
/// search must consider.
pub const SERVER_MIN_BLOCK_LEN: u32 = 64;
/// Longest block a server accepts. The encoder holds up to two blocks of
/// input beyond its window (a block found by searching is confirmed by the
/// one after it), so this bounds its memory: 2 x 128 KiB. Clients reach it
/// for instances of about 150 MB; larger copies are refetched whole.
pub const SERVER_MAX_BLOCK_LEN: u32 = 128 << 10;
/// Fewest bits of the weak and of the strong check a server accepts. The
/// parameters clients choose never go below them (at least 16 bits per
/// block, at most 32 of them weak); fewer weak bits would make most
/// positions candidates, fewer strong bits most candidates false.
pub const SERVER_MIN_WEAK_BITS: u8 = 12;
pub const SERVER_MIN_STRONG_BITS: u8 = 4;

/// Limits applied when parsing a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigLimits {
    /// Largest accepted signature, in raw bytes.
    pub max_len: usize,
    pub min_block_len: u32,
    pub max_block_len: u32,
    pub min_weak_bits: u8,
    pub min_strong_bits: u8,
}

impl SigLimits {
    /// What a server accepts from a client (the HTTP decisions use it).
    pub const fn server() -> SigLimits {
        SigLimits {
            max_len: MAX_SIGNATURE_LEN,
            min_block_len: SERVER_MIN_BLOCK_LEN,
            max_block_len: SERVER_MAX_BLOCK_LEN,
            min_weak_bits: SERVER_MIN_WEAK_BITS,
            min_strong_bits: SERVER_MIN_STRONG_BITS,
        }
    }

    /// Everything the format can express (`hsync delta`, where the user
    /// chose the signature: memory then grows with the block length).
    pub const fn format() -> SigLimits {
        SigLimits { max_len: usize::MAX, min_block_len: MIN_BLOCK_LEN, max_block_len: MAX_BLOCK_LEN, min_weak_bits: 1, min_strong_bits: 1 }
    }
}

impl Default for SigLimits {
    fn default() -> Self {
        SigLimits::server()
    }
}

// ---- Delta format (docs/protocol.md §4) ----

/// Largest literal chunk (decoded) a decoder accepts.
pub const MAX_LIT_CHUNK: usize = 1 << 20;
/// The window of a delta: literal chunks refer to at most `2^window_log`
/// bytes of output before them and as many bytes of copies after them.
pub const MIN_WINDOW_LOG: u8 = 10;
pub const MAX_WINDOW_LOG: u8 = 22;

/// Context credit of a delta (§4.2): the context bytes of all literal
/// chunks so far, this one included, may not exceed
/// `CONTEXT_CREDIT_START + CONTEXT_CREDIT_PER_BYTE * (output before the
/// chunk + the chunk's length)`. A decoder copies the context of every
/// chunk, so this bounds its work by the output it produces; the encoder
/// stays within it by construction.
pub const CONTEXT_CREDIT_START: u64 = 2 << 20;
pub const CONTEXT_CREDIT_PER_BYTE: u64 = 1;

// ---- Encoder work (informative: the server's own bound) ----

/// The search's credit, in units of one byte hashed (about 0.03 ns on
/// the benchmark machine): it starts at this and grows by
/// [`SEARCH_CREDIT_PER_BYTE`] for every input byte. Each candidate a
/// filter hit brings costs [`COST_CANDIDATE`], each step along a chain of
/// blocks [`COST_CHAIN_STEP`], each strong check [`COST_HASH`] plus the
/// block's length, and the confirmation of a match by the block after it
/// twice that. When the credit cannot pay for the most a candidate can
/// cost, the search only rolls until more input arrives: the bytes in
/// between become literal (still correct, only larger). The fixed costs
/// were measured on the benchmark machine (BENCHMARKS.md, "Hostile
/// signatures"): an honest search spends a few units per byte and never
/// runs out, a hostile one adds at most about a third of what a signature
/// that matches nothing costs.
pub const SEARCH_CREDIT_START: u64 = 128 << 10;
pub const SEARCH_CREDIT_PER_BYTE: u64 = 16;
pub const COST_CANDIDATE: u64 = 200;
pub const COST_CHAIN_STEP: u64 = 50;
pub const COST_HASH: u64 = 200;

/// Bytes of the signature's index per block: weak, strong, chain link,
/// duplicate flag, and two hash-table slots.
pub const INDEX_BYTES_PER_BLOCK: usize = 4 + 4 + 4 + 1 + 2 * 4;
/// The heap an encoder uses at most besides its signature's index, with
/// the default options and a signature a server accepts: five windows of
/// input (one of history, four that a pending literal chunk may span),
/// two blocks of lookahead and a 64 KiB piece, in a buffer whose capacity
/// may be up to twice its length; a literal chunk's context (two windows
/// and a block), batch and output. Measured by `core/tests/bounds.rs`.
pub const ENCODER_HEAP_BOUND: usize = 4 << 20;
/// zstd's match-finder tables for one literal chunk (2^16 hash and 2^18
/// chain entries of 4 bytes; see `zstdx::table_logs`) and its working buffers.
pub const ZSTD_TABLES_BOUND: usize = (1 << 16) * 4 + (1 << 18) * 4 + (1 << 20);
/// Compression contexts a process keeps between frames (each at most
/// [`ZSTD_TABLES_BOUND`]: 9 MiB in all). A threaded server (httpd's
/// mpm_event runs dozens of threads per child) may compress more frames at
/// once; the contexts beyond these are freed when their frame is done, so
/// what a process keeps does not creep up with each new peak of concurrency
/// over a long run. One more context costs its allocation and zeroed tables
/// (tens of microseconds) only when more than this many frames are
/// compressed at once.
pub const ZSTD_POOLED_CONTEXTS: usize = 4;
/// Largest dcz compression context kept for the next response (as many as
/// [`ZSTD_POOLED_CONTEXTS`]): one for pages up to a few MB. A larger one
/// (a window for a large dictionary, up to 128 MiB) is freed after its
/// response.
pub const DCZ_POOLED_CONTEXT_BYTES: usize = 16 << 20;

/// A response being copied into the version store is held in memory up
/// to this many bytes, then in a file: most responses are versions the
/// store holds already, and cost their hash and no write (per request,
/// at most this much memory besides the encoder's).
pub const STORE_SPILL: usize = 256 << 10;

// ---- Feeds (docs/protocol.md §8) ----

/// Largest feed body a server buffers to parse and truncate: 4 MiB. A
/// feed response is held (headers and body) until it is complete, so this
/// is the memory a feed request costs on top of the server's own; a body
/// known or found to be longer is sent as it is, unbuffered past this.
/// Feeds are usually 10 KiB to 1 MiB (the corpus's: 157-277 KiB).
pub const FEED_MAX_BYTES: usize = 4 << 20;
/// Deepest element nesting in a feed (XHTML content nests; 64 is far
/// beyond any real feed, and bounds quick-xml's stack of open names).
pub const FEED_MAX_DEPTH: usize = 64;
/// Most entries in a feed that is truncated (more: the whole feed).
pub const FEED_MAX_ENTRIES: usize = 1024;
/// Largest entry (more: the whole feed).
pub const FEED_MAX_ENTRY_BYTES: usize = 1 << 20;
/// Most entries an ETag names (the first ones in document order, which in
/// feeds are the newest): 32 four-byte hashes, an ETag of at most 193
/// characters. A reader holding a feed with more entries is sent the
/// entries past these again (never fewer than it lacks).
pub const FEED_ETAG_MAX_ENTRIES: usize = 32;
/// Feed versions a process remembers (their entry hashes and ETag, by the
/// BLAKE3 hash of their bytes), so that polls of an unchanged feed are not
/// parsed again: at most about 260 KiB per process (`feed::seen`).
pub const FEED_SEEN_VERSIONS: usize = 64;
