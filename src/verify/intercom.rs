//! Intercom: `X-Hub-Signature: sha1=<hex>` = HMAC-SHA1 of the body (the JSON notification)
//! with the app's client secret string as the key; no timestamp.
//!
//! Per Intercom's "Signed notifications" reference (no SDK verifies it): `sha1=` + 40 hex
//! digits, a hex digest as HMAC libraries write it (lowercase); uppercase hex or another digest
//! (a `sha256=` value) is malformed. The header name is GitHub's legacy one; this scheme never
//! reads `X-Hub-Signature-256`. Rotate by configuring both secrets.

use hmac::{Hmac, Mac};

use super::{Failure, Request, header, mac::lower_hex};

const SIGNATURE: &str = "x-hub-signature";

pub(super) use super::mac::Secrets as Keys;

pub(super) fn verify(keys: &Keys, req: &Request<'_>) -> Result<(), Failure> {
    let value = header(req.headers, SIGNATURE)?;
    let sig = lower_hex::<20>(
        value
            .strip_prefix("sha1=")
            .ok_or(Failure::MalformedHeader)?,
    )?;
    let matched = keys.keys().any(|key| {
        // HMAC accepts keys of every length, so this cannot fail.
        #[allow(clippy::expect_used)]
        let mut mac =
            <Hmac<sha1::Sha1> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
        mac.update(req.body);
        mac.verify_slice(&sig).is_ok()
    });
    if matched {
        Ok(())
    } else {
        Err(Failure::SignatureMismatch)
    }
}

#[cfg(test)]
mod tests {
    use hmac::{Hmac, Mac};

    use super::super::mac::testing::{flip, headers, run, with_raw};
    use super::{Failure, SIGNATURE};
    use crate::verify::SchemeName;

    // Intercom publishes no fixed example: a signature computed with the documented scheme.
    const SECRET: &str = "intercom_client_secret_123";
    const BODY: &str = concat!(
        r#"{"type":"notification_event","id":"notif_78c122d0-23ba-11e4-9464-79b01267cc2e","#,
        r#""topic":"user.created","app_id":"a86dr8yl","data":{"type":"notification_event_data","#,
        r#""item":{"type":"user","id":"530370b477ad7120001d"}}}"#,
    );
    const NOW: i64 = 1_700_000_000;

    fn sha1(key: &str, body: &[u8]) -> [u8; 20] {
        let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(key.as_bytes()).expect("any key");
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    fn sig() -> String {
        format!("sha1={}", hex::encode(sha1(SECRET, BODY.as_bytes())))
    }

    fn check(h: &[(&str, &str)], body: &str) -> Result<(), Failure> {
        run(
            SchemeName::Intercom,
            &[SECRET],
            None,
            &headers(h),
            body.as_bytes(),
            NOW,
        )
    }

    #[test]
    fn signed_example_verifies() {
        // Cross-checked with Python's hmac module.
        assert_eq!(sig(), "sha1=df6851b081e35e699a8b06891f94fdf13f124145");
        assert_eq!(check(&[("X-Hub-Signature", &sig())], BODY), Ok(()));
    }

    #[test]
    fn any_configured_secret_passes() {
        let h = headers(&[(SIGNATURE, &sig())]);
        let r = run(
            SchemeName::Intercom,
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
        // GitHub's sha256 header is not Intercom's.
        assert_eq!(
            check(&[("x-hub-signature-256", &sig())], BODY),
            Err(Failure::MissingHeader)
        );
    }

    #[test]
    fn malformed_header() {
        let good = sig();
        let upper = good.to_uppercase().replacen("SHA1=", "sha1=", 1);
        let bare = good["sha1=".len()..].to_string();
        let sha256 = format!("sha256={}", hex::encode([7u8; 32]));
        let short = good[..good.len() - 1].to_string();
        for bad in [&upper, &bare, &sha256, &short, "sha1=", ""] {
            assert_eq!(
                check(&[(SIGNATURE, bad)], BODY),
                Err(Failure::MalformedHeader),
                "{bad:?}"
            );
        }
        assert_eq!(
            check(&[(SIGNATURE, &good), (SIGNATURE, &good)], BODY),
            Err(Failure::MalformedHeader)
        );
    }

    #[test]
    fn signature_mismatch() {
        assert_eq!(
            check(&[(SIGNATURE, &sig())], &BODY.replace("created", "deleted")),
            Err(Failure::SignatureMismatch)
        );
        assert_eq!(
            check(&[(SIGNATURE, &sig())], ""),
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
            let verify = |sig: &[u8; 20], body: &[u8]| {
                let h = headers(&[(SIGNATURE, &format!("sha1={}", hex::encode(sig)))]);
                run(SchemeName::Intercom, &[SECRET], None, &h, body, NOW)
            };
            let mac = sha1(SECRET, &body);
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
                let _ = run(SchemeName::Intercom, &[SECRET], None, &h, BODY.as_bytes(), NOW);
            }
        }
    }
}
