use std::time::Duration;

use crate::{
    support::{Reply, Router, Target, client, free_port, post, raw, raw_status, send},
    sync_config,
};

#[tokio::test(flavor = "multi_thread")]
async fn status_headers_and_body_are_relayed() {
    let target = Target::start(Reply {
        status: 201,
        headers: vec![
            ("x-target", "yes"),
            ("content-type", "application/json"),
            ("connection", "close"),
        ],
        body: r#"{"created":true}"#,
        ..Reply::default()
    })
    .await;
    let router = Router::start(&sync_config(&target.url("/in?fixed=1"), ""));
    let body = br#"{"id":"evt_1","type":"invoice.paid","amount": 10}"#;
    let a = send(
        &client(),
        "POST",
        &router.url("/hooks/test?q=2"),
        &[
            ("content-type", "application/json"),
            ("stripe-signature", "t=1,v1=abc"),
            ("x-forwarded-for", "6.6.6.6"),
            ("connection", "x-private-hop"),
            ("x-private-hop", "drop me"),
            ("te", "trailers"),
        ],
        body,
    )
    .await;
    assert_eq!(a.status, 201);
    assert_eq!(
        a.headers.get("x-target").map(|v| v.as_bytes()),
        Some(&b"yes"[..])
    );
    assert!(
        a.headers.get("connection").is_none(),
        "hop-by-hop header relayed back"
    );
    assert_eq!(&a.body[..], br#"{"created":true}"#);

    let seen = target.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.uri, "/in?fixed=1&q=2");
    assert_eq!(&seen.body[..], &body[..], "body must arrive byte for byte");
    let h = |name: &str| {
        seen.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii").to_string())
    };
    assert_eq!(h("stripe-signature").as_deref(), Some("t=1,v1=abc"));
    assert_eq!(h("content-type").as_deref(), Some("application/json"));
    // An untrusted peer's X-Forwarded-For is replaced by the peer address.
    assert_eq!(h("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(h("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(h("host"), Some(target.addr.to_string()));
    assert_eq!(h("x-private-hop"), None);
    assert_eq!(h("te"), None);
    assert_eq!(h("content-length"), Some(body.len().to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_are_relayed_not_followed() {
    let target = Target::start(Reply {
        status: 302,
        headers: vec![("location", "http://127.0.0.1:1/elsewhere")],
        ..Reply::default()
    })
    .await;
    let router = Router::start(&sync_config(&target.url("/in"), ""));
    let a = post(&router.url("/hooks/test"), b"{}").await;
    assert_eq!(a.status, 302);
    assert_eq!(target.count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_target_is_502() {
    let dead = format!("http://127.0.0.1:{}/in", free_port());
    let router = Router::start(&sync_config(&dead, ""));
    let a = post(&router.url("/hooks/test"), b"{}").await;
    assert_eq!(a.status, 502);
    assert_eq!(&a.body[..], b"bad gateway\n", "body stays generic");
    assert!(
        router.wait_log("target_unreachable", Duration::from_secs(2)),
        "reason is logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_target_is_504() {
    let target = Target::start(Reply {
        delay: Duration::from_secs(4),
        ..Reply::default()
    })
    .await;
    let router = Router::start(&sync_config(&target.url("/in"), ""));
    let started = std::time::Instant::now();
    let a = post(&router.url("/hooks/test"), b"{}").await;
    assert_eq!(a.status, 504);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_millis(3500),
        "took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn declared_body_over_limit_is_413_before_reading() {
    let target = Target::start(Reply::default()).await;
    let router = Router::start(&sync_config(&target.url("/in"), "    max_body: 16"));
    let a = post(
        &router.url("/hooks/test"),
        br#"{"way":"more than sixteen bytes"}"#,
    )
    .await;
    assert_eq!(a.status, 413);
    // Exactly at the limit passes.
    let a = post(&router.url("/hooks/test"), b"0123456789abcdef").await;
    assert_eq!(a.status, 200);
    assert_eq!(
        target.count(),
        1,
        "only the request within the limit reached the target"
    );
    // A huge declared length is refused from the head alone: no body is sent at all.
    let answer = raw(
        router.addr(),
        b"POST /hooks/test HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(raw_status(&answer), Some(413), "{answer}");
    assert_eq!(target.count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_body_over_limit_is_413_while_reading() {
    let target = Target::start(Reply::default()).await;
    let router = Router::start(&sync_config(&target.url("/in"), "    max_body: 1KiB"));
    let mut req =
        b"POST /hooks/test HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        req.extend_from_slice(b"200\r\n");
        req.extend_from_slice(&[b'a'; 0x200]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let answer = raw(router.addr(), &req, Duration::from_secs(2)).await;
    assert_eq!(raw_status(&answer), Some(413), "{answer}");
    // Within the limit, chunked is fine.
    let ok = raw(
        router.addr(),
        b"POST /hooks/test HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(raw_status(&ok), Some(200), "{ok}");
    assert_eq!(target.count(), 1);
    assert_eq!(&target.last().body[..], b"abc");
}

#[tokio::test(flavor = "multi_thread")]
async fn non_canonical_paths_are_400_and_never_routed() {
    let target = Target::start(Reply::default()).await;
    let router = Router::start(&sync_config(&target.url("/in"), ""));
    let cases: &[(&str, u16)] = &[
        ("/hooks/test", 200),
        ("/hooks/../hooks/test", 400),
        ("/hooks/./test", 400),
        ("/hooks/%2e%2e/hooks/test", 400),
        ("/hooks/%2E%2E/hooks/test", 400),
        ("/hooks%2ftest", 400),
        ("/hooks%2Ftest", 400),
        ("/hooks//test", 400),
        ("//hooks/test", 400),
        ("/hooks/t%65st", 400),
        ("/hooks/test/", 404),
        ("/Hooks/Test", 404),
        ("/hooks/test%20", 404),
        ("/hooks/test;x", 404),
        ("/hooks\\test", 400),
    ];
    let mut failures = Vec::new();
    for (path, want) in cases {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        );
        let answer = raw(router.addr(), req.as_bytes(), Duration::from_secs(2)).await;
        let got = raw_status(&answer);
        if got != Some(*want) {
            failures.push(format!("{path}: want {want}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(
        target.count(),
        1,
        "only the canonical path reached the target"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_path_404_wrong_method_405() {
    let target = Target::start(Reply::default()).await;
    let router = Router::start(&sync_config(&target.url("/in"), "    methods: [POST, PUT]"));
    let c = client();
    assert_eq!(
        send(&c, "POST", &router.url("/nope"), &[], b"")
            .await
            .status,
        404
    );
    let a = send(&c, "GET", &router.url("/hooks/test"), &[], b"").await;
    assert_eq!(a.status, 405);
    assert_eq!(
        a.headers.get("allow").map(|v| v.as_bytes()),
        Some(&b"POST, PUT"[..])
    );
    assert_eq!(
        send(&c, "PUT", &router.url("/hooks/test"), &[], b"x")
            .await
            .status,
        200
    );
    assert_eq!(target.count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn host_routes_pick_by_host() {
    let a_target = Target::start(Reply {
        body: "a",
        ..Reply::default()
    })
    .await;
    let b_target = Target::start(Reply {
        body: "b",
        ..Reply::default()
    })
    .await;
    let yaml = format!(
        r#"version: 1
listen: [ {{ addr: "127.0.0.1:{{port}}" }} ]
admin: {{ addr: "127.0.0.1:{{admin}}" }}
targets:
  a: {{ url: "{}" }}
  b: {{ url: "{}" }}
routes:
  - {{ name: generic, path: /h, mode: sync, deliver: [ {{ target: a }} ] }}
  - {{ name: special, path: /h, host: hooks.example.com, mode: sync, deliver: [ {{ target: b }} ] }}
"#,
        a_target.url("/"),
        b_target.url("/")
    );
    let router = Router::start(&yaml);
    let c = client();
    let got = send(
        &c,
        "POST",
        &router.url("/h"),
        &[("host", "HOOKS.example.com:443")],
        b"",
    )
    .await;
    assert_eq!(&got.body[..], b"b");
    let got = send(
        &c,
        "POST",
        &router.url("/h"),
        &[("host", "other.example.com")],
        b"",
    )
    .await;
    assert_eq!(&got.body[..], b"a");
    // Two Host headers are a malformed request.
    let answer = raw(
        router.addr(),
        b"POST /h HTTP/1.1\r\nHost: hooks.example.com\r\nHost: other\r\nContent-Length: 0\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(raw_status(&answer), Some(400), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_alive_connections_to_the_target_are_reused() {
    let target = Target::start(Reply::default()).await;
    let router = Router::start(&sync_config(&target.url("/in"), ""));
    let c = client();
    for _ in 0..20 {
        assert_eq!(
            send(&c, "POST", &router.url("/hooks/test"), &[], b"{}")
                .await
                .status,
            200
        );
    }
    assert_eq!(target.count(), 20);
    // Requests are sequential, so one pooled connection serves them all.
    let conns = std::process::Command::new("ss")
        .args([
            "-Htn",
            "state",
            "established",
            &format!("dport = :{}", target.addr.port()),
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
        .expect("ss (Debian package iproute2)");
    assert_eq!(conns, 1, "one pooled connection to the target");
}

#[tokio::test(flavor = "multi_thread")]
async fn target_answer_over_the_relay_limit_is_502() {
    // The relay limit is 16 MiB; a target answering more is a bad gateway, not a partial relay.
    let huge: &'static str = Box::leak("x".repeat((16 << 20) + 1).into_boxed_str());
    let target = Target::start(Reply {
        body: huge,
        ..Reply::default()
    })
    .await;
    let router = Router::start(&sync_config(&target.url("/in"), ""));
    let a = post(&router.url("/hooks/test"), b"{}").await;
    assert_eq!(a.status, 502);
    assert!(router.wait_log("target_bad_response", Duration::from_secs(2)));
    // Just under the limit is relayed whole.
    let big: &'static str = Box::leak("y".repeat(16 << 20).into_boxed_str());
    target.set_reply(Reply {
        body: big,
        ..Reply::default()
    });
    let a = post(&router.url("/hooks/test"), b"{}").await;
    assert_eq!((a.status, a.body.len()), (200, 16 << 20));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_closing_idle_connections_loses_no_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A target that answers one request per connection with keep-alive, then closes the
    // connection after 200 ms of idleness, as servers with short keep-alive timeouts do.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = served.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                while !String::from_utf8_lossy(&got).contains("\r\n\r\n{}") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            });
        }
    });
    let router = Router::start(&sync_config(&format!("http://{addr}/in"), ""));
    for _ in 0..3 {
        let a = post(&router.url("/hooks/test"), b"{}").await;
        assert_eq!(a.status, 200);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert_eq!(
        served.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "each request reached the target once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn https_targets_are_verified_against_trusted_roots() {
    use crate::support::{Ca, write};
    let ca = Ca::new();
    let (cert, key, _) = ca.leaf(&["localhost"]);
    let target = Target::start_tls(
        Reply {
            body: "over tls",
            ..Reply::default()
        },
        Some((&cert, &key)),
    )
    .await;
    let url = format!("https://localhost:{}/in", target.addr.port());
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "ca.pem", &ca.pem);
    // rustls-native-certs reads SSL_CERT_FILE: the test CA stands in for the system's roots.
    let trust = dir.path().join("ca.pem").display().to_string();
    let router = Router::start_with_env(dir, &sync_config(&url, ""), &[("SSL_CERT_FILE", trust)]);
    let a = post(&router.url("/hooks/test"), b"{}").await;
    assert_eq!(
        (a.status, &a.body[..]),
        (200, &b"over tls"[..]),
        "{}",
        router.logs()
    );
    assert_eq!(
        target.last().headers.get("host").map(|v| v.as_bytes()),
        Some(url[8..].split('/').next().expect("authority").as_bytes())
    );

    // Without that trust, the target's certificate is refused: 502, nothing sent.
    let untrusted = Router::start(&sync_config(&url, ""));
    assert_eq!(post(&untrusted.url("/hooks/test"), b"{}").await.status, 502);
    assert_eq!(target.count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_header_block_is_431() {
    let target = Target::start(Reply::default()).await;
    let router = Router::start(
        &sync_config(&target.url("/in"), "")
            .replace("targets:", "server: { max_header_bytes: 16KiB }\ntargets:"),
    );
    let big = "a".repeat(20 * 1024);
    let req = format!(
        "POST /hooks/test HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    let answer = raw(router.addr(), req.as_bytes(), Duration::from_secs(2)).await;
    assert_eq!(raw_status(&answer), Some(431), "{answer}");
    // Under the limit is fine.
    let small = "a".repeat(8 * 1024);
    let req = format!(
        "POST /hooks/test HTTP/1.1\r\nHost: x\r\nX-Big: {small}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    let answer = raw(router.addr(), req.as_bytes(), Duration::from_secs(2)).await;
    assert_eq!(raw_status(&answer), Some(200), "{answer}");
    assert_eq!(target.count(), 1);
}
