//! SendGrid Event Webhook: `X-Twilio-Email-Event-Webhook-Signature` is a base64 DER ECDSA
//! P-256 / SHA-256 signature over `timestamp ‖ body` (no separator), `timestamp` being
//! `X-Twilio-Email-Event-Webhook-Timestamp` as sent.
//!
//! The "secret" is the verification (public) key as SendGrid shows it: base64 of a DER
//! SubjectPublicKeyInfo, no PEM armour; it is decoded by the `p256` crate when the config is
//! loaded. Bodies end in `\r\n`, which is signed: trimming the body breaks every signature.
//!
//! The timestamp is unix seconds and parsed strictly. @sendgrid/eventwebhook checks no window,
//! so there is none by default; a configured tolerance applies both ways.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::STANDARD};
use p256::{
    ecdsa::{Signature, VerifyingKey, signature::DigestVerifier},
    pkcs8::DecodePublicKey,
};
use sha2::{Digest, Sha256};

use super::{
    BadSecret, Failure, Request, Window, check_window, header, parse_secrets, parse_timestamp,
};

const SIGNATURE: &str = "x-twilio-email-event-webhook-signature";
const TIMESTAMP: &str = "x-twilio-email-event-webhook-timestamp";

pub(super) struct Keys(Vec<VerifyingKey>);

impl Keys {
    pub(super) fn new(secrets: &[&str]) -> Result<Keys, Vec<BadSecret>> {
        parse_secrets(secrets, parse_key).map(Keys)
    }
}

fn parse_key(s: &str) -> Result<VerifyingKey, &'static str> {
    if s.starts_with("-----BEGIN") {
        return Err("is PEM: give only the base64 between the BEGIN and END lines, on one line");
    }
    let der = STANDARD.decode(s).map_err(
        |_| "is not base64: give the verification key as SendGrid shows it (base64 DER)",
    )?;
    VerifyingKey::from_public_key_der(&der)
        .map_err(|_| "is not an ECDSA P-256 public key (base64 DER SubjectPublicKeyInfo)")
}

/// The signed message, hashed: the timestamp header as sent, then the body.
fn signed_digest(timestamp: &str, body: &[u8]) -> Sha256 {
    Sha256::new_with_prefix(timestamp).chain_update(body)
}

pub(super) fn verify(
    keys: &Keys,
    req: &Request<'_>,
    now: i64,
    tolerance: Option<Duration>,
) -> Result<(), Failure> {
    let sig_text = header(req.headers, SIGNATURE)?;
    let ts_text = header(req.headers, TIMESTAMP)?;
    let der = STANDARD
        .decode(sig_text)
        .map_err(|_| Failure::MalformedHeader)?;
    let sig = Signature::from_der(&der).map_err(|_| Failure::MalformedHeader)?;
    let ts = parse_timestamp(ts_text)?;
    let digest = signed_digest(ts_text, req.body);
    if !keys
        .0
        .iter()
        .any(|k| k.verify_digest(digest.clone(), &sig).is_ok())
    {
        return Err(Failure::SignatureMismatch);
    }
    check_window(ts, now, tolerance, Window::Both)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use base64::{Engine, engine::general_purpose::STANDARD};
    use p256::{
        ecdsa::{Signature, SigningKey, signature::DigestSigner},
        pkcs8::EncodePublicKey,
    };
    use proptest::prelude::*;

    use super::super::{
        Failure, Options, SchemeName, Verifier,
        testing::{check, headers, refused, set_raw, verifier},
    };

    // sendgrid/sendgrid-nodejs@498e2329 packages/eventwebhook/src/eventwebhook.spec.js.
    const KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==";
    const SIG: &str = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=";
    const TS: i64 = 1_600_112_502;
    const BODY: &str = concat!(
        r#"[{"email":"hello@world.com","event":"dropped","reason":"Bounced Address","sg_event_id":"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA","sg_message_id":"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0","smtp-id":"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>","timestamp":1600112492}]"#,
        "\r\n"
    );
    const MULTI_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEQ4LIFtWztlsF7skFqOncjD1lun4H5w8XOhyOArHW9RcIx/FfEzx6cikC/yPfUvwaX/JScE7Fc9CJD2afQ9Ok3Q==";
    const MULTI_SIG: &str = "MEYCIQC/I4o6vCgqRYrTljjoVWB/GRWNtxeePlLMHr3x9ETeRQIhAIpV+03nREPTTHWSW0wIOA0EoMPdcNgXa70yCaqDJlu5";
    const MULTI_TS: i64 = 1_619_651_159;
    const MULTI_BODY: &str = concat!(
        r#"[{"email":"invalid@gmail.com","event":"processed","send_at":0,"sg_event_id":"cHJvY2Vzc2VkLTE5OTQyMTEyLXFOd0JMZ1BRUWpXNkRKdktRd1NBYnctMA","sg_message_id":"qNwBLgPQQjW6DJvKQwSAbw.filterdrecv-canary-547b64655b-cw6zx-1-6089EA4A-56.0","smtp-id":"<qNwBLgPQQjW6DJvKQwSAbw@ismtpd0178p1mdw1.sendgrid.net>","timestamp":1619651146},"#,
        "\r\n",
        r#"{"email":"invalid@gmail.com","event":"bounce","ip":"167.89.101.76","reason":"552 5.2.2 The email account that you tried to reach is over quota and inactive. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaPerm c17si1130468pgv.34 - gsmtp","sg_event_id":"Ym91bmNlLTAtMTk5NDIxMTItcU53QkxnUFFRalc2REp2S1F3U0Fidy0w","sg_message_id":"qNwBLgPQQjW6DJvKQwSAbw.filterdrecv-canary-547b64655b-cw6zx-1-6089EA4A-56.0","smtp-id":"<qNwBLgPQQjW6DJvKQwSAbw@ismtpd0178p1mdw1.sendgrid.net>","status":"5.2.2","timestamp":1619651147,"tls":1,"type":"blocked"}]"#,
        "\r\n"
    );

    fn sendgrid(keys: &[&str], tolerance: Option<Duration>) -> Verifier {
        verifier(SchemeName::Sendgrid, keys, tolerance, &Options::default())
    }

    fn signed(sig: &str, ts: &str) -> http::HeaderMap {
        headers(&[
            ("Content-Type", "application/json"),
            ("X-Twilio-Email-Event-Webhook-Signature", sig),
            ("X-Twilio-Email-Event-Webhook-Timestamp", ts),
        ])
    }

    /// A fixed test key pair: (signing key, base64 DER SPKI of its public key).
    fn test_key() -> (SigningKey, String) {
        let key = SigningKey::from_slice(&[7u8; 32]).expect("scalar in range");
        let spki = key
            .verifying_key()
            .to_public_key_der()
            .expect("encodes")
            .into_vec();
        (key, STANDARD.encode(spki))
    }

    #[test]
    fn the_published_examples_pass() {
        let v = sendgrid(&[KEY], None);
        assert_eq!(
            check(&v, &signed(SIG, "1600112502"), BODY.as_bytes(), TS),
            Ok(())
        );
        let v = sendgrid(&[MULTI_KEY], None);
        let h = signed(MULTI_SIG, "1619651159");
        assert_eq!(check(&v, &h, MULTI_BODY.as_bytes(), MULTI_TS), Ok(()));
    }

    #[test]
    fn any_configured_key_passes() {
        let v = sendgrid(&[MULTI_KEY, KEY], None);
        assert_eq!(
            check(&v, &signed(SIG, "1600112502"), BODY.as_bytes(), TS),
            Ok(())
        );
        let h = signed(MULTI_SIG, "1619651159");
        assert_eq!(check(&v, &h, MULTI_BODY.as_bytes(), MULTI_TS), Ok(()));
        let v = sendgrid(&[MULTI_KEY], None);
        assert_eq!(
            check(&v, &signed(SIG, "1600112502"), BODY.as_bytes(), TS),
            Err(Failure::SignatureMismatch)
        );
    }

    #[test]
    fn failures_have_their_labels() {
        let v = sendgrid(&[KEY], None);
        let body = BODY.as_bytes();
        let trimmed = body.strip_suffix(b"\r\n").expect("ends in CRLF");
        let cases = [
            (
                headers(&[("X-Twilio-Email-Event-Webhook-Timestamp", "1600112502")]),
                body,
                Failure::MissingHeader,
            ),
            (
                headers(&[("X-Twilio-Email-Event-Webhook-Signature", SIG)]),
                body,
                Failure::MissingHeader,
            ),
            (
                signed("not base64!", "1600112502"),
                body,
                Failure::MalformedHeader,
            ),
            (signed("", "1600112502"), body, Failure::MalformedHeader),
            // Base64, but not a DER signature.
            (signed("AAAA", "1600112502"), body, Failure::MalformedHeader),
            (signed(SIG, "timestamp"), body, Failure::BadTimestamp),
            (signed(SIG, "1600112502 "), body, Failure::BadTimestamp),
            (signed(SIG, "1600112503"), body, Failure::SignatureMismatch),
            (
                signed(SIG, "1600112502"),
                b"payload".as_slice(),
                Failure::SignatureMismatch,
            ),
            (
                signed(SIG, "1600112502"),
                trimmed,
                Failure::SignatureMismatch,
            ),
            (
                signed(MULTI_SIG, "1600112502"),
                body,
                Failure::SignatureMismatch,
            ),
        ];
        for (h, body, want) in cases {
            assert_eq!(check(&v, &h, body, TS), Err(want), "{h:?}");
        }
    }

    #[test]
    fn no_window_unless_a_tolerance_is_configured() {
        let h = signed(SIG, "1600112502");
        let body = BODY.as_bytes();
        assert_eq!(
            check(&sendgrid(&[KEY], None), &h, body, TS + 86_400 * 365),
            Ok(())
        );
        let tight = sendgrid(&[KEY], Some(Duration::from_secs(600)));
        assert_eq!(check(&tight, &h, body, TS + 600), Ok(()));
        assert_eq!(check(&tight, &h, body, TS + 601), Err(Failure::Expired));
        assert_eq!(check(&tight, &h, body, TS - 601), Err(Failure::FromFuture));
    }

    #[test]
    fn unusable_keys_are_refused_without_showing_them() {
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{KEY}\n-----END PUBLIC KEY-----");
        let secrets = [
            KEY,
            &pem,
            // Not base64.
            "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g",
            // An Ed25519 SPKI (RFC 8410 example), not P-256.
            "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=",
            // A P-256 SPKI whose point is not on the curve (last byte changed).
            "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+w==",
        ];
        let e = refused(SchemeName::Sendgrid, &secrets, &Options::default());
        let indexes: Vec<usize> = e.secrets.iter().map(|b| b.index).collect();
        assert_eq!(indexes, [1, 2, 3, 4], "{e:?}");
        for b in &e.secrets {
            assert!(
                !b.message.contains("MFkw") && !b.message.contains("MCow"),
                "{b:?}"
            );
        }
        assert!(e.secrets[0].message.contains("PEM"), "{e:?}");
    }

    /// Signs `ts ‖ body` with the fixed test key.
    fn sign(key: &SigningKey, ts: &str, body: &[u8]) -> Vec<u8> {
        let sig: Signature = key.sign_digest(super::signed_digest(ts, body));
        sig.to_der().as_bytes().to_vec()
    }

    proptest! {
        // ECDSA is slow in debug builds; fewer cases still cover every position class.
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn any_single_byte_change_of_body_or_signature_fails(
            body in proptest::collection::vec(any::<u8>(), 1..256),
            i in any::<prop::sample::Index>(),
            x in 1u8..,
            in_body in any::<bool>(),
        ) {
            let (key, public) = test_key();
            let v = sendgrid(&[&public], None);
            let mut der = sign(&key, "1700000000", &body);
            prop_assert_eq!(
                check(&v, &signed(&STANDARD.encode(&der), "1700000000"), &body, 0),
                Ok(())
            );
            let mut body = body;
            if in_body {
                let i = i.index(body.len());
                body[i] ^= x;
            } else {
                let i = i.index(der.len());
                der[i] ^= x;
            }
            let h = signed(&STANDARD.encode(&der), "1700000000");
            prop_assert!(check(&v, &h, &body, 0).is_err());
        }

        #[test]
        fn arbitrary_header_bytes_never_panic(
            value in proptest::collection::vec(any::<u8>(), 0..128),
            which in 0..2usize,
        ) {
            let v = sendgrid(&[KEY], Some(Duration::from_secs(300)));
            let mut h = signed(SIG, "1600112502");
            let name = [
                "x-twilio-email-event-webhook-signature",
                "x-twilio-email-event-webhook-timestamp",
            ][which];
            if set_raw(&mut h, name, &value) {
                prop_assert!(check(&v, &h, BODY.as_bytes(), TS).is_err());
            }
        }
    }
}
