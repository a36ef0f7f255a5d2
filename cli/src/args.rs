//! The command line's definition: parsed by `main.rs`, and read by
//! `examples/man.rs`, which writes the man pages from it (`build/packages`).

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "hsync", version, about = "Send only the difference: rsync-style deltas for HTTP", propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// The codec commands alone: parsed without building the client's
/// arguments, which took 0.1–0.2 ms of a 5 ms `hsync delta` run.
#[derive(Parser)]
#[command(name = "hsync", version, about = "Send only the difference: rsync-style deltas for HTTP", propagate_version = true)]
pub struct CodecCli {
    #[command(subcommand)]
    pub cmd: Codec,
}

#[derive(Subcommand)]
pub enum Cmd {
    #[command(flatten)]
    Codec(Codec),
    /// Fetch a URL through an on-disk cache, using hsync deltas when the server offers them
    Get(hsync_client::cli::GetArgs),
    /// Run the caching forward proxy that decodes hsync for browsers and other clients
    Proxy(hsync_client::cli::ProxyArgs),
    /// Check a server's conformance to the protocol at URL: one line per requirement, a summary, an exit status
    Check(hsync_client::cli::CheckArgs),
}

#[derive(Subcommand)]
pub enum Codec {
    /// Write the signature of OLD (the bytes that go, base64url-encoded, into Hsync-Signature)
    Signature {
        /// The instance the client holds ('-' for stdin)
        old: PathBuf,
        /// Where to write the signature ('-' for stdout)
        sig: PathBuf,
        /// Force a block length instead of choosing one from the size
        #[arg(long)]
        block_len: Option<u32>,
        /// Seed of the block checks [default: random, as a client must use
        /// so that content made by others cannot aim at them]
        #[arg(long, value_name = "N")]
        seed: Option<u64>,
    },
    /// Write the delta turning the instance SIG describes into NEW (exactly an hsync response body)
    Delta {
        /// A signature written by `hsync signature` ('-' for stdin)
        sig: PathBuf,
        /// The new instance ('-' for stdin)
        new: PathBuf,
        /// Where to write the delta ('-' for stdout)
        delta: PathBuf,
        /// zstd level for literal bytes
        #[arg(long, default_value_t = hsync_core::EncodeOptions::default().level)]
        level: i32,
        /// Threads: 1 does everything on one; 2 compresses literal bytes (and,
        /// for a file, hashes it for the digest) on a second thread while the
        /// search goes on [default: 2 when NEW is a file of 1 MiB or more and
        /// the machine has two CPUs or more]. The delta is the same either way.
        #[arg(short = 'T', long, value_parser = clap::value_parser!(u32).range(1..=2))]
        threads: Option<u32>,
        /// Print what the encoder did to stderr
        #[arg(short, long)]
        verbose: bool,
    },
    /// Apply DELTA to OLD, verify the result and write it to NEW
    Patch {
        /// The instance the signature was made from ('-' for stdin)
        old: PathBuf,
        /// The delta ('-' for stdin)
        delta: PathBuf,
        /// Where to write the rebuilt instance ('-' for stdout)
        new: PathBuf,
        /// Refuse a delta that would rebuild more than this many bytes
        #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_OUTPUT)]
        max_output: u64,
    },
}

/// Default of `hsync patch --max-output`: the largest instance a
/// signature can describe (8 GiB). A delta of a few bytes can name the
/// same old blocks over and over: without a bound, a hostile one fills the disk.
pub const DEFAULT_MAX_OUTPUT: u64 = hsync_core::signature::MAX_INSTANCE_LEN;
