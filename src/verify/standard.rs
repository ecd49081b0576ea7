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
