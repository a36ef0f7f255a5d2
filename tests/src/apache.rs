//! The Apache httpd arm of the server harness.
//!
//! PLACEHOLDER, to be replaced by the Apache module's owner. Expected:
//!
//! ```ignore
//! pub fn start(opts: &crate::Options) -> crate::RunningServer
//! ```
//!
//! writes an httpd.conf into `crate::temp_dir("apache")` that loads
//! `crate::ServerKind::Apache.module()` (target/modules/mod_hsync.so) and
//! implements every location listed on [`crate::Options`] (`/`, `/pre/`,
//! `/nt/`, `/off/`, `/proxy/`, `gzip` via mod_deflate, `max_signature`,
//! `module: false` = same config without mod_hsync), error log at info
//! level, access log lines ending with `%{hsync_ratio}n`; then starts
//! `httpd -DFOREGROUND` on `crate::free_port()` with
//! `crate::RunningServer::spawn(...)` (stopped with SIGTERM on drop).
//! `crate::nginx::start` is the model.

pub fn start(_opts: &crate::Options) -> crate::RunningServer {
    panic!("apache harness not implemented (tests/src/apache.rs)")
}
