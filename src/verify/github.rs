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
