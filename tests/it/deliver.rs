//! Async mode end to end: the real router stores events, answers 202 and delivers them to real
//! HTTP targets on 127.0.0.1 — fan-out with filters, retries, dead letters, dedup, versions,
//! signing, resume after a crash, and a store that cannot write.

use std::time::{Duration, Instant};

use crate::support::{Reply, Router, Target, client, eventually, send_bytes};

/// The config head every test here shares: one plain listener, an admin listener and the
/// store in the test's folder.
fn head(targets: &str) -> String {
    format!(
        r#"listen:
  - addr: "127.0.0.1:{{port}}"
admin: {{ addr: "127.0.0.1:{{admin}}", token: "test-token" }}
queue: {{ embedded: {{ path: "{{dir}}/data" }} }}
targets:
{targets}
"#
    )
}

/// One route `r` at `/in` delivering every event to target `t`.
const ONE_ROUTE: &str = r#"routes:
  - name: r
    path: /in
    deliver: [ { target: t } ]
"#;

/// Fast retries for tests: 4 attempts, delays of at most 100 ms.
const FAST_RETRY: &str = "retry: { max_attempts: 4, initial: 50ms, max_delay: 100ms, max_age: 1h }";

fn json_event(kind: &str, id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}","type":"{kind}","data":{{"n":1}}}}"#).into_bytes()
}

async fn post_event(r: &Router, path: &str, body: Vec<u8>) -> crate::support::Answer {
    send_bytes(
        &client(),
        &r.url(path),
        &[
            ("content-type".into(), "application/json".into()),
            ("x-provider-signature".into(), "sig-123".into()),
        ],
        body,
    )
    .await
}

fn header(seen: &crate::support::Seen, name: &str) -> String {
    seen.headers
        .get(name)
        .map(|v| v.to_str().unwrap_or("<binary>").to_string())
        .unwrap_or_default()
}

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn fans_out_to_every_matching_target_with_the_raw_body_and_router_headers() {
    let billing = Target::start(Reply::default()).await;
    let audit = Target::start(Reply::default()).await;
    let crm = Target::start(Reply::default()).await;
    let yaml = head(&format!(
        "  billing: {{ url: \"{}\" }}\n  audit: {{ url: \"{}\" }}\n  crm: {{ url: \"{}\" }}",
        billing.url("/billing"),
        audit.url("/audit"),
        crm.url("/crm")
    )) + r#"routes:
  - name: provider
    path: /hooks/provider
    event: { type: "body:/type", id: "body:/id" }
    deliver:
      - { target: billing, events: ["invoice.*"] }
      - { target: audit }
      - { target: crm, events: ["customer.created", "customer.deleted"] }
"#;
    let r = Router::start(&yaml);
    let invoice = json_event("invoice.payment.failed", "evt_1");
    let a = post_event(&r, "/hooks/provider", invoice.clone()).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let id = a.headers["hookrouter-event-id"]
        .to_str()
        .expect("test setup")
        .to_string();
    let b = post_event(
        &r,
        "/hooks/provider",
        json_event("customer.created", "evt_2"),
    )
    .await;
    assert_eq!(b.status, 202);
    let c = post_event(
        &r,
        "/hooks/provider",
        json_event("charge.refunded", "evt_3"),
    )
    .await;
    assert_eq!(c.status, 202);

    assert!(
        eventually(WAIT, || audit.count() == 3
            && billing.count() == 1
            && crm.count() == 1)
        .await
    );
    // Nothing more arrives: filters hold.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!((billing.count(), audit.count(), crm.count()), (1, 3, 1));

    let got = billing.last();
    assert_eq!(got.method, "POST");
    assert_eq!(got.uri, "/billing");
    assert_eq!(got.body, invoice, "the raw bytes, unchanged");
    assert_eq!(header(&got, "content-type"), "application/json");
    assert_eq!(header(&got, "x-provider-signature"), "sig-123");
    assert_eq!(header(&got, "hookrouter-event-id"), id);
    assert_eq!(header(&got, "hookrouter-route"), "provider");
    assert_eq!(header(&got, "hookrouter-attempt"), "1");
    assert_eq!(header(&got, "x-forwarded-for"), "127.0.0.1");
    // The same event reaches audit with the same id.
    let audit_ids: Vec<String> = audit
        .all()
        .iter()
        .map(|s| header(s, "hookrouter-event-id"))
        .collect();
    assert!(audit_ids.contains(&id), "{audit_ids:?}");
    assert_eq!(
        header(&crm.last(), "hookrouter-event-id"),
        b.headers["hookrouter-event-id"]
            .to_str()
            .expect("test setup")
    );
    assert!(
        r.logs().contains("outcome=\"accepted\"") || r.logs().contains("outcome=accepted"),
        "{}",
        r.logs()
    );
}

#[tokio::test]
async fn clients_cannot_plant_router_headers() {
    let t = Target::start(Reply::default()).await;
    let yaml = head(&format!("  t: {{ url: \"{}\" }}", t.url("/"))) + ONE_ROUTE;
    let r = Router::start(&yaml);
    let a = send_bytes(
        &client(),
        &r.url("/in"),
        &[
            ("hookrouter-event-id".into(), "forged".into()),
            ("hookrouter-attempt".into(), "99".into()),
        ],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(a.status, 202);
    assert!(eventually(WAIT, || t.count() == 1).await);
    let seen = t.last();
    assert_ne!(header(&seen, "hookrouter-event-id"), "forged");
    assert_eq!(header(&seen, "hookrouter-attempt"), "1");
    assert_eq!(
        seen.headers.get_all("hookrouter-event-id").iter().count(),
        1
    );
}

#[tokio::test]
async fn a_down_target_does_not_hold_up_the_others() {
    let fast = Target::start(Reply::default()).await;
    let slow = Target::start(Reply {
        delay: Duration::from_secs(5),
        ..Reply::default()
    })
    .await;
    // Nothing listens here: connections are refused.
    let down = format!("http://127.0.0.1:{}/", crate::support::free_port());
    let yaml = head(&format!(
        "  fast: {{ url: \"{}\" }}\n  slow: {{ url: \"{}\", timeout: 10s, max_in_flight: 2 }}\n  down: {{ url: \"{down}\", {FAST_RETRY} }}",
        fast.url("/"),
        slow.url("/")
    )) + r#"routes:
  - name: r
    path: /in
    deliver: [ { target: fast }, { target: slow }, { target: down } ]
"#;
    let r = Router::start(&yaml);
    let started = Instant::now();
    for i in 0..30 {
        let a = post_event(&r, "/in", json_event("x", &format!("e{i}"))).await;
        assert_eq!(a.status, 202);
    }
    assert!(
        eventually(Duration::from_secs(3), || fast.count() == 30).await,
        "fast got {}",
        fast.count()
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // The slow target has only its two slots busy; the down one's breaker opened.
    assert!(slow.count() <= 2, "max_in_flight: {}", slow.count());
    assert!(r.wait_log("circuit breaker open", WAIT), "{}", r.logs());
}

#[tokio::test]
async fn retries_honour_retry_after_then_deliver_with_rising_attempt_numbers() {
    let t = Target::start(Reply {
        status: 503,
        headers: vec![("retry-after", "1")],
        ..Reply::default()
    })
    .await;
    let yaml = head(&format!(
        "  t: {{ url: \"{}\", retry: {{ max_attempts: 5, initial: 10ms, max_delay: 5s, max_age: 1h }} }}",
        t.url("/")
    )) + ONE_ROUTE;
    let r = Router::start(&yaml);
    assert_eq!(
        post_event(&r, "/in", json_event("x", "e1")).await.status,
        202
    );
    assert!(eventually(WAIT, || t.count() == 2).await);
    t.set_reply(Reply::default());
    assert!(eventually(WAIT, || t.count() == 3).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.count(), 3, "delivered once it answered 200");
    let seen = t.all();
    let attempts: Vec<String> = seen
        .iter()
        .map(|s| header(s, "hookrouter-attempt"))
        .collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    let ids: Vec<String> = seen
        .iter()
        .map(|s| header(s, "hookrouter-event-id"))
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]));
    let _ = r;
}

#[tokio::test]
async fn retry_after_spaces_the_attempts() {
    let t = Target::start(Reply {
        status: 429,
        headers: vec![("retry-after", "1")],
        ..Reply::default()
    })
    .await;
    let yaml = head(&format!(
        "  t: {{ url: \"{}\", retry: {{ max_attempts: 3, initial: 10ms, max_delay: 5s, max_age: 1h }} }}",
        t.url("/")
    )) + ONE_ROUTE;
    let r = Router::start(&yaml);
    let started = Instant::now();
    assert_eq!(
        post_event(&r, "/in", json_event("x", "e1")).await.status,
        202
    );
    assert!(eventually(WAIT, || t.count() == 3).await);
    // Two waits of one second each, not the 10 ms backoff.
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    assert!(r.wait_log("attempts exhausted", WAIT), "{}", r.logs());
}

#[tokio::test]
async fn client_errors_go_to_dead_letters_at_once() {
    for status in [400u16, 404, 410, 422] {
        let t = Target::start(Reply {
            status,
            ..Reply::default()
        })
        .await;
        let yaml = head(&format!("  t: {{ url: \"{}\", {FAST_RETRY} }}", t.url("/"))) + ONE_ROUTE;
        let r = Router::start(&yaml);
        assert_eq!(
            post_event(&r, "/in", json_event("x", "e1")).await.status,
            202
        );
        assert!(eventually(WAIT, || t.count() == 1).await);
        assert!(r.wait_log("dead_letter", WAIT), "{status}: {}", r.logs());
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(t.count(), 1, "{status} is not retried");
    }
}

#[tokio::test]
async fn duplicates_are_answered_200_and_not_delivered_even_after_a_restart() {
    let t = Target::start(Reply::default()).await;
    let yaml = head(&format!("  t: {{ url: \"{}\" }}", t.url("/")))
        + r#"routes:
  - name: r
    path: /in
    event: { type: "body:/type", id: "body:/id" }
    deliver: [ { target: t } ]
  - name: other
    path: /other
    event: { type: "body:/type", id: "body:/id" }
    deliver: [ { target: t } ]
  - name: noid
    path: /noid
    deliver: [ { target: t } ]
"#;
    let mut r = Router::start(&yaml);
    let first = post_event(&r, "/in", json_event("x", "evt_same")).await;
    assert_eq!(first.status, 202);
    let id = first.headers["hookrouter-event-id"].clone();
    let again = post_event(&r, "/in", json_event("x", "evt_same")).await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again.headers["hookrouter-event-id"], id,
        "names the event accepted first"
    );
    // Another route keeps its own memory.
    assert_eq!(
        post_event(&r, "/other", json_event("x", "evt_same"))
            .await
            .status,
        202
    );
    // Without an id, the body's hash stands in.
    assert_eq!(
        post_event(&r, "/noid", b"{\"a\":1}".to_vec()).await.status,
        202
    );
    assert_eq!(
        post_event(&r, "/noid", b"{\"a\":1}".to_vec()).await.status,
        200
    );
    assert_eq!(
        post_event(&r, "/noid", b"{\"a\":2}".to_vec()).await.status,
        202
    );
    assert!(eventually(WAIT, || t.count() == 4).await);
    // The target counts a request before it answers: give the router time to get the answers
    // and record them, or the crash below would (rightly) repeat those deliveries.
    tokio::time::sleep(Duration::from_millis(300)).await;

    r.kill_hard();
    r.restart();
    let after = post_event(&r, "/in", json_event("x", "evt_same")).await;
    assert_eq!(after.status, 200, "the memory survives a crash");
    assert_eq!(after.headers["hookrouter-event-id"], id);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.count(), 4);
}

#[tokio::test]
async fn concurrent_duplicates_store_one_event() {
    let t = Target::start(Reply::default()).await;
    let yaml = head(&format!("  t: {{ url: \"{}\" }}", t.url("/")))
        + r#"routes:
  - name: r
    path: /in
    event: { type: "body:/type", id: "body:/id" }
    deliver: [ { target: t } ]
"#;
    let r = Router::start(&yaml);
    let url = r.url("/in");
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            send_bytes(&client(), &url, &[], json_event("x", "evt_race"))
                .await
                .status
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.expect("test setup"));
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        39,
        "{statuses:?}"
    );
    assert!(eventually(WAIT, || t.count() == 1).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.count(), 1);
}

#[tokio::test]
async fn versions_route_to_their_consumers_and_unknown_ones_are_refused() {
    let v1 = Target::start(Reply::default()).await;
    let v2 = Target::start(Reply::default()).await;
    let yaml = head(&format!(
        "  v1: {{ url: \"{}\" }}\n  v2: {{ url: \"{}\" }}",
        v1.url("/"),
        v2.url("/")
    )) + r#"routes:
  - name: strict
    path: /strict
    version: { from: "body:/api_version", accept: ["2024-06-*", "2024-09-30"], on_unknown: reject }
    deliver:
      - { target: v1, versions: ["2024-06-*"] }
      - { target: v2, versions: ["2024-09-30"] }
  - name: lenient
    path: /lenient
    version: { from: "header:X-Api-Version", accept: ["1", "2"], default: "1", on_unknown: deliver, header: X-Event-Version }
    deliver: [ { target: v1 } ]
"#;
    let r = Router::start(&yaml);
    let body = |v: &str| format!(r#"{{"type":"x","api_version":"{v}"}}"#).into_bytes();
    assert_eq!(
        post_event(&r, "/strict", body("2024-06-20")).await.status,
        202
    );
    assert_eq!(
        post_event(&r, "/strict", body("2024-09-30")).await.status,
        202
    );
    assert_eq!(
        post_event(&r, "/strict", body("2023-10-16")).await.status,
        400
    );
    assert_eq!(
        post_event(&r, "/strict", b"{\"type\":\"x\"}".to_vec())
            .await
            .status,
        400
    );
    assert!(eventually(WAIT, || v1.count() == 1 && v2.count() == 1).await);
    assert_eq!(header(&v1.last(), "webhook-version"), "2024-06-20");
    assert_eq!(header(&v2.last(), "webhook-version"), "2024-09-30");
    assert!(r.logs().contains("unknown_version"), "{}", r.logs());

    // Lenient: the default stands in for a missing version; unknown ones are delivered.
    let a = send_bytes(&client(), &r.url("/lenient"), &[], b"{}".to_vec()).await;
    assert_eq!(a.status, 202);
    assert!(eventually(WAIT, || v1.count() == 2).await);
    assert_eq!(header(&v1.last(), "x-event-version"), "1");
    let a = send_bytes(
        &client(),
        &r.url("/lenient"),
        &[("x-api-version".into(), "7".into())],
        // Another body: the same bytes again would be a duplicate (no provider id here).
        b"{\"n\":2}".to_vec(),
    )
    .await;
    assert_eq!(a.status, 202);
    assert!(eventually(WAIT, || v1.count() == 3).await);
    assert_eq!(header(&v1.last(), "x-event-version"), "7");
}

#[tokio::test]
async fn signed_deliveries_verify_with_the_standard_webhooks_scheme() {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let t = Target::start(Reply::default()).await;
    let yaml = head(&format!(
        "  t: {{ url: \"{}\", sign: {{ scheme: standard-webhooks, secret: \"{SECRET}\" }} }}",
        t.url("/")
    )) + ONE_ROUTE;
    let r = Router::start(&yaml);
    let body = json_event("invoice.paid", "evt_9");
    assert_eq!(post_event(&r, "/in", body.clone()).await.status, 202);
    assert!(eventually(WAIT, || t.count() == 1).await);
    let seen = t.last();
    assert_eq!(
        header(&seen, "webhook-id"),
        header(&seen, "hookrouter-event-id")
    );
    let verifier = hookrouter::verify::Verifier::new(
        hookrouter::verify::SchemeName::StandardWebhooks,
        &[SECRET],
        None,
        &hookrouter::verify::Options::default(),
    )
    .expect("verifier");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("test setup")
        .as_secs() as i64;
    let req = hookrouter::verify::Request {
        url: "",
        headers: &seen.headers,
        body: &seen.body,
    };
    assert_eq!(verifier.verify(&req, now), Ok(()));
    // Another secret does not verify it.
    let other = hookrouter::verify::Verifier::new(
        hookrouter::verify::SchemeName::StandardWebhooks,
        &["whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCBrZXkhISE="],
        None,
        &hookrouter::verify::Options::default(),
    )
    .expect("verifier");
    assert!(other.verify(&req, now).is_err());
}

#[tokio::test]
async fn pending_deliveries_resume_after_a_crash_with_their_attempt_count() {
    let t = Target::start(Reply {
        status: 500,
        ..Reply::default()
    })
    .await;
    let yaml = head(&format!(
        "  t: {{ url: \"{}\", retry: {{ max_attempts: 50, initial: 300ms, max_delay: 300ms, max_age: 1h }} }}",
        t.url("/")
    )) + ONE_ROUTE;
    let mut r = Router::start(&yaml);
    assert_eq!(
        post_event(&r, "/in", json_event("x", "e1")).await.status,
        202
    );
    assert!(eventually(WAIT, || t.count() >= 2).await);
    r.kill_hard();
    // Let the last attempt's record reach the disk before the crash is assessed.
    let before = t.count();
    t.set_reply(Reply::default());
    r.restart();
    assert!(eventually(WAIT, || t.count() == before + 1).await);
    let last = header(&t.last(), "hookrouter-attempt")
        .parse::<usize>()
        .expect("test setup");
    assert!(last >= 2, "attempt count carried over the restart: {last}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(t.count(), before + 1, "delivered once after the restart");
}

#[tokio::test]
async fn a_full_store_answers_503_and_keeps_nothing_half_written() {
    let t = Target::start(Reply::default()).await;
    // max_size at its floor (1 MiB): bodies of 64 KiB fill it within a few dozen events.
    let yaml = head(&format!("  t: {{ url: \"{}\" }}", t.url("/"))).replace(
        "queue: { embedded: { path: \"{dir}/data\" } }",
        "queue: { embedded: { path: \"{dir}/data\", max_size: 1MiB } }",
    ) + r#"routes:
  - name: r
    path: /in
    max_body: 1MiB
    deliver: [ { target: t } ]
"#;
    let r = Router::start(&yaml);
    let mut accepted = 0;
    let mut refused = 0;
    for i in 0..60u32 {
        let mut body = format!("{{\"n\":{i},\"pad\":\"").into_bytes();
        body.extend(std::iter::repeat_n(b'x', 64 << 10));
        body.extend_from_slice(b"\"}");
        let a = post_event(&r, "/in", body).await;
        match a.status {
            202 => accepted += 1,
            503 => {
                refused += 1;
                assert!(a.headers.contains_key("retry-after"));
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(refused > 0, "the store should have filled up");
    assert!(accepted > 0);
    assert!(
        eventually(WAIT, || t.count() == accepted).await,
        "{} of {accepted}",
        t.count()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        t.count(),
        accepted,
        "only acknowledged events are delivered"
    );
    assert!(r.logs().contains("queue_unavailable"));
}

#[tokio::test]
async fn sync_routes_check_versions_too() {
    let t = Target::start(Reply::default()).await;
    let yaml = crate::sync_config(
        &t.url("/"),
        r#"    version: { from: "body:/api_version", accept: ["2024-*"], on_unknown: reject }"#,
    );
    let r = Router::start(&yaml);
    let ok = send_bytes(
        &client(),
        &r.url("/hooks/test"),
        &[],
        br#"{"api_version":"2024-06-20"}"#.to_vec(),
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(header(&t.last(), "webhook-version"), "2024-06-20");
    let old = send_bytes(
        &client(),
        &r.url("/hooks/test"),
        &[],
        br#"{"api_version":"2019-01-01"}"#.to_vec(),
    )
    .await;
    assert_eq!(old.status, 400);
    assert_eq!(t.count(), 1, "a refused version is not forwarded");
}

#[tokio::test]
async fn retention_removes_finished_events_and_keeps_pending_ones() {
    let ok = Target::start(Reply::default()).await;
    let failing = Target::start(Reply {
        status: 500,
        ..Reply::default()
    })
    .await;
    let yaml = head(&format!(
        "  ok: {{ url: \"{}\" }}\n  failing: {{ url: \"{}\", retry: {{ max_attempts: 100, initial: 10s, max_delay: 10s, max_age: 1h }} }}",
        ok.url("/"),
        failing.url("/")
    ))
    .replace(
        "queue: { embedded: { path: \"{dir}/data\" } }",
        "queue: { embedded: { path: \"{dir}/data\", retention: 1s, dead_retention: 1s } }",
    ) + r#"routes:
  - name: done
    path: /done
    deliver: [ { target: ok } ]
  - name: waiting
    path: /waiting
    deliver: [ { target: failing } ]
"#;
    let r = Router::start(&yaml);
    let done = post_event(&r, "/done", json_event("x", "e1")).await;
    let done_id = done.headers["hookrouter-event-id"]
        .to_str()
        .expect("id")
        .to_string();
    let waiting = post_event(&r, "/waiting", json_event("x", "e2")).await;
    let waiting_id = waiting.headers["hookrouter-event-id"]
        .to_str()
        .expect("id")
        .to_string();
    assert!(eventually(WAIT, || ok.count() == 1 && failing.count() == 1).await);

    let get = |path: String| {
        let url = format!("http://127.0.0.1:{}{path}", r.admin_port);
        async move {
            crate::support::send(
                &client(),
                "GET",
                &url,
                &[("authorization", "Bearer test-token")],
                b"",
            )
            .await
        }
    };
    let stats: serde_json::Value =
        serde_json::from_slice(&get("/api/v1/queue".into()).await.body).expect("json");
    assert!(
        stats["disk_bytes"].as_u64().expect("disk_bytes") > 0,
        "{stats}"
    );
    assert_eq!(stats["max_bytes"].as_u64(), Some(10 << 30), "{stats}");

    let deadline = Instant::now() + WAIT;
    loop {
        let status = get(format!("/api/v1/events/{done_id}")).await.status;
        if status == 404 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "delivered event still kept; log:\n{}",
            r.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The pending one stays, however old.
    assert_eq!(
        get(format!("/api/v1/events/{waiting_id}")).await.status,
        200
    );
    assert!(r.logs().contains("retention removed old events"));
}

/// Unmounts a test filesystem when dropped.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A real filesystem that runs out of space (a 3 MiB tmpfs mounted for the test; the test
/// machines run as root): every write past that fails with ENOSPC.
#[tokio::test]
async fn a_full_disk_answers_503_and_never_202() {
    let t = Target::start(Reply::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&data)
        .status()
        .expect("run mount");
    assert!(
        mounted.success(),
        "this test mounts a small tmpfs and needs root"
    );
    let _mount = Mount(data.clone());
    let yaml = head(&format!("  t: {{ url: \"{}\" }}", t.url("/")))
        + r#"routes:
  - name: r
    path: /in
    max_body: 1MiB
    deliver: [ { target: t } ]
"#;
    let r = Router::start_in(dir, &yaml);
    let mut accepted = 0;
    let mut refused = 0;
    for i in 0..120u32 {
        let mut body = format!("{{\"n\":{i},\"pad\":\"").into_bytes();
        body.extend(std::iter::repeat_n(b'y', 48 << 10));
        body.extend_from_slice(b"\"}");
        let a = post_event(&r, "/in", body).await;
        match a.status {
            202 => accepted += 1,
            503 => {
                refused += 1;
                assert_eq!(a.headers["retry-after"], "30");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        refused > 0,
        "the disk should have filled up ({accepted} accepted)"
    );
    assert!(accepted > 0);
    assert!(
        eventually(WAIT, || t.count() >= accepted).await,
        "{} of {accepted}",
        t.count()
    );
    assert!(r.logs().contains("queue write failed"), "{}", r.logs());
    let _ = r;
}

#[tokio::test]
async fn a_reload_moves_pending_and_new_deliveries_to_the_new_target_settings() {
    let old = Target::start(Reply {
        status: 503,
        ..Reply::default()
    })
    .await;
    let new = Target::start(Reply::default()).await;
    let config = |url: &str| {
        head(&format!(
            "  t: {{ url: \"{url}\", retry: {{ max_attempts: 100, initial: 200ms, max_delay: 200ms, max_age: 1h }} }}"
        )) + ONE_ROUTE
    };
    let r = Router::start(&config(&old.url("/old")));
    assert_eq!(
        post_event(&r, "/in", json_event("x", "e1")).await.status,
        202
    );
    assert!(eventually(WAIT, || old.count() >= 1).await);
    r.write_config(&config(&new.url("/new")));
    r.signal("HUP");
    assert!(r.wait_log("configuration reloaded", WAIT), "{}", r.logs());
    // The waiting retry goes to the new URL, and so does a new event.
    assert!(eventually(WAIT, || new.count() == 1).await, "{}", r.logs());
    assert_eq!(
        post_event(&r, "/in", json_event("x", "e2")).await.status,
        202
    );
    assert!(eventually(WAIT, || new.count() == 2).await);
    assert_eq!(new.last().uri, "/new");
}

#[tokio::test]
async fn a_reload_that_adds_async_routes_to_a_sync_only_router_is_refused() {
    let t = Target::start(Reply::default()).await;
    let r = Router::start(&crate::sync_config(&t.url("/"), ""));
    let async_routes = crate::sync_config(&t.url("/"), "").replace("    mode: sync\n", "");
    r.write_config(&async_routes);
    r.signal("HUP");
    assert!(r.wait_log("restart to use them", WAIT), "{}", r.logs());
    // Still the sync route.
    let a = send_bytes(&client(), &r.url("/hooks/test"), &[], b"{}".to_vec()).await;
    assert_eq!(a.status, 200);
    assert!(!r.dir.path().join("data").exists());
}

/// Senders that hang up before their answer: whatever was stored is still delivered, without
/// a restart.
#[tokio::test]
async fn events_stored_for_a_sender_that_hung_up_are_still_delivered() {
    let t = Target::start(Reply::default()).await;
    let r = Router::start(&(head(&format!("  t: {{ url: \"{}\" }}", t.url("/"))) + ONE_ROUTE));
    for i in 0..60 {
        let body = format!(r#"{{"n":{i}}}"#);
        let req = format!(
            "POST /in HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        // Write the whole request and close at once, without reading the answer.
        crate::support::raw(r.addr(), req.as_bytes(), Duration::ZERO).await;
    }
    let stats = || async {
        let a = crate::support::send(
            &client(),
            "GET",
            &format!("http://127.0.0.1:{}/api/v1/queue", r.admin_port),
            &[("authorization", "Bearer test-token")],
            b"",
        )
        .await;
        serde_json::from_slice::<serde_json::Value>(&a.body).expect("json")
    };
    let deadline = Instant::now() + WAIT;
    loop {
        let s = stats().await;
        let (events, pending) = (s["events"].as_u64(), s["pending"].as_u64());
        if pending == Some(0) && events == Some(t.count() as u64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stored {events:?}, pending {pending:?}, delivered {}",
            t.count()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(t.count() > 0, "some of the requests were stored");
}
