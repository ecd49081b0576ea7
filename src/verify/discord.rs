//! Discord interactions: `X-Signature-Ed25519: <hex>` is an Ed25519 signature over
//! `timestamp ‖ body` (no separator), `timestamp` being `X-Signature-Timestamp` as sent.
//!
//! The "secret" is the application's public key from the developer portal: 32 bytes in hex,
//! checked when the config is loaded (a weak, small-order key is refused too). The signature
//! is 64 bytes of hex in either case (discord-interactions parses pairs with
//! `parseInt(…, 16)`, so uppercase passes there too); verification is `verify_strict`.
//!
//! The timestamp is unix seconds and parsed strictly. discord-interactions checks no window,
//! so there is none by default; a configured tolerance applies both ways. Discord sends
//! deliberately bad signatures to check that an endpoint refuses them.

use std::time::Duration;

use ed25519_dalek::{Signature, VerifyingKey};

use super::{
    BadSecret, Failure, Request, Window, check_window, header, parse_secrets, parse_timestamp,
};

const SIGNATURE: &str = "x-signature-ed25519";
const TIMESTAMP: &str = "x-signature-timestamp";

pub(super) struct Keys(Vec<VerifyingKey>);

impl Keys {
    pub(super) fn new(secrets: &[&str]) -> Result<Keys, Vec<BadSecret>> {
        parse_secrets(secrets, parse_key).map(Keys)
    }
}

fn parse_key(s: &str) -> Result<VerifyingKey, &'static str> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(s, &mut bytes).map_err(|_| {
        "is not 64 hex digits: give the application's PUBLIC KEY from the Discord developer \
         portal"
    })?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| "is not an Ed25519 public key")?;
    if key.is_weak() {
        return Err("is a weak (small-order) Ed25519 key, which anyone can sign for");
    }
    Ok(key)
}

/// The signed message: the timestamp header as sent, then the body.
fn signed_content(timestamp: &str, body: &[u8]) -> Vec<u8> {
    [timestamp.as_bytes(), body].concat()
}

pub(super) fn verify(
    keys: &Keys,
    req: &Request<'_>,
    now: i64,
    tolerance: Option<Duration>,
) -> Result<(), Failure> {
    let sig_text = header(req.headers, SIGNATURE)?;
    let ts_text = header(req.headers, TIMESTAMP)?;
    let mut sig = [0u8; 64];
    hex::decode_to_slice(sig_text, &mut sig).map_err(|_| Failure::MalformedHeader)?;
    let sig = Signature::from_bytes(&sig);
    let ts = parse_timestamp(ts_text)?;
    let msg = signed_content(ts_text, req.body);
    if !keys.0.iter().any(|k| k.verify_strict(&msg, &sig).is_ok()) {
        return Err(Failure::SignatureMismatch);
    }
    check_window(ts, now, tolerance, Window::Both)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ed25519_dalek::{Signer, SigningKey};
    use proptest::prelude::*;

    use super::super::{
        Failure, Options, SchemeName, Verifier,
        testing::{check, headers, refused, set_raw, verifier},
    };

    /// RFC 8032 test 1 key pair, as in the shared vectors (discord-*).
    const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    /// The ping body of discord-interactions-js's tests.
    const BODY: &str = r#"{"id":"787053080478613555","token":"ThisIsATokenFromDiscordThatIsVeryLong","type":1,"version":1}"#;
    const TS: i64 = 1_700_000_000;
    /// The signature of `"1700000000" ‖ BODY` (vectors discord-07, lowercased).
    const SIG: &str = "f0bd878adcef1f6d475c9644421905bd02b5de38e0d3ecfc6f58a711962c69ccc8dd7c9db312f9bdf08b1e1b8182e27a844da728c5e0dbb5507bf9931c1ed80b";
    /// Another valid public key (RFC 8032 test 2).
    const OTHER: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";

    fn discord(keys: &[&str], tolerance: Option<Duration>) -> Verifier {
        verifier(SchemeName::Discord, keys, tolerance, &Options::default())
    }

    fn signed(sig: &str, ts: &str) -> http::HeaderMap {
        headers(&[("X-Signature-Ed25519", sig), ("X-Signature-Timestamp", ts)])
    }

    fn sign(ts: &str, body: &[u8]) -> String {
        let mut seed = [0u8; 32];
        hex::decode_to_slice(SEED, &mut seed).expect("seed");
        let key = SigningKey::from_bytes(&seed);
        hex::encode(key.sign(&super::signed_content(ts, body)).to_bytes())
    }

    #[test]
    fn the_vector_signature_passes_in_either_hex_case() {
        assert_eq!(sign("1700000000", BODY.as_bytes()), SIG);
        let v = discord(&[PUBLIC], None);
        assert_eq!(
            check(&v, &signed(SIG, "1700000000"), BODY.as_bytes(), TS),
            Ok(())
        );
        let upper = SIG.to_uppercase();
        assert_eq!(
            check(&v, &signed(&upper, "1700000000"), BODY.as_bytes(), TS),
            Ok(())
        );
        // Uppercase public keys are hex too.
        let v = discord(&[&PUBLIC.to_uppercase()], None);
        assert_eq!(
            check(&v, &signed(SIG, "1700000000"), BODY.as_bytes(), TS),
            Ok(())
        );
    }

    #[test]
    fn any_configured_key_passes() {
        let v = discord(&[OTHER, PUBLIC], None);
        assert_eq!(
            check(&v, &signed(SIG, "1700000000"), BODY.as_bytes(), TS),
            Ok(())
        );
        let v = discord(&[OTHER], None);
        assert_eq!(
            check(&v, &signed(SIG, "1700000000"), BODY.as_bytes(), TS),
            Err(Failure::SignatureMismatch)
        );
    }

    #[test]
    fn failures_have_their_labels() {
        let v = discord(&[PUBLIC], None);
        let body = BODY.as_bytes();
        let cases = [
            (
                headers(&[("X-Signature-Timestamp", "1700000000")]),
                body,
                Failure::MissingHeader,
            ),
            (
                headers(&[("X-Signature-Ed25519", SIG)]),
                body,
                Failure::MissingHeader,
            ),
            (
                signed(&SIG[2..], "1700000000"),
                body,
                Failure::MalformedHeader,
            ),
            (
                signed(&format!("{SIG}00"), "1700000000"),
                body,
                Failure::MalformedHeader,
            ),
            (
                signed(&format!("zz{}", &SIG[2..]), "1700000000"),
                body,
                Failure::MalformedHeader,
            ),
            (signed("", "1700000000"), body, Failure::MalformedHeader),
            (signed(SIG, "1700000000.0"), body, Failure::BadTimestamp),
            (signed(SIG, "-1700000000"), body, Failure::BadTimestamp),
            (signed(SIG, ""), body, Failure::BadTimestamp),
            (signed(SIG, "1700000001"), body, Failure::SignatureMismatch),
            (
                signed(SIG, "1700000000"),
                b"{}".as_slice(),
                Failure::SignatureMismatch,
            ),
        ];
        for (h, body, want) in cases {
            assert_eq!(check(&v, &h, body, TS), Err(want), "{h:?}");
        }
        let mut twice = signed(SIG, "1700000000");
        twice.append("x-signature-ed25519", http::HeaderValue::from_static(SIG));
        assert_eq!(check(&v, &twice, body, TS), Err(Failure::MalformedHeader));
    }

    #[test]
    fn no_window_unless_a_tolerance_is_configured() {
        let h = signed(SIG, "1700000000");
        let body = BODY.as_bytes();
        let open = discord(&[PUBLIC], None);
        assert_eq!(check(&open, &h, body, TS + 86_400 * 365), Ok(()));
        assert_eq!(check(&open, &h, body, 0), Ok(()));
        let tight = discord(&[PUBLIC], Some(Duration::from_secs(300)));
        assert_eq!(check(&tight, &h, body, TS + 300), Ok(()));
        assert_eq!(check(&tight, &h, body, TS + 301), Err(Failure::Expired));
        assert_eq!(check(&tight, &h, body, TS - 301), Err(Failure::FromFuture));
    }

    #[test]
    fn unusable_keys_are_refused_without_showing_them() {
        let secrets = [
            PUBLIC,
            // Not hex.
            "g75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            // 31 bytes.
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511",
            // The identity point: small order.
            "0100000000000000000000000000000000000000000000000000000000000000",
            // Not a point on the curve.
            "0200000000000000000000000000000000000000000000000000000000000000",
        ];
        let e = refused(SchemeName::Discord, &secrets, &Options::default());
        let indexes: Vec<usize> = e.secrets.iter().map(|b| b.index).collect();
        assert_eq!(indexes, [1, 2, 3, 4], "{e:?}");
        for (b, s) in e.secrets.iter().zip(&secrets[1..]) {
            assert!(!b.message.contains(&s[4..20]), "{b:?}");
        }
        assert!(e.secrets[2].message.contains("weak"), "{e:?}");
    }

    proptest! {
        #[test]
        fn any_single_byte_change_of_body_or_signature_fails(
            body in proptest::collection::vec(any::<u8>(), 1..256),
            i in any::<prop::sample::Index>(),
            x in 1u8..,
            in_body in any::<bool>(),
        ) {
            let v = discord(&[PUBLIC], None);
            let sig = sign("1700000000", &body);
            prop_assert_eq!(check(&v, &signed(&sig, "1700000000"), &body, TS), Ok(()));
            let mut body = body;
            let mut raw = hex::decode(&sig).expect("own signature");
            if in_body {
                let i = i.index(body.len());
                body[i] ^= x;
            } else {
                let i = i.index(raw.len());
                raw[i] ^= x;
            }
            prop_assert!(check(&v, &signed(&hex::encode(raw), "1700000000"), &body, TS).is_err());
        }

        #[test]
        fn arbitrary_header_bytes_never_panic(
            value in proptest::collection::vec(any::<u8>(), 0..160),
            which in 0..2usize,
        ) {
            let v = discord(&[PUBLIC], Some(Duration::from_secs(300)));
            let mut h = signed(SIG, "1700000000");
            if set_raw(&mut h, ["x-signature-ed25519", "x-signature-timestamp"][which], &value) {
                prop_assert!(check(&v, &h, BODY.as_bytes(), TS).is_err());
            }
        }
    }
}
