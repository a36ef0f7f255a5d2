//! Headless Chromium (Debian's `chromium`) as a test client behind a proxy.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

pub const BIN: &str = "/usr/bin/chromium";

/// Whether to run a Chromium case: a skip notice when Chromium is missing,
/// a failure instead when `HSYNC_REQUIRE_CHROMIUM` is set (as `build/test` does).
pub fn available() -> bool {
    if Path::new(BIN).exists() {
        return true;
    }
    if std::env::var_os("HSYNC_REQUIRE_CHROMIUM").is_some() {
        panic!("HSYNC_REQUIRE_CHROMIUM is set but {BIN} is missing");
    }
    eprintln!("SKIPPED: {BIN} not installed (apt-get install chromium); set HSYNC_REQUIRE_CHROMIUM to make this a failure");
    false
}

/// A headless Chromium with a fresh profile in `profile`, every request
/// through the HTTP proxy at `proxy`, that prints the DOM of the page it
/// loads (`--dump-dom`); add the URL (and any other flags) and run it.
pub fn dump_dom_command(profile: &Path, proxy: SocketAddr) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-quic",
        "--blink-settings=imagesEnabled=false",
        // Chromium never proxies loopback unless told to.
        "--proxy-bypass-list=<-loopback>",
        "--virtual-time-budget=2000",
        "--dump-dom",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--proxy-server=http://{proxy}"));
    cmd
}
