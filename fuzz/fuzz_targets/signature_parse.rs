//! Any bytes given to Signature::parse: an error or a signature that re-encodes to the same bytes.
#![no_main]
use hsync_core::{SigLimits, Signature};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sig) = Signature::parse(data, &SigLimits { max_len: 1 << 16, ..SigLimits::format() }) {
        assert_eq!(sig.to_bytes(), data);
        // What a server accepts is a subset of the format.
        if Signature::parse(data, &SigLimits::server()).is_ok() {
            assert!(sig.params.check(&SigLimits::server()).is_ok());
        }
    }
});
