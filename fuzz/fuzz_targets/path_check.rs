#![no_main]
//! Path canonicalisation on arbitrary strings: never a panic, and an accepted path has no dot
//! segments and no `//`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(path) = std::str::from_utf8(data) {
        if hookrouter::path::check(path).is_ok() {
            assert!(!path.split('/').any(|s| s == "." || s == ".."));
            assert!(!path.contains("//"));
        }
    }
});
