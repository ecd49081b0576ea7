//! Lemon Squeezy: `X-Signature: <hex>` = HMAC-SHA256 of the body with the webhook's signing
//! secret string (6–40 characters, chosen by the user) as the key; no prefix, no timestamp.
//!
//! Lemon Squeezy's docs say "HMAC hex digest" and their examples use SHA-256. There is no
//! receiver SDK beyond the examples (and the Laravel package), which compare the lowercase hex
//! string, so uppercase hex is malformed, as is a `sha256=` prefix (not part of the format).
//! Rotate by configuring both secrets.

use super::{Failure, Request, header, mac::lower_hex};

const SIGNATURE: &str = "x-signature";

pub(super) use super::mac::Secrets as Keys;

pub(super) fn verify(keys: &Keys, req: &Request<'_>) -> Result<(), Failure> {
    let sig = lower_hex::<32>(header(req.headers, SIGNATURE)?)?;
    if keys.any_sha256(&[req.body], &[sig]) {
        Ok(())
    } else {
        Err(Failure::SignatureMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::super::mac::testing::{flip, headers, run, sha256, with_raw};
    use super::{Failure, SIGNATURE};
    use crate::verify::SchemeName;

    // Lemon Squeezy publishes no fixed example: a signature computed with the documented scheme.
    const SECRET: &str = "lemon-signing-secret";
    const BODY: &str = r#"{"meta":{"event_name":"order_created","custom_data":null},"data":{"type":"orders","id":"1"}}"#;
    const SIG: &str = "3251d53a4a70733ac4e165b08594a42e12855144c0f63aca108f3bf428ad3a53";
    const NOW: i64 = 1_700_000_000;

    fn check(h: &[(&str, &str)], body: &str) -> Result<(), Failure> {
        run(
            SchemeName::LemonSqueezy,
            &[SECRET],
            None,
            &headers(h),
            body.as_bytes(),
            NOW,
        )
    }

    #[test]
    fn signed_example_verifies() {
        assert_eq!(hex::encode(sha256(SECRET, &[BODY.as_bytes()])), SIG);
        assert_eq!(
            check(
                &[("X-Signature", SIG), ("X-Event-Name", "order_created")],
                BODY
            ),
            Ok(())
        );
    }

    #[test]
    fn any_configured_secret_passes() {
        let h = headers(&[(SIGNATURE, SIG)]);
        let r = run(
            SchemeName::LemonSqueezy,
            &["previous", SECRET],
            None,
            &h,
            BODY.as_bytes(),
            NOW,
        );
        assert_eq!(r, Ok(()));
    }

    #[test]
    fn missing_header() {
        assert_eq!(
            check(&[("X-Event-Name", "order_created")], BODY),
            Err(Failure::MissingHeader)
        );
    }

    #[test]
    fn malformed_header() {
        let upper = SIG.to_uppercase();
        let prefixed = format!("sha256={SIG}");
        for bad in [&upper, &prefixed, &SIG[..63], &SIG[..40], ""] {
            assert_eq!(
                check(&[(SIGNATURE, bad)], BODY),
                Err(Failure::MalformedHeader),
                "{bad:?}"
            );
        }
        assert_eq!(
            check(&[(SIGNATURE, SIG), (SIGNATURE, SIG)], BODY),
            Err(Failure::MalformedHeader)
        );
    }

    #[test]
    fn signature_mismatch() {
        assert_eq!(
            check(&[(SIGNATURE, SIG)], &BODY.replace("\"1\"", "\"2\"")),
            Err(Failure::SignatureMismatch)
        );
        assert_eq!(
            check(&[(SIGNATURE, SIG)], ""),
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
                let h = headers(&[(SIGNATURE, &hex::encode(sig))]);
                run(SchemeName::LemonSqueezy, &[SECRET], None, &h, body, NOW)
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
            if let Some(h) = with_raw(&headers(&[]), SIGNATURE, &value) {
                let _ = run(SchemeName::LemonSqueezy, &[SECRET], None, &h, BODY.as_bytes(), NOW);
            }
        }
    }
}
