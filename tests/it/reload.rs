use std::time::{Duration, Instant};

use rustls::version::TLS13;

use crate::{
    support::{Ca, Reply, Router, Target, client, post, send, tls_post, write},
    sync_config,
};

#[tokio::test(flavor = "multi_thread")]
async fn good_change_applies_under_load_and_in_flight_requests_finish_on_their_config() {
    let a = Target::start(Reply {
        body: "A",
        delay: Duration::from_millis(200),
        ..Reply::default()
    })
    .await;
    let b = Target::start(Reply {
        body: "B",
        ..Reply::default()
    })
    .await;
    let router = Router::start(&sync_config(&a.url("/in"), ""));
    let url = router.url("/hooks/test");

    // A slow request that starts before the reload.
    a.set_reply(Reply {
        body: "A",
        delay: Duration::from_millis(1500),
        ..Reply::default()
    });
    let slow = tokio::spawn({
        let url = url.clone();
        async move { post(&url, b"{}").await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.set_reply(Reply {
        body: "A",
        delay: Duration::from_millis(50),
        ..Reply::default()
    });

    // Steady traffic across the reload.
    let stop_at = Instant::now() + Duration::from_millis(2500);
    let mut load = Vec::new();
    for _ in 0..4 {
        let url = url.clone();
        load.push(tokio::spawn(async move {
            let c = client();
            let mut statuses = Vec::new();
            while Instant::now() < stop_at {
                statuses.push(send(&c, "POST", &url, &[], b"{}").await.status);
            }
            statuses
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    router.write_config(&sync_config(&b.url("/in"), ""));
    router.signal("HUP");
    assert!(
        router.wait_log("configuration reloaded", Duration::from_secs(10)),
        "{}",
        router.logs()
    );

    let slow = slow.await.expect("slow request");
    assert_eq!(slow.status, 200);
    assert_eq!(
        &slow.body[..],
        b"A",
        "an in-flight request finishes on the config it started with"
    );

    let mut total = 0;
    for task in load {
        let statuses = task.await.expect("load task");
        total += statuses.len();
        assert!(
            statuses.iter().all(|s| *s == 200),
            "a request failed across the reload: {statuses:?}"
        );
    }
    assert!(total > 20, "only {total} requests");
    assert!(
        a.count() > 1 && b.count() > 0,
        "A {} B {}",
        a.count(),
        b.count()
    );
    assert_eq!(
        &post(&url, b"{}").await.body[..],
        b"B",
        "new requests use the new config"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_change_keeps_the_running_config() {
    let a = Target::start(Reply {
        body: "A",
        ..Reply::default()
    })
    .await;
    let router = Router::start(&sync_config(&a.url("/in"), ""));
    let bad = sync_config(&a.url("/in"), "    alow_ips: [\"10.0.0.0/33\"]")
        .replace("/hooks/test", "/hooks/new");
    router.write_config(&bad);
    router.signal("HUP");
    assert!(
        router.wait_log("reload failed", Duration::from_secs(10)),
        "{}",
        router.logs()
    );
    // Every error is logged, with its line.
    let logs = router.logs();
    assert!(logs.contains("router.yaml:11:5: routes[0].alow_ips: unknown key `alow_ips`; did you mean `allow_ips`?"), "{logs}");
    let a_resp = post(&router.url("/hooks/test"), b"{}").await;
    assert_eq!(
        (a_resp.status, &a_resp.body[..]),
        (200, &b"A"[..]),
        "old config still serves"
    );
    assert_eq!(post(&router.url("/hooks/new"), b"{}").await.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn file_change_reloads_without_a_signal() {
    let a = Target::start(Reply {
        body: "A",
        ..Reply::default()
    })
    .await;
    let router = Router::start(&sync_config(&a.url("/in"), ""));
    let changed = sync_config(&a.url("/in"), "").replace("/hooks/test", "/hooks/moved");
    router.write_config(&changed);
    assert!(
        router.wait_log("configuration reloaded", Duration::from_secs(5)),
        "{}",
        router.logs()
    );
    assert_eq!(post(&router.url("/hooks/moved"), b"{}").await.status, 200);
    assert_eq!(post(&router.url("/hooks/test"), b"{}").await.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_reload() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert1, key1, der1) = ca.leaf(&["hooks.test"]);
    write(dir.path(), "c.pem", &cert1);
    write(dir.path(), "c.key", &key1);
    let target = Target::start(Reply::default()).await;
    let yaml = format!(
        r#"version: 1
listen:
  - addr: "127.0.0.1:{{port}}"
    tls: {{ cert: c.pem, key: c.key }}
admin: {{ addr: "127.0.0.1:{{admin}}" }}
targets:
  t: {{ url: "{}" }}
routes:
  - {{ name: test, path: /hooks/test, mode: sync, deliver: [ {{ target: t }} ] }}
"#,
        target.url("/in")
    );
    let router = Router::start_in(dir, &yaml);
    let cfg = ca.client_config(&[b"http/1.1"], &[&TLS13]);
    let first = tls_post(
        router.addr(),
        "hooks.test",
        cfg.clone(),
        "/hooks/test",
        b"{}",
    )
    .await
    .expect("tls");
    assert_eq!(first.peer_cert, der1);

    // A key that does not match the certificate is refused; the old pair keeps serving.
    let (cert2, key2, der2) = ca.leaf(&["hooks.test"]);
    write(router.dir.path(), "c.pem", &cert2);
    router.signal("HUP");
    assert!(
        router.wait_log(
            "does not belong to the certificate",
            Duration::from_secs(10)
        ),
        "{}",
        router.logs()
    );
    let still = tls_post(
        router.addr(),
        "hooks.test",
        cfg.clone(),
        "/hooks/test",
        b"{}",
    )
    .await
    .expect("tls");
    assert_eq!(still.peer_cert, der1);

    // With the matching key in place, the file watcher picks the new pair up.
    write(router.dir.path(), "c.key", &key2);
    assert!(
        router.wait_log("configuration reloaded", Duration::from_secs(5)),
        "{}",
        router.logs()
    );
    let after = tls_post(router.addr(), "hooks.test", cfg, "/hooks/test", b"{}")
        .await
        .expect("tls");
    assert_eq!(
        after.peer_cert, der2,
        "new connections get the new certificate"
    );
}
