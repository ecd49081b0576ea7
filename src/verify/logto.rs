//! Logto: `logto-signature-sha-256: <hex>` = HMAC-SHA256 of the body with the webhook's signing
//! key string as the key; no prefix, no timestamp (Logto signs none, so replay protection is
//! up to the receiver).
//!
//! Logto's server signs `JSON.stringify(payload)` and sends those same bytes (ky `json:`), so the
//! raw body is what was signed. There is no receiver SDK to follow: the value is Node's
//! `digest('hex')`, lowercase, and only that spelling is accepted. The header is sent only when
//! the hook has a signing key: an unsigned delivery is `missing_header`. Rotate by configuring
//! both keys.

use super::{Failure, Request, header, mac::lower_hex};

const SIGNATURE: &str = "logto-signature-sha-256";

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

    /// Logto's `sign.test.ts` values.
    const SECRET: &str = "foo";
    const BODY: &str = r#"{"bar":"bar","foo":"foo"}"#;
    const SIG: &str = "436958f1dbfefab37712fb3927760490fbf7757da8c0b2306ee7b485f0360eee";
    const NOW: i64 = 1_700_000_000;

    fn check(h: &[(&str, &str)], body: &str) -> Result<(), Failure> {
        run(
            SchemeName::Logto,
            &[SECRET],
            None,
            &headers(h),
            body.as_bytes(),
            NOW,
        )
    }

    #[test]
    fn published_examples_verify() {
        assert_eq!(check(&[("Logto-Signature-Sha-256", SIG)], BODY), Ok(()));
        let empty = "c76356efa19d219d1d7e08ccb20b1d26db53b143156f406c99dcb8e0876d6c55";
        assert_eq!(check(&[(SIGNATURE, empty)], "{}"), Ok(()));
    }

    #[test]
    fn any_configured_secret_passes() {
        let h = headers(&[(SIGNATURE, SIG)]);
        let r = run(
            SchemeName::Logto,
            &["bar", SECRET],
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
    }

    #[test]
    fn malformed_header() {
        let upper = SIG.to_uppercase();
        let prefixed = format!("sha256={SIG}");
        for bad in [&upper, &prefixed, &SIG[..63], &SIG[1..], ""] {
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
        // Pretty-printed, or the keys in another order: other bytes.
        for body in [
            r#"{"bar": "bar", "foo": "foo"}"#,
            r#"{"foo":"foo","bar":"bar"}"#,
            "",
        ] {
            assert_eq!(
                check(&[(SIGNATURE, SIG)], body),
                Err(Failure::SignatureMismatch)
            );
        }
        let h = headers(&[(SIGNATURE, SIG)]);
        let r = run(SchemeName::Logto, &["bar"], None, &h, BODY.as_bytes(), NOW);
        assert_eq!(r, Err(Failure::SignatureMismatch));
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
                run(SchemeName::Logto, &[SECRET], None, &h, body, NOW)
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
                let _ = run(SchemeName::Logto, &[SECRET], None, &h, BODY.as_bytes(), NOW);
            }
        }
    }
}
