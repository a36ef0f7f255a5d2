//! Command-line entry points for `hsync get` and `hsync proxy`.
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// URL to fetch
    pub url: String,
}

#[derive(clap::Args, Debug)]
pub struct ProxyArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
}

pub fn get(_args: GetArgs) -> ExitCode {
    eprintln!("hsync get: not implemented yet");
    ExitCode::from(2)
}

pub fn proxy(_args: ProxyArgs) -> ExitCode {
    eprintln!("hsync proxy: not implemented yet");
    ExitCode::from(2)
}
