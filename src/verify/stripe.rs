//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`, HMAC-SHA256 over
//! `"{t}.{body}"` with the whole secret string (`whsec_…` included) as the key.
//!
//! Like stripe-node and stripe-python: several `v1` entries (a rolled secret) — any match
//! passes; `v0` and unknown keys are ignored; lowercase hex only (uppercase fails, as in the
//! primary SDKs); only timestamps older than the tolerance are refused (the SDKs accept
//! future ones).

use std::time::Duration;

use hmac::Mac;

use super::{Failure, Request, Window, check_window, header, hmac_sha256, parse_timestamp};

/// stripe-node `DEFAULT_TOLERANCE`.
pub(super) const TOLERANCE: Duration = Duration::from_secs(300);

const HEADER: &str = "stripe-signature";

pub(super) struct Keys(Vec<Vec<u8>>);

impl Keys {
    pub(super) fn new(secrets: &[&str]) -> Keys {
        Keys(secrets.iter().map(|s| s.as_bytes().to_vec()).collect())
    }
}

pub(super) fn verify(
    keys: &Keys,
    req: &Request<'_>,
    now: i64,
    tolerance: Option<Duration>,
) -> Result<(), Failure> {
    let value = header(req.headers, HEADER)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in value.split(',') {
        let (k, v) = item.split_once('=').ok_or(Failure::MalformedHeader)?;
        // Exact keys, as the SDKs compare them: `, v1=` is the key ` v1`, which is ignored.
        match k {
            "t" => {
                if timestamp.is_some() {
                    return Err(Failure::MalformedHeader);
                }
                timestamp = Some(v);
            }
            "v1" => signatures.push(v),
            _ => {}
        }
    }
    let t_text = timestamp.ok_or(Failure::MalformedHeader)?;
    let t = parse_timestamp(t_text)?;
    let signatures: Vec<Vec<u8>> = signatures
        .into_iter()
        .filter(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .filter_map(|s| hex::decode(s).ok())
        .collect();
    if signatures.is_empty() {
        return Err(Failure::MalformedHeader);
    }
    let matched = keys.0.iter().any(|key| {
        let mac = hmac_sha256(key, &[t_text.as_bytes(), b".", req.body]);
        signatures
            .iter()
            .any(|sig| mac.clone().verify_slice(sig).is_ok())
    });
    if !matched {
        return Err(Failure::SignatureMismatch);
    }
    check_window(t, now, tolerance, Window::PastOnly)
}

/// The `Stripe-Signature` header Stripe would send for `body` at `t` (for `hookrouter send`).
pub(super) fn sign(secret: &str, body: &[u8], t: i64) -> Vec<(String, String)> {
    let ts = t.to_string();
    let mac = hmac_sha256(secret.as_bytes(), &[ts.as_bytes(), b".", body]);
    vec![(
        "Stripe-Signature".into(),
        format!("t={ts},v1={}", hex::encode(mac.finalize().into_bytes())),
    )]
}
