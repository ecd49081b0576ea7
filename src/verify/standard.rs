//! Standard Webhooks and Svix (Clerk, Resend, …): `webhook-id`, `webhook-timestamp`,
//! `webhook-signature` (Svix: `svix-*`, each falling back to `webhook-*`), content
//! `"{id}.{timestamp}.{body}"`.
//!
//! Signatures are a space-separated list of `v1,<base64 HMAC-SHA256>` and
//! `v1a,<base64 Ed25519>`; entries of other versions are skipped; any match passes. Symmetric
//! secrets are `whsec_` + base64 (the prefix is optional), decoded to raw key bytes; `whpk_` +
//! base64 is an Ed25519 public key for `v1a`. Timestamps are strict integers within ±tolerance
//! (default 5 minutes, like every Standard Webhooks library).

use std::time::Duration;

use base64::{
    Engine,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
};
use ed25519_dalek::{Signature, VerifyingKey};
use hmac::Mac;

use super::{
    BadSecret, Failure, Request, Window, check_window, header, hmac_sha256, parse_secrets,
    parse_timestamp,
};

/// The libraries' default window, both ways.
pub(super) const TOLERANCE: Duration = Duration::from_secs(300);

/// Secrets are accepted with or without `=` padding (the Python library pads them itself).
const SECRET_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Which header names a route reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Headers {
    /// `svix-*`, each falling back to `webhook-*`.
    Svix,
    /// `webhook-*`.
    Webhook,
}

enum Key {
    Hmac(Vec<u8>),
    Ed25519(VerifyingKey),
}

pub(super) struct Keys(Vec<Key>);

impl Keys {
    pub(super) fn new(secrets: &[&str]) -> Result<Keys, Vec<BadSecret>> {
        parse_secrets(secrets, parse_key).map(Keys)
    }
}

fn parse_key(s: &str) -> Result<Key, &'static str> {
    if let Some(pk) = s.strip_prefix("whpk_") {
        let bytes = SECRET_B64
            .decode(pk)
            .map_err(|_| "is not `whpk_` followed by base64")?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "is not a 32-byte Ed25519 public key (`whpk_` + base64)")?;
        return VerifyingKey::from_bytes(&arr)
            .map(Key::Ed25519)
            .map_err(|_| "is not a valid Ed25519 public key");
    }
    if s.starts_with("whsk_") {
        return Err(
            "is an Ed25519 signing (private) key: give the public key (`whpk_…`) to verify",
        );
    }
    let b64 = s.strip_prefix("whsec_").unwrap_or(s);
    let key = SECRET_B64.decode(b64).map_err(
        |_| "is not `whsec_` followed by base64 (copy the signing secret as shown by the provider)",
    )?;
    if key.is_empty() {
        return Err("decodes to an empty key");
    }
    Ok(Key::Hmac(key))
}

fn pick<'a>(req: &Request<'a>, headers: Headers, name: &str) -> Result<&'a str, Failure> {
    if headers == Headers::Svix {
        match header(req.headers, &format!("svix-{name}")) {
            Err(Failure::MissingHeader) => {}
            other => return other,
        }
    }
    header(req.headers, &format!("webhook-{name}"))
}

pub(super) fn verify(
    keys: &Keys,
    headers: Headers,
    req: &Request<'_>,
    now: i64,
    tolerance: Option<Duration>,
) -> Result<(), Failure> {
    let id = pick(req, headers, "id")?;
    let ts_text = pick(req, headers, "timestamp")?;
    let list = pick(req, headers, "signature")?;
    let ts = parse_timestamp(ts_text)?;
    if id.is_empty() {
        return Err(Failure::MalformedHeader);
    }

    let mut hmacs = Vec::new();
    let mut eds = Vec::new();
    for entry in list.split(' ').filter(|e| !e.is_empty()) {
        let Some((version, sig)) = entry.split_once(',') else {
            continue;
        };
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(sig) else {
            continue;
        };
        match version {
            "v1" if !bytes.is_empty() => hmacs.push(bytes),
            "v1a" => {
                if let Ok(s) = Signature::from_slice(&bytes) {
                    eds.push(s);
                }
            }
            _ => {}
        }
    }
    if hmacs.is_empty() && eds.is_empty() {
        return Err(Failure::MalformedHeader);
    }
    let content: [&[u8]; 5] = [id.as_bytes(), b".", ts_text.as_bytes(), b".", req.body];
    let matched = keys.0.iter().any(|key| match key {
        Key::Hmac(k) => {
            let mac = hmac_sha256(k, &content);
            hmacs
                .iter()
                .any(|sig| mac.clone().verify_slice(sig).is_ok())
        }
        Key::Ed25519(pk) => {
            let msg = content.concat();
            eds.iter().any(|sig| pk.verify_strict(&msg, sig).is_ok())
        }
    });
    if !matched {
        return Err(Failure::SignatureMismatch);
    }
    check_window(ts, now, tolerance, Window::Both)
}

/// The three headers a Standard Webhooks / Svix sender would send (for `hookrouter send`).
/// Only symmetric (`whsec_`) secrets can sign; a `whpk_` public key cannot.
pub(super) fn sign(
    headers: Headers,
    secret: &str,
    id: &str,
    body: &[u8],
    t: i64,
) -> Result<Vec<(String, String)>, String> {
    let Key::Hmac(key) = parse_key(secret).map_err(|m| format!("the secret {m}"))? else {
        return Err(
            "a `whpk_` public key can verify but not sign: give the `whsec_` secret".to_string(),
        );
    };
    let ts = t.to_string();
    let mac = hmac_sha256(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    let sig = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    let prefix = if headers == Headers::Svix {
        "svix"
    } else {
        "webhook"
    };
    Ok(vec![
        (format!("{prefix}-id"), id.to_string()),
        (format!("{prefix}-timestamp"), ts),
        (format!("{prefix}-signature"), sig),
    ])
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;
    use proptest::prelude::*;

    use super::super::{Failure, Options, Request, SchemeName, Verifier};

    // The official Svix / Standard Webhooks vector.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: &str = "1614265330";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    const NOW: i64 = 1_614_265_330;

    fn check(
        scheme: SchemeName,
        headers: &[(&str, &str)],
        body: &[u8],
        now: i64,
    ) -> Result<(), Failure> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("header"),
            );
        }
        let v = Verifier::new(scheme, &[SECRET], None, &Options::default()).expect("verifier");
        v.verify(
            &Request {
                url: "",
                headers: &h,
                body,
            },
            now,
        )
    }

    fn svix(sig: &str, ts: &str) -> Vec<(&'static str, String)> {
        vec![
            ("svix-id", ID.into()),
            ("svix-timestamp", ts.into()),
            ("svix-signature", sig.into()),
        ]
    }

    fn refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
        v.iter().map(|(k, s)| (*k, s.as_str())).collect()
    }

    #[test]
    fn each_failure_reason() {
        let sv = SchemeName::Svix;
        assert_eq!(check(sv, &refs(&svix(SIG, TS)), BODY, NOW), Ok(()));
        // Svix falls back to webhook-*; Standard Webhooks reads only webhook-*.
        let wh = [
            ("webhook-id", ID),
            ("webhook-timestamp", TS),
            ("webhook-signature", SIG),
        ];
        assert_eq!(check(sv, &wh, BODY, NOW), Ok(()));
        assert_eq!(check(SchemeName::StandardWebhooks, &wh, BODY, NOW), Ok(()));
        assert_eq!(
            check(
                SchemeName::StandardWebhooks,
                &refs(&svix(SIG, TS)),
                BODY,
                NOW
            ),
            Err(Failure::MissingHeader)
        );
        assert_eq!(
            check(sv, &[("svix-id", ID)], BODY, NOW),
            Err(Failure::MissingHeader)
        );
        assert_eq!(
            check(sv, &refs(&svix("v2,abc", TS)), BODY, NOW),
            Err(Failure::MalformedHeader)
        );
        assert_eq!(
            check(sv, &refs(&svix("v1,", TS)), BODY, NOW),
            Err(Failure::MalformedHeader)
        );
        assert_eq!(
            check(sv, &refs(&svix(SIG, "1614265330.0")), BODY, NOW),
            Err(Failure::BadTimestamp)
        );
        assert_eq!(
            check(sv, &refs(&svix(SIG, "-1")), BODY, NOW),
            Err(Failure::BadTimestamp)
        );
        assert_eq!(
            check(sv, &refs(&svix(SIG, TS)), b"{}", NOW),
            Err(Failure::SignatureMismatch)
        );
        assert_eq!(
            check(sv, &refs(&svix(SIG, TS)), BODY, NOW + 301),
            Err(Failure::Expired)
        );
        assert_eq!(
            check(sv, &refs(&svix(SIG, TS)), BODY, NOW - 301),
            Err(Failure::FromFuture)
        );
        assert_eq!(check(sv, &refs(&svix(SIG, TS)), BODY, NOW + 300), Ok(()));
        // Rotation list: an unknown version and a stale signature next to the good one.
        let list = format!("v2,xyz v1,AAAA {SIG}");
        assert_eq!(check(sv, &refs(&svix(&list, TS)), BODY, NOW), Ok(()));
        // Signing and verifying agree.
        let headers = super::sign(super::Headers::Svix, SECRET, ID, BODY, NOW).expect("sign");
        assert_eq!(headers[2].1, SIG);
    }

    #[test]
    fn secrets_are_checked_at_load() {
        for bad in ["whsec_***", "whsec_", "whsk_AAAA", "whpk_AAAA"] {
            assert!(
                Verifier::new(SchemeName::Svix, &[bad], None, &Options::default()).is_err(),
                "{bad}"
            );
        }
        // Unpadded base64 is accepted, as the Python library does.
        assert!(
            Verifier::new(
                SchemeName::Svix,
                &["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"],
                None,
                &Options::default()
            )
            .is_ok()
        );
    }

    proptest! {
        #[test]
        fn any_single_byte_change_fails(i in 0usize..64, flip in 1u8..=255) {
            let mut body = BODY.to_vec();
            let bi = i % body.len();
            body[bi] ^= flip;
            prop_assert!(check(SchemeName::Svix, &refs(&svix(SIG, TS)), &body, NOW).is_err());
            for (which, text) in [(0usize, SIG), (1, TS), (2, ID)] {
                let mut b = text.as_bytes().to_vec();
                let k = i % b.len();
                b[k] ^= flip;
                let Ok(s) = String::from_utf8(b) else { continue };
                if http::HeaderValue::from_str(&s).is_err() || s == text { continue; }
                let mut h = svix(SIG, TS);
                let slot = match which { 0 => 2, 1 => 1, _ => 0 };
                h[slot].1 = s;
                prop_assert!(check(SchemeName::Svix, &refs(&h), BODY, NOW).is_err());
            }
        }

        #[test]
        fn arbitrary_headers_never_panic(a in "\\PC{0,80}", b in "\\PC{0,80}", c in "\\PC{0,200}") {
            let ok = |s: &str| http::HeaderValue::from_str(s).is_ok();
            if ok(&a) && ok(&b) && ok(&c) {
                let _ = check(SchemeName::Svix, &[("svix-id", &a), ("svix-timestamp", &b), ("svix-signature", &c)], BODY, NOW);
            }
        }
    }
}
