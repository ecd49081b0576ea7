//! Zoom: `x-zm-signature: v0=<hex>` = HMAC-SHA256 of `"v0:{x-zm-request-timestamp}:{body}"`
//! with the app's Webhook Secret Token string as the key. The same check covers the
//! `endpoint.url_validation` request; answering its challenge is the target's job.
//!
//! Per Zoom's official `webhook-sample` (there is no SDK verifier): the timestamp header is used
//! verbatim in the content and the hex is compared as a string, so it must be lowercase (the
//! sample hashes a re-serialised body, a bug; we hash the raw bytes). The timestamp must be an
//! integer. Zoom publishes no replay window (nor, firmly, the timestamp's unit), so none applies
//! by default: a route that sets `tolerance` gets it both ways, reading the timestamp as unix
//! seconds. Rotate by configuring both secrets.

use std::time::Duration;

use super::{Failure, Request};

const SIGNATURE: &str = "x-zm-signature";
const TIMESTAMP: &str = "x-zm-request-timestamp";

pub(super) use super::mac::Secrets as Keys;

/// The same `v0` construction as Slack's, with Zoom's header names.
pub(super) fn verify(
    keys: &Keys,
    req: &Request<'_>,
    now: i64,
    tolerance: Option<Duration>,
) -> Result<(), Failure> {
    super::slack::verify_v0(keys, req, SIGNATURE, TIMESTAMP, now, tolerance)
}

#[cfg(test)]
mod tests {
    use super::super::mac::testing::{flip, headers, run, sha256, with_raw};
    use super::{Failure, SIGNATURE, TIMESTAMP};
    use crate::verify::SchemeName;

    // Zoom publishes no fixed example: a signature computed with the documented scheme.
    const SECRET: &str = "abcdefghijklmnop";
    const TS: i64 = 1_700_000_000;
    const BODY: &str = concat!(
        r#"{"event":"meeting.started","payload":{"account_id":"AAAAAAAAAAAAAAAAAAAAAA","#,
        r#""object":{"id":"85012345678","topic":"Test"}},"event_ts":1700000000123}"#,
    );
    const SIG: &str = "v0=f11d56f6323f15bcd201c6f3e09d9af59b2155ac5b6bee361d9b5aaa2fd8389d";

    fn check(
        h: &[(&str, &str)],
        body: &str,
        tolerance: Option<u64>,
        now: i64,
    ) -> Result<(), Failure> {
        run(
            SchemeName::Zoom,
            &[SECRET],
            tolerance,
            &headers(h),
            body.as_bytes(),
            now,
        )
    }

    fn ok_headers() -> [(&'static str, &'static str); 2] {
        [(SIGNATURE, SIG), (TIMESTAMP, "1700000000")]
    }

    #[test]
    fn signed_example_verifies() {
        let mac = sha256(SECRET, &[b"v0:1700000000:", BODY.as_bytes()]);
        assert_eq!(format!("v0={}", hex::encode(mac)), SIG);
        let h = [
            ("X-Zm-Signature", SIG),
            ("X-Zm-Request-Timestamp", "1700000000"),
        ];
        assert_eq!(check(&h, BODY, None, TS), Ok(()));
        // No window by default: Zoom publishes none.
        assert_eq!(check(&ok_headers(), BODY, None, TS + 86_400 * 365), Ok(()));
    }

    #[test]
    fn any_configured_secret_passes() {
        let h = headers(&ok_headers());
        let r = run(
            SchemeName::Zoom,
            &["old", SECRET],
            None,
            &h,
            BODY.as_bytes(),
            TS,
        );
        assert_eq!(r, Ok(()));
    }

    #[test]
    fn missing_header() {
        assert_eq!(
            check(&[(SIGNATURE, SIG)], BODY, None, TS),
            Err(Failure::MissingHeader)
        );
        assert_eq!(
            check(&[(TIMESTAMP, "1700000000")], BODY, None, TS),
            Err(Failure::MissingHeader)
        );
    }

    #[test]
    fn malformed_header() {
        let upper = SIG.to_uppercase().replacen("V0=", "v0=", 1);
        let bare = SIG["v0=".len()..].to_string();
        let v1 = SIG.replacen("v0=", "v1=", 1);
        for bad in [&upper, &bare, &v1, &SIG[..SIG.len() - 1], "v0=", ""] {
            assert_eq!(
                check(
                    &[(SIGNATURE, bad), (TIMESTAMP, "1700000000")],
                    BODY,
                    None,
                    TS
                ),
                Err(Failure::MalformedHeader),
                "{bad:?}"
            );
        }
        let twice = [
            (SIGNATURE, SIG),
            (SIGNATURE, SIG),
            (TIMESTAMP, "1700000000"),
        ];
        assert_eq!(check(&twice, BODY, None, TS), Err(Failure::MalformedHeader));
    }

    #[test]
    fn bad_timestamp() {
        for bad in [
            "",
            "1700000000.0",
            "-1700000000",
            "2023-11-14T22:13:20Z",
            "1e9",
        ] {
            assert_eq!(
                check(&[(SIGNATURE, SIG), (TIMESTAMP, bad)], BODY, None, TS),
                Err(Failure::BadTimestamp),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn expired_and_from_future_when_the_route_sets_a_tolerance() {
        assert_eq!(check(&ok_headers(), BODY, Some(300), TS + 300), Ok(()));
        assert_eq!(
            check(&ok_headers(), BODY, Some(300), TS + 301),
            Err(Failure::Expired)
        );
        assert_eq!(check(&ok_headers(), BODY, Some(300), TS - 300), Ok(()));
        assert_eq!(
            check(&ok_headers(), BODY, Some(300), TS - 301),
            Err(Failure::FromFuture)
        );
    }

    #[test]
    fn signature_mismatch() {
        assert_eq!(
            check(&ok_headers(), &BODY.replace("Test", "Tesu"), None, TS),
            Err(Failure::SignatureMismatch)
        );
        // The signed timestamp is part of the content.
        let h = [(SIGNATURE, SIG), (TIMESTAMP, "1700000001")];
        assert_eq!(check(&h, BODY, None, TS), Err(Failure::SignatureMismatch));
    }

    proptest::proptest! {
        #[test]
        fn any_single_byte_change_fails(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..256),
            i in proptest::prelude::any::<usize>(),
            delta in proptest::prelude::any::<u8>(),
        ) {
            let verify = |sig: &[u8; 32], body: &[u8]| {
                let h = headers(&[
                    (SIGNATURE, &format!("v0={}", hex::encode(sig))),
                    (TIMESTAMP, "1700000000"),
                ]);
                run(SchemeName::Zoom, &[SECRET], None, &h, body, TS)
            };
            let mac = sha256(SECRET, &[b"v0:1700000000:", &body]);
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
            let base = headers(&ok_headers());
            for name in [SIGNATURE, TIMESTAMP] {
                if let Some(h) = with_raw(&base, name, &value) {
                    let _ = run(SchemeName::Zoom, &[SECRET], Some(300), &h, BODY.as_bytes(), TS);
                }
            }
        }
    }
}
