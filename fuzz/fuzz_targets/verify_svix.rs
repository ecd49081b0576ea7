#![no_main]
//! The svix signature parser and verifier on arbitrary headers and body.

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::check(
    hookrouter::verify::SchemeName::Svix,
    data
));
