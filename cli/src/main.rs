//! `hsync`: rdiff-style codec commands, plus the HTTP client (`get`, `proxy`).

use args::{Cli, Cmd, Codec, CodecCli};
use clap::Parser;
use hsync_core::{patch_to, patch_with_limits, Encoder, PatchLimits, SigLimits, SigParams, Signature, SignatureBuilder};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod args;
mod spawn;

fn is_dash(p: &Path) -> bool {
    p.as_os_str() == "-"
}

fn read_all(p: &Path) -> io::Result<Vec<u8>> {
    if is_dash(p) {
        let mut v = Vec::new();
        io::stdin().lock().read_to_end(&mut v)?;
        Ok(v)
    } else {
        std::fs::read(p)
    }
}

fn open_in(p: &Path) -> io::Result<Box<dyn Read>> {
    Ok(if is_dash(p) { Box::new(io::stdin().lock()) } else { Box::new(BufReader::new(File::open(p)?)) })
}

/// An instance to read whole: a regular file of 1 MiB or more is mapped
/// (as ripgrep does; no copy, no fresh pages), anything else read.
enum Input {
    Map(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Input {
    fn open(p: &Path) -> io::Result<Input> {
        match Input::map(p, true)? {
            Some(m) => Ok(Input::Map(m)),
            None => read_all(p).map(Input::Owned),
        }
    }

    /// Maps a regular file of 1 MiB or more, asking for huge pages: a
    /// file not yet cached is then read into 2 MiB folios, mapped whole
    /// (10 MB: 0.07 ms to map and unmap again, against 0.7–1.2 ms in 4 KiB
    /// pages on the benchmark VM). `populate` builds the page tables at
    /// once, cheaper than a fault every 16 pages, unless another thread
    /// reads the file ahead.
    fn map(p: &Path, populate: bool) -> io::Result<Option<memmap2::Mmap>> {
        if is_dash(p) {
            return Ok(None);
        }
        let f = File::open(p)?;
        let meta = f.metadata()?;
        if !meta.is_file() || meta.len() < 1 << 20 {
            return Ok(None);
        }
        // SAFETY: a read-only private mapping. Should another process
        // truncate the file meanwhile, reading it faults (SIGBUS), as for
        // any program that maps its input; the output is then left as a
        // temporary file, never in place.
        let Ok(m) = (unsafe { memmap2::MmapOptions::new().map(&f) }) else { return Ok(None) };
        // Advice only: a kernel without it maps 4 KiB pages, faulted in.
        let _ = m.advise(memmap2::Advice::HugePage);
        if populate {
            let _ = m.advise(memmap2::Advice::PopulateRead);
        }
        Ok(Some(m))
    }
}

impl std::ops::Deref for Input {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Input::Map(m) => m,
            Input::Owned(v) => v,
        }
    }
}

/// Output goes to a temporary file renamed into place, so a failure never
/// leaves a partial NEW (unless it is a device, FIFO or symlink: see
/// `replace_by_rename`).
struct Output {
    tmp: Option<(PathBuf, PathBuf)>,
    w: Box<dyn Write>,
}

impl Output {
    fn create(p: &Path) -> io::Result<Output> {
        if is_dash(p) {
            return Ok(Output { tmp: None, w: Box::new(BufWriter::new(io::stdout().lock())) });
        }
        if !hsync_client::cli::replace_by_rename(p) {
            // a device, FIFO or symlink: written through, never replaced
            let f = std::fs::OpenOptions::new().write(true).truncate(true).open(p)?;
            return Ok(Output { tmp: None, w: Box::new(BufWriter::new(f)) });
        }
        let mut name = p.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".hsync-tmp.{}", std::process::id()));
        let tmp = p.with_file_name(name);
        let f = File::create(&tmp)?;
        Ok(Output { tmp: Some((tmp, p.to_path_buf())), w: Box::new(BufWriter::new(f)) })
    }

    fn commit(mut self) -> io::Result<()> {
        self.w.flush()?;
        drop(std::mem::replace(&mut self.w, Box::new(io::sink())));
        if let Some((tmp, dst)) = self.tmp.take() {
            if exchange(&tmp, &dst) {
                // `tmp` now names the old file.
                std::fs::remove_file(tmp)?;
            } else {
                std::fs::rename(tmp, dst)?;
            }
        }
        Ok(())
    }
}

/// Swaps the files `a` and `b` name, in one step, when both exist and the
/// file system can. Renaming over an existing file would make ext4
/// (`auto_da_alloc`) allocate the new file's blocks and start writing them
/// at once; swapping and then unlinking does not (0.18 → 0.05 ms for a
/// small delta on the benchmark VM). Either way, `b` names the old file or
/// the whole new one at every moment.
fn exchange(a: &Path, b: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        if !std::fs::symlink_metadata(b).is_ok_and(|m| m.file_type().is_file()) {
            return false;
        }
        let (Ok(a), Ok(b)) = (std::ffi::CString::new(a.as_os_str().as_bytes()), std::ffi::CString::new(b.as_os_str().as_bytes())) else {
            return false;
        };
        // SAFETY: two NUL-terminated paths; renameat2 only renames.
        unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (a, b);
        false
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Some((tmp, _)) = self.tmp.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

fn ctx<T>(r: io::Result<T>, what: &Path) -> Result<T, String> {
    r.map_err(|e| format!("{}: {e}", what.display()))
}

fn signature(old: &Path, sig: &Path, block_len: Option<u32>, seed: Option<u64>) -> Result<(), String> {
    // A file's length is known up front, so its signature streams; stdin is read whole.
    let (len, mut input): (u64, Box<dyn Read>) = if is_dash(old) {
        let data = ctx(read_all(old), old)?;
        (data.len() as u64, Box::new(io::Cursor::new(data)))
    } else {
        let meta = ctx(std::fs::metadata(old), old)?;
        (meta.len(), ctx(open_in(old), old)?)
    };
    if len > hsync_core::signature::MAX_INSTANCE_LEN {
        return Err(format!("{}: too large for a signature ({len} bytes)", old.display()));
    }
    let mut params = SigParams::for_len(len);
    if let Some(b) = block_len {
        if !(hsync_core::signature::MIN_BLOCK_LEN..=hsync_core::signature::MAX_BLOCK_LEN).contains(&b) {
            return Err(format!(
                "--block-len must be between {} and {}",
                hsync_core::signature::MIN_BLOCK_LEN,
                hsync_core::signature::MAX_BLOCK_LEN
            ));
        }
        params.block_len = b;
    }
    let mut b = match seed {
        Some(s) => SignatureBuilder::with_seed(params, s),
        None => SignatureBuilder::new(params),
    };
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = ctx(input.read(&mut buf), old)?;
        if n == 0 {
            break;
        }
        b.update(&buf[..n]);
    }
    let s = b.finish();
    let mut out = ctx(Output::create(sig), sig)?;
    ctx(out.w.write_all(&s.to_bytes()), sig)?;
    ctx(out.commit(), sig)
}

fn delta(sig: &Path, new: &Path, dst: &Path, level: i32, threads: Option<u32>, verbose: bool) -> Result<(), String> {
    let sig_bytes = ctx(read_all(sig), sig)?;
    // Any valid signature: the user chose it (a server applies SigLimits::server()).
    let limits = SigLimits::format();
    let s = Signature::parse(&sig_bytes, &limits).map_err(|e| format!("{}: {e}", sig.display()))?;
    // A second thread pays for itself on large inputs only: starting it
    // costs tens of µs, a third of what a 150 KB page takes. It hashes the
    // whole input for the digest while the search goes on, reading the
    // mapped file in as it goes (so it is not populated up front).
    let two = threads.map_or_else(|| std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2), |t| t >= 2);
    let map = ctx(Input::map(new, !two), new)?;
    let background = two && (threads.is_some() || map.is_some());
    let opts = hsync_core::EncodeOptions { level, background, spawner: Some(spawn::helper), ..Default::default() };
    let mut enc = Encoder::with_options(s, opts);
    if let Some(map) = map {
        // Searched where it lies, not copied through the encoder's window.
        let mut out = ctx(Output::create(dst), dst)?;
        let mut failed = None;
        let r = enc.encode_all(&map, |b| out.w.write_all(b).inspect_err(|e| failed = Some(format!("{}: {e}", dst.display()))));
        let st = r.map_err(|e| failed.take().unwrap_or_else(|| e.to_string()))?;
        ctx(out.commit(), dst)?;
        report(verbose, &st);
        return Ok(());
    }
    let mut input = ctx(open_in(new), new)?;
    let mut out = ctx(Output::create(dst), dst)?;
    let mut buf = vec![0u8; 1 << 16];
    let mut chunk = Vec::new();
    loop {
        let n = ctx(input.read(&mut buf), new)?;
        chunk.clear();
        if n == 0 {
            enc.finish(&mut chunk).map_err(|e| e.to_string())?;
            ctx(out.w.write_all(&chunk), dst)?;
            break;
        }
        enc.update(&buf[..n], &mut chunk).map_err(|e| e.to_string())?;
        ctx(out.w.write_all(&chunk), dst)?;
    }
    ctx(out.commit(), dst)?;
    report(verbose, &enc.stats());
    Ok(())
}

fn report(verbose: bool, st: &hsync_core::EncodeStats) {
    if verbose {
        eprintln!(
            "hsync: {} bytes in, {} bytes out ({} copied, {} literal in {} chunks, {} copy ops)",
            st.input_bytes, st.output_bytes, st.copied_bytes, st.literal_bytes, st.literal_chunks, st.copy_ops
        );
    }
}

fn patch(old: &Path, delta: &Path, new: &Path, max_output: u64) -> Result<(), String> {
    if is_dash(old) && is_dash(delta) {
        return Err("OLD and DELTA cannot both be stdin".into());
    }
    let o = ctx(Input::open(old), old)?;
    let d = ctx(read_all(delta), delta)?;
    let limits = PatchLimits { max_output };
    let bad = |e: hsync_core::Error| format!("{}: {e}", delta.display());
    let mut out = ctx(Output::create(new), new)?;
    if out.tmp.is_some() {
        // A temporary file, renamed into place only once the digest matched
        // (dropped otherwise): the instance can be written as it is rebuilt.
        patch_to(&o, &d, &limits, &mut |piece| out.w.write_all(piece)).map_err(bad)?;
    } else {
        // stdout, a device or a FIFO: nothing may reach it unverified.
        let rebuilt = patch_with_limits(&o, &d, &limits).map_err(bad)?;
        ctx(out.w.write_all(&rebuilt), new)?;
    }
    ctx(out.commit(), new)
}

/// Heap settings for one `hsync delta` run. Fresh memory costs a page
/// fault per 4 KiB page when first touched (1.6–2 µs each on the benchmark
/// VM; 0.4 µs per 4 KiB on a huge page). zstd sizes its workspace to each
/// literal chunk and reallocates it when a chunk needs more; glibc would
/// serve such blocks from new mappings and unmap them on free. Freed
/// memory stays in the heap instead, the heap is backed by transparent
/// huge pages where the kernel allows it, and the compression thread
/// allocates from it too (one arena). With the blocks placed on the huge
/// pages (below), a 10 MB run takes 160 page faults, as `rdiff` does, where
/// it took 670. The servers are long-lived and pool their contexts: only
/// the tool needs this.
fn tune_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt, sbrk and madvise only tune glibc's allocator and the
    // heap's own pages; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
        // Grow the heap once, by 32 MiB of address space (touched only as
        // used), and ask for transparent huge pages on it.
        libc::mallopt(libc::M_TOP_PAD, 32 << 20);
        let p = libc::malloc(1 << 20);
        let after = libc::sbrk(0) as usize;
        // glibc's chunk header is 16 bytes before the block it returns.
        let chunk = p as usize - 16;
        libc::free(p);
        let huge = 2usize << 20;
        // The first huge page begins past the header glibc wrote at the
        // probe's end: a page touched before madvise keeps its 2 MiB range
        // on 4 KiB pages.
        let start = (p as usize + (1 << 20) + 64 + huge - 1) & !(huge - 1);
        if after > start + huge {
            libc::madvise(start as *mut libc::c_void, after - start, libc::MADV_HUGEPAGE);
            // Fill the heap below the first huge page with one block, kept
            // for the life of the process (only its header is ever touched),
            // so that the blocks that follow start on huge pages.
            // (black_box: LLVM drops a malloc whose block goes unused.)
            std::hint::black_box(libc::malloc(start - chunk - 24));
        }
    }
}

fn main() -> ExitCode {
    let codec = matches!(std::env::args_os().nth(1).as_deref().and_then(|a| a.to_str()), Some("signature" | "delta" | "patch"));
    let cmd = if codec {
        CodecCli::parse().cmd
    } else {
        let cli = match Cli::try_parse() {
            Ok(c) => c,
            Err(e) => {
                // `hsync check` exits 2 for "not supported": its usage errors exit 3.
                let check = std::env::args_os().nth(1).is_some_and(|a| a == "check");
                let code = if check && e.use_stderr() { hsync_client::check::EXIT_USAGE as i32 } else { e.exit_code() };
                let _ = e.print();
                return ExitCode::from(code as u8);
            }
        };
        match cli.cmd {
            Cmd::Codec(c) => c,
            Cmd::Get(args) => return hsync_client::cli::get(args),
            Cmd::Proxy(args) => return hsync_client::cli::proxy(args),
            Cmd::Check(args) => return hsync_client::cli::check(args),
        }
    };
    let r = match cmd {
        Codec::Signature { old, sig, block_len, seed } => signature(&old, &sig, block_len, seed),
        Codec::Delta { sig, new, delta: d, level, threads, verbose } => {
            tune_heap();
            delta(&sig, &new, &d, level, threads, verbose)
        }
        Codec::Patch { old, delta: d, new, max_output } => patch(&old, &d, &new, max_output),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hsync: {e}");
            ExitCode::from(1)
        }
    }
}
