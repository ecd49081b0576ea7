//! Mailgun: no header. The JSON body carries
//! `"signature": {"timestamp": "<unix s>", "token": "<random>", "signature": "<hex>"}`, where
//! `signature` = lowercase hex HMAC-SHA256 of `timestamp ‖ token` (no separator) with the HTTP
//! webhook signing key (verbatim). Subaccount events also carry `parent-signature`, the same
//! HMAC with the primary account's key: a configured key may match either.
//!
//! **Only `timestamp` and `token` are signed — the event data is not.** Anyone who has seen
//! one delivery can attach that signature object to any `event-data` until the timestamp
//! leaves the window. A passing request proves only that Mailgun issued that token recently;
//! receivers must treat `token` as a nonce (remember it for the window and refuse repeats),
//! and the route should be served over TLS only.
//!
//! Mailgun publishes no tolerance; we default to ±300 s (the usual webhook window). The
//! timestamp is the JSON string Mailgun sends (digits only); a JSON integer is accepted too,
//! since its decimal digits are exactly the text that was signed (floats are refused). Legacy
//! form-encoded webhooks (fields instead of a JSON object) are not supported.

use std::time::Duration;

use hmac::Mac;
use serde_json::{Map, Value};

use super::{Failure, Request, Window, check_window, hmac_sha256, parse_timestamp};

/// Not Mailgun's (it publishes none): the common five-minute window, both ways.
pub(super) const TOLERANCE: Duration = Duration::from_secs(300);

/// The body object holding the signature, and its fields.
const OBJECT: &str = "signature";
const TIMESTAMP: &str = "timestamp";
const TOKEN: &str = "token";
const SIGNATURE: &str = "signature";
const PARENT_SIGNATURE: &str = "parent-signature";

pub(super) struct Keys(Vec<Vec<u8>>);

impl Keys {
    pub(super) fn new(secrets: &[&str]) -> Keys {
        Keys(secrets.iter().map(|s| s.as_bytes().to_vec()).collect())
    }
}

/// A 64-digit lowercase hex signature, decoded.
fn lower_hex(s: &str) -> Result<Vec<u8>, Failure> {
    let ok = s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !ok {
        return Err(Failure::MalformedBody);
    }
    hex::decode(s).map_err(|_| Failure::MalformedBody)
}

/// The timestamp's text as signed: a string of digits, or a JSON integer's digits.
fn timestamp_text(v: &Value) -> Result<String, Failure> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => n
            .as_u64()
            .map(|n| n.to_string())
            .ok_or(Failure::BadTimestamp),
        _ => Err(Failure::BadTimestamp),
    }
}

fn string_field<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a str, Failure> {
    obj.get(name)
        .and_then(Value::as_str)
        .ok_or(Failure::MalformedBody)
}

pub(super) fn verify(
    keys: &Keys,
    req: &Request<'_>,
    now: i64,
    tolerance: Option<Duration>,
) -> Result<(), Failure> {
    let json: Value = serde_json::from_slice(req.body).map_err(|_| Failure::MalformedBody)?;
    let obj = json
        .get(OBJECT)
        .and_then(Value::as_object)
        .ok_or(Failure::MalformedBody)?;
    let ts_text = timestamp_text(obj.get(TIMESTAMP).ok_or(Failure::MalformedBody)?)?;
    let token = string_field(obj, TOKEN)?;
    if token.is_empty() {
        return Err(Failure::MalformedBody);
    }
    let mut signatures = vec![lower_hex(string_field(obj, SIGNATURE)?)?];
    if let Some(parent) = obj.get(PARENT_SIGNATURE) {
        signatures.push(lower_hex(parent.as_str().ok_or(Failure::MalformedBody)?)?);
    }
    let ts = parse_timestamp(&ts_text)?;
    let matched = keys.0.iter().any(|key| {
        let mac = hmac_sha256(key, &[ts_text.as_bytes(), token.as_bytes()]);
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
    use http::HeaderMap;
    use proptest::prelude::*;

    use super::*;

    // Generated (Mailgun publishes no vector): the docs' token, a test key (vector mailgun-01).
    const KEY: &str = "key-7d1f0e1c0b0a09080706050403020100";
    const TOKEN_V: &str = "e0b5477167110d68991efc6b9f89f0a11066af27834600e123";
    const NOW: i64 = 1_700_000_000;
    const SIG: &str = "cfa2544a635bf46253ee062b47ad83c28dc591285d12f90974da4995eb0e4fbe";

    fn sign(key: &str, ts: &str, token: &str) -> String {
        hex::encode(
            hmac_sha256(key.as_bytes(), &[ts.as_bytes(), token.as_bytes()])
                .finalize()
                .into_bytes(),
        )
    }

    fn body_with(sig_obj: &str, event: &str) -> String {
        format!(
            r#"{{"signature":{sig_obj},"event-data":{{"event":"{event}","id":"CPgfbmQMTCKtHW6uIWtuVe"}}}}"#
        )
    }

    fn body(ts: &str, token: &str, sig: &str) -> String {
        body_with(
            &format!(r#"{{"token":"{token}","timestamp":{ts},"signature":"{sig}"}}"#),
            "delivered",
        )
    }

    fn good() -> String {
        body(r#""1700000000""#, TOKEN_V, SIG)
    }

    fn run(keys: &[&str], body: &[u8], now: i64) -> Result<(), Failure> {
        let headers = HeaderMap::new();
        let req = Request {
            url: "https://example.com/webhooks",
            headers: &headers,
            body,
        };
        verify(&Keys::new(keys), &req, now, Some(TOLERANCE))
    }

    #[test]
    fn generated_example_passes() {
        assert_eq!(sign(KEY, "1700000000", TOKEN_V), SIG);
        assert_eq!(run(&[KEY], good().as_bytes(), NOW), Ok(()));
        assert_eq!(run(&["key-other", KEY], good().as_bytes(), NOW), Ok(()));
    }

    #[test]
    fn event_data_is_not_signed() {
        let sig_obj =
            format!(r#"{{"token":"{TOKEN_V}","timestamp":"1700000000","signature":"{SIG}"}}"#);
        assert_eq!(
            run(&[KEY], body_with(&sig_obj, "failed").as_bytes(), NOW),
            Ok(())
        );
    }

    #[test]
    fn integer_timestamp_is_its_digits() {
        assert_eq!(
            run(&[KEY], body("1700000000", TOKEN_V, SIG).as_bytes(), NOW),
            Ok(())
        );
    }

    #[test]
    fn parent_signature_matches_the_parent_key() {
        let parent = sign("key-parent", "1700000000", TOKEN_V);
        let sig_obj = format!(
            r#"{{"token":"{TOKEN_V}","timestamp":"1700000000","signature":"{SIG}","parent-signature":"{parent}"}}"#
        );
        let b = body_with(&sig_obj, "delivered");
        assert_eq!(run(&["key-parent"], b.as_bytes(), NOW), Ok(()));
        assert_eq!(run(&[KEY], b.as_bytes(), NOW), Ok(()));
        assert_eq!(
            run(&["key-other"], b.as_bytes(), NOW),
            Err(Failure::SignatureMismatch)
        );
    }

    #[test]
    fn malformed_bodies() {
        let no_token = body_with(r#"{"timestamp":"1700000000","signature":"00"}"#, "x");
        for b in [
            String::new(),
            "not json".to_string(),
            "[]".to_string(),
            r#"{"event-data":{}}"#.to_string(),
            r#"{"signature":"cfa2"}"#.to_string(),
            no_token,
            body(r#""1700000000""#, "", SIG),
            body(r#""1700000000""#, TOKEN_V, &SIG.to_uppercase()),
            body(r#""1700000000""#, TOKEN_V, &SIG[..62]),
            body(r#""1700000000""#, TOKEN_V, ""),
            body_with(
                &format!(
                    r#"{{"token":"{TOKEN_V}","timestamp":"1700000000","signature":"{SIG}","parent-signature":7}}"#
                ),
                "x",
            ),
            body_with(
                &format!(r#"{{"token":"{TOKEN_V}","signature":"{SIG}"}}"#),
                "x",
            ),
        ] {
            assert_eq!(
                run(&[KEY], b.as_bytes(), NOW),
                Err(Failure::MalformedBody),
                "{b}"
            );
        }
    }

    #[test]
    fn bad_timestamps() {
        for ts in [
            r#""""#,
            r#""1700000000.0""#,
            "1700000000.0",
            r#""-1""#,
            "-1",
            "null",
            r#"" 1700000000""#,
        ] {
            let b = body(ts, TOKEN_V, SIG);
            assert_eq!(
                run(&[KEY], b.as_bytes(), NOW),
                Err(Failure::BadTimestamp),
                "{ts}"
            );
        }
    }

    #[test]
    fn window_is_five_minutes_both_ways() {
        assert_eq!(run(&[KEY], good().as_bytes(), NOW + 300), Ok(()));
        assert_eq!(run(&[KEY], good().as_bytes(), NOW - 300), Ok(()));
        assert_eq!(
            run(&[KEY], good().as_bytes(), NOW + 301),
            Err(Failure::Expired)
        );
        assert_eq!(
            run(&[KEY], good().as_bytes(), NOW - 301),
            Err(Failure::FromFuture)
        );
    }

    #[test]
    fn signature_mismatch() {
        assert_eq!(
            run(&["key-wrong"], good().as_bytes(), NOW),
            Err(Failure::SignatureMismatch)
        );
        let token_changed = body(r#""1700000000""#, &format!("{TOKEN_V}4"), SIG);
        assert_eq!(
            run(&[KEY], token_changed.as_bytes(), NOW),
            Err(Failure::SignatureMismatch)
        );
        let ts_changed = body(r#""1700000001""#, TOKEN_V, SIG);
        assert_eq!(
            run(&[KEY], ts_changed.as_bytes(), NOW),
            Err(Failure::SignatureMismatch)
        );
    }

    proptest! {
        /// Every byte of the signed values and of the signature is covered (the event data,
        /// by design of the scheme, is not).
        #[test]
        fn any_changed_signed_byte_fails(
            i in 0usize..(10 + 50 + 64),
            // Printable ASCII that needs no JSON escape, so the body stays valid JSON.
            b in prop::sample::select((0x20u8..0x7f).filter(|b| *b != b'"' && *b != b'\\').collect::<Vec<_>>()),
        ) {
            let mut ts = b"1700000000".to_vec();
            let mut token = TOKEN_V.as_bytes().to_vec();
            let mut sig = SIG.as_bytes().to_vec();
            let target = if i < 10 {
                &mut ts[i]
            } else if i < 60 {
                &mut token[i - 10]
            } else {
                &mut sig[i - 60]
            };
            prop_assume!(*target != b);
            *target = b;
            let mut body = br#"{"signature":{"timestamp":""#.to_vec();
            body.extend(&ts);
            body.extend(br#"","token":""#);
            body.extend(&token);
            body.extend(br#"","signature":""#);
            body.extend(&sig);
            body.extend(br#""}}"#);
            prop_assert!(run(&[KEY], &body, NOW).is_err());
        }

        #[test]
        fn any_changed_body_byte_outside_event_data_fails(i in any::<prop::sample::Index>(), b in any::<u8>()) {
            let good = format!(r#"{{"signature":{{"timestamp":"1700000000","token":"{TOKEN_V}","signature":"{SIG}"}}}}"#);
            let mut changed = good.clone().into_bytes();
            let i = i.index(changed.len());
            prop_assume!(changed[i] != b);
            changed[i] = b;
            // Still valid only if it is the same JSON (e.g. whitespace where JSON allows it).
            let same = serde_json::from_slice::<Value>(&changed).ok()
                == serde_json::from_str::<Value>(&good).ok();
            prop_assert_eq!(run(&[KEY], &changed, NOW).is_ok(), same);
        }

        #[test]
        fn arbitrary_body_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = run(&[KEY], &body, NOW);
        }

        #[test]
        fn arbitrary_signature_objects_never_panic(ts in ".{0,20}", token in ".{0,60}", sig in ".{0,70}") {
            let obj = serde_json::json!({"signature": {"timestamp": ts, "token": token, "signature": sig}});
            let _ = run(&[KEY], obj.to_string().as_bytes(), NOW);
        }
    }
}
