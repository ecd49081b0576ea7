#![no_main]
//! The twilio signature parser and verifier on arbitrary headers and body.

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::check(
    hookrouter::verify::SchemeName::Twilio,
    data
));
