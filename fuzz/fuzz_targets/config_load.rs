#![no_main]
//! Config loading on arbitrary YAML text: every input gives a config or errors, never a panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let path = std::path::Path::new("fuzz.yaml");
        let _ = hookrouter::config::from_str(text, path, std::path::Path::new("."), &|_| None);
    }
});
