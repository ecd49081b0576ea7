//! GitHub: `X-Hub-Signature-256: sha256=<hex>` = HMAC-SHA256 of the body with the webhook
//! secret. The legacy `X-Hub-Signature: sha1=<hex>` is accepted only when the route asks for
//! it (`legacy_sha1: true`) and no sha256 header is present. Like octokit (node): the
//! `sha256=` prefix is required and the hex must be lowercase. No timestamp is signed.

use hmac::{Hmac, Mac};

use super::{Failure, Request, header, hmac_sha256};

pub(super) struct Keys {
    secrets: Vec<Vec<u8>>,
    legacy_sha1: bool,
}

impl Keys {
    pub(super) fn new(secrets: &[&str], legacy_sha1: bool) -> Keys {
        Keys {
            secrets: secrets.iter().map(|s| s.as_bytes().to_vec()).collect(),
            legacy_sha1,
        }
    }
}

fn lower_hex(s: &str, len: usize) -> Result<Vec<u8>, Failure> {
    if s.len() != len
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(Failure::MalformedHeader);
    }
    hex::decode(s).map_err(|_| Failure::MalformedHeader)
}

pub(super) fn verify(keys: &Keys, req: &Request<'_>) -> Result<(), Failure> {
    match header(req.headers, "x-hub-signature-256") {
        Ok(v) => {
            let sig = lower_hex(
                v.strip_prefix("sha256=").ok_or(Failure::MalformedHeader)?,
                64,
            )?;
            let ok = keys
                .secrets
                .iter()
                .any(|k| hmac_sha256(k, &[req.body]).verify_slice(&sig).is_ok());
            if ok {
                Ok(())
            } else {
                Err(Failure::SignatureMismatch)
            }
        }
        Err(Failure::MissingHeader) if keys.legacy_sha1 => {
            let v = header(req.headers, "x-hub-signature")?;
            let sig = lower_hex(v.strip_prefix("sha1=").ok_or(Failure::MalformedHeader)?, 40)?;
            let ok = keys.secrets.iter().any(|k| {
                // HMAC accepts keys of every length, so this cannot fail.
                #[allow(clippy::expect_used)]
                let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(k)
                    .expect("HMAC accepts any key length");
                mac.update(req.body);
                mac.verify_slice(&sig).is_ok()
            });
            if ok {
                Ok(())
            } else {
                Err(Failure::SignatureMismatch)
            }
        }
        Err(e) => Err(e),
    }
}

/// The `X-Hub-Signature-256` header GitHub would send for `body` (for `hookrouter send`).
pub(super) fn sign(secret: &str, body: &[u8]) -> Vec<(String, String)> {
    let mac = hmac_sha256(secret.as_bytes(), &[body]);
    vec![(
        "X-Hub-Signature-256".into(),
        format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
    )]
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;
    use proptest::prelude::*;

    use super::super::{Failure, Options, Request, SchemeName, Verifier};

    // GitHub's documented example.
    const SECRET: &str = "It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    const SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn check(headers: &[(&'static str, &str)], body: &[u8], legacy: bool) -> Result<(), Failure> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(*k, v.parse().expect("header"));
        }
        let v = Verifier::new(
            SchemeName::Github,
            &[SECRET],
            None,
            &Options {
                legacy_sha1: legacy,
                ..Options::default()
            },
        )
        .expect("verifier");
        v.verify(
            &Request {
                url: "",
                headers: &h,
                body,
            },
            0,
        )
    }

    #[test]
    fn each_failure_reason() {
        assert_eq!(check(&[("x-hub-signature-256", SIG)], BODY, false), Ok(()));
        assert_eq!(super::sign(SECRET, BODY)[0].1, SIG);
        assert_eq!(check(&[], BODY, false), Err(Failure::MissingHeader));
        assert_eq!(
            check(&[("x-hub-signature-256", &SIG[7..])], BODY, false),
            Err(Failure::MalformedHeader)
        );
        assert_eq!(
            check(
                &[(
                    "x-hub-signature-256",
                    &SIG.to_uppercase().replace("SHA256=", "sha256=")
                )],
                BODY,
                false
            ),
            Err(Failure::MalformedHeader)
        );
        assert_eq!(
            check(
                &[("x-hub-signature-256", SIG), ("x-hub-signature-256", SIG)],
                BODY,
                false
            ),
            Err(Failure::MalformedHeader)
        );
        assert_eq!(
            check(&[("x-hub-signature-256", SIG)], b"Hello, World?", false),
            Err(Failure::SignatureMismatch)
        );
        // sha1 only when asked for, and only without a sha256 header.
        let sha1 = "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59";
        assert_eq!(
            check(&[("x-hub-signature", sha1)], BODY, false),
            Err(Failure::MissingHeader)
        );
        assert_eq!(check(&[("x-hub-signature", sha1)], BODY, true), Ok(()));
    }

    proptest! {
        #[test]
        fn any_single_byte_change_fails(i in 0usize..64, flip in 1u8..=255) {
            let mut body = BODY.to_vec();
            let bi = i % body.len();
            body[bi] ^= flip;
            prop_assert!(check(&[("x-hub-signature-256", SIG)], &body, false).is_err());
            let mut sig = SIG.as_bytes().to_vec();
            let si = 7 + i % (SIG.len() - 7);
            sig[si] ^= flip;
            if let Ok(s) = String::from_utf8(sig)
                && http::HeaderValue::from_str(&s).is_ok() {
                    prop_assert!(check(&[("x-hub-signature-256", &s)], BODY, false).is_err());
                }
        }

        #[test]
        fn arbitrary_headers_never_panic(s in "\\PC{0,200}") {
            if http::HeaderValue::from_str(&s).is_ok() {
                let _ = check(&[("x-hub-signature-256", &s), ("x-hub-signature", &s)], BODY, true);
            }
        }
    }
}
