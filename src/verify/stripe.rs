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

pub(super) use super::mac::Secrets as Keys;

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
    let matched = keys.keys().any(|key| {
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

#[cfg(test)]
mod tests {
    use http::HeaderMap;
    use proptest::prelude::*;

    use super::super::{Failure, Options, Request, SchemeName, Verifier};

    const SECRET: &str = "whsec_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"invoice.paid"}"#;
    const T: i64 = 1_700_000_000;

    fn check(header: Option<&str>, body: &[u8], now: i64) -> Result<(), Failure> {
        let mut h = HeaderMap::new();
        if let Some(v) = header {
            h.insert("stripe-signature", v.parse().expect("header"));
        }
        let v = Verifier::new(
            SchemeName::Stripe,
            &["whsec_old", SECRET],
            None,
            &Options::default(),
        )
        .expect("verifier");
        v.verify(
            &Request {
                url: "",
                headers: &h,
                body,
            },
            now,
        )
    }

    fn signed(t: i64) -> String {
        super::sign(SECRET, BODY, t).remove(0).1
    }

    #[test]
    fn each_failure_reason() {
        let good = signed(T);
        assert_eq!(check(Some(&good), BODY, T), Ok(()));
        assert_eq!(check(None, BODY, T), Err(Failure::MissingHeader));
        assert_eq!(
            check(Some("v1=abc"), BODY, T),
            Err(Failure::MalformedHeader)
        );
        assert_eq!(
            check(Some("t=1,v1="), BODY, T),
            Err(Failure::MalformedHeader)
        );
        assert_eq!(
            check(Some("garbage"), BODY, T),
            Err(Failure::MalformedHeader)
        );
        assert_eq!(
            check(Some("t=1.5,v1=00"), BODY, T),
            Err(Failure::BadTimestamp)
        );
        assert_eq!(
            check(Some(&good), b"{}", T),
            Err(Failure::SignatureMismatch)
        );
        assert_eq!(check(Some(&good), BODY, T + 301), Err(Failure::Expired));
        // Stripe's SDKs accept future timestamps; so do we.
        assert_eq!(check(Some(&good), BODY, T - 10_000), Ok(()));
        // Uppercase hex fails, as in stripe-node and stripe-python.
        assert_eq!(
            check(
                Some(
                    &good
                        .to_uppercase()
                        .replace("T=", "t=")
                        .replace("V1=", "v1=")
                ),
                BODY,
                T
            ),
            Err(Failure::MalformedHeader)
        );
        // Several v1 values: any one matching passes.
        let rolled = format!(
            "t={T},v1={},{}",
            "0".repeat(64),
            &good[good.find("v1=").expect("v1")..]
        );
        assert_eq!(check(Some(&rolled), BODY, T), Ok(()));
    }

    proptest! {
        #[test]
        fn any_single_byte_change_fails(i in 0usize..256, flip in 1u8..=255) {
            let good = signed(T);
            let mut body = BODY.to_vec();
            let bi = i % body.len();
            body[bi] ^= flip;
            prop_assert!(check(Some(&good), &body, T).is_err());
            let mut sig = good.clone().into_bytes();
            let si = i % sig.len();
            sig[si] ^= flip;
            if let Ok(s) = String::from_utf8(sig)
                && http::HeaderValue::from_str(&s).is_ok() && s != good {
                    prop_assert!(check(Some(&s), BODY, T).is_err());
                }
        }

        #[test]
        fn arbitrary_headers_never_panic(s in "\\PC{0,200}") {
            if http::HeaderValue::from_str(&s).is_ok() {
                let _ = check(Some(&s), BODY, T);
            }
        }
    }
}
