//! Square: `x-square-hmacsha256-signature: <base64>` = HMAC-SHA256 of
//! `notification_url ‖ body` (no separator), standard padded base64, with the subscription's
//! signature key used verbatim (it looks like base64url but is not decoded), like the Square
//! SDK's `WebhooksHelper.verifySignature`.
//!
//! The notification URL is [`Request::url`]: the URL exactly as registered in the Square
//! subscription (in the server, the operator-set public URL of the route, not one rebuilt from
//! the request — a proxy's host, a trailing `/` or a re-encoding breaks the signature). No
//! variants are tried. No timestamp is signed; the legacy `x-square-signature` (HMAC-SHA1) is
//! not accepted.

use base64::Engine;
use hmac::Mac;

use super::{Failure, Request, header, hmac_sha256};

const HEADER: &str = "x-square-hmacsha256-signature";

pub(super) use super::mac::Secrets as Keys;

pub(super) fn verify(keys: &Keys, req: &Request<'_>) -> Result<(), Failure> {
    let value = header(req.headers, HEADER)?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|_| Failure::MalformedHeader)?;
    if sig.len() != 32 {
        return Err(Failure::MalformedHeader);
    }
    let matched = keys.keys().any(|key| {
        hmac_sha256(key, &[req.url.as_bytes(), req.body])
            .verify_slice(&sig)
            .is_ok()
    });
    if matched {
        Ok(())
    } else {
        Err(Failure::SignatureMismatch)
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};
    use proptest::prelude::*;

    use super::*;

    // The Square SDK's integration-test example (webhooks.test.ts).
    const KEY: &str = "Ibxx_5AKakO-3qeNVR61Dw";
    const URL: &str = "https://webhook.site/679a4f3a-dcfa-49ee-bac5-9d0edad886b9";
    const BODY: &str = r#"{"merchant_id":"MLEFBHHSJGVHD","type":"webhooks.test_notification","event_id":"ac3ac95b-f97d-458c-a6e6-18981597e05f","created_at":"2022-07-13T20:30:59.037339943Z","data":{"type":"webhooks","id":"bc368e64-01aa-407e-b46e-3231809b1129"}}"#;
    const SIG: &str = "GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4=";

    fn run(keys: &[&str], sig: Option<&[u8]>, url: &str, body: &[u8]) -> Result<(), Failure> {
        let mut headers = HeaderMap::new();
        if let Some(v) = sig
            && let Ok(v) = HeaderValue::from_bytes(v)
        {
            headers.insert(HEADER, v);
        }
        let req = Request {
            url,
            headers: &headers,
            body,
        };
        verify(&Keys::new(keys), &req)
    }

    #[test]
    fn published_examples_pass() {
        assert_eq!(
            run(&[KEY], Some(SIG.as_bytes()), URL, BODY.as_bytes()),
            Ok(())
        );
        assert_eq!(
            run(
                &["signature-key"],
                Some(b"W3FlCNk5IA3ZQ2LHTWoajvzfaDu/OwY2tNHIHC3IUOA="),
                "https://webhook.site/webhooks",
                br#"{"data":{"type":"webhooks","id":"fake_id"}}"#,
            ),
            Ok(())
        );
        assert_eq!(
            run(
                &["MCmhFRxGX82xMwg5FsaoQA", KEY],
                Some(SIG.as_bytes()),
                URL,
                BODY.as_bytes()
            ),
            Ok(())
        );
    }

    #[test]
    fn missing_header() {
        assert_eq!(
            run(&[KEY], None, URL, BODY.as_bytes()),
            Err(Failure::MissingHeader)
        );
    }

    #[test]
    fn malformed_headers() {
        for v in [
            "",
            "1z2n3DEJJiUPKcPzQo1ftvbxGdw=",
            "GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4",
            "GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW_S6vkZ9_2N4=",
            "GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N5=",
            " GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4=",
            "sha256=GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4=",
        ] {
            assert_eq!(
                run(&[KEY], Some(v.as_bytes()), URL, BODY.as_bytes()),
                Err(Failure::MalformedHeader),
                "{v}"
            );
        }
    }

    #[test]
    fn signature_mismatch() {
        let mismatch = Err(Failure::SignatureMismatch);
        let sig = Some(SIG.as_bytes());
        assert_eq!(
            run(&["MCmhFRxGX82xMwg5FsaoQA"], sig, URL, BODY.as_bytes()),
            mismatch
        );
        // The URL is signed: one character, a trailing slash, the scheme, a port.
        for url in [
            "https://webhook.site/79a4f3a-dcfa-49ee-bac5-9d0edad886b9",
            "https://webhook.site/679a4f3a-dcfa-49ee-bac5-9d0edad886b9/",
            "http://webhook.site/679a4f3a-dcfa-49ee-bac5-9d0edad886b9",
            "https://webhook.site:443/679a4f3a-dcfa-49ee-bac5-9d0edad886b9",
            "",
        ] {
            assert_eq!(run(&[KEY], sig, url, BODY.as_bytes()), mismatch, "{url}");
        }
        let changed = BODY.replace("2022-07-13", "2022-06-13");
        assert_eq!(run(&[KEY], sig, URL, changed.as_bytes()), mismatch);
    }

    proptest! {
        #[test]
        fn any_changed_body_byte_fails(i in any::<prop::sample::Index>(), b in any::<u8>()) {
            let mut body = BODY.as_bytes().to_vec();
            let i = i.index(body.len());
            prop_assume!(body[i] != b);
            body[i] = b;
            prop_assert!(run(&[KEY], Some(SIG.as_bytes()), URL, &body).is_err());
        }

        #[test]
        fn any_changed_url_byte_fails(i in 0usize..URL.len(), b in 0x20u8..0x7f) {
            let mut url = URL.as_bytes().to_vec();
            prop_assume!(url[i] != b);
            url[i] = b;
            let url = String::from_utf8(url).expect("ascii");
            prop_assert!(run(&[KEY], Some(SIG.as_bytes()), &url, BODY.as_bytes()).is_err());
        }

        #[test]
        fn any_changed_signature_byte_fails(i in 0usize..SIG.len(), b in any::<u8>()) {
            let mut sig = SIG.as_bytes().to_vec();
            prop_assume!(sig[i] != b);
            sig[i] = b;
            prop_assert!(run(&[KEY], Some(&sig), URL, BODY.as_bytes()).is_err());
        }

        #[test]
        fn arbitrary_header_bytes_never_panic(v in prop::collection::vec(any::<u8>(), 0..100)) {
            let _ = run(&[KEY], Some(&v), URL, BODY.as_bytes());
        }
    }
}
