#![no_main]
//! `generic-hmac` on arbitrary options and requests: the template parser (placeholders,
//! `{{`/`}}` escapes, unbalanced braces), the prefix and encoding of the signature header, and
//! the verifier. Every input gives a verifier or a config error, never a panic, and no
//! arbitrary input verifies.
//!
//! Input layout: one selector byte (algorithm: `b % 3`, encoding: `b / 3 % 2`), then
//! `template \0 prefix \0 signature \0 timestamp \0 id \0 body`. The signature is read from
//! `x-signature`, `{timestamp}` from `x-timestamp` and `{id}` from `x-id`, each set only when
//! the template uses it (the config refuses the others).

#[path = "common.rs"]
mod common;

use hookrouter::verify::{
    GenericHmac, HmacAlgorithm, Options, Request, SchemeName, SignatureEncoding, Verifier,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(3, |b| *b == 0);
    let (Ok(template), Ok(prefix)) = (
        std::str::from_utf8(parts.next().unwrap_or(&[])),
        std::str::from_utf8(parts.next().unwrap_or(&[])),
    ) else {
        return;
    };
    let [sig, timestamp, id, body] = common::split(parts.next().unwrap_or(&[]));
    let algorithm = HmacAlgorithm::ALL[usize::from(selector) % HmacAlgorithm::ALL.len()].1;
    let encoding =
        SignatureEncoding::ALL[usize::from(selector / 3) % SignatureEncoding::ALL.len()].1;
    // Set when the template names it (`{{id}}` is a literal, so that case is a config error).
    let header_for = |placeholder: &str, header: &str| {
        template.contains(placeholder).then(|| header.to_string())
    };
    let options = Options {
        header: Some("x-signature".to_string()),
        generic: Some(GenericHmac {
            algorithm,
            encoding,
            prefix: prefix.to_string(),
            template: template.to_string(),
            id_header: header_for("{id}", "x-id"),
            timestamp_header: header_for("{timestamp}", "x-timestamp"),
        }),
        ..Options::default()
    };
    let Ok(verifier) = Verifier::new(SchemeName::GenericHmac, &["fuzz-secret"], None, &options)
    else {
        return;
    };
    let headers = common::headers(sig, timestamp, id);
    let req = Request {
        url: common::URL,
        headers: &headers,
        body,
    };
    assert!(
        verifier.verify(&req, common::NOW).is_err(),
        "arbitrary input verified for generic-hmac"
    );
});
