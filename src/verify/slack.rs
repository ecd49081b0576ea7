//! Slack: `X-Slack-Signature: v0=<hex>` = HMAC-SHA256 of
//! `"v0:{X-Slack-Request-Timestamp}:{body}"` with the signing secret string as the key (it looks
//! like hex but is used as is).
//!
//! Like python-slack-sdk's `SignatureVerifier`, which the shared vectors follow: a timestamp
//! more than 5 minutes away in either direction is refused (bolt-js refuses only old ones);
//! `v0` is the only version (bolt-js: "unknown signature version"); lowercase hex only (both
//! SDKs compare hex strings). No multi-signature header: rotate by configuring both secrets.

use std::time::Duration;

use super::{Failure, Request, Window, check_window, header, mac::lower_hex, parse_timestamp};

/// python-slack-sdk: `abs(now - timestamp) > 60 * 5` is invalid.
pub(super) const TOLERANCE: Duration = Duration::from_secs(300);

const SIGNATURE: &str = "x-slack-signature";
const TIMESTAMP: &str = "x-slack-request-timestamp";

pub(super) use super::mac::Secrets as Keys;

pub(super) fn verify(
    keys: &Keys,
    req: &Request<'_>,
    now: i64,
    tolerance: Option<Duration>,
) -> Result<(), Failure> {
    verify_v0(keys, req, SIGNATURE, TIMESTAMP, now, tolerance)
}

/// `"v0=" + hex(HMAC-SHA256("v0:{timestamp}:{body}"))` with the timestamp from its own header,
/// within ±tolerance: Slack's construction, which Zoom uses too with other header names.
pub(super) fn verify_v0(
    keys: &Keys,
    req: &Request<'_>,
    signature_header: &str,
    timestamp_header: &str,
    now: i64,
    tolerance: Option<Duration>,
) -> Result<(), Failure> {
    let sig_text = header(req.headers, signature_header)?;
    let ts_text = header(req.headers, timestamp_header)?;
    let ts = parse_timestamp(ts_text)?;
    let sig = lower_hex::<32>(
        sig_text
            .strip_prefix("v0=")
            .ok_or(Failure::MalformedHeader)?,
    )?;
    let content: [&[u8]; 4] = [b"v0:", ts_text.as_bytes(), b":", req.body];
    if !keys.any_sha256(&content, &[sig]) {
        return Err(Failure::SignatureMismatch);
    }
    check_window(ts, now, tolerance, Window::Both)
}

#[cfg(test)]
mod tests {
    use super::super::mac::testing::{flip, headers, run, sha256, with_raw};
    use super::{Failure, SIGNATURE, TIMESTAMP};
    use crate::verify::SchemeName;

    /// The example from Slack's "Verifying requests from Slack" page.
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const TS: i64 = 1_531_420_618;
    const BODY: &str = concat!(
        "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow",
        "&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner",
        "&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com",
        "%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN",
        "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c",
    );
    const SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn check(h: &[(&str, &str)], body: &str, now: i64) -> Result<(), Failure> {
        run(
            SchemeName::Slack,
            &[SECRET],
            None,
            &headers(h),
            body.as_bytes(),
            now,
        )
    }

    fn ok_headers() -> Vec<(&'static str, &'static str)> {
        vec![(TIMESTAMP, "1531420618"), (SIGNATURE, SIG)]
    }

    #[test]
    fn published_example_verifies() {
        assert_eq!(check(&ok_headers(), BODY, TS), Ok(()));
        // Header names are case-insensitive.
        let h = [
            ("X-Slack-Request-Timestamp", "1531420618"),
            ("X-Slack-Signature", SIG),
        ];
        assert_eq!(check(&h, BODY, TS), Ok(()));
    }

    #[test]
    fn any_configured_secret_passes() {
        let h = headers(&ok_headers());
        let r = run(
            SchemeName::Slack,
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
            check(&[(SIGNATURE, SIG)], BODY, TS),
            Err(Failure::MissingHeader)
        );
        assert_eq!(
            check(&[(TIMESTAMP, "1531420618")], BODY, TS),
            Err(Failure::MissingHeader)
        );
    }

    #[test]
    fn malformed_header() {
        let upper = SIG.to_uppercase().replacen("V0=", "v0=", 1);
        for bad in [
            "v1=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            "a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b5",
            "v0=",
            "",
            upper.as_str(),
        ] {
            assert_eq!(
                check(&[(TIMESTAMP, "1531420618"), (SIGNATURE, bad)], BODY, TS),
                Err(Failure::MalformedHeader),
                "{bad:?}"
            );
        }
        let twice = [
            (TIMESTAMP, "1531420618"),
            (SIGNATURE, SIG),
            (SIGNATURE, SIG),
        ];
        assert_eq!(check(&twice, BODY, TS), Err(Failure::MalformedHeader));
    }

    #[test]
    fn bad_timestamp() {
        for bad in [
            "",
            "1531420618.0",
            "-1531420618",
            "+1531420618",
            " 1531420618",
            "x",
        ] {
            assert_eq!(
                check(&[(TIMESTAMP, bad), (SIGNATURE, SIG)], BODY, TS),
                Err(Failure::BadTimestamp),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn expired_and_from_future() {
        assert_eq!(check(&ok_headers(), BODY, TS + 300), Ok(()));
        assert_eq!(check(&ok_headers(), BODY, TS + 301), Err(Failure::Expired));
        assert_eq!(check(&ok_headers(), BODY, TS - 300), Ok(()));
        assert_eq!(
            check(&ok_headers(), BODY, TS - 301),
            Err(Failure::FromFuture)
        );
    }

    #[test]
    fn signature_mismatch() {
        assert_eq!(
            check(&ok_headers(), &BODY.replace("foobar", "foobaz"), TS),
            Err(Failure::SignatureMismatch)
        );
        // The signed timestamp is part of the content.
        let h = [(TIMESTAMP, "1531420619"), (SIGNATURE, SIG)];
        assert_eq!(check(&h, BODY, TS), Err(Failure::SignatureMismatch));
        // An empty body is signed like any other.
        assert_eq!(
            check(&ok_headers(), "", TS),
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
            let mac = sha256(SECRET, &[b"v0:1531420618:", &body]);
            let good = headers(&[(TIMESTAMP, "1531420618"), (SIGNATURE, &format!("v0={}", hex::encode(mac)))]);
            proptest::prop_assert_eq!(run(SchemeName::Slack, &[SECRET], None, &good, &body, TS), Ok(()));
            let mut changed = body.clone();
            flip(&mut changed, i, delta);
            proptest::prop_assert_eq!(
                run(SchemeName::Slack, &[SECRET], None, &good, &changed, TS),
                Err(Failure::SignatureMismatch)
            );
            let mut sig = mac;
            flip(&mut sig, i, delta);
            let bad = headers(&[(TIMESTAMP, "1531420618"), (SIGNATURE, &format!("v0={}", hex::encode(sig)))]);
            proptest::prop_assert_eq!(
                run(SchemeName::Slack, &[SECRET], None, &bad, &body, TS),
                Err(Failure::SignatureMismatch)
            );
        }

        #[test]
        fn arbitrary_header_bytes_never_panic(
            value in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100),
        ) {
            let base = headers(&ok_headers());
            for name in [SIGNATURE, TIMESTAMP] {
                if let Some(h) = with_raw(&base, name, &value) {
                    let _ = run(SchemeName::Slack, &[SECRET], None, &h, BODY.as_bytes(), TS);
                }
            }
        }
    }
}
