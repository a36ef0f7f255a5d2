//! The codec: what a client sends ([`signature`], with the rolling sum of
//! [`rollsum`]), what a server sends ([`delta`], whose literal chunks may be
//! compressed on a second thread by [`pipeline`]), and how a client
//! rebuilds and verifies the instance ([`patch`]); and [`dcz`], RFC 9842's
//! dictionary-compressed zstd for browsers. Byte layouts in
//! docs/protocol.md §3–4.

pub mod dcz;
pub mod delta;
pub mod patch;
mod pipeline;
pub mod rollsum;
pub mod signature;
mod wire;
pub(crate) mod zstdx;
