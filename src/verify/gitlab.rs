//! GitLab, in one of two modes ([`GitlabMode`], option `gitlab`):
//!
//! - `token` (default): the webhook's secret token arrives as is in `X-Gitlab-Token` and is
//!   compared in constant time with each secret (see [`super::token`]). Nothing is signed:
//!   the token authenticates the sender, not the body.
//! - `signing-token`: GitLab's newer signing token, which produces Standard Webhooks headers
//!   (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`) over
//!   `"{id}.{timestamp}.{body}"`; verified by [`super::standard`], ±5 minutes by default. The
//!   secret must be the token as GitLab shows it, `whsec_` + base64 (gitlab.com MR !231325).

use std::time::Duration;

use super::{BadSecret, Failure, Request, header, standard, token::Tokens};

const TOKEN: &str = "x-gitlab-token";

/// Which GitLab mechanism a route verifies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GitlabMode {
    /// `X-Gitlab-Token`: the webhook's secret token, sent as is.
    #[default]
    Token,
    /// The signing token: Standard Webhooks v1 HMAC headers.
    SigningToken,
}

impl GitlabMode {
    /// Every mode, by its config name.
    pub const ALL: &'static [(&'static str, GitlabMode)] = &[
        ("token", GitlabMode::Token),
        ("signing-token", GitlabMode::SigningToken),
    ];

    /// Looks a mode up by its config name.
    pub fn from_name(name: &str) -> Option<GitlabMode> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, m)| *m)
    }
}

pub(super) fn default_tolerance(mode: GitlabMode) -> Option<Duration> {
    match mode {
        GitlabMode::Token => None,
        GitlabMode::SigningToken => Some(standard::TOLERANCE),
    }
}

pub(super) enum Keys {
    Token(Tokens),
    Signing(standard::Keys),
}

impl Keys {
    pub(super) fn new(secrets: &[&str], mode: GitlabMode) -> Result<Keys, Vec<BadSecret>> {
        match mode {
            GitlabMode::Token => Tokens::new(secrets).map(Keys::Token),
            GitlabMode::SigningToken => {
                // GitLab only issues `whsec_` tokens; anything else is most likely the plain
                // secret token pasted into a signing-token route.
                let bad: Vec<BadSecret> = secrets
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| !s.starts_with("whsec_"))
                    .map(|(index, _)| BadSecret {
                        index,
                        message: "is not a GitLab signing token (`whsec_` + base64); for the \
                                  plain secret token use `gitlab: token`"
                            .to_string(),
                    })
                    .collect();
                if !bad.is_empty() {
                    return Err(bad);
                }
                standard::Keys::new(secrets).map(Keys::Signing)
            }
        }
    }
}

pub(super) fn verify(
    keys: &Keys,
    req: &Request<'_>,
    now: i64,
    tolerance: Option<Duration>,
) -> Result<(), Failure> {
    match keys {
        Keys::Token(tokens) => tokens.check(header(req.headers, TOKEN)?),
        Keys::Signing(k) => standard::verify(k, standard::Headers::Webhook, req, now, tolerance),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use base64::Engine;
    use hmac::Mac;
    use proptest::prelude::*;

    use super::super::{
        Failure, Options, SchemeName, Verifier, hmac_sha256,
        testing::{check, headers, refused, set_raw, verifier},
    };
    use super::GitlabMode;

    const TOKEN: &str = "my-gitlab-webhook-token";
    /// vectors gitlab-01: `whsec_` + base64("gitlab-signing-token-32-bytes!!!").
    const SIGNING: &str = "whsec_Z2l0bGFiLXNpZ25pbmctdG9rZW4tMzItYnl0ZXMhISE=";
    const ID: &str = "b9b9a6a8-1f8e-4c39-9f1c-6e1b0d4f7a11";
    const TS: i64 = 1_700_000_000;
    const BODY: &str = r#"{"object_kind":"push","event_name":"push","ref":"refs/heads/main"}"#;
    const SIG: &str = "v1,7ASm+JEvKgAODsjsV+LxR3VSlIsVbzselYNmS5hmHx0=";

    fn signing() -> Options {
        Options {
            gitlab: GitlabMode::SigningToken,
            ..Options::default()
        }
    }

    fn token_mode(secrets: &[&str]) -> Verifier {
        verifier(SchemeName::Gitlab, secrets, None, &Options::default())
    }

    fn signed(id: &str, ts: &str, sig: &str) -> http::HeaderMap {
        headers(&[
            ("webhook-id", id),
            ("webhook-timestamp", ts),
            ("webhook-signature", sig),
            ("x-gitlab-event", "Push Hook"),
        ])
    }

    /// A `v1,` signature of `body` by the test signing token.
    fn sign(body: &[u8]) -> String {
        let key = base64::engine::general_purpose::STANDARD
            .decode(&SIGNING["whsec_".len()..])
            .expect("test key");
        let mac = hmac_sha256(
            &key,
            &[ID.as_bytes(), b".", TS.to_string().as_bytes(), b".", body],
        );
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn mode_names() {
        assert_eq!(GitlabMode::from_name("token"), Some(GitlabMode::Token));
        assert_eq!(
            GitlabMode::from_name("signing-token"),
            Some(GitlabMode::SigningToken)
        );
        assert_eq!(GitlabMode::from_name("signing"), None);
    }

    #[test]
    fn token_mode_compares_x_gitlab_token() {
        let v = token_mode(&["other-token", TOKEN]);
        let ok = headers(&[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", TOKEN)]);
        assert_eq!(check(&v, &ok, BODY.as_bytes(), TS), Ok(()));
        // No timestamp is involved: any clock passes.
        assert_eq!(check(&v, &ok, BODY.as_bytes(), 0), Ok(()));
        let cases: &[(&[(&str, &str)], Failure)] = &[
            (&[("x-gitlab-event", "Push Hook")], Failure::MissingHeader),
            (&[("x-gitlab-token", "")], Failure::MalformedHeader),
            (
                &[("x-gitlab-token", TOKEN), ("x-gitlab-token", TOKEN)],
                Failure::MalformedHeader,
            ),
            (
                &[("x-gitlab-token", "my-gitlab-webhook-tokenx")],
                Failure::SignatureMismatch,
            ),
            (
                &[("x-gitlab-token", "MY-GITLAB-WEBHOOK-TOKEN")],
                Failure::SignatureMismatch,
            ),
        ];
        for (h, want) in cases {
            assert_eq!(
                check(&v, &headers(h), BODY.as_bytes(), TS),
                Err(*want),
                "{h:?}"
            );
        }
    }

    #[test]
    fn token_mode_does_not_read_signing_headers() {
        let v = token_mode(&[TOKEN]);
        let h = signed(ID, "1700000000", SIG);
        assert_eq!(
            check(&v, &h, BODY.as_bytes(), TS),
            Err(Failure::MissingHeader)
        );
    }

    #[test]
    fn signing_mode_verifies_the_standard_webhooks_signature() {
        let v = verifier(SchemeName::Gitlab, &[SIGNING], None, &signing());
        let h = signed(ID, "1700000000", SIG);
        assert_eq!(check(&v, &h, BODY.as_bytes(), TS), Ok(()));
        assert_eq!(sign(BODY.as_bytes()), SIG);
        // A token header alone does not pass in signing mode.
        let t = headers(&[("x-gitlab-token", TOKEN)]);
        assert_eq!(
            check(&v, &t, BODY.as_bytes(), TS),
            Err(Failure::MissingHeader)
        );
    }

    #[test]
    fn signing_mode_failures_have_their_labels() {
        let v = verifier(SchemeName::Gitlab, &[SIGNING], None, &signing());
        let body = BODY.as_bytes();
        let cases = [
            (
                headers(&[
                    ("webhook-timestamp", "1700000000"),
                    ("webhook-signature", SIG),
                ]),
                TS,
                Failure::MissingHeader,
            ),
            (
                signed(ID, "1700000000", "v1,!!"),
                TS,
                Failure::MalformedHeader,
            ),
            (signed(ID, "1700000000.0", SIG), TS, Failure::BadTimestamp),
            (
                signed(ID, "1700000001", SIG),
                TS,
                Failure::SignatureMismatch,
            ),
            (
                signed("other-id", "1700000000", SIG),
                TS,
                Failure::SignatureMismatch,
            ),
            // The default window is Standard Webhooks' ±5 minutes.
            (signed(ID, "1700000000", SIG), TS + 301, Failure::Expired),
            (signed(ID, "1700000000", SIG), TS - 301, Failure::FromFuture),
        ];
        for (h, now, want) in cases {
            assert_eq!(check(&v, &h, body, now), Err(want), "{h:?} at {now}");
        }
        assert_eq!(
            check(&v, &signed(ID, "1700000000", SIG), body, TS + 300),
            Ok(())
        );
        let wide = verifier(
            SchemeName::Gitlab,
            &[SIGNING],
            Some(Duration::from_secs(600)),
            &signing(),
        );
        assert_eq!(
            check(&wide, &signed(ID, "1700000000", SIG), body, TS + 301),
            Ok(())
        );
    }

    #[test]
    fn signing_mode_refuses_secrets_that_are_not_signing_tokens() {
        let e = refused(
            SchemeName::Gitlab,
            &[SIGNING, TOKEN, "whsec_%%%"],
            &signing(),
        );
        let indexes: Vec<usize> = e.secrets.iter().map(|b| b.index).collect();
        assert_eq!(indexes, [1]);
        // Decoding is checked once the prefix is right.
        let e = refused(SchemeName::Gitlab, &[SIGNING, "whsec_%%%"], &signing());
        assert_eq!(e.secrets.len(), 1);
        assert_eq!(e.secrets[0].index, 1);
        for b in &e.secrets {
            assert!(!b.message.contains("%%%"), "{b:?}");
        }
    }

    #[test]
    fn the_mode_is_refused_on_other_schemes() {
        let e = refused(SchemeName::StandardWebhooks, &[SIGNING], &signing());
        assert_eq!(e.options[0].option, "gitlab");
    }

    proptest! {
        #[test]
        fn any_single_byte_change_of_body_or_signature_fails(
            body in proptest::collection::vec(any::<u8>(), 1..256),
            i in any::<prop::sample::Index>(),
            x in 1u8..,
            in_body in any::<bool>(),
        ) {
            let v = verifier(SchemeName::Gitlab, &[SIGNING], None, &signing());
            let sig = sign(&body);
            prop_assert_eq!(check(&v, &signed(ID, "1700000000", &sig), &body, TS), Ok(()));
            let mut body = body;
            let mut raw = base64::engine::general_purpose::STANDARD
                .decode(&sig[3..])
                .expect("own signature");
            if in_body {
                let i = i.index(body.len());
                body[i] ^= x;
            } else {
                let i = i.index(raw.len());
                raw[i] ^= x;
            }
            let sig = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(raw));
            prop_assert!(check(&v, &signed(ID, "1700000000", &sig), &body, TS).is_err());
        }

        #[test]
        fn arbitrary_header_bytes_never_panic(
            value in proptest::collection::vec(any::<u8>(), 0..96),
            which in 0..4usize,
        ) {
            let name = ["x-gitlab-token", "webhook-id", "webhook-timestamp", "webhook-signature"][which];
            for v in [token_mode(&[TOKEN]), verifier(SchemeName::Gitlab, &[SIGNING], None, &signing())] {
                let mut h = signed(ID, "1700000000", SIG);
                h.insert("x-gitlab-token", http::HeaderValue::from_static(TOKEN));
                if set_raw(&mut h, name, &value) {
                    // Only the header the mode reads can make it fail; never a panic.
                    let _ = check(&v, &h, BODY.as_bytes(), TS);
                }
            }
        }
    }
}
