//! Twilio: `X-Twilio-Signature: <base64>` = HMAC-SHA1 with the account auth token (verbatim)
//! of the URL Twilio called, followed, for form posts, by every body parameter as
//! `name ‖ value`, sorted by name (then value; repeated pairs once), like twilio-node's
//! `getExpectedTwilioSignature`. Parameters are the form-urlencoded body decoded
//! (`form_urlencoded`: `+` is a space, invalid UTF-8 becomes U+FFFD as in the SDKs), sorted by
//! UTF-16 code units as JavaScript's `sort()` does.
//!
//! JSON bodies: Twilio adds `bodySHA256=<hex SHA-256 of the body>` to the query and signs the
//! URL alone; like twilio-node's `validateRequestWithBody` the signature must match **and**
//! the body must hash to that value. The mode is chosen by the URL (a `bodySHA256` query
//! parameter), as in twilio-node, never by the request's `Content-Type`; a repeated
//! `bodySHA256` is refused.
//!
//! Note what the form scheme does *not* bind: it signs decoded parameters, not body bytes, so
//! parameter order and equivalent encodings (`%2B`/`%2b`, `+`/`%20`) may change without
//! breaking the signature; forward the body to targets that parse it as a form.
//!
//! The URL is [`Request::url`] (in the server, the route's operator-set public URL — the one
//! configured in Twilio — plus the query Twilio added). Twilio's own backend is inconsistent
//! about ports, and the SDKs re-serialise the URL, so like twilio-node's `validateRequest` we
//! try a few spellings of that same URL and accept a match on any:
//! * the port: as given, removed, and the scheme's default added (`:443`/`:80`): twilio-node
//!   tries the last two because Twilio signs sometimes with and sometimes without it;
//! * the query: as given, and with `'` as `%27`. The first is what Twilio signs (twilio-node
//!   issues #1059/#1183: the WHATWG `new URL()` re-encoding of `'` broke validation); the
//!   second is twilio-node's own WHATWG serialisation, which its test vectors are computed
//!   with. twilio-node gets the first back with a fallback through Node's legacy
//!   `querystring` re-encoding, which also rewrites `+` to `%20` and other escapes; we do not
//!   copy that re-encoding: keeping the query as configured is what it was trying to reach.
//!
//! Every spelling keeps the scheme, user info, host, path and query; only the port and the
//! escaping of `'` vary, so a signature made for another host or path never passes. Removing
//! a non-default port (twilio-node does, for receivers that see another port than Twilio
//! called) means a delivery signed for `host/path` also passes for `host:port/path`: the same
//! account's token, the same host.
//! No timestamp is signed: replay protection has to come from elsewhere (e.g. the `CallSid` /
//! `MessageSid` as an idempotency key).

use std::cmp::Ordering;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Digest;

use super::{Failure, Request, header};

const HEADER: &str = "x-twilio-signature";

/// The query parameter carrying the body hash of JSON deliveries.
const BODY_HASH_PARAM: &str = "bodySHA256";

pub(super) use super::mac::Secrets as Keys;

pub(super) fn verify(keys: &Keys, req: &Request<'_>) -> Result<(), Failure> {
    let value = header(req.headers, HEADER)?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|_| Failure::MalformedHeader)?;
    if sig.len() != 20 {
        return Err(Failure::MalformedHeader);
    }
    let body_hash = body_hash_param(req.url)?;
    // What follows the URL in the signed string.
    let params = match body_hash {
        Some(_) => String::new(),
        None => sorted_params(req.body),
    };
    let urls = url_variants(req.url);
    let matched = keys.keys().any(|key| {
        urls.iter().any(|url| {
            // HMAC accepts keys of every length, so this cannot fail.
            #[allow(clippy::expect_used)]
            let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(key)
                .expect("HMAC accepts any key length");
            mac.update(url.as_bytes());
            mac.update(params.as_bytes());
            mac.verify_slice(&sig).is_ok()
        })
    });
    if !matched {
        return Err(Failure::SignatureMismatch);
    }
    if let Some(expected) = body_hash {
        // Not a secret: the hash of the body, compared as the lowercase hex Twilio sends.
        if hex::encode(sha2::Sha256::digest(req.body)) != expected {
            return Err(Failure::SignatureMismatch);
        }
    }
    Ok(())
}

/// The query string of `url` (after `?`, before any `#`).
fn query(url: &str) -> Option<&str> {
    let rest = &url[url.find('?')? + 1..];
    Some(rest.split('#').next().unwrap_or(rest))
}

/// The `bodySHA256` value when the URL has one (a JSON delivery); a repeated one fails.
fn body_hash_param(url: &str) -> Result<Option<String>, Failure> {
    let Some(q) = query(url) else { return Ok(None) };
    let mut found = None;
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        if k == BODY_HASH_PARAM && found.replace(v.into_owned()).is_some() {
            return Err(Failure::SignatureMismatch);
        }
    }
    Ok(found)
}

fn utf16_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// The decoded form parameters as signed: `name ‖ value` for each distinct pair, sorted by
/// name, then value.
fn sorted_params(body: &[u8]) -> String {
    let mut pairs: Vec<_> = form_urlencoded::parse(body).collect();
    pairs.sort_by(|a, b| utf16_cmp(&a.0, &b.0).then_with(|| utf16_cmp(&a.1, &b.1)));
    pairs.dedup();
    pairs.iter().fold(String::new(), |mut acc, (k, v)| {
        acc.push_str(k);
        acc.push_str(v);
        acc
    })
}

/// `url` with its port removed and with the port (or the scheme's default) written out;
/// `None` if it does not parse as an absolute URL.
fn port_forms(url: &str) -> Option<(String, String)> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?;
    let auth = authority.as_str();
    let userinfo = auth.rfind('@').map_or("", |i| &auth[..=i]);
    let host = authority.host();
    let rest = uri.path_and_query().map_or("", |pq| pq.as_str());
    let without = format!("{scheme}://{userinfo}{host}{rest}");
    let port = authority.port_u16().or(match scheme {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    });
    let with = match port {
        Some(p) => format!("{scheme}://{userinfo}{host}:{p}{rest}"),
        None => without.clone(),
    };
    Some((without, with))
}

/// `url` with `'` in the query written `%27`, as WHATWG URL serialisation does.
fn quote_encoded(url: &str) -> Option<String> {
    let start = url.find('?')?;
    let end = url[start..].find('#').map_or(url.len(), |i| start + i);
    let q = &url[start..end];
    q.contains('\'')
        .then(|| format!("{}{}{}", &url[..start], q.replace('\'', "%27"), &url[end..]))
}

/// The spellings of `url` to try, first the one given, without repeats.
fn url_variants(url: &str) -> Vec<String> {
    let mut forms = vec![url.to_string()];
    if let Some((without, with)) = port_forms(url) {
        forms.push(without);
        forms.push(with);
    }
    let mut out: Vec<String> = Vec::with_capacity(forms.len() * 2);
    for f in forms {
        let encoded = quote_encoded(&f);
        for v in std::iter::once(f).chain(encoded) {
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use http::{HeaderMap, HeaderValue};
    use proptest::prelude::*;

    use super::*;

    // twilio-node spec/validation.spec.js (Twilio's documented example).
    const TOKEN: &str = "12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const FORM: &str = "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212";
    const SIG: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
    const JSON_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
    const JSON_BODY: &str = r#"{"property": "value", "boolean": true}"#;
    const JSON_SIG: &str = "a9nBmqA0ju/hNViExpshrM61xv4=";

    fn run(tokens: &[&str], sig: Option<&[u8]>, url: &str, body: &[u8]) -> Result<(), Failure> {
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
        verify(&Keys::new(tokens), &req)
    }

    fn sign(token: &str, data: &str) -> String {
        #[allow(clippy::expect_used)]
        let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(token.as_bytes()).expect("any key");
        mac.update(data.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    #[test]
    fn documented_example_passes() {
        assert_eq!(
            sign(
                TOKEN,
                "https://mycompany.com/myapp.php?foo=1&bar=2CallSidCA1234567890ABCDECaller+14158675309Digits1234From+14158675309To+18005551212"
            ),
            SIG
        );
        assert_eq!(
            run(&[TOKEN], Some(SIG.as_bytes()), URL, FORM.as_bytes()),
            Ok(())
        );
        assert_eq!(
            run(
                &["other", TOKEN],
                Some(SIG.as_bytes()),
                URL,
                FORM.as_bytes()
            ),
            Ok(())
        );
    }

    #[test]
    fn parameter_order_does_not_matter_and_repeats_are_sorted() {
        let reordered = "To=%2B18005551212&From=%2B14158675309&Digits=1234&Caller=%2B14158675309&CallSid=CA1234567890ABCDE";
        assert_eq!(
            run(&[TOKEN], Some(SIG.as_bytes()), URL, reordered.as_bytes()),
            Ok(())
        );
        // twilio-node: repeated key, values sorted (and de-duplicated).
        let body =
            "MessagingBinding.Address=%2B1415xxxxxxx&MessagingBinding.Address=%2B1325xxxxxxx";
        let sig = "83O6e2vORAoJHUNzJjDWN1jz+BA=";
        assert_eq!(
            run(&[TOKEN], Some(sig.as_bytes()), URL, body.as_bytes()),
            Ok(())
        );
        let twice = format!("{body}&MessagingBinding.Address=%2B1325xxxxxxx");
        assert_eq!(
            run(&[TOKEN], Some(sig.as_bytes()), URL, twice.as_bytes()),
            Ok(())
        );
    }

    #[test]
    fn params_sort_by_utf16_like_javascript() {
        // U+1F600 sorts after U+FF61 by code point but before it in UTF-16 (0xD83D…).
        assert_eq!(
            sorted_params("%EF%BD%A1=b&%F0%9F%98%80=a".as_bytes()),
            "\u{1F600}a\u{FF61}b"
        );
        assert_eq!(sorted_params(b"b=2&a=2&a=1&a=1&c"), "a1a2b2c");
    }

    #[test]
    fn url_spellings_of_twilio_node() {
        let form = FORM.as_bytes();
        // Port removed; port kept; default port added; user info kept (validation.spec.js).
        let cases = [
            ("https://mycompany.com:1234/myapp.php?foo=1&bar=2", SIG),
            (
                "http://mycompany.com:1234/myapp.php?foo=1&bar=2",
                "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=",
            ),
            (
                "http://mycompany.com/myapp.php?foo=1&bar=2",
                "0ZXoZLH/DfblKGATFgpif+LLRf4=",
            ),
            (
                "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2",
                "CukzLTc1tT5dXEDIHm/tKBanW10=",
            ),
            // `'` signed as `%27` (twilio-node's WHATWG form).
            (
                "https://mycompany.com/myapp.php?foo=1&bar=2&Body=It's+amazing",
                "TfZzewPq8wqrGlMfyAud8+/IvJ0=",
            ),
        ];
        for (url, sig) in cases {
            assert_eq!(
                run(&[TOKEN], Some(sig.as_bytes()), url, form),
                Ok(()),
                "{url}"
            );
        }
        // `'` signed as is (what Twilio's backend does, twilio-node #1059).
        let url = "https://example.com/path?test=foo'bar";
        let sig = sign(TOKEN, url);
        assert_eq!(run(&[TOKEN], Some(sig.as_bytes()), url, b""), Ok(()));
        // An explicit :443 given, signed without it.
        let sig = sign(TOKEN, "https://example.com/path");
        assert_eq!(
            run(
                &[TOKEN],
                Some(sig.as_bytes()),
                "https://example.com:443/path",
                b""
            ),
            Ok(())
        );
    }

    #[test]
    fn variants_list() {
        assert_eq!(
            url_variants("https://a.com/p?x='"),
            [
                "https://a.com/p?x='",
                "https://a.com/p?x=%27",
                "https://a.com:443/p?x='",
                "https://a.com:443/p?x=%27",
            ]
        );
        assert_eq!(
            url_variants("http://u@[::1]:8080/p#f'"),
            [
                "http://u@[::1]:8080/p#f'",
                "http://u@[::1]/p",
                "http://u@[::1]:8080/p"
            ]
        );
        assert_eq!(
            url_variants("not a url ?'"),
            ["not a url ?'", "not a url ?%27"]
        );
        assert_eq!(url_variants(""), [""]);
    }

    #[test]
    fn json_body_with_body_hash() {
        let ok = run(
            &[TOKEN],
            Some(JSON_SIG.as_bytes()),
            JSON_URL,
            JSON_BODY.as_bytes(),
        );
        assert_eq!(ok, Ok(()));
        // `{}` with the explicit :443 spelling (validation.spec.js).
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256=44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
        assert_eq!(
            run(&[TOKEN], Some(b"Ldidvp12m26NI7eqEvxnEpkd9Hc="), url, b"{}"),
            Ok(())
        );
    }

    #[test]
    fn missing_header() {
        assert_eq!(
            run(&[TOKEN], None, URL, FORM.as_bytes()),
            Err(Failure::MissingHeader)
        );
    }

    #[test]
    fn malformed_headers() {
        for v in [
            "",
            "WRONG_SIGNATURE",
            "RSOYDt4T1cUTdK1PDd93/VVr8B8",
            "RSOYDt4T1cUTdK1PDd93_VVr8B8=",
            "RSOYDt4T1cUTdK1PDd93/VVr8B9=",
            "GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4=",
            " RSOYDt4T1cUTdK1PDd93/VVr8B8=",
        ] {
            assert_eq!(
                run(&[TOKEN], Some(v.as_bytes()), URL, FORM.as_bytes()),
                Err(Failure::MalformedHeader),
                "{v}"
            );
        }
    }

    #[test]
    fn signature_mismatch() {
        let mismatch = Err(Failure::SignatureMismatch);
        let sig = Some(SIG.as_bytes());
        assert_eq!(run(&["54321"], sig, URL, FORM.as_bytes()), mismatch);
        let tampered = FORM.replace("Digits=1234", "Digits=1235");
        assert_eq!(run(&[TOKEN], sig, URL, tampered.as_bytes()), mismatch);
        let extra = format!("{FORM}&Extra=1");
        assert_eq!(run(&[TOKEN], sig, URL, extra.as_bytes()), mismatch);
        for url in [
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            "https://mycompany.com/myapp.php?bar=2&foo=1",
            "https://mycompany.com/myapp.php/?foo=1&bar=2",
            "https://evil.com/myapp.php?foo=1&bar=2",
            "http://mycompany.com/myapp.php?foo=1&bar=2",
            "",
        ] {
            assert_eq!(run(&[TOKEN], sig, url, FORM.as_bytes()), mismatch, "{url}");
        }
        // JSON body but no bodySHA256 in the URL: the body is read as a form and fails.
        assert_eq!(run(&[TOKEN], sig, URL, JSON_BODY.as_bytes()), mismatch);
        // URL signature fine, body changed.
        let changed = JSON_BODY.replace("true", "false");
        let json_sig = Some(JSON_SIG.as_bytes());
        assert_eq!(
            run(&[TOKEN], json_sig, JSON_URL, changed.as_bytes()),
            mismatch
        );
        // A second bodySHA256.
        let twice = format!("{JSON_URL}&bodySHA256=00");
        let sig_twice = sign(TOKEN, &twice);
        assert_eq!(
            run(
                &[TOKEN],
                Some(sig_twice.as_bytes()),
                &twice,
                JSON_BODY.as_bytes()
            ),
            mismatch
        );
        // bodySHA256 in upper case is not what Twilio sends.
        let upper = JSON_URL.replace("0a1ff7634d9ab3b95db5", "0A1FF7634D9AB3B95DB5");
        let sig_upper = sign(TOKEN, &upper);
        assert_eq!(
            run(
                &[TOKEN],
                Some(sig_upper.as_bytes()),
                &upper,
                JSON_BODY.as_bytes()
            ),
            mismatch
        );
    }

    fn decoded(body: &[u8]) -> BTreeSet<(String, String)> {
        form_urlencoded::parse(body).into_owned().collect()
    }

    proptest! {
        /// A form body verifies after a change exactly when it decodes to the same parameters.
        #[test]
        fn changed_form_byte_fails_unless_same_params(i in any::<prop::sample::Index>(), b in any::<u8>()) {
            let mut body = FORM.as_bytes().to_vec();
            let i = i.index(body.len());
            prop_assume!(body[i] != b);
            body[i] = b;
            let same = decoded(&body) == decoded(FORM.as_bytes());
            prop_assert_eq!(run(&[TOKEN], Some(SIG.as_bytes()), URL, &body).is_ok(), same);
        }

        #[test]
        fn any_changed_json_body_byte_fails(i in any::<prop::sample::Index>(), b in any::<u8>()) {
            let mut body = JSON_BODY.as_bytes().to_vec();
            let i = i.index(body.len());
            prop_assume!(body[i] != b);
            body[i] = b;
            prop_assert!(run(&[TOKEN], Some(JSON_SIG.as_bytes()), JSON_URL, &body).is_err());
        }

        #[test]
        fn any_changed_signature_byte_fails(i in 0usize..SIG.len(), b in any::<u8>()) {
            let mut sig = SIG.as_bytes().to_vec();
            prop_assume!(sig[i] != b);
            sig[i] = b;
            prop_assert!(run(&[TOKEN], Some(&sig), URL, FORM.as_bytes()).is_err());
        }

        #[test]
        fn any_changed_url_byte_fails(i in 0usize..URL.len(), b in 0x21u8..0x7f) {
            let mut url = URL.as_bytes().to_vec();
            prop_assume!(url[i] != b);
            url[i] = b;
            let url = String::from_utf8(url).expect("ascii");
            // An upper-case scheme letter spells the same URL; nothing else may pass.
            let same = url[..5].eq_ignore_ascii_case("https") && url[5..] == URL[5..];
            prop_assert_eq!(run(&[TOKEN], Some(SIG.as_bytes()), &url, FORM.as_bytes()).is_ok(), same);
        }

        #[test]
        fn arbitrary_inputs_never_panic(
            v in prop::collection::vec(any::<u8>(), 0..64),
            url in "\\PC{0,80}",
            body in prop::collection::vec(any::<u8>(), 0..100),
        ) {
            let _ = run(&[TOKEN], Some(&v), &url, &body);
            let _ = run(&[TOKEN], Some(SIG.as_bytes()), &url, &body);
        }
    }
}
