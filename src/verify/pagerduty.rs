//! PagerDuty (v3 webhooks): `X-PagerDuty-Signature: v1=<hex>[,v1=<hex>…]`, each an HMAC-SHA256
//! of the body with a subscription secret string as the key (it looks like base64 but is used
//! as is); no timestamp. Several entries let PagerDuty rotate a secret without downtime: any
//! match passes, as does any configured secret.
//!
//! Like go-pagerduty (`webhookv3.VerifySignature`), which the shared vectors follow: the list is
//! split on `,` exactly (no trimming); entries not starting `v1=` or not hex are skipped, and if
//! none is left the header is malformed; hex of either case is accepted (it hex-decodes before
//! comparing; the docs' JS/Python samples compare lowercase strings); an empty body is refused
//! (`ErrMalformedBody`, here `malformed_body`).

use super::{Failure, Request, header, mac::any_case_hex};

const SIGNATURE: &str = "x-pagerduty-signature";

pub(super) use super::mac::Secrets as Keys;

pub(super) fn verify(keys: &Keys, req: &Request<'_>) -> Result<(), Failure> {
    let value = header(req.headers, SIGNATURE)?;
    if req.body.is_empty() {
        return Err(Failure::MalformedBody);
    }
    let sigs: Vec<[u8; 32]> = value
        .split(',')
        .filter_map(|entry| entry.strip_prefix("v1="))
        .filter_map(any_case_hex::<32>)
        .collect();
    if sigs.is_empty() {
        return Err(Failure::MalformedHeader);
    }
    if keys.any_sha256(&[req.body], &sigs) {
        Ok(())
    } else {
        Err(Failure::SignatureMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::super::mac::testing::{flip, headers, run, sha256, with_raw};
    use super::{Failure, SIGNATURE};
    use crate::verify::SchemeName;

    /// The example from PagerDuty's developer docs (`incident.priority_updated`).
    const SECRET: &str = "lDQHScfUeXUKaQRNF+8XIiDKZ7XX3itBAYzwU0TARw8lJqRnkKl2iB1anSb0Z+IK";
    const BODY: &str = concat!(
        r#"{"event":{"id":"01BWDWL3NYY7LUFPZCC28QUCMK","event_type":"incident.priority_updated","#,
        r#""resource_type":"incident","occurred_at":"2021-04-26T17:36:27.458Z","agent":{"#,
        r#""html_url":"https://acme.pagerduty.com/users/PLH1HKV","id":"PLH1HKV","#,
        r#""self":"https://api.pagerduty.com/users/PLH1HKV","summary":"Tenex Engineer","#,
        r#""type":"user_reference"},"client":null,"data":{"id":"PGR0VU2","type":"incident","#,
        r#""self":"https://api.pagerduty.com/incidents/PGR0VU2","#,
        r#""html_url":"https://acme.pagerduty.com/incidents/PGR0VU2","number":2,"#,
        r#""status":"triggered","title":"A little bump in the road","service":{"#,
        r#""html_url":"https://acme.pagerduty.com/services/PF9KMXH","id":"PF9KMXH","#,
        r#""self":"https://api.pagerduty.com/services/PF9KMXH","summary":"API Service","#,
        r#""type":"service_reference"},"assignees":[{"#,
        r#""html_url":"https://acme.pagerduty.com/users/PTUXL6G","id":"PTUXL6G","#,
        r#""self":"https://api.pagerduty.com/users/PTUXL6G","summary":"User 123","#,
        r#""type":"user_reference"}],"escalation_policy":{"#,
        r#""html_url":"https://acme.pagerduty.com/escalation_policies/PUS0KTE","id":"PUS0KTE","#,
        r#""self":"https://api.pagerduty.com/escalation_policies/PUS0KTE","summary":"Default","#,
        r#""type":"escalation_policy_reference"},"teams":[{"#,
        r#""html_url":"https://acme.pagerduty.com/teams/PFCVPS0","id":"PFCVPS0","#,
        r#""self":"https://api.pagerduty.com/teams/PFCVPS0","summary":"Engineering","#,
        r#""type":"team_reference"}],"priority":{"#,
        r#""html_url":"https://acme.pagerduty.com/account/incident_priorities","id":"PSO75BM","#,
        r#""self":"https://api.pagerduty.com/priorities/PSO75BM","summary":"P1","#,
        r#""type":"priority_reference"},"urgency":"high","conference_bridge":{"#,
        r#""conference_number":1000,"conference_url":"https://example.com"},"#,
        r#""resolve_reason":null}}}"#,
    );
    const SIG: &str = "v1=0c0b9495b893a39e70d1fea2fe11fbe0a825f88b9f67846f6cc07dd2bc5476cd";
    const OTHER: &str = "v1=130dcacb53a94d983a37cf2acba98e805a1c37185309ba56fdcccbcf00d6dd8b";
    const NOW: i64 = 1_700_000_000;

    fn check(h: &[(&str, &str)], body: &str) -> Result<(), Failure> {
        run(
            SchemeName::Pagerduty,
            &[SECRET],
            None,
            &headers(h),
            body.as_bytes(),
            NOW,
        )
    }

    #[test]
    fn published_example_verifies() {
        assert_eq!(check(&[("X-PagerDuty-Signature", SIG)], BODY), Ok(()));
        // Rotation: PagerDuty sends one entry per secret; any may match, in any position.
        assert_eq!(
            check(&[(SIGNATURE, &format!("{OTHER},{SIG}"))], BODY),
            Ok(())
        );
        assert_eq!(
            check(&[(SIGNATURE, &format!("{SIG},{OTHER}"))], BODY),
            Ok(())
        );
        // Unknown versions and unreadable entries are skipped.
        assert_eq!(
            check(&[(SIGNATURE, &format!("v2=abc,v1=zz,{SIG}"))], BODY),
            Ok(())
        );
        // go-pagerduty hex-decodes, so uppercase passes.
        let upper = SIG.to_uppercase().replacen("V1=", "v1=", 1);
        assert_eq!(check(&[(SIGNATURE, &upper)], BODY), Ok(()));
    }

    #[test]
    fn any_configured_secret_passes() {
        let h = headers(&[(SIGNATURE, SIG)]);
        let r = run(
            SchemeName::Pagerduty,
            &["rotated", SECRET],
            None,
            &h,
            BODY.as_bytes(),
            NOW,
        );
        assert_eq!(r, Ok(()));
    }

    #[test]
    fn missing_header() {
        assert_eq!(check(&[], BODY), Err(Failure::MissingHeader));
    }

    #[test]
    fn malformed_header() {
        let v2 = SIG.replacen("v1=", "v2=", 1);
        let spaced = format!("{OTHER}, {SIG}");
        let bare = SIG["v1=".len()..].to_string();
        let short = SIG[..SIG.len() - 2].to_string();
        for bad in [&v2, &bare, &short, "v1=", "", ","] {
            assert_eq!(
                check(&[(SIGNATURE, bad)], BODY),
                Err(Failure::MalformedHeader),
                "{bad:?}"
            );
        }
        // ` v1=…` (after a space) is not a `v1` entry, as in go-pagerduty: only `OTHER` is read.
        assert_eq!(
            check(&[(SIGNATURE, &spaced)], BODY),
            Err(Failure::SignatureMismatch)
        );
        assert_eq!(
            check(&[(SIGNATURE, SIG), (SIGNATURE, SIG)], BODY),
            Err(Failure::MalformedHeader)
        );
    }

    #[test]
    fn malformed_body() {
        let empty = format!("v1={}", hex::encode(sha256(SECRET, &[b""])));
        assert_eq!(
            check(&[(SIGNATURE, &empty)], ""),
            Err(Failure::MalformedBody)
        );
    }

    #[test]
    fn signature_mismatch() {
        assert_eq!(
            check(&[(SIGNATURE, SIG)], &BODY.replace("P1", "P2")),
            Err(Failure::SignatureMismatch)
        );
        assert_eq!(
            check(&[(SIGNATURE, OTHER)], BODY),
            Err(Failure::SignatureMismatch)
        );
    }

    proptest::proptest! {
        #[test]
        fn any_single_byte_change_fails(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..256),
            i in proptest::prelude::any::<usize>(),
            delta in proptest::prelude::any::<u8>(),
        ) {
            let verify = |sig: &[u8; 32], body: &[u8]| {
                let h = headers(&[(SIGNATURE, &format!("v1={}", hex::encode(sig)))]);
                run(SchemeName::Pagerduty, &[SECRET], None, &h, body, NOW)
            };
            let mac = sha256(SECRET, &[&body]);
            proptest::prop_assert_eq!(verify(&mac, &body), Ok(()));
            let mut changed = body.clone();
            flip(&mut changed, i, delta);
            proptest::prop_assert_eq!(verify(&mac, &changed), Err(Failure::SignatureMismatch));
            let mut sig = mac;
            flip(&mut sig, i, delta);
            proptest::prop_assert_eq!(verify(&sig, &body), Err(Failure::SignatureMismatch));
        }

        #[test]
        fn arbitrary_header_bytes_never_panic(
            value in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100),
        ) {
            if let Some(h) = with_raw(&headers(&[]), SIGNATURE, &value) {
                let _ = run(SchemeName::Pagerduty, &[SECRET], None, &h, BODY.as_bytes(), NOW);
            }
        }
    }
}
