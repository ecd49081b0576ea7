#![no_main]
//! The zoom signature parser and verifier on arbitrary headers and body.

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::check(
    hookrouter::verify::SchemeName::Zoom,
    data
));
