#![no_main]
//! The standard_webhooks signature parser and verifier on arbitrary headers and body.

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::check(
    hookrouter::verify::SchemeName::StandardWebhooks,
    data
));
