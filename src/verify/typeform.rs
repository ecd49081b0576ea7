//! Typeform: `Typeform-Signature: sha256=<base64>` = HMAC-SHA256 of the body with the webhook
//! secret string as the key; no timestamp.
//!
//! Per Typeform's "Secure your webhooks" page (no SDK verifies it): the value is `sha256=` +
//! `Base64.strict_encode64(digest)` compared as a string, so the prefix is required and the
//! base64 must be canonical and padded. The right digest in hex (GitHub's encoding under the
//! same prefix) is malformed. Rotate by configuring both secrets.

use super::{Failure, Request, header, mac::base64_sha256};

const SIGNATURE: &str = "typeform-signature";

pub(super) use super::mac::Secrets as Keys;

pub(super) fn verify(keys: &Keys, req: &Request<'_>) -> Result<(), Failure> {
    let value = header(req.headers, SIGNATURE)?;
    let sig = base64_sha256(
        value
            .strip_prefix("sha256=")
            .ok_or(Failure::MalformedHeader)?,
    )?;
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
    use super::{Failure, SIGNATURE};
    use crate::verify::SchemeName;

    // Typeform publishes no fixed example: a signature computed with the documented scheme.
    const SECRET: &str = "abc123";
    const BODY: &str = r#"{"event_id":"01HXYZ","event_type":"form_response","form_response":{"form_id":"lT4Z3j","answers":[]}}"#;
    const SIG: &str = "sha256=1JX4vj25BZMuJH7WPDCM0PtEfhGj6Iu5mZ5KyTHKbe8=";
    const NOW: i64 = 1_700_000_000;

    fn check(h: &[(&str, &str)], body: &str) -> Result<(), Failure> {
        run(
            SchemeName::Typeform,
            &[SECRET],
            None,
            &headers(h),
            body.as_bytes(),
            NOW,
        )
    }

    #[test]
    fn signed_example_verifies() {
        let mac = STANDARD.encode(sha256(SECRET, &[BODY.as_bytes()]));
        assert_eq!(format!("sha256={mac}"), SIG);
        assert_eq!(check(&[("Typeform-Signature", SIG)], BODY), Ok(()));
    }

    #[test]
    fn any_configured_secret_passes() {
        let h = headers(&[(SIGNATURE, SIG)]);
        let r = run(
            SchemeName::Typeform,
            &["old", SECRET],
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
        for bad in [
            // The right digest in hex.
            "sha256=d495f8be3db905932e247ed63c308cd0fb447e11a3e88bb9999e4ac931ca6def",
            "1JX4vj25BZMuJH7WPDCM0PtEfhGj6Iu5mZ5KyTHKbe8=",
            "sha256=1JX4vj25BZMuJH7WPDCM0PtEfhGj6Iu5mZ5KyTHKbe8",
            "sha256=1JX4vj25BZMuJH7WPDCM0PtEfhGj6Iu5mZ5KyTHKbe9=",
            "sha256=1JX4vj25BZMuJH7WPDCM0PtEfhGj6Iu5mZ5KyTHKbe8=\t",
            "SHA256=1JX4vj25BZMuJH7WPDCM0PtEfhGj6Iu5mZ5KyTHKbe8=",
            "sha1=1JX4vj25BZMuJH7WPDCM0PtEfhGj6Iu5mZ5KyTHKbe8=",
            "sha256=",
            "",
        ] {
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
            check(&[(SIGNATURE, SIG)], &BODY.replace("lT4Z3j", "lT4Z3k")),
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
                let h = headers(&[(SIGNATURE, &format!("sha256={}", STANDARD.encode(sig)))]);
                run(SchemeName::Typeform, &[SECRET], None, &h, body, NOW)
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
                let _ = run(SchemeName::Typeform, &[SECRET], None, &h, BODY.as_bytes(), NOW);
            }
        }
    }
}
