use base64::Engine;
use hmac::{Hmac, Mac};

use crate::support::{Reply, Router, Target, client, send};

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("hmac key");
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

const STRIPE_SECRET: &str = "whsec_test_secret";
const SVIX_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const GITHUB_SECRET: &str = "It's a Secret to Everybody";

fn stripe_header(body: &[u8], t: i64, secret: &str) -> String {
    let sig = hmac_sha256(
        secret.as_bytes(),
        &[t.to_string().as_bytes(), b".", body].concat(),
    );
    format!("t={t},v1={}", hex::encode(sig))
}

fn svix_signature(id: &str, t: i64, body: &[u8], secret: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("svix key");
    let sig = hmac_sha256(
        &key,
        &[id.as_bytes(), b".", t.to_string().as_bytes(), b".", body].concat(),
    );
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(sig)
    )
}

async fn router_with_three_providers() -> (Router, Target) {
    let target = Target::start(Reply::default()).await;
    let yaml = format!(
        r#"version: 1
listen: [ {{ addr: "127.0.0.1:{{port}}" }} ]
admin: {{ addr: "127.0.0.1:{{admin}}" }}
targets:
  app: {{ url: "{}" }}
routes:
  - name: stripe
    path: /hooks/stripe
    mode: sync
    verify: {{ scheme: stripe, secrets: ["whsec_old_rotated_out", "${{env:STRIPE_SECRET}}"] }}
    deliver: [ {{ target: app }} ]
  - name: clerk
    path: /hooks/clerk
    mode: sync
    verify: {{ scheme: svix, secrets: ["${{env:SVIX_SECRET}}"] }}
    deliver: [ {{ target: app }} ]
  - name: github
    path: /hooks/github
    mode: sync
    verify: {{ scheme: github, secrets: ["${{env:GITHUB_SECRET}}"] }}
    deliver: [ {{ target: app }} ]
"#,
        target.url("/in")
    );
    let env = [
        ("STRIPE_SECRET", STRIPE_SECRET.to_string()),
        ("SVIX_SECRET", SVIX_SECRET.to_string()),
        ("GITHUB_SECRET", GITHUB_SECRET.to_string()),
    ];
    let router = Router::start_with_env(tempfile::tempdir().expect("tempdir"), &yaml, &env);
    (router, target)
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_requests_reach_the_target_and_tampered_ones_get_401() {
    let (router, target) = router_with_three_providers().await;
    let c = client();
    let body: &'static [u8] = br#"{"id":"evt_1","type":"invoice.paid"}"#;
    let t = now();

    // Stripe: valid with the second (current) secret; tampered body, wrong secret, stale.
    let good = stripe_header(body, t, STRIPE_SECRET);
    let a = send(
        &c,
        "POST",
        &router.url("/hooks/stripe"),
        &[("stripe-signature", &good)],
        body,
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(target.count(), 1);
    // The event's type and id (Stripe: from the body) are in the request's log line.
    assert!(
        router.wait_log(
            "event_type=\"invoice.paid\" event_id=\"evt_1\"",
            std::time::Duration::from_secs(2)
        ),
        "{}",
        router.logs()
    );
    let tampered: &'static [u8] = br#"{"id":"evt_1","type":"invoice.paid" }"#;
    let cases = [
        (
            stripe_header(body, t, STRIPE_SECRET),
            tampered,
            "signature_mismatch",
        ),
        (
            stripe_header(body, t, "whsec_other"),
            body,
            "signature_mismatch",
        ),
        (
            stripe_header(body, t - 3600, STRIPE_SECRET),
            body,
            "expired",
        ),
        ("t=abc,v1=00".to_string(), body, "bad_timestamp"),
    ];
    for (header, payload, reason) in &cases {
        let a = send(
            &c,
            "POST",
            &router.url("/hooks/stripe"),
            &[("stripe-signature", header)],
            payload,
        )
        .await;
        assert_eq!(
            (a.status, &a.body[..]),
            (401, &b"unauthorized\n"[..]),
            "{reason}"
        );
        assert!(
            router.wait_log(
                &format!("reason=\"{reason}\""),
                std::time::Duration::from_secs(2)
            ),
            "{reason} not logged"
        );
    }
    let a = send(&c, "POST", &router.url("/hooks/stripe"), &[], body).await;
    assert_eq!(a.status, 401);
    assert!(router.wait_log(
        "reason=\"missing_header\"",
        std::time::Duration::from_secs(2)
    ));

    // Svix (Clerk).
    let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    let sig = svix_signature(id, t, body, SVIX_SECRET);
    let ts = t.to_string();
    let headers = [
        ("svix-id", id),
        ("svix-timestamp", ts.as_str()),
        ("svix-signature", sig.as_str()),
    ];
    assert_eq!(
        send(&c, "POST", &router.url("/hooks/clerk"), &headers, body)
            .await
            .status,
        200
    );
    assert_eq!(
        send(&c, "POST", &router.url("/hooks/clerk"), &headers, tampered)
            .await
            .status,
        401
    );
    let future = (t + 3600).to_string();
    let sig_future = svix_signature(id, t + 3600, body, SVIX_SECRET);
    let headers = [
        ("svix-id", id),
        ("svix-timestamp", future.as_str()),
        ("svix-signature", sig_future.as_str()),
    ];
    assert_eq!(
        send(&c, "POST", &router.url("/hooks/clerk"), &headers, body)
            .await
            .status,
        401
    );
    assert!(router.wait_log("reason=\"from_future\"", std::time::Duration::from_secs(2)));

    // GitHub, with the docs' published example.
    let hello: &'static [u8] = b"Hello, World!";
    let gh = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(
        send(
            &c,
            "POST",
            &router.url("/hooks/github"),
            &[("x-hub-signature-256", gh)],
            hello
        )
        .await
        .status,
        200
    );
    assert_eq!(
        send(
            &c,
            "POST",
            &router.url("/hooks/github"),
            &[("x-hub-signature-256", gh)],
            b"Hello, World?"
        )
        .await
        .status,
        401
    );

    assert_eq!(
        target.count(),
        3,
        "only the three valid requests reached the target"
    );
    // Secrets never reach the log.
    let logs = router.logs();
    for secret in [STRIPE_SECRET, SVIX_SECRET, GITHUB_SECRET] {
        assert!(!logs.contains(secret), "a secret is in the log");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn send_delivers_a_correctly_signed_sample_event() {
    let target = Target::start(Reply::default()).await;
    let yaml = format!(
        r#"version: 1
listen: [ {{ addr: "127.0.0.1:{{port}}" }} ]
admin: {{ addr: "127.0.0.1:{{admin}}" }}
targets:
  app: {{ url: "{}" }}
routes:
  - {{ name: stripe, path: /hooks/stripe, mode: sync, verify: {{ scheme: stripe, secrets: ["whsec_send_test"] }}, deliver: [ {{ target: app }} ] }}
  - {{ name: clerk, path: /hooks/clerk, mode: sync, verify: {{ scheme: svix, secrets: ["{SVIX_SECRET}"] }}, deliver: [ {{ target: app }} ] }}
"#,
        target.url("/in")
    );
    let router = Router::start(&yaml);
    let send = |args: Vec<String>| {
        std::process::Command::new(env!("CARGO_BIN_EXE_hookrouter"))
            .arg("send")
            .args(args)
            .output()
            .expect("run send")
    };
    let config = router.config.display().to_string();
    let out = send(vec![
        "--route".into(),
        "stripe".into(),
        "-c".into(),
        config.clone(),
        "--event".into(),
        "invoice.paid".into(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("HTTP/1.1 200 OK"));
    let seen = target.last();
    let body: serde_json::Value = serde_json::from_slice(&seen.body).expect("json body");
    assert_eq!(body["type"], "invoice.paid");
    assert_eq!(body["object"], "event");

    let out = send(vec!["--route".into(), "clerk".into(), "-c".into(), config]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(target.last().headers.contains_key("svix-signature"));

    // A wrong secret: the router refuses it and `send` exits 1 after printing the answer.
    let out = send(vec![
        "--scheme".into(),
        "stripe".into(),
        "--secret".into(),
        "whsec_wrong".into(),
        "--to".into(),
        router.url("/hooks/stripe"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("401"));
    assert_eq!(target.count(), 2);
}
