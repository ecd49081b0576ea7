//! Paddle Billing: `Paddle-Signature: ts=<unix>;h1=<hex>[;h1=<hex>…]`, HMAC-SHA256 over
//! `"{ts}:{body}"` with the notification secret (`pdl_ntfset_…`) used verbatim as the key.
//!
//! The two official SDKs differ; we take the stricter or the rotation-friendly side of each:
//! * several `h1` entries: any match passes, like paddle-python-sdk (paddle-node-sdk keeps only
//!   the last `h1`, which breaks Paddle's own secret rotation); entries that are not 64
//!   lowercase hex digits are skipped (python compares hex strings, so they could never match);
//! * unknown keys (`h2=…`) are ignored, like paddle-node-sdk (python raises on them): Paddle
//!   may add schemes, and ignoring them cannot make a forged request pass;
//! * window: ±5 **seconds** (`maximum_variance = 5`), both ways like paddle-python-sdk 1.16.1
//!   (node only refuses old ones). A too-old or too-new `ts` is reported only once the
//!   signature matched, as the SDKs do.
//!
//! Strict parsing: every item must be `key=value`, exactly one `ts` (unix seconds, digits only)
//! and at least one usable `h1`; no whitespace is trimmed (Paddle sends none).

use std::time::Duration;

use hmac::Mac;

use super::{Failure, Request, Window, check_window, header, hmac_sha256, parse_timestamp};

/// Both SDKs' default `maximum_variance`: 5 seconds.
pub(super) const TOLERANCE: Duration = Duration::from_secs(5);

const HEADER: &str = "paddle-signature";

pub(super) struct Keys(Vec<Vec<u8>>);

impl Keys {
    pub(super) fn new(secrets: &[&str]) -> Keys {
        Keys(secrets.iter().map(|s| s.as_bytes().to_vec()).collect())
    }
}

/// A 64-digit lowercase hex SHA-256 signature, decoded; anything else is `None`.
fn h1_value(s: &str) -> Option<Vec<u8>> {
    let lower_hex = s
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if s.len() != 64 || !lower_hex {
        return None;
    }
    hex::decode(s).ok()
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
    for item in value.split(';') {
        let (k, v) = item.split_once('=').ok_or(Failure::MalformedHeader)?;
        match k {
            "ts" => {
                if timestamp.is_some() {
                    return Err(Failure::MalformedHeader);
                }
                timestamp = Some(v);
            }
            "h1" => signatures.extend(h1_value(v)),
            _ => {}
        }
    }
    let ts_text = timestamp.ok_or(Failure::MalformedHeader)?;
    if signatures.is_empty() {
        return Err(Failure::MalformedHeader);
    }
    let ts = parse_timestamp(ts_text)?;
    let matched = keys.0.iter().any(|key| {
        let mac = hmac_sha256(key, &[ts_text.as_bytes(), b":", req.body]);
        signatures
            .iter()
            .any(|sig| mac.clone().verify_slice(sig).is_ok())
    });
    if !matched {
        return Err(Failure::SignatureMismatch);
    }
    check_window(ts, now, tolerance, Window::Both)
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};
    use proptest::prelude::*;

    use super::*;

    // paddle-node-sdk test fixture: secret, ts and body; the signature is the SDK's own.
    const SECRET: &str = "VALID_SECRET";
    const TS: i64 = 1_698_796_800;
    const BODY: &str = r#"{"data": ["1", "2"]}"#;
    const SIG: &str = "a300428748dce5c70e4da19bffd60769591ea969c99dea3105d0ec9612cf43f9";

    fn run(secrets: &[&str], value: Option<&str>, body: &[u8], now: i64) -> Result<(), Failure> {
        let mut headers = HeaderMap::new();
        if let Some(v) = value {
            headers.insert(HEADER, HeaderValue::from_str(v).expect("test header"));
        }
        let req = Request {
            url: "https://example.com/webhooks",
            headers: &headers,
            body,
        };
        verify(&Keys::new(secrets), &req, now, Some(TOLERANCE))
    }

    fn sign(secret: &str, ts: &str, body: &[u8]) -> String {
        hex::encode(
            hmac_sha256(secret.as_bytes(), &[ts.as_bytes(), b":", body])
                .finalize()
                .into_bytes(),
        )
    }

    fn good() -> String {
        format!("ts={TS};h1={SIG}")
    }

    #[test]
    fn published_example_passes() {
        assert_eq!(sign(SECRET, "1698796800", BODY.as_bytes()), SIG);
        assert_eq!(run(&[SECRET], Some(&good()), BODY.as_bytes(), TS), Ok(()));
    }

    #[test]
    fn python_sdk_fixture_with_a_list_of_secrets() {
        // paddle-python-sdk test_Verifier: only the third secret matches, after a `dummy` h1.
        let secrets = [
            "pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_TjIG2BXbm83HPXqNfziwe506sBEdqL/4",
            "pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_vB/yIOnTOCWIvpBadM5jzBZPHc7OmdSo",
            "pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_WvRO0eL4Bj9rgYYIBZY6wZhG4EHy9jzh",
        ];
        let value = "ts=1696195954;h1=dummy;\
                     h1=d96299976a6eb066f484d7fde011ac56fc32b38fc9940bc419d6e537fdc6ef02";
        assert_eq!(
            run(&secrets, Some(value), b"hello-world", 1_696_195_954),
            Ok(())
        );
        assert_eq!(
            run(&secrets[..2], Some(value), b"hello-world", 1_696_195_954),
            Err(Failure::SignatureMismatch)
        );
    }

    #[test]
    fn any_h1_matches_and_unknown_keys_are_ignored() {
        let old = sign("OLD_SECRET", "1698796800", BODY.as_bytes());
        let v = format!("ts={TS};h1={SIG};h1={old};h2=whatever");
        assert_eq!(run(&[SECRET], Some(&v), BODY.as_bytes(), TS), Ok(()));
        assert_eq!(run(&["OLD_SECRET"], Some(&v), BODY.as_bytes(), TS), Ok(()));
    }

    #[test]
    fn missing_header() {
        assert_eq!(
            run(&[SECRET], None, BODY.as_bytes(), TS),
            Err(Failure::MissingHeader)
        );
    }

    #[test]
    fn malformed_headers() {
        for v in [
            "invalid_header".to_string(),
            "ts=1234;h2=invalid_header".to_string(),
            format!("h1={SIG}"),
            format!("ts={TS};ts={TS};h1={SIG}"),
            format!("ts={TS};h1={}", SIG.to_uppercase()),
            format!("ts={TS};h1={}", &SIG[..62]),
            format!("ts={TS};h1="),
            format!("ts={TS}; h1={SIG}"),
            format!("ts={TS};h1={SIG};"),
            String::new(),
        ] {
            assert_eq!(
                run(&[SECRET], Some(&v), BODY.as_bytes(), TS),
                Err(Failure::MalformedHeader),
                "{v}"
            );
        }
    }

    #[test]
    fn bad_timestamps() {
        for ts in [
            "",
            "-1698796800",
            "1698796800.0",
            " 1698796800",
            "0x10",
            "99999999999999999999",
        ] {
            let v = format!("ts={ts};h1={SIG}");
            assert_eq!(
                run(&[SECRET], Some(&v), BODY.as_bytes(), TS),
                Err(Failure::BadTimestamp),
                "{ts}"
            );
        }
    }

    #[test]
    fn window_is_five_seconds_both_ways() {
        assert_eq!(
            run(&[SECRET], Some(&good()), BODY.as_bytes(), TS + 5),
            Ok(())
        );
        assert_eq!(
            run(&[SECRET], Some(&good()), BODY.as_bytes(), TS - 5),
            Ok(())
        );
        assert_eq!(
            run(&[SECRET], Some(&good()), BODY.as_bytes(), TS + 6),
            Err(Failure::Expired)
        );
        assert_eq!(
            run(&[SECRET], Some(&good()), BODY.as_bytes(), TS - 6),
            Err(Failure::FromFuture)
        );
    }

    #[test]
    fn signature_mismatch() {
        assert_eq!(
            run(
                &["INVALID_VALID_SECRET"],
                Some(&good()),
                BODY.as_bytes(),
                TS
            ),
            Err(Failure::SignatureMismatch)
        );
        // The fixture body with a trailing newline is different bytes.
        assert_eq!(
            run(&[SECRET], Some(&good()), format!("{BODY}\n").as_bytes(), TS),
            Err(Failure::SignatureMismatch)
        );
        // An old timestamp with a signature over another one is a mismatch, not expired.
        let v = format!("ts=9876;h1={SIG}");
        assert_eq!(
            run(&[SECRET], Some(&v), BODY.as_bytes(), TS),
            Err(Failure::SignatureMismatch)
        );
    }

    proptest! {
        #[test]
        fn any_changed_body_byte_fails(i in any::<prop::sample::Index>(), b in any::<u8>()) {
            let mut body = BODY.as_bytes().to_vec();
            let i = i.index(body.len());
            prop_assume!(body[i] != b);
            body[i] = b;
            prop_assert!(run(&[SECRET], Some(&good()), &body, TS).is_err());
        }

        #[test]
        fn any_changed_signature_byte_fails(i in 0usize..SIG.len(), b in any::<u8>()) {
            let mut sig = SIG.as_bytes().to_vec();
            prop_assume!(sig[i] != b);
            sig[i] = b;
            let mut v = format!("ts={TS};h1=").into_bytes();
            v.extend(sig);
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_bytes(&v) {
                headers.insert(HEADER, value);
            }
            let req = Request { url: "", headers: &headers, body: BODY.as_bytes() };
            prop_assert!(verify(&Keys::new(&[SECRET]), &req, TS, Some(TOLERANCE)).is_err());
        }

        #[test]
        fn arbitrary_header_bytes_never_panic(v in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_bytes(&v) {
                headers.insert(HEADER, value);
            }
            let req = Request { url: "", headers: &headers, body: BODY.as_bytes() };
            let _ = verify(&Keys::new(&[SECRET]), &req, TS, Some(TOLERANCE));
        }
    }
}
