//! `generic-hmac`: an HMAC scheme described by options, for senders without a preset.
//!
//! The header named by `header` carries `prefix` + the encoded (`hex` or `base64`) HMAC
//! (`sha1`, `sha256` or `sha512`, keyed with the secret's UTF-8 bytes) of the signed content.
//! The content is `template` with its placeholders replaced by raw bytes:
//!
//! | placeholder   | bytes                                                            |
//! |---------------|------------------------------------------------------------------|
//! | `{body}`      | the body as received (the template must contain it)              |
//! | `{timestamp}` | the value of `timestamp_header`, as sent (strict unix seconds)   |
//! | `{id}`        | the value of `id_header`, as sent                                |
//! | `{url}`       | the URL the sender called, as it signed it                       |
//!
//! `{{` and `}}` are literal braces. Slack is `v0:{timestamp}:{body}`, hex, prefix `v0=`;
//! Shopify is `{body}`, base64; Square is `{url}{body}`, base64.
//!
//! Everything is checked when the config is loaded (unknown placeholders, `{timestamp}`
//! without `timestamp_header` or the reverse, no `{body}`) and the template is parsed once into
//! parts. With a timestamp the window is ±5 minutes unless the route sets a tolerance; without
//! one there is none. Hex signatures are accepted in either case; base64 is the standard
//! alphabet with padding; the decoded length must be the digest's.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac, digest::KeyInit};
use http::HeaderName;

use super::{
    BadConfig, BadOption, Failure, Options, Request, Window, check_window, header, header_option,
    parse_timestamp,
};

/// The window when a timestamp is signed and the route sets none: the common provider value.
const TOLERANCE: Duration = Duration::from_secs(300);

/// The hash under the HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacAlgorithm {
    /// HMAC-SHA1 (legacy senders only).
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

impl HmacAlgorithm {
    /// Every algorithm, by its config name.
    pub const ALL: &'static [(&'static str, HmacAlgorithm)] = &[
        ("sha1", HmacAlgorithm::Sha1),
        ("sha256", HmacAlgorithm::Sha256),
        ("sha512", HmacAlgorithm::Sha512),
    ];

    /// Looks an algorithm up by its config name.
    pub fn from_name(name: &str) -> Option<HmacAlgorithm> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
    }

    /// Whether the HMAC of `content` with `key` is `sig` (compared in constant time).
    fn matches(self, key: &[u8], content: &[&[u8]], sig: &[u8]) -> bool {
        match self {
            HmacAlgorithm::Sha1 => mac_matches::<Hmac<sha1::Sha1>>(key, content, sig),
            HmacAlgorithm::Sha256 => mac_matches::<Hmac<sha2::Sha256>>(key, content, sig),
            HmacAlgorithm::Sha512 => mac_matches::<Hmac<sha2::Sha512>>(key, content, sig),
        }
    }

    fn digest_len(self) -> usize {
        match self {
            HmacAlgorithm::Sha1 => 20,
            HmacAlgorithm::Sha256 => 32,
            HmacAlgorithm::Sha512 => 64,
        }
    }
}

/// How the signature is written in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureEncoding {
    /// Hex digits, either case.
    Hex,
    /// Standard base64 with padding.
    Base64,
}

impl SignatureEncoding {
    /// Every encoding, by its config name.
    pub const ALL: &'static [(&'static str, SignatureEncoding)] = &[
        ("hex", SignatureEncoding::Hex),
        ("base64", SignatureEncoding::Base64),
    ];

    /// Looks an encoding up by its config name.
    pub fn from_name(name: &str) -> Option<SignatureEncoding> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, e)| *e)
    }
}

/// The `generic-hmac` options (the signature header is [`Options::header`]). Field names are
/// the names [`super::BadOption`] uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericHmac {
    /// The hash under the HMAC.
    pub algorithm: HmacAlgorithm,
    /// How the signature is written.
    pub encoding: SignatureEncoding,
    /// Text before the signature in the header (`sha256=`, `v0=`); empty for none.
    pub prefix: String,
    /// The signed content; see the module doc for placeholders.
    pub template: String,
    /// The header whose value is `{id}`.
    pub id_header: Option<String>,
    /// The header whose value is `{timestamp}` (unix seconds).
    pub timestamp_header: Option<String>,
}

impl GenericHmac {
    /// `algorithm` and `encoding` over the body alone, no prefix.
    pub fn new(algorithm: HmacAlgorithm, encoding: SignatureEncoding) -> GenericHmac {
        GenericHmac {
            algorithm,
            encoding,
            prefix: String::new(),
            template: "{body}".to_string(),
            id_header: None,
            timestamp_header: None,
        }
    }

    /// The default window: 5 minutes when a timestamp is signed, else none.
    pub(super) fn tolerance(&self) -> Option<Duration> {
        self.timestamp_header.as_ref().map(|_| TOLERANCE)
    }
}

/// A piece of the signed content.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Vec<u8>),
    Body,
    Timestamp,
    Id,
    Url,
}

/// Splits a template into parts; the error says what to change.
fn parse_template(template: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut literal = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        literal.extend_from_slice(&rest.as_bytes()[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("{{") {
            literal.push(b'{');
            rest = after;
            continue;
        }
        if let Some(after) = tail.strip_prefix("}}") {
            literal.push(b'}');
            rest = after;
            continue;
        }
        if tail.starts_with('}') {
            return Err("has a `}` that closes nothing: write `}}` for a literal brace".into());
        }
        let Some(end) = tail.find('}') else {
            return Err("has a `{` that is never closed: write `{{` for a literal brace".into());
        };
        let part = match &tail[1..end] {
            "body" => Part::Body,
            "timestamp" => Part::Timestamp,
            "id" => Part::Id,
            "url" => Part::Url,
            other => {
                return Err(format!(
                    "has an unknown placeholder `{{{other}}}`: use {{body}}, {{timestamp}}, \
                     {{id}} or {{url}} (`{{{{` for a literal brace)"
                ));
            }
        };
        if !literal.is_empty() {
            parts.push(Part::Literal(std::mem::take(&mut literal)));
        }
        parts.push(part);
        rest = &tail[end + 1..];
    }
    literal.extend_from_slice(rest.as_bytes());
    if !literal.is_empty() {
        parts.push(Part::Literal(literal));
    }
    if !parts.contains(&Part::Body) {
        return Err("does not contain {body}: the body would not be authenticated".into());
    }
    Ok(parts)
}

pub(super) struct Keys {
    secrets: Vec<Vec<u8>>,
    header: HeaderName,
    algorithm: HmacAlgorithm,
    encoding: SignatureEncoding,
    prefix: String,
    template: Vec<Part>,
    id_header: Option<HeaderName>,
    timestamp_header: Option<HeaderName>,
}

impl Keys {
    pub(super) fn new(secrets: &[&str], options: &Options) -> Result<Keys, BadConfig> {
        let mut bad = Vec::new();
        let header = match options.header.as_deref() {
            None => Err(BadOption {
                option: "header",
                message: "the `generic-hmac` scheme needs `header`: the request header that \
                          carries the signature"
                    .to_string(),
            }),
            Some(h) => header_option("header", h),
        };
        let header = header.map_err(|e| bad.push(e)).ok();
        let Some(g) = options.generic.as_ref() else {
            bad.push(BadOption {
                option: "generic",
                message: "the `generic-hmac` scheme needs `algorithm` (sha1, sha256 or sha512) \
                          and `encoding` (hex or base64)"
                    .to_string(),
            });
            return Err(BadConfig {
                secrets: Vec::new(),
                options: bad,
            });
        };
        let template = parse_template(&g.template)
            .map_err(|m| {
                bad.push(BadOption {
                    option: "template",
                    message: format!("`{}` {m}", g.template),
                });
            })
            .ok();
        let mut source = |option, name: &Option<String>, part, text| {
            template
                .as_deref()
                .map_or(Ok(None), |t| {
                    placeholder_header(t, option, name.as_deref(), part, text)
                })
                .map_err(|e| bad.push(e))
                .ok()
                .flatten()
        };
        let id_header = source("id_header", &g.id_header, Part::Id, "{id}");
        let timestamp_header = source(
            "timestamp_header",
            &g.timestamp_header,
            Part::Timestamp,
            "{timestamp}",
        );
        match (header, template) {
            (Some(header), Some(template)) if bad.is_empty() => Ok(Keys {
                secrets: secrets.iter().map(|s| s.as_bytes().to_vec()).collect(),
                header,
                algorithm: g.algorithm,
                encoding: g.encoding,
                prefix: g.prefix.clone(),
                template,
                id_header,
                timestamp_header,
            }),
            _ => Err(BadConfig {
                secrets: Vec::new(),
                options: bad,
            }),
        }
    }
}

/// The header a placeholder's value comes from (option `option`): required when the template
/// uses the placeholder, refused when it does not (an unsigned value protects nothing).
fn placeholder_header(
    template: &[Part],
    option: &'static str,
    name: Option<&str>,
    part: Part,
    text: &str,
) -> Result<Option<HeaderName>, BadOption> {
    match (template.contains(&part), name) {
        (true, Some(n)) => header_option(option, n).map(Some),
        (false, None) => Ok(None),
        (true, None) => Err(BadOption {
            option: "template",
            message: format!(
                "uses {text} but `{option}` is not set: name the header it comes from"
            ),
        }),
        (false, Some(_)) => Err(BadOption {
            option,
            message: format!(
                "is set but the template does not sign {text}: add {text} to the template or \
                 remove `{option}`"
            ),
        }),
    }
}

/// The signed content as slices, in template order.
fn signed_content<'a>(
    template: &'a [Part],
    body: &'a [u8],
    timestamp: &'a str,
    id: &'a str,
    url: &'a str,
) -> Vec<&'a [u8]> {
    template
        .iter()
        .map(|p| match p {
            Part::Literal(l) => l.as_slice(),
            Part::Body => body,
            Part::Timestamp => timestamp.as_bytes(),
            Part::Id => id.as_bytes(),
            Part::Url => url.as_bytes(),
        })
        .collect()
}

/// The signature bytes of the header value: prefix, encoding and length must all be right.
fn decode(keys: &Keys, value: &str) -> Result<Vec<u8>, Failure> {
    let text = value
        .strip_prefix(keys.prefix.as_str())
        .ok_or(Failure::MalformedHeader)?;
    match keys.encoding {
        SignatureEncoding::Hex => hex::decode(text).ok(),
        SignatureEncoding::Base64 => STANDARD.decode(text).ok(),
    }
    .filter(|sig| sig.len() == keys.algorithm.digest_len())
    .ok_or(Failure::MalformedHeader)
}

/// Whether HMAC-`M` of `content` with `key` is `sig` (compared in constant time).
fn mac_matches<M: Mac + KeyInit>(key: &[u8], content: &[&[u8]], sig: &[u8]) -> bool {
    let Ok(mut mac) = <M as Mac>::new_from_slice(key) else {
        return false;
    };
    for part in content {
        mac.update(part);
    }
    mac.verify_slice(sig).is_ok()
}

pub(super) fn verify(
    keys: &Keys,
    req: &Request<'_>,
    now: i64,
    tolerance: Option<Duration>,
) -> Result<(), Failure> {
    let sig = decode(keys, header(req.headers, keys.header.as_str())?)?;
    let id = match &keys.id_header {
        None => "",
        Some(name) => match header(req.headers, name.as_str())? {
            "" => return Err(Failure::MalformedHeader),
            id => id,
        },
    };
    let (ts_text, ts) = match &keys.timestamp_header {
        None => ("", None),
        Some(name) => {
            let text = header(req.headers, name.as_str())?;
            (text, Some(parse_timestamp(text)?))
        }
    };
    let content = signed_content(&keys.template, req.body, ts_text, id, req.url);
    if !keys
        .secrets
        .iter()
        .any(|k| keys.algorithm.matches(k, &content, &sig))
    {
        return Err(Failure::SignatureMismatch);
    }
    match ts {
        Some(ts) => check_window(ts, now, tolerance, Window::Both),
        None => Ok(()),
    }
}

/// HMAC of `content` for tests: what a sender computes.
#[cfg(test)]
fn sign(algorithm: HmacAlgorithm, key: &[u8], content: &[u8]) -> Vec<u8> {
    fn run<M: Mac + KeyInit>(key: &[u8], content: &[u8]) -> Vec<u8> {
        let mut mac = <M as Mac>::new_from_slice(key).expect("HMAC takes any key");
        mac.update(content);
        mac.finalize().into_bytes().to_vec()
    }
    match algorithm {
        HmacAlgorithm::Sha1 => run::<Hmac<sha1::Sha1>>(key, content),
        HmacAlgorithm::Sha256 => run::<Hmac<sha2::Sha256>>(key, content),
        HmacAlgorithm::Sha512 => run::<Hmac<sha2::Sha512>>(key, content),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use base64::{Engine, engine::general_purpose::STANDARD};
    use proptest::prelude::*;

    use super::super::{
        BadOption, Failure, Options, SchemeName, Verifier,
        testing::{URL, check, headers, refused, set_raw, verifier},
    };
    use super::{GenericHmac, HmacAlgorithm, Part, SignatureEncoding, parse_template, sign};
    use crate::verify::Request;

    fn options(header: &str, g: GenericHmac) -> Options {
        Options {
            header: Some(header.to_string()),
            generic: Some(g),
            ..Options::default()
        }
    }

    /// Slack: `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}`.
    fn slack() -> Options {
        options(
            "X-Slack-Signature",
            GenericHmac {
                prefix: "v0=".into(),
                template: "v0:{timestamp}:{body}".into(),
                timestamp_header: Some("X-Slack-Request-Timestamp".into()),
                ..GenericHmac::new(HmacAlgorithm::Sha256, SignatureEncoding::Hex)
            },
        )
    }

    // The Slack docs example (python-slack-sdk tests; vectors slack-01).
    const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const SLACK_TS: i64 = 1_531_420_618;
    const SLACK_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SLACK_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn slack_headers(sig: &str, ts: &str) -> http::HeaderMap {
        headers(&[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Slack-Request-Timestamp", ts),
            ("X-Slack-Signature", sig),
        ])
    }

    #[test]
    fn recreates_slack_with_its_published_example() {
        let v = verifier(SchemeName::GenericHmac, &[SLACK_SECRET], None, &slack());
        let h = slack_headers(SLACK_SIG, "1531420618");
        let body = SLACK_BODY.as_bytes();
        assert_eq!(check(&v, &h, body, SLACK_TS), Ok(()));
        // A timestamp header means a ±5 minute window by default.
        assert_eq!(check(&v, &h, body, SLACK_TS + 300), Ok(()));
        assert_eq!(check(&v, &h, body, SLACK_TS + 301), Err(Failure::Expired));
        assert_eq!(
            check(&v, &h, body, SLACK_TS - 301),
            Err(Failure::FromFuture)
        );
        let cases = [
            (
                headers(&[("X-Slack-Signature", SLACK_SIG)]),
                Failure::MissingHeader,
            ),
            (
                headers(&[("X-Slack-Request-Timestamp", "1531420618")]),
                Failure::MissingHeader,
            ),
            (
                slack_headers(&SLACK_SIG.replace("v0=", "v1="), "1531420618"),
                Failure::MalformedHeader,
            ),
            (
                slack_headers(&SLACK_SIG[3..], "1531420618"),
                Failure::MalformedHeader,
            ),
            (
                slack_headers(&SLACK_SIG[..60], "1531420618"),
                Failure::MalformedHeader,
            ),
            (
                slack_headers(SLACK_SIG, "1531420618.0"),
                Failure::BadTimestamp,
            ),
            (slack_headers(SLACK_SIG, ""), Failure::BadTimestamp),
            (
                slack_headers(SLACK_SIG, "1531420619"),
                Failure::SignatureMismatch,
            ),
        ];
        for (h, want) in cases {
            assert_eq!(check(&v, &h, body, SLACK_TS), Err(want), "{h:?}");
        }
        let other = verifier(
            SchemeName::GenericHmac,
            &["8f742231b10e8888abcd99yyyzzz85a6"],
            None,
            &slack(),
        );
        assert_eq!(
            check(&other, &h, body, SLACK_TS),
            Err(Failure::SignatureMismatch)
        );
        // Rotation: any configured secret.
        let both = verifier(
            SchemeName::GenericHmac,
            &["8f742231b10e8888abcd99yyyzzz85a6", SLACK_SECRET],
            None,
            &slack(),
        );
        assert_eq!(check(&both, &h, body, SLACK_TS), Ok(()));
        // A configured tolerance replaces the default.
        let wide = verifier(
            SchemeName::GenericHmac,
            &[SLACK_SECRET],
            Some(Duration::from_secs(600)),
            &slack(),
        );
        assert_eq!(check(&wide, &h, body, SLACK_TS + 600), Ok(()));
        // Uppercase hex is the same signature.
        let upper = format!("v0={}", SLACK_SIG[3..].to_uppercase());
        assert_eq!(
            check(&v, &slack_headers(&upper, "1531420618"), body, SLACK_TS),
            Ok(())
        );
    }

    /// Shopify: base64 HMAC-SHA256 of the body.
    fn shopify() -> Options {
        options(
            "X-Shopify-Hmac-Sha256",
            GenericHmac::new(HmacAlgorithm::Sha256, SignatureEncoding::Base64),
        )
    }

    #[test]
    fn recreates_shopify_with_its_published_example() {
        // shopify-app-js tests: secret `test_secret_key`, body `{"foo": "bar"}` (vectors shopify-01).
        let v = verifier(
            SchemeName::GenericHmac,
            &["test_secret_key"],
            None,
            &shopify(),
        );
        let sig = "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g=";
        let h = headers(&[
            ("X-Shopify-Topic", "products/create"),
            ("X-Shopify-Hmac-Sha256", sig),
        ]);
        assert_eq!(check(&v, &h, br#"{"foo": "bar"}"#, 0), Ok(()));
        // No timestamp, no window.
        assert_eq!(check(&v, &h, br#"{"foo": "bar"}"#, i64::MAX), Ok(()));
        assert_eq!(
            check(&v, &h, br#"{"foo": "baz"}"#, 0),
            Err(Failure::SignatureMismatch)
        );
        let hex = "076ded5cdebcd60674a8858d46b82dcc113d5d20e8e72694bbac1f9a1bb76bb8";
        let cases = [
            (
                headers(&[("X-Shopify-Hmac-Sha256", hex)]),
                Failure::MalformedHeader,
            ),
            (
                headers(&[("X-Shopify-Hmac-Sha256", &sig[..43])]),
                Failure::MalformedHeader,
            ),
            (
                headers(&[("X-Shopify-Hmac-Sha256", "")]),
                Failure::MalformedHeader,
            ),
            (
                headers(&[
                    ("X-Shopify-Hmac-Sha256", sig),
                    ("X-Shopify-Hmac-Sha256", sig),
                ]),
                Failure::MalformedHeader,
            ),
            (
                headers(&[("X-Shopify-Topic", "products/create")]),
                Failure::MissingHeader,
            ),
        ];
        for (h, want) in cases {
            assert_eq!(check(&v, &h, br#"{"foo": "bar"}"#, 0), Err(want), "{h:?}");
        }
    }

    #[test]
    fn recreates_square_with_the_url_placeholder() {
        // square-nodejs-sdk tests (vectors square-02): the notification URL, then the body.
        let o = options(
            "x-square-hmacsha256-signature",
            GenericHmac {
                template: "{url}{body}".into(),
                ..GenericHmac::new(HmacAlgorithm::Sha256, SignatureEncoding::Base64)
            },
        );
        let v = verifier(SchemeName::GenericHmac, &["signature-key"], None, &o);
        let h = headers(&[(
            "x-square-hmacsha256-signature",
            "W3FlCNk5IA3ZQ2LHTWoajvzfaDu/OwY2tNHIHC3IUOA=",
        )]);
        let body = br#"{"data":{"type":"webhooks","id":"fake_id"}}"#;
        let at = |url| {
            v.verify(
                &Request {
                    url,
                    headers: &h,
                    body,
                },
                0,
            )
        };
        assert_eq!(at("https://webhook.site/webhooks"), Ok(()));
        assert_eq!(
            at("https://webhook.site/webhooks/"),
            Err(Failure::SignatureMismatch)
        );
    }

    #[test]
    fn every_algorithm_matches_the_rfc_test_vectors() {
        // RFC 2202 / RFC 4231 test case 2: key "Jefe".
        let cases = [
            (
                HmacAlgorithm::Sha1,
                "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
            ),
            (
                HmacAlgorithm::Sha256,
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                HmacAlgorithm::Sha512,
                "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
            ),
        ];
        let body = b"what do ya want for nothing?";
        for (algorithm, want) in cases {
            assert_eq!(hex::encode(sign(algorithm, b"Jefe", body)), want);
            let o = options("x-sig", GenericHmac::new(algorithm, SignatureEncoding::Hex));
            let v = verifier(SchemeName::GenericHmac, &["Jefe"], None, &o);
            assert_eq!(
                check(&v, &headers(&[("x-sig", want)]), body, 0),
                Ok(()),
                "{algorithm:?}"
            );
            // Another algorithm's digest has the wrong length.
            let sha1 = "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79";
            if algorithm != HmacAlgorithm::Sha1 {
                assert_eq!(
                    check(&v, &headers(&[("x-sig", sha1)]), body, 0),
                    Err(Failure::MalformedHeader)
                );
            }
        }
    }

    /// `{id}{timestamp}{body}` with `sha256=` + hex, like Twitch but with unix seconds.
    fn with_id() -> Options {
        options(
            "x-signature",
            GenericHmac {
                prefix: "sha256=".into(),
                template: "{id}{timestamp}{body}".into(),
                id_header: Some("x-message-id".into()),
                timestamp_header: Some("x-message-timestamp".into()),
                ..GenericHmac::new(HmacAlgorithm::Sha256, SignatureEncoding::Hex)
            },
        )
    }

    fn with_id_headers(id: &str, ts: &str, sig: &str) -> http::HeaderMap {
        headers(&[
            ("x-message-id", id),
            ("x-message-timestamp", ts),
            ("x-signature", sig),
        ])
    }

    #[test]
    fn id_and_timestamp_come_from_their_headers() {
        let v = verifier(SchemeName::GenericHmac, &["s3cret"], None, &with_id());
        let sig = format!(
            "sha256={}",
            hex::encode(sign(HmacAlgorithm::Sha256, b"s3cret", b"msg-11700000000{}"))
        );
        assert_eq!(
            check(
                &v,
                &with_id_headers("msg-1", "1700000000", &sig),
                b"{}",
                1_700_000_000
            ),
            Ok(())
        );
        let cases = [
            (
                with_id_headers("msg-2", "1700000000", &sig),
                Failure::SignatureMismatch,
            ),
            (
                with_id_headers("", "1700000000", &sig),
                Failure::MalformedHeader,
            ),
            (
                headers(&[("x-message-timestamp", "1700000000"), ("x-signature", &sig)]),
                Failure::MissingHeader,
            ),
        ];
        for (h, want) in cases {
            assert_eq!(check(&v, &h, b"{}", 1_700_000_000), Err(want), "{h:?}");
        }
    }

    #[test]
    fn templates_parse_once_into_parts() {
        assert_eq!(parse_template("{body}"), Ok(vec![Part::Body]));
        assert_eq!(
            parse_template("v0:{timestamp}:{body}"),
            Ok(vec![
                Part::Literal(b"v0:".to_vec()),
                Part::Timestamp,
                Part::Literal(b":".to_vec()),
                Part::Body,
            ])
        );
        assert_eq!(
            parse_template("{{{id}}}.{url}{body}{{}}"),
            Ok(vec![
                Part::Literal(b"{".to_vec()),
                Part::Id,
                Part::Literal(b"}.".to_vec()),
                Part::Url,
                Part::Body,
                Part::Literal(b"{}".to_vec()),
            ])
        );
        for bad in [
            "{bodyy}",
            "{body",
            "body}",
            "{body}}",
            "{timestamp}",
            "",
            "{}{body}",
            "{ body }",
        ] {
            assert!(parse_template(bad).is_err(), "{bad}");
        }
        assert!(
            parse_template("{Body}")
                .expect_err("unknown placeholder")
                .contains("unknown placeholder `{Body}`")
        );
    }

    /// The refused options' names, in order.
    fn refusals(o: &Options) -> Vec<&'static str> {
        refused(SchemeName::GenericHmac, &["s3cret"], o)
            .options
            .iter()
            .map(|b: &BadOption| b.option)
            .collect()
    }

    #[test]
    fn options_are_checked_when_the_config_is_loaded() {
        let g = |f: fn(&mut GenericHmac)| {
            let mut g = GenericHmac::new(HmacAlgorithm::Sha256, SignatureEncoding::Hex);
            f(&mut g);
            options("x-sig", g)
        };
        assert_eq!(refusals(&Options::default()), ["header", "generic"]);
        assert_eq!(
            refusals(&Options {
                generic: None,
                ..g(|_| ())
            }),
            ["generic"]
        );
        assert_eq!(
            refusals(&Options {
                header: Some("x sig".into()),
                ..g(|_| ())
            }),
            ["header"]
        );
        assert_eq!(
            refusals(&g(|g| g.template = "{timestamp}.{bodi}".into())),
            ["template"]
        );
        assert_eq!(
            refusals(&g(|g| g.template = "{timestamp}".into())),
            ["template"]
        );
        // {timestamp} without timestamp_header, and the reverse.
        assert_eq!(
            refusals(&g(|g| g.template = "{timestamp}.{body}".into())),
            ["template"]
        );
        assert_eq!(
            refusals(&g(|g| g.timestamp_header = Some("x-ts".into()))),
            ["timestamp_header"]
        );
        assert_eq!(
            refusals(&g(|g| g.template = "{id}.{body}".into())),
            ["template"]
        );
        assert_eq!(
            refusals(&g(|g| g.id_header = Some("x-id".into()))),
            ["id_header"]
        );
        assert_eq!(
            refusals(&g(|g| {
                g.template = "{id}.{body}".into();
                g.id_header = Some("x id".into());
            })),
            ["id_header"]
        );
        // Every problem at once.
        assert_eq!(
            refusals(&Options {
                header: None,
                ..g(|g| {
                    g.template = "{id}.{timestamp}.{body}".into();
                    g.timestamp_header = Some("x ts".into());
                })
            }),
            ["header", "template", "timestamp_header"]
        );
        let e = refused(
            SchemeName::GenericHmac,
            &["s3cret"],
            &g(|g| g.template = "{ts}.{body}".into()),
        );
        assert!(e.options[0].message.contains("{ts}"), "{e:?}");
        // generic-hmac options on another scheme are refused, not ignored.
        let e = refused(SchemeName::Stripe, &["whsec_x"], &slack());
        let names: Vec<_> = e.options.iter().map(|b| b.option).collect();
        assert_eq!(names, ["header", "generic"]);
    }

    #[test]
    fn names_of_algorithms_and_encodings() {
        assert_eq!(
            HmacAlgorithm::from_name("sha512"),
            Some(HmacAlgorithm::Sha512)
        );
        assert_eq!(HmacAlgorithm::from_name("SHA256"), None);
        assert_eq!(
            SignatureEncoding::from_name("base64"),
            Some(SignatureEncoding::Base64)
        );
        assert_eq!(SignatureEncoding::from_name("b64"), None);
    }

    fn verifier_with(o: &Options) -> Verifier {
        verifier(SchemeName::GenericHmac, &["s3cret"], None, o)
    }

    proptest! {
        #[test]
        fn any_single_byte_change_of_body_or_signature_fails(
            body in proptest::collection::vec(any::<u8>(), 1..256),
            i in any::<prop::sample::Index>(),
            x in 1u8..,
            in_body in any::<bool>(),
            base64 in any::<bool>(),
        ) {
            let encoding = if base64 { SignatureEncoding::Base64 } else { SignatureEncoding::Hex };
            let encode = |raw: &[u8]| if base64 { STANDARD.encode(raw) } else { hex::encode(raw) };
            let o = options("x-sig", GenericHmac {
                template: "{url}|{body}".into(),
                ..GenericHmac::new(HmacAlgorithm::Sha512, encoding)
            });
            let v = verifier_with(&o);
            let mut raw = sign(HmacAlgorithm::Sha512, b"s3cret", &[URL.as_bytes(), b"|", &body].concat());
            prop_assert_eq!(check(&v, &headers(&[("x-sig", &encode(&raw))]), &body, 0), Ok(()));
            let mut body = body;
            if in_body {
                let i = i.index(body.len());
                body[i] ^= x;
            } else {
                let i = i.index(raw.len());
                raw[i] ^= x;
            }
            prop_assert!(check(&v, &headers(&[("x-sig", &encode(&raw))]), &body, 0).is_err());
        }

        #[test]
        fn arbitrary_header_bytes_never_panic(
            value in proptest::collection::vec(any::<u8>(), 0..96),
            which in 0..3usize,
        ) {
            let v = verifier_with(&with_id());
            let sig = format!("sha256={}", hex::encode(sign(HmacAlgorithm::Sha256, b"s3cret", b"msg-11700000000{}")));
            let mut h = with_id_headers("msg-1", "1700000000", &sig);
            if set_raw(&mut h, ["x-signature", "x-message-id", "x-message-timestamp"][which], &value) {
                let result = check(&v, &h, b"{}", 1_700_000_000);
                prop_assert!(result.is_err());
            }
        }
    }
}
