use std::time::Duration;

use rustls::version::{TLS12, TLS13};

use crate::support::{Ca, Reply, Router, Target, tls_post, write};

/// A router with one TLS listener serving `certs` (file stems in the temp dir) to a target.
fn tls_config(target: &Target, tls_yaml: &str) -> String {
    format!(
        r#"version: 1
listen:
  - addr: "127.0.0.1:{{port}}"
    tls: {tls_yaml}
admin: {{ addr: "127.0.0.1:{{admin}}" }}
targets:
  t: {{ url: "{}" }}
routes:
  - {{ name: test, path: /hooks/test, mode: sync, deliver: [ {{ target: t }} ] }}
"#,
        target.url("/in")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn handshake_and_request_over_tls12_and_tls13_with_ecdsa_and_rsa() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (ec_cert, ec_key, ec_der) = ca.leaf(&["ec.test"]);
    let (rsa_cert, rsa_key, rsa_der) = ca.rsa_leaf(&["rsa.test"]);
    write(dir.path(), "ec.pem", &ec_cert);
    write(dir.path(), "ec.key", &ec_key);
    write(dir.path(), "rsa.pem", &rsa_cert);
    write(dir.path(), "rsa.key", &rsa_key);
    let target = Target::start(Reply::default()).await;
    let router = Router::start_in(
        dir,
        &tls_config(
            &target,
            "[ { cert: ec.pem, key: ec.key }, { cert: rsa.pem, key: rsa.key } ]",
        ),
    );
    for (name, der) in [("ec.test", &ec_der), ("rsa.test", &rsa_der)] {
        for version in [&TLS12, &TLS13] {
            let cfg = ca.client_config(&[b"http/1.1"], &[version]);
            let a = tls_post(router.addr(), name, cfg, "/hooks/test", b"{}")
                .await
                .expect("TLS request");
            assert_eq!(a.status, 200, "{name} {:?}", version.version);
            assert_eq!(a.version, version.version);
            assert_eq!(&a.peer_cert, der, "{name} got the wrong certificate");
        }
    }
    assert_eq!(target.count(), 4);
    let seen = target.last();
    assert_eq!(
        seen.headers.get("x-forwarded-proto").map(|v| v.as_bytes()),
        Some(&b"https"[..])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sni_picks_the_certificate_and_defaults_to_the_first() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (a_cert, a_key, a_der) = ca.leaf(&["a.test"]);
    let (b_cert, b_key, b_der) = ca.leaf(&["b.test", "*.wild.test"]);
    let (c_cert, c_key, c_der) = ca.leaf(&["c.test", "override.test"]);
    for (n, pem) in [
        ("a.pem", &a_cert),
        ("a.key", &a_key),
        ("b.pem", &b_cert),
        ("b.key", &b_key),
        ("c.pem", &c_cert),
        ("c.key", &c_key),
    ] {
        write(dir.path(), n, pem);
    }
    let target = Target::start(Reply::default()).await;
    let router = Router::start_in(
        dir,
        &tls_config(
            &target,
            "[ { cert: a.pem, key: a.key }, { cert: b.pem, key: b.key }, { cert: c.pem, key: c.key, names: [override.test] } ]",
        ),
    );
    let cfg = ca.client_config(&[b"http/1.1"], &[&TLS13]);
    for (sni, want) in [
        ("a.test", &a_der),
        ("b.test", &b_der),
        ("x.wild.test", &b_der),
        ("override.test", &c_der),
    ] {
        let a = tls_post(router.addr(), sni, cfg.clone(), "/hooks/test", b"{}")
            .await
            .expect("TLS request");
        assert_eq!(&a.peer_cert, want, "SNI {sni}");
    }
    // An unknown name gets the default (first) certificate, which the client then rejects.
    let err = tls_post(
        router.addr(),
        "unknown.test",
        cfg.clone(),
        "/hooks/test",
        b"{}",
    )
    .await
    .err();
    assert!(
        err.is_some_and(|e| e.contains("NotValidForName") || e.contains("certificate")),
        "unknown name must not verify"
    );
    // `names` replaces the certificate's own names: c.test is not served by c.pem.
    let err = tls_post(router.addr(), "c.test", cfg, "/hooks/test", b"{}")
        .await
        .err();
    assert!(
        err.is_some(),
        "c.test is not among c.pem's configured names"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_over_alpn() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key, _) = ca.leaf(&["h2.test"]);
    write(dir.path(), "c.pem", &cert);
    write(dir.path(), "c.key", &key);
    let target = Target::start(Reply {
        body: "from target",
        ..Reply::default()
    })
    .await;
    let router = Router::start_in(dir, &tls_config(&target, "{ cert: c.pem, key: c.key }"));
    let cfg = ca.client_config(&[b"h2", b"http/1.1"], &[&TLS13, &TLS12]);
    let a = tls_post(
        router.addr(),
        "h2.test",
        cfg,
        "/hooks/test",
        br#"{"over":"h2"}"#,
    )
    .await
    .expect("h2 request");
    assert_eq!(a.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(a.status, 200);
    assert_eq!(&a.body[..], b"from target");
    assert_eq!(&target.last().body[..], br#"{"over":"h2"}"#);
    // The target is spoken to in HTTP/1.1 whatever the client used.
    assert_eq!(target.last().version, http::Version::HTTP_11);
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_versions_below_1_2_are_refused() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key, _) = ca.leaf(&["old.test"]);
    write(dir.path(), "c.pem", &cert);
    write(dir.path(), "c.key", &key);
    let target = Target::start(Reply::default()).await;
    let router = Router::start_in(dir, &tls_config(&target, "{ cert: c.pem, key: c.key }"));
    let port = router.port.to_string();
    let run = |flag: &str| {
        std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                "-servername",
                "old.test",
                flag,
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl s_client (Debian package openssl)")
    };
    let modern = run("-tls1_2");
    assert!(
        String::from_utf8_lossy(&modern.stdout).contains("TLSv1.2"),
        "TLS 1.2 must work"
    );
    for old in ["-tls1", "-tls1_1"] {
        let out = run(old);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success() || !text.contains("Cipher is ECDHE"),
            "{old} was accepted: {text}"
        );
    }
    assert_eq!(target.count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_handshake_is_closed_at_its_timeout() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key, _) = ca.leaf(&["slow.test"]);
    write(dir.path(), "c.pem", &cert);
    write(dir.path(), "c.key", &key);
    let target = Target::start(Reply::default()).await;
    let yaml = tls_config(&target, "{ cert: c.pem, key: c.key }").replace(
        "targets:",
        "server: { tls_handshake_timeout: 1s }\ntargets:",
    );
    let router = Router::start_in(dir, &yaml);
    use tokio::io::AsyncReadExt;
    let mut s = tokio::net::TcpStream::connect(router.addr())
        .await
        .expect("connect");
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("closed within 5s");
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "server closed the silent connection"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "closed after {took:?}"
    );
}
