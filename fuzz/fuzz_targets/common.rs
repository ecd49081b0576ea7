//! Shared by the signature fuzz targets: arbitrary bytes become the signature, timestamp and
//! id headers of every scheme (each scheme reads its own) and the body, then go through the
//! server's verifier. The only property checked is the one that matters for any input: no
//! panic, and no arbitrary input verifies (the secrets are not in the input).

use hookrouter::verify::{Options, Request, SchemeName, Verifier};
use http::{HeaderMap, HeaderName, HeaderValue};

/// Header names that carry signatures, across the schemes.
const SIGNATURE_HEADERS: &[&str] = &[
    "stripe-signature", "svix-signature", "webhook-signature", "x-hub-signature-256",
    "x-hub-signature", "x-slack-signature", "x-shopify-hmac-sha256", "shopify-hmac-sha256",
    "logto-signature-sha-256", "x-twilio-signature", "paddle-signature", "linear-signature",
    "x-signature-ed25519", "x-twilio-email-event-webhook-signature",
    "x-square-hmacsha256-signature", "x-pagerduty-signature", "x-gitlab-token",
    "typeform-signature", "x-signature", "twitch-eventsub-message-signature", "x-zm-signature",
    "x-webhook-token",
];

/// Header names that carry timestamps and ids.
const OTHER_HEADERS: &[&str] = &[
    "svix-id", "svix-timestamp", "webhook-id", "webhook-timestamp", "x-slack-request-timestamp",
    "x-signature-timestamp", "x-twilio-email-event-webhook-timestamp",
    "twitch-eventsub-message-id", "twitch-eventsub-message-timestamp", "x-zm-request-timestamp",
];

fn secret(scheme: SchemeName) -> &'static str {
    match scheme {
        SchemeName::Svix | SchemeName::StandardWebhooks => "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        SchemeName::Gitlab => "fuzz-token",
        SchemeName::Discord => "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        SchemeName::Sendgrid => "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEQ4LIFtWztlsF7skFqOncjD1lun4H5w8XOhyOArHW9RcIx/FfEzx6cikC/yPfUvwaX/JScE7Fc9CJD2afQ9Ok3Q==",
        _ => "fuzz-secret",
    }
}

/// Runs `data` through `scheme`'s verifier.
pub fn check(scheme: SchemeName, data: &[u8]) {
    let mut parts = data.splitn(3, |b| *b == 0);
    let (sig, other, body) = (parts.next().unwrap_or(&[]), parts.next().unwrap_or(&[]), parts.next().unwrap_or(&[]));
    let mut headers = HeaderMap::new();
    for (names, value) in [(SIGNATURE_HEADERS, sig), (OTHER_HEADERS, other)] {
        let Ok(value) = HeaderValue::from_bytes(value) else { continue };
        for name in names {
            headers.insert(HeaderName::from_static(name), value.clone());
        }
    }
    let options = Options {
        header: matches!(scheme, SchemeName::Token).then(|| "x-webhook-token".to_string()),
        ..Options::default()
    };
    let Ok(verifier) = Verifier::new(scheme, &[secret(scheme)], None, &options) else { return };
    let req = Request { url: "https://example.com/hooks?bodySHA256=00", headers: &headers, body };
    let verdict = verifier.verify(&req, 1_700_000_000);
    // Tokens are compared, not computed: only their own value passes.
    if !matches!(scheme, SchemeName::Gitlab | SchemeName::Token) {
        assert!(verdict.is_err(), "arbitrary input verified for {}", scheme.name());
    }
}
