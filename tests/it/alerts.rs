//! Built-in alerts end to end: a failing target makes a rule fire after its `for`, every
//! receiver format gets the notification, the admin API and the metrics show it, and
//! recovery sends resolved.

use std::time::{Duration, Instant};

use crate::support::{Reply, Router, Target, blocking_get, client, eventually, send_bytes};

const WAIT: Duration = Duration::from_secs(20);

fn bodies(t: &Target) -> Vec<serde_json::Value> {
    t.all()
        .iter()
        .map(|s| serde_json::from_slice(&s.body).expect("receivers get JSON"))
        .collect()
}

/// The JSON receiver's notifications with `status` for `alert`.
fn json_with(t: &Target, alert: &str, status: &str) -> Vec<serde_json::Value> {
    bodies(t)
        .into_iter()
        .filter(|b| b["alert"] == alert && b["status"] == status)
        .collect()
}

fn admin_alerts(r: &Router) -> serde_json::Value {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", r.admin_port)).expect("connect");
    use std::io::{Read as _, Write as _};
    write!(
        s,
        "GET /api/v1/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-token\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).expect("alerts JSON")
}

fn firing_metric(r: &Router, alert: &str) -> Option<f64> {
    let (_, text) = blocking_get(r.admin_port, "/metrics")?;
    let series = format!("hookrouter_alerts_firing{{alert=\"{alert}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn a_failing_target_fires_after_for_in_every_format_and_recovery_resolves() {
    let target = Target::start(Reply {
        status: 503,
        ..Reply::default()
    })
    .await;
    let json = Target::start(Reply::default()).await;
    let slack = Target::start(Reply::default()).await;
    // The Alertmanager receiver fails the first time: the notification is retried.
    let am = Target::start(Reply {
        status: 500,
        ..Reply::default()
    })
    .await;
    let yaml = format!(
        r#"listen: [ {{ addr: "127.0.0.1:{{port}}" }} ]
admin: {{ addr: "127.0.0.1:{{admin}}", token: "test-token" }}
queue: {{ embedded: {{ path: "{{dir}}/data" }} }}
targets:
  billing:
    url: "{target}"
    retry: {{ max_attempts: 3, initial: 50ms, max_delay: 100ms, max_age: 1h }}
routes:
  - name: r
    path: /in
    dedup_window: 0s
    deliver: [ {{ target: billing }} ]
alerts:
  evaluate_every: 100ms
  rules:
    - {{ name: billing-failing, when: "delivery_failure_ratio > 0.5", for: 3s, window: 10s, min_events: 1, severity: critical }}
    - {{ name: never-long-enough, when: "delivery_failure_ratio > 0.5", for: 1h, window: 10s, min_events: 1 }}
  notify:
    - {{ url: "{json}", format: json }}
    - {{ url: "{slack}", format: slack }}
    - {{ url: "{am}", format: alertmanager, timeout: 2s }}
"#,
        target = target.url("/hook"),
        json = json.url("/json"),
        slack = slack.url("/slack"),
        am = am.url("/api/v2/alerts"),
    );
    let r = Router::start(&yaml);
    let c = client();
    let url = r.url("/in");
    let not_accepted = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let keep_sending = {
        let c = c.clone();
        let url = url.clone();
        let not_accepted = not_accepted.clone();
        tokio::spawn(async move {
            loop {
                let a = send_bytes(&c, &url, &[], b"{}".to_vec()).await;
                if a.status != 202 {
                    not_accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    assert!(eventually(WAIT, || target.count() > 0).await);
    let first_failure = Instant::now();
    assert!(
        eventually(WAIT, || !json_with(&json, "billing-failing", "firing")
            .is_empty())
        .await,
        "no firing notification"
    );
    let fired_after = first_failure.elapsed();
    assert!(
        fired_after >= Duration::from_secs(2),
        "fired {fired_after:?} after the first failure: `for: 3s` not honoured"
    );

    let firing = &json_with(&json, "billing-failing", "firing")[0];
    assert_eq!(firing["labels"]["target"], "billing");
    assert_eq!(firing["labels"]["severity"], "critical");
    assert_eq!(firing["labels"]["alertname"], "billing-failing");
    assert!(
        firing["value"].as_f64().is_some_and(|v| v > 0.5),
        "{firing}"
    );
    let summary = firing["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("delivery_failure_ratio"), "{summary}");
    assert!(
        firing["admin"]
            .as_str()
            .is_some_and(|a| a.ends_with("/api/v1/alerts")),
        "{firing}"
    );
    assert!(
        eventually(WAIT, || slack.all().iter().any(|s| {
            String::from_utf8_lossy(&s.body).contains("[FIRING] billing-failing")
        }))
        .await
    );
    // Alertmanager: refused once, then accepted on the retry.
    assert!(eventually(WAIT, || am.count() >= 1).await);
    am.set_reply(Reply::default());
    assert!(eventually(WAIT, || am.count() >= 2).await, "not retried");
    assert!(
        r.wait_log("alert notification refused", WAIT),
        "the 500 was not seen as a refusal"
    );
    let am_first = bodies(&am)[0].clone();
    assert_eq!(am_first[0]["labels"]["alertname"], "billing-failing");
    assert!(am_first[0]["startsAt"].is_string());
    assert!(am_first[0].get("endsAt").is_none(), "{am_first}");

    let listed = admin_alerts(&r);
    let names: Vec<_> = listed["alerts"]
        .as_array()
        .expect("list")
        .iter()
        .map(|a| a["alert"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(names, ["billing-failing"]);
    assert_eq!(firing_metric(&r, "billing-failing"), Some(1.0));
    assert_eq!(firing_metric(&r, "never-long-enough"), Some(0.0));

    // Recovery: the target answers 200 again, failures leave the window, resolved goes out.
    target.set_reply(Reply::default());
    assert!(
        eventually(WAIT, || !json_with(&json, "billing-failing", "resolved")
            .is_empty())
        .await,
        "no resolved notification"
    );
    keep_sending.abort();
    assert_eq!(
        not_accepted.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "every event was accepted"
    );
    let resolved = &json_with(&json, "billing-failing", "resolved")[0];
    assert!(resolved["ends_at"].is_string(), "{resolved}");
    assert!(
        eventually(WAIT, || slack.all().iter().any(|s| {
            String::from_utf8_lossy(&s.body).contains("[RESOLVED] billing-failing")
        }))
        .await
    );
    assert!(
        eventually(WAIT, || bodies(&am)
            .iter()
            .any(|b| b[0]["endsAt"].is_string()))
        .await
    );
    assert_eq!(firing_metric(&r, "billing-failing"), Some(0.0));
    assert_eq!(admin_alerts(&r)["alerts"], serde_json::json!([]));
    // The rule whose `for` was never reached sent nothing.
    assert!(
        bodies(&json)
            .iter()
            .all(|b| b["alert"] != "never-long-enough"),
        "a rule fired before its `for`"
    );
    // Once per state: one firing and one resolved (repeat is 4h by default).
    assert_eq!(json_with(&json, "billing-failing", "firing").len(), 1);
    assert_eq!(json_with(&json, "billing-failing", "resolved").len(), 1);
    assert!(r.logs().contains("alert firing"));
}

#[tokio::test]
async fn reload_failures_certificates_and_repeats() {
    let ca = crate::support::Ca::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key, _) = ca.leaf(&["alerts.test"]);
    crate::support::write(dir.path(), "leaf.pem", &cert);
    crate::support::write(dir.path(), "leaf.key", &key);
    let receiver = Target::start(Reply::default()).await;
    let app = Target::start(Reply::default()).await;
    let yaml = format!(
        r#"listen:
  - addr: "127.0.0.1:{{port}}"
    tls: [ {{ cert: leaf.pem, key: leaf.key }} ]
admin: {{ addr: "127.0.0.1:{{admin}}", token: "test-token" }}
targets:
  app: {{ url: "{app}" }}
routes:
  - {{ name: r, path: /in, mode: sync, deliver: [ {{ target: app }} ] }}
alerts:
  evaluate_every: 100ms
  repeat: 500ms
  rules:
    - {{ name: reload-failed, when: "reload_failed > 0" }}
    # Test certificates are valid for centuries: "more than a year left" fires at once.
    - {{ name: cert-far-off, when: "certificate_expiry_days > 365" }}
    - {{ name: cert-expiring, when: "certificate_expiry_days < 14" }}
  notify:
    - {{ url: "{rx}", format: json }}
"#,
        app = app.url("/"),
        rx = receiver.url("/alerts"),
    );
    let r = Router::start_in(dir, &yaml);
    assert!(
        eventually(WAIT, || json_with(&receiver, "cert-far-off", "firing")
            .len()
            >= 3)
        .await,
        "a firing alert is sent again every `repeat`"
    );
    let first = &json_with(&receiver, "cert-far-off", "firing")[0];
    assert!(
        first["labels"]["certificate"]
            .as_str()
            .is_some_and(|c| c.ends_with("leaf.pem")),
        "{first}"
    );
    assert_eq!(first["labels"]["listener"], format!("127.0.0.1:{}", r.port));
    assert!(json_with(&receiver, "cert-expiring", "firing").is_empty());
    assert!(json_with(&receiver, "reload-failed", "firing").is_empty());

    // A broken config file: the reload fails, the alert fires; a good one resolves it.
    let good = std::fs::read_to_string(&r.config).expect("config");
    std::fs::write(r.dir.path().join("broken.yaml"), "routes: [ not, a, config").expect("write");
    std::fs::rename(r.dir.path().join("broken.yaml"), &r.config).expect("rename");
    r.signal("HUP");
    assert!(
        eventually(WAIT, || !json_with(&receiver, "reload-failed", "firing")
            .is_empty())
        .await,
        "no alert for the failed reload"
    );
    std::fs::write(r.dir.path().join("good.yaml"), good).expect("write");
    std::fs::rename(r.dir.path().join("good.yaml"), &r.config).expect("rename");
    r.signal("HUP");
    assert!(
        eventually(WAIT, || !json_with(&receiver, "reload-failed", "resolved")
            .is_empty())
        .await,
        "no resolved notification after the good reload"
    );
}
