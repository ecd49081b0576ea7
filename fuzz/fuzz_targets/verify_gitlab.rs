#![no_main]
//! The gitlab verifier on arbitrary headers and body, in both modes: the plain
//! `X-Gitlab-Token` and the signing token (Standard Webhooks headers).

#[path = "common.rs"]
mod common;

use hookrouter::verify::{GitlabMode, Options, SchemeName};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for (_, gitlab) in GitlabMode::ALL {
        let options = Options {
            gitlab: *gitlab,
            ..Options::default()
        };
        common::check_with(SchemeName::Gitlab, &options, data);
    }
});
