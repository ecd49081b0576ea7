#![no_main]
//! The github signature parser and verifier on arbitrary headers and body, with and without
//! `legacy_sha1` (the `X-Hub-Signature: sha1=` fallback).

#[path = "common.rs"]
mod common;

use hookrouter::verify::{Options, SchemeName};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for legacy_sha1 in [false, true] {
        let options = Options {
            legacy_sha1,
            ..Options::default()
        };
        common::check_with(SchemeName::Github, &options, data);
    }
});
