//! Writes the man pages of `hsync` and of each of its subcommands
//! (`hsync.1`, `hsync-get.1`, ...) from the command line's definition:
//!
//! ```sh
//! cargo run --release -p hsync --example man -- target/man
//! ```
//!
//! `build/packages` ships them in the `hsync` package.

use clap::CommandFactory;
use std::path::PathBuf;

#[path = "../src/args.rs"]
#[allow(dead_code)]
mod args;

fn main() -> std::io::Result<()> {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: man DIR");
        std::process::exit(2);
    };
    std::fs::create_dir_all(&dir)?;
    let cmd = args::Cli::command();
    clap_mangen::generate_to(cmd, &dir)?;
    for e in std::fs::read_dir(&dir)? {
        println!("{}", e?.path().display());
    }
    Ok(())
}
