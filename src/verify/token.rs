//! `token`: a shared secret sent as is in a configured header (`header`, required; there is
//! no default), for senders that sign nothing. Also GitLab's `X-Gitlab-Token`.
//!
//! A token authenticates the sender, not the body: anyone who sees one request can replay it
//! with any body. Prefer a signing scheme wherever the sender offers one.
//!
//! The comparison is constant time over SHA-256 digests of the header value and of each
//! configured token, so it reveals neither where the first difference is nor the token's
//! length. Tokens that HTTP cannot carry unchanged (surrounding whitespace, which HTTP strips,
//! or anything but printable ASCII) are refused when the config is loaded.

use http::HeaderName;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::{BadConfig, BadOption, BadSecret, Failure, Options, Request, header, header_option};

/// Digests of the accepted tokens.
pub(super) struct Tokens(Vec<[u8; 32]>);

impl Tokens {
    pub(super) fn new(secrets: &[&str]) -> Result<Tokens, Vec<BadSecret>> {
        let mut bad = Vec::new();
        for (index, s) in secrets.iter().enumerate() {
            let message = if s.trim_matches([' ', '\t']).len() != s.len() {
                "has leading or trailing whitespace, which HTTP strips from header values: \
                 it could never match"
            } else if !s
                .bytes()
                .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
            {
                "contains characters other than printable ASCII, which a header cannot carry \
                 as they are"
            } else {
                continue;
            };
            bad.push(BadSecret {
                index,
                message: message.to_string(),
            });
        }
        if !bad.is_empty() {
            return Err(bad);
        }
        Ok(Tokens(
            secrets.iter().map(|s| Sha256::digest(s).into()).collect(),
        ))
    }

    /// Compares `value` with every token (all of them, in constant time).
    pub(super) fn check(&self, value: &str) -> Result<(), Failure> {
        if value.is_empty() {
            return Err(Failure::MalformedHeader);
        }
        let got: [u8; 32] = Sha256::digest(value).into();
        let matched = self
            .0
            .iter()
            .fold(Choice::from(0), |acc, t| acc | t.ct_eq(&got));
        if bool::from(matched) {
            Ok(())
        } else {
            Err(Failure::SignatureMismatch)
        }
    }
}

pub(super) struct Keys {
    header: HeaderName,
    tokens: Tokens,
}

impl Keys {
    pub(super) fn new(secrets: &[&str], options: &Options) -> Result<Keys, BadConfig> {
        let header = match options.header.as_deref() {
            None => Err(BadOption {
                option: "header",
                message: "the `token` scheme needs `header`: the request header that carries \
                          the token"
                    .to_string(),
            }),
            Some(h) => header_option("header", h),
        };
        match (header, Tokens::new(secrets)) {
            (Ok(header), Ok(tokens)) => Ok(Keys { header, tokens }),
            (header, tokens) => Err(BadConfig {
                secrets: tokens.err().unwrap_or_default(),
                options: header.err().into_iter().collect(),
            }),
        }
    }
}

pub(super) fn verify(keys: &Keys, req: &Request<'_>) -> Result<(), Failure> {
    keys.tokens
        .check(header(req.headers, keys.header.as_str())?)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::{
        Options, SchemeName,
        testing::{check, headers, refused, set_raw, verifier},
    };
    use crate::verify::{Failure, Verifier};

    const TOKEN: &str = "s3cret-token-0123456789";

    fn options(header: &str) -> Options {
        Options {
            header: Some(header.to_string()),
            ..Options::default()
        }
    }

    fn token(secrets: &[&str]) -> Verifier {
        verifier(
            SchemeName::Token,
            secrets,
            None,
            &options("X-Webhook-Token"),
        )
    }

    #[test]
    fn the_configured_token_in_the_configured_header_passes() {
        let v = token(&[TOKEN]);
        assert_eq!(
            check(&v, &headers(&[("x-webhook-token", TOKEN)]), b"{}", 0),
            Ok(())
        );
        // Header names are case-insensitive.
        assert_eq!(
            check(&v, &headers(&[("X-WEBHOOK-TOKEN", TOKEN)]), b"", 0),
            Ok(())
        );
    }

    #[test]
    fn any_configured_token_passes_for_rotation() {
        let v = token(&["old-token", TOKEN]);
        assert_eq!(
            check(&v, &headers(&[("x-webhook-token", TOKEN)]), b"", 0),
            Ok(())
        );
        assert_eq!(
            check(&v, &headers(&[("x-webhook-token", "old-token")]), b"", 0),
            Ok(())
        );
    }

    #[test]
    fn failures_have_their_labels() {
        let v = token(&[TOKEN]);
        let cases: &[(&[(&str, &str)], Failure)] = &[
            (&[], Failure::MissingHeader),
            (&[("authorization", TOKEN)], Failure::MissingHeader),
            (&[("x-webhook-token", "")], Failure::MalformedHeader),
            (
                &[("x-webhook-token", TOKEN), ("x-webhook-token", TOKEN)],
                Failure::MalformedHeader,
            ),
            (
                &[("x-webhook-token", "s3cret-token-012345678")],
                Failure::SignatureMismatch,
            ),
            (
                &[("x-webhook-token", "s3cret-token-01234567890")],
                Failure::SignatureMismatch,
            ),
            (
                &[("x-webhook-token", "S3CRET-TOKEN-0123456789")],
                Failure::SignatureMismatch,
            ),
        ];
        for (h, want) in cases {
            assert_eq!(check(&v, &headers(h), b"", 0), Err(*want), "{h:?}");
        }
    }

    #[test]
    fn header_is_required_and_must_be_a_header_name() {
        let e = refused(SchemeName::Token, &[TOKEN], &Options::default());
        assert_eq!(e.options.len(), 1);
        assert_eq!(e.options[0].option, "header");
        let e = refused(SchemeName::Token, &[TOKEN], &options("x webhook token"));
        assert_eq!(e.options[0].option, "header");
        assert!(
            e.options[0].message.contains("not an HTTP header name"),
            "{e:?}"
        );
    }

    #[test]
    fn tokens_http_cannot_carry_are_refused_without_showing_them() {
        let bad = [" Xq7z", "Xq8z\t", "Xq\u{e9}9z", "Xq0\nz"];
        let mut secrets = vec![TOKEN];
        secrets.extend(bad);
        let e = refused(SchemeName::Token, &secrets, &Options::default());
        // Both the missing header and the bad tokens are reported at once.
        assert_eq!(e.options.len(), 1);
        let indexes: Vec<usize> = e.secrets.iter().map(|b| b.index).collect();
        assert_eq!(indexes, [1, 2, 3, 4]);
        for (b, s) in e.secrets.iter().zip(bad) {
            assert!(!b.message.contains(s.trim()), "{b:?}");
        }
    }

    #[test]
    fn options_of_other_schemes_are_refused() {
        let e = refused(
            SchemeName::Token,
            &[TOKEN],
            &Options {
                legacy_sha1: true,
                ..options("x-webhook-token")
            },
        );
        assert_eq!(e.options[0].option, "legacy_sha1");
    }

    proptest! {
        #[test]
        fn any_single_byte_change_of_the_token_fails(i in 0..TOKEN.len(), x in 1u8..) {
            let v = token(&[TOKEN]);
            let mut t = TOKEN.as_bytes().to_vec();
            t[i] ^= x;
            let mut h = headers(&[]);
            if set_raw(&mut h, "x-webhook-token", &t) {
                prop_assert!(check(&v, &h, b"", 0).is_err());
            }
        }

        #[test]
        fn arbitrary_header_bytes_never_panic(value in proptest::collection::vec(any::<u8>(), 0..64)) {
            let v = token(&[TOKEN]);
            let mut h = headers(&[]);
            if set_raw(&mut h, "x-webhook-token", &value) {
                prop_assert!(check(&v, &h, b"", 0).is_err());
            }
        }
    }
}
