//! The optional second thread of an encoder (`EncodeOptions::background`):
//! literal chunks wait in a queue shared with the encoder, which
//! compresses the oldest itself rather than sit idle when it must wait for
//! them; between chunks the helper hashes an instance lent by
//! `Encoder::encode_all` for its digest. Results are placed by sequence
//! number, so the delta's bytes never depend on which thread did what.
//! Servers never use it; the CLI does, for large files.

use super::delta::{Spawner, OP_LIT_RAW};
use super::wire::put_varint;
use super::zstdx;
use crate::error::Result;
use crate::hash::{Digest as InstanceDigest, Digester};

/// A literal chunk to compress, and the buffers it lends.
pub(super) struct Job {
    pub(super) level: i32,
    pub(super) window_log: u32,
    pub(super) head: Vec<u8>,
    pub(super) prefix: Vec<u8>,
    pub(super) batch: Vec<u8>,
    pub(super) ops: Vec<u8>,
}

/// The helper thread of an encoder with `background` set. Chunks wait in a
/// queue shared with the encoder, which compresses the oldest itself
/// rather than sit idle when it must wait for them (at a flush, at the end,
/// or with too many in flight).
pub(super) struct Helper {
    pub(super) shared: std::sync::Arc<Shared>,
    pub(super) thread: std::thread::JoinHandle<()>,
}

pub(super) struct Shared {
    pub(super) state: std::sync::Mutex<Queue>,
    /// Signalled, with the lock held, when a chunk is queued or finished, a
    /// digest piece is done, and at closing.
    pub(super) cv: std::sync::Condvar,
}

impl Shared {
    /// Wakes any waiter; call with the lock held.
    pub(super) fn signal(&self) {
        self.cv.notify_all();
    }
}

#[derive(Default)]
pub(super) struct Queue {
    pub(super) jobs: std::collections::VecDeque<(u64, Job)>,
    pub(super) done: Vec<(u64, Result<Vec<u8>>, Job)>,
    pub(super) closed: bool,
    pub(super) digest: Digest,
}

/// The digest of an instance in memory ([`Encoder::encode_all`]), which the
/// helper computes while the search goes on, between chunks. The instance
/// is lent as an address and a length: `DigestLoan` takes it back, or
/// waits for the helper to be done with it, before `encode_all` returns.
#[derive(Default)]
pub(super) enum Digest {
    #[default]
    None,
    /// Lent, its first `hashed` bytes hashed into the state.
    Lent { at: usize, len: usize, hashed: usize, state: Box<Digester> },
    /// The helper is hashing a piece.
    Running,
    /// `None` if hashing panicked (the encoder then hashes it itself).
    Done(Option<InstanceDigest>),
}

/// The helper hashes the instance in pieces of this size, and compresses
/// any chunk queued meanwhile first: chunks are what the encoder waits for.
/// Hashing also reads a mapped file in (page faults: 0.7 ms for 10 MB on
/// the benchmark VM), mostly ahead of the search.
pub(super) const PIECE: usize = 1 << 20;

/// Waits for the next event on the queue (see `Shared::cv`). A poisoned
/// lock is taken all the same: the queue's state is only ever changed
/// whole. (An earlier version spun for up to a millisecond first, which won
/// a benchmark on an idle VM and burned a CPU: a library linked into
/// servers does not spin.)
pub(super) fn wait<'a>(sh: &'a Shared, q: std::sync::MutexGuard<'a, Queue>) -> std::sync::MutexGuard<'a, Queue> {
    // With a timeout, so that a caller whose helper died sees it.
    sh.cv.wait_timeout(q, std::time::Duration::from_millis(10)).map_or_else(|e| e.into_inner().0, |(q, _)| q)
}

/// Ends the loan of an instance to the helper, on every way out of
/// `encode_all`, unwinding included.
pub(super) struct DigestLoan(pub(super) std::sync::Arc<Shared>);

impl DigestLoan {
    /// The instance's digest: the helper's, or finished here from where the
    /// helper left it. Waits only while the helper is hashing a piece.
    pub(super) fn take(&self, data: &[u8]) -> InstanceDigest {
        let mut q = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match std::mem::take(&mut q.digest) {
                Digest::Running => {
                    q.digest = Digest::Running;
                    q = wait(&self.0, q);
                }
                Digest::Done(Some(d)) => return d,
                Digest::Lent { hashed, mut state, .. } => {
                    drop(q);
                    state.update(&data[hashed..]);
                    return state.finish();
                }
                Digest::Done(None) | Digest::None => {
                    drop(q);
                    return crate::hash::digest(data);
                }
            }
        }
    }

    /// Takes the loan back, waiting if the helper is hashing a piece.
    pub(super) fn end(&self) {
        let mut q = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        while matches!(q.digest, Digest::Running) {
            q = wait(&self.0, q);
        }
        q.digest = Digest::None;
    }
}

impl Drop for DigestLoan {
    fn drop(&mut self) {
        self.end();
    }
}

/// A chunk handed to the helper: its bytes go at offset `at` of `held`.
pub(super) struct Waiting {
    pub(super) seq: u64,
    pub(super) at: usize,
    pub(super) seg: Option<Vec<u8>>,
}

/// Most chunks in flight: each holds up to two windows of context.
pub(super) const MAX_WAITING: usize = 4;

impl Helper {
    /// Starts the thread.
    pub(super) fn spawn(spawner: Option<Spawner>) -> Result<Helper> {
        let shared = std::sync::Arc::new(Shared { state: std::sync::Mutex::new(Queue::default()), cv: std::sync::Condvar::new() });
        let sh = shared.clone();
        let main: Box<dyn FnOnce() + Send> = Box::new(move || helper_main(&sh));
        let thread = match spawner {
            Some(spawn) => spawn(main),
            None => std::thread::Builder::new().name("hsync-zstd".into()).spawn(main),
        }
        .map_err(|_| crate::error::Error::Compression("cannot start the compression thread"))?;
        Ok(Helper { shared, thread })
    }
}

/// The helper's loop: compresses queued chunks, oldest first, and between
/// them hashes the lent instance a piece at a time. Ends when the queue is
/// closed or its lock poisoned.
pub(super) fn helper_main(sh: &Shared) {
    let Ok(mut q) = sh.state.lock() else { return };
    loop {
        if let Some((seq, mut job)) = q.jobs.pop_front() {
            drop(q);
            let r = render(&mut job);
            let Ok(mut g) = sh.state.lock() else { return };
            g.done.push((seq, r, job));
            sh.signal();
            q = g;
            continue;
        }
        let digest = std::mem::take(&mut q.digest);
        if let Digest::Lent { at, len, hashed, mut state } = digest {
            q.digest = Digest::Running;
            drop(q);
            let end = (hashed + PIECE).min(len);
            // SAFETY: the encoder lent `len` bytes at `at`, and its
            // DigestLoan does not let them go while the state is Running.
            let piece = unsafe { std::slice::from_raw_parts((at + hashed) as *const u8, end - hashed) };
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.update(piece))).is_ok();
            // Whatever happened, Running must end: the encoder waits on it.
            let mut g = sh.state.lock().unwrap_or_else(|e| e.into_inner());
            g.digest = match (ok, end == len) {
                (false, _) => Digest::Done(None),
                (true, true) => Digest::Done(Some(state.finish())),
                (true, false) => Digest::Lent { at, len, hashed: end, state },
            };
            sh.signal();
            q = g;
            continue;
        }
        q.digest = digest;
        if q.closed {
            return;
        }
        q = wait(sh, q);
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // Chunks not started are dropped, and the thread ends once it sees
        // the queue closed. It is not waited for: it holds nothing of the
        // encoder's (a lent instance is taken back by `encode_all` itself).
        let mut q = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        q.jobs.clear();
        q.closed = true;
        self.shared.signal();
    }
}

pub(super) fn stopped() -> crate::error::Error {
    crate::error::Error::Compression("the compression thread stopped")
}

/// A literal chunk's bytes in the delta: its head, then the compressed
/// bytes, or the raw bytes when compression does not pay, then its ops.
pub(super) fn render(job: &mut Job) -> Result<Vec<u8>> {
    let mut comp = Vec::new();
    let n = zstdx::compress(job.level, job.window_log, &job.prefix, &job.batch, &mut comp)?;
    let raw = job.batch.len();
    let mut seg = Vec::with_capacity(job.head.len() + n.min(raw) + job.ops.len() + 16);
    if n + job.head.len() < raw {
        seg.extend_from_slice(&job.head);
        put_varint(&mut seg, n as u64);
        seg.extend_from_slice(&comp);
    } else {
        seg.push(OP_LIT_RAW);
        put_varint(&mut seg, raw as u64);
        seg.extend_from_slice(&job.batch);
    }
    seg.extend_from_slice(&job.ops);
    Ok(seg)
}
