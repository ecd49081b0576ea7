//! Signing as the providers do, for `hookrouter send` (stripe, svix, standard-webhooks and
//! github sign in their own modules). Each function is the inverse of its scheme's verifier,
//! and the tests check exactly that round trip.

use base64::Engine;
use hmac::{Hmac, Mac};

use super::hmac_sha256;

fn hex_sha256(secret: &str, parts: &[&[u8]]) -> String {
    hex::encode(
        hmac_sha256(secret.as_bytes(), parts)
            .finalize()
            .into_bytes(),
    )
}

fn b64_sha256(secret: &str, parts: &[&[u8]]) -> String {
    base64::engine::general_purpose::STANDARD.encode(
        hmac_sha256(secret.as_bytes(), parts)
            .finalize()
            .into_bytes(),
    )
}

pub(super) fn slack(secret: &str, body: &[u8], t: i64) -> Vec<(String, String)> {
    let ts = t.to_string();
    let sig = hex_sha256(secret, &[b"v0:", ts.as_bytes(), b":", body]);
    vec![
        ("X-Slack-Request-Timestamp".into(), ts),
        ("X-Slack-Signature".into(), format!("v0={sig}")),
    ]
}

pub(super) fn zoom(secret: &str, body: &[u8], t: i64) -> Vec<(String, String)> {
    let ts = t.to_string();
    let sig = hex_sha256(secret, &[b"v0:", ts.as_bytes(), b":", body]);
    vec![
        ("x-zm-request-timestamp".into(), ts),
        ("x-zm-signature".into(), format!("v0={sig}")),
    ]
}

pub(super) fn shopify(secret: &str, body: &[u8]) -> Vec<(String, String)> {
    vec![("X-Shopify-Hmac-Sha256".into(), b64_sha256(secret, &[body]))]
}

pub(super) fn logto(secret: &str, body: &[u8]) -> Vec<(String, String)> {
    vec![(
        "logto-signature-sha-256".into(),
        hex_sha256(secret, &[body]),
    )]
}

pub(super) fn pagerduty(secret: &str, body: &[u8]) -> Vec<(String, String)> {
    vec![(
        "X-PagerDuty-Signature".into(),
        format!("v1={}", hex_sha256(secret, &[body])),
    )]
}

pub(super) fn typeform(secret: &str, body: &[u8]) -> Vec<(String, String)> {
    vec![(
        "Typeform-Signature".into(),
        format!("sha256={}", b64_sha256(secret, &[body])),
    )]
}

pub(super) fn lemonsqueezy(secret: &str, body: &[u8]) -> Vec<(String, String)> {
    vec![("X-Signature".into(), hex_sha256(secret, &[body]))]
}

pub(super) fn paddle(secret: &str, body: &[u8], t: i64) -> Vec<(String, String)> {
    let ts = t.to_string();
    let sig = hex_sha256(secret, &[ts.as_bytes(), b":", body]);
    vec![("Paddle-Signature".into(), format!("ts={ts};h1={sig}"))]
}

/// Linear also needs `webhookTimestamp` (ms) inside the body; the sample payload has it.
pub(super) fn linear(secret: &str, body: &[u8]) -> Vec<(String, String)> {
    vec![("Linear-Signature".into(), hex_sha256(secret, &[body]))]
}

pub(super) fn square(secret: &str, url: &str, body: &[u8]) -> Vec<(String, String)> {
    vec![(
        "x-square-hmacsha256-signature".into(),
        b64_sha256(secret, &[url.as_bytes(), body]),
    )]
}

pub(super) fn intercom(secret: &str, body: &[u8]) -> Vec<(String, String)> {
    // HMAC accepts keys of every length, so this cannot fail.
    #[allow(clippy::expect_used)]
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts any key length");
    mac.update(body);
    vec![(
        "X-Hub-Signature".into(),
        format!("sha1={}", hex::encode(mac.finalize().into_bytes())),
    )]
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderName, HeaderValue};

    use super::super::{Options, Request, SchemeName, Verifier, sign};

    #[test]
    fn every_signing_scheme_round_trips_through_its_verifier() {
        let body = br#"{"type":"example","id":"1"}"#;
        let now = 1_700_000_000;
        let mut signed = 0;
        for (name, scheme) in SchemeName::ALL {
            let secret = match scheme {
                SchemeName::Svix | SchemeName::StandardWebhooks => {
                    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
                }
                _ => "example-secret-123",
            };
            let body: &[u8] = if *scheme == SchemeName::Linear {
                br#"{"type":"Issue","webhookTimestamp":1700000000000}"#
            } else {
                body
            };
            let Ok(headers) = sign(
                *scheme,
                secret,
                body,
                now,
                "msg_1",
                "https://example.com/",
                &Options::default(),
            ) else {
                continue;
            };
            let mut h = HeaderMap::new();
            for (k, v) in headers {
                h.insert(
                    HeaderName::from_bytes(k.as_bytes()).expect("name"),
                    HeaderValue::from_str(&v).expect("value"),
                );
            }
            let v = Verifier::new(*scheme, &[secret], None, &Options::default()).expect("verifier");
            assert_eq!(
                v.verify(
                    &Request {
                        url: "https://example.com/",
                        headers: &h,
                        body
                    },
                    now
                ),
                Ok(()),
                "{name}"
            );
            // A plain token (GitLab's `X-Gitlab-Token`) authenticates the sender, not the body.
            let signs_body = !matches!(scheme, SchemeName::Gitlab | SchemeName::Token);
            let tampered = Request {
                url: "https://example.com/",
                headers: &h,
                body: b"{}",
            };
            assert_eq!(v.verify(&tampered, now).is_err(), signs_body, "{name}");
            signed += 1;
        }
        assert!(signed >= 12, "only {signed} schemes sign");
    }
}
