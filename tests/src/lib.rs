//! Shared harness for the integration tests.
use std::path::PathBuf;

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// `../shared/corpus` beside the checkout.
pub fn corpus() -> PathBuf {
    root().parent().unwrap().join("shared").join("corpus")
}
