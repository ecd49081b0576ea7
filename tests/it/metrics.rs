//! `/metrics` on the admin listener: exact values after a scripted sequence of requests,
//! deliveries and reloads; promtool accepts the output; random paths and event types never
//! grow the number of series.

use std::{collections::BTreeMap, time::Duration};

use hmac::{Hmac, Mac};

use crate::support::{Reply, Router, Target, blocking_get, client, eventually, send_bytes};

const SECRET: &str = "metrics-test-secret";
const WAIT: Duration = Duration::from_secs(10);

fn github_signature(body: &[u8]) -> String {
    let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).expect("key");
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

/// One config, two variants: `extra` adds a line to route `closed` to make a reload change
/// something.
fn config(ok: &str, bad: &str, extra: &str) -> String {
    format!(
        r#"listen: [ {{ addr: "127.0.0.1:{{port}}" }} ]
admin: {{ addr: "127.0.0.1:{{admin}}", token: "test-token" }}
queue: {{ embedded: {{ path: "{{dir}}/data" }} }}
targets:
  ok: {{ url: "{ok}" }}
  bad: {{ url: "{bad}" }}
routes:
  - name: gh
    path: /gh
    verify: {{ scheme: github, secrets: ["${{env:GH_SECRET}}"] }}
    deliver: [ {{ target: ok }}, {{ target: bad }} ]
  - name: closed
    path: /closed
    allow_ips: ["192.0.2.0/24"]
    deliver: [ {{ target: ok }} ]{extra}
  - name: open
    path: /open
    dedup_window: 0s
    event: {{ type: "body:/type", id: "body:/id" }}
    deliver: [ {{ target: ok }} ]
"#
    )
}

async fn github(r: &Router, id: &str, signed: bool) -> u16 {
    let body = format!(r#"{{"action":"opened","n":"{id}"}}"#).into_bytes();
    let sig = if signed {
        github_signature(&body)
    } else {
        github_signature(b"something else")
    };
    send_bytes(
        &client(),
        &r.url("/gh"),
        &[
            ("content-type".into(), "application/json".into()),
            ("x-github-event".into(), "pull_request".into()),
            ("x-github-delivery".into(), id.into()),
            ("x-hub-signature-256".into(), sig),
        ],
        body,
    )
    .await
    .status
}

/// The samples of a scrape: `name{labels}` → value.
fn scrape(r: &Router) -> (String, BTreeMap<String, f64>) {
    let (status, text) = blocking_get(r.admin_port, "/metrics").expect("scrape");
    assert_eq!(status, 200);
    let mut samples = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        samples.insert(series.to_string(), value.parse().expect("value"));
    }
    (text, samples)
}

fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no series {series}; have:\n{samples:#?}"))
}

/// `promtool check metrics` on a scrape (Debian package `prometheus`, installed by ./test.sh).
fn promtool_accepts(text: &str) {
    use std::io::Write as _;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is needed (Debian package `prometheus`; ./test.sh installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool ran");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_scripted_sequence_gives_exact_values_and_promtool_accepts_them() {
    let ok = Target::start(Reply::default()).await;
    let bad = Target::start(Reply {
        status: 400,
        ..Reply::default()
    })
    .await;
    let yaml = config(&ok.url("/"), &bad.url("/"), "");
    let r = Router::start_with_env(
        tempfile::tempdir().expect("tempdir"),
        &yaml,
        &[("GH_SECRET", SECRET.to_string())],
    );

    // 3 accepted, 1 duplicate, 2 bad signatures, 1 refused by the allowlist, 1 unmatched path.
    for id in ["d-1", "d-2", "d-3"] {
        assert_eq!(github(&r, id, true).await, 202);
    }
    assert_eq!(github(&r, "d-2", true).await, 200);
    assert_eq!(github(&r, "d-4", false).await, 401);
    assert_eq!(github(&r, "d-5", false).await, 401);
    let post = |path: &str| {
        let url = r.url(path);
        async move {
            send_bytes(&client(), &url, &[], b"{}".to_vec())
                .await
                .status
        }
    };
    assert_eq!(post("/closed").await, 403);
    assert_eq!(post("/nowhere").await, 404);
    // Each accepted event: delivered to `ok`, a dead letter at `bad` (400 is not retried).
    assert!(eventually(WAIT, || ok.count() == 3 && bad.count() == 3).await);
    // The targets count a request when it arrives; the router records the outcome once the
    // answer is read: wait for the router's side of every delivery.
    let settled = eventually(WAIT, || {
        let (_, s) = scrape(&r);
        s.get(r#"hookrouter_dead_letters{target="bad"}"#) == Some(&3.0)
            && s.get(r#"hookrouter_deliveries_total{result="delivered",route="gh",target="ok"}"#)
                == Some(&3.0)
            && s.get(r#"hookrouter_queue_depth{target="ok"}"#) == Some(&0.0)
    })
    .await;
    assert!(settled, "dead letters never reached 3");

    let (text, s) = scrape(&r);
    let requests = |route: &str, outcome: &str| {
        value(
            &s,
            &format!(r#"hookrouter_requests_total{{outcome="{outcome}",route="{route}"}}"#),
        )
    };
    assert_eq!(requests("gh", "accepted"), 3.0);
    assert_eq!(requests("gh", "duplicate"), 1.0);
    assert_eq!(requests("gh", "signature_mismatch"), 2.0);
    assert_eq!(requests("closed", "ip_not_allowed"), 1.0);
    assert_eq!(requests("_none", "no_route"), 1.0);
    assert_eq!(
        value(
            &s,
            r#"hookrouter_verification_failures_total{reason="signature_mismatch",route="gh"}"#
        ),
        2.0
    );
    assert_eq!(
        value(&s, r#"hookrouter_ip_denied_total{route="closed"}"#),
        1.0
    );
    assert_eq!(
        value(
            &s,
            r#"hookrouter_request_duration_seconds_count{route="gh"}"#
        ),
        6.0
    );
    assert_eq!(
        value(&s, r#"hookrouter_request_body_bytes_count{route="gh"}"#),
        6.0
    );
    assert_eq!(
        value(
            &s,
            r#"hookrouter_deliveries_total{result="delivered",route="gh",target="ok"}"#
        ),
        3.0
    );
    assert_eq!(
        value(
            &s,
            r#"hookrouter_deliveries_total{result="dead",route="gh",target="bad"}"#
        ),
        3.0
    );
    assert_eq!(
        value(
            &s,
            r#"hookrouter_dead_letters_added_total{route="gh",target="bad"}"#
        ),
        3.0
    );
    assert_eq!(value(&s, r#"hookrouter_dead_letters{target="ok"}"#), 0.0);
    assert_eq!(
        value(
            &s,
            r#"hookrouter_delivery_attempt_duration_seconds_count{target="ok"}"#
        ),
        3.0
    );
    assert_eq!(value(&s, r#"hookrouter_queue_depth{target="ok"}"#), 0.0);
    assert_eq!(
        value(
            &s,
            r#"hookrouter_queue_oldest_pending_age_seconds{target="ok"}"#
        ),
        0.0
    );
    // 3 consecutive 400s are answers, not failures: the breaker stays closed.
    assert_eq!(
        value(&s, r#"hookrouter_circuit_breaker_state{target="bad"}"#),
        0.0
    );
    assert_eq!(value(&s, "hookrouter_config_generation"), 1.0);
    assert_eq!(value(&s, "hookrouter_config_last_reload_success"), 1.0);
    assert!(value(&s, "hookrouter_queue_disk_bytes") > 0.0);
    assert_eq!(
        value(
            &s,
            &format!(
                r#"hookrouter_build_info{{version="{}"}}"#,
                env!("CARGO_PKG_VERSION")
            )
        ),
        1.0
    );
    assert!(
        !s.keys().any(|k| k.contains("retries_total")),
        "no retry happened"
    );
    promtool_accepts(&text);

    // A reload that applies, then one that does not.
    r.write_config(&config(
        &ok.url("/"),
        &bad.url("/"),
        "\n    max_body: 64KiB",
    ));
    r.signal("HUP");
    assert!(
        eventually(WAIT, || scrape(&r).1.get("hookrouter_config_generation")
            == Some(&2.0))
        .await
    );
    r.write_config("routes: [ this is not a config");
    r.signal("HUP");
    assert!(
        eventually(WAIT, || scrape(&r)
            .1
            .get("hookrouter_config_last_reload_success")
            == Some(&0.0))
        .await
    );
    let (text, s) = scrape(&r);
    assert_eq!(
        value(&s, r#"hookrouter_config_reloads_total{result="success"}"#),
        1.0
    );
    assert!(value(&s, r#"hookrouter_config_reloads_total{result="failure"}"#) >= 1.0);
    assert_eq!(value(&s, "hookrouter_config_generation"), 2.0);
    promtool_accepts(&text);
}

#[tokio::test]
async fn random_paths_and_event_types_do_not_grow_the_series() {
    let ok = Target::start(Reply::default()).await;
    let yaml = config(&ok.url("/"), &ok.url("/"), "");
    let r = Router::start_with_env(
        tempfile::tempdir().expect("tempdir"),
        &yaml,
        &[("GH_SECRET", SECRET.to_string())],
    );
    // Warm up every series the loop below can touch, then count.
    let c = client();
    let open = r.url("/open");
    let first = send_bytes(&c, &open, &[], br#"{"type":"warm","id":"w"}"#.to_vec()).await;
    assert_eq!(first.status, 202);
    assert_eq!(
        send_bytes(&c, &r.url("/warm-up-path"), &[], Vec::new())
            .await
            .status,
        404
    );
    assert!(eventually(WAIT, || ok.count() == 1).await);
    let (_, before) = scrape(&r);

    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..20u32 {
        let c = c.clone();
        let base = r.url("");
        tasks.spawn(async move {
            let mut statuses = BTreeMap::<u16, u32>::new();
            for i in 0..500u32 {
                let n = worker * 1000 + i;
                let tag = format!("{:08x}", fastrand::u64(..));
                let (url, body) = if i % 2 == 0 {
                    (format!("{base}/p-{tag}/{n}"), Vec::new())
                } else {
                    (
                        format!("{base}/open"),
                        format!(r#"{{"type":"type.{tag}","id":"evt_{tag}"}}"#).into_bytes(),
                    )
                };
                let status = send_bytes(&c, &url, &[], body).await.status;
                *statuses.entry(status).or_default() += 1;
            }
            statuses
        });
    }
    let mut statuses = BTreeMap::<u16, u32>::new();
    while let Some(done) = tasks.join_next().await {
        for (k, v) in done.expect("task") {
            *statuses.entry(k).or_default() += v;
        }
    }
    assert_eq!(statuses.values().sum::<u32>(), 10_000);
    assert_eq!(statuses.get(&404), Some(&5000), "{statuses:?}");
    assert_eq!(statuses.get(&202), Some(&5000), "{statuses:?}");

    let (text, after) = scrape(&r);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "the set of series changed"
    );
    assert!(!text.contains("p-"), "a path became a label value");
    assert!(
        !text.contains("type."),
        "an event type became a label value"
    );
    assert_eq!(
        value(
            &after,
            r#"hookrouter_requests_total{outcome="no_route",route="_none"}"#
        ),
        5001.0
    );
    assert_eq!(
        value(
            &after,
            r#"hookrouter_requests_total{outcome="accepted",route="open"}"#
        ),
        5001.0
    );
}

#[tokio::test]
async fn certificate_expiry_and_failed_tls_handshakes() {
    let ca = crate::support::Ca::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key, der) = ca.leaf(&["metrics.test"]);
    crate::support::write(dir.path(), "leaf.pem", &cert);
    crate::support::write(dir.path(), "leaf.key", &key);
    let target = Target::start(Reply::default()).await;
    let r = Router::start_in(
        dir,
        &format!(
            r#"listen:
  - addr: "127.0.0.1:{{port}}"
    tls: [ {{ cert: leaf.pem, key: leaf.key }} ]
admin: {{ addr: "127.0.0.1:{{admin}}" }}
targets:
  t: {{ url: "{}" }}
routes:
  - {{ name: test, path: /hooks/test, mode: sync, deliver: [ {{ target: t }} ] }}
"#,
            target.url("/in")
        ),
    );
    let (_, leaf) = x509_parser::parse_x509_certificate(&der).expect("leaf parses");
    let not_after = leaf.validity().not_after.timestamp() as f64;
    let (text, s) = scrape(&r);
    let expiry: Vec<_> = s
        .iter()
        .filter(|(k, _)| k.starts_with("hookrouter_certificate_expiry_timestamp_seconds{"))
        .collect();
    assert_eq!(expiry.len(), 1, "{expiry:?}");
    let (series, v) = expiry[0];
    assert_eq!(*v, not_after);
    assert!(series.contains(&format!(r#"listener="127.0.0.1:{}""#, r.port)));
    assert!(series.contains("leaf.pem"), "{series}");
    assert!(
        !s.contains_key("hookrouter_tls_handshake_failures_total") || {
            value(&s, "hookrouter_tls_handshake_failures_total") == 0.0
        }
    );
    promtool_accepts(&text);

    // Not TLS at all: the handshake fails.
    for _ in 0..2 {
        crate::support::raw(
            r.addr(),
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            Duration::from_millis(300),
        )
        .await;
    }
    assert!(
        eventually(WAIT, || scrape(&r)
            .1
            .get("hookrouter_tls_handshake_failures_total")
            == Some(&2.0))
        .await
    );
}
