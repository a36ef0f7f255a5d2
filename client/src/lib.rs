//! hsync client library: fetch URLs through an on-disk cache, using hsync
//! deltas when the origin offers them, and the caching forward proxy.
pub mod cache;
pub mod check;
pub mod cli;
pub mod dict;
pub mod fetch;
pub mod log;
pub mod mitm;
pub mod notice;
pub mod optimistic;
pub mod parts;
pub mod proxy;
pub mod tls;

pub use cache::DiskCache;
pub use fetch::{FetchOptions, Fetcher, Outcome, Source};
