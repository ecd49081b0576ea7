//! Logs with `--log-format json`: one JSON object per line, a line per request and per
//! delivery attempt with the fields operators filter on, and never a body, a signature or a
//! secret.

use std::time::Duration;

use hmac::{Hmac, Mac};

use crate::support::{Reply, Router, Target, client, eventually, send_bytes};

const SECRET: &str = "log-test-secret-value";

#[tokio::test]
async fn json_lines_per_request_and_attempt_without_bodies_or_secrets() {
    let target = Target::start(Reply::default()).await;
    let yaml = format!(
        r#"listen: [ {{ addr: "127.0.0.1:{{port}}" }} ]
admin: {{ addr: "127.0.0.1:{{admin}}", token: "admin-token-value" }}
queue: {{ embedded: {{ path: "{{dir}}/data" }} }}
targets:
  t: {{ url: "{}" }}
routes:
  - name: gh
    path: /gh
    verify: {{ scheme: github, secrets: ["${{env:GH_SECRET}}"] }}
    deliver: [ {{ target: t }} ]
"#,
        target.url("/hook")
    );
    let r = Router::start_with_env(
        tempfile::tempdir().expect("tempdir"),
        &yaml,
        &[
            ("GH_SECRET", SECRET.to_string()),
            ("HOOKROUTER_LOG_FORMAT", "json".to_string()),
        ],
    );
    let body = br#"{"action":"opened","payload_marker":"body-content-marker"}"#.to_vec();
    let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).expect("key");
    m.update(&body);
    let signature = format!("sha256={}", hex::encode(m.finalize().into_bytes()));
    let headers = |sig: &str| {
        vec![
            ("x-github-event".to_string(), "issues".to_string()),
            ("x-github-delivery".to_string(), "delivery-77".to_string()),
            ("x-hub-signature-256".to_string(), sig.to_string()),
        ]
    };
    let c = client();
    let ok = send_bytes(&c, &r.url("/gh"), &headers(&signature), body.clone()).await;
    assert_eq!(ok.status, 202);
    let wrong = format!("sha256={}", "0f".repeat(32));
    let bad = send_bytes(&c, &r.url("/gh"), &headers(&wrong), body.clone()).await;
    assert_eq!(bad.status, 401);
    assert!(eventually(Duration::from_secs(10), || target.count() == 1).await);
    assert!(r.wait_log("\"delivery\"", Duration::from_secs(10)));

    let logs = r.logs();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let requests: Vec<_> = lines.iter().filter(|l| l["message"] == "request").collect();
    assert_eq!(requests.len(), 2, "{logs}");
    let accepted = requests
        .iter()
        .find(|l| l["outcome"] == "accepted")
        .expect("accepted line");
    assert_eq!(accepted["route"], "gh");
    assert_eq!(accepted["status"], 202);
    assert_eq!(accepted["event_id"], "delivery-77");
    assert_eq!(accepted["event_type"], "issues");
    assert!(accepted["id"].is_string(), "the router's event id");
    assert!(accepted["latency_ms"].is_number());
    let refused = requests
        .iter()
        .find(|l| l["outcome"] == "rejected")
        .expect("rejected line");
    assert_eq!(refused["reason"], "signature_mismatch");
    assert_eq!(refused["status"], 401);
    let attempt = lines
        .iter()
        .find(|l| l["message"] == "delivery")
        .expect("delivery line");
    assert_eq!(attempt["target_name"], "t");
    assert_eq!(attempt["attempt"], 1);
    assert_eq!(attempt["status"], 200);
    assert_eq!(attempt["result"], "delivered");
    assert_eq!(
        attempt["id"].as_str().or(attempt["event_id"].as_str()),
        accepted["id"].as_str()
    );

    for secret in [
        SECRET,
        "admin-token-value",
        &signature,
        "body-content-marker",
        &wrong,
    ] {
        assert!(!logs.contains(secret), "the log contains `{secret}`");
    }
}
