//! hsync core: rsync-style deltas for HTTP responses.
//!
//! A client holding an old copy of a resource sends its [`Signature`]; the
//! server runs an [`Encoder`] over the response it just generated and sends
//! the delta; the client [`patch`]es its copy and verifies the digest.
//! The server stores nothing. Wire formats: `docs/protocol.md`.
//!
//! Layout, one job per module:
//! - [`codec`]: the signature, the delta encoder (and its optional second
//!   thread), the patcher, and their byte layouts;
//! - [`http`]: the decisions a server makes and the header edits that
//!   follow, for both server modules;
//! - [`ffi`]: the C ABI of those modules (`include/hsync.h`);
//! - [`store`]: the bounded store of recent versions (RFC 9842 dictionaries);
//! - [`feed`]: Atom and RSS feeds, only the entries a reader lacks (RFC 3229 `A-IM: feed`);
//! - [`limits`]: every limit and credit, in one place; [`hash`]: the hashes.

pub mod codec;
pub mod error;
pub mod feed;
pub mod ffi;
pub mod hash;
pub mod http;
pub mod limits;
pub mod store;

pub use codec::{delta, patch, rollsum, signature};
pub use delta::{delta, delta_with, EncodeOptions, EncodeStats, Encoder, Spawner};
pub use error::{Error, Result};
pub use patch::{delta_header, patch, patch_to, patch_with_limits, DeltaHeader, PatchLimits};
pub use signature::{SigLimits, SigParams, Signature, SignatureBuilder, MAX_SIGNATURE_LEN};
