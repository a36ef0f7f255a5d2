//! One error type for the whole codec. Every variant maps to a stable
//! numeric code so that the C ABI can return it unchanged.

use std::fmt;

/// What went wrong. Decoders never return partial or unverified data: any
/// of these means "do not use the result".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The input ended before a complete structure was read.
    Truncated(&'static str),
    /// The first bytes are not an hsync signature or delta.
    BadMagic(&'static str),
    /// A version this implementation does not speak.
    UnsupportedVersion(u8),
    /// A field holds a value that is out of range or inconsistent.
    Malformed(&'static str),
    /// A size limit set by the caller was exceeded.
    TooLarge(&'static str),
    /// The delta was made for another base instance.
    WrongBase,
    /// The rebuilt instance does not match the digest carried in the delta.
    DigestMismatch,
    /// The literal compressor or decompressor failed.
    Compression(&'static str),
    /// Reading or writing a file failed (CLI, client).
    Io(String),
}

impl Error {
    /// Stable numeric code (used by the C ABI, `HSYNC_E_*` in `hsync.h`).
    pub fn code(&self) -> i32 {
        match self {
            Error::Truncated(_) => -2,
            Error::BadMagic(_) => -3,
            Error::UnsupportedVersion(_) => -4,
            Error::Malformed(_) => -5,
            Error::TooLarge(_) => -6,
            Error::WrongBase => -7,
            Error::DigestMismatch => -8,
            Error::Compression(_) => -9,
            Error::Io(_) => -10,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated(what) => write!(f, "truncated input: {what}"),
            Error::BadMagic(what) => write!(f, "not an hsync {what} (bad magic)"),
            Error::UnsupportedVersion(v) => write!(f, "unsupported hsync format version {v}"),
            Error::Malformed(what) => write!(f, "malformed input: {what}"),
            Error::TooLarge(what) => write!(f, "limit exceeded: {what}"),
            Error::WrongBase => write!(f, "delta was made for a different base instance"),
            Error::DigestMismatch => write!(f, "digest mismatch: rebuilt instance is not the one the server sent"),
            Error::Compression(what) => write!(f, "literal compression error: {what}"),
            Error::Io(what) => write!(f, "{what}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;
