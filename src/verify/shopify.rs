//! Shopify: `X-Shopify-Hmac-Sha256: <base64>` = HMAC-SHA256 of the body with the app's API
//! secret (client secret) string as the key. Events webhooks send the same value as
//! `shopify-hmac-sha256`; that name is read when the `X-` one is absent. No timestamp is signed
//! (the ±90 s window of Shopify's OAuth and app-proxy query HMACs does not apply to webhooks).
//!
//! Like shopify-app-js (`validateHmacFromRequest`): canonical padded base64 only (it compares
//! the base64 strings); an empty body is refused (`MissingBody`, here `malformed_body`). The
//! topic/domain/version/id headers it also requires are routing data, not part of the
//! signature, and are not checked here. No multi-signature header: rotate by configuring both
//! secrets.

use super::{Failure, Request, header, mac::base64_sha256};

const HMAC: &str = "x-shopify-hmac-sha256";
/// Events webhooks: the same header without the `X-` prefix.
const EVENTS_HMAC: &str = "shopify-hmac-sha256";

pub(super) use super::mac::Secrets as Keys;

pub(super) fn verify(keys: &Keys, req: &Request<'_>) -> Result<(), Failure> {
    let value = match header(req.headers, HMAC) {
        Err(Failure::MissingHeader) => header(req.headers, EVENTS_HMAC)?,
        other => other?,
    };
    let sig = base64_sha256(value)?;
    if req.body.is_empty() {
        return Err(Failure::MalformedBody);
    }
    if keys.any_sha256(&[req.body], &[sig]) {
        Ok(())
    } else {
        Err(Failure::SignatureMismatch)
    }
}

#[cfg(test)]
mod tests {
    use base64::{Engine, engine::general_purpose::STANDARD};

    use super::super::mac::testing::{flip, headers, run, sha256, with_raw};
    use super::{EVENTS_HMAC, Failure, HMAC};
    use crate::verify::SchemeName;

    /// shopify-app-js's test secret and payload.
    const SECRET: &str = "test_secret_key";
    const BODY: &str = r#"{"foo": "bar"}"#;
    const SIG: &str = "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g=";
    const NOW: i64 = 1_700_000_000;

    fn check(h: &[(&str, &str)], body: &str) -> Result<(), Failure> {
        run(
            SchemeName::Shopify,
            &[SECRET],
            None,
            &headers(h),
            body.as_bytes(),
            NOW,
        )
    }

    #[test]
    fn published_example_verifies() {
        assert_eq!(check(&[("X-Shopify-Hmac-Sha256", SIG)], BODY), Ok(()));
        assert_eq!(check(&[(EVENTS_HMAC, SIG)], BODY), Ok(()));
        // The `X-` header wins when both are sent.
        assert_eq!(check(&[(HMAC, SIG), (EVENTS_HMAC, "x")], BODY), Ok(()));
    }

    #[test]
    fn any_configured_secret_passes() {
        let h = headers(&[(HMAC, SIG)]);
        let r = run(
            SchemeName::Shopify,
            &["rotated", SECRET],
            None,
            &h,
            BODY.as_bytes(),
            NOW,
        );
        assert_eq!(r, Ok(()));
    }

    #[test]
    fn missing_header() {
        assert_eq!(check(&[], BODY), Err(Failure::MissingHeader));
        assert_eq!(
            check(&[("x-shopify-hmac-sha1", SIG)], BODY),
            Err(Failure::MissingHeader)
        );
    }

    #[test]
    fn malformed_header() {
        for bad in [
            // The right digest in hex.
            "076ded5cdebcd60674a8858d46b82dcc113d5d20e8e72694bbac1f9a1bb76bb8",
            "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g",
            "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g==",
            "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7h=",
            "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g_",
            "sha256=B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g=",
            "",
        ] {
            assert_eq!(
                check(&[(HMAC, bad)], BODY),
                Err(Failure::MalformedHeader),
                "{bad:?}"
            );
        }
        assert_eq!(
            check(&[(HMAC, SIG), (HMAC, SIG)], BODY),
            Err(Failure::MalformedHeader)
        );
        // A malformed `X-` header is not replaced by the un-prefixed one.
        assert_eq!(
            check(&[(HMAC, "x"), (EVENTS_HMAC, SIG)], BODY),
            Err(Failure::MalformedHeader)
        );
    }

    #[test]
    fn malformed_body() {
        let empty = STANDARD.encode(sha256(SECRET, &[b""]));
        assert_eq!(check(&[(HMAC, &empty)], ""), Err(Failure::MalformedBody));
    }

    #[test]
    fn signature_mismatch() {
        assert_eq!(
            check(&[(HMAC, SIG)], r#"{"foo": "baz"}"#),
            Err(Failure::SignatureMismatch)
        );
        // Re-serialised JSON is other bytes.
        assert_eq!(
            check(&[(HMAC, SIG)], r#"{"foo":"bar"}"#),
            Err(Failure::SignatureMismatch)
        );
    }

    proptest::proptest! {
        #[test]
        fn any_single_byte_change_fails(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..256),
            i in proptest::prelude::any::<usize>(),
            delta in proptest::prelude::any::<u8>(),
        ) {
            let verify = |sig: &[u8; 32], body: &[u8]| {
                let h = headers(&[(HMAC, &STANDARD.encode(sig))]);
                run(SchemeName::Shopify, &[SECRET], None, &h, body, NOW)
            };
            let mac = sha256(SECRET, &[&body]);
            proptest::prop_assert_eq!(verify(&mac, &body), Ok(()));
            let mut changed = body.clone();
            flip(&mut changed, i, delta);
            proptest::prop_assert_eq!(verify(&mac, &changed), Err(Failure::SignatureMismatch));
            let mut sig = mac;
            flip(&mut sig, i, delta);
            proptest::prop_assert_eq!(verify(&sig, &body), Err(Failure::SignatureMismatch));
        }

        #[test]
        fn arbitrary_header_bytes_never_panic(
            value in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100),
        ) {
            for name in [HMAC, EVENTS_HMAC] {
                if let Some(h) = with_raw(&headers(&[]), name, &value) {
                    let _ = run(SchemeName::Shopify, &[SECRET], None, &h, BODY.as_bytes(), NOW);
                }
            }
        }
    }
}
