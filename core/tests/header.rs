//! `core/include/hsync.h` is exactly what cbindgen generates from
//! `core/src/ffi.rs` (the one ABI both server modules compile against).
//! `HSYNC_BLESS=1 cargo test -p hsync-core --test header` rewrites it.

use std::path::PathBuf;

#[test]
fn checked_in_header_is_generated() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/ffi.rs"))
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let path = root.join("include/hsync.h");
    if std::env::var_os("HSYNC_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read(&path).unwrap();
    assert!(
        checked_in == generated,
        "{} differs from what core/src/ffi.rs generates: run HSYNC_BLESS=1 cargo test -p hsync-core --test header",
        path.display()
    );
}
