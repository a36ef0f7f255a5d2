//! hsync core: rsync-style deltas for HTTP responses.
//!
//! A client holding an old copy of a resource sends its [`Signature`]; the
//! server runs an [`Encoder`] over the response it just generated and sends
//! the delta; the client [`patch`]es its copy and verifies the digest.
//! The server stores nothing. Wire formats: `docs/protocol.md`.

pub mod delta;
pub mod error;
pub mod ffi;
pub mod hash;
pub mod http;
pub mod limits;
pub mod patch;
pub mod rollsum;
pub mod signature;
mod spawn;
mod wire;
mod zstdx;

pub use delta::{delta, delta_with, EncodeOptions, EncodeStats, Encoder};
pub use error::{Error, Result};
pub use patch::{delta_header, patch, patch_to, patch_with_limits, DeltaHeader, PatchLimits};
pub use signature::{SigLimits, SigParams, Signature, SignatureBuilder, MAX_SIGNATURE_LEN};
