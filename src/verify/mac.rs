//! Pieces shared by the schemes that send one HMAC of content built from the request (Stripe,
//! Slack, Shopify, Logto, PagerDuty, Typeform, Lemon Squeezy, Intercom, Zoom, Twitch, Square,
//! Twilio): the secret list
//! (any match passes, for rotation) and strict decoders for the encodings their signatures use.
//! Each decoder accepts exactly what the provider's SDK or documented sample compares equal, so
//! a value of the wrong length or case is `malformed_header`, never a near miss.

use base64::Engine;
use hmac::Mac;

use super::{Failure, hmac_sha256};

/// Signing secrets used verbatim: the UTF-8 bytes of the configured string are the HMAC key
/// (none of these providers hex- or base64-decode their secrets).
pub(super) struct Secrets(Vec<Vec<u8>>);

impl Secrets {
    pub(super) fn new(secrets: &[&str]) -> Secrets {
        Secrets(secrets.iter().map(|s| s.as_bytes().to_vec()).collect())
    }

    /// The raw keys, for schemes with another hash than SHA-256.
    pub(super) fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().map(Vec::as_slice)
    }

    /// Whether HMAC-SHA256 of the concatenated `content` under any secret equals any of `sigs`,
    /// compared in constant time.
    pub(super) fn any_sha256(&self, content: &[&[u8]], sigs: &[[u8; 32]]) -> bool {
        self.keys().any(|key| {
            let mac = hmac_sha256(key, content);
            sigs.iter().any(|sig| mac.clone().verify_slice(sig).is_ok())
        })
    }
}

/// Exactly `N` bytes written as `2N` lowercase hex digits: what a provider's `digest('hex')`
/// produces and its sample code compares as a string (uppercase would fail there).
pub(super) fn lower_hex<const N: usize>(s: &str) -> Result<[u8; N], Failure> {
    if !s
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(Failure::MalformedHeader);
    }
    any_case_hex(s).ok_or(Failure::MalformedHeader)
}

/// Exactly `N` bytes written as `2N` hex digits of either case (for SDKs that hex-decode
/// before comparing).
pub(super) fn any_case_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    // `decode_to_slice` requires exactly `2N` digits.
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// A SHA-256 MAC as canonical padded standard base64 (44 characters): what `digest('base64')`
/// / `Base64.strict_encode64` produce and the SDKs compare as a string.
pub(super) fn base64_sha256(s: &str) -> Result<[u8; 32], Failure> {
    if s.len() != 44 {
        return Err(Failure::MalformedHeader);
    }
    // The standard engine refuses missing padding and non-zero trailing bits, so only the one
    // canonical spelling of each MAC decodes.
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|_| Failure::MalformedHeader)?;
    bytes.try_into().map_err(|_| Failure::MalformedHeader)
}

/// Test helpers for the schemes' unit tests.
#[cfg(test)]
pub(super) mod testing {
    use hmac::Mac;
    use http::{HeaderMap, HeaderName, HeaderValue};

    use crate::verify::{Failure, Options, Request, SchemeName, Verifier};

    /// HMAC-SHA256 of the concatenated `parts`.
    pub(crate) fn sha256(key: &str, parts: &[&[u8]]) -> [u8; 32] {
        super::hmac_sha256(key.as_bytes(), parts)
            .finalize()
            .into_bytes()
            .into()
    }

    /// Headers from name/value pairs (test values are valid header values).
    pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("test header name"),
                HeaderValue::from_str(v).expect("test header value"),
            );
        }
        h
    }

    /// Runs `scheme` with `secrets` and `tolerance` (`None`: the scheme's default).
    pub(crate) fn run(
        scheme: SchemeName,
        secrets: &[&str],
        tolerance: Option<u64>,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<(), Failure> {
        let v = Verifier::new(
            scheme,
            secrets,
            tolerance.map(std::time::Duration::from_secs),
            &Options::default(),
        )
        .expect("test secrets are valid");
        v.verify(
            &Request {
                url: "https://example.com/hooks",
                headers,
                body,
            },
            now,
        )
    }

    /// `base` with header `name` set to the raw `value`, when HTTP can carry it.
    pub(crate) fn with_raw(base: &HeaderMap, name: &str, value: &[u8]) -> Option<HeaderMap> {
        let mut h = base.clone();
        h.insert(
            HeaderName::from_bytes(name.as_bytes()).ok()?,
            HeaderValue::from_bytes(value).ok()?,
        );
        Some(h)
    }

    /// Flips bits of byte `i % len` with `delta` (non-zero), so the result always differs.
    pub(crate) fn flip(bytes: &mut [u8], i: usize, delta: u8) {
        let n = bytes.len();
        if n > 0 {
            bytes[i % n] ^= delta.max(1);
        }
    }

    #[test]
    fn hex_and_base64_are_strict() {
        use super::{Failure::MalformedHeader, any_case_hex, base64_sha256, lower_hex};
        assert_eq!(lower_hex::<2>("0aff"), Ok([0x0a, 0xff]));
        assert_eq!(lower_hex::<2>("0aFF"), Err(MalformedHeader));
        assert_eq!(lower_hex::<2>("0af"), Err(MalformedHeader));
        assert_eq!(lower_hex::<2>("0aff00"), Err(MalformedHeader));
        assert_eq!(lower_hex::<2>(""), Err(MalformedHeader));
        assert_eq!(lower_hex::<2>("+aff"), Err(MalformedHeader));
        assert_eq!(any_case_hex::<2>("0aFF"), Some([0x0a, 0xff]));
        assert_eq!(any_case_hex::<2>("0aF"), None);
        let mac = sha256("k", &[b"x"]);
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, mac);
        assert_eq!(base64_sha256(&b64), Ok(mac));
        assert_eq!(
            base64_sha256(b64.trim_end_matches('=')),
            Err(MalformedHeader)
        );
        assert_eq!(base64_sha256(""), Err(MalformedHeader));
        // The last digit carries 2 unused bits: a non-zero one is a non-canonical spelling.
        let mut bytes = b64.into_bytes();
        let last = bytes.len() - 2;
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let pos = alphabet
            .iter()
            .position(|c| *c == bytes[last])
            .expect("base64 digit");
        bytes[last] = alphabet[pos ^ 1];
        let odd = String::from_utf8(bytes).expect("ascii");
        assert_eq!(base64_sha256(&odd), Err(MalformedHeader));
    }

    #[test]
    fn any_secret_matches() {
        let s = super::Secrets::new(&["old", "new"]);
        assert!(s.any_sha256(&[b"body"], &[sha256("new", &[b"body"])]));
        assert!(s.any_sha256(&[b"bo", b"dy"], &[[0; 32], sha256("old", &[b"body"])]));
        assert!(!s.any_sha256(&[b"body"], &[sha256("other", &[b"body"])]));
        assert!(!s.any_sha256(&[b"body"], &[]));
    }
}
