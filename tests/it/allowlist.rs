use crate::{
    support::{Reply, Router, Target, client, send},
    sync_config,
};

fn config(target: &Target, allow: &str, trusted: &str) -> String {
    sync_config(&target.url("/in"), &format!("    allow_ips: {allow}"))
        .replace("targets:", &format!("trusted_proxies: {trusted}\ntargets:"))
}

#[tokio::test(flavor = "multi_thread")]
async fn allowed_and_denied() {
    let target = Target::start(Reply::default()).await;
    let router = Router::start(&config(&target, r#"["127.0.0.1/32"]"#, "[]"));
    assert_eq!(
        send(&client(), "POST", &router.url("/hooks/test"), &[], b"{}")
            .await
            .status,
        200
    );

    let denied = Router::start(&config(
        &target,
        r#"["192.0.2.0/24", "2001:db8::/32"]"#,
        "[]",
    ));
    let a = send(&client(), "POST", &denied.url("/hooks/test"), &[], b"{}").await;
    assert_eq!(a.status, 403);
    assert_eq!(&a.body[..], b"forbidden\n");
    assert_eq!(
        target.count(),
        1,
        "the denied request never reached the target"
    );
    assert!(denied.wait_log("ip_not_allowed", std::time::Duration::from_secs(2)));
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_for_from_untrusted_peer_is_ignored() {
    let target = Target::start(Reply::default()).await;
    // The client claims to be an allowed address; the peer (127.0.0.1) is not trusted.
    let router = Router::start(&config(&target, r#"["192.0.2.0/24"]"#, r#"["10.0.0.0/8"]"#));
    let c = client();
    for (name, value) in [
        ("x-forwarded-for", "192.0.2.1"),
        ("forwarded", "for=192.0.2.1"),
    ] {
        let a = send(
            &c,
            "POST",
            &router.url("/hooks/test"),
            &[(name, value)],
            b"{}",
        )
        .await;
        assert_eq!(
            a.status, 403,
            "{name} from an untrusted peer must not be believed"
        );
    }
    assert_eq!(target.count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_for_from_trusted_proxy_decides() {
    let target = Target::start(Reply::default()).await;
    let router = Router::start(&config(
        &target,
        r#"["192.0.2.0/24"]"#,
        r#"["127.0.0.0/8", "10.0.0.0/8"]"#,
    ));
    let c = client();
    let url = router.url("/hooks/test");
    let cases: &[(&str, &str, u16)] = &[
        ("x-forwarded-for", "192.0.2.1", 200),
        // Rightmost untrusted entry is the client; the forged left part is ignored.
        ("x-forwarded-for", "192.0.2.1, 198.51.100.9", 403),
        ("x-forwarded-for", "198.51.100.9, 192.0.2.1, 10.1.1.1", 200),
        ("x-forwarded-for", "192.0.2.1:5555", 200),
        ("forwarded", "for=192.0.2.77;proto=https", 200),
        ("forwarded", r#"for="[2001:db8::1]:80""#, 403),
        ("x-forwarded-for", "not-an-ip", 400),
        ("x-forwarded-for", "::ffff:192.0.2.5", 200),
    ];
    let mut failures = Vec::new();
    for (name, value, want) in cases {
        let got = send(&c, "POST", &url, &[(name, value)], b"{}").await.status;
        if got != *want {
            failures.push(format!("{name}: {value} → {got}, want {want}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(target.count(), 5);
    // The target sees the chain with the proxy's address appended.
    let seen = target.last();
    assert_eq!(
        seen.headers.get("x-forwarded-for").map(|v| v.as_bytes()),
        Some(&b"::ffff:192.0.2.5, 127.0.0.1"[..])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn v4_mapped_v6_peer_matches_v4_networks() {
    let target = Target::start(Reply::default()).await;
    // A dual-stack listener sees IPv4 clients as ::ffff:127.0.0.1.
    let yaml = config(&target, r#"["127.0.0.1/32"]"#, "[]")
        .replace("addr: \"127.0.0.1:{port}\"", "addr: \"[::]:{port}\"");
    let router = Router::start(&yaml);
    assert_eq!(
        send(&client(), "POST", &router.url("/hooks/test"), &[], b"{}")
            .await
            .status,
        200
    );
    assert!(
        router.wait_log("client=127.0.0.1", std::time::Duration::from_secs(2)),
        "{}",
        router.logs()
    );
    // And over IPv6 loopback, which is not in the list.
    let v6 = format!("http://[::1]:{}/hooks/test", router.port);
    assert_eq!(send(&client(), "POST", &v6, &[], b"{}").await.status, 403);
    assert_eq!(target.count(), 1);
}
