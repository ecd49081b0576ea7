use std::{
    process::Command,
    time::{Duration, Instant},
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    support::{Reply, Router, Target, blocking_get, free_port, post, raw, raw_status},
    sync_config,
};

fn with_server(yaml: String, server: &str) -> String {
    yaml.replace("targets:", &format!("server: {server}\ntargets:"))
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_probes() {
    let target = Target::start(Reply::default()).await;
    let router = Router::start(&sync_config(&target.url("/in"), ""));
    assert_eq!(
        blocking_get(router.admin_port, "/healthz"),
        Some((200, "ok\n".into()))
    );
    assert_eq!(
        blocking_get(router.admin_port, "/readyz"),
        Some((200, "ready\n".into()))
    );
    assert_eq!(
        blocking_get(router.admin_port, "/nope").map(|(s, _)| s),
        Some(404)
    );
    // The admin endpoints are not on the public listener.
    assert_eq!(
        blocking_get(router.port, "/healthz").map(|(s, _)| s),
        Some(404)
    );
}

#[test]
fn bad_config_never_opens_a_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let path = dir.path().join("bad.yaml");
    let yaml = sync_config("http://127.0.0.1:1/", "    allow_ips: [\"300.1.1.1\"]")
        .replace("{port}", &port.to_string())
        .replace("{admin}", &free_port().to_string());
    std::fs::write(&path, yaml).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_hookrouter"))
        .args(["run", "-c"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("routes[0].allow_ips[0]: `300.1.1.1` is not an IP address"),
        "{stderr}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port must not be open"
    );
}

#[test]
fn port_in_use_fails_the_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("r.yaml");
    let yaml = sync_config("http://127.0.0.1:1/", "")
        .replace("{port}", &port.to_string())
        .replace("{admin}", &free_port().to_string());
    std::fs::write(&path, yaml).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_hookrouter"))
        .args(["run", "-c"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("cannot listen on 127.0.0.1:{port}"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_in_flight_requests_and_exits_0() {
    let target = Target::start(Reply {
        body: "done",
        delay: Duration::from_millis(1500),
        ..Reply::default()
    })
    .await;
    let mut router = Router::start(&sync_config(&target.url("/in"), ""));
    let url = router.url("/hooks/test");
    let in_flight = tokio::spawn(async move { post(&url, b"{}").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    router.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // No new connections once draining.
    assert!(
        tokio::net::TcpStream::connect(router.addr()).await.is_err(),
        "still accepting after SIGTERM"
    );
    // The admin listener stays up while draining and says not ready.
    assert_eq!(
        blocking_get(router.admin_port, "/readyz").map(|(s, _)| s),
        Some(503)
    );
    let answer = in_flight.await.expect("in-flight request");
    assert_eq!((answer.status, &answer.body[..]), (200, &b"done"[..]));
    let code = tokio::task::spawn_blocking(move || router.wait_exit(Duration::from_secs(5)))
        .await
        .expect("wait");
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_timeout_bounds_shutdown() {
    let target = Target::start(Reply {
        delay: Duration::from_secs(10),
        ..Reply::default()
    })
    .await;
    let yaml = with_server(sync_config(&target.url("/in"), ""), "{ drain_timeout: 1s }")
        .replace("timeout: 2s", "timeout: 20s");
    let mut router = Router::start(&yaml);
    let url = router.url("/hooks/test");
    let _stuck = tokio::spawn(async move { post(&url, b"{}").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    router.signal("INT");
    let code = tokio::task::spawn_blocking(move || router.wait_exit(Duration::from_secs(5)))
        .await
        .expect("wait");
    assert_eq!(code, Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_header_is_cut_at_header_timeout() {
    let target = Target::start(Reply::default()).await;
    let router = Router::start(&with_server(
        sync_config(&target.url("/in"), ""),
        "{ header_timeout: 1s, idle_timeout: 10s }",
    ));
    let mut s = tokio::net::TcpStream::connect(router.addr())
        .await
        .expect("connect");
    s.write_all(b"POST /hooks/test HTTP/1.1\r\nHo")
        .await
        .expect("write");
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("closed in time");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2600),
        "closed after {took:?}"
    );
    assert_eq!(target.count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_keep_alive_is_closed_at_idle_timeout() {
    let target = Target::start(Reply::default()).await;
    let router = Router::start(&with_server(
        sync_config(&target.url("/in"), ""),
        "{ header_timeout: 10s, idle_timeout: 1s }",
    ));
    let mut s = tokio::net::TcpStream::connect(router.addr())
        .await
        .expect("connect");
    s.write_all(b"POST /hooks/test HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.expect("answer");
    assert_eq!(raw_status(&String::from_utf8_lossy(&buf[..n])), Some(200));
    let started = Instant::now();
    let rest = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(rest, Ok(0) | Err(_)));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2600),
        "closed after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_body_gets_408() {
    let target = Target::start(Reply::default()).await;
    let router = Router::start(&with_server(
        sync_config(&target.url("/in"), ""),
        "{ body_timeout: 1s }",
    ));
    let answer = raw(
        router.addr(),
        b"POST /hooks/test HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"partial\":",
        Duration::from_secs(4),
    )
    .await;
    assert_eq!(raw_status(&answer), Some(408), "{answer}");
    assert_eq!(target.count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_cap_holds_excess_clients_until_a_slot_frees() {
    let target = Target::start(Reply::default()).await;
    let router = Router::start(&with_server(
        sync_config(&target.url("/in"), ""),
        "{ max_connections: 2, idle_timeout: 1s, header_timeout: 1s }",
    ));
    // Two silent connections take both slots.
    let _a = tokio::net::TcpStream::connect(router.addr())
        .await
        .expect("connect");
    let _b = tokio::net::TcpStream::connect(router.addr())
        .await
        .expect("connect");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let answer = raw(
        router.addr(),
        b"POST /hooks/test HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(raw_status(&answer), Some(200), "{answer}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(700),
        "served after {waited:?}: the cap was not enforced"
    );
}
