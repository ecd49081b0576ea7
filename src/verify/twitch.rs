//! Twitch EventSub (webhook transport): `Twitch-Eventsub-Message-Signature: sha256=<hex>` =
//! HMAC-SHA256 of `message_id ‖ timestamp ‖ body` (no separators) with the subscription's
//! secret string as the key, where `message_id` and `timestamp` are the
//! `Twitch-Eventsub-Message-Id` and `-Timestamp` header values, byte for byte.
//!
//! Per the official `eventsub-webhooks-node-sample`: `sha256=` + lowercase hex compared as a
//! string. The timestamp is RFC 3339 with up to nanosecond precision
//! (`2023-11-14T22:13:20.123456789Z`); it is hashed verbatim (twitch-cli re-formats it, which
//! changes the bytes) and parsed strictly (upper-case `T`/`Z`, or a `±HH:MM` offset; at most 9
//! fraction digits) only for the window. Per Twitch's docs ("guarding against replay attacks"),
//! a message older than 10 minutes is refused; they give no rule for future timestamps and
//! none is applied. Rotate by configuring both secrets (Twitch has one secret per
//! subscription).

use std::time::Duration;

use super::{Failure, Request, Window, check_window, header, mac::lower_hex};

/// Twitch docs: reject messages older than 10 minutes.
pub(super) const TOLERANCE: Duration = Duration::from_secs(600);

const ID: &str = "twitch-eventsub-message-id";
const TIMESTAMP: &str = "twitch-eventsub-message-timestamp";
const SIGNATURE: &str = "twitch-eventsub-message-signature";

pub(super) use super::mac::Secrets as Keys;

pub(super) fn verify(
    keys: &Keys,
    req: &Request<'_>,
    now: i64,
    tolerance: Option<Duration>,
) -> Result<(), Failure> {
    let id = header(req.headers, ID)?;
    let ts_text = header(req.headers, TIMESTAMP)?;
    let sig_text = header(req.headers, SIGNATURE)?;
    let ts = parse_rfc3339(ts_text)?;
    if id.is_empty() {
        return Err(Failure::MalformedHeader);
    }
    let sig = lower_hex::<32>(
        sig_text
            .strip_prefix("sha256=")
            .ok_or(Failure::MalformedHeader)?,
    )?;
    let content: [&[u8]; 3] = [id.as_bytes(), ts_text.as_bytes(), req.body];
    if !keys.any_sha256(&content, &[sig]) {
        return Err(Failure::SignatureMismatch);
    }
    // `ts` is rounded down and `now` is whole seconds, so "older than the tolerance" is exact.
    check_window(ts, now, tolerance, Window::PastOnly)
}

/// Unix seconds, rounded down, of `YYYY-MM-DDTHH:MM:SS[.fraction]` then `Z` or `±HH:MM`.
fn parse_rfc3339(s: &str) -> Result<i64, Failure> {
    const BAD: Failure = Failure::BadTimestamp;
    let b = s.as_bytes();
    let num = |at: usize, len: usize| -> Result<i64, Failure> {
        let digits = b.get(at..at + len).ok_or(BAD)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(BAD);
        }
        Ok(digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':')) {
        return Err(BAD);
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let mut rest = b.get(19..).ok_or(BAD)?;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = fraction.iter().take_while(|d| d.is_ascii_digit()).count();
        if !(1..=9).contains(&n) {
            return Err(BAD);
        }
        rest = &fraction[n..];
    }
    let offset = match rest {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (num(b.len() - 5, 2)?, num(b.len() - 2, 2)?);
            if h > 23 || m > 59 {
                return Err(BAD);
            }
            let secs = h * 3600 + m * 60;
            if *sign == b'+' { secs } else { -secs }
        }
        _ => return Err(BAD),
    };
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        // Twitch formats with Go's `time`, which never writes a leap second.
        || second > 59
    {
        return Err(BAD);
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::super::mac::testing::{flip, headers, run, sha256, with_raw};
    use super::{Failure, ID, SIGNATURE, TIMESTAMP, parse_rfc3339};
    use crate::verify::SchemeName;

    // Twitch publishes no fixed example: the official sample's secret, a channel.follow
    // notification, and a signature computed with the documented scheme.
    const SECRET: &str = "keepItSecretKeepItSafe";
    const MSG_ID: &str = "e76c6bd4-55c9-4987-8304-da1588d8988b";
    const TS_TEXT: &str = "2023-11-14T22:13:20.123456789Z";
    const TS: i64 = 1_700_000_000;
    const BODY: &str = concat!(
        r#"{"subscription":{"id":"f1c2a387-161a-49f9-a165-0f21d7a4e1c4","type":"channel.follow","#,
        r#""version":"2","status":"enabled","cost":0,"condition":{"broadcaster_user_id":"1337","#,
        r#""moderator_user_id":"1337"},"transport":{"method":"webhook","#,
        r#""callback":"https://example.com/webhooks/callback"},"#,
        r#""created_at":"2023-11-14T22:00:00.634234626Z"},"event":{"user_id":"1234","#,
        r#""user_login":"cool_user","user_name":"Cool_User","broadcaster_user_id":"1337","#,
        r#""broadcaster_user_login":"cooler_user","broadcaster_user_name":"Cooler_User","#,
        r#""followed_at":"2023-11-14T22:13:19.634234626Z"}}"#,
    );
    const SIG: &str = "sha256=d2b312f575928cd9e7fd0b9adf98a9ca9cfc9b06817a1b0e04cc4a888e47855c";

    fn check(h: &[(&str, &str)], body: &str, now: i64) -> Result<(), Failure> {
        run(
            SchemeName::Twitch,
            &[SECRET],
            None,
            &headers(h),
            body.as_bytes(),
            now,
        )
    }

    /// The three headers, with `id`, `ts` and `sig` as given.
    fn check3(id: &str, ts: &str, sig: &str) -> Result<(), Failure> {
        check(&[(ID, id), (TIMESTAMP, ts), (SIGNATURE, sig)], BODY, TS)
    }

    #[test]
    fn signed_example_verifies() {
        let mac = sha256(
            SECRET,
            &[MSG_ID.as_bytes(), TS_TEXT.as_bytes(), BODY.as_bytes()],
        );
        assert_eq!(format!("sha256={}", hex::encode(mac)), SIG);
        let h = [
            ("Twitch-Eventsub-Message-Type", "notification"),
            ("Twitch-Eventsub-Message-Id", MSG_ID),
            ("Twitch-Eventsub-Message-Timestamp", TS_TEXT),
            ("Twitch-Eventsub-Message-Signature", SIG),
        ];
        assert_eq!(check(&h, BODY, TS), Ok(()));
    }

    #[test]
    fn any_configured_secret_passes() {
        let h = headers(&[(ID, MSG_ID), (TIMESTAMP, TS_TEXT), (SIGNATURE, SIG)]);
        let r = run(
            SchemeName::Twitch,
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
        let all = [(ID, MSG_ID), (TIMESTAMP, TS_TEXT), (SIGNATURE, SIG)];
        for missing in [ID, TIMESTAMP, SIGNATURE] {
            let h: Vec<_> = all.into_iter().filter(|(n, _)| *n != missing).collect();
            assert_eq!(
                check(&h, BODY, TS),
                Err(Failure::MissingHeader),
                "{missing}"
            );
        }
    }

    #[test]
    fn malformed_header() {
        let upper = SIG.to_uppercase().replacen("SHA256=", "sha256=", 1);
        let bare = SIG["sha256=".len()..].to_string();
        let sha1 = format!("sha1={}", hex::encode([7u8; 20]));
        for bad in [&upper, &bare, &sha1, &SIG[..SIG.len() - 1], "sha256=", ""] {
            assert_eq!(
                check3(MSG_ID, TS_TEXT, bad),
                Err(Failure::MalformedHeader),
                "{bad:?}"
            );
        }
        assert_eq!(check3("", TS_TEXT, SIG), Err(Failure::MalformedHeader));
        let twice = [
            (ID, MSG_ID),
            (TIMESTAMP, TS_TEXT),
            (SIGNATURE, SIG),
            (SIGNATURE, SIG),
        ];
        assert_eq!(check(&twice, BODY, TS), Err(Failure::MalformedHeader));
    }

    #[test]
    fn bad_timestamp() {
        for bad in [
            "1700000000",
            "",
            "2023-11-14T22:13:20",
            "2023-11-14 22:13:20Z",
            "2023-11-14t22:13:20z",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20.1234567890Z",
            "2023-11-14T22:13:20ZZ",
            "2023-11-14T22:13:20+0100",
            "2023-11-14T22:13:20+24:00",
            "2023-13-14T22:13:20Z",
            "2023-02-29T22:13:20Z",
            "2023-11-00T22:13:20Z",
            "2023-11-14T24:13:20Z",
            "2023-11-14T22:60:20Z",
            "2023-11-14T22:13:60Z",
            "+023-11-14T22:13:20Z",
            "2023-11-14T22:13:2",
        ] {
            assert_eq!(
                check3(MSG_ID, bad, SIG),
                Err(Failure::BadTimestamp),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rfc3339_values() {
        for (text, secs) in [
            ("1970-01-01T00:00:00Z", 0),
            ("1969-12-31T23:59:59.999Z", -1),
            ("2000-02-29T00:00:00Z", 951_782_400),
            ("2023-11-14T22:13:20Z", TS),
            ("2023-11-14T22:13:20.123456789Z", TS),
            ("2023-11-14T22:13:20.5Z", TS),
            ("2023-11-14T23:43:20+01:30", TS),
            ("2023-11-14T20:13:20-02:00", TS),
            ("9999-12-31T23:59:59Z", 253_402_300_799),
        ] {
            assert_eq!(parse_rfc3339(text), Ok(secs), "{text}");
        }
    }

    #[test]
    fn expired() {
        // The signed timestamp is TS + 0.123…: 600.877 s old at TS + 601.
        assert_eq!(
            check(
                &[(ID, MSG_ID), (TIMESTAMP, TS_TEXT), (SIGNATURE, SIG)],
                BODY,
                TS + 600
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &[(ID, MSG_ID), (TIMESTAMP, TS_TEXT), (SIGNATURE, SIG)],
                BODY,
                TS + 601
            ),
            Err(Failure::Expired)
        );
        // Twitch's docs set no limit on future timestamps.
        assert_eq!(
            check(
                &[(ID, MSG_ID), (TIMESTAMP, TS_TEXT), (SIGNATURE, SIG)],
                BODY,
                TS - 3600
            ),
            Ok(())
        );
    }

    #[test]
    fn signature_mismatch() {
        assert_eq!(
            check(
                &[(ID, MSG_ID), (TIMESTAMP, TS_TEXT), (SIGNATURE, SIG)],
                &BODY.replace("1234", "1235"),
                TS
            ),
            Err(Failure::SignatureMismatch)
        );
        assert_eq!(
            check3("e76c6bd4-55c9-4987-8304-da1588d8988c", TS_TEXT, SIG),
            Err(Failure::SignatureMismatch)
        );
        // The same instant written differently is other signed bytes.
        assert_eq!(
            check3(MSG_ID, "2023-11-14T22:13:20.123456789+00:00", SIG),
            Err(Failure::SignatureMismatch)
        );
        assert_eq!(
            check3(MSG_ID, "2023-11-14T22:13:20.123456Z", SIG),
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
                let h = headers(&[
                    (ID, MSG_ID),
                    (TIMESTAMP, TS_TEXT),
                    (SIGNATURE, &format!("sha256={}", hex::encode(sig))),
                ]);
                run(SchemeName::Twitch, &[SECRET], None, &h, body, TS)
            };
            let mac = sha256(SECRET, &[MSG_ID.as_bytes(), TS_TEXT.as_bytes(), &body]);
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
            let base = headers(&[(ID, MSG_ID), (TIMESTAMP, TS_TEXT), (SIGNATURE, SIG)]);
            for name in [ID, TIMESTAMP, SIGNATURE] {
                if let Some(h) = with_raw(&base, name, &value) {
                    let _ = run(SchemeName::Twitch, &[SECRET], None, &h, BODY.as_bytes(), TS);
                }
            }
        }

        #[test]
        fn timestamp_text_never_panics(s in "\\PC{0,40}|[0-9T:.Z+-]{0,40}") {
            let _ = parse_rfc3339(&s);
        }
    }
}
