//! Shared by the signature fuzz targets: arbitrary bytes become the signature, timestamp and
//! id headers of every scheme (each scheme reads its own) and the body, then go through the
//! server's verifier. The only property checked is the one that matters for any input: no
//! panic, and no arbitrary input verifies (the secrets are not in the input).
//!
//! Input layout: `signature \0 timestamp \0 id \0 body` (a missing part is empty; the body
//! may contain NUL bytes). Every header of a kind gets the same value. `corpus/<target>/`
//! holds seeds in this layout (made by `fuzz/seeds.py`).

#![allow(dead_code)]

use hookrouter::verify::{Options, Request, SchemeName, Verifier};
use http::{HeaderMap, HeaderName, HeaderValue};

/// Header names that carry signatures, across the schemes.
pub const SIGNATURE_HEADERS: &[&str] = &[
    "stripe-signature",
    "svix-signature",
    "webhook-signature",
    "x-hub-signature-256",
    "x-hub-signature",
    "x-slack-signature",
    "x-shopify-hmac-sha256",
    "shopify-hmac-sha256",
    "logto-signature-sha-256",
    "x-twilio-signature",
    "paddle-signature",
    "linear-signature",
    "x-signature-ed25519",
    "x-twilio-email-event-webhook-signature",
    "x-square-hmacsha256-signature",
    "x-pagerduty-signature",
    "x-gitlab-token",
    "typeform-signature",
    "x-signature",
    "twitch-eventsub-message-signature",
    "x-zm-signature",
    "x-webhook-token",
];

/// Header names that carry timestamps.
pub const TIMESTAMP_HEADERS: &[&str] = &[
    "svix-timestamp",
    "webhook-timestamp",
    "x-slack-request-timestamp",
    "x-signature-timestamp",
    "x-twilio-email-event-webhook-timestamp",
    "twitch-eventsub-message-timestamp",
    "x-zm-request-timestamp",
    "x-timestamp",
];

/// Header names that carry message ids.
pub const ID_HEADERS: &[&str] = &[
    "svix-id",
    "webhook-id",
    "twitch-eventsub-message-id",
    "x-id",
];

/// The URL every request claims (Square and Twilio sign it, `generic-hmac` may).
pub const URL: &str = "https://example.com/hooks?bodySHA256=00";

/// The verifier's clock.
pub const NOW: i64 = 1_700_000_000;

fn secret(scheme: SchemeName, options: &Options) -> &'static str {
    // None of these is a secret of tests/vectors/signatures.json, whose cases are the seeds:
    // a seed that verified would be reported as a crash.
    const WHSEC: &str = "whsec_aG9va3JvdXRlci1mdXp6LXNlY3JldC0zMi1ieXRlcyE=";
    match scheme {
        SchemeName::Svix | SchemeName::StandardWebhooks => WHSEC,
        SchemeName::Gitlab if options.gitlab != Default::default() => WHSEC,
        SchemeName::Gitlab => "fuzz-token",
        // RFC 8032 test 2's public key.
        SchemeName::Discord => "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        // A P-256 key made for this file; its private key was thrown away.
        SchemeName::Sendgrid => {
            "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEnDQg7Zyzo90D/tq364pHoL3x57e3m1ptlwh9d8dxdKnhK0vCQdJvO9Ir8gxyxqr2N6BVv3JsL/iOc/fbSzfXcg=="
        }
        _ => "fuzz-secret",
    }
}

/// `data` split into signature, timestamp, id and body.
pub fn split(data: &[u8]) -> [&[u8]; 4] {
    let mut parts = data.splitn(4, |b| *b == 0);
    let mut next = || parts.next().unwrap_or(&[]);
    [next(), next(), next(), next()]
}

/// Headers with every name of each list set to its part of the input (a value that is not a
/// valid header value leaves its headers out: the server never sees such a value).
pub fn headers(sig: &[u8], timestamp: &[u8], id: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (names, value) in [
        (SIGNATURE_HEADERS, sig),
        (TIMESTAMP_HEADERS, timestamp),
        (ID_HEADERS, id),
    ] {
        let Ok(value) = HeaderValue::from_bytes(value) else {
            continue;
        };
        for name in names {
            headers.insert(HeaderName::from_static(name), value.clone());
        }
    }
    headers
}

/// Runs `data` through `scheme`'s verifier with the default options.
pub fn check(scheme: SchemeName, data: &[u8]) {
    let options = Options {
        header: matches!(scheme, SchemeName::Token).then(|| "x-webhook-token".to_string()),
        ..Options::default()
    };
    check_with(scheme, &options, data);
}

/// Runs `data` through `scheme`'s verifier built with `options`.
pub fn check_with(scheme: SchemeName, options: &Options, data: &[u8]) {
    let [sig, timestamp, id, body] = split(data);
    let headers = headers(sig, timestamp, id);
    let Ok(verifier) = Verifier::new(scheme, &[secret(scheme, options)], None, options) else {
        return;
    };
    let req = Request {
        url: URL,
        headers: &headers,
        body,
    };
    let verdict = verifier.verify(&req, NOW);
    // Plain tokens are compared, not computed: only their own value passes.
    let token = match scheme {
        SchemeName::Token => true,
        SchemeName::Gitlab => options.gitlab == Default::default(),
        _ => false,
    };
    if !token {
        assert!(
            verdict.is_err(),
            "arbitrary input verified for {}",
            scheme.name()
        );
    }
}
