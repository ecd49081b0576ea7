//! Linear: `Linear-Signature: <hex>` = HMAC-SHA256 of the raw body with the webhook signing
//! secret (verbatim), lowercase hex (the SDK compares hex strings).
//!
//! The timestamp is `webhookTimestamp` **inside the signed JSON body**, in **milliseconds**:
//! like @linear/sdk 98, it must be there and be a JSON number, and `|now − ts| > 60 s` is
//! refused (both ways, compared in milliseconds so the boundary is the SDK's). The
//! `Linear-Timestamp` header is not signed and is ignored, as the SDK now does (older SDKs fell
//! back to it, or skipped the check when the body had no timestamp).
//!
//! The body is read as JSON only after the signature matched, and only for that one value;
//! it must be a non-negative integer (Linear sends integer milliseconds): a float or a string
//! is a bad timestamp.

use std::time::Duration;

use hmac::Mac;

use super::{Failure, Request, header, hmac_sha256};

/// @linear/sdk: "more than one minute delta between provided ts and current time".
pub(super) const TOLERANCE: Duration = Duration::from_secs(60);

const HEADER: &str = "linear-signature";

/// The body field holding the signed timestamp (unix milliseconds).
const TIMESTAMP_FIELD: &str = "webhookTimestamp";

pub(super) struct Keys(Vec<Vec<u8>>);

impl Keys {
    pub(super) fn new(secrets: &[&str]) -> Keys {
        Keys(secrets.iter().map(|s| s.as_bytes().to_vec()).collect())
    }
}

pub(super) fn verify(
    keys: &Keys,
    req: &Request<'_>,
    now: i64,
    tolerance: Option<Duration>,
) -> Result<(), Failure> {
    let value = header(req.headers, HEADER)?;
    let lower_hex = value
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if value.len() != 64 || !lower_hex {
        return Err(Failure::MalformedHeader);
    }
    let sig = hex::decode(value).map_err(|_| Failure::MalformedHeader)?;
    let matched = keys
        .0
        .iter()
        .any(|key| hmac_sha256(key, &[req.body]).verify_slice(&sig).is_ok());
    if !matched {
        return Err(Failure::SignatureMismatch);
    }
    let ts_ms = body_timestamp(req.body)?;
    check_window_ms(ts_ms, now, tolerance)
}

/// `webhookTimestamp` from the (already authenticated) body.
fn body_timestamp(body: &[u8]) -> Result<i128, Failure> {
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| Failure::MalformedBody)?;
    let field = json
        .as_object()
        .ok_or(Failure::MalformedBody)?
        .get(TIMESTAMP_FIELD)
        .ok_or(Failure::MalformedBody)?;
    field.as_u64().map(i128::from).ok_or(Failure::BadTimestamp)
}

/// The window in milliseconds: `now` is whole seconds, the timestamp milliseconds.
fn check_window_ms(ts_ms: i128, now: i64, tolerance: Option<Duration>) -> Result<(), Failure> {
    let Some(tol) = tolerance else { return Ok(()) };
    let tol_ms = i128::try_from(tol.as_millis()).unwrap_or(i128::MAX);
    let now_ms = i128::from(now) * 1000;
    if now_ms - ts_ms > tol_ms {
        return Err(Failure::Expired);
    }
    if ts_ms - now_ms > tol_ms {
        return Err(Failure::FromFuture);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};
    use proptest::prelude::*;

    use super::*;

    // The secret of the SDK's tests (LinearWebhooks.test.ts); Linear publishes no fixed vector.
    const SECRET: &str = "SECRET";
    const NOW: i64 = 1_700_000_000;

    fn body(ts: &str) -> String {
        format!(
            r#"{{"action":"create","type":"Comment","data":{{"id":"x"}},"webhookTimestamp":{ts}}}"#
        )
    }

    fn sign(secret: &str, body: &[u8]) -> String {
        hex::encode(
            hmac_sha256(secret.as_bytes(), &[body])
                .finalize()
                .into_bytes(),
        )
    }

    fn run_with(secrets: &[&str], sig: Option<&str>, body: &[u8], now: i64) -> Result<(), Failure> {
        let mut headers = HeaderMap::new();
        if let Some(v) = sig {
            headers.insert(HEADER, HeaderValue::from_str(v).expect("test header"));
        }
        let req = Request {
            url: "https://example.com/webhooks",
            headers: &headers,
            body,
        };
        verify(&Keys::new(secrets), &req, now, Some(TOLERANCE))
    }

    /// Signs `body` with the secret and verifies it at `now`.
    fn run(body: &str, now: i64) -> Result<(), Failure> {
        run_with(
            &[SECRET],
            Some(&sign(SECRET, body.as_bytes())),
            body.as_bytes(),
            now,
        )
    }

    #[test]
    fn shared_vector_linear_01_passes() {
        // tests/vectors: linear-01 (SDK test payload, fixed timestamp); checks the hex form.
        let body = r#"{"action":"create","data":{"id":"2174add1-f7c8-44e3-bbf3-2d60b5ea8bc9","createdAt":"2020-01-23T12:53:18.084Z","updatedAt":"2020-01-23T12:53:18.084Z","archivedAt":null,"body":"Indeed, I think this is definitely an improvement over the previous version.","edited":false,"issueId":"539068e2-ae88-4d09-bd75-22eb4a59612f","userId":"aacdca22-6266-4c0a-ab3c-8fa70a26765c"},"type":"Comment","url":"https://linear.app/issue/LIN-1778/foo-bar#comment-77217de3-fb52-4dad-bb9a-b356beb93de8","createdAt":"2020-01-23T12:53:18.084Z","webhookTimestamp":1700000000000}"#;
        let sig = "9c34e3128d6cd5e6599e7f719eb87d4f6003c713d153ba2bb2e35ae13a654459";
        assert_eq!(sign(SECRET, body.as_bytes()), sig);
        assert_eq!(run_with(&[SECRET], Some(sig), body.as_bytes(), NOW), Ok(()));
    }

    #[test]
    fn several_secrets_any_match() {
        let b = body("1700000000000");
        let sig = sign("NEW", b.as_bytes());
        assert_eq!(
            run_with(&["OLD", "NEW"], Some(&sig), b.as_bytes(), NOW),
            Ok(())
        );
    }

    #[test]
    fn window_is_sixty_seconds_in_milliseconds() {
        assert_eq!(run(&body("1699999940000"), NOW), Ok(()));
        assert_eq!(run(&body("1700000060000"), NOW), Ok(()));
        assert_eq!(run(&body("1699999939999"), NOW), Err(Failure::Expired));
        assert_eq!(run(&body("1700000060001"), NOW), Err(Failure::FromFuture));
        // Seconds instead of milliseconds is ~53 years old.
        assert_eq!(run(&body("1700000000"), NOW), Err(Failure::Expired));
        assert_eq!(run(&body("0"), NOW), Err(Failure::Expired));
    }

    #[test]
    fn bad_timestamps() {
        for ts in [
            r#""1700000000000""#,
            "1700000000000.5",
            "1.7e12",
            "-1",
            "null",
            "true",
            "[]",
        ] {
            assert_eq!(run(&body(ts), NOW), Err(Failure::BadTimestamp), "{ts}");
        }
    }

    #[test]
    fn malformed_bodies() {
        // No timestamp in the body: the (unsigned) Linear-Timestamp header does not stand in.
        for b in [
            r#"{"action":"create","type":"Comment"}"#,
            r#"{"data":{"webhookTimestamp":1700000000000}}"#,
            "[1700000000000]",
            "1700000000000",
            "",
            "not json",
            r#"{"webhookTimestamp":1700000000000"#,
        ] {
            assert_eq!(run(b, NOW), Err(Failure::MalformedBody), "{b}");
        }
    }

    #[test]
    fn header_timestamp_is_ignored() {
        let b = body("1700000000000");
        let mut headers = HeaderMap::new();
        headers.insert(
            HEADER,
            HeaderValue::from_str(&sign(SECRET, b.as_bytes())).expect("hex"),
        );
        headers.insert("linear-timestamp", HeaderValue::from_static("1"));
        let req = Request {
            url: "",
            headers: &headers,
            body: b.as_bytes(),
        };
        assert_eq!(
            verify(&Keys::new(&[SECRET]), &req, NOW, Some(TOLERANCE)),
            Ok(())
        );
    }

    #[test]
    fn missing_header() {
        let b = body("1700000000000");
        assert_eq!(
            run_with(&[SECRET], None, b.as_bytes(), NOW),
            Err(Failure::MissingHeader)
        );
    }

    #[test]
    fn malformed_headers() {
        let b = body("1700000000000");
        let sig = sign(SECRET, b.as_bytes());
        for v in [
            sig.to_uppercase(),
            format!("sha256={sig}"),
            sig[..63].to_string(),
            format!("{sig}0"),
            format!(" {sig}"),
            String::new(),
        ] {
            assert_eq!(
                run_with(&[SECRET], Some(&v), b.as_bytes(), NOW),
                Err(Failure::MalformedHeader),
                "{v}"
            );
        }
    }

    #[test]
    fn signature_mismatch() {
        let b = body("1700000000000");
        let sig = sign("WRONG_SECRET", b.as_bytes());
        assert_eq!(
            run_with(&[SECRET], Some(&sig), b.as_bytes(), NOW),
            Err(Failure::SignatureMismatch)
        );
        // A stale, unauthenticated body is a mismatch before it is anything else.
        let stale = body("1");
        assert_eq!(
            run_with(&[SECRET], Some(&sig), stale.as_bytes(), NOW),
            Err(Failure::SignatureMismatch)
        );
    }

    proptest! {
        #[test]
        fn any_changed_body_byte_fails(i in any::<prop::sample::Index>(), b in any::<u8>()) {
            let good = body("1700000000000");
            let sig = sign(SECRET, good.as_bytes());
            let mut changed = good.into_bytes();
            let i = i.index(changed.len());
            prop_assume!(changed[i] != b);
            changed[i] = b;
            prop_assert!(run_with(&[SECRET], Some(&sig), &changed, NOW).is_err());
        }

        #[test]
        fn any_changed_signature_byte_fails(i in 0usize..64, b in any::<u8>()) {
            let good = body("1700000000000");
            let mut sig = sign(SECRET, good.as_bytes()).into_bytes();
            prop_assume!(sig[i] != b);
            sig[i] = b;
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_bytes(&sig) {
                headers.insert(HEADER, value);
            }
            let req = Request { url: "", headers: &headers, body: good.as_bytes() };
            prop_assert!(verify(&Keys::new(&[SECRET]), &req, NOW, Some(TOLERANCE)).is_err());
        }

        #[test]
        fn arbitrary_header_and_body_bytes_never_panic(
            v in prop::collection::vec(any::<u8>(), 0..100),
            body in prop::collection::vec(any::<u8>(), 0..100),
        ) {
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_bytes(&v) {
                headers.insert(HEADER, value);
            }
            let req = Request { url: "", headers: &headers, body: &body };
            let _ = verify(&Keys::new(&[SECRET]), &req, NOW, Some(TOLERANCE));
            // A signed arbitrary body reaches the JSON reading.
            let _ = run_with(&[SECRET], Some(&sign(SECRET, &body)), &body, NOW);
        }
    }
}
