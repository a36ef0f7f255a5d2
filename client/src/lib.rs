//! hsync client library (skeleton; see issue 5).
pub mod cli;
